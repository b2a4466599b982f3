"""The shared xenbus state machine, driven over a small in-memory store: the order in which
a frontend and a backend publish their nodes and states, and which template method runs
at each transition.

The toy drivers here subclass the bases in Python, which mypyc's native classes do not
allow: against a compiled build these tests are skipped, and the real drivers
(test_blkif, test_netif) exercise the compiled state machine.
"""

from __future__ import annotations

import pytest

from framework import compiled
from framework.guest import xs_wire as xs
from framework.guest.xenbus import Xenbus
from framework.guest.xenbus_driver import XenbusBackend, XenbusFrontend
from framework.xen.public.io.xenbus import XenbusState

pytestmark = pytest.mark.skipif(
    not compiled.module_origin("framework.guest.xenbus_driver").endswith(".py"),
    reason="interpreted test doubles cannot subclass compiled native classes",
)


class FakeCore:
    """Only what the drivers' state machine asks of a core: charging cycles."""

    def __init__(self) -> None:
        self.cycles = 0

    def charge(self, cycles: int) -> None:
        self.cycles += cycles


class FakeKernel:
    def __init__(self, domid: int) -> None:
        self.domid = domid
        self.xenbus: Xenbus | None = None
        self.grants = None
        self.port_handlers: dict = {}
        self.console_lines: list[str] = []
        self.states: list[tuple[str, int]] = []

    def emit(self, _core, _kind, _dev, state, _prev=0, *_rest, text=None) -> None:
        self.states.append((text, state))

    def console(self, _core, text: str) -> None:
        self.console_lines.append(text)

    def evtchn_alloc_unbound(self, _core, _remote: int) -> int:
        return 7


class StoreXenbus(Xenbus):
    """Answers at once from a dict; `writes` keeps every write in order."""

    def __init__(self, kernel: FakeKernel, store: dict[str, str]) -> None:
        super().__init__(kernel)  # type: ignore[arg-type]
        self.store = store
        self.writes: list[tuple[str, str]] = []

    def _transmit(self, core, msg: xs.XsMsg) -> None:
        parts = msg.payload.split(b"\0")
        reply = xs.XsMsg(msg.type, msg.req_id, 0, b"OK\0")
        if msg.type == xs.XS_READ:
            value = self.store.get(parts[0].decode())
            reply = (
                xs.XsMsg(xs.XS_ERROR, msg.req_id, 0, b"ENOENT\0")
                if value is None
                else xs.XsMsg(msg.type, msg.req_id, 0, value.encode())
            )
        elif msg.type == xs.XS_WRITE:
            path, value = parts[0].decode(), msg.payload.partition(b"\0")[2].decode()
            self.store[path] = value
            self.writes.append((path, value))
        self.deliver(core, reply)

    def fire(self, core, path: str, token: str) -> None:
        self.deliver(core, xs.XsMsg(xs.XS_WATCH_EVENT, 0, 0, f"{path}\0{token}\0".encode()))


class ToyFront(XenbusFrontend[FakeKernel]):  # type: ignore[type-var]
    def __init__(self, k: FakeKernel) -> None:
        super().__init__(k, "toyfront", 0, "device/toy/0", 0)
        self.calls: list[str] = []
        self.busy = False

    def setup_rings(self, core) -> None:
        self.calls.append("setup_rings")

    def ring_nodes(self) -> list[tuple[str, str]]:
        return [("ring-ref", "8"), ("event-channel", str(self.port))]

    def backend_connected(self, core) -> None:
        self.calls.append("backend_connected")
        self._connected(core)

    def drained(self) -> bool:
        return not self.busy

    def release_rings(self, core) -> None:
        self.calls.append("release_rings")

    def backend_gone(self, core) -> None:
        self.calls.append("backend_gone")


class ToyBack(XenbusBackend[FakeKernel]):  # type: ignore[type-var]
    def __init__(self, k: FakeKernel) -> None:
        super().__init__(k, "toyback", "backend/toy", 1, 0, "toy1.0")
        self.calls: list[object] = []

    def setup(self, core, v) -> None:
        self.xb.write(core, f"{self.path}/feature", "1")
        self._init_wait(core)

    def forget(self) -> None:
        self.calls.append("forget")

    def ring_nodes(self) -> list[str]:
        return ["ring-ref", "event-channel"]

    def connect(self, core, v) -> None:
        self.calls.append(dict(v))
        self._switch(core, XenbusState.Connected)

    def frontend_closed(self, core) -> None:
        self.calls.append("frontend_closed")
        self._switch(core, XenbusState.Closed)

    def unplug(self, core, removed: bool) -> None:
        self.calls.append(("unplug", removed))


BACK = "/local/domain/0/backend/toy/1/0"


