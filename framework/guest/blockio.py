"""The `blockio` workload: block reads and writes through a blkfront, checked end to end.

It keeps `queue-depth` requests outstanding on one vbd, choosing each request's operation
and block from a PRNG seeded with (seed, domain id), so a run is reproducible. Writes fill
their buffer with a pattern derived from (sector, write generation); the workload
remembers, per block, the generation of the last write that completed, and a later read
of that block must return exactly that pattern. Two requests to one block are never in
flight together, so "the last completed write" is well defined. Blocks never written in
this run (their contents are whatever the image held) are read but counted as unverified.

The pure parts (`BlockIoParams`, `BlockIoPlan`, the patterns) need no kernel, so they are
unit-testable on their own; `BlockIo` drives them with real pages and a real blkfront.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from framework.hw970.core import Core
from framework.hw970.memory import PAGE_SIZE
from framework.trace.ids import K
from framework.xen.public.io.blkif import (
    BLKIF_MAX_SEGMENTS_PER_REQUEST,
    BLKIF_OP_READ,
    BLKIF_OP_WRITE,
    BLKIF_RING_SIZE,
    BLKIF_RSP_OKAY,
    BLKIF_SECTOR_SIZE,
    BLKIF_SECTORS_PER_PAGE,
)

from .blkfront import BlkFront, BlkRequest, DoneCallback, PageSegment
from .costs import BYTES_PER_CYCLE, NATIVE_ROUTINE
from .kernel import GuestKernel
from .kmem import KernelMemory
from .suspend_record import Value, as_int, as_ints, as_list

__all__ = [
    "MAX_BLOCK_SIZE",
    "PATTERN_MAGIC",
    "BlockIo",
    "BlockIoParams",
    "BlockIoPlan",
    "block_pattern",
    "describe_mismatch",
    "page_segments",
    "sector_pattern",
]

MAX_BLOCK_SIZE: Final = BLKIF_MAX_SEGMENTS_PER_REQUEST * PAGE_SIZE
#: Every 16-byte record of a written sector: magic, generation (u32), sector (u64).
PATTERN_MAGIC: Final = b"XBLK"
_RECORD: Final = struct.Struct(">4sIQ")
_RECORDS_PER_SECTOR: Final = BLKIF_SECTOR_SIZE // _RECORD.size
#: A read buffer is filled with this first, so a read whose data never arrived is caught.
_POISON: Final = b"\xdb" * BLKIF_SECTOR_SIZE


def sector_pattern(sector: int, generation: int) -> bytes:
    """The 512 bytes write `generation` puts in disk sector `sector`."""
    return _RECORD.pack(PATTERN_MAGIC, generation & 0xFFFFFFFF, sector) * _RECORDS_PER_SECTOR


def block_pattern(first_sector: int, nsectors: int, generation: int) -> bytes:
    """The data of a write of `nsectors` sectors from `first_sector` in `generation`."""
    return b"".join(sector_pattern(first_sector + i, generation) for i in range(nsectors))


def describe_mismatch(data: bytes, first_sector: int, generation: int) -> tuple[int, str] | None:
    """Where and how `data` differs from `block_pattern(first_sector, .., generation)`:
    (first bad sector, description), or None when it matches."""
    nsectors = len(data) // BLKIF_SECTOR_SIZE
    bad: list[int] = []
    for i in range(nsectors):
        chunk = data[i * BLKIF_SECTOR_SIZE : (i + 1) * BLKIF_SECTOR_SIZE]
        if chunk != sector_pattern(first_sector + i, generation):
            bad.append(i)
    if not bad:
        return None
    i = bad[0]
    sector = first_sector + i
    chunk = data[i * BLKIF_SECTOR_SIZE : (i + 1) * BLKIF_SECTOR_SIZE]
    magic, gen, found = _RECORD.unpack(chunk[: _RECORD.size])
    if magic == PATTERN_MAGIC and chunk == sector_pattern(found, gen):
        what = f"found the data of sector {found} generation {gen}"
    else:
        expect = sector_pattern(sector, generation)
        off = next(j for j in range(BLKIF_SECTOR_SIZE) if chunk[j] != expect[j])
        what = (
            f"byte {off} is {chunk[off]:#04x}, expected {expect[off]:#04x} "
            f"(not a write pattern{', the read poison' if chunk == _POISON else ''})"
        )
    return sector, (
        f"sector {sector}: expected generation {generation & 0xFFFFFFFF}, {what}; "
        f"{len(bad)} of {nsectors} sectors differ"
    )


def page_segments(pages: list[int], nbytes: int) -> list[PageSegment]:
    """The blkif segments of a buffer of `nbytes` laid over `pages` (4 KiB each, from
    sector 0 of each page): whole pages, then the remainder in the last one."""
    if nbytes <= 0 or nbytes % BLKIF_SECTOR_SIZE:
        raise ValueError(f"a buffer of {nbytes} bytes is not a whole number of sectors")
    need = -(-nbytes // PAGE_SIZE)
    if need > len(pages):
        raise ValueError(f"{nbytes} bytes need {need} pages, only {len(pages)} given")
    segs: list[PageSegment] = []
    left = nbytes // BLKIF_SECTOR_SIZE
    for gpa in pages[:need]:
        n = min(left, BLKIF_SECTORS_PER_PAGE)
        segs.append((gpa, 0, n - 1))
        left -= n
    return segs


@dataclass(frozen=True)
class BlockIoParams:
    """The workload's parameters, as the devtree's workload properties carry them."""

    device: int
    pattern: str = "rand"
    read_percent: int = 50
    block_size: int = 4096
    queue_depth: int = 1
    requests: int = 0
    verify: bool = True
    region: int = 0  # bytes; 0 = the whole device
    seed: int = 0

    def __post_init__(self) -> None:
        if self.pattern not in ("rand", "seq"):
            raise ValueError(f"blockio pattern {self.pattern!r} is neither 'rand' nor 'seq'")
        if not 0 <= self.read_percent <= 100:
            raise ValueError(f"blockio read-percent {self.read_percent} is not within 0..100")
        if not (
            BLKIF_SECTOR_SIZE <= self.block_size <= MAX_BLOCK_SIZE
            and self.block_size % BLKIF_SECTOR_SIZE == 0
        ):
            raise ValueError(
                f"blockio block-size {self.block_size} is not a multiple of "
                f"{BLKIF_SECTOR_SIZE} within {BLKIF_SECTOR_SIZE}..{MAX_BLOCK_SIZE}"
            )
        if not 1 <= self.queue_depth <= BLKIF_RING_SIZE:
            raise ValueError(
                f"blockio queue-depth {self.queue_depth} is not within 1..{BLKIF_RING_SIZE}"
            )
        if self.requests < 0:
            raise ValueError(f"blockio requests {self.requests} is negative")
        if self.region < 0 or self.region % BLKIF_SECTOR_SIZE:
            raise ValueError(f"blockio region {self.region} is not a whole number of sectors")

    @classmethod
    def from_workload(cls, props: Mapping[str, object]) -> BlockIoParams:
        """From the lead's dict (devtree property names: `read-percent`, `block-size`...)."""
        known = {
            "device",
            "pattern",
            "read-percent",
            "block-size",
            "queue-depth",
            "requests",
            "verify",
            "region",
            "seed",
            "vcpu",  # where the frontend's events are bound; the workload follows them
        }
        unknown = sorted(set(props) - known)
        if unknown:
            raise ValueError(f"blockio: unknown parameter(s) {unknown}")
        if "device" not in props:
            raise ValueError("blockio: no `device` parameter")

        def num(key: str, default: int) -> int:
            value = props.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"blockio {key} = {value!r} is not an integer")
            return value

        return cls(
            device=num("device", 0),
            pattern=str(props.get("pattern", "rand")),
            read_percent=num("read-percent", 50),
            block_size=num("block-size", 4096),
            queue_depth=num("queue-depth", 1),
            requests=num("requests", 0),
            verify=bool(num("verify", 1)),
            region=num("region", 0),
            seed=num("seed", 0),
        )

    @property
    def sectors_per_block(self) -> int:
        return self.block_size // BLKIF_SECTOR_SIZE

    @property
    def pages_per_block(self) -> int:
        return -(-self.block_size // PAGE_SIZE)


@dataclass
class BlockIoPlan:
    """Which request comes next, and what each block should hold: the workload's
    bookkeeping, free of any kernel so it can be checked on its own."""

    params: BlockIoParams
    domid: int
    nblocks: int
    rng: random.Random = field(init=False)
    #: Blocks with a request in flight (never two requests on one block at once).
    in_flight: set[int] = field(default_factory=set)
    #: Block -> generation of the last write to it that completed successfully.
    written: dict[int, int] = field(default_factory=dict)
    next_generation: int = 1
    cursor: int = 0  # the next block of a sequential pattern

    def __post_init__(self) -> None:
        if self.nblocks < 1:
            raise ValueError(
                f"blockio: the region holds no whole {self.params.block_size}-byte block"
            )
        # One generator per (seed, domain): two guests with one seed still differ.
        self.rng = random.Random((self.params.seed << 16) ^ self.domid)

    def choose(self) -> tuple[int, int] | None:
        """(operation, block) of the next request, or None while every candidate block
        already has a request in flight (retry after a completion)."""
        if len(self.in_flight) >= self.nblocks:
            return None
        if self.params.pattern == "seq" and self.cursor in self.in_flight:
            return None
        is_read = self.rng.randrange(100) < self.params.read_percent
        if self.params.pattern == "seq":
            block = self.cursor
            self.cursor = (self.cursor + 1) % self.nblocks
        else:
            block = self.rng.randrange(self.nblocks)
            while block in self.in_flight:  # the next free block: one draw, no bias loop
                block = (block + 1) % self.nblocks
        self.in_flight.add(block)
        return (BLKIF_OP_READ if is_read else BLKIF_OP_WRITE), block

    def new_generation(self) -> int:
        gen = self.next_generation
        self.next_generation = (gen + 1) & 0xFFFFFFFF or 1
        return gen

    def finished(self, op: int, block: int, generation: int, ok: bool) -> None:
        """A request on `block` completed; a failed write leaves the block unknown."""
        self.in_flight.discard(block)
        if op == BLKIF_OP_WRITE:
            if ok:
                self.written[block] = generation
            else:
                self.written.pop(block, None)

    def first_sector(self, block: int) -> int:
        return block * self.params.sectors_per_block


@dataclass
class _Slot:
    """One buffer (pages) an outstanding request uses, and what it is doing."""

    pages: list[int]
    block: int = -1
    op: int = -1
    generation: int = 0  # written (write) or expected (read; 0 = unverified)


class BlockIo:
    """The workload on one connected blkfront (it starts when the frontend connects)."""

    def __init__(
        self,
        k: GuestKernel,
        front: BlkFront,
        params: Mapping[str, object] | BlockIoParams,
        *,
        close_when_done: bool = True,
    ) -> None:
        self.k = k
        self.front = front
        self.params = (
            params if isinstance(params, BlockIoParams) else BlockIoParams.from_workload(params)
        )
        if self.params.device != front.devid:
            raise ValueError(
                f"blockio for device {self.params.device} given the frontend of device "
                f"{front.devid}"
            )
        self.close_when_done = close_when_done
        self.plan: BlockIoPlan | None = None
        #: Every buffer, in the order they were taken (a slot's index names it in a
        #: suspend record), and those not in use.
        self.slots: list[_Slot] = []
        self._free: list[_Slot] = []
        #: Requests in flight at a suspend, re-issued when the frontend reconnects:
        #: (request, slot), set by `restore`.
        self._shadow: list[tuple[BlkRequest, _Slot]] | None = None
        self.running = False
        self.done = False
        # Counters (the trace has the detail; these are for tests and summaries).
        self.issued = 0
        self.completed = 0
        self.errors = 0
        self.verify_failures = 0
        self.unverified_reads = 0
        self.bytes = 0
        front.when_connected(self.start)

    def start(self, core: Core) -> None:
        """Size the region, take buffers from the page pool and fill the queue."""
        if self._shadow is not None:
            self._resume(core)
            return
        if self.running or self.done:
            return
        p = self.params
        device_bytes = self.front.sectors * BLKIF_SECTOR_SIZE
        region = p.region or device_bytes
        if region > device_bytes:
            raise ValueError(
                f"blockio region of {region} bytes exceeds device {p.device}'s {device_bytes}"
            )
        if p.read_percent < 100 and self.front.read_only:
            raise ValueError(f"blockio writes to device {p.device}, which is read-only")
        self.plan = BlockIoPlan(p, self.k.domid, region // p.block_size)
        pool = self.k.pool
        assert pool is not None, "the kernel has no page pool"
        self.slots = [
            _Slot([pool.alloc() for _ in range(p.pages_per_block)]) for _ in range(p.queue_depth)
        ]
        self._free = self.slots[::-1]  # pop() hands out the first slot first
        self.running = True
        self._issue(core)

    def stop(self) -> None:
        """Issue no more requests (the kernel is shutting down); those in flight still
        complete, so the frontend can drain and close."""
        self.running = False

    # -- issuing ---------------------------------------------------------------------------
    def rebind(self, front: BlkFront) -> None:
        """The vbd was detached and is attached again as `front` (same device number):
        go on when it connects, keeping what was written (the image holds it)."""
        self.front = front
        front.when_connected(self.resume)

    def resume(self, core: Core) -> None:
        """The vbd is back: start if it never did, else issue again."""
        if not self.running:
            self.start(core)
            return
        plan = self.plan
        assert plan is not None
        region = self.params.region or self.front.sectors * BLKIF_SECTOR_SIZE
        if region // self.params.block_size != plan.nblocks:
            # Another disk under this name: nothing it holds was written by this workload.
            self.plan = BlockIoPlan(self.params, self.k.domid, region // self.params.block_size)
        self._issue(core)

    def _want_more(self) -> bool:
        return (
            self.running
            and self.front.accepting
            and (not self.params.requests or self.issued < self.params.requests)
        )

    def _issue(self, core: Core) -> None:
        plan = self.plan
        assert plan is not None
        while self._free and self._want_more():
            choice = plan.choose()
            if choice is None:
                return  # every free block is busy: a completion will call us again
            op, block = choice
            slot = self._free.pop()
            slot.op, slot.block = op, block
            sector = plan.first_sector(block)
            nbytes = self.params.block_size
            mem = KernelMemory(core)
            if op == BLKIF_OP_WRITE:
                slot.generation = plan.new_generation()
                data = block_pattern(sector, self.params.sectors_per_block, slot.generation)
                self._fill(mem, slot, data)
                core.charge(NATIVE_ROUTINE + nbytes // BYTES_PER_CYCLE)
            else:
                slot.generation = plan.written.get(block, 0) if self.params.verify else 0
                if slot.generation:
                    self._fill(mem, slot, _POISON * self.params.sectors_per_block)
                    core.charge(NATIVE_ROUTINE + nbytes // BYTES_PER_CYCLE)
            self.issued += 1
            self.front.submit(
                core,
                op,
                sector,
                page_segments(slot.pages, nbytes),
                self._completion(slot),
            )

    def _completion(self, slot: _Slot) -> DoneCallback:
        """The request's completion callback, bound to the slot it uses."""

        def done(core: Core, status: int, req: BlkRequest) -> None:
            self._done(core, status, req, slot)

        return done

    @staticmethod
    def _fill(mem: KernelMemory, slot: _Slot, data: bytes) -> None:
        for i, gpa in enumerate(slot.pages):
            chunk = data[i * PAGE_SIZE : (i + 1) * PAGE_SIZE]
            if chunk:
                mem.write(gpa, chunk)

    def _read_back(self, mem: KernelMemory, slot: _Slot) -> bytes:
        n = self.params.block_size
        return b"".join(
            mem.read(gpa, min(PAGE_SIZE, n - i * PAGE_SIZE)) for i, gpa in enumerate(slot.pages)
        )

    # -- completion ------------------------------------------------------------------------
    def _done(self, core: Core, status: int, req: BlkRequest, slot: _Slot) -> None:
        plan = self.plan
        assert plan is not None
        ok = status == BLKIF_RSP_OKAY
        self.completed += 1
        if ok:
            self.bytes += req.nbytes
        else:
            self.errors += 1
        if slot.op == BLKIF_OP_READ and ok:
            if slot.generation:
                self._verify(core, slot)
            else:
                self.unverified_reads += 1
        plan.finished(slot.op, slot.block, slot.generation, ok)
        self._free.append(slot)
        if self.params.requests and self.completed >= self.params.requests:
            self._finish(core)
            return
        self._issue(core)

    def _verify(self, core: Core, slot: _Slot) -> None:
        plan = self.plan
        assert plan is not None
        data = self._read_back(KernelMemory(core), slot)
        core.charge(NATIVE_ROUTINE + len(data) // BYTES_PER_CYCLE)
        problem = describe_mismatch(data, plan.first_sector(slot.block), slot.generation)
        if problem is not None:
            self.verify_failures += 1
            sector, what = problem
            self.k.emit(core, K.BLK_VERIFY, self.front.devid, sector, text=what)

    def _finish(self, core: Core) -> None:
        if self.done:
            return
        self.done = True
        self.running = False
        self.k.emit(core, K.GUEST_MARK, self.completed, text="blockio.done")
        pool = self.k.pool
        assert pool is not None
        for slot in self._free:
            for gpa in slot.pages:
                pool.free(gpa)
        self._free = []
        if self.close_when_done:
            self.front.close(core)

    # -- suspend and resume ------------------------------------------------------------------
    def capture(self) -> list[Value]:
        """The workload's state for a suspend record (see `framework.guest.suspend`)."""
        plan = self.plan
        plan_rec: list[Value] = []
        if plan is not None:
            version, state, gauss = plan.rng.getstate()
            plan_rec = [
                version,
                list(state),
                int(gauss is not None),
                struct.unpack(">q", struct.pack(">d", gauss or 0.0))[0],
                sorted(plan.in_flight),
                [x for block in sorted(plan.written) for x in (block, plan.written[block])],
                plan.next_generation,
                plan.cursor,
            ]
        index = {id(slot): i for i, slot in enumerate(self.slots)}
        return [
            int(self.running),
            int(self.done),
            self.issued,
            self.completed,
            self.errors,
            self.verify_failures,
            self.unverified_reads,
            self.bytes,
            plan_rec,
            [[list(s.pages), s.block, s.op, s.generation] for s in self.slots],
            [index[id(s)] for s in self._free],
        ]

    def slot_of(self, req: BlkRequest) -> int:
        """The index of the slot whose pages request `req` uses (-1: not this workload's)."""
        first = req.segments[0][0] if req.segments else -1
        return next((i for i, s in enumerate(self.slots) if s.pages[0] == first), -1)

    def restore(self, rec: list[Value], requests: list[tuple[BlkRequest, int]]) -> None:
        """Take the state `capture` recorded; `requests` (with their slot indices) are
        re-issued when the frontend connects, before anything new."""
        flags = [as_int(x) for x in rec[:8]]
        self.running, self.done = bool(flags[0]), bool(flags[1])
        self.issued, self.completed, self.errors = flags[2], flags[3], flags[4]
        self.verify_failures, self.unverified_reads, self.bytes = flags[5], flags[6], flags[7]
        self.slots = []
        for raw in as_list(rec[9]):
            s = as_list(raw)
            self.slots.append(_Slot(as_ints(s[0]), as_int(s[1]), as_int(s[2]), as_int(s[3])))
        self._free = [self.slots[i] for i in as_ints(rec[10])]
        p = as_list(rec[8])
        if p:
            plan = BlockIoPlan(self.params, self.k.domid, 1)
            gauss = (
                struct.unpack(">d", struct.pack(">q", as_int(p[3])))[0] if as_int(p[2]) else None
            )
            plan.rng.setstate((as_int(p[0]), tuple(as_ints(p[1])), gauss))
            plan.in_flight = set(as_ints(p[4]))
            written = as_ints(p[5])
            plan.written = dict(zip(written[0::2], written[1::2]))
            plan.next_generation, plan.cursor = as_int(p[6]), as_int(p[7])
            self.plan = plan
        self._shadow = [(req, self.slots[i]) for req, i in requests]

    def _resume(self, core: Core) -> None:
        """The frontend reconnected after a restore: re-issue what was in flight (Linux's
        blkif_recover), then carry on."""
        shadow, self._shadow = self._shadow or [], None
        p = self.params
        plan = self.plan
        if plan is not None:
            region = p.region or self.front.sectors * BLKIF_SECTOR_SIZE
            plan.nblocks = region // p.block_size
        for req, slot in shadow:
            req.on_done = self._completion(slot)
        self.front.reissue(core, [req for req, _slot in shadow])
        if self.running:
            self._issue(core)
