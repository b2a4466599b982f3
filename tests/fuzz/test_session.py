"""The fuzzer's checks can fail: each kind of damage a broken Xen could do while a hostile
guest runs is planted in a hypercall handler and must be reported, and what the guest
may legitimately change is not."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from framework.errors import SimulationError
from framework.hw970.core import Core
from framework.xen.domain import Vcpu
from framework.xen.grant_table import entry_maddr
from framework.xen.hcall import PAPR_CALLS
from framework.xen.hypervisor import Hypervisor
from framework.xen.public.arch_powerpc import XEN_RESERVED_BYTES
from framework.xen.public.grant_table import (
    GNTTAB_COPY,
    GNTCOPY_dest_gref,
    GNTTABOP_copy,
    GTF_reading,
)
from framework.xen.public.papr import H_SET_DABR
from framework.xen.public.xen import (
    DOMID_SELF,
    EVTCHN_PENDING_OFF,
    HYPERVISOR_grant_table_op,
    xen_mark,
)
from framework.xen.public.xencomm import build_descriptor
from fuzz.call import Call
from fuzz.layout import ARGS_GPA
from fuzz.session import GRANT_REFS, GRANTED_GPA, Session

Plant = Callable[[Hypervisor], None]


def _dabr() -> list[Call]:
    """One H_SET_DABR, the call the planted damage rides on."""
    return [Call(H_SET_DABR, (0x1234, 0, 0, 0, 0, 0, 0, 0))]


@pytest.fixture(scope="module")
def session() -> Iterator[Session]:
    s = Session("domU")
    yield s
    s.close()


def _planting(monkeypatch: pytest.MonkeyPatch, damage: Plant) -> None:
    """H_SET_DABR does `damage` to machine memory, then its own work."""
    original = PAPR_CALLS[H_SET_DABR]

    def broken(xen: Hypervisor, core: Core, v: Vcpu) -> int:
        damage(xen)
        return original(xen, core, v)

    monkeypatch.setitem(PAPR_CALLS, H_SET_DABR, broken)


def _victim(session: Session) -> int:
    return next(d for d in session.victims if d != 0)


def _poke(xen: Hypervisor, maddr: int) -> None:
    xen.memory.write_u8(maddr, xen.memory.read_u8(maddr) ^ 0x5A)


@pytest.mark.parametrize(
    ("where", "owner"),
    [
        ("victim memory", "pfn 0x123"),
        ("Xen", "Xen"),
        ("free", "free memory"),
        ("victim htab", "hashed page table"),
        ("dom0 tce", "TCE table liobn 0x100"),
    ],
)
def test_a_write_to_a_frame_the_guest_does_not_own_is_an_isolation_finding(
    session: Session, monkeypatch: pytest.MonkeyPatch, where: str, owner: str
) -> None:
    xen = session.xen
    victim = xen.domains[_victim(session)]
    targets = {
        "victim memory": lambda: victim.gpa_to_maddr(0x123000 + 77),
        "Xen": lambda: XEN_RESERVED_BYTES - 4096 + 5,
        "free": lambda: (xen.alloc.free_ranges()[-1][0] << 12) + 9,
        "victim htab": lambda: victim.htab_maddr + 4000,
        "dom0 tce": lambda: xen.domains[0].tce_tables[0x100].table_maddr + 8,
    }
    maddr = targets[where]()
    _planting(monkeypatch, lambda x: _poke(x, maddr))
    result = session.run(_dabr())
    assert [f.kind for f in result.findings] == ["isolation"]
    text = result.findings[0].text
    assert f"machine frame {maddr >> 12:#x}" in text and owner in text


def test_the_guests_own_frames_and_writable_grants_may_change(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    xen = session.xen
    fuzzer = session.fuzzer
    victim = xen.domains[_victim(session)]
    writable = next(ref for ref, readonly in sorted(GRANT_REFS.items()) if not readonly)
    k = sorted(GRANT_REFS).index(writable)
    _planting(monkeypatch, lambda x: _poke(x, fuzzer.gpa_to_maddr(0x700123)))
    # A real grant copy from the fuzzer's memory into the page the victim granted it.
    op = GNTTAB_COPY.pack(
        source_gmfn=ARGS_GPA >> 12,
        source_domid=DOMID_SELF,
        dest_ref=writable,
        dest_domid=victim.domid,
        len=64,
        flags=GNTCOPY_dest_gref,
    )
    arg, desc = ARGS_GPA + 0x100, ARGS_GPA + 0x200
    copy = Call(
        xen_mark(HYPERVISOR_grant_table_op),
        (GNTTABOP_copy, desc, 1, 0, 0, 0, 0, 0),
        ((ARGS_GPA, b"\xa5" * 64), (arg, op), (desc, build_descriptor([arg]))),
    )
    granted = victim.gpa_to_maddr(GRANTED_GPA + 4096 * k)
    before = xen.memory.read(granted, 64)
    result = session.run([*_dabr(), copy])
    assert result.findings == [] and result.lost is None
    assert xen.memory.read(granted, 64) == b"\xa5" * 64 != before  # it did change


def test_xen_may_set_pending_bits_only_for_ports_bound_to_the_guest(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    xen = session.xen
    victim = xen.domains[_victim(session)]
    theirs = next(
        port for port, p in enumerate(victim.evtchn.ports) if p.remote_dom == session.fuzzer.domid
    )
    pending = victim.shared_info_maddr + EVTCHN_PENDING_OFF

    def set_pending(port: int) -> Plant:
        def plant(x: Hypervisor) -> None:
            addr = pending + 8 * (port // 64)
            x.memory.write_u64(addr, x.memory.read_u64(addr) | 1 << (port % 64))

        return plant

    _planting(monkeypatch, set_pending(theirs))
    assert session.run(_dabr()).findings == []
    _planting(monkeypatch, set_pending(1))  # the victim's console port, bound to dom0
    [finding] = session.run(_dabr()).findings
    assert "port 1 of d" in finding.text and "not a port of the fuzzer's" in finding.text


def test_grant_entries_may_change_only_in_flags_xen_keeps(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    xen = session.xen
    victim = xen.domains[_victim(session)]
    ref = min(GRANT_REFS)
    entry = entry_maddr(victim, ref)
    flags = xen.memory.read_u16(entry)
    _planting(monkeypatch, lambda x: x.memory.write_u16(entry, flags | GTF_reading))
    assert session.run(_dabr()).findings == []
    _planting(monkeypatch, lambda x: x.memory.write_u32(entry + 4, 0x777))  # the frame
    [finding] = session.run(_dabr()).findings
    assert "grant entry at" in finding.text


def test_an_exception_out_of_a_handler_is_a_simulator_bug_naming_the_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(xen: Hypervisor, core: Core, v: Vcpu) -> int:
        raise IndexError("dabr table")

    monkeypatch.setitem(PAPR_CALLS, H_SET_DABR, broken)
    session = Session("domU")
    try:
        result = session.run(_dabr())
    finally:
        session.close()
    [finding] = result.findings
    assert finding.kind == "simulator bug"
    assert "H_SET_DABR(0x1234, 0x0" in finding.text and "IndexError: dabr table" in finding.text
    assert "call 0: H_SET_DABR(0x1234" in finding.text
    assert result.lost is not None  # the bug crashed the calling domain


def test_a_simulation_error_escaping_the_run_is_an_exception_finding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(xen: Hypervisor, core: Core, v: Vcpu) -> int:
        raise SimulationError("HTAB walk looped")

    monkeypatch.setitem(PAPR_CALLS, H_SET_DABR, broken)
    session = Session("domU")
    try:
        result = session.run(_dabr())
    finally:
        session.close()
    [finding] = result.findings
    assert finding.kind == "exception" and "SimulationError: HTAB walk looped" in finding.text


def test_a_handler_that_never_returns_is_a_hang(monkeypatch: pytest.MonkeyPatch) -> None:
    def spinning(xen: Hypervisor, core: Core, v: Vcpu) -> int:
        while True:
            pass

    monkeypatch.setitem(PAPR_CALLS, H_SET_DABR, spinning)
    session = Session("domU", batch_wall_s=2.0)
    try:
        result = session.run(_dabr())
    finally:
        session.close()
    [finding] = result.findings
    assert finding.kind == "hang" and "no end after 2 s of wall time" in finding.text
