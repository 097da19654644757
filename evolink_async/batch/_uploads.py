"""Local images in a batch: a prompts line may give a file path in ``image_urls``. The file is
checked when the prompts are loaded (it exists, it is a JPEG, PNG, GIF or WebP image within
the size limit) and stands in the request as a placeholder URL naming its content hash, so
the line's fingerprint does not change between runs. Before the run sends anything, each
distinct file is uploaded once through the Files API and its URL replaces the placeholder in
the creates."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import attrs

from .._upload_check import read_upload
from ..errors import EvolinkError
from ..models import VideoRequest

if TYPE_CHECKING:
    from ..client import EvolinkClient

__all__ = ["PLACEHOLDER_HOST", "UploadError", "local_images", "upload_all", "with_uploads"]

#: the host of a placeholder URL (``.invalid`` never resolves: it cannot reach the service)
PLACEHOLDER_HOST = "local-upload.invalid"


def _is_local(value: object) -> bool:
    if not isinstance(value, str) or not value:
        return False
    scheme = urlsplit(value).scheme.lower()
    return scheme in ("", "file") and not value.startswith("data:")


def local_images(
    fields: dict[str, Any], base_dir: Path | None
) -> tuple[dict[str, Any], dict[str, str]]:
    """``fields`` with every local path of ``image_urls`` replaced by a placeholder URL, and
    the placeholders' files; ``InvalidRequestError`` (naming ``image_urls[i]``) for a file
    that cannot be uploaded. Blocking (reads the files)."""
    images = fields.get("image_urls")
    if not isinstance(images, list) or not any(_is_local(v) for v in images):
        return fields, {}
    uploads: dict[str, str] = {}
    replaced: list[Any] = []
    for i, value in enumerate(images):
        if not _is_local(value):
            replaced.append(value)
            continue
        raw = urlsplit(value).path if value.lower().startswith("file:") else value
        path = Path(os.path.expanduser(raw))
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        checked = read_upload(path, f"image_urls[{i}]")
        placeholder = f"https://{PLACEHOLDER_HOST}/{checked.sha256}"
        uploads[placeholder] = str(path)
        replaced.append(placeholder)
    return {**fields, "image_urls": replaced}, uploads


class UploadError(EvolinkError):
    """A local image of the batch could not be uploaded; no create was sent."""


async def upload_all(client: EvolinkClient, files: Iterable[Mapping[str, str]]) -> dict[str, str]:
    """Upload each distinct file once: placeholder URL → its uploaded URL. Raises
    :class:`UploadError` (before any create) when one fails."""
    urls: dict[str, str] = {}
    for mapping in files:
        for placeholder, path in mapping.items():
            if placeholder not in urls:
                try:
                    urls[placeholder] = await client.upload_file(path)
                except EvolinkError as exc:
                    raise UploadError(f"uploading {path} failed, nothing was sent: {exc}") from exc
    return urls


def with_uploads(request: VideoRequest, urls: Mapping[str, str]) -> VideoRequest:
    """``request`` with its placeholders replaced by the uploaded URLs."""
    if not urls or not any(u in urls for u in request.image_urls):
        return request
    return attrs.evolve(request, image_urls=tuple(urls.get(u, u) for u in request.image_urls))
