"""The network split driver: Ethernet framing, the learning bridge, the netstream
packetisation and verification, and netfront <-> netback <-> bridge <-> link <-> netfront
over real netif rings and real grant entries in one MachineMemory.

Until the lead wires the drivers into a Simulation, the end-to-end tests here run them
on `NetWorld`: real shared rings, grant tables (`GrantTableClient` entries), page pools
and link models (SimPy), with a small stand-in for the kernel's hypercall layer that
applies GNTTABOP_copy / map semantics to the real grant entries, and a xenstore that
replies and fires watches asynchronously, as xenstored does.
"""

from __future__ import annotations

import itertools
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
import simpy

from framework.errors import NetfrontError
from framework.guest.bridge import (
    BROADCAST_MAC,
    ETH_P_ARP,
    ETH_P_IP,
    Bridge,
    EthernetHeader,
    build_frame,
    format_mac,
    gratuitous_arp,
    parse_mac,
)
from framework.guest.grants import GrantTableClient
from framework.guest.netback import COPY_BATCH, RX_QUEUE_LIMIT, NetBack, tx_request_problem
from framework.guest.netfront import MAX_MTU, NetFront
from framework.guest.netstream import (
    NETSTREAM_HEADER,
    NetSink,
    NetStream,
    NetStreamParams,
    StreamHeader,
    packetize,
    pattern_bytes,
)
from framework.guest.pages import PagePool
from framework.guest.ring import BackRing, FrontRing, SharedRing
from framework.guest.xenbus import XsReply
from framework.hw970.core import Core
from framework.hw970.link import Link, LinkParams
from framework.hw970.memory import MachineMemory
from framework.trace.ids import K
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
from framework.xen.public.io.netif import (
    NETIF_RSP_OKAY,
    NETIF_TX_RING,
    NetifTxRequest,
    NetifTxResponse,
    NETTXF_more_data,
)
from framework.xen.public.io.xenbus import XenbusState
from framework.xen.public.xen import DOMID_SELF

MAC_A = "00:16:3e:00:01:00"
MAC_B = "00:16:3e:00:02:00"
MAC_C = "00:16:3e:00:03:00"


# --- Ethernet -------------------------------------------------------------------------------
def test_mac_text_round_trip_and_refusals() -> None:
    assert parse_mac("00:16:3E:0a:ff:01") == bytes([0, 0x16, 0x3E, 0x0A, 0xFF, 0x01])
    assert format_mac(parse_mac(MAC_A)) == MAC_A
    for bad in ("00:16:3e:00:01", "00:16:3e:00:01:0g", "0016.3e00.0100", "00:16:3e:00:01:000"):
        with pytest.raises(ValueError, match="six ':'-separated hex byte pairs"):
            parse_mac(bad)


def test_ethernet_header_is_big_endian_at_its_offsets() -> None:
    frame = build_frame(parse_mac(MAC_B), parse_mac(MAC_A), b"payload")
    assert frame[0:6] == parse_mac(MAC_B)
    assert frame[6:12] == parse_mac(MAC_A)
    assert frame[12:14] == b"\x08\x00"
    assert frame[14:] == b"payload"
    hdr = EthernetHeader.unpack(frame)
    assert hdr == EthernetHeader(parse_mac(MAC_B), parse_mac(MAC_A), ETH_P_IP)
    with pytest.raises(ValueError, match="shorter than the 14-byte Ethernet header"):
        EthernetHeader.unpack(frame[:13])


def test_gratuitous_arp_is_a_broadcast_arp_reply_naming_the_sender() -> None:
    mac = parse_mac(MAC_A)
    frame = gratuitous_arp(mac)
    assert EthernetHeader.unpack(frame) == EthernetHeader(BROADCAST_MAC, mac, ETH_P_ARP)
    arp = frame[14:]
    assert len(arp) == 28
    assert arp[0:2] == b"\x00\x01" and arp[2:4] == b"\x08\x00"  # Ethernet, IPv4
    assert arp[4] == 6 and arp[5] == 4 and arp[6:8] == b"\x00\x02"  # sizes, ARPOP_REPLY
    assert arp[8:14] == mac and arp[18:24] == mac


# --- the bridge -----------------------------------------------------------------------------
@dataclass(eq=False)
class Port:
    name: str


def _frame(dst: str, src: str) -> bytes:
    return build_frame(parse_mac(dst), parse_mac(src), b"x" * 32)


