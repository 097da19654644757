"""``evolink-async batch``: in-process through ``main(argv)`` and as a real process
(``python -m evolink_async``), against a simulator served from a thread of the test process."""

from __future__ import annotations

import contextlib
import io
import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cli_support import (
    KEY,
    REPO,
    TIME_SCALE,
    check_complete,
    fast_client_env,
    read_manifest,
    service_args,
    sim_fixture,  # noqa: F401 - the ``sim`` fixture
    write_prompts,
)

from evolink_async import testing
from evolink_async.cli import main
from evolink_async.journal import Journal
from evolink_async.testing import Simulator, ThreadedSimulator


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
        ('{"prompt": "\\u0000"}', "prompt", "control character U+0000"),
        ('{"prompt": "nul \x00 raw"}', None, "control character U+0000"),
        ('{"prompt": "a", "prompt": "b"}', "prompt", "duplicate key 'prompt'"),
        ("[" * 100_000 + "]" * 100_000, None, "nested deeper than 32 levels"),
    ],
    ids=[
        "bad-json",
        "duration-5",
        "prompt-6000",
        "http-callback",
        "escaped-nul",
        "raw-nul",
        "duplicate-key",
        "nested-100k",
    ],
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

    captured = capsys.readouterr()
    err = captured.err
    assert "" == captured.out  # no progress output before the input is known good
    assert "Traceback" not in err
    assert "line 3: " in err
    if field is not None:
        assert f"line 3: {field}: " in err
    assert fragment in err
    assert 0 == sim.stats.total_requests
    assert not out.exists()


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_a_utf16_file_without_a_bom_exits_2_before_any_request(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str], codec: str
) -> None:
    source = tmp_path / "p.txt"
    source.write_bytes("a cat\na dog\n".encode(codec))
    out = tmp_path / "clips"

    assert 2 == main(["batch", str(source), "--out", str(out), *service_args(sim)])

    captured = capsys.readouterr()
    assert "" == captured.out
    assert "UTF-16 without a byte-order mark" in captured.err
    assert 0 == sim.stats.total_requests
    assert not out.exists()


def test_duplicate_prompts_are_reported_in_the_summary_and_each_is_made(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = ["a kite", "a boat", "a kite", "a kite", "a boat", "a train"]
    source = write_prompts(tmp_path / "p.txt", prompts)
    out = tmp_path / "clips"

    assert 0 == main(["batch", str(source), "--out", str(out), *service_args(sim)])

    check_complete(out, prompts)
    text = capsys.readouterr().out
    assert "duplicate prompts  3 (lines 3, 4 repeat line 1; line 5 repeats line 2)" in text


def test_without_an_api_key_batch_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EVOLINK_API_KEY", raising=False)
    source = write_prompts(tmp_path / "p.txt", ["a"])
    assert 2 == main(["batch", str(source), "--out", str(tmp_path / "out")])
    assert "no API key" in capsys.readouterr().err


def test_a_batch_on_a_locked_directory_exits_2_with_the_lock_message(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_prompts(tmp_path / "p.txt", ["a", "b"])
    out = tmp_path / "clips"
    with Journal.open(out):
        assert 2 == main(["batch", str(source), "--out", str(out), *service_args(sim)])
    assert "another evolink-async batch is running on" in capsys.readouterr().err
    assert 0 == sim.stats.total_requests


def test_a_misspelled_field_in_a_prompt_file_is_refused_with_its_line_and_the_field_meant(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "p.jsonl"
    rows = [{"prompt": "fine", "duration": 4}, {"prompt": "a fox", "durration": 8}]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "clips"
    assert 2 == main(["batch", str(source), "--out", str(out), *service_args(sim)])
    captured = capsys.readouterr()
    assert "" == captured.out
    assert "line 2" in captured.err
    assert "durration" in captured.err
    assert "did you mean 'duration'?" in captured.err
    assert 0 == sim.stats.total_requests
    assert not out.exists()


def test_out_naming_a_file_exits_2_before_any_output(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_prompts(tmp_path / "p.txt", ["a", "b"])
    out = tmp_path / "a-file"
    out.write_text("not a directory")
    assert 2 == main(["batch", str(source), "--out", str(out), *service_args(sim)])
    captured = capsys.readouterr()
    assert "" == captured.out
    assert f"--out {out}: cannot be used as the output directory" in captured.err
    assert 0 == sim.stats.total_requests


@pytest.mark.parametrize("cause", ["locked", "other prompts"])
def test_a_directory_that_cannot_take_this_batch_is_refused_before_any_output(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str], cause: str
) -> None:
    out = tmp_path / "clips"
    first = write_prompts(tmp_path / "first.txt", ["first"])
    if cause == "other prompts":
        assert 0 == main(["batch", str(first), "--out", str(out), "--quiet", *service_args(sim)])
    capsys.readouterr()
    requests = sim.stats.total_requests
    source = write_prompts(tmp_path / "p.txt", ["second"])
    with Journal.open(out) if cause == "locked" else contextlib.nullcontext():
        assert 2 == main(["batch", str(source), "--out", str(out), *service_args(sim)])
    captured = capsys.readouterr()
    assert "" == captured.out
    assert captured.err.strip()
    assert requests == sim.stats.total_requests


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


@pytest.mark.parametrize(
    "case",
    [
        (["--listen", "127.0.0.1:8080"], False, "--listen needs --callback-url"),
        (
            ["--callback-url", "https://bot.example.com/evolink", "--listen", "8080"],
            False,
            "HOST:PORT",
        ),
        (["--callback-url", "http://127.0.0.1:8080/cb"], False, "https"),
        (["--callback-url", "http://example.com/cb", "--simulate"], True, "on loopback"),
    ],
    ids=["listen-alone", "listen-port-only", "http-real-service", "http-simulate-public-host"],
)
def test_callback_flags_usage_errors_exit_2_and_send_nothing(
    sim: Simulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    case: tuple[list[str], bool, str],
) -> None:
    extra, simulated, message = case
    source = write_prompts(tmp_path / "p.txt", ["a", "b"])
    out = tmp_path / "clips"
    batch = ["batch", str(source), "--out", str(out)]
    assert 2 == main([*batch, *extra, *([] if simulated else service_args(sim))])
    assert message in capsys.readouterr().err
    assert 0 == sim.stats.total_requests
    assert not out.exists()


def test_retry_failed_on_the_command_line_sends_the_failed_lines_again(tmp_path: Path) -> None:
    knobs: dict[str, Any] = {"fatal_failure_rate": 0.3, "seed": 11}
    with ThreadedSimulator(time_scale=TIME_SCALE, api_key=KEY, **knobs) as sim:
        prompts = [f"fragile {i}" for i in range(12)]
        source = write_prompts(tmp_path / "p.txt", prompts)
        out = tmp_path / "clips"
        argv = [
            "batch",
            str(source),
            "--out",
            str(out),
            "--max-attempts",
            "1",
            "--rate",
            "500",
            "-q",
        ]
        assert 1 == main([*argv, *service_args(sim)])  # some lines failed
        failed = {e["prompt"] for e in read_manifest(out) if e["status"] == "failed"}
        assert failed
        main([*argv, "--retry-failed", *service_args(sim)])
        creates = dict(sim.stats.creates_per_prompt)
    assert {p: 2 if p in failed else 1 for p in prompts} == creates
