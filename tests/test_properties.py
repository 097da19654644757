"""Property tests (hypothesis) of request validation: ``VideoRequest``, given any field values,
is valid (and then its body can be sent as strict JSON and read back the same) or raises
``InvalidRequestError`` whose ``field`` names the field at fault, never another exception.

The issue's other properties live beside the code they test: the decoder fed any JSON value
(``tests/test_codec.py``: ``test_decode_task_of_any_json_returns_a_task_or_raises_decode_error``
and ``test_decode_credits_of_any_json_returns_credits_or_raises_decode_error``), the rate
limiter's window bound and the credit budget under any interleaving
(``tests/test_limits_properties.py``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from evolink_async.errors import InvalidRequestError
from evolink_async.models import MODEL_SPECS, ModelSpec, VideoRequest

CORE_FIELDS = ("model", "prompt", "aspect_ratio", "duration", "image_urls", "callback_url")
FIELD = re.compile(
    r"(?P<core>model|prompt|aspect_ratio|duration|image_urls|callback_url"
    r"|image_start|image_end|video_urls|audio_urls|model_params)"
    r"|(?P<list>image_urls|video_urls|audio_urls)\[(?P<index>\d+)\]"
    r"|model_params\.(?P<param>.*)"
    r"|extra\.(?P<extra>.*)"
    r"|(?P<whole>extra)",
    re.DOTALL,
)

# Any text, lone surrogates included (a JSON "\ud800" escape decodes to one).
any_text = st.text(st.characters(codec=None, categories=None), max_size=12) | st.text(max_size=12)
leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and infinities included
    | any_text
)
anything = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=6,
)
# non-string keys are only possible from Python, not from a JSON line
anything_from_python = anything | st.dictionaries(st.integers(), anything, max_size=2)

models = st.sampled_from([*MODEL_SPECS, "a-model-the-sdk-does-not-know"]) | anything
prompts = st.text(max_size=40) | st.just("p" * 5001) | st.just("p" * 2001) | anything
aspect_ratios = st.sampled_from(["16:9", "9:16", "1280x720", "720x1280", "4:3"]) | anything
durations = st.sampled_from([4, 6, 8, 10, 12, 15, 25, 5]) | anything
image_url = (
    st.sampled_from(
        [
            "https://img.example.com/cat.png",
            "https://img.example.com/cat",
            "http://img.example.com/cat.gif",
            "ftp://img.example.com/cat.png",
            "https://[::1/cat.png",
            "",
        ]
    )
    | anything
)
image_urls = st.lists(image_url, max_size=4) | anything
callback_urls = (
    st.sampled_from(
        [
            "https://hooks.example.com/evolink",
            "http://hooks.example.com/evolink",
            "https://127.0.0.1/hook",
            "https://10.1.2.3/hook",
            "https://[::1/hook",
            "https://hooks.example.com/" + "x" * 2048,
        ]
    )
    | anything
)
extra_names = (
    st.sampled_from(
        [
            "quality",
            "n",
            "remove_watermark",
            "generate_audio",
            "generation_type",
            "negative_prompt",
            "base_video_task_id",
            "seed",
            "prompt",
            "model",
        ]
    )
    | any_text
)
extra_values = (
    st.sampled_from(["high", "standard", "720p", "4k", "TEXT", True, False, 1, 4, 9]) | anything
)
extras = st.dictionaries(extra_names, extra_values, max_size=4)

FIELD_STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "model": models,
    "prompt": prompts,
    "aspect_ratio": aspect_ratios,
    "duration": durations,
    "image_urls": image_urls,
    "callback_url": callback_urls,
}


@st.composite
def constructor_kwargs(draw: st.DrawFn) -> dict[str, Any]:
    """Keyword arguments of ``VideoRequest(...)``: each field absent or set to anything."""
    kwargs = {name: draw(s) for name, s in FIELD_STRATEGIES.items() if draw(st.booleans())}
    kwargs.setdefault("prompt", draw(prompts))
    if draw(st.booleans()):
        kwargs["extra"] = draw(extras | anything_from_python)
    return kwargs


@st.composite
def json_objects(draw: st.DrawFn) -> dict[str, Any]:
    """An object with the API's field names (a line of a .jsonl file), unknown fields too."""
    data = {name: draw(s) for name, s in FIELD_STRATEGIES.items() if draw(st.booleans())}
    data.update(draw(extras))
    return data


