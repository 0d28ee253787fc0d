"""The config: ``load(path)`` / ``parse(text)`` → a ``Loaded`` (models, the Kafka view, compiled templates).

The package, by concept: ``units`` (durations, sizes, lists, secrets as scalar types), ``models`` (the
sections), ``kafka`` (the input dialects → ``KafkaSettings``), ``secrets`` (which fields are secret),
``envsubst`` (``${VAR}`` values put into the YAML as the text they are, within the size limit),
``yamldoc`` (the YAML document within limits, with lines), ``overrides`` (``--set path=value``),
``rules`` (what can never work: subjects, NATS URLs), ``hints`` ("did you mean", inert fields, what to
do instead) and ``loader`` (the loading path, every problem with its path and line, sorted by line).
What other layers import is re-exported here. Pure package.
"""

from bridge.core.config.kafka import KafkaSettings, TopicPartitions, kafka_settings, parse_topics
from bridge.core.config.loader import Loaded, Templates, credential_files, load, parse, substitute_env
from bridge.core.config.models import (
    MAX_WORKERS,
    TLS,
    BridgeSection,
    ClientCert,
    Config,
    DeadLetter,
    FranzSASL,
    HttpSection,
    InputSection,
    JetStreamOutput,
    LoggerSection,
    MetadataFilter,
    NatsAuth,
    OutputSection,
    StreamSection,
    url_credentials,
    workers_limit,
)
from bridge.core.config.secrets import is_secret, secret_paths
from bridge.core.config.units import parse_duration, parse_size

__all__ = [
    "MAX_WORKERS",
    "TLS",
    "BridgeSection",
    "ClientCert",
    "Config",
    "DeadLetter",
    "FranzSASL",
    "HttpSection",
    "InputSection",
    "JetStreamOutput",
    "KafkaSettings",
    "Loaded",
    "LoggerSection",
    "MetadataFilter",
    "NatsAuth",
    "OutputSection",
    "StreamSection",
    "Templates",
    "TopicPartitions",
    "credential_files",
    "is_secret",
    "kafka_settings",
    "load",
    "parse",
    "parse_duration",
    "parse_size",
    "parse_topics",
    "secret_paths",
    "substitute_env",
    "url_credentials",
    "workers_limit",
]
