"""The timeline: actions dom0 takes on guests at given simulated times, one model per `action`.

When each action may happen (while its domain exists, before the run ends) is a cross-field
rule, checked in `rules`.
"""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal

from pydantic import Field, StrictBool, StrictInt, StrictStr

from framework.scenario.devices import VbdSpec, VifSpec
from framework.scenario.fields import (
    CpuList,
    Duration,
    ScenarioModel,
    VcpuIndex,
    Weight,
    devtree_text,
    in_range,
    matching,
    non_empty,
)
from framework.scenario.limits import MAX_VCPUS
from framework.scenario.xm_actions import XM_VIEW_MODELS, XmViewAction

__all__ = [
    "GRANT_ACTIONS",
    "HOTPLUG_MODELS",
    "TIMELINE_MODELS",
    "BlockAttachAction",
    "BlockDetachAction",
    "ConsoleInputAction",
    "CreateAction",
    "DestroyAction",
    "GrantMapAction",
    "GrantRevokeAction",
    "GrantUnmapAction",
    "NetworkAttachAction",
    "NetworkDetachAction",
    "PauseAction",
    "RebootAction",
    "RestoreAction",
    "SaveAction",
    "SchedCreditAction",
    "ShutdownAction",
    "TimelineAction",
    "UnpauseAction",
    "VcpuPinAction",
    "VcpuSetAction",
]


class ConsoleInputAction(ScenarioModel):
    """Characters typed on a guest's console (`xm console`), delivered into its input ring."""

    action: Literal["console_input"] = Field("console_input", description="`console_input`")
    at: Duration = Field(
        description="simulated time; before `duration` and not before the domain's `start`"
    )
    domain: StrictStr = Field(description="the guest domain that receives the text")
    text: Annotated[StrictStr, non_empty("text"), devtree_text("text")] = Field(
        description="the characters typed, ASCII without NUL (bytes of the console ring)"
    )


class DestroyAction(ScenarioModel):
    """`xm destroy`: dom0 pauses the guest, unplugs its devices (the backends finish what
    the disks hold and unmap every grant), then destroys it and frees its memory."""

    action: Literal["destroy"] = Field("destroy", description="`destroy`")
    at: Duration = Field(
        description="simulated time; before `duration` and not before the domain's `start`"
    )
    domain: StrictStr = Field(description="the guest domain to destroy")


class PauseAction(ScenarioModel):
    """`xm pause`: dom0 asks Xen to pause the guest (XEN_DOMCTL_pausedomain); its VCPUs stop
    at once, keep their state and memory, and nothing wakes them until `unpause`.  Pausing a
    paused domain does nothing, as in Xen."""

    action: Literal["pause"] = Field("pause", description="`pause`")
    at: Duration = Field(
        description="simulated time; before `duration` and not before the domain's `start`"
    )
    domain: StrictStr = Field(description="the guest domain to pause")


class UnpauseAction(ScenarioModel):
    """`xm unpause`: dom0 asks Xen to unpause the guest (XEN_DOMCTL_unpausedomain); its
    VCPUs that were up become runnable again.  Unpausing a running domain does nothing, as
    xm allows it."""

    action: Literal["unpause"] = Field("unpause", description="`unpause`")
    at: Duration = Field(
        description="simulated time; before `duration` and not before the domain's `start`"
    )
    domain: StrictStr = Field(description="the guest domain to unpause")


class VcpuPinAction(ScenarioModel):
    """`xm vcpu-pin`: dom0 sets one VCPU's CPU affinity (XEN_DOMCTL_setvcpuaffinity); the
    scheduler moves it off CPUs it may no longer use."""

    action: Literal["vcpu_pin"] = Field("vcpu_pin", description="`vcpu_pin`")
    at: Duration = Field(
        description="simulated time; before `duration` and not before the domain's `start`"
    )
    domain: StrictStr = Field(description="the guest domain")
    vcpu: VcpuIndex = Field(description="the VCPU to pin (one the domain has)")
    cpus: CpuList = Field(description="the physical CPUs it may run on (ones the machine has)")


