"""``EvolinkAPI``: one method per endpoint (paths, task-id checks, the callback URL of a
create), over a transport against aioresponses mocks. No limits, no state."""

# Tests assert `expected == actual`, the project's test style.

from __future__ import annotations

import _http_fakes
import pytest
from _http_fakes import (
    COMPLETED,
    CREATE,
    CREDITS,
    CREDITS_ANSWER,
    SEED_CREATE_ANSWER,
    TASK_ID,
    TASK_PATH,
    FakeAPI,
    MakeTransport,
)

from evolink_async._codec import decode_credits, decode_task
from evolink_async.api import EvolinkAPI, check_task_id
from evolink_async.errors import InvalidRequestError
from evolink_async.models import VideoRequest

# the fixtures of the mocked service, used by name
_testing_switch_is_reset = _http_fakes.testing_switch_is_reset
api = _http_fakes.api
make_transport = _http_fakes.make_transport
sleeps = _http_fakes.sleeps

HOOK = "https://bot.example.com/hook/s3cr3t-segment-0123456789"


@pytest.mark.parametrize(
    ("own", "injected", "expected"),
    [
        (None, None, None),
        (None, HOOK, HOOK),
        ("https://user.example.com/cb", HOOK, "https://user.example.com/cb"),
    ],
    ids=["no-receiver", "receiver-url", "request-keeps-its-own"],
)
async def test_create_video_posts_the_request_with_the_callback_url_on_the_wire_only(
    api: FakeAPI,
    make_transport: MakeTransport,
    own: str | None,
    injected: str | None,
    expected: str | None,
) -> None:
    endpoints = EvolinkAPI(make_transport(), callback_url=(lambda: HOOK) if injected else None)
    request = VideoRequest(prompt="a cat", callback_url=own)
    api.reply("POST", CREATE, 200, json=SEED_CREATE_ANSWER)
    task = await endpoints.create_video(request)
    sent = api.sent("POST", CREATE)["json"]
    assert (decode_task(SEED_CREATE_ANSWER), expected) == (task, sent.get("callback_url"))
    assert own == request.callback_url  # the request itself is unchanged
    assert ("a cat", 1) == (sent["prompt"], endpoints.requests)


async def test_get_task_reads_its_path(api: FakeAPI, make_transport: MakeTransport) -> None:
    endpoints = EvolinkAPI(make_transport())
    api.reply("GET", TASK_PATH, 200, json=COMPLETED)
    assert decode_task(COMPLETED) == await endpoints.get_task(TASK_ID)


async def test_get_credits_reads_the_balance(api: FakeAPI, make_transport: MakeTransport) -> None:
    endpoints = EvolinkAPI(make_transport())
    api.reply("GET", CREDITS, 200, json=CREDITS_ANSWER)
    assert decode_credits(CREDITS_ANSWER) == await endpoints.get_credits()


@pytest.mark.parametrize(
    ("task_id", "rule"),
    [
        ("abc", "must start with 'task-unified-'"),
        ("task-unified-1/../../credits", "must not contain '/', '?' or '#'"),
        ("task-unified-1?x=1", "must not contain '/', '?' or '#'"),
        ("task-unified-1#x", "must not contain '/', '?' or '#'"),
    ],
)
async def test_a_bad_task_id_is_refused_before_any_request(
    api: FakeAPI, make_transport: MakeTransport, task_id: str, rule: str
) -> None:
    endpoints = EvolinkAPI(make_transport())
    with pytest.raises(InvalidRequestError) as info:
        await endpoints.get_task(task_id)
    assert (("task_id", rule), 0) == ((info.value.field, info.value.rule), api.total_calls)


def test_a_good_task_id_passes_the_check() -> None:
    assert TASK_ID == check_task_id(TASK_ID)
