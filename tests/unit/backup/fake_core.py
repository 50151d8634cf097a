"""A CoreV1Api-like double for Secrets: the calls SecretStore makes, with the API server's answers."""

from __future__ import annotations

import base64
import copy
import json
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException

SECRET_LIMIT = 1_048_576


@dataclass
class _Response:
    data: bytes


def _error(status: int, reason: str, message: str) -> ApiException:
    err = ApiException(status=status, reason=reason)
    err.body = json.dumps({"kind": "Status", "status": "Failure", "reason": reason, "message": message,
                           "code": status})
    return err


class FakeCoreV1:
    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.fail_on: dict[tuple[str, str], ApiException] = {}
        self._rv = 0

    def _maybe_fail(self, verb: str, name: str) -> None:
        self.calls.append((verb, name))
        err = self.fail_on.get((verb, name)) or self.fail_on.get((verb, "*"))
        if err is not None:
            raise err

    def _check_size(self, body: dict[str, Any]) -> None:
        total = sum(len(base64.b64decode(v)) for v in (body.get("data") or {}).values())
        if total > SECRET_LIMIT:
            raise _error(422, "Invalid", f"Secret \"{body['metadata']['name']}\" is invalid: data: Too long: "
                                         f"must have at most {SECRET_LIMIT} bytes")

    def _stamp(self, body: dict[str, Any]) -> dict[str, Any]:
        self._rv += 1
        body = copy.deepcopy(body)
        body["metadata"]["resourceVersion"] = str(self._rv)
        return body

    def read_namespaced_secret(self, name: str, namespace: str, **_: Any) -> _Response:
        self._maybe_fail("read", name)
        secret = self.secrets.get((namespace, name))
        if secret is None:
            raise _error(404, "NotFound", f'secrets "{name}" not found')
        return _Response(json.dumps(secret).encode())

    def create_namespaced_secret(self, namespace: str, body: dict[str, Any], **_: Any) -> _Response:
        name = body["metadata"]["name"]
        self._maybe_fail("create", name)
        if (namespace, name) in self.secrets:
            raise _error(409, "AlreadyExists", f'secrets "{name}" already exists')
        self._check_size(body)
        self.secrets[(namespace, name)] = self._stamp(body)
        return _Response(json.dumps(self.secrets[(namespace, name)]).encode())

    def replace_namespaced_secret(self, name: str, namespace: str, body: dict[str, Any], **_: Any) -> _Response:
        self._maybe_fail("replace", name)
        if (namespace, name) not in self.secrets:
            raise _error(404, "NotFound", f'secrets "{name}" not found')
        self._check_size(body)
        self.secrets[(namespace, name)] = self._stamp(body)
        return _Response(json.dumps(self.secrets[(namespace, name)]).encode())

    def delete_namespaced_secret(self, name: str, namespace: str, **_: Any) -> _Response:
        self._maybe_fail("delete", name)
        if self.secrets.pop((namespace, name), None) is None:
            raise _error(404, "NotFound", f'secrets "{name}" not found')
        return _Response(b'{"kind":"Status","status":"Success"}')

    def list_namespaced_secret(self, namespace: str, label_selector: str = "", **_: Any) -> _Response:
        self._maybe_fail("list", "*")
        wanted = dict(part.split("=", 1) for part in label_selector.split(",") if part)
        items = [s for (ns, _), s in sorted(self.secrets.items()) if ns == namespace
                 and all((s["metadata"].get("labels") or {}).get(k) == v for k, v in wanted.items())]
        return _Response(json.dumps({"kind": "SecretList", "items": items}).encode())

    def names(self, namespace: str) -> list[str]:
        return sorted(name for ns, name in self.secrets if ns == namespace)
