"""The error tree: every exception class of framework/ is a Xen970Error, declared in one module."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import framework
from framework import compiled, errors
from framework.errors import (
    GuestFault,
    HardwareFault,
    HypervisorError,
    ScenarioError,
    SimulationError,
    Xen970Error,
    fault_reason,
)

#: Private helpers that may stay beside the code they serve (each still a Xen970Error).
_LOCAL_HELPERS = {"Problem"}  # the scenario validators' (path, message) carrier


def _framework_exception_classes() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(framework.__path__, "framework."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__.startswith("framework."):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return list(found.values())


def test_every_exception_class_of_framework_is_a_xen970_error() -> None:
    classes = _framework_exception_classes()
    assert len(classes) > 25  # the walk found the tree, not just a few modules
    outside = [c.__qualname__ for c in classes if not issubclass(c, Xen970Error)]
    assert outside == []


def test_exception_classes_live_in_framework_errors() -> None:
    stray = [
        f"{c.__module__}.{c.__qualname__}"
        for c in _framework_exception_classes()
        if c.__module__ != "framework.errors" and c.__qualname__ not in _LOCAL_HELPERS
    ]
    assert stray == []


def test_the_four_branches_do_not_overlap() -> None:
    branches = (ScenarioError, SimulationError, HardwareFault, HypervisorError, GuestFault)
    for cls in _framework_exception_classes():
        if cls is Xen970Error:
            continue
        assert sum(issubclass(cls, b) for b in branches) == 1, cls.__qualname__


def test_callers_keep_the_builtin_bases_they_catch() -> None:
    # Lookups catch KeyError/LookupError, pydantic validators need ValueError.
    assert issubclass(errors.NotOwned, KeyError)
    assert str(errors.NotOwned("pfn 0x10 is not ours")) == "pfn 0x10 is not ours"
    for cls in (errors.UnitError, errors.XsWireError, errors.BlkifRequestError):
        assert issubclass(cls, ValueError)


def test_errors_module_is_not_compiled() -> None:
    assert "framework.errors" not in compiled.MYPYC_MODULES


def test_fault_reason_names_the_type_and_the_message() -> None:
    assert fault_reason(KeyError("port")) == "KeyError: 'port'"
    assert fault_reason(errors.KernelError("d1: oops")) == "KernelError: d1: oops"
