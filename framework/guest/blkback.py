"""blkback: dom0's block backend, serving each guest vbd from a disk model through DMA.

dom0 watches `backend/vbd`; every `<frontend domid>/<devid>` below it becomes one
`BlkBackDevice`. The device publishes the disk's geometry, goes InitWait, maps the
frontend's ring once the frontend is Initialised, and Connects.

Each request is validated (operation, segment count, sector ranges, device bounds), its
granted pages are mapped into dom0's foreign area in one GNTTABOP_map_grant_ref batch
(read-only for a disk write: the disk only reads them), and one TCE per page is put in
the vbd's IOMMU table, so the disk's DMA reaches exactly those pages and nothing else;
then the request goes to the disk model. The 970 port has no other way: Xen's "pre-grant
mappings and post-grant unmappings", and DMA "always requires IOMMU hcalls".

The disk completes in SimPy time, outside any VCPU, so no hypercall can be made there:
`disk_done` only queues the request, and the vbd's physical interrupt (bound once per
device with EVTCHNOP_bind_pirq) runs the handler that clears the TCEs, unmaps the grants
and writes the responses. When the disk's queue is full the request waits in the backend
and the ring is not consumed further until a completion makes room (backpressure reaches
the frontend through the ring itself).
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Protocol

from framework.errors import BlkifRequestError, KernelError, RingError
from framework.hw970.core import Core
from framework.hw970.disk import Disk, DiskRequest
from framework.hw970.iommu import TCE_PAGE_READ, TCE_PAGE_SIZE, TCE_PAGE_WRITE
from framework.trace.ids import K
from framework.xen.public.event_channel import EVTCHN_BIND_PIRQ, EVTCHNOP_bind_pirq
from framework.xen.public.io.blkif import (
    BLKIF_MAX_SEGMENTS_PER_REQUEST,
    BLKIF_OP_FLUSH_DISKCACHE,
    BLKIF_OP_READ,
    BLKIF_OP_WRITE,
    BLKIF_OP_WRITE_BARRIER,
    BLKIF_RING,
    BLKIF_RSP_EOPNOTSUPP,
    BLKIF_RSP_ERROR,
    BLKIF_RSP_OKAY,
    BLKIF_SECTOR_SIZE,
    BLKIF_SECTORS_PER_PAGE,
    BlkifRequest,
    BlkifResponse,
    BlkifSegment,
)
from framework.xen.public.io.xenbus import XenbusState
from framework.xen.public.papr import H_PUT_TCE, H_SUCCESS
from framework.xen.public.xen import HYPERVISOR_event_channel_op

from .blkfront import VDISK_READONLY
from .costs import NATIVE_ROUTINE
from .kmem import KernelMemory
from .ring import BackRing
from .xenbus import XsReply
from .xenbus_driver import XenbusBackend, XenbusBackendDriver

if TYPE_CHECKING:
    from .kernel import GuestKernel

__all__ = [
    "BACKEND_DIR",
    "BlkBack",
    "BlkBackDevice",
    "IobaAllocator",
    "VbdHardware",
    "disk_completion",
    "dma_segments",
    "request_problem",
    "tce_permission",
]

#: dom0's backend directory for vbds (relative to /local/domain/0).
BACKEND_DIR: Final = "backend/vbd"


class VbdHardware(Protocol):
    """What the simulation gives dom0 for one vbd (`k.os.hardware.vbd_backend`)."""

    disk: Disk
    liobn: int
    pirq: int
    window_bytes: int


def request_problem(req: BlkifRequest, sectors: int, writable: bool) -> tuple[int, str] | None:
    """Why a decoded request must be refused, as (BLKIF_RSP_* status, reason); None if it
    may go to the disk. `sectors` is the device size in 512-byte sectors."""
    op, n = req.operation, len(req.segments)
    if op == BLKIF_OP_WRITE_BARRIER:
        return BLKIF_RSP_EOPNOTSUPP, "write barriers are not offered (no feature-barrier)"
    if op == BLKIF_OP_FLUSH_DISKCACHE:
        if n:
            return BLKIF_RSP_ERROR, f"a flush carries no data segments, got {n}"
        return None
    if op not in (BLKIF_OP_READ, BLKIF_OP_WRITE):
        return BLKIF_RSP_ERROR, f"unknown operation {op}"
    if not 1 <= n <= BLKIF_MAX_SEGMENTS_PER_REQUEST:
        return BLKIF_RSP_ERROR, f"{n} segments, not 1..{BLKIF_MAX_SEGMENTS_PER_REQUEST}"
    for i, seg in enumerate(req.segments):
        if not 0 <= seg.first_sect <= seg.last_sect < BLKIF_SECTORS_PER_PAGE:
            return BLKIF_RSP_ERROR, (
                f"segment {i}: sectors {seg.first_sect}..{seg.last_sect} are not within "
                f"0..{BLKIF_SECTORS_PER_PAGE - 1} in ascending order"
            )
    if op == BLKIF_OP_WRITE and not writable:
        return BLKIF_RSP_ERROR, "write to a read-only device"
    total = sum(seg.nr_sects for seg in req.segments)
    if req.sector_number + total > sectors:
        return BLKIF_RSP_ERROR, (
            f"sectors {req.sector_number}..{req.sector_number + total - 1} lie beyond the "
            f"device's {sectors} sectors"
        )
    return None


def tce_permission(op: int) -> int:
    """The one TCE permission a data request needs: the device reads memory for a disk
    write (TCE_PAGE_READ, which a read-only grant mapping allows) and stores into it for
    a disk read (TCE_PAGE_WRITE)."""
    return TCE_PAGE_READ if op == BLKIF_OP_WRITE else TCE_PAGE_WRITE


def dma_segments(segments: tuple[BlkifSegment, ...], iobas: list[int]) -> list[tuple[int, int]]:
    """The disk's (ioba, nbytes) pieces: segment i's sectors in the page at iobas[i]."""
    if len(segments) != len(iobas):
        raise ValueError(f"{len(iobas)} IOBAs for {len(segments)} segments")
    return [
        (ioba + seg.first_sect * BLKIF_SECTOR_SIZE, seg.nr_sects * BLKIF_SECTOR_SIZE)
        for seg, ioba in zip(segments, iobas, strict=True)
    ]


class IobaAllocator:
    """4 KiB pages of a vbd's DMA window, lowest free first (deterministic)."""

    def __init__(self, window_bytes: int) -> None:
        if window_bytes <= 0 or window_bytes % TCE_PAGE_SIZE:
            raise ValueError(f"DMA window of {window_bytes:#x} bytes is not whole 4 KiB pages")
        self.pages = window_bytes // TCE_PAGE_SIZE
        self._free = list(range(self.pages))  # a sorted list is a valid heap
        self._used: set[int] = set()

    @property
    def free_pages(self) -> int:
        return len(self._free)

    def alloc(self, n: int) -> list[int] | None:
        """`n` IOBAs (page addresses in the window), or None if fewer are free."""
        if n > len(self._free):
            return None
        pages = [heapq.heappop(self._free) for _ in range(n)]
        self._used.update(pages)
        return [p * TCE_PAGE_SIZE for p in pages]

    def free(self, iobas: list[int]) -> None:
        for ioba in iobas:
            page = ioba // TCE_PAGE_SIZE
            if ioba % TCE_PAGE_SIZE or page not in self._used:
                raise ValueError(f"free of ioba {ioba:#x}: not allocated from this window")
            self._used.discard(page)
            heapq.heappush(self._free, page)


