"""TCE tables: the U3/U4 DART as PAPR presents it to an operating system.

A device on a logical I/O bus (named by its LIOBN) sees a DMA window of I/O bus addresses
(IOBAs). Each 4 KiB of that window is translated by one Translation Control Entry: a
big-endian doubleword holding the machine page (RPN << 12) and two permission bits, as in
Linux's ``asm-powerpc/tce.h`` and Xen/PPC's ``union tce`` (RPN = 40 bits at bit 12,
TCE_PAGE_WRITE = 2, TCE_PAGE_READ = 1). The table lives in machine memory, so it is real
state that a memory image carries; this module is the hardware walking it and knows
nothing of who filled it.

Permissions are from the device's side: READ lets the device read memory (a disk write),
WRITE lets it store into memory (a disk read). A transfer is checked page by page before a
single byte moves, so a refused DMA leaves memory untouched.
"""

from __future__ import annotations

from typing import Final

from framework.errors import DmaFault
from framework.hw970.memory import PAGE_SIZE, MachineMemory

__all__ = [
    "TCE_ENTRY_BYTES",
    "TCE_PAGE_READ",
    "TCE_PAGE_SHIFT",
    "TCE_PAGE_SIZE",
    "TCE_PAGE_WRITE",
    "TCE_RPN_MASK",
    "TCE_VALID_BITS",
    "TceTable",
    "tce_table_bytes",
]

TCE_PAGE_SHIFT: Final = 12
TCE_PAGE_SIZE: Final = 1 << TCE_PAGE_SHIFT
TCE_ENTRY_BYTES: Final = 8
TCE_PAGE_READ: Final = 0x1  # the device may read the page (DMA from memory)
TCE_PAGE_WRITE = 0x2  # the device may write the page (DMA to memory)
#: The real page number: 40 bits from bit 12 (Linux TCE_RPN_MASK << TCE_RPN_SHIFT).
TCE_RPN_MASK: Final = ((1 << 40) - 1) << TCE_PAGE_SHIFT
#: Every bit a TCE may carry; the cache-hint and reserved bits must stay zero.
TCE_VALID_BITS: Final = TCE_RPN_MASK | TCE_PAGE_WRITE | TCE_PAGE_READ


def _window_entries(window_bytes: int) -> int:
    if window_bytes <= 0 or window_bytes % TCE_PAGE_SIZE:
        raise ValueError(
            f"DMA window of {window_bytes:#x} bytes is not a positive multiple of 4 KiB"
        )
    return window_bytes // TCE_PAGE_SIZE


