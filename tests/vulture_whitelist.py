"""Names vulture reports as unused that are kept on purpose, each group with the reason.

Read by vulture (tests/test_dead_code.py), never run: an attribute named here counts as
used wherever it is defined.  Add a name only with its reason; remove it when it is read.
"""

# ruff: noqa: B018  (vulture's whitelist format: each use is a bare expression statement)

from simpy.events import Event

from framework.guest.blkfront import BlkFront
from framework.guest.netback import Vif
from framework.guest.netfront import NetFront
from framework.hw970 import regs
from framework.hw970._ucglue import Glue
from framework.hw970.asm import disassemble
from framework.hw970.devtree import MachineInfo
from framework.hw970.mmu_state import MmuState
from framework.scenario.devices import VbdSpec
from framework.scenario.domains import Dom0Spec, DomainSpec
from framework.scenario.expect import Expectation, Refusal
from framework.scenario.fields import ScenarioModel
from framework.scenario.machine import MachineSpec
from framework.scenario.top_level import Scenario
from framework.scenario.workloads import BlockioWorkload
from framework.suite import pytest_plugin
from framework.xen import costs
from framework.xen.domain import Domain, Vcpu
from framework.xen.public import domctl, grant_table, memory, papr, sched, vcpu, xen
from framework.xen.public import errno as xen_errno
from framework.xen.public.io import netif
from framework.xen.schedule import IPI_CALL_FUNCTION
from tests.guest.test_xenbus_driver import pytestmark

# The PowerPC architecture's registers and MSR/SRR1 bits (Book III, the 970 user manual):
# regs.py declares the architected set, not only the part the model uses today.
regs.MSR_VEC
regs.MSR_FP
regs.MSR_FE0
regs.MSR_SE
regs.MSR_BE
regs.MSR_FE1
regs.SRR1_PROGRAM_FPE
regs.SPR_TBL_W
regs.SPR_TBU_W
regs.SPR_HSPRG0
regs.SPR_HSPRG1
regs.SPR_HIOR
regs.SPR_HSRR0
regs.SPR_HSRR1
regs.SPR_HID0
regs.SPR_HID1
regs.SPR_HID5

# The guest ABI (xen/public): each constant states a fact of Xen's public headers, used or not.
domctl.XEN_DOMCTL_SCHEDOP_getinfo
domctl.DOMCTL_NAMES
domctl.DOMINF_dying
domctl.DOMINF_paused
domctl.DOMINF_blocked
xen_errno.EINTR
grant_table.GTF_invalid
netif.NETTXF_data_validated
netif.NETRXF_csum_blank
netif.NETIF_RSP_NULL
memory.XENMEM_decrease_reservation
papr.H_HARDWARE
papr.H_ZERO_PAGE
sched.SHUTDOWN_reboot
sched.SHUTDOWN_suspend
vcpu.VCPUOP_initialise
xen.VIRQ_CONSOLE
xen.VIRQ_DOM_EXC

# Fields of C structures, read by C code: _mmu.c's translation state, _ucglue.c's Glue.
MmuState.mem_size
MmuState.ram_low_end
MmuState.ram_high_start
MmuState.nslb
MmuState.step_page
Glue.stopped

# Read by SimPy itself: sim_events builds a triggered Event the way Timeout does.
Event._ok
Event._value

# Called by pydantic: the scenario models' validators and configuration.
ScenarioModel.model_config
VbdSpec._capacity
VbdSpec._read_only_image
Dom0Spec._no_devices
Dom0Spec._rules
DomainSpec._rules
MachineSpec._memory_shape
Scenario._dom0_vcpus_default
Scenario._negative_test
Scenario._rules
Expectation._normalise
Refusal._compiles
# Read with getattr by Expectation._comparison, which walks COMPARISONS by name.
Expectation.at_least
Expectation.at_most
BlockioWorkload._region_shape

# Xen's own state of a domain and a VCPU (struct domain, struct vcpu), kept up to date for
# what reads it next: xm list / vcpu-list (max_vcpus, shutdown reason, runstate entry time)
# and save/restore (a VCPU's pending singleshot timer).
Domain.max_vcpus
Domain.shutdown_reason
Vcpu.runstate_since
Vcpu.timer_deadline

# What Xen's boot reads from the machine devtree: the MPIC's base, for the interrupt
# controller driver (today the MPIC is reached through the Machine object).
MachineInfo.mpic_base

# The IPI number 0 the trace schema documents ("ipi": 0 = call function, 1 = event check).
IPI_CALL_FUNCTION

# Disassembly for fault reports and traces (README and ARCHITECTURE.md: capstone's role).
disassemble

# Issue 12 item 9, left to the integrator: the guest kernel charges its own NATIVE_CYCLES
# (guest/kernel.py), not this one; see the report of h-checks.
costs.NATIVE_ROUTINE

# framework/guest is being restructured (issue 12) and not edited here.  Device statistics
# a later `xm network-list`/`xm block-list` will show, and the backend's sector size:
BlkFront.sector_size
Vif.tx_frames
Vif.tx_bytes
Vif.rx_frames
Vif.dropped
NetFront.tx_bytes
NetFront.tx_errors
NetFront.rx_errors
# The guest's side of the xenstore ring's API; the guest's xenbus client reads replies
# another way today, so this is dead: the integrator may remove it with the restructuring.

# Read by pytest: a module's marks.
pytestmark

# pytest calls these: the scenario plugin's hooks and its item's protocol methods.
pytest_plugin.pytest_addoption
pytest_plugin.pytest_collect_file
pytest_plugin.ScenarioItem.runtest
pytest_plugin.ScenarioItem.reportinfo
