"""Streamed, atomic, resumable file downloads.

:func:`download_file` fetches a result video (or any http/https URL) into a local file:

* the body is streamed to a temporary file next to the destination
  (``.<name>.<random>.part``) and moved into place with :func:`os.replace` only once it is
  complete, fsynced and verified, so ``dest`` never holds a partial file and an existing
  ``dest`` is left untouched when the download fails or is cancelled;
* the size is checked against ``Content-Length``: a short body is resumed with a ``Range``
  request, a longer one (or one over ``max_bytes``) stops the download for good;
* connection errors, timeouts, cut-off bodies, 5xx, 408 and 429 are retried with exponential
  backoff and full jitter, at least as long as a ``Retry-After`` (seconds or an HTTP date)
  asks, but no wait at all while ``set_testing(True)`` is on; other 4xx (an expired link
  answers 403 or 404) are not;
* no file system call runs on the event loop: they all go through worker threads.

:func:`safe_filename` turns untrusted pieces (task ids from the server) into a file name that
cannot leave its directory.

Exceptions::

    DownloadError               the download failed (.url without query string, .reason, .status)
    ├── DownloadTooLargeError   larger than max_bytes or than the announced Content-Length
    └── DownloadIntegrityError  expected_size / expected_sha256 did not match
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import unicodedata
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import anyio
import anyio.to_thread
import attrs

from . import _retry
from ._files import fsync_dir, part_name, write_all
from .errors import DownloadError, DownloadIntegrityError, DownloadTooLargeError, redact_url

__all__ = [
    "DownloadError",
    "DownloadIntegrityError",
    "DownloadResult",
    "DownloadTooLargeError",
    "download_file",
    "redact_url",
    "safe_filename",
]

_ALLOWED_SCHEMES = frozenset({"http", "https"})
_RETRY_STATUSES = frozenset({408, 425, 429})
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)


@attrs.frozen
class DownloadResult:
    """A completed download.

    Attributes:
        path: where the file now is (the ``dest`` given to :func:`download_file`).
        size: its size in bytes.
        sha256: the lowercase hex SHA-256 of its content.
        url: the URL it came from (shown redacted in ``repr``).
        attempts: how many HTTP requests it took.
    """

    path: Path
    size: int
    sha256: str
    url: str = attrs.field(repr=redact_url)
    attempts: int


class _Retry(Exception):
    """Internal: this attempt failed in a way that another attempt may fix."""

    def __init__(
        self, reason: str, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after


def _write_and_hash(fd: int, data: bytes, hasher: hashlib._Hash) -> None:
    write_all(fd, data)
    hasher.update(data)


def _truncate(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)


@attrs.frozen
class _Stream:
    """Where the file comes from, and how it is read."""

    session: aiohttp.ClientSession
    url: str
    chunk_size: int
    timeout: float | None
    on_progress: Callable[[int, int | None], None] | None


@attrs.frozen
class _Expect:
    """What the downloaded file must be."""

    max_bytes: int | None
    size: int | None
    sha256: str | None


@attrs.frozen
class _Retries:
    """How many requests to make at most, and how long to wait between them."""

    attempts: int
    initial: float
    maximum: float
    sleep: Callable[[float], Awaitable[None]]

    def wait(self, failures: int, retry_after: float | None) -> float:
        """Full jitter up to ``initial * 2 ** (failures - 1)`` (at most ``maximum``), but at
        least a ``Retry-After`` capped at ``maximum``; zero while ``set_testing`` is on."""
        # 2.0 ** 1024 overflows a float: past 2 ** 60 the cap has long been reached anyway
        retry = min(failures, 61)
        delay = _retry.backoff(retry, initial=self.initial, maximum=self.maximum, jitter=1.0)
        if retry_after is not None and not _retry.is_testing():
            delay = max(delay, min(retry_after, self.maximum))
        return delay


class _Transfer:
    """The state of one :func:`download_file` call, shared by its attempts."""

    def __init__(self, stream: _Stream, fd: int, expect: _Expect) -> None:
        self.session = stream.session
        self.url = stream.url
        self.fd = fd
        self.max_bytes = expect.max_bytes
        self.expected_size = expect.size
        self.expected_sha256 = expect.sha256
        self.chunk_size = stream.chunk_size
        self.timeout = aiohttp.ClientTimeout(total=stream.timeout)
        self.on_progress = stream.on_progress
        self.hasher = hashlib.sha256()
        self.have = 0  # bytes in the temporary file
        self.total: int | None = None  # the announced size of the whole file, when known
        self.can_resume = True  # until the server says otherwise
        self.validator: str | None = None  # strong ETag or Last-Modified, for If-Range

    async def restart(self) -> None:
        """Throw away what was received so far."""
        if self.have:
            await anyio.to_thread.run_sync(_truncate, self.fd)
        self.have = 0
        self.hasher = hashlib.sha256()

    def fail(self, reason: str, status: int | None = None) -> DownloadError:
        return DownloadError(self.url, reason, status)

    def too_large(self, reason: str) -> DownloadTooLargeError:
        return DownloadTooLargeError(self.url, reason)

    def check_total(self, total: int | None) -> None:
        if total is None:
            return
        if self.max_bytes is not None and total > self.max_bytes:
            raise self.too_large(f"announced size {total} bytes exceeds max_bytes={self.max_bytes}")
        if self.expected_size is not None and total != self.expected_size:
            raise DownloadIntegrityError(
                self.url, f"announced size {total} bytes, expected {self.expected_size}"
            )

    async def attempt(self) -> None:
        """Make one request and stream its body; return when the file is complete."""
        headers = {"Accept-Encoding": "identity"}
        ranged = self.have > 0 and self.can_resume
        if ranged:
            headers["Range"] = f"bytes={self.have}-"
            if self.validator is not None:
                headers["If-Range"] = self.validator
        elif self.have:
            await self.restart()
        try:
            async with self.session.get(
                self.url, headers=headers, timeout=self.timeout, raise_for_status=False
            ) as response:
                await self._consume(response, ranged=ranged)
        except aiohttp.ClientPayloadError as exc:
            raise _Retry(f"body cut short after {self.have} bytes ({exc})") from exc
        except aiohttp.InvalidURL as exc:  # includes redirects to non-http URLs
            raise self.fail(f"invalid URL or redirect target: {exc}") from exc
        except aiohttp.TooManyRedirects as exc:
            raise self.fail("too many redirects", exc.status) from exc
        except aiohttp.ClientConnectorCertificateError as exc:
            raise self.fail(f"TLS certificate rejected: {exc.certificate_error}") from exc
        except aiohttp.ClientResponseError as exc:
            # raise_for_status is off, so this is aiohttp's parser rejecting the response.
            if "data after" in str(exc.message).lower():
                # Bytes followed the announced Content-Length on a closing connection.
                raise self.too_large("server sent more bytes than Content-Length announced") from (
                    exc
                )
            raise _Retry(f"malformed response: {exc.message}") from exc
        except aiohttp.ClientError as exc:
            raise _Retry(f"connection error: {exc!r}") from exc
        except asyncio.TimeoutError as exc:
            raise _Retry(f"no complete answer within timeout={self.timeout.total}s") from exc

    async def _consume(self, response: aiohttp.ClientResponse, *, ranged: bool) -> None:
        status = response.status
        encoded = response.headers.get("Content-Encoding", "identity").strip().lower() not in {
            "",
            "identity",
        }
        if status == 206:
            await self._accept_partial(response)
        elif status == 200:
            if self.have:  # the server ignored the Range (or If-Range failed): start over
                await self.restart()
            # With a content coding, Content-Length counts encoded bytes, not the file's.
            total = None if encoded else response.content_length
            accept_ranges = response.headers.get("Accept-Ranges", "").strip().lower()
            self.can_resume = not encoded and accept_ranges != "none"
            etag = response.headers.get("ETag")
            if etag is not None and not etag.startswith("W/"):
                self.validator = etag
            else:
                self.validator = response.headers.get("Last-Modified")
            self.check_total(total)
            self.total = total
        elif status in _RETRY_STATUSES or 500 <= status <= 599:
            raise _Retry(
                f"HTTP {status} {response.reason or ''}".rstrip(),
                status,
                _retry.retry_after_from_headers(response.headers),
            )
        elif status == 416 and ranged:
            await self.restart()
            self.can_resume = False
            raise _Retry("HTTP 416: the server refused to resume; starting over", status)
        else:
            raise self.fail(f"HTTP {status} {response.reason or ''}".rstrip(), status)

        async for chunk in response.content.iter_chunked(self.chunk_size):
            received = self.have + len(chunk)
            if self.total is not None and received > self.total:
                raise self.too_large(
                    f"server sent more than the announced {self.total} bytes",
                )
            if self.max_bytes is not None and received > self.max_bytes:
                raise self.too_large(f"body exceeds max_bytes={self.max_bytes}")
            if self.expected_size is not None and received > self.expected_size:
                raise DownloadIntegrityError(
                    self.url, f"body is longer than the expected {self.expected_size} bytes"
                )
            await anyio.to_thread.run_sync(_write_and_hash, self.fd, chunk, self.hasher)
            self.have = received
            if self.on_progress is not None:
                self.on_progress(self.have, self.total)
        if self.total is not None and self.have < self.total:
            raise _Retry(f"body cut short at {self.have} of {self.total} bytes")

    async def _accept_partial(self, response: aiohttp.ClientResponse) -> None:
        """Check that a 206 answer continues exactly where the file ends."""
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if match is None or int(match[1]) != self.have:
            await self.restart()
            self.can_resume = False
            raise _Retry("the server answered with another range than requested; starting over")
        total: int | None = None if match[3] == "*" else int(match[3])
        if total is None:
            length = response.content_length
            total = None if length is None else self.have + length
        if self.total is not None and total is not None and total != self.total:
            previous, self.total = self.total, None
            await self.restart()
            raise _Retry(f"the file changed size ({previous} → {total} bytes); starting over")
        self.check_total(total)
        if total is not None:
            self.total = total

    async def run(self, retries: _Retries) -> int:
        """Make attempts until the file is complete; return how many requests it took."""
        made = 0
        while True:
            made += 1
            try:
                await self.attempt()
            except _Retry as retry:
                if made >= retries.attempts:
                    raise self.fail(
                        f"{retry.reason} (gave up after {made} attempts)", retry.status
                    ) from retry.__cause__
                await retries.sleep(retries.wait(made, retry.retry_after))
            else:
                return made

    def verify(self) -> str:
        """The file's hex SHA-256, once its size and digest match what was expected."""
        digest = self.hasher.hexdigest()
        if self.expected_size is not None and self.have != self.expected_size:
            raise DownloadIntegrityError(
                self.url, f"got {self.have} bytes, expected {self.expected_size}"
            )
        expected_sha256 = None if self.expected_sha256 is None else self.expected_sha256.lower()
        if expected_sha256 is not None and digest != expected_sha256:
            raise DownloadIntegrityError(
                self.url, f"sha256 {digest} does not match the expected {expected_sha256}"
            )
        return digest


