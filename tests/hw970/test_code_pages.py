"""Sensitive instructions trap wherever the code came from (code_pages.py).

The guests here write their code at run time with ordinary stores, rewrite it after it
ran, or share an address with another context's code: the model's MSR, HID4, SDR1, SLB
and timebase must stay the only ones, and the core must stay in 64-bit mode.
"""

from __future__ import annotations

import random

from unicorn.ppc_const import UC_PPC_REG_MSR

from framework.hw970.arch_state import ArchState
from framework.hw970.asm import assemble
from framework.hw970.code_pages import CodeMap
from framework.hw970.core import Core
from framework.hw970.memory import MachineMemory
from framework.hw970.mmu import hid4_encode
from framework.hw970.regs import MSR_EE, MSR_SF, SRR1_PROGRAM_PRIV
from framework.hw970.sensitive import decode_sensitive
from tests.hw970.test_core import RMA, RMA_SIZE, TB, make_core

#: Where the guests below write their code, and keep what their 0x700 handler saw.
PAGE = 0x5000
LOG = 0x6000
#: Simulated time the slices start at: the model timebase is then far from Unicorn's 0.
START_NS = 3_000_000
START_TB = START_NS * TB // 1_000_000_000

#: The program interrupt handler (real mode, loaded like a kernel's vectors): count in
#: r20, log SRR0 and SRR1 at r23, return past the instruction.
PROGRAM_HANDLER = """
    addi 20, 20, 1
    mfspr 21, 26
    mfspr 22, 27
    std 21, 0(23)
    std 22, 8(23)
    addi 23, 23, 16
    addi 21, 21, 4
    mtspr 26, 21
    rfid
"""


def store_words(words: list[int], base_reg: int, first: int = 0) -> str:
    """Guest code that stores `words` at base_reg + first, one stw each."""
    lines = []
    for i, word in enumerate(words):
        lines += [
            f"lis 11, {word >> 16:#x}",
            f"ori 11, 11, {word & 0xFFFF:#x}",
            f"stw 11, {first + 4 * i}({base_reg})",
        ]
    return "\n".join(lines)


def words_of(src: str, at: int) -> list[int]:
    image = assemble(src, at)
    return [int.from_bytes(image[i : i + 4], "big") for i in range(0, len(image), 4)]


def call(addr: int) -> str:
    return f"lis 12, 0\n ori 12, 12, {addr:#x}\n mtctr 12\n bctrl"


def guest(mem: MachineMemory, code: str, msr: int = MSR_SF | MSR_EE) -> tuple[Core, ArchState]:
    """A supervisor-state context in real mode running `code` at 0x2000, with the
    program handler at 0x700, r10 = PAGE and r23 = LOG."""
    core, st = make_core(
        mem, f"lis 10, 0\n ori 10, 10, {PAGE:#x}\n {code}", vectors={0x700: PROGRAM_HANDLER}
    )
    core.set_msr(msr)
    core.set_gpr(23, LOG)
    return core, st


def test_privileged_code_a_guest_writes_at_run_time_traps_and_the_model_state_holds() -> None:
    mem = MachineMemory(256 << 20)
    payload = words_of(
        """
        li 3, 0
        mtmsrd 3
        mfmsr 4
        mftb 5
        lis 6, 0x1800
        ori 6, 6, 1
        lis 7, 5
        ori 7, 7, 0x5000
        slbmte 7, 6
        mtspr 1012, 3
        mtspr 25, 3
        li 9, 0x77
        b .
        """,
        PAGE,
    )
    core, st = guest(mem, f"{store_words(payload, 10)}\n {call(PAGE)}")
    hid4, sdr1 = st.tr.hid4, st.tr.sdr1
    core.run(400, START_NS)
    assert core.gpr(9) == 0x77  # the page ran to its end
    # mtmsrd is the model's: SF stays set in the model and in Unicorn's own MSR.
    assert st.tr.msr & MSR_SF and not st.tr.msr & MSR_EE
    assert core.reg(UC_PPC_REG_MSR) & MSR_SF
    assert core.gpr(4) == MSR_SF  # mfmsr read the model MSR just after the mtmsrd
    assert START_TB <= core.gpr(5) < START_TB + 100  # mftb read the model timebase
    assert st.tr.slb.get(1) == 0x55000  # slbmte wrote the model SLB
    # mtspr HID4 and SDR1 are hypervisor resources: a program interrupt each, nothing set.
    assert core.gpr(20) == 2
    srr0s = [mem.read_u64(RMA + LOG + 16 * i) for i in range(2)]
    srr1s = [mem.read_u64(RMA + LOG + 16 * i + 8) for i in range(2)]
    assert srr0s == [PAGE + 4 * 9, PAGE + 4 * 10]
    assert all(srr1 & SRR1_PROGRAM_PRIV for srr1 in srr1s)
    assert (st.tr.hid4, st.tr.sdr1) == (hid4, sdr1)


