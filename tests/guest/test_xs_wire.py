"""The xenstore wire codec: big-endian xsd_sockmsg headers, payload conventions, request
builders and reply parsing, and refusal of short, long or garbled bytes."""

from __future__ import annotations

import random
import struct

import pytest

from framework.errors import XenstoreError, XsWireError
from framework.guest import xs_wire as xs
from framework.guest.xs_wire import Perm, XsMsg, refused
from framework.xen.public.io.xs_wire import XENSTORE_PAYLOAD_MAX, xsd_message


def test_message_numbers_are_xens() -> None:
    expected = {
        "XS_DEBUG": 0, "XS_DIRECTORY": 1, "XS_READ": 2, "XS_GET_PERMS": 3, "XS_WATCH": 4,
        "XS_UNWATCH": 5, "XS_TRANSACTION_START": 6, "XS_TRANSACTION_END": 7,
        "XS_INTRODUCE": 8, "XS_RELEASE": 9, "XS_GET_DOMAIN_PATH": 10, "XS_WRITE": 11,
        "XS_MKDIR": 12, "XS_RM": 13, "XS_SET_PERMS": 14, "XS_WATCH_EVENT": 15,
        "XS_ERROR": 16, "XS_IS_DOMAIN_INTRODUCED": 17,
    }  # fmt: skip
    assert {name: int(getattr(xs, name)) for name in expected} == expected


def test_encode_is_a_big_endian_header_then_payload() -> None:
    data = XsMsg(xs.XS_WRITE, 0x01020304, 7, b"a\0bc").encode()
    assert data[:16] == struct.pack(">IIII", 11, 0x01020304, 7, 4)
    assert data[16:] == b"a\0bc"
    # The same bytes as the header layout declared in ioabi.
    assert data == xsd_message(11, 0x01020304, 7, b"a\0bc")


def test_decode_round_trips_random_messages() -> None:
    rng = random.Random(970)
    for _ in range(200):
        n = rng.choice([0, 1, 15, 16, 17, rng.randrange(4097), XENSTORE_PAYLOAD_MAX])
        msg = XsMsg(
            rng.randrange(1 << 32), rng.randrange(1 << 32), rng.randrange(1 << 32),
            rng.randbytes(n),
        )  # fmt: skip
        data = msg.encode()
        assert len(data) == 16 + n
        assert xs.header_length(data[:16]) == len(data)
        assert XsMsg.decode(data) == msg
        assert xs.decode(data) == msg


def test_header_length_waits_for_a_whole_header() -> None:
    data = xs.write("/vm/x", "value", req_id=3).encode()
    for cut in range(16):
        assert xs.header_length(data[:cut]) is None
    assert xs.header_length(data[:16]) == len(data)
    assert xs.header_length(data + b"next message") == len(data)


def test_header_length_refuses_an_oversized_announcement() -> None:
    header = struct.pack(">IIII", 2, 1, 0, XENSTORE_PAYLOAD_MAX + 1)
    with pytest.raises(XsWireError, match="4097 payload bytes, more than XENSTORE_PAYLOAD_MAX"):
        xs.header_length(header)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "needs a 16-byte header, got 0 bytes"),
        (struct.pack(">III", 2, 1, 0), "needs a 16-byte header, got 12 bytes"),
        (struct.pack(">IIII", 2, 1, 0, 5) + b"abc", "announces 5 payload bytes, only 3 follow"),
        (struct.pack(">IIII", 2, 1, 0, 2) + b"abc", "announces 2 payload bytes, but 3 follow"),
        (struct.pack(">IIII", 2, 1, 0, 5000) + bytes(5000), "more than XENSTORE_PAYLOAD_MAX"),
    ],
)
def test_decode_refuses_short_and_garbled_data(data: bytes, match: str) -> None:
    with pytest.raises(XsWireError, match=match):
        XsMsg.decode(data)


def test_payload_limit() -> None:
    assert len(XsMsg(xs.XS_WRITE, 1, 0, bytes(XENSTORE_PAYLOAD_MAX)).encode()) == 16 + 4096
    with pytest.raises(XsWireError, match="4097 bytes exceeds XENSTORE_PAYLOAD_MAX = 4096"):
        XsMsg(xs.XS_WRITE, 1, 0, bytes(XENSTORE_PAYLOAD_MAX + 1))
    with pytest.raises(XsWireError):
        xs.write("/a", bytes(XENSTORE_PAYLOAD_MAX))  # "/a\0" pushes it over


