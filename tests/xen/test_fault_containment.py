"""Faults stay where they happen: a guest's broken native routine crashes its own domain
(recorded with the reason) while the others run to the end; a Xen bug ends the run."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest

from framework.errors import KernelError, SimulationError
from framework.guest.runtime import KERNEL_BASE, native_address
from framework.hw970.core import Core
from framework.scenario import parse_scenario
from framework.simulation import Simulation
from framework.xen.domain import Vcpu
from framework.xen.hcall import XEN_CALLS
from framework.xen.public.sched import SHUTDOWN_crash
from framework.xen.public.xen import HYPERVISOR_set_timer_op

DURATION_NS = 60_000_000
TICK_NS = 1_000_000  # 1000 Hz timers
CRASH_AFTER_NS = 20_000_000

SCENARIO = """
name: containment
seed: 1
duration: 60ms
machine:
  cpus: 2
  memory: 1GiB
dom0:
  memory: 128MiB
domains:
  - name: steady1
    memory: 64MiB
    workloads:
      - {kind: timer, hz: 1000, vcpu: 0}
  - name: victim
    memory: 64MiB
    workloads:
      - {kind: timer, hz: 1000, vcpu: 0}
  - name: steady2
    memory: 64MiB
    workloads:
      - {kind: timer, hz: 1000, vcpu: 0}
"""


def _simulation() -> Simulation:
    return Simulation(parse_scenario(SCENARIO, "containment"))


def _domid(sim: Simulation, name: str) -> int:
    return next(d for d, n in sim.names.items() if n == name)


def _bind_breaking(
    sim: Simulation,
    routine: str,
    breaks: Callable[[Core], bool],
    error: Exception | None = None,
) -> None:
    """Wrap the kernel's native `routine` so that it raises `error` when `breaks(core)`;
    by default a KeyError (a bug in the guest's own Python code, not a project error)."""
    for address in (native_address(routine), KERNEL_BASE | native_address(routine)):
        original = sim.machine.natives[address]

        def routine_with_a_bug(core: Core, original: Callable[[Core], None] = original) -> None:
            if breaks(core):
                raise error if error is not None else KeyError("port 7")
            original(core)

        sim.machine.bind_native(address, routine_with_a_bug)


def _owner(sim: Simulation, core: Core) -> str:
    """The scenario name of the domain whose VCPU `core` runs."""
    assert core.state is not None
    v = core.state.owner
    assert isinstance(v, Vcpu)
    return sim.names.get(v.domain.domid, "")


def test_a_raising_native_crashes_its_domain_and_the_others_run_to_the_end() -> None:
    sim = _simulation()
    _bind_breaking(
        sim,
        "evtchn_dispatch",
        lambda core: _owner(sim, core) == "victim" and core.now_ns() >= CRASH_AFTER_NS,
    )
    assert sim.run() == DURATION_NS  # the run went on to the end of the scenario
    df = sim.rec.to_dataframe()
    victim = _domid(sim, "victim")

    crash = df[df["kind"] == "dom.crash"]
    assert list(crash["dom"]) == [victim]
    reason = crash["text"].iloc[0]
    assert "KeyError: 'port 7'" in reason and "native routine at 0x" in reason
    assert crash["t_ns"].iloc[0] >= CRASH_AFTER_NS
    shutdown = df[(df["kind"] == "dom.shutdown") & (df["dom"] == victim)]
    assert list(shutdown["reason"]) == [SHUTDOWN_crash]

    ticks = df[(df["kind"] == "guest.mark") & (df["text"] == "timer.tick")]
    assert ticks[ticks["dom"] == victim]["t_ns"].max() < crash["t_ns"].iloc[0]
    for name in ("steady1", "steady2"):
        mine = ticks[ticks["dom"] == _domid(sim, name)]["t_ns"]
        # Still ticking at the end of the scenario, with no gap where the victim crashed.
        assert mine.max() >= DURATION_NS - 3 * TICK_NS
        assert pd.Series(sorted(mine)).diff().max() <= 3 * TICK_NS


def test_a_guest_fault_keeps_its_own_type_in_the_reason() -> None:
    sim = _simulation()
    oops = KernelError("d2: gpa 0x7fff0000 is outside the I/O segments")
    _bind_breaking(
        sim,
        "evtchn_dispatch",
        lambda core: _owner(sim, core) == "victim" and core.now_ns() >= CRASH_AFTER_NS,
        oops,
    )
    sim.run()
    df = sim.rec.to_dataframe()
    crash = df[df["kind"] == "dom.crash"]
    assert list(crash["dom"]) == [_domid(sim, "victim")]
    assert list(crash["text"]) == [f"KernelError: {oops}"]


def test_an_exception_escaping_a_hypercall_handler_is_a_xen_bug_that_ends_the_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken_set_timer_op(*_args: object) -> int:
        raise KeyError("timer heap")

    monkeypatch.setitem(XEN_CALLS, HYPERVISOR_set_timer_op, broken_set_timer_op)
    sim = _simulation()
    with pytest.raises(SimulationError, match=r"Xen bug in set_timer_op: KeyError: 'timer heap'"):
        sim.run()
    assert sim.rec.counts().get("dom.crash", 0) == 0  # not blamed on a guest
