"""End-to-end: scenario file -> CLI run -> trace, and the properties users rely on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import analysis  # noqa: F401  (registers DataFrame.xen)
from analysis.run import read_trace
from framework.guest.guest_os import GuestOS
from framework.hw970.regs import MSR_DR, MSR_IR
from framework.scenario import load_scenario, parse_scenario
from framework.simulation import Simulation

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "scenarios" / "quickstart.yaml"


def _run(scenario: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "framework.cli", "run", str(scenario), "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def quickstart_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("quickstart")
    outs = (base / "a", base / "b")
    for out in outs:
        proc = _run(QUICKSTART, out)
        assert proc.returncode == 0, proc.stderr
    return outs


def test_quickstart_trace_has_the_core_kinds(quickstart_runs: tuple[Path, Path]) -> None:
    df = read_trace(quickstart_runs[0] / "trace.parquet").xen.wide()
    kinds = set(df["kind"].astype(str))
    assert {"sched.switch", "hcall.enter", "evtchn.send", "evtchn.upcall", "exc.deliver"} <= kinds
    assert (df.loc[df["kind"] == "exc.deliver", "vector"] == 0x500).any()
    assert df["t_ns"].is_monotonic_increasing
    assert (quickstart_runs[0] / "run.json").exists()


def test_same_scenario_and_seed_give_identical_trace_bytes(
    quickstart_runs: tuple[Path, Path],
) -> None:
    a, b = (p / "trace.parquet" for p in quickstart_runs)
    assert a.read_bytes() == b.read_bytes()


def test_every_pingpong_event_is_handled_once_by_the_peer(
    quickstart_runs: tuple[Path, Path],
) -> None:
    df = read_trace(quickstart_runs[0] / "trace.parquet").xen.wide()
    # The guests' pingpong channel joins two guests; console and xenstore go to dom0.
    sends = df[(df["kind"] == "evtchn.send") & (df["remote_dom"] > 0) & (df["dom"] > 0)]
    handled = df[df["kind"] == "evtchn.handled"]
    binds = df[(df["kind"] == "evtchn.bind") & (df["text"] == "interdomain")]
    assert len(sends) == 2000  # 1000 rounds, each a ping and a pong
    for (rdom, rport), group in sends.groupby(["remote_dom", "remote_port"]):
        got = handled[(handled["dom"] == rdom) & (handled["port"] == rport)]
        # bind_interdomain raises one notification on the binder's new port (as Xen does)
        extra = len(binds[(binds["dom"] == rdom) & (binds["port"] == rport)])
        assert len(got) == len(group) + extra
        # each send precedes the handling it causes
        assert (got["t_ns"].to_numpy()[-len(group) :] >= group["t_ns"].to_numpy()).all()


def test_upcall_handler_runs_in_real_mode_on_the_core() -> None:
    text = QUICKSTART.read_text().replace("duration: 2s", "duration: 20ms")
    scenario = parse_scenario(text, "quickstart-short")
    seen: list[tuple[int, int]] = []
    original = GuestOS._evtchn_dispatch

    def spy(self: GuestOS, core: object) -> None:
        seen.append((core.msr, core.pc))  # type: ignore[attr-defined]
        original(self, core)  # type: ignore[arg-type]

    GuestOS._evtchn_dispatch = spy  # type: ignore[method-assign]
    try:
        sim = Simulation(scenario)
        sim.run()
    finally:
        GuestOS._evtchn_dispatch = original  # type: ignore[method-assign]
    assert len(seen) >= 1000
    for msr, return_pc in seen:
        assert not msr & (MSR_IR | MSR_DR)  # translation off: real mode
        assert return_pc < 0x10000  # returns into the RMA copy of the 0x500 handler


def test_other_scenarios_run(tmp_path: Path) -> None:
    for name in ("smp", "rma-unplaceable"):
        text = (ROOT / "scenarios" / f"{name}.yaml").read_text()
        text = text.replace("duration: 500ms", "duration: 60ms")
        scenario = parse_scenario(text, name)
        sim = Simulation(scenario)
        sim.run()
        counts = sim.rec.counts()
        assert counts["sched.switch"] > 0
    df = sim.rec.to_dataframe().xen.wide()
    fail = df[df["kind"] == "mem.fail"]
    assert len(fail) == 1 and "no naturally aligned 256MiB block" in fail["text"].iloc[0]
    assert "small" in sim.names.values()


def test_smp_runs_32_vcpus_on_4_cpus() -> None:
    text = (ROOT / "scenarios" / "smp.yaml").read_text().replace("500ms", "80ms")
    sim = Simulation(parse_scenario(text, "smp"))
    sim.run()
    df = sim.rec.to_dataframe().xen.wide()
    wide = next(d for d, n in sim.names.items() if n == "wide")
    ups = df[(df["kind"] == "vcpu.up") & (df["dom"] == wide)]
    assert sorted(ups["vcpu"]) == list(range(1, 32))
    ran = df[(df["kind"] == "sched.switch") & (df["dom"] == wide)]
    assert set(ran["vcpu"]) == set(range(32))
    switches = df[df["kind"] == "sched.switch"]
    assert set(switches[switches["dom"] >= 0]["cpu"]) == {0, 1, 2, 3}
    narrow = next(d for d, n in sim.names.items() if n == "narrow")
    assert set(switches[switches["dom"] == narrow]["cpu"]) == {3}  # its affinity


def test_quickstart_loads(tmp_path: Path) -> None:
    assert load_scenario(QUICKSTART).name == "quickstart"
