"""The ctypes mirrors of `_mmu.c`'s structures (`struct xen970_mmu`, `uc_tlb_entry`).

Kept apart from `tlb_fill.py` so that mypyc can compile that module: it cannot compile a
subclass of `ctypes.Structure`.
"""

from __future__ import annotations

import ctypes

from framework.hw970.mmu import SLB_ENTRIES


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
    ]


class TlbEntry(ctypes.Structure):
    """Unicorn's `struct uc_tlb_entry`."""

    _fields_ = [("paddr", ctypes.c_uint64), ("perms", ctypes.c_uint32)]
