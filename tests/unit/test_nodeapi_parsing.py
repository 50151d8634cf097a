"""The node API parsers accept exactly DOMAIN.md's shapes and name what is wrong otherwise."""

import pytest

from mayanode_operator.observe.nodeapi import (
    EndpointFailure,
    parse_asgard,
    parse_inbound,
    parse_mimir,
    parse_node_account,
    parse_rpc_status,
    parse_version,
)

NODE_DOC = {
    "node_address": "maya1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq", "status": "Active",
    "pub_key_set": {"secp256k1": "mayapub1aaa", "ed25519": "mayapub1bbb"},
    "validator_cons_pub_key": "mayacpub1zcjduepqxyz", "bond": "10240000000000", "active_block_height": 180,
    "bond_address": "maya1bond", "status_since": 123, "signer_membership": ["mayapub1vault"],
    "requested_to_leave": False, "forced_to_leave": False, "leave_height": 0, "ip_address": "206.189.235.75",
    "version": "1.111.0", "slash_points": 17,
    "jail": {"node_address": "maya1x", "release_height": 2393, "reason": "failed to perform keysign"},
    "preflight_status": {"status": "Ready", "reason": "OK", "code": 0},
}


def test_node_account_full_shape():
    account = parse_node_account(NODE_DOC)
    assert account.status == "Active" and account.bond == "10240000000000"
    assert account.slash_points == 17 and account.jail.release_height == 2393
    assert account.preflight.reason == "OK" and account.secp256k1 == "mayapub1aaa"


def test_node_account_seed_shape_with_string_numbers():
    doc = {**NODE_DOC, "slash_points": "17", "active_block_height": "180", "jail": {"release_height": "0", "reason": ""}}
    account = parse_node_account(doc)
    assert account.slash_points == 17 and account.jail is None


@pytest.mark.parametrize("doc,where", [
    ({"status": "Active"}, "node_address"),
    ({**NODE_DOC, "slash_points": "many"}, "slash_points"),
    ("not an object", "(root)"),
])
def test_node_account_wrong_shapes(doc, where):
    with pytest.raises(EndpointFailure) as info:
        parse_node_account(doc)
    assert info.value.reason == "InvalidResponse" and where in info.value.message


def test_version_and_status():
    version = parse_version({"current": "1.110.0", "next": "1.111.0", "querier": "1.111.0"})
    assert (version.current, version.next, version.querier) == ("1.110.0", "1.111.0", "1.111.0")
    chain = parse_rpc_status({"result": {"sync_info": {"latest_block_height": "197675", "catching_up": False},
                                         "validator_info": {"address": "1AADB9E5", "voting_power": "100"}}})
    assert chain.height == 197675 and not chain.catching_up and chain.validator_address == "1AADB9E5"
    assert chain.chain_id == ""                                     # node_info absent: chain id unknown


def test_rpc_status_reads_the_chain_id():
    chain = parse_rpc_status({"result": {"node_info": {"network": "mayachain-mainnet-v1", "moniker": "x"},
                                         "sync_info": {"latest_block_height": "10", "catching_up": True}}})
    assert (chain.height, chain.catching_up, chain.chain_id) == (10, True, "mayachain-mainnet-v1")


def test_mimir_upper_cases_and_refuses_non_integers():
    assert parse_mimir({"HaltTrading": 5, "CHURNINTERVAL": 43200}) == (("CHURNINTERVAL", 43200), ("HALTTRADING", 5))
    with pytest.raises(EndpointFailure):
        parse_mimir({"HALTTRADING": "yes"})
    with pytest.raises(EndpointFailure):
        parse_mimir([1, 2])


def test_inbound_and_asgard():
    inbound = parse_inbound([{"chain": "ETH", "halted": False}, {"chain": "BTC", "halted": True,
                                                                 "chain_trading_paused": True}])
    assert [c.chain for c in inbound] == ["BTC", "ETH"] and inbound[0].halted
    vault = parse_asgard([
        {"pub_key": "mayapub1old", "status": "RetiringVault", "block_height": 10, "membership": ["a"]},
        {"pub_key": "mayapub1new", "status": "ActiveVault", "block_height": 50, "membership": ["b", "a"]},
    ])
    assert vault.pub_key == "mayapub1new" and vault.membership == ("a", "b")
    assert parse_asgard([]) is None


def counting(parse):
    calls = []

    def parse_counted(doc):
        calls.append(doc)
        return parse(doc)
    return parse_counted, calls


def test_an_answer_seen_before_is_not_parsed_again_whichever_node_gave_it():
    from mayanode_operator.observe.nodeapi import ParsedAnswers
    answers, (parse, calls) = ParsedAnswers(), counting(parse_mimir)
    first = answers.parse("mimir", "http://node-a/mayachain/mimir", b'{"HaltTrading": 0}', parse)
    again = answers.parse("mimir", "http://node-b/mayachain/mimir", b'{"HaltTrading": 0}', parse)
    changed = answers.parse("mimir", "http://node-a/mayachain/mimir", b'{"HaltTrading": 1}', parse)
    assert first is again and first == (("HALTTRADING", 0),) and changed == (("HALTTRADING", 1),)
    assert len(calls) == 2


def test_the_same_bytes_of_another_route_are_parsed_by_that_route():
    from mayanode_operator.observe.nodeapi import ParsedAnswers
    answers = ParsedAnswers()
    assert answers.parse("inbound", "u", b"[]", parse_inbound) == ()
    assert answers.parse("asgard", "u", b"[]", parse_asgard) is None


def test_bad_answers_are_refused_every_time_and_never_kept():
    from mayanode_operator.observe.nodeapi import ParsedAnswers
    answers, (parse, calls) = ParsedAnswers(), counting(parse_mimir)
    for body, reason in [(b"<html>", "InvalidResponse"), (b'{"HaltTrading": "yes"}', "InvalidResponse")] * 2:
        with pytest.raises(EndpointFailure) as failure:
            answers.parse("mimir", "http://node-a/mayachain/mimir", body, parse)
        assert failure.value.reason == reason
    assert len(answers) == 0


def test_the_kept_answers_are_bounded_in_number_and_in_size():
    from mayanode_operator.observe.nodeapi import ParsedAnswers
    answers, (parse, calls) = ParsedAnswers(max_entries=3, max_body=64), counting(parse_mimir)
    for value in range(5):
        answers.parse("mimir", "u", b'{"K": %d}' % value, parse)
    assert len(answers) == 3
    answers.parse("mimir", "u", b'{"K": 4}', parse)                     # kept: the newest three
    answers.parse("mimir", "u", b'{"K": 0}', parse)                     # dropped first: parsed again
    assert len(calls) == 6
    big = b'{"K": 1, "PADDING": 1' + b"0" * 80 + b"}"
    answers.parse("mimir", "u", big, parse)
    answers.parse("mimir", "u", big, parse)
    assert len(calls) == 8 and len(answers) == 3
