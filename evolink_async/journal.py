"""The batch journal; it lives in :mod:`evolink_async.batch.journal`, re-exported here."""

from __future__ import annotations

from .batch.journal import (
    JOURNAL_FILENAME,
    LOCK_FILENAME,
    Journal,
    JournalCorruptError,
    JournalError,
    JournalLockedError,
    LineState,
    Phase,
    fingerprint,
    replay,
)

__all__ = [
    "JOURNAL_FILENAME",
    "LOCK_FILENAME",
    "Journal",
    "JournalCorruptError",
    "JournalError",
    "JournalLockedError",
    "LineState",
    "Phase",
    "fingerprint",
    "replay",
]
