"""Guest-physical memory as the paravirtual kernel's native routines reach it.

A native is kernel code, so it sees memory the way the VCPU's MMU does: the RMA through
real-mode offsetting, everything else through the kernel's hashed page table mappings at
``KERNEL_BASE + gpa`` (16 MiB pages for the linear map, 4 KiB pages for grant frames and
the foreign area).  Nothing bypasses translation: a page the kernel has not mapped, or a
store to a read-only mapping, raises `KernelFault` with the architected fault, which the
kernel turns into an oops (a recorded domain crash).

Each `KernelMemory` caches its translations, like a TLB.  Natives make a fresh one per
call: page tables change only through hcalls, and no other CPU runs during a native.
"""

from __future__ import annotations

from typing import Final

from framework.errors import KernelFault
from framework.hw970.core import Core
from framework.hw970.mmu import ACCESS_READ, ACCESS_WRITE, Fault, TranslationState

from .runtime import KERNEL_BASE

_PAGE: Final = 0xFFF


class KernelMemory:
    """Read and write guest-physical addresses through the running VCPU's translation."""

    __slots__ = ("_pages", "core", "memory", "tr")

    def __init__(self, core: Core) -> None:
        assert core.state is not None
        self.core = core
        self.memory = core.memory
        self.tr: TranslationState = core.state.tr
        self._pages: dict[int, int] = {}

    def maddr(self, gpa: int, write: bool = False) -> int:
        """Machine address of `gpa` for a load (or a store, when `write`)."""
        key = (gpa & ~_PAGE) | write
        page = self._pages.get(key)
        if page is None:
            page = self._translate(gpa & ~_PAGE, write)
            self._pages[key] = page
        return page | (gpa & _PAGE)

    def _translate(self, page: int, write: bool) -> int:
        tr = self.tr
        if page < tr.rma_size:
            return tr.rma_base + page
        res = self.core.mmu.hashed(tr, KERNEL_BASE | page, ACCESS_WRITE if write else ACCESS_READ)
        if isinstance(res, Fault):
            raise KernelFault(page, write, res)
        return res[0]

    def read(self, gpa: int, n: int) -> bytes:
        if (gpa & _PAGE) + n <= 4096:
            return self.memory.read(self.maddr(gpa), n)
        out = bytearray()
        while n:
            chunk = min(n, 4096 - (gpa & _PAGE))
            out += self.memory.read(self.maddr(gpa), chunk)
            gpa += chunk
            n -= chunk
        return bytes(out)

    def write(self, gpa: int, data: bytes | bytearray | memoryview) -> None:
        if (gpa & _PAGE) + len(data) <= 4096:
            self.memory.write(self.maddr(gpa, True), data)
            return
        off = 0
        while off < len(data):
            chunk = min(len(data) - off, 4096 - ((gpa + off) & _PAGE))
            self.memory.write(self.maddr(gpa + off, True), data[off : off + chunk])
            off += chunk

    def read_u32(self, gpa: int) -> int:
        return self.memory.read_u32(self.maddr(gpa))

    def write_u32(self, gpa: int, value: int) -> None:
        self.memory.write_u32(self.maddr(gpa, True), value)
