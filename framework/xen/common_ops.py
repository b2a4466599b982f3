"""The small calls of Xen's common code a guest makes about itself: sched_op,
set_timer_op, vcpu_op (common/schedule.c, domain.c), xen_version (kernel.c) and console_io
(drivers/char/console.c).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from framework.hw970.core import Core
from framework.trace.schema import K
from framework.xen import abi, costs, evtchn
from framework.xen.abi import EINVAL, ENOSYS
from framework.xen.domain import Vcpu
from framework.xen.xencomm import XencommError, xencomm_of

if TYPE_CHECKING:
    from framework.xen.hypervisor import Hypervisor


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


__all__ = ["do_console_io", "do_sched_op", "do_set_timer_op", "do_vcpu_op", "do_xen_version"]
