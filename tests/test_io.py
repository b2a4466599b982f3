"""Virtual I/O end to end, as `xen970 run` wires it: a guest doing verified random block
I/O and receiving a stream, another guest streaming to it over dom0's bridge, console
input, then `xm destroy` of both. Everything is checked from the trace and from the
machine's state afterwards (grants, foreign slots, TCE tables, free memory)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import analysis  # noqa: F401  (registers DataFrame.xen)
from analysis.run import read_trace
from framework.dom0.devctl import vbd_devid
from framework.guest.blockio import block_pattern
from framework.guest.kernel import GuestKernel
from framework.hw970.disk import DiskParams
from framework.scenario import load_scenario, parse_scenario
from framework.simulation import Simulation, run_scenario
from framework.xen.public.io.xenbus import XenbusState

XVDA = vbd_devid("xvda")

IO_SCENARIO = """
name: io-test
seed: 3
duration: 90ms
machine:
  cpus: 2
  memory: 1GiB
dom0:
  memory: 256MiB
domains:
  - name: disk
    memory: 64MiB
    devices:
      - {kind: vbd, name: xvda, size: 8MiB}
      - {kind: vif, bridge: xenbr0}
    workloads:
      - {kind: blockio, device: xvda, pattern: rand, read_percent: 50, block_size: 4KiB,
         queue_depth: 8, requests: 300, region: 256KiB}
      - {kind: console, text: "disk says hi", every: 10ms, count: 3}
  - name: stream
    memory: 64MiB
    devices:
      - {kind: vif, bridge: xenbr0}
    workloads:
      - {kind: netstream, peer: disk, message_size: 32KiB, messages: 20}
timeline:
  - {action: console_input, at: 5ms, domain: disk, text: "ls\\n"}
  - {action: destroy, at: 80ms, domain: disk}
  - {action: destroy, at: 80ms, domain: stream}
