"""The pytest plugin (entry point `pytest11: xen970`): scenario files with `expect:`,
`xfail:` or `skip:` become test items, so `pytest scenarios/` runs them in any CI.

Each item runs its scenario in the pytest process (the verdicts are `xen970 test`'s), and
writes its run directory under `--xen970-out` (default `runs/pytest`).  A failure shows
each failed check with its measured value and bound, and the run directory.  SKIP and
XFAIL map to pytest's skip and xfail; an XPASS passes, with a warning.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from framework.suite.collect import is_test_file

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["ScenarioItem", "ScenarioTestFile"]

_OUT_OPTION = "--xen970-out"
_TIMEOUT_S = 600.0


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("xen970", "xen970 scenario tests")
    group.addoption(
        _OUT_OPTION,
        default="runs/pytest",
        help="where scenario items write their run directories (default runs/pytest)",
    )


def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> pytest.Collector | None:
    if is_test_file(file_path):
        return ScenarioTestFile.from_parent(parent, path=file_path)
    return None


class ScenarioTestFile(pytest.File):
    """A scenario file: one item, named after the file."""

    def collect(self) -> Iterator[pytest.Item]:
        yield ScenarioItem.from_parent(self, name=self.path.stem)


class ScenarioItem(pytest.Item):
    """One scenario, validated, run and judged."""

    def runtest(self) -> None:
        # The simulator loads only when a scenario item runs, not at every pytest start.
        from framework.suite.job import Job, run_job, write_run_files

        path = self.path
        job = Job(
            f"{path.parent.name}/{path.stem}",
            str(path),
            path.read_text(encoding="utf-8"),
            str(path.parent.resolve()),
            _TIMEOUT_S,
        )
        result = run_job(job)
        run_dir = Path(str(self.config.getoption(_OUT_OPTION))) / path.parent.name / path.stem
        if run_dir.exists():
            shutil.rmtree(run_dir)
        write_run_files(result.files, run_dir)
        if result.verdict == "SKIP":
            pytest.skip(result.reason)
        if result.verdict == "XFAIL":
            pytest.xfail(result.reason)
        if result.verdict == "XPASS":
            warnings.warn(f"{self.name}: XPASS: {result.reason}", stacklevel=1)
        if result.verdict in ("FAIL", "TIMEOUT"):
            lines = [f"{result.verdict}: {path}"]
            lines += [
                f"  {c['name']}: measured {c['shown']}, expected {c['bound']}"
                for c in result.failed_checks
            ] or [f"  {result.reason}"]
            lines.append(f"  run directory: {run_dir}")
            pytest.fail("\n".join(lines), pytrace=False)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"scenario {self.name}"