@pytest.mark.parametrize("field", ["type", "req_id", "tx_id"])
@pytest.mark.parametrize("value", [-1, 1 << 32])
def test_header_fields_are_u32(field: str, value: int) -> None:
    args = {"type": 2, "req_id": 1, "tx_id": 0, field: value}
    with pytest.raises(XsWireError, match=f"xsd_sockmsg.{field} = {value} is not a u32"):
        XsMsg(args["type"], args["req_id"], args["tx_id"], b"")


def test_payload_must_be_bytes() -> None:
    with pytest.raises(XsWireError, match="payload must be bytes, not str"):
        XsMsg(xs.XS_READ, 1, 0, "/vm\0")  # type: ignore[arg-type]


def test_request_payloads_follow_the_protocol() -> None:
    assert xs.read("/local/domain/5/name", req_id=9, tx_id=4) == XsMsg(
        xs.XS_READ, 9, 4, b"/local/domain/5/name\0"
    )
    # The written value has no NUL of its own and may contain NULs.
    assert xs.write("device/vbd/768/state", "4").payload == b"device/vbd/768/state\x004"
    assert xs.write("/x", b"a\0b").payload == b"/x\0a\0b"
    assert xs.write("/x", b"").payload == b"/x\0"
    assert xs.mkdir("/a").type == xs.XS_MKDIR and xs.mkdir("/a").payload == b"/a\0"
    assert xs.rm("/a").type == xs.XS_RM
    assert xs.directory("/a").type == xs.XS_DIRECTORY
    assert xs.get_perms("/a").type == xs.XS_GET_PERMS
    assert xs.watch("backend", "tok1").payload == b"backend\0tok1\0"
    assert xs.unwatch("backend", b"tok1") == XsMsg(xs.XS_UNWATCH, 0, 0, b"backend\0tok1\0")
    assert xs.transaction_start(req_id=2) == XsMsg(xs.XS_TRANSACTION_START, 2, 0, b"\0")
    assert xs.transaction_end(True, tx_id=3).payload == b"T\0"
    assert xs.transaction_end(False, tx_id=3) == XsMsg(xs.XS_TRANSACTION_END, 0, 3, b"F\0")
    assert xs.get_domain_path(7).payload == b"7\0"
    assert xs.introduce(5, 0x1234, 3).payload == b"5\x004660\x003\0"
    assert xs.release(5).payload == b"5\0"
    assert xs.is_domain_introduced(5).type == xs.XS_IS_DOMAIN_INTRODUCED
    assert xs.set_perms("/a", ["n5", Perm(0, "r")]).payload == b"/a\0n5\0r0\0"


def test_request_builders_refuse_bad_input() -> None:
    with pytest.raises(XsWireError, match="contains a NUL byte"):
        xs.read("/a\0b")
    with pytest.raises(XsWireError, match="needs at least the owner's entry"):
        xs.set_perms("/a", [])
    with pytest.raises(XsWireError, match="not 0"):
        xs.transaction_end(True, tx_id=0)
    with pytest.raises(XsWireError, match="followed by a decimal domid"):
        xs.set_perms("/a", ["x"])


def test_perm_strings() -> None:
    assert Perm.parse("n0") == Perm(0, "n")
    assert Perm.parse(b"r5") == Perm(5, "r")
    assert str(Perm(65535, "b")) == "b65535"
    assert [Perm.parse(a + "1").bits for a in "nrwb"] == [
        0, xs.XS_PERM_READ, xs.XS_PERM_WRITE, xs.XS_PERM_READ | xs.XS_PERM_WRITE
    ]  # fmt: skip
    for bad in ["", "r", "5", "x5", "rr", "r-1", "r 5", "r5x", "r65536", "r٣"]:
        with pytest.raises(XsWireError):
            Perm.parse(bad)
    with pytest.raises(XsWireError, match="not a domid_t"):
        Perm(-1, "r")


def test_reply_builders() -> None:
    req = xs.read("/a", req_id=11, tx_id=2)
    assert xs.ack(req) == XsMsg(xs.XS_READ, 11, 2, b"OK\0")
    assert xs.error_reply(req, "ENOENT") == XsMsg(xs.XS_ERROR, 11, 2, b"ENOENT\0")
    assert xs.watch_event("/a/b", b"t") == XsMsg(xs.XS_WATCH_EVENT, 0, 0, b"/a/b\0t\0")
    with pytest.raises(ValueError, match="not an errno name"):
        xs.error_reply(req, "EWHATEVER")


