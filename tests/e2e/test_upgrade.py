"""Issue 6: version-gated upgrade rollouts on the emulated cluster and the mocknet.

The scenarios run side by side (each in its own namespace), so the slow one (a health timeout)
overlaps the others: a target that waits for adoption and then rolls out in order, a broken image
rolled back, a height-based switch, a fleet of five under a budget of one, an upgrade whose
operator is killed at every step, and one that waits for its pre-upgrade backup.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from typing import Any

import pytest

from .conftest import condition, dump, eventually, mayanode_manifest, require

OLD, NEW, BROKEN = "1.111.0", "1.112.0", "1.113.0"
ADOPT, BROKEN_NS, FLAG, CRASH = "upgrade-adopt", "upgrade-broken", "upgrade-flag", "upgrade-crash"
FLEET = [f"upgrade-fleet-{i}" for i in range(1, 6)]
CHANGE_STEPS = {"StopOld", "Mayanode", "MayanodeHealth", "Bifrost", "BifrostHealth", "Rollback"}


class Recorder:
    """A request hook on the emulated API server: image patches (with the chain height at that moment) and
    every MayaNode status the server stored, in the server's order."""

    def __init__(self, world: Any) -> None:
        self.world = world
        self.lock = threading.Lock()
        self.image_patches: list[tuple[float, str, str, int, str]] = []   # (t, ns, deployment, height, body)
        self.steps: dict[str, list[str]] = defaultdict(list)               # ns → steps in order
        self.upgrading: set[str] = set()
        self.max_upgrading: dict[str, int] = defaultdict(int)              # group → max at once
        self.groups: dict[str, str] = {}
        self.step_listeners: list[Any] = []

    async def __call__(self, request: Any, call_next: Any) -> Any:
        from mayanode_operator.sandbox.apiserver.handlers import request_info

        info = request_info(request)
        body = await request.read() if info.verb in ("patch", "update") else b""
        response = await call_next(request)
        if response.status >= 300 or not info.namespace.startswith("upgrade-"):
            return response
        if info.resource == "deployments" and info.verb == "patch" and b"image" in body:
            with self.lock:
                self.image_patches.append((time.monotonic(), info.namespace, info.name, self.world.mocknet.height,
                                           body.decode()))
        if info.resource == "mayanodes" and info.subresource == "status" and info.verb in ("patch", "update"):
            try:
                stored = json.loads(response.text or response.body)
            except (ValueError, TypeError, AttributeError):
                return response
            step = (((stored.get("status") or {}).get("upgrade") or {}).get("current") or {}).get("step")
            with self.lock:
                steps = self.steps[info.namespace]
                if step and (not steps or steps[-1] != step):
                    steps.append(step)
                    for listener in list(self.step_listeners):
                        listener(info.namespace, step)
                group = self.groups.get(info.namespace)
                if group:
                    (self.upgrading.add if step in CHANGE_STEPS else self.upgrading.discard)(info.namespace)
                    count = sum(1 for ns in self.upgrading if self.groups.get(ns) == group)
                    self.max_upgrading[group] = max(self.max_upgrading[group], count)
        return response

    def patches(self, namespace: str) -> list[tuple[float, str, str, int, str]]:
        with self.lock:
            return [p for p in self.image_patches if p[1] == namespace]


class ProcessWatch(threading.Thread):
    """Samples the mocknet: never two mayanode processes of one namespace at once."""

    def __init__(self, world: Any, namespaces: list[str]) -> None:
        super().__init__(daemon=True)
        self.world, self.namespaces = world, namespaces
        self.max_seen: dict[str, int] = defaultdict(int)
        self.stop_flag = threading.Event()

    def run(self) -> None:
        while not self.stop_flag.is_set():
            try:
                processes = list(self.world.mocknet.processes.values())
            except RuntimeError:            # changed size while copying: sample again
                continue
            counts: dict[str, int] = defaultdict(int)
            for process in processes:
                counts[process.namespace] += 1
            for ns in self.namespaces:
                self.max_seen[ns] = max(self.max_seen[ns], counts.get(ns, 0))
            time.sleep(0.01)


def upgrade_spec(**upgrade: Any) -> dict[str, Any]:
    gates = {"adoption": {"mode": "None"}, **upgrade.pop("gates", {})}
    return {"upgrade": {"healthTimeoutSeconds": 30, "gates": gates, **upgrade}}


def history(kube: Any, ns: str) -> list[dict[str, Any]]:
    return ((kube.mayanode(ns, ns).get("status") or {}).get("upgrade") or {}).get("history") or []


