"""PAPR hypervisor calls of the 970 port (page table and TCE): tokens, return codes, flags.

The port took its page-table and IOMMU interface from PAPR (the pSeries hypervisor
architecture): r3 carries the token, H_* codes come back in r3.
"""

from __future__ import annotations

from typing import Final

H_REMOVE: Final = 0x04
H_ENTER: Final = 0x08
H_READ: Final = 0x0C
H_CLEAR_MOD: Final = 0x10
H_CLEAR_REF: Final = 0x14
H_PROTECT: Final = 0x18
H_GET_TCE: Final = 0x1C
H_PUT_TCE: Final = 0x20
H_SET_DABR: Final = 0x28
H_GET_TERM_CHAR: Final = 0x54
H_PUT_TERM_CHAR: Final = 0x58
PAPR_MAX_TOKEN: Final = 0x1D4
PAPR_NAMES: Final = {
    H_REMOVE: "H_REMOVE",
    H_ENTER: "H_ENTER",
    H_READ: "H_READ",
    H_CLEAR_MOD: "H_CLEAR_MOD",
    H_CLEAR_REF: "H_CLEAR_REF",
    H_PROTECT: "H_PROTECT",
    H_GET_TCE: "H_GET_TCE",
    H_PUT_TCE: "H_PUT_TCE",
    H_SET_DABR: "H_SET_DABR",
    H_GET_TERM_CHAR: "H_GET_TERM_CHAR",
    H_PUT_TERM_CHAR: "H_PUT_TERM_CHAR",
}
H_SUCCESS: Final = 0
H_HARDWARE: Final = -1
H_FUNCTION: Final = -2
H_PRIVILEGE: Final = -3
H_PARAMETER: Final = -4
H_PTEG_FULL: Final = -6
H_NOT_FOUND: Final = -7
# Flags in r4 (Xen's asm-powerpc/papr.h, Linux's hvcall.h): bit n counted from the MSB.
H_EXACT: Final = 1 << (63 - 24)  # use exactly the PTE index given
H_R_XLATE: Final = 1 << (63 - 25)  # include a valid logical page number
H_READ_4: Final = 1 << (63 - 26)  # return 4 PTEs
H_AVPN: Final = 1 << (63 - 32)  # an abbreviated virtual page number to check
H_ANDCOND: Final = 1 << (63 - 33)
H_ICACHE_INVALIDATE: Final = 1 << (63 - 40)
H_ICACHE_SYNCHRONIZE: Final = 1 << (63 - 41)
H_ZERO_PAGE: Final = 1 << (63 - 48)
H_COPY_PAGE: Final = 1 << (63 - 49)
H_N: Final = 1 << (63 - 61)
H_PP1: Final = 1 << (63 - 62)
H_PP2: Final = 1 << (63 - 63)
