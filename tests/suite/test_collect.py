"""Which files `xen970 test` takes: scenarios with expect/xfail/skip, grouped by directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from framework.errors import UsageError
from framework.suite.collect import collect, is_test_file
from tests.suite.scenarios import write_suite


def test_collects_tests_by_group_and_skips_plain_scenarios(tmp_path: Path) -> None:
    expected = write_suite(tmp_path)
    found = collect([str(tmp_path)])
    assert [t.test_id for t in found] == sorted(expected)
    assert not is_test_file(tmp_path / "create" / "plain.yaml")


def test_a_file_given_directly_is_grouped_by_its_directory(tmp_path: Path) -> None:
    write_suite(tmp_path)
    (only,) = collect([str(tmp_path / "timer" / "01_tick_pos.yaml")])
    assert only.test_id == "timer/01_tick_pos"


def test_missing_paths_and_plain_files_are_refused(tmp_path: Path) -> None:
    write_suite(tmp_path)
    with pytest.raises(UsageError, match="no such file"):
        collect([str(tmp_path / "nope")])
    with pytest.raises(UsageError, match="not a scenario with expect"):
        collect([str(tmp_path / "create" / "plain.yaml")])
