"""Secret hygiene: run the scenarios, collect everything that left the operator (logs with exception
messages, events, status and metadata of the three kinds, ConfigMaps, what it sent to the API server
including exec argv, the metrics text) and search it for every seeded secret."""

from __future__ import annotations

import dataclasses
import socket
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from mayanode_operator.api import naming
from mayanode_operator.backup.crypto import generate_identity
from mayanode_operator.sandbox import kubeclient as kc
from mayanode_operator.sandbox.crashsweep import Scenario, Step, run_once
from mayanode_operator.sandbox.secretscan import (
    OutboundRecorder,
    Secret,
    SecretScanner,
    collect_outputs,
    identity_secrets,
)
from mayanode_operator.sandbox.world import SandboxThread

from ..crash.scenarios import IP_AND_MIMIR, mayanode_body

pytestmark = pytest.mark.timeout(180)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fail_then_recover(mode: str):
    def action(run):
        run.mocknet.fail(run.namespace, mode)
    return action


# Error paths put exception text and URLs in logs and conditions: the likeliest place for a leak.
ERRORS = Scenario(
    name="secrets-errors",
    setup=lambda run: run.seed_node(ip_address="203.0.113.9"),
    steps=[
        # Ready first, so that the failure below flips NodeAPIReachable and is announced by an event
        Step(lambda run: run.apply(mayanode_body(run)), until=lambda run: run.condition("Ready").get("status") == "True"),
        Step(_fail_then_recover("garbage"),
             until=lambda run: run.condition("NodeAPIReachable").get("reason") == "InvalidResponse"),
        Step(_fail_then_recover("huge"),
             until=lambda run: run.condition("NodeAPIReachable").get("reason") == "TooLarge"),
        Step(_fail_then_recover(None), until=lambda run: run.condition("Ready").get("status") == "True"),
    ],
    converged=lambda run: run.condition("Ready").get("status") == "True",
)


AGE_IDENTITY, AGE_RECIPIENT = generate_identity()


def observed_ready(run) -> bool:
    return run.condition("Ready").get("status") == "True"


def seed_with_age_identity(run) -> None:
    run.seed_node(ip_address="203.0.113.10")
    run.call(run.sandbox.client.create(kc.SECRETS, {"metadata": {"name": "backup-age-identity"},
                                                    "stringData": {"identity": AGE_IDENTITY}}, run.namespace))


def backup_completed(run) -> bool:
    cond = run.condition("Completed", kind="NodeBackup", name="bk")
    assert cond.get("status") == "True", run.get("NodeBackup", "bk")
    return True


# A backup encrypted to an age recipient and verified with the identity: the archive, the identity and
# every key file pass through the operator.
BACKUP = Scenario(
    name="secrets-backup",
    setup=seed_with_age_identity,
    steps=[
        Step(lambda run: run.apply(mayanode_body(run)), until=observed_ready),
        Step(lambda run: run.apply({
            "apiVersion": naming.API_VERSION, "kind": "NodeBackup",
            "metadata": {"name": "bk", "namespace": run.namespace},
            "spec": {"nodeRef": {"name": run.namespace}, "reason": "Manual", "location": {
                "secret": {}, "encryption": {"recipients": [AGE_RECIPIENT], "identitySecret": {
                    "name": "backup-age-identity", "key": "identity"}}}}}),
             until=backup_completed, timeout=60),
    ],
    converged=backup_completed,
)


@pytest.fixture(scope="module")
def hygiene_world(tmp_path_factory):
    with SandboxThread(block_interval=0.2, workdir=tmp_path_factory.mktemp("secrets-world")) as world:
        yield world


def test_no_secret_leaves_the_operator(hygiene_world, tmp_path):
    world = hygiene_world
    recorder = world.call(_install(world, OutboundRecorder()))
    metrics: dict[str, str] = {}

    def run_with_metrics(scenario: Scenario, namespace: str):
        port = _free_port()
        with_metrics = dataclasses.replace(scenario, operator_env={"MAYANODE_OPERATOR_METRICS_PORT": str(port)})

        def read_metrics(run):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
                metrics[namespace] = response.read().decode()

        return run_once(world, with_metrics, namespace, log_dir=tmp_path, on_converged=read_metrics)

    try:
        with ThreadPoolExecutor(3) as pool:
            runs = list(pool.map(run_with_metrics, (ERRORS, IP_AND_MIMIR, BACKUP),
                                 ("secrets-errors", "secrets-tx", "secrets-backup")))
    finally:
        world.call(_uninstall(world, recorder))
    for result, _ in runs:
        assert result.ok, "\n".join(result.violations)
    logs = [run.data["log_path"] for _, run in runs]

    outputs = collect_outputs(world, log_paths=logs, recorder=recorder)
    outputs.update({f"metrics {ns}": text for ns, text in metrics.items()})
    secrets = [s for node in world.sandbox.nodes.values() for s in identity_secrets(node.identity)]
    secrets.append(Secret("age identity", AGE_IDENTITY))
    leaks = SecretScanner(secrets).scan(outputs)
    assert not leaks, "\n".join(map(str, leaks))

    # The scan sees what it should: the outputs are not empty, and a planted secret is found.
    assert "NodeAPIUnreachable" in outputs["events"] and "secrets-errors" in outputs["mayanodes.maya.nodeops.io status+metadata"]
    assert "set-ip-address" in outputs["requests sent by the operator"]
    assert "secrets-backup" in outputs["nodebackups.maya.nodeops.io status+metadata"]
    assert all("mayanode_" in text for text in metrics.values())
    assert any(line.startswith('{"time"') for line in outputs[f"log {logs[0].name}"].splitlines())
    planted = {"events": outputs["events"] + " oops " + next(iter(world.sandbox.nodes.values())).identity.password}
    assert [leak.secret for leak in SecretScanner(secrets).scan(planted)] == ["keyring password"]


def test_the_scanner_finds_every_form_and_never_prints_the_secret():
    from mayanode_operator.sandbox.identity import NodeIdentity

    who = NodeIdentity.from_seed("scanner-check")
    secrets = identity_secrets(who) + [Secret("age identity", "AGE-SECRET-KEY-1QQQQQQQQQQQQQQ")]
    words = who.mnemonic.split()
    texts = {
        "a": "mnemonic: " + " ".join(words[5:9]),
        "b": "key " + who.consensus_private_key.hex().upper(),
        "c": "seed=" + who.node_private_key[:32].hex(),
        "d": "AGE-SECRET-KEY-1QQQQQQQQQQQQQQ",
        "e": "pubkey " + who.consensus_pubkey_base64 + " " + who.node_address,       # public: no leak
    }
    leaks = SecretScanner(secrets).scan(texts)
    assert {leak.source for leak in leaks} == {"a", "b", "c", "d"}
    assert all(who.mnemonic not in str(leak) and who.password not in str(leak) for leak in leaks)
    assert "<" in str(leaks[0]) and who.mnemonic not in repr(secrets)


async def _install(world, recorder):
    return recorder.install(world.sandbox.api)


async def _uninstall(world, recorder):
    world.sandbox.api.remove_request_hook(recorder)
