"""The guest kernel's side of its grant table: writing entries other domains may use.

A kernel grants a page by filling in an entry of its own grant table (which it maps at
the GNTTAB pfns `GNTTABOP_setup_table` reports) and revokes it by clearing the flags
again, but only when Xen says nobody has it mapped (GTF_reading/GTF_writing clear).

In a real kernel the flags are shared with Xen, so every update that can race with Xen
is a cmpxchg on the aligned 32-bit word holding flags and domid (the 970 has no 16-bit
atomics: lwarx/stwcx. on the word, "align down"). Natives run atomically with respect to
Xen in this simulator (no other CPU runs during a native), so a read followed by a write
of that word has the same effect; the accesses still go through guest memory.
"""

from __future__ import annotations

import heapq
from typing import Final, NamedTuple, Protocol

from framework.errors import GrantRefsExhausted
from framework.xen.public.grant_table import (
    GNTTAB_RESERVED_XENSTORE,
    GRANT_ENTRY,
    NR_GRANT_ENTRIES,
    GTF_accept_transfer,
    GTF_permit_access,
    GTF_reading,
    GTF_readonly,
    GTF_transfer_completed,
    GTF_type_mask,
    GTF_writing,
)

__all__ = [
    "NR_RESERVED_ENTRIES",
    "GrantEntry",
    "GrantMemory",
    "GrantTableClient",
]

#: Refs 0 and 1 are the console and xenstore grants the toolstack seeds.
NR_RESERVED_ENTRIES: Final = GNTTAB_RESERVED_XENSTORE + 1


class GrantMemory(Protocol):
    """Guest-physical memory as the kernel reaches it (e.g. `guest.kmem.KernelMemory`)."""

    def read(self, gpa: int, n: int) -> bytes: ...
    def write(self, gpa: int, data: bytes) -> None: ...


class GrantEntry(NamedTuple):
    """One v1 entry as read from memory."""

    flags: int
    domid: int
    frame: int


class GrantTableClient:
    """A kernel's own grant table at guest-physical `table_gpa` (its first grant frame)."""

    def __init__(self, mem: GrantMemory, table_gpa: int, nr_entries: int = NR_GRANT_ENTRIES):
        if table_gpa & 0xFFF:
            raise ValueError(f"grant table gpa {table_gpa:#x} is not page aligned")
        if not NR_RESERVED_ENTRIES < nr_entries <= NR_GRANT_ENTRIES:
            raise ValueError(
                f"{nr_entries} grant entries: need more than the {NR_RESERVED_ENTRIES} "
                f"reserved ones and at most {NR_GRANT_ENTRIES}"
            )
        self.mem = mem
        self.table_gpa = table_gpa
        self.nr_entries = nr_entries
        self._next = NR_RESERVED_ENTRIES  # refs below this were handed out at least once
        self._freed: list[int] = []  # heap: lowest freed ref first (determinism)
        self._in_use: set[int] = set()

    # -- references -----------------------------------------------------------------------
    def alloc_ref(self) -> int:
        """The lowest free grant reference (refs 0 and 1 are never handed out)."""
        if self._freed:
            ref = heapq.heappop(self._freed)
        elif self._next < self.nr_entries:
            ref = self._next
            self._next += 1
        else:
            raise GrantRefsExhausted(
                f"all {self.nr_entries - NR_RESERVED_ENTRIES} grant references are in use "
                f"(refs {NR_RESERVED_ENTRIES}..{self.nr_entries - 1}); end access to some first"
            )
        self._in_use.add(ref)
        return ref

    def claim_ref(self, ref: int) -> None:
        """Take `ref` itself (a resumed kernel re-granting the refs it had published; the
        refs below it not yet handed out become free ones)."""
        if ref in self._in_use or not NR_RESERVED_ENTRIES <= ref < self.nr_entries:
            raise ValueError(f"claim of grant ref {ref}: in use or out of range")
        if ref >= self._next:
            for r in range(self._next, ref):
                heapq.heappush(self._freed, r)
            self._next = ref + 1
        else:
            self._freed.remove(ref)
            heapq.heapify(self._freed)
        self._in_use.add(ref)

    def free_ref(self, ref: int) -> None:
        """Give `ref` back to the allocator (its entry should have been ended first)."""
        if ref not in self._in_use:
            raise ValueError(f"free of grant ref {ref}: it was not allocated")
        self._in_use.discard(ref)
        heapq.heappush(self._freed, ref)

    # -- entries --------------------------------------------------------------------------
    def entry_gpa(self, ref: int) -> int:
        if not 0 <= ref < self.nr_entries:
            raise ValueError(f"grant ref {ref} outside the table's {self.nr_entries} entries")
        return self.table_gpa + ref * GRANT_ENTRY.size

    def entry(self, ref: int) -> GrantEntry:
        raw = GRANT_ENTRY.unpack(self.mem.read(self.entry_gpa(ref), GRANT_ENTRY.size))
        return GrantEntry(raw["flags"], raw["domid"], raw["frame"])

    def _fill(self, ref: int, domid: int, pfn: int, flags: int) -> None:
        old = self.entry(ref)
        if old.flags & GTF_type_mask or old.flags & (GTF_reading | GTF_writing):
            raise ValueError(
                f"grant ref {ref} is still in use (flags {old.flags:#x} for d{old.domid}); "
                "end access to it first"
            )
        gpa = self.entry_gpa(ref)
        # frame and domid first, flags last: Xen must never see a valid type with stale data.
        self.mem.write(gpa + GRANT_ENTRY.offset("frame"), pfn.to_bytes(4, "big"))
        self.mem.write(gpa + GRANT_ENTRY.offset("domid"), domid.to_bytes(2, "big"))
        self.mem.write(gpa + GRANT_ENTRY.offset("flags"), flags.to_bytes(2, "big"))

    def grant_access(self, ref: int, domid: int, pfn: int, readonly: bool = False) -> None:
        """Let `domid` map or copy our page `pfn` (read-only when `readonly`)."""
        self._fill(ref, domid, pfn, GTF_permit_access | (GTF_readonly if readonly else 0))

    def grant_accept_transfer(self, ref: int, domid: int, pfn: int) -> None:
        """Accept a page from `domid`, to appear at our pfn `pfn` (a page we gave away)."""
        self._fill(ref, domid, pfn, GTF_accept_transfer)

    def end_access(self, ref: int) -> bool:
        """Revoke a grant: False (entry left alone) while Xen has it mapped, else True.

        Linux's ``gnttab_end_foreign_access_ref``: "revoking a mapped grant reports busy".
        """
        flags = self.entry(ref).flags
        if flags & (GTF_reading | GTF_writing):
            return False
        self.mem.write(self.entry_gpa(ref), (0).to_bytes(2, "big"))
        return True

    def transfer_completed(self, ref: int) -> int | None:
        """The pfn a transferred page arrived at, releasing the entry; None if Xen has not
        completed a transfer into `ref` (the entry is then left as it is)."""
        e = self.entry(ref)
        if e.flags & GTF_type_mask != GTF_accept_transfer or not e.flags & GTF_transfer_completed:
            return None
        self.mem.write(self.entry_gpa(ref), (0).to_bytes(2, "big"))
        return e.frame
