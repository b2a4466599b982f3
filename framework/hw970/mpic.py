"""The MPIC (OpenPIC) interrupt controller: external sources and inter-processor interrupts.

Every external interrupt goes to Xen first (HID4.LPES0 = 0), so the MPIC only records
what is pending per CPU and tells whoever drives that CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

NR_SOURCES: Final = 128
NR_IPIS: Final = 4  # IPI vectors follow the external sources


class Mpic:
    """Pending external sources and IPIs per physical CPU."""

    def __init__(self, ncpus: int, nsources: int = NR_SOURCES) -> None:
        self.ncpus = ncpus
        self.nsources = nsources
        self.pending: list[set[int]] = [set() for _ in range(ncpus)]
        self.routing: dict[int, int] = {}
        self.on_raise: Callable[[int, int], None] = lambda cpu, vector: None

    def route(self, source: int, cpu: int) -> None:
        if not 0 <= source < self.nsources:
            raise ValueError(f"MPIC source {source} out of range 0..{self.nsources - 1}")
        self.routing[source] = cpu

    def raise_irq(self, source: int) -> int:
        """Assert an external source; returns the CPU it was delivered to."""
        cpu = self.routing.get(source, 0)
        self.pending[cpu].add(source)
        self.on_raise(cpu, source)
        return cpu

    def send_ipi(self, cpu: int, ipi: int) -> None:
        if not 0 <= ipi < NR_IPIS:
            raise ValueError(f"IPI {ipi} out of range 0..{NR_IPIS - 1}")
        vector = self.nsources + ipi
        self.pending[cpu].add(vector)
        self.on_raise(cpu, vector)

    def ack_ipi(self, cpu: int, ipi: int) -> None:
        self.pending[cpu].discard(self.nsources + ipi)

    def ack(self, cpu: int, source: int) -> None:
        self.pending[cpu].discard(source)
