"""netback: dom0's network backend, one `Vif` per guest interface, joined by bridges.

dom0 watches `backend/vif`; every `<frontend domid>/<devid>` below it becomes a `Vif`
(Linux's ``vif<domid>.<devid>``). The vif takes its link model, publishes `mtu` and
`feature-rx-copy`, goes InitWait, maps the frontend's tx and rx rings (grant map into the
foreign area plus a 4 KiB PTE) once the frontend is Initialised, binds its event channel,
joins its bridge and Connects.

Transmit (guest -> bridge), on the vif's event: tx requests are consumed in batches; each
batch's frames are copied out of the guest with one GNTTABOP_copy call (source: the
frontend's grant, destination: a dom0 page); each frame then goes to the bridge, and from
the bridge onto the link of every egress port, which carries it in simulated time ("the
wire from the bridge to that vif"). A refused request is answered NETIF_RSP_ERROR at
once; a forwarded one is answered NETIF_RSP_OKAY when every copy of the frame has been
consumed (copied into a receive buffer, or dropped on the way), as 2.6.18's netback
answered a tx request only when the packet's pages were released. The sender's tx ring
is thus the flow control of the whole path: a stream runs at the pace of its slowest
hop, and the frames in flight (in links and backend queues) are bounded by ring sizes.

Receive (link -> guest): a link delivers in SimPy time, outside any VCPU, where no
hypercall can be made. `deliver_later` only queues the frame and raises dom0's network
interrupt (a physical interrupt bound with EVTCHNOP_bind_pirq, raised once per burst);
its handler moves the frames to their vifs' queues and, while the frontend has receive
buffers posted, copies them in (one GNTTABOP_copy call per batch, source a dom0 page,
destination the posted grant) and writes the rx responses. Frames for a vif without
posted buffers wait in the backend, at most `RX_QUEUE_LIMIT` of them; beyond that the
newest are dropped ("rx ring empty").

A batch is at most `COPY_BATCH` operations: the gnttab_copy structures of one call must
fit the 4 KiB argument page (and the kernel issues 64 per call). The frames a batch stages in dom0 live in that many bounce
pages, which the backend allocates once and reuses (natives never run concurrently, so
one set serves every vif).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

from framework.errors import KernelError, RingError
from framework.hw970.core import Core
from framework.hw970.link import ETH_HLEN, Link
from framework.hw970.memory import PAGE_SIZE
from framework.trace.ids import K
from framework.xen.public.event_channel import EVTCHN_BIND_PIRQ, EVTCHNOP_bind_pirq
from framework.xen.public.grant_table import (
    GNTTAB_COPY,
    GNTCOPY_dest_gref,
    GNTCOPY_source_gref,
    GNTST_okay,
    gntst_name,
)
from framework.xen.public.io.netif import (
    NETIF_RSP_ERROR,
    NETIF_RSP_OKAY,
    NETIF_RX_RING,
    NETIF_TX_RING,
    NetifRxRequest,
    NetifRxResponse,
    NetifTxRequest,
    NetifTxResponse,
    NETTXF_more_data,
)
from framework.xen.public.io.xenbus import XenbusState
from framework.xen.public.xen import DOMID_SELF, HYPERVISOR_event_channel_op

from .bridge import Bridge, format_mac, parse_mac
from .costs import NATIVE_ROUTINE
from .ring import BackRing, GuestMemory
from .xenbus_driver import XenbusBackend, XenbusBackendDriver

if TYPE_CHECKING:
    from .driver_kernel import NetKernel

__all__ = [
    "BACKEND_DIR",
    "COPY_BATCH",
    "DEFAULT_BRIDGE",
    "RX_QUEUE_LIMIT",
    "NetBack",
    "NetHardware",
    "TxToken",
    "Vif",
    "tx_request_problem",
]

#: dom0's backend directory for vifs (relative to /local/domain/0).
BACKEND_DIR: Final = "backend/vif"
DEFAULT_BRIDGE: Final = "xenbr0"
#: gnttab_copy operations per batch: what `GuestKernel.grant_copy` issues in one hypercall
#: (64 x 40 bytes in the 4 KiB argument page), so one batch is one GNTTABOP_copy call.
COPY_BATCH: Final = 64
assert COPY_BATCH * GNTTAB_COPY.size <= PAGE_SIZE
#: Frames a vif holds for its frontend while no receive buffer is posted.
RX_QUEUE_LIMIT: Final = 256


class NetHardware(Protocol):
    """What the simulation gives dom0 for networking (`k.os.hardware`)."""

    #: MPIC source of dom0's network interrupt (raised by `raise_net_irq`).
    net_pirq: int

    def link(self, domid: int, devid: int) -> Link:
        """The link model of vif (domid, devid): the wire from the bridge to it."""
        ...

    def raise_net_irq(self) -> None:
        """Raise `net_pirq` now (from SimPy context), e.g. `xen.device_interrupt`."""
        ...


def tx_request_problem(req: NetifTxRequest, mtu: int) -> str | None:
    """Why a tx request must be refused (answered NETIF_RSP_ERROR); None if it is fine."""
    if req.flags & NETTXF_more_data:
        return "fragmented packet (NETTXF_more_data): feature-sg is not offered"
    if req.size < ETH_HLEN:
        return f"a {req.size}-byte frame is shorter than the {ETH_HLEN}-byte Ethernet header"
    if req.offset + req.size > PAGE_SIZE:
        return f"frame at offset {req.offset} + {req.size} bytes runs past its page"
    if req.size - ETH_HLEN > mtu:
        return f"a {req.size - ETH_HLEN}-byte payload exceeds the vif's MTU {mtu}"
    return None


def _status(value: int) -> int:
    """A GNTST status as a signed number, however the caller handed it back."""
    return value - 0x10000 if 0x8000 <= value <= 0xFFFF else value


@dataclass(eq=False)
class TxToken:
    """A forwarded frame's tx request, answered when its last copy is consumed."""

    vif: Vif
    id: int
    copies: int


