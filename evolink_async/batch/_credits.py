"""A batch and the account's credits: the check before a run starts, and the reason a run
stopped creating when the service refused a create with a 402."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..errors import (
    APIConnectionError,
    APIError,
    DailyQuotaExceededError,
    DecodeError,
    EvolinkError,
    InsufficientCreditsError,
    KeyQuotaExceededError,
    ServiceUnreachableError,
)
from .ledger import Ledger

if TYPE_CHECKING:
    from ..client import EvolinkClient

__all__ = ["CreditsShortError", "check_credits", "quota_stop"]

logger = logging.getLogger("evolink_async")


class CreditsShortError(EvolinkError):
    """The balance (or the key's remaining limit) cannot pay for the whole batch at the known
    prices. Raised before anything is sent; ``--allow-partial`` runs the batch anyway."""

    def __init__(self, needed: float, balance: float) -> None:
        self.needed = needed
        self.balance = balance
        super().__init__(
            f"this batch needs about {needed:g} credits; the balance is {balance:g} "
            "(top up, or pass --allow-partial to make what the balance pays for)"
        )


async def check_credits(client: EvolinkClient, ledger: Ledger, lines: Iterable[int]) -> None:
    """Read the credits once and raise :class:`CreditsShortError` when what ``lines`` cost at
    the known prices exceeds them (lines of unknown price count 0: the figure is a floor).
    When the credits cannot be read, the run goes on (a 402 still stops it) with a warning,
    unless the service cannot be reached by a client that never reached it: that is raised."""
    needed = round(sum(ledger[line].price for line in lines), 4)
    if needed <= 0:
        return
    try:
        available = (await client.get_credits()).available
    except ServiceUnreachableError as exc:
        if not client.dispatcher.reached:
            raise
        logger.warning("could not read the credits before the batch (%s): starting anyway", exc)
        return
    except (APIError, APIConnectionError, DecodeError) as exc:
        logger.warning("could not read the credits before the batch (%s): starting anyway", exc)
        return
    if available is not None and needed > available + 1e-9:
        raise CreditsShortError(needed, round(available, 4))


def quota_stop(exc: InsufficientCreditsError) -> tuple[str, str]:
    """(code, reason) for the lines a 402 leaves unsent (the manifest's ``skipped``)."""
    if isinstance(exc, DailyQuotaExceededError):
        zone = exc.reset_timezone or "the account's time zone"
        return (
            "daily_quota_exceeded",
            f"the API key's daily credit limit is reached; it resets at midnight ({zone}): "
            "run the same command again after the reset",
        )
    if isinstance(exc, KeyQuotaExceededError):
        return (
            "key_quota_exceeded",
            "the API key's credit limit is reached: raise it, then run the same command again",
        )
    return (
        "insufficient_credits",
        "the account's balance is used up: top up, then run the same command again",
    )
