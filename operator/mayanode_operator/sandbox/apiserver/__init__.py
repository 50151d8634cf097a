"""An emulated Kubernetes API server for tests and the demo: `EmulatedApiServer`, `ServerThread`."""

from .errors import ApiError
from .exec import ExecHandler, ExecRequest
from .server import EmulatedApiServer, RequestHook, RequestInfo, request_info
from .store import Store, Watch
from .thread import ServerThread
from .validation import ValidationResult, validate_custom_object

__all__ = ["ApiError", "EmulatedApiServer", "ExecHandler", "ExecRequest", "RequestHook", "RequestInfo", "request_info", "ServerThread", "Store",
           "ValidationResult", "Watch", "validate_custom_object"]
