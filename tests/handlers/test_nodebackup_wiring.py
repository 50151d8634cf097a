"""The NodeBackup kopf handler only queues; the loop knows the reconcile."""

import kopf

from mayanode_operator.api import naming
from mayanode_operator.main import nodebackup_event
from mayanode_operator.operator_loop import RECONCILERS
from mayanode_operator.reconcile.facet_order import FACETS
from mayanode_operator.reconcile.nodebackup import reconcile_nodebackup
from mayanode_operator.reconcile.queue import WorkQueue
from mayanode_operator.reconcile.watched import WatchedReads


async def test_nodebackup_events_feed_the_queue():
    runtime = type("R", (), {"queue": WorkQueue(), "watched": WatchedReads()})()
    memo = kopf.Memo(runtime=runtime)
    body = kopf.Body({"metadata": {"name": "b", "namespace": "ns", "generation": 1, "resourceVersion": "5"},
                      "status": {}})
    await nodebackup_event(event={"type": "ADDED"}, body=body, memo=memo)
    assert runtime.queue.pop_due()[0] == [(naming.NODEBACKUP_PLURAL, "ns", "b")]
    assert runtime.watched.epoch("ns") == 1          # what passes read of the namespace is read again
    own_write = kopf.Body({"metadata": {"name": "b", "namespace": "ns", "generation": 1, "resourceVersion": "6"},
                           "status": {"observedGeneration": 1}})
    await nodebackup_event(event={"type": "MODIFIED"}, body=own_write, memo=memo)
    assert len(runtime.queue) == 0
    assert runtime.watched.epoch("ns") == 2


def test_the_reconcile_and_the_facet_are_registered():
    assert RECONCILERS[naming.NODEBACKUP_PLURAL] is reconcile_nodebackup
    names = [f.name for f in FACETS]
    assert "Backup" in names
    if "Upgrade" in names:
        assert names.index("Backup") < names.index("Upgrade")
