"""Code pages: sensitive instructions trap wherever the code came from.

The sensitive instructions (sensitive.py) must never run natively, whether they are in a
kernel image the toolstack loaded, in code a guest wrote at run time, or in a page that
was rewritten after it ran.  So the check is tied to execution, not to loading: a page is
scanned when a context first executes it, as a paravirtual kernel's patch sites would be.

How, without a hook on every block (the TLB fill, `_mmu.c`, does the watching):
- only an instruction fetch maps a page executable, and only once the page is *admitted*
  (scanned, `CODE_EXEC` in `MachineMemory.code_flags`) and the context has its trap hooks
  at that effective page: any other fetch stops emulation with `VEC_CODE_SCAN`, and
  `CoreBus.admit_code` scans the page (in C), hooks its sensitive words at that address in
  that context's Unicorn, and lets the context execute the pair (effective page, machine
  page) in the page's current generation;
- an admitted page is never mapped writable: a store into one stops before it is done
  (`VEC_CODE_WRITE`), the core releases the page (a new generation) and runs the store
  again; a host write into one releases it too (`MachineMemory`); either way every context
  forgets the code translated from it and its TLB (`CoreBus.code_released`), so nothing
  runs from it before it is scanned again.  A store into the very page it sits in could
  then never run (its fetch admits the page, its write releases it): the core steps that
  one instruction with the page both executable and writable, then forgets it all;
- before a page is admitted, a W mapping of it may still sit in some TLB; the W stamp
  (the TLB epoch of its last W grant) says whether a broadcast invalidation must drop it.

Why not leave code writes to Unicorn: its translation cache only notices stores made by
its own instance (each context has one), never another context's or the host's; and a
fill that calls `uc_emu_stop` lets the store finish but leaves the PC on it (tried: a
`stwcx.` would then run twice), hence a refused store that runs again.  A side effect:
data mappings are never executable, which keeps Unicorn's stores on their fast path (it
sent every store to a page mapped executable through its code-invalidation check).

Traps are per context and per translation: the same effective address may hold other
code in another address space (another domain, real mode vs relocated), so each trap hook
asks what the running context has there (`xen970_code_trap_word`) and calls the Core only
for a sensitive word.  Real-mode execution (exception vectors, MSR[IR]=0) is admitted the
same way: its pairs are (effective address, RMA page).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from functools import cache
from typing import Any, Final

from framework.hw970 import cext
from framework.hw970.memory import CODE_GEN_ONE, CODE_WSTAMP, PAGE_SHIFT, MachineMemory
from framework.hw970.mmu_state import CodeState
from framework.hw970.sensitive import classification_tables

_MODULE: Final = "_mmu"
#: Not interrupts: the faults a fetch from a page not admitted, and a store into an
#: admitted page, record (`_mmu.c`).
VEC_CODE_SCAN: Final = 0x10000
VEC_CODE_WRITE: Final = 0x10001
#: Sensitive words in one page beyond which a context hooks the whole page at once rather
#: than each word (a hook per word would slow Unicorn's translation for that context).
TRAP_HOOKS_PER_PAGE: Final = 32
_WORDS_PER_PAGE: Final = 1024


@cache
def _tables() -> tuple[bytes, bytes, bytes]:
    """`classification_tables`, made once (3072 decodes)."""
    return classification_tables()


@cache
def _scan_function() -> Any:
    fn = cext.library(_MODULE).xen970_code_scan
    fn.restype = ctypes.c_int
    fn.argtypes = [
        ctypes.POINTER(CodeState),
        ctypes.c_void_p,
        ctypes.c_uint64,
        ctypes.POINTER(ctypes.c_uint16),
    ]
    return fn


@cache
def _sensitive_function() -> Any:
    fn = cext.library(_MODULE).xen970_code_sensitive
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.POINTER(CodeState), ctypes.c_uint32]
    return fn


@cache
def trap_word_address() -> int:
    """Address of the C function trap hooks read a context's code with."""
    return cext.function_address(_MODULE, "xen970_code_trap_word")


class CodeMap:
    """What the cores of one machine know about the code in its memory (C `xen970_code`).

    `released` (the CoreBus's) runs whenever a host write releases admitted pages.
    """

    def __init__(self, memory: MachineMemory, released: Callable[[], None]) -> None:
        self.memory = memory
        self._released = released
        memory.watch_code(self)
        st = CodeState()
        st.flags = memory.code_flags_ptr
        st.info = memory.code_info_ptr
        op19, op31, spr_native = _tables()
        ctypes.memmove(st.op19, op19, len(op19))
        ctypes.memmove(st.op31, op31, len(op31))
        ctypes.memmove(st.spr_native, spr_native, len(spr_native))
        self.st = st
        self._offsets = (ctypes.c_uint16 * _WORDS_PER_PAGE)()
        #: Sensitive word offsets by machine page, with the generation they were read in.
        self._sites: dict[int, tuple[int, tuple[int, ...]]] = {}

    def pages_released(self) -> None:
        """A host write released admitted pages (MachineMemory calls this)."""
        self._released()

    def set_epoch(self, epoch: int) -> None:
        """The broadcast TLB invalidations so far (W stamps are compared with it)."""
        self.st.epoch = epoch

    def writable_mapping_may_exist(self, page: int) -> bool:
        """Whether a core was let write page number `page` since the last broadcast TLB
        invalidation (its W stamp is this epoch's; a stamp may only err towards yes)."""
        stamp = self.memory.code_info[page] & CODE_WSTAMP
        return stamp == (self.st.epoch + 1) & CODE_WSTAMP

    def sites(self, page: int) -> tuple[int, ...]:
        """Byte offsets of the sensitive words of page number `page` as it is now."""
        gen = self.memory.code_info[page] // CODE_GEN_ONE
        known = self._sites.get(page)
        if known is not None and known[0] == gen:
            return known[1]
        n = _scan_function()(
            ctypes.byref(self.st), self.memory.ptr, page << PAGE_SHIFT, self._offsets
        )
        offsets = tuple(self._offsets[:n])
        self._sites[page] = (gen, offsets)
        return offsets

    def is_sensitive(self, word: int) -> bool:
        """The C classification of one word (what the scan and the trap hooks use)."""
        return bool(_sensitive_function()(ctypes.byref(self.st), word & 0xFFFFFFFF))
