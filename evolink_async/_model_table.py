"""The model registry, as data: every video model of the gateway reference (§6 of
``evolink-gateway.md``) with its published rules. No logic here beyond building the table.

Conventions: durations are the published set (ranges spelled out by :func:`seconds`);
``qualities`` are the published values of ``quality``; ``max_images=0`` where the model takes no
``image_urls``; ``None`` where a rule is not published (only the shared checks apply). Prompt
limits counted in *tokens* by the reference are not enforced here (a character count would
refuse valid prompts), except sora-2-preview's, kept from the first reference.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final

from ._model_spec import ModelSpec, seconds

__all__ = ["LISTED_MODELS", "MODEL_SPECS"]

R3 = ("16:9", "9:16", "1:1")
R5 = ("16:9", "9:16", "1:1", "4:3", "3:4")
R6 = ("16:9", "21:9", "4:3", "1:1", "3:4", "9:16")
R7 = (*R6, "adaptive")
ADAPTIVE = ("adaptive",)
GROK5 = ("16:9", "9:16", "1:1", "3:2", "2:3")
HORSE = ("16:9", "9:16", "1:1", "4:3", "3:4", "4:5", "5:4", "9:21", "21:9")
Q_GEMINI = ("360p", "720p", "1080p", "4k")
Q_SD = ("480p", "720p", "1080p")
Q_SD4K = (*Q_SD, "4k")
Q_HD = ("720p", "1080p")
Q_HD4K = (*Q_HD, "4k")
SEED31 = {"seed": (1, 2_147_483_647)}
KLING_PARAMS = frozenset(
    {"multi_shot", "shot_type", "multi_prompt", "element_list", "watermark_info"}
)
SORA_RATIOS = ("1280x720", "720x1280", "16:9", "9:16")


def _sora() -> Iterator[ModelSpec]:
    """The sora-2 family: the first reference's rules, kept as they were."""
    yield ModelSpec(
        "sora-2-preview",
        durations=(4, 8, 12),
        default_duration=4,
        prompt_max=5000,
        aspect_ratios=SORA_RATIOS,
        max_images=1,
        prices={4: 23.04, 8: 46.08, 12: 69.12},
    )
    yield ModelSpec(
        "sora-2-pro-preview",
        durations=(4, 8, 12),
        default_duration=4,
        prompt_max=5000,
        aspect_ratios=("16:9", "9:16"),
        qualities=Q_HD,
    )
    yield ModelSpec(
        "sora-2",
        durations=(10, 15),
        default_duration=10,
        prompt_max=5000,
        aspect_ratios=("16:9", "9:16"),
        extra_bools={"remove_watermark"},
    )
    yield ModelSpec(
        "sora-2-pro",
        durations=(15, 25),
        default_duration=15,
        extra_choices={"quality": ("standard", "high")},
        extra_bools={"remove_watermark"},
    )
    yield ModelSpec(
        "sora-2-pro-remix",
        durations=(15, 25),
        default_duration=15,
        prompt_max=2000,
        aspect_ratios=("16:9", "9:16"),
        extra_strings={"base_video_task_id"},
        required_extra={"base_video_task_id"},
        extra_bools={"remove_watermark"},
    )


def _veo() -> Iterator[ModelSpec]:
    for name, default in (("veo-3.1-fast-generate-preview", 8), ("veo-3.1-generate-preview", 4)):
        yield ModelSpec(
            name,
            durations=(4, 6, 8),
            default_duration=default,
            prompt_max=2000 if name.startswith("veo-3.1-fast") else None,
            aspect_ratios=("auto", "16:9", "9:16"),
            max_images=3,
            qualities=Q_HD4K,
            extra_choices={
                "generation_type": ("TEXT", "FIRST&LAST", "REFERENCE"),
                "person_generation": ("allow_adult", "dont_allow"),
                "resize_mode": ("pad", "crop"),
            },
            extra_ranges={"n": (1, 4), "seed": (1, 4_294_967_295)},
            extra_bools={"generate_audio"},
            extra_strings={"negative_prompt"},
        )
    for name, images in (("veo3.1-fast-beta", 3), ("veo3.1-pro-beta", 2)):
        kinds = ("TEXT", "FIRST&LAST", "REFERENCE")[: 3 if images == 3 else 2]
        yield ModelSpec(
            name,
            aspect_ratios=("auto", "16:9", "9:16"),
            max_images=images,
            qualities=("720p",),
            extra_choices={"generation_type": kinds},
            extra_bools={"enhance_prompt"},
        )


