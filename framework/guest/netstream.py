"""netstream: a guest streams messages to another guest through its netfront, and every
guest's receiver checks what arrives.

Each message of `message-size` bytes is cut into packets whose payload fits the MTU:
a `NETSTREAM_HEADER` (stream id, message number, packet sequence number, message length,
the chunk's offset, the pattern key and the send time, all big-endian) followed by that
chunk of the message. A message's bytes are a deterministic pattern of (pattern key,
message number, offset), so the receiver can check every byte without being told the
sender's parameters.

The sender keeps the tx ring full and no fuller: it sends while the frontend reports free
slots and resumes when tx responses free more (backpressure), so no frame ever waits in
the frontend's backlog on its account. Every packet is recorded as `net.tx` (dev, pkt =
its packet id, bytes = frame length); `guest.mark` "netstream.done" ends a finite stream.
A packet id (`packet_id`) is the stream and the sequence number, so it names one packet
of the whole run; whoever drops the frame on its way reads the id from the frame itself
(`frame_id`) and records it in the `net.drop` (see `netswitch` for who holds a frame when).

The receiver (`NetSink`, attached to every netfront) takes the packets addressed to its
own MAC, checks sequence order and content, records `net.rx` (dev, pkt, bytes, latency_ns
= arrival - send time) for each good packet, `net.drop` for a corrupt or out-of-order
one, and `guest.mark` "netstream.message" (value = message number) for each message that
arrived whole. Throughput is the sum of `net.rx` bytes over the time they span.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Final, NamedTuple

from framework.hw970.core import Core
from framework.hw970.link import ETH_HLEN
from framework.hw970.memory import PAGE_SIZE
from framework.trace.ids import K
from framework.xen.public.layout import Layout

from .bridge import ETH_P_IP, EthernetHeader, build_frame, parse_mac
from .costs import NATIVE_ROUTINE

if TYPE_CHECKING:
    from .driver_kernel import StreamFront, TraceKernel

__all__ = [
    "FRAME_ID_BYTES",
    "NETSTREAM_HEADER",
    "NETSTREAM_MAGIC",
    "PATTERN_BLOCK",
    "NetSink",
    "NetStream",
    "NetStreamParams",
    "StreamHeader",
    "frame_id",
    "packet_id",
    "packetize",
    "pattern_bytes",
    "stream_id",
]

#: "XNS1": marks a netstream payload (anything else on the wire is someone else's).
NETSTREAM_MAGIC: Final = 0x584E5331
NETSTREAM_HEADER: Final = Layout(
    "netstream_header",
    40,
    {
        "magic": (0, 4),
        "stream": (4, 4),
        "message": (8, 4),
        "seq": (12, 4),
        "total": (16, 4),
        "offset": (20, 4),
        "pattern": (24, 4),
        "send_ns": (32, 8),
    },
)
_U32: Final = 0xFFFFFFFF
#: The pattern repeats every PATTERN_BLOCK bytes; consecutive messages start
#: PATTERN_STRIDE bytes apart in it (odd, so a swapped message never matches).
PATTERN_BLOCK: Final = 1 << 16
PATTERN_STRIDE: Final = 4099


def stream_id(domid: int, devid: int) -> int:
    """A stream's id: the sending domain and vif, so streams never collide."""
    return ((domid & 0xFFFF) << 16) | (devid & 0xFFFF)


def packet_id(stream: int, seq: int) -> int:
    """The trace's id of packet `seq` of `stream` (its net.tx, net.rx and net.drop `pkt`):
    the stream in the high 32 bits, the sequence number (mod 2**32) in the low 32. Guest
    domain ids stay below 0x7FF0, so the id is a positive int64."""
    return ((stream & 0x7FFFFFFF) << 32) | (seq & _U32)


