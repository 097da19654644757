"""The batch job: a prompts file in, clips and a manifest out, resumable after any crash.

This is the library side of ``evolink-async batch`` (no argument parsing, no printing)::

    lines = load_prompts("prompts.txt", duration=8)          # validates every line first
    async with EvolinkClient(rate=2, max_in_flight=10) as client:
        summary = await BatchJob(client, lines, "clips").run()

**Input.** A ``.txt`` file has one prompt per line; a ``.jsonl`` file one request object per
line, with the API's field names. Blank lines and lines starting with ``#`` are skipped; ``-``
reads standard input. Every line is validated before anything is sent: one or more bad lines
raise :class:`BatchInputError`, naming each line, field and rule. ``model``, ``duration`` and
``aspect_ratio`` defaults apply to the lines that do not set them. A line is identified by its
line number in the file (comments and blank lines count).

**Output directory.** ``<line:05d>-<task id>.mp4`` for each clip, ``manifest.jsonl`` and the
journal (``journal.jsonl``, see :mod:`evolink_async.batch.journal`). The directory is locked while a
job runs: a second job on it raises :class:`~evolink_async.errors.JournalLockedError`.

**Journal.** Before each create request, ``intent`` (with the request's fingerprint) is on
disk; then ``created`` (task id, credits), ``finished`` (status, error or result URL) and
``downloaded`` (file, size, sha256), or ``download_failed`` (why). A create the service
refused for certain (HTTP 4xx: nothing was created) is journaled ``finished`` with status
``rejected``. Running the job again
on the same directory:

* lines completed and downloaded, whose file is still there with the journaled size, are not
  touched; completed ones not (or no longer) downloaded are downloaded;
* tasks created but not finished are re-attached by id and polled, never resubmitted (also
  after a per-task timeout: the task may still finish);
* lines whose create may or may not have reached the service (``intent`` without ``created``,
  or ``unknown``) are sent again, first, with the idempotency key their intent journaled: the
  gateway answers with the original task, so nothing is paid twice. Without a key (a journal of
  an older version, or a client with ``idempotency=False``) they are reported ``unknown`` and
  not resubmitted, unless ``retry_unknown=True`` (which may pay twice);
* failed lines stay failed; rejected lines are submitted again;
* a line whose request changed since it was journaled (another file or other defaults) makes
  the job refuse to start (:class:`BatchInputError`): nothing is submitted.

**Manifest.** ``manifest.jsonl`` has one object per input line, in input order, with exactly
the keys ``line``, ``prompt``, ``status`` (``completed``, ``failed``, ``unknown`` or
``skipped``), ``task_id``, ``video`` (path relative to the directory, or null), ``url``,
``error`` (``{"code", "message"}`` or null; an error the gateway answered adds its
``request_id`` and ``suggestion`` when it gave them), ``attempts`` (times the line was submitted,
over all runs) and ``credits`` (credits reserved by its completed or possibly running task). It
is written atomically (temporary file + rename) when the job ends, also when it is stopped or
fails. A completed clip that could not be downloaded keeps ``status: "completed"`` with
``video: null``, its ``url``, and ``error: {"code": "download_failed", ...}``; the next run
downloads it again. Lines a stopped job did not finish get ``error.code`` ``interrupted``:
``skipped`` if never sent, ``unknown`` if their task was still running (the next run re-attaches
it), ``completed`` with ``video: null`` if not downloaded yet.

**Stopping.** :meth:`BatchJob.stop` stops admitting: no create is sent after it, creates
already on the wire get their answer (and their ``created`` record), tasks still running are
left to the next run, and the journal and manifest are written before :meth:`BatchJob.run`
returns.

Limits: the client's ``rate``, ``max_in_flight`` (re-attached tasks hold a place too) and
``budget`` apply; the job's ``budget`` counts the credits of every line of the batch, the ones
reserved by earlier runs included, and lines whose create may have been paid for without an
answer (``unknown``) at their price until resolved (see :mod:`.ledger`).

Modules: :mod:`.input` (prompts in), :mod:`.ledger` (the one state machine per line),
:mod:`.journal` (records in, folded state out), :mod:`.plan` (journal → what to do),
:mod:`.manifest` (entries out), :mod:`.job` (plan → dispatcher → downloads), :mod:`.gallery`
(``index.html``: the manifest as a page of playable clips).
"""

from __future__ import annotations

from ._credits import CreditsShortError
from ._uploads import UploadError
from .gallery import GALLERY_FILENAME, GalleryError, read_manifest, render_gallery, write_gallery
from .input import (
    BatchInputError,
    BatchLine,
    LineProblem,
    PromptFormat,
    load_prompts,
    parse_prompts,
    video_filename,
)
from .job import BatchJob, run_batch
from .ledger import BatchProgress
from .manifest import MANIFEST_FILENAME, BatchSummary, LineStatus, ManifestEntry

__all__ = [
    "GALLERY_FILENAME",
    "MANIFEST_FILENAME",
    "BatchInputError",
    "BatchJob",
    "BatchLine",
    "BatchProgress",
    "BatchSummary",
    "CreditsShortError",
    "GalleryError",
    "LineProblem",
    "LineStatus",
    "ManifestEntry",
    "PromptFormat",
    "UploadError",
    "load_prompts",
    "parse_prompts",
    "read_manifest",
    "render_gallery",
    "run_batch",
    "video_filename",
    "write_gallery",
]
