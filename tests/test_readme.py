"""README promises: the quick start commands and CI parity.

The generated scenario reference in README is checked by tests/scenario/test_reference.py.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
TEST_COMMAND = "python -m pytest -q"


def test_quick_start_is_exactly_two_command_lines() -> None:
    section = README.split("## Quick start", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None
    run_line = (
        "python3 -m venv .venv && .venv/bin/pip install -e . && "
        ".venv/bin/xen970 run scenarios/quickstart.yaml --out runs/quickstart"
    )
    test_line = ".venv/bin/pip install -e '.[test]' && .venv/bin/python -m pytest -q"
    assert block.group(1).splitlines() == [run_line, test_line]
    assert (REPO / "scenarios" / "quickstart.yaml").is_file()


def test_ci_runs_the_readme_test_command() -> None:
    ci = REPO / ".ci" / "run"
    assert os.access(ci, os.X_OK)
    text = ci.read_text(encoding="utf-8")
    assert "set -euo pipefail" in text
    assert f'"$venv/bin/{TEST_COMMAND.split()[0]}" {" ".join(TEST_COMMAND.split()[1:])}' in text
    assert f".venv/bin/{TEST_COMMAND}" in README
    assert "docs/trace-schema.md" in README
