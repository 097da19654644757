"""``evolink-async simulate``: serve a local simulator until Ctrl-C."""

from __future__ import annotations

import argparse

from .app import EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, Interrupts, err, run

__all__ = ["simulate_command"]


def simulate_command(args: argparse.Namespace) -> int:
    from ..testing.cli import serve, simulator_kwargs_from_args  # noqa: PLC0415

    try:
        kwargs = simulator_kwargs_from_args(args)
    except (ValueError, TypeError) as exc:
        err(str(exc))
        return EXIT_USAGE

    async def command(interrupts: Interrupts) -> int:
        scope = interrupts.cancel_scope("stopping the simulator")
        try:
            with scope:
                await serve(**kwargs)
        except (ValueError, TypeError) as exc:  # a knob the config refuses
            err(str(exc))
            return EXIT_USAGE
        except OSError as exc:  # e.g. the port is taken
            err(str(exc))
            return EXIT_SOME_FAILED
        return EXIT_OK

    return run(command)
