"""The gallery in a real browser: Debian's chromium, headless, over file:// URLs.

A small batch runs against the simulator (some lines complete, some fail, some are skipped by
the budget); chromium loads its ``index.html``, runs the page's script (``--dump-dom`` prints
the DOM after it), and saves a screenshot under the test's tmp dir (the path is printed: the
test's artifact). Without chromium the test is skipped, unless ``$CI`` is set: CI installs
chromium (README's test command), so there a missing browser is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cli_support import KEY, TIME_SCALE, read_manifest, service_args, write_prompts
from test_gallery import Page

from evolink_async.batch import GALLERY_FILENAME
from evolink_async.cli import main
from evolink_async.testing import ThreadedSimulator

_BROWSER_TIMEOUT = 90  # seconds: a guard against a hung browser, not a measured time


def find_chromium() -> str:
    """chromium's path; skips the test without it, unless $CI is set: then it fails."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed, and $CI is set: CI must install it")
        pytest.skip("chromium is not installed (apt-get install chromium); $CI is not set")
    return path


@pytest.fixture(name="chromium")
def chromium_fixture() -> str:
    return find_chromium()


@pytest.mark.parametrize(
    ("installed", "ci", "outcome"),
    [
        (True, "", "found"),
        (True, "true", "found"),
        (False, "", "skipped"),
        (False, "true", "failed"),
    ],
)
def test_without_chromium_the_test_skips_unless_ci_is_set(
    monkeypatch: pytest.MonkeyPatch, installed: bool, ci: str, outcome: str
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}" if installed else None)
    monkeypatch.setenv("CI", ci)
    try:
        find_chromium()
        got = "found"
    except pytest.skip.Exception:
        got = "skipped"
    except pytest.fail.Exception:
        got = "failed"
    assert outcome == got


def _browse(chromium: str, profile: Path, url: str, *action: str) -> str:
    """Run headless chromium on ``url`` with ``action`` (--dump-dom, --screenshot=...)."""
    argv = [
        chromium,
        "--headless",
        "--no-sandbox",  # tests run as root in CI
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--mute-audio",
        f"--user-data-dir={profile}",
        "--window-size=1200,900",
        "--virtual-time-budget=2000",  # let the page's script and video metadata settle
        *action,
        url,
    ]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=_BROWSER_TIMEOUT, check=False
    )
    assert 0 == done.returncode, done.stderr[-2000:]
    return done.stdout


@pytest.fixture(name="batch_dir")
def batch_dir_fixture(tmp_path: Path) -> Path:
    """A batch's output directory: completed, failed and skipped lines, and their gallery."""
    knobs = {"time_scale": TIME_SCALE, "api_key": KEY, "fatal_failure_rate": 0.4, "seed": 3}
    prompts = [f"clip {i}: a <b>lighthouse</b> & waves" for i in range(12)]
    source = write_prompts(tmp_path / "p.txt", prompts)
    out = tmp_path / "clips"
    with ThreadedSimulator(**knobs) as sim:
        argv = ["batch", str(source), "--out", str(out), "--concurrency", "2", "-q"]
        main([*argv, "--budget", "80", "--rate", "500", *service_args(sim)])
    return out


def test_the_gallery_lists_every_line_filters_by_status_and_is_screenshotted(
    chromium: str, batch_dir: Path, tmp_path: Path
) -> None:
    manifest = read_manifest(batch_dir)
    statuses = {e["status"] for e in manifest}
    assert {"completed", "failed", "skipped"} <= statuses  # the page has something to filter
    page_url = (batch_dir / GALLERY_FILENAME).as_uri()
    profile = tmp_path / "chromium-profile"

    loaded = Page(_browse(chromium, profile, page_url, "--dump-dom"))

    assert [(f"line-{e['line']}", e["status"]) for e in manifest] == [
        (a["id"], a["data-status"]) for a in loaded.articles
    ]
    assert [None] * len(manifest) == [a.get("hidden") for a in loaded.articles]
    # each clip decodes in the browser (the simulator's own H.264), the others have none
    assert [("playable" if e["video"] else None) for e in manifest] == [
        a.get("data-clip") for a in loaded.articles
    ]
    assert KEY not in loaded.text
    for status in sorted(statuses):
        shown = Page(_browse(chromium, profile, f"{page_url}#status={status}", "--dump-dom"))
        visible = [a["id"] for a in shown.articles if "hidden" not in a]
        assert [f"line-{e['line']}" for e in manifest if e["status"] == status] == visible

    shot = tmp_path / "gallery.png"
    _browse(chromium, profile, page_url, f"--screenshot={shot}")
    assert b"\x89PNG" == shot.read_bytes()[:4]
    print(f"gallery screenshot: {shot}")


def test_a_clip_file_that_went_missing_is_marked_on_the_page(chromium: str, tmp_path: Path) -> None:
    out = tmp_path / "clips"
    source = write_prompts(tmp_path / "p.txt", ["kept", "deleted"])
    with ThreadedSimulator(time_scale=TIME_SCALE, api_key=KEY, seed=1) as sim:
        assert 0 == main(["batch", str(source), "--out", str(out), "-q", *service_args(sim)])
    _, deleted = read_manifest(out)
    (out / deleted["video"]).unlink()

    page = Page(
        _browse(chromium, tmp_path / "profile", (out / GALLERY_FILENAME).as_uri(), "--dump-dom")
    )

    assert ["playable", "missing"] == [a.get("data-clip") for a in page.articles]
    assert "this clip cannot be played here" in page.text
