"""What the call generator aims at: the interesting values of a running machine, read from
Xen's state at the start of each batch (domain ids, frames of every owner, grant
references and ports offered to the fuzzing domain, TCE buses, the fuzzer's own layout).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from framework.hw970.memory import MachineMemory
from framework.xen.domain import Domain
from framework.xen.evtchn import PortState
from framework.xen.hypervisor import Hypervisor
from framework.xen.public.arch_powerpc import XEN_RESERVED_BYTES
from framework.xen.public.grant_table import GTF_permit_access, GTF_type_mask

from .layout import ARGS_END, ARGS_GPA


def grant_entries(mem: MachineMemory, dom: Domain) -> np.ndarray:
    """`dom`'s grant entries as rows (flags, domid, frame); none if it has no table."""
    raw = b"".join(mem.read(mfn << 12, 4096) for mfn in dom.grant_frames)
    words = np.frombuffer(raw, dtype=">u4").reshape(-1, 2).astype(np.int64)
    return np.stack([words[:, 0] >> 16, words[:, 0] & 0xFFFF, words[:, 1]], axis=1)


@dataclass(frozen=True)
class World:
    """Interesting values for one batch, from the fuzzer's point of view."""

    fuzzer: int
    privileged: bool
    vcpus: int
    #: Every live domain, the fuzzer's victims and (dom0) the domains it created itself.
    domains: tuple[int, ...]
    victims: tuple[int, ...]
    scratch: tuple[int, ...]
    rma_bytes: int
    memory_bytes: int
    #: The fuzzer's argument area (its own memory, where the calls' structures go).
    args: tuple[int, int]
    #: One past the highest RAM frame: the fuzzer's grant frames are the next 4 pfns.
    max_page: int
    #: Machine frames that are not the fuzzer's: victims' RMA and extent frames, their
    #: special pages, grant frames and HTABs, TCE tables, Xen's own and free memory.
    other_frames: tuple[int, ...]
    #: The fuzzer's own page frame numbers worth naming (RMA start and end, extents).
    own_pfns: tuple[int, ...]
    #: (domain, ref) of grant entries that permit the fuzzer access.
    grants: tuple[tuple[int, int], ...]
    #: (domain, port) of ports that are unbound for the fuzzer, or bound to it.
    offered_ports: tuple[tuple[int, int], ...]
    #: The fuzzer's own ports in use.
    own_ports: tuple[int, ...]
    #: TCE buses of any domain (the fuzzer's own first, if it has some).
    liobns: tuple[int, ...]
    #: Entries of the fuzzer's hashed page table, and those holding its 16 MiB pages (the
    #: kernel's linear map, where the fuzzing program itself runs).
    htab_entries: int
    large_ptes: tuple[int, ...]
    #: The fuzzer's grant handles (maptrack) and foreign area slots in use (dom0).
    grant_handles: tuple[int, ...]
    foreign_slots: tuple[int, ...]
    #: MPIC sources (pirqs).
    nsources: int
    now_ns: int


def _frame_samples(dom: Domain) -> list[int]:
    """First and last frames of each piece of a domain's memory, its special pages, its
    grant frames and its HTAB."""
    out: list[int] = []
    if dom.phys is not None:
        for mfn, count in dom.phys.mfns():
            out += [mfn, mfn + count - 1, mfn + count // 2]
        out.append(dom.shared_info_maddr >> 12)
    out += dom.grant_frames
    if dom.htab_bytes:
        out += [dom.htab_maddr >> 12, (dom.htab_maddr + dom.htab_bytes - 1) >> 12]
    for table in dom.tce_tables.values():
        out += [table.table_maddr >> 12, (table.table_maddr + 2 * table.table_bytes - 1) >> 12]
    return out


def _large_ptes(mem: MachineMemory, dom: Domain) -> tuple[int, ...]:
    """Indexes of the valid 16 MiB entries of `dom`'s hashed page table."""
    if not dom.htab_bytes:
        return ()
    ptes = np.frombuffer(mem.read(dom.htab_maddr, dom.htab_bytes), dtype=">u8").reshape(-1, 2)
    return tuple(int(i) for i in np.flatnonzero((ptes[:, 0] & 5) == 5))


def world_of(xen: Hypervisor, fuzzer: Domain, victims: tuple[int, ...], now_ns: int) -> World:
    """The values of the machine as it is now, for the fuzzing domain `fuzzer`."""
    mem = xen.memory
    live = tuple(sorted(xen.domains))
    others = [d for domid, d in sorted(xen.domains.items()) if domid != fuzzer.domid]
    frames: list[int] = [0, 1, (XEN_RESERVED_BYTES >> 12) - 1]
    for dom in others:
        frames += _frame_samples(dom)
    free = xen.alloc.free_ranges()
    if free:
        frames += [free[0][0], free[-1][0] + free[-1][1] - 1]
    grants: list[tuple[int, int]] = []
    ports: list[tuple[int, int]] = []
    for dom in others:
        entries = grant_entries(mem, dom)
        offered = (entries[:, 0] & GTF_type_mask == GTF_permit_access) & (
            entries[:, 1] == fuzzer.domid
        )
        grants += [(dom.domid, int(ref)) for ref in np.flatnonzero(offered)]
        for port, p in enumerate(dom.evtchn.ports):
            if p.remote_dom == fuzzer.domid and p.state in (
                PortState.UNBOUND,
                PortState.INTERDOMAIN,
            ):
                ports.append((dom.domid, port))
    own_ports = tuple(
        port for port, p in enumerate(fuzzer.evtchn.ports) if p.state != PortState.FREE
    )
    phys = fuzzer.phys
    assert phys is not None
    own_pfns = [0, 1, phys.rma_pages - 1, phys.rma_pages - 3, phys.nr_pages - 1]
    if phys.nr_pages > phys.rma_pages:
        own_pfns += [phys.rma_pages, phys.nr_pages - 4096]
    liobns = [*fuzzer.tce_tables, *(liobn for d in others for liobn in d.tce_tables)]
    area = fuzzer.foreign
    slots = tuple(i for i, s in enumerate(area.slots) if s is not None) if area else ()
    handles = tuple(i for i, m in enumerate(fuzzer.grants.maptrack) if m is not None)
    return World(
        fuzzer=fuzzer.domid,
        privileged=fuzzer.privileged,
        vcpus=len(fuzzer.vcpus),
        domains=live,
        victims=tuple(d for d in victims if d in xen.domains),
        scratch=tuple(d for d in live if d != fuzzer.domid and d not in victims),
        rma_bytes=fuzzer.rma_size,
        memory_bytes=phys.nr_pages << 12,
        args=(ARGS_GPA, ARGS_END),
        max_page=xen.alloc.max_page,
        other_frames=tuple(frames),
        own_pfns=tuple(own_pfns),
        grants=tuple(grants),
        offered_ports=tuple(ports),
        own_ports=own_ports,
        liobns=tuple(liobns),
        htab_entries=fuzzer.htab_bytes // 16,
        large_ptes=_large_ptes(mem, fuzzer),
        grant_handles=handles,
        foreign_slots=slots,
        nsources=xen.machine.mpic.nsources,
        now_ns=now_ns,
    )


__all__ = ["World", "grant_entries", "world_of"]
