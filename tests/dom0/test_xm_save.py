"""xm save / xm restore end to end (issue 16): scenarios/save-restore.yaml and its
checkpoint and bad-file variants, checked from the run directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import analysis
from framework.errors import ScenarioError
from framework.scenario.loader import load_scenario
from framework.simulation import run_scenario

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "scenarios" / "save-restore.yaml"


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    out = tmp_path_factory.mktemp("save-restore")
    run_scenario(load_scenario(SCENARIO), out)
    return out, analysis.read_trace(out / "trace.parquet").xen.wide()


def test_saved_mid_io_loses_no_request_and_verifies_clean(
    saved_run: tuple[Path, pd.DataFrame],
) -> None:
    _out, df = saved_run
    assert (df.kind == "blk.verify").sum() == 0
    suspended = df[(df.kind == "dom.shutdown") & (df.text == "suspend")]
    assert len(suspended) == 1
    old = int(suspended.dom.iloc[0])
    new = int(df[df.kind == "dom.create"].dom.max())
    assert new != old
    sub = df[(df.kind == "blk.submit") & df.dom.isin([old, new])]
    done = df[(df.kind == "blk.complete") & df.dom.isin([old, new])]
    counts = done.req_id.value_counts()
    assert (counts == 1).all(), "a request was answered twice"
    reissued = df[(df.text == "blkfront.reissue") & (df.dom == new)]
    assert len(reissued) == 8  # queue depth 8: all in flight at the suspend
    # Every request the old domain submitted and did not see answered is answered once
    # in the new one.
    old_open = set(sub[sub.dom == old].req_id) - set(done[done.dom == old].req_id)
    assert old_open and old_open <= set(done[done.dom == new].req_id)


def test_ticks_continue_after_restore(saved_run: tuple[Path, pd.DataFrame]) -> None:
    _out, df = saved_run
    ticks = df[df.text == "timer.tick"]
    restored = df[(df.text == "resume") & (df.kind == "guest.mark")].t_ns.min()
    after = ticks[ticks.t_ns > restored]
    assert len(after) >= 150  # 1 kHz for the ~185 ms after the restore
    assert after.t_ns.diff().dropna().max() < 2_000_000  # no burst, no gap


def test_bad_save_file_is_refused_in_one_line(
    saved_run: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    out, _df = saved_run
    good = (out / "guest.save").read_bytes()
    for name, data in (
        ("truncated.save", good[: len(good) // 2]),
        ("corrupt.save", good[:5000] + bytes([good[5000] ^ 1]) + good[5001:]),
    ):
        (tmp_path / name).write_bytes(data)
        text = (
            f"name: r\nduration: 10ms\nmachine: {{cpus: 2, memory: 1GiB}}\n"
            f"timeline:\n  - {{at: 1ms, action: restore, file: {name}}}\n"
        )
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        with pytest.raises(ScenarioError) as err:
            load_scenario(path)
        msg = str(err.value)
        assert "\n" not in msg and "SHA-256" in msg, msg
        run_dir = tmp_path / f"run-{name}"
        proc = subprocess.run(
            [sys.executable, "-m", "framework", "run", str(path), "--out", str(run_dir)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=False,
        )
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        assert not run_dir.exists()


def test_checkpoint_keeps_the_domain_running_and_the_file_restorable(tmp_path: Path) -> None:
    text = SCENARIO.read_text().split("timeline:")[0]
    text = text.replace("name: save-restore", "name: checkpoint")
    text += (
        "  - {name: ticker, memory: 64MiB, workloads: [{kind: timer, hz: 1000}]}\n"
        "timeline:\n"
        "  - {at: 300ms, action: save, domain: guest, file: guest.save, checkpoint: true}\n"
        "  - {at: 300ms, action: save, domain: ticker, file: ticker.save, checkpoint: true}\n"
        "  - {at: 500ms, action: restore, file: ticker.save, domain: copy}\n"
    )
    path = tmp_path / "checkpoint.yaml"
    path.write_text(text)
    out = tmp_path / "run"
    run_scenario(load_scenario(path), out)
    df = analysis.read_trace(out / "trace.parquet").xen.wide()
    assert (df.kind == "blk.verify").sum() == 0
    assert not (df.kind == "dom.destroy").any()
    guest = 1
    late = df[(df.dom == guest) & (df.t_ns > 400_000_000)]
    assert (late.text == "timer.tick").sum() >= 250
    assert (late.kind == "blk.complete").sum() > 100
    copy = int(df[df.kind == "dom.create"].dom.max())
    assert ((df.dom == copy) & (df.text == "timer.tick")).sum() >= 150
