"""The guest's control/shutdown watch: what a domU kernel does when the toolstack writes
`poweroff`, `halt`, `reboot` or something it does not know, seen in the trace."""

from __future__ import annotations

import pandas as pd
import pytest

from framework.guest.control import CONTROL_SHUTDOWN
from framework.guest.xs_wire import XS_WATCH, XS_WRITE
from framework.hw970.core import Core
from framework.scenario import parse_scenario
from framework.simulation import Simulation
from framework.xen.public.io.xenbus import XenbusState
from framework.xen.public.sched import SCHEDOP_shutdown, SHUTDOWN_poweroff, SHUTDOWN_reboot
from framework.xen.public.xen import HYPERVISOR_sched_op

MS = 1_000_000

SCENARIO = """
name: control
duration: 30ms
machine: {{cpus: 2, memory: 1GiB}}
domains:
  - name: guest
    memory: 64MiB
    devices: [{{kind: vbd, name: xvda, size: 8MiB}}, {{kind: vif, bridge: br0}}]
    workloads:
      - {{kind: timer, hz: 1000}}
      - {{kind: blockio, device: xvda, queue_depth: 4}}
  - {{name: peer, memory: 64MiB, devices: [{{kind: vif, bridge: br0}}]}}
timeline:
  - {{at: 10ms, action: {action}, domain: guest{extra}}}
"""


def _sim(action: str, extra: str = "") -> Simulation:
    return Simulation(parse_scenario(SCENARIO.format(action=action, extra=extra), "control"))


def _marks(df: pd.DataFrame, dom: int) -> list[str]:
    mine = df[(df["kind"] == "guest.mark") & (df["dom"] == dom)]
    return [t for t in mine["text"] if str(t).startswith("control.")]


@pytest.mark.parametrize(
    ("action", "extra", "value", "reason"),
    [
        ("shutdown", "", "poweroff", SHUTDOWN_poweroff),
        ("shutdown", ", reason: halt", "halt", SHUTDOWN_poweroff),  # halt powers off
        ("reboot", "", "reboot", SHUTDOWN_reboot),
    ],
    ids=["poweroff", "halt", "reboot"],
)
def test_the_guest_closes_its_devices_then_shuts_down_with_the_reason(
    action: str, extra: str, value: str, reason: int
) -> None:
    sim = _sim(action, extra)
    sim.run()
    df = sim.rec.to_dataframe().xen.wide()
    guest = 1  # the first guest built
    assert _marks(df, guest) == [f"control.shutdown {value}"]
    shutdown = df[(df["kind"] == "dom.shutdown") & (df["dom"] == guest)]
    assert list(shutdown["reason"]) == [reason]
    t_down = int(shutdown["t_ns"].iloc[0])
    # The guest asked Xen itself: one sched_op(SCHEDOP_shutdown) from its VCPU.
    calls = df[
        (df["kind"] == "hcall.enter")
        & (df["dom"] == guest)
        & (df["nr"] == HYPERVISOR_sched_op)
        & (df["arg0"] == SCHEDOP_shutdown)
    ]
    assert len(calls) == 1
    # Both frontends went Closing then Closed (their rings released) before that.
    states = df[(df["kind"] == "xenbus.state") & (df["dom"] == guest)]
    for dev in ("device/vbd/51712", "device/vif/0"):
        mine = states[states["text"] == dev]
        closed = mine[mine["xb_state"] == int(XenbusState.Closed)]
        assert len(closed) == 1 and int(closed["t_ns"].iloc[0]) < t_down
    # Every block request the guest submitted was answered before it went.
    submitted = df[(df["kind"] == "blk.submit") & (df["dom"] == guest)]
    completed = df[(df["kind"] == "blk.complete") & (df["dom"] == guest)]
    assert len(submitted) == len(completed) > 0
    assert completed["t_ns"].max() < t_down
    # It watched the node from boot, and cleared it (one write) once it read the request.
    xs_req = df[(df["kind"] == "xs.request") & (df["dom"] == guest)]
    mine = xs_req[xs_req["text"] == CONTROL_SHUTDOWN]
    assert list(mine[mine["t_ns"] < 10 * MS]["xs_type"])[:1] == [XS_WATCH]
    writes = mine[mine["xs_type"] == XS_WRITE]
    assert len(writes) == 1 and int(writes["t_ns"].iloc[0]) > 10 * MS


def _ignore(_core: Core) -> None:
    return None


def test_an_unknown_request_is_ignored_with_linuxs_console_line() -> None:
    sim = _sim("shutdown", ", reason: halt")
    sim.env.run(until=5 * MS)
    k = sim.guests.kernels[1]
    assert k.control is not None
    del k.control.handlers["halt"]  # a kernel that knows no `halt`
    sim.run()
    df = sim.rec.to_dataframe().xen.wide()
    assert "Ignoring shutdown request: halt" in sim.console_lines(1)
    assert df[(df["kind"] == "dom.shutdown") & (df["dom"] == 1)].empty
    ticks = df[(df["kind"] == "guest.mark") & (df["dom"] == 1) & (df["text"] == "timer.tick")]
    assert ticks["t_ns"].max() > 25 * MS  # still running to the end


def test_a_registered_handler_replaces_the_standard_one() -> None:
    sim = _sim("reboot")
    sim.env.run(until=5 * MS)
    k = sim.guests.kernels[1]
    assert k.control is not None
    k.control.register("reboot", _ignore)  # a guest that ignores xm reboot
    assert sim.run() == 30 * MS  # the run still ends at its duration
    df = sim.rec.to_dataframe().xen.wide()
    assert _marks(df, 1) == ["control.shutdown reboot"]
    assert df[df["kind"] == "dom.shutdown"].empty
    assert df[df["kind"] == "dom.create"]["dom"].tolist() == [0, 1, 2]  # nothing rebuilt
