"""A domain's grant frames: allocated by Xen from machine memory, seeded with the reserved
console and xenstore entries, released when the domain goes.

Every flag either side looks at lives in the frames, in machine memory; `GrantTable`
(`framework.xen.grant_state`) is Xen's private state beside them. The GNTTABOP_* calls are
`framework.xen.grant_ops`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from framework.hw970.memory import PAGE_SIZE, MachineMemory
from framework.trace.ids import K
from framework.xen.domain import Domain
from framework.xen.grant_state import GrantTable
from framework.xen.public.arch_powerpc import NR_GRANT_FRAMES
from framework.xen.public.grant_table import (
    GNTTAB_RESERVED_CONSOLE,
    GNTTAB_RESERVED_XENSTORE,
    GRANT_ENTRIES_PER_FRAME,
    GRANT_ENTRY,
    GNTMAP_device_map,
    GNTMAP_host_map,
    GNTMAP_readonly,
    GTF_permit_access,
    GTF_reading,
    GTF_writing,
)

if TYPE_CHECKING:
    from framework.xen.hypervisor import Hypervisor


# --- grant frames --------------------------------------------------------------------------
def entry_maddr(dom: Domain, ref: int) -> int:
    """Machine address of grant entry `ref` of `dom`."""
    frame, index = divmod(ref, GRANT_ENTRIES_PER_FRAME)
    return (dom.grant_frames[frame] << 12) + index * GRANT_ENTRY.size


def read_entry(mem: MachineMemory, addr: int) -> tuple[int, int, int]:
    word, frame = mem.read_u32(addr), mem.read_u32(addr + 4)
    return word >> 16, word & 0xFFFF, frame


def allocate_grant_frames(xen: Hypervisor, dom: Domain) -> None:
    """Xen's part of grant table creation: NR_GRANT_FRAMES zeroed machine frames."""
    if dom.grant_frames:
        raise ValueError(f"d{dom.domid} already has grant frames {dom.grant_frames}")
    nbytes = NR_GRANT_FRAMES * PAGE_SIZE
    mfn = xen.alloc.alloc_aligned(nbytes, PAGE_SIZE, f"grant frames of d{dom.domid}")
    xen.memory.zero(mfn << 12, nbytes)
    dom.grant_frames = list(range(mfn, mfn + NR_GRANT_FRAMES))
    xen.rec.emit(
        K.MEM_ALLOC, xen.now(), -1, dom.domid, -1, mfn, NR_GRANT_FRAMES, text="grant frames"
    )


def seed_reserved_grants(xen: Hypervisor, dom: Domain) -> None:
    """Grant the console and xenstore pages to dom0, as libxc's gnttab seeding does, so
    the backends (xenconsoled, xenstored) can map them by grant reference."""
    pages = dom.rma_size >> 12
    for ref, pfn in ((GNTTAB_RESERVED_CONSOLE, pages - 2), (GNTTAB_RESERVED_XENSTORE, pages - 3)):
        addr = entry_maddr(dom, ref)
        xen.memory.write_u32(addr + 4, pfn)
        xen.memory.write_u16(addr + 2, 0)
        xen.memory.write_u16(addr, GTF_permit_access)  # flags last, as a guest would


def release_mappings(xen: Hypervisor, dom: Domain) -> list[tuple[int, int]]:
    """gnttab_release_mappings, for a dying domain: drop every grant mapping it holds of
    other domains' pages (their pins go, its foreign slots empty). Returns (granter domid,
    mfn) of each mapping dropped, for whoever frees frames nobody maps any more."""
    grants: GrantTable = dom.grants
    dropped: list[tuple[int, int]] = []
    for handle, m in enumerate(grants.maptrack):
        if m is not None:
            granter = xen.domains.get(m.domid)
            if granter is not None and granter is not dom:
                unpin(xen.memory, granter, m.ref, m.flags)
            if dom.foreign is not None:
                dom.foreign.slots[m.slot] = None
            grants.maptrack[handle] = None
            dropped.append((m.domid, m.mfn))
    grants.foreign_ptes.clear()
    grants.slot_ptes.clear()
    return dropped


def free_grant_frames(xen: Hypervisor, dom: Domain) -> None:
    """grant_table_destroy, when the domain itself goes: its pins and its grant frames."""
    dom.grants.active.clear()
    if dom.grant_frames:
        first = dom.grant_frames[0]
        xen.alloc.free(first, len(dom.grant_frames))
        xen.rec.emit(
            K.MEM_FREE,
            xen.now(),
            xen.running_cpu(),
            dom.domid,
            -1,
            first,
            len(dom.grant_frames),
            text="grant frames",
        )
        dom.grant_frames = []


def unpin(mem: MachineMemory, granter: Domain, ref: int, map_flags: int) -> None:
    """Drop one mapping's pins; clear GTF_writing/GTF_reading when the last ones go."""
    table: GrantTable = granter.grants
    act = table.active[ref]
    readonly = bool(map_flags & GNTMAP_readonly)
    if map_flags & GNTMAP_device_map:
        if readonly:
            act.dev_r -= 1
        else:
            act.dev_w -= 1
    if map_flags & GNTMAP_host_map:
        if readonly:
            act.host_r -= 1
        else:
            act.host_w -= 1
    addr = entry_maddr(granter, ref)
    flags = mem.read_u16(addr)
    if not act.write_pins:
        flags &= ~GTF_writing
    if not act.pins:
        flags &= ~GTF_reading
        del table.active[ref]
    mem.write_u16(addr, flags)
