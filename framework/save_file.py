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
- the disks the run made for the domain (vbds without an image), which x86 leaves to the
  admin: u32 count, then per disk its name (u8 length + bytes), u64 size and its data
  extents (u64 offset, u64 length, the bytes; holes left out), ended by a zero length -
  so a file restored in another run meets its disk as it was at the save;
- a SHA-256 of everything before it (32 bytes), which x86 lacks: a truncated or corrupted
  file is refused in one line before anything is created.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
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
    "SaveReader",
    "SaveWriter",
    "read_header",
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
        self.put(_batch_words(first_pfn, n))
        self.put(data)

    def tail(self, vcpus: list[tuple[int, bytes, bytes]], shared_info: bytes) -> None:
        """The VCPU map, the terminator, each (id, context, state), shared_info."""
        bitmap = sum(1 << vid for vid, _c, _s in vcpus)
        max_id = max((vid for vid, _c, _s in vcpus), default=0)
        self.put(_I32.pack(VCPU_MAP_CHUNK) + _I32.pack(max_id) + _U64.pack(bitmap))
        self.put(_I32.pack(0) + _U32.pack(0))
        for _vid, ctx, state in vcpus:
            self.put(ctx + state)
        self.put(shared_info)

    def disks(self, disks: list[tuple[str, int, Path]]) -> None:
        """The run's own disks (name, size, file) as they are now: u32 count, then each
        disk's name (u8 length + bytes), u64 size and its data extents (u64 offset, u64
        length, the bytes), ended by a zero length. Holes are not written."""
        self.put(_U32.pack(len(disks)))
        for name, size, path in disks:
            raw = name.encode()
            self.put(bytes([len(raw)]) + raw + _U64.pack(size))
            with path.open("rb") as f:
                for offset, length in _extents(f.fileno(), size):
                    self.put(_U64.pack(offset) + _U64.pack(length))
                    f.seek(offset)
                    left = length
                    while left:
                        chunk = f.read(min(_READ_CHUNK, left))
                        if not chunk:
                            raise OSError(f"{path} shrank while it was saved")
                        self.put(chunk)
                        left -= len(chunk)
            self.put(_U64.pack(0) + _U64.pack(0))

    def finish(self) -> None:
        """The SHA-256 of everything written before it."""
        self.f.write(self.sha.digest())
        self.bytes += DIGEST


def _batch_words(first_pfn: int, n: int) -> bytes:
    return _I32.pack(n) + struct.pack(f">{n}I", *range(first_pfn, first_pfn + n))


def _extents(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """The data extents of a (sparse) file as (offset, length), from SEEK_DATA/SEEK_HOLE;
    the whole file as one extent where the file system cannot say."""
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as err:
            if err.errno == errno.ENXIO:  # no data after pos
                return
            yield pos, size - pos
            return
        if start >= size:
            return
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        yield start, end - start
        pos = end


@dataclass(frozen=True)
class SaveHeader:
    """What a save file says before its pages."""

    config: dict[str, object]
    p2m_size: int


@dataclass
class SaveImage:
    """The parts of a save file after its pages: each online VCPU's (id, context, model
    state) and the shared_info page."""

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
    return SaveHeader(_config(path, raw), _U64.unpack(p2m)[0])


def _config(path: Path, raw: bytes) -> dict[str, object]:
    try:
        config = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _fail(path, f"its configuration is not JSON ({err})") from err
    if not isinstance(config, dict):
        raise _fail(path, "its configuration is not a JSON object")
    return config


class SaveReader:
    """One pass over a save file: every byte read is hashed, and `finish` compares the
    digest, so a restore reads the file once and still refuses a file that changed since
    it was verified (the caller undoes what it built before `finish` said so)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.f = path.open("rb", buffering=0)
        except OSError as err:
            raise SaveFileError(
                f"{path}: cannot read the save file: {err.strerror or err}"
            ) from err
        self.sha = hashlib.sha256()
        self.bitmap = 0

    def close(self) -> None:
        self.f.close()

    def read(self, n: int) -> bytes:
        data = self.f.read(n)
        if data is None or len(data) != n:
            raise _fail(self.path, "it ended early (truncated?)")
        self.sha.update(data)
        return data

    def readinto(self, view: memoryview) -> None:
        """Fill `view` from the file (hashed as it comes)."""
        got = 0
        while got < len(view):
            n = self.f.readinto(view[got:])
            if not n:
                raise _fail(self.path, "it ended early (truncated?)")
            got += n
        self.sha.update(view)

    def header(self) -> SaveHeader:
        if self.read(len(SIGNATURE)) != SIGNATURE:
            raise _fail(self.path, "no xen970 save signature")
        (n,) = _U32.unpack(self.read(4))
        raw = self.read(n)
        (p2m,) = _U64.unpack(self.read(8))
        return SaveHeader(_config(self.path, raw), p2m)

    def batches(self) -> Iterator[tuple[int, int]]:
        """Each page batch as (first pfn, pages): consecutive pfns, as this saver writes
        them. Its data is next in the file: the caller reads it (`readinto`) before it
        asks for the next batch."""
        while True:
            (n,) = _I32.unpack(self.read(4))
            if n == VCPU_MAP_CHUNK:
                _max_id, self.bitmap = struct.unpack(">iQ", self.read(12))
                continue
            if n == 0:
                return
            if not 0 < n <= SAVE_BATCH_PAGES:
                raise _fail(self.path, f"a page batch of {n} pages")
            raw = self.read(4 * n)
            (first,) = _U32.unpack_from(raw)
            if first & XTAB or raw != _batch_words(first, n)[4:]:
                raise _fail(self.path, "a page batch this restorer cannot read")
            yield first, n

    def tail(self) -> SaveImage:
        """What follows the batches: the VCPUs and shared_info."""
        self.read(4)  # no unmapped pfns
        image = SaveImage([], b"")
        each = VCPU_GUEST_CONTEXT.size + XEN970_VCPU_STATE.size
        for vid in range(64):
            if self.bitmap >> vid & 1:
                raw = self.read(each)
                image.vcpus.append(
                    (vid, raw[: VCPU_GUEST_CONTEXT.size], raw[VCPU_GUEST_CONTEXT.size :])
                )
        image.shared_info = self.read(PAGE)
        return image

    def disks(self, files: dict[str, Path]) -> None:
        """Write each disk the file carries into `files[name]` (a new file, sparse, of
        the saved size); a disk the file has and `files` lacks is refused."""
        (count,) = _U32.unpack(self.read(4))
        for _ in range(count):
            name = self.read(self.read(1)[0]).decode(errors="replace")
            (size,) = _U64.unpack(self.read(8))
            if name not in files:
                raise _fail(self.path, f"it carries disk {name!r}, which its config lacks")
            with files[name].open("xb") as out:
                out.truncate(size)
                while True:
                    offset, length = struct.unpack(">QQ", self.read(16))
                    if not length:
                        break
                    if offset + length > size:
                        raise _fail(self.path, f"disk {name!r} data beyond its size")
                    out.seek(offset)
                    while length:
                        chunk = self.read(min(_READ_CHUNK, length))
                        out.write(chunk)
                        length -= len(chunk)

    def finish(self) -> None:
        """The digest matches what was read, and nothing follows it."""
        digest = self.f.read(DIGEST + 1)
        if digest != self.sha.digest():
            raise _fail(self.path, "its SHA-256 does not match (corrupted or truncated)")
