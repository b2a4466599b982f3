"""A granter saved and restored keeps its grant to dom0 (issue 16 item 5): the resumed
kernel fills its entries again at the same refs, publishes a new channel under its new
home, dom0's peer follows it, and rounds go on verified (framework/guest/sharedmem.py)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import analysis
from framework.scenario.loader import load_scenario
from framework.simulation import run_scenario

_SCENARIO = """name: shm-save
duration: 80ms
domains:
  - name: alpha
    memory: 64MiB
    workloads: [{{kind: sharedmem, grant: g, every: 500us}}]
grants:
  - {{name: g, granter: alpha, peer: dom0, pages: 2}}
timeline:
{mapped}  - {{at: 10ms, action: save, domain: alpha, file: alpha.save}}
  - {{at: 20ms, action: restore, file: alpha.save}}
"""


def _run(tmp_path: Path, mapped: bool) -> tuple[pd.DataFrame, object]:
    held = "  - {action: grant_map, at: 5ms, grant: g}\n" if mapped else ""
    path = tmp_path / "shm.yaml"
    path.write_text(_SCENARIO.format(mapped=held))
    out = tmp_path / "run"
    result = run_scenario(load_scenario(path), out)
    df = analysis.read_trace(out / "trace.parquet").xen.wide()
    df["kind"] = df["kind"].astype(str)
    return df, result


@pytest.mark.parametrize("mapped", [False, True], ids=["per-round", "held-mapping"])
def test_a_granter_saved_and_restored_goes_on_with_dom0_as_its_peer(
    tmp_path: Path, mapped: bool
) -> None:
    df, result = _run(tmp_path, mapped)
    assert not result.warnings, result.warnings
    assert not (df.kind == "dom.shutdown").loc[df.text != "suspend"].any()
    lines = df[df.kind == "console.out"].text.fillna("")
    assert not lines.str.contains("Oops|failed|WARNING").any(), list(lines)
    down = int(df[(df.kind == "dom.shutdown") & (df.text == "suspend")].t_ns.iloc[0])
    back = int(df[(df.kind == "guest.mark") & (df.text == "resume")].t_ns.iloc[0])
    old = int(df[(df.kind == "dom.shutdown") & (df.text == "suspend")].dom.iloc[0])
    new = int(df[df.kind == "dom.create"].dom.max())
    assert new != old
    checks = df[df.kind == "shm.verify"]
    assert len(checks) and (checks.status == 0).all()  # no verification failure at all
    before = checks[checks.t_ns < down]
    assert len(before) >= 20
    assert checks[(checks.t_ns > down + 100_000) & (checks.t_ns < back)].empty
    after = checks[checks.t_ns > back]
    # dom0 checks each round, the restored granter checks dom0's answers.
    assert (after.dom == 0).sum() >= 20 and (after.dom == new).sum() >= 20
    # Rounds count on from the record: dom0 checks each round once, 1, 2, 3... (a round
    # awaiting its answer at the save would be checked again, once).
    steps = checks[checks.dom == 0].value.astype(int).diff().dropna().tolist()
    assert set(steps) <= {0, 1} and steps.count(0) <= 1, steps
    # The restored granter published under its new domid, once.
    assert ((df.kind == "shm.publish") & (df.dom == new)).sum() == 1
    if mapped:  # dom0 unmapped before the old domain was destroyed
        unmaps = df[(df.kind == "gnttab.unmap") & (df.t_ns < back)]
        assert len(unmaps) >= 2