class SchedCreditAction(ScenarioModel):
    """`xm sched-credit -w W -c C`: dom0 changes the domain's credit weight and/or cap at
    run time (scheduler_op putinfo); what is left out stays as it was."""

    action: Literal["sched_credit"] = Field("sched_credit", description="`sched_credit`")
    at: Duration = Field(
        description="simulated time; before `duration` and not before the domain's `start`"
    )
    domain: StrictStr = Field(description="the guest domain")
    weight: Weight | None = Field(None, description="the new weight (1..65535)")
    cap: Annotated[StrictInt, in_range(0, 65534, "cap")] | None = Field(
        None, description="the new cap in % of one CPU (0 = no cap)"
    )


# --- grants (issue 16, item 5): actions on a scenario `grants:` entry, named by `grant` ---
class GrantRevokeAction(ScenarioModel):
    """The granting guest ends its grant (Linux's gnttab_end_foreign_access on each ref):
    dom0's toolstack asks it through the guest's `control/sharedmem/<grant>` node.  A ref
    still mapped by its peer (GTF_reading/GTF_writing set by Xen) is reported busy and left
    granted, as Linux leaves (leaks) it; the others are cleared."""

    action: Literal["grant_revoke"] = Field("grant_revoke", description="`grant_revoke`")
    at: Duration = Field(description="simulated time; after both domains of the grant start")
    grant: StrictStr = Field(description="the name of an entry of `grants`")


class GrantMapAction(ScenarioModel):
    """dom0 maps the grant's pages into its foreign area (GNTTABOP_map_grant_ref with
    GNTMAP_host_map, then a 4 KiB PTE) and keeps them mapped until `grant_unmap`.  Only
    dom0 has a foreign area on the 970 port: a domU peer reads grants with grant copy, so
    a domU `domain` is refused.  dom0 mapping a grant made to another guest is allowed
    here and refused by Xen at run time (recorded in gnttab.map)."""

    action: Literal["grant_map"] = Field("grant_map", description="`grant_map`")
    at: Duration = Field(description="simulated time; after both domains of the grant start")
    grant: StrictStr = Field(description="the name of an entry of `grants`")
    domain: StrictStr | None = Field(
        None, description="the mapping domain: dom0 (default: the grant's peer, which must "
        "then be dom0)", json_schema_extra={"shown_default": "the grant's peer"},
    )  # fmt: skip
    write: StrictBool = Field(
        False, description="also write into the mapped pages (a read-only grant's mapping "
        "then takes a storage exception, recorded as shm.fault)",
    )  # fmt: skip


class GrantUnmapAction(ScenarioModel):
    """dom0 removes its PTEs and unmaps what `grant_map` mapped (GNTTABOP_unmap_grant_ref)."""

    action: Literal["grant_unmap"] = Field("grant_unmap", description="`grant_unmap`")
    at: Duration = Field(description="simulated time; after a `grant_map` of the grant")
    grant: StrictStr = Field(description="the name of an entry of `grants`")
    domain: StrictStr | None = Field(
        None, description="the mapping domain, as in its `grant_map`",
        json_schema_extra={"shown_default": "the grant's peer"},
    )  # fmt: skip


GrantAction = GrantRevokeAction | GrantMapAction | GrantUnmapAction
#: The actions that name a grant rather than a domain (checked by `grants.check_grant_actions`).
GRANT_ACTIONS: Final = (GrantRevokeAction, GrantMapAction, GrantUnmapAction)


# -- hotplug: VCPUs and devices while the guest runs (issue 16) ---------------------------
class VcpuSetAction(ScenarioModel):
    """`xm vcpu-set`: dom0 writes `cpu/<n>/availability` (`online` for VCPUs 0..vcpus-1,
    `offline` above) in the guest's xenstore home; the guest kernel takes each VCPU it is
    told to down with VCPUOP_down (it stops, runstate offline, its own workloads pause) and
    brings it back with VCPUOP_up.  VCPU 0 stays online (Linux never takes its boot CPU
    down), so `vcpus` is at least 1."""

    action: Literal["vcpu_set"] = Field("vcpu_set", description="`vcpu_set`")
    at: Duration = Field(
        description="simulated time; before `duration` and not before the domain's `start`"
    )
    domain: StrictStr = Field(description="the guest domain")
    vcpus: Annotated[StrictInt, in_range(0, MAX_VCPUS, "vcpus")] = Field(
        description="how many VCPUs stay online, 1..the domain's `vcpus`"
    )


