"""xencomm copies between Xen and guest memory, through each domain's own p2m."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from framework.errors import XencommError
from framework.hw970.memory import MachineMemory
from framework.xen.mm import FrameAllocator, PhysMap
from framework.xen.public.xencomm import (
    XENCOMM_INLINE_FLAG,
    XENCOMM_INVALID,
    XENCOMM_MAGIC,
    XENCOMM_MAX_ADDRS,
    build_descriptor,
    descriptor_for_buffer,
)
from framework.xen.xencomm import Xencomm

MiB = 1 << 20
RMA = 64 * MiB
DESC_GPA = 0x100000  # where the guest puts its descriptors
EFAULT = 14
EINVAL = 22


class Machine:
    """A 1 GiB machine with domains A and B, laid out so A's memory is machine-discontiguous.

    Order of allocation: A's RMA, B's RMA, A's extents, B's extents. So A's last RMA page
    and A's first extent page are guest-adjacent but far apart in machine memory.
    """

    def __init__(self) -> None:
        self.mem = MachineMemory(1 << 30)
        fa = FrameAllocator([(0, 1 << 30)])
        a_rma = fa.alloc_aligned(RMA, RMA, "A RMA")
        b_rma = fa.alloc_aligned(RMA, RMA, "B RMA")
        self.a = PhysMap(a_rma, RMA >> 12, fa.alloc_extents(32 * MiB, 16 * MiB, "A"))
        self.b = PhysMap(b_rma, RMA >> 12, fa.alloc_extents(32 * MiB, 16 * MiB, "B"))
        self.xa = Xencomm(self.mem, self.a.pfn_to_mfn)

    def maddr(self, pm: PhysMap, gpa: int) -> int:
        """Machine address of a guest-physical address of `pm`'s domain."""
        return (pm.pfn_to_mfn(gpa >> 12) << 12) | (gpa & 0xFFF)

    def guest_write(self, pm: PhysMap, gpa: int, data: bytes) -> None:
        """What the guest kernel does with its own stores (within one page)."""
        assert (gpa & 0xFFF) + len(data) <= 4096
        self.mem.write(self.maddr(pm, gpa), data)

    def put_descriptor(self, addrs: list[int], gpa: int = DESC_GPA) -> int:
        """Domain A writes a descriptor at `gpa` and returns the handle naming it."""
        self.guest_write(self.a, gpa, build_descriptor(addrs))
        return gpa


@pytest.fixture
def m() -> Iterator[Machine]:
    machine = Machine()
    yield machine
    machine.mem.close()


def pattern(n: int, seed: int = 1) -> bytes:
    return bytes((i * 7 + seed) & 0xFF for i in range(n))


def test_layout_is_machine_discontiguous(m: Machine) -> None:
    last_rma = m.a.pfn_to_mfn((RMA >> 12) - 1)
    first_ext = m.a.pfn_to_mfn(RMA >> 12)
    assert first_ext != last_rma + 1


def test_descriptor_round_trip_over_discontiguous_frames(m: Machine) -> None:
    buf = RMA - 0x800  # straddles the RMA/extent boundary in guest-physical space
    addrs = descriptor_for_buffer(buf, 0x1000)
    assert addrs == [RMA - 0x800, RMA]
    handle = m.put_descriptor(addrs)
    data = pattern(0x1000)
    assert m.xa.chunks(handle, 0x1000) == [
        (m.maddr(m.a, RMA - 0x800), 0x800),
        (m.maddr(m.a, RMA), 0x800),
    ]
    m.xa.copy_to_guest(handle, data)
    assert m.mem.read(m.maddr(m.a, RMA - 0x800), 0x800) == data[:0x800]
    assert m.mem.read(m.maddr(m.a, RMA), 0x800) == data[0x800:]
    assert m.xa.copy_from_guest(handle, 0x1000) == data
    assert m.xa.copy_from_guest(handle, 0x100, offset=0x7C0) == data[0x7C0:0x8C0]


