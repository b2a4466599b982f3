"""The disk model: a sparse image file behind one actuator that DMAs through a TCE table.

Timing is the textbook single-server disk: a request of n bytes takes a fixed latency
(seek + rotation + controller) plus n / bandwidth, requests are served first come first
served one at a time, and at most `queue_depth` may be outstanding (the controller's
command queue). All of it is integer nanoseconds, so runs are reproducible.

Data is real: a write fetches guest memory through the IOMMU and stores it in the image
file with ``os.pwrite``; a read does the reverse. The whole request (every segment's
translation, then every byte) happens at the instant its service ends, after every check
passes, so a refused DMA or a bad sector leaves both memory and file untouched.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Self

import simpy

from framework.errors import DmaFault
from framework.hw970.iommu import TceTable
from framework.hw970.params import DISK_BANDWIDTH_BYTES_PER_S, DISK_LATENCY_NS, DISK_QUEUE_DEPTH
from framework.sim_events import timeout
from framework.trace.ids import K
from framework.trace.recorder import Recorder

__all__ = [
    "BLKIF_OP_FLUSH_DISKCACHE",
    "BLKIF_OP_READ",
    "BLKIF_OP_WRITE",
    "OP_NAMES",
    "SECTOR_SIZE",
    "STATUS_ERROR",
    "STATUS_OKAY",
    "Disk",
    "DiskImage",
    "DiskParams",
    "DiskRequest",
]

SECTOR_SIZE: Final = 512
# Operation codes as blkif numbers them (xen/include/public/io/blkif.h).
BLKIF_OP_READ = 0
BLKIF_OP_WRITE = 1
BLKIF_OP_FLUSH_DISKCACHE = 3
OP_NAMES: dict[int, str] = {
    BLKIF_OP_READ: "read",
    BLKIF_OP_WRITE: "write",
    BLKIF_OP_FLUSH_DISKCACHE: "flush",
}
# Completion status, as BLKIF_RSP_OKAY / BLKIF_RSP_ERROR.
STATUS_OKAY: Final = 0
STATUS_ERROR: Final = -1


@dataclass(frozen=True, slots=True)
class DiskParams:
    """What one disk costs: per-request latency (ns), bandwidth (bytes/s), queue depth.

    The defaults are the documented machine defaults (params.py).
    """

    latency_ns: int = DISK_LATENCY_NS
    bandwidth_bps: int = DISK_BANDWIDTH_BYTES_PER_S  # bytes per second
    queue_depth: int = DISK_QUEUE_DEPTH

    def __post_init__(self) -> None:
        if self.latency_ns < 0:
            raise ValueError(f"disk latency_ns {self.latency_ns} is negative")
        if self.bandwidth_bps <= 0:
            raise ValueError(f"disk bandwidth_bps {self.bandwidth_bps} must be positive")
        if self.queue_depth < 1:
            raise ValueError(f"disk queue_depth {self.queue_depth} must be at least 1")

    def service_ns(self, nbytes: int) -> int:
        """latency + ceil(nbytes / bandwidth) in ns, integer arithmetic throughout."""
        if nbytes < 0:
            raise ValueError(f"request size {nbytes} is negative")
        return self.latency_ns + -(-nbytes * 1_000_000_000 // self.bandwidth_bps)

    def analytic_throughput(self, nbytes: int) -> float:
        """Bytes/s with one request of `nbytes` always outstanding (queue depth 1)."""
        if nbytes <= 0:
            raise ValueError(f"throughput of {nbytes}-byte requests: size must be positive")
        return nbytes * 1e9 / self.service_ns(nbytes)


class DiskImage:
    """A disk image file: sparse when created, used as is when it exists.

    A new file is sized with ftruncate (a hole, no data blocks), and removed again if its
    file system refuses that size; with `size_bytes` None an existing file is required
    (never created). An existing file is never truncated, and only the sectors guests
    write change (none unless `writable`).
    """

    def __init__(self, path: str | Path, size_bytes: int | None, writable: bool = True) -> None:
        self.path = Path(path)
        self.writable = writable
        if size_bytes is not None and (size_bytes <= 0 or size_bytes % SECTOR_SIZE):
            raise ValueError(
                f"disk image {self.path}: size {size_bytes} is not a positive multiple of "
                f"{SECTOR_SIZE} bytes"
            )
        flags = os.O_RDWR if writable else os.O_RDONLY
        if self.path.exists():
            actual = self.path.stat().st_size
            if size_bytes is not None and actual != size_bytes:
                raise ValueError(
                    f"disk image {self.path} exists with {actual} bytes but {size_bytes} "
                    "bytes were asked for (an existing image is never resized)"
                )
            if actual == 0 or actual % SECTOR_SIZE:
                raise ValueError(
                    f"disk image {self.path} has {actual} bytes: not a positive multiple of "
                    f"{SECTOR_SIZE}"
                )
            self._fd = os.open(self.path, flags)
            self.size_bytes = actual
        else:
            if size_bytes is None:
                raise ValueError(f"disk image {self.path} does not exist and no size was given")
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.ftruncate(fd, size_bytes)
            except OSError:
                os.unlink(self.path)  # a file too large for its file system: leave none
                raise
            finally:
                os.close(fd)
            self._fd = os.open(self.path, flags)
            self.size_bytes = size_bytes

    def __repr__(self) -> str:
        mode = "w" if self.writable else "r"
        return f"DiskImage({str(self.path)!r}, {self.size_bytes}, {mode})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def sectors(self) -> int:
        return self.size_bytes // SECTOR_SIZE

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def range_error(self, sector: int, nbytes: int) -> str | None:
        """Why (sector, nbytes) is not a valid transfer on this image, or None if it is."""
        if nbytes <= 0 or nbytes % SECTOR_SIZE:
            return f"{nbytes} bytes is not a positive whole number of {SECTOR_SIZE}-byte sectors"
        if sector < 0 or sector * SECTOR_SIZE + nbytes > self.size_bytes:
            return (
                f"sectors {sector}..{sector + nbytes // SECTOR_SIZE - 1} lie outside the "
                f"image's {self.sectors} sectors"
            )
        return None

    def _check(self, sector: int, nbytes: int) -> None:
        if self.closed:
            raise ValueError(f"disk image {self.path} is closed")
        why = self.range_error(sector, nbytes)
        if why is not None:
            raise ValueError(f"disk image {self.path}: {why}")

    def read(self, sector: int, nbytes: int) -> bytes:
        self._check(sector, nbytes)
        data = os.pread(self._fd, nbytes, sector * SECTOR_SIZE)
        if len(data) != nbytes:
            raise OSError(
                f"disk image {self.path}: short read of {len(data)}/{nbytes} bytes at "
                f"sector {sector} (was the file truncated underneath us?)"
            )
        return data

    def write(self, sector: int, data: bytes | bytearray | memoryview) -> None:
        if not self.writable:
            raise PermissionError(f"disk image {self.path} is read-only: write refused")
        self._check(sector, len(data))
        view = memoryview(data)
        offset = sector * SECTOR_SIZE
        while view:
            n = os.pwrite(self._fd, view, offset)
            view, offset = view[n:], offset + n

    def flush(self) -> None:
        """Make written data durable in the host file (fdatasync)."""
        if self.closed:
            raise ValueError(f"disk image {self.path} is closed")
        if self.writable:
            os.fdatasync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


@dataclass(eq=False)
class DiskRequest:
    """One command: op (BLKIF_OP_*), first sector, DMA segments (ioba, nbytes), a tag.

    The disk fills `status` (0 okay, -1 error), `error` and the timestamps.
    """

    op: int
    sector: int
    segments: list[tuple[int, int]] = field(default_factory=list)
    tag: Any = None
    status: int = STATUS_OKAY
    error: str = ""
    submit_ns: int = -1
    start_ns: int = -1
    done_ns: int = -1

    @property
    def nbytes(self) -> int:
        return sum(n for _ioba, n in self.segments)

    @property
    def op_name(self) -> str:
        return OP_NAMES.get(self.op, f"op{self.op}")

    @property
    def service_ns(self) -> int:
        """Time the disk spent on it (start to completion); -1 until it completes."""
        return self.done_ns - self.start_ns if self.done_ns >= 0 else -1


class Disk:
    """One disk: FIFO, one request served at a time, at most `queue_depth` outstanding.

    Times are known at submission (the server is FIFO and busy-until is tracked), so each
    request is one SimPy timeout at its completion instant; events at the same instant fire
    in submission order, which keeps completions FIFO.
    """

    def __init__(
        self,
        env: simpy.Environment,
        image: DiskImage,
        params: DiskParams,
        iommu: TceTable,
        on_complete: Callable[[DiskRequest], None],
        rec: Recorder | None = None,
        dom: int = -1,
    ) -> None:
        self.env = env
        self.image = image
        self.params = params
        self.iommu = iommu
        self.on_complete = on_complete
        self._emit = rec.emit if rec is not None else None
        self.dom = dom
        self.outstanding = 0
        self._free_at = 0  # when the actuator finishes the last accepted request
        # Counters for analysis and tests.
        self.completed = 0
        self.errors = 0
        self.bytes_read = 0
        self.bytes_written = 0
        self.busy_ns = 0

    def submit(self, req: DiskRequest, now_ns: int | None = None) -> bool:
        """Queue `req`; False (nothing queued) when `queue_depth` requests are outstanding.

        `now_ns` is the instant of submission when it is ahead of the SimPy clock (a
        backend running inside a CPU slice); the disk never starts a request before it.
        """
        if self.outstanding >= self.params.queue_depth:
            return False
        clock = int(self.env.now)
        now = clock if now_ns is None else max(now_ns, clock)
        req.status, req.error = STATUS_OKAY, ""
        req.submit_ns = now
        req.start_ns = max(now, self._free_at)
        why = self._static_error(req)
        if why is None:
            cost = self.params.service_ns(req.nbytes)
        else:
            req.status, req.error = STATUS_ERROR, why
            cost = 0  # the controller rejects the command without moving the actuator
        done = req.start_ns + cost
        self._free_at = done
        self.busy_ns += cost
        self.outstanding += 1
        ev = timeout(self.env, done - clock)
        ev.callbacks.append(lambda _e: self._complete(req, done))
        return True

    def _static_error(self, req: DiskRequest) -> str | None:
        """What makes the command invalid whatever memory holds; None if nothing."""
        if req.op not in OP_NAMES:
            return f"unknown operation {req.op}"
        if req.op == BLKIF_OP_FLUSH_DISKCACHE:
            return "a flush carries no data segments" if req.segments else None
        if not req.segments:
            return f"a {req.op_name} needs at least one data segment"
        for ioba, n in req.segments:
            if n <= 0 or n % SECTOR_SIZE:
                return f"segment at ioba {ioba:#x} of {n} bytes is not whole sectors"
        if req.op == BLKIF_OP_WRITE and not self.image.writable:
            return f"disk image {self.image.path} is read-only"
        return self.image.range_error(req.sector, req.nbytes)

    def _complete(self, req: DiskRequest, done: int) -> None:
        if req.status == STATUS_OKAY:
            self._transfer(req)
        req.done_ns = done
        self.outstanding -= 1
        self.completed += 1
        if req.status != STATUS_OKAY:
            self.errors += 1
        elif req.op == BLKIF_OP_READ:
            self.bytes_read += req.nbytes
        elif req.op == BLKIF_OP_WRITE:
            self.bytes_written += req.nbytes
        if self._emit is not None:
            self._emit(
                K.DISK_DONE,
                done,
                -1,
                self.dom,
                -1,
                req.sector,
                req.nbytes,
                req.service_ns,
                req.status,
                text=req.op_name,
            )
        self.on_complete(req)

    def _transfer(self, req: DiskRequest) -> None:
        """Translate every segment, then move the data; a fault moves nothing."""
        if req.op == BLKIF_OP_FLUSH_DISKCACHE:
            self.image.flush()
            return
        to_memory = req.op == BLKIF_OP_READ
        try:
            plan = [self.iommu.translate(ioba, n, write=to_memory) for ioba, n in req.segments]
        except DmaFault as fault:
            req.status, req.error = STATUS_ERROR, str(fault)
            if self._emit is not None:
                self._emit(
                    K.DMA_FAULT,
                    int(self.env.now),
                    -1,
                    self.dom,
                    -1,
                    fault.liobn,
                    fault.ioba,
                    text=fault.reason,
                )
            return
        memory = self.iommu.memory
        pieces = [p for seg in plan for p in seg]
        if to_memory:
            data = memoryview(self.image.read(req.sector, req.nbytes))
            off = 0
            for maddr, n in pieces:
                memory.write(maddr, data[off : off + n])
                off += n
        else:
            self.image.write(req.sector, b"".join(memory.read(maddr, n) for maddr, n in pieces))
