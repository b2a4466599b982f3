"""The xenstore wire protocol (`io/xs_wire.h`): messages, payload conventions, permission
strings, and the requests and reply parsing a client needs.

A message is an `xsd_sockmsg` header {u32 type, u32 req_id, u32 tx_id, u32 len} in the
machine's native byte order (big-endian on the 970), then `len` payload bytes, at most
XENSTORE_PAYLOAD_MAX.  Payload conventions, as xenstored and Linux's xenbus use them:
strings end in NUL; XS_WRITE carries path NUL value (the value has no NUL of its own);
XS_READ replies with the bare value; XS_DIRECTORY and XS_GET_PERMS reply with one
NUL-terminated string per entry; XS_ERROR carries an errno name ("ENOENT\\0"); a watch event
carries path NUL token NUL; XS_TRANSACTION_START replies with the id in decimal.

The header layout is declared once in `framework.xen.public.io.xs_wire` (XSD_SOCKMSG); this module adds
the protocol on top of it, with no dependency on rings or memory: bytes in, bytes out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from framework.errors import XenstoreError, XsWireError
from framework.xen.public.io.xs_wire import (
    XENSTORE_PAYLOAD_MAX,
    XSD_ERRORS,
    XSD_SOCKMSG,
    XsdSockmsg,
    XsdSockmsgType,
)

# --- message types (enum xsd_sockmsg_type) -------------------------------------------
XS_DEBUG: Final = XsdSockmsgType.XS_DEBUG
XS_DIRECTORY: Final = XsdSockmsgType.XS_DIRECTORY
XS_READ: Final = XsdSockmsgType.XS_READ
XS_GET_PERMS: Final = XsdSockmsgType.XS_GET_PERMS
XS_WATCH: Final = XsdSockmsgType.XS_WATCH
XS_UNWATCH: Final = XsdSockmsgType.XS_UNWATCH
XS_TRANSACTION_START: Final = XsdSockmsgType.XS_TRANSACTION_START
XS_TRANSACTION_END: Final = XsdSockmsgType.XS_TRANSACTION_END
XS_INTRODUCE: Final = XsdSockmsgType.XS_INTRODUCE
XS_RELEASE: Final = XsdSockmsgType.XS_RELEASE
XS_GET_DOMAIN_PATH: Final = XsdSockmsgType.XS_GET_DOMAIN_PATH
XS_WRITE: Final = XsdSockmsgType.XS_WRITE
XS_MKDIR: Final = XsdSockmsgType.XS_MKDIR
XS_RM: Final = XsdSockmsgType.XS_RM
XS_SET_PERMS: Final = XsdSockmsgType.XS_SET_PERMS
XS_WATCH_EVENT: Final = XsdSockmsgType.XS_WATCH_EVENT
XS_ERROR: Final = XsdSockmsgType.XS_ERROR
XS_IS_DOMAIN_INTRODUCED: Final = XsdSockmsgType.XS_IS_DOMAIN_INTRODUCED
XS_RESUME: Final = XsdSockmsgType.XS_RESUME

#: Bytes of the xsd_sockmsg header in front of every payload.
XSD_HEADER_SIZE: Final = XSD_SOCKMSG.size
_U32_MAX: Final = 0xFFFFFFFF


#: Access bits of a permission (xs_lib.h's enum xs_perm_type).
XS_PERM_NONE: Final = 0
XS_PERM_READ: Final = 1
XS_PERM_WRITE: Final = 2
XS_PERM_OWNER: Final = 8
_PERM_BITS: Final = {"n": XS_PERM_NONE, "r": XS_PERM_READ, "w": XS_PERM_WRITE, "b": 3}
#: domid_t is 16 bits.
DOMID_MAX: Final = 0xFFFF


def type_name(msg_type: int) -> str:
    """ "XS_READ" for 2; a number outside the enum is shown as such."""
    try:
        return XsdSockmsgType(msg_type).name
    except ValueError:
        return f"xsd_sockmsg type {msg_type}"


# --- messages ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class XsMsg:
    """One xenstore message.  Any u32 type is representable (xenstored answers unknown
    types with ENOSYS), but the payload never exceeds XENSTORE_PAYLOAD_MAX."""

    type: int
    req_id: int
    tx_id: int
    payload: bytes = b""

    def __post_init__(self) -> None:
        for name in ("type", "req_id", "tx_id"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value <= _U32_MAX:
                raise XsWireError(f"xsd_sockmsg.{name} = {value!r} is not a u32")
        if not isinstance(self.payload, bytes):
            raise XsWireError(f"payload must be bytes, not {type(self.payload).__name__}")
        if len(self.payload) > XENSTORE_PAYLOAD_MAX:
            raise XsWireError(
                f"{type_name(self.type)} payload of {len(self.payload)} bytes exceeds "
                f"XENSTORE_PAYLOAD_MAX = {XENSTORE_PAYLOAD_MAX}"
            )

    def encode(self) -> bytes:
        """Header (big-endian u32s) then payload."""
        header = XsdSockmsg(int(self.type), self.req_id, self.tx_id, len(self.payload))
        return header.pack() + self.payload

    @classmethod
    def decode(cls, data: bytes) -> XsMsg:
        """Exactly one whole message: refuses short data, an announced length beyond
        XENSTORE_PAYLOAD_MAX, and bytes left over."""
        total = header_length(data)
        if total is None:
            raise XsWireError(
                f"xenstore message needs a {XSD_HEADER_SIZE}-byte header, got {len(data)} bytes"
            )
        if len(data) != total:
            what = "only" if len(data) < total else "but"
            raise XsWireError(
                f"xenstore header announces {total - XSD_HEADER_SIZE} payload bytes, {what} "
                f"{len(data) - XSD_HEADER_SIZE} follow"
            )
        h = XsdSockmsg.unpack(data[:XSD_HEADER_SIZE])
        return cls(h.type, h.req_id, h.tx_id, bytes(data[XSD_HEADER_SIZE:]))

    @property
    def name(self) -> str:
        return type_name(self.type)


def decode(data: bytes) -> XsMsg:
    """Module-level alias of `XsMsg.decode`."""
    return XsMsg.decode(data)


def header_length(data: bytes) -> int | None:
    """Total length (header + payload) of the message `data` starts with, or None while
    fewer than XSD_HEADER_SIZE bytes are present: a reader has a whole message once it
    holds that many bytes.  Raises on a length no sender may announce."""
    if len(data) < XSD_HEADER_SIZE:
        return None
    length = XsdSockmsg.unpack(bytes(data[:XSD_HEADER_SIZE])).len
    if length > XENSTORE_PAYLOAD_MAX:
        raise XsWireError(
            f"xenstore header announces {length} payload bytes, more than "
            f"XENSTORE_PAYLOAD_MAX = {XENSTORE_PAYLOAD_MAX}"
        )
    return XSD_HEADER_SIZE + length


# --- payload conventions ------------------------------------------------------------
def cstring(text: str | bytes) -> bytes:
    """`text` NUL-terminated; an embedded NUL would split it, so it is refused."""
    data = text.encode() if isinstance(text, str) else bytes(text)
    if b"\0" in data:
        raise XsWireError(f"xenstore string {data!r} contains a NUL byte")
    return data + b"\0"


def path_payload(path: str) -> bytes:
    """The payload of a one-path request (XS_READ, XS_MKDIR, ...)."""
    return cstring(path)


def strings_payload(strings: Sequence[str | bytes]) -> bytes:
    """Each string NUL-terminated, one after another."""
    return b"".join(cstring(s) for s in strings)


def split_strings(payload: bytes) -> list[bytes]:
    """The NUL-terminated strings of a payload; an unterminated tail is refused."""
    if not payload:
        return []
    if not payload.endswith(b"\0"):
        raise XsWireError(f"xenstore payload {payload[:64]!r} does not end in NUL")
    return payload[:-1].split(b"\0")


# --- permissions ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Perm:
    """One permission entry: `access` 'n' none, 'r' read, 'w' write, 'b' both, for
    `domid`.  In a node's list the first entry names the owner and, by its access, what
    every domain not listed later gets."""

    domid: int
    access: str

    def __post_init__(self) -> None:
        if self.access not in _PERM_BITS:
            raise XsWireError(f"permission access {self.access!r} is not one of 'n', 'r', 'w', 'b'")
        if not isinstance(self.domid, int) or not 0 <= self.domid <= DOMID_MAX:
            raise XsWireError(f"permission domid {self.domid!r} is not a domid_t (0..65535)")

    @property
    def bits(self) -> int:
        """XS_PERM_READ / XS_PERM_WRITE bits this entry grants."""
        return _PERM_BITS[self.access]

    @classmethod
    def parse(cls, text: str | bytes) -> Perm:
        """ "r5" -> Perm(5, 'r'); the domid is plain decimal."""
        s = text.decode("ascii", "replace") if isinstance(text, bytes) else text
        if len(s) < 2 or not s[1:].isascii() or not s[1:].isdigit():
            raise XsWireError(
                f"permission {s!r} is not a letter n/r/w/b followed by a decimal domid"
            )
        return cls(int(s[1:]), s[0])

    def __str__(self) -> str:
        return f"{self.access}{self.domid}"


def parse_perms(strings: Sequence[str | bytes]) -> tuple[Perm, ...]:
    """A node's permission list from its strings; at least the owner's entry."""
    if not strings:
        raise XsWireError("a permission list needs at least the owner's entry")
    return tuple(Perm.parse(s) for s in strings)


def _perm_text(perm: Perm | str) -> str:
    return str(perm if isinstance(perm, Perm) else Perm.parse(perm))


# --- requests a client sends ---------------------------------------------------------
def read(path: str, *, req_id: int = 0, tx_id: int = 0) -> XsMsg:
    return XsMsg(XS_READ, req_id, tx_id, path_payload(path))


def write(path: str, value: str | bytes, *, req_id: int = 0, tx_id: int = 0) -> XsMsg:
    """path NUL value: the value is raw bytes and carries no NUL terminator."""
    data = value.encode() if isinstance(value, str) else bytes(value)
    return XsMsg(XS_WRITE, req_id, tx_id, cstring(path) + data)


def mkdir(path: str, *, req_id: int = 0, tx_id: int = 0) -> XsMsg:
    return XsMsg(XS_MKDIR, req_id, tx_id, path_payload(path))


def rm(path: str, *, req_id: int = 0, tx_id: int = 0) -> XsMsg:
    return XsMsg(XS_RM, req_id, tx_id, path_payload(path))


def directory(path: str, *, req_id: int = 0, tx_id: int = 0) -> XsMsg:
    return XsMsg(XS_DIRECTORY, req_id, tx_id, path_payload(path))


def get_perms(path: str, *, req_id: int = 0, tx_id: int = 0) -> XsMsg:
    return XsMsg(XS_GET_PERMS, req_id, tx_id, path_payload(path))


def set_perms(path: str, perms: Sequence[Perm | str], *, req_id: int = 0, tx_id: int = 0) -> XsMsg:
    """path NUL then each permission ("n0", "r5") NUL-terminated, owner first."""
    if not perms:
        raise XsWireError(f"set_perms on {path!r} needs at least the owner's entry")
    texts = [_perm_text(p) for p in perms]
    return XsMsg(XS_SET_PERMS, req_id, tx_id, strings_payload([path, *texts]))


def watch(path: str, token: str | bytes, *, req_id: int = 0) -> XsMsg:
    return XsMsg(XS_WATCH, req_id, 0, strings_payload([path, token]))


def unwatch(path: str, token: str | bytes, *, req_id: int = 0) -> XsMsg:
    return XsMsg(XS_UNWATCH, req_id, 0, strings_payload([path, token]))


def transaction_start(*, req_id: int = 0) -> XsMsg:
    return XsMsg(XS_TRANSACTION_START, req_id, 0, b"\0")


def transaction_end(commit: bool, *, tx_id: int, req_id: int = 0) -> XsMsg:
    """ "T" commits, "F" aborts the transaction named in the header's tx_id."""
    if tx_id == 0:
        raise XsWireError("transaction_end needs the tx_id of a started transaction, not 0")
    return XsMsg(XS_TRANSACTION_END, req_id, tx_id, b"T\0" if commit else b"F\0")