_ETHERTYPE_AT: Final = ETH_HLEN - 2
_MAGIC_AT: Final = ETH_HLEN + NETSTREAM_HEADER.offset("magic")
_STREAM_AT: Final = ETH_HLEN + NETSTREAM_HEADER.offset("stream")
_SEQ_AT: Final = ETH_HLEN + NETSTREAM_HEADER.offset("seq")
#: The leading bytes of a frame that `frame_id` reads.
FRAME_ID_BYTES: Final = _SEQ_AT + 4


def frame_id(frame: bytes) -> int:
    """The packet id of a netstream frame (its first `FRAME_ID_BYTES` suffice), or -1 for
    any other frame (an ARP, a foreign protocol, a truncated copy): what dom0 and the
    drivers put in the net.drop of a frame they hold, read from the frame itself."""
    if (
        len(frame) < FRAME_ID_BYTES
        or int.from_bytes(frame[_ETHERTYPE_AT:ETH_HLEN], "big") != ETH_P_IP
        or int.from_bytes(frame[_MAGIC_AT : _MAGIC_AT + 4], "big") != NETSTREAM_MAGIC
    ):
        return -1
    stream = int.from_bytes(frame[_STREAM_AT : _STREAM_AT + 4], "big")
    return packet_id(stream, int.from_bytes(frame[_SEQ_AT:FRAME_ID_BYTES], "big"))


class StreamHeader(NamedTuple):
    """The decoded header at the start of every netstream payload."""

    stream: int
    message: int
    seq: int
    total: int
    offset: int
    pattern: int
    send_ns: int

    def pack(self) -> bytes:
        return NETSTREAM_HEADER.pack(
            magic=NETSTREAM_MAGIC,
            stream=self.stream,
            message=self.message,
            seq=self.seq,
            total=self.total,
            offset=self.offset,
            pattern=self.pattern,
            send_ns=self.send_ns,
        )

    @classmethod
    def unpack(cls, payload: bytes) -> StreamHeader:
        if len(payload) < NETSTREAM_HEADER.size:
            raise ValueError(
                f"a {len(payload)}-byte payload is shorter than the "
                f"{NETSTREAM_HEADER.size}-byte netstream header"
            )
        v = NETSTREAM_HEADER.unpack(payload)
        if v["magic"] != NETSTREAM_MAGIC:
            raise ValueError("payload does not start with the netstream magic 'XNS1'")
        return cls(
            v["stream"], v["message"], v["seq"], v["total"], v["offset"], v["pattern"], v["send_ns"]
        )


@lru_cache(maxsize=16)
def _pattern_block(key: int) -> bytes:
    """PATTERN_BLOCK seeded bytes, extended by a page so no chunk ever wraps."""
    block = random.Random(key).randbytes(PATTERN_BLOCK)
    return block + block[:PAGE_SIZE]


def pattern_bytes(key: int, message: int, offset: int, n: int) -> bytes:
    """Bytes offset..offset+n of message `message` of a stream with pattern `key`."""
    if not 0 <= n <= PAGE_SIZE:
        raise ValueError(f"a pattern chunk is 0..{PAGE_SIZE} bytes, not {n}")
    start = (message * PATTERN_STRIDE + offset) % PATTERN_BLOCK
    return _pattern_block(key)[start : start + n]


def packetize(message_size: int, mtu: int) -> list[tuple[int, int]]:
    """The (offset, length) chunks a message is sent in: as much as an MTU-sized payload
    holds after the header."""
    room = mtu - NETSTREAM_HEADER.size
    if room <= 0:
        raise ValueError(
            f"MTU {mtu} leaves no room for data after the {NETSTREAM_HEADER.size}-byte header"
        )
    if message_size < 1:
        raise ValueError(f"message size {message_size} must be at least 1 byte")
    return [(off, min(room, message_size - off)) for off in range(0, message_size, room)]


def _int_param(params: Mapping[str, object], name: str, default: int | None = None) -> int:
    value = params.get(name, default)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise ValueError(f"netstream parameter {name!r} = {value!r} is not a non-negative integer")


