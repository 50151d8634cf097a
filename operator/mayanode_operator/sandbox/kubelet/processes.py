"""Which containers are MAYANode processes, and what they read from and write to their home."""

from __future__ import annotations

import re
import types
from dataclasses import dataclass

from mayanode_operator import chainkeys
from mayanode_operator.sandbox import identity as ident

from .volumes import ContainerFS, FsError

HOME = "/root/.mayanode"
PRIV_VALIDATOR_KEY = "config/priv_validator_key.json"
PRIV_VALIDATOR_STATE = "data/priv_validator_state.json"

_IMAGE = re.compile(r"(?:^|/)mayanode:(?P<net>[a-z]+)-(?P<version>\d+\.\d+\.\d+)(?:[-+@][^/]*)?$")


@dataclass(frozen=True)
class ImageInfo:
    network: str
    version: str


def parse_image(image: str) -> ImageInfo | None:
    """``registry.gitlab.com/mayachain/mayanode:mocknet-1.111.0`` → (mocknet, 1.111.0)."""
    m = _IMAGE.search(image or "")
    if not m:
        return None
    return ImageInfo(m.group("net"), m.group("version"))


def process_kind(container: dict) -> str | None:
    """"mayanode", "bifrost" or None for a container spec."""
    if parse_image(container.get("image", "")) is None:
        return None
    command = [str(c) for c in (container.get("command") or [])]
    program = command[0].rsplit("/", 1)[-1] if command else ""
    name = container.get("name", "")
    for kind in ("mayanode", "bifrost"):
        if name == kind or program == kind:
            return kind
    return None


def address_network(image_network: str) -> str:
    return image_network if image_network in chainkeys.NETWORK_ACCOUNT_PREFIXES else "mocknet"


def node_address(env: dict[str, str], network: str) -> str | None:
    mnemonic = env.get("SIGNER_SEED_PHRASE", "").strip()
    if not mnemonic:
        return None
    return ident.node_address_from_mnemonic(mnemonic, address_network(network))


def signer_identity(env: dict[str, str], network: str):
    """The parts of a NodeIdentity that bifrost derives from its mnemonic (for key shares)."""
    mnemonic = env.get("SIGNER_SEED_PHRASE", "").strip()
    if not mnemonic:
        return None
    return types.SimpleNamespace(
        mnemonic=mnemonic,
        node_address=ident.node_address_from_mnemonic(mnemonic, address_network(network)),
        secp256k1_pubkey=ident.secp256k1_pubkey_from_mnemonic(mnemonic),
    )


class StartFailure(Exception):
    """The process exits at start (the container crash-loops); ``str()`` is its last log line."""


@dataclass(frozen=True)
class ValidatorFiles:
    cons_pubkey_b64: str
    signed_height: int


def read_validator_files(fs: ContainerFS) -> ValidatorFiles:
    """What CometBFT reads at start; a missing or broken key file makes the binary exit."""
    key_path = f"{HOME}/{PRIV_VALIDATOR_KEY}"
    try:
        key = chainkeys.parse_priv_validator_key(fs.read(key_path))
    except FsError:
        raise StartFailure(f"panic: open {key_path}: no such file or directory") from None
    except chainkeys.ChainKeyError as exc:
        raise StartFailure(f"panic: error reading PrivValidator key from {key_path}: {exc}") from None
    state_path = f"{HOME}/{PRIV_VALIDATOR_STATE}"
    entry = fs.lookup(state_path)
    if entry is None:
        # The entrypoint's `init` writes a fresh state file next to an existing key.
        if not fs.is_dir(f"{HOME}/data"):
            fs.mkdir(f"{HOME}/data", 0o700, parents=True)
        fs.write(state_path, ident.priv_validator_state_json(0), 0o600)
        height = 0
    else:
        try:
            height = chainkeys.parse_priv_validator_state(entry.data).height
        except chainkeys.ChainKeyError as exc:
            raise StartFailure(f"panic: error reading PrivValidator state from {state_path}: {exc}") from None
    return ValidatorFiles(key.pubkey_base64, height)


def write_signed_height(fs: ContainerFS, height: int) -> None:
    """Persist the last signed height (never lowering it), keeping the file's mode and owner."""
    state_path = f"{HOME}/{PRIV_VALIDATOR_STATE}"
    entry = fs.lookup(state_path)
    current = chainkeys.SignState(0, 0, 0)
    if entry is not None:
        try:
            current = chainkeys.parse_priv_validator_state(entry.data)
        except chainkeys.ChainKeyError:
            pass
    if height <= current.height and entry is not None:
        return
    data = chainkeys.render_priv_validator_state(chainkeys.SignState(height, 0, 3))
    if entry is not None:
        fs.write(state_path, data, entry.mode, entry.uid, entry.gid)
    else:
        if not fs.is_dir(f"{HOME}/data"):
            fs.mkdir(f"{HOME}/data", 0o700, parents=True)
        fs.write(state_path, data, 0o600)
