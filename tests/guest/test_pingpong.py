"""The pingpong workload across a save and restore of either side (issue 16): the peer
survives its partner's absence and the restored side re-establishes the channel through
xenstore (framework/guest/pingpong.py), checked from the trace."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import analysis
from framework.scenario.loader import load_scenario
from framework.simulation import run_scenario

_PAIR = """name: pingpong-save
duration: 80ms
machine: {{cpus: 2, memory: 1GiB}}
domains:
  - {{name: ping, memory: 64MiB, affinity: [0], workloads: [{{kind: pingpong, peer: pong, role: ping}}]}}
  - {{name: pong, memory: 64MiB, affinity: [1], workloads: [{{kind: pingpong, peer: ping, role: pong}}]}}
timeline:
  - {{at: 5ms, action: save, domain: {saved}, file: {saved}.save{checkpoint}}}
{restore}"""


def _run(tmp_path: Path, saved: str, checkpoint: bool = False) -> pd.DataFrame:
    restore = "" if checkpoint else f"  - {{at: 30ms, action: restore, file: {saved}.save}}\n"
    text = _PAIR.format(
        saved=saved, checkpoint=", checkpoint: true" if checkpoint else "", restore=restore
    )
    path = tmp_path / "pair.yaml"
    path.write_text(text)
    out = tmp_path / "run"
    run_scenario(load_scenario(path), out)
    return analysis.read_trace(out / "trace.parquet").xen.wide()


def _absence(df: pd.DataFrame) -> tuple[int, int]:
    """From the saved domain's shutdown to the restored one's first resume mark."""
    down = int(df[(df.kind == "dom.shutdown") & (df.text == "suspend")].t_ns.iloc[0])
    back = int(df[(df.kind == "guest.mark") & (df.text == "resume")].t_ns.iloc[0])
    return down, back


def _no_crash(df: pd.DataFrame) -> None:
    assert not (df.kind == "dom.shutdown").loc[df.text != "suspend"].any()
    lines = df[df.kind == "console.out"].text.fillna("")
    assert not lines.str.contains("Oops|failed").any(), list(lines)


@pytest.mark.parametrize("saved", ["pong", "ping"])
def test_rounds_stop_while_a_side_is_saved_and_go_on_after_its_restore(
    tmp_path: Path, saved: str
) -> None:
    df = _run(tmp_path, saved)
    _no_crash(df)
    down, back = _absence(df)
    rounds = df[df.text == "pingpong.round"]
    assert (rounds.t_ns < down).sum() >= 500
    # Nothing while the partner is away (a round answered as it suspended may end
    # within the few microseconds after).
    assert rounds[(rounds.t_ns > down + 100_000) & (rounds.t_ns < back)].empty
    after = rounds[rounds.t_ns > back]
    assert len(after) >= 1000
    # The restored kernel counts on from the record: every round once, none lost.
    assert (rounds.value.diff().dropna() == 1).all()
    old = int(df[(df.kind == "dom.shutdown") & (df.text == "suspend")].dom.iloc[0])
    new = int(df[df.kind == "dom.create"].dom.max())
    assert new != old
    # The restored side published a new port; the surviving peer rebound to it.
    assert ((df.text == "pingpong.publish") & (df.dom == new)).sum() == 1
    rebind = df[df.text == "pingpong.rebind"]
    assert len(rebind) == 1 and int(rebind.value.iloc[0]) == new
    assert int(rebind.dom.iloc[0]) != new
    ping_doms = set(rounds.dom)
    assert ping_doms == ({1, new} if saved == "ping" else {1})


def test_a_checkpointed_side_goes_on_without_a_stray_round(tmp_path: Path) -> None:
    df = _run(tmp_path, "ping", checkpoint=True)
    _no_crash(df)
    rounds = df[df.text == "pingpong.round"]
    resumed = int(df[(df.kind == "guest.mark") & (df.text == "resume")].t_ns.iloc[0])
    after = rounds[rounds.t_ns > resumed]
    assert len(after) >= 1000
    assert (rounds.value.diff().dropna() == 1).all()
    # Rounds go at the rate they went before, each answered by pong.
    before = rounds[rounds.t_ns < resumed]
    ratio = len(after) / (after.t_ns.max() - resumed) / (len(before) / before.t_ns.max())
    assert 0.8 < ratio < 1.2, ratio
    pong_sends = ((df.kind == "evtchn.send") & (df.dom == 2)).sum()
    assert len(rounds) <= pong_sends
    assert not (df.text == "pingpong.rebind").any()