def tce_table_bytes(window_bytes: int) -> int:
    """Bytes of machine memory a table for `window_bytes` of I/O space needs (whole pages)."""
    raw = _window_entries(window_bytes) * TCE_ENTRY_BYTES
    return -(-raw // PAGE_SIZE) * PAGE_SIZE


class TceTable:
    """One LIOBN's TCE table: 8 bytes per 4 KiB of window, at `table_maddr` in memory.

    The constructor does not clear the table (it may describe one restored from a memory
    image); whoever allocates a new table zeroes it first.
    """

    def __init__(
        self, memory: MachineMemory, liobn: int, table_maddr: int, window_bytes: int
    ) -> None:
        self.entries = _window_entries(window_bytes)
        if table_maddr < 0 or table_maddr % PAGE_SIZE:
            raise ValueError(f"TCE table address {table_maddr:#x} is not page aligned")
        self.table_bytes = tce_table_bytes(window_bytes)
        if table_maddr + self.table_bytes > memory.size:
            raise ValueError(
                f"TCE table of liobn {liobn:#x} at {table_maddr:#x}+{self.table_bytes:#x} "
                f"lies outside machine memory of {memory.size:#x}"
            )
        self.memory = memory
        self.liobn = liobn
        self.table_maddr = table_maddr
        self.window_bytes = window_bytes
        self.enabled = True

    def __repr__(self) -> str:
        return (
            f"TceTable(liobn={self.liobn:#x}, table_maddr={self.table_maddr:#x}, "
            f"window_bytes={self.window_bytes:#x})"
        )

    # -- entries ------------------------------------------------------------------------
    def index(self, ioba: int) -> int:
        """The entry number translating `ioba`; ValueError unless aligned and in the window."""
        if ioba % TCE_PAGE_SIZE:
            raise ValueError(f"liobn {self.liobn:#x}: ioba {ioba:#x} is not 4 KiB aligned")
        if not 0 <= ioba < self.window_bytes:
            raise ValueError(
                f"liobn {self.liobn:#x}: ioba {ioba:#x} is outside the DMA window "
                f"0..{self.window_bytes - 1:#x}"
            )
        return ioba // TCE_PAGE_SIZE

    def entry_maddr(self, ioba: int) -> int:
        """Machine address of the TCE for `ioba` (validated as in `index`)."""
        return self.table_maddr + self.index(ioba) * TCE_ENTRY_BYTES

    def put(self, ioba: int, tce: int) -> None:
        """Store `tce` (machine RPN << 12 | WRITE | READ) for the page at `ioba`."""
        self._check_enabled()
        if tce & ~TCE_VALID_BITS:
            raise ValueError(
                f"liobn {self.liobn:#x}: TCE {tce:#x} sets bits outside RPN|WRITE|READ "
                f"({tce & ~TCE_VALID_BITS:#x})"
            )
        self.memory.write_u64(self.entry_maddr(ioba), tce)

    def get(self, ioba: int) -> int:
        """The TCE currently translating the page at `ioba`."""
        self._check_enabled()
        return self.memory.read_u64(self.entry_maddr(ioba))

    def disable(self) -> None:
        """Tear the window down: every later DMA faults (its memory may be reused)."""
        self.enabled = False

    def _check_enabled(self) -> None:
        if not self.enabled:
            raise ValueError(f"TCE table of liobn {self.liobn:#x} has been torn down")

    # -- DMA ------------------------------------------------------------------------------
    def translate(self, ioba: int, nbytes: int, write: bool) -> list[tuple[int, int]]:
        """Machine (address, length) pieces of a transfer, machine-contiguous runs merged.

        `write` = the device stores into memory (needs TCE_PAGE_WRITE), else it reads
        (needs TCE_PAGE_READ). Raises `DmaFault` for the first page that refuses.
        """
        if nbytes < 0:
            raise ValueError(f"liobn {self.liobn:#x}: DMA length {nbytes} is negative")
        if not self.enabled:
            raise DmaFault(self.liobn, ioba, "the TCE table has been torn down")
        if ioba < 0 or ioba + nbytes > self.window_bytes:
            raise DmaFault(
                self.liobn,
                ioba,
                f"{nbytes} bytes at ioba {ioba:#x} leave the DMA window "
                f"0..{self.window_bytes - 1:#x}",
            )
        need = TCE_PAGE_WRITE if write else TCE_PAGE_READ
        pieces: list[tuple[int, int]] = []
        pos, end = ioba, ioba + nbytes
        while pos < end:
            page = pos - pos % TCE_PAGE_SIZE
            tce = self.memory.read_u64(self.table_maddr + (page // TCE_PAGE_SIZE) * TCE_ENTRY_BYTES)
            if not tce & (TCE_PAGE_READ | TCE_PAGE_WRITE):
                raise DmaFault(self.liobn, page, "no TCE maps this page")
            if not tce & need:
                what = "write" if write else "read"
                raise DmaFault(self.liobn, page, f"the TCE {tce:#x} does not allow the {what}")
            length = min(end, page + TCE_PAGE_SIZE) - pos
            maddr = (tce & TCE_RPN_MASK) + pos % TCE_PAGE_SIZE
            if maddr + length > self.memory.size:
                raise DmaFault(self.liobn, page, f"TCE {tce:#x} points beyond machine memory")
            if pieces and pieces[-1][0] + pieces[-1][1] == maddr:
                pieces[-1] = (pieces[-1][0], pieces[-1][1] + length)
            else:
                pieces.append((maddr, length))
            pos += length
        return pieces

    def dma_read(self, ioba: int, nbytes: int) -> bytes:
        """The device reads `nbytes` of memory from `ioba` (all checked before reading)."""
        pieces = self.translate(ioba, nbytes, write=False)
        return b"".join(self.memory.read(maddr, n) for maddr, n in pieces)

    def dma_write(self, ioba: int, data: bytes | bytearray | memoryview) -> None:
        """The device stores `data` at `ioba`; a refused transfer writes nothing at all."""
        pieces = self.translate(ioba, len(data), write=True)
        view = memoryview(data)
        off = 0
        for maddr, n in pieces:
            self.memory.write(maddr, view[off : off + n])
            off += n
