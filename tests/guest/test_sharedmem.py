"""Grants in scenarios, end to end: the granter's entries as bytes in its grant frames
(checked against grant_table.h's values, written here as the header has them), the keys
it publishes in xenstore, and what the sharedmem workload and the grant actions record."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

import analysis
from framework.guest import xs_wire as xs
from framework.guest.sharedmem import ANSWER, DATA, Granter, describe_mismatch, page_pattern
from framework.scenario import load_scenario, parse_scenario
from framework.simulation import Simulation, run_scenario

REPO = Path(__file__).resolve().parents[2]
# grant_table.h (Xen 3.1): GTF_permit_access 1, GTF_readonly (1U<<2), GTF_reading (1U<<3),
# GTF_writing (1U<<4); grant_entry_t { uint16_t flags; domid_t domid; uint32_t frame; }.
PERMIT, READONLY, READING, WRITING = 1, 1 << 2, 1 << 3, 1 << 4

SCENARIO = """
name: shm-bytes
duration: 30ms
domains:
  - name: alpha
    memory: 64MiB
    workloads: [{kind: sharedmem, grant: rw, every: 2ms}]
  - {name: beta, memory: 64MiB}
grants:
  - {name: rw, granter: alpha, peer: dom0, pages: 2}
  - {name: ro, granter: alpha, peer: beta, access: ro}
timeline:
  - {action: grant_map, at: 10ms, grant: rw}
  - {action: grant_revoke, at: 15ms, grant: rw}
  - {action: grant_unmap, at: 20ms, grant: rw}
  - {action: grant_revoke, at: 21ms, grant: ro}
"""


@given(
    pages=st.integers(1, 4),
    round_=st.integers(0, 2**32 - 1),
    where=st.integers(0, 4 * 4096 - 1),
    flip=st.integers(1, 255),
)
def test_any_changed_byte_is_found_and_named(
    pages: int, round_: int, where: int, flip: int
) -> None:
    data = [page_pattern(DATA, round_, i) for i in range(pages)]
    assert describe_mismatch(data, DATA, round_) is None
    page, off = divmod(where % (pages * 4096), 4096)
    bad = bytearray(data[page])
    bad[off] ^= flip
    data[page] = bytes(bad)
    said = describe_mismatch(data, DATA, round_)
    assert said is not None and said.startswith(f"page {page} byte {off}:")
    assert describe_mismatch([page_pattern(ANSWER, round_, 0)], DATA, round_) is not None


def _entry(sim: Simulation, domid: int, ref: int) -> bytes:
    dom = sim.xen.domains[domid]
    frame, index = divmod(ref, 512)
    return sim.machine.memory.read((dom.grant_frames[frame] << 12) + index * 8, 8)


def _store(sim: Simulation, path: str) -> str:
    store = sim.dom0.store
    assert store is not None
    out = store.daemon.handle(0, xs.XsMsg(xs.XS_READ, 7, 0, path.encode() + b"\0"))
    reply = next(msg for _target, msg in out if msg.req_id == 7)
    assert reply.type == xs.XS_READ, reply.payload
    return reply.payload.rstrip(b"\0").decode()


def test_grant_entries_in_guest_memory_follow_the_peer_through_map_revoke_unmap() -> None:
    sim = Simulation(parse_scenario(SCENARIO), record=True)
    try:
        sim.env.run(until=5_000_000)
        alpha, beta = sim.domids["alpha"], sim.domids["beta"]
        shm = sim.guests.sharedmem[alpha]
        rw, ro = shm.granters
        # Published as a split driver does: refs, channel, access, state Connected (4).
        base = f"/local/domain/{alpha}/data/sharedmem"
        assert _store(sim, f"{base}/rw/page-count") == "2"
        assert [int(_store(sim, f"{base}/rw/ref-{i}")) for i in range(2)] == rw.refs
        assert _store(sim, f"{base}/rw/event-channel") == str(rw.port)
        assert _store(sim, f"{base}/ro/access") == "ro"
        assert _store(sim, f"{base}/rw/state") == "4"

        def flags(g: Granter, i: int = 0) -> int:
            raw = _entry(sim, alpha, g.refs[i])
            assert raw[2:4] == g.p.other.to_bytes(2, "big")  # domid: the peer
            assert int.from_bytes(raw[4:8], "big") == g.pages[i] >> 12  # frame: our pfn
            return int.from_bytes(raw[0:2], "big")

        # Between rounds nobody maps: just the grants (beta copies, never pins).
        assert flags(rw) == PERMIT and flags(rw, 1) == PERMIT
        assert flags(ro) == PERMIT | READONLY
        sim.env.run(until=12_000_000)  # dom0 mapped rw at 10 ms, read-write
        assert flags(rw) == PERMIT | READING | WRITING
        sim.env.run(until=17_000_000)  # the revoke at 15 ms found it busy: left as it was
        assert flags(rw) == PERMIT | READING | WRITING
        assert _store(sim, f"{base}/rw/state") == "6"  # Closed
        sim.env.run(until=22_000_000)  # unmapped at 20 ms: Xen cleared reading/writing
        assert flags(rw) == PERMIT
        assert flags(ro) == 0  # revoked at 21 ms with nothing mapped: the entry is clear
        assert beta in sim.guests.sharedmem
    finally:
        sim.close()


def _trace(out: Path) -> pd.DataFrame:
    df = analysis.read_trace(out / "trace.parquet").xen.wide()
    df["kind"] = df["kind"].astype(str)
    return df


def test_the_sharedmem_scenario_passes_and_records_busy_refusal_and_fault(tmp_path: Path) -> None:
    result = run_scenario(load_scenario(REPO / "scenarios" / "sharedmem.yaml"), tmp_path / "run")
    assert result.outcome == "PASS", [c for c in result.checks if not c.passed]
    assert not result.warnings
    df = _trace(tmp_path / "run")
    alpha = 1
    busy = df[(df["kind"] == "shm.revoke") & (df["status"] == 1)]
    assert list(busy["dom"]) == [alpha, alpha] and busy["t_ns"].min() >= 15_000_000
    assert all("busy, still mapped (flags 0x19)" in t for t in busy["text"])
    refused = df[(df["kind"] == "gnttab.map") & (df["status"] != 0)]
    assert set(refused["status"]) == {-1}  # GNTST_general_error: the entry names beta
    assert all("does not permit access to d0" in t for t in refused["text"])
    fault = df[df["kind"] == "shm.fault"]
    assert len(fault) == 1 and "vector 0x300" in fault["text"].iloc[0]  # a DSI
    # The peers checked every round they were sent, and each check matched.
    checks = df[df["kind"] == "shm.verify"]
    assert len(checks) and (checks["status"] == 0).all()


def test_same_scenario_same_trace(tmp_path: Path) -> None:
    s = load_scenario(REPO / "scenarios" / "sharedmem.yaml")
    run_scenario(s, tmp_path / "a")
    run_scenario(s, tmp_path / "b")
    a, b = _trace(tmp_path / "a"), _trace(tmp_path / "b")
    pd.testing.assert_frame_equal(a, b)
