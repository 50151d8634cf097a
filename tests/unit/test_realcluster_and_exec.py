import io
import json
import tarfile

import pytest

from mayanode_operator.adapters.exec import ExecError, exit_code_from_status
from mayanode_operator.sandbox.identity import HomeEntry
from mayanode_operator.sandbox.realcluster import (
    STANDIN_IMAGE, home_tar, nodes_ready, ready_container_names, standin_stack,
)


@pytest.mark.parametrize("status,code", [
    ('{"metadata":{},"status":"Success"}', 0),
    (json.dumps({"status": "Failure", "reason": "NonZeroExitCode",
                 "details": {"causes": [{"reason": "ExitCode", "message": "2"}]}}), 2),
    (b'{"status":"Success"}', 0),
])
def test_exit_codes(status, code):
    assert exit_code_from_status(status, "exec tar") == code


@pytest.mark.parametrize("status,fragment", [
    ("", "without an exit status"),
    ("not json", "unreadable"),
    ('{"status":"Failure","message":"container not found (\\"x\\")"}', "container not found"),
])
def test_exec_failures_without_an_exit_code(status, fragment):
    with pytest.raises(ExecError, match=fragment):
        exit_code_from_status(status, "exec tar")


def node(ready, unschedulable=False):
    return {"spec": {"unschedulable": unschedulable},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


@pytest.mark.parametrize("items,expected", [
    ([], False), ([node(False)], False), ([node(True, unschedulable=True)], False),
    ([node(False), node(True)], True),
])
def test_nodes_ready(items, expected):
    assert nodes_ready({"items": items}) is expected


def test_standin_keeps_env_and_mounts_but_not_the_image():
    deployment = {"kind": "Deployment", "spec": {"template": {"spec": {
        "initContainers": [{"name": "init"}],
        "containers": [{"name": "mayanode", "image": "registry/mayanode:x", "args": ["run"],
                        "env": [{"name": "A", "value": "1"}], "volumeMounts": [{"name": "d", "mountPath": "/root"}],
                        "readinessProbe": {"httpGet": {"port": 1317}}}]}}}}
    pvc = {"kind": "PersistentVolumeClaim", "spec": {"storageClassName": "standard"}}
    out_deployment, out_pvc = standin_stack([deployment, pvc])
    container = out_deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == STANDIN_IMAGE and "args" not in container and "readinessProbe" not in container
    assert container["env"] == [{"name": "A", "value": "1"}] and container["volumeMounts"][0]["mountPath"] == "/root"
    assert "initContainers" not in out_deployment["spec"]["template"]["spec"]
    assert "storageClassName" not in out_pvc["spec"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "registry/mayanode:x"  # input kept


def test_home_tar_keeps_modes_under_the_subpath():
    data = home_tar([HomeEntry("config", None, 0o700), HomeEntry("config/key.json", b"{}", 0o600)], ".mayanode")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members[".mayanode/config"].isdir() and members[".mayanode/config/key.json"].mode == 0o600


def test_ready_containers_of_a_terminating_pod_are_none():
    pod = {"metadata": {}, "status": {"containerStatuses": [{"name": "mayanode", "ready": True},
                                                            {"name": "bifrost", "ready": False}]}}
    assert ready_container_names(pod) == {"mayanode"}
    pod["metadata"]["deletionTimestamp"] = "2026-11-21T10:00:00Z"
    assert ready_container_names(pod) == set()
