"""Decoding of the Kubernetes protobuf envelope for the few built-in kinds kubectl's typed clients send that way.

`kubectl create secret generic`, `create configmap`, `create namespace` and `create serviceaccount` post
`application/vnd.kubernetes.protobuf`. Other kinds are refused with 415, never decoded partially.
"""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from typing import Any

from .errors import ApiError

MAGIC = b"k8s\x00"

# field number → (json name, type, message schema for nested messages)
Schema = dict[int, tuple[str, str, Any]]

TIME: Schema = {1: ("seconds", "int", None), 2: ("nanos", "int", None)}
OWNER_REFERENCE: Schema = {1: ("kind", "string", None), 3: ("name", "string", None), 4: ("uid", "string", None),
                           5: ("apiVersion", "string", None), 6: ("controller", "bool", None),
                           7: ("blockOwnerDeletion", "bool", None)}
OBJECT_META: Schema = {
    1: ("name", "string", None), 2: ("generateName", "string", None), 3: ("namespace", "string", None),
    4: ("selfLink", "string", None), 5: ("uid", "string", None), 6: ("resourceVersion", "string", None),
    7: ("generation", "int", None), 8: ("creationTimestamp", "time", None), 9: ("deletionTimestamp", "time", None),
    10: ("deletionGracePeriodSeconds", "int", None), 11: ("labels", "map_string", None),
    12: ("annotations", "map_string", None), 13: ("ownerReferences", "repeated_message", OWNER_REFERENCE),
    14: ("finalizers", "repeated_string", None), 17: ("managedFields", "skip", None),
}
KINDS: dict[tuple[str, str], Schema] = {
    ("v1", "Secret"): {1: ("metadata", "message", OBJECT_META), 2: ("data", "map_bytes", None),
                       3: ("type", "string", None), 4: ("stringData", "map_string", None),
                       5: ("immutable", "bool", None)},
    ("v1", "ConfigMap"): {1: ("metadata", "message", OBJECT_META), 2: ("data", "map_string", None),
                          3: ("binaryData", "map_bytes", None), 4: ("immutable", "bool", None)},
    ("v1", "Namespace"): {1: ("metadata", "message", OBJECT_META),
                          2: ("spec", "message", {1: ("finalizers", "repeated_string", None)}),
                          3: ("status", "skip", None)},
    ("v1", "ServiceAccount"): {1: ("metadata", "message", OBJECT_META),
                               4: ("automountServiceAccountToken", "bool", None)},
}
UNKNOWN: Schema = {1: ("typeMeta", "message", {1: ("apiVersion", "string", None), 2: ("kind", "string", None)}),
                   2: ("raw", "bytes", None), 3: ("contentEncoding", "string", None), 4: ("contentType", "string", None)}


class Unsupported(Exception):
    pass


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise Unsupported("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes):                             # noqa: ANN202
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise Unsupported(f"wire type {wire}")
        yield number, wire, value


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def decode(data: bytes, schema: Schema) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for number, _, value in _fields(data):
        if number not in schema:
            raise Unsupported(f"field {number}")
        name, kind, sub = schema[number]
        if kind == "skip":
            continue
        if kind == "string":
            if value:                                  # Go writes empty strings; its JSON omits them
                out[name] = value.decode()
        elif kind == "bytes":
            out[name] = value
        elif kind == "int":
            if value:
                out[name] = _signed(value)
        elif kind == "bool":
            out[name] = bool(value)
        elif kind == "message":
            out[name] = decode(value, sub)
        elif kind == "time":
            seconds = decode(value, TIME).get("seconds", 0)
            if seconds > 0:
                out[name] = datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        elif kind == "repeated_string":
            out.setdefault(name, []).append(value.decode())
        elif kind == "repeated_message":
            out.setdefault(name, []).append(decode(value, sub))
        elif kind in ("map_string", "map_bytes"):
            entry = {n: v for n, _, v in _fields(value)}
            key = entry.get(1, b"").decode()
            raw = entry.get(2, b"")
            out.setdefault(name, {})[key] = raw.decode() if kind == "map_string" else base64.b64encode(raw).decode()
    return out


def decode_object(body: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf-encoded object, or ApiError 415 for kinds not decoded here."""
    try:
        if not body.startswith(MAGIC):
            raise Unsupported("no magic")
        envelope = decode(body[len(MAGIC):], UNKNOWN)
        type_meta = envelope.get("typeMeta") or {}
        key = (type_meta.get("apiVersion", ""), type_meta.get("kind", ""))
        if key not in KINDS:
            raise Unsupported(f"kind {key}")
        obj = decode(envelope.get("raw", b""), KINDS[key])
    except (Unsupported, UnicodeDecodeError) as exc:
        raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted "
                       f"media types include: application/json, application/yaml ({exc})") from None
    obj["apiVersion"], obj["kind"] = key
    return obj