"""


def _kernel(sim: Simulation, domid: int) -> GuestKernel:
    return next(k for k in sim.guests.all_kernels() if k.domid == domid)


@pytest.fixture(scope="module")
def io_run() -> tuple[Simulation, pd.DataFrame]:
    sim = Simulation(parse_scenario(IO_SCENARIO, "io-test"))
    sim.run()
    df = sim.rec.to_dataframe().xen.wide()
    yield sim, df
    sim.close()


def test_block_requests_are_verified_and_each_answered_once(
    io_run: tuple[Simulation, pd.DataFrame],
) -> None:
    sim, df = io_run
    disk = sim.domids["disk"]
    io = _kernel(sim, disk).frontends.blockio[XVDA]  # type: ignore[union-attr]
    assert (io.issued, io.completed, io.errors, io.verify_failures) == (300, 300, 0, 0)
    assert io.bytes == 300 * 4096
    assert len(df[df.kind == "blk.verify"]) == 0
    sub = df[df.kind == "blk.submit"].sort_values("t_ns", kind="stable")
    done = df[df.kind == "blk.complete"].sort_values("t_ns", kind="stable")
    assert len(sub) == len(done) == 300 and (done.status == 0).all()
    # Ids are reused: per id, submits and completions must alternate, starting with a submit.
    events = pd.concat([sub.assign(ev=1), done.assign(ev=-1)]).sort_values("t_ns", kind="stable")
    for _rid, evs in events.groupby("req_id"):
        seq = list(evs.ev)
        assert seq == [1, -1] * (len(seq) // 2), f"request id {_rid}: {seq}"
    # The disk did exactly that work, and the reads it served checked out in the guest.
    assert len(df[df.kind == "disk.done"]) == 300
    assert io.plan is not None and io.plan.written
    assert sim.devices.vbds == {}  # unplugged by xm destroy, image closed


def test_the_image_holds_the_last_write_to_every_block(tmp_path: Path) -> None:
    """Through a real run directory: the sparse image in DIR/disks is what the guest wrote."""
    scenario = parse_scenario(IO_SCENARIO.replace("messages: 20", "messages: 1"), "io-test")
    out = tmp_path / "run"
    run_scenario(scenario, out)
    image = out / "disks" / "disk-xvda.img"
    assert image.stat().st_size == 8 << 20
    df = read_trace(out / "trace.parquet").xen.wide()
    writes = df[(df.kind == "blk.submit") & (df.text == "write")]
    assert len(writes) > 100
    last = writes.groupby("sector").size()
    data = image.read_bytes()
    # Every written block holds a valid pattern record for its own sectors.
    for sector in last.index[:40]:
        block = data[int(sector) * 512 : int(sector) * 512 + 4096]
        assert block[:4] == b"XBLK", f"sector {sector} was never written"
        generation = int.from_bytes(block[4:8], "big")
        assert block == block_pattern(int(sector), 8, generation)
    assert (out / "console" / "disk.log").read_text().count("disk says hi") == 3


def test_the_stream_arrives_whole_over_the_bridge(io_run: tuple[Simulation, pd.DataFrame]) -> None:
    sim, df = io_run
    stream, disk = sim.domids["stream"], sim.domids["disk"]
    tx = df[(df.kind == "net.tx") & (df.dom == stream)]
    rx = df[(df.kind == "net.rx") & (df.dom == disk)]
    assert len(tx) == len(rx) > 20 * 22  # 32 KiB in 1460-byte chunks: 23 frames a message
    # Packet ids: the stream (stream's domid, vif 0) above the sequence number.
    assert list(rx.pkt) == list(tx.pkt) == [(stream << 48) | n for n in range(len(rx))]
    assert len(df[df.kind == "net.drop"]) == 0
    marks = df[(df.kind == "guest.mark") & (df.text == "netstream.message")]
    assert list(marks.value) == list(range(20))
    sink = _kernel(sim, disk).frontends.sinks[0]  # type: ignore[union-attr]
    assert (sink.messages, sink.errors, sink.lost) == (20, 0, 0)
    assert (rx.latency_ns > 0).all()


def test_console_input_reaches_the_guest_and_lines_reach_dom0(
    io_run: tuple[Simulation, pd.DataFrame],
) -> None:
    sim, df = io_run
    disk = sim.domids["disk"]
    typed = df[df.kind == "console.in"]
    assert list(typed.text) == ["ls\n"] and list(typed.dom) == [disk]
    assert bytes(_kernel(sim, disk).console_typed) == b"ls\n"
    lines = sim.console_lines(disk)
    assert lines.count("disk says hi") == 3
    assert "ls" in lines  # echoed, as a tty does


def test_destroy_unmaps_every_grant_and_returns_every_frame(
    io_run: tuple[Simulation, pd.DataFrame],
) -> None:
    sim, df = io_run
    xen = sim.xen
    assert set(xen.domains) == {0}
    assert len(df[df.kind == "dom.destroy"]) == 2
    # Every grant dom0 mapped was unmapped; no foreign slot and no TCE table remain.
    maps = df[(df.kind == "gnttab.map") & (df.status == 0)]
    unmaps = df[(df.kind == "gnttab.unmap") & (df.status == 0)]
    assert len(maps) == len(unmaps) > 300  # a grant per request, plus rings and pages
    dom0 = xen.domains[0]
    assert dom0.foreign is not None and dom0.foreign.in_use() == 0
    assert dom0.tce_tables == {}
    tces = df[df.kind == "tce.put"]
    assert (tces.mfn != 0).sum() == (tces.mfn == 0).sum() == 300
    # The backends went Closed before the domains went away.
    backend_closed = df[(df.kind == "xenbus.state") & (df.dom == 0) & (df.xb_state == 6)]
    assert len(backend_closed) == 3  # xvda and two vifs
    # Free memory is back to what it was before the first guest was created.
    assert sim.free_before_guests is not None
    assert xen.alloc.free_bytes == sim.free_before_guests
    assert sim.free_after_destroy[max(sim.free_after_destroy)] == sim.free_before_guests


def test_destroy_while_requests_are_in_flight_finishes_them_first() -> None:
    """xm destroy in the middle of the I/O: blkback lets the disk finish what it holds
    before it unmaps; nothing is left mapped and the memory comes back."""
    text = IO_SCENARIO.replace("requests: 300", "requests: 0").replace("at: 80ms", "at: 30ms")
    sim = Simulation(parse_scenario(text, "io-test"))
    try:
        sim.run()
        df = sim.rec.to_dataframe().xen.wide()
        paused = df[df.kind == "dom.pause"].t_ns.min()
        late = df[(df.kind == "disk.done") & (df.t_ns > paused)]
        assert len(late) > 0  # the disk still held requests when the guest was paused
        assert set(sim.xen.domains) == {0}
        dom0 = sim.xen.domains[0]
        assert dom0.foreign is not None and dom0.foreign.in_use() == 0
        assert sim.xen.alloc.free_bytes == sim.free_before_guests
    finally:
        sim.close()


def test_dma_to_an_unmapped_tce_is_an_io_error_for_the_frontend() -> None:
    text = IO_SCENARIO.replace("requests: 300", "requests: 60")
    sim = Simulation(parse_scenario(text, "io-test"))
    try:

        def arm(_ev: object) -> None:
            back = sim.dom0_kernel.blkback  # type: ignore[union-attr]
            back.device(sim.domids["disk"], XVDA).fault_skip_tce_once = True

        sim.env.timeout(3_000_000).callbacks.append(arm)
        sim.run()
        df = sim.rec.to_dataframe().xen.wide()
        faults = df[df.kind == "dma.fault"]
        assert len(faults) == 1 and "no TCE" in faults.iloc[0].text
        done = df[df.kind == "blk.complete"]
        assert list(done.status).count(-1) == 1 and len(done) == 60
        io = _kernel(sim, sim.domids["disk"]).frontends.blockio[XVDA]  # type: ignore[union-attr]
        assert (io.errors, io.verify_failures) == (1, 0)
    finally:
        sim.close()


@pytest.mark.parametrize("block", ["4KiB", "44KiB"])
def test_queue_depth_one_sequential_runs_at_the_disk_model_rate(block: str) -> None:
    text = f"""
