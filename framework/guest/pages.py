"""The kernel's page allocator: 4 KiB guest pages for rings, buffers and grant targets.

Lowest free page first, so a run's allocations depend only on its history (determinism).
"""

from __future__ import annotations

import heapq

from framework.errors import OutOfPages
from framework.hw970.memory import PAGE_SIZE


class PagePool:
    """Pages of guest-physical memory in [start, end), handed out one at a time."""

    def __init__(self, start: int, end: int) -> None:
        if start % PAGE_SIZE or end % PAGE_SIZE or end <= start:
            raise ValueError(f"page pool [{start:#x}, {end:#x}) is not whole pages")
        self.start = start
        self.end = end
        self._next = start
        self._freed: list[int] = []
        self._free_set: set[int] = set()
        self.in_use = 0

    def alloc(self) -> int:
        if self._freed:
            gpa = heapq.heappop(self._freed)
            self._free_set.discard(gpa)
        elif self._next < self.end:
            gpa = self._next
            self._next += PAGE_SIZE
        else:
            raise OutOfPages(
                f"kernel page pool [{self.start:#x}, {self.end:#x}) has no free page "
                f"({self.in_use} in use)"
            )
        self.in_use += 1
        return gpa

    def free(self, gpa: int) -> None:
        if gpa % PAGE_SIZE or not self.start <= gpa < self._next or gpa in self._free_set:
            raise ValueError(f"free of page {gpa:#x}: not an allocated page of this pool")
        heapq.heappush(self._freed, gpa)
        self._free_set.add(gpa)
        self.in_use -= 1

    # -- suspend and resume (the pool's state goes into the suspend record) ----------------
    @property
    def next_free(self) -> int:
        """The lowest page never handed out."""
        return self._next

    @property
    def freed(self) -> list[int]:
        """Pages handed out and given back (free again)."""
        return list(self._freed)

    def restore(self, next_free: int, freed: list[int]) -> None:
        """Take the state a suspended kernel's pool recorded."""
        if not self.start <= next_free <= self.end or next_free % PAGE_SIZE:
            raise ValueError(f"page pool restore: next page {next_free:#x} outside the pool")
        self._next = next_free
        self._freed = sorted(freed)
        self._free_set = set(freed)
        self.in_use = (next_free - self.start) // PAGE_SIZE - len(freed)
