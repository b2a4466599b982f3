"""The cross-field rules of a whole scenario: what holds between domains, the machine and
the timeline.

Each rule raises `Problem` with the path of the field to blame (relative to the scenario),
so the loader can name its line. The rules within one domain live with `domains`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from framework.hw970.link import ETH_HLEN
from framework.scenario.devices import VbdSpec, VifSpec, resolve_image
from framework.scenario.domains import Dom0Spec, DomainSpec
from framework.scenario.expect import Expectation
from framework.scenario.fields import START_BY_TIMELINE, FieldPath, Problem, clip, dotted
from framework.scenario.limits import (
    DOM0_NAMES,
    IO_HOLE_START,
    PAGE_SIZE,
    RMA_SIZES,
    XEN_RESERVED,
    is_dom0_name,
    memory_ranges,
)
from framework.scenario.machine import MachineSpec
from framework.scenario.save_rules import check_restore_action, check_save_action
from framework.scenario.timeline import (
    GRANT_ACTIONS,
    ConsoleInputAction,
    CreateAction,
    DestroyAction,
    RebootAction,
    RestoreAction,
    SaveAction,
    ShutdownAction,
    TimelineAction,
    VcpuPinAction,
)
from framework.scenario.workloads import NetstreamWorkload, PingpongWorkload, Workload
from framework.scenario.xm_actions import XmViewAction
from framework.units import format_duration, format_size
from framework.xen.public.arch_powerpc import NR_GRANT_FRAMES, htab_bytes_for

__all__ = [
    "check_affinity",
    "check_expectations",
    "check_fit",
    "check_link_mtu",
    "check_macs",
    "check_names",
    "check_netstream",
    "check_pingpong",
    "check_rma",
    "check_shared_images",
    "check_starts",
    "check_timeline",
    "check_timeline_targets",
]


def check_names(domains: tuple[DomainSpec, ...]) -> None:
    """Guest domain names are unique."""
    seen: dict[str, int] = {}
    for i, d in enumerate(domains):
        if d.name in seen:
            raise Problem(
                ("domains", i, "name"),
                f"duplicate domain name {d.name!r} (also domains[{seen[d.name]}])",
            )
        seen[d.name] = i


def check_fit(machine: MachineSpec, dom0: Dom0Spec, domains: tuple[DomainSpec, ...]) -> None:
    """Xen, dom0 (below the I/O hole) and every guest fit in machine memory, in file order."""
    dom0_top = XEN_RESERVED + dom0.memory
    if dom0_top > IO_HOLE_START:
        raise Problem(
            ("dom0", "memory"),
            f"dom0 memory {format_size(dom0.memory)} + 64MiB for Xen crosses the "
            "2GiB I/O hole; dom0 must stay below 2GiB",
        )
    used = 0
    parts: list[tuple[FieldPath, int]] = [
        (("dom0", "memory"), XEN_RESERVED + _with_xen_overhead(dom0.memory))
    ]
    parts += [
        (("domains", i, "memory"), _with_xen_overhead(d.memory)) for i, d in enumerate(domains)
    ]
    for path, size in parts:
        used += size
        if used > machine.memory:
            raise Problem(
                path,
                f"does not fit: 64MiB (Xen) + dom0 + domains so far, each with the page table "
                f"and grant frames Xen gives it = {format_size(used)}, more than machine "
                f"memory {format_size(machine.memory)}",
            )


def _with_xen_overhead(memory: int) -> int:
    """A domain's memory plus what Xen allocates for it from the same machine memory: its
    hashed page table (1/64 of its memory, as xend reserves it) and its grant frames.
    (dom0's TCE tables and the alignment of each block are left to the build, which
    records a domain it cannot place.)"""
    return memory + htab_bytes_for(memory) + NR_GRANT_FRAMES * PAGE_SIZE


#: The largest MTU whose frame (Ethernet header + payload) fits one granted page.
SINGLE_PAGE_MTU = PAGE_SIZE - ETH_HLEN


def check_link_mtu(machine: MachineSpec) -> None:
    """A frame must fit one page: netfront here does not chain tx/rx slots with
    NETTXF_more_data / NETRXF_more_data (feature-sg), so a larger MTU would be accepted
    and then cut down to a page without a word."""
    mtu = machine.link.mtu
    if mtu > SINGLE_PAGE_MTU:
        raise Problem(
            ("machine", "link", "mtu"),
            f"mtu {mtu} is not modelled: a frame must fit one 4KiB page (mtu at most "
            f"{SINGLE_PAGE_MTU} = 4096 - {ETH_HLEN}-byte Ethernet header); frames over several "
            "pages (NETTXF_more_data) are not implemented",
        )


def _rma_placeable(rma: int, ranges: list[tuple[int, int]]) -> bool:
    """Whether some naturally aligned `rma` block lies in one RAM range above Xen's 64MiB."""
    for base, size in ranges:
        first = -(-max(base, XEN_RESERVED) // rma) * rma
        if first + rma <= base + size:
            return True
    return False


def check_rma(machine: MachineSpec, dom0: Dom0Spec, domains: tuple[DomainSpec, ...]) -> None:
    """Every RMA is one the machine could ever place: a naturally aligned block of RAM above
    Xen's reserved 64MiB, not across the 2-4GiB I/O hole (dom0's: below it).

    Whether it is still free when the domain is built depends on the domains before it;
    that is the toolstack's to report (`mem.fail` in the trace).
    """
    ram = memory_ranges(machine.memory)
    below_hole = [(b, min(s, IO_HOLE_START - b)) for b, s in ram if b < IO_HOLE_START]
    where = " + ".join(f"[{format_size(b) if b else 0}, {format_size(b + s)})" for b, s in ram)
    parts: list[tuple[FieldPath, int, list[tuple[int, int]], str]] = [
        (("dom0", "rma"), dom0.rma, below_hole, f"dom0's RAM below the 2GiB I/O hole in {where}"),
    ]
    parts += [
        (("domains", i, "rma"), d.rma, ram, f"machine RAM {where}") for i, d in enumerate(domains)
    ]
    for path, rma, ranges, place in parts:
        if _rma_placeable(rma, ranges):
            continue
        fits = [format_size(s) for s in RMA_SIZES if _rma_placeable(s, ranges)]
        largest = f"the largest RMA that fits is {fits[-1]}" if fits else "no RMA fits"
        raise Problem(
            path,
            f"RMA {format_size(rma)} can never be placed: it needs a naturally aligned "
            f"{format_size(rma)} block above Xen's 64MiB, and {place} has none ({largest})",
        )


def check_affinity(machine: MachineSpec, domains: tuple[DomainSpec, ...]) -> None:
    """Affinity names only CPUs the machine has."""
    cpus = machine.cpus
    for i, d in enumerate(domains):
        for k, cpu in enumerate(d.affinity or ()):
            if cpu >= cpus:
                raise Problem(
                    ("domains", i, "affinity", k),
                    f"cpu {cpu} out of range; the machine has {cpus} CPUs (0..{cpus - 1})",
                )


def _participants(
    dom0: Dom0Spec, domains: tuple[DomainSpec, ...]
) -> Iterator[tuple[FieldPath, str, tuple[Workload, ...]]]:
    """Every domain's path in the file, name and workloads, dom0 first."""
    yield ("dom0",), DOM0_NAMES[0], dom0.workloads
    for i, d in enumerate(domains):
        yield ("domains", i), d.name, d.workloads


def check_pingpong(dom0: Dom0Spec, domains: tuple[DomainSpec, ...]) -> None:
    """Every pingpong pair is exactly one ping and one pong naming each other."""
    names = {name: loads for _, name, loads in _participants(dom0, domains)}

    def canon(name: str) -> str:
        return DOM0_NAMES[0] if is_dom0_name(name) else name

    def pairs(loads: tuple[Workload, ...], peer: str) -> list[PingpongWorkload]:
        return [w for w in loads if isinstance(w, PingpongWorkload) and canon(w.peer) == peer]

    for prefix, me, loads in _participants(dom0, domains):
        for j, w in enumerate(loads):
            if not isinstance(w, PingpongWorkload):
                continue
            at = (*prefix, "workloads", j)
            peer = canon(w.peer)
            if is_dom0_name(w.peer) or is_dom0_name(me):
                raise Problem(
                    (*at, "peer"),
                    "pingpong with dom0 is not modelled yet; pair two guest domains",
                )
            if sum(isinstance(x, PingpongWorkload) for x in loads) > 1:
                raise Problem(
                    (*at, "kind"), "one pingpong workload per domain (its kernel binds one)"
                )
            if peer not in names:
                raise Problem(
                    (*at, "peer"),
                    f"unknown peer {w.peer!r}; expected another domain's name or dom0",
                )
            if peer == me:
                raise Problem((*at, "peer"), "a domain cannot be its own pingpong peer")
            if pairs(loads, peer)[0] is not w:
                raise Problem(
                    (*at, "peer"),
                    f"second pingpong workload with peer {w.peer!r}; "
                    "exactly one ping and one pong per pair",
                )
            theirs = pairs(names[peer], me)
            if len(theirs) != 1:
                raise Problem(
                    (*at, "peer"),
                    f"peer {w.peer!r} has {len(theirs)} pingpong workloads with peer "
                    f"{me!r}; exactly one ping and one pong per pair",
                )
            if theirs[0].role == w.role:
                raise Problem(
                    (*at, "role"),
                    f"both {me!r} and {w.peer!r} are {w.role!r}; "
                    "exactly one ping and one pong per pair",
                )


def check_netstream(domains: tuple[DomainSpec, ...]) -> None:
    """Each guest streams to at most one other guest, over a bridge both are on."""
    guests = {d.name: d for d in domains}
    for i, d in enumerate(domains):
        streams = [(j, w) for j, w in enumerate(d.workloads) if isinstance(w, NetstreamWorkload)]
        if len(streams) > 1:
            raise Problem(
                ("domains", i, "workloads", streams[1][0], "kind"),
                "one netstream workload per domain (its kernel streams to one peer)",
            )
        for j, w in streams:
            at = ("domains", i, "workloads", j, "peer")
            if is_dom0_name(w.peer):
                raise Problem(
                    at, "netstream peer must be a guest; dom0 is the backend, not an endpoint"
                )
            if w.peer not in guests:
                raise Problem(at, f"unknown peer {w.peer!r}; expected another guest domain's name")
            if w.peer == d.name:
                raise Problem(at, "a domain cannot stream to itself")
            mine = tuple(dict.fromkeys(v.bridge for v in d.vifs))
            theirs = tuple(dict.fromkeys(v.bridge for v in guests[w.peer].vifs))
            if not set(mine) & set(theirs):
                raise Problem(
                    at,
                    f"{d.name!r} ({_bridges(mine)}) and {w.peer!r} ({_bridges(theirs)}) "
                    "share no bridge; both need a `kind: vif` on the same bridge",
                )


def check_macs(domains: tuple[DomainSpec, ...]) -> None:
    """Two vifs with one MAC would confuse every bridge they share."""
    seen: dict[str, str] = {}
    for i, d in enumerate(domains):
        for k, dev in enumerate(d.devices):
            if not isinstance(dev, VifSpec) or dev.mac is None:
                continue
            where = f"domains[{i}].devices[{k}]"
            if dev.mac in seen:
                raise Problem(
                    ("domains", i, "devices", k, "mac"),
                    f"duplicate mac {dev.mac} (also {seen[dev.mac]})",
                )
            seen[dev.mac] = where


#: What a timeline action does to its domain, for messages.
_DONE: dict[str, str] = {
    "destroy": "destroyed",
    "pause": "paused",
    "unpause": "unpaused",
    "vcpu_pin": "pinned from the timeline",
    "sched_credit": "rescheduled from the timeline",
    "create": "created from the timeline",
    "shutdown": "shut down from the timeline",
    "reboot": "rebooted from the timeline",
    "vcpu_set": "given VCPUs from the timeline",
    "block_attach": "a block-attach target (it is the vbds' backend, with no frontends)",
    "block_detach": "a block-detach target (it is the vbds' backend, with no frontends)",
    "network_attach": "a network-attach target (it is the vifs' backend, with no frontends)",
    "network_detach": "a network-detach target (it is the vifs' backend, with no frontends)",
}


def _ends_domain(action: TimelineAction, d: DomainSpec) -> bool:
    """Whether the domain is gone after `action` (as far as the timeline can tell)."""
    if isinstance(action, DestroyAction):
        return True
    if isinstance(action, ShutdownAction):
        return d.on_poweroff == "destroy"
    return isinstance(action, RebootAction) and d.on_reboot == "destroy"


def _pingpong_pair(d: DomainSpec, domains: tuple[DomainSpec, ...]) -> str | None:
    """The other domain of `d`'s pingpong pair, if it is in one."""
    for w in d.workloads:
        if isinstance(w, PingpongWorkload):
            return w.peer
    for other in domains:
        if any(isinstance(w, PingpongWorkload) and w.peer == d.name for w in other.workloads):
            return other.name
    return None


def _check_lifecycle(
    k: int,
    action: TimelineAction,
    d: DomainSpec,
    domains: tuple[DomainSpec, ...],
    gone: tuple[int, int] | None,
) -> None:
    """`create` needs the domain gone (or not yet built); a pingpong pair is built
    together, so neither side can be created or rebuilt alone."""
    if isinstance(action, CreateAction | RebootAction):
        peer = _pingpong_pair(d, domains)
        if peer is not None:
            raise Problem(
                ("timeline", k, "domain"),
                f"domain {d.name!r} is in a pingpong pair with {peer!r}, built together; "
                f"it cannot be {_DONE[action.action]} alone",
            )
    if not isinstance(action, CreateAction) or gone is not None:
        return
    raise Problem(
        ("timeline", k, "domain"),
        f"domain {d.name!r} already exists at {format_duration(action.at)} "
        + (
            f"(it starts at {format_duration(d.start)})"
            if isinstance(d.start, int)
            else "(created earlier in the timeline)"
        )
        + "; `create` builds a domain with `start: timeline` or one destroyed before",
    )


def check_timeline(
    timeline: tuple[TimelineAction, ...], domains: tuple[DomainSpec, ...], duration: int
) -> None:
    """Actions go to an existing guest, while it exists and the run lasts; `create` to a
    guest that does not exist then; a guest with `start: timeline` has a `create`."""
    guests = {d.name: d for d in domains}
    #: Guests that do not exist (now, walking the timeline): (action index, time) of what
    #: ended them, or (-1, 0) for those waiting for a `create`.
    destroyed: dict[str, tuple[int, int]] = {
        d.name: (-1, 0) for d in domains if d.start == START_BY_TIMELINE
    }
    for k, action in sorted(enumerate(timeline), key=lambda item: item[1].at):
        if isinstance(action, GRANT_ACTIONS):
            continue  # they name a grant: `grants.check_grant_actions`
        if isinstance(action, XmViewAction):  # xm's views read, they change no domain
            _before_end(k, action.at, duration)
            continue
        if isinstance(action, RestoreAction):
            check_restore_action(k, action, timeline, duration, destroyed)
            continue
        if is_dom0_name(action.domain):
            raise Problem(
                ("timeline", k, "domain"),
                "console_input goes to a guest's console ring; dom0 has none (its console is Xen's)"
                if isinstance(action, ConsoleInputAction)
                else f"dom0 cannot be {_DONE[action.action]}; it runs the toolstack",
            )
        if action.domain not in guests:
            known = ", ".join(guests) or "none in this scenario"
            raise Problem(
                ("timeline", k, "domain"),
                f"unknown domain {action.domain!r}; expected a guest domain's name ({known})",
            )
        if action.at >= duration:
            raise Problem(
                ("timeline", k, "at"),
                f"at {format_duration(action.at)} is not before the end of the run "
                f"(duration {format_duration(duration)})",
            )
        d = guests[action.domain]
        if isinstance(d.start, int) and action.at < d.start:
            raise Problem(
                ("timeline", k, "at"),
                f"at {format_duration(action.at)} is before domain {action.domain!r} "
                f"starts ({format_duration(d.start)})",
            )
        gone = destroyed.get(action.domain)
        _check_lifecycle(k, action, d, domains, gone)
        if isinstance(action, CreateAction):
            del destroyed[action.domain]
            continue
        if gone is not None and gone[0] < 0:
            raise Problem(
                ("timeline", k, "at"),
                f"at {format_duration(action.at)} domain {action.domain!r} does not exist "
                "yet (`start: timeline` and no `create` before)",
            )
        if gone is not None:
            raise Problem(
                ("timeline", k, "at"),
                f"at {format_duration(action.at)} domain {action.domain!r} is already "
                f"{'destroyed' if isinstance(timeline[gone[0]], DestroyAction) else 'gone'} "
                f"(timeline[{gone[0]}] at {format_duration(gone[1])})",
            )
        if _ends_domain(action, d):
            destroyed[action.domain] = (k, action.at)
        if isinstance(action, SaveAction) and not action.checkpoint:
            destroyed[action.domain] = (k, action.at)
        if isinstance(action, SaveAction):
            check_save_action(k, action, guests[action.domain])
    for i, d in enumerate(domains):
        if d.start == START_BY_TIMELINE and not any(
            isinstance(a, CreateAction) and a.domain == d.name for a in timeline
        ):
            raise Problem(
                ("domains", i, "start"),
                f"domain {d.name!r} has `start: timeline` but no timeline `create` action "
                "builds it: it would never exist",
            )


def _before_end(k: int, at: int, duration: int) -> None:
    if at >= duration:
        raise Problem(
            ("timeline", k, "at"),
            f"at {format_duration(at)} is not before the end of the run "
            f"(duration {format_duration(duration)})",
        )


def _bridges(names: tuple[str, ...]) -> str:
    return f"bridges: {', '.join(names)}" if names else "no vif"


def check_timeline_targets(
    timeline: tuple[TimelineAction, ...], machine: MachineSpec, domains: tuple[DomainSpec, ...]
) -> None:
    """`vcpu_pin` names a VCPU its domain has and CPUs the machine has."""
    vcpus = {d.name: d.vcpus for d in domains}
    for k, action in enumerate(timeline):
        if not isinstance(action, VcpuPinAction) or action.domain not in vcpus:
            continue
        if action.vcpu >= vcpus[action.domain]:
            raise Problem(
                ("timeline", k, "vcpu"),
                f"domain {action.domain!r} has {vcpus[action.domain]} VCPU(s); "
                f"vcpu {action.vcpu} is not one",
            )
        for i, cpu in enumerate(action.cpus):
            if cpu >= machine.cpus:
                raise Problem(
                    ("timeline", k, "cpus", i),
                    f"cpu {cpu} is not one of the machine's {machine.cpus} CPUs",
                )


def check_expectations(
    expect: tuple[Expectation, ...],
    dom0: Dom0Spec,
    domains: tuple[DomainSpec, ...],
    duration: int,
) -> None:
    """A check names a domain of the scenario, a VCPU and device it has, a window inside
    the run, and a name no other check has (reports and run.json key on it)."""
    vcpus = {d.name: d.vcpus for d in domains}
    devices = {
        d.name: {v.name for v in d.vbds} | {f"vif{n}" for n in range(len(d.vifs))} for d in domains
    }
    names: dict[str, int] = {}
    for k, check in enumerate(expect):
        where = ("expect", k)
        if check.domain is not None:
            if is_dom0_name(check.domain):
                count, devs = dom0.vcpus, set[str]()
            elif check.domain in vcpus:
                count, devs = vcpus[check.domain], devices[check.domain]
            else:
                known = ", ".join(["dom0", *vcpus])
                raise Problem(
                    (*where, "domain"),
                    f"unknown domain {check.domain!r}; expected one of {known}",
                )
            if check.vcpu is not None and check.vcpu >= count:
                raise Problem(
                    (*where, "vcpu"),
                    f"domain {check.domain!r} has {count} VCPU(s); vcpu {check.vcpu} is not one",
                )
            if check.device is not None and check.device not in devs:
                raise Problem(
                    (*where, "device"),
                    f"domain {check.domain!r} has no device {check.device}",
                )
        if check.window is not None and check.window[1] > duration:
            raise Problem(
                (*where, "window"),
                f"window ends at {format_duration(check.window[1])}, after the run "
                f"(duration {format_duration(duration)})",
            )
        name = check.check["name"]
        if name in names:
            raise Problem(
                (*where, "name"),
                f"two checks are called {name!r} (expect[{names[name]}] too); name one",
            )
        names[name] = k


def check_starts(domains: tuple[DomainSpec, ...], duration: int) -> None:
    """Every guest starts before the run ends (else it would never exist, silently)."""
    for i, d in enumerate(domains):
        if isinstance(d.start, int) and d.start >= duration:
            raise Problem(
                ("domains", i, "start"),
                f"start {format_duration(d.start)} is not before the end of the run "
                f"(duration {format_duration(duration)}): the domain would never be created",
            )


def check_shared_images(domains: tuple[DomainSpec, ...], base_dir: Path) -> None:
    """Two vbds share an image file only if both are read-only.

    Xen's block hotplug script refuses a file already in use by another guest when either
    use is writable; two writers (or a writer and a reader) would see each other's blocks
    change underneath them. The file is the same one however it is named (symlinks, hard
    links, relative or absolute paths): compared by device and inode.
    """
    seen: dict[tuple[int, int], tuple[FieldPath, VbdSpec]] = {}
    for i, d in enumerate(domains):
        for k, dev in enumerate(d.devices):
            if not isinstance(dev, VbdSpec) or dev.image is None:
                continue
            try:
                st = os.stat(resolve_image(dev.image, base_dir))
            except (OSError, ValueError):
                continue  # the vbd itself said why it cannot be opened
            at: FieldPath = ("domains", i, "devices", k)
            first = seen.setdefault((st.st_dev, st.st_ino), (at, dev))
            if first[0] == at or not (dev.writable or first[1].writable):
                continue
            raise Problem(
                (*at, "image"),
                f"image {clip(repr(dev.image))} is the same file as {dotted(first[0])}'s "
                f"({clip(repr(first[1].image))}); two vbds may share an image only when both "
                "are `mode: r`",
            )
