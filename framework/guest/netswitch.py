"""dom0's switching of guest frames: the bridge's decision, the wires, the network
interrupt, and the books that give every workload packet exactly one fate.

Wires. netback hands over each frame it took off a guest's tx ring (`NetSwitch.switch`).
The frame crosses the sender's own wire first, its vif's uplink (`Link.transmit`): the
transmitter is busy for the frame's serialisation time whatever becomes of the frame, so
no guest sends faster than its link, even into a bridge where nobody receives. The bridge
names the egress ports (`Bridge.forward`) and forwards cut-through: a copy starts on its
egress link, the wire from the bridge to that vif, no earlier than the frame's first bit
left the sender, and arrives in SimPy time. A frame with no egress port is carried by
the uplink alone and discarded by the bridge when it has arrived. The sender's tx request
is answered (NETIF_RSP_OKAY) when every copy has been consumed, into a receive buffer or
dropped (`TxToken`): its tx ring is the flow control of the whole path, so a stream runs
at the pace of its slowest wire, and the frames in flight are bounded by ring sizes.

Arrivals. A link delivers in SimPy time, outside any VCPU, where no hypercall can be
made: `deliver_later` only queues the frame and raises dom0's network interrupt (a
physical interrupt bound with EVTCHNOP_bind_pirq, raised once per burst); its handler
hands the frames to their vifs (`Vif.queue_rx`), and discarded frames' tokens are
consumed there.

Books. The trace follows workload packets, the frames that carry a frame id
(`frame_id`: a netstream packet's stream and sequence number, its net.tx `pkt`). Each
gets exactly one net.rx or net.drop with that id, from whoever holds the frame when its
fate is decided:

- the sending netfront, until netback takes the request off the ring: a request netback
  refuses (NETIF_RSP_ERROR), and frames still queued or unanswered when the backend goes;
- dom0, from then until the frame is in a receive buffer: the bridge (no egress port is
  the frame's addressee), an egress link's MTU, the vif's queue (no buffer posted, or no
  rings), and at unplug every request still on the tx ring (answered NETIF_RSP_DROPPED),
  every frame waiting for a buffer and every response the frontend had not taken yet;
- the receiving netfront's sink, from the rx response on (net.rx, or a net.drop for a
  corrupt or out-of-order packet).

Copies do not multiply a frame: only the copy to its addressee counts, the egress vif
whose MAC is the frame's destination. The other copies of a flooded frame are discarded
by their receivers as addressed to another host (PACKET_OTHERHOST) and are not recorded,
wherever they end. When no egress port is the addressee (a destination that is unknown
or gone, a group address, one behind the port the frame came in on) the bridge records
the drop as it decides. A frame without an id (the gratuitous ARP a netfront sends) is
carried, paced and counted in its vifs' counters, but not recorded.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from framework.errors import RingError
from framework.hw970.core import Core
from framework.hw970.link import Link
from framework.xen.public.io.netif import NETIF_RSP_OKAY

from .bridge import ETH_ALEN, ETH_HLEN, Forwarding, format_mac, is_multicast
from .costs import NATIVE_ROUTINE
from .netstream import frame_id

if TYPE_CHECKING:
    from .netback import NetBack, Vif

__all__ = ["NetHardware", "NetSwitch", "TxToken", "unaddressed_reason"]


class NetHardware(Protocol):
    """What the simulation gives dom0 for networking (`k.os.hardware`)."""

    #: MPIC source of dom0's network interrupt (raised by `raise_net_irq`).
    net_pirq: int

    def link(self, domid: int, devid: int) -> Link:
        """The link model of vif (domid, devid): the wire from the bridge to it."""
        ...

    def uplink(self, domid: int, devid: int) -> Link:
        """The other direction of that wire: from the vif to the bridge."""
        ...

    def raise_net_irq(self) -> None:
        """Raise `net_pirq` now (from SimPy context), e.g. `xen.device_interrupt`."""
        ...


class TxToken:
    """A forwarded frame's tx request on `vif`: answered when its last copy is consumed,
    or by the vif's disconnect (then `answered`: a late copy never answers a new ring).
    Compared by identity (the key of `Vif.tx_pending`)."""

    def __init__(self, vif: Vif, req_id: int, copies: int) -> None:
        self.vif = vif
        self.id = req_id
        self.copies = copies
        self.answered = False


def unaddressed_reason(bridge: str, ingress: str, frame: bytes, fwd: Forwarding[Vif]) -> str:
    """Why the bridge drops a frame none of whose egress ports is its addressee."""
    dst = format_mac(frame[:ETH_ALEN])
    if fwd.how == "filtered":
        return f"bridge {bridge}: {dst} is behind {ingress}, the port the frame came in on"
    if not fwd.ports:
        return f"no other port on bridge {bridge} (to {dst} from {ingress})"
    names = ", ".join(port.name for port in fwd.ports)
    return f"no port of bridge {bridge} is {dst} (from {ingress}, {fwd.how} to {names})"


class NetSwitch:
    """The data path between dom0's vifs: bridges, wires and the network interrupt."""

    def __init__(self, back: NetBack) -> None:
        self.back = back
        #: Link arrivals not yet taken into dom0: (egress vif, or None for a frame the
        #: bridge discards on arrival; frame; token), in order.
        self.arrivals: deque[tuple[Vif | None, bytes, TxToken]] = deque()
        self._kicked = False

    def switch(self, core: Core, ingress: Vif, req_id: int, frame: bytes) -> None:
        """A frame from a guest: onto its uplink, through its bridge, onto each egress
        link; its tx request is answered when the last copy is consumed."""
        back = self.back
        bridge = back.bridge(ingress.bridge_name)
        fwd = bridge.forward(frame, ingress)
        token = TxToken(ingress, req_id, len(fwd.ports) + 1)  # + 1 until all are sent
        ingress.tx_pending[token] = None
        dst = frame[:ETH_ALEN]
        if not any(port.mac == dst for port in fwd.ports) and (
            not is_multicast(dst) or frame_id(frame) >= 0  # a broadcast ARP is not lost
        ):
            ingress.drop(core, frame, unaddressed_reason(bridge.name, ingress.name, frame, fwd))
        now = core.now_ns()
        uplink = ingress.uplink
        assert uplink is not None, "a vif on a bridge has its links"
        if not fwd.ports:
            # Nobody takes it, but it crosses the sender's wire all the same: the tx
            # request is answered once it has reached the bridge (which discards it).
            token.copies += 1
            if not uplink.send(frame, self._deliverer(None, token), now_ns=now):
                self.consumed(core, token)
        else:
            start = uplink.transmit(len(frame), now)
            for port in fwd.ports:
                link = port.link
                assert link is not None
                deliver = self._deliverer(port, token)
                if not link.send(frame, deliver, now_ns=now if start is None else start):
                    port.drop_copy(
                        core,
                        frame,
                        f"a {len(frame) - ETH_HLEN}-byte payload exceeds link MTU "
                        f"{link.params.mtu} (from {ingress.name}, to {format_mac(dst)})",
                    )
                    self.consumed(core, token)
        self.consumed(core, token)

    def _deliverer(self, vif: Vif | None, token: TxToken) -> Callable[[bytes], None]:
        return lambda frame: self.deliver_later(frame, vif, token)

    def consumed(self, core: Core, token: TxToken) -> None:
        """One copy of a forwarded frame was delivered or dropped; the last one answers
        the sender's tx request."""
        token.copies -= 1
        if token.copies == 0:
            token.vif.answer(core, token, NETIF_RSP_OKAY)
        elif token.copies < 0:
            raise AssertionError(f"tx request {token.id} of {token.vif.name} consumed twice")

    def deliver_later(self, frame: bytes, vif: Vif | None, token: TxToken) -> None:
        """A link delivered `frame` to `vif` (SimPy context, no VCPU): queue it and raise
        the network interrupt, once per burst."""
        self.arrivals.append((vif, frame, token))
        if not self._kicked:
            self._kicked = True
            self.back.hardware.raise_net_irq()

    def on_irq(self, core: Core, _port: int) -> None:
        """The network interrupt: hand every arrival to its vif, vif by vif."""
        core.charge(NATIVE_ROUTINE)
        back = self.back
        back.begin(core)
        self._kicked = False
        per_vif: dict[int, tuple[Vif, list[tuple[bytes, TxToken]]]] = {}  # insertion-ordered
        while self.arrivals:
            vif, frame, token = self.arrivals.popleft()
            if vif is None:
                self.consumed(core, token)  # at the bridge, which discards it
            else:
                per_vif.setdefault(id(vif), (vif, []))[1].append((frame, token))
        for vif, items in per_vif.values():
            try:
                vif.queue_rx(core, items)
            except RingError as e:
                vif.fail(core, str(e))
        back.push_responses(core)
