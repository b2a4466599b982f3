"""The CLI commands that read a finished run directory and write it in another form:
`xen970 export` (Perfetto JSON, xentrace binary) and `xen970 report` (one HTML page).

They import `analysis` lazily: the simulator's own commands start without pandas plots.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Final

from framework.errors import UnitError, UsageError
from framework.runinfo import REPORT_FILE, RUN_FILE, TRACE_FILE
from framework.units import parse_frequency
from framework.xen.public.io.blkif import XVD_MAJOR

__all__ = ["add_export_command", "add_report_command", "vbd_name"]


def vbd_name(dev: int) -> str:
    """`xvda`, `xvdb2`, ... for a Linux xvd device number, else `vbd/<number>`."""
    if dev >> 8 != XVD_MAJOR:
        return f"vbd/{dev}"
    disk, partition = (dev & 0xFF) >> 4, dev & 0xF
    return f"xvd{chr(ord('a') + disk)}{partition or ''}"


# -- xen970 export (issue 17): a finished run in other tools' formats -----------------------
_EXPORT_FORMATS: Final = ("perfetto", "xentrace")


def _export_target(out: str | None, default: Path, force: bool) -> Path:
    """The file to write: never one that exists unless --force, never a directory."""
    if out == "":
        raise UsageError("xen970 export: --out: the file name is empty ('')")
    path = Path(out) if out is not None else default
    if path.is_dir():
        raise UsageError(f"xen970 export: --out {path}: is a directory; name a file")
    if path.exists() and not force:
        raise UsageError(
            f"xen970 export: {path} exists; pass --force to replace it, or --out another file"
        )
    if not path.parent.is_dir():
        raise UsageError(f"xen970 export: --out {path}: no directory {path.parent}")
    return path


def _export(args: argparse.Namespace) -> int:
    """`xen970 export --format F RUN_DIR`: Perfetto JSON or a xentrace binary file."""
    from analysis.export_perfetto import FILE_NAME as PERFETTO_FILE
    from analysis.export_perfetto import write_perfetto
    from analysis.export_xentrace import FILE_NAME as XENTRACE_FILE
    from analysis.export_xentrace import XentraceExportError, run_timebase_hz, write_xentrace
    from analysis.run import load_run

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"xen970 export: {run_dir}: no such run directory")
    timebase = 0
    if args.timebase is not None:
        if args.format != "xentrace":
            raise UsageError("xen970 export: --timebase is for --format xentrace only")
        try:
            timebase = parse_frequency(args.timebase)
        except UnitError as exc:
            raise UsageError(f"xen970 export: --timebase: {exc}") from None
    name = PERFETTO_FILE if args.format == "perfetto" else XENTRACE_FILE
    target = _export_target(args.out, run_dir / name, args.force)
    if any(target.resolve() == (run_dir / f).resolve() for f in (TRACE_FILE, RUN_FILE)):
        raise UsageError(f"xen970 export: --out {target} is the run's own {target.name}")
    try:
        run = load_run(run_dir)
    except FileNotFoundError as exc:
        raise UsageError(f"xen970 export: {exc}") from None
    except (ValueError, KeyError) as exc:  # a trace or run.json that cannot be read
        raise UsageError(f"xen970 export: {run_dir}: not a readable run: {exc}") from None
    # Written beside the target and moved into place, so a failure leaves no half file and
    # (without --force) a file that appeared meanwhile is not replaced.
    partial = target.with_name(f".{target.name}.partial")
    try:
        if args.format == "perfetto":
            with partial.open("w", encoding="utf-8") as text:
                count = write_perfetto(run, text)
            what = f"{count} trace events; open it in ui.perfetto.dev or chrome://tracing"
        else:
            hz = timebase or run_timebase_hz(run)
            with partial.open("wb") as binary:
                size = write_xentrace(run, binary, hz)
            what = f"{size} bytes; read it with xenalyze --cpu-hz={hz} --summary {target}"
        if args.force:
            os.replace(partial, target)
        else:
            os.link(partial, target)  # fails if target exists: nothing is overwritten
    except XentraceExportError as exc:
        raise UsageError(f"xen970 export: {run_dir}: {exc}") from None
    except FileExistsError:
        raise UsageError(f"xen970 export: {target} exists; pass --force to replace it") from None
    finally:
        partial.unlink(missing_ok=True)
    print(f"wrote {target}: {what}")
    return 0


def add_export_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    export = sub.add_parser("export", help="write a finished run as Perfetto JSON or xentrace")
    export.add_argument("run_dir", help="a run directory (trace.parquet and run.json)")
    export.add_argument("--format", required=True, choices=_EXPORT_FORMATS)
    export.add_argument(
        "--out",
        help="file to write (default: RUN_DIR/trace.perfetto.json or RUN_DIR/trace.xentrace)",
    )
    export.add_argument("--force", action="store_true", help="replace --out if it exists")
    export.add_argument(
        "--timebase",
        metavar="HZ",
        help="xentrace: cycles per second of the cycle counter (default: the run's timebase "
        "from run.json, else 33.333333MHz); pass the same to xenalyze --cpu-hz",
    )
    export.set_defaults(func=_export)


# -- end of xen970 export -----------------------------------------------------------------
# -- xen970 report (issue 17) -------------------------------------------------------------
def _report(args: argparse.Namespace) -> int:
    """`xen970 report RUN [--out FILE.html]`: one self-contained HTML page of a finished run."""
    from analysis.report_html import write_report
    from analysis.run import load_run

    directory = Path(args.run_dir)
    try:
        run = load_run(directory)
    except OSError as exc:  # no run there
        raise UsageError(f"xen970: {exc}") from None
    except ValueError as exc:  # files that are not a run's (TraceMetadataError, bad JSON...)
        raise UsageError(f"xen970: {directory}: not a run xen970 can read: {exc}") from None
    out = Path(args.out) if args.out else directory / REPORT_FILE
    path = write_report(run, out, device_name=vbd_name)
    print(f"report: {path}")
    return 0


def add_report_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = sub.add_parser("report", help="write a finished run's HTML report (plots included)")
    report.add_argument("run_dir", help="a run directory (trace.parquet and run.json)")
    report.add_argument("--out", metavar="FILE.html", help=f"default: RUN/{REPORT_FILE}")
    report.set_defaults(func=_report)


# -- end of xen970 report ------------------------------------------------------------------
