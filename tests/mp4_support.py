"""Reading an MP4's header back (independently of the simulator's writer): its duration from
``mvhd``, its display size from ``tkhd``, its coded size from the ``avc1`` sample entry; and
the clip the simulator serves for a task, to compare downloaded files with."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import attrs

from evolink_async.testing._clip import make_clip

__all__ = ["Mp4Info", "read_mp4", "served_clip"]

_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl"}


@attrs.frozen
class Mp4Info:
    duration: float  # seconds (mvhd)
    width: int  # display (tkhd)
    height: int
    coded: tuple[int, int]  # avc1 sample entry
    samples: int  # stsz


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, body start, body end) of the boxes in data[start:end], descending containers."""
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        assert 8 <= size <= end - pos, f"bad box size {size} at {pos}"
        yield kind, pos + 8, pos + size
        if kind in _CONTAINERS:
            yield from _boxes(data, pos + 8, pos + size)
        pos += size
    assert pos == end, "trailing bytes after the last box"


def read_mp4(data: bytes) -> Mp4Info:
    boxes = {kind: (a, b) for kind, a, b in _boxes(data, 0, len(data))}
    assert {b"ftyp", b"moov", b"mdat", b"mvhd", b"tkhd", b"stsd", b"stsz"} <= boxes.keys()
    a, _ = boxes[b"mvhd"]
    assert 0 == data[a]  # version 0
    timescale, duration = struct.unpack(">II", data[a + 12 : a + 20])
    a, b = boxes[b"tkhd"]
    width, height = struct.unpack(">II", data[b - 8 : b])
    a, _ = boxes[b"stsd"]
    entry = a + 8  # version/flags, entry count
    assert b"avc1" == data[entry + 4 : entry + 8]
    coded = struct.unpack(">HH", data[entry + 8 + 24 : entry + 8 + 28])
    a, _ = boxes[b"stsz"]
    samples = struct.unpack(">I", data[a + 8 : a + 12])[0]
    return Mp4Info(duration / timescale, width >> 16, height >> 16, coded, samples)


def served_clip(task_id: str, data: bytes) -> bytes:
    """The clip the simulator serves for ``task_id`` with the duration and size ``data``
    claims: equal to ``data`` exactly when ``data`` is that task's whole, intact clip."""
    info = read_mp4(data)
    return make_clip(task_id, round(info.duration), f"{info.width}x{info.height}")
