"""Shared helpers of the benchmarks: the simulator in its own process, client workers in theirs,
process counters (CPU, RSS), percentiles, tables and the machine's description.

The simulator always runs in a separate process (``python -m evolink_async.testing``), so the
CPU time a client process reports with ``getrusage(RUSAGE_SELF)`` is the client's alone. Each
client run is a fresh subprocess too, so that ``ru_maxrss`` (a process-lifetime maximum) is that
run's own peak.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import os
import platform
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "SimulatorProcess",
    "cpu_seconds",
    "current_rss_bytes",
    "fmt",
    "machine_info",
    "mean",
    "peak_rss_mb",
    "percentile",
    "print_table",
    "run_worker",
    "sdk_info",
    "usage",
    "usage_per",
    "write_json",
]

HERE = Path(__file__).resolve().parent
_SERVING = re.compile(r"serving on (\S+)")
_KEY = re.compile(r"API key: (\S+)")


# -- the simulator, in its own process ---------------------------------------------------------


class SimulatorProcess:
    """A :class:`evolink_async.testing.Simulator` serving in a child process.

    ``with SimulatorProcess({"seed": 1, "time_scale": 0.01}) as sim:`` starts it on a free
    loopback port with those knobs (any ``Simulator(**knobs)`` keyword; tuples as lists), waits
    until it serves and reads its ``base_url``/``api_key``; leaving the block stops it (SIGTERM,
    then SIGKILL if it does not stop). ``stats()`` is ``GET /_simulator/stats``.

    (``python -m evolink_async.testing`` does the same from a shell, but not every knob has a
    flag there, e.g. ``estimate_error``: hence this small launcher of the public class.)
    """

    def __init__(self, knobs: Mapping[str, Any], *, start_timeout: float = 30.0) -> None:
        self.knobs = dict(knobs)
        self.start_timeout = start_timeout
        self.base_url = ""
        self.api_key = ""
        self._proc: subprocess.Popen[str] | None = None
        self._pid = 0
        self._stderr: Any = None

    def __enter__(self) -> SimulatorProcess:
        cmd = [sys.executable, str(Path(__file__).resolve()), "serve", json.dumps(self.knobs)]
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._stderr, text=True)
        self._pid = self._proc.pid
        assert self._proc.stdout is not None
        deadline = time.monotonic() + self.start_timeout
        while not (self.base_url and self.api_key):
            line = self._proc.stdout.readline()
            if not line:
                self._proc.wait()
                self._stderr.seek(0)
                err = self._stderr.read()
                self._stop()
                raise RuntimeError(f"the simulator did not start with {self.knobs}\n{err}")
            if m := _SERVING.search(line):
                self.base_url = m.group(1)
            if m := _KEY.search(line):
                self.api_key = m.group(1)
            if time.monotonic() > deadline:
                self._stop()
                raise RuntimeError("the simulator did not start in time")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop()

    @property
    def pid(self) -> int:
        return self._pid

    def cpu_seconds(self) -> float:
        """CPU seconds the simulator process has used so far (from /proc)."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return math.nan
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def stats(self, timeout: float = 120.0) -> dict[str, Any]:
        """The simulator's stats as JSON (``GET /_simulator/stats``)."""
        url = f"{self.base_url}/_simulator/stats"
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            data: dict[str, Any] = json.loads(resp.read())
        return data

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        self._stderr.close()


# -- client workers, each in its own process ---------------------------------------------------


def run_worker(
    script: Path, args: Sequence[str], *, timeout: float | None = None
) -> dict[str, Any]:
    """Run ``python script args...`` and return the JSON object of its last stdout line.

    The worker's stderr goes to ours. Raises ``RuntimeError`` when it fails or prints no JSON.
    """
    cmd = [sys.executable, str(script), *[str(a) for a in args]]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=timeout, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"worker failed (exit {proc.returncode}): {' '.join(cmd)}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