@dataclass(frozen=True)
class NetStreamParams:
    """What the lead passes in the workload dict (keys as in the devtree)."""

    peer_mac: bytes
    message_size: int
    messages: int  # 0 = until the run ends
    seed: int

    @classmethod
    def from_dict(cls, params: Mapping[str, object]) -> NetStreamParams:
        mac = params.get("peer-mac")
        if not isinstance(mac, str):
            raise TypeError(f"netstream parameter 'peer-mac' = {mac!r} is not a MAC string")
        size = _int_param(params, "message-size")
        if size < 1:
            raise ValueError(f"netstream parameter 'message-size' = {size} must be >= 1")
        return cls(
            parse_mac(mac),
            size,
            _int_param(params, "messages", 0),
            _int_param(params, "seed", 0),
        )


class NetStream:
    """The sending side of a stream over `front` (started when it connects)."""

    def __init__(self, k: TraceKernel, front: StreamFront, params: Mapping[str, object]) -> None:
        self.k = k
        self.front = front
        self.params = NetStreamParams.from_dict(params)
        self.stream = stream_id(k.domid, front.devid)
        self.pattern_key = random.Random(f"{self.params.seed}:{self.stream}").getrandbits(32)
        self.chunks: list[tuple[int, int]] = []
        self.started = False
        self.done = False
        self.stopped = False
        self.error = ""
        # Position: the next packet is chunk `_chunk` of message `message`, number `seq`.
        self.message = 0
        self.seq = 0
        self._chunk = 0
        # Counters.
        self.packets = 0
        self.bytes = 0
        self.messages_sent = 0
        front.when_connected(self.start)
        front.add_tx_space_listener(self._pump)

    def start(self, core: Core) -> None:
        """Begin sending (runs when the frontend connects; call it yourself if the
        stream is created on an already connected frontend)."""
        if self.started:
            return
        if self.front.mac is None:
            self._fail(core, "the vif has no MAC address (no `mac` node) to send from")
            return
        try:
            self.chunks = packetize(self.params.message_size, self.front.mtu)
        except ValueError as e:
            self._fail(core, str(e))
            return
        self.started = True
        self._pump(core)

    def stop(self) -> None:
        """Send nothing more (the kernel is shutting down): what is queued drains."""
        self.stopped = True

    def _fail(self, core: Core, what: str) -> None:
        self.error = what
        self.k.console(core, f"netstream {self.front.devid}: {what}")

    def _pump(self, core: Core) -> None:
        """Send while the tx ring has free slots (and the stream is not finished)."""
        if not self.started or self.done or self.stopped:
            return
        front, k, p = self.front, self.k, self.params
        assert front.mac is not None
        while front.tx_space() > 0:
            core.charge(NATIVE_ROUTINE)
            offset, n = self.chunks[self._chunk]
            header = StreamHeader(
                self.stream,
                self.message & _U32,
                self.seq & _U32,
                p.message_size,
                offset,
                self.pattern_key,
                core.now_ns(),
            )
            data = pattern_bytes(self.pattern_key, self.message, offset, n)
            frame = build_frame(p.peer_mac, front.mac, header.pack() + data)
            front.send(core, frame)
            k.emit(core, K.NET_TX, front.devid, packet_id(self.stream, self.seq), len(frame))
            self.packets += 1
            self.bytes += len(frame)
            self.seq += 1
            self._chunk += 1
            if self._chunk == len(self.chunks):
                self._chunk = 0
                self.message += 1
                self.messages_sent += 1
                if p.messages and self.messages_sent == p.messages:
                    self.done = True
                    k.emit(core, K.GUEST_MARK, self.messages_sent, text="netstream.done")
                    return


@dataclass
class _StreamState:
    """What the receiver knows of one incoming stream."""

    next_seq: int = 0
    message: int = -1
    received: int = 0  # bytes of `message` received in order so far
    broken: bool = False  # `message` lost or spoiled a packet
    in_progress: bool = False
    messages: int = 0  # messages of this stream that arrived whole and correct


