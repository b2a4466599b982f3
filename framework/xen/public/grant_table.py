"""Grant tables v1 (`grant_table.h`) on the 970 port: GNTTABOP_* commands, grant entry
flags (GTF_*), map and copy flags, per-operation status codes and the argument layouts.

A grant entry is ``u16 flags, u16 domid, u32 frame`` in the granting domain's grant frames;
the structures are the 64-bit big-endian ones (natural alignment, 64-bit xen_pfn_t).
"""

from __future__ import annotations

from typing import Final

from framework.hw970.memory import PAGE_SIZE
from framework.xen.public.arch_powerpc import NR_GRANT_FRAMES
from framework.xen.public.layout import Layout, signed16

GNTTABOP_map_grant_ref: Final = 0
GNTTABOP_unmap_grant_ref: Final = 1
GNTTABOP_setup_table: Final = 2
GNTTABOP_transfer: Final = 4
GNTTABOP_copy: Final = 5
GNTTABOP_query_size: Final = 6
#: do_grant_table_op refuses larger batches ("count > 512" in Xen).
MAX_GRANT_OPS: Final = 512

# --- grant entry flags (GTF_*) --------------------------------------------------------------
GTF_invalid: Final = 0
GTF_permit_access: Final = 1
GTF_accept_transfer: Final = 2
GTF_type_mask: Final = 3
GTF_readonly: Final = 1 << 2  # permit_access: the grantee may only read
GTF_reading: Final = 1 << 3  # set by Xen while the grant is mapped/pinned
GTF_writing: Final = 1 << 4  # set by Xen while the grant is mapped/pinned writable
GTF_transfer_committed: Final = 1 << 2  # accept_transfer: Xen has started the transfer
GTF_transfer_completed: Final = 1 << 3  # accept_transfer: the frame is the receiver's now

# --- map flags (GNTMAP_*) -------------------------------------------------------------------
GNTMAP_device_map: Final = 1 << 0
GNTMAP_host_map: Final = 1 << 1
GNTMAP_readonly: Final = 1 << 2
GNTMAP_application_map: Final = 1 << 3
GNTMAP_contains_pte: Final = 1 << 4

# --- copy flags -----------------------------------------------------------------------------
GNTCOPY_source_gref: Final = 1 << 0
GNTCOPY_dest_gref: Final = 1 << 1

# --- per-operation status (GNTST_*) ---------------------------------------------------------
GNTST_okay: Final = 0
GNTST_general_error: Final = -1
GNTST_bad_domain: Final = -2
GNTST_bad_gntref: Final = -3
GNTST_bad_handle: Final = -4
GNTST_bad_virt_addr: Final = -5
GNTST_bad_dev_addr: Final = -6
GNTST_no_device_space: Final = -7
GNTST_permission_denied: Final = -8
GNTST_bad_page: Final = -9
GNTST_bad_copy_arg: Final = -10
_GNTST_NAMES: Final = {
    GNTST_okay: "okay",
    GNTST_general_error: "general_error",
    GNTST_bad_domain: "bad_domain",
    GNTST_bad_gntref: "bad_gntref",
    GNTST_bad_handle: "bad_handle",
    GNTST_bad_virt_addr: "bad_virt_addr",
    GNTST_bad_dev_addr: "bad_dev_addr",
    GNTST_no_device_space: "no_device_space",
    GNTST_permission_denied: "permission_denied",
    GNTST_bad_page: "bad_page",
    GNTST_bad_copy_arg: "bad_copy_arg",
}

#: Entries libxc seeds for the toolstack's backends (console and xenstore pages, for dom0).
GNTTAB_RESERVED_CONSOLE: Final = 0
GNTTAB_RESERVED_XENSTORE: Final = 1

# --- structures (64-bit PowerPC: big-endian, natural alignment, 64-bit xen_pfn_t) ----------
GRANT_ENTRY: Final = Layout(
    "grant_entry_v1", 8, {"flags": (0, 2), "domid": (2, 2), "frame": (4, 4)}
)
GRANT_ENTRIES_PER_FRAME: Final = PAGE_SIZE // GRANT_ENTRY.size
NR_GRANT_ENTRIES: Final = NR_GRANT_FRAMES * GRANT_ENTRIES_PER_FRAME

GNTTAB_SETUP_TABLE: Final = Layout(
    "gnttab_setup_table",
    24,
    {"dom": (0, 2), "nr_frames": (4, 4), "status": (8, 2), "frame_list": (16, 8)},
)
GNTTAB_QUERY_SIZE: Final = Layout(
    "gnttab_query_size",
    16,
    {"dom": (0, 2), "nr_frames": (4, 4), "max_nr_frames": (8, 4), "status": (12, 2)},
)
GNTTAB_MAP_GRANT_REF: Final = Layout(
    "gnttab_map_grant_ref",
    32,
    {
        "host_addr": (0, 8),
        "flags": (8, 4),
        "ref": (12, 4),
        "dom": (16, 2),
        "status": (18, 2),
        "handle": (20, 4),
        "dev_bus_addr": (24, 8),
    },
)
GNTTAB_UNMAP_GRANT_REF: Final = Layout(
    "gnttab_unmap_grant_ref",
    24,
    {"host_addr": (0, 8), "dev_bus_addr": (8, 8), "handle": (16, 4), "status": (20, 2)},
)
# `u` is a union { grant_ref_t ref; xen_pfn_t gmfn; }: on big-endian the u32 ref is the
# *first* four bytes of the u64, so the two views overlap at offset 0 with their own width.
GNTTAB_COPY: Final = Layout(
    "gnttab_copy",
    40,
    {
        "source_ref": (0, 4),
        "source_gmfn": (0, 8),
        "source_domid": (8, 2),
        "source_offset": (10, 2),
        "dest_ref": (16, 4),
        "dest_gmfn": (16, 8),
        "dest_domid": (24, 2),
        "dest_offset": (26, 2),
        "len": (32, 2),
        "flags": (34, 2),
        "status": (36, 2),
    },
)
# `mfn` is a pfn of the donor on PowerPC: the domain is auto-translated.
GNTTAB_TRANSFER: Final = Layout(
    "gnttab_transfer", 24, {"mfn": (0, 8), "domid": (8, 2), "ref": (12, 4), "status": (16, 2)}
)


def gntst_name(status: int) -> str:
    """'bad_gntref' for -3, and so on (status may be the raw u16)."""
    s = signed16(status & 0xFFFF)
    return _GNTST_NAMES.get(s, f"GNTST {s}")
