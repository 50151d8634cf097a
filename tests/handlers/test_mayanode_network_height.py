"""The network's height (spec.api.networkRpc) reaches status.chain.networkHeight and the height-lag metric, through a
real MayaNode reconcile against the sandbox (API server, kubelet, mocknet), without extra writes on idle passes."""

from __future__ import annotations

from mayanode_operator import metrics
from mayanode_operator.api import naming
from mayanode_operator.reconcile.mayanode import reconcile_mayanode
from mayanode_operator.sandbox.apiserver.handlers import request_info

NS = "netheight-a"
LAG = 5


class StatusWrites:
    """Counts the MayaNode status writes of one namespace that reach the API server."""

    def __init__(self, namespace: str) -> None:
        self.namespace, self.count = namespace, 0

    async def __call__(self, request, call_next):
        info = request_info(request)
        if info.namespace == self.namespace and info.resource == naming.MAYANODE_PLURAL and \
                info.subresource == "status" and info.verb in ("patch", "update"):
            self.count += 1
        return await call_next(request)


def test_network_height_and_lag_metric_from_the_configured_rpc(world):
    node = world.seed(NS)
    net = world.sandbox.mocknet
    world.call(net.advance(3 * LAG))                          # well above the first block
    net.configure_namespace(NS, height_lag=LAG)            # this node reports LAG blocks below the network
    sources = [f"{net.url}/ns/nobody-runs-here/rpc",        # 503: no endpoints
               "http://127.0.0.1:9/rpc",                     # refused
               net.public_rpc_url]                           # a public full node at the network's head
    world.mayanode(node, api={"rest": node.rest_url, "rpc": node.rpc_url, "timeoutSeconds": 2,
                              "networkRpc": sources})
    writes = StatusWrites(NS)
    world.sandbox.api.add_request_hook(writes)
    try:
        world.call(reconcile_mayanode(world.runtime, NS, NS))
        chain = world.get(naming.MAYANODE_PLURAL, NS, NS)["status"]["chain"]
        # both /status reads run concurrently; the mocknet may produce one block between them
        assert chain["networkHeight"] - chain["height"] in (LAG, LAG + 1), chain
        labels = {"namespace": NS, "name": NS}
        assert metrics.REGISTRY.get_sample_value("mayanode_node_network_height", labels) == chain["networkHeight"]
        assert metrics.REGISTRY.get_sample_value("mayanode_node_height_lag_blocks", labels) == \
            chain["networkHeight"] - chain["height"]

        first = writes.count
        world.call(reconcile_mayanode(world.runtime, NS, NS))       # idle: heights moved, nothing else did
        assert writes.count == first, "an idle pass writes nothing before the height refresh is due"
        assert world.get(naming.MAYANODE_PLURAL, NS, NS)["status"]["chain"] == chain
    finally:
        world.sandbox.api.remove_request_hook(writes)
        net.configure_namespace(NS, height_lag=0)


def test_without_network_rpc_there_is_no_network_height_and_no_lag_series(world):
    node = world.seed("netheight-b")
    world.mayanode(node)
    world.call(reconcile_mayanode(world.runtime, "netheight-b", "netheight-b"))
    chain = world.get(naming.MAYANODE_PLURAL, "netheight-b", "netheight-b")["status"]["chain"]
    assert chain["height"] > 0 and "networkHeight" not in chain
    labels = {"namespace": "netheight-b", "name": "netheight-b"}
    assert metrics.REGISTRY.get_sample_value("mayanode_node_height", labels) == chain["height"]
    assert metrics.REGISTRY.get_sample_value("mayanode_node_height_lag_blocks", labels) is None
