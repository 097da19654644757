"""Tests for evolink_async.download, against a small aiohttp.web server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import hashlib
import pickle
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp
import anyio
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from evolink_async import _retry
from evolink_async._retry import is_testing, set_testing
from evolink_async.download import (
    DownloadError,
    DownloadIntegrityError,
    DownloadResult,
    DownloadTooLargeError,
    download_file,
    redact_url,
    safe_filename,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

DATA = bytes(range(256)) * 400  # 102400 bytes
DATA_SHA = hashlib.sha256(DATA).hexdigest()
CHUNK = 4096


# --------------------------------------------------------------------------- test server


class FileServer:
    """Answers each path with a script of handlers (the last one repeats); records requests."""

    def __init__(self) -> None:
        self.scripts: dict[str, list[Handler]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.release = asyncio.Event()  # lets stalled handlers finish at teardown
        self.port = 0

    def script(self, path: str, *handlers: Handler) -> str:
        """Serve ``path`` with ``handlers`` in turn; return its URL (with a fake signature)."""
        self.scripts[path] = list(handlers)
        return f"http://127.0.0.1:{self.port}{path}?sig=SECRET&exp=1"

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]

    def header(self, index: int, name: str) -> str | None:
        return self.requests[index][1].get(name)

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.path, dict(request.headers)))
        script = self.scripts[request.path]
        handler = script.pop(0) if len(script) > 1 else script[0]
        return await handler(request)


@pytest.fixture
async def server() -> AsyncIterator[FileServer]:
    files = FileServer()
    app = web.Application()
    app.router.add_get("/{name:.*}", files.dispatch)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    files.port = runner.addresses[0][1]
    yield files
    files.release.set()
    await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


class SleepRecorder:
    """An injectable ``sleep`` that returns at once and records the delays asked for."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.waits.append(delay)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


class Progress:
    """An ``on_progress`` recorder a server handler can wait on (to cut a body at a known byte)."""

    def __init__(self) -> None:
        self.received = 0
        self.totals: list[int | None] = []
        self._waiters: list[tuple[int, asyncio.Event]] = []

    def __call__(self, received: int, total: int | None) -> None:
        self.received = received
        self.totals.append(total)
        for count, event in self._waiters:
            if received >= count:
                event.set()

    async def reach(self, count: int) -> None:
        """Return once the client has written ``count`` bytes."""
        if self.received < count:
            event = asyncio.Event()
            self._waiters.append((count, event))
            await event.wait()


# --------------------------------------------------------------------------- handlers


def serve(
    data: bytes = DATA,
    *,
    ranges: bool = True,
    etag: str | None = None,
    accept_ranges: bool = True,
) -> Handler:
    """Serve ``data``; honour ``Range: bytes=N-`` when ``ranges``."""

    async def handler(request: web.Request) -> web.StreamResponse:
        headers = {"Accept-Ranges": "bytes" if accept_ranges else "none"}
        if etag is not None:
            headers["ETag"] = etag
        match = re.fullmatch(r"bytes=(\d+)-", request.headers.get("Range", ""))
        if ranges and match is not None:
            start = int(match[1])
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            return web.Response(status=206, body=data[start:], headers=headers)
        return web.Response(body=data, headers=headers)

    return handler


def cut(
    data: bytes = DATA,
    at: int = 10 * CHUNK,
    *,
    etag: str | None = None,
    progress: Progress | None = None,
) -> Handler:
    """Announce all of ``data`` (or the rest after a Range), send ``at`` bytes, then hang up.

    With ``progress``, hang up only once the client has stored those bytes, so the cut is at
    a known offset (aiohttp drops bytes still buffered when it sees the connection close).
    """

    async def handler(request: web.Request) -> web.StreamResponse:
        headers = {"Accept-Ranges": "bytes"}
        if etag is not None:
            headers["ETag"] = etag
        match = re.fullmatch(r"bytes=(\d+)-", request.headers.get("Range", ""))
        start = int(match[1]) if match else 0
        response = web.StreamResponse(status=206 if match else 200, headers=headers)
        if match:
            response.headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        response.content_length = len(data) - start
        await response.prepare(request)
        await response.write(data[start : start + at])
        if progress is not None:
            await progress.reach(start + at)
        assert request.transport is not None
        request.transport.close()
        return response

    return handler


