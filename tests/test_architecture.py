"""The house rules, checked: the layer contract (import-linter, TYPE_CHECKING imports included),
no reading of another module's private names, and the size limits of classes, modules and
functions."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "evolink_async"
ROOT = PACKAGE.parent

#: files allowed past the limits (issue 11 would except the simulator's server; it fits now)
_MODULE_EXCEPTIONS: frozenset[str] = frozenset()
#: ``self``/``cls``, and the standard library's documented underscore names (``os._exit``,
#: ``hashlib._Hash`` in annotations)
_MAY_READ_PRIVATE = frozenset({"self", "cls", "os", "hashlib"})
_MAX_MODULE, _MAX_CLASS, _MAX_FUNCTION = 500, 300, 60


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _lint_imports(cwd: Path, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe is not None, "import-linter is not installed (it is in the dev group)"
    args = [exe, "--no-cache"]
    if config is not None:
        args += ["--config", str(config)]
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_layer_contract_holds() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout


def test_layer_contract_would_fail_if_the_poller_imported_the_batch(tmp_path: Path) -> None:
    """The contract has teeth: a copy of the package whose poller imports ``batch`` (under
    TYPE_CHECKING, the subtlest form) is refused."""
    copy = tmp_path / "evolink_async"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    poller = copy / "poller.py"
    text = poller.read_text(encoding="utf-8")
    marker = "from __future__ import annotations\n"
    assert marker in text
    poller.write_text(
        text.replace(
            marker,
            marker + "from typing import TYPE_CHECKING as _TC\nif _TC:\n    from . import batch\n",
            1,
        ),
        encoding="utf-8",
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    assert "evolink_async.poller -> evolink_async.batch" in result.stdout


def _module_of(path: Path) -> list[str]:
    parts = ["evolink_async", *path.relative_to(PACKAGE).with_suffix("").parts]
    return parts[:-1] if parts[-1] == "__init__" else parts


def _is_own_ground_module(target: list[str], name: str, package: list[str]) -> bool:
    """``from . import _retry``: a private module of a package the importer is inside."""
    base = PACKAGE.joinpath(*target[1:], name)
    is_module = base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()
    return is_module and package[: len(target)] == target


def _private_imports(path: Path) -> list[str]:
    """Imports of another module's private names (``from .x import _name``), and of a private
    module of a package the importer is not inside (``cli`` importing ``testing._cli``).
    The root's private modules (``_codec``, ``_retry``, ...) are the package's own ground."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = _module_of(path)
    package = here if path.name == "__init__.py" else here[:-1]
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level > 0:
            base = package[: len(package) - (node.level - 1)]
            target = [*base, *(node.module.split(".") if node.module else [])]
        elif (node.module or "").startswith("evolink_async"):
            target = (node.module or "").split(".")
        else:
            continue
        for i, part in enumerate(target):
            owner = target[:i]
            if (
                part.startswith("_")
                and not part.startswith("__")
                and package[: len(owner)] != owner
            ):
                found.append(
                    f"{path.relative_to(PACKAGE)}:{node.lineno} imports {'.'.join(target)}"
                )
        found += [
            f"{path.relative_to(PACKAGE)}:{node.lineno} imports {alias.name}"
            for alias in node.names
            if alias.name.startswith("_")
            and not alias.name.startswith("__")
            and not _is_own_ground_module(target, alias.name, package)
        ]
    return found


def test_no_module_imports_another_modules_private_names() -> None:
    problems = [p for path in _sources() for p in _private_imports(path)]
    assert problems == []


def _own_private_names(tree: ast.AST) -> set[str]:
    """Private names a module defines itself: attributes it assigns, slots, defs and classes."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)  # __slots__ entries, attrs field names
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def _private_reads(path: Path) -> list[str]:
    """``obj._name`` where ``obj`` is not ``self``/``cls`` and no class of this module defines
    ``_name``: reading another module's object's private attribute. Classes of one module may
    cooperate through their private names."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    own = _own_private_names(tree)
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and not (isinstance(node.value, ast.Name) and node.value.id in _MAY_READ_PRIVATE)
            and node.attr not in own
        ):
            found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} reads .{node.attr}")
    return found


def test_no_module_reads_another_modules_private_attributes() -> None:
    problems = [p for path in _sources() for p in _private_reads(path)]
    assert problems == []


def _spans(path: Path) -> list[tuple[str, str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    spans = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            assert node.end_lineno is not None
            kind = "class" if isinstance(node, ast.ClassDef) else "function"
            spans.append((kind, node.name, node.end_lineno - node.lineno + 1))
    return spans


def test_size_limits() -> None:
    too_big = []
    for path in _sources():
        rel = path.relative_to(PACKAGE).as_posix()
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if rel in _MODULE_EXCEPTIONS:
            continue
        if lines > _MAX_MODULE:
            too_big.append(f"module {rel}: {lines} lines")
        for kind, name, length in _spans(path):
            limit = _MAX_CLASS if kind == "class" else _MAX_FUNCTION
            if length > limit:
                too_big.append(f"{kind} {rel}:{name}: {length} lines")
    assert too_big == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from .download import _part_name\n", ["m.py:1 imports _part_name"]),
        ("from ._codec import decode_task\n", []),
        ("from .x import __version__\n", []),
        ("from .testing._cli import serve\n", ["m.py:1 imports evolink_async.testing._cli"]),
        ("from .testing import _cli\n", ["m.py:1 imports _cli"]),
        ("from . import _retry\n", []),
    ],
)
def test_private_import_scan(
    tmp_path: Path, source: str, expected: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path)
    (tmp_path / "_retry.py").write_text("", encoding="utf-8")
    module = tmp_path / "m.py"
    module.write_text(textwrap.dedent(source), encoding="utf-8")
    assert expected == _private_imports(module)
