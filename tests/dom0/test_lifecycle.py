"""xend's lifecycle verbs from the timeline (create, shutdown, reboot) and what it does
when a guest shuts down (on_poweroff / on_reboot / on_crash), checked from the trace."""

from __future__ import annotations

import pandas as pd
import pytest

from framework.scenario import parse_scenario
from framework.simulation import Simulation
from framework.xen.public.sched import SHUTDOWN_crash, SHUTDOWN_poweroff, SHUTDOWN_reboot
from framework.xen.public.vcpu import Runstate

MS = 1_000_000

BASE = """
name: life
duration: {duration}
machine: {{cpus: 2, memory: 1GiB}}
domains:
  - name: guest
    memory: 64MiB
    devices: [{{kind: vbd, name: xvda, size: 8MiB}}]
    workloads: [{{kind: timer, hz: 1000}}, {{kind: blockio, device: xvda, queue_depth: 2}}]
    {fields}
timeline:
{timeline}
"""


def _run(
    timeline: str, fields: str = "", duration: str = "40ms"
) -> tuple[Simulation, pd.DataFrame]:
    text = BASE.format(duration=duration, fields=fields or "weight: 256", timeline=timeline)
    sim = Simulation(parse_scenario(text, "life"))
    sim.run()
    return sim, sim.rec.to_dataframe().xen.wide()


def _of(df: pd.DataFrame, kind: str, dom: int | None = None) -> pd.DataFrame:
    rows = df[df["kind"] == kind]
    return rows if dom is None else rows[rows["dom"] == dom]


def _ticks(df: pd.DataFrame, dom: int) -> pd.Series:
    marks = _of(df, "guest.mark", dom)
    return marks[marks["text"] == "timer.tick"]["t_ns"]


def test_reboot_builds_the_guest_again_and_its_workloads_run_again() -> None:
    sim, df = _run("  - {at: 10ms, action: reboot, domain: guest}")
    old, new = 1, sim.domids["guest"]
    assert new != old and sim.names[new] == sim.names[old] == "guest"
    assert list(_of(df, "dom.shutdown", old)["reason"]) == [SHUTDOWN_reboot]
    exits = _of(df, "xend.shutdown", old)
    assert list(exits["reason"]) == [SHUTDOWN_reboot]
    assert list(exits["text"]) == ["reboot: restart"]
    assert len(_of(df, "dom.destroy", old)) == 1
    restart = _of(df, "xend.restart")
    assert list(restart["dom"]) == [new] and list(restart["text"]) == [f"guest (was {old})"]
    t_restart = int(restart["t_ns"].iloc[0])
    # The new domain ticks from shortly after its rebuild to the end; the old one stopped.
    assert _ticks(df, old).max() < 11 * MS
    new_ticks = _ticks(df, new)
    assert new_ticks.min() > t_restart and new_ticks.max() > 38 * MS
    assert len(new_ticks) >= 25
    # Its disk was plugged again and its blockio ran again from the new domain.
    assert len(_of(df, "blk.complete", new)) > 0
    connected = _of(df, "xenbus.state", new)
    assert (connected["xb_state"] == 4).any()  # Connected
    # A kernel banner per incarnation, and it ends running.
    assert sum("xen970 kernel: domain" in line for line in sim.console_lines(new)) == 2
    assert sim.xen.domains[new].vcpus[0].runstate != Runstate.OFFLINE


def test_shutdown_ends_the_guest_by_default() -> None:
    sim, df = _run("  - {at: 10ms, action: shutdown, domain: guest}")
    assert list(_of(df, "dom.shutdown", 1)["reason"]) == [SHUTDOWN_poweroff]
    assert list(_of(df, "xend.shutdown", 1)["text"]) == ["poweroff: destroy"]
    assert len(_of(df, "dom.destroy", 1)) == 1
    assert _of(df, "xend.restart").empty and len(_of(df, "dom.create")) == 2
    assert 1 not in sim.xen.domains


@pytest.mark.parametrize(
    ("fields", "action", "exit_text", "rebuilt", "alive"),
    [
        ("on_poweroff: restart", "shutdown", "poweroff: restart", True, True),
        ("on_poweroff: preserve", "shutdown", "poweroff: preserve", False, True),
        ("on_reboot: destroy", "reboot", "reboot: destroy", False, False),
        ("on_reboot: preserve", "reboot", "reboot: preserve", False, True),
    ],
)
def test_on_poweroff_and_on_reboot_choose_what_xend_does(
    fields: str, action: str, exit_text: str, rebuilt: bool, alive: bool
) -> None:
    sim, df = _run(f"  - {{at: 10ms, action: {action}, domain: guest}}", fields)
    assert list(_of(df, "xend.shutdown", 1)["text"]) == [exit_text]
    assert (not _of(df, "xend.restart").empty) == rebuilt
    assert (1 in sim.xen.domains) == (alive and not rebuilt)
    if alive and not rebuilt:  # preserved: shut down, its memory kept
        assert sim.xen.domains[1].shutdown_reason is not None
        assert _ticks(df, 1).max() < 11 * MS


