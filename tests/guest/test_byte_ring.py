"""The console and xenstore byte rings: guest and daemon on one machine page, each through
its own mapping; wrap-around, full and empty rings, and whole xenstore messages."""

from __future__ import annotations

import struct

import pytest

from framework.errors import RingError, RingProtocolError
from framework.guest.byte_ring import ConsoleRing, XenstoreRing, XsdMessageReader
from framework.hw970.memory import MachineMemory
from framework.xen.public.io.xs_wire import XsdSockmsgType, xsd_message

PAGE_MADDR = 0x7000
GUEST_GPA = 0x3FFE000  # the console page of a 64 MiB RMA
DOM0_GPA = 1 << 34


class Window:
    """One domain's mapping of the page: guest address -> machine address."""

    def __init__(self, mem: MachineMemory, gpa: int) -> None:
        self.mem, self.gpa = mem, gpa

    def _m(self, addr: int, n: int) -> int:
        if not (self.gpa <= addr and addr + n <= self.gpa + 4096):
            raise AssertionError(f"access {addr:#x}+{n} outside the mapped page")
        return PAGE_MADDR + addr - self.gpa

    def read(self, addr: int, n: int) -> bytes:
        return self.mem.read(self._m(addr, n), n)

    def write(self, addr: int, data: bytes) -> None:
        self.mem.write(self._m(addr, len(data)), data)


#: The machine memory, the guest's view of the page and the daemon's (dom0's) view.
Consoles = tuple[MachineMemory, ConsoleRing, ConsoleRing]
Stores = tuple[MachineMemory, XenstoreRing, XenstoreRing]


def u32(mem: MachineMemory, off: int) -> int:
    return mem.read_u32(PAGE_MADDR + off)


def pattern(n: int, salt: int = 0) -> bytes:
    return bytes((i * 7 + salt) & 0xFF for i in range(n))


@pytest.fixture
def console() -> Consoles:
    mem = MachineMemory(1 << 16)
    return (
        mem,
        ConsoleRing(Window(mem, GUEST_GPA), GUEST_GPA),
        ConsoleRing(Window(mem, DOM0_GPA), DOM0_GPA),
    )


@pytest.fixture
def store() -> Stores:
    mem = MachineMemory(1 << 16)
    return (
        mem,
        XenstoreRing(Window(mem, GUEST_GPA), GUEST_GPA),
        XenstoreRing(Window(mem, DOM0_GPA), DOM0_GPA),
    )


def test_console_output_reaches_the_daemon_through_memory(console: Consoles) -> None:
    mem, guest, daemon = console
    assert guest.write_out(b"Linux version 2.6.17") == 20
    assert mem.read(PAGE_MADDR + 1024, 20) == b"Linux version 2.6.17"  # out[] at 1024
    assert (u32(mem, 3080), u32(mem, 3084)) == (0, 20)  # out_cons, out_prod
    assert daemon.out_pending() == 20
    assert daemon.read_out(5) == b"Linux"
    assert u32(mem, 3080) == 5
    assert daemon.read_out() == b" version 2.6.17"
    assert daemon.read_out() == b""
    assert guest.out_pending() == 0
    assert guest.in_pending() == 0  # the other direction is untouched


def test_console_input_reaches_the_guest(console: Consoles) -> None:
    mem, guest, daemon = console
    assert daemon.write_in(b"ls\n") == 3
    assert mem.read(PAGE_MADDR, 3) == b"ls\n"  # in[] at 0
    assert (u32(mem, 3072), u32(mem, 3076)) == (0, 3)  # in_cons, in_prod
    assert guest.read_in() == b"ls\n"
    assert u32(mem, 3072) == 3


def test_console_output_wraps_around_the_buffer_end(console: Consoles) -> None:
    mem, guest, daemon = console
    mem.write_u32(PAGE_MADDR + 3080, 2040)
    mem.write_u32(PAGE_MADDR + 3084, 2040)
    data = pattern(20)
    assert guest.write_out(data) == 20
    assert mem.read(PAGE_MADDR + 1024 + 2040, 8) == data[:8]
    assert mem.read(PAGE_MADDR + 1024, 12) == data[8:]
    assert u32(mem, 3084) == 2060  # free-running, not reduced modulo 2048
    assert daemon.read_out() == data


def test_free_running_counters_wrap_at_2_pow_32(console: Consoles) -> None:
    mem, guest, daemon = console
    for off in (3072, 3076):
        mem.write_u32(PAGE_MADDR + off, 0xFFFFFFF8)
    data = pattern(100, salt=3)
    assert daemon.write_in(data) == 100
    assert u32(mem, 3076) == 0x5C
    assert guest.in_pending() == 100
    # 0xfffffff8 & 1023 = 1016: eight bytes before the end, the rest from in[0].
    assert mem.read(PAGE_MADDR + 1016, 8) == data[:8]
    assert guest.read_in(30) + guest.read_in() == data
    assert u32(mem, 3072) == 0x5C


