"""Network stress scenarios (scenarios/stress/net-*.yaml) checked from their traces: every
packet sent is received or dropped exactly once, with its packet id and a reason; no
sender outruns its link; and what the vifs held is released (dom0's grant mappings, its
bridge ports and queues, the destroyed guests' memory)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import analysis  # noqa: F401  (registers the accessor)
from framework.guest.netback import NetBack
from framework.scenario import load_scenario
from framework.simulation import Simulation

STRESS = Path(__file__).resolve().parent.parent / "scenarios" / "stress"
#: A sender may put a whole tx ring (256 frames) on it at once; beyond that, the link.
RING_BURST_FRAMES = 256


@pytest.fixture(scope="module", params=["net-flood", "net-destroy-receiver", "net-destroy-sender"])
def stress_run(request: pytest.FixtureRequest) -> Iterator[tuple[Simulation, pd.DataFrame]]:
    sim = Simulation(load_scenario(STRESS / f"{request.param}.yaml"))
    try:
        sim.run()
        yield sim, sim.rec.to_dataframe().xen.wide()
    finally:
        sim.close()


def test_every_packet_sent_is_received_or_dropped_exactly_once(
    stress_run: tuple[Simulation, pd.DataFrame],
) -> None:
    _sim, df = stress_run
    books = df.xen.net_books()
    assert (books["unaccounted"] == 0).all() and (books["extra"] == 0).all(), books
    assert (books["sent"] == books["received"] + books["dropped"]).all()
    assert books["sent"].sum() > 900 and len(books) == df[df.kind == "net.tx"].dom.nunique()


def test_every_drop_names_its_packet_and_a_reason(
    stress_run: tuple[Simulation, pd.DataFrame],
) -> None:
    _sim, df = stress_run
    drops = df[df.kind == "net.drop"]
    assert (drops.pkt >= 0).all()
    assert drops.pkt.isin(df[df.kind == "net.tx"].pkt).all()
    assert drops.text.str.len().gt(0).all()


def test_no_sender_outruns_its_link(stress_run: tuple[Simulation, pd.DataFrame]) -> None:
    sim, df = stress_run
    link = sim.scenario.machine.link
    burst = RING_BURST_FRAMES * (14 + link.mtu)
    for dom, tx in df[df.kind == "net.tx"].groupby("dom"):
        # Token bucket: over any interval, bytes sent <= rate x interval + one ring's worth.
        t = tx.t_ns.to_numpy(dtype="int64")
        excess = np.cumsum(tx.bytes.to_numpy(dtype="int64")) - t * link.bandwidth / 1e9
        worst = (excess - np.minimum.accumulate(excess)).max()
        assert worst <= burst, f"d{dom} sent {worst - burst:.0f} bytes beyond its link's pace"


def test_what_the_vifs_held_is_released(stress_run: tuple[Simulation, pd.DataFrame]) -> None:
    sim, df = stress_run
    assert set(sim.xen.domains) == {0}  # every guest was destroyed
    grants = df.xen.grant_balance()
    assert grants.loc[0, "still_mapped"] == 0 and grants["map_errors"].sum() == 0
    assert grants["unmap_errors"].sum() == 0
    assert (df.xen.tce_balance()["live"] == 0).all()
    back = sim.dom0_kernel.netback  # type: ignore[union-attr]
    assert isinstance(back, NetBack)
    assert back.devices == {} and not back.switch.arrivals
    assert all(not br.ports and not br.fdb for br in back.bridges.values())
    mem = df[df.kind.isin(["mem.alloc", "mem.free"]) & (df.dom > 0)]
    frames = mem.groupby(["dom", "kind"], observed=True)["count"].sum().unstack()
    assert (frames["mem.alloc"] == frames["mem.free"]).all(), frames
    assert sim.xen.alloc.free_bytes == sim.free_before_guests
