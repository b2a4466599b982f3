"""Analysis reads a trace's description from the trace itself, and nothing of the simulator."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import analysis  # noqa: F401  (registers the accessor)
from analysis.run import read_trace
from analysis.trace_metadata import TRACE_ATTR, TraceMetadata, TraceMetadataError
from framework.trace import Recorder
from framework.trace.ids import K
from framework.trace.schema import KINDS, SCHEMA_VERSION
from framework.xen.public.vcpu import RUNSTATE_NAMES, Runstate

REPO = Path(__file__).resolve().parents[2]


def _recorder(**enums: tuple[str, ...]) -> Recorder:
    rec = Recorder(enums=enums)
    rec.emit(K.SCHED_RUNSTATE, 0, 0, 1, 0, Runstate.RUNNING, Runstate.RUNNABLE)
    rec.emit(K.SCHED_RUNSTATE, 10, 0, 1, 0, Runstate.BLOCKED, Runstate.RUNNING)
    return rec


def test_file_and_frame_carry_version_kinds_and_runstate_names(tmp_path: Path) -> None:
    rec = _recorder(runstate=RUNSTATE_NAMES)
    for df in (rec.to_dataframe(), read_trace(rec.write(tmp_path))):
        meta = TraceMetadata.from_dict(df.attrs[TRACE_ATTR])
        assert meta.version == SCHEMA_VERSION
        assert list(meta.kinds) == [k.name for k in KINDS]
        assert meta.kinds["sched.runstate"].fields == ("state", "prev_state")
        assert meta.kinds["hcall.enter"].text == "hypercall name"
        assert meta.value_names == {"state": RUNSTATE_NAMES, "prev_state": RUNSTATE_NAMES}
        assert df.xen.metadata.code_of("state", "blocked") == Runstate.BLOCKED


def test_a_frame_without_the_description_is_refused_by_name() -> None:
    df = _recorder(runstate=RUNSTATE_NAMES).to_dataframe()
    df.attrs.clear()
    with pytest.raises(TraceMetadataError, match=r"no attrs\['xen970.trace'\]"):
        df.xen.kind("sched.runstate")


def test_a_file_without_the_description_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "trace.parquet"
    pq.write_table(pa.table({"t_ns": [0], "cpu": [0], "dom": [0], "vcpu": [0]}), path)
    with pytest.raises(TraceMetadataError, match="no 'xen970.trace' Parquet metadata"):
        read_trace(path)


def test_runstate_metrics_need_the_runstate_names() -> None:
    df = _recorder().to_dataframe()
    assert df.xen.kind("sched.runstate")["state"].tolist() == [0, 2]
    with pytest.raises(TraceMetadataError, match="names no values of field 'state'"):
        df.xen.runstate_shares(20)


def test_an_unknown_schema_version_is_refused() -> None:
    raw = json.loads(json.dumps(_recorder().metadata()))
    raw["version"] = 99
    with pytest.raises(TraceMetadataError, match="version 99 is not one this analysis reads"):
        TraceMetadata.from_dict(raw)
    del raw["value_names"]
    raw["version"] = 2
    with pytest.raises(TraceMetadataError, match="has no 'value_names'"):
        TraceMetadata.from_dict(raw)


def test_an_unknown_enumeration_is_refused_by_the_recorder() -> None:
    with pytest.raises(ValueError, match="no field of the trace schema uses enumeration 'colour'"):
        Recorder(enums={"colour": ("red",)})


def test_analysis_imports_nothing_of_framework() -> None:
    for path in (REPO / "analysis").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not [n for n in names if n.split(".")[0] == "framework"], path
    code = (
        "import sys, analysis; print(sorted(m for m in sys.modules if m.startswith('framework')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_in_memory_and_parquet_frames_agree_on_metrics(tmp_path: Path) -> None:
    rec = _recorder(runstate=RUNSTATE_NAMES)
    mem, back = rec.to_dataframe(), read_trace(rec.write(tmp_path))
    pd.testing.assert_frame_equal(mem.xen.runstate_shares(20), back.xen.runstate_shares(20))
