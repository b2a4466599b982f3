"""`netif.h`: the netif tx and rx rings' requests, responses and flags."""

from __future__ import annotations

from typing import Final, NamedTuple

from framework.xen.public.io.ring import RingType
from framework.xen.public.layout import Layout, fits, signed16, unpack_exact

NETTXF_csum_blank: Final = 1 << 0
NETTXF_data_validated: Final = 1 << 1
NETTXF_more_data: Final = 1 << 2
NETRXF_data_validated: Final = 1 << 0
NETRXF_csum_blank: Final = 1 << 1
NETRXF_more_data: Final = 1 << 2
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
            gref=fits(L, "gref", self.gref),
            offset=fits(L, "offset", self.offset),
            flags=fits(L, "flags", self.flags),
            id=fits(L, "id", self.id),
            size=fits(L, "size", self.size),
        )

    @classmethod
    def unpack(cls, data: bytes) -> NetifTxRequest:
        v = unpack_exact(NETIF_TX_REQUEST, data)
        return cls(v["gref"], v["offset"], v["flags"], v["id"], v["size"])


class NetifTxResponse(NamedTuple):
    """The result of a transmit request (status: NETIF_RSP_*)."""

    id: int
    status: int

    def pack(self) -> bytes:
        L = NETIF_TX_RESPONSE
        return L.pack(id=fits(L, "id", self.id), status=fits(L, "status", self.status, True))

    @classmethod
    def unpack(cls, data: bytes) -> NetifTxResponse:
        v = unpack_exact(NETIF_TX_RESPONSE, data)
        return cls(v["id"], signed16(v["status"]))


class NetifRxRequest(NamedTuple):
    """An empty granted page offered for one received packet."""

    id: int
    gref: int

    def pack(self) -> bytes:
        L = NETIF_RX_REQUEST
        return L.pack(id=fits(L, "id", self.id), gref=fits(L, "gref", self.gref))

    @classmethod
    def unpack(cls, data: bytes) -> NetifRxRequest:
        v = unpack_exact(NETIF_RX_REQUEST, data)
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
            id=fits(L, "id", self.id),
            offset=fits(L, "offset", self.offset),
            flags=fits(L, "flags", self.flags),
            status=fits(L, "status", self.status, signed=True),
        )

    @classmethod
    def unpack(cls, data: bytes) -> NetifRxResponse:
        v = unpack_exact(NETIF_RX_RESPONSE, data)
        return cls(v["id"], v["offset"], v["flags"], signed16(v["status"]))
