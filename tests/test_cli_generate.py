"""``evolink-async generate``: one clip, created, followed and downloaded."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_support import (
    service_args,
    sim_fixture,  # noqa: F401 - the ``sim`` fixture
)

from evolink_async.cli import main
from evolink_async.testing import Simulator


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
