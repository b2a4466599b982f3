"""Run directories: run.json, load_run and the per-domain summary the CLI prints."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from analysis.run import load_run
from analysis.summary import SUMMARY_COLUMNS, summarize, summarize_dir
from framework.runinfo import write_run_json
from framework.trace import Recorder
from framework.trace.ids import K
from framework.xen.public.vcpu import RUNSTATE_NAMES, Runstate

RUN, WAIT, BLOCK = Runstate.RUNNING, Runstate.RUNNABLE, Runstate.BLOCKED


def _make_run(directory: Path) -> Recorder:
    rec = Recorder(enums={"runstate": RUNSTATE_NAMES})
    e = rec.emit
    e(K.SCHED_RUNSTATE, 0, 0, 0, 0, RUN, WAIT)
    e(K.SCHED_RUNSTATE, 0, 1, 1, 0, WAIT, BLOCK)
    e(K.HCALL_ENTER, 100_000, 0, 0, 0, 32, 4, 0, 0, text="event_channel_op")
    e(K.EVTCHN_SEND, 100_000, 0, 0, 0, 3, 1, 5)
    e(K.EVTCHN_PENDING, 100_000, 0, 1, 0, 5)
    e(K.SCHED_RUNSTATE, 1_000_000, 0, 0, 0, BLOCK, RUN)
    e(K.SCHED_RUNSTATE, 1_000_000, 1, 1, 0, RUN, WAIT)
    e(K.EVTCHN_UPCALL, 1_002_000, 1, 1, 0, 1)
    e(K.EVTCHN_HANDLED, 1_003_000, 1, 1, 0, 5)
    rec.write(directory)
    write_run_json(
        directory,
        scenario_name="tiny",
        scenario_sha256="ab" * 32,
        seed=7,
        sim_ns=4_000_000,
        wall_s=0.25,
        counts=rec.counts(),
        domains={0: "Domain-0", 1: "guest1", 2: "idle-guest"},
    )
    return rec


def test_run_json_is_sorted_and_complete(tmp_path: Path) -> None:
    _make_run(tmp_path)
    text = (tmp_path / "run.json").read_text()
    meta = json.loads(text)
    assert list(meta) == sorted(meta)
    assert meta["domains"] == {"0": "Domain-0", "1": "guest1", "2": "idle-guest"}
    assert meta["counts"]["sched.runstate"] == 4
    assert meta["scenario"] == "tiny" and meta["seed"] == 7 and meta["sim_ns"] == 4_000_000
    assert set(meta["versions"]) == {"xen970", "python", "unicorn", "simpy", "pandas", "pyarrow"}
    assert meta["versions"]["pandas"] == pd.__version__


def test_load_run_reads_trace_and_meta(tmp_path: Path) -> None:
    rec = _make_run(tmp_path)
    run = load_run(tmp_path)
    pd.testing.assert_frame_equal(run.trace, rec.to_dataframe())
    assert run.domains == {0: "Domain-0", 1: "guest1", 2: "idle-guest"}
    assert run.sim_ns == 4_000_000


def test_load_run_refuses_a_directory_without_a_trace(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a run directory \\(no trace.parquet\\)"):
        load_run(tmp_path)


def test_summary_has_one_row_per_domain(tmp_path: Path) -> None:
    _make_run(tmp_path)
    s = summarize(load_run(tmp_path))
    assert tuple(s.columns) == SUMMARY_COLUMNS
    assert s["domain"].tolist() == ["Domain-0", "guest1", "idle-guest"]
    dom0, guest1, idle = (s.loc[d] for d in (0, 1, 2))
    assert dom0["cpu_time_ms"] == 1.0
    assert dom0["running %"] == 25.0 and dom0["blocked %"] == 75.0
    assert dom0["hcalls"] == 1 and dom0["events sent"] == 1
    assert guest1["cpu_time_ms"] == 3.0
    assert guest1["runnable %"] == 25.0 and guest1["running %"] == 75.0
    assert guest1["events handled"] == 1
    assert guest1["upcall p50 us"] == 902.0 and guest1["upcall p99 us"] == 902.0
    assert idle["cpu_time_ms"] == 0.0 and idle["hcalls"] == 0
    assert pd.isna(idle["upcall p50 us"])
    pd.testing.assert_frame_equal(summarize_dir(tmp_path), s)
