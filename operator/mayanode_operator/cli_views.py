"""What the CLI shows: pure functions from resource bodies to text, so they are tested as tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from .api import naming


def _cond(body: Mapping[str, Any], type_: str) -> Mapping[str, Any]:
    return next((c for c in (body.get("status") or {}).get("conditions") or [] if c.get("type") == type_), {})


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def age(value: Any, now: datetime) -> str:
    """kubectl's short age: 45s, 12m, 5h, 3d."""
    when = _parse_time(value)
    if when is None:
        return "-"
    seconds = max(0, int((now - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def problem(body: Mapping[str, Any]) -> str:
    """The first thing a person should look at: a failing condition's reason and message."""
    for type_ in ("Ready", "UpgradeBlocked", "Degraded", "BackupFresh", "ExternalIPAssigned", "Jailed"):
        cond = _cond(body, type_)
        bad = cond.get("status") == ("True" if type_ in ("UpgradeBlocked", "Degraded", "Jailed") else "False")
        if cond and bad:
            return f"{type_}: {cond.get('reason')}: {cond.get('message', '')}"
    return ""


def backup_column(status: Mapping[str, Any], now: datetime) -> str:
    backup = status.get("backup") or {}
    last = backup.get("lastSuccessful") or {}
    if not last:
        return "none"
    freshness = {True: "fresh", False: "STALE"}.get(backup.get("fresh"), "?")
    return f"{age(last.get('completedAt'), now)} {freshness}"


def status_rows(mayanodes: Sequence[Mapping[str, Any]], now: datetime) -> list[list[str]]:
    header = ["NAMESPACE", "NAME", "PHASE", "READY", "NODE", "VERSION", "TARGET", "HEIGHT", "SLASH", "BACKUP",
              "UPGRADE", "PROBLEM"]
    rows = [header]
    for body in sorted(mayanodes, key=lambda b: (b["metadata"].get("namespace", ""), b["metadata"]["name"])):
        status = body.get("status") or {}
        node = status.get("node") or {}
        rows.append([
            body["metadata"].get("namespace", ""), body["metadata"]["name"],
            status.get("phase") or "Pending",
            _cond(body, "Ready").get("status", "Unknown"),
            node.get("status") or "-",
            status.get("version") or "-",
            (body.get("spec") or {}).get("version") or "-",
            str((status.get("chain") or {}).get("height", "-")),
            str(node.get("slashPoints", "-")),
            backup_column(status, now),
            ((status.get("upgrade") or {}).get("state")) or "-",
            problem(body)[:80],
        ])
    return rows


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


NEXT_COMMANDS = {
    # (kind, phase) → what to run next, as Velero prints after a failed backup or restore
    ("NodeBackup", "Failed"): "kubectl describe nodebackup {name} -n {ns}; mayanode-operator backup describe {name} -n {ns}",
    ("NodeBackup", "PartiallyFailed"): "check the missing items above, then: kubectl create -f <a new NodeBackup>",
    ("NodeRestore", "Failed"): "read nextAction above; kubectl get events -n {ns} --field-selector involvedObject.name={name}",
}


def describe(body: Mapping[str, Any], now: datetime) -> str:
    """A readable account of one resource: phase, steps with timing, conditions, what to do next."""
    meta, spec, status = body.get("metadata") or {}, body.get("spec") or {}, body.get("status") or {}
    kind, name, ns = body.get("kind", ""), meta.get("name", ""), meta.get("namespace", "")
    lines = [f"Name:       {name}", f"Namespace:  {ns}", f"Kind:       {kind}",
             f"Phase:      {status.get('phase') or 'Pending'}"]
    if status.get("message"):
        lines.append(f"Message:    {status['message']}")
    if kind == naming.NODEBACKUP_KIND:
        lines += _describe_backup(spec, status)
    elif kind == naming.NODERESTORE_KIND:
        lines += _describe_restore(spec, status)
    steps = status.get("steps") or []
    if steps:
        lines.append("Steps:")
        for step in steps:
            started, done = _parse_time(step.get("startedAt")), _parse_time(step.get("completedAt"))
            took = f"{(done - started).total_seconds():.1f}s" if started and done else ("running" if started else "")
            lines.append(f"  {'✓' if done else '…'} {step.get('name'):<18} {took:>8}  {step.get('message') or ''}".rstrip())
    conditions = status.get("conditions") or []
    if conditions:
        lines.append("Conditions:")
        for cond in conditions:
            lines.append(f"  {cond.get('type'):<20} {cond.get('status'):<8} {cond.get('reason', '')}: "
                         f"{cond.get('message', '')}  ({age(cond.get('lastTransitionTime'), now)} ago)")
    next_action = status.get("nextAction") or NEXT_COMMANDS.get((kind, status.get("phase")), "")
    if next_action:
        lines.append(f"Next:       {next_action.format(name=name, ns=ns)}")
    return "\n".join(lines)


def _describe_backup(spec: Mapping[str, Any], status: Mapping[str, Any]) -> list[str]:
    lines = [f"Node:       {(spec.get('nodeRef') or {}).get('name', '-')}", f"Reason:     {spec.get('reason', '-')}"]
    archive = status.get("archive") or {}
    if archive:
        lines.append(f"Archive:    {archive.get('location', '-')}  {archive.get('size', '?')} bytes  "
                     f"sha256 {str(archive.get('sha256', ''))[:16]}…")
    items = status.get("items") or []
    if items:
        lines.append(f"Items ({len(items)}):")
        lines += [f"  {i.get('component', ''):<9} {i.get('path', i.get('name', ''))}  {i.get('size', '')}" for i in items]
    for missing in status.get("missing") or []:
        lines.append(f"  MISSING   {missing}")
    return lines


def _describe_restore(spec: Mapping[str, Any], status: Mapping[str, Any]) -> list[str]:
    backup = spec.get("backupRef") or {}
    lines = [f"Node:       {(spec.get('nodeRef') or {}).get('name', '-')}",
             f"Backup:     {backup.get('namespace') or '(same namespace)'}/{backup.get('name', '-')}"]
    guard = status.get("guard") or {}
    if guard:
        lines.append(f"Guard:      {guard.get('method') or 'pending'}"
                     + (f", blocks {guard.get('silentFromHeight')}–{guard.get('silentToHeight')} silent"
                        if guard.get("silentFromHeight") is not None else "")
                     + (f", held by {guard['lockHolder']}" if guard.get("lockHolder") else ""))
    hwm = status.get("highWaterMark") or {}
    if hwm:
        lines.append(f"Sign state: height {hwm.get('height')} round {hwm.get('round')} step {hwm.get('step')} "
                     f"(from {hwm.get('source')})")
    if status.get("downtimeSeconds") is not None:
        lines.append(f"Downtime:   {status['downtimeSeconds']:.1f}s")
    return lines


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
