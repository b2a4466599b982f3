"""Machine memory: one sparse anonymous mapping shared by every core (and devices).

Pages are only backed once touched, so a 4 GiB machine costs what the run uses.
All multi-byte accesses here are big-endian, as the 970 sees memory.

Memory also knows which of its pages hold code the cores may execute (`code_flags`,
kept by the cores' code tracking, code_pages.py): a host write to such a page releases it,
and every watcher (each machine's CoreBus) makes its cores forget the code translated
from it before they run again, so code is scanned again whoever rewrote it.

The 970 boards decode machine addresses 2-4 GiB to the U3/U4 host bridge windows (the I/O
hole), so RAM beyond 2 GiB continues at 4 GiB: a 4 GiB machine has RAM at [0, 2 GiB) and
[4 GiB, 6 GiB) (XEN-PPC-FACTS.md, "Memory beyond the RMA"; the firmware's /memory reg has
two ranges).  The mapping spans [0, top of RAM) with the hole inside it, and every access
to the hole or beyond the top is a machine check, as one beyond RAM always was.
"""

from __future__ import annotations

import ctypes
import mmap
import struct
import weakref
from typing import Final, Protocol

import numpy as np

from framework.errors import MachineCheck

_U16: Final = struct.Struct(">H")
_U32: Final = struct.Struct(">I")
_U64: Final = struct.Struct(">Q")

PAGE_SHIFT: Final = 12
PAGE_SIZE: Final = 1 << PAGE_SHIFT

GIB: Final = 1 << 30
#: Page flags in `MachineMemory.code_flags` (mirrored in _mmu.c): the page is admitted
#: code (scanned; the cores may execute it and must not write it), and the page after
#: this one is, so that one look-up tells whether a write of up to a page reaches code
#: (the flag is 0 for nearly every write: the writes check nothing more then).
CODE_EXEC: Final = 1
CODE_NEXT_EXEC: Final = 2
_IN_PAGE: Final = PAGE_SIZE - 1
#: Smallest `fill` that looks for zeros first (below it, `write` is as cheap).
_FILL_MIN: Final = 64 * PAGE_SIZE
#: `MachineMemory.code_info` per page: generation (bumped at each release) << 16, and the
#: low bits of the TLB epoch + 1 of the last time a core was let write it (see _mmu.c).
CODE_GEN_ONE: Final = 1 << 16
CODE_WSTAMP: Final = 0xFFFF

#: Machine addresses 2-4 GiB are the I/O hole (U3/U4 host bridge windows); RAM beyond
#: 2 GiB is decoded from 4 GiB up instead.
IO_HOLE_START: Final = 2 * GIB
IO_HOLE_END: Final = 4 * GIB


class CodeWatcher(Protocol):
    """Told when a host write released admitted code pages (a machine's CodeMap)."""

    def pages_released(self) -> None: ...


def memory_ranges(memory_bytes: int) -> list[tuple[int, int]]:
    """Machine RAM ranges (base, size) for `memory_bytes` of RAM, skipping the I/O hole."""
    if memory_bytes <= IO_HOLE_START:
        return [(0, memory_bytes)]
    return [(0, IO_HOLE_START), (IO_HOLE_END, memory_bytes - IO_HOLE_START)]


