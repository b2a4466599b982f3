"""Loads the C block hook (`_icount.c`) that counts instructions and ends slices.

The hook is attached to a Unicorn instance by function pointer, so no Python runs per
block: that keeps emulation at native TCG speed while time stays exact.
"""

from __future__ import annotations

import ctypes
import importlib.util
from functools import lru_cache

from unicorn import unicorn_const as uc_const
from unicorn.unicorn_py3 import unicorn as _ucmod


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


@lru_cache(maxsize=1)
def _library() -> ctypes.CDLL:
    spec = importlib.util.find_spec("framework.hw970._icount")
    if spec is None or spec.origin is None:
        raise ImportError(
            "framework.hw970._icount is not built; install the project with "
            "`pip install -e .` (it compiles framework/hw970/_icount.c)"
        )
    return ctypes.CDLL(spec.origin)


def attach(uc: object) -> ICount:
    """Attach the counting block hook to a Unicorn instance; returns its live counters."""
    lib = _library()
    st = ICount()
    st.stop = ctypes.cast(_ucmod.uclib.uc_emu_stop, ctypes.c_void_p).value
    st.budget = 0
    handle = ctypes.c_size_t()
    fn = ctypes.cast(lib.xen970_icount_block, ctypes.c_void_p)
    err = _ucmod.uclib.uc_hook_add(
        uc._uch,  # type: ignore[attr-defined]
        ctypes.byref(handle),
        uc_const.UC_HOOK_BLOCK,
        fn,
        ctypes.cast(ctypes.pointer(st), ctypes.c_void_p),
        ctypes.c_uint64(1),
        ctypes.c_uint64(0),
    )
    if err != uc_const.UC_ERR_OK:
        raise RuntimeError(f"uc_hook_add(UC_HOOK_BLOCK) for the instruction counter failed: {err}")
    return st
