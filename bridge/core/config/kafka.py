"""The three Kafka input dialects reduced to one view, ``KafkaSettings``, and ``topic:partition`` entries.

Owns what ``redpanda``, ``kafka_franz`` and the legacy ``kafka`` (sarama) input mean for the source:
brokers, topics (plain, regular expressions, or explicit ``topic:partition[-last][:offset]``), group,
start offset (``start_offset`` / ``start_from_oldest``), timeouts and fetch sizes with each dialect's
defaults, TLS and SASL — and the rules across fields Redpanda Connect enforces (a group or explicit
partitions, not both; ...), raised as ``ValueError`` for the loader to report. Pure module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from bridge.core.config.models import (
    TLS,
    FranzFields,
    FranzSASL,
    InputSection,
    KafkaFranzInput,
)
from bridge.core.config.units import StrList


@dataclass(frozen=True, slots=True)
class TopicPartitions:
    """An explicit ``topic:partition[-last][:offset]`` entry."""

    topic: str
    partitions: tuple[int, ...]
    offset: int | None  # None: start_offset decides; OFFSET_END (-1) the end, OFFSET_START (-2) the start


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
MAX_PARTITION = 2**31 - 1  # Kafka's partition numbers are int32
MAX_OFFSET = 2**63 - 1  # and offsets int64
MAX_EXPLICIT_PARTITIONS = 65_536  # partitions all explicit entries may name together
OFFSET_END, OFFSET_START = -1, -2  # franz-go's Offset.At(-1) / At(-2), which kafka_franz passes them to
_OFFSETS_ACCEPTED = "an offset from 0, -1 (the end of the partition) or -2 (its start), as kafka_franz"


def parse_topics(
    entries: tuple[str, ...], allow_offsets: bool = True
) -> tuple[tuple[str, ...], tuple[TopicPartitions, ...]]:
    """Split topic entries into plain topics and explicit partition specs (``orders:1:100``, ``a:0-3``).

    Offsets as Redpanda Connect's kafka_franz takes them (``topic:partition:offset`` parsed as an int64
    and handed to franz-go's ``Offset.At``): from 0, or -1 for the end and -2 for the start. Any other
    negative offset could not be sought to and is refused here, not at run time."""
    plain: list[str] = []
    explicit: list[TopicPartitions] = []
    named = 0
    seen: set[tuple[str, int | None]] = set()
    for entry in entries:
        match = _TOPIC_ENTRY.match(entry)
        shown = entry if len(entry) <= 80 else entry[:80] + "…"
        if not match:
            raise ValueError(
                f"invalid topic entry {shown!r} (use topic, topic:partition, topic:a-b or topic:p:offset)"
            )
        if match.group("first") is None:
            if (match.group("topic"), None) in seen:
                raise ValueError(f"topic {shown!r} is named twice in topics: name each topic once")
            seen.add((match.group("topic"), None))
            plain.append(match.group("topic"))
            continue
        first = int(match.group("first"))
        last = int(match.group("last")) if match.group("last") else first
        if last < first:
            raise ValueError(f"invalid partition range in {shown!r}: {first} > {last}")
        if last > MAX_PARTITION:
            raise ValueError(f"invalid partition in {shown!r}: partitions go up to {MAX_PARTITION:,}")
        named += last - first + 1
        if named > MAX_EXPLICIT_PARTITIONS:
            raise ValueError(
                f"the topic entries name more than {MAX_EXPLICIT_PARTITIONS:,} partitions (at {shown!r}): "
                "name the topic without partitions to consume all of them"
            )
        offset = match.group("offset")
        if offset is not None and not allow_offsets:
            raise ValueError(f"explicit offsets are not supported by this input: {shown!r}")
        value = None if offset is None else int(offset)
        if value is not None and (value < OFFSET_START or value > MAX_OFFSET):
            raise ValueError(f"offset {offset} in {shown!r} cannot be sought to: use {_OFFSETS_ACCEPTED}")
        for p in range(first, last + 1):
            if (match.group("topic"), p) in seen:
                raise ValueError(
                    f"partition {match.group('topic')[:80]}:{p} is named twice in topics: name each once"
                )
            seen.add((match.group("topic"), p))
        explicit.append(TopicPartitions(match.group("topic"), tuple(range(first, last + 1)), value))
    return tuple(plain), tuple(explicit)


def _patterns(topics: tuple[str, ...], exclude: StrList) -> tuple[str, ...]:
    """The topic patterns with ``regexp_topics_exclude`` folded into each one, so that whoever matches
    topics against them (a subscription by pattern, a backfill's share, verify) leaves the excluded
    topics out: an exclusion matches anywhere in the name (Go's ``MatchString``), which
    ``(?!.*(?:x))`` at the start of a pattern says. Raises ValueError for an invalid expression."""
    for which, patterns in (("topic", topics), ("regexp_topics_exclude", exclude)):
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid {which} regular expression {pattern[:80]!r}: {exc}") from None
    if not exclude:
        return topics
    unless = "(?!.*(?:" + "|".join(f"(?:{x})" for x in exclude) + "))"
    return tuple(f"{unless}(?:{t})" for t in topics)


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
            kind="kafka",
            brokers=k.addresses,
            topics=topics,
            explicit=explicit,
            regexp=False,
            regexp_exclude=(),
            group=k.consumer_group,
            client_id=k.client_id,
            rack_id=k.rack_id,
            instance_id=k.group.instance_id or k.instance_id,
            start_offset=start,
            commit_period=k.commit_period,
            checkpoint_limit=k.checkpoint_limit,
            session_timeout=k.group.session_timeout,
            heartbeat_interval=k.group.heartbeat_interval,
            rebalance_timeout=k.group.rebalance_timeout,
            fetch_max_bytes=50 * 1024 * 1024,
            fetch_min_bytes=1,
            fetch_max_partition_bytes=1024 * 1024,
            fetch_max_wait=0.5,
            isolation_level="read_uncommitted",
            metadata_max_age=300.0,
            request_timeout=30.0,
            multi_header=k.multi_header,
            tls=k.tls,
            sasl=sasl,
        )
    else:
        f: FranzFields | None = section.redpanda or section.kafka_franz
        assert f is not None  # InputSection validated: exactly one input type
        topics, explicit = parse_topics(f.topics)
        include, exclude = f.regexp_topics_include, f.regexp_topics_exclude
        regexp = f.regexp_topics or bool(include)
        if include:
            topics = topics + include
        if exclude and not regexp:
            raise ValueError(
                "regexp_topics_exclude needs topic patterns: regexp_topics_include, or topics with "
                "regexp_topics: true"
            )
        if regexp:
            topics = _patterns(topics, exclude)
        start = f.start_offset
        if not f.start_from_oldest and "start_offset" not in f.model_fields_set:
            start = "latest"
        if not f.start_from_oldest and start == "earliest":
            raise ValueError("start_from_oldest cannot be set to false when start_offset is set to earliest")
        settings = KafkaSettings(
            kind=section.kind,
            brokers=f.seed_brokers,
            topics=topics,
            explicit=explicit,
            regexp=regexp,
            regexp_exclude=exclude,
            group=f.consumer_group,
            client_id=f.client_id,
            rack_id=f.rack_id,
            instance_id=f.instance_id,
            start_offset=start,
            commit_period=f.commit_period,
            checkpoint_limit=f.checkpoint_limit if isinstance(f, KafkaFranzInput) else 1024,
            session_timeout=f.session_timeout,
            heartbeat_interval=f.heartbeat_interval,
            rebalance_timeout=f.rebalance_timeout,
            fetch_max_bytes=f.fetch_max_bytes,
            fetch_min_bytes=f.fetch_min_bytes,
            fetch_max_partition_bytes=f.fetch_max_partition_bytes,
            fetch_max_wait=f.fetch_max_wait,
            isolation_level=f.transaction_isolation_level,
            metadata_max_age=f.metadata_max_age,
            request_timeout=f.request_timeout_overhead + 20.0,
            multi_header=f.multi_header,
            tls=f.tls,
            sasl=f.sasl[0] if f.sasl else None,
        )
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
