"""Helpers for the simulator's tests: plain aiohttp against a running simulator (no SDK)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NamedTuple

import aiohttp
from aiohttp import web

from evolink_async.testing import ManualClock, Simulator

__all__ = ["Api", "Receiver", "Reply", "receiver", "running"]


class Reply(NamedTuple):
    status: int
    body: Any  # parsed JSON, or the raw text when it is not JSON
    headers: dict[str, str]


class Api:
    """The few calls the tests make, answering (status, body, headers)."""

    def __init__(self, sim: Simulator, session: aiohttp.ClientSession) -> None:
        self.sim, self.session = sim, session
        self.auth = {"Authorization": f"Bearer {sim.api_key}"}

    async def request(
        self, method: str, path_or_url: str, *, auth: bool = True, **kwargs: Any
    ) -> Reply:
        url = path_or_url if "://" in path_or_url else self.sim.base_url + path_or_url
        headers = {**(self.auth if auth else {}), **kwargs.pop("headers", {})}
        async with self.session.request(method, url, headers=headers, **kwargs) as response:
            raw = await response.read()
            try:
                body: Any = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
            return Reply(response.status, body, dict(response.headers))

    async def create(self, **body: Any) -> Reply:
        body.setdefault("prompt", "A cat playing piano")
        return await self.request("POST", "/v1/videos/generations", json=body)

    async def created_id(self, **body: Any) -> str:
        reply = await self.create(**body)
        assert reply.status == 200, reply
        task_id: str = reply.body["id"]
        return task_id

    async def task(self, task_id: str) -> Reply:
        return await self.request("GET", f"/v1/tasks/{task_id}")


@contextlib.asynccontextmanager
async def running(*, manual: bool = True, **knobs: Any) -> AsyncIterator[tuple[Simulator, Api]]:
    """A started simulator (on a ManualClock unless ``manual=False``) and an Api on it."""
    if manual:
        knobs.setdefault("clock", ManualClock())
    async with Simulator(**knobs) as sim, aiohttp.ClientSession() as session:
        yield sim, Api(sim, session)


class Receiver:
    """A loopback callback receiver: answers each POST with the next status of ``statuses``."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.bodies: list[Any] = []
        self.url = ""
        self.hang = asyncio.Event()  # set → never answer (to test cancellation on close)
        self.received = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.json())
        self.received.set()
        if self.hang.is_set():
            await asyncio.Event().wait()
        status = self.statuses[min(len(self.bodies), len(self.statuses)) - 1]
        return web.Response(status=status)


@contextlib.asynccontextmanager
async def receiver(statuses: list[int] | None = None) -> AsyncIterator[Receiver]:
    recv = Receiver(statuses or [200])
    app = web.Application()
    app.router.add_post("/hook", recv.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    recv.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    try:
        yield recv
    finally:
        await runner.cleanup()


async def poll_until(
    check: Callable[[], Awaitable[bool]], *, attempts: int = 200, interval: float = 0.02
) -> None:
    """Await ``check()`` until true, at most ``attempts`` times (no timing assertion)."""
    for _ in range(attempts):
        if await check():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met after {attempts} attempts")
