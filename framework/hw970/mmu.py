"""970 address translation: real mode (RMOR/RMLR from HID4) and the hashed page table.

The TLB of the emulated core is Unicorn's; it calls `Mmu.translate` on every miss
(UC_TLB_VIRTUAL + UC_HOOK_TLB_FILL), so this module decides every translation.
Sources: PowerPC 970FX User Manual ch. 5, Book III-S, Xen's `asm-powerpc/processor.h`
(`union hid4`) and the RMLR table in XEN-PPC-FACTS.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from framework.hw970.memory import PAGE_SIZE, MachineMemory
from framework.hw970.regs import (
    DSISR_NOT_FOUND,
    DSISR_PROTECTION,
    DSISR_STORE,
    ISI_SRR1_NOEXEC,
    ISI_SRR1_NOT_FOUND,
    ISI_SRR1_PROTECTION,
    MSR_DR,
    MSR_HV,
    MSR_IR,
    MSR_PR,
    VEC_DSEG,
    VEC_DSI,
    VEC_ISEG,
    VEC_ISI,
    VEC_MACHINE_CHECK,
)
from framework.units import format_size

# Unicorn memory access codes and protection bits (unicorn_const), kept local so the
# hot path does no attribute lookups.
ACCESS_READ: Final = 16
ACCESS_WRITE: Final = 17
ACCESS_FETCH: Final = 18
PROT_READ: Final = 1
PROT_WRITE: Final = 2
PROT_EXEC: Final = 4
PROT_ALL: Final = 7

#: Valid 970 RMA sizes: log2(size) -> (RMLR bit 0, RMLR bits 1:2).
RMA_LOG2_TO_RMLR: dict[int, tuple[int, int]] = {
    26: (0, 3),  # 64 MiB
    27: (1, 3),  # 128 MiB
    28: (1, 0),  # 256 MiB
    30: (0, 2),  # 1 GiB
    34: (0, 1),  # 16 GiB
    38: (0, 0),  # 256 GiB
}
_RMLR_TO_LOG2: Final = {v: k for k, v in RMA_LOG2_TO_RMLR.items()}
RMA_SIZES: Final = tuple(1 << k for k in sorted(RMA_LOG2_TO_RMLR))
RMOR_UNIT: Final = 64 << 20  # RMOR counts 64 MiB units

# HID4 fields (big-endian bit numbering as in Xen's `union hid4`).
_HID4_LPES0: Final = 63
_HID4_RMLR12: Final = 61
_HID4_LPID25: Final = 57
_HID4_RMOR: Final = 41
_HID4_LPID01: Final = 36
_HID4_RMLR0: Final = 35
_HID4_LPES1: Final = 34

# PTE (16 bytes) fields.
PTE_V: Final = 0x1
PTE_H: Final = 0x2
PTE_L: Final = 0x4
PTE_R: Final = 0x100
PTE_C: Final = 0x80
PTE_N: Final = 0x4
PTE_G: Final = 0x8
PTE_I: Final = 0x20
PTE_W: Final = 0x40
PTE_PP: Final = 0x3
PTE_RPN_MASK: Final = 0x0FFFFFFFFFFFF000
PTEG_BYTES: Final = 128
PTES_PER_PTEG: Final = 8
HTAB_MIN_BYTES: Final = 256 << 10

# SLB (slbmte RS operand) flags.
SLB_KS: Final = 0x800
SLB_KP: Final = 0x400
SLB_N: Final = 0x200
SLB_L: Final = 0x100
SLB_ENTRIES: Final = 64

LARGE_PAGE_SHIFT: Final = 24  # the 970's one large page size: 16 MiB


def rma_log2(size: int) -> int:
    """log2 of a valid 970 RMA size, or ValueError naming the allowed sizes."""
    if size > 0 and size & (size - 1) == 0 and size.bit_length() - 1 in RMA_LOG2_TO_RMLR:
        return size.bit_length() - 1
    allowed = ", ".join(format_size(s) for s in RMA_SIZES)
    raise ValueError(f"invalid RMA size {format_size(size)}; the 970 allows {allowed}")


def hid4_encode(rma_base: int, rma_size: int, *, lpid: int = 0, lpes0: int = 0) -> int:
    """HID4 value for a partition whose RMA is [rma_base, rma_base + rma_size)."""
    log2 = rma_log2(rma_size)
    if rma_base % rma_size:
        raise ValueError(
            f"RMA base {rma_base:#x} is not naturally aligned to {format_size(rma_size)}"
        )
    rmlr0, rmlr12 = RMA_LOG2_TO_RMLR[log2]
    return (
        (lpes0 & 1) << _HID4_LPES0
        | rmlr12 << _HID4_RMLR12
        | (lpid & 0xF) << _HID4_LPID25
        | ((rma_base // RMOR_UNIT) & 0xFFFF) << _HID4_RMOR
        | ((lpid >> 4) & 0x3) << _HID4_LPID01
        | rmlr0 << _HID4_RMLR0
    )


def hid4_decode(hid4: int) -> tuple[int, int]:
    """(RMA base, RMA size) that a HID4 value selects."""
    rmor = (hid4 >> _HID4_RMOR) & 0xFFFF
    rmlr = ((hid4 >> _HID4_RMLR0) & 1, (hid4 >> _HID4_RMLR12) & 3)
    log2 = _RMLR_TO_LOG2.get(rmlr)
    if log2 is None:
        raise ValueError(f"HID4 {hid4:#x} has an RMLR encoding {rmlr} the 970 does not define")
    return rmor * RMOR_UNIT, 1 << log2


def sdr1_encode(htab_base: int, htab_bytes: int) -> int:
    """SDR1 for a hashed page table of `htab_bytes` (a power of two >= 256 KiB) at base."""
    if htab_bytes < HTAB_MIN_BYTES or htab_bytes & (htab_bytes - 1):
        raise ValueError(f"HTAB size {htab_bytes:#x} is not a power of two >= 256 KiB")
    if htab_base % htab_bytes:
        raise ValueError(f"HTAB base {htab_base:#x} not aligned to its size {htab_bytes:#x}")
    return htab_base | ((htab_bytes.bit_length() - 1) - 18)


def sdr1_decode(sdr1: int) -> tuple[int, int]:
    """(HTAB base, number of PTEGs) from SDR1."""
    return sdr1 & 0x0FFFFFFFFFFC0000, 1 << (11 + (sdr1 & 0x1F))


def pteg_index(vsid: int, ea: int, page_shift: int, secondary: bool, n_ptegs: int) -> int:
    """Index of the PTEG that a (VSID, EA) hashes to (Book III-S 5.7.7.3)."""
    h = (vsid & 0x7FFFFFFFFF) ^ ((ea & 0x0FFFFFFF) >> page_shift)
    if secondary:
        h = ~h
    return h & (n_ptegs - 1)


def pte_avpn(vsid: int, ea: int) -> int:
    """The abbreviated virtual page number a PTE's first word carries (>> 7)."""
    return (vsid << 5) | ((ea >> 23) & 0x1F)


