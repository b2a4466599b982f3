"""Machine memory: big-endian accessors, bounds, zeroing."""

from __future__ import annotations

import pytest

from framework.errors import MachineCheck
from framework.hw970.memory import MachineMemory


def test_big_endian_accessors_and_bounds() -> None:
    mem = MachineMemory(1 << 20)
    mem.write_u64(0x100, 0x0102030405060708)
    assert mem.read(0x100, 8) == bytes(range(1, 9))
    assert mem.read_u32(0x104) == 0x05060708
    assert mem.read_u16(0x106) == 0x0708
    with pytest.raises(MachineCheck):
        mem.read_u64((1 << 20) - 4)


@pytest.mark.parametrize(("start", "length"), [(0x1234, 0x40000), (0x1000, 0x1000), (5, 17)])
def test_zero_clears_exactly_the_range(start: int, length: int) -> None:
    mem = MachineMemory(1 << 20)
    mem.write(0, b"\xff" * (1 << 19))
    mem.zero(start, length)
    data = mem.read(0, 1 << 19)
    assert data[start : start + length] == bytes(length)
    assert data[:start] == b"\xff" * start
    assert data[start + length :] == b"\xff" * ((1 << 19) - start - length)
