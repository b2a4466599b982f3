"""A guest's virtual devices: vbd disks and vif network interfaces, one model per `kind`.

Disk images: a vbd keeps its `image` string as written; a relative path resolves against
the scenario file's directory (`base_dir` in the validation context, else the current
directory). Loading checks that the image opens with the vbd's mode and reads its size;
it never creates, reads or changes the file.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    StrictStr,
    ValidationInfo,
    model_validator,
)

from framework.scenario.fields import Problem, ScenarioModel, Size, clip, matching, non_empty
from framework.scenario.limits import MAX_IMAGE_PATH, MAX_VBD_SIZE, MIN_VBD_SIZE, PAGE_SIZE
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

    Without `image`, the disk is a sparse file the run creates in its directory. With one,
    the file must exist and open with the `mode` asked; the disk has its size, and only a
    `mode: w` disk is ever written (loading never changes it).
    """

    kind: Literal["vbd"] = Field("vbd", description="`vbd`")
    name: Annotated[StrictStr, matching(_VBD_NAME, "vbd name")] = Field(
        description="device name in the guest, `xvda` .. `xvdz`, unique per domain"
    )
    size: Size | None = Field(
        None,
        description="capacity: a multiple of 4KiB, 1MiB..2TiB; required without `image`, "
        "else it must equal the image's size",
    )
    image: Annotated[StrictStr, non_empty("image")] | None = Field(
        None,
        description="an existing backing file (regular, at most 2TiB, openable with `mode`); "
        "a relative path is relative to the scenario file's directory. No two vbds may share "
        "one unless both are `mode: r`",
    )
    mode: Literal["w", "r"] = Field(
        "w",
        description="`w` read-write or `r` read-only; with an `image` the guest's writes go "
        "into that file, so only `mode: w` lets them",
        json_schema_extra={"shown_default": "`w`; `r` with an `image`"},
    )

    @model_validator(mode="before")
    @classmethod
    def _read_only_image(cls, data: Any) -> Any:
        """A vbd over a user's image is read-only unless the scenario says `mode: w`."""
        if isinstance(data, dict) and data.get("image") is not None and "mode" not in data:
            return {**data, "mode": "r"}
        return data

    @model_validator(mode="after")
    def _capacity(self, info: ValidationInfo) -> VbdSpec:
        """Fill `size` from the image, or check that both agree and the image opens."""
        mode = self.mode
        size = self.size
        if self.image is not None:
            found = _image_size(self.image, resolve_image(self.image, context_base_dir(info)), mode)
            if size is not None and size != found:
                raise Problem(
                    ("size",),
                    f"size {format_size(size)} differs from image {clip(repr(self.image))}, "
                    f"which is {format_size(found)}",
                )
            size = found
        if size is None:
            raise Problem(("size",), "size is required: there is no image")
        if self.image is None:
            if size % PAGE_SIZE:
                raise Problem(("size",), f"size {format_size(size)} is not a multiple of 4KiB")
            if size < MIN_VBD_SIZE:
                raise Problem(("size",), f"size {format_size(size)} is below the 1MiB minimum")
        else:
            shown = clip(repr(self.image))
            if size % PAGE_SIZE:
                raise Problem(
                    ("image",),
                    f"image {shown} is {format_size(size)}, not a multiple of 4KiB "
                    "(a vbd is whole 4KiB pages)",
                )
            if size < MIN_VBD_SIZE:
                raise Problem(
                    ("image",),
                    f"image {shown} is {format_size(size)}; a vbd needs at least 1MiB",
                )
        if size > MAX_VBD_SIZE:
            raise Problem(
                ("size",) if self.image is None else ("image",),
                f"{'size' if self.image is None else 'image ' + clip(repr(self.image))} is "
                f"{format_size(size)}, more than the {format_size(MAX_VBD_SIZE)} a vbd may have "
                "(2^32 sectors, a file every Linux file system holds)",
            )
        return self.model_copy(update={"size": size}) if size != self.size else self

    @property
    def writable(self) -> bool:
        """Whether the guest may write the disk (`mode: w`)."""
        return self.mode == "w"


def _image_size(image: str, path: Path, mode: str) -> int:
    """The size of the image file at `path`, which must open with `mode`; else a Problem.

    As Xen's block hotplug script does for a `file:` vbd: the file must exist, and one it
    may not write is refused for `mode: w`. The file is opened and closed at once: never
    created, read or changed.
    """
    shown = clip(repr(image))
    if len(image.encode("utf-8", "surrogatepass")) > MAX_IMAGE_PATH:
        raise Problem(
            ("image",),
            f"image path is {len(image)} characters; the toolstack writes it to xenstore, "
            f"which carries at most {MAX_IMAGE_PATH} bytes of it",
        )
    if "\0" in image:
        raise Problem(("image",), f"image {shown} holds a NUL character, which no path can")
    try:
        st = os.stat(path)
        if stat.S_ISREG(st.st_mode):
            os.close(os.open(path, (os.O_RDWR if mode == "w" else os.O_RDONLY) | os.O_CLOEXEC))
    except FileNotFoundError:
        raise Problem(
            ("image",),
            f"image {shown} does not exist{_looked_in(image, path)}; leave `image` out for "
            "a disk the run creates in its directory",
        ) from None
    except (PermissionError, IsADirectoryError) as exc:
        raise Problem(
            ("image",),
            f"image {shown} cannot be opened {_MODES[mode]}: "
            f"{exc.strerror}{_READ_ONLY_HINT if mode == 'w' else ''}",
        ) from None
    except OSError as exc:
        if exc.errno == errno.EROFS:
            raise Problem(
                ("image",),
                f"image {shown} is on a read-only file system{_READ_ONLY_HINT}",
            ) from None
        raise Problem(
            ("image",), f"image {shown} cannot be opened {_MODES[mode]}: {exc.strerror}"
        ) from None
    except (ValueError, UnicodeError) as exc:
        raise Problem(("image",), f"image {shown} is not a usable path: {exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise Problem(("image",), f"image {shown} is not a regular file ({_file_kind(st)})")
    if mode == "w" and not st.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        # What Xen's block script checks (`stat -c %A | grep w`): even root, who may open
        # it, is not to write a file everyone was denied writing.
        raise Problem(
            ("image",), f"image {shown} is read-only (no write permission){_READ_ONLY_HINT}"
        )
    return st.st_size


def _looked_in(image: str, path: Path) -> str:
    """Where a relative image path was looked for (it is relative to the scenario file)."""
    return "" if Path(image).is_absolute() else f" (looked for {clip(str(path))})"


_MODES: Final = {"w": "for reading and writing (mode w)", "r": "for reading (mode r)"}
_READ_ONLY_HINT: Final = "; use `mode: r` for a disk the guest only reads"


def _file_kind(st: os.stat_result) -> str:
    """What a non-regular file is, in words."""
    for test, kind in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(st.st_mode):
            return kind
    return "not a file"


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
