"""The trace proves memory came back: every frame a destroyed guest was given (RMA, extents,
HTAB, grant frames) has a mem.alloc record, and the same number of frames a mem.free."""

from __future__ import annotations

from framework.scenario import parse_scenario
from framework.simulation import Simulation
from framework.trace.ids import K

SCENARIO = """
name: books
duration: 60ms
domains:
  - name: g
    memory: 128MiB
    workloads: [{kind: timer, hz: 1000}]
timeline:
  - {at: 20ms, action: destroy, domain: g}
"""


def test_a_destroyed_guests_frames_are_all_freed_in_the_trace() -> None:
    sim = Simulation(parse_scenario(SCENARIO, "<test>"))
    try:
        sim.run()
        domid = sim.domids["g"]
        assert domid not in sim.xen.domains  # destroyed
        recs = [r for r in sim.rec.records if r[3] == domid]
        allocs = [(r[5], r[6], r[9]) for r in recs if r[0] == K.MEM_ALLOC]
        frees = [(r[5], r[6], r[9]) for r in recs if r[0] == K.MEM_FREE]
        purposes = {text for _mfn, _n, text in allocs}
        assert {"rma", "extent", "htab", "grant frames"} <= purposes
        # 128 MiB of memory, a 2 MiB HTAB (1/64) and 4 grant frames, in 4 KiB frames
        assert sum(n for _m, n, _t in allocs) == (128 << 8) + (2 << 8) + 4
        assert sum(n for _m, n, _t in frees) == sum(n for _m, n, _t in allocs)
        freed = {(m + i) for m, n, _t in frees for i in range(n)}
        given = {(m + i) for m, n, _t in allocs for i in range(n)}
        assert freed == given
        assert sim.free_after_destroy[domid] == sim.free_before_guests
    finally:
        sim.close()
