"""Domains: dom0 and the guest domains (domU), with the rules that involve one domain's fields.

The same rules hold for dom0 and guests (memory fits the RMA plus whole extents, a cap
fits the VCPUs, workloads run on VCPUs the domain has); guests also check that their
devices and the workloads that use them agree. Rules across domains live in `rules`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, Literal

from pydantic import Field, StrictStr, model_validator

from framework.scenario.devices import Device, VbdSpec, VifSpec
from framework.scenario.fields import (
    Cap,
    CpuList,
    Problem,
    RmaSize,
    ScenarioModel,
    Size,
    StartTime,
    VcpuCount,
    Weight,
    matching,
)
from framework.scenario.limits import (
    DOM0_NAMES,
    EXTENT_SIZE,
    GUEST_MEMORY_LIMIT,
    MAX_NAME,
    MiB,
    is_dom0_name,
)
from framework.scenario.workloads import (
    BlockioWorkload,
    ComputeWorkload,
    ConsoleWorkload,
    NetstreamWorkload,
    Workload,
)
from framework.units import format_size

__all__ = ["Dom0Spec", "DomainSpec", "ExitAction"]

_DOMAIN_NAME: Final = re.compile(rf"[a-z0-9_-]{{1,{MAX_NAME}}}")


#: What xend does with a guest that shut down (xm's on_poweroff / on_reboot / on_crash).
ExitAction = Literal["destroy", "restart", "preserve"]


def _check_domain(
    memory: int, rma: int, vcpus: int, cap: int, workloads: tuple[Workload, ...]
) -> None:
    """Rules shared by dom0 and guests; raises Problem naming the field."""
    if memory < rma:
        raise Problem(
            ("memory",),
            f"memory {format_size(memory)} is smaller than the RMA ({format_size(rma)}): "
            "a domain smaller than its RMA is refused",
        )
    if (memory - rma) % EXTENT_SIZE:
        raise Problem(
            ("memory",),
            f"memory beyond the RMA ({format_size(memory - rma)}) is not a multiple of "
            f"{format_size(EXTENT_SIZE)} (it is allocated in 16MiB extents)",
        )
    if cap > 100 * vcpus:
        raise Problem(("cap",), f"cap {cap}% exceeds 100% x {vcpus} VCPUs = {100 * vcpus}%")
    computing: dict[int, int] = {}
    for j, w in enumerate(workloads):
        if w.vcpu >= vcpus:
            raise Problem(
                ("workloads", j, "vcpu"),
                f"vcpu {w.vcpu} out of range; the domain has {vcpus} VCPUs (0..{vcpus - 1})",
            )
        if isinstance(w, ComputeWorkload):
            if w.vcpu in computing:
                raise Problem(
                    ("workloads", j, "vcpu"),
                    f"vcpu {w.vcpu} already runs a compute loop (workloads[{computing[w.vcpu]}]) "
                    "and one loop takes the whole VCPU; give the domain another VCPU",
                )
            computing[w.vcpu] = j


def _check_guest_memory_limit(memory: int, rma: int) -> None:
    """A guest's memory, RMA included, ends at or below the foreign map area (16 GiB)."""
    limit = format_size(GUEST_MEMORY_LIMIT)
    if rma > GUEST_MEMORY_LIMIT:
        raise Problem(
            ("rma",),
            f"RMA {format_size(rma)} can never be built: a domain's memory, RMA included, "
            f"must fit below the foreign map area at guest-physical {limit}",
        )
    if memory > GUEST_MEMORY_LIMIT:
        raise Problem(
            ("memory",),
            f"memory {format_size(memory)} reaches the foreign map area at guest-physical "
            f"{limit}; a domain has at most {limit}",
        )


def _check_guest_io(devices: tuple[Device, ...], workloads: tuple[Workload, ...]) -> None:
    """vbd names are unique and every blockio workload fits the vbd it names."""
    vbds: dict[str, tuple[int, VbdSpec]] = {}
    for k, dev in enumerate(devices):
        if isinstance(dev, VbdSpec):
            if dev.name in vbds:
                raise Problem(
                    ("devices", k, "name"),
                    f"duplicate vbd name {dev.name!r} (also devices[{vbds[dev.name][0]}])",
                )
            vbds[dev.name] = (k, dev)
    used: dict[str, int] = {}
    for j, w in enumerate(workloads):
        if not isinstance(w, BlockioWorkload):
            continue
        if w.device not in vbds:
            have = (
                f"this domain's vbds are {', '.join(vbds)}"
                if vbds
                else "this domain has no vbd (add a `kind: vbd` device)"
            )
            raise Problem(("workloads", j, "device"), f"unknown device {w.device!r}; {have}")
        if w.device in used:
            raise Problem(
                ("workloads", j, "device"),
                f"vbd {w.device!r} already has a blockio workload (workloads[{used[w.device]}]); "
                "one per vbd, use queue_depth for parallel requests",
            )
        used[w.device] = j
        vbd = vbds[w.device][1]
        if vbd.mode == "r" and w.read_percent < 100:
            raise Problem(
                ("workloads", j, "read_percent"),
                f"vbd {w.device!r} is read-only (mode r), so read_percent must be 100, "
                f"got {w.read_percent}",
            )
        if w.region is not None and vbd.size is not None and w.region > vbd.size:
            raise Problem(
                ("workloads", j, "region"),
                f"region {format_size(w.region)} does not fit vbd {w.device!r} "
                f"({format_size(vbd.size)})",
            )


