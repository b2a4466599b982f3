"""Xen's private grant-table state of one domain: pin counts per entry, the mapper's
maptrack, and which HTAB entries map which foreign slot.

Kept outside the shared grant frames, as Xen keeps it; a leaf module (it imports nothing of
the hypervisor) so that `Domain` can hold a typed `GrantTable`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class ActiveGrant:
    """A pinned entry of a granter's table (Xen's `active_grant_entry`): who holds it and
    how many host/device, read/write mappings do. GTF_reading/GTF_writing stay set in the
    shared entry while these counts say so."""

    domid: int  # the domain the grant is pinned for
    mfn: int  # the frame, fixed when first pinned
    host_r: int = 0
    host_w: int = 0
    dev_r: int = 0
    dev_w: int = 0

    @property
    def pins(self) -> int:
        return self.host_r + self.host_w + self.dev_r + self.dev_w

    @property
    def write_pins(self) -> int:
        return self.host_w + self.dev_w


@dataclass(frozen=True, slots=True)
class GrantMapping:
    """One maptrack entry of the mapper: what its grant handle stands for."""

    domid: int  # the granting domain
    ref: int
    flags: int  # GNTMAP_* it was mapped with
    slot: int  # foreign area slot
    mfn: int


@dataclass
class GrantTable:
    """A domain's grant state that Xen keeps to itself (the entries are in its frames)."""

    #: Pinned entries of this domain's table, by ref.
    active: dict[int, ActiveGrant] = field(default_factory=dict)
    #: This domain's own mappings of other domains' grants; the index is the handle.
    maptrack: list[GrantMapping | None] = field(default_factory=list)
    #: HTAB index -> foreign slot, for this domain's valid PTEs on foreign pfns.
    foreign_ptes: dict[int, int] = field(default_factory=dict)
    #: Foreign slot -> how many valid PTEs reference it (unmap refuses while > 0).
    slot_ptes: dict[int, int] = field(default_factory=dict)

    def mapping(self, handle: int) -> GrantMapping | None:
        if 0 <= handle < len(self.maptrack):
            return self.maptrack[handle]
        return None

    def add_mapping(self, m: GrantMapping) -> int:
        """Record a mapping under the lowest free handle."""
        for handle, old in enumerate(self.maptrack):
            if old is None:
                self.maptrack[handle] = m
                return handle
        self.maptrack.append(m)
        return len(self.maptrack) - 1

    def drop_mapping(self, handle: int) -> GrantMapping:
        m = self.mapping(handle)
        if m is None:
            raise ValueError(f"grant handle {handle} maps nothing")
        self.maptrack[handle] = None
        return m

    def pte_entered(self, ptex: int, slot: int) -> None:
        """H_ENTER put a valid PTE for foreign `slot` at HTAB index `ptex`."""
        self.foreign_ptes[ptex] = slot
        self.slot_ptes[slot] = self.slot_ptes.get(slot, 0) + 1

    def pte_removed(self, ptex: int) -> int | None:
        """H_REMOVE invalidated HTAB index `ptex`; returns the foreign slot it referenced."""
        slot = self.foreign_ptes.pop(ptex, None)
        if slot is not None:
            left = self.slot_ptes[slot] - 1
            if left:
                self.slot_ptes[slot] = left
            else:
                del self.slot_ptes[slot]
        return slot


__all__ = ["ActiveGrant", "GrantMapping", "GrantTable"]
