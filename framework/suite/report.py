"""What `xen970 test` prints and writes: the xm-test style report and a JUnit XML file.

The JUnit file keeps to the schema Jenkins' xUnit plug-in publishes (junit-10.xsd), which
GitLab and GitHub's reporters also read: no attribute or element beyond it.

xm-test counts PASS, FAIL, XPASS, XFAIL, SKIP and TIMEOUT per group and in total, then
lists what did not pass.  JUnit XML (the format Jenkins, GitLab and GitHub read) has no
XFAIL or TIMEOUT: an XFAIL is a skipped test whose message says so, a TIMEOUT an error,
an XPASS a pass whose output says so.
"""

from __future__ import annotations

import socket
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from framework.suite.collect import TestFile
from framework.suite.job import VERDICTS, JobResult

__all__ = ["counts", "report_lines", "write_junit"]


def counts(results: Sequence[JobResult]) -> dict[str, int]:
    """How many results of each verdict, every verdict present (0 when none)."""
    found = Counter(r.verdict for r in results)
    return {v: found.get(v, 0) for v in VERDICTS}


def report_lines(
    tests: Sequence[TestFile], results: Sequence[JobResult], where: str, wall_s: float
) -> list[str]:
    """The report, a line each: a table per group and in total, then every non-pass."""
    groups: dict[str, list[JobResult]] = {}
    for test, result in zip(tests, results, strict=True):
        groups.setdefault(test.group, []).append(result)
    width = max([len("total"), *(len(g) for g in groups)])
    head = f"{'group':<{width}}  " + "  ".join(f"{v:>7}" for v in VERDICTS)
    lines = [
        f"xen970 test: {len(results)} scenario(s) on {where}, {wall_s:.1f} s wall",
        "",
        head,
        "-" * len(head),
    ]
    for group, members in groups.items():
        row = counts(members)
        lines.append(f"{group:<{width}}  " + "  ".join(f"{row[v]:>7}" for v in VERDICTS))
    lines.append("-" * len(head))
    total = counts(results)
    lines.append(f"{'total':<{width}}  " + "  ".join(f"{total[v]:>7}" for v in VERDICTS))
    notes = [
        f"{r.verdict}: {t.test_id}: {r.reason}"
        for t, r in zip(tests, results, strict=True)
        if r.verdict not in ("PASS", "SKIP")
    ]
    if notes:
        lines += ["", *notes]
    return lines


def _case(suite: ET.Element, test: TestFile, result: JobResult) -> None:
    case = ET.SubElement(
        suite,
        "testcase",
        {"classname": f"xm-test.{test.group}", "name": test.name, "time": f"{result.wall_s:.3f}"},
    )
    if result.verdict == "FAIL":
        failure = ET.SubElement(case, "failure", message=result.reason, type="expectation")
        failure.text = (
            "\n".join(
                f"{c['name']}: measured {c['shown']}, expected {c['bound']}"
                for c in result.failed_checks
            )
            or result.reason
        )
    elif result.verdict == "TIMEOUT":
        ET.SubElement(case, "error", message=result.reason, type="timeout")
    elif result.verdict in ("SKIP", "XFAIL"):
        ET.SubElement(case, "skipped", message=f"{result.verdict}: {result.reason}")
    elif result.verdict == "XPASS":
        out = ET.SubElement(case, "system-out")
        out.text = f"XPASS: {result.reason}"


def write_junit(path: Path, tests: Sequence[TestFile], results: Sequence[JobResult]) -> None:
    """A JUnit XML file: one <testsuite> per group, one <testcase> per scenario."""
    stamp = datetime.now(UTC).replace(microsecond=0, tzinfo=None).isoformat()
    host = socket.gethostname()
    root = ET.Element("testsuites", name="xen970")
    groups: dict[str, list[tuple[TestFile, JobResult]]] = {}
    for test, result in zip(tests, results, strict=True):
        groups.setdefault(test.group, []).append((test, result))
    for i, (group, members) in enumerate(groups.items()):
        c = counts([r for _, r in members])
        suite = ET.SubElement(
            root,
            "testsuite",
            {
                "name": f"xm-test.{group}",
                "tests": str(len(members)),
                "failures": str(c["FAIL"]),
                "errors": str(c["TIMEOUT"]),
                "skipped": str(c["SKIP"] + c["XFAIL"]),
                "time": f"{sum(r.wall_s for _, r in members):.3f}",
                "timestamp": stamp,
                "hostname": host,
                "id": str(i),
                "package": "xm-test",
            },
        )
        ET.SubElement(suite, "properties")
        for test, result in members:
            _case(suite, test, result)
        ET.SubElement(suite, "system-out")
        ET.SubElement(suite, "system-err")
    total = counts(results)
    root.set("tests", str(len(results)))
    root.set("failures", str(total["FAIL"]))
    root.set("errors", str(total["TIMEOUT"]))
    root.set("time", f"{sum(r.wall_s for r in results):.3f}")
    ET.indent(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
