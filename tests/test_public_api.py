"""The public API: every public module declares ``__all__`` covering its public names, and the
package re-exports the public names of errors, models and the client."""

# Tests assert `expected == actual`, the project's test style; ruff's SIM300 calls that a
# "Yoda condition", so it is off in this file.

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import evolink_async
from evolink_async import client, errors, models


def _public_module_names() -> list[str]:
    """Every module of the package whose dotted name has no ``_``-prefixed part."""
    names = []
    for info in pkgutil.walk_packages(evolink_async.__path__, prefix="evolink_async."):
        parts = info.name.split(".")[1:]
        if not any(part.startswith("_") for part in parts):
            names.append(info.name)
    return sorted(names)


PUBLIC_MODULES = _public_module_names()


def _defined_public_names(module: ModuleType) -> set[str]:
    """Public classes and functions defined in ``module`` itself (not imported into it)."""
    return {
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and getattr(obj, "__module__", None) == module.__name__
    }


def test_the_walk_finds_the_foundation_modules() -> None:
    expected = {"evolink_async.client", "evolink_async.errors", "evolink_async.models"}
    assert expected <= set(PUBLIC_MODULES)
    assert [] == [name for name in PUBLIC_MODULES if "._" in name]


@pytest.mark.parametrize("name", ["evolink_async", *PUBLIC_MODULES])
def test_public_module_defines_all_as_a_list_of_unique_strings(name: str) -> None:
    module = importlib.import_module(name)
    names = getattr(module, "__all__", None)
    assert isinstance(names, (list, tuple)), f"{name} has no __all__"
    assert [] == [n for n in names if not isinstance(n, str)]
    assert sorted(set(names)) == sorted(names), f"{name}.__all__ has duplicates"


@pytest.mark.parametrize("name", ["evolink_async", *PUBLIC_MODULES])
def test_every_name_in_all_exists(name: str) -> None:
    module = importlib.import_module(name)
    assert [] == [n for n in getattr(module, "__all__", ()) if not hasattr(module, n)]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_every_public_class_and_function_of_a_module_is_in_its_all(name: str) -> None:
    module = importlib.import_module(name)
    missing = _defined_public_names(module) - set(getattr(module, "__all__", ()))
    assert set() == missing


def test_the_package_reexports_errors_models_and_the_client() -> None:
    wanted = set(errors.__all__) | set(models.__all__) | {"EvolinkClient", "RetryPolicy"}
    assert set() == wanted - set(evolink_async.__all__)


@pytest.mark.parametrize("module", [errors, models, client], ids=lambda m: m.__name__)
def test_reexported_names_are_the_same_objects_as_in_their_module(module: ModuleType) -> None:
    different = [
        n
        for n in module.__all__
        if n in evolink_async.__all__ and getattr(evolink_async, n) is not getattr(module, n)
    ]
    assert [] == different


def test_every_exception_class_of_errors_derives_from_evolink_error() -> None:
    classes = [getattr(errors, n) for n in errors.__all__ if inspect.isclass(getattr(errors, n))]
    assert len(classes) >= 20
    assert [] == [c.__name__ for c in classes if not issubclass(c, errors.EvolinkError)]


def test_the_retry_names_of_the_package_are_those_of_the_one_retry_engine() -> None:
    from evolink_async import _retry, _transport  # noqa: PLC0415 - the private homes checked

    assert (_retry.RetryPolicy, _retry.set_testing, _transport.RetryEvent) == (
        evolink_async.RetryPolicy,
        evolink_async.set_testing,
        evolink_async.RetryEvent,
    )


def test_the_layers_below_the_client_are_importable_from_their_modules() -> None:
    from evolink_async.api import EvolinkAPI  # noqa: PLC0415
    from evolink_async.callbacks import CallbackReceiver, TaskWaker  # noqa: PLC0415
    from evolink_async.dispatcher import Attach, Dispatcher  # noqa: PLC0415
    from evolink_async.limits import Limits, Throttle  # noqa: PLC0415

    assert evolink_async.CallbackReceiver is CallbackReceiver
    assert all(inspect.isclass(c) for c in (EvolinkAPI, TaskWaker, Attach, Dispatcher))
    assert all(inspect.isclass(c) for c in (Limits, Throttle))
