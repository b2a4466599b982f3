"""netfront: a guest's virtual network interface, a tx and an rx netif ring shared with
dom0's netback.

The xenbus handshake is Linux's: seeing the backend in InitWait, the frontend allocates
both ring pages, grants them to the backend, allocates one unbound event channel for
both rings, posts its receive buffers, publishes `tx-ring-ref`, `rx-ring-ref`,
`event-channel` and `request-rx-copy` = 1 and goes Initialised; seeing the backend
Connected it reads the backend's `mtu` (1500 when absent), goes Connected and, as Linux's
netfront does, sends a gratuitous ARP so the bridge learns its MAC at once.

Transmit: each frame is copied into a page of its own, granted read-only to the backend
(it copies the frame out with GNTTABOP_copy), and described by one tx request. Frames
that find the ring full wait in the frontend, in order, and go out as tx responses free
slots, so nothing is lost; the first such wait of an episode records `ring.full`. A tx
response ends the grant (which must succeed: a copying backend never maps it) and frees
the page. NETIF_RSP_DROPPED means the backend took the frame and recorded its drop; any
other error means it refused the request, and the frontend, which still has the frame,
records the drop (`net.drop` with the frame's id, see `netswitch`). When the backend
goes, the frames it left unanswered, and those still waiting, are recorded dropped here.

Receive ("rx-copy", the only mode offered): the frontend keeps the rx ring stocked with
empty pages, each granted writable to the backend, which copies an arriving frame into
one and answers with its length (an error status: the backend failed or dropped the copy
and recorded it). The frame is handed to the receivers; the page, still granted, is posted
again at once (the grant stays valid while the buffer cycles, since the backend never
maps it). Going idle, the frontend sets the ring's `rsp_event` to rsp_cons + 1 (the
ring's final check), which tells the backend which responses it has taken.

No scatter-gather (`feature-sg` is not requested), so a frame must fit one page: the MTU
used is min(backend `mtu`, 4096 - 14).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from framework.errors import NetfrontError, RingProtocolError
from framework.hw970.core import Core
from framework.hw970.link import ETH_HLEN
from framework.hw970.memory import PAGE_SIZE
from framework.trace.ids import K
from framework.xen.public.io.netif import (
    NETIF_RSP_DROPPED,
    NETIF_RSP_OKAY,
    NETIF_RX_RING,
    NETIF_RX_RING_SIZE,
    NETIF_TX_RING,
    NETIF_TX_RING_SIZE,
    NetifRxRequest,
    NetifRxResponse,
    NetifTxRequest,
    NetifTxResponse,
    NETRXF_more_data,
)
from framework.xen.public.io.xenbus import XenbusState

from .bridge import ETH_ALEN, gratuitous_arp, parse_mac
from .costs import NATIVE_ROUTINE
from .netstream import FRAME_ID_BYTES, frame_id
from .ring import FrontRing, SharedRing
from .xenbus import read_nodes
from .xenbus_driver import XenbusFrontend

if TYPE_CHECKING:
    from .driver_kernel import NetKernel

__all__ = [
    "DEFAULT_MTU",
    "MAX_MTU",
    "MIN_RX_BUFFERS",
    "NetFront",
    "ReceiveCallback",
]

#: What the frontend assumes when the backend publishes no `mtu` (ETH_DATA_LEN).
DEFAULT_MTU: Final = 1500
#: The largest payload a one-page frame can carry (no scatter-gather).
MAX_MTU: Final = PAGE_SIZE - ETH_HLEN
#: Fewer posted receive buffers than this and bursts would be dropped for want of room
#: (Linux netfront's starting rx_target is 64).
MIN_RX_BUFFERS: Final = 64

ReceiveCallback = Callable[[Core, bytes], None]


@dataclass(eq=False)
class _TxSlot:
    """A frame on the tx ring: its page, grant and request id (Linux's tx shadow)."""

    id: int
    gpa: int
    ref: int
    size: int


@dataclass(eq=False)
class _RxBuffer:
    """A receive page: granted to the backend for the life of the connection; its id is
    fixed, so ids of posted buffers are unique by construction."""

    id: int
    gpa: int
    ref: int


class NetFront(XenbusFrontend["NetKernel"]):
    """One vif of a guest (`devid` = the xenbus device number) whose frontend directory
    is `path` (e.g. `device/vif/0`); its event channel is bound to VCPU `vcpu` (where
    sends and receives run)."""

    def __init__(
        self,
        k: NetKernel,
        devid: int,
        path: str,
        rx_buffers: int = NETIF_RX_RING_SIZE,
        vcpu: int = 0,
    ) -> None:
        if not MIN_RX_BUFFERS <= rx_buffers <= NETIF_RX_RING_SIZE:
            raise ValueError(
                f"netfront {devid}: {rx_buffers} receive buffers; need "
                f"{MIN_RX_BUFFERS}..{NETIF_RX_RING_SIZE} (the rx ring's size)"
            )
        super().__init__(k, "netfront", devid, path, vcpu)
        self.rx_buffers = rx_buffers
        #: This interface's MAC as the toolstack published it (None if it did not).
        self.mac: bytes | None = None
        self.mtu = DEFAULT_MTU
        # The rings.
        self.tx: FrontRing | None = None
        self.rx: FrontRing | None = None
        self.tx_gpa = -1
        self.rx_gpa = -1
        self.tx_ring_ref = -1
        self.rx_ring_ref = -1
        # Transmit.
        self._tx_ids = list(range(NETIF_TX_RING_SIZE))  # free ids (a sorted list is a heap)
        self.tx_inflight: dict[int, _TxSlot] = {}
        self.backlog: deque[bytes] = deque()  # frames waiting for a free tx slot
        self._full_episode = False
        # Receive.
        self._rx_all: list[_RxBuffer] = []
        self._rx_posted: dict[int, _RxBuffer] = {}
        self._rx_spare: deque[_RxBuffer] = deque()  # not posted: repost at the next refill
        # Callbacks.
        self._receivers: list[ReceiveCallback] = []
        self._tx_space_callbacks: list[Callable[[Core], None]] = []
        # Counters.
        self.tx_packets = 0
        self.tx_bytes = 0
        self.tx_errors = 0
        self.rx_packets = 0
        self.rx_bytes = 0
        self.rx_errors = 0

    @property
    def max_frame(self) -> int:
        """The longest frame `send` accepts: header plus MTU."""
        return ETH_HLEN + self.mtu

    @property
    def rx_posted(self) -> int:
        """Receive buffers the backend may fill now."""
        return len(self._rx_posted)

    def tx_space(self) -> int:
        """Frames `send` would put on the ring at once (0 while not connected, or while
        frames wait in the frontend)."""
        if not self.connected or self.tx is None or self.backlog:
            return 0
        return self.tx.free_requests()

    # -- registration ----------------------------------------------------------------------
    def add_receiver(self, callback: ReceiveCallback) -> None:
        """`callback(core, frame)` runs for every frame received, in arrival order."""
        self._receivers.append(callback)

    def add_tx_space_listener(self, callback: Callable[[Core], None]) -> None:
        """`callback(core)` runs after tx responses have freed ring slots (and nothing
        waits in the frontend): a sender's cue to send more."""
        self._tx_space_callbacks.append(callback)

    # -- xenbus handshake (the template methods of XenbusFrontend) -------------------------
    def own_nodes(self) -> list[str]:
        return ["mac"]

    def got_own_nodes(self, core: Core, v: dict[str, str | None]) -> None:
        mac = v[f"{self.path}/mac"]
        if mac is not None:
            self._set_mac(core, mac)

    def _set_mac(self, core: Core, text: str) -> None:
        try:
            self.mac = parse_mac(text)
        except ValueError as e:
            self.fail(core, str(e))

    def setup_rings(self, core: Core) -> None:
        k = self.k
        assert k.pool is not None, "the kernel has no page pool"
        mem = k.memory(core)
        self.tx_gpa, self.rx_gpa = k.pool.alloc(), k.pool.alloc()
        SharedRing.init(mem, self.tx_gpa, NETIF_TX_RING.entry_bytes)
        SharedRing.init(mem, self.rx_gpa, NETIF_RX_RING.entry_bytes)
        self.tx = FrontRing(mem, self.tx_gpa, NETIF_TX_RING.entry_bytes)
        self.rx = FrontRing(mem, self.rx_gpa, NETIF_RX_RING.entry_bytes)
        grants = self.grants
        self.tx_ring_ref = grants.alloc_ref()
        grants.grant_access(self.tx_ring_ref, self.backend_id, self.tx_gpa >> 12, False)
        self.rx_ring_ref = grants.alloc_ref()
        grants.grant_access(self.rx_ring_ref, self.backend_id, self.rx_gpa >> 12, False)
        for i in range(self.rx_buffers):
            gpa = k.pool.alloc()
            ref = grants.alloc_ref()
            grants.grant_access(ref, self.backend_id, gpa >> 12, False)
            buf = _RxBuffer(i, gpa, ref)
            self._rx_all.append(buf)
            self._rx_spare.append(buf)
        self._refill_rx(core, notify=False)  # the backend has no port yet: it will look

    def ring_nodes(self) -> list[tuple[str, str]]:
        return [
            ("tx-ring-ref", str(self.tx_ring_ref)),
            ("rx-ring-ref", str(self.rx_ring_ref)),
            ("event-channel", str(self.port)),
            ("request-rx-copy", "1"),
        ]

    def backend_connected(self, core: Core) -> None:
        b = self.backend_path
        read_nodes(core, self.xb, [f"{b}/mtu", f"{b}/mac"], self._got_backend_nodes)

    def _got_backend_nodes(self, core: Core, v: dict[str, str | None]) -> None:
        if self.state != XenbusState.Initialised:
            return  # a second Connected event raced the first one's reads
        mtu = v[f"{self.backend_path}/mtu"]
        if mtu is not None:
            if not mtu.isdigit() or int(mtu) < 1:
                self.fail(core, f"backend mtu {mtu!r} is not a positive number")
                return
            self.mtu = min(int(mtu), MAX_MTU)
        mac = v[f"{self.backend_path}/mac"]
        if self.mac is None and mac is not None:
            self._set_mac(core, mac)
        self._connected(core)

    def on_connected(self, core: Core) -> None:
        if self.mac is not None:
            self.send(core, gratuitous_arp(self.mac))  # let the bridge learn our MAC

    # -- transmit --------------------------------------------------------------------------
    def send(self, core: Core, frame: bytes) -> bool:
        """Transmit `frame` (Ethernet header + payload). True when it went on the ring at
        once, False when it waits in the frontend for a free slot (it will still go)."""
        if not self.connected or self._close_wanted:
            raise NetfrontError(
                f"netfront {self.devid} is {self.state.name}"
                f"{' and closing' if self._close_wanted else ''}: nothing can be sent"
            )
        if not ETH_HLEN <= len(frame) <= self.max_frame:
            raise NetfrontError(
                f"netfront {self.devid}: a {len(frame)}-byte frame; frames are "
                f"{ETH_HLEN}..{self.max_frame} bytes (header + MTU {self.mtu})"
            )
        core.charge(NATIVE_ROUTINE)
        ring = self._ring(core, self.tx)
        if self.backlog or ring.full():
            self.backlog.append(bytes(frame))
            if not self._full_episode:
                self._full_episode = True
                self.k.emit(core, K.RING_FULL, self.devid, text="netif tx")
            return False
        self._put_tx(core, ring, frame)
        if ring.push_requests_and_check_notify():
            self.k.send(core, self.port)
        return True

    def _put_tx(self, core: Core, ring: FrontRing, frame: bytes) -> None:
        k = self.k
        assert k.pool is not None
        gpa = k.pool.alloc()
        ring.sring.mem.write(gpa, frame)
        grants = self.grants
        ref = grants.alloc_ref()
        grants.grant_access(ref, self.backend_id, gpa >> 12, True)  # the backend only reads
        tx_id = heapq.heappop(self._tx_ids)
        ring.put_request(NetifTxRequest(ref, 0, 0, tx_id, len(frame)).pack())
        self.tx_inflight[tx_id] = _TxSlot(tx_id, gpa, ref, len(frame))
        self.tx_packets += 1
        self.tx_bytes += len(frame)

    def _flush_backlog(self, core: Core) -> None:
        """Move waiting frames into freed slots, push, notify if asked to."""
        if not self.backlog:
            return
        ring = self._ring(core, self.tx)
        moved = False
        while self.backlog and not ring.full():
            self._put_tx(core, ring, self.backlog.popleft())
            moved = True
        if not self.backlog:
            self._full_episode = False
        if moved and ring.push_requests_and_check_notify():
            self.k.send(core, self.port)

    def _tx_done(self, core: Core, rsp: NetifTxResponse) -> None:
        slot = self.tx_inflight.pop(rsp.id, None)
        if slot is None:
            raise RingProtocolError(f"tx response for id {rsp.id}, which is not outstanding")
        if rsp.status == NETIF_RSP_DROPPED:
            self.tx_errors += 1  # the backend took the frame and recorded its drop
        elif rsp.status != NETIF_RSP_OKAY:
            self._tx_lost(core, slot, f"the backend refused it (status {rsp.status})")
        self._free_tx(core, slot)

    def _free_tx(self, core: Core, slot: _TxSlot) -> None:
        """End a tx slot's grant, free its page and its id."""
        k = self.k
        assert k.pool is not None
        if self._end_grant(core, slot.ref):
            k.pool.free(slot.gpa)  # a page the backend still maps is never reused
        heapq.heappush(self._tx_ids, slot.id)

    def _tx_lost(self, core: Core, slot: _TxSlot, why: str) -> None:
        """A frame this end still holds will never be sent: count it, and record a
        workload packet's drop with its id (read from the frame in its page)."""
        head = self.k.memory(core).read(slot.gpa, min(slot.size, FRAME_ID_BYTES))
        self._frame_lost(core, head, slot.size, why)

    def _frame_lost(self, core: Core, head: bytes, size: int, why: str) -> None:
        self.tx_errors += 1
        pkt = frame_id(head)
        if pkt >= 0:
            self.k.emit(core, K.NET_DROP, self.devid, pkt, size, text=f"netfront tx: {why}")

    def _end_grant(self, core: Core, ref: int) -> bool:
        """End access to `ref` and free it; False (the ref kept for a retry) when the
        backend still has it mapped, which a copying backend never should."""
        grants = self.grants
        if grants.end_access(ref):
            grants.free_ref(ref)
            return True
        self.busy_refs.append(ref)
        self.grant_errors += 1
        self.k.console(core, f"{self.label}: grant {ref} is still mapped by the backend")
        return False

    # -- receive ---------------------------------------------------------------------------
    def _refill_rx(self, core: Core, notify: bool = True) -> None:
        """Post every spare buffer the ring has room for; notify if the backend asked."""
        if not self._rx_spare or self.rx is None:
            return
        ring = self._ring(core, self.rx)
        while self._rx_spare and not ring.full():
            buf = self._rx_spare.popleft()
            ring.put_request(NetifRxRequest(buf.id, buf.ref).pack())
            self._rx_posted[buf.id] = buf
        if ring.push_requests_and_check_notify() and notify:
            self.k.send(core, self.port)

    def _rx_done(self, core: Core, rsp: NetifRxResponse, frames: list[bytes]) -> None:
        buf = self._rx_posted.pop(rsp.id, None)
        if buf is None:
            raise RingProtocolError(f"rx response for id {rsp.id}, which is not posted")
        self._rx_spare.append(buf)
        if rsp.status < 0:
            self.rx_errors += 1  # a copy the backend failed or dropped: it recorded it
            return
        problem = ""
        if rsp.flags & NETRXF_more_data:
            problem = "fragmented frame (NETRXF_more_data) but feature-sg was not requested"
        elif rsp.status < ETH_HLEN:
            problem = f"a {rsp.status}-byte frame is shorter than the Ethernet header"
        elif rsp.offset + rsp.status > PAGE_SIZE:
            problem = f"frame at offset {rsp.offset} + {rsp.status} bytes runs past its page"
        assert self.rx is not None
        mem = self.rx.sring.mem
        if problem:
            self.rx_errors += 1
            head = mem.read(buf.gpa, FRAME_ID_BYTES)  # what of the frame the page holds
            pkt = frame_id(head)
            if pkt >= 0 and head[:ETH_ALEN] == self.mac:
                text = f"netfront rx: {problem}"
                self.k.emit(core, K.NET_DROP, self.devid, pkt, max(rsp.status, 0), text=text)
            return
        frames.append(mem.read(buf.gpa + rsp.offset, rsp.status))
        self.rx_packets += 1
        self.rx_bytes += rsp.status

    # -- the event -------------------------------------------------------------------------
    def _ring(self, core: Core, ring: FrontRing | None) -> FrontRing:
        """A ring, reached through this native call's view of memory."""
        assert ring is not None
        ring.sring.mem = self.k.memory(core)
        return ring

    def _on_event(self, core: Core, _port: int) -> None:
        """The backend notified: reap tx responses, take received frames, refill the rx
        ring, and only then run the callbacks (which may send)."""
        if self.tx is None or self.rx is None:
            return
        core.charge(NATIVE_ROUTINE)
        self._retry_busy_refs(core)
        frames: list[bytes] = []
        freed = False
        try:
            tx = self._ring(core, self.tx)
            while True:
                while tx.unconsumed_responses():
                    core.charge(NATIVE_ROUTINE)
                    self._tx_done(core, NetifTxResponse.unpack(tx.get_response()))
                    freed = True
                if not tx.final_check_for_responses():
                    break
            rx = self._ring(core, self.rx)
            while True:
                while rx.unconsumed_responses():
                    core.charge(NATIVE_ROUTINE)
                    self._rx_done(core, NetifRxResponse.unpack(rx.get_response()), frames)
                if not rx.final_check_for_responses():
                    break
        except RingProtocolError as e:
            # Frames already taken are delivered, and the backend told they were taken.
            self.rx.sring.rsp_event = self.rx.rsp_cons + 1
            for frame in frames:
                for receive in self._receivers:
                    receive(core, frame)
            self.fail(core, str(e))
            return
        self._refill_rx(core)
        self._flush_backlog(core)
        for frame in frames:
            for receive in self._receivers:
                receive(core, frame)
        if freed and self.tx_space():
            for cb in self._tx_space_callbacks:
                cb(core)
        self._maybe_close(core)

    # -- teardown --------------------------------------------------------------------------
    def drained(self) -> bool:
        return not self.tx_inflight and not self.backlog

    def backend_gone(self, core: Core) -> None:
        """The backend closed under us (the vif was unplugged): release everything."""
        self._close_wanted = True
        if self.state == XenbusState.Connected:
            self._switch(core, XenbusState.Closing)
        self._teardown(core)

    def _settle_tx(self, core: Core) -> None:
        """Before the rings go: take the tx responses the backend left, then count every
        frame still unanswered or waiting as dropped here (the backend never saw it)."""
        if self.tx is None:
            return
        try:
            tx = self._ring(core, self.tx)
            while tx.unconsumed_responses():
                self._tx_done(core, NetifTxResponse.unpack(tx.get_response()))
        except RingProtocolError as e:
            self._say(core, str(e))
        for slot in sorted(self.tx_inflight.values(), key=lambda s: s.id):
            self._tx_lost(core, slot, "the backend went before answering")
            self._free_tx(core, slot)
        self.tx_inflight.clear()
        while self.backlog:
            frame = self.backlog.popleft()
            self._frame_lost(core, frame, len(frame), "the backend went before it was queued")

    def release_rings(self, core: Core) -> None:
        """The backend has unmapped both rings: settle the tx books, revoke every grant,
        free pages and port."""
        k = self.k
        assert k.pool is not None
        self._settle_tx(core)
        if self.tx is not None:
            pages = [(self.tx_ring_ref, self.tx_gpa), (self.rx_ring_ref, self.rx_gpa)]
            pages += [(buf.ref, buf.gpa) for buf in self._rx_all]
            for ref, gpa in pages:
                if self._end_grant(core, ref):
                    k.pool.free(gpa)
            self._rx_all.clear()
            self._rx_posted.clear()
            self._rx_spare.clear()
            k.evtchn_close(core, self.port)
            self.tx = self.rx = None