def test_full_console_takes_only_what_fits(console: Consoles) -> None:
    _, guest, daemon = console
    data = pattern(3000)
    assert guest.write_out(data) == 2048
    assert guest.out_pending() == 2048
    assert guest.write_out(b"more") == 0
    assert daemon.read_out(100) == data[:100]
    assert guest.write_out(data[2048:2248]) == 100
    assert daemon.read_out() == data[100:2148]
    assert daemon.read_out() == b""
    assert daemon.write_in(pattern(1500)) == 1024
    assert guest.read_in() == pattern(1500)[:1024]


def test_impossible_indices_are_reported(console: Consoles) -> None:
    mem, guest, daemon = console
    mem.write_u32(PAGE_MADDR + 3076, 1025)  # in_prod 1025 past in_cons 0, ring of 1024
    with pytest.raises(RingProtocolError, match="in ring at 0x3ffe000: prod 0x401 is 1025"):
        guest.read_in()
    with pytest.raises(RingProtocolError, match="1025 bytes past cons"):
        daemon.write_in(b"x")
    with pytest.raises(ValueError, match="cannot read -1 bytes"):
        guest.read_out(-1)


def test_take_message_waits_for_the_whole_message(store: Stores) -> None:
    mem, guest, daemon = store
    msg = xsd_message(XsdSockmsgType.XS_WRITE, 7, 0, b"device/vbd/768/state\x004")
    assert guest.request_space() == 1024
    assert guest.write_request(msg[:10]) == 10
    assert guest.request_space() == 1014
    assert daemon.take_request_message() is None  # header incomplete
    assert guest.write_request(msg[10:30]) == 20
    assert daemon.take_message("request") is None  # payload incomplete
    assert u32(mem, 2048) == 0  # req_cons: nothing consumed
    assert daemon.request_pending() == 30
    assert guest.write_request(msg[30:]) == len(msg) - 30
    assert daemon.take_message("request") == msg
    assert (u32(mem, 2048), u32(mem, 2052)) == (len(msg), len(msg))
    assert daemon.take_message("request") is None


def test_take_message_across_the_wrap_and_back_to_back(store: Stores) -> None:
    mem, guest, daemon = store
    for off in (2056, 2060):  # rsp_cons, rsp_prod near the end of rsp[]
        mem.write_u32(PAGE_MADDR + off, 1000)
    first = xsd_message(XsdSockmsgType.XS_READ, 1, 0, b"backend")
    second = xsd_message(XsdSockmsgType.XS_WATCH_EVENT, 0, 0, b"")
    assert daemon.write_response(first + second) == len(first) + len(second)
    assert mem.read(PAGE_MADDR + 1024 + 1000, 16) == first[:16]  # rsp[] at 1024
    assert daemon.response_space() == 1024 - len(first) - len(second)
    assert guest.response_pending() == len(first) + len(second)
    assert guest.take_response_message() == first
    assert guest.take_message("response") == second
    assert guest.take_message("response") is None
    assert guest.read_request() == b""  # requests untouched


def test_take_message_refuses_what_cannot_be_taken_whole(store: Stores) -> None:
    _, guest, daemon = store
    guest.write_request(struct.pack(">IIII", 11, 1, 0, 2000))
    with pytest.raises(RingError, match="2016-byte message can never be whole in the 1024"):
        daemon.take_message("request")
    assert daemon.requests.pending() == 16  # left in place
    daemon.read_request()
    guest.write_request(struct.pack(">IIII", 11, 1, 0, 5000))
    with pytest.raises(RingProtocolError, match="announces 5000 payload bytes"):
        daemon.take_message("request")
    with pytest.raises(ValueError, match="'sideways' is neither"):
        daemon.take_message("sideways")  # type: ignore[arg-type]


def test_reader_assembles_a_payload_larger_than_the_ring(store: Stores) -> None:
    _, guest, daemon = store
    big = xsd_message(XsdSockmsgType.XS_WRITE, 3, 9, pattern(4096, salt=1))
    small = xsd_message(XsdSockmsgType.XS_READ, 4, 0, b"name\0")
    stream = big + small
    reader = XsdMessageReader(daemon.requests)
    got: list[bytes] = []
    sent = 0
    rounds = 0
    while len(got) < 2:
        sent += guest.write_request(stream[sent : sent + 700])
        while (msg := reader.poll()) is not None:
            got.append(msg)
        rounds += 1
        assert rounds < 50, "reader stopped making progress"
    assert got == [big, small]
    assert reader.partial == b""
    assert rounds > 4  # it had to come through the 1024-byte ring in pieces


def test_reader_holds_a_partial_header(store: Stores) -> None:
    _, guest, daemon = store
    reader = XsdMessageReader(guest.responses)
    msg = xsd_message(XsdSockmsgType.XS_ERROR, 2, 0, b"ENOENT\0")
    daemon.write_response(msg[:5])
    assert reader.poll() is None
    assert reader.partial == msg[:5]
    daemon.write_response(msg[5:])
    assert reader.poll() == msg
