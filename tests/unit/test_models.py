"""The pydantic models: they agree with the CRDs field by field, and their helpers compute what the operator needs.

The agreement test walks the models' type annotations and the generated schema side by side, independently of how
`crdgen` works: every field and alias, type, enum, default, constraint, description and required-ness must match.
"""

from __future__ import annotations

import enum
import inspect
import ipaddress
import re
import types
import typing
from datetime import UTC, datetime, timedelta
from typing import Any

import annotated_types
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mayanode_operator.api import common, crdgen, naming
from mayanode_operator.api.models import (
    BackupLocation,
    BackupPolicy,
    ExternalIPSpec,
    HaltAction,
    HaltPolicy,
    ImageSpec,
    MayaNode,
    MayaNodeSpec,
    MayaNodeStatus,
    NodeActionRecord,
    NodeBackupSpec,
    NodeBackupStatus,
    NodeRestore,
    NodeRestoreSpec,
    NodeRestoreStatus,
)
from mayanode_operator.sandbox.apiserver.validation import validate_custom_object
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

ADDRESS = "maya1626qqv4w7fucnhfvgjldl6y8gsdz79xswww5at"
STAGENET_ADDRESS = "smaya1g680kmtz2kwpwuyf8fhq6ey4spqzjun94hytfr"
RECIPIENT = "age1l0nupmvw35cq3lgr57dwuyfkdqq0ahaerxtue73k58vrfwcrts7qtgh6f0"
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


# --------------------------------------------------------------------------------------------------
# Models ↔ CRD agreement
# --------------------------------------------------------------------------------------------------
def _unwrap(annotation: Any) -> tuple[Any, list[Any], bool]:
    """(bare type, constraint metadata, optional?) of an annotation."""
    metadata: list[Any] = []
    optional = False
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation, *extras = typing.get_args(annotation)
            for extra in extras:
                metadata.extend(extra.metadata if isinstance(extra, FieldInfo) else [extra])
                if isinstance(extra, FieldInfo) and extra.description:
                    metadata.append(("description", extra.description))
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            assert len(args) == 1, f"unions are not structural: {annotation}"
            optional, annotation = True, args[0]
        else:
            return annotation, metadata, optional


