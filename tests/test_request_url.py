"""The URL and headers of a request: a plain path joined to the base parsed once, anything
else the ordinary way; the common headers sent once a request, by the session when the client
owns it, and a request's own headers still sent.

The wire tests use a small aiohttp server on 127.0.0.1 that records what arrives.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from evolink_async import __about__
from evolink_async._request_url import RequestURLs
from evolink_async._transport import Transport

KEY = "sk-evo-request-url-test-key-0001"


@pytest.mark.parametrize(
    ("base", "path", "expected"),
    [
        ("http://127.0.0.1:8080", "/v1/tasks/task-unified-1-ab", "http://127.0.0.1:8080/v1/tasks/task-unified-1-ab"),
        ("https://api.evolink.ai", "/v1/credits", "https://api.evolink.ai/v1/credits"),
        ("http://h:1/prefix", "/v1/tasks/t-1", "http://h:1/prefix/v1/tasks/t-1"),
        ("http://h:1/prefix/", "/v1/tasks/t-1", "http://h:1/prefix/v1/tasks/t-1"),
        ("http://[::1]:9", "/v1/tasks/t.1~x_y", "http://[::1]:9/v1/tasks/t.1~x_y"),
    ],
)  # fmt: skip
def test_a_plain_path_is_joined_to_the_parsed_base(base: str, path: str, expected: str) -> None:
    url = RequestURLs(base).join(path)
    assert isinstance(url, URL)
    assert expected == str(url)
    assert URL(expected) == url


@pytest.mark.parametrize(
    "path",
    [
        "/v1/tasks/task-unified-ä b",  # would need percent-encoding
        "/v1/tasks/task-unified-%41",  # already encoded: yarl decides
        "/v1/tasks?page=1&page_size=20",  # a query
        "/v1/tasks/x#frag",
    ],
)
def test_a_path_with_anything_to_encode_stays_a_string_for_aiohttp(path: str) -> None:
    assert "http://h:1" + path == RequestURLs("http://h:1").join(path)


@pytest.mark.parametrize("base", ["http://h:1/?x=1", "http://h:1/#top", "not a url", "/relative"])
def test_a_base_with_a_query_a_fragment_or_no_host_is_joined_as_a_string(base: str) -> None:
    assert base + "/v1/credits" == RequestURLs(base).join("/v1/credits")


def test_an_absolute_url_is_used_as_it_is() -> None:
    url = "https://files.example.com/api/v1/files/upload/base64"
    assert url == RequestURLs("http://h:1").join(url)


# -- on the wire ---------------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, list[str]]]] = []

    async def handle(self, request: web.Request) -> web.Response:
        headers: dict[str, list[str]] = {}
        for name in ("Authorization", "Accept", "User-Agent", "Idempotency-Key"):
            headers[name] = request.headers.getall(name, [])
        self.seen.append((request.match_info["tail"], headers))
        return web.json_response({"ok": True})


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[Recorder, str]]:
    rec = Recorder()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", rec.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield rec, f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def wire(recorder: tuple[Recorder, str]) -> AsyncIterator[tuple[Recorder, Transport]]:
    """A transport with its own session, pointed at the recorder; closed after the test."""
    rec, base = recorder
    transport = Transport(api_key=KEY, base_url=base)
    try:
        yield rec, transport
    finally:
        await transport.aclose()


async def test_an_encoded_task_id_reaches_the_server_decoded(
    wire: tuple[Recorder, Transport],
) -> None:
    rec, transport = wire
    await transport.request("GET", "/v1/tasks/task-unified-ä b", kind="task")
    await transport.request("GET", "/v1/tasks/task-unified-1-ab", kind="task")
    assert ["v1/tasks/task-unified-ä b", "v1/tasks/task-unified-1-ab"] == [p for p, _ in rec.seen]


async def test_every_request_carries_the_common_headers_once(
    wire: tuple[Recorder, Transport],
) -> None:
    rec, transport = wire
    await transport.request("GET", "/v1/credits", kind="credits")
    await transport.create("/v1/videos/generations", json={}, idempotency_key="key-1")
    transport.user_agent = "my-bot/2.0"  # changed after the session was made
    await transport.request("GET", "/v1/credits", kind="credits")
    agent = f"evolink-async/{__about__.__version__}"
    expected: list[dict[str, list[str]]] = [
        {"Authorization": [f"Bearer {KEY}"], "Accept": ["application/json"],
         "User-Agent": [agent], "Idempotency-Key": []},
        {"Authorization": [f"Bearer {KEY}"], "Accept": ["application/json"],
         "User-Agent": [agent], "Idempotency-Key": ["key-1"]},
        {"Authorization": [f"Bearer {KEY}"], "Accept": ["application/json"],
         "User-Agent": ["my-bot/2.0"], "Idempotency-Key": []},
    ]  # fmt: skip
    assert expected == [h for _, h in rec.seen]


async def test_a_session_given_by_the_caller_gets_the_headers_with_each_request(
    recorder: tuple[Recorder, str],
) -> None:
    rec, base = recorder
    async with aiohttp.ClientSession() as session:
        transport = Transport(api_key=KEY, base_url=base, session=session)
        await transport.request("GET", "/v1/credits", kind="credits")
        await transport.aclose()
        assert not session.closed  # the caller's session stays the caller's
    assert [[f"Bearer {KEY}"]] == [h["Authorization"] for _, h in rec.seen]
