"""One physical PowerPC 970 core: a Unicorn PPC64 instance plus the state Unicorn lacks.

Unicorn 2.1.4 runs the instructions; this class owns MSR, SRR0/1, DAR, DSISR, SPRGs,
DEC, HID4, SDR1 and the SLB, delivers every interrupt through the architected path,
and intercepts the instructions whose effect lives in that state (rfid, mtmsrd, mfmsr,
mfspr/mtspr of model SPRs, mftb, slb*/tlbie).  Those are found by scanning the loaded
kernel image and hooked by address only, so the rest of the code runs at TCG speed.

Why not Unicorn's `UC_CPU_PPC64_970*` models: in 2.1.4 an explicit PPC64 model index is
not offset past the PPC32 table, so it selects a 32-bit CPU on which ld/std/mtmsrd/rfid
are illegal (unicorn issue #1779).  The default 64-bit core executes the 970's
instruction set; the 970-specific behaviour (PVR, HID4/RMA, HDEC, 32-bit DEC) is modelled
here.
"""

from __future__ import annotations

import atexit
import os
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from unicorn import UcError
from unicorn import unicorn_const as uc_const
from unicorn.ppc_const import (
    UC_PPC_REG_0,
    UC_PPC_REG_LR,
    UC_PPC_REG_MSR,
    UC_PPC_REG_PC,
)

from framework.errors import GuestCrash, GuestFault, SimulationError, fault_reason
from framework.hw970 import _ucglue, cext
from framework.hw970.memory import MachineMemory
from framework.hw970.mmu import Fault, Mmu, TranslationState
from framework.hw970.regs import (
    GUEST_SPRS,
    MSR_EE,
    MSR_EXC_KEEP,
    MSR_GUEST_FORBIDDEN,
    MSR_HV,
    MSR_PR,
    MSR_SF,
    MSR_UC_MIRROR,
    NATIVE_SPRS,
    PVR_970FX,
    SPR_DAR,
    SPR_DEC,
    SPR_DSISR,
    SPR_HDEC,
    SPR_HID4,
    SPR_PIR,
    SPR_PVR,
    SPR_SDR1,
    SPR_SPRG0,
    SPR_SPRG3,
    SPR_SRR0,
    SPR_SRR1,
    SPR_TBL_R,
    SPR_TBU_R,
    SRR1_PROGRAM_ILLEGAL,
    SRR1_PROGRAM_PRIV,
    SRR1_PROGRAM_TRAP,
    VEC_DECREMENTER,
    VEC_EXTERNAL,
    VEC_MACHINE_CHECK,
    VEC_PROGRAM,
    VEC_SYSCALL,
)
from framework.hw970.tlb_fill import TlbFill

UNTIL_NEVER: Final = 0xFFFFFFFFFFFFFFFC
_UNTIL_PAGE: Final = UNTIL_NEVER & ~0xFFF
#: Machine page kept zero by the machine (Xen's area): what the `until` page maps to.
ZERO_PAGE: Final = 0
_MASK64: Final = 0xFFFFFFFFFFFFFFFF
#: Translated-code buffer per context (Unicorn flushes its code cache when it fills).
#: Below one 2 MiB huge page on purpose: QEMU madvises the buffer MADV_HUGEPAGE, and with
#: THP defrag=madvise a first touch could stall in direct compaction (~0.1 s per run,
#: seen as a bimodal timers benchmark).  A guest context's code fits many times over.
TCG_BUFFER_BYTES: Final = 1 << 20
#: Engines a machine keeps opened ahead of need (see `_ucglue.EnginePool`): enough to
#: cover a burst of new contexts, such as the toolstack building a 4-VCPU guest.
SPARE_ENGINES: Final = 4

# Unicorn interrupt numbers (QEMU's POWERPC_EXCP_*) seen through UC_HOOK_INTR.
_INTR_PROGRAM: Final = 6
_INTR_SYSCALL: Final = 8
_INTR_HV_EMU: Final = 96  # illegal instruction on the default 64-bit core


