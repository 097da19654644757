"""Strict reading of prompt input: text encodings, control characters, and JSON lines with
no duplicate keys and no deep nesting. Each check names what it found, never a traceback."""

from __future__ import annotations

import json
import unicodedata
from typing import Any

__all__ = [
    "ALLOWED_CONTROLS",
    "MAX_DEPTH",
    "InputProblem",
    "control_character",
    "decode_text",
    "loads_object",
    "text_looks_like_utf16",
]

#: the deepest nesting of objects and arrays a .jsonl line may have
MAX_DEPTH = 32
#: control characters a prompt may hold (inside JSON strings, as escapes): tab, newline, CR
ALLOWED_CONTROLS = frozenset("\t\n\r")

_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_UTF32_BOMS = (b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")


class InputProblem(ValueError):
    """What is wrong with one line (``field``: the key concerned, if any)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def _looks_like_utf16(data: bytes) -> bool:
    """NUL bytes at every other position of a sample: UTF-16 text without its byte-order mark."""
    sample = data[:4096]
    if len(sample) < 2 or b"\x00" not in sample:
        return False
    even, odd = sample[0::2], sample[1::2]
    return max(even.count(0) / len(even), odd.count(0) / max(len(odd), 1)) > 0.3


def decode_text(data: bytes) -> str:
    """The text of a prompts file: UTF-8 (a UTF-8 BOM is dropped), or UTF-16 with its BOM.

    Raises :class:`InputProblem` for UTF-32, UTF-16 without a BOM (NUL bytes between ASCII
    characters) and anything else that is not UTF-8.
    """
    if data.startswith(_UTF32_BOMS):
        raise InputProblem("UTF-32 text: save the file as UTF-8")
    if data.startswith(_UTF16_BOMS):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise InputProblem(f"not valid UTF-16 text ({exc.reason})") from None
    if _looks_like_utf16(data):
        raise InputProblem(
            "looks like UTF-16 without a byte-order mark (NUL bytes between the characters): "
            "save the file as UTF-8"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputProblem(f"not UTF-8 text ({exc.reason})") from None


def text_looks_like_utf16(text: str) -> bool:
    """:func:`_looks_like_utf16` for text already decoded (standard input)."""
    return _looks_like_utf16(text[:4096].encode("latin-1", "replace"))


def control_character(text: str, allowed: frozenset[str] = frozenset("\t")) -> str | None:
    """The first control character of ``text`` not in ``allowed``, described with its column
    (``"U+0000 at column 3"``), or None."""
    for column, char in enumerate(text, start=1):
        if char not in allowed and unicodedata.category(char) == "Cc":
            return f"U+{ord(char):04X} at column {column}"
    return None


def _nesting_too_deep(text: str) -> bool:
    """Whether objects and arrays nest deeper than :data:`MAX_DEPTH` (strings skipped)."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False
    depth, in_string, escaped = 0, False, False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif char in "]}":
            depth -= 1
    return False


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise InputProblem(f"duplicate key {key!r}", field=key)
        result[key] = value
    return result


def _strings(value: Any, where: str) -> list[tuple[str, str]]:
    """``(field path, text)`` of every string in a JSON value, mapping keys included."""
    if isinstance(value, str):
        return [(where, value)]
    found: list[tuple[str, str]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{where}.{key}" if where else key
            found += [(path, key), *_strings(item, path)]
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _strings(item, f"{where}[{index}]")
    return found


def loads_object(text: str) -> dict[str, Any]:
    """One .jsonl line as a JSON object: no duplicate keys, at most :data:`MAX_DEPTH` levels,
    no control character in any string but tab, newline and carriage return.

    Raises :class:`InputProblem` naming the rule (and the field, where there is one).
    """
    if _nesting_too_deep(text):
        raise InputProblem(f"nested deeper than {MAX_DEPTH} levels of objects and arrays")
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates)
    except InputProblem:
        raise
    except json.JSONDecodeError as exc:
        raise InputProblem(f"invalid JSON: {exc.msg} (column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:
        raise InputProblem(f"invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InputProblem("must be a JSON object with the API's field names")
    for field, value in _strings(data, ""):
        found = control_character(value, ALLOWED_CONTROLS)
        if found is not None:
            raise InputProblem(f"control character {found} of the text", field=field or None)
    return data
