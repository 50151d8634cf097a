"""Building blocks shared by the three custom resources.

The pydantic models in this package are the single source of truth for the CRDs: `crdgen` turns them
into structural OpenAPI schemas. Conventions that make this work:

- every field has `Field(description=…)`; enums are `StrEnum`s with a docstring;
- constraints the API server can check are ordinary pydantic constraints (`pattern`, `ge`, `max_length`, …)
  and travel into the CRD;
- a sub-object that is always present gets `default_factory=Model` plus `json_schema_extra={"default": {}}`
  (see `always()`), so the API server fills in its defaults too and `kubectl get -o yaml` shows them;
- rules across fields are CEL (`x-kubernetes-validations`) declared with `cel(...)` next to the model; rules
  that do not mention `oldSelf` also have a Python twin (a model validator with the same message), so a spec
  the API server refuses is refused by the models too;
- a few checks are *stricter* in the models than in the CRD (bech32 checksums, cron field ranges, mimir key
  names): the API server cannot say them, the operator reports them as a `SpecValid` condition.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

import bech32
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

# --------------------------------------------------------------------------------------------------
# Patterns (RE2-, ECMA-, Rust- and Python-compatible: no look-around, no back-references)
# --------------------------------------------------------------------------------------------------
BECH32_CHARS = "[02-9ac-hj-np-z]"
NODE_ADDRESS_PATTERN = rf"^(maya|smaya|tmaya)1{BECH32_CHARS}{{38}}$"
SEMVER_PATTERN = r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$"
_IPV4 = r"((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_H = "[0-9A-Fa-f]{1,4}"
_IPV6 = (
    rf"(({_H}:){{7}}{_H}"
    rf"|({_H}:){{1,7}}:"
    rf"|({_H}:){{1,6}}:{_H}"
    rf"|({_H}:){{1,5}}(:{_H}){{1,2}}"
    rf"|({_H}:){{1,4}}(:{_H}){{1,3}}"
    rf"|({_H}:){{1,3}}(:{_H}){{1,4}}"
    rf"|({_H}:){{1,2}}(:{_H}){{1,5}}"
    rf"|{_H}:(:{_H}){{1,6}}"
    rf"|:((:{_H}){{1,7}}|:)"
    rf"|({_H}:){{6}}{_IPV4}"
    rf"|::(ffff(:0{{1,4}})?:)?{_IPV4}"
    rf"|({_H}:){{1,4}}:{_IPV4})"
)
IP_PATTERN = rf"^({_IPV4}|{_IPV6})$"
_CRON_ITEM = r"(\*|[0-9]{1,2}|[A-Za-z]{3})(-([0-9]{1,2}|[A-Za-z]{3}))?(/[0-9]{1,2})?"
_CRON_FIELD = rf"{_CRON_ITEM}(,{_CRON_ITEM})*"
CRON_PATTERN = rf"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|{_CRON_FIELD}( +{_CRON_FIELD}){{4}})$"
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
AGE_RECIPIENT_PATTERN = rf"^age1{BECH32_CHARS}{{58}}$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
ABSOLUTE_PATH_PATTERN = r"^/[A-Za-z0-9._/-]*$"
_SEGMENT = r"(\.?[A-Za-z0-9_-][A-Za-z0-9._-]*|\.\.[A-Za-z0-9._-]+)"
SUB_PATH_PATTERN = rf"^({_SEGMENT}(/{_SEGMENT})*)?$"       # relative, no `.`/`..` segments; "" = volume root
URL_PATTERN = r"^https?://[^\s/?#]+(/[^\s]*)?$"
MIMIR_KEY_PATTERN = r"^[A-Za-z][A-Za-z0-9-]{0,63}$"
CAMEL_CASE_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"
CONDITION_TYPE_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)


# --------------------------------------------------------------------------------------------------
# Base models
# --------------------------------------------------------------------------------------------------
class K8sModel(BaseModel):
    """Common behaviour: camelCase aliases, population by name, JSON output as Kubernetes wants it."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    def to_k8s(self) -> dict[str, Any]:
        """The object as it goes to the API server: camelCase keys, JSON types, no nulls."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class SpecModel(K8sModel):
    """Spec objects refuse unknown fields, exactly like the structural schema does."""

    model_config = ConfigDict(extra="forbid")


class StatusModel(K8sModel):
    """Status objects ignore unknown fields so an operator can read what an older or newer one wrote."""

    model_config = ConfigDict(extra="ignore")


# --------------------------------------------------------------------------------------------------
# CEL rules, declared next to the model they constrain
# --------------------------------------------------------------------------------------------------
def rule(rule: str, message: str, *, field_path: str | None = None, reason: str | None = None) -> dict[str, str]:
    """One `x-kubernetes-validations` entry. `reason` is FieldValueInvalid (default), FieldValueRequired,
    FieldValueForbidden or FieldValueDuplicate; `field_path` points the error at a child field."""
    out = {"rule": rule, "message": message}
    if field_path:
        out["fieldPath"] = field_path
    if reason:
        out["reason"] = reason
    return out


def cel(*rules: dict[str, str], **extra: Any) -> dict[str, Any]:
    """`json_schema_extra` carrying CEL rules (and any other `x-kubernetes-*` keys)."""
    return {"x-kubernetes-validations": list(rules), **extra} if rules else dict(extra)


def rules_of(model: type[BaseModel]) -> list[dict[str, str]]:
    extra = model.model_config.get("json_schema_extra")
    return list(extra.get("x-kubernetes-validations", [])) if isinstance(extra, dict) else []


def always(model: type[BaseModel], description: str, **extra: Any) -> Any:
    """A sub-object that is always there: absent means "all defaults", in the models and in the API server."""
    return Field(default_factory=model, description=description, json_schema_extra={"default": {}, **extra})


LIST_SET = {"x-kubernetes-list-type": "set"}


def list_map(*keys: str) -> dict[str, Any]:
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": list(keys)}


# --------------------------------------------------------------------------------------------------
# Semantic checks the schema cannot express (used by the annotated types below)
# --------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4096)      # every pass validates its spec: the same few addresses again and again
def check_bech32(value: str) -> str:
    hrp, data = bech32.bech32_decode(value)
    if hrp is None or data is None:
        raise ValueError("not a valid bech32 string (bad checksum)")
    return value


def check_ip(value: str) -> str:
    ipaddress.ip_address(value)
    return value


_CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_CRON_NAMES = (
    {},
    {},
    {},
    {m: i + 1 for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())},
    {d: i for i, d in enumerate("SUN MON TUE WED THU FRI SAT".split())},
)


def check_cron(value: str) -> str:
    """Five fields (minute hour day-of-month month day-of-week, UTC) or an @-macro; values in range."""
    if value.startswith("@"):
        return value
    fields = value.split()
    if len(fields) != 5:
        raise ValueError("a cron schedule has 5 fields: minute hour day-of-month month day-of-week")
    for text, (low, high), names in zip(fields, _CRON_RANGES, _CRON_NAMES, strict=True):
        for item in text.split(","):
            base, _, step = item.partition("/")
            if step and int(step) == 0:
                raise ValueError(f"cron step must be positive in {item!r}")
            if base == "*":
                continue
            for bound in base.split("-"):
                number = names.get(bound.upper()) if bound.isalpha() else int(bound)
                if number is None or not low <= number <= high:
                    raise ValueError(f"cron value {bound!r} out of range {low}-{high} in {value!r}")
            if "-" in base:
                start, end = (names.get(b.upper()) if b.isalpha() else int(b) for b in base.split("-"))
                if start is not None and end is not None and start > end:
                    raise ValueError(f"cron range {base!r} is backwards")
    return value


_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")


def parse_duration(value: str) -> timedelta:
    """Go-style durations (`720h`, `1h30m`, `90s`, `1.5h`) → timedelta."""
    if not re.fullmatch(DURATION_PATTERN, value):
        raise ValueError(f"not a duration like 720h or 1h30m: {value!r}")
    return timedelta(seconds=sum(float(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(value)))


def check_duration(value: str) -> str:
    if parse_duration(value) <= timedelta(0):
        raise ValueError("duration must be positive")
    return value


def check_mimir_keys(votes: dict[str, int]) -> dict[str, int]:
    bad = sorted(k for k in votes if not re.fullmatch(MIMIR_KEY_PATTERN, k))
    if bad:
        raise ValueError(f"mimir keys must be letters, digits and dashes (at most 64): {', '.join(bad)}")
    upper = [k.upper() for k in votes]
    dupes = sorted({k for k in upper if upper.count(k) > 1})
    if dupes:
        raise ValueError(f"mimir keys are case-insensitive; duplicated: {', '.join(dupes)}")
    return votes


# --------------------------------------------------------------------------------------------------
# Annotated scalar types (each carries its own description for list items and map values)
# --------------------------------------------------------------------------------------------------
NodeAddress = Annotated[
    str,
    Field(pattern=NODE_ADDRESS_PATTERN, max_length=64,
          description="A MAYAChain account address (bech32: maya1… on mainnet, smaya1… on stagenet, tmaya1… on "
                      "mocknet)."),
    AfterValidator(check_bech32),
]
Version = Annotated[str, Field(pattern=SEMVER_PATTERN, max_length=32, description="A mayanode version, x.y.z.")]
IPAddress = Annotated[
    str, Field(pattern=IP_PATTERN, max_length=45, description="An IPv4 or IPv6 address."), AfterValidator(check_ip)
]
CronSchedule = Annotated[
    str,
    Field(pattern=CRON_PATTERN, max_length=128,
          description="A cron schedule in UTC: five fields `minute hour day-of-month month day-of-week` "
                      "(e.g. `0 */6 * * *`) or a macro such as `@daily`."),
    AfterValidator(check_cron),
]
Duration = Annotated[
    str,
    Field(pattern=DURATION_PATTERN, max_length=32,
          description="A duration in Go syntax: a sequence of numbers with units h, m, s or ms (e.g. `720h`, "
                      "`1h30m`)."),
    AfterValidator(check_duration),
]
AgeRecipient = Annotated[
    str,
    Field(pattern=AGE_RECIPIENT_PATTERN, min_length=62, max_length=62,
          description="An age X25519 recipient (public key, `age1…`; make one with `age-keygen`)."),
    AfterValidator(check_bech32),
]
DnsSubdomainName = Annotated[str, Field(pattern=DNS_SUBDOMAIN_PATTERN, min_length=1, max_length=253,
                                        description="A Kubernetes object name (DNS subdomain).")]
DnsLabelName = Annotated[str, Field(pattern=DNS_LABEL_PATTERN, min_length=1, max_length=63,
                                    description="A Kubernetes name that must be a DNS label (at most 63 characters).")]
SecretDataKey = Annotated[str, Field(pattern=SECRET_KEY_PATTERN, min_length=1, max_length=253,
                                     description="A key in a Secret's or ConfigMap's data.")]
HttpURL = Annotated[str, Field(pattern=URL_PATTERN, max_length=2048, description="An http:// or https:// URL.")]


# --------------------------------------------------------------------------------------------------
# Shared enums and objects
# --------------------------------------------------------------------------------------------------
class ConditionStatus(StrEnum):
    """A condition's status: True, False or Unknown."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(StatusModel):
    """A standard Kubernetes condition (the shape of metav1.Condition)."""

    type: str = Field(pattern=CONDITION_TYPE_PATTERN, max_length=316,
                      description="The aspect this condition describes, in CamelCase (e.g. Ready, Synced).")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(pattern=CAMEL_CASE_PATTERN, min_length=1, max_length=1024,
                        description="Why the condition has this status: a CamelCase word a program can match on.")
    message: str = Field(max_length=32768, description="What happened, for humans; may be empty.")
    last_transition_time: datetime = Field(
        description="When `status` last changed (not when the message or reason last changed).")
    observed_generation: int | None = Field(
        None, ge=0, description="The `.metadata.generation` of the spec this condition was computed from.")


CONDITIONS_DESCRIPTION = (
    "Standard conditions (type, status, reason, message, lastTransitionTime, observedGeneration), one per type."
)


def conditions_field(types: str) -> Any:
    return Field(default_factory=list, max_length=32, description=f"{CONDITIONS_DESCRIPTION} Types: {types}",
                 json_schema_extra=list_map("type"))


def find_condition(conditions: list[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


class LocalObjectReference(SpecModel):
    """A reference to an object in the same namespace."""

    name: DnsSubdomainName = Field(description="The object's name.")


class SecretKeySelector(SpecModel):
    """One key of a Secret in the same namespace."""

    name: DnsSubdomainName = Field(description="The Secret's name.")
    key: SecretDataKey = Field(description="The key in the Secret's data.")
