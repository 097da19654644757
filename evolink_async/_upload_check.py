"""A local file checked before it is uploaded to the Files API: a regular file, not empty, at
most ``MAX_UPLOAD_BYTES``, and an image the API accepts (JPEG, PNG, GIF or WebP, told by its
first bytes, not its name). Blocking: call it from a worker thread."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import anyio.to_thread
import attrs

from .errors import InvalidRequestError

__all__ = ["MAX_UPLOAD_BYTES", "UploadFile", "aread_upload", "read_upload", "sniff_image"]

#: the largest image an upload may be (the per-model limits are often lower: 10 to 30 MB)
MAX_UPLOAD_BYTES = 30 * 1024 * 1024
_MAGIC = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def sniff_image(head: bytes) -> str | None:
    """The image MIME type of a file that starts with ``head``; None for anything else."""
    for magic, mime in _MAGIC:
        if head.startswith(magic):
            return mime
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


@attrs.frozen
class UploadFile:
    """A checked local image: its bytes, type, name and content hash."""

    path: Path
    data: bytes = attrs.field(repr=False)
    mime: str
    sha256: str

    @property
    def name(self) -> str:
        return self.path.name


def read_upload(
    path: str | os.PathLike[str], field: str = "path", *, max_bytes: int = MAX_UPLOAD_BYTES
) -> UploadFile:
    """Read and check ``path``; :class:`InvalidRequestError` naming ``field`` otherwise."""
    file = Path(path)
    try:
        size = file.stat().st_size
        if not file.is_file():
            raise InvalidRequestError(field, str(path), "must be a regular file")
        if size == 0:
            raise InvalidRequestError(field, str(path), "is an empty file")
        if size > max_bytes:
            raise InvalidRequestError(
                field, str(path), f"must be at most {max_bytes} bytes (it has {size})"
            )
        data = file.read_bytes()
    except OSError as exc:
        raise InvalidRequestError(field, str(path), f"cannot be read ({exc.strerror})") from None
    mime = sniff_image(data[:16])
    if mime is None:
        raise InvalidRequestError(field, str(path), "must be a JPEG, PNG, GIF or WebP image")
    return UploadFile(file, data, mime, hashlib.sha256(data).hexdigest())


async def aread_upload(path: str | os.PathLike[str], field: str = "path") -> UploadFile:
    """:func:`read_upload` in a worker thread (it reads the whole file)."""
    return await anyio.to_thread.run_sync(read_upload, path, field)
