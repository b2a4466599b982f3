"""A guest's shared page as dom0 reaches it on the 970 port: granted to dom0 (reserved grant
refs 0 = console, 1 = xenstore, which Xen seeds when it sets up the special pages), mapped
into dom0's foreign area with a 4 KiB PTE, and an interdomain event channel bound to the
guest's unbound port.  xenstored and xenconsoled talk to guests only through such pages.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from framework.hw970.core import Core

if TYPE_CHECKING:
    from framework.guest.kernel import GuestKernel


@dataclass
class GuestPage:
    """A guest's shared page as dom0 has it mapped: where, by which grant, which port."""

    domid: int
    gpa: int  # dom0 guest-physical address (a foreign area slot)
    handle: int  # grant map handle
    port: int  # dom0's local port bound to the guest's
    backlog: deque[bytes] = field(default_factory=deque)


def map_guest_page(k: GuestKernel, core: Core, domid: int, ref: int, remote_port: int) -> GuestPage:
    """Map a guest's granted page into dom0 (foreign slot + 4 KiB PTE) and bind its port."""
    gpa, handle = k.grant_map(core, domid, ref, readonly=False)
    k.map_4k(core, gpa)
    port = k.evtchn_bind_interdomain(core, domid, remote_port)
    return GuestPage(domid, gpa, handle, port)


def unmap_guest_page(k: GuestKernel, core: Core, page: GuestPage) -> None:
    k.evtchn_close(core, page.port)
    k.unmap_4k(core, page.gpa)
    k.grant_unmap(core, page.gpa, page.handle)


__all__ = ["GuestPage", "map_guest_page", "unmap_guest_page"]