def test_parse_replies() -> None:
    assert xs.parse_read(XsMsg(xs.XS_READ, 1, 0, b"a\0b")) == b"a\0b"
    assert xs.parse_directory(XsMsg(xs.XS_DIRECTORY, 1, 0, b"")) == []
    assert xs.parse_directory(XsMsg(xs.XS_DIRECTORY, 1, 0, b"b\0a\0")) == ["b", "a"]
    assert xs.parse_get_perms(XsMsg(xs.XS_GET_PERMS, 1, 0, b"n5\0r0\0")) == (
        Perm(5, "n"), Perm(0, "r")
    )  # fmt: skip
    assert xs.parse_transaction_start(XsMsg(xs.XS_TRANSACTION_START, 1, 0, b"12\0")) == 12
    assert xs.parse_get_domain_path(XsMsg(xs.XS_GET_DOMAIN_PATH, 1, 0, b"/x\0")) == "/x"
    assert xs.parse_is_domain_introduced(XsMsg(xs.XS_IS_DOMAIN_INTRODUCED, 1, 0, b"T\0"))
    assert not xs.parse_is_domain_introduced(XsMsg(xs.XS_IS_DOMAIN_INTRODUCED, 1, 0, b"F\0"))
    assert xs.parse_watch_event(XsMsg(xs.XS_WATCH_EVENT, 0, 0, b"/p\0tok\0")) == ("/p", b"tok")
    xs.parse_ack(XsMsg(xs.XS_WRITE, 1, 0, b"OK\0"), xs.XS_WRITE)


def test_error_replies_raise_with_the_errno_name() -> None:
    with pytest.raises(XenstoreError) as info:
        xs.parse_read(XsMsg(xs.XS_ERROR, 1, 0, b"EACCES\0"))
    assert info.value.errno_name == "EACCES"
    assert info.value.errno == 13
    with pytest.raises(XenstoreError, match="EAGAIN"):
        xs.parse_ack(XsMsg(xs.XS_ERROR, 1, 0, b"EAGAIN\0"), xs.XS_TRANSACTION_END)
    with pytest.raises(ValueError, match="not an errno name"):
        refused("EWHATEVER")


@pytest.mark.parametrize(
    ("reply", "parse", "match"),
    [
        (XsMsg(xs.XS_ERROR, 1, 0, b"NOTANERRNO\0"), xs.parse_read, "not one errno name"),
        (XsMsg(xs.XS_ERROR, 1, 0, b"ENOENT"), xs.parse_read, "does not end in NUL"),
        (XsMsg(xs.XS_WRITE, 1, 0, b"OK\0"), xs.parse_read, "reply to XS_READ, got XS_WRITE"),
        (XsMsg(xs.XS_DIRECTORY, 1, 0, b"a\0b"), xs.parse_directory, "does not end in NUL"),
        (XsMsg(xs.XS_TRANSACTION_START, 1, 0, b"x\0"), xs.parse_transaction_start, "decimal"),
        (XsMsg(xs.XS_TRANSACTION_START, 1, 0, b"0\0"), xs.parse_transaction_start, "other"),
        (XsMsg(xs.XS_TRANSACTION_START, 1, 0, b"1\x002\0"), xs.parse_transaction_start, "one"),
        (XsMsg(xs.XS_WATCH_EVENT, 0, 0, b"/p\0"), xs.parse_watch_event, "path NUL token"),
        (XsMsg(xs.XS_READ, 0, 0, b"/p\0t\0"), xs.parse_watch_event, "expected XS_WATCH_EVENT"),
        (XsMsg(xs.XS_IS_DOMAIN_INTRODUCED, 1, 0, b"Y\0"), xs.parse_is_domain_introduced, "T"),
    ],
)
def test_parsers_refuse_garbled_replies(reply: XsMsg, parse: object, match: str) -> None:
    with pytest.raises(XsWireError, match=match):
        parse(reply)  # type: ignore[operator]


def test_parse_ack_refuses_other_payloads() -> None:
    with pytest.raises(XsWireError, match="acknowledgement is b'KO"):
        xs.parse_ack(XsMsg(xs.XS_MKDIR, 1, 0, b"KO\0"), xs.XS_MKDIR)


def test_type_names() -> None:
    assert xs.type_name(2) == "XS_READ"
    assert xs.type_name(99) == "xsd_sockmsg type 99"
    assert XsMsg(99, 0, 0).name == "xsd_sockmsg type 99"
