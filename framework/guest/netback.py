"""netback: dom0's network backend, one `Vif` per guest interface, joined by bridges.

dom0 watches `backend/vif`; every `<frontend domid>/<devid>` below it becomes a `Vif`
(Linux's ``vif<domid>.<devid>``). The vif takes its link model, publishes `mtu` and
`feature-rx-copy`, goes InitWait, maps the frontend's tx and rx rings (grant map into the
foreign area plus a 4 KiB PTE) once the frontend is Initialised, binds its event channel,
joins its bridge and Connects.

Transmit (guest -> bridge), on the vif's event: tx requests are consumed in batches; each
batch's frames are copied out of the guest with one GNTTABOP_copy call (source: the
frontend's grant, destination: a dom0 page), and each frame goes to `NetSwitch` (the
bridge, the wires, and when its tx request is answered). A request netback refuses is
answered NETIF_RSP_ERROR at once: the frontend, which still has the frame, records it.

Receive (link -> guest): the network interrupt hands the frames links delivered to their
vifs (`queue_rx`); while the frontend has receive buffers posted they are copied in (one
GNTTABOP_copy call per batch, source a dom0 page, destination the posted grant) and the rx
responses written. Frames for a vif without posted buffers wait in the backend, at most
`RX_QUEUE_LIMIT` of them; beyond that the newest are dropped ("rx ring empty").

Unplug: every request still on the tx ring is taken, dropped and answered
NETIF_RSP_DROPPED; every request in flight elsewhere is answered NETIF_RSP_OKAY (its
copies carry its fate); frames waiting for a buffer are dropped, and so are those whose
rx response the frontend had not taken: the frontend sets the ring's `rsp_event` to its
`rsp_cons` + 1 whenever it goes idle, so dom0 knows which, and turns those responses
into NETIF_RSP_DROPPED, which a frontend still reading them drops silently.

A batch is at most `COPY_BATCH` operations: the gnttab_copy structures of one call must
fit the 4 KiB argument page (and the kernel issues 64 per call). The frames a batch stages in dom0 live in that many bounce
pages, which the backend allocates once and reuses (natives never run concurrently, so
one set serves every vif).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

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
    NETIF_RSP_DROPPED,
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
from framework.xen.public.io.ring import RING_IDX_MASK
from framework.xen.public.io.xenbus import XenbusState
from framework.xen.public.xen import DOMID_SELF, HYPERVISOR_event_channel_op

from .bridge import ETH_ALEN, Bridge, parse_mac
from .costs import NATIVE_ROUTINE
from .netstream import frame_id
from .netswitch import NetHardware, NetSwitch, TxToken
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


def _before(idx: int, cons: int) -> bool:
    """RING_IDX `idx` comes before `cons` (free-running counters, modulo 2**32)."""
    return ((cons - idx - 1) & RING_IDX_MASK) < 1 << 31


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
        self.uplink: Link | None = None
        self.mtu = 0
        self.rings: _Rings | None = None
        self.rx_queue: deque[tuple[bytes, TxToken]] = deque()
        #: Forwarded frames whose tx request is not answered yet (insertion-ordered).
        self.tx_pending: dict[TxToken, None] = {}
        #: (rx RING_IDX, frame) of responses the frontend may not have taken yet.
        self.rx_given: deque[tuple[int, bytes]] = deque()
        # Counters.
        self.tx_frames = 0
        self.tx_bytes = 0
        self.rx_frames = 0
        self.rx_bytes = 0
        self.dropped = 0  # frames (or copies) lost here, recorded or not
        self.refused = 0  # tx requests answered NETIF_RSP_ERROR

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
            self.uplink = self.back.hardware.uplink(self.domid, self.devid)
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
        """Settle both rings' books (see the module doc), leave the bridge, close the
        port, unmap both rings."""
        rings = self.rings
        if rings is None:
            return
        back = self.back
        mem = back.begin(core)
        for token in list(self.tx_pending):
            self.answer(core, token, NETIF_RSP_OKAY)  # in flight: its copies carry its fate
        try:
            self._drop_unsent(core, mem, why)
            self._retract_rx(core, why)
        except RingError as e:
            self._say(core, str(e))
        self.push_tx(core)  # while the ring is still mapped
        self.rings = None
        back.bridge(self.bridge_name).detach(self)
        while self.rx_queue:
            frame, token = self.rx_queue.popleft()
            self.drop_copy(core, frame, why)
            back.switch.consumed(core, token)
        k = self.k
        k.evtchn_close(core, rings.port)
        for gpa, _handle in (rings.tx_map, rings.rx_map):
            k.unmap_4k(core, gpa)
        for st in k.grant_unmap_many(core, [rings.tx_map, rings.rx_map]):
            if _status(st) != GNTST_okay:
                self.fail(core, f"unmap of a ring grant failed ({gntst_name(_status(st))})")
        back.push_responses(core)

    def _drop_unsent(self, core: Core, mem: GuestMemory, why: str) -> None:
        """Take every request still on the tx ring: its frame is dropped here (a refused
        one is answered NETIF_RSP_ERROR, for the frontend to record)."""
        assert self.rings is not None
        ring = self.rings.tx
        while ring.unconsumed_requests():
            n = min(COPY_BATCH, ring.unconsumed_requests())
            batch = [NetifTxRequest.unpack(ring.get_request()) for _ in range(n)]
            for req_id, frame in self._copy_out(core, mem, batch):
                self.drop(core, frame, f"{why} before the frame was sent")
                self.respond_tx(core, req_id, NETIF_RSP_DROPPED)

    def _retract_rx(self, core: Core, why: str) -> None:
        """Drop the frames of rx responses the frontend has not taken, and make those
        responses NETIF_RSP_DROPPED."""
        assert self.rings is not None
        sring = self.rings.rx.sring
        cons = sring.rsp_event - 1  # the frontend's rsp_cons when it last went idle
        for idx, frame in self.rx_given:
            if _before(idx, cons):
                continue
            self.drop_copy(core, frame, f"{why} before the frontend took the frame")
            rsp = NetifRxResponse.unpack(sring.read_entry(idx))
            sring.write_entry(idx, rsp._replace(status=NETIF_RSP_DROPPED).pack())
        self.rx_given.clear()

    def drop(self, core: Core, frame: bytes, why: str) -> None:
        """Count a frame dropped here; a workload packet is recorded (net.drop, dev = this
        vif's devid, pkt = its frame id)."""
        self.dropped += 1
        pkt = frame_id(frame)
        if pkt >= 0:
            self.k.emit(core, K.NET_DROP, self.devid, pkt, len(frame), text=f"{self.name}: {why}")

    def drop_copy(self, core: Core, frame: bytes, why: str) -> None:
        """A copy of `frame` on its way to this vif is lost: the frame's drop when this vif
        is its addressee, a discarded flood copy (counted, not recorded) otherwise."""
        if self.mac is not None and frame[:ETH_ALEN] == self.mac:
            self.drop(core, frame, why)
        else:
            self.dropped += 1

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
                self.back.switch.switch(core, self, req_id, frame)

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
            self.refused += 1
            if self.refused == 1:  # once per vif, as Linux rate-limits it
                self._say(core, f"tx request {req.id} refused: {problem}")
            self.respond_tx(core, req.id, NETIF_RSP_ERROR)
        return frames

    def answer(self, core: Core, token: TxToken, status: int) -> None:
        """Answer a forwarded frame's tx request, once."""
        if token.answered:
            return
        token.answered = True
        del self.tx_pending[token]
        self.respond_tx(core, token.id, status)

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
        switch = self.back.switch
        for frame, token in arrivals:
            if len(frame) > PAGE_SIZE:
                self.drop_copy(core, frame, "frame larger than a page (feature-sg not offered)")
            elif self.rings is None:
                self.drop_copy(core, frame, "interface not connected")
            else:
                self.rx_queue.append((frame, token))
                continue
            switch.consumed(core, token)
        self.flush_rx(core)
        while len(self.rx_queue) > RX_QUEUE_LIMIT:
            frame, token = self.rx_queue.pop()
            self.drop_copy(core, frame, "rx ring empty")
            switch.consumed(core, token)

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
                if _status(st) == GNTST_okay:
                    self.rx_frames += 1
                    self.rx_bytes += len(frame)
                    idx = ring.put_response(NetifRxResponse(req.id, 0, 0, len(frame)).pack())
                    self.rx_given.append((idx, frame))
                else:  # the frontend gets an error response and nothing to record
                    why = f"copying into rx grant {req.gref} failed ({gntst_name(_status(st))})"
                    self.drop_copy(core, frame, why)
                    ring.put_response(NetifRxResponse(req.id, 0, 0, NETIF_RSP_ERROR).pack())
            notify |= ring.push_responses_and_check_notify()
            for _frame, token in items:
                self.back.switch.consumed(core, token)
        cons = ring.sring.rsp_event - 1  # what the frontend had taken when it went idle
        while self.rx_given and _before(self.rx_given[0][0], cons):
            self.rx_given.popleft()
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
        self.switch = NetSwitch(self)
        self.irq_port = -1
        self._to_push: list[Vif] = []
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
        k.port_handlers[self.irq_port] = self.switch.on_irq
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

    def want_push(self, vif: Vif) -> None:
        if not any(v is vif for v in self._to_push):
            self._to_push.append(vif)

    def push_responses(self, core: Core) -> None:
        """Publish every vif's pending tx responses (and notify those frontends)."""
        while self._to_push:
            self._to_push.pop(0).push_tx(core)
