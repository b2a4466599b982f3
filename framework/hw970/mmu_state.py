"""The ctypes mirrors of `_mmu.c`'s structures (`xen970_mmu`, `xen970_code`, `uc_tlb_entry`).

Kept apart from `tlb_fill.py` so that mypyc can compile that module: it cannot compile a
subclass of `ctypes.Structure`.
"""

from __future__ import annotations

import ctypes

from framework.hw970.mmu import SLB_ENTRIES

#: Pairs (effective page, machine page) one context may execute (`ALLOW_SLOTS` in _mmu.c).
ALLOW_SLOTS = 256
#: Extended opcodes and SPR numbers: both are 10-bit fields.
FIELD_VALUES = 1024


class CodeState(ctypes.Structure):
    """Mirror of `struct xen970_code` in _mmu.c."""

    _fields_ = [
        ("flags", ctypes.c_void_p),
        ("info", ctypes.c_void_p),
        ("epoch", ctypes.c_uint64),
        ("op19", ctypes.c_uint8 * FIELD_VALUES),
        ("op31", ctypes.c_uint8 * FIELD_VALUES),
        ("spr_native", ctypes.c_uint8 * FIELD_VALUES),
    ]


class MmuState(ctypes.Structure):
    """Mirror of `struct xen970_mmu` in _mmu.c."""

    _fields_ = [
        ("mem", ctypes.c_void_p),
        ("mem_size", ctypes.c_uint64),
        ("ram_low_end", ctypes.c_uint64),
        ("ram_high_start", ctypes.c_uint64),
        ("active", ctypes.c_uint64),
        ("msr", ctypes.c_uint64),
        ("rma_base", ctypes.c_uint64),
        ("rma_size", ctypes.c_uint64),
        ("sdr1", ctypes.c_uint64),
        ("until_page", ctypes.c_uint64),
        ("zero_page", ctypes.c_uint64),
        ("nslb", ctypes.c_uint64),
        ("slb_esid", ctypes.c_uint64 * SLB_ENTRIES),
        ("slb_rs", ctypes.c_uint64 * SLB_ENTRIES),
        ("fault_set", ctypes.c_uint64),
        ("fault_vector", ctypes.c_uint64),
        ("fault_dar", ctypes.c_uint64),
        ("fault_dsisr", ctypes.c_uint64),
        ("fault_srr1", ctypes.c_uint64),
        ("code", ctypes.c_void_p),
        ("step_page", ctypes.c_uint64),
        ("allow_ea", ctypes.c_uint64 * ALLOW_SLOTS),
        ("allow_paddr", ctypes.c_uint64 * ALLOW_SLOTS),
        ("allow_gen", ctypes.c_uint64 * ALLOW_SLOTS),
    ]


class TlbEntry(ctypes.Structure):
    """Unicorn's `struct uc_tlb_entry`."""

    _fields_ = [("paddr", ctypes.c_uint64), ("perms", ctypes.c_uint32)]
