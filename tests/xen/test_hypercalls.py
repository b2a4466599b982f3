"""Xen calls through the real `sc 1` entry: event channel ops, vcpu_op, version, continuations."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from framework.scenario import parse_scenario
from framework.simulation import Simulation
from framework.xen import abi, evtchn
from framework.xen.xencomm import build_descriptor
from tests.xen.xenharness import ARG, DESC, Caller, domain_named, quickstart

ROOT = Path(__file__).resolve().parents[2]


def test_ipi_port_send_sets_pending_and_selector_bits(caller: Callable[[str], Caller]) -> None:
    c = caller("guest3")
    rc, out = c.op(abi.EVTCHNOP_bind_ipi, abi.EVTCHN_BIND_IPI, vcpu=0)
    assert rc == 0
    port = out["port"]
    si = c.dom.shared_info_maddr
    assert not evtchn.is_pending(c.mem, si, port)
    assert c.op(abi.EVTCHNOP_send, abi.EVTCHN_PORT, port=port)[0] == 0
    assert evtchn.is_pending(c.mem, si, port)
    sel = c.mem.read_u64(c.dom.vcpus[0].vcpu_info_maddr + 8)
    assert sel & (1 << (port // 64))
    assert c.mem.read_u8(c.dom.vcpus[0].vcpu_info_maddr) == 1  # upcall_pending
    rc, st = c.op(abi.EVTCHNOP_status, abi.EVTCHN_STATUS, dom=abi.DOMID_SELF, port=port)
    assert rc == 0 and st["status"] == abi.EVTCHNSTAT_ipi
    assert c.op(abi.EVTCHNOP_close, abi.EVTCHN_PORT, port=port)[0] == 0
    assert not evtchn.is_pending(c.mem, si, port)
    rc, st = c.op(abi.EVTCHNOP_status, abi.EVTCHN_STATUS, dom=abi.DOMID_SELF, port=port)
    assert st["status"] == abi.EVTCHNSTAT_closed


def test_masked_port_does_not_notify_until_unmasked(caller: Callable[[str], Caller]) -> None:
    c = caller("guest3")
    vi = c.dom.vcpus[0].vcpu_info_maddr
    port = c.op(abi.EVTCHNOP_bind_ipi, abi.EVTCHN_BIND_IPI, vcpu=0)[1]["port"]
    word, bit = divmod(port, 64)
    mask_addr = c.dom.shared_info_maddr + abi.EVTCHN_MASK_OFF + 8 * word
    c.mem.write_u64(mask_addr, c.mem.read_u64(mask_addr) | (1 << bit))
    c.mem.write_u8(vi, 0)
    c.mem.write_u64(vi + 8, 0)
    c.op(abi.EVTCHNOP_send, abi.EVTCHN_PORT, port=port)
    assert c.mem.read_u8(vi) == 0  # masked: pending bit only
    assert c.op(abi.EVTCHNOP_unmask, abi.EVTCHN_PORT, port=port)[0] == 0
    assert c.mem.read_u8(vi) == 1  # unmasking a pending port raises the upcall
    c.op(abi.EVTCHNOP_close, abi.EVTCHN_PORT, port=port)
    c.mem.write_u8(vi, 0)


def test_bind_errors(caller: Callable[[str], Caller]) -> None:
    c = caller("guest3")
    # VIRQ_TIMER twice on the same VCPU
    first = c.op(abi.EVTCHNOP_bind_virq, abi.EVTCHN_BIND_VIRQ, virq=abi.VIRQ_DEBUG, vcpu=0)
    assert first[0] == 0
    again = c.op(abi.EVTCHNOP_bind_virq, abi.EVTCHN_BIND_VIRQ, virq=abi.VIRQ_DEBUG, vcpu=0)
    assert again[0] == -abi.EEXIST
    # interdomain bind to a port that is not unbound-for-us
    rc, _ = c.op(
        abi.EVTCHNOP_bind_interdomain, abi.EVTCHN_BIND_INTERDOMAIN, remote_dom=0, remote_port=1
    )
    assert rc == -abi.EINVAL
    # a domU cannot allocate ports in another domain
    rc, _ = c.op(abi.EVTCHNOP_alloc_unbound, abi.EVTCHN_ALLOC_UNBOUND, dom=0, remote_dom=0)
    assert rc == -abi.EPERM
    assert c.op(abi.EVTCHNOP_send, abi.EVTCHN_PORT, port=4000)[0] == -abi.EINVAL


def test_version_vcpu_op_and_unknown_calls(caller: Callable[[str], Caller]) -> None:
    c = caller("guest2")
    assert c.call(abi.xen_mark(abi.HYPERVISOR_xen_version), abi.XENVER_version) == 3 << 16
    c.write(DESC, build_descriptor([ARG]))
    assert c.call(abi.xen_mark(abi.HYPERVISOR_xen_version), abi.XENVER_capabilities, DESC) == 0
    caps = c.read(ARG, len(abi.XEN_CAPABILITIES))
    assert caps == abi.XEN_CAPABILITIES
    assert c.call(abi.xen_mark(abi.HYPERVISOR_vcpu_op), abi.VCPUOP_is_up, 0) == 1
    assert c.call(abi.xen_mark(abi.HYPERVISOR_vcpu_op), abi.VCPUOP_is_up, 5) == -abi.ENOENT
    assert c.call(abi.xen_mark(99)) == -abi.ENOSYS  # no such Xen call
    assert c.call(0x1D8) == abi.H_PARAMETER  # PAPR token beyond the table
    assert c.call(0x06) == abi.H_PARAMETER  # not a multiple of 4


def test_sc1_from_problem_state_is_not_a_hypercall() -> None:
    from framework.hw970.regs import MSR_PR

    sim = quickstart("3ms")
    sim.run()
    c = Caller(sim, domain_named(sim, "guest2"))
    calls: list[int] = []
    c.core.on_hypercall = lambda core: calls.append(1)
    c.core.set_msr(c.core.msr | MSR_PR)
    # user code executing `sc 1`: the core routes it to the guest's 0xC00 vector.
    from framework.hw970.asm import assemble

    code_gpa = 0x38000
    c.mem.write(c.dom.gpa_to_maddr(code_gpa), assemble("sc 1\n b ."))
    c.core.set_msr(c.core.msr & ~0x30)  # real mode, so the RMA maps the test code
    c.core.set_msr(c.core.msr | MSR_PR)
    c.core.pc = code_gpa
    c.core.flush_code_caches()
    c.core.run(20, 0)
    assert calls == []
    assert c.core.state is not None and c.core.state.srr0 == code_gpa + 4


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
    rc, _ = guest.op(abi.EVTCHNOP_bind_pirq, abi.EVTCHN_BIND_PIRQ, pirq=9)
    assert rc == -abi.EPERM
    rc, out = dom0.op(abi.EVTCHNOP_bind_pirq, abi.EVTCHN_BIND_PIRQ, pirq=9)
    assert rc == 0
    port = out["port"]
    rc, _ = dom0.op(abi.EVTCHNOP_bind_pirq, abi.EVTCHN_BIND_PIRQ, pirq=9)
    assert rc == -abi.EBUSY
    rc, _ = dom0.op(abi.EVTCHNOP_bind_pirq, abi.EVTCHN_BIND_PIRQ, pirq=4096)
    assert rc == -abi.EINVAL
    si = dom0.dom.shared_info_maddr
    assert not evtchn.is_pending(dom0.mem, si, port)
    xen.device_interrupt(9)
    assert evtchn.is_pending(dom0.mem, si, port)
    evtchn.clear_port(dom0.mem, si, port)
    assert dom0.op(abi.EVTCHNOP_close, abi.EVTCHN_PORT, port=port)[0] == 0
    xen.device_interrupt(9)  # unbound now: dropped, nothing pending
    assert not evtchn.is_pending(dom0.mem, si, port)
