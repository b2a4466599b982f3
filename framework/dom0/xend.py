"""xend's part of dom0 after a guest is built: plug its devices, type on its console,
and `xm destroy` it.

Destroying a guest that has devices follows xend's order:

1. pause the guest (XEN_DOMCTL_pausedomain), so its frontends stop producing;
2. write `online` = 0 in each backend directory; the backends answer what their disks
   still hold, unmap the rings and every grant, and go Closed;
3. when every backend is Closed (or `UNPLUG_TIMEOUT_NS` has passed), remove the device
   directories, release the guest from xenstored and xenconsoled (which unmaps its store
   and console pages);
4. XEN_DOMCTL_destroydomain (retried every `RETRY_NS` while a VCPU is still running:
   -EAGAIN), then remove the guest's home /local/domain/<domid> from the store.

Xen kills the domain at once; pages a backend still maps (a disk slower than the timeout
still working on them) keep it dying, and Xen destroys it when the backend unmaps the last
one, as the backend does once the disk has answered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from framework.dom0.devctl import create_device
from framework.dom0.store_rings import StoreService
from framework.dom0.xenconsoled import ConsoleService
from framework.guest.xenbus import WatchCallback, Xenbus, XsReply
from framework.hw970.core import Core
from framework.trace.ids import K
from framework.xen.public.domctl import (
    XEN_DOMCTL_destroydomain,
    XEN_DOMCTL_pausedomain,
    XEN_DOMCTL_unpausedomain,
)
from framework.xen.public.errno import EAGAIN
from framework.xen.public.io.xenbus import XenbusState

if TYPE_CHECKING:
    from framework.guest.kernel import GuestKernel

__all__ = ["RETRY_NS", "UNPLUG_TIMEOUT_NS", "DeviceConfig", "Xend"]

#: How long xend waits for backends to close before destroying anyway.
UNPLUG_TIMEOUT_NS: Final = 100_000_000
#: Pause between destroydomain attempts while a VCPU of the guest is still running.
RETRY_NS: Final = 1_000_000
_MAX_RETRIES: Final = 1000

#: dom0's domctl: (core, command, domid) -> Xen's return code.
Domctl = Callable[[Core, int, int], int]


@dataclass(frozen=True)
class DeviceConfig:
    """One device of a guest as xend writes it: class, number, backend and frontend nodes."""

    kind: str  # "vbd" or "vif"
    devid: int
    back: dict[str, str]
    front: dict[str, str]

    @property
    def backend_path(self) -> str:
        return f"/local/domain/0/backend/{self.kind}"

    def describe(self) -> str:
        """The device as `xm block-list` / `network-list` name it: class, then the
        backend's settings (`vbd 51712 dev=xvda mode=w params=disks/g-xvda.img ...`)."""
        settings = " ".join(f"{k}={v}" for k, v in sorted(self.back.items()))
        return f"{self.kind} {self.devid} {settings}"


@dataclass
class _Teardown:
    domid: int
    name: str
    waiting: set[tuple[str, int]] = field(default_factory=set)
    armed: bool = False  # every backend has been told to go
    proceeded: bool = False
    attempts: int = 0


