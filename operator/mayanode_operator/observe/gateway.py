"""What the external-IP planner needs to see: the gateway LoadBalancer, the `*-external-ip` ConfigMaps and the
Deployments that read the address (`EXTERNAL_IP`). Read-only; hostnames are resolved with a timeout."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..api import naming
from .kube import WorkloadObjects

ENV_NAME = "EXTERNAL_IP"
ANNOTATION_RECORDED = f"{naming.ANNOTATION_PREFIX}/external-ip"             # Deployment: the IP its pods have
ANNOTATION_WRITTEN_AT = f"{naming.ANNOTATION_PREFIX}/external-ip-written-at"  # ConfigMap: when the operator wrote it
ANNOTATION_RESTART = f"{naming.ANNOTATION_PREFIX}/restarted-for-external-ip"  # pod template: the roll

Resolver = Callable[[str], Awaitable[list[str]]]


@dataclass(frozen=True)
class ServiceAddress:
    """The source Service and what its LoadBalancer says."""

    name: str
    found: bool
    type: str | None = None
    ip: str | None = None
    hostname: str | None = None
    resolved: tuple[str, ...] = ()          # what `hostname` resolved to (IPv4 first, then numeric; never DNS's order)
    resolve_error: str | None = None


@dataclass(frozen=True)
class ConfigMapState:
    name: str
    exists: bool
    value: str | None = None                # data.externalIP
    written_at: str | None = None           # when the operator last changed it (RFC 3339)


@dataclass(frozen=True)
class ConsumerState:
    """A Deployment whose containers read the external IP (from a ConfigMap, or a literal env value)."""

    deployment: str
    exists: bool
    config_maps: tuple[str, ...] = ()       # the ConfigMaps its EXTERNAL_IP comes from
    literal: tuple[tuple[str, str], ...] = ()   # (container, value) where EXTERNAL_IP is set literally
    recorded: str | None = None             # the IP its pods were started with, as the operator recorded it
    strategy: str = "RollingUpdate"
    replicas: int = 0
    pods_created: tuple[str, ...] = ()      # creationTimestamp of each live (not terminating) pod

    @property
    def reads_external_ip(self) -> bool:
        return bool(self.config_maps or self.literal)


@dataclass(frozen=True)
class ExternalIPObservation:
    source: ServiceAddress | None            # None for a Static address
    config_maps: tuple[ConfigMapState, ...]
    consumers: tuple[ConsumerState, ...]


async def system_resolver(hostname: str) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(hostname, None, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def resolve(hostname: str, timeout: float, resolver: Resolver = system_resolver) -> tuple[tuple[str, ...], str | None]:
    """Addresses of `hostname` (IPv4 first, then in numeric order, no duplicates), or an error message; never raises.
    A name with several addresses (a LoadBalancer in several zones) answers them in a rotating order: the order is
    not kept, so the same set of addresses is the same observation at every pass."""
    try:
        async with asyncio.timeout(timeout):
            found = await resolver(hostname)
    except TimeoutError:
        return (), f"resolving {hostname} took longer than {timeout:g}s"
    except (OSError, UnicodeError) as err:
        return (), f"resolving {hostname} failed: {err}"
    ordered = sorted(set(found), key=_address_order)
    if not ordered:
        return (), f"{hostname} resolved to no address"
    return tuple(ordered), None


def _address_order(address: str) -> tuple[int, int, str]:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return 9, 0, address                 # not an address: last (the planner refuses it)
    return ip.version, int(ip), address


def service_address(name: str, body: Mapping[str, Any] | None) -> ServiceAddress:
    if body is None:
        return ServiceAddress(name=name, found=False)
    ingress = (((body.get("status") or {}).get("loadBalancer") or {}).get("ingress") or [{}])[0] or {}
    return ServiceAddress(name=name, found=True, type=(body.get("spec") or {}).get("type"),
                          ip=ingress.get("ip") or None, hostname=ingress.get("hostname") or None)


def config_map_state(name: str, body: Mapping[str, Any] | None) -> ConfigMapState:
    if body is None:
        return ConfigMapState(name=name, exists=False)
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    return ConfigMapState(name=name, exists=True, value=(body.get("data") or {}).get(naming.EXTERNAL_IP_KEY),
                          written_at=annotations.get(ANNOTATION_WRITTEN_AT))


def consumer_state(name: str, body: Mapping[str, Any] | None, pods: Iterable[Mapping[str, Any]],
                   config_maps: Iterable[str]) -> ConsumerState:
    if body is None:
        return ConsumerState(deployment=name, exists=False)
    watched = set(config_maps)
    spec = body.get("spec") or {}
    refs: list[str] = []
    literal: list[tuple[str, str]] = []
    for container in ((spec.get("template") or {}).get("spec") or {}).get("containers") or []:
        for env in container.get("env") or []:
            if env.get("name") != ENV_NAME:
                continue
            ref = (env.get("valueFrom") or {}).get("configMapKeyRef") or {}
            if ref.get("name") in watched and ref.get("key") == naming.EXTERNAL_IP_KEY:
                refs.append(str(ref["name"]))
            elif "value" in env and not env.get("valueFrom"):
                literal.append((str(container.get("name")), str(env.get("value") or "")))
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    created = tuple(sorted(str((p.get("metadata") or {}).get("creationTimestamp") or "") for p in pods
                           if not (p.get("metadata") or {}).get("deletionTimestamp")))
    return ConsumerState(
        deployment=name, exists=True, config_maps=tuple(sorted(set(refs))), literal=tuple(literal),
        recorded=annotations.get(ANNOTATION_RECORDED),
        strategy=(spec.get("strategy") or {}).get("type") or "RollingUpdate",
        replicas=int(spec.get("replicas", 1) or 0), pods_created=created,
    )


async def observe_external_ip(kube: Any, namespace: str, *, service: str | None, config_maps: Iterable[str],
                              deployments: Iterable[str], resolve_timeout: float,
                              resolver: Resolver = system_resolver,
                              known: Mapping[str, WorkloadObjects] | None = None) -> ExternalIPObservation:
    """`service` None: the address is static, no Service is read. `known`: Deployments (and their pods) this pass has
    read already, not read again."""
    config_maps = list(config_maps)
    deployments = list(dict.fromkeys(deployments))

    async def source() -> ServiceAddress | None:
        if service is None:
            return None
        address = service_address(service, await kube.get_service(namespace, service))
        if address.found and not address.ip and address.hostname:
            resolved, error = await resolve(address.hostname, resolve_timeout, resolver)
            return ServiceAddress(address.name, True, address.type, None, address.hostname, resolved, error)
        return address

    async def consumer(name: str) -> ConsumerState:
        if known is not None and name in known:
            read = known[name]
            return consumer_state(name, read.deployment, list(read.pods), config_maps)
        body = await kube.get_deployment(namespace, name)
        labels = (((body or {}).get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        pods = await kube.list_pods(namespace, labels) if labels else []
        return consumer_state(name, body, pods, config_maps)

    async def config_map(name: str) -> ConfigMapState:
        return config_map_state(name, await kube.get_configmap(namespace, name))

    src, cms, consumers = await asyncio.gather(
        source(),
        asyncio.gather(*(config_map(n) for n in config_maps)),
        asyncio.gather(*(consumer(n) for n in deployments)),
    )
    return ExternalIPObservation(source=src, config_maps=tuple(cms), consumers=tuple(consumers))
