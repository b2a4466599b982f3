"""run.json: what a run was (scenario, seed, versions) and what it produced (counts, checks)."""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Final

import framework

__all__ = ["ERROR_LOG", "RUN_FILE", "versions", "write_run_json"]

RUN_FILE: Final = "run.json"
#: Where a failed run's traceback goes, in its run directory.
ERROR_LOG: Final = "error.log"
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
    expectations: Sequence[Any],
    stalled_workloads: Sequence[Mapping[str, Any]] = (),
    warnings: Sequence[str] = (),
    simulator_bugs: Sequence[Mapping[str, Any]] = (),
) -> Path:
    """Write `directory/run.json` with sorted keys; domain ids become string keys.

    `stalled_workloads` lists the workloads that made no progress (domain, kind, vcpu,
    workload index, why); `warnings` says each in one line, as `xen970 run` prints it;
    `simulator_bugs` the unexpected exceptions out of hypercall handlers (time, domain,
    VCPU, hypercall, number, arguments, reason), each of which crashed its caller."""
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
        "expectations": list(expectations),
        "versions": versions(),
        "stalled_workloads": [dict(w) for w in stalled_workloads],
        "warnings": list(warnings),
        "simulator_bugs": [dict(b) for b in simulator_bugs],
    }
    path = out / RUN_FILE
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path
