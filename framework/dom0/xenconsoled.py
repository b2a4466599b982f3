"""xenconsoled: each guest's console ring, in a page the guest granted to dom0, drained to a
log (and the trace); what is typed (`xm console`) goes back into the ring's input half.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from framework.guest.byte_ring import ConsoleRing
from framework.guest.kmem import KernelMemory
from framework.hw970.core import Core
from framework.trace.ids import K
from framework.xen.public.grant_table import GNTTAB_RESERVED_CONSOLE

if TYPE_CHECKING:
    from framework.guest.kernel import GuestKernel

from framework.dom0.guest_pages import GuestPage, map_guest_page, unmap_guest_page


class ConsoleService:
    """xenconsoled: each guest's console ring to a log (and the trace), input back in.

    Logs are kept by the guest's name, not its domid: once a guest is destroyed its id
    may be given to another, whose log must start empty."""

    def __init__(self, kernel: GuestKernel) -> None:
        self.kernel = kernel
        self.conns: dict[int, GuestPage] = {}
        #: The name each connected guest's lines are logged under.
        self.names: dict[int, str] = {}
        self.logs: dict[str, list[str]] = {}
        self._partial: dict[int, bytearray] = {}

    def connect(self, core: Core, domid: int, console_port: int, name: str) -> None:
        page = map_guest_page(self.kernel, core, domid, GNTTAB_RESERVED_CONSOLE, console_port)
        self.conns[domid] = page
        self.names[domid] = name
        self.logs.setdefault(name, [])
        self.kernel.port_handlers[page.port] = lambda c, _p: self.on_guest_event(c, domid)
        self.on_guest_event(core, domid)

    def disconnect(self, core: Core, domid: int) -> None:
        """The guest is going: log what it wrote last (an unfinished line too), unmap."""
        page = self.conns.pop(domid, None)
        if page is not None:
            self.on_guest_event(core, domid)
            unmap_guest_page(self.kernel, core, page)
        rest = self._partial.pop(domid, None)
        name = self.names.pop(domid, None)
        if rest and name is not None:
            self._log(core, domid, name, bytes(rest))

    def _log(self, core: Core, domid: int, name: str, line: bytes) -> None:
        text = line.decode(errors="replace")
        self.logs[name].append(text)
        self.kernel.os.rec.emit(K.CONSOLE_OUT, core.now_ns(), core.cpu_id, domid, -1, text=text)

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
            self._log(core, domid, self.names[domid], line)
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


__all__ = ["ConsoleService"]
