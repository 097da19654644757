"""Credits and 402s: GET /v1/credits read strictly, the three 402 sub-codes as typed errors,
the simulator's account balance, key limit and daily limit, and a batch that checks the
credits before it starts and stops creating (finishing what is in flight) on a 402."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cli_support import KEY, TIME_SCALE, read_manifest, service_args, write_prompts
from test_simulator_support import running

from evolink_async import EvolinkClient
from evolink_async._codec import decode_account_credits
from evolink_async._transport import error_from_response
from evolink_async.cli import main
from evolink_async.errors import (
    APIError,
    DailyQuotaExceededError,
    DecodeError,
    InsufficientCreditsError,
    KeyQuotaExceededError,
    RateLimitError,
)
from evolink_async.testing import ScaledClock, ThreadedSimulator

PRICE = 23.04  # sora-2-preview, 4 s: the published price


def _error(status: int, **fields: Any) -> APIError:
    body = json.dumps({"error": {"message": "no", "type": "insufficient_quota_error", **fields}})
    return error_from_response(status, body.encode())


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (402, "insufficient_user_quota", InsufficientCreditsError),
        (402, "account_balance_insufficient", InsufficientCreditsError),
        (402, 402, InsufficientCreditsError),  # an unknown code: by status
        (402, "key_quota_exhausted", KeyQuotaExceededError),
        (402, "INSUFFICIENT_TOKEN_QUOTA", KeyQuotaExceededError),  # case-insensitive
        (402, "key_daily_quota_exhausted", DailyQuotaExceededError),
        (402, "token_daily_quota_exceeded", DailyQuotaExceededError),
        (403, "key_daily_quota_exhausted", DailyQuotaExceededError),  # code first
        (429, "rate_limit_exceeded", RateLimitError),
    ],
)
def test_402_sub_codes_are_classified_by_code_first_then_status(
    status: int, code: object, expected: type[APIError]
) -> None:
    err = _error(status, code=code)
    assert (expected, status) == (type(err), err.status)


def test_quota_errors_carry_the_gateways_figures() -> None:
    balance = _error(402, code="insufficient_quota", account_balance_credits=5.5,
                     estimated_credits=23.04)  # fmt: skip
    key = _error(402, code="key_quota_exhausted", total_limit_credits=100, used_credits=90,
                 remaining_credits=10)  # fmt: skip
    daily = _error(402, code="key_daily_quota_exhausted", daily_limit_credits=50,
                   daily_used_credits=49, reset_timezone="Asia/Shanghai")  # fmt: skip
    assert isinstance(balance, InsufficientCreditsError)
    assert isinstance(key, KeyQuotaExceededError)
    assert isinstance(daily, DailyQuotaExceededError)
    reset = daily.reset_at
    assert reset is not None
    assert (5.5, 23.04, 100.0, 90.0, 10.0, 50.0, 49.0, "Asia/Shanghai", (0, 0)) == (
        balance.balance,
        balance.estimate,
        key.limit,
        key.used,
        key.remaining,
        daily.daily_limit,
        daily.daily_used,
        daily.reset_timezone,
        (reset.hour, reset.minute),
    )


def test_a_daily_quota_error_without_a_known_zone_has_no_reset_time() -> None:
    err = _error(402, code="key_daily_quota_exhausted", reset_timezone="Mars/Olympus")
    assert isinstance(err, DailyQuotaExceededError)
    assert (None, "Mars/Olympus") == (err.reset_at, err.reset_timezone)


GOOD = {
    "data": {
        "token": {"remaining_credits": 40.0, "unlimited_credits": False, "used_credits": 60.0},
        "user": {"remaining_credits": 1000.0, "used_credits": 135.9},
    },
    "message": "",
    "success": True,
}


@pytest.mark.parametrize(
    "body",
    [
        {**GOOD, "success": False, "message": "service busy"},
        {**GOOD, "data": {"user": GOOD["data"]["user"]}},
        {**GOOD, "data": {"token": GOOD["data"]["token"]}},
        {"message": "", "success": True},
    ],
    ids=["success-false", "no-token", "no-user", "no-data"],
)
def test_get_credits_treats_a_failed_or_partial_answer_as_an_error(body: Any) -> None:
    with pytest.raises(DecodeError):
        decode_account_credits(body)


def test_available_is_the_smaller_of_the_balance_and_the_keys_remaining_limit() -> None:
    credits = decode_account_credits(GOOD)
    unlimited = {**GOOD, "data": {**GOOD["data"], "token": {"unlimited_credits": True}}}
    assert (1000.0, 60.0, 40.0, 40.0, 1000.0) == (
        credits.balance,
        credits.key_used,
        credits.key_remaining,
        credits.available,
        decode_account_credits(unlimited).available,
    )


async def test_the_simulator_answers_credits_with_the_account_and_the_key() -> None:
    async with (
        running(credits=500.0, key_limit=100.0) as (sim, _),
        EvolinkClient(sim.api_key, sim.base_url) as client,
    ):
        await client.create_video(prompt="a fox", duration=4)
        credits = await client.get_credits()
    assert (476.96, 76.96, 76.96) == (
        credits.balance,
        credits.key_remaining,
        credits.available,
    )


@pytest.mark.parametrize(
    ("knobs", "error", "code"),
    [
        ({"credits": PRICE * 1.5}, InsufficientCreditsError, 402),
        ({"key_limit": PRICE * 1.5}, KeyQuotaExceededError, "key_quota_exhausted"),
        ({"daily_limit": PRICE * 1.5}, DailyQuotaExceededError, "key_daily_quota_exhausted"),
    ],
)
async def test_the_simulator_refuses_a_create_over_each_limit_with_its_sub_code(
    knobs: dict[str, Any], error: type[APIError], code: object
) -> None:
    async with (
        running(**knobs) as (sim, _),
        EvolinkClient(sim.api_key, sim.base_url, retry=None) as client,
    ):
        await client.create_video(prompt="first", duration=4)
        with pytest.raises(InsufficientCreditsError) as info:
            await client.create_video(prompt="second", duration=4)
    assert (error, code, 1) == (type(info.value), info.value.code, len(sim.tasks))


async def test_the_daily_limit_resets_on_the_simulated_clock_and_a_refund_gives_it_back() -> None:
    async with running(daily_limit=PRICE * 1.5, daily_period=1000.0) as (sim, api):
        first = await api.created_id(duration=4)
        refused = await api.create(duration=4)
        sim.fail_task(first, "service_error")  # refunded: the day's spend goes back
        after_refund = await api.create(duration=4)
        refused_again = await api.create(duration=4)
        sim.advance(to_reset(sim) + 1)
        next_day = await api.create(duration=4)
    assert [402, 200, 402, 200] == [
        r.status for r in (refused, after_refund, refused_again, next_day)
    ]
    assert "UTC" == refused.body["error"]["reset_timezone"]


def to_reset(sim: Any) -> float:
    """Simulated seconds until the simulator's daily limit resets (every ``daily_period``)."""
    period: float = sim.config.daily_period
    return period - sim.clock.now() % period


