"""Batch input: a prompts file (``.txt`` or ``.jsonl``) in, validated :class:`BatchLine` out.

A ``.txt`` file has one prompt per line; a ``.jsonl`` file one request object per line, with
the API's field names. Blank lines and lines starting with ``#`` are skipped; ``-`` reads
standard input. Every line is validated before anything is sent: one or more bad lines raise
:class:`BatchInputError`, naming each line, field and rule. ``model``, ``duration`` and
``aspect_ratio`` defaults apply to the lines that do not set them. A line is identified by its
line number in the file (comments and blank lines count).

The input is read strictly (:mod:`._strict`): UTF-8, or UTF-16 with its byte-order mark;
UTF-16 without one is refused as a whole. A line with a control character (tab aside; in a
JSON string, escaped tab, newline and carriage return aside), a JSON line with a duplicate key
or nested deeper than 32 levels is a bad line, named with its number. The same request given
on several lines is not an error: :func:`duplicate_lines` finds them for the summary.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any, Literal

import attrs

from ..download import safe_filename
from ..errors import EvolinkError, InvalidRequestError, shorten
from ..models import VideoRequest
from ._strict import (
    InputProblem,
    control_character,
    decode_text,
    loads_object,
    text_looks_like_utf16,
)
from ._uploads import local_images
from .journal import fingerprint

__all__ = [
    "BatchInputError",
    "BatchLine",
    "LineProblem",
    "PromptFormat",
    "duplicate_lines",
    "load_prompts",
    "parse_prompts",
    "video_filename",
]

PromptFormat = Literal["auto", "txt", "jsonl"]

_JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson", ".json"})
_MAX_LISTED_PROBLEMS = 20


@attrs.frozen
class LineProblem:
    """Why one input line (or the input as a whole, ``line=None``) cannot be used."""

    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else "input"
        field = f"{self.field}: " if self.field else ""
        return f"{where}: {field}{self.message}"


class BatchInputError(EvolinkError, ValueError):
    """The prompts cannot be used as given; nothing was submitted.

    ``problems`` lists every bad line (line number, field, rule); ``source`` names the input.
    """

    def __init__(self, source: str, problems: Iterable[LineProblem], summary: str = "") -> None:
        self.source = source
        self.problems = tuple(problems)
        count = len(self.problems)
        if not summary:
            summary = f"{count} invalid line{'s' if count != 1 else ''}, nothing was submitted"
        shown = [f"  {p}" for p in self.problems[:_MAX_LISTED_PROBLEMS]]
        if count > _MAX_LISTED_PROBLEMS:
            shown.append(f"  ... and {count - _MAX_LISTED_PROBLEMS} more")
        super().__init__("\n".join([f"{source}: {summary}", *shown]))


@attrs.frozen
class BatchLine:
    """One prompt of a batch: its line number in the input and its validated request."""

    line: int
    request: VideoRequest
    #: local images of ``image_urls``: placeholder URL → file path (uploaded before the run)
    uploads: Mapping[str, str] = attrs.field(factory=dict)

    @property
    def prompt(self) -> str:
        return self.request.prompt

    @property
    def fingerprint(self) -> str:
        """The journal's fingerprint of the request (defaults applied)."""
        return fingerprint(self.request.to_json())


def _detect_format(first: str | None) -> Literal["txt", "jsonl"]:
    return "jsonl" if first is not None and first.lstrip().startswith("{") else "txt"


def _line_fields(text: str, fmt: Literal["txt", "jsonl"]) -> dict[str, Any]:
    """A stripped input line as the request's fields; :class:`InputProblem` when unusable."""
    found = control_character(text)
    if found is not None:
        raise InputProblem(f"control character {found}: not a prompt (is the file UTF-8?)")
    if fmt == "txt":
        return {"prompt": text}
    return loads_object(text)


