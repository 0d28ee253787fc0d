"""Secret fields: ``SecretStr`` in the config tree, never echoed by a problem, taken as the text written
when YAML reads them as numbers, and handed to the clients (nats-py options, aiokafka options) as text."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import SecretStr

from bridge.core.config import Loaded, is_secret, parse, secret_paths
from bridge.core.errors import ConfigError
from bridge.jetstream.options import auth_options
from bridge.kafka import options as kafka_options

HEAD = """\
input:
  kafka_franz:
    seed_brokers: [k:9092]
    topics: [t]
    consumer_group: g
"""
OUT = """\
output:
  nats_jetstream:
    urls: [nats://n:4222]
    subject: s
"""

# Every secret field, and a config placing {v} in it (the rest of each block valid).
PLACES: dict[str, str] = {
    "input.kafka_franz.sasl[0].password": HEAD + "    sasl: [{{mechanism: PLAIN, username: u, password: {v}}}]\n" + OUT,
    "input.kafka_franz.sasl[0].token": HEAD + "    sasl: [{{mechanism: OAUTHBEARER, token: {v}}}]\n" + OUT,
    "input.kafka_franz.sasl[0].extensions.ext": HEAD + "    sasl: [{{mechanism: OAUTHBEARER, token: t, extensions: {{ext: {v}}}}}]\n" + OUT,
    "input.kafka_franz.tls.client_certs[0].key": HEAD + "    tls: {{client_certs: [{{cert: c, key: {v}}}]}}\n" + OUT,
    "input.kafka_franz.tls.client_certs[0].password": HEAD + "    tls: {{client_certs: [{{cert: c, key: k, password: {v}}}]}}\n" + OUT,
    "input.redpanda.sasl[0].password": HEAD.replace("kafka_franz", "redpanda") + "    sasl: [{{mechanism: PLAIN, username: u, password: {v}}}]\n" + OUT,
    "input.kafka.sasl.password": "input:\n  kafka:\n    addresses: [k:9092]\n    topics: [t]\n    consumer_group: g\n    sasl: {{mechanism: PLAIN, user: u, password: {v}}}\n" + OUT,
    "input.kafka.sasl.access_token": "input:\n  kafka:\n    addresses: [k:9092]\n    topics: [t]\n    consumer_group: g\n    sasl: {{mechanism: OAUTHBEARER, access_token: {v}}}\n" + OUT,
    "output.nats_jetstream.auth.password": HEAD + OUT + "    auth: {{user: u, password: {v}}}\n",
    "output.nats_jetstream.auth.token": HEAD + OUT + "    auth: {{token: {v}}}\n",
    "output.nats_jetstream.auth.nkey": HEAD + OUT + "    auth: {{nkey: {v}}}\n",
    "output.nats_jetstream.auth.user_jwt": HEAD + OUT + "    auth: {{user_jwt: {v}, user_nkey_seed: SUAB}}\n",
    "output.nats_jetstream.auth.user_nkey_seed": HEAD + OUT + "    auth: {{user_jwt: j, user_nkey_seed: {v}}}\n",
    "output.nats_jetstream.tls.client_certs[0].key": HEAD + OUT + "    tls: {{client_certs: [{{cert: c, key: {v}}}]}}\n",
    "output.nats_jetstream.tls.client_certs[0].password": HEAD + OUT + "    tls: {{client_certs: [{{cert: c, key: k, password: {v}}}]}}\n",
}  # fmt: skip


def test_every_secret_field_is_known() -> None:
    """The list is read from the models: a new secret field is a ``Secret`` and lands here."""
    assert {".".join(p) for p in secret_paths()} == {
        f"input.{kind}.{field}"
        for kind in ("redpanda", "kafka_franz")
        for field in (
            "tls.client_certs.[*].key", "tls.client_certs.[*].password",
            "sasl.[*].password", "sasl.[*].token", "sasl.[*].extensions.{*}",
        )
    } | {
        "input.kafka.tls.client_certs.[*].key", "input.kafka.tls.client_certs.[*].password",
        "input.kafka.sasl.password", "input.kafka.sasl.access_token",
        "output.nats_jetstream.tls.client_certs.[*].key", "output.nats_jetstream.tls.client_certs.[*].password",
        *(f"output.nats_jetstream.auth.{f}" for f in ("nkey", "user_jwt", "user_nkey_seed", "password", "token")),
        "http.basic_auth.password_hash", "http.basic_auth.salt",
    }  # fmt: skip


@pytest.mark.parametrize("place", list(PLACES))
@pytest.mark.parametrize(
    "value", ["[SeCrEt-4711]", "{a: SeCrEt-4711}", "[0.5, SeCrEt-4711]", "!!binary U2VDckV0LTQ3MTE="]
)
def test_a_wrong_value_in_a_secret_field_is_never_echoed(place: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(PLACES[place].format(v=value), environ={})
    text = str(info.value)
    for fragment in ("SeCrEt", "4711", "U2VDckV0"):
        assert fragment not in text, text
    assert place.removesuffix(".ext") in text


def test_what_a_wrong_secret_says() -> None:
    with pytest.raises(ConfigError) as info:
        parse(HEAD + OUT + "    auth: {user: u, password: [20260131]}\n", environ={})
    assert [str(p) for p in info.value.problems] == [
        "line 10: output.nats_jetstream.auth.password: expected a string (the value is not shown: it is a secret)"
    ]


def test_other_fields_still_show_what_was_given() -> None:
    with pytest.raises(ConfigError, match=r"max_in_flight: expected a whole number \(got 'lots'\)"):
        parse(HEAD + OUT + "    max_in_flight: lots\n", environ={})


# An NKey seed must start with S or P: a number is refused there anyway.
@pytest.mark.parametrize("place", [p for p in PLACES if not p.endswith(("auth.nkey", "user_nkey_seed"))])
@pytest.mark.parametrize(
    ("written", "text"),
    [("20260131", "20260131"), ("0123", "0123"), ("1.50", "1.50"), ("1_000", "1_000"), ("0x1F", "0x1F"),
     ("true", "true"), ("2026-01-31", "2026-01-31"), ("'0123'", "0123")],
)  # fmt: skip
def test_a_secret_read_as_a_number_is_the_text_written(place: str, written: str, text: str) -> None:
    """As Redpanda Connect takes it (YAML to a string field keeps the scalar's text). Not PyYAML's
    int(0123) = 83 nor float(1.50) = 1.5."""
    loaded = parse(PLACES[place].format(v=written), environ={})
    assert secret_at(loaded, place) == SecretStr(text)


def test_an_unquoted_numeric_password_from_the_environment() -> None:
    """The issue's case: ``password: ${NATS_PASSWORD}`` with NATS_PASSWORD=20260131."""
    loaded = parse(HEAD + OUT + "    auth:\n      user: u\n      password: ${NATS_PASSWORD}\n",
                   environ={"NATS_PASSWORD": "20260131"})  # fmt: skip
    assert auth_options(loaded.output.auth) == {"user": "u", "password": "20260131"}


def secret_at(loaded: Loaded, dotted: str) -> Any:
    node: Any = loaded.config
    for part in dotted.replace("[", ".").replace("]", "").split("."):
        node = (
            node[int(part)]
            if part.isdigit()
            else node[part]
            if isinstance(node, dict)
            else getattr(node, part)
        )
    return node


def test_secrets_do_not_show_in_the_config_tree() -> None:
    loaded = parse(
        HEAD + "    sasl: [{mechanism: PLAIN, username: u, password: kafka-SeCrEt}]\n"
        + OUT + "    auth: {user: u, password: nats-SeCrEt}\n",
        environ={},
    )  # fmt: skip
    assert "SeCrEt" not in repr(loaded) + str(loaded.config) + repr(loaded.kafka)
    assert loaded.output.auth.password is not None
    assert loaded.output.auth.password.get_secret_value() == "nats-SeCrEt"


@pytest.mark.parametrize(
    ("loc", "secret"),
    [
        (("output", "nats_jetstream", "auth", "password"), True),
        (("input", "kafka_franz", "sasl", 0, "extensions"), True),  # holds only secrets
        (("input", "kafka_franz", "sasl", 0, "extensions", "any"), True),
        (("input", "kafka_franz", "sasl", 0), False),
        (("input", "kafka_franz", "sasl", 0, "username"), False),
        (("output", "nats_jetstream", "auth", "user"), False),
    ],
)
def test_is_secret(loc: tuple[str | int, ...], secret: bool) -> None:
    assert is_secret(loc) is secret


# --------------------------------------------------------------------------- handed to the clients


def test_nats_auth_options_carry_the_secret_text() -> None:
    def auth(block: str) -> dict[str, Any]:
        return auth_options(parse(HEAD + OUT + block, environ={}).output.auth)

    assert auth("    auth: {user: u, password: p-1}\n") == {"user": "u", "password": "p-1"}
    assert auth("    auth: {token: t-1}\n") == {"token": "t-1"}


def consumer_options(sasl: str) -> dict[str, Any]:
    loaded = parse(HEAD + f"    sasl: [{sasl}]\n" + OUT, environ={})
    return kafka_options.consumer_options(loaded.kafka)


def test_kafka_sasl_options_carry_the_secret_text() -> None:
    opts = consumer_options("{mechanism: SCRAM-SHA-256, username: u, password: 0123}")
    assert (opts["sasl_plain_username"], opts["sasl_plain_password"]) == ("u", "0123")
    opts = consumer_options("{mechanism: OAUTHBEARER, token: tok-1, extensions: {a: x-1}}")
    provider = opts["sasl_oauth_token_provider"]
    assert asyncio.run(provider.token()) == "tok-1"
    assert provider.extensions() == {"a": "x-1"}
