"""Configuration: Redpanda Connect YAML → one frozen, validated tree (``load``, ``parse``).

Owns the loading path and its problems: ``${VAR}`` / ``${VAR:default}`` substitution, the YAML
document with line numbers within limits (``bridge.core.config.yamldoc``), naming the Redpanda Connect
sections and components this bridge does not implement, validation against the models
(``bridge.core.config.models``), the Kafka view (``bridge.core.config.kafka``), compiling every
``${! ... }`` template once, recognizing ``inject_tracing_map`` (``bridge.core.tracing``), checking every
credential file the config names, and reporting *every* problem with its dotted path and line before
anything connects. ``lint`` runs exactly this path.

Hostile input is bounded: the file is at most 1 MiB and credential files named by the config
must be regular files of at most 1 MiB (``bridge.core.localfiles``, checked here so that ``lint``
reports them); the YAML may hold at most 50,000 values once aliases are expanded, nested at most 64 deep
(``bridge.core.config.yamldoc``); a ``${! ... }`` query at most 64 deep (``bridge.core.interpolation``).

Secrets (passwords, tokens, NKey seeds, JWTs, private keys and their passwords, SASL extensions) are
``SecretStr``: their ``repr`` and ``str`` show stars, and a problem with one never shows its value
(``bridge.core.config.secrets``). A secret written as a plain YAML number, boolean or date
(``password: 0123``, often from an unquoted ``${VAR}``) is taken as the text written, as Redpanda
Connect takes it.

After ``load()`` returns, nothing reads files or the environment again: the tree is immutable.
Pure module: imports neither aiokafka nor nats.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import yaml
from pydantic import ValidationError

from bridge.core import localfiles
from bridge.core.config import envsubst, hints, overrides, rules
from bridge.core.config.kafka import KafkaSettings, kafka_settings
from bridge.core.config.models import TLS, Config, FranzFields, JetStreamOutput, LegacyKafkaInput
from bridge.core.config.secrets import is_secret, secret_text_as_written
from bridge.core.config.yamldoc import dotted as _dotted
from bridge.core.config.yamldoc import line_for as _line_for
from bridge.core.config.yamldoc import parse_document
from bridge.core.errors import ConfigError, FileRefused, InterpolationError, Problem, TemplateSyntaxError
from bridge.core.frames import MSG_ID_HEADER, header_name_problem, misspelt_server_header
from bridge.core.interpolation import Template
from bridge.core.tracing import TracingMap, parse_mapping

__all__ = ["Loaded", "Templates", "credential_files", "load", "parse", "substitute_env"]

# --------------------------------------------------------------------------- compiled templates


@dataclass(frozen=True, slots=True)
class Templates:
    subject: Template
    headers: tuple[tuple[str, Template], ...]
    msg_id: Template | None  # None: the built-in record identity when record_id, else no Nats-Msg-Id
    dead_letter_subject: Template | None
    tracing: TracingMap | None = None  # inject_tracing_map, recognized (bridge.core.tracing)
    record_id: bool = True  # bridge.msg_id unset: Nats-Msg-Id is the record's identity


@dataclass(frozen=True, slots=True)
class Loaded:
    """A validated config: the model tree, the normalized input and the compiled templates."""

    config: Config
    kafka: KafkaSettings
    templates: Templates
    source: str
    lines: Mapping[tuple[str | int, ...], int]
    warnings: tuple[Problem, ...] = ()  # findings that do not stop a run (``lint`` prints them)
    set_paths: tuple[tuple[str | int, ...], ...] = ()  # the fields --set gave

    @property
    def output(self) -> JetStreamOutput:
        return self.config.output.nats_jetstream

    def problem(self, path: tuple[str | int, ...], message: str) -> Problem:
        """A problem found after loading (``translate``, ``verify``), at its line, or said to come
        from ``--set`` when a ``--set`` gave the field."""
        return from_set(Problem(_dotted(path), _line_for(self.lines, path), message), self.set_paths)


# --------------------------------------------------------------------------- loading


def substitute_env(text: str, environ: Mapping[str, str]) -> tuple[str, list[Problem]]:
    """The text Redpanda Connect would parse: ``${VAR}`` / ``${VAR:default}`` replaced, newlines
    escaped, one problem per unset variable (``bridge.core.config.envsubst.substitute_text``). ``parse``
    puts values into the composed YAML instead, as the text they are."""
    return envsubst.substitute_text(text, environ)


_TOP_LEVEL_UNSUPPORTED = {
    "input_resources": "resources",
    "output_resources": "resources",
    "processor_resources": "resources",
    "cache_resources": "resources",
    "rate_limit_resources": "resources",
    "tests": "config unit tests",
}
_KNOWN_INPUTS = ("redpanda", "kafka_franz", "kafka")
# Components accepted in the service sections; those that change nothing here are warned about
# (``hints.inert_warnings``).
_SERVICE_COMPONENTS = {
    "metrics": {"prometheus", "none", "mapping", "json_api", "logger"},
    "tracer": {"none", "open_telemetry_collector", "jaeger", "gcp_cloudtrace", "redpanda"},
    "buffer": {"none"},
}


def _empty(value: object) -> bool:
    """An empty section (``input_resources: []``, ``tests:``), as Redpanda Connect's skeleton writes."""
    return value is None or value == [] or value == {}