@dataclass(eq=False)
class _Rings:
    """A connected vif's shared rings as dom0 maps them, and its event channel."""

    tx: BackRing
    rx: BackRing
    tx_map: tuple[int, int]  # (dom0 gpa, grant handle)
    rx_map: tuple[int, int]
    port: int


class Vif(XenbusBackend["NetKernel"]):
    """The backend of one guest interface (frontend domid, devid); a bridge port."""

    def __init__(self, back: NetBack, domid: int, devid: int) -> None:
        super().__init__(back.k, "netback", BACKEND_DIR, domid, devid, f"vif{domid}.{devid}")
        self.back = back
        self.bridge_name = DEFAULT_BRIDGE
        self.mac: bytes | None = None
        self.link: Link | None = None
        self.mtu = 0
        self.rings: _Rings | None = None
        self.rx_queue: deque[tuple[bytes, TxToken]] = deque()
        # Counters.
        self.tx_frames = 0
        self.tx_bytes = 0
        self.rx_frames = 0
        self.rx_bytes = 0
        self.dropped = 0

    @property
    def name(self) -> str:
        return f"vif{self.domid}.{self.devid}"

    @property
    def connected(self) -> bool:
        return self.rings is not None

    def __repr__(self) -> str:
        return f"Vif({self.name}, {self.state.name})"

    # -- setup (the template methods of XenbusBackend) -------------------------------------
    def forget(self) -> None:
        self.back.forget(self.domid, self.devid)

    def own_nodes(self) -> list[str]:
        return ["bridge", "mac"]

    def setup(self, core: Core, v: dict[str, str | None]) -> None:
        """Take the link, publish what the frontend needs."""
        self.bridge_name = v[f"{self.path}/bridge"] or DEFAULT_BRIDGE
        mac = v[f"{self.path}/mac"]
        try:
            self.mac = parse_mac(mac) if mac is not None else None
            self.link = self.back.hardware.link(self.domid, self.devid)
        except (LookupError, ValueError) as e:
            self.fail(core, f"cannot set up: {e}")
            return
        self.mtu = self.link.params.mtu
        xb = self.xb
        xb.write(core, f"{self.path}/mtu", str(self.mtu))
        xb.write(core, f"{self.path}/feature-rx-copy", "1")
        self._init_wait(core)

    def unplug(self, core: Core, removed: bool) -> None:
        """Disconnect, and forget a removed vif."""
        self._disconnect(core, "device unplugged")
        if self.frontend_path:
            self._unwatch_otherend(core)
        if removed:
            self.forget()
        elif self.state != XenbusState.Closed:
            self._switch(core, XenbusState.Closed)

    def otherend_gone(self, core: Core) -> None:
        self._disconnect(core, "frontend gone")

    def frontend_closed(self, core: Core) -> None:
        self._disconnect(core, "frontend closed")
        self._switch(core, XenbusState.Closed)

    def ring_nodes(self) -> list[str]:
        return ["tx-ring-ref", "rx-ring-ref", "event-channel", "request-rx-copy"]

    def connect(self, core: Core, v: dict[str, str | None]) -> None:
        """Map both rings (grant, then a 4 KiB PTE each), bind the port, join the bridge."""
        if self.rings is not None or self.state != XenbusState.InitWait:
            return
        nums = self._numbers(core, v, ["tx-ring-ref", "rx-ring-ref", "event-channel"])
        if not nums:
            return
        tx_ref, rx_ref, evtchn = nums
        if v["request-rx-copy"] != "1":
            self.fail(core, "frontend did not request rx-copy, the only receive mode offered")
            return
        k = self.k
        results = k.grant_map_many(core, [(self.domid, tx_ref, False), (self.domid, rx_ref, False)])
        maps = [res for res in results if isinstance(res, tuple)]
        if len(maps) != 2:
            if maps:
                k.grant_unmap_many(core, maps)
            self.fail(core, f"mapping the ring grants failed (GNTST {results})")
            return
        for gpa, _handle in maps:
            k.map_4k(core, gpa)
        mem = self.back.begin(core)
        (tx_gpa, _), (rx_gpa, _) = maps
        try:
            port = k.evtchn_bind_interdomain(core, self.domid, evtchn)
        except KernelError as e:
            for gpa, _handle in maps:
                k.unmap_4k(core, gpa)
            k.grant_unmap_many(core, maps)
            self.fail(core, str(e))
            return
        self.rings = _Rings(
            BackRing(mem, tx_gpa, NETIF_TX_RING.entry_bytes),
            BackRing(mem, rx_gpa, NETIF_RX_RING.entry_bytes),
            maps[0],
            maps[1],
            port,
        )
        k.port_handlers[port] = self._on_event
        self.back.bridge(self.bridge_name).attach(self)
        self._switch(core, XenbusState.Connected)
        self._on_event(core, port)  # requests may have been pushed before we were bound

    def _disconnect(self, core: Core, why: str) -> None:
        """Leave the bridge, drop what waits, close the port, unmap both rings."""
        rings = self.rings
        if rings is None:
            return
        self.back.begin(core)
        self.rings = None
        self.back.bridge(self.bridge_name).detach(self)
        while self.rx_queue:
            frame, token = self.rx_queue.popleft()
            self.drop(core, len(frame), why)
            self.back.consumed(core, token)
        k = self.k
        k.evtchn_close(core, rings.port)
        for gpa, _handle in (rings.tx_map, rings.rx_map):
            k.unmap_4k(core, gpa)
        for st in k.grant_unmap_many(core, [rings.tx_map, rings.rx_map]):
            if _status(st) != GNTST_okay:
                self.fail(core, f"unmap of a ring grant failed ({gntst_name(_status(st))})")
        self.back.push_responses(core)

    def drop(self, core: Core, nbytes: int, why: str) -> None:
        """Count and record (net.drop, dev = this vif's devid) a frame dropped here."""
        self.dropped += 1
        self.k.emit(core, K.NET_DROP, self.devid, -1, nbytes, text=f"{self.name}: {why}")

    # -- the event -------------------------------------------------------------------------
    def _on_event(self, core: Core, _port: int) -> None:
        """The frontend notified: transmit what it queued, deliver into fresh buffers."""
        if self.rings is None:
            return
        core.charge(NATIVE_ROUTINE)
        self.back.begin(core)
        try:
            self._transmit(core)
            self.flush_rx(core)
        except RingError as e:
            self.fail(core, str(e))
        self.back.push_responses(core)

    def _transmit(self, core: Core) -> None:
        """Consume tx requests a batch at a time until the ring is empty (final check)."""
        assert self.rings is not None
        mem = self.back.mem
        assert mem is not None, "NetBack.begin was not called for this native call"
        ring = self.rings.tx
        while True:
            if not ring.unconsumed_requests() and not ring.final_check_for_requests():
                break
            batch: list[NetifTxRequest] = []
            while len(batch) < COPY_BATCH and ring.unconsumed_requests():
                batch.append(NetifTxRequest.unpack(ring.get_request()))
            for req_id, frame in self._copy_out(core, mem, batch):
                self.back.switch_frame(core, self, req_id, frame)

    def _copy_out(
        self, core: Core, mem: GuestMemory, batch: list[NetifTxRequest]
    ) -> list[tuple[int, bytes]]:
        """One GNTTABOP_copy for the batch's good requests; answer the refused ones.
        Returns the (request id, frame) of each one copied out."""
        assert self.rings is not None
        core.charge(NATIVE_ROUTINE * len(batch))
        problems = [tx_request_problem(req, self.mtu) for req in batch]
        good = [req for req, p in zip(batch, problems) if p is None]
        pages = self.back.bounce_pages(core, len(good))
        ops = [
            {
                "source_ref": req.gref,
                "source_domid": self.domid,
                "source_offset": req.offset,
                "dest_gmfn": page >> 12,
                "dest_domid": DOMID_SELF,
                "dest_offset": 0,
                "len": req.size,
                "flags": GNTCOPY_source_gref,
            }
            for req, page in zip(good, pages)
        ]
        statuses = iter(self.k.grant_copy(core, ops) if ops else [])
        page_of = iter(pages)
        frames: list[tuple[int, bytes]] = []
        for req, problem in zip(batch, problems):
            if problem is None:
                st, page = _status(next(statuses)), next(page_of)
                if st == GNTST_okay:
                    frames.append((req.id, mem.read(page, req.size)))
                    self.tx_frames += 1
                    self.tx_bytes += req.size
                    continue
                problem = f"copying tx grant {req.gref} failed ({gntst_name(st)})"
            self.drop(core, req.size, problem)
            self.respond_tx(core, req.id, NETIF_RSP_ERROR)
        return frames

    def respond_tx(self, core: Core, req_id: int, status: int) -> None:
        """Answer tx request `req_id` (published by the next `NetBack.push_responses`)."""
        if self.rings is None:
            return  # the frontend went away meanwhile: nobody to answer
        self.rings.tx.put_response(NetifTxResponse(req_id, status).pack())
        self.back.want_push(self)

    def push_tx(self, core: Core) -> None:
        """Publish the tx responses written so far; notify if the frontend asked."""
        if self.rings is None:
            return
        if self.rings.tx.push_responses_and_check_notify():
            self.k.send(core, self.rings.port)

    # -- receive ---------------------------------------------------------------------------
    def queue_rx(self, core: Core, arrivals: list[tuple[bytes, TxToken]]) -> None:
        """Frames the link delivered: into the queue, into posted buffers, and drop what
        is left beyond `RX_QUEUE_LIMIT` (the newest first)."""
        for frame, token in arrivals:
            if len(frame) > PAGE_SIZE:
                self.drop(core, len(frame), "frame larger than a page (feature-sg not offered)")
            elif self.rings is None:
                self.drop(core, len(frame), "interface not connected")
            else:
                self.rx_queue.append((frame, token))
                continue
            self.back.consumed(core, token)
        self.flush_rx(core)
        while len(self.rx_queue) > RX_QUEUE_LIMIT:
            frame, token = self.rx_queue.pop()
            self.drop(core, len(frame), "rx ring empty")
            self.back.consumed(core, token)

    def flush_rx(self, core: Core) -> None:
        """Copy queued frames into posted buffers, a batch per GNTTABOP_copy, respond,
        and notify once; with frames left and no buffer, ask to be told of new ones."""
        if self.rings is None or not self.rx_queue:
            return
        mem = self.back.mem
        assert mem is not None, "NetBack.begin was not called for this native call"
        ring = self.rings.rx
        notify = False
        while self.rx_queue:
            n = min(len(self.rx_queue), COPY_BATCH, ring.unconsumed_requests())
            if not n:
                if ring.final_check_for_requests():
                    continue  # buffers were posted as we looked
                break
            core.charge(NATIVE_ROUTINE * n)
            reqs = [NetifRxRequest.unpack(ring.get_request()) for _ in range(n)]
            items = [self.rx_queue.popleft() for _ in range(n)]
            frames = [frame for frame, _token in items]
            pages = self.back.bounce_pages(core, n)
            for page, frame in zip(pages, frames):
                mem.write(page, frame)
            ops = [
                {
                    "source_gmfn": page >> 12,
                    "source_domid": DOMID_SELF,
                    "source_offset": 0,
                    "dest_ref": req.gref,
                    "dest_domid": self.domid,
                    "dest_offset": 0,
                    "len": len(frame),
                    "flags": GNTCOPY_dest_gref,
                }
                for req, page, frame in zip(reqs, pages, frames)
            ]
            statuses = self.k.grant_copy(core, ops)
            for req, frame, st in zip(reqs, frames, statuses):
                ok = _status(st) == GNTST_okay
                if ok:
                    self.rx_frames += 1
                    self.rx_bytes += len(frame)
                # A failed copy is answered with an error: the frontend records the drop.
                status = len(frame) if ok else NETIF_RSP_ERROR
                ring.put_response(NetifRxResponse(req.id, 0, 0, status).pack())
            notify |= ring.push_responses_and_check_notify()
            for _frame, token in items:
                self.back.consumed(core, token)
        if notify:
            self.k.send(core, self.rings.port)


