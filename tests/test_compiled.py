"""The mypyc build list and the staleness check (framework/compiled.py, setup.py)."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from framework import compiled

ROOT = Path(__file__).resolve().parent.parent


def _setup_list() -> list[str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.AnnAssign | ast.Assign):
            target = node.target if isinstance(node, ast.AnnAssign) else node.targets[0]
            if isinstance(target, ast.Name) and target.id == "MYPYC_MODULES":
                assert node.value is not None
                return list(ast.literal_eval(node.value))
    raise AssertionError("setup.py has no MYPYC_MODULES")


def test_setup_and_framework_list_the_same_modules() -> None:
    files = [m.replace(".", "/") + ".py" for m in compiled.MYPYC_MODULES]
    assert sorted(_setup_list()) == sorted(files)
    for f in files:
        assert (ROOT / f).is_file(), f


def test_compiled_modules_are_those_with_an_extension() -> None:
    for name in compiled.compiled_modules():
        assert not compiled.module_origin(name).endswith(".py")
    assert set(compiled.compiled_modules()) <= set(compiled.MYPYC_MODULES)


def test_an_edited_source_is_reported_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    name = compiled.MYPYC_MODULES[0]
    stem = "/build/" + name.replace(".", "/")
    built, source = stem + ".cpython-311-x86_64-linux-gnu.so", stem + ".py"
    monkeypatch.setattr(compiled, "compiled_modules", lambda: [name])
    monkeypatch.setattr(compiled, "module_origin", {name: built}.__getitem__)
    times = {built: 100.0, source: 200.0}
    monkeypatch.setattr(os.path, "exists", lambda p: p in times)
    monkeypatch.setattr(os.path, "getmtime", times.__getitem__)
    assert compiled.stale_modules() == [name]
    times[source] = 50.0
    assert compiled.stale_modules() == []