def _did_you_mean(word: str, known: list[str]) -> str:
    match = hints.suggest(word, known)
    return f" (did you mean {match}?)" if match else ""


def _component_problems(data: Any, lines: Mapping[tuple[str | int, ...], int]) -> list[Problem]:
    """Name Redpanda Connect sections and components this bridge does not implement, plainly."""
    problems: list[Problem] = []
    if not isinstance(data, dict):
        return [Problem("", 1, "the config must be a YAML mapping with input: and output: sections")]
    for key, what in _TOP_LEVEL_UNSUPPORTED.items():
        if key in data and not _empty(data[key]):
            problems.append(
                Problem(key, _line_for(lines, (key,)), f"{what} are not implemented by this bridge")
            )
    section = data.get("input")
    if isinstance(section, dict):
        for key in section:
            if key in hints.UNSUPPORTED:
                problems.append(
                    Problem(f"input.{key}", _line_for(lines, ("input", key)), hints.UNSUPPORTED[key])
                )
            elif key not in (*_KNOWN_INPUTS, "label", "processors"):
                supported = ", ".join(_KNOWN_INPUTS)
                message = (
                    f"input type {str(key)[:80]!r} is not implemented by this bridge (supported: {supported})"
                    + _did_you_mean(str(key), [*_KNOWN_INPUTS, "label", "processors"])
                )
                problems.append(Problem(f"input.{key}", _line_for(lines, ("input", key)), message))
    for name, allowed in _SERVICE_COMPONENTS.items():
        section = data.get(name)
        if isinstance(section, dict):
            for kind in section:
                if kind not in allowed:
                    problems.append(
                        Problem(
                            f"{name}.{kind}",
                            _line_for(lines, (name, kind)),
                            f"{name} type {str(kind)[:80]!r} is not implemented by this bridge"
                            + _did_you_mean(str(kind), sorted(allowed)),
                        )
                    )
    section = data.get("output")
    if isinstance(section, dict):
        for key in section:
            if key in hints.UNSUPPORTED:
                problems.append(
                    Problem(f"output.{key}", _line_for(lines, ("output", key)), hints.UNSUPPORTED[key])
                )
            elif key not in ("nats_jetstream", "label", "processors"):
                message = (
                    f"output type {str(key)[:80]!r} is not implemented by this bridge (supported: "
                    "nats_jetstream)" + _did_you_mean(str(key), ["nats_jetstream", "label", "processors"])
                )
                problems.append(Problem(f"output.{key}", _line_for(lines, ("output", key)), message))
    return problems


QUOTE_LIMIT = 200  # characters of a value a problem quotes


