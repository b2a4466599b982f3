"""The disk model: sparse image files, DMA through TCEs, FIFO timing, queue depth, errors."""

from __future__ import annotations

import os
import resource
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import simpy

from framework.hw970.disk import (
    BLKIF_OP_FLUSH_DISKCACHE,
    BLKIF_OP_READ,
    BLKIF_OP_WRITE,
    STATUS_ERROR,
    STATUS_OKAY,
    Disk,
    DiskImage,
    DiskParams,
    DiskRequest,
)
from framework.hw970.iommu import TCE_PAGE_READ, TCE_PAGE_WRITE, TceTable
from framework.hw970.memory import MachineMemory
from framework.trace.ids import K
from framework.trace.recorder import Recorder

RW = TCE_PAGE_READ | TCE_PAGE_WRITE
PARAMS = DiskParams(latency_ns=100_000, bandwidth_bps=50_000_000, queue_depth=4)
IMAGE_BYTES = 16 << 20


class Rig:
    """A machine memory, a TCE table mapping iobas 0..63 pages, a disk and its log."""

    def __init__(self, image: DiskImage, params: DiskParams = PARAMS) -> None:
        self.env = simpy.Environment()
        self.mem = MachineMemory(8 << 20)
        self.tces = TceTable(self.mem, 0x11, 0x10000, 1 << 20)
        for page in range(64):  # ioba page p -> machine frame 0x200 + 2p (not contiguous)
            self.tces.put(page << 12, ((0x200 + 2 * page) << 12) | RW)
        self.rec = Recorder()
        self.done: list[DiskRequest] = []
        self.image = image
        self.disk = Disk(self.env, self.image, params, self.tces, self.done.append, self.rec, 3)

    def maddr(self, ioba: int) -> int:
        return ((0x200 + 2 * (ioba >> 12)) << 12) + (ioba & 0xFFF)

    def run(self) -> None:
        self.env.run()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    with DiskImage(tmp_path / "disk.img", IMAGE_BYTES) as image:
        yield Rig(image)


def test_service_time_formula_is_integer_and_rounds_up() -> None:
    p = DiskParams(latency_ns=7, bandwidth_bps=3, queue_depth=1)
    assert p.service_ns(1) == 7 + 333_333_334  # ceil(1e9 / 3)
    assert p.service_ns(3) == 7 + 1_000_000_000
    assert PARAMS.service_ns(4096) == 100_000 + 81_920
    assert PARAMS.analytic_throughput(4096) == pytest.approx(4096 / 181_920e-9)
    with pytest.raises(ValueError, match="bandwidth_bps"):
        DiskParams(latency_ns=1, bandwidth_bps=0)


def test_new_image_is_a_sparse_file_of_the_given_size(rig: Rig, tmp_path: Path) -> None:
    st = os.stat(tmp_path / "disk.img")
    assert st.st_size == IMAGE_BYTES
    assert st.st_blocks * 512 < 1 << 20  # a hole, not 16 MiB of zeros
    assert rig.image.sectors == IMAGE_BYTES // 512


def test_an_image_its_file_system_cannot_hold_leaves_no_file(tmp_path: Path) -> None:
    """Issue 14: a size the file system refuses (EFBIG, here from a file-size limit) used
    to leave an empty image behind; a missing image is never created without a size."""
    path = tmp_path / "big.img"
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (IMAGE_BYTES, old_limit[1]))
    try:
        with pytest.raises(OSError, match="File too large"):
            DiskImage(path, 2 * IMAGE_BYTES)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    assert not path.exists()
    with pytest.raises(ValueError, match="does not exist and no size was given"):
        DiskImage(path, None)
    assert not path.exists()


