"""``evolink-async status`` and ``credits`` (after a ``generate``): one request, one answer."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pytest
from cli_support import (
    KEY,
    service_args,
    sim_fixture,  # noqa: F401 - the ``sim`` fixture
)

from evolink_async._codec import decode_credits, decode_task
from evolink_async.cli import main, tasks
from evolink_async.testing import Simulator


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


def test_tasks_lists_the_account_s_tasks_newest_first(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("fox", "hen"):
        target = tmp_path / f"{name}.mp4"
        assert 0 == main(["generate", f"A {name}", "-o", str(target), *service_args(sim)])
    created = [w for w in capsys.readouterr().out.split() if w.startswith("task-unified-")]
    ids = list(dict.fromkeys(created))

    assert 0 == main(["tasks", "--json", "--since", "2h", *service_args(sim)])
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert list(reversed(ids)) == [t["id"] for t in listed]
    assert {"completed"} == {t["status"] for t in listed}

    assert 0 == main(["tasks", "--status", "processing", *service_args(sim)])
    assert "no tasks" == capsys.readouterr().out.strip()

    assert 0 == main(["tasks", "--limit", "1", *service_args(sim)])
    shown = capsys.readouterr().out.splitlines()
    assert 1 == len(shown)
    assert shown[0].startswith(ids[-1])
    assert "completed 100%" in shown[0]

    assert 2 == main(["tasks", "--since", "soon", *service_args(sim)])
    captured = capsys.readouterr()
    assert "not an age" in captured.err
    assert KEY not in captured.out + captured.err


def test_status_prints_local_times_and_units_for_a_person() -> None:
    task = decode_task(
        {
            "id": "task-unified-1757169743-7cvnl5zw",
            "status": "processing",
            "progress": 40,
            "model": "sora-2-preview",
            "created": 1757169743,
            "task_info": {"estimated_time": 165},
            "usage": {"credits_reserved": 23.04},
        }
    )
    rows = dict(tasks.task_lines(task))
    when = datetime.datetime.fromtimestamp(1757169743).astimezone()
    assert when.strftime("%Y-%m-%d %H:%M:%S") in rows["created"]
    assert ("40 %", "165 s", "23.04") == (
        rows["progress"],
        rows["estimated time"],
        rows["credits reserved"],
    )
    assert "1757169743" not in rows["created"]


@pytest.mark.parametrize(
    ("token", "first"),
    [
        (
            {"remaining_credits": 99.5, "unlimited_credits": False, "used_credits": 10},
            "available: 99.5 credits (about $1.46; this key's own limit)",
        ),
        (
            {"remaining_credits": 0, "unlimited_credits": True, "used_credits": 10},
            "available: 1095.4 credits (about $16.11; the account's balance)",
        ),
    ],
)
def test_credits_prints_one_figure_that_can_be_spent_with_its_meaning(
    token: dict[str, Any], first: str
) -> None:
    credits = decode_credits(
        {
            "success": True,
            "message": "",
            "data": {"token": token, "user": {"remaining_credits": 1095.4, "used_credits": 1}},
        }
    )
    lines = tasks.credits_lines(credits)
    assert first == lines[0]
    assert "account balance: 1095.4 (shared by all its keys)" in lines[1]
    assert lines[2].startswith("  this key: 10 spent")
