"""The PubAck fast path of the sink: the exact reply shapes nats-server sends, and what falls back."""

from __future__ import annotations

import pytest

from bridge.sink import _PUBACK


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (b'{"stream":"ORDERS","seq":1}', (b"ORDERS", b"1", None)),
        (b'{"stream":"ORDERS","seq":42,"duplicate": true}', (b"ORDERS", b"42", b',"duplicate": true')),
        (b'{"stream":"ORDERS","seq":42,"duplicate":true}', (b"ORDERS", b"42", b',"duplicate":true')),
        (b'{"stream":"O","domain":"hub","seq":7}', (b"O", b"7", None)),
    ],
)
def test_acks_parse_without_json(reply: bytes, expected: tuple[bytes, bytes, bytes | None]) -> None:
    match = _PUBACK.match(reply)
    assert match is not None
    assert match.groups() == expected


@pytest.mark.parametrize(
    "reply",
    [
        b'{"error":{"code":503,"err_code":10077,"description":"stream offline"}}',
        b'{"stream":"ORDERS","seq":1,"batch":"b1"}',  # a field added by a later server: json decides
        b'{"stream":"ORDERS","seq":1}trailing',
        b"",
    ],
)
def test_anything_else_goes_through_json(reply: bytes) -> None:
    assert _PUBACK.match(reply) is None
