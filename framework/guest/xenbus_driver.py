"""The xenbus state machine both ends of a split driver share, as Linux's xenbus drivers do
(drivers/xen/xenbus/xenbus_probe.c and the drivers' `otherend_changed` callbacks).

Each end writes its own `state` node and watches the other end's. The bases here own that
handshake and call template methods for what is the driver's own, as SimPy's resources
extend `BaseResource` through `_do_put`/`_do_get`:

- `XenbusFrontend`: read `backend` and `backend-id`, watch the backend. Backend InitWait:
  `setup_rings`, bind an unbound event channel, publish `ring_nodes`, go Initialised.
  Backend Connected: `backend_connected` reads what it needs and calls `_connected` (go
  Connected, `on_connected`, then the `when_connected` callbacks). Backend Closing: stop
  taking work, go Closing once `drained` (at once if not yet Connected: a device detached
  while it connects); backend Closed: `release_rings`, go Closed.
  Backend Closed while Initialised or Connected: `backend_gone`.
- `XenbusBackend`: read `frontend`, `setup` (take the hardware, publish what the frontend
  needs, then `_init_wait`: InitWait and watch the frontend). Frontend Initialised or
  Connected: read its `ring_nodes` once and `connect`. Frontend Closing or Closed:
  `frontend_closed`; Initialising again after Closed: `frontend_reinit`, InitWait. The
  toolstack's `online` = 0 (or the directory removed): `unplug`.
- `XenbusBackendDriver`: watch `backend/<class>` and start a device for each new
  `<frontend domid>/<devid>` (`new_device`).

Why one place: the transitions and their guards (a repeated watch event must not connect
twice) are the same for every device class; only rings and their contents differ.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar

from framework.errors import KernelError
from framework.hw970.core import Core
from framework.xen.public.io.xenbus import XenbusState

from .costs import NATIVE_ROUTINE
from .grants import GrantTableClient
from .xenbus import BackendDevice, Xenbus, XsReply, backend_changed, read_nodes

if TYPE_CHECKING:
    from .driver_kernel import NetKernel

__all__ = ["XenbusBackend", "XenbusBackendDriver", "XenbusDevice", "XenbusFrontend"]

#: The kernel a driver runs in: `GuestKernel`, or what the network drivers ask of it.
KernelT = TypeVar("KernelT", bound="NetKernel")
#: A backend driver's device class.
DeviceT = TypeVar("DeviceT", bound=BackendDevice)


def kernel_xenbus(k: NetKernel, who: str) -> Xenbus:
    """The kernel's xenbus (up before any driver starts)."""
    xb = k.xenbus
    if xb is None:
        raise KernelError(f"d{k.domid}: {who}: xenbus is not up")
    return xb