def front_world() -> tuple[FakeCore, StoreXenbus, ToyFront]:
    k = FakeKernel(1)
    store = {"device/toy/0/backend": BACK, "device/toy/0/backend-id": "0", f"{BACK}/state": "1"}
    xb = StoreXenbus(k, store)
    k.xenbus = xb
    return FakeCore(), xb, ToyFront(k)


def set_backend(core: FakeCore, xb: StoreXenbus, front: ToyFront, state: XenbusState) -> None:
    xb.store[f"{BACK}/state"] = str(int(state))
    xb.fire(core, f"{BACK}/state", front.token)


def test_frontend_publishes_its_rings_before_initialised_and_connects_once_told() -> None:
    core, xb, front = front_world()
    connected: list[bool] = []
    front.when_connected(lambda _c: connected.append(True))
    front.start(core)  # type: ignore[arg-type]
    assert front.backend_path == BACK and front.backend_id == 0
    set_backend(core, xb, front, XenbusState.InitWait)
    assert xb.writes == [
        ("device/toy/0/ring-ref", "8"),
        ("device/toy/0/event-channel", "7"),
        ("device/toy/0/state", str(int(XenbusState.Initialised))),
    ]
    assert front.k.port_handlers[7] == front._on_event
    set_backend(core, xb, front, XenbusState.Connected)
    assert front.connected and connected == [True]
    assert front.calls == ["setup_rings", "backend_connected"]


def test_frontend_closes_when_drained_and_releases_after_the_backend_closed() -> None:
    core, xb, front = front_world()
    front.start(core)  # type: ignore[arg-type]
    for state in (XenbusState.InitWait, XenbusState.Connected):
        set_backend(core, xb, front, state)
    front.busy = True
    set_backend(core, xb, front, XenbusState.Closing)
    assert front.state == XenbusState.Connected  # work still outstanding
    front.busy = False
    front.close(core)  # type: ignore[arg-type]
    assert front.state == XenbusState.Closing
    set_backend(core, xb, front, XenbusState.Closed)
    assert front.state == XenbusState.Closed
    assert front.calls[-1] == "release_rings"
    assert [s for _path, s in front.k.states] == [3, 4, 5, 6]


def test_frontend_hears_of_a_backend_gone_and_gives_up_on_a_bad_state() -> None:
    core, xb, front = front_world()
    front.start(core)  # type: ignore[arg-type]
    set_backend(core, xb, front, XenbusState.InitWait)
    set_backend(core, xb, front, XenbusState.Closed)
    assert front.calls[-1] == "backend_gone"
    xb.store[f"{BACK}/state"] = "banana"
    xb.fire(core, f"{BACK}/state", front.token)
    assert front.state == XenbusState.Closing
    assert front.k.console_lines == ["toyfront 0: backend state 'banana' is not a XenbusState"]


def test_backend_waits_then_reads_the_frontends_ring_nodes_and_follows_unplug() -> None:
    k = FakeKernel(0)
    front = "/local/domain/1/device/toy/0"
    store = {f"{BACK}/frontend": front, f"{front}/state": "1"}
    xb = StoreXenbus(k, store)
    k.xenbus = xb
    core = FakeCore()
    back = ToyBack(k)
    back.start(core)  # type: ignore[arg-type]
    assert back.state == XenbusState.InitWait and back.frontend_path == front
    assert [p for p, _v in xb.writes] == [f"{BACK}/feature", f"{BACK}/state"]
    store.update({f"{front}/ring-ref": "8", f"{front}/event-channel": "7", f"{front}/state": "3"})
    xb.fire(core, f"{front}/state", back.token)
    assert back.calls == [{"ring-ref": "8", "event-channel": "7"}]
    assert back.state == XenbusState.Connected
    store[f"{front}/state"] = "5"
    xb.fire(core, f"{front}/state", back.token)
    store[f"{front}/state"] = "1"
    xb.fire(core, f"{front}/state", back.token)
    assert back.calls[1] == "frontend_closed" and back.state == XenbusState.InitWait
    store[f"{BACK}/online"] = "0"
    xb.read(core, f"{BACK}/online", back.online_changed)  # type: ignore[arg-type]
    xb.read(core, f"{BACK}/gone", back.online_changed)  # type: ignore[arg-type]
    assert back.calls[2:] == [("unplug", False), ("unplug", True)]


def test_a_backend_without_its_frontend_node_is_forgotten() -> None:
    k = FakeKernel(0)
    xb = StoreXenbus(k, {})
    k.xenbus = xb
    back = ToyBack(k)
    back.start(FakeCore())  # type: ignore[arg-type]
    assert back.calls == ["forget"] and back.state == XenbusState.Initialising
