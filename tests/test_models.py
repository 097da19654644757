"""VideoRequest: every documented rule, with a valid edge value and an invalid one.

Each rejection checks the ``InvalidRequestError``'s ``field``, that its message names the
field, and that it states the rule (the part of the message a user acts on).
"""

# Tests assert `expected == actual`, the project's test style; ruff's SIM300 calls that a
# "Yoda condition", so it is off in this file.

from __future__ import annotations

from typing import Any

import pytest

from evolink_async import limits
from evolink_async.errors import InvalidRequestError, shorten
from evolink_async.models import (
    DEFAULT_MODEL,
    DEFAULT_PRICES,
    MODEL_SPECS,
    VideoRequest,
    is_loopback_host,
    is_private_host,
)

SORA_PREVIEW = "sora-2-preview"
SORA_2 = "sora-2"
SORA_PRO = "sora-2-pro"
REMIX = "sora-2-pro-remix"
VEO = "veo-3.1-fast-generate-preview"

IMAGE = "https://cdn.example.com/ref.png"
CALLBACK = "https://hooks.example.com/evolink/done"


def rejected(field: str, rule: str, **kwargs: Any) -> InvalidRequestError:
    """Build a VideoRequest that must fail on ``field``; check the field and the rule."""
    kwargs.setdefault("prompt", "A cat playing piano")
    with pytest.raises(InvalidRequestError) as info:
        VideoRequest(**kwargs)
    err = info.value
    assert (field, True, True) == (err.field, field in str(err), rule in str(err)), str(err)
    assert rule in err.rule
    return err


# -- prompt ---------------------------------------------------------------------------------


def test_default_model_is_sora_2_preview() -> None:
    assert (SORA_PREVIEW, SORA_PREVIEW) == (DEFAULT_MODEL, VideoRequest(prompt="x").model)


def test_one_character_prompt_is_accepted() -> None:
    assert "x" == VideoRequest(prompt="x").prompt


@pytest.mark.parametrize("prompt", ["", " ", "\n\t  "])
def test_empty_or_blank_prompt_is_rejected(prompt: str) -> None:
    rejected("prompt", "must not be blank", prompt=prompt)


@pytest.mark.parametrize("prompt", [None, 42, ["a prompt"]])
def test_non_string_prompt_is_rejected(prompt: Any) -> None:
    rejected("prompt", "must be a string", prompt=prompt)


@pytest.mark.parametrize(
    ("model", "limit", "extra"),
    [
        (SORA_PREVIEW, 5000, {}),
        (SORA_2, 5000, {}),
        (VEO, 2000, {}),
        (REMIX, 2000, {"base_video_task_id": "task-unified-1757169743-7cvnl5zw"}),
    ],
)
def test_prompt_at_the_model_limit_is_accepted(
    model: str, limit: int, extra: dict[str, Any]
) -> None:
    request = VideoRequest(prompt="p" * limit, model=model, extra=extra)
    assert limit == len(request.prompt)


@pytest.mark.parametrize(
    ("model", "limit", "extra"),
    [
        (SORA_PREVIEW, 5000, {}),
        (SORA_2, 5000, {}),
        (VEO, 2000, {}),
        (REMIX, 2000, {"base_video_task_id": "task-unified-1757169743-7cvnl5zw"}),
    ],
)
def test_prompt_one_over_the_model_limit_is_rejected(
    model: str, limit: int, extra: dict[str, Any]
) -> None:
    err = rejected(
        "prompt",
        f"must be at most {limit} characters for {model}",
        prompt="p" * (limit + 1),
        model=model,
        extra=extra,
    )
    assert f"(got {limit + 1})" in err.rule


def test_sora_2_pro_has_no_local_prompt_limit() -> None:
    assert 10_000 == len(VideoRequest(prompt="p" * 10_000, model=SORA_PRO).prompt)


