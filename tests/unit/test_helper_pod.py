"""The helper pod that reads and writes a node's volume: root (the node's files are root's and keep their owners),
but within the Pod Security Standards' baseline, and admitted where a quota asks for requests and limits; one that
never runs says why."""

from __future__ import annotations

import pytest

from mayanode_operator.adapters import volumes

from .test_restore_helper_wait import FakeCore

# The capabilities the baseline profile allows a container to add (Kubernetes Pod Security Standards).
BASELINE_CAPABILITIES = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
                         "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}


TARGET = volumes.VolumeTarget("mayanode", "mayanode", "mayanode", "mayanode", "/root/.mayanode", ".mayanode")


def helper(**kwargs) -> dict:
    return volumes.helper_pod_body("node-a", TARGET, image="busybox:1.36", labels={}, **kwargs)


def test_the_helper_meets_the_baseline_profile_and_drops_what_tar_does_not_need():
    spec = helper()["spec"]
    (container,) = spec["containers"]
    context = container["securityContext"]
    assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")
    assert all("hostPath" not in volume for volume in spec["volumes"])
    assert context["privileged"] is False and context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    assert set(context["capabilities"]["add"]) <= BASELINE_CAPABILITIES
    assert set(context["capabilities"]["add"]) == {"CHOWN", "DAC_OVERRIDE", "FOWNER"}   # tar -x -p: owners, modes
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert context["readOnlyRootFilesystem"] is True
    assert spec["automountServiceAccountToken"] is False
    assert container["volumeMounts"] == [{"name": "data", "mountPath": volumes.HELPER_MOUNT}]


def test_the_helper_states_requests_and_limits():
    resources = helper()["spec"]["containers"][0]["resources"]
    assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}


def test_each_helper_gets_its_own_copy_of_the_settings():
    first, second = helper(), helper()
    first["spec"]["containers"][0]["securityContext"]["capabilities"]["add"].append("SYS_ADMIN")
    assert "SYS_ADMIN" not in second["spec"]["containers"][0]["securityContext"]["capabilities"]["add"]
    assert "SYS_ADMIN" not in volumes.HELPER_SECURITY_CONTEXT["capabilities"]["add"]


async def test_a_backup_helper_that_never_runs_says_what_holds_it_and_is_deleted():
    class Kube:
        core = FakeCore({"phase": "Pending", "containerStatuses": [
            {"name": "helper", "state": {"waiting": {"reason": "ContainerCreating"}}}]}, name="backup-helper-1")

        async def get_deployment(self, namespace, name):
            return None

        async def pod_warning_events(self, namespace, pod_name):
            assert (namespace, pod_name) == ("node-a", "backup-helper-1")
            return [{"type": "Warning", "reason": "FailedAttachVolume", "lastTimestamp": "2026-11-21T10:00:00Z",
                     "message": 'Multi-Attach error for volume "pvc-1" Volume is already used by pod(s) mayanode-0'}]

    node_volumes = volumes.NodeVolumes(Kube(), exec_port=None, helper_timeout=0, poll=0)
    with pytest.raises(volumes.VolumeError) as raised:
        async with node_volumes.session("node-a", TARGET, mode="helper"):
            pass
    assert str(raised.value) == (
        "helper pod node-a/backup-helper-1 on PVC mayanode did not run within 0s: ContainerCreating; FailedAttachVolume: "
        'Multi-Attach error for volume "pvc-1" Volume is already used by pod(s) mayanode-0')
    assert Kube.core.deleted == ["backup-helper-1"]


TOLERATION = {"key": "dedicated", "operator": "Equal", "value": "validator", "effect": "NoExecute"}


async def test_a_backup_helper_goes_where_the_components_pod_holds_the_volume():
    """A mayanode pod that crash-loops has no running container to read through, yet its volume is attached to its
    node: a helper anywhere else would never attach (ReadWriteOnce). It tolerates what the component tolerates."""
    crash_looping = {"metadata": {"name": "mayanode-0"}, "spec": {"nodeName": "worker-2"},
                     "status": {"phase": "Running", "containerStatuses": [
                         {"name": "mayanode", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}

    class Kube:
        core = FakeCore({"phase": "Running", "containerStatuses": [
            {"name": "helper", "state": {"running": {"startedAt": "2026-11-21T10:00:00Z"}}}]}, name="backup-helper-1")

        async def get_deployment(self, namespace, name):
            return {"spec": {"selector": {"matchLabels": {"app": name}},
                             "template": {"spec": {"tolerations": [TOLERATION]}}}}

        async def list_pods(self, namespace, labels):
            return [crash_looping] if labels == {"app": "mayanode"} else []

    async with volumes.NodeVolumes(Kube(), exec_port=None, poll=0).session("node-a", TARGET) as session:
        assert session.via == "helper" and session.pod == "backup-helper-1"
    assert [(body["spec"].get("nodeName"), body["spec"].get("tolerations")) for body in Kube.core.created] == \
        [("worker-2", [TOLERATION])]
