"""Loading the project's C code and binding it to the unicorn binding's library.

The C files in this package are built as CPython extension modules so that setuptools
compiles them.  `_mmu.c`'s TLB fill is a plain C function handed to `uc_hook_add` by
address; `_ucglue.c` calls libunicorn through the function pointers `bind_unicorn` gives
it, taken from the binding's own library so that one libunicorn serves the process.
"""

from __future__ import annotations

import ctypes
import importlib.util
from functools import cache

from unicorn import unicorn_const as uc_const
from unicorn.unicorn_py3 import unicorn as _ucmod

from framework.hw970 import _ucglue


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


def _ctl_write(control: int, nargs: int) -> int:
    """uc_ctl's code for writing `control` with `nargs` arguments (UC_CTL_WRITE)."""
    return uc_const.UC_CTL_IO_WRITE << 30 | nargs << 26 | control


@cache
def bind_unicorn() -> None:
    """Give `_ucglue` the binding's libunicorn functions and uc_ctl codes (once)."""
    lib = _ucmod.uclib

    def fn(name: str) -> int:
        addr = ctypes.cast(getattr(lib, name), ctypes.c_void_p).value
        if not addr:
            raise ImportError(f"the unicorn binding's library has no {name}")
        return addr

    _ucglue.bind(
        fn("uc_open"),
        fn("uc_close"),
        fn("uc_reg_read"),
        fn("uc_reg_write"),
        fn("uc_emu_start"),
        fn("uc_emu_stop"),
        fn("uc_ctl"),
        fn("uc_mem_map_ptr"),
        fn("uc_hook_add"),
        fn("uc_hook_del"),
        _ctl_write(uc_const.UC_CTL_TLB_FLUSH, 0),
        _ctl_write(uc_const.UC_CTL_TB_FLUSH, 0),
        _ctl_write(uc_const.UC_CTL_TLB_TYPE, 1),
        _ctl_write(uc_const.UC_CTL_TCG_BUFFER_SIZE, 1),
    )


def function_address(module: str, name: str) -> int:
    """Address of the C function `name` in `framework.hw970.<module>`."""
    addr = ctypes.cast(getattr(library(module), name), ctypes.c_void_p).value
    assert addr is not None
    return addr
