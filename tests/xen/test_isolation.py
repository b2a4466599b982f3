"""A guest cannot hurt Xen or other domains: bad hypercall arguments fail cleanly."""

from __future__ import annotations

from pathlib import Path

import pytest

from framework.guest.runtime import build_runtime
from framework.hw970.core import Core
from framework.scenario import parse_scenario
from framework.simulation import Simulation
from framework.xen import abi
from framework.xen.domain import Domain
from framework.xen.hypercalls import hypercall_entry
from framework.xen.xencomm import build_descriptor

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sim() -> Simulation:
    text = (ROOT / "scenarios" / "quickstart.yaml").read_text()
    s = Simulation(parse_scenario(text.replace("duration: 2s", "duration: 5ms"), "iso"))
    s.run()
    return s


def _domain(sim: Simulation, name: str) -> Domain:
    return next(d for d in sim.xen.domains.values() if sim.names.get(d.domid) == name)


def _guest_core(sim: Simulation, dom: Domain) -> Core:
    """A spare core with the domain's VCPU 0 context loaded, to issue hypercalls from."""
    m = sim.machine
    core = Core(9, m.memory, m.config.clock_hz, m.config.timebase_hz, {}, {})
    core.on_hypercall = hypercall_entry(sim.xen)
    core.load(dom.vcpus[0].arch)
    return core


def _hcall(core: Core, r3: int, *args: int) -> int:
    core.set_gpr(3, r3)
    for i, a in enumerate(args):
        core.set_gpr(4 + i, a)
    core.on_hypercall(core)
    ret = core.gpr(3)
    return ret - (1 << 64) if ret >> 63 else ret


def test_bad_xencomm_magic_is_efault_and_changes_nothing(sim: Simulation) -> None:
    dom = _domain(sim, "guest2")
    core = _guest_core(sim, dom)
    arg_gpa, desc_gpa = 0x30000, 0x31000
    arg = abi.EVTCHN_ALLOC_UNBOUND.pack(dom=abi.DOMID_SELF, remote_dom=0)
    desc = bytearray(build_descriptor([arg_gpa]))
    desc[0:4] = (0xDEADBEEF).to_bytes(4, "big")
    mem = sim.machine.memory
    mem.write(dom.gpa_to_maddr(arg_gpa), arg)
    mem.write(dom.gpa_to_maddr(desc_gpa), bytes(desc))
    ports_before = [(p.state, p.remote_dom) for p in dom.evtchn.ports]
    rc = _hcall(
        core, abi.xen_mark(abi.HYPERVISOR_event_channel_op), abi.EVTCHNOP_alloc_unbound, desc_gpa
    )
    assert rc == -abi.EFAULT
    assert [(p.state, p.remote_dom) for p in dom.evtchn.ports] == ports_before
    assert mem.read(dom.gpa_to_maddr(arg_gpa), len(arg)) == arg  # no port written back
    # The same call with the right magic works, so the failure was the magic.
    mem.write(dom.gpa_to_maddr(desc_gpa), build_descriptor([arg_gpa]))
    assert (
        _hcall(
            core,
            abi.xen_mark(abi.HYPERVISOR_event_channel_op),
            abi.EVTCHNOP_alloc_unbound,
            desc_gpa,
        )
        == 0
    )


def test_xencomm_cannot_reach_beyond_the_domain(sim: Simulation) -> None:
    dom, other = _domain(sim, "guest2"), _domain(sim, "guest3")
    core = _guest_core(sim, dom)
    mem = sim.machine.memory
    snapshot = mem.read(other.rma_mfn << 12, 1 << 20)
    # Name guest3's machine address as if it were a guest-physical address of guest2.
    foreign = (other.rma_mfn << 12) + 0x30000
    desc_gpa = 0x31000
    mem.write(dom.gpa_to_maddr(desc_gpa), build_descriptor([foreign]))
    rc = _hcall(core, abi.xen_mark(abi.HYPERVISOR_xen_version), abi.XENVER_capabilities, desc_gpa)
    assert rc == -abi.EFAULT  # beyond guest2's 64 MiB: no translation
    assert mem.read(other.rma_mfn << 12, 1 << 20) == snapshot