def set_versions(world: Any, ns: str) -> list[Any]:
    return [t for t in world.mocknet.transactions if t.namespace == ns and t.argv and t.argv[0] == "set-version"]


@pytest.fixture(scope="module")
def scene(world, operator, kube):
    """Every scenario's nodes, seeded and applied at once; the recorder and process watch around them."""
    require(world, "hooks", "kubelet", "images", "tx")
    recorder = Recorder(world)
    world.sandbox.api.add_request_hook(recorder)
    world.kubelet.set_image_behaviour(f"mocknet-{BROKEN}", ready=False)
    namespaces = [ADOPT, BROKEN_NS, FLAG, CRASH, *FLEET, BACKUP_NS]
    watch = ProcessWatch(world, namespaces)
    watch.start()
    nodes = {ns: world.seed_node(ns, version=OLD, status="Active" if ns == ADOPT else "Standby")
             for ns in namespaces}
    for ns in FLEET:
        recorder.groups[ns] = "fleet"
    # The slow scenarios start now and run while the others are checked.
    kube.apply(mayanode_manifest(nodes[BROKEN_NS], version=BROKEN, **upgrade_spec()))
    for ns in FLEET:
        kube.apply(mayanode_manifest(nodes[ns], version=NEW, **upgrade_spec(
            rollout={"group": "fleet", "maxConcurrent": 1, "canary": True})))
    yield {"recorder": recorder, "watch": watch, "nodes": nodes}
    watch.stop_flag.set()
    world.sandbox.api.remove_request_hook(recorder)
    world.kubelet.clear_image_behaviours()
    world.mocknet.set_network_versions([])


def test_a_target_waits_for_adoption_then_rolls_out_in_order(scene, kube, world, operator):
    node = scene["nodes"][ADOPT]
    world.mocknet.set_network_versions({OLD: 1})
    kube.apply(mayanode_manifest(node, version=NEW, upgrade={"healthTimeoutSeconds": 60}))

    def blocked():
        body = kube.mayanode(ADOPT, ADOPT)
        cond = condition(body, "UpgradeBlocked")
        assert cond.get("status") == "True" and cond["reason"] == "WaitingForAdoption", dump(body.get("status"))
        return body
    body = eventually(blocked, timeout=30, message=lambda: operator.log_text()[-3000:])
    assert body["status"]["upgrade"]["gate"]["name"] == "Adoption"
    assert "Adoption" in condition(body, "UpgradeBlocked")["message"]
    time.sleep(1.0)
    assert scene["recorder"].patches(ADOPT) == [], "no image change before the network adopted the target"

    world.mocknet.set_network_versions({OLD: 1, NEW: 100})       # next = 1.112.0 (2/3 of Active nodes)

    def done():
        entries = history(kube, ADOPT)
        assert entries and entries[-1]["result"] == "Succeeded", dump(kube.mayanode(ADOPT, ADOPT).get("status"))
        return entries[-1]
    last = eventually(done, timeout=60, message=lambda: operator.log_text()[-3000:])
    assert last["from"] == OLD and last["to"] == NEW
    patches = scene["recorder"].patches(ADOPT)
    assert [p[2] for p in patches] == ["mayanode", "bifrost"], patches      # mayanode first, then bifrost
    body = kube.mayanode(ADOPT, ADOPT)
    assert body["status"]["version"] == NEW
    assert condition(body, "UpgradeBlocked")["status"] == "False"
    assert condition(body, "Degraded")["status"] == "False"
    eventually(lambda: world.mocknet.node(node.node_address).version == NEW, timeout=10)
    time.sleep(1.0)
    assert len(set_versions(world, ADOPT)) == 1, "set-version is sent exactly once"
    steps = scene["recorder"].steps[ADOPT]
    assert steps[steps.index("Mayanode"):] == ["Mayanode", "MayanodeHealth", "Bifrost", "BifrostHealth",
                                                "SetVersion"], steps
    reasons = [e["reason"] for e in kube.events(ADOPT, ADOPT)]
    assert "UpgradeBlocked" in reasons and "UpgradeStarted" in reasons and "UpgradeSucceeded" in reasons
    assert world.mocknet.double_signs == []


