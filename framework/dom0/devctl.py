"""The toolstack's device controllers (xend's DevController): xenstore nodes for vbds and
vifs, written by dom0 in one transaction so a backend's watch sees a complete device.

Both directories start in XenbusState.Initialising; the guest owns its frontend directory
and may read (not write) its backend's.
"""

from __future__ import annotations

from collections.abc import Callable

from framework.guest import xs_wire as xs
from framework.guest.xenbus import Xenbus, XsReply
from framework.hw970.core import Core
from framework.xen.public.io.blkif import vbd_devid
from framework.xen.public.io.xenbus import XenbusState

__all__ = ["create_device", "device_nodes", "vbd_devid", "vif_mac"]


def vif_mac(domid: int, devid: int) -> str:
    """A deterministic MAC in Xen's OUI 00:16:3e."""
    return f"00:16:3e:{domid >> 8 & 0xFF:02x}:{domid & 0xFF:02x}:{devid & 0xFF:02x}"


def device_nodes(
    kind: str, domid: int, devid: int, back: dict[str, str], front: dict[str, str]
) -> list[tuple[str, str]]:
    """The (path, value) writes creating one device; `state` last in each directory."""
    bpath = f"/local/domain/0/backend/{kind}/{domid}/{devid}"
    fpath = f"/local/domain/{domid}/device/{kind}/{devid}"
    init = str(int(XenbusState.Initialising))
    writes = [(f"{bpath}/frontend", fpath), (f"{bpath}/frontend-id", str(domid))]
    writes += [(f"{bpath}/{k}", v) for k, v in back.items()]
    writes += [(f"{bpath}/online", "1"), (f"{bpath}/state", init)]
    writes += [(f"{fpath}/backend", bpath), (f"{fpath}/backend-id", "0")]
    writes += [(f"{fpath}/{k}", v) for k, v in front.items()]
    writes += [(f"{fpath}/state", init)]
    return writes


def create_device(
    core: Core,
    xb: Xenbus,
    kind: str,
    domid: int,
    devid: int,
    back: dict[str, str],
    front: dict[str, str],
    done: Callable[[Core, str | None], None],
) -> None:
    """Write the device's nodes and permissions in one transaction (retried on EAGAIN);
    `done(core, error)` runs when it is committed (error None) or has failed."""
    bpath = f"/local/domain/0/backend/{kind}/{domid}/{devid}"
    fpath = f"/local/domain/{domid}/device/{kind}/{devid}"
    writes = device_nodes(kind, domid, devid, back, front)

    def started(c: Core, r: XsReply) -> None:
        if r.error:
            done(c, f"transaction_start: {r.error}")
            return
        tx = int(r.text)
        # Directories and their permissions first: the nodes written into them inherit
        # them, so the guest owns (and may write) everything in its frontend directory.
        for path, perms in ((bpath, ["n0", f"r{domid}"]), (fpath, [f"n{domid}", "r0"])):
            xb.request(c, xs.XS_MKDIR, path.encode() + b"\0", None, tx)
            payload = path.encode() + b"\0" + b"".join(p.encode() + b"\0" for p in perms)
            xb.request(c, xs.XS_SET_PERMS, payload, None, tx)
        for path, value in writes:
            xb.write(c, path, value, tx_id=tx)
        xb.request(c, xs.XS_TRANSACTION_END, b"T\0", ended, tx)

    def ended(c: Core, r: XsReply) -> None:
        if r.error == "EAGAIN":
            xb.request(c, xs.XS_TRANSACTION_START, b"\0", started)
            return
        done(c, r.error)

    xb.request(core, xs.XS_TRANSACTION_START, b"\0", started)
