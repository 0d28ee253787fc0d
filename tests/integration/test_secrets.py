"""Secrets never reach the logs or the output: runs with credentials in URLs, passwords, tokens and
NKey seeds (working and refused), at DEBUG, through the real CLI."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import nkeys
import pytest
import trustme

from bridgedev import brokers as devenv
from bridgedev.brokers import ApacheKafka, KafkaListener
from tests.conftest import Kafka
from tests.integration.secured_support import Operator, encrypted_key, leaf
from tests.support import (
    BridgeProcess,
    create_stream,
    create_topic,
    eventually,
    produce,
    run_cli,
    sample_records,
    write_config,
)
from tests.support import stream_count as count

pytestmark = pytest.mark.integration

PASSWORD = "pw-8d1f0c2e77"
WRONG = "wrong-pw-5b7e"
TOKEN = "tok-91ac40ee2b"
SEED = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER).decode()
KAFKA_PASSWORD = "kpw-3e5c8a90d1"
SECRETS = (PASSWORD, WRONG, TOKEN, SEED, KAFKA_PASSWORD)


def assert_clean(*outputs: str) -> None:
    for text in outputs:
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} leaked:\n{text[-3000:]}"


def config(path: Path, kafka: str, url: str, names: dict, **output: Any) -> Path:
    return write_config(
        path, brokers=kafka, topics=[names["topic"]], group=names["group"], nats_url=url,
        subject=names["prefix"] + '.${! meta("kafka_partition") }',
        extra_output={"max_reconnects": 0, **output},
        # A client certificate password that TLS (off) never uses: still never printed.
        extra_input={"tls": {"enabled": False, "client_certs": [{"cert": "c", "key": "k", "password": KAFKA_PASSWORD}]}},
        bridge={"stream": {"name": names["stream"], "ensure": False}},
        top={"logger": {"level": "DEBUG", "format": "json"}},
    )  # fmt: skip


@pytest.mark.parametrize("kafka", ["tansu"], indirect=True)
async def test_no_secret_in_any_output(kafka: Kafka, names: dict, workdir: Path) -> None:
    auth = f'authorization {{ users = [ {{ user: "bridge", password: "{PASSWORD}" }} ] }}'
    await create_topic(kafka.bootstrap, names["topic"], 2)
    await produce(kafka.bootstrap, names["topic"], sample_records(2, 10))
    with devenv.NatsServer(name="secret-nats", extra_conf=auth) as server:
        authed = f"nats://bridge:{PASSWORD}@127.0.0.1:{server.port}"
        await create_stream(authed, names["stream"], [names["prefix"] + ".>"])

        # 1. A working run with the credentials in the URL.
        cfg = config(workdir / "ok.yaml", kafka.bootstrap, authed, names)
        with BridgeProcess("run", "-c", str(cfg), log_dir=workdir) as bridge:

            async def delivered() -> None:
                assert await count(authed, names["stream"]) == 20

            await eventually(delivered, within=60)
            assert bridge.stop() == 0
        connected = bridge.events("nats_connected")
        assert connected, bridge.logs()[-2000:]
        assert connected[0]["servers"].endswith(f"127.0.0.1:{server.port}")  # named, without credentials
        assert_clean(bridge.logs(), bridge.stdout_path.read_text())

        # 2. Refused: a wrong password in the URL, a token, an NKey seed (exit 3, with the reason).
        plain = f"nats://127.0.0.1:{server.port}"
        refused = [
            config(
                workdir / "url.yaml", kafka.bootstrap, f"nats://bridge:{WRONG}@127.0.0.1:{server.port}", names
            ),
            config(
                workdir / "pw.yaml", kafka.bootstrap, plain, names, auth={"user": "bridge", "password": WRONG}
            ),
            config(workdir / "token.yaml", kafka.bootstrap, plain, names, auth={"token": TOKEN}),
            config(workdir / "nkey.yaml", kafka.bootstrap, plain, names, auth={"nkey": SEED}),
        ]
        for cfg in refused:
            done = run_cli("backfill", "-c", str(cfg), timeout=60)
            assert done.returncode == 3, (cfg.name, done.stdout, done.stderr[-2000:])
            assert "FAILED: NATS" in done.stdout
            assert_clean(done.stdout, done.stderr)
        # The admin commands connect their own way: same rule.
        for command in (("verify", "-c", str(refused[0])), ("streams", "ensure", "-c", str(refused[0]))):
            other = run_cli(*command, timeout=60)
            assert other.returncode == 3, (command, other.stderr[-2000:])
            assert_clean(other.stdout, other.stderr)

    # 3. Unreachable, credentials in the URL: the error names the server without them.
    gone = f"nats://bridge:{PASSWORD}@127.0.0.1:{devenv.free_port()}"
    done = run_cli(
        "backfill", "-c", str(config(workdir / "gone.yaml", kafka.bootstrap, gone, names)), timeout=60
    )
    assert done.returncode == 3, done.stderr[-2000:]
    assert "FAILED: NATS (nats://" in done.stdout
    assert_clean(done.stdout, done.stderr)


# ----------------------------------------------------------------------------------- every auth form, every command


def planted(kind: str) -> str:
    return f"{kind}-{os.urandom(6).hex()}"


# Distinct secrets, one per auth form. The broker-side ones (NATS_PW, KAFKA_PW, SCRAM_PW) are real.
NATS_PW, NATS_WRONG, NATS_TOKEN = planted("natspw"), planted("natswrong"), planted("natstok")
URL_PW, BARE_PW, URL_TOKEN = planted("urlpw"), planted("barepw"), planted("urltok")
ENCODED_PW = "p@ss/" + planted("encpw")  # written percent-encoded in the URL
TLS_KEY_PW, KAFKA_PW, SCRAM_PW = planted("tlskeypw"), planted("kafkapw"), planted("scrampw")
KAFKA_WRONG, LEGACY_WRONG = planted("kafkawrong"), planted("legacywrong")
OAUTH_TOKEN, OAUTH_EXTENSION = planted("oauthtok"), planted("oauthext")
INLINE_SEED = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER).decode()
FILE_SEED = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER).decode()
OPERATOR = Operator()
CREDS_USER, JWT_USER = OPERATOR.user("creds-user"), OPERATOR.user("jwt-user")
CA = trustme.CA()
CLIENT = leaf(CA, "bridge-client", rsa=True)
ENCRYPTED_KEY = encrypted_key(CLIENT.key, TLS_KEY_PW, "pkcs8")
KEY_BODY = ENCRYPTED_KEY.splitlines()[3]  # a line of the encrypted key's base64
ALL_SECRETS = (
    NATS_PW, NATS_WRONG, NATS_TOKEN, URL_PW, BARE_PW, URL_TOKEN, ENCODED_PW, ENCODED_PW.split("-")[1],
    TLS_KEY_PW, KAFKA_PW, SCRAM_PW, KAFKA_WRONG, LEGACY_WRONG, OAUTH_TOKEN, OAUTH_EXTENSION,
    INLINE_SEED, FILE_SEED, CREDS_USER.jwt, CREDS_USER.seed, JWT_USER.jwt, JWT_USER.seed, KEY_BODY,
)  # fmt: skip


@dataclass(frozen=True)
class Brokers:
    kafka: ApacheKafka  # PLAINTEXT, and SASL_PLAINTEXT with PLAIN (KAFKA_PW), SCRAM (SCRAM_PW), OAUTHBEARER
    nats: devenv.NatsServer  # user "bridge", password NATS_PW

    @property
    def sasl(self) -> str:
        return self.kafka.listener_bootstrap("SASL_PLAINTEXT")

    @property
    def nats_authed(self) -> str:
        return f"nats://bridge:{NATS_PW}@127.0.0.1:{self.nats.port}"


@pytest.fixture(scope="module")
def brokers() -> Iterator[Brokers]:
    name = "sasl_plaintext"
    props = {
        f"listener.name.{name}.sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256,OAUTHBEARER",
        f"listener.name.{name}.plain.sasl.jaas.config":
            f'org.apache.kafka.common.security.plain.PlainLoginModule required user_alice="{KAFKA_PW}";',
        f"listener.name.{name}.scram-sha-256.sasl.jaas.config":
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        f"listener.name.{name}.oauthbearer.sasl.jaas.config":
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;",
    }  # fmt: skip
    kafka = ApacheKafka(
        extra_listeners=[KafkaListener("SASL_PLAINTEXT", "SASL_PLAINTEXT")], extra_properties=props,
        format_args=["--add-scram", f"SCRAM-SHA-256=[name=alice,password={SCRAM_PW}]"],
    )  # fmt: skip
    auth = f'authorization {{ users = [ {{ user: "bridge", password: "{NATS_PW}" }} ] }}'
    with kafka, devenv.NatsServer(name="secrets-nats", extra_conf=auth) as nats:
        yield Brokers(kafka, nats)


@dataclass(frozen=True)
class Case:
    """One command on one config; ``code`` is the exit code it must end with, ``says`` a fragment
    of its output showing that the path meant was the one taken."""

    name: str
    args: tuple[str, ...]
    code: int
    says: str


def run_all(cases: list[Case]) -> None:
    """Every case, three at a time; then every output checked for every secret."""

    def one(case: Case) -> tuple[Case, subprocess.CompletedProcess[str]]:
        return case, run_cli(*case.args, timeout=90)

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(one, cases))
    for case, done in results:
        text = done.stdout + done.stderr
        assert done.returncode == case.code, (case.name, done.returncode, text[-3000:])
        assert case.says in text, (case.name, case.says, text[-3000:])
        for secret in ALL_SECRETS:
            assert secret not in text, f"{case.name}: {secret!r} leaked:\n{text[-3000:]}"


def secret_config(path: Path, names: dict, *, brokers: str, urls: Any, input_kind: str = "kafka_franz",
                  security: dict | None = None, **output: Any) -> Path:  # fmt: skip
    """A config at DEBUG (JSON logs) with ``output`` fields; the input's ``security`` is its tls/sasl.
    Every config also carries an encrypted client key with its password on a Kafka tls block that is
    not enabled: never used, never printed."""
    unused_tls = {
        "enabled": False,
        "client_certs": [{"cert": CLIENT.cert, "key": ENCRYPTED_KEY, "password": TLS_KEY_PW}],
    }
    security = {"tls": unused_tls, **(security or {})}
    top: dict[str, Any] = {"logger": {"level": "DEBUG", "format": "json"}}
    if input_kind == "kafka":
        top["input"] = {"label": "in", "kafka": {"addresses": [brokers], "topics": [names["topic"]],
                                                 "consumer_group": names["group"], **security}}  # fmt: skip
    return write_config(
        path, brokers=brokers, topics=[names["topic"]], group=names["group"], nats_url="unused",
        subject=names["prefix"] + '.${! meta("kafka_partition") }', extra_input=security,
        extra_output={"urls": urls if isinstance(urls, list) else [urls], "max_reconnects": 0, **output},
        bridge={"stream": {"name": names["stream"]}}, top=top,
    )  # fmt: skip


def commands(name: str, cfg: Path, code: int, says: str, group: str, which: str = "bvts") -> list[Case]:
    """backfill --json, verify --json, translate, streams ensure (``which``: their initials)."""
    every = {
        "b": ("backfill", "-c", str(cfg), "--json", "--from", "earliest"),
        "v": ("verify", "-c", str(cfg), "--json"),
        "t": ("translate", "-c", str(cfg), "--group", group, "--json"),
        "s": ("streams", "ensure", "-c", str(cfg)),
        "r": ("run", "-c", str(cfg)),
    }
    return [Case(f"{name}/{every[c][0]}", every[c], code, says) for c in which]


async def test_no_secret_in_any_command_or_failure_path(brokers: Brokers, names: dict, workdir: Path) -> None:
    """Every auth form with its own secret; every command on its working and failing paths."""
    await create_topic(brokers.kafka.bootstrap, names["topic"], 1)
    await produce(brokers.kafka.bootstrap, names["topic"], sample_records(1, 3))
    nats_port, dead = brokers.nats.port, devenv.free_port()
    plain_kafka, sasl_kafka = brokers.kafka.bootstrap, brokers.sasl
    nats = f"nats://127.0.0.1:{nats_port}"
    user_pw = {"auth": {"user": "bridge", "password": NATS_PW}}
    nkey_file = workdir / "user.nk"
    nkey_file.write_text(FILE_SEED + "\n")
    creds_file = workdir / "user.creds"
    creds_file.write_text(CREDS_USER.creds())
    cases: list[Case] = []

    def cfg(name: str, **kwargs: Any) -> Path:
        return secret_config(workdir / f"{name}.yaml", names, **kwargs)

    # 1. Working, at DEBUG: SCRAM to Kafka, user/password to NATS.
    scram = {"sasl": [{"mechanism": "SCRAM-SHA-256", "username": "alice", "password": SCRAM_PW}]}
    ok = cfg("ok", brokers=sasl_kafka, urls=nats, security=scram, **user_pw)
    run_all(commands("ok", ok, 0, f"stream {names['stream']} created", names["group"], "s"))
    run_all(commands("ok", ok, 0, '"exit_code": 0', names["group"], "b"))
    cases += commands("ok", ok, 0, '"ok": true', names["group"], "vt")

    # 2. NATS refuses each form (Kafka works: PLAINTEXT listener).
    refused = {
        "wrong-password": {"urls": nats, "auth": {"user": "bridge", "password": NATS_WRONG}},
        "token": {"urls": nats, "auth": {"token": NATS_TOKEN}},
        "nkey": {"urls": nats, "auth": {"nkey": INLINE_SEED}},
        "nkey-file": {"urls": nats, "auth": {"nkey_file": str(nkey_file)}},
        "creds-file": {"urls": nats, "auth": {"user_credentials_file": str(creds_file)}},
        "user-jwt": {"urls": nats, "auth": {"user_jwt": JWT_USER.jwt, "user_nkey_seed": JWT_USER.seed}},
        "url": {"urls": f"nats://bridge:{URL_PW}@127.0.0.1:{nats_port}"},
        "url-without-scheme": {"urls": f"nats://127.0.0.1:{dead},bridge:{BARE_PW}@127.0.0.1:{nats_port}"},
        "url-token": {"urls": f"nats://{URL_TOKEN}@127.0.0.1:{nats_port}"},
        "url-encoded": {"urls": f"nats://bridge:{quote(ENCODED_PW, safe='')}@127.0.0.1:{nats_port}"},
    }
    for form, output in refused.items():
        which = "bvts" if form in ("wrong-password", "creds-file", "url-without-scheme") else "bs"
        cases += commands(form, cfg(form, brokers=plain_kafka, **output), 3, "NATS (", names["group"], which)
    # the TLS client key's password: wrong (a config error at the first connection) and right (the key
    # loads; this server does not ask for TLS, so nats-py connects without it and the run works)
    for form, password, code, says in (("tls-key-wrong", "wrong-" + TLS_KEY_PW[::-1], 2, "cannot decrypt"),
                                       ("tls-key", TLS_KEY_PW, 0, "")):  # fmt: skip
        tls = {"enabled": True, "skip_cert_verify": True,
               "client_certs": [{"cert": CLIENT.cert, "key": ENCRYPTED_KEY, "password": password}]}  # fmt: skip
        cases += commands(form, cfg(form, brokers=plain_kafka, urls=nats, tls=tls, **user_pw), code, says,
                          names["group"], "bvts")  # fmt: skip

    # 3. Kafka refuses each form (NATS works).
    kafka_refused = {
        "sasl-plain": {"sasl": [{"mechanism": "PLAIN", "username": "alice", "password": KAFKA_WRONG}]},
        "sasl-scram": {"sasl": [{"mechanism": "SCRAM-SHA-256", "username": "alice", "password": KAFKA_WRONG}]},
        "sasl-oauthbearer": {"sasl": [{"mechanism": "OAUTHBEARER", "token": OAUTH_TOKEN,
                                       "extensions": {"ext": OAUTH_EXTENSION}}]},
    }  # fmt: skip
    for form, security in kafka_refused.items():
        config = cfg(form, brokers=sasl_kafka, urls=nats, security=security, **user_pw)
        cases += commands(form, config, 3, "Kafka (", names["group"], "bvt")
    legacy = {"sasl": {"mechanism": "SCRAM-SHA-256", "user": "alice", "password": LEGACY_WRONG}}
    config = cfg("legacy", brokers=sasl_kafka, urls=nats, input_kind="kafka", security=legacy, **user_pw)
    cases += commands("legacy", config, 3, "Kafka (", names["group"], "bvt")

    # 4. Unreachable: NATS URLs carrying credentials in every scheme; Kafka with a SASL password.
    # (nats-py refuses a list mixing websocket and other URLs: two configs)
    urls = [f"nats://bridge:{URL_PW}@127.0.0.1:{dead}", f"bridge:{BARE_PW}@127.0.0.1:{dead}",
            f"tls://bridge:{NATS_WRONG}@127.0.0.1:{dead}"]  # fmt: skip
    config = cfg("nats-unreachable", brokers=plain_kafka, urls=urls)
    cases += commands("nats-unreachable", config, 3, "unreachable", names["group"], "rbvts")
    urls = [
        f"ws://{URL_TOKEN}@127.0.0.1:{dead}",
        f"wss://bridge:{quote(ENCODED_PW, safe='')}@127.0.0.1:{dead}",
    ]
    config = cfg("nats-unreachable-ws", brokers=plain_kafka, urls=urls)
    cases += commands("nats-unreachable-ws", config, 3, "unreachable", names["group"], "rbvts")
    plain = {"sasl": [{"mechanism": "PLAIN", "username": "alice", "password": KAFKA_PW}]}
    config = cfg("kafka-unreachable", brokers=f"127.0.0.1:{dead}", urls=nats, security=plain, **user_pw)
    cases += commands("kafka-unreachable", config, 3, "unreachable", names["group"], "rbvt")

    # 5. A broken config: every secret in a field of the wrong type, an unknown field; and invalid YAML.
    broken = cfg("broken", brokers=plain_kafka, urls=nats, security={"sasl": [{"mechanism": "PLAIN", "username": "alice",
                 "password": [KAFKA_PW], "extensions": [OAUTH_EXTENSION]}]},
                 auth={"user": "bridge", "password": {"pw": NATS_PW}, "token": [NATS_TOKEN, 20260131],
                       "nkey": [INLINE_SEED], "user_jwt": [JWT_USER.jwt], "user_nkey_seed": {"s": JWT_USER.seed}},
                 tls={"client_certs": [{"cert": "c", "key": [KEY_BODY], "password": [TLS_KEY_PW]}]},
                 surprise=SCRAM_PW)  # fmt: skip
    cases += [Case("broken/lint", ("lint", str(broken)), 2, "the value is not shown")]
    cases += commands("broken", broken, 2, "unknown field", names["group"], "rb")
    invalid = workdir / "invalid.yaml"
    invalid.write_text(
        ok.read_text().replace(f"password: {SCRAM_PW}", f'password: "{SCRAM_PW}\n  x: [') + "\n"
    )
    cases += [Case("invalid/lint", ("lint", str(invalid)), 2, "invalid YAML")]

    run_all(cases)


async def test_an_unquoted_numeric_password_is_the_text_written(
    brokers: Brokers, names: dict, workdir: Path
) -> None:
    """``password: ${NATS_PASSWORD}`` with NATS_PASSWORD=0123: YAML reads the number 83 there; the bridge
    sends the text written, ``0123``, as Redpanda Connect does, and the server lets it in."""
    await create_topic(brokers.kafka.bootstrap, names["topic"], 1)
    await produce(brokers.kafka.bootstrap, names["topic"], sample_records(1, 3))
    auth = 'authorization { users = [ { user: "bridge", password: "0123" } ] }'
    with devenv.NatsServer(name="numeric-nats", extra_conf=auth) as server:
        url = f"nats://127.0.0.1:{server.port}"
        await create_stream(
            f"nats://bridge:0123@127.0.0.1:{server.port}", names["stream"], [names["prefix"] + ".>"]
        )
        cfg = write_config(
            workdir / "numeric.yaml", brokers=brokers.kafka.bootstrap, topics=[names["topic"]],
            group=names["group"], nats_url=url, subject=names["prefix"] + ".x",
            extra_output={"max_reconnects": 0, "auth": {"user": "bridge", "password": "PASSWORD_HERE"}},
        )  # fmt: skip
        cfg.write_text(cfg.read_text().replace("PASSWORD_HERE", "${NATS_PASSWORD}"))
        assert "password: ${NATS_PASSWORD}\n" in cfg.read_text()  # unquoted
        done = run_cli(
            "backfill", "-c", str(cfg), "--json", "--from", "earliest", env={"NATS_PASSWORD": "0123"}
        )
        assert done.returncode == 0, done.stdout + done.stderr[-3000:]
        assert await count(f"nats://bridge:0123@127.0.0.1:{server.port}", names["stream"]) == 3
