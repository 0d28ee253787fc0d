"""``output.nats_jetstream`` connection fields → keyword arguments for ``nats.connect``.

Owns ``urls`` (comma items split by config; credentials in them), ``label`` as the connection name,
``auth.*``, ``tls.*`` (the context from ``bridge.core.tls``) and ``tls_handshake_first``. Reconnection
is *not* nats-py's: the publisher re-establishes connections itself under ``retry.nats_connect`` so
that unacknowledged publishes are re-sent in order, so every connection is made with
``allow_reconnect=False``.

Auth (config allows one method; ``url_credentials`` and one ``auth.*`` method together is a lint
error): ``nkey`` / ``user_nkey_seed`` take a seed (``SU...``) or a private key (``P...``, turned into
the user seed); ``nkey_file`` holds a seed, alone or on a line of its own, and is read once at start;
``user_credentials_file`` is checked at start and read by nats-py at each connection (so a rotated
file is picked up). Keys and files that cannot work are a ``ConfigError`` naming the field. Credentials
in the URLs (``nats://user:pass@host``, ``nats://token@host``) are moved out of the URLs into nats-py's
``user``/``password`` (or ``token``) options when every URL carries the same ones, so that no log line
or error message shows them.

Every credential file (``nkey_file``, ``user_credentials_file``, and the TLS files) is read through
``bridge.core.localfiles``: a regular file of at most 1 MiB, never a FIFO or a device, so no path can
make the bridge block or read without end.

TLS material or credentials that cannot be used (a missing file, a wrong key password, a malformed
seed) are a ``ConfigError`` naming the field (exit code 2, nothing connected). ``connect_options`` does
not raise it (the pipeline builds the options before its run starts): it returns it as
``ConnectOptions.problem``; the publisher raises it at its first connection attempt, inside the run,
and other callers use ``opts.checked()``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bridge.core.config import JetStreamOutput, NatsAuth, url_credentials
from bridge.core.errors import BridgeError, ConfigError, Problem
from bridge.core.localfiles import read_field
from bridge.core.tls import ssl_context

OUTPUT = "output.nats_jetstream"


class ConnectOptions(dict[str, Any]):
    """Keyword arguments for ``nats.connect``; ``problem`` is what made them unusable, if anything.
    Callers connect with ``**opts.checked()`` (the sink checks ``problem`` itself)."""

    problem: BridgeError | None = None

    def checked(self) -> ConnectOptions:
        """These options, or the ``problem`` raised."""
        if self.problem is not None:
            raise self.problem
        return self


def _problem(path: str, message: str) -> ConfigError:
    return ConfigError([Problem(path, 0, message)])


# --------------------------------------------------------------------------- auth


def _seed(value: str, where: str) -> str:
    """An NKey seed from a seed (``S...``) or a private key (``P...``, taken as a user key), checked."""
    import nkeys  # nats-py's own optional dependency for NKeys

    value = value.strip()
    try:
        if value.startswith("P"):
            raw = base64.b32decode(value + "=" * (-len(value) % 8))
            value = str(nkeys.encode_seed(raw[1:33], nkeys.PREFIX_BYTE_USER).decode())
        nkeys.from_seed(bytearray(value.encode())).wipe()
    except (binascii.Error, ValueError, IndexError, nkeys.NkeysError) as exc:
        raise _problem(where, "not a valid NKey seed or private key") from exc
    return value


def _read(path: str, where: str) -> str:
    return read_field(path, where).decode("utf-8", "replace")


_SEED_LINE = re.compile(r"^\s*(S[A-Z2-7]{55,})\s*$", re.MULTILINE)


def _jwt_callbacks(jwt: str, seed: str) -> tuple[Callable[[], bytearray], Callable[[str], bytes]]:
    import nkeys  # nats-py's own optional dependency for NKeys

    def user_jwt() -> bytearray:
        return bytearray(jwt.strip().encode())

    def signature(nonce: str) -> bytes:
        kp = nkeys.from_seed(bytearray(seed.encode()))
        try:
            return base64.b64encode(kp.sign(nonce.encode()))
        finally:
            kp.wipe()

    return user_jwt, signature


def auth_options(auth: NatsAuth) -> dict[str, Any]:
    """``auth.*`` (one method, enforced by config) → ``nats.connect`` keyword arguments. Files and keys
    are checked here, once, at start: a ``ConfigError`` names the field (nats-py would fail every
    connection attempt, or loop forever on a file without a JWT)."""
    where = f"{OUTPUT}.auth"
    if auth.user_credentials_file:
        text = _read(auth.user_credentials_file, f"{where}.user_credentials_file")
        if "BEGIN NATS USER JWT" not in text or "BEGIN USER NKEY SEED" not in text:
            raise _problem(
                f"{where}.user_credentials_file",
                "not a NATS credentials file (it needs a USER JWT block and a USER NKEY SEED block)",
            )
        return {"user_credentials": auth.user_credentials_file}
    if auth.user_jwt and auth.user_nkey_seed:
        seed = _seed(auth.user_nkey_seed.get_secret_value(), f"{where}.user_nkey_seed")
        jwt_cb, sig_cb = _jwt_callbacks(auth.user_jwt.get_secret_value(), seed)
        return {"user_jwt_cb": jwt_cb, "signature_cb": sig_cb}
    if auth.nkey_file:
        # a bare seed, or a decorated file with the seed on a line of its own (as Go reads it)
        found = _SEED_LINE.search(_read(auth.nkey_file, f"{where}.nkey_file"))
        if found is None:
            raise _problem(f"{where}.nkey_file", f"no NKey seed in {auth.nkey_file!r}")
        return {"nkeys_seed_str": _seed(found.group(1), f"{where}.nkey_file")}
    if auth.nkey:
        return {"nkeys_seed_str": _seed(auth.nkey.get_secret_value(), f"{where}.nkey")}
    if auth.user:
        return {"user": auth.user, "password": auth.password.get_secret_value() if auth.password else ""}
    if auth.token:
        return {"token": auth.token.get_secret_value()}
    return {}


def _with_scheme(url: str) -> str:
    """``host:4222`` → ``nats://host:4222``, as nats-py reads it; and so that every URL printed is one
    ``bridge.ops.log.redact_text`` recognizes (``token@host`` alone could be an e-mail address)."""
    return url if "://" in url else f"nats://{url}"


def split_url_credentials(urls: tuple[str, ...]) -> tuple[list[str], dict[str, Any]]:
    """URLs without their credentials, and those credentials as ``nats.connect`` options, when every
    URL carries the same ones; otherwise the URLs as given (nats-py then sends each URL's own). Either
    way each URL has a scheme."""
    found = {url_credentials(url) for url in urls}
    if len(found) != 1 or None in found:
        return [_with_scheme(url) for url in urls], {}
    creds = found.pop()
    assert creds is not None
    stripped = []
    for url in urls:
        parts = urlsplit(_with_scheme(url))
        stripped.append(urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2])))
    user, password = creds
    return stripped, ({"token": user} if password is None else {"user": user, "password": password})


def connect_options(out: JetStreamOutput, name: str) -> ConnectOptions:
    """Keyword arguments for one ``nats.connect`` attempt (no library-side reconnection)."""
    servers, url_auth = split_url_credentials(out.urls)
    opts = ConnectOptions(
        servers=servers,
        allow_reconnect=False,
        # nats-py tries each server of the pool until it has failed more than this many times;
        # 1 bounds one connect() call to about two tries per server.
        max_reconnect_attempts=1,
        reconnect_time_wait=0.2,
        connect_timeout=2,
        # Publishes are queued by the sink, never by nats-py: a large pending buffer keeps nats-py from
        # forcing a flush inside publish; the sink bounds what is queued with max_in_flight.
        pending_size=256 * 1024 * 1024,
        tls_handshake_first=out.tls_handshake_first,
    )
    if name:
        opts["name"] = name
    try:
        ctx = ssl_context(out.tls)
        auth = auth_options(out.auth)
    except ConfigError as exc:
        opts.problem = exc
        return opts
    if ctx is not None:
        opts["tls"] = ctx
    opts.update(url_auth)
    opts.update(auth)
    return opts
