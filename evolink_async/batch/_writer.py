"""The journal writer of a run: appends records in the order they are posted, from one task."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Awaitable, Callable

import anyio
import attrs

from ..errors import JournalError

__all__ = ["JournalWriter", "Op"]

Op = Callable[[], Awaitable[object]]


@attrs.define(eq=False)
class _Done:
    event: anyio.Event = attrs.Factory(anyio.Event)
    error: BaseException | None = None


class JournalWriter:
    """Runs journal appends one after another, in the order they were posted.

    ``post`` is fire-and-forget (usable from synchronous event handlers); ``write`` waits until
    the record is on disk. After a failed write every later one fails too. Start :meth:`run`
    in a task group and call :meth:`close` when nothing more will be posted: ``run`` then
    writes what is left and returns (it is shielded from cancellation meanwhile).
    """

    __slots__ = ("_on_error", "_receive", "_send", "error")

    def __init__(self, on_error: Callable[[BaseException], None]) -> None:
        send, receive = anyio.create_memory_object_stream[tuple[Op, "_Done | None"]](math.inf)
        self._send = send
        self._receive = receive
        self._on_error = on_error
        self.error: BaseException | None = None

    def post(self, op: Op) -> None:
        """Queue ``op``; a post after :meth:`close` is dropped."""
        with contextlib.suppress(anyio.ClosedResourceError):
            self._send.send_nowait((op, None))

    async def write(self, op: Op) -> None:
        """Queue ``op`` and wait until it ran; raises what it raised."""
        done = _Done()
        try:
            self._send.send_nowait((op, done))
        except anyio.ClosedResourceError:
            raise JournalError("the journal writer is closed") from None
        await done.event.wait()
        if done.error is not None:
            raise done.error

    async def run(self) -> None:
        """Run the posted appends until :meth:`close` (shielded: none is lost to a cancel)."""
        with anyio.CancelScope(shield=True):
            async with self._receive:
                async for op, done in self._receive:
                    await self._one(op, done)

    async def _one(self, op: Op, done: _Done | None) -> None:
        try:
            if self.error is not None:
                raise JournalError(f"the journal is unusable: {self.error}")
            await op()
        except Exception as exc:
            if self.error is None:
                self.error = exc
                self._on_error(exc)
            if done is not None:
                done.error = exc
        finally:
            if done is not None:
                done.event.set()

    def close(self) -> None:
        """No more posts: :meth:`run` returns once the queued ones are written."""
        self._send.close()