@pytest.mark.parametrize("model", ["", "   ", None])
def test_empty_model_is_rejected(model: Any) -> None:
    rejected("model", "must be a non-empty string", model=model)


# -- duration -------------------------------------------------------------------------------


@pytest.mark.parametrize("duration", [4, 8, 12])
def test_sora_2_preview_accepts_durations_4_8_12(duration: int) -> None:
    assert duration == VideoRequest(prompt="x", duration=duration).duration


@pytest.mark.parametrize("duration", [5, 0, -4, 16, "4", True, 4.0])
def test_sora_2_preview_rejects_other_durations(duration: Any) -> None:
    rejected("duration", "must be one of 4, 8, 12 seconds for sora-2-preview", duration=duration)


def test_unset_duration_is_left_out_and_means_the_model_default() -> None:
    request = VideoRequest(prompt="x")
    assert (None, 4, {"model": SORA_PREVIEW, "prompt": "x"}) == (
        request.duration,
        request.effective_duration,
        request.to_json(),
    )


# -- aspect ratio ---------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", ["1280x720", "720x1280", "16:9", "9:16"])
def test_sora_2_preview_accepts_the_documented_aspect_ratios(ratio: str) -> None:
    assert ratio == VideoRequest(prompt="x", aspect_ratio=ratio).aspect_ratio


@pytest.mark.parametrize("ratio", ["4:3", "1:1", "1920x1080", "16:9 ", "16x9", ""])
def test_sora_2_preview_rejects_other_aspect_ratios(ratio: str) -> None:
    rejected(
        "aspect_ratio",
        "must be one of 1280x720, 720x1280, 16:9, 9:16 for sora-2-preview",
        aspect_ratio=ratio,
    )


# -- image_urls -----------------------------------------------------------------------------


def test_one_image_is_accepted_and_a_single_string_becomes_a_tuple() -> None:
    assert ((IMAGE,), (IMAGE,)) == (
        VideoRequest(prompt="x", image_urls=[IMAGE]).image_urls,
        VideoRequest(prompt="x", image_urls=IMAGE).image_urls,
    )


def test_two_images_are_rejected_for_sora_2_preview() -> None:
    rejected("image_urls", "at most 1 image(s) for sora-2-preview", image_urls=[IMAGE, IMAGE])


def test_three_images_are_accepted_for_veo() -> None:
    request = VideoRequest(prompt="x", model=VEO, image_urls=[IMAGE] * 3)
    assert (IMAGE,) * 3 == request.image_urls


def test_four_images_are_rejected_for_veo() -> None:
    rejected("image_urls", f"at most 3 image(s) for {VEO}", model=VEO, image_urls=[IMAGE] * 4)


@pytest.mark.parametrize(
    "url",
    [
        "https://cdn.example.com/a.jpg",
        "https://cdn.example.com/a.jpeg",
        "https://cdn.example.com/a.png",
        "https://cdn.example.com/a.webp",
        "https://cdn.example.com/A.PNG",
        "https://cdn.example.com/a.png?signature=abc.def",
        "http://example.com/image1.jpg",  # the documented example is http
        "https://cdn.example.com/image?id=42",  # no extension: the server may still download it
    ],
)
def test_image_urls_with_an_allowed_extension_or_none_are_accepted(url: str) -> None:
    assert (url,) == VideoRequest(prompt="x", image_urls=[url]).image_urls


@pytest.mark.parametrize(
    "url",
    [
        "https://cdn.example.com/a.gif",
        "https://cdn.example.com/a.mp4",
        "https://cdn.example.com/a.png.exe",
        "https://cdn.example.com/a.heic",
    ],
)
def test_image_urls_with_another_extension_are_rejected(url: str) -> None:
    rejected("image_urls[0]", "must be a .jpg, .jpeg, .png or .webp image", image_urls=[url])