def get_domain_path(domid: int, *, req_id: int = 0) -> XsMsg:
    return XsMsg(XS_GET_DOMAIN_PATH, req_id, 0, cstring(str(domid)))


def introduce(domid: int, mfn: int, port: int, *, req_id: int = 0) -> XsMsg:
    """domid NUL mfn NUL port NUL: the toolstack hands a new domain's store to xenstored."""
    return XsMsg(XS_INTRODUCE, req_id, 0, strings_payload([str(domid), str(mfn), str(port)]))


def release(domid: int, *, req_id: int = 0) -> XsMsg:
    return XsMsg(XS_RELEASE, req_id, 0, cstring(str(domid)))


def is_domain_introduced(domid: int, *, req_id: int = 0) -> XsMsg:
    return XsMsg(XS_IS_DOMAIN_INTRODUCED, req_id, 0, cstring(str(domid)))


# --- replies xenstored sends ---------------------------------------------------------
OK_PAYLOAD: Final = b"OK\0"


def reply_to(request: XsMsg, payload: bytes) -> XsMsg:
    """A reply carries the request's type, req_id and tx_id."""
    return XsMsg(request.type, request.req_id, request.tx_id, payload)


def ack(request: XsMsg) -> XsMsg:
    return reply_to(request, OK_PAYLOAD)


