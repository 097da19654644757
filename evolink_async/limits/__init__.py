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

``RedisLimits`` (:mod:`.redis_limits`)
    The same limits shared by every process on one API key, through Redis; the interface
    both backends offer is in :mod:`.backend`.
"""

from ..errors import BudgetExceededError
from ._common import Estimator
from .backend import Budget, Hold, Permit, RateGate, SharedLimitsError, SlotLimit
from .bundle import Limits, LimitSettings, Throttle
from .charges import ABSURD_CREDITS, LearnedPrices, final_charge, service_figure
from .concurrency import ConcurrencyLimit, ConcurrencyPermit
from .credits import DEFAULT_PRICES, CreditBudget, PriceTable, Reservation, ReservationState
from .rate import RateLimiter, RateSlot
from .redis_limits import RedisLimits
from .select import build_limits

__all__ = [
    "ABSURD_CREDITS",
    "DEFAULT_PRICES",
    "Budget",
    "BudgetExceededError",
    "ConcurrencyLimit",
    "ConcurrencyPermit",
    "CreditBudget",
    "Estimator",
    "Hold",
    "LearnedPrices",
    "LimitSettings",
    "Limits",
    "Permit",
    "PriceTable",
    "RateGate",
    "RateLimiter",
    "RateSlot",
    "RedisLimits",
    "Reservation",
    "ReservationState",
    "SharedLimitsError",
    "SlotLimit",
    "Throttle",
    "build_limits",
    "final_charge",
    "service_figure",
]
