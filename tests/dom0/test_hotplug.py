"""xm block-detach / block-attach on a running guest: the data written before a detach is
read back, verified, after the same image is attached again; the image file is the truth."""

from __future__ import annotations

import pandas as pd

from framework.scenario import parse_scenario
from framework.simulation import Simulation

REATTACH = """
name: reattach
duration: 80ms
machine: {cpus: 2, memory: 1GiB}
domains:
  - name: guest
    memory: 64MiB
    devices: [{kind: vbd, name: xvda, size: 1MiB}]
    workloads: [{kind: blockio, device: xvda, queue_depth: 8, read_percent: 50, region: 256KiB}]
timeline:
  - {action: block_detach, at: 20ms, domain: guest, device: xvda}
  - {action: block_attach, at: 40ms, domain: guest, device: {name: xvda, size: 1MiB}}
"""


def _run(corrupt_at: int | None = None) -> pd.DataFrame:
    sim = Simulation(parse_scenario(REATTACH, "reattach"))
    try:
        if corrupt_at is not None:

            def corrupt(_ev: object) -> None:
                # While the disk is detached its image is an ordinary file: overwrite it.
                image = sim.disk_dir / "guest-xvda.img"
                image.write_bytes(b"\0" * (1 << 20))

            sim.env.timeout(corrupt_at).callbacks.append(corrupt)
        sim.run()
        return sim.rec.to_dataframe().xen.wide()
    finally:
        sim.close()


def _reads_of_blocks_written_before_detach(df: pd.DataFrame) -> int:
    """Reads submitted after the re-attach of a sector whose last completed write came
    before the detach (no write to it after the re-attach before the read)."""
    sub = df[(df.kind == "blk.submit") & (df.dom == 1)][["t_ns", "req_id", "sector", "text"]]
    done = df[(df.kind == "blk.complete") & (df.dom == 1) & (df.status == 0)][["req_id"]]
    ok = sub.merge(done, on="req_id")
    writes_before = set(ok[(ok.text == "write") & (ok.t_ns < 20e6)].sector)
    count = 0
    rewritten: set[int] = set()
    for row in sub[sub.t_ns > 40e6].sort_values("t_ns").itertuples():
        if row.text == "write":
            rewritten.add(row.sector)
        elif row.sector in writes_before and row.sector not in rewritten:
            count += 1
    return count


def test_data_written_before_a_detach_reads_back_after_the_reattach() -> None:
    df = _run()
    assert _reads_of_blocks_written_before_detach(df) >= 20
    assert (df.kind == "blk.verify").sum() == 0
    done = df[(df.kind == "blk.complete") & (df.dom == 1)]
    assert ((done.t_ns > 21e6) & (done.t_ns < 40e6)).sum() == 0  # nothing while away
    assert (done.status != 0).sum() == 0
    states = df[(df.kind == "xenbus.state") & (df.dom == 1)].xb_state.tolist()
    assert states.count(4) == 2 and states.count(5) == 1 and states.count(6) == 1


def test_an_image_changed_while_detached_fails_verification() -> None:
    """The check can fail: zeros written into the image while the disk is away are what
    the guest reads after the re-attach, and its verification says so."""
    df = _run(corrupt_at=30_000_000)
    bad = df[df.kind == "blk.verify"]
    assert len(bad) > 0 and (bad.t_ns > 40e6).all()
    assert "not a write pattern" in bad.text.iloc[0]


def test_a_paused_guest_does_not_hold_up_a_detach_forever() -> None:
    """The frontend of a paused guest cannot close: after 100 ms xend writes online = 0,
    the backend closes on its own, and xend removes the device and lets the disk go."""
    text = REATTACH.replace(
        "  - {action: block_detach, at: 20ms, domain: guest, device: xvda}\n"
        "  - {action: block_attach, at: 40ms, domain: guest, device: {name: xvda, size: 1MiB}}\n",
        "  - {action: pause, at: 5ms, domain: guest}\n"
        "  - {action: block_detach, at: 10ms, domain: guest, device: xvda}\n",
    ).replace("duration: 80ms", "duration: 130ms")
    sim = Simulation(parse_scenario(text, "paused"))
    try:
        sim.run()
        df = sim.rec.to_dataframe().xen.wide()
        assert not sim.devices.vbds  # the disk was let go
    finally:
        sim.close()
    detach = df[df.kind == "dev.detach"]
    assert len(detach) == 1 and 110e6 <= detach.t_ns.iloc[0] < 111e6
    assert detach.text.iloc[0] == "vbd 51712 unplugged after the timeout"
    lines = df[(df.kind == "console.out") & (df.dom == 0)].text
    assert lines.str.contains("the frontend did not close in 100 ms").sum() == 1
