"""The connection of :class:`~.redis_limits.RedisLimits` to Redis: one script call per change,
queued changes sent with the next call, a listener that wakes the waiters of this process.

Every call counts one round trip (:attr:`Link.round_trips`). Changes made from synchronous code
(a lease released, a reservation settled or closed) are queued and go out with the next call of
this process, or at :meth:`Link.aclose`, in the same atomic script run.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import socket
import time
import uuid
from collections import Counter
from typing import Any

import anyio
from anyio.abc import TaskGroup

from ..errors import redact_url
from ._redis_lua import KEY_NAMES, SCRIPT
from ._redis_trace import Trace
from ._redis_waits import Waits
from .backend import SharedLimitsError

__all__ = ["FLUSH_DELAY", "URGENT_DELAY", "Link", "default_namespace"]

_NAMESPACE_KEY = b"evolink-async/limits/v1"
#: seconds a queued change (a release, a settle) may wait for a call to take it along
FLUSH_DELAY = 0.02
#: the same for a change others may be waiting on (a slot released): long enough for the
#: releases of one batch read, or a call of this process made at once, to take it along
URGENT_DELAY = 0.002


def default_namespace(api_key: str) -> str:
    """The namespace of an API key's limits: a keyed hash (HMAC-SHA256) of it, never the key."""
    return hmac.new(_NAMESPACE_KEY, api_key.encode(), hashlib.sha256).hexdigest()[:32]


