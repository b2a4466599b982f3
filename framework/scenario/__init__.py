"""The scenario language: what a scenario file may say, checked before anything runs.

A scenario names a machine (with its disk and link models), dom0, guest domains with their
virtual devices and workloads, and a timeline of actions. Sizes, durations, frequencies and
bandwidths are written with units and parsed into integers (bytes, ns, Hz, bytes per
second), so the rest of the simulator only sees integers. Every rule a 970 or Xen imposes
(RMA sizes, 16 MiB extents, 32 VCPUs, memory that fits the machine, 11 segments and 32 slots
per blkif ring) is checked here.

The package, one concept per module:

- `limits`: the 970 and Xen limits the rules check against;
- `fields`: shared field types (sizes, durations, ...), checks and the models' base;
- `machine`, `domains`, `devices`, `workloads`, `timeline`: the models of each section;
- `rules`: the cross-field rules of a whole scenario; `top_level`: the `Scenario` model;
- `loader`: the line-precise YAML loader (`load_scenario`, `parse_scenario`);
- `reference`: the generated key reference (`python -m framework.scenario`).

Machine defaults come from `framework.hw970.params`, the one place they are declared.
"""

from framework.scenario.devices import Device, VbdSpec, VifSpec
from framework.scenario.domains import Dom0Spec, DomainSpec
from framework.scenario.fields import START_BY_TIMELINE
from framework.scenario.grants import GrantSpec
from framework.scenario.limits import (
    DOM0_NAMES,
    EXTENT_SIZE,
    MAX_CPUS,
    MAX_VCPUS,
    RMA_SIZES,
    XEN_RESERVED,
    is_dom0_name,
)
from framework.scenario.loader import load_scenario, parse_scenario
from framework.scenario.machine import DiskSpec, JitterSpec, LinkSpec, MachineSpec
from framework.scenario.reference import reference_markdown
from framework.scenario.timeline import (
    GRANT_ACTIONS,
    BlockAttachAction,
    BlockDetachAction,
    ConsoleInputAction,
    CreateAction,
    DestroyAction,
    GrantMapAction,
    GrantRevokeAction,
    GrantUnmapAction,
    NetworkAttachAction,
    NetworkDetachAction,
    PauseAction,
    RebootAction,
    RestoreAction,
    SaveAction,
    SchedCreditAction,
    ShutdownAction,
    TimelineAction,
    UnpauseAction,
    VcpuPinAction,
    VcpuSetAction,
)
from framework.scenario.top_level import Scenario
from framework.scenario.workloads import (
    BlockioWorkload,
    ComputeWorkload,
    ConsoleWorkload,
    NetstreamWorkload,
    PingpongWorkload,
    SharedmemWorkload,
    TimerWorkload,
    Workload,
)
from framework.scenario.xm_actions import (
    XmDmesgAction,
    XmDomidAction,
    XmDomnameAction,
    XmInfoAction,
    XmListAction,
    XmVcpuListAction,
    XmViewAction,
)

__all__ = [
    "DOM0_NAMES",
    "EXTENT_SIZE",
    "GRANT_ACTIONS",
    "MAX_CPUS",
    "MAX_VCPUS",
    "RMA_SIZES",
    "START_BY_TIMELINE",
    "XEN_RESERVED",
    "BlockAttachAction",
    "BlockDetachAction",
    "BlockioWorkload",
    "ComputeWorkload",
    "ConsoleInputAction",
    "ConsoleWorkload",
    "CreateAction",
    "DestroyAction",
    "Device",
    "DiskSpec",
    "Dom0Spec",
    "DomainSpec",
    "GrantMapAction",
    "GrantRevokeAction",
    "GrantSpec",
    "GrantUnmapAction",
    "JitterSpec",
    "LinkSpec",
    "MachineSpec",
    "NetstreamWorkload",
    "NetworkAttachAction",
    "NetworkDetachAction",
    "PauseAction",
    "PingpongWorkload",
    "RebootAction",
    "RestoreAction",
    "SaveAction",
    "Scenario",
    "SchedCreditAction",
    "SharedmemWorkload",
    "ShutdownAction",
    "TimelineAction",
    "TimerWorkload",
    "UnpauseAction",
    "VbdSpec",
    "VcpuPinAction",
    "VcpuSetAction",
    "VifSpec",
    "Workload",
    "XmDmesgAction",
    "XmDomidAction",
    "XmDomnameAction",
    "XmInfoAction",
    "XmListAction",
    "XmVcpuListAction",
    "XmViewAction",
    "is_dom0_name",
    "load_scenario",
    "parse_scenario",
    "reference_markdown",
]
