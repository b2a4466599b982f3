"""The guest's `control/shutdown` watch: how the toolstack asks a domU kernel to stop.

As Linux's xen-sparse `drivers/xen/core/reboot.c`: the kernel watches its own
`control/shutdown`; when the toolstack writes a value there, the kernel reads it, clears
the node (writes "") and runs the handler registered for that value; an empty value, or
any request while one is being carried out (Linux's `shutting_down`), is ignored. A value
with no handler gets Linux's console line `Ignoring shutdown request: <value>`.

Minimal on purpose (save/restore registers `suspend`); the poweroff and reboot handlers
are another part of issue 16, written against the same `register` / `resumed` interface.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from framework.hw970.core import Core
from framework.trace.ids import K

from .xenbus import Xenbus, XsReply

if TYPE_CHECKING:
    from .kernel import GuestKernel

__all__ = ["CONTROL_SHUTDOWN", "ShutdownControl", "ShutdownHandler"]

#: The node the toolstack writes, relative to the domain's home /local/domain/<domid>.
CONTROL_SHUTDOWN: Final = "control/shutdown"
_TOKEN: Final = "control-shutdown"

#: What the kernel does for one value of `control/shutdown`.
ShutdownHandler = Callable[[Core], None]


class ShutdownControl:
    """One domU kernel's watch on `control/shutdown` and its table of handlers."""

    def __init__(self, k: GuestKernel) -> None:
        self.k = k
        self.handlers: dict[str, ShutdownHandler] = {}
        #: The request being carried out ("" when none): later requests are ignored.
        self.shutting_down = ""

    @property
    def xb(self) -> Xenbus:
        xb = self.k.xenbus
        assert xb is not None, "xenbus is not up"
        return xb

    def register(self, value: str, handler: ShutdownHandler) -> None:
        """Carry out `handler(core)` when the toolstack writes `value` (replaces any)."""
        self.handlers[value] = handler

    def resumed(self) -> None:
        """The request finished with the kernel still running (a cancelled suspend)."""
        self.shutting_down = ""

    def start(self, core: Core) -> None:
        """Watch `control/shutdown` (the watch fires once at once: an empty read)."""
        self.xb.watch(core, CONTROL_SHUTDOWN, _TOKEN, self._changed)

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
