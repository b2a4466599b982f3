"""TCE tables: entries in machine memory, translation, permissions, refused DMA."""

from __future__ import annotations

import random

import pytest

from framework.errors import DmaFault
from framework.hw970.iommu import TCE_PAGE_READ, TCE_PAGE_WRITE, TceTable, tce_table_bytes
from framework.hw970.memory import MachineMemory

RW = TCE_PAGE_READ | TCE_PAGE_WRITE
TABLE = 0x10000
WINDOW = 1 << 20  # 256 entries


@pytest.fixture
def mem() -> MachineMemory:
    return MachineMemory(4 << 20)


@pytest.fixture
def table(mem: MachineMemory) -> TceTable:
    return TceTable(mem, 0x7, TABLE, WINDOW)


def test_table_bytes_are_page_rounded() -> None:
    assert tce_table_bytes(WINDOW) == 4096  # 256 entries * 8 = 2 KiB -> one page
    assert tce_table_bytes(512 * 4096) == 4096
    assert tce_table_bytes(513 * 4096) == 8192
    with pytest.raises(ValueError, match="not a positive multiple of 4 KiB"):
        tce_table_bytes(4097)


def test_put_stores_a_big_endian_doubleword_per_page(mem: MachineMemory, table: TceTable) -> None:
    table.put(0x3000, 0x0123_4567_8000 | RW)
    assert mem.read(TABLE + 3 * 8, 8) == bytes.fromhex("0000012345678003")
    assert table.get(0x3000) == 0x0123_4567_8000 | RW
    assert table.get(0x2000) == 0
    # A second table over the same memory sees the same entries: the state is the memory.
    assert TceTable(mem, 0x7, TABLE, WINDOW).get(0x3000) == 0x0123_4567_8000 | RW


@pytest.mark.parametrize(
    ("ioba", "message"),
    [(0x1001, "not 4 KiB aligned"), (WINDOW, "outside the DMA window"), (-4096, "outside")],
)
def test_put_and_get_refuse_bad_iobas(table: TceTable, ioba: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        table.put(ioba, 0x5000 | RW)
    with pytest.raises(ValueError, match=message):
        table.get(ioba)


def test_put_refuses_reserved_bits(table: TceTable) -> None:
    with pytest.raises(ValueError, match="outside RPN"):
        table.put(0, 0x5000 | RW | 0x4)


def test_translate_splits_at_pages_and_merges_contiguous_frames(table: TceTable) -> None:
    table.put(0x0000, 0x20000 | RW)
    table.put(0x1000, 0x21000 | RW)  # machine-contiguous with the first
    table.put(0x2000, 0x40000 | RW)
    pieces = table.translate(0x0800, 0x2000, write=True)
    assert pieces == [(0x20800, 0x1800), (0x40000, 0x800)]
    assert sum(n for _, n in pieces) == 0x2000
    assert table.translate(0x2100, 0x10, write=False) == [(0x40100, 0x10)]


def test_permissions_are_the_devices(table: TceTable) -> None:
    table.put(0x0000, 0x20000 | TCE_PAGE_READ)
    table.put(0x1000, 0x21000 | TCE_PAGE_WRITE)
    assert table.translate(0x0, 8, write=False) == [(0x20000, 8)]
    with pytest.raises(DmaFault, match="does not allow the write") as e:
        table.translate(0x0, 8, write=True)
    assert (e.value.liobn, e.value.ioba) == (0x7, 0x0)
    assert table.translate(0x1000, 8, write=True) == [(0x21000, 8)]
    with pytest.raises(DmaFault, match="does not allow the read"):
        table.translate(0x1000, 8, write=False)


def test_unmapped_and_out_of_window_transfers_fault(table: TceTable) -> None:
    table.put(0x0000, 0x20000 | RW)
    with pytest.raises(DmaFault, match="no TCE maps this page") as e:
        table.translate(0x0F00, 0x200, write=True)  # crosses into the unmapped page 1
    assert e.value.ioba == 0x1000
    with pytest.raises(DmaFault, match="leave the DMA window"):
        table.translate(WINDOW - 8, 16, write=False)


def test_tce_beyond_machine_memory_faults(table: TceTable) -> None:
    table.put(0x0000, (64 << 20) | RW)
    with pytest.raises(DmaFault, match="beyond machine memory"):
        table.dma_read(0, 16)


def test_dma_round_trip_through_scattered_pages(mem: MachineMemory, table: TceTable) -> None:
    table.put(0x0000, 0x30000 | RW)
    table.put(0x1000, 0x50000 | RW)
    data = bytes(range(256)) * 24  # 6 KiB across two machine pages
    table.dma_write(0x0400, data)
    assert mem.read(0x30400, 0xC00) == data[:0xC00]
    assert mem.read(0x50000, 0xC00) == data[0xC00:]
    assert table.dma_read(0x0400, len(data)) == data


def test_refused_dma_changes_no_byte(mem: MachineMemory, table: TceTable) -> None:
    table.put(0x0000, 0x30000 | RW)
    table.put(0x1000, 0x31000 | TCE_PAGE_READ)  # the second page is read-only for the device
    before = mem.read(0x30000, 0x2000)
    with pytest.raises(DmaFault):
        table.dma_write(0x0800, b"\xaa" * 0x1000)  # first half would be allowed
    assert mem.read(0x30000, 0x2000) == before


def test_disabled_table_faults_every_dma(table: TceTable) -> None:
    table.put(0x0000, 0x30000 | RW)
    table.disable()
    with pytest.raises(DmaFault, match="torn down"):
        table.dma_read(0, 8)
    with pytest.raises(ValueError, match="torn down"):
        table.put(0, 0)


def test_table_must_be_aligned_and_inside_memory(mem: MachineMemory) -> None:
    with pytest.raises(ValueError, match="not page aligned"):
        TceTable(mem, 1, 0x10008, WINDOW)
    with pytest.raises(ValueError, match="outside machine memory"):
        TceTable(mem, 1, mem.size - 4096, 1 << 30)


def test_dma_matches_a_byte_by_byte_model(mem: MachineMemory, table: TceTable) -> None:
    """Seeded random mappings and transfers: every byte lands where its TCE says."""
    rng = random.Random(970)
    frames = rng.sample(range(0x100, 0x300), 32)
    for page, frame in enumerate(frames):
        table.put(page * 4096, (frame << 12) | RW)
    for _ in range(50):
        ioba = rng.randrange(0, 31 * 4096)
        n = rng.randrange(1, 32 * 4096 - ioba)
        data = rng.randbytes(n)
        table.dma_write(ioba, data)
        for k in (0, n // 2, n - 1):
            a = ioba + k
            assert mem.read_u8((frames[a // 4096] << 12) + a % 4096) == data[k]
        assert table.dma_read(ioba, n) == data
        assert sum(length for _, length in table.translate(ioba, n, write=False)) == n
