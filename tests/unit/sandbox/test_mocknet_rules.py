"""The mocknet's pure chain rules, table-driven."""

import pytest
from mayanode_operator.sandbox.mocknet import NodeAccount, rules
from mayanode_operator.sandbox.mocknet.model import Jail

ADDR = "maya1gv85v0jvc0rsjunku3qxempax6kmrg5jqh8vmg"


@pytest.mark.parametrize(
    ("active_versions", "current", "next_"),
    [
        (["1.111.0"], "1.111.0", "1.111.0"),
        (["1.110.0", "1.111.0", "1.111.0"], "1.110.0", "1.111.0"),        # exactly 2/3 on 1.111.0
        (["1.110.0", "1.110.0", "1.111.0"], "1.110.0", "1.110.0"),        # 1/3 is not enough
        (["1.110.0", "1.111.0", "1.112.0"], "1.110.0", "1.111.0"),        # counts nodes at or above
        (["1.110.0"] * 3 + ["1.111.0"] * 6, "1.110.0", "1.111.0"),
        (["1.110.0"] * 4 + ["1.111.0"] * 5, "1.110.0", "1.110.0"),        # 5/9 < 2/3
        (["1.112.0", "1.110.0", "1.111.0", "1.112.0"], "1.110.0", "1.111.0"),  # 3/4 at >= 1.111.0
        (["1.9.0", "1.10.0", "1.10.0"], "1.9.0", "1.10.0"),                # numeric, not lexical
        (["2.0.0", "1.111.5", "1.111.5"], "1.111.5", "1.111.5"),
    ],
)
def test_network_versions(active_versions, current, next_):
    assert rules.network_versions(active_versions) == rules.NetworkVersions(current=current, next=next_)


def test_no_active_nodes_means_no_network_version():
    assert rules.network_versions([]) is None


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("1.111.0", (1, 111, 0)), ("v1.2.3", (1, 2, 3)), ("1.2.3-rc1", (1, 2, 3)), ("", (0, 0, 0)), ("x", (0, 0, 0))],
)
def test_parse_version(text, parsed):
    assert rules.parse_version(text) == parsed


@pytest.mark.parametrize(
    ("binary", "network", "supported"),
    [
        ("1.111.0", "1.111.0", True),
        ("1.111.0", "1.111.5", True),
        ("1.110.9", "1.111.0", False),
        ("2.0.0", "1.111.0", True),
    ],
)
def test_binary_support(binary, network, supported):
    assert rules.is_supported_binary(binary, network) is supported


def _account(**overrides) -> NodeAccount:
    fields = dict(node_address=ADDR, status="Active", secp256k1_pubkey="mayapub1a", ed25519_pubkey="mayapub1b",
                  ip_address="1.2.3.4", version="1.111.0")
    fields.update(overrides)
    return NodeAccount(**fields)


@pytest.mark.parametrize(
    ("overrides", "status", "reason", "code"),
    [
        ({}, "Ready", "OK", 0),
        ({"ip_address": ""}, "Standby", "node account has invalid registered IP address", 1),
        ({"ip_address": "not-an-ip"}, "Standby", "node account has invalid registered IP address", 1),
        ({"ip_address": "2001:db8::1"}, "Ready", "OK", 0),
        ({"version": "1.110.0"}, "Standby",
         "node account does not meet min version requirement: 1.110.0 vs 1.111.0", 1),
        ({"version": "1.112.0"}, "Ready", "OK", 0),
        ({"secp256k1_pubkey": ""}, "Whitelisted", "node account has not registered their pubkey set", 1),
        ({"requested_to_leave": True}, "Standby", "node account has requested to leave", 1),
        ({"forced_to_leave": True}, "Disabled", "node account has been banned", 1),
        ({"jail": Jail(release_height=200, reason="failed to perform keysign")}, "Standby",
         "node account is jailed until block 200: failed to perform keysign", 1),
        ({"jail": Jail(release_height=100, reason="old")}, "Ready", "OK", 0),
        # mayanode checks the IP before the version
        ({"ip_address": "", "version": "1.0.0"}, "Standby", "node account has invalid registered IP address", 1),
    ],
)
def test_preflight(overrides, status, reason, code):
    assert rules.preflight(_account(**overrides), "1.111.0", height=150) == rules.Preflight(status, reason, code)


def test_preflight_without_network_version_skips_the_version_check():
    assert rules.preflight(_account(version="0.0.1"), None, height=1).code == 0


@pytest.mark.parametrize(
    ("admin", "votes", "active", "expected"),
    [
        ({"HALTTRADING": 0}, {}, ["a", "b", "c"], {"HALTTRADING": 0}),
        ({}, {("a", "HALTTRADING"): 1, ("b", "HALTTRADING"): 1}, ["a", "b", "c"], {"HALTTRADING": 1}),
        ({}, {("a", "HALTTRADING"): 1}, ["a", "b", "c"], {}),
        ({"HALTTRADING": 5}, {("a", "HALTTRADING"): 1}, ["a", "b", "c"], {"HALTTRADING": 5}),
        ({"HALTTRADING": 5}, {("a", "HALTTRADING"): 1, ("b", "HALTTRADING"): 1}, ["a", "b", "c"], {"HALTTRADING": 1}),
        # votes of nodes that are not Active do not count
        ({}, {("a", "X"): 1, ("z", "X"): 1}, ["a", "b", "c"], {}),
        ({}, {("a", "X"): 1, ("b", "X"): 2}, ["a", "b"], {}),
    ],
)
def test_effective_mimirs(admin, votes, active, expected):
    assert rules.effective_mimirs(admin, votes, active) == expected


@pytest.mark.parametrize(
    ("mimirs", "height", "chain", "flags"),
    [
        ({}, 10, "BTC", (False, False, False, False)),
        ({"HALTBTCCHAIN": 5}, 10, "BTC", (True, False, True, False)),
        ({"HALTBTCCHAIN": 50}, 10, "BTC", (False, False, False, False)),   # scheduled, not yet on
        ({"HALTBTCCHAIN": 5}, 10, "ETH", (False, False, False, False)),
        ({"SOLVENCYHALTETHCHAIN": 1}, 10, "ETH", (True, False, True, False)),
        ({"HALTCHAINGLOBAL": 1}, 10, "DASH", (True, False, True, False)),
        ({"HALTTRADING": 1}, 10, "BTC", (False, True, False, False)),
        ({"HALTTRADING": 0}, 10, "BTC", (False, False, False, False)),
        ({"HALTETHTRADING": 3}, 10, "ETH", (False, False, True, False)),
        ({"PAUSELPBTC": 3}, 10, "BTC", (False, False, False, True)),
        ({"NODEPAUSECHAINGLOBAL": 20}, 10, "KUJI", (True, True, True, False)),
        ({"NODEPAUSECHAINGLOBAL": 10}, 10, "KUJI", (False, False, False, False)),
    ],
)
def test_inbound_flags(mimirs, height, chain, flags):
    assert rules.inbound_flags(chain, mimirs, height) == rules.InboundFlags(*flags)


def test_signing_halt_is_per_chain():
    assert rules.is_chain_signing_halted("BTC", {"HALTSIGNINGBTC": 1}, 5)
    assert not rules.is_chain_signing_halted("ETH", {"HALTSIGNINGBTC": 1}, 5)
    assert not rules.is_chain_halted("BTC", {"HALTSIGNINGBTC": 1}, 5)
