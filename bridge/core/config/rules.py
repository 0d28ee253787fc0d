"""What can never work, found before anything connects: rules across a validated config's values.

Owns the refusals that need more than a field's type:

- **subjects** (``output.nats_jetstream.subject``, ``bridge.dead_letter.subject``): the text every
  rendering shares — the template with each interpolation standing for some non-empty text — must
  already be a subject a record can be published to. A fixed subject with a wildcard (``orders.*``),
  an empty token (``orders..x``, a leading or trailing ``.``), whitespace or a reserved prefix
  (``$JS.``, ...) can never be stored, and neither can ``a..${! meta("k") }`` whatever ``k`` is.
  The rules are ``bridge.core.frames.subject_problem``'s, applied per record at run time.
- **NATS URLs** (``output.nats_jetstream.urls``): a scheme other than ``nats``, ``tls``, ``ws`` or
  ``wss`` (``http://...`` would be retried for minutes at run time), and a query string or fragment
  (nats-py ignores them: ``?token=...`` would not authenticate), are refused, and so are a URL
  without a host (``nats://``, ``nats://:4222``), with whitespace in its host, or with a port that is
  not a number from 1 to 65535 (``nats://h:abc``, ``nats://h:99999``); a URL without a scheme is
  ``nats://``.

Pure module: imports neither aiokafka nor nats.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from urllib.parse import urlsplit

from bridge.core.frames import subject_problem
from bridge.core.interpolation import Template

__all__ = ["NATS_SCHEMES", "subject_rule", "url_problems"]

NATS_SCHEMES = ("nats", "tls", "ws", "wss")
_STANDS_FOR = "${…}"  # in a problem: an interpolation's text (non-empty, no dot, no space)


def subject_rule(template: Template) -> str | None:
    """Why no rendering of ``template`` can be a subject a record is published to (None: some can)."""
    if template.is_static:
        return subject_problem(template.render(_NO_MESSAGE))
    problem = subject_problem(template.skeleton(_STANDS_FOR))
    if problem is None:
        return None
    return f"{problem} whatever its interpolations give ({_STANDS_FOR} stands for them)"


class _NoMessage:
    """A static template renders without reading a message."""

    def content(self) -> bytes:
        raise AssertionError("a static template reads no message")

    def meta(self, key: str) -> str | None:
        raise AssertionError("a static template reads no message")

    def metadata(self) -> dict[str, str]:
        raise AssertionError("a static template reads no message")

    def structured(self) -> object:
        raise AssertionError("a static template reads no message")


_NO_MESSAGE = _NoMessage()


def url_problems(urls: tuple[str, ...]) -> Iterator[str]:
    """Why a NATS server URL can never be connected to as written, one message per URL."""
    for url in urls:
        full = url if "://" in url else f"nats://{url}"  # host:port: the nats scheme
        try:
            parts = urlsplit(full)
        except ValueError:  # an unbalanced [IPv6 address
            yield f"URL {_masked(url)!r} is not a URL (write nats://host:4222)"
            continue
        scheme = parts.scheme.lower()
        address = _address_problem(parts.netloc.rsplit("@", 1)[-1])
        if "://" in url and scheme not in NATS_SCHEMES:
            yield (
                f"URL {_without_userinfo(url)!r}: the scheme {parts.scheme!r} is not a NATS scheme "
                f"(use {', '.join(s + '://' for s in NATS_SCHEMES)}, or host:port)"
            )
        elif parts.query or parts.fragment or url.endswith(("?", "#")):
            which = "a query string" if parts.query or url.endswith("?") else "a fragment"
            yield (
                f"URL {_without_userinfo(url)!r} has {which}, which the NATS client ignores: give "
                "credentials in output.nats_jetstream.auth"
            )
        elif address:
            shown = _without_userinfo(full)
            yield f"URL {shown if '://' in url else shown.removeprefix('nats://')!r} {address}"


def _masked(url: str) -> str:
    """A URL that cannot be parsed, for a message: nothing before an ``@`` (credentials)."""
    scheme, sep, rest = url.rpartition("://")
    return f"{scheme}{sep}{'***@' if '@' in rest else ''}{rest.rsplit('@', 1)[-1][:80]}"


def _address_problem(hostport: str) -> str | None:
    """Why ``host[:port]`` (a URL's netloc without credentials) names no server (None: it may)."""
    if hostport.startswith("["):  # [IPv6]:port
        host, _, rest = hostport[1:].partition("]")
        if rest and not rest.startswith(":"):
            return f"has text after its IPv6 address: {rest[:40]!r}"
        port = rest[1:] if rest else None
    else:
        host, colon, port_text = hostport.rpartition(":")
        host, port = (host, port_text) if colon else (hostport, None)
    if not host:
        return "has no host (write nats://host:4222)"
    if any(c.isspace() for c in host):
        return "has whitespace in its host"
    if port and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        return f"has the port {port[:40]!r}, which is not a number from 1 to 65535"
    return None


def _without_userinfo(url: str) -> str:
    """The URL for a message: no credentials, no query or fragment (they may hold a secret)."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    shown = f"{parts.scheme}://{'***@' if '@' in parts.netloc else ''}{host}{parts.path}"
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        shown += "?…" if parts.query or url.endswith("?") else "#…"
    return shown


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """A metadata ``include_patterns`` entry compiled as Go's regexp would take it: Python's ``re`` warns
    (FutureWarning) about sets it may read differently one day (``[[``, ``--``, ``&&``), which are valid
    today; the warning is no problem of the config, so it is not shown. Invalid patterns raise
    ``re.error``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return re.compile(pattern)
