"""Loads the C block hook (`_icount.c`) that counts instructions and ends slices.

The hook is attached to a Unicorn instance by function pointer, so no Python runs per
block: that keeps emulation at native TCG speed while time stays exact.
"""

from __future__ import annotations

import ctypes

from unicorn import unicorn_const as uc_const
from unicorn.unicorn_py3 import unicorn as _ucmod

from framework.hw970 import cext


class ICount(ctypes.Structure):
    """Mirror of `struct xen970_icount` in _icount.c."""

    _fields_ = [
        ("executed", ctypes.c_uint64),
        ("budget", ctypes.c_uint64),
        ("last_block", ctypes.c_uint64),
        ("last_size", ctypes.c_uint64),
        ("stop", ctypes.c_void_p),
        ("stopped", ctypes.c_uint64),
    ]


def attach(uc: object) -> ICount:
    """Attach the counting block hook to a Unicorn instance; returns its live counters."""
    st = ICount()
    st.stop = ctypes.cast(_ucmod.uclib.uc_emu_stop, ctypes.c_void_p).value
    st.budget = 0
    fn = cext.function_address("_icount", "xen970_icount_block")
    cext.hook_add(uc, uc_const.UC_HOOK_BLOCK, fn, ctypes.addressof(st))
    return st