@pytest.mark.parametrize(
    "url",
    [
        "ftp://cdn.example.com/a.png",
        "file:///tmp/a.png",
        "data:image/png;base64,iVBORw0KGgo=",
        "/relative/a.png",
        "https:///a.png",
    ],
)
def test_image_urls_that_are_not_downloadable_http_urls_are_rejected(url: str) -> None:
    rejected("image_urls[0]", "must be an http(s) URL", image_urls=[url])


def test_the_index_of_the_bad_image_is_named() -> None:
    rejected(
        "image_urls[1]",
        "must be a .jpg, .jpeg, .png or .webp image",
        model=VEO,
        image_urls=[IMAGE, "https://cdn.example.com/b.gif"],
    )


@pytest.mark.parametrize("url", ["", None, 7])
def test_empty_or_non_string_image_url_is_rejected(url: Any) -> None:
    rejected("image_urls[0]", "must be a non-empty URL string", image_urls=[url])


@pytest.mark.parametrize("value", [7, {"url": IMAGE}])
def test_image_urls_that_is_not_a_list_is_rejected(value: Any) -> None:
    rejected("image_urls", "must be a list of URLs", image_urls=value)


# -- callback_url ---------------------------------------------------------------------------


def test_https_callback_url_is_accepted() -> None:
    assert CALLBACK == VideoRequest(prompt="x", callback_url=CALLBACK).callback_url


@pytest.mark.parametrize(
    "url", ["http://hooks.example.com/done", "ftp://hooks.example.com/done", "hooks.example.com"]
)
def test_callback_url_that_is_not_https_is_rejected(url: str) -> None:
    rejected("callback_url", "must use https", callback_url=url)


def _url_of_length(length: int) -> str:
    base = "https://hooks.example.com/"
    return base + "a" * (length - len(base))


def test_callback_url_of_2048_characters_is_accepted() -> None:
    url = _url_of_length(2048)
    assert (2048, url) == (len(url), VideoRequest(prompt="x", callback_url=url).callback_url)


def test_callback_url_of_2049_characters_is_rejected() -> None:
    rejected("callback_url", "must be at most 2048 characters", callback_url=_url_of_length(2049))


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.1.2.3",
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.0.1",
        "169.254.1.1",
        "0.0.0.0",
        "[::1]",
        "[fe80::1]",
        "[fc00::1]",
        "[::ffff:127.0.0.1]",
        "[::ffff:10.0.0.1]",
        "localhost",
        "LOCALHOST",
        "localhost.",
        "foo.localhost",
    ],
)
def test_callback_url_to_a_loopback_private_or_link_local_host_is_rejected(host: str) -> None:
    rejected(
        "callback_url",
        "must not point to a loopback, private or link-local host",
        callback_url=f"https://{host}/hook",
    )


@pytest.mark.parametrize(
    "host",
    ["172.32.0.1", "172.15.255.255", "8.8.8.8", "[2001:4860:4860::8888]", "hooks.example.com"],
)
def test_callback_url_to_a_public_host_is_accepted(host: str) -> None:
    url = f"https://{host}:8443/hook?task=1"
    assert url == VideoRequest(prompt="x", callback_url=url).callback_url


def test_callback_url_with_a_private_host_behind_a_port_and_credentials_is_rejected() -> None:
    rejected(
        "callback_url",
        "must not point to a loopback, private or link-local host",
        callback_url="https://user:pw@192.168.1.10:8443/hook",
    )


def test_callback_url_without_a_host_is_rejected() -> None:
    rejected("callback_url", "must name a host", callback_url="https:///hook")


def test_callback_url_that_cannot_be_parsed_is_rejected() -> None:
    rejected("callback_url", "is not a valid URL", callback_url="https://[::1/hook")


def test_non_string_callback_url_is_rejected() -> None:
    rejected("callback_url", "must be a string URL", callback_url=12345)


