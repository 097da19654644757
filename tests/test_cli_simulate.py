"""``evolink-async simulate``: a local simulator until Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from cli_support import (
    REPO,
    fast_client_env,
)


def test_simulate_serves_until_interrupted(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "evolink_async", "simulate", "--port", "0"],
        cwd=REPO,
        env=fast_client_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "serving on http://127.0.0.1:" in first
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert 0 == proc.returncode
