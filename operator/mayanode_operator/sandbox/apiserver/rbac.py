"""Bearer-token authentication and RBAC authorization, evaluated like kube-apiserver's RBAC authorizer.

Opt-in (`EmulatedApiServer.enable_rbac(tokens)`): a request with a known `Authorization: Bearer` token is
that user and is authorized against the Roles, ClusterRoles and their bindings stored in the server; a
request without a token is the sandbox's own admin (seeding, the simulated kubelet) and is not checked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable

from aiohttp import web

from .handlers import RequestInfo

RBAC_GROUP = "rbac.authorization.k8s.io"

# What the default `system:discovery` / `system:public-info-viewer` roles give every authenticated user.
DISCOVERY_PATHS = ("/api", "/api/*", "/apis", "/apis/*", "/version", "/version/", "/openapi/*", "/healthz",
                   "/healthz/*", "/livez", "/livez/*", "/readyz", "/readyz/*")


@dataclass(frozen=True)
class UserInfo:
    name: str
    groups: tuple[str, ...] = ()

    @classmethod
    def service_account(cls, namespace: str, name: str) -> "UserInfo":
        return cls(f"system:serviceaccount:{namespace}:{name}",
                   ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"))


@dataclass(frozen=True)
class Attributes:
    """What is asked: kube's authorizer.Attributes."""

    verb: str
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""
    resource_request: bool = True


@dataclass
class Denial:
    user: str
    attributes: Attributes
    message: str

    def __str__(self) -> str:
        return self.message


def _matches(values: Iterable[str], wanted: str) -> bool:
    values = list(values or ())
    return "*" in values or wanted in values


def _resource_matches(rule_resources: Iterable[str], resource: str, subresource: str) -> bool:
    combined = f"{resource}/{subresource}" if subresource else resource
    for r in rule_resources or ():
        if r == "*" or r == combined:
            return True
        if subresource and (r == f"*/{subresource}" or r == f"{resource}/*"):
            return True
    return False


def _path_matches(patterns: Iterable[str], path: str) -> bool:
    for p in patterns or ():
        if p == "*" or p == path:
            return True
        if p.endswith("*") and path.startswith(p[:-1]):
            return True
    return False


def rule_allows(rule: dict[str, Any], attrs: Attributes) -> bool:
    """One PolicyRule against one request, like rbac/v1 `RuleAllows`."""
    if not attrs.resource_request:
        return _matches(rule.get("verbs") or (), attrs.verb) and _path_matches(rule.get("nonResourceURLs") or (),
                                                                              attrs.path)
    if not _matches(rule.get("verbs") or (), attrs.verb):
        return False
    if not _matches(rule.get("apiGroups") or (), attrs.group):
        return False
    if not _resource_matches(rule.get("resources") or (), attrs.resource, attrs.subresource):
        return False
    names = rule.get("resourceNames") or ()
    return not names or attrs.name in names