def test_dma_write_lands_in_the_file_and_reads_back_through_other_iobas(
    rig: Rig, tmp_path: Path
) -> None:
    data = bytes((i * 7) & 0xFF for i in range(0x2000))
    rig.mem.write(rig.maddr(0x0000), data[:0x1000])
    rig.mem.write(rig.maddr(0x1000), data[0x1000:])
    sector = 1000
    w = DiskRequest(BLKIF_OP_WRITE, sector, [(0x0000, 0x1000), (0x1000, 0x1000)], tag="w")
    assert rig.disk.submit(w)
    rig.run()
    assert rig.done == [w] and w.status == STATUS_OKAY and w.error == ""
    with open(tmp_path / "disk.img", "rb") as f:
        f.seek(sector * 512)
        assert f.read(0x2000) == data
        f.seek(sector * 512 - 512)
        assert f.read(512) == bytes(512)  # nothing before it changed
    # Read it back into different pages (iobas 0x10000.., split at other boundaries).
    r = DiskRequest(BLKIF_OP_READ, sector, [(0x10000, 0x1800), (0x20000, 0x800)], tag="r")
    assert rig.disk.submit(r)
    rig.run()
    assert r.status == STATUS_OKAY
    got = rig.mem.read(rig.maddr(0x10000), 0x1000) + rig.mem.read(rig.maddr(0x11000), 0x800)
    assert got + rig.mem.read(rig.maddr(0x20000), 0x800) == data
    assert (rig.disk.bytes_written, rig.disk.bytes_read) == (0x2000, 0x2000)


def test_unmapped_ioba_fails_the_request_and_changes_nothing(rig: Rig, tmp_path: Path) -> None:
    rig.mem.write(rig.maddr(0x0000), b"\x55" * 0x1000)
    rig.image.write(50, b"\x66" * 0x2000)
    before_file = (tmp_path / "disk.img").read_bytes()
    # A read into a mapped page and then an unmapped one (0x40 pages is outside the map).
    read = DiskRequest(BLKIF_OP_READ, 50, [(0x0000, 0x1000), (0x40000, 0x1000)])
    # A write whose second segment the device may not read (write-only TCE).
    rig.tces.put(0x5000, (0x300 << 12) | TCE_PAGE_WRITE)
    write = DiskRequest(BLKIF_OP_WRITE, 50, [(0x0000, 0x1000), (0x5000, 0x1000)])
    assert rig.disk.submit(read) and rig.disk.submit(write)
    rig.run()
    assert read.status == STATUS_ERROR and "no TCE maps this page" in read.error
    assert write.status == STATUS_ERROR and "does not allow the read" in write.error
    assert rig.mem.read(rig.maddr(0x0000), 0x1000) == b"\x55" * 0x1000
    assert (tmp_path / "disk.img").read_bytes() == before_file
    faults = [r for r in rig.rec.records if r[0] == K.DMA_FAULT]
    assert [(r[3], r[5], r[6]) for r in faults] == [(3, 0x11, 0x40000), (3, 0x11, 0x5000)]
    done = [r for r in rig.rec.records if r[0] == K.DISK_DONE]
    assert [r[8] for r in done] == [STATUS_ERROR, STATUS_ERROR]
    assert rig.disk.errors == 2


def test_bad_sector_range_is_rejected_without_service_time(rig: Rig) -> None:
    last = rig.image.sectors - 1
    r = DiskRequest(BLKIF_OP_READ, last, [(0x0000, 0x1000)])
    assert rig.disk.submit(r)
    rig.run()
    assert r.status == STATUS_ERROR and "outside the image" in r.error
    assert r.service_ns == 0 and r.done_ns == 0
    odd = DiskRequest(BLKIF_OP_READ, 0, [(0x0000, 100)])
    assert rig.disk.submit(odd)
    rig.run()
    assert odd.status == STATUS_ERROR and "whole sectors" in odd.error


def test_queue_depth_limits_outstanding_requests(rig: Rig) -> None:
    reqs = [DiskRequest(BLKIF_OP_READ, 8 * i, [(i << 12, 4096)]) for i in range(5)]
    accepted = [rig.disk.submit(r) for r in reqs]
    assert accepted == [True, True, True, True, False]
    assert rig.disk.outstanding == 4
    rig.env.run(until=PARAMS.service_ns(4096) + 1)  # the first completes
    assert rig.disk.outstanding == 3
    assert rig.disk.submit(reqs[4])
    rig.run()
    assert rig.done == reqs and rig.disk.outstanding == 0