def _check_options(
    url: str, dest: str | os.PathLike[str], expect: _Expect, retries: _Retries, chunk_size: int
) -> Path:
    """The destination's path, once every option is in range."""
    scheme = urlsplit(url).scheme.lower() if url else ""
    if scheme not in _ALLOWED_SCHEMES:
        raise DownloadError(
            url, f"URL scheme {scheme or '(none)'!r} refused: only http and https are allowed"
        )
    if retries.attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {retries.attempts}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    if retries.initial < 0 or retries.maximum < 0:
        raise ValueError("wait_initial and wait_max must not be negative")
    max_bytes, size, sha256 = expect.max_bytes, expect.size, expect.sha256
    if max_bytes is not None and max_bytes < 0:
        raise ValueError(f"max_bytes must not be negative, got {max_bytes}")
    if sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
        raise ValueError("expected_sha256 must be 64 hexadecimal digits")
    if size is not None and max_bytes is not None and size > max_bytes:
        raise DownloadTooLargeError(
            url, f"expected size {size} bytes exceeds max_bytes={max_bytes}"
        )
    dest_path = Path(os.fspath(dest))
    if dest_path.name in {"", ".", ".."}:
        raise ValueError(f"dest must name a file, got {os.fspath(dest)!r}")
    return dest_path


