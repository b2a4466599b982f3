"""The machine section: the physical 970 box, the disk behind every vbd and each vif's link.

Every default here is a machine default declared once in `framework.hw970.params`, the
same values the hardware models fall back to.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StrictInt, model_validator

from framework.hw970 import params
from framework.scenario.fields import (
    Bandwidth,
    Duration,
    Frequency,
    Problem,
    ScenarioModel,
    Size,
    in_range,
    positive_duration,
)
from framework.scenario.limits import (
    EXTENT_SIZE,
    MAX_CLOCK,
    MAX_CPUS,
    MAX_HOST_MEMORY,
    MAX_MACHINE_MEMORY,
    MiB,
)
from framework.units import format_frequency, format_size

__all__ = ["DiskSpec", "JitterSpec", "LinkSpec", "MachineSpec"]


class DiskSpec(ScenarioModel):
    """The disk model behind every vbd: a fixed latency, then the transfer at `bandwidth`."""

    latency: Duration = Field(
        params.DISK_LATENCY_NS, description="time from a request reaching the disk until data moves"
    )
    bandwidth: Bandwidth = Field(
        params.DISK_BANDWIDTH_BYTES_PER_S, description="transfer rate of each disk"
    )
    queue_depth: Annotated[StrictInt, in_range(1, 256, "queue_depth")] = Field(
        params.DISK_QUEUE_DEPTH, description="requests one disk serves at once, 1..256"
    )
    irq_coalesce: Annotated[StrictInt, in_range(1, 256, "irq_coalesce")] = Field(
        params.DISK_IRQ_COALESCE,
        description="completions gathered into one interrupt while the disk is still busy "
        "(1 = one interrupt each); a completion that leaves the disk idle interrupts at once",
    )
    irq_timeout: Duration = Field(
        params.DISK_IRQ_TIMEOUT_NS,
        description="longest a completion waits for others to share its interrupt",
    )


class LinkSpec(ScenarioModel):
    """The link between each vif and its bridge in dom0, the same in both directions."""

    bandwidth: Bandwidth = Field(
        params.LINK_BANDWIDTH_BYTES_PER_S,
        description="transfer rate of each link",
        json_schema_extra={"shown_default": "`1Gbit/s`"},
    )
    latency: Duration = Field(
        params.LINK_LATENCY_NS, description="time a frame takes to cross the link"
    )
    mtu: Annotated[StrictInt, in_range(576, 9000, "mtu")] = Field(
        params.LINK_MTU_BYTES,
        description="largest frame payload in bytes, 576..4082: a frame must fit one 4KiB page "
        "(jumbo frames over several pages, NETTXF_more_data, are refused)",
    )
    irq_interval: Duration = Field(
        params.LINK_IRQ_INTERVAL_NS,
        description="least time between two network interrupts (interrupt throttling, as "
        "e1000's 20,000 interrupts/s); 0 = one per frame",
    )


class JitterSpec(ScenarioModel):
    """Optional seeded noise, so that runs with different seeds differ (replications); all zero (the default) is off and leaves every run unchanged."""

    timer: Duration = Field(
        0,
        description="mean extra latency of each VCPU timer interrupt (exponentially distributed)",
    )
    ipi: Duration = Field(
        0, description="mean extra latency of each IPI (exponentially distributed)"
    )
    cost: Annotated[StrictInt, in_range(0, 50, "cost")] = Field(
        0,
        description="spread of Xen's work at each slice boundary (tick, schedule, context "
        "switch) in percent, 0..50: each costs its table figure times a factor drawn "
        "uniformly from [1 - cost/100, 1 + cost/100]",
    )


class MachineSpec(ScenarioModel):
    """The physical 970 box (defaults: a JS20/JS21-like 2-way 970FX at 1.8 GHz)."""

    cpus: Annotated[StrictInt, in_range(1, MAX_CPUS, "cpus")] = Field(
        params.CPUS, description="physical CPUs (970 boxes had up to 4)"
    )
    memory: Size = Field(
        params.MEMORY_BYTES,
        description="machine memory (RAM); a multiple of 16MiB, at least 256MiB; RAM beyond "
        "2GiB is placed from 4GiB up (the 2-4GiB I/O hole)",
    )
    clock: Frequency = Field(
        params.CLOCK_HZ, description="core clock, below 4.3GHz (one 32-bit devtree cell)"
    )
    timebase: Frequency = Field(
        params.TIMEBASE_HZ, description="timebase frequency (assumed 33.333333MHz, as on JS20/JS21)"
    )
    disk: DiskSpec = Field(
        default_factory=DiskSpec, description="the disk every vbd gets, see `machine.disk`"
    )
    link: LinkSpec = Field(
        default_factory=LinkSpec, description="each vif's link to its bridge, see `machine.link`"
    )

    sync_quantum: Annotated[Duration, positive_duration("sync_quantum")] = Field(
        params.SYNC_QUANTUM_NS,
        description="synchronisation quantum: while several CPUs are busy, no slice "
        "crosses the next multiple of it, so an IPI or wake one CPU posts to another busy "
        "CPU takes effect within it; longer runs compute-bound work faster",
    )
    jitter: JitterSpec = Field(
        default_factory=JitterSpec,
        description="seeded noise for replications (off by default), see `machine.jitter`",
    )

    @model_validator(mode="after")
    def _memory_shape(self) -> MachineSpec:
        if self.memory < 256 * MiB:
            raise Problem(("memory",), f"machine memory {format_size(self.memory)} is below 256MiB")
        if self.memory > MAX_MACHINE_MEMORY:
            raise Problem(
                ("memory",),
                f"machine memory {format_size(self.memory)} is more than "
                f"{format_size(MAX_MACHINE_MEMORY)}: RAM placed from 4GiB up must end inside "
                "the 970FX's 42-bit physical address space",
            )
        if self.memory > MAX_HOST_MEMORY:
            raise Problem(
                ("memory",),
                f"machine memory {format_size(self.memory)} is more than the "
                f"{format_size(MAX_HOST_MEMORY)} the simulator backs with one host mapping",
            )
        if self.memory % EXTENT_SIZE:
            raise Problem(
                ("memory",),
                f"machine memory {format_size(self.memory)} is not a multiple of 16MiB",
            )
        if self.clock > MAX_CLOCK:
            raise Problem(
                ("clock",),
                f"clock {format_frequency(self.clock)} does not fit the devtree's "
                f"clock-frequency, one 32-bit cell (at most {format_frequency(MAX_CLOCK)})",
            )
        if self.timebase > self.clock:
            raise Problem(
                ("timebase",),
                f"timebase {format_frequency(self.timebase)} is faster than the core clock "
                f"{format_frequency(self.clock)}",
            )
        return self