class NetSink:
    """The receiving side: checks every netstream packet arriving on `front`."""

    def __init__(self, k: TraceKernel, front: StreamFront) -> None:
        self.k = k
        self.front = front
        self.streams: dict[int, _StreamState] = {}
        # Counters.
        self.packets = 0
        self.bytes = 0  # frame bytes of good packets
        self.payload_bytes = 0  # message bytes of good packets
        self.messages = 0  # messages that arrived whole and correct
        self.incomplete = 0  # messages begun that lost or spoiled a packet
        self.lost = 0  # packets never seen (sequence gaps)
        self.errors = 0  # packets corrupt, truncated or out of order
        self.foreign = 0  # frames not netstream packets for us (ARP, flooded unicast)
        front.add_receiver(self.receive)

    def receive(self, core: Core, frame: bytes) -> None:
        core.charge(NATIVE_ROUTINE)
        eth = EthernetHeader.unpack(frame)
        payload = frame[ETH_HLEN:]
        mine = self.front.mac
        try:
            if eth.dst != mine:
                # PACKET_OTHERHOST, or a group address: a stream is sent to one host.
                raise ValueError("addressed to another host")
            if eth.ethertype != ETH_P_IP:
                raise ValueError(f"EtherType {eth.ethertype:#06x}")
            h = StreamHeader.unpack(payload)
        except ValueError:
            self.foreign += 1
            return
        data = payload[NETSTREAM_HEADER.size :]
        st = self.streams.setdefault(h.stream, _StreamState())
        ahead = (h.seq - st.next_seq) & _U32
        if ahead >= 1 << 31:
            self._reject(
                core, h, frame, f"seq {h.seq} after {st.next_seq - 1} (duplicate or out of order)"
            )
            return
        self.lost += ahead
        st.next_seq = (h.seq + 1) & _U32
        problem = self._content_problem(h, data)
        if st.in_progress and h.message != st.message:
            self.incomplete += 1  # its last packet never came
            st.in_progress = False
        if not st.in_progress:
            st.message, st.received, st.in_progress = h.message, 0, True
            st.broken = h.offset != 0
        elif ahead or h.offset != st.received:
            st.broken = True
        if problem:
            st.broken = True
            self._reject(core, h, frame, problem)
        else:
            self.packets += 1
            self.bytes += len(frame)
            self.payload_bytes += len(data)
            latency = core.now_ns() - h.send_ns
            pkt = packet_id(h.stream, h.seq)
            self.k.emit(core, K.NET_RX, self.front.devid, pkt, len(frame), latency)
            if not st.broken:
                st.received += len(data)
        if h.offset + len(data) >= h.total:
            st.in_progress = False
            if not st.broken and st.received == h.total:
                self.messages += 1
                st.messages += 1
                self.k.emit(core, K.GUEST_MARK, h.message, text="netstream.message")
            else:
                self.incomplete += 1

    @staticmethod
    def _content_problem(h: StreamHeader, data: bytes) -> str:
        if h.offset + len(data) > h.total:
            return (
                f"message {h.message}: {len(data)} bytes at offset {h.offset} run past its "
                f"{h.total} bytes"
            )
        if len(data) > PAGE_SIZE:
            return f"message {h.message}: a {len(data)}-byte chunk is larger than a page"
        want = pattern_bytes(h.pattern, h.message, h.offset, len(data))
        if data != want:
            at = next(i for i, (a, b) in enumerate(zip(data, want)) if a != b)
            return (
                f"message {h.message}: byte {h.offset + at} is {data[at]:#04x}, "
                f"expected {want[at]:#04x}"
            )
        return ""

    def _reject(self, core: Core, h: StreamHeader, frame: bytes, why: str) -> None:
        self.errors += 1
        pkt = packet_id(h.stream, h.seq)
        self.k.emit(core, K.NET_DROP, self.front.devid, pkt, len(frame), text=f"netstream: {why}")
