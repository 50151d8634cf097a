"""The plaintext archive: deterministic tar + manifest, and every refusal of read_archive."""

from __future__ import annotations

import json
import tarfile

import pytest
from hypothesis import given, strategies as st

from .backup_samples import META, SECRET_VALUES, file_info, raw_tar, sample_items, tar_entries
from mayanode_operator.backup import ArchiveError, BackupItem, Manifest, build_archive, read_archive
from mayanode_operator.backup.archive import FORMAT, MANIFEST_NAME


def _reason(excinfo: pytest.ExceptionInfo[ArchiveError]) -> str:
    return excinfo.value.reason


def test_round_trip_keeps_every_item_and_attribute() -> None:
    items = sample_items()
    tar_bytes, manifest = build_archive(items, META)
    read_manifest, read_items = read_archive(tar_bytes)
    assert read_manifest == manifest
    assert read_manifest.meta == META and read_manifest.format == FORMAT
    assert sorted(read_items, key=lambda i: i.name) == sorted(items, key=lambda i: i.name)
    by_name = {item.name: item for item in read_items}
    assert by_name["keyring-file/mayachain.info"].uid == 1000
    assert by_name["config/priv_validator_key.json"].mode == 0o600
    assert by_name["MAYAChain-ED25519"].mtime == 1_700_000_000


def test_layout_is_manifest_first_then_sorted_component_paths_without_owner_names() -> None:
    tar_bytes, manifest = build_archive(sample_items(), META)
    entries = tar_entries(tar_bytes)
    names = [info.name for info, _ in entries]
    assert names[0] == MANIFEST_NAME
    assert names[1:] == sorted(f"{i.component}/{i.path}" for i in manifest.items)
    assert "mayanode/config/priv_validator_key.json" in names and "secret/mayanode-mnemonic/mnemonic" in names
    for info, _ in entries:
        assert info.isreg() and info.uname == "" and info.gname == ""
    assert entries[0][0].mtime == 0
    assert {info.name: info.mtime for info, _ in entries}["mayanode/MAYAChain-ED25519"] == 1_700_000_000


def test_same_input_gives_same_bytes_whatever_the_order() -> None:
    items = sample_items()
    first, _ = build_archive(items, META)
    second, _ = build_archive(list(reversed(items)), dict(reversed(list(META.items()))))
    assert first == second


def test_manifest_json_round_trip_and_listing() -> None:
    _, manifest = build_archive(sample_items(), META)
    assert Manifest.from_json(manifest.to_json()) == manifest
    doc = json.loads(manifest.to_json())
    assert doc["format"] == "mayanode-backup/v1"
    assert {"name", "component", "path", "size", "sha256", "mode"} <= set(doc["items"][0])
    assert manifest.total_size == sum(item.size for item in sample_items())


def test_public_summary_has_no_secrets_and_no_secret_digests() -> None:
    _, manifest = build_archive(sample_items(), META)
    summary = manifest.public_summary()
    text = json.dumps(summary)
    for secret in SECRET_VALUES:
        assert secret.decode() not in text
    by_name = {item["name"]: item for item in summary["items"]}
    assert "sha256" not in by_name["mayanode-password/password"]
    assert "sha256" not in by_name["mayanode-mnemonic/mnemonic"]
    assert len(by_name["config/priv_validator_key.json"]["sha256"]) == 64
    assert by_name["config/priv_validator_key.json"]["mode"] == "0600"
    assert summary["itemCount"] == len(sample_items()) and summary["meta"] == META


def test_reprs_never_show_data() -> None:
    items = sample_items()
    _, manifest = build_archive(items, META)
    text = repr(items) + repr(manifest)
    for secret in SECRET_VALUES:
        assert secret.decode() not in text
    assert manifest.item("mayanode-password/password").sha256 not in text


