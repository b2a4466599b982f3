"""The block split driver: request construction and validation on a real blkif ring in
machine memory, the backend's checks and IOBA allocation, a disk serving the backend's
DMA segments through a real TCE table, and the blockio workload's choices and checks."""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest
import simpy

import analysis  # noqa: F401  (registers DataFrame.xen)
from framework.dom0.devctl import create_device
from framework.errors import BlkfrontError, BlkifRequestError
from framework.guest.blkback import (
    BlkBack,
    BlkBackDevice,
    IobaAllocator,
    disk_completion,
    dma_segments,
    request_problem,
    tce_permission,
)
from framework.guest.blkfront import BlkFront, build_request, check_segments
from framework.guest.blockio import (
    BlockIo,
    BlockIoParams,
    BlockIoPlan,
    block_pattern,
    describe_mismatch,
    page_segments,
    sector_pattern,
)
from framework.guest.kmem import KernelMemory
from framework.guest.ring import BackRing, FrontRing, SharedRing
from framework.hw970.core import Core
from framework.hw970.disk import Disk, DiskImage, DiskParams, DiskRequest
from framework.hw970.iommu import TCE_PAGE_READ, TCE_PAGE_WRITE, TceTable
from framework.hw970.memory import MachineMemory
from framework.scenario import parse_scenario
from framework.simulation import Simulation
from framework.xen.grant_table import entry_maddr
from framework.xen.public.grant_table import GRANT_ENTRY, NR_GRANT_ENTRIES
from framework.xen.public.io.blkif import (
    BLKIF_OP_FLUSH_DISKCACHE,
    BLKIF_OP_READ,
    BLKIF_OP_WRITE,
    BLKIF_OP_WRITE_BARRIER,
    BLKIF_REQUEST,
    BLKIF_RING,
    BLKIF_RSP_EOPNOTSUPP,
    BLKIF_RSP_ERROR,
    BLKIF_RSP_OKAY,
    BlkifRequest,
    BlkifResponse,
    BlkifSegment,
)
from framework.xen.tce import create_tce_table

if TYPE_CHECKING:
    from framework.guest.kernel import GuestKernel

RING_MADDR = 0x10000
ENTRY = BLKIF_RING.entry_bytes


class Window:
    """A domain's view of one machine page at a guest address (its own or dom0's foreign
    mapping), refusing anything outside the page."""

    def __init__(self, mem: MachineMemory, gpa: int, maddr: int) -> None:
        self.mem, self.gpa, self.maddr = mem, gpa, maddr

    def _m(self, addr: int, n: int) -> int:
        assert self.gpa <= addr and addr + n <= self.gpa + 4096, f"{addr:#x} outside the page"
        return self.maddr + addr - self.gpa

    def read(self, addr: int, n: int) -> bytes:
        return self.mem.read(self._m(addr, n), n)

    def write(self, addr: int, data: bytes) -> None:
        self.mem.write(self._m(addr, len(data)), data)


@pytest.fixture
def rings() -> tuple[MachineMemory, FrontRing, BackRing]:
    mem = MachineMemory(1 << 20)
    front_view = Window(mem, 0x3FFC000, RING_MADDR)
    back_view = Window(mem, 1 << 34, RING_MADDR)
    SharedRing.init(front_view, 0x3FFC000, ENTRY)
    return mem, FrontRing(front_view, 0x3FFC000, ENTRY), BackRing(back_view, 1 << 34, ENTRY)


