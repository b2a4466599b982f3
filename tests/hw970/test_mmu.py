"""970 translation: HID4 RMA encoding, real mode limits, hashed page table walks."""

from __future__ import annotations

import pytest

from framework.hw970.memory import MachineMemory
from framework.hw970.mmu import (
    ACCESS_FETCH,
    ACCESS_READ,
    ACCESS_WRITE,
    PROT_WRITE,
    PTE_C,
    PTE_H,
    PTE_L,
    PTE_R,
    PTE_V,
    RMA_SIZES,
    SLB_L,
    Fault,
    Mmu,
    TranslationState,
    hid4_decode,
    hid4_encode,
    pte_avpn,
    pteg_index,
    sdr1_decode,
    sdr1_encode,
)
from framework.hw970.regs import (
    DSISR_NOT_FOUND,
    DSISR_PROTECTION,
    DSISR_STORE,
    MSR_DR,
    MSR_IR,
    VEC_DSEG,
    VEC_DSI,
    VEC_ISI,
)

HTAB = 0x100000
HTAB_BYTES = 256 << 10


@pytest.mark.parametrize("size", RMA_SIZES)
def test_hid4_round_trips_every_valid_rma_size(size: int) -> None:
    base = 3 * size
    assert hid4_decode(hid4_encode(base, size)) == (base, size)


def test_hid4_refuses_invalid_sizes_and_misaligned_bases() -> None:
    with pytest.raises(ValueError, match="invalid RMA size 96MiB"):
        hid4_encode(0, 96 << 20)
    with pytest.raises(ValueError, match="not naturally aligned"):
        hid4_encode(64 << 20, 128 << 20)
    # 64 MiB RMA -> RMLR 0/3: bit 0 clear, bits 1:2 = 3 (XEN-PPC-FACTS)
    hid4 = hid4_encode(0, 64 << 20)
    assert (hid4 >> 35) & 1 == 0 and (hid4 >> 61) & 3 == 3


def _state(msr: int) -> TranslationState:
    st = TranslationState(msr=msr)
    st.set_hid4(hid4_encode(64 << 20, 64 << 20))
    st.sdr1 = sdr1_encode(HTAB, HTAB_BYTES)
    return st


def test_real_mode_offsets_by_rmor_and_stops_at_rmlr() -> None:
    mmu = Mmu(MachineMemory(256 << 20))
    st = _state(0)
    assert mmu.translate(st, 0x3FFF123, ACCESS_READ) == ((64 << 20) + 0x3FFF000, 7)
    fault = mmu.translate(st, 64 << 20, ACCESS_WRITE)
    assert isinstance(fault, Fault) and fault.vector == VEC_DSI
    assert fault.dsisr == DSISR_PROTECTION | DSISR_STORE
    assert isinstance(mmu.translate(st, 64 << 20, ACCESS_FETCH), Fault)


def _insert(
    mem: MachineMemory, vsid: int, ea: int, pa: int, *, large: bool, secondary: bool, slot: int
) -> int:
    shift = 24 if large else 12
    _, n = sdr1_decode(sdr1_encode(HTAB, HTAB_BYTES))
    group = pteg_index(vsid, ea, shift, secondary, n)
    addr = HTAB + group * 128 + slot * 16
    hi = (pte_avpn(vsid, ea) << 7) | PTE_V | (PTE_L if large else 0) | (PTE_H if secondary else 0)
    mem.write_u64(addr + 8, pa | 0x2)  # PP=2: read/write
    mem.write_u64(addr, hi)
    return addr


@pytest.mark.parametrize(("large", "secondary"), [(False, False), (False, True), (True, False)])
def test_hashed_page_table_lookup(large: bool, secondary: bool) -> None:
    mem = MachineMemory(256 << 20)
    mmu = Mmu(mem)
    st = _state(MSR_IR | MSR_DR)
    ea = 0xC000000001234000 if not large else 0xC000000001000000
    vsid = 0x5A5C00
    st.slbmte((vsid << 12) | (SLB_L if large else 0), (ea >> 28 << 28) | 0x8000000 | 3)
    pa = 0x8000000
    pte = _insert(mem, vsid, ea, pa, large=large, secondary=secondary, slot=5)
    got = mmu.translate(st, ea + 0x345, ACCESS_READ)
    assert not isinstance(got, Fault)
    assert got[0] == pa
    assert not got[1] & PROT_WRITE  # C is clear: the first store must refill
    assert mem.read_u64(pte + 8) & PTE_R and not mem.read_u64(pte + 8) & PTE_C
    got = mmu.translate(st, ea, ACCESS_WRITE)
    assert not isinstance(got, Fault) and got[1] & PROT_WRITE
    assert mem.read_u64(pte + 8) & PTE_C
    if large:  # a 4 KiB piece deep inside the 16 MiB page
        assert mmu.translate(st, ea + 0xABC000, ACCESS_READ)[0] == pa + 0xABC000


def test_missing_pte_and_missing_segment_faults() -> None:
    mmu = Mmu(MachineMemory(256 << 20))
    st = _state(MSR_IR | MSR_DR)
    seg = mmu.translate(st, 0xC000000000000000, ACCESS_READ)
    assert isinstance(seg, Fault) and seg.vector == VEC_DSEG
    st.slbmte(0x1234 << 12, (0xC000000000000000 >> 28 << 28) | 0x8000000)
    miss = mmu.translate(st, 0xC000000000005000, ACCESS_READ)
    assert isinstance(miss, Fault) and miss.vector == VEC_DSI and miss.dsisr == DSISR_NOT_FOUND
    fetch = mmu.translate(st, 0xC000000000005000, ACCESS_FETCH)
    assert isinstance(fetch, Fault) and fetch.vector == VEC_ISI
