"""A faithful local Evolink server, to develop and test against without spending credits.

    async with Simulator(time_scale=0.01, failure_rate=0.1) as sim:
        ...  # point a client at sim.base_url with sim.api_key; look at sim.stats

Tests can step time by hand: ``Simulator(clock=ManualClock())`` and ``sim.advance(seconds)``.
The pytest fixtures live in :mod:`evolink_async.testing.pytest_plugin`; the shell entry point
is ``python -m evolink_async.testing``.
"""

from ._catalog import (
    DEFAULT_FAILURE_CODES,
    DEFAULT_MODELS,
    FATAL_TASK_ERRORS,
    RETRYABLE_TASK_ERRORS,
    ModelSpec,
)
from ._clock import Clock, ManualClock, ScaledClock
from ._config import DEFAULT_API_KEY, SimulatorConfig
from ._listen import Listener
from ._server import Simulator
from ._stats import CallbackAttempt, CallbackStats, SimulatorStats
from ._task import SimulatedTask
from ._threaded import ThreadedSimulator

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_FAILURE_CODES",
    "DEFAULT_MODELS",
    "FATAL_TASK_ERRORS",
    "RETRYABLE_TASK_ERRORS",
    "CallbackAttempt",
    "CallbackStats",
    "Clock",
    "Listener",
    "ManualClock",
    "ModelSpec",
    "ScaledClock",
    "SimulatedTask",
    "Simulator",
    "SimulatorConfig",
    "SimulatorStats",
    "ThreadedSimulator",
]