def test_with_callback_sets_a_valid_url_and_rejects_a_private_one() -> None:
    request = VideoRequest(prompt="x")
    assert CALLBACK == request.with_callback(CALLBACK).callback_url
    with pytest.raises(InvalidRequestError) as info:
        request.with_callback("https://10.0.0.1/hook")
    assert "callback_url" == info.value.field


def test_callback_url_rules_apply_to_models_the_sdk_does_not_know() -> None:
    rejected(
        "callback_url",
        "must not point to a loopback, private or link-local host",
        model="kling-v2-master",
        callback_url="https://127.0.0.1/hook",
    )


# -- sora-2 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("duration", [10, 15])
def test_sora_2_accepts_durations_10_and_15(duration: int) -> None:
    assert duration == VideoRequest(prompt="x", model=SORA_2, duration=duration).duration


@pytest.mark.parametrize("duration", [4, 8, 12, 25])
def test_sora_2_rejects_other_durations(duration: int) -> None:
    rejected(
        "duration", "must be one of 10, 15 seconds for sora-2", model=SORA_2, duration=duration
    )


def test_sora_2_default_duration_is_10() -> None:
    assert 10 == VideoRequest(prompt="x", model=SORA_2).effective_duration


@pytest.mark.parametrize("ratio", ["16:9", "9:16"])
def test_sora_2_accepts_16_9_and_9_16(ratio: str) -> None:
    assert ratio == VideoRequest(prompt="x", model=SORA_2, aspect_ratio=ratio).aspect_ratio


@pytest.mark.parametrize("ratio", ["1280x720", "720x1280", "4:3"])
def test_sora_2_rejects_other_aspect_ratios(ratio: str) -> None:
    rejected(
        "aspect_ratio", "must be one of 16:9, 9:16 for sora-2", model=SORA_2, aspect_ratio=ratio
    )


def test_sora_2_rejects_two_images() -> None:
    rejected("image_urls", "at most 1 image(s) for sora-2", model=SORA_2, image_urls=[IMAGE] * 2)


@pytest.mark.parametrize("value", [True, False])
def test_sora_2_remove_watermark_accepts_a_bool(value: bool) -> None:
    request = VideoRequest(prompt="x", model=SORA_2, extra={"remove_watermark": value})
    assert value is request.to_json()["remove_watermark"]


@pytest.mark.parametrize("value", ["true", 1, None])
def test_sora_2_remove_watermark_rejects_a_non_bool(value: Any) -> None:
    rejected(
        "extra.remove_watermark",
        "must be true or false",
        model=SORA_2,
        extra={"remove_watermark": value},
    )


# -- sora-2-pro -----------------------------------------------------------------------------


@pytest.mark.parametrize(("duration", "quality"), [(15, "high"), (25, "standard"), (None, "high")])
def test_sora_2_pro_accepts_the_quality_that_matches_the_duration(
    duration: int | None, quality: str
) -> None:
    request = VideoRequest(
        prompt="x", model=SORA_PRO, duration=duration, extra={"quality": quality}
    )
    assert quality == request.to_json()["quality"]


@pytest.mark.parametrize(
    ("duration", "quality", "rule"),
    [
        (15, "standard", "must be 'high' for a 15 s sora-2-pro video"),
        (25, "high", "must be 'standard' for a 25 s sora-2-pro video"),
        (None, "standard", "must be 'high' for a 15 s sora-2-pro video"),
    ],
)
def test_sora_2_pro_rejects_a_quality_that_does_not_match_the_duration(
    duration: int | None, quality: str, rule: str
) -> None:
    rejected("extra.quality", rule, model=SORA_PRO, duration=duration, extra={"quality": quality})


def test_sora_2_pro_rejects_an_unknown_quality() -> None:
    rejected(
        "extra.quality",
        "must be one of standard, high for sora-2-pro",
        model=SORA_PRO,
        extra={"quality": "ultra"},
    )


@pytest.mark.parametrize("duration", [15, 25])
def test_sora_2_pro_accepts_durations_15_and_25(duration: int) -> None:
    assert duration == VideoRequest(prompt="x", model=SORA_PRO, duration=duration).duration