class XenbusDevice(Generic[KernelT]):
    """One end of a device: its store directory `path`, its state, and the other end's
    directory (`otherend`), whose `state` node it follows."""

    def __init__(self, k: KernelT, path: str, token: str, label: str, otherend_kind: str) -> None:
        self.k = k
        self.path = path.rstrip("/")
        #: The watch token of the other end's state; `label` prefixes console lines.
        self.token = token
        self.label = label
        self.state = XenbusState.Initialising
        self.otherend = ""
        self.otherend_kind = otherend_kind  # "backend" or "frontend", for messages
        self.error = ""  # the latest problem, said on the console
        #: The toolstack removed `path`: there is no `state` node left to write (Linux's
        #: xenbus_switch_state finds none and writes nothing).
        self.removed = False

    @property
    def xb(self) -> Xenbus:
        return kernel_xenbus(self.k, self.label)

    def _switch(self, core: Core, state: XenbusState) -> None:
        prev, self.state = self.state, state
        self.xb.switch_state(core, self.path, state, prev, write=not self.removed)

    def _say(self, core: Core, what: str) -> None:
        """Say what went wrong on the console (the trace) and keep the latest."""
        self.error = what
        self.k.console(core, f"{self.label}: {what}")

    def _watch_otherend(self, core: Core) -> None:
        self.xb.watch(core, f"{self.otherend}/state", self.token, self._otherend_changed)

    def _unwatch_otherend(self, core: Core) -> None:
        self.xb.unwatch(core, f"{self.otherend}/state", self.token)

    def _otherend_changed(self, core: Core, _path: str, _token: str) -> None:
        self.xb.read(core, f"{self.otherend}/state", self._got_otherend_state)

    def _got_otherend_state(self, core: Core, r: XsReply) -> None:
        if r.error:
            self.otherend_gone(core)
            return
        try:
            state = XenbusState(int(r.text))
        except ValueError:
            self.fail(core, f"{self.otherend_kind} state {r.text!r} is not a XenbusState")
            return
        core.charge(NATIVE_ROUTINE)
        self.otherend_changed(core, state)

    # -- template methods ------------------------------------------------------------------
    def otherend_gone(self, core: Core) -> None:
        """The other end's directory went away (its state cannot be read)."""

    def otherend_changed(self, core: Core, state: XenbusState) -> None:
        """The other end is now in `state`: follow it."""
        raise NotImplementedError

    def fail(self, core: Core, what: str) -> None:
        """A problem with the other end: say it (a frontend also gives the device up)."""
        raise NotImplementedError