def error_reply(request: XsMsg, errno_name: str) -> XsMsg:
    if errno_name not in XSD_ERRORS:
        raise ValueError(f"{errno_name!r} is not an errno name xenstored sends")
    return XsMsg(XS_ERROR, request.req_id, request.tx_id, cstring(errno_name))


def watch_event(path: str, token: bytes) -> XsMsg:
    """Watch events are unsolicited: req_id and tx_id are 0."""
    return XsMsg(XS_WATCH_EVENT, 0, 0, strings_payload([path, token]))


# --- parsing replies (client side) ---------------------------------------------------
def check_reply(reply: XsMsg, request_type: int) -> bytes:
    """The payload of a reply to a `request_type` request; XS_ERROR raises XenstoreError
    with the errno name, a reply of another type raises XsWireError."""
    if reply.type == XS_ERROR:
        parts = split_strings(reply.payload)
        name = parts[0].decode("ascii", "replace") if len(parts) == 1 else ""
        if name not in XSD_ERRORS:
            raise XsWireError(f"XS_ERROR payload {reply.payload!r} is not one errno name")
        raise refused(name, f"xenstored refused {type_name(request_type)}")
    if reply.type != request_type:
        raise XsWireError(f"expected a reply to {type_name(request_type)}, got {reply.name}")
    return reply.payload


