"""A hostile or broken server: what it answers never decides a local path, never makes the SDK
fetch a non-http(s) URL, never fills the disk past a cap, and never crashes a batch; TLS is
verified unless the user turns it off.

The server is a small aiohttp.web stub on 127.0.0.1 whose answer to each create depends on the
prompt's first word (the scenario).
"""

from __future__ import annotations

import glob
import itertools
import json
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from evolink_async import EvolinkClient, RetryPolicy
from evolink_async.batch import MANIFEST_FILENAME, BatchJob, parse_prompts, video_filename
from evolink_async.errors import (
    APIConnectionError,
    DecodeError,
    DownloadError,
    DownloadTooLargeError,
)

KEY = "sk-evo-hostile-SECRET-71d0"
CLIP = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8  # 2060 bytes, looks like an MP4
CAP = 4096  # the download cap of the cap tests
HUGE = 5 * 1024 * 1024  # over the transport's default max_response_bytes (4 MiB)


def task_body(task_id: Any, status: str = "pending", results: list[str] | None = None) -> Any:
    body: dict[str, Any] = {
        "id": task_id,
        "object": "video.generation.task",
        "status": status,
        "progress": 100 if status == "completed" else 0,
        "task_info": {"estimated_time": 1},
        "usage": {"credits_reserved": 23.04},
    }
    if results is not None:
        body["results"] = results
    return body