# -- process counters ---------------------------------------------------------------------------


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def usage() -> tuple[float, float, int]:
    """User CPU seconds, system CPU seconds and context switches (voluntary and not) so far."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime, ru.ru_stime, ru.ru_nvcsw + ru.ru_nivcsw


def usage_per(before: tuple[float, float, int], count: int) -> dict[str, float]:
    """What :func:`usage` grew by since ``before``: CPU seconds in all (``cpu_s``), and user
    and system CPU and context switches per one of ``count`` requests."""
    after = usage()
    user, system, switches = (after[i] - before[i] for i in range(3))
    count = max(count, 1)
    return {
        "cpu_s": user + system,
        "user_us": user / count * 1e6,
        "sys_us": system / count * 1e6,
        "switches": switches / count,
    }


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB (Linux reports ``ru_maxrss`` in KB)."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if sys.platform == "darwin":  # bytes there
        kb //= 1024
    return kb / 1024


def current_rss_bytes() -> int:
    """Resident set size now (from /proc/self/statm; falls back to the peak elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return int(peak_rss_mb() * 1024 * 1024)
    return pages * os.sysconf("SC_PAGE_SIZE")


# -- figures ------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) by linear interpolation; None for no values."""
    if not values:
        return None
    s = sorted(values)
    if len(s) == 1:
        return float(s[0])
    pos = (len(s) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return float(s[lo] + (s[hi] - s[lo]) * (pos - lo))


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: ``-`` for None, ints as they are, floats with ``digits`` significant."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if value == 0:
            return "0"
        if abs(value) >= 10 ** (digits + 1):
            return f"{value:,.0f}"
        return f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:.0f}"
    return str(value)


def print_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[tuple[str, str]],
    *,
    title: str | None = None,
) -> None:
    """Print ``rows`` as a plain-text table; ``columns`` are (key, header) pairs."""
    cells = [[header for _, header in columns]]
    cells += [[fmt(row.get(key)) for key, _ in columns] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    if title:
        print(f"\n{title}")
    for n, r in enumerate(cells):
        first = r[0].ljust(widths[0])
        rest = "  ".join(c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True))
        print(f"{first}  {rest}")
        if n == 0:
            print("  ".join("-" * w for w in widths))
    sys.stdout.flush()


def machine_info() -> dict[str, Any]:
    """nproc, CPU model, Python and platform, for the results' record."""
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import aiohttp  # noqa: PLC0415 - only for its version

    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "aiohttp": aiohttp.__version__,
        # other work on the machine skews every figure: the 1/5/15-minute load averages
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def sdk_info() -> dict[str, Any]:
    """The SDK's version and a fingerprint of its source (results change with the code)."""
    import evolink_async  # noqa: PLC0415

    root = Path(evolink_async.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return {
        "version": getattr(evolink_async, "__version__", "unknown"),
        "source_sha256": digest.hexdigest()[:16],
    }


def write_json(path: str | os.PathLike[str], payload: Any) -> None:
    """Write ``payload`` as indented JSON (NaN written as null)."""
    Path(path).write_text(json.dumps(_clean(payload), indent=2) + "\n")


def _clean(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def mean(values: Iterable[float]) -> float | None:
    vals = list(values)
    return sum(vals) / len(vals) if vals else None


# -- the simulator's side of SimulatorProcess --------------------------------------------------


async def _serve(knobs: dict[str, Any]) -> None:
    from evolink_async.testing import Simulator  # noqa: PLC0415 - the child process only

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    args = {k: tuple(v) if isinstance(v, list) else v for k, v in knobs.items()}
    async with Simulator(**args) as sim:
        print(f"Evolink simulator serving on {sim.base_url}", flush=True)
        print(f"API key: {sim.api_key}", flush=True)
        await stop.wait()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        asyncio.run(_serve(json.loads(sys.argv[2])))
    else:
        sys.exit(f"usage: {sys.argv[0]} serve KNOBS_JSON")


def scale_prompt(i: int) -> str:
    """The prompt of task ``i`` of bench_scale's and profile_scale's workloads."""
    return f"scale clip {i}: a lighthouse at dusk, waves breaking, slow dolly-in"


@contextlib.asynccontextmanager
async def all_in_flight(client: Any, n: int) -> AsyncIterator[None]:
    """Tasks 0..n-1 (``scale_prompt``) sent through one ``generate_many`` and all in flight
    (the simulator's tasks are long: none finishes) for the body of the block; then the batch
    is closed. A batch holds at most its concurrency limit in created-or-undelivered requests
    (256 without one): the limit is n, so that all n are in flight at once."""
    batch = client.generate_many((scale_prompt(i) for i in range(n)), max_in_flight=n)

    async def consume() -> None:
        async for _ in batch:
            pass

    consumer = asyncio.create_task(consume())
    try:
        while client.in_flight < n:
            if consumer.done():
                consumer.result()
                raise RuntimeError("the batch ended before every task was in flight")
            await asyncio.sleep(0.05)
        yield
    finally:
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
        await batch.aclose()
