"""A throwaway PostgreSQL cluster for the ledger tests (initdb + pg_ctl, loopback, trust).

``open_ledger`` opens a ledger store on either engine (parametrized ``ledger_url``).
``pg_cluster`` (session-scoped) starts one cluster on a free 127.0.0.1 port in a temporary
directory owned by the ``postgres`` user (initdb refuses to run as root) and stops it at the
end (``pg_ctl stop -m immediate``), even when tests fail. ``pg_url`` gives each test its own
database. Without the binaries the tests are skipped, unless ``CI`` is set: then they fail.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from evolink_async.batch.store import LedgerStore

__all__ = [
    "Opener",
    "PgCluster",
    "find_pg_bin",
    "ledger_url",
    "open_ledger",
    "pg_cluster",
    "pg_url",
]

Opener = Callable[..., Awaitable[LedgerStore]]


def find_pg_bin() -> Path | None:
    """The directory holding initdb and pg_ctl: on PATH, or under /usr/lib/postgresql."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _as_postgres(argv: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


class PgCluster:
    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="evolink-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")

    def _run(self, *argv: str) -> None:
        subprocess.run(
            _as_postgres(list(argv)), check=True, capture_output=True, timeout=120, cwd=self.root
        )

    def start(self) -> None:
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
            "--auth=trust", "--no-sync", "-E", "UTF8",
        )  # fmt: skip
        with (self.data / "pg_hba.conf").open("w") as conf:
            conf.write("host all all 127.0.0.1/32 trust\n")
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=on"
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", options,
            "-l", str(self.root / "log"), "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self) -> None:
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        import psycopg  # noqa: PLC0415

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    bindir = find_pg_bin()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but PostgreSQL's initdb/pg_ctl are not installed")
        pytest.skip("PostgreSQL's initdb/pg_ctl are not installed")
    try:
        import psycopg  # noqa: F401, PLC0415
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("CI is set but psycopg is not installed")
        pytest.skip("psycopg is not installed")
    cluster = PgCluster(bindir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> str:
    """A fresh, empty database of the session's cluster."""
    return pg_cluster.create_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest) -> str | None:
    """None for a directory's embedded SQLite ledger, else a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def open_ledger(ledger_url: str | None) -> Opener:
    """Opens a ledger store on the parametrized engine (SQLite: in the given directory)."""

    async def opener(directory: Path, job: str = "default") -> LedgerStore:
        return await LedgerStore.aopen(directory, url=ledger_url, job=job)

    return opener
