"""Structured logs: one JSON object per line, the request's context, and redaction.

- ``JsonFormatter``: ``ts`` (UTC, ISO 8601, ms), ``level``, ``logger``, ``message``, then the
  request context (``request_id``, ``method``, ``path``, ``status``, ``duration_ms``,
  ``wallet`` when known) and any ``extra={...}`` fields of the call; ``exc`` holds a traceback.
- ``RequestContext`` / ``current_request``: set by the web layer once per request, read by the
  formatter, so every line logged while serving a request names it without passing it around.
- ``Redactor`` (a ``logging.Filter`` installed on the handler, so it sees every record of every
  library): before any line is written it scrubs, in the message, the arguments, the extras
  and the traceback text,
    * fields named like a secret (signature, private key, API key, token, authorization,
      upload content/data/files) -> ``"[redacted]"``, whatever their value;
    * hex runs of 130+ digits (a 65-byte signature, or longer) -> ``[redacted-hex]``;
    * ``Bearer <token>`` -> ``Bearer [redacted]``;
    * base64-looking runs of 48+ characters (upload content) -> ``[redacted-blob]``;
      ``0x`` hex of tx hashes and addresses is left alone (public, and what operators search);
    * every literal registered with ``register_secret`` (the CreateOS API key and the admin
      token, registered by ``create_app``) -> ``[redacted-secret]``.
  Private keys never reach the gateway; should one appear in a field named ``*key*`` it is
  redacted by name.

``configure_logging(fmt, level)`` installs one stderr handler on the root logger with the
redactor and the JSON (or a plain text) formatter; ``python -m gateway serve`` calls it.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import threading
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

LogFormat = Literal["json", "text"]


@dataclass(slots=True)
class RequestContext:
    """What the log knows about the request being served; ``wallet`` once authenticated."""

    request_id: str
    method: str
    path: str
    wallet: str | None = None


_current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "gateway_request", default=None
)


def current_request() -> RequestContext | None:
    return _current.get()


def enter_request(context: RequestContext) -> contextvars.Token[RequestContext | None]:
    return _current.set(context)


def leave_request(token: contextvars.Token[RequestContext | None]) -> None:
    _current.reset(token)


# --- redaction ---------------------------------------------------------------------------------

REDACTED = "[redacted]"
_SECRET_NAME = re.compile(
    r"(signature|private|secret|api[-_]?key|token|authorization|password|"
    r"^content$|^data$|^files$|^upload$|content_base64)",
    re.IGNORECASE,
)
_LONG_HEX = re.compile(r"(?:0x)?[0-9a-fA-F]{130,}")
_BEARER = re.compile(r"(?i)\b(bearer)\s+[^\s\"',;]+")
# 48+ base64 characters not inside a longer word and not the 0x hex of a hash or an address.
_BLOB = re.compile(r"(?<![A-Za-z0-9+/])(?!0x)[A-Za-z0-9+/]{48,}={0,2}")
_secrets: set[str] = set()
_secrets_lock = threading.Lock()
_secrets_pattern: re.Pattern[str] | None = None


def register_secret(value: str | None) -> None:
    """Never log ``value`` (values shorter than 6 characters are ignored: too common)."""
    global _secrets_pattern
    if not value or len(value) < 6:
        return
    with _secrets_lock:
        if value in _secrets:
            return
        _secrets.add(value)
        ordered = sorted(_secrets, key=len, reverse=True)
        _secrets_pattern = re.compile("|".join(re.escape(s) for s in ordered))


def redact_text(text: str) -> str:
    """``text`` with every secret-looking part replaced (see the module docstring)."""
    pattern = _secrets_pattern
    if pattern is not None:
        text = pattern.sub("[redacted-secret]", text)
    text = _LONG_HEX.sub("[redacted-hex]", text)
    text = _BEARER.sub(r"\1 [redacted]", text)
    return _BLOB.sub("[redacted-blob]", text)


def redact_value(name: str, value: Any) -> Any:
    """A field's value fit for the log: by name first, then by content, recursively."""
    if _SECRET_NAME.search(name):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if isinstance(value, dict):
        return {str(k): redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value("", v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact_text(repr(value))


#: Attributes every LogRecord has; anything else on a record came from ``extra=``
#: (``color_message`` is uvicorn's ANSI-coloured duplicate of the message).
_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "color_message",
}


class Redactor(logging.Filter):
    """Scrubs every record in place before a handler formats it (always lets it through)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken %-format: keep the template, drop the arguments
            message = str(record.msg)
        record.msg = redact_text(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact_text("".join(traceback.format_exception(*record.exc_info)))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        for name in list(vars(record)):
            if name not in _STANDARD_ATTRS:
                setattr(record, name, redact_value(name, getattr(record, name)))
        return True


# --- formatting --------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module docstring for the keys)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = current_request()
        if context is not None:
            line["request_id"] = context.request_id
            line["method"] = context.method
            line["path"] = context.path
            if context.wallet is not None:
                line["wallet"] = context.wallet
        for name, value in vars(record).items():
            if name not in _STANDARD_ATTRS and not name.startswith("_"):
                line[name] = value
        if record.exc_info and record.exc_info[1] is not None:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``ts level logger [request_id] message key=value ...`` for a human at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        context = current_request()
        ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        rid = f" [{context.request_id}]" if context is not None else ""
        extras = " ".join(
            f"{name}={value}"
            for name, value in vars(record).items()
            if name not in _STANDARD_ATTRS and not name.startswith("_")
        )
        text = f"{ts} {record.levelname} {record.name}{rid} {record.getMessage()}"
        if extras:
            text += " " + extras
        if record.exc_text:
            text += "\n" + record.exc_text
        elif record.exc_info and record.exc_info[1] is not None:
            text += "\n" + self.formatException(record.exc_info)
        return text


def make_handler(stream: TextIO, fmt: LogFormat = "json") -> logging.Handler:
    """A handler writing redacted lines in ``fmt`` to ``stream``."""
    handler = logging.StreamHandler(stream)
    handler.addFilter(Redactor())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    return handler


def configure_logging(fmt: LogFormat = "json", level: int | str = logging.INFO) -> None:
    """Route every logger (uvicorn's included) to one redacting stderr handler."""
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(make_handler(sys.stderr, fmt))
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
