"""Logging, configured once by the CLI: structlog renders everything, stdlib logs included.

JSON lines when stderr (where logs go) is not a terminal (or ``logger.format: json``), readable
console output on a terminal. aiokafka's and nats-py's stdlib loggers go through the same processors.
Events are names plus keys; per-message events are at debug level. Values of keys that look like
secrets are masked before rendering, and credentials in URLs are masked in every value (nested ones
too), stdlib messages and tracebacks included.

``redact_text`` is the one rule for credentials in URLs, applied to everything the process prints:
``guard_output`` (installed first thing by the CLI) passes every line written to stdout and stderr
through it — logs, summaries, tables, JSON, error messages, tracebacks. What it masks:

- ``scheme://user:pass@host``, ``scheme://token@host`` for any scheme (``nats``, ``tls``, ``ws``,
  ``wss``, ``kafka``, ...), percent-encoded or not: everything between ``://`` and the last ``@``
  before a space or a comma becomes ``***``;
- without a scheme, ``user:pass@host`` and ``token@host:port`` at the start of a word or a comma-list
  item (``nats://a:4222,u:p@b:4222``). A bare ``name@domain`` without a port (an e-mail address) is
  left alone;
- the query string of a URL with a scheme (``nats://h:4222?token=...`` → ``nats://h:4222?***``):
  nats-py ignores it, but a token written there must not be printed either (``lint`` refuses it).
"""

from __future__ import annotations

import io
import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

_LEVELS = {
    "OFF": logging.CRITICAL + 10,
    "NONE": logging.CRITICAL + 10,
    "FATAL": logging.CRITICAL,
    "ERROR": logging.ERROR,
    "WARN": logging.WARNING,
    "INFO": logging.INFO,
    "DEBUG": logging.DEBUG,
    "TRACE": logging.DEBUG,
    "ALL": logging.DEBUG,
}
_SECRET_KEY = re.compile(r"pass|secret|token|seed|nkey|jwt|credential|sasl_plain", re.IGNORECASE)
_URL_CREDENTIALS = re.compile(
    r"""
    (?P<scheme>\b[a-z][a-z0-9+.-]*://)[^\s,]*@        # scheme://userinfo@ (up to the last @ of the item)
    | (?<![^\s,;=(\[{<'"|])                          # or, at the start of a word or list item,
      (?: [^\s,;=|/?#@:'"(){}\[\]<>!$]+ : [^\s,]* @     #   user:password@ (up to the last @)
        | [^\s,;=|/?#@:'"(){}\[\]<>!$]+ @ (?=[^\s,/@:]+:\d)  #   token@host:port
      )
    """,
    re.IGNORECASE | re.VERBOSE,
)


# scheme://host...?query: the query (up to a space, comma, quote or closing bracket) may carry a token
_URL_QUERY = re.compile(
    r"""(\b[a-z][a-z0-9+.-]*://[^\s,?'"()<>\[\]{}]*\?)[^\s,'"()<>\[\]{}]+""", re.IGNORECASE
)


def redact_text(text: str) -> str:
    """``nats://user:pass@host`` → ``nats://***@host``; ``u:p@host:4222`` → ``***@host:4222``;
    ``nats://host:4222?token=t`` → ``nats://host:4222?***``."""
    if "@" in text:
        text = _URL_CREDENTIALS.sub(lambda m: f"{m.group('scheme') or ''}***@", text)
    if "?" in text and "://" in text:
        text = _URL_QUERY.sub(r"\1***", text)
    return text


def _redact_value(value: Any) -> Any:
    """Strings masked by ``redact_text``; plain containers (``servers=[...]``) rebuilt, masked
    item by item; anything else (``exc_info``, numbers) as it is."""
    kind = type(value)
    if kind is str:
        return redact_text(value)
    if kind is dict:
        return {k: "***" if _secret_key(k, v) else _redact_value(v) for k, v in value.items()}
    if kind in (list, tuple, set, frozenset):
        return kind(_redact_value(v) for v in value)
    return value


