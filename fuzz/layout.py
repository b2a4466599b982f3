"""Where the hostile guest keeps its program in its own memory (guest-physical addresses).

The region lies in the fuzzing domain's RMA above dom0's toolstack buffers (0x100000 plus
4 MiB and their descriptors) and below the guest kernel's page pool (0x800000), so dom0 can
be the fuzzing domain as well as a domU.  The kernel reaches it at KERNEL_BASE | gpa.
"""

from __future__ import annotations

from typing import Final

#: The tail: a native stub, then `sched_op(SCHEDOP_block)` and a branch back to the stub.
TAIL_GPA: Final = 0x520000
#: The batch's code.
CODE_GPA: Final = 0x521000
CODE_END: Final = 0x5A0000
#: The argument table: r3..r11 of each call, 9 doublewords.
TABLE_GPA: Final = 0x5A0000
TABLE_END: Final = 0x600000
ENTRY_BYTES: Final = 9 * 8
#: Each call's own memory for its structures and xencomm descriptors.
ARGS_GPA: Final = 0x600000
ARGS_END: Final = 0x800000
ARG_SLOT: Final = 2048
#: Calls per batch at most: one argument slot each.
MAX_BATCH: Final = (ARGS_END - ARGS_GPA) // ARG_SLOT

__all__ = [
    "ARGS_END",
    "ARGS_GPA",
    "ARG_SLOT",
    "CODE_END",
    "CODE_GPA",
    "ENTRY_BYTES",
    "MAX_BATCH",
    "TABLE_END",
    "TABLE_GPA",
    "TAIL_GPA",
]