def test_fifo_service_times_follow_the_formula(rig: Rig) -> None:
    sizes = [4096, 512, 0x3000, 1024]
    reqs = [DiskRequest(BLKIF_OP_READ, 100 * i, [(i << 16, n)]) for i, n in enumerate(sizes)]
    for r in reqs:
        assert rig.disk.submit(r)
    rig.run()
    assert rig.done == reqs
    t = 0
    for r, n in zip(reqs, sizes, strict=True):
        assert r.start_ns == t
        t += PARAMS.service_ns(n)
        assert r.done_ns == t and r.service_ns == PARAMS.service_ns(n)
    done = [r for r in rig.rec.records if r[0] == K.DISK_DONE]
    assert [(rec[1], rec[5], rec[6], rec[7]) for rec in done] == [
        (r.done_ns, r.sector, r.nbytes, r.service_ns) for r in reqs
    ]
    assert {rec[9] for rec in done} == {"read"}
    assert rig.disk.busy_ns == t


def test_submission_ahead_of_the_clock_starts_no_earlier(rig: Rig) -> None:
    r = DiskRequest(BLKIF_OP_READ, 0, [(0, 512)])
    assert rig.disk.submit(r, now_ns=5_000)
    rig.run()
    assert (r.submit_ns, r.start_ns, r.done_ns) == (5_000, 5_000, 5_000 + PARAMS.service_ns(512))


def test_qd1_sequential_throughput_equals_the_analytic_value(rig: Rig) -> None:
    size, count = 0x4000, 40

    def next_request(prev: DiskRequest | None) -> None:
        n = 0 if prev is None else prev.tag + 1
        if n < count:
            req = DiskRequest(BLKIF_OP_WRITE, n * size // 512, [(0, size)], tag=n)
            assert rig.disk.submit(req)

    rig.disk.on_complete = next_request
    next_request(None)
    rig.run()
    assert rig.disk.completed == count
    measured = count * size * 1e9 / rig.env.now
    assert measured == pytest.approx(PARAMS.analytic_throughput(size), rel=1e-12)


def test_flush_costs_latency_only(rig: Rig) -> None:
    f = DiskRequest(BLKIF_OP_FLUSH_DISKCACHE, 0, [])
    assert rig.disk.submit(f)
    rig.run()
    assert f.status == STATUS_OKAY and f.done_ns == PARAMS.latency_ns
    bad = DiskRequest(BLKIF_OP_FLUSH_DISKCACHE, 0, [(0, 512)])
    rig.disk.submit(bad)
    rig.run()
    assert bad.status == STATUS_ERROR and "no data segments" in bad.error


def test_existing_image_is_used_as_is_and_never_truncated(tmp_path: Path) -> None:
    path = tmp_path / "old.img"
    content = bytes(range(256)) * 16  # 4 KiB
    path.write_bytes(content)
    with DiskImage(path, None) as img:
        assert img.size_bytes == 4096
        assert img.read(2, 512) == content[1024:1536]
        img.write(1, b"\x01" * 512)
    assert path.stat().st_size == 4096
    assert path.read_bytes() == content[:512] + b"\x01" * 512 + content[1024:]
    with pytest.raises(ValueError, match="exists with 4096 bytes but 8192"):
        DiskImage(path, 8192)
    assert path.stat().st_size == 4096
    with pytest.raises(ValueError, match="outside the image"):
        DiskImage(path, 4096).read(7, 1024)


def test_image_arguments_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="multiple of 512"):
        DiskImage(tmp_path / "a.img", 1000)
    with pytest.raises(ValueError, match="no size was given"):
        DiskImage(tmp_path / "b.img", None)
    (tmp_path / "c.img").write_bytes(b"x" * 700)
    with pytest.raises(ValueError, match="700 bytes"):
        DiskImage(tmp_path / "c.img", None)


def test_read_only_image_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "ro.img"
    path.write_bytes(b"\x22" * 8192)
    rig = Rig(DiskImage(path, None, writable=False))
    with pytest.raises(PermissionError, match="read-only"):
        rig.image.write(0, b"\x00" * 512)
    w = DiskRequest(BLKIF_OP_WRITE, 0, [(0, 512)])
    r = DiskRequest(BLKIF_OP_READ, 0, [(0, 512)])
    assert rig.disk.submit(w) and rig.disk.submit(r)
    rig.run()
    assert w.status == STATUS_ERROR and "read-only" in w.error
    assert r.status == STATUS_OKAY and rig.mem.read(rig.maddr(0), 512) == b"\x22" * 512
    assert path.read_bytes() == b"\x22" * 8192
    rig.image.close()
