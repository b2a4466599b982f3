"""The generic shared I/O ring of Xen's `io/ring.h`, on a page of guest memory.

A front end produces requests and consumes responses; a back end does the reverse.  As in
the C macros, everything the two sides share (the four header indices and the entry array)
lives in the page, and is re-read from memory on every use; each side object keeps only
its private indices (`req_prod_pvt`/`rsp_cons` or `rsp_prod_pvt`/`req_cons`).  So a front
and a back end built on the same machine page, through different accessors (the guest's
own mapping, dom0's foreign mapping), interoperate exactly as real drivers do.

RING_IDX values are free-running unsigned 32-bit counters: every difference is taken
modulo 2**32 and a slot is `idx & (size - 1)`.

Requests and responses share the slot array (a union), so a ring is built with the union
size (`RingType.entry_bytes` in `framework.xen.public.io.ring`, i.e. the larger of the request and
response sizes).  `put_*` writes only the bytes it is given (a response smaller than the
slot leaves the rest of the slot as it was, as a C struct store does); `get_*` returns the
whole slot, which the `framework.xen.public.io` decoders accept.
"""

from __future__ import annotations

import struct
from typing import Final, Protocol

from framework.errors import RingEmpty, RingError, RingFull, RingProtocolError
from framework.hw970.memory import PAGE_SIZE
from framework.xen.public.io.ring import (
    RING_IDX_MASK,
    SHARED_RING_HEADER,
    SRING_ENTRIES_OFFSET,
    ring_size,
)

_U32: Final = struct.Struct(">I")
_REQ_PROD: Final = SHARED_RING_HEADER.offset("req_prod")
_REQ_EVENT: Final = SHARED_RING_HEADER.offset("req_event")
_RSP_PROD: Final = SHARED_RING_HEADER.offset("rsp_prod")
_RSP_EVENT: Final = SHARED_RING_HEADER.offset("rsp_event")


class GuestMemory(Protocol):
    """Whatever reaches the shared page: machine memory, a kernel's mapping, a foreign map."""

    def read(self, addr: int, n: int) -> bytes: ...

    def write(self, addr: int, data: bytes) -> None: ...


def _idx(value: int) -> int:
    return value & RING_IDX_MASK


def _event_crossed(old: int, new: int, event: int) -> bool:
    """The notify test of RING_PUSH_*_AND_CHECK_NOTIFY: did the push from `old` to `new`
    move past the index `event` the consumer asked to be woken at?"""
    return _idx(new - event) < _idx(new - old)


class SharedRing:
    """The shared page itself: the header indices and the entry slots, all in memory."""

    def __init__(
        self, mem: GuestMemory, base: int, entry_bytes: int, page_bytes: int = PAGE_SIZE
    ) -> None:
        self.mem = mem
        self.base = base
        self.entry_bytes = entry_bytes
        self.page_bytes = page_bytes
        self.size = ring_size(entry_bytes, page_bytes)
        self._mask = self.size - 1
        self._entries = base + SRING_ENTRIES_OFFSET

    @classmethod
    def init(
        cls,
        mem: GuestMemory,
        base: int,
        entry_bytes: int,
        page_bytes: int = PAGE_SIZE,
        start: int = 0,
    ) -> SharedRing:
        """SHARED_RING_INIT: zero the page, req_prod = rsp_prod = start, both event
        indices = start + 1.  Xen always starts at 0; another `start` exercises the wrap."""
        ring = cls(mem, base, entry_bytes, page_bytes)
        mem.write(base, bytes(page_bytes))
        ring.req_prod = start
        ring.rsp_prod = start
        ring.req_event = start + 1
        ring.rsp_event = start + 1
        return ring

    def _get(self, off: int) -> int:
        return _U32.unpack(self.mem.read(self.base + off, 4))[0]

    def _set(self, off: int, value: int) -> None:
        self.mem.write(self.base + off, _U32.pack(_idx(value)))

    @property
    def req_prod(self) -> int:
        return self._get(_REQ_PROD)

    @req_prod.setter
    def req_prod(self, value: int) -> None:
        self._set(_REQ_PROD, value)

    @property
    def req_event(self) -> int:
        return self._get(_REQ_EVENT)

    @req_event.setter
    def req_event(self, value: int) -> None:
        self._set(_REQ_EVENT, value)

    @property
    def rsp_prod(self) -> int:
        return self._get(_RSP_PROD)

    @rsp_prod.setter
    def rsp_prod(self, value: int) -> None:
        self._set(_RSP_PROD, value)

    @property
    def rsp_event(self) -> int:
        return self._get(_RSP_EVENT)

    @rsp_event.setter
    def rsp_event(self, value: int) -> None:
        self._set(_RSP_EVENT, value)

    def entry_addr(self, idx: int) -> int:
        """Address of the slot RING_IDX `idx` lands in."""
        return self._entries + (idx & self._mask) * self.entry_bytes

    def read_entry(self, idx: int) -> bytes:
        return self.mem.read(self.entry_addr(idx), self.entry_bytes)

    def write_entry(self, idx: int, data: bytes) -> None:
        if len(data) > self.entry_bytes:
            raise ValueError(
                f"a {len(data)}-byte entry does not fit this ring's {self.entry_bytes}-byte slots"
            )
        self.mem.write(self.entry_addr(idx), bytes(data))


