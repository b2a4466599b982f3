"""Biased argument values: what a hostile guest names when it wants to hurt.

Each picker mixes the values that follow from the machine (`World`: the fuzzer's own
domain id and memory, its victims, their frames, grants and ports) with boundary values
(0, the last valid one, the first invalid one, all ones) and plain random bits, and puts
the structures and xencomm descriptors a call needs into the call's own argument slot.
"""

from __future__ import annotations

import random
from typing import Final

from framework.xen.public.arch_powerpc import FOREIGN_GPA_BASE, FOREIGN_SLOTS, NR_GRANT_FRAMES
from framework.xen.public.event_channel import NR_EVENT_CHANNELS
from framework.xen.public.grant_table import NR_GRANT_ENTRIES
from framework.xen.public.xen import DOMID_FIRST_RESERVED, DOMID_SELF, MAX_VIRT_CPUS
from framework.xen.public.xencomm import (
    XENCOMM_HEADER,
    XENCOMM_INLINE_FLAG,
    XENCOMM_INVALID,
    XENCOMM_MAGIC,
    build_descriptor,
    descriptor_for_buffer,
)

from .layout import ARG_SLOT
from .world import World

MASK64: Final = (1 << 64) - 1
_IO_HOLE: Final = (2 << 30, 4 << 30)