name: qd1
duration: 60ms
domains:
  - name: g
    memory: 64MiB
    devices: [{{kind: vbd, name: xvda, size: 16MiB}}]
    workloads: [{{kind: blockio, device: xvda, pattern: seq, read_percent: 0,
                 block_size: {block}, queue_depth: 1, requests: 100, verify: false}}]
"""
    sim = Simulation(parse_scenario(text, "qd1"))
    try:
        sim.run()
        df = sim.rec.to_dataframe().xen.wide()
    finally:
        sim.close()
    sub = df[df.kind == "blk.submit"]
    done = df[df.kind == "blk.complete"]
    assert len(done) == 100 and (done.status == 0).all()
    nbytes = int(sub.bytes.iloc[0])
    measured = nbytes * len(done) * 1e9 / (done.t_ns.max() - sub.t_ns.min())
    analytic = DiskParams(100_000, 100_000_000).analytic_throughput(nbytes)
    assert abs(measured - analytic) / analytic < 0.05, (measured, analytic)
    # Sequential: each request starts where the previous one ended.
    assert list(sub.sector) == [i * nbytes // 512 for i in range(100)]


def test_io_scenario_runs_twice_to_identical_traces(tmp_path: Path) -> None:
    scenario = parse_scenario(IO_SCENARIO.replace("messages: 20", "messages: 5"), "io-test")
    for name in ("a", "b"):
        run_scenario(scenario, tmp_path / name)
    a = (tmp_path / "a" / "trace.parquet").read_bytes()
    assert a == (tmp_path / "b" / "trace.parquet").read_bytes()


def test_the_shipped_io_scenario_is_valid() -> None:
    scenario = load_scenario(Path(__file__).parents[1] / "scenarios" / "io.yaml")
    names = [d.name for d in scenario.domains]
    assert names == ["disk", "stream"]
    assert [a.action for a in scenario.timeline] == ["console_input", "destroy", "destroy"]


def test_a_frontend_connects_through_the_whole_handshake(
    io_run: tuple[Simulation, pd.DataFrame],
) -> None:
    sim, df = io_run
    disk = sim.domids["disk"]
    front = df[(df.kind == "xenbus.state") & (df.dom == disk) & (df.dev == XVDA)]
    states = [XenbusState(int(s)) for s in front.xb_state]
    assert states[:2] == [XenbusState.Initialised, XenbusState.Connected]
    # blockio closes its device when its 300 requests are done.
    assert states[2:] == [XenbusState.Closing, XenbusState.Closed]


def test_device_workloads_run_on_the_vcpu_they_name() -> None:
    """The frontends bind their event channels to the workload's VCPU, so after the first
    burst (sent from the xenbus handler, on VCPU 0) requests and packets go out there."""
    text = (
        IO_SCENARIO.replace(
            "    memory: 64MiB\n    devices:", "    memory: 64MiB\n    vcpus: 2\n    devices:"
        )
        .replace("requests: 300, region", "requests: 300, vcpu: 1, region")
        .replace("messages: 20}", "messages: 20, vcpu: 1}")
    )
    sim = Simulation(parse_scenario(text, "io-test"))
    try:
        sim.run()
        df = sim.rec.to_dataframe().xen.wide()
    finally:
        sim.close()
    # The first burst fills the ring (queue depth 8 for blkif, 256 tx slots for netif) and
    # may be topped up from VCPU 0 while connecting; from the first event on VCPU 1 on,
    # everything is sent there.
    for kind, dom, burst in (("blk.submit", "disk", 8), ("net.tx", "stream", 256)):
        rows = df[(df.kind == kind) & (df.dom == sim.domids[dom])].reset_index(drop=True)
        first = int((rows.vcpu == 1).idxmax())
        assert 0 < first <= burst  # at most the first ring-full goes out from VCPU 0
        later = rows.iloc[first:]
        assert len(later) > 150 and (later.vcpu == 1).all(), later.vcpu.value_counts().to_dict()
