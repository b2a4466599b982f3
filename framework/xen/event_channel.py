"""EVTCHNOP_*: event channel operations (Xen's common/event_channel.c).

The port table and the pending/mask bits in shared_info are `framework.xen.evtchn`; this
module is the hypercall that binds, sends, closes, unmasks and reports ports.

Argument checks in Xen 3.1's order: alloc_unbound and status name another domain than
DOMID_SELF only from a privileged caller (-EPERM, even for the caller's own id), then the
domain must exist (-ESRCH); a VCPU that does not exist is -ENOENT for bind_virq,
bind_ipi and bind_vcpu; a global VIRQ (all but the per-VCPU timer, debug and xenoprof
ones) binds to and moves between VCPUs only as VCPU 0 (-EINVAL); a port beyond the
table is -EINVAL for status as for close, send and unmask.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from framework.hw970.core import Core
from framework.trace.ids import K
from framework.xen import costs, evtchn
from framework.xen.domain import Domain, DomainState, Vcpu
from framework.xen.evtchn import PortState
from framework.xen.public.errno import (
    EBUSY,
    EEXIST,
    EINVAL,
    ENOENT,
    ENOSPC,
    ENOSYS,
    EPERM,
    ESRCH,
)
from framework.xen.public.event_channel import (
    EVTCHN_ALLOC_UNBOUND,
    EVTCHN_BIND_INTERDOMAIN,
    EVTCHN_BIND_IPI,
    EVTCHN_BIND_PIRQ,
    EVTCHN_BIND_VCPU,
    EVTCHN_BIND_VIRQ,
    EVTCHN_PORT,
    EVTCHN_STATUS,
    EVTCHNOP_alloc_unbound,
    EVTCHNOP_bind_interdomain,
    EVTCHNOP_bind_ipi,
    EVTCHNOP_bind_pirq,
    EVTCHNOP_bind_vcpu,
    EVTCHNOP_bind_virq,
    EVTCHNOP_close,
    EVTCHNOP_send,
    EVTCHNOP_status,
    EVTCHNOP_unmask,
    EVTCHNSTAT_closed,
    EVTCHNSTAT_interdomain,
    EVTCHNSTAT_ipi,
    EVTCHNSTAT_pirq,
    EVTCHNSTAT_unbound,
    EVTCHNSTAT_virq,
)
from framework.xen.public.layout import Layout
from framework.xen.public.xen import (
    DOMID_SELF,
    NR_VIRQS,
    VIRQ_DEBUG,
    VIRQ_TIMER,
    VIRQ_XENOPROF,
)
from framework.xen.xencomm import XencommError, xencomm_of

if TYPE_CHECKING:
    from framework.xen.hypervisor import Hypervisor


#: VIRQs each VCPU has its own of (Xen's virq_is_global is false for these).
PER_VCPU_VIRQS: Final = frozenset({VIRQ_TIMER, VIRQ_DEBUG, VIRQ_XENOPROF})


def _named_domain(xen: Hypervisor, caller: Domain, domid: int) -> Domain | int:
    """The domain alloc_unbound / status act on, or the errno: DOMID_SELF, else only a
    privileged caller may name a domain (-EPERM), which must exist (-ESRCH)."""
    if domid == DOMID_SELF:
        return caller
    if not caller.privileged:
        return -EPERM
    found = xen.domains.get(domid)
    return found if found is not None else -ESRCH


def evtchn_close(xen: Hypervisor, dom: Domain, port: int) -> int:
    p = dom.evtchn.get(port)
    if p is None or p.state == PortState.RESERVED:
        return -EINVAL
    if p.state == PortState.INTERDOMAIN:
        peer = xen.domains.get(p.remote_dom)
        if peer is not None:
            rp = peer.evtchn.get(p.remote_port)
            if rp is not None and rp.state == PortState.INTERDOMAIN:
                rp.state = PortState.UNBOUND
                rp.remote_dom = dom.domid
                rp.remote_port = 0
    if p.state == PortState.PIRQ:
        xen.pirqs.pop(p.remote_port, None)
    if p.state == PortState.VIRQ:
        for v in dom.vcpus:
            if v.virq_ports.get(p.virq) == port:
                del v.virq_ports[p.virq]
    if dom.phys is not None:
        evtchn.clear_port(xen.memory, dom.shared_info_maddr, port)
    dom.evtchn.ports[port] = evtchn.Port()
    xen.rec.emit(K.EVTCHN_CLOSE, xen.now(), xen.running_cpu(), dom.domid, -1, port)
    return 0


#: Domain states in which an interdomain event is marked pending (Xen's evtchn_set_pending
#: looks at no pause or shutdown state): a paused or suspended domain finds it pending when
#: it runs again (its VCPUs are not woken until then); a domain built and not yet started,
#: or dying, drops it, as the model always did.
_DELIVERED_TO: Final = (DomainState.RUNNING, DomainState.PAUSED, DomainState.SHUTDOWN)


def evtchn_send(xen: Hypervisor, dom: Domain, port: int, cpu: int, vcpu: int) -> int:
    p = dom.evtchn.get(port)
    if p is None:
        return -EINVAL
    now = xen.now()
    if p.state == PortState.INTERDOMAIN:
        xen.rec.emit(K.EVTCHN_SEND, now, cpu, dom.domid, vcpu, port, p.remote_dom, p.remote_port)
        peer = xen.domains.get(p.remote_dom)
        if peer is not None and peer.state in _DELIVERED_TO:
            xen.evtchn_set_pending(peer, p.remote_port)
        return 0
    if p.state == PortState.IPI:
        xen.rec.emit(K.EVTCHN_SEND, now, cpu, dom.domid, vcpu, port, dom.domid, port)
        xen.evtchn_set_pending(dom, port)
        return 0
    if p.state == PortState.UNBOUND:
        xen.rec.emit(K.EVTCHN_SEND, now, cpu, dom.domid, vcpu, port, -1, 0)
        return 0  # nobody bound yet: dropped, as in Xen
    return -EINVAL


EVTCHN_LAYOUTS: dict[int, Layout] = {
    EVTCHNOP_alloc_unbound: EVTCHN_ALLOC_UNBOUND,
    EVTCHNOP_bind_interdomain: EVTCHN_BIND_INTERDOMAIN,
    EVTCHNOP_bind_virq: EVTCHN_BIND_VIRQ,
    EVTCHNOP_bind_ipi: EVTCHN_BIND_IPI,
    EVTCHNOP_bind_pirq: EVTCHN_BIND_PIRQ,
    EVTCHNOP_send: EVTCHN_PORT,
    EVTCHNOP_close: EVTCHN_PORT,
    EVTCHNOP_unmask: EVTCHN_PORT,
    EVTCHNOP_bind_vcpu: EVTCHN_BIND_VCPU,
    EVTCHNOP_status: EVTCHN_STATUS,
}


def do_event_channel_op(xen: Hypervisor, core: Core, v: Vcpu) -> int:
    cmd, handle = core.gpr(4), core.gpr(5)
    core.charge(costs.HCALL_OP)
    dom = v.domain
    comm = xencomm_of(xen, dom)
    layout = EVTCHN_LAYOUTS.get(cmd)
    if layout is None:
        return -ENOSYS
    try:
        arg = layout.unpack(comm.copy_from_guest(handle, layout.size))
    except XencommError as err:
        return -err.errno
    core.charge(costs.XENCOMM_PER_PAGE)
    cpu = core.cpu_id
    if cmd == EVTCHNOP_send:  # the hot path: no closures, no reply
        core.charge(costs.EVTCHN_SEND)
        return evtchn_send(xen, dom, arg["port"], cpu, v.vcpu_id)
    now = core.now_ns()

    def reply(**out: int) -> int:
        fields = {k: val for k, val in arg.items() if not k.startswith("u_")}
        try:
            comm.copy_to_guest(handle, layout.pack(**(fields | out)))
        except XencommError as err:
            return -err.errno
        return 0

    def new_port(
        owner: Domain,
        state: PortState,
        kind: str,
        *,
        remote_dom: int = -1,
        remote_port: int = 0,
        virq: int = -1,
        notify: int = 0,
        vcpu: int = -1,
    ) -> int:
        """Allocate and record a bound port (evtchn.bind); -ENOSPC if the table is full,
        -EINVAL if the owner is dying (get_free_port: its channels are gone for good)."""
        if owner.state == DomainState.DYING:
            return -EINVAL
        try:
            port = owner.evtchn.alloc()
        except OverflowError:
            return -ENOSPC
        p = owner.evtchn.ports[port]
        p.state, p.remote_dom, p.remote_port = state, remote_dom, remote_port
        p.virq, p.notify_vcpu = virq, notify
        detail = virq if state == PortState.VIRQ else remote_port
        xen.rec.emit(
            K.EVTCHN_BIND, now, cpu, owner.domid, vcpu, port, remote_dom, detail, text=kind
        )
        return port

    if cmd == EVTCHNOP_alloc_unbound:
        unbound_in = _named_domain(xen, dom, arg["dom"])
        if isinstance(unbound_in, int):
            return unbound_in
        remote = arg["remote_dom"]
        if remote == DOMID_SELF:
            remote = v.domain.domid
        port = new_port(unbound_in, PortState.UNBOUND, "unbound", remote_dom=remote)
        return port if port < 0 else reply(port=port)
    if cmd == EVTCHNOP_bind_interdomain:
        peer = xen.domains.get(arg["remote_dom"]) if arg["remote_dom"] != DOMID_SELF else dom
        if peer is None:
            return -ESRCH
        rp = peer.evtchn.get(arg["remote_port"])
        if rp is None or rp.state != PortState.UNBOUND or rp.remote_dom != dom.domid:
            return -EINVAL
        port = new_port(
            dom,
            PortState.INTERDOMAIN,
            "interdomain",
            remote_dom=peer.domid,
            remote_port=arg["remote_port"],
            vcpu=v.vcpu_id,
        )
        if port < 0:
            return port
        rp.state, rp.remote_dom, rp.remote_port = PortState.INTERDOMAIN, dom.domid, port
        # Both ends now connected: make the new local port pending, as Xen does.
        xen.evtchn_set_pending(dom, port)
        return reply(local_port=port)
    if cmd == EVTCHNOP_bind_virq:
        virq, vid = arg["virq"], arg["vcpu"]
        if virq >= NR_VIRQS or virq not in PER_VCPU_VIRQS and vid != 0:
            return -EINVAL
        if vid >= len(dom.vcpus):
            return -ENOENT
        target = dom.vcpus[vid]
        if virq in target.virq_ports:
            return -EEXIST
        port = new_port(dom, PortState.VIRQ, "virq", virq=virq, notify=vid, vcpu=vid)
        if port < 0:
            return port
        target.virq_ports[virq] = port
        return reply(port=port)
    if cmd == EVTCHNOP_bind_ipi:
        vid = arg["vcpu"]
        if vid >= len(dom.vcpus):
            return -ENOENT
        port = new_port(dom, PortState.IPI, "ipi", remote_dom=dom.domid, notify=vid, vcpu=vid)
        return port if port < 0 else reply(port=port)
    if cmd == EVTCHNOP_bind_pirq:
        # Physical interrupts (MPIC sources) of devices Xen gave this domain: dom0's.
        pirq = arg["pirq"]
        if not dom.privileged:
            return -EPERM
        if not 0 <= pirq < xen.machine.mpic.nsources:
            return -EINVAL
        if pirq in xen.pirqs:
            return -EBUSY
        port = new_port(dom, PortState.PIRQ, "pirq", remote_port=pirq, vcpu=v.vcpu_id)
        if port < 0:
            return port
        xen.pirqs[pirq] = (dom.domid, port)
        return reply(port=port)
    if cmd == EVTCHNOP_close:
        return evtchn_close(xen, dom, arg["port"])
    if cmd == EVTCHNOP_unmask:
        port = arg["port"]
        if not dom.evtchn.valid(port):
            return -EINVAL
        p = dom.evtchn.ports[port]
        target = dom.vcpus[p.notify_vcpu if p.notify_vcpu < len(dom.vcpus) else 0]
        if evtchn.unmask(xen.memory, dom.shared_info_maddr, target.vcpu_info_maddr, port):
            xen.vcpu_kick(target, now)
        return 0
    if cmd == EVTCHNOP_bind_vcpu:
        port, vid = arg["port"], arg["vcpu"]
        if vid >= len(dom.vcpus):
            return -ENOENT
        bp = dom.evtchn.get(port)
        if bp is None or bp.state == PortState.VIRQ and bp.virq in PER_VCPU_VIRQS:
            return -EINVAL  # a per-VCPU VIRQ stays with its VCPU
        if bp.state not in (
            PortState.INTERDOMAIN,
            PortState.UNBOUND,
            PortState.VIRQ,
            PortState.PIRQ,
        ):
            return -EINVAL
        bp.notify_vcpu = vid
        return 0
    if cmd == EVTCHNOP_status:
        status_of = _named_domain(xen, dom, arg["dom"])
        if isinstance(status_of, int):
            return status_of
        if not status_of.evtchn.valid(arg["port"]):
            return -EINVAL
        sp = status_of.evtchn.get(arg["port"])
        status = {
            None: EVTCHNSTAT_closed,
            PortState.RESERVED: EVTCHNSTAT_closed,
            PortState.UNBOUND: EVTCHNSTAT_unbound,
            PortState.INTERDOMAIN: EVTCHNSTAT_interdomain,
            PortState.VIRQ: EVTCHNSTAT_virq,
            PortState.IPI: EVTCHNSTAT_ipi,
            PortState.PIRQ: EVTCHNSTAT_pirq,
        }[sp.state if sp is not None else None]
        out = {"status": status, "vcpu": sp.notify_vcpu if sp else 0}
        if sp is not None and sp.state in (PortState.UNBOUND, PortState.INTERDOMAIN):
            out["u_dom"] = sp.remote_dom
            out["u_port"] = sp.remote_port
        elif sp is not None and sp.state == PortState.VIRQ:
            out["u_virq"] = sp.virq
        return reply(**out)
    return -ENOSYS


__all__ = ["EVTCHN_LAYOUTS", "do_event_channel_op", "evtchn_close", "evtchn_send"]