class _PartFile:
    """The temporary file beside the destination, until it replaces it or is removed."""

    def __init__(self, path: anyio.Path, fd: int) -> None:
        self.path = path
        self.fd = fd
        self.fd_open = True

    @classmethod
    async def create(cls, url: str, dest: Path) -> _PartFile:
        path = anyio.Path(dest.with_name(part_name(dest.name)))
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = await anyio.to_thread.run_sync(os.open, str(path), flags, 0o666)
        except OSError as exc:
            raise DownloadError(url, f"cannot create {path}: {exc.strerror or exc}") from exc
        return cls(path, fd)

    async def commit(self, url: str, dest: Path) -> None:
        """Make the file durable and move it over ``dest``."""
        try:
            await anyio.to_thread.run_sync(os.fsync, self.fd)
            self.fd_open = False
            await anyio.to_thread.run_sync(os.close, self.fd)
            await self.path.replace(dest)
        except OSError as exc:
            raise DownloadError(url, f"cannot write {dest}: {exc.strerror or exc}") from exc
        await anyio.to_thread.run_sync(fsync_dir, dest.parent)

    async def discard(self) -> None:
        """Close and remove the file; also on cancellation (the clean-up is shielded)."""
        with anyio.CancelScope(shield=True):
            if self.fd_open:
                self.fd_open = False
                await anyio.to_thread.run_sync(os.close, self.fd)
            await self.path.unlink(missing_ok=True)


