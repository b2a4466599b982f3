"""Shared memory through grants, as a split driver sets it up: the `grants:` of a scenario
and its `sharedmem` workload, on both ends.

The granter (a guest kernel) takes pages from its pool, fills one grant entry per page
(`GrantTableClient.grant_access`, GTF_readonly for `ro`), allocates an unbound event
channel for the peer and publishes, under its xenstore home::

    data/sharedmem/<name>/page-count     pages
    data/sharedmem/<name>/ref-<i>        grant ref of page i
    data/sharedmem/<name>/event-channel  its port
    data/sharedmem/<name>/access         ro | rw
    data/sharedmem/<name>/state          XenbusState: Connected (4), written last;
                                         Closed (6) once revoked

with the directory readable by the peer (XS_SET_PERMS), as a frontend publishes
`ring-ref` and `event-channel`.  The peer watches that `state`, reads the keys through its
xenbus, and binds the channel.  Everything either side needs is in guest memory (the grant
frames, the pages) and in xenstore: a resumed granter re-derives it from there.

A round of the workload: the granter writes `page_pattern(DATA, round, page)` into every
page and notifies; the peer checks the pages (dom0 maps them into its foreign area, a
guest copies them with GNTTABOP_copy), writes `page_pattern(ANSWER, ...)` back into a
read-write grant, and notifies; the granter checks the answer.  Every check is one
`shm.verify` record (status 0 = matched).

Revoking (`control/sharedmem/<name>` = `revoke`, written by dom0's toolstack) ends each
entry with Linux's gnttab_end_foreign_access_ref: a ref the peer still maps (Xen keeps
GTF_reading/GTF_writing set) is busy and left granted, its page leaked, as Linux 2.6.18
leaks it ("WARNING: leaking g.e. and page still in use!").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from framework.errors import KernelFault
from framework.hw970.core import Core
from framework.hw970.memory import PAGE_SIZE
from framework.trace.ids import K
from framework.xen.public.devtree import workload_groups
from framework.xen.public.grant_table import (
    GNTCOPY_dest_gref,
    GNTCOPY_source_gref,
    GNTST_okay,
    gntst_name,
)
from framework.xen.public.io.xenbus import XenbusState
from framework.xen.public.xen import DOMID_SELF

from .costs import BYTES_PER_CYCLE, NATIVE_ROUTINE
from .kmem import KernelMemory
from .shm_data import (
    ANSWER,
    CONTROL_DIR,
    DATA,
    STORE_DIR,
    GrantParams,
    describe_mismatch,
    emit_verify,
    page_pattern,
)
from .suspend_record import Value, as_bytes, as_ints, as_list
from .xenbus import Xenbus, XsReply

if TYPE_CHECKING:
    from .kernel import GuestKernel

__all__ = [
    "ANSWER",
    "CONTROL_DIR",
    "DATA",
    "STORE_DIR",
    "GrantParams",
    "Granter",
    "Peer",
    "SharedMem",
    "describe_mismatch",
    "page_pattern",
]


# --- the granting side ------------------------------------------------------------------------
@dataclass
class Granter:
    """One grant of this kernel's pages, its xenstore directory and its rounds."""

    k: GuestKernel
    p: GrantParams
    pages: list[int] = field(default_factory=list)
    refs: list[int] = field(default_factory=list)
    port: int = 0
    round: int = 0  # the last round started
    awaiting: int = 0  # the round whose answer has not come yet (0: none)
    revoked: bool = False
    answered: int = 0
    connecting: bool = False  # resumed: the peer's next event says it bound the new port

    @property
    def base(self) -> str:
        return f"{STORE_DIR}/{self.p.name}"

    def start(self, core: Core) -> None:
        """Grant the pages, allocate the channel and publish both (kernel start-up)."""
        k, p = self.k, self.p
        assert k.pool is not None and k.grants is not None and k.xenbus is not None
        mem = KernelMemory(core)
        for i in range(p.pages):
            gpa = k.pool.alloc()
            mem.write(gpa, bytes(PAGE_SIZE))
            ref = k.grants.alloc_ref()
            k.grants.grant_access(ref, p.other, gpa >> 12, p.readonly)
            self.pages.append(gpa)
            self.refs.append(ref)
        self._publish(core, None)

    def _publish(self, core: Core, done: int | None) -> None:
        """A new unbound channel for the peer, and the directory with `state` last;
        `done` (after a resume): the last round the peer should count as checked."""
        k, p = self.k, self.p
        assert k.xenbus is not None
        self.port = k.evtchn_alloc_unbound(core, p.other)
        k.port_handlers[self.port] = self._on_event
        xb = k.xenbus
        xb.mkdir(core, self.base)
        xb.set_perms(core, self.base, [f"n{k.domid}", f"r{p.other}"])
        xb.write(core, f"{self.base}/page-count", str(p.pages))
        for i, ref in enumerate(self.refs):
            xb.write(core, f"{self.base}/ref-{i}", str(ref))
        xb.write(core, f"{self.base}/event-channel", str(self.port))
        xb.write(core, f"{self.base}/access", "ro" if p.readonly else "rw")
        if done is not None:
            xb.write(core, f"{self.base}/round", str(done))
        xb.write(core, f"{self.base}/state", str(int(XenbusState.Connected)))
        k.emit(core, K.SHM_PUBLISH, p.other, p.pages, self.port, text=p.name)
        xb.watch(core, f"{CONTROL_DIR}/{p.name}", f"sharedmem:{p.name}", self._control)

    # -- save and restore ----------------------------------------------------------------------
    def capture(self) -> Value:
        """This grant for the suspend record (`framework.guest.suspend`, part 8)."""
        p = self.p
        params: list[Value] = [p.other, p.pages, int(p.readonly), p.every, p.rounds, p.vcpu]
        state: list[Value] = [self.round, self.awaiting, int(self.revoked), self.answered]
        pages: list[Value] = list(self.pages)
        refs: list[Value] = list(self.refs)
        return [p.name.encode(), params, pages, refs, state]

    @classmethod
    def from_record(cls, k: GuestKernel, part: Value) -> Granter:
        name, params, pages, refs, state = as_list(part)
        other, n, ro, every, rounds, vcpu = as_ints(params)
        round_, awaiting, revoked, answered = as_ints(state)
        p = GrantParams(as_bytes(name).decode(), other, n, bool(ro), every, rounds, vcpu)
        return cls(
            k, p, as_ints(pages), as_ints(refs), 0, round_, awaiting, bool(revoked), answered
        )

    def resume(self, core: Core) -> None:
        """In the new domain (whose grant table is new and empty): each entry filled
        again at its ref for the same page, a new channel, the directory published under
        the new home.  A revoked grant stays ended."""
        k, p = self.k, self.p
        assert k.grants is not None
        if self.revoked:
            return
        for ref, gpa in zip(self.refs, self.pages, strict=True):
            k.grants.claim_ref(ref)
            k.grants.grant_access(ref, p.other, gpa >> 12, p.readonly)
        self.connecting = True
        self._publish(core, self.awaiting - 1 if self.awaiting else self.round)

    def start_rounds(self, core: Core) -> None:
        """The workload, on its VCPU: a round every `every` ns."""
        if self.p.every:
            self.k.add_timer(core, core.now_ns() + self.p.every, self._round)

    def _round(self, core: Core, deadline: int) -> None:
        p = self.p
        if self.revoked or (p.rounds and self.round >= p.rounds):
            return
        if not self.awaiting:  # else the peer has not answered the last round: skip a beat
            self.round += 1
            self._send_round(core, self.round)
        if not p.rounds or self.round < p.rounds or self.awaiting:
            self.k.add_timer(core, deadline + p.every, self._round)

    def _send_round(self, core: Core, round_: int) -> None:
        mem = KernelMemory(core)
        for i, gpa in enumerate(self.pages):
            mem.write(gpa, page_pattern(DATA, round_, i))
        core.charge(NATIVE_ROUTINE + self.p.pages * PAGE_SIZE // BYTES_PER_CYCLE)
        self.awaiting = round_
        self.k.send(core, self.port)

    def _on_event(self, core: Core, _port: int) -> None:
        """The peer answered a round: check what it wrote into a read-write grant.  After
        a resume the peer's first event says it bound the new port: the round awaiting
        its answer (lost with the old domain, or sent before the peer bound) goes again."""
        if self.connecting:
            self.connecting = False
            if self.awaiting and not self.revoked:
                self._send_round(core, self.awaiting)
            return
        if not self.awaiting or self.revoked:
            return
        r, self.awaiting = self.awaiting, 0
        self.answered += 1
        if self.p.readonly:
            return
        mem = KernelMemory(core)
        got = [mem.read(gpa, PAGE_SIZE) for gpa in self.pages]
        core.charge(NATIVE_ROUTINE + len(got) * PAGE_SIZE // BYTES_PER_CYCLE)
        emit_verify(
            self.k, core, self.p.other, r, len(got), self.p.name, describe_mismatch(got, ANSWER, r)
        )

    def _control(self, core: Core, path: str, _token: str) -> None:
        xb = self.k.xenbus
        assert xb is not None

        def got(c: Core, r: XsReply) -> None:
            if not r.error and r.text == "revoke":
                self.revoke(c)

        xb.read(core, f"{CONTROL_DIR}/{self.p.name}", got)

    def revoke(self, core: Core) -> None:
        """End every entry (busy ones stay granted and their pages leak), then say Closed."""
        if self.revoked:
            return
        self.revoked = True
        k, p = self.k, self.p
        assert k.grants is not None and k.pool is not None and k.xenbus is not None
        for ref, gpa in zip(self.refs, self.pages, strict=True):
            flags = k.grants.entry(ref).flags
            if k.grants.end_access(ref):
                k.grants.free_ref(ref)
                k.pool.free(gpa)
                k.emit(core, K.SHM_REVOKE, p.other, ref, 0, text=f"{p.name}: ended")
            else:
                k.emit(
                    core, K.SHM_REVOKE, p.other, ref, 1,
                    text=f"{p.name}: busy, still mapped (flags {flags:#x}); left granted",
                )  # fmt: skip
                k.console(
                    core, f"sharedmem {p.name}: WARNING: leaking g.e. {ref} and page still in use!"
                )
        k.xenbus.write(core, f"{self.base}/state", str(int(XenbusState.Closed)))


# --- the peer's side ----------------------------------------------------------------------------
@dataclass
class Peer:
    """The other end of a grant: reads the published keys, binds the channel, checks and
    answers each round.  A kernel with a foreign area (dom0) maps the pages; others copy."""

    k: GuestKernel
    granter: int
    name: str
    answer: bool = True  # take part in rounds (False: only map/unmap from the timeline)
    refs: list[int] = field(default_factory=list)
    readonly: bool = False
    port: int = 0
    connected: bool = False
    closed: bool = False
    verified: int = 0
    #: Pages dom0 keeps mapped between `grant_map` and `grant_unmap`: (gpa, handle) or None.
    held: list[tuple[int, int] | None] = field(default_factory=list)
    _bound_event: bool = False
    _reconnect: bool = False  # the granter was restored: read `round`, then say bound
    _waiting: list[Callable[[Core], None]] = field(default_factory=list)
    _buffers: list[int] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"/local/domain/{self.granter}/{STORE_DIR}/{self.name}"

    @property
    def maps(self) -> bool:
        return self.k.spec.foreign_map is not None

    def start(self, core: Core) -> None:
        xb = self.k.xenbus
        assert xb is not None
        xb.watch(
            core, f"{self.base}/state", f"sharedmem-peer:{self.granter}:{self.name}", self._state
        )

    def when_connected(self, core: Core, cb: Callable[[Core], None]) -> None:
        if self.connected:
            cb(core)
        else:
            self._waiting.append(cb)

    def _state(self, core: Core, _path: str, _token: str) -> None:
        xb = self.k.xenbus
        assert xb is not None

        def got(c: Core, r: XsReply) -> None:
            if r.error:
                return
            if r.text == str(int(XenbusState.Connected)) and not self.connected:
                self._read_keys(c)
            elif r.text == str(int(XenbusState.Closed)):
                self.closed = True

        xb.read(core, f"{self.base}/state", got)

    def _read_keys(self, core: Core) -> None:
        xb = self.k.xenbus
        assert xb is not None
        found: dict[str, str] = {}

        def key(name: str, then: Callable[[Core], None]) -> Callable[[Core, XsReply], None]:
            def got(c: Core, r: XsReply) -> None:
                if r.error:
                    self.k.console(c, f"sharedmem {self.name}: {name}: {r.error}")
                    return
                found[name] = r.text
                then(c)

            return got

        def count_known(c: Core) -> None:
            n = int(found["page-count"])
            names = [f"ref-{i}" for i in range(n)] + ["event-channel", "access"]
            if self._reconnect:
                names.append("round")
            chain: Callable[[Core], None] = lambda c2: self._connect(c2, found, n)
            for name in reversed(names):
                chain = _then(xb, f"{self.base}/{name}", key, name, chain)
            chain(c)

        xb.read(core, f"{self.base}/page-count", key("page-count", count_known))

    def _connect(self, core: Core, found: dict[str, str], n: int) -> None:
        if self.connected:
            return
        k = self.k
        self.refs = [int(found[f"ref-{i}"]) for i in range(n)]
        self.readonly = found["access"] == "ro"
        self.held = [None] * n
        self.connected = True
        if "round" in found:
            self.verified = int(found["round"])
        if self.answer:
            self.port = k.evtchn_bind_interdomain(core, self.granter, int(found["event-channel"]))
            self._bound_event = True  # Xen marks the binder's new port pending once
            k.port_handlers[self.port] = self._on_event
            if not self.maps and not self._buffers:
                assert k.pool is not None
                self._buffers = [k.pool.alloc() for _ in range(n)]
            if self._reconnect:  # tell the resumed granter we are bound
                k.send(core, self.port)
        self._reconnect = False
        waiting, self._waiting = self._waiting, []
        for cb in waiting:
            cb(core)

    # -- the granter saved and restored ---------------------------------------------------------
    def granter_moved(self, core: Core, new: int) -> None:
        """The granter was restored as domain `new`: close the port its old domain left
        unbound, forget the old refs and watch the new home's directory."""
        if self.port:
            self.k.evtchn_close(core, self.port)
            self.port = 0
        self.granter = new
        self.connected = self.closed = False
        self.refs, self.held = [], []
        self._reconnect = True
        self.start(core)

    # -- reaching the pages --------------------------------------------------------------------
    def map(self, core: Core, writable_pte: bool = False) -> list[int]:
        """Map every page into the foreign area (kept until `unmap`); the GNTST status of
        each (a refused map is recorded by Xen in gnttab.map).  A read-only grant gets a
        read-only PTE unless `writable_pte` asks for a writable one (Xen makes it
        read-only all the same: H_ENTER keeps a read-only grant read-only)."""
        k = self.k
        res = k.grant_map_many(core, [(self.granter, ref, self.readonly) for ref in self.refs])
        out: list[int] = []
        for i, r in enumerate(res):
            if isinstance(r, int):
                k.console(
                    core,
                    f"sharedmem {self.name}: map of ref {self.refs[i]} failed: {gntst_name(r)}",
                )
                out.append(r)
                continue
            gpa, _handle = r
            k.map_4k(core, gpa, readonly=self.readonly and not writable_pte)
            self.held[i] = r
            out.append(GNTST_okay)
        return out

    def unmap(self, core: Core) -> None:
        k = self.k
        for i, held in enumerate(self.held):
            if held is not None:
                k.unmap_4k(core, held[0])
                k.grant_unmap(core, held[0], held[1])
                self.held[i] = None

    def write_mapped(self, core: Core, round_: int) -> None:
        """Store the answer pattern through the mappings; a store the MMU refuses (a
        read-only grant) is the storage exception a user process would take: recorded."""
        mem = KernelMemory(core)
        for i, held in enumerate(self.held):
            if held is None:
                continue
            try:
                mem.write(held[0], page_pattern(ANSWER, round_, i))
            except KernelFault as fault:
                self.k.emit(
                    core, K.SHM_FAULT, self.granter, self.refs[i], text=f"{self.name}: {fault}"
                )
                return

    # -- rounds ------------------------------------------------------------------------------------
    def _on_event(self, core: Core, _port: int) -> None:
        if self._bound_event:
            self._bound_event = False
            return
        if self.closed:
            return
        r = self.verified + 1
        if self.maps:
            self._round_mapped(core, r)
        else:
            self._round_copied(core, r)
        self.verified = r
        self.k.send(core, self.port)

    def _round_mapped(self, core: Core, r: int) -> None:
        k = self.k
        temporary = not any(h is not None for h in self.held)
        if temporary and any(st != GNTST_okay for st in self.map(core)):
            self.unmap(core)
            emit_verify(k, core, self.granter, r, 0, self.name, "map_grant_ref refused")
            return
        mem = KernelMemory(core)
        got = [mem.read(h[0], PAGE_SIZE) for h in self.held if h is not None]
        core.charge(NATIVE_ROUTINE + len(got) * PAGE_SIZE // BYTES_PER_CYCLE)
        emit_verify(k, core, self.granter, r, len(got), self.name, describe_mismatch(got, DATA, r))
        if not self.readonly:
            mem = KernelMemory(core)
            for i, h in enumerate(self.held):
                if h is not None:
                    mem.write(h[0], page_pattern(ANSWER, r, i))
        if temporary:
            self.unmap(core)

    def _round_copied(self, core: Core, r: int) -> None:
        k = self.k
        ops = [
            {
                "source_ref": ref, "source_domid": self.granter, "source_offset": 0,
                "dest_gmfn": buf >> 12, "dest_domid": DOMID_SELF, "dest_offset": 0,
                "len": PAGE_SIZE, "flags": GNTCOPY_source_gref,
            }
            for ref, buf in zip(self.refs, self._buffers, strict=True)
        ]  # fmt: skip
        bad = [gntst_name(st) for st in k.grant_copy(core, ops) if st != GNTST_okay]
        if bad:
            emit_verify(k, core, self.granter, r, 0, self.name, f"grant copy refused: {bad[0]}")
            return
        mem = KernelMemory(core)
        got = [mem.read(buf, PAGE_SIZE) for buf in self._buffers]
        core.charge(NATIVE_ROUTINE + len(got) * PAGE_SIZE // BYTES_PER_CYCLE)
        emit_verify(k, core, self.granter, r, len(got), self.name, describe_mismatch(got, DATA, r))
        if self.readonly:
            return
        for i, buf in enumerate(self._buffers):
            mem.write(buf, page_pattern(ANSWER, r, i))
        back = [
            {
                "source_gmfn": buf >> 12, "source_domid": DOMID_SELF, "source_offset": 0,
                "dest_ref": ref, "dest_domid": self.granter, "dest_offset": 0,
                "len": PAGE_SIZE, "flags": GNTCOPY_dest_gref,
            }
            for ref, buf in zip(self.refs, self._buffers, strict=True)
        ]  # fmt: skip
        bad = [gntst_name(st) for st in k.grant_copy(core, back) if st != GNTST_okay]
        if bad:
            k.console(core, f"sharedmem {self.name}: answer copy refused: {bad[0]}")


def _then(
    xb: Xenbus,
    path: str,
    key: Callable[[str, Callable[[Core], None]], Callable[[Core, XsReply], None]],
    name: str,
    after: Callable[[Core], None],
) -> Callable[[Core], None]:
    """A step of a chain of xenstore reads: read `path`, keep it as `name`, go on."""

    def step(core: Core) -> None:
        xb.read(core, path, key(name, after))

    return step


@dataclass
class SharedMem:
    """A kernel's grants (granter side) and the grants it is the peer of."""

    granters: list[Granter] = field(default_factory=list)
    peers: list[Peer] = field(default_factory=list)

    @classmethod
    def from_devtree(cls, k: GuestKernel) -> SharedMem:
        """What the kernel's `/xen/workload` node asks for: `sharedmem.<i>.*` grants it
        makes, `sharedmem-peer.<i>.*` grants made to it."""
        wl = k.spec.workload
        granters = [
            Granter(k, GrantParams.from_props(props, "peer"))
            for _, props in sorted(workload_groups(wl, "sharedmem").items())
        ]
        peers = [
            Peer(k, GrantParams.from_props(props, "granter").other, str(props["name"]))
            for _, props in sorted(workload_groups(wl, "sharedmem-peer").items())
        ]
        return cls(granters, peers)

    @classmethod
    def from_record(cls, k: GuestKernel, part: Value) -> SharedMem:
        """The grants a suspend record carries (granter side only; see `Granter.resume`)."""
        return cls([Granter.from_record(k, g) for g in as_list(part)])

    def capture(self) -> Value:
        return [g.capture() for g in self.granters]

    def resume(self, core: Core) -> None:
        for g in self.granters:
            g.resume(core)

    def start(self, core: Core) -> None:
        """Publish the grants and watch for those made to this kernel (VCPU 0, start-up)."""
        for g in self.granters:
            g.start(core)
        for p in self.peers:
            p.start(core)

    def start_rounds(self, core: Core, vcpu: int) -> None:
        for g in self.granters:
            if g.p.vcpu == vcpu:
                g.start_rounds(core)
