"""A stand-in world for the network drivers: dom0 (0) and guests 1.. on one machine memory,
one SimPy clock and one work queue.

Real shared rings, grant tables (`GrantTableClient` entries), page pools and link models
(SimPy), with a small stand-in for the kernel's hypercall layer that applies
GNTTABOP_copy / map semantics to the real grant entries, and a xenstore that replies and
fires watches asynchronously, as xenstored does. Used by tests/guest/test_netif.py and
test_netswitch.py.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import simpy

from framework.guest.bridge import build_frame, parse_mac
from framework.guest.grants import GrantTableClient
from framework.guest.netback import NetBack
from framework.guest.netfront import NetFront
from framework.guest.netstream import NETSTREAM_HEADER, NetSink, StreamHeader, pattern_bytes
from framework.guest.pages import PagePool
from framework.guest.xenbus import XsReply
from framework.hw970.core import Core
from framework.hw970.link import Link, LinkParams
from framework.hw970.memory import MachineMemory
from framework.xen.public.grant_table import (
    GNTTAB_COPY,
    GNTCOPY_dest_gref,
    GNTCOPY_source_gref,
    GNTST_general_error,
    GTF_permit_access,
    GTF_reading,
    GTF_readonly,
    GTF_type_mask,
    GTF_writing,
)
from framework.xen.public.io.xenbus import XenbusState
from framework.xen.public.xen import DOMID_SELF

MAC_A = "00:16:3e:00:01:00"
MAC_B = "00:16:3e:00:02:00"
MAC_C = "00:16:3e:00:03:00"

_CLOCK_MEMORY = MachineMemory(16 << 20)


def core_at(now_ns: int, mem: MachineMemory = _CLOCK_MEMORY, cpu: int = 0) -> Core:
    """A real core, idle (no context loaded), whose native-call time starts at now_ns:
    the drivers only read its time and charge it cycles."""
    core = Core(cpu, mem, 1_800_000_000, 33_333_333, {})
    core.slice_start_ns = now_ns
    return core


REGION = 16 << 20  # each domain's guest-physical memory, one after another in machine memory
GRANT_GPA = 0xF00000
FOREIGN = 1 << 34


class View:
    """A domain's guest-physical memory (dom0: plus its foreign slots)."""

    def __init__(self, world: NetWorld, domid: int) -> None:
        self.world, self.domid, self.base = world, domid, domid * REGION

    def _maddr(self, gpa: int, n: int, write: bool) -> int:
        if gpa >= FOREIGN:
            assert self.domid == 0, "only dom0 has a foreign area"
            slot = self.world.slots[gpa & ~0xFFF]
            assert not (write and slot.readonly), f"store to read-only foreign page {gpa:#x}"
            assert (gpa & 0xFFF) + n <= 4096
            return slot.maddr + (gpa & 0xFFF)
        assert 0 <= gpa and gpa + n <= REGION, f"gpa {gpa:#x} outside d{self.domid}"
        return self.base + gpa

    def read(self, gpa: int, n: int) -> bytes:
        return self.world.mem.read(self._maddr(gpa, n, False), n)

    def write(self, gpa: int, data: bytes) -> None:
        self.world.mem.write(self._maddr(gpa, len(data), True), data)


@dataclass
class Slot:
    maddr: int
    domid: int
    ref: int
    readonly: bool


class Store:
    """xenstored, asynchronously: replies and watch events are queued work."""

    def __init__(self, world: NetWorld) -> None:
        self.world = world
        self.nodes: dict[str, str] = {}
        self.watches: list[tuple[int, str, str, Callable[..., None]]] = []

    def write(self, path: str, value: str) -> None:
        self.nodes[path] = value
        for domid, wpath, token, cb in list(self.watches):
            if path == wpath or path.startswith(wpath + "/"):
                self.world.later(domid, lambda c, cb=cb, t=token: cb(c, path, t))


