"""Which scenario files are tests: YAML files whose top level says `expect:`, `xfail:` or
`skip:`, found under the paths given, each in the xm-test group of its directory."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from framework.errors import UsageError

__all__ = ["TestFile", "collect", "is_test_file"]

#: A top-level key that makes a scenario file a test.
_TEST_KEY: Final = re.compile(r"^(expect|xfail|skip)\s*:", re.MULTILINE)
_SUFFIXES: Final = (".yaml", ".yml")
#: Bytes read to decide whether a file is a test (scenario files are at most 1 MiB).
_HEAD: Final = 1 << 20


@dataclass(frozen=True, order=True)
class TestFile:
    """A scenario file that is a test: its group (directory) and name (file stem)."""

    group: str
    name: str
    path: Path

    @property
    def test_id(self) -> str:
        """`group/name`, as reports and JUnit name the test."""
        return f"{self.group}/{self.name}" if self.group else self.name


def is_test_file(path: Path) -> bool:
    """A YAML file whose top level has `expect`, `xfail` or `skip`."""
    if path.suffix not in _SUFFIXES or not path.is_file():
        return False
    try:
        with path.open("rb") as file:
            head = file.read(_HEAD).decode("utf-8", errors="replace")
    except OSError:
        return False
    return _TEST_KEY.search(head) is not None


def collect(paths: list[str]) -> list[TestFile]:
    """The test files under `paths` (files or directories), sorted by group and name.

    The group is the file's directory relative to the directory given (for a file given
    directly, its parent's name), as xm-test groups tests by directory."""
    found: set[TestFile] = set()
    for given in paths:
        root = Path(given)
        if not root.exists():
            raise UsageError(f"xen970 test: {given}: no such file or directory")
        if root.is_file():
            if not is_test_file(root):
                raise UsageError(f"xen970 test: {given}: not a scenario with expect, xfail or skip")
            found.add(TestFile(root.parent.name, root.stem, root))
            continue
        for path in sorted(root.rglob("*")):
            if is_test_file(path):
                rel = path.parent.relative_to(root)
                group = rel.as_posix() if rel.parts else root.name
                found.add(TestFile(group, path.stem, path))
    return sorted(found)
