"""``output.nats_jetstream.tls.*`` and ``tls_handshake_first`` against nats-servers with TLS.

Certificates come from a ``trustme`` CA made for the module; four servers share it: plain TLS (a
certificate for 127.0.0.1), mutual TLS (``verify: true``), ``handshake_first: true``, and one whose
certificate names another host. Each test runs the real ``backfill`` CLI on three records.
A certificate that does not verify ends the run with exit code 3 and the failed check in the message;
TLS material that cannot be loaded (a wrong key password) is a config error naming the field (exit 2).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from bridgedev.brokers import NatsServer
from tests.conftest import KAFKA_PARAMS, Kafka
from tests.integration.secured_support import (
    Pem,
    Run,
    create_stream_as,
    encrypted_key,
    leaf,
    nats_tls_conf,
    run_backfill,
    stream_messages,
    write,
)
from tests.support import Record, committed_offsets, create_topic, produce

pytestmark = pytest.mark.integration
# the Kafka side is not what these tests are about: one implementation is enough
one_kafka = pytest.mark.parametrize("kafka", KAFKA_PARAMS[:1], indirect=True)

KEY_PASSWORD = "key-pass"


@dataclass(frozen=True)
class Tls:
    dir: Path
    ca: trustme.CA
    ca_file: str
    ca_pem: str
    client: Pem  # an RSA client certificate and its unencrypted key
    plain: NatsServer  # TLS, certificate for 127.0.0.1
    mutual: NatsServer  # TLS with verify: true
    first: NatsServer  # TLS with handshake_first: true
    elsewhere: NatsServer  # TLS, certificate for other.example only

    def admin(self, server: NatsServer) -> dict[str, Any]:
        """Connect options for the test's own (stream admin) connections."""
        ctx = ssl.create_default_context(cafile=self.ca_file)
        ctx.check_hostname = server is not self.elsewhere
        if server is self.mutual:
            ctx.load_cert_chain(write(self.dir / "admin.pem", self.client.cert + self.client.key))
        extra: dict[str, Any] = {"tls": ctx}
        if server is self.first:
            extra["tls_handshake_first"] = True
        return extra


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tls]:
    d = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    ca_file = write(d / "ca.pem", ca.cert_pem.bytes().decode())
    server, other = leaf(ca, "127.0.0.1", "localhost"), leaf(ca, "other.example")
    cert, key = write(d / "server.pem", server.cert), write(d / "server.key", server.key)
    other_cert, other_key = write(d / "other.pem", other.cert), write(d / "other.key", other.key)
    servers = [
        NatsServer(name="tls-plain", extra_conf=nats_tls_conf(cert, key)),
        NatsServer(name="tls-mutual", extra_conf=nats_tls_conf(cert, key, ca_file=ca_file, verify=True)),
        NatsServer(name="tls-first", extra_conf=nats_tls_conf(cert, key, handshake_first=True)),
        NatsServer(name="tls-elsewhere", extra_conf=nats_tls_conf(other_cert, other_key)),
    ]
    with servers[0], servers[1], servers[2], servers[3]:
        yield Tls(d, ca, ca_file, ca.cert_pem.bytes().decode(), leaf(ca, "bridge-client", rsa=True), *servers)


async def prepare(tls: Tls, server: NatsServer, kafka: Kafka, names: dict[str, str]) -> None:
    await create_topic(kafka.bootstrap, names["topic"], 1)
    await produce(kafka.bootstrap, names["topic"], [Record(0, b"k", f"v{i}".encode()) for i in range(3)])
    await create_stream_as(server.url, names["stream"], [f"{names['prefix']}.>"], **tls.admin(server))


def backfill(kafka: Kafka, names: dict[str, str], workdir: Path, server: NatsServer, **output: Any) -> Run:
    return run_backfill(
        workdir, brokers=kafka.bootstrap, topics=[names["topic"]], group=names["group"], nats_url=server.url,
        subject=names["prefix"] + ".out", extra_output={"max_reconnects": 0, **output},
    )  # fmt: skip


async def assert_delivered(run: Run, tls: Tls, server: NatsServer, names: dict[str, str]) -> None:
    assert run.code == 0, run.text[-3000:]
    assert run.summary["records"] == 3
    stored = await stream_messages(server.url, names["stream"], **tls.admin(server))
    assert [data for _, _, data in stored] == [b"v0", b"v1", b"v2"]


