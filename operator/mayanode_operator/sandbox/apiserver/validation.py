"""Custom resource validation as kube-apiserver does it: pruning, defaulting, OpenAPI v3 checks, CEL rules.

`validate_custom_object` is pure (no server needed); the emulated API server and tests both call it.
Messages follow apimachinery's `field.Error` and kube-openapi's validator wording.
"""

from __future__ import annotations

import base64
import binascii
import copy
import ipaddress
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from .errors import (FieldError, duplicate, forbidden, invalid, not_supported, required, too_long,
                     too_many, type_invalid)

ROOT_FIELDS = ("apiVersion", "kind", "metadata")
UNKNOWN_FIELD_REASON = "FieldValueUnknown"
UNKNOWN_FIELD_MESSAGE = "field not declared in schema"


@dataclass
class ValidationResult:
    """`object` is the pruned and defaulted object; `causes` is empty when the object is valid."""

    object: dict[str, Any]
    causes: list[dict[str, str]] = field(default_factory=list)
    errors: list[FieldError] = field(default_factory=list)
    unknown_fields: list[str] = field(default_factory=list)   # "spec.foo", found whether strict or not

    @property
    def valid(self) -> bool:
        return not self.causes

    def __bool__(self) -> bool:
        return self.valid


def crd_version(crd: dict[str, Any], api_version: str | None = None) -> dict[str, Any]:
    """The CRD version an object is written in: its own if served, else the storage version."""
    versions = crd.get("spec", {}).get("versions") or []
    wanted = (api_version or "").rsplit("/", 1)[-1]
    for v in versions:
        if v.get("name") == wanted and v.get("served", True):
            return v
    for v in versions:
        if v.get("storage"):
            return v
    if not versions:
        raise ValueError("CRD has no versions")
    return versions[0]


def crd_schema(crd: dict[str, Any], api_version: str | None = None) -> dict[str, Any]:
    return ((crd_version(crd, api_version).get("schema") or {}).get("openAPIV3Schema")) or {
        "type": "object", "x-kubernetes-preserve-unknown-fields": True}


def validate_custom_object(crd: dict[str, Any], obj: dict[str, Any], old: dict[str, Any] | None = None, *,
                           strict: bool = True, subresource: str | None = None) -> ValidationResult:
    """Prune unknown fields, apply defaults, then validate `obj` against the CRD's schema and CEL rules.

    `old` (the stored object) enables CEL transition rules (`oldSelf`). With `strict`, unknown fields are
    reported as causes (`reason` "FieldValueUnknown", message "field not declared in schema"), as
    `fieldValidation=Strict` refuses them; without it they are silently pruned.
    `subresource="status"` validates only `.status`; anything else validates everything.
    """
    schema = crd_schema(crd, obj.get("apiVersion"))
    unknown: list[str] = []
    result = copy.deepcopy(obj)
    for key in list(result):
        if key in ROOT_FIELDS:
            continue
        sub = (schema.get("properties") or {}).get(key)
        if sub is None and not schema.get("x-kubernetes-preserve-unknown-fields"):
            unknown.append(key)
            del result[key]
        elif sub is not None:
            if result[key] is None and not sub.get("nullable"):
                del result[key]
                continue
            result[key] = _prune_and_default(result[key], sub, key, unknown)
    _apply_defaults_at(result, schema, "", unknown)

    errors: list[FieldError] = []
    checker = _Checker(errors)
    old_root = old or None
    for key in sorted(k for k in (schema.get("properties") or {}) if k not in ROOT_FIELDS):
        if subresource == "status" and key != "status":
            continue
        sub = schema["properties"][key]
        if key in result:
            checker.check(result[key], sub, key, (old_root or {}).get(key) if old_root else _MISSING)
        elif key in (schema.get("required") or []):
            errors.append(required(key))
    for key in schema.get("required") or []:
        if key not in (schema.get("properties") or {}) and key not in result and key not in ROOT_FIELDS:
            errors.append(required(key))
    if _has_rules(schema):
        if any(e.type in _BLOCKING for e in errors):
            errors.append(invalid("<nil>", None, "some validation rules were not checked because the object "
                                                 "was invalid; correct the existing errors to complete validation"))
        else:
            checker.cel_walk(result, schema, "", old_root if old_root is not None else _MISSING)

    metadata_name = ((schema.get("properties") or {}).get("metadata") or {}).get("properties", {}).get("name")
    if metadata_name and (result.get("metadata") or {}).get("name") is not None:
        checker.check(result["metadata"]["name"], metadata_name, "metadata.name", _MISSING)

    if strict:
        errors = [FieldError("Invalid value", p, UNKNOWN_FIELD_MESSAGE) for p in unknown] + errors
    causes = [e.cause() for e in errors]
    if strict:
        for cause, path in zip(causes, unknown):
            cause["reason"] = UNKNOWN_FIELD_REASON
            cause["message"] = UNKNOWN_FIELD_MESSAGE
    return ValidationResult(object=result, causes=causes, errors=errors, unknown_fields=unknown)


