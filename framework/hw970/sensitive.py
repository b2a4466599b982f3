"""The 970's sensitive instructions: found once in a code image, emulated on the model state.

Unicorn 2.1.4 cannot keep MSR, SRR0/1, DEC, HID4, SDR1, the SPRGs or the SLB (a
`reg_write(MSR)` does not stick, `rfid` does not branch, DEC and TB never advance), so the
instructions whose effect lives in that state are decoded from the loaded image
(`scan_sensitive`), hooked by address only, and done here on the context's `ArchState`
(`emulate`).  The rest of the code runs at TCG speed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from framework.hw970.arch_state import ArchState
from framework.hw970.regs import (
    GUEST_SPRS,
    MSR_EE,
    MSR_GUEST_FORBIDDEN,
    MSR_HV,
    MSR_PR,
    NATIVE_SPRS,
    PVR_970FX,
    SPR_DAR,
    SPR_DEC,
    SPR_DSISR,
    SPR_HDEC,
    SPR_HID4,
    SPR_PIR,
    SPR_PVR,
    SPR_SDR1,
    SPR_SPRG0,
    SPR_SPRG3,
    SPR_SRR0,
    SPR_SRR1,
    SPR_TBL_R,
    SPR_TBU_R,
    SRR1_PROGRAM_PRIV,
    VEC_PROGRAM,
)

if TYPE_CHECKING:
    from framework.hw970.core import Core

#: A decoded sensitive instruction: (kind, a, b), a/b register or SPR numbers by kind.
Trap = tuple[int, int, int]

TRAP_RFID: Final = 1
TRAP_MFSPR: Final = 2
TRAP_MTSPR: Final = 3
TRAP_MFMSR: Final = 4
TRAP_MTMSRD: Final = 5
TRAP_MFTB: Final = 6
TRAP_SLBMTE: Final = 7
TRAP_SLBIE: Final = 8
TRAP_SLBIA: Final = 9
TRAP_TLBIE: Final = 10
TRAP_NOP: Final = 11  # tlbsync, ptesync-like: no model effect


def decode_sensitive(word: int) -> Trap | None:
    """(kind, a, b) if `word` must be intercepted, else None.

    a/b are register numbers or the SPR number, depending on kind.
    """
    if word == 0x4C000024:
        return (TRAP_RFID, 0, 0)
    if word >> 26 != 31:
        return None
    xo = (word >> 1) & 0x3FF
    rt = (word >> 21) & 31
    ra = (word >> 16) & 31
    rb = (word >> 11) & 31
    spr = ra | (rb << 5)
    if xo == 339 and spr not in NATIVE_SPRS:
        return (TRAP_MFSPR, rt, spr)
    if xo == 467 and spr not in NATIVE_SPRS:
        return (TRAP_MTSPR, rt, spr)
    if xo == 371:
        return (TRAP_MFTB, rt, spr)
    if xo == 83:
        return (TRAP_MFMSR, rt, 0)
    if xo in (178, 146):  # mtmsrd, mtmsr
        return (TRAP_MTMSRD, rt, ra & 1 if xo == 178 else 0)
    if xo == 402:
        return (TRAP_SLBMTE, rt, rb)
    if xo == 434:
        return (TRAP_SLBIE, rb, 0)
    if xo == 498:
        return (TRAP_SLBIA, 0, 0)
    if xo in (306, 274):
        return (TRAP_TLBIE, rb, 0)
    if xo == 566:
        return (TRAP_NOP, 0, 0)
    return None


def scan_sensitive(image: bytes, base: int) -> dict[int, Trap]:
    """Every sensitive instruction in a big-endian code image loaded at `base`."""
    out: dict[int, Trap] = {}
    for off in range(0, len(image) - 3, 4):
        word = int.from_bytes(image[off : off + 4], "big")
        d = decode_sensitive(word)
        if d is not None:
            out[base + off] = d
    return out


def emulate(core: Core, state: ArchState, addr: int, trap: Trap) -> None:
    """Do what the sensitive instruction `trap` at `addr` does, on the model state of the
    running context; a privileged one from problem state takes a program interrupt."""
    kind, a, b = trap
    msr = state.tr.msr
    if (
        msr & MSR_PR
        and kind != TRAP_MFTB
        and not (kind == TRAP_MFSPR and b in (SPR_TBL_R, SPR_TBU_R))
    ):
        core.deliver(VEC_PROGRAM, addr, srr1_bits=SRR1_PROGRAM_PRIV)
        return
    if kind == TRAP_RFID:
        rfid(core, state)
        return
    next_pc = addr + 4
    if kind == TRAP_MFSPR:
        value = read_spr(core, state, b)
        if value is None:
            core.deliver(VEC_PROGRAM, addr, srr1_bits=SRR1_PROGRAM_PRIV)
            return
        core.set_gpr(a, value)
    elif kind == TRAP_MTSPR:
        if not write_spr(core, state, b, core.gpr(a)):
            core.deliver(VEC_PROGRAM, addr, srr1_bits=SRR1_PROGRAM_PRIV)
            return
    elif kind == TRAP_MFTB:
        tb = core.timebase()
        core.set_gpr(a, tb >> 32 if b == SPR_TBU_R else tb)
    elif kind == TRAP_MFMSR:
        core.set_gpr(a, state.tr.msr)
    elif kind == TRAP_MTMSRD:
        value = core.gpr(a)
        if b:  # L=1: only EE and RI
            new = (msr & ~(MSR_EE | 2)) | (value & (MSR_EE | 2))
        else:
            new = (value & ~MSR_GUEST_FORBIDDEN) | (msr & MSR_HV)
        core.set_msr(new)
        core.pc = next_pc
        core.check_interrupts()
        return
    elif kind == TRAP_SLBMTE:
        state.tr.slbmte(core.gpr(a), core.gpr(b))
        core.flush_tlb()
    elif kind == TRAP_SLBIE:
        state.tr.slbie(core.gpr(a))
        core.flush_tlb()
    elif kind == TRAP_SLBIA:
        state.tr.slbia()
        core.flush_tlb()
    elif kind == TRAP_TLBIE:
        # Guests change page tables through H_ENTER/H_REMOVE; a tlbie from a guest is
        # privileged on the 970 under a hypervisor.
        core.deliver(VEC_PROGRAM, addr, srr1_bits=SRR1_PROGRAM_PRIV)
        return
    core.pc = next_pc


def rfid(core: Core, state: ArchState) -> None:
    """rfid: MSR from SRR1 (less what a guest may not set), PC from SRR0."""
    srr1 = state.srr1
    new = (srr1 & ~MSR_GUEST_FORBIDDEN) | (state.tr.msr & MSR_HV)
    core.set_msr(new)
    core.pc = state.srr0 & ~3
    core.on_rfid(core)
    core.check_interrupts()


def read_spr(core: Core, state: ArchState, spr: int) -> int | None:
    """mfspr of a model SPR; None when the context may not read it (privileged)."""
    if spr == SPR_SRR0:
        return state.srr0
    if spr == SPR_SRR1:
        return state.srr1
    if SPR_SPRG0 <= spr <= SPR_SPRG3:
        return state.sprg[spr - SPR_SPRG0]
    if spr == SPR_DAR:
        return state.dar
    if spr == SPR_DSISR:
        return state.dsisr
    if spr == SPR_DEC:
        return state.dec.read(core.timebase())
    if spr in (SPR_TBL_R, SPR_TBU_R):
        tb = core.timebase()
        return tb >> 32 if spr == SPR_TBU_R else tb
    if spr == SPR_PVR:
        return PVR_970FX
    if spr == SPR_PIR:
        return state.pir
    if spr not in GUEST_SPRS and not state.tr.msr & MSR_HV:
        return None
    if spr == SPR_HID4:
        return state.tr.hid4
    if spr == SPR_SDR1:
        return state.tr.sdr1
    if spr == SPR_HDEC:
        return 0
    return 0


def write_spr(core: Core, state: ArchState, spr: int, value: int) -> bool:
    """mtspr of a model SPR; False when the context may not write it (privileged)."""
    if spr == SPR_SRR0:
        state.srr0 = value
    elif spr == SPR_SRR1:
        state.srr1 = value
    elif SPR_SPRG0 <= spr <= SPR_SPRG3:
        state.sprg[spr - SPR_SPRG0] = value
    elif spr == SPR_DAR:
        state.dar = value
    elif spr == SPR_DSISR:
        state.dsisr = value & 0xFFFFFFFF
    elif spr == SPR_DEC:
        state.dec.write(value, core.timebase())
        deadline = core.dec_deadline_ns()
        if deadline is not None:
            core.limit_budget_to(deadline)
    elif not state.tr.msr & MSR_HV:
        return False  # HID4, SDR1, HDEC, PVR...: hypervisor resources
    elif spr == SPR_HID4:
        state.tr.set_hid4(value)
        core.flush_tlb()
    elif spr == SPR_SDR1:
        state.tr.sdr1 = value
        core.flush_tlb()
    return True
