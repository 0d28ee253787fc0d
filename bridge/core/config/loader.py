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
from collections.abc import Iterator, Mapping
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
from bridge.core.errors import ConfigError, FileRefused, Problem, TemplateSyntaxError
from bridge.core.frames import header_name_problem
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

    @property
    def output(self) -> JetStreamOutput:
        return self.config.output.nats_jetstream


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
_SERVICE_COMPONENTS = {
    "metrics": {"prometheus", "none", "mapping"},
    "tracer": {"none", "open_telemetry_collector"},
    "buffer": {"none"},
}


def _did_you_mean(word: str, known: list[str]) -> str:
    match = hints.suggest(word, known)
    return f" (did you mean {match}?)" if match else ""


def _component_problems(data: Any, lines: Mapping[tuple[str | int, ...], int]) -> list[Problem]:
    """Name Redpanda Connect sections and components this bridge does not implement, plainly."""
    problems: list[Problem] = []
    if not isinstance(data, dict):
        return [Problem("", 1, "the config must be a YAML mapping with input: and output: sections")]
    for key, what in _TOP_LEVEL_UNSUPPORTED.items():
        if key in data:
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
        else:
            message = str(err["msg"]).removeprefix("Value error, ")
            if (
                "input" in err
                and kind not in ("value_error", "assertion_error")
                and not isinstance(err["input"], dict)
                and not is_secret(loc)
            ):
                message += f" (got {quoted(err['input'])})"
        problems.append(Problem(_dotted(loc), _line_for(lines, loc), message))
    # a misspelt field also leaves the field it meant missing: the suggestion says it already
    missing_meant = {_dotted(loc) for loc in suggested}
    return [p for p in problems if not (p.message == "required field is missing" and p.path in missing_meant)]


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
            re.compile(pattern)
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
        *hints.inert_warnings(cleaned, lines),
        *report.nested_defaults(),
    ]
    return Loaded(
        config=config,
        kafka=kafka,
        templates=templates,
        source=source,
        lines=lines,
        warnings=tuple(report.finish(warnings)),
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
        env = self._env_problems()
        blamed = [p.path for p in env if p.path]
        kept = [p for p in problems if not _follows_from(p.path, blamed)]
        shown = [self.sub.reword(p) for p in [*env, *kept]]
        shown = [self._from_set(p) for p in shown]
        return sorted(shown, key=lambda p: p.line)  # stable: problems of a line keep their order

    def _from_set(self, problem: Problem) -> Problem:
        for path in self.set_paths:
            dotted = _dotted(path)
            if problem.path == dotted or problem.path.startswith((dotted + ".", dotted + "[")):
                return Problem(problem.path, 0, f"{problem.message} {overrides.FROM_SET}")
        return problem

    def raise_with(self, problems: list[Problem], cause: BaseException | None = None) -> NoReturn:
        raise ConfigError(self.finish(list(problems)), self.source) from cause


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
    return out


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
