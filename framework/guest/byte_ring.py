"""The console and xenstore byte rings: circular char buffers in a shared page.

Each direction is a power-of-two char array with a u32 consumer and producer index.  The
indices run freely and wrap at 2**32; a byte lives at `index & (size - 1)`; `prod - cons`
(mod 2**32) is the number of bytes waiting, so the ring is full at exactly `size`.  The
producer writes the bytes before it publishes prod, and the consumer reads them before it
publishes cons, as `xencons_ring.c` and `xenbus_comms.c` do.  The indices are read fresh
from memory every time: the other side may be a different domain or a daemon.
"""

from __future__ import annotations

import struct
from typing import Final, Literal

from framework.errors import RingEmpty, RingError, RingProtocolError
from framework.guest.ring import GuestMemory
from framework.xen.public.io.console import XENCONS_INTERFACE
from framework.xen.public.io.ring import RING_IDX_MASK
from framework.xen.public.io.xs_wire import (
    XENSTORE_DOMAIN_INTERFACE,
    XENSTORE_PAYLOAD_MAX,
    XSD_SOCKMSG,
    XsdSockmsg,
)
from framework.xen.public.layout import Layout

_U32: Final = struct.Struct(">I")


class ByteRing:
    """One direction of a byte ring: a char array and its u32 cons and prod indices."""

    def __init__(
        self, mem: GuestMemory, base: int, layout: Layout, data: str, cons: str, prod: str
    ) -> None:
        """The direction whose chars are `layout`'s field `data` (its width is the ring
        size) and whose indices are its u32 fields `cons` and `prod`."""
        data_offset, size = layout.fields[data]
        if size & (size - 1):
            raise ValueError(f"byte ring {layout.name}.{data}: size {size} is not a power of two")
        self.mem = mem
        self.base = base
        self.name = f"{layout.name}.{data}"
        self.size = size
        self._data = base + data_offset
        self._cons = base + layout.offset(cons)
        self._prod = base + layout.offset(prod)

    @property
    def cons(self) -> int:
        return _U32.unpack(self.mem.read(self._cons, 4))[0]

    @cons.setter
    def cons(self, value: int) -> None:
        self.mem.write(self._cons, _U32.pack(value & RING_IDX_MASK))

    @property
    def prod(self) -> int:
        return _U32.unpack(self.mem.read(self._prod, 4))[0]

    @prod.setter
    def prod(self, value: int) -> None:
        self.mem.write(self._prod, _U32.pack(value & RING_IDX_MASK))

    def _pending(self, cons: int, prod: int) -> int:
        n = (prod - cons) & RING_IDX_MASK
        if n > self.size:
            raise RingProtocolError(
                f"{self.name} ring at {self.base:#x}: prod {prod:#x} is {n} bytes past cons "
                f"{cons:#x}, more than the ring's {self.size} bytes"
            )
        return n

    def pending(self) -> int:
        """Bytes written and not yet consumed."""
        return self._pending(self.cons, self.prod)

    def free(self) -> int:
        """Bytes the producer may still write."""
        return self.size - self.pending()

    def _copy_in(self, idx: int, data: bytes) -> None:
        at = idx & (self.size - 1)
        first = min(len(data), self.size - at)
        self.mem.write(self._data + at, data[:first])
        if first < len(data):
            self.mem.write(self._data, data[first:])

    def _copy_out(self, idx: int, n: int) -> bytes:
        at = idx & (self.size - 1)
        first = min(n, self.size - at)
        out = self.mem.read(self._data + at, first)
        if first < n:
            out += self.mem.read(self._data, n - first)
        return out

    def write(self, data: bytes) -> int:
        """Producer: copy as much of `data` as fits, then publish prod; returns the count."""
        cons, prod = self.cons, self.prod
        n = min(len(data), self.size - self._pending(cons, prod))
        if n:
            self._copy_in(prod, bytes(data[:n]))
            self.prod = prod + n
        return n

    def peek(self, n: int) -> bytes:
        """The first `n` waiting bytes, left in the ring."""
        cons, prod = self.cons, self.prod
        have = self._pending(cons, prod)
        if n > have:
            raise RingEmpty(f"{self.name} ring at {self.base:#x}: {n} bytes asked, {have} waiting")
        return self._copy_out(cons, n)

    def read(self, max: int | None = None) -> bytes:
        """Consumer: take up to `max` waiting bytes (all by default), then publish cons."""
        if max is not None and max < 0:
            raise ValueError(f"{self.name} ring: cannot read {max} bytes")
        cons, prod = self.cons, self.prod
        n = self._pending(cons, prod)
        if max is not None:
            n = min(n, max)
        if not n:
            return b""
        data = self._copy_out(cons, n)
        self.cons = cons + n
        return data


