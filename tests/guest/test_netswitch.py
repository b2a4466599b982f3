"""dom0's switching and the books of the network path: every packet sent gets exactly one
net.rx or net.drop, with its own packet id, whoever holds it when its fate is decided, and
every frame put on a wire is paced by it, received or not.

The drivers run on `NetWorld` (tests/guest/networld.py): real rings, grant entries, page
pools and links, with a stand-in for the hypercall layer.
"""

from __future__ import annotations

from collections import Counter

import pytest

from framework.guest.netback import RX_QUEUE_LIMIT
from framework.guest.netstream import NetStream, packet_id
from framework.hw970.link import LinkParams
from framework.trace.ids import K
from framework.xen.public.io.xenbus import XenbusState
from tests.guest.networld import MAC_A, MAC_B, MAC_C, NetWorld, connect, packet, start_world

GIGABIT = LinkParams(1_000_000_000, 20_000)
STREAM_A = 0x00010000  # d1 vif 0


@pytest.fixture
def world() -> NetWorld:
    return start_world()


def books(world: NetWorld, sent: list[int]) -> Counter[int]:
    """How many net.rx and net.drop records name each sent packet (and any other id)."""
    fates = Counter({pkt: 0 for pkt in sent})
    for kind in (K.NET_RX, K.NET_DROP):
        fates.update(f[1] for f, _t in world.of(kind))
    return fates


def assert_balanced(world: NetWorld, sent: list[int]) -> None:
    """sent = received + dropped, per packet id: each sent id has exactly one record."""
    fates = books(world, sent)
    wrong = sorted((pkt, n) for pkt, n in fates.items() if n != 1 or pkt not in sent)
    assert not wrong, f"{len(wrong)} packet ids without exactly one rx/drop: {wrong[:5]}..."


def stream(world: NetWorld, domid: int, peer: str, messages: int, size: int = 20000) -> None:
    """A netstream from guest `domid` to `peer`, started now (its packets are net.tx)."""
    params = {"peer-mac": peer, "message-size": size, "messages": messages, "seed": domid}
    s = NetStream(world.kernels[domid], world.fronts[domid], params)  # type: ignore[arg-type]
    world.later(domid, s.start)  # type: ignore[arg-type]


def sent_ids(world: NetWorld) -> list[int]:
    return [f[1] for f, _t in world.of(K.NET_TX)]


def stop_taking_frames(world: NetWorld, domid: int) -> None:
    front = world.fronts[domid]
    world.kernels[domid].port_handlers[front.port] = lambda c, p: None


# --- a destination nobody has -----------------------------------------------------------------
@pytest.mark.parametrize("peer", [MAC_C, MAC_A], ids=["unknown-host", "behind-its-own-port"])
def test_frames_nobody_receives_are_paced_by_the_senders_link_and_dropped_once(
    world: NetWorld, peer: str
) -> None:
    connect(world)
    t0 = int(world.env.now)
    stream(world, 1, peer, messages=20)
    world.run()
    sent = sent_ids(world)
    assert len(sent) == 20 * 14  # 20000 bytes in 1460-byte chunks
    assert_balanced(world, sent)
    drops = world.of(K.NET_DROP, 0)
    assert len(drops) == len(sent) and world.of(K.NET_RX) == []
    why = "no port of bridge xenbr0 is" if peer == MAC_C else "the port the frame came in on"
    assert all(why in t for _f, t in drops)
    # The wire paced every frame: A cannot have sent faster than 1 Gbit/s (beyond what
    # its ring holds), so the run lasts at least the frames' serialisation time.
    tx_bytes = sum(f[2] for f, _t in world.of(K.NET_TX))
    assert int(world.env.now) - t0 >= GIGABIT.serialisation_ns(tx_bytes - 256 * 1514)
    assert world.uplinks[(1, 0)].frames == len(sent) + 1  # and A's ARP


def test_a_stream_to_a_departed_receiver_is_paced_and_every_packet_dropped_with_its_id(
    world: NetWorld,
) -> None:
    a, b = connect(world)
    world.later(2, b.close)  # type: ignore[arg-type]
    world.run()
    assert b.state == XenbusState.Closed
    t0 = int(world.env.now)
    stream(world, 1, MAC_B, messages=40)
    world.run()
    sent = sent_ids(world)
    assert_balanced(world, sent)
    assert all("no other port on bridge xenbr0" in t for _f, t in world.of(K.NET_DROP, 0))
    rate = sum(f[2] for f, _t in world.of(K.NET_TX)) * 8e9 / (int(world.env.now) - t0)
    assert rate <= 1e9 * 1.001  # was 16 Gbit/s when nothing paced a frame nobody takes
    assert not a.tx_inflight


# --- flooding -----------------------------------------------------------------------------
def test_flooded_copies_do_not_multiply_a_packet() -> None:
    w = start_world(guests=5)
    senders = {1: MAC_A, 4: "00:16:3e:00:04:00", 5: "00:16:3e:00:05:00"}
    w.plug(2, MAC_B), w.plug(3, MAC_C, rx_buffers=64)
    for domid, mac in senders.items():
        w.plug(domid, mac)
    w.run()
    stop_taking_frames(w, 3)  # C's copies pile up and overflow its backend queue
    w.back.bridges["xenbr0"].fdb.clear()  # B is not known: packets for it are flooded
    before = w.back.vif(3, 0).dropped
    for domid in senders:
        stream(w, domid, MAC_B, messages=10)  # 140 packets each: all fit the tx rings
    w.run()
    sent = sent_ids(w)
    assert len(sent) == 3 * 10 * 14
    # B received each packet once; the copies C lost were never B's packets to lose.
    assert_balanced(w, sent)
    assert len(w.of(K.NET_RX, 2)) == len(sent) and w.of(K.NET_DROP) == []
    assert w.back.vif(3, 0).dropped - before == len(sent) - 64 - RX_QUEUE_LIMIT  # unrecorded


