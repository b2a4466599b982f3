"""One hostile call: the registers of an `sc 1`, the bytes it needs in the caller's memory,
and the instruction words the caller executes after it.  Calls are plain data, so a
failing batch is written out and replayed exactly (`python -m fuzz.hostile_guest --replay`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from framework.xen.public.papr import PAPR_NAMES
from framework.xen.public.xen import HCALL_NAMES, XEN_MARK

#: Argument registers: r4..r11.
NR_ARGS: Final = 8


@dataclass(frozen=True)
class Call:
    """`sc 1` with r3 = `r3` and r4..r11 = `args`, after `writes` into the caller's memory
    (guest-physical address, bytes); then the caller executes `words`."""

    r3: int
    args: tuple[int, ...]
    writes: tuple[tuple[int, bytes], ...] = ()
    words: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if len(self.args) != NR_ARGS:
            raise ValueError(f"a call has {NR_ARGS} argument registers, not {len(self.args)}")

    @property
    def name(self) -> str:
        """The hypercall as Xen's entry names it."""
        if self.r3 & XEN_MARK == XEN_MARK:
            nr = self.r3 & 0xFFFF
            return HCALL_NAMES.get(nr) or f"hcall_{nr}"
        return PAPR_NAMES.get(self.r3) or f"papr_{self.r3:#x}"

    def describe(self) -> str:
        """One line: `memory_op(0x6, 0x600000, ...) +2 writes; words 0x7c0004ac`."""
        text = f"{self.name}({', '.join(hex(a) for a in self.args)})"
        if self.writes:
            text += " " + " ".join(f"[{gpa:#x}]={data.hex()}" for gpa, data in self.writes)
        if self.words:
            text += "; words " + " ".join(f"{w:#010x}" for w in self.words)
        return text

    def as_json(self) -> dict[str, Any]:
        return {
            "r3": hex(self.r3),
            "args": [hex(a) for a in self.args],
            "writes": [[hex(gpa), data.hex()] for gpa, data in self.writes],
            "words": [hex(w) for w in self.words],
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Call:
        return cls(
            int(doc["r3"], 16),
            tuple(int(a, 16) for a in doc["args"]),
            tuple((int(gpa, 16), bytes.fromhex(data)) for gpa, data in doc["writes"]),
            tuple(int(w, 16) for w in doc["words"]),
        )


__all__ = ["NR_ARGS", "Call"]
