"""The API key never leaks: a whole batch with faults and DEBUG logging for every logger, then
an exception through every error class of ``evolink_async.errors`` (and ``BatchInputError``).
The key appears in no log record (message, arguments, traceback), no repr, no exception
message or attribute (causes included), and not in ``journal.jsonl`` nor ``manifest.jsonl``.

A stub server echoes the ``Authorization`` header back in its answers (in the body, in
``X-Request-Id``, in base64), as a careless proxy or a hostile server might, so that redaction
is needed for the key to stay out; the key is looked for plain, JSON-escaped, URL-encoded and
in base64. The attacks of the idempotency issue (7 and 8) use the simulator's echo knobs.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import logging
import socket
import traceback
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp import web

from evolink_async import EvolinkClient, RetryPolicy, errors
from evolink_async.batch import BatchInputError, BatchJob, parse_prompts
from evolink_async.callbacks import CallbackReceiver
from evolink_async.download import download_file
from evolink_async.errors import TaskStalledError
from evolink_async.journal import Journal, replay
from evolink_async.limits import CreditBudget, RedisLimits
from evolink_async.models import TaskStatus, VideoRequest
from evolink_async.testing import Simulator

KEY = "sk-evo-SECRET-9f4e2b7c1d5a3e8f"
TIME_SCALE = 0.001
ONCE = RetryPolicy(attempts=1)


def leaks(*things: object) -> list[str]:
    """The texts among ``things`` (and their exception chains) that hold the key."""
    found: list[str] = []
    seen: set[int] = set()

    def visit(thing: object) -> None:
        if id(thing) in seen:
            return
        seen.add(id(thing))
        texts = [str(thing), repr(thing)]
        if isinstance(thing, BaseException):
            texts += [repr(thing.args), repr(getattr(thing, "__dict__", {}))]
            for linked in (thing.__cause__, thing.__context__):
                if linked is not None:
                    visit(linked)
        found.extend(t for t in texts if forms_in(KEY, t))

    for thing in things:
        visit(thing)
    return found


def log_leaks(records: list[logging.LogRecord]) -> list[str]:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    out = []
    for record in records:
        texts = [formatter.format(record), repr(record.args), repr(record.msg)]
        if record.exc_info and record.exc_info[1] is not None:
            texts += leaks(record.exc_info[1])
        out += [t for t in texts if forms_in(KEY, t)]
    return out


class Echo:
    """Answers with the request's Authorization header in the body (``/echo/<status>``), as
    HTML with status 200 (``/echo-html``), in a failed task (``/v1/tasks/...``), or slowly;
    or drops the connection without an answer (``/drop``)."""

    async def echo(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        status = int(request.match_info["status"])
        body: dict[str, Any] = {
            "error": {
                "message": f"refused {auth}",
                "type": f"t {auth}",
                "param": auth,
                "suggestion": base64.b64encode(auth.encode()).decode(),
            }
        }
        if "code" in request.query:  # a quota sub-code, its figures echoing the key too
            body["error"].update(code=request.query["code"], key_name=auth, reset_timezone=auth)
        headers = {"Retry-After": "0", "X-Request-Id": auth}
        return web.json_response(body, status=status, headers=headers)

    async def echo_html(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        return web.Response(text=f"<p>you sent {auth}</p>", content_type="text/html")

    async def failed_task(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        task_id = request.match_info["task_id"]
        return web.json_response(
            {
                "id": task_id,
                "status": "failed",
                "error": {"code": "content_policy_violation", "message": f"not with {auth}"},
            }
        )

    async def slow(self, request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(2)
        return web.json_response({})

    async def drop(self, request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()  # the request was sent; no answer comes
        return web.Response()


@pytest.fixture
async def echo() -> AsyncIterator[str]:
    stub = Echo()
    app = web.Application()
    app.router.add_get("/echo/{status}", stub.echo)
    app.router.add_get("/echo-html", stub.echo_html)
    app.router.add_get("/v1/tasks/{task_id}", stub.failed_task)
    app.router.add_get("/slow", stub.slow)
    app.router.add_get("/drop", stub.drop)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def files_holding_the_key(root: Path) -> list[str]:
    return [
        p.name for p in root.rglob("*") if p.is_file() and forms_in(KEY, p.read_text("latin-1"))
    ]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def caught(call: Awaitable[Any]) -> BaseException:
    try:
        await call
    except Exception as exc:
        return exc
    raise AssertionError("no exception")


def sync_caught(call: Any, *args: Any, **kwargs: Any) -> BaseException:
    try:
        call(*args, **kwargs)
    except Exception as exc:
        return exc
    raise AssertionError("no exception")


RUN = "run_secretstest0000000000000000000"


def error_classes() -> set[type[BaseException]]:
    return {
        cls
        for name in errors.__all__
        if inspect.isclass(cls := getattr(errors, name)) and issubclass(cls, BaseException)
    }


async def test_a_faulty_batch_at_debug_level_and_every_error_class_never_show_the_key(
    tmp_path: Path, echo: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # the root logger: evolink_async, aiohttp, asyncio...
    out = tmp_path / "clips"
    raised: list[BaseException] = []
    reprs: list[object] = []

    async with Simulator(
        time_scale=TIME_SCALE,
        seed=9,
        api_key=KEY,
        error_5xx_rate=0.1,
        ghost_rate=0.03,
        slow_rate=0.03,
        slow_seconds=0.4,
        retryable_failure_rate=0.1,
        fatal_failure_rate=0.1,
        download_fail_rate=0.2,
        max_concurrent=6,
    ) as sim:
        # 1. a whole batch through the faults; the budget stops a few lines
        lines = parse_prompts([f"secret test {i}: a kite over dunes" for i in range(40)], fmt="txt")
        async with EvolinkClient(
            KEY,
            sim.base_url,
            rate=200,
            burst=10,
            max_in_flight=8,
            timeout=0.25,
            retry=RetryPolicy(attempts=4, wait_initial=0.01, wait_max=0.05),
            time_scale=TIME_SCALE,
        ) as client:
            job = BatchJob(client, lines, out, budget=30 * 23.04, task_timeout=20)
            summary = await job.run()
            reprs += [client, client.transport, client.poller, client.rate_limiter, job, summary]
            reprs += [client.dispatcher, client.concurrency, sim]
        assert 0 < summary.completed < summary.total  # the manifest holds error messages too

    # 2. the service's errors, one at a time, from a simulator without random faults
    async with (
        Simulator(time_scale=TIME_SCALE, api_key=KEY, outcome_unknown_replays=1) as sim,
        EvolinkClient(KEY, sim.base_url, rate=None, retry=ONCE, time_scale=TIME_SCALE) as client,
    ):
        transport = client.transport
        body = {"model": "sora-2-preview", "prompt": "x", "duration": 5}
        raised.append(await caught(transport.request("POST", "/v1/videos/generations", json=body)))
        raised.append(await caught(client.get_task("task-unified-1-nosuchtk")))
        task = await client.create_video(prompt="fails on purpose")
        sim.fail_task(task.id, "content_policy_violation")
        raised.append(await caught(client.wait(task)))
        slow = await client.create_video(prompt="waits too long", duration=12)
        raised.append(await caught(client.wait(slow, timeout=0.01)))
        sim.complete_task(slow.id)
        done = await client.wait(slow)
        assert done.video_url is not None
        url = done.video_url
        raised.append(await caught(client.download(url + "x", tmp_path / "a.mp4")))
        raised.append(await caught(client.download(url, tmp_path / "b.mp4", max_bytes=10)))
        raised.append(
            await caught(download_file(client.session, url, tmp_path / "c.mp4", expected_size=1))
        )
        cancelled = await client.create_video(prompt="cancelled on purpose")
        sim.cancel_task(cancelled.id)
        raised.append(await caught(client.wait(cancelled)))
        paused = attrs.evolve(done, status=TaskStatus.UNKNOWN, raw_status="paused")
        raised.append(TaskStalledError(paused, 900.0))
        await client.create_video(prompt="keyed once", idempotency_key=RUN)
        for prompt in ("keyed again", "keyed once"):  # idempotency_conflict, outcome unknown
            raised.append(await caught(client.create_video(prompt=prompt, idempotency_key=RUN)))
        sim.set_credits(0)
        raised.append(await caught(client.create_video(prompt="no credits left")))
        reprs += [task, done, client]

    # 3. the errors a hostile or broken server causes: every answer echoes the key
    async with EvolinkClient(
        KEY, echo, rate=None, retry=ONCE, timeout=0.3, time_scale=TIME_SCALE
    ) as client:
        transport = client.transport
        for status in (400, 401, 402, 403, 404, 413, 418, 429, 500, 503):
            raised.append(await caught(transport.request("GET", f"/echo/{status}")))
        for code in ("key_quota_exhausted", "key_daily_quota_exhausted"):
            raised.append(await caught(transport.request("GET", f"/echo/402?code={code}")))
        raised.append(await caught(transport.request("GET", "/echo-html")))
        raised.append(await caught(client.wait("task-unified-1-echoecho")))
        raised.append(await caught(transport.request("POST", "/slow", create=True)))
        raised.append(await caught(transport.request("GET", "/slow")))
        raised.append(await caught(transport.request("GET", "/drop")))  # APIConnectionError
    async with EvolinkClient(
        KEY, f"http://127.0.0.1:{closed_port()}", retry=ONCE, rate=None
    ) as client:
        raised.append(await caught(client.get_credits()))
        reprs.append(client)
    # the shared limits unreachable (a Redis URL whose password is the key, even)
    shared = RedisLimits(f"redis://:{KEY}@127.0.0.1:{closed_port()}/0")
    async with EvolinkClient(KEY, f"http://127.0.0.1:{closed_port()}", limits=shared) as client:
        raised.append(await caught(client.get_credits()))
        reprs.append(client)

    # 4. local errors: request, budget, journal, input
    raised.append(sync_caught(VideoRequest, prompt="x", duration=5))
    raised.append(await caught(CreditBudget(10).reserve(23.04)))
    locked = Journal.open(tmp_path / "locked")
    try:
        raised.append(sync_caught(Journal.open, tmp_path / "locked"))
    finally:
        locked.close()
    (tmp_path / "file").write_text("not a directory")
    raised.append(sync_caught(Journal.open, tmp_path / "file"))
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "journal.jsonl").write_text('{"event": "intent", "line": 1}\nnot json\n{}\n')
    raised.append(sync_caught(replay, corrupt))
    raised.append(sync_caught(parse_prompts, ['{"prompt": "x", "duration": 5}'], fmt="jsonl"))

    # every class of the tree was raised (bases through their subclasses)
    missing = {
        cls.__name__ for cls in error_classes() if not any(isinstance(e, cls) for e in raised)
    }
    assert set() == missing
    exact = {type(e) for e in raised}
    leaves = {
        c
        for c in error_classes()
        if not any(o is not c and issubclass(o, c) for o in error_classes())
    }
    assert set() == {c.__name__ for c in leaves - exact}
    bases_raised_as_such = {
        errors.APIError,  # HTTP 418
        errors.APIConnectionError,
        errors.DownloadError,
        errors.JournalError,
        BatchInputError,
    }
    assert bases_raised_as_such <= exact

    # and the key is nowhere
    assert [] == leaks(*raised)
    assert [] == leaks(*reprs)
    assert [] == log_leaks(caplog.records)
    assert any(r.levelno == logging.DEBUG for r in caplog.records)  # DEBUG was on
    for name in ("journal.jsonl", "manifest.jsonl"):
        assert KEY not in (out / name).read_text()
    assert [] == files_holding_the_key(tmp_path)


# -- the attacks of the idempotency issue (7 and 8): echoes of a careless gateway -------------


def key_forms(secret: str) -> dict[str, str]:
    """The forms a leaked secret is looked for in: plain, JSON-escaped, URL-encoded, base64."""
    return {
        "plain": secret,
        "json-escaped": "".join(f"\\u{ord(c):04x}" for c in secret),
        "url-encoded": "".join(f"%{ord(c):02X}" for c in secret),
        "base64": base64.b64encode(secret.encode()).decode(),
    }


def forms_in(secret: str, *texts: str) -> list[str]:
    """The names of the forms of ``secret`` found in ``texts`` (decoded JSON strings too)."""
    found = []
    for name, form in key_forms(secret).items():
        if any(form.lower() in text.lower() for text in texts):
            found.append(name)
    return found


def output_texts(root: Path) -> list[str]:
    return [p.read_text("utf-8", "replace") for p in root.rglob("*") if p.is_file()]


def exception_texts(exc: BaseException) -> list[str]:
    return [
        str(exc),
        repr(exc),
        repr(exc.args),
        repr(vars(exc)),
        "".join(traceback.format_exception(exc)),
    ]


def log_texts(records: list[logging.LogRecord]) -> list[str]:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return [formatter.format(r) for r in records]


HOOK = "https://hooks.example.com/evolink/cb"


async def test_attack_7_a_key_echoed_as_request_id_reaches_no_error_log_journal_or_manifest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "clips"
    knobs: dict[str, Any] = {"echo_key_header": True, "echo_callback_url": True}
    async with (
        Simulator(time_scale=TIME_SCALE, api_key=KEY, **knobs) as sim,
        EvolinkClient(KEY, sim.base_url, rate=None, retry=ONCE, time_scale=TIME_SCALE) as client,
    ):
        missing = await caught(client.get_task("task-unified-1-nosuchtk"))
        rows = [{"prompt": "echo me"}, {"prompt": "refused", "callback_url": HOOK}]
        lines = parse_prompts([json.dumps(r) for r in rows], fmt="jsonl")
        summary = await BatchJob(client, lines, out, task_timeout=20).run()

    assert isinstance(missing, errors.NotFoundError)
    assert "[redacted]" == missing.request_id
    assert ["completed", "failed"] == [e.status for e in summary.entries]
    failure = summary.entries[1].error
    assert failure is not None
    assert "[redacted]" == failure["request_id"]  # the manifest has the field, redacted
    assert [] == forms_in(KEY, *exception_texts(missing))
    assert [] == forms_in(KEY, *log_texts(caplog.records))
    assert [] == forms_in(KEY, *output_texts(out))


async def test_attack_7_a_key_json_escaped_in_an_error_body_is_in_no_str_repr_or_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with (
        Simulator(time_scale=TIME_SCALE, api_key=KEY, echo_key_body=True) as sim,
        EvolinkClient(KEY, sim.base_url, rate=None, retry=ONCE, time_scale=TIME_SCALE) as client,
    ):
        raised = [
            await caught(client.get_task("task-unified-1-nosuchtk")),
            await caught(client.transport.request("GET", "/v1/tasks/not-a-task-id")),
            await caught(client.transport.request("GET", "/v1/nowhere")),
        ]

    assert [404, 400, 404] == [getattr(e, "status", None) for e in raised]
    assert all("(you sent [redacted])" in str(e) for e in raised)  # the echo was there
    for exc in raised:
        assert [] == forms_in(KEY, *exception_texts(exc))
    assert [] == forms_in(KEY, *log_texts(caplog.records))


async def test_attack_8_a_400_echoing_callback_url_keeps_the_receivers_secret_out_of_the_job(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "clips"
    async with (
        Simulator(
            time_scale=TIME_SCALE,
            api_key=KEY,
            echo_callback_url=True,
            allow_insecure_callbacks=True,
        ) as sim,
        CallbackReceiver(None, allow_insecure=True) as receiver,
        EvolinkClient(
            KEY, sim.base_url, rate=None, retry=ONCE, time_scale=TIME_SCALE, callbacks=receiver
        ) as client,
    ):
        secret = receiver.callback_url.rsplit("/", 1)[-1]
        lines = parse_prompts([f"hooked {i}" for i in range(3)], fmt="txt")
        summary = await BatchJob(client, lines, out, task_timeout=20).run()

    assert ["failed"] * 3 == [e.status for e in summary.entries]
    messages = [e.error["message"] for e in summary.entries if e.error is not None]
    assert all("callback_url http://" in m for m in messages)  # the URL was echoed
    assert all("[redacted]" in m for m in messages)
    assert [] == forms_in(secret, *output_texts(out))
    assert [] == forms_in(secret, *(json.dumps(e.to_json()) for e in summary.entries))
    assert [] == forms_in(secret, *log_texts(caplog.records))