@dataclass
class Fault:
    """A failed translation, to be delivered as an architected interrupt."""

    vector: int
    dar: int = 0
    dsisr: int = 0
    srr1_bits: int = 0


@dataclass(slots=True)
class TranslationState:
    """What translation depends on: MSR, the partition's HID4/SDR1, and the SLB."""

    msr: int = 0
    hid4: int = 0
    sdr1: int = 0
    slb: dict[int, int] = field(default_factory=dict)  # ESID -> RS word (VSID | flags)
    slb_slots: dict[int, int] = field(default_factory=dict)  # slot index -> ESID
    rma_base: int = 0
    rma_size: int = 0

    def set_hid4(self, hid4: int) -> None:
        self.hid4 = hid4
        self.rma_base, self.rma_size = hid4_decode(hid4)

    def slbmte(self, rs: int, rb: int) -> None:
        """Install an SLB entry (slbmte RS,RB): RB = ESID | V | index."""
        index = rb & 0xFFF
        old = self.slb_slots.pop(index, None)
        if old is not None:
            self.slb.pop(old, None)
        if rb & 0x8000000:
            esid = rb >> 28
            self.slb[esid] = rs
            self.slb_slots[index] = esid

    def slbie(self, rb: int) -> None:
        esid = rb >> 28
        if self.slb.pop(esid, None) is not None:
            for idx, e in list(self.slb_slots.items()):
                if e == esid:
                    del self.slb_slots[idx]

    def slbia(self) -> None:
        """Invalidate all SLB entries but slot 0 (as slbia does)."""
        keep = self.slb_slots.get(0)
        rs = self.slb.get(keep) if keep is not None else None
        self.slb.clear()
        self.slb_slots.clear()
        if keep is not None and rs is not None:
            self.slb[keep] = rs
            self.slb_slots[0] = keep


