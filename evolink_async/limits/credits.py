"""Credits: reserved before a create, settled with the service's figure, then committed or
released. Reservations never exceed the budget, whatever the number of creates in flight;
a service figure above the estimate is recorded as it is (the README says what that bounds).

Prices come from a :class:`PriceTable` or a user :data:`Estimator`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final, Literal, TypeAlias

import anyio
import anyio.lowlevel

from ..errors import BudgetExceededError
from ..models import DEFAULT_PRICES, MODEL_SPECS
from ._common import EPS, Estimator, fmt

__all__ = [
    "DEFAULT_PRICES",
    "CreditBudget",
    "Estimator",
    "PriceTable",
    "Reservation",
    "ReservationState",
]


#: the duration a create without one gets, for each model with published prices
_DEFAULT_DURATIONS: Final[Mapping[str, int]] = {
    name: spec.default_duration
    for name, spec in MODEL_SPECS.items()
    if spec.prices and spec.default_duration is not None
}


class PriceTable:
    """Credits a create costs, by model and duration; ``None`` when the price is not known.

    A price table is also an :data:`Estimator`: ``table(model, duration, extra)``.
    """

    __slots__ = ("_default_durations", "_prices")

    def __init__(
        self,
        prices: Mapping[str, Mapping[int, float]] | None = None,
        default_durations: Mapping[str, int] | None = None,
    ) -> None:
        source = DEFAULT_PRICES if prices is None else prices
        self._prices = {model: dict(by_duration) for model, by_duration in source.items()}
        defaults = _DEFAULT_DURATIONS if default_durations is None else default_durations
        self._default_durations = dict(defaults)
        for model, by_duration in self._prices.items():
            for duration, credits in by_duration.items():
                if math.isnan(credits) or credits < 0:
                    raise ValueError(f"price of {model} {duration} s must be >= 0: {credits!r}")

    def price(self, model: str, duration: int | None = None) -> float | None:
        """Credits for ``model`` at ``duration`` seconds (None: the model's default)."""
        by_duration = self._prices.get(model)
        if by_duration is None:
            return None
        if duration is None:
            duration = self._default_durations.get(model)
            if duration is None:
                return None
        return by_duration.get(duration)

    @property
    def models(self) -> frozenset[str]:
        """The models with at least one known price."""
        return frozenset(self._prices)

    def __call__(
        self, model: str, duration: int | None, extra: Mapping[str, Any] | None = None
    ) -> float | None:
        """The :data:`Estimator` form; ``extra`` fields do not change a listed price."""
        return self.price(model, duration)

    def __repr__(self) -> str:
        return f"<PriceTable {self._prices!r}>"


ReservationState: TypeAlias = Literal["open", "committed", "released"]


class Reservation:
    """Credits held in a :class:`CreditBudget` for one create.

    :meth:`settle` it with the service's ``usage.credits_reserved``, then :meth:`commit` it
    (the task completed) or :meth:`release` it (it failed). Closing is idempotent: the first
    of ``commit``/``release`` wins, the later calls do nothing.
    """

    __slots__ = ("_amount", "_budget", "_estimate", "_state")

    def __init__(self, budget: CreditBudget, amount: float) -> None:
        self._budget = budget
        self._amount = amount
        self._estimate = amount
        self._state: ReservationState = "open"

    @property
    def amount(self) -> float:
        """Credits held now: the estimate, or what :meth:`settle` set."""
        return self._amount

    @property
    def estimate(self) -> float:
        """The amount first reserved."""
        return self._estimate

    @property
    def state(self) -> ReservationState:
        """``"open"``, ``"committed"`` or ``"released"``."""
        return self._state

    def settle(self, actual: float) -> None:
        """Replace the held amount by the service's figure. No-op once closed.

        An ``actual`` above the estimate is recorded even if the budget then holds more than
        its total; no new reservation fits until it is back under.
        """
        actual = _check_amount(actual)
        if self._state == "open":
            self._budget._resize(self._amount, actual)
            self._amount = actual

    def commit(self) -> None:
        """The task completed: the held credits become spent."""
        if self._state == "open":
            self._state = "committed"
            self._budget._close(self._amount, spend=True)

    def release(self) -> None:
        """The task failed: the credits are freed (or spent, with ``release_on_failure=False``)."""
        if self._state == "open":
            self._state = "released"
            self._budget._close(self._amount, spend=not self._budget._release_on_failure)

    def __repr__(self) -> str:
        return f"<Reservation amount={fmt(self._amount)} {self._state}>"


def _check_amount(amount: float) -> float:
    amount = float(amount)
    if math.isnan(amount) or amount < 0 or math.isinf(amount):
        raise ValueError(f"a credit amount must be a finite number >= 0, got {amount!r}")
    return amount


class CreditBudget:
    """At most ``total`` credits spent or held, whatever the number of creates in flight.

    ``release_on_failure``: whether a failed task's credits come back (the service's
    behaviour is not documented; with ``False``, a released reservation counts as spent).

    :meth:`reserve` waits while open reservations could still be released and make room, and
    raises :class:`BudgetExceededError` as soon as the amount can never fit. Waiters are
    woken on every settle, commit and release; they are not served in order.
    """

    __slots__ = (
        "_changed",
        "_open",
        "_release_on_failure",
        "_reserved",
        "_spent",
        "_total",
        "_waiters",
    )

    def __init__(self, total: float, *, release_on_failure: bool = True) -> None:
        total = float(total)
        if math.isnan(total) or total < 0:
            raise ValueError(f"total must be >= 0, got {total!r}")
        self._total = total
        self._release_on_failure = release_on_failure
        self._spent = 0.0
        self._reserved = 0.0
        self._open = 0
        self._waiters = 0
        self._changed: anyio.Event | None = None

    @property
    def total(self) -> float:
        """The budget."""
        return self._total

    @property
    def spent(self) -> float:
        """Credits of committed reservations (and released ones, without release_on_failure)."""
        return self._spent

    @property
    def reserved(self) -> float:
        """Credits held by open reservations."""
        return self._reserved

    @property
    def available(self) -> float:
        """``total - spent - reserved``; negative only after a settle above the estimate."""
        return self._total - self._spent - self._reserved

    @property
    def release_on_failure(self) -> bool:
        """Whether a released reservation frees its credits."""
        return self._release_on_failure

    @property
    def open_reservations(self) -> int:
        """Reservations neither committed nor released."""
        return self._open

    @property
    def waiters(self) -> int:
        """Tasks waiting in :meth:`reserve`."""
        return self._waiters

    def _fits(self, amount: float) -> bool:
        return self._spent + self._reserved + amount <= self._total + EPS * max(1.0, self._total)

    def _never_fits(self, amount: float) -> bool:
        floor = self._spent if self._release_on_failure else self._spent + self._reserved
        return floor + amount > self._total + EPS * max(1.0, self._total)

    def grow(self, amount: float) -> None:
        """Raise the total by ``amount``: credits counted as spent elsewhere came back (a
        batch's re-attached task failed, so what it held may pay for the line's new create)."""
        self._total += _check_amount(amount)
        self._notify()

    def try_reserve(self, amount: float) -> Reservation | None:
        """Hold ``amount`` credits if they fit now, else ``None``."""
        amount = _check_amount(amount)
        if not self._fits(amount):
            return None
        return self._take(amount)

    async def reserve(self, amount: float) -> Reservation:
        """Hold ``amount`` credits, waiting for open reservations to make room.

        :raises BudgetExceededError: as soon as ``amount`` can never fit.
        """
        amount = _check_amount(amount)
        while True:
            if self._fits(amount):
                await anyio.lowlevel.checkpoint()
                if self._fits(amount):  # still, after the checkpoint
                    return self._take(amount)
                continue
            if self._never_fits(amount):
                held = f", {self._reserved:g} held by tasks in flight" if self._reserved else ""
                raise BudgetExceededError(
                    f"the budget of {self._total:g} credits cannot pay {amount:g} more"
                    f" ({self._spent:g} spent{held})"
                )
            if self._changed is None:
                self._changed = anyio.Event()
            event = self._changed
            self._waiters += 1
            try:
                await event.wait()
            finally:
                self._waiters -= 1

    def _take(self, amount: float) -> Reservation:
        self._reserved += amount
        self._open += 1
        return Reservation(self, amount)

    def _resize(self, old: float, new: float) -> None:
        self._reserved += new - old
        self._notify()

    def _close(self, amount: float, *, spend: bool) -> None:
        self._open -= 1
        self._reserved = 0.0 if self._open == 0 else max(0.0, self._reserved - amount)
        if spend:
            self._spent += amount
        self._notify()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def __repr__(self) -> str:
        return (
            f"<CreditBudget total={fmt(self._total)} spent={fmt(self._spent)}"
            f" reserved={fmt(self._reserved)} available={fmt(self.available)}"
            f" open={self._open} waiters={self._waiters}>"
        )
