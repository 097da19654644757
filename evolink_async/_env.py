"""Defaults read from the environment: one place for the variables the client and the command
line share."""

from __future__ import annotations

import math
import os

__all__ = [
    "API_KEY_ENV",
    "BASE_URL_ENV",
    "CALLBACK_SECRET_ENV",
    "DEFAULT_BASE_URL",
    "TIME_SCALE_ENV",
    "env_api_key",
    "env_base_url",
    "env_callback_secret",
    "env_time_scale",
]

DEFAULT_BASE_URL = "https://api.evolink.ai"
API_KEY_ENV = "EVOLINK_API_KEY"
BASE_URL_ENV = "EVOLINK_BASE_URL"
CALLBACK_SECRET_ENV = "EVOLINK_CALLBACK_SECRET"
TIME_SCALE_ENV = "EVOLINK_TIME_SCALE"


def env_api_key() -> str | None:
    """``$EVOLINK_API_KEY``, or ``None`` when unset or empty."""
    return os.environ.get(API_KEY_ENV) or None


def env_base_url() -> str:
    """``$EVOLINK_BASE_URL``, or Evolink's own when unset or empty."""
    return os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL


def env_callback_secret() -> str | None:
    """``$EVOLINK_CALLBACK_SECRET``, or ``None`` when unset or empty."""
    return os.environ.get(CALLBACK_SECRET_ENV) or None


def env_time_scale() -> float | None:
    """``$EVOLINK_TIME_SCALE`` (a number > 0), or ``None`` when unset or empty.

    :raises ValueError: naming the variable, when it is set to anything else.
    """
    raw = os.environ.get(TIME_SCALE_ENV, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"${TIME_SCALE_ENV} must be a number > 0, got {raw!r}")
    return value