def check_valid(request: VideoRequest) -> None:
    """A valid request's body is strict JSON (UTF-8, finite numbers) and reads back the same."""
    body = request.to_json()
    json.dumps(body, allow_nan=False, ensure_ascii=False).encode("utf-8")
    assert request == VideoRequest.from_json(body)


def needed_fields(spec: ModelSpec | None) -> frozenset[str]:
    """The typed fields a model needs (required, or with a minimum count)."""
    if spec is None:
        return frozenset()
    counted = {
        name
        for name, low in (
            ("image_urls", spec.min_images),
            ("video_urls", spec.video_urls[0] if spec.video_urls else 0),
            ("audio_urls", spec.audio_urls[0] if spec.audio_urls else 0),
        )
        if low
    }
    return spec.required | counted


def check_field(error: InvalidRequestError, given: Mapping[str, Any]) -> None:
    """``error.field`` names a field that was given, and only a field that can be wrong."""
    match = FIELD.fullmatch(error.field)
    assert match is not None, f"{error.field!r} names no field"
    model = given.get("model")
    spec = MODEL_SPECS.get(model) if isinstance(model, str) else None
    if match["core"]:
        # "prompt" may be missing (from_json); a field the model requires may be missing;
        # any other core field was given
        required = needed_fields(spec)
        core = match["core"]
        assert core in given or core == "prompt" or core in required, error
    elif match["index"] is not None:
        assert match["list"] in given, error
    elif match["param"] is not None:
        assert "model_params" in given or (spec is not None and spec.required_params), error
    elif match["extra"] is not None:
        name = match["extra"]
        extra = given.get("extra", given)
        if extra is None:  # extra=None: none given; a field the model requires is missing
            extra = {}
        required = spec.required_extra | spec.required if spec is not None else frozenset()
        assert isinstance(extra, Mapping)
        assert name in extra or name in CORE_FIELDS or name in required, error
    else:  # the whole "extra": not a mapping of names, which only Python can pass
        extra = given.get("extra")
        assert not isinstance(extra, Mapping) or not all(isinstance(k, str) for k in extra), error


SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(constructor_kwargs())
@example({"prompt": "a cat", "duration": 8})
@example({"prompt": "a cat", "extra": {"seed": float("nan")}})
@example({"prompt": "a cat \ud800"})
@example({"prompt": "a cat", "model": ["sora-2"]})
@example({"prompt": "a cat", "extra": {1: "one"}})
@example({"prompt": "a remix", "model": "sora-2-pro-remix"})
@example({"model": "omnihuman-1.5", "prompt": "", "extra": None})  # needs extra.audio_url
def test_video_request_of_any_fields_is_valid_or_names_the_field_at_fault(
    kwargs: dict[str, Any],
) -> None:
    try:
        request = VideoRequest(**kwargs)
    except InvalidRequestError as error:
        check_field(error, kwargs)
    else:
        check_valid(request)


@SETTINGS
@given(json_objects())
@example({"prompt": "a cat", "aspect_ratio": "16:9", "duration": 12})
@example({"prompt": "x", "model": "veo-3.1-fast-generate-preview", "n": 5})
@example({"duration": 4})
@example({"prompt": "a cat", "seed": float("inf")})
def test_video_request_from_any_json_object_is_valid_or_names_the_field_at_fault(
    data: dict[str, Any],
) -> None:
    try:
        request = VideoRequest.from_json(data)
    except InvalidRequestError as error:
        check_field(error, data)
    else:
        check_valid(request)


@pytest.mark.parametrize("data", [[], "a cat", None, 3])
def test_from_json_of_something_else_than_an_object_names_the_request(data: Any) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        VideoRequest.from_json(data)
    assert "request" == caught.value.field