class BlockAttachAction(ScenarioModel):
    """`xm block-attach`: dom0 gives the running guest a disk: the backend and frontend
    directories in one transaction; the guest's xenbus sees `device/vbd/<n>` appear and
    connects its blkfront. A blockio workload of the domain on that device name runs on
    it again, its record of what it wrote kept (a disk detached and attached again with the
    same image reads back what was written before)."""

    action: Literal["block_attach"] = Field("block_attach", description="`block_attach`")
    at: Duration = Field(
        description="simulated time; before `duration` and not before the domain's `start`"
    )
    domain: StrictStr = Field(description="the guest domain")
    device: VbdSpec = Field(
        description="the vbd, as in a domain's `devices` (its name not attached at `at`); "
        "without `image` the run's own disk of that name, kept across a detach"
    )


class BlockDetachAction(ScenarioModel):
    """`xm block-detach`: dom0 sets the backend offline and Closing; the guest's blkfront
    takes no new request, lets the backend answer those it has, and closes; the backend
    unmaps the ring and closes; dom0 removes both directories and lets the disk go."""

    action: Literal["block_detach"] = Field("block_detach", description="`block_detach`")
    at: Duration = Field(
        description="simulated time; before `duration` and not before the domain's `start`"
    )
    domain: StrictStr = Field(description="the guest domain")
    device: Annotated[StrictStr, matching(re.compile(r"xvd[a-z]"), "vbd name")] = Field(
        description="the vbd's name, one attached at `at`"
    )


class NetworkAttachAction(ScenarioModel):
    """`xm network-attach`: dom0 gives the running guest a vif on a bridge (the next
    device number: vifs are numbered in the order they were ever attached, as xend's
    counter does); its netfront connects and the bridge forwards to it."""

    action: Literal["network_attach"] = Field("network_attach", description="`network_attach`")
    at: Duration = Field(
        description="simulated time; before `duration` and not before the domain's `start`"
    )
    domain: StrictStr = Field(description="the guest domain")
    device: VifSpec = Field(
        default_factory=VifSpec,
        description="the vif, as in a domain's `devices` (bridge, mac); default a vif on "
        "`xenbr0` with a derived MAC",
    )


class NetworkDetachAction(ScenarioModel):
    """`xm network-detach`: as `block_detach`, for vif `devid`; every frame in its rings or
    queues at that moment gets its fate (netfront or netback says it dropped), frames sent
    to it afterwards are dropped by the bridge."""

    action: Literal["network_detach"] = Field("network_detach", description="`network_detach`")
    at: Duration = Field(
        description="simulated time; before `duration` and not before the domain's `start`"
    )
    domain: StrictStr = Field(description="the guest domain")
    devid: Annotated[StrictInt, in_range(0, 255, "devid")] = Field(
        description="the vif's device number (its place among the domain's vifs, then "
        "attached ones in order), one attached at `at`"
    )


HOTPLUG_MODELS: dict[str, type[ScenarioModel]] = {
    "vcpu_set": VcpuSetAction,
    "block_attach": BlockAttachAction,
    "block_detach": BlockDetachAction,
    "network_attach": NetworkAttachAction,
    "network_detach": NetworkDetachAction,
}


# `save`, `restore`, `shutdown` ... join this union later.
# -- domain lifecycle: xm create / shutdown / reboot --
class CreateAction(ScenarioModel):
    """`xm create`: dom0 builds the guest then, as it builds the others at their `start`
    (the domain says `start: timeline`). Also creates again a domain destroyed (or shut
    down and destroyed) earlier in the run, under its name with a new domid."""

    action: Literal["create"] = Field("create", description="`create`")
    at: Duration = Field(
        description="simulated time; before `duration`, while no domain of that name exists"
    )
    domain: StrictStr = Field(description="the guest domain to build")


