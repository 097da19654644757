"""Where the simulator listens, and an outage of its front door: ``await sim.listener.stop()``
stops listening (a connect is refused) and drops every open connection; ``await
sim.listener.start()`` listens again on the same host and port (``base_url`` unchanged).

The service behind it goes on during an outage (tasks run on the simulated clock, the ledger of
idempotency keys and the credits are kept), as when a gateway's load balancer goes away and
comes back: a client that sends a create again with its key gets the original task.
"""

from __future__ import annotations

from aiohttp import web

__all__ = ["Listener"]


class Listener:
    """One TCP site of ``runner`` on ``host:port`` (0: a free port, kept for a restart)."""

    def __init__(self, runner: web.AppRunner, host: str, port: int) -> None:
        self.runner = runner
        self.host = host
        self.port = port
        self._site: web.TCPSite | None = None

    @property
    def serving(self) -> bool:
        return self._site is not None

    async def start(self) -> tuple[str, int]:
        """Listen (if not yet); return the (host, port) bound. A restart binds the same port."""
        if self._site is not None:
            return self.host, self.port
        site = web.TCPSite(self.runner, self.host, self.port, reuse_address=True)
        await site.start()
        self._site = site
        host, port = self.runner.addresses[-1][:2]
        self.port = port
        return host, port

    async def stop(self) -> None:
        """Stop listening (a connect is refused) and drop every open connection: a request
        in the middle of its answer gets none (a create may have been taken)."""
        if self._site is None:
            return
        site, self._site = self._site, None
        await site.stop()
        server = self.runner.server
        if server is not None:
            await server.shutdown(0.1)  # (0 would wait for every answer: no timeout)
