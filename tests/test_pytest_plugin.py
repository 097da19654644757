"""The pytest plugin as a user runs it: its documented examples in a project of their own, in
pytest-asyncio's strict mode (a pytest subprocess, away from this repository's settings)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_CONFTEST = 'pytest_plugins = ["evolink_async.testing.pytest_plugin"]\n'
_INI = """[pytest]
asyncio_mode = strict
asyncio_default_fixture_loop_scope = function
filterwarnings = error
"""
_TESTS = """
import aiohttp
import pytest

from evolink_async import EvolinkClient
from evolink_async.testing import Simulator


@pytest.mark.asyncio
async def test_bot(evolink_simulator: Simulator) -> None:
    headers = {"Authorization": f"Bearer {evolink_simulator.api_key}"}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{evolink_simulator.base_url}/v1/credits", headers=headers) as r:
            assert 200 == r.status


@pytest.mark.asyncio
async def test_limits(make_simulator) -> None:
    sim = await make_simulator(rate_limit=2, max_concurrent=3)
    async with EvolinkClient(sim.api_key, sim.base_url, time_scale=sim.config.time_scale) as c:
        task = await c.wait(await c.create_video(prompt="a strict test", duration=4))
    assert "completed" == task.status
    assert 3 == sim.config.max_concurrent


def test_strict_mode_is_on(pytestconfig) -> None:
    assert "strict" == pytestconfig.getini("asyncio_mode")
"""


def test_the_plugin_examples_pass_in_pytest_asyncio_strict_mode(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text(_INI)
    (tmp_path / "conftest.py").write_text(_CONFTEST)
    (tmp_path / "test_user.py").write_text(_TESTS)

    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert 0 == done.returncode, done.stdout[-3000:] + done.stderr[-2000:]
    assert "3 passed" in done.stdout
