"""The guest's xenbus frontend bus: find the devices the toolstack gave this domain and
start their drivers, with the workloads the domain's devtree asks for.

Linux's xenbus_probe_frontend watches the domain's `device` directory and probes every
`device/<class>/<devid>` it finds; this does the same for the `vbd` and `vif` classes.
A device the toolstack writes later (in one transaction, so complete) fires the watch:
that is how `xm block-attach` / `network-attach` reach a running guest. A device whose
directory is gone (`xm block-detach` removes it once both ends are Closed) is forgotten,
and its number may come back as a new device. A blockio workload outlives its disk: it
waits while the vbd is away and goes on, with its record of what it wrote, on the vbd
attached again under that number.

Workloads come from the `/xen/workload` devtree node as `<kind>.<instance>.<key>`
properties (`blockio.51712.queue-depth`, `netstream.0.peer-mac`), one group per device.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from framework.hw970.core import Core
from framework.xen.public.devtree import workload_groups
from framework.xen.public.io.xenbus import XenbusState

from .blkfront import BlkFront
from .blockio import BlockIo
from .netfront import NetFront
from .netstream import NetSink, NetStream
from .suspend import restore_vbd
from .suspend_record import Value
from .xenbus import ReplyCallback, XsReply

if TYPE_CHECKING:
    from .kernel import GuestKernel

__all__ = ["DEVICE_DIR", "FrontendBus"]

#: The frontend directories of this domain (relative to /local/domain/<domid>).
DEVICE_DIR: Final = "device"
_CLASSES: Final = ("vbd", "vif")


class FrontendBus:
    """One domain's frontends: a `BlkFront` per vbd, a `NetFront` per vif (each with a
    `NetSink`), and the blockio and netstream workloads on them."""

    def __init__(
        self, k: GuestKernel, resumed: dict[int, list[Value]] | None = None, delta_ns: int = 0
    ) -> None:
        """`resumed`: each vbd's part of a suspend record (a kernel resuming after a
        restore), `delta_ns` how far the clock moved since the suspend."""
        self.k = k
        self.resumed = dict(resumed or {})
        self.delta_ns = delta_ns
        self.vbds: dict[int, BlkFront] = {}
        self.vifs: dict[int, NetFront] = {}
        self.blockio: dict[int, BlockIo] = {}
        self.streams: dict[int, NetStream] = {}
        self.sinks: dict[int, NetSink] = {}
        wl = k.spec.workload
        self._blockio = workload_groups(wl, "blockio")
        self._netstream = workload_groups(wl, "netstream")
        self.error = ""

    def start(self, core: Core) -> None:
        """Watch the device directory (the watch fires once at once: the first scan)."""
        xb = self.k.xenbus
        assert xb is not None, "xenbus is not up"
        xb.watch(core, DEVICE_DIR, "xenbus-frontend", self._changed)

    def _changed(self, core: Core, _path: str, _token: str) -> None:
        xb = self.k.xenbus
        assert xb is not None
        for cls in _CLASSES:
            xb.directory(core, f"{DEVICE_DIR}/{cls}", self._lister(cls))

    def _lister(self, cls: str) -> ReplyCallback:
        """The reply to listing `device/<cls>`, bound to its class."""

        def listed(core: Core, r: XsReply) -> None:
            self._listed(core, cls, r)

        return listed

    def _listed(self, core: Core, cls: str, r: XsReply) -> None:
        # ENOENT: no device of this class (yet, or any more).
        present = {int(name) for name in ([] if r.error else r.strings) if name.isdigit()}
        fronts: dict[int, BlkFront] | dict[int, NetFront] = self.vbds if cls == "vbd" else self.vifs
        for devid in sorted(set(fronts) - present):
            if fronts[devid].state == XenbusState.Closed:
                self._forget(cls, devid)  # detached: its directory is gone
        for devid in sorted(present):
            self._probe(core, cls, devid)

    def _forget(self, cls: str, devid: int) -> None:
        """A closed device whose directory is gone; its workloads stay (see `_probe`)."""
        if cls == "vbd":
            del self.vbds[devid]
        else:
            del self.vifs[devid]
            self.sinks.pop(devid, None)

    def _probe(self, core: Core, cls: str, devid: int) -> None:
        path = f"{DEVICE_DIR}/{cls}/{devid}"
        k = self.k
        if cls == "vbd":
            if devid in self.vbds:
                return  # known (a closed one until its directory is seen gone)
            params = self._blockio.get(devid)
            vcpu = params.get("vcpu", 0) if params else 0
            if not isinstance(vcpu, int):
                self._fail(core, f"blockio on vbd {devid}: vcpu {vcpu!r} is not a number")
                vcpu = 0
            front = BlkFront(k, devid, path, vcpu)
            self.vbds[devid] = front
            again = self.blockio.get(devid)
            if again is not None:
                again.rebind(front)  # attached again: the workload goes on with its books
            elif params is not None:
                try:
                    self.blockio[devid] = BlockIo(k, front, {"device": devid, **params})
                except (TypeError, ValueError) as e:
                    self._fail(core, f"blockio on vbd {devid}: {e}")
            rec = self.resumed.pop(devid, None)
            if rec is not None:
                restore_vbd(front, self.blockio.get(devid), rec, self.delta_ns)
            front.start(core)
        else:
            if devid in self.vifs:
                return
            params = self._netstream.get(devid)
            vcpu = params.get("vcpu", 0) if params else 0
            if not isinstance(vcpu, int):
                self._fail(core, f"netstream on vif {devid}: vcpu {vcpu!r} is not a number")
                vcpu = 0
            net = NetFront(k, devid, path, vcpu=vcpu)
            self.vifs[devid] = net
            self.sinks[devid] = NetSink(k, net)
            if params is not None:
                try:
                    self.streams[devid] = NetStream(k, net, params)
                except (TypeError, ValueError) as e:
                    self._fail(core, f"netstream on vif {devid}: {e}")
            net.start(core)

    def _fail(self, core: Core, what: str) -> None:
        self.error = what
        self.k.console(core, f"xenbus: {what}")