def status(code: int, headers: dict[str, str] | None = None) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=code, text=f"status {code}", headers=headers)

    return handler


def raw(payload: bytes, *, progress: Progress | None = None, until: int = 0) -> Handler:
    """Write ``payload`` as the whole answer, byte for byte, and close the connection.

    With ``progress``, close only once the client has stored ``until`` bytes.
    """

    async def handler(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.write(payload)
        if progress is not None:
            await progress.reach(until)
        request.transport.close()
        return web.Response()

    return handler


def chunked(data: bytes = DATA) -> Handler:
    """Send ``data`` with chunked transfer encoding (no Content-Length)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(data), CHUNK):
            await response.write(data[start : start + CHUNK])
        await response.write_eof()
        return response

    return handler


def stall(files: FileServer, data: bytes = DATA, at: int = CHUNK) -> Handler:
    """Announce ``data``, send ``at`` bytes, then wait until the test ends."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = len(data)
        await response.prepare(request)
        await response.write(data[:at])
        await files.release.wait()
        return response

    return handler


def leftovers(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


# --------------------------------------------------------------------------- downloads


async def test_download_writes_file_with_matching_size_and_sha(
    server: FileServer, session: aiohttp.ClientSession, tmp_path: Path, sleeps: SleepRecorder
) -> None:
    url = server.script("/clip.mp4", serve())
    dest = tmp_path / "clip.mp4"
    seen: list[tuple[int, int | None, list[str]]] = []

    def progress(received: int, total: int | None) -> None:
        seen.append((received, total, leftovers(tmp_path)))

    result = await download_file(
        session, url, dest, chunk_size=CHUNK, sleep=sleeps, on_progress=progress
    )

    assert DownloadResult(path=dest, size=len(DATA), sha256=DATA_SHA, url=url, attempts=1) == (
        result
    )
    assert dest.read_bytes() == DATA
    assert leftovers(tmp_path) == ["clip.mp4"]
    assert sleeps.waits == []
    assert seen[-1][:2] == (len(DATA), len(DATA))
    # While streaming, only the temporary file exists: never a partial file at dest.
    assert all(
        len(names) == 1 and re.fullmatch(r"\.clip\.mp4\.[0-9a-f]{8}\.part", names[0])
        for _, _, names in seen
    )
    assert server.header(0, "Accept-Encoding") == "identity"


async def test_truncated_body_is_resumed_with_range(
    server: FileServer, session: aiohttp.ClientSession, tmp_path: Path, sleeps: SleepRecorder
) -> None:
    progress = Progress()
    url = server.script(
        "/clip.mp4", cut(at=10 * CHUNK, etag='"v1"', progress=progress), serve(etag='"v1"')
    )
    dest = tmp_path / "clip.mp4"

    result = await download_file(
        session, url, dest, chunk_size=CHUNK, sleep=sleeps, on_progress=progress
    )

    assert DownloadResult(path=dest, size=len(DATA), sha256=DATA_SHA, url=url, attempts=2) == (
        result
    )
    assert dest.read_bytes() == DATA
    assert server.header(0, "Range") is None
    assert server.header(1, "Range") == "bytes=40960-"
    assert server.header(1, "If-Range") == '"v1"'
    assert leftovers(tmp_path) == ["clip.mp4"]
    assert len(sleeps.waits) == 1
    assert 0.0 <= sleeps.waits[0] <= 0.5
    assert progress.received == len(DATA)


async def test_server_ignoring_range_restarts_from_zero(
    server: FileServer, session: aiohttp.ClientSession, tmp_path: Path, sleeps: SleepRecorder
) -> None:
    progress = Progress()
    url = server.script("/clip.mp4", cut(progress=progress), serve(ranges=False))
    dest = tmp_path / "clip.mp4"

    result = await download_file(
        session, url, dest, chunk_size=CHUNK, sleep=sleeps, on_progress=progress
    )

    assert (result.size, result.sha256, result.attempts) == (len(DATA), DATA_SHA, 2)
    assert dest.read_bytes() == DATA
    assert server.header(1, "Range") == "bytes=40960-"


async def test_resume_twice_across_several_cuts(
    server: FileServer, session: aiohttp.ClientSession, tmp_path: Path, sleeps: SleepRecorder
) -> None:
    progress = Progress()
    url = server.script(
        "/clip.mp4",
        cut(at=8 * CHUNK, progress=progress),
        cut(at=8 * CHUNK, progress=progress),
        serve(),
    )
    dest = tmp_path / "clip.mp4"

    result = await download_file(
        session, url, dest, chunk_size=CHUNK, sleep=sleeps, on_progress=progress
    )

    assert (result.size, result.sha256, result.attempts) == (len(DATA), DATA_SHA, 3)
    assert [server.header(i, "Range") for i in range(3)] == [None, "bytes=32768-", "bytes=65536-"]


async def test_partial_answer_with_another_range_starts_over(
    server: FileServer, session: aiohttp.ClientSession, tmp_path: Path, sleeps: SleepRecorder
) -> None:
    wrong = (
        b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 10-19/102400\r\n"
        b"Content-Length: 10\r\nConnection: close\r\n\r\n" + DATA[10:20]
    )
    progress = Progress()
    url = server.script("/clip.mp4", cut(progress=progress), raw(wrong), serve())
    dest = tmp_path / "clip.mp4"

    result = await download_file(
        session, url, dest, chunk_size=CHUNK, sleep=sleeps, on_progress=progress
    )

    assert (result.size, result.sha256, result.attempts) == (len(DATA), DATA_SHA, 3)
    assert server.header(1, "Range") == "bytes=40960-"
    assert server.header(2, "Range") is None


async def test_accept_ranges_none_restarts_without_range(
    server: FileServer, session: aiohttp.ClientSession, tmp_path: Path, sleeps: SleepRecorder
) -> None:
    first = (
        b"HTTP/1.1 200 OK\r\nAccept-Ranges: none\r\nContent-Length: 102400\r\n"
        b"Connection: close\r\n\r\n" + DATA[: 2 * CHUNK]
    )
    progress = Progress()
    url = server.script("/clip.mp4", raw(first, progress=progress, until=2 * CHUNK), serve())
    dest = tmp_path / "clip.mp4"

    result = await download_file(
        session, url, dest, chunk_size=CHUNK, sleep=sleeps, on_progress=progress
    )

    assert (result.size, result.sha256, result.attempts) == (len(DATA), DATA_SHA, 2)
    assert server.header(1, "Range") is None
    assert progress.totals[:2] == [len(DATA), len(DATA)]  # it did have bytes to resume from


async def test_body_longer_than_content_length_is_too_large_and_leaves_no_file(
    server: FileServer, session: aiohttp.ClientSession, tmp_path: Path, sleeps: SleepRecorder
) -> None:
    payload = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\n" + b"x" * 50
    url = server.script("/clip.mp4", raw(payload))

    with pytest.raises(DownloadTooLargeError) as caught:
        await download_file(session, url, tmp_path / "clip.mp4", sleep=sleeps)

    assert "more bytes than Content-Length" in caught.value.reason
    assert leftovers(tmp_path) == []
    assert server.paths() == ["/clip.mp4"]  # not retried
    assert sleeps.waits == []


async def test_announced_size_over_max_bytes_is_refused_up_front(
    server: FileServer, session: aiohttp.ClientSession, tmp_path: Path, sleeps: SleepRecorder
) -> None:
    url = server.script("/clip.mp4", serve())
    progress: list[int] = []

    with pytest.raises(DownloadTooLargeError) as caught:
        await download_file(
            session,
            url,
            tmp_path / "clip.mp4",
            max_bytes=1000,
            sleep=sleeps,
            on_progress=lambda received, total: progress.append(received),
        )

    assert caught.value.reason == "announced size 102400 bytes exceeds max_bytes=1000"
    assert progress == []
    assert leftovers(tmp_path) == []
    assert server.paths() == ["/clip.mp4"]


async def test_unannounced_body_over_max_bytes_stops_while_streaming(
    server: FileServer, session: aiohttp.ClientSession, tmp_path: Path, sleeps: SleepRecorder
) -> None:
    url = server.script("/clip.mp4", chunked())

    with pytest.raises(DownloadTooLargeError) as caught:
        await download_file(
            session, url, tmp_path / "clip.mp4", max_bytes=10000, chunk_size=CHUNK, sleep=sleeps
        )

    assert caught.value.reason == "body exceeds max_bytes=10000"
    assert leftovers(tmp_path) == []
    assert server.paths() == ["/clip.mp4"]


async def test_chunked_body_without_content_length_downloads(
    server: FileServer, session: aiohttp.ClientSession, tmp_path: Path, sleeps: SleepRecorder
) -> None:
    url = server.script("/clip.mp4", chunked())
    totals: list[int | None] = []

    result = await download_file(
        session,
        url,
        tmp_path / "clip.mp4",
        chunk_size=CHUNK,
        sleep=sleeps,
        on_progress=lambda received, total: totals.append(total),
    )

    assert (result.size, result.sha256) == (len(DATA), DATA_SHA)
    assert set(totals) == {None}


async def test_gzip_encoded_body_is_stored_decoded(
    server: FileServer, session: aiohttp.ClientSession, tmp_path: Path, sleeps: SleepRecorder
) -> None:
    # A server that compresses although the client asked for identity: Content-Length counts
    # the compressed bytes, so it is not a bound on the file.
    async def gzipped(request: web.Request) -> web.StreamResponse:
        return web.Response(body=gzip.compress(DATA), headers={"Content-Encoding": "gzip"})

    url = server.script("/clip.mp4", gzipped)

    result = await download_file(session, url, tmp_path / "clip.mp4", sleep=sleeps)

    assert (result.size, result.sha256) == (len(DATA), DATA_SHA)


@pytest.mark.parametrize("answer", [(404, "Not Found"), (403, "Forbidden")], ids=str)
async def test_an_expired_link_answer_is_final_and_not_retried(
    server: FileServer,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    sleeps: SleepRecorder,
    answer: tuple[int, str],
) -> None:
    code, reason = answer
    url = server.script("/expired.mp4", status(code))

    with pytest.raises(DownloadError) as caught:
        await download_file(session, url, tmp_path / "clip.mp4", sleep=sleeps)

    error = caught.value
    expected = f"HTTP {code} {reason}"
    assert (type(error), error.status, error.reason) == (DownloadError, code, expected)
    assert str(error) == (
        f"download of http://127.0.0.1:{server.port}/expired.mp4 failed: {expected}"
    )
    assert "SECRET" not in str(error)
    assert "SECRET" not in repr(error)
    assert server.paths() == ["/expired.mp4"]
    assert sleeps.waits == []
    assert leftovers(tmp_path) == []


async def test_service_unavailable_then_success(
    server: FileServer, session: aiohttp.ClientSession, tmp_path: Path, sleeps: SleepRecorder
) -> None:
    url = server.script("/clip.mp4", status(503), serve())

    result = await download_file(session, url, tmp_path / "clip.mp4", sleep=sleeps)

    assert (result.sha256, result.attempts) == (DATA_SHA, 2)
    assert len(server.requests) == 2
    assert len(sleeps.waits) == 1
    assert 0.0 <= sleeps.waits[0] <= 0.5


_TOMORROW = email.utils.format_datetime(datetime.now(timezone.utc) + timedelta(days=1), usegmt=True)


#: (status, Retry-After) answers before a good one → the waits asked for
RETRY_AFTER_CASES = {
    "seconds": ([(429, "3"), (429, "60")], [3.0, 8.0]),
    "http-date": ([(503, _TOMORROW)], [8.0]),
}


@pytest.mark.parametrize("case", RETRY_AFTER_CASES.values(), ids=RETRY_AFTER_CASES.keys())
async def test_retry_after_is_honoured_up_to_wait_max(
    server: FileServer,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    sleeps: SleepRecorder,
    case: tuple[list[tuple[int, str]], list[float]],
) -> None:
    answers, expected_waits = case
    scripted = [status(code, {"Retry-After": value}) for code, value in answers]
    url = server.script("/clip.mp4", *scripted, serve())

    result = await download_file(session, url, tmp_path / "clip.mp4", sleep=sleeps)

    assert (result.sha256, result.attempts) == (DATA_SHA, len(answers) + 1)
    assert sleeps.waits == expected_waits


@pytest.fixture
def testing_switch() -> Iterator[None]:
    """``set_testing(True)`` for one test, then the switch as it was."""
    before = is_testing()
    set_testing(True)
    yield
    set_testing(before)


@pytest.mark.usefixtures("testing_switch")
async def test_set_testing_zeroes_backoff_and_retry_after_waits(
    server: FileServer, session: aiohttp.ClientSession, tmp_path: Path, sleeps: SleepRecorder
) -> None:
    url = server.script(
        "/clip.mp4", status(429, {"Retry-After": "3600"}), status(502), status(500), serve()
    )

    result = await download_file(
        session, url, tmp_path / "clip.mp4", wait_initial=5.0, wait_max=60.0, sleep=sleeps
    )

    assert (result.sha256, result.attempts, sleeps.waits) == (DATA_SHA, 4, [0.0, 0.0, 0.0])


class _MaxJitter:
    """Stands in for the jitter source: always the top of the interval."""

    def random(self) -> float:
        return 1.0


async def test_backoff_doubles_up_to_wait_max_then_gives_up(
    server: FileServer,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    sleeps: SleepRecorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_retry, "_rng", _MaxJitter())
    url = server.script("/clip.mp4", status(502))

    with pytest.raises(DownloadError) as caught:
        await download_file(
            session,
            url,
            tmp_path / "clip.mp4",
            attempts=6,
            wait_initial=0.5,
            wait_max=3.0,
            sleep=sleeps,
        )

    assert sleeps.waits == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert len(server.requests) == 6
    assert caught.value.status == 502
    assert caught.value.reason == "HTTP 502 Bad Gateway (gave up after 6 attempts)"
    assert leftovers(tmp_path) == []


async def test_backoff_stays_at_wait_max_past_a_thousand_failures(
    server: FileServer,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    sleeps: SleepRecorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_retry, "_rng", _MaxJitter())
    url = server.script("/clip.mp4", status(502))

    with pytest.raises(DownloadError):
        await download_file(session, url, tmp_path / "clip.mp4", attempts=1030, sleep=sleeps)

    assert (1029, [8.0] * 1000) == (len(sleeps.waits), sleeps.waits[-1000:])


async def test_backoff_waits_use_full_jitter_within_the_cap(
    server: FileServer, session: aiohttp.ClientSession, tmp_path: Path, sleeps: SleepRecorder
) -> None:
    url = server.script("/clip.mp4", status(500))

    with pytest.raises(DownloadError):
        await download_file(session, url, tmp_path / "clip.mp4", attempts=5, sleep=sleeps)

    caps = [0.5, 1.0, 2.0, 4.0]
    assert len(sleeps.waits) == len(caps)
    assert all(0.0 <= wait <= cap for wait, cap in zip(sleeps.waits, caps, strict=True))


async def test_connection_refused_is_retried_then_reported(
    session: aiohttp.ClientSession, tmp_path: Path, sleeps: SleepRecorder
) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(DownloadError) as caught:
        await download_file(
            session, f"http://127.0.0.1:{port}/clip.mp4", tmp_path / "c.mp4", sleep=sleeps
        )

    assert caught.value.reason.startswith("connection error")
    assert caught.value.reason.endswith("(gave up after 4 attempts)")
    assert len(sleeps.waits) == 3
    assert leftovers(tmp_path) == []


async def test_attempt_timeout_is_retried(
    server: FileServer, session: aiohttp.ClientSession, tmp_path: Path, sleeps: SleepRecorder
) -> None:
    url = server.script("/clip.mp4", stall(server), serve())

    result = await download_file(
        session, url, tmp_path / "clip.mp4", timeout=0.5, chunk_size=CHUNK, sleep=sleeps
    )

    assert (result.sha256, result.attempts) == (DATA_SHA, 2)


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://127.0.0.1/clip.mp4",
        "data:video/mp4;base64,AAAA",
        "javascript:alert(1)",
        "/relative/clip.mp4",
        "",
    ],
)
async def test_non_http_scheme_is_refused_before_any_io(
    url: str, tmp_path: Path, sleeps: SleepRecorder
) -> None:
    async with aiohttp.ClientSession() as unused:
        with pytest.raises(DownloadError) as caught:
            await download_file(unused, url, tmp_path / "clip.mp4", sleep=sleeps)

    assert "refused: only http and https are allowed" in caught.value.reason
    assert leftovers(tmp_path) == []