# -- frontend: request construction --------------------------------------------------------
def test_request_crosses_the_ring_byte_exact(
    rings: tuple[MachineMemory, FrontRing, BackRing],
) -> None:
    mem, front, back = rings
    pages = [(0x800000, 0, 7), (0x801000, 0, 7), (0x802000, 2, 5)]
    assert check_segments(BLKIF_OP_WRITE, pages) == (8 + 8 + 4) * 512
    req = build_request(BLKIF_OP_WRITE, 0x1122334455, 96, [7, 8, 9], pages, handle=51712)
    front.put_request(req.pack())
    assert front.push_requests_and_check_notify()  # a fresh ring asks for the first request
    # The entry sits in slot 0, right after the 64-byte header, big-endian.
    raw = mem.read(RING_MADDR + 64, BLKIF_REQUEST.size)
    assert raw[0] == BLKIF_OP_WRITE and raw[1] == 3
    assert struct.unpack(">H", raw[2:4])[0] == 51712
    assert struct.unpack(">Q", raw[8:16])[0] == 0x1122334455
    assert struct.unpack(">Q", raw[16:24])[0] == 96
    assert struct.unpack(">IBB", raw[40:46]) == (9, 2, 5)  # segment 2 at 24 + 2 * 8
    got = BlkifRequest.unpack(back.get_request())
    assert got == BlkifRequest(
        BLKIF_OP_WRITE,
        51712,
        0x1122334455,
        96,
        (BlkifSegment(7, 0, 7), BlkifSegment(8, 0, 7), BlkifSegment(9, 2, 5)),
    )
    assert request_problem(got, sectors=96 + 20, writable=True) is None


