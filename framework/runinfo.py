"""The run directory: run.json (what a run was and what it produced) and the directory
itself, which holds exactly one run.

A run directory is made for one run (`claim_run_dir`): it must be new or empty. An earlier
run's directory is emptied only on request (`--force`), and only if xen970 made it and it
holds nothing but what a run writes, so no file of the user's is ever removed.
"""

from __future__ import annotations

import json
import os
import platform
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Final

import framework
from framework.errors import UsageError

__all__ = [
    "CONSOLE_DIR",
    "DISK_DIR",
    "ERROR_LOG",
    "REPORT_FILE",
    "RUN_FILE",
    "RUN_MARKER",
    "TRACE_FILE",
    "XM_DIR",
    "XM_VIEW_FILE",
    "claim_run_dir",
    "versions",
    "write_run_json",
]

RUN_FILE: Final = "run.json"
#: Where a failed run's traceback goes, in its run directory.
ERROR_LOG: Final = "error.log"
#: The trace (framework.trace's TRACE_FILE; named here so the CLI need not load pyarrow).
TRACE_FILE: Final = "trace.parquet"
#: The run directory's console logs (`<domain>.log`) and created disk images.
CONSOLE_DIR: Final = "console"
DISK_DIR: Final = "disks"
#: xm's views taken on the timeline: xm/<view>-<t_ns>.txt.
XM_DIR: Final = "xm"
XM_VIEW_FILE: Final = re.compile(r"[a-z_]+-[0-9]+\.txt")
#: `xen970 report`'s page, by default in the run directory it reports on.
REPORT_FILE: Final = "report.html"
#: Written first into every run directory the CLI makes: it marks a directory `--force`
#: may empty.
RUN_MARKER: Final = ".xen970-run"
_MARKER_TEXT: Final = "A run directory of xen970: `xen970 run --force` may empty it.\n"
#: What a run writes: these files at the top, console/<domain>.log, and the images of vbds
#: without an `image`, disks/<domain>-<vbd>.img; and `xen970 report`'s page.
_TOP_FILES: Final = frozenset({RUN_MARKER, RUN_FILE, ERROR_LOG, TRACE_FILE, REPORT_FILE})
_INNER: Final = {
    CONSOLE_DIR: re.compile(r"[^/]+\.log"),
    DISK_DIR: re.compile(r"[a-z0-9_-]+-xvd[a-z]\.img"),
    XM_DIR: XM_VIEW_FILE,
}
_PACKAGES: Final = ("unicorn", "simpy", "pandas", "pyarrow")


