"""The save file `xm save` writes and `xm restore` reads (docs/save-format.md).

Modelled on x86 Xen 3.1's (`XendCheckpoint.py`, `xc_domain_save.c`), big-endian as the
970 is, with the PowerPC differences said in the document:

- signature `SIGNATURE` (16 bytes), then a u32 length and the domain's configuration as
  JSON (the scenario's domain entry; x86 writes the sxp config);
- u64 p2m size (pages);
- page batches: i32 count (1..1024), `count` u32 type words (pfn | type << 28; type 0,
  a normal page; XTAB 0xf << 28 = no data), then 4096 bytes per page that has data;
- the online VCPU chunk: i32 -2, i32 max_vcpu_id, u64 bitmap of online VCPUs;
- i32 0 (the end of the pages), then u32 0 (no unmapped pfns: ballooning is not modelled);
- per online VCPU: its `vcpu_guest_context` (360 bytes) and the model state Xen keeps
  beside it (`XEN970_VCPU_STATE`);
- the shared_info page (4096 bytes);
- a SHA-256 of everything before it (32 bytes), which x86 lacks: a truncated or corrupted
  file is refused in one line before anything is created.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

from framework.errors import SaveFileError
from framework.xen.public.domctl import SAVE_BATCH_PAGES
from framework.xen.public.vcpu import VCPU_GUEST_CONTEXT, XEN970_VCPU_STATE

__all__ = [
    "SIGNATURE",
    "SaveHeader",
    "SaveImage",
    "SaveWriter",
    "read_header",
    "read_image",
    "verify",
]

SIGNATURE: Final = b"Xen970PPCGuestRc"
PAGE: Final = 4096
XTAB: Final = 0xF << 28
VCPU_MAP_CHUNK: Final = -2
DIGEST: Final = 32
_READ_CHUNK: Final = 8 << 20
_I32: Final = struct.Struct(">i")
_U32: Final = struct.Struct(">I")
_U64: Final = struct.Struct(">Q")


class SaveWriter:
    """Writes a save file piece by piece, hashing as it goes."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f = f
        self.sha = hashlib.sha256()
        self.bytes = 0

    def put(self, data: bytes | memoryview) -> None:
        self.sha.update(data)
        self.f.write(data)
        self.bytes += len(data)

    def header(self, config: dict[str, object], p2m_size: int) -> None:
        raw = json.dumps(config, sort_keys=True).encode()
        self.put(SIGNATURE + _U32.pack(len(raw)) + raw + _U64.pack(p2m_size))

    def batch(self, first_pfn: int, data: bytes | memoryview) -> None:
        n = len(data) // PAGE
        words = struct.pack(f">i{n}I", n, *range(first_pfn, first_pfn + n))
        self.put(words)
        self.put(data)

    def tail(self, vcpus: list[tuple[int, bytes, bytes]], shared_info: bytes) -> None:
        """The VCPU map, the terminator, each (id, context, state), shared_info, digest."""
        bitmap = sum(1 << vid for vid, _c, _s in vcpus)
        max_id = max((vid for vid, _c, _s in vcpus), default=0)
        self.put(_I32.pack(VCPU_MAP_CHUNK) + _I32.pack(max_id) + _U64.pack(bitmap))
        self.put(_I32.pack(0) + _U32.pack(0))
        for _vid, ctx, state in vcpus:
            self.put(ctx + state)
        self.put(shared_info)
        self.f.write(self.sha.digest())
        self.bytes += DIGEST


@dataclass(frozen=True)
class SaveHeader:
    """What a save file says before its pages."""

    config: dict[str, object]
    p2m_size: int
    pages_offset: int


@dataclass
class SaveImage:
    """The parts of a save file after its pages (read after the batches)."""

    vcpus: list[tuple[int, bytes, bytes]]
    shared_info: bytes


def _fail(path: Path, what: str) -> SaveFileError:
    return SaveFileError(f"{path}: not a usable save file: {what}")


def verify(path: Path) -> SaveHeader:
    """Check a save file whole (signature, digest, structure) before anything is built
    from it; its header. SaveFileError in one line if it cannot be restored."""
    try:
        size = path.stat().st_size
        if size < len(SIGNATURE) + 4 + 8 + DIGEST:
            raise _fail(path, f"{size} bytes is too short (truncated?)")
        sha = hashlib.sha256()
        with path.open("rb") as f:
            left = size - DIGEST
            while left:
                chunk = f.read(min(_READ_CHUNK, left))
                if not chunk:
                    raise _fail(path, "it ended early")
                sha.update(chunk)
                left -= len(chunk)
            digest = f.read(DIGEST)
    except OSError as err:
        raise SaveFileError(f"{path}: cannot read the save file: {err.strerror or err}") from err
    header = read_header(path)
    if digest != sha.digest():
        raise _fail(path, "its SHA-256 does not match (corrupted or truncated)")
    return header


def read_header(path: Path) -> SaveHeader:
    """The signature and configuration (no digest check: `verify` does that)."""
    try:
        with path.open("rb") as f:
            sig = f.read(len(SIGNATURE))
            if sig != SIGNATURE:
                raise _fail(path, "no xen970 save signature")
            (n,) = _U32.unpack(f.read(4))
            raw = f.read(n)
            p2m = f.read(8)
    except OSError as err:
        raise SaveFileError(f"{path}: cannot read the save file: {err.strerror or err}") from err
    except struct.error as err:
        raise _fail(path, "its header is cut short") from err
    if len(raw) != n or len(p2m) != 8:
        raise _fail(path, "its header is cut short")
    try:
        config = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _fail(path, f"its configuration is not JSON ({err})") from err
    if not isinstance(config, dict):
        raise _fail(path, "its configuration is not a JSON object")
    return SaveHeader(config, _U64.unpack(p2m)[0], len(SIGNATURE) + 4 + n + 8)


def read_image(path: Path, header: SaveHeader) -> tuple[Iterator[tuple[int, bytes]], SaveImage]:
    """The page batches as (first pfn, data) - consecutive pfns per batch, as this saver
    writes them - and, once they are consumed, the rest of the file in the SaveImage."""
    image = SaveImage([], b"")

    def batches() -> Iterator[tuple[int, bytes]]:
        bitmap = 0
        with path.open("rb") as f:
            f.seek(header.pages_offset)
            while True:
                (n,) = _I32.unpack(f.read(4))
                if n == VCPU_MAP_CHUNK:
                    _max_id, bitmap = struct.unpack(">iQ", f.read(12))
                    continue
                if n == 0:
                    break
                if not 0 < n <= SAVE_BATCH_PAGES:
                    raise _fail(path, f"a page batch of {n} pages")
                words = struct.unpack(f">{n}I", f.read(4 * n))
                if any(w & XTAB for w in words) or list(words) != list(
                    range(words[0], words[0] + n)
                ):
                    raise _fail(path, "a page batch this restorer cannot read")
                yield words[0], f.read(n * PAGE)
            f.read(4)  # no unmapped pfns
            each = VCPU_GUEST_CONTEXT.size + XEN970_VCPU_STATE.size
            for vid in range(64):
                if bitmap >> vid & 1:
                    raw = f.read(each)
                    image.vcpus.append(
                        (vid, raw[: VCPU_GUEST_CONTEXT.size], raw[VCPU_GUEST_CONTEXT.size :])
                    )
            image.shared_info = f.read(PAGE)

    return batches(), image
