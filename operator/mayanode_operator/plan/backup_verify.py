"""Verification of a decrypted NodeBackup against its status and the chain. Pure.

`verify_contents` runs after `open_sealed` succeeded (outer digest, decryption, every item's size and
sha256 against the manifest). It checks that the manifest is the one the status recorded, that the
required items are there, that the consensus key is well formed and is the node account's
`validator_cons_pub_key`, and that the key shares belong to the current Asgard vault.
`verify_backup` adds the checks that need no chain (the key file against the consensus key and node address
the encrypted manifest names, and the keyring against that address) for `mayanode-operator backup verify`,
which may run offline. Messages name items and public keys only, never contents.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .. import chainkeys
from ..backup import BackupError, BackupItem, Manifest
from .backup_items import (
    BIFROST,
    CONSENSUS_KEY_PATH,
    MAYANODE,
    SECRET,
    SIGN_STATE_PATH,
    expected_items,
    key_share_name,
    vault_of_key_share,
)

VerifyStatus = Literal["True", "False", "Unknown"]
MNEMONIC_WORD_COUNTS = (12, 15, 18, 21, 24)


@dataclass(frozen=True)
class ChainFacts:
    """What the chain says about the node (public data)."""

    reachable: bool
    cons_pub_key: str | None = None           # the node account's validator_cons_pub_key
    secp256k1: str | None = None              # the node account's secp256k1 pubkey (vault membership key)
    vault_pub_key: str | None = None          # the current Asgard vault
    vault_membership: tuple[str, ...] = ()
    error: str = ""

    @property
    def member(self) -> bool:
        return bool(self.vault_pub_key and self.secp256k1 and self.secp256k1 in self.vault_membership)


@dataclass(frozen=True)
class VerifyResult:
    status: VerifyStatus
    reason: str
    message: str
    checks: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return self.status == "True"


def item_name(component: str, path: str) -> str:
    return f"{component}/{path}"


def failure_from_error(err: BackupError) -> VerifyResult:
    """An error from the store or from open_sealed, as a verification result (its reason is CamelCase)."""
    reason = str(getattr(err, "reason", "") or "VerificationFailed")
    status: VerifyStatus = "False"
    if reason in ("Unreachable", "AccessDenied"):
        status, reason = "Unknown", "StoreUnavailable"
    elif reason == "NotFound":
        reason = "ArchiveNotFound"
    elif reason == "InvalidIdentity":
        reason = "InvalidIdentity"
    text = getattr(err, "message", str(err))
    hints = {
        "WrongIdentity": " (the identity Secret does not hold a key for any recipient of this archive)",
        "DigestMismatch": " (the stored archive is not the one this backup wrote: it was altered or replaced)",
        "Corrupted": " (the stored archive was altered)",
    }
    return VerifyResult(status, reason, text + hints.get(reason, ""))


def _check_recorded(manifest: Manifest, recorded: Sequence[Mapping[str, Any]]) -> str | None:
    listed = {item.name: item for item in manifest.items}
    names = {str(r.get("name")) for r in recorded}
    extra = sorted(set(listed) - names)
    gone = sorted(names - set(listed))
    if extra or gone:
        parts = []
        if gone:
            parts.append(f"not in the archive: {', '.join(gone)}")
        if extra:
            parts.append(f"not in the status: {', '.join(extra)}")
        return "the archive's manifest differs from the items recorded in status (" + "; ".join(parts) + ")"
    for rec in recorded:
        item = listed[str(rec.get("name"))]
        if rec.get("size") is not None and int(rec["size"]) != item.size:
            return f"item {item.name}: the status says {rec['size']} bytes, the archive holds {item.size}"
        if rec.get("sha256") and rec["sha256"] != item.sha256:
            return f"item {item.name}: its sha256 differs from the one recorded in status"
    return None


def _key_share_problem(item: BackupItem, chain: ChainFacts) -> str | None:
    try:
        doc = json.loads(item.data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return f"{item.name} is not JSON"
    if not isinstance(doc, dict):
        return f"{item.name} is not a JSON object"
    vault = vault_of_key_share(item.path)
    if doc.get("PubKey") is not None and doc.get("PubKey") != vault:
        return f"{item.name} holds the share of vault {str(doc.get('PubKey'))[:80]}, not of {vault}"
    if vault == chain.vault_pub_key:
        party = doc.get("LocalPartyKey")
        if party is not None and chain.secp256k1 and party != chain.secp256k1:
            return f"{item.name} belongs to party {str(party)[:80]}, not to this node ({chain.secp256k1})"
        participants = doc.get("ParticipantKeys")
        if isinstance(participants, list) and set(participants) != set(chain.vault_membership):
            return f"{item.name}: its participants are not the membership of the current vault {vault}"
    return None


def verify_contents(manifest: Manifest, items: Sequence[BackupItem], *, recorded: Sequence[Mapping[str, Any]],
                    required: Sequence[str], chain: ChainFacts, mnemonic_item: str | None = None,
                    captured_vault: str | None = None) -> VerifyResult:
    """See the module docstring. `required`: item names that must be in the archive."""
    checks = ["decrypted", f"{len(items)} item digests match"]
    problem = _check_recorded(manifest, recorded)
    if problem:
        return VerifyResult("False", "ManifestMismatch", problem)
    checks.append("manifest matches status")
    by_name = {item.name: item for item in items}
    absent = [name for name in required if name not in by_name]
    if absent:
        return VerifyResult("False", "MissingItem", f"required item(s) not in the archive: {', '.join(absent)}")

    key_item = by_name.get(item_name(MAYANODE, CONSENSUS_KEY_PATH))
    consensus: chainkeys.ConsensusKey | None = None
    if key_item is not None:
        try:
            consensus = chainkeys.parse_priv_validator_key(key_item.data)
        except chainkeys.ChainKeyError as err:
            return VerifyResult("False", "InvalidKeyFile", f"{key_item.name}: {err}")
        if not consensus.private_key_matches_pubkey():
            return VerifyResult("False", "InvalidKeyFile",
                                f"{key_item.name}: its private key does not produce its public key")
        checks.append("consensus key well formed")
    state_item = by_name.get(item_name(MAYANODE, SIGN_STATE_PATH))
    if state_item is not None:
        try:
            chainkeys.parse_priv_validator_state(state_item.data)
        except chainkeys.ChainKeyError as err:
            return VerifyResult("False", "InvalidKeyFile", f"{state_item.name}: {err}")
    if mnemonic_item and mnemonic_item in by_name:
        words = by_name[mnemonic_item].data.decode("utf-8", "replace").split()
        if len(words) not in MNEMONIC_WORD_COUNTS:
            return VerifyResult("False", "MnemonicMalformed",
                                f"{mnemonic_item} does not hold a 12 to 24 word seed phrase")
        checks.append("mnemonic well formed")
    for item in items:
        if item.component == BIFROST and vault_of_key_share(item.path):
            problem = _key_share_problem(item, chain)
            if problem:
                return VerifyResult("False", "KeyShareMismatch", problem)

    if not chain.reachable:
        return VerifyResult("Unknown", "ChainUnavailable",
                            "the archive decrypts and every digest matches, but the node API could not be asked "
                            f"for the node account and vault: {chain.error or 'unreachable'}", tuple(checks))
    if consensus is not None:
        if not chain.cons_pub_key:
            return VerifyResult("Unknown", "ConsensusKeyUnknown",
                                "the node account has no validator_cons_pub_key on chain (not bonded or keys not set)",
                                tuple(checks))
        if consensus.pubkey_bech32 != chain.cons_pub_key:
            return VerifyResult("False", "ConsensusKeyMismatch",
                                f"the backup's consensus key {consensus.pubkey_bech32} is not the node account's "
                                f"validator_cons_pub_key {chain.cons_pub_key}")
        checks.append("consensus key matches the node account")
    if chain.member:
        share = item_name(BIFROST, key_share_name(str(chain.vault_pub_key)))
        older = item_name(BIFROST, key_share_name(captured_vault)) if captured_vault else None
        if share not in by_name and captured_vault and captured_vault != chain.vault_pub_key and older in by_name:
            checks.append(f"key share of vault {captured_vault}, current when captured")
            return VerifyResult("True", "VerifiedOlderVault",
                                "; ".join(checks) + f"; the current vault is {chain.vault_pub_key}: this backup predates "
                                                    f"the last churn and cannot sign for it", tuple(checks))
        if share not in by_name:
            return VerifyResult("False", "KeyShareMissing",
                                f"the node is a member of the current vault {chain.vault_pub_key} but the backup "
                                f"holds no {key_share_name(str(chain.vault_pub_key))}")
        checks.append(f"key share of the current vault {chain.vault_pub_key}")
    elif chain.vault_pub_key:
        checks.append("not a member of the current vault (no key share expected)")
    else:
        checks.append("no Asgard vault yet (no key share expected)")
    return VerifyResult("True", "Verified", "; ".join(checks), tuple(checks))


def required_item_names(node_spec: Any, *, vault: str | None, missing: Sequence[Mapping[str, Any]],
                        imported: bool = False) -> tuple[list[str], str]:
    """The item names verification insists on (the expected identity of `node_spec`, a MayaNodeSpec, minus what
    the capture already listed as missing; for an imported backup only the consensus key, the target's Secret
    names may differ), and the mnemonic's item name."""
    expected = expected_items(node_spec, member_vault=vault)
    absent = {f"{m.get('component')}/{m.get('path')}" for m in missing}
    names = [item_name(f.component, f.path) for f in expected.files
             if f.kind == "file" and f.required and f"{f.component}/{f.path}" not in absent]
    names += [item_name(SECRET, s.path) for s in expected.secrets if f"{SECRET}/{s.path}" not in absent]
    if imported:
        names = [n for n in names if n == item_name(MAYANODE, CONSENSUS_KEY_PATH)]
    return names, item_name(SECRET, expected.secrets[0].path)