def test_a_broken_image_rolls_back_and_reports_degraded(scene, kube, world, operator):
    def rolled_back():
        body = kube.mayanode(BROKEN_NS, BROKEN_NS)
        entries = ((body.get("status") or {}).get("upgrade") or {}).get("history") or []
        assert entries and entries[-1]["result"] == "RolledBack", dump(body.get("status"))
        return body
    body = eventually(rolled_back, timeout=75, message=lambda: operator.log_text()[-3000:])
    degraded = condition(body, "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] in ("HealthTimeout", "NotReady"), degraded
    assert BROKEN in degraded["message"]
    assert body["status"]["upgrade"]["state"] == "Failed"
    images = {d: kube.apps.read_namespaced_deployment(d, BROKEN_NS).spec.template.spec.containers[0].image
              for d in ("mayanode", "bifrost")}
    assert all(image.endswith(f"-{OLD}") for image in images.values()), images
    eventually(lambda: condition(kube.mayanode(BROKEN_NS, BROKEN_NS), "Ready").get("status") == "True", timeout=30)
    patches = [p[2] for p in scene["recorder"].patches(BROKEN_NS)]
    assert patches[0] == "mayanode" and "bifrost" not in patches[:1], patches
    assert set_versions(world, BROKEN_NS) == []
    assert any(e["reason"] == "RolledBack" for e in kube.events(BROKEN_NS, BROKEN_NS))
    time.sleep(2)
    assert len(scene["recorder"].patches(BROKEN_NS)) == len(patches), "a failed target is not retried by itself"


def test_a_height_based_switch_happens_at_the_height(scene, kube, world, operator):
    node = scene["nodes"][FLAG]
    switch_at = world.mocknet.height + 40
    kube.apply(mayanode_manifest(node, version=OLD, **upgrade_spec(
        heightSchedule=[{"height": switch_at, "version": NEW}])))

    def scheduled():
        up = (kube.mayanode(FLAG, FLAG).get("status") or {}).get("upgrade") or {}
        assert up.get("nextFlagDay") == {"height": switch_at, "version": NEW}, up
        return up
    eventually(scheduled, timeout=20, message=lambda: operator.log_text()[-3000:])

    def switched():
        entries = history(kube, FLAG)
        assert entries and entries[-1]["result"] == "Succeeded", dump(kube.mayanode(FLAG, FLAG).get("status"))
        return entries[-1]
    eventually(switched, timeout=60, message=lambda: operator.log_text()[-3000:])
    patches = scene["recorder"].patches(FLAG)
    assert patches[0][2] == "mayanode"
    assert switch_at <= patches[0][3] <= switch_at + 15, (switch_at, patches[0][3])
    journal = [(event, name) for _, event, ns, name in world.kubelet.journal if ns == FLAG]
    stops = [i for i, (event, _) in enumerate(journal) if event == "mayanode-stopped"]
    starts = [i for i, (event, _) in enumerate(journal) if event == "mayanode-started"]
    assert stops and starts[-1] > stops[-1], "the old mayanode stopped before the new one started"
    assert scene["watch"].max_seen[FLAG] == 1
    body = kube.mayanode(FLAG, FLAG)
    assert body["status"]["version"] == NEW and body["status"]["targetVersion"] == NEW


def test_a_fleet_of_five_with_budget_one_never_has_two_upgrading(scene, kube, world, operator):
    def all_done():
        results = {ns: (history(kube, ns) or [{}])[-1].get("result") for ns in FLEET}
        assert all(r == "Succeeded" for r in results.values()), results
        return results
    eventually(all_done, timeout=120, interval=0.5, message=lambda: operator.log_text()[-3000:])
    recorder = scene["recorder"]
    assert recorder.max_upgrading["fleet"] == 1
    windows = []
    for ns in FLEET:
        times = [p[0] for p in recorder.patches(ns)]
        assert len(times) == 2, (ns, recorder.patches(ns))
        windows.append((min(times), max(times), ns))
    windows.sort()
    for (_, end, a), (start, _, b) in zip(windows, windows[1:]):
        assert end < start, f"{a} and {b} changed images at the same time"
    lease = kube.kubectl("get", "lease", "-n", "default", "mayanode-rollout-fleet", "-o", "json").stdout
    annotations = json.loads(lease)["metadata"]["annotations"]
    assert json.loads(annotations["maya.nodeops.io/rollout-holders"]) == []
    canaries = json.loads(annotations["maya.nodeops.io/rollout-canaries"])
    assert canaries and canaries[0]["version"] == NEW and canaries[0]["result"] == "Succeeded"
    assert all(scene["watch"].max_seen[ns] == 1 for ns in FLEET)


def test_operator_killed_at_every_step_converges_with_never_two_replicas(scene, kube, world, operator):
    node = scene["nodes"][CRASH]
    recorder = scene["recorder"]
    pending: list[str] = []
    seen = threading.Event()

    def on_step(namespace: str, step: str) -> None:
        if namespace == CRASH:
            pending.append(step)
            seen.set()
    recorder.step_listeners.append(on_step)
    kills: list[str] = []
    try:
        kube.apply(mayanode_manifest(node, version=NEW, **upgrade_spec(rollout={"group": "crash"})))
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            entries = history(kube, CRASH)
            if entries and entries[-1].get("result"):
                break
            if seen.wait(0.2):
                seen.clear()
                step = pending[-1]
                if step not in kills:
                    operator.kill()                    # SIGKILL right after the step reached the API server
                    kills.append(step)
                    operator.start()
    finally:
        recorder.step_listeners.remove(on_step)
    entries = eventually(lambda: history(kube, CRASH), timeout=60)
    assert entries[-1]["result"] == "Succeeded", dump(kube.mayanode(CRASH, CRASH).get("status"))
    assert {"AcquireBudget", "Mayanode", "MayanodeHealth", "Bifrost", "BifrostHealth", "SetVersion"} <= set(kills), kills
    assert scene["watch"].max_seen[CRASH] == 1, "never two mayanode processes"
    assert world.mocknet.double_signs == []
    assert len(set_versions(world, CRASH)) <= 1, "set-version at most once"
    patches = [p[2] for p in recorder.patches(CRASH)]
    assert patches.count("mayanode") >= 1 and patches.index("mayanode") < patches.index("bifrost"), patches
    for deployment in ("mayanode", "bifrost"):
        dep = kube.apps.read_namespaced_deployment(deployment, CRASH)
        assert dep.spec.replicas == 1 and dep.spec.template.spec.containers[0].image.endswith(f"-{NEW}")
    assert operator.running


# ---- an upgrade that needs a fresh backup first ------------------------------------------------------------
BACKUP_NS = "upgrade-backup"


class GateOrder:
    """A request hook: in the API server's order, for one namespace, the MayaNode's upgrade gate and UpgradeBlocked
    condition at each status write, the NodeBackups created and their phases, and the image patches. A NodeBackup
    status write that says Completed is held until `release` is set: a backup that takes its time."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.lock = threading.Lock()
        self.entries: list[tuple[str, Any]] = []
        self.release = threading.Event()
        self.holding = threading.Event()

    async def __call__(self, request: Any, call_next: Any) -> Any:
        import asyncio

        from mayanode_operator.sandbox.apiserver.handlers import request_info

        info = request_info(request)
        if info.namespace != self.namespace:
            return await call_next(request)
        body = await request.read() if info.verb in ("create", "patch", "update") else b""
        if info.resource == "nodebackups" and info.subresource == "status" and _says_completed(body):
            self.holding.set()
            while not self.release.is_set():
                await asyncio.sleep(0.05)
        response = await call_next(request)
        if response.status >= 300:
            return response
        entry: tuple[str, Any] | None = None
        if info.resource == "deployments" and info.verb == "patch" and b"image" in body:
            entry = ("image", info.name)
        elif info.resource in ("mayanodes", "nodebackups") and info.verb in ("create", "patch", "update"):
            try:
                stored = json.loads(response.text or response.body)
            except (ValueError, TypeError, AttributeError):
                return response
            status = stored.get("status") or {}
            if info.resource == "nodebackups" and info.verb == "create":
                entry = ("backup-created", (stored["metadata"]["name"], stored["spec"].get("reason")))
            elif info.resource == "nodebackups" and info.subresource == "status":
                entry = ("backup-phase", (stored["metadata"]["name"], status.get("phase")))
            elif info.resource == "mayanodes" and info.subresource == "status":
                gate = (status.get("upgrade") or {}).get("gate") or {}
                cond = condition(stored, "UpgradeBlocked")
                entry = ("gate", ((status.get("upgrade") or {}).get("state"), gate.get("name"), gate.get("reason"),
                                  cond.get("status"), cond.get("reason"), cond.get("message")))
        if entry is not None:
            with self.lock:
                self.entries.append(entry)
        return response

    def snapshot(self) -> list[tuple[str, Any]]:
        with self.lock:
            return list(self.entries)


def _says_completed(body: bytes) -> bool:
    """A status write (merge patch or whole object) that sets phase Completed."""
    try:
        doc = json.loads(body)
    except ValueError:
        return False
    return isinstance(doc, dict) and ((doc.get("status") or {}).get("phase") == "Completed")


def test_an_upgrade_waits_for_a_fresh_pre_upgrade_backup_then_rolls_out(scene, kube, world, operator):
    from mayanode_operator.api import naming
    from mayanode_operator.backup import generate_identity

    node = scene["nodes"][BACKUP_NS]
    identity, recipient = generate_identity()
    kube.core.create_namespaced_secret(BACKUP_NS, {"metadata": {"name": "age-identity"},
                                                   "stringData": {"identity": identity}})
    location = {"secret": {}, "encryption": {"recipients": [recipient], "identitySecret": {"name": "age-identity"}}}
    order = GateOrder(BACKUP_NS)
    world.sandbox.api.add_request_hook(order)
    try:
        kube.apply(mayanode_manifest(node, version=NEW, backup={"afterChurn": False, "location": location},
                                     **upgrade_spec(gates={"preUpgradeBackup": True})))
        try:
            assert order.holding.wait(30), dump(kube.mayanode(BACKUP_NS, BACKUP_NS).get("status"))

            def waiting_for_backup():                  # the backup is still InProgress: the upgrade waits, and says so
                body = kube.mayanode(BACKUP_NS, BACKUP_NS)
                cond = condition(body, "UpgradeBlocked")
                assert (cond.get("status"), cond.get("reason")) == ("True", "WaitingForBackup"), \
                    dump(body.get("status"))
                return body
            body = eventually(waiting_for_backup, timeout=15, message=lambda: operator.log_text()[-3000:])
            name = body["status"]["upgrade"]["current"]["backupName"]
            assert body["status"]["upgrade"]["state"] == "Blocked"
            assert body["status"]["upgrade"]["gate"]["name"] == "PreUpgradeBackup"
            assert name in condition(body, "UpgradeBlocked")["message"]
            assert kube.get_custom(naming.NODEBACKUP_PLURAL, BACKUP_NS, name)["status"]["phase"] == "InProgress"
            time.sleep(1.0)
            assert [kind for kind, _ in order.snapshot() if kind == "image"] == [], "no image change before the backup"
        finally:
            order.release.set()

        def done():
            entries = history(kube, BACKUP_NS)
            assert entries and entries[-1]["result"] == "Succeeded", \
                dump(kube.mayanode(BACKUP_NS, BACKUP_NS).get("status"))
            return entries[-1]
        last = eventually(done, timeout=60, message=lambda: operator.log_text()[-3000:])
    finally:
        world.sandbox.api.remove_request_hook(order)
    assert last["from"] == OLD and last["to"] == NEW
    entries = order.snapshot()
    kinds = [kind for kind, _ in entries]

    # The operator made the backup itself, once, named for the target and the current vault (a fresh one) …
    created = [value for kind, value in entries if kind == "backup-created"]
    churn = (kube.mayanode(BACKUP_NS, BACKUP_NS)["status"].get("network") or {}).get("lastChurnHeight")
    fresh_for = f"-c{churn}" if churn is not None else ""           # no churn seen yet: any new backup is fresh
    assert created == [(f"{BACKUP_NS}-preupgrade-1-112-0{fresh_for}", "PreUpgrade")], entries
    assert created[0][0] == name
    backup = kube.get_custom(naming.NODEBACKUP_PLURAL, BACKUP_NS, name)
    assert backup["spec"]["nodeRef"]["name"] == BACKUP_NS and backup["status"]["phase"] == "Completed"
    assert condition(backup, "Verified")["status"] == "True", dump(backup["status"])

    # … and said why it waited, with no image changed meanwhile …
    completed = entries.index(("backup-phase", (name, "Completed")))
    first_image = kinds.index("image")
    waiting = [value for kind, value in entries[:completed] if kind == "gate" and value[0] == "Blocked"]
    assert waiting, entries
    for state, gate, reason, cond_status, cond_reason, message in waiting:
        assert (gate, cond_status) == ("PreUpgradeBackup", "True"), waiting
        assert reason == cond_reason and reason in ("CreatingBackup", "WaitingForBackup"), waiting
        assert name in message and message.startswith("PreUpgradeBackup"), waiting

    # … until the backup was Completed: only then the rollout, mayanode first.
    assert completed < first_image, entries
    assert [value for kind, value in entries if kind == "image"] == ["mayanode", "bifrost"], entries
    assert not [value for kind, value in entries[completed:] if kind == "gate" and value[0] == "Blocked"], entries
    # Events follow the status write they describe: wait for them.
    eventually(lambda: {"PreUpgradeBackupRequested", "UpgradeSucceeded"} <=
               {e["reason"] for e in kube.events(BACKUP_NS, BACKUP_NS)}, timeout=10,
               message="PreUpgradeBackupRequested and UpgradeSucceeded events")
    assert scene["watch"].max_seen[BACKUP_NS] == 1
    assert world.mocknet.double_signs == []
