"""`xen970 sweep SCENARIO --set KEY=V1,V2 ... [--seeds N|A-B]`: a parameter study.

The cross product of the `--set` values and the seeds, each point a scenario validated
like a file (a bad value is refused before anything runs, naming its `--set`), run on the
same Dask engine as `xen970 test`.  Under `--out`:

- `runs/<id>/`: each run's directory; `run.json` is written last, so a run with one is
  finished and a rerun of an interrupted sweep skips it;
- `dataset/<id>.parquet`: each run's trace with the point's parameters (and `seed`,
  `run`) as columns: together one Parquet dataset (`analysis.load_sweep`);
- `summary.parquet`: one row per run: parameters, outcome, each domain's CPU share and
  each check's measured value and verdict (`analysis.load_sweep_summary`).
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from analysis.run import RUN_FILE, TRACE_FILE, Run, read_trace
from analysis.summary import summarize
from analysis.sweep import DATASET_DIR, RUNS_DIR, SUMMARY_FILE
from framework.errors import ScenarioError, UsageError
from framework.scenario import load_scenario, parse_scenario
from framework.suite.engine import Engine
from framework.suite.job import Job, JobResult, run_job, write_run_files

__all__ = ["SweepOptions", "parse_seeds", "parse_set", "points", "run_sweep"]

_SEEDS: Final = re.compile(r"(\d+)(?:-(\d+))?")
_MAX_POINTS: Final = 100_000


@dataclass(frozen=True)
class SweepOptions:
    """What `xen970 sweep` was asked."""

    scenario: Path
    sets: tuple[str, ...]
    seeds: str | None
    out: Path
    timeout_s: float = 3600.0
    scheduler: str | None = None
    workers: int | None = None


def parse_set(text: str) -> tuple[str, list[Any]]:
    """`domains.web.weight=256,512` -> ('domains.web.weight', [256, 512]); values are YAML
    scalars (numbers stay numbers, `10ms` stays a string for the unit parsers)."""
    key, sep, values = text.partition("=")
    if not sep or not key or not values:
        raise UsageError(f"xen970 sweep: --set {text!r}: write KEY=VALUE[,VALUE...]")
    parsed = []
    for token in values.split(","):
        try:
            value = yaml.safe_load(token)
        except yaml.YAMLError:
            value = token
        if isinstance(value, dict | list) or value is None:
            raise UsageError(f"xen970 sweep: --set {key}: {token!r} is not a single value")
        parsed.append(value)
    return key, parsed


def parse_seeds(text: str | None, default: int) -> list[int]:
    """`--seeds 4` -> 0..3; `--seeds 5-9` -> 5..9; none -> the scenario's own seed."""
    if text is None:
        return [default]
    m = _SEEDS.fullmatch(text)
    if m is None:
        raise UsageError(f"xen970 sweep: --seeds {text!r}: write N (0..N-1) or A-B")
    if m.group(2) is None:
        count = int(m.group(1))
        if count < 1:
            raise UsageError("xen970 sweep: --seeds: at least one seed")
        return list(range(count))
    lo, hi = int(m.group(1)), int(m.group(2))
    if lo > hi:
        raise UsageError(f"xen970 sweep: --seeds {text}: {lo} is above {hi}")
    return list(range(lo, hi + 1))


def _assign(doc: Any, key: str, value: Any) -> None:
    """Set a dotted key in the scenario document: list items by index or by `name`."""
    parts = key.split(".")
    node = doc
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            index = (
                int(part)
                if part.isdigit()
                else next(
                    (
                        n
                        for n, item in enumerate(node)
                        if isinstance(item, dict) and item.get("name") == part
                    ),
                    None,
                )
            )
            if index is None or not 0 <= index < len(node):
                raise UsageError(
                    f"xen970 sweep: --set {key}: no item {part!r} in {'.'.join(parts[:i])}"
                )
            if last:
                node[index] = value
            else:
                node = node[index]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise UsageError(
                f"xen970 sweep: --set {key}: {'.'.join(parts[:i])} is not a mapping or list"
            )


@dataclass(frozen=True)
class Point:
    """One run of the sweep: its parameters, seed, id and scenario text."""

    params: dict[str, Any]
    seed: int
    run_id: str
    text: str


def points(scenario: Path, sets: Sequence[str], seeds: str | None) -> list[Point]:
    """Every point of the sweep, each validated; a bad value is refused naming its --set."""
    base = load_scenario(scenario)
    doc = yaml.safe_load(scenario.read_text(encoding="utf-8"))
    axes = [parse_set(s) for s in sets]
    keys = [k for k, _ in axes]
    if len(set(keys)) != len(keys):
        raise UsageError("xen970 sweep: a key is --set twice")
    seed_list = parse_seeds(seeds, base.seed)
    combos = list(itertools.product(*(values for _, values in axes)))
    if len(combos) * len(seed_list) > _MAX_POINTS:
        raise UsageError(f"xen970 sweep: more than {_MAX_POINTS} runs")
    out = []
    for combo in combos:
        params = dict(zip(keys, combo, strict=True))
        for seed in seed_list:
            point_doc = json.loads(json.dumps(doc))
            for key, value in params.items():
                _assign(point_doc, key, value)
            point_doc["seed"] = seed
            text = yaml.safe_dump(point_doc, sort_keys=False)
            where = ", ".join(f"{k}={v}" for k, v in params.items()) or "no --set"
            try:
                parse_scenario(text, f"{scenario} ({where}, seed {seed})", base_dir=scenario.parent)
            except ScenarioError as exc:
                raise UsageError(f"xen970 sweep: {exc}") from None
            digest = hashlib.sha256(json.dumps([params, seed], sort_keys=True).encode()).hexdigest()
            out.append(Point(params, seed, digest[:12], text))
    return out


