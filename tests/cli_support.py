"""Helpers of the command line's tests (tests/test_cli_*.py): a simulator served from a thread
of the test process, the flags that reach it, and checks of a batch's output directory."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mp4_support import served_clip

from evolink_async.batch import MANIFEST_FILENAME, video_filename
from evolink_async.journal import replay
from evolink_async.testing import Simulator, ThreadedSimulator

__all__ = [
    "KEY",
    "REPO",
    "TIME_SCALE",
    "check_complete",
    "fast_client_env",
    "read_manifest",
    "service_args",
    "sim_fixture",
    "write_prompts",
]

REPO = Path(__file__).resolve().parent.parent
KEY = "sk-evo-cli-test-secret-0123456789"
TIME_SCALE = 0.001


@pytest.fixture(name="sim")
def sim_fixture() -> Iterator[Simulator]:
    """A simulator served from a thread of the test process (import it to use it as ``sim``)."""
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
    """One manifest line per prompt, in order; for each video, its task's clip, whole, of the
    journaled size."""
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
        served = served_clip(entry["task_id"], data)  # the task's own clip, whole
        assert (served, len(served)) == (data, state[entry["line"]].size)
    return manifest


def write_prompts(path: Path, prompts: list[str]) -> Path:
    path.write_text("\n".join(prompts) + "\n", encoding="utf-8")
    return path