class Link:
    """One Redis connection pool, the namespace's keys, this process's owner name."""

    __slots__ = (
        "_attached",
        "_client",
        "_closed",
        "_host",
        "_hurry",
        "_keys",
        "_outbox",
        "_queued",
        "_scope",
        "_script",
        "_urgent",
        "ahead_op",
        "channel",
        "held",
        "lease_ttl",
        "namespace",
        "owner",
        "round_trips",
        "trace",
        "trips_by_op",
        "url",
        "waits",
    )

    def __init__(
        self, url: str, namespace: str, *, lease_ttl: float = 60.0, connect_timeout: float = 5.0
    ) -> None:
        try:
            import redis.asyncio as aioredis  # noqa: PLC0415 (the optional extra)
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise SharedLimitsError(
                "RedisLimits needs the redis package: pip install 'evolink-async[redis]'"
            ) from exc
        self.url = url
        self.namespace = namespace
        self._client: Any = aioredis.Redis.from_url(
            url,
            socket_connect_timeout=connect_timeout,
            socket_timeout=max(connect_timeout, 10.0),
        )
        prefix = f"evolink:{{{namespace}}}:"
        self._keys = [prefix + name for name in KEY_NAMES]
        self.channel = prefix + "changed"
        self._script: Any = self._client.register_script(SCRIPT)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._outbox: list[dict[str, Any]] = []
        self._queued: anyio.Event | None = None
        self._hurry: anyio.Event | None = None
        self._urgent = False  # an urgent change is in the outbox
        #: the rate's book op, sent along a lease or reservation that is granted (the slot it
        #: booked goes to ``waits.ahead`` until a request of this process takes it)
        self.ahead_op: dict[str, Any] | None = None
        self.waits = Waits(self.owner)
        self.lease_ttl = lease_ttl
        #: this process's leases (id -> when taken), renewed every third of the lease time
        self.held: dict[str, float] = {}
        #: the listener, renewer and flusher run in the task group of the limits' async
        #: context (``attach``) or, if the limits were never entered, in a task of their own
        self._attached = False
        self._closed = False
        self._scope: anyio.CancelScope | None = None
        self._host: asyncio.Task[None] | None = None
        #: script calls sent so far (one round trip each), and by the call's own operation
        self.round_trips = 0
        self.trips_by_op: Counter[str] = Counter()
        #: a debug timeline (``RedisLimits(trace=True)``), else None
        self.trace: Trace | None = None

    def key(self, name: str) -> str:
        return self._keys[KEY_NAMES.index(name)]

    @property
    def client(self) -> Any:
        return self._client

    def queue(self, op: dict[str, Any], *, urgent: bool = False) -> None:
        """A change made from synchronous code: sent with the next call of this process, or
        by the flusher within ``FLUSH_DELAY`` (changes close in time share one round trip),
        ``URGENT_DELAY`` if ``urgent`` (a waiter in line, here or elsewhere, may get what it
        frees). Waiters, here and elsewhere, wake on what Redis then publishes."""
        self._outbox.append(op)
        if self._queued is not None:
            self._queued.set()
        if urgent:
            self._urgent = True
            if self._hurry is not None:
                self._hurry.set()

    @property
    def queued_changes(self) -> int:
        """Changes queued, not sent yet."""
        return len(self._outbox)

    async def call(self, op: dict[str, Any] | None, *, book_ahead: bool = False) -> dict[str, Any]:
        """Run the queued changes and ``op`` in one atomic script call; return its result.

        ``book_ahead``: if ``op`` is granted, book this process's next rate slot with it.
        """
        ops = self._outbox
        self._outbox = []
        self._urgent = False
        if op is not None:
            if book_ahead and not self.waits.ahead and self.ahead_op is not None:
                op = dict(op, book=self.ahead_op)
            ops.append(op)
        if not ops:
            return {}
        self._start_background()
        self.round_trips += 1
        self.trips_by_op[op["op"] if op is not None else "flush"] += 1
        sent = time.monotonic()
        try:
            raw = await self._script(keys=self._keys, args=[json.dumps(ops), self.channel])
        except Exception as exc:
            if op is not None:
                ops.pop()
            self._outbox[:0] = ops  # not applied: kept for the next call
            raise self._error(exc) from None
        if self.trace is not None:
            freed = [o["id"] for o in ops if o["op"] == "unlease"]
            self.trace.add("call", sent=sent, ops=[o["op"] for o in ops], freed=freed)
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        result = json.loads(text)
        if not isinstance(result, dict):
            return {}
        slot = result.get("slot")
        if isinstance(slot, dict):
            self.waits.book_ahead(float(slot.get("wait", 0.0)))
        return result

    def _error(self, exc: Exception) -> SharedLimitsError:
        where = redact_url(self.url)
        if type(exc).__name__ in ("ResponseError", "NoScriptError"):  # Redis answered: an error
            return SharedLimitsError(f"the shared limits at {where} refused a change: {exc}")
        return SharedLimitsError(
            f"the shared limits at {where} cannot be reached"
            f" ({type(exc).__name__}: {exc}); no request is sent without them",
            unreachable=True,
        )

    def attach(self, group: TaskGroup) -> None:
        """Run the listener, renewer and flusher in ``group`` (the limits' async context),
        cancelled by :meth:`aclose` and awaited when the group exits."""
        if not self._attached and self._host is None:
            self._attached = True
            group.start_soon(self._background)

    @property
    def runs_in(self) -> str:
        """Where the listener, renewer and flusher run: ``"group"`` (the limits' async
        context), ``"own task"`` (limits never entered), or ``"nowhere"`` (not started)."""
        if self._closed:
            return "nowhere"
        if self._attached:
            return "group"
        return "own task" if self._host is not None and not self._host.done() else "nowhere"

    def _start_background(self) -> None:
        if not self._attached and (self._host is None or self._host.done()):
            # limits never entered (a client used without ``async with``): a task of their
            # own, cancelled and awaited by aclose()
            self._host = asyncio.get_running_loop().create_task(self._background())

    async def _background(self) -> None:
        with anyio.CancelScope() as scope:
            self._scope = scope
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._listen)
                tg.start_soon(self._renew)
                tg.start_soon(self._flush)

    async def _listen(self) -> None:
        """Wake this process's waiters on every change another process published."""
        while True:
            try:
                pubsub = self._client.pubsub(ignore_subscribe_messages=True)
                async with pubsub:
                    await pubsub.subscribe(self.channel)
                    self.waits.ask_all()  # anything missed while not subscribed
                    async for message in pubsub.listen():
                        data = message.get("data")
                        if isinstance(data, bytes):
                            if self.trace is not None and data.startswith(b"go:"):
                                self.trace.add("heard", message=data.decode(errors="replace"))
                            self.waits.hear(data)
            except Exception:  # reconnect after a pause; calls report the outage themselves
                await anyio.sleep(1.0)

    async def _flush(self) -> None:
        """Send queued changes soon after they are made (unless a call took them first)."""
        while True:
            self._queued = anyio.Event()
            self._hurry = anyio.Event()
            if not self._outbox:
                await self._queued.wait()
            if not self._urgent:
                with anyio.move_on_after(FLUSH_DELAY):
                    await self._hurry.wait()
            if self._urgent:
                await anyio.sleep(URGENT_DELAY)
            if self._outbox:
                try:
                    await self.call(None)
                except SharedLimitsError:  # kept queued; try again in a while
                    await anyio.sleep(1.0)

    async def _renew(self) -> None:
        """Renew this process's leases, and say its waiters in line are alive, every third of
        the lease time."""
        while True:
            await anyio.sleep(self.lease_ttl / 3)
            if self.held or self.waits.waiting:  # leases held, tickets in line
                op = {"op": "renew", "ids": list(self.held), "ttl": self.lease_ttl}
                op["tickets"] = self.waits.waiting
                with contextlib.suppress(SharedLimitsError):
                    await self.call(op)

    async def aclose(self) -> None:
        """Send the queued changes, stop the listener, renewer and flusher, close the
        connections (the queued changes go out even when the closing task is cancelled)."""
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True), anyio.move_on_after(5.0):
            with contextlib.suppress(SharedLimitsError):
                if self._outbox:
                    await self.call(None)
            if self._scope is not None:
                self._scope.cancel()
            if self._host is not None:
                self._host.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._host
                self._host = None
            await self._client.aclose()
