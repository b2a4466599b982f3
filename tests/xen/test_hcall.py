"""Xen calls through the real `sc 1` entry: event channel ops, vcpu_op, version, continuations."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from framework.hw970.asm import assemble
from framework.hw970.regs import MSR_PR
from framework.scenario import parse_scenario
from framework.simulation import Simulation
from framework.xen import evtchn
from framework.xen.public.errno import EBUSY, EEXIST, EINVAL, ENOENT, ENOSYS, EPERM
from framework.xen.public.event_channel import (
    EVTCHN_ALLOC_UNBOUND,
    EVTCHN_BIND_INTERDOMAIN,
    EVTCHN_BIND_IPI,
    EVTCHN_BIND_PIRQ,
    EVTCHN_BIND_VIRQ,
    EVTCHN_PORT,
    EVTCHN_STATUS,
    EVTCHNOP_alloc_unbound,
    EVTCHNOP_bind_interdomain,
    EVTCHNOP_bind_ipi,
    EVTCHNOP_bind_pirq,
    EVTCHNOP_bind_virq,
    EVTCHNOP_close,
    EVTCHNOP_send,
    EVTCHNOP_status,
    EVTCHNOP_unmask,
    EVTCHNSTAT_closed,
    EVTCHNSTAT_ipi,
)
from framework.xen.public.papr import H_PARAMETER
from framework.xen.public.vcpu import VCPUOP_is_up
from framework.xen.public.version import XEN_CAPABILITIES, XENVER_capabilities, XENVER_version
from framework.xen.public.xen import (
    DOMID_SELF,
    EVTCHN_MASK_OFF,
    VIRQ_DEBUG,
    HYPERVISOR_vcpu_op,
    HYPERVISOR_xen_version,
    xen_mark,
)
from framework.xen.public.xencomm import build_descriptor
from tests.xen.xenharness import ARG, DESC, Caller, domain_named, quickstart

ROOT = Path(__file__).resolve().parents[2]


def test_ipi_port_send_sets_pending_and_selector_bits(caller: Callable[[str], Caller]) -> None:
    c = caller("guest3")
    rc, out = c.op(EVTCHNOP_bind_ipi, EVTCHN_BIND_IPI, vcpu=0)
    assert rc == 0
    port = out["port"]
    si = c.dom.shared_info_maddr
    assert not evtchn.is_pending(c.mem, si, port)
    assert c.op(EVTCHNOP_send, EVTCHN_PORT, port=port)[0] == 0
    assert evtchn.is_pending(c.mem, si, port)
    sel = c.mem.read_u64(c.dom.vcpus[0].vcpu_info_maddr + 8)
    assert sel & (1 << (port // 64))
    assert c.mem.read_u8(c.dom.vcpus[0].vcpu_info_maddr) == 1  # upcall_pending
    rc, st = c.op(EVTCHNOP_status, EVTCHN_STATUS, dom=DOMID_SELF, port=port)
    assert rc == 0 and st["status"] == EVTCHNSTAT_ipi
    assert c.op(EVTCHNOP_close, EVTCHN_PORT, port=port)[0] == 0
    assert not evtchn.is_pending(c.mem, si, port)
    rc, st = c.op(EVTCHNOP_status, EVTCHN_STATUS, dom=DOMID_SELF, port=port)
    assert st["status"] == EVTCHNSTAT_closed


def test_masked_port_does_not_notify_until_unmasked(caller: Callable[[str], Caller]) -> None:
    c = caller("guest3")
    vi = c.dom.vcpus[0].vcpu_info_maddr
    port = c.op(EVTCHNOP_bind_ipi, EVTCHN_BIND_IPI, vcpu=0)[1]["port"]
    word, bit = divmod(port, 64)
    mask_addr = c.dom.shared_info_maddr + EVTCHN_MASK_OFF + 8 * word
    c.mem.write_u64(mask_addr, c.mem.read_u64(mask_addr) | (1 << bit))
    c.mem.write_u8(vi, 0)
    c.mem.write_u64(vi + 8, 0)
    c.op(EVTCHNOP_send, EVTCHN_PORT, port=port)
    assert c.mem.read_u8(vi) == 0  # masked: pending bit only
    assert c.op(EVTCHNOP_unmask, EVTCHN_PORT, port=port)[0] == 0
    assert c.mem.read_u8(vi) == 1  # unmasking a pending port raises the upcall
    c.op(EVTCHNOP_close, EVTCHN_PORT, port=port)
    c.mem.write_u8(vi, 0)


def test_bind_errors(caller: Callable[[str], Caller]) -> None:
    c = caller("guest3")
    # VIRQ_TIMER twice on the same VCPU
    first = c.op(EVTCHNOP_bind_virq, EVTCHN_BIND_VIRQ, virq=VIRQ_DEBUG, vcpu=0)
    assert first[0] == 0
    again = c.op(EVTCHNOP_bind_virq, EVTCHN_BIND_VIRQ, virq=VIRQ_DEBUG, vcpu=0)
    assert again[0] == -EEXIST
    # interdomain bind to a port that is not unbound-for-us
    rc, _ = c.op(EVTCHNOP_bind_interdomain, EVTCHN_BIND_INTERDOMAIN, remote_dom=0, remote_port=1)
    assert rc == -EINVAL
    # a domU cannot allocate ports in another domain
    rc, _ = c.op(EVTCHNOP_alloc_unbound, EVTCHN_ALLOC_UNBOUND, dom=0, remote_dom=0)
    assert rc == -EPERM
    assert c.op(EVTCHNOP_send, EVTCHN_PORT, port=4000)[0] == -EINVAL


def test_version_vcpu_op_and_unknown_calls(caller: Callable[[str], Caller]) -> None:
    c = caller("guest2")
    assert c.call(xen_mark(HYPERVISOR_xen_version), XENVER_version) == 3 << 16
    c.write(DESC, build_descriptor([ARG]))
    assert c.call(xen_mark(HYPERVISOR_xen_version), XENVER_capabilities, DESC) == 0
    caps = c.read(ARG, len(XEN_CAPABILITIES))
    assert caps == XEN_CAPABILITIES
    assert c.call(xen_mark(HYPERVISOR_vcpu_op), VCPUOP_is_up, 0) == 1
    assert c.call(xen_mark(HYPERVISOR_vcpu_op), VCPUOP_is_up, 5) == -ENOENT
    assert c.call(xen_mark(99)) == -ENOSYS  # no such Xen call
    assert c.call(0x1D8) == H_PARAMETER  # PAPR token beyond the table
    assert c.call(0x06) == H_PARAMETER  # not a multiple of 4


def test_sc1_from_problem_state_is_refused_and_execution_continues() -> None:
    """User code's `sc 1` enters Xen, which refuses it in r3 (hcalls.c): -EPERM for a Xen
    call, H_Privilege (-3) for a PAPR call; the guest's 0xC00 vector never runs."""
    sim = quickstart("3ms")
    sim.run()
    c = Caller(sim, domain_named(sim, "guest2"))
    code_gpa = 0x38000
    code = "sc 1\n mr 10, 3\n li 3, 0x08\n sc 1\n mr 11, 3\n b ."
    c.mem.write(c.dom.gpa_to_maddr(code_gpa), assemble(code))
    core = c.core
    assert core.state is not None
    srr0_before = core.state.srr0
    core.set_msr((core.msr & ~0x30) | MSR_PR)  # real mode (the RMA maps the code), user
    core.set_gpr(3, xen_mark(HYPERVISOR_xen_version))
    core.set_gpr(4, XENVER_version)
    core.pc = code_gpa
    core.flush_code_caches()
    core.run(20, 0)
    assert core.gpr(10) == (1 << 64) - 1  # -EPERM as the 64-bit r3 holds it
    assert core.gpr(11) == (1 << 64) - 3  # H_Privilege
    assert core.pc == code_gpa + 20  # ran on after both `sc 1`s, to the final `b .`
    assert core.state.srr0 == srr0_before  # no exception was delivered
    assert core.msr & MSR_PR