def _with_console_text(workloads: tuple[Workload, ...], name: str) -> tuple[Workload, ...]:
    """Console workloads without a text say hello in their domain's name."""
    return tuple(
        w.model_copy(update={"text": f"hello from {name}"})
        if isinstance(w, ConsoleWorkload) and w.text is None
        else w
        for w in workloads
    )


class Dom0Spec(ScenarioModel):
    """The privileged domain Xen starts first."""

    memory: Size = Field(256 * MiB, description="dom0 memory, RMA included")
    vcpus: VcpuCount = Field(
        1,
        description="dom0 VCPUs",
        json_schema_extra={"shown_default": "`machine.cpus`"},
    )
    rma: RmaSize = Field(64 * MiB, description="Real Mode Area size")
    weight: Weight = Field(256, description="credit scheduler weight")
    cap: Cap = Field(0, description="credit cap in percent of one CPU (0 = none)")
    workloads: tuple[Workload, ...] = Field(
        (), description="dom0's own workloads (`compute`, `timer`, `console`)"
    )

    @model_validator(mode="before")
    @classmethod
    def _no_devices(cls, data: Any) -> Any:
        if isinstance(data, dict) and "devices" in data:
            raise Problem(
                ("devices",),
                "devices belong to guest domains; dom0 is the backend domain that serves them",
            )
        return data

    @model_validator(mode="after")
    def _rules(self) -> Dom0Spec:
        _check_domain(self.memory, self.rma, self.vcpus, self.cap, self.workloads)
        for j, w in enumerate(self.workloads):
            if isinstance(w, BlockioWorkload | NetstreamWorkload):
                raise Problem(
                    ("workloads", j, "kind"),
                    f"{w.kind} runs in a guest domain; dom0 is the backend domain and has no "
                    f"{'vbd' if isinstance(w, BlockioWorkload) else 'vif'}",
                )
        return self.model_copy(
            update={"workloads": _with_console_text(self.workloads, DOM0_NAMES[0])}
        )


class DomainSpec(ScenarioModel):
    """A guest domain (domU)."""

    name: Annotated[StrictStr, matching(_DOMAIN_NAME, "domain name")] = Field(
        description="unique name, `[a-z0-9_-]`, 1..64 characters, not `dom0`"
    )
    memory: Size = Field(description="memory, RMA included")
    vcpus: VcpuCount = Field(1, description="VCPUs, 1..32")
    rma: RmaSize = Field(
        64 * MiB, description="Real Mode Area: 64MiB, 128MiB, 256MiB, 1GiB, 16GiB or 256GiB"
    )
    weight: Weight = Field(256, description="credit scheduler weight, 1..65535")
    cap: Cap = Field(0, description="credit cap, 0..100 x vcpus percent (0 = none)")
    affinity: CpuList | None = Field(
        None, description="physical CPUs every VCPU may run on (default: all)"
    )
    start: StartTime = Field(
        0,
        description="simulated time at which the domain is created, or `timeline`: created "
        "by a timeline `create` action (xm create then)",
        json_schema_extra={"shown_default": "`0ns`"},
    )
    # -- what xend does when the guest shuts down (xm's on_* settings) --
    on_poweroff: ExitAction = Field(
        "destroy",
        description="after the guest powers off (`shutdown`, or its own): `destroy`, "
        "`restart` (built again, new domid) or `preserve` (left shut down)",
    )
    on_reboot: ExitAction = Field(
        "restart", description="after the guest reboots (`reboot`): same choices"
    )
    on_crash: ExitAction = Field(
        "preserve",
        description="after the guest crashes: same choices (xm's default is `restart`; "
        "`preserve` keeps a crashed guest for study)",
    )
    devices: tuple[Device, ...] = Field(
        (), description="virtual devices (`kind: vbd` disks, `kind: vif` network interfaces)"
    )
    workloads: tuple[Workload, ...] = Field((), description="what the guest runs (idle if empty)")
    config: StrictStr | None = Field(
        None,
        description="an xm config file (relative to the scenario file) that gives this "
        "domain's keys, see 'xm config files'; keys it sets may not be repeated here",
    )
    restore: StrictStr | None = Field(
        None,
        description="a save file (relative to the scenario file) this domain is restored "
        "from at `start` instead of being built (`xm restore`): its configuration comes "
        "from the file; beside it only `name` and `start` are allowed",
    )

    @model_validator(mode="after")
    def _rules(self) -> DomainSpec:
        if is_dom0_name(self.name):
            raise Problem(("name",), f"the name {self.name!r} is reserved for dom0")
        _check_guest_memory_limit(self.memory, self.rma)
        _check_domain(self.memory, self.rma, self.vcpus, self.cap, self.workloads)
        _check_guest_io(self.devices, self.workloads)
        return self.model_copy(update={"workloads": _with_console_text(self.workloads, self.name)})

    @property
    def vbds(self) -> tuple[VbdSpec, ...]:
        """The vbds, in file order."""
        return tuple(d for d in self.devices if isinstance(d, VbdSpec))

    @property
    def vifs(self) -> tuple[VifSpec, ...]:
        """The vifs, in file order (vif N of the domain is the Nth)."""
        return tuple(d for d in self.devices if isinstance(d, VifSpec))