def subject_matches(subject: dict[str, Any], user: UserInfo, binding_namespace: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "User":
        return name == user.name
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return user.name == f"system:serviceaccount:{namespace}:{name}"
    return False


class Authorizer:
    """RBAC over a `Store`: ClusterRoleBindings grant cluster-wide, RoleBindings in their namespace."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def _items(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return self.store.items(f"{plural}.{RBAC_GROUP}", namespace)

    def _role_rules(self, kind: str, name: str, namespace: str) -> list[dict[str, Any]]:
        if kind == "ClusterRole":
            found = [r for r in self._items("clusterroles") if r["metadata"]["name"] == name]
        elif kind == "Role":
            found = [r for r in self._items("roles", namespace) if r["metadata"]["name"] == name]
        else:
            return []
        return list((found[0].get("rules") or ())) if found else []

    def rules_for(self, user: UserInfo, namespace: str) -> list[dict[str, Any]]:
        rules: list[dict[str, Any]] = []
        for crb in self._items("clusterrolebindings"):
            if any(subject_matches(s, user, "") for s in crb.get("subjects") or ()):
                ref = crb.get("roleRef") or {}
                rules += self._role_rules(ref.get("kind", ""), ref.get("name", ""), "")
        if namespace:
            for rb in self._items("rolebindings", namespace):
                if any(subject_matches(s, user, namespace) for s in rb.get("subjects") or ()):
                    ref = rb.get("roleRef") or {}
                    rules += self._role_rules(ref.get("kind", ""), ref.get("name", ""), namespace)
        return rules

    def allowed(self, user: UserInfo, attrs: Attributes) -> bool:
        if not attrs.resource_request and "system:authenticated" in user.groups \
                and attrs.verb == "get" and _path_matches(DISCOVERY_PATHS, attrs.path):
            return True
        namespace = attrs.namespace if attrs.resource_request else ""
        return any(rule_allows(rule, attrs) for rule in self.rules_for(user, namespace))


def forbidden_message(user: UserInfo, attrs: Attributes) -> str:
    """The message kube-apiserver writes for a denied request."""
    if not attrs.resource_request:
        return f'forbidden: User "{user.name}" cannot {attrs.verb} path "{attrs.path}"'
    qualified = f"{attrs.resource}.{attrs.group}" if attrs.group else attrs.resource
    target = f'{qualified} "{attrs.name}"' if attrs.name else qualified
    resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    scope = f'in the namespace "{attrs.namespace}"' if attrs.namespace else "at the cluster scope"
    return (f'{target} is forbidden: User "{user.name}" cannot {attrs.verb} resource "{resource}" '
            f'in API group "{attrs.group}" {scope}')


def forbidden_status(attrs: Attributes, message: str) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if attrs.resource_request:
        if attrs.name:
            details["name"] = attrs.name
        if attrs.group:
            details["group"] = attrs.group
        details["kind"] = attrs.resource
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": "Forbidden", "details": details, "code": 403}


UNAUTHORIZED = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "Unauthorized", "reason": "Unauthorized", "code": 401}


def attributes_for(info: RequestInfo, request: web.Request) -> list[Attributes]:
    """The authorizer attributes of a request; several when any of them suffices (legacy exec `get`)."""
    if not info.is_resource_request:
        verb = {"GET": "get", "HEAD": "head", "POST": "post", "PUT": "put", "PATCH": "patch",
                "DELETE": "delete"}.get(request.method, request.method.lower())
        return [Attributes(verb=verb, path=info.path, resource_request=False)]
    namespace, name = info.namespace, info.name
    if info.resource == "namespaces" and info.group == "" and name and not namespace:
        namespace = name                                    # kube authorizes namespaces/{n} within n
    if info.verb in ("list", "watch") and not name:
        for term in (request.query.get("fieldSelector") or "").split(","):
            key, sep, value = term.partition("=")
            if sep and key.strip() == "metadata.name":
                name = value.lstrip("=").strip()
    base = dict(group=info.group, resource=info.resource, subresource=info.subresource, namespace=namespace,
                name=name, path=info.path)
    if info.verb == "connect":
        if request.method == "POST":
            return [Attributes(verb="create", **base)]
        return [Attributes(verb="create", **base), Attributes(verb="get", **base)]
    return [Attributes(verb=info.verb, **base)]


@dataclass
class RbacGate:
    """The authentication + authorization step of `EmulatedApiServer` once `enable_rbac` was called."""

    store: Any
    tokens: dict[str, UserInfo]
    denials: list[Denial] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.authorizer = Authorizer(self.store)

    def authenticate(self, request: web.Request) -> UserInfo | None | bool:
        """The user; None for a request without credentials (the admin); False for a bad token."""
        header = request.headers.get("Authorization", "")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or token.strip() not in self.tokens:
            return False
        return self.tokens[token.strip()]

    def check(self, request: web.Request, info: RequestInfo) -> web.Response | None:
        user = self.authenticate(request)
        if user is None:
            return None
        if user is False:
            return _status(UNAUTHORIZED, 401)
        candidates = attributes_for(info, request)
        if any(self.authorizer.allowed(user, attrs) for attrs in candidates):
            return None
        attrs = candidates[0]
        message = forbidden_message(user, attrs)
        self.denials.append(Denial(user.name, attrs, message))
        return _status(forbidden_status(attrs, message), 403)


def _status(body: dict[str, Any], code: int) -> web.Response:
    return web.Response(text=json.dumps(body), status=code, content_type="application/json")
