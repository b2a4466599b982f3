"""xend's domain lifecycle: `xm create`, `xm shutdown` and `xm reboot` of a scenario's
guests, and what xend does when a guest shuts down.

- `xm shutdown` / `xm reboot`: xend writes `poweroff` (or `halt`) / `reboot` in the
  guest's `control/shutdown`; the guest's kernel stops itself (`framework.guest.control`)
  with SCHEDOP_shutdown and that reason. A guest that ignores the request keeps running;
  after `SHUTDOWN_TIMEOUT_NS` (xend's 30 s) xend destroys it, as Xen 3.1's
  refreshShutdown does.
- Noticing: Xen raises VIRQ_DOM_EXC in dom0, xenstored fires @releaseDomain
  (`store_rings`), and xend's watch on it reads each guest's getdomaininfo flags: a guest
  newly shut down (DOMINF_shutdown, not dying) is acted on by its reason (the flags' bits
  16..23) and the domain's `on_poweroff` / `on_reboot` / `on_crash`: `destroy` (xend's
  teardown), `restart` (the teardown, then the same configuration built again under the
  same name, with a new domid: devices plugged again, workloads started afresh) or
  `preserve` (left shut down, memory kept). The trace has `xend.shutdown` (reason and
  action) and, for a restart, `xend.restart` on the new domain.
- `xm create` of a domain with `start: timeline`: built then, as at start; refused (on
  dom0's console, as xm says it) while a domain of that name still exists.

Departure: xend refuses a second restart within 20 s of the previous one (a restart loop
guard); runs here last milliseconds to seconds, so no such guard is kept and a domain
restarts as often as it reboots (or crashes, with `on_crash: restart`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from framework.dom0.store_rings import DomainFlags
from framework.dom0.xend import Xend
from framework.dom0.xm_create import XmCreate
from framework.guest.xenbus import Xenbus
from framework.hw970.core import Core
from framework.scenario import Scenario
from framework.trace.ids import K
from framework.xen.public.domctl import DOMINF_dying, DOMINF_shutdown, XEN_DOMINF_shutdownshift
from framework.xen.public.sched import (
    SHUTDOWN_NAMES,
    SHUTDOWN_crash,
    SHUTDOWN_reboot,
    SHUTDOWN_suspend,
)

__all__ = ["SHUTDOWN_TIMEOUT_NS", "DomainLifecycle"]

#: How long xend waits for a guest to act on `xm shutdown` before destroying it.
SHUTDOWN_TIMEOUT_NS: Final = 30_000_000_000
_RELEASE_TOKEN: Final = "xend:releaseDomain"

#: Builds the scenario's guest `index` now (xm create).
Build = Callable[[Core, int], None]


class DomainLifecycle:
    """xend's create / shutdown / reboot verbs and its reaction to a guest's shutdown."""

    def __init__(
        self, scenario: Scenario, xend: Xend, xm: XmCreate, flags_of: DomainFlags, build: Build
    ) -> None:
        self.scenario = scenario
        self.xend = xend
        self.xm = xm
        self.flags_of = flags_of
        self.build = build
        self.index = {d.name: i for i, d in enumerate(scenario.domains)}
        #: Domids whose shutdown xend has acted on.
        self.handled: set[int] = set()
        #: Domids to build again (scenario index) once their teardown is over.
        self.restarts: dict[int, int] = {}

    @property
    def xb(self) -> Xenbus:
        return self.xend.xb

    def start(self, core: Core) -> None:
        """Watch @releaseDomain (xenstored fires it when a guest shuts down or goes)."""
        self.xb.watch(core, "@releaseDomain", _RELEASE_TOKEN, self._released)

    # -- xm verbs ----------------------------------------------------------------------------
    def request(self, core: Core, domid: int, name: str, value: str) -> None:
        """`xm shutdown` (`poweroff`, `halt`) or `xm reboot` (`reboot`): ask the guest."""
        self.xb.write(core, f"/local/domain/{domid}/control/shutdown", value)

        def timed_out(c: Core, _deadline: int) -> None:
            flags = self.flags_of(c, domid)
            if flags is None or flags & (DOMINF_shutdown | DOMINF_dying):
                return
            self.xend.log(c, f"xend: Domain shutdown timeout expired: name={name} id={domid}")
            self.xend.destroy(c, domid, name)

        self.xend.k.add_timer(core, core.now_ns() + SHUTDOWN_TIMEOUT_NS, timed_out)

    def create(self, core: Core, name: str) -> None:
        """`xm create` of the scenario's domain `name` (refused while one of that name
        exists, as xend refuses it)."""
        domid = self.xm.domids.get(name)
        if domid is not None and self.flags_of(core, domid) is not None:
            self.xend.log(
                core, f"xm create {name}: Error: Domain '{name}' already exists with ID '{domid}'"
            )
            return
        self.build(core, self.index[name])

    # -- a guest shut down --------------------------------------------------------------------
    def _released(self, core: Core, _path: str, _token: str) -> None:
        self.refresh(core)

    def refresh(self, core: Core) -> None:
        """Act on every guest newly found shut down (xend's refreshShutdown)."""
        for name, domid in sorted(self.xm.domids.items(), key=lambda item: item[1]):
            if domid in self.handled or self.xend.tearing_down(domid):
                continue
            flags = self.flags_of(core, domid)
            if flags is None or flags & DOMINF_dying or not flags & DOMINF_shutdown:
                continue
            self.handled.add(domid)
            self._act(core, domid, name, (flags >> XEN_DOMINF_shutdownshift) & 0xFF)

    def _act(self, core: Core, domid: int, name: str, reason: int) -> None:
        if reason == SHUTDOWN_suspend:
            return  # xm save's own business: the saver handles it
        spec = self.scenario.domains[self.index[name]]
        if reason == SHUTDOWN_reboot:
            action = spec.on_reboot
        elif reason == SHUTDOWN_crash:
            action = spec.on_crash
        else:
            action = spec.on_poweroff
        why = SHUTDOWN_NAMES.get(reason, str(reason))
        k = self.xend.k
        k.os.rec.emit(
            K.XEND_SHUTDOWN, core.now_ns(), core.cpu_id, domid, -1, reason,
            text=f"{why}: {action}",
        )  # fmt: skip
        if action == "preserve":
            return
        if action == "restart":
            self.restarts[domid] = self.index[name]
        self.xend.destroy(core, domid, name)

    def destroyed(self, core: Core, domid: int) -> None:
        """xend's teardown of `domid` is over: build it again if it is restarting."""
        i = self.restarts.pop(domid, None)
        if i is None:
            return
        name = self.scenario.domains[i].name
        self.build(core, i)
        new = self.xm.domids.get(name)
        if new is None:
            return  # not built: xm create said why on the console
        self.xend.k.os.rec.emit(
            K.XEND_RESTART, core.now_ns(), core.cpu_id, new, -1, text=f"{name} (was {domid})"
        )
