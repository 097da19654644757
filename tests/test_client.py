"""The client's single-request methods and its defaults, against aioresponses mocks.

No test sleeps: ``Transport._sleep`` is replaced by a recorder of the waits it is asked for.
"""

# Tests assert `expected == actual`, the project's test style; ruff's SIM300 calls that a
# "Yoda condition", so it is off in this file.

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

import _http_fakes
import pytest
from _http_fakes import (
    BASE,
    COMPLETED,
    CREATE,
    CREDITS,
    CREDITS_ANSWER,
    KEY,
    SEED_CREATE_ANSWER,
    TASK_ID,
    TASK_PATH,
    FakeAPI,
    MakeClient,
    raised,
)
from aioresponses import aioresponses

from evolink_async._codec import decode_credits, decode_task
from evolink_async._transport import RetryEvent
from evolink_async.client import DEFAULT_BASE_URL, EvolinkClient
from evolink_async.errors import (
    APITimeoutError,
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
)
from evolink_async.models import VideoRequest

# the fixtures of the mocked service, used by name
_testing_switch_is_reset = _http_fakes.testing_switch_is_reset
api = _http_fakes.api
client = _http_fakes.client
make_client = _http_fakes.make_client
make_transport = _http_fakes.make_transport
once = _http_fakes.once
sleeps = _http_fakes.sleeps
transport = _http_fakes.transport


# -- the client: single requests ---------------------------------------------------------------


async def test_create_video_sends_the_body_and_the_bearer_header(
    api: FakeAPI, client: EvolinkClient
) -> None:
    api.reply("POST", CREATE, 200, json=SEED_CREATE_ANSWER)
    task = await client.create_video(prompt="A cat playing piano")
    sent = api.sent("POST", CREATE)
    assert decode_task(SEED_CREATE_ANSWER) == task
    assert {"model": "sora-2-preview", "prompt": "A cat playing piano"} == sent["json"]
    assert (f"Bearer {KEY}", "application/json") == (
        sent["headers"]["Authorization"],
        sent["headers"]["Accept"],
    )
    assert sent["headers"]["User-Agent"].startswith("evolink-async/")


async def test_create_video_sends_the_fields_of_one_model_given_in_extra(
    api: FakeAPI, client: EvolinkClient
) -> None:
    api.reply("POST", CREATE, 200, json=SEED_CREATE_ANSWER)
    await client.create_video(
        prompt="waves", model="veo-3.1-fast-generate-preview", duration=6, extra={"n": 2, "seed": 9}
    )
    expected = {
        "model": "veo-3.1-fast-generate-preview",
        "prompt": "waves",
        "duration": 6,
        "n": 2,
        "seed": 9,
    }
    assert expected == api.sent("POST", CREATE)["json"]


@pytest.mark.parametrize(
    ("keyword", "hint"),
    [("durration", "did you mean 'duration'?"), ("seed", "a field of one model goes in extra")],
)
async def test_create_video_refuses_a_keyword_that_is_no_field_naming_the_one_meant(
    api: FakeAPI, client: EvolinkClient, keyword: str, hint: str
) -> None:
    with pytest.raises(TypeError, match=f"unexpected keyword '{keyword}'") as info:
        await client.create_video(prompt="x", **{keyword: 8})  # type: ignore[misc]
    assert hint in str(info.value)
    assert 0 == api.total_calls


async def test_create_video_accepts_a_video_request(api: FakeAPI, client: EvolinkClient) -> None:
    api.reply("POST", CREATE, 200, json=SEED_CREATE_ANSWER)
    request = VideoRequest(prompt="dog", duration=8, aspect_ratio="9:16")
    await client.create_video(request)
    assert request.to_json() == api.sent("POST", CREATE)["json"]


