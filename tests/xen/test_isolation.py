"""A guest cannot hurt Xen or other domains: bad hypercall arguments fail cleanly."""

from __future__ import annotations

from collections.abc import Callable

import analysis  # noqa: F401  (registers DataFrame.xen)
from framework.guest.runtime import build_runtime
from framework.simulation import Simulation
from framework.xen.public.errno import EFAULT, EPERM
from framework.xen.public.event_channel import EVTCHN_ALLOC_UNBOUND, EVTCHNOP_alloc_unbound
from framework.xen.public.papr import H_ENTER, H_PARAMETER, H_PRIVILEGE, H_PTEG_FULL, H_SUCCESS
from framework.xen.public.sched import SHUTDOWN_crash
from framework.xen.public.version import XENVER_capabilities
from framework.xen.public.xen import (
    DOMID_SELF,
    HYPERVISOR_domctl,
    HYPERVISOR_event_channel_op,
    HYPERVISOR_xen_version,
    xen_mark,
)
from framework.xen.public.xencomm import build_descriptor
from tests.xen.xenharness import ARG, DESC, Caller, domain_named, quickstart


def test_bad_xencomm_magic_is_efault_and_changes_nothing(
    caller: Callable[[str], Caller],
) -> None:
    c = caller("guest2")
    arg = EVTCHN_ALLOC_UNBOUND.pack(dom=DOMID_SELF, remote_dom=0)
    desc = bytearray(build_descriptor([ARG]))
    desc[0:4] = (0xDEADBEEF).to_bytes(4, "big")
    c.write(ARG, arg)
    c.write(DESC, bytes(desc))
    ports_before = [(p.state, p.remote_dom) for p in c.dom.evtchn.ports]
    rc = c.call(xen_mark(HYPERVISOR_event_channel_op), EVTCHNOP_alloc_unbound, DESC)
    assert rc == -EFAULT
    assert [(p.state, p.remote_dom) for p in c.dom.evtchn.ports] == ports_before
    assert c.read(ARG, len(arg)) == arg  # no port written back
    # The same call with the right magic works, so the failure was the magic.
    c.write(DESC, build_descriptor([ARG]))
    rc = c.call(xen_mark(HYPERVISOR_event_channel_op), EVTCHNOP_alloc_unbound, DESC)
    assert rc == 0


def test_xencomm_cannot_reach_beyond_the_domain(booted: Simulation) -> None:
    c = Caller(booted, domain_named(booted, "guest2"))
    other = domain_named(booted, "guest3")
    mem = booted.machine.memory
    snapshot = mem.read(other.rma_mfn << 12, 1 << 20)
    # Name guest3's machine address as if it were a guest-physical address of guest2.
    c.write(DESC, build_descriptor([(other.rma_mfn << 12) + 0x30000]))
    rc = c.call(xen_mark(HYPERVISOR_xen_version), XENVER_capabilities, DESC)
    assert rc == -EFAULT  # beyond guest2's 64 MiB: no translation
    assert mem.read(other.rma_mfn << 12, 1 << 20) == snapshot


def test_h_enter_refuses_frames_the_domain_does_not_own(booted: Simulation) -> None:
    c = Caller(booted, domain_named(booted, "guest2"))
    dom, other = c.dom, domain_named(booted, "guest3")
    hi = (0x1234 << 7) | 1
    # guest3's first machine frame, named as a PFN by guest2: outside guest2's memory.
    assert c.call(H_ENTER, 0, 64, hi, (other.rma_mfn << 12) | 2) == H_PARAMETER
    assert c.call(H_ENTER, 0, 64, hi, (dom.tot_pages << 12) | 2) == H_PARAMETER
    # I/O space (the 2-4 GiB hole) is for the privileged domain only.
    assert c.call(H_ENTER, 0, 64, hi, (3 << 30) | 0x2A) == H_PRIVILEGE
    # A PFN it owns is translated to its own frame.
    assert c.call(H_ENTER, 0, 64, hi, (5 << 12) | 2) == H_SUCCESS
    slot = c.core.gpr(4)
    lo = booted.machine.memory.read_u64(dom.htab_maddr + slot * 16 + 8)
    assert dom.phys is not None and dom.phys.owns_mfn(lo >> 12)
    assert lo >> 12 == dom.phys.pfn_to_mfn(5)


def test_h_enter_into_a_full_pteg(caller: Callable[[str], Caller]) -> None:
    c = caller("guest3")
    group = 8 * 77
    for i in range(8):
        rc = c.call(H_ENTER, 0, group, ((0x4000 + i) << 7) | 1, (i << 12) | 2)
        if rc == H_PTEG_FULL:
            break  # the kernel's linear map may already use a slot of this group
        assert rc == H_SUCCESS
    assert c.call(H_ENTER, 0, group, (0x5000 << 7) | 1, 2) == H_PTEG_FULL


def test_domu_cannot_use_domctl(caller: Callable[[str], Caller]) -> None:
    assert caller("guest2").call(xen_mark(HYPERVISOR_domctl), DESC) == -EPERM


def test_illegal_instruction_gives_the_guest_a_program_interrupt() -> None:
    sim = quickstart("10ms")
    sim.env.run(until=2_000_000)
    guest1 = domain_named(sim, "guest1")
    loop = build_runtime().symbols["compute_next"]
    sim.machine.memory.write_u32(guest1.gpa_to_maddr(loop), 0)  # not a PPC instruction
    for core in sim.machine.cores:
        core.flush_code_caches()  # the host wrote code: drop translated blocks
    sim.run()
    df = sim.rec.to_dataframe().xen.wide()
    mine = df[df["dom"] == guest1.domid]
    program = mine[(mine["kind"] == "exc.deliver") & (mine["vector"] == 0x700)]
    assert len(program) == 1
    assert program["srr0"].iloc[0] & 0xFFFFFFF == loop
    shutdown = mine[mine["kind"] == "dom.shutdown"]
    assert list(shutdown["reason"]) == [SHUTDOWN_crash]
    assert any("Oops: program check" in line for line in sim.console_lines(guest1.domid))
    # The simulator and the other domains carried on.
    rounds = df[(df["kind"] == "guest.mark") & (df["text"] == "pingpong.round")]
    assert rounds["t_ns"].max() > program["t_ns"].iloc[0]
