"""The node's workloads: both Deployments read, then their pods in one LIST that each Deployment sorts out."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mayanode_operator.observe.kube import covering_selector, observe_workloads, selects, workload_from_objects
from mayanode_operator.sandbox.apiserver.selectors import label_matcher

NS = "node-a"
NAME, INSTANCE = "app.kubernetes.io/name", "app.kubernetes.io/instance"


def labels_of(name: str) -> dict[str, str]:
    return {NAME: name, INSTANCE: name}


def deployment(name: str, labels: dict[str, str] | None = None) -> dict:
    labels = labels_of(name) if labels is None else labels
    return {"metadata": {"name": name, "generation": 3},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                     "template": {"spec": {"containers": [{"name": name, "image": f"{name}:1.0"}]}}},
            "status": {"readyReplicas": 1, "updatedReplicas": 1, "observedGeneration": 3}}


def pod(name: str, labels: dict[str, str]) -> dict:
    return {"metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"image": "x"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}


class FakeKube:
    """Answers as the API server would, recording the requests."""

    def __init__(self, deployments: dict[str, dict], pods: list[dict]) -> None:
        self.deployments, self.pods, self.calls = deployments, pods, []

    async def get_deployment(self, namespace, name):
        self.calls.append(("get", name))
        return self.deployments.get(name)

    async def list_pods(self, namespace, labels):
        self.calls.append(("list", ",".join(f"{k}={v}" for k, v in sorted(labels.items()))))
        return [p for p in self.pods if selects(labels, p)]

    async def list_pods_selected(self, namespace, selector):
        self.calls.append(("list", selector))
        return [p for p in self.pods if label_matcher(selector)(p)]


WORKLOADS = [("mayanode", "mayanode"), ("bifrost", "bifrost")]
PODS = [pod("mayanode-1", labels_of("mayanode")), pod("bifrost-1", labels_of("bifrost")),
        pod("stray", {NAME: "mayanode", INSTANCE: "bifrost"}),       # matches the LIST's selector, neither Deployment
        pod("gateway-1", labels_of("gateway"))]


def one_by_one(kube: FakeKube, name: str, container: str):
    """What a LIST per Deployment observes: the reference."""
    body = kube.deployments[name]
    labels = body["spec"]["selector"]["matchLabels"]
    return workload_from_objects(body, [p for p in kube.pods if selects(labels, p)], container)


async def test_one_list_for_both_deployments_observes_what_a_list_each_did():
    kube = FakeKube({"mayanode": deployment("mayanode"), "bifrost": deployment("bifrost")}, PODS)
    mayanode, bifrost = await observe_workloads(kube, NS, WORKLOADS)
    assert kube.calls == [("get", "mayanode"), ("get", "bifrost"),
                          ("list", f"{INSTANCE} in (bifrost,mayanode),{NAME} in (bifrost,mayanode)")]
    assert mayanode == one_by_one(kube, "mayanode", "mayanode")
    assert bifrost == one_by_one(kube, "bifrost", "bifrost")
    assert [p.name for p in mayanode.pods] == ["mayanode-1"] and [p.name for p in bifrost.pods] == ["bifrost-1"]


async def test_a_missing_deployment_and_an_empty_selector():
    kube = FakeKube({"bifrost": deployment("bifrost")}, PODS)
    mayanode, bifrost = await observe_workloads(kube, NS, WORKLOADS)
    assert not mayanode.exists and mayanode.name == "mayanode"
    assert bifrost == one_by_one(kube, "bifrost", "bifrost")
    assert kube.calls[-1] == ("list", f"{INSTANCE}=bifrost,{NAME}=bifrost")

    kube = FakeKube({"mayanode": deployment("mayanode", {}), "bifrost": deployment("bifrost")}, PODS)
    mayanode, bifrost = await observe_workloads(kube, NS, WORKLOADS)
    assert mayanode.exists and mayanode.pods == ()
    assert [p.name for p in bifrost.pods] == ["bifrost-1"]

    kube = FakeKube({}, PODS)
    assert [w.exists for w in await observe_workloads(kube, NS, WORKLOADS)] == [False, False]
    assert [c[0] for c in kube.calls] == ["get", "get"]


async def test_selectors_without_a_shared_key_list_each_deployment_alone():
    kube = FakeKube({"mayanode": deployment("mayanode", {"a": "1"}), "bifrost": deployment("bifrost", {"b": "2"})},
                    [pod("p1", {"a": "1"}), pod("p2", {"b": "2"}), pod("p3", {"c": "3"})])
    mayanode, bifrost = await observe_workloads(kube, NS, WORKLOADS)
    assert sorted(kube.calls[2:]) == [("list", "a=1"), ("list", "b=2")]          # never the whole namespace
    assert [p.name for p in mayanode.pods] == ["p1"] and [p.name for p in bifrost.pods] == ["p2"]


def test_covering_selector():
    assert covering_selector([]) == ""
    assert covering_selector([{"a": "1", "b": "2"}]) == "a=1,b=2"
    assert covering_selector([{"a": "1", "b": "2"}, {"a": "1", "b": "3", "c": "4"}]) == "a=1,b in (2,3)"
    assert covering_selector([{"a": "1"}, {"b": "1"}]) == ""
    assert covering_selector([{"a": "", "b": "1"}, {"a": "x", "b": "1"}]) == "b=1"       # no empty value in a set


label_keys = st.sampled_from(["a", "b", "c"])
label_values = st.sampled_from(["", "x", "y", "z"])
label_sets = st.dictionaries(label_keys, label_values, max_size=3)


@given(st.lists(label_sets.filter(bool), min_size=1, max_size=3), st.lists(label_sets, max_size=8))
def test_the_covering_selector_matches_every_pod_a_deployment_selects(selectors, pod_labels):
    matcher = label_matcher(covering_selector(selectors))       # the emulated API server's parser and matcher
    for labels in pod_labels:
        candidate = pod("p", labels)
        if any(selects(s, candidate) for s in selectors):
            assert matcher(candidate)
        for s in selectors:
            assert selects(s, candidate) == label_matcher(",".join(f"{k}={v}" for k, v in s.items()))(candidate)
