"""The PAPR hcalls through the real `sc 1` entry, as the port's `papr/*.c` answer them:
H_ENTER's H_EXACT, H_CLEAR_REF/H_CLEAR_MOD's old PTE word, the console and DABR calls,
unimplemented tokens, and the privileged domain's direct MFN mappings."""

from __future__ import annotations

from collections.abc import Callable

from framework.simulation import Simulation
from framework.xen.public.papr import (
    H_CLEAR_MOD,
    H_CLEAR_REF,
    H_ENTER,
    H_GET_TERM_CHAR,
    H_PARAMETER,
    H_PUT_TERM_CHAR,
    H_READ,
    H_REMOVE,
    H_SET_DABR,
    H_SUCCESS,
)
from tests.xen.xenharness import Caller, domain_named

# PTE second-word bits as the 970 user manual numbers them (bit 63 is the LSB).
PTE_R = 1 << (63 - 55)
PTE_C = 1 << (63 - 56)
PP_RW = 0x2
H_EXACT_FROM_HEADER = 1 << (63 - 24)  # asm-powerpc/papr.h


def free_group(c: Caller, start: int) -> int:
    """First PTE group at or after `start` whose eight slots are all invalid."""
    group = start
    while any(c.mem.read_u64(c.dom.htab_maddr + (group + i) * 16) & 1 for i in range(8)):
        group += 8
    return group


def test_h_exact_puts_the_pte_in_the_slot_named(caller: Callable[[str], Caller]) -> None:
    c = caller("guest3")
    group = free_group(c, 8 * 301)
    hi, lo = (0x6100 << 7) | 1, (7 << 12) | PP_RW
    assert c.call(H_ENTER, H_EXACT_FROM_HEADER, group + 5, hi, lo) == H_SUCCESS
    assert c.core.gpr(4) == group + 5
    # Without H_EXACT the first free slot of the group is taken; the old value 0x80 of
    # H_EXACT is no flag at all.
    assert c.call(H_ENTER, 0x80, group + 6, hi + (1 << 7), lo) == H_SUCCESS
    assert c.core.gpr(4) == group


def test_clear_ref_and_clear_mod_return_the_old_pte_word(
    caller: Callable[[str], Caller],
) -> None:
    c = caller("guest3")
    ptex = free_group(c, 8 * 401)
    lo = (9 << 12) | PTE_R | PTE_C | PP_RW  # as the guest writes it: RPN = pfn 9
    assert c.call(H_ENTER, H_EXACT_FROM_HEADER, ptex, (0x6200 << 7) | 1, lo) == H_SUCCESS
    assert c.call(H_CLEAR_REF, 0, ptex) == H_SUCCESS
    assert c.core.gpr(4) == lo  # the whole old word, R and C set, not just the R bit
    assert c.call(H_CLEAR_MOD, 0, ptex) == H_SUCCESS
    assert c.core.gpr(4) == lo & ~PTE_R  # R already cleared by H_CLEAR_REF
    assert c.call(H_READ, 0, ptex) == H_SUCCESS
    assert c.core.gpr(5) == lo & ~(PTE_R | PTE_C)
    assert c.call(H_REMOVE, 0, ptex) == H_SUCCESS


def test_valid_token_without_a_handler_is_h_parameter_and_logged(
    caller: Callable[[str], Caller], booted: Simulation
) -> None:
    c = caller("guest1")
    # 0x24 (H_SET_SPRG0 in PAPR) is a valid token the port never implemented.
    assert c.call(0x24) == H_PARAMETER
    log = booted.xen.conring.read(16384, clear=False).decode()
    assert f"unsupported PAPR hcall 0x24 was called by dom{c.dom.domid:#x}" in log


def test_put_term_char_writes_the_domains_console(caller: Callable[[str], Caller]) -> None:
    c = caller("guest2")
    text = b"vterm ok\n"
    r6 = int.from_bytes(text[:8], "big")
    r7 = int.from_bytes(text[8:].ljust(8, b"\0"), "big")
    assert c.call(H_PUT_TERM_CHAR, 0, len(text), r6, r7) == H_SUCCESS
    assert c.dom.console_text[-1] == "vterm ok"
    assert c.call(H_PUT_TERM_CHAR, 0, 17, r6, r7) == H_PARAMETER  # 16 characters at most
    assert c.call(H_GET_TERM_CHAR, 0) == H_SUCCESS
    assert c.core.gpr(4) == 0  # no characters waiting


def test_set_dabr_is_kept_per_vcpu(caller: Callable[[str], Caller]) -> None:
    c = caller("guest2")
    dabr = 0x0000_0000_0040_0000 | (1 << 1)  # break on writes to 4 MiB (DABR_DW)
    assert c.call(H_SET_DABR, dabr) == H_SUCCESS
    assert c.dom.vcpus[0].dabr == dabr


def test_dom0_may_name_another_domains_machine_frame(booted: Simulation) -> None:
    """mm.c pfn2mfn: "MFN mappings are for dom0" - a privileged domain's pfn that is
    another domain's machine frame maps that frame (mfn = pfn); a domU cannot."""
    dom0 = Caller(booted, domain_named(booted, "Domain-0"))
    guest2 = Caller(booted, domain_named(booted, "guest2"))
    other = domain_named(booted, "guest3")
    mfn = other.rma_mfn + 3  # guest3's pfn 3
    assert dom0.dom.phys is not None and not dom0.dom.phys.owns_mfn(mfn)
    ptex = free_group(dom0, 8 * 501)
    hi = (0x6300 << 7) | 1
    assert dom0.call(H_ENTER, H_EXACT_FROM_HEADER, ptex, hi, (mfn << 12) | PP_RW) == H_SUCCESS
    pte_lo = booted.machine.memory.read_u64(dom0.dom.htab_maddr + ptex * 16 + 8)
    assert pte_lo >> 12 == mfn  # the machine PTE maps guest3's frame itself
    assert dom0.call(H_READ, 0, ptex) == H_SUCCESS
    assert dom0.core.gpr(5) >> 12 == mfn  # dom0 reads back the frame it named
    assert dom0.call(H_REMOVE, 0, ptex) == H_SUCCESS
    # The same request from a domU is refused, and so is a frame nobody owns.
    assert guest2.call(H_ENTER, 0, 8 * 501, hi, (mfn << 12) | PP_RW) == H_PARAMETER
    free_mfn = booted.xen.alloc.free_ranges()[-1][0]
    assert dom0.call(H_ENTER, 0, ptex, hi, (free_mfn << 12) | PP_RW) == H_PARAMETER