def quoted(value: object) -> str:
    """``repr(value)``, at most ``QUOTE_LIMIT`` characters (then ``…`` and the full length)."""
    text = repr(value)
    if len(text) <= QUOTE_LIMIT:
        return text
    return f"{text[:QUOTE_LIMIT]}… ({len(text):,} characters)"


def _pydantic_problems(exc: ValidationError, lines: Mapping[tuple[str | int, ...], int]) -> list[Problem]:
    problems: list[Problem] = []
    suggested: set[tuple[str | int, ...]] = set()
    for err in exc.errors(include_url=False):
        loc = tuple(
            part for part in err["loc"] if not (isinstance(part, str) and part.startswith("function-"))
        )
        kind = err["type"]
        if kind == "extra_forbidden":
            name = str(loc[-1]) if loc else ""
            if name in hints.UNSUPPORTED:
                message = hints.UNSUPPORTED[name]
            else:
                known = hints.names_at(loc[:-1])
                match = hints.suggest(name, known)
                message = "unknown field" + (f" (did you mean {match}?)" if match else "")
                if match:
                    suggested.add((*loc[:-1], match))
        elif kind == "missing":
            message = "required field is missing"
        elif (kind == "invalid_key" or loc[-1:] == ("[key]",)) and err.get("input") is None:
            continue  # a null key: the document's problem names it at its line (yamldoc)
        else:
            message = _plain_message(kind, str(err["msg"]))
            if (
                "input" in err
                and kind not in ("value_error", "assertion_error")
                and not isinstance(err["input"], dict)
                and not is_secret(loc)
            ):
                message += f" (got {_shown(err['input'])})"
        problems.append(Problem(_dotted(loc), _line_for(lines, loc), message))
    # a misspelt field also leaves the field it meant missing: the suggestion says it already
    missing_meant = {_dotted(loc) for loc in suggested}
    return [p for p in problems if not (p.message == "required field is missing" and p.path in missing_meant)]


# pydantic's messages that name Python types, in the words of a YAML config
_PLAIN_MESSAGES = {
    "model_type": "expected a mapping (name: value lines)",
    "model_attributes_type": "expected a mapping (name: value lines)",
    "dict_type": "expected a mapping (name: value lines)",
    "tuple_type": "expected a list ([a, b], or one '- item' per line)",
    "list_type": "expected a list ([a, b], or one '- item' per line)",
    "string_type": "expected text",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "invalid_key": "a key must be text",
}


def _plain_message(kind: str, message: str) -> str:
    """A pydantic message without Python names (``NatsAuth``, ``tuple``): what YAML was expected."""
    if kind in _PLAIN_MESSAGES:
        return _PLAIN_MESSAGES[kind]
    message = message.removeprefix("Value error, ")
    for python, plain in (
        ("Input should be greater than or equal to", "must be at least"),
        ("Input should be less than or equal to", "must be at most"),
        ("Input should be ", "expected "),
    ):
        message = message.replace(python, plain)
    return message


def _shown(value: object) -> str:
    """A value a problem quotes, as YAML wrote it: nothing for null, ``true`` / ``false``."""
    if value is None:
        return "nothing: the value is empty"
    if isinstance(value, bool):
        return "true" if value else "false"
    return quoted(value)


def _skip_known_component_errors(problems: list[Problem], component: list[Problem]) -> list[Problem]:
    named = {p.path for p in component}
    return [p for p in problems if p.path not in named]


def _compile(
    text: str,
    path: tuple[str | int, ...],
    lines: Mapping[tuple[str | int, ...], int],
    problems: list[Problem],
) -> Template | None:
    try:
        return Template.compile(text)
    except TemplateSyntaxError as exc:
        problems.append(Problem(_dotted(path), _line_for(lines, path), str(exc)))
        return None


