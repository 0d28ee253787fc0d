"""Secrets never reach the logs or the output: runs with credentials in URLs, passwords, tokens and
NKey seeds (working and refused), at DEBUG, through the real CLI."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import nkeys
import pytest

from bridge import devenv
from tests.conftest import Kafka
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