# ---------------------------------------------------------------------------------------
# Sensitive instructions: decoded once from the kernel image.
# ---------------------------------------------------------------------------------------
TRAP_RFID: Final = 1
TRAP_MFSPR: Final = 2
TRAP_MTSPR: Final = 3
TRAP_MFMSR: Final = 4
TRAP_MTMSRD: Final = 5
TRAP_MFTB: Final = 6
TRAP_SLBMTE: Final = 7
TRAP_SLBIE: Final = 8
TRAP_SLBIA: Final = 9
TRAP_TLBIE: Final = 10
TRAP_NOP: Final = 11  # tlbsync, ptesync-like: no model effect


def decode_sensitive(word: int) -> tuple[int, int, int] | None:
    """(kind, a, b) if `word` must be intercepted, else None.

    a/b are register numbers or the SPR number, depending on kind.
    """
    if word == 0x4C000024:
        return (TRAP_RFID, 0, 0)
    if word >> 26 != 31:
        return None
    xo = (word >> 1) & 0x3FF
    rt = (word >> 21) & 31
    ra = (word >> 16) & 31
    rb = (word >> 11) & 31
    spr = ra | (rb << 5)
    if xo == 339 and spr not in NATIVE_SPRS:
        return (TRAP_MFSPR, rt, spr)
    if xo == 467 and spr not in NATIVE_SPRS:
        return (TRAP_MTSPR, rt, spr)
    if xo == 371:
        return (TRAP_MFTB, rt, spr)
    if xo == 83:
        return (TRAP_MFMSR, rt, 0)
    if xo in (178, 146):  # mtmsrd, mtmsr
        return (TRAP_MTMSRD, rt, ra & 1 if xo == 178 else 0)
    if xo == 402:
        return (TRAP_SLBMTE, rt, rb)
    if xo == 434:
        return (TRAP_SLBIE, rb, 0)
    if xo == 498:
        return (TRAP_SLBIA, 0, 0)
    if xo in (306, 274):
        return (TRAP_TLBIE, rb, 0)
    if xo == 566:
        return (TRAP_NOP, 0, 0)
    return None