# Errors after which kube-apiserver does not evaluate CEL rules (`hasBlockingErr`).
_BLOCKING = ("Unsupported value", "Required value", "Too long", "Too many", "Invalid type")


def _has_rules(schema: Any) -> bool:
    if isinstance(schema, dict):
        return bool(schema.get("x-kubernetes-validations")) or any(_has_rules(v) for v in schema.values())
    if isinstance(schema, list):
        return any(_has_rules(v) for v in schema)
    return False


# ---------------------------------------------------------------------------------------------- pruning

def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _prune_and_default(value: Any, schema: dict[str, Any], path: str, unknown: list[str]) -> Any:
    if isinstance(value, dict) and not schema.get("x-kubernetes-int-or-string"):
        props = schema.get("properties")
        additional = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields")
        embedded = schema.get("x-kubernetes-embedded-resource")
        for key in list(value):
            sub = (props or {}).get(key)
            if sub is None and isinstance(additional, dict):
                sub = additional
            if sub is None:
                if preserve or additional is True or (embedded and key in ROOT_FIELDS):
                    continue
                if schema.get("type") == "object" or props is not None:
                    unknown.append(_child(path, key))
                    del value[key]
                continue
            if value[key] is None and not sub.get("nullable"):
                del value[key]                       # null in a non-nullable field is pruned, then defaulted
                continue
            value[key] = _prune_and_default(value[key], sub, _child(path, key), unknown)
        _apply_defaults_at(value, schema, path, unknown)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        items = schema["items"]
        for i, item in enumerate(value):
            value[i] = _prune_and_default(item, items, f"{path}[{i}]", unknown)
    return value


def _apply_defaults_at(value: dict[str, Any], schema: dict[str, Any], path: str, unknown: list[str]) -> None:
    for key, sub in (schema.get("properties") or {}).items():
        if key not in value and "default" in sub and not (path == "" and key in ROOT_FIELDS):
            value[key] = _prune_and_default(copy.deepcopy(sub["default"]), sub, _child(path, key), [])


# ---------------------------------------------------------------------------------------------- checks

_MISSING = object()
_TYPE_NAMES = {bool: "boolean", str: "string", int: "integer", float: "number", dict: "object", list: "array"}


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    return _TYPE_NAMES.get(type(value), "object")


def _is_type(value: Any, expected: str) -> bool:
    if expected == "string":
        return isinstance(value, str)
    if expected == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    if expected == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected == "boolean":
        return isinstance(value, bool)
    if expected == "object":
        return isinstance(value, dict)
    if expected == "array":
        return isinstance(value, list)
    return True


def _check_format(value: str, fmt: str) -> bool:
    try:
        if fmt == "date-time" or fmt == "datetime":
            datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
            return "T" in value.upper()
        if fmt == "date":
            return bool(re.fullmatch(r"\d{4}-\d{2}-\d{2}", value)) and bool(datetime.strptime(value, "%Y-%m-%d"))
        if fmt == "byte":
            base64.b64decode(value, validate=True)
            return True
        if fmt == "ipv4":
            ipaddress.IPv4Address(value)
            return True
        if fmt == "ipv6":
            ipaddress.IPv6Address(value)
            return True
        if fmt == "cidr":
            ipaddress.ip_network(value, strict=False)
            return "/" in value
        if fmt == "uuid":
            uuid.UUID(value)
            return True
        if fmt == "hostname":
            return bool(re.fullmatch(r"(?=.{1,253}$)[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?"
                                     r"(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*", value))
        if fmt == "email":
            return bool(re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value))
        if fmt == "mac":
            return bool(re.fullmatch(r"([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}", value))
        if fmt == "duration":
            return bool(re.fullmatch(r"([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h|d|w))+", value))
    except (ValueError, binascii.Error):
        return False
    return True


