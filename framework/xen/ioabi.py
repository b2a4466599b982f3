"""The public I/O interfaces shared by front ends, back ends and daemons: the shared ring
header, blkif and netif entries, the console and xenstore pages, and XenbusState.

Values and layouts from Xen 3.0.4's `public/io/` headers (`ring.h`, `blkif.h`, `netif.h`,
`console.h`, `xs_wire.h`, `xenbus.h`).  Offsets and sizes are those a 64-bit big-endian
(LP64, naturally aligned) PowerPC compiler gives; each structure is declared once here as
an `abi.Layout`, and the ring sizes are derived from the entry sizes, as `__RING_SIZE` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final, NamedTuple

from framework.errors import BlkifRequestError
from framework.xen.abi import Layout

PAGE_SIZE: Final = 4096

# --- io/ring.h -----------------------------------------------------------------------
#: RING_IDX is an unsigned 32-bit counter that runs freely and wraps at 2**32.
RING_IDX_MASK: Final = 0xFFFFFFFF

#: The 3.0-era `struct *_sring` header: four RING_IDX then `uint8_t pad[48]`, so the
#: entry array starts at byte 64 of the shared page.
SHARED_RING_HEADER: Final = Layout(
    "sring",
    64,
    {"req_prod": (0, 4), "req_event": (4, 4), "rsp_prod": (8, 4), "rsp_event": (12, 4)},
)
SRING_ENTRIES_OFFSET: Final = SHARED_RING_HEADER.size


def ring_size(entry_bytes: int, page: int = PAGE_SIZE) -> int:
    """Entries in a shared ring of `page` bytes (`__RING_SIZE`): the largest power of two
    that fits in the page after the 64-byte header."""
    if entry_bytes <= 0:
        raise ValueError(f"ring entry size {entry_bytes} must be positive")
    fits = (page - SRING_ENTRIES_OFFSET) // entry_bytes
    if fits < 1:
        raise ValueError(
            f"a {entry_bytes}-byte ring entry does not fit in a {page}-byte page after the "
            f"{SRING_ENTRIES_OFFSET}-byte shared ring header"
        )
    return 1 << (fits.bit_length() - 1)


@dataclass(frozen=True)
class RingType:
    """What DEFINE_RING_TYPES declares: a request and a response sharing one slot array
    (a union), so a slot is as large as the larger of the two."""

    name: str
    request: Layout
    response: Layout

    @property
    def entry_bytes(self) -> int:
        return max(self.request.size, self.response.size)

    def size(self, page: int = PAGE_SIZE) -> int:
        """Entries in a ring of this type on a `page`-byte shared page."""
        return ring_size(self.entry_bytes, page)


def _fits(layout: Layout, name: str, value: int, signed: bool = False) -> int:
    """Refuse a value its field cannot hold (Layout.pack would silently truncate it)."""
    bits = 8 * layout.fields[name][1]
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if not lo <= value <= hi:
        raise ValueError(
            f"{layout.name}.{name} = {value} does not fit its {bits}-bit "
            f"{'signed' if signed else 'unsigned'} field"
        )
    return value


def _s16(value: int) -> int:
    """A 16-bit field read as int16_t."""
    return value - 0x10000 if value & 0x8000 else value


# --- io/blkif.h ----------------------------------------------------------------------
BLKIF_OP_READ: Final = 0
BLKIF_OP_WRITE: Final = 1
BLKIF_OP_WRITE_BARRIER: Final = 2
BLKIF_OP_FLUSH_DISKCACHE: Final = 3
BLKIF_MAX_SEGMENTS_PER_REQUEST: Final = 11
BLKIF_RSP_EOPNOTSUPP: Final = -2
BLKIF_RSP_ERROR: Final = -1
BLKIF_RSP_OKAY: Final = 0
#: A segment names 512-byte sectors first_sect..last_sect of one granted 4 KiB page.
BLKIF_SECTOR_SIZE: Final = 512
BLKIF_SECTORS_PER_PAGE: Final = PAGE_SIZE // BLKIF_SECTOR_SIZE

#: struct blkif_request_segment: u32 gref, u8 first_sect, u8 last_sect, 2 bytes of padding.
BLKIF_SEGMENT: Final = Layout(
    "blkif_request_segment", 8, {"gref": (0, 4), "first_sect": (4, 1), "last_sect": (5, 1)}
)
BLKIF_SEG_OFFSET: Final = 24
#: struct blkif_request; its seg[] array appears as seg{i}_gref / _first_sect / _last_sect.
BLKIF_REQUEST: Final = Layout(
    "blkif_request",
    BLKIF_SEG_OFFSET + BLKIF_MAX_SEGMENTS_PER_REQUEST * BLKIF_SEGMENT.size,
    {
        "operation": (0, 1),
        "nr_segments": (1, 1),
        "handle": (2, 2),
        "id": (8, 8),
        "sector_number": (16, 8),
        **{
            f"seg{i}_{name}": (BLKIF_SEG_OFFSET + i * BLKIF_SEGMENT.size + off, width)
            for i in range(BLKIF_MAX_SEGMENTS_PER_REQUEST)
            for name, (off, width) in BLKIF_SEGMENT.fields.items()
        },
    },
)
#: struct blkif_response: u64 id, u8 operation, i16 status (aligned to 10), padded to 16.
BLKIF_RESPONSE: Final = Layout(
    "blkif_response", 16, {"id": (0, 8), "operation": (8, 1), "status": (10, 2)}
)
BLKIF_RING: Final = RingType("blkif", BLKIF_REQUEST, BLKIF_RESPONSE)
BLKIF_RING_SIZE: Final = BLKIF_RING.size()


class BlkifSegment(NamedTuple):
    """One granted page of a request: sectors first_sect..last_sect (inclusive) of it."""

    gref: int
    first_sect: int
    last_sect: int

    @property
    def nr_sects(self) -> int:
        return self.last_sect - self.first_sect + 1


def _segment_problem(seg: BlkifSegment) -> str | None:
    if not 0 <= seg.first_sect <= seg.last_sect < BLKIF_SECTORS_PER_PAGE:
        return (
            f"sectors {seg.first_sect}..{seg.last_sect} of grant {seg.gref} are not an "
            f"ascending range within the page's {BLKIF_SECTORS_PER_PAGE} sectors"
        )
    return None


class BlkifRequest(NamedTuple):
    """A decoded blkif_request; `segments` holds its nr_segments segments in order."""

    operation: int
    handle: int
    id: int
    sector_number: int
    segments: tuple[BlkifSegment, ...] = ()

    def pack(self) -> bytes:
        """The request's 112 bytes; refuses too many segments or bad sector ranges."""
        if len(self.segments) > BLKIF_MAX_SEGMENTS_PER_REQUEST:
            raise ValueError(
                f"blkif request {self.id} has {len(self.segments)} segments; at most "
                f"BLKIF_MAX_SEGMENTS_PER_REQUEST = {BLKIF_MAX_SEGMENTS_PER_REQUEST} fit"
            )
        L = BLKIF_REQUEST
        fields = {
            "operation": _fits(L, "operation", self.operation),
            "nr_segments": len(self.segments),
            "handle": _fits(L, "handle", self.handle),
            "id": _fits(L, "id", self.id),
            "sector_number": _fits(L, "sector_number", self.sector_number),
        }
        for i, raw in enumerate(self.segments):
            seg = BlkifSegment(*raw)
            problem = _segment_problem(seg)
            if problem:
                raise ValueError(f"blkif request {self.id} segment {i}: {problem}")
            fields[f"seg{i}_gref"] = _fits(L, f"seg{i}_gref", seg.gref)
            fields[f"seg{i}_first_sect"] = seg.first_sect
            fields[f"seg{i}_last_sect"] = seg.last_sect
        return L.pack(**fields)

    @classmethod
    def unpack(cls, data: bytes) -> BlkifRequest:
        """Decode a request as a back end reads it from the ring; a malformed one raises
        BlkifRequestError (unknown operations are decoded: answering them is policy)."""
        if len(data) < BLKIF_REQUEST.size:
            raise ValueError(f"blkif_request needs {BLKIF_REQUEST.size} bytes, got {len(data)}")
        v = BLKIF_REQUEST.unpack(data)
        n = v["nr_segments"]
        if n > BLKIF_MAX_SEGMENTS_PER_REQUEST:
            raise BlkifRequestError(
                f"blkif request {v['id']} claims {n} segments; at most "
                f"{BLKIF_MAX_SEGMENTS_PER_REQUEST} exist",
                v["id"],
                v["operation"],
            )
        segments = tuple(
            BlkifSegment(v[f"seg{i}_gref"], v[f"seg{i}_first_sect"], v[f"seg{i}_last_sect"])
            for i in range(n)
        )
        for i, seg in enumerate(segments):
            problem = _segment_problem(seg)
            if problem:
                raise BlkifRequestError(
                    f"blkif request {v['id']} segment {i}: {problem}", v["id"], v["operation"]
                )
        return cls(v["operation"], v["handle"], v["id"], v["sector_number"], segments)