class FrontRing:
    """The front end's side (FRONT_RING_INIT): produces requests, consumes responses."""

    def __init__(
        self,
        mem: GuestMemory,
        base: int,
        entry_bytes: int,
        *,
        page_bytes: int = PAGE_SIZE,
        start: int = 0,
    ) -> None:
        self.sring = SharedRing(mem, base, entry_bytes, page_bytes)
        #: Requests written but maybe not yet published in req_prod.
        self.req_prod_pvt = _idx(start)
        #: Responses consumed so far.
        self.rsp_cons = _idx(start)

    @property
    def size(self) -> int:
        return self.sring.size

    def free_requests(self) -> int:
        """RING_FREE_REQUESTS: slots not holding a request still awaiting its response."""
        return self.size - _idx(self.req_prod_pvt - self.rsp_cons)

    def full(self) -> bool:
        return self.free_requests() == 0

    def put_request(self, data: bytes) -> int:
        """Write a request in the next private slot; returns its RING_IDX.  Not visible to
        the back end until pushed."""
        if self.full():
            raise RingFull(
                f"ring at {self.sring.base:#x} is full: {self.size} requests await responses "
                f"(req_prod_pvt {self.req_prod_pvt:#x}, rsp_cons {self.rsp_cons:#x})"
            )
        idx = self.req_prod_pvt
        self.sring.write_entry(idx, data)
        self.req_prod_pvt = _idx(idx + 1)
        return idx

    def push_requests(self) -> None:
        """RING_PUSH_REQUESTS: publish the private requests (entries are already written)."""
        self.sring.req_prod = self.req_prod_pvt

    def push_requests_and_check_notify(self) -> bool:
        """Publish, and say whether the back end asked to be notified of these requests."""
        old = self.sring.req_prod
        new = self.req_prod_pvt
        self.sring.req_prod = new
        return _event_crossed(old, new, self.sring.req_event)

    def unconsumed_responses(self) -> int:
        """RING_HAS_UNCONSUMED_RESPONSES; refuses a back end claiming more responses than
        there are outstanding requests."""
        n = _idx(self.sring.rsp_prod - self.rsp_cons)
        outstanding = _idx(self.req_prod_pvt - self.rsp_cons)
        if n > outstanding:
            raise RingProtocolError(
                f"ring at {self.sring.base:#x}: back end published rsp_prod "
                f"{self.sring.rsp_prod:#x}, {n} responses past rsp_cons {self.rsp_cons:#x}, "
                f"but only {outstanding} requests are outstanding"
            )
        return n

    def get_response(self) -> bytes:
        """The next response's slot (whole); advances rsp_cons."""
        if not self.unconsumed_responses():
            raise RingEmpty(
                f"ring at {self.sring.base:#x}: no unconsumed response (rsp_cons "
                f"{self.rsp_cons:#x})"
            )
        data = self.sring.read_entry(self.rsp_cons)
        self.rsp_cons = _idx(self.rsp_cons + 1)
        return data

    def final_check_for_responses(self) -> bool:
        """RING_FINAL_CHECK_FOR_RESPONSES: before going idle, ask to be notified of the next
        response (rsp_event = rsp_cons + 1), then look again so one that slipped in between
        is not left waiting for a notification that will never come."""
        if self.unconsumed_responses():
            return True
        self.sring.rsp_event = self.rsp_cons + 1
        return self.unconsumed_responses() > 0


