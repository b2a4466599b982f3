"""The public I/O layouts: sizes and offsets of LP64 big-endian PowerPC, and round trips."""

from __future__ import annotations

import struct

import pytest

from framework.errors import BlkifRequestError
from framework.xen.public.io.blkif import (
    BLKIF_OP_READ,
    BLKIF_OP_WRITE,
    BLKIF_REQUEST,
    BLKIF_RESPONSE,
    BLKIF_RING,
    BLKIF_RING_SIZE,
    BLKIF_RSP_EOPNOTSUPP,
    BLKIF_RSP_ERROR,
    BLKIF_SEGMENT,
    BlkifRequest,
    BlkifResponse,
    BlkifSegment,
)
from framework.xen.public.io.console import XENCONS_INTERFACE
from framework.xen.public.io.netif import (
    NETIF_RSP_DROPPED,
    NETIF_RX_REQUEST,
    NETIF_RX_RESPONSE,
    NETIF_RX_RING_SIZE,
    NETIF_TX_REQUEST,
    NETIF_TX_RESPONSE,
    NETIF_TX_RING,
    NETIF_TX_RING_SIZE,
    NetifRxRequest,
    NetifRxResponse,
    NetifTxRequest,
    NetifTxResponse,
    NETRXF_data_validated,
    NETTXF_csum_blank,
    NETTXF_more_data,
)
from framework.xen.public.io.ring import SHARED_RING_HEADER, SRING_ENTRIES_OFFSET, ring_size
from framework.xen.public.io.xenbus import XenbusState
from framework.xen.public.io.xs_wire import (
    XENSTORE_DOMAIN_INTERFACE,
    XENSTORE_PAYLOAD_MAX,
    XSD_SOCKMSG,
    XsdSockmsg,
    XsdSockmsgType,
    xsd_message,
)


def test_blkif_layout_is_lp64_natural_alignment() -> None:
    # u8 op, u8 nr_segments, u16 handle, 4 bytes of padding, u64 id @8, u64 sector @16,
    # then 11 segments of 8 bytes (u32 gref, u8, u8, 2 bytes of padding).
    assert BLKIF_REQUEST.size == 112
    assert [BLKIF_REQUEST.offset(f) for f in ("operation", "nr_segments", "handle")] == [0, 1, 2]
    assert BLKIF_REQUEST.offset("id") == 8
    assert BLKIF_REQUEST.offset("sector_number") == 16
    assert BLKIF_SEGMENT.size == 8
    assert BLKIF_REQUEST.offset("seg0_gref") == 24
    assert BLKIF_REQUEST.offset("seg1_gref") == 32
    assert BLKIF_REQUEST.offset("seg10_first_sect") == 24 + 80 + 4
    assert BLKIF_REQUEST.offset("seg10_last_sect") == 24 + 80 + 5
    assert BLKIF_RESPONSE.size == 16
    assert BLKIF_RESPONSE.fields == {"id": (0, 8), "operation": (8, 1), "status": (10, 2)}


def test_netif_console_xenstore_layouts() -> None:
    assert NETIF_TX_REQUEST.size == 12
    assert NETIF_TX_REQUEST.offset("size") == 10
    assert NETIF_TX_RESPONSE.size == 4
    assert NETIF_RX_REQUEST.size == 8
    assert NETIF_RX_REQUEST.offset("gref") == 4  # u16 id, 2 bytes of padding, u32 gref
    assert NETIF_RX_RESPONSE.size == 8
    assert NETIF_RX_RESPONSE.offset("status") == 6
    assert XENCONS_INTERFACE.offset("out") == 1024
    assert [
        XENCONS_INTERFACE.offset(f) for f in ("in_cons", "in_prod", "out_cons", "out_prod")
    ] == [3072, 3076, 3080, 3084]
    assert XENSTORE_DOMAIN_INTERFACE.offset("rsp") == 1024
    assert [
        XENSTORE_DOMAIN_INTERFACE.offset(f)
        for f in ("req_cons", "req_prod", "rsp_cons", "rsp_prod")
    ] == [2048, 2052, 2056, 2060]
    assert XSD_SOCKMSG.size == 16
    assert XENSTORE_PAYLOAD_MAX == 4096


def test_ring_sizes_follow_from_entry_sizes() -> None:
    assert SHARED_RING_HEADER.size == SRING_ENTRIES_OFFSET == 64
    assert SHARED_RING_HEADER.fields["rsp_event"] == (12, 4)
    assert BLKIF_RING.entry_bytes == 112
    assert BLKIF_RING_SIZE == 32  # (4096 - 64) / 112 = 36 -> 32
    assert NETIF_TX_RING.entry_bytes == 12
    assert NETIF_TX_RING_SIZE == 256  # 336 -> 256
    assert NETIF_RX_RING_SIZE == 256  # 504 -> 256
    assert ring_size(4032) == 1
    assert ring_size(1) == 2048
    assert ring_size(16, page=8192) == 256  # (8192 - 64) / 16 = 508


def test_ring_size_refuses_entries_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        ring_size(4033)
    with pytest.raises(ValueError, match="positive"):
        ring_size(0)


def test_blkif_request_bytes_are_big_endian_at_their_offsets() -> None:
    req = BlkifRequest(
        BLKIF_OP_WRITE,
        handle=0x0301,
        id=0x1122334455667788,
        sector_number=0x0102030405,
        segments=(BlkifSegment(0xABCD, 0, 7), BlkifSegment(0x10, 2, 3)),
    )
    data = req.pack()
    expected = struct.pack(">BBH4xQQ", 1, 2, 0x0301, 0x1122334455667788, 0x0102030405)
    expected += struct.pack(">IBB2x", 0xABCD, 0, 7) + struct.pack(">IBB2x", 0x10, 2, 3)
    expected += bytes(112 - len(expected))
    assert data == expected
    back = BlkifRequest.unpack(data)
    assert back == req
    assert [s.nr_sects for s in back.segments] == [8, 2]


