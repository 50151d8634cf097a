"""Mocknet: the simulated network's state and its in-process API (see docs/architecture.md)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import inspect
import json
import logging
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mayanode_operator import chainkeys
from mayanode_operator.sandbox.identity import NodeIdentity

from . import render, rules, txs
from .model import (
    ACTIVE,
    ACTIVE_VAULT,
    BLOCK_ID_FLAG_ABSENT,
    BLOCK_ID_FLAG_COMMIT,
    DEFAULT_BOND,
    INACTIVE_VAULT,
    NODE_STATUSES,
    RETIRING_VAULT,
    BifrostProcess,
    Block,
    CommitSig,
    DoubleSign,
    ExternalChain,
    NamespaceConfig,
    NodeAccount,
    NodeProcess,
    Tx,
    TxResult,
    Vault,
)
from .server import build_app

log = logging.getLogger(__name__)

FAIL_MODES = ("down", "garbage", "huge", "nested")
ABSENT_TIMESTAMP = "0001-01-01T00:00:00Z"
# A MAYANode's HTTP servers (CometBFT's RPC server, and the Cosmos SDK's REST server built on it) set no idle
# timeout of their own, so Go's net/http closes an idle keep-alive connection after the read timeout: 10 s by default.
SERVER_IDLE_SECONDS = 10.0
CONNECTION_REFUSED_LOG = (
    'post failed: Post "http://localhost:27147": dial tcp 127.0.0.1:27147: connect: connection refused'
)
# (start height, external blocks per MAYAChain block of ~5 s)
EXTERNAL_CHAINS = {
    "BTC": (850_000, 1 / 120),
    "ETH": (20_000_000, 5 / 12),
    "DASH": (2_100_000, 1 / 30),
    "KUJI": (22_000_000, 1.0),
    "THOR": (17_000_000, 5 / 6),
    "ARB": (230_000_000, 20.0),
}

# A few admin mimirs every real network has set; halts start at 0 (off).
DEFAULT_ADMIN_MIMIRS = {"CHURNINTERVAL": 43200, "HALTCHURNING": 0, "HALTTRADING": 0}

ChurnListener = Callable[[Vault], "Awaitable[None] | None"]


class Mocknet:
    """A simulated MAYAChain network serving each namespace's node API on one loopback server.

    Rules worth knowing when writing tests against it:
    - Block h is signed by every running instance that is not catching up and whose signed-state
      height is below h, and by every virtual Active node. Block h's `last_commit` lists the
      signatures made for h itself (CometBFT puts them in block h+1); Active accounts that did not
      sign appear as ABSENT entries (flag 1, empty address).
    - Two running instances with one consensus key signing one height → a DoubleSign record, and
      DuplicateVoteEvidence in the next block.
    - Accepted transactions are pending until the next block (TxResult.height is 0, as a sync
      broadcast answers); Tx.applied_height tells when they took effect.
    - Explicit `churn()` always churns; automatic churn (`churn_interval_blocks`) obeys HALTCHURNING.
    - No Asgard vault exists until the first churn.
    """

    def __init__(
        self,
        block_interval: float = 0.2,
        chain_id: str = "mayachain-mocknet",
        *,
        network: str = "mocknet",
        start_height: int = 1,
        catch_up_seconds: float = 0.0,
        block_history: int = 1000,
        churn_interval_blocks: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        idle_seconds: float = SERVER_IDLE_SECONDS,
    ) -> None:
        if block_history < 2:
            raise ValueError("block_history must keep at least 2 blocks")
        self.block_interval = block_interval
        self.chain_id = chain_id
        self.network = network
        self.default_catch_up_seconds = catch_up_seconds
        self.churn_interval_blocks = churn_interval_blocks
        self.clock = clock
        self.idle_seconds = idle_seconds

        self.nodes: dict[str, NodeAccount] = {}
        self.processes: dict[str, NodeProcess] = {}
        self.bifrosts: dict[str, BifrostProcess] = {}
        self.blocks: deque[Block] = deque(maxlen=block_history)
        self.transactions: list[Tx] = []
        self.double_signs: list[DoubleSign] = []
        self.vaults: list[Vault] = []
        self.churn_heights: list[int] = []
        self.admin_mimirs: dict[str, int] = dict(DEFAULT_ADMIN_MIMIRS)
        self.node_mimirs: dict[tuple[str, str], int] = {}
        self.namespaces: dict[str, NamespaceConfig] = {}
        self.failures: dict[str, str] = {}
        self.external_chains = [
            ExternalChain(chain, start, rate, last_signed_out=start_height)
            for chain, (start, rate) in EXTERNAL_CHAINS.items()
        ]

        self._effects = txs.ChainEffects(node_mimirs=self.node_mimirs, node_pause_until=0, paused_this_churn=set())
        self._pending: list[Tx] = []
        self._pending_evidence: list[dict] = []
        self._injected_errors: deque[tuple[int, str]] = deque()
        self._listeners: list[ChurnListener] = []
        self._listener_tasks: set[asyncio.Task] = set()
        self._tx_counter = 0
        self._runner: web.AppRunner | None = None
        self._timer: asyncio.Task | None = None
        self._port: int | None = None
        self._addresses: set[str] = set()

        self.blocks.append(self._make_block(start_height, signatures=[], txs_b64=[], evidence=[]))

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self, port: int = 0) -> None:
        self._runner = web.AppRunner(build_app(self), access_log=None, keepalive_timeout=self.idle_seconds)
        await self._runner.setup()
        self._port = await self._listen("127.0.0.1", port)
        self._timer = asyncio.create_task(self._produce_on_timer(), name="mocknet-blocks")

    async def _listen(self, address: str, port: int) -> int:
        assert self._runner is not None
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        await web.SockSite(self._runner, sock).start()
        return sock.getsockname()[1]

    async def serve_at(self, address: str) -> str:
        """Also answer on `address` (another loopback address, 127.0.0.0/8), on the same port; its base URL.

        A client keeps one connection pool per host and port: nodes served at one address share their connections,
        where a real fleet's nodes, each behind its own Service, do not."""
        if self._port is None:
            raise RuntimeError("Mocknet is not started")
        if not address.startswith("127."):
            raise ValueError(f"{address} is not a loopback address")
        if address != "127.0.0.1" and address not in self._addresses:
            await self._listen(address, self._port)
            self._addresses.add(address)
        return f"http://{address}:{self._port}"

    async def stop(self) -> None:
        if self._timer:
            self._timer.cancel()
            await asyncio.gather(self._timer, return_exceptions=True)
            self._timer = None
        for task in list(self._listener_tasks):
            task.cancel()
        await asyncio.gather(*self._listener_tasks, return_exceptions=True)
        if self._runner:
            await self._runner.cleanup()
            self._runner = None
            self._addresses.clear()

    async def __aenter__(self) -> Mocknet:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("Mocknet is not started")
        return f"http://127.0.0.1:{self._port}"

    def rest_url(self, namespace: str) -> str:
        """What `http://mayanode.{namespace}:1317` is in the sandbox."""
        return f"{self.url}/ns/{namespace}"

    def rpc_url(self, namespace: str) -> str:
        """What `http://mayanode.{namespace}:27147` is in the sandbox."""
        return f"{self.url}/ns/{namespace}/rpc"

    @property
    def public_rpc_url(self) -> str:
        """A public full node's RPC (not a validator, always up)."""
        return f"{self.url}/public/rpc"

    async def _produce_on_timer(self) -> None:
        while True:
            await asyncio.sleep(self.block_interval)
            await self.advance(1)

    # --- node accounts ------------------------------------------------------------------------

    def add_node(self, account: NodeAccount) -> NodeAccount:
        if account.node_address in self.nodes:
            raise ValueError(f"node account {account.node_address} already exists")
        self.nodes[account.node_address] = account
        return account

    def node(self, address: str) -> NodeAccount:
        try:
            return self.nodes[address]
        except KeyError:
            raise KeyError(f"no node account {address}") from None

    def set_status(self, address: str, status: str) -> NodeAccount:
        account = self.node(address)
        if status not in NODE_STATUSES:
            raise ValueError(f"unknown node status {status!r}")
        if status != account.status:
            account.status, account.status_since = status, self.height
            if status == ACTIVE:
                account.active_block_height = self.height
        return account

    def active_nodes(self) -> list[NodeAccount]:
        return [n for n in self.nodes.values() if n.status == ACTIVE]

    def set_network_versions(self, versions: Sequence[str] | Mapping[str, int]) -> list[NodeAccount]:
        """Replace the virtual Active nodes (the rest of the network) by one per version given,
        e.g. `["1.110.0", "1.111.0", "1.111.0"]` or `{"1.110.0": 1, "1.111.0": 2}`."""
        if isinstance(versions, Mapping):
            versions = [v for v, count in versions.items() for _ in range(count)]
        for address in [a for a, n in self.nodes.items() if n.virtual]:
            del self.nodes[address]
        created = []
        for index, version in enumerate(versions):
            identity = NodeIdentity.from_seed(f"mocknet-virtual-{index}", self.network)
            account = node_account_for(
                identity, status=ACTIVE, version=version, ip_address=f"203.0.113.{index % 250 + 1}"
            )
            account.virtual = True
            account.status_since = account.active_block_height = self.height
            created.append(self.add_node(account))
        return created

    def network_versions(self) -> rules.NetworkVersions | None:
        return rules.network_versions(n.version for n in self.active_nodes())

    def is_supported_binary(self, version: str) -> bool:
        """False when a binary of that version would panic with "Unsupported Version"."""
        versions = self.network_versions()
        return versions is None or rules.is_supported_binary(version, versions.current)

    # --- processes ----------------------------------------------------------------------------

    def process_started(
        self,
        namespace: str,
        instance_id: str,
        *,
        node_address: str,
        cons_pubkey_b64: str,
        version: str,
        signed_state_height: int,
    ) -> None:
        """A mayanode container came up with this consensus key and priv_validator_state height."""
        if instance_id in self.processes:
            raise ValueError(f"instance {instance_id} is already running")
        try:
            validator = chainkeys.validator_address_from_base64(cons_pubkey_b64)
        except chainkeys.ChainKeyError as err:
            raise ValueError(f"instance {instance_id}: bad consensus pubkey: {err}") from err
        self.processes[instance_id] = NodeProcess(
            instance_id=instance_id,
            namespace=namespace,
            node_address=node_address,
            cons_pubkey_b64=cons_pubkey_b64,
            validator_address=validator,
            version=version,
            started_at=self.clock(),
            start_height=self.height,
            last_signed_height=signed_state_height,
        )

    def process_stopped(self, instance_id: str) -> int:
        """Returns the last height this instance signed: its new priv_validator_state height."""
        try:
            return self.processes.pop(instance_id).last_signed_height
        except KeyError:
            raise KeyError(f"no running instance {instance_id}") from None

    def bifrost_started(self, namespace: str, instance_id: str, node_address: str) -> None:
        self.bifrosts[instance_id] = BifrostProcess(instance_id, namespace, node_address, self.clock())

    def bifrost_stopped(self, instance_id: str) -> None:
        self.bifrosts.pop(instance_id, None)

    def running_processes(self, namespace: str | None = None) -> list[NodeProcess]:
        return [p for p in self.processes.values() if namespace is None or p.namespace == namespace]

    def serving_process(self, namespace: str) -> NodeProcess | None:
        """The process behind a namespace's Service: the most recently started one."""
        running = self.running_processes(namespace)
        return max(running, key=lambda p: p.started_at) if running else None

    def configure_namespace(
        self, namespace: str, *, catch_up_seconds: float | None = None, height_lag: int | None = None
    ) -> NamespaceConfig:
        config = self.namespace_config(namespace)
        if catch_up_seconds is not None:
            config.catch_up_seconds = catch_up_seconds
        if height_lag is not None:
            config.height_lag = height_lag
        self.namespaces[namespace] = config
        return config

    def namespace_config(self, namespace: str) -> NamespaceConfig:
        return self.namespaces.get(namespace) or NamespaceConfig(catch_up_seconds=self.default_catch_up_seconds)

    def is_catching_up(self, process: NodeProcess) -> bool:
        config = self.namespace_config(process.namespace)
        return self.clock() - process.started_at < config.catch_up_seconds

    def namespace_height(self, namespace: str) -> int:
        """The height a namespace's node reports: the network height minus its configured lag."""
        return max(self.earliest_height, self.height - self.namespace_config(namespace).height_lag)

    def fail(self, namespace: str, mode: str | None) -> None:
        """Make a namespace's API misbehave: "down", "garbage" (invalid JSON), "huge", "nested" (valid
        JSON nested deeper than a parser's recursion limit); None restores."""
        if mode is None:
            self.failures.pop(namespace, None)
        elif mode in FAIL_MODES:
            self.failures[namespace] = mode
        else:
            raise ValueError(f"unknown failure mode {mode!r}; expected one of {FAIL_MODES} or None")

    # --- blocks -------------------------------------------------------------------------------

    @property
    def height(self) -> int:
        return self.blocks[-1].height

    @property
    def earliest_height(self) -> int:
        return self.blocks[0].height

    def block(self, height: int) -> Block | None:
        offset = height - self.earliest_height
        return self.blocks[offset] if 0 <= offset < len(self.blocks) else None

    def signers_at(self, height: int) -> set[str]:
        block = self.block(height)
        if block is None:
            return set()
        return {s.validator_address for s in block.signatures if s.block_id_flag == BLOCK_ID_FLAG_COMMIT}

    async def advance(self, blocks: int = 1) -> int:
        """Produce `blocks` blocks now; returns the new height."""
        for _ in range(blocks):
            if self._produce_block():
                await self.settle()
        return self.height

    async def settle(self) -> None:
        """Wait for async churn listeners already started."""
        while self._listener_tasks:
            await asyncio.gather(*list(self._listener_tasks), return_exceptions=True)

    def _produce_block(self) -> bool:
        """Produces one block; returns True when it triggered an automatic churn."""
        height = self.height + 1
        txs_b64 = self._apply_pending(height)
        signatures = self._sign(height)
        evidence, self._pending_evidence = self._pending_evidence, []
        self.blocks.append(self._make_block(height, signatures, txs_b64, evidence))
        self._advance_external_chains(height)
        interval = self.churn_interval_blocks
        if interval and height % interval == 0 and not rules.is_height_halt(self.mimirs().get("HALTCHURNING"), height):
            self.churn()
            return True
        return False

    def _make_block(self, height: int, signatures: list[CommitSig], txs_b64: list[str], evidence: list[dict]) -> Block:
        committed = [s.validator_address for s in signatures if s.block_id_flag == BLOCK_ID_FLAG_COMMIT]
        return Block(
            height=height,
            time=datetime.now(UTC),
            hash=hashlib.sha256(f"{self.chain_id}/block/{height}".encode()).hexdigest().upper(),
            proposer_address=committed[height % len(committed)] if committed else "",
            signatures=signatures,
            txs=txs_b64,
            evidence=evidence,
        )

    def _sign(self, height: int) -> list[CommitSig]:
        """Every running, synced instance whose signed state is below `height` signs it."""
        signers: dict[str, list[NodeProcess]] = {}
        for process in self.processes.values():
            if process.last_signed_height < height and not self.is_catching_up(process):
                process.last_signed_height = height
                signers.setdefault(process.validator_address, []).append(process)
        for address, instances in signers.items():
            if len(instances) > 1:
                self._record_double_sign(height, address, instances)
        for account in self.active_nodes():
            address = _account_validator_address(account)
            if account.virtual and address:
                signers.setdefault(address, [])
        timestamp = render.rfc3339(datetime.now(UTC))
        commits = [
            CommitSig(BLOCK_ID_FLAG_COMMIT, address, timestamp, _signature(address, height))
            for address in sorted(signers)
        ]
        absent = [
            CommitSig(BLOCK_ID_FLAG_ABSENT, "", ABSENT_TIMESTAMP, None)
            for account in self.active_nodes()
            if (address := _account_validator_address(account)) and address not in signers
        ]
        return commits + absent

    def _record_double_sign(self, height: int, address: str, instances: list[NodeProcess]) -> None:
        ids = tuple(sorted(p.instance_id for p in instances))
        self.double_signs.append(DoubleSign(height=height, validator_address=address, instances=ids))
        log.warning("double sign at height %d by validator %s (instances %s)", height, address, ", ".join(ids))
        vote_a, vote_b = (
            {"type": 2, "height": str(height), "round": 0, "validator_address": address,
             "block_id": {"hash": hashlib.sha256(f"{instance}/{height}".encode()).hexdigest().upper()}}
            for instance in ids[:2]
        )
        self._pending_evidence.append({
            "type": "tendermint/DuplicateVoteEvidence",
            "value": {"vote_a": vote_a, "vote_b": vote_b, "validator_power": "100", "total_voting_power": "100"},
        })

    def _advance_external_chains(self, height: int) -> None:
        mimirs = self.mimirs()
        for chain in self.external_chains:
            if not rules.is_chain_halted(chain.chain, mimirs, height):
                chain.observed_maya_blocks += 1
            if not rules.is_chain_signing_halted(chain.chain, mimirs, height):
                chain.last_signed_out = height

    # --- transactions -------------------------------------------------------------------------

    def inject_tx_error(self, raw_log: str, times: int = 1, code: int = txs.CODE_WRONG_SEQUENCE) -> None:
        """The next `times` broadcasts fail with this code and raw_log (e.g. a sequence mismatch)."""
        self._injected_errors.extend([(code, raw_log)] * times)

    def submit_tx(self, namespace: str, signer_address: str, argv: Sequence[str]) -> TxResult:
        """`mayanode tx mayachain <argv…>` run inside the namespace's mayanode container.
        Accepted txs are pending (height 0) and take effect in the next block."""
        argv = list(argv)
        self._tx_counter += 1
        txhash = hashlib.sha256(
            json.dumps([self._tx_counter, namespace, signer_address, argv]).encode()
        ).hexdigest().upper()
        refusal = txs.cli_refusal(argv)
        if refusal is None and self.serving_process(namespace) is None:
            refusal = txs.Refusal(txs.CODE_CLI_ERROR, CONNECTION_REFUSED_LOG)
        if refusal is not None:
            txhash = ""  # nothing was broadcast
        elif self._injected_errors:
            refusal = txs.Refusal(*self._injected_errors.popleft())
        else:
            refusal = txs.chain_refusal(
                argv,
                self.nodes.get(signer_address),
                signer_address,
                signer_address in self._effects.paused_this_churn,
            )
        if refusal is not None:
            result = TxResult(code=refusal.code, txhash=txhash, raw_log=refusal.raw_log, height=0)
        else:
            result = TxResult(code=0, txhash=txhash, raw_log="[]", height=0)
        tx = Tx(namespace=namespace, signer=signer_address, argv=argv, submitted_height=self.height, result=result)
        self.transactions.append(tx)
        if result.ok:
            self._pending.append(tx)
        return result

    @property
    def pending_transactions(self) -> list[Tx]:
        return list(self._pending)

    def _apply_pending(self, height: int) -> list[str]:
        included, self._pending = self._pending, []
        for tx in included:
            account = self.nodes.get(tx.signer)
            if account is None:  # removed while pending
                continue
            process = self.serving_process(tx.namespace)
            process_version = process.version if process else "0.0.0"
            txs.apply_tx(tx.argv, account, process_version, height, self._effects)
            tx.applied_height = height
        return [base64.b64encode(json.dumps({"signer": t.signer, "argv": t.argv}).encode()).decode() for t in included]

    # --- mimir --------------------------------------------------------------------------------

    def set_mimir(self, key: str, value: int | None) -> None:
        """An admin mimir; None or a negative value removes it."""
        key = key.upper()
        if value is None or value < 0:
            self.admin_mimirs.pop(key, None)
        else:
            self.admin_mimirs[key] = int(value)

    def mimirs(self) -> dict[str, int]:
        """The effective mimir values, as `/mayachain/mimir` serves them."""
        admin = dict(self.admin_mimirs)
        if self._effects.node_pause_until:
            admin[rules.NODE_PAUSE_MIMIR] = self._effects.node_pause_until
        return rules.effective_mimirs(admin, self.node_mimirs, (n.node_address for n in self.active_nodes()))

    # --- churn --------------------------------------------------------------------------------

    def on_churn(self, callback: ChurnListener) -> None:
        self._listeners.append(callback)

    def current_vaults(self) -> list[Vault]:
        return [v for v in self.vaults if v.status in (ACTIVE_VAULT, RETIRING_VAULT)]

    @property
    def active_vault(self) -> Vault | None:
        return next((v for v in reversed(self.vaults) if v.status == ACTIVE_VAULT), None)

    def churn(self) -> Vault:
        """A new Asgard vault for the current Active set; the previous one retires. Sync listeners run
        now; async ones are scheduled on the running loop (`await net.settle()` waits for them)."""
        height = self.height
        for vault in self.vaults:
            if vault.status == RETIRING_VAULT:
                vault.status, vault.status_since = INACTIVE_VAULT, height
            elif vault.status == ACTIVE_VAULT:
                vault.status, vault.status_since = RETIRING_VAULT, height
        members = [n.secp256k1_pubkey for n in self.active_nodes() if n.secp256k1_pubkey]
        vault = Vault(
            pub_key=_random_vault_pubkey(), status=ACTIVE_VAULT, membership=members,
            block_height=height, status_since=height,
        )
        self.vaults.append(vault)
        current = self.current_vaults()
        for account in self.nodes.values():
            account.signer_membership = [v.pub_key for v in current if account.secp256k1_pubkey in v.membership]
        self.churn_heights.append(height)
        self._effects.paused_this_churn.clear()
        self._notify_churn(vault)
        return vault

    def _notify_churn(self, vault: Vault) -> None:
        for listener in list(self._listeners):
            try:
                outcome = listener(vault)
            except Exception:
                log.exception("churn listener %r failed", listener)
                continue
            if inspect.isawaitable(outcome):
                task = asyncio.get_running_loop().create_task(_await_listener(outcome, listener))
                self._listener_tasks.add(task)
                task.add_done_callback(self._listener_tasks.discard)


