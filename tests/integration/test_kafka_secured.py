"""The Kafka input secured: ``tls`` and ``sasl`` with Redpanda Connect's field names, against Apache Kafka.

One broker for the module, with four extra listeners beside PLAINTEXT (which the tests use to create
topics, produce and read committed offsets):

- ``SASL_PLAINTEXT`` and ``SASL_SSL``: PLAIN (JAAS users), SCRAM-SHA-256 and SCRAM-SHA-512 (users
  added by ``kafka-storage format --add-scram``) and OAUTHBEARER with Kafka's built-in *unsecured*
  token validator (an unsigned JWT with ``sub`` and ``exp``: no identity provider needed);
- ``SSL``: TLS only; ``MTLS``: TLS with ``ssl.client.auth=required``.

Key stores are PEM, inline in ``server.properties``; certificates come from a ``trustme`` CA.
Each test runs the real ``backfill`` CLI; wrong credentials end the run with exit code 3, a message
naming the broker and the refusal, and nothing committed. So does a client whose security protocol
does not match the listener (SASL or TLS configured or not): the message names the mismatch instead
of "unreachable".
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from bridgedev.brokers import ApacheKafka, KafkaListener
from tests.integration.secured_support import Pem, Run, leaf, pkcs8, run_backfill, write
from tests.support import Record, committed_offsets, create_stream, create_topic, produce, read_stream

pytestmark = pytest.mark.integration

USER, PASSWORD = "alice", "alice-secret"
MECHANISMS = "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512,OAUTHBEARER"


def _prop(pem: str) -> str:
    """A PEM value on one ``server.properties`` line (``\\n`` escapes, read back by java.util.Properties)."""
    return pem.strip().replace("\n", "\\n")


@dataclass(frozen=True)
class SecuredKafka:
    broker: ApacheKafka
    ca_pem: str
    ca_file: str
    client: Pem

    @property
    def plaintext(self) -> str:
        return self.broker.bootstrap

    def listener(self, name: str) -> str:
        return self.broker.listener_bootstrap(name)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredKafka]:
    d = tmp_path_factory.mktemp("kafka-tls")
    ca = trustme.CA()
    server = leaf(ca, "127.0.0.1", "localhost")
    keystore = {
        "ssl.keystore.type": "PEM",
        "ssl.keystore.certificate.chain": _prop(server.cert),
        "ssl.keystore.key": _prop(pkcs8(server.key)),
    }
    props: dict[str, str] = {}
    for name in ("sasl_plaintext", "sasl_ssl"):
        props[f"listener.name.{name}.sasl.enabled.mechanisms"] = MECHANISMS
        props[f"listener.name.{name}.plain.sasl.jaas.config"] = (
            f'org.apache.kafka.common.security.plain.PlainLoginModule required user_{USER}="{PASSWORD}";'
        )
        for scram in ("scram-sha-256", "scram-sha-512"):
            props[f"listener.name.{name}.{scram}.sasl.jaas.config"] = (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            )
        props[f"listener.name.{name}.oauthbearer.sasl.jaas.config"] = (
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;"
        )
    for name in ("sasl_ssl", "ssl", "mtls"):
        props.update({f"listener.name.{name}.{k}": v for k, v in keystore.items()})
    props["listener.name.mtls.ssl.client.auth"] = "required"
    props["listener.name.mtls.ssl.truststore.type"] = "PEM"
    props["listener.name.mtls.ssl.truststore.certificates"] = _prop(ca.cert_pem.bytes().decode())
    broker = ApacheKafka(
        extra_listeners=[
            KafkaListener("SASL_PLAINTEXT", "SASL_PLAINTEXT"), KafkaListener("SASL_SSL", "SASL_SSL"),
            KafkaListener("SSL", "SSL"), KafkaListener("MTLS", "SSL"),
        ],
        extra_properties=props,
        format_args=[
            "--add-scram", f"SCRAM-SHA-256=[name={USER},password={PASSWORD}]",
            "--add-scram", f"SCRAM-SHA-512=[name={USER},password={PASSWORD}]",
        ],
    )  # fmt: skip
    with broker:
        ca_pem = ca.cert_pem.bytes().decode()
        yield SecuredKafka(broker, ca_pem, write(d / "ca.pem", ca_pem), leaf(ca, "bridge-client", rsa=True))


def unsecured_jwt(subject: str) -> str:
    """An unsigned OAUTHBEARER token, as Kafka's default (unsecured) validator accepts."""

    def b64(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    now = int(time.time())
    return f"{b64({'alg': 'none'})}.{b64({'sub': subject, 'iat': now, 'exp': now + 3600})}."


async def prepare(secured: SecuredKafka, nats_url: str, names: dict[str, str]) -> None:
    await create_topic(secured.plaintext, names["topic"], 1)
    await produce(secured.plaintext, names["topic"], [Record(0, b"k", f"v{i}".encode()) for i in range(3)])
    await create_stream(nats_url, names["stream"], [f"{names['prefix']}.>"])


def backfill(secured: SecuredKafka, listener: str, nats_url: str, names: dict[str, str], workdir: Path,
             *, kind: str = "kafka_franz", **security: Any) -> Run:  # fmt: skip
    """``security`` is the input's ``tls`` / ``sasl`` in the spelling of ``kind``."""
    brokers = secured.listener(listener)
    top = None
    if kind == "kafka":  # the legacy (sarama) input: its own field names
        top = {"input": {"label": "in", "kafka": {
            "addresses": [brokers], "topics": [names["topic"]], "consumer_group": names["group"],
            "commit_period": "1s", **security,
        }}}  # fmt: skip
    elif kind == "redpanda":
        top = {"input": {"label": "in", "redpanda": {
            "seed_brokers": [brokers], "topics": [names["topic"]], "consumer_group": names["group"],
            "commit_period": "1s", "session_timeout": "10s", "rebalance_timeout": "10s", **security,
        }}}  # fmt: skip
    return run_backfill(
        workdir, brokers=brokers, topics=[names["topic"]], group=names["group"], nats_url=nats_url,
        subject=names["prefix"] + ".out", extra_input=security, top=top,
    )  # fmt: skip


async def assert_delivered(run: Run, secured: SecuredKafka, nats_url: str, names: dict[str, str]) -> None:
    assert run.code == 0, run.text[-3000:]
    assert run.summary["records"] == 3
    assert [m.data for m in await read_stream(nats_url, names["stream"])] == [b"v0", b"v1", b"v2"]
    assert await committed_offsets(secured.plaintext, names["group"], names["topic"]) == {0: 3}


async def assert_refused(
    run: Run, secured: SecuredKafka, listener: str, names: dict[str, str], why: str
) -> None:
    assert run.code == 3, run.text[-3000:]
    assert f"Kafka ({secured.listener(listener)}) refused the connection: {why}" in run.text, run.text[-2000:]
    assert await committed_offsets(secured.plaintext, names["group"], names["topic"]) == {}


# ----------------------------------------------------------------------------------- SASL


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_sasl_plaintext(
    secured: SecuredKafka, nats_url: str, names: dict, workdir: Path, mechanism: str
) -> None:
    await prepare(secured, nats_url, names)
    sasl = [{"mechanism": mechanism, "username": USER, "password": PASSWORD}]
    run = backfill(secured, "SASL_PLAINTEXT", nats_url, names, workdir, sasl=sasl)
    await assert_delivered(run, secured, nats_url, names)
    assert PASSWORD not in run.text


async def test_sasl_ssl_redpanda_input(
    secured: SecuredKafka, nats_url: str, names: dict, workdir: Path
) -> None:
    await prepare(secured, nats_url, names)
    run = backfill(secured, "SASL_SSL", nats_url, names, workdir, kind="redpanda",
                   tls={"enabled": True, "root_cas": secured.ca_pem},
                   sasl=[{"mechanism": "SCRAM-SHA-512", "username": USER, "password": PASSWORD}])  # fmt: skip
    await assert_delivered(run, secured, nats_url, names)


async def test_sasl_oauthbearer(secured: SecuredKafka, nats_url: str, names: dict, workdir: Path) -> None:
    await prepare(secured, nats_url, names)
    run = backfill(secured, "SASL_SSL", nats_url, names, workdir,
                   tls={"enabled": True, "root_cas_file": secured.ca_file},
                   sasl=[{"mechanism": "OAUTHBEARER", "token": unsecured_jwt(USER)}])  # fmt: skip
    await assert_delivered(run, secured, nats_url, names)


async def test_legacy_kafka_input_sasl(
    secured: SecuredKafka, nats_url: str, names: dict, workdir: Path
) -> None:
    """The ``kafka`` input spells it ``sasl.user`` (sarama), not ``username``."""
    await prepare(secured, nats_url, names)
    sasl = {"mechanism": "SCRAM-SHA-256", "user": USER, "password": PASSWORD}
    run = backfill(secured, "SASL_PLAINTEXT", nats_url, names, workdir, kind="kafka", sasl=sasl)
    await assert_delivered(run, secured, nats_url, names)


@pytest.mark.parametrize("listener", ["SASL_PLAINTEXT", "SASL_SSL"])
async def test_wrong_password(
    secured: SecuredKafka, nats_url: str, names: dict, workdir: Path, listener: str
) -> None:
    await prepare(secured, nats_url, names)
    security: dict[str, Any] = {
        "sasl": [{"mechanism": "SCRAM-SHA-256", "username": USER, "password": "nope"}]
    }
    if listener == "SASL_SSL":
        security["tls"] = {"enabled": True, "root_cas_file": secured.ca_file}
    run = backfill(secured, listener, nats_url, names, workdir, **security)
    await assert_refused(run, secured, listener, names, "[Error 58] SaslAuthenticationFailed")
    assert "invalid credentials with SASL mechanism SCRAM-SHA-256" in run.text


# ----------------------------------------------------------------------------------- TLS


async def test_tls(secured: SecuredKafka, nats_url: str, names: dict, workdir: Path) -> None:
    await prepare(secured, nats_url, names)
    run = backfill(
        secured, "SSL", nats_url, names, workdir, tls={"enabled": True, "root_cas_file": secured.ca_file}
    )
    await assert_delivered(run, secured, nats_url, names)


async def test_mutual_tls(secured: SecuredKafka, nats_url: str, names: dict, workdir: Path) -> None:
    await prepare(secured, nats_url, names)
    cert = {"cert": secured.client.cert, "key": secured.client.key}
    run = backfill(secured, "MTLS", nats_url, names, workdir,
                   tls={"enabled": True, "root_cas_file": secured.ca_file, "client_certs": [cert]})  # fmt: skip
    await assert_delivered(run, secured, nats_url, names)


async def test_unknown_issuer(secured: SecuredKafka, nats_url: str, names: dict, workdir: Path) -> None:
    await prepare(secured, nats_url, names)
    run = backfill(secured, "SASL_SSL", nats_url, names, workdir, tls={"enabled": True},
                   sasl=[{"mechanism": "PLAIN", "username": USER, "password": PASSWORD}])  # fmt: skip
    await assert_refused(
        run,
        secured,
        "SASL_SSL",
        names,
        "TLS certificate verify failed: unable to get local issuer certificate",
    )


# ----------------------------------------------------------------------------------- mismatched listeners

# (listener, the input's security settings, what the message says after "Kafka (<listener>) ")
MISMATCHES = {
    "no-sasl-to-sasl-listener": (
        "SASL_PLAINTEXT", {},
        "refused the connection: it answered the version request, then closed the connection at the metadata "
        "request, as a SASL listener does to a client without SASL (is it a SASL_PLAINTEXT or SASL_SSL "
        "listener? check the port or set sasl)",
    ),
    "no-tls-to-ssl-listener": (
        "SSL", {},
        "refused the connection: it closed the connection at the first request, as a TLS listener does to a "
        "client without TLS (is it an SSL or SASL_SSL listener? check the port or set tls.enabled: true)",
    ),
    "sasl-without-tls-to-sasl-ssl-listener": (
        "SASL_SSL", {"sasl": [{"mechanism": "PLAIN", "username": USER, "password": PASSWORD}]},
        "refused the connection: it closed the connection at the first request, as a TLS listener does",
    ),
    "tls-to-plaintext-listener": (
        "PLAINTEXT", {"tls": {"enabled": True}},
        "refused TLS: the listener reset the connection during the TLS handshake: it does not speak TLS "
        "(is it a PLAINTEXT or SASL_PLAINTEXT listener? check the port or remove tls)",
    ),
    "sasl-to-ssl-listener-with-tls": (
        "SSL", {"tls": {"enabled": True}, "sasl": [{"mechanism": "PLAIN", "username": USER, "password": PASSWORD}]},
        "refused SASL: the listener does not speak SASL (is it a PLAINTEXT or SSL listener? check the port or "
        "remove sasl)",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(MISMATCHES))
async def test_mismatched_security_protocol_is_named(
    secured: SecuredKafka, nats_url: str, names: dict, workdir: Path, case: str
) -> None:
    listener, security, said = MISMATCHES[case]
    if "tls" in security:
        security = {**security, "tls": {**security["tls"], "root_cas_file": secured.ca_file}}
    await prepare(secured, nats_url, names)
    started = time.monotonic()
    run = backfill(secured, listener, nats_url, names, workdir, **security)
    assert run.code == 3, run.text[-3000:]
    assert f"Kafka ({secured.listener(listener)}) {said}" in run.text, run.text[-2000:]
    assert "unreachable" not in run.text
    assert time.monotonic() - started < 30
    assert await committed_offsets(secured.plaintext, names["group"], names["topic"]) == {}


async def test_missing_client_certificate_is_named(
    secured: SecuredKafka, nats_url: str, names: dict, workdir: Path
) -> None:
    """A listener that wants a client certificate speaks TLS: the refusal says what it wants, not that it
    does not speak TLS (before: "unreachable: ... Connection at ... closed")."""
    await prepare(secured, nats_url, names)
    run = backfill(
        secured, "MTLS", nats_url, names, workdir, tls={"enabled": True, "root_cas_file": secured.ca_file}
    )
    assert run.code == 3, run.text[-3000:]
    assert (
        f"Kafka ({secured.listener('MTLS')}) refused the connection: it closed the connection after the TLS "
        "handshake, at the first request, as a listener that requires a client certificate does to a client "
        "without one (set tls.client_certs)"
    ) in run.text, run.text[-2000:]
    assert "unreachable" not in run.text
    assert "does not speak TLS" not in run.text
    assert "TLS listener does to a client without TLS" not in run.text
    assert await committed_offsets(secured.plaintext, names["group"], names["topic"]) == {}