def test_h_enter_refuses_frames_the_domain_does_not_own(sim: Simulation) -> None:
    dom, other = _domain(sim, "guest2"), _domain(sim, "guest3")
    core = _guest_core(sim, dom)
    hi = (0x1234 << 7) | 1
    # guest3's first machine frame, named as a PFN by guest2: outside guest2's memory.
    assert _hcall(core, abi.H_ENTER, 0, 64, hi, (other.rma_mfn << 12) | 2) == abi.H_PARAMETER
    beyond = dom.tot_pages << 12
    assert _hcall(core, abi.H_ENTER, 0, 64, hi, beyond | 2) == abi.H_PARAMETER
    # I/O space (the 2-4 GiB hole) is for the privileged domain only.
    assert _hcall(core, abi.H_ENTER, 0, 64, hi, (3 << 30) | 0x2A) == abi.H_PRIVILEGE
    # A PFN it owns is translated to its own frame.
    assert _hcall(core, abi.H_ENTER, 0, 64, hi, (5 << 12) | 2) == abi.H_SUCCESS
    slot = core.gpr(4)
    lo = sim.machine.memory.read_u64(dom.htab_maddr + slot * 16 + 8)
    assert dom.phys is not None and dom.phys.owns_mfn(lo >> 12)
    assert lo >> 12 == dom.phys.pfn_to_mfn(5)


def test_h_enter_into_a_full_pteg(sim: Simulation) -> None:
    dom = _domain(sim, "guest3")
    core = _guest_core(sim, dom)
    group = 8 * 77
    for i in range(8):
        rc = _hcall(core, abi.H_ENTER, 0, group, ((0x4000 + i) << 7) | 1, (i << 12) | 2)
        if rc == abi.H_PTEG_FULL:
            break  # the kernel's linear map may already use a slot of this group
        assert rc == abi.H_SUCCESS
    assert _hcall(core, abi.H_ENTER, 0, group, (0x5000 << 7) | 1, 2) == abi.H_PTEG_FULL


def test_domu_cannot_use_domctl(sim: Simulation) -> None:
    dom = _domain(sim, "guest2")
    core = _guest_core(sim, dom)
    assert _hcall(core, abi.xen_mark(abi.HYPERVISOR_domctl), 0x31000) == -abi.EPERM


def test_illegal_instruction_gives_the_guest_a_program_interrupt() -> None:
    text = (ROOT / "scenarios" / "quickstart.yaml").read_text()
    sim = Simulation(parse_scenario(text.replace("duration: 2s", "duration: 10ms"), "ill"))
    sim.env.run(until=2_000_000)
    guest1 = _domain(sim, "guest1")
    loop = build_runtime().symbols["compute_next"]
    sim.machine.memory.write_u32(guest1.gpa_to_maddr(loop), 0)  # not a PPC instruction
    for core in sim.machine.cores:
        core.flush_code_caches()  # the host wrote code: drop translated blocks
    sim.run()
    df = sim.rec.to_dataframe()
    mine = df[df["dom"] == guest1.domid]
    program = mine[(mine["kind"] == "exc.deliver") & (mine["vector"] == 0x700)]
    assert len(program) == 1
    assert program["srr0"].iloc[0] & 0xFFFFFFF == loop
    shutdown = mine[mine["kind"] == "dom.shutdown"]
    assert list(shutdown["reason"]) == [abi.SHUTDOWN_crash]
    assert any("Oops: program check" in line for line in guest1.console_text)
    # The simulator and the other domains carried on.
    rounds = df[(df["kind"] == "guest.mark") & (df["text"] == "pingpong.round")]
    assert rounds["t_ns"].max() > program["t_ns"].iloc[0]
