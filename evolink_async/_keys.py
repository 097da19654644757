"""Idempotency keys: their rule, random ones for single calls, derived ones for batches.

The gateway dedupes paid creates by the ``Idempotency-Key`` header (sent again as
``X-Evo-Run-Id``): 16-96 characters of ``[A-Za-z0-9._-]``. A single call gets ``run_`` and
32 random hex digits unless the caller gives one; a batch derives its keys from a random job
secret kept in its journal, the line, the attempt and the request's fingerprint, so a rerun
after a crash sends the same key for the same attempt. A derived key is a keyed hash: it shows
none of its inputs (and the API key is never one of them).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid

from .errors import InvalidRequestError

__all__ = ["KEY_RULE", "check_idempotency_key", "derive_idempotency_key", "new_idempotency_key"]

KEY_RULE = "must be 16 to 96 characters of A-Z, a-z, 0-9, '.', '_' and '-'"
_KEY = re.compile(r"[A-Za-z0-9._-]{16,96}")


def check_idempotency_key(value: object, field: str = "idempotency_key") -> str:
    """``value`` if it is a key the gateway accepts; else :class:`InvalidRequestError`."""
    if not isinstance(value, str) or _KEY.fullmatch(value) is None:
        raise InvalidRequestError(field, value, KEY_RULE)
    return value


def new_idempotency_key() -> str:
    """A fresh random key: ``run_`` and 32 hex digits, as Evolink's own client makes them."""
    return "run_" + uuid.uuid4().hex


def derive_idempotency_key(secret: str, line: int, attempt: int, fingerprint: str) -> str:
    """The key of one attempt of one batch line: ``evb_`` + 40 hex digits of
    HMAC-SHA256(secret, "line:attempt:fingerprint"). Same inputs, same key."""
    message = f"{line}:{attempt}:{fingerprint}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return "evb_" + digest[:40]