def test_a_page_rewritten_after_it_ran_is_scanned_again_before_it_runs() -> None:
    mem = MachineMemory(256 << 20)
    harmless = words_of("li 4, 1\n blr", PAGE)
    mfmsr = words_of("mfmsr 4", PAGE)
    code = f"""
        {store_words(harmless, 10)}
        {call(PAGE)}
        mr 8, 4
        {store_words(mfmsr, 10)}
        {call(PAGE)}
        li 9, 0x77
        b .
    """
    core, st = guest(mem, code)
    core.run(400, START_NS)
    assert core.gpr(9) == 0x77
    assert core.gpr(8) == 1  # the first version ran
    assert core.gpr(4) == st.tr.msr == MSR_SF | MSR_EE  # the rewritten word is trapped


def test_code_that_rewrites_its_own_page_gets_the_new_word_trapped() -> None:
    mem = MachineMemory(256 << 20)
    (mfmsr,) = words_of("mfmsr 4", PAGE)
    # The page stores over its own instruction at +0x40, then branches to it.
    page = words_of(
        f"""
        lis 11, {mfmsr >> 16:#x}
        ori 11, 11, {mfmsr & 0xFFFF:#x}
        stw 11, 0x40(10)
        b {PAGE + 0x40:#x}
        """,
        PAGE,
    )
    page += [0x60000000] * (0x10 - len(page))  # nops up to +0x40
    page += words_of("li 4, 1\n li 9, 0x77\n b .", PAGE + 0x40)
    core, st = guest(mem, f"{store_words(page, 10)}\n {call(PAGE)}")
    core.run(400, START_NS)
    assert core.gpr(9) == 0x77
    assert core.gpr(4) == st.tr.msr == MSR_SF | MSR_EE


def test_a_trapped_word_overwritten_within_its_block_does_not_run_natively() -> None:
    mem = MachineMemory(256 << 20)
    (li,) = words_of("li 4, 5", PAGE)
    # First pass: the mtmsrd at +12 runs (trapped: SF stays).  Second pass: the store at
    # +8 replaces it with `li 4, 5` in the same block, which Unicorn translated before;
    # what runs at +12 must be the new word, or at least never a native mtmsrd.
    page = words_of(
        f"""
        lis 11, {li >> 16:#x}
        ori 11, 11, {li & 0xFFFF:#x}
        stw 11, 12(10)
        mtmsrd 3
        li 9, 0x77
        blr
        """,
        PAGE,
    )
    # r3 = 0: a native mtmsrd would clear SF; the first pass skips the store (r10 = a
    # scratch page instead of PAGE).
    code = f"""
        {store_words(page, 10)}
        li 3, 0
        lis 10, 0
        ori 10, 10, {LOG + 0x100:#x}
        {call(PAGE)}
        mr 8, 9
        li 9, 0
        lis 10, 0
        ori 10, 10, {PAGE:#x}
        {call(PAGE)}
        b .
    """
    core, st = guest(mem, code)
    core.run(600, START_NS)
    assert core.gpr(8) == 0x77 and core.gpr(9) == 0x77  # both passes ran to the end
    assert core.gpr(4) == 5  # the second pass ran the new word
    assert st.tr.msr & MSR_SF and core.reg(UC_PPC_REG_MSR) & MSR_SF