def _minimax() -> Iterator[ModelSpec]:
    hailuo = frozenset({"prompt_optimizer", "fast_pretreatment"})
    yield ModelSpec(
        "MiniMax-Hailuo-02",
        durations=(6, 10),
        default_duration=6,
        prompt_max=2000,
        max_images=2,
        qualities=("512p", "768p", "1080p"),
        required=(),
        model_params=hailuo,
    )
    yield ModelSpec(
        "MiniMax-Hailuo-2.3",
        durations=(6, 10),
        default_duration=6,
        prompt_max=2000,
        qualities=("768p", "1080p"),
        model_params=hailuo,
    )
    yield ModelSpec(
        "MiniMax-Hailuo-2.3-Fast",
        durations=(6, 10),
        default_duration=6,
        prompt_max=2000,
        min_images=1,
        qualities=("768p", "1080p"),
        required={"image_urls"},
        model_params={"prompt_optimizer"},
    )
    h3: dict[str, Any] = {"durations": seconds(4, 15), "default_duration": 4}
    h3q = ("768p", "2k")
    yield ModelSpec(
        "minimax-h3-text-to-video", prompt_max=7000, aspect_ratios=R6, qualities=h3q,
        max_images=0, **h3,
    )  # fmt: skip
    yield ModelSpec(
        "minimax-h3-image-to-video", qualities=h3q, max_images=0,
        frames={"image_start", "image_end"}, **h3,
    )  # fmt: skip
    yield ModelSpec(
        "minimax-h3-reference-to-video", aspect_ratios=R7, qualities=h3q, max_images=9,
        video_urls=(0, 3), audio_urls=(0, 3), **h3,
    )  # fmt: skip
    mx: dict[str, Any] = {"durations": seconds(5, 15), "default_duration": 5}
    mxq = ("480p", "768p")
    for name in ("minimax-h3-max-text-to-video", "minimax-h3-max-turbo-text-to-video"):
        yield ModelSpec(name, aspect_ratios=R6, qualities=mxq, max_images=0, **mx)
    for name in ("minimax-h3-max-image-to-video", "minimax-h3-max-turbo-image-to-video"):
        yield ModelSpec(
            name, qualities=mxq, max_images=0, frames={"image_start", "image_end"},
            required={"prompt", "image_start"}, **mx,
        )  # fmt: skip
    yield ModelSpec(
        "minimax-h3-max-reference-to-video", aspect_ratios=R7, qualities=mxq, max_images=9,
        video_urls=(0, 3), audio_urls=(0, 3), **mx,
    )  # fmt: skip


def _gemini() -> Iterator[ModelSpec]:
    g11: dict[str, Any] = {"durations": seconds(3, 10), "default_duration": 3}
    ratios = ("16:9", "9:16", "auto")
    yield ModelSpec("gemini-omni-1.1-flash-text-to-video", aspect_ratios=ratios,
                    qualities=Q_GEMINI, max_images=0, **g11)  # fmt: skip
    yield ModelSpec("gemini-omni-1.1-flash-image-to-video", aspect_ratios=ratios,
                    qualities=Q_GEMINI, min_images=1, max_images=2,
                    required={"prompt", "image_urls"}, **g11)  # fmt: skip
    yield ModelSpec("gemini-omni-1.1-flash-reference-to-video", aspect_ratios=ratios,
                    qualities=Q_GEMINI, min_images=1, max_images=10, video_urls=(1, 3),
                    required={"prompt", "image_urls"}, **g11)  # fmt: skip
    # video-edit takes duration "auto" only: leave duration out (its default is "auto")
    yield ModelSpec("gemini-omni-1.1-flash-video-edit", aspect_ratios=("auto",),
                    qualities=(*Q_GEMINI, "auto"), max_images=10, video_urls=(1, 1),
                    required={"prompt", "video_urls"})  # fmt: skip
    yield ModelSpec("gemini-omni-1.1-flash-video-extend", aspect_ratios=("auto",),
                    qualities=(*Q_GEMINI, "auto"), max_images=10, video_urls=(1, 1),
                    required={"prompt", "video_urls"}, **g11)  # fmt: skip
    g: dict[str, Any] = {"durations": seconds(3, 10), "default_duration": 10,
                         "aspect_ratios": ratios}  # fmt: skip
    yield ModelSpec("gemini-omni-flash-text-to-video", max_images=0, **g)
    yield ModelSpec("gemini-omni-flash-image-to-video", min_images=1, max_images=1,
                    inline_images=True, **g)  # fmt: skip
    yield ModelSpec("gemini-omni-flash-reference-to-video", min_images=1, max_images=6,
                    inline_images=True, **g)  # fmt: skip
    yield ModelSpec("gemini-omni-flash-video-edit", max_images=0, video_urls=(1, 1))


