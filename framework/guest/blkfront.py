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

from framework.errors import BlkfrontError, KernelError, RingProtocolError
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
from framework.xen.public.io.xenbus import XenbusState

from .grants import GrantTableClient
from .kernel import NATIVE_CYCLES, GuestKernel
from .kmem import KernelMemory
from .ring import FrontRing, SharedRing
from .xenbus import Xenbus, XsReply

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


class BlkFront:
    """One virtual block device of a guest (`devid` = the xenbus device number) whose
    frontend directory is `path` (e.g. `device/vbd/51712`). Its event channel is bound to
    VCPU `vcpu`, where the responses (and so the submitter's callbacks) are handled."""

    def __init__(self, k: GuestKernel, devid: int, path: str, vcpu: int = 0) -> None:
        self.k = k
        self.devid = devid
        self.path = path.rstrip("/")
        self.vcpu = vcpu
        self.state = XenbusState.Initialising
        self.backend_path = ""
        self.backend_id = -1
        self.backend_state = XenbusState.Unknown
        # What the backend published when it connected.
        self.sectors = 0
        self.sector_size = BLKIF_SECTOR_SIZE
        self.info = 0
        # The ring and its event channel.
        self.ring: FrontRing | None = None
        self.ring_gpa = -1
        self.ring_ref = -1
        self.port = -1
        # Requests.
        self.outstanding: dict[int, BlkRequest] = {}  # on the ring, by id
        self.queue: deque[BlkRequest] = deque()  # waiting for a free ring slot
        self._next_id = 0
        self._full_episode = False
        self._in_event = False
        self._close_wanted = False
        self._connecting = False  # reading the backend's geometry to connect
        self._connected_callbacks: list[Callable[[Core], None]] = []
        #: Grant refs whose end_access reported busy (the backend still had them mapped);
        #: retried on every event, never reused until they end.
        self.busy_refs: list[int] = []
        self.grant_errors = 0
        self.error = ""  # the fatal error that closed the device, if any
        self.submitted = 0
        self.completed = 0

    @property
    def token(self) -> str:
        return f"blkfront:{self.devid}"

    @property
    def xb(self) -> Xenbus:
        """The kernel's xenbus (up before any driver starts)."""
        xb = self.k.xenbus
        if xb is None:
            raise KernelError(f"d{self.k.domid}: xenbus is not up")
        return xb

    @property
    def grants(self) -> GrantTableClient:
        """The kernel's own grant table (set up before any driver starts)."""
        g = self.k.grants
        if g is None:
            raise KernelError(f"d{self.k.domid}: the grant table is not set up")
        return g

    @property
    def read_only(self) -> bool:
        return bool(self.info & VDISK_READONLY)

    @property
    def connected(self) -> bool:
        return self.state == XenbusState.Connected

    # -- xenbus handshake ------------------------------------------------------------------
    def start(self, core: Core) -> None:
        """Find the backend and follow its state (the probe of a Linux xenbus driver)."""
        core.charge(NATIVE_CYCLES)
        self.xb.read(core, f"{self.path}/backend", self._got_backend_path)

    def when_connected(self, callback: Callable[[Core], None]) -> None:
        """Run `callback(core)` when the device connects (register before it does)."""
        self._connected_callbacks.append(callback)

    def _got_backend_path(self, core: Core, r: XsReply) -> None:
        if r.error:
            self._fatal(core, f"reading {self.path}/backend: {r.error}")
            return
        self.backend_path = r.text
        self.xb.read(core, f"{self.path}/backend-id", self._got_backend_id)

    def _got_backend_id(self, core: Core, r: XsReply) -> None:
        if r.error or not r.text.isdigit():
            self._fatal(core, f"reading {self.path}/backend-id: {r.error or repr(r.text)}")
            return
        self.backend_id = int(r.text)
        self.xb.watch(core, f"{self.backend_path}/state", self.token, self._backend_changed)

    def _backend_changed(self, core: Core, _path: str, _token: str) -> None:
        self.xb.read(core, f"{self.backend_path}/state", self._got_backend_state)

    def _got_backend_state(self, core: Core, r: XsReply) -> None:
        if r.error:
            return  # the backend directory went away; nothing to follow
        try:
            state = XenbusState(int(r.text))
        except ValueError:
            self._fatal(core, f"backend state {r.text!r} is not a XenbusState")
            return
        self.backend_state = state
        core.charge(NATIVE_CYCLES)
        if state == XenbusState.InitWait and self.state == XenbusState.Initialising:
            self._setup_ring(core)
        elif (
            state == XenbusState.Connected
            and self.state == XenbusState.Initialised
            and not self._connecting
        ):
            self._connecting = True  # a repeated watch event must not connect twice
            self.xb.read(core, f"{self.backend_path}/sectors", self._got_sectors)
        elif state == XenbusState.Closing and self.state == XenbusState.Connected:
            self.close(core)  # the backend wants to go: finish and close
        elif state == XenbusState.Closed and self.state == XenbusState.Closing:
            self._teardown(core)

    def _switch(self, core: Core, state: XenbusState) -> None:
        prev, self.state = self.state, state
        self.xb.switch_state(core, self.path, state, prev)

    def _setup_ring(self, core: Core) -> None:
        k = self.k
        assert k.pool is not None, "the kernel has no page pool"
        gpa = k.pool.alloc()
        mem = KernelMemory(core)
        SharedRing.init(mem, gpa, BLKIF_RING.entry_bytes)
        self.ring = FrontRing(mem, gpa, BLKIF_RING.entry_bytes)
        self.ring_gpa = gpa
        self.ring_ref = self.grants.alloc_ref()
        self.grants.grant_access(self.ring_ref, self.backend_id, gpa >> 12, False)
        self.port = k.evtchn_alloc_unbound(core, self.backend_id)
        k.port_handlers[self.port] = self._on_event
        if self.vcpu:
            rc = k.evtchn_bind_vcpu(core, self.port, self.vcpu)
            if rc < 0:
                self._fatal(core, f"binding port {self.port} to VCPU {self.vcpu} failed ({rc})")
                return
        # In order: xenstored applies one connection's requests in sequence, so the backend
        # sees ring-ref and event-channel before it sees Initialised.
        self.xb.write(core, f"{self.path}/ring-ref", str(self.ring_ref))
        self.xb.write(core, f"{self.path}/event-channel", str(self.port))
        self._switch(core, XenbusState.Initialised)

    def _got_sectors(self, core: Core, r: XsReply) -> None:
        if r.error or not r.text.isdigit():
            self._fatal(core, f"reading {self.backend_path}/sectors: {r.error or repr(r.text)}")
            return
        self.sectors = int(r.text)
        self.xb.read(core, f"{self.backend_path}/sector-size", self._got_sector_size)

    def _got_sector_size(self, core: Core, r: XsReply) -> None:
        if r.error or r.text != str(BLKIF_SECTOR_SIZE):
            self._fatal(
                core,
                f"backend sector-size {r.error or repr(r.text)}: only {BLKIF_SECTOR_SIZE} "
                "is supported",
            )
            return
        self.xb.read(core, f"{self.backend_path}/info", self._got_info)

    def _got_info(self, core: Core, r: XsReply) -> None:
        self._connecting = False
        self.info = int(r.text) if not r.error and r.text.isdigit() else 0
        self._switch(core, XenbusState.Connected)
        callbacks, self._connected_callbacks = self._connected_callbacks, []
        for cb in callbacks:
            cb(core)

    def _fatal(self, core: Core, what: str) -> None:
        """xenbus_dev_fatal: say why on the console and give the device up."""
        self.error = what
        self.k.console(core, f"blkfront {self.devid}: {what}")
        if self.state not in (XenbusState.Closing, XenbusState.Closed):
            self._switch(core, XenbusState.Closing)

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
        core.charge(NATIVE_CYCLES)
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
        core.charge(NATIVE_CYCLES)
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
            self._fatal(core, str(e))
            return
        finally:
            self._in_event = False
        self._kick(core)
        self._maybe_close(core)

    def _complete(self, core: Core, rsp: BlkifResponse) -> None:
        core.charge(NATIVE_CYCLES)
        req = self.outstanding.pop(rsp.id, None)
        if req is None:
            self._fatal(core, f"response for request id {rsp.id}, which is not outstanding")
            return
        status = rsp.status
        if rsp.operation != req.op:
            self._fatal(
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

    def _retry_busy_refs(self, core: Core) -> None:
        still: list[int] = []
        for ref in self.busy_refs:
            if self.grants.end_access(ref):
                self.grants.free_ref(ref)
            else:
                still.append(ref)
        self.busy_refs = still

    # -- teardown --------------------------------------------------------------------------
    def close(self, core: Core) -> None:
        """Stop taking requests; once every outstanding one has completed go Closing and,
        when the backend has closed, release the ring and go Closed."""
        self._close_wanted = True
        self._maybe_close(core)

    def _maybe_close(self, core: Core) -> None:
        if (
            self._close_wanted
            and self.state == XenbusState.Connected
            and not self.outstanding
            and not self.queue
        ):
            self._switch(core, XenbusState.Closing)
            if self.backend_state == XenbusState.Closed:
                self._teardown(core)

    def _teardown(self, core: Core) -> None:
        """The backend has unmapped the ring: revoke its grant, free the page and port."""
        k = self.k
        if self.ring is not None:
            if self.grants.end_access(self.ring_ref):
                self.grants.free_ref(self.ring_ref)
                assert k.pool is not None
                k.pool.free(self.ring_gpa)
            else:
                self.grant_errors += 1
                k.console(core, f"blkfront {self.devid}: ring grant {self.ring_ref} still mapped")
            k.evtchn_close(core, self.port)
            self.ring = None
        self._retry_busy_refs(core)
        self.xb.unwatch(core, f"{self.backend_path}/state", self.token)
        self._switch(core, XenbusState.Closed)