def parse_ack(reply: XsMsg, request_type: int) -> None:
    """Replies that only acknowledge (write, mkdir, rm, set_perms, watch, ...) say "OK"."""
    payload = check_reply(reply, request_type)
    if payload != OK_PAYLOAD:
        raise XsWireError(f"{reply.name} acknowledgement is {payload!r}, not b'OK\\x00'")


def parse_read(reply: XsMsg) -> bytes:
    return check_reply(reply, XS_READ)


def parse_directory(reply: XsMsg) -> list[str]:
    return [s.decode() for s in split_strings(check_reply(reply, XS_DIRECTORY))]


def parse_get_perms(reply: XsMsg) -> tuple[Perm, ...]:
    return parse_perms(split_strings(check_reply(reply, XS_GET_PERMS)))


def _one_string(reply: XsMsg, request_type: int) -> str:
    parts = split_strings(check_reply(reply, request_type))
    if len(parts) != 1:
        raise XsWireError(f"{reply.name} reply {reply.payload!r} is not one string")
    return parts[0].decode()


def parse_transaction_start(reply: XsMsg) -> int:
    """The new transaction's id (sent as a decimal string)."""
    text = _one_string(reply, XS_TRANSACTION_START)
    if not text.isascii() or not text.isdigit() or not 0 < int(text) <= _U32_MAX:
        raise XsWireError(f"transaction id {text!r} is not a decimal u32 other than 0")
    return int(text)