class BackRing:
    """The back end's side (BACK_RING_INIT): consumes requests, produces responses."""

    def __init__(
        self,
        mem: GuestMemory,
        base: int,
        entry_bytes: int,
        *,
        page_bytes: int = PAGE_SIZE,
        start: int = 0,
    ) -> None:
        self.sring = SharedRing(mem, base, entry_bytes, page_bytes)
        #: Responses written but maybe not yet published in rsp_prod.
        self.rsp_prod_pvt = _idx(start)
        #: Requests consumed so far.
        self.req_cons = _idx(start)

    @property
    def size(self) -> int:
        return self.sring.size

    def unconsumed_requests(self) -> int:
        """RING_HAS_UNCONSUMED_REQUESTS: requests published past req_cons, but never more
        than the slots not awaiting a response, so a front end that publishes a wild
        req_prod cannot make the back end read past what the ring holds."""
        published = _idx(self.sring.req_prod - self.req_cons)
        room = self.size - _idx(self.req_cons - self.rsp_prod_pvt)
        return min(published, room)

    def request_overflow(self, cons: int | None = None) -> bool:
        """RING_REQUEST_CONS_OVERFLOW: would consuming at `cons` (default req_cons) reach a
        slot whose response has not been produced yet?"""
        at = self.req_cons if cons is None else cons
        return _idx(at - self.rsp_prod_pvt) >= self.size

    def get_request(self) -> bytes:
        """The next request's slot (whole); advances req_cons."""
        if not self.unconsumed_requests():
            raise RingEmpty(
                f"ring at {self.sring.base:#x}: no request to consume (req_cons "
                f"{self.req_cons:#x}, req_prod {self.sring.req_prod:#x}, "
                f"rsp_prod_pvt {self.rsp_prod_pvt:#x})"
            )
        data = self.sring.read_entry(self.req_cons)
        self.req_cons = _idx(self.req_cons + 1)
        return data

    def put_response(self, data: bytes) -> int:
        """Write a response in the next private slot; returns its RING_IDX.  A response
        answers a consumed request, so there can never be more responses than those."""
        if self.rsp_prod_pvt == self.req_cons:
            raise RingError(
                f"ring at {self.sring.base:#x}: every consumed request already has its "
                f"response (rsp_prod_pvt = req_cons = {self.req_cons:#x})"
            )
        idx = self.rsp_prod_pvt
        self.sring.write_entry(idx, data)
        self.rsp_prod_pvt = _idx(idx + 1)
        return idx

    def push_responses(self) -> None:
        """RING_PUSH_RESPONSES: publish the private responses."""
        self.sring.rsp_prod = self.rsp_prod_pvt

    def push_responses_and_check_notify(self) -> bool:
        """Publish, and say whether the front end asked to be notified of these responses."""
        old = self.sring.rsp_prod
        new = self.rsp_prod_pvt
        self.sring.rsp_prod = new
        return _event_crossed(old, new, self.sring.rsp_event)

    def final_check_for_requests(self) -> bool:
        """RING_FINAL_CHECK_FOR_REQUESTS: ask to be notified of the next request
        (req_event = req_cons + 1), then look again for one that slipped in between."""
        if self.unconsumed_requests():
            return True
        self.sring.req_event = self.req_cons + 1
        return self.unconsumed_requests() > 0


__all__ = [
    "BackRing",
    "FrontRing",
    "GuestMemory",
    "SharedRing",
]
