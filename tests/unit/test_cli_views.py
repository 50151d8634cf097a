from datetime import datetime, timedelta, timezone

import pytest

from mayanode_operator.cli_views import age, describe, status_rows, table

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)


def stamp(delta):
    return (NOW - delta).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("delta,text", [(timedelta(seconds=5), "5s"), (timedelta(minutes=3), "3m"),
                                        (timedelta(hours=5), "5h"), (timedelta(days=2, hours=1), "2d")])
def test_age(delta, text):
    assert age(stamp(delta), NOW) == text


def mayanode(name, ready="True", backup=None, fresh=True, reason="NodeReady", message=""):
    status = {"phase": "Running" if ready == "True" else "Degraded", "version": "1.111.0",
              "node": {"status": "Active", "slashPoints": 12}, "chain": {"height": 500},
              "conditions": [{"type": "Ready", "status": ready, "reason": reason, "message": message}]}
    if backup:
        status["backup"] = {"lastSuccessful": {"name": "b", "completedAt": stamp(backup)}, "fresh": fresh}
    return {"metadata": {"name": name, "namespace": name}, "spec": {"version": "1.111.0"}, "status": status}


def test_status_table_shows_health_version_and_backup_freshness():
    rows = status_rows([mayanode("b", "False", timedelta(days=4), False, "NotSynced", "catching up"),
                        mayanode("a", backup=timedelta(hours=2))], NOW)
    assert rows[1][:2] == ["a", "a"] and rows[1][9] == "2h fresh" and rows[1][11] == ""
    assert rows[2][9] == "4d STALE" and rows[2][11] == "Ready: NotSynced: catching up"
    assert rows[0][0] == "NAMESPACE" and "SLASH" in rows[0]
    text = table(rows)
    assert text.splitlines()[0].startswith("NAMESPACE") and len(text.splitlines()) == 3


def test_describe_a_failed_restore_says_what_to_do():
    body = {"kind": "NodeRestore", "metadata": {"name": "r", "namespace": "n"},
            "spec": {"nodeRef": {"name": "node"}, "backupRef": {"name": "b"}},
            "status": {"phase": "Failed", "message": "old key still signing",
                       "nextAction": "suspend the old node or acknowledge it destroyed",
                       "guard": {"method": None, "lockHolder": "a/node-a"},
                       "steps": [{"name": "VerifyBackup", "startedAt": stamp(timedelta(seconds=30)),
                                  "completedAt": stamp(timedelta(seconds=28))}],
                       "conditions": [{"type": "Failed", "status": "True", "reason": "KeySigning",
                                       "message": "signed block 42", "lastTransitionTime": stamp(timedelta(seconds=5))}]}}
    text = describe(body, NOW)
    assert "Phase:      Failed" in text and "held by a/node-a" in text and "VerifyBackup" in text and "2.0s" in text
    assert text.splitlines()[-1] == "Next:       suspend the old node or acknowledge it destroyed"
