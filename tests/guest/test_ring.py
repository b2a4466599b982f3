"""The shared I/O ring: a front and a back end on one machine page, each through its own
mapping (the guest's RMA address, dom0's foreign-area address), talking only via memory."""

from __future__ import annotations

import random
import struct
from collections.abc import Callable

import pytest

from framework.errors import RingEmpty, RingError, RingFull, RingProtocolError
from framework.guest.ring import BackRing, FrontRing, SharedRing
from framework.hw970.memory import MachineMemory
from framework.xen.public.io.blkif import (
    BLKIF_OP_READ,
    BLKIF_RING,
    BLKIF_RSP_OKAY,
    BlkifRequest,
    BlkifResponse,
    BlkifSegment,
)
from framework.xen.public.io.netif import NETIF_TX_RING

RING_MADDR = 0x5000  # the machine page holding the ring
DOMU_GPA = 0x3FFC000  # where the front end's domain sees it
DOM0_GPA = 1 << 34  # where dom0 maps it (the foreign area)
BLK = BLKIF_RING.entry_bytes
M32 = 0xFFFFFFFF


class Window:
    """One domain's mapping of the ring page: guest address -> machine address."""

    def __init__(self, mem: MachineMemory, gpa: int, maddr: int) -> None:
        self.mem, self.gpa, self.maddr = mem, gpa, maddr

    def _m(self, addr: int, n: int) -> int:
        if not (self.gpa <= addr and addr + n <= self.gpa + 4096):
            raise AssertionError(f"access {addr:#x}+{n} outside the mapped ring page")
        return self.maddr + addr - self.gpa

    def read(self, addr: int, n: int) -> bytes:
        return self.mem.read(self._m(addr, n), n)

    def write(self, addr: int, data: bytes) -> None:
        self.mem.write(self._m(addr, len(data)), data)


class RacingWindow(Window):
    """A mapping that lets the other side run just before a given address is written:
    the interleaving a second CPU can produce between two of our stores."""

    def __init__(self, mem: MachineMemory, gpa: int, maddr: int) -> None:
        super().__init__(mem, gpa, maddr)
        self.before_write: dict[int, Callable[[], None]] = {}

    def write(self, addr: int, data: bytes) -> None:
        hook = self.before_write.pop(addr, None)
        if hook is not None:
            hook()
        super().write(addr, data)


def make_pair(
    entry_bytes: int = BLK, start: int = 0, back_window: type[Window] = Window
) -> tuple[MachineMemory, FrontRing, BackRing]:
    mem = MachineMemory(1 << 16)
    front_map = Window(mem, DOMU_GPA, RING_MADDR)
    SharedRing.init(front_map, DOMU_GPA, entry_bytes, start=start)
    front = FrontRing(front_map, DOMU_GPA, entry_bytes, start=start)
    back = BackRing(back_window(mem, DOM0_GPA, RING_MADDR), DOM0_GPA, entry_bytes, start=start)
    return mem, front, back


def request(rid: int) -> bytes:
    return BlkifRequest(BLKIF_OP_READ, 0, rid, 8 * rid, (BlkifSegment(rid, 0, 7),)).pack()


def answer(back: BackRing) -> int:
    """Back end: consume one request and answer it; returns its id."""
    req = BlkifRequest.unpack(back.get_request())
    back.put_response(BlkifResponse(req.id, req.operation, BLKIF_RSP_OKAY).pack())
    return req.id


def header(mem: MachineMemory) -> list[int]:
    """req_prod, req_event, rsp_prod, rsp_event as they are in machine memory."""
    return list(struct.unpack(">IIII", mem.read(RING_MADDR, 16)))


def test_init_zeroes_the_page_and_arms_both_events() -> None:
    mem = MachineMemory(1 << 16)
    mem.write(RING_MADDR, b"\xaa" * 4096)
    ring = SharedRing.init(Window(mem, DOMU_GPA, RING_MADDR), DOMU_GPA, BLK)
    assert ring.size == 32
    assert header(mem) == [0, 1, 0, 1]
    assert mem.read(RING_MADDR + 16, 4096 - 16) == bytes(4096 - 16)