async def test_create_video_with_a_request_and_fields_is_a_type_error(
    api: FakeAPI, client: EvolinkClient
) -> None:
    with pytest.raises(TypeError):
        await client.create_video(VideoRequest(prompt="dog"), duration=8)
    assert 0 == api.total_calls


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"prompt": "x", "duration": 5}, "duration"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x", "callback_url": "https://127.0.0.1/hook"}, "callback_url"),
        ({"prompt": "x", "image_urls": ["a", "b"]}, "image_urls"),
        ({"duration": 4}, "prompt"),
    ],
)
async def test_an_invalid_field_raises_before_any_http_call(
    api: FakeAPI, client: EvolinkClient, fields: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        await client.create_video(**fields)
    assert (field, 0, 0) == (info.value.field, api.total_calls, client.transport.requests)


async def test_a_create_timeout_without_idempotency_is_not_retried(
    api: FakeAPI, make_client: MakeClient
) -> None:
    client = make_client(api_key=KEY, base_url=BASE, idempotency=False)
    api.fail("POST", CREATE, asyncio.TimeoutError(), repeat=True)
    err = await raised(client.create_video(prompt="A cat playing piano"))
    assert isinstance(err, APITimeoutError)
    assert (True, 1) == (err.maybe_created, api.calls("POST", CREATE))
    assert "Idempotency-Key" not in api.sent("POST", CREATE)["headers"]


async def test_a_create_timeout_is_retried_with_the_same_random_run_key(
    api: FakeAPI, client: EvolinkClient
) -> None:
    api.fail("POST", CREATE, asyncio.TimeoutError())
    api.reply("POST", CREATE, 200, json=SEED_CREATE_ANSWER)
    task = await client.create_video(prompt="A cat playing piano")
    keys = [api.sent("POST", CREATE, i)["headers"]["Idempotency-Key"] for i in range(2)]
    assert TASK_ID == task.id
    assert keys[0] == keys[1]
    assert re.fullmatch(r"run_[0-9a-f]{32}", keys[0])


@pytest.mark.parametrize(
    ("kwargs", "fields", "expected"),
    [
        ({"idempotency_key": "caller-key-0000000001"}, {}, "caller-key-0000000001"),
        ({}, {"client_request_id": "request-id-000000002"}, "request-id-000000002"),
        (
            {"idempotency_key": "caller-key-0000000003"},
            {"client_request_id": "request-id-000000004"},
            "caller-key-0000000003",
        ),
    ],
    ids=["argument", "request-field", "argument-wins"],
)
async def test_the_callers_key_is_sent_and_client_request_id_stays_out_of_the_body(
    api: FakeAPI,
    client: EvolinkClient,
    kwargs: dict[str, str],
    fields: dict[str, str],
    expected: str,
) -> None:
    api.reply("POST", CREATE, 200, json=SEED_CREATE_ANSWER)
    await client.create_video(VideoRequest(prompt="x", **fields), **kwargs)
    sent = api.sent("POST", CREATE)
    assert (expected, expected) == (
        sent["headers"]["Idempotency-Key"],
        sent["headers"]["X-Evo-Run-Id"],
    )
    assert "client_request_id" not in sent["json"]


@pytest.mark.parametrize("key", ["short", "x" * 97, "has space in it 1234", "ünïcode-key-123456"])
async def test_a_bad_key_is_refused_locally_naming_the_field(
    api: FakeAPI, client: EvolinkClient, key: str
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        await client.create_video(prompt="x", idempotency_key=key)
    with pytest.raises(InvalidRequestError) as info2:
        VideoRequest(prompt="x", client_request_id=key)
    assert ("idempotency_key", "client_request_id", 0) == (
        info.value.field,
        info2.value.field,
        api.total_calls,
    )


@pytest.mark.parametrize(
    "task_id",
    [
        "abc",
        "",
        "task-1757169743-7cvnl5zw",
        "TASK-UNIFIED-1757169743-7cvnl5zw",
        " task-unified-1757169743-7cvnl5zw",
        "task-unified-1/../../credits",
        "task-unified-1?x=1",
    ],
)
async def test_get_task_rejects_a_bad_id_locally(
    api: FakeAPI, client: EvolinkClient, task_id: str
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        await client.get_task(task_id)
    assert ("task_id", 0) == (info.value.field, api.total_calls)


async def test_get_task_decodes_the_task(api: FakeAPI, client: EvolinkClient) -> None:
    api.reply("GET", TASK_PATH, 200, json=COMPLETED)
    task = await client.get_task(TASK_ID)
    assert (decode_task(COMPLETED), "http://example.com/video.mp4") == (task, task.video_url)
    assert f"Bearer {KEY}" == api.sent("GET", TASK_PATH)["headers"]["Authorization"]


async def test_get_task_of_an_expired_task_raises_not_found(
    api: FakeAPI, client: EvolinkClient
) -> None:
    api.reply(
        "GET",
        TASK_PATH,
        404,
        json={
            "error": {
                "code": "task_not_found",
                "message": "Task not found or expired",
                "type": "not_found_error",
            }
        },
    )
    err = await raised(client.get_task(TASK_ID))
    assert (NotFoundError, "Task not found or expired", 1) == (
        type(err),
        getattr(err, "message", None),
        api.calls("GET", TASK_PATH),
    )


async def test_get_credits_decodes_the_balance(api: FakeAPI, client: EvolinkClient) -> None:
    api.reply("GET", CREDITS, 200, json=CREDITS_ANSWER)
    credits = await client.get_credits()
    assert (decode_credits(CREDITS_ANSWER), 99416.4429) == (credits, credits.remaining)


async def test_client_retry_listeners_are_told_of_retries(
    api: FakeAPI, client: EvolinkClient
) -> None:
    events: list[RetryEvent] = []
    client.add_retry_listener(events.append)
    api.reply("GET", CREDITS, 502, body=b"")
    api.reply("GET", CREDITS, 200, json=CREDITS_ANSWER)
    await client.get_credits()
    assert [("GET", CREDITS, 1, 502)] == [
        (e.method, e.path, e.attempt, getattr(e.error, "status", None)) for e in events
    ]


async def test_api_key_and_base_url_default_to_the_environment(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_base = "https://env.evolink.test"
    monkeypatch.setenv("EVOLINK_API_KEY", "sk-evo-from-env")
    monkeypatch.setenv("EVOLINK_BASE_URL", env_base + "/")
    client = make_client()
    with aioresponses() as mock:
        env_api = FakeAPI(mock, base=env_base)
        env_api.reply("GET", CREDITS, 200, json=CREDITS_ANSWER)
        await client.get_credits()
        sent = env_api.sent("GET", CREDITS)
    assert (env_base, True, "Bearer sk-evo-from-env") == (
        client.base_url,
        client.has_api_key,
        sent["headers"]["Authorization"],
    )


async def test_explicit_key_and_base_url_win_over_the_environment(
    api: FakeAPI, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVOLINK_API_KEY", "sk-evo-from-env")
    monkeypatch.setenv("EVOLINK_BASE_URL", "https://env.evolink.test")
    client = make_client(api_key=KEY, base_url=BASE)
    api.reply("GET", CREDITS, 200, json=CREDITS_ANSWER)
    await client.get_credits()
    assert (BASE, f"Bearer {KEY}") == (
        client.base_url,
        api.sent("GET", CREDITS)["headers"]["Authorization"],
    )


def test_without_base_url_the_client_uses_the_public_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("EVOLINK_BASE_URL", raising=False)
    client = EvolinkClient(api_key=KEY, rate=None)
    assert ("https://api.evolink.ai", DEFAULT_BASE_URL) == (client.base_url, DEFAULT_BASE_URL)


@pytest.mark.parametrize("method", ["create_video", "get_task", "get_credits"])
async def test_a_missing_api_key_raises_authentication_error_without_a_request(
    api: FakeAPI, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    monkeypatch.delenv("EVOLINK_API_KEY", raising=False)
    client = make_client(base_url=BASE)
    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "create_video": lambda: client.create_video(prompt="A cat playing piano"),
        "get_task": lambda: client.get_task(TASK_ID),
        "get_credits": client.get_credits,
    }
    err = await raised(calls[method]())
    assert (AuthenticationError, 401, False, 0) == (
        type(err),
        getattr(err, "status", None),
        client.has_api_key,
        api.total_calls,
    )
