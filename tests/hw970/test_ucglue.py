"""Each context's own Unicorn instance and its C glue: registers, hook errors, counting,
moving between cores, broadcast invalidation, engines opened ahead."""

from __future__ import annotations

import os
import signal
import time

import pytest
from unicorn import unicorn_const as uc_const
from unicorn.ppc_const import UC_PPC_REG_0, UC_PPC_REG_PC

from framework.hw970 import _ucglue, cext
from framework.hw970.arch_state import ArchState
from framework.hw970.asm import assemble
from framework.hw970.core import Core
from framework.hw970.engines import SPARE_ENGINES, TCG_BUFFER_BYTES
from framework.hw970.memory import MachineMemory
from framework.hw970.mmu import PTE_V, PTEG_BYTES, pte_avpn, pteg_index, sdr1_encode
from framework.hw970.regs import MSR_DR
from tests.hw970.test_core import make_core


class HandlerFailed(Exception):
    pass


def test_exception_in_a_hook_handler_stops_emulation_and_is_raised() -> None:
    mem = MachineMemory(256 << 20)
    core, _ = make_core(mem, "li 5, 1\n sc 1\n li 5, 2\n b .")

    def hcall(c: Core) -> None:
        raise HandlerFailed("the hypercall handler failed")

    core.on_hypercall = hcall
    with pytest.raises(HandlerFailed, match="handler failed"):
        core.run(1_000, 0)
    assert core.gpr(5) == 1  # nothing after the sc ran
    # The error is not raised again by the next run.
    core.on_hypercall = lambda c: None
    core.pc = 0x2000
    core.run(50, 0)
    assert core.gpr(5) == 2


def test_registers_are_64_bit_and_survive_a_context_switch() -> None:
    mem = MachineMemory(256 << 20)
    core, first = make_core(mem, "b .")
    core.set_gpr(7, -1)
    assert core.gpr(7) == 0xFFFF_FFFF_FFFF_FFFF
    core.set_gpr(8, 0x1234_5678_9ABC_DEF0)
    core.save()
    other = ArchState()
    other.tr = first.tr
    other.boot_regs = {-1: 0x2000, 8: 42}
    core.load(other)
    assert core.gpr(8) == 42
    core.save()
    core.load(first)
    assert core.gpr(8) == 0x1234_5678_9ABC_DEF0
    assert core.gpr(7) == 0xFFFF_FFFF_FFFF_FFFF


def test_block_hook_counts_exactly_and_stops_at_the_budget() -> None:
    mem = MachineMemory(256 << 20)
    # Ten straight-line adds, then a branch back: each block is 11 instructions.
    body = "\n".join("addi 3, 3, 1" for _ in range(10))
    core, _ = make_core(mem, f"loop: {body}\n b loop")
    n = core.run(110, 0)
    # The budget is checked at block entry, so exactly ten blocks ran.
    assert n == 110
    assert core.gpr(3) == 100


def test_a_context_moved_to_another_core_calls_that_cores_hypervisor() -> None:
    mem = MachineMemory(256 << 20)
    core0, st = make_core(mem, "loop: sc 1\n b loop")
    core1 = Core(1, mem, core0.clock_hz, core0.timebase_hz, core0.natives, core0.bus)
    calls: list[int] = []
    core0.on_hypercall = lambda c: calls.append(c.cpu_id)
    core1.on_hypercall = lambda c: calls.append(c.cpu_id)
    core0.run(6, 0)
    core0.save()
    core1.load(st)
    core1.run(6, 0)
    assert calls[0] == 0 and calls[-1] == 1 and set(calls) == {0, 1}