def test_request_and_response_travel_through_memory() -> None:
    mem, front, back = make_pair()
    req = BlkifRequest(BLKIF_OP_READ, 0x300, 0xC0FFEE, 1234, (BlkifSegment(9, 1, 6),))
    assert front.put_request(req.pack()) == 0
    assert back.unconsumed_requests() == 0  # not published yet
    front.push_requests()
    assert header(mem)[0] == 1
    assert mem.read(RING_MADDR + 64, 112) == req.pack()  # slot 0 right after the header
    assert back.unconsumed_requests() == 1
    assert BlkifRequest.unpack(back.get_request()) == req

    rsp = BlkifResponse(req.id, req.operation, BLKIF_RSP_OKAY)
    back.put_response(rsp.pack())
    assert front.unconsumed_responses() == 0
    back.push_responses()
    assert header(mem)[2] == 1
    slot = front.get_response()
    assert len(slot) == 112
    assert BlkifResponse.unpack(slot) == rsp
    # The union: the 16-byte response overwrote only the start of the request's slot.
    assert slot[16:] == req.pack()[16:]
    assert front.unconsumed_responses() == 0
    assert (front.req_prod_pvt, front.rsp_cons, back.req_cons, back.rsp_prod_pvt) == (1, 1, 1, 1)


def test_full_ring_pushes_back_until_responses_are_consumed() -> None:
    _, front, back = make_pair()
    for i in range(32):
        front.put_request(request(i))
    assert front.free_requests() == 0 and front.full()
    with pytest.raises(RingFull, match="32 requests await responses"):
        front.put_request(request(32))
    front.push_requests()
    assert [answer(back) for _ in range(32)] == list(range(32))
    assert back.unconsumed_requests() == 0
    assert front.full()  # responses written but not published
    back.push_responses()
    assert front.full()  # published but not consumed: the slots still hold them
    assert BlkifResponse.unpack(front.get_response()).id == 0
    assert front.free_requests() == 1
    front.put_request(request(32))  # lands in slot 0 again
    front.push_requests()
    assert back.unconsumed_requests() == 1
    assert answer(back) == 32


@pytest.mark.parametrize("start", [0, 0xFFFFFFF0, 0xFFFFFF00])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_io_lost_when_both_sides_sleep_until_notified(start: int, seed: int) -> None:
    """Both ends only run when notified (an event channel each way) and go idle through
    the final check; every request must be served and answered, in order."""
    rng = random.Random(seed)
    _, front, back = make_pair(start=start)
    total = 600
    next_id = 0
    served: list[int] = []
    received: list[int] = []
    back_pending = front_pending = False
    pushes = notifies = 0
    while len(received) < total:
        roll = rng.random()
        if roll < 0.45 and next_id < total and not front.full():
            for _ in range(rng.randint(1, 12)):
                if front.full() or next_id == total:
                    break
                front.put_request(request(next_id))
                next_id += 1
            pushes += 1
            if front.push_requests_and_check_notify():
                notifies += 1
                back_pending = True
        elif roll < 0.75 and back_pending:
            back_pending = False  # the back end's interrupt handler
            while True:
                while back.unconsumed_requests():
                    served.append(answer(back))
                if back.push_responses_and_check_notify():
                    front_pending = True
                if not back.final_check_for_requests():
                    break
        elif front_pending:
            front_pending = False  # the front end's interrupt handler
            while True:
                while front.unconsumed_responses():
                    received.append(BlkifResponse.unpack(front.get_response()).id)
                if not front.final_check_for_responses():
                    break
        elif not (back_pending or front_pending) and (next_id == total or front.full()):
            pytest.fail(f"work stranded without a notification after {len(received)} answers")
    assert served == list(range(total))
    assert received == list(range(total))
    assert 0 < notifies < pushes  # some pushes found the back end busy and did not notify
    assert front.req_prod_pvt == (start + total) & M32 == back.req_cons


