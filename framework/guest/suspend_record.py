"""The suspend record: what a suspending kernel writes into its own memory.

A real kernel's state lives in its memory; this kernel's native routines keep theirs in
Python, so at suspend they write it into guest memory as this record, and the resume path
of a *new* kernel (in the same process or another) rebuilds itself from the devtree and
this record alone. Nothing is kept aside.

Where: guest-physical `RECORD_GPA` (inside the kernel's data area, below the page pool),
at most `RECORD_MAX` bytes; the resume path knows the address, as Linux's resume code knows
its own static data.

Layout (big-endian): the header `magic` "X970SREC" (8 bytes), `version` (u32, 3; versions
1, without the pingpong part, and 2, without the grants, are still read), `length`
of the body (u32), then the body: one *value* in a small self-describing encoding -

- an integer: `i` then a signed 64-bit integer;
- bytes: `b`, a u32 length, the bytes;
- a list: `l`, a u32 count, the values.

The body's schema (a list) is documented where it is built (`framework.guest.suspend`) and
in docs/save-format.md.
"""

from __future__ import annotations

import struct
from typing import Final, TypeAlias

from framework.errors import KernelError

__all__ = ["RECORD_GPA", "RECORD_MAX", "Value", "decode_record", "encode_record"]

RECORD_GPA: Final = 0x600000
RECORD_MAX: Final = 0x200000
_MAGIC: Final = b"X970SREC"
_VERSION: Final = 3
#: Versions a resume reads: 1 and 2 lack the parts added later (read as absent).
_READABLE: Final = (1, 2, 3)
_HEADER: Final = struct.Struct(">8sII")
_I64: Final = struct.Struct(">cq")
_LEN: Final = struct.Struct(">cI")

#: A record value: an integer, bytes, or a list of values.
Value: TypeAlias = "int | bytes | list[Value]"


def _encode(v: Value, out: list[bytes]) -> None:
    if isinstance(v, bool):
        out.append(_I64.pack(b"i", int(v)))
    elif isinstance(v, int):
        out.append(_I64.pack(b"i", v))
    elif isinstance(v, bytes):
        out.append(_LEN.pack(b"b", len(v)))
        out.append(v)
    else:
        out.append(_LEN.pack(b"l", len(v)))
        for item in v:
            _encode(item, out)


def encode_record(body: Value) -> bytes:
    """The header and the encoded body."""
    parts: list[bytes] = []
    _encode(body, parts)
    data = b"".join(parts)
    if _HEADER.size + len(data) > RECORD_MAX:
        raise KernelError(f"suspend record of {len(data)} bytes exceeds {RECORD_MAX}")
    return _HEADER.pack(_MAGIC, _VERSION, len(data)) + data


def record_length(header: bytes) -> int:
    """The body length a header announces (KernelError if it is not a record's)."""
    magic, version, length = _HEADER.unpack(header[: _HEADER.size])
    if magic != _MAGIC or version not in _READABLE or _HEADER.size + length > RECORD_MAX:
        raise KernelError(f"no suspend record (magic {magic!r}, version {version})")
    return length


HEADER_SIZE: Final = _HEADER.size


def decode_record(data: bytes) -> Value:
    """The body of a record (header included in `data`)."""
    length = record_length(data)
    value, pos = _decode(data, _HEADER.size)
    if pos != _HEADER.size + length:
        raise KernelError(f"suspend record: {pos - _HEADER.size} of {length} bytes decoded")
    return value


def _decode(data: bytes, pos: int) -> tuple[Value, int]:
    tag = data[pos : pos + 1]
    if tag == b"i":
        return _I64.unpack_from(data, pos)[1], pos + _I64.size
    n = _LEN.unpack_from(data, pos)[1]
    pos += _LEN.size
    if tag == b"b":
        return bytes(data[pos : pos + n]), pos + n
    if tag != b"l":
        raise KernelError(f"suspend record: unknown tag {tag!r} at {pos}")
    items: list[Value] = []
    for _ in range(n):
        item, pos = _decode(data, pos)
        items.append(item)
    return items, pos


def as_int(v: Value) -> int:
    """A record value that must be an integer."""
    if not isinstance(v, int):
        raise KernelError(f"suspend record: expected an integer, found {type(v).__name__}")
    return v


def as_bytes(v: Value) -> bytes:
    """A record value that must be bytes."""
    if not isinstance(v, bytes):
        raise KernelError(f"suspend record: expected bytes, found {type(v).__name__}")
    return v


def as_list(v: Value) -> list[Value]:
    """A record value that must be a list."""
    if not isinstance(v, list):
        raise KernelError(f"suspend record: expected a list, found {type(v).__name__}")
    return v


def as_ints(v: Value) -> list[int]:
    """A record value that must be a list of integers."""
    return [as_int(x) for x in as_list(v)]
