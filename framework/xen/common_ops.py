"""The small calls of Xen's common code a guest makes about itself: sched_op,
set_timer_op, vcpu_op (common/schedule.c, domain.c), xen_version (kernel.c) and console_io
(drivers/char/console.c).

Checked as Xen 3.1 checks them: a shutdown reason is the low byte of what the guest
passed (`(u8)`); a set_timer_op deadline that is negative as Xen's signed s_time_t, or
more than 2**50 ns (about 13 days) ahead, fires 100 ms from now instead (the "huge
timeout" workaround for Linux's wrapped jiffies); a vcpu_op VCPU id beyond MAX_VIRT_CPUS
is -EINVAL, one the domain does not have -ENOENT.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from framework.hw970.core import Core
from framework.trace.ids import K
from framework.xen import costs, evtchn
from framework.xen.console import guest_console_write
from framework.xen.domain import Vcpu
from framework.xen.public.errno import EINVAL, ENOENT, ENOSYS
from framework.xen.public.sched import (
    SCHED_POLL,
    SCHED_SHUTDOWN,
    SCHEDOP_block,
    SCHEDOP_poll,
    SCHEDOP_shutdown,
    SCHEDOP_yield,
)
from framework.xen.public.vcpu import Runstate, VCPUOP_down, VCPUOP_is_up, VCPUOP_up
from framework.xen.public.version import (
    XEN_CAPABILITIES,
    XEN_CHANGESET,
    XEN_COMPILE_INFO,
    XEN_EXTRAVERSION,
    XEN_PAGESIZE,
    XEN_PLATFORM_PARAMETERS,
    XEN_VERSION,
    XENVER_capabilities,
    XENVER_changeset,
    XENVER_compile_info,
    XENVER_extraversion,
    XENVER_pagesize,
    XENVER_platform_parameters,
    XENVER_version,
)
from framework.xen.public.xen import (
    MAX_VIRT_CPUS,
    MAX_VMASST_TYPE,
    CONSOLEIO_read,
    CONSOLEIO_write,
    VMASST_CMD_disable,
    VMASST_CMD_enable,
)
from framework.xen.xencomm import XencommError, xencomm_of

if TYPE_CHECKING:
    from framework.xen.hypervisor import Hypervisor

#: set_timer_op: deadlines this far ahead (or negative as s_time_t) are "huge".
HUGE_TIMEOUT_NS: Final = 1 << 50
#: ...and fire this long after the call instead (MILLISECS(100)).
HUGE_TIMEOUT_FALLBACK_NS: Final = 100_000_000


def do_sched_op(xen: Hypervisor, core: Core, v: Vcpu) -> int:
    cmd = core.gpr(4)
    core.charge(costs.HCALL_OP)
    if cmd == SCHEDOP_yield:
        v.yielding = True
        core.request_stop()
        return 0
    if cmd == SCHEDOP_block:
        if xen.events_need_delivery(v):
            return 0
        v.blocking = True
        core.request_stop()
        return 0
    if cmd in (SCHEDOP_shutdown, SCHEDOP_poll):
        try:
            comm = xencomm_of(xen, v.domain)
            layout = SCHED_SHUTDOWN if cmd == SCHEDOP_shutdown else SCHED_POLL
            arg = layout.unpack(comm.copy_from_guest(core.gpr(5), layout.size))
            core.charge(costs.XENCOMM_PER_PAGE)
            if cmd == SCHEDOP_shutdown:
                xen.shutdown(v.domain, arg["reason"] & 0xFF)
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


def do_sched_op_compat(xen: Hypervisor, core: Core, v: Vcpu) -> int:
    """The pre-3.0.2 sched_op: yield and block as sched_op, but shutdown takes its reason
    in r5 itself rather than through a structure (common/schedule.c)."""
    cmd = core.gpr(4)
    if cmd == SCHEDOP_shutdown:
        core.charge(costs.HCALL_OP)
        xen.shutdown(v.domain, core.gpr(5) & 0xFF)
        core.request_stop()
        return 0
    if cmd in (SCHEDOP_yield, SCHEDOP_block):
        return do_sched_op(xen, core, v)
    return -ENOSYS


def do_vm_assist(xen: Hypervisor, core: Core, v: Vcpu) -> int:
    """vm_assist(cmd, type): turn a per-domain assist on or off (common/kernel.c)."""
    cmd, kind = core.gpr(4), core.gpr(5)
    core.charge(costs.HCALL_OP)
    if kind > MAX_VMASST_TYPE:
        return -EINVAL
    dom = v.domain
    if cmd == VMASST_CMD_enable:
        dom.vm_assist |= 1 << kind
        return 0
    if cmd == VMASST_CMD_disable:
        dom.vm_assist &= ~(1 << kind)
        return 0
    return -ENOSYS


def do_set_timer_op(xen: Hypervisor, core: Core, v: Vcpu) -> int:
    """set_timer_op(deadline): a one-shot VIRQ_TIMER at `deadline` ns of system time; 0
    cancels; a huge deadline fires 100 ms from now (see the module docstring)."""
    timeout = core.gpr(4)
    core.charge(costs.TIMER_SET)
    if timeout == 0:
        xen.set_timer(v, None, core)
        return 0
    now = core.now_ns()
    if timeout >> 63 or timeout - now >= HUGE_TIMEOUT_NS:
        xen.conring.printk(
            f"Warning: huge timeout set by domain {v.domain.domid} (vcpu {v.vcpu_id}): {timeout:x}",
            now,
            core.cpu_id,
        )
        timeout = now + HUGE_TIMEOUT_FALLBACK_NS
    xen.set_timer(v, timeout, core)
    return 0


def do_vcpu_op(xen: Hypervisor, core: Core, v: Vcpu) -> int:
    cmd, vid = core.gpr(4), core.gpr(5)
    core.charge(costs.HCALL_OP)
    dom = v.domain
    if vid >= MAX_VIRT_CPUS:
        return -EINVAL  # int vcpuid: negative ones too
    if vid >= len(dom.vcpus):
        return -ENOENT
    target = dom.vcpus[vid]
    if cmd == VCPUOP_is_up:
        return int(target.is_up)
    if cmd == VCPUOP_up:
        if not target.initialised:
            return -EINVAL
        xen.vcpu_up(target)
        return 0
    if cmd == VCPUOP_down:
        if target.is_up:
            target.is_up = False
            # Only a VCPU on a CPU has a slice to end; one stopped here must not keep the
            # flag, or the VCPUOP_up that follows could never wake it.
            target.going_down = target.runstate == Runstate.RUNNING
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
    if cmd == XENVER_version:
        return XEN_VERSION[0] << 16 | XEN_VERSION[1]
    if cmd == XENVER_pagesize:
        return XEN_PAGESIZE
    data = {
        XENVER_extraversion: XEN_EXTRAVERSION,
        XENVER_capabilities: XEN_CAPABILITIES,
        XENVER_compile_info: XEN_COMPILE_INFO,
        XENVER_changeset: XEN_CHANGESET,
        XENVER_platform_parameters: XEN_PLATFORM_PARAMETERS,
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
    if cmd == CONSOLEIO_read:
        return 0
    if cmd != CONSOLEIO_write:
        return -ENOSYS
    if count > 4096:
        return -EINVAL
    try:
        data = xencomm_of(xen, v.domain).copy_from_guest(handle, count)
    except XencommError as err:
        return -err.errno
    core.charge(costs.HCALL_OP + count)
    guest_console_write(xen, core.now_ns(), core.cpu_id, v, data)
    return count


__all__ = [
    "do_console_io",
    "do_sched_op",
    "do_sched_op_compat",
    "do_set_timer_op",
    "do_vcpu_op",
    "do_vm_assist",
    "do_xen_version",
]