class BlkifResponse(NamedTuple):
    """A decoded blkif_response (status is signed: BLKIF_RSP_*)."""

    id: int
    operation: int
    status: int

    def pack(self) -> bytes:
        L = BLKIF_RESPONSE
        return L.pack(
            id=_fits(L, "id", self.id),
            operation=_fits(L, "operation", self.operation),
            status=_fits(L, "status", self.status, signed=True),
        )

    @classmethod
    def unpack(cls, data: bytes) -> BlkifResponse:
        if len(data) < BLKIF_RESPONSE.size:
            raise ValueError(f"blkif_response needs {BLKIF_RESPONSE.size} bytes, got {len(data)}")
        v = BLKIF_RESPONSE.unpack(data)
        return cls(v["id"], v["operation"], _s16(v["status"]))


# --- io/netif.h ----------------------------------------------------------------------
NETTXF_csum_blank = 1 << 0
NETTXF_data_validated = 1 << 1
NETTXF_more_data = 1 << 2
NETRXF_data_validated = 1 << 0
NETRXF_csum_blank = 1 << 1
NETRXF_more_data = 1 << 2
NETIF_RSP_DROPPED: Final = -2
NETIF_RSP_ERROR: Final = -1
NETIF_RSP_OKAY: Final = 0
#: Never sent by a back end to mean a result; fills a response slot that carries none.
NETIF_RSP_NULL: Final = 1