def test_on_crash_restart_builds_a_crashed_guest_again() -> None:
    text = BASE.format(duration="40ms", fields="on_crash: restart", timeline="  []")
    sim = Simulation(parse_scenario(text.replace("timeline:\n  []", "timeline: []"), "life"))
    sim.env.run(until=10 * MS)
    sim.xen.domain_crash(sim.xen.domains[1], "crashed by the test", 0)
    sim.run()
    df = sim.rec.to_dataframe().xen.wide()
    assert list(_of(df, "xend.shutdown", 1)["reason"]) == [SHUTDOWN_crash]
    assert list(_of(df, "xend.shutdown", 1)["text"]) == ["crash: restart"]
    assert _ticks(df, sim.domids["guest"]).max() > 38 * MS


def test_create_builds_a_start_timeline_guest_then_and_again_after_destroy() -> None:
    sim, df = _run(
        "  - {at: 5ms, action: create, domain: guest}\n"
        "  - {at: 15ms, action: destroy, domain: guest}\n"
        "  - {at: 25ms, action: create, domain: guest}",
        "start: timeline",
    )
    creates = _of(df, "dom.create")
    guests = creates[creates["dom"] != 0]
    assert len(guests) == 2
    first, second = (int(t) for t in guests["t_ns"])
    assert 5 * MS <= first < 6 * MS and 25 * MS <= second < 26 * MS
    assert sim.domids["guest"] == int(guests["dom"].iloc[1])
    assert _ticks(df, int(guests["dom"].iloc[0])).min() > 5 * MS
    assert _ticks(df, sim.domids["guest"]).max() > 38 * MS


def test_create_while_the_domain_still_exists_is_refused_as_xm_does() -> None:
    # The guest ignores nothing, but its devices take a while to close: at 10 ms + 1 ns
    # it still exists, so xend refuses the create (the validation cannot know this).
    sim, df = _run(
        "  - {at: 10ms, action: shutdown, domain: guest}\n"
        "  - {at: 10000001ns, action: create, domain: guest}"
    )
    said = [line for line in sim.console_lines(0) if "xm create guest" in line]
    assert said == ["xm create guest: Error: Domain 'guest' already exists with ID '1'"]
    assert len(_of(df, "dom.create")) == 2


def test_a_guest_that_ignores_shutdown_is_destroyed_by_xend_after_30s() -> None:
    text = BASE.format(
        duration="31s",
        fields="weight: 256",
        timeline="  - {at: 10ms, action: shutdown, domain: guest}",
    ).replace(
        "workloads: [{kind: timer, hz: 1000}, {kind: blockio, device: xvda, queue_depth: 2}]", ""
    )
    sim = Simulation(parse_scenario(text, "life"))
    sim.env.run(until=5 * MS)
    k = sim.guests.kernels[1]
    assert k.control is not None
    k.control.register("poweroff", lambda _core: None)  # deaf to xm shutdown
    assert sim.run() == 31_000 * MS
    df = sim.rec.to_dataframe().xen.wide()
    assert _of(df, "dom.shutdown", 1)["reason"].tolist() == [SHUTDOWN_poweroff]  # xend's destroy
    destroyed = _of(df, "dom.destroy", 1)
    assert len(destroyed) == 1 and int(destroyed["t_ns"].iloc[0]) >= 30_010 * MS
    said = [line for line in sim.console_lines(0) if "timeout" in line]
    assert said == ["xend: Domain shutdown timeout expired: name=guest id=1"]


def test_no_running_time_between_pause_and_unpause() -> None:
    sim, df = _run(
        "  - {at: 10ms, action: pause, domain: guest}\n  - {at: 20ms, action: unpause, domain: guest}"
    )
    paused = int(_of(df, "dom.pause", 1)["t_ns"].iloc[0])
    starts = _of(df, "dom.start", 1)["t_ns"]
    unpaused = int(starts[starts > paused].iloc[0])
    assert 10 * MS <= paused < unpaused and unpaused >= 20 * MS
    rs = _of(df, "sched.runstate", 1)
    running = int(Runstate.RUNNING)
    # Running intervals from the runstate records: none overlaps (paused, unpaused).
    busy = 0
    for _vcpu, rows in rs.groupby("vcpu"):
        t, state = list(rows["t_ns"]), list(rows["state"])
        for i in range(len(t)):
            if state[i] != running:
                continue
            end = t[i + 1] if i + 1 < len(t) else sim.scenario.duration
            busy += max(0, min(end, unpaused) - max(t[i], paused))
    assert busy == 0
    ticks = _ticks(df, 1)
    assert ticks[(ticks > paused) & (ticks < unpaused)].empty
    assert ticks.max() > 38 * MS  # it runs again after
