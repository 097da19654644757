"""What the simulated service knows: its models, their rules and prices, its task error codes."""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from evolink_async.models import MODEL_SPECS as REGISTRY  # the package's public API only
from evolink_async.models import ModelSpec as Rules

__all__ = [
    "DEFAULT_FAILURE_CODES",
    "DEFAULT_MODELS",
    "FATAL_TASK_ERRORS",
    "RETRYABLE_TASK_ERRORS",
    "TASK_ERROR_MESSAGES",
    "ModelSpec",
]


@attrs.frozen(kw_only=True)
class ModelSpec:
    """One model's documented rules, and its price per clip duration (credits)."""

    name: str
    durations: tuple[int, ...]
    default_duration: int
    prices: Mapping[int, float]
    prompt_max: int = 5000
    aspect_ratios: tuple[str, ...] = ("1280x720", "720x1280", "16:9", "9:16")
    max_images: int = 1
    #: the registry entry whose rules the simulator applies (None: only the fields above)
    rules: Rules | None = None

    def __attrs_post_init__(self) -> None:
        if self.default_duration not in self.durations:
            raise ValueError(f"{self.name}: default duration not in {self.durations}")
        if set(self.prices) != set(self.durations):
            raise ValueError(f"{self.name}: need a price for each of {self.durations}")


def _per_second(rate: float, durations: tuple[int, ...]) -> dict[int, float]:
    return {d: round(rate * d, 2) for d in durations}


# sora-2-preview's prices are published (4 s = 23.04, 8 s = 46.08, 12 s = 69.12: 5.76 a second).
# The other models' prices are NOT published: theirs below are GUESSES, the same 5.76 credits
# per second of video, only so that budgets behave plausibly. Pass `models=` to change them.
_SORA_RATE = 5.76


def _from_registry(rules: Rules) -> ModelSpec:
    """A simulated model for a registry entry: its rules, and a GUESSED price (5.76 credits a
    second; a model without published durations bills a 5 s clip, whatever it is asked)."""
    durations = tuple(d for d in rules.durations if d > 0) or (5,)
    default = rules.default_duration if rules.default_duration in durations else durations[0]
    return ModelSpec(
        name=rules.name,
        durations=durations,
        default_duration=default,
        prices=_per_second(_SORA_RATE, durations),
        prompt_max=rules.prompt_max or 1_000_000,
        aspect_ratios=rules.aspect_ratios or (),
        max_images=rules.max_images,
        rules=rules,
    )


_LEGACY: Mapping[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="sora-2-preview",
            durations=(4, 8, 12),
            default_duration=4,
            prices={4: 23.04, 8: 46.08, 12: 69.12},
        ),
        ModelSpec(
            name="sora-2",
            durations=(10, 15),
            default_duration=10,
            prices=_per_second(_SORA_RATE, (10, 15)),  # guessed
            aspect_ratios=("16:9", "9:16"),
        ),
        ModelSpec(
            name="sora-2-pro",
            durations=(15, 25),
            default_duration=15,
            prices=_per_second(_SORA_RATE, (15, 25)),  # guessed
            aspect_ratios=("16:9", "9:16"),
        ),
        ModelSpec(
            name="veo-3.1-fast-generate-preview",
            durations=(4, 6, 8),
            default_duration=8,  # not documented: a guess
            prices=_per_second(_SORA_RATE, (4, 6, 8)),  # guessed
            prompt_max=2000,
            aspect_ratios=("16:9", "9:16"),
            max_images=3,
        ),
    )
}

DEFAULT_MODELS: Mapping[str, ModelSpec] = {
    **{name: _from_registry(rules) for name, rules in REGISTRY.items()},
    **{name: attrs.evolve(spec, rules=REGISTRY.get(name)) for name, spec in _LEGACY.items()},
}
"""Every model of the package's registry, with its rules; the first four keep their prices."""

# Task-level error codes (inside a failed task), as documented.
FATAL_TASK_ERRORS: tuple[str, ...] = (
    "content_policy_violation",
    "invalid_parameters",
    "image_processing_error",
    "image_dimension_mismatch",
    "request_cancelled",
)
RETRYABLE_TASK_ERRORS: tuple[str, ...] = (
    "generation_failed_no_content",
    "service_error",
    "generation_timeout",
    "resource_exhausted",
    "quota_exceeded",
    "service_unavailable",
    "resource_not_found",
    "unknown_error",
)
# What `failure_rate` draws from: the most common failures, retryable and fatal mixed.
DEFAULT_FAILURE_CODES: tuple[str, ...] = (
    "content_policy_violation",
    "service_error",
    "generation_timeout",
    "generation_failed_no_content",
    "resource_exhausted",
)

TASK_ERROR_MESSAGES: Mapping[str, str] = {
    "content_policy_violation": "Content policy violation. The request was flagged by the "
    "safety system.",
    "invalid_parameters": "Invalid parameters for this model.",
    "image_processing_error": "The reference image could not be processed.",
    "image_dimension_mismatch": "The reference image size does not match aspect_ratio.",
    "request_cancelled": "The task was cancelled.",
    "generation_failed_no_content": "Generation finished without producing content.",
    "service_error": "Internal service error, please try again.",
    "generation_timeout": "Generation timed out.",
    "resource_exhausted": "Resources exhausted, please try again later.",
    "quota_exceeded": "Quota exceeded.",
    "service_unavailable": "Service temporarily unavailable.",
    "resource_not_found": "Resource not found.",
    "unknown_error": "Unknown error.",
}
