"""The create endpoint: the gateway's ledger of idempotency keys, and faults after a create.

The ledger keeps, per ``Idempotency-Key``, the fingerprint of the body and the original answer:

* the same key and the same body: the original answer again, with the header
  ``Idempotency-Replayed: true``, and no new task or charge;
* the same key and another body: HTTP 409 with error code ``idempotency_conflict`` (the SDK
  classifies it by the code, the status is the simulator's choice);
* with ``outcome_unknown_replays=N``, the first N repeats of a key are answered 409 with code
  ``paid_outcome_unknown`` (the gateway cannot tell yet), as the real one may.

``idempotency=False`` ignores the header, as a gateway behind a stripping proxy would. A key
outside 16-96 characters of ``[A-Za-z0-9._-]`` is refused with 400. Only successful creates
are kept (a 402 or 429 may be tried again with the same key).

``create_fault`` answers a create the service took (or replayed) with a 5xx, a cut connection
or a late answer, for ``create_fault_rate`` of creates and at most ``create_fault_limit``
times per prompt: the ambiguous outcomes that must never make anyone pay twice.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import attrs
from aiohttp import web

from ._config import SimulatorConfig
from ._errors import ApiError, error_body
from ._state import ServiceState
from ._stats import SimulatorStats
from ._task import SimulatedTask
from ._validation import validate_create

__all__ = ["CreateAnswer", "CreateDesk"]

_KEY = re.compile(r"[A-Za-z0-9._-]{16,96}")
_CDN_HTML = "<html><body><h1>Error {status}</h1><p>{reason}</p><p>cloudflare</p></body></html>"
_REASONS = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    520: "Web server is returning an unknown error",
    522: "Connection timed out",
    524: "A timeout occurred",
}


@attrs.frozen
class CreateAnswer:
    """What to answer a create: the response, the task it created (None for a replay) and the
    transport fault the server applies after it ("ghost": cut, "slow": late), if any."""

    response: web.Response
    task: SimulatedTask | None = None
    fault: str | None = None


class CreateDesk:
    """POST /v1/videos/generations, with the key ledger and the after-create faults."""

    def __init__(
        self,
        config: Callable[[], SimulatorConfig],
        state: ServiceState,
        stats: SimulatorStats,
        schedule: Callable[[SimulatedTask], None],
        *,
        check: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self._config = config  # the simulator's knobs now (a test may replace them)
        self._state = state
        self._stats = stats
        self._schedule = schedule
        self._check = check  # a look at the body before it is validated (echo faults)
        #: key -> (fingerprint of the body, the original answer)
        self._ledger: dict[str, tuple[str, dict[str, Any]]] = {}
        self._unknown_given: Counter[str] = Counter()
        self._faulted: Counter[str] = Counter()
        self._rng = random.Random(f"{config().seed}/create-faults")
        store = state.store
        for key, (fingerprint, task_id) in (store.keys if store is not None else {}).items():
            task = stats.tasks.get(task_id)
            if task is not None:  # an earlier simulator's, on the same state file
                self._ledger[key] = (fingerprint, task.body(task.created_at, None))

    def __repr__(self) -> str:
        return f"<CreateDesk keys={len(self._ledger)} honoured={self.config.idempotency}>"

    @property
    def config(self) -> SimulatorConfig:
        return self._config()

    @property
    def keys(self) -> int:
        """Keys in the ledger."""
        return len(self._ledger)

    async def create(self, request: web.Request) -> CreateAnswer:
        try:
            body = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            raise ApiError(
                400,
                "invalid_request",
                "Request body must be a JSON object",
                "invalid_request_error",
            )
        if self._check is not None:
            self._check(body)
        cfg = self.config
        valid = validate_create(
            body, cfg.models, allow_insecure_callbacks=cfg.allow_insecure_callbacks
        )
        key = self._key(request)
        fingerprint = _fingerprint(body)
        if key is not None and key in self._ledger:
            answer = self._replay(key, fingerprint)
            response = web.json_response(answer, headers={"Idempotency-Replayed": "true"})
            return self._after(valid.prompt, CreateAnswer(response))
        task = self._state.create(valid)
        self._schedule(task)
        answer = task.body(task.created_at, None)
        if key is not None:
            self._ledger[key] = (fingerprint, answer)
            if self._state.store is not None:
                self._state.store.append_key(key, fingerprint, task.id)
        return self._after(valid.prompt, CreateAnswer(web.json_response(answer), task))

    def _key(self, request: web.Request) -> str | None:
        key = request.headers.get("Idempotency-Key")
        if not self.config.idempotency or key is None:
            return None
        if _KEY.fullmatch(key) is None:
            raise ApiError.invalid(
                "Idempotency-Key", "Idempotency-Key must be 16-96 characters of [A-Za-z0-9._-]"
            )
        return key

    def _replay(self, key: str, fingerprint: str) -> dict[str, Any]:
        original, answer = self._ledger[key]
        if original != fingerprint:
            self._stats.idempotency_conflicts += 1
            raise ApiError(
                409,
                "idempotency_conflict",
                "This Idempotency-Key was used with a different request; "
                "use a new client_request_id for a new generation",
                "invalid_request_error",
            )
        if self._unknown_given[key] < self.config.outcome_unknown_replays:
            self._unknown_given[key] += 1
            raise ApiError(
                409,
                "paid_outcome_unknown",
                "The earlier request with this Idempotency-Key is still being processed; "
                "retry with the same key",
                "invalid_request_error",
                retry_after=1,
            )
        self._stats.replayed += 1
        return answer

    def _after(self, prompt: str, answer: CreateAnswer) -> CreateAnswer:
        """Apply ``create_fault`` to a create the service took (or replayed)."""
        cfg = self.config
        if cfg.create_fault is None:
            return answer
        draw = self._rng.random()
        limit = cfg.create_fault_limit
        if draw >= cfg.create_fault_rate or (limit is not None and self._faulted[prompt] >= limit):
            return answer
        self._faulted[prompt] += 1
        self._stats.create_faults += 1
        if cfg.create_fault == "drop":
            return attrs.evolve(answer, fault="ghost")
        if cfg.create_fault == "timeout":
            return attrs.evolve(answer, fault="slow")
        return attrs.evolve(answer, response=_server_error(int(cfg.create_fault)))


def _fingerprint(body: dict[str, Any]) -> str:
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _server_error(status: int) -> web.Response:
    """A 5xx: the service's JSON error for 500-503, a CDN's HTML page for 520-524."""
    reason = _REASONS[status]
    if status < 520:
        body = error_body(status, reason, "server_error")
        return web.json_response(body, status=status)
    html = _CDN_HTML.format(status=status, reason=reason)
    return web.Response(status=status, text=html, content_type="text/html")
