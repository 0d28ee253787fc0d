"""nats-py's exceptions → the project's errors: ``translate(exc, servers, tls=...)``, the one translation
of the NATS side, used by the publisher, the admin connection (``streams ensure``, ``verify``,
``translate``) alike (httpx's ``map_exceptions`` is the model), so a refused connection reads the same
in every command.

- refused credentials (nats-py's ``AuthorizationError``, or an ``-ERR 'Authorization Violation'``):
  ``AuthError`` "authorization failed", with what the server said when it said more;
- a certificate that does not verify, a TLS handshake that fails (a server that requires a client
  certificate is named as such): ``AuthError``;
- anything else: ``NatsUnavailable``, with a hint where the failure has a known cause: a server that
  closed the connection after the TLS handshake (it may require a client certificate), or one that
  sent no greeting (a server with ``handshake_first`` waits for the client's TLS handshake).

``servers`` is the comma-joined URL list; credentials in it, and in any detail, are masked
(``bridge.ops.log.redact_text``).
"""

from __future__ import annotations

import ssl

import nats.errors

from bridge.core.errors import AuthError, BridgeError, NatsUnavailable
from bridge.ops.log import redact_text

__all__ = ["translate"]


def translate(exc: BaseException, servers: str, *, tls: bool) -> BridgeError:
    """The project's error for an exception met connecting to (or talking with) ``servers``; ``tls``:
    the connection was made with TLS."""
    if isinstance(exc, BridgeError):
        return exc
    servers = redact_text(servers)
    server = f"NATS ({servers})"
    if isinstance(exc, nats.errors.AuthorizationError) or "authorization" in str(exc).lower():
        said = str(exc).removeprefix("nats: ").strip("'")
        said = "" if said == "authorization failed" else f" ({said})"
        return AuthError(
            server, redact_text(f"authorization failed{said}: check the credentials (auth or urls)")
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return AuthError(server, f"TLS certificate verify failed: {exc.verify_message}")
    if isinstance(exc, ssl.SSLError):
        reason = str(exc.reason or exc)
        if "CERTIFICATE_REQUIRED" in reason:
            reason = f"the server requires a client certificate (tls.client_certs): {reason}"
        return AuthError(server, f"TLS failed: {reason}")
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, nats.errors.NoServersError):
        detail = "no server could be reached"
    elif isinstance(exc, ConnectionResetError | BrokenPipeError) and tls:
        # TLS 1.3: a server that wants a client certificate may close before its alert is read
        detail += (
            " (the server closed the connection after the TLS handshake:"
            " if it requires a client certificate, set tls.client_certs)"
        )
    elif "expecting INFO" in detail or isinstance(exc, TimeoutError):
        # a server that expects the TLS handshake first sends nothing, or closes, until it gets one
        detail += " (no NATS greeting: a server with TLS handshake_first needs tls_handshake_first: true)"
    return NatsUnavailable(servers, redact_text(detail))
