"""The few PowerPC instruction encodings the fuzzing program needs, and which random words
a hostile guest may execute.

The program is rebuilt for every batch of calls, so it is encoded here directly (keystone
assembles the same words; tests/fuzz/test_ppc.py checks each against it).
"""

from __future__ import annotations

from typing import Final

from framework.hw970.sensitive import TRAP_RFID, decode_sensitive

#: `sc 1`: enter the hypervisor (LEV = 1).
SC_1: Final = 0x44000022
#: `blr`: what a native routine's stub holds (the hook runs the routine, returns to LR).
BLR: Final = 0x4E800020


def _d_form(opcode: int, rt: int, ra: int, imm: int) -> int:
    return (opcode << 26) | (rt << 21) | (ra << 16) | (imm & 0xFFFF)


def addi(rt: int, ra: int, si: int) -> int:
    """addi rt, ra, si (li rt, si when ra = 0)."""
    return _d_form(14, rt, ra, si)


def addis(rt: int, ra: int, si: int) -> int:
    """addis rt, ra, si (lis rt, si when ra = 0)."""
    return _d_form(15, rt, ra, si)


def ori(ra: int, rs: int, ui: int) -> int:
    return _d_form(24, rs, ra, ui)


def oris(ra: int, rs: int, ui: int) -> int:
    return _d_form(25, rs, ra, ui)


def ld(rt: int, ds: int, ra: int) -> int:
    """ld rt, ds(ra) (DS form: ds a multiple of 4)."""
    if ds % 4:
        raise ValueError(f"ld displacement {ds} is not a multiple of 4")
    return _d_form(58, rt, ra, ds)


def sldi32(ra: int, rs: int) -> int:
    """sldi ra, rs, 32 (rldicr ra, rs, 32, 31)."""
    return (30 << 26) | (rs << 21) | (ra << 16) | (0 << 11) | (31 << 6) | (1 << 2) | (1 << 1)


def branch(at: int, target: int, link: bool = False) -> int:
    """b / bl from `at` to `target` (within +-32 MiB)."""
    disp = target - at
    if disp % 4 or not -(1 << 25) <= disp < 1 << 25:
        raise ValueError(f"branch from {at:#x} to {target:#x} is out of reach")
    return (18 << 26) | (disp & 0x03FFFFFC) | int(link)


def load_address(rt: int, address: int) -> list[int]:
    """Words putting `address` = (16-bit value << 48) | (32-bit value) into rt: a kernel
    linear-map address (KERNEL_BASE | gpa below 4 GiB) in four words."""
    top, low = address >> 32, address & 0xFFFFFFFF
    if top & 0xFFFF or address >> 64:
        raise ValueError(f"{address:#x} is not (x << 48) | (32-bit value)")
    hi16 = top >> 16
    return [
        addis(rt, 0, hi16 - 0x10000 if hi16 & 0x8000 else hi16),
        sldi32(rt, rt),
        oris(rt, rt, low >> 16),
        ori(rt, rt, low & 0xFFFF),
    ]


# -- random words -------------------------------------------------------------------------
#: Registers a random word may not write or use as its first two operands: r1 (the stack
#: the vectors save), r13 (the kernel area the vectors store through: a wrong one turns the
#: next interrupt into an exception loop) and r31 (the program's argument table pointer).
RESERVED_REGS: Final = frozenset({1, 13, 31})
#: Control flow: b, bc, and XL-form bclr, bcctr, rfid, hrfid, rfi (the program must stay on
#: its straight line to reach the next call).
_BRANCH_OPCODES: Final = frozenset({16, 18})
_BRANCH_XL: Final = frozenset({16, 18, 50, 274, 528})
#: Words writing many registers (lmw, lswi, lswx): they would reach the reserved ones.
_MULTIPLE: Final = (46, frozenset({533, 597}))
#: What the emulated 970 does not model yet: FP, VMX and VSX unavailable, alignment and
#: facility interrupts crash the domain ("unexpected emulator interrupt N") instead of
#: taking the architected vector. Left out so that a campaign measures Xen; `--all-words`
#: keeps them (the words below were found by probing every opcode and extended opcode).
UNMODELLED_OPCODES: Final = frozenset({4, 48, 49, 50, 51, 52, 53, 54, 55, 57, 59, 60, 61, 63})
UNMODELLED_X31: Final = frozenset(
    {6, 7, 12, 38, 39, 71, 76, 103, 135, 140, 167, 179, 199, 231, 268, 269, 301, 332}
    | {359, 396, 397, 429, 435, 487, 524, 535, 567, 582, 588, 599, 614, 631, 652, 663}
    | {695, 710, 716, 727, 742, 759, 780, 781, 782, 791, 812, 813, 814, 844, 846, 855}
    | {876, 878, 887, 908, 909, 919, 940, 941, 972, 983, 1004}
    # load-reserve / store-conditional of every width: misaligned, an alignment interrupt
    | {20, 52, 84, 116, 150, 182, 214, 276, 694, 726}
)


def word_allowed(word: int, *, all_words: bool = False) -> bool:
    """Whether the hostile guest executes `word` from its program.

    Sensitive instructions are in: code written at run time is scanned when it first runs
    (issue 14 item 6), so they act on the model's state or raise a program interrupt.
    Left out: rfid (a branch to wherever SRR0 points), branches, words naming a reserved
    register in their first two register fields, and (unless `all_words`) what the
    emulated core does not model yet."""
    trap = decode_sensitive(word)
    if trap is not None and trap[0] == TRAP_RFID:
        return False
    opcode = word >> 26
    xo = (word >> 1) & 0x3FF
    if opcode in _BRANCH_OPCODES or opcode == 19 and xo in _BRANCH_XL:
        return False
    if opcode == _MULTIPLE[0] or opcode == 31 and xo in _MULTIPLE[1]:
        return False
    if (word >> 21) & 31 in RESERVED_REGS or (word >> 16) & 31 in RESERVED_REGS:
        return False
    unmodelled = opcode in UNMODELLED_OPCODES or opcode == 31 and xo in UNMODELLED_X31
    return all_words or not unmodelled


__all__ = [
    "BLR",
    "RESERVED_REGS",
    "SC_1",
    "UNMODELLED_OPCODES",
    "UNMODELLED_X31",
    "addi",
    "addis",
    "branch",
    "ld",
    "load_address",
    "ori",
    "oris",
    "sldi32",
    "word_allowed",
]
