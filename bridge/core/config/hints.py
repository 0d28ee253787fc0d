"""What ``lint`` says beyond "valid or not": "did you mean", what is ignored, what to do instead.

Owns three kinds of advice, each attached to the problem or warning of one field:

- **did you mean**: a misspelt field (``consumer_grup``), section (``ouput``) or component
  (``kafka_franzz``) is named with the closest known spelling (``difflib``, the standard library's
  close-match ratio); ``suggest`` gives it, ``names_at`` lists what is known at a path.
- **inert fields** (``inert_warnings``): fields Redpanda Connect configs carry that this bridge accepts
  so that the file runs unchanged, but that change nothing here (``tracer``, ``metrics.mapping``,
  ``metrics.json_api``, ``metrics.prometheus.push_url``, ``http.debug_endpoints``, ``http.cors``,
  ``auto_replay_nacks``, ``tcp``, ...): one warning per field written with a value that asks for
  something, saying it has no effect and why. Values that ask for nothing (Redpanda Connect's
  defaults, ``""``, a zero duration) are silent.
- **unsupported, and what instead** (``UNSUPPORTED``): ``batching`` and ``processors`` explained,
  with what to do in this bridge.

Pure module: imports neither aiokafka nor nats.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from typing import Any, Final

from pydantic import BaseModel

from bridge.core.config.models import BATCHING_ADVICE, PROCESSORS_ADVICE, Config, TcpOptions
from bridge.core.config.units import parse_duration
from bridge.core.config.yamldoc import Path, dotted, line_for
from bridge.core.errors import Problem

__all__ = ["UNSUPPORTED", "inert_warnings", "names_at", "suggest"]

# Field names whose presence is refused with an explanation instead of "unknown field".
UNSUPPORTED: Final[Mapping[str, str]] = {
    "batching": BATCHING_ADVICE,
    "processors": f"processors are not implemented by this bridge: {PROCESSORS_ADVICE}",
}


def suggest(word: str, known: list[str]) -> str | None:
    """The closest of ``known`` to a misspelt ``word``, when one is close enough."""
    found = difflib.get_close_matches(word, known, n=1, cutoff=0.75)
    return found[0] if found else None


def _model_at(path: Path) -> type[BaseModel] | None:
    """The model a mapping at ``path`` is validated against (None: not a model, or unknown)."""
    model: type[BaseModel] = Config
    for part in path:
        if isinstance(part, int):
            continue  # a list of models: the item's model is the list's
        field = model.model_fields.get(part)
        if field is None:
            return None
        inner = _model_of(field.annotation)
        if inner is None:
            return None
        model = inner
    return model


def _model_of(tp: Any) -> type[BaseModel] | None:
    from typing import get_args

    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    for arg in get_args(tp):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def names_at(path: Path) -> list[str]:
    """The field names known at ``path`` (the parent of a field), or [] when none are known."""
    model = _model_at(path)
    return list(model.model_fields) if model is not None else []


# ------------------------------------------------------------------------------------- inert fields

_INPUT_KINDS = ("kafka_franz", "redpanda", "kafka")
# (path after input.<kind>, or from the top; the values that change nothing anyway; why it does nothing)
_INERT_INPUT: Final = [
    (
        "auto_replay_nacks",
        (True,),
        "a record is never dropped here: a failing publish is retried "
        "(bridge.retry_timeout) or dead-lettered (bridge.dead_letter)",
    ),
    ("topic_lag_refresh_period", (), "kafka_lag is computed from each fetch's high watermark"),
    ("conn_idle_timeout", (), "aiokafka keeps its connections open"),
    ("partition_buffer_bytes", (), "fetching pauses at max_in_flight unacknowledged records instead"),
    ("max_yield_batch_bytes", (), "each fetched batch is published as it arrives"),
    (
        "multi_header",
        (False,),
        "a header name that repeats keeps its last value (see the README's Kafka metadata)",
    ),
    ("target_version", ("",), "aiokafka negotiates the protocol version with the broker"),
    ("max_processing_period", (), "commits follow acknowledgements, not processing periods"),
    ("fetch_buffer_cap", (), "fetching pauses at max_in_flight unacknowledged records instead"),
    (
        "timely_nacks_maximum_wait",
        ("zero",),
        "a record is never nacked here: a failing publish is retried "
        "(bridge.retry_timeout) or dead-lettered (bridge.dead_letter)",
    ),
    (
        "extract_tracing_map",
        ("",),
        "this bridge records no spans (output.nats_jetstream.inject_tracing_map "
        "passes a record's trace context on in its headers)",
    ),
    ("tcp", ("default",), "aiokafka's connections use its own timeouts and the system's TCP keep-alive"),
]
_INERT_TOP: Final[list[tuple[Path, tuple[Any, ...], str]]] = [
    (("http", "debug_endpoints"), (False,), "this bridge serves /ping, /ready and /metrics only"),
    (("pipeline", "threads"), (-1,), "records are routed on one event loop; use --workers N for more cores"),
    (("shutdown_delay",), ("zero",), "shutdown starts at the signal (shutdown_timeout bounds it)"),
]


def inert_warnings(data: Mapping[str, Any], lines: Mapping[Path, int]) -> list[Problem]:
    """A warning for each field written that has no effect in this bridge."""
    out: list[Problem] = []

    def warn(path: Path, why: str) -> None:
        out.append(
            Problem(dotted(path), line_for(lines, path), f"{path[-1]} has no effect in this bridge: {why}")
        )

    section = data.get("input")
    if isinstance(section, Mapping):
        for kind in _INPUT_KINDS:
            fields = section.get(kind)
            if isinstance(fields, Mapping):
                for name, benign, why in _INERT_INPUT:
                    if name in fields and not _benign(fields[name], benign):
                        warn(("input", kind, name), why)
    for path, benign, why in _INERT_TOP:
        value = _get(data, path)
        if value is not _MISSING and not _benign(value, benign):
            warn(path, why)
    for where, why in _service_warnings(data):
        warn(where, why)
    return out


_MISSING: Final = object()


def _benign(value: Any, benign: tuple[Any, ...]) -> bool:
    """Whether a value asks for nothing: one of ``benign``, or a zero duration (``"zero"``), or the
    ``tcp`` block's defaults (``"default"``)."""
    if "zero" in benign and _zero(value):
        return True
    if "default" in benign:
        try:
            return value is None or TcpOptions.model_validate(value) == TcpOptions()
        except ValueError:
            return True  # not a valid block: the validation says so
    try:
        return value in benign
    except TypeError:  # an unhashable value compared with a hashable one is never equal anyway
        return False


