"""What an operator does with a namespace of :class:`~.redis_limits.RedisLimits`: read the
shared state, reset the budget, clear the leases (``evolink-async limits``)."""

from __future__ import annotations

from typing import Any

from ..errors import redact_url
from ._redis_link import Link
from .backend import SharedLimitsError

__all__ = ["clear_leases", "read_state", "reset_budget"]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _float(value: Any, default: float = 0.0) -> float:
    try:
        return float(_text(value)) if value is not None else default
    except ValueError:
        return default


async def _run(url: str, namespace: str, names: tuple[str, ...], job: Any) -> Any:
    link = Link(url, namespace)
    try:
        return await job(link.client, {name: link.key(name) for name in names})
    except SharedLimitsError:
        raise
    except Exception as exc:
        raise SharedLimitsError(
            f"the shared limits at {redact_url(url)} cannot be reached ({type(exc).__name__})",
            unreachable=True,
        ) from None
    finally:
        await link.aclose()


_ALL = ("rate", "conc", "leases", "owners", "budget", "res", "res_owners", "queue", "cqueue")


async def read_state(url: str, namespace: str) -> dict[str, Any]:
    """The namespace's shared state, times in seconds from now (the server's clock)."""

    async def job(client: Any, keys: dict[str, str]) -> dict[str, Any]:
        pipe = client.pipeline(transaction=True)
        pipe.time()
        pipe.hgetall(keys["rate"])
        pipe.hgetall(keys["conc"])
        pipe.zrange(keys["leases"], 0, -1, withscores=True)
        pipe.hgetall(keys["owners"])
        pipe.hgetall(keys["budget"])
        pipe.hgetall(keys["res"])
        pipe.hgetall(keys["res_owners"])
        pipe.zrange(keys["queue"], 0, -1)
        pipe.zrange(keys["cqueue"], 0, -1)
        (
            now_pair,
            rate,
            conc,
            leases,
            owners,
            budget,
            res,
            res_owners,
            queue,
            cqueue,
        ) = await pipe.execute()
        now = float(now_pair[0]) + float(now_pair[1]) / 1e6
        rate = {_text(k): _float(v) for k, v in rate.items()}
        owners = {_text(k): _text(v) for k, v in owners.items()}
        res_owners = {_text(k): _text(v) for k, v in res_owners.items()}
        budget = {_text(k): _float(v) for k, v in budget.items()}
        return {
            "namespace": namespace,
            "rate": {
                "pause_left": max(0.0, rate.get("paused", 0.0) - now),
                "factor": rate.get("factor", 1.0),
            },
            "concurrency": {"cap": _float(conc.get(b"cap"), 0.0) or None},
            "leases": [
                {"id": _text(m), "owner": owners.get(_text(m), "?"), "expires_in": s - now}
                for m, s in leases
            ],
            "waiting": [_text(q) for q in queue],
            "waiting_for_credits": [_text(q) for q in cqueue],
            "budget": budget or None,
            "reservations": [
                {"id": _text(k), "amount": _float(v), "owner": res_owners.get(_text(k), "?")}
                for k, v in res.items()
            ],
        }

    result: dict[str, Any] = await _run(url, namespace, _ALL, job)
    return result


async def reset_budget(url: str, namespace: str) -> None:
    """Forget the namespace's budget: its total, what was spent, and every reservation (a dead
    process's included). The next client sets the total again."""

    async def job(client: Any, keys: dict[str, str]) -> None:
        await client.delete(keys["budget"], keys["res"], keys["res_owners"])

    await _run(url, namespace, ("budget", "res", "res_owners"), job)


async def clear_leases(url: str, namespace: str) -> None:
    """Free every concurrency slot (a live process's too: its tasks then count nowhere) and
    empty the line of slot waiters (a live waiter asks again and stands in line anew)."""

    async def job(client: Any, keys: dict[str, str]) -> None:
        waiting = await client.zrange(keys["queue"], 0, -1)
        pipe = client.pipeline(transaction=True)
        if waiting:
            pipe.hdel(keys["tickets"], *waiting)
            pipe.zrem(keys["queue_seen"], *waiting)
        pipe.delete(keys["leases"], keys["owners"], keys["queue"])
        await pipe.execute()

    await _run(url, namespace, ("leases", "owners", "queue", "queue_seen", "tickets"), job)
