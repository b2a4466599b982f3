"""Loading the project's C hooks and attaching them to a Unicorn instance.

The C files in this package are built as (trivial) CPython extension modules so that
setuptools compiles them; their hooks are plain C functions loaded with ctypes and
handed to `uc_hook_add` by address, so Unicorn calls them without entering Python.
"""

from __future__ import annotations

import ctypes
import importlib.util
from functools import cache

from unicorn import unicorn_const as uc_const
from unicorn.unicorn_py3 import unicorn as _ucmod


@cache
def library(module: str) -> ctypes.CDLL:
    """The shared object of `framework.hw970.<module>`, loaded once."""
    spec = importlib.util.find_spec(f"framework.hw970.{module}")
    if spec is None or spec.origin is None:
        raise ImportError(
            f"framework.hw970.{module} is not built; install the project with "
            "`pip install -e .` (it compiles the C files in framework/hw970/)"
        )
    return ctypes.CDLL(spec.origin)


def hook_add(
    uc: object, htype: int, fn: int, user_data: int, *, begin: int = 1, end: int = 0
) -> int:
    """Register the C function at address `fn` as a hook of type `htype`; its handle."""
    handle = ctypes.c_size_t()
    err = _ucmod.uclib.uc_hook_add(
        uc._uch,  # type: ignore[attr-defined]
        ctypes.byref(handle),
        htype,
        ctypes.c_void_p(fn),
        ctypes.c_void_p(user_data),
        ctypes.c_uint64(begin),
        ctypes.c_uint64(end),
    )
    if err != uc_const.UC_ERR_OK:
        raise RuntimeError(f"uc_hook_add(type {htype}) failed: {_ucmod.uclib.uc_strerror(err)}")
    return handle.value


def function_address(module: str, name: str) -> int:
    """Address of the C function `name` in `framework.hw970.<module>`."""
    addr = ctypes.cast(getattr(library(module), name), ctypes.c_void_p).value
    assert addr is not None
    return addr
