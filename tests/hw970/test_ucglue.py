"""The C glue between a core and Unicorn: register calls, contexts, hook errors, counting."""

from __future__ import annotations

import pytest

from framework.hw970.core import ArchState, Core
from framework.hw970.memory import MachineMemory
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