async def assert_refused(run: Run, server: NatsServer, kafka: Kafka, names: dict[str, str], why: str) -> None:
    assert run.code == 3, run.text[-3000:]
    assert f"NATS ({server.url}) refused the connection: {why}" in run.text, run.text[-2000:]
    assert await committed_offsets(kafka.bootstrap, names["group"], names["topic"]) == {}


# ----------------------------------------------------------------------------------- server verification


@one_kafka
@pytest.mark.parametrize("form", ["root_cas_file", "root_cas"])
async def test_root_cas(tls: Tls, kafka: Kafka, names: dict, workdir: Path, form: str) -> None:
    await prepare(tls, tls.plain, kafka, names)
    roots = tls.ca_file if form == "root_cas_file" else tls.ca_pem
    run = backfill(kafka, names, workdir, tls.plain, tls={"enabled": True, form: roots})
    await assert_delivered(run, tls, tls.plain, names)


@one_kafka
async def test_skip_cert_verify(tls: Tls, kafka: Kafka, names: dict, workdir: Path) -> None:
    """No CA that knows the server's certificate, and a certificate for another host: both ignored."""
    await prepare(tls, tls.elsewhere, kafka, names)
    run = backfill(kafka, names, workdir, tls.elsewhere, tls={"enabled": True, "skip_cert_verify": True})
    await assert_delivered(run, tls, tls.elsewhere, names)


@one_kafka
async def test_unknown_issuer_fails_verification(tls: Tls, kafka: Kafka, names: dict, workdir: Path) -> None:
    """``tls.enabled`` without ``root_cas``: the system's CAs, which do not know the test CA."""
    await create_topic(kafka.bootstrap, names["topic"], 1)
    run = backfill(kafka, names, workdir, tls.plain, tls={"enabled": True})
    await assert_refused(
        run, tls.plain, kafka, names, "TLS certificate verify failed: unable to get local issuer certificate"
    )


@one_kafka
async def test_root_cas_replace_the_system_ones(tls: Tls, kafka: Kafka, names: dict, workdir: Path) -> None:
    """``root_cas`` of another CA: the server's certificate does not verify (as Go's ``RootCAs``)."""
    await create_topic(kafka.bootstrap, names["topic"], 1)
    other_ca = trustme.CA().cert_pem.bytes().decode()
    run = backfill(kafka, names, workdir, tls.plain, tls={"enabled": True, "root_cas": other_ca})
    await assert_refused(
        run, tls.plain, kafka, names, "TLS certificate verify failed: unable to get local issuer"
    )


@one_kafka
async def test_host_name_mismatch_fails_verification(
    tls: Tls, kafka: Kafka, names: dict, workdir: Path
) -> None:
    await create_topic(kafka.bootstrap, names["topic"], 1)
    run = backfill(kafka, names, workdir, tls.elsewhere, tls={"enabled": True, "root_cas_file": tls.ca_file})
    await assert_refused(
        run, tls.elsewhere, kafka, names,
        "TLS certificate verify failed: IP address mismatch, certificate is not valid for '127.0.0.1'",
    )  # fmt: skip


@one_kafka
async def test_tls_settings_are_ignored_unless_enabled(
    tls: Tls, kafka: Kafka, names: dict, workdir: Path
) -> None:
    """``enabled: false`` means no *custom* settings (the reference's words): the server still asks for
    TLS, the client uses the system defaults, and the root CA given here is not used."""
    await create_topic(kafka.bootstrap, names["topic"], 1)
    run = backfill(kafka, names, workdir, tls.plain, tls={"enabled": False, "root_cas_file": tls.ca_file})
    await assert_refused(run, tls.plain, kafka, names, "TLS certificate verify failed")


# ----------------------------------------------------------------------------------- client certificates


