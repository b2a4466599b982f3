"""`xs_wire.h`: the xenstore page's rings and the messages that travel on them."""

from __future__ import annotations

from enum import IntEnum
from typing import Final, NamedTuple

from framework.xen.public.errno import (
    E2BIG,
    EACCES,
    EAGAIN,
    EBUSY,
    EEXIST,
    EINVAL,
    EIO,
    EISCONN,
    EISDIR,
    ENOENT,
    ENOMEM,
    ENOSPC,
    ENOSYS,
    ENOTEMPTY,
    EPERM,
    EROFS,
)
from framework.xen.public.layout import Layout, fits, unpack_exact

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
        return L.pack(**{k: fits(L, k, v) for k, v in self._asdict().items()})

    @classmethod
    def unpack(cls, data: bytes) -> XsdSockmsg:
        return cls(**unpack_exact(XSD_SOCKMSG, data))


def xsd_message(msg_type: int, req_id: int, tx_id: int, payload: bytes) -> bytes:
    """A whole xenstore message: header then payload (at most XENSTORE_PAYLOAD_MAX bytes)."""
    if len(payload) > XENSTORE_PAYLOAD_MAX:
        raise ValueError(
            f"xenstore payload of {len(payload)} bytes exceeds XENSTORE_PAYLOAD_MAX = "
            f"{XENSTORE_PAYLOAD_MAX}"
        )
    return XsdSockmsg(msg_type, req_id, tx_id, len(payload)).pack() + payload


#: The errno names xenstored sends in XS_ERROR (xs_wire.h's xsd_errors; E2BIG and EPERM
#: are the later daemon's additions), with the numbers a client maps them to.
XSD_ERRORS: Final[dict[str, int]] = {
    "EINVAL": EINVAL,
    "EACCES": EACCES,
    "EEXIST": EEXIST,
    "EISDIR": EISDIR,
    "ENOENT": ENOENT,
    "ENOMEM": ENOMEM,
    "ENOSPC": ENOSPC,
    "EIO": EIO,
    "ENOTEMPTY": ENOTEMPTY,
    "ENOSYS": ENOSYS,
    "EROFS": EROFS,
    "EBUSY": EBUSY,
    "EAGAIN": EAGAIN,
    "EISCONN": EISCONN,
    "E2BIG": E2BIG,
    "EPERM": EPERM,
}