class NetBack(XenbusBackendDriver["NetKernel", Vif]):
    """dom0's netback driver: the vifs under backend/vif, their bridges, and the network
    interrupt that brings link arrivals into dom0.

    `hardware` defaults to `k.os.hardware` (see `NetHardware`); pass another to inject."""

    def __init__(self, k: NetKernel, hardware: NetHardware | None = None) -> None:
        super().__init__(k, "netback", BACKEND_DIR)
        self._hardware = hardware
        self.bridges: dict[str, Bridge[Vif]] = {}
        self.irq_port = -1
        #: Link arrivals not yet taken into dom0: (egress vif, frame, token), in order.
        self.arrivals: deque[tuple[Vif, bytes, TxToken]] = deque()
        self._to_push: list[Vif] = []
        self._kicked = False
        self._bounce: list[int] = []
        #: dom0 memory as the native call in progress sees it (set by `begin`).
        self.mem: GuestMemory | None = None
        self.error = ""

    @property
    def hardware(self) -> NetHardware:
        if self._hardware is not None:
            return self._hardware
        hw = self.k.os.hardware  # the machine's devices, given to dom0
        if hw is None:
            raise KernelError(f"d{self.k.domid}: netback: dom0 has no network devices")
        return hw

    def start(self, core: Core) -> None:
        """Bind the network interrupt, then follow backend/vif."""
        k = self.k
        pirq = self.hardware.net_pirq
        rc, out = k.op(
            core,
            HYPERVISOR_event_channel_op,
            EVTCHNOP_bind_pirq,
            EVTCHN_BIND_PIRQ,
            pirq=pirq,
        )
        if rc < 0:
            self.error = f"EVTCHNOP_bind_pirq of pirq {pirq} failed ({rc})"
            k.console(core, f"netback: {self.error}")
            return
        self.irq_port = out["port"]
        k.port_handlers[self.irq_port] = self._on_irq
        self.watch_devices(core)

    def begin(self, core: Core) -> GuestMemory:
        """Start a native call that touches rings: one fresh view of dom0's memory (a
        `KernelMemory` lives for one native call) for every connected vif's rings."""
        self.mem = self.k.memory(core)
        for vif in self.devices.values():
            if vif.rings is not None:
                vif.rings.tx.sring.mem = vif.rings.rx.sring.mem = self.mem
        return self.mem

    def vif(self, domid: int, devid: int) -> Vif:
        """The backend of (domid, devid); KeyError if there is none (yet)."""
        return self.device(domid, devid)

    def bridge(self, name: str) -> Bridge[Vif]:
        """The bridge called `name`, created at first use (``brctl addbr``)."""
        br = self.bridges.get(name)
        if br is None:
            br = self.bridges[name] = Bridge(name)
        return br

    def new_device(self, domid: int, devid: int) -> Vif:
        return Vif(self, domid, devid)

    # -- the data path ---------------------------------------------------------------------
    def bounce_pages(self, core: Core, n: int) -> list[int]:
        """`n` dom0 pages to stage frames in (allocated once, then reused)."""
        if n > COPY_BATCH:
            raise ValueError(f"{n} bounce pages asked for; a batch is at most {COPY_BATCH}")
        pool = self.k.pool
        assert pool is not None, "dom0's kernel has no page pool"
        while len(self._bounce) < n:
            self._bounce.append(pool.alloc())
        return self._bounce[:n]

    def switch_frame(self, core: Core, ingress: Vif, req_id: int, frame: bytes) -> None:
        """A frame from a guest: let its bridge decide, put it on each egress link; its
        tx request is answered when the last copy is consumed."""
        fwd = self.bridge(ingress.bridge_name).forward(frame, ingress)
        token = TxToken(ingress, req_id, len(fwd.ports) + 1)  # + 1 until all are sent
        now = core.now_ns()
        if not fwd.ports and fwd.how == "flood":
            # No other port yet (the peer's vif is not plugged): lost, but recorded.
            ingress.drop(
                core,
                len(frame),
                f"no other port on bridge {ingress.bridge_name} "
                f"(to {format_mac(frame[:6])} from {ingress.name})",
            )
        for port in fwd.ports:
            assert port.link is not None
            deliver = self._deliverer(port, token)
            if not port.link.send(frame, deliver, now_ns=now):
                port.drop(
                    core,
                    len(frame),
                    f"a {len(frame) - ETH_HLEN}-byte payload exceeds link MTU "
                    f"{port.link.params.mtu} (from {ingress.name}, to "
                    f"{format_mac(frame[:6])})",
                )
                self.consumed(core, token)
        self.consumed(core, token)

    def _deliverer(self, vif: Vif, token: TxToken) -> Callable[[bytes], None]:
        return lambda frame: self.deliver_later(frame, vif, token)

    def consumed(self, core: Core, token: TxToken) -> None:
        """One copy of a forwarded frame was delivered or dropped; the last one answers
        the sender's tx request."""
        token.copies -= 1
        if token.copies == 0:
            token.vif.respond_tx(core, token.id, NETIF_RSP_OKAY)
        elif token.copies < 0:
            raise AssertionError(f"tx request {token.id} of {token.vif.name} consumed twice")

    def want_push(self, vif: Vif) -> None:
        if not any(v is vif for v in self._to_push):
            self._to_push.append(vif)

    def push_responses(self, core: Core) -> None:
        """Publish every vif's pending tx responses (and notify those frontends)."""
        while self._to_push:
            self._to_push.pop(0).push_tx(core)

    def deliver_later(self, frame: bytes, vif: Vif, token: TxToken) -> None:
        """A link delivered `frame` to `vif` (SimPy context, no VCPU): queue it and raise
        the network interrupt, once per burst."""
        self.arrivals.append((vif, frame, token))
        if not self._kicked:
            self._kicked = True
            self.hardware.raise_net_irq()

    def _on_irq(self, core: Core, _port: int) -> None:
        """The network interrupt: hand every arrival to its vif, vif by vif."""
        core.charge(NATIVE_ROUTINE)
        self.begin(core)
        self._kicked = False
        per_vif: dict[int, tuple[Vif, list[tuple[bytes, TxToken]]]] = {}  # insertion-ordered
        while self.arrivals:
            vif, frame, token = self.arrivals.popleft()
            per_vif.setdefault(id(vif), (vif, []))[1].append((frame, token))
        for vif, items in per_vif.values():
            try:
                vif.queue_rx(core, items)
            except RingError as e:
                vif.fail(core, str(e))
        self.push_responses(core)
