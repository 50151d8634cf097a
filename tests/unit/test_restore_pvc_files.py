"""The restore's view of a PVC through a helper pod: a `find` that did not run is an error, never an empty answer
(an empty answer would hide key shares already on the volume, or reset the modes of directories that exist)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from mayanode_operator.adapters.exec import ExecResult
from mayanode_operator.adapters.volumes import VolumeError
from mayanode_operator.plan.backup_items import VolumeTarget
from mayanode_operator.reconcile.noderestore import PvcFiles

TARGET = VolumeTarget("bifrost", "bifrost", "bifrost", "bifrost", "/root/.mayanode", "mayanode")


class ScriptedExec:
    """Answers each command with the first matching (prefix → result) rule; records the commands."""

    def __init__(self, *rules: tuple[str, ExecResult]) -> None:
        self.rules, self.commands = rules, []

    async def run(self, namespace, pod, container, command, stdin=None, timeout=120.0):
        self.commands.append(command)
        line = " ".join(command)
        return next(result for prefix, result in self.rules if line.startswith(prefix))


def files(port) -> PvcFiles:
    return PvcFiles(SimpleNamespace(exec_port=port), "ns", TARGET, "helper-pod")


@pytest.fixture(autouse=True)
def no_retry_pause(monkeypatch):
    import mayanode_operator.adapters.volumes as volumes
    monkeypatch.setattr(volumes, "EXEC_RETRY_SECONDS", 0, raising=False)


@pytest.mark.parametrize("stderr", [b"OCI runtime exec failed: unable to start container process\n",
                                    b"find: /data: Permission denied\n"])
def test_a_find_that_did_not_run_is_an_error(stderr):
    port = ScriptedExec(("find", ExecResult(126 if b"OCI" in stderr else 1, b"", stderr)))
    with pytest.raises(VolumeError):
        asyncio.run(files(port).top_level("localstate-*.json"))
    with pytest.raises(VolumeError):
        asyncio.run(files(port).dirs())


def test_a_missing_home_has_no_files_and_an_answer_is_read():
    missing = ScriptedExec(("find", ExecResult(1, b"", b"find: /data/mayanode: No such file or directory\n")))
    assert asyncio.run(files(missing).top_level("localstate-*.json")) == set()
    found = ScriptedExec(("find /data/mayanode", ExecResult(0, b"/data/mayanode/localstate-a.json\n", b"")),
                         ("find /data", ExecResult(0, b"/data\n/data/mayanode\n/data/mayanode/keyring-file\n", b"")))
    assert asyncio.run(files(found).top_level("localstate-*.json")) == {"localstate-a.json"}
    assert asyncio.run(files(found).dirs()) == {"mayanode", "mayanode/keyring-file"}


def test_a_file_that_may_be_missing_is_read_in_one_exec():
    """The hand-off reads the old node's vote with one `tar c` (no `find` first): tar's "No such file" (GNU or
    busybox) means absent; any other complaint, or a failure that says nothing, is an error, never "absent"."""
    from mayanode_operator.adapters.volumes import FileEntry, tar_of

    state = FileEntry("mayanode/data/priv_validator_state.json", b'{"height":"7"}', 0o600, 1000, 1000, 1)
    present = ScriptedExec(("tar", ExecResult(0, tar_of([state]), b"")))
    read = asyncio.run(files(present).read_present(["data/priv_validator_state.json"]))
    assert read["data/priv_validator_state.json"].data == b'{"height":"7"}' and len(present.commands) == 1
    for code, stderr, out in ((2, b"tar: mayanode/data/priv_validator_state.json: Cannot stat: No such file or "
                                  b"directory\ntar: Exiting with failure status due to previous errors\n", tar_of([])),
                              (1, b"tar: can't open 'mayanode/data/priv_validator_state.json': No such file or "
                                  b"directory\n", b"")):
        missing = ScriptedExec(("tar", ExecResult(code, out, stderr)))
        assert asyncio.run(files(missing).read_present(["data/priv_validator_state.json"])) == {}
    for code, stderr in ((2, b"tar: mayanode/data: Cannot open: Permission denied\n"), (1, b"")):
        broken = ScriptedExec(("tar", ExecResult(code, b"", stderr)))
        with pytest.raises(VolumeError):
            asyncio.run(files(broken).read_present(["data/priv_validator_state.json"]))