@pytest.mark.parametrize(
    ("op", "pages", "reason"),
    [
        (BLKIF_OP_READ, [], "1..11 segments"),
        (BLKIF_OP_READ, [(0x1000 * i, 0, 7) for i in range(12)], "1..11 segments"),
        (BLKIF_OP_WRITE, [(0x800800, 0, 7)], "not 4 KiB aligned"),
        (BLKIF_OP_READ, [(0x800000, 5, 4)], "sectors 5..4"),
        (BLKIF_OP_READ, [(0x800000, 0, 8)], "sectors 0..8"),
        (BLKIF_OP_FLUSH_DISKCACHE, [(0x800000, 0, 7)], "a flush carries no data"),
        (BLKIF_OP_WRITE_BARRIER, [(0x800000, 0, 7)], "is not read (0), write (1) or flush"),
    ],
)
def test_frontend_refuses_malformed_requests(
    op: int, pages: list[tuple[int, int, int]], reason: str
) -> None:
    with pytest.raises(BlkfrontError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        check_segments(op, pages)


def test_flush_has_no_segments() -> None:
    assert check_segments(BLKIF_OP_FLUSH_DISKCACHE, []) == 0
    req = build_request(BLKIF_OP_FLUSH_DISKCACHE, 4, 0, [], [], handle=0)
    assert request_problem(BlkifRequest.unpack(req.pack()), sectors=8, writable=False) is None


# -- backend: validation -------------------------------------------------------------------
def _req(op: int, sector: int, *segs: tuple[int, int]) -> BlkifRequest:
    return BlkifRequest(op, 0, 1, sector, tuple(BlkifSegment(9, f, last) for f, last in segs))


def test_backend_bounds_are_exact() -> None:
    # 16 sectors on disk: 8 + 8 sectors from sector 0 fit; one more sector does not.
    assert request_problem(_req(BLKIF_OP_READ, 0, (0, 7), (0, 7)), 16, True) is None
    assert request_problem(_req(BLKIF_OP_READ, 15, (7, 7)), 16, True) is None
    status, why = request_problem(_req(BLKIF_OP_READ, 15, (6, 7)), 16, True) or (0, "")
    assert status == BLKIF_RSP_ERROR and "sectors 15..16" in why and "16 sectors" in why


@pytest.mark.parametrize(
    ("req", "writable", "status", "reason"),
    [
        (_req(BLKIF_OP_WRITE, 0, (0, 7)), False, BLKIF_RSP_ERROR, "read-only"),
        (_req(BLKIF_OP_WRITE_BARRIER, 0, (0, 7)), True, BLKIF_RSP_EOPNOTSUPP, "barrier"),
        (_req(7, 0, (0, 7)), True, BLKIF_RSP_ERROR, "unknown operation 7"),
        (_req(BLKIF_OP_READ, 0), True, BLKIF_RSP_ERROR, "0 segments"),
        (_req(BLKIF_OP_FLUSH_DISKCACHE, 0, (0, 7)), True, BLKIF_RSP_ERROR, "flush carries"),
        (_req(BLKIF_OP_READ, 0, (3, 2)), True, BLKIF_RSP_ERROR, "sectors 3..2"),
        (_req(BLKIF_OP_READ, 0, (0, 8)), True, BLKIF_RSP_ERROR, "sectors 0..8"),
    ],
)
def test_backend_refuses(req: BlkifRequest, writable: bool, status: int, reason: str) -> None:
    problem = request_problem(req, 1 << 20, writable)
    assert problem is not None
    assert problem[0] == status and reason in problem[1]


def test_backend_decoding_of_hostile_ring_entries(
    rings: tuple[MachineMemory, FrontRing, BackRing],
) -> None:
    """A frontend writing raw bytes: 12 segments, or sectors past the page, are refused
    with the id and operation the backend needs for its error response."""
    _mem, front, back = rings
    front.put_request(BLKIF_REQUEST.pack(operation=BLKIF_OP_READ, nr_segments=12, id=77))
    front.put_request(
        BLKIF_REQUEST.pack(
            operation=BLKIF_OP_WRITE, nr_segments=1, id=78, seg0_first_sect=2, seg0_last_sect=9
        )
    )
    front.push_requests()
    for want_id, want_op, text in ((77, BLKIF_OP_READ, "12 segments"), (78, 1, "2..9")):
        with pytest.raises(BlkifRequestError, match=text) as info:
            BlkifRequest.unpack(back.get_request())
        assert (info.value.request_id, info.value.operation) == (want_id, want_op)
        back.put_response(BlkifResponse(want_id, want_op, BLKIF_RSP_ERROR).pack())
    assert back.push_responses_and_check_notify()
    got = [BlkifResponse.unpack(front.get_response()) for _ in range(2)]
    assert got == [BlkifResponse(77, 0, -1), BlkifResponse(78, 1, -1)]


def test_ioba_allocator_lowest_first_and_bounded() -> None:
    a = IobaAllocator(8 * 4096)
    first = a.alloc(3)
    assert first == [0, 0x1000, 0x2000]
    assert a.alloc(6) is None and a.free_pages == 5  # nothing taken on failure
    second = a.alloc(5)
    assert second == [0x3000, 0x4000, 0x5000, 0x6000, 0x7000]
    a.free([0x1000])
    assert a.alloc(1) == [0x1000]
    with pytest.raises(ValueError, match="not allocated"):
        a.free([0x1000, 0x1000])
    with pytest.raises(ValueError, match="whole 4 KiB pages"):
        IobaAllocator(0x1800)


# -- the backend's DMA segments through a real disk -----------------------------------------
def test_disk_moves_segment_data_through_tces(tmp_path: Path) -> None:
    """The backend's DMA plan for a request: a write of sectors 2..7 of one page and 0..3
    of another lands at the right disk offset, a read through other IOBAs brings it back
    into other pages, and an IOBA left without its TCE fails the request with nothing
    changed in memory."""
    mem = MachineMemory(1 << 22)
    table = TceTable(mem, 0x100, 0x200000, 64 * 4096)
    env = simpy.Environment()
    done: list[DiskRequest] = []
    image = DiskImage(tmp_path / "xvda.img", 1 << 20)
    disk = Disk(env, image, DiskParams(100_000, 100_000_000, 4), table, done.append)
    src = [0x10000, 0x11000]
    payload = bytes(random.Random(5).randrange(256) for _ in range(10 * 512))
    mem.write(src[0] + 2 * 512, payload[: 6 * 512])
    mem.write(src[1], payload[6 * 512 :])
    write = _req(BLKIF_OP_WRITE, 40, (2, 7), (0, 3))
    iobas = IobaAllocator(64 * 4096).alloc(2)
    assert iobas is not None
    assert tce_permission(BLKIF_OP_WRITE) == TCE_PAGE_READ  # the disk only reads memory
    for ioba, maddr in zip(iobas, src, strict=True):
        table.put(ioba, maddr | tce_permission(BLKIF_OP_WRITE))
    segs = dma_segments(write.segments, iobas)
    assert segs == [(2 * 512, 6 * 512), (0x1000, 4 * 512)]
    assert disk.submit(DiskRequest(BLKIF_OP_WRITE, write.sector_number, segs))
    env.run()
    assert done[-1].status == 0
    with open(image.path, "rb") as f:
        f.seek(40 * 512)
        assert f.read(10 * 512) == payload
    read = _req(BLKIF_OP_READ, 40, (0, 7), (0, 1))
    dst = [0x20000, 0x21000]
    assert tce_permission(BLKIF_OP_READ) == TCE_PAGE_WRITE
    riobas = [8 * 4096, 9 * 4096]
    for ioba, maddr in zip(riobas, dst, strict=True):
        table.put(ioba, maddr | tce_permission(BLKIF_OP_READ))
    assert disk.submit(DiskRequest(BLKIF_OP_READ, 40, dma_segments(read.segments, riobas)))
    env.run()
    assert done[-1].status == 0
    assert mem.read(dst[0], 4096) + mem.read(dst[1], 1024) == payload
    # The fault-injection case: the first segment's IOBA never got its TCE.
    mem.write(dst[0], bytes(4096))
    table.put(riobas[0], 0)
    assert disk.submit(DiskRequest(BLKIF_OP_READ, 40, dma_segments(read.segments, riobas)))
    env.run()
    assert done[-1].status == -1 and "no TCE" in done[-1].error
    assert mem.read(dst[0], 4096) == bytes(4096) and mem.read(dst[1], 1024) == payload[4096:]
    with pytest.raises(ValueError, match="1 IOBAs for 2 segments"):
        dma_segments(read.segments, riobas[:1])
    image.close()


# -- blockio: parameters, choices, patterns --------------------------------------------------
WL = {
    "device": 51712,
    "pattern": "rand",
    "read-percent": 30,
    "block-size": 4096,
    "queue-depth": 4,
    "requests": 100,
    "verify": 1,
    "region": 1 << 20,
    "seed": 11,
}


def test_params_from_the_workload_dict() -> None:
    p = BlockIoParams.from_workload(WL)
    assert (p.device, p.read_percent, p.queue_depth, p.region, p.seed) == (
        51712,
        30,
        4,
        1 << 20,
        11,
    )
    assert p.verify is True and p.sectors_per_block == 8 and p.pages_per_block == 1
    assert BlockIoParams.from_workload({**WL, "block-size": 6144}).pages_per_block == 2
    for bad, match in (
        ({"pattern": "zigzag"}, "neither 'rand' nor 'seq'"),
        ({"read-percent": 101}, "read-percent 101"),
        ({"block-size": 1000}, "block-size 1000"),
        ({"block-size": 45056 + 512}, "block-size 45568"),
        ({"queue-depth": 33}, "queue-depth 33"),
        ({"colour": 3}, "unknown parameter"),
    ):
        with pytest.raises(ValueError, match=match):
            BlockIoParams.from_workload({**WL, **bad})
    with pytest.raises(TypeError, match="requests = '7'"):
        BlockIoParams.from_workload({**WL, "requests": "7"})


def _plan(domid: int = 1, **over: object) -> BlockIoPlan:
    p = BlockIoParams.from_workload({**WL, **over})
    return BlockIoPlan(p, domid, (p.region or 1 << 20) // p.block_size)


def test_choices_are_deterministic_per_seed_and_domain() -> None:
    def run(plan: BlockIoPlan) -> list[tuple[int, int]]:
        out = []
        for _ in range(50):
            choice = plan.choose()
            assert choice is not None
            out.append(choice)
            plan.finished(choice[0], choice[1], 0, True)
        return out

    a, b = run(_plan()), run(_plan())
    assert a == b
    assert run(_plan(domid=2)) != a
    assert run(_plan(seed=12)) != a
    assert all(0 <= blk < 256 for _op, blk in a)
    reads = sum(op == BLKIF_OP_READ for op, _ in a)
    assert 5 <= reads <= 25  # 30% of 50, loosely
    assert {op for op, _ in run(_plan(**{"read-percent": 100}))} == {BLKIF_OP_READ}
    assert {op for op, _ in run(_plan(**{"read-percent": 0}))} == {BLKIF_OP_WRITE}


def test_sequential_wraps_and_waits_for_its_block() -> None:
    plan = _plan(pattern="seq", region=3 * 4096)
    first = [plan.choose() for _ in range(3)]
    assert [c[1] for c in first if c] == [0, 1, 2]
    assert plan.choose() is None  # block 0 is still in flight: the sequence waits
    plan.finished(BLKIF_OP_READ, 1, 0, True)
    assert plan.choose() is None  # the next block is 0, not the free 1
    plan.finished(BLKIF_OP_READ, 0, 0, True)
    nxt = plan.choose()
    assert nxt is not None and nxt[1] == 0


def test_random_never_puts_two_requests_on_one_block() -> None:
    plan = _plan(region=5 * 4096)
    held = []
    for _ in range(5):
        c = plan.choose()
        assert c is not None
        held.append(c[1])
    assert sorted(held) == [0, 1, 2, 3, 4]
    assert plan.choose() is None  # all five blocks busy
    plan.finished(BLKIF_OP_WRITE, 3, 9, True)
    c = plan.choose()
    assert c is not None and c[1] == 3


def test_written_generations_follow_completed_writes() -> None:
    plan = _plan()
    g1, g2 = plan.new_generation(), plan.new_generation()
    assert g2 == g1 + 1
    plan.in_flight.add(5)
    plan.finished(BLKIF_OP_WRITE, 5, g1, True)
    assert plan.written == {5: g1}
    plan.finished(BLKIF_OP_READ, 5, g1, False)  # a failed read changes nothing
    assert plan.written == {5: g1}
    plan.finished(BLKIF_OP_WRITE, 5, g2, False)  # a failed write: contents unknown
    assert plan.written == {}
    assert 5 not in plan.in_flight


def test_region_must_hold_a_block() -> None:
    p = BlockIoParams.from_workload({**WL, "block-size": 8192, "region": 4096})
    with pytest.raises(ValueError, match="no whole 8192-byte block"):
        BlockIoPlan(p, 1, p.region // p.block_size)


def test_patterns_identify_sector_and_generation() -> None:
    s = sector_pattern(1234, 7)
    assert len(s) == 512 and s[:4] == b"XBLK"
    assert struct.unpack(">4sIQ", s[16:32]) == (b"XBLK", 7, 1234)
    data = block_pattern(1000, 8, 3)
    assert describe_mismatch(data, 1000, 3) is None
    # Stale data (an older generation) in sector 1003.
    stale = data[: 3 * 512] + sector_pattern(1003, 2) + data[4 * 512 :]
    sector, what = describe_mismatch(stale, 1000, 3) or (0, "")
    assert sector == 1003
    assert "expected generation 3" in what and "sector 1003 generation 2" in what
    assert "1 of 8 sectors differ" in what
    # Misplaced data (another sector's) and garbage.
    swapped = block_pattern(2000, 8, 3)
    assert "found the data of sector 2000" in describe_mismatch(swapped, 1000, 3)[1]  # type: ignore[index]
    garbage = bytearray(data)
    garbage[5 * 512 + 100] ^= 0xFF
    sector, what = describe_mismatch(bytes(garbage), 1000, 3) or (0, "")
    assert sector == 1005 and "byte 100" in what and "not a write pattern" in what
    poisoned = b"\xdb" * 4096
    assert "the read poison" in describe_mismatch(poisoned, 1000, 3)[1]  # type: ignore[index]


def test_page_segments_cover_the_block() -> None:
    assert page_segments([0x1000], 4096) == [(0x1000, 0, 7)]
    assert page_segments([0x1000, 0x5000], 6144) == [(0x1000, 0, 7), (0x5000, 0, 3)]
    assert page_segments([0x1000, 0x5000], 512) == [(0x1000, 0, 0)]
    segs = page_segments([0x1000 * i for i in range(1, 12)], 11 * 4096)
    assert len(segs) == 11 and check_segments(BLKIF_OP_READ, segs) == 11 * 4096
    with pytest.raises(ValueError, match="need 2 pages"):
        page_segments([0x1000], 4608)
    with pytest.raises(ValueError, match="whole number of sectors"):
        page_segments([0x1000], 100)


def test_response_status_is_signed_on_the_ring(
    rings: tuple[MachineMemory, FrontRing, BackRing],
) -> None:
    mem, front, back = rings
    front.put_request(build_request(BLKIF_OP_READ, 3, 0, [4], [(0x800000, 0, 7)], 0).pack())
    front.push_requests()
    back.get_request()
    back.put_response(BlkifResponse(3, BLKIF_OP_READ, BLKIF_RSP_EOPNOTSUPP).pack())
    back.push_responses()
    assert mem.read(RING_MADDR + 64 + 10, 2) == b"\xff\xfe"
    assert BlkifResponse.unpack(front.get_response()).status == BLKIF_RSP_EOPNOTSUPP
    assert BLKIF_RSP_OKAY == 0


# -- end to end: a real run, wired the way the simulation wires vbds ------------------------
#
# The tests below boot Xen, dom0 and one guest, give dom0 a disk behind its own TCE table
# (liobn, pirq, window) through the kernel's `hardware` hook, create the vbd's xenstore
# nodes as the toolstack does, start blkback in dom0 and blkfront + blockio in the guest,
# and let the simulation run.
DEVID = 51712  # xvda
LIOBN = 0x100
PIRQ = 20
WINDOW = 1 << 20

BLK_SCENARIO = """
name: blk
seed: 1
duration: {duration}
machine:
  cpus: 2
  memory: 1GiB
dom0:
  memory: 256MiB
domains:
  - name: disk
    memory: 64MiB
"""


class BlkRun:
    """One run with one vbd (domain 1, xvda) and a blockio workload on it."""

    def __init__(
        self,
        image: Path,
        workload: dict[str, object] | None,
        *,
        duration: str = "200ms",
        disk_queue_depth: int = 4,
        mode: str = "w",
        image_bytes: int | None = 4 << 20,
    ) -> None:
        self.sim = Simulation(parse_scenario(BLK_SCENARIO.format(duration=duration), "blk"))
        xen = self.sim.xen
        self.table = create_tce_table(xen, xen.domains[0], LIOBN, WINDOW)
        self.image = DiskImage(image, image_bytes, writable=mode == "w")

        def on_complete(req: DiskRequest) -> None:
            disk_completion(req)
            xen.device_interrupt(PIRQ)

        self.disk = Disk(
            self.sim.env,
            self.image,
            DiskParams(100_000, 100_000_000, disk_queue_depth),
            self.table,
            on_complete,
            self.sim.rec,
            dom=1,
        )
        hw = _Vbd(self.disk, LIOBN, PIRQ, WINDOW)
        self.sim.guests.hardware = _Hardware({(1, DEVID): hw})
        self.back: BlkBack | None = None
        self.front: BlkFront | None = None
        self.io: BlockIo | None = None
        self.connected: list[Callable[[Core], None]] = []

        def backend_start(k: GuestKernel, core: Core) -> None:
            self.back = BlkBack(k)
            self.back.start(core)
            assert k.xenbus is not None
            create_device(
                core, k.xenbus, "vbd", 1, DEVID, {"params": str(image), "mode": mode},
                {"virtual-device": str(DEVID)}, lambda _c, err: None,
            )  # fmt: skip

        def frontend_probe(k: GuestKernel, core: Core) -> None:
            self.front = BlkFront(k, DEVID, f"device/vbd/{DEVID}")
            if workload is not None:
                self.io = BlockIo(k, self.front, {"device": DEVID, **workload})
            for cb in self.connected:
                self.front.when_connected(cb)
            self.front.start(core)

        self.sim.guests.backend_start = backend_start
        self.sim.guests.frontend_probe = frontend_probe

    def run(self) -> pd.DataFrame:
        self.sim.run()
        return self.sim.rec.to_dataframe().xen.wide()

    @property
    def device(self) -> BlkBackDevice:
        assert self.back is not None
        return self.back.device(1, DEVID)


@dataclass
class _Vbd:
    disk: Disk
    liobn: int
    pirq: int
    window_bytes: int


@dataclass
class _Hardware:
    vbds: dict[tuple[int, int], _Vbd]

    def vbd_backend(self, domid: int, devid: int) -> _Vbd:
        return self.vbds[(domid, devid)]


MIXED = {
    "pattern": "rand",
    "read-percent": 50,
    "block-size": 8192,
    "queue-depth": 8,
    "requests": 300,
    "verify": 1,
    "region": 256 * 1024,
    "seed": 7,
}


def _states(df: pd.DataFrame, dom: int) -> list[int]:
    rows = df[(df.kind == "xenbus.state") & (df.dom == dom)]
    return [int(s) for s in rows.xb_state]


def test_end_to_end_handshake_io_and_teardown(tmp_path: Path) -> None:
    run = BlkRun(tmp_path / "xvda.img", MIXED)
    df = run.run()
    io, front = run.io, run.front
    assert io is not None and front is not None
    # The handshake both ways, then the close when the workload is done.
    assert _states(df, 0) == [2, 4, 6]  # InitWait, Connected, Closed
    assert _states(df, 1) == [3, 4, 5, 6]  # Initialised, Connected, Closing, Closed
    assert front.sectors == (4 << 20) // 512 and not front.read_only
    # Every request done, none failed; reads of written blocks were checked and matched.
    assert (io.issued, io.completed, io.errors, io.verify_failures) == (300, 300, 0, 0)
    assert io.unverified_reads < 150 and io.bytes == 300 * 8192
    assert len(df[df.kind == "blk.submit"]) == len(df[df.kind == "blk.complete"]) == 300
    assert (df[df.kind == "blk.complete"].status == 0).all()
    assert len(df[df.kind == "disk.done"]) == 300
    marks = df[(df.kind == "guest.mark") & (df.text == "blockio.done")]
    assert list(marks.value) == [300]
    # What the disk holds is what the guest last wrote there, byte for byte (through DMA).
    assert io.plan is not None and io.plan.written
    with open(run.image.path, "rb") as f:
        for block, gen in io.plan.written.items():
            f.seek(block * 8192)
            assert f.read(8192) == block_pattern(block * 16, 16, gen)
    # Nothing left behind: every grant ended, every TCE cleared, every page back.
    maps = df[df.kind == "gnttab.map"]
    unmaps = df[df.kind == "gnttab.unmap"]
    assert (maps.status == 0).all() and (unmaps.status == 0).all()
    guest_maps = maps[maps.remote_dom == 1]
    assert len(guest_maps) - 2 == len(unmaps[unmaps.remote_dom == 1]) == 1 + 300 * 2
    assert front.busy_refs == []
    # The guest's grant table in machine memory: every entry but the two reserved ones
    # (console, xenstore) has been ended.
    dom1 = run.sim.xen.domains[1]
    mem = run.sim.machine.memory
    live = [
        ref
        for ref in range(NR_GRANT_ENTRIES)
        if mem.read_u16(entry_maddr(dom1, ref) + GRANT_ENTRY.offset("flags"))
    ]
    assert live == [0, 1]
    tces = df[df.kind == "tce.put"]
    assert (tces.mfn != 0).sum() == (tces.mfn == 0).sum() == 600
    assert all(run.table.get(i * 4096) == 0 for i in range(WINDOW // 4096))
    assert front.k.pool is not None and front.k.pool.in_use == 0
    assert run.device.ring is None and run.device.in_flight == 0


def test_end_to_end_latency_follows_the_disk(tmp_path: Path) -> None:
    """With 8 requests in flight on a 4-deep disk that takes 100 us + 8 KiB at 100 MB/s
    each, Little's law puts the mean latency near 8 service times."""
    run = BlkRun(tmp_path / "xvda.img", {**MIXED, "requests": 200})
    df = run.run()
    lat = df[df.kind == "blk.complete"].latency_ns
    service = DiskParams(100_000, 100_000_000).service_ns(8192)
    assert 7 * service < lat.mean() < 9 * service
    assert lat.min() >= service


def test_end_to_end_dma_to_an_unmapped_tce_is_an_io_error(tmp_path: Path) -> None:
    run = BlkRun(tmp_path / "xvda.img", {**MIXED, "requests": 40})

    def arm(_core: Core) -> None:
        run.device.fault_skip_tce_once = True

    run.connected.append(arm)
    df = run.run()
    io = run.io
    assert io is not None
    faults = df[df.kind == "dma.fault"]
    assert len(faults) == 1 and faults.iloc[0].liobn == LIOBN
    assert "no TCE" in faults.iloc[0].text
    done = df[df.kind == "blk.complete"]
    assert list(done.status).count(-1) == 1 and len(done) == 40
    assert (io.errors, io.completed, io.verify_failures) == (1, 40, 0)
    assert run.device.error_responses == 1 and not run.device.fault_skip_tce_once


def test_end_to_end_corruption_is_caught(tmp_path: Path) -> None:
    """Zero the image in the middle of the run (behind the guest's back): later reads of
    blocks written before that must be reported, and nothing is reported before."""
    run = BlkRun(
        tmp_path / "xvda.img",
        {**MIXED, "requests": 0, "region": 16 * 8192, "queue-depth": 4},
        duration="40ms",
    )
    at = 20_000_000

    def corrupt(_ev: object) -> None:
        with open(run.image.path, "r+b") as f:
            f.write(bytes(16 * 8192))

    run.sim.env.timeout(at).callbacks.append(corrupt)
    df = run.run()
    io = run.io
    assert io is not None
    bad = df[df.kind == "blk.verify"]
    assert io.verify_failures == len(bad) > 0
    assert (bad.t_ns >= at).all()
    assert bad.iloc[0].text.endswith("differ") and "byte 0 is 0x00" in bad.iloc[0].text


def test_end_to_end_ring_full_queues_in_the_frontend(tmp_path: Path) -> None:
    """40 one-page writes at once on a 32-slot ring with a 1-deep disk: the ring fills
    (recorded once), the rest wait in the frontend, and every one completes, in order."""
    run = BlkRun(tmp_path / "xvda.img", None, disk_queue_depth=1)
    results: list[tuple[int, int]] = []

    def burst(core: Core) -> None:
        front = run.front
        assert front is not None and front.k.pool is not None
        for i in range(40):
            gpa = front.k.pool.alloc()
            KernelMemory(core).write(gpa, sector_pattern(i * 8, i + 1) * 8)
            front.submit(
                core, BLKIF_OP_WRITE, i * 8, [(gpa, 0, 7)],
                lambda _c, status, req: results.append((req.id, status)),
            )  # fmt: skip
        assert len(front.outstanding) == 32 and len(front.queue) == 8

    run.connected.append(burst)
    df = run.run()
    assert results == [(i, 0) for i in range(40)]
    full = df[df.kind == "ring.full"]
    assert len(full) == 1 and full.iloc[0].dev == DEVID
    with open(run.image.path, "rb") as f:
        for i in range(40):
            f.seek(i * 8 * 512)
            assert f.read(512) == sector_pattern(i * 8, i + 1)


def test_end_to_end_read_only_vbd(tmp_path: Path) -> None:
    image = tmp_path / "ro.img"
    with open(image, "wb") as f:
        f.truncate(1 << 20)
        f.seek(512)
        f.write(b"label")
    run = BlkRun(image, None, mode="r", image_bytes=None)
    seen: list[bytes] = []
    refused: list[str] = []

    def use(core: Core) -> None:
        front = run.front
        assert front is not None and front.k.pool is not None
        assert front.read_only and front.sectors == 2048
        gpa = front.k.pool.alloc()
        try:
            front.submit(core, BLKIF_OP_WRITE, 0, [(gpa, 0, 0)], lambda *_a: None)
        except BlkfrontError as e:
            refused.append(str(e))
        front.submit(
            core, BLKIF_OP_READ, 0, [(gpa, 0, 1)],
            lambda c, _s, _r: seen.append(KernelMemory(c).read(gpa + 512, 5)),
        )  # fmt: skip

    run.connected.append(use)
    run.run()
    assert seen == [b"label"]
    assert refused and "read-only" in refused[0]
    assert run.device.writable is False


def test_end_to_end_runs_are_deterministic(tmp_path: Path) -> None:
    cols = ["t_ns", "kind", "dom", "dev", "req_id", "sector", "bytes", "status", "latency_ns"]
    frames = []
    for name in ("a.img", "b.img"):
        run = BlkRun(tmp_path / name, {**MIXED, "requests": 100})
        df = run.run()
        frames.append(df[df.kind.astype(str).str.startswith("blk.")][cols].reset_index(drop=True))
    assert frames[0].equals(frames[1])
