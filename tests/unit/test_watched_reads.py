"""WatchedReads: a kept read is current while nothing changed in its namespace, the watches had shown what it was
made of, and it is not older than max_age."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mayanode_operator.reconcile.watched import WatchedReads


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def obj(name: str, version: str) -> dict:
    return {"metadata": {"name": name, "resourceVersion": version}}


def running(clock: Clock | None = None, max_age: float = 300.0) -> WatchedReads:
    watched = WatchedReads(clock=clock or Clock(), max_age=max_age)
    watched.running = True
    return watched


def test_a_read_is_kept_until_its_namespace_changes():
    watched = running()
    epoch = watched.epoch("ns")
    watched.keep("ns", "k", ("read",), epoch)
    assert watched.get("ns", "k") == ("read",)
    watched.changed("other")                            # another namespace: still current
    assert watched.get("ns", "k") == ("read",)
    watched.changed("ns")
    assert watched.get("ns", "k") is None


def test_nothing_is_kept_without_the_watches():
    watched = WatchedReads()
    watched.keep("ns", "k", ("read",), watched.epoch("ns"))
    assert watched.get("ns", "k") is None


def test_a_read_during_which_the_namespace_changed_is_not_kept():
    watched = running()
    epoch = watched.epoch("ns")                         # the read starts…
    watched.changed("ns")                               # …a write or an event comes meanwhile…
    watched.keep("ns", "k", ("maybe old",), epoch)      # …its answer may be from before
    assert watched.get("ns", "k") is None


def test_a_new_resource_version_or_a_deletion_changes_the_namespace_a_repeated_one_does_not():
    watched = running()
    watched.seen("pods", "ns", "p", "1")
    watched.keep("ns", "k", "v", watched.epoch("ns"))
    watched.seen("pods", "ns", "p", "1")                # kopf's re-listing shows what it showed
    assert watched.get("ns", "k") == "v"
    watched.seen("pods", "ns", "p", "2")
    assert watched.get("ns", "k") is None
    watched.keep("ns", "k", "v2", watched.epoch("ns"))
    watched.seen("pods", "ns", "p", "2", deleted=True)
    assert watched.get("ns", "k") is None


def test_covers_only_what_the_watch_showed_at_the_same_version():
    watched = running()
    assert not watched.covers("pods", "ns", [])         # no watch event there yet: the watch may not run
    watched.seen("pods", "ns", "a", "5")
    watched.seen("pods", "ns", "b", "7")
    assert watched.covers("pods", "ns", [obj("a", "5"), obj("b", "7")])
    assert watched.covers("pods", "ns", [])             # the watch runs in ns, and the read found no pod
    assert not watched.covers("pods", "ns", [obj("a", "6")])      # the watch lags behind the read
    assert not watched.covers("pods", "ns", [obj("c", "1")])      # not shown yet
    assert not watched.covers("deployments", "ns", [obj("a", "5")])
    watched.seen("pods", "ns", "a", "5", deleted=True)
    watched.seen("pods", "ns", "b", "7", deleted=True)
    assert not watched.covers("pods", "ns", [])         # nothing left to tell the watch runs


def test_a_kept_read_expires_after_max_age():
    clock = Clock()
    watched = running(clock, max_age=300)
    watched.keep("ns", "k", "v", watched.epoch("ns"))
    clock.now += 300
    assert watched.get("ns", "k") == "v"
    clock.now += 1
    assert watched.get("ns", "k") is None


def test_expired_reads_are_dropped_when_the_namespace_keeps_another():
    clock = Clock()
    watched = running(clock, max_age=10)
    watched.keep("ns", "gone-node", "v", watched.epoch("ns"))
    clock.now += 11
    watched.keep("ns", "k", "v", watched.epoch("ns"))
    assert list(watched._kept["ns"]) == ["k"]


EVENTS = st.lists(st.tuples(st.sampled_from(["seen", "changed", "read"]), st.sampled_from(["a", "b"]),
                            st.sampled_from(["1", "2", "3"])), max_size=30)


@given(EVENTS)
def test_a_kept_read_is_never_served_after_a_change_of_its_namespace(events):
    """Model: the value served for a namespace is the last one kept there, and only if the namespace's objects did not
    change (a new version, a write) since that read started."""
    watched = running()
    shown: dict[str, str] = {}
    last_read: dict[str, int] = {}                       # namespace → index of the event of its last kept read
    changed_at: dict[str, int] = {}
    for index, (what, namespace, version) in enumerate(events):
        if what == "seen":
            if shown.get(namespace) != version:
                changed_at[namespace] = index
            shown[namespace] = version
            watched.seen("pods", namespace, "p", version)
        elif what == "changed":
            changed_at[namespace] = index
            watched.changed(namespace)
        else:
            watched.keep(namespace, "k", index, watched.epoch(namespace))
            last_read[namespace] = index
        for ns in ("a", "b"):
            served = watched.get(ns, "k")
            current = ns in last_read and changed_at.get(ns, -1) < last_read[ns]
            assert served == (last_read[ns] if current else None)


def deployment(name: str, labels: dict, match_labels: dict) -> dict:
    return {"metadata": {"name": name, "labels": labels}, "spec": {"selector": {"matchLabels": match_labels}}}


NAMED = {"app.kubernetes.io/name": "mayanode"}


def test_unwatched_names_the_deployments_or_pods_the_workload_selector_may_miss():
    watched = WatchedReads(workload_selector="app.kubernetes.io/name in (mayanode,bifrost)")
    picked = deployment("mayanode", NAMED, NAMED)
    unlabelled = deployment("bifrost", {}, {"app.kubernetes.io/name": "bifrost"})
    loose_pods = deployment("custom", NAMED, {"app": "custom"})
    assert watched.unwatched([picked, unlabelled, loose_pods]) == ["bifrost", "custom"]
    watched.workload_selector = ""
    assert watched.unwatched([picked, unlabelled, loose_pods]) == []


def test_an_unwatched_deployment_is_told_once_and_again_after_it_was_watched():
    watched = WatchedReads()
    assert watched.newly_unwatched("ns", ["mayanode", "bifrost"], ["bifrost"]) == ["bifrost"]
    assert watched.newly_unwatched("ns", ["mayanode", "bifrost"], ["bifrost"]) == []
    assert watched.newly_unwatched("ns", ["mayanode", "bifrost"], ["mayanode", "bifrost"]) == ["mayanode"]
    assert watched.newly_unwatched("other", ["bifrost"], ["bifrost"]) == ["bifrost"]      # per namespace
    assert watched.newly_unwatched("ns", ["mayanode"], []) == []           # bifrost not read: nothing known of it
    assert watched.newly_unwatched("ns", ["mayanode", "bifrost"], ["mayanode", "bifrost"]) == ["mayanode"]
    assert watched.newly_unwatched("ns", ["mayanode", "bifrost"], []) == []
    assert watched.newly_unwatched("ns", ["bifrost"], ["bifrost"]) == ["bifrost"]
