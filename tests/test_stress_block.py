"""Block I/O stress scenarios (`scenarios/stress/blk-*.yaml`), each run to a run directory
and checked from its trace and run.json alone:

- every block request a frontend submitted was answered by blkback exactly once
  (`blk.respond`, with a status), and a guest that lived on got each answer exactly once;
- no read failed verification, no domain crashed, no DMA faulted;
- every grant dom0 mapped was unmapped and every TCE it set was cleared again;
- every frame allocated after dom0 booted (guests' memory, HTAB, grant frames, dom0's TCE
  tables) was freed again, frame for frame: free memory is back where it started;
- what each scenario is about (a zombie that Xen finishes, a guest in a dead one's memory).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from analysis import load_run
from framework.dom0.devctl import vbd_devid
from framework.scenario import load_scenario
from framework.simulation import run_scenario

STRESS = Path(__file__).resolve().parent.parent / "scenarios" / "stress"
XVDA = vbd_devid("xvda")
SCENARIOS = ("blk-qd32", "blk-slow", "blk-destroy-mid", "blk-destroy-slow")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[pd.DataFrame, dict]]:
    """Each scenario run once: (trace, run.json)."""
    out: dict[str, tuple[pd.DataFrame, dict]] = {}
    for name in SCENARIOS:
        directory = tmp_path_factory.mktemp(name)
        run_scenario(load_scenario(STRESS / f"{name}.yaml"), directory)
        run = load_run(directory)
        out[name] = (run.trace.xen.wide(), run.meta)
    return out


def _domid(meta: dict, name: str) -> int:
    return next(int(d) for d, n in meta["domains"].items() if n == name)


def _still_allocated(df: pd.DataFrame) -> tuple[dict[int, int], set[int]]:
    """Replay mem.alloc / mem.free in order: (frame -> owner of every frame still allocated
    at the end, the domains ever given a frame). A frame allocated twice without a free
    between, or freed while not allocated, fails the test."""
    owner: dict[int, int] = {}
    owners: set[int] = set()
    mem = df[df["kind"].isin(["mem.alloc", "mem.free"])]
    for kind, dom, mfn, count in mem[["kind", "dom", "mfn", "count"]].itertuples(False):
        for f in range(int(mfn), int(mfn) + int(count)):
            if kind == "mem.alloc":
                assert f not in owner, f"frame {f:#x} allocated to d{dom} while d{owner[f]}'s"
                owner[f] = int(dom)
                owners.add(int(dom))
            else:
                assert owner.pop(f, None) == dom, f"frame {f:#x} freed by d{dom}, not its own"
    return owner, owners


def test_every_stress_scenario_is_checked() -> None:
    assert {p.stem for p in STRESS.glob("blk-*.yaml")} == set(SCENARIOS)


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_request_is_answered_exactly_once(
    runs: dict[str, tuple[pd.DataFrame, dict]], name: str
) -> None:
    df, meta = runs[name]
    guests = [int(d) for d in meta["domains"] if int(d) != 0]
    for g in guests:
        submitted = list(df[(df["kind"] == "blk.submit") & (df["dom"] == g)]["req_id"])
        answered = df[(df["kind"] == "blk.respond") & (df["remote_dom"] == g)]
        assert len(submitted) == len(set(submitted)) > 0
        assert Counter(answered["req_id"]) == Counter(submitted), f"d{g}"
        assert set(answered["dev"]) == {XVDA} and answered["status"].notna().all()
        completed = list(df[(df["kind"] == "blk.complete") & (df["dom"] == g)]["req_id"])
        assert len(completed) == len(set(completed)) and set(completed) <= set(submitted)
    assert not (df["kind"] == "blk.verify").any()
    assert not (df["kind"] == "dom.crash").any()
    assert not (df["kind"] == "dma.fault").any()


@pytest.mark.parametrize("name", SCENARIOS)
def test_grants_tces_and_memory_all_come_back(
    runs: dict[str, tuple[pd.DataFrame, dict]], name: str
) -> None:
    df, meta = runs[name]
    ok_maps = df[(df["kind"] == "gnttab.map") & (df["status"] == 0)]
    ok_unmaps = df[(df["kind"] == "gnttab.unmap") & (df["status"] == 0)]
    assert len(ok_maps) > 0
    assert Counter(ok_maps["remote_dom"]) == Counter(ok_unmaps["remote_dom"])
    tces = df[df["kind"] == "tce.put"]
    last = tces.groupby(["liobn", "ioba"])["mfn"].last()
    assert len(last) > 0 and (last == 0).all()  # every entry set was cleared again
    # Every frame given out after dom0 booted was freed once for each time it was given.
    left, owners = _still_allocated(df[df["t_ns"] > 0])
    assert left == {}
    guests = {int(d) for d in meta["domains"] if int(d) != 0}
    assert owners == guests | {0}  # dom0's: the vbds' TCE tables
    destroyed = df[df["kind"] == "dom.destroy"]
    assert set(destroyed["dom"]) == guests and len(destroyed) == len(guests)


def test_queue_depth_32_of_44kib_requests_keeps_352_pages_mapped(
    runs: dict[str, tuple[pd.DataFrame, dict]],
) -> None:
    df, meta = runs["blk-qd32"]
    g = _domid(meta, "qd32")
    sub = df[(df["kind"] == "blk.submit") & (df["dom"] == g)]
    done = df[(df["kind"] == "blk.complete") & (df["dom"] == g)]
    assert len(sub) == len(done) == 300 and set(sub["bytes"]) == {44 << 10}
    assert (done["status"] == 0).all()
    # dom0 held the grants of 32 requests of 11 pages at once, at its peak.
    maps = df[(df["kind"] == "gnttab.map") & (df["remote_dom"] == g) & (df["status"] == 0)]
    unmaps = df[(df["kind"] == "gnttab.unmap") & (df["remote_dom"] == g) & (df["status"] == 0)]
    held = pd.concat([maps.assign(d=1), unmaps.assign(d=-1)]).sort_index()["d"].cumsum()
    assert held.max() >= 32 * 11


def test_a_64kBps_disk_answers_each_request_after_its_transfer_time(
    runs: dict[str, tuple[pd.DataFrame, dict]],
) -> None:
    df, meta = runs["blk-slow"]
    g = _domid(meta, "slow")
    done = df[(df["kind"] == "blk.complete") & (df["dom"] == g)]
    assert len(done) == 16 and (done["status"] == 0).all()
    transfer_ns = 4096 * 1_000_000_000 // 64_000  # 64 ms for 4 KiB at 64 kB/s
    assert (done["latency_ns"] >= transfer_ns).all()
    disk = df[(df["kind"] == "disk.done") & (df["dom"] == g)]
    assert (disk["service_ns"] >= transfer_ns).all()


def _rma(df: pd.DataFrame, domid: int) -> int:
    rma = df[(df["kind"] == "mem.alloc") & (df["dom"] == domid) & (df["text"] == "rma")]
    return int(rma["mfn"].iloc[0])


def test_a_guest_destroyed_mid_io_goes_and_the_next_gets_its_memory(
    runs: dict[str, tuple[pd.DataFrame, dict]],
) -> None:
    df, meta = runs["blk-destroy-mid"]
    doomed, heir = _domid(meta, "doomed"), _domid(meta, "heir")
    paused = df[(df["kind"] == "dom.pause") & (df["dom"] == doomed)]["t_ns"].iloc[0]
    late = df[(df["kind"] == "disk.done") & (df["dom"] == doomed) & (df["t_ns"] > paused)]
    assert len(late) > 0  # the disk still held its requests when it was destroyed
    assert _rma(df, heir) == _rma(df, doomed)
    done = df[(df["kind"] == "blk.complete") & (df["dom"] == heir)]
    assert len(done) == 150 and (done["status"] == 0).all()


def test_a_guest_destroyed_on_a_slow_disk_dies_when_its_last_page_is_unmapped(
    runs: dict[str, tuple[pd.DataFrame, dict]],
) -> None:
    """xend destroys after its 100 ms: Xen keeps the guest dying while blkback still maps
    its pages, destroys it with the last unmap, and dom0 lets go of its vbd, so the next
    guest, in the same memory, gets the same interrupt source and a working disk."""
    df, meta = runs["blk-destroy-slow"]
    doomed, heir = _domid(meta, "doomed"), _domid(meta, "heir")
    mine = df[df["dom"] == doomed]
    dying = mine[mine["kind"] == "dom.dying"]
    gone = mine[mine["kind"] == "dom.destroy"]
    assert len(dying) == len(gone) == 1 and int(dying["count"].iloc[0]) > 1
    last_disk = mine[mine["kind"] == "disk.done"]["t_ns"].max()
    t_dying, t_gone = dying["t_ns"].iloc[0], gone["t_ns"].iloc[0]
    assert t_dying < last_disk <= t_gone < last_disk + 1_000_000
    # While dying, each frame went as blkback unmapped it; the last took the domain along.
    freed_late = mine[(mine["kind"] == "mem.free") & (mine["t_ns"] > t_dying)]
    assert freed_late["count"].sum() == int(dying["count"].iloc[0]) + 4  # + grant frames
    # dom0's backend let go: the heir's vbd is bound to the same MPIC source, and works.
    pirqs = df[(df["kind"] == "evtchn.bind") & (df["dom"] == 0) & (df["text"] == "pirq")]
    assert pirqs["remote_port"].value_counts().max() == 2
    assert _rma(df, heir) == _rma(df, doomed)
    done = df[(df["kind"] == "blk.complete") & (df["dom"] == heir)]
    assert len(done) == 6 and (done["status"] == 0).all()
    dom0_console = list(df[(df["kind"] == "console.out") & (df["dom"] == 0)]["text"])
    assert not any("Error" in line or "failed" in line for line in dom0_console)
