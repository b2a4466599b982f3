"""Architected state of one execution context (a VCPU's, or Xen's own) that Unicorn lacks.

MSR and translation inputs (`TranslationState`), SRR0/1, DAR, DSISR, the SPRGs, PIR and
the 970's 32-bit decrementer: what a switch saves and restores, and what a saved domain
carries besides its memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from framework.hw970.engines import HwContext
from framework.hw970.mmu import TranslationState


@dataclass(slots=True)
class Decrementer:
    """The 970's 32-bit DEC, kept relative to the timebase so it runs in simulated time."""

    value: int = 0x7FFFFFFF  # value last written
    written_tb: int = 0  # timebase when written
    armed: bool = False  # an interrupt is due when it goes negative

    def read(self, tb: int) -> int:
        return (self.value - (tb - self.written_tb)) & 0xFFFFFFFF

    def write(self, value: int, tb: int) -> None:
        self.value = value & 0xFFFFFFFF
        self.written_tb = tb
        # Writing a negative value raises no interrupt by itself (970FX UM 4.5.10).
        self.armed = not self.value & 0x80000000

    def expiry_tb(self) -> int | None:
        """Timebase at which bit 0 turns 1 (the interrupt condition), if armed."""
        return self.written_tb + self.value + 1 if self.armed else None


@dataclass(slots=True, eq=False)
class ArchState:
    """Architected state of one execution context that Unicorn does not keep.

    Compared by identity (eq=False): two contexts with equal registers are still two.
    """

    tr: TranslationState = field(default_factory=TranslationState)
    srr0: int = 0
    srr1: int = 0
    dar: int = 0
    dsisr: int = 0
    sprg: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    dec: Decrementer = field(default_factory=Decrementer)
    pir: int = 0
    #: The Unicorn instance holding this context's registers and translations (made
    #: when a core first loads it; None again makes the next load start afresh).
    hw: HwContext | None = None
    #: Initial register values, written into the context when a core next loads it.
    boot_regs: dict[int, int] | None = None
    #: Who this context belongs to (the hypervisor's VCPU object); opaque to hw970.
    #: (Any, not object: mypyc's dataclass support resolves annotations by name.)
    owner: Any = None
    #: Interrupts taken in a row with no instruction completed in between: a context
    #: whose vector itself faults never progresses, and the core gives up on it.
    exc_streak: int = 0