def _grok_and_horse() -> Iterator[ModelSpec]:
    beta: dict[str, Any] = {"durations": seconds(6, 30), "default_duration": 6,
                            "aspect_ratios": GROK5, "qualities": ("480p", "720p"),
                            "extra_choices": {"mode": ("fun", "normal", "spicy")}}  # fmt: skip
    yield ModelSpec("grok-imagine-text-to-video-beta", max_images=0, **beta)
    yield ModelSpec("grok-imagine-image-to-video-beta", min_images=1, max_images=7,
                    required={"prompt", "image_urls"}, **beta)  # fmt: skip
    v1: dict[str, Any] = {"durations": seconds(1, 15), "default_duration": 6,
                          "aspect_ratios": (*GROK5, "4:3", "3:4"),
                          "qualities": ("480p", "720p")}  # fmt: skip
    yield ModelSpec("grok-imagine-video-1.0-t2v", max_images=0, **v1)
    yield ModelSpec("grok-imagine-video-1.0-i2v", min_images=1, max_images=7,
                    required={"prompt", "image_urls"}, **v1)  # fmt: skip
    yield ModelSpec("grok-imagine-video-1.5-preview", durations=seconds(1, 15),
                    default_duration=6, aspect_ratios=("auto", *GROK5), qualities=Q_SD,
                    max_images=7, prompt_max=4096)  # fmt: skip
    for version in ("1.0", "1.1"):
        h: dict[str, Any] = {"durations": seconds(3, 15), "default_duration": 5,
                             "qualities": Q_HD, "extra_ranges": SEED31}  # fmt: skip
        yield ModelSpec(f"happyhorse-{version}-text-to-video", aspect_ratios=HORSE,
                        max_images=0, **h)  # fmt: skip
        yield ModelSpec(f"happyhorse-{version}-image-to-video", min_images=1, max_images=1,
                        required={"image_urls"}, **h)  # fmt: skip
        yield ModelSpec(f"happyhorse-{version}-reference-to-video", aspect_ratios=HORSE,
                        min_images=1, max_images=9, required={"prompt", "image_urls"},
                        **h)  # fmt: skip
    yield ModelSpec("happyhorse-1.0-video-edit", qualities=Q_HD, max_images=5,
                    video_urls=(1, 1), required={"prompt", "video_urls"},
                    extra_bools={"keep_original_sound"}, extra_ranges=SEED31)  # fmt: skip


