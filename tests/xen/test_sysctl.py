"""The Xen calls dom0's tools and a Linux guest make beyond the domain's own: sysctl
(physinfo, sched_id, getdomaininfolist, readconsole), physdev_op for interrupts, vm_assist
and the old sched_op - through real hypercalls, with arguments laid out as the 3.0.4
headers lay them (big-endian, LP64)."""

from __future__ import annotations

import struct
from collections.abc import Callable

from framework.simulation import Simulation
from framework.xen.domain import DomainState
from framework.xen.public.xencomm import build_descriptor
from tests.xen.xenharness import ARG, DESC, Caller, domain_named, quickstart

# Numbers as xen.h, sysctl.h, physdev.h (Xen 3.0.4) write them.
XEN_MARK = ~0 << 16
HYPERVISOR_sched_op_compat = 6
HYPERVISOR_vm_assist = 21
HYPERVISOR_physdev_op = 33
HYPERVISOR_sysctl = 35
XEN_SYSCTL_INTERFACE_VERSION = 0x00000002
XEN_SYSCTL_readconsole = 1
XEN_SYSCTL_physinfo = 3
XEN_SYSCTL_sched_id = 4
XEN_SYSCTL_getdomaininfolist = 6
XEN_SCHEDULER_CREDIT = 5
PHYSDEVOP_irq_status_query = 5
PHYSDEVOP_eoi = 12
VMASST_CMD_enable, VMASST_CMD_disable = 0, 1
VMASST_TYPE_writable_pagetables = 2
SCHEDOP_shutdown = 2
SHUTDOWN_reboot = 1
EPERM, EINVAL, EACCES, ENOSYS = 1, 22, 13, 38
BUF = ARG + 0x2000  # scratch pages (beside ARG and DESC) for sysctl's out-of-line buffers
BUF_DESC = ARG + 0x3000


def xen_call(nr: int) -> int:
    return XEN_MARK & ((1 << 64) - 1) | nr


def sysctl(
    c: Caller, cmd: int, union: bytes, version: int = XEN_SYSCTL_INTERFACE_VERSION
) -> tuple[int, bytes]:
    """struct xen_sysctl { u32 cmd; u32 interface_version; union (8-aligned) u; } = 136 bytes."""
    c.write(ARG, struct.pack(">II", cmd, version) + union.ljust(128, b"\0"))
    c.write(DESC, build_descriptor([ARG]))
    rc = c.call(xen_call(HYPERVISOR_sysctl), DESC)
    return rc, c.read(ARG + 8, 128)


def test_physinfo_and_sched_id_describe_the_host(
    caller: Callable[[str], Caller], booted: Simulation
) -> None:
    dom0 = caller("Domain-0")
    rc, u = sysctl(dom0, XEN_SYSCTL_physinfo, b"")
    assert rc == 0
    threads, cores, sockets, nodes, khz = struct.unpack_from(">5I", u, 0)
    total, free = struct.unpack_from(">QQ", u, 24)  # u64s aligned to 8 after cpu_khz
    assert threads * cores * sockets * nodes == booted.xen.ncpus  # what xm info's nr_cpus is
    assert khz == booted.machine.config.clock_hz // 1000
    assert total << 12 == booted.machine.memory_bytes
    assert free << 12 == booted.xen.alloc.free_bytes
    rc, u = sysctl(dom0, XEN_SYSCTL_sched_id, b"")
    assert (rc, struct.unpack_from(">I", u)[0]) == (0, XEN_SCHEDULER_CREDIT)


def test_sysctl_is_for_the_privileged_domain_at_the_right_version(
    caller: Callable[[str], Caller],
) -> None:
    assert sysctl(caller("guest1"), XEN_SYSCTL_physinfo, b"")[0] == -EPERM
    assert sysctl(caller("Domain-0"), XEN_SYSCTL_physinfo, b"", version=1)[0] == -EACCES
    assert sysctl(caller("Domain-0"), 2, b"")[0] == -ENOSYS  # tbuf_op: not in the port


