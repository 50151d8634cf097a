"""What a condition or a step's message says about a failed call: the API server's own words, not the exception's
dump of response headers (which would fill the message before the reason is reached)."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import urllib3
from kubernetes.client.exceptions import ApiException

from mayanode_operator.plan.conditions import Condition
from mayanode_operator.reconcile.facets import FacetOutcome
from mayanode_operator.reconcile.mayanode import run_facet
from mayanode_operator.reconcile.runtime import describe_error

PSS_REFUSAL = ('pods "backup-mayanode-x" is forbidden: violates PodSecurity "restricted:latest": runAsNonRoot != true '
               '(pod or container "helper" must set securityContext.runAsNonRoot=true)')


def api_error(status: int, reason: str, message: str | None) -> ApiException:
    body = json.dumps({"kind": "Status", "status": "Failure", "message": message, "reason": reason, "code": status})
    headers = urllib3.HTTPHeaderDict({"Audit-Id": "0" * 36, "Cache-Control": "no-cache, private",
                                      "Content-Type": "application/json", "X-Kubernetes-Pf-Flowschema-Uid": "1" * 36,
                                      "X-Kubernetes-Pf-Prioritylevel-Uid": "2" * 36})
    try:
        ApiException.from_response(http_resp=SimpleNamespace(status=status, reason=reason, data=body.encode(),
                                                             headers=headers), body=None, data=None)
    except ApiException as err:
        return err
    raise AssertionError("from_response raises")


def test_an_api_error_is_its_status_and_the_servers_message():
    assert describe_error(api_error(403, "Forbidden", PSS_REFUSAL)) == f"403 Forbidden: {PSS_REFUSAL}"
    assert describe_error(api_error(500, "Internal Server Error", None)) == "500 Internal Server Error"


def test_other_errors_are_their_type_and_text():
    assert describe_error(TimeoutError("no answer")) == "TimeoutError: no answer"
    assert describe_error(ConnectionRefusedError(111, "Connection refused")) == \
        "ConnectionRefusedError: [Errno 111] Connection refused"
    assert len(describe_error(OSError("x" * 1000))) == len("OSError: ") + 300


class ForbiddenFacet:
    name = "Backup"

    async def reconcile(self, ctx) -> FacetOutcome:
        raise api_error(403, "Forbidden", PSS_REFUSAL)


def test_a_facet_refused_by_the_api_server_says_why_in_its_condition():
    ctx = SimpleNamespace(namespace="node-a", name="node-a")
    outcome = asyncio.run(run_facet(ForbiddenFacet(), ctx))
    assert outcome.conditions == [Condition("BackupHealthy", "False", "TransientError",
                                            f"Backup: 403 Forbidden: {PSS_REFUSAL}")]


class QuietFacet:
    name = "Backup"

    async def reconcile(self, ctx) -> FacetOutcome:
        return FacetOutcome(conditions=[Condition("BackupFresh", "True", "Fresh", "fresh")])


def conditions_of(*pairs):
    return [{"type": type_, "status": status, "reason": "r", "message": "m"} for type_, status in pairs]


def test_a_facet_that_goes_through_again_is_healthy_again():
    ctx = SimpleNamespace(namespace="node-a", name="node-a",
                          status={"conditions": conditions_of(("BackupHealthy", "False"), ("Ready", "True"))})
    outcome = asyncio.run(run_facet(QuietFacet(), ctx))
    assert outcome.conditions == [Condition("BackupFresh", "True", "Fresh", "fresh"),
                                  Condition("BackupHealthy", "True", "Reconciled", "Backup: the last pass went through")]


def test_a_healthy_facet_adds_no_condition():
    for previous in ([], conditions_of(("BackupHealthy", "True"))):
        ctx = SimpleNamespace(namespace="node-a", name="node-a", status={"conditions": previous})
        assert asyncio.run(run_facet(QuietFacet(), ctx)).conditions == [Condition("BackupFresh", "True", "Fresh",
                                                                                  "fresh")]