class XenbusFrontend(XenbusDevice[KernelT]):
    """A guest's end of device `devid` of `driver` ("blkfront", "netfront") whose frontend
    directory is `path`; its event channel is bound to VCPU `vcpu`."""

    def __init__(self, k: KernelT, driver: str, devid: int, path: str, vcpu: int) -> None:
        super().__init__(k, path, f"{driver}:{devid}", f"{driver} {devid}", "backend")
        self.devid = devid
        self.vcpu = vcpu
        self.backend_id = -1
        self.backend_state = XenbusState.Unknown
        self.port = -1
        self._close_wanted = False
        self._connected_callbacks: list[Callable[[Core], None]] = []
        self._closed_callbacks: list[Callable[[Core], None]] = []
        #: Grant refs whose end_access reported busy (the backend still had them mapped);
        #: retried on every event, never reused until they end.
        self.busy_refs: list[int] = []
        self.grant_errors = 0

    @property
    def backend_path(self) -> str:
        return self.otherend

    @property
    def connected(self) -> bool:
        return self.state == XenbusState.Connected

    @property
    def grants(self) -> GrantTableClient:
        """The kernel's own grant table (set up before any driver starts)."""
        g = self.k.grants
        if g is None:
            raise KernelError(f"d{self.k.domid}: {self.label}: the grant table is not set up")
        return g

    def when_connected(self, callback: Callable[[Core], None]) -> None:
        """Run `callback(core)` when the device connects (register before it does)."""
        self._connected_callbacks.append(callback)

    def when_closed(self, callback: Callable[[Core], None]) -> None:
        """Run `callback(core)` once the device is Closed (its rings released), as the
        completion xenbus_dev_shutdown waits on."""
        self._closed_callbacks.append(callback)

    # -- the handshake ---------------------------------------------------------------------
    def start(self, core: Core) -> None:
        """Find the backend and follow its state (the probe of a Linux xenbus driver)."""
        core.charge(NATIVE_ROUTINE)
        p = self.path
        nodes = [f"{p}/backend", f"{p}/backend-id"] + [f"{p}/{n}" for n in self.own_nodes()]
        read_nodes(core, self.xb, nodes, self._got_nodes)

    def _got_nodes(self, core: Core, v: dict[str, str | None]) -> None:
        backend, backend_id = v[f"{self.path}/backend"], v[f"{self.path}/backend-id"]
        if backend is None or backend_id is None or not backend_id.isdigit():
            self.fail(core, f"no usable backend/backend-id under {self.path}")
            return
        self.otherend = backend
        self.backend_id = int(backend_id)
        self.got_own_nodes(core, v)
        self._watch_otherend(core)

    def otherend_changed(self, core: Core, state: XenbusState) -> None:
        self.backend_state = state
        if state == XenbusState.InitWait and self.state == XenbusState.Initialising:
            self._setup(core)
        elif state == XenbusState.Connected and self.state == XenbusState.Initialised:
            self.backend_connected(core)
        elif state == XenbusState.Closing and self.state == XenbusState.Connected:
            self.close(core)  # the backend wants to go: finish and close
        elif state == XenbusState.Closing and self.state in (
            XenbusState.Initialising,
            XenbusState.Initialised,
        ):
            # Detached before it connected: nothing was taken, close at once.
            self._close_wanted = True
            self._switch(core, XenbusState.Closing)
        elif state == XenbusState.Closed and self.state == XenbusState.Closing:
            self._teardown(core)
        elif state == XenbusState.Closed and self.state in (
            XenbusState.Initialised,
            XenbusState.Connected,
        ):
            self.backend_gone(core)

    def otherend_gone(self, core: Core) -> None:
        """The toolstack removed the device without this end closing (xend gave up waiting:
        the guest was paused, say): take what the backend answered, fail the rest, release
        everything. The frontend directory went with it, so no state is written."""
        if self.state not in (XenbusState.Initialised, XenbusState.Connected, XenbusState.Closing):
            return
        self.removed = True
        self._give_up(core)

    def _give_up(self, core: Core) -> None:
        """The backend will answer nothing more: `abandon` the work, release, Closed."""
        self._close_wanted = True
        self.abandon(core)
        if self.state == XenbusState.Closed:
            return  # the responses it took let it close already
        if self.state != XenbusState.Closing:
            self._switch(core, XenbusState.Closing)
        self._teardown(core)

    def _setup(self, core: Core) -> None:
        """Set up the rings, give the backend an event channel and publish both."""
        k = self.k
        self.setup_rings(core)
        self.port = k.evtchn_alloc_unbound(core, self.backend_id)
        k.port_handlers[self.port] = self._on_event
        if self.vcpu:
            rc = k.evtchn_bind_vcpu(core, self.port, self.vcpu)
            if rc < 0:
                self.fail(core, f"binding port {self.port} to VCPU {self.vcpu} failed ({rc})")
                return
        # In order: xenstored applies one connection's requests in sequence, so the backend
        # sees every node before it sees Initialised.
        xb = self.xb
        for name, value in self.ring_nodes():
            xb.write(core, f"{self.path}/{name}", value)
        self._switch(core, XenbusState.Initialised)

    def _connected(self, core: Core) -> None:
        """What the backend published is read: go Connected and tell those waiting."""
        self._switch(core, XenbusState.Connected)
        self.on_connected(core)
        callbacks, self._connected_callbacks = self._connected_callbacks, []
        for cb in callbacks:
            cb(core)

    def fail(self, core: Core, what: str) -> None:
        """xenbus_dev_fatal: say why on the console and give the device up."""
        self._say(core, what)
        if self.state not in (XenbusState.Closing, XenbusState.Closed):
            self._switch(core, XenbusState.Closing)

    def _retry_busy_refs(self, core: Core) -> None:
        grants = self.grants
        still: list[int] = []
        for ref in self.busy_refs:
            if grants.end_access(ref):
                grants.free_ref(ref)
            else:
                still.append(ref)
        self.busy_refs = still

    # -- teardown --------------------------------------------------------------------------
    def close(self, core: Core) -> None:
        """Stop taking work; once all of it is answered go Closing and, when the backend
        has closed, release the rings and go Closed."""
        self._close_wanted = True
        self._maybe_close(core)

    def _maybe_close(self, core: Core) -> None:
        if self._close_wanted and self.state == XenbusState.Connected and self.drained():
            self._switch(core, XenbusState.Closing)
            if self.backend_state == XenbusState.Closed:
                self._teardown(core)

    def _teardown(self, core: Core) -> None:
        """The backend has unmapped the rings: release them, stop following it, Closed."""
        self.release_rings(core)
        self._unwatch_otherend(core)
        self._switch(core, XenbusState.Closed)
        callbacks, self._closed_callbacks = self._closed_callbacks, []
        for cb in callbacks:
            cb(core)

    # -- template methods ------------------------------------------------------------------
    def own_nodes(self) -> list[str]:
        """Nodes of the frontend directory to read with `backend` and `backend-id`."""
        return []

    def got_own_nodes(self, core: Core, v: dict[str, str | None]) -> None:
        """The values of `own_nodes` (by full path; None when absent)."""

    def setup_rings(self, core: Core) -> None:
        """Allocate, initialise and grant the ring pages (the backend is in InitWait)."""
        raise NotImplementedError

    def ring_nodes(self) -> list[tuple[str, str]]:
        """The (node, value) pairs to publish before going Initialised, in order."""
        raise NotImplementedError

    def _on_event(self, core: Core, _port: int) -> None:
        """The backend notified on the device's event channel."""
        raise NotImplementedError

    def backend_connected(self, core: Core) -> None:
        """The backend is Connected: read what it published, then call `_connected`."""
        raise NotImplementedError

    def on_connected(self, core: Core) -> None:
        """Just Connected, before the `when_connected` callbacks run."""

    def drained(self) -> bool:
        """Nothing on the rings or waiting for them: Closing may go on."""
        raise NotImplementedError

    def release_rings(self, core: Core) -> None:
        """Revoke the ring grants, free their pages and close the event channel."""
        raise NotImplementedError

    def backend_gone(self, core: Core) -> None:
        """The backend closed while this end was Initialised or Connected."""

    def abandon(self, core: Core) -> None:
        """The backend is gone for good: end the work it will never answer."""


