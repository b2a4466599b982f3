"""blkfront: a guest's virtual block device, one blkif ring shared with dom0's blkback.

The xenbus handshake is Linux's: seeing the backend in InitWait, the frontend allocates
the ring page, grants it to the backend, allocates an unbound event channel for it,
publishes `ring-ref` and `event-channel` and goes Initialised; seeing the backend
Connected it reads `sectors`, `sector-size` and `info` and goes Connected.

A request names up to 11 guest pages (sectors first..last of each). Each page is granted
to the backend for the life of the request: read-only for a write request (the disk only
reads it), writable for a read. Requests that find the ring full wait in the frontend
and are pushed as responses free slots, so nothing is lost. A response ends the grants
(which must succeed: the backend unmaps before it responds) and calls the submitter back.

Request ids count up from 0 (unique among outstanding requests, and across the run, so
the trace's `req_id` names one request).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from framework.errors import BlkfrontError, RingProtocolError
from framework.hw970.core import Core
from framework.hw970.memory import PAGE_SIZE
from framework.trace.ids import K
from framework.xen.public.io.blkif import (
    BLKIF_MAX_SEGMENTS_PER_REQUEST,
    BLKIF_OP_FLUSH_DISKCACHE,
    BLKIF_OP_READ,
    BLKIF_OP_WRITE,
    BLKIF_RING,
    BLKIF_RSP_ERROR,
    BLKIF_SECTOR_SIZE,
    BLKIF_SECTORS_PER_PAGE,
    BlkifRequest,
    BlkifResponse,
    BlkifSegment,
)

from .costs import NATIVE_ROUTINE
from .kernel import GuestKernel
from .kmem import KernelMemory
from .ring import FrontRing, SharedRing
from .xenbus import XsReply
from .xenbus_driver import XenbusFrontend

__all__ = [
    "OP_NAMES",
    "VDISK_CDROM",
    "VDISK_READONLY",
    "VDISK_REMOVABLE",
    "BlkFront",
    "BlkRequest",
    "DoneCallback",
    "PageSegment",
    "build_request",
    "check_segments",
]

#: `info` bits a backend publishes (Linux's include/xen/interface/io/blkif.h, vdisk info).
VDISK_CDROM: Final = 0x1
VDISK_REMOVABLE: Final = 0x2
VDISK_READONLY: Final = 0x4

OP_NAMES: dict[int, str] = {
    BLKIF_OP_READ: "read",
    BLKIF_OP_WRITE: "write",
    BLKIF_OP_FLUSH_DISKCACHE: "flush",
}

#: One segment as a submitter names it: (page gpa, first sector, last sector) of the page.
PageSegment = tuple[int, int, int]
DoneCallback = Callable[[Core, int, "BlkRequest"], None]


def check_segments(op: int, segments: list[PageSegment]) -> int:
    """Validate a request's pages for `op`; returns its length in bytes."""
    if op not in OP_NAMES:
        raise BlkfrontError(f"blkif operation {op} is not read (0), write (1) or flush (3)")
    if op == BLKIF_OP_FLUSH_DISKCACHE:
        if segments:
            raise BlkfrontError(f"a flush carries no data, got {len(segments)} segments")
        return 0
    if not 1 <= len(segments) <= BLKIF_MAX_SEGMENTS_PER_REQUEST:
        raise BlkfrontError(
            f"a {OP_NAMES[op]} needs 1..{BLKIF_MAX_SEGMENTS_PER_REQUEST} segments, "
            f"got {len(segments)}"
        )
    nbytes = 0
    for i, (gpa, first, last) in enumerate(segments):
        if gpa < 0 or gpa % PAGE_SIZE:
            raise BlkfrontError(f"segment {i}: page address {gpa:#x} is not 4 KiB aligned")
        if not 0 <= first <= last < BLKIF_SECTORS_PER_PAGE:
            raise BlkfrontError(
                f"segment {i}: sectors {first}..{last} are not an ascending range within the "
                f"page's {BLKIF_SECTORS_PER_PAGE} sectors"
            )
        nbytes += (last - first + 1) * BLKIF_SECTOR_SIZE
    return nbytes


