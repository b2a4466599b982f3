"""The kernel page pool: lowest page first, exhaustion and bad frees are loud."""

import pytest

from framework.errors import OutOfPages
from framework.guest.pages import PagePool


def test_pages_come_lowest_first_and_frees_are_reused() -> None:
    pool = PagePool(0x10000, 0x14000)
    pages = [pool.alloc() for _ in range(4)]
    assert pages == [0x10000, 0x11000, 0x12000, 0x13000]
    with pytest.raises(OutOfPages, match="no free page"):
        pool.alloc()
    pool.free(0x12000)
    pool.free(0x11000)
    assert pool.alloc() == 0x11000
    assert pool.in_use == 3


def test_bad_frees_are_refused() -> None:
    pool = PagePool(0x10000, 0x14000)
    page = pool.alloc()
    pool.free(page)
    with pytest.raises(ValueError, match="not an allocated page"):
        pool.free(page)
    with pytest.raises(ValueError, match="not an allocated page"):
        pool.free(0x13000)
