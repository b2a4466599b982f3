"""The guest's `control/shutdown` watch: how the toolstack asks a domU kernel to stop.

As Linux's xen-sparse `drivers/xen/core/reboot.c` does it: at boot the kernel watches its
own `control/shutdown` node; when the toolstack writes a value there (`xm shutdown` writes
`poweroff`, `xm reboot` writes `reboot`), the kernel reads it, clears the node (writes ""),
and acts by the value:

- `poweroff` and `halt`: a clean shutdown. The devices go first, as Linux's
  `device_shutdown` runs xenbus_dev_shutdown on each frontend: every Connected frontend
  stops taking work, goes Closing and waits (at most `FRONTEND_CLOSE_TIMEOUT_NS`, Linux's
  5*HZ) for its backend to let it reach Closed; then `SCHEDOP_shutdown(SHUTDOWN_poweroff)`
  (`halt` is a poweroff too: Linux's machine_halt calls HYPERVISOR_shutdown(poweroff)).
- `reboot`: the same clean stop, then `SCHEDOP_shutdown(SHUTDOWN_reboot)`; the toolstack
  builds the domain again.
- anything else: ignored with the console line Linux prints (`Ignoring shutdown request:`).

An empty value (the kernel's own clearing write, or a node that does not exist yet) is
ignored, and so is any request while one is being carried out (Linux's `shutting_down`).
The handlers are a table keyed by the value: `register` adds one (save/restore adds
`suspend`); a handler after which the kernel runs on (a suspend that resumes) sets
`shutting_down` back to "" so that later requests are heard.

Departures: Linux reads and clears the node inside one xenstore transaction, retried on
EAGAIN; here the read and the clearing write are two requests (nothing else writes the
node while the guest runs, so no retry can be needed). Linux waits 5 s per device, one
after another; here every frontend closes at once and the 5 s bound covers them all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from framework.hw970.core import Core
from framework.trace.ids import K
from framework.xen.public.sched import (
    SCHED_SHUTDOWN,
    SCHEDOP_shutdown,
    SHUTDOWN_poweroff,
    SHUTDOWN_reboot,
)
from framework.xen.public.xen import HYPERVISOR_sched_op, xen_mark

from .xenbus import Xenbus, XsReply

if TYPE_CHECKING:
    from .blkfront import BlkFront
    from .kernel import GuestKernel
    from .netfront import NetFront

__all__ = [
    "CONTROL_SHUTDOWN",
    "FRONTEND_CLOSE_TIMEOUT_NS",
    "ShutdownControl",
    "ShutdownHandler",
]

#: The node the toolstack writes, relative to the domain's home /local/domain/<domid>.
CONTROL_SHUTDOWN: Final = "control/shutdown"
#: How long the frontends may take to close before the kernel shuts down anyway.
FRONTEND_CLOSE_TIMEOUT_NS: Final = 5_000_000_000
_TOKEN: Final = "control-shutdown"

#: What the kernel does for one value of `control/shutdown`.
ShutdownHandler = Callable[[Core], None]


class ShutdownControl:
    """One domU kernel's watch on `control/shutdown` and its table of handlers."""

    def __init__(self, k: GuestKernel) -> None:
        self.k = k
        self.handlers: dict[str, ShutdownHandler] = {
            "poweroff": self._poweroff,
            "halt": self._poweroff,
            "reboot": self._reboot,
        }
        #: The request being carried out ("" when none): requests meanwhile are ignored.
        self.shutting_down = ""
        self._stopped = False

    @property
    def xb(self) -> Xenbus:
        xb = self.k.xenbus
        assert xb is not None, "xenbus is not up"
        return xb

    def register(self, value: str, handler: ShutdownHandler) -> None:
        """Carry out `handler(core)` when the toolstack writes `value` (replaces any)."""
        self.handlers[value] = handler

    def resumed(self) -> None:
        """The request finished with the kernel still running (a suspend that resumed, in
        place or in a new domain): later requests are heard again."""
        self.shutting_down = ""

    def start(self, core: Core) -> None:
        """Watch `control/shutdown` (the watch fires once at once: an empty read)."""
        self.xb.watch(core, CONTROL_SHUTDOWN, _TOKEN, self._changed)

    # -- the watch ---------------------------------------------------------------------------
    def _changed(self, core: Core, _path: str, _token: str) -> None:
        if not self.shutting_down:
            self.xb.read(core, CONTROL_SHUTDOWN, self._got)

    def _got(self, core: Core, r: XsReply) -> None:
        value = "" if r.error else r.text
        if not value or self.shutting_down:
            return
        self.xb.write(core, CONTROL_SHUTDOWN, "")
        handler = self.handlers.get(value)
        if handler is None:
            self.k.console(core, f"Ignoring shutdown request: {value}")
            return
        self.shutting_down = value
        self.k.emit(core, K.GUEST_MARK, text=f"control.shutdown {value}")
        handler(core)

    # -- the standard handlers ---------------------------------------------------------------
    def _poweroff(self, core: Core) -> None:
        self.stop_devices(core, lambda c: self.hypervisor_shutdown(c, SHUTDOWN_poweroff))

    def _reboot(self, core: Core) -> None:
        self.stop_devices(core, lambda c: self.hypervisor_shutdown(c, SHUTDOWN_reboot))

    def stop_devices(self, core: Core, then: Callable[[Core], None]) -> None:
        """xenbus_dev_shutdown on every frontend: the device workloads stop issuing, each
        Connected frontend closes; `then(core)` runs once all are Closed or when
        `FRONTEND_CLOSE_TIMEOUT_NS` has passed (each one still open said on the console)."""
        k = self.k
        fb = k.frontends
        fronts: list[BlkFront | NetFront] = []
        if fb is not None:
            for io in fb.blockio.values():
                io.stop()
            for stream in fb.streams.values():
                stream.stop()
            fronts = [*fb.vbds.values(), *fb.vifs.values()]
        waiting = {f.path for f in fronts if f.connected}
        done = [False]

        def proceed(c: Core) -> None:
            if not done[0]:
                done[0] = True
                then(c)

        def closed(path: str) -> Callable[[Core], None]:
            def one(c: Core) -> None:
                waiting.discard(path)
                if not waiting:
                    proceed(c)

            return one

        def timed_out(c: Core, _deadline: int) -> None:
            if done[0]:
                return
            for path in sorted(waiting):
                k.console(c, f"xenbus_dev_shutdown: {path} timeout closing device")
            proceed(c)

        for f in fronts:
            if f.path not in waiting:
                k.console(
                    core, f"xenbus_dev_shutdown: {f.path}: {f.state.name} != Connected, skipping"
                )
                continue
            f.when_closed(closed(f.path))
        if not waiting:
            proceed(core)
            return
        k.add_timer(core, core.now_ns() + FRONTEND_CLOSE_TIMEOUT_NS, timed_out)
        for f in fronts:
            if f.path in waiting:
                f.close(core)

    def hypervisor_shutdown(self, core: Core, reason: int) -> None:
        """HYPERVISOR_sched_op(SCHEDOP_shutdown, {reason}): Xen stops the domain."""
        if self._stopped:
            return
        self._stopped = True
        k = self.k
        handle = k.xencomm_arg(core, SCHED_SHUTDOWN.pack(reason=reason))
        k.hypercall(core, xen_mark(HYPERVISOR_sched_op), SCHEDOP_shutdown, handle)
