"""The machine's I/O devices as dom0's backends see them: a disk per vbd, a link per vif.

Each vbd gets its own disk model over its own image file, a TCE table of dom0's (a
`liobn` and a DMA window, as a PCI host bridge slot would have) and an MPIC source for
its completion interrupt; all vifs share one network interrupt, raised when a link
delivers a frame. This is the `k.os.hardware` object blkback and netback take their
devices from; the simulation adds a guest's devices before its toolstack writes their
xenstore nodes, and removes them once the guest is destroyed.

Simplification (documented in the README): a real 970 blade had one disk controller
behind dom0's own driver; giving each vbd its own disk keeps vbds independent and their
service times analytic.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

import simpy

from framework.guest.blkback import disk_completion
from framework.hw970.disk import Disk, DiskImage, DiskParams, DiskRequest
from framework.hw970.irq_moderation import IrqModerator
from framework.hw970.link import Link, LinkParams
from framework.hw970.params import DISK_IRQ_COALESCE, DISK_IRQ_TIMEOUT_NS, LINK_IRQ_INTERVAL_NS
from framework.trace.recorder import Recorder
from framework.xen.hypervisor import Hypervisor
from framework.xen.tce import create_tce_table, destroy_tce_table

__all__ = ["FIRST_LIOBN", "NET_PIRQ", "VBD_WINDOW", "IoDevices", "Moderation", "VbdDevice"]

#: The first vbd's LIOBN (the next vbd takes the next one).
FIRST_LIOBN: Final = 0x100
#: MPIC source of dom0's network interrupt; vbds take the sources above it.
NET_PIRQ: Final = 16
#: A vbd's DMA window: a full blkif ring (32 requests x 11 segments x 4 KiB) fits twice.
VBD_WINDOW: Final = 4 << 20


@dataclass
class VbdDevice:
    """One vbd's disk and how dom0 reaches it (blkback's `VbdHardware`)."""

    domid: int
    devid: int
    disk: Disk
    image: DiskImage
    liobn: int
    pirq: int
    irq: IrqModerator
    window_bytes: int = VBD_WINDOW
    #: Detached from its guest (destroyed); the image closes once the disk is idle.
    removed: bool = False


@dataclass(frozen=True)
class Moderation:
    """Interrupt moderation of the disks (coalescing) and the network (throttling).

    The defaults are the documented machine defaults (params.py).
    """

    disk_count: int = DISK_IRQ_COALESCE
    disk_timeout_ns: int = DISK_IRQ_TIMEOUT_NS
    net_interval_ns: int = LINK_IRQ_INTERVAL_NS


class IoDevices:
    """Disks and links of one simulation, keyed by (frontend domid, devid)."""

    def __init__(
        self,
        xen: Hypervisor,
        env: simpy.Environment,
        rec: Recorder,
        disk: DiskParams,
        link: LinkParams,
        moderation: Moderation | None = None,
    ) -> None:
        self.xen = xen
        self.env = env
        self.rec = rec
        self.disk_params = disk
        self.link_params = link
        self.moderation = moderation or Moderation()
        self.net_pirq = NET_PIRQ
        self.net_irq = IrqModerator(
            env,
            lambda: xen.device_interrupt(NET_PIRQ),
            min_interval_ns=self.moderation.net_interval_ns,
        )
        self.vbds: dict[tuple[int, int], VbdDevice] = {}
        self.links: dict[tuple[int, int], Link] = {}
        self.uplinks: dict[tuple[int, int], Link] = {}

    # -- what the backends ask for ---------------------------------------------------------
    def vbd_backend(self, domid: int, devid: int) -> VbdDevice:
        """The disk of (domid, devid); KeyError names the device when there is none."""
        try:
            return self.vbds[(domid, devid)]
        except KeyError:
            raise KeyError(f"no disk is attached for d{domid} vbd {devid}") from None

    def link(self, domid: int, devid: int) -> Link:
        try:
            return self.links[(domid, devid)]
        except KeyError:
            raise KeyError(f"no link is attached for d{domid} vif {devid}") from None

    def uplink(self, domid: int, devid: int) -> Link:
        try:
            return self.uplinks[(domid, devid)]
        except KeyError:
            raise KeyError(f"no link is attached for d{domid} vif {devid}") from None

    def raise_net_irq(self) -> None:
        """A link delivered a frame: interrupt dom0, at most once per throttle interval."""
        self.net_irq.event()

    # -- plugging --------------------------------------------------------------------------
    def add_vbd(
        self, domid: int, devid: int, image_path: Path, size: int | None, writable: bool
    ) -> VbdDevice:
        """Open the image (created sparse at `size` if missing; never created if `size` is
        None) and give the disk a TCE table of dom0's."""
        if (domid, devid) in self.vbds:
            raise ValueError(f"d{domid} vbd {devid} is already attached")
        # Not a LIOBN or MPIC source anything still holds: a vbd of a dead guest (its
        # TCE table, its pirq binding) may outlive the guest until dom0 lets it go.
        used_liobns = {v.liobn for v in self.vbds.values()} | set(self.xen.domains[0].tce_tables)
        used_pirqs = {v.pirq for v in self.vbds.values()} | set(self.xen.pirqs)
        liobn = next(n for n in range(FIRST_LIOBN, 1 << 32) if n not in used_liobns)
        free = (
            n for n in range(NET_PIRQ + 1, self.xen.machine.mpic.nsources) if n not in used_pirqs
        )
        pirq = next(free, None)
        if pirq is None:
            raise ValueError(f"no MPIC source left for d{domid} vbd {devid}")
        image = DiskImage(image_path, size, writable=writable)
        try:
            table = create_tce_table(self.xen, self.xen.domains[0], liobn, VBD_WINDOW)
        except Exception:
            image.close()
            raise

        m = self.moderation
        irq = IrqModerator(
            self.env,
            lambda: self.xen.device_interrupt(pirq),
            count=m.disk_count,
            timeout_ns=m.disk_timeout_ns,
        )

        def completed(req: DiskRequest) -> None:
            disk_completion(req)
            irq.event(idle=disk.outstanding == 0)
            if dev.removed and disk.outstanding == 0:
                image.close()  # the guest is gone and the disk has finished

        disk = Disk(self.env, image, self.disk_params, table, completed, self.rec, dom=domid)
        dev = VbdDevice(domid, devid, disk, image, liobn, pirq, irq)
        self.vbds[(domid, devid)] = dev
        return dev

    def add_vif(self, domid: int, devid: int) -> Link:
        """The wire between the vif and its bridge, the same model both ways: returns the
        direction to the vif (`link`); `uplink` is the one from it."""
        if (domid, devid) in self.links:
            raise ValueError(f"d{domid} vif {devid} is already attached")
        link = Link(self.env, self.link_params, f"vif{domid}.{devid}")
        self.links[(domid, devid)] = link
        self.uplinks[(domid, devid)] = Link(self.env, self.link_params, f"vif{domid}.{devid}-tx")
        return link

    def remove_domain(self, domid: int) -> None:
        """After the guest is destroyed: close its images (a disk still busy, with a flush
        say, closes its image when it finishes), free dom0's TCE tables."""
        for key in sorted(k for k in self.vbds if k[0] == domid):
            self.remove_vbd(*key)
        for key in sorted(k for k in self.links if k[0] == domid):
            del self.links[key]
            del self.uplinks[key]

    def remove_vbd(self, domid: int, devid: int) -> None:
        """A vbd detached (xm block-detach) or its guest destroyed: its image closes once
        the disk is idle, dom0's TCE table for it goes, the device number is free."""
        dev = self.vbds.pop((domid, devid), None)
        if dev is None:
            return
        dev.removed = True
        if dev.disk.outstanding == 0:
            dev.image.close()
        dom0 = self.xen.domains[0]
        if dev.liobn in dom0.tce_tables:
            destroy_tce_table(self.xen, dom0, dev.liobn)

    def close(self) -> None:
        """The run is over: close every image still open (flushing what was written)."""
        for dev in self.vbds.values():
            if not dev.image.closed:
                dev.image.close()
