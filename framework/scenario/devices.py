"""A guest's virtual devices: vbd disks and vif network interfaces, one model per `kind`.

Disk images: a vbd keeps its `image` string as written; a relative path resolves against
the scenario file's directory (`base_dir` in the validation context, else the current
directory). Loading only looks at an image's size; it never creates, opens or changes the
file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    StrictStr,
    ValidationInfo,
    model_validator,
)

from framework.scenario.fields import Problem, ScenarioModel, Size, matching, non_empty
from framework.scenario.limits import MIN_VBD_SIZE, PAGE_SIZE
from framework.units import format_size

__all__ = [
    "DEVICE_MODELS",
    "Device",
    "VbdSpec",
    "VifSpec",
    "context_base_dir",
    "resolve_image",
]

# Linux block device names of Xen virtual disks: xvda .. xvdz.
_VBD_NAME: Final = re.compile(r"xvd[a-z]")
# A Linux interface name has at most 15 characters (IFNAMSIZ 16 with the NUL).
_BRIDGE_NAME: Final = re.compile(r"[a-z][a-z0-9]{0,14}")
_MAC: Final = re.compile(r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}")


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
        raise Problem(
            (),
            f"mac must be quoted: YAML read it as the base-60 number {value} "
            '(write mac: "12:34:56:78:9a:bc")',
        )
    return value


def resolve_image(image: str, base_dir: Path) -> Path:
    """Where an image path points: absolute as written, else under the scenario's directory."""
    path = Path(image)
    return path if path.is_absolute() else base_dir / path


def context_base_dir(info: ValidationInfo) -> Path:
    """The directory relative image paths resolve against, from the validation context."""
    context = info.context if isinstance(info.context, dict) else {}
    base = context.get("base_dir")
    return Path(base).absolute() if base is not None else Path.cwd()


class VbdSpec(ScenarioModel):
    """A virtual block device: a disk the guest's blkfront reaches through dom0's blkback.

    With an `image` that exists, the disk has the file's size; loading never touches the file.
    """

    kind: Literal["vbd"] = Field("vbd", description="`vbd`")
    name: Annotated[StrictStr, matching(_VBD_NAME, "vbd name")] = Field(
        description="device name in the guest, `xvda` .. `xvdz`, unique per domain"
    )
    size: Size | None = Field(
        None,
        description="capacity: a multiple of 4KiB, at least 1MiB; required unless `image` "
        "names an existing file, whose size it then is",
    )
    image: Annotated[StrictStr, non_empty("image")] | None = Field(
        None,
        description="backing file; a relative path is relative to the scenario file's directory",
    )
    mode: Literal["w", "r"] = Field("w", description="`w` read-write or `r` read-only")

    @model_validator(mode="after")
    def _capacity(self, info: ValidationInfo) -> VbdSpec:
        """Fill `size` from an existing image, or check that both agree."""
        size = self.size
        if self.image is not None:
            path = resolve_image(self.image, context_base_dir(info))
            if path.exists():
                if not path.is_file():
                    raise Problem(("image",), f"image {self.image!r} is not a regular file")
                found = path.stat().st_size
                if found % PAGE_SIZE:
                    raise Problem(
                        ("image",),
                        f"image {self.image!r} is {format_size(found)}, not a multiple of 4KiB "
                        "(a vbd is whole 4KiB pages)",
                    )
                if size is None:
                    if found < MIN_VBD_SIZE:
                        raise Problem(
                            ("image",),
                            f"image {self.image!r} is {format_size(found)}; "
                            "a vbd needs at least 1MiB",
                        )
                    return self.model_copy(update={"size": found})
                if size != found:
                    raise Problem(
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
            raise Problem(("size",), f"size is required: {why}")
        if size % PAGE_SIZE:
            raise Problem(("size",), f"size {format_size(size)} is not a multiple of 4KiB")
        if size < MIN_VBD_SIZE:
            raise Problem(("size",), f"size {format_size(size)} is below the 1MiB minimum")
        return self


class VifSpec(ScenarioModel):
    """A virtual network interface: the guest's netfront, plugged by dom0 into a bridge."""

    kind: Literal["vif"] = Field("vif", description="`vif`")
    bridge: Annotated[StrictStr, matching(_BRIDGE_NAME, "bridge name")] = Field(
        "xenbr0", description="bridge in dom0, `[a-z][a-z0-9]{0,14}`"
    )
    mac: Annotated[StrictStr, BeforeValidator(_quoted_mac), AfterValidator(_mac)] | None = Field(
        None,
        description="unicast MAC `xx:xx:xx:xx:xx:xx` (stored in lower case); default: derived "
        "deterministically by the simulator",
    )


Device = Annotated[VbdSpec | VifSpec, Field(discriminator="kind")]
DEVICE_MODELS: dict[str, type[ScenarioModel]] = {"vbd": VbdSpec, "vif": VifSpec}