async def test_cancellation_mid_download_leaves_no_file(
    server: FileServer, session: aiohttp.ClientSession, tmp_path: Path, sleeps: SleepRecorder
) -> None:
    url = server.script("/clip.mp4", stall(server, at=3 * CHUNK))
    dest = tmp_path / "clip.mp4"
    during: list[list[str]] = []

    with anyio.CancelScope() as scope:

        def progress(received: int, total: int | None) -> None:
            during.append(leftovers(tmp_path))
            scope.cancel()

        await download_file(
            session, url, dest, chunk_size=CHUNK, sleep=sleeps, on_progress=progress
        )

    assert scope.cancelled_caught
    assert len(during) == 1
    assert during[0][0].endswith(".part")  # the temporary file was there ...
    assert leftovers(tmp_path) == []  # ... and is gone, and nothing is at dest


async def test_failed_download_leaves_existing_dest_untouched(
    server: FileServer, session: aiohttp.ClientSession, tmp_path: Path, sleeps: SleepRecorder
) -> None:
    dest = tmp_path / "clip.mp4"
    dest.write_bytes(b"previous")
    url = server.script("/clip.mp4", cut(at=1000))

    with pytest.raises(DownloadError):
        await download_file(session, url, dest, attempts=2, sleep=sleeps)

    assert dest.read_bytes() == b"previous"
    assert leftovers(tmp_path) == ["clip.mp4"]


