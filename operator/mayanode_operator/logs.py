"""Logging set-up: JSON lines by default, with the object a line is about.

Only an allowlist of fields is written: log records can carry arbitrary extras (kopf attaches
its settings and object references), and dumping arbitrary objects into logs is how secrets leak.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from pythonjsonlogger.json import JsonFormatter

OBJECT_FIELDS = ("kind", "namespace", "name")
# kopf handlers that only note that a pod or Deployment changed (main.py): kopf's "succeeded" line for each event of
# every pod in the cluster says nothing.
QUIET_KOPF_HANDLERS = ("deployment_event", "pod_event")


class QuietHandlersFilter(logging.Filter):
    def __init__(self, handlers: tuple[str, ...] = QUIET_KOPF_HANDLERS) -> None:
        super().__init__()
        self._lines = frozenset(f"Handler {handler!r} succeeded." for handler in handlers)

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name.startswith("kopf.") and record.levelno <= logging.INFO
                    and record.getMessage() in self._lines)


class OperatorJsonFormatter(JsonFormatter):
    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        allowed = {"time", "level", "logger", "message", "exc_info", "stack_info"}
        for key in list(log_data):
            if key not in allowed:
                del log_data[key]
        ref = getattr(record, "k8s_ref", None)
        if isinstance(ref, dict):
            log_data["object"] = {key: ref[key] for key in OBJECT_FIELDS if ref.get(key)}
        obj = getattr(record, "object_ref", None)    # the operator's own: extra={"object_ref": {...}}
        if isinstance(obj, dict):
            log_data["object"] = {key: str(obj[key]) for key in OBJECT_FIELDS if obj.get(key)}


def configure_logging(fmt: str = "json", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(OperatorJsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        ))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(QuietHandlersFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The kubernetes client logs request bodies at DEBUG, which may hold Secret data.
    logging.getLogger("kubernetes").setLevel(max(logging.INFO, root.level))
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
