"""Hypercall entry (`sc 1`) and dispatch: the one module that knows every handler module.

r3 holds the number (Xen calls marked with ~0 << 16, PAPR calls by token), r4..r11 the
arguments, and the result goes back in r3.  The handler modules (common_ops,
event_channel, memory_op, grant_table ops, domctl, sysctl, physdev, papr, tce, vterm)
import nothing of each other or of this module, so the hypervisor's import graph stays a
tree.

As the port's `hcalls.c` answers before any handler runs: `sc 1` from problem state
(MSR[PR] = 1) gets -EPERM for a Xen call and H_Privilege for a PAPR call, and execution
goes on after the `sc`; a Xen call without a handler gets -ENOSYS; a PAPR token that is
not a multiple of 4 or lies beyond the last, or a valid one without a handler
(`do_ni_papr_hypercall`), gets H_Parameter.  Both unsupported kinds are logged to Xen's
console ring as the port's printk did.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from framework.errors import GuestFault, SimulationError, fault_reason
from framework.hw970.core import Core
from framework.hw970.regs import MSR_PR
from framework.trace.ids import K
from framework.xen import costs
from framework.xen.common_ops import (
    do_console_io,
    do_sched_op,
    do_sched_op_compat,
    do_set_timer_op,
    do_vcpu_op,
    do_vm_assist,
    do_xen_version,
)
from framework.xen.continuation import CONTINUATION, Handler
from framework.xen.domain import Vcpu
from framework.xen.domctl import domctl
from framework.xen.event_channel import do_event_channel_op
from framework.xen.grant_ops import do_grant_table_op
from framework.xen.memory_op import do_memory_op
from framework.xen.papr import PAGE_TABLE_CALLS
from framework.xen.physdev import do_physdev_op
from framework.xen.public.errno import ENOSYS, EPERM
from framework.xen.public.papr import H_PARAMETER, H_PRIVILEGE, PAPR_MAX_TOKEN, PAPR_NAMES
from framework.xen.public.xen import (
    HCALL_NAMES,
    XEN_MARK,
    HYPERVISOR_console_io,
    HYPERVISOR_domctl,
    HYPERVISOR_event_channel_op,
    HYPERVISOR_grant_table_op,
    HYPERVISOR_memory_op,
    HYPERVISOR_physdev_op,
    HYPERVISOR_sched_op,
    HYPERVISOR_sched_op_compat,
    HYPERVISOR_set_timer_op,
    HYPERVISOR_sysctl,
    HYPERVISOR_vcpu_op,
    HYPERVISOR_vm_assist,
    HYPERVISOR_xen_version,
)
from framework.xen.sysctl import do_sysctl
from framework.xen.tce import TCE_CALLS
from framework.xen.vterm import VTERM_CALLS

if TYPE_CHECKING:
    from framework.xen.hypervisor import Hypervisor

#: Xen's own hypercalls by number (the low 16 bits of r3 after XEN_MARK).
XEN_CALLS: Final[dict[int, Handler]] = {
    HYPERVISOR_sched_op: do_sched_op,
    HYPERVISOR_set_timer_op: do_set_timer_op,
    HYPERVISOR_vcpu_op: do_vcpu_op,
    HYPERVISOR_xen_version: do_xen_version,
    HYPERVISOR_console_io: do_console_io,
    HYPERVISOR_event_channel_op: do_event_channel_op,
    HYPERVISOR_memory_op: do_memory_op,
    HYPERVISOR_grant_table_op: do_grant_table_op,
    HYPERVISOR_domctl: domctl,
    HYPERVISOR_sysctl: do_sysctl,
    HYPERVISOR_physdev_op: do_physdev_op,
    HYPERVISOR_vm_assist: do_vm_assist,
    HYPERVISOR_sched_op_compat: do_sched_op_compat,
}

#: PAPR hcalls by token: the page table (papr), the IOMMU (tce), console and DABR (vterm).
PAPR_CALLS: Final[dict[int, Handler]] = {**PAGE_TABLE_CALLS, **TCE_CALLS, **VTERM_CALLS}


def _ni_papr_hypercall(xen: Hypervisor, core: Core, v: Vcpu) -> int:
    xen.conring.printk(
        f"unsupported PAPR hcall {core.gpr(3):#x} was called by dom{v.domain.domid:#x}"
    )
    return H_PARAMETER


def papr_handler(token: int) -> Handler:
    """The handler of a PAPR token: H_Parameter for a token that is not a multiple of 4,
    lies beyond the last one, or has no handler in the port."""
    if token % 4 or token > PAPR_MAX_TOKEN:
        return _ni_papr_hypercall
    return PAPR_CALLS.get(token, _ni_papr_hypercall)


def hypercall_entry(xen: Hypervisor) -> Callable[[Core], None]:
    """The function a core calls on `sc 1`, from either privilege state."""
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
            handler = papr_handler(nr)
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
        if st.tr.msr & MSR_PR:
            result = -EPERM if r3 & XEN_MARK == XEN_MARK else H_PRIVILEGE
        elif handler is None:
            xen.conring.printk(f"unsupported Xen hypercall: {nr:#x}")
            result = -ENOSYS
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


__all__ = ["PAPR_CALLS", "XEN_CALLS", "hypercall_entry", "papr_handler"]
