"""The real kubectl (1.32) against the emulated API server: CRUD, apply, scale, printer columns, exec."""

from __future__ import annotations

import json
import re

import pytest

from mayanode_operator.sandbox.apiserver import ServerThread
from mayanode_operator.sandbox.apiserver.testing import kubectl

CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: mayanodes.maya.nodeops.io}
spec:
  group: maya.nodeops.io
  scope: Namespaced
  names: {kind: MayaNode, plural: mayanodes, singular: mayanode, shortNames: [mn]}
  versions:
  - name: v1alpha1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Network, type: string, jsonPath: .spec.network}
    - {name: Height, type: integer, jsonPath: .status.chain.height}
    - {name: Ready, type: string, jsonPath: '.status.conditions[?(@.type=="Ready")].status'}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [network]
            properties:
              network: {type: string, enum: [mainnet, stagenet, mocknet]}
              paused: {type: boolean, default: false}
          status:
            type: object
            x-kubernetes-preserve-unknown-fields: true
"""

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: mayanode}
spec:
  replicas: 1
  selector: {matchLabels: {app.kubernetes.io/name: mayanode}}
  template:
    metadata: {labels: {app.kubernetes.io/name: mayanode}}
    spec:
      containers:
      - {name: mayanode, image: "registry.gitlab.com/mayachain/mayanode:mocknet-1.111.0"}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    st = ServerThread().start()
    path = st.write_kubeconfig(tmp_path_factory.mktemp("kube") / "config")

    def run(*args: str, input: str | None = None, ok: bool = True):
        result = kubectl(path, *args, input=input)
        if ok:
            assert result.returncode == 0, result.stderr
        return result

    run("apply", "-f", "-", input=CRD)
    yield st, run
    st.stop()


def test_apply_get_table_and_printer_columns(cluster):
    st, run = cluster
    assert "mayanode.maya.nodeops.io/a created" in run("apply", "-f", "-", input=(
        "apiVersion: maya.nodeops.io/v1alpha1\nkind: MayaNode\nmetadata: {name: a}\nspec: {network: mocknet}\n")).stdout
    st.server.store.patch("mayanodes", "a", {"status": {"chain": {"height": 42},
                                                          "conditions": [{"type": "Ready", "status": "True"}]}},
                          "default", subresource="status")
    lines = run("get", "mn").stdout.splitlines()
    assert lines[0].split() == ["NAME", "NETWORK", "HEIGHT", "READY", "AGE"]
    assert re.fullmatch(r"a\s+mocknet\s+42\s+True\s+\d+s", lines[1]), lines
    got = json.loads(run("get", "mayanode", "a", "-o", "json").stdout)
    assert got["spec"] == {"network": "mocknet", "paused": False}
    assert run("get", "crd").stdout.split()[:3] == ["NAME", "CREATED", "AT"]
    assert "a" in run("get", "mayanodes.maya.nodeops.io", "-A").stdout


def test_kubectl_validation_messages(cluster):
    _, run = cluster
    bad = run("apply", "-f", "-", ok=False, input=(
        "apiVersion: maya.nodeops.io/v1alpha1\nkind: MayaNode\nmetadata: {name: b}\nspec: {network: foo}\n"))
    assert bad.returncode != 0
    assert 'spec.network: Unsupported value: "foo": supported values: "mainnet", "stagenet", "mocknet"' in bad.stderr
    unknown = run("create", "-f", "-", ok=False, input=(
        "apiVersion: maya.nodeops.io/v1alpha1\nkind: MayaNode\nmetadata: {name: c}\nspec: {network: mocknet, foo: 1}\n"))
    assert 'strict decoding error: unknown field "spec.foo"' in unknown.stderr
    ssa = run("apply", "--server-side", "-f", "-", ok=False, input=(
        "apiVersion: maya.nodeops.io/v1alpha1\nkind: MayaNode\nmetadata: {name: c}\nspec: {network: mocknet, foo: 1}\n"))
    assert ".spec.foo: field not declared in schema" in ssa.stderr


def test_deployment_apply_patch_scale_delete(cluster):
    st, run = cluster
    run("apply", "-f", "-", input=DEPLOYMENT)
    assert "deployment.apps/mayanode scaled" in run("scale", "deployment", "mayanode", "--replicas=0").stdout
    got = json.loads(run("get", "deploy", "mayanode", "-o", "json").stdout)
    assert got["spec"]["replicas"] == 0 and got["metadata"]["generation"] == 2
    run("patch", "deploy", "mayanode", "-p", '{"spec":{"template":{"spec":{"containers":[{"name":"mayanode",'
                                             '"image":"registry.gitlab.com/mayachain/mayanode:mocknet-1.112.0"}]}}}}')
    run("patch", "deploy", "mayanode", "--type=json", "-p",
        '[{"op":"add","path":"/metadata/labels","value":{"x":"y"}}]')
    run("patch", "deploy", "mayanode", "--type=merge", "-p", '{"metadata":{"annotations":{"a":"b"}}}')
    got = st.server.store.get("deployments.apps", "mayanode", "default")
    assert got["spec"]["template"]["spec"]["containers"][0]["image"].endswith("1.112.0")
    assert got["metadata"]["labels"] == {"x": "y"} and got["metadata"]["annotations"]["a"] == "b"
    table = run("get", "deployments").stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert "deleted" in run("delete", "deployment", "mayanode").stdout
    assert not st.server.store.exists("deployments.apps", "mayanode", "default")


def test_pods_table_delete_waits_for_graceful_completion(cluster):
    st, run = cluster
    run("apply", "-f", "-", input=("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n"
                                   "spec: {nodeName: node-1, containers: [{name: c, image: busybox}]}\n"))
    header = run("get", "pods").stdout.splitlines()[0].split()
    assert header == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    run("delete", "pod", "p", "--wait=false")
    assert "Terminating" in run("get", "pod", "p").stdout
    run("delete", "pod", "p", "--grace-period=0", "--force")
    assert "NotFound" in run("get", "pod", "p", ok=False).stderr


def test_kubectl_exec_with_stdin(cluster):
    st, run = cluster

    async def handler(request, stdin, stdout, stderr):
        data = await stdin.read()
        await stdout(b"got:" + data)
        return 0 if request.command == ["cat"] else 7

    st.server.set_exec_handler(handler)
    run("apply", "-f", "-", input=("apiVersion: v1\nkind: Pod\nmetadata: {name: e}\n"
                                   "spec: {nodeName: node-1, containers: [{name: c, image: busybox}]}\n"))
    st.server.store.patch("pods", "e", {"status": {"phase": "Running"}}, "default", subresource="status")
    result = run("exec", "-i", "e", "--", "cat", input="secret words")
    assert result.stdout == "got:secret words"
    failed = run("exec", "e", "--", "false", ok=False)
    assert failed.returncode == 7
    assert "command terminated with exit code 7" in failed.stderr


def test_explain_uses_the_crd_schema(cluster):
    _, run = cluster
    out = run("explain", "mayanodes.spec").stdout
    assert "network" in out and "paused" in out


def test_typed_kubectl_creates_sent_as_protobuf(cluster):
    st, run = cluster
    run("create", "namespace", "node-a")
    run("create", "secret", "generic", "mayanode-mnemonic", "-n", "node-a", "--from-literal=mnemonic=abandon ability")
    run("create", "configmap", "gateway-external-ip", "-n", "node-a", "--from-literal=externalIP=203.0.113.7")
    secret = st.server.store.get("secrets", "mayanode-mnemonic", "node-a")
    assert secret["data"] == {"mnemonic": "YWJhbmRvbiBhYmlsaXR5"} and secret["type"] == "Opaque"
    assert "generateName" not in secret["metadata"]
    assert st.server.store.get("configmaps", "gateway-external-ip", "node-a")["data"] == {"externalIP": "203.0.113.7"}
    refused = run("create", "deployment", "web", "--image=nginx", ok=False)
    assert "unknown format" in refused.stderr                   # protobuf Deployments are not decoded


def test_get_watch_and_wait(cluster):
    import subprocess
    import time
    st, run = cluster
    run("apply", "-f", "-", input=("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: watched}\n"))
    from mayanode_operator.sandbox.apiserver.testing import KUBECTL
    config = st.server.write_kubeconfig(__import__("tempfile").mkdtemp() + "/config")
    watcher = subprocess.Popen([KUBECTL, "--kubeconfig", str(config), "get", "cm", "watched", "-w",
                                "--request-timeout=3s"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    st.server.store.patch("configmaps", "watched", {"data": {"a": "1"}}, "default")
    time.sleep(0.5)
    watcher.terminate()
    out = watcher.communicate(timeout=5)[0]
    assert out.splitlines()[0].split() == ["NAME", "DATA", "AGE"]
    assert len([line for line in out.splitlines() if line.startswith("watched")]) == 2
    crd_ready = run("wait", "--for=condition=Established", "crd/mayanodes.maya.nodeops.io", "--timeout=5s")
    assert "condition met" in crd_ready.stdout