async def test_successful_download_replaces_existing_dest(
    server: FileServer, session: aiohttp.ClientSession, tmp_path: Path, sleeps: SleepRecorder
) -> None:
    dest = tmp_path / "clip.mp4"
    dest.write_bytes(b"previous")
    url = server.script("/clip.mp4", serve())

    await download_file(session, url, dest, sleep=sleeps)

    assert dest.read_bytes() == DATA


async def test_expected_sha256_mismatch_is_an_integrity_error(
    server: FileServer, session: aiohttp.ClientSession, tmp_path: Path, sleeps: SleepRecorder
) -> None:
    url = server.script("/clip.mp4", serve())

    with pytest.raises(DownloadIntegrityError) as caught:
        await download_file(
            session, url, tmp_path / "clip.mp4", expected_sha256="0" * 64, sleep=sleeps
        )

    assert caught.value.reason == f"sha256 {DATA_SHA} does not match the expected {'0' * 64}"
    assert leftovers(tmp_path) == []
    assert len(server.requests) == 1


async def test_expected_sha256_match_in_upper_case_is_accepted(
    server: FileServer, session: aiohttp.ClientSession, tmp_path: Path, sleeps: SleepRecorder
) -> None:
    url = server.script("/clip.mp4", serve())

    result = await download_file(
        session,
        url,
        tmp_path / "clip.mp4",
        expected_sha256=DATA_SHA.upper(),
        expected_size=len(DATA),
        sleep=sleeps,
    )

    assert result.sha256 == DATA_SHA


