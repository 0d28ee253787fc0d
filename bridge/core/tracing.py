"""``inject_tracing_map``: W3C trace context for every outbound message, with OpenTelemetry.

Owns the field's two halves:

- **The mapping.** Redpanda Connect runs a Bloblang mapping with ``this`` = the span's text map
  (``{"traceparent": ..., "tracestate": ...}``) *onto* the outbound message. This bridge does not
  run Bloblang mappings; ``parse_mapping`` recognizes the documented forms and nothing else (any
  other mapping is a lint error naming the field):

  ======================================  ===================================================
  ``meta = @.merge(this)``                 the text map is merged into the message metadata
  (also ``meta()`` / ``metadata()``        (text map keys win), so ``traceparent`` reaches a
  instead of ``@``)                        NATS header through ``metadata.include_*``
  ``root.meta.span = this``                the text map is set at that path of the JSON
  (any ``root.<path>``)                    *payload*, as Bloblang does: a payload that is not
                                           a JSON object becomes ``{"meta":{"span":{...}}}``
  ======================================  ===================================================

- **The span.** When (and only when) the field is set, each message gets a new PRODUCER span named
  ``nats_jetstream``. Its parent is the W3C context of the Kafka record's ``traceparent`` /
  ``tracestate`` headers when the record has them (same trace id, a new span id), else it starts a
  new trace. Spans come from a private OpenTelemetry SDK ``TracerProvider`` with no exporter: this
  bridge exports no traces (``tracer:`` is accepted but inert); the injected context lets the
  consumers on the NATS side continue the trace.

``parse_mapping`` is pure (config uses it at lint time); OpenTelemetry is imported only when an
``Injector`` is built, so a config without the field pays nothing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from bridge.core.message import Message

__all__ = ["SPAN_NAME", "Injector", "TracingMap", "parse_mapping"]

SPAN_NAME = "nats_jetstream"
_TRACE_HEADERS = ("traceparent", "tracestate")

# `meta = @.merge(this)`, `meta = meta().merge(this)`, `meta = metadata().merge(this)`, any spacing
_MERGE = re.compile(r"^meta\s*=\s*(?:@|meta\(\s*\)|metadata\(\s*\))\s*\.\s*merge\(\s*this\s*\)$")
# `root.meta.span = this`, `root."a b".c = this`
_SEGMENT = r'(?:[A-Za-z_][A-Za-z0-9_]*|"(?:[^"\\]|\\.)*")'
_ROOT_PATH = re.compile(rf"^root((?:\s*\.\s*{_SEGMENT})+)\s*=\s*this$")
_SEGMENTS = re.compile(_SEGMENT)

SUPPORTED = "meta = @.merge(this)  or  root.<path> = this"


@dataclass(frozen=True, slots=True)
class TracingMap:
    """A recognized ``inject_tracing_map``: where the text map goes."""

    source: str
    target: Literal["metadata", "payload"]
    path: tuple[str, ...] = ()  # for the payload form


def parse_mapping(text: str) -> TracingMap:
    """Recognize one of the documented mapping forms; ``ValueError`` says what is supported."""
    source = text.strip()
    if _MERGE.match(source):
        return TracingMap(text, "metadata")
    match = _ROOT_PATH.match(source)
    if match:
        path = tuple(
            json.loads(seg) if seg.startswith('"') else seg for seg in _SEGMENTS.findall(match.group(1))
        )
        return TracingMap(text, "payload", path)
    raise ValueError(
        f"the mapping {source!r} is not implemented: this bridge recognizes the documented forms "
        f"({SUPPORTED}), not Bloblang mappings in general"
    )


def set_path(document: Any, path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """``document`` with ``value`` at ``path`` (objects created or replaced on the way), as Bloblang's
    ``root.a.b = value`` does; a document that is not an object is replaced by one."""
    root: dict[str, Any] = document if isinstance(document, dict) else {}
    node = root
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[path[-1]] = value
    return root


class Injector:
    """Applies a ``TracingMap`` to messages: one span each, its context injected."""

    def __init__(self, spec: TracingMap, tracer_provider: Any = None) -> None:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.trace import SpanKind, set_span_in_context
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.spec = spec
        provider = tracer_provider if tracer_provider is not None else TracerProvider()
        self._tracer = provider.get_tracer("kafka-jetstream-bridge")
        self._propagator = TraceContextTextMapPropagator()
        self._kind = SpanKind.PRODUCER
        self._in_context = set_span_in_context

    def carrier(self, msg: Message) -> dict[str, str]:
        """A new span for ``msg`` (child of the record's trace context, if any) as a W3C text map."""
        incoming: dict[str, str] = {}
        for name, raw in msg.headers:
            lowered = name.lower()
            if lowered in _TRACE_HEADERS:
                incoming[lowered] = raw.decode(errors="replace")  # the last one wins, as in metadata
        parent = self._propagator.extract(incoming) if incoming else None
        span = self._tracer.start_span(SPAN_NAME, context=parent, kind=self._kind)
        out: dict[str, str] = {}
        try:
            self._propagator.inject(out, context=self._in_context(span))
        finally:
            span.end()
        return out

    def __call__(self, msg: Message) -> None:
        out = self.carrier(msg)
        if self.spec.target == "metadata":
            msg.merge_metadata(out)
            return
        try:
            document = json.loads(msg.content())
        except (ValueError, UnicodeDecodeError):
            document = None
        body = set_path(document, self.spec.path, out)
        msg.replace_content(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode())
