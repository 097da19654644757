"""The result video: the bytes a completed task serves, signed links, and byte ranges.

By default each task's clip is made for it by :mod:`._clip` (:func:`task_video`); with
``per_task_clips=False`` every task serves the packaged sample.
``data/sample.mp4`` is a real 1 s H.264 clip (~10 KB); how it was made is in ``data/README``:

    ffmpeg -f lavfi -i testsrc2=size=160x90:rate=10 -f lavfi -i sine=frequency=440:sample_rate=22050
      -t 1 -c:v libx264 -preset veryslow -crf 35 -pix_fmt yuv420p -c:a aac -b:a 32k
      -map_metadata -1 -movflags +faststart -y evolink_async/testing/data/sample.mp4
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from importlib import resources

from ._clip import make_clip
from ._task import SimulatedTask

__all__ = ["UnsatisfiableRange", "parse_range", "sample_video", "sign", "task_video"]

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@functools.cache
def sample_video() -> bytes:
    """The packaged sample clip (read once)."""
    return (resources.files(__package__) / "data" / "sample.mp4").read_bytes()


def task_video(task: SimulatedTask, *, per_task: bool = True) -> bytes:
    """The bytes ``task``'s result link serves: its own clip, or the packaged sample."""
    if not per_task:
        return sample_video()
    return make_clip(task.id, task.duration, task.aspect_ratio)


def sign(secret: bytes, task_id: str, expires: int) -> str:
    """The ``sig`` of a result link."""
    return hmac.new(secret, f"{task_id}:{expires}".encode(), hashlib.sha256).hexdigest()[:32]


class UnsatisfiableRange(ValueError):
    """A Range none of whose bytes exist: answer 416."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive ``(first, last)`` byte of a single-range ``Range`` header.

    None means "send the whole file": no header, or one this server ignores (malformed or
    several ranges), as RFC 9110 allows.
    """
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if first == "":  # suffix: the last N bytes
        n = int(last)
        if n == 0:
            raise UnsatisfiableRange(header)
        return max(0, size - n), size - 1
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if start >= size:
        raise UnsatisfiableRange(header)
    if end < start:
        return None
    return start, end
