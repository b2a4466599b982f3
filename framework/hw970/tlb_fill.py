"""Loads the C TLB-fill hook (`_mmu.c`) and keeps it in step with the running context.

`Mmu` (mmu.py) stays the reference translation and serves host-side lookups; the core's
emulated TLB misses are served by the C copy, which must see the same MSR, RMA, SDR1 and
SLB as the context the core runs.  `Core` calls `load` on every context switch and the
narrower setters when the running context changes one of them.  The fill also decides
which pages the context may execute or write (code_pages.py).
"""

from __future__ import annotations

import ctypes
from functools import cache
from typing import Any, Final

from unicorn import unicorn_const as uc_const

from framework.hw970 import _ucglue, cext
from framework.hw970.code_pages import CodeMap, trap_word_address
from framework.hw970.memory import MachineMemory
from framework.hw970.mmu import Fault, TranslationState
from framework.hw970.mmu_state import MmuState, TlbEntry

_MODULE: Final = "_mmu"


@cache
def _fill_address() -> int:
    """Address of the C TLB-fill hook (looked up once: each context attaches it)."""
    return cext.function_address(_MODULE, "xen970_mmu_fill")


@cache
def _allow_function() -> Any:
    fn = cext.library(_MODULE).xen970_code_allow
    fn.restype = None
    fn.argtypes = [ctypes.POINTER(MmuState), ctypes.c_uint64, ctypes.c_uint64]
    return fn


@cache
def _translate_function() -> Any:
    """The C translation function, typed once."""
    fn = cext.library(_MODULE).xen970_mmu_translate
    fn.restype = ctypes.c_bool
    fn.argtypes = [
        ctypes.POINTER(MmuState),
        ctypes.c_uint64,
        ctypes.c_int,
        ctypes.POINTER(TlbEntry),
    ]
    return fn


class TlbFill:
    """The C translation state of one core."""

    def __init__(
        self, memory: MachineMemory, code: CodeMap, *, until_page: int, zero_page: int
    ) -> None:
        st = MmuState()
        st.mem = memory.ptr
        st.mem_size = memory.size
        st.ram_low_end = memory.low_end
        st.ram_high_start = memory.high_start
        st.until_page = until_page
        st.zero_page = zero_page
        st.code = ctypes.addressof(code.st)
        self.st = st
        #: The machine's code map (kept alive with this state, which points at it).
        self.code = code
        #: The inputs loaded last (rma_base, rma_size, sdr1, SLB entries).
        self._key: tuple[int, int, int, tuple[tuple[int, int], ...]] | None = None

    def attach(self, glue: _ucglue.Glue) -> None:
        """Serve the TLB misses of `glue`'s engine from this state, and let its trap hooks
        read the context's code through it."""
        state = ctypes.addressof(self.st)
        glue.hook_add(uc_const.UC_HOOK_TLB_FILL, _fill_address(), state, 1, 0)
        glue.set_trap_check(trap_word_address(), state)

    # -- keeping in step ---------------------------------------------------------------
    def sync(self, tr: TranslationState) -> bool:
        """Take `tr`'s inputs of translation; True when they differ from those loaded
        (then the emulated TLB holds translations made from other inputs)."""
        self.st.msr = tr.msr
        if _inputs(tr) == self._key:
            return False
        self.load(tr)
        return True

    def load(self, tr: TranslationState) -> None:
        """Take every input of translation from `tr`."""
        self._key = _inputs(tr)
        st = self.st
        st.msr = tr.msr
        st.rma_base = tr.rma_base
        st.rma_size = tr.rma_size
        st.sdr1 = tr.sdr1
        esids, rss = st.slb_esid, st.slb_rs
        n = 0
        for esid, rs in tr.slb.items():
            esids[n] = esid
            rss[n] = rs
            n += 1
        st.nslb = n
        st.active = 1

    # -- code pages (code_pages.py) ------------------------------------------------------
    def allow(self, ea_page: int, paddr: int) -> None:
        """Let this context execute effective page `ea_page` as machine page `paddr`, as
        that page is now (its sensitive words are hooked at `ea_page`)."""
        _allow_function()(ctypes.byref(self.st), ea_page, paddr)

    # -- faults (Core clears `st.fault_set` before each emulation run) -----------------
    def take_fault(self) -> Fault | None:
        """The fault recorded since `st.fault_set` was last cleared, if any."""
        st = self.st
        if not st.fault_set:
            return None
        st.fault_set = 0
        return Fault(st.fault_vector, st.fault_dar, st.fault_dsisr, st.fault_srr1)

    # -- direct use (tests, diagnostics) -----------------------------------------------
    def translate(self, ea: int, access: int) -> tuple[int, int] | Fault:
        """One translation with the loaded state, as `Mmu.translate` returns it."""
        entry = TlbEntry()
        self.st.fault_set = 0
        if _translate_function()(ctypes.byref(self.st), ea, access, ctypes.byref(entry)):
            return entry.paddr, entry.perms
        fault = self.take_fault()
        assert fault is not None
        return fault


def _inputs(tr: TranslationState) -> tuple[int, int, int, tuple[tuple[int, int], ...]]:
    """What a translation depends on besides the MSR: the RMA, SDR1 and the SLB."""
    return (tr.rma_base, tr.rma_size, tr.sdr1, tuple(tr.slb.items()))
