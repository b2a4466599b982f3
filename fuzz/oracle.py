"""The ownership oracle: every machine frame hashed before and after a batch; a frame that
changed must be the fuzzing domain's, or one it was allowed to write.

Allowed to change (the fuzzer's "own"): its memory, grant frames, hashed page table and
TCE tables; the frames of domains it created itself (dom0); frames allocated during the
batch (the trace's `mem.alloc` records); frames another domain granted it writable
access to (a permit_access entry naming it without GTF_readonly, or a grant pinned for it
with write pins).  A privileged fuzzer may also map any domain's frame by its machine
number ("MFN mappings are for dom0"): frames its page table maps writable, and frames
its H_ENTERs of the batch named, are its own for the batch.

Everything else must stay bit for bit: victims' memory, Xen's reserved 64 MiB, free
memory, victims' page tables and TCE tables, with two exceptions Xen makes on the
fuzzer's behalf, checked word for word: a victim's shared_info may gain pending bits of
ports whose remote end is the fuzzer (an event sent to a port bound to it; every port of
a quiesced victim is masked, so nothing else of shared_info moves), and a victim's grant
entries naming the fuzzer may change their GTF_reading/GTF_writing/transfer flags. And
when the fuzzer's domain shuts down (or is crashed) in the batch, Xen tells dom0 with
VIRQ_DOM_EXC: that port of dom0 may become pending.

A frame's hash is a weighted sum of its 512 doublewords with fixed odd weights modulo
2**64, so a change of any one doubleword always changes it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from framework.trace.ids import K
from framework.xen.domain import Domain
from framework.xen.evtchn import PortState
from framework.xen.hypervisor import Hypervisor
from framework.xen.public.arch_powerpc import XEN_RESERVED_BYTES
from framework.xen.public.grant_table import (
    GRANT_ENTRY,
    GTF_permit_access,
    GTF_reading,
    GTF_readonly,
    GTF_transfer_committed,
    GTF_transfer_completed,
    GTF_type_mask,
    GTF_writing,
)
from framework.xen.public.papr import H_ENTER
from framework.xen.public.xen import EVTCHN_PENDING_OFF, VIRQ_DOM_EXC

from .call import Call
from .world import grant_entries

_PAGE: Final = 4096
_WORDS: Final = _PAGE // 8
_WEIGHTS: Final = np.random.default_rng(970).integers(0, 1 << 63, _WORDS, dtype=np.uint64) * 2 + 1
#: Grant entry flag bits Xen itself sets or clears while the grantee uses the grant.
_XEN_FLAGS: Final = GTF_reading | GTF_writing | GTF_transfer_committed | GTF_transfer_completed
_PTE_V: Final = 1
_PTE_L: Final = 4
_RPN: Final = 0x0FFFFFFFFFFFF000
_PP_READ_ONLY: Final = 3


@dataclass(frozen=True)
class Violation:
    """A frame that changed although the fuzzing domain had no right to change it."""

    mfn: int
    owner: str
    detail: str

    def __str__(self) -> str:
        return f"machine frame {self.mfn:#x} ({self.owner}) changed: {self.detail}"


@dataclass
class Snapshot:
    """Hashes of every frame, what the fuzzer may write, and the pages checked by rule."""

    hashes: np.ndarray
    allowed: np.ndarray
    #: Victims' shared_info and grant frames (mfn -> (domid, bytes)), compared by rule.
    pages: dict[int, tuple[int, bytes]] = field(default_factory=dict)
    records: int = 0


def _runs(dom: Domain) -> Iterator[tuple[int, int]]:
    """(first mfn, count) of everything Xen allocated to `dom`."""
    if dom.phys is not None:
        yield from dom.phys.mfns()
    for mfn in dom.grant_frames:
        yield mfn, 1
    if dom.htab_bytes:
        yield dom.htab_maddr >> 12, dom.htab_bytes >> 12
    for table in dom.tce_tables.values():
        yield table.table_maddr >> 12, 2 * table.table_bytes >> 12


class Oracle:
    """Watches machine memory for the fuzzing domain `fuzzer` of `xen`; `victims` are the
    domains that were there before it started (the others it created itself)."""

    def __init__(self, xen: Hypervisor, fuzzer: int, victims: Sequence[int]) -> None:
        self.xen = xen
        self.fuzzer = fuzzer
        self.victims = tuple(victims)
        self.frames = xen.memory.size >> 12
        self._words = np.frombuffer(xen.memory.buf, dtype=np.uint64).reshape(self.frames, _WORDS)
        #: The fuzzer's domain shut down in the batch being compared.
        self._shut_down = False

    # -- hashing ---------------------------------------------------------------------------
    def hashes(self) -> np.ndarray:
        """Every frame's hash (integer matmul wraps modulo 2**64, as wanted)."""
        out: np.ndarray = self._words @ _WEIGHTS
        return out

    # -- what the fuzzer may write ---------------------------------------------------------
    def _victim_domains(self) -> list[Domain]:
        return [d for d in self.xen.domains.values() if d.domid in self.victims]

    def allowed(self) -> np.ndarray:
        xen, fuzzer = self.xen, self.fuzzer
        allowed = np.zeros(self.frames, dtype=bool)
        for dom in xen.domains.values():
            if dom.domid == fuzzer or dom.domid not in self.victims:
                for mfn, count in _runs(dom):
                    allowed[mfn : mfn + count] = True
        for dom in self._victim_domains():
            for mfn in self._granted_writable(dom):
                allowed[mfn] = True
        me = xen.domains.get(fuzzer)
        if me is not None and me.privileged:
            for mfn, count in self._mapped_writable(me):
                allowed[mfn : mfn + count] = True
        return allowed

    def _granted_writable(self, dom: Domain) -> Iterator[int]:
        """Frames of `dom` the fuzzer may write through a grant."""
        if dom.phys is None or not dom.grant_frames:
            return
        entries = grant_entries(self.xen.memory, dom)
        flags = entries[:, 0]
        ok = (flags & GTF_type_mask == GTF_permit_access) & (flags & GTF_readonly == 0)
        for ref in np.flatnonzero(ok & (entries[:, 1] == self.fuzzer)):
            try:
                yield dom.phys.pfn_to_mfn(int(entries[ref, 2]))
            except KeyError:
                continue  # a pfn it does not own: Xen refuses that grant
        for act in dom.grants.active.values():
            if act.domid == self.fuzzer and act.write_pins:
                yield act.mfn

    def _mapped_writable(self, dom: Domain) -> Iterator[tuple[int, int]]:
        """Frames the privileged fuzzer's page table maps writable (PP != 3)."""
        if not dom.htab_bytes:
            return
        ptes = np.frombuffer(
            self.xen.memory.read(dom.htab_maddr, dom.htab_bytes), dtype=">u8"
        ).reshape(-1, 2)
        live = (ptes[:, 0] & _PTE_V).astype(bool) & ((ptes[:, 1] & 3) != _PP_READ_ONLY)
        for hi, lo in ptes[live]:
            mfn = int(lo & _RPN) >> 12
            if mfn < self.frames:
                yield mfn, 4096 if int(hi) & _PTE_L else 1

    # -- snapshots -------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        pages: dict[int, tuple[int, bytes]] = {}
        mem = self.xen.memory
        for dom in self._victim_domains():
            if dom.phys is None:
                continue
            for mfn in (dom.shared_info_maddr >> 12, *dom.grant_frames):
                pages[mfn] = (dom.domid, mem.read(mfn << 12, _PAGE))
        return Snapshot(self.hashes(), self.allowed(), pages, len(self.xen.rec))

    def compare(self, before: Snapshot, after: Snapshot, calls: Sequence[Call]) -> list[Violation]:
        """What changed between the snapshots that the fuzzer had no right to change."""
        allowed = before.allowed | after.allowed
        self._shut_down = False
        for record in self.xen.rec.records_since(before.records):
            if record[0] == K.MEM_ALLOC:
                allowed[record[5] : record[5] + record[6]] = True
            elif record[0] == K.DOM_SHUTDOWN and record[3] == self.fuzzer:
                self._shut_down = True
        me = self.xen.domains.get(self.fuzzer)
        if me is not None and me.privileged:
            for call in calls:
                if call.r3 == H_ENTER and call.args[3] & 3 != _PP_READ_ONLY:
                    mfn = (call.args[3] & _RPN) >> 12
                    allowed[mfn : mfn + (4096 if call.args[2] & _PTE_L else 1)] = True
        changed = np.flatnonzero((before.hashes != after.hashes) & ~allowed)
        out: list[Violation] = []
        for mfn in (int(m) for m in changed):
            page = before.pages.get(mfn)
            detail = self._by_rule(mfn, page) if page is not None else "its contents"
            if detail:
                out.append(Violation(mfn, self.owner(mfn), detail))
        return out

    def _by_rule(self, mfn: int, page: tuple[int, bytes]) -> str:
        """'' if every change of a victim's shared_info or grant frame is one Xen makes
        for the fuzzer, else what is wrong."""
        domid, old = page
        new = self.xen.memory.read(mfn << 12, _PAGE)
        dom = self.xen.domains.get(domid)
        if dom is None:
            return ""  # destroyed meanwhile: its frames are free memory now
        if mfn == dom.shared_info_maddr >> 12:
            return self._pending_only(dom, old, new)
        return self._grant_flags_only(old, new)

    def _pending_only(self, dom: Domain, old: bytes, new: bytes) -> str:
        lo, hi = EVTCHN_PENDING_OFF, EVTCHN_PENDING_OFF + 512
        if old[:lo] != new[:lo] or old[hi:] != new[hi:]:
            at = next(i for i in range(_PAGE) if old[i] != new[i] and not lo <= i < hi)
            return f"shared_info of d{dom.domid} changed at offset {at:#x} (not a pending bit)"
        was = int.from_bytes(old[lo:hi], "big")
        now = int.from_bytes(new[lo:hi], "big")
        if was & ~now:
            return f"pending bits of d{dom.domid} were cleared: {was & ~now:#x}"
        for bit in _bits(now & ~was):
            # The bitmap as one big-endian number: port 64n + b is bit 64 (63 - n) + b.
            port = 64 * (63 - bit // 64) + bit % 64
            p = dom.evtchn.get(port)
            told_dom0 = p is not None and p.state == PortState.VIRQ and p.virq == VIRQ_DOM_EXC
            if self._shut_down and dom.domid == 0 and told_dom0:
                continue  # Xen told dom0 that the fuzzer's domain shut down
            bound = p is not None and p.state in (PortState.UNBOUND, PortState.INTERDOMAIN)
            if not bound or p is None or p.remote_dom != self.fuzzer:
                return f"port {port} of d{dom.domid} became pending, not a port of the fuzzer's"
        return ""

    def _grant_flags_only(self, old: bytes, new: bytes) -> str:
        size = GRANT_ENTRY.size
        for off in range(0, _PAGE, size):
            a, b = old[off : off + size], new[off : off + size]
            if a == b:
                continue
            flags_a, flags_b = int.from_bytes(a[:2], "big"), int.from_bytes(b[:2], "big")
            if a[2:] != b[2:] or (flags_a ^ flags_b) & ~_XEN_FLAGS:
                return f"grant entry at {off:#x}: {a.hex()} -> {b.hex()}"
            if int.from_bytes(a[2:4], "big") != self.fuzzer:
                return f"grant entry at {off:#x} for another domain: {a.hex()} -> {b.hex()}"
        return ""

    def owner(self, mfn: int) -> str:
        """Whose frame `mfn` is, in words."""
        for dom in self.xen.domains.values():
            name = f"d{dom.domid} {dom.name}"
            if dom.phys is not None and dom.phys.owns_mfn(mfn):
                return f"{name} pfn {dom.phys.mfn_to_pfn(mfn):#x}"
            if mfn in dom.grant_frames:
                return f"{name} grant frame {dom.grant_frames.index(mfn)}"
            if dom.htab_bytes and 0 <= mfn - (dom.htab_maddr >> 12) < dom.htab_bytes >> 12:
                return f"{name} hashed page table"
            for liobn, t in dom.tce_tables.items():
                if 0 <= mfn - (t.table_maddr >> 12) < 2 * t.table_bytes >> 12:
                    return f"{name} TCE table liobn {liobn:#x}"
        if mfn < XEN_RESERVED_BYTES >> 12:
            return "Xen"
        return "free memory"


def _bits(value: int) -> Iterator[int]:
    """Positions of the set bits of `value` (0 = least significant)."""
    while value:
        low = value & -value
        yield low.bit_length() - 1
        value ^= low


__all__ = ["Oracle", "Snapshot", "Violation"]