@pytest.mark.parametrize("duration", [10, 12, 20])
def test_sora_2_pro_rejects_other_durations(duration: int) -> None:
    rejected(
        "duration",
        "must be one of 15, 25 seconds for sora-2-pro",
        model=SORA_PRO,
        duration=duration,
    )


# -- sora-2-pro-remix -----------------------------------------------------------------------


def test_sora_2_pro_remix_with_base_video_task_id_is_accepted() -> None:
    base = {"base_video_task_id": "task-unified-1757169743-7cvnl5zw"}
    request = VideoRequest(prompt="x", model=REMIX, extra=base)
    assert {"model": REMIX, "prompt": "x", **base} == request.to_json()


def test_sora_2_pro_remix_without_base_video_task_id_is_rejected() -> None:
    rejected("extra.base_video_task_id", "is required for sora-2-pro-remix", model=REMIX)


def test_sora_2_pro_remix_with_a_non_string_base_video_task_id_is_rejected() -> None:
    rejected(
        "extra.base_video_task_id",
        "must be a string",
        model=REMIX,
        extra={"base_video_task_id": 1757169743},
    )


# -- veo-3.1-fast-generate-preview ----------------------------------------------------------


@pytest.mark.parametrize("duration", [4, 6, 8])
def test_veo_accepts_durations_4_6_8(duration: int) -> None:
    assert duration == VideoRequest(prompt="x", model=VEO, duration=duration).duration


@pytest.mark.parametrize("duration", [5, 10, 12])
def test_veo_rejects_other_durations(duration: int) -> None:
    rejected("duration", f"must be one of 4, 6, 8 seconds for {VEO}", model=VEO, duration=duration)


@pytest.mark.parametrize("n", [1, 4])
def test_veo_n_from_1_to_4_is_accepted(n: int) -> None:
    assert n == VideoRequest(prompt="x", model=VEO, extra={"n": n}).to_json()["n"]


@pytest.mark.parametrize("n", [0, 5, -1, "2", True, 2.0])
def test_veo_n_outside_1_to_4_or_not_an_integer_is_rejected(n: Any) -> None:
    rejected("extra.n", "must be an integer from 1 to 4", model=VEO, extra={"n": n})


@pytest.mark.parametrize("quality", ["720p", "1080p", "4k"])
def test_veo_quality_720p_1080p_4k_is_accepted(quality: str) -> None:
    request = VideoRequest(prompt="x", model=VEO, extra={"quality": quality})
    assert quality == request.to_json()["quality"]


@pytest.mark.parametrize("quality", ["8k", "4K", "high", 1080])
def test_veo_other_quality_is_rejected(quality: Any) -> None:
    rejected(
        "extra.quality",
        f"must be one of 720p, 1080p, 4k for {VEO}",
        model=VEO,
        extra={"quality": quality},
    )


@pytest.mark.parametrize("kind", ["TEXT", "FIRST&LAST", "REFERENCE"])
def test_veo_generation_type_accepts_the_documented_values(kind: str) -> None:
    request = VideoRequest(prompt="x", model=VEO, extra={"generation_type": kind})
    assert kind == request.to_json()["generation_type"]


@pytest.mark.parametrize("kind", ["text", "IMAGE", ""])
def test_veo_generation_type_rejects_other_values(kind: str) -> None:
    rejected(
        "extra.generation_type",
        f"must be one of TEXT, FIRST&LAST, REFERENCE for {VEO}",
        model=VEO,
        extra={"generation_type": kind},
    )


@pytest.mark.parametrize("value", [True, False])
def test_veo_generate_audio_accepts_a_bool(value: bool) -> None:
    request = VideoRequest(prompt="x", model=VEO, extra={"generate_audio": value})
    assert value is request.to_json()["generate_audio"]


