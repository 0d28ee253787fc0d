"""The strict, frozen models of every config section this bridge implements (pydantic v2).

Owns the field names, types, defaults and cross-field rules of ``input`` (``redpanda``, ``kafka_franz``,
the legacy ``kafka``), ``output.nats_jetstream``, ``http``, ``logger``, ``pipeline``, the top level
(``shutdown_timeout``, ...) and the ``bridge:`` extension. Unknown fields are refused (``extra="forbid"``),
types are strict, secrets are ``SecretStr``. What a model cannot say alone (the Kafka dialects reduced to
one view, templates, files) is ``bridge.core.config.kafka`` and ``bridge.core.config.loader``. Pure module.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from bridge.core.config.units import AnyList, ByteSize, CommaList, Duration, Secret, StrList, as_tuple

# What a processors section is refused with (input, output and pipeline).
PROCESSORS_ADVICE = (
    "records are copied as they are (key, value, headers); remove them, and transform before Kafka or "
    "after JetStream (for example with a Redpanda Connect pipeline reading the stream), or shape the "
    "subject, headers and Nats-Msg-Id with ${! ... } interpolations"
)
# What a batching policy that batches something is refused with (hints.UNSUPPORTED says it too).
BATCHING_ADVICE = (
    "batching is not implemented by this bridge: it publishes every record as it is fetched and keeps "
    "up to max_in_flight publishes unacknowledged (that is its batching); remove batching and raise "
    "max_in_flight for more throughput"
)
MAX_WORKERS = 64  # bridge.workers and --workers: processes of about 85 MB each on one machine


def workers_limit(value: int) -> str:
    """Why ``value`` workers is refused (``bridge.workers`` and ``--workers``)."""
    return (
        f"must be at most {MAX_WORKERS}, not {value}: workers are processes on this machine (about 85 MB "
        "each), one per core is enough; past one machine, run replicas in one consumer group"
    )


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
    ``ssl.SSLContext`` by ``bridge.core.tls.ssl_context``. Ignored unless ``enabled``, as there."""

    enabled: bool = False
    skip_cert_verify: bool = False
    enable_renegotiation: bool = False
    root_cas: str = ""
    root_cas_file: str = ""
    client_certs: Annotated[tuple[ClientCert, ...], as_tuple] = ()

    @model_validator(mode="after")
    def _one_client_cert(self) -> TLS:
        if len(self.client_certs) > 1:
            raise ValueError(
                "client_certs: this bridge presents one client certificate (Python's ssl holds one "
                f"certificate chain per connection), not {len(self.client_certs)}"
            )
        return self


class BatchPolicy(_Model):
    """Redpanda Connect's ``batching`` block. Only a policy that batches nothing is accepted (the
    skeleton ``rpk connect create`` writes: count 0, byte_size 0, period "", check "", no processors)."""

    count: int = 0
    byte_size: ByteSize = 0
    period: Duration = 0.0
    jitter: float = 0.0
    check: str = ""
    processors: AnyList = ()

    @model_validator(mode="after")
    def _batches_nothing(self) -> BatchPolicy:
        if self.count > 1 or self.byte_size or self.period or self.jitter or self.check or self.processors:
            raise ValueError(BATCHING_ADVICE)
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


class TcpKeepAlive(_Model):
    idle: Duration = 15.0
    interval: Duration = 15.0
    count: int = 9


class TcpOptions(_Model):
    """The ``tcp`` block of Redpanda Connect's franz inputs (its defaults here): accepted, inert."""

    connect_timeout: Duration = 0.0
    keep_alive: TcpKeepAlive = TcpKeepAlive()
    tcp_user_timeout: Duration = 0.0


