"""The one redactor: the API key and the callback secret out of everything the SDK shows.

Whatever holds a secret registers it with :func:`protect` (the transport its API key, a
callback receiver its secret path segment); the secret stays registered while its owner lives.
:func:`redact` and :func:`redact_bytes` replace every registered secret in a text, in each form
a server, a proxy or a log may echo it:

* plain, and in any mix of JSON ``\\u00XX`` escapes, URL ``%XX`` escapes and HTML character
  references, character by character (``"\\u0073\\u006b-..."``, ``sk%2Devo...``);
* hexadecimal (either case);
* base64 and URL-safe base64 at any alignment (so ``base64("Bearer " + key)`` too).

Then the shapes of a credential the SDK does not know: ``sk-evo-...`` and ``Bearer <token>``.
Every place that shows text from outside (error messages, log records, the journal, the
manifest, response headers) goes through here. Case is ignored when matching: a case variant of
a secret is redacted as well. Secrets shorter than :data:`MIN_SECRET_LENGTH` characters are
not registered (they would redact ordinary words).
"""

from __future__ import annotations

import base64
import logging
import re
import threading
import weakref
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "MIN_SECRET_LENGTH",
    "REDACTED",
    "RedactingFilter",
    "install_filter",
    "protect",
    "redact",
    "redact_bytes",
    "redact_headers",
    "redact_url",
    "redact_value",
]

REDACTED = "[redacted]"
MIN_SECRET_LENGTH = 8

# Key-like strings of any key: the gateway's key prefix, and a bearer token.
_SHAPES = r"\bsk-evo-[A-Za-z0-9_\-]+|\bbearer\s+[A-Za-z0-9._~+/=\-]+"


def _char_forms(char: str) -> str:
    """A regex alternation matching ``char`` as itself or any escape of it."""
    code = ord(char)
    forms = [re.escape(char)]
    if code < 0x10000:
        forms.append(rf"\\u{code:04x}")
    if code < 0x80:
        forms += [f"%{code:02x}", f"&#0*{code};", f"&#x0*{code:x};"]
        if char in '/"\\':
            forms.append(re.escape("\\" + char))
    return "(?:" + "|".join(forms) + ")"


