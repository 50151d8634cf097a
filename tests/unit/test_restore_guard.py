"""Double-sign guards (plan/restore_guard.py): the high-water mark, silence over signature sets, the key lock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mayanode_operator.chainkeys import SignState
from mayanode_operator.plan import restore_guard as g

states = st.builds(SignState, st.integers(0, 10**9), st.integers(0, 50), st.integers(0, 3))
sources = st.sampled_from(g.SOURCE_ORDER)


@given(st.dictionaries(sources, st.none() | states))
def test_high_water_mark_is_never_below_any_input(inputs):
    mark = g.high_water_mark(inputs)
    for state in inputs.values():
        if state is not None:
            assert mark.state >= state
    known = [s for s in inputs.values() if s is not None]
    if known:
        assert mark.state in known and inputs[mark.source] == mark.state
    else:
        assert mark.state == SignState(0, 0, 0)


def test_high_water_mark_table():
    backup, volume, old, tip = SignState(100, 0, 3), SignState(90, 5, 1), SignState(150, 1, 2), g.chain_tip_state(160)
    assert g.high_water_mark({"Backup": backup, "TargetVolume": volume}).source == "Backup"
    assert g.high_water_mark({"Backup": backup, "OldNodeVolume": old}).state == old
    mark = g.high_water_mark({"Backup": backup, "TargetVolume": volume, "OldNodeVolume": old, "ChainTip": tip})
    assert (mark.state, mark.source) == (SignState(160, 0, 3), "ChainTip")
    # Round and step order within one height; ties go to the earlier source.
    assert g.high_water_mark({"Backup": SignState(5, 1, 1), "TargetVolume": SignState(5, 0, 3)}).source == "Backup"
    assert g.high_water_mark({"Backup": SignState(5, 0, 3), "ChainTip": SignState(5, 0, 3)}).source == "Backup"
    assert mark.to_status() == {"height": 160, "round": 0, "step": 3, "source": "ChainTip"}


def test_chain_tip_state_forbids_the_tip_itself():
    tip = g.chain_tip_state(200)
    assert tip > SignState(200, 0, 2) and tip > SignState(199, 99, 3) and tip < SignState(201, 0, 0)


V, OTHER = "AABB", "CCDD"


@pytest.mark.parametrize("blocks, silence, expected, seen", [
    ({11: [OTHER], 12: [], 13: [OTHER]}, g.start_silence(10), g.Silence(10, 13), None),
    ({11: [OTHER], 12: [V.lower()], 13: [OTHER]}, g.start_silence(10), g.Silence(12, 13), 12),
    ({11: [V], 13: [V]}, g.start_silence(10), g.Silence(11, 11), 11),              # stops at the gap (12 unread)
    ({11: None, 12: []}, g.start_silence(10), g.Silence(10, 10), None),            # an unreadable block: no claim
    ({14: [], 15: []}, g.Silence(10, 13), g.Silence(10, 15), None),                # resumes after what was checked
    ({}, g.Silence(10, 13), g.Silence(10, 13), None),
])
def test_advance_silence(blocks, silence, expected, seen):
    assert g.advance_silence(silence, V, blocks) == (expected, seen)


def test_silence_passes_only_after_enough_blocks_after_the_stop():
    silence = g.start_silence(100)
    assert not silence.passed(3)
    silence, _ = g.advance_silence(silence, V, {101: [], 102: [], 103: [V], 104: [], 105: []})
    assert silence == g.Silence(103, 105) and not silence.passed(3)
    silence, _ = g.advance_silence(silence, V, {106: []})
    assert silence.passed(3) and silence.silent_for() == 3


@given(st.lists(st.booleans(), max_size=40), st.integers(3, 10))
def test_silence_never_passes_with_a_signature_in_the_window(signed, n):
    blocks = {101 + i: ([V] if s else []) for i, s in enumerate(signed)}
    silence, _ = g.advance_silence(g.start_silence(100), V, blocks)
    if silence.passed(n):
        window = range(silence.window_start + 1, silence.checked_to + 1)
        assert len(window) >= n and not any(V in blocks[h] for h in window)
        assert all(not blocks[h] for h in blocks if h > silence.window_start)


def test_heights_to_read():
    assert g.heights_to_read(g.Silence(10, 12), 15) == [13, 14, 15]
    assert g.heights_to_read(g.Silence(10, 15), 15) == []
    assert len(g.heights_to_read(g.Silence(0, 0), 10_000, limit=50)) == 50


KEY = "mayacpub1key"
TARGET, OLD, OTHER_NODE = "b/new", "a/old", "c/x"


def node(key: str, suspended: bool = False, cons: str | None = KEY) -> g.NodeView:
    return g.NodeView(key, suspended, cons)


@pytest.mark.parametrize("lease, nodes, handoff, action, holder", [
    (g.LeaseView(False), [], None, "create", None),
    (g.LeaseView(False), [node(TARGET)], None, "create", None),                      # the target itself
    (g.LeaseView(False), [node(OLD)], None, "refuse", OLD),                          # another runs the key
    (g.LeaseView(False), [node(OLD)], OLD, "create", None),                          # ... unless it is the hand-off
    (g.LeaseView(False), [node(OLD, suspended=True)], None, "create", None),         # suspended: not signing
    (g.LeaseView(False), [node(OLD, cons="mayacpub1other")], None, "create", None),
    (g.LeaseView(True, TARGET), [], None, "keep", TARGET),
    (g.LeaseView(True, OLD), [node(OLD)], OLD, "transfer", OLD),
    (g.LeaseView(True, OLD), [], None, "takeover", OLD),                             # holder no longer exists
    (g.LeaseView(True, OLD), [node(OLD, suspended=True)], None, "takeover", OLD),
    (g.LeaseView(True, OLD), [node(OLD, cons=None)], None, "refuse", OLD),           # holder exists and runs
    (g.LeaseView(True, None), [], None, "create", None),                             # released
])
def test_lock_decisions(lease, nodes, handoff, action, holder):
    decision = g.decide_lock(KEY, TARGET, handoff, lease, nodes)
    assert (decision.action, decision.holder) == (action, holder)
    if decision.refused:
        assert holder in decision.message and "hand-off" in decision.message


def test_refusal_names_the_running_node_and_the_fix():
    decision = g.decide_lock(KEY, TARGET, None, g.LeaseView(False), [node(OTHER_NODE), node(OLD)])
    assert decision.reason == "KeyInUse" and decision.holder == OLD          # sorted: deterministic
    assert "kubectl -n a patch mayanode old" in decision.message


def test_may_start_with_key():
    assert g.may_start_with_key("a/old", g.LeaseView(False), set()) == (True, None)
    assert g.may_start_with_key("a/old", g.LeaseView(True, "a/old"), {"a/old"}) == (True, None)
    assert g.may_start_with_key("a/old", g.LeaseView(True, "b/new"), {"b/new"}) == (False, "b/new")
    assert g.may_start_with_key("a/old", g.LeaseView(True, "b/new"), set()) == (True, None)


def test_a_higher_sign_state_on_the_target_volume_raises_the_mark():
    recorded = {"Backup": SignState(100, 0, 3), "TargetVolume": SignState(90, 0, 3), "ChainTip": g.chain_tip_state(150)}
    # The node's own pods ran after the files were written and signed up to 152: the mark follows.
    folded = g.fold_volume_state(recorded, SignState(152, 1, 2))
    assert folded["TargetVolume"] == SignState(152, 1, 2) and g.high_water_mark(folded).source == "TargetVolume"
    # The same volume read again, or the mark this restore wrote there: nothing changes.
    assert g.fold_volume_state(recorded, SignState(90, 0, 3)) == recorded
    assert g.fold_volume_state(recorded, SignState(150, 0, 3)) == recorded
    assert g.fold_volume_state(recorded, None) == recorded


@given(st.dictionaries(sources, st.none() | states), st.none() | states)
def test_the_folded_mark_is_never_below_the_volume_nor_the_recorded_mark(inputs, volume):
    mark = g.high_water_mark(g.fold_volume_state(inputs, volume)).state
    assert mark >= g.high_water_mark(inputs).state
    if volume is not None:
        assert mark >= volume


def test_the_key_on_the_volume_must_be_the_guarded_one():
    assert g.volume_key_problem("mayacpub1a", "mayacpub1a") is None
    assert "mayacpub1b" in g.volume_key_problem("mayacpub1a", "mayacpub1b")
    assert "no readable consensus key" in g.volume_key_problem("mayacpub1a", None)
    assert g.volume_key_problem(None, "mayacpub1a") is not None
