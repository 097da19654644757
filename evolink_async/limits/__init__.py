"""The limits one client keeps for the whole process: request rate, tasks in flight, credits.

Each class works alone and shows its live state in its ``repr``:

``RateLimiter`` (:mod:`.rate`)
    A token bucket (in GCRA form) shared by every request of a client, paused and slowed down
    by 429s, recovering additively (AIMD).

``ConcurrencyLimit`` (:mod:`.concurrency`)
    How many generation tasks may be pending or processing at once; shrinks on "too many
    concurrent tasks" and grows back slowly.

``CreditBudget`` (:mod:`.credits`)
    Credits reserved before a create (from a :class:`PriceTable` or an :data:`Estimator`),
    settled with the service's figure, then committed or released.

``Limits`` (:mod:`.bundle`)
    The three as the transport's gate: one place where a 429 is handled.
"""

from ..errors import BudgetExceededError
from ._common import Estimator
from .bundle import Limits, Throttle
from .charges import ABSURD_CREDITS, LearnedPrices, final_charge, service_figure
from .concurrency import ConcurrencyLimit, ConcurrencyPermit
from .credits import DEFAULT_PRICES, CreditBudget, PriceTable, Reservation, ReservationState
from .rate import RateLimiter, RateSlot

__all__ = [
    "ABSURD_CREDITS",
    "DEFAULT_PRICES",
    "BudgetExceededError",
    "ConcurrencyLimit",
    "ConcurrencyPermit",
    "CreditBudget",
    "Estimator",
    "LearnedPrices",
    "Limits",
    "PriceTable",
    "RateLimiter",
    "RateSlot",
    "Reservation",
    "ReservationState",
    "Throttle",
    "final_charge",
    "service_figure",
]