def scan_sensitive(image: bytes, base: int) -> dict[int, tuple[int, int, int]]:
    """Every sensitive instruction in a big-endian code image loaded at `base`."""
    out: dict[int, tuple[int, int, int]] = {}
    for off in range(0, len(image) - 3, 4):
        word = int.from_bytes(image[off : off + 4], "big")
        d = decode_sensitive(word)
        if d is not None:
            out[base + off] = d
    return out


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
    """What the cores of one machine share: the broadcasts that reach every context.

    A tlbie or a host write to code must reach contexts that are not running too; they
    carry the epoch they last caught up with and catch up when a core loads them.
    """

    def __init__(self) -> None:
        self.cores: list[Core] = []
        self.tlb_epoch = 0
        self.code_epoch = 0
        self._engines: _ucglue.EnginePool | None = None
        self._engines_memory: MachineMemory | None = None

    def engine(self, memory: MachineMemory) -> int:
        """A fresh Unicorn engine with `memory` mapped (the caller owns it).

        Engines are opened ahead on a C thread (`_ucglue.EnginePool`), so a new context
        costs the simulation a pointer instead of ~0.5 ms of engine set-up.
        """
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
            self._engines_memory = memory
            _live_pools.add(pool)
        elif memory is not self._engines_memory:
            raise ValueError("the cores of one bus must share one machine memory")
        return pool.take()

    def close(self) -> None:
        """Stop opening engines ahead and close those nobody took."""
        if self._engines is not None:
            self._engines.close()

    def tlbie(self) -> None:
        """A broadcast invalidation: every context drops its emulated TLB, the running
        ones now and the others when next loaded."""
        self.tlb_epoch += 1
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
        self.glue = _ucglue.Glue(core.bus.engine(memory), core._on_intr, core._on_site)
        #: Translation on TLB misses, in C, mirroring the context's TranslationState.
        self.tlb = TlbFill(memory, until_page=_UNTIL_PAGE, zero_page=ZERO_PAGE)
        self.tlb.attach(self.glue)
        #: The core whose handlers the hooks call.
        self.core = core
        glue, address = self.glue, self.glue.address
        glue.hook_add(uc_const.UC_HOOK_INTR, _ucglue.HOOK_INTR, address, 1, 0)
        glue.hook_add(uc_const.UC_HOOK_BLOCK, _ucglue.HOOK_BLOCK, address, 1, 0)
        self.hooked: set[int] = set()
        #: len(traps) + len(natives) when the sites were last hooked (they only grow).
        self.sites_seen = -1
        #: MSR bits last written into Unicorn (-1: none yet).
        self.uc_msr = -1
        #: The bus epochs this instance has caught up with: a new engine holds no
        #: translation made before now.
        self.tlb_epoch = core.bus.tlb_epoch
        self.code_epoch = core.bus.code_epoch
        # Nothing is translated yet, so hooking needs no flush (a flush of an empty
        # engine still resets its 512 KB code hash table).
        self.hook_sites(core.traps, core.natives, flush=False)

    def hook_sites(
        self,
        traps: dict[int, tuple[int, int, int]],
        natives: dict[int, Any],
        flush: bool = True,
    ) -> None:
        """Hook every trap/native address not hooked yet; flush stale translations
        (code translated before a hook was added would not call it)."""
        new = [a for a in list(traps) + list(natives) if a not in self.hooked]
        glue = self.glue
        for addr in new:
            glue.hook_add(uc_const.UC_HOOK_CODE, _ucglue.HOOK_CODE, glue.address, addr, addr)
            self.hooked.add(addr)
        self.sites_seen = len(traps) + len(natives)
        if new and flush:
            glue.tb_flush()


# ---------------------------------------------------------------------------------------
# Per-context architected state (a VCPU's, or Xen's own).
# ---------------------------------------------------------------------------------------
@dataclass(slots=True)
class Decrementer:
    """The 970's 32-bit DEC, kept relative to the timebase so it runs in simulated time."""

    value: int = 0x7FFFFFFF  # value last written
    written_tb: int = 0  # timebase when written
    armed: bool = False  # an interrupt is due when it goes negative

    def read(self, tb: int) -> int:
        return (self.value - (tb - self.written_tb)) & 0xFFFFFFFF

    def write(self, value: int, tb: int) -> None:
        self.value = value & 0xFFFFFFFF
        self.written_tb = tb
        # Writing a negative value raises no interrupt by itself (970FX UM 4.5.10).
        self.armed = not self.value & 0x80000000

    def expiry_tb(self) -> int | None:
        """Timebase at which bit 0 turns 1 (the interrupt condition), if armed."""
        return self.written_tb + self.value + 1 if self.armed else None


@dataclass(slots=True, eq=False)
class ArchState:
    """Architected state of one execution context that Unicorn does not keep.

    Compared by identity (eq=False): two contexts with equal registers are still two.
    """

    tr: TranslationState = field(default_factory=TranslationState)
    srr0: int = 0
    srr1: int = 0
    dar: int = 0
    dsisr: int = 0
    sprg: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    dec: Decrementer = field(default_factory=Decrementer)
    pir: int = 0
    #: The Unicorn instance holding this context's registers and translations (made
    #: when a core first loads it; None again makes the next load start afresh).
    hw: HwContext | None = None
    #: Initial register values, written into the context when a core next loads it.
    boot_regs: dict[int, int] | None = None
    #: Who this context belongs to (the hypervisor's VCPU object); opaque to hw970.
    #: (Any, not object: mypyc's dataclass support resolves annotations by name.)
    owner: Any = None


SliceCallback = Callable[["Core"], None]


