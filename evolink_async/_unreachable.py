"""Which failures mean the service could not be reached, and why, in a person's words.

A connection that was never opened (refused, a name that does not resolve, a TLS handshake
that failed) carried no request: the service took nothing. The transport
raises :class:`~.errors.ServiceUnreachableError` for it (after its retries), naming the host,
the port and the cause; a connection that dropped after the request was sent is not one of
these (the create may have been taken).
"""

from __future__ import annotations

import errno
import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.connector import Connection

from ._redact import redact
from .errors import ServiceUnreachableError

__all__ = ["NEVER_OPENED", "OpenedConnector", "unreachable_error"]

#: the aiohttp errors of a connection that could not be opened (a connect timeout stays an
#: ``APITimeoutError``, as it always was)
NEVER_OPENED: tuple[type[BaseException], ...] = (aiohttp.ClientConnectorError,)

_ERRNO_CAUSES = {
    errno.ECONNREFUSED: "connection refused",
    errno.EHOSTUNREACH: "no route to host",
    errno.ENETUNREACH: "network unreachable",
    errno.ETIMEDOUT: "connect timed out",
}


def _cause(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "DNS lookup failed"
    if isinstance(exc, (aiohttp.ClientSSLError, ssl.SSLError)):
        return f"TLS error: {redact(str(exc))}"
    os_error = getattr(exc, "os_error", None)
    if isinstance(os_error, OSError):
        if isinstance(os_error, ssl.SSLError):
            return f"TLS error: {redact(str(os_error))}"
        known = _ERRNO_CAUSES.get(os_error.errno or 0)
        if known is not None:
            return known
        return redact(os_error.strerror or str(os_error) or type(os_error).__name__)
    return redact(str(exc)) or type(exc).__name__


def unreachable_error(
    exc: BaseException, url: str, *, maybe_created: bool = False
) -> ServiceUnreachableError:
    """The error of a connection to ``url`` that ``exc`` kept from opening."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or url
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        host, port = url, None
    error = ServiceUnreachableError(host, port, _cause(exc), maybe_created=maybe_created)
    error.__cause__ = exc
    return error


class OpenedConnector(aiohttp.TCPConnector):
    """A connector that calls ``on_open()`` when its first connection is opened: the service
    can be reached. Not a ``TraceConfig``: tracing costs every request several signal sends;
    this costs nothing after the first."""

    def __init__(self, on_open: Callable[[], None], **kw: Any) -> None:
        super().__init__(**kw)
        self._on_open = on_open

    async def connect(self, *args: Any, **kw: Any) -> Connection:
        connection = await super().connect(*args, **kw)
        self._on_open()
        # told: later connections go straight to the base class, with no frame of this one
        self.connect = super().connect  # type: ignore[method-assign]
        return connection