def test_bridge_floods_unknown_then_forwards_learned_unicast() -> None:
    br: Bridge[Port] = Bridge("xenbr0")
    a, b, c = Port("vif1.0"), Port("vif2.0"), Port("vif3.0")
    for p in (a, b, c):
        br.attach(p)
    fwd = br.forward(_frame(MAC_B, MAC_A), a)  # B unknown yet
    assert fwd.how == "flood" and fwd.ports == (b, c)
    assert br.lookup(parse_mac(MAC_A)) is a
    fwd = br.forward(_frame(MAC_A, MAC_B), b)  # A was learned
    assert fwd.how == "unicast" and fwd.ports == (a,)
    fwd = br.forward(_frame(MAC_B, MAC_A), a)  # and now B too
    assert fwd.how == "unicast" and fwd.ports == (b,)
    assert (br.forwarded, br.flooded, br.filtered) == (2, 1, 0)


def test_bridge_broadcast_floods_and_local_destination_is_filtered() -> None:
    br: Bridge[Port] = Bridge("xenbr0")
    a, b, c = Port("a"), Port("b"), Port("c")
    for p in (a, b, c):
        br.attach(p)
    fwd = br.forward(gratuitous_arp(parse_mac(MAC_C)), c)
    assert fwd.how == "broadcast" and fwd.ports == (a, b)
    br.forward(_frame(MAC_B, MAC_A), a)
    # A frame for A arriving from A's own port stays on that segment.
    fwd = br.forward(_frame(MAC_A, MAC_B), a)
    assert fwd.how == "filtered" and fwd.ports == ()
    # ... and the bridge now believes B sits behind a (stations move; it relearns).
    assert br.lookup(parse_mac(MAC_B)) is a


def test_bridge_never_learns_a_group_source_and_forgets_detached_ports() -> None:
    br: Bridge[Port] = Bridge("xenbr1")
    a, b = Port("a"), Port("b")
    br.attach(a)
    br.attach(b)
    br.forward(build_frame(parse_mac(MAC_B), BROADCAST_MAC, b""), a)
    assert BROADCAST_MAC not in br.fdb
    br.forward(_frame(MAC_B, MAC_A), a)
    br.detach(a)
    assert br.lookup(parse_mac(MAC_A)) is None
    assert br.ports == [b]
    with pytest.raises(ValueError, match="port a, which is not attached"):
        br.forward(_frame(MAC_B, MAC_A), a)
    with pytest.raises(ValueError, match="already attached"):
        br.attach(b)
    with pytest.raises(ValueError, match="is not attached"):
        br.detach(a)


# --- netstream packets ----------------------------------------------------------------------
def test_stream_header_layout_is_big_endian() -> None:
    h = StreamHeader(0x00010000, 7, 0x01020304, 100000, 2920, 0xDEADBEEF, 123456789)
    raw = h.pack()
    assert len(raw) == NETSTREAM_HEADER.size == 40
    assert raw[0:4] == b"XNS1"
    assert raw[4:8] == b"\x00\x01\x00\x00"
    assert raw[8:12] == (7).to_bytes(4, "big")
    assert raw[12:16] == b"\x01\x02\x03\x04"
    assert raw[16:20] == (100000).to_bytes(4, "big")
    assert raw[20:24] == (2920).to_bytes(4, "big")
    assert raw[24:28] == b"\xde\xad\xbe\xef"
    assert raw[32:40] == (123456789).to_bytes(8, "big")
    assert StreamHeader.unpack(raw + b"data") == h
    with pytest.raises(ValueError, match="netstream magic"):
        StreamHeader.unpack(b"XNS2" + raw[4:])
    with pytest.raises(ValueError, match="shorter than the 40-byte netstream header"):
        StreamHeader.unpack(raw[:39])


