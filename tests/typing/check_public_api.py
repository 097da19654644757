"""Never run: mypy --strict checks that the public API has the precise types it promises.

.venv/bin/mypy --strict tests/typing/check_public_api.py
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Mapping
from pathlib import Path
from typing import Any

from typing_extensions import assert_type

import evolink_async
from evolink_async import (
    DEFAULT_BASE_URL,
    DEFAULT_MODEL,
    MODEL_SPECS,
    APIConnectionError,
    APIError,
    APITimeoutError,
    Batch,
    Credits,
    CreditsBalance,
    DecodeError,
    DownloadResult,
    EvolinkClient,
    EvolinkError,
    HandleState,
    InvalidRequestError,
    ModelSpec,
    Outcome,
    RateLimitError,
    RetryEvent,
    RetryPolicy,
    ServerError,
    Task,
    TaskErrorInfo,
    TaskFailedError,
    TaskHandle,
    TaskInfo,
    TaskStatus,
    TaskTimeoutError,
    Usage,
    VideoRequest,
    set_testing,
)


def check_requests() -> None:
    request = VideoRequest(prompt="A cat playing piano", duration=8, aspect_ratio="16:9")
    assert_type(request.prompt, str)
    assert_type(request.model, str)
    assert_type(request.duration, int | None)
    assert_type(request.image_urls, tuple[str, ...])
    assert_type(request.extra, Mapping[str, Any])
    assert_type(request.effective_duration, int | None)
    assert_type(request.spec, ModelSpec | None)
    assert_type(request.to_json(), dict[str, Any])
    assert_type(VideoRequest.from_json({"prompt": "x", "n": 2}), VideoRequest)
    assert_type(request.with_callback("https://hooks.example.com/done"), VideoRequest)
    assert_type(MODEL_SPECS, Mapping[str, ModelSpec])
    assert_type(MODEL_SPECS[DEFAULT_MODEL].durations, tuple[int, ...])
    assert_type(DEFAULT_MODEL, str)
    assert_type(DEFAULT_BASE_URL, str)


def check_task(task: Task) -> None:
    assert_type(task.id, str)
    assert_type(task.status, TaskStatus)
    assert_type(task.raw_status, str)
    assert_type(task.progress, int | None)
    assert_type(task.results, tuple[str, ...])
    assert_type(task.video_url, str | None)
    assert_type(task.is_terminal, bool)
    assert_type(task.is_retryable_failure, bool)
    assert_type(task.estimated_time, float | None)
    assert_type(task.credits_reserved, float | None)
    assert_type(task.task_info, TaskInfo | None)
    assert_type(task.usage, Usage | None)
    assert_type(task.error, TaskErrorInfo | None)
    if task.error is not None:
        assert_type(task.error.code, int | str | None)
        assert_type(task.error.retryable, bool)
    assert_type(TaskStatus.parse("queued"), TaskStatus)
    assert_type(TaskStatus.COMPLETED.is_terminal, bool)


def check_credits(credits: Credits) -> None:
    assert_type(credits.remaining, float | None)
    assert_type(credits.token, CreditsBalance | None)
    if credits.user is not None:
        assert_type(credits.user.remaining_credits, float | None)


def check_errors(exc: EvolinkError) -> None:
    if isinstance(exc, InvalidRequestError):
        assert_type(exc.field, str)
        assert_type(exc.rule, str)
    if isinstance(exc, APIError):
        assert_type(exc.status, int)
        assert_type(exc.message, str)
        assert_type(exc.type, str | None)
        assert_type(exc.code, int | str | None)
        assert_type(exc.param, str | None)
        assert_type(exc.request_id, str | None)
    if isinstance(exc, (RateLimitError, ServerError)):
        assert_type(exc.retry_after, float | None)
    if isinstance(exc, RateLimitError):
        assert_type(exc.is_concurrency_limit, bool)
    if isinstance(exc, APIConnectionError):
        assert_type(exc.maybe_created, bool)
    if isinstance(exc, APITimeoutError):
        assert_type(exc.maybe_created, bool)
    if isinstance(exc, TaskFailedError):
        assert_type(exc.task, Task)
        assert_type(exc.code, int | str | None)
        assert_type(exc.retryable, bool)
    if isinstance(exc, TaskTimeoutError):
        assert_type(exc.task_id, str)
        assert_type(exc.task, Task | None)
    if isinstance(exc, DecodeError):
        assert_type(exc.excerpt, str)


def on_retry(event: RetryEvent) -> None:
    assert_type(event.method, str)
    assert_type(event.attempt, int)
    assert_type(event.error, EvolinkError)
    assert_type(event.wait, float)


async def check_client() -> None:
    policy = RetryPolicy(attempts=3, wait_initial=0.1, wait_max=2.0, jitter=1.0)
    assert_type(policy.backoff(1), float)
    set_testing(True)
    async with EvolinkClient(api_key="sk-evo-example", retry=policy, rate=None) as client:
        assert_type(client, EvolinkClient)
        assert_type(client.base_url, str)
        assert_type(client.has_api_key, bool)
        client.add_retry_listener(on_retry)
        task = await client.create_video(prompt="A cat playing piano", duration=8)
        assert_type(task, Task)
        assert_type(await client.create_video(VideoRequest(prompt="x")), Task)
        # mypy refuses these (the ignores would be "unused" otherwise, an error under --strict)
        await client.create_video(prompt="x", duration="8")  # type: ignore[arg-type]
        await client.create_video(prompt="x", durration=8)  # type: ignore[call-arg]
        await client.create_video(prompt="x", extra={"quality": "720p"})
        await client.create_video(prompt="x", idempotency_key="run_0123456789abcdef0123")
        await client.create_video(prompt="x", client_request_id="my-request-0000000001")
        await client.create_video(prompt="x", idempotency_key=7)  # type: ignore[arg-type]
        assert_type(await client.get_task(task.id), Task)
        assert_type(await client.get_credits(), Credits)
        done = await client.wait(task, timeout=600)
        assert_type(done, Task)
        result = await client.download(done, Path("cat.mp4"))
        assert_type(result, DownloadResult)
        assert_type(result.path, Path)
        assert_type(result.size, int)
        batch = client.generate_many(["a cat", VideoRequest(prompt="a dog")], max_in_flight=4)
        assert_type(batch, Batch)
        outcomes: AsyncIterable[Outcome] = batch  # a Batch is an async iterable of outcomes
        async for outcome in outcomes:
            assert_type(outcome, Outcome)
        handle = await client.submit("a bird")
        assert_type(handle, TaskHandle)
        assert_type(handle.state, HandleState)
        assert_type(handle.queue_position, int)
        assert_type(handle.current_progress(), tuple[int, bool] | None)
        assert_type(await handle.created(), str | None)
        assert_type(handle.outcome, Outcome | None)
        assert_type(await handle, Outcome)
        assert_type(await handle.result(), Outcome)
        assert_type(await client.generate("a cat", out="cat.mp4", duration=8), Task)
    assert_type(evolink_async.__version__, str)
