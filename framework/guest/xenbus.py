"""The kernel's xenbus: asynchronous xenstore requests, watches and device states.

A guest kernel never waits: a request is written to the xenstore ring (or, in dom0, handed
to xenstored directly, as its local socket would) and its callback runs when the reply
arrives, from the store event channel's handler.  Drivers are therefore state machines
driven by replies and watch events, like Linux's xenbus drivers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from framework.hw970.core import Core
from framework.trace.ids import K
from framework.xen.public.io.xenbus import XenbusState

from . import xs_wire as xs
from .byte_ring import XenstoreRing
from .kmem import KernelMemory

if TYPE_CHECKING:
    from .kernel import GuestKernel


@dataclass(frozen=True)
class XsReply:
    """A reply: its type and payload, or the errno name xenstored sent back."""

    type: int
    payload: bytes
    error: str | None = None

    @property
    def text(self) -> str:
        return self.payload.rstrip(b"\0").decode()

    @property
    def strings(self) -> list[str]:
        return [s.decode() for s in self.payload.split(b"\0") if s]


ReplyCallback = Callable[[Core, XsReply], None]
WatchCallback = Callable[[Core, str, str], None]


def _ignore(_core: Core, _reply: XsReply) -> None:
    return None


class Xenbus(ABC):
    """The request API drivers use; subclasses say how messages reach xenstored."""

    def __init__(self, kernel: GuestKernel) -> None:
        self.kernel = kernel
        self._next_req = 1
        self._pending: dict[int, ReplyCallback] = {}
        self._watches: dict[str, WatchCallback] = {}

    # -- transport (subclasses) --------------------------------------------------------------
    @abstractmethod
    def _transmit(self, core: Core, msg: xs.XsMsg) -> None:
        """Get `msg` to xenstored: through the ring (domU) or straight in (dom0)."""

    # -- requests ----------------------------------------------------------------------------
    def request(
        self, core: Core, type_: int, payload: bytes, cb: ReplyCallback | None, tx_id: int = 0
    ) -> int:
        req_id = self._next_req
        self._next_req = (self._next_req + 1) & 0xFFFFFFFF or 1
        self._pending[req_id] = cb or _ignore
        self._transmit(core, xs.XsMsg(type_, req_id, tx_id, payload))
        return req_id

    def read(self, core: Core, path: str, cb: ReplyCallback, tx_id: int = 0) -> None:
        self.request(core, xs.XS_READ, xs.path_payload(path), cb, tx_id)

    def write(
        self, core: Core, path: str, value: str | bytes, cb: ReplyCallback | None = None,
        tx_id: int = 0,
    ) -> None:  # fmt: skip
        data = value.encode() if isinstance(value, str) else value
        self.request(core, xs.XS_WRITE, path.encode() + b"\0" + data, cb, tx_id)

    def mkdir(self, core: Core, path: str, cb: ReplyCallback | None = None) -> None:
        self.request(core, xs.XS_MKDIR, xs.path_payload(path), cb)

    def rm(self, core: Core, path: str, cb: ReplyCallback | None = None) -> None:
        self.request(core, xs.XS_RM, xs.path_payload(path), cb)

    def directory(self, core: Core, path: str, cb: ReplyCallback) -> None:
        self.request(core, xs.XS_DIRECTORY, xs.path_payload(path), cb)

    def set_perms(
        self, core: Core, path: str, perms: list[str], cb: ReplyCallback | None = None
    ) -> None:
        payload = path.encode() + b"\0" + b"".join(p.encode() + b"\0" for p in perms)
        self.request(core, xs.XS_SET_PERMS, payload, cb)

    def watch(self, core: Core, path: str, token: str, cb: WatchCallback) -> None:
        """Register a watch; `cb(core, path, token)` runs for the initial event and every
        change at or below `path`."""
        self._watches[token] = cb
        self.request(core, xs.XS_WATCH, path.encode() + b"\0" + token.encode() + b"\0", None)

    def unwatch(self, core: Core, path: str, token: str) -> None:
        self._watches.pop(token, None)
        self.request(core, xs.XS_UNWATCH, path.encode() + b"\0" + token.encode() + b"\0", None)

    def switch_state(
        self, core: Core, path: str, state: XenbusState, prev: XenbusState, write: bool = True
    ) -> None:
        """Write `<path>/state` (unless `write` is False: the directory is gone) and record
        the transition in the trace."""
        if write:
            self.write(core, f"{path}/state", str(int(state)))
        self.kernel.emit(core, K.XENBUS_STATE, _devid(path), int(state), int(prev), text=path)

    # -- replies -----------------------------------------------------------------------------
    def deliver(self, core: Core, msg: xs.XsMsg) -> None:
        """A message from xenstored: a reply to one of ours, or a watch event."""
        if msg.type == xs.XS_WATCH_EVENT:
            parts = [p.decode() for p in msg.payload.split(b"\0")]
            if len(parts) >= 2:
                on_watch = self._watches.get(parts[1])
                if on_watch is not None:
                    on_watch(core, parts[0], parts[1])
            return
        on_reply = self._pending.pop(msg.req_id, None)
        if on_reply is None:
            return
        if msg.type == xs.XS_ERROR:
            on_reply(core, XsReply(msg.type, b"", msg.payload.rstrip(b"\0").decode()))
        else:
            on_reply(core, XsReply(msg.type, msg.payload))


class RingXenbus(Xenbus):
    """A domU's xenbus: the xenstore page at the RMA top and its event channel."""

    def __init__(self, kernel: GuestKernel, ring_gpa: int, port: int) -> None:
        super().__init__(kernel)
        self.ring_gpa = ring_gpa
        self.port = port
        self._backlog: deque[bytes] = deque()

    def _ring(self, core: Core) -> XenstoreRing:
        return XenstoreRing(KernelMemory(core), self.ring_gpa)

    def _transmit(self, core: Core, msg: xs.XsMsg) -> None:
        self._backlog.append(msg.encode())
        self._flush(core)

    def _flush(self, core: Core) -> None:
        ring = self._ring(core)
        sent = False
        while self._backlog:
            data = self._backlog[0]
            if ring.request_space() < len(data):
                break  # xenstored will notify when it has consumed requests
            ring.write_request(data)
            self._backlog.popleft()
            sent = True
        if sent:
            self.kernel.send(core, self.port)

    def on_event(self, core: Core, _port: int) -> None:
        ring = self._ring(core)
        while True:
            raw = ring.take_response_message()
            if raw is None:
                break
            self.deliver(core, xs.XsMsg.decode(raw))
        if self._backlog:
            self._flush(core)


