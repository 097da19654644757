"""pytest fixtures for the simulator.

Install them with ``pip install 'evolink-async[testing]'`` (pytest and pytest-asyncio) and
enable them with ``pytest_plugins = ["evolink_async.testing.pytest_plugin"]`` in a root
``conftest.py`` (or ``-p evolink_async.testing.pytest_plugin``). The fixtures are
``pytest_asyncio`` fixtures, so they work in pytest-asyncio's strict mode (its default: mark
each async test) as in auto mode::

    import pytest

    @pytest.mark.asyncio
    async def test_bot(evolink_simulator):
        client = MyClient(base_url=evolink_simulator.base_url, api_key=evolink_simulator.api_key)

    @pytest.mark.asyncio
    async def test_limits(make_simulator):
        sim = await make_simulator(rate_limit=2, max_concurrent=3)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

try:
    import pytest_asyncio
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "evolink_async.testing.pytest_plugin needs pytest-asyncio: "
        "pip install 'evolink-async[testing]'"
    ) from exc

from ._config import SimulatorConfig
from ._server import Simulator

__all__ = ["FAST_TIME_SCALE", "SimulatorFactory", "evolink_simulator", "make_simulator"]

#: The fixtures' time_scale: a "300 s" generation takes 0.3 real seconds.
FAST_TIME_SCALE = 0.001


class SimulatorFactory(Protocol):
    """``await make_simulator(config=None, **knobs)``: a started Simulator, closed at teardown."""

    async def __call__(self, config: SimulatorConfig | None = None, /, **knobs: Any) -> Simulator:
        """Start one; without a config, ``time_scale`` defaults to FAST_TIME_SCALE."""
        ...


@pytest_asyncio.fixture
async def evolink_simulator() -> AsyncIterator[Simulator]:
    """A started simulator with default knobs and a fast clock (FAST_TIME_SCALE)."""
    async with Simulator(time_scale=FAST_TIME_SCALE) as sim:
        yield sim


@pytest_asyncio.fixture
async def make_simulator() -> AsyncIterator[SimulatorFactory]:
    """A factory of started simulators with custom knobs; all closed at teardown."""
    started: list[Simulator] = []

    async def make(config: SimulatorConfig | None = None, /, **knobs: Any) -> Simulator:
        if config is None:
            knobs.setdefault("time_scale", FAST_TIME_SCALE)
        sim = await Simulator(config, **knobs).start()
        started.append(sim)
        return sim

    yield make
    for sim in reversed(started):
        await sim.close()