def test_getdomaininfolist_lists_domains_from_first_domain(booted: Simulation) -> None:
    dom0 = Caller(booted, domain_named(booted, "Domain-0"))
    dom0.write(BUF_DESC, build_descriptor([BUF]))
    # struct xen_sysctl_getdomaininfolist: u16 first_domain, u32 max_domains (at 4),
    # handle at 8, u32 num_domains at 16 (union offsets).
    union = struct.pack(">H2xIQ", 1, 2, BUF_DESC)
    rc, u = sysctl(dom0, XEN_SYSCTL_getdomaininfolist, union)
    assert rc == 0
    assert struct.unpack_from(">I", u, 16)[0] == 2  # two of the three domUs: max_domains
    got = []
    for i in range(2):
        # xen_domctl_getdomaininfo (88 bytes): u16 domain, u32 flags, u64 tot_pages,
        # max_pages, shared_info_frame, cpu_time, u32 nr_online_vcpus, max_vcpu_id.
        rec = dom0.read(BUF + 88 * i, 88)
        domid, flags, tot, _max, si, cpu_time, online, _maxid = struct.unpack_from(
            ">H2xIQQQQII", rec
        )
        dom = booted.xen.domains[domid]
        assert not flags & (1 << 0 | 1 << 2 | 1 << 3)  # XEN_DOMINF_ dying, shutdown, paused
        assert tot == dom.tot_pages and online == sum(v.is_up for v in dom.vcpus)
        assert si == (dom.rma_size >> 12) - 1  # shared_info: the RMA's last page
        assert cpu_time > 0  # it has run
        got.append(domid)
    assert got == sorted(d for d in booted.xen.domains if d >= 1)[:2]


def test_readconsole_returns_xens_messages(caller: Callable[[str], Caller]) -> None:
    dom0 = caller("Domain-0")
    assert caller("guest1").call(xen_call(77)) == -ENOSYS  # printk'd by Xen
    dom0.write(BUF_DESC, build_descriptor([BUF]))
    union = struct.pack(">I4xQI", 1, BUF_DESC, 4096)  # clear, buffer, count
    rc, u = sysctl(dom0, XEN_SYSCTL_readconsole, union)
    assert rc == 0
    n = struct.unpack_from(">I", u, 16)[0]
    assert "(XEN) unsupported Xen hypercall: 0x4d" in dom0.read(BUF, n).decode()
    rc, u = sysctl(dom0, XEN_SYSCTL_readconsole, union)
    assert (rc, struct.unpack_from(">I", u, 16)[0]) == (0, 0)  # cleared by the first read


def test_physdev_irq_status_query_and_eoi(caller: Callable[[str], Caller]) -> None:
    c = caller("Domain-0")
    c.write(DESC, build_descriptor([ARG]))
    c.write(ARG, struct.pack(">II", 9, 0xFFFF))  # irq 9, flags to be overwritten
    assert c.call(xen_call(HYPERVISOR_physdev_op), PHYSDEVOP_irq_status_query, DESC) == 0
    assert struct.unpack(">II", c.read(ARG, 8)) == (9, 0)  # Xen acks the MPIC: no EOI needed
    c.write(ARG, struct.pack(">I", 9))
    assert c.call(xen_call(HYPERVISOR_physdev_op), PHYSDEVOP_eoi, DESC) == 0
    c.write(ARG, struct.pack(">I", 100_000))
    assert c.call(xen_call(HYPERVISOR_physdev_op), PHYSDEVOP_eoi, DESC) == -EINVAL
    assert c.call(xen_call(HYPERVISOR_physdev_op), 6, DESC) == -ENOSYS  # set_iopl: x86


def test_vm_assist_enables_and_disables(caller: Callable[[str], Caller]) -> None:
    c = caller("guest1")
    nr = xen_call(HYPERVISOR_vm_assist)
    assert c.call(nr, VMASST_CMD_enable, VMASST_TYPE_writable_pagetables) == 0
    assert c.dom.vm_assist == 1 << VMASST_TYPE_writable_pagetables
    assert c.call(nr, VMASST_CMD_disable, VMASST_TYPE_writable_pagetables) == 0
    assert c.dom.vm_assist == 0
    assert c.call(nr, VMASST_CMD_enable, 4) == -EINVAL  # beyond MAX_VMASST_TYPE (3)
    assert c.call(nr, 7, 0) == -ENOSYS


def test_sched_op_compat_shutdown_takes_the_reason_in_r5() -> None:
    sim = quickstart("3ms")
    sim.run()
    c = Caller(sim, domain_named(sim, "guest3"))
    rc = c.call(xen_call(HYPERVISOR_sched_op_compat), SCHEDOP_shutdown, SHUTDOWN_reboot)
    assert rc == 0
    assert c.dom.state == DomainState.SHUTDOWN and c.dom.shutdown_reason == SHUTDOWN_reboot
    assert c.call(xen_call(HYPERVISOR_sched_op_compat), 9) == -ENOSYS