# -- the batch command ------------------------------------------------------------------------


def _batch(tmp_path: Path, sim: Any, prompts: int, *extra: str) -> tuple[int, Path]:
    source = write_prompts(tmp_path / "p.txt", [f"clip {i}: waves" for i in range(prompts)])
    out = tmp_path / "clips"
    argv = ["batch", str(source), "--out", str(out), "--duration", "4", "--rate", "500"]
    return main([*argv, "--concurrency", "4", *extra, *service_args(sim)]), out


def test_a_batch_the_balance_cannot_pay_for_asks_first_and_sends_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with ThreadedSimulator(time_scale=TIME_SCALE, api_key=KEY, credits=PRICE * 10 + 1) as sim:
        code, _ = _batch(tmp_path, sim, 15)
        creates = sim.stats.creates_per_prompt
    err = capsys.readouterr().err
    assert (2, {}) == (code, dict(creates))
    assert "this batch needs about 345.6 credits; the balance is 231.4" in err


def test_allow_partial_makes_what_the_balance_pays_for_and_skips_the_rest(
    tmp_path: Path,
) -> None:
    with ThreadedSimulator(time_scale=TIME_SCALE, api_key=KEY, credits=PRICE * 10 + 1) as sim:
        code, out = _batch(tmp_path, sim, 15, "--allow-partial")
        billed = sim.stats.credits_spent
    manifest = read_manifest(out)
    statuses = [e["status"] for e in manifest]
    assert (1, 10, 5) == (code, statuses.count("completed"), statuses.count("skipped"))
    assert round(PRICE * 10, 2) == round(billed, 2)
    codes = {e["error"]["code"] for e in manifest if e["status"] == "skipped"}
    assert codes <= {"insufficient_credits", "402"}, codes


def test_a_daily_limit_stops_creates_and_a_rerun_after_the_reset_completes(
    tmp_path: Path,
) -> None:
    period = 10_000_000.0
    clock = ScaledClock(TIME_SCALE, start=period * 200 + 1)  # a day that has just begun
    knobs = {"daily_limit": PRICE * 10 + 1, "daily_period": period, "clock": clock}
    with ThreadedSimulator(time_scale=TIME_SCALE, api_key=KEY, **knobs) as sim:
        first_code, out = _batch(tmp_path, sim, 15)
        first = read_manifest(out)
        clock.jump(to_reset(sim) + 1)  # simulated time, past the reset
        second_code, _ = _batch(tmp_path, sim, 15)
        second = read_manifest(out)
        creates = dict(sim.stats.creates_per_prompt)
    statuses = [e["status"] for e in first]
    skipped = [e["error"]["code"] for e in first if e["status"] == "skipped"]
    assert (1, 10, 5) == (first_code, statuses.count("completed"), statuses.count("skipped"))
    assert set(skipped) <= {"daily_quota_exceeded", "key_daily_quota_exhausted"}, skipped
    assert (0, ["completed"] * 15) == (second_code, [e["status"] for e in second])
    assert {1} == set(creates.values())  # each prompt billed once over both runs
