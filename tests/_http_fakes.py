"""The mocked service of the HTTP tests (aioresponses), its answers, and the fixtures of
test_transport, test_api and test_client.

No test sleeps: ``Transport._sleep`` is replaced by a recorder of the waits it is asked for.
"""

from __future__ import annotations

import inspect
import json
import types
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey
from aioresponses import aioresponses
from yarl import URL

from evolink_async._retry import RetryPolicy, is_testing, set_testing
from evolink_async._transport import Transport
from evolink_async.client import EvolinkClient
from evolink_async.errors import (
    EvolinkError,
)

BASE = "https://api.evolink.test"
KEY = "sk-evo-UNITTEST-s3cr3t-0123456789abcdef"
CREATE = "/v1/videos/generations"
CREDITS = "/v1/credits"
TASK_ID = "task-unified-1757169743-7cvnl5zw"
TASK_PATH = f"/v1/tasks/{TASK_ID}"

SEED_CREATE_ANSWER: dict[str, Any] = {
    "created": 1757169743,
    "id": TASK_ID,
    "model": "sora-2-preview",
    "object": "video.generation.task",
    "progress": 0,
    "status": "pending",
    "task_info": {"can_cancel": True, "estimated_time": 300, "video_duration": 9},
    "type": "video",
    "usage": {"billing_rule": "per_call", "credits_reserved": 7, "user_group": "default"},
}
COMPLETED: dict[str, Any] = {
    "created": 1757169743,
    "id": TASK_ID,
    "model": "sora-2-preview",
    "object": "video.generation.task",
    "progress": 100,
    "results": ["http://example.com/video.mp4"],
    "status": "completed",
    "task_info": {"can_cancel": False},
    "type": "video",
}
CREDITS_ANSWER: dict[str, Any] = {
    "data": {
        "token": {
            "remaining_credits": 99416.4429,
            "unlimited_credits": False,
            "used_credits": 583.5571,
        },
        "user": {"remaining_credits": 1095.3996, "used_credits": 135.9048},
    },
    "message": "",
    "success": True,
}


# -- aioresponses, made to work with aiohttp 3.14 ---------------------------------------------

_NEEDS_STREAM_WRITER = "stream_writer" in inspect.signature(aiohttp.ClientResponse).parameters


class _Response(aiohttp.ClientResponse):
    """aioresponses 0.7.9 builds responses without the ``stream_writer`` argument that
    aiohttp 3.14 requires (pnuckowski/aioresponses#289); supply a stand-in."""

    def __init__(self, method: str, url: URL, **kwargs: Any) -> None:
        if _NEEDS_STREAM_WRITER:
            kwargs.setdefault("stream_writer", types.SimpleNamespace(output_size=0))
        super().__init__(method, url, **kwargs)


class FakeAPI:
    """The mocked service: queue answers or exceptions per method and path; count calls."""

    def __init__(self, mock: aioresponses, base: str = BASE) -> None:
        self.mock = mock
        self.base = base

    def reply(
        self,
        method: str,
        path: str,
        status: int = 200,
        *,
        json: Any = None,
        body: str | bytes | None = None,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
        repeat: bool = False,
    ) -> None:
        if json is not None:
            body = _json_dumps(json)
        self.mock.add(
            self.base + path,
            method,
            status=status,
            body=b"" if body is None else body,
            headers=headers,
            content_type=content_type,
            repeat=repeat,
            response_class=_Response,
        )

    def fail(self, method: str, path: str, exc: Exception, *, repeat: bool = False) -> None:
        self.mock.add(self.base + path, method, exception=exc, repeat=repeat)

    def calls(self, method: str, path: str) -> int:
        return len(self.mock.requests.get((method, URL(self.base + path)), []))

    def sent(self, method: str, path: str, index: int = -1) -> dict[str, Any]:
        """The keyword arguments of one request (json, headers, ...)."""
        call = self.mock.requests[(method, URL(self.base + path))][index]
        kwargs: dict[str, Any] = call.kwargs
        return kwargs

    @property
    def total_calls(self) -> int:
        return sum(len(calls) for calls in self.mock.requests.values())


def _json_dumps(value: Any) -> str:
    return json.dumps(value)


def refused() -> aiohttp.ClientConnectorError:
    key = ConnectionKey("api.evolink.test", 443, True, True, None, None, None)
    return aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "Connection refused"))


# -- fixtures ----------------------------------------------------------------------------------

_REAL_SLEEP = Transport._sleep


@pytest.fixture(autouse=True)
def testing_switch_is_reset() -> Iterator[None]:
    before = is_testing()
    set_testing(False)
    yield
    set_testing(before)


@pytest.fixture(autouse=True)
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every wait the transport asks for, in order; nothing really sleeps."""
    waits: list[float] = []

    async def record(self: Transport, seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(Transport, "_sleep", record)
    return waits


@pytest.fixture
def api() -> Iterator[FakeAPI]:
    with aioresponses() as mock:
        yield FakeAPI(mock)


MakeTransport = Callable[..., Transport]


@pytest.fixture
async def make_transport() -> AsyncIterator[MakeTransport]:
    made: list[Transport] = []

    def make(**kwargs: Any) -> Transport:
        kwargs.setdefault("api_key", KEY)
        kwargs.setdefault("base_url", BASE)
        kwargs.setdefault("retry", RetryPolicy(attempts=3))
        kwargs.setdefault("seed", 1)
        transport = Transport(**kwargs)
        made.append(transport)
        return transport

    yield make
    for transport in made:
        await transport.aclose()


@pytest.fixture
async def transport(make_transport: MakeTransport) -> Transport:
    return make_transport()


@pytest.fixture
async def once(make_transport: MakeTransport) -> Transport:
    """A transport that never retries: one request, one answer."""
    return make_transport(retry=RetryPolicy(attempts=1))


MakeClient = Callable[..., EvolinkClient]


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    made: list[EvolinkClient] = []

    def make(**kwargs: Any) -> EvolinkClient:
        kwargs.setdefault("rate", None)
        kwargs.setdefault("retry", RetryPolicy(attempts=3))
        client = EvolinkClient(**kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


@pytest.fixture
async def client(make_client: MakeClient) -> EvolinkClient:
    return make_client(api_key=KEY, base_url=BASE)


async def raised(awaitable: Awaitable[Any]) -> EvolinkError:
    """The SDK exception an awaitable raises (fails the test if it raises nothing)."""
    with pytest.raises(EvolinkError) as info:
        await awaitable
    return info.value
