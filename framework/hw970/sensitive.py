"""The 970's sensitive instructions: which words they are, and their effect on the model.

Unicorn 2.1.4 cannot keep MSR, SRR0/1, DEC, HID4, SDR1, the SPRGs or the SLB (a
`reg_write(MSR)` does not stick, `rfid` does not branch, DEC and TB never advance, a
native `mtmsrd` drops the core into 32-bit mode), so the instructions whose effect lives in
that state are intercepted wherever they execute: a code page is scanned for them when a
context first executes it (code_pages.py), each is hooked at its address only, and done
here on the context's `ArchState` (`emulate`).  The rest of the code runs at TCG speed.

`decode_sensitive` is the one definition of which words are sensitive; the C scan and the
trap hooks classify words with tables made from it (`classification_tables`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

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
    SPR_LR,
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
    from framework.hw970.arch_state import ArchState
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

#: Classes of an extended opcode (`classification_tables`, `SENS_*` in _mmu.c).
SENS_NO: Final = 0
SENS_YES: Final = 1
SENS_UNLESS_NATIVE_SPR: Final = 2

_XO_RFID: Final = 18  # primary opcode 19
_XO_MFSPR: Final = 339
_XO_MTSPR: Final = 467
#: A model SPR (SPRG0) and a native one (LR), to tell the mfspr/mtspr rule apart.
_PROBE_MODEL_SPR: Final = SPR_SPRG0
_PROBE_NATIVE_SPR: Final = SPR_LR


def decode_sensitive(word: int) -> Trap | None:
    """(kind, a, b) if `word` must be intercepted, else None.

    a/b are register numbers or the SPR number, depending on kind.  Only the primary and
    extended opcode (and for mfspr/mtspr the SPR) decide, not the other fields: Unicorn
    runs `rfid` with bits 11-14 set as `rfid`, so whatever it might run as one of these is
    intercepted.
    """
    op = word >> 26
    if op == 19:
        return (TRAP_RFID, 0, 0) if (word >> 1) & 0x3FF == _XO_RFID else None
    if op != 31:
        return None
    xo = (word >> 1) & 0x3FF
    rt = (word >> 21) & 31
    ra = (word >> 16) & 31
    rb = (word >> 11) & 31
    spr = ra | (rb << 5)
    if xo == _XO_MFSPR and spr not in NATIVE_SPRS:
        return (TRAP_MFSPR, rt, spr)
    if xo == _XO_MTSPR and spr not in NATIVE_SPRS:
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


def _spr_field(spr: int) -> int:
    """The mfspr/mtspr instruction bits that encode SPR `spr` (its halves swapped)."""
    return ((spr & 31) << 16) | ((spr >> 5) << 11)


def classification_tables() -> tuple[bytes, bytes, bytes]:
    """(primary opcode 19 by extended opcode, opcode 31 likewise, native SPRs), each 1024
    entries, for the C classification (`sensitive` in _mmu.c): made from
    `decode_sensitive` itself, and checked against it word for word by the tests."""
    op19 = bytes(
        SENS_YES if decode_sensitive((19 << 26) | (xo << 1)) is not None else SENS_NO
        for xo in range(1024)
    )
    classes = []
    for xo in range(1024):
        word = (31 << 26) | (xo << 1)
        model = decode_sensitive(word | _spr_field(_PROBE_MODEL_SPR)) is not None
        native = decode_sensitive(word | _spr_field(_PROBE_NATIVE_SPR)) is not None
        if model and native:
            classes.append(SENS_YES)
        elif model:
            classes.append(SENS_UNLESS_NATIVE_SPR)
        else:
            classes.append(SENS_NO)
    spr_native = bytes(1 if spr in NATIVE_SPRS else 0 for spr in range(1024))
    return op19, bytes(classes), spr_native


#: Words decoded so far (a trap hook sees the same few words again and again).
_decoded: dict[int, Trap | None] = {}
#: Beyond this many distinct words the memo starts afresh (a guest may write any word).
_DECODED_MAX: Final = 4096


def decode_word(word: int) -> Trap | None:
    """`decode_sensitive`, remembered."""
    trap = _decoded.get(word)
    if trap is None and word not in _decoded:
        if len(_decoded) >= _DECODED_MAX:
            _decoded.clear()
        trap = _decoded[word] = decode_sensitive(word)
    return trap


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
