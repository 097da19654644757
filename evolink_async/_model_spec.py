"""What one video model accepts on POST /v1/videos/generations: the shape of a registry entry.

The entries themselves are data (:mod:`evolink_async._model_table`); the checks that apply them
live in :mod:`evolink_async._model_checks`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["SHARED_MAX_IMAGES", "SHARED_PROMPT_MAX", "TYPED_FIELDS", "ModelSpec", "seconds"]

#: the shared checks every model gets, known or not (attack 9: a 10 MB prompt was sent)
SHARED_PROMPT_MAX = 5000
SHARED_MAX_IMAGES = 30

#: body fields a request carries as typed arguments (a rule on them names the field plainly;
#: a rule on any other field names it ``extra.<name>``)
TYPED_FIELDS = frozenset(
    {
        "model",
        "prompt",
        "aspect_ratio",
        "duration",
        "image_urls",
        "callback_url",
        "image_start",
        "image_end",
        "video_urls",
        "audio_urls",
        "model_params",
    }
)


def seconds(low: int, high: int) -> tuple[int, ...]:
    """Every whole second from ``low`` to ``high`` inclusive (a documented duration range)."""
    return tuple(range(low, high + 1))


def _frozen(value: Any) -> frozenset[str]:
    return frozenset(value)


@attrs.frozen
class ModelSpec:
    """The published rules of one model on POST /v1/videos/generations, and its published
    prices (credits by duration in seconds; empty when the service publishes none).

    ``None`` (or an empty tuple for ``durations``) means "not published": only the shared
    checks apply to that field.
    """

    name: str
    durations: tuple[int, ...] = ()
    default_duration: int | None = None
    prompt_max: int | None = None
    aspect_ratios: tuple[str, ...] | None = None
    max_images: int = 1
    #: field name in ``extra`` → allowed values (validated when present)
    extra_choices: Mapping[str, tuple[Any, ...]] = attrs.field(factory=dict)
    #: field name in ``extra`` → (min, max) for integer fields
    extra_ranges: Mapping[str, tuple[int, int]] = attrs.field(factory=dict)
    extra_bools: frozenset[str] = attrs.field(default=frozenset(), converter=_frozen)
    extra_strings: frozenset[str] = attrs.field(default=frozenset(), converter=_frozen)
    required_extra: frozenset[str] = attrs.field(default=frozenset(), converter=_frozen)
    #: duration in seconds → credits, as published
    prices: Mapping[int, float] = attrs.field(factory=dict)
    #: ``duration: -1`` asks the model to choose (allowed only where published)
    duration_auto: bool = False
    #: the allowed values of ``quality`` (sent in ``extra``); None: not published
    qualities: tuple[str, ...] | None = None
    min_images: int = 0
    #: which of ``image_start`` / ``image_end`` the model accepts
    frames: frozenset[str] = attrs.field(default=frozenset(), converter=_frozen)
    #: (min, max) count of ``video_urls`` / ``audio_urls``; None: the model takes none
    video_urls: tuple[int, int] | None = None
    audio_urls: tuple[int, int] | None = None
    #: body fields that must be present (``prompt`` unless the model documents otherwise)
    required: frozenset[str] = attrs.field(default=frozenset({"prompt"}), converter=_frozen)
    #: the keys ``model_params`` may hold; None: the model documents no ``model_params``
    model_params: frozenset[str] | None = attrs.field(
        default=None, converter=attrs.converters.optional(_frozen)
    )
    required_params: frozenset[str] = attrs.field(default=frozenset(), converter=_frozen)
    #: image_urls items may be data URLs or raw base64, not only http(s) links
    inline_images: bool = False
    #: documented fields (in ``extra``) with no rule the SDK checks
    extra_other: frozenset[str] = attrs.field(default=frozenset(), converter=_frozen)

    @property
    def extra_fields(self) -> frozenset[str]:
        """Every field this model documents beyond the typed ones: any other is a typo."""
        quality = {"quality"} if self.qualities is not None else set()
        return (
            frozenset(self.extra_choices)
            | frozenset(self.extra_ranges)
            | self.extra_bools
            | self.extra_strings
            | self.required_extra
            | self.extra_other
            | quality
        )

    @property
    def prompt_required(self) -> bool:
        return "prompt" in self.required
