"""What a running operator holds: configuration, API clients, the work queue, a clock."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

import aiohttp
import urllib3
from kubernetes.client.exceptions import ApiException

from .. import __version__
from ..adapters.kube import KubeApi, make_api_client, status_message
from ..config import OperatorConfig
from ..observe.nodeapi import node_api_session
from ..plan.backup_policy import KeyShareLook
from ..plan.mimir_votes import VotesLook
from .queue import WorkQueue
from .status_writer import UnsentRecords
from .watched import WatchedReads

logger = logging.getLogger(__name__)

ObjectKey = tuple[str, str, str]      # (plural, namespace, name)

# The API server or a node answered with an error, or not at all: worth trying again later.
TRANSIENT_ERRORS = (ApiException, urllib3.exceptions.HTTPError, OSError, aiohttp.ClientError, TimeoutError)


def describe_api_error(err: ApiException) -> str:
    """`403 Forbidden: <the API server's message>` (the headers and body of the exception's text are no help)."""
    detail = status_message(err)
    return f"{err.status} {err.reason or ''}".strip() + (f": {detail[:400]}" if detail else "")


def describe_error(err: BaseException) -> str:
    """One of TRANSIENT_ERRORS for a condition or a step's message: an API error by its status and the server's
    message (a Pod Security or quota refusal, a webhook's answer), anything else by its type and text."""
    if isinstance(err, ApiException):
        return describe_api_error(err)
    return f"{type(err).__name__}: {str(err)[:300]}"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Runtime:
    config: OperatorConfig
    kube: KubeApi
    http: aiohttp.ClientSession
    queue: WorkQueue[ObjectKey] = field(default_factory=WorkQueue)
    now: Callable[[], datetime] = utcnow
    unsent: UnsentRecords = field(default_factory=UnsentRecords)   # records whose write failed: not acted on
    # (namespace, name) of a MayaNode → its last look for key shares in bifrost (plan/backup_policy.py says when
    # to look again); kept in memory only: a restarted operator looks at its first pass.
    key_shares: dict[tuple[str, str], KeyShareLook] = field(default_factory=dict)
    # (namespace, name) of a MayaNode → its mimir votes as last read (plan/mimir_votes.py says when to read again).
    votes_looks: dict[tuple[str, str], VotesLook] = field(default_factory=dict)
    # What passes read of a namespace, kept while its watches and this operator's writes say nothing changed there.
    watched: WatchedReads = field(default_factory=WatchedReads)

    def __post_init__(self) -> None:
        self.watched.workload_selector = self.config.workload_selector

    def forget_mayanode(self, namespace: str, name: str, uid: str | None) -> None:
        """A MayaNode is gone: a new one of the same name starts from nothing this one left in memory (its key-share
        and votes looks, its unsent records)."""
        self.key_shares.pop((namespace, name), None)
        self.votes_looks.pop((namespace, name), None)
        if uid:
            self.unsent.forget_object(uid)

    @classmethod
    async def create(cls, config: OperatorConfig) -> "Runtime":
        api_client = await asyncio.to_thread(make_api_client, config.kubeconfig, config.context)
        api_client.configuration.connection_pool_maxsize = max(config.workers * 2, 4)
        api_client.user_agent = f"mayanode-operator/{__version__}"     # audit logs (and the sandbox) tell it apart
        http = node_api_session(limit=max(config.workers * 4, 8))
        kube = KubeApi(api_client)
        unsupported = await kube.open_loop_reads(limit=max(config.workers * 4, 8))
        if unsupported is not None:
            logger.info("Kubernetes reads go through the official client in threads: the configuration sets %s",
                        unsupported)
        runtime = cls(config=config, kube=kube, http=http)
        kube.notify_writes(runtime.watched.written)
        return runtime

    async def close(self) -> None:
        await self.http.close()
        await self.kube.close_loop_reads()
        await asyncio.to_thread(self.kube.api_client.close)
