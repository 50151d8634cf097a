import pytest

from mayanode_operator.observe.snapshot import Halt, InboundChain
from mayanode_operator.plan.halts import classify_mimir_key, halts_in_effect


@pytest.mark.parametrize("key,kind,chain", [
    ("HALTTRADING", "Trading", None),
    ("HaltBTCTrading", "Trading", "BTC"),
    ("HALTCHAINGLOBAL", "Chain", None),
    ("HALTETHCHAIN", "Chain", "ETH"),
    ("SOLVENCYHALTETHCHAIN", "Solvency", "ETH"),
    ("HALTSIGNINGBTC", "Signing", "BTC"),
    ("HALTSIGNING", "Signing", None),
    ("PAUSELPDASH", "LP", "DASH"),
    ("PAUSELP", "LP", None),
    ("HALTCHURNING", "Churning", None),
])
def test_classify(key, kind, chain):
    halt = classify_mimir_key(key)
    assert halt is not None and (halt.kind, halt.chain) == (kind, chain)


@pytest.mark.parametrize("key", ["MINIMUMBONDINCACAO", "CHURNINTERVAL", "HALTTRADINGX"])
def test_non_halt_keys(key):
    assert classify_mimir_key(key) is None


@pytest.mark.parametrize("mimir,height,expected", [
    ({}, 100, []),
    ({"HALTTRADING": 0}, 100, []),
    ({"HALTTRADING": 50}, 100, [("Trading", None)]),
    ({"HALTTRADING": 150}, 100, []),                      # scheduled for a future height
    ({"HALTBTCCHAIN": 1, "SOLVENCYHALTETHCHAIN": 90}, 100, [("Chain", "BTC"), ("Solvency", "ETH")]),
    ({"NODEPAUSECHAINGLOBAL": 120}, 100, [("NodePause", None)]),
    ({"NODEPAUSECHAINGLOBAL": 80}, 100, []),              # the pause expired
    ({"HALTCHURNING": 1, "MINIMUMBONDINCACAO": 5}, None, [("Churning", None)]),
])
def test_halts_from_mimir(mimir, height, expected):
    halts = halts_in_effect(sorted(mimir.items()), (), height)
    assert [(h.kind, h.chain) for h in halts] == sorted(expected, key=lambda x: (x[0], x[1] or ""))


def test_halts_from_inbound_addresses():
    inbound = (InboundChain("BTC", True, False, True, False), InboundChain("ETH", False, False, False, True))
    halts = halts_in_effect((), inbound, 10)
    assert [(h.kind, h.chain) for h in halts] == [("Chain", "BTC"), ("LP", "ETH"), ("Trading", "BTC")]


def test_mimir_and_inbound_same_halt_reported_once():
    inbound = (InboundChain("BTC", True, False, False, False),)
    halts = halts_in_effect((("HALTBTCCHAIN", 5),), inbound, 10)
    assert halts == (Halt("Chain", "HALTBTCCHAIN", "BTC"),)