def _kling() -> Iterator[ModelSpec]:
    k: dict[str, Any] = {"durations": seconds(3, 15), "default_duration": 5}
    yield ModelSpec("kling-custom-element", max_images=0, required={"model_params"},
                    model_params={"element_name", "element_description", "reference_type",
                                  "element_image_list", "element_video_list",
                                  "element_voice_id"},
                    required_params={"element_name", "element_description",
                                     "reference_type"})  # fmt: skip
    yield ModelSpec("kling-o1-image-to-video", durations=(5, 10), default_duration=5,
                    aspect_ratios=R3, prompt_max=5000, min_images=1, max_images=2,
                    required={"prompt", "image_urls"})  # fmt: skip
    for name in ("kling-o1-video-edit", "kling-o1-video-edit-fast"):
        yield ModelSpec(name, max_images=4, video_urls=(1, 1), required={"prompt", "video_urls"},
                        extra_bools={"keep_original_sound"})  # fmt: skip
    sound = {"sound": ("on", "off")}
    yield ModelSpec("kling-o3-text-to-video", aspect_ratios=R3, qualities=Q_HD4K, max_images=0,
                    prompt_max=2500, extra_choices=sound, model_params=KLING_PARAMS,
                    **k)  # fmt: skip
    yield ModelSpec("kling-o3-image-to-video", aspect_ratios=R3, qualities=Q_HD4K, max_images=4,
                    frames={"image_start", "image_end"}, prompt_max=2500, extra_choices=sound,
                    model_params=KLING_PARAMS, **k)  # fmt: skip
    yield ModelSpec("kling-o3-reference-to-video", durations=seconds(3, 10), default_duration=5,
                    aspect_ratios=R3, qualities=Q_HD, max_images=7,
                    extra_strings={"video_url"}, extra_bools={"keep_original_sound"},
                    model_params={"element_list", "watermark_info"})  # fmt: skip
    yield ModelSpec("kling-o3-video-edit", qualities=Q_HD, max_images=4, prompt_max=2500,
                    required=(), extra_strings={"video_url"},
                    extra_bools={"keep_original_sound"},
                    model_params={"element_list", "watermark_info"})  # fmt: skip
    motion = {"character_orientation", "keep_sound", "watermark_info"}
    yield ModelSpec("kling-v2.6-motion-control", qualities=Q_HD, min_images=1, max_images=1,
                    video_urls=(1, 1), prompt_max=2500,
                    required={"image_urls", "video_urls", "model_params"},
                    model_params=motion, required_params={"character_orientation"})  # fmt: skip
    yield ModelSpec("kling-v3-motion-control", qualities=Q_HD, min_images=1, max_images=1,
                    video_urls=(1, 1), required={"image_urls", "video_urls", "model_params"},
                    model_params={*motion, "element_list"},
                    required_params={"character_orientation"})  # fmt: skip
    v3 = {"negative_prompt"}
    yield ModelSpec("kling-v3-text-to-video", aspect_ratios=R3, qualities=Q_HD4K, max_images=0,
                    extra_strings=v3, extra_choices=sound,
                    model_params={"multi_shot", "shot_type", "multi_prompt", "watermark_info"},
                    **k)  # fmt: skip
    yield ModelSpec("kling-v3-image-to-video", qualities=Q_HD4K, max_images=0, prompt_max=2500,
                    frames={"image_start", "image_end"}, required={"image_start"},
                    extra_strings=v3, extra_choices=sound, model_params=KLING_PARAMS,
                    **k)  # fmt: skip
    yield ModelSpec("kling-v3-turbo-text-to-video", aspect_ratios=R3, qualities=Q_HD,
                    max_images=0, prompt_max=2500, **k)  # fmt: skip
    yield ModelSpec("kling-v3-turbo-image-to-video", qualities=Q_HD, max_images=0,
                    prompt_max=2500, frames={"image_start"}, required={"image_start"},
                    **k)  # fmt: skip


