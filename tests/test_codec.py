"""Decoding the service's answers: the documented examples, liberal decoding, wrong shapes."""

# Tests assert `expected == actual`, the project's test style; ruff's SIM300 calls that a
# "Yoda condition", so it is off in this file.

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from evolink_async._codec import converter, decode_credits, decode_task, loads_json
from evolink_async.errors import DecodeError, TaskFailedError
from evolink_async.models import (
    FATAL_TASK_ERROR_CODES,
    RETRYABLE_TASK_ERROR_CODES,
    Credits,
    CreditsBalance,
    Task,
    TaskErrorInfo,
    TaskInfo,
    TaskStatus,
    Usage,
)

# The create answer of the seed page (sora-2-preview-api), verbatim.
SEED_CREATE_ANSWER = """
{
  "created": 1757169743,
  "id": "task-unified-1757169743-7cvnl5zw",
  "model": "sora-2-preview",
  "object": "video.generation.task",
  "progress": 0,
  "status": "pending",
  "task_info": {
    "can_cancel": true,
    "estimated_time": 300,
    "video_duration": 9
  },
  "type": "video",
  "usage": {
    "billing_rule": "per_call",
    "credits_reserved": 7,
    "user_group": "default"
  }
}
"""

COMPLETED_EXAMPLE = """
{"created": 1756817821, "id": "task-unified-1756817821-4x3rx6ny", "model": "veo3.1-fast",
 "object": "video.generation.task", "progress": 100, "results": ["http://example.com/video.mp4"],
 "status": "completed", "task_info": {"can_cancel": false}, "type": "video"}
"""

FAILED_EXAMPLE = """
{"id": "task-unified-1772618027-cmeisy8h", "object": "image.generation.task", "status": "failed",
 "model": "gemini-3.1-flash-image-preview", "progress": 0,
 "error": {"code": "content_policy_violation", "message": "Content policy violation. ..."}}
"""

CREDITS_EXAMPLE = """
{"data": {"token": {"remaining_credits": 99416.4429, "unlimited_credits": false,
                    "used_credits": 583.5571},
          "user": {"remaining_credits": 1095.3996, "used_credits": 135.9048}},
 "message": "", "success": true}
"""

# The documented task error codes, written out here (not taken from the SDK's constants).
DOC_FATAL_CODES = [
    "content_policy_violation",
    "invalid_parameters",
    "image_processing_error",
    "image_dimension_mismatch",
    "request_cancelled",
]
DOC_RETRYABLE_CODES = [
    "generation_failed_no_content",
    "service_error",
    "generation_timeout",
    "resource_exhausted",
    "quota_exceeded",
    "service_unavailable",
    "resource_not_found",
    "unknown_error",
]

TASK_ID = "task-unified-1757169743-7cvnl5zw"


def failed_task(code: Any) -> Task:
    return decode_task(
        {"id": TASK_ID, "status": "failed", "error": {"code": code, "message": "boom"}}
    )


# -- the documented examples ----------------------------------------------------------------


def test_seed_create_answer_decodes_to_the_exact_task() -> None:
    expected = Task(
        id="task-unified-1757169743-7cvnl5zw",
        status=TaskStatus.PENDING,
        raw_status="pending",
        progress=0,
        created=1757169743,
        model="sora-2-preview",
        object="video.generation.task",
        type="video",
        task_info=TaskInfo(can_cancel=True, estimated_time=300.0, video_duration=9.0),
        usage=Usage(billing_rule="per_call", credits_reserved=7.0, user_group="default"),
        results=(),
        error=None,
    )
    task = decode_task(json.loads(SEED_CREATE_ANSWER))
    assert expected == task
    assert (False, None, 300.0, 7.0) == (
        task.is_terminal,
        task.video_url,
        task.estimated_time,
        task.credits_reserved,
    )


