"""Fail fast, say why: a service that cannot be reached before any create got through stops a
batch and ``generate_many`` at once with one clear error (exit 4 on the command line), sending
nothing more; an outage after creates got through pauses the creates (no intent burnt), shows
why, and resumes by itself when the service is back (the simulator stopped and restarted on
the same port). Loopback only; time is guarded, never asserted."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterable
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from aiohttp.client_reqrep import ConnectionKey
from cli_support import KEY, fast_client_env, read_manifest, write_prompts

from evolink_async import (
    EvolinkClient,
    Outcome,
    Paused,
    Resumed,
    RetryPolicy,
    ServiceUnreachableError,
    Submitted,
)
from evolink_async._unreachable import unreachable_error
from evolink_async.batch import BatchJob, BatchSummary, parse_prompts
from evolink_async.batch.journal import JOURNAL_FILENAME
from evolink_async.cli import EXIT_UNREACHABLE, main
from evolink_async.cli.display import stats_line
from evolink_async.dispatcher import Event
from evolink_async.dispatcher._reach import Reach
from evolink_async.testing import Simulator

TIME_SCALE = 0.002
#: quick transport retries: a refused create is decided in well under a second
QUICK = RetryPolicy(attempts=3, wait_initial=0.01, wait_max=0.05)


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def collect(batch: AsyncIterable[Outcome], outcomes: list[Outcome]) -> None:
    async for outcome in batch:
        outcomes.append(outcome)


def journal_records(out: Path) -> list[dict[str, Any]]:
    path = out / JOURNAL_FILENAME
    return [json.loads(raw) for raw in path.read_text().splitlines() if raw.strip()]


# -- before any create got through: one clear error, at once -------------------------------


@pytest.mark.parametrize(
    ("flags", "creates"),
    [
        pytest.param([], False, id="credits-read-first"),  # the credits check meets it
        pytest.param(["--allow-partial"], True, id="first-creates"),  # the first creates do
    ],
)
def test_a_batch_at_a_closed_port_exits_4_with_one_clear_error_sending_nothing_more(
    tmp_path: Path, flags: list[str], creates: bool
) -> None:
    port = closed_port()
    source = write_prompts(tmp_path / "thirty.txt", [f"a cat, take {i}" for i in range(30)])
    out = tmp_path / "o"
    base = ["--base-url", f"http://127.0.0.1:{port}", "--api-key", KEY]
    argv = ["-m", "evolink_async", "batch", str(source), "--out", str(out), *base, *flags]
    result = subprocess.run(  # the guard: the issue saw 11 minutes
        [sys.executable, *argv],
        check=False,
        capture_output=True,
        text=True,
        env=fast_client_env(),
        timeout=15,
    )

    assert EXIT_UNREACHABLE == result.returncode == 4
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert [
        f"evolink-async: cannot reach 127.0.0.1:{port}: connection refused; nothing was "
        "created. Check --base-url (or $EVOLINK_BASE_URL) and the network, then run the "
        "same command again"
    ] == errors
    records = journal_records(out)
    intents = sorted(r["line"] for r in records if r["event"] == "intent")
    # one create tried (the others wait for it while no connection ever opened), nothing
    # after it; it was certainly not taken: journaled rejected, so that a rerun sends it
    rejected = sorted(r["line"] for r in records if r.get("status") == "rejected")
    assert ([1] if creates else []) == intents == rejected
    if creates:
        manifest = read_manifest(out)
        assert {"interrupted": 30} == Counter(e["status"] for e in manifest)
        assert f"cannot reach 127.0.0.1:{port}" in manifest[0]["error"]["message"]


async def test_generate_many_at_a_closed_port_raises_one_clear_error_sending_no_more() -> None:
    port = closed_port()
    outcomes: list[Outcome] = []
    with anyio.fail_after(15):
        url = f"http://127.0.0.1:{port}"
        async with EvolinkClient(KEY, url, retry=QUICK, max_in_flight=4) as client:
            prompts = (f"a dog, take {i}" for i in range(30))
            with pytest.raises(ServiceUnreachableError) as raised:
                await collect(client.generate_many(prompts), outcomes)
            counters = dict(client.transport.counters)
            reached = client.dispatcher.reached

    error = raised.value
    expected = ("127.0.0.1", port, "connection refused", False)
    assert expected == (error.host, error.port, error.cause, error.maybe_created)
    assert f"cannot reach 127.0.0.1:{port}: connection refused" == str(error)
    # the first create's tries, nothing more: the other 29 were never sent (those waiting
    # behind it, max_in_flight=4, were told the same error without sending anything)
    assert {"POST create error": QUICK.attempts} == counters
    assert [(0, "failed", error)] == [(o.index, o.status, o.error) for o in outcomes]
    assert not reached


async def test_a_batch_stopped_by_an_unreachable_service_is_completed_by_a_rerun_once_it_is_up(
    tmp_path: Path,
) -> None:
    port = closed_port()
    lines = parse_prompts([f"a fox, take {i}" for i in range(8)], fmt="txt")
    out = tmp_path / "o"
    url = f"http://127.0.0.1:{port}"
    with anyio.fail_after(15):
        async with EvolinkClient(KEY, url, retry=QUICK, time_scale=TIME_SCALE) as client:
            with pytest.raises(ServiceUnreachableError, match=f"127.0.0.1:{port}"):
                await BatchJob(client, lines, out).run()
    assert {"interrupted": 8} == Counter(e["status"] for e in read_manifest(out))

    with anyio.fail_after(60):
        async with (
            Simulator(time_scale=TIME_SCALE, api_key=KEY, port=port) as sim,
            EvolinkClient(KEY, url, retry=QUICK, time_scale=TIME_SCALE, rate=None) as client,
        ):
            summary = await BatchJob(client, lines, out).run()
    assert (8, 8) == (summary.total, summary.completed)
    assert {1} == set(sim.stats.creates_per_prompt.values())
    assert 8 == len(sim.stats.creates_per_prompt)


# -- after creates got through: an outage pauses the creates, and they resume ---------------


async def _wait_for(condition: Any) -> None:
    """Until ``condition()``: the simulator's counters and the job's progress tell no event."""
    while not condition():  # noqa: ASYNC110 - polled, as said
        await anyio.sleep(0.02)


async def test_an_outage_mid_batch_pauses_creates_then_resumes_and_each_prompt_is_billed_once(
    tmp_path: Path,
) -> None:
    n = 12
    lines = parse_prompts([f"a heron, take {i}" for i in range(n)], fmt="txt")
    out = tmp_path / "o"
    shown: list[str] = []
    summary: list[BatchSummary] = []
    # 4 creates a second: the outage comes while most lines are still to be sent
    async with (
        Simulator(time_scale=TIME_SCALE, api_key=KEY) as sim,
        EvolinkClient(
            KEY, sim.base_url, retry=QUICK, time_scale=TIME_SCALE, rate=4, burst=1
        ) as client,
    ):
        job = BatchJob(client, lines, out)

        async def run() -> None:
            summary.append(await job.run())

        with anyio.fail_after(90):
            async with anyio.create_task_group() as tg:
                tg.start_soon(run)
                await _wait_for(lambda: sim.stats.count("create", 200) >= 3)
                await sim.listener.stop()
                creates_before = sim.stats.count("create", 200)
                await _wait_for(lambda: job.progress().outage is not None)
                shown.append(stats_line(job.progress(), 0.0))
                sent_while_down = sim.stats.count("create", 200) - creates_before
                await sim.listener.start()  # the same port: the client finds it again

    assert 0 == sent_while_down
    assert "paused: service unreachable (connection refused), retry in" in shown[0]
    assert (n, n) == (summary[0].total, summary[0].completed)
    assert {1} == set(sim.stats.creates_per_prompt.values())  # billed once each
    assert n == len(sim.stats.creates_per_prompt)
    intents = Counter(r["line"] for r in journal_records(out) if r["event"] == "intent")
    assert {1} == set(intents.values())  # the pause burnt no intent
    assert n == len(intents)


async def test_generate_many_tells_paused_and_resumed_around_an_outage() -> None:
    events: list[Event] = []
    outcomes: list[Outcome] = []
    async with Simulator(time_scale=TIME_SCALE, api_key=KEY) as sim:
        url = sim.base_url
        async with EvolinkClient(
            KEY, url, retry=QUICK, time_scale=TIME_SCALE, rate=4, burst=1
        ) as client:

            async def consume() -> None:
                prompts = (f"an owl, take {i}" for i in range(10))
                async for outcome in client.generate_many(prompts, on_event=events.append):
                    outcomes.append(outcome)

            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(consume)
                    await _wait_for(lambda: sum(isinstance(e, Submitted) for e in events) >= 3)
                    await sim.listener.stop()
                    await _wait_for(lambda: any(isinstance(e, Paused) for e in events))
                    await sim.listener.start()

    pauses = [e for e in events if isinstance(e, (Paused, Resumed))]
    assert isinstance(pauses[0], Paused)
    where = url.removeprefix("http://")
    assert ("connection refused", where) == (pauses[0].reason, pauses[0].where)
    assert isinstance(pauses[-1], Resumed)
    assert {"completed": 10} == Counter(o.status for o in outcomes)
    assert {1} == set(sim.stats.creates_per_prompt.values())
    assert 10 == sum(isinstance(e, Submitted) for e in events)


async def test_stopping_a_batch_during_an_outage_is_quick_and_loses_no_line(
    tmp_path: Path,
) -> None:
    n = 10
    lines = parse_prompts([f"a crane, take {i}" for i in range(n)], fmt="txt")
    out = tmp_path / "o"
    summary: list[BatchSummary] = []
    async with (
        Simulator(time_scale=TIME_SCALE, api_key=KEY) as sim,
        EvolinkClient(
            KEY, sim.base_url, retry=QUICK, time_scale=TIME_SCALE, rate=4, burst=1
        ) as client,
    ):
        job = BatchJob(client, lines, out)

        async def run() -> None:
            summary.append(await job.run())

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(run)
                await _wait_for(lambda: sim.stats.count("create", 200) >= 2)
                await sim.listener.stop()
                await _wait_for(lambda: job.progress().outage is not None)
                # Ctrl-C: nothing waits for the creates paused (they are not on the wire);
                # the guard is far below the stop's 30 s grace for creates on the wire
                with anyio.fail_after(10):
                    job.stop()
                    await _wait_for(lambda: bool(summary))

    statuses = Counter(e["status"] for e in read_manifest(out))
    assert summary[0].interrupted
    assert set(statuses) <= {"completed", "interrupted"}  # none unknown: nothing maybe taken
    assert n == sum(statuses.values())


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(["credits"], id="credits"),
        pytest.param(["generate", "a paper boat", "--no-download"], id="generate"),
    ],
)
def test_the_other_commands_exit_4_naming_where_and_why(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    port = closed_port()
    argv = [*command, "--base-url", f"http://127.0.0.1:{port}", "--api-key", KEY]
    assert EXIT_UNREACHABLE == main(argv)
    assert f"cannot reach 127.0.0.1:{port}: connection refused" in capsys.readouterr().err


def _key() -> ConnectionKey:
    return ConnectionKey("gw.example.test", 8443, True, True, None, None, None)


@pytest.mark.parametrize(
    ("exc", "cause"),
    [
        pytest.param(
            aiohttp.ClientConnectorError(_key(), ConnectionRefusedError(111, "refused")),
            "connection refused",
            id="refused",
        ),
        pytest.param(
            aiohttp.ClientConnectorError(_key(), OSError(113, "No route to host")),
            "no route to host",
            id="no-route",
        ),
        pytest.param(
            aiohttp.ClientConnectorDNSError(_key(), OSError(-2, "Name or service not known")),
            "DNS lookup failed",
            id="dns",
        ),
        pytest.param(
            aiohttp.ClientConnectorCertificateError(
                _key(), ssl.SSLCertVerificationError(1, "certificate verify failed")
            ),
            "TLS error: ",
            id="tls",
        ),
    ],
)
def test_the_cause_of_a_connection_never_opened_is_said_in_words(
    exc: Exception, cause: str
) -> None:
    error = unreachable_error(exc, "https://gw.example.test:8443/v1/videos/generations")
    assert ("gw.example.test", 8443, False) == (error.host, error.port, error.maybe_created)
    assert error.cause.startswith(cause)
    assert str(error).startswith(f"cannot reach gw.example.test:8443: {cause}")
    assert error.__cause__ is exc


async def test_submits_at_a_closed_port_each_end_failed_with_the_clear_error_after_one_create() -> (
    None
):
    port = closed_port()
    with anyio.fail_after(15):
        url = f"http://127.0.0.1:{port}"
        async with EvolinkClient(KEY, url, retry=QUICK) as client:
            handles = [await client.submit(f"a bot's clip {i}") for i in range(5)]
            outcomes = [await handle for handle in handles]
            counters = dict(client.transport.counters)

    assert [("failed", f"cannot reach 127.0.0.1:{port}: connection refused")] * 5 == [
        (o.status, str(o.error)) for o in outcomes
    ]
    assert all(isinstance(o.error, ServiceUnreachableError) for o in outcomes)
    assert {"POST create error": QUICK.attempts} == counters  # the first create's tries only


async def test_creates_waiting_behind_the_first_go_when_its_connection_opens() -> None:
    # before any create got through, creates go one at a time until a connection is opened;
    # the opening wakes the others at once (no polling), while the first is still waiting
    reach = Reach()
    opened = False
    inside: list[str] = []
    first_may_end = anyio.Event()

    async def create(name: str, hold: anyio.Event | None) -> None:
        async with reach.admit(lambda: opened):
            inside.append(name)
            if hold is not None:
                await hold.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(create, "first", first_may_end)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(create, "second", None)
        tg.start_soon(create, "third", None)
        await anyio.wait_all_tasks_blocked()
        assert inside == ["first"]  # the others wait: nothing opened yet
        opened = True
        reach.connection_opened()
        await anyio.wait_all_tasks_blocked()
        assert inside == ["first", "second", "third"]  # the first is still inside
        first_may_end.set()