class Mmu:
    """Translates effective addresses for one core, reading page tables from memory."""

    def __init__(self, memory: MachineMemory) -> None:
        self.memory = memory

    def translate(self, st: TranslationState, ea: int, access: int) -> tuple[int, int] | Fault:
        """Return (machine page address, Unicorn perms) or the Fault to deliver."""
        fetch = access == ACCESS_FETCH
        relocate = st.msr & (MSR_IR if fetch else MSR_DR)
        if not relocate:
            return self._real_mode(st, ea, access)
        return self.hashed(st, ea, access)

    def _real_mode(self, st: TranslationState, ea: int, access: int) -> tuple[int, int] | Fault:
        off = ea & 0x0FFFFFFFFFFFFFFF
        if st.msr & MSR_HV:
            if not self.memory.is_ram(off & ~0xFFF, PAGE_SIZE):
                return Fault(VEC_MACHINE_CHECK, dar=off & ~0xFFF)
            return off & ~0xFFF, PROT_ALL
        if off >= st.rma_size:
            return _fault(ea, access, DSISR_PROTECTION, ISI_SRR1_PROTECTION)
        return (st.rma_base + off) & ~0xFFF, PROT_ALL

    def hashed(self, st: TranslationState, ea: int, access: int) -> tuple[int, int] | Fault:
        """Translate through the SLB and hashed page table, whatever MSR[IR/DR] say."""
        rs = st.slb.get(ea >> 28)
        if rs is None:
            if access == ACCESS_FETCH:
                return Fault(VEC_ISEG)
            return Fault(VEC_DSEG, dar=ea)
        vsid = rs >> 12
        large = bool(rs & SLB_L)
        shift = LARGE_PAGE_SHIFT if large else 12
        htab, n_ptegs = sdr1_decode(st.sdr1)
        avpn = pte_avpn(vsid, ea)
        if large:
            avpn >>= 1
        mem = self.memory
        for secondary in (False, True):
            base = htab + pteg_index(vsid, ea, shift, secondary, n_ptegs) * PTEG_BYTES
            for slot in range(PTES_PER_PTEG):
                addr = base + slot * 16
                hi = mem.read_u64(addr)
                if not hi & PTE_V or bool(hi & PTE_H) != secondary or bool(hi & PTE_L) != large:
                    continue
                if ((hi >> 8) if large else (hi >> 7)) != avpn:
                    continue
                return self._check_pte(st, rs, addr, ea, access, shift)
        return _fault(ea, access, DSISR_NOT_FOUND, ISI_SRR1_NOT_FOUND)

    def _check_pte(
        self, st: TranslationState, rs: int, addr: int, ea: int, access: int, shift: int
    ) -> tuple[int, int] | Fault:
        mem = self.memory
        lo = mem.read_u64(addr + 8)
        key = bool(rs & (SLB_KP if st.msr & MSR_PR else SLB_KS))
        pp = lo & PTE_PP
        can_read = not (key and pp == 0)
        can_write = (pp == 2) or (not key and pp in (0, 1))
        if access == ACCESS_FETCH:
            if lo & (PTE_N | PTE_G) or rs & SLB_N:
                return Fault(VEC_ISI, srr1_bits=ISI_SRR1_NOEXEC)
            if not can_read:
                return Fault(VEC_ISI, srr1_bits=ISI_SRR1_PROTECTION)
        elif access == ACCESS_WRITE:
            if not can_write:
                return Fault(VEC_DSI, dar=ea, dsisr=DSISR_PROTECTION | DSISR_STORE)
        elif not can_read:
            return Fault(VEC_DSI, dar=ea, dsisr=DSISR_PROTECTION)
        size_mask = (1 << shift) - 1
        pa = (lo & PTE_RPN_MASK & ~size_mask) | (ea & size_mask & ~0xFFF)
        if not mem.is_ram(pa, PAGE_SIZE):
            # Not RAM (the I/O hole, or beyond the top): the access is a machine check.
            return Fault(VEC_MACHINE_CHECK, dar=pa)
        # Reference and change bits: set R on any access, C on a store.  A read only
        # gets write permission when C is already set, so the first store refills.
        new = lo | PTE_R
        if access == ACCESS_WRITE:
            new |= PTE_C
        if new != lo:
            mem.write_u64(addr + 8, new)
        perms = PROT_READ
        if can_write and new & PTE_C:
            perms |= PROT_WRITE
        if not (lo & (PTE_N | PTE_G)):
            perms |= PROT_EXEC
        return pa, perms


def _fault(ea: int, access: int, dsisr: int, srr1_bits: int) -> Fault:
    if access == ACCESS_FETCH:
        return Fault(VEC_ISI, srr1_bits=srr1_bits)
    if access == ACCESS_WRITE:
        dsisr |= DSISR_STORE
    return Fault(VEC_DSI, dar=ea, dsisr=dsisr)
