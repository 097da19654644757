"""Callback mode: let the service push finished tasks instead of waiting for a poll.

The service POSTs a task to its ``callback_url`` when it is completed, failed or cancelled. It
signs nothing, so the URL itself is the only secret: a ``CallbackReceiver`` appends an
unguessable path segment to the public URL the user gives, and a callback for a task the client
tracks only *wakes* the poller, which confirms it with one GET /v1/tasks/{id} before anything is
reported (``confirm=False`` takes a terminal body as is, for networks the user trusts)::

    receiver = CallbackReceiver("https://bot.example.com/evolink")
    async with receiver, EvolinkClient(callbacks=receiver) as client:
        async for outcome in client.generate_many(prompts):
            ...

Standalone (``async with receiver``) it runs its own aiohttp server on ``host:port`` and serves
the public URL's path; a bot that already serves HTTP mounts it instead, with
``receiver.add_routes(app)``, ``app.add_subapp(prefix, receiver.make_app())`` or a route of its
own to ``receiver.handler`` (the secret is the last path segment). With callbacks on, polls are
only a slow safety net (``PollPolicy.callback_grace``): a lost callback delays a result, it
never loses one. A request that sets its own ``callback_url`` keeps it; its task is then found
by those safety-net polls (or by a callback the user forwards to this receiver). So is a
callback that arrives before the client has read the create's answer (it is ignored: the task
is not tracked yet), and a task created by an earlier process with another secret (pass the
same ``secret=`` to keep the URL across runs).

The receiver answers at once and does no I/O for a callback: 2xx for a task id (tracked or
not, so the service stops retrying), 404 for a wrong secret, 413 over ``max_body``, 400 for a
body that is not a JSON object with a task id. The secret appears in no log line and no repr.
"""

from __future__ import annotations

import collections
import hmac
import json
import logging
import re
import secrets
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
import attrs
from aiohttp import web

from ._codec import decode_task
from ._redact import protect
from .errors import DecodeError, InvalidRequestError
from .models import Task, validate_callback_url

__all__ = [
    "DEFAULT_MAX_BODY",
    "MAX_TASK_ID",
    "CallbackReceiver",
    "ReceiverStats",
    "TaskWaker",
    "parse_listen",
]

logger = logging.getLogger("evolink_async")

#: The largest callback body accepted (a task object is a few hundred bytes).
DEFAULT_MAX_BODY = 1024 * 1024
#: How many task ids are remembered to count duplicate deliveries, and their total size.
_SEEN_LIMIT = 10_000
_SEEN_BYTES = 512 * 1024
#: The longest task id taken (the service's are about 40 characters); longer ones get 400.
MAX_TASK_ID = 256
_SECRET_RE = re.compile(r"[A-Za-z0-9_-]{16,256}")
_REDACTED = "<secret>"


class TaskWaker(Protocol):
    """What the receiver needs of the poller: wake a task now, or take its final state."""

    def wake(self, task_id: str) -> bool:
        """Poll ``task_id`` soon; False when it is not tracked."""
        ...

    def report(self, task: Task) -> bool:
        """Take a terminal ``task`` as polled; False when its id is not tracked."""
        ...


@attrs.define
class ReceiverStats:
    """What a ``CallbackReceiver`` answered, by outcome."""

    #: POSTs to the secret path with a task id (answered 2xx)
    received: int = 0
    #: of those, callbacks that woke a tracked task (a confirming GET follows)
    woken: int = 0
    #: terminal bodies taken as the result without a GET (``confirm=False``)
    accepted: int = 0
    #: ids the client does not track (never did, or already finished): nothing done
    ignored: int = 0
    #: ids delivered before (the service retries); handled idempotently
    duplicates: int = 0
    #: answered 404: a path without the right secret
    not_found: int = 0
    #: answered 413: a body over ``max_body``
    too_large: int = 0
    #: answered 400: not JSON, or no task id
    bad_request: int = 0


