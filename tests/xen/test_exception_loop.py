"""A guest whose own program vector faults neither freezes simulated time nor the run:
its slices still end, the tick still preempts it, and after 1000 interrupts without an
instruction completed its domain is crashed with the reason while the others run on."""

from __future__ import annotations

import pandas as pd

import analysis  # noqa: F401  (registers DataFrame.xen)
from framework.guest.runtime import KERNEL_BASE, native_address
from framework.hw970.core import Core
from framework.scenario import parse_scenario
from framework.simulation import Simulation
from framework.xen.domain import Vcpu

DURATION_NS = 40_000_000
TICK_NS = 1_000_000
BREAK_AT_NS = 10_000_000
VEC_PROGRAM = 0x700
ILLEGAL = 0x00000000  # primary opcode 0: an illegal instruction

SCENARIO = """
name: exception-loop
seed: 1
duration: 40ms
machine:
  cpus: 2
  memory: 1GiB
dom0:
  memory: 128MiB
domains:
  - name: steady
    memory: 64MiB
    workloads:
      - {kind: timer, hz: 1000, vcpu: 0}
  - name: victim
    memory: 64MiB
    workloads:
      - {kind: timer, hz: 1000, vcpu: 0}
"""


def test_a_guest_looping_on_its_faulting_program_vector_is_crashed_and_time_goes_on() -> None:
    sim = Simulation(parse_scenario(SCENARIO, "exception-loop"))
    broken: list[int] = []

    for address in (
        native_address("evtchn_dispatch"),
        KERNEL_BASE | native_address("evtchn_dispatch"),
    ):
        original = sim.machine.natives[address]

        def dispatch(core: Core, original: object = original) -> None:
            assert core.state is not None
            v = core.state.owner
            assert isinstance(v, Vcpu)
            if (
                sim.names.get(v.domain.domid) == "victim"
                and core.now_ns() >= BREAK_AT_NS
                and not broken
            ):
                # The guest overwrites its own 0x700 vector with an illegal word, then
                # executes an illegal word: every program interrupt faults again.
                rma = core.state.tr.rma_base
                sim.machine.memory.write_u32(rma + VEC_PROGRAM, ILLEGAL)
                core.flush_code_caches()
                broken.append(core.now_ns())
                core.deliver(VEC_PROGRAM, core.pc, srr1_bits=1 << (63 - 44))
                return
            original(core)  # type: ignore[operator]

        sim.machine.bind_native(address, dispatch)

    assert sim.run() == DURATION_NS  # the run reached the end of the scenario
    assert broken
    victim = next(d for d, n in sim.names.items() if n == "victim")
    df = sim.rec.to_dataframe().xen.wide()
    crash = df[df["kind"] == "dom.crash"]
    assert list(crash["dom"]) == [victim]
    assert list(crash["text"]) == [
        "GuestCrash: exception loop at 0x700/0x700: 1000 exceptions without progress"
    ]
    loop = df[(df["kind"] == "exc.deliver") & (df["dom"] == victim)]
    loop = loop[loop["t_ns"] >= broken[0]]
    assert len(loop) >= 1000
    ticks = df[(df["kind"] == "guest.mark") & (df["text"] == "timer.tick")]
    mine = ticks[ticks["dom"] != victim]["t_ns"]
    assert mine.max() >= DURATION_NS - 3 * TICK_NS
    assert pd.Series(sorted(mine)).diff().max() <= 3 * TICK_NS