@pytest.mark.parametrize("value", ["false", 0, 1])
def test_veo_generate_audio_rejects_a_non_bool(value: Any) -> None:
    rejected(
        "extra.generate_audio", "must be true or false", model=VEO, extra={"generate_audio": value}
    )


def test_veo_negative_prompt_must_be_a_string() -> None:
    ok = VideoRequest(prompt="x", model=VEO, extra={"negative_prompt": "blur"})
    assert "blur" == ok.to_json()["negative_prompt"]
    rejected("extra.negative_prompt", "must be a string", model=VEO, extra={"negative_prompt": 3})


def test_veo_seed_is_sent_as_given() -> None:
    request = VideoRequest(prompt="x", model=VEO, extra={"seed": 1234})
    assert {"model": VEO, "prompt": "x", "seed": 1234} == request.to_json()


# -- extra ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("model", "sora-2"),
        ("prompt", "other"),
        ("aspect_ratio", "16:9"),
        ("duration", 8),
        ("image_urls", [IMAGE]),
        ("callback_url", CALLBACK),
    ],
)
def test_extra_may_not_override_a_core_field(name: str, value: Any) -> None:
    rejected(f"extra.{name}", f"set {name} through its own argument", extra={name: value})


def test_extra_may_not_override_a_core_field_for_an_unknown_model_either() -> None:
    rejected(
        "extra.duration",
        "set duration through its own argument",
        model="kling-v2-master",
        extra={"duration": 7},
    )


def test_extra_that_is_not_a_mapping_is_rejected() -> None:
    rejected("extra", "must be a mapping of field names", extra=[("quality", "4k")])


def test_extra_with_a_non_string_key_is_rejected() -> None:
    rejected("extra", "field names must be strings", extra={1: "x"})


# -- unknown models -------------------------------------------------------------------------


def test_an_unknown_model_is_sent_with_only_the_shared_checks() -> None:
    images = [f"https://cdn.example.com/{i}.gif" for i in range(5)]
    request = VideoRequest(
        prompt="p" * 5000,
        model="kling-v2-master",
        duration=7,
        aspect_ratio="21:9",
        image_urls=images,
        extra={"mode": "pro", "cfg_scale": 0.5},
    )
    expected = {
        "model": "kling-v2-master",
        "prompt": "p" * 5000,
        "aspect_ratio": "21:9",
        "duration": 7,
        "image_urls": images,
        "mode": "pro",
        "cfg_scale": 0.5,
    }
    assert (expected, None, 7) == (
        request.to_json(),
        request.spec,
        request.effective_duration,
    )


@pytest.mark.parametrize(
    ("field", "rule", "kwargs"),
    [
        # issue 12, attack 9: a 10 MB prompt and duration -5 were sent for an unknown --model
        ("prompt", "must be at most 5000 characters", {"prompt": "p" * 10_000_000}),
        ("prompt", "must be at most 5000 characters (got 5001)", {"prompt": "p" * 5001}),
        ("prompt", "must not be blank", {"prompt": " "}),
        ("duration", "must be a positive integer", {"duration": -5}),
        ("duration", "must be a positive integer", {"duration": 0}),
        ("duration", "must be a positive integer", {"duration": 4.5}),
        ("image_urls", "at most 30 image URLs", {"image_urls": [IMAGE] * 31}),
    ],
)
def test_an_unknown_model_still_gets_the_shared_checks(
    field: str, rule: str, kwargs: dict[str, Any]
) -> None:
    rejected(field, rule, model="kling-v2-master", **kwargs)


def test_an_unknown_model_is_logged_once_as_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="evolink_async"):
        VideoRequest(prompt="x", model="brand-new-model-7")
        VideoRequest(prompt="y", model="brand-new-model-7")
    warnings = [r for r in caplog.records if "brand-new-model-7" in r.getMessage()]
    assert (1, "WARNING") == (len(warnings), warnings[0].levelname)