def _expected_constraints(metadata: list[Any], kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    length = {"string": ("minLength", "maxLength"), "array": ("minItems", "maxItems"),
              "object": ("minProperties", "maxProperties")}.get(kind)
    for item in metadata:
        if isinstance(item, annotated_types.Ge):
            out["minimum"] = item.ge
        elif isinstance(item, annotated_types.Le):
            out["maximum"] = item.le
        elif isinstance(item, annotated_types.MinLen):
            out[length[0]] = item.min_length
        elif isinstance(item, annotated_types.MaxLen):
            out[length[1]] = item.max_length
        elif getattr(item, "pattern", None):
            out["pattern"] = item.pattern
        elif isinstance(item, (annotated_types.Gt, annotated_types.Lt)):
            raise AssertionError("use ge/le: exclusive bounds read badly in kubectl explain")
    return out


def _descriptions(metadata: list[Any]) -> list[str]:
    return [m[1] for m in metadata if isinstance(m, tuple) and m[0] == "description"]


def _json_default(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list):
        return [_json_default(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_default(v) for k, v in value.items()}
    return value


def _compare(annotation: Any, node: dict[str, Any], where: str, problems: list[str],
             metadata: list[Any] | None = None) -> None:
    bare, inner_meta, _ = _unwrap(annotation)
    meta = list(metadata or []) + inner_meta
    origin = typing.get_origin(bare)

    if isinstance(bare, type) and issubclass(bare, BaseModel):
        kind = "object"
        _compare_model(bare, node, where, problems)
    elif origin is list:
        kind = "array"
        (item,) = typing.get_args(bare)
        _, item_meta, _ = _unwrap(item)
        if "items" not in node:
            problems.append(f"{where}: no items")
        else:
            _compare(item, node["items"], f"{where}[]", problems)
            item_docs = _descriptions(item_meta) or _model_or_enum_doc(_unwrap(item)[0])
            if item_docs and node["items"].get("description") != item_docs[-1]:
                problems.append(f"{where}[]: description differs")
    elif origin is dict:
        kind = "object"
        key, value = typing.get_args(bare)
        assert key is str
        sub = node.get("additionalProperties")
        if not isinstance(sub, dict):
            problems.append(f"{where}: a map needs additionalProperties")
        else:
            _compare(value, sub, f"{where}{{}}", problems)
    elif isinstance(bare, type) and issubclass(bare, enum.Enum):
        kind = "string"
        if node.get("enum") != [m.value for m in bare]:
            problems.append(f"{where}: enum {node.get('enum')} != {[m.value for m in bare]}")
    elif typing.get_origin(bare) is typing.Literal:
        kind = "string"
        if node.get("enum") != list(typing.get_args(bare)):
            problems.append(f"{where}: enum differs")
    elif bare is bool:
        kind = "boolean"
    elif bare is int:
        kind = "integer"
        if node.get("format") != "int64":
            problems.append(f"{where}: integer without int64")
    elif bare is float:
        kind = "number"
    elif bare is datetime:
        kind = "string"
        if node.get("format") != "date-time":
            problems.append(f"{where}: datetime without date-time format")
    elif bare is str:
        kind = "string"
    else:
        raise AssertionError(f"{where}: unexpected type {bare!r}")

    if node.get("type") != kind:
        problems.append(f"{where}: type {node.get('type')} != {kind}")
    expected = _expected_constraints(meta, kind)
    actual = {k: node[k] for k in ("minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems",
                                   "minProperties", "maxProperties", "pattern") if k in node}
    if expected != actual:
        problems.append(f"{where}: constraints {actual} != {expected}")


def _model_or_enum_doc(bare: Any) -> list[str]:
    if isinstance(bare, type) and issubclass(bare, (BaseModel, enum.Enum)) and bare.__doc__:
        return [" ".join(inspect.cleandoc(bare.__doc__).split())]
    return []


def _compare_model(model: type[BaseModel], node: dict[str, Any], where: str, problems: list[str]) -> None:
    fields = {(info.alias or name): (name, info) for name, info in model.model_fields.items()}
    props = node.get("properties", {})
    if set(fields) != set(props):
        problems.append(f"{where}: fields {sorted(fields)} != properties {sorted(props)}")
    required = sorted(alias for alias, (_, info) in fields.items() if info.is_required())
    if sorted(node.get("required", [])) != required:
        problems.append(f"{where}: required {node.get('required', [])} != {required}")
    for alias, (name, info) in sorted(fields.items()):
        if alias not in props:
            continue
        sub, path = props[alias], f"{where}.{alias}"
        if name != alias and common.to_camel(name) != alias and alias not in ("from", "to"):
            # explicit aliases only for initialisms (IP, ID) and keywords
            if alias.lower() != common.to_camel(name).lower():
                problems.append(f"{path}: alias {alias} for field {name}")
        bare = _unwrap(info.annotation)[0]
        if typing.get_origin(bare) is list:
            bare = _unwrap(typing.get_args(bare)[0])[0]
        type_doc = (_model_or_enum_doc(bare) or [None])[0]
        if not info.description or sub.get("description") != crdgen.join_descriptions(info.description, type_doc):
            problems.append(f"{path}: description differs or is missing")
        _compare(info.annotation, sub, path, problems, list(info.metadata))
        _compare_default(info, sub, path, problems)


def _compare_default(info: FieldInfo, node: dict[str, Any], where: str, problems: list[str]) -> None:
    if info.is_required():
        if "default" in node:
            problems.append(f"{where}: required but defaulted in the CRD")
        return
    if info.default_factory is not None:
        value = info.default_factory()
        if isinstance(value, BaseModel):
            if node.get("default") != {}:
                problems.append(f"{where}: an always-present object needs `default: {{}}` in the CRD")
            elif type(value).model_validate({}) != value:
                problems.append(f"{where}: the model's default differs from defaulting {{}}")
        elif "default" in node:
            if node["default"] != _json_default(value):
                problems.append(f"{where}: default {node['default']!r} != {_json_default(value)!r}")
        elif value not in ([], {}):
            problems.append(f"{where}: non-empty default missing from the CRD")
        return
    if info.default is None or info.default is PydanticUndefined:
        if "default" in node:
            problems.append(f"{where}: CRD default {node['default']!r} but the model has none")
        return
    if node.get("default", PydanticUndefined) != _json_default(info.default):
        problems.append(f"{where}: default {node.get('default')!r} != {_json_default(info.default)!r}")


@pytest.mark.parametrize("resource", crdgen.RESOURCES, ids=lambda r: r.kind)
def test_models_and_crd_agree(resource):
    schema = crdgen.crd_for(resource)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    problems: list[str] = []
    _compare_model(resource.spec, schema["properties"]["spec"], "spec", problems)
    _compare_model(resource.status, schema["properties"]["status"], "status", problems)
    assert resource.model.model_fields["spec"].annotation is resource.spec
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("resource", crdgen.RESOURCES, ids=lambda r: r.kind)
def test_cel_rules_have_python_twins(resource):
    """Every CEL rule that does not look at oldSelf has a model validator with the same message."""
    schema = crdgen.crd_for(resource)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    messages = []

    def collect(node):
        messages.extend(r["message"] for r in node.get("x-kubernetes-validations", []) if "oldSelf" not in r["rule"])
        for sub in node.get("properties", {}).values():
            collect(sub)
        if "items" in node:
            collect(node["items"])

    collect(schema)
    from mayanode_operator.api import backup, mayanode, restore
    sources = "".join(inspect.getsource(m) for m in (backup, mayanode, restore))
    for message in messages:
        assert sources.count(f'"{message}"') >= 2, f"CEL message without a Python twin: {message}"


def test_every_enum_and_model_is_documented():
    from mayanode_operator.api import models
    for name in models.__all__:
        obj = getattr(models, name)
        if isinstance(obj, type) and issubclass(obj, (BaseModel, enum.Enum)):
            assert obj.__doc__ and obj.__doc__.strip(), name


# --------------------------------------------------------------------------------------------------
# Spec helpers
# --------------------------------------------------------------------------------------------------
def spec(**values: Any) -> MayaNodeSpec:
    return MayaNodeSpec.model_validate({"network": "mainnet", **values})


def test_minimal_spec_has_node_launcher_defaults():
    s = spec()
    assert s.mayanode.deployment == "mayanode" and s.mayanode.container == "mayanode" and s.mayanode.pvc == "mayanode"
    assert s.mayanode.home == "/root/.mayanode" and s.mayanode.volume_sub_path == ".mayanode"
    assert s.bifrost.deployment == "bifrost" and s.bifrost.pvc == "bifrost" and s.bifrost.volume_sub_path == "mayanode"
    assert (s.secrets.mnemonic.name, s.secrets.mnemonic.key) == ("mayanode-mnemonic", "mnemonic")
    assert (s.secrets.password.name, s.secrets.password.key) == ("mayanode-password", "password")
    assert s.signer_name == "mayachain" and s.observe.interval_seconds == 30
    assert s.observe_only and s.external_ip is None and s.backup is None and s.mimir is None
    assert s.halt_policy.restore == ["Signing"] and s.halt_policy.upgrade == []


def test_urls_default_to_the_in_namespace_service():
    s = spec()
    assert s.rest_url("mayanode") == "http://mayanode.mayanode.svc:1317"
    assert s.rpc_url("mayanode") == "http://mayanode.mayanode.svc:27147"
    s = spec(api={"rest": "http://127.0.0.1:9000/ns/a/", "rpc": "http://127.0.0.1:9000/ns/a/rpc"})
    assert s.rest_url("x") == "http://127.0.0.1:9000/ns/a" and s.rpc_url("x") == "http://127.0.0.1:9000/ns/a/rpc"


@pytest.mark.parametrize("network,chain_id", [("mainnet", "mayachain-mainnet-v1"),
                                              ("stagenet", "mayachain-stagenet-v1"),
                                              ("mocknet", "mayachain-mocknet")])
def test_chain_id_defaults_per_network(network, chain_id):
    assert MayaNodeSpec(network=network).effective_chain_id() == chain_id
    assert MayaNodeSpec(network=network, chain_id="custom-1").effective_chain_id() == "custom-1"


def test_image_for_version():
    assert spec().image_for("1.111.0") == "registry.gitlab.com/mayachain/mayanode:mainnet-1.111.0"
    s = MayaNodeSpec(network="stagenet", image={"repository": "registry.example/maya", "tagTemplate": "v{version}"})
    assert s.image_for("1.2.3") == "registry.example/maya:v1.2.3"
    with pytest.raises(ValidationError, match="tagTemplate must contain"):
        ImageSpec(tag_template="{network}-latest")
    with pytest.raises(ValidationError, match="placeholders"):
        ImageSpec(tag_template="{net}-{version}")


def test_target_version_follows_flag_days():
    s = spec(version="1.111.0", upgrade={"heightSchedule": [{"height": 2000, "version": "1.113.0"},
                                                             {"height": 1000, "version": "1.112.0"}]})
    assert not s.observe_only
    assert s.target_version(None) == "1.111.0"
    assert s.target_version(999) == "1.111.0"
    assert s.target_version(1000) == "1.112.0"
    assert s.target_version(5000) == "1.113.0"
    assert s.next_flag_day(999).height == 1000 and s.next_flag_day(1500).version == "1.113.0"
    assert s.next_flag_day(2000) is None
    assert not spec(upgrade={"heightSchedule": [{"height": 5, "version": "1.0.0"}]}).observe_only


def test_pending_node_actions():
    s = spec(nodeActions=[{"id": "pause-1", "action": "PauseChain"}, {"id": "resume-1", "action": "ResumeChain"}])
    assert [a.id for a in s.pending_node_actions(None)] == ["pause-1", "resume-1"]
    status = MayaNodeStatus(node_actions=[NodeActionRecord(id="pause-1", action="PauseChain", state="Sent", at=NOW)])
    assert [a.id for a in s.pending_node_actions(status)] == ["resume-1"]


def test_halt_policy_blocking():
    policy = HaltPolicy.model_validate({"upgrade": ["Solvency", "Chain"]})
    assert policy.blocking(HaltAction.UPGRADE, ["Trading", "Chain"]) == ["Chain"]
    assert policy.blocking("Restore", ("Signing",)) == ["Signing"]          # default for restores
    assert policy.blocking("MimirVote", ["Signing", "Trading"]) == []
    assert HaltPolicy.model_validate({"announceIP": ["Trading"]}).blocking("AnnounceIP", ["Trading"]) == ["Trading"]


def test_external_ip_rules():
    assert ExternalIPSpec().source == "Service" and ExternalIPSpec().service.name == "gateway"
    assert ExternalIPSpec().config_maps == ["gateway-external-ip", "mayanode-external-ip", "bifrost-external-ip"]
    assert ExternalIPSpec(source="Static", address="2001:db8::1").address == "2001:db8::1"
    with pytest.raises(ValidationError, match="address is required when source is Static"):
        ExternalIPSpec(source="Static")


def test_node_address_checks():
    assert spec(nodeAddress=ADDRESS).node_address == ADDRESS
    assert MayaNodeSpec(network="stagenet", node_address=STAGENET_ADDRESS).node_address == STAGENET_ADDRESS
    assert MayaNodeSpec(network="mocknet", node_address=ADDRESS).node_address == ADDRESS   # mocknet: any prefix
    broken = ADDRESS[:-1] + ("q" if ADDRESS[-1] != "q" else "p")
    with pytest.raises(ValidationError, match="bad checksum"):
        spec(nodeAddress=broken)
    with pytest.raises(ValidationError, match="must start with maya1 on mainnet"):
        spec(nodeAddress=STAGENET_ADDRESS)


def test_backup_location_and_policy():
    location = {"secret": {}, "encryption": {"recipients": [RECIPIENT]}}
    parsed = BackupLocation.model_validate(location)
    assert parsed.store == "Secret" and parsed.secret.name_prefix == "nodebackup"
    s3 = BackupLocation.model_validate({"s3": {"bucket": "b-1"}, "encryption": {"recipients": [RECIPIENT]}})
    assert s3.store == "S3" and s3.s3.region == "us-east-1" and not s3.s3.force_path_style
    with pytest.raises(ValidationError, match="exactly one of secret or s3"):
        BackupLocation.model_validate({"encryption": {"recipients": [RECIPIENT]}})
    with pytest.raises(ValidationError, match="at least 1 item"):
        BackupLocation.model_validate({"secret": {}, "encryption": {"recipients": []}})
    with pytest.raises(ValidationError, match="bad checksum"):
        BackupLocation.model_validate({"secret": {}, "encryption": {"recipients": [RECIPIENT[:-1] + "q"]}})
    policy = BackupPolicy.model_validate({"location": location, "retention": {"maxAge": "720h"}})
    assert policy.after_churn and policy.verify and policy.retention.count == 7
    assert policy.retention.max_age_timedelta() == timedelta(days=30)
    nbk = NodeBackupSpec.model_validate({"nodeRef": {"name": "validator"}})
    assert nbk.effective_location(policy) == parsed and nbk.effective_location(None) is None
    assert nbk.reason == "Manual" and nbk.verify and nbk.ttl_timedelta() is None
    with pytest.raises(ValidationError, match="needs spec.backup"):
        spec(upgrade={"gates": {"preUpgradeBackup": True}})


def test_mimir_keys_are_checked_by_the_models():
    assert spec(mimir={"votes": {"HALTTRADING": 0, "Max-Synth-Per-Pool-Depth": 3500}}).mimir.votes["HALTTRADING"] == 0
    with pytest.raises(ValidationError, match="letters, digits and dashes"):
        spec(mimir={"votes": {"HALT TRADING": 1}})
    with pytest.raises(ValidationError, match="case-insensitive"):
        spec(mimir={"votes": {"HaltTrading": 1, "HALTTRADING": 0}})
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        spec(mimir={"votes": {"HALTTRADING": -1}})


def test_restore_spec():
    r = NodeRestoreSpec.model_validate({"backupRef": {"name": "b"}, "nodeRef": {"name": "n"}})
    assert r.double_sign_guard.silent_blocks == 10 and r.restore_secrets and not r.force and r.announce_ip is None
    assert r.backup_ref.resolved_namespace("ns-a") == "ns-a"
    assert r.timeouts.scale_down_seconds == 120 and r.timeouts.ready_seconds == 600
    handoff = NodeRestoreSpec.model_validate({"backupRef": {"name": "b", "namespace": "old"}, "nodeRef": {"name": "n"},
                                              "doubleSignGuard": {"oldNode": {"name": "v", "namespace": "old"}}})
    assert handoff.double_sign_guard.old_node.suspend and handoff.backup_ref.resolved_namespace("new") == "old"
    with pytest.raises(ValidationError, match="reason is required when acknowledged"):
        NodeRestoreSpec.model_validate({"backupRef": {"name": "b"}, "nodeRef": {"name": "n"},
                                        "doubleSignGuard": {"oldNodeDestroyed": {"acknowledged": True, "reason": ""}}})


def test_to_k8s_uses_aliases_and_drops_nulls():
    s = spec(nodeAddress=ADDRESS, externalIP={"source": "Static", "address": "203.0.113.9"})
    out = s.to_k8s()
    assert out["externalIP"]["address"] == "203.0.113.9" and out["nodeAddress"] == ADDRESS
    assert "version" not in out and "backup" not in out
    assert out["haltPolicy"]["announceIP"] == []
    assert MayaNodeSpec.model_validate(out) == s


# --------------------------------------------------------------------------------------------------
# Status models round-trip through the CRD
# --------------------------------------------------------------------------------------------------
def _crd(kind: str) -> dict[str, Any]:
    return crdgen.crd_by_kind(kind)


def test_a_full_mayanode_status_is_accepted_by_the_api():
    status = MayaNodeStatus.model_validate({
        "observedGeneration": 3, "phase": "Running", "version": "1.111.0", "targetVersion": "1.112.0",
        "node": {"address": ADDRESS, "status": "Active", "bond": "10240000000000", "slashPoints": 17,
                 "jail": {"releaseHeight": 2393, "reason": "failed to perform keysign"},
                 "preflight": {"status": "Ready", "reason": "OK", "code": 0}, "registeredIP": "206.189.235.75",
                 "version": "1.111.0", "validatorConsPubKey": "mayacpub1zcjduepq", "requestedToLeave": False},
        "chain": {"height": 197675, "catchingUp": False, "heightObservedAt": "2024-06-01T12:00:00Z"},
        "network": {"currentVersion": "1.110.0", "nextVersion": "1.111.0", "lastChurnHeight": 190000,
                    "halts": [{"kind": "Trading", "key": "HALTBTCTRADING", "chain": "BTC"}],
                    "vault": {"pubKey": "mayapub1addwnpepq", "height": 190000, "member": True}},
        "workloads": {"mayanode": {"replicas": 1, "readyReplicas": 1, "image": "r/m:mainnet-1.111.0",
                                   "version": "1.111.0"}},
        "externalIP": {"address": "206.189.235.75", "source": "Service", "announcedAddress": "206.189.235.75",
                       "announcedAt": "2024-06-01T11:00:00Z"},
        "backup": {"lastSuccessful": {"name": "validator-abc", "completedAt": "2024-06-01T10:00:00Z"}, "fresh": True},
        "upgrade": {"state": "InProgress", "current": {"from": "1.111.0", "to": "1.112.0", "step": "MayanodeHealth",
                                                       "startedAt": "2024-06-01T11:55:00Z"},
                    "history": [{"from": "1.110.0", "to": "1.111.0", "startedAt": "2024-05-01T00:00:00Z",
                                 "finishedAt": "2024-05-01T00:05:00Z", "result": "Succeeded"}]},
        "mimir": {"inEffect": {"HALTTRADING": 0}, "managedKeys": ["HALTTRADING"]},
        "nodeActions": [{"id": "pause-1", "action": "PauseChain", "state": "Succeeded", "at": NOW.isoformat()}],
        "conditions": [{"type": "Ready", "status": "True", "reason": "NodeReady", "message": "",
                        "lastTransitionTime": "2024-06-01T12:00:00Z", "observedGeneration": 3}],
    })
    assert status.condition("Ready").status == "True" and status.condition("Synced") is None
    assert status.upgrade.current.from_version == "1.111.0"
    body = {"apiVersion": naming.API_VERSION, "kind": "MayaNode", "metadata": {"name": "n"},
            "spec": {"network": "mainnet"}, "status": status.to_k8s()}
    result = validate_custom_object(_crd("MayaNode"), body)
    assert not result.causes, result.causes
    assert result.object["status"] == status.to_k8s()          # nothing pruned
    assert MayaNode.model_validate(result.object).status == status


def test_backup_and_restore_status_are_accepted_by_the_api():
    backup = NodeBackupStatus.model_validate({
        "phase": "Completed", "startedAt": "2024-06-01T12:00:00Z", "completedAt": "2024-06-01T12:00:03Z",
        "items": [{"name": "mayanode/config/priv_validator_key.json", "component": "mayanode",
                   "path": "config/priv_validator_key.json", "size": 345, "sha256": "a" * 64, "mode": "0600",
                   "uid": 0, "gid": 0},
                  {"name": "secret/mayanode-password/password", "component": "secret",
                   "path": "mayanode-password/password", "size": 12}],
        "archive": {"store": "S3", "uri": "s3://b/p/x.tar.age", "key": "p/x.tar.age", "size": 9000,
                    "sha256": "b" * 64, "recipients": [RECIPIENT]},
        "node": {"address": ADDRESS, "vaultPubKey": "mayapub1x", "height": 100, "signStateHeight": 99},
        "conditions": [{"type": "Verified", "status": "Unknown", "reason": "NoIdentity", "message": "no identity",
                        "lastTransitionTime": "2024-06-01T12:00:03Z"}],
    })
    assert backup.finished and backup.condition("Verified").status == "Unknown"
    body = {"apiVersion": naming.API_VERSION, "kind": "NodeBackup", "metadata": {"name": "b"},
            "spec": {"nodeRef": {"name": "n"}}, "status": backup.to_k8s()}
    result = validate_custom_object(_crd("NodeBackup"), body)
    assert not result.causes, result.causes

    restore = NodeRestoreStatus.model_validate({
        "phase": "Completed", "step": "WaitReady",
        "steps": [{"name": "VerifyBackup", "startedAt": "2024-06-01T12:00:00Z", "completedAt": "2024-06-01T12:00:01Z"}],
        "highWaterMark": {"height": 1234, "round": 0, "step": 3, "source": "ChainTip"},
        "guard": {"method": "HandOff", "silentFromHeight": 1224, "silentToHeight": 1233},
        "previousReplicas": {"mayanode": 1, "bifrost": 1}, "downtimeSeconds": 3.2,
    })
    assert restore.step_done("VerifyBackup") and not restore.step_done("ScaleUp")
    body = {"apiVersion": naming.API_VERSION, "kind": "NodeRestore", "metadata": {"name": "r"},
            "spec": {"backupRef": {"name": "b"}, "nodeRef": {"name": "n"}}, "status": restore.to_k8s()}
    result = validate_custom_object(_crd("NodeRestore"), body)
    assert not result.causes, result.causes
    assert NodeRestore.model_validate(result.object).status.downtime_seconds == 3.2


def test_status_models_ignore_unknown_fields():
    assert MayaNodeStatus.model_validate({"phase": "Running", "somethingNew": 1}).phase == "Running"
    with pytest.raises(ValidationError):
        MayaNodeSpec.model_validate({"network": "mainnet", "somethingNew": 1})


# --------------------------------------------------------------------------------------------------
# Patterns and parsers
# --------------------------------------------------------------------------------------------------
def test_patterns_are_portable():
    """No look-around or back-references: the same regex must work in Go (RE2), Rust, Python and ECMAScript."""
    for name in dir(common):
        if name.endswith("_PATTERN"):
            pattern = getattr(common, name)
            re.compile(pattern)
            assert "(?" not in pattern and not re.search(r"\\[1-9]", pattern), name


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)))
def test_ip_pattern_accepts_every_address(address):
    for text in {str(address), address.exploded}:
        assert re.fullmatch(common.IP_PATTERN, text), text


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789abcdef:.", min_size=1, max_size=45))
def test_ip_pattern_accepts_only_addresses(text):
    if re.fullmatch(common.IP_PATTERN, text):
        ipaddress.ip_address(text)


