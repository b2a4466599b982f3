"""What a domain runs: the workload models, one per `kind`.

Each workload is a real PPC64 loop or a guest kernel routine bound to one VCPU; the models
say what a user may ask of it and check what one field alone can check (the rules that
involve other fields or domains live in `domains` and `rules`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    model_validator,
)

from framework.scenario.fields import (
    Duration,
    Problem,
    ScenarioModel,
    Size,
    VcpuIndex,
    devtree_text,
    in_range,
    non_empty,
    positive_duration,
)
from framework.scenario.limits import (
    BLKIF_RING_SLOTS,
    MAX_BLOCK_SIZE,
    MAX_COUNT,
    MAX_MESSAGE_SIZE,
    MAX_TIMER_HZ,
    SECTOR_SIZE,
    KiB,
)
from framework.units import format_size, parse_size

__all__ = [
    "WORKLOAD_MODELS",
    "BlockioWorkload",
    "ComputeWorkload",
    "ConsoleWorkload",
    "NetstreamWorkload",
    "PingpongWorkload",
    "SharedmemWorkload",
    "TimerWorkload",
    "Workload",
]


def _block_size(value: int) -> int:
    if value % SECTOR_SIZE:
        raise ValueError(
            f"block_size {format_size(value)} is not a multiple of 512 bytes (a sector)"
        )
    if not SECTOR_SIZE <= value <= MAX_BLOCK_SIZE:
        raise ValueError(
            f"block_size must be 512B..44KiB (one blkif request carries at most 11 segments "
            f"of 4KiB), got {format_size(value)}"
        )
    return value


def _message_size(value: int) -> int:
    if not 1 <= value <= MAX_MESSAGE_SIZE:
        raise ValueError(f"message_size must be 1B..16MiB, got {format_size(value)}")
    return value


class ComputeWorkload(ScenarioModel):
    """A real PPC64 loop running on one VCPU: it burns its whole share of the CPU."""

    kind: Literal["compute"] = Field("compute", description="`compute`")
    vcpu: VcpuIndex = Field(0, description="VCPU that runs the loop")


class TimerWorkload(ScenarioModel):
    """Periodic ticks: set_timer_op, then block until VIRQ_TIMER arrives, repeatedly."""

    kind: Literal["timer"] = Field("timer", description="`timer`")
    hz: Annotated[StrictInt, in_range(1, MAX_TIMER_HZ, "hz")] = Field(
        100,
        description="tick rate, 1..1000000000 (a period of whole nanoseconds; the Linux/PPC "
        "guest tick is 100 Hz)",
    )
    vcpu: VcpuIndex = Field(0, description="VCPU that takes the ticks")


class PingpongWorkload(ScenarioModel):
    """Events bounced over an interdomain channel; one side pings, the other answers."""

    kind: Literal["pingpong"] = Field("pingpong", description="`pingpong`")
    peer: StrictStr = Field(description="the other guest domain's name")
    role: Literal["ping", "pong"] = Field(
        description="`ping` starts each round trip; `pong` only answers"
    )
    rounds: Annotated[StrictInt, in_range(0, MAX_COUNT, "rounds")] = Field(
        0, description="ping side: stop after this many round trips (0 = forever)"
    )
    vcpu: VcpuIndex = Field(0, description="VCPU bound to the channel")


class BlockioWorkload(ScenarioModel):
    """Block I/O through the guest's blkfront on one of its vbds, checked end to end."""

    kind: Literal["blockio"] = Field("blockio", description="`blockio`")
    device: StrictStr = Field(description="name of one of this domain's vbds, e.g. `xvda`")
    pattern: Literal["rand", "seq"] = Field(
        "rand", description="`rand`: random offsets; `seq`: consecutive blocks, wrapping around"
    )
    read_percent: Annotated[StrictInt, in_range(0, 100, "read_percent")] = Field(
        50, description="share of reads, 0..100; below 100 the vbd must be writable (`mode: w`)"
    )
    block_size: Annotated[StrictInt, BeforeValidator(parse_size), AfterValidator(_block_size)] = (
        Field(
            4 * KiB,
            description="bytes per request: a multiple of 512, 512B..44KiB (11 segments of 4KiB)",
        )
    )
    queue_depth: Annotated[StrictInt, in_range(1, BLKIF_RING_SLOTS, "queue_depth")] = Field(
        1, description="requests kept in flight, 1..32 (a blkif ring has 32 slots)"
    )
    requests: Annotated[StrictInt, in_range(0, MAX_COUNT, "requests")] = Field(
        0, description="stop after this many requests (0 = until the scenario ends)"
    )
    verify: StrictBool = Field(
        True, description="check that every read returns the data last written there"
    )
    vcpu: VcpuIndex = Field(0, description="VCPU that issues the requests")
    region: Size | None = Field(
        None,
        description="confine the I/O to the first `region` bytes of the device (default: all "
        "of it); a multiple of 512, at least `block_size`",
    )

    @model_validator(mode="after")
    def _region_shape(self) -> BlockioWorkload:
        if self.region is not None:
            if self.region % SECTOR_SIZE:
                raise Problem(
                    ("region",),
                    f"region {format_size(self.region)} is not a multiple of 512 bytes (a sector)",
                )
            if self.region < self.block_size:
                raise Problem(
                    ("region",),
                    f"region {format_size(self.region)} is smaller than one block "
                    f"({format_size(self.block_size)})",
                )
        return self