def test_documented_completed_example_decodes_with_its_video_url() -> None:
    expected = Task(
        id="task-unified-1756817821-4x3rx6ny",
        status=TaskStatus.COMPLETED,
        raw_status="completed",
        progress=100,
        created=1756817821,
        model="veo3.1-fast",
        object="video.generation.task",
        type="video",
        task_info=TaskInfo(can_cancel=False),
        results=("http://example.com/video.mp4",),
    )
    task = decode_task(json.loads(COMPLETED_EXAMPLE))
    assert expected == task
    assert ("http://example.com/video.mp4", True, False) == (
        task.video_url,
        task.is_terminal,
        task.is_retryable_failure,
    )


def test_documented_failed_example_decodes_as_a_fatal_failure() -> None:
    expected = Task(
        id="task-unified-1772618027-cmeisy8h",
        status=TaskStatus.FAILED,
        raw_status="failed",
        progress=0,
        model="gemini-3.1-flash-image-preview",
        object="image.generation.task",
        error=TaskErrorInfo(
            code="content_policy_violation", message="Content policy violation. ..."
        ),
    )
    task = decode_task(json.loads(FAILED_EXAMPLE))
    assert expected == task
    assert (True, False, None) == (task.is_terminal, task.is_retryable_failure, task.video_url)


def test_task_failed_error_of_the_failed_example_carries_code_and_retryable() -> None:
    err = TaskFailedError(decode_task(json.loads(FAILED_EXAMPLE)))
    assert ("content_policy_violation", False) == (err.code, err.retryable)
    assert "task-unified-1772618027-cmeisy8h" in str(err)
    assert "content_policy_violation" in str(err)


def test_processing_task_with_progress_is_not_terminal() -> None:
    task = decode_task({"id": TASK_ID, "status": "processing", "progress": 42})
    assert (TaskStatus.PROCESSING, 42, False) == (task.status, task.progress, task.is_terminal)


@pytest.mark.parametrize(
    ("raw", "status", "terminal"),
    [
        ("pending", TaskStatus.PENDING, False),
        ("processing", TaskStatus.PROCESSING, False),
        ("completed", TaskStatus.COMPLETED, True),
        ("failed", TaskStatus.FAILED, True),
        ("Completed", TaskStatus.COMPLETED, True),
        ("queued", TaskStatus.UNKNOWN, False),
        ("cancelled", TaskStatus.CANCELLED, True),
        ("Cancelled", TaskStatus.CANCELLED, True),
        ("paused", TaskStatus.UNKNOWN, False),
    ],
)
def test_is_terminal_only_for_completed_failed_and_cancelled(
    raw: str, status: TaskStatus, terminal: bool
) -> None:
    task = decode_task({"id": TASK_ID, "status": raw})
    assert (status, raw, terminal) == (task.status, task.raw_status, task.is_terminal)


# -- forward compatibility ------------------------------------------------------------------


def test_unknown_status_becomes_unknown_keeps_the_raw_string_and_is_not_terminal() -> None:
    body = json.loads(SEED_CREATE_ANSWER) | {"status": "awaiting_moderation"}
    task = decode_task(body)
    assert (TaskStatus.UNKNOWN, "awaiting_moderation", False, False) == (
        task.status,
        task.raw_status,
        task.is_terminal,
        task.is_retryable_failure,
    )


@pytest.mark.parametrize("status", [None, 3, ["completed"], {"name": "completed"}])
def test_a_status_that_is_not_a_string_becomes_unknown_with_an_empty_raw_status(
    status: Any,
) -> None:
    task = decode_task({"id": TASK_ID, "status": status})
    assert (TaskStatus.UNKNOWN, "") == (task.status, task.raw_status)


def test_unknown_fields_are_ignored_at_every_level() -> None:
    body = json.loads(SEED_CREATE_ANSWER)
    body["result_data"] = [{"video_url": "https://x/y.mp4", "duration": 4, "title": "t"}]
    body["brand_new"] = {"nested": [1, 2, 3]}
    body["task_info"]["queue_position"] = 3
    body["usage"]["estimated_cost"] = 0.5
    body["usage"]["currency"] = "credits"
    expected = decode_task(json.loads(SEED_CREATE_ANSWER))
    expected_usage = Usage(
        billing_rule="per_call", credits_reserved=7.0, user_group="default", estimated_cost=0.5
    )
    assert attrs.evolve(expected, usage=expected_usage) == decode_task(body)


