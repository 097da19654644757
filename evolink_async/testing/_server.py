"""The simulator: a local Evolink server on aiohttp.web, with faults, limits and stats."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import random
import time
import types
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs
from aiohttp import web

from ._callbacks import CallbackSender
from ._clock import Clock, ManualClock, ScaledClock
from ._config import TIME_SCALE_HEADER, SimulatorConfig
from ._creates import CreateDesk
from ._errors import ApiError, error_body
from ._files import UnsatisfiableRange, parse_range, sign, task_video
from ._hostile import Echoes
from ._listen import Listener
from ._persist import TaskFile
from ._state import ServiceState
from ._stats import DROPPED, SimulatorStats
from ._task import SimulatedTask
from ._task_reads import TaskReads
from ._uploads import Uploads

__all__ = ["Simulator"]

_PROXY_HTML = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
_API_ENDPOINTS = frozenset({"create", "get_task", "credits", "tasks_batch", "tasks_list"})


@attrs.define
class _Call:
    """One API request's fault (drawn on arrival) and the task it created, if any."""

    fault: str | None = None
    task: SimulatedTask | None = None


_Handler = Callable[[web.Request, _Call], Awaitable[web.StreamResponse]]


class Simulator:
    """A faithful local Evolink video-generation server, for tests, benchmarks and demos.

    Knobs: a :class:`SimulatorConfig`, and/or its fields as keyword arguments
    (``Simulator(time_scale=0.01, failure_rate=0.1)``). ``clock`` replaces the scaled real
    clock, e.g. ``Simulator(clock=ManualClock())`` with ``sim.advance(seconds)``.

    Use as ``async with Simulator() as sim:`` (or ``await sim.start()`` / ``await
    sim.close()``), then point a client at ``sim.base_url`` with ``sim.api_key``.
    """

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        /,
        *,
        clock: Clock | None = None,
        **knobs: Any,
    ) -> None:
        self.config = attrs.evolve(config or SimulatorConfig(), **knobs)
        path = self.config.state_path
        store = TaskFile(path, self.config.time_scale) if path is not None else None
        start = store.start if store is not None else None  # an earlier run's timeline, or now
        self.clock: Clock = clock or ScaledClock(self.config.time_scale, start=start)
        self.stats = SimulatorStats()
        self._state = ServiceState(self.config, self.clock, self.stats, store)
        self._faults = random.Random(f"{self.config.seed}/requests")
        self._echoes = Echoes(self.config)
        self._secret = hashlib.sha256(f"evolink-simulator/{self.config.seed}".encode()).digest()
        self._callbacks = CallbackSender(
            self.config, self.clock, self.stats.tasks, self.stats.callbacks, self._settled_body
        )
        self.uploads = Uploads(self.clock, self._authorize)  # the Files API's files
        self._desk = CreateDesk(
            lambda: self.config,
            self._state,
            self.stats,
            self._callbacks.schedule,
            check=self._echoes.check_create,
        )
        self._runner: web.AppRunner | None = None
        self._listener: Listener | None = None
        #: requests being answered (the runner's cleanup misses one whose client hung up)
        self._answering: set[asyncio.Task[Any]] = set()
        self._closed = False
        self.base_url = ""

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> Simulator:
        """Listen on ``config.host:config.port`` (0 = a free port) and set ``base_url``."""
        if self._runner is not None or self._closed:
            raise RuntimeError("a Simulator starts once")
        app = web.Application()
        reads = TaskReads(self.config, self.clock, self.stats, self._authorize, self._settled_body)
        routes: list[tuple[str, str, str, _Handler]] = [
            ("POST", "/v1/videos/generations", "create", self._create),
            ("POST", "/v1/tasks/batch", "tasks_batch", reads.batch),
            ("GET", "/v1/tasks", "tasks_list", reads.listing),
            ("GET", "/v1/tasks/{task_id}", "get_task", self._get_task),
            ("GET", "/v1/credits", "credits", self._credits),
            *self.uploads.routes(),
            ("GET", "/files/{name}", "files", self._file),
            ("HEAD", "/files/{name}", "files", self._file),
            ("*", "/{tail:.*}", "other", _not_found),
        ]
        app.router.add_get(
            "/_simulator/stats", functools.partial(_stats_json, self._state, self.stats)
        )
        app.router.add_get("/_simulator/info", functools.partial(_info_json, self.config))
        for method, path, endpoint, handler in routes:
            app.router.add_route(method, path, self._wrap(endpoint, handler))
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.25)
        await self._runner.setup()
        self._listener = Listener(self._runner, self.config.host, self.config.port)
        try:
            host, port = await self._listener.start()
        except BaseException:  # e.g. the port is taken: leave nothing behind
            await self._runner.cleanup()
            self._closed = True
            raise
        self.base_url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        self._callbacks.start()
        return self

    async def close(self) -> None:
        """Stop serving; cancel and await callbacks and any request still being answered."""
        if self._closed:
            return
        self._closed = True
        self._state.close()
        if self._runner is not None:
            await self._callbacks.close()
            await self._runner.cleanup()
            answering, self._answering = list(self._answering), set()
            for task in answering:
                task.cancel()
            await asyncio.gather(*answering, return_exceptions=True)

    async def __aenter__(self) -> Simulator:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- public view and controls -----------------------------------------------------------

    @property
    def listener(self) -> Listener:
        """Where it listens; ``stop()`` and ``start()`` it for an outage (see ``_listen``)."""
        if self._listener is None:
            raise RuntimeError("the simulator was not started")
        return self._listener

    @property
    def api_key(self) -> str:
        return self.config.api_key

    @property
    def tasks(self) -> Mapping[str, SimulatedTask]:
        """Every task ever created (ghosts included), by id. Read-only."""
        return types.MappingProxyType(self.stats.tasks)

    @property
    def active_tasks(self) -> int:
        """Tasks pending or processing now (what ``max_concurrent`` limits)."""
        return self._state.active_count

    @property
    def credits(self) -> float:
        """Credits remaining (not counting what running tasks hold)."""
        self._state.settle()
        return self._state.available

    def set_credits(self, credits: float) -> None:
        """Set the remaining balance; credits held by running tasks stay held."""
        self._state.available = float(credits)

    def advance(self, seconds: float) -> None:
        """Move a ManualClock forward (and let due callbacks go)."""
        if not isinstance(self.clock, ManualClock):
            raise TypeError("advance() needs Simulator(clock=ManualClock())")
        self.clock.advance(seconds)

    def task_body(self, task_id: str) -> dict[str, Any]:
        """What GET /v1/tasks/{id} would answer now (without counting as a poll)."""
        return self._settled_body(self.stats.tasks[task_id])

    def complete_task(self, task_id: str) -> None:
        """Complete a pending or processing task now."""
        self._finish(task_id, None, None)

    def fail_task(
        self, task_id: str, code: str = "service_error", message: str | None = None
    ) -> None:
        """Fail a pending or processing task now with a task error ``code``."""
        self._finish(task_id, code, message)

    def cancel_task(self, task_id: str) -> None:
        """Cancel a task now (refunded), reported as ``cancel_style`` says."""
        self._finish(task_id, "request_cancelled", None)

    async def drain_callbacks(self) -> None:
        """Wait until every callback POST due by now has been made (for ManualClock tests)."""
        await self._callbacks.drain()

    def _finish(self, task_id: str, code: str | None, message: str | None) -> None:
        self._state.finish_now(task_id, code, message)
        self._callbacks.schedule(self.stats.tasks[task_id])

    def __repr__(self) -> str:
        return (
            f"Simulator(base_url={self.base_url!r}, tasks={len(self.stats.tasks)}, "
            f"active={self._state.active_count}, clock={self.clock!r})"
        )

    # -- plumbing shared by every endpoint --------------------------------------------------

    def _wrap(
        self, endpoint: str, handler: _Handler
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def serve(request: web.Request) -> web.StreamResponse:
            task = asyncio.current_task()
            assert task is not None  # a coroutine aiohttp runs is always in a task
            self._answering.add(task)
            try:
                return await self._serve(endpoint, handler, request)
            finally:
                self._answering.discard(task)

        return serve

    async def _serve(
        self, endpoint: str, handler: _Handler, request: web.Request
    ) -> web.StreamResponse:
        """Faults, error bodies and counting around one handler."""
        call = _Call()
        if endpoint in _API_ENDPOINTS:
            self.stats.request_times.append(time.monotonic())
            call.fault, proxy_error = self._draw_fault()
            if proxy_error is not None:
                self.stats.requests[(endpoint, proxy_error.status)] += 1
                return proxy_error
        try:
            response = await handler(request, call)
        except ApiError as error:
            response = self._echoes.error_response(request, error)
        self._echoes.finish(request, response)
        if self.config.state_time_scale:
            response.headers[TIME_SCALE_HEADER] = repr(self.config.time_scale)
        if call.fault == "ghost":
            if call.task is not None:
                call.task.ghost = True
                self.stats.ghost_task_ids.append(call.task.id)
            self.stats.requests[(endpoint, DROPPED)] += 1
            if request.transport is not None:
                request.transport.abort()
            return response  # never sent: the connection is gone
        if call.fault == "slow":
            if call.task is not None:
                call.task.slow = True
                self.stats.slow_task_ids.append(call.task.id)
            await asyncio.sleep(self.config.slow_seconds)
        self.stats.requests[(endpoint, response.status)] += 1
        return response

    def _draw_fault(self) -> tuple[str | None, web.Response | None]:
        """This request's fault, and the 5xx answer if it gets one (three draws, always)."""
        cfg = self.config
        draw, kind, which = self._faults.random(), self._faults.random(), self._faults.random()
        if draw < cfg.error_5xx_rate:
            status = 502 if which < 0.5 else 503
            return "5xx", _proxy_error(status, kind, cfg.html_error_fraction)
        draw -= cfg.error_5xx_rate
        if draw < cfg.ghost_rate:
            return "ghost", None
        if draw - cfg.ghost_rate < cfg.slow_rate:
            return "slow", None
        return None, None

    def _authorize(self, request: web.Request) -> None:
        """401 unless ``Authorization: Bearer <the key>``; then count against the rate limit."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), self.config.api_key.encode()
        ):
            raise ApiError.unauthorized()
        self._state.check_rate()

    def _settled_body(self, task: SimulatedTask) -> dict[str, Any]:
        self._state.settle()
        now = self.clock.now()
        url = self._result_url(task) if task.status_at(now) == "completed" else None
        return task.body(now, url)

    def _result_url(self, task: SimulatedTask) -> str:
        expires = int(task.finished_at + self.config.link_ttl)
        sig = sign(self._secret, task.id, expires)
        return f"{self.base_url}/files/{task.id}.mp4?expires={expires}&sig={sig}"

    # -- endpoints --------------------------------------------------------------------------

    async def _create(self, request: web.Request, call: _Call) -> web.StreamResponse:
        self._authorize(request)
        answer = await self._desk.create(request)
        call.task, call.fault = answer.task, answer.fault or call.fault
        return answer.response

    async def _get_task(self, request: web.Request, call: _Call) -> web.StreamResponse:
        self._authorize(request)
        task_id = request.match_info["task_id"]
        if not task_id.startswith("task-unified-"):
            raise ApiError(
                400,
                "invalid_task_id",
                "Invalid task ID format, must start with 'task-unified-'",
                "invalid_request_error",
            )
        task = self.stats.tasks.get(task_id)
        if task is None:
            raise ApiError(404, "task_not_found", "Task not found or expired", "not_found_error")
        body = self._settled_body(task)
        if call.fault != "ghost":  # an answer the client never gets shows it nothing
            task.read(body["status"], self.clock.now())
        return web.json_response(body)

    async def _credits(self, request: web.Request, call: _Call) -> web.StreamResponse:
        self._authorize(request)
        return web.json_response(self._state.credits_body())

    async def _file(self, request: web.Request, call: _Call) -> web.StreamResponse:
        """The result video: signed, expiring, Range-aware; maybe failing its first download."""
        name = request.match_info["name"]
        task = self.stats.tasks.get(name.removesuffix(".mp4")) if name.endswith(".mp4") else None
        if task is None or task.status_at(self.clock.now()) != "completed":
            raise ApiError(404, "file_not_found", "File not found", "not_found_error")
        _check_link(self._secret, task, request.query, self.clock.now())
        failing = _download_fault(task, request.method)
        data = task_video(task, per_task=self.config.per_task_clips)
        return await _send_video(request, data, truncate=failing == "truncate")


async def _not_found(request: web.Request, call: _Call) -> web.StreamResponse:
    raise ApiError(
        404, "not_found", f"No route for {request.method} {request.path}", "not_found_error"
    )


async def _stats_json(
    state: ServiceState, stats: SimulatorStats, request: web.Request
) -> web.StreamResponse:
    state.settle()
    return web.json_response(stats.to_dict())


async def _info_json(config: SimulatorConfig, request: web.Request) -> web.StreamResponse:
    """What a client needs to know of the simulator: its time scale and models."""
    info = {"time_scale": config.time_scale, "models": sorted(config.models)}
    return web.json_response(info, headers={TIME_SCALE_HEADER: repr(config.time_scale)})


def _check_link(secret: bytes, task: SimulatedTask, query: Mapping[str, str], now: float) -> None:
    """Refuse a result link whose signature is wrong or whose time is up."""
    try:
        expires = int(query.get("expires", ""))
    except ValueError:
        expires = -1
    if not hmac.compare_digest(query.get("sig", ""), sign(secret, task.id, expires)):
        raise ApiError(403, "invalid_signature", "Invalid link signature", "permission_error")
    if now > expires:
        raise ApiError(403, "link_expired", "Result link expired", "permission_error")


def _download_fault(task: SimulatedTask, method: str) -> str | None:
    """Count a download attempt (HEAD is none) and draw its fault: the first GET may fail."""
    if method != "GET":
        return None
    task.downloads += 1
    failing = task.download_fault if task.downloads == 1 else None
    if failing == "503":
        raise ApiError(
            503,
            503,
            "Service temporarily unavailable, retry after 1 seconds",
            "service_unavailable_error",
            retry_after=1,
        )
    return failing


def _proxy_error(status: int, kind: float, html_fraction: float) -> web.Response:
    """A 502/503 from the service (JSON error body) or, for ``kind < html_fraction``, from a
    proxy in front of it: an HTML page or (the lower half of that share) an empty body."""
    reason = {502: "Bad Gateway", 503: "Service Temporarily Unavailable"}[status]
    if kind >= html_fraction:
        type_ = {502: "upstream_error", 503: "service_unavailable_error"}[status]
        body = error_body(status, f"{reason}, retry after 1 seconds", type_)
        return web.json_response(body, status=status, headers={"Retry-After": "1"})
    if kind < html_fraction / 2:
        return web.Response(status=status)
    html = _PROXY_HTML.format(status=status, reason=reason)
    return web.Response(status=status, text=html, content_type="text/html")


async def _send_video(request: web.Request, data: bytes, *, truncate: bool) -> web.StreamResponse:
    """200 or 206 with an exact Content-Length; ``truncate`` stops halfway and hangs up."""
    size = len(data)
    try:
        wanted = parse_range(request.headers.get("Range"), size)
    except UnsatisfiableRange:
        body = error_body("range_not_satisfiable", "Range not satisfiable", "invalid_request_error")
        return web.json_response(body, status=416, headers={"Content-Range": f"bytes */{size}"})
    first, last = wanted or (0, size - 1)
    response = web.StreamResponse(status=206 if wanted else 200)
    response.content_type = "video/mp4"
    response.content_length = last - first + 1
    response.headers["Accept-Ranges"] = "bytes"
    if wanted:
        response.headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    await response.prepare(request)
    if request.method == "HEAD":
        return response
    chunk = data[first : last + 1]
    if truncate:
        await response.write(chunk[: len(chunk) // 2])
        if request.transport is not None:
            request.transport.close()  # flushes what was written, then hangs up
        return response
    await response.write(chunk)
    await response.write_eof()
    return response
