"""Event channels: per-domain port table and the pending/mask bitmaps in shared_info.

The bitmaps are arrays of 64-bit big-endian longs in guest memory (bit n of the bitmap is
bit n % 64 of long n / 64), exactly what the guest's 0x500 handler scans with ldarx/stdcx.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final

from framework.hw970.memory import MachineMemory
from framework.xen.public.event_channel import NR_EVENT_CHANNELS
from framework.xen.public.xen import EVTCHN_MASK_OFF, EVTCHN_PENDING_OFF, VCPU_INFO

# Offsets inside vcpu_info (Xen also reads the selector for the upcall trace record).
PENDING_SEL_OFF: Final = VCPU_INFO.offset("evtchn_pending_sel")
_UPCALL_PENDING_OFF: Final = VCPU_INFO.offset("evtchn_upcall_pending")


class PortState(IntEnum):
    FREE = 0
    RESERVED = 1
    UNBOUND = 2
    INTERDOMAIN = 3
    PIRQ = 4
    VIRQ = 5
    IPI = 6


@dataclass(slots=True)
class Port:
    state: PortState = PortState.FREE
    remote_dom: int = -1  # UNBOUND: who may bind; INTERDOMAIN: the peer
    remote_port: int = 0
    virq: int = -1
    notify_vcpu: int = 0


@dataclass
class EvtchnTable:
    """A domain's ports; port 0 is reserved as in Xen's evtchn_init."""

    ports: list[Port] = field(default_factory=lambda: [Port(PortState.RESERVED)])

    def alloc(self) -> int:
        """Lowest free port (ENOSPC when all 4096 are used)."""
        for i, p in enumerate(self.ports):
            if p.state == PortState.FREE:
                return i
        if len(self.ports) >= NR_EVENT_CHANNELS:
            raise OverflowError("no free event channel port")
        self.ports.append(Port())
        return len(self.ports) - 1

    def get(self, port: int) -> Port | None:
        if 0 <= port < len(self.ports) and self.ports[port].state != PortState.FREE:
            return self.ports[port]
        return None

    def valid(self, port: int) -> bool:
        return 0 <= port < len(self.ports)


def _test_and_set(mem: MachineMemory, word_addr: int, bit: int) -> bool:
    word = mem.read_u64(word_addr)
    if word & (1 << bit):
        return True
    mem.write_u64(word_addr, word | (1 << bit))
    return False


def set_pending(mem: MachineMemory, shared_info: int, vcpu_info: int, port: int) -> bool:
    """Mark `port` pending (evtchn_set_pending); True if the VCPU must be notified.

    Returns False when the port was already pending, is masked, or its selector bit was
    already set (the guest will find it on the scan it is already due to make).
    """
    word, bit = divmod(port, 64)
    if _test_and_set(mem, shared_info + EVTCHN_PENDING_OFF + 8 * word, bit):
        return False
    if mem.read_u64(shared_info + EVTCHN_MASK_OFF + 8 * word) & (1 << bit):
        return False
    if _test_and_set(mem, vcpu_info + PENDING_SEL_OFF, word):
        return False
    mem.write_u8(vcpu_info + _UPCALL_PENDING_OFF, 1)
    return True


def clear_port(mem: MachineMemory, shared_info: int, port: int) -> None:
    """Clear pending and mask bits of a closed port."""
    word, bit = divmod(port, 64)
    for off in (EVTCHN_PENDING_OFF, EVTCHN_MASK_OFF):
        addr = shared_info + off + 8 * word
        mem.write_u64(addr, mem.read_u64(addr) & ~(1 << bit))


def is_pending(mem: MachineMemory, shared_info: int, port: int) -> bool:
    word, bit = divmod(port, 64)
    return bool(mem.read_u64(shared_info + EVTCHN_PENDING_OFF + 8 * word) & (1 << bit))


def unmask(mem: MachineMemory, shared_info: int, vcpu_info: int, port: int) -> bool:
    """Clear the mask bit; if the port is pending, re-raise the upcall (evtchn_unmask)."""
    word, bit = divmod(port, 64)
    maddr = shared_info + EVTCHN_MASK_OFF + 8 * word
    was = mem.read_u64(maddr)
    mem.write_u64(maddr, was & ~(1 << bit))
    sel = vcpu_info + PENDING_SEL_OFF
    if (
        was & (1 << bit)
        and is_pending(mem, shared_info, port)
        and not _test_and_set(mem, sel, word)
    ):
        mem.write_u8(vcpu_info + _UPCALL_PENDING_OFF, 1)
        return True
    return False