def _base64_cores(secret: bytes) -> list[str]:
    """The base64 characters that depend on ``secret`` alone, at each of the 3 alignments."""
    cores = []
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + secret).decode()
        start = -(-shift * 8 // 6)  # first character with no bit of the prefix
        end = (shift + len(secret)) * 8 // 6  # last character made only of the secret's bits
        core = encoded[start:end]
        cores += [core, core.replace("+", "-").replace("/", "_")]
    return cores


def _secret_pattern(secret: str) -> str:
    raw = secret.encode("utf-8")
    forms = ["".join(_char_forms(c) for c in secret), re.escape(raw.hex())]
    forms += [re.escape(core) for core in _base64_cores(raw)]
    return "|".join(forms)


# Escapes the character-by-character forms need: without one, only plain, hex and base64 forms
# can be there, and a substring test finds those faster than the whole pattern.
_ESCAPE_MARKERS = (b"\\", b"%", b"&#")
_SHAPE_MARKERS = (b"sk-evo-", b"bearer")


class _Compiled(NamedTuple):
    """The pattern of a set of secrets, and the probe that tells when to run it."""

    full: re.Pattern[bytes]  # every form of every secret, and the key shapes
    #: on the lower-cased text: any plain, hex or base64 form of a secret, an escape, or the
    #: start of a key shape. One case-sensitive search in C: the cheap test of every answer
    probe: re.Pattern[bytes]

    @classmethod
    def of(cls, secrets: Iterable[str]) -> _Compiled:
        ordered = sorted(set(secrets), key=len, reverse=True)
        text = "|".join([*(_secret_pattern(s) for s in ordered), _SHAPES])
        needles = [*_SHAPE_MARKERS]
        for raw in (s.encode("utf-8") for s in ordered):
            needles += [*_ESCAPE_MARKERS, raw.lower(), raw.hex().encode()]
            needles += [core.lower().encode() for core in _base64_cores(raw)]
        return cls(
            full=re.compile(text.encode("utf-8"), re.IGNORECASE),
            probe=re.compile(b"|".join(re.escape(n) for n in dict.fromkeys(needles))),
        )


class _Registry:
    """The registered secrets and the patterns compiled from them (rebuilt on a change).

    ``forget`` runs from a weakref finalizer, possibly inside a garbage collection that
    ``compiled`` or ``add`` triggered while holding the lock: it only queues the removal
    (``list.append`` is atomic), and the next ``compiled`` or ``add`` applies it."""

    __slots__ = ("_compiled", "_forgotten", "_lock", "_next", "_secrets")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: dict[int, str] = {}  # registration number -> secret
        self._forgotten: list[int] = []
        self._compiled: _Compiled | None = None
        self._next = 0

    def __repr__(self) -> str:
        return f"<redaction registry: {len(self._secrets)} secrets>"  # never the secrets

    def _apply_forgotten(self) -> None:
        while self._forgotten:
            if self._secrets.pop(self._forgotten.pop(), None) is not None:
                self._compiled = None

    def compiled(self) -> _Compiled:
        made = self._compiled
        if made is not None and not self._forgotten:  # the common case: no lock taken
            return made
        with self._lock:
            self._apply_forgotten()
            if self._compiled is None:
                self._compiled = _Compiled.of(self._secrets.values())
            return self._compiled

    def add(self, secret: str) -> int:
        with self._lock:
            self._apply_forgotten()
            self._next += 1
            self._secrets[self._next] = secret
            self._compiled = None
            return self._next

    def forget(self, registration: int) -> None:
        self._forgotten.append(registration)


_REGISTRY = _Registry()


def protect(owner: object, *secrets: str | None) -> None:
    """Redact ``secrets`` everywhere while ``owner`` lives (``None``, empty and short ones
    are ignored)."""
    for secret in secrets:
        if secret and len(secret) >= MIN_SECRET_LENGTH:
            weakref.finalize(owner, _REGISTRY.forget, _REGISTRY.add(secret))


def redact(text: str) -> str:
    """``text`` with every registered secret (in any known encoding) and every key-like
    string replaced by :data:`REDACTED`."""
    data = text.encode("utf-8", "surrogatepass")
    out = redact_bytes(data)
    return text if out is data else out.decode("utf-8", "surrogatepass")


def redact_bytes(data: bytes) -> bytes:
    """:func:`redact` for bytes (a response body before it is decoded)."""
    compiled = _REGISTRY.compiled()
    if compiled.probe.search(data.lower()) is None:  # the usual case: one search, no copy
        return data
    return compiled.full.sub(REDACTED.encode(), data)


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers with their values redacted (a later duplicate of a name wins)."""
    return {name: redact(value) for name, value in headers.items()}


def redact_value(value: Any) -> Any:
    """A copy of a JSON-like value with every string (mapping keys too) redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {redact_value(k): redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(item) for item in value]
    return value


class RedactingFilter(logging.Filter):
    """A logging filter that formats a record's message and redacts it (and the text of its
    exception), so no handler sees a secret. Installed on the ``evolink_async`` logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg, record.args = redact(message), None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


def install_filter(loggers: Iterable[logging.Logger]) -> None:
    """Add one :class:`RedactingFilter` to each logger that has none yet."""
    for log in loggers:
        if not any(isinstance(f, RedactingFilter) for f in log.filters):
            log.addFilter(RedactingFilter())


install_filter([logging.getLogger("evolink_async")])


def redact_url(url: str) -> str:
    """Return ``url`` without user info, query string and fragment.

    Result links carry signatures in their query string; only the redacted form may appear in
    messages and logs.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        netloc = f"{host}:{parts.port}" if parts.port is not None else host
    except ValueError:  # malformed (e.g. a bad port): fall back to cutting the string
        return re.split(r"[?#]", url, maxsplit=1)[0]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