def test_tampered_item_is_a_digest_mismatch() -> None:
    tar_bytes, _ = build_archive(sample_items(), META)
    entries = tar_entries(tar_bytes)
    tampered = []
    for info, data in entries:
        if info.name == "mayanode/config/priv_validator_key.json":
            data = data.replace(b"SECRET", b"SECRXT", 1)
        tampered.append((info, data))
    with pytest.raises(ArchiveError) as excinfo:
        read_archive(raw_tar(tampered))
    assert _reason(excinfo) == "DigestMismatch"
    assert "config/priv_validator_key.json" in excinfo.value.message
    assert "SECR" not in str(excinfo.value)


def test_resized_item_is_a_digest_mismatch() -> None:
    tar_bytes, _ = build_archive(sample_items(), META)
    entries = [(info, data + b"x" if info.name.endswith("node_key.json") else data)
               for info, data in tar_entries(tar_bytes)]
    with pytest.raises(ArchiveError) as excinfo:
        read_archive(raw_tar(entries))
    assert _reason(excinfo) == "DigestMismatch"


def test_missing_item_is_refused() -> None:
    tar_bytes, _ = build_archive(sample_items(), META)
    entries = [(i, d) for i, d in tar_entries(tar_bytes) if not i.name.startswith("bifrost/")]
    with pytest.raises(ArchiveError) as excinfo:
        read_archive(raw_tar(entries))
    assert _reason(excinfo) == "MissingItem"
    assert "localstate" in excinfo.value.message


def test_missing_manifest_is_refused() -> None:
    tar_bytes, _ = build_archive(sample_items(), META)
    entries = [(i, d) for i, d in tar_entries(tar_bytes) if i.name != MANIFEST_NAME]
    with pytest.raises(ArchiveError) as excinfo:
        read_archive(raw_tar(entries))
    assert _reason(excinfo) == "MissingItem"


def test_extra_entry_is_refused() -> None:
    tar_bytes, _ = build_archive(sample_items(), META)
    entries = tar_entries(tar_bytes) + [(file_info("mayanode/config/extra.json"), b"{}")]
    with pytest.raises(ArchiveError) as excinfo:
        read_archive(raw_tar(entries))
    assert _reason(excinfo) == "UnexpectedEntry"
    assert "extra.json" in excinfo.value.message


def test_directory_entry_is_unexpected() -> None:
    tar_bytes, _ = build_archive(sample_items(), META)
    entries = tar_entries(tar_bytes) + [(file_info("mayanode/config", type=tarfile.DIRTYPE, mode=0o755), None)]
    with pytest.raises(ArchiveError) as excinfo:
        read_archive(raw_tar(entries))
    assert _reason(excinfo) == "UnexpectedEntry"


@pytest.mark.parametrize("name", ["../etc/passwd", "mayanode/../../root/.ssh/authorized_keys", "/etc/passwd",
                                  "mayanode/./config", "mayanode//x"])
def test_unsafe_paths_are_refused(name: str) -> None:
    tar_bytes, _ = build_archive(sample_items(), META)
    entries = tar_entries(tar_bytes) + [(file_info(name), b"owned")]
    with pytest.raises(ArchiveError) as excinfo:
        read_archive(raw_tar(entries))
    assert _reason(excinfo) == "UnsafePath"


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_links_are_refused(kind: bytes) -> None:
    tar_bytes, _ = build_archive(sample_items(), META)
    link = file_info("mayanode/config/link.json", type=kind, linkname="/etc/shadow")
    with pytest.raises(ArchiveError) as excinfo:
        read_archive(raw_tar(tar_entries(tar_bytes) + [(link, None)]))
    assert _reason(excinfo) == "UnsafePath"
    assert "link" in excinfo.value.message


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_devices_are_refused(kind: bytes) -> None:
    tar_bytes, _ = build_archive(sample_items(), META)
    device = file_info("mayanode/dev", type=kind, devmajor=1, devminor=3)
    with pytest.raises(ArchiveError) as excinfo:
        read_archive(raw_tar(tar_entries(tar_bytes) + [(device, None)]))
    assert _reason(excinfo) == "UnsafePath"


@pytest.mark.parametrize("payload", [b"", b"not a tar at all" * 100, b"\0" * 10])
def test_garbage_is_malformed(payload: bytes) -> None:
    with pytest.raises(ArchiveError) as excinfo:
        read_archive(payload)
    assert _reason(excinfo) in ("Malformed", "MissingItem")


