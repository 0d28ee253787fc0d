"""Configuration: Redpanda Connect YAML → one frozen, validated tree.

Owns: ``${VAR}`` / ``${VAR:default}`` substitution, YAML parsing with line numbers, the strict models
of every section this bridge implements (``input`` as ``redpanda`` / ``kafka_franz`` / ``kafka``,
``output`` as ``nats_jetstream``, ``http``, ``logger``, ``shutdown_timeout`` and the ``bridge:``
extension), compiling every ``${! ... }`` template once, recognizing ``inject_tracing_map``
(``bridge.tracing``), and reporting *every* problem with its dotted path and line before anything
connects. ``lint`` runs exactly this path.

Hostile input is bounded: the file is at most 1 MiB and credential files named by the config
must be regular files of at most 1 MiB (``bridge.localfiles``, checked here so that ``lint`` reports
them); the YAML may hold at most 50,000 values once aliases are expanded, nested at most 64 deep
(``bridge.yamldoc``); a ``${! ... }`` query at most 64 deep (``bridge.interpolation``).

Secrets (passwords, tokens, NKey seeds, JWTs, private keys and their passwords, SASL extensions) are
``SecretStr``: their ``repr`` and ``str`` show stars, and a problem with one never shows its value.
A secret written as a plain YAML number, boolean or date (``password: 0123``, often from an unquoted
``${VAR}``) is taken as the text written, as Redpanda Connect takes it.

After ``load()`` returns, nothing reads files or the environment again: the tree is immutable.
Pure module: imports neither aiokafka nor nats.
"""

from __future__ import annotations

import math
import os
import re
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from urllib.parse import unquote, urlsplit

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from bridge import localfiles
from bridge.errors import ConfigError, Problem
from bridge.interpolation import Template, TemplateSyntaxError
from bridge.tracing import TracingMap, parse_mapping
from bridge.wire import header_name_problem
from bridge.yamldoc import dotted as _dotted
from bridge.yamldoc import line_for as _line_for
from bridge.yamldoc import parse_document

# --------------------------------------------------------------------------- scalar parsers

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_MAX_DURATION = (2**63 - 1) / 1e9  # Go's time.Duration: int64 nanoseconds, about 292 years


def parse_duration(value: object) -> float:
    """A Go duration string (``"5s"``, ``"1m30s"``, ``"250ms"``) → seconds. Plain numbers are seconds.
    At most Go's largest duration (about 292 years), as Redpanda Connect refuses longer ones."""
    seconds = _duration(value)
    if not abs(seconds) <= _MAX_DURATION:  # NaN too
        raise ValueError(f"duration {str(value)[:40]!r} is out of range (at most 2562047h47m16s)")
    return seconds


