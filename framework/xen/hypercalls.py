"""Hypercall entry (`sc 1`) and the Xen calls: sched_op, set_timer_op, vcpu_op,
xen_version, console_io, event_channel_op, memory_op.

r3 holds the number (Xen calls marked with ~0 << 16), r4..r11 the arguments, and the
result goes back in r3.  Arguments in memory come through xencomm handles.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from framework.errors import (
    AllocError,
    GuestFault,
    SimulationError,
    XencommError,
    fault_reason,
)
from framework.hw970.core import Core
from framework.trace.schema import K
from framework.xen import abi, costs, evtchn
from framework.xen.abi import (
    EAGAIN,
    EFAULT,
    EINVAL,
    ENOSPC,
    ENOSYS,
    EPERM,
    ESRCH,
    HCALL_NAMES,
    PAPR_MAX_TOKEN,
    PAPR_NAMES,
    XEN_MARK,
)
from framework.xen.domain import Domain, DomainState, Vcpu
from framework.xen.evtchn import PortState
from framework.xen.grant_table import do_grant_table_op
from framework.xen.xencomm import Xencomm

if TYPE_CHECKING:
    from framework.xen.hypervisor import Hypervisor

Handler = Callable[["Hypervisor", Core, Vcpu], int]
_MASK64: Final = 0xFFFFFFFFFFFFFFFF
#: Xen's continuation encoding for memory_op: progress in the cmd's upper bits.
MEMOP_EXTENT_SHIFT: Final = 4
MEMOP_BATCH: Final = 4  # extents handled per pass before a continuation


def xencomm_of(xen: Hypervisor, dom: Domain) -> Xencomm:
    """The domain's xencomm walker (cached until its physical map changes)."""
    phys = dom.phys
    assert phys is not None
    cached = dom.xencomm
    if cached is None or cached[0] is not phys:
        cached = (phys, Xencomm(xen.memory, phys.pfn_to_mfn))
        dom.xencomm = cached
    return cached[1]


def hypercall_entry(xen: Hypervisor) -> Callable[[Core], None]:
    """The function a core calls on `sc 1` from supervisor state."""
    rec = xen.rec

    def entry(core: Core) -> None:
        st = core.state
        assert st is not None
        v = st.owner
        assert isinstance(v, Vcpu)
        core.charge(costs.HCALL_ENTRY)
        r3 = core.gpr(3)
        dom = v.domain
        now = core.now_ns()
        if r3 & XEN_MARK == XEN_MARK:
            nr = r3 & 0xFFFF
            name = HCALL_NAMES.get(nr) or f"hcall_{nr}"
            handler = XEN_CALLS.get(nr)
        else:
            nr = r3
            name = PAPR_NAMES.get(nr) or f"papr_{nr:#x}"
            handler = _papr_handler(nr)
        rec.emit(
            K.HCALL_ENTER,
            now,
            core.cpu_id,
            dom.domid,
            v.vcpu_id,
            nr,
            core.gpr(4),
            core.gpr(5),
            core.gpr(6),
            name,
        )
        if handler is None:
            result = -ENOSYS if r3 & XEN_MARK == XEN_MARK else abi.H_FUNCTION
        else:
            try:
                result = handler(xen, core, v)
            except (GuestFault, SimulationError):
                raise
            except Exception as exc:
                # Not the caller's fault: Xen's own code broke (see framework/errors.py).
                raise SimulationError(f"Xen bug in {name}: {fault_reason(exc)}") from exc
        if result == CONTINUATION:
            core.pc = core.pc - 4
            rec.emit(K.HCALL_CONTINUATION, core.now_ns(), core.cpu_id, dom.domid, v.vcpu_id, nr)
            result_value = 0
        else:
            core.set_gpr(3, result)
            result_value = result
        rec.emit(
            K.HCALL_EXIT,
            core.now_ns(),
            core.cpu_id,
            dom.domid,
            v.vcpu_id,
            nr,
            result_value,
            text=name,
        )

    return entry


#: Sentinel result: re-execute the `sc` with the (updated) arguments (no hcall returns it).
CONTINUATION: Final = -(1 << 72)


def _papr_handler(token: int) -> Handler | None:
    from framework.xen import papr

    if token % 4 or token > PAPR_MAX_TOKEN:
        return lambda xen, core, v: abi.H_PARAMETER
    return papr.PAPR_CALLS.get(token)


