"""nox sessions: tests, lint, typecheck, bench, fleet, docs."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.default_venv_backend = "venv"

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]


def _install(session: nox.Session) -> None:
    session.install("-U", "pip")
    session.install("-e", ".[cli]", "--group", "dev")


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The test suite (what CI runs)."""
    _install(session)
    session.run("pytest", "-q", "-n", "auto", "--maxprocesses", "4", *session.posargs)


@nox.session
def soak(session: nox.Session) -> None:
    """The long soaks kept out of the default suite (pytest -m soak)."""
    _install(session)
    session.run("pytest", "-q", "-m", "soak", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint and formatting) and the layer contract (import-linter)."""
    session.install("ruff", "import-linter", "-e", ".")
    session.run("lint-imports")
    session.run("ruff", "check", "evolink_async", "tests", "benchmarks", "noxfile.py")
    session.run("ruff", "format", "--check", "evolink_async", "tests", "benchmarks", "noxfile.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package, and the typing test file."""
    _install(session)
    session.run("mypy", "--strict", "evolink_async")
    session.run("mypy", "--strict", "tests/typing")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks (print figures; pass --full for the large profile)."""
    _install(session)
    full = "--full" in session.posargs
    args = [a for a in session.posargs if a != "--full"]
    profile = [] if full else ["--quick"]
    session.run("python", "benchmarks/bench_batch.py", *profile, *args)
    session.run("python", "benchmarks/bench_scale.py", *profile, *args)


@nox.session
def fleet(session: nox.Session) -> None:
    """Processes on one key sharing its limits through Redis (needs redis-server; pass --full
    for 192 clips a run instead of 48)."""
    _install(session)
    full = "--full" in session.posargs
    args = [a for a in session.posargs if a != "--full"]
    session.run("python", "benchmarks/bench_fleet.py", *([] if full else ["--quick"]), *args)


@nox.session
def docs(session: nox.Session) -> None:
    """The docs site (docs/, mkdocs.yml): mkdocs-material with mkdocstrings, warnings as errors
    (pass serve to preview it instead)."""
    session.install("-U", "pip")
    session.install("-e", ".", "--group", "docs")
    session.env["NO_MKDOCS_2_WARNING"] = "1"
    if "serve" in session.posargs:
        session.run("mkdocs", "serve")
        return
    session.run("mkdocs", "build", "--strict")
