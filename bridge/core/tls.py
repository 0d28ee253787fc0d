"""``tls`` (Redpanda Connect's block, the Kafka input's and the NATS output's) → ``ssl.SSLContext``.

Owns reading the fields as Go's ``crypto/tls`` reads them:

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

Certificate and key files are read through ``bridge.core.localfiles`` (a regular file of at most
1 MiB); OpenSSL reads only private copies of what was read (ssl cannot load certificates or keys
from memory). Material that cannot be used (a missing file, a wrong key password) is a
``ConfigError`` naming the field. Used by both adapters (``bridge.kafka.options``,
``bridge.jetstream.options``). Pure module: imports neither aiokafka nor nats.
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

from bridge.core.config import TLS
from bridge.core.errors import ConfigError, Problem
from bridge.core.localfiles import read_field

__all__ = ["ssl_context"]

# pbeWithMD5AndDES-CBC (1.2.840.113549.1.5.3), DER-encoded, as it appears in an encrypted PKCS#8 key
_PBE_MD5_DES = bytes.fromhex("06092a864886f70d010503")
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)


def ssl_context(tls: TLS, where: str = "output.nats_jetstream.tls") -> ssl.SSLContext | None:
    """The client ``SSLContext`` for ``tls`` (None when TLS is not enabled). ``where`` is the dotted
    path of the ``tls`` block, for the ``ConfigError`` raised when its material cannot be loaded."""
    if not tls.enabled:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # certificate and host name verification on
    if tls.root_cas_file:
        _load_roots(ctx, f"{where}.root_cas_file", read_field(tls.root_cas_file, f"{where}.root_cas_file"))
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
            cert_pem = read_field(cert.cert_file, f"{path}.cert_file")
            key_pem = read_field(cert.key_file, f"{path}.key_file")
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
