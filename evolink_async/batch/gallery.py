"""The gallery: ``index.html`` beside ``manifest.jsonl``, every line of the manifest on one page.

Each completed clip plays in place (``<video controls>`` on its file, by a relative link),
with its prompt, status, cost in credits and task id; lines that did not complete show their
reason. A few lines of inline JavaScript filter the page by status (buttons, or a
``#status=failed`` fragment) and mark each clip ``data-clip="playable"`` once the browser has
decoded a frame of it, or ``"missing"`` (with a note) when it cannot load. The page loads
nothing from the network and every text from the manifest is HTML-escaped.
:func:`render_gallery` is pure (entries in, HTML out); :func:`read_manifest` and
:func:`write_gallery` do the file work (blocking: call them from a worker thread in async
code).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from .._files import atomic_write
from .manifest import GALLERY_FILENAME, MANIFEST_FILENAME, ManifestEntry

__all__ = [
    "GALLERY_FILENAME",
    "GalleryError",
    "read_manifest",
    "render_gallery",
    "write_gallery",
]

#: the order of the filter buttons (other statuses follow, sorted)
_STATUS_ORDER = ("completed", "failed", "cancelled", "unknown", "interrupted", "skipped")
_FIELDS = ("line", "prompt", "status", "task_id", "video", "url", "error", "attempts", "credits")

_STYLE = """
body{font:15px/1.4 system-ui,sans-serif;margin:1.5rem;background:#f6f6f4;color:#222}
h1{font-size:1.4rem;margin:0 0 .3rem}
#filters button{margin:.2rem;padding:.3rem .7rem;border:1px solid #888;border-radius:1rem;
background:#fff;cursor:pointer}
#filters button[aria-pressed=true]{background:#222;color:#fff}
#clips{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:1rem;
margin-top:1rem}
.clip{background:#fff;border-radius:.5rem;padding:.7rem;box-shadow:0 1px 3px #0003}
.clip video{width:100%;max-height:320px;background:#000;border-radius:.3rem}
.clip h2{font-size:.95rem;margin:.4rem 0}
.prompt{white-space:pre-wrap;word-break:break-word}
.badge{padding:0 .4rem;border-radius:.3rem;color:#fff;background:#777}
.completed .badge{background:#2a7d2e}.failed .badge{background:#b3261e}
.unknown .badge{background:#a15c00}.interrupted .badge{background:#4a5a9e}
.reason{color:#b3261e;word-break:break-word}
dl{display:grid;grid-template-columns:auto 1fr;gap:0 .6rem;margin:.3rem 0;font-size:.85rem}
dt{color:#666}dd{margin:0;word-break:break-all}
"""

# Filters the articles by their data-status; the state lives in the URL fragment
# (#status=failed), so a filtered view can be linked or opened directly.
_SCRIPT = """
(function () {
  var clips = document.querySelectorAll('#clips > article');
  var buttons = document.querySelectorAll('#filters button');
  function wanted() {
    var m = /(?:^|[#&?])status=([A-Za-z_-]+)/.exec(location.hash + location.search);
    return m ? m[1] : 'all';
  }
  function apply() {
    var status = wanted(), shown = 0;
    clips.forEach(function (c) {
      var hide = status !== 'all' && c.dataset.status !== status;
      c.hidden = hide;
      if (!hide) { shown += 1; }
    });
    buttons.forEach(function (b) {
      b.setAttribute('aria-pressed', String(b.dataset.status === status));
    });
    document.getElementById('shown').textContent = String(shown);
    document.body.dataset.filter = status;
  }
  function watch(c) {  // data-clip: playable, or missing (with a note) when it cannot load
    var v = c.querySelector('video');
    if (!v) { return; }
    function ok() { c.dataset.clip = 'playable'; }
    function bad() {
      if (c.dataset.clip === 'missing') { return; }
      c.dataset.clip = 'missing';
      var note = document.createElement('p');
      note.className = 'reason';
      note.textContent = 'this clip cannot be played here (file moved or deleted?)';
      v.insertAdjacentElement('afterend', note);
    }
    v.addEventListener('loadeddata', ok);
    v.addEventListener('error', bad);
    if (v.error) { bad(); } else if (v.readyState >= 2) { ok(); }
  }
  clips.forEach(watch);
  buttons.forEach(function (b) {
    b.addEventListener('click', function () { location.hash = 'status=' + b.dataset.status; });
  });
  window.addEventListener('hashchange', apply);
  apply();
})();
"""


class GalleryError(Exception):
    """The manifest cannot be read (missing, or a line is not a manifest entry)."""


def _text(value: object) -> str:
    return escape(str(value), quote=True)


def _credits(value: float) -> str:
    return f"{value:g}"


def _statuses(entries: Sequence[ManifestEntry]) -> list[tuple[str, int]]:
    counts = Counter(str(e.status) for e in entries)
    known = [s for s in _STATUS_ORDER if s in counts]
    others = sorted(s for s in counts if s not in _STATUS_ORDER)
    return [(s, counts[s]) for s in (*known, *others)]


def _media(entry: ManifestEntry) -> str:
    """The clip's player (a relative link to its file), or a note of why there is none."""
    if entry.video:
        # quote() leaves only a relative path: a ':' (a scheme) or '?' becomes %xx; the
        # fragment makes the browser show a frame of the clip rather than a black box
        src = _text(quote(entry.video.replace("\\", "/").lstrip("/")) + "#t=0.1")
        return f'<video controls preload="metadata" src="{src}"></video>'
    if entry.status == "completed" and entry.url:
        parts = urlsplit(entry.url)
        if parts.scheme in ("http", "https"):
            return (
                f'<p class="note">not downloaded: <a href="{_text(entry.url)}">result link</a></p>'
            )
    return '<p class="note">no clip</p>'


def _article(entry: ManifestEntry) -> str:
    status = str(entry.status)
    rows = [
        ("task", entry.task_id or "none"),
        ("credits", _credits(entry.credits)),
        ("attempts", str(entry.attempts)),
    ]
    if entry.video:
        rows.append(("file", entry.video))
    details = "".join(f"<dt>{_text(k)}</dt><dd>{_text(v)}</dd>" for k, v in rows)
    reason = ""
    if entry.error:
        code = entry.error.get("code", "error")
        message = entry.error.get("message", "")
        reason = f'<p class="reason"><b>{_text(code)}</b>: {_text(message)}</p>'
    return (
        f'<article class="clip {_text(status)}" id="line-{entry.line}" '
        f'data-status="{_text(status)}" data-task="{_text(entry.task_id or "")}">'
        f"{_media(entry)}"
        f'<h2>line {entry.line} <span class="badge">{_text(status)}</span></h2>'
        f'<p class="prompt">{_text(entry.prompt)}</p>'
        f"<dl>{details}</dl>{reason}</article>"
    )


def render_gallery(entries: Sequence[ManifestEntry], *, title: str = "evolink-async batch") -> str:
    """The page of ``entries`` (one article per entry, in their order), as HTML text."""
    statuses = _statuses(entries)
    buttons = [f'<button type="button" data-status="all">all ({len(entries)})</button>']
    buttons += [
        f'<button type="button" data-status="{_text(s)}">{_text(s)} ({n})</button>'
        for s, n in statuses
    ]
    spent = sum(e.credits for e in entries if e.status in ("completed", "unknown"))
    counts = ", ".join(f"{n} {_text(s)}" for s, n in statuses) or "no lines"
    csp = (
        "default-src 'none'; media-src 'self' file:; img-src 'self' data:; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'"
    )
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_text(title)}</title>\n<style>{_STYLE}</style></head>\n"
        f"<body>\n<h1>{_text(title)}</h1>\n"
        f'<p id="summary">{len(entries)} lines: {counts}; {_credits(round(spent, 4))} '
        f'credits. Showing <span id="shown">{len(entries)}</span>.</p>\n'
        f'<nav id="filters">{"".join(buttons)}</nav>\n'
        f'<main id="clips">\n{"".join(_article(e) + chr(10) for e in entries)}</main>\n'
        f"<script>{_SCRIPT}</script>\n</body></html>\n"
    )


def _entry(raw: Any, where: str) -> ManifestEntry:
    if not isinstance(raw, dict) or not {"line", "prompt", "status"} <= raw.keys():
        raise GalleryError(f"{where}: not a manifest entry")
    known: dict[str, Any] = {k: raw.get(k) for k in _FIELDS}
    error = known["error"]
    return ManifestEntry(
        line=int(known["line"]),
        prompt=str(known["prompt"]),
        status=known["status"],
        task_id=known["task_id"],
        video=known["video"],
        url=known["url"],
        error=error if isinstance(error, dict) else None,
        attempts=int(known["attempts"] or 0),
        credits=float(known["credits"] or 0.0),
    )


def read_manifest(out_dir: str | Path) -> list[ManifestEntry]:
    """The entries of ``out_dir``'s ``manifest.jsonl`` (keys it does not know are ignored).
    Raises :class:`GalleryError`."""
    path = Path(out_dir) / MANIFEST_FILENAME
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise GalleryError(f"cannot read {path}: {exc.strerror or exc}") from None
    entries = []
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        where = f"{path}, line {number}"
        try:
            entries.append(_entry(json.loads(raw), where))
        except (ValueError, TypeError) as exc:
            raise GalleryError(f"{where}: not a manifest entry ({exc})") from None
    return entries


def write_gallery(
    out_dir: str | Path, entries: Iterable[ManifestEntry], *, title: str | None = None
) -> Path:
    """Write ``index.html`` in ``out_dir`` atomically (blocking); return its path."""
    directory = Path(out_dir)
    page = render_gallery(list(entries), title=title or f"evolink-async: {directory.name}")
    return atomic_write(directory / GALLERY_FILENAME, page.encode("utf-8"))