def test_notify_only_when_the_consumer_event_index_is_crossed() -> None:
    mem, front, back = make_pair()
    front.put_request(request(0))
    assert front.push_requests_and_check_notify()  # req_event 1 crossed (0 -> 1)
    front.put_request(request(1))
    assert not front.push_requests_and_check_notify()  # back end still busy: event still 1
    assert not front.push_requests_and_check_notify()  # nothing new at all
    assert [answer(back) for _ in range(2)] == [0, 1]
    assert not back.final_check_for_requests()
    assert header(mem)[1] == 3  # req_event = req_cons + 1
    for i in (2, 3, 4):
        front.put_request(request(i))
    assert front.push_requests_and_check_notify()  # 2 -> 5 passes 3

    # Responses (requests 0..3 answered so far): rsp_event is 1 from init, so the first
    # push notifies and the next, before the front end re-arms, does not.
    assert [answer(back) for _ in range(2)] == [2, 3]
    assert back.push_responses_and_check_notify()  # 0 -> 4 passes rsp_event 1
    assert answer(back) == 4
    assert not back.push_responses_and_check_notify()  # 4 -> 5: front end not re-armed
    assert front.unconsumed_responses() == 5
    for _ in range(5):
        front.get_response()
    assert not front.final_check_for_responses()
    assert header(mem)[3] == 6  # rsp_event = rsp_cons + 1
    front.put_request(request(5))
    front.push_requests()
    answer(back)
    assert back.push_responses_and_check_notify()  # 5 -> 6 passes 6


def test_consumer_can_ask_to_be_woken_later_than_the_next_entry() -> None:
    """A consumer that wants a batch sets the event further ahead (netback does for rx)."""
    _, front, back = make_pair()
    back.sring.req_event = 4
    pushed = []
    for i in range(5):
        front.put_request(request(i))
        pushed.append(front.push_requests_and_check_notify())
    assert pushed == [False, False, False, True, False]


def test_indices_wrap_at_2_pow_32() -> None:
    mem, front, back = make_pair(start=0xFFFFFFF0)
    assert header(mem) == [0xFFFFFFF0, 0xFFFFFFF1, 0xFFFFFFF0, 0xFFFFFFF1]
    for i in range(32):
        front.put_request(request(i))
    assert front.full()
    assert front.push_requests_and_check_notify()  # 0xfffffff0 -> 0x10 passes 0xfffffff1
    assert header(mem)[0] == 0x10
    # RING_IDX 0xfffffff0 is slot 16 of 32: the first request sits there.
    assert BlkifRequest.unpack(mem.read(RING_MADDR + 64 + 16 * BLK, BLK)).id == 0
    assert BlkifRequest.unpack(mem.read(RING_MADDR + 64, BLK)).id == 16
    assert back.unconsumed_requests() == 32
    assert [answer(back) for _ in range(32)] == list(range(32))
    assert back.push_responses_and_check_notify()
    assert header(mem)[2] == 0x10
    assert front.unconsumed_responses() == 32
    ids = [BlkifResponse.unpack(front.get_response()).id for _ in range(32)]
    assert ids == list(range(32))
    assert not front.final_check_for_responses()
    assert header(mem)[3] == 0x11
    assert front.free_requests() == 32
    # The private indices are RING_IDX values too: they wrapped.
    assert (front.req_prod_pvt, front.rsp_cons, back.req_cons, back.rsp_prod_pvt) == (0x10,) * 4