@pytest.mark.parametrize("schedule", ["0 */6 * * *", "30 2 * * 1-5", "0 0 1,15 * *", "*/5 * * * *",
                                      "0 3 * JAN-MAR SUN", "@daily", "@hourly", "0 0 * * 7"])
def test_cron_accepted(schedule):
    assert re.fullmatch(common.CRON_PATTERN, schedule) and common.check_cron(schedule) == schedule
    croniter = pytest.importorskip("croniter")
    assert croniter.croniter.is_valid(schedule)


@pytest.mark.parametrize("schedule", ["60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "* * * * 8",
                                      "*/0 * * * *", "5-1 * * * *", "* * * * FOO", "* * * *"])
def test_cron_refused(schedule):
    with pytest.raises(ValueError):
        if not re.fullmatch(common.CRON_PATTERN, schedule):
            raise ValueError("pattern")
        common.check_cron(schedule)


@pytest.mark.parametrize("text,seconds", [("720h", 2592000), ("1h30m", 5400), ("90s", 90), ("1.5h", 5400),
                                          ("250ms", 0.25)])
def test_parse_duration(text, seconds):
    assert common.parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["30d", "h", "1 h", "-1h", ""])
def test_parse_duration_refuses(text):
    with pytest.raises(ValueError):
        common.parse_duration(text)