def offline_required(manifest: Manifest, node_spec: Any, *, missing: Sequence[Mapping[str, Any]]
                     ) -> tuple[list[str], str | None]:
    """Without the MayaNode (an exported file): the identity files, the key share of the vault the manifest says
    the node was a member of, and a mnemonic and a password Secret item — the default names, else the Secret items
    whose key is `mnemonic` / `password` (the node's Secret names are not in an export)."""
    names, default_mnemonic = required_item_names(node_spec, vault=manifest.meta.get("vaultPubKey") or None,
                                                  missing=missing)
    listed = [item.name for item in manifest.items]
    resolved: list[str] = []
    mnemonic: str | None = default_mnemonic
    for name in names:
        if not name.startswith(f"{SECRET}/") or name in listed:
            resolved.append(name)
            continue
        key = name.rsplit("/", 1)[-1]
        alike = sorted(n for n in listed if n.startswith(f"{SECRET}/") and n.rsplit("/", 1)[-1] == key)
        chosen = alike[0] if alike else name
        resolved.append(chosen)
        if name == default_mnemonic:
            mnemonic = chosen
    return resolved, mnemonic


def _keyring_addresses(items: Sequence[BackupItem]) -> set[str]:
    """The hex addresses of the keys in the keyring (`keyring-file/<hex>.address`)."""
    out = set()
    for item in items:
        if item.component == MAYANODE and item.path.startswith("keyring-file/") and item.path.endswith(".address"):
            out.add(item.path[len("keyring-file/"):-len(".address")].lower())
    return out


