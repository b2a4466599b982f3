"""Grant tables (v1) on the 970 port: grant frames, GNTTABOP_* and the foreign map area.

Why it looks like this: a domain shares a page by writing a grant entry (``u16 flags,
u16 domid, u32 frame``) into its own grant table, 4 frames Xen allocates from machine
memory and the domain reaches at its GNTTAB pfns ([machine pages, machine pages + 4)).
Every flag either side looks at lives there, in machine memory; Xen's private state (pin
counts per entry, the mapper's maptrack, which HTAB entries map which foreign slot) is
kept in `GrantTable`, as Xen keeps it outside the shared frames.

Translation is always on, so a mapping is not a PTE Xen writes: ``map_grant_ref`` puts
the frame in a slot of the mapper's foreign area (pfn bit 22) and the mapper then
H_ENTERs a 4 KiB PTE for that pfn ("pre-grant mappings and post-grant unmappings"). A
slot that a valid PTE still references cannot be unmapped.

Status codes and the order of checks follow Xen 3.1's ``common/grant_table.c`` (the tree
the PowerPC port last built against) and the port's ``create_grant_host_mapping`` in
``arch/powerpc/mm.c``; where the port's code paniced or BUG()ed the documented status is
returned instead:

- map_grant_ref: no host/device flag -> bad_gntref; unknown or dying dom -> bad_domain
  (a dying domain's memory is being relinquished: nothing more of it maps); ref out of
  range -> bad_gntref; entry pinned for another domain, entry not a permit_access grant to
  the mapper, write map of a GTF_readonly entry, or a granted frame the granter does not
  own -> general_error; GNTMAP_application_map / GNTMAP_contains_pte, or no
  GNTMAP_host_map (a device-only mapping has no foreign slot to live in) ->
  general_error; mapper without a foreign area -> permission_denied (the port's "only
  Dom0 can map a grant entry"); host_addr misaligned or outside the area -> bad_virt_addr;
  slot in use -> general_error; host_addr 0 and no free slot -> no_device_space.
- unmap_grant_ref: unknown handle -> bad_handle; host_addr not the handle's slot, or a
  dev_bus_addr not the granted frame -> general_error; slot still referenced by a valid
  HTAB entry -> general_error ("still mapped by a page table entry").
- copy: offset + len beyond the page -> bad_copy_arg; a pfn side naming another domain
  from an unprivileged caller -> permission_denied; unknown domain -> bad_domain; ref out
  of range -> bad_gntref; a grant side not granted to the caller, or a write into a
  GTF_readonly grant -> general_error (Xen's "Attempt to write-pin a r/o grant entry"); a
  pfn the domain does not own -> general_error.
- transfer: a pfn the donor does not own, an RMA page, or a page still mapped (a 16 MiB
  or 4 KiB HTAB entry of the donor, or a foreign slot anywhere) -> bad_page; unknown
  receiver -> bad_domain; receiver dying, without headroom, ref out of range, entry not
  exactly GTF_accept_transfer for the donor, or its frame not a hole of the receiver ->
  general_error. Unlike Xen 3.1, which freed the already stolen page when the receiver
  refused it, every check is made before anything moves: a refused transfer leaves the
  donor's page where it was.

The hypercall itself returns -EPERM for map/unmap/transfer from a domain without I/O
privileges (Xen 3.1's ``grant_operation_permitted``: only dom0 here), -EINVAL for more
than 512 operations (or count != 1 for setup_table/query_size), -ENOSYS for an unknown
command and -EFAULT when xencomm cannot reach an operation (or setup_table's frame list,
which Xen ignored). Operations run in order; each writes its status back.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from framework.errors import GrantOpRefused, NotOwned, XencommError
from framework.hw970.core import Core
from framework.hw970.memory import PAGE_SIZE, MachineMemory
from framework.hw970.mmu import LARGE_PAGE_SHIFT, PTE_L, PTE_RPN_MASK, PTE_V
from framework.trace.ids import K
from framework.xen import costs
from framework.xen.domain import Domain, DomainState, Vcpu
from framework.xen.domain_lifetime import foreign_mapping_gone
from framework.xen.grant_state import ActiveGrant, GrantMapping, GrantTable
from framework.xen.grant_table import entry_maddr, read_entry, unpin
from framework.xen.p2m import ForeignSlot
from framework.xen.public.arch_powerpc import FOREIGN_GPA_BASE, FOREIGN_SLOTS, NR_GRANT_FRAMES
from framework.xen.public.errno import EINVAL, ENOSYS, EPERM
from framework.xen.public.grant_table import (
    GNTTAB_COPY,
    GNTTAB_MAP_GRANT_REF,
    GNTTAB_QUERY_SIZE,
    GNTTAB_SETUP_TABLE,
    GNTTAB_TRANSFER,
    GNTTAB_UNMAP_GRANT_REF,
    MAX_GRANT_OPS,
    NR_GRANT_ENTRIES,
    GNTCOPY_dest_gref,
    GNTCOPY_source_gref,
    GNTMAP_application_map,
    GNTMAP_contains_pte,
    GNTMAP_device_map,
    GNTMAP_host_map,
    GNTMAP_readonly,
    GNTST_bad_copy_arg,
    GNTST_bad_domain,
    GNTST_bad_gntref,
    GNTST_bad_handle,
    GNTST_bad_page,
    GNTST_bad_virt_addr,
    GNTST_general_error,
    GNTST_no_device_space,
    GNTST_okay,
    GNTST_permission_denied,
    GNTTABOP_copy,
    GNTTABOP_map_grant_ref,
    GNTTABOP_query_size,
    GNTTABOP_setup_table,
    GNTTABOP_transfer,
    GNTTABOP_unmap_grant_ref,
    GTF_accept_transfer,
    GTF_permit_access,
    GTF_reading,
    GTF_readonly,
    GTF_transfer_committed,
    GTF_transfer_completed,
    GTF_type_mask,
    GTF_writing,
)
from framework.xen.public.layout import Layout
from framework.xen.public.xen import DOMID_SELF
from framework.xen.tce import foreign_slot_tces
from framework.xen.xencomm import xencomm_of

if TYPE_CHECKING:
    from framework.xen.hypervisor import Hypervisor


# --- shared helpers --------------------------------------------------------------------------
def _granted_frame(
    mem: MachineMemory, granter: Domain, grantee: Domain, ref: int, write: bool
) -> tuple[int, ActiveGrant | None, int]:
    """Check that `ref` of `granter` lets `grantee` read (or write) the frame.

    Returns (mfn, the active entry if pinned, the entry's flags). Xen's
    ``__acquire_grant_for_copy`` / map pin checks, without pinning.
    """
    if ref >= NR_GRANT_ENTRIES:
        raise GrantOpRefused(
            GNTST_bad_gntref,
            f"ref {ref} is beyond the {NR_GRANT_ENTRIES} entries of d{granter.domid}'s table",
        )
    if not granter.grant_frames:
        raise GrantOpRefused(GNTST_general_error, f"d{granter.domid} has no grant table yet")
    table: GrantTable = granter.grants
    act = table.active.get(ref)
    if act is not None and act.domid != grantee.domid:
        raise GrantOpRefused(
            GNTST_general_error, f"ref {ref} of d{granter.domid} is pinned for d{act.domid}"
        )
    flags, domid, frame = read_entry(mem, entry_maddr(granter, ref))
    if act is None or (write and not act.write_pins):
        if act is None and (flags & GTF_type_mask != GTF_permit_access or domid != grantee.domid):
            raise GrantOpRefused(
                GNTST_general_error,
                f"ref {ref} of d{granter.domid} (flags {flags:#x}, domid {domid}) does not "
                f"permit access to d{grantee.domid}",
            )
        if write and flags & GTF_readonly:
            raise GrantOpRefused(
                GNTST_general_error,
                f"ref {ref} of d{granter.domid} is a read-only grant: no write access",
            )
    if act is not None:
        return act.mfn, act, flags
    mfn = _own_frame(granter, frame)
    if mfn is None:
        raise GrantOpRefused(
            GNTST_general_error,
            f"ref {ref} of d{granter.domid} grants pfn {frame:#x}, which is not its memory",
        )
    return mfn, None, flags


def _own_frame(dom: Domain, pfn: int) -> int | None:
    """The machine frame of the domain's own memory at `pfn` (None if it has none there):
    grants, copies and transfers name ordinary memory, never GNTTAB/foreign/I/O pfns."""
    if dom.phys is None:
        return None
    try:
        return dom.phys.pfn_to_mfn(pfn)
    except NotOwned:
        return None


def _domain_named(xen: Hypervisor, caller: Domain, domid: int) -> Domain | None:
    if domid == DOMID_SELF or domid == caller.domid:
        return caller
    return xen.domains.get(domid)


def _emit(
    xen: Hypervisor, core: Core, v: Vcpu, kind: int, a: int, b: int, c: int, status: int, why: str
) -> None:
    """One gnttab.* record for the calling VCPU (why: the refusal reason, "" if okay)."""
    xen.rec.emit(kind, core.now_ns(), core.cpu_id, v.domain.domid, v.vcpu_id, a, b, c, status, why)


# --- the operations ----------------------------------------------------------------------------
OpBody = Callable[["Hypervisor", Core, Vcpu, dict[str, int]], dict[str, int]]


def _setup_table(xen: Hypervisor, core: Core, v: Vcpu, op: dict[str, int]) -> dict[str, int]:
    caller = v.domain
    if op["nr_frames"] > NR_GRANT_FRAMES:
        return {"status": GNTST_general_error}
    dom = op["dom"]
    if dom not in (DOMID_SELF, caller.domid) and not caller.privileged:
        return {"status": GNTST_permission_denied}
    target = _domain_named(xen, caller, dom)
    if target is None:
        return {"status": GNTST_bad_domain}
    if len(target.grant_frames) < op["nr_frames"]:
        return {"status": GNTST_general_error}
    # Auto-translated: the domain names its grant frames by their GNTTAB pfns.
    base = xen.alloc.max_page
    pfns = b"".join((base + i).to_bytes(8, "big") for i in range(op["nr_frames"]))
    if pfns:
        xencomm_of(xen, caller).copy_to_guest(op["frame_list"], pfns)  # XencommError: EFAULT
    return {"status": GNTST_okay}


def _query_size(xen: Hypervisor, core: Core, v: Vcpu, op: dict[str, int]) -> dict[str, int]:
    caller = v.domain
    dom = op["dom"]
    if dom not in (DOMID_SELF, caller.domid) and not caller.privileged:
        return {"status": GNTST_permission_denied}
    target = _domain_named(xen, caller, dom)
    if target is None:
        return {"status": GNTST_bad_domain}
    return {
        "nr_frames": len(target.grant_frames),
        "max_nr_frames": NR_GRANT_FRAMES,
        "status": GNTST_okay,
    }


def _map(xen: Hypervisor, core: Core, v: Vcpu, op: dict[str, int]) -> dict[str, int]:
    mapper = v.domain
    flags, ref, domid, host_addr = op["flags"], op["ref"], op["dom"], op["host_addr"]
    slot = -1
    try:
        if not flags & (GNTMAP_device_map | GNTMAP_host_map):
            raise GrantOpRefused(
                GNTST_bad_gntref, f"flags {flags:#x} ask for neither a host nor a device mapping"
            )
        granter = xen.domains.get(domid)
        if granter is None:
            raise GrantOpRefused(GNTST_bad_domain, f"no domain {domid}")
        if granter.state == DomainState.DYING:
            raise GrantOpRefused(GNTST_bad_domain, f"d{domid} is dying: nothing more of it maps")
        readonly = bool(flags & GNTMAP_readonly)
        mfn, act, eflags = _granted_frame(xen.memory, granter, mapper, ref, not readonly)
        # What the port's create_grant_host_mapping accepts.
        if flags & (GNTMAP_application_map | GNTMAP_contains_pte):
            raise GrantOpRefused(
                GNTST_general_error,
                "GNTMAP_application_map and GNTMAP_contains_pte are not supported on PowerPC",
            )
        if not flags & GNTMAP_host_map:
            raise GrantOpRefused(
                GNTST_general_error,
                "a device-only mapping is not supported: grants map into the foreign area",
            )
        area = mapper.foreign
        if area is None:
            raise GrantOpRefused(
                GNTST_permission_denied,
                f"d{mapper.domid} has no foreign map area: only dom0 can map a grant entry",
            )
        if host_addr == 0:
            slot = next((i for i, held in enumerate(area.slots) if held is None), -1)
            if slot < 0:
                raise GrantOpRefused(
                    GNTST_no_device_space, f"all {FOREIGN_SLOTS} foreign slots are in use"
                )
        else:
            index = (host_addr - FOREIGN_GPA_BASE) >> 12
            if host_addr & (PAGE_SIZE - 1) or not 0 <= index < FOREIGN_SLOTS:
                raise GrantOpRefused(
                    GNTST_bad_virt_addr,
                    f"host_addr {host_addr:#x} is not a 4 KiB slot of the foreign area "
                    f"[{FOREIGN_GPA_BASE:#x}, {FOREIGN_GPA_BASE + FOREIGN_SLOTS * PAGE_SIZE:#x})",
                )
            held = area.slots[index]
            if held is not None:
                raise GrantOpRefused(
                    GNTST_general_error,
                    f"foreign slot {index} already maps ref {held.ref} of d{held.domid}",
                )
            slot = index
    except GrantOpRefused as r:
        _emit(xen, core, v, K.GNTTAB_MAP, domid, ref, slot, r.status, r.reason)
        return {"status": r.status}
    # Commit: flags in the shared entry, pins, the slot and the maptrack handle.
    table: GrantTable = granter.grants
    if act is None:
        act = ActiveGrant(mapper.domid, mfn)
        table.active[ref] = act
    addr = entry_maddr(granter, ref)
    xen.memory.write_u16(addr, eflags | GTF_reading | (0 if readonly else GTF_writing))
    if flags & GNTMAP_device_map:
        if readonly:
            act.dev_r += 1
        else:
            act.dev_w += 1
    if readonly:
        act.host_r += 1
    else:
        act.host_w += 1
    assert area is not None
    area.slots[slot] = ForeignSlot(mfn, granter.domid, ref, readonly)
    handle = mapper.grants.add_mapping(GrantMapping(granter.domid, ref, flags, slot, mfn))
    _emit(xen, core, v, K.GNTTAB_MAP, granter.domid, ref, slot, GNTST_okay, "")
    return {
        "status": GNTST_okay,
        "handle": handle,
        "host_addr": FOREIGN_GPA_BASE + slot * PAGE_SIZE,
        "dev_bus_addr": mfn << 12 if flags & GNTMAP_device_map else 0,
    }


def _unmap(xen: Hypervisor, core: Core, v: Vcpu, op: dict[str, int]) -> dict[str, int]:
    mapper = v.domain
    handle = op["handle"]
    table: GrantTable = mapper.grants
    m = table.mapping(handle)
    remote, ref, slot = (m.domid, m.ref, m.slot) if m is not None else (-1, -1, -1)
    try:
        if m is None:
            raise GrantOpRefused(GNTST_bad_handle, f"grant handle {handle} maps nothing")
        want = FOREIGN_GPA_BASE + m.slot * PAGE_SIZE
        if op["host_addr"] != want:
            raise GrantOpRefused(
                GNTST_general_error,
                f"host_addr {op['host_addr']:#x} is not foreign slot {m.slot} ({want:#x}) "
                f"of handle {handle}",
            )
        if op["dev_bus_addr"] and op["dev_bus_addr"] >> 12 != m.mfn:
            raise GrantOpRefused(
                GNTST_general_error,
                f"dev_bus_addr {op['dev_bus_addr']:#x} is not the granted frame {m.mfn << 12:#x}",
            )
        if table.slot_ptes.get(m.slot):
            ptexes = sorted(p for p, s in table.foreign_ptes.items() if s == m.slot)
            raise GrantOpRefused(
                GNTST_general_error,
                f"foreign slot {m.slot} is still mapped by a page table entry "
                f"(HTAB index {', '.join(map(str, ptexes))}): H_REMOVE it first",
            )
        tces = foreign_slot_tces(mapper, m.slot)
        if tces:
            raise GrantOpRefused(
                GNTST_general_error,
                f"foreign slot {m.slot} is still mapped by an IOMMU TCE "
                f"(liobn {tces[0][0]:#x} ioba {tces[0][1]:#x}): clear it with H_PUT_TCE first",
            )
    except GrantOpRefused as r:
        _emit(xen, core, v, K.GNTTAB_UNMAP, remote, ref, slot, r.status, r.reason)
        return {"status": r.status}
    table.drop_mapping(handle)
    assert mapper.foreign is not None
    mapper.foreign.free(m.slot)
    granter = xen.domains.get(m.domid)
    if granter is not None:
        unpin(xen.memory, granter, m.ref, m.flags)
    _emit(xen, core, v, K.GNTTAB_UNMAP, remote, ref, slot, GNTST_okay, "")
    foreign_mapping_gone(xen, m.domid, m.mfn)  # a dying granter's frame may go now
    return {"status": GNTST_okay}


def _copy(xen: Hypervisor, core: Core, v: Vcpu, op: dict[str, int]) -> dict[str, int]:
    caller = v.domain
    flags, length = op["flags"], op["len"]
    src_gref, dst_gref = bool(flags & GNTCOPY_source_gref), bool(flags & GNTCOPY_dest_gref)
    # The trace names the grant side (the source if both are grants).
    side = "source" if src_gref or not dst_gref else "dest"
    remote = op[f"{side}_domid"] if src_gref or dst_gref else -1
    ref = op[f"{side}_ref"] if src_gref or dst_gref else -1
    try:
        for name in ("source", "dest"):
            if op[f"{name}_offset"] + length > PAGE_SIZE:
                raise GrantOpRefused(
                    GNTST_bad_copy_arg,
                    f"{name} offset {op[f'{name}_offset']} + len {length} runs past the page",
                )
        maddrs: list[int] = []
        for name, is_gref, write in (("source", src_gref, False), ("dest", dst_gref, True)):
            domid = op[f"{name}_domid"]
            if not is_gref and domid not in (DOMID_SELF, caller.domid) and not caller.privileged:
                raise GrantOpRefused(
                    GNTST_permission_denied,
                    f"{name} names pfn {op[f'{name}_gmfn']:#x} of d{domid}: only a "
                    "privileged domain may copy by frame number outside itself",
                )
            dom = _domain_named(xen, caller, domid)
            if dom is None:
                raise GrantOpRefused(GNTST_bad_domain, f"{name} domain {domid} does not exist")
            if is_gref:
                mfn, _act, _flags = _granted_frame(
                    xen.memory, dom, caller, op[f"{name}_ref"], write
                )
            else:
                pfn = op[f"{name}_gmfn"]
                own = _own_frame(dom, pfn)
                if own is None:
                    raise GrantOpRefused(
                        GNTST_general_error, f"{name} pfn {pfn:#x} is not d{dom.domid}'s memory"
                    )
                mfn = own
            maddrs.append((mfn << 12) + op[f"{name}_offset"])
    except GrantOpRefused as r:
        _emit(xen, core, v, K.GNTTAB_COPY, remote, ref, length, r.status, r.reason)
        return {"status": r.status}
    src, dst = maddrs
    if length:
        xen.memory.write(dst, xen.memory.read(src, length))
    core.charge(costs.COPY_PER_KIB * (length // 1024 + 1))
    _emit(xen, core, v, K.GNTTAB_COPY, remote, ref, length, GNTST_okay, "")
    return {"status": GNTST_okay}


def _htab_mappings(mem: MachineMemory, dom: Domain, mfn: int) -> list[tuple[int, bool]]:
    """(HTAB index, large) of every valid PTE of `dom` whose page contains `mfn`."""
    if not dom.htab_bytes:
        return []
    words = array("Q")
    words.frombytes(mem.read(dom.htab_maddr, dom.htab_bytes))
    if sys.byteorder == "little":
        words.byteswap()  # PTEs are big-endian doublewords
    small = mfn << 12
    large_mask = ~((1 << LARGE_PAGE_SHIFT) - 1)
    large = small & large_mask
    found: list[tuple[int, bool]] = []
    for i in range(0, len(words), 2):
        hi = words[i]
        if not hi & PTE_V:
            continue
        rpn = words[i + 1] & PTE_RPN_MASK
        if hi & PTE_L:
            if rpn & large_mask == large:
                found.append((i // 2, True))
        elif rpn == small:
            found.append((i // 2, False))
    return found


def _transfer(xen: Hypervisor, core: Core, v: Vcpu, op: dict[str, int]) -> dict[str, int]:
    donor = v.domain
    pfn, domid, ref = op["mfn"], op["domid"], op["ref"]
    mfn = -1
    try:
        own = _own_frame(donor, pfn)
        if own is None or donor.phys is None:
            raise GrantOpRefused(GNTST_bad_page, f"pfn {pfn:#x} is not d{donor.domid}'s memory")
        mfn = own
        if pfn < donor.phys.rma_pages:
            raise GrantOpRefused(
                GNTST_bad_page,
                f"pfn {pfn:#x} is in the RMA: RMA pages can never be given away",
            )
        core.charge(costs.PAGE_TABLE_OP * 4)  # the HTAB walk below
        for ptex, large in _htab_mappings(xen.memory, donor, mfn):
            if large:
                raise GrantOpRefused(
                    GNTST_bad_page,
                    f"pfn {pfn:#x} is still covered by a 16 MiB page table entry (HTAB index "
                    f"{ptex}): the kernel's pinned large-page linear map keeps it, which is "
                    "why the 970 port cannot balloon",
                )
            raise GrantOpRefused(
                GNTST_bad_page,
                f"pfn {pfn:#x} is still mapped by a 4 KiB page table entry (HTAB index {ptex})",
            )
        for other in xen.domains.values():
            if other.foreign is None:
                continue
            for index, s in enumerate(other.foreign.slots):
                if s is not None and s.mfn == mfn:
                    raise GrantOpRefused(
                        GNTST_bad_page,
                        f"pfn {pfn:#x} is mapped in d{other.domid}'s foreign slot {index}",
                    )
        receiver = xen.domains.get(domid)
        if receiver is None:
            raise GrantOpRefused(GNTST_bad_domain, f"no domain {domid}")
        if receiver.state in (DomainState.SHUTDOWN, DomainState.DYING) or receiver.phys is None:
            raise GrantOpRefused(GNTST_general_error, f"d{domid} is not running")
        if receiver.max_pages and receiver.tot_pages >= receiver.max_pages:
            raise GrantOpRefused(
                GNTST_general_error,
                f"d{domid} has no reservation headroom ({receiver.tot_pages} of "
                f"{receiver.max_pages} pages)",
            )
        if ref >= NR_GRANT_ENTRIES or not receiver.grant_frames:
            raise GrantOpRefused(
                GNTST_general_error, f"ref {ref} is not an entry of d{domid}'s table"
            )
        addr = entry_maddr(receiver, ref)
        eflags, edomid, frame = read_entry(xen.memory, addr)
        if eflags != GTF_accept_transfer or edomid != donor.domid:
            raise GrantOpRefused(
                GNTST_general_error,
                f"ref {ref} of d{domid} (flags {eflags:#x}, domid {edomid}) does not accept "
                f"a transfer from d{donor.domid}",
            )
        if frame not in receiver.phys.holes or frame in receiver.phys.extras:
            raise GrantOpRefused(
                GNTST_general_error,
                f"ref {ref} of d{domid} names pfn {frame:#x}, which is not a hole in its "
                "memory map",
            )
    except GrantOpRefused as r:
        _emit(xen, core, v, K.GNTTAB_TRANSFER, domid, ref, mfn, r.status, r.reason)
        return {"status": r.status}
    # The frame changes owner; the entry keeps the receiver's pfn (auto-translated).
    donor.phys = donor.phys.without_page(pfn)
    assert receiver.phys is not None
    receiver.phys = receiver.phys.with_page(frame, mfn)
    xen.memory.write_u16(addr, eflags | GTF_transfer_committed | GTF_transfer_completed)
    core.charge(costs.COPY_PER_KIB)
    _emit(xen, core, v, K.GNTTAB_TRANSFER, domid, ref, mfn, GNTST_okay, "")
    return {"status": GNTST_okay}


_OPS: dict[int, tuple[Layout, OpBody]] = {
    GNTTABOP_map_grant_ref: (GNTTAB_MAP_GRANT_REF, _map),
    GNTTABOP_unmap_grant_ref: (GNTTAB_UNMAP_GRANT_REF, _unmap),
    GNTTABOP_setup_table: (GNTTAB_SETUP_TABLE, _setup_table),
    GNTTABOP_transfer: (GNTTAB_TRANSFER, _transfer),
    GNTTABOP_copy: (GNTTAB_COPY, _copy),
    GNTTABOP_query_size: (GNTTAB_QUERY_SIZE, _query_size),
}
#: Operations only a domain with I/O privileges may use (grant_operation_permitted).
_PRIVILEGED_OPS: Final = (GNTTABOP_map_grant_ref, GNTTABOP_unmap_grant_ref, GNTTABOP_transfer)


def _patch(layout: Layout, raw: bytes, fields: dict[str, int]) -> bytes:
    """`raw` with the given fields rewritten (the rest, padding included, as read)."""
    buf = bytearray(raw)
    for name, value in fields.items():
        off, width = layout.fields[name]
        buf[off : off + width] = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "big")
    return bytes(buf)


def do_grant_table_op(xen: Hypervisor, core: Core, v: Vcpu) -> int:
    """HYPERVISOR_grant_table_op(cmd = r4, xencomm handle of an op array = r5, count = r6)."""
    cmd, handle, count = core.gpr(4), core.gpr(5), core.gpr(6)
    core.charge(costs.HCALL_OP)
    entry = _OPS.get(cmd)
    if entry is None:
        return -ENOSYS
    layout, body = entry
    if count > MAX_GRANT_OPS:
        return -EINVAL
    if cmd in (GNTTABOP_setup_table, GNTTABOP_query_size) and count != 1:
        return -EINVAL
    if cmd in _PRIVILEGED_OPS and not v.domain.privileged:
        return -EPERM
    comm = xencomm_of(xen, v.domain)
    size = layout.size
    for i in range(count):
        try:
            raw = comm.copy_from_guest(handle, size, i * size)
            core.charge(costs.XENCOMM_PER_PAGE + costs.HCALL_OP)
            out = body(xen, core, v, layout.unpack(raw))
            comm.copy_to_guest(handle, _patch(layout, raw, out), i * size)
        except XencommError as err:
            return -err.errno
    return 0