def parse(
    text: str,
    source: str = "<config>",
    environ: Mapping[str, str] | None = None,
    *,
    sets: tuple[str, ...] = (),
    skip_env_check: bool = False,
) -> Loaded:
    """Validate a config text; raise ``ConfigError`` listing every problem found.

    ``sets``: ``--set path=value`` expressions (``bridge.core.config.overrides``); ``skip_env_check``: an
    unset variable without a default is empty instead of a problem (``lint --skip-env-var-check``)."""
    sub = envsubst.scan(text, os.environ if environ is None else environ, skip_unset=skip_env_check)
    report = _Report(sub, source)
    try:
        doc = parse_document(sub.text, source, fill=sub)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        # never str(exc): PyYAML's message quotes the offending line, which may hold a secret
        reason = getattr(exc, "problem", None) or type(exc).__name__
        report.raise_with([Problem("", line, f"invalid YAML: {reason}")], exc)
    except ConfigError as exc:  # a limit of the document (values, depth, recursive alias)
        report.raise_with(exc.problems, exc)
    if sub.too_large is not None:
        report.raise_with([envsubst.size_problem(sub)])
    lines, data = doc.lines, doc.data
    raw = dict(doc.raw)
    problems: list[Problem] = [*doc.problems]
    if sets:
        if not isinstance(data, dict | None):
            report.raise_with(
                [Problem("", 1, "the config must be a YAML mapping with input: and output: sections")]
            )
        data, report.set_paths, found = overrides.apply(data, sets, raw)
        problems += found
    if data is None:
        data = {}
    component = _component_problems(data, lines)
    problems += component
    if problems and any(p.message.startswith("the config must be") for p in problems):
        report.raise_with(problems)
    cleaned = {k: v for k, v in data.items() if k not in _TOP_LEVEL_UNSUPPORTED}
    report.inert = hints.inert_warnings(cleaned, lines)
    secret_text_as_written(cleaned, raw)
    try:
        config = Config.model_validate(cleaned)
    except ValidationError as exc:
        problems += _skip_known_component_errors(_pydantic_problems(exc, lines), component)
        report.raise_with(problems, exc)
    if problems:
        report.raise_with(problems)

    try:
        kafka = kafka_settings(config.input)
    except ValueError as exc:
        kind = config.input.kind
        problems.append(Problem(f"input.{kind}", _line_for(lines, ("input", kind)), str(exc)))

    out = config.output.nats_jetstream
    base = ("output", "nats_jetstream")
    for message in rules.url_problems(out.urls):
        problems.append(Problem(_dotted((*base, "urls")), _line_for(lines, (*base, "urls")), message))
    subject = _compile(out.subject, (*base, "subject"), lines, problems)
    _subject_rule(subject, (*base, "subject"), lines, problems)
    headers: list[tuple[str, Template]] = []
    for name, value in out.headers.items():
        problem = header_name_problem(name)
        if problem:
            hpath = (*base, "headers", name)
            problems.append(Problem(_dotted(hpath), _line_for(lines, hpath), problem))
        compiled = _compile(value, (*base, "headers", name), lines, problems)
        if compiled is not None:
            headers.append((name, compiled))
    for i, pattern in enumerate(out.metadata.include_patterns):
        try:
            rules.compile_pattern(pattern)
        except re.error as exc:
            path = (*base, "metadata", "include_patterns", i)
            problems.append(
                Problem(_dotted(path), _line_for(lines, path), f"invalid regular expression: {exc}")
            )
    tracing: TracingMap | None = None
    if out.inject_tracing_map:
        try:
            tracing = parse_mapping(out.inject_tracing_map)
        except ValueError as exc:
            tpath: tuple[str | int, ...] = (*base, "inject_tracing_map")
            problems.append(Problem(_dotted(tpath), _line_for(lines, tpath), str(exc)))
    msg_id = None
    if config.bridge.msg_id:
        msg_id = _compile(config.bridge.msg_id, ("bridge", "msg_id"), lines, problems)
    dead = None
    if config.bridge.dead_letter is not None:
        dpath: tuple[str | int, ...] = ("bridge", "dead_letter", "subject")
        dead = _compile(config.bridge.dead_letter.subject, dpath, lines, problems)
        _subject_rule(dead, dpath, lines, problems)
    problems += _credential_file_problems(config, lines)
    if problems or sub.unset:
        report.raise_with(problems)
    assert subject is not None
    templates = Templates(
        subject=subject,
        headers=tuple(headers),
        msg_id=msg_id,
        dead_letter_subject=dead,
        tracing=tracing,
        record_id=config.bridge.msg_id is None,
    )
    warnings = [
        *_warnings(config, kafka, lines),
        *_msg_id_warnings(msg_id, kafka, lines),
        *_header_msg_id_warnings(headers, kafka, lines),
        *report.inert,
        *report.nested_defaults(),
    ]
    return Loaded(
        config=config,
        kafka=kafka,
        templates=templates,
        source=source,
        lines=lines,
        warnings=tuple(report.finish(warnings)),
        set_paths=tuple(report.set_paths),
    )


