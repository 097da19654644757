"""The docs site (mkdocs-material with mkdocstrings) builds with no warning, and has every
guide and the API reference generated from the docstrings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GUIDES = ("quickstart", "batch", "bots", "simulator", "errors", "reference")


def test_the_docs_build_strictly_with_every_guide_and_the_api_reference(tmp_path: Path) -> None:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    log = done.stdout + done.stderr
    assert (0, []) == (done.returncode, [ln for ln in log.splitlines() if "WARNING" in ln])
    for guide in GUIDES:
        assert (site / guide / "index.html").is_file(), guide
    reference = (site / "reference" / "index.html").read_text(encoding="utf-8")
    # generated from the docstrings, not written by hand
    assert 'id="evolink_async.client.EvolinkClient.generate_many"' in reference
    assert "0-based position" in reference  # Outcome's docstring
    errors = (site / "errors" / "index.html").read_text(encoding="utf-8")
    assert "exit" in errors.lower()
