"""A simulation run: the composition root that builds machine, Xen and dom0 for a scenario,
runs it, and writes the run directory.

Built in the order a real boot happens: the 970 machine, Xen on it, the guest OS image and
the machine's devices as dom0's backends will drive them, dom0's user space (which carries
out the scenario: it creates the guests and runs the timeline's xm actions), then dom0
itself, which Xen builds and starts.  Collaborators can be injected (the scheduler, the
device model), as Ciw injects its node and server classes.  `Simulation` owns the SimPy
environment and the recorder; nothing is global, so several runs can live in one process.
"""

from __future__ import annotations

import gc
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import simpy

from analysis.expectations import CheckResult, check_run_dir
from framework.compiled import warn_if_stale
from framework.dom0.devctl import vif_mac
from framework.dom0.userspace import Dom0
from framework.dom0.xm_create import workload_properties
from framework.dom0.xm_views import UNAME, XEND_CONFIG_FORMAT
from framework.errors import UsageError
from framework.guest.guest_os import GuestOS
from framework.guest.kernel import GuestKernel
from framework.guest.runtime import DEVTREE_GPA, build_runtime
from framework.hw970.disk import DiskParams
from framework.hw970.link import LinkParams
from framework.hw970.machine import Machine, MachineConfig
from framework.iodevices import IoDevices, Moderation
from framework.runinfo import (
    CONSOLE_DIR,
    DISK_DIR,
    ERROR_LOG,
    RUN_FILE,
    XM_DIR,
    XM_VIEW_FILE,
    write_run_json,
)
from framework.scenario import Scenario
from framework.trace.recorder import TRACE_FILE, Recorder
from framework.workload_progress import stalled_workloads
from framework.xen.domain import Domain
from framework.xen.host_facts import host_facts
from framework.xen.hypervisor import Hypervisor
from framework.xen.jitter import Jitter, JitterParams
from framework.xen.public.arch_powerpc import KernelImage
from framework.xen.public.devtree import DomainDevtreeSpec, domain_spec
from framework.xen.public.vcpu import RUNSTATE_NAMES
from framework.xen.sched_credit import CreditScheduler

Progress = Callable[[int, int], None]
#: Makes the device model from Xen, the environment, the recorder and the scenario's
#: disk, link and interrupt-moderation parameters.
DeviceModel = Callable[
    [Hypervisor, simpy.Environment, Recorder, DiskParams, LinkParams, Moderation], IoDevices
]


#: Files every run writes in its run directory (or, error.log, a failed one).
RUN_OUTPUTS: Final = (TRACE_FILE, RUN_FILE, ERROR_LOG)
#: The images xm create makes for vbds without an `image`: `<domain>-<vbd>.img`.
_CREATED_IMAGE: Final = re.compile(r"[a-z0-9_-]+-xvd[a-z]\.img")


@dataclass(frozen=True)
class RunResult:
    out_dir: Path
    sim_ns: int
    wall_s: float
    #: One line per workload that made no progress for the whole run.
    warnings: tuple[str, ...] = ()
    #: One line per simulator bug (an exception out of a hypercall handler; the calling
    #: domain was crashed and the run went on); their tracebacks are in error.log.
    bugs: tuple[str, ...] = ()
    #: The scenario's `expect` checks, judged (empty without checks).
    checks: tuple[CheckResult, ...] = ()
    #: PASS, FAIL, XFAIL or XPASS; None for a scenario without checks.
    outcome: str | None = None


