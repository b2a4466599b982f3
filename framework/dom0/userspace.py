"""dom0's user space for one run: the daemons, xend, and the scenario it carries out.

`Dom0` is what the guest kernel starts when it boots as dom0 (`Dom0UserSpace`): with the
kernel's I/O up it starts xenstored and xenconsoled; once every VCPU is up it starts xend,
which creates the scenario's guests (now or when they are due) and carries out the
timeline's xm actions on dom0's own timers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from framework.dom0.store_rings import StoreService
from framework.dom0.toolstack import Toolstack
from framework.dom0.xenconsoled import ConsoleService
from framework.dom0.xend import Xend
from framework.dom0.xm_create import DeviceBay, Dom0Port, XmCreate
from framework.dom0.xm_save import XmSave
from framework.errors import SimulationError
from framework.guest.kernel import GuestKernel
from framework.guest.xenbus import Xenbus
from framework.hw970.core import Core
from framework.scenario import (
    ConsoleInputAction,
    PauseAction,
    PingpongWorkload,
    RestoreAction,
    SaveAction,
    Scenario,
    SchedCreditAction,
    TimelineAction,
    UnpauseAction,
    VcpuPinAction,
    is_dom0_name,
)
from framework.xen.public.arch_powerpc import KernelImage
from framework.xen.public.domctl import CAP_UNCHANGED, WEIGHT_UNCHANGED


class Dom0:
    """xenstored, xenconsoled and xend, started by dom0's kernel, carrying out a scenario."""

    def __init__(
        self,
        scenario: Scenario,
        kernel_image: KernelImage,
        devices: DeviceBay,
        disk_dir: Path,
        macs: dict[tuple[int, int], str],
        *,
        on_first_guest: Callable[[], None] | None = None,
    ) -> None:
        self.scenario = scenario
        self.kernel_image = kernel_image
        self.on_first_guest = on_first_guest
        self.xm = XmCreate(scenario, self._toolstack, devices, disk_dir, macs)
        self.saves = XmSave(self, scenario, disk_dir.parent)
        self.plan = creation_plan(scenario)
        self.kernel: GuestKernel | None = None
        self.store: StoreService | None = None
        self.consoled: ConsoleService | None = None
        self.xend: Xend | None = None
        self._first_built = False
        #: Names of the guests xend has destroyed (Xen has killed them; one may still be
        #: dying while dom0's backends finish with its pages). Names, not domids: a domid
        #: is free for a later guest once its domain is gone.
        self.destroyed: set[str] = set()

    # -- Dom0UserSpace -------------------------------------------------------------------
    def start_daemons(self, k: GuestKernel, core: Core) -> Xenbus:
        """xenstored and xenconsoled; dom0's own xenbus talks to xenstored directly."""
        self.kernel = k
        self.store = StoreService(k)
        self.consoled = ConsoleService(k)
        return self.store.local

    def boot(self, k: GuestKernel, core: Core) -> None:
        """xend starts: the guests are created now or on a timer, then the timeline runs."""
        assert self.store is not None and self.consoled is not None
        self.kernel = k
        self.xend = Xend(k, self._domctl, self.store, self.consoled, self._destroyed)
        for start, group in self.plan:
            if start <= core.now_ns():
                self._build_group(core, group)
            else:
                k.add_timer(core, start, self._group_builder(group))
        for action in self.scenario.timeline:
            k.add_timer(core, max(action.at, core.now_ns()), self._actor(action))

    # -- what the run reports --------------------------------------------------------------
    @property
    def domids(self) -> dict[str, int]:
        return self.xm.domids

    @property
    def names(self) -> dict[int, str]:
        return self.xm.names

    @property
    def build_errors(self) -> list[str]:
        return self.xm.errors

    def console_log(self, name: str) -> list[str]:
        """What xenconsoled logged of the console of the guest called `name`."""
        return self.consoled.logs.get(name, []) if self.consoled is not None else []

    def logged_domains(self) -> list[str]:
        """Names of the guests xenconsoled has logged (connected), destroyed ones too."""
        return list(self.consoled.logs) if self.consoled is not None else []

    # -- xm ----------------------------------------------------------------------------------
    def _destroyed(self, _core: Core, domid: int) -> None:
        self.destroyed.add(self.names.get(domid, str(domid)))

    def _toolstack(self, port: Dom0Port) -> Toolstack:
        m = self.scenario.machine
        return Toolstack(port, self.kernel_image, m.clock, m.timebase)

    def toolstack(self, core: Core) -> Toolstack:
        """The toolstack, over dom0's kernel for the native call `core` is running."""
        return self._toolstack(self._port(core))

    def _port(self, core: Core) -> Dom0Port:
        assert self.kernel is not None
        return Dom0Port(self.kernel, core)

    def _domctl(self, core: Core, cmd: int, domid: int) -> int:
        assert self.kernel is not None
        rc, _ = self._toolstack(Dom0Port(self.kernel, core)).domctl(cmd, domid)
        return rc

    def _build_group(self, core: Core, group: list[int]) -> None:
        assert self.kernel is not None and self.xend is not None
        assert self.store is not None and self.consoled is not None
        if not self._first_built:
            self._first_built = True
            if self.on_first_guest is not None:
                self.on_first_guest()
        self.xm.build_group(self.kernel, core, group, self.xend, self.store, self.consoled)

    def _group_builder(self, group: list[int]) -> Callable[[Core, int], None]:
        """A dom0 timer callback that builds `group` when it fires."""

        def build(core: Core, _deadline: int) -> None:
            self._build_group(core, group)

        return build

    def _actor(self, action: TimelineAction) -> Callable[[Core, int], None]:
        """A dom0 timer callback that carries out a timeline action when it fires."""

        def act(core: Core, _deadline: int) -> None:
            self._act(core, action)

        return act

    def _act(self, core: Core, action: TimelineAction) -> None:
        """One timeline action, as dom0's toolstack performs it."""
        assert self.xend is not None
        if isinstance(action, RestoreAction):  # xm save / xm restore (framework.dom0.xm_save)
            self.saves.restore(core, action)
            return
        domid = self.domids.get(action.domain)
        if domid is None or action.domain in self.destroyed:
            self.xend.log(core, f"xm {action.action} {action.domain}: no such domain")
            return
        if isinstance(action, ConsoleInputAction):
            self.xend.console_input(core, domid, action.text)
        elif isinstance(action, PauseAction):
            self.xend.pause(core, domid, action.domain)
        elif isinstance(action, UnpauseAction):
            self.xend.unpause(core, domid, action.domain)
        elif isinstance(action, VcpuPinAction):
            rc = self._toolstack(self._port(core)).vcpu_pin(domid, action.vcpu, action.cpus)
            if rc < 0:
                self.xend.log(core, f"xm vcpu-pin {action.domain}: Error: setvcpuaffinity ({rc})")
        elif isinstance(action, SchedCreditAction):
            weight = WEIGHT_UNCHANGED if action.weight is None else action.weight
            cap = CAP_UNCHANGED if action.cap is None else action.cap
            rc = self._toolstack(self._port(core)).sched_credit(domid, weight, cap)
            if rc < 0:
                self.xend.log(core, f"xm sched-credit {action.domain}: Error: scheduler_op ({rc})")
        elif isinstance(action, SaveAction):
            self.saves.save(core, domid, action)
        else:
            self.xend.destroy(core, domid, action.domain)


def creation_plan(scenario: Scenario) -> list[tuple[int, list[int]]]:
    """Guests grouped by creation time; a pingpong pair is built together."""
    doms = scenario.domains
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


__all__ = ["Dom0", "creation_plan"]
