"""The pingpong workload: round trips over an interdomain event channel, and how the
channel survives one side's save and restore.

At creation the toolstack allocates the channel on the pong side and tells both kernels
through their devtrees (`pingpong-role`, `-port`, `-peer`, `-vcpu`, `-rounds`); ping binds
it. Ping's first event is the bind notification Xen raises on a new interdomain port;
after it, each event ends a round and ping sends the next. Pong answers every event.

Save and restore (docs/save-format.md): the suspending kernel writes its side of the
channel (role, peer domid, rounds, rounds completed, whether a round awaits its answer)
into the suspend record. While it is away its peer is unaffected: events it sends to a
suspended domain wait pending there (and are cleared by the restore), and once the old
domain is destroyed Xen leaves the peer's port unbound, so its sends go nowhere; ping
waits, blocked, for an answer that does not come, pong for a ping. The restored kernel
re-establishes the channel as a split driver does on resume: it allocates a new unbound
port for the peer and publishes it under its home, readable by the peer::

    data/pingpong/event-channel   the new port
    data/pingpong/state           XenbusState Connected (4), written last

xend, re-creating the restored domain's devices, writes the new domid in the peer's
`data/pingpong/peer`; every pingpong kernel watches that node from boot (Linux's backend
watch on `backend/`), then watches the restored side's `state`, and at Connected closes
its old port and binds the new one. Whoever binds receives Xen's bind notification: ping
takes it as "connected", pong passes it on as one event that is not an answer; the first
event ping sees after a reconnection is therefore never a round's end, and ping re-sends
the round that awaited its answer at the suspend (its answer was lost with the old port),
so rounds go on from where they stopped. Pong may so answer one round twice; its count
of answers says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from framework.hw970.core import Core
from framework.trace.ids import K
from framework.xen.public.event_channel import (
    EVTCHN_BIND_INTERDOMAIN,
    EVTCHNOP_bind_interdomain,
)
from framework.xen.public.io.xenbus import XenbusState
from framework.xen.public.xen import HYPERVISOR_event_channel_op

from .suspend_record import Value, as_bytes, as_int, as_list
from .xenbus import XsReply

if TYPE_CHECKING:
    from .kernel import GuestKernel

__all__ = ["PEER_NODE", "STORE_DIR", "Pingpong"]

#: Where a restored side publishes its new port, relative to its xenstore home.
STORE_DIR: Final = "data/pingpong"
#: The node xend writes in the surviving peer's home: the restored side's domid.
PEER_NODE: Final = f"{STORE_DIR}/peer"
_CONNECTED: Final = str(int(XenbusState.Connected))


@dataclass
class Pingpong:
    """One kernel's side of a pingpong pair."""

    k: GuestKernel
    progress: dict[tuple[int, str], int]
    role: str
    peer: int
    rounds: int = 0  # 0: forever
    vcpu: int = 0
    port: int = 0
    completed: int = 0  # ping: rounds completed; pong: answers sent
    awaiting: bool = False  # ping: a round was sent and its answer has not come
    connecting: bool = False  # the next event is a (re)connection notice, not an answer

    @property
    def key(self) -> tuple[int, str]:
        return (self.k.domid, "pingpong")

    # -- creation ------------------------------------------------------------------------------
    def start(self, core: Core, port: int) -> None:
        """At boot: ping binds the pong side's `port`; pong already holds it."""
        k = self.k
        if self.role == "ping":
            rc, out = k.op(
                core,
                HYPERVISOR_event_channel_op,
                EVTCHNOP_bind_interdomain,
                EVTCHN_BIND_INTERDOMAIN,
                remote_dom=self.peer,
                remote_port=port,
            )
            if rc != 0:
                k.console(core, f"pingpong: bind_interdomain failed ({rc})")
                return
            port = out["local_port"]
            self.connecting = True
        self._use_port(core, port)
        self.progress[self.key] = 0
        self.watch_peer(core)

    def _use_port(self, core: Core, port: int) -> None:
        self.port = port
        if self.vcpu:
            self.k.evtchn_bind_vcpu(core, port, self.vcpu)
        self.k.port_handlers[port] = self._on_event

    def watch_peer(self, core: Core) -> None:
        """Watch `data/pingpong/peer`, where xend names a restored peer."""
        xb = self.k.xenbus
        if xb is not None:
            xb.watch(core, PEER_NODE, "pingpong:peer", self._peer_named)

    # -- rounds --------------------------------------------------------------------------------
    def _on_event(self, core: Core, port: int) -> None:
        k = self.k
        if self.role == "pong":
            k.send(core, port)
            if self.connecting:  # our bind notification, passed on: not an answer
                self.connecting = False
                return
            self.completed += 1
            self.progress[self.key] = self.completed
            return
        if self.connecting:
            self.connecting = False
        elif self.awaiting:
            self.awaiting = False
            self.completed += 1
            self.progress[self.key] = self.completed
            k.os.rec.emit(
                K.GUEST_MARK,
                core.now_ns(),
                core.cpu_id,
                k.domid,
                -1,
                self.completed,
                text="pingpong.round",
            )
        else:
            return  # nothing was asked: a stray event
        if not self.rounds or self.completed < self.rounds:
            self.awaiting = True
            k.send(core, port)

    # -- save and restore ----------------------------------------------------------------------
    def capture(self) -> Value:
        """This side for the suspend record."""
        return [
            self.role.encode(),
            self.peer,
            self.rounds,
            self.vcpu,
            self.completed,
            int(self.awaiting),
        ]

    @classmethod
    def from_record(
        cls, k: GuestKernel, progress: dict[tuple[int, str], int], part: Value
    ) -> Pingpong | None:
        """The side a suspend record describes (None: the kernel had none)."""
        v = as_list(part)
        if not v:
            return None
        p = cls(
            k,
            progress,
            as_bytes(v[0]).decode(),
            as_int(v[1]),
            rounds=as_int(v[2]),
            vcpu=as_int(v[3]),
            completed=as_int(v[4]),
            awaiting=bool(as_int(v[5])),
        )
        return p

    def resume(self, core: Core) -> None:
        """In the restored kernel: a new port for the peer, published for it to bind."""
        k = self.k
        xb = k.xenbus
        assert xb is not None
        self.progress[self.key] = self.completed
        # The peer's bind notification reaches pong, which passes it on: so ping's first
        # event is a connection notice; pong (the allocator) answers from the first.
        self.connecting = self.role == "ping"
        self._use_port(core, k.evtchn_alloc_unbound(core, self.peer))
        xb.mkdir(core, STORE_DIR)
        xb.set_perms(core, STORE_DIR, [f"n{k.domid}", f"r{self.peer}"])
        xb.write(core, f"{STORE_DIR}/event-channel", str(self.port))
        xb.write(core, f"{STORE_DIR}/state", _CONNECTED)
        k.emit(core, K.GUEST_MARK, self.peer, text="pingpong.publish")
        self.watch_peer(core)

    # -- the surviving side ----------------------------------------------------------------------
    def _peer_named(self, core: Core, _path: str, _token: str) -> None:
        xb = self.k.xenbus
        assert xb is not None

        def got(c: Core, r: XsReply) -> None:
            if r.error or not r.text.isdigit() or int(r.text) == self.peer:
                return
            new = int(r.text)
            xb.watch(
                c,
                f"/local/domain/{new}/{STORE_DIR}/state",
                f"pingpong:state:{new}",
                lambda c2, _p, _t: self._peer_state(c2, new),
            )

        xb.read(core, PEER_NODE, got)

    def _peer_state(self, core: Core, new: int) -> None:
        xb = self.k.xenbus
        assert xb is not None
        base = f"/local/domain/{new}/{STORE_DIR}"

        def state(c: Core, r: XsReply) -> None:
            if not r.error and r.text == _CONNECTED and self.peer != new:
                xb.read(c, f"{base}/event-channel", lambda c2, r2: self._rebind(c2, new, r2))

        xb.read(core, f"{base}/state", state)

    def _rebind(self, core: Core, new: int, r: XsReply) -> None:
        """Close the port the vanished peer left unbound, bind the restored peer's."""
        if r.error or self.peer == new:
            return
        k = self.k
        k.evtchn_close(core, self.port)
        self.peer = new
        self.connecting = True  # our bind notification comes first
        self._use_port(core, k.evtchn_bind_interdomain(core, new, int(r.text)))
        k.emit(core, K.GUEST_MARK, new, text="pingpong.rebind")
