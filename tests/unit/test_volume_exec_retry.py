"""A volume command the container runtime could not start (exit 126, "OCI runtime exec failed") never ran: it is
tried again like a refused exec. Found by the restore scenario under faults (tests/faults): every such answer failed
the whole restore step (WriteFiles), which starts over from the archive."""

from __future__ import annotations

import pytest

from mayanode_operator.adapters import volumes
from mayanode_operator.adapters.exec import ExecError, ExecResult
from mayanode_operator.adapters.volumes import VolumeError, VolumeSession

REFUSED = ExecResult(126, b"", b"OCI runtime exec failed: exec failed: unable to start container process: "
                                b"container is restarting: unknown\n")


class ScriptedExec:
    def __init__(self, *results):
        self.results, self.calls = list(results), 0

    async def run(self, namespace, pod, container, command, stdin=None, timeout=120.0):
        self.calls += 1
        result = self.results.pop(0)
        if isinstance(result, Exception):
            raise result
        return result


def session(exec_port) -> VolumeSession:
    target = volumes.VolumeTarget("mayanode", "mayanode", "mayanode", "mayanode", "/root/.mayanode", ".mayanode")
    return VolumeSession(exec_port, "ns", target, "helper-pod", "helper", "/data", "helper")


@pytest.fixture(autouse=True)
def no_wait(monkeypatch):
    monkeypatch.setattr(volumes, "EXEC_RETRY_SECONDS", 0)


async def test_a_command_the_runtime_could_not_start_is_tried_again():
    port = ScriptedExec(REFUSED, ExecError("HTTP 500 before upgrade"), ExecResult(0, b"ok", b""))
    assert (await session(port)._run(["find", "/data"])).stdout == b"ok" and port.calls == 3


async def test_refused_at_every_attempt_the_last_answer_is_the_callers_to_report():
    port = ScriptedExec(*[REFUSED] * volumes.EXEC_ATTEMPTS)
    result = await session(port)._run(["tar", "-x", "-p", "-f", "-", "-C", "/data"], stdin=b"x")
    assert result.exit_code == 126 and port.calls == volumes.EXEC_ATTEMPTS
    port = ScriptedExec(REFUSED, REFUSED, ExecError("connection refused"))
    with pytest.raises(VolumeError, match="connection refused"):
        await session(port)._run(["find", "/data"])


@pytest.mark.parametrize("answer", [
    ExecResult(126, b"", b"sh: /data/x: Permission denied\n"),          # it ran: the command's own 126
    ExecResult(1, b"", b"OCI runtime exec failed"),                      # another exit code: an answer
    ExecResult(2, b"", b"tar: x: Cannot stat"),
])
def test_a_command_that_ran_is_not_tried_again(answer):
    assert not volumes.runtime_refused(answer)


async def test_a_command_that_ran_and_failed_is_answered_at_once():
    port = ScriptedExec(ExecResult(126, b"", b"sh: /data/x: Permission denied\n"))
    assert (await session(port)._run(["/data/x"])).exit_code == 126 and port.calls == 1
