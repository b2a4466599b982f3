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

Handlers check every argument and answer with an errno or a PAPR code; an unexpected
exception out of one is a simulator bug, never the guest's fault and never the end of the
run: it is recorded (`hcall.bug` with the call and all its arguments, and the hypervisor's
`bugs` list, which the run's summary, run.json and error.log report), and `XenBug` crashes
the calling domain (see framework/errors.py).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from framework.errors import GuestFault, SimulationError, XenBug, fault_reason
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


#: Registers a hypercall's arguments travel in: r4..r11.
NR_ARG_REGS: Final = 8


@dataclass(frozen=True)
class HypercallBug:
    """An unexpected exception out of a hypercall handler, with the call that raised it."""

    t_ns: int
    domid: int
    vcpu: int
    name: str
    nr: int
    #: r4..r11 as the handler was entered.
    args: tuple[int, ...]
    #: The exception's type and message.
    reason: str
    #: The handler's traceback, for the run's error.log.
    traceback: str

    def call(self) -> str:
        """The call as written in C: `memory_op(0x6, 0x31000, 0x0, ...)`."""
        return f"{self.name}({', '.join(hex(a) for a in self.args)})"

    def message(self) -> str:
        """One line for the run's summary."""
        return (
            f"simulator bug: {self.call()} from d{self.domid}v{self.vcpu} at "
            f"{self.t_ns / 1e6:.6f} ms raised {self.reason} (domain crashed)"
        )

    def as_json(self) -> dict[str, object]:
        """What run.json's `simulator_bugs` holds for it (no traceback: see error.log)."""
        return {
            "t_ns": self.t_ns,
            "dom": self.domid,
            "vcpu": self.vcpu,
            "hypercall": self.name,
            "nr": self.nr,
            "args": [hex(a) for a in self.args],
            "reason": self.reason,
        }


def _ni_papr_hypercall(xen: Hypervisor, core: Core, v: Vcpu) -> int:
    xen.conring.printk(
        f"unsupported PAPR hcall {core.gpr(3):#x} was called by dom{v.domain.domid:#x}",
        core.now_ns(),
        core.cpu_id,
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
        a0, a1, a2 = core.gpr(4), core.gpr(5), core.gpr(6)
        rec.emit(K.HCALL_ENTER, now, core.cpu_id, dom.domid, v.vcpu_id, nr, a0, a1, a2, name)
        if st.tr.msr & MSR_PR:
            result = -EPERM if r3 & XEN_MARK == XEN_MARK else H_PRIVILEGE
        elif handler is None:
            xen.conring.printk(f"unsupported Xen hypercall: {nr:#x}", now, core.cpu_id)
            result = -ENOSYS
        else:
            try:
                result = handler(xen, core, v)
            except (GuestFault, SimulationError):
                raise
            except Exception as exc:
                # Not the caller's fault: Xen's own code broke (see framework/errors.py).
                args = (a0, a1, a2) + tuple(core.gpr(r) for r in range(7, 4 + NR_ARG_REGS))
                raise _hypercall_bug(xen, core, v, nr, name, args, exc) from exc
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


def _hypercall_bug(
    xen: Hypervisor,
    core: Core,
    v: Vcpu,
    nr: int,
    name: str,
    args: tuple[int, ...],
    exc: Exception,
) -> XenBug:
    """Record `exc` out of hypercall `name` as a simulator bug; the `XenBug` to raise.

    `args` are r4..r11: r4..r6 as the entry read them (handlers write results there),
    r7..r11 as they are now (no handler writes them)."""
    bug = HypercallBug(
        core.now_ns(),
        v.domain.domid,
        v.vcpu_id,
        name,
        nr,
        args,
        fault_reason(exc),
        "".join(traceback.format_exception(exc)),
    )
    xen.bugs.append(bug)
    xen.rec.emit(
        K.HCALL_BUG,
        bug.t_ns,
        core.cpu_id,
        bug.domid,
        bug.vcpu,
        nr,
        args[0],
        args[1],
        args[2],
        text=f"{bug.call()}: {bug.reason}",
    )
    return XenBug(f"simulator bug in {bug.call()}: {bug.reason}", bug.traceback)


__all__ = [
    "NR_ARG_REGS",
    "PAPR_CALLS",
    "XEN_CALLS",
    "HypercallBug",
    "hypercall_entry",
    "papr_handler",
]