class Bus:
    """One kernel's xenbus on `Store`."""

    def __init__(self, world: NetWorld, k: Kernel) -> None:
        self.world, self.k = world, k

    def _abs(self, path: str) -> str:
        return path if path.startswith("/") else f"/local/domain/{self.k.domid}/{path}"

    def read(self, core: Any, path: str, cb: Callable[[Any, XsReply], None]) -> None:
        value = self.world.store.nodes.get(self._abs(path))
        r = XsReply(16, b"", "ENOENT") if value is None else XsReply(2, value.encode())
        self.world.later(self.k.domid, lambda c: cb(c, r))

    def write(self, core: Any, path: str, value: str, cb: Any = None) -> None:
        self.world.store.write(self._abs(path), value)

    def directory(self, core: Any, path: str, cb: Callable[[Any, XsReply], None]) -> None:
        prefix = self._abs(path) + "/"
        names = sorted(
            {p[len(prefix) :].split("/")[0] for p in self.world.store.nodes if p.startswith(prefix)}
        )
        r = XsReply(1, b"".join(n.encode() + b"\0" for n in names))
        self.world.later(self.k.domid, lambda c: cb(c, r))

    def watch(self, core: Any, path: str, token: str, cb: Callable[..., None]) -> None:
        p = self._abs(path)
        self.world.store.watches.append((self.k.domid, p, token, cb))
        self.world.later(self.k.domid, lambda c: cb(c, p, token))

    def unwatch(self, core: Any, path: str, token: str) -> None:
        self.world.store.watches = [w for w in self.world.store.watches if w[2] != token]

    def switch_state(
        self, core: Any, path: str, state: XenbusState, prev: XenbusState, write: bool = True
    ) -> None:
        if write:
            self.write(core, f"{path}/state", str(int(state)))


class Kernel:
    """The part of `GuestKernel` the drivers use, over the world's memory."""

    def __init__(self, world: NetWorld, domid: int) -> None:
        self.world, self.domid = world, domid
        self.pool = PagePool(0x100000, 0xE00000)
        self.grants = GrantTableClient(View(world, domid), GRANT_GPA)
        self.port_handlers: dict[int, Callable[[Any, int], None]] = {}
        self.xenbus = Bus(world, self)
        self.os = SimpleNamespace(hardware=world)
        self.copy_calls: list[int] = []
        self.mapped_4k: set[int] = set()

    def emit(self, core: Any, kind: int, *fields: int, text: str = "") -> None:
        self.world.rows.append((kind, self.domid, fields, text))

    def memory(self, core: Any) -> View:
        return View(self.world, self.domid)

    def console(self, core: Any, text: str) -> None:
        self.world.console.append((self.domid, text))

    # event channels
    def evtchn_alloc_unbound(self, core: Any, remote: int) -> int:
        port = self.world.new_port(self.domid)
        self.world.unbound[(self.domid, port)] = remote
        return port

    def evtchn_bind_interdomain(self, core: Any, rdom: int, rport: int) -> int:
        assert self.world.unbound.pop((rdom, rport)) == self.domid
        port = self.world.new_port(self.domid)
        self.world.peer[(self.domid, port)] = (rdom, rport)
        self.world.peer[(rdom, rport)] = (self.domid, port)
        return port

    def evtchn_close(self, core: Any, port: int) -> None:
        self.port_handlers.pop(port, None)
        other = self.world.peer.pop((self.domid, port), None)
        if other is not None:
            self.world.peer.pop(other, None)

    def send(self, core: Any, port: int) -> int:
        target = self.world.peer.get((self.domid, port))
        if target is not None:
            self.world.event(*target)
        return 0

    def op(self, core: Any, nr: int, cmd: int, layout: Any, **fields: int) -> tuple[int, dict]:
        assert layout.name == "evtchn_bind_pirq"
        port = self.world.new_port(self.domid)
        self.world.irq = (self.domid, port)
        return 0, {"port": port}

    # grants, as Xen checks them against the granter's entry in memory
    def _entry(self, domid: int, ref: int) -> Any:
        return GrantTableClient(View(self.world, domid), GRANT_GPA).entry(ref)

    def _set_flags(self, domid: int, ref: int, set_: int, clear: int) -> None:
        addr = domid * REGION + GRANT_GPA + ref * 8
        self.world.mem.write_u16(addr, (self.world.mem.read_u16(addr) | set_) & ~clear)

    def grant_map_many(self, core: Any, items: list[tuple[int, int, bool]]) -> list[Any]:
        out: list[Any] = []
        for domid, ref, readonly in items:
            e = self._entry(domid, ref)
            if e.flags & GTF_type_mask != GTF_permit_access or e.domid != self.domid:
                out.append(GNTST_general_error)
                continue
            gpa = FOREIGN + 4096 * next(
                i for i in range(1024) if FOREIGN + 4096 * i not in self.world.slots
            )
            self.world.slots[gpa] = Slot(domid * REGION + e.frame * 4096, domid, ref, readonly)
            self._set_flags(domid, ref, GTF_reading | (0 if readonly else GTF_writing), 0)
            out.append((gpa, gpa))
        return out

    def grant_unmap_many(self, core: Any, maps: list[tuple[int, int]]) -> list[int]:
        for gpa, _handle in maps:
            assert gpa not in self.mapped_4k, "unmap of a grant a PTE still maps"
            slot = self.world.slots.pop(gpa)
            self._set_flags(slot.domid, slot.ref, 0, GTF_reading | GTF_writing)
        return [0] * len(maps)

    def map_4k(self, core: Any, gpa: int, readonly: bool = False) -> int:
        self.mapped_4k.add(gpa)
        return 0

    def unmap_4k(self, core: Any, gpa: int) -> None:
        self.mapped_4k.remove(gpa)

    def grant_copy(self, core: Any, ops: list[dict[str, int]]) -> list[int]:
        assert len(ops) * GNTTAB_COPY.size <= 4096, "more gnttab_copy ops than one page holds"
        self.copy_calls.append(len(ops))
        out = []
        for op in ops:
            try:
                src = self._side(op, "source", GNTCOPY_source_gref, write=False)
                dst = self._side(op, "dest", GNTCOPY_dest_gref, write=True)
            except PermissionError:
                out.append(GNTST_general_error)
                continue
            self.world.mem.write(dst, self.world.mem.read(src, op["len"]))
            out.append(0)
        return out

    def _side(self, op: dict[str, int], side: str, flag: int, write: bool) -> int:
        off = op[f"{side}_offset"]
        assert off + op["len"] <= 4096
        if op["flags"] & flag:
            domid, ref = op[f"{side}_domid"], op[f"{side}_ref"]
            e = self._entry(domid, ref)
            if e.flags & GTF_type_mask != GTF_permit_access or e.domid != self.domid:
                raise PermissionError
            if write and e.flags & GTF_readonly:
                raise PermissionError
            return domid * REGION + e.frame * 4096 + off
        assert op[f"{side}_domid"] == DOMID_SELF
        return self.domid * REGION + op[f"{side}_gmfn"] * 4096 + off