def client_cert(tls: Tls, form: str, workdir: Path) -> dict[str, str]:
    """``tls.client_certs[0]`` in one of its forms (files, inline, encrypted keys)."""
    cert, key = tls.client.cert, tls.client.key
    if form == "inline":
        return {"cert": cert, "key": key}
    if form == "files":
        return {
            "cert_file": write(workdir / "client.pem", cert),
            "key_file": write(workdir / "client.key", key),
        }
    if form == "pkcs1-file":  # -----BEGIN RSA PRIVATE KEY----- with Proc-Type: 4,ENCRYPTED
        enc = encrypted_key(key, KEY_PASSWORD, "pkcs1")
        assert "Proc-Type: 4,ENCRYPTED" in enc
        return {"cert_file": write(workdir / "client.pem", cert), "key_file": write(workdir / "client.key", enc),
                "password": KEY_PASSWORD}  # fmt: skip
    assert form == "pkcs8-inline"  # -----BEGIN ENCRYPTED PRIVATE KEY-----
    enc = encrypted_key(key, KEY_PASSWORD, "pkcs8")
    assert "BEGIN ENCRYPTED PRIVATE KEY" in enc
    return {"cert": cert, "key": enc, "password": KEY_PASSWORD}


@one_kafka
@pytest.mark.parametrize("form", ["inline", "files", "pkcs1-file", "pkcs8-inline"])
async def test_mutual_tls(tls: Tls, kafka: Kafka, names: dict, workdir: Path, form: str) -> None:
    await prepare(tls, tls.mutual, kafka, names)
    settings = {
        "enabled": True,
        "root_cas_file": tls.ca_file,
        "client_certs": [client_cert(tls, form, workdir)],
    }
    run = backfill(kafka, names, workdir, tls.mutual, tls=settings)
    await assert_delivered(run, tls, tls.mutual, names)
    assert KEY_PASSWORD not in run.text


@one_kafka
async def test_mutual_tls_without_a_client_certificate(
    tls: Tls, kafka: Kafka, names: dict, workdir: Path
) -> None:
    await create_topic(kafka.bootstrap, names["topic"], 1)
    run = backfill(kafka, names, workdir, tls.mutual, tls={"enabled": True, "root_cas_file": tls.ca_file})
    assert run.code == 3, run.text[-3000:]
    # TLS 1.3 completes the client's handshake before the server checks the certificate: the client reads
    # the server's alert, or finds the connection closed first. Either way the message says what to fix.
    error = run.summary["error"]
    assert error.startswith(f"NATS ({tls.mutual.url})"), error
    assert (
        "refused the connection: TLS failed: the server requires a client certificate" in error
        or "if it requires a client certificate, set tls.client_certs" in error
    ), error
    assert await committed_offsets(kafka.bootstrap, names["group"], names["topic"]) == {}


@one_kafka
@pytest.mark.parametrize(("password", "why"), [("wrong", "cannot decrypt the private key with this password"),
                                               ("", "the private key is encrypted: set password")],
                         ids=["wrong-password", "no-password"])  # fmt: skip
async def test_encrypted_key_that_does_not_load(
    tls: Tls, kafka: Kafka, names: dict, workdir: Path, password: str, why: str
) -> None:
    """Exit code 2 (the config's material is wrong; nothing connected), the field named; no prompt."""
    await create_topic(kafka.bootstrap, names["topic"], 1)
    cert = {**client_cert(tls, "pkcs8-inline", workdir), "password": password}
    run = backfill(kafka, names, workdir, tls.mutual,
                   tls={"enabled": True, "root_cas_file": tls.ca_file, "client_certs": [cert]})  # fmt: skip
    assert run.code == 2, run.text[-3000:]
    assert f"output.nats_jetstream.tls.client_certs[0]: {why}" in run.text


# ----------------------------------------------------------------------------------- handshake first


@one_kafka
async def test_tls_handshake_first(tls: Tls, kafka: Kafka, names: dict, workdir: Path) -> None:
    await prepare(tls, tls.first, kafka, names)
    settings = {"enabled": True, "root_cas_file": tls.ca_file}
    run = backfill(kafka, names, workdir, tls.first, tls=settings, tls_handshake_first=True)
    await assert_delivered(run, tls, tls.first, names)


@one_kafka
async def test_handshake_first_server_without_the_option(
    tls: Tls, kafka: Kafka, names: dict, workdir: Path
) -> None:
    await create_topic(kafka.bootstrap, names["topic"], 1)
    run = backfill(kafka, names, workdir, tls.first, tls={"enabled": True, "root_cas_file": tls.ca_file})
    assert run.code == 3, run.text[-3000:]
    assert "tls_handshake_first: true" in run.text
