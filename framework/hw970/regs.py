"""Architected register numbers and bit masks of the PowerPC 970 (Book III, 970FX UM)."""

from __future__ import annotations

# --- MSR bits (64-bit numbering: value masks) ---
MSR_SF = 1 << 63  # 64-bit mode
MSR_HV = 1 << 60  # hypervisor state
MSR_VEC = 1 << 25
MSR_EE = 1 << 15  # external interrupt enable ("events enabled" for a Xen guest)
MSR_PR = 1 << 14  # problem state
MSR_FP = 1 << 13
MSR_ME = 1 << 12
MSR_FE0 = 1 << 11
MSR_SE = 1 << 10
MSR_BE = 1 << 9
MSR_FE1 = 1 << 8
MSR_IR = 1 << 5  # instruction relocation
MSR_DR = 1 << 4  # data relocation
MSR_RI = 1 << 1
MSR_LE = 1 << 0

#: Bits an exception clears on entry (Book III-S 6.5): everything but SF, HV and ME.
MSR_EXC_KEEP = MSR_SF | MSR_HV | MSR_ME
#: Bits a guest may never set through rfid/mtmsrd: it must not become the hypervisor.
MSR_GUEST_FORBIDDEN = MSR_HV | MSR_LE
#: The bits mirrored into Unicorn's own MSR: they select its TLB (mmu_idx) and privilege.
MSR_UC_MIRROR = MSR_IR | MSR_DR | MSR_PR

# --- SPR numbers ---
SPR_XER = 1
SPR_LR = 8
SPR_CTR = 9
SPR_DSISR = 18
SPR_DAR = 19
SPR_DEC = 22
SPR_SDR1 = 25
SPR_SRR0 = 26
SPR_SRR1 = 27
SPR_VRSAVE = 256
SPR_TBL_R = 268
SPR_TBU_R = 269
SPR_SPRG0 = 272
SPR_SPRG1 = 273
SPR_SPRG2 = 274
SPR_SPRG3 = 275
SPR_TBL_W = 284
SPR_TBU_W = 285
SPR_PVR = 287
SPR_HSPRG0 = 304
SPR_HSPRG1 = 305
SPR_HDEC = 310
SPR_HIOR = 311
SPR_HSRR0 = 314
SPR_HSRR1 = 315
SPR_HID0 = 1008
SPR_HID1 = 1009
SPR_HID4 = 1012
SPR_HID5 = 1014
SPR_PIR = 1023

#: SPRs the emulator keeps itself (Unicorn's copies of these are fine).
NATIVE_SPRS = frozenset({SPR_XER, SPR_LR, SPR_CTR, SPR_VRSAVE})
#: SPRs a supervisor-state guest may read/write (the rest are hypervisor-only).
GUEST_SPRS = frozenset(
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
PVR_970FX = 0x003C0301

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

VECTOR_NAMES = {
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
SRR1_PROGRAM_FPE = 1 << 20
SRR1_PROGRAM_ILLEGAL = 1 << 19
SRR1_PROGRAM_PRIV = 1 << 18
SRR1_PROGRAM_TRAP = 1 << 17

# --- DSISR / ISI SRR1 bits ---
DSISR_NOT_FOUND = 1 << 30  # no PTE matched
DSISR_PROTECTION = 1 << 27  # storage protection violation
DSISR_STORE = 1 << 25  # the access was a store
ISI_SRR1_NOT_FOUND = 1 << 30
ISI_SRR1_NOEXEC = 1 << 28  # N or G page
ISI_SRR1_PROTECTION = 1 << 27