class NetWorld:
    """dom0 (0) and guests 1.. on one machine memory, one SimPy clock and one work queue.

    Also the dom0 hardware netback asks for (`link`, `net_pirq`, `raise_net_irq`)."""

    net_pirq = 40

    def __init__(self, guests: int = 2, mtu: dict[int, int] | None = None) -> None:
        self.mem = MachineMemory((guests + 1) * REGION)
        self.env = simpy.Environment()
        self.work: deque[tuple[int, Callable[[Core], None]]] = deque()
        self.rows: list[tuple[int, int, tuple[int, ...], str]] = []
        self.console: list[tuple[int, str]] = []
        self.store = Store(self)
        self.slots: dict[int, Slot] = {}
        self.unbound: dict[tuple[int, int], int] = {}
        self.peer: dict[tuple[int, int], tuple[int, int]] = {}
        self.ports: dict[int, int] = {}
        self.irq: tuple[int, int] | None = None
        self.mtu = mtu or {}
        self.links: dict[tuple[int, int], Link] = {}
        self.uplinks: dict[tuple[int, int], Link] = {}
        self.cores: dict[int, Core] = {}
        self.kernels = {d: Kernel(self, d) for d in range(guests + 1)}
        self.back = NetBack(self.kernels[0])  # type: ignore[arg-type]
        self.fronts: dict[int, NetFront] = {}
        self.sinks: dict[int, NetSink] = {}

    def core(self, domid: int) -> Core:
        """The (real) core domain `domid`'s native calls run on, at the world's time."""
        core = self.cores.get(domid)
        if core is None:
            core = self.cores[domid] = core_at(0, self.mem, domid)
        core.slice_start_ns = int(self.env.now)
        core.extra_cycles = 0
        return core

    # the work queue: what Xen's event delivery and xenstored's replies would run
    def later(self, domid: int, fn: Callable[[Core], None]) -> None:
        self.work.append((domid, fn))

    def event(self, domid: int, port: int) -> None:
        def run(core: Core) -> None:
            handler = self.kernels[domid].port_handlers.get(port)
            if handler is not None:
                handler(core, port)

        self.later(domid, run)

    def new_port(self, domid: int) -> int:
        self.ports[domid] = self.ports.get(domid, 0) + 1
        return self.ports[domid]

    def run(self, until: int | None = None, limit: int = 2_000_000) -> None:
        steps = 0
        while True:
            while self.work:
                domid, fn = self.work.popleft()
                fn(self.core(domid))
                steps += 1
                assert steps < limit, "the world does not settle"
            nxt = self.env.peek()
            if nxt == float("inf") or (until is not None and nxt > until):
                return
            self.env.step()

    # dom0's hardware
    def link(self, domid: int, devid: int) -> Link:
        key = (domid, devid)
        if key not in self.links:
            params = LinkParams(1_000_000_000, 20_000, self.mtu.get(domid, 1500))
            self.links[key] = Link(self.env, params, f"vif{domid}.{devid}")
            self.uplinks[key] = Link(self.env, params, f"vif{domid}.{devid}-tx")
        return self.links[key]

    def uplink(self, domid: int, devid: int) -> Link:
        self.link(domid, devid)
        return self.uplinks[(domid, devid)]

    def raise_net_irq(self) -> None:
        assert self.irq is not None, "the network interrupt is not bound"
        self.event(*self.irq)

    # set-up: what the toolstack and the kernels' probes do
    def plug(self, domid: int, mac: str, bridge: str = "xenbr0", rx_buffers: int = 256) -> NetFront:
        b = f"/local/domain/0/backend/vif/{domid}/0"
        f = f"/local/domain/{domid}/device/vif/0"
        for path, value in (
            (f"{b}/frontend", f), (f"{b}/frontend-id", str(domid)), (f"{b}/mac", mac),
            (f"{b}/bridge", bridge), (f"{b}/state", "1"),
            (f"{f}/backend", b), (f"{f}/backend-id", "0"), (f"{f}/mac", mac), (f"{f}/state", "1"),
        ):  # fmt: skip
            self.store.write(path, value)
        k = self.kernels[domid]
        front = NetFront(k, 0, "device/vif/0", rx_buffers=rx_buffers)  # type: ignore[arg-type]
        self.fronts[domid] = front
        self.sinks[domid] = NetSink(k, front)  # type: ignore[arg-type]
        self.later(domid, front.start)  # type: ignore[arg-type]
        return front

    def of(self, kind: int, domid: int | None = None) -> list[tuple[tuple[int, ...], str]]:
        return [(f, t) for k, d, f, t in self.rows if k == kind and (domid is None or d == domid)]


def start_world(**kw: Any) -> NetWorld:
    """A world whose dom0 netback starts first (binds the network interrupt)."""
    w = NetWorld(**kw)
    w.later(0, w.back.start)  # type: ignore[arg-type]
    return w


def connect(world: NetWorld) -> tuple[NetFront, NetFront]:
    """Guests 1 (MAC_A) and 2 (MAC_B) plugged into xenbr0 and connected."""
    a, b = world.plug(1, MAC_A), world.plug(2, MAC_B)
    world.run()
    return a, b


def packet(dst: str, src: str, seq: int, payload: int = 46, stream: int = 0x00010000) -> bytes:
    """Packet `seq` of `stream` as netstream sends it (a one-packet message whose payload
    after the Ethernet header is `payload` bytes), so it carries a packet id and a sink
    takes it whole."""
    n = payload - NETSTREAM_HEADER.size
    assert n >= 1
    h = StreamHeader(stream, seq, seq, n, 0, 0, 0).pack()
    return build_frame(parse_mac(dst), parse_mac(src), h + pattern_bytes(0, seq, 0, n))
