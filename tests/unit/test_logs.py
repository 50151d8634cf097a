import io
import json
import logging
import queue

from mayanode_operator import main
from mayanode_operator.logs import QUIET_KOPF_HANDLERS, OperatorJsonFormatter, QuietHandlersFilter


def formatted(**extra):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(OperatorJsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s",
                                                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"}))
    logger = logging.getLogger("test.logs")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.warning("hello %s", "world", extra=extra)
    return json.loads(stream.getvalue())


def test_only_allowlisted_fields_and_the_object_reference():
    class Settings:               # like kopf's settings: not serialisable, may hold anything
        q = queue.SimpleQueue()
        password = "hunter2-secret"
    line = formatted(settings=Settings(), k8s_ref={"kind": "MayaNode", "namespace": "n", "name": "x", "uid": "u"},
                     password="hunter2-secret")
    assert line["message"] == "hello world" and line["level"] == "WARNING"
    assert line["object"] == {"kind": "MayaNode", "namespace": "n", "name": "x"}
    assert "hunter2-secret" not in json.dumps(line) and "settings" not in line


def test_the_success_lines_of_the_pod_and_deployment_watchers_are_not_logged():
    quiet = QuietHandlersFilter()

    def record(name: str, level: int, message: str) -> logging.LogRecord:
        return logging.LogRecord(name, level, __file__, 1, message, None, None)
    assert not quiet.filter(record("kopf.objects", logging.INFO, "Handler 'pod_event' succeeded."))
    assert not quiet.filter(record("kopf.objects", logging.INFO, "Handler 'deployment_event' succeeded."))
    assert quiet.filter(record("kopf.objects", logging.INFO, "Handler 'mayanode_event' succeeded."))
    assert quiet.filter(record("kopf.objects", logging.ERROR, "Handler 'pod_event' failed with an exception."))
    assert quiet.filter(record("mayanode_operator.x", logging.INFO, "Handler 'pod_event' succeeded."))
    assert set(QUIET_KOPF_HANDLERS) == {"pod_event", "deployment_event"}
    assert all(callable(getattr(main, handler)) for handler in QUIET_KOPF_HANDLERS)   # the names kopf logs
