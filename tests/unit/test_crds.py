"""The generated CRDs: up to date, structural, described, installable, and enforcing what the examples say.

Custom objects are validated with the emulated API server's validator
(`mayanode_operator.sandbox.apiserver.validation.validate_custom_object`): pruning, defaulting, OpenAPI checks and CEL
rules, with the messages a real API server gives.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import pytest
import yaml
from mayanode_operator.api import crdgen, naming
from mayanode_operator.api.models import MayaNode, NodeBackup, NodeRestore
from mayanode_operator.sandbox.apiserver.validation import validate_crd, validate_custom_object

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "crds"
EXAMPLES = sorted((CRD_DIR / "examples").glob("*.yaml"))
INVALID = sorted((CRD_DIR / "examples" / "invalid").glob("*.yaml"))
MODELS = {"MayaNode": MayaNode, "NodeBackup": NodeBackup, "NodeRestore": NodeRestore}
CRDS = {crd["spec"]["names"]["kind"]: crd for crd in crdgen.all_crds()}


# --------------------------------------------------------------------------------------------------
# Validation: the emulated API server's validator (pruning, defaulting, OpenAPI checks, CEL)
# --------------------------------------------------------------------------------------------------
def _schema(crd: dict[str, Any]) -> dict[str, Any]:
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def validate(crd: dict[str, Any], obj: dict[str, Any], old: dict | None = None):
    return validate_custom_object(crd, copy.deepcopy(obj), copy.deepcopy(old) if old else None, strict=True)


def _draft7(node: dict[str, Any]) -> dict[str, Any]:
    """A CRD schema node as plain JSON Schema (for checking defaults in isolation)."""
    out = {k: v for k, v in node.items() if not k.startswith("x-kubernetes-") and k not in ("nullable", "format")}
    if "properties" in node:
        out["properties"] = {k: _draft7(v) for k, v in node["properties"].items()}
        out["additionalProperties"] = False
    if isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = _draft7(node["additionalProperties"])
    if "items" in node:
        out["items"] = _draft7(node["items"])
    return out


def apply_defaults(node: dict[str, Any], value: Any) -> Any:
    """Structural defaulting: top-down, defaults of defaulted objects included."""
    if isinstance(value, dict) and "properties" in node:
        for name, sub in node["properties"].items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                value[name] = apply_defaults(sub, value[name])
    elif isinstance(value, dict) and isinstance(node.get("additionalProperties"), dict):
        for key in value:
            value[key] = apply_defaults(node["additionalProperties"], value[key])
    elif isinstance(value, list) and "items" in node:
        value = [apply_defaults(node["items"], item) for item in value]
    return value


def causes_text(result) -> str:
    parts = []
    for cause in result.causes or ():
        if isinstance(cause, str):
            parts.append(cause)
        elif isinstance(cause, dict):
            parts.append(f"{cause.get('field', '')}: {cause.get('message', '')} ({cause.get('reason', '')})")
        else:
            parts.append(f"{getattr(cause, 'field', '')}: {getattr(cause, 'message', cause)} "
                         f"({getattr(cause, 'reason', '')})")
    return "\n".join(parts)


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def expectations(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^# (expect|expect-model): (.+)$", line)
        if match:
            out[match.group(1)] = match.group(2).strip()
    return out


def walk(node: dict[str, Any], path: str = ""):
    """Every schema node with its path."""
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")
    if "items" in node:
        yield from walk(node["items"], f"{path}[]")


def all_rules():
    for kind, crd in CRDS.items():
        for path, node in walk(_schema(crd)):
            for index, rule in enumerate(node.get("x-kubernetes-validations", [])):
                yield pytest.param(kind, path, node, rule, id=f"{kind}{path}#{index}")


# --------------------------------------------------------------------------------------------------
# The files
# --------------------------------------------------------------------------------------------------
def test_committed_crds_equal_generated():
    expected = crdgen.rendered_files()
    assert sorted(expected) == ["mayanodes.yaml", "nodebackups.yaml", "noderestores.yaml"]
    for name, text in expected.items():
        assert (CRD_DIR / name).read_text(encoding="utf-8") == text, \
            f"crds/{name} is stale: run python -m mayanode_operator.api.crdgen --out crds/"
        assert load(CRD_DIR / name) == CRDS[yaml.safe_load(text)["spec"]["names"]["kind"]]
    assert crdgen.main(["--out", str(CRD_DIR), "--check"]) == 0


def test_check_flags_stale_files(tmp_path):
    crdgen.main(["--out", str(tmp_path)])
    assert crdgen.main(["--out", str(tmp_path), "--check"]) == 0
    path = tmp_path / "mayanodes.yaml"
    path.write_text(path.read_text() + "# edited by hand\n")
    assert crdgen.main(["--out", str(tmp_path), "--check"]) == 1
    (tmp_path / "nodebackups.yaml").unlink()
    assert crdgen.stale(tmp_path) == [str(path), str(tmp_path / "nodebackups.yaml")]


def test_generation_is_deterministic():
    assert crdgen.rendered_files() == crdgen.rendered_files()
    for text in crdgen.rendered_files().values():
        assert text.startswith(crdgen.HEADER)


# --------------------------------------------------------------------------------------------------
# Structure
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(CRDS))
def test_schema_is_structural_and_described(kind):
    problems = []
    for path, node in walk(_schema(CRDS[kind])):
        if "type" not in node and not node.get("x-kubernetes-int-or-string"):
            problems.append(f"{path}: no type")
        if not node.get("description"):
            problems.append(f"{path}: no description")
        for banned in ("$ref", "anyOf", "oneOf", "allOf", "not", "definitions", "$defs", "title"):
            if banned in node:
                problems.append(f"{path}: {banned}")
        if node.get("x-kubernetes-preserve-unknown-fields"):
            problems.append(f"{path}: preserve-unknown-fields")
        if node.get("nullable"):
            problems.append(f"{path}: nullable")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{path}: properties and additionalProperties")
        if node.get("additionalProperties") is False or node.get("additionalProperties") is True:
            problems.append(f"{path}: boolean additionalProperties")
        if node.get("type") == "integer" and node.get("format") != "int64":
            problems.append(f"{path}: integer without int64 format")
        if node.get("type") == "array" and "items" not in node:
            problems.append(f"{path}: array without items")
        for required in node.get("required", []):
            if required not in node.get("properties", {}):
                problems.append(f"{path}: required {required} is not a property")
        if "enum" in node and "default" in node and node["default"] not in node["enum"]:
            problems.append(f"{path}: default outside the enum")
        list_type = node.get("x-kubernetes-list-type")
        if list_type == "map":
            item = node["items"]
            for key in node["x-kubernetes-list-map-keys"]:
                if key not in item.get("required", []) and "default" not in item["properties"][key]:
                    problems.append(f"{path}: list-map key {key} neither required nor defaulted")
        if list_type == "set" and node["items"].get("type") not in ("string", "integer", "number", "boolean"):
            problems.append(f"{path}: list-type set of non-scalars")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_defaults_are_valid_under_their_own_schema(kind):
    for path, node in walk(_schema(CRDS[kind])):
        if "default" not in node:
            continue
        defaulted = apply_defaults(node, copy.deepcopy(node["default"]))
        errors = [e.message for e in jsonschema.Draft7Validator(_draft7(node)).iter_errors(defaulted)]
        assert not errors, f"{path}: default {node['default']!r} invalid: {errors}"


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_emulated_api_server_accepts_the_crd(kind):
    errors = validate_crd(CRDS[kind])
    assert not errors, "\n".join(str(e) for e in errors)


def test_crd_names_and_subresources():
    expected = {
        "MayaNode": ("mayanodes", "mayanode", ["mn"]),
        "NodeBackup": ("nodebackups", "nodebackup", ["nbk"]),
        "NodeRestore": ("noderestores", "noderestore", ["nrs"]),
    }
    for kind, (plural, singular, short) in expected.items():
        crd = CRDS[kind]
        assert crd["metadata"]["name"] == f"{plural}.{naming.GROUP}"
        names = crd["spec"]["names"]
        assert (names["plural"], names["singular"], names["shortNames"]) == (plural, singular, short)
        assert names["categories"] == ["maya"]
        assert crd["spec"]["scope"] == "Namespaced"
        (version,) = crd["spec"]["versions"]
        assert version["name"] == naming.VERSION and version["served"] and version["storage"]
        assert version["subresources"] == {"status": {}}


def _resolve(schema: dict[str, Any], json_path: str) -> dict[str, Any] | None:
    node = schema
    for part in re.sub(r"\[\?\(.*?\)\]", "[]", json_path).strip(".").split("."):
        name, is_list = (part[:-2], True) if part.endswith("[]") else (part, False)
        if name == "metadata":
            return {"type": "object"}
        node = node.get("properties", {}).get(name)
        if node is None:
            return None
        if is_list:
            node = node["items"]
    return node


def test_printer_columns():
    columns = {kind: crd["spec"]["versions"][0]["additionalPrinterColumns"] for kind, crd in CRDS.items()}
    main = lambda kind: [c["name"].upper() for c in columns[kind] if not c.get("priority")]  # noqa: E731
    assert main("MayaNode") == ["VERSION", "TARGET", "NODE-STATUS", "HEIGHT", "SYNCED", "IP", "READY", "AGE"]
    assert main("NodeBackup") == ["NODE", "PHASE", "VERIFIED", "SIZE", "AGE"]
    assert main("NodeRestore") == ["NODE", "BACKUP", "PHASE", "DOWNTIME", "AGE"]
    assert {"SLASH", "BOND"} <= {c["name"].upper() for c in columns["MayaNode"] if c.get("priority") == 1}
    assert "DIGEST" in {c["name"].upper() for c in columns["NodeBackup"] if c.get("priority") == 1}
    kube_type = {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean"}
    for kind, cols in columns.items():
        for col in cols:
            node = _resolve(_schema(CRDS[kind]), col["jsonPath"])
            assert node is not None, f"{kind} column {col['name']}: {col['jsonPath']} is not in the schema"
            assert col.get("description")
            if col["type"] == "date":
                assert node.get("format") == "date-time" or col["jsonPath"] == ".metadata.creationTimestamp"
            elif "[?(" not in col["jsonPath"]:
                assert kube_type[node["type"]] == col["type"], f"{kind} column {col['name']}"


# --------------------------------------------------------------------------------------------------
# CEL
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,path,node,rule", list(all_rules()))
def test_cel_rule_compiles_and_points_at_a_field(kind, path, node, rule):
    env = celpy.Environment()
    env.program(env.compile(rule["rule"]))
    assert rule["message"] and not rule["message"].endswith(".")
    assert set(rule) <= {"rule", "message", "fieldPath", "reason", "messageExpression", "optionalOldSelf"}
    if "fieldPath" in rule:
        assert rule["fieldPath"].lstrip(".") in node["properties"], rule["fieldPath"]
    if "reason" in rule:
        assert rule["reason"] in ("FieldValueInvalid", "FieldValueRequired", "FieldValueForbidden",
                                  "FieldValueDuplicate")
    # A rule evaluates only what it can see: every field it names must exist below this node.
    for name in set(re.findall(r"(?:self|oldSelf)\.([A-Za-z][A-Za-z0-9]*)", rule["rule"])):
        assert name in node.get("properties", {}), f"{kind}{path}: rule names unknown field {name}"


def test_strings_under_cel_rules_are_bounded():
    """The API server estimates a rule's cost from maxLength/maxItems: unbounded input makes it refuse the CRD."""
    problems = []
    for kind, crd in CRDS.items():
        for path, node in walk(_schema(crd)):
            if not node.get("x-kubernetes-validations"):
                continue
            for sub_path, sub in walk(node, path):
                if sub.get("type") == "string" and "maxLength" not in sub and "enum" not in sub \
                        and sub.get("format") != "date-time":
                    problems.append(f"{kind}{sub_path}: string without maxLength under a CEL rule")
                if sub.get("type") == "array" and "maxItems" not in sub:
                    problems.append(f"{kind}{sub_path}: array without maxItems under a CEL rule")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------------------------------