class Xend:
    """The toolstack daemon's device and lifecycle work, run by dom0's kernel."""

    def __init__(
        self,
        k: GuestKernel,
        domctl: Domctl,
        store: StoreService,
        consoled: ConsoleService,
        on_destroyed: Callable[[Core, int], None] | None = None,
    ) -> None:
        self.k = k
        self.domctl = domctl
        self.store = store
        self.consoled = consoled
        self.on_destroyed = on_destroyed
        self.devices: dict[int, list[DeviceConfig]] = {}
        self.errors: list[str] = []
        self._teardowns: dict[int, _Teardown] = {}

    @property
    def xb(self) -> Xenbus:
        xb = self.k.xenbus
        assert xb is not None, "dom0's xenbus is not up"
        return xb

    def log(self, core: Core, what: str) -> None:
        self.errors.append(what)
        self.k.console(core, what)

    # -- devices ---------------------------------------------------------------------------
    def add_devices(self, core: Core, domid: int, devices: list[DeviceConfig]) -> None:
        """Write each device's backend and frontend directories (one transaction each)."""
        self.devices.setdefault(domid, []).extend(devices)
        for dev in devices:

            def done(c: Core, error: str | None, dev: DeviceConfig = dev) -> None:
                if error is not None:
                    self.log(c, f"xend: d{domid} {dev.kind} {dev.devid}: {error}")
                    return
                self.device_record(c, K.DEV_ATTACH, domid, dev, dev.describe())

            create_device(core, self.xb, dev.kind, domid, dev.devid, dev.back, dev.front, done)

    def device_record(
        self, core: Core, kind: int, domid: int, dev: DeviceConfig, text: str
    ) -> None:
        """A dev.attach / dev.detach record: guest `domid`'s device, from dom0's CPU."""
        self.k.os.rec.emit(kind, core.now_ns(), core.cpu_id, domid, -1, dev.devid, text=text)

    # -- console ---------------------------------------------------------------------------
    def console_input(self, core: Core, domid: int, text: str) -> None:
        """`xm console`: type `text` into the guest's console ring."""
        consoled = self.consoled
        if domid not in consoled.conns:
            self.log(core, f"xm console d{domid}: no console connection")
            return
        n = consoled.write_input(core, domid, text)
        if n < len(text):
            self.log(core, f"xm console d{domid}: input ring full, {len(text) - n} bytes lost")

    # -- pause and unpause ------------------------------------------------------------------
    def pause(self, core: Core, domid: int, name: str) -> None:
        """`xm pause`: XEN_DOMCTL_pausedomain (a paused domain stays paused: no-op)."""
        if domid in self._teardowns:
            return  # xm destroy already paused it and is taking it down
        rc = self.domctl(core, XEN_DOMCTL_pausedomain, domid)
        if rc < 0:
            self.log(core, f"xm pause {name}: Error: pausedomain failed ({rc})")

    def unpause(self, core: Core, domid: int, name: str) -> None:
        """`xm unpause`: XEN_DOMCTL_unpausedomain (a running domain stays running)."""
        if domid in self._teardowns:
            self.log(core, f"xm unpause {name}: Error: the domain is being destroyed")
            return
        rc = self.domctl(core, XEN_DOMCTL_unpausedomain, domid)
        if rc < 0:
            self.log(core, f"xm unpause {name}: Error: unpausedomain failed ({rc})")

    # -- destroy ---------------------------------------------------------------------------
    def tearing_down(self, domid: int) -> bool:
        """Whether `xm destroy` of `domid` is under way."""
        return domid in self._teardowns

    def destroy(self, core: Core, domid: int, name: str) -> None:
        """`xm destroy`: pause, unplug every device, then destroy (see the module doc)."""
        if domid in self._teardowns:
            return
        rc = self.domctl(core, XEN_DOMCTL_pausedomain, domid)
        if rc < 0:
            self.log(core, f"xm destroy {name}: Error: pausedomain failed ({rc})")
            return
        td = _Teardown(domid, name)
        self._teardowns[domid] = td
        devices = self.devices.get(domid, [])
        # Everything awaited is known before the first watch fires (dom0's own xenbus
        # may answer at once, inside `watch`).
        td.waiting = {(dev.kind, dev.devid) for dev in devices}
        for dev in devices:
            self.xb.write(core, f"{dev.backend_path}/{domid}/{dev.devid}/online", "0")
        for dev in devices:
            path = f"{dev.backend_path}/{domid}/{dev.devid}"
            self.xb.watch(
                core,
                f"{path}/state",
                f"xend:{domid}:{dev.kind}:{dev.devid}",
                self._state_watch(td, dev, path),
            )
        self.k.add_timer(
            core, core.now_ns() + UNPLUG_TIMEOUT_NS, lambda c, _d: self._timed_out(c, td)
        )
        td.armed = True
        self._maybe_release(core, td)

    def _state_watch(self, td: _Teardown, dev: DeviceConfig, path: str) -> WatchCallback:
        """The watch on one device's backend `state` during a teardown, bound to it."""

        def changed(core: Core, _path: str, _token: str) -> None:
            self._read_state(core, td, dev, path)

        return changed

    def _read_state(self, core: Core, td: _Teardown, dev: DeviceConfig, path: str) -> None:
        def got(c: Core, r: XsReply) -> None:
            if r.error or r.text == str(int(XenbusState.Closed)):
                td.waiting.discard((dev.kind, dev.devid))
                self._maybe_release(c, td)

        self.xb.read(core, f"{path}/state", got)

    def _timed_out(self, core: Core, td: _Teardown) -> None:
        if td.proceeded:
            return
        left = ", ".join(f"{kind} {devid}" for kind, devid in sorted(td.waiting))
        self.log(core, f"xm destroy {td.name}: backends not closed after 100 ms: {left}")
        td.waiting.clear()
        self._maybe_release(core, td)

    def _maybe_release(self, core: Core, td: _Teardown) -> None:
        """Every backend is Closed: remove the devices and the guest's xenstore and console
        connections, then destroy."""
        if td.waiting or td.proceeded or not td.armed:
            return
        td.proceeded = True
        xb = self.xb
        for dev in self.devices.pop(td.domid, []):
            path = f"{dev.backend_path}/{td.domid}/{dev.devid}"
            xb.unwatch(core, f"{path}/state", f"xend:{td.domid}:{dev.kind}:{dev.devid}")
            xb.rm(core, path)
            xb.rm(core, f"/local/domain/{td.domid}/device/{dev.kind}/{dev.devid}")
        self.consoled.disconnect(core, td.domid)
        self.store.release(core, td.domid)
        self._try_destroy(core, td)

    def _try_destroy(self, core: Core, td: _Teardown) -> None:
        rc = self.domctl(core, XEN_DOMCTL_destroydomain, td.domid)
        if rc == -EAGAIN and td.attempts < _MAX_RETRIES:
            td.attempts += 1
            self.k.add_timer(core, core.now_ns() + RETRY_NS, lambda c, _d: self._try_destroy(c, td))
            return
        del self._teardowns[td.domid]
        if rc < 0:
            self.log(core, f"xm destroy {td.name}: Error: destroydomain failed ({rc})")
            return
        self.xb.rm(core, f"/local/domain/{td.domid}")  # what the guest kept in the store
        self.k.emit(core, K.GUEST_MARK, td.domid, text="xend.destroyed")
        if self.on_destroyed is not None:
            self.on_destroyed(core, td.domid)
