"""A simulation run: scenario -> machine -> Xen -> dom0 -> guests, and the run directory.

`Simulation` owns the SimPy environment and the recorder; nothing is global, so several
runs can live in one process (the benchmarks do that).
"""

from __future__ import annotations

import gc
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import simpy

from framework.compiled import warn_if_stale
from framework.dom0.toolstack import DomainConfig, Toolstack
from framework.errors import BuildError, SimulationError
from framework.guest.devctl import vbd_devid, vif_mac
from framework.guest.kernel import GuestKernel, GuestOS
from framework.guest.kmem import KernelMemory
from framework.guest.runtime import BUFFER_GPA, DEVTREE_GPA
from framework.guest.xend import DeviceConfig, Xend
from framework.hw970.core import Core
from framework.hw970.disk import DiskParams
from framework.hw970.link import LinkParams
from framework.hw970.machine import Machine, MachineConfig
from framework.iodevices import IoDevices, Moderation
from framework.runinfo import write_run_json
from framework.scenario import (
    BlockioWorkload,
    ComputeWorkload,
    ConsoleInputAction,
    ConsoleWorkload,
    DestroyAction,
    DomainSpec,
    NetstreamWorkload,
    PingpongWorkload,
    Scenario,
    TimerWorkload,
    Workload,
    is_dom0_name,
)
from framework.trace.recorder import Recorder
from framework.xen.domain import Domain
from framework.xen.hypervisor import Hypervisor
from framework.xen.public.arch_powerpc import KernelImage
from framework.xen.public.devtree import (
    WorkloadValue,
    build_domain_devtree,
    domain_spec,
    workload_instance,
)
from framework.xen.public.domctl import XEN_DOMCTL_destroydomain
from framework.xen.public.vcpu import RUNSTATE_NAMES

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class RunResult:
    out_dir: Path
    sim_ns: int
    wall_s: float


def workload_properties(loads: tuple[Workload, ...]) -> dict[str, WorkloadValue]:
    """The /xen/workload devtree properties a kernel reads its own workloads from
    (the device workloads are added by `Simulation`, which knows the devices)."""
    props: dict[str, WorkloadValue] = {}
    compute = [w.vcpu for w in loads if isinstance(w, ComputeWorkload)]
    timers = [w for w in loads if isinstance(w, TimerWorkload)]
    if compute:
        props["compute-vcpus"] = sorted(set(compute))
    if timers:
        props["timer-hz"] = timers[0].hz
        props["timer-vcpus"] = sorted({w.vcpu for w in timers})
    consoles = [w for w in loads if isinstance(w, ConsoleWorkload)]
    for i, w in enumerate(consoles):
        assert w.text is not None  # filled in from the domain's name by the scenario
        props.update(
            workload_instance(
                "console", i, {"text": w.text, "every": w.every, "count": w.count, "vcpu": w.vcpu}
            )
        )
    return props


