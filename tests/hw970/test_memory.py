"""Machine memory: big-endian accessors, bounds, zeroing."""

from __future__ import annotations

import pytest

from framework.errors import MachineCheck
from framework.hw970.memory import CODE_EXEC, CODE_GEN_ONE, PAGE_SIZE, MachineMemory


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


def test_ram_above_2gib_starts_at_4gib() -> None:
    """A 4 GiB board: RAM [0, 2 GiB) and [4 GiB, 6 GiB); the 2-4 GiB I/O hole is no RAM."""
    gib = 1 << 30
    mem = MachineMemory(4 * gib)
    assert mem.ranges == [(0, 2 * gib), (4 * gib, 2 * gib)]
    assert mem.size == 6 * gib and mem.ram_bytes == 4 * gib
    mem.write_u64(2 * gib - 8, 0x1122334455667788)
    mem.write_u64(4 * gib, 0x0102030405060708)
    mem.write_u32(6 * gib - 4, 0xCAFEF00D)
    assert mem.read_u64(2 * gib - 8) == 0x1122334455667788
    assert mem.read(4 * gib, 8) == bytes(range(1, 9))
    assert mem.read_u32(6 * gib - 4) == 0xCAFEF00D
    for addr in (2 * gib, 3 * gib, 4 * gib - 8, 2 * gib - 4):  # in (or across into) the hole
        with pytest.raises(MachineCheck, match="I/O hole"):
            mem.read_u64(addr)
        with pytest.raises(MachineCheck, match="I/O hole"):
            mem.write_u8(addr + 4, 0xFF)
    with pytest.raises(MachineCheck, match="outside memory"):
        mem.read_u64(6 * gib - 4)
    with pytest.raises(MachineCheck, match="I/O hole"):
        mem.write(2 * gib - 16, bytes(32))
    assert mem.is_ram(0, 2 * gib) and mem.is_ram(4 * gib, 2 * gib)
    assert not mem.is_ram(2 * gib - 4096, 8192) and not mem.is_ram(6 * gib, 1)


def test_machines_of_2gib_or_less_are_one_flat_range() -> None:
    for size in (256 << 20, 2 << 30):
        mem = MachineMemory(size)
        assert mem.ranges == [(0, size)] and mem.size == size
        with pytest.raises(MachineCheck, match="outside memory"):
            mem.read_u8(size)


class _Watcher:
    def __init__(self) -> None:
        self.calls = 0

    def pages_released(self) -> None:
        self.calls += 1


def test_a_host_write_releases_exactly_the_code_pages_it_reaches() -> None:
    mem = MachineMemory(1 << 20)
    watcher = _Watcher()
    mem.watch_code(watcher)
    mem.admit_code(5)
    gen = mem.code_info[5]
    mem.write_u64(4 * PAGE_SIZE + PAGE_SIZE - 8, 1)  # the page before, up to its end
    mem.write(6 * PAGE_SIZE, b"x" * 100)  # the page after
    mem.write_u8(3 * PAGE_SIZE, 1)
    assert watcher.calls == 0 and mem.code_flags[5] & CODE_EXEC
    mem.write_u32(4 * PAGE_SIZE + PAGE_SIZE - 2, 0)  # straddles into the code page
    assert watcher.calls == 1
    assert not mem.code_flags[5] & CODE_EXEC and not mem.code_flags[4]
    assert mem.code_info[5] == gen + CODE_GEN_ONE  # a new generation: scanned again
    mem.admit_code(5)
    mem.zero(0, 64 * PAGE_SIZE)  # a scrub releases it too
    assert watcher.calls == 2 and not mem.code_flags[5]
    del watcher  # a watcher that is gone is not called
    mem.admit_code(5)
    mem.write_u8(5 * PAGE_SIZE, 0)
    assert not mem.code_flags[5]


def test_fill_writes_zeros_over_data_and_leaves_untouched_zeros_alone() -> None:
    mem = MachineMemory(64 << 20)
    n = 1 << 20
    mem.write(0x100000, b"\x5a" * n)
    mem.fill(0x100000, bytes(n))  # zeros over data: written
    assert mem.read(0x100000, n) == bytes(n)
    mem.fill(0x400000, bytes(n))  # zeros over zeros: same result, nothing touched
    assert mem.read(0x400000, n) == bytes(n)
    data = bytes(range(256)) * (n // 256)
    mem.fill(0x800000, data)
    assert mem.read(0x800000, n) == data