class HostileAPI:
    """The stub: ``scenarios`` maps a prompt's first word to the create answer."""

    def __init__(self) -> None:
        self.base_url = ""
        self.ids = itertools.count(1)
        self.garbage_polls: set[str] = set()
        self.file_requests: list[str] = []
        self.scenarios: dict[str, Callable[[], web.StreamResponse]] = {
            "ok": self.ok,
            "traversal": lambda: self.completed("../../x"),
            "slash": lambda: self.completed("task-unified-1/../../etc/y"),
            "absolute": lambda: self.completed("/tmp/evolink-hostile-z"),
            "pending-traversal": lambda: web.json_response(task_body("../../w")),
            "file-scheme": lambda: self.completed(self.new_id(), "file:///etc/passwd"),
            "ftp-scheme": lambda: self.completed(self.new_id(), "ftp://127.0.0.1/clip.mp4"),
            "javascript-scheme": lambda: self.completed(self.new_id(), "javascript:alert(1)"),
            "overlong": lambda: self.completed(self.new_id(), f"{self.base_url}/files/overlong"),
            "not-json": lambda: web.Response(text="<html>oops</html>", content_type="text/html"),
            "list": lambda: web.json_response([task_body(self.new_id())]),
            "no-id": lambda: web.json_response({"status": "pending", "progress": 0}),
            "int-id": lambda: web.json_response(task_body(12345)),
            "huge": lambda: web.Response(body=b'{"id": "' + b"a" * HUGE + b'"}'),
            "nested": lambda: web.Response(body=b"[" * 100_000 + b"]" * 100_000),
            "same-id": lambda: web.json_response(task_body("task-unified-1700000000-twintwin")),
            "poll-garbage": self.poll_garbage,
            "large": lambda: web.json_response({**task_body(self.new_id()), "pad": "x" * 300_000}),
        }

    def new_id(self) -> str:
        return f"task-unified-1700000000-{next(self.ids):08d}"

    def completed(self, task_id: str, url: str | None = None) -> web.StreamResponse:
        url = url or f"{self.base_url}/files/clip.mp4?sig=s3cr3t"
        return web.json_response(task_body(task_id, "completed", [url]))

    def ok(self) -> web.StreamResponse:
        return web.json_response(task_body(self.new_id()))

    def poll_garbage(self) -> web.StreamResponse:
        task_id = self.new_id()
        self.garbage_polls.add(task_id)
        return web.json_response(task_body(task_id))

    async def create(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        return self.scenarios[body["prompt"].split(":")[0]]()

    async def get_task(self, request: web.Request) -> web.StreamResponse:
        task_id = request.match_info["task_id"]
        if task_id in self.garbage_polls:
            return web.Response(text="[1, 2", content_type="application/json")
        return self.completed(task_id)

    async def files(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.file_requests.append(name)
        if name == "clip.mp4":
            return web.Response(body=CLIP, content_type="video/mp4")
        if name == "overlong":  # announces 100 bytes, sends the whole clip
            return raw(request, b"Content-Length: 100\r\nConnection: close", CLIP)
        if name == "big":  # announces more than the cap
            return web.Response(body=CLIP * 4, content_type="video/mp4")
        if name == "big-chunked":  # no Content-Length: only streaming can tell
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            for _ in range(8):
                await response.write(CLIP)
            await response.write_eof()
            return response
        raise web.HTTPNotFound()


def raw(request: web.Request, headers: bytes, body: bytes) -> web.StreamResponse:
    """Write a hand-made HTTP answer on the socket (aiohttp would keep to Content-Length)."""
    assert request.transport is not None
    request.transport.write(b"HTTP/1.1 200 OK\r\n" + headers + b"\r\n\r\n" + body)
    request.transport.close()
    return web.Response()  # never sent: the connection is gone


@pytest.fixture
async def api() -> AsyncIterator[HostileAPI]:
    stub = HostileAPI()
    app = web.Application()
    app.router.add_post("/v1/videos/generations", stub.create)
    app.router.add_get("/v1/tasks/{task_id:.*}", stub.get_task)
    app.router.add_get("/files/{name}", stub.files)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    stub.base_url = f"http://{host}:{port}"
    try:
        yield stub
    finally:
        await runner.cleanup()


def client_for(api: HostileAPI, **kw: Any) -> EvolinkClient:
    kw.setdefault("rate", None)
    kw.setdefault("time_scale", 0.001)
    kw.setdefault("retry", RetryPolicy(attempts=1))
    return EvolinkClient(KEY, api.base_url, **kw)


def read_manifest(out: Path) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in (out / MANIFEST_FILENAME).read_text().splitlines()]


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


async def run_scenarios(api: HostileAPI, root: Path, *scenarios: str) -> dict[str, Any]:
    """Run a batch of one line per scenario between two ordinary lines in ``root / "clips"``;
    check that the ordinary lines completed with their clip; return the manifest by scenario."""
    prompts = ["ok: first", *(f"{s}: hostile" for s in scenarios), "ok: last"]
    async with client_for(api) as client:
        await BatchJob(
            client, parse_prompts(prompts, fmt="txt"), root / "clips", task_timeout=1.0
        ).run()
    entries = read_manifest(root / "clips")
    assert prompts == [e["prompt"] for e in entries]
    for ordinary in (entries[0], entries[-1]):
        assert ("completed", None) == (ordinary["status"], ordinary["error"])
        assert CLIP == (root / "clips" / ordinary["video"]).read_bytes()
    return {e["prompt"].split(":")[0]: e for e in entries[1:-1]}


# ----------------------------------------------------------------------------- local paths


async def test_a_task_id_from_the_server_never_decides_a_local_path(
    api: HostileAPI, tmp_path: Path
) -> None:
    out = tmp_path / "clips"
    before = tree(tmp_path)
    manifest = await run_scenarios(
        api, tmp_path, "traversal", "slash", "absolute", "pending-traversal"
    )

    assert "00002-x.mp4" == manifest["traversal"]["video"]
    assert "00003-task-unified-1_._._etc_y.mp4" == manifest["slash"]["video"]
    assert "00004-tmp_evolink-hostile-z.mp4" == manifest["absolute"]["video"]
    for name in ("traversal", "slash", "absolute"):
        entry = manifest[name]
        assert ("completed", None) == (entry["status"], entry["error"])
        assert video_filename(entry["line"], entry["task_id"]) == entry["video"]
        assert CLIP == (out / entry["video"]).read_bytes()
    # a running task with such an id is never polled (its id would be a URL path): reported
    pending = manifest["pending-traversal"]
    assert ("failed", "../../w") == (pending["status"], pending["task_id"])
    assert "must start with 'task-unified-'" in pending["error"]["message"]

    # nothing was written anywhere but in the output directory
    outside = tree(tmp_path) - before - {"clips"}
    assert set() == {p for p in outside if not p.startswith("clips/")}
    assert [] == glob.glob("/tmp/evolink-hostile-z*")  # the absolute id was not followed


# ----------------------------------------------------------------------------- URL schemes


async def test_a_result_url_with_another_scheme_than_http_is_refused_and_reported(
    api: HostileAPI, tmp_path: Path
) -> None:
    manifest = await run_scenarios(api, tmp_path, "file-scheme", "ftp-scheme", "javascript-scheme")

    expected = {
        "file-scheme": ("file:///etc/passwd", "'file'"),
        "ftp-scheme": ("ftp://127.0.0.1/clip.mp4", "'ftp'"),
        "javascript-scheme": ("javascript:alert(1)", "'javascript'"),
    }
    for name, (url, scheme) in expected.items():
        entry = manifest[name]
        assert ("completed", None, url) == (entry["status"], entry["video"], entry["url"])
        assert "download_failed" == entry["error"]["code"]
        message = entry["error"]["message"]
        assert url in message
        assert f"URL scheme {scheme} refused: only http and https are allowed" in message
    assert ["clip.mp4", "clip.mp4"] == api.file_requests  # only the two ordinary clips
    assert 2 == len(list((tmp_path / "clips").glob("*.mp4")))


# ----------------------------------------------------------------------------- sizes


async def test_a_body_longer_than_its_content_length_is_stopped_and_reported(
    api: HostileAPI, tmp_path: Path
) -> None:
    manifest = await run_scenarios(api, tmp_path, "overlong")

    entry = manifest["overlong"]
    assert ("completed", None) == (entry["status"], entry["video"])
    assert "download_failed" == entry["error"]["code"]
    assert "more bytes than Content-Length" in entry["error"]["message"]
    assert ["overlong"] == [n for n in api.file_requests if n == "overlong"]  # not retried
    assert set() == {p for p in tree(tmp_path) if p.endswith(".part")}


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("big", f"announced size {len(CLIP) * 4} bytes exceeds max_bytes={CAP}"),
        ("big-chunked", f"body exceeds max_bytes={CAP}"),
    ],
)
async def test_a_download_over_the_configured_cap_is_stopped_and_reported(
    api: HostileAPI, tmp_path: Path, path: str, reason: str
) -> None:
    url = f"{api.base_url}/files/{path}?sig=s3cr3t"
    async with client_for(api) as client:
        with pytest.raises(DownloadTooLargeError) as caught:
            await client.download(url, tmp_path / "clip.mp4", max_bytes=CAP)
    assert reason == caught.value.reason
    assert f"{api.base_url}/files/{path}" == caught.value.url  # the signature is not shown
    assert "s3cr3t" not in str(caught.value)
    assert set() == tree(tmp_path)  # no file, no partial file
    assert [path] == api.file_requests  # never retried


