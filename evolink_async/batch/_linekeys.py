"""The idempotency keys of a batch's creates: one per attempt of a line, journaled in its intent.

A key is derived from the job's seed (journaled once), the line, the attempt's number in the
journal and the request's fingerprint (:func:`evolink_async._keys.derive_idempotency_key`):
the same attempt sent again (after a 429 or a connection that never opened) keeps its key, a
new attempt (after a retryable task failure) gets a new one, and a line whose earlier answer
never came is sent again with the key its intent journaled (``resend``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from .._keys import derive_idempotency_key

__all__ = ["LineKeys"]


class LineKeys:
    """Keys by (line, the dispatcher's attempt); ``seed`` None: keys are off (None for all)."""

    __slots__ = ("_attempts", "_fingerprints", "_keys", "_seed")

    def __init__(
        self,
        seed: str | None,
        fingerprints: Mapping[int, str],
        attempts: Callable[[int], int],
        resend: Mapping[int, str] | None = None,
    ) -> None:
        self._seed = seed
        self._fingerprints = fingerprints
        self._attempts = attempts  # intents journaled for a line so far
        # a resent line's first attempt in this run is the dispatcher's attempt 1
        self._keys: dict[tuple[int, int], str] = {(n, 1): k for n, k in (resend or {}).items()}

    def __repr__(self) -> str:
        return f"<LineKeys on={self._seed is not None} keys={len(self._keys)}>"

    def key(self, line: int, attempt: int) -> str | None:
        """The key of ``attempt`` (the dispatcher's number) of ``line``."""
        if self._seed is None:
            return None
        key = self._keys.get((line, attempt))
        if key is None:
            number = self._attempts(line) + 1
            key = derive_idempotency_key(self._seed, line, number, self._fingerprints[line])
            self._keys[(line, attempt)] = key
        return key
