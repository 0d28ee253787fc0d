"""Credentials and certificates made by the tests themselves, and the broker configs that require them.

- NATS decentralized auth: operator, account and user NKeys (``nkeys``) and JWTs written out by hand
  (header ``{"typ":"JWT","alg":"ed25519-nkey"}``, base64url without padding, claims ``jti``/``iat``/
  ``iss``/``sub``/``name``/``nats``, an Ed25519 signature of ``header.payload`` by the issuer's key),
  a nats-server config in operator mode with a MEMORY resolver preloaded with the accounts, and a
  standard ``.creds`` file.
- TLS: a CA and leaf certificates from ``trustme``; client keys re-encrypted with ``cryptography`` as
  PKCS#1 (``Proc-Type: 4,ENCRYPTED``) and PKCS#8 (``ENCRYPTED PRIVATE KEY``).
- ``run_backfill``: the bridge's real CLI on a config written by ``tests.support.write_config``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import nkeys
import trustme
import yaml
from cryptography.hazmat.primitives import serialization

from tests.support import run_cli, write_config

# ----------------------------------------------------------------------------------- NKeys and JWTs


def keypair(prefix: int) -> Any:
    """A fresh NKey pair (``nkeys.PREFIX_BYTE_OPERATOR`` / ``_ACCOUNT`` / ``_USER``)."""
    return nkeys.from_seed(nkeys.encode_seed(os.urandom(32), prefix))


def public(kp: Any) -> str:
    return str(kp.public_key.decode())


def seed(kp: Any) -> str:
    return str(kp.seed.decode())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def encode_jwt(issuer: Any, subject: str, name: str, nats_claims: dict[str, Any]) -> str:
    """A NATS JWT for ``subject`` signed by ``issuer`` (an NKey pair)."""
    claims: dict[str, Any] = {
        "jti": "",
        "iat": int(time.time()),
        "iss": public(issuer),
        "sub": subject,
        "name": name,
        "nats": {**nats_claims, "version": 2},
    }
    # jti: a hash of the claims without it, as the JWT library computes it (the server does not check it)
    digest = hashlib.sha256(json.dumps(claims, sort_keys=True).encode()).digest()
    claims["jti"] = base64.b32encode(digest).decode().rstrip("=")
    header = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    payload = _b64(json.dumps(claims).encode())
    signature = issuer.sign(f"{header}.{payload}".encode())
    return f"{header}.{payload}.{_b64(signature)}"


UNLIMITED = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": True,
             "conn": -1, "leaf": -1}  # fmt: skip
# JetStream is enabled for an account whose limits give it storage (-1: unlimited).
JETSTREAM = {"mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}


@dataclass(frozen=True)
class User:
    jwt: str
    seed: str

    def creds(self) -> str:
        """The standard ``.creds`` file text (what ``nsc generate creds`` writes)."""
        return (
            "-----BEGIN NATS USER JWT-----\n"
            f"{self.jwt}\n"
            "------END NATS USER JWT------\n\n"
            "************************* IMPORTANT *************************\n"
            "NKEY Seed printed below can be used to sign and prove identity.\n"
            "NKEYs are sensitive and should be treated as secrets.\n\n"
            "-----BEGIN USER NKEY SEED-----\n"
            f"{self.seed}\n"
            "------END USER NKEY SEED------\n\n"
            "*************************************************************\n"
        )


class Operator:
    """An operator with a system account and one application account with JetStream."""

    def __init__(self) -> None:
        self.operator = keypair(nkeys.PREFIX_BYTE_OPERATOR)
        self.system = keypair(nkeys.PREFIX_BYTE_ACCOUNT)
        self.account = keypair(nkeys.PREFIX_BYTE_ACCOUNT)
        op = public(self.operator)
        self.operator_jwt = encode_jwt(self.operator, op, "test-operator",
                                       {"type": "operator", "system_account": public(self.system)})  # fmt: skip
        self.system_jwt = encode_jwt(self.operator, public(self.system), "SYS",
                                     {"type": "account", "limits": UNLIMITED})  # fmt: skip
        self.account_jwt = encode_jwt(self.operator, public(self.account), "APP", {
            "type": "account", "limits": {**UNLIMITED, **JETSTREAM},
            "default_permissions": {"pub": {}, "sub": {}},
        })  # fmt: skip

    def user(self, name: str, account: Any = None) -> User:
        """A user of the application account (or signed by ``account``, e.g. an unknown one)."""
        kp = keypair(nkeys.PREFIX_BYTE_USER)
        issuer = account if account is not None else self.account
        claims = {"type": "user", "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1}
        return User(encode_jwt(issuer, public(kp), name, claims), seed(kp))

    def server_conf(self) -> str:
        """nats-server config for operator mode with a MEMORY resolver preloaded with both accounts."""
        return (
            f"operator: {json.dumps(self.operator_jwt)}\n"
            f"system_account: {public(self.system)}\n"
            "resolver: MEMORY\n"
            "resolver_preload: {\n"
            f"  {public(self.account)}: {json.dumps(self.account_jwt)}\n"
            f"  {public(self.system)}: {json.dumps(self.system_jwt)}\n"
            "}\n"
        )


# ----------------------------------------------------------------------------------- TLS material


@dataclass(frozen=True)
class Pem:
    cert: str
    key: str


def leaf(ca: trustme.CA, *names: str, rsa: bool = False) -> Pem:
    cert = ca.issue_cert(*names, key_type=trustme.KeyType.RSA if rsa else trustme.KeyType.ECDSA)
    return Pem(
        b"".join(c.bytes() for c in cert.cert_chain_pems).decode(), cert.private_key_pem.bytes().decode()
    )


def encrypted_key(key_pem: str, password: str, form: str) -> str:
    """``key_pem`` re-encrypted: ``pkcs1`` (traditional ``Proc-Type: 4,ENCRYPTED``, RSA keys) or ``pkcs8``."""
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    fmt = (
        serialization.PrivateFormat.TraditionalOpenSSL
        if form == "pkcs1"
        else serialization.PrivateFormat.PKCS8
    )
    raw = key.private_bytes(
        serialization.Encoding.PEM, fmt, serialization.BestAvailableEncryption(password.encode())
    )
    return raw.decode()


def pkcs8(key_pem: str) -> str:
    """An unencrypted PKCS#8 key (what Kafka's PEM key store reads)."""
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def nats_tls_conf(cert_file: str, key_file: str, *, ca_file: str = "", verify: bool = False,
                  handshake_first: bool = False) -> str:  # fmt: skip
    lines = [f"  cert_file: {json.dumps(cert_file)}", f"  key_file: {json.dumps(key_file)}"]
    if ca_file:
        lines.append(f"  ca_file: {json.dumps(ca_file)}")
    if verify:
        lines.append("  verify: true")
    if handshake_first:
        lines.append("  handshake_first: true")
    return "tls {\n" + "\n".join(lines) + "\n}\n"