def test_a_host_write_to_code_that_ran_needs_no_flush_to_be_scanned_again() -> None:
    mem = MachineMemory(256 << 20)
    core, st = guest(mem, f"{call(PAGE)}\n li 9, 0x77\n b .")
    mem.write(RMA + PAGE, assemble("li 4, 1\n blr", PAGE))
    core.run(100, START_NS)
    assert core.gpr(4) == 1
    mem.write_u32(RMA + PAGE, words_of("mfmsr 4", PAGE)[0])  # no flush_code_caches()
    core.pc = 0x2000
    core.run(100, START_NS)
    assert core.gpr(4) == st.tr.msr == MSR_SF | MSR_EE


def test_one_address_holding_other_code_in_another_context_is_not_trapped_there() -> None:
    mem = MachineMemory(256 << 20)
    core, _ = make_core(mem, "mfmsr 4\n li 9, 0x77\n b .")
    core.set_msr(MSR_SF | MSR_EE)
    core.run(20, START_NS)
    assert core.gpr(4) == MSR_SF | MSR_EE and core.gpr(9) == 0x77
    core.save()
    # Another domain: its own RMA, with an ordinary instruction at the same address.
    other_rma = RMA + RMA_SIZE
    mem.write(other_rma + 0x2000, assemble("li 4, 7\n mfmsr 5\n li 9, 0x66\n b .", 0x2000))
    b = ArchState()
    b.tr.set_hid4(hid4_encode(other_rma, RMA_SIZE))
    b.tr.msr = MSR_SF | MSR_EE
    b.boot_regs = {-1: 0x2000}
    core.load(b)
    core.run(20, START_NS)
    assert core.gpr(9) == 0x66
    assert core.gpr(4) == 7  # not an mfmsr, whatever the other context had there
    assert core.gpr(5) == MSR_SF | MSR_EE  # and its own mfmsr, one word on, is trapped


def test_a_page_dense_with_traps_is_hooked_whole_and_each_trap_taken_once() -> None:
    mem = MachineMemory(256 << 20)
    few = words_of("tlbie 3\n tlbie 3\n tlbie 3\n blr", PAGE)
    many = words_of("\n".join(["tlbie 3"] * 40 + ["blr"]), PAGE)
    code = f"""
        {store_words(few, 10)}
        {call(PAGE)}
        {store_words(many, 10)}
        {call(PAGE)}
        li 9, 0x77
        b .
    """
    core, _ = guest(mem, code)
    taken: list[int] = []
    core.on_exception = lambda c, vector: taken.append(vector)
    core.run(2_000, START_NS)
    assert core.gpr(9) == 0x77
    # A guest's tlbie is privileged: one program interrupt per instruction, never two
    # (the page's first three words were hooked one by one before the whole page was).
    assert taken == [0x700] * (3 + 40)
    assert core.gpr(20) == 43


def test_rfid_with_reserved_bits_set_is_still_the_models_rfid() -> None:
    mem = MachineMemory(256 << 20)
    # Unicorn runs 0x4C000824 as rfid (bits 11-14 are not checked): it must be trapped.
    code = f"""
        lis 3, 0
        ori 3, 3, 0x2100
        mtspr 26, 3
        li 4, 0
        mtspr 27, 4
        .long {0x4C000024 | 0x800:#x}
        li 7, 1
    """
    core, st = make_core(mem, code)
    mem.write(RMA + 0x2100, assemble("li 8, 0x42\n b .", 0x2100))
    core.run(100, START_NS)
    assert core.gpr(8) == 0x42 and core.gpr(7) == 0  # branched to SRR0
    assert core.reg(UC_PPC_REG_MSR) & MSR_SF and st.tr.msr & MSR_SF


def test_the_c_classification_agrees_with_decode_sensitive() -> None:
    code = CodeMap(MachineMemory(1 << 20), lambda: None)
    rng = random.Random(14)
    words = [rng.getrandbits(32) for _ in range(20_000)]
    # Every extended opcode of the two primary opcodes that hold sensitive instructions,
    # with random other fields, and every SPR number for mfspr/mtspr.
    for op in (19, 31):
        words += [(op << 26) | (xo << 1) | (rng.getrandbits(32) & 0x03FFF801) for xo in range(1024)]
    for xo in (339, 467):
        words += [
            (31 << 26) | ((spr & 31) << 16) | ((spr >> 5) << 11) | (xo << 1) for spr in range(1024)
        ]
    for word in words:
        assert code.is_sensitive(word) == (decode_sensitive(word) is not None), hex(word)