class Simulation:
    """Everything one scenario run needs, built in the order a real boot happens."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        record: bool = True,
        work_dir: Path | None = None,
        scheduler: Callable[[int], CreditScheduler] = CreditScheduler,
        device_model: DeviceModel = IoDevices,
    ) -> None:
        warn_if_stale()
        self.scenario = scenario
        # vbds without an image get one here (the run directory's disks/, else a temporary
        # directory that lives as long as the simulation).
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if work_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="xen970-")
            work_dir = Path(self._tmp.name)
        self.disk_dir = work_dir / DISK_DIR
        self.env = simpy.Environment()
        # The trace names the runstates it records; its schema cannot (it imports no Xen).
        self.rec = Recorder(enabled=record, enums={"runstate": RUNSTATE_NAMES})
        m = scenario.machine
        self.machine = Machine(
            MachineConfig(
                ncpus=m.cpus, memory_bytes=m.memory, clock_hz=m.clock, timebase_hz=m.timebase
            )
        )
        j = m.jitter
        self.xen = Hypervisor(
            self.machine,
            self.env,
            self.rec,
            scheduler,
            sync_quantum_ns=m.sync_quantum,
            jitter=Jitter(JitterParams(j.timer, j.ipi, j.cost), scenario.seed),
        )
        self.devices = device_model(
            self.xen,
            self.env,
            self.rec,
            DiskParams(m.disk.latency, m.disk.bandwidth, m.disk.queue_depth),
            LinkParams(m.link.bandwidth * 8, m.link.latency, m.link.mtu),
            Moderation(m.disk.irq_coalesce, m.disk.irq_timeout, m.link.irq_interval),
        )
        #: Free machine memory just before the first guest was created, and after each
        #: guest was destroyed (the two agree once every guest is gone).
        self.free_before_guests: int | None = None
        self.free_after_destroy: dict[int, int] = {}
        macs = {
            (i, n): vif.mac or vif_mac(i + 1, n)
            for i, d in enumerate(scenario.domains)
            for n, vif in enumerate(d.vifs)
        }
        self.dom0 = Dom0(
            scenario,
            self._kernel_image(),
            self.devices,
            self.disk_dir,
            macs,
            on_first_guest=self._first_guest,
        )
        self.guests = GuestOS(self.machine, self.rec, dom0=self.dom0, hardware=self.devices)
        self.xen.destroy_hooks.append(self._destroyed)
        self.kernel = self.dom0.kernel_image
        #: Free machine pages before dom0 was built: what every traced mem.alloc and
        #: mem.free start from (analysis.xm_info's free_memory).
        self.free_pages_at_boot = self.xen.alloc.free_bytes >> 12
        d0 = scenario.dom0
        self.xen.build_dom0(
            memory=d0.memory,
            rma=d0.rma,
            vcpus=d0.vcpus,
            weight=d0.weight,
            cap=d0.cap,
            kernel=self.kernel,
            devtree=self._dom0_devtree(),
        )
        self.xen.start()

    def _kernel_image(self) -> KernelImage:
        """The guest kernel every domain boots (the xen970 runtime image)."""
        rt = build_runtime()  # built once per process; GuestOS binds the same image's natives
        return KernelImage(rt.image, 0, rt.entry, DEVTREE_GPA)

    # -- what the run reports ----------------------------------------------------------------
    @property
    def domids(self) -> dict[str, int]:
        return self.dom0.domids

    @property
    def names(self) -> dict[int, str]:
        return self.dom0.names

    @property
    def build_errors(self) -> list[str]:
        return self.dom0.build_errors

    @property
    def dom0_kernel(self) -> GuestKernel | None:
        return self.dom0.kernel

    def console_lines(self, domid: int) -> list[str]:
        """Everything a domain printed: dom0 through console_io, guests via xenconsoled."""
        dom = self.xen.domains.get(domid)
        lines = list(dom.console_text) if dom is not None else []
        return lines + self.dom0.console_log(self.names.get(domid, ""))

    def console_logs(self) -> dict[str, list[str]]:
        """Every console by domain name: each live domain's, and every guest xenconsoled
        logged, destroyed ones too (a destroyed guest's id may name a later guest)."""
        logs = {
            name: self.console_lines(domid)
            for domid, name in sorted(self.names.items())
            if domid in self.xen.domains
        }
        for name in self.dom0.logged_domains():
            logs.setdefault(name, self.dom0.console_log(name))
        return logs

    def machine_facts(self) -> dict[str, object]:
        """run.json's `machine`: Xen's host facts, the free memory before dom0, dom0's
        uname and xend's config format (every fixed line of `xm info`)."""
        return {
            **host_facts(self.xen),
            "free_pages_at_boot": self.free_pages_at_boot,
            "dom0_uname": dict(UNAME),
            "xend_config_format": XEND_CONFIG_FORMAT,
        }

    # -- dom0 and the memory account -------------------------------------------------------
    def _dom0_devtree(self) -> DomainDevtreeSpec:
        """What dom0's /chosen and /xen say; Xen builds the tree from the firmware's."""
        d0 = self.scenario.dom0
        return domain_spec(
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

    def _first_guest(self) -> None:
        self.free_before_guests = self.xen.alloc.free_bytes

    def _destroyed(self, dom: Domain) -> None:
        """Xen destroyed a domain (after xm destroy, once dom0 mapped none of its frames):
        its kernel goes, its disks close and dom0's TCE tables for them go."""
        self.guests.forget_domain(dom.domid)
        self.devices.remove_domain(dom.domid)
        self.free_after_destroy[dom.domid] = self.xen.alloc.free_bytes

    # -- running ---------------------------------------------------------------------------
    def run(self, progress: Progress | None = None, steps: int = 50) -> int:
        total = self.scenario.duration
        step = max(total // steps, 1)
        t = int(self.env.now)
        # The trace holds millions of small records the cyclic GC would rescan again and
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
    """Run a scenario and write `trace.parquet`, `run.json` and console logs to out_dir.

    What an earlier run wrote there goes first (see `clear_previous_run`), so the
    directory never mixes two runs.  The wall time covers the run and everything it writes
    before run.json."""
    out = Path(out_dir)
    if scenario.checks and not record:
        raise UsageError("xen970: the scenario's expect checks read the trace; record one")
    clear_previous_run(out, scenario)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    sim = Simulation(scenario, record=record, work_dir=out)
    try:
        sim_ns = sim.run(progress)
    finally:
        sim.close()
    if record:
        sim.rec.write(out)
    consoles = out / CONSOLE_DIR
    consoles.mkdir(exist_ok=True)
    for name, lines in sim.console_logs().items():
        (consoles / f"{name}.log").write_text("".join(line + "\n" for line in lines))
    if sim.dom0.views:
        (out / XM_DIR).mkdir(exist_ok=True)
        for t_ns, view, text in sim.dom0.views:
            (out / XM_DIR / f"{view}-{t_ns}.txt").write_text(text)
    stalled = stalled_workloads(scenario, sim.domids, sim.guests, sim.xen)
    # A guest xm create could not build, or a device it could not plug, is said too.
    warnings = [*scenario.load_warnings, *sim.build_errors, *(w.message() for w in stalled)]
    bugs = sim.xen.bugs
    if bugs:
        (out / ERROR_LOG).write_text("".join(f"{b.message()}\n{b.traceback}\n" for b in bugs))
    wall = time.perf_counter() - t0
    write_run_json(
        out,
        scenario_name=scenario.name,
        scenario_sha256=scenario.sha256,
        seed=scenario.seed,
        sim_ns=sim_ns,
        wall_s=wall,
        counts=sim.rec.counts(),
        domains=sim.names,
        expect=scenario.checks,
        xfail=scenario.xfail,
        stalled_workloads=[w.as_json() for w in stalled],
        warnings=warnings,
        simulator_bugs=[b.as_json() for b in bugs],
        machine=sim.machine_facts(),
    )
    said = tuple(warnings)
    bug_lines = tuple(b.message() for b in bugs)
    if not scenario.checks:
        return RunResult(out, sim_ns, wall, said, bug_lines)
    checks, outcome = check_run_dir(out)
    return RunResult(out, sim_ns, wall, said, bug_lines, tuple(checks), outcome)


def clear_previous_run(out: Path, scenario: Scenario) -> None:
    """Remove what an earlier xen970 run wrote in `out`, and nothing else.

    xen970 writes `trace.parquet`, `run.json`, `error.log`, `console/<domain>.log` and,
    for vbds without an `image`, `disks/<domain>-<vbd>.img`.  Those go (so a `--no-trace`
    run leaves no older trace beside its run.json, and a re-run starts on fresh disks);
    any other file stays, and so does every image the scenario names, wherever it is."""
    for name in RUN_OUTPUTS:
        (out / name).unlink(missing_ok=True)
    consoles = out / CONSOLE_DIR
    if consoles.is_dir():
        for log in consoles.glob("*.log"):
            log.unlink()
    views = out / XM_DIR
    if views.is_dir():
        for view in views.iterdir():
            if XM_VIEW_FILE.fullmatch(view.name):
                view.unlink()
    disks = out / DISK_DIR
    if disks.is_dir():
        named = {
            p.resolve()
            for d in scenario.domains
            for vbd in d.vbds
            if (p := scenario.image_path(vbd)) is not None
        }
        for image in disks.iterdir():
            if _CREATED_IMAGE.fullmatch(image.name) and image.resolve() not in named:
                image.unlink()