def _secret_key(key: object, value: Any) -> bool:
    return isinstance(key, str) and bool(_SECRET_KEY.search(key)) and value not in (None, "", False)


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
    for key, value in list(event.items()):
        event[key] = "***" if _secret_key(key, value) else _redact_value(value)
    return event


class RedactingWriter(io.TextIOBase):
    """A text stream that writes each complete line to ``target`` through ``redact_text`` (a URL is
    never split between two writes of the masking). A partial line waits for its end, a carriage
    return (progress bars) or ``flush()``."""

    def __init__(self, target: TextIO) -> None:
        super().__init__()
        self.target = target
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        cut = max(self._pending.rfind("\n"), self._pending.rfind("\r"))
        if cut >= 0:
            done, self._pending = self._pending[: cut + 1], self._pending[cut + 1 :]
            self.target.write(redact_text(done))
        return len(text)

    def flush(self) -> None:
        if self._pending:
            done, self._pending = self._pending, ""
            self.target.write(redact_text(done))
        self.target.flush()

    def isatty(self) -> bool:
        return self.target.isatty()

    def fileno(self) -> int:
        return self.target.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override] # TextIOBase declares a plain attribute
        return self.target.encoding

    @property
    def errors(self) -> str | None:  # type: ignore[override] # TextIOBase declares a plain attribute
        return self.target.errors


def guard_output() -> None:
    """Route ``sys.stdout`` and ``sys.stderr`` through ``redact_text`` for the rest of the process
    (idempotent). The CLI calls it before anything is printed."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, RedactingWriter):
            setattr(sys, name, RedactingWriter(stream))


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]  # generic in typeshed, not at run time
    """Writes to whatever ``sys.stderr`` is now, not to what it was at setup: while the backfill's progress
    line is drawn, rich puts a proxy there that prints each log line above the bar instead of through it."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # a read-only view of sys.stderr replaces the attribute
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass


# aiokafka logs at ERROR what it retries by itself and what every fresh cluster answers at first: the
# coordinator is not available while __consumer_offsets is being created, or moves. Said as a warning
# (still shown: if it never ends, it is the reason nothing happens).
_TRANSIENT = (("aiokafka.consumer.group_coordinator", "Group Coordinator Request failed"),)


def _transient_client_errors(record: logging.LogRecord) -> bool:
    for logger, prefix in _TRANSIENT:
        if record.name == logger and str(record.msg).startswith(prefix) and record.levelno > logging.WARNING:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            return logging.getLogger(logger).isEnabledFor(logging.WARNING)
    return True


def setup(
    level: str = "INFO",
    fmt: str | None = None,
    static_fields: Mapping[str, str] | None = None,
    timestamps: bool = True,
) -> None:
    """Configure structlog and route the stdlib root logger through it.

    ``fmt``: ``json``, ``logfmt`` (``key=value`` lines, structlog's ``LogfmtRenderer``, as Redpanda
    Connect's default), or None: JSON when stderr is not a terminal, readable console output on one.
    ``timestamps``: ``logger.add_timestamp``."""
    as_json = fmt == "json" or (fmt is None and not sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        *([structlog.processors.TimeStamper(fmt="iso", utc=True)] if timestamps else []),
        _redact,
    ]
    if static_fields:
        fields = dict(static_fields)

        def add_static(_: Any, __: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
            for k, v in fields.items():
                event.setdefault(k, v)
            return event

        shared.append(add_static)
    renderer: Any
    if fmt == "logfmt":
        renderer = structlog.processors.LogfmtRenderer(
            key_order=["timestamp", "level", "logger", "event"], drop_missing=True, bool_as_flag=False
        )
    elif as_json:
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
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
    handler = _StderrHandler()
    handler.setFormatter(formatter)
    handler.addFilter(_transient_client_errors)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS.get(level.upper(), logging.INFO))
    # The clients are chatty at INFO about every reconnect attempt; ours say it once.
    for noisy in ("aiokafka", "nats"):
        logging.getLogger(noisy).setLevel(max(root.level, logging.WARNING))
