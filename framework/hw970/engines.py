"""Where the cores' Unicorn engines come from, and what the cores of one machine share.

`HwContext` is one execution context's own Unicorn instance (registers, emulated TLB,
hooks); `CoreBus` hands out engines opened ahead on a C thread, carries the broadcasts
(tlbie, code writes) that must reach every context, running or not, and admits the code
pages contexts execute (code_pages.py).
"""

from __future__ import annotations

import atexit
import os
import weakref
from typing import TYPE_CHECKING, Any, Final

from unicorn import unicorn_const as uc_const

from framework.hw970 import _ucglue, cext
from framework.hw970.code_pages import TRAP_HOOKS_PER_PAGE, CodeMap
from framework.hw970.memory import CODE_EXEC, PAGE_SHIFT, PAGE_SIZE, MachineMemory
from framework.hw970.tlb_fill import TlbFill

if TYPE_CHECKING:
    from framework.hw970.core import Core

UNTIL_NEVER: Final = 0xFFFFFFFFFFFFFFFC
_UNTIL_PAGE: Final = UNTIL_NEVER & ~0xFFF
#: Machine page kept zero by the machine (Xen's area): what the `until` page maps to.
ZERO_PAGE: Final = 0
#: Translated-code buffer per context (Unicorn flushes its code cache when it fills).
#: Below one 2 MiB huge page on purpose: QEMU madvises the buffer MADV_HUGEPAGE, and with
#: THP defrag=madvise a first touch could stall in direct compaction (~0.1 s per run,
#: seen as a bimodal timers benchmark).  A guest context's code fits many times over.
TCG_BUFFER_BYTES: Final = 1 << 20
#: Engines a machine keeps opened ahead of need (see `_ucglue.EnginePool`): enough to
#: cover a burst of new contexts, such as the toolstack building a 4-VCPU guest.
SPARE_ENGINES: Final = 4

#: Engine pools not yet collected: closed at exit, so that no engine thread is still
#: opening an engine while the interpreter tears down.
_live_pools: weakref.WeakSet[_ucglue.EnginePool] = weakref.WeakSet()


def _close_live_pools() -> None:
    for pool in list(_live_pools):
        pool.close()


def _pools_after_fork() -> None:
    # A forked child has no engine thread: its pools open engines on demand.
    for pool in list(_live_pools):
        pool.after_fork()


atexit.register(_close_live_pools)
os.register_at_fork(after_in_child=_pools_after_fork)


class CoreBus:
    """What the cores of one machine share: the broadcasts that reach every context, and
    what they know about the code in memory.

    A tlbie or a write to code must reach contexts that are not running too; they carry
    the epoch they last caught up with and catch up when a core loads them.
    """

    def __init__(self, memory: MachineMemory) -> None:
        self.cores: list[Core] = []
        self.tlb_epoch = 0
        self.code_epoch = 0
        self.memory = memory
        #: Which pages hold admitted code, and their sensitive words.
        self.code = CodeMap(memory, self.code_released)
        self._engines: _ucglue.EnginePool | None = None

    def engine(self, memory: MachineMemory) -> int:
        """A fresh Unicorn engine with `memory` mapped (the caller owns it).

        Engines are opened ahead on a C thread (`_ucglue.EnginePool`), so a new context
        costs the simulation a pointer instead of ~0.5 ms of engine set-up.
        """
        if memory is not self.memory:
            raise ValueError("the cores of one bus must share one machine memory")
        pool = self._engines
        if pool is None:
            cext.bind_unicorn()
            pool = self._engines = _ucglue.EnginePool(
                uc_const.UC_ARCH_PPC,
                uc_const.UC_MODE_PPC64 | uc_const.UC_MODE_BIG_ENDIAN,
                TCG_BUFFER_BYTES,
                uc_const.UC_TLB_VIRTUAL,
                uc_const.UC_PROT_ALL,
                memory.ptr,
                memory.size,
                SPARE_ENGINES,
            )
            _live_pools.add(pool)
        return pool.take()

    def close(self) -> None:
        """Stop opening engines ahead and close those nobody took."""
        if self._engines is not None:
            self._engines.close()

    def tlbie(self) -> None:
        """A broadcast invalidation: every context drops its emulated TLB, the running
        ones now and the others when next loaded."""
        self.tlb_epoch += 1
        self.code.set_epoch(self.tlb_epoch)
        for core in self.cores:
            if core.state is not None:
                core._glue.tlb_flush()
                core.hw.tlb_epoch = self.tlb_epoch

    def flush_code(self) -> None:
        """Every context forgets its translated code (the host wrote guest code)."""
        self.code_epoch += 1
        for core in self.cores:
            core._sc_lev.clear()
            if core.state is not None:
                core._glue.tb_flush()
                core.hw.code_epoch = self.code_epoch

    def code_released(self) -> None:
        """Admitted code pages were written (by a core or the host): no context may run
        what it translated from them, nor reach them through its TLB, before they are
        scanned again."""
        self.flush_code()
        self.tlbie()

    def admit_code(self, hw: HwContext, ea: int, paddr: int) -> None:
        """Let context `hw` execute the page at `ea` (machine page `paddr`): scan the page
        if it is not admitted code yet, hook its sensitive words at `ea`'s page in `hw`."""
        page = paddr >> PAGE_SHIFT
        memory = self.memory
        if not memory.code_flags[page] & CODE_EXEC:
            if self.code.writable_mapping_may_exist(page):
                self.tlbie()  # no TLB may still let a core write it once admitted
            memory.admit_code(page)
        ea_page = ea & ~(PAGE_SIZE - 1)
        hw.hook_traps(ea_page, self.code.sites(page))
        hw.tlb.allow(ea_page, paddr)


