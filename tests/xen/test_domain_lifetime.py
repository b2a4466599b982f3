"""A domain's lifetime as Xen 3.x has it (`framework.xen.domain_lifetime`): destroydomain
kills it at once, frames dom0 still maps keep it dying until they are unmapped, its id is
not reused meanwhile, everything it held is scrubbed on the way back, and nothing of it
(kernel, backends, pirq bindings, store and console state) is there for the next guest,
even one built in the same memory under the same id."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd
import pytest

import analysis  # noqa: F401  (registers DataFrame.xen)
from framework.dom0.devctl import vbd_devid
from framework.dom0.toolstack import DomainConfig, Toolstack
from framework.guest import xs_wire as xs
from framework.iodevices import NET_PIRQ
from framework.scenario import parse_scenario
from framework.simulation import Simulation
from framework.xen.domain import DomainState
from framework.xen.dominfo import domain_info
from framework.xen.public.domctl import (
    DOMINF_dying,
    XEN_DOMCTL_createdomain,
    XEN_DOMCTL_destroydomain,
    XEN_DOMCTL_max_mem,
)
from framework.xen.public.errno import EINVAL
from framework.xen.public.event_channel import EVTCHN_ALLOC_UNBOUND, EVTCHNOP_alloc_unbound
from framework.xen.public.grant_table import GNTST_bad_domain, GNTST_okay
from framework.xen.public.xen import DOMID_FIRST_RESERVED
from tests.xen.test_grant_table import Dom0Port, map_ref, unmap
from tests.xen.xenharness import Caller, quickstart

MiB = 1 << 20
MS = 1_000_000
NR_GRANT_FRAMES = 4


def _store_has(sim: Simulation, path: str) -> bool:
    """Whether xenstored holds `path` (dom0 reads it)."""
    store = sim.dom0.store
    assert store is not None
    out = store.daemon.handle(0, xs.XsMsg(xs.XS_READ, 1, 0, path.encode() + b"\0"))
    reply = next(msg for target, msg in out if target == 0 and msg.req_id == 1)
    return reply.type != xs.XS_ERROR


# --- destroydomain while dom0 maps a page ----------------------------------------------------
def test_destroy_while_mapped_leaves_a_dying_domain_until_the_unmap() -> None:
    """destroydomain kills a domain whose page dom0 maps (Xen 3.x domain_kill): all but the
    mapped frame is freed at once, the domain stays dying (its id taken, nothing more of it
    reachable), and it goes with the unmap."""
    sim = quickstart("2ms")
    sim.run()
    xen = sim.xen
    dom0 = Caller(sim, xen.domains[0])
    free_before, ranges_before = xen.alloc.free_bytes, xen.alloc.free_ranges()
    ts = Toolstack(Dom0Port(dom0), sim.kernel, 1, 1)
    domid = ts.create(DomainConfig("extra", 96 * MiB, 1, 64 * MiB))
    dom = xen.domains[domid]
    assert dom.tot_pages == (96 * MiB) >> 12 and len(dom.grant_frames) == NR_GRANT_FRAMES
    # dom0 maps the console page the toolstack seeded as ref 0 (as xenconsoled would).
    out = map_ref(dom0, domid, 0)
    assert out["status"] == GNTST_okay
    console_mfn = dom.phys.pfn_to_mfn((dom.rma_size >> 12) - 2)
    xen.memory.write(console_mfn << 12, b"console text")
    rc, _ = ts.domctl(XEN_DOMCTL_destroydomain, domid)
    assert rc == 0 and xen.domains[domid] is dom and dom.state == DomainState.DYING
    assert dom.tot_pages == 1 and dom.held_frames == {console_mfn}
    assert domain_info(dom, 0)["flags"] & DOMINF_dying and domain_info(dom, 0)["tot_pages"] == 1
    # The mapped page is still the guest's (dom0 reads it); nothing more of it maps, no
    # channel can be made in it and it is given nothing.
    assert xen.memory.read(console_mfn << 12, 12) == b"console text"
    assert map_ref(dom0, domid, 1)["status"] == GNTST_bad_domain
    rc, _ = dom0.op(EVTCHNOP_alloc_unbound, EVTCHN_ALLOC_UNBOUND, dom=domid, remote_dom=0)
    assert rc == -EINVAL
    rc, _ = ts.domctl(XEN_DOMCTL_max_mem, domid, max_memkb=1 << 20)
    assert rc == -EINVAL
    assert xen.alloc.free_bytes == free_before - (1 + NR_GRANT_FRAMES) * 4096
    rc, _ = ts.domctl(XEN_DOMCTL_destroydomain, domid)  # again: nothing more to do
    assert rc == 0 and dom.state == DomainState.DYING
    # Its id stays taken while it is dying: the rover walks past it.
    xen.domid_rover = domid - 1
    rc, created = ts.domctl(XEN_DOMCTL_createdomain, 0)
    assert rc == 0 and created["domain"] == domid + 1
    rc, _ = ts.domctl(XEN_DOMCTL_createdomain, domid)
    assert rc == -EINVAL
    ts.domctl(XEN_DOMCTL_destroydomain, domid + 1)
    # The unmap puts the last reference: the frame (scrubbed) and the domain go.
    assert unmap(dom0, out) == GNTST_okay
    assert domid not in xen.domains
    assert xen.alloc.free_bytes == free_before and xen.alloc.free_ranges() == ranges_before
    assert xen.memory.read(console_mfn << 12, 4096) == bytes(4096)
    rc, created = ts.domctl(XEN_DOMCTL_createdomain, domid)  # now its id may be had
    assert rc == 0 and created["domain"] == domid
    df = sim.rec.to_dataframe().xen.wide()
    mine = df[
        (df["dom"] == domid) & (df["t_ns"] < df[df["kind"] == "dom.destroy"]["t_ns"].max() + 1)
    ]
    freed = mine[mine["kind"] == "mem.free"]
    assert set(freed["text"]) == {"memory", "htab", "grant frames"}
    assert freed["count"].sum() == mine[mine["kind"] == "mem.alloc"]["count"].sum()
    dying, gone = mine[mine["kind"] == "dom.dying"], mine[mine["kind"] == "dom.destroy"]
    assert list(dying["count"]) == [1] and len(gone) == 1
    assert gone.index[0] > freed[freed["mfn"] == console_mfn].index[0] > dying.index[0]


# --- xm destroy during slow disk I/O -------------------------------------------------------------
SLOW_DISK = """
name: slow-destroy
duration: 1900ms
machine:
  disk: {bandwidth: 64kB/s}