# Examples
# --------------------------------------------------------------------------------------------------
def _strip_empty(value: Any) -> Any:
    if isinstance(value, dict):
        out = {k: _strip_empty(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in ({}, [])}
    if isinstance(value, list):
        return [_strip_empty(v) for v in value]
    return value


def test_examples_exist():
    kinds = [load(p)["kind"] for p in EXAMPLES]
    assert {"MayaNode", "NodeBackup", "NodeRestore"} <= set(kinds)
    assert len(INVALID) >= 7


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_valid_example(path):
    obj = load(path)
    assert obj["apiVersion"] == naming.API_VERSION
    result = validate(CRDS[obj["kind"]], obj)
    assert not result.causes, causes_text(result)
    model = MODELS[obj["kind"]]
    parsed_raw = model.model_validate(obj)
    parsed_defaulted = model.model_validate(result.object)
    assert parsed_raw.spec == parsed_defaulted.spec
    # The models fill in exactly the defaults the API server fills in.
    assert _strip_empty(parsed_raw.spec.to_k8s()) == _strip_empty(result.object["spec"])


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_example_is_refused(path):
    obj, expect = load(path), expectations(path)
    assert "expect" in expect, f"{path.name}: no '# expect:' line"
    crd = CRDS[obj["kind"]]
    result = validate(crd, obj)
    text = causes_text(result)
    assert result.causes, f"{path.name} was accepted"
    assert expect["expect"] in text, f"{path.name}: expected {expect['expect']!r} in:\n{text}"


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_example_is_refused_by_the_models(path):
    obj, expect = load(path), expectations(path)
    assert "expect-model" in expect, f"{path.name}: no '# expect-model:' line"
    with pytest.raises(ValueError) as error:
        MODELS[obj["kind"]].model_validate(obj)
    assert expect["expect-model"] in str(error.value)


# --------------------------------------------------------------------------------------------------
# Transition rules (oldSelf)
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("file,change,message", [
    ("noderestore-migration.yaml", ("backupRef", {"name": "another-backup"}), "backupRef is immutable"),
    ("noderestore-migration.yaml", ("nodeRef", {"name": "other"}), "nodeRef is immutable"),
    ("noderestore-migration.yaml", ("restoreSecrets", False), "restoreSecrets is immutable"),
    ("nodebackup-manual.yaml", ("nodeRef", {"name": "other"}), "cannot change after creation"),
    ("nodebackup-imported.yaml", ("location", {"s3": {"bucket": "elsewhere"}, "encryption": {
        "recipients": ["age1l0nupmvw35cq3lgr57dwuyfkdqq0ahaerxtue73k58vrfwcrts7qtgh6f0"]}}),
     "cannot change after creation"),
])
def test_immutable_fields(file, change, message):
    old = load(CRD_DIR / "examples" / file)
    crd = CRDS[old["kind"]]
    stored = validate(crd, old).object
    new = copy.deepcopy(stored)
    new["spec"][change[0]] = change[1]
    result = validate(crd, new, old=stored)
    assert message in causes_text(result)


def test_mutable_fields_may_change():
    old = load(CRD_DIR / "examples" / "noderestore-migration.yaml")
    crd = CRDS["NodeRestore"]
    stored = validate(crd, old).object
    new = copy.deepcopy(stored)
    new["spec"]["force"] = True
    new["spec"]["doubleSignGuard"]["silentBlocks"] = 20
    assert not validate(crd, new, old=stored).causes
    backup = load(CRD_DIR / "examples" / "nodebackup-manual.yaml")
    stored = validate(CRDS["NodeBackup"], backup).object
    new = copy.deepcopy(stored)
    new["spec"]["ttl"] = "1440h"
    new["spec"]["deletionPolicy"] = "Delete"
    assert not validate(CRDS["NodeBackup"], new, old=stored).causes
