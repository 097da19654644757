"""The simulator's result clips: made for each task, of its duration and aspect ratio, read
back here by an MP4 header reader of the tests' own (tests/mp4_support.py)."""

from __future__ import annotations

import argparse
import hashlib

import pytest
from mp4_support import Mp4Info, read_mp4
from test_simulator_support import running

from evolink_async.testing import SimulatorConfig, cli
from evolink_async.testing._files import sample_video


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        ({"duration": 4}, Mp4Info(4.0, 1280, 720, (64, 36), 4)),
        ({"duration": 8, "aspect_ratio": "16:9"}, Mp4Info(8.0, 1280, 720, (64, 36), 8)),
        ({"duration": 12, "aspect_ratio": "9:16"}, Mp4Info(12.0, 720, 1280, (36, 64), 12)),
        ({"duration": 4, "aspect_ratio": "720x1280"}, Mp4Info(4.0, 720, 1280, (36, 64), 4)),
        (
            {"model": "sora-2-pro", "duration": 25, "aspect_ratio": "9:16"},
            Mp4Info(25.0, 720, 1280, (36, 64), 25),
        ),
    ],
    ids=["default-ratio", "16:9", "9:16", "720x1280", "pro-25s"],
)
async def test_a_clip_has_the_requested_duration_and_size(
    request_: dict[str, object], expected: Mp4Info
) -> None:
    async with running() as (sim, api):
        task_id = await api.created_id(**{"model": "sora-2-preview", **request_})
        sim.complete_task(task_id)
        url = (await api.task(task_id)).body["results"][0]
        async with api.session.get(url) as response:
            data = await response.read()

    assert expected == read_mp4(data)
    assert len(data) < 5_000 * expected.samples  # small: one tiny frame a second


async def test_clips_differ_per_task_and_the_knob_serves_the_sample() -> None:
    downloads: dict[bool, list[bytes]] = {}
    for per_task in (True, False):
        async with running(per_task_clips=per_task) as (sim, api):
            got = []
            for _ in range(3):  # the same request three times: three tasks
                task_id = await api.created_id(prompt="same", duration=4)
                sim.complete_task(task_id)
                url = (await api.task(task_id)).body["results"][0]
                async with api.session.get(url) as response:
                    got.append(await response.read())
            downloads[per_task] = got

    assert 3 == len({hashlib.sha256(d).digest() for d in downloads[True]})
    assert [sample_video()] * 3 == downloads[False]


@pytest.mark.parametrize(
    ("argv", "expected"), [([], None), (["--sample-clip"], False)], ids=["default", "sample"]
)
def test_the_sample_clip_flag_turns_per_task_clips_off(
    argv: list[str], expected: bool | None
) -> None:
    parser = argparse.ArgumentParser()
    cli.add_simulator_arguments(parser)

    kwargs = cli.simulator_kwargs_from_args(parser.parse_args(argv))

    assert expected == kwargs.get("per_task_clips")
    assert (expected is not False) == SimulatorConfig(**kwargs).per_task_clips
