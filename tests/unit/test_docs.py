"""The reference pages are generated from the CRDs and must be up to date."""

from pathlib import Path

from mayanode_operator.api.docgen import pages

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference"


def test_reference_pages_are_current():
    for name, text in pages().items():
        assert (REFERENCE / name).read_text() == text, (
            f"docs/reference/{name} is stale: run python -m mayanode_operator.api.docgen --out docs/reference")


def test_every_spec_field_is_documented():
    for name, text in pages().items():
        for line in text.splitlines():
            if line.startswith("| `spec."):
                assert line.split("|")[5].strip(), f"{name}: {line.split('|')[1]} has no description"
