"""``output.nats_jetstream.auth.*`` and credentials in ``urls``, each against a nats-server that requires it.

Three servers for the module: one with a user/password user and an NKey user, one with a token, one in
operator mode (JWTs made by ``secured_support.Operator``, MEMORY resolver). Each test runs the real
``backfill`` CLI on three records and checks the stream; wrong credentials must end the run with exit
code 3, an error naming the server and saying authorization failed, and nothing committed.

The Kafka side does not matter here: the tests run on the first Kafka implementation only.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nkeys
import pytest

from bridgedev.brokers import NatsServer
from tests.conftest import KAFKA_PARAMS, Kafka
from tests.integration.secured_support import (
    Operator,
    Run,
    User,
    create_stream_as,
    keypair,
    public,
    run_backfill,
    seed,
    stream_messages,
)
from tests.support import Record, committed_offsets, create_topic, produce

pytestmark = pytest.mark.integration
# the Kafka side is not what these tests are about: one implementation is enough
one_kafka = pytest.mark.parametrize("kafka", KAFKA_PARAMS[:1], indirect=True)

PASSWORD = "alice-secret"
TOKEN = "s3cr3t-t0ken"


@dataclass(frozen=True)
class Servers:
    basic: NatsServer  # user alice/PASSWORD and an NKey user
    token: NatsServer  # token TOKEN
    operator: NatsServer  # operator mode
    nkey: Any  # the NKey user's key pair
    op: Operator
    user: User  # a user of the operator's application account


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    nkey_user = keypair(nkeys.PREFIX_BYTE_USER)
    basic = NatsServer(name="auth-basic", extra_conf=(
        "authorization {\n  users: [\n"
        f'    {{user: alice, password: "{PASSWORD}"}}\n'
        f"    {{nkey: {public(nkey_user)}}}\n"
        "  ]\n}\n"
    ))  # fmt: skip
    token = NatsServer(name="auth-token", extra_conf=f'authorization {{\n  token: "{TOKEN}"\n}}\n')
    op = Operator()
    operator = NatsServer(name="auth-operator", extra_conf=op.server_conf())
    with basic, token, operator:
        yield Servers(basic, token, operator, nkey_user, op, op.user("bridge"))


def with_creds(url: str, user: str, password: str | None = None) -> str:
    userinfo = user if password is None else f"{user}:{password}"
    return url.replace("nats://", f"nats://{userinfo}@")


async def prepare(kafka: Kafka, names: dict[str, str], url: str, **admin: Any) -> None:
    """A one-partition topic with three records and a stream for the test's subjects."""
    await create_topic(kafka.bootstrap, names["topic"], 1)
    await produce(kafka.bootstrap, names["topic"], [Record(0, b"k", f"v{i}".encode()) for i in range(3)])
    await create_stream_as(url, names["stream"], [f"{names['prefix']}.>"], **admin)


def backfill(
    kafka: Kafka, names: dict[str, str], workdir: Path, url: str, auth: dict[str, Any] | None = None
) -> Run:
    extra: dict[str, Any] = {"max_reconnects": 0}
    if auth is not None:
        extra["auth"] = auth
    return run_backfill(
        workdir, brokers=kafka.bootstrap, topics=[names["topic"]], group=names["group"], nats_url=url,
        subject=names["prefix"] + ".out", extra_output=extra,
    )  # fmt: skip


async def assert_delivered(run: Run, url: str, names: dict[str, str], **admin: Any) -> None:
    assert run.code == 0, run.text[-3000:]
    assert run.summary["records"] == 3
    stored = await stream_messages(url, names["stream"], **admin)
    assert [data for _, _, data in stored] == [b"v0", b"v1", b"v2"]


async def assert_refused(run: Run, server: NatsServer, kafka: Kafka, names: dict[str, str]) -> None:
    assert run.code == 3, run.text[-3000:]
    assert f"NATS ({server.url}) refused the connection: authorization failed" in run.text
    assert await committed_offsets(kafka.bootstrap, names["group"], names["topic"]) == {}


# ----------------------------------------------------------------------------------- user / password


@one_kafka
async def test_user_and_password(servers: Servers, kafka: Kafka, names: dict, workdir: Path) -> None:
    url = servers.basic.url
    await prepare(kafka, names, with_creds(url, "alice", PASSWORD))
    run = backfill(kafka, names, workdir, url, {"user": "alice", "password": PASSWORD})
    await assert_delivered(run, with_creds(url, "alice", PASSWORD), names)


@one_kafka
async def test_user_and_password_in_the_url_are_not_shown(
    servers: Servers, kafka: Kafka, names: dict, workdir: Path
) -> None:
    url = with_creds(servers.basic.url, "alice", PASSWORD)
    await prepare(kafka, names, url)
    run = backfill(kafka, names, workdir, url)
    await assert_delivered(run, url, names)
    assert PASSWORD not in run.text  # neither in the logs nor in the summary


@one_kafka
async def test_wrong_password_in_the_url(servers: Servers, kafka: Kafka, names: dict, workdir: Path) -> None:
    await create_topic(kafka.bootstrap, names["topic"], 1)
    run = backfill(kafka, names, workdir, with_creds(servers.basic.url, "alice", "bad-pass-123"))
    await assert_refused(run, servers.basic, kafka, names)
    assert "bad-pass-123" not in run.text