def _duration(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '5s'")
    if isinstance(value, int | float):
        return float(value) if abs(value) <= _MAX_DURATION else math.inf
    if not isinstance(value, str):
        raise ValueError("expected a duration such as '5s'")
    text = value.strip()
    if text in ("0", ""):
        return 0.0
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or pos == 0:
        raise ValueError(f"invalid duration {value!r} (use Go syntax such as '500ms', '5s', '1m30s')")
    return total


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(i?)([bB]?)\s*$")


def parse_size(value: object) -> int:
    """A human byte size (``"1MiB"``, ``"50MB"``, ``"1B"``, ``1024``) → bytes, as go-humanize parses it."""
    if isinstance(value, bool):
        raise ValueError("expected a byte size such as '1MiB'")
    if isinstance(value, int):
        return value
    if not isinstance(value, str):
        raise ValueError("expected a byte size such as '1MiB'")
    match = _SIZE.match(value)
    if not match:
        raise ValueError(f"invalid byte size {value!r} (such as '1B', '32KiB', '50MiB')")
    number, prefix, binary, _ = match.groups()
    power = " kmgt".index(prefix.lower()) if prefix else 0
    base = 1024 if binary else 1000
    size = float(number) * base**power
    if not size < 2**64:  # go-humanize: "too large" past an unsigned 64-bit number
        raise ValueError(f"byte size {value[:40]!r} is too large")
    return int(size)


Duration = Annotated[float, BeforeValidator(parse_duration)]
ByteSize = Annotated[int, BeforeValidator(parse_size)]


def _split_commas(items: object) -> object:
    """``["a,b", "c"]`` → ``("a", "b", "c")``: Redpanda Connect expands comma items in broker lists."""
    if isinstance(items, str):
        items = [items]
    if isinstance(items, list | tuple):
        out: list[object] = []
        for item in items:
            if isinstance(item, str):
                out.extend(part.strip() for part in item.split(",") if part.strip())
            else:
                out.append(item)
        return tuple(out)
    return items


CommaList = Annotated[tuple[str, ...], BeforeValidator(_split_commas)]


def _secret_text(value: object) -> object:
    """A secret is text. (A plain YAML scalar was already replaced by the text written, in ``parse``.)"""
    if isinstance(value, str | SecretStr):
        return value
    raise PydanticCustomError("secret_type", "expected a string (the value is not shown: it is a secret)")


Secret = Annotated[SecretStr, BeforeValidator(_secret_text)]

# YAML sequences arrive as lists; the frozen tree keeps tuples.
_AS_TUPLE = BeforeValidator(lambda v: tuple(v) if isinstance(v, list) else v)
StrList = Annotated[tuple[str, ...], _AS_TUPLE]
AnyList = Annotated[tuple[Any, ...], _AS_TUPLE]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# --------------------------------------------------------------------------- shared sections


class ClientCert(_Model):
    cert: str = ""
    key: Secret = SecretStr("")
    cert_file: str = ""
    key_file: str = ""
    password: Secret = SecretStr("")

    @model_validator(mode="after")
    def _one_form(self) -> ClientCert:
        inline, files = bool(self.cert or self.key), bool(self.cert_file or self.key_file)
        if inline and files:
            raise ValueError("give either cert and key, or cert_file and key_file, not both")
        if inline and not (self.cert and self.key):
            raise ValueError("cert and key must be given together")
        if files and not (self.cert_file and self.key_file):
            raise ValueError("cert_file and key_file must be given together")
        if not inline and not files:
            raise ValueError("give cert and key, or cert_file and key_file")
        return self


class TLS(_Model):
    """Redpanda Connect's ``tls`` block (both the Kafka input and the NATS output); built into an
    ``ssl.SSLContext`` by ``bridge.natsopts.ssl_context``. Ignored unless ``enabled``, as there."""

    enabled: bool = False
    skip_cert_verify: bool = False
    enable_renegotiation: bool = False
    root_cas: str = ""
    root_cas_file: str = ""
    client_certs: Annotated[tuple[ClientCert, ...], _AS_TUPLE] = ()

    @model_validator(mode="after")
    def _one_client_cert(self) -> TLS:
        if len(self.client_certs) > 1:
            raise ValueError(
                "client_certs: this bridge presents one client certificate (Python's ssl holds one "
                f"certificate chain per connection), not {len(self.client_certs)}"
            )
        return self


# --------------------------------------------------------------------------- input


class FranzSASL(_Model):
    mechanism: Literal["none", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "AWS_MSK_IAM"]
    username: str = ""
    password: Secret = SecretStr("")
    token: Secret = SecretStr("")
    extensions: dict[str, Secret] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _complete(self) -> FranzSASL:
        _check_sasl(self.mechanism, self.username, self.token, "username", "token")
        return self


def _check_sasl(mechanism: str, user: str, token: SecretStr, user_field: str, token_field: str) -> None:
    """The fields a SASL mechanism needs (shared by the franz and the sarama spellings)."""
    if mechanism == "AWS_MSK_IAM":
        raise ValueError(
            "mechanism AWS_MSK_IAM is not implemented by this bridge (aiokafka has no IAM signer)"
        )
    if mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512") and not user:
        raise ValueError(f"mechanism {mechanism} needs {user_field} and password")
    if mechanism == "OAUTHBEARER" and not token:
        raise ValueError(f"mechanism OAUTHBEARER needs {token_field}")


class _FranzFields(_Model):
    """Fields shared by ``kafka_franz`` and ``redpanda`` (franz-go based inputs)."""

    seed_brokers: CommaList
    topics: CommaList = ()
    regexp_topics: bool = False
    consumer_group: str = ""
    client_id: str = "benthos"
    rack_id: str = ""
    instance_id: str = ""
    rebalance_timeout: Duration = 45.0
    session_timeout: Duration = 60.0
    heartbeat_interval: Duration = 3.0
    start_from_oldest: bool = True
    start_offset: Literal["earliest", "latest", "committed"] = "earliest"
    fetch_max_bytes: ByteSize = 50 * 1024 * 1024
    fetch_min_bytes: ByteSize = 1
    fetch_max_partition_bytes: ByteSize = 1024 * 1024
    fetch_max_wait: Duration = 5.0
    transaction_isolation_level: Literal["read_uncommitted", "read_committed"] = "read_uncommitted"
    commit_period: Duration = 5.0
    multi_header: bool = False
    metadata_max_age: Duration = 300.0
    request_timeout_overhead: Duration = 10.0
    conn_idle_timeout: Duration = 20.0
    tls: TLS = TLS()
    sasl: Annotated[tuple[FranzSASL, ...], _AS_TUPLE] = ()
    auto_replay_nacks: bool = True
    topic_lag_refresh_period: Duration = 5.0


class KafkaFranzInput(_FranzFields):
    checkpoint_limit: int = Field(default=1024, ge=1)


class RedpandaInput(_FranzFields):
    regexp_topics_include: StrList = ()
    regexp_topics_exclude: StrList = ()
    partition_buffer_bytes: ByteSize = 1_000_000
    max_yield_batch_bytes: ByteSize = 32 * 1024


class SaramaSASL(_Model):
    mechanism: Literal["none", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] = "none"
    user: str = ""
    password: Secret = SecretStr("")
    access_token: Secret = SecretStr("")
    token_cache: str = ""
    token_key: str = ""

    @model_validator(mode="after")
    def _complete(self) -> SaramaSASL:
        if self.token_cache or self.token_key:
            raise ValueError(
                "token_cache and token_key need cache resources, which this bridge does not implement"
            )
        _check_sasl(self.mechanism, self.user, self.access_token, "user", "access_token")
        return self


class SaramaGroup(_Model):
    session_timeout: Duration = 10.0
    heartbeat_interval: Duration = 3.0
    rebalance_timeout: Duration = 60.0
    instance_id: str = ""


class LegacyKafkaInput(_Model):
    addresses: CommaList
    topics: CommaList
    target_version: str = ""
    tls: TLS = TLS()
    sasl: SaramaSASL = SaramaSASL()
    consumer_group: str = ""
    client_id: str = "benthos"
    rack_id: str = ""
    start_from_oldest: bool = True
    checkpoint_limit: int = Field(default=1024, ge=1)
    auto_replay_nacks: bool = True
    commit_period: Duration = 1.0
    max_processing_period: Duration = 0.1
    group: SaramaGroup = SaramaGroup()
    fetch_buffer_cap: int = 256
    multi_header: bool = False


class InputSection(_Model):
    label: str = ""
    redpanda: RedpandaInput | None = None
    kafka_franz: KafkaFranzInput | None = None
    kafka: LegacyKafkaInput | None = None
    processors: AnyList = ()

    @model_validator(mode="after")
    def _exactly_one(self) -> InputSection:
        given = [n for n in ("redpanda", "kafka_franz", "kafka") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(
                "exactly one input type is needed: redpanda, kafka_franz or kafka"
                + (f" (found {', '.join(given)})" if given else "")
            )
        if self.processors:
            raise ValueError("input processors are not implemented by this bridge")
        return self

    @property
    def kind(self) -> str:
        return "redpanda" if self.redpanda else "kafka_franz" if self.kafka_franz else "kafka"


# --------------------------------------------------------------------------- output


class MetadataFilter(_Model):
    include_prefixes: StrList = ()
    include_patterns: StrList = ()


class NatsAuth(_Model):
    nkey_file: str | None = None
    nkey: Secret | None = None
    user_credentials_file: str | None = None
    user_jwt: Secret | None = None
    user_nkey_seed: Secret | None = None
    user: str | None = None
    password: Secret | None = None
    token: Secret | None = None

    @property
    def methods(self) -> list[str]:
        """The authentication methods configured (one at most once validated)."""
        return [
            name
            for name, on in (
                ("nkey_file", self.nkey_file),
                ("nkey", self.nkey),
                ("user_credentials_file", self.user_credentials_file),
                ("user_jwt/user_nkey_seed", self.user_jwt),
                ("user/password", self.user),
                ("token", self.token),
            )
            if on
        ]

    @model_validator(mode="after")
    def _one_method(self) -> NatsAuth:
        pairs = {"user_jwt": "user_nkey_seed", "user": "password"}
        for a, b in pairs.items():
            if bool(getattr(self, a)) != bool(getattr(self, b)):
                raise ValueError(f"{a} and {b} must be given together")
        methods = self.methods
        if len(methods) > 1:
            raise ValueError(f"configure one authentication method, not {len(methods)}: {', '.join(methods)}")
        for name in ("nkey", "user_nkey_seed"):
            secret: SecretStr | None = getattr(self, name)
            value = secret.get_secret_value().strip() if secret is not None else ""
            if value and not value.startswith(("S", "P")):
                hint = ": a value starting with U is a public key" if value.startswith("U") else ""
                raise ValueError(f"{name} must be an NKey seed (S...) or private key (P...){hint}")
        return self


class JetStreamOutput(_Model):
    urls: CommaList
    subject: str
    headers: dict[str, str] = Field(default_factory=dict)
    metadata: MetadataFilter = MetadataFilter()
    max_in_flight: int = Field(default=1024, ge=1)
    max_reconnects: int | None = None
    tls: TLS = TLS()
    tls_handshake_first: bool = False
    auth: NatsAuth = NatsAuth()
    inject_tracing_map: str | None = None

    @model_validator(mode="after")
    def _urls_present(self) -> JetStreamOutput:
        if not self.urls:
            raise ValueError("urls needs at least one NATS server URL")
        methods = self.auth.methods
        if methods and any(url_credentials(url) for url in self.urls):
            raise ValueError(
                f"urls carry credentials (user:password@) and auth sets {methods[0]}: "
                "configure one authentication method"
            )
        return self


def url_credentials(url: str) -> tuple[str, str | None] | None:
    """``nats://user:pass@host`` → ``("user", "pass")``; ``nats://token@host`` → ``("token", None)``."""
    if "@" not in url:
        return None
    parts = urlsplit(url if "://" in url else f"nats://{url}")
    if parts.username is None:
        return None
    return unquote(parts.username), None if parts.password is None else unquote(parts.password)


class OutputSection(_Model):
    label: str = ""
    nats_jetstream: JetStreamOutput
    processors: AnyList = ()

    @model_validator(mode="after")
    def _no_processors(self) -> OutputSection:
        if self.processors:
            raise ValueError("output processors are not implemented by this bridge")
        return self


# --------------------------------------------------------------------------- service sections


class HttpSection(_Model):
    enabled: bool = True
    address: str = "0.0.0.0:4195"
    root_path: str = "/benthos"
    debug_endpoints: bool = False


class LoggerSection(_Model):
    level: Literal["OFF", "FATAL", "ERROR", "WARN", "INFO", "DEBUG", "TRACE", "ALL", "NONE"] = "INFO"
    format: Literal["logfmt", "json"] = "logfmt"
    add_timestamp: bool = True
    static_fields: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _upper_level(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("level"), str):
            data = {**data, "level": data["level"].upper()}
        return data


class PipelineSection(_Model):
    threads: int = -1
    processors: AnyList = ()

    @model_validator(mode="after")
    def _no_processors(self) -> PipelineSection:
        if self.processors:
            raise ValueError("pipeline processors are not implemented by this bridge; remove them")
        return self


class DeadLetter(_Model):
    subject: str


_STREAM_NAME = re.compile(r"^[^.*>\s/\\]+$")


class StreamSection(_Model):
    """``bridge.stream``: the JetStream stream the bridge writes to, created or updated by
    ``streams ensure`` (and at the start of ``run`` / ``backfill`` unless ``ensure: false``).

    ``subjects`` defaults to the static prefix of the output subject plus ``>`` (and the dead-letter
    subject's). On update only the fields written in the config are enforced; a new stream gets the
    defaults below for the others (JetStream's own defaults).
    """

    name: str
    subjects: StrList = ()
    storage: Literal["file", "memory"] = "file"
    replicas: int = Field(default=1, ge=1, le=5)
    retention: Literal["limits", "interest", "workqueue"] = "limits"
    discard: Literal["old", "new"] = "old"
    duplicate_window: Duration = 120.0
    max_age: Duration = 0.0  # 0 = unlimited
    max_bytes: ByteSize = Field(default=-1, ge=-1)
    max_msgs: int = Field(default=-1, ge=-1)
    max_msgs_per_subject: int = Field(default=-1, ge=-1)
    max_msg_size: ByteSize = Field(default=-1, ge=-1)
    compression: Literal["none", "s2"] = "none"
    allow_direct: bool = True
    description: str = ""
    ensure: bool = True  # create/update it when run or backfill starts

    @model_validator(mode="after")
    def _valid(self) -> StreamSection:
        if not _STREAM_NAME.match(self.name):
            raise ValueError(f"invalid stream name {self.name!r}: no spaces, '.', '*', '>', '/' or '\\'")
        for subject in self.subjects:
            if not subject or any(not t or t.isspace() or " " in t for t in subject.split(".")):
                raise ValueError(f"invalid subject {subject!r}")
        if self.duplicate_window <= 0:
            raise ValueError("duplicate_window must be above zero")
        if self.max_age and self.duplicate_window > self.max_age:
            raise ValueError("duplicate_window cannot be longer than max_age")
        return self


class BridgeSection(_Model):
    """Extensions beyond Redpanda Connect (documented in the README as such)."""

    # None: the record's identity, [<topic ID>:]<topic>-<partition>-<offset> (bridge.router.record_id)
    msg_id: str | None = None
    ack_timeout: Duration = 10.0
    retry_timeout: Duration = 300.0  # 0 = retry a failing partition forever
    revoke_timeout: Duration = 10.0
    workers: int = Field(default=1, ge=1)  # processes in one consumer group (bridge.workers)
    reconnect_wait: Duration = 2.0
    # nats-server's max_control_line (not in its INFO): the longest HPUB line a publish may make.
    # At least 256: below that no server accepts a client's CONNECT line anyway.
    max_control_line: ByteSize = Field(default=4096, ge=256, le=2**31 - 1)
    dead_letter: DeadLetter | None = None
    stream: StreamSection | None = None

    @model_validator(mode="after")
    def _positive(self) -> BridgeSection:
        if self.ack_timeout <= 0:
            raise ValueError("ack_timeout must be above zero")
        return self


class Config(_Model):
    input: InputSection
    output: OutputSection
    http: HttpSection = HttpSection()
    logger: LoggerSection = LoggerSection()
    pipeline: PipelineSection = PipelineSection()
    shutdown_timeout: Duration = 20.0
    shutdown_delay: Duration = 0.0
    metrics: dict[str, Any] = Field(default_factory=lambda: {"prometheus": {}})
    tracer: dict[str, Any] = Field(default_factory=lambda: {"none": {}})
    buffer: dict[str, Any] = Field(default_factory=lambda: {"none": {}})
    bridge: BridgeSection = BridgeSection()


# --------------------------------------------------------------------------- normalized views


@dataclass(frozen=True, slots=True)
class TopicPartitions:
    """An explicit ``topic:partition[-last][:offset]`` entry."""

    topic: str
    partitions: tuple[int, ...]
    offset: int | None  # None: start_offset decides


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    """The three input dialects reduced to what the source needs."""

    kind: str
    brokers: tuple[str, ...]
    topics: tuple[str, ...]  # plain topic names (or patterns when regexp)
    explicit: tuple[TopicPartitions, ...]
    regexp: bool
    regexp_exclude: tuple[str, ...]
    group: str
    client_id: str
    rack_id: str
    instance_id: str
    start_offset: Literal["earliest", "latest", "committed"]
    commit_period: float
    checkpoint_limit: int
    session_timeout: float
    heartbeat_interval: float
    rebalance_timeout: float
    fetch_max_bytes: int
    fetch_min_bytes: int
    fetch_max_partition_bytes: int
    fetch_max_wait: float
    isolation_level: Literal["read_uncommitted", "read_committed"]
    metadata_max_age: float
    request_timeout: float
    multi_header: bool
    tls: TLS
    sasl: FranzSASL | None


_TOPIC_ENTRY = re.compile(r"^(?P<topic>[^:]+)(?::(?P<first>\d+)(?:-(?P<last>\d+))?(?::(?P<offset>-?\d+))?)?$")


def parse_topics(
    entries: tuple[str, ...], allow_offsets: bool = True
) -> tuple[tuple[str, ...], tuple[TopicPartitions, ...]]:
    """Split topic entries into plain topics and explicit partition specs (``orders:1:100``, ``a:0-3``)."""
    plain: list[str] = []
    explicit: list[TopicPartitions] = []
    for entry in entries:
        match = _TOPIC_ENTRY.match(entry)
        if not match:
            raise ValueError(
                f"invalid topic entry {entry!r} (use topic, topic:partition, topic:a-b or topic:p:offset)"
            )
        if match.group("first") is None:
            plain.append(match.group("topic"))
            continue
        first = int(match.group("first"))
        last = int(match.group("last")) if match.group("last") else first
        if last < first:
            raise ValueError(f"invalid partition range in {entry!r}: {first} > {last}")
        offset = match.group("offset")
        if offset is not None and not allow_offsets:
            raise ValueError(f"explicit offsets are not supported by this input: {entry!r}")
        explicit.append(
            TopicPartitions(
                match.group("topic"), tuple(range(first, last + 1)), None if offset is None else int(offset)
            )
        )
    return tuple(plain), tuple(explicit)


def kafka_settings(section: InputSection) -> KafkaSettings:
    """Normalize ``redpanda`` / ``kafka_franz`` / ``kafka`` into ``KafkaSettings``. Raises ValueError."""
    if section.kafka is not None:
        k = section.kafka
        topics, explicit = parse_topics(k.topics, allow_offsets=False)
        start: Literal["earliest", "latest", "committed"] = "earliest" if k.start_from_oldest else "latest"
        sasl = None
        if k.sasl.mechanism != "none":
            sasl = FranzSASL(
                mechanism=k.sasl.mechanism,
                username=k.sasl.user,
                password=k.sasl.password,
                token=k.sasl.access_token,
            )
        settings = KafkaSettings(
            kind="kafka", brokers=k.addresses, topics=topics, explicit=explicit, regexp=False,
            regexp_exclude=(),
            group=k.consumer_group, client_id=k.client_id, rack_id=k.rack_id, instance_id=k.group.instance_id,
            start_offset=start, commit_period=k.commit_period, checkpoint_limit=k.checkpoint_limit,
            session_timeout=k.group.session_timeout, heartbeat_interval=k.group.heartbeat_interval,
            rebalance_timeout=k.group.rebalance_timeout, fetch_max_bytes=50 * 1024 * 1024, fetch_min_bytes=1,
            fetch_max_partition_bytes=1024 * 1024, fetch_max_wait=0.5, isolation_level="read_uncommitted",
            metadata_max_age=300.0, request_timeout=30.0, multi_header=k.multi_header, tls=k.tls, sasl=sasl,
        )  # fmt: skip
    else:
        f: _FranzFields = section.redpanda or section.kafka_franz  # type: ignore[assignment]
        topics, explicit = parse_topics(f.topics)
        include: StrList = ()
        exclude: StrList = ()
        if isinstance(f, RedpandaInput):
            include, exclude = f.regexp_topics_include, f.regexp_topics_exclude
        regexp = f.regexp_topics or bool(include)
        if include:
            topics = topics + include
        start = f.start_offset
        if not f.start_from_oldest and "start_offset" not in f.model_fields_set:
            start = "latest"
        if not f.start_from_oldest and start == "earliest":
            raise ValueError("start_from_oldest cannot be set to false when start_offset is set to earliest")
        settings = KafkaSettings(
            kind=section.kind, brokers=f.seed_brokers, topics=topics, explicit=explicit, regexp=regexp,
            regexp_exclude=exclude, group=f.consumer_group, client_id=f.client_id, rack_id=f.rack_id,
            instance_id=f.instance_id, start_offset=start, commit_period=f.commit_period,
            checkpoint_limit=f.checkpoint_limit if isinstance(f, KafkaFranzInput) else 1024,
            session_timeout=f.session_timeout, heartbeat_interval=f.heartbeat_interval,
            rebalance_timeout=f.rebalance_timeout, fetch_max_bytes=f.fetch_max_bytes,
            fetch_min_bytes=f.fetch_min_bytes, fetch_max_partition_bytes=f.fetch_max_partition_bytes,
            fetch_max_wait=f.fetch_max_wait, isolation_level=f.transaction_isolation_level,
            metadata_max_age=f.metadata_max_age, request_timeout=f.request_timeout_overhead + 20.0,
            multi_header=f.multi_header, tls=f.tls, sasl=f.sasl[0] if f.sasl else None,
        )  # fmt: skip
        if len(f.sasl) > 1:
            raise ValueError("only one sasl mechanism can be used by this bridge")
    if not settings.brokers:
        raise ValueError("at least one broker address is needed")
    if not settings.topics and not settings.explicit:
        raise ValueError("at least one topic is needed")
    if settings.explicit:
        if settings.group:
            raise ValueError(
                "this input does not support both a consumer group and explicit topic partitions"
            )
        if settings.regexp:
            raise ValueError(
                "this input does not support both regular expression topics and explicit topic partitions"
            )
        if settings.topics:
            raise ValueError("mix of explicit partitions and plain topics: give partitions for every topic")
    elif not settings.group:
        raise ValueError("a consumer group is mandatory when not using explicit topic partitions")
    return settings


# --------------------------------------------------------------------------- compiled templates


@dataclass(frozen=True, slots=True)
class Templates:
    subject: Template
    headers: tuple[tuple[str, Template], ...]
    msg_id: Template | None  # None: the built-in record identity when record_id, else no Nats-Msg-Id
    dead_letter_subject: Template | None
    tracing: TracingMap | None = None  # inject_tracing_map, recognized (bridge.tracing)
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

_ENV_REF = re.compile(r"\$\{(?![!{])([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}")


def substitute_env(text: str, environ: Mapping[str, str]) -> tuple[str, list[Problem]]:
    """Replace ``${VAR}`` and ``${VAR:default}``; leave ``${! ... }`` alone. An unset variable without a
    default is a problem (named, with its line). A set but empty variable uses the default when one is
    given, as Redpanda Connect does."""
    problems: list[Problem] = []

    def repl(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = environ.get(name)
        # Newlines are escaped, as Redpanda Connect does: a value can neither add YAML keys nor move lines.
        if value:
            return value.replace("\n", "\\n")
        if default is not None:
            return default.replace("\n", "\\n")
        if value is not None:
            return value
        line = text.count("\n", 0, match.start()) + 1
        problems.append(
            Problem(
                "", line, f"environment variable {name} is not set and has no default (${{{name}:default}})"
            )
        )
        return ""

    return _ENV_REF.sub(repl, text), problems


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
            if key not in (*_KNOWN_INPUTS, "label", "processors"):
                supported = ", ".join(_KNOWN_INPUTS)
                message = f"input type {key!r} is not implemented by this bridge (supported: {supported})"
                problems.append(Problem(f"input.{key}", _line_for(lines, ("input", key)), message))
    for name, allowed in _SERVICE_COMPONENTS.items():
        section = data.get(name)
        if isinstance(section, dict):
            for kind in section:
                if kind not in allowed:
                    problems.append(
                        Problem(f"{name}.{kind}", _line_for(lines, (name, kind)),
                                f"{name} type {kind!r} is not implemented by this bridge")
                    )  # fmt: skip
    section = data.get("output")
    if isinstance(section, dict):
        for key in section:
            if key not in ("nats_jetstream", "label", "processors"):
                message = f"output type {key!r} is not implemented by this bridge (supported: nats_jetstream)"
                problems.append(Problem(f"output.{key}", _line_for(lines, ("output", key)), message))
    return problems


# --------------------------------------------------------------------------- secrets

_ANY_INDEX, _ANY_KEY = "[*]", "{*}"  # in a secret's path: any sequence item, any mapping key


def _secret_fields(tp: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The paths of every ``SecretStr`` under the model type ``tp``, read from the models themselves."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        yield from _secret_fields(args[0], prefix)
    elif tp is SecretStr:
        yield prefix
    elif isinstance(tp, type) and issubclass(tp, BaseModel):
        for name, field in tp.model_fields.items():
            yield from _secret_fields(field.annotation, (*prefix, name))
    elif origin in (Union, types.UnionType):
        for arg in args:
            yield from _secret_fields(arg, prefix)
    elif origin in (tuple, list):
        yield from _secret_fields(args[0], (*prefix, _ANY_INDEX))
    elif origin is dict:
        yield from _secret_fields(args[1], (*prefix, _ANY_KEY))


@cache
def secret_paths() -> tuple[tuple[str, ...], ...]:
    """Every secret field of a config, ``[*]`` / ``{*}`` standing for any item / key."""
    return tuple(_secret_fields(Config))


def _matches(part: str | int, pattern: str) -> bool:
    if pattern == _ANY_INDEX:
        return isinstance(part, int)
    return pattern == _ANY_KEY or part == pattern


def is_secret(loc: tuple[str | int, ...]) -> bool:
    """Whether a value at ``loc`` is a secret, or holds only secrets (``sasl[0].extensions``)."""
    for pattern in secret_paths():
        n = min(len(loc), len(pattern))
        if not all(_matches(loc[i], pattern[i]) for i in range(n)):
            continue
        if len(loc) >= len(pattern) or all(p in (_ANY_INDEX, _ANY_KEY) for p in pattern[len(loc) :]):
            return True
    return False


def _secret_text_as_written(data: Any, raw: Mapping[tuple[str | int, ...], str]) -> None:
    """Replace each secret that YAML read as a number, boolean or date by the text written there."""
    for pattern in secret_paths():
        stack: list[tuple[Any, tuple[str | int, ...], int]] = [(data, (), 0)]
        while stack:
            node, path, depth = stack.pop()
            step = pattern[depth]
            if isinstance(node, dict):
                items = [(k, v) for k, v in node.items() if _matches(str(k), step) or step == _ANY_KEY]
            elif isinstance(node, list) and step == _ANY_INDEX:
                items = list(enumerate(node))
            else:
                continue
            for key, value in items:
                sub = (*path, key if isinstance(key, int) and isinstance(node, list) else str(key))
                if depth + 1 < len(pattern):
                    stack.append((value, sub, depth + 1))
                elif not isinstance(value, str) and sub in raw:
                    node[key] = raw[sub]


def _pydantic_problems(exc: ValidationError, lines: Mapping[tuple[str | int, ...], int]) -> list[Problem]:
    problems: list[Problem] = []
    for err in exc.errors(include_url=False):
        loc = tuple(
            part for part in err["loc"] if not (isinstance(part, str) and part.startswith("function-"))
        )
        kind = err["type"]
        if kind == "extra_forbidden":
            message = "unknown field"
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
                message += f" (got {err['input']!r})"
        problems.append(Problem(_dotted(loc), _line_for(lines, loc), message))
    return problems


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


def parse(text: str, source: str = "<config>", environ: Mapping[str, str] | None = None) -> Loaded:
    """Validate a config text; raise ``ConfigError`` listing every problem found."""
    text, problems = substitute_env(text, os.environ if environ is None else environ)
    try:
        doc = parse_document(text, source)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        # never str(exc): PyYAML's message quotes the offending line, which may hold a secret
        reason = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError([*problems, Problem("", line, f"invalid YAML: {reason}")], source) from exc
    except ConfigError as exc:  # a limit of the document (values, depth, recursive alias)
        raise ConfigError([*problems, *exc.problems], source) from exc
    lines, data = doc.lines, doc.data
    problems += doc.problems
    if data is None:
        data = {}
    component = _component_problems(data, lines)
    problems += component
    if problems and any(p.message.startswith("the config must be") for p in problems):
        raise ConfigError(problems, source)
    cleaned = {k: v for k, v in data.items() if k not in _TOP_LEVEL_UNSUPPORTED}
    _secret_text_as_written(cleaned, doc.raw)
    try:
        config = Config.model_validate(cleaned)
    except ValidationError as exc:
        problems += _skip_known_component_errors(_pydantic_problems(exc, lines), component)
        raise ConfigError(problems, source) from exc
    if problems:
        raise ConfigError(problems, source)

    try:
        kafka = kafka_settings(config.input)
    except ValueError as exc:
        kind = config.input.kind
        problems.append(Problem(f"input.{kind}", _line_for(lines, ("input", kind)), str(exc)))

    out = config.output.nats_jetstream
    base = ("output", "nats_jetstream")
    subject = _compile(out.subject, (*base, "subject"), lines, problems)
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
        dead = _compile(
            config.bridge.dead_letter.subject, ("bridge", "dead_letter", "subject"), lines, problems
        )
    problems += _credential_file_problems(config, lines)
    if problems:
        raise ConfigError(problems, source)
    assert subject is not None
    templates = Templates(
        subject=subject,
        headers=tuple(headers),
        msg_id=msg_id,
        dead_letter_subject=dead,
        tracing=tracing,
        record_id=config.bridge.msg_id is None,
    )
    return Loaded(
        config=config, kafka=kafka, templates=templates, source=source, lines=lines,
        warnings=tuple(_warnings(config, kafka, lines)),
    )  # fmt: skip


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
                    _dotted(path), _line_for(lines, path),
                    f"duplicate_window ({stream.duplicate_window:g}s) is shorter than commit_period plus "
                    f"shutdown_timeout ({needed:g}s): records re-sent after a crash may be stored twice",
                )
            )  # fmt: skip
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
    section: _FranzFields | LegacyKafkaInput = getattr(config.input, kind)
    yield from _tls_files(section.tls, ("input", kind, "tls"))


def _credential_file_problems(config: Config, lines: Mapping[tuple[str | int, ...], int]) -> list[Problem]:
    """Each credential file must be a readable regular file within its size limit (``bridge.localfiles``).
    Their contents are checked when they are used (``bridge.natsopts``)."""
    problems: list[Problem] = []
    for path, name in credential_files(config):
        try:
            localfiles.read_credential(name)
        except localfiles.FileRefused as exc:
            problems.append(
                Problem(_dotted(path), _line_for(lines, path), f"cannot read {name!r}: {exc.reason}")
            )
    return problems


def load(path: str | Path, environ: Mapping[str, str] | None = None) -> Loaded:
    """Read (``bridge.localfiles.read_config``: at most 1 MiB) and validate a config file."""
    p = Path(path)
    try:
        raw = localfiles.read_config(p)
    except localfiles.FileRefused as exc:
        raise ConfigError([Problem("", 0, f"cannot read config file: {exc.reason}")], str(p)) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError([Problem("", line, "the file is not valid UTF-8")], str(p)) from exc
    return parse(text, source=str(p), environ=environ)


__all__ = [
    "Config",
    "KafkaSettings",
    "Loaded",
    "TopicPartitions",
    "load",
    "parse",
    "parse_duration",
    "parse_size",
    "substitute_env",
]