def test_a_listed_model_without_published_rules_is_not_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level("WARNING", logger="evolink_async"):
        VideoRequest(prompt="x", model="veo3-fast", duration=8)
    assert [] == [r for r in caplog.records if "veo3-fast" in r.getMessage()]


# -- JSON -----------------------------------------------------------------------------------


def test_to_json_writes_every_set_field_with_the_api_names() -> None:
    request = VideoRequest(
        prompt="A cat playing piano",
        aspect_ratio="16:9",
        duration=8,
        image_urls=[IMAGE],
        callback_url=CALLBACK,
    )
    expected = {
        "model": SORA_PREVIEW,
        "prompt": "A cat playing piano",
        "aspect_ratio": "16:9",
        "duration": 8,
        "image_urls": [IMAGE],
        "callback_url": CALLBACK,
    }
    assert expected == request.to_json()


@pytest.mark.parametrize(
    "request_",
    [
        VideoRequest(prompt="A cat playing piano"),
        VideoRequest(
            prompt="dog",
            aspect_ratio="720x1280",
            duration=12,
            image_urls=[IMAGE],
            callback_url=CALLBACK,
        ),
        VideoRequest(
            prompt="waves",
            model=VEO,
            duration=6,
            image_urls=[IMAGE] * 3,
            extra={"n": 2, "quality": "4k", "generate_audio": False, "seed": 7},
        ),
        VideoRequest(prompt="x", model="seedance-2.0", duration=7, extra={"camera": "fixed"}),
    ],
)
def test_from_json_of_to_json_gives_the_same_request(request_: VideoRequest) -> None:
    assert request_ == VideoRequest.from_json(request_.to_json())


def test_documented_jsonl_fields_go_to_extra_and_are_sent() -> None:
    line = {"prompt": "waves", "model": VEO, "seed": 42, "quality": "1080p"}
    request = VideoRequest.from_json(line)
    assert ({"seed": 42, "quality": "1080p"}, line) == (dict(request.extra), request.to_json())


def test_any_field_of_a_model_the_registry_does_not_know_is_sent() -> None:
    line = {"prompt": "waves", "model": "brand-new-model", "my_tag": "x", "durration": 8}
    request = VideoRequest.from_json(line)
    assert line == request.to_json()