def _subject_rule(
    template: Template | None,
    path: tuple[str | int, ...],
    lines: Mapping[tuple[str | int, ...], int],
    problems: list[Problem],
) -> None:
    if template is not None:
        problem = rules.subject_rule(template)
        if problem:
            problems.append(Problem(_dotted(path), _line_for(lines, path), problem))


class _Report:
    """The problems of one parse as the user sees them: a missing variable at its field with nothing
    that follows from it, values of ``${VAR}`` shown as ``${VAR}``, values from ``--set`` said so,
    sorted by line."""

    def __init__(self, sub: envsubst.Substitution, source: str) -> None:
        self.sub = sub
        self.source = source
        self.set_paths: list[tuple[str | int, ...]] = []
        self.inert: list[Problem] = []  # fields with no effect here: shown beside the problems too

    def _env_problems(self) -> list[Problem]:
        return [
            envsubst.unset_problem(self.sub.references[i], _dotted(self.sub.paths.get(i, ())))
            for i in self.sub.unset
        ]

    def nested_defaults(self) -> list[Problem]:
        out = []
        for i, ref in enumerate(self.sub.references):
            if ref.nested_default:
                out.append(
                    Problem(
                        _dotted(self.sub.paths.get(i, ())),
                        ref.line,
                        f"the default of ${{{ref.name}:...}} is taken as written: a ${{...}} inside a "
                        "default is not replaced (as in Redpanda Connect); set the variable, or write the "
                        "default out",
                    )
                )
        return out

    def finish(self, problems: list[Problem]) -> list[Problem]:
        """The problems shown: none that follows from a missing variable, or from one taken as empty
        (``lint --skip-env-var-check``: what its empty value breaks is not a problem of the file)."""
        env = self._env_problems()
        blamed = [p.path for p in env if p.path]
        blamed += [_dotted(self.sub.paths[i]) for i in self.sub.skipped if self.sub.paths.get(i)]
        kept = [p for p in problems if not _follows_from(p.path, blamed)]
        shown = [self.sub.reword(p) for p in [*env, *kept]]
        shown = [from_set(p, self.set_paths) for p in shown]
        return sorted(shown, key=lambda p: p.line)  # stable: problems of a line keep their order

    def raise_with(self, problems: list[Problem], cause: BaseException | None = None) -> NoReturn:
        """Raise the problems shown; with every one of them from a variable taken as empty, a
        ``ConfigError`` without problems (``lint --skip-env-var-check`` says ok: the rest of the file
        checked up to there had none)."""
        warnings = [from_set(self.sub.reword(p), self.set_paths) for p in self.inert]
        raise ConfigError(self.finish(list(problems)), self.source, warnings) from cause


def from_set(problem: Problem, set_paths: Sequence[tuple[str | int, ...]]) -> Problem:
    """``problem`` said to come from ``--set`` when it is at a field set by one (or inside it, or the
    list holding an item set): no line of the file, the path set named."""
    for path in set_paths:
        dotted = _dotted(path)
        inside = problem.path == dotted or problem.path.startswith((dotted + ".", dotted + "["))
        holding = isinstance(path[-1], int) and problem.path == _dotted(path[:-1])
        if inside or holding:
            return Problem(problem.path, 0, f"{problem.message} {overrides.from_set_note(path)}")
    return problem