def versions() -> dict[str, str]:
    """Versions that decide a run's result, so a trace can be traced to its tools."""
    found = {"xen970": framework.__version__, "python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def write_run_json(
    directory: str | Path,
    *,
    scenario_name: str,
    scenario_sha256: str,
    seed: int,
    sim_ns: int,
    wall_s: float,
    counts: Mapping[str, int],
    domains: Mapping[int, str],
    expect: Sequence[Mapping[str, Any]] = (),
    xfail: str | None = None,
    stalled_workloads: Sequence[Mapping[str, Any]] = (),
    warnings: Sequence[str] = (),
    simulator_bugs: Sequence[Mapping[str, Any]] = (),
    machine: Mapping[str, Any] | None = None,
) -> Path:
    """Write `directory/run.json` with sorted keys; domain ids become string keys.

    `stalled_workloads` lists the workloads that made no progress (domain, kind, vcpu,
    workload index, why); `warnings` says each in one line, as `xen970 run` prints it;
    `simulator_bugs` the unexpected exceptions out of hypercall handlers (time, domain,
    VCPU, hypercall, number, arguments, reason), each of which crashed its caller.
    `machine` is the host's fixed facts (`framework.xen.host_facts`: CPUs, clock,
    timebase, memory, Xen's version, dom0's uname), what `xm info` shows of them.
    `expect` is the scenario's checks in normal form; `expectations` (their results) and
    `outcome` are filled in by `analysis.expectations.check_run_dir` once the trace is
    written."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "scenario": scenario_name,
        "scenario_sha256": scenario_sha256,
        "seed": seed,
        "sim_ns": sim_ns,
        "wall_s": wall_s,
        "counts": dict(counts),
        "domains": {str(dom): name for dom, name in sorted(domains.items())},
        "expect": [dict(check) for check in expect],
        "expectations": [],
        "xfail": xfail,
        "versions": versions(),
        "stalled_workloads": [dict(w) for w in stalled_workloads],
        "warnings": list(warnings),
        "simulator_bugs": [dict(b) for b in simulator_bugs],
        "machine": dict(machine or {}),
    }
    path = out / RUN_FILE
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def claim_run_dir(out: Path, *, force: bool, keep: Iterable[Path] = ()) -> None:
    """Make `out` this run's own, empty directory, or raise UsageError saying why not.

    `out` may be new (it and its missing parents are made) or an empty directory. A
    directory that holds anything is refused unless `force`, and then it is emptied only
    if it is an earlier run's (`RUN_MARKER`, or a run.json xen970 wrote) holding nothing
    but what a run writes and none of the files in `keep` (the images the scenario names);
    otherwise nothing is removed. Parents made for a directory that then cannot be used
    are removed again, so a refusal leaves the file system as it was.
    """
    where = f"xen970: --out {out}"
    if out.exists() and not out.is_dir():
        raise UsageError(f"{where}: exists and is not a directory")
    if out.is_dir():
        try:
            entries = sorted(os.listdir(out))
        except OSError as exc:
            raise UsageError(f"{where}: cannot be read: {exc.strerror}") from None
        if entries and not force:
            raise UsageError(
                f"{where}: holds {_listing(entries)}; a run directory holds one run: name a "
                "new or empty directory, or pass --force to empty an earlier run's"
            )
        if entries:
            _empty_earlier_run(out, entries, keep, where)
    made = _make_dirs(out, where)
    try:
        if not os.access(out, os.W_OK | os.X_OK):
            raise UsageError(f"{where}: not writable")
        try:
            (out / RUN_MARKER).write_text(_MARKER_TEXT, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"{where}: not writable: {exc.strerror}") from None
    except UsageError:
        for directory in reversed(made):
            directory.rmdir()
        raise


def _listing(entries: list[str]) -> str:
    shown = ", ".join(repr(e) for e in entries[:3])
    return shown + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")


def _make_dirs(out: Path, where: str) -> list[Path]:
    """Make `out` and its missing parents; the ones made, outermost first."""
    missing = [p for p in (out, *out.parents) if not p.exists()][::-1]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        for directory in reversed(missing):
            if directory.is_dir():
                directory.rmdir()
        raise UsageError(f"{where}: cannot create: {exc.strerror}") from None
    return missing


def _is_earlier_run(out: Path) -> bool:
    """Whether xen970 made `out`: it carries the marker, or a run.json xen970 wrote."""
    if (out / RUN_MARKER).is_file():
        return True
    try:
        doc = json.loads((out / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and "xen970" in (doc.get("versions") or {})


def _empty_earlier_run(out: Path, entries: list[str], keep: Iterable[Path], where: str) -> None:
    """Remove an earlier run's files from `out`, after checking every one is a run's."""
    if not _is_earlier_run(out):
        raise UsageError(
            f"{where}: --force empties only an earlier xen970 run's directory, and this one "
            f"has no {RUN_MARKER} or xen970 run.json (it holds {_listing(entries)}); "
            "nothing was removed"
        )
    kept = set()
    for path in keep:
        try:
            kept.add(path.resolve())
        except (OSError, RuntimeError):
            continue
    doomed: list[Path] = []
    for name in entries:
        path = out / name
        mode = path.lstat().st_mode
        if name in _TOP_FILES and stat.S_ISREG(mode):
            doomed.append(path)
        elif name in _INNER and stat.S_ISDIR(mode):
            for inner in sorted(os.listdir(path)):
                file = path / inner
                if not (_INNER[name].fullmatch(inner) and stat.S_ISREG(file.lstat().st_mode)):
                    raise UsageError(
                        f"{where}: --force: {name}/{inner} is not a file a run writes; "
                        "nothing was removed"
                    )
                if file.resolve() in kept:
                    raise UsageError(
                        f"{where}: --force: {name}/{inner} is an image the scenario uses; "
                        "nothing was removed"
                    )
                doomed.append(file)
            doomed.append(path)
        else:
            raise UsageError(
                f"{where}: --force: {name!r} is not a file a run writes; nothing was removed"
            )
    marker = out / RUN_MARKER
    for path in doomed:  # files before their directory; the marker goes last
        if path == marker:
            continue
        if path.is_dir():
            path.rmdir()
        else:
            path.unlink()
    marker.unlink(missing_ok=True)
