"""The C TLB fill agrees with the reference `Mmu` translation, faults and R/C updates."""

from __future__ import annotations

import random

from framework.hw970.code_pages import CodeMap
from framework.hw970.memory import MachineMemory
from framework.hw970.mmu import (
    ACCESS_FETCH,
    ACCESS_READ,
    ACCESS_WRITE,
    PTE_H,
    PTE_L,
    PTE_V,
    PTEG_BYTES,
    SLB_KP,
    SLB_KS,
    SLB_L,
    SLB_N,
    Fault,
    Mmu,
    TranslationState,
    hid4_encode,
    pte_avpn,
    pteg_index,
    sdr1_decode,
    sdr1_encode,
)
from framework.hw970.regs import MSR_DR, MSR_HV, MSR_IR, MSR_PR, VEC_DSI, VEC_MACHINE_CHECK
from framework.hw970.tlb_fill import TlbFill

HTAB = 0x100000
HTAB_BYTES = 256 << 10
MEM = 64 << 20
UNTIL_PAGE = 0xFFFFFFFFFFFFF000


def _as_tuple(res: tuple[int, int] | Fault) -> tuple[int, ...]:
    if isinstance(res, Fault):
        return ("fault", res.vector, res.dar, res.dsisr, res.srr1_bits)  # type: ignore[return-value]
    return res


def _random_machine(rng: random.Random) -> tuple[MachineMemory, TranslationState, list[int]]:
    """A partition with a few segments (4 KiB and 16 MiB, keys, no-exec) and random PTEs."""
    mem = MachineMemory(MEM)
    tr = TranslationState()
    tr.set_hid4(hid4_encode(0, 64 << 20))
    tr.sdr1 = sdr1_encode(HTAB, HTAB_BYTES)
    _, n_ptegs = sdr1_decode(tr.sdr1)
    eas: list[int] = []
    for index, esid in enumerate(rng.sample(range(0xC0000000, 0xC0000010), 5)):
        large = rng.random() < 0.4
        flags = (SLB_L if large else 0) | rng.choice([0, SLB_KS, SLB_KP, SLB_KS | SLB_KP])
        flags |= SLB_N if rng.random() < 0.2 else 0
        vsid = rng.randrange(1, 1 << 30)
        tr.slbmte((vsid << 12) | flags, (esid << 28) | 0x8000000 | index)
        shift = 24 if large else 12
        for _ in range(12):
            ea = (esid << 28) | (rng.randrange(0, 1 << 28) >> shift << shift)
            eas.append(ea | rng.randrange(0, 1 << 12))
            if rng.random() < 0.25:
                continue  # no PTE: a not-found fault
            secondary = rng.random() < 0.3
            pteg = pteg_index(vsid, ea, shift, secondary, n_ptegs)
            addr = HTAB + pteg * PTEG_BYTES + rng.randrange(8) * 16
            avpn = pte_avpn(vsid, ea) >> (1 if large else 0)
            hi = (avpn << (8 if large else 7)) | PTE_V
            hi |= (PTE_H if secondary else 0) | (PTE_L if large else 0)
            rpn = rng.randrange(1, MEM >> shift) << shift
            lo = rpn | rng.randrange(4) | rng.choice([0, 0x4, 0x8, 0x80, 0x100, 0x180])
            mem.write_u64(addr, hi)
            mem.write_u64(addr + 8, lo)
        eas.append((esid + 0x100) << 28)  # a segment the SLB does not hold
    return mem, tr, eas


def test_c_fill_matches_reference_on_random_page_tables() -> None:
    rng = random.Random(970)
    compared = 0
    outcomes: set[object] = set()
    for _ in range(20):
        mem, tr, eas = _random_machine(rng)
        mmu = Mmu(mem)
        fill = TlbFill(mem, CodeMap(mem, lambda: None), until_page=UNTIL_PAGE, zero_page=0)
        for msr in (MSR_IR | MSR_DR, MSR_IR | MSR_DR | MSR_PR, MSR_DR, 0, MSR_HV):
            tr.msr = msr
            fill.load(tr)
            for ea in eas + [0x12345, (64 << 20) + 0x1000]:
                for access in (ACCESS_READ, ACCESS_WRITE, ACCESS_FETCH):
                    before = bytes(mem.read(HTAB, HTAB_BYTES))
                    want = _as_tuple(mmu.translate(tr, ea, access))
                    after_ref = bytes(mem.read(HTAB, HTAB_BYTES))
                    mem.write(HTAB, before)
                    got = _as_tuple(fill.translate(ea, access))
                    assert got == want, (hex(ea), access, hex(msr))
                    # The same reference/change bits were set in the page table.
                    assert bytes(mem.read(HTAB, HTAB_BYTES)) == after_ref
                    compared += 1
                    outcomes.add(want[1])  # a fault vector, or Unicorn permission bits
    assert compared > 5000
    # Every kind of outcome was compared: each fault vector and several permission sets.
    assert {0x300, 0x380, 0x400, 0x480} <= outcomes and {1, 3, 5, 7} <= outcomes