def _seedance() -> Iterator[ModelSpec]:
    yield ModelSpec("doubao-seedance-1.0-pro-fast", durations=seconds(2, 12), default_duration=5,
                    aspect_ratios=(*R6, "keep_ratio", "adaptive"), qualities=Q_SD)  # fmt: skip
    yield ModelSpec("seedance-1.5-pro", durations=seconds(4, 12), default_duration=5,
                    aspect_ratios=R7, qualities=Q_SD, max_images=2,
                    extra_bools={"generate_audio"})  # fmt: skip
    s2: dict[str, Any] = {"durations": seconds(4, 15), "default_duration": 5,
                          "aspect_ratios": R7,
                          "extra_bools": {"generate_audio", "content_filter"}}  # fmt: skip
    for prefix, qualities in (("2.0", Q_SD4K), ("2.0-fast", Q_SD[:2]), ("2.0-mini", Q_SD[:2])):
        web = {"web_search"} if prefix in ("2.0", "2.0-fast") else None
        yield ModelSpec(f"seedance-{prefix}-text-to-video", qualities=qualities, max_images=0,
                        model_params=web, **s2)  # fmt: skip
        yield ModelSpec(f"seedance-{prefix}-image-to-video", qualities=qualities, min_images=1,
                        max_images=2, required={"prompt", "image_urls"}, **s2)  # fmt: skip
        yield ModelSpec(f"seedance-{prefix}-reference-to-video", qualities=qualities,
                        max_images=9, video_urls=(0, 3), audio_urls=(0, 3), **s2)  # fmt: skip
    s25: dict[str, Any] = {"durations": seconds(4, 30), "default_duration": 5,
                           "duration_auto": True, "qualities": Q_SD,
                           "extra_bools": {"draft", "generate_audio", "content_filter"},
                           "extra_choices": {"output_format": ("mp4", "mov")}}  # fmt: skip
    yield ModelSpec("seedance-2.5-text-to-video", aspect_ratios=R7, max_images=0,
                    model_params={"web_search"}, **s25)  # fmt: skip
    yield ModelSpec("seedance-2.5-image-to-video", aspect_ratios=ADAPTIVE, min_images=1,
                    max_images=2, required={"prompt", "image_urls"}, **s25)  # fmt: skip
    yield ModelSpec("seedance-2.5-reference-to-video", aspect_ratios=R7, max_images=30,
                    video_urls=(0, 10), audio_urls=(0, 10), **s25)  # fmt: skip
    yield ModelSpec("seedance-2.5-video-extend", aspect_ratios=ADAPTIVE, max_images=30,
                    video_urls=(1, 10), audio_urls=(0, 10),
                    required={"prompt", "video_urls"}, **s25)  # fmt: skip
    edit = {**s25, "durations": (), "default_duration": None}
    yield ModelSpec("seedance-2.5-video-edit", aspect_ratios=ADAPTIVE, max_images=30,
                    video_urls=(1, 10), audio_urls=(0, 10),
                    required={"prompt", "video_urls"}, **edit)  # fmt: skip
    yield ModelSpec("seedance-2.5-draft-to-video", max_images=0, required={"source_task_id"},
                    extra_strings={"source_task_id"},
                    extra_choices={"output_format": ("mp4", "mov")})  # fmt: skip


