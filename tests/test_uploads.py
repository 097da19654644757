"""The Files API: ``client.upload_file(path)`` against the simulator (stored, served at its
URL, expired after 72 simulated hours), the local checks, and a batch line with a local image
uploaded once and the create carrying the uploaded URL."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import aiohttp
import pytest
from cli_support import KEY, TIME_SCALE, read_manifest, service_args
from test_simulator_support import running

from evolink_async import EvolinkClient
from evolink_async._upload_check import read_upload
from evolink_async.batch import BatchInputError, parse_prompts
from evolink_async.cli import main
from evolink_async.errors import InvalidRequestError
from evolink_async.testing import ThreadedSimulator


def png(width: int = 2, height: int = 2, shade: int = 0) -> bytes:
    """A small valid PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = b"".join(b"\x00" + bytes([shade]) * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


async def test_an_uploaded_file_is_served_at_its_url_until_it_expires(tmp_path: Path) -> None:
    image = tmp_path / "frame.png"
    image.write_bytes(png())
    async with running() as (sim, _), EvolinkClient(sim.api_key, sim.base_url) as client:
        url = await client.upload_file(image)
        async with aiohttp.ClientSession() as session:
            async with session.get(url) as fresh:
                served = (fresh.status, await fresh.read())
            sim.advance(72 * 3600 + 1)
            async with session.get(url) as old:
                expired = old.status
    assert ((200, png()), 404, 1) == (served, expired, len(sim.uploads.files))


@pytest.mark.parametrize(
    ("content", "rule"),
    [
        (b"", "is an empty file"),
        (b"GIF89a" + b"\x00" * 10, None),  # a GIF is accepted
        (b"%PDF-1.7 not an image", "must be a JPEG, PNG, GIF or WebP image"),
    ],
)
async def test_a_file_that_is_not_an_image_is_refused_locally_and_nothing_sent(
    tmp_path: Path, content: bytes, rule: str | None
) -> None:
    path = tmp_path / "input.png"
    path.write_bytes(content)
    async with running() as (sim, _), EvolinkClient(sim.api_key, sim.base_url) as client:
        if rule is None:
            assert (await client.upload_file(path)).startswith(sim.base_url)
        else:
            with pytest.raises(InvalidRequestError) as info:
                await client.upload_file(path)
            assert ("path", True) == (info.value.field, rule in info.value.rule)
    assert (0 if rule else 1) == len(sim.uploads.files)


def test_a_file_over_the_size_limit_is_refused_naming_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(png(64, 64))
    with pytest.raises(InvalidRequestError) as info:
        read_upload(path, "image_urls[0]", max_bytes=20)
    assert ("image_urls[0]", True) == (info.value.field, "at most 20 bytes" in info.value.rule)


def test_a_missing_local_image_in_a_prompts_line_names_the_line_and_field(
    tmp_path: Path,
) -> None:
    line = json.dumps({"prompt": "a boat", "image_urls": ["no-such.png"]})
    with pytest.raises(BatchInputError) as info:
        parse_prompts([line], fmt="jsonl", base_dir=tmp_path)
    assert "line 1: image_urls[0]: cannot be read" in str(info.value)


def test_a_local_png_in_a_batch_is_uploaded_once_and_the_create_carries_its_url(
    tmp_path: Path,
) -> None:
    (tmp_path / "frame.png").write_bytes(png(shade=7))
    rows = [{"prompt": f"boat {i}", "image_urls": ["frame.png"], "duration": 4} for i in range(3)]
    source = tmp_path / "p.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "clips"
    with ThreadedSimulator(time_scale=TIME_SCALE, api_key=KEY, seed=3) as sim:
        code = main(["batch", str(source), "--out", str(out), "--quiet", *service_args(sim)])
        uploads = dict(sim.uploads.files)
        bodies = [sim.tasks[e["task_id"]] for e in read_manifest(out)]
    assert (0, 1) == (code, len(uploads))
    (stored,) = uploads.values()
    assert png(shade=7) == stored.data
    assert [(f"{sim.base_url}/uploads/{stored.file_id}/frame.png",)] * 3 == [
        t.image_urls for t in bodies
    ]


async def test_a_multipart_stream_upload_is_stored_under_its_given_name() -> None:
    async with running() as (_, api):
        form = aiohttp.FormData()
        form.add_field("file", png(), filename="raw.png", content_type="image/png")
        form.add_field("file_name", "cover.png")
        reply = await api.request("POST", "/api/v1/files/upload/stream", data=form)
        refused = await api.request(
            "POST", "/api/v1/files/upload/base64", json={"base64_data": "bm90IGFuIGltYWdl"}
        )
    assert (200, True, "cover.png", "image/png") == (
        reply.status,
        reply.body["success"],
        reply.body["data"]["file_name"],
        reply.body["data"]["mime_type"],
    )
    assert (400, False) == (refused.status, refused.body["success"])