def test_final_check_catches_a_request_published_while_going_idle() -> None:
    """The back end finds no work; before its req_event store lands, the front end pushes
    (and, seeing the stale event, does not notify).  The re-check must see the request."""
    _, front, back = make_pair(back_window=RacingWindow)
    front.put_request(request(0))
    assert front.push_requests_and_check_notify()
    assert answer(back) == 0
    notified: list[bool] = []

    def front_pushes() -> None:
        front.put_request(request(1))
        notified.append(front.push_requests_and_check_notify())

    back_map = back.sring.mem
    assert isinstance(back_map, RacingWindow)
    back_map.before_write[DOM0_GPA + 4] = front_pushes  # the req_event field
    assert back.final_check_for_requests()
    assert notified == [False]  # the front end relied on the back end's re-check
    assert answer(back) == 1


def test_final_check_for_responses_catches_a_late_response() -> None:
    mem = MachineMemory(1 << 16)
    front_map = RacingWindow(mem, DOMU_GPA, RING_MADDR)
    SharedRing.init(front_map, DOMU_GPA, BLK)
    front = FrontRing(front_map, DOMU_GPA, BLK)
    back = BackRing(Window(mem, DOM0_GPA, RING_MADDR), DOM0_GPA, BLK)
    for i in range(2):
        front.put_request(request(i))
    front.push_requests()
    answer(back)
    assert back.push_responses_and_check_notify()
    front.get_response()
    notified: list[bool] = []

    def back_responds() -> None:
        answer(back)
        notified.append(back.push_responses_and_check_notify())

    front_map.before_write[DOMU_GPA + 12] = back_responds  # the rsp_event field
    assert front.final_check_for_responses()
    assert notified == [False]
    assert BlkifResponse.unpack(front.get_response()).id == 1


def test_final_check_reports_work_already_waiting_without_touching_the_event() -> None:
    mem, front, back = make_pair()
    front.put_request(request(0))
    front.push_requests()
    answer(back)
    front.put_request(request(1))
    front.push_requests()
    assert back.final_check_for_requests()
    assert header(mem)[1] == 1  # unchanged: there was work, no need to ask for a wake-up


def test_back_end_never_consumes_more_than_the_ring_holds() -> None:
    """A hostile front end publishes req_prod far ahead of what it wrote."""
    _, front, back = make_pair()
    front.sring.req_prod = 1000
    assert back.unconsumed_requests() == 32
    for _ in range(32):
        back.get_request()
    assert back.unconsumed_requests() == 0
    assert back.request_overflow()
    with pytest.raises(RingEmpty, match="no request to consume"):
        back.get_request()
    back.put_response(BlkifResponse(0, 0, 0).pack())
    assert not back.request_overflow()
    assert back.unconsumed_requests() == 1  # one slot freed by one response


def test_front_end_refuses_more_responses_than_requests() -> None:
    _, front, back = make_pair()
    for i in range(2):
        front.put_request(request(i))
    front.push_requests()
    back.sring.rsp_prod = 5
    with pytest.raises(RingProtocolError, match="5 responses past rsp_cons 0x0, but only 2"):
        front.get_response()


def test_misuse_is_refused_with_a_reason() -> None:
    _, front, back = make_pair()
    with pytest.raises(RingEmpty, match="no unconsumed response"):
        front.get_response()
    with pytest.raises(RingEmpty, match="no request to consume"):
        back.get_request()
    with pytest.raises(RingError, match="already has its response"):
        back.put_response(BlkifResponse(0, 0, 0).pack())
    with pytest.raises(ValueError, match="113-byte entry does not fit this ring's 112-byte"):
        front.put_request(bytes(113))
    assert front.req_prod_pvt == 0  # nothing was taken


def test_netif_tx_ring_has_256_slots_of_12_bytes() -> None:
    mem, front, back = make_pair(entry_bytes=NETIF_TX_RING.entry_bytes)
    assert front.size == back.size == 256
    for i in range(256):
        front.put_request(struct.pack(">IHHHH", i, 0, 0, i, 60))
    assert front.full()
    front.push_requests()
    assert mem.read(RING_MADDR + 64 + 255 * 12, 12) == struct.pack(">IHHHH", 255, 0, 0, 255, 60)
    assert [struct.unpack(">I", back.get_request()[:4])[0] for _ in range(256)] == list(range(256))