class MachineMemory:
    """Byte-addressed machine (real) memory backed by an anonymous mmap.

    `ram_bytes` of RAM laid out by `memory_ranges`; `size` is the top of RAM (the end of
    the machine address span the cores map), which equals `ram_bytes` up to 2 GiB.
    """

    def __init__(self, ram_bytes: int) -> None:
        if ram_bytes <= 0 or ram_bytes % PAGE_SIZE:
            raise ValueError(
                f"machine memory size {ram_bytes:#x} is not a positive number of pages"
            )
        self.ram_bytes = ram_bytes
        #: RAM as (base, size) ranges, lowest first.
        self.ranges = memory_ranges(ram_bytes)
        last_base, last_size = self.ranges[-1]
        self.size = last_base + last_size
        #: End of the RAM below the hole: accesses below it need no further check.
        self.low_end = self.ranges[0][1]
        #: Start of the RAM above the hole (the top of RAM when there is none).
        self.high_start = self.ranges[-1][0] if len(self.ranges) > 1 else self.size
        self._map = mmap.mmap(-1, self.size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self._cbuf: ctypes.c_char | None = ctypes.c_char.from_buffer(self._map)
        #: Host address of the mapping, handed to every Unicorn core (mem_map_ptr).
        self.ptr = ctypes.addressof(self._cbuf)
        self.buf = memoryview(self._map)
        # Code pages: one flag byte and one info word per page of the span, sparse too.
        npages = self.size >> PAGE_SHIFT
        self._flags_map = mmap.mmap(-1, npages, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self._info_map = mmap.mmap(-1, npages * 8, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self._flags_cbuf: ctypes.c_char | None = ctypes.c_char.from_buffer(self._flags_map)
        self._info_cbuf: ctypes.c_char | None = ctypes.c_char.from_buffer(self._info_map)
        #: Host addresses of the code flags and infos, for the C TLB fill.
        self.code_flags_ptr = ctypes.addressof(self._flags_cbuf)
        self.code_info_ptr = ctypes.addressof(self._info_cbuf)
        #: Per page: CODE_EXEC | CODE_NEXT_EXEC.
        self.code_flags = self._flags_map
        #: Per page: generation << 16 | W stamp (native byte order, as C reads it).
        self.code_info = memoryview(self._info_map).cast("Q")
        #: Weak: a watcher (a machine's CodeMap) that is gone has no core left to tell.
        self._code_watchers: list[weakref.ref[CodeWatcher]] = []

    def is_ram(self, addr: int, n: int = 1) -> bool:
        """Whether machine addresses [addr, addr + n) are all RAM (none in the I/O hole)."""
        end = addr + n
        if addr < 0 or n < 0:
            return False
        return end <= self.low_end or (self.high_start <= addr and end <= self.size)

    def _check(self, addr: int, n: int) -> None:
        if addr < 0 or addr + n > self.low_end:
            self._out_of_range(addr, n)

    # The fixed-size accessors below test the bounds inline against the RAM below the hole
    # (they are the hottest calls of the simulator; on a machine of 2 GiB or less that is
    # all of it) and only call this for the rest, which raises unless it is RAM above the
    # hole.
    def _out_of_range(self, addr: int, n: int) -> None:
        if self.is_ram(addr, n):
            return
        if addr + n > IO_HOLE_START and addr < IO_HOLE_END and addr + n <= self.size:
            raise MachineCheck(f"machine address {addr:#x}+{n} is in the 2-4GiB I/O hole, not RAM")
        raise MachineCheck(f"machine address {addr:#x}+{n} outside memory of {self.size:#x}")

    # -- code pages --------------------------------------------------------------------
    def watch_code(self, watcher: CodeWatcher) -> None:
        """Tell `watcher` whenever a host write releases admitted code pages (for as long
        as it lives)."""
        self._code_watchers = [w for w in self._code_watchers if w() is not None]
        self._code_watchers.append(weakref.ref(watcher))

    def admit_code(self, page: int) -> None:
        """Page number `page` is scanned code: the cores may execute it, not write it."""
        self.code_flags[page] |= CODE_EXEC
        if page > 0:
            self.code_flags[page - 1] |= CODE_NEXT_EXEC

    def release_code(self, page: int) -> None:
        """Page number `page` is written, by the host or by a core's store: no longer
        admitted, its scan and what the cores translated from it are stale."""
        self.code_flags[page] &= ~CODE_EXEC
        if page > 0:
            self.code_flags[page - 1] &= ~CODE_NEXT_EXEC
        self.code_info[page] += CODE_GEN_ONE

    def _code_written(self, addr: int, n: int) -> None:
        """A host write of [addr, addr + n) may reach admitted code: release what it did."""
        first, last = addr >> PAGE_SHIFT, (addr + n - 1) >> PAGE_SHIFT
        flags = self.code_flags[first : last + 1]
        if flags.count(0) == len(flags):
            return
        pages = [first + i for i, f in enumerate(flags) if f & CODE_EXEC]
        if not pages:
            return
        for page in pages:
            self.release_code(page)
        for ref in self._code_watchers:
            watcher = ref()
            if watcher is not None:
                watcher.pages_released()

    # -- access --------------------------------------------------------------------------
    def read(self, addr: int, n: int) -> bytes:
        self._check(addr, n)
        return self._map[addr : addr + n]

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        n = len(data)
        self._check(addr, n)
        self._map[addr : addr + n] = data
        f = self.code_flags[addr >> PAGE_SHIFT]
        if n > PAGE_SIZE or (f and (f & CODE_EXEC or (addr & _IN_PAGE) + n > PAGE_SIZE)):
            self._code_written(addr, n)

    def view(self, addr: int, n: int, write: bool = False) -> memoryview:
        """[addr, addr + n) without a copy, for bulk moves (a file read into dom0's buffer,
        a batch written from it); `write`: code admitted from those pages is released
        first, as `write` does. The caller releases the view when done."""
        self._check(addr, n)
        if write and n:
            self._code_written(addr, n)
        return self.buf[addr : addr + n]

    def fill(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        """`write` for bulk data (a restored domain's pages): where `data` and memory are
        both zero, memory is left as it is, so pages never written stay unallocated on
        the host, as a fresh domain's untouched memory is. Same result as `write`."""
        n = len(data)
        self._check(addr, n)
        if (
            n >= _FILL_MIN
            and not n & 7
            and not np.frombuffer(data, dtype=np.uint64).max()
            and not np.frombuffer(self.buf[addr : addr + n], dtype=np.uint64).max()
        ):
            return
        self.write(addr, data)

    def zero(self, addr: int, n: int) -> None:
        """Zero a range; whole pages are handed back to the host (they read as zero and
        cost nothing until touched again), so clearing a 64 MiB RMA is not 64 MiB of work."""
        self._check(addr, n)
        if n > PAGE_SIZE or (n and self.code_flags[addr >> PAGE_SHIFT]):
            self._code_written(addr, n)
        start = -(-addr // PAGE_SIZE) * PAGE_SIZE
        end = (addr + n) // PAGE_SIZE * PAGE_SIZE
        if end - start >= 16 * PAGE_SIZE:
            self._map[addr:start] = bytes(start - addr)
            self._map.madvise(mmap.MADV_DONTNEED, start, end - start)
            self._map[end : addr + n] = bytes(addr + n - end)
        else:
            self._map[addr : addr + n] = bytes(n)

    def read_u8(self, addr: int) -> int:
        if addr < 0 or addr + 1 > self.low_end:
            self._out_of_range(addr, 1)
        return self._map[addr]

    def write_u8(self, addr: int, value: int) -> None:
        if addr < 0 or addr + 1 > self.low_end:
            self._out_of_range(addr, 1)
        self._map[addr] = value & 0xFF
        if self.code_flags[addr >> PAGE_SHIFT] & CODE_EXEC:
            self._code_written(addr, 1)

    def read_u16(self, addr: int) -> int:
        if addr < 0 or addr + 2 > self.low_end:
            self._out_of_range(addr, 2)
        return _U16.unpack_from(self._map, addr)[0]

    def write_u16(self, addr: int, value: int) -> None:
        if addr < 0 or addr + 2 > self.low_end:
            self._out_of_range(addr, 2)
        _U16.pack_into(self._map, addr, value & 0xFFFF)
        f = self.code_flags[addr >> PAGE_SHIFT]
        if f and (f & CODE_EXEC or (addr & _IN_PAGE) > PAGE_SIZE - 2):
            self._code_written(addr, 2)

    def read_u32(self, addr: int) -> int:
        if addr < 0 or addr + 4 > self.low_end:
            self._out_of_range(addr, 4)
        return _U32.unpack_from(self._map, addr)[0]

    def write_u32(self, addr: int, value: int) -> None:
        if addr < 0 or addr + 4 > self.low_end:
            self._out_of_range(addr, 4)
        _U32.pack_into(self._map, addr, value & 0xFFFFFFFF)
        f = self.code_flags[addr >> PAGE_SHIFT]
        if f and (f & CODE_EXEC or (addr & _IN_PAGE) > PAGE_SIZE - 4):
            self._code_written(addr, 4)

    def read_u64(self, addr: int) -> int:
        if addr < 0 or addr + 8 > self.low_end:
            self._out_of_range(addr, 8)
        return _U64.unpack_from(self._map, addr)[0]

    def write_u64(self, addr: int, value: int) -> None:
        if addr < 0 or addr + 8 > self.low_end:
            self._out_of_range(addr, 8)
        _U64.pack_into(self._map, addr, value & 0xFFFFFFFFFFFFFFFF)
        f = self.code_flags[addr >> PAGE_SHIFT]
        if f and (f & CODE_EXEC or (addr & _IN_PAGE) > PAGE_SIZE - 8):
            self._code_written(addr, 8)

    def close(self) -> None:
        """Release the mapping (only once no core uses it any more)."""
        self.buf.release()
        self.code_info.release()
        # The exports must be gone before the mmaps can close.
        self._cbuf = self._flags_cbuf = self._info_cbuf = None
        self._map.close()
        self._flags_map.close()
        self._info_map.close()
