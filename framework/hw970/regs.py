"""Architected register numbers and bit masks of the PowerPC 970 (Book III, 970FX UM)."""

from __future__ import annotations

from typing import Final

# --- MSR bits (64-bit numbering: value masks) ---
MSR_SF: Final = 1 << 63  # 64-bit mode
MSR_HV: Final = 1 << 60  # hypervisor state
MSR_VEC: Final = 1 << 25
MSR_EE: Final = 1 << 15  # external interrupt enable ("events enabled" for a Xen guest)
MSR_PR: Final = 1 << 14  # problem state
MSR_FP: Final = 1 << 13
MSR_ME: Final = 1 << 12
MSR_FE0: Final = 1 << 11
MSR_SE: Final = 1 << 10
MSR_BE: Final = 1 << 9
MSR_FE1: Final = 1 << 8
MSR_IR: Final = 1 << 5  # instruction relocation
MSR_DR: Final = 1 << 4  # data relocation
MSR_RI: Final = 1 << 1
MSR_LE: Final = 1 << 0

#: Bits an exception clears on entry (Book III-S 6.5): everything but SF, HV and ME.
MSR_EXC_KEEP: Final = MSR_SF | MSR_HV | MSR_ME
#: Bits a guest may never set through rfid/mtmsrd: it must not become the hypervisor.
MSR_GUEST_FORBIDDEN: Final = MSR_HV | MSR_LE
#: The bits mirrored into Unicorn's own MSR: they select its TLB (mmu_idx) and privilege.
MSR_UC_MIRROR: Final = MSR_IR | MSR_DR | MSR_PR

# --- SPR numbers ---
SPR_XER: Final = 1
SPR_LR: Final = 8
SPR_CTR: Final = 9
SPR_DSISR: Final = 18
SPR_DAR: Final = 19
SPR_DEC: Final = 22
SPR_SDR1: Final = 25
SPR_SRR0: Final = 26
SPR_SRR1: Final = 27
SPR_VRSAVE: Final = 256
SPR_TBL_R: Final = 268
SPR_TBU_R: Final = 269
SPR_SPRG0: Final = 272
SPR_SPRG1: Final = 273
SPR_SPRG2: Final = 274
SPR_SPRG3: Final = 275
SPR_TBL_W: Final = 284
SPR_TBU_W: Final = 285
SPR_PVR: Final = 287
SPR_HSPRG0: Final = 304
SPR_HSPRG1: Final = 305
SPR_HDEC: Final = 310
SPR_HIOR: Final = 311
SPR_HSRR0: Final = 314
SPR_HSRR1: Final = 315
SPR_HID0: Final = 1008
SPR_HID1: Final = 1009
SPR_HID4: Final = 1012
SPR_HID5: Final = 1014
SPR_PIR: Final = 1023

#: SPRs the emulator keeps itself (Unicorn's copies of these are fine).
NATIVE_SPRS: Final = frozenset({SPR_XER, SPR_LR, SPR_CTR, SPR_VRSAVE})
#: SPRs a supervisor-state guest may read/write (the rest are hypervisor-only).
GUEST_SPRS: Final = frozenset(
    {
        SPR_DSISR,
        SPR_DAR,
        SPR_DEC,
        SPR_SRR0,
        SPR_SRR1,
        SPR_SPRG0,
        SPR_SPRG1,
        SPR_SPRG2,
        SPR_SPRG3,
        SPR_TBL_R,
        SPR_TBU_R,
        SPR_PVR,
        SPR_PIR,
    }
)

#: Processor version register of the 970FX (DD3.x), as firmware reports it.
PVR_970FX: Final = 0x003C0301

# --- Exception vectors (970FX User Manual, table 4-2) ---
VEC_SYSTEM_RESET = 0x100
VEC_MACHINE_CHECK = 0x200
VEC_DSI = 0x300
VEC_DSEG = 0x380
VEC_ISI = 0x400
VEC_ISEG = 0x480
VEC_EXTERNAL = 0x500
VEC_ALIGNMENT = 0x600
VEC_PROGRAM = 0x700
VEC_FP_UNAVAILABLE = 0x800
VEC_DECREMENTER = 0x900
VEC_HDECREMENTER = 0x980
VEC_SYSCALL = 0xC00
VEC_TRACE = 0xD00

VECTOR_NAMES: Final = {
    VEC_SYSTEM_RESET: "system_reset",
    VEC_MACHINE_CHECK: "machine_check",
    VEC_DSI: "data_storage",
    VEC_DSEG: "data_segment",
    VEC_ISI: "instruction_storage",
    VEC_ISEG: "instruction_segment",
    VEC_EXTERNAL: "external",
    VEC_ALIGNMENT: "alignment",
    VEC_PROGRAM: "program",
    VEC_FP_UNAVAILABLE: "fp_unavailable",
    VEC_DECREMENTER: "decrementer",
    VEC_HDECREMENTER: "hypervisor_decrementer",
    VEC_SYSCALL: "system_call",
    VEC_TRACE: "trace",
}

# --- Program interrupt reasons: SRR1 bits 43..46 ---
SRR1_PROGRAM_FPE: Final = 1 << 20
SRR1_PROGRAM_ILLEGAL: Final = 1 << 19
SRR1_PROGRAM_PRIV: Final = 1 << 18
SRR1_PROGRAM_TRAP: Final = 1 << 17

# --- DSISR / ISI SRR1 bits ---
DSISR_NOT_FOUND: Final = 1 << 30  # no PTE matched
DSISR_PROTECTION: Final = 1 << 27  # storage protection violation
DSISR_STORE: Final = 1 << 25  # the access was a store
ISI_SRR1_NOT_FOUND: Final = 1 << 30
ISI_SRR1_NOEXEC: Final = 1 << 28  # N or G page
ISI_SRR1_PROTECTION: Final = 1 << 27