NETIF_TX_REQUEST: Final = Layout(
    "netif_tx_request",
    12,
    {"gref": (0, 4), "offset": (4, 2), "flags": (6, 2), "id": (8, 2), "size": (10, 2)},
)
NETIF_TX_RESPONSE: Final = Layout("netif_tx_response", 4, {"id": (0, 2), "status": (2, 2)})
NETIF_RX_REQUEST: Final = Layout("netif_rx_request", 8, {"id": (0, 2), "gref": (4, 4)})
NETIF_RX_RESPONSE: Final = Layout(
    "netif_rx_response", 8, {"id": (0, 2), "offset": (2, 2), "flags": (4, 2), "status": (6, 2)}
)
NETIF_TX_RING: Final = RingType("netif_tx", NETIF_TX_REQUEST, NETIF_TX_RESPONSE)
NETIF_RX_RING: Final = RingType("netif_rx", NETIF_RX_REQUEST, NETIF_RX_RESPONSE)
NETIF_TX_RING_SIZE: Final = NETIF_TX_RING.size()
NETIF_RX_RING_SIZE: Final = NETIF_RX_RING.size()


class NetifTxRequest(NamedTuple):
    """A packet (or, with NETTXF_more_data, its first fragment) in a granted page."""

    gref: int
    offset: int
    flags: int
    id: int
    size: int

    def pack(self) -> bytes:
        L = NETIF_TX_REQUEST
        return L.pack(
            gref=_fits(L, "gref", self.gref),
            offset=_fits(L, "offset", self.offset),
            flags=_fits(L, "flags", self.flags),
            id=_fits(L, "id", self.id),
            size=_fits(L, "size", self.size),
        )

    @classmethod
    def unpack(cls, data: bytes) -> NetifTxRequest:
        v = _unpack(NETIF_TX_REQUEST, data)
        return cls(v["gref"], v["offset"], v["flags"], v["id"], v["size"])