class _Checker:
    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors

    def check(self, value: Any, schema: dict[str, Any], path: str, old: Any) -> None:
        errors = self.errors
        if value is None:
            if not schema.get("nullable"):
                type_ = schema.get("type") or ("integer or string" if schema.get("x-kubernetes-int-or-string") else "")
                if type_:
                    errors.append(type_invalid(path, "null", f'{path} in body must be of type {type_}: "null"'))
            return
        if schema.get("x-kubernetes-int-or-string"):
            if not (isinstance(value, str) or _is_type(value, "integer")):
                errors.append(type_invalid(path, json_type(value),
                                           f'{path} in body must be of type integer,string: "{json_type(value)}"'))
                return
        elif schema.get("type") and not _is_type(value, schema["type"]):
            errors.append(type_invalid(path, json_type(value),
                                       f'{path} in body must be of type {schema["type"]}: "{json_type(value)}"'))
            return
        if "enum" in schema and value not in schema["enum"]:
            errors.append(not_supported(path, value, schema["enum"]))
        if isinstance(value, str):
            self._check_string(value, schema, path)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            self._check_number(value, schema, path)
        elif isinstance(value, list):
            self._check_array(value, schema, path, old)
        elif isinstance(value, dict):
            self._check_object(value, schema, path, old)
        self._check_combinators(value, schema, path)

    def _check_string(self, value: str, schema: dict[str, Any], path: str) -> None:
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            self.errors.append(too_long(path, f"may not be longer than {schema['maxLength']}"))
        if "minLength" in schema and len(value) < schema["minLength"]:
            self.errors.append(invalid(path, value, f"{path} in body should be at least {schema['minLength']} chars long"))
        if "pattern" in schema and not _pattern(schema["pattern"]).search(value):
            self.errors.append(invalid(path, value, f"{path} in body should match '{schema['pattern']}'"))
        fmt = schema.get("format")
        if fmt and schema.get("type") == "string" and not _check_format(value, fmt):
            self.errors.append(invalid(path, value, f'{path} in body must be of type {fmt}: "{value}"'))

    def _check_number(self, value: float, schema: dict[str, Any], path: str) -> None:
        if "maximum" in schema:
            if schema.get("exclusiveMaximum") and value >= schema["maximum"]:
                self.errors.append(invalid(path, value, f"{path} in body should be less than {_num(schema['maximum'])}"))
            elif value > schema["maximum"]:
                self.errors.append(invalid(path, value,
                                           f"{path} in body should be less than or equal to {_num(schema['maximum'])}"))
        if "minimum" in schema:
            if schema.get("exclusiveMinimum") and value <= schema["minimum"]:
                self.errors.append(invalid(path, value, f"{path} in body should be greater than {_num(schema['minimum'])}"))
            elif value < schema["minimum"]:
                self.errors.append(invalid(path, value,
                                           f"{path} in body should be greater than or equal to {_num(schema['minimum'])}"))
        if schema.get("multipleOf") and (value / schema["multipleOf"]) % 1:
            self.errors.append(invalid(path, value, f"{path} in body should be a multiple of {_num(schema['multipleOf'])}"))
        fmt = schema.get("format")
        if fmt == "int32" and not -2**31 <= value < 2**31 or fmt == "int64" and not -2**63 <= value < 2**63:
            self.errors.append(invalid(path, value, f'{path} in body must be of type {fmt}: "{value}"'))

    def _check_array(self, value: list[Any], schema: dict[str, Any], path: str, old: Any) -> None:
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            self.errors.append(too_many(path, len(value), schema["maxItems"]))
        if "minItems" in schema and len(value) < schema["minItems"]:
            self.errors.append(invalid(path, len(value), f"{path} in body should have at least {schema['minItems']} items"))
        list_type = schema.get("x-kubernetes-list-type")
        if list_type == "set":
            seen: list[Any] = []
            for i, item in enumerate(value):
                if item in seen:
                    self.errors.append(duplicate(f"{path}[{i}]", item))
                seen.append(item)
        elif list_type == "map":
            keys = schema.get("x-kubernetes-list-map-keys") or []
            seen_keys: list[tuple[Any, ...]] = []
            for i, item in enumerate(value):
                if not isinstance(item, dict):
                    continue
                key = tuple(item.get(k) for k in keys)
                if key in seen_keys:
                    self.errors.append(duplicate(f"{path}[{i}]", {k: item.get(k) for k in keys}))
                seen_keys.append(key)
        items = schema.get("items")
        if isinstance(items, dict):
            old_by_key = _old_list_items(old, schema)
            for i, item in enumerate(value):
                self.check(item, items, f"{path}[{i}]", old_by_key(item))

    def _check_object(self, value: dict[str, Any], schema: dict[str, Any], path: str, old: Any) -> None:
        props = schema.get("properties") or {}
        old_map = old if isinstance(old, dict) else {}
        for key in schema.get("required") or []:
            if key not in value:
                self.errors.append(required(_child(path, key)))
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            self.errors.append(too_many(path, len(value), schema["maxProperties"]))
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            self.errors.append(invalid(path, len(value),
                                       f"{path} in body should have at least {schema['minProperties']} properties"))
        additional = schema.get("additionalProperties")
        for key in sorted(value, key=lambda k: (k not in props, list(props).index(k) if k in props else 0, k)):
            sub = props.get(key)
            if sub is None and isinstance(additional, dict):
                sub = additional
            if sub is None:
                if additional is False:
                    self.errors.append(forbidden(_child(path, key), "additional properties are not allowed"))
                continue
            if schema.get("x-kubernetes-embedded-resource") and key == "metadata":
                continue
            self.check(value[key], sub, _child(path, key), old_map.get(key, _MISSING))

    def _check_combinators(self, value: Any, schema: dict[str, Any], path: str) -> None:
        def passes(sub: dict[str, Any]) -> bool:
            probe: list[FieldError] = []
            _Checker(probe).check(value, {k: v for k, v in sub.items() if k != "x-kubernetes-validations"},
                                  path, _MISSING)
            return not probe

        for sub in schema.get("allOf") or []:
            self.check(value, {k: v for k, v in sub.items() if k != "x-kubernetes-validations"}, path, _MISSING)
        if schema.get("anyOf") and not any(passes(s) for s in schema["anyOf"]):
            self.errors.append(invalid(path, json_type(value), f"{path} in body must validate at least one schema (anyOf)"))
        if schema.get("oneOf") and sum(passes(s) for s in schema["oneOf"]) != 1:
            self.errors.append(invalid(path, json_type(value), f"{path} in body must validate one and only one schema (oneOf)"))
        if isinstance(schema.get("not"), dict) and passes(schema["not"]):
            self.errors.append(invalid(path, json_type(value), f"{path} in body must not validate the schema (not)"))

    # ------------------------------------------------------------------------------------------ CEL

    def cel_walk(self, value: Any, schema: dict[str, Any], path: str, old: Any) -> None:
        """Evaluate every `x-kubernetes-validations` rule below `schema`, innermost nodes first."""
        if value is None or not isinstance(schema, dict):
            return
        if isinstance(value, dict) and not schema.get("x-kubernetes-int-or-string"):
            props = schema.get("properties") or {}
            additional = schema.get("additionalProperties")
            old_map = old if isinstance(old, dict) else {}
            for key, item in value.items():
                sub = props.get(key) or (additional if isinstance(additional, dict) else None)
                if sub is not None and not (path == "" and key in ROOT_FIELDS):
                    self.cel_walk(item, sub, _child(path, key), old_map.get(key, _MISSING))
        elif isinstance(value, list) and isinstance(schema.get("items"), dict):
            old_by_key = _old_list_items(old, schema)
            for i, item in enumerate(value):
                self.cel_walk(item, schema["items"], f"{path}[{i}]", old_by_key(item))
        self.cel(value, schema, path, old)

    def cel(self, value: Any, schema: dict[str, Any], path: str, old: Any) -> None:
        for i, rule_spec in enumerate(schema.get("x-kubernetes-validations") or []):
            rule = rule_spec.get("rule", "")
            transition = _references_old_self(rule)
            if transition and (old is _MISSING or old is None) and not rule_spec.get("optionalOldSelf"):
                continue
            activation: dict[str, Any] = {"self": _to_cel(value, schema)}
            if transition:
                activation["oldSelf"] = _to_cel(None if old is _MISSING else old, schema)
            target = path
            if rule_spec.get("fieldPath"):
                target = path + rule_spec["fieldPath"] if path else rule_spec["fieldPath"].lstrip(".")
            try:
                outcome = evaluate_cel(rule, activation)
            except CelError as exc:
                self.errors.append(invalid(target or "<nil>", _cel_type_name(value), f"{exc} evaluating rule: {rule}"))
                continue
            if outcome is True:
                continue
            message = rule_spec.get("message") or f"failed rule: {_rule_for_message(rule)}"
            if rule_spec.get("messageExpression"):
                try:
                    produced = evaluate_cel(rule_spec["messageExpression"], activation, want=str)
                    if produced and "\n" not in produced:
                        message = produced
                except CelError:
                    pass
            self.errors.append(_cel_error(rule_spec.get("reason"), target or "<nil>", value, message))


