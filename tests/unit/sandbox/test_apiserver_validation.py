"""`validate_custom_object`: the CRD validation pipeline as a pure function (pruning, defaults, schema, CEL)."""

from __future__ import annotations

import pytest

from mayanode_operator.sandbox.apiserver.validation import validate_crd, validate_custom_object


def _crd(schema: dict) -> dict:
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "things.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                     "names": {"kind": "Thing", "plural": "things"},
                     "versions": [{"name": "v1", "served": True, "storage": True,
                                   "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                                       "spec": schema,
                                       "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                                   }}}}]}}


def _obj(spec, status=None) -> dict:
    obj = {"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "x"}, "spec": spec}
    if status is not None:
        obj["status"] = status
    return obj


SPEC = {
    "type": "object",
    "required": ["network"],
    "properties": {
        "network": {"type": "string", "enum": ["mainnet", "stagenet", "mocknet"]},
        "replicas": {"type": "integer", "minimum": 0, "maximum": 1, "default": 1},
        "name": {"type": "string", "pattern": "^[a-z]+$", "minLength": 2, "maxLength": 5},
        "port": {"x-kubernetes-int-or-string": True},
        "ip": {"type": "string", "format": "ipv4"},
        "tags": {"type": "array", "maxItems": 2, "minItems": 1, "items": {"type": "string"},
                 "x-kubernetes-list-type": "set"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        "maybe": {"type": "string", "nullable": True},
        "nested": {"type": "object", "default": {}, "properties": {"mode": {"type": "string", "default": "auto"}}},
    },
}


def causes(result) -> list[tuple[str, str, str]]:
    return [(c["reason"], c["field"], c["message"]) for c in result.causes]


def test_valid_object_is_pruned_and_defaulted():
    result = validate_custom_object(_crd(SPEC), _obj({"network": "mocknet", "port": "http", "free": {"a": {"b": 1}},
                                                       "maybe": None, "labels": {"k": "v"}, "junk": 1}),
                                    strict=False)
    assert result.valid and result.causes == []
    assert result.object["spec"] == {"network": "mocknet", "port": "http", "free": {"a": {"b": 1}}, "maybe": None,
                                     "labels": {"k": "v"}, "replicas": 1, "nested": {"mode": "auto"}}
    assert result.unknown_fields == ["spec.junk"]


def test_strict_reports_unknown_fields():
    result = validate_custom_object(_crd(SPEC), _obj({"network": "mocknet", "foo": 1, "nested": {"bar": 2}}))
    assert causes(result) == [("FieldValueUnknown", "spec.foo", "field not declared in schema"),
                              ("FieldValueUnknown", "spec.nested.bar", "field not declared in schema")]
    assert "foo" not in result.object["spec"]


@pytest.mark.parametrize("spec, expected", [
    ({}, [("FieldValueRequired", "spec.network", "Required value")]),
    ({"network": "foo"}, [("FieldValueNotSupported", "spec.network",
                           'Unsupported value: "foo": supported values: "mainnet", "stagenet", "mocknet"')]),
    ({"network": "mocknet", "replicas": 3}, [("FieldValueInvalid", "spec.replicas",
                                              "Invalid value: 3: spec.replicas in body should be less than or equal to 1")]),
    ({"network": "mocknet", "replicas": "1"}, [("FieldValueTypeInvalid", "spec.replicas",
                                                'Invalid value: "string": spec.replicas in body must be of type integer: "string"')]),
    ({"network": "mocknet", "name": "AB"}, [("FieldValueInvalid", "spec.name",
                                             "Invalid value: \"AB\": spec.name in body should match '^[a-z]+$'")]),
    ({"network": "mocknet", "name": "abcdef"}, [("FieldValueTooLong", "spec.name", "Too long: may not be longer than 5")]),
    ({"network": "mocknet", "port": 1.5}, [("FieldValueTypeInvalid", "spec.port",
                                            'Invalid value: "number": spec.port in body must be of type integer,string: "number"')]),
    ({"network": "mocknet", "ip": "1.2.3"}, [("FieldValueInvalid", "spec.ip",
                                              'Invalid value: "1.2.3": spec.ip in body must be of type ipv4: "1.2.3"')]),
    ({"network": "mocknet", "tags": ["a", "b", "c"]}, [("FieldValueTooMany", "spec.tags",
                                                        "Too many: 3: must have at most 2 items")]),
    ({"network": "mocknet", "tags": ["a", "a"]}, [("FieldValueDuplicate", "spec.tags[1]", 'Duplicate value: "a"')]),
    ({"network": "mocknet", "labels": {"k": 1}}, [("FieldValueTypeInvalid", "spec.labels.k",
                                                   'Invalid value: "integer": spec.labels.k in body must be of type string: "integer"')]),
])
def test_schema_errors(spec, expected):
    assert causes(validate_custom_object(_crd(SPEC), _obj(spec))) == expected


CEL_SPEC = {
    "type": "object",
    "x-kubernetes-validations": [
        {"rule": "self.replicas <= self.maxReplicas", "message": "replicas must not exceed maxReplicas"},
        {"rule": "!has(self.mode) || self.mode in ['a', 'b']", "messageExpression": "'bad mode ' + self.mode"},
        {"rule": "self.network == oldSelf.network", "message": "network is immutable"},
        {"rule": "self.peers.all(p, p.startsWith('tcp://')) && !self.peers.exists(p, p.matches('.*:0$'))",
         "fieldPath": ".peers", "reason": "FieldValueForbidden", "message": "bad peer"},
        {"rule": "size(self.peers) < 3 ? true : self.labels.exists(k, k == 'many')"},
    ],
    "properties": {
        "network": {"type": "string"}, "replicas": {"type": "integer"}, "maxReplicas": {"type": "integer"},
        "mode": {"type": "string"},
        "peers": {"type": "array", "items": {"type": "string"}, "default": []},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}, "default": {}},
    },
}


def test_cel_rules_pass():
    good = _obj({"network": "n", "replicas": 1, "maxReplicas": 1, "mode": "a", "peers": ["tcp://x:1"]})
    assert validate_custom_object(_crd(CEL_SPEC), good).causes == []


def test_cel_rules_fail_with_messages_and_transition_rules():
    bad = _obj({"network": "m", "replicas": 2, "maxReplicas": 1, "mode": "z",
                "peers": ["udp://x", "tcp://a", "tcp://b:0"]})
    old = _obj({"network": "n", "replicas": 1, "maxReplicas": 1})
    assert causes(validate_custom_object(_crd(CEL_SPEC), bad, old)) == [
        ("FieldValueInvalid", "spec", 'Invalid value: "object": replicas must not exceed maxReplicas'),
        ("FieldValueInvalid", "spec", 'Invalid value: "object": bad mode z'),
        ("FieldValueInvalid", "spec", 'Invalid value: "object": network is immutable'),
        ("FieldValueForbidden", "spec.peers", "Forbidden: bad peer"),
        ("FieldValueInvalid", "spec", 'Invalid value: "object": failed rule: size(self.peers) < 3 ? true : '
                                      "self.labels.exists(k, k == 'many')"),
    ]
    # Without an old object the transition rule is not evaluated.
    assert "network is immutable" not in str(validate_custom_object(_crd(CEL_SPEC), bad).causes)


def test_status_is_validated_alone_for_status_writes():
    crd = _crd({"type": "object", "properties": {"a": {"type": "string"}}})
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"] = {
        "type": "object", "properties": {"height": {"type": "integer"}}}
    result = validate_custom_object(crd, _obj({"a": 1}, {"height": "x"}), subresource="status")
    assert [c["field"] for c in result.causes] == ["status.height"]


def test_crd_structural_checks():
    crd = _crd({"type": "object", "properties": {"untyped": {"description": "no type"}}})
    assert [str(e) for e in validate_crd(crd)] == [
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[untyped].type: "
        "Required value: must not be empty for specified object fields"]
    crd = _crd({"type": "object", "x-kubernetes-validations": [{"rule": "self.a ==="}]})
    assert "compilation failed" in str(validate_crd(crd)[0])
    crd["metadata"]["name"] = "wrong"
    assert any(e.field == "metadata.name" for e in validate_crd(crd))
