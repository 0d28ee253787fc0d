"""``output.nats_jetstream`` connection fields → keyword arguments for ``nats.connect``.

Owns ``urls`` (comma items split), ``label`` as the connection name, ``auth.*``, ``tls.*`` and
``tls_handshake_first``. Reconnection is *not* nats-py's: the sink re-establishes connections itself
under ``retry.nats_connect`` so that unacknowledged publishes are re-sent in order, so every
connection is made with ``allow_reconnect=False``.

TLS: ``enable_renegotiation: false`` (the default, like Go's ``RenegotiateNever``) sets OpenSSL's
``OP_NO_RENEGOTIATION``; ``true`` leaves OpenSSL's default, which accepts *secure* renegotiation
requested by the server (what Python's ssl allows; insecure legacy renegotiation is never allowed).
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bridge.config import TLS, JetStreamOutput, NatsAuth


def ssl_context(tls: TLS) -> ssl.SSLContext | None:
    """The client ``SSLContext`` for ``tls`` (None when TLS is not enabled)."""
    if not tls.enabled:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if tls.root_cas_file:
        ctx.load_verify_locations(cafile=tls.root_cas_file)
    if tls.root_cas:
        ctx.load_verify_locations(cadata=tls.root_cas)
    if tls.skip_cert_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if not tls.enable_renegotiation:
        ctx.options |= ssl.OP_NO_RENEGOTIATION
    for cert in tls.client_certs:
        password = cert.password or None
        if cert.cert_file:
            ctx.load_cert_chain(cert.cert_file, cert.key_file, password=password)
        else:
            _load_inline_chain(ctx, cert.cert, cert.key, password)
    return ctx


def _load_inline_chain(ctx: ssl.SSLContext, cert: str, key: str, password: str | None) -> None:
    # ssl can only read certificate chains from files: write them to private temp files briefly.
    with tempfile.TemporaryDirectory(prefix="kjb-tls-") as tmp:
        cert_path, key_path = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        for path, body in ((cert_path, cert), (key_path, key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(body)
        ctx.load_cert_chain(str(cert_path), str(key_path), password=password)


def _jwt_callbacks(jwt: str, seed: str) -> tuple[Callable[[], bytearray], Callable[[str], bytes]]:
    import nkeys  # nats-py's own optional dependency for NKeys

    def user_jwt() -> bytearray:
        return bytearray(jwt.strip().encode())

    def signature(nonce: str) -> bytes:
        kp = nkeys.from_seed(bytearray(seed.strip().encode()))
        try:
            return base64.b64encode(kp.sign(nonce.encode()))
        finally:
            kp.wipe()

    return user_jwt, signature


def auth_options(auth: NatsAuth) -> dict[str, Any]:
    if auth.user_credentials_file:
        return {"user_credentials": auth.user_credentials_file}
    if auth.user_jwt and auth.user_nkey_seed:
        jwt_cb, sig_cb = _jwt_callbacks(auth.user_jwt, auth.user_nkey_seed)
        return {"user_jwt_cb": jwt_cb, "signature_cb": sig_cb}
    if auth.nkey_file:
        return {"nkeys_seed": auth.nkey_file}
    if auth.nkey:
        return {"nkeys_seed_str": auth.nkey}
    if auth.user:
        return {"user": auth.user, "password": auth.password or ""}
    if auth.token:
        return {"token": auth.token}
    return {}


def connect_options(out: JetStreamOutput, name: str) -> dict[str, Any]:
    """Keyword arguments for one ``nats.connect`` attempt (no library-side reconnection)."""
    opts: dict[str, Any] = {
        "servers": list(out.urls),
        "allow_reconnect": False,
        # nats-py tries each server of the pool until it has failed more than this many times;
        # 1 bounds one connect() call to about two tries per server.
        "max_reconnect_attempts": 1,
        "reconnect_time_wait": 0.2,
        "connect_timeout": 2,
        # Publishes are queued by the sink, never by nats-py: a large pending buffer keeps nats-py from
        # forcing a flush inside publish; the sink bounds what is queued with max_in_flight.
        "pending_size": 256 * 1024 * 1024,
        "tls_handshake_first": out.tls_handshake_first,
    }
    if name:
        opts["name"] = name
    ctx = ssl_context(out.tls)
    if ctx is not None:
        opts["tls"] = ctx
        if out.tls.skip_cert_verify:
            opts["tls_hostname"] = None
    opts.update(auth_options(out.auth))
    return opts
