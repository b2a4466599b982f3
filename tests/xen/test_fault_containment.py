"""Faults stay where they happen: a guest's broken native routine crashes its own domain
(recorded with the reason) while the others run to the end; so does a bug in a hypercall
handler, which is recorded as a simulator bug and reported by the run."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

import analysis  # noqa: F401  (registers DataFrame.xen)
from framework.cli import ERROR_LOG, main
from framework.errors import KernelError
from framework.guest.runtime import KERNEL_BASE, native_address
from framework.hw970.core import Core
from framework.scenario import parse_scenario
from framework.simulation import Simulation
from framework.xen.domain import Vcpu
from framework.xen.hcall import XEN_CALLS
from framework.xen.hypervisor import Hypervisor
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
    df = sim.rec.to_dataframe().xen.wide()
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
    df = sim.rec.to_dataframe().xen.wide()
    crash = df[df["kind"] == "dom.crash"]
    assert list(crash["dom"]) == [_domid(sim, "victim")]
    assert list(crash["text"]) == [f"KernelError: {oops}"]


def _break_set_timer_op_for(sim: Simulation, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """set_timer_op raises a KeyError (a bug in Xen's own code) for domain `name` from
    CRASH_AFTER_NS on, and works for everyone else."""
    original = XEN_CALLS[HYPERVISOR_set_timer_op]

    def broken_set_timer_op(xen: Hypervisor, core: Core, v: Vcpu) -> int:
        if sim.names.get(v.domain.domid) == name and core.now_ns() >= CRASH_AFTER_NS:
            raise KeyError("timer heap")
        return original(xen, core, v)

    monkeypatch.setitem(XEN_CALLS, HYPERVISOR_set_timer_op, broken_set_timer_op)


def test_an_exception_out_of_a_hypercall_handler_is_recorded_and_crashes_only_its_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sim = _simulation()
    _break_set_timer_op_for(sim, "victim", monkeypatch)
    assert sim.run() == DURATION_NS  # the run went on to the end of the scenario
    df = sim.rec.to_dataframe().xen.wide()
    victim = _domid(sim, "victim")

    bug = df[df["kind"] == "hcall.bug"]
    assert list(bug["dom"]) == [victim]
    assert list(bug["nr"]) == [HYPERVISOR_set_timer_op]
    deadline = bug["arg0"].iloc[0]  # r4: the timer deadline the guest asked for
    assert deadline > CRASH_AFTER_NS
    assert bug["text"].iloc[0] == (
        f"set_timer_op({hex(deadline)}, {', '.join(hex(a) for a in sim.xen.bugs[0].args[1:])})"
        ": KeyError: 'timer heap'"
    )
    crash = df[df["kind"] == "dom.crash"]
    assert list(crash["dom"]) == [victim]
    assert crash["t_ns"].iloc[0] == bug["t_ns"].iloc[0]
    assert crash["text"].iloc[0].startswith("XenBug: simulator bug in set_timer_op(")
    assert list(df[(df["kind"] == "dom.shutdown") & (df["dom"] == victim)]["reason"]) == [
        SHUTDOWN_crash
    ]
    [recorded] = sim.xen.bugs
    assert (recorded.domid, recorded.name, recorded.args[0]) == (victim, "set_timer_op", deadline)
    assert "broken_set_timer_op" in recorded.traceback
    assert recorded.traceback.rstrip().endswith("KeyError: 'timer heap'")

    ticks = df[(df["kind"] == "guest.mark") & (df["text"] == "timer.tick")]
    for name in ("steady1", "steady2"):
        mine = ticks[ticks["dom"] == _domid(sim, name)]["t_ns"]
        assert mine.max() >= DURATION_NS - 3 * TICK_NS  # still ticking at the end


def test_a_simulator_bug_is_in_the_summary_run_json_and_error_log(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = tmp_path / "containment.yaml"
    scenario.write_text(SCENARIO)
    out = tmp_path / "run"
    names: dict[int, str] = {1: "steady1", 2: "victim", 3: "steady2"}  # creation order
    original = XEN_CALLS[HYPERVISOR_set_timer_op]

    def broken_set_timer_op(xen: Hypervisor, core: Core, v: Vcpu) -> int:
        if names.get(v.domain.domid) == "victim" and core.now_ns() >= CRASH_AFTER_NS:
            raise KeyError("timer heap")
        return original(xen, core, v)

    monkeypatch.setitem(XEN_CALLS, HYPERVISOR_set_timer_op, broken_set_timer_op)
    assert main(["run", str(scenario), "--out", str(out)]) == 0  # the run finished
    text = capsys.readouterr().out.replace("\n", " ")
    assert "simulator bug: set_timer_op(0x" in text
    assert "from d2v0 at " in text and "raised KeyError: 'timer heap' (domain crashed)" in text
    assert f"traceback in {out / ERROR_LOG}" in text
    run = json.loads((out / "run.json").read_text())
    [bug] = run["simulator_bugs"]
    assert (bug["dom"], bug["vcpu"], bug["hypercall"], bug["nr"]) == (2, 0, "set_timer_op", 15)
    assert bug["reason"] == "KeyError: 'timer heap'" and len(bug["args"]) == 8
    assert run["counts"]["hcall.bug"] == 1 and run["counts"]["dom.crash"] == 1
    log = (out / ERROR_LOG).read_text()
    assert log.startswith("simulator bug: set_timer_op(0x") and "Traceback" in log

    assert main(["run", str(scenario), "--out", str(out), "--quiet", "--force"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("xen970: simulator bug: set_timer_op(0x") and err.count("\n") == 1