def test_blkif_request_round_trip_with_all_segments() -> None:
    segs = tuple(BlkifSegment(1000 + i, i % 8, 7) for i in range(11))
    req = BlkifRequest(BLKIF_OP_READ, 0, 42, 2**63, segs)
    assert BlkifRequest.unpack(req.pack()) == req
    # A whole ring slot (here: the request followed by junk) decodes the same.
    assert BlkifRequest.unpack(req.pack() + b"\xff" * 8) == req


def test_blkif_request_pack_refuses_bad_requests() -> None:
    with pytest.raises(ValueError, match="12 segments"):
        BlkifRequest(0, 0, 1, 0, tuple(BlkifSegment(1, 0, 0) for _ in range(12))).pack()
    with pytest.raises(ValueError, match="segment 0: sectors 3..2"):
        BlkifRequest(0, 0, 1, 0, (BlkifSegment(1, 3, 2),)).pack()
    with pytest.raises(ValueError, match="segment 0: sectors 0..8"):
        BlkifRequest(0, 0, 1, 0, (BlkifSegment(1, 0, 8),)).pack()
    with pytest.raises(ValueError, match="handle = 65536"):
        BlkifRequest(0, 0x10000, 1, 0).pack()


def test_blkif_request_unpack_names_the_request_it_refuses() -> None:
    bad = bytearray(BlkifRequest(BLKIF_OP_READ, 0, 77, 0, (BlkifSegment(5, 0, 7),)).pack())
    bad[BLKIF_REQUEST.offset("nr_segments")] = 12
    with pytest.raises(BlkifRequestError, match="request 77 claims 12 segments") as exc:
        BlkifRequest.unpack(bytes(bad))
    assert (exc.value.request_id, exc.value.operation) == (77, BLKIF_OP_READ)
    bad[BLKIF_REQUEST.offset("nr_segments")] = 1
    bad[BLKIF_REQUEST.offset("seg0_first_sect")] = 6
    bad[BLKIF_REQUEST.offset("seg0_last_sect")] = 5
    with pytest.raises(BlkifRequestError, match="segment 0"):
        BlkifRequest.unpack(bytes(bad))
    with pytest.raises(ValueError, match="needs 112 bytes"):
        BlkifRequest.unpack(bytes(16))


def test_blkif_response_status_is_signed() -> None:
    for status in (0, BLKIF_RSP_ERROR, BLKIF_RSP_EOPNOTSUPP):
        rsp = BlkifResponse(0xDEADBEEF, BLKIF_OP_WRITE, status)
        data = rsp.pack()
        assert len(data) == 16
        assert data[10:12] == struct.pack(">h", status)
        assert BlkifResponse.unpack(data) == rsp
    with pytest.raises(ValueError, match="signed"):
        BlkifResponse(1, 0, 40000).pack()


def test_netif_round_trips() -> None:
    tx = NetifTxRequest(
        gref=7, offset=128, flags=NETTXF_csum_blank | NETTXF_more_data, id=3, size=1514
    )
    assert tx.pack() == struct.pack(">IHHHH", 7, 128, 5, 3, 1514)
    assert NetifTxRequest.unpack(tx.pack()) == tx
    txr = NetifTxResponse(3, NETIF_RSP_DROPPED)
    assert txr.pack() == struct.pack(">Hh", 3, -2)
    assert NetifTxResponse.unpack(txr.pack()) == txr
    rx = NetifRxRequest(id=9, gref=0x12345678)
    assert rx.pack() == struct.pack(">H2xI", 9, 0x12345678)
    assert NetifRxRequest.unpack(rx.pack()) == rx
    rxr = NetifRxResponse(9, 14, NETRXF_data_validated, 1500)
    assert rxr.pack() == struct.pack(">HHHh", 9, 14, 1, 1500)
    assert NetifRxResponse.unpack(rxr.pack()) == rxr
    assert NetifRxResponse.unpack(NetifRxResponse(9, 0, 0, -1).pack()).status == -1
    with pytest.raises(ValueError, match="netif_tx_request.size = 70000"):
        NetifTxRequest(1, 0, 0, 1, 70000).pack()
    with pytest.raises(ValueError, match="needs 8 bytes"):
        NetifRxResponse.unpack(bytes(4))


def test_xsd_message_and_header() -> None:
    msg = xsd_message(XsdSockmsgType.XS_READ, 5, 0, b"device/vbd\0")
    assert msg[:16] == struct.pack(">IIII", 2, 5, 0, 11)
    assert XsdSockmsg.unpack(msg) == XsdSockmsg(2, 5, 0, 11)
    assert len(xsd_message(XsdSockmsgType.XS_WRITE, 1, 0, bytes(4096))) == 16 + 4096
    with pytest.raises(ValueError, match="4097 bytes exceeds XENSTORE_PAYLOAD_MAX"):
        xsd_message(XsdSockmsgType.XS_WRITE, 1, 0, bytes(4097))


def test_enums_have_the_header_values() -> None:
    assert [s.value for s in XenbusState] == list(range(7))
    assert XenbusState.Connected == 4
    assert XsdSockmsgType.XS_WRITE == 11
    assert XsdSockmsgType.XS_WATCH_EVENT == 15
    assert XsdSockmsgType.XS_ERROR == 16
