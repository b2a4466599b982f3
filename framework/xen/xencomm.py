"""xencomm: how a Xen/PPC guest passes hypercall arguments that live in memory.

Why it exists: Xen copies hypercall arguments in real mode, so it cannot walk the guest's
page table. The guest instead names its buffer by guest-physical addresses, either as a
descriptor (``struct xencomm_desc { u32 magic; u32 nr_addrs; u64 address[]; }``, each
address valid to the end of its 4 KiB page, ~0 entries skipped) or, with bit 63 of the
handle set, "inline" as one guest-physically contiguous buffer. Xen translates every page
through the domain's p2m, so a domain can only ever reach its own frames.

Semantics follow Xen's ``xencomm.c`` (PPC/IA64): addresses are translated only for the
pieces a copy touches, and a copy that cannot be completed fails with EFAULT. Unlike the C
code (which copies chunk by chunk and reports the bytes left), every piece is validated
before the first byte moves, so a failed copy leaves memory untouched.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from framework.errors import XencommError
from framework.hw970.memory import PAGE_SHIFT, PAGE_SIZE, MachineMemory
from framework.xen.public.xencomm import (
    XENCOMM_DESC_HEADER,
    XENCOMM_HEADER,
    XENCOMM_INLINE_FLAG,
    XENCOMM_INVALID,
    XENCOMM_MAGIC,
)

if TYPE_CHECKING:
    from framework.xen.domain import Domain
    from framework.xen.hypervisor import Hypervisor

__all__ = ["Xencomm", "XencommError", "xencomm_of"]

_PAGE_MASK: Final = PAGE_SIZE - 1


class Xencomm:
    """Copies between Xen and one domain's memory, translating through its pfn_to_mfn."""

    def __init__(
        self,
        memory: MachineMemory,
        pfn_to_mfn: Callable[[int], int],
        contiguous: Callable[[int, int], bool] | None = None,
    ) -> None:
        self.memory = memory
        self._pfn_to_mfn = pfn_to_mfn
        #: Whether pfns [pfn, pfn + count) lie on consecutive machine frames (the RMA,
        #: an extent): a large inline buffer there is one piece, found without a walk.
        self._contiguous = contiguous

    def copy_from_guest(self, handle: int, nbytes: int, offset: int = 0) -> bytes:
        """Read `nbytes` of the guest buffer named by `handle`, starting `offset` into it."""
        pieces = self.chunks(handle, nbytes, offset)
        return b"".join(self.memory.read(maddr, n) for maddr, n in pieces)

    def view_of_guest(self, handle: int, nbytes: int) -> bytes | memoryview:
        """The guest buffer's `nbytes`: a view of machine memory when they are one
        machine-contiguous piece (dom0's bulk buffer), else a copy. Release a view."""
        pieces = self.chunks(handle, nbytes)
        if len(pieces) == 1:
            return self.memory.view(pieces[0][0], nbytes)
        return b"".join(self.memory.read(maddr, n) for maddr, n in pieces)

    def copy_to_guest(
        self, handle: int, data: bytes | bytearray | memoryview, offset: int = 0
    ) -> None:
        """Write `data` into the guest buffer at `offset`; all of it, or nothing on error."""
        pieces = self.chunks(handle, len(data), offset)
        view = memoryview(data)
        pos = 0
        for maddr, n in pieces:
            self.memory.write(maddr, view[pos : pos + n])
            pos += n

    def chunks(self, handle: int, nbytes: int, offset: int = 0) -> list[tuple[int, int]]:
        """Machine (address, length) pieces of the buffer range, machine-adjacent ones merged.

        Raises `XencommError` (EFAULT) if any piece cannot be reached, before anything is
        copied, which is what lets the copies be all-or-nothing.
        """
        if nbytes < 0 or offset < 0:
            raise XencommError(
                errno.EINVAL, f"xencomm copy of {nbytes} bytes at offset {offset}: negative"
            )
        if handle & XENCOMM_INLINE_FLAG:
            gpa = (handle & ~XENCOMM_INLINE_FLAG) + offset
            return self._inline_chunks(gpa, nbytes)
        return self._desc_chunks(handle, nbytes, offset)

    def _maddr(self, gpa: int, n: int, what: str) -> int:
        """Machine address of `n` bytes at `gpa` (within one page), or EFAULT."""
        try:
            mfn = self._pfn_to_mfn(gpa >> PAGE_SHIFT)
        except LookupError as e:
            raise XencommError(
                errno.EFAULT, f"xencomm: {what} at guest-physical {gpa:#x} not translatable: {e}"
            ) from None
        maddr = (mfn << PAGE_SHIFT) | (gpa & _PAGE_MASK)
        if maddr + n > self.memory.size:
            raise XencommError(
                errno.EFAULT,
                f"xencomm: {what} at guest-physical {gpa:#x} maps to machine {maddr:#x}, "
                f"outside {self.memory.size:#x} bytes of memory",
            )
        return maddr

    def _inline_chunks(self, gpa: int, nbytes: int) -> list[tuple[int, int]]:
        """Inline buffers are contiguous guest-physically only: translate page by page
        (one piece at once when the pages are machine-contiguous: dom0's bulk buffer)."""
        out: list[tuple[int, int]] = []
        if nbytes > PAGE_SIZE and self._contiguous is not None:
            first, last = gpa >> PAGE_SHIFT, (gpa + nbytes - 1) >> PAGE_SHIFT
            if self._contiguous(first, last - first + 1):
                start = self._maddr(gpa, 1, "inline buffer")
                if start + nbytes <= self.memory.size:
                    return [(start, nbytes)]
        while nbytes > 0:
            n = min(nbytes, PAGE_SIZE - (gpa & _PAGE_MASK))
            _append(out, self._maddr(gpa, n, "inline buffer"), n)
            gpa += n
            nbytes -= n
        return out

    def _read_descriptor(self, handle: int) -> list[int]:
        """The descriptor's address list; it must lie within one guest page."""
        room = PAGE_SIZE - (handle & _PAGE_MASK)
        if room < XENCOMM_DESC_HEADER:
            raise XencommError(
                errno.EFAULT, f"xencomm: descriptor at {handle:#x} crosses its page boundary"
            )
        base = self._maddr(handle, XENCOMM_DESC_HEADER, "descriptor")
        magic, nr_addrs = XENCOMM_HEADER.unpack(self.memory.read(base, XENCOMM_DESC_HEADER))
        if magic != XENCOMM_MAGIC:
            raise XencommError(
                errno.EFAULT,
                f"xencomm: descriptor at {handle:#x} has magic {magic:#010x}, "
                f"not {XENCOMM_MAGIC:#010x}",
            )
        fit = (room - XENCOMM_DESC_HEADER) // 8
        if nr_addrs > fit:
            raise XencommError(
                errno.EFAULT,
                f"xencomm: descriptor at {handle:#x} claims {nr_addrs} addresses but only "
                f"{fit} fit before the end of its page",
            )
        raw = self.memory.read(base + XENCOMM_DESC_HEADER, 8 * nr_addrs)
        return list(struct.unpack(f">{nr_addrs}Q", raw))

    def _desc_chunks(self, handle: int, nbytes: int, offset: int) -> list[tuple[int, int]]:
        """Walk the address list: skip `offset` bytes, then collect `nbytes` of pieces."""
        addrs = self._read_descriptor(handle)
        out: list[tuple[int, int]] = []
        skip, left = offset, nbytes
        for gpa in addrs:
            if left == 0:
                break
            if gpa == XENCOMM_INVALID:
                continue
            size = PAGE_SIZE - (gpa & _PAGE_MASK)
            if skip >= size:
                skip -= size
                continue
            gpa += skip
            size -= skip
            skip = 0
            n = min(size, left)
            _append(out, self._maddr(gpa, n, "descriptor entry"), n)
            left -= n
        if left:
            described = sum(PAGE_SIZE - (a & _PAGE_MASK) for a in addrs if a != XENCOMM_INVALID)
            raise XencommError(
                errno.EFAULT,
                f"xencomm: copy of {nbytes} bytes at offset {offset} runs past the "
                f"{described} bytes described at {handle:#x}",
            )
        return out


def _append(out: list[tuple[int, int]], maddr: int, n: int) -> None:
    """Add a piece, extending the previous one when the machine addresses are adjacent."""
    if out and out[-1][0] + out[-1][1] == maddr:
        out[-1] = (out[-1][0], out[-1][1] + n)
    else:
        out.append((maddr, n))


def xencomm_of(xen: Hypervisor, dom: Domain) -> Xencomm:
    """The domain's xencomm walker (cached until its physical map changes)."""
    phys = dom.phys
    assert phys is not None
    cached = dom.xencomm
    if cached is None or cached[0] is not phys:
        cached = (phys, Xencomm(xen.memory, phys.pfn_to_mfn, phys.contiguous))
        dom.xencomm = cached
    return cached[1]