def _follows_from(path: str, blamed: list[str]) -> bool:
    """Whether a problem at ``path`` follows from a missing variable at one of ``blamed``: the same
    field, a field inside it, or the section holding it (whose cross-field rules saw the empty value)."""
    if not path:
        return False
    for env_path in blamed:
        if path == env_path or path.startswith((env_path + ".", env_path + "[")):
            return True
        if env_path.startswith((path + ".", path + "[")):
            return True
    return False


def _warnings(
    config: Config, kafka: KafkaSettings, lines: Mapping[tuple[str | int, ...], int]
) -> list[Problem]:
    out: list[Problem] = []
    stream = config.bridge.stream
    if stream is not None:
        # A crash re-sends what was not committed: up to commit_period of records, read again after
        # a restart that may take the whole shutdown budget. Dedup must still remember them then.
        needed = kafka.commit_period + config.shutdown_timeout
        if stream.duplicate_window < needed:
            path = ("bridge", "stream", "duplicate_window")
            out.append(
                Problem(
                    _dotted(path),
                    _line_for(lines, path),
                    f"duplicate_window ({stream.duplicate_window:g}s) is shorter than commit_period plus "
                    f"shutdown_timeout ({needed:g}s): records re-sent after a crash may be stored twice",
                )
            )
        limits = ("max_bytes", "max_msgs", "max_msgs_per_subject")
        limited = [name for name in limits if getattr(stream, name) > 0]
        if stream.discard == "new" and limited:
            path = ("bridge", "stream", "discard")
            out.append(
                Problem(
                    _dotted(path),
                    _line_for(lines, path),
                    f"discard: new with {_listed(limited)}: once full, the stream refuses a record while "
                    "smaller ones behind it may still fit and be stored first, breaking the order of a "
                    'partition (README, "Order per partition"); use discard: old, or limits the stream '
                    "never reaches",
                )
            )
    return out


# What a Nats-Msg-Id must depend on to be unique per record: JetStream drops a publish whose id it
# stored within duplicate_window, whatever its subject.
_UNIQUE_PER_RECORD = ("kafka_partition", "kafka_offset")
_WHAT = {"kafka_topic": "topic", "kafka_partition": "partition", "kafka_offset": "offset"}


def _header_msg_id_warnings(
    headers: Sequence[tuple[str, Template]],
    kafka: KafkaSettings,
    lines: Mapping[tuple[str | int, ...], int],
) -> list[Problem]:
    """A ``Nats-Msg-Id`` among the configured headers replaces ``bridge.msg_id`` (the router obeys it),
    so it is judged by the same rule. A header nats-server acts on, written in another case
    (``nats-msg-id``), is an ordinary header to the server: said so, since it looks like it works."""
    out: list[Problem] = []
    for name, template in headers:
        path = ("output", "nats_jetstream", "headers", name)
        if name == MSG_ID_HEADER:
            out += _msg_id_warnings(template, kafka, lines, path=path, what=f"the header {name}")
        known = misspelt_server_header(name)
        if known is not None:
            still = (
                "; the record's own Nats-Msg-Id is still sent, so deduplication is unchanged"
                if known == MSG_ID_HEADER
                else ""
            )
            out.append(
                Problem(
                    _dotted(path),
                    _line_for(lines, path),
                    f"nats-server reads the header {known} only in this spelling: {name} is sent as an "
                    f"ordinary header and has no effect on the stream{still}; write {known} to use it",
                )
            )
    return out


# Query functions whose value changes from one render to the next: an id made with one changes
# between two sends of the same record (a re-send after a crash or a lost ack is not deduplicated), and
# a clock or a per-process counter can repeat between records.
_CHANGING = re.compile(r"\b(now|timestamp_unix(?:_milli|_micro|_nano)?|count|uuid_v4)\s*\(")


