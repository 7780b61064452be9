"""Logging for ``gridsync serve``: text or JSON lines on stderr, with the request id.

Every request gets an id (``gridsync/api/observe.py``: the client's ``X-Request-ID`` when it is
short and plain, else a new one), held in :data:`request_id` for the request's task, so every
line logged while serving it (the access line, a 5xx traceback) carries it, and the 500 body
shows it to the user whose report must be found.

The JSON formatter is the few lines below rather than a dependency: one object per line with
``ts``, ``level``, ``logger``, ``message``, ``request_id``, the access fields when present, and
``exc`` (the traceback) for errors.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

import msgspec

request_id: ContextVar[str | None] = ContextVar("gridsync_request_id", default=None)

# attributes of an access line (``logging.info(..., extra=ACCESS_FIELDS)``) copied into JSON
ACCESS_FIELDS = ("method", "path", "status", "ms", "device", "bytes_in", "bytes_out", "client")
FORMATS = ("text", "json")

_encoder = msgspec.json.Encoder()


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every record (``-`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or request_id.get(),
        }
        for name in ACCESS_FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return _encoder.encode(entry).decode()


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def configure(fmt: str = "text", level: int = logging.INFO) -> logging.Handler:
    """Send gridsync's logs to stderr in ``fmt``; returns the handler. Called by ``gridsync
    serve`` only: library users and tests keep their own logging (uvicorn keeps its own)."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.set_name("gridsync-serve")
    logger = logging.getLogger("gridsync")
    for old in [h for h in logger.handlers if h.get_name() == "gridsync-serve"]:
        logger.removeHandler(old)  # configured once per process, even if called again
    logger.addHandler(handler)
    logger.setLevel(level)
    return handler