def test_a_task_with_only_an_id_has_every_optional_field_none() -> None:
    expected = Task(
        id=TASK_ID,
        status=TaskStatus.UNKNOWN,
        raw_status="",
        progress=None,
        created=None,
        model=None,
        object=None,
        type=None,
        task_info=None,
        usage=None,
        results=(),
        error=None,
    )
    task = decode_task({"id": TASK_ID})
    assert expected == task
    assert (None, None, None) == (task.video_url, task.estimated_time, task.credits_reserved)


def test_informational_fields_of_the_wrong_type_become_none() -> None:
    body = {
        "id": TASK_ID,
        "status": "pending",
        "progress": "about half",
        "created": [1757169743],
        "model": {"name": "sora"},
        "task_info": "soon",
        "usage": [7],
        "results": 5,
        "error": 17,
    }
    expected = Task(id=TASK_ID, status=TaskStatus.PENDING, raw_status="pending")
    assert expected == decode_task(body)


def test_numbers_sent_as_strings_are_read() -> None:
    body = {
        "id": TASK_ID,
        "progress": "50",
        "created": "1757169743",
        "task_info": {"estimated_time": "300", "can_cancel": "true"},
    }
    task = decode_task(body)
    assert (50, 1757169743, TaskInfo(can_cancel=True, estimated_time=300.0)) == (
        task.progress,
        task.created,
        task.task_info,
    )


def test_a_number_too_large_for_a_float_becomes_none_instead_of_failing() -> None:
    body = {"id": TASK_ID, "progress": 10**400, "task_info": {"estimated_time": 10**400}}
    assert Task(id=TASK_ID, task_info=TaskInfo()) == decode_task(body)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_become_none(value: float) -> None:
    body = {"id": TASK_ID, "progress": value, "usage": {"credits_reserved": value}}
    assert Task(id=TASK_ID, usage=Usage()) == decode_task(body)


# -- error codes ----------------------------------------------------------------------------


def test_error_code_may_be_an_integer() -> None:
    task = failed_task(500)
    assert (TaskErrorInfo(code=500, message="boom"), False) == (
        task.error,
        task.is_retryable_failure,
    )


def test_error_code_may_be_a_string() -> None:
    assert TaskErrorInfo(code="service_error", message="boom") == failed_task("service_error").error


def test_error_given_as_a_bare_string_becomes_its_message() -> None:
    task = decode_task({"id": TASK_ID, "status": "failed", "error": "it broke"})
    assert TaskErrorInfo(code=None, message="it broke") == task.error


@pytest.mark.parametrize("code", DOC_RETRYABLE_CODES)
def test_documented_retryable_codes_make_a_retryable_failure(code: str) -> None:
    task = failed_task(code)
    assert (True, True) == (task.is_retryable_failure, TaskFailedError(task).retryable)


@pytest.mark.parametrize("code", DOC_FATAL_CODES)
def test_documented_fatal_codes_make_a_non_retryable_failure(code: str) -> None:
    task = failed_task(code)
    assert (False, False) == (task.is_retryable_failure, TaskFailedError(task).retryable)


@pytest.mark.parametrize("code", ["brand_new_code", "", None, 503])
def test_unknown_or_missing_codes_are_not_retryable(code: Any) -> None:
    assert False is failed_task(code).is_retryable_failure


def test_a_failed_task_without_error_detail_is_not_retryable() -> None:
    task = decode_task({"id": TASK_ID, "status": "failed"})
    assert (None, False) == (task.error, task.is_retryable_failure)


def test_a_retryable_code_on_a_task_that_did_not_fail_is_not_a_retryable_failure() -> None:
    task = decode_task({"id": TASK_ID, "status": "processing", "error": {"code": "service_error"}})
    assert False is task.is_retryable_failure