class Picker:
    """Draws biased values from `rng` for calls of the fuzzing domain in `world`, and
    lays out what a call needs in memory in its slot [slot, slot + ARG_SLOT)."""

    def __init__(self, world: World, rng: random.Random, slot: int) -> None:
        self.world = world
        self.rng = rng
        self._next = slot
        self._end = slot + ARG_SLOT
        self.writes: list[tuple[int, bytes]] = []

    # -- basics ------------------------------------------------------------------------
    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def one(self, options: tuple[int, ...] | list[int]) -> int:
        return options[self.rng.randrange(len(options))]

    def bits(self, n: int) -> int:
        return self.rng.getrandbits(n)

    def weighted(self, table: tuple[tuple[int, int], ...]) -> int:
        """A value of (weight, value) pairs."""
        total = sum(w for w, _ in table)
        at = self.rng.randrange(total)
        for w, value in table:
            if at < w:
                return value
            at -= w
        raise AssertionError("unreachable")

    def boundary(self, width: int) -> int:
        """0, 1, the top bit, all ones, or random bits of a `width`-bit field."""
        top = 1 << (8 * width)
        return self.one([0, 1, 2, top >> 1, top - 1, top - 2, self.bits(8 * width)])

    def count(self) -> int:
        """A count: small and valid mostly, else the limits and far beyond them."""
        if self.chance(0.6):
            return self.rng.randrange(0, 5)
        return self.one([16, 128, 129, 511, 512, 513, 4096, 4097, 1 << 31, (1 << 32) - 1])

    # -- what a domain names -------------------------------------------------------------
    def domid(self, *, victims: bool = True) -> int:
        """DOMID_SELF, itself, a victim, its own scratch domains, dom0, and ids no domain
        has: the next free one, reserved ones (DOMID_IO, DOMID_XEN, ...), 16-bit and wider
        garbage.  `victims=False` leaves the victims out (privileged calls that would
        legitimately change them, see `calls`)."""
        w = self.world
        others = [d for d in w.domains if d != w.fuzzer and (victims or d not in w.victims)]
        r = self.rng.random()
        if r < 0.2:
            return DOMID_SELF
        if r < 0.35:
            return w.fuzzer
        if r < 0.65 and others:
            return self.one(others)
        return self.one(
            [
                max(w.domains) + 1,
                DOMID_FIRST_RESERVED - 1,
                DOMID_FIRST_RESERVED + 1 + self.rng.randrange(15),
                0x8000,
                0xFFFF,
                self.bits(16),
                self.bits(32),
            ]
        )

    def vcpu(self) -> int:
        n = self.world.vcpus
        return self.one([0, 0, n - 1, n, MAX_VIRT_CPUS - 1, MAX_VIRT_CPUS, (1 << 32) - 1])

    def port(self) -> int:
        """Its own ports, ports offered to it (by number), and ports beyond the table."""
        w = self.world
        r = self.rng.random()
        if r < 0.35 and w.own_ports:
            return self.one(w.own_ports)
        if r < 0.55 and w.offered_ports:
            return self.one([p for _d, p in w.offered_ports])
        return self.one([0, 1, 2, 63, 64, NR_EVENT_CHANNELS - 1, NR_EVENT_CHANNELS, self.bits(32)])

    def grant(self) -> tuple[int, int]:
        """(domain, ref): a grant offered to it mostly, else any domain and any ref."""
        w = self.world
        if w.grants and self.chance(0.6):
            return w.grants[self.rng.randrange(len(w.grants))]
        ref = self.one([0, 1, 2, 8, NR_GRANT_ENTRIES - 1, NR_GRANT_ENTRIES, self.bits(32)])
        return self.domid(), ref

    def pfn(self, *, buffer: bool = False) -> int:
        """Its own frames, its grant-frame pfns, foreign-area slots, the I/O hole, other
        domains' and Xen's machine frames named as pfns, and beyond everything.  For a
        `buffer` Xen writes into, not its own first two pages (its exception vectors) nor
        its xenstore and console rings: it would only crash itself."""
        w = self.world
        r = self.rng.random()
        if r < 0.35:
            rings = (w.rma_bytes >> 12) - 3, (w.rma_bytes >> 12) - 2
            own = [p for p in w.own_pfns if p > 1 and p not in rings] if buffer else w.own_pfns
            return self.one(own)
        if r < 0.45:
            return w.max_page + self.rng.randrange(NR_GRANT_FRAMES + 1)
        if r < 0.55:
            slots = list(w.foreign_slots) or [0]
            return (FOREIGN_GPA_BASE >> 12) + self.one([*slots, FOREIGN_SLOTS, 1 << 21])
        if r < 0.6:
            return self.rng.randrange(*_IO_HOLE) >> 12
        if r < 0.85:
            return self.one(w.other_frames)
        return self.one([w.memory_bytes >> 12, (w.memory_bytes >> 12) - 1, self.bits(52)])

    def gpa(self) -> int:
        """A guest-physical address (for a buffer): its argument area, anywhere in its RMA,
        the last bytes of its memory (straddling the end), beyond it, or a frame `pfn`
        names."""
        w = self.world
        r = self.rng.random()
        if r < 0.3:
            return self.rng.randrange(*w.args)
        if r < 0.4:
            return self.rng.randrange(w.rma_bytes)
        if r < 0.5:
            return w.memory_bytes - self.rng.randrange(1, 64)
        if r < 0.9:
            return (self.pfn(buffer=True) << 12) | self.rng.randrange(4096)
        return self.one([0, 0xFFF, MASK64, 1 << 63, self.bits(64)])

    def timeout(self) -> int:
        """Simulated times: none, past, near, far, beyond 2**50 ns and 2**63."""
        now = self.world.now_ns
        return self.one([0, 1, now, now + 1000, now + 10**7, 1 << 50, 1 << 62, 1 << 63, MASK64])

    # -- memory --------------------------------------------------------------------------
    def put(self, data: bytes, align: int = 8) -> int:
        """Place `data` in the call's slot (cut to what is left of it); its address."""
        at = -(-self._next // align) * align
        data = data[: max(self._end - at, 0)]
        self._next = at + len(data)
        if data:
            self.writes.append((at, data))
        return at

    def garbage(self, n: int) -> bytes:
        """Zeros or random bytes: what a field not set explicitly holds."""
        return bytes(n) if self.chance(0.5) else self.rng.randbytes(n)

    def handle(self, data: bytes) -> int:
        """A xencomm handle for a buffer holding `data`: a descriptor with the right magic
        mostly, an inline handle, or one of the ways a handle can be wrong."""
        gpa = self.put(data)
        r = self.rng.random()
        if r < 0.7:
            return self.descriptor(descriptor_for_buffer(gpa, max(len(data), 1)))
        if r < 0.8:
            return XENCOMM_INLINE_FLAG | gpa
        return self.bad_handle(gpa)

    def descriptor(self, addrs: list[int]) -> int:
        return self.put(build_descriptor(addrs))

    def unreadable_handle(self, gpa: int) -> int:
        """A handle Xen can never read: a descriptor (naming `gpa`) in the call's slot with
        the wrong magic or a count that runs off its page, or a header crossing the slot's
        page end."""
        kind = self.rng.randrange(3)
        if kind == 0:
            magic = self.bits(32) or 1
            magic = magic if magic != XENCOMM_MAGIC else magic + 1
            return self.put(XENCOMM_HEADER.pack(magic, 1) + (gpa & MASK64).to_bytes(8, "big"))
        if kind == 1:
            return self.put(XENCOMM_HEADER.pack(XENCOMM_MAGIC, 0xFFFFFFFF))
        return (self._next | 0xFFF) - 3

    def bad_handle(self, gpa: int) -> int:
        """Wrong magic, a count that runs off the page, addresses of someone else, ~0
        entries, a descriptor crossing its page, inline over the end, or junk."""
        kind = self.rng.randrange(8)
        if kind == 0:
            return self.put(XENCOMM_HEADER.pack(self.bits(32), 1) + gpa.to_bytes(8, "big"))
        if kind == 1:
            count = self.one([511, 512, (1 << 32) - 1])
            return self.put(XENCOMM_HEADER.pack(XENCOMM_MAGIC, count) + gpa.to_bytes(8, "big"))
        if kind == 2:
            return self.descriptor([self.gpa() for _ in range(self.rng.randrange(1, 4))])
        if kind == 3:
            return self.descriptor([XENCOMM_INVALID] * self.rng.randrange(0, 3))
        if kind == 4:
            return (gpa | 0xFFF) - self.rng.randrange(7)  # a descriptor crossing its page
        if kind == 5:
            return XENCOMM_INLINE_FLAG | self.gpa()
        if kind == 6:
            return self.gpa()
        return self.one([0, MASK64, self.bits(64)])


__all__ = ["MASK64", "Picker"]