# ----------------------------------------------------------------------------- bodies


async def test_a_body_that_is_not_a_task_is_a_decode_error_and_the_batch_goes_on(
    api: HostileAPI, tmp_path: Path
) -> None:
    manifest = await run_scenarios(api, tmp_path, "not-json", "list", "no-id", "int-id", "huge")

    expected = {
        "not-json": "POST /v1/videos/generations response is not JSON: '<html>oops</html>'",
        "list": "expected a task object, got list",
        "no-id": "invalid task object (missing required field 'id')",
        "int-id": "invalid task object (task id must be a non-empty string, got 12345)",
        "huge": "POST /v1/videos/generations: response body over 4194304 bytes",
    }
    for name, message in expected.items():
        entry = manifest[name]
        # the create's answer was unusable: the task may exist, so it is not resubmitted
        assert ("unknown", "maybe_created") == (entry["status"], entry["error"]["code"])
        assert message in entry["error"]["message"]
        assert 1 == entry["attempts"]
    assert 2 == len(list((tmp_path / "clips").glob("*.mp4")))


@pytest.mark.parametrize("scenario", ["not-json", "list", "no-id", "int-id", "huge", "nested"])
async def test_create_video_raises_decode_error_for_a_body_that_is_not_a_task(
    api: HostileAPI, scenario: str
) -> None:
    async with client_for(api) as client:
        with pytest.raises(DecodeError):
            await client.create_video(prompt=f"{scenario}: direct")


