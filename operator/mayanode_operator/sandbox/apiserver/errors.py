"""API errors as real `Status` objects, and field errors formatted like apimachinery's `field.Error`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

REASON_BY_TYPE = {
    "Required value": "FieldValueRequired",
    "Invalid value": "FieldValueInvalid",
    "Invalid type": "FieldValueTypeInvalid",
    "Unsupported value": "FieldValueNotSupported",
    "Duplicate value": "FieldValueDuplicate",
    "Too long": "FieldValueTooLong",
    "Too many": "FieldValueTooMany",
    "Forbidden": "FieldValueForbidden",
    "Not found": "FieldValueNotFound",
    "Internal error": "InternalError",
}
TYPE_BY_REASON = {reason: type_ for type_, reason in REASON_BY_TYPE.items()}

_NO_VALUE = object()


class GoLiteral(str):
    """A bad value already rendered the way Go prints it (e.g. `0x0` for an unsigned zero)."""


def go_value(value: Any) -> str:
    """Render a bad value the way `field.Error.ErrorBody` does (strings quoted, scalars bare)."""
    if isinstance(value, GoLiteral):
        return str(value)
    if value is None:
        return '"null"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class FieldError:
    """One `details.causes[]` entry; `message` is the body without the field path."""

    type: str                     # "Invalid value", "Required value", ...
    field: str                    # "spec.network"
    detail: str = ""
    value: Any = _NO_VALUE

    @property
    def reason(self) -> str:
        return REASON_BY_TYPE.get(self.type, "FieldValueInvalid")

    @property
    def message(self) -> str:
        shown = "Invalid value" if self.type == "Invalid type" else self.type
        if self.type in ("Required value", "Forbidden", "Too long", "Internal error") or self.value is _NO_VALUE:
            body = shown
        else:
            body = f"{shown}: {go_value(self.value)}"
        return f"{body}: {self.detail}" if self.detail else body

    def cause(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.message, "field": self.field}

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


def required(path: str, detail: str = "") -> FieldError:
    return FieldError("Required value", path, detail)


def invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError("Invalid value", path, detail, value)


def type_invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError("Invalid type", path, detail, value)


def not_supported(path: str, value: Any, supported: list[Any]) -> FieldError:
    quoted = ", ".join(json.dumps(v if isinstance(v, str) else go_value(v)) for v in supported)
    return FieldError("Unsupported value", path, f"supported values: {quoted}" if supported else "", value)


def forbidden(path: str, detail: str) -> FieldError:
    return FieldError("Forbidden", path, detail)


def duplicate(path: str, value: Any) -> FieldError:
    return FieldError("Duplicate value", path, "", value)


def too_long(path: str, detail: str) -> FieldError:
    return FieldError("Too long", path, detail)


def too_many(path: str, actual: int, maximum: int) -> FieldError:
    return FieldError("Too many", path, f"must have at most {maximum} items", actual)


@dataclass
class ApiError(Exception):
    """Raised anywhere below the HTTP layer; rendered as a `Status` by the handlers."""

    code: int
    reason: str
    message: str
    details: dict[str, Any] | None = field(default=None)

    def __str__(self) -> str:
        return f"{self.code} {self.reason}: {self.message}"

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _details(resource: Any, name: str | None) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if resource.group:
        details["group"] = resource.group
    details["kind"] = resource.plural
    return details


def qualified(resource: Any) -> str:
    """`pods`, `deployments.apps`, `mayanodes.maya.nodeops.io` as in real messages."""
    return f"{resource.plural}.{resource.group}" if resource.group else resource.plural


def not_found(resource: Any, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{qualified(resource)} "{name}" not found', _details(resource, name))


def already_exists(resource: Any, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{qualified(resource)} "{name}" already exists', _details(resource, name))


def conflict(resource: Any, name: str, why: str = "the object has been modified; please apply your changes to the latest version and try again") -> ApiError:
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {qualified(resource)} "{name}": {why}',
                    _details(resource, name))


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def forbidden_error(resource: Any, name: str, why: str) -> ApiError:
    verb_target = f'{qualified(resource)} "{name}"' if name else qualified(resource)
    return ApiError(403, "Forbidden", f"{verb_target} is forbidden: {why}", _details(resource, name))


def invalid_error(kind: str, group: str, name: str, errors: list[FieldError]) -> ApiError:
    """422 like `apierrors.NewInvalid`: one error inline, several in brackets."""
    group_kind = f"{kind}.{group}" if group else kind
    if len(errors) == 1:
        summary = str(errors[0])
    else:
        summary = "[" + ", ".join(str(e) for e in errors) + "]"
    details = {"name": name, "kind": kind, "causes": [e.cause() for e in errors]}
    if group:
        details = {"name": name, "group": group, "kind": kind, "causes": details["causes"]}
    return ApiError(422, "Invalid", f'{group_kind} "{name}" is invalid: {summary}', details)


def method_not_supported(resource: Any, verb: str) -> ApiError:
    return ApiError(405, "MethodNotAllowed", f"{verb} is not supported on resources of kind \"{qualified(resource)}\"",
                    _details(resource, None))


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
                    if content_type else "the body of the request was in an unknown format")


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)
