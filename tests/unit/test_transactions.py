import json

import pytest

from mayanode_operator.adapters.exec import ExecError, ExecResult
from mayanode_operator.adapters.transactions import NodeSigner, NodeTransactions, TransactionSender
from mayanode_operator.adapters.workloads import UnsafeWorkloadChange, check_recreate, check_single_replica
from mayanode_operator.plan.transactions import TxRequest, classify_tx, may_have_been_broadcast, tx_command

PASSWORD = "correct horse battery staple"


def test_command_carries_no_secret():
    argv = tx_command(TxRequest("set-ip-address", ("203.0.113.7",)), "mayachain", "mayachain-mainnet-v1")
    assert argv[:5] == ["mayanode", "tx", "mayachain", "set-ip-address", "203.0.113.7"]
    assert "--from" in argv and "--keyring-backend" in argv and PASSWORD not in " ".join(argv)


def answer(code=0, raw_log="", txhash="ABC"):
    return json.dumps({"height": "0", "txhash": txhash, "code": code, "raw_log": raw_log}).encode()


@pytest.mark.parametrize("exit_code,stdout,stderr,kind", [
    (0, answer(), b"", "ok"),
    (1, answer(32, "account sequence mismatch, expected 5, got 4"), b"", "transient"),
    (1, b"", b"Error: post failed: connection refused", "transient"),
    (1, answer(4, "unauthorized: not a node account"), b"", "failed"),
    (1, b"", b"Error: invalid ip address", "failed"),
    (0, b"not json at all", b"", "failed"),
    (0, answer(18, "invalid request"), b"", "failed"),
    (126, b"", b"OCI runtime exec failed: exec failed: unable to start container process: not running: unknown",
     "transient"),
    (127, b"", b'exec: "mayanode": executable file not found in $PATH', "failed"),
])
def test_classify(exit_code, stdout, stderr, kind):
    assert classify_tx(exit_code, stdout, stderr).kind == kind


class ScriptedExec:
    def __init__(self, *results):
        self.results = list(results)
        self.calls = []

    async def run(self, namespace, pod, container, command, stdin=None, timeout=120.0):
        self.calls.append((command, stdin))
        result = self.results.pop(0)
        if isinstance(result, Exception):
            raise result
        return result


async def test_transient_errors_are_retried_then_succeed_and_password_only_on_stdin():
    port = ScriptedExec(ExecResult(1, answer(32, "account sequence mismatch"), b""),
                        ExecError("exec into n/p (mayanode) refused: HTTP 0 Handshake status 500"),
                        ExecResult(0, answer(), b""))
    sender = TransactionSender(port, retry_delays=(0, 0))
    outcome = await sender.send(namespace="n", pod="p", container="mayanode", request=TxRequest("set-version"),
                                password=PASSWORD, signer_name="mayachain", chain_id="c")
    assert outcome.ok and len(port.calls) == 3
    for command, stdin in port.calls:
        assert stdin == (PASSWORD + "\n").encode() and PASSWORD not in " ".join(command)


@pytest.mark.parametrize("answer_", [
    ExecError("exec mayanode in n/p: connection closed without an exit status"),      # it may have run
    ExecError("exec mayanode in n/p timed out after 60s"),
    ExecResult(1, answer(19, "tx already exists in cache"), b""),                      # it is in the mempool
])
async def test_an_answer_that_may_mean_broadcast_is_never_retried(answer_):
    port = ScriptedExec(answer_, ExecResult(0, answer(), b""))
    sender = TransactionSender(port, retry_delays=(0, 0))
    outcome = await sender.send(namespace="n", pod="p", container="mayanode", request=TxRequest("mimir", ("K", "1")),
                                password=PASSWORD, signer_name="s", chain_id="c")
    assert outcome.kind == "transient" and len(port.calls) == 1


async def test_a_final_failure_is_not_retried():
    port = ScriptedExec(ExecResult(1, answer(4, "unauthorized"), b""))
    sender = TransactionSender(port, retry_delays=(0, 0))
    outcome = await sender.send(namespace="n", pod="p", container="mayanode", request=TxRequest("set-version"),
                                password=PASSWORD, signer_name="s", chain_id="c")
    assert outcome.kind == "failed" and len(port.calls) == 1 and "unauthorized" in outcome.message


class FlakyKube:
    """The pod is found; reading the password Secret fails as an API server under load does."""

    async def get_deployment(self, namespace, name):
        return {"spec": {"selector": {"matchLabels": {"app": name}}}}

    async def list_pods(self, namespace, labels):
        return [{"metadata": {"name": "mayanode-0"},
                 "status": {"phase": "Running", "containerStatuses": [{"name": "mayanode", "ready": True}]}}]

    async def read_secret(self, namespace, name):
        from kubernetes.client.exceptions import ApiException
        raise ApiException(status=500, reason="Internal Server Error")


async def test_a_failure_before_the_exec_is_an_outcome_that_says_not_sent():
    port = ScriptedExec()
    node = NodeTransactions(FlakyKube(), TransactionSender(port, retry_delays=(0, 0)))
    signer = NodeSigner(namespace="n", deployment="mayanode", container="mayanode", password_secret="pw",
                        password_key="password", signer_name="s", chain_id="c")
    outcome = await node.send(signer, TxRequest("mimir", ("K", "1")))
    assert outcome.kind == "transient" and not may_have_been_broadcast(outcome) and port.calls == []
    assert "HTTP 500" in outcome.message


@pytest.mark.parametrize("replicas,ok", [(0, True), (1, True), (2, False), (-1, False)])
def test_single_replica_rule(replicas, ok):
    if ok:
        check_single_replica(replicas)
    else:
        with pytest.raises(UnsafeWorkloadChange):
            check_single_replica(replicas)


@pytest.mark.parametrize("strategy,ok", [({"type": "Recreate"}, True), ({"type": "RollingUpdate"}, False), (None, False)])
def test_image_changes_only_on_recreate(strategy, ok):
    body = {"metadata": {"name": "mayanode"}, "spec": {"strategy": strategy} if strategy else {}}
    if ok:
        check_recreate(body)
    else:
        with pytest.raises(UnsafeWorkloadChange, match="Recreate"):
            check_recreate(body)


async def test_volume_exec_is_tried_again_when_it_could_not_run_but_not_when_it_failed(monkeypatch):
    from mayanode_operator.adapters import volumes
    from mayanode_operator.adapters.volumes import VolumeError, VolumeSession

    monkeypatch.setattr(volumes, "EXEC_RETRY_SECONDS", 0)
    lost = ScriptedExec(ExecError("HTTP 500 before upgrade"), ExecResult(0, b"ok", b""))
    session = VolumeSession.__new__(VolumeSession)
    session._exec, session.namespace, session.pod, session.container = lost, "n", "p", "c"
    assert (await session._run(["find", "/root"])).stdout == b"ok" and len(lost.calls) == 2
    failed = ScriptedExec(ExecResult(2, b"", b"tar: x: Cannot stat"))
    session._exec = failed
    assert (await session._run(["tar", "cf", "-", "x"])).exit_code == 2 and len(failed.calls) == 1
    gone = ScriptedExec(*[ExecError("connection refused")] * 3)
    session._exec = gone
    with pytest.raises(VolumeError, match="connection refused"):
        await session._run(["find", "/root"])
    assert len(gone.calls) == 3
