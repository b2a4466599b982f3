"""The timeline: actions dom0 takes on guests at given simulated times, one model per `action`.

When each action may happen (while its domain exists, before the run ends) is a cross-field
rule, checked in `rules`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StrictBool, StrictInt, StrictStr

from framework.scenario.fields import (
    CpuList,
    Duration,
    ScenarioModel,
    VcpuIndex,
    Weight,
    devtree_text,
    in_range,
    non_empty,
)

__all__ = [
    "TIMELINE_MODELS",
    "ConsoleInputAction",
    "DestroyAction",
    "PauseAction",
    "RestoreAction",
    "SaveAction",
    "SchedCreditAction",
    "TimelineAction",
    "UnpauseAction",
    "VcpuPinAction",
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


class SaveAction(ScenarioModel):
    """`xm save`: the guest is asked to suspend (xenstore `control/shutdown` = `suspend`),
    suspends itself, and dom0 writes its memory and VCPU state to `file`; then the domain
    is destroyed, or with `checkpoint` (`xm save -c`) it goes on running. A single-VCPU
    guest whose devices are vbds (no vif, pingpong or netstream)."""

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
    "save": SaveAction,
    "restore": RestoreAction,
}