# ----------------------------------------------------------------------------------- NATS as an admin


# the test's own connections fail fast instead of reconnecting for minutes
FAIL_FAST = {"allow_reconnect": False, "max_reconnect_attempts": 1, "connect_timeout": 5}


async def create_stream_as(url: str, name: str, subjects: list[str], **connect: Any) -> None:
    nc = await nats.connect(url, **FAIL_FAST, **connect)
    try:
        await nc.jetstream().add_stream(name=name, subjects=subjects, allow_direct=True)
    finally:
        await nc.close()


async def stream_messages(url: str, name: str, **connect: Any) -> list[tuple[str, dict[str, str], bytes]]:
    """(subject, headers, data) of every message of a small stream, in order."""
    nc = await nats.connect(url, **FAIL_FAST, **connect)
    try:
        js = nc.jetstream()
        info = await js.stream_info(name)
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1) if info.state.messages else ():
            msg = await js.get_msg(name, seq, direct=True)
            out.append((msg.subject, dict(msg.headers or {}), msg.data or b""))
        return out
    finally:
        await nc.close()


# ----------------------------------------------------------------------------------- the bridge


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def summary(self) -> dict[str, Any]:
        return json.loads(self.stdout[self.stdout.index("{") :])

    @property
    def text(self) -> str:
        return self.stdout + self.stderr


def run_backfill(
    workdir: Path,
    *,
    name: str = "c",
    label: str | None = None,
    env: dict[str, str] | None = None,
    **config: Any,
) -> Run:
    """``backfill -c FILE --json`` on a config from ``write_config(**config)`` (``label``: the output's)."""
    path = write_config(workdir / f"{name}.yaml", **config)
    if label is not None:
        doc = yaml.safe_load(path.read_text())
        doc["output"]["label"] = label
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
    done: subprocess.CompletedProcess[str] = run_cli(
        "backfill", "-c", str(path), "--json", "--from", "earliest", env=env
    )
    return Run(done.returncode, done.stdout, done.stderr)
