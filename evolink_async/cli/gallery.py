"""``evolink-async gallery DIR``: (re)build ``DIR/index.html`` from ``DIR/manifest.jsonl``;
and the page ``batch`` writes when its job ends."""

from __future__ import annotations

import argparse
from pathlib import Path

import anyio

from ..batch import BatchSummary, GalleryError, read_manifest, write_gallery
from .app import EXIT_OK, EXIT_USAGE, err

__all__ = ["gallery_command", "write_batch_gallery"]


def gallery_command(args: argparse.Namespace) -> int:
    """Rebuild the gallery of a batch's output directory; exit 2 without a readable manifest."""
    try:
        entries = read_manifest(args.dir)
    except GalleryError as exc:
        err(str(exc))
        return EXIT_USAGE
    try:
        path = write_gallery(args.dir, entries, title=args.title)
    except OSError as exc:
        err(f"cannot write the gallery in {args.dir}: {exc.strerror or exc}")
        return EXIT_USAGE
    if not args.quiet:
        print(path)
    return EXIT_OK


async def write_batch_gallery(summary: BatchSummary, *, quiet: bool) -> Path | None:
    """Write the gallery of a finished (or stopped) job beside its manifest, in a worker
    thread. A gallery that cannot be written is reported and does not change the exit status:
    the clips and the manifest are what matter."""
    out_dir = summary.manifest.parent
    try:
        path = await anyio.to_thread.run_sync(write_gallery, out_dir, summary.entries)
    except OSError as exc:
        err(f"cannot write the gallery in {out_dir}: {exc.strerror or exc}")
        return None
    if not quiet:
        print(f"gallery: {path}", flush=True)
    return path