def _cel_error(reason: str | None, path: str, value: Any, message: str) -> FieldError:
    if reason == "FieldValueForbidden":
        return forbidden(path, message)
    if reason == "FieldValueRequired":
        return required(path, message)
    if reason == "FieldValueDuplicate":
        return FieldError("Duplicate value", path, message, _cel_type_name(value))
    return invalid(path, _cel_type_name(value), message)


def _cel_type_name(value: Any) -> str:
    return json_type(value)


def _rule_for_message(rule: str) -> str:
    return " ".join(rule.split())


def _num(n: float) -> str:
    return str(int(n)) if isinstance(n, float) and n.is_integer() else str(n)


@lru_cache(maxsize=512)
def _pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _references_old_self(rule: str) -> bool:
    return bool(re.search(r"\boldSelf\b", rule))


def _old_list_items(old: Any, schema: dict[str, Any]):
    """Correlate list items with the old list for transition rules: only map-type lists correlate."""
    if schema.get("x-kubernetes-list-type") != "map" or not isinstance(old, list):
        return lambda item: _MISSING
    keys = schema.get("x-kubernetes-list-map-keys") or []
    index = {tuple(o.get(k) for k in keys): o for o in old if isinstance(o, dict)}
    return lambda item: index.get(tuple(item.get(k) for k in keys), _MISSING) if isinstance(item, dict) else _MISSING