class HwContext:
    """One execution context's own Unicorn instance: its registers and emulated TLB.

    Why one per context rather than one per core: a switch is then a pointer change,
    with no 80 KB uc_context copy in and out and no TLB flush and refill (a third of a
    timer tick's cost when contexts shared their core's instance).
    """

    def __init__(self, memory: MachineMemory, core: Core) -> None:
        # The engine (machine memory mapped, a TCG_BUFFER_BYTES code buffer, virtual TLB
        # mode) is owned by the glue, which holds the hot Unicorn calls, the hook
        # trampolines and the instruction counter in C (`_ucglue.c`); an exception a
        # hook handler raises stops emulation and is raised again by `emu_start`.
        self.glue = _ucglue.Glue(
            core.bus.engine(memory), core._on_intr, core._on_site, core._on_trap
        )
        #: Translation on TLB misses, in C, mirroring the context's TranslationState.
        self.tlb = TlbFill(memory, core.bus.code, until_page=_UNTIL_PAGE, zero_page=ZERO_PAGE)
        self.tlb.attach(self.glue)
        #: The core whose handlers the hooks call.
        self.core = core
        glue, address = self.glue, self.glue.address
        glue.hook_add(uc_const.UC_HOOK_INTR, _ucglue.HOOK_INTR, address, 1, 0)
        glue.hook_add(uc_const.UC_HOOK_BLOCK, _ucglue.HOOK_BLOCK, address, 1, 0)
        self.hooked: set[int] = set()
        #: len(natives) when they were last hooked (they only grow).
        self.sites_seen = -1
        #: Trap hooks by effective page: one per sensitive word's address, or (None) one
        #: for the whole page once it has more than TRAP_HOOKS_PER_PAGE.
        self.trap_hooks: dict[int, dict[int, int] | None] = {}
        #: MSR bits last written into Unicorn (-1: none yet).
        self.uc_msr = -1
        #: The bus epochs this instance has caught up with: a new engine holds no
        #: translation made before now.
        self.tlb_epoch = core.bus.tlb_epoch
        self.code_epoch = core.bus.code_epoch
        # Nothing is translated yet, so hooking needs no flush (a flush of an empty
        # engine still resets its 512 KB code hash table).
        self.hook_sites(core.natives, flush=False)

    def hook_sites(self, natives: dict[int, Any], flush: bool = True) -> None:
        """Hook every native routine's address not hooked yet; flush stale translations
        (code translated before a hook was added would not call it)."""
        new = [a for a in natives if a not in self.hooked]
        glue = self.glue
        for addr in new:
            glue.hook_add(uc_const.UC_HOOK_CODE, _ucglue.HOOK_CODE, glue.address, addr, addr)
            self.hooked.add(addr)
        self.sites_seen = len(natives)
        if new and flush:
            glue.tb_flush()

    def hook_traps(self, ea_page: int, offsets: tuple[int, ...]) -> None:
        """Trap hooks at `ea_page` + each offset (sensitive words of the code this
        context is about to execute there), each address hooked once.

        No flush is needed: nothing of that code is translated in this context yet (it
        could not be fetched before it was admitted).
        """
        if not offsets:
            return
        hooks = self.trap_hooks.get(ea_page, {})
        if hooks is None:
            return  # the whole page is hooked
        new = [off for off in offsets if off not in hooks]
        if not new:
            return
        glue = self.glue
        if len(hooks) + len(new) > TRAP_HOOKS_PER_PAGE:
            # One hook for the page (its trampoline skips ordinary words in C), never
            # two on one address: each would emulate the instruction.
            for handle in hooks.values():
                glue.hook_del(handle)
            glue.hook_add(
                uc_const.UC_HOOK_CODE, _ucglue.HOOK_TRAP, glue.address, ea_page, ea_page + 0xFFC
            )
            self.trap_hooks[ea_page] = None
            return
        for off in new:
            addr = ea_page + off
            hooks[off] = glue.hook_add(
                uc_const.UC_HOOK_CODE, _ucglue.HOOK_TRAP, glue.address, addr, addr
            )
        self.trap_hooks[ea_page] = hooks
