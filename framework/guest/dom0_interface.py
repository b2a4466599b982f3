"""What the guest kernel needs from outside when it runs as dom0: the machine's I/O devices
as its backends see them (given by the composition root) and dom0's user space
(`framework.dom0`), which the kernel starts but does not know.

Protocols, so the guest package imports nothing of `framework.dom0` or of the simulation:
they are handed to `GuestOS` by whoever builds the machine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from framework.hw970.core import Core

from .blkback import VbdHardware
from .netswitch import NetHardware
from .xenbus import Xenbus

if TYPE_CHECKING:
    from .kernel import GuestKernel


class Dom0Hardware(NetHardware, Protocol):
    """The machine's disks and links, as dom0's blkback and netback drive them."""

    def vbd_backend(self, domid: int, devid: int) -> VbdHardware:
        """The disk, TCE table and interrupt behind vbd (domid, devid)."""
        ...


class Dom0UserSpace(Protocol):
    """dom0's user space: its daemons come up with the kernel's I/O, then the toolstack."""

    def start_daemons(self, k: GuestKernel, core: Core) -> Xenbus:
        """Start xenstored and xenconsoled; returns dom0's own xenbus (to its xenstored)."""
        ...

    def boot(self, k: GuestKernel, core: Core) -> None:
        """Every VCPU of dom0 is up: xend takes over (builds guests, runs the timeline)."""
        ...


__all__ = ["Dom0Hardware", "Dom0UserSpace"]
