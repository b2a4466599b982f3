"""How a domain dies: XEN_DOMCTL_destroydomain kills it at once, and the domain itself goes
when nothing maps its memory any more, as Xen 3.x does it.

Xen's `domain_kill` (common/domain.c) marks the domain dying, closes its event channels
(`evtchn_destroy`), drops the grant mappings it holds of others (`gnttab_release_mappings`)
and relinquishes its memory (`domain_relinquish_resources`): every page goes back to the
free lists, except those another domain still maps, which keep their reference. The
domain struct lives on (`xm list` shows it dying) until the last such reference is put;
then `domain_destroy` frees its grant table and the domain, and its id may be reused.

On the 970 port another domain (dom0) reaches a guest's frames only through its foreign
map area, by grant: a foreign slot is the reference. (A TCE or an HTAB entry on the slot
keeps the slot: unmap refuses while one exists.) So here:

- `domain_kill`: state DYING; event channels closed, own grant mappings released, TCE
  tables, HTAB and every frame no foreign slot maps freed (scrubbed by the allocator);
  the frames still mapped are `held_frames`. With none held the domain is destroyed at
  once; otherwise the trace records `dom.dying` with how many frames are held.
- `foreign_mapping_gone`: a grant unmap (or a dying mapper's release) dropped a slot that
  mapped a frame of a dying domain: once no slot maps it, the frame is freed; when the
  last held frame goes, `domain_destroy` runs.
- `domain_destroy`: the grant frames go, the domain leaves `xen.domains` (its id is free
  again for the createdomain rover), `dom.destroy` is recorded and the hypervisor's
  `destroy_hooks` run, so whatever dom0 and the machine keep per domain (a guest kernel,
  a vbd's disk) goes with it.

Memory is scrubbed before another domain can be given it: the frame allocator zeroes every
frame it takes back (`FrameAllocator(scrub=...)`), as Xen scrubs a dying domain's pages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from framework.trace.ids import K
from framework.xen.domain import Domain, DomainState
from framework.xen.event_channel import evtchn_close
from framework.xen.grant_table import free_grant_frames, release_mappings
from framework.xen.tce import destroy_tce_tables

if TYPE_CHECKING:
    from framework.xen.hypervisor import Hypervisor

__all__ = ["domain_destroy", "domain_kill", "foreign_mapping_gone", "mapped_frames"]


def mapped_frames(xen: Hypervisor, domid: int) -> set[int]:
    """Frames of domain `domid` that a foreign slot of any domain maps."""
    held: set[int] = set()
    for other in xen.domains.values():
        area = other.foreign
        if area is None:
            continue
        for s in area.slots:
            if s is not None and s.domid == domid:
                held.add(s.mfn)
    return held


def domain_kill(xen: Hypervisor, dom: Domain) -> None:
    """Kill a domain whose VCPUs are all stopped; a dying domain is left as it is."""
    if dom.state == DomainState.DYING:
        return
    dom.state = DomainState.DYING
    cpu = xen.running_cpu()
    # evtchn_destroy: the peers' ends become unbound, pirqs and virqs go.
    for port in range(1, len(dom.evtchn.ports)):
        evtchn_close(xen, dom, port)
    for granter, mfn in release_mappings(xen, dom):
        foreign_mapping_gone(xen, granter, mfn)
    destroy_tce_tables(xen, dom)
    xen.drop_timers(dom.domid)
    xen.sched.remove_domain(dom.domid)
    if dom.htab_bytes:
        mfn, count = dom.htab_maddr >> 12, dom.htab_bytes >> 12
        xen.alloc.free(mfn, count)
        xen.rec.emit(K.MEM_FREE, xen.now(), cpu, dom.domid, -1, mfn, count, text="htab")
        dom.htab_bytes = 0
    held: set[int] = set()
    if dom.phys is not None:
        phys = dom.phys
        held = {m for m in mapped_frames(xen, dom.domid) if phys.owns_mfn(m)}
        for mfn, count in phys.mfns():
            for first, n in _runs_without(mfn, count, held):
                xen.alloc.free(first, n)
                xen.rec.emit(K.MEM_FREE, xen.now(), cpu, dom.domid, -1, first, n, text="memory")
        dom.phys = None  # nothing may reach its memory any more (memory_op, copies, ...)
        dom.xencomm = None
    dom.held_frames = held
    if held:
        xen.rec.emit(K.DOM_DYING, xen.now(), cpu, dom.domid, -1, len(held))
        return
    domain_destroy(xen, dom)


def foreign_mapping_gone(xen: Hypervisor, domid: int, mfn: int) -> None:
    """A foreign slot mapping frame `mfn` of domain `domid` was unmapped: free the frame if
    the domain is dying and no other slot maps it, and the domain with its last frame."""
    dom = xen.domains.get(domid)
    if dom is None or dom.state != DomainState.DYING or mfn not in dom.held_frames:
        return
    if mfn in mapped_frames(xen, domid):
        return
    dom.held_frames.discard(mfn)
    xen.alloc.free(mfn, 1)
    xen.rec.emit(K.MEM_FREE, xen.now(), xen.running_cpu(), domid, -1, mfn, 1, text="memory")
    if not dom.held_frames:
        domain_destroy(xen, dom)


def domain_destroy(xen: Hypervisor, dom: Domain) -> None:
    """The last reference went: free the grant table, forget the domain, tell listeners."""
    free_grant_frames(xen, dom)
    del xen.domains[dom.domid]
    xen.rec.emit(K.DOM_DESTROY, xen.now(), xen.running_cpu(), dom.domid, -1)
    for hook in list(xen.destroy_hooks):
        hook(dom)


def _runs_without(mfn: int, count: int, holes: set[int]) -> list[tuple[int, int]]:
    """The runs of [mfn, mfn + count) that avoid every frame in `holes`."""
    runs: list[tuple[int, int]] = []
    start = mfn
    for h in sorted(h for h in holes if mfn <= h < mfn + count):
        if h > start:
            runs.append((start, h - start))
        start = h + 1
    if start < mfn + count:
        runs.append((start, mfn + count - start))
    return runs