def test_truncated_tar_is_malformed() -> None:
    tar_bytes, _ = build_archive(sample_items(), META)
    with pytest.raises(ArchiveError) as excinfo:
        read_archive(tar_bytes[:3000])
    assert _reason(excinfo) == "Malformed"


@pytest.mark.parametrize("manifest", [b"{not json", json.dumps({"format": "other/v9", "items": []}).encode(),
                                      json.dumps({"format": FORMAT, "items": [{"name": "x"}]}).encode()])
def test_bad_manifest_is_malformed(manifest: bytes) -> None:
    with pytest.raises(ArchiveError) as excinfo:
        read_archive(raw_tar([(file_info(MANIFEST_NAME), manifest)]))
    assert _reason(excinfo) == "Malformed"


def test_manifest_with_traversal_path_is_unsafe() -> None:
    manifest = {"format": FORMAT, "meta": {}, "items": [{"name": "x", "component": "mayanode", "path": "../x",
                                                         "size": 1, "sha256": "0" * 64, "mode": 384}]}
    with pytest.raises(ArchiveError) as excinfo:
        read_archive(raw_tar([(file_info(MANIFEST_NAME), json.dumps(manifest).encode())]))
    assert _reason(excinfo) == "UnsafePath"


def test_size_caps() -> None:
    items = [BackupItem("big", "bifrost", "localstate-x.json", b"a" * 5000, 0o600)]
    tar_bytes, _ = build_archive(items, META)
    with pytest.raises(ArchiveError) as excinfo:
        read_archive(tar_bytes, max_item_size=4096)
    assert _reason(excinfo) == "Malformed" and "larger than" in excinfo.value.message
    with pytest.raises(ArchiveError) as excinfo:
        read_archive(tar_bytes, max_items=0)
    assert _reason(excinfo) == "Malformed"


def test_invalid_items_are_refused_at_build_time() -> None:
    with pytest.raises(ArchiveError) as excinfo:
        BackupItem("x", "mayanode", "../escape", b"", 0o600)
    assert excinfo.value.reason == "UnsafePath"
    with pytest.raises(ArchiveError) as excinfo:
        BackupItem("x", "kubelet", "a", b"", 0o600)
    assert excinfo.value.reason == "Malformed"
    with pytest.raises(ArchiveError) as excinfo:
        build_archive([BackupItem("a", "mayanode", "a", b"1", 0o600), BackupItem("a", "mayanode", "b", b"2", 0o600)],
                      META)
    assert excinfo.value.reason == "Malformed"
    with pytest.raises(ArchiveError) as excinfo:
        build_archive([BackupItem("a", "mayanode", "a", b"1", 0o600)], {"height": object()})
    assert excinfo.value.reason == "Malformed"


_segment = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC0123456789._-", min_size=1, max_size=12).filter(
    lambda s: s not in (".", ".."))
_path = st.lists(_segment, min_size=1, max_size=4).map("/".join)
_item = st.builds(
    lambda component, path, data, mode, uid, gid, mtime: BackupItem(f"{component}:{path}", component, path, data,
                                                                     mode, uid, gid, mtime),
    st.sampled_from(["mayanode", "bifrost", "secret"]), _path, st.binary(max_size=2048),
    st.integers(0, 0o7777), st.integers(0, 65535), st.integers(0, 65535), st.integers(0, 2**32))


@given(st.lists(_item, max_size=12, unique_by=lambda i: i.archive_path))
def test_any_item_set_round_trips_deterministically(items: list[BackupItem]) -> None:
    tar_bytes, manifest = build_archive(items, {"height": len(items)})
    assert build_archive(list(reversed(items)), {"height": len(items)})[0] == tar_bytes
    read_manifest, read_items = read_archive(tar_bytes)
    assert read_manifest == manifest
    assert sorted(read_items, key=lambda i: i.archive_path) == sorted(items, key=lambda i: i.archive_path)
