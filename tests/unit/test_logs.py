import io
import json
import logging
import queue

from mayanode_operator.logs import OperatorJsonFormatter


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
