"""The scenario file: its schema (pydantic models) and a loader with line-precise errors.

A scenario names a machine (with its disk and link models), dom0, guest domains with their
virtual devices and workloads, and a timeline of actions. Sizes, durations, frequencies and
bandwidths are written with units and parsed into integers (bytes, ns, Hz, bytes per second),
so the rest of the simulator only sees integers. Every rule a 970 or Xen imposes (RMA sizes,
16 MiB extents, 32 VCPUs, memory that fits the machine, 11 segments and 32 slots per blkif
ring) is checked here, before anything runs.

Errors are `ScenarioError`s with one line, `"<file>:<line>: <field.path>: <reason>"`; the
line comes from the YAML node graph (`yaml.compose`), mapped by path.

Where the hash lives: `load_scenario`/`parse_scenario` return a plain `Scenario` and set two
private attributes on it; read them through `Scenario.sha256` (hex SHA-256 of the raw file
bytes) and `Scenario.source` (the path or name it was read from). A `Scenario` built
directly with `Scenario.model_validate` hashes its canonical JSON instead.

Disk images: a vbd keeps its `image` string as written; relative paths resolve against
`Scenario.base_dir` (the scenario file's directory; pass `context={"base_dir": dir}` to
`Scenario.model_validate`, else the current directory), see `Scenario.image_path`. Loading
only looks at an image's size; it never creates, opens or changes the file.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic.fields import FieldInfo

from framework.errors import ScenarioError
from framework.hw970.mmu import RMA_SIZES
from framework.units import (
    format_bandwidth,
    format_duration,
    format_frequency,
    format_size,
    parse_bandwidth,
    parse_duration,
    parse_frequency,
    parse_size,
)

__all__ = [
    "DOM0_NAMES",
    "EXTENT_SIZE",
    "MAX_CPUS",
    "MAX_VCPUS",
    "RMA_SIZES",
    "XEN_RESERVED",
    "BlockioWorkload",
    "ComputeWorkload",
    "ConsoleInputAction",
    "ConsoleWorkload",
    "Device",
    "DiskSpec",
    "Dom0Spec",
    "DomainSpec",
    "LinkSpec",
    "MachineSpec",
    "NetstreamWorkload",
    "PingpongWorkload",
    "Scenario",
    "TimelineAction",
    "TimerWorkload",
    "VbdSpec",
    "VifSpec",
    "Workload",
    "is_dom0_name",
    "load_scenario",
    "parse_scenario",
    "reference_markdown",
]

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30

# Memory beyond the RMA comes in 16 MiB extents: the guest maps it with 16 MiB pages.
EXTENT_SIZE: Final = 16 * MiB
# Xen keeps the bottom 64 MiB of machine memory for itself.
XEN_RESERVED: Final = 64 * MiB
# MAX_VIRT_CPUS in the public Xen headers.
MAX_VCPUS: Final = 32
# The largest 970 boxes Xen/PPC ran on (JS21, Maple) had four CPUs.
MAX_CPUS: Final = 4
# dom0 must stay below the 2-4 GiB I/O hole.
IO_HOLE_START: Final = 2 * GiB
DOM0_NAMES: Final = ("dom0", "Domain-0")

# Block I/O facts (xen/include/public/io/blkif.h): 512-byte sectors, at most 11 segments of
# one 4 KiB page per request, and 32 request slots in a one-page ring.
_SECTOR_SIZE: Final = 512
_PAGE_SIZE: Final = 4 * KiB
_BLKIF_MAX_SEGMENTS_PER_REQUEST: Final = 11
_MAX_BLOCK_SIZE: Final = _BLKIF_MAX_SEGMENTS_PER_REQUEST * _PAGE_SIZE
_BLKIF_RING_SLOTS: Final = 32
_MIN_VBD_SIZE: Final = 1 * MiB
_MAX_MESSAGE_SIZE: Final = 16 * MiB

_SCENARIO_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_DOMAIN_NAME: Final = re.compile(r"[a-z0-9_-]+")
# Linux block device names of Xen virtual disks: xvda .. xvdz.
_VBD_NAME: Final = re.compile(r"xvd[a-z]")
# A Linux interface name has at most 15 characters (IFNAMSIZ 16 with the NUL).
_BRIDGE_NAME: Final = re.compile(r"[a-z][a-z0-9]{0,14}")
_MAC: Final = re.compile(r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}")


def is_dom0_name(name: str) -> bool:
    """True for the names a scenario may use for dom0 ('dom0' or 'Domain-0')."""
    return name in DOM0_NAMES


class _Problem(ScenarioError, ValueError):
    """A rule broken below the model being validated; `path` is relative to that model."""

    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.path = path


def _in_range(lo: int, hi: int | None, what: str) -> AfterValidator:
    """An int check whose message says the allowed range and why."""

    def check(value: int) -> int:
        if value < lo or (hi is not None and value > hi):
            bound = f"{lo}..{hi}" if hi is not None else f">= {lo}"
            raise ValueError(f"{what} must be {bound}, got {value}")
        return value

    return AfterValidator(check)


def _rma_size(value: int) -> int:
    if value not in RMA_SIZES:
        allowed = ", ".join(format_size(s) for s in RMA_SIZES)
        raise ValueError(f"invalid RMA size {format_size(value)}; the 970 allows {allowed}")
    return value


def _matching(pattern: re.Pattern[str], what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"{what} {value!r} must match {pattern.pattern}")
        return value

    return AfterValidator(check)


def _positive_duration(what: str) -> AfterValidator:
    def check(value: int) -> int:
        if value <= 0:
            raise ValueError(f"{what} must be longer than 0ns")
        return value

    return AfterValidator(check)


def _non_empty(what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not value:
            raise ValueError(f"{what} is empty")
        return value

    return AfterValidator(check)


def _mac(value: str) -> str:
    """A unicast Ethernet address, normalised to lower case."""
    if not _MAC.fullmatch(value):
        raise ValueError(
            f"mac {value!r} must be six hex bytes separated by ':', like 00:16:3e:00:00:01"
        )
    mac = value.lower()
    octets = bytes.fromhex(mac.replace(":", ""))
    if octets[0] & 1:
        raise ValueError(
            f"mac {mac} is a multicast address (bit 0 of the first byte is set); "
            "a vif needs a unicast address"
        )
    if not any(octets):
        raise ValueError(f"mac {mac} is all zeros, which no interface may use")
    return mac


def _quoted_mac(value: object) -> object:
    """YAML 1.1 reads unquoted `12:34:56:...` as a base-60 integer: say so, not 'not a string'."""
    if isinstance(value, int) and not isinstance(value, bool):
        raise _Problem(
            (),
            f"mac must be quoted: YAML read it as the base-60 number {value} "
            '(write mac: "12:34:56:78:9a:bc")',
        )
    return value


def _block_size(value: int) -> int:
    if value % _SECTOR_SIZE:
        raise ValueError(
            f"block_size {format_size(value)} is not a multiple of 512 bytes (a sector)"
        )
    if not _SECTOR_SIZE <= value <= _MAX_BLOCK_SIZE:
        raise ValueError(
            f"block_size must be 512B..44KiB (one blkif request carries at most 11 segments "
            f"of 4KiB), got {format_size(value)}"
        )
    return value


def _message_size(value: int) -> int:
    if not 1 <= value <= _MAX_MESSAGE_SIZE:
        raise ValueError(f"message_size must be 1B..16MiB, got {format_size(value)}")
    return value


Size = Annotated[StrictInt, BeforeValidator(parse_size)]
Duration = Annotated[StrictInt, BeforeValidator(parse_duration)]
Frequency = Annotated[StrictInt, BeforeValidator(parse_frequency)]
Bandwidth = Annotated[StrictInt, BeforeValidator(parse_bandwidth)]
RmaSize = Annotated[StrictInt, BeforeValidator(parse_size), AfterValidator(_rma_size)]
VcpuCount = Annotated[StrictInt, _in_range(1, MAX_VCPUS, "vcpus")]
VcpuIndex = Annotated[StrictInt, _in_range(0, MAX_VCPUS - 1, "vcpu")]
Weight = Annotated[StrictInt, _in_range(1, 65535, "weight")]
Cap = Annotated[StrictInt, _in_range(0, None, "cap")]

_FORMATTERS: dict[Callable[..., int], Callable[[int], str]] = {
    parse_size: format_size,
    parse_duration: format_duration,
    parse_frequency: format_frequency,
    parse_bandwidth: format_bandwidth,
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ComputeWorkload(_Model):
    """A real PPC64 loop running on one VCPU: it burns its whole share of the CPU."""

    kind: Literal["compute"] = Field("compute", description="`compute`")
    vcpu: VcpuIndex = Field(0, description="VCPU that runs the loop")


class TimerWorkload(_Model):
    """Periodic ticks: set_timer_op, then block until VIRQ_TIMER arrives, repeatedly."""

    kind: Literal["timer"] = Field("timer", description="`timer`")
    hz: Annotated[StrictInt, _in_range(1, None, "hz")] = Field(
        100, description="tick rate (the Linux/PPC guest tick is 100 Hz)"
    )
    vcpu: VcpuIndex = Field(0, description="VCPU that takes the ticks")


class PingpongWorkload(_Model):
    """Events bounced over an interdomain channel; one side pings, the other answers."""

    kind: Literal["pingpong"] = Field("pingpong", description="`pingpong`")
    peer: StrictStr = Field(description="the other guest domain's name")
    role: Literal["ping", "pong"] = Field(
        description="`ping` starts each round trip; `pong` only answers"
    )
    rounds: Annotated[StrictInt, _in_range(0, None, "rounds")] = Field(
        0, description="ping side: stop after this many round trips (0 = forever)"
    )
    vcpu: VcpuIndex = Field(0, description="VCPU bound to the channel")


class BlockioWorkload(_Model):
    """Block I/O through the guest's blkfront on one of its vbds, checked end to end."""

    kind: Literal["blockio"] = Field("blockio", description="`blockio`")
    device: StrictStr = Field(description="name of one of this domain's vbds, e.g. `xvda`")
    pattern: Literal["rand", "seq"] = Field(
        "rand", description="`rand`: random offsets; `seq`: consecutive blocks, wrapping around"
    )
    read_percent: Annotated[StrictInt, _in_range(0, 100, "read_percent")] = Field(
        50, description="share of reads, 0..100; below 100 the vbd must be writable (`mode: w`)"
    )
    block_size: Annotated[StrictInt, BeforeValidator(parse_size), AfterValidator(_block_size)] = (
        Field(
            4 * KiB,
            description="bytes per request: a multiple of 512, 512B..44KiB (11 segments of 4KiB)",
        )
    )
    queue_depth: Annotated[StrictInt, _in_range(1, _BLKIF_RING_SLOTS, "queue_depth")] = Field(
        1, description="requests kept in flight, 1..32 (a blkif ring has 32 slots)"
    )
    requests: Annotated[StrictInt, _in_range(0, None, "requests")] = Field(
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
            if self.region % _SECTOR_SIZE:
                raise _Problem(
                    ("region",),
                    f"region {format_size(self.region)} is not a multiple of 512 bytes (a sector)",
                )
            if self.region < self.block_size:
                raise _Problem(
                    ("region",),
                    f"region {format_size(self.region)} is smaller than one block "
                    f"({format_size(self.block_size)})",
                )
        return self


class NetstreamWorkload(_Model):
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
    messages: Annotated[StrictInt, _in_range(0, None, "messages")] = Field(
        0, description="stop after this many messages (0 = until the scenario ends)"
    )
    vcpu: VcpuIndex = Field(0, description="VCPU that sends")


class ConsoleWorkload(_Model):
    """Lines written to the domain's console at a fixed period."""

    kind: Literal["console"] = Field("console", description="`console`")
    text: Annotated[StrictStr, _non_empty("text")] | None = Field(
        None,
        description="the line to write (filled in by the domain as `hello from <name>`)",
        json_schema_extra={"shown_default": "`hello from <domain>`"},
    )
    every: Annotated[StrictInt, BeforeValidator(parse_duration), _positive_duration("every")] = (
        Field(100_000_000, description="simulated time between two lines")
    )
    count: Annotated[StrictInt, _in_range(0, None, "count")] = Field(
        10, description="lines to write (0 = until the scenario ends)"
    )
    vcpu: VcpuIndex = Field(0, description="VCPU that writes")


Workload = Annotated[
    ComputeWorkload
    | TimerWorkload
    | PingpongWorkload
    | BlockioWorkload
    | NetstreamWorkload
    | ConsoleWorkload,
    Field(discriminator="kind"),
]
WORKLOAD_MODELS: dict[str, type[_Model]] = {
    "compute": ComputeWorkload,
    "timer": TimerWorkload,
    "pingpong": PingpongWorkload,
    "blockio": BlockioWorkload,
    "netstream": NetstreamWorkload,
    "console": ConsoleWorkload,
}


def _resolve_image(image: str, base_dir: Path) -> Path:
    """Where an image path points: absolute as written, else under the scenario's directory."""
    path = Path(image)
    return path if path.is_absolute() else base_dir / path


def _context_base_dir(info: ValidationInfo) -> Path:
    """The directory relative image paths resolve against, from the validation context."""
    context = info.context if isinstance(info.context, dict) else {}
    base = context.get("base_dir")
    return Path(base).absolute() if base is not None else Path.cwd()


class VbdSpec(_Model):
    """A virtual block device: a disk the guest's blkfront reaches through dom0's blkback.

    With an `image` that exists, the disk has the file's size; loading never touches the file.
    """

    kind: Literal["vbd"] = Field("vbd", description="`vbd`")
    name: Annotated[StrictStr, _matching(_VBD_NAME, "vbd name")] = Field(
        description="device name in the guest, `xvda` .. `xvdz`, unique per domain"
    )
    size: Size | None = Field(
        None,
        description="capacity: a multiple of 4KiB, at least 1MiB; required unless `image` "
        "names an existing file, whose size it then is",
    )
    image: Annotated[StrictStr, _non_empty("image")] | None = Field(
        None,
        description="backing file; a relative path is relative to the scenario file's directory",
    )
    mode: Literal["w", "r"] = Field("w", description="`w` read-write or `r` read-only")

    @model_validator(mode="after")
    def _capacity(self, info: ValidationInfo) -> VbdSpec:
        """Fill `size` from an existing image, or check that both agree."""
        size = self.size
        if self.image is not None:
            path = _resolve_image(self.image, _context_base_dir(info))
            if path.exists():
                if not path.is_file():
                    raise _Problem(("image",), f"image {self.image!r} is not a regular file")
                found = path.stat().st_size
                if found % _PAGE_SIZE:
                    raise _Problem(
                        ("image",),
                        f"image {self.image!r} is {format_size(found)}, not a multiple of 4KiB "
                        "(a vbd is whole 4KiB pages)",
                    )
                if size is None:
                    if found < _MIN_VBD_SIZE:
                        raise _Problem(
                            ("image",),
                            f"image {self.image!r} is {format_size(found)}; "
                            "a vbd needs at least 1MiB",
                        )
                    return self.model_copy(update={"size": found})
                if size != found:
                    raise _Problem(
                        ("size",),
                        f"size {format_size(size)} differs from image {self.image!r}, "
                        f"which is {format_size(found)}",
                    )
        if size is None:
            why = (
                "there is no image"
                if self.image is None
                else f"image {self.image!r} does not exist, so its size cannot be read"
            )
            raise _Problem(("size",), f"size is required: {why}")
        if size % _PAGE_SIZE:
            raise _Problem(("size",), f"size {format_size(size)} is not a multiple of 4KiB")
        if size < _MIN_VBD_SIZE:
            raise _Problem(("size",), f"size {format_size(size)} is below the 1MiB minimum")
        return self


class VifSpec(_Model):
    """A virtual network interface: the guest's netfront, plugged by dom0 into a bridge."""

    kind: Literal["vif"] = Field("vif", description="`vif`")
    bridge: Annotated[StrictStr, _matching(_BRIDGE_NAME, "bridge name")] = Field(
        "xenbr0", description="bridge in dom0, `[a-z][a-z0-9]{0,14}`"
    )
    mac: Annotated[StrictStr, BeforeValidator(_quoted_mac), AfterValidator(_mac)] | None = Field(
        None,
        description="unicast MAC `xx:xx:xx:xx:xx:xx` (stored in lower case); default: derived "
        "deterministically by the simulator",
    )


Device = Annotated[VbdSpec | VifSpec, Field(discriminator="kind")]
DEVICE_MODELS: dict[str, type[_Model]] = {"vbd": VbdSpec, "vif": VifSpec}


class ConsoleInputAction(_Model):
    """Characters typed on a guest's console (`xm console`), delivered into its input ring."""

    action: Literal["console_input"] = Field("console_input", description="`console_input`")
    at: Duration = Field(
        description="simulated time; before `duration` and not before the domain's `start`"
    )
    domain: StrictStr = Field(description="the guest domain that receives the text")
    text: Annotated[StrictStr, _non_empty("text")] = Field(description="the characters typed")


class DestroyAction(_Model):
    """`xm destroy`: dom0 pauses the guest, unplugs its devices (the backends finish what
    the disks hold and unmap every grant), then destroys it and frees its memory."""

    action: Literal["destroy"] = Field("destroy", description="`destroy`")
    at: Duration = Field(
        description="simulated time; before `duration` and not before the domain's `start`"
    )
    domain: StrictStr = Field(description="the guest domain to destroy")


# `save`, `restore`, `pause` ... join this union later.
TimelineAction = Annotated[ConsoleInputAction | DestroyAction, Field(discriminator="action")]
TIMELINE_MODELS: dict[str, type[_Model]] = {
    "console_input": ConsoleInputAction,
    "destroy": DestroyAction,
}


def _check_domain(
    memory: int, rma: int, vcpus: int, cap: int, workloads: tuple[Workload, ...]
) -> None:
    """Rules shared by dom0 and guests; raises _Problem naming the field."""
    if memory < rma:
        raise _Problem(
            ("memory",),
            f"memory {format_size(memory)} is smaller than the RMA ({format_size(rma)}): "
            "a domain smaller than its RMA is refused",
        )
    if (memory - rma) % EXTENT_SIZE:
        raise _Problem(
            ("memory",),
            f"memory beyond the RMA ({format_size(memory - rma)}) is not a multiple of "
            f"{format_size(EXTENT_SIZE)} (it is allocated in 16MiB extents)",
        )
    if cap > 100 * vcpus:
        raise _Problem(("cap",), f"cap {cap}% exceeds 100% x {vcpus} VCPUs = {100 * vcpus}%")
    for j, w in enumerate(workloads):
        if w.vcpu >= vcpus:
            raise _Problem(
                ("workloads", j, "vcpu"),
                f"vcpu {w.vcpu} out of range; the domain has {vcpus} VCPUs (0..{vcpus - 1})",
            )


def _check_guest_io(devices: tuple[Device, ...], workloads: tuple[Workload, ...]) -> None:
    """vbd names are unique and every blockio workload fits the vbd it names."""
    vbds: dict[str, tuple[int, VbdSpec]] = {}
    for k, dev in enumerate(devices):
        if isinstance(dev, VbdSpec):
            if dev.name in vbds:
                raise _Problem(
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
            raise _Problem(("workloads", j, "device"), f"unknown device {w.device!r}; {have}")
        if w.device in used:
            raise _Problem(
                ("workloads", j, "device"),
                f"vbd {w.device!r} already has a blockio workload (workloads[{used[w.device]}]); "
                "one per vbd, use queue_depth for parallel requests",
            )
        used[w.device] = j
        vbd = vbds[w.device][1]
        if vbd.mode == "r" and w.read_percent < 100:
            raise _Problem(
                ("workloads", j, "read_percent"),
                f"vbd {w.device!r} is read-only (mode r), so read_percent must be 100, "
                f"got {w.read_percent}",
            )
        if w.region is not None and vbd.size is not None and w.region > vbd.size:
            raise _Problem(
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


class DiskSpec(_Model):
    """The disk model behind every vbd: a fixed latency, then the transfer at `bandwidth`."""

    latency: Duration = Field(
        100_000, description="time from a request reaching the disk until data moves"
    )
    bandwidth: Bandwidth = Field(100_000_000, description="transfer rate of each disk")
    queue_depth: Annotated[StrictInt, _in_range(1, 256, "queue_depth")] = Field(
        32, description="requests one disk serves at once, 1..256"
    )
    irq_coalesce: Annotated[StrictInt, _in_range(1, 256, "irq_coalesce")] = Field(
        4,
        description="completions gathered into one interrupt while the disk is still busy "
        "(1 = one interrupt each); a completion that leaves the disk idle interrupts at once",
    )
    irq_timeout: Duration = Field(
        500_000, description="longest a completion waits for others to share its interrupt"
    )


class LinkSpec(_Model):
    """The link between each vif and its bridge in dom0, the same in both directions."""

    bandwidth: Bandwidth = Field(
        125_000_000,
        description="transfer rate of each link",
        json_schema_extra={"shown_default": "`1Gbit/s`"},
    )
    latency: Duration = Field(20_000, description="time a frame takes to cross the link")
    mtu: Annotated[StrictInt, _in_range(576, 9000, "mtu")] = Field(
        1500, description="largest frame payload in bytes, 576..9000 (9000: jumbo frames)"
    )
    irq_interval: Duration = Field(
        50_000,
        description="least time between two network interrupts (interrupt throttling, as "
        "e1000's 20,000 interrupts/s); 0 = one per frame",
    )


class MachineSpec(_Model):
    """The physical 970 box (defaults: a JS20/JS21-like 2-way 970FX at 1.8 GHz)."""

    cpus: Annotated[StrictInt, _in_range(1, MAX_CPUS, "cpus")] = Field(
        2, description="physical CPUs (970 boxes had up to 4)"
    )
    memory: Size = Field(
        2 * GiB, description="machine memory; a multiple of 16MiB, at least 256MiB"
    )
    clock: Frequency = Field(1_800_000_000, description="core clock")
    timebase: Frequency = Field(
        33_333_333, description="timebase frequency (assumed 33.333333MHz, as on JS20/JS21)"
    )
    disk: DiskSpec = Field(
        default_factory=DiskSpec, description="the disk every vbd gets, see `machine.disk`"
    )
    link: LinkSpec = Field(
        default_factory=LinkSpec, description="each vif's link to its bridge, see `machine.link`"
    )

    @model_validator(mode="after")
    def _memory_shape(self) -> MachineSpec:
        if self.memory < 256 * MiB:
            raise _Problem(
                ("memory",), f"machine memory {format_size(self.memory)} is below 256MiB"
            )
        if self.memory % EXTENT_SIZE:
            raise _Problem(
                ("memory",),
                f"machine memory {format_size(self.memory)} is not a multiple of 16MiB",
            )
        if self.timebase > self.clock:
            raise _Problem(
                ("timebase",),
                f"timebase {format_frequency(self.timebase)} is faster than the core clock "
                f"{format_frequency(self.clock)}",
            )
        return self


class Dom0Spec(_Model):
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
            raise _Problem(
                ("devices",),
                "devices belong to guest domains; dom0 is the backend domain that serves them",
            )
        return data

    @model_validator(mode="after")
    def _rules(self) -> Dom0Spec:
        _check_domain(self.memory, self.rma, self.vcpus, self.cap, self.workloads)
        for j, w in enumerate(self.workloads):
            if isinstance(w, BlockioWorkload | NetstreamWorkload):
                raise _Problem(
                    ("workloads", j, "kind"),
                    f"{w.kind} runs in a guest domain; dom0 is the backend domain and has no "
                    f"{'vbd' if isinstance(w, BlockioWorkload) else 'vif'}",
                )
        return self.model_copy(
            update={"workloads": _with_console_text(self.workloads, DOM0_NAMES[0])}
        )


def _affinity(cpus: tuple[int, ...]) -> tuple[int, ...]:
    if not cpus:
        raise ValueError("affinity lists no CPU; leave it out to allow every CPU")
    for k, cpu in enumerate(cpus):
        if cpu < 0:
            raise _Problem((k,), f"cpu {cpu} is negative")
        if cpu in cpus[:k]:
            raise _Problem((k,), f"cpu {cpu} is listed twice")
    return cpus


class DomainSpec(_Model):
    """A guest domain (domU)."""

    name: Annotated[StrictStr, _matching(_DOMAIN_NAME, "domain name")] = Field(
        description="unique name, `[a-z0-9_-]+`, not `dom0`"
    )
    memory: Size = Field(description="memory, RMA included")
    vcpus: VcpuCount = Field(1, description="VCPUs, 1..32")
    rma: RmaSize = Field(
        64 * MiB, description="Real Mode Area: 64MiB, 128MiB, 256MiB, 1GiB, 16GiB or 256GiB"
    )
    weight: Weight = Field(256, description="credit scheduler weight, 1..65535")
    cap: Cap = Field(0, description="credit cap, 0..100 x vcpus percent (0 = none)")
    affinity: Annotated[tuple[StrictInt, ...], AfterValidator(_affinity)] | None = Field(
        None, description="physical CPUs every VCPU may run on (default: all)"
    )
    start: Duration = Field(0, description="simulated time at which the domain is created")
    devices: tuple[Device, ...] = Field(
        (), description="virtual devices (`kind: vbd` disks, `kind: vif` network interfaces)"
    )
    workloads: tuple[Workload, ...] = Field((), description="what the guest runs (idle if empty)")

    @model_validator(mode="after")
    def _rules(self) -> DomainSpec:
        if is_dom0_name(self.name):
            raise _Problem(("name",), f"the name {self.name!r} is reserved for dom0")
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


class Scenario(_Model):
    """A whole scenario file, with every size, duration, frequency and bandwidth as an integer."""

    name: Annotated[StrictStr, _matching(_SCENARIO_NAME, "scenario name")] = Field(
        description="scenario name; also the default run directory `runs/<name>`"
    )
    seed: Annotated[StrictInt, _in_range(0, None, "seed")] = Field(
        0, description="seed of the simulation's only random generator"
    )
    duration: Duration = Field(description="simulated time to run")
    machine: MachineSpec = Field(default_factory=MachineSpec, description="see `machine`")
    dom0: Dom0Spec = Field(default_factory=Dom0Spec, description="see `dom0`")
    domains: tuple[DomainSpec, ...] = Field((), description="guest domains, see `domains[]`")
    timeline: tuple[TimelineAction, ...] = Field(
        (), description="actions at simulated times, kept sorted by `at` (stable), see `timeline[]`"
    )

    _sha256: str | None = PrivateAttr(default=None)
    _source: str = PrivateAttr(default="<model>")
    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the file bytes it was loaded from (else of its canonical JSON)."""
        if self._sha256 is None:
            return hashlib.sha256(self.model_dump_json().encode()).hexdigest()
        return self._sha256

    @property
    def source(self) -> str:
        """The path (or name) the scenario was read from."""
        return self._source

    @property
    def base_dir(self) -> Path:
        """The directory relative image paths resolve against (the scenario file's)."""
        return self._base_dir

    def image_path(self, vbd: VbdSpec) -> Path | None:
        """Where a vbd's image lives (None without an image); the file may not exist yet."""
        return None if vbd.image is None else _resolve_image(vbd.image, self._base_dir)

    @property
    def domain_count(self) -> int:
        """Domains including dom0."""
        return 1 + len(self.domains)

    @property
    def vcpu_count(self) -> int:
        """VCPUs of all domains including dom0."""
        return self.dom0.vcpus + sum(d.vcpus for d in self.domains)

    @model_validator(mode="before")
    @classmethod
    def _dom0_vcpus_default(cls, data: Any) -> Any:
        """dom0 gets one VCPU per physical CPU unless the file says otherwise."""
        if not isinstance(data, dict):
            return data
        machine = data.get("machine", {})
        cpus = MachineSpec.model_fields["cpus"].default
        if isinstance(machine, dict):
            cpus = machine.get("cpus", cpus)
        dom0 = data.get("dom0", {})
        if isinstance(cpus, int) and isinstance(dom0, dict) and "vcpus" not in dom0:
            data = {**data, "dom0": {**dom0, "vcpus": cpus}}
        return data

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> Scenario:
        self._check_names()
        self._check_fit()
        self._check_affinity()
        self._check_pingpong()
        self._check_netstream()
        self._check_macs()
        self._check_timeline()
        self._base_dir = _context_base_dir(info)
        ordered = tuple(sorted(self.timeline, key=lambda action: action.at))
        return self.model_copy(update={"timeline": ordered})

    def _check_names(self) -> None:
        seen: dict[str, int] = {}
        for i, d in enumerate(self.domains):
            if d.name in seen:
                raise _Problem(
                    ("domains", i, "name"),
                    f"duplicate domain name {d.name!r} (also domains[{seen[d.name]}])",
                )
            seen[d.name] = i

    def _check_fit(self) -> None:
        dom0_top = XEN_RESERVED + self.dom0.memory
        if dom0_top > IO_HOLE_START:
            raise _Problem(
                ("dom0", "memory"),
                f"dom0 memory {format_size(self.dom0.memory)} + 64MiB for Xen crosses the "
                "2GiB I/O hole; dom0 must stay below 2GiB",
            )
        used = 0
        parts: list[tuple[tuple[str | int, ...], int]] = [
            (("dom0", "memory"), XEN_RESERVED + self.dom0.memory)
        ]
        parts += [(("domains", i, "memory"), d.memory) for i, d in enumerate(self.domains)]
        for path, size in parts:
            used += size
            if used > self.machine.memory:
                raise _Problem(
                    path,
                    f"does not fit: 64MiB (Xen) + dom0 + domains so far = {format_size(used)}, "
                    f"more than machine memory {format_size(self.machine.memory)}",
                )

    def _check_affinity(self) -> None:
        cpus = self.machine.cpus
        for i, d in enumerate(self.domains):
            for k, cpu in enumerate(d.affinity or ()):
                if cpu >= cpus:
                    raise _Problem(
                        ("domains", i, "affinity", k),
                        f"cpu {cpu} out of range; the machine has {cpus} CPUs (0..{cpus - 1})",
                    )

    def _participants(self) -> Iterator[tuple[tuple[str | int, ...], str, tuple[Workload, ...]]]:
        yield ("dom0",), DOM0_NAMES[0], self.dom0.workloads
        for i, d in enumerate(self.domains):
            yield ("domains", i), d.name, d.workloads

    def _check_pingpong(self) -> None:
        """Every pingpong pair is exactly one ping and one pong naming each other."""
        names = {name: loads for _, name, loads in self._participants()}

        def canon(name: str) -> str:
            return DOM0_NAMES[0] if is_dom0_name(name) else name

        def pairs(loads: tuple[Workload, ...], peer: str) -> list[PingpongWorkload]:
            return [w for w in loads if isinstance(w, PingpongWorkload) and canon(w.peer) == peer]

        for prefix, me, loads in self._participants():
            for j, w in enumerate(loads):
                if not isinstance(w, PingpongWorkload):
                    continue
                at = (*prefix, "workloads", j)
                peer = canon(w.peer)
                if is_dom0_name(w.peer) or is_dom0_name(me):
                    raise _Problem(
                        (*at, "peer"),
                        "pingpong with dom0 is not modelled yet; pair two guest domains",
                    )
                if sum(isinstance(x, PingpongWorkload) for x in loads) > 1:
                    raise _Problem(
                        (*at, "kind"), "one pingpong workload per domain (its kernel binds one)"
                    )
                if peer not in names:
                    raise _Problem(
                        (*at, "peer"),
                        f"unknown peer {w.peer!r}; expected another domain's name or dom0",
                    )
                if peer == me:
                    raise _Problem((*at, "peer"), "a domain cannot be its own pingpong peer")
                if pairs(loads, peer)[0] is not w:
                    raise _Problem(
                        (*at, "peer"),
                        f"second pingpong workload with peer {w.peer!r}; "
                        "exactly one ping and one pong per pair",
                    )
                theirs = pairs(names[peer], me)
                if len(theirs) != 1:
                    raise _Problem(
                        (*at, "peer"),
                        f"peer {w.peer!r} has {len(theirs)} pingpong workloads with peer "
                        f"{me!r}; exactly one ping and one pong per pair",
                    )
                if theirs[0].role == w.role:
                    raise _Problem(
                        (*at, "role"),
                        f"both {me!r} and {w.peer!r} are {w.role!r}; "
                        "exactly one ping and one pong per pair",
                    )

    def _check_netstream(self) -> None:
        """Each guest streams to at most one other guest, over a bridge both are on."""
        guests = {d.name: d for d in self.domains}
        for i, d in enumerate(self.domains):
            streams = [
                (j, w) for j, w in enumerate(d.workloads) if isinstance(w, NetstreamWorkload)
            ]
            if len(streams) > 1:
                raise _Problem(
                    ("domains", i, "workloads", streams[1][0], "kind"),
                    "one netstream workload per domain (its kernel streams to one peer)",
                )
            for j, w in streams:
                at = ("domains", i, "workloads", j, "peer")
                if is_dom0_name(w.peer):
                    raise _Problem(
                        at, "netstream peer must be a guest; dom0 is the backend, not an endpoint"
                    )
                if w.peer not in guests:
                    raise _Problem(
                        at, f"unknown peer {w.peer!r}; expected another guest domain's name"
                    )
                if w.peer == d.name:
                    raise _Problem(at, "a domain cannot stream to itself")
                mine = tuple(dict.fromkeys(v.bridge for v in d.vifs))
                theirs = tuple(dict.fromkeys(v.bridge for v in guests[w.peer].vifs))
                if not set(mine) & set(theirs):
                    raise _Problem(
                        at,
                        f"{d.name!r} ({_bridges(mine)}) and {w.peer!r} ({_bridges(theirs)}) "
                        "share no bridge; both need a `kind: vif` on the same bridge",
                    )

    def _check_macs(self) -> None:
        """Two vifs with one MAC would confuse every bridge they share."""
        seen: dict[str, str] = {}
        for i, d in enumerate(self.domains):
            for k, dev in enumerate(d.devices):
                if not isinstance(dev, VifSpec) or dev.mac is None:
                    continue
                where = f"domains[{i}].devices[{k}]"
                if dev.mac in seen:
                    raise _Problem(
                        ("domains", i, "devices", k, "mac"),
                        f"duplicate mac {dev.mac} (also {seen[dev.mac]})",
                    )
                seen[dev.mac] = where

    def _check_timeline(self) -> None:
        """Actions go to an existing guest, while it exists and the run lasts."""
        guests = {d.name: d for d in self.domains}
        destroyed: dict[str, tuple[int, int]] = {}
        for k, action in sorted(enumerate(self.timeline), key=lambda item: item[1].at):
            if is_dom0_name(action.domain):
                raise _Problem(
                    ("timeline", k, "domain"),
                    "console_input goes to a guest's console ring; dom0 has none "
                    "(its console is Xen's)"
                    if isinstance(action, ConsoleInputAction)
                    else "dom0 cannot be destroyed; it runs the toolstack",
                )
            if action.domain not in guests:
                known = ", ".join(guests) or "none in this scenario"
                raise _Problem(
                    ("timeline", k, "domain"),
                    f"unknown domain {action.domain!r}; expected a guest domain's name ({known})",
                )
            if action.at >= self.duration:
                raise _Problem(
                    ("timeline", k, "at"),
                    f"at {format_duration(action.at)} is not before the end of the run "
                    f"(duration {format_duration(self.duration)})",
                )
            start = guests[action.domain].start
            if action.at < start:
                raise _Problem(
                    ("timeline", k, "at"),
                    f"at {format_duration(action.at)} is before domain {action.domain!r} "
                    f"starts ({format_duration(start)})",
                )
            gone = destroyed.get(action.domain)
            if gone is not None and action.at >= gone[1]:
                raise _Problem(
                    ("timeline", k, "at"),
                    f"at {format_duration(action.at)} domain {action.domain!r} is already "
                    f"destroyed (timeline[{gone[0]}] at {format_duration(gone[1])})",
                )
            if isinstance(action, DestroyAction):
                destroyed[action.domain] = (k, action.at)


def _bridges(names: tuple[str, ...]) -> str:
    return f"bridges: {', '.join(names)}" if names else "no vif"


# ---------------------------------------------------------------------------- loading

_Path = tuple[str | int, ...]


def _lines(node: yaml.Node, source: str) -> dict[_Path, int]:
    """Map each path in the YAML node graph to its 1-based line (the key's line)."""
    lines: dict[_Path, int] = {(): node.start_mark.line + 1}

    def walk(n: yaml.Node, path: _Path) -> None:
        if isinstance(n, yaml.MappingNode):
            seen: set[object] = set()
            for key_node, value_node in n.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else "<complex key>"
                if key in seen:
                    raise ScenarioError(
                        f"{source}:{key_node.start_mark.line + 1}: {_dotted((*path, key))}: "
                        "duplicate key"
                    )
                seen.add(key)
                lines[(*path, key)] = key_node.start_mark.line + 1
                walk(value_node, (*path, key))
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                lines[(*path, i)] = item.start_mark.line + 1
                walk(item, (*path, i))

    walk(node, ())
    return lines


def _dotted(path: _Path) -> str:
    """('domains', 0, 'rma') -> 'domains[0].rma'."""
    out = ""
    for el in path:
        out += f"[{el}]" if isinstance(el, int) else (f".{el}" if out else str(el))
    return out or "(top level)"


def _strip_tags(loc: tuple[int | str, ...], data: object) -> _Path:
    """Drop the discriminator tags pydantic puts in locs ('workloads', 0, 'timer', 'hz')."""
    out: list[str | int] = []
    cur: object = data
    for el in loc:
        if isinstance(cur, dict) and el not in cur and el in (cur.get("kind"), cur.get("action")):
            continue
        out.append(el)
        if isinstance(cur, dict):
            cur = cur.get(el)
        elif isinstance(cur, list) and isinstance(el, int) and 0 <= el < len(cur):
            cur = cur[el]
        else:
            cur = None
    return tuple(out)


# The lists whose items are discriminated unions: (what an item is, its tag key, the models).
_UNIONS: dict[str, tuple[str, str, dict[str, type[_Model]]]] = {
    "workloads": ("workload", "kind", WORKLOAD_MODELS),
    "devices": ("device", "kind", DEVICE_MODELS),
    "timeline": ("timeline", "action", TIMELINE_MODELS),
}


def _union_at(path: _Path) -> tuple[str, str, dict[str, type[_Model]]] | None:
    """The union an item at `path` (`..., list name, index`) belongs to, if any."""
    if len(path) >= 2 and isinstance(path[-1], int) and isinstance(path[-2], str):
        return _UNIONS.get(path[-2])
    return None


def _model_at(path: _Path, data: object) -> type[BaseModel] | None:
    """The model that validates the mapping at `path` (for listing its allowed keys)."""
    shape = tuple("*" if isinstance(el, int) else el for el in path)
    fixed: dict[tuple[str, ...], type[BaseModel]] = {
        (): Scenario,
        ("machine",): MachineSpec,
        ("machine", "disk"): DiskSpec,
        ("machine", "link"): LinkSpec,
        ("dom0",): Dom0Spec,
        ("domains", "*"): DomainSpec,
    }
    if shape in fixed:
        return fixed[shape]
    union = _union_at(path)
    if union is not None:
        _, tag, models = union
        node: object = data
        for el in path:
            node = node[el] if isinstance(node, (dict, list)) else None  # type: ignore[index]
        value = node.get(tag) if isinstance(node, dict) else None
        return models.get(value) if isinstance(value, str) else None
    return None


def _describe(value: object) -> str:
    return f"{type(value).__name__} {value!r}"


def _reason(err: Any, path: _Path, data: object) -> tuple[_Path, str]:
    """Turn one pydantic error into (path, human reason)."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    value = err.get("input")
    if kind in ("value_error", "assertion_error"):
        exc = ctx.get("error")
        if isinstance(exc, _Problem):
            return (*path, *exc.path), str(exc)
        return path, str(exc) if exc is not None else err["msg"]
    if kind == "missing":
        return path, "required key is missing"
    if kind == "extra_forbidden":
        model = _model_at(path[:-1], data)
        allowed = f"; expected one of {', '.join(model.model_fields)}" if model else ""
        return path, f"unknown key {path[-1]!r}{allowed}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        noun, tag, models = _union_at(path) or _UNIONS["workloads"]
        expected = ", ".join(models)
        if kind == "union_tag_not_found":
            return path, f"{noun} item lacks its {tag!r} key; expected one of {expected}"
        return (*path, tag), f"unknown {noun} {tag} {ctx.get('tag')!r}; expected one of {expected}"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return path, f"expected a mapping, got {_describe(value)}"
    if kind in ("tuple_type", "list_type"):
        return path, f"expected a list, got {_describe(value)}"
    if kind == "int_type":
        return path, f"expected an integer, got {_describe(value)}"
    if kind == "string_type":
        return path, f"expected a string, got {_describe(value)}"
    if kind == "bool_type":
        return path, f"expected true or false, got {_describe(value)}"
    if kind == "literal_error":
        return path, f"expected {ctx.get('expected')}, got {value!r}"
    return path, f"{err['msg']} (got {value!r})"


def _nearest_line(lines: dict[_Path, int], path: _Path) -> int:
    for n in range(len(path), -1, -1):
        if path[:n] in lines:
            return lines[path[:n]]
    return 1


def parse_scenario(
    text: str, source: str = "<string>", *, base_dir: str | Path | None = None
) -> Scenario:
    """Validate scenario YAML text; raises ScenarioError with one line naming file and line.

    Relative image paths resolve against `base_dir` (default: the current directory).
    """
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()  # type: ignore[no-untyped-call]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        raise ScenarioError(f"{source}:{line}: YAML syntax error: {what}") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{source}:1: YAML error: {exc}") from None
    if node is None:
        raise ScenarioError(f"{source}:1: (top level): the scenario is empty")
    lines = _lines(node, source)
    try:
        context = {"base_dir": Path(base_dir) if base_dir is not None else Path.cwd()}
        scenario = Scenario.model_validate(data, context=context)
    except ValidationError as exc:
        found = []
        for err in exc.errors():
            path, reason = _reason(err, _strip_tags(err["loc"], data), data)
            found.append((_nearest_line(lines, path), path, reason))
        line, path, reason = min(found, key=lambda f: f[0])
        raise ScenarioError(f"{source}:{line}: {_dotted(path)}: {reason}") from None
    scenario._sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
    scenario._source = source
    return scenario


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; its `sha256` is that of the file's bytes."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ScenarioError(f"{source}: cannot read scenario: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ScenarioError(f"{source}:{line}: (top level): the file is not UTF-8") from None
    scenario = parse_scenario(text, source, base_dir=Path(path).parent)
    scenario._sha256 = hashlib.sha256(raw).hexdigest()
    return scenario


# ---------------------------------------------------------------------------- reference


def _shown_default(field: FieldInfo) -> str:
    extra = field.json_schema_extra
    if isinstance(extra, dict) and "shown_default" in extra:
        return str(extra["shown_default"])
    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        return "(section defaults)"
    value = field.default
    for meta in field.metadata:
        fmt = _FORMATTERS.get(getattr(meta, "func", None))  # type: ignore[arg-type]
        if fmt is not None and isinstance(value, int):
            return f"`{fmt(value)}`"
    if value == ():
        return "`[]`"
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def reference_markdown() -> str:
    """The scenario key reference as Markdown tables, generated from the models above."""
    sections: list[tuple[str, type[BaseModel]]] = [
        ("top level", Scenario),
        ("`machine`", MachineSpec),
        ("`machine.disk`", DiskSpec),
        ("`machine.link`", LinkSpec),
        ("`dom0`", Dom0Spec),
        ("`domains[]`", DomainSpec),
        *((f"device `kind: {k}`", m) for k, m in DEVICE_MODELS.items()),
        *((f"workload `kind: {k}`", m) for k, m in WORKLOAD_MODELS.items()),
        *((f"`timeline[]` `action: {k}`", m) for k, m in TIMELINE_MODELS.items()),
    ]
    out: list[str] = []
    for title, model in sections:
        doc = " ".join((model.__doc__ or "").split())
        out += [f"**{title}** — {doc}", ""]
        out += ["| key | default | meaning |", "|---|---|---|"]
        for key, field in model.model_fields.items():
            out.append(f"| `{key}` | {_shown_default(field)} | {field.description or ''} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(reference_markdown(), end="")