def parse_prompts(
    lines: Iterable[str],
    *,
    fmt: Literal["txt", "jsonl"],
    model: str | None = None,
    duration: int | None = None,
    aspect_ratio: str | None = None,
    source: str = "<prompts>",
    base_dir: Path | None = None,
) -> list[BatchLine]:
    """Validate every line of a prompts text and return the requests, in input order.

    ``lines`` are the input's lines (line numbers count from 1, skipped lines included). A
    local file in ``image_urls`` (relative to ``base_dir``) is checked and uploaded later.
    Raises :class:`BatchInputError` listing every bad line when at least one is bad, or when
    there is no prompt at all.
    """
    defaults = {"model": model, "duration": duration, "aspect_ratio": aspect_ratio}
    result: list[BatchLine] = []
    problems: list[LineProblem] = []
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        try:
            fields = _line_fields(text, fmt)
        except InputProblem as exc:
            problems.append(LineProblem(number, exc.field, exc.message))
            continue
        for key, default in defaults.items():
            if default is not None and fields.get(key) is None:
                fields[key] = default
        try:
            fields, uploads = local_images(fields, base_dir)
            request = VideoRequest.from_json(fields)
        except InvalidRequestError as exc:
            rule = exc.rule if exc.value is None else f"{exc.rule} (got {shorten(exc.value, 60)})"
            problems.append(LineProblem(number, exc.field, rule))
            continue
        result.append(BatchLine(number, request, uploads))
    if problems:
        raise BatchInputError(source, problems)
    if not result:
        raise BatchInputError(source, [], "no prompts (only blank or # lines)")
    return result


def load_prompts(
    source: str | os.PathLike[str] | IO[str],
    *,
    fmt: PromptFormat = "auto",
    model: str | None = None,
    duration: int | None = None,
    aspect_ratio: str | None = None,
) -> list[BatchLine]:
    """Read and validate a prompts file (``.txt`` or ``.jsonl``; ``"-"`` = standard input).

    ``fmt="auto"`` picks ``jsonl`` for ``.jsonl``/``.ndjson``/``.json`` files and ``txt`` for
    other files; on standard input (or an open text stream) ``jsonl`` when the first prompt
    line starts with ``{``. Blocking: call it before the event loop or in a worker thread.

    Raises :class:`BatchInputError` (every bad line listed, or an unreadable input).
    """
    base_dir: Path | None = None  # where relative image paths start (stdin: the cwd)
    if isinstance(source, (str, os.PathLike)) and os.fspath(source) != "-":
        path = Path(source)
        name = str(path)
        base_dir = path.parent
        try:
            text = decode_text(path.read_bytes())
        except InputProblem as exc:
            raise BatchInputError(name, [], exc.message) from None
        except OSError as exc:
            raise BatchInputError(name, [], f"cannot read it: {exc.strerror or exc}") from None
        suffix_fmt: Literal["txt", "jsonl"] = (
            "jsonl" if path.suffix.lower() in _JSONL_SUFFIXES else "txt"
        )
        if fmt == "auto":
            fmt = suffix_fmt
    else:
        stream: IO[str] = sys.stdin if isinstance(source, (str, os.PathLike)) else source
        name = "<stdin>" if stream is sys.stdin else getattr(stream, "name", "<stream>")
        try:
            text = stream.read()
        except UnicodeDecodeError as exc:
            raise BatchInputError(str(name), [], f"not UTF-8 text ({exc.reason})") from None
        text = text.removeprefix("\ufeff")
        if text_looks_like_utf16(text):
            raise BatchInputError(str(name), [], "looks like UTF-16 text: send UTF-8") from None
    lines = [raw.removesuffix("\r") for raw in text.split("\n")]
    if fmt == "auto":
        first = next((s for s in lines if s.strip() and not s.strip().startswith("#")), None)
        fmt = _detect_format(first)
    return parse_prompts(
        lines,
        fmt=fmt,
        model=model,
        duration=duration,
        aspect_ratio=aspect_ratio,
        source=str(name),
        base_dir=base_dir,
    )


def duplicate_lines(lines: Iterable[BatchLine]) -> tuple[tuple[int, ...], ...]:
    """The line numbers of each request given more than once (defaults applied), first
    occurrence first; groups in the order of their first line. Not an error: each is sent."""
    groups: dict[str, list[int]] = {}
    for entry in lines:
        groups.setdefault(entry.fingerprint, []).append(entry.line)
    return tuple(tuple(numbers) for numbers in groups.values() if len(numbers) > 1)


def video_filename(line: int, task_id: str) -> str:
    """The clip's file name in the output directory: ``<line:05d>-<task id>.mp4``."""
    return safe_filename(f"{line:05d}", task_id) + ".mp4"