class CallbackReceiver:
    """Receives the service's task callbacks and hands them to what it is bound to: a
    :class:`TaskWaker` (``EvolinkClient(callbacks=receiver)`` binds the client's poller).

    ``public_url``: the https URL under which the service reaches this receiver (behind a
    reverse proxy or a tunnel); ``callback_url`` is it plus a secret path segment (``secret``,
    default ``secrets.token_urlsafe(32)``). The service refuses http and private hosts, and so
    does the receiver unless ``allow_insecure=True`` (for a local simulator); then
    ``public_url=None`` means the address the standalone server listens on.

    ``host``/``port`` (0 = any free port): where ``async with receiver`` listens. ``path``: the
    local path it serves (default the public URL's path, for a proxy that passes it through).
    ``confirm``: confirm each callback with one GET (default) rather than trust its body.
    ``max_body``: larger bodies get 413.
    """

    __slots__ = (
        "__weakref__",
        "_address",
        "_path",
        "_public_url",
        "_runner",
        "_secret",
        "_seen",
        "_seen_bytes",
        "_sink",
        "allow_insecure",
        "confirm",
        "host",
        "max_body",
        "port",
        "stats",
    )

    def __init__(
        self,
        public_url: str | None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str | None = None,
        confirm: bool = True,
        max_body: int = DEFAULT_MAX_BODY,
        secret: str | None = None,
        allow_insecure: bool = False,
    ) -> None:
        if secret is None:
            secret = secrets.token_urlsafe(32)
        elif not _SECRET_RE.fullmatch(secret):
            raise ValueError("secret must be 16 to 256 characters of A-Z, a-z, 0-9, '_' or '-'")
        if max_body < 1:
            raise ValueError("max_body must be >= 1")
        self._secret = secret
        protect(self, secret)
        self.host = host
        self.port = port
        self.confirm = confirm
        self.max_body = max_body
        self.allow_insecure = allow_insecure
        self.stats = ReceiverStats()
        self._sink: TaskWaker | None = None
        self._runner: web.AppRunner | None = None
        self._address: tuple[str, int] | None = None
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._seen_bytes = 0
        if public_url is None:
            if not allow_insecure:
                raise ValueError("public_url is required (None needs allow_insecure=True)")
            self._public_url: str | None = None
            public_path = ""
        else:
            self._public_url = public_url.rstrip("/")
            public_path = self._check_public_url(self._public_url)
        self._path = _normalize_prefix(public_path if path is None else path)

    def _check_public_url(self, url: str) -> str:
        """Validate the public URL (with its secret, as the service will); return its path."""
        try:
            parts = urlsplit(url)
        except ValueError as exc:
            raise InvalidRequestError("public_url", url, f"is not a valid URL ({exc})") from None
        if parts.query or parts.fragment:
            raise InvalidRequestError("public_url", url, "must have no query or fragment")
        if self.allow_insecure:
            if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
                raise InvalidRequestError("public_url", url, "must be an http(s) URL with a host")
        else:
            try:
                validate_callback_url(f"{url}/{self._secret}", "public_url")
            except InvalidRequestError as exc:  # the message must not carry the secret
                raise InvalidRequestError("public_url", url, exc.rule) from None
        return parts.path

    # -- what the client and the user see ----------------------------------------------------

    @property
    def callback_url(self) -> str:
        """The URL to give the service: the public URL plus the secret segment."""
        return f"{self._base_url()}/{self._secret}"

    @property
    def redacted_url(self) -> str:
        """``callback_url`` with the secret replaced, safe to log."""
        try:
            return f"{self._base_url()}/{_REDACTED}"
        except RuntimeError:
            return f"<not started>{self._path}/{_REDACTED}"

    @property
    def path(self) -> str:
        """The local path prefix the receiver serves (the secret segment follows it)."""
        return self._path

    @property
    def seen(self) -> tuple[int, int]:
        """``(ids, characters)`` of the task ids remembered to count duplicate deliveries:
        at most 10,000 ids of at most :data:`MAX_TASK_ID` characters, 512 KiB of them."""
        return len(self._seen), self._seen_bytes

    @property
    def address(self) -> tuple[str, int] | None:
        """``(host, port)`` the standalone server listens on, None when it is not running."""
        return self._address

    def _base_url(self) -> str:
        if self._public_url is not None:
            return self._public_url
        if self._address is None:
            raise RuntimeError("public_url=None: the URL is known once the receiver is started")
        host, port = self._address
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}{self._path}"

    def __repr__(self) -> str:
        s = self.stats
        return (
            f"<CallbackReceiver url={self.redacted_url!r} confirm={self.confirm}"
            f" running={self._runner is not None} received={s.received} woken={s.woken}"
            f" ignored={s.ignored} rejected={s.not_found + s.too_large + s.bad_request}>"
        )

    def bind(self, sink: TaskWaker) -> None:
        """Wake the tasks of ``sink`` (``EvolinkClient(callbacks=receiver)`` binds its poller).
        A receiver serves one client: its secret path is that client's."""
        if self._sink is not None and self._sink is not sink:
            raise ValueError("this CallbackReceiver already serves another EvolinkClient")
        self._sink = sink

    # -- mounting -----------------------------------------------------------------------------

    def add_routes(self, app: web.Application, prefix: str | None = None) -> None:
        """Add ``POST {prefix}/{secret}`` to an existing application (``prefix`` defaults to
        the public URL's path, or ``path``)."""
        route_prefix = self._path if prefix is None else _normalize_prefix(prefix)
        app.router.add_post(route_prefix + "/{token}", self.handler)

    def make_app(self) -> web.Application:
        """A sub-application serving ``POST /{secret}``: ``app.add_subapp(prefix, it)``."""
        app = web.Application()
        app.router.add_post("/{token}", self.handler)
        return app

    # -- standalone server --------------------------------------------------------------------

    async def start(self) -> CallbackReceiver:
        """Listen on ``host:port`` with a server of its own (no access log: paths carry the
        secret)."""
        if self._runner is not None:
            raise RuntimeError("the receiver is already running")
        app = web.Application()
        self.add_routes(app)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self._address = (str(host), int(port))
        logger.debug("callback receiver listening for %s", self.redacted_url)
        return self

    async def aclose(self) -> None:
        """Stop the standalone server (a no-op when mounted or not started)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        self._address = None

    async def __aenter__(self) -> CallbackReceiver:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- one callback -------------------------------------------------------------------------

    async def handler(self, request: web.Request) -> web.StreamResponse:
        """The aiohttp handler: the last path segment must be the secret. Answers without
        waiting for anything: the poller does the confirming GET later."""
        token = request.path.rsplit("/", 1)[-1]
        if not hmac.compare_digest(token.encode(), self._secret.encode()):
            self.stats.not_found += 1
            logger.debug("callback to an unknown path (%s/%s): 404", self._path, _REDACTED)
            return web.Response(status=404, text="not found")
        body = await self._read_body(request)
        if body is None:
            self.stats.too_large += 1
            logger.debug("callback body over %d bytes: 413", self.max_body)
            response = web.Response(status=413, text="body too large")
            response.force_close()  # do not read the rest of a body we refuse
            return response
        data = _parse(body)
        task_id = data.get("id") if data is not None else None
        if data is None or not isinstance(task_id, str) or not 0 < len(task_id) <= MAX_TASK_ID:
            self.stats.bad_request += 1
            logger.debug("callback body is not a JSON task object with an id: 400")
            return web.Response(
                status=400, text=f"expected a JSON task object with an id of 1-{MAX_TASK_ID} chars"
            )
        self.stats.received += 1
        self._take(task_id, data)
        return web.Response(status=204)

    async def _read_body(self, request: web.Request) -> bytes | None:
        """The body, or None when it is larger than ``max_body`` (declared or streamed)."""
        declared = request.content_length
        if declared is not None and declared > self.max_body:
            return None
        buf = bytearray()
        try:
            async for chunk in request.content.iter_any():
                buf += chunk
                if len(buf) > self.max_body:
                    return None
        except aiohttp.ClientError:  # the sender went away mid-body: nothing to take
            return b""
        return bytes(buf)

    def _take(self, task_id: str, data: dict[str, Any]) -> None:
        """Hand a callback to the poller (no I/O, no await: the answer is not held up)."""
        if task_id in self._seen:
            self.stats.duplicates += 1
            self._seen.move_to_end(task_id)
        else:
            self._seen[task_id] = None
            self._seen_bytes += len(task_id)
            while len(self._seen) > _SEEN_LIMIT or self._seen_bytes > _SEEN_BYTES:
                self._seen_bytes -= len(self._seen.popitem(last=False)[0])
        poller = self._sink
        if poller is not None and not self.confirm:
            try:
                task = decode_task(data)
            except DecodeError:
                task = None  # not a task we can take as is: confirm it with a GET instead
            if task is not None and task.is_terminal and poller.report(task):
                self.stats.accepted += 1
                logger.debug("callback for %s taken as %s (confirm=False)", task_id, task.status)
                return
        if poller is not None and poller.wake(task_id):
            self.stats.woken += 1
            logger.debug("callback for %s: polling it now to confirm", task_id)
            return
        self.stats.ignored += 1
        logger.debug("callback for %.100r, a task this client does not track: ignored", task_id)


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6; ``:8080`` = all interfaces) as ``(host, port)``,
    for a CLI's ``--listen``. Raises ValueError with a readable reason."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"--listen {value!r}: expected HOST:PORT with a port 0-65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"--listen {value!r}: write an IPv6 host in brackets, [::1]:8080")
    return host or "0.0.0.0", int(port_text)


def _normalize_prefix(prefix: str) -> str:
    """``''`` or ``'/a/b'``: a leading slash, no trailing one."""
    prefix = prefix.strip("/")
    return f"/{prefix}" if prefix else ""


def _parse(body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    return data if isinstance(data, dict) else None
