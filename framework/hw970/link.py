"""A point-to-point network link: FIFO serialisation at a bit rate, then propagation delay.

The classic store-and-forward wire: a frame starts transmitting when the link is free,
occupies it for len * 8 / bandwidth, and arrives `latency_ns` after its last bit left.
Frames carry a 14-byte Ethernet header (destination, source, ethertype); the MTU bounds
the payload after it, as on a real NIC. Times are integer nanoseconds.

Every frame put on the wire occupies the transmitter, whether or not anyone takes it at
the far end: `send` delivers it, `transmit` only paces it (a frame a bridge forwards
cut-through onto other links, or one nobody will receive). Either way the next frame
starts no earlier than this one's last bit, so nothing leaves faster than the bit rate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import simpy

from framework.hw970.params import LINK_BANDWIDTH_BYTES_PER_S, LINK_LATENCY_NS, LINK_MTU_BYTES
from framework.sim_events import timeout

__all__ = ["ETH_HLEN", "Link", "LinkParams"]

ETH_HLEN: Final = 14  # destination MAC, source MAC, ethertype


@dataclass(frozen=True, slots=True)
class LinkParams:
    """Bandwidth in bits/s, one-way propagation latency in ns, MTU in payload bytes.

    The defaults are the documented machine defaults (params.py, which counts bytes/s).
    """

    bandwidth_bps: int = LINK_BANDWIDTH_BYTES_PER_S * 8  # bits per second
    latency_ns: int = LINK_LATENCY_NS
    mtu: int = LINK_MTU_BYTES

    def __post_init__(self) -> None:
        if self.bandwidth_bps <= 0:
            raise ValueError(f"link bandwidth_bps {self.bandwidth_bps} must be positive")
        if self.latency_ns < 0:
            raise ValueError(f"link latency_ns {self.latency_ns} is negative")
        if self.mtu <= 0:
            raise ValueError(f"link mtu {self.mtu} must be positive")

    def serialisation_ns(self, nbytes: int) -> int:
        """Time to put `nbytes` on the wire: ceil(nbytes * 8e9 / bandwidth), in ns."""
        return -(-nbytes * 8_000_000_000 // self.bandwidth_bps)


class Link:
    """One direction of a wire: frames leave in the order sent and arrive in that order."""

    def __init__(self, env: simpy.Environment, params: LinkParams, name: str) -> None:
        self.env = env
        self.params = params
        self.name = name
        self._free_at = 0  # when the transmitter finishes the last accepted frame
        self.frames = 0
        self.bytes = 0
        self.busy_ns = 0
        self.refused = 0

    def __repr__(self) -> str:
        return f"Link({self.name!r}, {self.params})"

    def send(
        self,
        frame: bytes | bytearray | memoryview,
        deliver: Callable[[bytes], None],
        now_ns: int | None = None,
    ) -> bool:
        """Queue `frame`; `deliver(frame)` runs at its arrival. False if over the MTU.

        `now_ns` is the sending instant when it is ahead of the SimPy clock (a sender
        running inside a CPU slice); transmission never starts before it.
        """
        data = bytes(frame)  # the wire carries a snapshot, not the sender's buffer
        if not self._fits(len(data)):
            return False
        clock = int(self.env.now)
        self._occupy(len(data), clock if now_ns is None else max(now_ns, clock))
        arrival = self._free_at + self.params.latency_ns
        ev = timeout(self.env, arrival - clock)
        ev.callbacks.append(lambda _e: deliver(data))
        return True

    def transmit(self, nbytes: int, now_ns: int | None = None) -> int | None:
        """Put a frame of `nbytes` on the wire without delivering it here: the transmitter
        is busy for its serialisation time all the same. Returns the instant its first bit
        leaves (for a cut-through forwarder: no copy can start earlier), None when the
        frame is over the MTU (refused, never on the wire)."""
        if not self._fits(nbytes):
            return None
        clock = int(self.env.now)
        return self._occupy(nbytes, clock if now_ns is None else max(now_ns, clock))

    def _fits(self, nbytes: int) -> bool:
        """Whether a frame of `nbytes` may go on the wire (False, counted, over the MTU)."""
        if nbytes < ETH_HLEN:
            raise ValueError(
                f"link {self.name}: a {nbytes}-byte frame is shorter than the "
                f"{ETH_HLEN}-byte Ethernet header"
            )
        if nbytes - ETH_HLEN > self.params.mtu:
            self.refused += 1
            return False
        return True

    def _occupy(self, nbytes: int, now: int) -> int:
        """The transmitter takes a frame at `now` (or when free); returns its start."""
        wire = self.params.serialisation_ns(nbytes)
        start = max(now, self._free_at)
        self._free_at = start + wire
        self.frames += 1
        self.bytes += nbytes
        self.busy_ns += wire
        return start

    def backlog_ns(self, now_ns: int | None = None) -> int:
        """How long a frame sent now would wait before its first bit leaves."""
        now = int(self.env.now) if now_ns is None else now_ns
        return max(self._free_at - now, 0)