domains:
  - name: doomed
    memory: 64MiB
    devices: [{kind: vbd, name: xvda, size: 8MiB}]
    workloads:
      - {kind: blockio, device: xvda, pattern: rand, read_percent: 50, block_size: 4KiB,
         queue_depth: 24, requests: 0}
timeline:
  - {at: 50ms, action: destroy, domain: doomed}
"""


def test_xm_destroy_that_cannot_unplug_in_time_leaves_a_domain_xen_finishes() -> None:
    """24 requests of 4 KiB at 64 kB/s take 1.5 s, longer than xend waits (100 ms) and
    than it used to retry destroydomain (1 s, then a paused zombie held its memory for
    good). Now the guest is dying meanwhile and destroyed when blkback unmaps the last
    page, and dom0 keeps nothing of it: no backend, no pirq binding, no TCE table."""
    sim = Simulation(parse_scenario(SLOW_DISK, "<test>"))
    seen: dict[str, int] = {}

    def look(_ev: object) -> None:  # xm list, 1 s in: dying, holding the mapped pages
        dom = sim.xen.domains[sim.domids["doomed"]]
        info = domain_info(dom, 0)
        seen["flags"], seen["tot_pages"] = info["flags"], info["tot_pages"]

    sim.env.timeout(1000 * MS).callbacks.append(look)
    try:
        sim.run()
        domid = sim.domids["doomed"]
        xen = sim.xen
        assert seen["flags"] & DOMINF_dying and 0 < seen["tot_pages"] <= 25
        assert domid not in xen.domains
        assert xen.alloc.free_bytes == sim.free_before_guests == sim.free_after_destroy[domid]
        dom0 = xen.domains[0]
        assert dom0.foreign is not None and dom0.foreign.in_use() == 0
        assert dom0.tce_tables == {} and set(xen.pirqs) == {NET_PIRQ}  # netback's only
        back = sim.dom0_kernel.blkback  # type: ignore[union-attr]
        assert back is not None and back.devices == {}
        assert sim.devices.vbds == {}
        assert not _store_has(sim, f"/local/domain/{domid}")
        assert domid not in sim.guests.kernels
        df = sim.rec.to_dataframe().xen.wide()
        mine = df[df["dom"] == domid]
        assert (
            len(mine[mine["kind"] == "dom.dying"]) == len(mine[mine["kind"] == "dom.destroy"]) == 1
        )
        assert mine[mine["kind"] == "dom.destroy"]["t_ns"].iloc[0] > 1100 * MS
        lines = sim.console_lines(0)
        assert not any("destroydomain failed" in line for line in lines), lines
    finally:
        sim.close()


# --- a guest built in a destroyed guest's memory ---------------------------------------------
REUSE = """
name: reuse
duration: 60ms
domains:
  - name: first
    memory: 128MiB
    devices: [{kind: vbd, name: xvda, size: 4MiB}]
    workloads:
      - {kind: timer, hz: 1000}
      - {kind: console, text: "first was here", every: 2ms, count: 3}
      - {kind: blockio, device: xvda, pattern: seq, read_percent: 0, block_size: 4KiB,
         queue_depth: 2, requests: 20}
  - name: second
    memory: 128MiB
    start: 30ms
    devices: [{kind: vbd, name: xvda, size: 4MiB}]
    workloads:
      - {kind: timer, hz: 1000}
      - {kind: blockio, device: xvda, pattern: rand, read_percent: 50, block_size: 4KiB,
         queue_depth: 4, requests: 40, verify: true}
