"""The cross-field rules of the hotplug actions (`vcpu_set`, `block_attach` /
`block_detach`, `network_attach` / `network_detach`): what is attached when.

Devices are followed in time order from the domain's own `devices`: an attach names a vbd
not attached at that time, a detach one that is; vifs are numbered as xend numbers them,
in the order they were ever attached (the domain's own first), so a detached vif's number
is never given again. Unknown domains, dom0 and actions after a `destroy` are `check_timeline`'s.
"""

from __future__ import annotations

from framework.scenario.domains import DomainSpec
from framework.scenario.fields import Problem
from framework.scenario.timeline import (
    BlockAttachAction,
    BlockDetachAction,
    NetworkAttachAction,
    NetworkDetachAction,
    TimelineAction,
    VcpuSetAction,
)
from framework.units import format_duration

__all__ = ["check_hotplug"]


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