class ConsoleRing:
    """The console page (`xencons_interface`): `out` carries the guest's output to
    xenconsoled, `in` carries typed input to the guest."""

    def __init__(self, mem: GuestMemory, base: int) -> None:
        L = XENCONS_INTERFACE
        self.in_ring = ByteRing(mem, base, L, "in", "in_cons", "in_prod")
        self.out_ring = ByteRing(mem, base, L, "out", "out_cons", "out_prod")

    def write_out(self, data: bytes) -> int:
        """Guest: queue output; returns how many bytes fitted."""
        return self.out_ring.write(data)

    def read_out(self, max: int | None = None) -> bytes:
        """xenconsoled: take the guest's output."""
        return self.out_ring.read(max)

    def write_in(self, data: bytes) -> int:
        """xenconsoled: queue input for the guest; returns how many bytes fitted."""
        return self.in_ring.write(data)

    def read_in(self, max: int | None = None) -> bytes:
        """Guest: take its input."""
        return self.in_ring.read(max)

    def out_pending(self) -> int:
        return self.out_ring.pending()

    def in_pending(self) -> int:
        return self.in_ring.pending()


Side = Literal["request", "response"]


class XenstoreRing:
    """The xenstore page (`xenstore_domain_interface`): `req` carries the guest's requests
    to xenstored, `rsp` its replies and watch events."""

    def __init__(self, mem: GuestMemory, base: int) -> None:
        L = XENSTORE_DOMAIN_INTERFACE
        self.requests = ByteRing(mem, base, L, "req", "req_cons", "req_prod")
        self.responses = ByteRing(mem, base, L, "rsp", "rsp_cons", "rsp_prod")

    def side(self, side: Side) -> ByteRing:
        if side == "request":
            return self.requests
        if side == "response":
            return self.responses
        raise ValueError(f"xenstore ring side {side!r} is neither 'request' nor 'response'")

    def write_request(self, data: bytes) -> int:
        """Guest: queue request bytes; returns how many fitted."""
        return self.requests.write(data)

    def read_request(self, max: int | None = None) -> bytes:
        """xenstored: take request bytes."""
        return self.requests.read(max)

    def write_response(self, data: bytes) -> int:
        """xenstored: queue reply bytes; returns how many fitted."""
        return self.responses.write(data)

    def request_pending(self) -> int:
        return self.requests.pending()

    def response_pending(self) -> int:
        return self.responses.pending()

    def request_space(self) -> int:
        """Bytes the guest may still write to the request ring."""
        return self.requests.free()

    def response_space(self) -> int:
        """Bytes xenstored may still write to the response ring."""
        return self.responses.free()

    def take_request_message(self) -> bytes | None:
        """xenstored: `take_message("request")`."""
        return self.take_message("request")

    def take_response_message(self) -> bytes | None:
        """Guest: `take_message("response")`."""
        return self.take_message("response")

    def take_message(self, side: Side) -> bytes | None:
        """One whole xsd_sockmsg (header and payload), consumed only once all of it is in
        the ring; None while it is incomplete.  A message longer than the ring can never
        be whole in it: that raises, and XsdMessageReader must be used instead."""
        ring = self.side(side)
        have = ring.pending()
        if have < XSD_SOCKMSG.size:
            return None
        total = XSD_SOCKMSG.size + _payload_len(ring, ring.peek(XSD_SOCKMSG.size))
        if total > ring.size:
            raise RingError(
                f"{ring.name} ring: a {total}-byte message can never be whole in the "
                f"{ring.size}-byte ring; read it incrementally with XsdMessageReader"
            )
        if have < total:
            return None
        return ring.read(total)


def _payload_len(ring: ByteRing, header: bytes) -> int:
    length = XsdSockmsg.unpack(header).len
    if length > XENSTORE_PAYLOAD_MAX:
        raise RingProtocolError(
            f"{ring.name} ring at {ring.base:#x}: message header announces {length} payload "
            f"bytes, more than XENSTORE_PAYLOAD_MAX = {XENSTORE_PAYLOAD_MAX}"
        )
    return length


class XsdMessageReader:
    """Assembles xsd_sockmsgs of any legal size from one side of a xenstore ring, taking
    bytes as they arrive (as xenstored and xenbus do), since a payload may be up to
    XENSTORE_PAYLOAD_MAX = 4096 bytes and the ring holds only 1024."""

    def __init__(self, ring: ByteRing) -> None:
        self.ring = ring
        self._buf = bytearray()
        self._need = XSD_SOCKMSG.size

    @property
    def partial(self) -> bytes:
        """Bytes of the message under assembly taken so far."""
        return bytes(self._buf)

    def poll(self) -> bytes | None:
        """Take what is waiting; the whole message (header + payload) once complete."""
        while True:
            chunk = self.ring.read(self._need - len(self._buf))
            self._buf += chunk
            if len(self._buf) < self._need:
                return None
            if self._need == XSD_SOCKMSG.size:
                self._need += _payload_len(self.ring, bytes(self._buf))
                if self._need > len(self._buf):
                    continue
            message = bytes(self._buf)
            self._buf.clear()
            self._need = XSD_SOCKMSG.size
            return message


__all__ = ["ByteRing", "ConsoleRing", "Side", "XenstoreRing", "XsdMessageReader"]