def test_a_packet_flooded_to_hosts_that_are_not_its_addressee_is_dropped_by_the_bridge() -> None:
    w = start_world(guests=3)
    w.plug(1, MAC_A), w.plug(2, MAC_B), w.plug(3, MAC_C)
    w.run()
    core = w.core(1)
    sent = [packet_id(STREAM_A, n) for n in range(5)]
    for n in range(5):
        w.fronts[1].send(core, packet("00:16:3e:00:09:00", MAC_A, n))
    w.run()
    assert_balanced(w, sent)
    drops = w.of(K.NET_DROP, 0)
    assert len(drops) == 5
    why = "no port of bridge xenbr0 is 00:16:3e:00:09:00 (from vif1.0, flood to vif2.0, vif3.0)"
    assert all(t == f"vif1.0: {why}" for _f, t in drops)
    assert w.sinks[2].foreign == w.sinks[3].foreign == 5 + 2  # the copies, and ARPs


def test_a_packet_to_a_group_address_is_dropped_once_and_an_arp_is_not_lost() -> None:
    w = start_world(guests=3)
    w.plug(1, MAC_A), w.plug(2, MAC_B), w.plug(3, MAC_C)
    w.run()
    assert all(vif.dropped == 0 for vif in w.back.devices.values())  # the ARPs went out
    w.fronts[1].send(w.core(1), packet("ff:ff:ff:ff:ff:ff", MAC_A, 0))
    w.run()
    assert_balanced(w, [packet_id(STREAM_A, 0)])  # a stream is sent to one host
    assert w.sinks[2].packets == w.sinks[3].packets == 0


# --- unplugging the sender ----------------------------------------------------------------------
def test_unplugging_the_sender_drops_what_is_still_on_its_tx_ring_once(world: NetWorld) -> None:
    a, _b = connect(world)
    core = world.core(1)
    sent = [packet_id(STREAM_A, n) for n in range(100)]
    for n in range(100):
        a.send(core, packet(MAC_B, MAC_A, n))  # dom0 has not looked yet
    world.back.vif(1, 0).unplug(world.core(0), removed=False)  # xm destroy, A paused
    world.run()
    assert_balanced(world, sent)
    drops = world.of(K.NET_DROP)
    assert {t for _f, t in drops} == {"vif1.0: device unplugged before the frame was sent"}
    # A's netfront got NETIF_RSP_DROPPED for each: it recorded nothing and freed all.
    assert a.state == XenbusState.Closed and a.tx_errors == 100
    assert world.kernels[1].pool.in_use == 0 and not a.tx_inflight


@pytest.mark.parametrize("paused", [True, False], ids=["destroyed", "detached-live"])
def test_packets_in_flight_when_the_sender_goes_arrive_once(world: NetWorld, paused: bool) -> None:
    _a, b = connect(world)
    stream(world, 1, MAC_B, messages=0)  # endless
    world.run(until=int(world.env.now) + 2_000_000)
    in_flight = set(world.back.vif(1, 0).tx_pending)
    assert len(in_flight) == 256  # taken by dom0, still on the wire to B
    if paused:
        stop_taking_frames(world, 1)  # xm destroy pauses it first
    world.back.vif(1, 0).unplug(world.core(0), removed=False)
    world.run()
    sent = sent_ids(world)
    assert_balanced(world, sent)
    # What dom0 had taken still reached B. A live A refilled its ring from the answers
    # dom0 gave as it went, and recorded those frames itself when it saw the backend go.
    lost = world.of(K.NET_DROP, 1)
    assert len(world.of(K.NET_RX, 2)) == len(sent) - len(lost)
    assert len(lost) == (0 if paused else 256)
    assert {t for _f, t in lost} <= {"netfront tx: the backend went before answering"}
    assert b.state == XenbusState.Connected


# --- refusals and failed copies -------------------------------------------------------------------
def test_a_refused_request_is_recorded_once_by_the_frontend_with_its_id(world: NetWorld) -> None:
    a, _b = connect(world)
    world.back.vif(1, 0).mtu = 100  # netback now refuses A's bigger frames
    core = world.core(1)
    a.send(core, packet(MAC_B, MAC_A, 0, payload=500))
    a.send(core, packet(MAC_B, MAC_A, 1, payload=60))
    world.run()
    assert_balanced(world, [packet_id(STREAM_A, n) for n in range(2)])
    (drop,) = world.of(K.NET_DROP)
    assert drop == (
        (0, packet_id(STREAM_A, 0), 514),
        "netfront tx: the backend refused it (status -1)",
    )
    assert world.of(K.NET_DROP, 1) == [drop]  # A recorded it; dom0 did not


def test_a_failed_copy_into_the_receiver_is_recorded_once_by_dom0(world: NetWorld) -> None:
    a, b = connect(world)
    grants = world.kernels[2].grants
    for buf in b._rx_all:  # B revokes its receive buffers: dom0's copies in must fail
        assert grants.end_access(buf.ref)
    a.send(world.core(1), packet(MAC_B, MAC_A, 0))
    world.run()
    assert_balanced(world, [packet_id(STREAM_A, 0)])
    (drop,) = world.of(K.NET_DROP)
    assert "vif2.0: copying into rx grant" in drop[1] and world.of(K.NET_DROP, 0) == [drop]
    assert b.rx_errors == 1