class _Probe:
    """A record's metadata for judging an id (``MessageView``): the keys the README lists, no payload."""

    def __init__(self, topic: str, partition: int, offset: int, key: bytes | None) -> None:
        self._meta = {
            "kafka_key": "" if key is None else key.decode(),
            "kafka_topic": topic,
            "kafka_partition": str(partition),
            "kafka_offset": str(offset),
            "kafka_lag": "0",
            "kafka_timestamp_unix": "1767225600",
            "kafka_timestamp_ms": "1767225600000",
            "kafka_tombstone_message": "false",
        }
        self.key = key

    def content(self) -> bytes:
        return b""

    def meta(self, key: str) -> str | None:
        if key == "kafka_key" and self.key is None:
            return None  # meta("kafka_key") of a null key (README, Kafka metadata)
        return self._meta.get(key)

    def metadata(self) -> Mapping[str, str]:
        return self._meta

    def structured(self) -> Any:
        raise ValueError("no payload")


# Records an id must tell apart: offsets and partitions whose digits run together, repeated keys and
# null keys, the same coordinates on two topics.
_PROBE_COORDINATES = (
    (0, 0),
    (0, 1),
    (0, 5),
    (0, 6),
    (0, 10),
    (0, 11),
    (0, 100),
    (0, 110),
    (1, 0),
    (1, 1),
    (1, 5),
    (1, 10),
    (1, 11),
    (10, 0),
    (11, 0),
    (11, 1),
    (2, 10),
    (21, 0),
)


def _shared_id(msg_id: Template, several: bool) -> tuple[str, str, str] | None:
    """Two probe records ``msg_id`` gives the same id, as (first, second, id); None when it tells them
    all apart (or cannot be rendered for them)."""
    seen: dict[str, str] = {}
    topics = ("orders", "payments") if several else ("orders",)
    for topic in topics:
        for i, (partition, offset) in enumerate(_PROBE_COORDINATES):
            key = None if i % 3 == 0 else b"k"
            try:
                value = msg_id.render(_Probe(topic, partition, offset, key))
            except InterpolationError:
                continue
            name = f"{'offset' if not several else topic + ' offset'} {offset} of partition {partition}"
            if value in seen:
                return seen[value], name, value
            seen[value] = name
    return None


def _msg_id_warnings(
    msg_id: Template | None,
    kafka: KafkaSettings,
    lines: Mapping[tuple[str | int, ...], int],
    *,
    path: tuple[str | int, ...] = ("bridge", "msg_id"),
    what: str = "msg_id",
) -> list[Problem]:
    """A custom ``bridge.msg_id`` (or a configured ``Nats-Msg-Id`` header) that is not unique per record
    and stable across sends: one made with the clock, a counter or a random value (it changes between
    two sends of one record, and a clock or a counter can repeat); one that is a function of metadata
    only (``Template.meta_keys``) and does not read kafka_partition and kafka_offset — and kafka_topic
    when the input can read several topics; or one that reads them and still gives two records the same
    id (rendered for a set of probe records: ``1`` + ``11`` and ``11`` + ``1``, a fallback that never
    runs). An id that reads the payload is not judged: its author chose what makes two records the
    same."""
    if msg_id is None:
        return []
    fix = "leave msg_id unset (the record's identity)" if what == "msg_id" else f"remove {what}"
    changing = _CHANGING.search(msg_id.source)
    if changing:
        return [
            Problem(
                _dotted(path),
                _line_for(lines, path),
                f"{what} reads {changing.group(1)}(), which changes from one send to the next: a record "
                "re-sent after a crash or a lost acknowledgement gets another Nats-Msg-Id and is stored "
                "twice, and a clock or a counter (which restarts with the process) can give two records "
                f"the same id, which JetStream drops as duplicates; make it from kafka_topic, "
                f"kafka_partition and kafka_offset, or {fix}",
            )
        ]
    if msg_id.meta_keys is None:
        return []
    several = kafka.regexp or len({*kafka.topics, *(e.topic for e in kafka.explicit)}) > 1
    needed = (*(("kafka_topic",) if several else ()), *_UNIQUE_PER_RECORD)
    missing = [key for key in needed if key not in msg_id.meta_keys]
    if not missing:
        shared = _shared_id(msg_id, several)
        if shared is None:
            return []
        first, second, value = shared
        return [
            Problem(
                _dotted(path),
                _line_for(lines, path),
                f"{what} gives two records the same Nats-Msg-Id ({first} and {second}: {value!r}), and "
                "JetStream drops all but the first of such records as duplicates (within the stream's "
                "duplicate_window); separate the parts (kafka_partition, a '-', kafka_offset) and use no "
                f"fallback (.or, .catch) that replaces them, or {fix}",
            )
        ]
    words = _listed([_WHAT[key] for key in missing])
    if "kafka_partition" in missing:
        example = "offset 5 of partitions 0 and 1"
    elif "kafka_offset" in missing:
        example = "offsets 5 and 6 of one partition"
    else:
        example = "offset 5 of partition 0 of two topics"
    return [
        Problem(
            _dotted(path),
            _line_for(lines, path),
            f"{what} does not depend on {_listed(missing)}: records that differ only in their {words} "
            f"(such as {example}) get the same Nats-Msg-Id, and JetStream drops all but the first of them "
            f"as duplicates (within the stream's duplicate_window); include {_listed(needed)} in it, or "
            f"{fix}",
        )
    ]


