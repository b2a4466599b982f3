"""dom0's user space for one run: the daemons, xend, and the scenario it carries out.

`Dom0` is what the guest kernel starts when it boots as dom0 (`Dom0UserSpace`): with the
kernel's I/O up it starts xenstored and xenconsoled; once every VCPU is up it starts xend,
which creates the scenario's guests (now or when they are due) and carries out the
timeline's xm actions on dom0's own timers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from framework.dom0.grant_tool import GrantTool
from framework.dom0.hotplug import HOTPLUG_ACTIONS, Hotplug
from framework.dom0.lifecycle import DomainLifecycle
from framework.dom0.store_rings import StoreService
from framework.dom0.toolstack import Toolstack
from framework.dom0.xenconsoled import ConsoleService
from framework.dom0.xend import Xend
from framework.dom0.xm_create import DeviceBay, Dom0Port, XmCreate
from framework.dom0.xm_save import XmSave
from framework.dom0.xm_views import XmViews
from framework.errors import SimulationError
from framework.guest.kernel import GuestKernel
from framework.guest.xenbus import Xenbus
from framework.hw970.core import Core
from framework.scenario import (
    GRANT_ACTIONS,
    ConsoleInputAction,
    CreateAction,
    PauseAction,
    PingpongWorkload,
    RebootAction,
    RestoreAction,
    SaveAction,
    Scenario,
    SchedCreditAction,
    ShutdownAction,
    TimelineAction,
    UnpauseAction,
    VcpuPinAction,
    XmDmesgAction,
    XmDomidAction,
    XmDomnameAction,
    XmInfoAction,
    XmListAction,
    XmVcpuListAction,
    XmViewAction,
    is_dom0_name,
)
from framework.trace.ids import K
from framework.xen.public.arch_powerpc import KernelImage
from framework.xen.public.domctl import (
    CAP_UNCHANGED,
    WEIGHT_UNCHANGED,
    XEN_DOMCTL_getdomaininfo,
)


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
        self.grant_tool = GrantTool(scenario, self.xm.domids)
        self.kernel: GuestKernel | None = None
        self.store: StoreService | None = None
        self.consoled: ConsoleService | None = None
        self.xend: Xend | None = None
        self.lifecycle: DomainLifecycle | None = None
        self.hotplug: Hotplug | None = None
        self._first_built = False
        #: Names of the guests xend has destroyed (Xen has killed them; one may still be
        #: dying while dom0's backends finish with its pages). Names, not domids: a domid
        #: is free for a later guest once its domain is gone.
        self.destroyed: set[str] = set()
        #: xm's views taken on the timeline: (t_ns, view, output), for the run directory.
        self.views: list[tuple[int, str, str]] = []

    # -- Dom0UserSpace -------------------------------------------------------------------
    def start_daemons(self, k: GuestKernel, core: Core) -> Xenbus:
        """xenstored and xenconsoled; dom0's own xenbus talks to xenstored directly."""
        self.kernel = k
        self.store = StoreService(k)
        self.consoled = ConsoleService(k)
        self.store.watch_domain_exceptions(core, self._domain_flags)
        return self.store.local

    def boot(self, k: GuestKernel, core: Core) -> None:
        """xend starts: the guests are created now or on a timer, then the timeline runs."""
        assert self.store is not None and self.consoled is not None
        self.kernel = k
        self.xend = Xend(k, self._domctl, self.store, self.consoled, self._destroyed)
        self.lifecycle = DomainLifecycle(
            self.scenario, self.xend, self.xm, self._domain_flags, self._create
        )
        self.lifecycle.start(core)
        self.hotplug = Hotplug(self.xend, self.xm)
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
    def _destroyed(self, core: Core, domid: int) -> None:
        self.destroyed.add(self.names.get(domid, str(domid)))
        if self.lifecycle is not None:
            self.lifecycle.destroyed(core, domid)

    def _create(self, core: Core, index: int) -> None:
        """xm create of the scenario's guest `index` (a `create` action, or a restart)."""
        self.destroyed.discard(self.scenario.domains[index].name)
        self._build_group(core, [index])

    def _domain_flags(self, core: Core, domid: int) -> int | None:
        """getdomaininfo's flags word of `domid`; None when Xen has no such domain."""
        rc, out = self._toolstack(self._port(core)).domctl(XEN_DOMCTL_getdomaininfo, domid)
        return None if rc < 0 or out["info_domain"] != domid else out["info_flags"]

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
        doms = self.scenario.domains
        built = [i for i in group if doms[i].restore is None]
        for i in group:
            if doms[i].restore is not None:  # `restore: <file>` (framework.dom0.xm_save)
                self.saves.restore_domain_of(core, doms[i])
        if built:
            self.xm.build_group(self.kernel, core, built, self.xend, self.store, self.consoled)
        names = [doms[i].name for i in group]
        self.grant_tool.guests_built(self.kernel, core, names)

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
        assert self.xend is not None and self.kernel is not None
        assert self.lifecycle is not None
        if isinstance(action, GRANT_ACTIONS):
            self.grant_tool.act(self.kernel, core, action)
            return
        if isinstance(action, CreateAction):
            self.lifecycle.create(core, action.domain)
            return
        if isinstance(action, XmViewAction):
            self._xm_view(core, action)
            return
        if isinstance(action, RestoreAction):  # xm save / xm restore (framework.dom0.xm_save)
            self.saves.restore(core, action)
            return
        domid = self.domids.get(action.domain)
        if domid is None or action.domain in self.destroyed:
            self.xend.log(core, f"xm {action.action} {action.domain}: no such domain")
            return
        if isinstance(action, HOTPLUG_ACTIONS):
            assert self.hotplug is not None
            self.hotplug.act(core, domid, action)
        elif isinstance(action, ConsoleInputAction):
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
        elif isinstance(action, ShutdownAction):
            self.lifecycle.request(core, domid, action.domain, action.reason)
        elif isinstance(action, RebootAction):
            self.lifecycle.request(core, domid, action.domain, "reboot")
        elif isinstance(action, SaveAction):
            self.saves.save(core, domid, action)
        else:
            self.xend.destroy(core, domid, action.domain)

    def _xm_view(self, core: Core, action: XmViewAction) -> None:
        """Run one of xm's views now; its output goes to the trace and `views`."""
        assert self.kernel is not None
        xm = XmViews(self._toolstack(self._port(core)), self.names.get)
        if isinstance(action, XmListAction):
            command, text = "xm list", xm.xm_list(action.domain)
        elif isinstance(action, XmVcpuListAction):
            command, text = "xm vcpu-list", xm.xm_vcpu_list(action.domain)
        elif isinstance(action, XmInfoAction):
            command, text = "xm info", xm.xm_info()
        elif isinstance(action, XmDmesgAction):
            command, text = "xm dmesg" + " -c" * action.clear, xm.xm_dmesg(action.clear)
        elif isinstance(action, XmDomidAction):
            command, text = "xm domid", xm.xm_domid(action.domain)
        else:
            command, text = "xm domname", xm.xm_domname(action.domid)
        if (
            isinstance(action, XmListAction | XmVcpuListAction)
            and action.domain is not None
            or isinstance(action, XmDomidAction)
        ):
            command += f" {action.domain}"
        elif isinstance(action, XmDomnameAction):
            command += f" {action.domid}"
        now = core.now_ns()
        self.kernel.os.rec.emit(K.XM_VIEW, now, core.cpu_id, 0, -1, text=f"{command}\n{text}")
        self.views.append((now, action.action.removeprefix("xm_"), text))


def creation_plan(scenario: Scenario) -> list[tuple[int, list[int]]]:
    """Guests grouped by creation time; a pingpong pair, or a grant between two guests, is
    built together. Guests with `start: timeline` are left to their `create` action
    (never in a pingpong pair)."""
    doms = scenario.domains
    index = {d.name: i for i, d in enumerate(doms)}
    when = [d.start if isinstance(d.start, int) else -1 for d in doms]
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
    # A grant between two guests: both are built together (each learns the other's domid),
    # at the later start of the two, until no pair (grant or pingpong) is split.
    pairs = [(index[g.granter], index[g.peer]) for g in scenario.grants if g.peer in index]
    pairs += [
        (i, index[w.peer])
        for i, d in enumerate(doms)
        for w in d.workloads
        if isinstance(w, PingpongWorkload)
    ]
    while pairs and any(when[i] != when[j] for i, j in pairs):
        for i, j in pairs:
            when[i] = when[j] = max(when[i], when[j])
    groups: dict[int, list[int]] = {}
    for i, t in enumerate(when):
        if t >= 0:
            groups.setdefault(t, []).append(i)
    return sorted(groups.items())


__all__ = ["Dom0", "creation_plan"]