class LocalXenbus(Xenbus):
    """dom0's xenbus: requests go straight to its own xenstored (the local socket)."""

    def __init__(self, kernel: GuestKernel, submit: Callable[[Core, int, xs.XsMsg], None]) -> None:
        super().__init__(kernel)
        self._submit = submit
        self._inbox: deque[xs.XsMsg] = deque()
        self._draining = False

    def _transmit(self, core: Core, msg: xs.XsMsg) -> None:
        self._submit(core, self.kernel.domid, msg)

    def post(self, core: Core, msg: xs.XsMsg) -> None:
        """xenstored's reply or event for dom0; callbacks run in order, never nested."""
        self._inbox.append(msg)
        if self._draining:
            return
        self._draining = True
        try:
            while self._inbox:
                self.deliver(core, self._inbox.popleft())
        finally:
            self._draining = False


def read_nodes(
    core: Core,
    xb: Xenbus,
    paths: list[str],
    done: Callable[[Core, dict[str, str | None]], None],
) -> None:
    """Read several xenstore nodes one after another (Linux's xenbus_gather); `done(core,
    values)` gets each path's text, or None for a node that could not be read (its error
    is not kept: callers decide which nodes are optional)."""
    values: dict[str, str | None] = {}

    def step(c: Core, i: int) -> None:
        if i == len(paths):
            done(c, values)
            return

        def got(cc: Core, r: XsReply) -> None:
            values[paths[i]] = None if r.error else r.text
            step(cc, i + 1)

        xb.read(c, paths[i], got)

    step(core, 0)


def backend_path_parts(path: str, base: str) -> list[str] | None:
    """The components of a watch path below a backend directory such as `backend/vbd`
    ([] for the directory itself); None if the path is not below it."""
    _, sep, rest = path.partition(base)
    return [p for p in rest.split("/") if p] if sep else None


def scan_backend_devices(
    xb: Xenbus, core: Core, base: str, found: Callable[[Core, int, int], None]
) -> None:
    """List `<base>/<frontend domid>/<devid>` and call `found(core, domid, devid)` for each:
    how a backend discovers devices written before its watch fired."""

    def devices_of(domid: int) -> ReplyCallback:
        """The reply to listing `<base>/<domid>` (a closure per domid, bound now)."""

        def devices(c: Core, r: XsReply) -> None:
            for name in [] if r.error else r.strings:
                if name.isdigit():
                    found(c, domid, int(name))

        return devices

    def domains(c: Core, r: XsReply) -> None:
        for name in [] if r.error else r.strings:
            if name.isdigit():
                xb.directory(c, f"{base}/{name}", devices_of(int(name)))

    xb.directory(core, base, domains)


class BackendDevice(Protocol):
    """What a backend driver needs of its devices: starting one it has just found, its
    store directory, and what to do when its `online` node is read (a removed directory
    reads as an error)."""

    path: str

    def start(self, core: Core) -> None: ...

    def online_changed(self, core: Core, r: XsReply) -> None: ...


def backend_changed(
    xb: Xenbus,
    core: Core,
    path: str,
    base: str,
    devices: Mapping[tuple[int, int], BackendDevice],
    probe: Callable[[Core, int, int], None],
) -> None:
    """A backend driver's watch on `base` fired for `path`: probe a device not seen yet,
    let a known one check `online` (the toolstack unplugs by writing 0 or removing the
    directory), or rescan when the directory itself changed."""
    parts = backend_path_parts(path, base)
    if parts is None:
        return
    if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
        key = (int(parts[0]), int(parts[1]))
        dev = devices.get(key)
        if dev is None:
            probe(core, *key)
        elif parts[2:] in ([], ["online"]):
            xb.read(core, f"{dev.path}/online", dev.online_changed)
    elif not parts:
        scan_backend_devices(xb, core, base, probe)


def _devid(path: str) -> int:
    """The device number at the end of a xenbus device path (-1 if none)."""
    last = path.rstrip("/").rsplit("/", 1)[-1]
    return int(last) if last.isdigit() else -1
