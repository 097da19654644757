"""A minimal web bot: many users, ONE EvolinkClient, live status of every job.

    python examples/bot.py --simulate           # a local simulator: no key, no credits
    EVOLINK_API_KEY=sk-... python examples/bot.py   # the real service (it costs credits)

    curl -d '{"prompt": "a paper boat on a river"}' localhost:8080/jobs
        -> {"id": "0", "state": "queued", "queue_position": 3, ...}
    curl localhost:8080/jobs/0
        -> {"state": "processing", "progress": 42, "estimated": true, ...}
        -> {"state": "completed", "progress": 100, "video_url": "https://...", ...}

The client is opened when the app starts and closed when it stops (``cleanup_ctx``); its
limits (requests per second, tasks in flight, credits) hold for all users together, so a
user's job waits in the client's queue instead of failing with a 429.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

from aiohttp import web

from evolink_async import EvolinkClient, EvolinkError, PollPolicy, TaskHandle
from evolink_async.testing import Simulator

CLIENT = web.AppKey("client", EvolinkClient)
JOBS = web.AppKey("jobs", dict[str, TaskHandle])
#: a live status page reads each task every 5 s from its start, so users see ``processing``
#: and real progress early (the default policy reads densely only near the expected end:
#: fewer requests, but ``pending`` and an estimate until then)
LIVE = PollPolicy(min_interval=5.0, max_interval=5.0, window=1.0, target_delay=5.0)


def status(handle: TaskHandle) -> dict[str, Any]:
    """What a user sees of a job."""
    shown = handle.current_progress()  # the latest read's, or an estimate between reads
    body: dict[str, Any] = {
        "id": str(handle.index),
        "state": handle.state,  # queued, pending, processing, completed, failed...
        "queue_position": handle.queue_position,  # requests ahead of it (while queued)
        "progress": shown[0] if shown else None,
        "estimated": shown[1] if shown else False,
    }
    if handle.done():
        outcome = handle.outcome
        body["video_url"] = outcome.video_url if outcome else None
        body["error"] = str(outcome.error) if outcome and outcome.error else None
    return body


async def post_job(request: web.Request) -> web.Response:
    try:
        prompt = (await request.json())["prompt"]
        handle = await request.app[CLIENT].submit({"prompt": prompt})  # returns at once
    except (ValueError, KeyError, TypeError, EvolinkError) as exc:  # checked before any send
        raise web.HTTPBadRequest(text=f"bad job: {exc}") from None
    request.app[JOBS][str(handle.index)] = handle
    return web.json_response(status(handle), status=202)


async def get_job(request: web.Request) -> web.Response:
    handle = request.app[JOBS].get(request.match_info["id"])
    if handle is None:
        raise web.HTTPNotFound(text="no such job")
    return web.json_response(status(handle))


def evolink(
    simulator: dict[str, Any] | None, **options: Any
) -> Callable[[web.Application], AsyncIterator[None]]:
    """The app's client (and, to try it out, a simulator), open while the app runs."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            if simulator is not None:
                sim = await stack.enter_async_context(Simulator(**simulator))
                options.update(api_key=sim.api_key, base_url=sim.base_url)
            app[CLIENT] = await stack.enter_async_context(EvolinkClient(**options))
            yield  # the app serves; leaving closes the client, then the simulator

    return context


def make_app(simulator: dict[str, Any] | None = None, **client_options: Any) -> web.Application:
    """The bot. ``simulator``: knobs of an embedded simulator (``None``: the real service,
    key from ``$EVOLINK_API_KEY``); ``client_options`` go to ``EvolinkClient`` (``poll``:
    :data:`LIVE` unless given)."""
    client_options.setdefault("poll", LIVE)
    app = web.Application()
    app[JOBS] = {}
    app.cleanup_ctx.append(evolink(simulator, **client_options))
    app.router.add_post("/jobs", post_job)
    app.router.add_get("/jobs/{id}", get_job)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="A minimal web bot on one EvolinkClient")
    parser.add_argument("--simulate", action="store_true", help="run against a local simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    simulator = {"time_scale": 0.05} if args.simulate else None  # a "5 min" clip in 15 s
    web.run_app(make_app(simulator, max_in_flight=4), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
