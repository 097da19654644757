"""The Files API (``files-api.evolink.ai``), simulated on the same server: an upload (base64
JSON or multipart stream) is stored and served at its ``file_url`` until it expires, 72 hours
later on the simulated clock.

Answers follow the documented envelope ``{"success", "code", "msg", "data"}``; an error is
``success: false`` with its ``code`` as the HTTP status.
"""

from __future__ import annotations

import base64
import binascii
import itertools
from collections.abc import Callable
from typing import Any

import attrs
from aiohttp import web

from ._clock import Clock

__all__ = ["FILE_TTL", "MAX_UPLOAD_BYTES", "Uploads"]

FILE_TTL = 72 * 3600.0  # simulated seconds
MAX_UPLOAD_BYTES = 100 * 1024 * 1024
IMAGE_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp"}
_MAGIC = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF8", "image/gif"),
)


def _sniff(data: bytes) -> str | None:
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


@attrs.define
class StoredFile:
    file_id: str
    name: str
    data: bytes
    mime: str
    uploaded_at: float

    @property
    def expires_at(self) -> float:
        return self.uploaded_at + FILE_TTL


def _failure(status: int, message: str) -> web.Response:
    body = {"success": False, "code": status, "msg": message}
    return web.json_response(body, status=status)


class Uploads:
    """The simulated Files API: what was uploaded, and its routes' handlers."""

    def __init__(self, clock: Clock, authorize: Callable[[web.Request], None]) -> None:
        self.clock = clock
        self.authorize = authorize
        self.files: dict[str, StoredFile] = {}
        self._ids = itertools.count(1)

    def routes(self) -> list[tuple[str, str, str, Any]]:
        """(method, path, endpoint, handler) of the Files API."""
        return [
            ("POST", "/api/v1/files/upload/base64", "upload", self.base64),
            ("POST", "/api/v1/files/upload/stream", "upload", self.stream),
            ("GET", "/uploads/{file_id}/{name}", "uploads", self.serve),
        ]

    def _store(self, request: web.Request, data: bytes, name: str) -> web.Response:
        if not data:
            return _failure(400, "empty file")
        if len(data) > MAX_UPLOAD_BYTES:
            return _failure(413, f"file larger than {MAX_UPLOAD_BYTES} bytes")
        mime = _sniff(data)
        if mime not in IMAGE_TYPES:
            return _failure(400, "only image/jpeg, image/png, image/gif, image/webp")
        file_id = f"file_sim{next(self._ids):06d}"
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:255] or "upload"
        now = self.clock.now()
        stored = StoredFile(file_id, safe, data, mime, now)
        self.files[file_id] = stored
        url = f"{request.scheme}://{request.host}/uploads/{file_id}/{safe}"
        data_out: dict[str, Any] = {
            "file_id": file_id,
            "file_name": safe,
            "original_name": name,
            "file_size": len(data),
            "mime_type": mime,
            "upload_path": "",
            "file_url": url,
            "download_url": url,
            "upload_time": now,
            "expires_at": stored.expires_at,
        }
        body = {"success": True, "code": 200, "msg": "File uploaded successfully"}
        return web.json_response({**body, "data": data_out})

    async def base64(self, request: web.Request, call: object) -> web.StreamResponse:
        """POST /api/v1/files/upload/base64 ``{base64_data (data URL or raw), file_name?}``."""
        self.authorize(request)
        try:
            body = await request.json()
        except ValueError:
            return _failure(400, "body must be JSON")
        raw = body.get("base64_data") if isinstance(body, dict) else None
        if not isinstance(raw, str) or not raw:
            return _failure(400, "base64_data is required")
        payload = raw.split(",", 1)[1] if raw.startswith("data:") and "," in raw else raw
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            return _failure(400, "base64_data is not valid base64")
        name = body.get("file_name")
        return self._store(request, data, name if isinstance(name, str) else "upload")

    async def stream(self, request: web.Request, call: object) -> web.StreamResponse:
        """POST /api/v1/files/upload/stream: multipart with a ``file`` part."""
        self.authorize(request)
        form = await request.post()
        part = form.get("file")
        if not isinstance(part, web.FileField):
            return _failure(400, "file is required")
        name = form.get("file_name") or form.get("fileName") or part.filename
        return self._store(request, part.file.read(), str(name))

    async def serve(self, request: web.Request, call: object) -> web.StreamResponse:
        """GET /uploads/{file_id}/{name}: the file, until it expires."""
        stored = self.files.get(request.match_info["file_id"])
        if stored is None or self.clock.now() >= stored.expires_at:
            return _failure(404, "file not found or expired")
        return web.Response(body=stored.data, content_type=stored.mime)
