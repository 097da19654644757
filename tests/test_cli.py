"""The ``evolink-async`` command line: in-process through ``main(argv)`` and as a real process
(``python -m evolink_async``), against a simulator served from a thread of the test process."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evolink_async import cli, testing
from evolink_async.batch import MANIFEST_FILENAME, video_filename
from evolink_async.cli import main
from evolink_async.journal import Journal, replay
from evolink_async.testing import Simulator, ThreadedSimulator
from evolink_async.testing._files import sample_video

REPO = Path(__file__).resolve().parent.parent
KEY = "sk-evo-cli-test-secret-0123456789"
TIME_SCALE = 0.001


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with ThreadedSimulator(time_scale=TIME_SCALE, api_key=KEY, seed=5) as simulator:
        yield simulator


def service_args(sim: Simulator) -> list[str]:
    scale = str(sim.config.time_scale)
    return ["--base-url", sim.base_url, "--api-key", KEY, "--time-scale", scale]


def fast_client_env() -> dict[str, str]:
    """The environment of a subprocess, without the user's key or URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVOLINK_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def read_manifest(out: Path) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in (out / MANIFEST_FILENAME).read_text().splitlines()]


def check_complete(out: Path, prompts: list[str], first_line: int = 1) -> list[dict[str, Any]]:
    """One manifest line per prompt, in order; an MP4 of the journaled size for each video."""
    manifest = read_manifest(out)
    expected = list(range(first_line, first_line + len(prompts)))
    assert list(zip(expected, prompts, strict=True)) == [(e["line"], e["prompt"]) for e in manifest]
    state = replay(out)
    for entry in manifest:
        if entry["video"] is None:
            continue
        assert video_filename(entry["line"], entry["task_id"]) == entry["video"]
        data = (out / entry["video"]).read_bytes()
        assert b"ftyp" == data[4:8]
        assert (len(sample_video()), len(sample_video())) == (
            len(data),
            state[entry["line"]].size,
        )
    return manifest


