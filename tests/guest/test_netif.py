"""The network split driver: Ethernet framing, the learning bridge, the netstream
packetisation and verification, and netfront <-> netback <-> bridge <-> link <-> netfront
over real netif rings and real grant entries in one MachineMemory.

The end-to-end tests here run the drivers on `NetWorld` (tests/guest/networld.py): real
rings, grant entries, page pools and links, with a stand-in for the hypercall layer.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest

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
from framework.guest.netback import COPY_BATCH, RX_QUEUE_LIMIT, tx_request_problem
from framework.guest.netfront import MAX_MTU, NetFront
from framework.guest.netstream import (
    NETSTREAM_HEADER,
    NetSink,
    NetStream,
    NetStreamParams,
    StreamHeader,
    frame_id,
    packet_id,
    packetize,
    pattern_bytes,
)
from framework.guest.ring import BackRing, FrontRing, SharedRing
from framework.hw970.core import Core
from framework.hw970.memory import MachineMemory
from framework.trace.ids import K
from framework.xen.public.grant_table import (
    GTF_permit_access,
    GTF_reading,
    GTF_readonly,
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
from tests.guest.networld import (
    MAC_A,
    MAC_B,
    MAC_C,
    REGION,
    NetWorld,
    connect,
    core_at,
    packet,
    start_world,
)


@pytest.fixture
def world() -> NetWorld:
    return start_world()


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
    # Packet ids: the stream (d1, vif 0) above the sequence number, as frame_id reads them.
    assert [f[1] for f, _t in tx] == [(0x00010000 << 32) | n for n in range(2 * len(chunks))]
    assert [frame_id(f) for f in front.sent] == [f[1] for f, _t in tx]
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
    assert [f[1] for f, _ in rx] == [packet_id(0x00010000, n) for n in range(len(frames))]
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
def test_handshake_connects_both_ends_and_maps_both_rings(world: NetWorld) -> None:
    a, b = connect(world)
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
    a, _b = connect(world)
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
    assert [f[1] for f, _ in rx] == [f[1] for f, _ in tx]
    assert [f[1] for f, _ in tx] == [packet_id(0x00010000, n) for n in range(10 * per_msg)]
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
    a, _b = connect(world)
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
    a, b = connect(world)
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
    a, b = connect(world)
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


def test_frames_beyond_the_backend_queue_are_dropped_when_no_buffer_is_posted() -> None:
    w = start_world(guests=3)
    a, b, c = w.plug(1, MAC_A), w.plug(2, MAC_B, rx_buffers=64), w.plug(3, MAC_C)
    w.run()
    w.kernels[2].port_handlers[b.port] = lambda c, p: None  # B stops taking frames
    n = 300
    for front, domid, mac in ((a, 1, MAC_A), (c, 3, MAC_C)):
        core = w.core(domid)
        for i in range(n):
            front.send(core, packet(MAC_B, mac, i, stream=domid << 16))
    w.run()
    drops = w.of(K.NET_DROP, 0)
    assert len(drops) == 2 * n - 64 - RX_QUEUE_LIMIT
    assert all(t == "vif2.0: rx ring empty" and f[::2] == (0, 60) for f, t in drops)
    dropped = {f[1] for f, _t in drops}  # each names its frame: (stream << 32) | seq
    assert len(dropped) == len(drops) and {p >> 48 for p in dropped} == {1, 3}
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
    assert dropped.isdisjoint(frame_id(f) for f in got)  # got or dropped, never both
    for sender in (1, 3):  # each sender's frames arrive in order, the newest were dropped
        seqs = [frame_id(f) & 0xFFFFFFFF for f in got if frame_id(f) >> 48 == sender]
        assert seqs == sorted(seqs) and seqs[0] == 0


def test_a_frame_over_the_egress_link_mtu_is_dropped_there() -> None:
    w = start_world(mtu={2: 576})
    a, b = connect(w)
    assert (a.mtu, b.mtu) == (1500, 576)
    core = w.core(1)
    a.send(core, packet(MAC_B, MAC_A, 0, payload=1000))
    a.send(core, build_frame(parse_mac(MAC_B), parse_mac(MAC_A), b"z" * 500))
    w.run()
    drops = w.of(K.NET_DROP, 0)
    assert len(drops) == 1 and drops[0][0] == (0, packet_id(0x00010000, 0), 1014)
    assert "1000-byte payload exceeds link MTU 576" in drops[0][1]
    assert w.sinks[2].foreign == 2  # the ARP and the 500-byte frame arrived
    with pytest.raises(NetfrontError, match="frames are 14..590 bytes"):
        b.send(w.core(2), build_frame(parse_mac(MAC_A), parse_mac(MAC_B), b"z" * 577))
    assert not a.tx_inflight


def test_bad_tx_requests_are_answered_with_an_error(world: NetWorld) -> None:
    a, _b = connect(world)
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
    # dom0 never had these frames: it says why once, and the frontend keeps the books.
    assert world.of(K.NET_DROP, 0) == [] and world.back.vif(1, 0).refused == 2
    said = [t for d, t in world.console if d == 0 and "refused" in t]
    why = "fragmented packet (NETTXF_more_data): feature-sg is not offered"
    assert said == [f"netback vif1.0: tx request 200 refused: {why}"]
    assert world.sinks[2].packets == 0


def _dom0_port(world: NetWorld, domid: int, port: int) -> int:
    """dom0's end of a guest's interdomain channel."""
    d, p = world.peer[(domid, port)]
    assert d == 0
    return p


def test_close_tears_down_and_revokes_every_grant(world: NetWorld) -> None:
    a, _b = connect(world)
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
    a, b = connect(world)
    world.kernels[2].port_handlers[b.port] = lambda c, p: None  # B stops taking frames
    core = world.core(1)
    for seq in range(300):
        a.send(core, packet(MAC_B, MAC_A, seq))
    world.run()  # 256 in B's buffers, 44 held in the backend's queue for B
    assert len(world.back.vif(2, 0).rx_queue) == 44
    world.store.write("/local/domain/0/backend/vif/2/0/online", "0")  # xm network-detach
    world.run()
    vif_b = world.back.vif(2, 0)
    assert vif_b.state == XenbusState.Closed and not vif_b.connected
    assert b.state == XenbusState.Closed and world.kernels[2].pool.in_use == 0
    # Every frame is dropped once, with its id: those B never took from its ring too.
    drops = world.of(K.NET_DROP)
    assert sorted(f[1] for f, _t in drops) == [packet_id(0x00010000, n) for n in range(300)]
    texts = [t for _f, t in drops]
    assert texts.count("vif2.0: device unplugged before the frontend took the frame") == 256
    assert texts.count("vif2.0: device unplugged") == 44
    assert not a.tx_inflight  # the queued frames' senders were answered
    assert world.back.bridges["xenbr0"].ports == [world.back.vif(1, 0)]
    assert not any(s.domid == 2 for s in world.slots.values())


def test_rx_buffers_are_granted_writable_and_tx_pages_read_only(world: NetWorld) -> None:
    a, _b = connect(world)
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
    a, _b = connect(world)
    core = world.core(1)
    with pytest.raises(NetfrontError, match="a 1515-byte frame; frames are 14..1514 bytes"):
        a.send(core, b"\0" * 1515)
    with pytest.raises(NetfrontError, match="a 13-byte frame"):
        a.send(core, b"\0" * 13)
    assert MAX_MTU == 4082
    with pytest.raises(ValueError, match="need 64..256"):
        NetFront(world.kernels[1], 1, "device/vif/1", rx_buffers=10)  # type: ignore[arg-type]


def test_copy_batches_respect_the_argument_page(world: NetWorld) -> None:
    a, _b = connect(world)
    core = world.core(1)
    for i in range(250):
        a.send(core, build_frame(parse_mac(MAC_B), parse_mac(MAC_A), bytes(50)))
    world.kernels[0].copy_calls.clear()
    world.run()
    calls = world.kernels[0].copy_calls
    assert sum(calls) == 2 * 250  # each frame copied out once and in once
    assert max(calls) == COPY_BATCH
