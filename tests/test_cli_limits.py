"""``evolink-async batch --redis`` and ``evolink-async limits``, with a real redis-server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_support import KEY, service_args, sim_fixture, write_prompts
from redis_support import redis_server_fixture, redis_url_fixture

from evolink_async.cli import main
from evolink_async.limits.redis_limits import default_namespace
from evolink_async.testing import Simulator

__all__ = ["redis_server_fixture", "redis_url_fixture", "sim_fixture"]


def batch(sim: Simulator, tmp_path: Path, redis_url: str, *extra: str) -> int:
    source = write_prompts(tmp_path / "p.txt", ["a fox", "a crow", "a hare"])
    out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
    argv = ["batch", str(source), "--out", str(out), "--redis", redis_url, "--quiet"]
    return main([*argv, "--no-download", *extra, *service_args(sim)])


def state(redis_url: str, capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, object]:
    capsys.readouterr()
    assert 0 == main(["limits", "--redis", redis_url, "--api-key", KEY, "--json", *extra])
    result: dict[str, object] = json.loads(capsys.readouterr().out)
    return result


def test_a_batch_shares_its_budget_and_a_second_total_is_refused_with_exit_2(
    sim: Simulator, tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert 0 == batch(sim, tmp_path, redis_url, "--budget", "1000")
    shared = state(redis_url, capsys)
    assert default_namespace(KEY) == shared["namespace"]
    assert {"total": 1000.0, "spent": 3 * 23.04, "reserved": 0.0} == {
        k: round(v, 6)
        for k, v in dict(shared["budget"]).items()  # type: ignore[call-overload]
    }
    assert 2 == batch(sim, tmp_path, redis_url, "--budget", "500")
    assert "already has a budget of 1000 credits" in capsys.readouterr().err


def test_limits_shows_the_state_and_resets_only_when_confirmed(
    sim: Simulator, tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert 0 == batch(sim, tmp_path, redis_url, "--budget", "100")
    capsys.readouterr()
    assert 0 == main(["limits", "--redis", redis_url, "--api-key", KEY])
    shown = capsys.readouterr().out
    assert "budget: 100 credits, 69.12 spent, 0 reserved" in shown
    assert KEY not in shown
    # no terminal, no --yes: refused, nothing changed
    assert 2 == main(["limits", "--redis", redis_url, "--api-key", KEY, "--reset-budget"])
    assert "--yes" in capsys.readouterr().err
    assert state(redis_url, capsys)["budget"] is not None
    after = state(redis_url, capsys, "--reset-budget", "--clear-leases", "--yes")
    assert (None, []) == (after["budget"], after["leases"])


def test_an_unreachable_redis_fails_the_batch_clearly(
    sim: Simulator, tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    port = int(redis_url.rsplit(":", 1)[1].split("/", maxsplit=1)[0])
    assert 1 == batch(sim, tmp_path, f"redis://127.0.0.1:{port + 1}/0")
    assert "cannot be reached" in capsys.readouterr().err
    assert 0 == sim.stats.count("create")
