"""`analysis.export_perfetto`: the trace-event JSON checked against a schema written from the
Trace Event Format document, its tracks against hand-computed ones, and its slices
against xen970's own per-domain CPU time.

Perfetto's trace processor could not be used here: the `perfetto` package downloads its
trace_processor_shell binary at first use from a host this machine cannot reach, and no
PyPI or npm package ships it. So the checks are the schema and the rule its JSON importer
applies to slices on one thread (they must nest; these never overlap).
"""

from __future__ import annotations

import io
import json
from collections import defaultdict
from itertools import pairwise
from pathlib import Path

import jsonschema
import pytest

from analysis.export_perfetto import (
    CPU_TID_BASE,
    DOMAIN_PID_BASE,
    HOST_PID,
    VCPU_TID_BASE,
    write_perfetto,
)
from analysis.run import load_run
from analysis.summary import summarize
from tests.analysis.export_runs import run_mix, write_tiny_run

SCHEMA = json.loads(
    (Path(__file__).parents[1] / "data" / "trace_event_format.schema.json").read_text()
)


def _export(run_dir: Path) -> dict:
    text = io.StringIO()
    count = write_perfetto(load_run(run_dir), text)
    trace = json.loads(text.getvalue())
    assert len(trace["traceEvents"]) == count
    return trace


def _ns(us: float) -> int:
    ns = round(us * 1000)
    assert abs(us * 1000 - ns) < 1e-6, "timestamps are whole nanoseconds"
    return ns


@pytest.fixture(scope="module")
def mix_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_mix(tmp_path_factory.mktemp("perfetto-mix"))


@pytest.fixture
def tiny(tmp_path: Path) -> dict:
    write_tiny_run(tmp_path)
    return _export(tmp_path)


def test_the_schema_refuses_what_the_format_does_not_allow() -> None:
    good = {"ph": "X", "name": "a", "ts": 1.5, "dur": 2, "pid": 1, "tid": 2}
    jsonschema.validate({"traceEvents": [good]}, SCHEMA)
    for bad in (
        {k: v for k, v in good.items() if k != "dur"},
        {**good, "dur": -1},
        {**good, "ph": "Q"},
        {"ph": "C", "name": "q", "ts": 0, "pid": 1, "args": {"n": "three"}},
        {"ph": "M", "name": "thread_name", "pid": 1, "args": {"name": "no tid"}},
        {"ph": "i", "name": "x", "ts": 0, "pid": 1, "s": "q", "tid": 1},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"traceEvents": [bad]}, SCHEMA)


def test_exports_pass_the_trace_event_format_schema(tiny: dict, mix_run: Path) -> None:
    jsonschema.validate(tiny, SCHEMA)
    jsonschema.validate(_export(mix_run), SCHEMA)


def test_the_tiny_runs_tracks(tiny: dict) -> None:
    events = tiny["traceEvents"]
    assert tiny["displayTimeUnit"] == "ns"
    names = {
        (e["pid"], e.get("tid")): e["args"]["name"] for e in events if e["name"].endswith("_name")
    }
    assert names[(HOST_PID, None)] == "tiny host (2 CPUs)"
    assert names[(HOST_PID, CPU_TID_BASE + 1)] == "CPU 1"
    assert names[(DOMAIN_PID_BASE + 2, None)] == "guest2 (dom 2)"
    assert names[(DOMAIN_PID_BASE + 2, VCPU_TID_BASE + 2000)] == "guest2 v0"
    slices = sorted(
        (e["pid"], e["tid"], e["name"], _ns(e["ts"]), _ns(e["dur"]))
        for e in events
        if e["ph"] == "X"
    )
    cpu0, cpu1 = CPU_TID_BASE, CPU_TID_BASE + 1
    d0, d1, d2 = (DOMAIN_PID_BASE + d for d in range(3))
    assert slices == sorted(
        [
            (HOST_PID, cpu0, "Domain-0 v0", 0, 5_000),
            (HOST_PID, cpu0, "guest2 v0", 6_000, 4_000),
            (HOST_PID, cpu1, "guest1 v0", 1_000, 9_000),
            (d0, VCPU_TID_BASE, "running", 0, 5_000),
            (d0, VCPU_TID_BASE, "blocked", 5_000, 5_000),
            (d1, VCPU_TID_BASE + 1000, "running", 1_000, 9_000),
            (d2, VCPU_TID_BASE + 2000, "runnable", 2_000, 4_000),
            (d2, VCPU_TID_BASE + 2000, "running", 6_000, 4_000),
        ]
    )
    counters = [(e["name"], _ns(e["ts"]), e["args"]["runnable"]) for e in events if e["ph"] == "C"]
    # guest2 waits on CPU 0 (where it first runs) from 2 to 6 us.
    assert sorted(counters) == [
        ("runq CPU0", 0, 0),
        ("runq CPU0", 2_000, 1),
        ("runq CPU0", 6_000, 0),
        ("runq CPU1", 1_000, 0),
    ]
    instants = sorted(
        (e["name"], e["pid"], e["tid"], _ns(e["ts"])) for e in events if e["ph"] == "i"
    )
    assert instants == [
        ("IPI", HOST_PID, cpu1, 3_000),
        ("IPI send", HOST_PID, cpu0, 3_000),
        ("upcall guest1 v0", HOST_PID, cpu1, 4_000),
        ("wake", d0, VCPU_TID_BASE, 0),
        ("wake", d1, VCPU_TID_BASE + 1000, 1_000),
        ("wake", d2, VCPU_TID_BASE + 2000, 2_000),
    ]


def test_cpu_slices_add_up_to_xen970s_cpu_time_and_never_overlap(mix_run: Path) -> None:
    trace = _export(mix_run)
    per_dom: dict[int, int] = defaultdict(int)
    per_thread: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
    for e in trace["traceEvents"]:
        if e["ph"] != "X":
            continue
        start, dur = _ns(e["ts"]), _ns(e["dur"])
        per_thread[(e["pid"], e["tid"])].append((start, start + dur))
        if e["pid"] == HOST_PID:
            per_dom[e["args"]["dom"]] += dur
    for spans in per_thread.values():
        spans.sort()
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in pairwise(spans))
    ours = summarize(load_run(mix_run))["cpu_time_ms"] * 1e6
    assert dict(per_dom) == {dom: pytest.approx(ns, abs=0.5) for dom, ns in ours.items()}
    cpus = {tid for pid, tid in per_thread if pid == HOST_PID}
    assert cpus == {CPU_TID_BASE + c for c in range(3)}
