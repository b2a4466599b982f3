"""The block split driver: request construction and validation on a real blkif ring in
machine memory, the backend's checks and IOBA allocation, a disk serving the backend's
DMA segments through a real TCE table, and the blockio workload's choices and checks."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest
import simpy

from framework.guest.blkback import IobaAllocator, dma_segments, request_problem, tce_permission
from framework.guest.blkfront import (
    BlkfrontError,
    build_request,
    check_segments,
)
from framework.guest.blockio import (
    BlockIoParams,
    BlockIoPlan,
    block_pattern,
    describe_mismatch,
    page_segments,
    sector_pattern,
)
from framework.guest.ring import BackRing, FrontRing, SharedRing
from framework.hw970.disk import Disk, DiskImage, DiskParams, DiskRequest
from framework.hw970.iommu import TCE_PAGE_READ, TCE_PAGE_WRITE, TceTable
from framework.hw970.memory import MachineMemory
from framework.xen.ioabi import (
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
    BlkifRequestError,
    BlkifResponse,
    BlkifSegment,
)

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
