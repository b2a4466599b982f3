"""xend's hotplug verbs on a running guest: `xm vcpu-set`, `xm block-attach` /
`block-detach` and `xm network-attach` / `network-detach`.

vcpu-set writes `cpu/<n>/availability` (`online` below the count asked, `offline` from it
up to the domain's VCPUs) in the guest's home in one transaction, as Xen 3.1's xend does;
the guest kernel's VCPU hotplug does the rest (`framework.guest.cpu_hotplug`).

Attach gives the guest's device its disk or link and writes its backend and frontend
directories as at creation (`Xend.add_devices`): dom0's backend driver and the guest's
xenbus frontend bus both see the new device and connect.

Detach follows Xen 3.1's xend (DevController.destroyDevice) and Linux's drivers:

1. xend writes the backend's `state` = Closing (5);
2. the frontend sees it, stops taking new work, lets the backend answer everything it has
   on the ring (blkfront) or settles its frames (netfront), and goes Closing. This is
   Linux's blkfront_closing (its queues stopped, no new request) with blkback's
   disconnect waiting for the requests in flight; a request that waited inside blkfront
   for ring room is pushed and answered too, where Linux's dead disk would fail it (with
   a queue depth of at most 32, the ring's size, none waits);
3. the backend sees the frontend Closing, finishes (a disk's requests in flight are
   answered), unmaps the rings and goes Closed; the frontend then releases its rings and
   grants and goes Closed;
4. xend, watching the backend's `state`, removes both directories and lets the disk go
   (the image file keeps what was written: a later attach of it reads it back).

A frontend that does not answer within `UNPLUG_TIMEOUT_NS` (a paused guest, say) gets the
destroy path's treatment: xend writes `online` = 0 and the backend closes on its own once
its device is idle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from framework.dom0.devctl import vbd_devid
from framework.dom0.xend import UNPLUG_TIMEOUT_NS, DeviceConfig, Xend
from framework.dom0.xm_create import XmCreate
from framework.guest import xs_wire as xs
from framework.guest.xenbus import Xenbus, XsReply
from framework.hw970.core import Core
from framework.scenario import (
    BlockAttachAction,
    BlockDetachAction,
    NetworkAttachAction,
    NetworkDetachAction,
    VcpuSetAction,
)
from framework.trace.ids import K
from framework.xen.public.io.xenbus import XenbusState

__all__ = ["HOTPLUG_ACTIONS", "Hotplug", "HotplugAction", "write_nodes"]

HotplugAction = (
    VcpuSetAction
    | BlockAttachAction
    | BlockDetachAction
    | NetworkAttachAction
    | NetworkDetachAction
)
#: The timeline actions `Hotplug.act` carries out.
HOTPLUG_ACTIONS: Final = (
    VcpuSetAction,
    BlockAttachAction,
    BlockDetachAction,
    NetworkAttachAction,
    NetworkDetachAction,
)
_CLOSED: Final = str(int(XenbusState.Closed))


def write_nodes(
    core: Core,
    xb: Xenbus,
    writes: list[tuple[str, str]],
    done: Callable[[Core, str | None], None],
) -> None:
    """Write (path, value) pairs in one transaction (retried on EAGAIN); `done(core,
    error)` when it is committed (error None) or has failed."""

    def started(c: Core, r: XsReply) -> None:
        if r.error:
            done(c, f"transaction_start: {r.error}")
            return
        tx = int(r.text)
        for path, value in writes:
            xb.write(c, path, value, tx_id=tx)
        xb.request(c, xs.XS_TRANSACTION_END, b"T\0", ended, tx)

    def ended(c: Core, r: XsReply) -> None:
        if r.error == "EAGAIN":
            xb.request(c, xs.XS_TRANSACTION_START, b"\0", started)
            return
        done(c, r.error)

    xb.request(core, xs.XS_TRANSACTION_START, b"\0", started)


class _Detach:
    """One device being detached: the backend's state watch and the fallback timer."""

    def __init__(self, domid: int, name: str, dev: DeviceConfig) -> None:
        self.domid = domid
        self.name = name
        self.dev = dev
        self.path = f"{dev.backend_path}/{domid}/{dev.devid}"
        self.front = f"/local/domain/{domid}/device/{dev.kind}/{dev.devid}"
        self.token = f"xend-detach:{domid}:{dev.kind}:{dev.devid}"
        #: Ends not seen Closed yet (a directory gone counts as closed).
        self.open = {self.path, self.front}
        self.finished = False
        self.forced = False


