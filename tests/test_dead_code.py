"""No dead code in the product: what vulture finds is removed, or kept on purpose and said why.

The same check by hand: `vulture framework analysis fuzz tests benchmarks --min-confidence 60`.
Tests and benchmarks are scanned as users (a counter a test asserts on is read), and
tests/vulture_whitelist.py names the deliberate keeps; only framework/, analysis/ and fuzz/ are
judged.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Final

REPO: Final = Path(__file__).resolve().parents[1]
SCANNED: Final = ("framework", "analysis", "fuzz", "tests", "benchmarks")
JUDGED: Final = ("framework/", "analysis/", "fuzz/")
MIN_CONFIDENCE: Final = 60

#: One finding of vulture: `path:line: message (NN% confidence)`.
_FINDING: Final = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+): (?P<message>.*)$")


def _findings() -> list[tuple[str, str]]:
    """(path, the whole report line) for everything vulture finds at MIN_CONFIDENCE."""
    done = subprocess.run(
        [sys.executable, "-m", "vulture", *SCANNED, "--min-confidence", str(MIN_CONFIDENCE)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    # vulture exits 0 when it finds nothing and 3 when it finds dead code; anything else failed.
    assert done.returncode in (0, 3), f"vulture failed ({done.returncode}):\n{done.stderr}"
    findings = []
    for line in done.stdout.splitlines():
        match = _FINDING.match(line)
        assert match, f"unexpected vulture output: {line!r}"
        findings.append((Path(match["path"]).as_posix(), line))
    return findings


def test_no_dead_code_in_framework_or_analysis() -> None:
    dead = [line for path, line in _findings() if path.startswith(JUDGED)]
    assert not dead, (
        "dead code (remove it, or keep it in tests/vulture_whitelist.py with the reason):\n"
        + "\n".join(dead)
    )