def parse_get_domain_path(reply: XsMsg) -> str:
    return _one_string(reply, XS_GET_DOMAIN_PATH)


def parse_is_domain_introduced(reply: XsMsg) -> bool:
    text = _one_string(reply, XS_IS_DOMAIN_INTRODUCED)
    if text not in ("T", "F"):
        raise XsWireError(f"XS_IS_DOMAIN_INTRODUCED reply {text!r} is neither 'T' nor 'F'")
    return text == "T"


def parse_watch_event(msg: XsMsg) -> tuple[str, bytes]:
    """(path, token) of an XS_WATCH_EVENT."""
    if msg.type != XS_WATCH_EVENT:
        raise XsWireError(f"expected XS_WATCH_EVENT, got {msg.name}")
    parts = split_strings(msg.payload)
    if len(parts) != 2:
        raise XsWireError(f"watch event payload {msg.payload!r} is not path NUL token NUL")
    return parts[0].decode(), parts[1]


__all__ = [
    "DOMID_MAX",
    "OK_PAYLOAD",
    "XSD_HEADER_SIZE",
    "XS_DEBUG",
    "XS_DIRECTORY",
    "XS_ERROR",
    "XS_GET_DOMAIN_PATH",
    "XS_GET_PERMS",
    "XS_INTRODUCE",
    "XS_IS_DOMAIN_INTRODUCED",
    "XS_MKDIR",
    "XS_PERM_NONE",
    "XS_PERM_OWNER",
    "XS_PERM_READ",
    "XS_PERM_WRITE",
    "XS_READ",
    "XS_RELEASE",
    "XS_RESUME",
    "XS_RM",
    "XS_SET_PERMS",
    "XS_TRANSACTION_END",
    "XS_TRANSACTION_START",
    "XS_UNWATCH",
    "XS_WATCH",
    "XS_WATCH_EVENT",
    "XS_WRITE",
    "Perm",
    "XsMsg",
    "ack",
    "check_reply",
    "cstring",
    "decode",
    "directory",
    "error_reply",
    "get_domain_path",
    "get_perms",
    "header_length",
    "introduce",
    "is_domain_introduced",
    "mkdir",
    "parse_ack",
    "parse_directory",
    "parse_get_domain_path",
    "parse_get_perms",
    "parse_is_domain_introduced",
    "parse_perms",
    "parse_read",
    "parse_transaction_start",
    "parse_watch_event",
    "path_payload",
    "read",
    "release",
    "reply_to",
    "rm",
    "set_perms",
    "split_strings",
    "strings_payload",
    "transaction_end",
    "transaction_start",
    "type_name",
    "unwatch",
    "watch",
    "watch_event",
    "write",
]


def refused(errno_name: str, detail: str = "") -> XenstoreError:
    """The error for an XS_ERROR carrying `errno_name` ("ENOENT"), which must be one of the
    names xenstored sends (`XSD_ERRORS`); `detail` is for people and never goes on the wire."""
    if errno_name not in XSD_ERRORS:
        raise ValueError(f"{errno_name!r} is not an errno name xenstored sends")
    return XenstoreError(errno_name, XSD_ERRORS[errno_name], detail)
