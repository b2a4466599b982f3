"""Machine memory: one sparse anonymous mapping shared by every core (and devices).

Pages are only backed once touched, so a 4 GiB machine costs what the run uses.
All multi-byte accesses here are big-endian, as the 970 sees memory.
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


class MachineMemory:
    """Byte-addressed machine (real) memory backed by an anonymous mmap."""

    def __init__(self, size: int) -> None:
        if size <= 0 or size % PAGE_SIZE:
            raise ValueError(f"machine memory size {size:#x} is not a positive number of pages")
        self.size = size
        self._map = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self._cbuf: ctypes.c_char | None = ctypes.c_char.from_buffer(self._map)
        #: Host address of the mapping, handed to every Unicorn core (mem_map_ptr).
        self.ptr = ctypes.addressof(self._cbuf)
        self.buf = memoryview(self._map)

    def _check(self, addr: int, n: int) -> None:
        if addr < 0 or addr + n > self.size:
            self._out_of_range(addr, n)

    # The fixed-size accessors below test the bounds inline (they are the hottest calls
    # of the simulator) and only call this to raise.
    def _out_of_range(self, addr: int, n: int) -> None:
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
        if addr < 0 or addr + 1 > self.size:
            self._out_of_range(addr, 1)
        return self._map[addr]

    def write_u8(self, addr: int, value: int) -> None:
        if addr < 0 or addr + 1 > self.size:
            self._out_of_range(addr, 1)
        self._map[addr] = value & 0xFF

    def read_u16(self, addr: int) -> int:
        if addr < 0 or addr + 2 > self.size:
            self._out_of_range(addr, 2)
        return _U16.unpack_from(self._map, addr)[0]

    def write_u16(self, addr: int, value: int) -> None:
        if addr < 0 or addr + 2 > self.size:
            self._out_of_range(addr, 2)
        _U16.pack_into(self._map, addr, value & 0xFFFF)

    def read_u32(self, addr: int) -> int:
        if addr < 0 or addr + 4 > self.size:
            self._out_of_range(addr, 4)
        return _U32.unpack_from(self._map, addr)[0]

    def write_u32(self, addr: int, value: int) -> None:
        if addr < 0 or addr + 4 > self.size:
            self._out_of_range(addr, 4)
        _U32.pack_into(self._map, addr, value & 0xFFFFFFFF)

    def read_u64(self, addr: int) -> int:
        if addr < 0 or addr + 8 > self.size:
            self._out_of_range(addr, 8)
        return _U64.unpack_from(self._map, addr)[0]

    def write_u64(self, addr: int, value: int) -> None:
        if addr < 0 or addr + 8 > self.size:
            self._out_of_range(addr, 8)
        _U64.pack_into(self._map, addr, value & 0xFFFFFFFFFFFFFFFF)

    def close(self) -> None:
        """Release the mapping (only once no core uses it any more)."""
        self.buf.release()
        self._cbuf = None  # the export must be gone before the mmap can close
        self._map.close()
