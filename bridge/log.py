"""Logging, configured once by the CLI: structlog renders everything, stdlib logs included.

JSON lines when stderr (where logs go) is not a terminal (or ``logger.format: json``), readable
console output on a terminal. aiokafka's and nats-py's stdlib loggers go through the same processors.
Events are names plus keys; per-message events are at debug level. Values of keys that look like
secrets are masked before rendering, and credentials in URLs (``nats://user:pass@host``) are masked
in every value, stdlib messages and tracebacks included.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

_LEVELS = {
    "OFF": logging.CRITICAL + 10, "NONE": logging.CRITICAL + 10, "FATAL": logging.CRITICAL,
    "ERROR": logging.ERROR, "WARN": logging.WARNING, "INFO": logging.INFO, "DEBUG": logging.DEBUG,
    "TRACE": logging.DEBUG, "ALL": logging.DEBUG,
}  # fmt: skip
_SECRET_KEY = re.compile(r"pass|secret|token|seed|nkey|jwt|credential|sasl_plain", re.IGNORECASE)
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s:]+(?::[^/@\s]*)?@", re.IGNORECASE)


def redact_text(text: str) -> str:
    """``nats://user:pass@host`` → ``nats://***@host``."""
    return _URL_CREDENTIALS.sub(r"\g<scheme>***@", text)


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
    for key, value in list(event.items()):
        if _SECRET_KEY.search(key) and value not in (None, "", False):
            event[key] = "***"
        elif isinstance(value, str) and "@" in value:
            event[key] = redact_text(value)
    return event


def setup(
    level: str = "INFO", fmt: str | None = None, static_fields: Mapping[str, str] | None = None
) -> None:
    """Configure structlog and route the stdlib root logger through it."""
    as_json = fmt == "json" or (fmt is None and not sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    if static_fields:
        fields = dict(static_fields)

        def add_static(_: Any, __: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
            for k, v in fields.items():
                event.setdefault(k, v)
            return event

        shared.append(add_static)
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # Tracebacks as plain text on both renderers, then masked like everything else: an exception
            # message may hold a URL with credentials, and rich's console tracebacks would print locals.
            structlog.processors.format_exc_info,
            _redact,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS.get(level.upper(), logging.INFO))
    # The clients are chatty at INFO about every reconnect attempt; ours say it once.
    for noisy in ("aiokafka", "nats"):
        logging.getLogger(noisy).setLevel(max(root.level, logging.WARNING))