class NetifTxResponse(NamedTuple):
    """The result of a transmit request (status: NETIF_RSP_*)."""

    id: int
    status: int

    def pack(self) -> bytes:
        L = NETIF_TX_RESPONSE
        return L.pack(id=_fits(L, "id", self.id), status=_fits(L, "status", self.status, True))

    @classmethod
    def unpack(cls, data: bytes) -> NetifTxResponse:
        v = _unpack(NETIF_TX_RESPONSE, data)
        return cls(v["id"], _s16(v["status"]))


class NetifRxRequest(NamedTuple):
    """An empty granted page offered for one received packet."""

    id: int
    gref: int

    def pack(self) -> bytes:
        L = NETIF_RX_REQUEST
        return L.pack(id=_fits(L, "id", self.id), gref=_fits(L, "gref", self.gref))

    @classmethod
    def unpack(cls, data: bytes) -> NetifRxRequest:
        v = _unpack(NETIF_RX_REQUEST, data)
        return cls(v["id"], v["gref"])


class NetifRxResponse(NamedTuple):
    """A received packet: status > 0 is its length in bytes at `offset`, < 0 an error."""

    id: int
    offset: int
    flags: int
    status: int

    def pack(self) -> bytes:
        L = NETIF_RX_RESPONSE
        return L.pack(
            id=_fits(L, "id", self.id),
            offset=_fits(L, "offset", self.offset),
            flags=_fits(L, "flags", self.flags),
            status=_fits(L, "status", self.status, signed=True),
        )

    @classmethod
    def unpack(cls, data: bytes) -> NetifRxResponse:
        v = _unpack(NETIF_RX_RESPONSE, data)
        return cls(v["id"], v["offset"], v["flags"], _s16(v["status"]))


def _unpack(layout: Layout, data: bytes) -> dict[str, int]:
    if len(data) < layout.size:
        raise ValueError(f"{layout.name} needs {layout.size} bytes, got {len(data)}")
    return layout.unpack(data)


# --- io/console.h --------------------------------------------------------------------
XENCONS_IN_SIZE: Final = 1024
XENCONS_OUT_SIZE: Final = 2048
#: struct xencons_interface: char in[1024]; char out[2048]; then the four u32 indices.
XENCONS_INTERFACE: Final = Layout(
    "xencons_interface",
    XENCONS_IN_SIZE + XENCONS_OUT_SIZE + 16,
    {
        "in": (0, XENCONS_IN_SIZE),
        "out": (XENCONS_IN_SIZE, XENCONS_OUT_SIZE),
        "in_cons": (3072, 4),
        "in_prod": (3076, 4),
        "out_cons": (3080, 4),
        "out_prod": (3084, 4),
    },
)

# --- io/xs_wire.h --------------------------------------------------------------------
XENSTORE_RING_SIZE: Final = 1024
XENSTORE_PAYLOAD_MAX: Final = 4096
#: struct xenstore_domain_interface: req[1024], rsp[1024], then the four u32 indices.
XENSTORE_DOMAIN_INTERFACE: Final = Layout(
    "xenstore_domain_interface",
    2 * XENSTORE_RING_SIZE + 16,
    {
        "req": (0, XENSTORE_RING_SIZE),
        "rsp": (XENSTORE_RING_SIZE, XENSTORE_RING_SIZE),
        "req_cons": (2048, 4),
        "req_prod": (2052, 4),
        "rsp_cons": (2056, 4),
        "rsp_prod": (2060, 4),
    },
)
#: struct xsd_sockmsg: the header in front of every xenstore message's payload.
XSD_SOCKMSG: Final = Layout(
    "xsd_sockmsg", 16, {"type": (0, 4), "req_id": (4, 4), "tx_id": (8, 4), "len": (12, 4)}
)


class XsdSockmsgType(IntEnum):
    """enum xsd_sockmsg_type of Xen 3.0.4 (XS_RESUME is its newest member)."""

    XS_DEBUG = 0
    XS_DIRECTORY = 1
    XS_READ = 2
    XS_GET_PERMS = 3
    XS_WATCH = 4
    XS_UNWATCH = 5
    XS_TRANSACTION_START = 6
    XS_TRANSACTION_END = 7
    XS_INTRODUCE = 8
    XS_RELEASE = 9
    XS_GET_DOMAIN_PATH = 10
    XS_WRITE = 11
    XS_MKDIR = 12
    XS_RM = 13
    XS_SET_PERMS = 14
    XS_WATCH_EVENT = 15
    XS_ERROR = 16
    XS_IS_DOMAIN_INTRODUCED = 17
    XS_RESUME = 18