async def download_file(
    session: aiohttp.ClientSession,
    url: str,
    dest: str | os.PathLike[str],
    *,
    max_bytes: int | None = 2 * 1024**3,
    attempts: int = 4,
    wait_initial: float = 0.5,
    wait_max: float = 8.0,
    chunk_size: int = 256 * 1024,
    # A per-attempt limit passed to aiohttp, not a deadline for the whole call.
    timeout: float | None = 300.0,  # noqa: ASYNC109
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    on_progress: Callable[[int, int | None], None] | None = None,
    expected_size: int | None = None,
    expected_sha256: str | None = None,
) -> DownloadResult:
    """Download ``url`` into ``dest`` atomically, resuming and retrying as needed.

    Args:
        session: the aiohttp session to use (its ``raise_for_status`` is overridden).
        url: an ``http`` or ``https`` URL; any other scheme is refused before any I/O.
        dest: the destination file; its directory must exist. Replaced if it exists, but only
            by a complete, verified file.
        max_bytes: refuse bodies larger than this (checked against ``Content-Length`` up front
            and while streaming); ``None`` = no limit.
        attempts: the number of requests to make at most (resumed attempts included).
        wait_initial: the backoff cap after the first failure; doubles after each failure.
        wait_max: the largest backoff (also caps an honoured ``Retry-After``).
        chunk_size: the read size, in bytes.
        timeout: seconds allowed for each attempt (connect + whole body); ``None`` = no limit.
        sleep: awaited with each backoff delay (zero while testing); inject a recorder in tests.
        on_progress: called as ``on_progress(received, total)`` after each chunk; ``total``
            is ``None`` when the server did not announce a size.
        expected_size: if given, the file must have exactly this many bytes.
        expected_sha256: if given, the file's SHA-256 (hex, any case) must match.

    Returns:
        a :class:`DownloadResult`.

    Raises:
        DownloadTooLargeError: over ``max_bytes`` or over the announced ``Content-Length``.
        DownloadIntegrityError: ``expected_size`` or ``expected_sha256`` did not match.
        DownloadError: the scheme is refused, an answer such as 403 or 404 is final, the
            destination cannot be written, or every attempt failed.
        ValueError: an option is out of range.
    """
    expect = _Expect(max_bytes=max_bytes, size=expected_size, sha256=expected_sha256)
    retries = _Retries(attempts=attempts, initial=wait_initial, maximum=wait_max, sleep=sleep)
    dest_path = _check_options(url, dest, expect, retries, chunk_size)
    stream = _Stream(session, url, chunk_size, timeout, on_progress)
    return await _download(stream, dest_path, expect, retries)


async def _download(
    stream: _Stream, dest: Path, expect: _Expect, retries: _Retries
) -> DownloadResult:
    part = await _PartFile.create(stream.url, dest)
    try:
        transfer = _Transfer(stream, part.fd, expect)
        made = await transfer.run(retries)
        digest = transfer.verify()
        await part.commit(stream.url, dest)
    except BaseException:
        await part.discard()
        raise
    return DownloadResult(
        path=dest, size=transfer.have, sha256=digest, url=stream.url, attempts=made
    )


_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9._-]+")
_DOT_RUN = re.compile(r"\.{2,}")


def safe_filename(*parts: str, max_length: int = 100) -> str:
    """Build a file name from untrusted pieces, such as task ids from the server.

    Each piece is folded to ASCII (accents dropped), every run of characters outside
    ``[A-Za-z0-9._-]`` becomes ``_``, runs of dots become one dot, and leading or trailing
    ``.``, ``_`` and ``-`` are stripped; the non-empty pieces are joined with ``-``. The result
    is never empty (``"file"`` if nothing is left), never starts with a dot or dash, never
    contains ``..`` or a path separator, and has at most ``max_length`` characters (a longer
    name is cut and ends with 8 hex digits of a hash of the input, so distinct long inputs stay
    distinct). Add an extension yourself: ``safe_filename(f"{line:05d}", task_id) + ".mp4"``.

    >>> safe_filename("00001", "../../x")
    '00001-x'
    """
    if max_length < 16:
        raise ValueError(f"max_length must be at least 16, got {max_length}")
    cleaned: list[str] = []
    for part in parts:
        text = unicodedata.normalize("NFKD", str(part))
        text = "".join(ch for ch in text if not unicodedata.combining(ch))
        text = _UNSAFE_RUN.sub("_", text)
        text = _DOT_RUN.sub(".", text)
        text = text.strip("._-")
        if text:
            cleaned.append(text)
    name = "-".join(cleaned) or "file"
    if len(name) > max_length:
        whole = "\x00".join(str(part) for part in parts).encode("utf-8", "surrogatepass")
        digest = hashlib.sha256(whole).hexdigest()[:8]
        name = f"{name[: max_length - 9].rstrip('._-')}-{digest}"
    return name
