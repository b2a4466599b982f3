"""A simulation run: scenario -> machine -> Xen -> dom0 -> guests, and the run directory.

`Simulation` owns the SimPy environment and the recorder; nothing is global, so several
runs can live in one process (the benchmarks do that).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import simpy

from framework.errors import SimulationError
from framework.guest.kernel import GuestKernel, GuestOS, KernelMemory
from framework.guest.runtime import BUFFER_GPA, DEVTREE_GPA
from framework.hw970.core import Core
from framework.hw970.machine import Machine, MachineConfig
from framework.runinfo import write_run_json
from framework.scenario import (
    ComputeWorkload,
    PingpongWorkload,
    Scenario,
    TimerWorkload,
    Workload,
    is_dom0_name,
)
from framework.trace.recorder import Recorder
from framework.xen.devtree import build_domain_devtree, domain_spec
from framework.xen.domain import Domain
from framework.xen.hypervisor import Hypervisor, KernelImage
from framework.xen.toolstack import BuildError, DomainConfig, Toolstack

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class RunResult:
    out_dir: Path
    sim_ns: int
    wall_s: float


def workload_properties(loads: tuple[Workload, ...]) -> dict[str, int | str | list[int]]:
    """The /xen/workload devtree properties a kernel reads its workloads from."""
    props: dict[str, int | str | list[int]] = {}
    compute = [w.vcpu for w in loads if isinstance(w, ComputeWorkload)]
    timers = [w for w in loads if isinstance(w, TimerWorkload)]
    if compute:
        props["compute-vcpus"] = sorted(set(compute))
    if timers:
        props["timer-hz"] = timers[0].hz
        props["timer-vcpus"] = sorted({w.vcpu for w in timers})
    return props


class _Dom0Port:
    """dom0's kernel as the toolstack's hypercall port, for the native call in progress."""

    def __init__(self, kernel: GuestKernel, core: Core) -> None:
        self.kernel = kernel
        self.core = core

    def hypercall(self, r3: int, *args: int) -> int:
        return self.kernel.hypercall(self.core, r3, *args)

    def write(self, gpa: int, data: bytes) -> None:
        KernelMemory(self.core).write(gpa, data)

    def read(self, gpa: int, n: int) -> bytes:
        return KernelMemory(self.core).read(gpa, n)

    def console(self, text: str) -> None:
        self.kernel.console(self.core, text)


class Simulation:
    """Everything one scenario run needs, built in the order a real boot happens."""

    def __init__(self, scenario: Scenario, *, record: bool = True) -> None:
        self.scenario = scenario
        self.env = simpy.Environment()
        self.rec = Recorder(enabled=record)
        m = scenario.machine
        self.machine = Machine(
            MachineConfig(
                ncpus=m.cpus, memory_bytes=m.memory, clock_hz=m.clock, timebase_hz=m.timebase
            )
        )
        self.xen = Hypervisor(self.machine, self.env, self.rec)
        self.guests = GuestOS(self.machine, self.rec, dom0_init=self._dom0_init)
        rt = self.guests.runtime
        self.kernel = KernelImage(rt.image, 0, rt.entry, DEVTREE_GPA)
        self.names: dict[int, str] = {0: "Domain-0"}
        self.build_errors: list[str] = []
        self.dom0_kernel: GuestKernel | None = None
        self._plan = self._creation_plan()
        d0 = scenario.dom0
        self.xen.build_dom0(
            memory=d0.memory,
            rma=d0.rma,
            vcpus=d0.vcpus,
            weight=d0.weight,
            cap=d0.cap,
            kernel=self.kernel,
            devtree=self._dom0_devtree,
        )
        self.xen.start()

    # -- dom0 ------------------------------------------------------------------------------
    def _dom0_devtree(self, dom: Domain) -> bytes:
        d0 = self.scenario.dom0
        spec = domain_spec(
            domid=0,
            rma=d0.rma,
            memory=d0.memory,
            vcpus=d0.vcpus,
            console_evtchn=0,
            store_evtchn=0,
            privileged=True,
            clock_hz=self.scenario.machine.clock,
            timebase_hz=self.scenario.machine.timebase,
            workload=workload_properties(d0.workloads),
        )
        return build_domain_devtree(spec)

    def _creation_plan(self) -> list[tuple[int, list[int]]]:
        """Guests grouped by creation time; a pingpong pair is built together."""
        doms = self.scenario.domains
        index = {d.name: i for i, d in enumerate(doms)}
        when = [d.start for d in doms]
        for i, d in enumerate(doms):
            for w in d.workloads:
                if isinstance(w, PingpongWorkload):
                    if is_dom0_name(w.peer):
                        raise SimulationError(
                            f"domains[{i}].workloads: pingpong with dom0 is not supported; "
                            "pair two guests"
                        )
                    j = index[w.peer]
                    when[i] = when[j] = max(when[i], when[j])
        groups: dict[int, list[int]] = {}
        for i, t in enumerate(when):
            groups.setdefault(t, []).append(i)
        return sorted(groups.items())

    def console_lines(self, domid: int) -> list[str]:
        """Everything a domain printed: dom0 through console_io, guests via xenconsoled."""
        dom = self.xen.domains.get(domid)
        lines = list(dom.console_text) if dom is not None else []
        if self.dom0_kernel is not None and self.dom0_kernel.consoled is not None:
            lines += self.dom0_kernel.consoled.logs.get(domid, [])
        return lines

    def _dom0_init(self, kernel: GuestKernel, core: Core) -> None:
        """dom0's kernel is up: its toolstack creates the guests (now or on a timer)."""
        self.dom0_kernel = kernel
        for start, group in self._plan:
            if start <= core.now_ns():
                self._build_group(kernel, core, group)
            else:
                kernel.add_timer(
                    core, start, lambda c, _d, g=group: self._build_group(kernel, c, g)
                )

    def _build_group(self, kernel: GuestKernel, core: Core, group: list[int]) -> None:
        port = _Dom0Port(kernel, core)
        ts = Toolstack(
            port, self.kernel, self.scenario.machine.clock, self.scenario.machine.timebase
        )
        ts.BUF = BUFFER_GPA
        doms = self.scenario.domains
        built: list[int] = []
        for i in group:
            d = doms[i]
            cfg = DomainConfig(d.name, d.memory, d.vcpus, d.rma, d.weight, d.cap, d.affinity)
            try:
                domid = ts.create(cfg)
                self.names[domid] = d.name
                built.append(i)
            except BuildError as err:
                self._build_failed(ts, port, d.name, str(err))
        props = {i: workload_properties(doms[i].workloads) for i in built}
        for i in built:
            for w in doms[i].workloads:
                if isinstance(w, PingpongWorkload) and w.role == "pong":
                    j = next((k for k in built if doms[k].name == w.peer), None)
                    if j is None:
                        continue
                    p = ts.alloc_unbound(ts.domids[doms[i].name], ts.domids[doms[j].name])
                    props[i].update(
                        {
                            "pingpong-role": "pong",
                            "pingpong-port": p,
                            "pingpong-peer": ts.domids[doms[j].name],
                            "pingpong-vcpu": w.vcpu,
                            "pingpong-rounds": 0,
                        }
                    )
                    ping = next(x for x in doms[j].workloads if isinstance(x, PingpongWorkload))
                    props[j].update(
                        {
                            "pingpong-role": "ping",
                            "pingpong-port": p,
                            "pingpong-peer": ts.domids[doms[i].name],
                            "pingpong-vcpu": ping.vcpu,
                            "pingpong-rounds": ping.rounds,
                        }
                    )
        for i in built:
            d = doms[i]
            cfg = DomainConfig(d.name, d.memory, d.vcpus, d.rma, d.weight, d.cap, d.affinity)
            try:
                console_port, store_port = ts.load_and_start(cfg, props[i])
            except BuildError as err:
                self._build_failed(ts, port, d.name, str(err))
                continue
            # xend's part: introduce the domain to xenstored, connect its console.
            domid = ts.domids[d.name]
            assert kernel.store is not None and kernel.consoled is not None
            kernel.store.introduce(core, domid, store_port)
            kernel.consoled.connect(core, domid, console_port)

    def _build_failed(self, ts: Toolstack, port: _Dom0Port, name: str, why: str) -> None:
        self.build_errors.append(why)
        port.console(f"xm create {name}: Error: {why}")
        domid = ts.domids.pop(name, None)
        if domid is not None:
            self.names[domid] = f"{name} (not built)"
            from framework.xen import abi

            ts.domctl(abi.XEN_DOMCTL_destroydomain, domid)

    # -- running ---------------------------------------------------------------------------
    def run(self, progress: Progress | None = None, steps: int = 50) -> int:
        total = self.scenario.duration
        step = max(total // steps, 1)
        t = int(self.env.now)
        # The trace holds millions of small tuples the cyclic GC would rescan again and
        # again; collect only young objects, once per step, while the run lasts.
        gc_was = gc.isenabled()
        gc.disable()
        try:
            while t < total:
                t = min(t + step, total)
                self.env.run(until=t)
                gc.collect(1)
                if progress is not None:
                    progress(t, total)
        finally:
            if gc_was:
                gc.enable()
        return total


def run_scenario(
    scenario: Scenario,
    out_dir: Path | str,
    *,
    progress: Progress | None = None,
    record: bool = True,
) -> RunResult:
    """Run a scenario and write `trace.parquet`, `run.json` and console logs to out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    sim = Simulation(scenario, record=record)
    sim_ns = sim.run(progress)
    wall = time.perf_counter() - t0
    if record:
        sim.rec.write(out)
    consoles = out / "console"
    consoles.mkdir(exist_ok=True)
    for dom in [*sim.xen.domains.values()]:
        name = sim.names.get(dom.domid, f"d{dom.domid}")
        lines = sim.console_lines(dom.domid)
        (consoles / f"{name}.log").write_text("".join(line + "\n" for line in lines))
    write_run_json(
        out,
        scenario_name=scenario.name,
        scenario_sha256=scenario.sha256,
        seed=scenario.seed,
        sim_ns=sim_ns,
        wall_s=wall,
        counts=sim.rec.counts(),
        domains=sim.names,
        expectations=[],
    )
    return RunResult(out, sim_ns, wall)