@dataclass(eq=False)
class _Pending:
    """A request between the ring and its response: mappings, IOBAs, the disk command."""

    device: BlkBackDevice
    req: BlkifRequest
    maps: list[tuple[int, int]] = field(default_factory=list)  # (dom0 gpa, grant handle)
    iobas: list[int] = field(default_factory=list)
    disk_req: DiskRequest | None = None


def disk_completion(req: DiskRequest) -> None:
    """The `on_complete` the simulation gives each vbd's Disk (before raising the vbd's
    pirq): hands the finished command to the backend device that submitted it."""
    pending = req.tag
    if not isinstance(pending, _Pending):
        raise TypeError(f"disk request {req!r} was not submitted by blkback")
    pending.device.disk_done(req)


class BlkBackDevice(XenbusBackend["GuestKernel"]):
    """The backend of one vbd: (frontend domid, devid)."""

    def __init__(self, back: BlkBack, domid: int, devid: int) -> None:
        super().__init__(back.k, "blkback", BACKEND_DIR, domid, devid, f"d{domid} vbd {devid}")
        self.back = back
        self.hw: VbdHardware | None = None
        self.pirq_port = -1
        self.writable = True
        self.sectors = 0
        self.iobas: IobaAllocator | None = None
        # The ring, once connected.
        self.ring: BackRing | None = None
        self.ring_gpa = -1
        self.ring_handle = -1
        self.port = -1
        # Requests.
        self.backlog: deque[_Pending] = deque()  # consumed, not yet accepted by the disk
        self.in_flight = 0  # accepted by the disk, response not yet written
        self.completed: deque[DiskRequest] = deque()  # done by the disk, not yet answered
        self.closing = False
        self.forgotten = False  # left the driver (see `_maybe_forget`)
        # Counters.
        self.requests = 0
        self.responses = 0
        self.error_responses = 0
        #: Test hook: when True, the next request's first segment gets no TCE (then the flag
        #: clears), so the disk's DMA faults and the frontend must see BLKIF_RSP_ERROR.
        self.fault_skip_tce_once = False

    # -- setup (the template methods of XenbusBackend) -------------------------------------
    def forget(self) -> None:
        self.back.forget(self.domid, self.devid)

    def setup(self, core: Core, v: dict[str, str | None]) -> None:
        """Take the vbd's hardware, bind its interrupt, read the mode, publish the disk."""
        k = self.k
        hardware = k.os.hardware
        if hardware is None:
            self.fail(core, f"no disk for d{self.domid} vbd {self.devid}: dom0 has no devices")
            return
        try:
            self.hw = hardware.vbd_backend(self.domid, self.devid)
        except LookupError as e:
            self.fail(core, f"no disk for d{self.domid} vbd {self.devid}: {e}")
            return
        self.sectors = self.hw.disk.image.size_bytes // BLKIF_SECTOR_SIZE
        self.iobas = IobaAllocator(self.hw.window_bytes)
        rc, out = k.op(
            core,
            HYPERVISOR_event_channel_op,
            EVTCHNOP_bind_pirq,
            EVTCHN_BIND_PIRQ,
            pirq=self.hw.pirq,
        )
        if rc < 0:
            self.fail(core, f"EVTCHNOP_bind_pirq of pirq {self.hw.pirq} failed ({rc})")
            return
        self.pirq_port = out["port"]
        k.port_handlers[self.pirq_port] = self._on_disk_event
        self.xb.read(core, f"{self.path}/mode", self._got_mode)

    def _got_mode(self, core: Core, r: XsReply) -> None:
        assert self.hw is not None
        mode = "w" if r.error else r.text
        self.writable = mode != "r" and self.hw.disk.image.writable
        xb = self.xb
        xb.write(core, f"{self.path}/sectors", str(self.sectors))
        xb.write(core, f"{self.path}/sector-size", str(BLKIF_SECTOR_SIZE))
        xb.write(core, f"{self.path}/info", str(0 if self.writable else VDISK_READONLY))
        self._init_wait(core)

    def ring_nodes(self) -> list[str]:
        return ["ring-ref", "event-channel"]

    def frontend_closed(self, core: Core) -> None:
        self.closing = True
        self._maybe_disconnect(core)

    def frontend_reinit(self, core: Core) -> None:
        self.closing = False

    def connect(self, core: Core, v: dict[str, str | None]) -> None:
        """Map the frontend's ring page (grant, then a 4 KiB PTE) and bind its port."""
        nums = self._numbers(core, v, ["ring-ref", "event-channel"])
        if not nums:
            return
        ref, evtchn = nums
        k = self.k
        try:
            gpa, handle = k.grant_map(core, self.domid, ref, readonly=False)
        except KernelError as e:
            self.fail(core, f"mapping ring grant {ref}: {e}")
            return
        k.map_4k(core, gpa)
        self.ring_gpa, self.ring_handle = gpa, handle
        self.ring = BackRing(KernelMemory(core), gpa, BLKIF_RING.entry_bytes)
        self.port = k.evtchn_bind_interdomain(core, self.domid, evtchn)
        k.port_handlers[self.port] = self._on_ring_event
        self._switch(core, XenbusState.Connected)
        self._service(core)

    # -- the request path ------------------------------------------------------------------
    def _ring(self, core: Core) -> BackRing:
        assert self.ring is not None
        self.ring.sring.mem = KernelMemory(core)
        return self.ring

    def _on_ring_event(self, core: Core, _port: int) -> None:
        core.charge(NATIVE_ROUTINE)
        self._service(core)

    def _service(self, core: Core) -> None:
        """Feed the disk: first what waits in the backend, then new requests from the ring,
        until the ring is empty (after the final check) or the disk is full."""
        if self.ring is None:
            return
        ring = self._ring(core)
        try:
            while True:
                self._dispatch(core)
                if self.backlog:
                    break  # the disk is full: stop consuming until a completion
                if ring.unconsumed_requests():
                    self._take(core, ring.get_request())
                    continue
                if not ring.final_check_for_requests():
                    break
        except RingError as e:
            self.fail(core, str(e))
        self._push(core)
        self._maybe_disconnect(core)

    def _take(self, core: Core, raw: bytes) -> None:
        """One request off the ring: refuse it at once, or queue it for the disk."""
        core.charge(NATIVE_ROUTINE)
        self.requests += 1
        try:
            req = BlkifRequest.unpack(raw)
        except BlkifRequestError as e:
            self._respond(core, e.request_id, e.operation, BLKIF_RSP_ERROR)
            return
        problem = request_problem(req, self.sectors, self.writable)
        if problem is not None:
            self._respond(core, req.id, req.operation, problem[0])
            return
        self.backlog.append(_Pending(self, req))

    def _dispatch(self, core: Core) -> None:
        """Prepare and submit backlog requests in order while the disk accepts them."""
        assert self.hw is not None
        while self.backlog:
            p = self.backlog[0]
            if p.disk_req is None:
                ready = self._prepare(core, p)
                if ready is None:
                    return  # no IOBA space now: a completion will free some
                if not ready:
                    self.backlog.popleft()  # refused and answered
                    continue
            assert p.disk_req is not None
            if not self.hw.disk.submit(p.disk_req, now_ns=core.now_ns()):
                return  # the disk's queue is full
            self.backlog.popleft()
            self.in_flight += 1

    def _prepare(self, core: Core, p: _Pending) -> bool | None:
        """Map the request's grants and program its TCEs. True when it is ready for the
        disk, False when it was refused (and answered), None to wait for IOBA space."""
        assert self.hw is not None and self.iobas is not None
        req = p.req
        if req.operation == BLKIF_OP_FLUSH_DISKCACHE:
            p.disk_req = DiskRequest(req.operation, req.sector_number, [], tag=p)
            return True
        n = len(req.segments)
        iobas = self.iobas.alloc(n)
        if iobas is None:
            if self.in_flight:
                return None
            self._refuse(core, p, f"the DMA window has {self.iobas.free_pages} pages, {n} needed")
            return False
        p.iobas = iobas
        k = self.k
        readonly = req.operation == BLKIF_OP_WRITE  # the disk only reads a write's pages
        results = k.grant_map_many(core, [(self.domid, s.gref, readonly) for s in req.segments])
        p.maps = [res for res in results if isinstance(res, tuple)]
        if len(p.maps) != n:
            bad = next(
                (s.gref, res)
                for s, res in zip(req.segments, results, strict=True)
                if not isinstance(res, tuple)
            )
            self._refuse(core, p, f"grant {bad[0]} could not be mapped (GNTST {bad[1]})")
            return False
        perm = tce_permission(req.operation)
        for i, ((gpa, _handle), ioba) in enumerate(zip(p.maps, iobas, strict=True)):
            if i == 0 and self.fault_skip_tce_once:
                self.fault_skip_tce_once = False  # leave this IOBA unmapped: the DMA faults
            else:
                rc = k.hypercall(core, H_PUT_TCE, self.hw.liobn, ioba, (gpa & ~0xFFF) | perm)
                if rc != H_SUCCESS:
                    self._refuse(core, p, f"H_PUT_TCE of ioba {ioba:#x} failed ({rc})")
                    return False
        p.disk_req = DiskRequest(
            req.operation, req.sector_number, dma_segments(req.segments, iobas), tag=p
        )
        return True

    def _refuse(self, core: Core, p: _Pending, why: str) -> None:
        self._release(core, p)
        self.fail(core, f"request {p.req.id} refused: {why}")
        self._respond(core, p.req.id, p.req.operation, BLKIF_RSP_ERROR)

    def _release(self, core: Core, p: _Pending) -> None:
        """Clear the request's TCEs and unmap its grants (what `_prepare` set up)."""
        assert self.hw is not None and self.iobas is not None
        k = self.k
        for ioba in p.iobas:
            k.hypercall(core, H_PUT_TCE, self.hw.liobn, ioba, 0)
        if p.iobas:
            self.iobas.free(p.iobas)
            p.iobas = []
        if p.maps:
            statuses = k.grant_unmap_many(core, p.maps)
            for (gpa, handle), st in zip(p.maps, statuses, strict=True):
                if st:
                    self.fail(core, f"unmap of {gpa:#x} (handle {handle}) failed ({st})")
            p.maps = []

    def _respond(self, core: Core, req_id: int, op: int, status: int) -> None:
        ring = self._ring(core)
        ring.put_response(BlkifResponse(req_id, op, status).pack())
        self.k.emit(core, K.BLK_RESPOND, self.devid, req_id, status, self.domid)
        self.responses += 1
        if status != BLKIF_RSP_OKAY:
            self.error_responses += 1

    def _push(self, core: Core) -> None:
        if self.ring is None:
            return
        ring = self._ring(core)
        if ring.rsp_prod_pvt != ring.sring.rsp_prod and ring.push_responses_and_check_notify():
            self.k.send(core, self.port)

    # -- completions -----------------------------------------------------------------------
    def disk_done(self, req: DiskRequest) -> None:
        """The disk finished `req` (SimPy context, no VCPU): queue it for the pirq handler."""
        self.completed.append(req)

    def _on_disk_event(self, core: Core, _port: int) -> None:
        """The vbd's interrupt: answer every finished request, then feed the disk again."""
        core.charge(NATIVE_ROUTINE)
        while self.completed:
            dreq = self.completed.popleft()
            p = dreq.tag
            assert isinstance(p, _Pending)
            core.charge(NATIVE_ROUTINE)
            self._release(core, p)
            self.in_flight -= 1
            status = BLKIF_RSP_OKAY if dreq.status == 0 else BLKIF_RSP_ERROR
            self._respond(core, p.req.id, p.req.operation, status)
        self._service(core)

    # -- teardown --------------------------------------------------------------------------
    def unplug(self, core: Core, removed: bool) -> None:
        """Finish what the disk holds, then disconnect; once the directory is gone and
        the device Closed, forget it (`_maybe_forget`)."""
        if removed:
            self.removed = True
        if self.state != XenbusState.Closed:
            self.closing = True
            self._maybe_disconnect(core)
        self._maybe_forget(core)

    def _maybe_forget(self, core: Core) -> None:
        """The directory is gone and the device Closed: stop following the frontend, give
        back the interrupt binding and leave the driver, so nothing of the device stays
        in dom0 (a later vbd may get the same MPIC source)."""
        if not self.removed or self.state != XenbusState.Closed or self.forgotten:
            return
        self.forgotten = True
        if self.frontend_path:
            self._unwatch_otherend(core)
        if self.pirq_port >= 0:
            self.k.evtchn_close(core, self.pirq_port)
            self.pirq_port = -1
        self.forget()

    def _maybe_disconnect(self, core: Core) -> None:
        """Closing: once every consumed request is answered and none waits on the ring,
        unmap the ring, close its port and go Closed (and, if the directory was removed
        meanwhile, forget the device)."""
        if not self.closing or self.state == XenbusState.Closed:
            return
        if self.ring is not None:
            if self.in_flight or self.backlog or self.completed:
                return
            ring = self._ring(core)
            if ring.unconsumed_requests():
                return
            self._push(core)
            k = self.k
            k.evtchn_close(core, self.port)
            k.unmap_4k(core, self.ring_gpa)
            k.grant_unmap(core, self.ring_gpa, self.ring_handle)
            self.ring = None
            self.port = -1
        self._switch(core, XenbusState.Closed)
        self._maybe_forget(core)


class BlkBack(XenbusBackendDriver["GuestKernel", BlkBackDevice]):
    """dom0's blkback driver: one `BlkBackDevice` per vbd appearing under backend/vbd."""

    def __init__(self, k: GuestKernel) -> None:
        super().__init__(k, "blkback", BACKEND_DIR)

    def start(self, core: Core) -> None:
        """Watch backend/vbd: every vbd the toolstack adds there gets a device."""
        self.watch_devices(core)

    def new_device(self, domid: int, devid: int) -> BlkBackDevice:
        return BlkBackDevice(self, domid, devid)