def _lost(job: Job, exc: BaseException) -> JobResult:
    return JobResult(
        job.test_id, "FAIL", f"the worker lost the run: {type(exc).__name__}: {exc}", 0.0
    )


def _store(out: Path, point: Point, result: JobResult) -> None:
    """The run directory (run.json last, through a rename) and its dataset part."""
    final = out / RUNS_DIR / point.run_id
    partial = out / RUNS_DIR / f".{point.run_id}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    files = {k: v for k, v in result.files.items() if k != RUN_FILE}
    write_run_files(files, partial)
    (partial / "sweep-point.json").write_text(
        json.dumps(
            {
                "params": point.params,
                "seed": point.seed,
                "verdict": result.verdict,
                "reason": result.reason,
            },
            sort_keys=True,
        )
        + "\n"
    )
    if RUN_FILE in result.files:
        if TRACE_FILE in result.files:
            _dataset_part(out, point, result.files[TRACE_FILE])
        (partial / RUN_FILE).write_bytes(result.files[RUN_FILE])
    if final.exists():
        shutil.rmtree(final)
    partial.rename(final)


def _dataset_part(out: Path, point: Point, trace: bytes) -> None:
    """The run's trace with the point's parameters, seed and id as constant columns, its
    trace metadata kept (so `read_trace` reads each part as it reads a run's trace)."""
    table = pq.read_table(io.BytesIO(trace))
    metadata = table.schema.metadata
    extra = {**point.params, "seed": point.seed, "run": point.run_id}
    for key, value in extra.items():
        table = table.append_column(key, pa.array([value] * table.num_rows))
    dataset = out / DATASET_DIR
    dataset.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.replace_schema_metadata(metadata), dataset / f"{point.run_id}.parquet")


def _summary_row(out: Path, point: Point) -> dict[str, Any]:
    run_dir = out / RUNS_DIR / point.run_id
    info = json.loads((run_dir / "sweep-point.json").read_text())
    row: dict[str, Any] = {"run": point.run_id, **point.params, "seed": point.seed}
    row["verdict"] = info["verdict"]
    meta_path = run_dir / RUN_FILE
    if not meta_path.is_file():
        row["reason"] = info["reason"]
        return row
    meta = json.loads(meta_path.read_text())
    row["sim_ns"] = meta["sim_ns"]
    row["wall_s"] = meta["wall_s"]
    row["outcome"] = meta.get("outcome")
    if (run_dir / TRACE_FILE).is_file():
        run = Run(trace=read_trace(run_dir / TRACE_FILE), meta=meta)
        for _, s in summarize(run).iterrows():
            row[f"cpu_share:{s['domain']}"] = s["cpu_time_ms"] * 1e6 / meta["sim_ns"]
    for check in meta.get("expectations", []):
        row[f"check:{check['name']}"] = check["measured"]
        row[f"verdict:{check['name']}"] = check["verdict"]
    return row


def run_sweep(options: SweepOptions) -> int:
    """Run the missing points, then write the summary; exit 0 unless a run failed."""
    if not options.scenario.is_file():
        raise UsageError(f"xen970 sweep: {options.scenario}: no such file")
    todo_all = points(options.scenario, options.sets, options.seeds)
    runs = options.out / RUNS_DIR
    done = [p for p in todo_all if (runs / p.run_id).is_dir()]
    todo = [p for p in todo_all if p not in done]
    print(f"xen970 sweep: {len(todo_all)} run(s), {len(done)} already done, {len(todo)} to run")
    t0 = time.perf_counter()
    if todo:
        jobs = [
            Job(
                p.run_id,
                str(options.scenario),
                p.text,
                str(options.scenario.parent.resolve()),
                options.timeout_s,
            )
            for p in todo
        ]
        with Engine(options.scheduler, options.workers) as engine:
            for i, result in engine.run(run_job, jobs, _lost):
                _store(options.out, todo[i], result)
                params = ", ".join(f"{k}={v}" for k, v in todo[i].params.items())
                print(
                    f"{result.verdict:>7}  {todo[i].run_id}  {params} seed={todo[i].seed}",
                    flush=True,
                )
    rows = [_summary_row(options.out, p) for p in todo_all]
    summary = pd.DataFrame(rows)
    summary.to_parquet(options.out / SUMMARY_FILE, index=False)
    failed = int((summary["verdict"].isin(["FAIL", "TIMEOUT"])).sum())
    print(
        f"xen970 sweep: {len(rows)} run(s), {failed} failed, {time.perf_counter() - t0:.1f} s; "
        f"summary {options.out / SUMMARY_FILE}, dataset {options.out / DATASET_DIR}"
    )
    return 1 if failed else 0