def write_prompts(path: Path, prompts: list[str]) -> Path:
    path.write_text("\n".join(prompts) + "\n", encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- batch


def test_batch_of_50_prompts_exits_0_with_a_complete_manifest(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = [f"cli prompt {i}: a fox in the snow" for i in range(50)]
    source = write_prompts(tmp_path / "prompts.txt", prompts)
    out = tmp_path / "clips"
    argv = ["batch", str(source), "--out", str(out), "--concurrency", "50", "--rate", "500"]

    assert 0 == main([*argv, *service_args(sim)])

    manifest = check_complete(out, prompts)
    assert ["completed"] * 50 == [e["status"] for e in manifest]
    assert {1} == set(sim.stats.creates_per_prompt.values())
    captured = capsys.readouterr()
    assert "Batch summary:" in captured.out
    assert "completed     50" in captured.out
    assert KEY not in captured.out + captured.err


def test_batch_jsonl_with_mixed_durations_and_defaults(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows: list[dict[str, Any]] = [
        {"prompt": "short", "duration": 4},
        {"prompt": "medium", "duration": 8, "aspect_ratio": "16:9"},
        {"prompt": "long", "duration": 12},
        {"prompt": "default"},
    ]
    source = tmp_path / "p.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "clips"
    argv = ["batch", str(source), "--out", str(out), "--duration", "8", "--aspect-ratio", "9:16"]

    assert 0 == main([*argv, "--quiet", "--rate", "500", *service_args(sim)])

    manifest = check_complete(out, [r["prompt"] for r in rows])
    got = [
        (sim.tasks[e["task_id"]].duration, sim.tasks[e["task_id"]].aspect_ratio) for e in manifest
    ]
    assert [(4, "9:16"), (8, "16:9"), (12, "9:16"), (8, "9:16")] == got
    assert "" == capsys.readouterr().out


@pytest.mark.parametrize(
    "case",
    [
        ('{"prompt": "broken", ', None, "invalid JSON"),
        ('{"prompt": "five", "duration": 5}', "duration", "must be one of 4, 8, 12"),
        (json.dumps({"prompt": "y" * 6000}), "prompt", "at most 5000 characters"),
        ('{"prompt": "h", "callback_url": "http://example.com/cb"}', "callback_url", "https"),
    ],
    ids=["bad-json", "duration-5", "prompt-6000", "http-callback"],
)
def test_an_invalid_line_exits_2_naming_line_and_field_and_sends_nothing(
    sim: Simulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    case: tuple[str, str | None, str],
) -> None:
    line, field, fragment = case
    source = tmp_path / "p.jsonl"
    source.write_text('{"prompt": "fine"}\n# a comment\n' + line + '\n{"prompt": "also fine"}\n')
    out = tmp_path / "clips"

    assert 2 == main(["batch", str(source), "--out", str(out), *service_args(sim)])

    err = capsys.readouterr().err
    assert "line 3: " in err
    if field is not None:
        assert f"line 3: {field}: " in err
    assert fragment in err
    assert 0 == sim.stats.total_requests
    assert not out.exists()


def test_without_an_api_key_batch_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EVOLINK_API_KEY", raising=False)
    source = write_prompts(tmp_path / "p.txt", ["a"])
    assert 2 == main(["batch", str(source), "--out", str(tmp_path / "out")])
    assert "no API key" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert 2 == main(["batch", "p.txt"])  # --out is required
    assert 2 == main(["batch", "p.txt", "--out", "x", "--concurrency", "0"])
    assert 2 == main(["frobnicate"])
    assert 0 == main(["--help"])
    assert "batch" in capsys.readouterr().out


def test_a_batch_on_a_locked_directory_exits_2_with_the_lock_message(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_prompts(tmp_path / "p.txt", ["a", "b"])
    out = tmp_path / "clips"
    with Journal.open(out):
        assert 2 == main(["batch", str(source), "--out", str(out), *service_args(sim)])
    assert "another evolink-async batch is running on" in capsys.readouterr().err
    assert 0 == sim.stats.total_requests


def test_failed_prompts_make_the_batch_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    knobs = {"time_scale": TIME_SCALE, "api_key": KEY, "fatal_failure_rate": 0.5, "seed": 2}
    with ThreadedSimulator(**knobs) as sim:
        source = write_prompts(tmp_path / "p.txt", [f"maybe {i}" for i in range(10)])
        out = tmp_path / "clips"
        assert 1 == main(
            ["batch", str(source), "--out", str(out), "--rate", "500", *service_args(sim)]
        )
    manifest = read_manifest(out)
    failed = [e for e in manifest if e["status"] == "failed"]
    assert failed
    text = capsys.readouterr().out
    assert f"line {failed[0]['line']}: failed" in text


def test_prompts_can_come_from_stdin(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = ['{"prompt": "from stdin", "duration": 8}', "", '{"prompt": "second"}']
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(rows) + "\n"))
    out = tmp_path / "clips"
    assert 0 == main(["batch", "-", "--out", str(out), "-q", *service_args(sim)])
    manifest = read_manifest(out)
    assert [(1, "from stdin"), (3, "second")] == [(e["line"], e["prompt"]) for e in manifest]
    assert 8 == sim.tasks[manifest[0]["task_id"]].duration


@pytest.mark.parametrize("rich", [True, False], ids=["rich", "plain"])
def test_a_terminal_gets_the_rich_display_or_plain_lines_without_rich(
    sim: Simulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    rich: bool,
) -> None:
    monkeypatch.setattr(cli, "_is_tty", lambda stream: True)
    monkeypatch.setattr(cli, "_rich_available", lambda: rich)
    source = write_prompts(tmp_path / "p.txt", [f"shown {i}" for i in range(5)])
    out = tmp_path / "clips"
    assert 0 == main(["batch", str(source), "--out", str(out), "--rate", "500", *service_args(sim)])
    text = capsys.readouterr().out
    assert "Batch summary" in text
    assert ("5/5 done" not in text) == rich  # the plain lines say "N/M done"
    assert "completed" in text
    assert KEY not in text


def test_the_readme_command_runs_as_a_process_with_the_embedded_simulator(
    tmp_path: Path,
) -> None:
    out = tmp_path / "clips"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "evolink_async",
            "batch",
            "examples/prompts.txt",
            "--out",
            str(out),
            "--simulate",
        ],
        cwd=REPO,
        env=fast_client_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert 0 == result.returncode, result.stderr
    assert "Batch summary:" in result.stdout
    prompts = [
        s.strip()
        for s in (REPO / "examples" / "prompts.txt").read_text().splitlines()
        if s.strip() and not s.startswith("#")
    ]
    manifest = read_manifest(out)
    assert prompts == [e["prompt"] for e in manifest]
    assert {"completed"} == {e["status"] for e in manifest}
    assert len(prompts) == len(list(out.glob("*.mp4")))


# ----------------------------------------------------------------------------- crash, Ctrl-C


def wait_for_records(journal: Path, event: str, count: int, proc: subprocess.Popen[str]) -> None:
    """Poll the journal until it has ``count`` records of ``event`` (bounded loop)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if journal.exists():
            lines = journal.read_text().splitlines()
            if sum(f'"event":"{event}"' in raw for raw in lines) >= count:
                return
        time.sleep(0.01)
    pytest.fail(f"no {count} {event!r} records in the journal within 30 s")


def start_batch(source: Path, out: Path, sim: Simulator, *extra: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "evolink_async", "batch", str(source), "--out", str(out)]
    return subprocess.Popen(
        [*argv, "--concurrency", "6", "--rate", "200", *service_args(sim), *extra],
        cwd=REPO,
        env=fast_client_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigkill_mid_run_then_rerun_creates_no_prompt_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Slow clips (about 0.3 to 1.5 s each), so that tasks are in flight when the kill comes.
    with ThreadedSimulator(time_scale=0.005, api_key=KEY, seed=9) as sim:
        prompts = [f"crash {i}: waves on a beach" for i in range(24)]
        source = write_prompts(tmp_path / "p.txt", prompts)
        out = tmp_path / "clips"
        proc = start_batch(source, out, sim)
        try:
            wait_for_records(out / "journal.jsonl", "created", 4, proc)
            # Meanwhile, a second batch on the same directory is refused.
            assert 2 == main(["batch", str(source), "--out", str(out), *service_args(sim)])
            assert "another evolink-async batch is running" in capsys.readouterr().err
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(timeout=30)
            assert proc.stdout is not None
            assert proc.stderr is not None
            proc.stdout.close()
            proc.stderr.close()
        assert -signal.SIGKILL == proc.returncode
        at_kill = replay(out)
        intent_only = {n for n, s in at_kill.items() if s.phase == "intent"}
        running = {n: s.task_id for n, s in at_kill.items() if s.phase == "created"}
        assert running  # tasks were in flight at the kill: the rerun must re-attach them

        code = main(["batch", str(source), "--out", str(out), "--rate", "200", *service_args(sim)])

        manifest = check_complete(out, prompts)
        statuses = {e["line"]: e["status"] for e in manifest}
        assert intent_only == {n for n, s in statuses.items() if s == "unknown"}
        assert {"completed"} == {s for n, s in statuses.items() if n not in intent_only}
        assert (1 if intent_only else 0) == code
        assert {1} == set(sim.stats.creates_per_prompt.values())
        assert running == {n: e["task_id"] for n, e in enumerate(manifest, 1) if n in running}
    captured = capsys.readouterr()
    assert KEY not in captured.out + captured.err


def test_ctrl_c_writes_journal_and_manifest_exits_130_and_the_rerun_finishes(
    tmp_path: Path,
) -> None:
    with ThreadedSimulator(time_scale=0.005, api_key=KEY, seed=4) as sim:
        prompts = [f"interrupt {i}: a train at night" for i in range(24)]
        source = write_prompts(tmp_path / "p.txt", prompts)
        out = tmp_path / "clips"
        proc = start_batch(source, out, sim)
        wait_for_records(out / "journal.jsonl", "created", 4, proc)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)

        assert 130 == proc.returncode, stderr
        assert "interrupted" in stderr
        assert "Batch interrupted:" in stdout
        assert KEY not in stdout + stderr
        manifest = check_complete(out, prompts)
        pending = [e for e in manifest if e["status"] != "completed"]
        assert pending
        assert {"interrupted"} == {e["error"]["code"] for e in pending}

        assert 0 == main(
            [
                "batch",
                str(source),
                "--out",
                str(out),
                "--rate",
                "200",
                "--quiet",
                *service_args(sim),
            ]
        )
        assert {"completed"} == {e["status"] for e in check_complete(out, prompts)}
        assert {1} == set(sim.stats.creates_per_prompt.values())


def test_a_second_ctrl_c_exits_at_once_and_leaves_a_readable_journal(tmp_path: Path) -> None:
    with ThreadedSimulator(time_scale=0.005, api_key=KEY, seed=6) as sim:
        prompts = [f"twice {i}" for i in range(24)]
        source = write_prompts(tmp_path / "p.txt", prompts)
        out = tmp_path / "clips"
        proc = start_batch(source, out, sim)
        wait_for_records(out / "journal.jsonl", "created", 2, proc)
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
        assert 130 == proc.returncode
        replay(out)  # no JournalCorruptError
        assert 0 == main(
            [
                "batch",
                str(source),
                "--out",
                str(out),
                "--rate",
                "200",
                "--quiet",
                "--retry-unknown",
                *service_args(sim),
            ]
        )
        check_complete(out, prompts)
        assert max(sim.stats.creates_per_prompt.values()) <= 2


# ----------------------------------------------------------------------------- other commands


def test_generate_then_status_then_credits(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "boat.mp4"
    code = main(
        [
            "generate",
            "A paper boat on a river",
            "--duration",
            "8",
            "-o",
            str(target),
            *service_args(sim),
        ]
    )
    assert 0 == code
    assert b"ftyp" == target.read_bytes()[4:8]
    out = capsys.readouterr().out
    task_id = next(w for w in out.split() if w.startswith("task-unified-"))
    assert f"saved {target}" in out

    assert 0 == main(["status", task_id, "--json", *service_args(sim)])
    status = json.loads(capsys.readouterr().out)
    assert (task_id, "completed", 100) == (status["id"], status["status"], status["progress"])

    assert 0 == main(["status", task_id, *service_args(sim)])
    assert "completed" in capsys.readouterr().out

    assert 0 == main(["credits", "--json", *service_args(sim)])
    assert json.loads(capsys.readouterr().out)["remaining"] > 0

    assert 2 == main(["status", "not-a-task", *service_args(sim)])
    assert 1 == main(["status", "task-unified-1-abcdefgh", *service_args(sim)])
    captured = capsys.readouterr()
    assert KEY not in captured.out + captured.err


def test_generate_refuses_an_invalid_request_before_sending(
    sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert 2 == main(["generate", "x", "--duration", "5", *service_args(sim)])
    assert "duration" in capsys.readouterr().err
    assert 0 == sim.stats.total_requests


def test_generate_with_the_embedded_simulator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert 0 == main(["generate", "a quick one", "--simulate", "-q", "-o", str(tmp_path)])
    [saved] = list(tmp_path.glob("*.mp4"))
    assert str(saved) == capsys.readouterr().out.strip()


def test_simulate_serves_until_interrupted(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "evolink_async", "simulate", "--port", "0"],
        cwd=REPO,
        env=fast_client_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "serving on http://127.0.0.1:" in first
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert 0 == proc.returncode


# ----------------------------------------------------------------------------- callbacks


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_batch_with_callbacks_on_the_embedded_simulator_needs_about_one_get_per_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    started: list[Simulator] = []

    class Recorded(Simulator):  # the embedded simulator, kept for its stats
        async def start(self) -> Simulator:
            started.append(self)
            return await super().start()

    monkeypatch.setattr(testing, "Simulator", Recorded)
    monkeypatch.setenv("EVOLINK_CALLBACK_SECRET", "cli-test-callback-secret-0123456789")
    prompts = [f"called back {i}" for i in range(8)]
    source = write_prompts(tmp_path / "p.txt", prompts)
    out = tmp_path / "clips"
    port = free_port()
    argv = ["batch", str(source), "--out", str(out), "--simulate", "--no-download"]
    hook = [
        *("--callback-url", f"http://127.0.0.1:{port}/evolink"),
        *("--listen", f"127.0.0.1:{port}"),
    ]

    assert 0 == main([*argv, *hook])

    assert {"completed"} == {e["status"] for e in check_complete(out, prompts)}
    [sim] = started
    assert sim.config.allow_insecure_callbacks
    # every task was called back at the receiver (the URL, the port, the secret all right)...
    assert len(prompts) == sim.stats.callbacks.delivered
    urls = {a.task_id: sim.tasks[a.task_id].callback_url for a in sim.stats.callbacks.attempts}
    assert {f"http://127.0.0.1:{port}/evolink/cli-test-callback-secret-0123456789"} == set(
        urls.values()
    )
    # ...and a callback's confirming GET is about all the polling a task needed
    assert sim.stats.count("get_task") / len(prompts) < 1.5
    text = capsys.readouterr().out
    assert f"callbacks: http://127.0.0.1:{port}/evolink/<secret>" in text
    assert "cli-test-callback-secret" not in text


def test_callback_flags_usage_errors_exit_2_and_send_nothing(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_prompts(tmp_path / "p.txt", ["a", "b"])
    out = tmp_path / "clips"
    batch = ["batch", str(source), "--out", str(out)]
    url = "https://bot.example.com/evolink"
    cases = [
        (["--listen", "127.0.0.1:8080", *service_args(sim)], "--listen needs --callback-url"),
        (["--callback-url", url, "--listen", "8080", *service_args(sim)], "HOST:PORT"),
        (["--callback-url", "http://127.0.0.1:8080/cb", *service_args(sim)], "https"),
        (["--callback-url", "http://example.com/cb", "--simulate"], "on loopback"),
    ]
    for extra, message in cases:
        assert 2 == main([*batch, *extra])
        assert message in capsys.readouterr().err
    assert 0 == sim.stats.total_requests
    assert not out.exists()