def _wan() -> Iterator[ModelSpec]:
    yield ModelSpec("wan2.5-text-to-video", durations=(5, 10), default_duration=5,
                    aspect_ratios=R5, qualities=Q_SD, max_images=0, prompt_max=2000,
                    extra_bools={"prompt_extend"})  # fmt: skip
    yield ModelSpec("wan2.5-image-to-video", durations=(5, 10), default_duration=5,
                    qualities=Q_SD, min_images=1, max_images=1,
                    required={"prompt", "image_urls"}, extra_bools={"prompt_extend"})  # fmt: skip
    w26: dict[str, Any] = {"durations": seconds(2, 15), "default_duration": 5,
                           "qualities": Q_HD, "prompt_max": 1500,
                           "extra_bools": {"prompt_extend"}}  # fmt: skip
    yield ModelSpec("wan2.6-text-to-video", aspect_ratios=R5, max_images=0,
                    extra_strings={"audio_url"}, model_params={"shot_type"}, **w26)  # fmt: skip
    for name in ("wan2.6-image-to-video", "wan2.6-image-to-video-flash"):
        flash = {**w26, "extra_bools": {"prompt_extend", "generate_audio"}} if "flash" in name \
            else w26  # fmt: skip
        yield ModelSpec(name, min_images=1, max_images=1, required={"prompt", "image_urls"},
                        extra_strings={"audio_url"}, model_params={"shot_type"},
                        **flash)  # fmt: skip
    for name in ("wan2.6-reference-video", "wan2.6-reference-video-flash"):
        yield ModelSpec(name, durations=seconds(2, 10), default_duration=5, aspect_ratios=R5,
                        qualities=Q_HD, max_images=0, video_urls=(1, 3),
                        required={"prompt", "video_urls"},
                        extra_bools={"generate_audio"} if "flash" in name else (),
                        extra_choices={"shot_type": ("single", "multi")})  # fmt: skip
    w27: dict[str, Any] = {"durations": seconds(2, 15), "default_duration": 5,
                           "qualities": Q_HD}  # fmt: skip
    yield ModelSpec("wan2.7-text-to-video", aspect_ratios=R5, max_images=0, prompt_max=5000,
                    audio_urls=(0, 1), extra_strings={"negative_prompt"},
                    extra_bools={"prompt_extend"}, extra_ranges=SEED31, **w27)  # fmt: skip
    yield ModelSpec("wan2.7-image-to-video", max_images=0, required=(),
                    frames={"image_start", "image_end"}, video_urls=(0, 1), audio_urls=(0, 1),
                    extra_choices={"generation_mode": ("first_frame", "first_last_frame",
                                                       "video_continuation")},
                    **w27)  # fmt: skip
    yield ModelSpec("wan2.7-reference-video", aspect_ratios=R5, max_images=5,
                    frames={"image_start"}, video_urls=(0, 5), audio_urls=(0, 5),
                    model_params={"voice_bindings"}, **w27)  # fmt: skip
    yield ModelSpec("wan2.7-video-edit", durations=(0, *seconds(2, 10)), default_duration=0,
                    aspect_ratios=R5, qualities=Q_HD, max_images=4, video_urls=(1, 1),
                    required={"video_urls"}, extra_bools={"keep_original_sound"})  # fmt: skip
    w30: dict[str, Any] = {"durations": seconds(2, 30), "default_duration": 5,
                           "duration_auto": True, "qualities": Q_SD,
                           "aspect_ratios": ("adaptive", *R5),
                           "extra_bools": {"generate_audio"},
                           "extra_ranges": {"seed": (0, 2_147_483_647)}}  # fmt: skip
    for tier in ("wan3.0", "wan3.0-prime"):
        yield ModelSpec(f"{tier}-text-to-video", max_images=0, **w30)
        yield ModelSpec(f"{tier}-image-to-video", max_images=0, required={"image_start"},
                        frames={"image_start", "image_end"}, **w30)  # fmt: skip
        yield ModelSpec(f"{tier}-reference-video", max_images=10, required=(),
                        video_urls=(0, 5), audio_urls=(0, 5),
                        model_params={"file_url", "link_url"}, **w30)  # fmt: skip


def _others() -> Iterator[ModelSpec]:
    yield ModelSpec("omnihuman-1.5", max_images=1, min_images=1, required={"audio_url",
                    "image_urls"}, extra_strings={"audio_url"},
                    extra_bools={"pe_fast_mode", "subject_check", "auto_mask"},
                    extra_other={"mask_url", "seed"})  # fmt: skip
    yield ModelSpec("topaz-video-upscale", max_images=0, video_urls=(1, 1),
                    required={"video_urls"}, model_params={"upscale_factor"})  # fmt: skip
    yield ModelSpec("videoretalk", max_images=0, required={"video_url", "audio_url"},
                    extra_strings={"video_url", "audio_url", "ref_image_url"},
                    extra_bools={"video_extension"},
                    extra_ranges={"query_face_threshold": (120, 200)})  # fmt: skip


def _all() -> Iterator[ModelSpec]:
    for family in (
        _sora,
        _veo,
        _minimax,
        _gemini,
        _grok_and_horse,
        _kling,
        _seedance,
        _wan,
        _others,
    ):
        yield from family()


MODEL_SPECS: Final[Mapping[str, ModelSpec]] = {spec.name: spec for spec in _all()}
"""Every video model the reference documents, by name."""

LISTED_MODELS: Final[frozenset[str]] = frozenset(
    {
        "seedance-2.0",
        "sora-2-beta-max",
        "sora-character",
        "veo3.1-pro",
        "veo3.1-fast",
        "veo3.1-fast-extend",
        "veo3",
        "veo3-fast",
        "wan2.5-t2v-preview",
        "wan2.5-i2v-preview",
        "grok-imagine-text-to-video",
        "grok-imagine-image-to-video",
    }
)
"""Models the gateway lists with no published parameters: sent with the shared checks only,
without the "unknown model" warning."""