async def _await_listener(outcome: Awaitable[None], listener: object) -> None:
    try:
        await outcome
    except Exception:
        log.exception("churn listener %r failed", listener)


def _account_validator_address(account: NodeAccount) -> str:
    if not account.validator_cons_pub_key:
        return ""
    try:
        return chainkeys.validator_address(chainkeys.consensus_pubkey_bytes(account.validator_cons_pub_key))
    except chainkeys.ChainKeyError:
        return ""


def _signature(validator_address: str, height: int) -> str:
    return base64.b64encode(hashlib.sha512(f"{validator_address}/{height}".encode()).digest()).decode()


def _random_vault_pubkey() -> str:
    public = ec.generate_private_key(ec.SECP256K1()).public_key()
    return chainkeys.secp256k1_pubkey_bech32(public.public_bytes(Encoding.X962, PublicFormat.CompressedPoint))


def node_account_for(
    identity: NodeIdentity,
    *,
    status: str = "Standby",
    version: str = "0.0.0",
    bond: int = DEFAULT_BOND,
    ip_address: str = "",
    keys_set: bool = True,
) -> NodeAccount:
    """A node account for an identity; `keys_set=False` is a freshly bonded (Whitelisted) node."""
    return NodeAccount(
        node_address=identity.node_address,
        status=status,
        bond=bond,
        secp256k1_pubkey=identity.secp256k1_pubkey if keys_set else "",
        ed25519_pubkey=identity.ed25519_pubkey if keys_set else "",
        validator_cons_pub_key=identity.consensus_pubkey_bech32 if keys_set else "",
        ip_address=ip_address,
        version=version,
    )