@pytest.mark.parametrize(
    ("model", "typo", "meant"),
    [
        (SORA_PREVIEW, "durration", "duration"),
        (SORA_PREVIEW, "aspectratio", "aspect_ratio"),
        (VEO, "negative_promt", "negative_prompt"),
        (VEO, "image_url", "image_urls"),
    ],
)
def test_a_misspelled_field_of_a_known_model_is_refused_with_the_field_it_meant(
    model: str, typo: str, meant: str
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        VideoRequest.from_json({"prompt": "waves", "model": model, typo: 8})
    assert f"extra.{typo}" == info.value.field
    assert f"is not a field of {model}; did you mean {meant!r}?" in str(info.value)


def test_a_field_nothing_like_a_known_one_is_refused_with_the_models_fields() -> None:
    with pytest.raises(InvalidRequestError, match="its other fields: generate_audio, "):
        VideoRequest(prompt="waves", model=VEO, extra={"my_tag": "x"})
    with pytest.raises(InvalidRequestError, match="it has no other fields"):
        VideoRequest(prompt="waves", model=SORA_PREVIEW, extra={"my_tag": "x"})


def test_unknown_jsonl_fields_are_validated_where_the_model_has_rules() -> None:
    with pytest.raises(InvalidRequestError) as info:
        VideoRequest.from_json({"prompt": "waves", "model": VEO, "n": 9})
    assert "extra.n" == info.value.field


def test_from_json_with_a_null_model_uses_the_default_model() -> None:
    request = VideoRequest.from_json({"prompt": "x", "model": None})
    assert VideoRequest(prompt="x") == request


def test_from_json_without_prompt_is_rejected() -> None:
    with pytest.raises(InvalidRequestError) as info:
        VideoRequest.from_json({"model": SORA_PREVIEW, "duration": 4})
    assert ("prompt", "is required") == (info.value.field, info.value.rule)


@pytest.mark.parametrize("data", [["prompt"], "A cat", None])
def test_from_json_of_a_non_object_is_rejected(data: Any) -> None:
    with pytest.raises(InvalidRequestError) as info:
        VideoRequest.from_json(data)
    assert ("request", "must be a JSON object") == (info.value.field, info.value.rule)


def test_from_json_validates_core_fields() -> None:
    with pytest.raises(InvalidRequestError) as info:
        VideoRequest.from_json({"prompt": "x", "duration": 5})
    assert "duration" == info.value.field


def test_a_rejected_long_prompt_is_not_copied_whole_into_the_message() -> None:
    err = rejected(
        "prompt", "must be at most 5000 characters", prompt="p" * 5001, model=SORA_PREVIEW
    )
    assert "p" * 100 not in str(err)


# -- hosts ----------------------------------------------------------------------------------

# host, is_private_host, is_loopback_host
HOSTS = [
    ("127.0.0.1", True, True),
    ("127.1.2.3", True, True),
    ("[::1]", True, True),
    ("[::ffff:127.0.0.1]", True, True),
    ("2130706433", True, True),
    ("0x7f.1", True, True),
    ("127.1", True, True),
    ("localhost", True, True),
    ("LOCALHOST", True, True),
    ("localhost.", True, True),
    ("a.localhost", True, True),
    ("10.1.2.3", True, False),
    ("[::ffff:10.0.0.1]", True, False),
    ("172.16.0.1", True, False),
    ("192.168.0.1", True, False),
    ("100.64.0.1", True, False),
    ("169.254.1.1", True, False),
    ("[fe80::1]", True, False),
    ("[fe80::1%eth0]", True, False),
    ("[fc00::1]", True, False),
    ("0.0.0.0", True, False),
    ("[::]", True, False),
    ("224.0.0.1", True, False),
    ("[ff02::1]", True, False),
    ("240.0.0.1", True, False),
    ("8.8.8.8", False, False),
    ("172.32.0.1", False, False),
    ("[2001:4860:4860::8888]", False, False),
    ("hooks.example.com", False, False),
    ("1e100.net", False, False),
    ("localhost.example.com", False, False),
]


@pytest.mark.parametrize(("host", "private", "loopback"), HOSTS)
def test_private_and_loopback_host_detection(host: str, private: bool, loopback: bool) -> None:
    assert (private, loopback) == (is_private_host(host), is_loopback_host(host))


# -- prices ---------------------------------------------------------------------------------


def test_the_published_prices_live_in_the_model_specs_and_limits_uses_them() -> None:
    assert {SORA_PREVIEW: {4: 23.04, 8: 46.08, 12: 69.12}} == DEFAULT_PRICES
    assert {SORA_PREVIEW: MODEL_SPECS[SORA_PREVIEW].prices} == DEFAULT_PRICES
    assert DEFAULT_PRICES is limits.DEFAULT_PRICES


# -- messages -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "limit", "expected"),
    [
        ("short", 80, "'short'"),
        ("x" * 81, 80, "<str of 81 characters>"),
        ("x" * 60, 60, "'" + "x" * 56 + "..."),
        (list(range(40)), 20, "[0, 1, 2, 3, 4, 5..."),
        (None, 80, "None"),
    ],
)
def test_shorten_cuts_a_value_for_a_message(value: object, limit: int, expected: str) -> None:
    assert expected == shorten(value, limit)


def test_a_long_prompt_is_told_by_its_length_in_the_message() -> None:
    err = rejected("prompt", "must be at most 5000 characters", prompt="x" * 5001)
    assert "prompt=<str of 5001 characters>: " in str(err)