def test_store_without_pte_faults_with_its_address() -> None:
    mem = MachineMemory(MEM)
    tr = TranslationState(msr=MSR_IR | MSR_DR)
    tr.set_hid4(hid4_encode(0, 64 << 20))
    tr.sdr1 = sdr1_encode(HTAB, HTAB_BYTES)
    tr.slbmte(0x77 << 12, (0xC00000000 << 28) | 0x8000000)
    fill = TlbFill(mem, CodeMap(mem, lambda: None), until_page=UNTIL_PAGE, zero_page=0)
    fill.load(tr)
    ea = 0xC000000000004000
    entry = fill.translate(ea, ACCESS_WRITE)
    assert isinstance(entry, Fault) and entry.vector == VEC_DSI and entry.dar == ea
    assert fill.take_fault() is None  # translate() hands the fault over and clears it


def test_page_table_outside_memory_is_a_machine_check() -> None:
    mem = MachineMemory(MEM)
    tr = TranslationState(msr=MSR_IR | MSR_DR)
    tr.set_hid4(hid4_encode(0, 64 << 20))
    tr.sdr1 = sdr1_encode(MEM, HTAB_BYTES)  # just past the end of memory
    tr.slbmte(0x77 << 12, (0xC00000000 << 28) | 0x8000000)
    fill = TlbFill(mem, CodeMap(mem, lambda: None), until_page=UNTIL_PAGE, zero_page=0)
    fill.load(tr)
    res = fill.translate(0xC000000000004000, ACCESS_READ)
    assert isinstance(res, Fault) and res.vector == VEC_MACHINE_CHECK and res.dar == MEM


def test_a_translation_into_the_io_hole_is_a_machine_check() -> None:
    """On a 4 GiB board a PTE whose RPN lies in the 2-4 GiB hole (or past the top of RAM)
    never reaches memory: both fills refuse it with a machine check; RAM at 4 GiB maps."""
    gib = 1 << 30
    mem = MachineMemory(4 * gib)
    tr = TranslationState()
    tr.set_hid4(hid4_encode(64 << 20, 64 << 20))
    tr.sdr1 = sdr1_encode(HTAB, HTAB_BYTES)
    _, n_ptegs = sdr1_decode(tr.sdr1)
    vsid = 0x5A5A5
    tr.slbmte(vsid << 12, (0xC << 28) | 0x8000000)
    cases = {0: 4 * gib + 0x3000, 1: 2 * gib, 2: 3 * gib + 0x7000, 3: 6 * gib, 4: 2 * gib - 0x1000}
    for page, rpn in cases.items():
        ea = (0xC << 28) | (page << 12)
        addr = HTAB + pteg_index(vsid, ea, 12, False, n_ptegs) * PTEG_BYTES
        mem.write_u64(addr, (pte_avpn(vsid, ea) << 7) | PTE_V)
        mem.write_u64(addr + 8, rpn | 0x2)  # pp = 2: read/write
    tr.msr = MSR_IR | MSR_DR
    mmu = Mmu(mem)
    fill = TlbFill(mem, CodeMap(mem, lambda: None), until_page=UNTIL_PAGE, zero_page=0)
    fill.load(tr)
    for page, rpn in cases.items():
        ea = (0xC << 28) | (page << 12) | 0x10
        # RAM maps to its frame (perms follow R/C); anything else is a machine check.
        want = (rpn,) if mem.is_ram(rpn, 0x1000) else ("fault", VEC_MACHINE_CHECK, rpn)
        for access in (ACCESS_READ, ACCESS_WRITE):
            got = _as_tuple(mmu.translate(tr, ea, access))
            assert got[: len(want)] == want, hex(rpn)
            assert _as_tuple(fill.translate(ea, access))[: len(want)] == want, hex(rpn)
    # Xen's own real-mode view (MSR[HV]) stops at the hole too.
    tr.msr = MSR_HV
    fill.load(tr)
    assert _as_tuple(fill.translate(2 * gib + 0x10, ACCESS_READ))[:2] == ("fault", 0x200)
    assert _as_tuple(mmu.translate(tr, 2 * gib + 0x10, ACCESS_READ))[:2] == ("fault", 0x200)
    assert _as_tuple(fill.translate(4 * gib + 0x10, ACCESS_READ))[0] == 4 * gib