@one_kafka
async def test_wrong_password(servers: Servers, kafka: Kafka, names: dict, workdir: Path) -> None:
    await create_topic(kafka.bootstrap, names["topic"], 1)
    run = backfill(kafka, names, workdir, servers.basic.url, {"user": "alice", "password": "nope"})
    await assert_refused(run, servers.basic, kafka, names)


# ----------------------------------------------------------------------------------- token


@one_kafka
@pytest.mark.parametrize("where", ["auth", "url"])
async def test_token(servers: Servers, kafka: Kafka, names: dict, workdir: Path, where: str) -> None:
    admin = {"token": TOKEN}
    await prepare(kafka, names, servers.token.url, **admin)
    if where == "auth":
        run = backfill(kafka, names, workdir, servers.token.url, {"token": TOKEN})
    else:
        run = backfill(kafka, names, workdir, with_creds(servers.token.url, TOKEN))
    await assert_delivered(run, servers.token.url, names, **admin)
    assert TOKEN not in run.text


@one_kafka
async def test_wrong_token(servers: Servers, kafka: Kafka, names: dict, workdir: Path) -> None:
    await create_topic(kafka.bootstrap, names["topic"], 1)
    run = backfill(kafka, names, workdir, servers.token.url, {"token": "not-it"})
    await assert_refused(run, servers.token, kafka, names)


# ----------------------------------------------------------------------------------- NKeys


def private_key(seed_text: str) -> str:
    """The ``P...`` private-key form of an NKey seed."""
    return str(nkeys.from_seed(bytearray(seed_text.encode())).private_key.decode())


@one_kafka
@pytest.mark.parametrize("form", ["nkey-seed", "nkey-private-key", "nkey_file"])
async def test_nkey(servers: Servers, kafka: Kafka, names: dict, workdir: Path, form: str) -> None:
    admin_url = with_creds(servers.basic.url, "alice", PASSWORD)
    await prepare(kafka, names, admin_url)
    user_seed = seed(servers.nkey)
    if form == "nkey_file":
        path = workdir / "user.nk"
        path.write_text(user_seed + "\n")
        auth = {"nkey_file": str(path)}
    else:
        auth = {"nkey": user_seed if form == "nkey-seed" else private_key(user_seed)}
        assert auth["nkey"][0] == ("S" if form == "nkey-seed" else "P")
    run = backfill(kafka, names, workdir, servers.basic.url, auth)
    await assert_delivered(run, admin_url, names)
    assert user_seed not in run.text


@one_kafka
async def test_unknown_nkey(servers: Servers, kafka: Kafka, names: dict, workdir: Path) -> None:
    await create_topic(kafka.bootstrap, names["topic"], 1)
    stranger = keypair(nkeys.PREFIX_BYTE_USER)
    run = backfill(kafka, names, workdir, servers.basic.url, {"nkey": seed(stranger)})
    await assert_refused(run, servers.basic, kafka, names)


# ----------------------------------------------------------------------------------- JWTs (operator mode)


def creds_file(workdir: Path, user: User, name: str) -> str:
    path = workdir / f"{name}.creds"
    path.write_text(user.creds())
    return str(path)


def decode_claims(jwt: str) -> dict[str, Any]:
    import json

    payload = jwt.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def test_the_jwts_are_well_formed(servers: Servers) -> None:
    """The hand-written JWTs: the user is issued by the account, the account by the operator, and the
    account's limits enable JetStream."""
    user, account = decode_claims(servers.user.jwt), decode_claims(servers.op.account_jwt)
    assert user["iss"] == account["sub"] == public(servers.op.account)
    assert user["nats"]["type"] == "user"
    assert account["iss"] == public(servers.op.operator)
    assert account["nats"]["limits"]["disk_storage"] == -1


@one_kafka
@pytest.mark.parametrize("form", ["user_credentials_file", "user_jwt+user_nkey_seed"])
async def test_user_jwt(servers: Servers, kafka: Kafka, names: dict, workdir: Path, form: str) -> None:
    admin_creds = creds_file(workdir, servers.op.user("admin"), "admin")
    url = servers.operator.url
    await prepare(kafka, names, url, user_credentials=admin_creds)
    user = servers.user
    if form == "user_credentials_file":
        auth = {"user_credentials_file": creds_file(workdir, user, "bridge")}
    else:
        auth = {"user_jwt": user.jwt, "user_nkey_seed": user.seed}
    run = backfill(kafka, names, workdir, url, auth)
    await assert_delivered(run, url, names, user_credentials=admin_creds)
    # the connection really was the account's (not some default one)
    closed = servers.operator.monitor("/connz?state=closed&auth=true&limit=1024")["connections"]
    mine = [
        c for c in closed if c.get("name") == "test-bridge" and c.get("account") == public(servers.op.account)
    ]
    assert mine, closed[-3:]


@one_kafka
@pytest.mark.parametrize("problem", ["unknown-account", "wrong-seed"])
async def test_user_jwt_refused(
    servers: Servers, kafka: Kafka, names: dict, workdir: Path, problem: str
) -> None:
    await create_topic(kafka.bootstrap, names["topic"], 1)
    if problem == "unknown-account":  # a well-formed user of an account the server does not know
        user = servers.op.user("stranger", account=keypair(nkeys.PREFIX_BYTE_ACCOUNT))
    else:  # the right JWT, signed with another key
        user = User(servers.user.jwt, seed(keypair(nkeys.PREFIX_BYTE_USER)))
    run = backfill(
        kafka, names, workdir, servers.operator.url, {"user_jwt": user.jwt, "user_nkey_seed": user.seed}
    )
    await assert_refused(run, servers.operator, kafka, names)