class XenbusBackend(XenbusDevice[KernelT]):
    """dom0's end of device `devid` of domain `domid` under `<base_dir>` (`backend/vbd`);
    `driver` ("blkback", "netback") and `name` label its watch and console lines."""

    def __init__(
        self, k: KernelT, driver: str, base_dir: str, domid: int, devid: int, name: str
    ) -> None:
        path = f"/local/domain/{k.domid}/{base_dir}/{domid}/{devid}"
        super().__init__(k, path, f"{driver}:{domid}:{devid}", f"{driver} {name}", "frontend")
        self.domid = domid
        self.devid = devid
        self._connecting = False  # reading the frontend's ring nodes to connect

    @property
    def frontend_path(self) -> str:
        return self.otherend

    def fail(self, core: Core, what: str) -> None:
        self._say(core, what)

    # -- setup -----------------------------------------------------------------------------
    def start(self, core: Core) -> None:
        """Read the toolstack's nodes, then `setup` (which ends in `_init_wait`)."""
        p = self.path
        nodes = [f"{p}/frontend"] + [f"{p}/{n}" for n in self.own_nodes()]
        read_nodes(core, self.xb, nodes, self._got_nodes)

    def _got_nodes(self, core: Core, v: dict[str, str | None]) -> None:
        frontend = v[f"{self.path}/frontend"]
        if frontend is None:
            # No device here (just removed, or not complete yet): forget it; a later
            # watch event probes it again if it appears.
            self.forget()
            return
        self.otherend = frontend
        self.setup(core, v)

    def _init_wait(self, core: Core) -> None:
        """Ready for the frontend: InitWait, and follow its state."""
        self._switch(core, XenbusState.InitWait)
        self._watch_otherend(core)

    def otherend_changed(self, core: Core, state: XenbusState) -> None:
        if state in (XenbusState.Initialised, XenbusState.Connected) and (
            self.state == XenbusState.InitWait and not self._connecting
        ):
            self._connecting = True  # one connect however many watch events come first
            f = self.otherend
            read_nodes(core, self.xb, [f"{f}/{n}" for n in self.ring_nodes()], self._got_rings)
        elif state in (XenbusState.Closing, XenbusState.Closed) and self.state in (
            XenbusState.Connected,
            XenbusState.InitWait,
        ):
            self.frontend_closed(core)
        elif state == XenbusState.Initialising and self.state == XenbusState.Closed:
            self.frontend_reinit(core)
            self._switch(core, XenbusState.InitWait)  # the frontend reconnects

    def _got_rings(self, core: Core, v: dict[str, str | None]) -> None:
        self._connecting = False
        f = self.otherend
        self.connect(core, {n: v[f"{f}/{n}"] for n in self.ring_nodes()})

    def _numbers(self, core: Core, v: dict[str, str | None], names: list[str]) -> list[int]:
        """The frontend's nodes `names` as numbers; [] (said on the console) if one is not."""
        nums: list[int] = []
        for name in names:
            text = v[name]
            if text is None or not text.isdigit():
                self.fail(core, f"frontend {name}: {text!r}")
                return []
            nums.append(int(text))
        return nums

    def online_changed(self, core: Core, r: XsReply) -> None:
        """The toolstack unplugs a device by writing `online` = 0 (xend's device detach)
        or removing its directory."""
        if not r.error and r.text != "0":
            return
        self.unplug(core, removed=bool(r.error))

    # -- template methods ------------------------------------------------------------------
    def own_nodes(self) -> list[str]:
        """Nodes of the backend directory to read with `frontend`."""
        return []

    def setup(self, core: Core, v: dict[str, str | None]) -> None:
        """Take the device's hardware, publish what the frontend needs, `_init_wait`."""
        raise NotImplementedError

    def forget(self) -> None:
        """Drop this device from its driver (its directory is gone)."""
        raise NotImplementedError

    def ring_nodes(self) -> list[str]:
        """The frontend's nodes to read before connecting, in order."""
        raise NotImplementedError

    def connect(self, core: Core, v: dict[str, str | None]) -> None:
        """Map the rings and bind the event channel the frontend published (`v`, by node
        name), then go Connected."""
        raise NotImplementedError

    def frontend_closed(self, core: Core) -> None:
        """The frontend is Closing or Closed: disconnect (now or once drained)."""
        raise NotImplementedError

    def frontend_reinit(self, core: Core) -> None:
        """The frontend is Initialising again after this end closed."""

    def unplug(self, core: Core, removed: bool) -> None:
        """The toolstack unplugs the device; `removed` when its directory is gone."""
        raise NotImplementedError


