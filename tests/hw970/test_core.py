"""The emulated core: real PPC64 code, model-owned state, architected interrupts."""

from __future__ import annotations

import pytest

from framework.errors import GuestCrash
from framework.hw970.arch_state import ArchState
from framework.hw970.asm import assemble
from framework.hw970.core import Core
from framework.hw970.memory import MachineMemory
from framework.hw970.mmu import hid4_encode
from framework.hw970.regs import MSR_EE, MSR_SF, SRR1_PROGRAM_ILLEGAL

RMA = 0x4000000  # second 64 MiB of a 256 MiB machine
RMA_SIZE = 64 << 20
CLOCK = 1_800_000_000
TB = 33_333_333


def make_core(
    mem: MachineMemory,
    code: str,
    at: int = 0x2000,
    cpu: int = 0,
    vectors: dict[int, str] | None = None,
) -> tuple[Core, ArchState]:
    for vec, src in (vectors or {}).items():
        mem.write(RMA + vec, assemble(src, vec))
    mem.write(RMA + at, assemble(code, at))
    core = Core(cpu, mem, CLOCK, TB, {})
    st = ArchState()
    st.tr.set_hid4(hid4_encode(RMA, RMA_SIZE))
    st.tr.msr = MSR_SF
    st.boot_regs = {-1: at}
    core.load(st)
    return core, st


def test_counts_instructions_and_ends_slice_at_budget() -> None:
    mem = MachineMemory(256 << 20)
    core, _ = make_core(mem, "li 3,0\nloop: addi 3,3,1\n addi 4,4,1\n b loop")
    n = core.run(10_000, 0)
    assert 10_000 <= n < 10_003
    # r3 counts loop iterations: 3 instructions each, plus the li.
    assert abs(core.gpr(3) * 3 + 1 - n) <= 3


def test_illegal_instruction_is_a_program_interrupt_not_skipped() -> None:
    mem = MachineMemory(256 << 20)
    handler = "mfspr 20, 26\n mfspr 21, 27\n li 22, 0x77\n b .\n"
    core, _st = make_core(mem, "li 5,1\n .long 0\n li 5,2\n b .", vectors={0x700: handler})
    core.run(200, 0)
    assert core.gpr(5) == 1  # the instruction after the illegal one never ran
    assert core.gpr(22) == 0x77  # the guest's 0x700 handler ran
    assert core.gpr(20) == 0x2004  # SRR0 = the illegal instruction
    assert core.gpr(21) & SRR1_PROGRAM_ILLEGAL


def test_store_beyond_rma_limit_gives_dsi_with_dar() -> None:
    mem = MachineMemory(256 << 20)
    handler = "mfspr 20, 19\n mfspr 21, 18\n li 22, 0x33\n b .\n"
    code = "lis 4, 0x400\n li 5, 9\n std 5, 8(4)\n li 6, 1\n b ."
    core, _st = make_core(mem, code, vectors={0x300: handler})
    core.run(100, 0)
    assert core.gpr(22) == 0x33
    assert core.gpr(20) == 0x4000008  # DAR: the effective address
    assert core.gpr(21) & (1 << 25)  # DSISR store bit
    assert core.gpr(6) == 0
    assert mem.read_u64(RMA + 0x4000008) == 0  # nothing written outside the RMA


@pytest.mark.parametrize("op", ["stb", "lbz"])
def test_an_access_to_the_top_page_of_the_address_space_is_a_dsi_not_a_crash(op: str) -> None:
    """EA 0xffff_ffff_ffff_f93b (r25 = 0, d = -1733: a store through a register holding
    0 or an errno) lies beyond the RMA like any other: a DSI, not "emulation stopped".
    Unicorn's stop address lives in that page, but only instruction fetches go there."""
    mem = MachineMemory(256 << 20)
    handler = "mfspr 20, 19\n mfspr 21, 18\n li 22, 0x33\n b .\n"
    code = f"li 25, 0\n li 5, 9\n {op} 5, -1733(25)\n li 6, 1\n b ."
    core, _st = make_core(mem, code, vectors={0x300: handler})
    core.run(100, 0)
    assert core.gpr(22) == 0x33  # the guest's DSI handler ran
    assert core.gpr(20) == (1 << 64) - 1733  # DAR: the effective address
    assert bool(core.gpr(21) & (1 << 25)) == (op == "stb")  # DSISR store bit
    assert core.gpr(6) == 0


def test_rfid_returns_to_srr0_with_srr1_msr() -> None:
    mem = MachineMemory(256 << 20)
    code = """
        lis 3, 0
        ori 3, 3, 0x2100
        mtspr 26, 3
        li 4, 0
        ori 4, 4, 0x8000
        rldicr 4, 4, 0, 63
        lis 6, 0x8000
        sldi 6, 6, 32
        or 4, 4, 6
        mtspr 27, 4
        rfid
        li 7, 1
    """
    core, st = make_core(mem, code, vectors={})
    mem.write(RMA + 0x2100, assemble("li 8, 0x42\n mfmsr 9\n b .", 0x2100))
    core.run(100, 0)
    assert core.gpr(8) == 0x42
    assert core.gpr(7) == 0
    assert core.gpr(9) & MSR_EE
    assert st.tr.msr & MSR_EE


