"""The Dockerfile: hadolint-clean, multi-stage, non-root, runs the operator. (No Docker engine here to build it.)"""

from __future__ import annotations

import re
import subprocess
import tomllib

import pytest
import yaml

from .tools import CHART, REPO, ToolUnavailable, hadolint_binary

DOCKERFILE = REPO / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for instruction in instructions():
        if instruction[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def test_hadolint_is_clean():
    try:
        hadolint = hadolint_binary()
    except ToolUnavailable as err:
        pytest.fail(str(err), pytrace=False)
    result = subprocess.run([str(hadolint), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"hadolint:\n{result.stdout}{result.stderr}"


def test_hadolint_catches_problems(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n")
    result = subprocess.run([str(hadolint_binary()), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "DL3007" in result.stdout


def test_base_image_is_slim_python_pinned_by_tag():
    args = dict(arg.split("=", 1) for word, arg in instructions() if word == "ARG" and "=" in arg)
    image = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-[a-z]+)?", image), image
    froms = [rest for word, rest in instructions() if word == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE}"]


def test_builder_builds_the_wheel_and_the_final_stage_installs_it_into_a_venv():
    builder, final = stages()
    assert any(word == "RUN" and "pip wheel" in rest for word, rest in builder)
    install = next(rest for word, rest in final if word == "RUN" and "pip install" in rest)
    assert "from=builder" in install and "python -m venv /opt/venv" in install
    assert "--no-index" in install and "mayanode_operator-*.whl" in install
    assert not any(word == "COPY" for word, _ in final), "the final stage takes nothing but the installed venv"


def test_final_stage_runs_the_operator_as_non_root():
    final = stages()[-1]
    users = [rest for word, rest in final if word == "USER"]
    assert users and users[-1].split(":")[0].isdigit() and int(users[-1].split(":")[0]) != 0
    uid = int(users[-1].split(":")[0])
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["securityContext"]["runAsUser"] == uid == values["podSecurityContext"]["runAsUser"]
    assert ("ENTRYPOINT", '["mayanode-operator"]') in final
    assert ("CMD", '["run"]') in final
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert "mayanode-operator" in scripts
    env = " ".join(rest for word, rest in final if word == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "PYTHONUNBUFFERED=1" in env
    exposed = {int(port) for word, rest in final if word == "EXPOSE" for port in rest.split()}
    assert exposed == {values["metrics"]["port"], values["health"]["port"]}


def test_no_secrets_in_the_image_definition():
    for word, rest in instructions():
        if word in ("ENV", "ARG", "LABEL"):
            assert not re.search(r"(PASSWORD|PASSWD|TOKEN|SECRET|MNEMONIC|API_KEY|ACCESS_KEY)", rest, re.I), rest
    assert not re.search(r"(AKIA[0-9A-Z]{16}|-----BEGIN)", DOCKERFILE.read_text())


def test_build_context_holds_what_the_build_copies():
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert ignore[next(i for i, line in enumerate(ignore) if line.strip() and not line.startswith("#"))] == "**"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = set()
    for word, rest in instructions():
        if word == "COPY" and "--from" not in rest:
            copied |= {source.removeprefix("./").rstrip("/") for source in rest.split()[:-1]}
    assert copied == {"pyproject.toml", "README.md", "operator"}
    assert copied <= allowed
    for source in copied:
        assert (REPO / source).exists(), source
