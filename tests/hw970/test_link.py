"""The link model: serialisation at the bit rate, propagation latency, MTU, FIFO order."""

from __future__ import annotations

import pytest
import simpy

from framework.hw970.link import ETH_HLEN, Link, LinkParams

GIGABIT = LinkParams(bandwidth_bps=1_000_000_000, latency_ns=5_000, mtu=1500)


def frame(n: int, tag: int = 0) -> bytes:
    """An n-byte frame whose first byte identifies it."""
    return bytes([tag]) + bytes(n - 1)


class Sink:
    """Records (arrival time, frame) for each delivery."""

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self.got: list[tuple[int, bytes]] = []

    def __call__(self, data: bytes) -> None:
        self.got.append((int(self.env.now), data))


def test_one_frame_takes_serialisation_plus_latency() -> None:
    env = simpy.Environment()
    link, sink = Link(env, GIGABIT, "eth0"), Sink(env)
    assert link.send(frame(1514), sink)
    env.run()
    assert sink.got == [(1514 * 8 + 5_000, frame(1514))]
    assert (link.frames, link.bytes, link.busy_ns) == (1, 1514, 1514 * 8)


def test_serialisation_rounds_up_to_whole_nanoseconds() -> None:
    p = LinkParams(bandwidth_bps=3_000_000_000, latency_ns=0)
    assert p.serialisation_ns(1) == 3  # 8 bits at 3 Gbit/s = 2.67 ns
    assert p.serialisation_ns(3) == 8


def test_back_to_back_frames_queue_behind_each_other_in_order() -> None:
    env = simpy.Environment()
    link, sink = Link(env, GIGABIT, "eth0"), Sink(env)
    sizes = [1514, 64, 600, 64]
    for i, n in enumerate(sizes):
        assert link.send(frame(n, i), sink)
    assert link.backlog_ns() == sum(sizes) * 8
    env.run()
    expected, t = [], 0
    for i, n in enumerate(sizes):
        t += n * 8
        expected.append((t + 5_000, frame(n, i)))
    assert sink.got == expected
    assert [data[0] for _, data in sink.got] == [0, 1, 2, 3]


def test_an_idle_link_starts_at_the_send_time() -> None:
    env = simpy.Environment()
    link, sink = Link(env, GIGABIT, "eth0"), Sink(env)
    link.send(frame(100), sink)
    env.run(until=1_000_000)
    link.send(frame(100, 1), sink)  # long after the first finished
    link.send(frame(100, 2), sink, now_ns=1_000_400)  # sent from ahead of the clock
    env.run()
    assert [t for t, _ in sink.got] == [800 + 5_000, 1_000_800 + 5_000, 1_001_600 + 5_000]


def test_frames_over_the_mtu_are_refused() -> None:
    env = simpy.Environment()
    link, sink = Link(env, GIGABIT, "eth0"), Sink(env)
    assert link.send(frame(ETH_HLEN + 1500), sink)
    assert not link.send(frame(ETH_HLEN + 1501), sink)
    assert link.refused == 1 and link.frames == 1
    env.run()
    assert len(sink.got) == 1
    with pytest.raises(ValueError, match="shorter than the 14-byte Ethernet header"):
        link.send(b"\x00" * 10, sink)


def test_the_wire_carries_a_snapshot_of_the_frame() -> None:
    env = simpy.Environment()
    link, sink = Link(env, GIGABIT, "eth0"), Sink(env)
    buf = bytearray(frame(64, 7))
    link.send(buf, sink)
    buf[0] = 9  # the sender reuses its buffer before the frame arrives
    env.run()
    assert sink.got[0][1][0] == 7


def test_bad_parameters_are_named() -> None:
    with pytest.raises(ValueError, match="bandwidth_bps"):
        LinkParams(bandwidth_bps=0, latency_ns=1)
    with pytest.raises(ValueError, match="latency_ns"):
        LinkParams(bandwidth_bps=1, latency_ns=-1)
    with pytest.raises(ValueError, match="mtu"):
        LinkParams(bandwidth_bps=1, latency_ns=1, mtu=0)


def test_a_frame_nobody_receives_still_occupies_the_transmitter() -> None:
    env = simpy.Environment()
    link, sink = Link(env, GIGABIT, "eth0"), Sink(env)
    assert link.transmit(1514) == 0  # its first bit leaves now
    assert link.transmit(1514, now_ns=100) == 1514 * 8  # behind the first, not at 100
    assert link.send(frame(64), sink)
    assert link.backlog_ns() == (2 * 1514 + 64) * 8
    env.run()
    # Only the sent frame is delivered, after the two that went nowhere.
    assert sink.got == [((2 * 1514 + 64) * 8 + 5_000, frame(64))]
    assert (link.frames, link.bytes, link.busy_ns) == (3, 2 * 1514 + 64, (2 * 1514 + 64) * 8)


def test_transmit_refuses_what_send_refuses() -> None:
    env = simpy.Environment()
    link = Link(env, GIGABIT, "eth0")
    assert link.transmit(ETH_HLEN + 1501) is None
    assert link.refused == 1 and link.frames == 0 and link.backlog_ns() == 0
    with pytest.raises(ValueError, match="shorter than the 14-byte Ethernet header"):
        link.transmit(10)


def test_nothing_leaves_faster_than_the_bit_rate() -> None:
    """Whatever mix of delivered and undelivered frames, the n-th frame's last bit leaves
    no earlier than the bits of all frames before it take at the link's rate."""
    env = simpy.Environment()
    link, sink = Link(env, GIGABIT, "eth0"), Sink(env)
    sizes = [1514, 60, 800, 1514, 60, 1514]
    for i, n in enumerate(sizes):
        if i % 2:
            link.send(frame(n, i), sink, now_ns=0)
        else:
            link.transmit(n, now_ns=0)
    env.run()
    ends = [t - 5_000 for t, _ in sink.got]
    assert ends == [sum(sizes[: i + 1]) * 8 for i in (1, 3, 5)]