async def test_attack_11_a_create_answer_nested_too_deeply_is_unknown_and_keeps_its_credits(
    api: HostileAPI,
) -> None:
    # Before: RecursionError, reported as failed with the reservation released although the
    # service took the create.
    async with client_for(api, budget=100.0) as client:
        outcomes = [o async for o in client.generate_many(["nested: deep"])]
        budget = client.budget
        assert budget is not None
        spent = budget.spent
    assert ["unknown"] == [o.status for o in outcomes]
    assert isinstance(outcomes[0].error, DecodeError)
    assert "nested too deeply" in str(outcomes[0].error)
    assert spent > 0


async def test_attack_11_the_same_task_id_answered_to_two_creates_gives_both_an_outcome(
    api: HostileAPI,
) -> None:
    # Before: the second create's job replaced the first in the table of live tasks, and one
    # of the two prompts never got an outcome.
    async with client_for(api) as client:
        batch = client.generate_many(["same-id: one", "same-id: two", "ok: three"])
        async with batch:
            outcomes = [o async for o in batch]
    assert [(0, "completed"), (1, "completed"), (2, "completed")] == sorted(
        (o.index, o.status) for o in outcomes
    )
    assert {"task-unified-1700000000-twintwin"} == {
        o.task.id for o in outcomes if o.index < 2 and o.task is not None
    }


async def test_an_answer_larger_than_one_network_read_is_read_whole(api: HostileAPI) -> None:
    async with client_for(api) as client:
        task = await client.create_video(prompt="large: 300 kB of padding, under the cap")
    assert task.id.startswith("task-unified-1700000000-")


async def test_polls_answered_with_garbage_end_in_a_reported_timeout_not_a_crash(
    api: HostileAPI, tmp_path: Path
) -> None:
    manifest = await run_scenarios(api, tmp_path, "poll-garbage")

    entry = manifest["poll-garbage"]
    assert ("failed", "task_timeout") == (entry["status"], entry["error"]["code"])
    assert "it may still finish" in entry["error"]["message"]


# ----------------------------------------------------------------------------- TLS


async def test_tls_verification_is_on_by_default_and_off_only_when_asked() -> None:
    async with EvolinkClient(KEY, "https://127.0.0.1:1") as default:
        assert default.transport.verify_ssl is True
        connector = default.session.connector
        assert isinstance(connector, aiohttp.TCPConnector)
        assert connector._ssl is True  # aiohttp's default checks: certificate and host name
    async with EvolinkClient(KEY, "https://127.0.0.1:1", verify_ssl=False) as insecure:
        connector = insecure.session.connector
        assert isinstance(connector, aiohttp.TCPConnector)
        assert connector._ssl is False


@pytest.fixture
def self_signed(tmp_path: Path) -> ssl.SSLContext:
    """A server context with a self-signed certificate for 127.0.0.1 (made with openssl)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a self-signed certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def test_a_self_signed_server_is_refused_by_default_and_accepted_when_asked(
    self_signed: ssl.SSLContext, tmp_path: Path
) -> None:
    async def credits(request: web.Request) -> web.StreamResponse:
        data = {"token": {"remaining_credits": 5}, "user": {"remaining_credits": 9}}
        return web.json_response({"data": data, "message": "", "success": True})

    async def clip(request: web.Request) -> web.StreamResponse:
        return web.Response(body=CLIP)

    app = web.Application()
    app.router.add_get("/v1/credits", credits)
    app.router.add_get("/clip.mp4", clip)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self_signed).start()
    base = f"https://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with EvolinkClient(KEY, base, retry=RetryPolicy(attempts=1)) as client:
            with pytest.raises(APIConnectionError, match="certificate"):
                await client.get_credits()
            with pytest.raises(DownloadError, match="TLS certificate rejected"):
                await client.download(f"{base}/clip.mp4", tmp_path / "a.mp4")
        async with EvolinkClient(
            KEY, base, retry=RetryPolicy(attempts=1), verify_ssl=False
        ) as insecure:
            assert 5 == (await insecure.get_credits()).remaining
            result = await insecure.download(f"{base}/clip.mp4", tmp_path / "b.mp4")
            assert len(CLIP) == result.size
    finally:
        await runner.cleanup()
    assert not (tmp_path / "a.mp4").exists()