def test_defaults_come_from_naming():
    s = spec()
    assert s.image.repository == naming.DEFAULT_IMAGE_REPOSITORY
    assert s.image.tag_template == naming.DEFAULT_TAG_TEMPLATE
    assert tuple(ExternalIPSpec().config_maps) == naming.EXTERNAL_IP_CONFIGMAPS
    assert naming.image_tag("{network}-{version}", network="stagenet", version="1.2.3") == "stagenet-1.2.3"


@pytest.mark.parametrize("tamper,expected", [
    (lambda spec: spec["properties"].pop("suspend"), "fields"),
    (lambda spec: spec["properties"]["observe"]["properties"]["intervalSeconds"].update(default=60), "default"),
    (lambda spec: spec["properties"]["observe"]["properties"]["intervalSeconds"].update(minimum=1), "constraints"),
    (lambda spec: spec["properties"]["version"].update(pattern="^.*$"), "constraints"),
    (lambda spec: spec["properties"]["network"].update(enum=["mainnet"]), "enum"),
    (lambda spec: spec.update(required=[]), "required"),
    (lambda spec: spec["properties"]["image"].pop("default"), "default: {}"),
    (lambda spec: spec["properties"]["suspend"].update(type="string"), "type"),
    (lambda spec: spec["properties"]["signerName"].update(description="changed"), "description"),
])
def test_agreement_check_detects_drift(tamper, expected):
    schema = crdgen.crd_by_kind("MayaNode")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    tamper(schema["properties"]["spec"])
    problems: list[str] = []
    _compare_model(MayaNodeSpec, schema["properties"]["spec"], "spec", problems)
    assert any(expected in p for p in problems), problems
