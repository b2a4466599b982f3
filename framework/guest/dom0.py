"""dom0's daemons: xenstored's connections to guests and xenconsoled.

Both reach a guest's page the way the 970 port allows: the page is granted to dom0
(reserved grant refs 0 = console, 1 = xenstore, which Xen seeds when it sets up the
special pages), dom0 maps the grant into its foreign area, enters a 4 KiB PTE for it and
binds an interdomain event channel to the guest's unbound port.  Requests and console text
then travel only through those pages and channels.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from framework.hw970.core import Core
from framework.trace.ids import K

from . import xs_wire as xs
from .byte_ring import ConsoleRing, XenstoreRing
from .kmem import KernelMemory
from .xenbus import LocalXenbus
from .xenstore import Xenstored

if TYPE_CHECKING:
    from .kernel import GuestKernel

GNTTAB_RESERVED_CONSOLE: Final = 0
GNTTAB_RESERVED_XENSTORE: Final = 1


@dataclass
class _GuestPage:
    """A guest's shared page as dom0 has it mapped: where, by which grant, which port."""

    domid: int
    gpa: int  # dom0 guest-physical address (a foreign area slot)
    handle: int  # grant map handle
    port: int  # dom0's local port bound to the guest's
    backlog: deque[bytes] = field(default_factory=deque)


def map_guest_page(
    k: GuestKernel, core: Core, domid: int, ref: int, remote_port: int
) -> _GuestPage:
    """Map a guest's granted page into dom0 (foreign slot + 4 KiB PTE) and bind its port."""
    gpa, handle = k.grant_map(core, domid, ref, readonly=False)
    k.map_4k(core, gpa)
    port = k.evtchn_bind_interdomain(core, domid, remote_port)
    return _GuestPage(domid, gpa, handle, port)


def unmap_guest_page(k: GuestKernel, core: Core, page: _GuestPage) -> None:
    k.evtchn_close(core, page.port)
    k.unmap_4k(core, page.gpa)
    k.grant_unmap(core, page.gpa, page.handle)


class StoreService:
    """xenstored as dom0 runs it: the daemon plus one ring connection per guest."""

    def __init__(self, kernel: GuestKernel) -> None:
        self.kernel = kernel
        self.daemon = Xenstored()
        self.conns: dict[int, _GuestPage] = {}
        self.local = LocalXenbus(kernel, self.submit)

    def introduce(self, core: Core, domid: int, store_port: int) -> None:
        """XS_INTRODUCE: connect to the guest's store page and serve what it queued."""
        page = map_guest_page(self.kernel, core, domid, GNTTAB_RESERVED_XENSTORE, store_port)
        self.conns[domid] = page
        self.kernel.port_handlers[page.port] = lambda c, _p: self.on_guest_event(c, domid)
        for target, msg in self.daemon.introduce_domain(domid, port=store_port):
            self._route(core, target, msg)
        self.on_guest_event(core, domid)

    def release(self, core: Core, domid: int) -> None:
        page = self.conns.pop(domid, None)
        if page is None:
            return
        unmap_guest_page(self.kernel, core, page)
        for target, msg in self.daemon.release_domain(domid):
            self._route(core, target, msg)

    def submit(self, core: Core, domid: int, msg: xs.XsMsg) -> None:
        """One request from `domid`: run it and route every reply and watch event."""
        out = self.daemon.handle(domid, msg)
        error = ""
        for target, reply in out:
            if target == domid and reply.req_id == msg.req_id and reply.type == xs.XS_ERROR:
                error = " " + reply.payload.rstrip(b"\0").decode()
        path = msg.payload.split(b"\0", 1)[0].decode(errors="replace")
        self.kernel.os.rec.emit(
            K.XS_REQUEST,
            core.now_ns(),
            core.cpu_id,
            domid,
            -1,
            msg.type,
            msg.req_id,
            msg.tx_id,
            text=path + error,
        )
        for target, reply in out:
            self._route(core, target, reply)

    def _route(self, core: Core, target: int, msg: xs.XsMsg) -> None:
        if msg.type == xs.XS_WATCH_EVENT:
            self.kernel.os.rec.emit(
                K.XS_WATCH,
                core.now_ns(),
                core.cpu_id,
                target,
                -1,
                text=msg.payload.replace(b"\0", b" ").decode(errors="replace").strip(),
            )
        if target == self.kernel.domid:
            self.local.post(core, msg)
            return
        page = self.conns.get(target)
        if page is None:
            return  # the domain went away
        page.backlog.append(msg.encode())
        self._flush(core, page)

    def _flush(self, core: Core, page: _GuestPage) -> None:
        ring = XenstoreRing(KernelMemory(core), page.gpa)
        sent = False
        while page.backlog and ring.response_space() >= len(page.backlog[0]):
            ring.write_response(page.backlog.popleft())
            sent = True
        if sent:
            self.kernel.send(core, page.port)

    def on_guest_event(self, core: Core, domid: int) -> None:
        page = self.conns.get(domid)
        if page is None:
            return
        ring = XenstoreRing(KernelMemory(core), page.gpa)
        consumed = False
        while True:
            raw = ring.take_request_message()
            if raw is None:
                break
            consumed = True
            self.submit(core, domid, xs.XsMsg.decode(raw))
        self._flush(core, page)
        if consumed and not page.backlog:
            self.kernel.send(core, page.port)  # room in the request ring again


class ConsoleService:
    """xenconsoled: each guest's console ring to a log (and the trace), input back in."""

    def __init__(self, kernel: GuestKernel) -> None:
        self.kernel = kernel
        self.conns: dict[int, _GuestPage] = {}
        self.logs: dict[int, list[str]] = {}
        self._partial: dict[int, bytearray] = {}

    def connect(self, core: Core, domid: int, console_port: int) -> None:
        page = map_guest_page(self.kernel, core, domid, GNTTAB_RESERVED_CONSOLE, console_port)
        self.conns[domid] = page
        self.logs.setdefault(domid, [])
        self.kernel.port_handlers[page.port] = lambda c, _p: self.on_guest_event(c, domid)
        self.on_guest_event(core, domid)

    def disconnect(self, core: Core, domid: int) -> None:
        page = self.conns.pop(domid, None)
        if page is not None:
            self.on_guest_event(core, domid)
            unmap_guest_page(self.kernel, core, page)

    def on_guest_event(self, core: Core, domid: int) -> None:
        page = self.conns.get(domid)
        if page is None:
            return
        data = ConsoleRing(KernelMemory(core), page.gpa).read_out()
        if not data:
            return
        buf = self._partial.setdefault(domid, bytearray())
        buf += data
        while b"\n" in buf:
            line, _, rest = bytes(buf).partition(b"\n")
            buf[:] = rest
            text = line.decode(errors="replace")
            self.logs[domid].append(text)
            self.kernel.os.rec.emit(K.CONSOLE_OUT, core.now_ns(), core.cpu_id, domid, -1, text=text)
        self.kernel.send(core, page.port)  # the guest may be waiting for ring space

    def write_input(self, core: Core, domid: int, text: str) -> int:
        """Type `text` into the guest's console; returns bytes that fitted the ring."""
        page = self.conns.get(domid)
        if page is None:
            return 0
        n = ConsoleRing(KernelMemory(core), page.gpa).write_in(text.encode())
        self.kernel.os.rec.emit(K.CONSOLE_IN, core.now_ns(), core.cpu_id, domid, -1, text=text[:n])
        self.kernel.send(core, page.port)
        return n
