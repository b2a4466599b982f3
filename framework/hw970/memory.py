"""Machine memory: one sparse anonymous mapping shared by every core (and devices).

Pages are only backed once touched, so a 4 GiB machine costs what the run uses.
All multi-byte accesses here are big-endian, as the 970 sees memory.

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
from typing import Final

from framework.errors import MachineCheck

_U16: Final = struct.Struct(">H")
_U32: Final = struct.Struct(">I")
_U64: Final = struct.Struct(">Q")

PAGE_SHIFT: Final = 12
PAGE_SIZE: Final = 1 << PAGE_SHIFT

GIB: Final = 1 << 30
#: Machine addresses 2-4 GiB are the I/O hole (U3/U4 host bridge windows); RAM beyond
#: 2 GiB is decoded from 4 GiB up instead.
IO_HOLE_START: Final = 2 * GIB
IO_HOLE_END: Final = 4 * GIB


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

    def read(self, addr: int, n: int) -> bytes:
        self._check(addr, n)
        return self._map[addr : addr + n]

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        self._check(addr, len(data))
        self._map[addr : addr + len(data)] = data

    def zero(self, addr: int, n: int) -> None:
        """Zero a range; whole pages are handed back to the host (they read as zero and
        cost nothing until touched again), so clearing a 64 MiB RMA is not 64 MiB of work."""
        self._check(addr, n)
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

    def read_u16(self, addr: int) -> int:
        if addr < 0 or addr + 2 > self.low_end:
            self._out_of_range(addr, 2)
        return _U16.unpack_from(self._map, addr)[0]

    def write_u16(self, addr: int, value: int) -> None:
        if addr < 0 or addr + 2 > self.low_end:
            self._out_of_range(addr, 2)
        _U16.pack_into(self._map, addr, value & 0xFFFF)

    def read_u32(self, addr: int) -> int:
        if addr < 0 or addr + 4 > self.low_end:
            self._out_of_range(addr, 4)
        return _U32.unpack_from(self._map, addr)[0]

    def write_u32(self, addr: int, value: int) -> None:
        if addr < 0 or addr + 4 > self.low_end:
            self._out_of_range(addr, 4)
        _U32.pack_into(self._map, addr, value & 0xFFFFFFFF)

    def read_u64(self, addr: int) -> int:
        if addr < 0 or addr + 8 > self.low_end:
            self._out_of_range(addr, 8)
        return _U64.unpack_from(self._map, addr)[0]

    def write_u64(self, addr: int, value: int) -> None:
        if addr < 0 or addr + 8 > self.low_end:
            self._out_of_range(addr, 8)
        _U64.pack_into(self._map, addr, value & 0xFFFFFFFFFFFFFFFF)

    def close(self) -> None:
        """Release the mapping (only once no core uses it any more)."""
        self.buf.release()
        self._cbuf = None  # the export must be gone before the mmap can close
        self._map.close()
