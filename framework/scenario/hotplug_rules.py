"""The cross-field rules of the hotplug actions (`vcpu_set`, `block_attach` /
`block_detach`, `network_attach` / `network_detach`): what is attached when.

Devices are followed in time order from the domain's own `devices`: an attach names a vbd
not attached at that time, a detach one that is; vifs are numbered as xend numbers them,
in the order they were ever attached (the domain's own first), so a detached vif's number
is never given again. Unknown domains, dom0 and actions after a `destroy` are `check_timeline`'s.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from framework.scenario.devices import VbdSpec, resolve_image
from framework.scenario.domains import DomainSpec
from framework.scenario.fields import FieldPath, Problem, clip, dotted
from framework.scenario.timeline import (
    BlockAttachAction,
    BlockDetachAction,
    NetworkAttachAction,
    NetworkDetachAction,
    TimelineAction,
    VcpuSetAction,
)
from framework.units import format_duration

__all__ = ["check_attached_images", "check_hotplug"]


HOTPLUG_DEVICE_ACTIONS: Final = (
    BlockAttachAction,
    BlockDetachAction,
    NetworkAttachAction,
    NetworkDetachAction,
)


class _Devices:
    """What each domain has attached, followed through the timeline."""

    def __init__(self, domains: dict[str, DomainSpec]) -> None:
        self.vbds = {name: {v.name for v in d.vbds} for name, d in domains.items()}
        self.vifs = {name: set(range(len(d.vifs))) for name, d in domains.items()}
        self.next_vif = {name: len(d.vifs) for name, d in domains.items()}

    @classmethod
    def follow(
        cls, timeline: tuple[TimelineAction, ...], domains: dict[str, DomainSpec]
    ) -> _Devices:
        devs = cls(domains)
        for k, action in sorted(enumerate(timeline), key=lambda item: (item[1].at, item[0])):
            devs.step(k, action)
        return devs

    def step(self, k: int, action: TimelineAction) -> None:
        if not isinstance(action, HOTPLUG_DEVICE_ACTIONS):
            return  # grant actions name a grant, not a domain
        name = action.domain
        when = format_duration(action.at)
        if isinstance(action, BlockAttachAction):
            vbds = self.vbds.setdefault(name, set())
            if action.device.name in vbds:
                raise Problem(
                    ("timeline", k, "device", "name"),
                    f"vbd {action.device.name!r} is already attached to domain {name!r} at {when}",
                )
            vbds.add(action.device.name)
        elif isinstance(action, BlockDetachAction):
            vbds = self.vbds.setdefault(name, set())
            if action.device not in vbds:
                have = ", ".join(sorted(vbds)) or "none"
                raise Problem(
                    ("timeline", k, "device"),
                    f"vbd {action.device!r} is not attached to domain {name!r} at {when} "
                    f"(attached: {have})",
                )
            vbds.discard(action.device)
        elif isinstance(action, NetworkAttachAction):
            devid = self.next_vif.get(name, 0)
            self.next_vif[name] = devid + 1
            self.vifs.setdefault(name, set()).add(devid)
        elif isinstance(action, NetworkDetachAction):
            vifs = self.vifs.setdefault(name, set())
            if action.devid not in vifs:
                have = ", ".join(str(n) for n in sorted(vifs)) or "none"
                raise Problem(
                    ("timeline", k, "devid"),
                    f"vif {action.devid} is not attached to domain {name!r} at {when} "
                    f"(attached vifs: {have})",
                )
            vifs.discard(action.devid)


def check_hotplug(timeline: tuple[TimelineAction, ...], domains: tuple[DomainSpec, ...]) -> None:
    """`vcpu_set` keeps VCPU 0 and asks no more VCPUs than the domain has; attaches and
    detaches name devices that are, or are not, attached at their time."""
    guests = {d.name: d for d in domains}
    for k, action in enumerate(timeline):
        if isinstance(action, VcpuSetAction) and action.domain in guests:
            most = guests[action.domain].vcpus
            if action.vcpus == 0:
                raise Problem(
                    ("timeline", k, "vcpus"),
                    "vcpus 0 would take VCPU 0 offline, which the guest kernel refuses "
                    "(Linux never takes its boot CPU down); at least 1",
                )
            if action.vcpus > most:
                raise Problem(
                    ("timeline", k, "vcpus"),
                    f"vcpus {action.vcpus} is more than domain {action.domain!r} has "
                    f"({most}, its `vcpus`)",
                )
    _Devices.follow(timeline, guests)


def check_attached_images(
    timeline: tuple[TimelineAction, ...], domains: tuple[DomainSpec, ...], base_dir: Path
) -> None:
    """An image a `block_attach` names is shared with another vbd (another domain's, or
    another name's) only when both are `mode: r`, as for the domains' own vbds; the same
    vbd attached again after a detach is the same user of its file."""
    users: list[tuple[tuple[int, int], FieldPath, tuple[str, str], VbdSpec]] = []

    def add(at: FieldPath, owner: tuple[str, str], vbd: VbdSpec) -> None:
        if vbd.image is None:
            return
        try:
            st = os.stat(resolve_image(vbd.image, base_dir))
        except (OSError, ValueError):
            return  # the vbd itself said why it cannot be opened
        key = (st.st_dev, st.st_ino)
        for other_key, other_at, other_owner, other in users:
            if other_key != key or other_owner == owner:
                continue
            if vbd.writable or other.writable:
                raise Problem(
                    (*at, "image"),
                    f"image {clip(repr(vbd.image))} is the same file as {dotted(other_at)}'s "
                    f"({clip(repr(other.image))}); two vbds may share an image only when "
                    "both are `mode: r`",
                )
        users.append((key, at, owner, vbd))

    for i, d in enumerate(domains):
        for k, dev in enumerate(d.devices):
            if isinstance(dev, VbdSpec):
                add(("domains", i, "devices", k), (d.name, dev.name), dev)
    for k, action in enumerate(timeline):
        if isinstance(action, BlockAttachAction):
            add(("timeline", k, "device"), (action.domain, action.device.name), action.device)
