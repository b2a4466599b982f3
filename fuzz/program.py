"""The fuzzing domain's program: how a batch of calls becomes straight-line PPC64 code.

Per call the code loads r3..r11 from the argument table (r31 points into it), executes a
real `sc 1` (so Xen's entry checks run, from the domain's own context and privilege),
steps r31 to the next entry, then runs the call's random instruction words, each followed
by restoring r13, the kernel area pointer the exception vectors store through.  The last
word branches to the tail, a native routine (the fuzzing kernel's driver) that starts the
next batch or, when none is armed, lets the domain block.  Where it all lives: `layout`.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

from framework.guest.runtime import AREA_BASE, AREA_SIZE, KERNEL_BASE
from framework.xen.public.sched import SCHEDOP_block
from framework.xen.public.xen import HYPERVISOR_sched_op, xen_mark

from .call import Call
from .layout import CODE_END, CODE_GPA, ENTRY_BYTES, TABLE_END, TABLE_GPA, TAIL_GPA
from .ppc import BLR, SC_1, addi, addis, branch, ld, load_address, ori

#: The register that walks the table (kept by natives and the upcall, never named by a
#: random word: see ppc.RESERVED_REGS).
TABLE_REG: Final = 31
_ENTRY: Final = struct.Struct(">9Q")

__all__ = ["TABLE_REG", "batch_image", "tail_code"]


def _area_words(vcpu: int) -> list[int]:
    """Words restoring r13 to VCPU `vcpu`'s kernel area (a real address)."""
    area = AREA_BASE + AREA_SIZE * vcpu
    words = [addis(13, 0, area >> 16)]
    if area & 0xFFFF:
        words.append(ori(13, 13, area & 0xFFFF))
    return words


def tail_code() -> list[int]:
    """The tail, at TAIL_GPA: the native stub (`blr`), then block and branch back."""
    words = [BLR]
    words += [addis(3, 0, -1), ori(3, 3, xen_mark(HYPERVISOR_sched_op) & 0xFFFF)]
    words += [addi(4, 0, SCHEDOP_block), SC_1]
    words.append(branch(TAIL_GPA + 4 * len(words), TAIL_GPA, link=True))
    return words


def batch_image(calls: Sequence[Call], vcpu: int) -> tuple[bytes, bytes]:
    """(code at CODE_GPA, table at TABLE_GPA) for `calls` run on VCPU `vcpu`."""
    restore = _area_words(vcpu)
    words = load_address(TABLE_REG, KERNEL_BASE | TABLE_GPA)
    table = bytearray()
    for call in calls:
        table += _ENTRY.pack(call.r3, *call.args)
        words += [ld(r, 8 * (r - 3), TABLE_REG) for r in range(3, 12)]
        words += [SC_1, addi(TABLE_REG, TABLE_REG, ENTRY_BYTES)]
        for word in call.words:
            words += [word, *restore]
    at = CODE_GPA + 4 * len(words)
    words.append(branch(at, TAIL_GPA, link=True))
    code = struct.pack(f">{len(words)}I", *words)
    if CODE_GPA + len(code) > CODE_END or TABLE_GPA + len(table) > TABLE_END:
        raise ValueError(f"a batch of {len(calls)} calls does not fit the program area")
    return code, bytes(table)