def test_sc1_calls_the_hypervisor_and_sc0_goes_to_guest_vector() -> None:
    mem = MachineMemory(256 << 20)
    calls: list[int] = []
    core, _st = make_core(
        mem, "li 3, 17\n sc 1\n mr 10, 3\n sc\n b .", vectors={0xC00: "li 11, 0xc0\n b ."}
    )

    def hcall(c: Core) -> None:
        calls.append(c.gpr(3))
        c.set_gpr(3, 0x99)

    core.on_hypercall = hcall
    core.run(100, 0)
    assert calls == [17]
    assert core.gpr(10) == 0x99
    assert core.gpr(11) == 0xC0


@pytest.mark.parametrize("width", ["w", "d"])
def test_ll_sc_atomics_from_two_cores_never_lose_a_bit(width: str) -> None:
    """Two cores OR distinct bits into one word with l?arx/st?cx., in interleaved slices."""
    mem = MachineMemory(256 << 20)
    ld, st_ = ("lwarx", "stwcx.") if width == "w" else ("ldarx", "stdcx.")
    # r3 = address, r4 = bit, r6 = my counter word; each iteration sets a new bit of r4's
    # sequence: counter word records how many bits this core has set.
    code = f"""
        lis 3, 0x10
        li 9, 0
    outer:
        li 4, 1
        slw 4, 4, 9
        sldi 4, 4, 0
        or 4, 4, 4
        cmpdi 9, 16
        bge done
    retry:
        {ld} 5, 0, 3
        or 5, 5, 4
        {st_} 5, 0, 3
        bne- retry
        addi 9, 9, 1
        b outer
    done:
        b done
    """
    core0, _s0 = make_core(mem, code.replace("sldi 4, 4, 0", "sldi 4, 4, 0"), at=0x2000, cpu=0)
    core1, _s1 = make_core(mem, code.replace("sldi 4, 4, 0", "sldi 4, 4, 16"), at=0x3000, cpu=1)
    t = 0
    for _ in range(200):
        core0.run(3, t)
        core1.run(2, t)
        t += 10
    assert mem.read_u32(RMA + 0x100000) if width == "w" else True
    word = mem.read_u32(RMA + 0x100000) if width == "w" else mem.read_u64(RMA + 0x100000)
    assert word == 0xFFFFFFFF


def test_decrementer_runs_in_simulated_time_and_interrupts_the_guest() -> None:
    """mtspr DEC arms it; the slice ends when it expires and 0x900 is taken with EE on."""
    mem = MachineMemory(256 << 20)
    code = """
        li 3, 0
        ori 3, 3, 0x8000
        mtmsrd 3, 1
        li 4, 3333
        mtspr 22, 4
    spin:
        addi 5, 5, 1
        b spin
    """
    core, st = make_core(mem, code, vectors={0x900: "li 22, 0x99\n mfspr 23, 22\n b ."})
    executed = core.run(10_000_000, 0)
    # DEC 3333 ticks of a 33.333 MHz timebase = 100 us = 180,000 cycles at 1.8 GHz.
    assert 179_000 < executed + core.extra_cycles < 181_000
    assert st.dec.expiry_tb() is not None
    core.run(100, core.now_ns())
    assert core.gpr(22) == 0x99  # the guest's decrementer handler ran
    assert core.gpr(23) >> 31 == 1  # DEC has gone negative
    assert st.srr1 & MSR_EE  # interrupted with external interrupts enabled


def test_mpic_routes_sources_and_ipis() -> None:
    from framework.hw970.mpic import Mpic

    raised: list[tuple[int, int]] = []
    mpic = Mpic(4)
    mpic.on_raise = lambda cpu, vector: raised.append((cpu, vector))
    mpic.route(17, 2)
    assert mpic.raise_irq(17) == 2
    mpic.send_ipi(3, 1)
    assert raised == [(2, 17), (3, 129)]
    mpic.ack_ipi(3, 1)
    assert mpic.pending[3] == set()
    with pytest.raises(ValueError, match="IPI 7"):
        mpic.send_ipi(0, 7)


def test_a_faulting_program_vector_ends_its_slices_then_crashes_as_an_exception_loop() -> None:
    # An illegal word (all zeros) at the guest's own 0x700 vector: the first illegal word
    # enters 0x700, which faults again with no instruction ever completing.
    mem = MachineMemory(256 << 20)
    core, st = make_core(mem, "li 5,1\n .long 0\n b .", vectors={0x700: ".long 0\n"})
    executed = core.run(300, 0)
    # The slice ended: each delivery used up budget though nothing executed.
    assert executed == 1  # the li before the first illegal word
    assert core.extra_cycles >= 299
    assert st.exc_streak < 1000
    with pytest.raises(GuestCrash) as err:
        for _ in range(10):
            core.run(300, core.now_ns())
    assert str(err.value) == "exception loop at 0x700/0x700: 1000 exceptions without progress"


def test_an_interrupt_handler_that_runs_is_progress_not_a_loop() -> None:
    # Every illegal word is a fresh program interrupt, but the handler's instructions run.
    mem = MachineMemory(256 << 20)
    handler = "addi 7,7,1\n mfspr 3,26\n addi 3,3,4\n mtspr 26,3\n rfid\n"
    core, st = make_core(mem, "loop: .long 0\n b loop", vectors={0x700: handler})
    for _ in range(20):
        core.run(10_000, core.now_ns())
    assert core.gpr(7) > 1000
    assert st.exc_streak <= 1