class XsdSockmsg(NamedTuple):
    """A decoded xsd_sockmsg header; `len` payload bytes follow it."""

    type: int
    req_id: int
    tx_id: int
    len: int

    def pack(self) -> bytes:
        L = XSD_SOCKMSG
        return L.pack(**{k: _fits(L, k, v) for k, v in self._asdict().items()})

    @classmethod
    def unpack(cls, data: bytes) -> XsdSockmsg:
        return cls(**_unpack(XSD_SOCKMSG, data))


def xsd_message(msg_type: int, req_id: int, tx_id: int, payload: bytes) -> bytes:
    """A whole xenstore message: header then payload (at most XENSTORE_PAYLOAD_MAX bytes)."""
    if len(payload) > XENSTORE_PAYLOAD_MAX:
        raise ValueError(
            f"xenstore payload of {len(payload)} bytes exceeds XENSTORE_PAYLOAD_MAX = "
            f"{XENSTORE_PAYLOAD_MAX}"
        )
    return XsdSockmsg(msg_type, req_id, tx_id, len(payload)).pack() + payload


# --- io/xenbus.h ---------------------------------------------------------------------
class XenbusState(IntEnum):
    """The state a front or back end publishes in xenstore as it connects and closes."""

    Unknown = 0
    Initialising = 1
    InitWait = 2
    Initialised = 3
    Connected = 4
    Closing = 5
    Closed = 6


__all__ = [
    "BLKIF_MAX_SEGMENTS_PER_REQUEST",
    "BLKIF_OP_FLUSH_DISKCACHE",
    "BLKIF_OP_READ",
    "BLKIF_OP_WRITE",
    "BLKIF_OP_WRITE_BARRIER",
    "BLKIF_REQUEST",
    "BLKIF_RESPONSE",
    "BLKIF_RING",
    "BLKIF_RING_SIZE",
    "BLKIF_RSP_EOPNOTSUPP",
    "BLKIF_RSP_ERROR",
    "BLKIF_RSP_OKAY",
    "BLKIF_SECTORS_PER_PAGE",
    "BLKIF_SECTOR_SIZE",
    "BLKIF_SEGMENT",
    "BLKIF_SEG_OFFSET",
    "NETIF_RSP_DROPPED",
    "NETIF_RSP_ERROR",
    "NETIF_RSP_NULL",
    "NETIF_RSP_OKAY",
    "NETIF_RX_REQUEST",
    "NETIF_RX_RESPONSE",
    "NETIF_RX_RING",
    "NETIF_RX_RING_SIZE",
    "NETIF_TX_REQUEST",
    "NETIF_TX_RESPONSE",
    "NETIF_TX_RING",
    "NETIF_TX_RING_SIZE",
    "PAGE_SIZE",
    "RING_IDX_MASK",
    "SHARED_RING_HEADER",
    "SRING_ENTRIES_OFFSET",
    "XENCONS_INTERFACE",
    "XENCONS_IN_SIZE",
    "XENCONS_OUT_SIZE",
    "XENSTORE_DOMAIN_INTERFACE",
    "XENSTORE_PAYLOAD_MAX",
    "XENSTORE_RING_SIZE",
    "XSD_SOCKMSG",
    "BlkifRequest",
    "BlkifResponse",
    "BlkifSegment",
    "NETRXF_csum_blank",
    "NETRXF_data_validated",
    "NETRXF_more_data",
    "NETTXF_csum_blank",
    "NETTXF_data_validated",
    "NETTXF_more_data",
    "NetifRxRequest",
    "NetifRxResponse",
    "NetifTxRequest",
    "NetifTxResponse",
    "RingType",
    "XenbusState",
    "XsdSockmsg",
    "XsdSockmsgType",
    "ring_size",
    "xsd_message",
]