class FranzFields(_Model):
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
    sasl: Annotated[tuple[FranzSASL, ...], as_tuple] = ()
    auto_replay_nacks: bool = True
    topic_lag_refresh_period: Duration = 5.0
    regexp_topics_include: StrList = ()
    regexp_topics_exclude: StrList = ()
    # accepted so that a Redpanda Connect file runs unchanged; they change nothing here (lint warns)
    partition_buffer_bytes: ByteSize = 1_000_000
    max_yield_batch_bytes: ByteSize = 32 * 1024
    timely_nacks_maximum_wait: Duration = 0.0
    tcp: TcpOptions = TcpOptions()
    batching: BatchPolicy | None = None


class KafkaFranzInput(FranzFields):
    checkpoint_limit: int = Field(default=1024, ge=1)


class RedpandaInput(FranzFields):
    pass


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
    instance_id: str = ""  # the same as group.instance_id (static membership)
    # accepted so that a Redpanda Connect file runs unchanged; they change nothing here (lint warns)
    timely_nacks_maximum_wait: Duration = 0.0
    extract_tracing_map: str = ""
    batching: BatchPolicy | None = None

    @model_validator(mode="after")
    def _one_instance_id(self) -> LegacyKafkaInput:
        if self.instance_id and self.group.instance_id and self.instance_id != self.group.instance_id:
            raise ValueError("instance_id and group.instance_id differ: give one of them")
        return self


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
            raise ValueError(f"input processors are not implemented by this bridge: {PROCESSORS_ADVICE}")
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
    batching: BatchPolicy | None = None

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
            raise ValueError(f"output processors are not implemented by this bridge: {PROCESSORS_ADVICE}")
        return self


# --------------------------------------------------------------------------- service sections


class HttpCors(_Model):
    enabled: bool = False  # lint warns when enabled: no CORS headers are sent
    allowed_origins: StrList = ()


class HttpBasicAuth(_Model):
    enabled: bool = False
    realm: str = "restricted"
    username: str = ""
    password_hash: Secret = SecretStr("")
    algorithm: str = "sha256"
    salt: Secret = SecretStr("")

    @model_validator(mode="after")
    def _not_enabled(self) -> HttpBasicAuth:
        if self.enabled:
            raise ValueError(
                "basic_auth is not implemented by this bridge: /ping, /ready and /metrics would be served "
                "without authentication; remove it (or set enabled: false) and restrict who can reach "
                "http.address instead (a network policy, a firewall, or a proxy that authenticates)"
            )
        return self


class HttpSection(_Model):
    enabled: bool = True
    address: str = "0.0.0.0:4195"
    root_path: str = "/benthos"
    debug_endpoints: bool = False
    cert_file: str = ""
    key_file: str = ""
    cors: HttpCors = HttpCors()
    basic_auth: HttpBasicAuth = HttpBasicAuth()

    @field_validator("cert_file", "key_file")
    @classmethod
    def _no_tls(cls, value: str) -> str:
        if value:
            raise ValueError(
                "TLS on the http server is not implemented by this bridge: /ping, /ready and /metrics would "
                'be served without TLS; leave cert_file and key_file "" and terminate TLS in front of it '
                "(an ingress or a sidecar)"
            )
        return value


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
            raise ValueError(f"pipeline processors are not implemented by this bridge: {PROCESSORS_ADVICE}")
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

    # None: the record's identity, [<topic ID>:]<topic>-<partition>-<offset> (bridge.core.routing.record_id)
    msg_id: str | None = None
    ack_timeout: Duration = 10.0
    retry_timeout: Duration = 300.0  # 0 = retry a failing partition forever
    revoke_timeout: Duration = 10.0
    workers: int = Field(default=1, ge=1)  # processes in one consumer group (bridge.run.workers)
    reconnect_wait: Duration = 2.0
    # nats-server's max_control_line (not in its INFO): the longest HPUB line a publish may make.
    # At least 256: below that no server accepts a client's CONNECT line anyway.
    max_control_line: ByteSize = Field(default=4096, ge=256, le=2**31 - 1)
    dead_letter: DeadLetter | None = None
    stream: StreamSection | None = None

    @field_validator("workers")
    @classmethod
    def _workers(cls, value: int) -> int:
        if value > MAX_WORKERS:
            raise ValueError(workers_limit(value))
        return value

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