# ---------------------------------------------------------------------------------------------- CEL engine

class CelError(Exception):
    """A CEL rule that did not compile or could not be evaluated."""


def _to_cel(value: Any, schema: dict[str, Any]) -> Any:
    import celpy
    return celpy.json_to_cel(value)


def _cel_functions() -> dict[str, Any]:
    import celpy.celtypes as ct

    def lower_ascii(s: Any) -> Any:
        return ct.StringType(str(s).lower())

    def upper_ascii(s: Any) -> Any:
        return ct.StringType(str(s).upper())

    def trim(s: Any) -> Any:
        return ct.StringType(str(s).strip())

    def join(items: Any, sep: Any = "") -> Any:
        return ct.StringType(str(sep).join(str(i) for i in items))

    def split(s: Any, sep: Any) -> Any:
        return ct.ListType([ct.StringType(p) for p in str(s).split(str(sep))])

    def index_of(s: Any, sub: Any) -> Any:
        return ct.IntType(str(s).find(str(sub)))

    def is_sorted(items: Any) -> Any:
        return ct.BoolType(list(items) == sorted(items))

    return {"lowerAscii": lower_ascii, "upperAscii": upper_ascii, "trim": trim, "join": join,
            "split": split, "indexOf": index_of, "isSorted": is_sorted}


@lru_cache(maxsize=1024)
def compile_cel(rule: str) -> Any:
    import celpy
    env = celpy.Environment()
    try:
        ast = env.compile(rule)
    except Exception as exc:                      # celpy raises CELParseError with a caret diagram
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CelError(f"compilation failed: {first}") from None
    return env.program(ast, functions=_cel_functions())


def evaluate_cel(rule: str, activation: dict[str, Any], want: type = bool) -> Any:
    import celpy
    import celpy.celtypes as ct
    program = compile_cel(rule)
    try:
        result = program.evaluate(activation)
    except celpy.CELEvalError as exc:
        raise CelError(_cel_error_text(exc)) from None
    except Exception as exc:                      # noqa: BLE001 - any evaluator failure is a rule error
        raise CelError(str(exc)) from None
    if isinstance(result, celpy.CELEvalError):
        raise CelError(_cel_error_text(result))
    if want is bool:
        if isinstance(result, ct.BoolType) or isinstance(result, bool):
            return bool(result)
        raise CelError(f"rule did not evaluate to a bool: {result!r}")
    if isinstance(result, str):
        return str(result)
    raise CelError("messageExpression must evaluate to a string")