def test_long_memory_op_uses_continuations() -> None:
    text = (ROOT / "scenarios" / "smp.yaml").read_text().replace("500ms", "5ms")
    sim = Simulation(parse_scenario(text, "cont"))
    sim.run()
    counts = sim.rec.counts()
    assert counts["hcall.continuation"] >= 2  # 12 extents in batches of 4
    wide = domain_named(sim, "wide")
    assert wide.tot_pages << 12 == 256 << 20


def test_device_interrupts_reach_the_domain_that_bound_the_pirq(
    caller: Callable[[str], Caller], booted: Simulation
) -> None:
    dom0, guest = caller("Domain-0"), caller("guest1")
    xen = booted.xen
    rc, _ = guest.op(EVTCHNOP_bind_pirq, EVTCHN_BIND_PIRQ, pirq=9)
    assert rc == -EPERM
    rc, out = dom0.op(EVTCHNOP_bind_pirq, EVTCHN_BIND_PIRQ, pirq=9)
    assert rc == 0
    port = out["port"]
    rc, _ = dom0.op(EVTCHNOP_bind_pirq, EVTCHN_BIND_PIRQ, pirq=9)
    assert rc == -EBUSY
    rc, _ = dom0.op(EVTCHNOP_bind_pirq, EVTCHN_BIND_PIRQ, pirq=4096)
    assert rc == -EINVAL
    si = dom0.dom.shared_info_maddr
    assert not evtchn.is_pending(dom0.mem, si, port)
    xen.device_interrupt(9)
    assert evtchn.is_pending(dom0.mem, si, port)
    evtchn.clear_port(dom0.mem, si, port)
    assert dom0.op(EVTCHNOP_close, EVTCHN_PORT, port=port)[0] == 0
    xen.device_interrupt(9)  # unbound now: dropped, nothing pending
    assert not evtchn.is_pending(dom0.mem, si, port)