# -- sched_op -------------------------------------------------------------------------------
def do_sched_op(xen: Hypervisor, core: Core, v: Vcpu) -> int:
    cmd = core.gpr(4)
    core.charge(costs.HCALL_OP)
    if cmd == abi.SCHEDOP_yield:
        v.yielding = True
        core.request_stop()
        return 0
    if cmd == abi.SCHEDOP_block:
        if xen.events_need_delivery(v):
            return 0
        v.blocking = True
        core.request_stop()
        return 0
    if cmd in (abi.SCHEDOP_shutdown, abi.SCHEDOP_poll):
        try:
            comm = xencomm_of(xen, v.domain)
            layout = abi.SCHED_SHUTDOWN if cmd == abi.SCHEDOP_shutdown else abi.SCHED_POLL
            arg = layout.unpack(comm.copy_from_guest(core.gpr(5), layout.size))
            core.charge(costs.XENCOMM_PER_PAGE)
            if cmd == abi.SCHEDOP_shutdown:
                xen.shutdown(v.domain, arg["reason"])
                core.request_stop()
                return 0
            n = arg["nr_ports"]
            if n == 0 or n > 128:
                return -EINVAL
            raw = comm.copy_from_guest(arg["ports"], 4 * n)
        except XencommError as err:
            return -err.errno
        ports = tuple(int.from_bytes(raw[4 * i : 4 * i + 4], "big") for i in range(n))
        si = v.domain.shared_info_maddr
        for p in ports:
            if not v.domain.evtchn.valid(p):
                return -EINVAL
            if evtchn.is_pending(xen.memory, si, p):
                return 0
        v.polling = ports
        v.blocking = True
        if arg["timeout"]:
            v.poll_deadline = arg["timeout"]
            xen.poll_timeout(v, arg["timeout"])
        core.request_stop()
        return 0
    return -EINVAL


def do_set_timer_op(xen: Hypervisor, core: Core, v: Vcpu) -> int:
    timeout = core.gpr(4)
    core.charge(costs.TIMER_SET)
    xen.set_timer(v, timeout if timeout else None, core)
    return 0


def do_vcpu_op(xen: Hypervisor, core: Core, v: Vcpu) -> int:
    cmd, vid = core.gpr(4), core.gpr(5)
    core.charge(costs.HCALL_OP)
    dom = v.domain
    if vid >= len(dom.vcpus):
        return -abi.ENOENT
    target = dom.vcpus[vid]
    if cmd == abi.VCPUOP_is_up:
        return int(target.is_up)
    if cmd == abi.VCPUOP_up:
        if not target.initialised:
            return -EINVAL
        xen.vcpu_up(target)
        return 0
    if cmd == abi.VCPUOP_down:
        if target.is_up:
            target.is_up = False
            target.going_down = True
            xen.rec.emit(K.VCPU_DOWN, core.now_ns(), core.cpu_id, dom.domid, vid)
            if target is v:
                core.request_stop()
            else:
                xen._stop_vcpu(target, core.now_ns())
        return 0
    return -ENOSYS


def do_xen_version(xen: Hypervisor, core: Core, v: Vcpu) -> int:
    cmd = core.gpr(4)
    core.charge(costs.HCALL_OP)
    if cmd == abi.XENVER_version:
        return abi.XEN_VERSION[0] << 16 | abi.XEN_VERSION[1]
    if cmd == abi.XENVER_pagesize:
        return 4096
    data = {
        abi.XENVER_extraversion: abi.XEN_EXTRAVERSION,
        abi.XENVER_capabilities: abi.XEN_CAPABILITIES,
    }.get(cmd)
    if data is None:
        return -ENOSYS
    try:
        xencomm_of(xen, v.domain).copy_to_guest(core.gpr(5), data)
    except XencommError as err:
        return -err.errno
    return 0


def do_console_io(xen: Hypervisor, core: Core, v: Vcpu) -> int:
    cmd, count, handle = core.gpr(4), core.gpr(5), core.gpr(6)
    if cmd == abi.CONSOLEIO_read:
        return 0
    if cmd != abi.CONSOLEIO_write:
        return -ENOSYS
    if count > 4096:
        return -EINVAL
    try:
        data = xencomm_of(xen, v.domain).copy_from_guest(handle, count)
    except XencommError as err:
        return -err.errno
    core.charge(costs.HCALL_OP + count)
    dom = v.domain
    for ch in data:
        if ch == 10:
            line = dom.console_line.decode("utf-8", "replace")
            dom.console_line.clear()
            dom.console_text.append(line)
            xen.rec.emit(K.CONSOLE_OUT, core.now_ns(), core.cpu_id, dom.domid, v.vcpu_id, text=line)
            xen.console_sink(dom, line)
        elif ch != 13:
            dom.console_line.append(ch)
    return count


