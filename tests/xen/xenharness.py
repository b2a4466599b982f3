"""Xen test harness: a booted quick-start machine and a hypercall caller."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from framework.hw970.core import Core
from framework.scenario import parse_scenario
from framework.simulation import Simulation
from framework.xen.domain import Domain
from framework.xen.hcall import hypercall_entry
from framework.xen.public.layout import Layout
from framework.xen.public.xen import HYPERVISOR_event_channel_op, xen_mark
from framework.xen.public.xencomm import build_descriptor

ROOT = Path(__file__).resolve().parents[2]
ARG, DESC = 0x30000, 0x31000  # guest-physical scratch addresses inside every test guest's RMA


def quickstart(duration: str) -> Simulation:
    """The quick-start scenario, cut to `duration`, built but not run."""
    text = (ROOT / "scenarios" / "quickstart.yaml").read_text()
    return Simulation(parse_scenario(text.replace("duration: 2s", f"duration: {duration}"), "t"))


def domain_named(sim: Simulation, name: str) -> Domain:
    return next(d for d in sim.xen.domains.values() if sim.names.get(d.domid) == name)


class Caller:
    """Issues hypercalls as VCPU 0 of a domain from a spare core, as `sc 1` would."""

    def __init__(self, sim: Simulation, dom: Domain) -> None:
        m = sim.machine
        self.dom = dom
        self.mem = m.memory
        self.core = Core(9, m.memory, m.config.clock_hz, m.config.timebase_hz, {})
        self.core.on_hypercall = hypercall_entry(sim.xen)
        self.core.load(dom.vcpus[0].arch)

    def call(self, r3: int, *args: int) -> int:
        core = self.core
        core.set_gpr(3, r3)
        for i, a in enumerate(args):
            core.set_gpr(4 + i, a)
        core.on_hypercall(core)
        ret = core.gpr(3)
        return ret - (1 << 64) if ret >> 63 else ret

    def write(self, gpa: int, data: bytes) -> None:
        self.mem.write(self.dom.gpa_to_maddr(gpa), data)

    def read(self, gpa: int, n: int) -> bytes:
        return self.mem.read(self.dom.gpa_to_maddr(gpa), n)

    def op(self, cmd: int, layout: Layout, **fields: int) -> tuple[int, dict[str, int]]:
        """event_channel_op with its argument passed through a xencomm descriptor."""
        self.write(ARG, layout.pack(**fields))
        self.write(DESC, build_descriptor([ARG]))
        rc = self.call(xen_mark(HYPERVISOR_event_channel_op), cmd, DESC)
        return rc, layout.unpack(self.read(ARG, layout.size))


@pytest.fixture(scope="module")
def booted() -> Simulation:
    """Xen, dom0 and the three quick-start guests, 5 ms into the run."""
    sim = quickstart("5ms")
    sim.run()
    return sim


@pytest.fixture
def caller(booted: Simulation) -> Callable[[str], Caller]:
    return lambda name: Caller(booted, domain_named(booted, name))