class NetstreamWorkload(ScenarioModel):
    """A stream of messages sent through netfront to another guest on the same bridge.

    The receiving guest needs no workload entry: its kernel accepts whatever arrives.
    """

    kind: Literal["netstream"] = Field("netstream", description="`netstream`")
    peer: StrictStr = Field(
        description="the receiving guest's name; both need a vif on the same bridge, and the "
        "receiver needs no workload of its own"
    )
    message_size: Annotated[
        StrictInt, BeforeValidator(parse_size), AfterValidator(_message_size)
    ] = Field(64 * KiB, description="bytes per message, 1B..16MiB (split into MTU-sized frames)")
    messages: Annotated[StrictInt, in_range(0, MAX_COUNT, "messages")] = Field(
        0, description="stop after this many messages (0 = until the scenario ends)"
    )
    vcpu: VcpuIndex = Field(0, description="VCPU that sends")


class ConsoleWorkload(ScenarioModel):
    """Lines written to the domain's console at a fixed period."""

    kind: Literal["console"] = Field("console", description="`console`")
    text: Annotated[StrictStr, non_empty("text"), devtree_text("text")] | None = Field(
        None,
        description="the line to write, ASCII without NUL (it reaches the guest in its "
        "devtree); default `hello from <name>`",
        json_schema_extra={"shown_default": "`hello from <domain>`"},
    )
    every: Annotated[Duration, positive_duration("every")] = Field(
        100_000_000, description="simulated time between two lines"
    )
    count: Annotated[StrictInt, in_range(0, MAX_COUNT, "count")] = Field(
        10, description="lines to write (0 = until the scenario ends)"
    )
    vcpu: VcpuIndex = Field(0, description="VCPU that writes")


class SharedmemWorkload(ScenarioModel):
    """Rounds of data through one of the domain's `grants` (it must be the granter): it
    writes a pattern into the granted pages and notifies the peer over the grant's event
    channel; the peer checks the pages (dom0 through its foreign area, a guest with grant
    copy), writes its answer back into a read-write grant, and notifies; the granter checks
    the answer, and the next round starts `every` later."""

    kind: Literal["sharedmem"] = Field("sharedmem", description="`sharedmem`")
    grant: StrictStr = Field(description="the name of a `grants` entry this domain grants")
    every: Annotated[Duration, positive_duration("every")] = Field(
        1_000_000, description="simulated time from one round's start to the next"
    )
    rounds: Annotated[StrictInt, in_range(0, MAX_COUNT, "rounds")] = Field(
        0, description="stop after this many rounds (0 = until the scenario ends)"
    )
    vcpu: VcpuIndex = Field(0, description="VCPU that writes and checks")


Workload = Annotated[
    ComputeWorkload
    | TimerWorkload
    | PingpongWorkload
    | BlockioWorkload
    | NetstreamWorkload
    | ConsoleWorkload
    | SharedmemWorkload,
    Field(discriminator="kind"),
]
WORKLOAD_MODELS: dict[str, type[ScenarioModel]] = {
    "compute": ComputeWorkload,
    "timer": TimerWorkload,
    "pingpong": PingpongWorkload,
    "blockio": BlockioWorkload,
    "netstream": NetstreamWorkload,
    "console": ConsoleWorkload,
    "sharedmem": SharedmemWorkload,
}