timeline:
  - {at: 20ms, action: destroy, domain: first}
"""
SECRET = b"first's secret! "


@dataclass
class Reuse:
    """One run of REUSE: the simulation, where `first` kept its secret, what was seen
    between `first`'s destroy and `second`'s creation, and the trace."""

    sim: Simulation
    wrote: list[int]
    between: dict[str, bool]
    df: pd.DataFrame
    first: int
    second: int


@pytest.fixture(scope="module", params=[False, True], ids=["next-id", "same-id"])
def reuse(request: pytest.FixtureRequest) -> Iterator[Reuse]:
    """`second` is built in the frames `first` had (the same RMA base); with `same_id` the
    rover has wrapped by then and it gets `first`'s domid too."""
    same_id: bool = request.param
    sim = Simulation(parse_scenario(REUSE, "<test>"))
    wrote: list[int] = []  # machine addresses `first` filled with its secret
    between: dict[str, bool] = {}

    def fill(_ev: object) -> None:  # 10 ms: `first` keeps data all over its memory
        dom = sim.xen.domains[sim.domids["first"]]
        for gpa in range(32 * MiB, dom.tot_pages << 12, 4 * MiB):
            maddr = dom.gpa_to_maddr(gpa)
            sim.machine.memory.write(maddr, SECRET * 256)
            wrote.append(maddr)

    def gone(_ev: object) -> None:  # 25 ms: `first` is gone, `second` not built yet
        first = sim.domids["first"]
        between["gone"] = first not in sim.xen.domains
        between["home"] = _store_has(sim, f"/local/domain/{first}")
        between["scrubbed"] = all(sim.machine.memory.read(m, 4096) == bytes(4096) for m in wrote)
        if same_id:
            sim.xen.domid_rover = DOMID_FIRST_RESERVED - 1  # the next id wraps to 1

    sim.env.timeout(10 * MS).callbacks.append(fill)
    sim.env.timeout(25 * MS).callbacks.append(gone)
    try:
        sim.run()
        first, second = sim.domids["first"], sim.domids["second"]
        assert (first == second) is same_id
        yield Reuse(sim, wrote, between, sim.rec.to_dataframe().xen.wide(), first, second)
    finally:
        sim.close()