class XenbusBackendDriver(Generic[KernelT, DeviceT]):
    """A backend driver: every `<frontend domid>/<devid>` the toolstack writes under
    `base_dir` (`backend/vbd`) gets a device; `name` is its watch token."""

    def __init__(self, k: KernelT, name: str, base_dir: str) -> None:
        self.k = k
        self.name = name
        self.base_dir = base_dir
        self.devices: dict[tuple[int, int], DeviceT] = {}

    @property
    def xb(self) -> Xenbus:
        return kernel_xenbus(self.k, self.name)

    def watch_devices(self, core: Core) -> None:
        """Follow `base_dir`: the watch fires at once (the first scan), then on changes."""
        self.xb.watch(core, self.base_dir, self.name, self._changed)

    def device(self, domid: int, devid: int) -> DeviceT:
        """The backend device of (domid, devid); KeyError if there is none (yet)."""
        return self.devices[(domid, devid)]

    def forget(self, domid: int, devid: int) -> None:
        self.devices.pop((domid, devid), None)

    def _changed(self, core: Core, path: str, _token: str) -> None:
        """A node at or below `base_dir` changed: probe, unplug or rescan."""
        backend_changed(self.xb, core, path, self.base_dir, self.devices, self._probe)

    def _probe(self, core: Core, domid: int, devid: int) -> None:
        if (domid, devid) in self.devices:
            return
        dev = self.new_device(domid, devid)
        self.devices[(domid, devid)] = dev
        dev.start(core)

    def new_device(self, domid: int, devid: int) -> DeviceT:
        """The device object for a new (domid, devid)."""
        raise NotImplementedError
