"""A real ``redis-server`` for the tests of the shared limits: started on a free loopback
port with a temporary directory and no persistence, stopped at the end of the session."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evolink_async.limits import LimitSettings

__all__ = ["flush", "limit_settings", "redis_server_fixture", "redis_url_fixture", "start_redis"]


def limit_settings(
    api_key: str, defaults: dict[str, Any], overrides: dict[str, Any]
) -> LimitSettings:
    """Settings of the shared limits for ``api_key``: a test file's ``defaults`` (no budget
    unless they give one), then the test's ``overrides``."""
    return LimitSettings(api_key=api_key, **{"budget": None, **defaults, **overrides})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start redis-server in ``directory``; return the process and its URL once it answers."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed (README's test command installs it)")
    port = _free_port()
    proc = subprocess.Popen(
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(directory),
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "yes",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.02)
    proc.kill()
    raise RuntimeError("redis-server did not start")


@pytest.fixture(scope="session", name="redis_server")
def redis_server_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, url = start_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def flush(url: str) -> None:
    """Empty the server (each test starts from no shared state)."""
    port = int(url.rsplit(":", 1)[1].split("/", maxsplit=1)[0])
    with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
        conn.sendall(b"FLUSHALL\r\n")
        conn.recv(16)


@pytest.fixture(name="redis_url")
def redis_url_fixture(redis_server: str) -> str:
    flush(redis_server)
    return redis_server
