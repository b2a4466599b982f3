"""The shape of the xm-test style suite in `scenarios/xm-test/<group>/NN_name_(pos|neg).yaml`.

Cheap on purpose (validation only, nothing is simulated): `xen970 test` runs the suite.
Each file says what it tests in a leading comment; a negative test's refusal really
happens, with a message its regex finds; every other file validates and carries checks
(`expect:`), or says why it is skipped.
"""

from __future__ import annotations

import re
from itertools import takewhile
from pathlib import Path
from typing import Any

import pytest
import yaml

from framework.errors import ScenarioError
from framework.scenario import load_scenario

SUITE = Path(__file__).resolve().parents[1] / "scenarios" / "xm-test"
FILES = sorted(SUITE.glob("*/*.yaml"))
NAME = re.compile(r"(?P<nn>\d\d)_[a-z0-9][a-z0-9_-]*_(?P<kind>pos|neg)\.yaml")


def _raw(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path}: not a mapping"
    return data


def _refused(data: dict[str, Any]) -> str | None:
    expect = data.get("expect")
    return expect.get("refused") if isinstance(expect, dict) else None


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def test_the_suite_has_at_least_60_tests_in_groups() -> None:
    assert len(FILES) >= 60
    assert not list(SUITE.glob("*.yaml")), "scenario files live in a group directory"
    assert not list(SUITE.glob("*/*/*.yaml")), "groups are one level deep"


def test_file_names_follow_xm_test() -> None:
    bad = [_id(p) for p in FILES if NAME.fullmatch(p.name) is None]
    assert not bad, f"not NN_name_pos.yaml / NN_name_neg.yaml: {bad}"
    for group in sorted({p.parent for p in FILES}):
        numbers = [NAME.fullmatch(p.name)["nn"] for p in group.glob("*.yaml")]  # type: ignore[index]
        assert len(numbers) == len(set(numbers)), f"{group.name}: a test number is used twice"


def test_scenario_names_are_unique() -> None:
    """Reports and default run directories key on the scenario name."""
    seen: dict[str, str] = {}
    for path in FILES:
        name = _raw(path)["name"]
        assert name not in seen, f"{_id(path)} and {seen[name]} are both called {name!r}"
        seen[name] = _id(path)


@pytest.mark.parametrize("path", FILES, ids=_id)
def test_file_starts_with_what_it_tests(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    comment = list(takewhile(lambda line: line.startswith("#"), lines))
    assert comment, f"{_id(path)}: no leading comment saying what it tests"
    assert len(" ".join(comment)) > 60, f"{_id(path)}: the leading comment says too little"


@pytest.mark.parametrize("path", FILES, ids=_id)
def test_file_validates_or_is_refused_as_it_says(path: Path) -> None:
    data = _raw(path)
    kind = NAME.fullmatch(path.name)["kind"]  # type: ignore[index]
    refused = _refused(data)
    if refused is not None:
        assert kind == "neg", f"{_id(path)}: a refusal is a negative test (_neg)"
        assert "xfail" not in data and "skip" not in data
        with pytest.raises(ScenarioError) as err:
            load_scenario(path)
        assert re.search(refused, str(err.value)), (
            f"{_id(path)}: refused with {str(err.value)!r}, which /{refused}/ does not find"
        )
        return
    scenario = load_scenario(path)
    assert scenario.checks or scenario.skip, f"{_id(path)}: no expect checks and no skip"
    if scenario.xfail is not None:
        assert scenario.checks, f"{_id(path)}: an xfail scenario needs the checks it will pass"
