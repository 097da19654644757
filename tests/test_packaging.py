"""Packaging and docs as a newcomer meets them: the installed metadata (extras, classifiers,
licence), the README's first lines, and the docs site's layout (built by ``nox -s docs``)."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DIST = "evolink-async"


def _requires(extra: str) -> set[str]:
    found = set()
    for req in importlib.metadata.requires(DIST) or []:
        name, _, marker = req.partition(";")
        if f"extra == '{extra}'" in marker or f'extra == "{extra}"' in marker:
            found.add(re.split(r"[<>=!~\[ ]", name.strip(), maxsplit=1)[0])
    return found


@pytest.mark.parametrize(
    ("extra", "names"),
    [("cli", {"rich"}), ("testing", {"pytest", "pytest-asyncio"})],
)
def test_the_extras_bring_what_their_parts_need(extra: str, names: set[str]) -> None:
    assert names == _requires(extra)


def test_the_classifiers_name_every_supported_python_and_the_licence_file_is_mit() -> None:
    meta = importlib.metadata.metadata(DIST)
    versions = {
        c.rsplit(" :: ", 1)[1]
        for c in meta.get_all("Classifier") or []
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    }
    assert {"3.10", "3.11", "3.12", "3.13"} == versions
    assert ">=3.10" == meta["Requires-Python"]
    assert ("MIT", ["LICENSE"]) == (meta["License-Expression"], meta.get_all("License-File"))
    assert (REPO / "LICENSE").read_text().startswith("MIT License\n")


def test_the_readme_starts_with_its_two_commands_then_the_pip_line() -> None:
    lines = (REPO / "README.md").read_text().splitlines()
    assert ["# 1.", "# 2."] == [lines[3][:4], lines[5][:4]]
    # one check/install line: the browser (gallery tests), redis-server (shared limits),
    # PostgreSQL's server (ledger tests)
    install_packages = (
        "(p=; command -v chromium >/dev/null || p=chromium; "
        'command -v redis-server >/dev/null || p="$p redis-server"; '
        "command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 "
        '|| p="$p postgresql"; '
        '[ -z "$p" ] || (apt-get update -qq && apt-get install -y -qq $p >/dev/null)) && '
    )
    assert lines[6].startswith(install_packages)
    assert 1 == lines[6].count("apt-get install")
    assert "pytest" in lines[6]
    assert "```" == lines[7]
    assert "pip install 'evolink-async[cli]'" in "\n".join(lines[8:12])


def test_every_page_of_the_docs_nav_exists_and_the_build_is_strict() -> None:
    config = (REPO / "mkdocs.yml").read_text()
    pages = re.findall(r"^  - [^:]+: (\S+\.md)$", config, flags=re.MULTILINE)
    assert {"index.md", "quickstart.md", "batch.md", "bots.md", "simulator.md", "errors.md",
            "reference.md"} == set(pages)  # fmt: skip
    assert [] == [p for p in pages if not (REPO / "docs" / p).is_file()]
    assert "strict: true" in config
    assert '"mkdocs", "build", "--strict"' in (REPO / "noxfile.py").read_text()
    reference = (REPO / "docs" / "reference.md").read_text()
    assert ":::" in reference  # generated from the docstrings by mkdocstrings