def _cel_error_text(exc: Exception) -> str:
    args = getattr(exc, "args", ())
    text = args[0] if args else str(exc)
    match = re.match(r"no such member in mapping: '(.*)'", str(text))
    if match:
        return f"no such key: {match.group(1)}"
    return str(text)


# ---------------------------------------------------------------------------------------------- CRD checks

def validate_crd(crd: dict[str, Any]) -> list[FieldError]:
    """Minimal apiextensions validation: names, versions, and a structural schema per version."""
    errors: list[FieldError] = []
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group") or ""
    name = (crd.get("metadata") or {}).get("name", "")
    if not group:
        errors.append(required("spec.group"))
    if not names.get("plural"):
        errors.append(required("spec.names.plural"))
    if not names.get("kind"):
        errors.append(required("spec.names.kind"))
    if names.get("plural") and group and name != f"{names['plural']}.{group}":
        errors.append(invalid("metadata.name", name, 'must be spec.names.plural+"."+spec.group'))
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        errors.append(not_supported("spec.scope", spec.get("scope"), ["Cluster", "Namespaced"]))
    versions = spec.get("versions") or []
    if not versions:
        errors.append(invalid("spec.versions", versions, "must have exactly one version marked as storage version"))
    elif sum(1 for v in versions if v.get("storage")) != 1:
        errors.append(invalid("spec.versions", versions, "must have exactly one version marked as storage version"))
    for i, version in enumerate(versions):
        base = f"spec.versions[{i}]"
        if not version.get("name"):
            errors.append(required(f"{base}.name"))
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        if schema is None:
            errors.append(required(f"{base}.schema.openAPIV3Schema", "schemas are required"))
            continue
        _structural(schema, f"{base}.schema.openAPIV3Schema", errors, root=True)
    return errors


def _structural(schema: dict[str, Any], path: str, errors: list[FieldError], root: bool = False) -> None:
    if not isinstance(schema, dict):
        errors.append(invalid(path, json_type(schema), "must be an object"))
        return
    special = schema.get("x-kubernetes-int-or-string") or schema.get("x-kubernetes-preserve-unknown-fields")
    if not schema.get("type") and not special:
        errors.append(required(f"{path}.type", "must not be empty for specified object fields"
                               if not root else "must not be empty at the root"))
    elif root and schema.get("type") != "object":
        errors.append(invalid(f"{path}.type", schema.get("type"), "must be object at the root"))
    if schema.get("type") and schema["type"] not in ("object", "array", "string", "integer", "number", "boolean"):
        errors.append(not_supported(f"{path}.type", schema["type"],
                                    ["array", "boolean", "integer", "number", "object", "string"]))
    if schema.get("properties") and schema.get("type") not in ("object", None):
        errors.append(forbidden(f"{path}.properties", "must be empty for non-object types"))
    if schema.get("properties") and isinstance(schema.get("additionalProperties"), (dict, bool)) \
            and schema.get("additionalProperties") is not False:
        errors.append(forbidden(f"{path}.additionalProperties", "additionalProperties and properties are mutual exclusive"))
    if schema.get("type") == "array" and not isinstance(schema.get("items"), dict):
        errors.append(required(f"{path}.items", "must be specified"))
    for key, sub in (schema.get("properties") or {}).items():
        if root and key == "metadata":
            continue
        _structural(sub, f"{path}.properties[{key}]", errors)
    if isinstance(schema.get("items"), dict):
        _structural(schema["items"], f"{path}.items", errors)
    if isinstance(schema.get("additionalProperties"), dict):
        _structural(schema["additionalProperties"], f"{path}.additionalProperties", errors)
    if "pattern" in schema:
        try:
            re.compile(schema["pattern"])
        except re.error as exc:
            errors.append(invalid(f"{path}.pattern", schema["pattern"], f"must be a valid regular expression: {exc}"))
    for i, rule in enumerate(schema.get("x-kubernetes-validations") or []):
        try:
            compile_cel(rule.get("rule", ""))
        except CelError as exc:
            errors.append(invalid(f"{path}.x-kubernetes-validations[{i}].rule", rule.get("rule"), str(exc)))


__all__ = ["ValidationResult", "validate_custom_object", "validate_crd", "crd_schema", "crd_version",
           "evaluate_cel", "compile_cel", "CelError", "json_type", "UNKNOWN_FIELD_MESSAGE", "UNKNOWN_FIELD_REASON"]