async def test_expected_size_mismatch_is_an_integrity_error(
    server: FileServer, session: aiohttp.ClientSession, tmp_path: Path, sleeps: SleepRecorder
) -> None:
    url = server.script("/clip.mp4", chunked())

    with pytest.raises(DownloadIntegrityError) as caught:
        await download_file(
            session, url, tmp_path / "clip.mp4", expected_size=len(DATA) + 1, sleep=sleeps
        )

    assert caught.value.reason == f"got {len(DATA)} bytes, expected {len(DATA) + 1}"
    assert leftovers(tmp_path) == []


async def test_missing_destination_directory_is_a_download_error(
    server: FileServer, session: aiohttp.ClientSession, tmp_path: Path, sleeps: SleepRecorder
) -> None:
    url = server.script("/clip.mp4", serve())

    with pytest.raises(DownloadError) as caught:
        await download_file(session, url, tmp_path / "nowhere" / "clip.mp4", sleep=sleeps)

    assert caught.value.reason.startswith("cannot create")
    assert server.requests == []


# --------------------------------------------------------------------------- errors and URLs


def test_redact_url_drops_userinfo_query_and_fragment() -> None:
    assert redact_url("https://user:pw@cdn.example:8443/v/a.mp4?sig=abc&exp=1#t=3") == (
        "https://cdn.example:8443/v/a.mp4"
    )
    assert redact_url("http://[::1]:8080/a?x=1") == "http://[::1]:8080/a"
    assert redact_url("http://host:notaport/a?sig=1") == "http://host:notaport/a"