# -- event channels ---------------------------------------------------------------------------
def _domain_arg(xen: Hypervisor, v: Vcpu, domid: int) -> Domain | None:
    if domid == abi.DOMID_SELF or domid == v.domain.domid:
        return v.domain
    if not v.domain.privileged:
        return None
    return xen.domains.get(domid)


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


def evtchn_send(xen: Hypervisor, dom: Domain, port: int, cpu: int, vcpu: int) -> int:
    p = dom.evtchn.get(port)
    if p is None:
        return -EINVAL
    now = xen.now()
    if p.state == PortState.INTERDOMAIN:
        xen.rec.emit(K.EVTCHN_SEND, now, cpu, dom.domid, vcpu, port, p.remote_dom, p.remote_port)
        peer = xen.domains.get(p.remote_dom)
        if peer is not None and peer.state == DomainState.RUNNING:
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


EVTCHN_LAYOUTS: dict[int, abi.Layout] = {
    abi.EVTCHNOP_alloc_unbound: abi.EVTCHN_ALLOC_UNBOUND,
    abi.EVTCHNOP_bind_interdomain: abi.EVTCHN_BIND_INTERDOMAIN,
    abi.EVTCHNOP_bind_virq: abi.EVTCHN_BIND_VIRQ,
    abi.EVTCHNOP_bind_ipi: abi.EVTCHN_BIND_IPI,
    abi.EVTCHNOP_bind_pirq: abi.EVTCHN_BIND_PIRQ,
    abi.EVTCHNOP_send: abi.EVTCHN_PORT,
    abi.EVTCHNOP_close: abi.EVTCHN_PORT,
    abi.EVTCHNOP_unmask: abi.EVTCHN_PORT,
    abi.EVTCHNOP_bind_vcpu: abi.EVTCHN_BIND_VCPU,
    abi.EVTCHNOP_status: abi.EVTCHN_STATUS,
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
    if cmd == abi.EVTCHNOP_send:  # the hot path: no closures, no reply
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
        """Allocate and record a bound port (evtchn.bind); -ENOSPC if the table is full."""
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

    if cmd == abi.EVTCHNOP_alloc_unbound:
        owner = _domain_arg(xen, v, arg["dom"])
        if owner is None:
            return -EPERM if arg["dom"] in xen.domains else -ESRCH
        remote = arg["remote_dom"]
        if remote == abi.DOMID_SELF:
            remote = v.domain.domid
        port = new_port(owner, PortState.UNBOUND, "unbound", remote_dom=remote)
        return port if port < 0 else reply(port=port)
    if cmd == abi.EVTCHNOP_bind_interdomain:
        peer = xen.domains.get(arg["remote_dom"]) if arg["remote_dom"] != abi.DOMID_SELF else dom
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
    if cmd == abi.EVTCHNOP_bind_virq:
        virq, vid = arg["virq"], arg["vcpu"]
        if virq >= abi.NR_VIRQS or vid >= len(dom.vcpus):
            return -EINVAL
        target = dom.vcpus[vid]
        if virq in target.virq_ports:
            return -abi.EEXIST
        port = new_port(dom, PortState.VIRQ, "virq", virq=virq, notify=vid, vcpu=vid)
        if port < 0:
            return port
        target.virq_ports[virq] = port
        return reply(port=port)
    if cmd == abi.EVTCHNOP_bind_ipi:
        vid = arg["vcpu"]
        if vid >= len(dom.vcpus):
            return -EINVAL
        port = new_port(dom, PortState.IPI, "ipi", remote_dom=dom.domid, notify=vid, vcpu=vid)
        return port if port < 0 else reply(port=port)
    if cmd == abi.EVTCHNOP_bind_pirq:
        # Physical interrupts (MPIC sources) of devices Xen gave this domain: dom0's.
        pirq = arg["pirq"]
        if not dom.privileged:
            return -EPERM
        if not 0 <= pirq < xen.machine.mpic.nsources:
            return -EINVAL
        if pirq in xen.pirqs:
            return -abi.EBUSY
        port = new_port(dom, PortState.PIRQ, "pirq", remote_port=pirq, vcpu=v.vcpu_id)
        if port < 0:
            return port
        xen.pirqs[pirq] = (dom.domid, port)
        return reply(port=port)
    if cmd == abi.EVTCHNOP_close:
        return evtchn_close(xen, dom, arg["port"])
    if cmd == abi.EVTCHNOP_unmask:
        port = arg["port"]
        if not dom.evtchn.valid(port):
            return -EINVAL
        p = dom.evtchn.ports[port]
        target = dom.vcpus[p.notify_vcpu if p.notify_vcpu < len(dom.vcpus) else 0]
        if evtchn.unmask(xen.memory, dom.shared_info_maddr, target.vcpu_info_maddr, port):
            xen.vcpu_kick(target, now)
        return 0
    if cmd == abi.EVTCHNOP_bind_vcpu:
        port, vid = arg["port"], arg["vcpu"]
        bp = dom.evtchn.get(port)
        if bp is None or vid >= len(dom.vcpus):
            return -EINVAL
        if bp.state not in (
            PortState.INTERDOMAIN,
            PortState.UNBOUND,
            PortState.VIRQ,
            PortState.PIRQ,
        ):
            return -EINVAL
        bp.notify_vcpu = vid
        return 0
    if cmd == abi.EVTCHNOP_status:
        owner = _domain_arg(xen, v, arg["dom"])
        if owner is None:
            return -ESRCH
        sp = owner.evtchn.get(arg["port"]) if owner.evtchn.valid(arg["port"]) else None
        status = {
            None: abi.EVTCHNSTAT_closed,
            PortState.RESERVED: abi.EVTCHNSTAT_closed,
            PortState.UNBOUND: abi.EVTCHNSTAT_unbound,
            PortState.INTERDOMAIN: abi.EVTCHNSTAT_interdomain,
            PortState.VIRQ: abi.EVTCHNSTAT_virq,
            PortState.IPI: abi.EVTCHNSTAT_ipi,
            PortState.PIRQ: abi.EVTCHNSTAT_pirq,
        }[sp.state if sp is not None else None]
        out = {"status": status, "vcpu": sp.notify_vcpu if sp else 0}
        if sp is not None and sp.state in (PortState.UNBOUND, PortState.INTERDOMAIN):
            out["u_dom"] = sp.remote_dom
            out["u_port"] = sp.remote_port
        elif sp is not None and sp.state == PortState.VIRQ:
            out["u_virq"] = sp.virq
        return reply(**out)
    return -ENOSYS


# -- memory_op ------------------------------------------------------------------------------
def do_memory_op(xen: Hypervisor, core: Core, v: Vcpu) -> int:
    raw_cmd, handle = core.gpr(4), core.gpr(5)
    cmd = raw_cmd & ((1 << MEMOP_EXTENT_SHIFT) - 1)
    start = raw_cmd >> MEMOP_EXTENT_SHIFT
    if cmd not in (abi.XENMEM_increase_reservation, abi.XENMEM_populate_physmap):
        return -ENOSYS
    comm = xencomm_of(xen, v.domain)
    try:
        arg = abi.MEMORY_RESERVATION.unpack(
            comm.copy_from_guest(handle, abi.MEMORY_RESERVATION.size)
        )
    except XencommError as err:
        return -err.errno
    target = _domain_arg(xen, v, arg["domid"])
    if target is None:
        return -ESRCH
    if arg["extent_order"] != 12:
        return -EINVAL  # memory beyond the RMA comes in 16 MiB extents only
    total = arg["nr_extents"]
    batch = min(MEMOP_BATCH, total - start)
    if target.phys is None:
        return -EINVAL
    if (target.phys.nr_pages + batch * 4096) > target.max_pages > 0:
        return start if start else -abi.ENOMEM
    try:
        pfns = xen.add_extents(target, batch)
    except AllocError as err:
        xen.alloc_failure(target, err)
        return start if start else -abi.ENOMEM
    core.charge(costs.DOMAIN_BUILD_PER_MIB * 16 * batch)
    if arg["extent_start"]:
        try:
            data = b"".join(p.to_bytes(8, "big") for p in pfns)
            comm.copy_to_guest(arg["extent_start"], data, offset=8 * start)
        except XencommError:
            return -EFAULT
    done = start + batch
    if done < total:
        core.set_gpr(4, cmd | (done << MEMOP_EXTENT_SHIFT))
        return CONTINUATION
    return total


def do_domctl(xen: Hypervisor, core: Core, v: Vcpu) -> int:
    from framework.xen.domctl import domctl

    return domctl(xen, core, v)


XEN_CALLS: dict[int, Handler] = {
    abi.HYPERVISOR_sched_op: do_sched_op,
    abi.HYPERVISOR_set_timer_op: do_set_timer_op,
    abi.HYPERVISOR_vcpu_op: do_vcpu_op,
    abi.HYPERVISOR_xen_version: do_xen_version,
    abi.HYPERVISOR_console_io: do_console_io,
    abi.HYPERVISOR_event_channel_op: do_event_channel_op,
    abi.HYPERVISOR_memory_op: do_memory_op,
    abi.HYPERVISOR_grant_table_op: do_grant_table_op,
    abi.HYPERVISOR_domctl: do_domctl,
}

__all__ = ["CONTINUATION", "EAGAIN", "XEN_CALLS", "evtchn_close", "hypercall_entry"]
