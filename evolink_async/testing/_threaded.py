"""A simulator served from a background thread, for synchronous code and subprocesses."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from ._server import Simulator

__all__ = ["ThreadedSimulator"]


class ThreadedSimulator:
    """A ``Simulator`` on its own event loop in a daemon thread.

    For code that is not async itself (a synchronous test, a CLI run with ``asyncio.run``, a
    subprocess pointed at ``sim.base_url``) while the caller reads ``sim.stats``::

        with ThreadedSimulator(time_scale=0.01) as sim:
            subprocess.run([..., "--base-url", sim.base_url, "--api-key", sim.api_key])
    """

    def __init__(self, **knobs: Any) -> None:
        self.knobs = knobs
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.sim: Simulator | None = None

    def __enter__(self) -> Simulator:
        self.thread.start()
        start = asyncio.run_coroutine_threadsafe(Simulator(**self.knobs).start(), self.loop)
        self.sim = start.result(timeout=10)
        return self.sim

    def __exit__(self, *exc_info: object) -> None:
        if self.sim is not None:
            asyncio.run_coroutine_threadsafe(self.sim.close(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()
