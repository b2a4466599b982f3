"""dom0's saver and restorer (xc_domain_save / xc_domain_restore for the 970).

Save: the guest has suspended itself (SHUTDOWN_suspend); the saver copies its pages out
through XEN_DOMCTL_xen970_copy_from_domain in batches of 1024 (dom0's 4 MiB BUF), writes
them with a type word each, the online VCPU map, each VCPU's context and model state and
the shared_info page, then the SHA-256 (`save_file`). With `checkpoint` the domain goes on
(the saver sets r3 = 1 in VCPU 0's context and resumes it: x86's xc_domain_resume).

Restore reads the file once: a new
domain (new domid; its RMA may land at another machine address), memory populated and
filled from the batches, a new devtree written where the old one was (the start-info frame
in r6 of the saved context: new domid, store and console event channels), the store and
console pages cleared for their new connections, the shared_info page with every
evtchn_pending bit, pending selector and upcall_pending cleared (as x86's restore does),
the VCPU contexts and model state set, the run's own disks the file carries written to new
files; the checksum, taken over that same pass, must match at the end, else the domain is
destroyed and the disk files removed (a file given in a scenario was verified whole at
validation, before the run directory existed; this catches one changed since, and a file
this run wrote). The caller then introduces the domain to xenstored
and xenconsoled, plugs its devices and unpauses it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from framework.dom0.toolstack import DomainConfig, Toolstack
from framework.errors import BuildError, SaveFileError
from framework.save_file import PAGE, SaveImage, SaveReader, SaveWriter
from framework.xen.public.devtree import WorkloadValue, build_domain_devtree
from framework.xen.public.domctl import (
    SAVE_BATCH_PAGES,
    XEN_DOMCTL_destroydomain,
    XEN_DOMCTL_resumedomain,
    XEN_DOMCTL_unpausedomain,
)
from framework.xen.public.vcpu import VCPU_GUEST_CONTEXT
from framework.xen.public.xen import EVTCHN_PENDING_OFF, MAX_VIRT_CPUS, VCPU_INFO

__all__ = ["restore_domain", "resume_checkpoint", "save_domain"]

_SHARED_INFO_PAGE: Final = PAGE  # shared_info is the RMA's last page


def save_domain(
    ts: Toolstack,
    domid: int,
    cfg: DomainConfig,
    config: dict[str, object],
    path: Path,
    disks: list[tuple[str, int, Path]],
) -> int:
    """Write the suspended domain `domid` to `path` (a new file), with the data of the
    run's own `disks` (name, size, file); returns the file's size."""
    nr_pages = cfg.memory >> 12
    with path.open("xb") as f:
        w = SaveWriter(f)
        w.header(config, nr_pages)
        for first in range(0, nr_pages, SAVE_BATCH_PAGES):
            n = min(SAVE_BATCH_PAGES, nr_pages - first)
            with ts.copy_from_view(domid, first, n) as pages:
                w.batch(first, pages)
        vcpus = [
            (vid, ts.vcpu_get(domid, vid, False), ts.vcpu_get(domid, vid, True))
            for vid in range(cfg.vcpus)
        ]
        shinfo = ts.copy_from(domid, (cfg.rma - _SHARED_INFO_PAGE) >> 12, 1)
        w.tail(vcpus, shinfo)
        w.disks(disks)
        w.finish()
        return w.bytes


def resume_checkpoint(ts: Toolstack, domid: int) -> None:
    """`xm save -c`: the suspended domain goes on where it stopped, told so by r3 = 1."""
    ctx = VCPU_GUEST_CONTEXT.unpack(ts.vcpu_get(domid, 0, False))
    ctx["gpr3"] = 1
    state = ts.vcpu_get(domid, 0, True)
    ts.vcpu_set(domid, 0, VCPU_GUEST_CONTEXT.pack(**ctx), state)
    rc, _ = ts.domctl(XEN_DOMCTL_resumedomain, domid)
    if rc < 0:
        raise BuildError(f"d{domid}: resumedomain failed ({rc})")


def restore_domain(
    ts: Toolstack,
    path: Path,
    cfg: DomainConfig,
    workload: dict[str, WorkloadValue],
    disk_files: dict[str, Path],
) -> tuple[int, int, int]:
    """Build a domain from a save file, reading it once: its pages go straight from the
    file into dom0's buffer and on into the new domain, the run's own disks it carries
    into `disk_files` (new files). The checksum is compared at the end of that one pass;
    a file that does not match (changed since it was verified) leaves nothing: the domain
    is destroyed and the disk files removed (SaveFileError). Returns (domid, console
    port, store port); the domain is left paused."""
    reader = SaveReader(path)
    domid: int | None = None
    try:
        reader.header()
        domid = ts.create(cfg)
        for first, n in reader.batches():
            ts.copy_to_filled(domid, first << 12, n * PAGE, reader.readinto)
        image = reader.tail()
        reader.disks(disk_files)
        reader.finish()
        return (domid, *_finish_restore(ts, domid, cfg, workload, image))
    except (BuildError, SaveFileError, OSError):
        if domid is not None:
            ts.domctl(XEN_DOMCTL_destroydomain, domid)
        for f in disk_files.values():
            f.unlink(missing_ok=True)
        raise
    finally:
        reader.close()


def _finish_restore(
    ts: Toolstack,
    domid: int,
    cfg: DomainConfig,
    workload: dict[str, WorkloadValue],
    image: SaveImage,
) -> tuple[int, int]:
    """Channels, devtree, store and console pages, shared_info and the VCPUs of a domain
    whose pages are in; (console port, store port)."""
    spec, console_port, store_port = ts.guest_spec(domid, cfg, workload)
    if not image.vcpus:
        raise BuildError(f"{cfg.name}: the save file has no online VCPU")
    devtree_gpa = VCPU_GUEST_CONTEXT.unpack(image.vcpus[0][1])["gpr6"]
    ts.copy_to(domid, devtree_gpa, build_domain_devtree(spec))
    for gpa in (spec.store_gpa, spec.console_gpa):
        ts.copy_to(domid, gpa & ~0xFFF, bytes(PAGE))
    ts.copy_to(domid, spec.shared_info_gpa & ~0xFFF, _cleared(image.shared_info))
    for vid, ctx, state in image.vcpus:
        ts.vcpu_set(domid, vid, ctx, state)
    return console_port, store_port


def unpause(ts: Toolstack, domid: int) -> None:
    rc, _ = ts.domctl(XEN_DOMCTL_unpausedomain, domid)
    if rc < 0:
        raise BuildError(f"d{domid}: unpausedomain failed ({rc})")


def _cleared(shared_info: bytes) -> bytes:
    """shared_info with no event pending: the new domain's channels are not the old's."""
    page = bytearray(shared_info)
    page[EVTCHN_PENDING_OFF : EVTCHN_PENDING_OFF + 512] = bytes(512)
    for vid in range(MAX_VIRT_CPUS):
        base = VCPU_INFO.size * vid
        page[base] = 0  # evtchn_upcall_pending
        page[base + 8 : base + 16] = bytes(8)  # evtchn_pending_sel
    return bytes(page)
