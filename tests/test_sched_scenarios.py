"""The scheduler-share acceptance runs: each `scenarios/sched/*.yaml` for its 10 simulated
seconds, CPU share per domain over [5 s, 10 s] from the trace's runstate records, against
the closed form its comments state (share_i = C * w_i / sum(w), capped, max-min fair),
within +-3 percentage points.

Slow on purpose: a share is only meaningful over many 30 ms accounting periods. Together
they take ~100 s of CPU in pure-Python mode (placement-2cpu ~30 s, the 3-guest ones ~15 s,
cap-alone ~5 s), over the default suite's budget, so by default only issue 13's example
(light-vcpu) and cap-alone run; XEN970_SCHED_SCENARIOS=all runs every one.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import analysis  # noqa: F401  (registers DataFrame.xen)
from framework.scenario import load_scenario
from framework.simulation import Simulation

SCEN = Path(__file__).resolve().parents[1] / "scenarios" / "sched"
SEC = 1_000_000_000

# Percent of one CPU per domain name; the scenarios' comments derive each figure.
EXPECTED: dict[str, dict[str, float]] = {
    "light-vcpu": {"w256": 100 * 256 / 768, "w512": 100 * 512 / 768, "light": 0.0},
    "weights-1-2-4": {"w1": 100 / 7, "w2": 200 / 7, "w4": 400 / 7},
    "cap-alone": {"capped": 30.0},
    "cap-contention": {"capped": 20.0, "free1": 40.0, "free2": 40.0},
    "idle-guest": {"compute1": 50.0, "compute2": 50.0, "idle": 0.0},
    "placement-2cpu": {"a": 200 / 3, "b": 200 / 3, "c": 200 / 3},
}


def shares(name: str) -> dict[str, float]:
    """Run one scenario; percent of one CPU each domain used over the second half."""
    scenario = load_scenario(SCEN / f"{name}.yaml")
    assert scenario.duration == 10 * SEC
    sim = Simulation(scenario)
    sim.run()
    df = sim.rec.to_dataframe().xen.wide()
    used = df.xen.per_domain_cpu_time(10 * SEC) - df.xen.per_domain_cpu_time(5 * SEC)
    return {sim.names[int(d)]: 100 * int(ns) / (5 * SEC) for d, ns in used.items()}


DEFAULT = {"light-vcpu", "cap-alone"}
ALL = os.environ.get("XEN970_SCHED_SCENARIOS") == "all"


def test_every_sched_scenario_is_checked() -> None:
    assert {p.stem for p in SCEN.glob("*.yaml")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_share_matches_closed_form(name: str) -> None:
    if not ALL and name not in DEFAULT:
        pytest.skip("10 s simulated run (12-25 s wall each): set XEN970_SCHED_SCENARIOS=all")
    got = shares(name)
    assert got["Domain-0"] < 1.0  # dom0 idles
    for dom, want in EXPECTED[name].items():
        assert got[dom] == pytest.approx(want, abs=3.0), f"{name}: {dom} got {got}"
