"""One physical PowerPC 970 core: a Unicorn PPC64 instance plus the state Unicorn lacks.

Unicorn 2.1.4 runs the instructions; the running context's `ArchState` (arch_state.py)
holds MSR, SRR0/1, DAR, DSISR, SPRGs, DEC, HID4, SDR1 and the SLB.  The core delivers every
interrupt through the architected path, runs native routines, and has the instructions
whose effect lives in that state (rfid, mtmsrd, mfmsr, mfspr/mtspr of model SPRs, mftb,
slb*/tlbie) emulated by `sensitive.py`: each code page is scanned for them when a context
first executes it, whoever wrote it, and scanned again after it is written
(code_pages.py); they are hooked by address only, so the rest of the code runs at TCG
speed.  Each context has its own Unicorn instance (`engines.HwContext`).

Why not Unicorn's `UC_CPU_PPC64_970*` models: in 2.1.4 an explicit PPC64 model index is
not offset past the PPC32 table, so it selects a 32-bit CPU on which ld/std/mtmsrd/rfid
are illegal (unicorn issue #1779).  The default 64-bit core executes the 970's
instruction set; the 970-specific behaviour (PVR, HID4/RMA, HDEC, 32-bit DEC) is modelled
here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from unicorn import UcError
from unicorn import unicorn_const as uc_const
from unicorn.ppc_const import (
    UC_PPC_REG_0,
    UC_PPC_REG_LR,
    UC_PPC_REG_MSR,
    UC_PPC_REG_PC,
)

from framework.errors import GuestCrash, GuestFault, SimulationError, fault_reason
from framework.hw970.arch_state import UC_REGISTER_OF, ArchState
from framework.hw970.code_pages import VEC_CODE_SCAN, VEC_CODE_WRITE
from framework.hw970.engines import UNTIL_NEVER, CoreBus, HwContext
from framework.hw970.memory import PAGE_SHIFT, MachineMemory
from framework.hw970.mmu import ACCESS_FETCH, Fault, Mmu
from framework.hw970.regs import (
    MSR_EE,
    MSR_EXC_KEEP,
    MSR_SF,
    MSR_UC_MIRROR,
    SRR1_PROGRAM_ILLEGAL,
    SRR1_PROGRAM_PRIV,
    SRR1_PROGRAM_TRAP,
    VEC_DECREMENTER,
    VEC_EXTERNAL,
    VEC_MACHINE_CHECK,
    VEC_PROGRAM,
    VEC_SYSCALL,
)
from framework.hw970.sensitive import decode_word, emulate

# Unicorn interrupt numbers (QEMU's POWERPC_EXCP_*) seen through UC_HOOK_INTR.
_INTR_PROGRAM: Final = 6
_INTR_SYSCALL: Final = 8
_INTR_HV_EMU: Final = 96  # illegal instruction on the default 64-bit core
_MASK64: Final = 0xFFFFFFFFFFFFFFFF
#: Interrupts in a row without one instruction completed after which the context is
#: declared stuck (its own vector faults): real hardware would spin there forever.
EXCEPTION_LOOP_LIMIT: Final = 1000
#: Code-page stops (admissions, releases) in a row with no instruction completed after
#: which the core gives up: a few are normal (admit, store refused, store stepped), more
#: would be a simulator bug that otherwise spins for ever.
CODE_STOP_LIMIT: Final = 16
#: Cycles an interrupt costs the slice budget at least (the 970 flushes its pipeline and
#: refetches at the vector), so a context whose vector faults still uses up its slice.
INTERRUPT_MIN_CYCLES: Final = 1


SliceCallback = Callable[["Core"], None]


class Core:
    """One 970 core: runs a context's code for a bounded number of instructions."""

    def __init__(
        self,
        cpu_id: int,
        memory: MachineMemory,
        clock_hz: int,
        timebase_hz: int,
        natives: dict[int, Callable[[Core], None]],
        bus: CoreBus | None = None,
    ) -> None:
        self.cpu_id = cpu_id
        self.memory = memory
        self.clock_hz = clock_hz
        self.timebase_hz = timebase_hz
        self.mmu = Mmu(memory)
        self.bus = bus if bus is not None else CoreBus(memory)
        self.bus.cores.append(self)
        # GPRs by number and the PC as -1, as read or written since emulation last ran.
        self._regs: dict[int, int] = {}
        self._sc_lev: dict[tuple[int, int], int] = {}
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
        #: Instructions executed in this slice when the last interrupt was taken.
        self._exc_mark = 0
        self.slice_start_ns = 0
        self.extra_cycles = 0
        # Callbacks a hypervisor installs (hw970 knows nothing about Xen).
        #: `sc 1` (LEV=1) from either privilege state: the hypervisor reads MSR[PR] from
        #: `state` and refuses problem state itself (the architecture sends it there).
        self.on_hypercall: SliceCallback = _unhandled("sc 1")
        self.on_exception: Callable[[Core, int], None] = lambda core, vector: None
        self.on_rfid: Callable[[Core], None] = lambda core: None
        self.external_pending: Callable[[Core], bool] = lambda core: False

    # -- hooks ---------------------------------------------------------------------------
    def hook_sites(self) -> None:
        """Hook every native routine's address in the loaded context (others on their
        load)."""
        self.hw.hook_sites(self.natives)

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
            hw.glue.set_handlers(self._on_intr, self._on_site, self._on_trap)
            hw.core = self
        # The slice counters belong to the core: carry them to the context's instance.
        glue = hw.glue
        glue.executed = self._glue.executed
        glue.budget = self._glue.budget
        self.hw = hw
        self._glue = glue
        self._tlb = hw.tlb
        self.state = state
        if hw.sites_seen != len(self.natives):
            hw.hook_sites(self.natives)
        bus = self.bus
        if hw.code_epoch != bus.code_epoch:
            glue.tb_flush()
            hw.code_epoch = bus.code_epoch
        if state.boot_regs is not None:
            regs = state.boot_regs
            for n in range(32):
                glue.reg_write(UC_PPC_REG_0 + n, regs.get(n, 0))
            glue.reg_write(UC_PPC_REG_PC, regs.get(-1, 0))
            for key, value in regs.items():
                if key < -1 or key >= 32:  # LR, CTR, XER, CR, FPRs (a restored context)
                    glue.reg_write(UC_REGISTER_OF[key], value)
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
        self._exc_mark = 0
        self.check_interrupts()
        step = 0  # 1: run one instruction, a store into its own code page
        code_stops = code_mark = 0
        while not self._stop and self.state is not None and st.executed < st.budget:
            self._tlb.st.fault_set = 0
            try:
                status = st.emu_start(self.pc, UNTIL_NEVER, step)
                self._regs.clear()
                if step:
                    step = 0
                    self._stepped(status == uc_const.UC_ERR_OK)
                if status != uc_const.UC_ERR_OK:
                    raise UcError(status)
            except UcError as err:
                fault = self._tlb.take_fault()
                if fault is None:
                    raise GuestCrash(f"emulation stopped at {self.pc:#x}: {err}") from err
                if fault.vector == VEC_CODE_SCAN or fault.vector == VEC_CODE_WRITE:
                    pc = self.pc
                    if st.executed > code_mark:  # the count only rises with progress
                        code_stops, code_mark = 0, st.executed
                    code_stops += 1
                    if code_stops > CODE_STOP_LIMIT:
                        raise SimulationError(
                            f"code page at {pc:#x} (machine {fault.dsisr:#x}) admitted "
                            f"and released {CODE_STOP_LIMIT} times without progress"
                        ) from err
                    if fault.vector == VEC_CODE_SCAN:
                        # Not an interrupt: a fetch from a page this context may not
                        # execute yet.  Admit it and fetch again.
                        self.bus.admit_code(self.hw, fault.dar, fault.dsisr)
                    else:
                        # Not an interrupt: a store into admitted code, not done yet.
                        self._fix_count_partial_block(pc, completed=False)
                        step = self._code_store(fault.dsisr)
                    continue
                if fault.vector == VEC_MACHINE_CHECK:
                    raise GuestCrash(
                        f"machine check at {self.pc:#x}: machine address {fault.dar:#x} "
                        "is not RAM (the 2-4GiB I/O hole or beyond the top of memory)"
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
        state = self.state
        if state is not None and st.executed > self._exc_mark:
            state.exc_streak = 0
        return st.executed

    def _code_store(self, paddr: int) -> int:
        """The store at PC writes admitted code at machine address `paddr`: release the
        page (no context runs what it translated from it) so the store can run again.
        Returns 1 when the store sits in that very page: it must then be stepped alone."""
        page = paddr >> PAGE_SHIFT
        self.memory.release_code(page)
        self.bus.code_released()
        where = self._tlb.translate(self.pc, ACCESS_FETCH)
        if isinstance(where, Fault) or where[0] >> PAGE_SHIFT != page:
            return 0
        self._tlb.st.step_page = (page << PAGE_SHIFT) | 1
        return 1

    def _stepped(self, completed: bool) -> None:
        """After the step of a store into its own page: what was translated and mapped
        for it (the page unscanned, executable and writable) goes."""
        self._tlb.st.step_page = 0
        if completed:
            self._fix_count_partial_block(self.pc, completed=False)
        self.bus.code_released()

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
        """Take an interrupt in the current context, as the architecture does.

        Delivery is work: what it costs (the hypervisor's charge, at least
        INTERRUPT_MIN_CYCLES) comes off the slice budget, so a context whose vector
        faults at once still ends its slice and the hypervisor's tick still preempts it.
        EXCEPTION_LOOP_LIMIT interrupts with no instruction completed in between crash
        the context (GuestCrash) instead of spinning there for ever.
        """
        state = self.state
        assert state is not None
        glue = self._glue
        if glue.executed > self._exc_mark:
            state.exc_streak = 0
        self._exc_mark = glue.executed
        state.exc_streak += 1
        if state.exc_streak > EXCEPTION_LOOP_LIMIT:
            raise GuestCrash(
                f"exception loop at {vector:#x}/{srr0 & _MASK64:#x}: "
                f"{EXCEPTION_LOOP_LIMIT} exceptions without progress"
            )
        msr = state.tr.msr
        state.srr0 = srr0 & _MASK64
        state.srr1 = (msr & ~0x783F0000 & _MASK64) | srr1_bits
        if vector in (0x300, 0x380):
            state.dar = dar & _MASK64
            state.dsisr = dsisr
        self.set_msr(msr & MSR_EXC_KEEP)
        self.pc = vector
        charged = self.extra_cycles
        self.on_exception(self, vector)
        cost = self.extra_cycles - charged
        if cost < INTERRUPT_MIN_CYCLES:
            self.charge(INTERRUPT_MIN_CYCLES - cost)
            cost = INTERRUPT_MIN_CYCLES
        glue.budget = max(glue.budget - cost, 0)

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
            if lev == 1:
                # sc 1 always enters the hypervisor, from problem state too: it reads the
                # privilege (MSR[PR]) in the context's state and answers in r3 itself.
                self.on_hypercall(self)
                if not self._stop:
                    self.check_interrupts()
            else:
                # sc 0: the guest's own system call vector.
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
    def _on_trap(self, addr: int, word: int) -> None:
        """A trap hook: the running context has the sensitive instruction `word` at
        `addr` (the hook's C side read it through the context's translation)."""
        self._regs.clear()
        state = self.state
        if state is None or addr in self.natives:
            return  # a native routine already ran here (and returned)
        trap = decode_word(word)
        if trap is None:
            raise GuestCrash(f"cannot re-read the instruction at {addr:#x}")
        self._fix_count_partial_block(addr, completed=True)
        emulate(self, state, addr, trap)

    def _on_site(self, addr: int) -> None:
        # One frame: this runs once per event (the native dispatch; rfid is a trap).
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


def _unhandled(what: str) -> SliceCallback:
    def handler(core: Core) -> None:
        raise GuestCrash(f"{what} at {core.pc - 4:#x} with no hypervisor attached")

    return handler