class ShutdownAction(ScenarioModel):
    """`xm shutdown`: dom0 writes `reason` in the guest's `control/shutdown`; the guest
    closes its devices and shuts itself down (SCHEDOP_shutdown, poweroff), then xend does
    what its `on_poweroff` says. A guest that ignores it runs on (xend destroys it after
    30 s)."""

    action: Literal["shutdown"] = Field("shutdown", description="`shutdown`")
    at: Duration = Field(
        description="simulated time; before `duration` and while the domain exists"
    )
    domain: StrictStr = Field(description="the guest domain to shut down")
    reason: Literal["poweroff", "halt"] = Field(
        "poweroff", description="what is written: `poweroff` or `halt` (both power off)"
    )


class RebootAction(ScenarioModel):
    """`xm reboot`: dom0 writes `reboot` in the guest's `control/shutdown`; the guest
    closes its devices and shuts down with reason reboot, and xend does what its
    `on_reboot` says (by default builds it again: same name and configuration, a new
    domid, devices plugged again, workloads started afresh)."""

    action: Literal["reboot"] = Field("reboot", description="`reboot`")
    at: Duration = Field(
        description="simulated time; before `duration` and while the domain exists"
    )
    domain: StrictStr = Field(description="the guest domain to reboot")


# `save`, `restore` ... join this union later.
class SaveAction(ScenarioModel):
    """`xm save`: the guest is asked to suspend (xenstore `control/shutdown` = `suspend`),
    suspends itself, and dom0 writes its memory and VCPU state to `file`; then the domain
    is destroyed, or with `checkpoint` (`xm save -c`) it goes on running. A single-VCPU
    guest whose devices are vbds (no vif or netstream), in no grant."""

    action: Literal["save"] = Field("save", description="`save`")
    at: Duration = Field(
        description="simulated time; before `duration` and not before the domain's `start`"
    )
    domain: StrictStr = Field(description="the guest domain to save")
    file: Annotated[StrictStr, non_empty("file")] = Field(
        description="the save file: relative to the run directory unless absolute; never "
        "an existing file"
    )
    checkpoint: StrictBool = Field(False, description="keep the domain running (`xm save -c`)")


class RestoreAction(ScenarioModel):
    """`xm restore`: a new domain (new domid) is built from a save file and resumes where
    the saved one stopped: its timers go on, its frontends reconnect and re-issue what was
    in flight."""

    action: Literal["restore"] = Field("restore", description="`restore`")
    at: Duration = Field(description="simulated time; before `duration`")
    file: Annotated[StrictStr, non_empty("file")] = Field(
        description="the save file: one an earlier `save` of this timeline writes (same "
        "text), else an existing file, relative to the scenario's directory unless absolute"
    )
    domain: StrictStr | None = Field(
        None, description="the restored guest's name (default: the saved domain's)"
    )


# `shutdown` ... join this union later.
TimelineAction = Annotated[
    ConsoleInputAction
    | DestroyAction
    | PauseAction
    | UnpauseAction
    | VcpuPinAction
    | SchedCreditAction
    | GrantAction
    | CreateAction
    | ShutdownAction
    | RebootAction
    | VcpuSetAction
    | BlockAttachAction
    | BlockDetachAction
    | NetworkAttachAction
    | NetworkDetachAction
    | XmViewAction  # xm list, vcpu-list, info, dmesg, domid, domname
    | SaveAction
    | RestoreAction,
    Field(discriminator="action"),
]
TIMELINE_MODELS: dict[str, type[ScenarioModel]] = {
    "console_input": ConsoleInputAction,
    "destroy": DestroyAction,
    "pause": PauseAction,
    "unpause": UnpauseAction,
    "vcpu_pin": VcpuPinAction,
    "sched_credit": SchedCreditAction,
    "grant_revoke": GrantRevokeAction,
    "grant_map": GrantMapAction,
    "grant_unmap": GrantUnmapAction,
    "create": CreateAction,
    "shutdown": ShutdownAction,
    "reboot": RebootAction,
    **HOTPLUG_MODELS,
    **XM_VIEW_MODELS,
    "save": SaveAction,
    "restore": RestoreAction,
}
