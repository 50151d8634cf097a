import pytest
from hypothesis import given, strategies as st

from mayanode_operator.plan.conditions import Condition, condition_status, merge_conditions, recovered
from mayanode_operator.plan.patches import merge_patch

T0, T1 = "2026-11-21T10:00:00Z", "2026-11-21T10:05:00Z"


@pytest.mark.parametrize("previous,expected", [
    ([{"type": "XHealthy", "status": "False"}], [Condition("XHealthy", "True", "Reconciled", "ok")]),
    ([{"type": "XHealthy", "status": "True"}], []),
    ([{"type": "XHealthy", "status": "Unknown"}], []),
    ([], []),
    (None, []),
])
def test_a_failure_condition_recovers_only_when_it_was_false(previous, expected):
    assert recovered(previous, "XHealthy", "Reconciled", "ok") == expected


def test_transition_time_kept_when_status_unchanged():
    first = merge_conditions([], [Condition("Ready", "True", "NodeReady", "ok")], now=T0, generation=1)
    second = merge_conditions(first, [Condition("Ready", "True", "NodeReady", "still ok")], now=T1, generation=2)
    assert second[0]["lastTransitionTime"] == T0
    assert second[0]["message"] == "still ok"
    assert second[0]["observedGeneration"] == 2


def test_transition_time_moves_on_flip():
    first = merge_conditions([], [Condition("Ready", "True", "NodeReady", "ok")], now=T0, generation=1)
    second = merge_conditions(first, [Condition("Ready", "False", "NotSynced", "behind")], now=T1, generation=1)
    assert second[0]["lastTransitionTime"] == T1
    assert condition_status(second, "Ready") == "False"


def test_conditions_not_computed_are_kept():
    first = merge_conditions([], [Condition("BackupFresh", "True", "Fresh", "x")], now=T0, generation=1)
    second = merge_conditions(first, [Condition("Ready", "True", "NodeReady", "ok")], now=T1, generation=1)
    assert [c["type"] for c in second] == ["BackupFresh", "Ready"]


@pytest.mark.parametrize("old,new,expected", [
    ({}, {"a": 1}, {"a": 1}),
    ({"a": 1}, {"a": 1}, {}),
    ({"a": 1}, {"a": None}, {"a": None}),
    ({}, {"a": None}, {}),
    ({"a": {"x": 1, "y": 2}}, {"a": {"x": 1}}, {"a": {"y": None}}),
    ({"a": {"x": 1}}, {"a": {"x": 2}}, {"a": {"x": 2}}),
    ({"a": [1, 2]}, {"a": [1, 2]}, {}),
    ({"a": [1, 2]}, {"a": [2]}, {"a": [2]}),
    ({"keep": 1}, {"a": 1}, {"a": 1}),
])
def test_merge_patch_table(old, new, expected):
    assert merge_patch(old, new) == expected


def apply_merge_patch(target, patch):
    out = dict(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = apply_merge_patch(out[key], value)
        else:
            out[key] = value
    return out


json_leaf = st.one_of(st.integers(), st.text(max_size=3), st.booleans(), st.lists(st.integers(), max_size=2))
json_doc = st.recursive(st.dictionaries(st.sampled_from("abcd"), json_leaf, max_size=4),
                        lambda inner: st.dictionaries(st.sampled_from("abcd"), st.one_of(json_leaf, inner), max_size=4),
                        max_leaves=10)


@given(json_doc, json_doc)
def test_merge_patch_applied_gives_new_for_named_keys(old, new):
    patched = apply_merge_patch(old, merge_patch(old, new))
    for key, value in new.items():
        assert patched.get(key) == value
    for key in old.keys() - new.keys():
        assert patched[key] == old[key]


@given(json_doc, json_doc)
def test_the_operator_s_apply_merge_patch_agrees_with_rfc_7386_and_changes_neither_input(doc, new):
    from mayanode_operator.plan.patches import apply_merge_patch as operators, copy_document
    patch = merge_patch(doc, new)
    doc_before, patch_before = copy_document(doc), copy_document(patch)
    assert operators(doc, patch) == apply_merge_patch(doc, patch)
    assert doc == doc_before and patch == patch_before


def test_apply_merge_patch_copies_what_the_patch_brings_and_shares_only_what_it_leaves_alone():
    from mayanode_operator.plan.patches import apply_merge_patch as operators
    untouched, history = {"history": [1, 2]}, [{"to": "1.112.0"}]
    doc = {"untouched": untouched, "upgrade": {"state": "Idle"}}
    patch = {"upgrade": {"state": "Done", "history": history}}
    after = operators(doc, patch)
    assert after["untouched"] is untouched                        # never changed in place by the writer
    assert after["upgrade"] is not doc["upgrade"] and doc["upgrade"] == {"state": "Idle"}
    history[0]["to"] = "changed by the planner afterwards"
    assert after["upgrade"]["history"] == [{"to": "1.112.0"}]


async def test_the_status_writer_keeps_what_the_server_holds_whatever_the_pass_does_to_its_body():
    from mayanode_operator.reconcile.status_writer import StatusWriter
    sent = []

    async def patch_status(part):
        sent.append(part)

    body_status = {"chain": {"height": 5}, "conditions": [{"type": "Ready", "status": "True"}]}
    writer = StatusWriter(body_status, patch_status)
    body_status["chain"]["height"] = 6                              # the body is someone else's
    body_status["conditions"].append({"type": "Other"})
    await writer.write_final({"chain": {"height": 5}, "conditions": [{"type": "Ready", "status": "True"}]})
    assert sent == []                                               # nothing changed on the server
    await writer.write_final({"chain": {"height": 7}})
    assert sent == [{"chain": {"height": 7}}] and writer.stored["chain"] == {"height": 7}