class Core:
    """One 970 core: runs a context's code for a bounded number of instructions."""

    def __init__(
        self,
        cpu_id: int,
        memory: MachineMemory,
        clock_hz: int,
        timebase_hz: int,
        traps: dict[int, tuple[int, int, int]],
        natives: dict[int, Callable[[Core], None]],
        bus: CoreBus | None = None,
    ) -> None:
        self.cpu_id = cpu_id
        self.memory = memory
        self.clock_hz = clock_hz
        self.timebase_hz = timebase_hz
        self.mmu = Mmu(memory)
        self.bus = bus if bus is not None else CoreBus()
        self.bus.cores.append(self)
        # GPRs by number and the PC as -1, as read or written since emulation last ran.
        self._regs: dict[int, int] = {}
        self._sc_lev: dict[tuple[int, int], int] = {}
        self.traps = traps
        self.natives = natives
        #: The running context, or None when Xen runs (the core idles).
        self.state: ArchState | None = None
        #: The core's own Unicorn instance, current while no context is loaded: it runs
        #: nothing, but its counters keep the core's time between slices.
        self._own = HwContext(memory, self)
        #: The current instance (the loaded context's, else the core's own).
        self.hw = self._own
        self._glue = self._own.glue
        self._tlb = self._own.tlb
        self._stop = False
        self.slice_start_ns = 0
        self.extra_cycles = 0
        # Callbacks a hypervisor installs (hw970 knows nothing about Xen).
        self.on_hypercall: SliceCallback = _unhandled("sc 1")
        self.on_exception: Callable[[Core, int], None] = lambda core, vector: None
        self.on_rfid: Callable[[Core], None] = lambda core: None
        self.external_pending: Callable[[Core], bool] = lambda core: False
        self.dec_ticks_to_ns = 1_000_000_000 / timebase_hz

    # -- hooks ---------------------------------------------------------------------------
    def hook_sites(self) -> None:
        """Hook every trap/native address in the loaded context (others on their load)."""
        self.hw.hook_sites(self.traps, self.natives)

    # -- time ----------------------------------------------------------------------------
    @property
    def executed(self) -> int:
        return self._glue.executed

    def now_ns(self) -> int:
        """Simulated time at this point of the running slice."""
        cycles = self._glue.executed + self.extra_cycles
        return self.slice_start_ns + cycles * 1_000_000_000 // self.clock_hz

    def timebase(self) -> int:
        return self.now_ns() * self.timebase_hz // 1_000_000_000

    def charge(self, cycles: int) -> None:
        """Account work done outside emulated instructions (Xen, native routines)."""
        self.extra_cycles += cycles

    def limit_budget_to(self, t_ns: int) -> None:
        """Shorten the running slice so it ends no later than simulated time t_ns."""
        if t_ns <= self.now_ns():
            self.request_stop()
            return
        # Round up: the slice must reach t_ns, so what is due then is seen at its end.
        cycles = -(-(t_ns - self.slice_start_ns) * self.clock_hz // 1_000_000_000)
        insns = max(cycles - self.extra_cycles, 0)
        self._glue.budget = min(self._glue.budget, insns)

    def request_stop(self) -> None:
        """End the slice as soon as control is back in the core loop."""
        self._stop = True
        self._glue.emu_stop()

    # -- registers -----------------------------------------------------------------------
    # Hypercalls and natives touch registers constantly: remember what was read or
    # written (GPRs by number, the PC as -1) until emulation runs again, since a
    # hypercall's arguments are read by its entry, its trace record and its handler.
    # Writes go straight through to Unicorn.
    def gpr(self, n: int) -> int:
        value = self._regs.get(n)
        if value is None:
            value = self._regs[n] = self._glue.reg_read(UC_PPC_REG_0 + n)
        return value

    def set_gpr(self, n: int, value: int) -> None:
        value &= _MASK64
        self._regs[n] = value
        self._glue.reg_write(UC_PPC_REG_0 + n, value)

    def reg(self, reg: int) -> int:
        """Any Unicorn register by its UC_PPC_REG_* id (LR, CTR, ...)."""
        value: int = self._glue.reg_read(reg)
        return value

    @property
    def pc(self) -> int:
        value = self._regs.get(-1)
        if value is None:
            value = self._regs[-1] = self._glue.reg_read(UC_PPC_REG_PC)
        return value

    @pc.setter
    def pc(self, value: int) -> None:
        # uc_reg_write itself makes a PC write inside a hook redirect emulation.
        value &= _MASK64
        self._regs[-1] = value
        self._glue.reg_write(UC_PPC_REG_PC, value)

    @property
    def msr(self) -> int:
        assert self.state is not None
        return self.state.tr.msr

    def set_msr(self, value: int) -> None:
        """Change the model MSR and mirror IR/DR/PR into Unicorn (its TLB index)."""
        assert self.state is not None
        self.state.tr.msr = value | MSR_SF
        self._tlb.st.msr = value | MSR_SF
        mirror = MSR_SF | (value & MSR_UC_MIRROR)
        hw = self.hw
        if mirror != hw.uc_msr:
            self._glue.reg_write(UC_PPC_REG_MSR, mirror)
            hw.uc_msr = mirror

    # -- context switching ---------------------------------------------------------------
    def load(self, state: ArchState) -> None:
        """Make `state` the running context (its Unicorn instance, MSR, translation)."""
        self._regs.clear()
        hw = state.hw
        fresh = hw is None
        if hw is None:
            hw = state.hw = HwContext(self.memory, self)
        elif hw.core is not self:
            hw.glue.set_handlers(self._on_intr, self._on_site)
            hw.core = self
        # The slice counters belong to the core: carry them to the context's instance.
        glue = hw.glue
        glue.executed = self._glue.executed
        glue.budget = self._glue.budget
        self.hw = hw
        self._glue = glue
        self._tlb = hw.tlb
        self.state = state
        if hw.sites_seen != len(self.traps) + len(self.natives):
            hw.hook_sites(self.traps, self.natives)
        bus = self.bus
        if hw.code_epoch != bus.code_epoch:
            glue.tb_flush()
            hw.code_epoch = bus.code_epoch
        if state.boot_regs is not None:
            regs = state.boot_regs
            for n in range(32):
                glue.reg_write(UC_PPC_REG_0 + n, regs.get(n, 0))
            glue.reg_write(UC_PPC_REG_PC, regs.get(-1, 0))
            state.boot_regs = None
        self.set_msr(state.tr.msr)
        # Translations made from other inputs, or before a broadcast invalidation, go
        # (a new engine's TLB is empty).
        if hw.tlb.sync(state.tr) or hw.tlb_epoch != bus.tlb_epoch:
            if not fresh:
                glue.tlb_flush()
            hw.tlb_epoch = bus.tlb_epoch

    def save(self) -> ArchState | None:
        """Switch the running context out (its registers stay in its own instance)."""
        state = self.state
        self.state = None
        own = self._own
        own.glue.executed = self._glue.executed
        own.glue.budget = self._glue.budget
        self.hw = own
        self._glue = own.glue
        self._tlb = own.tlb
        return state

    def flush_code_caches(self) -> None:
        """Forget translated code in every context (after the host wrote guest code)."""
        self.bus.flush_code()

    def flush_tlb(self) -> None:
        """The running context's translation inputs (SLB, HID4, SDR1) changed: reload
        them into the fill hook and drop the emulated TLB."""
        if self.state is not None:
            self._tlb.load(self.state.tr)
        self._glue.tlb_flush()

    def tlbie_all(self) -> None:
        """A broadcast invalidation (tlbie) from this core: see `CoreBus.tlbie`."""
        self.bus.tlbie()

    # -- running -------------------------------------------------------------------------
    def run(self, budget: int, start_ns: int) -> int:
        """Run the current context for at most ~budget instructions from time start_ns.

        Returns the number of instructions executed; `extra_cycles` holds the cycles
        charged by Xen/native work during the slice.
        """
        st = self._glue
        st.executed = 0
        st.budget = budget
        st.stopped = 0
        self.extra_cycles = 0
        self.slice_start_ns = start_ns
        self._stop = False
        self.check_interrupts()
        tlb = self._tlb.st
        while not self._stop and self.state is not None and st.executed < st.budget:
            tlb.fault_set = 0
            try:
                status = st.emu_start(self.pc, UNTIL_NEVER)
                self._regs.clear()
                if status != uc_const.UC_ERR_OK:
                    raise UcError(status)
            except UcError as err:
                fault = self._tlb.take_fault()
                if fault is None:
                    raise GuestCrash(f"emulation stopped at {self.pc:#x}: {err}") from err
                if fault.vector == VEC_MACHINE_CHECK:
                    raise GuestCrash(
                        f"machine check at {self.pc:#x}: the page table at {fault.dar:#x} "
                        "lies outside machine memory"
                    ) from err
                pc = self.pc
                self._fix_count_partial_block(pc, completed=False)
                dar = fault.dar
                if fault.vector in (0x300, 0x380):
                    # The fill hook sees the page; the DAR is the instruction's exact EA.
                    dar = self._data_ea(pc, dar)
                self.deliver(
                    fault.vector, pc, dar=dar, dsisr=fault.dsisr, srr1_bits=fault.srr1_bits
                )
        return st.executed

    def _fix_count_partial_block(self, pc: int, completed: bool) -> None:
        """Take back the part of the current block that did not run."""
        st = self._glue
        end = st.last_block + st.last_size
        if st.last_block <= pc < end:
            st.executed -= (end - pc) >> 2
            if completed:
                st.executed += 1

    # -- interrupts ----------------------------------------------------------------------
    def deliver(
        self, vector: int, srr0: int, *, dar: int = 0, dsisr: int = 0, srr1_bits: int = 0
    ) -> None:
        """Take an interrupt in the current context, as the architecture does."""
        state = self.state
        assert state is not None
        msr = state.tr.msr
        state.srr0 = srr0 & _MASK64
        state.srr1 = (msr & ~0x783F0000 & _MASK64) | srr1_bits
        if vector in (0x300, 0x380):
            state.dar = dar & _MASK64
            state.dsisr = dsisr
        self.set_msr(msr & MSR_EXC_KEEP)
        self.pc = vector
        self.on_exception(self, vector)

    def check_interrupts(self) -> None:
        """Deliver a pending external (Xen's event upcall) or decrementer interrupt."""
        state = self.state
        if state is None or not state.tr.msr & MSR_EE:
            return
        if self.external_pending(self):
            self.deliver(VEC_EXTERNAL, self.pc)
            return
        expiry = state.dec.expiry_tb()
        if expiry is not None and self.timebase() >= expiry:
            state.dec.armed = False
            self.deliver(VEC_DECREMENTER, self.pc)

    def dec_deadline_ns(self) -> int | None:
        """Simulated time at which the running context's DEC fires, if armed and enabled."""
        state = self.state
        if state is None or not state.tr.msr & MSR_EE:
            return None
        expiry = state.dec.expiry_tb()
        if expiry is None:
            return None
        return -(-expiry * 1_000_000_000 // self.timebase_hz)

    def _on_intr(self, intno: int) -> None:
        self._regs.clear()
        self._intr(intno)

    def _intr(self, intno: int) -> None:
        state = self.state
        assert state is not None
        pc = self.pc
        if intno == _INTR_SYSCALL:
            key = (state.tr.rma_base, pc)
            lev = self._sc_lev.get(key)
            if lev is None:
                # The LEV field is only in the instruction word; code seldom changes, and a
                # changed word at the same place is re-read after a translation flush.
                lev = (self.memory.read_u32(self._phys_of_pc(pc - 4)) >> 5) & 0x7F
                self._sc_lev[key] = lev
            if lev == 1 and not state.tr.msr & MSR_PR:
                self.on_hypercall(self)
                if not self._stop:
                    self.check_interrupts()
            else:
                # sc 0, or sc 1 from problem state: the guest's own system call vector.
                self.deliver(VEC_SYSCALL, pc)
            return
        if intno in (_INTR_PROGRAM, _INTR_HV_EMU):
            self._glue.executed -= 1
            bits = SRR1_PROGRAM_ILLEGAL
            if intno == _INTR_PROGRAM:
                word = self.memory.read_u32(self._phys_of_pc(pc - 4))
                is_trap = word >> 26 in (2, 3) or (
                    word >> 26 == 31 and (word >> 1) & 0x3FF in (4, 68)
                )
                bits = SRR1_PROGRAM_TRAP if is_trap else SRR1_PROGRAM_PRIV
            self.deliver(VEC_PROGRAM, pc - 4, srr1_bits=bits)
            return
        raise GuestCrash(f"unexpected emulator interrupt {intno} at {pc:#x}")

    def _data_ea(self, pc: int, page: int) -> int:
        """Effective address of the load/store at pc (D, DS and X forms)."""
        try:
            word = self.memory.read_u32(self._phys_of_pc(pc))
        except GuestCrash:
            return page
        op = word >> 26
        ra = (word >> 16) & 31
        base = self.gpr(ra) if ra else 0
        if op == 31:
            return (base + self.gpr((word >> 11) & 31)) & _MASK64
        disp = word & 0xFFFF
        if op in (58, 62):  # DS-form: ld/ldu/lwa, std/stdu
            disp &= ~3
        if disp & 0x8000:
            disp -= 0x10000
        return (base + disp) & _MASK64

    def _phys_of_pc(self, pc: int) -> int:
        assert self.state is not None
        res = self.mmu.translate(self.state.tr, pc, 18)
        if isinstance(res, Fault):
            raise GuestCrash(f"cannot re-read the instruction at {pc:#x}")
        return res[0] | (pc & 0xFFF)

    # -- sensitive instructions and native routines --------------------------------------
    def _on_site(self, addr: int) -> None:
        # One frame: this runs twice per event (the native dispatch, then rfid).
        self._regs.clear()
        state = self.state
        if state is None:
            return
        native = self.natives.get(addr)
        if native is not None:
            self._fix_count_partial_block(addr, completed=True)
            self.pc = self.reg(UC_PPC_REG_LR)
            try:
                native(self)
            except (GuestFault, SimulationError):
                raise
            except Exception as exc:
                # The guest's own code broke: its domain crashes, not the run (errors.py).
                raise GuestCrash(f"native routine at {addr:#x}: {fault_reason(exc)}") from exc
            if self._stop:
                self._glue.emu_stop()
            return
        trap = self.traps.get(addr)
        if trap is None:
            return
        self._fix_count_partial_block(addr, completed=True)
        kind, a, b = trap
        msr = state.tr.msr
        if (
            msr & MSR_PR
            and kind != TRAP_MFTB
            and not (kind == TRAP_MFSPR and b in (SPR_TBL_R, SPR_TBU_R))
        ):
            self.deliver(VEC_PROGRAM, addr, srr1_bits=SRR1_PROGRAM_PRIV)
            return
        if kind == TRAP_RFID:
            self._rfid(state)
            return
        next_pc = addr + 4
        if kind == TRAP_MFSPR:
            value = self._read_spr(state, b)
            if value is None:
                self.deliver(VEC_PROGRAM, addr, srr1_bits=SRR1_PROGRAM_PRIV)
                return
            self.set_gpr(a, value)
        elif kind == TRAP_MTSPR:
            if not self._write_spr(state, b, self.gpr(a)):
                self.deliver(VEC_PROGRAM, addr, srr1_bits=SRR1_PROGRAM_PRIV)
                return
        elif kind == TRAP_MFTB:
            tb = self.timebase()
            self.set_gpr(a, tb >> 32 if b == SPR_TBU_R else tb)
        elif kind == TRAP_MFMSR:
            self.set_gpr(a, state.tr.msr)
        elif kind == TRAP_MTMSRD:
            value = self.gpr(a)
            if b:  # L=1: only EE and RI
                new = (msr & ~(MSR_EE | 2)) | (value & (MSR_EE | 2))
            else:
                new = (value & ~MSR_GUEST_FORBIDDEN) | (msr & MSR_HV)
            self.set_msr(new)
            self.pc = next_pc
            self.check_interrupts()
            return
        elif kind == TRAP_SLBMTE:
            state.tr.slbmte(self.gpr(a), self.gpr(b))
            self.flush_tlb()
        elif kind == TRAP_SLBIE:
            state.tr.slbie(self.gpr(a))
            self.flush_tlb()
        elif kind == TRAP_SLBIA:
            state.tr.slbia()
            self.flush_tlb()
        elif kind == TRAP_TLBIE:
            # Guests change page tables through H_ENTER/H_REMOVE; a tlbie from a guest is
            # privileged on the 970 under a hypervisor.
            self.deliver(VEC_PROGRAM, addr, srr1_bits=SRR1_PROGRAM_PRIV)
            return
        self.pc = next_pc

    def _rfid(self, state: ArchState) -> None:
        srr1 = state.srr1
        new = (srr1 & ~MSR_GUEST_FORBIDDEN) | (state.tr.msr & MSR_HV)
        self.set_msr(new)
        self.pc = state.srr0 & ~3
        self.on_rfid(self)
        self.check_interrupts()

    def _read_spr(self, state: ArchState, spr: int) -> int | None:
        if spr == SPR_SRR0:
            return state.srr0
        if spr == SPR_SRR1:
            return state.srr1
        if SPR_SPRG0 <= spr <= SPR_SPRG3:
            return state.sprg[spr - SPR_SPRG0]
        if spr == SPR_DAR:
            return state.dar
        if spr == SPR_DSISR:
            return state.dsisr
        if spr == SPR_DEC:
            return state.dec.read(self.timebase())
        if spr in (SPR_TBL_R, SPR_TBU_R):
            tb = self.timebase()
            return tb >> 32 if spr == SPR_TBU_R else tb
        if spr == SPR_PVR:
            return PVR_970FX
        if spr == SPR_PIR:
            return state.pir
        if spr not in GUEST_SPRS and not state.tr.msr & MSR_HV:
            return None
        if spr == SPR_HID4:
            return state.tr.hid4
        if spr == SPR_SDR1:
            return state.tr.sdr1
        if spr == SPR_HDEC:
            return 0
        return 0

    def _write_spr(self, state: ArchState, spr: int, value: int) -> bool:
        if spr == SPR_SRR0:
            state.srr0 = value
        elif spr == SPR_SRR1:
            state.srr1 = value
        elif SPR_SPRG0 <= spr <= SPR_SPRG3:
            state.sprg[spr - SPR_SPRG0] = value
        elif spr == SPR_DAR:
            state.dar = value
        elif spr == SPR_DSISR:
            state.dsisr = value & 0xFFFFFFFF
        elif spr == SPR_DEC:
            state.dec.write(value, self.timebase())
            deadline = self.dec_deadline_ns()
            if deadline is not None:
                self.limit_budget_to(deadline)
        elif not state.tr.msr & MSR_HV:
            return False  # HID4, SDR1, HDEC, PVR...: hypervisor resources
        elif spr == SPR_HID4:
            state.tr.set_hid4(value)
            self.flush_tlb()
        elif spr == SPR_SDR1:
            state.tr.sdr1 = value
            self.flush_tlb()
        return True


def _unhandled(what: str) -> SliceCallback:
    def handler(core: Core) -> None:
        raise GuestCrash(f"{what} at {core.pc - 4:#x} with no hypervisor attached")

    return handler