def test_the_sdk_code_sets_are_exactly_the_documented_ones() -> None:
    assert (set(DOC_FATAL_CODES), set(DOC_RETRYABLE_CODES)) == (
        set(FATAL_TASK_ERROR_CODES),
        set(RETRYABLE_TASK_ERROR_CODES),
    )


# -- results --------------------------------------------------------------------------------


def test_video_url_is_the_first_result() -> None:
    task = decode_task(
        {"id": TASK_ID, "status": "completed", "results": ["https://a/1.mp4", "https://a/2.mp4"]}
    )
    assert (("https://a/1.mp4", "https://a/2.mp4"), "https://a/1.mp4") == (
        task.results,
        task.video_url,
    )


def test_results_given_as_a_single_string_is_one_result() -> None:
    task = decode_task({"id": TASK_ID, "status": "completed", "results": "https://a/1.mp4"})
    assert ("https://a/1.mp4",) == task.results


def test_non_string_results_are_dropped() -> None:
    task = decode_task(
        {"id": TASK_ID, "status": "completed", "results": [None, {"u": 1}, "https://a/1.mp4"]}
    )
    assert (("https://a/1.mp4",), "https://a/1.mp4") == (task.results, task.video_url)


def test_completed_task_without_results_has_no_video_url() -> None:
    task = decode_task({"id": TASK_ID, "status": "completed", "results": []})
    assert ((), None, True) == (task.results, task.video_url, task.is_terminal)


# -- credits --------------------------------------------------------------------------------


def test_documented_credits_example_decodes_and_remaining_is_the_keys_balance() -> None:
    expected = Credits(
        token=CreditsBalance(
            remaining_credits=99416.4429, used_credits=583.5571, unlimited_credits=False
        ),
        user=CreditsBalance(remaining_credits=1095.3996, used_credits=135.9048),
    )
    credits = decode_credits(json.loads(CREDITS_EXAMPLE))
    assert (expected, 99416.4429) == (credits, credits.remaining)


def test_unlimited_key_has_no_remaining_limit() -> None:
    body = {"data": {"token": {"unlimited_credits": True, "remaining_credits": 0}}}
    assert None is decode_credits(body).remaining


def test_remaining_falls_back_to_the_account_balance_without_a_key_balance() -> None:
    body = {"data": {"user": {"remaining_credits": 12.5, "used_credits": 1}}}
    assert 12.5 == decode_credits(body).remaining


def test_credits_without_the_data_wrapper_are_read_too() -> None:
    body = {"token": {"remaining_credits": 3}}
    assert Credits(token=CreditsBalance(remaining_credits=3.0)) == decode_credits(body)


def test_credits_with_nothing_known_has_no_remaining() -> None:
    credits = decode_credits({"data": {}, "success": True})
    assert (Credits(), None) == (credits, credits.remaining)


@pytest.mark.parametrize("body", [[], "credits", None, 5, {"data": "none"}, {"data": [1]}])
def test_credits_of_the_wrong_shape_raise_decode_error(body: Any) -> None:
    with pytest.raises(DecodeError):
        decode_credits(body)


# -- wrong shapes ---------------------------------------------------------------------------


@pytest.mark.parametrize("body", [[], [json.loads(SEED_CREATE_ANSWER)], "task", 1, None, True])
def test_a_task_that_is_not_an_object_raises_decode_error(body: Any) -> None:
    with pytest.raises(DecodeError, match="expected a task object"):
        decode_task(body)


def test_a_task_without_id_raises_decode_error() -> None:
    body = json.loads(SEED_CREATE_ANSWER)
    del body["id"]
    with pytest.raises(DecodeError, match="invalid task object"):
        decode_task(body)


@pytest.mark.parametrize("task_id", [None, 1757169743, "", ["task-unified-1"], True])
def test_a_task_whose_id_is_not_a_non_empty_string_raises_decode_error(task_id: Any) -> None:
    with pytest.raises(DecodeError, match="invalid task object"):
        decode_task({"id": task_id, "status": "pending"})


