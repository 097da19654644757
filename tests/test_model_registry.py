"""The model registry, table-driven: for every documented model and every rule kind it
publishes, a wrong value is rejected locally (naming the field, before any request), and the
simulator, sent the same body with the local check bypassed, rejects it with the gateway's 400
naming the same field. A valid body of every model is accepted by both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from test_simulator_support import running

from evolink_async import EvolinkClient
from evolink_async.errors import InvalidRequestError
from evolink_async.models import MODEL_SPECS, ModelSpec, VideoRequest

IMAGE = "https://cdn.example.com/ref.png"
VIDEO = "https://cdn.example.com/clip.mp4"
AUDIO = "https://cdn.example.com/voice.mp3"
Case = tuple[str, dict[str, Any]]  # (field the error must name, the whole body)


def valid_body(spec: ModelSpec) -> dict[str, Any]:
    """The smallest body the model's published rules accept."""
    body: dict[str, Any] = {"model": spec.name, "prompt": "A cat playing piano"}
    images = max(spec.min_images, 1 if "image_urls" in spec.required else 0)
    if images:
        body["image_urls"] = [IMAGE] * images
    for field, bounds, url in (("video_urls", spec.video_urls, VIDEO),
                               ("audio_urls", spec.audio_urls, AUDIO)):  # fmt: skip
        if bounds is not None and bounds[0]:
            body[field] = [url] * bounds[0]
    if "image_start" in spec.required:
        body["image_start"] = IMAGE
    if "model_params" in spec.required or spec.required_params:
        body["model_params"] = {key: "x" for key in sorted(spec.required_params)}
    for name in (spec.required | spec.required_extra) - set(body) - {"model_params"}:
        body[name] = "task-unified-1757169743-7cvnl5zw" if "task" in name else AUDIO
    return body


def _duration(spec: ModelSpec) -> list[Case]:
    if not spec.durations:
        return []
    return [("duration", {**valid_body(spec), "duration": max(spec.durations) + 1})]


def _ratio(spec: ModelSpec) -> list[Case]:
    if spec.aspect_ratios is None:
        return []
    return [("aspect_ratio", {**valid_body(spec), "aspect_ratio": "7:5"})]


def _quality(spec: ModelSpec) -> list[Case]:
    if spec.qualities is None:
        return []
    return [("extra.quality", {**valid_body(spec), "quality": "9k"})]


def _images(spec: ModelSpec) -> list[Case]:
    cases = [("image_urls", {**valid_body(spec), "image_urls": [IMAGE] * (spec.max_images + 1)})]
    if spec.min_images:
        cases.append(("image_urls", {**valid_body(spec), "image_urls": []}))
    return cases


def _prompt(spec: ModelSpec) -> list[Case]:
    if spec.prompt_max is None:
        return []
    return [("prompt", {**valid_body(spec), "prompt": "p" * (spec.prompt_max + 1)})]


def _required(spec: ModelSpec) -> list[Case]:
    cases: list[Case] = []
    for name in sorted(spec.required | spec.required_extra):
        body = valid_body(spec)
        if name == "prompt":
            body["prompt"] = "  "
        else:
            del body[name]
        typed = name in {"prompt", "image_urls", "video_urls", "image_start", "model_params"}
        cases.append((name if typed else f"extra.{name}", body))
    return cases


RULE_KINDS: dict[str, Callable[[ModelSpec], list[Case]]] = {
    "duration": _duration,
    "aspect ratio": _ratio,
    "quality": _quality,
    "image count": _images,
    "prompt length": _prompt,
    "a required field missing": _required,
}


def cases_of(kind: str) -> list[Case]:
    return [case for spec in MODEL_SPECS.values() for case in RULE_KINDS[kind](spec)]


def test_the_registry_knows_every_documented_family() -> None:
    prefixes = ("sora-2", "veo", "MiniMax", "minimax-h3", "doubao", "gemini-omni", "grok",
                "happyhorse", "kling", "omnihuman", "seedance", "topaz", "videoretalk",
                "wan")  # fmt: skip
    missing = [p for p in prefixes if not any(name.startswith(p) for name in MODEL_SPECS)]
    assert ([], True) == (missing, len(MODEL_SPECS) >= 90)


@pytest.mark.parametrize("kind", list(RULE_KINDS))
def test_each_rule_kind_has_a_case_in_the_registry(kind: str) -> None:
    assert len(cases_of(kind)) >= 3


def test_a_valid_body_of_every_model_is_accepted_locally() -> None:
    built = [VideoRequest.from_json(valid_body(spec)).model for spec in MODEL_SPECS.values()]
    assert list(MODEL_SPECS) == built


@pytest.mark.parametrize("kind", list(RULE_KINDS))
async def test_a_wrong_value_is_rejected_locally_and_by_the_simulator(kind: str) -> None:
    cases = cases_of(kind)
    async with running() as (sim, api):
        client = EvolinkClient(sim.api_key, sim.base_url)
        async with client:
            local: list[Case] = []
            for _, body in cases:
                with pytest.raises(InvalidRequestError) as info:
                    # a prompt file's line: every field by its API name (one model's in extra)
                    await client.create_video(VideoRequest.from_json(body))
                local.append((info.value.field, body))
            wrong = [got for got, (want, _) in zip(local, cases, strict=True) if got[0] != want]
            assert ([], {}) == (wrong, sim.tasks)  # every field named, nothing sent
        answers = [await api.create(**body) for _, body in cases]
    seen = [(reply.status, reply.body["error"].get("param")) for reply in answers]
    assert [(400, field.removeprefix("extra.")) for field, _ in cases] == seen


async def test_the_simulator_accepts_a_valid_body_of_every_model() -> None:
    async with running() as (_, api):
        answers = [await api.create(**valid_body(spec)) for spec in MODEL_SPECS.values()]
    assert [200] * len(MODEL_SPECS) == [reply.status for reply in answers]