def build_request(
    op: int, req_id: int, sector: int, grefs: list[int], segments: list[PageSegment], handle: int
) -> BlkifRequest:
    """The blkif_request for `segments`, each page reached through its grant in `grefs`."""
    if len(grefs) != len(segments):
        raise ValueError(f"{len(grefs)} grant refs for {len(segments)} segments")
    return BlkifRequest(
        op,
        handle,
        req_id,
        sector,
        tuple(BlkifSegment(ref, first, last) for ref, (_gpa, first, last) in zip(grefs, segments)),
    )


@dataclass(eq=False)
class BlkRequest:
    """The frontend's record of one request (Linux's shadow entry)."""

    id: int
    op: int
    sector: int
    segments: list[PageSegment]
    nbytes: int
    on_done: DoneCallback
    submit_ns: int
    grefs: list[int] = field(default_factory=list)
    status: int | None = None  # BLKIF_RSP_* once completed
    done_ns: int = -1

    @property
    def op_name(self) -> str:
        return OP_NAMES.get(self.op, f"op{self.op}")


class BlkFront(XenbusFrontend[GuestKernel]):
    """One virtual block device of a guest (`devid` = the xenbus device number) whose
    frontend directory is `path` (e.g. `device/vbd/51712`). Its event channel is bound to
    VCPU `vcpu`, where the responses (and so the submitter's callbacks) are handled."""

    def __init__(self, k: GuestKernel, devid: int, path: str, vcpu: int = 0) -> None:
        super().__init__(k, "blkfront", devid, path, vcpu)
        # What the backend published when it connected.
        self.sectors = 0
        self.sector_size = BLKIF_SECTOR_SIZE
        self.info = 0
        # The ring.
        self.ring: FrontRing | None = None
        self.ring_gpa = -1
        self.ring_ref = -1
        # Requests.
        self.outstanding: dict[int, BlkRequest] = {}  # on the ring, by id
        self.queue: deque[BlkRequest] = deque()  # waiting for a free ring slot
        self._next_id = 0
        self._full_episode = False
        self._in_event = False
        self._connecting = False  # reading the backend's geometry to connect
        self.submitted = 0
        self.completed = 0

    @property
    def read_only(self) -> bool:
        return bool(self.info & VDISK_READONLY)

    @property
    def accepting(self) -> bool:
        """`submit` takes requests: connected, and not closing (a detach in progress)."""
        return self.connected and not self._close_wanted

    # -- xenbus handshake (the template methods of XenbusFrontend) -------------------------
    def setup_rings(self, core: Core) -> None:
        k = self.k
        assert k.pool is not None, "the kernel has no page pool"
        gpa = k.pool.alloc()
        mem = KernelMemory(core)
        SharedRing.init(mem, gpa, BLKIF_RING.entry_bytes)
        self.ring = FrontRing(mem, gpa, BLKIF_RING.entry_bytes)
        self.ring_gpa = gpa
        self.ring_ref = self.grants.alloc_ref()
        self.grants.grant_access(self.ring_ref, self.backend_id, gpa >> 12, False)

    def ring_nodes(self) -> list[tuple[str, str]]:
        return [("ring-ref", str(self.ring_ref)), ("event-channel", str(self.port))]

    def backend_connected(self, core: Core) -> None:
        if self._connecting:
            return  # a repeated watch event must not connect twice
        self._connecting = True
        self.xb.read(core, f"{self.backend_path}/sectors", self._got_sectors)

    def _got_sectors(self, core: Core, r: XsReply) -> None:
        if r.error or not r.text.isdigit():
            self.fail(core, f"reading {self.backend_path}/sectors: {r.error or repr(r.text)}")
            return
        self.sectors = int(r.text)
        self.xb.read(core, f"{self.backend_path}/sector-size", self._got_sector_size)

    def _got_sector_size(self, core: Core, r: XsReply) -> None:
        if r.error or r.text != str(BLKIF_SECTOR_SIZE):
            self.fail(
                core,
                f"backend sector-size {r.error or repr(r.text)}: only {BLKIF_SECTOR_SIZE} "
                "is supported",
            )
            return
        self.xb.read(core, f"{self.backend_path}/info", self._got_info)

    def _got_info(self, core: Core, r: XsReply) -> None:
        self._connecting = False
        self.info = int(r.text) if not r.error and r.text.isdigit() else 0
        self._connected(core)

    # -- requests --------------------------------------------------------------------------
    def submit(
        self,
        core: Core,
        op: int,
        sector: int,
        pages: list[PageSegment],
        on_done: DoneCallback,
    ) -> BlkRequest:
        """Queue a request; `on_done(core, status, request)` runs when its response arrives.

        A write's pages must hold the data already; a read's pages receive it.
        """
        if not self.connected or self._close_wanted:
            raise BlkfrontError(
                f"blkfront {self.devid} is {self.state.name}"
                f"{' and closing' if self._close_wanted else ''}: no requests accepted"
            )
        nbytes = check_segments(op, pages)
        if op == BLKIF_OP_WRITE and self.read_only:
            raise BlkfrontError(f"blkfront {self.devid} is read-only (info {self.info:#x})")
        if sector < 0:
            raise BlkfrontError(f"sector {sector} is negative")
        core.charge(NATIVE_ROUTINE)
        req = BlkRequest(
            self._next_id, op, sector, list(pages), nbytes, on_done, submit_ns=core.now_ns()
        )
        self._next_id += 1
        self.submitted += 1
        self.k.emit(core, K.BLK_SUBMIT, self.devid, req.id, sector, nbytes, text=req.op_name)
        self.queue.append(req)
        if not self._in_event:
            self._kick(core)
        return req

    def _ring(self, core: Core) -> FrontRing:
        """The ring, reached through this native call's view of memory."""
        assert self.ring is not None
        self.ring.sring.mem = KernelMemory(core)
        return self.ring

    def _kick(self, core: Core) -> None:
        """Move queued requests into free ring slots, granting their pages; push and
        notify the backend if it asked to be."""
        if not self.queue or self.ring is None:
            return
        ring = self._ring(core)
        k = self.k
        moved = False
        while self.queue:
            if ring.full():
                if not self._full_episode:
                    self._full_episode = True
                    k.emit(core, K.RING_FULL, self.devid, text="blkif")
                break
            req = self.queue.popleft()
            readonly = req.op == BLKIF_OP_WRITE  # the backend only reads a write's pages
            for gpa, _first, _last in req.segments:
                ref = self.grants.alloc_ref()
                self.grants.grant_access(ref, self.backend_id, gpa >> 12, readonly)
                req.grefs.append(ref)
            ring.put_request(
                build_request(
                    req.op, req.id, req.sector, req.grefs, req.segments, self.devid & 0xFFFF
                ).pack()
            )
            self.outstanding[req.id] = req
            moved = True
        if not self.queue:
            self._full_episode = False
        if moved and ring.push_requests_and_check_notify():
            k.send(core, self.port)

    def _on_event(self, core: Core, _port: int) -> None:
        """The backend notified: consume every response (final check closes the race with
        one arriving as we finish), then push what waited for room."""
        if self.ring is None:
            return
        core.charge(NATIVE_ROUTINE)
        self._retry_busy_refs(core)
        self._in_event = True
        try:
            ring = self._ring(core)
            while True:
                while ring.unconsumed_responses():
                    self._complete(core, BlkifResponse.unpack(ring.get_response()))
                if not ring.final_check_for_responses():
                    break
        except RingProtocolError as e:
            self.fail(core, str(e))
            return
        finally:
            self._in_event = False
        self._kick(core)
        self._maybe_close(core)

    def _complete(self, core: Core, rsp: BlkifResponse) -> None:
        core.charge(NATIVE_ROUTINE)
        req = self.outstanding.pop(rsp.id, None)
        if req is None:
            self.fail(core, f"response for request id {rsp.id}, which is not outstanding")
            return
        status = rsp.status
        if rsp.operation != req.op:
            self.fail(
                core, f"response to request {req.id} says operation {rsp.operation}, not {req.op}"
            )
            status = BLKIF_RSP_ERROR
        for ref in req.grefs:
            if self.grants.end_access(ref):
                self.grants.free_ref(ref)
            else:
                self.busy_refs.append(ref)
                self.grant_errors += 1
                status = BLKIF_RSP_ERROR
                self.k.console(
                    core,
                    f"blkfront {self.devid}: grant {ref} of request {req.id} is still mapped "
                    "by the backend after its response",
                )
        req.status = status
        req.done_ns = core.now_ns()
        self.completed += 1
        self.k.emit(
            core,
            K.BLK_COMPLETE,
            self.devid,
            req.id,
            status,
            req.done_ns - req.submit_ns,
            text=req.op_name,
        )
        req.on_done(core, status, req)

    # -- suspend and resume ----------------------------------------------------------------
    def shadow(self) -> list[BlkRequest]:
        """Every request not answered yet, on the ring or waiting for it, oldest first
        (Linux's shadow ring: what `blkif_recover` re-issues after a restore)."""
        return sorted([*self.outstanding.values(), *self.queue], key=lambda r: r.id)

    @property
    def next_id(self) -> int:
        """The id the next request gets."""
        return self._next_id

    def restore_ids(self, next_id: int, submitted: int, completed: int) -> None:
        """Carry on the request ids and counts of the kernel that suspended."""
        self._next_id, self.submitted, self.completed = next_id, submitted, completed

    def reissue(self, core: Core, requests: list[BlkRequest]) -> None:
        """Queue requests of a suspended kernel again, with their ids and fresh grants
        (the old grants died with the old domain), ahead of anything new."""
        for req in requests:
            req.grefs = []
            self.k.emit(core, K.GUEST_MARK, req.id, text="blkfront.reissue")
        self.queue.extendleft(reversed(requests))
        if not self._in_event:
            self._kick(core)

    # -- teardown --------------------------------------------------------------------------
    def abandon(self, core: Core) -> None:
        """The vbd was taken away unanswered: the responses already on the ring count;
        every other request fails (BLKIF_RSP_ERROR), as Linux fails the requests of a disk
        marked dead."""
        if self.ring is not None and self.port >= 0:
            self._on_event(core, self.port)
        lost = sorted(self.outstanding.values(), key=lambda r: r.id) + list(self.queue)
        self.outstanding.clear()
        self.queue.clear()
        for req in lost:
            self.outstanding[req.id] = req
            self._complete(core, BlkifResponse(req.id, req.op, BLKIF_RSP_ERROR))

    def backend_gone(self, core: Core) -> None:
        """The backend closed under a connected vbd (unplugged without waiting for it)."""
        self._give_up(core)

    def drained(self) -> bool:
        return not self.outstanding and not self.queue

    def release_rings(self, core: Core) -> None:
        """The backend has unmapped the ring: revoke its grant, free the page and port."""
        k = self.k
        if self.ring is not None:
            if self.grants.end_access(self.ring_ref):
                self.grants.free_ref(self.ring_ref)
                assert k.pool is not None
                k.pool.free(self.ring_gpa)
            else:
                self.grant_errors += 1
                k.console(core, f"{self.label}: ring grant {self.ring_ref} still mapped")
            k.evtchn_close(core, self.port)
            self.ring = None
        self._retry_busy_refs(core)