class Hotplug:
    """The hotplug verbs of xend, on the guests `xm` created."""

    def __init__(self, xend: Xend, xm: XmCreate) -> None:
        self.xend = xend
        self.xm = xm
        #: Guest domid -> the next vif number (xend's counter: numbers are never reused).
        self._next_vif: dict[int, int] = {}
        self._detaching: dict[tuple[int, str, int], _Detach] = {}

    @property
    def xb(self) -> Xenbus:
        return self.xend.xb

    def act(self, core: Core, domid: int, action: HotplugAction) -> None:
        """Carry out one hotplug action on guest `domid` (alive: dom0 checked)."""
        name = action.domain
        if isinstance(action, VcpuSetAction):
            self.vcpu_set(core, domid, name, action.vcpus)
        elif isinstance(action, BlockAttachAction):
            config = self.xm.vbd_device(
                core, self.xend, name, domid, action.device, "xm block-attach"
            )
            if config is not None:
                self.xend.add_devices(core, domid, [config])
        elif isinstance(action, BlockDetachAction):
            self.detach(core, domid, name, "vbd", vbd_devid(action.device))
        elif isinstance(action, NetworkAttachAction):
            index = self._domain_index(name)
            devid = self._vif_number(domid, index)
            vif = action.device
            mac = vif.mac or self.xm.default_mac(index, devid)
            self.xend.add_devices(core, domid, [self.xm.vif_device(domid, devid, vif.bridge, mac)])
        else:
            self.detach(core, domid, name, "vif", action.devid)

    def _domain_index(self, name: str) -> int:
        return next(i for i, d in enumerate(self.xm.scenario.domains) if d.name == name)

    def _vif_number(self, domid: int, index: int) -> int:
        devid = self._next_vif.get(domid, len(self.xm.scenario.domains[index].vifs))
        self._next_vif[domid] = devid + 1
        return devid

    # -- vcpu-set --------------------------------------------------------------------------
    def vcpu_set(self, core: Core, domid: int, name: str, online: int) -> None:
        """`xm vcpu-set`: VCPUs below `online` available, the others not."""
        vcpus = next(d.vcpus for d in self.xm.scenario.domains if d.name == name)
        writes = [
            (
                f"/local/domain/{domid}/cpu/{n}/availability",
                "online" if n < online else "offline",
            )
            for n in range(vcpus)
        ]

        def done(c: Core, error: str | None) -> None:
            if error is not None:
                self.xend.log(c, f"xm vcpu-set {name}: Error: {error}")

        write_nodes(core, self.xb, writes, done)

    # -- detach ----------------------------------------------------------------------------
    def detach(self, core: Core, domid: int, name: str, kind: str, devid: int) -> None:
        """Close device (kind, devid) of the guest with both its ends, then remove it."""
        verb = "block-detach" if kind == "vbd" else "network-detach"
        devs = self.xend.devices.get(domid, [])
        dev = next((d for d in devs if d.kind == kind and d.devid == devid), None)
        key = (domid, kind, devid)
        if dev is None or key in self._detaching:
            self.xend.log(core, f"xm {verb} {name}: Error: {kind} {devid} is not attached")
            return
        job = _Detach(domid, name, dev)
        self._detaching[key] = job
        xb = self.xb
        xb.write(core, f"{job.path}/state", str(int(XenbusState.Closing)))
        for end in (job.path, job.front):
            xb.watch(core, f"{end}/state", f"{job.token}:{end}", self._watcher(job, end))
        self.xend.k.add_timer(
            core, core.now_ns() + UNPLUG_TIMEOUT_NS, lambda c, _d: self._timed_out(c, job)
        )

    def _watcher(self, job: _Detach, end: str) -> Callable[[Core, str, str], None]:
        """The watch on one end's `state` during a detach, bound to it."""

        def changed(core: Core, _path: str, _token: str) -> None:
            self._check(core, job, end)

        return changed

    def _check(self, core: Core, job: _Detach, end: str) -> None:
        """Both ends must be Closed before the directories go: the frontend releases its
        rings after the backend has unmapped them, and reads the backend's state to know."""

        def got(c: Core, r: XsReply) -> None:
            if r.error or r.text == _CLOSED:
                job.open.discard(end)
                if not job.open:
                    self._finish(c, job)

        self.xb.read(core, f"{end}/state", got)

    def _timed_out(self, core: Core, job: _Detach) -> None:
        if job.finished:
            return
        job.forced = True
        dev = job.dev
        self.xend.log(
            core,
            f"xm detach {job.name}: {dev.kind} {dev.devid}: the frontend did not close in "
            "100 ms; unplugging it",
        )
        self.xb.write(core, f"{job.path}/online", "0")
        job.open.discard(job.front)  # the backend alone decides now
        if not job.open:
            self._finish(core, job)

    def _finish(self, core: Core, job: _Detach) -> None:
        """Both ends are closed: remove the directories, let the disk go."""
        if job.finished:
            return
        job.finished = True
        dev, domid = job.dev, job.domid
        del self._detaching[(domid, dev.kind, dev.devid)]
        xb = self.xb
        for end in (job.path, job.front):
            xb.unwatch(core, f"{end}/state", f"{job.token}:{end}")
        xb.rm(core, job.path)
        xb.rm(core, job.front)
        devs = self.xend.devices.get(domid, [])
        if dev in devs:
            devs.remove(dev)
        if dev.kind == "vbd":
            self.xm.devices.remove_vbd(domid, dev.devid)
        how = "unplugged after the timeout" if job.forced else "closed"
        self.xend.device_record(core, K.DEV_DETACH, domid, dev, f"{dev.kind} {dev.devid} {how}")