def _stream_seed(seed: int, name: str, what: str) -> int:
    """A workload's own 32-bit seed: from the scenario seed and where it runs."""
    return random.Random(f"{seed}:{name}:{what}").getrandbits(32)


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

    def __init__(
        self, scenario: Scenario, *, record: bool = True, work_dir: Path | None = None
    ) -> None:
        warn_if_stale()
        self.scenario = scenario
        # vbds without an image get one here (the run directory's disks/, else a temporary
        # directory that lives as long as the simulation).
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if work_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="xen970-")
            work_dir = Path(self._tmp.name)
        self.disk_dir = work_dir / "disks"
        self.env = simpy.Environment()
        # The trace names the runstates it records; its schema cannot (it imports no Xen).
        self.rec = Recorder(enabled=record, enums={"runstate": RUNSTATE_NAMES})
        m = scenario.machine
        self.machine = Machine(
            MachineConfig(
                ncpus=m.cpus, memory_bytes=m.memory, clock_hz=m.clock, timebase_hz=m.timebase
            )
        )
        self.xen = Hypervisor(self.machine, self.env, self.rec)
        self.guests = GuestOS(self.machine, self.rec, dom0_init=self._dom0_init)
        self.devices = IoDevices(
            self.xen,
            self.env,
            self.rec,
            DiskParams(m.disk.latency, m.disk.bandwidth, m.disk.queue_depth),
            LinkParams(m.link.bandwidth * 8, m.link.latency, m.link.mtu),
            Moderation(m.disk.irq_coalesce, m.disk.irq_timeout, m.link.irq_interval),
        )
        self.guests.hardware = self.devices
        self.domids: dict[str, int] = {}
        self.xend: Xend | None = None
        #: Free machine memory just before the first guest was created, and after each
        #: guest was destroyed (the two agree once every guest is gone).
        self.free_before_guests: int | None = None
        self.free_after_destroy: dict[int, int] = {}
        self._macs = {
            (i, n): vif.mac or vif_mac(i + 1, n)
            for i, d in enumerate(scenario.domains)
            for n, vif in enumerate(d.vifs)
        }
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
        """dom0's kernel is up: its toolstack creates the guests (now or on a timer) and
        carries out the timeline."""
        self.dom0_kernel = kernel
        self.xend = Xend(kernel, self._domctl, self._destroyed)
        for start, group in self._plan:
            if start <= core.now_ns():
                self._build_group(kernel, core, group)
            else:
                kernel.add_timer(core, start, self._group_builder(kernel, group))
        for action in self.scenario.timeline:
            kernel.add_timer(core, max(action.at, core.now_ns()), self._actor(action))

    def _group_builder(self, kernel: GuestKernel, group: list[int]) -> Callable[[Core, int], None]:
        """A dom0 timer callback that builds `group` when it fires."""

        def build(core: Core, _deadline: int) -> None:
            self._build_group(kernel, core, group)

        return build

    def _actor(self, action: ConsoleInputAction | DestroyAction) -> Callable[[Core, int], None]:
        """A dom0 timer callback that carries out a timeline action when it fires."""

        def act(core: Core, _deadline: int) -> None:
            self._act(core, action)

        return act

    def _domctl(self, core: Core, cmd: int, domid: int) -> int:
        assert self.dom0_kernel is not None
        ts = Toolstack(
            _Dom0Port(self.dom0_kernel, core),
            self.kernel,
            self.scenario.machine.clock,
            self.scenario.machine.timebase,
        )
        ts.BUF = BUFFER_GPA
        rc, _ = ts.domctl(cmd, domid)
        return rc

    def _act(self, core: Core, action: ConsoleInputAction | DestroyAction) -> None:
        """One timeline action, as dom0's toolstack performs it."""
        assert self.xend is not None
        domid = self.domids.get(action.domain)
        if domid is None or domid not in self.xen.domains:
            self.xend.log(core, f"xm {action.action} {action.domain}: no such domain")
            return
        if isinstance(action, ConsoleInputAction):
            self.xend.console_input(core, domid, action.text)
        else:
            self.xend.destroy(core, domid, action.domain)

    def _destroyed(self, _core: Core, domid: int) -> None:
        """xm destroy finished: the guest's disks close and dom0's TCE tables go."""
        self.devices.remove_domain(domid)
        self.free_after_destroy[domid] = self.xen.alloc.free_bytes

    def _build_group(self, kernel: GuestKernel, core: Core, group: list[int]) -> None:
        port = _Dom0Port(kernel, core)
        ts = Toolstack(
            port, self.kernel, self.scenario.machine.clock, self.scenario.machine.timebase
        )
        ts.BUF = BUFFER_GPA
        doms = self.scenario.domains
        if self.free_before_guests is None:
            self.free_before_guests = self.xen.alloc.free_bytes
        built: list[int] = []
        for i in group:
            d = doms[i]
            cfg = DomainConfig(d.name, d.memory, d.vcpus, d.rma, d.weight, d.cap, d.affinity)
            try:
                domid = ts.create(cfg)
                self.names[domid] = d.name
                self.domids[d.name] = domid
                built.append(i)
            except BuildError as err:
                self._build_failed(ts, port, d.name, str(err))
        props = {i: {**workload_properties(doms[i].workloads), **self._io_props(i)} for i in built}
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
            self._plug_devices(core, i, domid)

    def _plug_devices(self, core: Core, i: int, domid: int) -> None:
        """Attach the guest's disks and links, then let xend write its device nodes."""
        d = self.scenario.domains[i]
        configs: list[DeviceConfig] = []
        for vbd in d.vbds:
            devid = vbd_devid(vbd.name)
            image = self.scenario.image_path(vbd)
            shown = vbd.image
            if image is None:
                self.disk_dir.mkdir(parents=True, exist_ok=True)
                image = self.disk_dir / f"{d.name}-{vbd.name}.img"
                shown = f"disks/{image.name}"
            assert vbd.size is not None
            try:
                self.devices.add_vbd(domid, devid, image, vbd.size, writable=vbd.mode == "w")
            except (OSError, ValueError) as err:
                self._device_failed(core, d.name, f"vbd {vbd.name}: {err}")
                continue
            configs.append(
                DeviceConfig(
                    "vbd",
                    devid,
                    {"params": str(shown), "mode": vbd.mode, "type": "file", "dev": vbd.name},
                    {"virtual-device": str(devid), "device-type": "disk"},
                )
            )
        for n, vif in enumerate(d.vifs):
            mac = self._macs[(i, n)]
            self.devices.add_vif(domid, n)
            configs.append(
                DeviceConfig(
                    "vif",
                    n,
                    {"bridge": vif.bridge, "mac": mac, "handle": str(n)},
                    {"mac": mac, "handle": str(n)},
                )
            )
        if configs:
            assert self.xend is not None
            self.xend.add_devices(core, domid, configs)

    def _device_failed(self, core: Core, name: str, why: str) -> None:
        self.build_errors.append(why)
        assert self.dom0_kernel is not None
        self.dom0_kernel.console(core, f"xm create {name}: Error: {why}")

    def _io_props(self, i: int) -> dict[str, WorkloadValue]:
        """Device workload properties of guest `i`: blockio per vbd, netstream per vif."""
        d: DomainSpec = self.scenario.domains[i]
        seed = self.scenario.seed
        props: dict[str, WorkloadValue] = {}
        for w in d.workloads:
            if isinstance(w, BlockioWorkload):
                devid = vbd_devid(w.device)
                params: dict[str, WorkloadValue] = {
                    "pattern": w.pattern,
                    "read-percent": w.read_percent,
                    "block-size": w.block_size,
                    "queue-depth": w.queue_depth,
                    "requests": w.requests,
                    "verify": int(w.verify),
                    "region": w.region or 0,
                    "seed": _stream_seed(seed, d.name, w.device),
                    "vcpu": w.vcpu,
                }
                props.update(workload_instance("blockio", devid, params))
            elif isinstance(w, NetstreamWorkload):
                j = next(k for k, other in enumerate(self.scenario.domains) if other.name == w.peer)
                peer = self.scenario.domains[j]
                mine, peer_mac = next(
                    (n, self._macs[(j, m)])
                    for n, vif in enumerate(d.vifs)
                    for m, theirs in enumerate(peer.vifs)
                    if vif.bridge == theirs.bridge
                )
                params = {
                    "peer-mac": peer_mac,
                    "message-size": w.message_size,
                    "messages": w.messages,
                    "seed": _stream_seed(seed, d.name, f"vif{mine}"),
                    "vcpu": w.vcpu,
                }
                props.update(workload_instance("netstream", mine, params))
        return props

    def _build_failed(self, ts: Toolstack, port: _Dom0Port, name: str, why: str) -> None:
        self.build_errors.append(why)
        port.console(f"xm create {name}: Error: {why}")
        domid = ts.domids.pop(name, None)
        if domid is not None:
            self.names[domid] = f"{name} (not built)"
            self.domids.pop(name, None)
            ts.domctl(XEN_DOMCTL_destroydomain, domid)

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

    def close(self) -> None:
        """Close the disk images (flushing them), stop opening engines ahead and drop the
        temporary directory."""
        self.devices.close()
        self.machine.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


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
    sim = Simulation(scenario, record=record, work_dir=out)
    try:
        sim_ns = sim.run(progress)
    finally:
        sim.close()
    wall = time.perf_counter() - t0
    if record:
        sim.rec.write(out)
    consoles = out / "console"
    consoles.mkdir(exist_ok=True)
    logged = sim.dom0_kernel.consoled.logs if sim.dom0_kernel and sim.dom0_kernel.consoled else {}
    for domid, name in sorted(sim.names.items()):
        if domid not in sim.xen.domains and domid not in logged:
            continue  # never built: it printed nothing
        lines = sim.console_lines(domid)
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
