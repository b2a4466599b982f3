"""xenstored's connections to guests: one store ring per guest, in a page the guest granted
to dom0, served request by request by the daemon (`framework.dom0.xenstored`); dom0's own
requests reach the daemon directly (`LocalXenbus`).

xenstored also binds VIRQ_DOM_EXC, which Xen raises when a domain shuts down: it then
asks Xen (getdomaininfo) which of its guests are newly shut down and, if any, fires
@releaseDomain, as Xen 3.1's xenstored `domain_cleanup` does; xend's watch on it looks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from framework.guest import xs_wire as xs
from framework.guest.byte_ring import XenstoreRing
from framework.guest.kmem import KernelMemory
from framework.guest.xenbus import LocalXenbus
from framework.hw970.core import Core
from framework.trace.ids import K
from framework.xen.public.domctl import DOMINF_dying, DOMINF_shutdown
from framework.xen.public.event_channel import EVTCHN_BIND_VIRQ, EVTCHNOP_bind_virq
from framework.xen.public.grant_table import GNTTAB_RESERVED_XENSTORE
from framework.xen.public.xen import VIRQ_DOM_EXC, HYPERVISOR_event_channel_op

if TYPE_CHECKING:
    from framework.guest.kernel import GuestKernel

from framework.dom0.guest_pages import GuestPage, map_guest_page, unmap_guest_page
from framework.dom0.xenstored import Xenstored

#: getdomaininfo's flags of a domain (None: Xen has no such domain), as dom0 reads them.
DomainFlags = Callable[[Core, int], int | None]


class StoreService:
    """xenstored as dom0 runs it: the daemon plus one ring connection per guest."""

    def __init__(self, kernel: GuestKernel) -> None:
        self.kernel = kernel
        self.daemon = Xenstored()
        self.conns: dict[int, GuestPage] = {}
        self.local = LocalXenbus(kernel, self.submit)
        #: Guests found shut down (or dying) since they were introduced.
        self.shut_down: set[int] = set()
        self._flags_of: DomainFlags | None = None

    def watch_domain_exceptions(self, core: Core, flags_of: DomainFlags) -> None:
        """Bind VIRQ_DOM_EXC; `flags_of(core, domid)` is getdomaininfo's flags word (None
        when Xen has no such domain)."""
        k = self.kernel
        rc, out = k.op(
            core,
            HYPERVISOR_event_channel_op,
            EVTCHNOP_bind_virq,
            EVTCHN_BIND_VIRQ,
            virq=VIRQ_DOM_EXC,
            vcpu=0,
        )
        if rc != 0:
            k.console(core, f"xenstored: binding VIRQ_DOM_EXC failed ({rc})")
            return
        self._flags_of = flags_of
        k.port_handlers[out["port"]] = self.on_domain_exception

    def on_domain_exception(self, core: Core, _port: int = 0) -> None:
        """A domain shut down or died: fire @releaseDomain if one of ours is newly so."""
        flags_of = self._flags_of
        assert flags_of is not None
        notify = False
        for domid in sorted(self.conns):
            flags = flags_of(core, domid)
            gone = flags is None or bool(flags & (DOMINF_shutdown | DOMINF_dying))
            if gone and domid not in self.shut_down:
                self.shut_down.add(domid)
                notify = True
        if notify:
            for target, msg in self.daemon.domains_shut_down():
                self._route(core, target, msg)

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
        self.shut_down.discard(domid)
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

    def _flush(self, core: Core, page: GuestPage) -> None:
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


__all__ = ["DomainFlags", "StoreService"]
