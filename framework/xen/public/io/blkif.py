"""`blkif.h`: block requests and responses on the blkif ring, up to 11 segments of a page."""

from __future__ import annotations

from typing import Final, NamedTuple

from framework.errors import BlkifRequestError
from framework.hw970.memory import PAGE_SIZE
from framework.xen.public.io.ring import RingType
from framework.xen.public.layout import Layout, fits, signed16

BLKIF_OP_READ: Final = 0
BLKIF_OP_WRITE: Final = 1
BLKIF_OP_WRITE_BARRIER: Final = 2
BLKIF_OP_FLUSH_DISKCACHE: Final = 3
BLKIF_MAX_SEGMENTS_PER_REQUEST: Final = 11
BLKIF_RSP_EOPNOTSUPP: Final = -2
BLKIF_RSP_ERROR: Final = -1
BLKIF_RSP_OKAY: Final = 0
#: The `virtual-device` number of a vbd named xvdX, as Xen's vbd interface
#: (docs/misc/vbd-interface.txt) takes Linux's: major 202, 16 minors per disk.
XVD_MAJOR: Final = 202


def vbd_devid(name: str) -> int:
    """The device number of xvda..xvdz (whole disks)."""
    if len(name) != 4 or not name.startswith("xvd") or not "a" <= name[3] <= "z":
        raise ValueError(f"vbd name {name!r} is not xvda..xvdz")
    return (XVD_MAJOR << 8) | ((ord(name[3]) - ord("a")) << 4)


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
            "operation": fits(L, "operation", self.operation),
            "nr_segments": len(self.segments),
            "handle": fits(L, "handle", self.handle),
            "id": fits(L, "id", self.id),
            "sector_number": fits(L, "sector_number", self.sector_number),
        }
        for i, raw in enumerate(self.segments):
            seg = BlkifSegment(*raw)
            problem = _segment_problem(seg)
            if problem:
                raise ValueError(f"blkif request {self.id} segment {i}: {problem}")
            fields[f"seg{i}_gref"] = fits(L, f"seg{i}_gref", seg.gref)
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
            id=fits(L, "id", self.id),
            operation=fits(L, "operation", self.operation),
            status=fits(L, "status", self.status, signed=True),
        )

    @classmethod
    def unpack(cls, data: bytes) -> BlkifResponse:
        if len(data) < BLKIF_RESPONSE.size:
            raise ValueError(f"blkif_response needs {BLKIF_RESPONSE.size} bytes, got {len(data)}")
        v = BLKIF_RESPONSE.unpack(data)
        return cls(v["id"], v["operation"], signed16(v["status"]))