def _zero(value: Any) -> bool:
    try:
        return parse_duration(value) == 0
    except ValueError:
        return False


def _get(data: Any, path: Path) -> Any:
    for part in path:
        if not isinstance(data, Mapping) or part not in data:
            return _MISSING
        data = data[part]
    return data


def _service_warnings(data: Mapping[str, Any]) -> Iterator[tuple[Path, str]]:
    metrics = data.get("metrics")
    if isinstance(metrics, Mapping):
        if metrics.get("mapping") not in (None, ""):
            yield ("metrics", "mapping"), "metric names and labels are fixed (see docs/operations.md)"
        for kind in ("json_api", "logger"):
            if kind in metrics:
                yield (
                    ("metrics", kind),
                    "/metrics is served on the http address in Prometheus' text format, nothing else",
                )
        prometheus = metrics.get("prometheus")
        if isinstance(prometheus, Mapping):
            for name in prometheus:
                yield (
                    ("metrics", "prometheus", str(name)),
                    "/metrics is served on the http address in Prometheus' text format, nothing else",
                )
    http = data.get("http")
    cors = http.get("cors") if isinstance(http, Mapping) else None
    if isinstance(cors, Mapping) and cors.get("enabled") is True:
        yield ("http", "cors"), "no CORS headers are sent (/metrics is for scrapers, not browsers)"
    tracer = data.get("tracer")
    if isinstance(tracer, Mapping):
        for kind in tracer:
            if kind != "none":
                yield (
                    ("tracer", str(kind)),
                    "this bridge exports no traces (output.nats_jetstream.inject_tracing_map passes a "
                    "record's trace context on in its headers)",
                )
