"""`grants:`: pages one guest grants to another domain, published through xenstore as split
drivers publish their rings, and the rules that tie grants, `sharedmem` workloads and the
grant timeline actions together.

Why a top-level section and not per-domain entries: a grant joins two domains (granter
and peer) and has a name the `sharedmem` workload and the timeline actions refer to; kept
apart, one entry says both ends, and either end may be the one a reader looks for.

What is allowed, and why:

- the granter is a guest.  dom0 could grant too, but its devtree is written before any
  guest exists, so its kernel cannot learn a peer's domid at boot; in Xen's split drivers
  the frontend (a domU) grants and the backend maps;
- the peer is dom0 (it maps the pages into its foreign area) or another guest (it has no
  foreign area on the 970 port: it reads and writes the pages with GNTTABOP_copy);
- `access: transfer` is refused: GNTTABOP_transfer is dom0's only (grant_operation_permitted),
  and dom0 could give away only a page outside its RMA that no 16 MiB linear-map PTE
  covers, into a receiver's hole left by XENMEM_decrease_reservation, which the 970 port
  never had (it could not balloon).  Xen's transfer itself is modelled (`xen.grant_ops`).
"""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal

from pydantic import Field, StrictInt, StrictStr, model_validator

from framework.scenario.domains import Dom0Spec, DomainSpec
from framework.scenario.fields import Problem, ScenarioModel, in_range, matching
from framework.scenario.limits import is_dom0_name
from framework.scenario.timeline import (
    DestroyAction,
    GrantMapAction,
    GrantRevokeAction,
    GrantUnmapAction,
    TimelineAction,
)
from framework.scenario.workloads import SharedmemWorkload
from framework.units import format_duration

__all__ = ["MAX_GRANT_PAGES", "GrantSpec", "check_grant_actions", "check_grants"]

#: Pages one grant may cover (its refs are published as one xenstore key each).
MAX_GRANT_PAGES: Final = 64
_GRANT_NAME: Final = re.compile(r"[a-z0-9_-]{1,32}")


class GrantSpec(ScenarioModel):
    """Pages of a guest's memory granted to another domain."""

    name: Annotated[StrictStr, matching(_GRANT_NAME, "grant name")] = Field(
        description="unique name, `[a-z0-9_-]`, 1..32 characters; the granter publishes "
        "under `data/sharedmem/<name>` in its xenstore home"
    )
    granter: StrictStr = Field(description="the guest whose pages are granted")
    peer: StrictStr = Field(
        description="the domain the pages are granted to: `dom0` (maps them) or another "
        "guest (copies them with GNTTABOP_copy)"
    )
    pages: Annotated[StrictInt, in_range(1, MAX_GRANT_PAGES, "pages")] = Field(
        1, description=f"pages granted, 1..{MAX_GRANT_PAGES} (one grant ref each)"
    )
    access: Literal["ro", "rw", "transfer"] = Field(
        "rw",
        description="`rw`: the peer may write (it answers each round in the pages); `ro`: "
        "GTF_readonly; `transfer` is refused (see the grants section)",
    )

    @model_validator(mode="after")
    def _rules(self) -> GrantSpec:
        if self.access == "transfer":
            raise Problem(
                ("access",),
                "transfer grants cannot be made on the 970 port: only dom0 may transfer, and "
                "it has no page outside its 16 MiB linear map to give (the port cannot "
                "balloon); use ro or rw",
            )
        if self.peer == self.granter:
            raise Problem(("peer",), f"{self.granter!r} cannot grant pages to itself")
        return self