def identity_binding(meta: Mapping[str, Any], items: Sequence[BackupItem], *,
                     expected_node_address: str | None = None) -> tuple[VerifyResult | None, list[str]]:
    """Checks that need no chain: the consensus key file is the key the encrypted manifest names, the keyring holds
    the key of the node address it names, and that address is the one expected. (failure or None, checks done)."""
    checks: list[str] = []
    by_name = {item.name: item for item in items}
    key_item = by_name.get(item_name(MAYANODE, CONSENSUS_KEY_PATH))
    recorded_key = meta.get("consensusPubKey")
    if key_item is not None and recorded_key:
        try:
            key = chainkeys.parse_priv_validator_key(key_item.data)
        except chainkeys.ChainKeyError as err:
            return VerifyResult("False", "InvalidKeyFile", f"{key_item.name}: {err}"), checks
        if key.pubkey_bech32 != recorded_key:
            return VerifyResult("False", "ConsensusKeyMismatch",
                                f"{key_item.name} holds consensus key {key.pubkey_bech32}, the manifest names "
                                f"{recorded_key}"), checks
        checks.append(f"consensus key file is {recorded_key}")
    address = str(meta.get("nodeAddress") or "") or None
    if expected_node_address and address and address != expected_node_address:
        return VerifyResult("False", "NodeAddressMismatch",
                            f"the backup is of node {address}, not of {expected_node_address}"), checks
    address = address or expected_node_address
    keyring = _keyring_addresses(items)
    if address and keyring:
        try:
            _, raw = chainkeys.bech32_decode(address)
        except chainkeys.ChainKeyError:
            return VerifyResult("False", "NodeAddressMismatch", f"the node address {address[:80]!r} is not bech32"), \
                checks
        if raw.hex() not in keyring:
            return VerifyResult("False", "NodeAddressMismatch",
                                f"the keyring holds the key(s) of {', '.join(sorted(keyring))} (hex), not of the node "
                                f"address {address} ({raw.hex()})"), checks
        checks.append(f"keyring holds the key of node {address}")
    elif address:
        checks.append(f"node {address} (the keyring has no .address file to check it against)")
    return None, checks


def verify_backup(manifest: Manifest, items: Sequence[BackupItem], *, recorded: Sequence[Mapping[str, Any]],
                  required: Sequence[str], chain: ChainFacts | None, mnemonic_item: str | None = None,
                  captured_vault: str | None = None, expected_node_address: str | None = None) -> VerifyResult:
    """verify_contents plus identity_binding. `chain` None: offline, the chain is not asked; the result is
    `VerifiedOffline` when every check that needs no chain passed."""
    offline = ChainFacts(reachable=False, error="not asked (offline)")
    result = verify_contents(manifest, items, recorded=recorded, required=required, chain=chain or offline,
                             mnemonic_item=mnemonic_item, captured_vault=captured_vault)
    if result.status == "False":
        return result
    failure, binding = identity_binding(manifest.meta, items, expected_node_address=expected_node_address)
    if failure is not None:
        return failure
    checks = (*result.checks, *binding)
    if chain is None:
        return VerifyResult("True", "VerifiedOffline",
                            "; ".join([*checks, "the chain was not asked (offline)"]), tuple(checks))
    if result.status == "True":
        return VerifyResult("True", result.reason, "; ".join([result.message, *binding]), checks)
    return VerifyResult(result.status, result.reason, result.message, checks)
