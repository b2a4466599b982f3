"""Domains and their VCPUs: what Xen keeps per guest."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from framework.hw970.arch_state import ArchState
from framework.hw970.mmu import TranslationState
from framework.xen.evtchn import EvtchnTable
from framework.xen.grant_state import GrantTable
from framework.xen.mm import PhysMap
from framework.xen.p2m import ForeignArea
from framework.xen.public.vcpu import Runstate
from framework.xen.public.xen import DOMID_SELF, MAX_VIRT_CPUS, SHARED_INFO, VCPU_INFO
from framework.xen.tce_table import XenTceTable
from framework.xen.xencomm import Xencomm

# shared_info sits at the top of the RMA; VCPU i's vcpu_info is entry i of its array.
_SHARED_INFO_SIZE: Final = SHARED_INFO.size
_VCPU_INFO_SIZE: Final = VCPU_INFO.size


class DomainState:
    """A domain's lifecycle state.

    Literal `Final` ints, for the same reason as `framework.xen.public.vcpu.Runstate`: mypyc
    compiles them to constants, where an IntEnum member costs a call per comparison.
    """

    CREATED: Final = 0  # built, paused, never run
    RUNNING: Final = 1
    PAUSED: Final = 2
    SHUTDOWN: Final = 3
    DYING: Final = 4  # killed: memory relinquished, frames others map still held


@dataclass(eq=False)
class Vcpu:
    """One virtual CPU: scheduler-visible state plus its architected state."""

    domain: Domain
    vcpu_id: int
    arch: ArchState = field(default_factory=ArchState)
    runstate: int = Runstate.OFFLINE
    runstate_since: int = 0
    processor: int = 0
    is_up: bool = False
    initialised: bool = False
    #: sched_op block requested in the running slice; committed at slice end.
    blocking: bool = False
    yielding: bool = False
    going_down: bool = False
    polling: tuple[int, ...] = ()
    poll_deadline: int | None = None
    timer_deadline: int | None = None
    timer_generation: int = 0
    virq_ports: dict[int, int] = field(default_factory=dict)
    cpu_time_ns: int = 0
    #: Time spent in RUNSTATE_running up to `runstate_since` (Xen's runstate.time[running]),
    #: what getdomaininfo and getvcpuinfo report with the current stretch added.
    running_ns: int = 0
    #: The data address breakpoint the guest set with H_SET_DABR (saved per VCPU).
    dabr: int = 0

    @property
    def vcpu_info_maddr(self) -> int:
        d = self.domain
        return (d.rma_mfn << 12) + d.rma_size - _SHARED_INFO_SIZE + _VCPU_INFO_SIZE * self.vcpu_id

    @property
    def key(self) -> tuple[int, int]:
        return (self.domain.domid, self.vcpu_id)


@dataclass(eq=False)
class Domain:
    """A domain: memory (RMA + extents), VCPUs, event channels, partition registers."""

    domid: int
    name: str
    privileged: bool
    max_vcpus: int = 1
    phys: PhysMap | None = None
    rma_mfn: int = 0
    rma_size: int = 0
    max_pages: int = 0
    htab_maddr: int = 0
    htab_bytes: int = 0
    hid4: int = 0
    sdr1: int = 0
    state: int = DomainState.CREATED
    shutdown_reason: int | None = None
    vcpus: list[Vcpu] = field(default_factory=list)
    evtchn: EvtchnTable = field(default_factory=EvtchnTable)
    #: vm_assist types enabled (bit per VMASST_TYPE_*).
    vm_assist: int = 0
    weight: int = 256
    cap: int = 0
    console_line: bytearray = field(default_factory=bytearray)
    console_text: list[str] = field(default_factory=list)
    affinity: dict[int, frozenset[int] | None] = field(default_factory=dict)
    #: (the PhysMap it was built for, the xencomm walker): hypercalls reuse it.
    xencomm: tuple[PhysMap, Xencomm] | None = None
    #: Machine frames of the domain's grant table (GNTTAB pfns), allocated by Xen.
    grant_frames: list[int] = field(default_factory=list)
    #: Privileged domains map other domains' granted pages here (pfn bit 22).
    foreign: ForeignArea | None = None
    #: Xen's private grant-table state (pins, maptrack), created with the domain.
    grants: GrantTable = field(default_factory=GrantTable)
    #: TCE tables (by liobn) of devices given to the domain.
    tce_tables: dict[int, XenTceTable] = field(default_factory=dict)
    #: A dying domain's frames another domain still maps (see `domain_lifetime`).
    held_frames: set[int] = field(default_factory=set)

    @property
    def shared_info_maddr(self) -> int:
        return (self.rma_mfn << 12) + self.rma_size - _SHARED_INFO_SIZE

    @property
    def tot_pages(self) -> int:
        return self.phys.nr_pages if self.phys is not None else len(self.held_frames)

    def gpa_to_maddr(self, gpa: int) -> int:
        """Machine address of a guest-physical address (raises NotOwned if not ours)."""
        assert self.phys is not None
        return (self.phys.pfn_to_mfn(gpa >> 12) << 12) | (gpa & 0xFFF)

    def new_translation_state(self) -> TranslationState:
        tr = TranslationState()
        tr.set_hid4(self.hid4)
        tr.sdr1 = self.sdr1
        return tr

    def add_vcpu(self, vcpu_id: int) -> Vcpu:
        if vcpu_id >= MAX_VIRT_CPUS:
            raise ValueError(f"VCPU {vcpu_id} beyond MAX_VIRT_CPUS {MAX_VIRT_CPUS}")
        v = Vcpu(self, vcpu_id)
        v.arch.tr = self.new_translation_state()
        v.arch.pir = vcpu_id
        v.arch.owner = v
        self.vcpus.append(v)
        return v


def target_domain(caller: Domain, domains: Mapping[int, Domain], domid: int) -> Domain | None:
    """The domain a hypercall argument names: DOMID_SELF or the caller itself, or - for a
    privileged caller only - any existing domain (Xen's rcu_lock_target_domain_by_id)."""
    if domid == DOMID_SELF or domid == caller.domid:
        return caller
    if not caller.privileged:
        return None
    return domains.get(domid)