def check_grants(
    grants: tuple[GrantSpec, ...], dom0: Dom0Spec, domains: tuple[DomainSpec, ...]
) -> None:
    """Grants name a guest granter and an existing peer, once each; every `sharedmem`
    workload runs in the granter of the grant it names, one per grant."""
    guests = {d.name for d in domains}
    named: dict[str, int] = {}
    for k, g in enumerate(grants):
        if g.name in named:
            raise Problem(
                ("grants", k, "name"),
                f"duplicate grant name {g.name!r} (also grants[{named[g.name]}])",
            )
        named[g.name] = k
        if is_dom0_name(g.granter):
            raise Problem(
                ("grants", k, "granter"),
                "dom0 does not grant here: a guest grants and dom0 maps, as in Xen's split "
                "drivers (dom0's devtree is written before any peer exists)",
            )
        if g.granter not in guests:
            raise Problem(
                ("grants", k, "granter"), f"unknown domain {g.granter!r}; {_known(guests)}"
            )
        if not is_dom0_name(g.peer) and g.peer not in guests:
            raise Problem(("grants", k, "peer"), f"unknown domain {g.peer!r}; {_known(guests)}")
    for j, w in enumerate(dom0.workloads):
        if isinstance(w, SharedmemWorkload):
            raise Problem(("dom0", "workloads", j, "kind"), "sharedmem runs in the granting guest")
    for i, d in enumerate(domains):
        used: dict[str, int] = {}
        for j, w in enumerate(d.workloads):
            if not isinstance(w, SharedmemWorkload):
                continue
            where = ("domains", i, "workloads", j, "grant")
            k = named.get(w.grant)
            if k is None:
                raise Problem(where, f"unknown grant {w.grant!r}; {_known(set(named), 'grants')}")
            if grants[k].granter != d.name:
                raise Problem(
                    where, f"grant {w.grant!r} is granted by {grants[k].granter!r}, not {d.name!r}"
                )
            if w.grant in used:
                raise Problem(where, f"grant {w.grant!r} already has a sharedmem workload")
            used[w.grant] = j


def check_grant_actions(
    timeline: tuple[TimelineAction, ...],
    grants: tuple[GrantSpec, ...],
    domains: tuple[DomainSpec, ...],
    duration: int,
) -> None:
    """Grant actions name a grant, come after both its domains start and before either is
    destroyed; map and unmap are dom0's, an unmap follows a map."""
    by_name = {g.name: g for g in grants}
    starts = {d.name: d.start for d in domains}
    destroyed = {a.domain: a.at for a in timeline if isinstance(a, DestroyAction)}
    mapped: set[tuple[str, str]] = set()
    for k, a in sorted(enumerate(timeline), key=lambda item: item[1].at):
        if not isinstance(a, GrantRevokeAction | GrantMapAction | GrantUnmapAction):
            continue
        g = by_name.get(a.grant)
        if g is None:
            raise Problem(
                ("timeline", k, "grant"),
                f"unknown grant {a.grant!r}; {_known(set(by_name), 'grants')}",
            )
        if a.at >= duration:
            raise Problem(
                ("timeline", k, "at"),
                f"at {format_duration(a.at)} is not before the end of the run "
                f"(duration {format_duration(duration)})",
            )
        for end in (g.granter, g.peer):
            if a.at < starts.get(end, 0):
                raise Problem(
                    ("timeline", k, "at"),
                    f"at {format_duration(a.at)} is before domain {end!r} starts "
                    f"({format_duration(starts[end])})",
                )
            if end in destroyed and a.at >= destroyed[end]:
                raise Problem(
                    ("timeline", k, "at"),
                    f"at {format_duration(a.at)} domain {end!r} is already destroyed",
                )
        if isinstance(a, GrantRevokeAction):
            continue
        mapper = a.domain if a.domain is not None else g.peer
        if not is_dom0_name(mapper):
            known = mapper in starts
            raise Problem(
                ("timeline", k, "domain"),
                f"{mapper!r} cannot map grants: only dom0 has a foreign map area on the 970 "
                "port (a guest peer reads granted pages with grant copy)"
                if known
                else f"unknown domain {mapper!r}; only dom0 maps grants",
            )
        key = (a.grant, "dom0")
        if isinstance(a, GrantMapAction):
            if key in mapped:
                raise Problem(("timeline", k), f"grant {a.grant!r} is already mapped by dom0")
            mapped.add(key)
        elif key not in mapped:
            raise Problem(
                ("timeline", k), f"grant {a.grant!r} is not mapped by dom0 (no grant_map before)"
            )
        else:
            mapped.discard(key)


def _known(names: set[str], what: str = "domains") -> str:
    return f"known {what}: {', '.join(sorted(names))}" if names else f"no {what} in this scenario"