def _listed(words: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return " and ".join(words) if len(words) < 3 else f"{', '.join(words[:-1])} and {words[-1]}"


def _tls_files(tls: TLS, base: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if not tls.enabled:  # Redpanda Connect ignores a tls block that is not enabled; so do we
        return
    if tls.root_cas_file:
        yield (*base, "root_cas_file"), tls.root_cas_file
    for i, cert in enumerate(tls.client_certs):
        for name in ("cert_file", "key_file"):
            value: str = getattr(cert, name)
            if value:
                yield (*base, "client_certs", i, name), value


def credential_files(config: Config) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """(path in the config, file name) of every credential file a run will read."""
    out = config.output.nats_jetstream
    base = ("output", "nats_jetstream")
    for name in ("nkey_file", "user_credentials_file"):
        value: str | None = getattr(out.auth, name)
        if value:
            yield (*base, "auth", name), value
    yield from _tls_files(out.tls, (*base, "tls"))
    kind = config.input.kind
    section: FranzFields | LegacyKafkaInput = getattr(config.input, kind)
    yield from _tls_files(section.tls, ("input", kind, "tls"))


def _credential_file_problems(config: Config, lines: Mapping[tuple[str | int, ...], int]) -> list[Problem]:
    """Each credential file must be a readable regular file within its size limit
    (``bridge.core.localfiles``). Their contents are checked when they are used (``bridge.core.tls``,
    ``bridge.jetstream.options``)."""
    problems: list[Problem] = []
    for path, name in credential_files(config):
        try:
            localfiles.read_credential(name)
        except FileRefused as exc:
            problems.append(
                Problem(_dotted(path), _line_for(lines, path), f"cannot read {name!r}: {exc.reason}")
            )
    return problems


def load(
    path: str | Path,
    environ: Mapping[str, str] | None = None,
    *,
    sets: tuple[str, ...] = (),
    skip_env_check: bool = False,
) -> Loaded:
    """Read (``bridge.core.localfiles.read_config``: at most 1 MiB) and validate a config file
    (``sets`` and ``skip_env_check`` as for ``parse``)."""
    p = Path(path)
    try:
        raw = localfiles.read_config(p)
    except FileRefused as exc:
        raise ConfigError([Problem("", 0, f"cannot read config file: {exc.reason}")], str(p)) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError([Problem("", line, "the file is not valid UTF-8")], str(p)) from exc
    return parse(text, source=str(p), environ=environ, sets=sets, skip_env_check=skip_env_check)
