"""bridge.kafka.errors: the error translation that needs no broker: undecodable record batches and listener
mismatches.

The codec error is produced by aiokafka itself: a real v2 record batch whose attributes name codec 5
(none exists) decoded through aiokafka's own fetcher generator (``PartitionRecords``), the path
``getmany`` takes, so the test also guards the traceback locals ``undecodable_batch`` reads.
"""

from __future__ import annotations

import struct

import pytest
from aiokafka import TopicPartition
from aiokafka.consumer.fetcher import PartitionRecords
from aiokafka.errors import (
    IllegalSaslStateError,
    KafkaConnectionError,
    UnsupportedCodecError,
    UnsupportedSaslMechanismError,
)
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords

from bridge.core.errors import AuthError, ExitCode, UndecodableBatch
from bridge.kafka.errors import listener_mismatch, undecodable_batch

BROKERS = "k1:9092,k2:9092"


def batch_with_codec(codec: int, base_offset: int) -> bytes:
    """A one-record v2 batch, then its attributes' codec bits set to ``codec`` (the CRC is not fixed:
    the fetcher below does not check it, as the consumer's ``check_crcs`` may not)."""
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=0, is_transactional=False, producer_id=-1, producer_epoch=-1,
        base_sequence=-1, batch_size=1 << 20,
    )  # fmt: skip
    builder.append(0, timestamp=None, key=b"k", value=b"v", headers=[])
    raw = bytearray(builder.build())
    struct.pack_into(">q", raw, 0, base_offset)
    attributes = struct.unpack_from(">h", raw, 21)[0]  # after offset, length, leader epoch, magic, crc
    struct.pack_into(">h", raw, 21, (attributes & ~0x07) | codec)
    return bytes(raw)


def decode_error(codec: int, tp: TopicPartition, base_offset: int) -> UnsupportedCodecError:
    records = PartitionRecords(tp, MemoryRecords(batch_with_codec(codec, base_offset)), [], base_offset,
                               None, None, False, 0)  # fmt: skip
    with pytest.raises(UnsupportedCodecError) as info:
        list(records)
    return info.value


def test_unknown_codec_names_the_codec_the_partition_and_the_offset() -> None:
    exc = decode_error(5, TopicPartition("orders", 3), 40)
    error = undecodable_batch(exc, BROKERS)
    assert isinstance(error, UndecodableBatch)
    assert str(error) == (
        "Kafka (k1:9092,k2:9092): record batch of orders/3 at offset 40 compressed with an unknown codec "
        "(0x05), which this install cannot decode"
    )
    assert error.exit_code == ExitCode.FAILED  # not "unreachable" (3): the broker answered
    assert not error.retriable
    assert "unreachable" not in str(error)


def test_codec_without_its_library_names_the_codec_and_the_fix() -> None:
    """What aiokafka raises when cramjam is missing (this install has it, so the message is built here)."""
    error = undecodable_batch(
        UnsupportedCodecError("Libraries for snappy compression codec not found"), BROKERS
    )
    assert str(error) == (
        "Kafka (k1:9092,k2:9092): record batch of a fetched partition compressed with snappy, which this "
        "install cannot decode (aiokafka decodes snappy, lz4 and zstd with cramjam: "
        "pip install 'aiokafka[snappy,lz4,zstd]')"
    )


def test_every_codec_kafka_defines_is_decodable_here() -> None:
    """gzip, snappy, lz4, zstd: the production install carries what aiokafka needs for each."""
    from aiokafka import codec

    assert (codec.has_gzip(), codec.has_snappy(), codec.has_lz4(), codec.has_zstd()) == (True,) * 4


SERVER = "Kafka (k:9092)"


@pytest.mark.parametrize(
    ("cause", "step", "tls", "sasl", "refused"),
    [
        (IllegalSaslStateError(), "connect", False, "PLAIN", "refused SASL: the listener does not speak SASL"),
        (UnsupportedSaslMechanismError(), "connect", False, "SCRAM-SHA-256",
         "refused SASL: the listener does not offer the SASL mechanism SCRAM-SHA-256"),
        (ConnectionResetError(), "connect", True, None, "refused TLS: the listener reset the connection during the TLS handshake"),
        (KafkaConnectionError("Connection at k:9092 closed"), "connect", False, None,
         "as a TLS listener does to a client without TLS"),
        (KafkaConnectionError("Connection at k:9092 closed"), "connect", True, None,
         "as a listener that requires a client certificate does"),
        (KafkaConnectionError("Connection at k:9092 closed"), "metadata", False, None,
         "as a SASL listener does to a client without SASL"),
    ],
)  # fmt: skip
def test_listener_mismatches(
    cause: BaseException, step: str, tls: bool, sasl: str | None, refused: str
) -> None:
    error = listener_mismatch(cause, step, SERVER, tls=tls, sasl=sasl)
    assert isinstance(error, AuthError)
    assert str(error).startswith(f"{SERVER} refused"), str(error)
    assert refused in str(error)
    assert error.exit_code == ExitCode.UNAVAILABLE


@pytest.mark.parametrize(
    ("cause", "step", "tls", "sasl"),
    [
        # a mechanism list in the message: the broker speaks SASL, just not this mechanism (AuthError as before)
        (UnsupportedSaslMechanismError("Kafka broker does not support X sasl mechanism. Enabled mechanisms are: []"),
         "connect", False, "X"),
        (KafkaConnectionError("Connection at k:9092 closed"), "metadata", False, "PLAIN"),  # SASL configured
        (ConnectionResetError(), "connect", False, None),  # no TLS: a reset is just a reset
        (ConnectionRefusedError(), "connect", True, None),  # nothing listens: unreachable
        (TimeoutError(), "connect", True, None),  # a silent listener or a dropped SYN: cannot tell
    ],
)  # fmt: skip
def test_not_a_listener_mismatch(cause: BaseException, step: str, tls: bool, sasl: str | None) -> None:
    assert listener_mismatch(cause, step, SERVER, tls=tls, sasl=sasl) is None
