"""Logging: nothing configured on import; ``configure_logging()`` and ``$EVOLINK_LOG`` (the
command line applies it at start-up)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from evolink_async import configure_logging
from evolink_async.batch import MANIFEST_FILENAME, ManifestEntry
from evolink_async.cli import main

LOGGER = logging.getLogger("evolink_async")


@pytest.fixture(autouse=True)
def restore_logger() -> Iterator[None]:
    handlers, level = list(LOGGER.handlers), LOGGER.level
    yield
    LOGGER.handlers[:] = handlers
    LOGGER.setLevel(level)


def test_importing_the_package_configures_no_logging() -> None:
    code = (
        "import logging, evolink_async, evolink_async.cli, evolink_async.testing;"
        "l = logging.getLogger('evolink_async');"
        "print(len(l.handlers), l.level, len(logging.getLogger().handlers))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "0 0 0" == done.stdout.strip()


@pytest.mark.parametrize(
    ("env", "level", "expected"),
    [
        ("debug", None, logging.DEBUG),
        ("INFO", None, logging.INFO),
        (" warning ", None, logging.WARNING),
        ("error", "debug", logging.DEBUG),  # an explicit level wins over the environment
        ("", None, None),  # unset: nothing configured
        ("", logging.ERROR, logging.ERROR),
    ],
)
def test_configure_logging_sets_the_package_logger(
    monkeypatch: pytest.MonkeyPatch, env: str, level: str | int | None, expected: int | None
) -> None:
    monkeypatch.setenv("EVOLINK_LOG", env)
    before = list(LOGGER.handlers)

    assert expected == configure_logging(level)

    if expected is None:
        assert before == LOGGER.handlers
    else:
        assert expected == LOGGER.level
        assert 1 == len(LOGGER.handlers) - len(before)


def test_configuring_twice_replaces_the_handler_and_records_reach_the_stream(
    capsys: pytest.CaptureFixture[str],
) -> None:
    count = len(LOGGER.handlers)
    configure_logging("info")
    configure_logging("debug")
    LOGGER.debug("hello from the test")

    assert count + 1 == len(LOGGER.handlers)
    assert "DEBUG evolink_async: hello from the test" in capsys.readouterr().err


def test_an_unknown_level_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVOLINK_LOG", "loud")
    with pytest.raises(ValueError, match=r"\$EVOLINK_LOG: unknown log level 'loud' \(one of debug"):
        configure_logging()
    with pytest.raises(ValueError, match=r"^level: unknown log level 'x'"):
        configure_logging("x")


def _manifest_dir(tmp_path: Path) -> Path:
    entry = ManifestEntry(
        line=1,
        prompt="p",
        status="skipped",
        task_id=None,
        video=None,
        url=None,
        error=None,
        attempts=0,
        credits=0.0,
    )
    (tmp_path / MANIFEST_FILENAME).write_text(json.dumps(entry.to_json()) + "\n")
    return tmp_path


@pytest.mark.parametrize(
    ("env", "argv", "expected"),
    [("debug", [], logging.DEBUG), ("error", [], logging.ERROR), ("error", ["-vv"], logging.DEBUG)],
)
def test_the_command_line_applies_evolink_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: str, argv: list[str], expected: int
) -> None:
    monkeypatch.setenv("EVOLINK_LOG", env)

    assert 0 == main([*argv, "gallery", str(_manifest_dir(tmp_path)), "-q"])

    assert expected == LOGGER.level


def test_the_command_line_refuses_a_bad_evolink_log_with_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EVOLINK_LOG", "loud")

    assert 2 == main(["gallery", str(_manifest_dir(tmp_path))])

    assert "$EVOLINK_LOG: unknown log level 'loud'" in capsys.readouterr().err
    assert not (tmp_path / "index.html").exists()