@pytest.mark.parametrize("mtu", [576, 1500, 4082])
def test_packetize_covers_each_message_exactly_within_the_mtu(mtu: int) -> None:
    rng = random.Random(mtu)
    for size in [1, mtu - 40, mtu - 39, 3 * (mtu - 40)] + [
        rng.randrange(1, 200000) for _ in range(20)
    ]:
        chunks = packetize(size, mtu)
        assert chunks[0][0] == 0
        assert sum(n for _o, n in chunks) == size
        for (o1, n1), (o2, _n2) in itertools.pairwise(chunks):
            assert o1 + n1 == o2
        assert all(0 < n and n + NETSTREAM_HEADER.size <= mtu for _o, n in chunks)
        assert len(chunks) == -(-size // (mtu - 40))
    with pytest.raises(ValueError, match="no room for data"):
        packetize(100, 40)


def test_pattern_is_deterministic_continuous_and_message_specific() -> None:
    whole = pattern_bytes(5, 3, 0, 4000)
    assert pattern_bytes(5, 3, 1000, 1000) == whole[1000:2000]
    assert pattern_bytes(5, 3, 0, 4000) == whole
    assert pattern_bytes(5, 4, 0, 64) != whole[:64]
    assert pattern_bytes(6, 3, 0, 64) != whole[:64]
    # Far into a long message the block wraps without a seam.
    far = pattern_bytes(5, 0, (1 << 16) - 10, 20)
    assert far[10:] == pattern_bytes(5, 0, 1 << 16, 10)


def test_stream_params_are_checked() -> None:
    p = NetStreamParams.from_dict({"peer-mac": MAC_B, "message-size": "1000", "seed": 3})
    assert p == NetStreamParams(parse_mac(MAC_B), 1000, 0, 3)
    with pytest.raises(ValueError, match="'message-size' = 0 must be >= 1"):
        NetStreamParams.from_dict({"peer-mac": MAC_B, "message-size": 0})
    with pytest.raises(ValueError, match="'messages' = -1 is not a non-negative integer"):
        NetStreamParams.from_dict({"peer-mac": MAC_B, "message-size": 10, "messages": -1})
    with pytest.raises(TypeError, match="'peer-mac' = None"):
        NetStreamParams.from_dict({"message-size": 10})


# --- stream and sink against a stand-in frontend ---------------------------------------------
_CLOCK_MEMORY = MachineMemory(16 << 20)


def core_at(now_ns: int, mem: MachineMemory = _CLOCK_MEMORY, cpu: int = 0) -> Core:
    """A real core, idle (no context loaded), whose native-call time starts at now_ns:
    the drivers only read its time and charge it cycles."""
    core = Core(cpu, mem, 1_800_000_000, 33_333_333, {})
    core.slice_start_ns = now_ns
    return core


def clock_core() -> Core:
    """A core at t = 1000 ns for the stream and sink tests."""
    return core_at(1000)


class Recorder:
    def __init__(self, domid: int) -> None:
        self.domid = domid
        self.rows: list[tuple[int, tuple[int, ...], str]] = []
        self.lines: list[str] = []

    def emit(self, _core: Any, kind: int, *fields: int, text: str = "") -> None:
        self.rows.append((kind, fields, text))

    def console(self, _core: Any, text: str) -> None:
        self.lines.append(text)

    def of(self, kind: int) -> list[tuple[tuple[int, ...], str]]:
        return [(f, t) for k, f, t in self.rows if k == kind]


class FakeFront:
    """A frontend with `room` free tx slots that records what is sent."""

    def __init__(self, mac: str, devid: int = 0, mtu: int = 1500, room: int = 8) -> None:
        self.mac = parse_mac(mac)
        self.devid = devid
        self.mtu = mtu
        self.room = room
        self.sent: list[bytes] = []
        self.connected: list[Callable[[Any], None]] = []
        self.space: list[Callable[[Any], None]] = []
        self.receivers: list[Callable[[Any, bytes], None]] = []

    def when_connected(self, cb: Callable[[Any], None]) -> None:
        self.connected.append(cb)

    def add_tx_space_listener(self, cb: Callable[[Any], None]) -> None:
        self.space.append(cb)

    def add_receiver(self, cb: Callable[[Any, bytes], None]) -> None:
        self.receivers.append(cb)

    def tx_space(self) -> int:
        return self.room

    def send(self, _core: Any, frame: bytes) -> bool:
        assert self.room > 0, "the stream sent beyond the free tx slots"
        assert len(frame) <= 14 + self.mtu
        self.room -= 1
        self.sent.append(frame)
        return True

    def free(self, core: Any, n: int) -> None:
        self.room += n
        for cb in self.space:
            cb(core)


def _stream(messages: int, size: int, room: int = 8) -> tuple[NetStream, FakeFront, Recorder]:
    rec = Recorder(domid=1)
    front = FakeFront(MAC_A, room=room)
    k = SimpleNamespace(domid=1, emit=rec.emit, console=rec.console)
    params = {"peer-mac": MAC_B, "message-size": size, "messages": messages, "seed": 9}
    return NetStream(k, front, params), front, rec  # type: ignore[arg-type]


def test_stream_fills_the_tx_ring_and_resumes_on_responses() -> None:
    stream, front, rec = _stream(messages=2, size=5000, room=3)
    core = clock_core()
    front.connected[0](core)
    assert len(front.sent) == 3 and front.room == 0  # full, not beyond
    front.free(core, 2)
    assert len(front.sent) == 5
    front.free(core, 100)
    chunks = packetize(5000, 1500)
    assert len(front.sent) == 2 * len(chunks) == stream.packets  # then it stops
    assert rec.of(K.GUEST_MARK) == [((2,), "netstream.done")]
    tx = rec.of(K.NET_TX)
    assert [f[1] for f, _t in tx] == list(range(2 * len(chunks)))
    assert [f[2] for f, _t in tx] == [len(f) for f in front.sent]
    for seq, frame in enumerate(front.sent):
        eth = EthernetHeader.unpack(frame)
        assert eth == EthernetHeader(parse_mac(MAC_B), parse_mac(MAC_A), ETH_P_IP)
        h = StreamHeader.unpack(frame[14:])
        msg, i = divmod(seq, len(chunks))
        assert (h.stream, h.message, h.seq, h.total) == (0x00010000, msg, seq, 5000)
        assert h.offset == chunks[i][0]
        data = frame[14 + 40 :]
        assert data == pattern_bytes(h.pattern, msg, h.offset, chunks[i][1])


def _sink() -> tuple[NetSink, Recorder, Core]:
    rec = Recorder(domid=2)
    k = SimpleNamespace(domid=2, emit=rec.emit)
    sink = NetSink(k, FakeFront(MAC_B))  # type: ignore[arg-type]
    return sink, rec, clock_core()


def _sent_frames(messages: int, size: int) -> list[bytes]:
    front = _stream(messages, size, room=10_000)[1]
    front.connected[0](clock_core())
    return front.sent


def test_sink_accepts_an_intact_stream() -> None:
    sink, rec, core = _sink()
    frames = _sent_frames(3, 4000)
    arrivals = []
    for f in frames:
        core.slice_start_ns, core.extra_cycles = 5000, 0
        sink.receive(core, f)
        arrivals.append(core.now_ns())  # the receive charged its cycles first
    assert (sink.messages, sink.errors, sink.lost, sink.incomplete) == (3, 0, 0, 0)
    assert sink.payload_bytes == 12000 and sink.bytes == sum(map(len, frames))
    assert [f for f, t in rec.of(K.GUEST_MARK)] == [(0,), (1,), (2,)]
    rx = rec.of(K.NET_RX)
    assert [f[1] for f, _ in rx] == list(range(len(frames)))
    sent = [StreamHeader.unpack(f[14:]).send_ns for f in frames]
    assert sent == sorted(sent) and sent[0] > 1000  # the sender's clock advanced
    # latency = arrival - send time
    assert [f[3] for f, _ in rx] == [a - s for a, s in zip(arrivals, sent, strict=True)]


def test_sink_counts_a_lost_packet_and_the_message_it_spoiled() -> None:
    sink, rec, core = _sink()
    frames = _sent_frames(3, 4000)  # 3 packets per message
    del frames[4]  # message 1, second packet
    for f in frames:
        sink.receive(core, f)
    assert (sink.messages, sink.lost, sink.incomplete, sink.errors) == (2, 1, 1, 0)
    assert [f for f, t in rec.of(K.GUEST_MARK)] == [(0,), (2,)]


def test_sink_rejects_a_corrupt_byte_and_reordered_packets() -> None:
    sink, rec, core = _sink()
    frames = _sent_frames(2, 4000)
    bad = bytearray(frames[1])
    bad[14 + 40 + 100] ^= 0x55
    frames[1] = bytes(bad)
    frames[3], frames[4] = frames[4], frames[3]
    for f in frames:
        sink.receive(core, f)
    drops = [t for _f, t in rec.of(K.NET_DROP)]
    assert drops[0].startswith("netstream: message 0: byte ")
    assert "expected" in drops[0]
    assert "duplicate or out of order" in drops[1]
    assert sink.errors == 2 and sink.lost == 1  # seq 3 looked lost when 4 came first
    assert sink.messages == 0 and sink.incomplete == 2


def test_sink_ignores_arp_and_frames_for_other_hosts() -> None:
    sink, rec, core = _sink()
    sink.receive(core, gratuitous_arp(parse_mac(MAC_A)))
    other = _sent_frames(1, 100)[0]
    sink.receive(core, build_frame(parse_mac(MAC_C), parse_mac(MAC_A), other[14:]))
    assert sink.foreign == 2 and sink.packets == 0 and rec.rows == []


# --- netif requests on real rings -----------------------------------------------------------
def test_tx_request_problems() -> None:
    ok = NetifTxRequest(10, 0, 0, 1, 1514)
    assert tx_request_problem(ok, 1500) is None
    assert "feature-sg" in str(tx_request_problem(ok._replace(flags=NETTXF_more_data), 1500))
    assert "shorter than the 14-byte" in str(tx_request_problem(ok._replace(size=13), 1500))
    assert "runs past its page" in str(tx_request_problem(ok._replace(offset=3000), 1500))
    assert "exceeds the vif's MTU 576" in str(tx_request_problem(ok, 576))


def test_tx_requests_and_responses_cross_a_real_ring_page() -> None:
    mem = MachineMemory(1 << 20)
    SharedRing.init(mem, 0x3000, NETIF_TX_RING.entry_bytes)
    front = FrontRing(mem, 0x3000, NETIF_TX_RING.entry_bytes)
    back = BackRing(mem, 0x3000, NETIF_TX_RING.entry_bytes)
    assert front.size == 256
    req = NetifTxRequest(gref=0x1234, offset=0, flags=0, id=7, size=1514)
    front.put_request(req.pack())
    assert front.push_requests_and_check_notify()
    # The entry is at byte 64 of the page, big-endian: gref, offset, flags, id, size.
    assert mem.read(0x3000 + 64, 12) == bytes.fromhex("00001234 0000 0000 0007 05ea")
    got = NetifTxRequest.unpack(back.get_request())
    assert got == req and tx_request_problem(got, 1500) is None
    back.put_response(NetifTxResponse(7, NETIF_RSP_OKAY).pack())
    back.push_responses_and_check_notify()
    assert NetifTxResponse.unpack(front.get_response()) == NetifTxResponse(7, 0)


# --- end to end on a stand-in world ------------------------------------------------------------
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

    def switch_state(self, core: Any, path: str, state: XenbusState, prev: XenbusState) -> None:
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
        return self.links[key]

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


def _world(monkeypatch: pytest.MonkeyPatch, **kw: Any) -> NetWorld:
    w = NetWorld(**kw)
    w.later(0, w.back.start)  # type: ignore[arg-type]
    return w


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> NetWorld:
    return _world(monkeypatch)


def _connect(world: NetWorld) -> tuple[NetFront, NetFront]:
    a, b = world.plug(1, MAC_A), world.plug(2, MAC_B)
    world.run()
    return a, b


def test_handshake_connects_both_ends_and_maps_both_rings(world: NetWorld) -> None:
    a, b = _connect(world)
    nodes = world.store.nodes
    for domid, front in ((1, a), (2, b)):
        assert front.connected and front.mtu == 1500
        f, bk = f"/local/domain/{domid}/device/vif/0", f"/local/domain/0/backend/vif/{domid}/0"
        assert nodes[f"{f}/state"] == "4" and nodes[f"{bk}/state"] == "4"
        assert nodes[f"{f}/request-rx-copy"] == "1" and nodes[f"{bk}/mtu"] == "1500"
        assert nodes[f"{f}/tx-ring-ref"] == str(front.tx_ring_ref)
        # The ring grants are mapped (Xen set GTF_reading|GTF_writing in the guest's table).
        for ref in (front.tx_ring_ref, front.rx_ring_ref):
            assert world.kernels[domid].grants.entry(ref).flags == (
                GTF_permit_access | GTF_reading | GTF_writing
            )
        assert front.rx_posted == 256
    vif_a, vif_b = world.back.vif(1, 0), world.back.vif(2, 0)
    assert vif_a.state == vif_b.state == XenbusState.Connected
    # Each frontend's gratuitous ARP taught the bridge where it is.
    br = world.back.bridges["xenbr0"]
    assert br.lookup(parse_mac(MAC_A)) is vif_a and br.lookup(parse_mac(MAC_B)) is vif_b
    assert world.sinks[2].foreign == 1 and world.sinks[1].foreign == 1


def test_stream_arrives_whole_through_bridge_and_link(world: NetWorld) -> None:
    a, _b = _connect(world)
    params = {"peer-mac": MAC_B, "message-size": 20000, "messages": 10, "seed": 1}
    stream = NetStream(world.kernels[1], a, params)  # type: ignore[arg-type]
    world.later(1, stream.start)  # type: ignore[arg-type]
    world.run()
    sink = world.sinks[2]
    per_msg = len(packetize(20000, 1500))
    assert stream.done and stream.packets == 10 * per_msg
    assert (sink.messages, sink.errors, sink.lost, sink.incomplete) == (10, 0, 0, 0)
    assert sink.payload_bytes == 200000
    tx, rx = world.of(K.NET_TX, 1), world.of(K.NET_RX, 2)
    assert [f[1] for f, _ in rx] == [f[1] for f, _ in tx] == list(range(10 * per_msg))
    wire = world.links[(2, 0)].params.serialisation_ns(1514) + 20_000
    assert min(f[3] for f, _ in rx) >= wire
    assert [f[0] for f, t in world.of(K.GUEST_MARK, 2)] == list(range(10))
    assert world.of(K.NET_DROP) == []
    # Link B carried every frame (and A's link only B's ARP): the bridge had learned B.
    assert world.links[(2, 0)].frames == 10 * per_msg + 1
    assert world.links[(1, 0)].frames == 1
    # Every copy went through one GNTTABOP_copy per batch, never more than a page of ops.
    assert max(world.kernels[0].copy_calls) <= COPY_BATCH
    # Every tx grant was ended and its page freed: only the rings and rx buffers remain.
    assert not a.tx_inflight and not a.busy_refs
    assert world.kernels[1].pool.in_use == 2 + 256
    # Backpressure: the sender never had more frames out than its ring holds.
    assert a.tx_packets == stream.packets + 1  # and the ARP


def test_link_throughput_bounds_the_stream(world: NetWorld) -> None:
    a, _b = _connect(world)
    params = {"peer-mac": MAC_B, "message-size": 65536, "messages": 0, "seed": 2}
    stream = NetStream(world.kernels[1], a, params)  # type: ignore[arg-type]
    t0 = int(world.env.now)
    world.later(1, stream.start)  # type: ignore[arg-type]
    world.run(until=t0 + 20_000_000)
    rx = world.of(K.NET_RX, 2)
    nbytes = sum(f[2] for f, _ in rx)
    # The stream is limited by link B at 1 Gbit/s (frames back to back on the wire).
    assert nbytes * 8 / 0.020 == pytest.approx(1e9, rel=0.02)
    # In flight at any time: at most the sender's 256 tx slots (flow control by the ring).
    assert stream.packets - len(rx) <= 256
    assert world.of(K.NET_DROP) == []


def test_tx_ring_full_queues_in_the_frontend_and_loses_nothing(world: NetWorld) -> None:
    a, b = _connect(world)
    core = world.core(1)
    frames = [
        build_frame(parse_mac(MAC_B), parse_mac(MAC_A), bytes([i % 256]) * 60) for i in range(300)
    ]
    results = [a.send(core, f) for f in frames]  # nobody runs meanwhile: the ring fills
    assert results == [True] * 256 + [False] * 44
    assert a.tx_space() == 0 and len(a.backlog) == 44
    assert world.of(K.RING_FULL, 1) == [((0,), "netif tx")]
    got: list[bytes] = []
    b.add_receiver(lambda _c, f: got.append(f))
    world.run()
    assert got == frames and not a.backlog and a.tx_space() == 256
    a.send(core, frames[0])
    assert len(world.of(K.RING_FULL, 1)) == 1  # once per episode


def test_one_sender_is_held_back_by_its_ring_and_loses_nothing(world: NetWorld) -> None:
    a, b = _connect(world)
    world.kernels[2].port_handlers[b.port] = lambda c, p: None  # B stops taking frames
    core = world.core(1)
    n = 256 + RX_QUEUE_LIMIT + 60
    for i in range(n):
        a.send(core, build_frame(parse_mac(MAC_B), parse_mac(MAC_A), i.to_bytes(4, "big") * 10))
    world.run()
    # 256 frames filled B's buffers, 256 wait in the backend holding A's tx slots, and
    # the rest wait in A: the ring is the flow control, nothing is dropped.
    assert world.of(K.NET_DROP) == []
    assert len(world.back.vif(2, 0).rx_queue) == RX_QUEUE_LIMIT
    assert len(a.tx_inflight) == 256 and len(a.backlog) == n - 2 * 256
    got: list[bytes] = []
    b.add_receiver(lambda _c, f: got.append(f))
    world.kernels[2].port_handlers[b.port] = b._on_event
    world.event(2, b.port)
    world.run()
    assert [int.from_bytes(f[14:18], "big") for f in got] == list(range(n))
    assert not a.tx_inflight and not a.backlog


def test_frames_beyond_the_backend_queue_are_dropped_when_no_buffer_is_posted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    w = _world(monkeypatch, guests=3)
    a, b, c = w.plug(1, MAC_A), w.plug(2, MAC_B, rx_buffers=64), w.plug(3, MAC_C)
    w.run()
    w.kernels[2].port_handlers[b.port] = lambda c, p: None  # B stops taking frames
    n = 300
    for front, domid, mac in ((a, 1, MAC_A), (c, 3, MAC_C)):
        core = w.core(domid)
        for i in range(n):
            payload = bytes([domid]) + i.to_bytes(4, "big") + bytes(41)
            front.send(core, build_frame(parse_mac(MAC_B), parse_mac(mac), payload))
    w.run()
    drops = w.of(K.NET_DROP, 0)
    assert len(drops) == 2 * n - 64 - RX_QUEUE_LIMIT
    assert all(t == "vif2.0: rx ring empty" and f == (0, -1, 60) for f, t in drops)
    # Dropped frames released their senders' slots; the queued ones still hold theirs.
    assert not a.backlog and not c.backlog
    assert len(a.tx_inflight) + len(c.tx_inflight) == RX_QUEUE_LIMIT
    got: list[bytes] = []
    b.add_receiver(lambda _c, f: got.append(f))
    w.kernels[2].port_handlers[b.port] = b._on_event
    w.event(2, b.port)
    w.run()
    assert len(got) == 64 + RX_QUEUE_LIMIT
    assert not a.tx_inflight and not c.tx_inflight
    for sender in (1, 3):  # each sender's frames arrive in order, the newest were dropped
        seqs = [int.from_bytes(f[15:19], "big") for f in got if f[14] == sender]
        assert seqs == sorted(seqs) and seqs[0] == 0


def test_a_frame_over_the_egress_link_mtu_is_dropped_there(monkeypatch: pytest.MonkeyPatch) -> None:
    w = _world(monkeypatch, mtu={2: 576})
    a, b = _connect(w)
    assert (a.mtu, b.mtu) == (1500, 576)
    core = w.core(1)
    a.send(core, build_frame(parse_mac(MAC_B), parse_mac(MAC_A), b"z" * 1000))
    a.send(core, build_frame(parse_mac(MAC_B), parse_mac(MAC_A), b"z" * 500))
    w.run()
    drops = w.of(K.NET_DROP, 0)
    assert len(drops) == 1 and drops[0][0] == (0, -1, 1014)
    assert "1000-byte payload exceeds link MTU 576" in drops[0][1]
    assert w.sinks[2].foreign == 2  # the ARP and the 500-byte frame arrived
    with pytest.raises(NetfrontError, match="frames are 14..590 bytes"):
        b.send(w.core(2), build_frame(parse_mac(MAC_A), parse_mac(MAC_B), b"z" * 577))
    assert not a.tx_inflight


def test_bad_tx_requests_are_answered_with_an_error(world: NetWorld) -> None:
    a, _b = _connect(world)
    k = world.kernels[1]
    core = world.core(1)
    # A rogue frontend: a fragment, and a frame in a page granted to d2 instead of dom0.
    gpa = k.pool.alloc()
    ref = k.grants.alloc_ref()
    k.grants.grant_access(ref, 2, gpa >> 12, True)
    ring = a._ring(core, a.tx)
    ring.put_request(NetifTxRequest(ref, 0, NETTXF_more_data, 200, 100).pack())
    ring.put_request(NetifTxRequest(ref, 0, 0, 201, 100).pack())
    ring.push_requests_and_check_notify()
    # The rogue reads the answers off the ring itself (netfront would refuse unknown ids).
    del k.port_handlers[a.port]
    world.event(0, _dom0_port(world, 1, a.port))  # the frontend's notification
    world.run()
    answers: list[NetifTxResponse] = []
    ring = a._ring(world.core(1), a.tx)
    while ring.unconsumed_responses():
        answers.append(NetifTxResponse.unpack(ring.get_response()))
    assert answers == [NetifTxResponse(200, -1), NetifTxResponse(201, -1)]
    texts = [t for _f, t in world.of(K.NET_DROP, 0)]
    assert "vif1.0: fragmented packet (NETTXF_more_data)" in texts[0]
    assert texts[1] == f"vif1.0: copying tx grant {ref} failed (general_error)"
    assert world.sinks[2].packets == 0


def _dom0_port(world: NetWorld, domid: int, port: int) -> int:
    """dom0's end of a guest's interdomain channel."""
    d, p = world.peer[(domid, port)]
    assert d == 0
    return p


def test_close_tears_down_and_revokes_every_grant(world: NetWorld) -> None:
    a, _b = _connect(world)
    k = world.kernels[1]
    core = world.core(1)
    a.send(core, build_frame(parse_mac(MAC_B), parse_mac(MAC_A), b"bye" * 20))
    world.later(1, a.close)  # type: ignore[arg-type]
    world.run()
    assert a.state == XenbusState.Closed
    assert world.back.vif(1, 0).state == XenbusState.Closed
    assert not world.back.vif(1, 0).connected
    assert world.store.nodes["/local/domain/1/device/vif/0/state"] == "6"
    assert k.pool.in_use == 0 and a.grant_errors == 0
    for ref in range(2, 2 + 2 + 256 + 2):
        assert k.grants.entry(ref).flags == 0
    assert not any(s.domid == 1 for s in world.slots.values())
    # The bridge forgot A; a frame for A is now flooded (to B only) and not delivered.
    assert len(world.back.bridges["xenbr0"].ports) == 1
    with pytest.raises(NetfrontError, match="Closed"):
        a.send(core, b"\0" * 60)


def test_unplugging_a_vif_disconnects_both_ends(world: NetWorld) -> None:
    a, b = _connect(world)
    world.kernels[2].port_handlers[b.port] = lambda c, p: None  # B stops taking frames
    core = world.core(1)
    for _ in range(300):
        a.send(core, build_frame(parse_mac(MAC_B), parse_mac(MAC_A), bytes(46)))
    world.run()  # 256 in B's buffers, 44 held in the backend's queue for B
    assert len(world.back.vif(2, 0).rx_queue) == 44
    world.store.write("/local/domain/0/backend/vif/2/0/online", "0")  # xm network-detach
    world.run()
    vif_b = world.back.vif(2, 0)
    assert vif_b.state == XenbusState.Closed and not vif_b.connected
    assert b.state == XenbusState.Closed and world.kernels[2].pool.in_use == 0
    drops = world.of(K.NET_DROP, 0)
    assert len(drops) == 44 and {t for _f, t in drops} == {"vif2.0: device unplugged"}
    assert not a.tx_inflight  # the queued frames' senders were answered
    assert world.back.bridges["xenbr0"].ports == [world.back.vif(1, 0)]
    assert not any(s.domid == 2 for s in world.slots.values())


def test_rx_buffers_are_granted_writable_and_tx_pages_read_only(world: NetWorld) -> None:
    a, _b = _connect(world)
    k = world.kernels[1]
    rx_refs = {buf.ref for buf in a._rx_all}
    assert len(rx_refs) == 256
    for ref in rx_refs:
        e = k.grants.entry(ref)
        assert e.flags == GTF_permit_access and e.domid == 0
    core = world.core(1)
    a.send(core, build_frame(parse_mac(MAC_B), parse_mac(MAC_A), b"q" * 46))
    (slot,) = a.tx_inflight.values()
    e = k.grants.entry(slot.ref)
    assert e.flags == GTF_permit_access | GTF_readonly and e.frame == slot.gpa >> 12
    assert world.mem.read(REGION + slot.gpa, 60) == build_frame(
        parse_mac(MAC_B), parse_mac(MAC_A), b"q" * 46
    )
    world.run()
    assert k.grants.entry(slot.ref).flags == 0  # ended on the response


def test_netfront_refuses_oversized_frames_and_sizes_mtu_to_a_page(world: NetWorld) -> None:
    a, _b = _connect(world)
    core = world.core(1)
    with pytest.raises(NetfrontError, match="a 1515-byte frame; frames are 14..1514 bytes"):
        a.send(core, b"\0" * 1515)
    with pytest.raises(NetfrontError, match="a 13-byte frame"):
        a.send(core, b"\0" * 13)
    assert MAX_MTU == 4082
    with pytest.raises(ValueError, match="need 64..256"):
        NetFront(world.kernels[1], 1, "device/vif/1", rx_buffers=10)  # type: ignore[arg-type]


def test_copy_batches_respect_the_argument_page(world: NetWorld) -> None:
    a, _b = _connect(world)
    core = world.core(1)
    for i in range(250):
        a.send(core, build_frame(parse_mac(MAC_B), parse_mac(MAC_A), bytes(50)))
    world.kernels[0].copy_calls.clear()
    world.run()
    calls = world.kernels[0].copy_calls
    assert sum(calls) == 2 * 250  # each frame copied out once and in once
    assert max(calls) == COPY_BATCH