def test_loads_json_of_a_non_json_body_raises_decode_error_with_an_excerpt() -> None:
    with pytest.raises(DecodeError) as info:
        loads_json(b"<html>oops</html>" + b"x" * 500, "POST /v1/videos/generations response")
    err = info.value
    assert ("<html>oops</html>" + "x" * 183, True) == (err.excerpt, "is not JSON" in str(err))


def test_loads_json_of_invalid_utf8_raises_decode_error() -> None:
    with pytest.raises(DecodeError):
        loads_json(b"\xff\xfe{", "body")


# -- property: decoding never fails with anything but DecodeError ---------------------------

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([10**400, -(10**400), 2**63, 0, 1, 100])
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(["pending", "processing", "completed", "failed", "true", "1e999", "50"])
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=6,
)
SUB_OBJECT = st.fixed_dictionaries(
    {},
    optional={
        key: JSON_VALUES
        for key in (
            "can_cancel",
            "estimated_time",
            "video_duration",
            "billing_rule",
            "credits_reserved",
            "user_group",
            "estimated_cost",
            "code",
            "message",
            "remaining_credits",
            "used_credits",
            "unlimited_credits",
        )
    },
)
#: Objects with any of a task's keys, each holding any JSON value (or a plausible sub-object).
TASK_BODY = st.fixed_dictionaries(
    {},
    optional={
        **{
            key: JSON_VALUES
            for key in (
                "status",
                "progress",
                "created",
                "model",
                "object",
                "type",
                "results",
                "raw_status",
                "result_data",
            )
        },
        **{key: SUB_OBJECT | JSON_VALUES for key in ("task_info", "usage", "error")},
    },
)
VALID_IDS = st.text(min_size=1, max_size=40)


@settings(max_examples=300, deadline=None, database=None)
@given(
    st.one_of(
        JSON_VALUES,
        st.builds(lambda body, task_id: {**body, "id": task_id}, TASK_BODY, JSON_VALUES),
    )
)
def test_decode_task_of_any_json_returns_a_task_or_raises_decode_error(data: Any) -> None:
    try:
        task = decode_task(data)
    except DecodeError:
        return
    assert isinstance(task, Task)
    assert isinstance(task.status, TaskStatus)


@settings(max_examples=100, deadline=None, database=None)
@given(TASK_BODY, VALID_IDS)
@example({"progress": 10**400, "task_info": {"estimated_time": -(10**400)}}, TASK_ID)
def test_decode_task_with_a_string_id_always_succeeds_whatever_else_is_sent(
    body: dict[str, Any], task_id: str
) -> None:
    task = decode_task({**body, "id": task_id})
    raw = body.get("status")
    assert (task_id, TaskStatus.parse(raw), raw if isinstance(raw, str) else "") == (
        task.id,
        task.status,
        task.raw_status,
    )
    assert all(isinstance(url, str) for url in task.results)


@settings(max_examples=300, deadline=None, database=None)
@given(TASK_BODY, VALID_IDS)
@example({"status": " Completed ", "results": "https://x/a.mp4", "error": "boom"}, TASK_ID)
def test_decode_task_makes_exactly_the_task_the_converter_makes(
    body: dict[str, Any], task_id: str
) -> None:
    # decode_task builds a task field by field (its fast path); the converter's generated
    # function is the reference: whatever the answer holds, the two tasks are equal
    data = {**body, "id": task_id}
    assert decode_task(data) == converter.structure(data, Task)


@settings(max_examples=100, deadline=None, database=None)
@given(
    st.one_of(
        JSON_VALUES,
        st.fixed_dictionaries(
            {}, optional={"token": SUB_OBJECT | JSON_VALUES, "user": SUB_OBJECT | JSON_VALUES}
        ).map(lambda inner: {"data": inner}),
    )
)
@example({"data": {"token": {"remaining_credits": 10**400}}})
def test_decode_credits_of_any_json_returns_credits_or_raises_decode_error(data: Any) -> None:
    try:
        credits = decode_credits(data)
    except DecodeError:
        return
    assert isinstance(credits, Credits)