def test_offset_skips_whole_entries_and_writes_partially(m: Machine) -> None:
    handle = m.put_descriptor([0x5000, 0x9000, 0x3000])
    m.xa.copy_to_guest(handle, b"xyz", offset=4096 + 4095)
    assert m.mem.read(m.maddr(m.a, 0x9FFF), 1) == b"x"
    assert m.mem.read(m.maddr(m.a, 0x3000), 2) == b"yz"
    assert m.xa.chunks(handle, 0) == []


def test_bad_magic_is_efault_and_writes_nothing(m: Machine) -> None:
    target = 0x7000
    m.guest_write(m.a, target, b"\xaa" * 64)
    bad = b"XCOX" + (0xFFFFFFFF).to_bytes(4, "big") + target.to_bytes(8, "big")
    m.guest_write(m.a, DESC_GPA, bad)
    with pytest.raises(XencommError) as exc:
        m.xa.copy_to_guest(DESC_GPA, b"\x55" * 64)
    assert exc.value.errno == EFAULT
    assert "magic" in str(exc.value)  # checked before the absurd nr_addrs
    assert m.mem.read(m.maddr(m.a, target), 64) == b"\xaa" * 64


def test_untranslatable_address_fails_without_writing(m: Machine) -> None:
    first = 0x8000
    beyond = m.a.memory_bytes  # the first pfn A does not own
    handle = m.put_descriptor([first, beyond])
    m.guest_write(m.a, first, bytes(4096))
    with pytest.raises(XencommError) as exc:
        m.xa.copy_to_guest(handle, b"\xff" * 8192)
    assert exc.value.errno == EFAULT
    assert "not translatable" in str(exc.value)
    assert m.mem.read(m.maddr(m.a, first), 4096) == bytes(4096)
    # The same descriptor is fine for a copy that stays in the first page.
    m.xa.copy_to_guest(handle, b"\xff" * 4096)
    assert m.mem.read(m.maddr(m.a, first), 4096) == b"\xff" * 4096


def test_copy_past_described_buffer_is_efault(m: Machine) -> None:
    handle = m.put_descriptor([0xA000])
    with pytest.raises(XencommError, match="runs past the 4096 bytes") as exc:
        m.xa.copy_to_guest(handle, b"\x01" * 4097)
    assert exc.value.errno == EFAULT
    assert m.mem.read(m.maddr(m.a, 0xA000), 4096) == bytes(4096)
    with pytest.raises(XencommError):
        m.xa.copy_from_guest(handle, 16, offset=4090)


def test_invalid_entries_are_skipped(m: Machine) -> None:
    handle = m.put_descriptor([XENCOMM_INVALID, 0xB000, XENCOMM_INVALID, 0xD800])
    data = pattern(4096 + 0x800, seed=3)
    m.xa.copy_to_guest(handle, data)
    assert m.mem.read(m.maddr(m.a, 0xB000), 4096) == data[:4096]
    assert m.mem.read(m.maddr(m.a, 0xD800), 0x800) == data[4096:]
    assert m.xa.copy_from_guest(handle, len(data)) == data


def test_inline_handle(m: Machine) -> None:
    gpa = RMA - 0x10
    handle = gpa | XENCOMM_INLINE_FLAG
    data = pattern(0x20, seed=9)
    m.xa.copy_to_guest(handle, data)
    assert m.mem.read(m.maddr(m.a, RMA - 0x10), 0x10) == data[:0x10]
    assert m.mem.read(m.maddr(m.a, RMA), 0x10) == data[0x10:]
    assert len(m.xa.chunks(handle, 0x20)) == 2  # guest-contiguous, not machine-contiguous
    assert m.xa.copy_from_guest(handle, 0x10, offset=8) == data[8:0x18]
    end = m.a.memory_bytes - 4
    with pytest.raises(XencommError) as exc:
        m.xa.copy_to_guest(end | XENCOMM_INLINE_FLAG, b"12345678")
    assert exc.value.errno == EFAULT
    assert m.mem.read(m.maddr(m.a, end), 4) == bytes(4)


