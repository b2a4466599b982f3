"""Architected state of one execution context (a VCPU's, or Xen's own) that Unicorn lacks.

MSR and translation inputs (`TranslationState`), SRR0/1, DAR, DSISR, the SPRGs, PIR and
the 970's 32-bit decrementer: what a switch saves and restores, and what a saved domain
carries besides its memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from unicorn.ppc_const import (
    UC_PPC_REG_0,
    UC_PPC_REG_CR,
    UC_PPC_REG_CTR,
    UC_PPC_REG_FPR0,
    UC_PPC_REG_LR,
    UC_PPC_REG_PC,
    UC_PPC_REG_XER,
)

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


#: Keys of a context's register map beyond the GPRs (0..31): the PC, LR, CTR, XER, CR,
#: and FPR i at REG_FPR0 + i (what a saved domain carries of each VCPU's registers).
REG_PC: Final = -1
REG_LR: Final = -2
REG_CTR: Final = -3
REG_XER: Final = -4
REG_CR: Final = -5
REG_FPR0: Final = 100
#: Unicorn's id of each non-GPR key.
UC_REGISTER_OF: Final = {
    REG_PC: UC_PPC_REG_PC,
    REG_LR: UC_PPC_REG_LR,
    REG_CTR: UC_PPC_REG_CTR,
    REG_XER: UC_PPC_REG_XER,
    REG_CR: UC_PPC_REG_CR,
    **{REG_FPR0 + i: UC_PPC_REG_FPR0 + i for i in range(32)},
}


def context_registers(state: ArchState) -> dict[int, int]:
    """The registers of a context that is not running on a core (its own Unicorn
    instance, or the initial values it has not loaded yet), by the keys above."""
    if state.boot_regs is not None:
        return dict(state.boot_regs)
    hw = state.hw
    if hw is None:
        return {}
    glue = hw.glue
    out = {n: glue.reg_read(UC_PPC_REG_0 + n) for n in range(32)}
    for key, reg in UC_REGISTER_OF.items():
        out[key] = glue.reg_read(reg)
    return out