def test_download_error_pickles_and_keeps_its_fields() -> None:
    error = DownloadTooLargeError("https://cdn.example/a.mp4?sig=abc", "too big", 200)

    copy = pickle.loads(pickle.dumps(error))

    assert (type(copy), copy.url, copy.reason, copy.status, str(copy)) == (
        DownloadTooLargeError,
        "https://cdn.example/a.mp4",
        "too big",
        200,
        "download of https://cdn.example/a.mp4 failed: too big",
    )


def test_download_result_repr_hides_the_signature() -> None:
    result = DownloadResult(
        path=Path("a.mp4"), size=1, sha256="0" * 64, url="https://h/a.mp4?sig=abc", attempts=1
    )

    assert "sig=abc" not in repr(result)
    assert result.url == "https://h/a.mp4?sig=abc"


# --------------------------------------------------------------------------- safe_filename


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (("00001", "../../x"), "00001-x"),
        (("00001", "task-unified-1757169743-7cvnl5zw"), "00001-task-unified-1757169743-7cvnl5zw"),
        (("a/b",), "a_b"),
        (("a\\b",), "a_b"),
        (("..",), "file"),
        ((".",), "file"),
        (("",), "file"),
        ((), "file"),
        (("\x00",), "file"),
        (("a\x00b",), "a_b"),
        (("/etc/passwd",), "etc_passwd"),
        (("..\\..\\windows",), "windows"),
        ((".hidden",), "hidden"),
        (("-rf",), "rf"),
        (("a....b",), "a.b"),
        (("vidéo", "日本語"), "video"),
        (("  spaced out  ",), "spaced_out"),
        (("x", "", "y"), "x-y"),
    ],
)
def test_safe_filename_neutralises_hostile_parts(parts: tuple[str, ...], expected: str) -> None:
    assert safe_filename(*parts) == expected


def test_safe_filename_bounds_long_names_and_keeps_them_distinct() -> None:
    first = safe_filename("a" * 5000)
    second = safe_filename("a" * 5001)

    assert len(first) == 100
    assert len(second) == 100
    assert first != second
    assert len(safe_filename("b" * 500, max_length=32)) == 32


_SAFE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")


@given(st.lists(st.text(), max_size=4))
def test_safe_filename_always_stays_in_its_directory(parts: list[str]) -> None:
    name = safe_filename(*parts)

    assert _SAFE.fullmatch(name)
    assert ".." not in name
    assert 1 <= len(name) <= 100
    assert Path("/base", name).parent == Path("/base")