def test_a_broadcast_tlbie_reaches_a_context_that_is_switched_out() -> None:
    mem = MachineMemory(256 << 20)
    ea, vsid, htab = 0xC000_0000_0000_0000, 0x55, 0x100000
    page_a, page_b = 0x5000000, 0x5001000
    mem.write_u64(page_a, 0xAAAA)
    mem.write_u64(page_b, 0xBBBB)
    core, st = make_core(mem, "ld 5, 0(6)\n b .")
    st.tr.sdr1 = sdr1_encode(htab, 256 << 10)
    st.tr.slbmte(vsid << 12, (ea >> 28 << 28) | 0x8000000)
    pte = htab + pteg_index(vsid, ea, 12, False, (256 << 10) // PTEG_BYTES) * PTEG_BYTES
    mem.write_u64(pte, (pte_avpn(vsid, ea) << 7) | PTE_V)
    mem.write_u64(pte + 8, page_a | 0x2)
    core.flush_tlb()
    core.set_msr(st.tr.msr | MSR_DR)
    core.set_gpr(6, ea)
    core.run(2, 0)
    assert core.gpr(5) == 0xAAAA
    core.save()  # switched out with the translation in its emulated TLB
    mem.write_u64(pte + 8, page_b | 0x2)  # Xen rewrites the PTE (H_REMOVE + H_ENTER)...
    core.tlbie_all()  # ...and invalidates: no core runs this context now
    core.load(st)
    core.pc = 0x2000
    core.run(2, 0)
    assert core.gpr(5) == 0xBBBB


def _pool(mem: MachineMemory, spare: int) -> _ucglue.EnginePool:
    cext.bind_unicorn()
    return _ucglue.EnginePool(
        uc_const.UC_ARCH_PPC,
        uc_const.UC_MODE_PPC64 | uc_const.UC_MODE_BIG_ENDIAN,
        TCG_BUFFER_BYTES,
        uc_const.UC_TLB_VIRTUAL,
        uc_const.UC_PROT_ALL,
        mem.ptr,
        mem.size,
        spare,
    )


def _wait_ready(pool: _ucglue.EnginePool, n: int) -> None:
    deadline = time.monotonic() + 10
    while pool.ready < n:
        assert time.monotonic() < deadline, f"the pool opened {pool.ready} of {n} engines"
        time.sleep(0.001)


def test_engines_opened_ahead_run_code_on_the_shared_memory() -> None:
    mem = MachineMemory(256 << 20)
    pool = _pool(mem, 2)
    _wait_ready(pool, 2)
    handles = [pool.take() for _ in range(3)]
    assert pool.ahead >= 2 and pool.ahead + pool.on_demand == 3
    assert len(set(handles)) == 3
    # Each engine sees the machine memory mapped at 0 and runs real code from it.
    mem.write(0x3000, assemble("li 3, 7\n stw 3, 0x100(0)\n b .", 0x3000))
    for h in handles:
        mem.write_u32(0x100, 0)
        glue = _ucglue.Glue(h, lambda _n: None, lambda _a: None, lambda _a, _w: None)
        glue.reg_write(UC_PPC_REG_PC, 0x3000)
        glue.budget = 10**6
        glue.hook_add(uc_const.UC_HOOK_BLOCK, _ucglue.HOOK_BLOCK, glue.address, 1, 0)
        glue.emu_start(0x3000, 0x3008)  # stops before the branch
        assert mem.read_u32(0x100) == 7
        assert glue.reg_read(UC_PPC_REG_0 + 3) == 7
    pool.close()
    pool.close()  # idempotent
    assert pool.ready == 0
    # After close, take() still answers (opening the engine itself).
    _ucglue.Glue(pool.take(), lambda _n: None, lambda _a: None, lambda _a, _w: None)
    assert pool.on_demand >= 1


def test_an_engine_pool_refuses_bad_settings() -> None:
    mem = MachineMemory(64 << 20)
    with pytest.raises(ValueError, match="spare 65 is outside"):
        _pool(mem, 65)
    pool = _pool(mem, 0)  # no thread: every engine is opened on demand
    _ucglue.Glue(pool.take(), lambda _n: None, lambda _a: None, lambda _a, _w: None)
    assert (pool.ahead, pool.on_demand) == (0, 1)


def test_every_core_of_a_machine_takes_its_engines_from_one_pool() -> None:
    mem = MachineMemory(256 << 20)
    core0, _ = make_core(mem, "b .")
    Core(1, mem, core0.clock_hz, core0.timebase_hz, core0.natives, core0.bus)
    other = MachineMemory(64 << 20)
    with pytest.raises(ValueError, match="share one machine memory"):
        core0.bus.engine(other)
    core0.bus.close()


def _wait_child(pid: int, limit_s: float) -> int | None:
    """The child's exit code, or None (the child killed) when it is still running."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


def test_a_forked_child_opens_its_engines_itself_and_exits_cleanly() -> None:
    mem = MachineMemory(256 << 20)
    core, _ = make_core(mem, "b .")  # its bus has a pool with a running thread
    _wait_ready(core.bus._engines, 1)  # type: ignore[arg-type]
    # CPython's own after-fork code can deadlock in the child when another thread held
    # one of its locks at fork() (seen once on a loaded machine, inside threading's
    # _after_fork, before any of our code ran): such a child is killed and the fork tried
    # again, so the test checks our engine pool and cannot hang the suite.
    for _attempt in range(3):
        code = _fork_and_use_engines(core, mem)
        if code is not None:
            break
    assert code == 0
    core.bus.close()


def _fork_and_use_engines(core: Core, mem: MachineMemory) -> int | None:
    pid = os.fork()
    if pid == 0:  # the child: no engine thread came along
        code = 1
        try:
            pool = core.bus._engines
            assert pool is not None
            before = pool.ahead + pool.on_demand
            # More than the spare engines: the copied ready ones, then engines opened
            # by take() itself (a thread would have refilled the pool instead).
            n = SPARE_ENGINES + 2
            handles = [core.bus.engine(mem) for _ in range(n)]
            glue = _ucglue.Glue(handles[-1], lambda _n: None, lambda _a: None, lambda _a, _w: None)
            mem.write(0x3000, assemble("li 3, 9\n b .", 0x3000))
            glue.reg_write(UC_PPC_REG_PC, 0x3000)
            glue.budget = 10**6
            glue.emu_start(0x3000, 0x3004)
            ran = glue.reg_read(UC_PPC_REG_0 + 3) == 9
            took = pool.ahead + pool.on_demand - before == n
            code = 0 if ran and took and pool.on_demand >= 2 and pool.ready == 0 else 2
            pool.close()
        finally:
            os._exit(code)
    return _wait_child(pid, 60.0)