def test_inline_chunks_merge_machine_adjacent_pages(m: Machine) -> None:
    handle = 0x2000 | XENCOMM_INLINE_FLAG
    assert m.xa.chunks(handle, 3 * 4096) == [(m.maddr(m.a, 0x2000), 3 * 4096)]


def test_descriptor_must_fit_its_page(m: Machine) -> None:
    with pytest.raises(XencommError, match="crosses its page") as exc:
        m.xa.copy_from_guest(DESC_GPA + 0xFFC, 4)
    assert exc.value.errno == EFAULT
    # Header in the last 8 bytes of the page: room for no address at all.
    m.guest_write(m.a, DESC_GPA + 0xFF8, XENCOMM_MAGIC.to_bytes(4, "big") + b"\0\0\0\1")
    with pytest.raises(XencommError, match="only 0 fit") as exc:
        m.xa.copy_from_guest(DESC_GPA + 0xFF8, 4)
    assert exc.value.errno == EFAULT


def test_descriptor_handle_must_be_owned(m: Machine) -> None:
    with pytest.raises(XencommError, match="descriptor") as exc:
        m.xa.copy_from_guest(m.a.memory_bytes + 0x40, 4)
    assert exc.value.errno == EFAULT


def test_negative_sizes_are_einval(m: Machine) -> None:
    with pytest.raises(XencommError) as exc:
        m.xa.chunks(DESC_GPA, -1)
    assert exc.value.errno == EINVAL


def test_domain_cannot_reach_another_domains_frames(m: Machine) -> None:
    b_frames = [m.maddr(m.b, gpa) for gpa in (0x5000, 0)]
    for addr in b_frames:
        m.mem.write(addr, b"\xbb" * 4096)
    # 1) Naming B's memory by B's *machine* address: to A's p2m that is a pfn it lacks.
    b_machine = m.b.pfn_to_mfn(0) << 12
    assert b_machine >= m.a.memory_bytes
    handle = m.put_descriptor([b_machine])
    with pytest.raises(XencommError) as exc:
        m.xa.copy_to_guest(handle, b"\x11" * 4096)
    assert exc.value.errno == EFAULT
    with pytest.raises(XencommError):
        m.xa.copy_to_guest(b_machine | XENCOMM_INLINE_FLAG, b"\x11")
    # 2) Naming B's pfn 5: the same number in A's space is A's own page 5.
    handle = m.put_descriptor([0x5000])
    m.xa.copy_to_guest(handle, b"\x22" * 4096)
    for maddr, _ in m.xa.chunks(handle, 4096):
        assert m.a.owns_mfn(maddr >> 12) and not m.b.owns_mfn(maddr >> 12)
    assert m.mem.read(m.maddr(m.a, 0x5000), 4096) == b"\x22" * 4096
    for addr in b_frames:
        assert m.mem.read(addr, 4096) == b"\xbb" * 4096


def test_guest_side_helpers() -> None:
    assert descriptor_for_buffer(0x1000, 0x1000) == [0x1000]
    assert descriptor_for_buffer(0x1FFF, 2) == [0x1FFF, 0x2000]
    assert descriptor_for_buffer(0x1234, 0x3000) == [0x1234, 0x2000, 0x3000, 0x4000]
    assert descriptor_for_buffer(0x1000, 0) == []
    raw = build_descriptor([0x1234, XENCOMM_INVALID])
    assert raw[:4] == b"XCOM" and int.from_bytes(raw[4:8], "big") == 2
    assert raw[8:16] == (0x1234).to_bytes(8, "big") and raw[16:] == b"\xff" * 8
    assert len(build_descriptor([0] * XENCOMM_MAX_ADDRS)) == 4096
    with pytest.raises(ValueError, match="do not fit"):
        build_descriptor([0] * (XENCOMM_MAX_ADDRS + 1))
