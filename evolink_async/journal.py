"""The batch journal; it lives in :mod:`evolink_async.batch.journal`, re-exported here."""

from __future__ import annotations

from .batch.journal import *  # noqa: F403 - the old module name, for users' imports
from .batch.journal import __all__ as __all__  # noqa: PLC0414 - re-exported
