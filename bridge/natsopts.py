"""``output.nats_jetstream`` connection fields → keyword arguments for ``nats.connect``; ``tls`` →
``ssl.SSLContext`` (for the Kafka input too).

Owns ``urls`` (comma items split by config; credentials in them), ``label`` as the connection name,
``auth.*``, ``tls.*`` and ``tls_handshake_first``. Reconnection is *not* nats-py's: the sink
re-establishes connections itself under ``retry.nats_connect`` so that unacknowledged publishes are
re-sent in order, so every connection is made with ``allow_reconnect=False``.

Auth (config allows one method; ``url_credentials`` and one ``auth.*`` method together is a lint
error): ``nkey`` / ``user_nkey_seed`` take a seed (``SU...``) or a private key (``P...``, turned into
the user seed); ``nkey_file`` holds a seed, alone or on a line of its own, and is read once at start;
``user_credentials_file`` is checked at start and read by nats-py at each connection (so a rotated
file is picked up). Keys and files that cannot work are a ``ConfigError`` naming the field. Credentials
in the URLs (``nats://user:pass@host``, ``nats://token@host``) are moved out of the URLs into nats-py's
``user``/``password`` (or ``token``) options when every URL carries the same ones, so that no log line
or error message shows them.

TLS, as Go's ``crypto/tls`` reads the same fields:

- ``root_cas`` / ``root_cas_file`` *replace* the system's CAs (Go's ``RootCAs``); without them the
  system's CAs are used.
- ``skip_cert_verify`` turns off certificate and host name verification.
- ``client_certs``: one certificate (config refuses more: Python's ssl holds one chain per context);
  an encrypted key (PKCS#1 ``Proc-Type: 4,ENCRYPTED`` or PKCS#8 ``ENCRYPTED PRIVATE KEY``) needs
  ``password``; keys encrypted with the obsolete ``pbeWithMD5AndDES-CBC`` are refused, as there.
  OpenSSL is never allowed to prompt for a password on the terminal.
- ``enable_renegotiation: false`` (the default, Go's ``RenegotiateNever``) sets OpenSSL's
  ``OP_NO_RENEGOTIATION``; ``true`` leaves OpenSSL's default, which accepts renegotiation requested
  by the server (Go's ``RenegotiateFreelyAsClient``) — *secure* renegotiation (RFC 5746) only; legacy
  insecure renegotiation is never allowed, and TLS 1.3 has no renegotiation at all.

Every credential file (``nkey_file``, ``user_credentials_file``, ``root_cas_file``, ``cert_file``,
``key_file``) is read through ``bridge.localfiles.read_credential``: a regular file of at most 1 MiB,
never a FIFO or a device, so no path can make the bridge block or read without end. OpenSSL reads
only private copies of what was read (ssl cannot load certificates or keys from memory).

TLS material or credentials that cannot be used (a missing file, a wrong key password, a malformed
seed) are a ``ConfigError`` naming the field (exit code 2, nothing connected). ``connect_options`` does
not raise it (the pipeline builds the options before its run starts): it returns it as
``ConnectOptions.problem``; the sink raises it at its first connection attempt, inside the run, and
other callers use ``opts.checked()``.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import ssl
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bridge import localfiles
from bridge.config import TLS, JetStreamOutput, NatsAuth, url_credentials
from bridge.errors import BridgeError, ConfigError, Problem

OUTPUT = "output.nats_jetstream"

# pbeWithMD5AndDES-CBC (1.2.840.113549.1.5.3), DER-encoded, as it appears in an encrypted PKCS#8 key
_PBE_MD5_DES = bytes.fromhex("06092a864886f70d010503")
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)


class ConnectOptions(dict[str, Any]):
    """Keyword arguments for ``nats.connect``; ``problem`` is what made them unusable, if anything.
    Callers connect with ``**opts.checked()`` (the sink checks ``problem`` itself)."""

    problem: BridgeError | None = None

    def checked(self) -> ConnectOptions:
        """These options, or the ``problem`` raised."""
        if self.problem is not None:
            raise self.problem
        return self


# --------------------------------------------------------------------------- TLS


def ssl_context(tls: TLS, where: str = f"{OUTPUT}.tls") -> ssl.SSLContext | None:
    """The client ``SSLContext`` for ``tls`` (None when TLS is not enabled). ``where`` is the dotted
    path of the ``tls`` block, for the ``ConfigError`` raised when its material cannot be loaded."""
    if not tls.enabled:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # certificate and host name verification on
    if tls.root_cas_file:
        _load_roots(ctx, f"{where}.root_cas_file", _read_bytes(tls.root_cas_file, f"{where}.root_cas_file"))
    if tls.root_cas:
        _load_roots(ctx, f"{where}.root_cas", tls.root_cas.encode())
    if not (tls.root_cas_file or tls.root_cas):
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if tls.skip_cert_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if not tls.enable_renegotiation:
        ctx.options |= ssl.OP_NO_RENEGOTIATION
    for i, cert in enumerate(tls.client_certs):
        path = f"{where}.client_certs[{i}]"
        if cert.cert_file:
            cert_pem = _read_bytes(cert.cert_file, f"{path}.cert_file")
            key_pem = _read_bytes(cert.key_file, f"{path}.key_file")
        else:
            cert_pem, key_pem = cert.cert.encode(), cert.key.get_secret_value().encode()
        _load_pem_chain(ctx, cert_pem, key_pem, cert.password.get_secret_value(), path)
    return ctx


@contextmanager
def _private_files(*bodies: bytes) -> Iterator[list[str]]:
    """``bodies`` in files only this user can read, for the duration of the block: ssl loads
    certificate chains only from files, and a CA file may hold non-ASCII comments that ``cadata``
    refuses."""
    with tempfile.TemporaryDirectory(prefix="kjb-tls-") as tmp:
        paths = []
        for i, body in enumerate(bodies):
            path = os.path.join(tmp, f"{i}.pem")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(body)
            paths.append(path)
        yield paths


def _load_roots(ctx: ssl.SSLContext, where: str, pem: bytes) -> None:
    with _private_files(pem) as (path,):
        try:
            ctx.load_verify_locations(cafile=path)
        except (OSError, ValueError) as exc:
            raise _problem(where, f"cannot load root certificates: {_reason(exc)}") from exc


def _load_pem_chain(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes, password: str, where: str) -> None:
    key_text = key_pem.decode("utf-8", "replace")
    if _encrypted(key_text) and _PBE_MD5_DES in _der_blocks(key_text):
        raise _problem(
            where, "the key is encrypted with the obsolete pbeWithMD5AndDES-CBC, which is not supported"
        )
    # A callable password: OpenSSL must never prompt on the terminal for an encrypted key.
    secret: Callable[[], str] = lambda: password  # noqa: E731
    with _private_files(cert_pem, key_pem) as (cert_path, key_path):
        try:
            ctx.load_cert_chain(cert_path, key_path, password=secret)
        except (OSError, ssl.SSLError, ValueError) as exc:
            if _encrypted(key_text) and not password:
                reason = "the private key is encrypted: set password"
            elif _encrypted(key_text):
                reason = "cannot decrypt the private key with this password"
            else:
                reason = f"the certificate and key do not load or do not match ({_reason(exc)})"
            raise _problem(where, reason) from exc


def _encrypted(key_text: str) -> bool:
    return "ENCRYPTED" in key_text


def _der_blocks(pem: str) -> bytes:
    out = b""
    for match in _PEM_BLOCK.finditer(pem):
        body = "".join(line for line in match.group(2).splitlines() if line and ":" not in line)
        try:
            out += base64.b64decode(body)
        except (binascii.Error, ValueError):
            continue
    return out


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror and not isinstance(exc, ssl.SSLError):
        return exc.strerror
    return str(exc) or type(exc).__name__


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


def _read_bytes(path: str, where: str) -> bytes:
    try:
        return localfiles.read_credential(path)
    except localfiles.FileRefused as exc:
        raise _problem(where, f"cannot read {path!r}: {exc.reason}") from exc


def _read(path: str, where: str) -> str:
    return _read_bytes(path, where).decode("utf-8", "replace")


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
    ``bridge.log.redact_text`` recognizes (``token@host`` alone could be an e-mail address)."""
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