def test_a_guest_in_a_destroyed_guests_memory_boots_its_own_kernel(reuse: Reuse) -> None:
    """The guest kernel lived in `first`'s memory; `second` (same RMA base, maybe the same
    id) must boot a kernel of its own, not resume `first`'s state and crash."""
    sim, df, second = reuse.sim, reuse.df, reuse.second
    rma = df[(df["kind"] == "mem.alloc") & (df["text"] == "rma")]
    assert rma["mfn"].iloc[1] == rma["mfn"].iloc[2] == sim.xen.domains[second].rma_mfn
    assert not (df["kind"] == "dom.crash").any()
    born = df[(df["kind"] == "dom.create") & (df["dom"] == second)]["t_ns"].max()
    shut = df[(df["kind"] == "dom.shutdown") & (df["dom"] == second) & (df["t_ns"] > born)]
    assert shut.empty  # no "Oops" and a crash shutdown
    ticks = df[(df["kind"] == "guest.mark") & (df["text"] == "timer.tick")]
    assert (ticks[ticks["dom"] == second]["t_ns"] > born).sum() > 20
    # Its disk connected (dom0's backend of `first`'s vbd is gone) and did all its I/O.
    done = df[(df["kind"] == "blk.complete") & (df["dom"] == second)]
    assert len(done[done["t_ns"] > born]) == 40 and (done["status"] == 0).all()
    assert not (df["kind"] == "blk.verify").any()
    assert sim.guests.kernels[second].domid == second
    assert [k.domid for k in sim.guests.finished] == [reuse.first]
    io = sim.guests.kernels[second].frontends.blockio[vbd_devid("xvda")]  # type: ignore[union-attr]
    assert (io.completed, io.errors, io.verify_failures) == (40, 0, 0)


def test_a_destroyed_guests_memory_is_scrubbed_before_the_next_guest_gets_it(
    reuse: Reuse,
) -> None:
    """`first` filled its RMA and extents; once it is destroyed those frames read zero,
    and `second`, built in the same frames, finds none of it, in machine memory or
    through its own p2m."""
    sim, dom = reuse.sim, reuse.sim.xen.domains[reuse.second]
    assert reuse.between["gone"] and reuse.between["scrubbed"]
    assert len(reuse.wrote) == 24 and all(dom.phys.owns_mfn(m >> 12) for m in reuse.wrote)
    for mfn, count in dom.phys.mfns():
        assert SECRET not in sim.machine.memory.read(mfn << 12, count << 12)
    for gpa in range(32 * MiB, dom.tot_pages << 12, 4 * MiB):
        assert SECRET[:8] not in sim.machine.memory.read(dom.gpa_to_maddr(gpa), 4096)


def test_a_destroyed_guest_leaves_no_store_home_and_keeps_its_own_console_log(
    reuse: Reuse,
) -> None:
    """xend removes the guest's /local/domain/<id> when it destroys it, and xenconsoled
    logs by guest, not by domid: a later guest under the same id starts with neither."""
    assert reuse.between["gone"] and not reuse.between["home"]
    logs = reuse.sim.console_logs()  # what the run directory's console/<name>.log get
    assert f"xen970 kernel: domain {reuse.first}, 1 VCPU(s), 128 MiB" in logs["first"]
    assert logs["first"].count("first was here") == 3
    assert logs["second"] == [f"xen970 kernel: domain {reuse.second}, 1 VCPU(s), 128 MiB"]
