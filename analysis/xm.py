"""xm's views of a finished run: `xm list`, `xm vcpu-list` and `xm info` at any simulated
time, rebuilt from the trace and run.json in the very text dom0's `xm` prints
(`analysis.xm_format` is the one place both format through).

Where each column comes from (what Xen's getdomaininfo and getvcpuinfo read):

- which domains exist: `dom.create` (and a domain's first `vcpu.create` or `mem.alloc`)
  up to its `dom.destroy`; names from run.json's `domains`;
- the state letters: `r` a VCPU's runstate is running, `b` every online VCPU is blocked,
  `p` the domain is paused (`dom.pause`, or created and not yet started: `dom.start`
  clears it), `s`/`c` `dom.shutdown` (for a crash: `c`), `d` `dom.dying`;
- online VCPUs: VCPU 0 from its creation (Xen sets it up with its context; no record
  says so), the others by `vcpu.up` / `vcpu.down`;
- CPU time: the VCPU's `sched.runstate` running intervals, the one it is in cut at
  `at_ns` (Xen's vcpu_runstate_get, which getdomaininfo and getvcpuinfo report);
- a VCPU's CPU: where it last started running (its running `sched.runstate`), before
  that where `vcpu.create` placed it; affinity: its last `sched.affinity`, else every CPU;
- memory (tot_pages): the `rma` and `extent` frames of `mem.alloc`, less the `memory`
  frames of `mem.free`, plus and minus pages moved by a successful `gnttab.transfer`;
- `xm info`: run.json's `machine` (the host's fixed facts), and free memory: the free
  pages before dom0 less every `mem.alloc` plus every `mem.free` up to `at_ns`.

>>> print(xm_list(run, at_ns=50_000_000))                             # doctest: +SKIP
Name                                      ID   Mem VCPUs      State   Time(s)
Domain-0                                   0   192     1     r-----      0.0
guest                                      1    64     1     -b----      0.0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd

import analysis.accessor  # noqa: F401  (registers DataFrame.xen)
from analysis.xm_format import (
    ListRow,
    VcpuRow,
    format_hw_caps,
    format_info,
    format_list,
    format_no_domain,
    format_state,
    format_vcpu_list,
)

if TYPE_CHECKING:
    from analysis.run import Run

__all__ = ["XmViewError", "recorded_xm_views", "xm_info", "xm_list", "xm_vcpu_list"]

#: The records that change what xm's views show, other than runstates.
_EVENT_KINDS: Final = (
    "dom.create",
    "dom.start",
    "dom.pause",
    "dom.shutdown",
    "dom.dying",
    "dom.destroy",
    "vcpu.create",
    "vcpu.up",
    "vcpu.down",
    "sched.affinity",
    "mem.alloc",
    "mem.free",
    "gnttab.transfer",
)
#: mem.alloc / mem.free purposes that are the domain's own memory (tot_pages).
_OWN_ALLOC: Final = frozenset({"rma", "extent"})
_OWN_FREE: Final = frozenset({"memory"})
_DOM0_NAME: Final = "Domain-0"


class XmViewError(ValueError):
    """The run lacks what a view needs (a run.json or trace from before it was recorded)."""


@dataclass
class _Vcpu:
    processor: int
    online: bool
    cpumap: int = 0  # 0: no sched.affinity yet (every CPU)
    runstate: int = -1
    cpu_ns: int = 0


@dataclass
class _Dom:
    domid: int
    #: The runstates of this domain are those after `since` (an earlier domain with its id
    #: was destroyed then; -1: none was).
    since: int = -1
    state: str = "created"
    crashed: bool = False
    pages: int = 0
    vcpus: dict[int, _Vcpu] = field(default_factory=dict)


def _at(run: Run, at_ns: int | None) -> int:
    return run.sim_ns if at_ns is None else int(at_ns)


def _machine(run: Run) -> dict[str, Any]:
    machine = run.meta.get("machine")
    if not machine:
        raise XmViewError(
            "run.json has no `machine` (the host's facts): a run made before xen970 recorded "
            "them; run the scenario again"
        )
    return dict(machine)


def _events(run: Run, at_ns: int) -> pd.DataFrame:
    """The records of `_EVENT_KINDS` up to `at_ns`, in trace order, with their fields."""
    known = run.trace.xen.metadata.kinds
    missing = [k for k in _EVENT_KINDS if k not in known]
    if missing:
        raise XmViewError(f"the trace has no {', '.join(missing)} records (an older trace)")
    parts = []
    for kind in _EVENT_KINDS:
        rows = run.trace.xen.kind(kind)
        rows = rows[rows["t_ns"].to_numpy(dtype="int64") <= at_ns]
        parts.append(rows.assign(kind=kind, order=rows.index.to_numpy()))
    events = pd.concat(parts, ignore_index=True)
    return events.sort_values(["t_ns", "order"], kind="stable").reset_index(drop=True)


def _field(row: Any, name: str) -> int:
    return int(getattr(row, name))


def _domains(run: Run, at_ns: int) -> dict[int, _Dom]:
    """Every domain that exists at `at_ns`, with its state, VCPUs and memory."""
    doms: dict[int, _Dom] = {}

    def dom_of(domid: int) -> _Dom:
        if domid not in doms:
            doms[domid] = _Dom(domid)
        return doms[domid]

    gone: dict[int, int] = {}  # domid -> when its last incarnation was destroyed
    for row in _events(run, at_ns).itertuples(index=False):
        kind, domid, t = str(row.kind), int(row.dom), int(row.t_ns)
        if kind == "gnttab.transfer":
            if _field(row, "status") == 0 and domid in doms:
                doms[domid].pages -= 1
                dom_of(_field(row, "remote_dom")).pages += 1
            continue
        if kind == "dom.destroy":
            doms.pop(domid, None)
            gone[domid] = t
            continue
        if kind == "mem.free" and domid not in doms:
            continue  # frames of a destroyed domain, or Xen's own
        d = dom_of(domid)
        vid = int(row.vcpu)
        if kind == "dom.create":
            d.state = "created"
        elif kind == "dom.start":
            d.state = "running"
        elif kind == "dom.pause":
            d.state = "paused"
        elif kind == "dom.shutdown":
            d.state, d.crashed = "shutdown", str(row.text) == "crash"
        elif kind == "dom.dying":
            d.state = "dying"
        elif kind == "vcpu.create":
            d.vcpus[vid] = _Vcpu(processor=_field(row, "processor"), online=vid == 0)
        elif kind in ("vcpu.up", "vcpu.down") and vid in d.vcpus:
            d.vcpus[vid].online = kind == "vcpu.up"
        elif kind == "sched.affinity" and vid in d.vcpus:
            d.vcpus[vid].cpumap = _field(row, "cpumap")
        elif kind == "mem.alloc" and str(row.text) in _OWN_ALLOC:
            d.pages += _field(row, "count")
        elif kind == "mem.free" and str(row.text) in _OWN_FREE:
            d.pages -= _field(row, "count")
    for d in doms.values():
        d.since = gone.get(d.domid, -1)
    _add_runstates(run, doms, at_ns)
    return doms


def _add_runstates(run: Run, doms: dict[int, _Dom], at_ns: int) -> None:
    """Each VCPU's runstate at `at_ns`, running ns up to it and the CPU it last ran on."""
    rs = run.trace.xen.kind("sched.runstate")
    t = rs["t_ns"].to_numpy(dtype="int64")
    rs = rs[t <= at_ns]
    t = t[t <= at_ns]
    dom = rs["dom"].to_numpy(dtype="int64")
    since = np.array([doms[x].since if x in doms else at_ns + 1 for x in dom], dtype="int64")
    keep = t > since
    rs, t = rs[keep], t[keep]
    if rs.empty:
        return
    nxt = pd.Series(t, index=rs.index).groupby([rs["dom"], rs["vcpu"]], sort=False).shift(-1)
    stop = nxt.fillna(at_ns).to_numpy(dtype="int64")
    running = run.trace.xen.metadata.code_of("state", "running")
    state = rs["state"].to_numpy(dtype="int64")
    frame = pd.DataFrame(
        {
            "dom": rs["dom"].to_numpy(dtype="int64"),
            "vcpu": rs["vcpu"].to_numpy(dtype="int64"),
            "state": state,
            "cpu": rs["cpu"].to_numpy(dtype="int64"),
            "ns": np.where(state == running, stop - t, 0),
        }
    )
    for (domid, vid), g in frame.groupby(["dom", "vcpu"], sort=False):
        v = doms[int(domid)].vcpus.get(int(vid))
        if v is None:
            continue
        v.cpu_ns = int(g["ns"].sum())
        v.runstate = int(g["state"].iloc[-1])
        ran = g["cpu"][g["state"] == running]
        if not ran.empty:
            v.processor = int(ran.iloc[-1])


def _name(run: Run, domid: int) -> str:
    return _DOM0_NAME if domid == 0 else run.domains.get(domid) or f"Domain-{domid}"


def _wanted(run: Run, d: _Dom, domain: str | None) -> bool:
    return domain is None or domain in (_name(run, d.domid), str(d.domid))


def xm_list(run: Run, at_ns: int | None = None, domain: str | None = None) -> str:
    """`xm list [domain]` at simulated time `at_ns` (default: the run's end), in Xen 3.1's
    format: name, id, MiB, online VCPUs, state letters, CPU seconds."""
    at = _at(run, at_ns)
    code = run.trace.xen.metadata.code_of
    running, blocked = code("state", "running"), code("state", "blocked")
    rows: list[ListRow] = []
    for d in _domains(run, at).values():
        if not _wanted(run, d, domain):
            continue
        online = [v for v in d.vcpus.values() if v.online]
        is_running = any(v.runstate == running for v in d.vcpus.values())
        state = format_state(
            running=is_running,
            blocked=bool(online) and not is_running and all(v.runstate == blocked for v in online),
            paused=d.state in ("created", "paused"),
            shutdown=d.state == "shutdown" and not d.crashed,
            crashed=d.state == "shutdown" and d.crashed,
            dying=d.state == "dying",
        )
        cpu_ns = sum(v.cpu_ns for v in d.vcpus.values())
        rows.append(
            (_name(run, d.domid), d.domid, d.pages * 4096 >> 20, len(online), state, cpu_ns)
        )
    if domain is not None and not rows:
        return format_no_domain(domain)
    return format_list(rows)


def xm_vcpu_list(run: Run, at_ns: int | None = None, domain: str | None = None) -> str:
    """`xm vcpu-list [domain]` at simulated time `at_ns` (default: the run's end): each
    VCPU's CPU, state, CPU seconds and affinity, in Xen 3.1's format."""
    at = _at(run, at_ns)
    nr_cpus = int(_machine(run)["nr_cpus"])
    code = run.trace.xen.metadata.code_of
    running, blocked = code("state", "running"), code("state", "blocked")
    doms: list[tuple[str, int, list[VcpuRow]]] = []
    for d in _domains(run, at).values():
        if not _wanted(run, d, domain):
            continue
        vcpus: list[VcpuRow] = []
        for vid, v in sorted(d.vcpus.items()):
            cpus = [c for c in range(nr_cpus) if v.cpumap >> c & 1] or list(range(nr_cpus))
            vcpus.append(
                (
                    vid,
                    int(v.online),
                    int(v.runstate == blocked),
                    int(v.runstate == running),
                    v.cpu_ns,
                    v.processor,
                    cpus,
                )
            )
        doms.append((_name(run, d.domid), d.domid, vcpus))
    if domain is not None and not doms:
        return format_no_domain(domain)
    return format_vcpu_list(doms, nr_cpus)


def xm_info(run: Run, at_ns: int | None = None) -> str:
    """`xm info` at simulated time `at_ns` (default: the run's end): run.json's host facts,
    with the free memory of that moment, in Xen 3.1's format."""
    at = _at(run, at_ns)
    m = _machine(run)
    free = int(m["free_pages_at_boot"])
    for kind, sign in (("mem.alloc", -1), ("mem.free", 1)):
        rows = run.trace.xen.kind(kind)
        free += sign * int(rows["count"][rows["t_ns"].to_numpy(dtype="int64") <= at].sum())
    values: dict[str, object] = {
        **m["dom0_uname"],
        "nr_cpus": m["nr_cpus"],
        "nr_nodes": m["nr_nodes"],
        "sockets_per_node": m["sockets_per_node"],
        "cores_per_socket": m["cores_per_socket"],
        "threads_per_core": m["threads_per_core"],
        "cpu_mhz": int(m["cpu_khz"]) // 1000,
        "hw_caps": format_hw_caps([0] * 8),
        "total_memory": int(m["total_pages"]) * 4 // 1024,
        "free_memory": free * 4 // 1024,
        "xen_major": m["xen_major"],
        "xen_minor": m["xen_minor"],
        "xen_extra": m["xen_extra"],
        "xen_caps": m["xen_caps"],
        "xen_scheduler": m["xen_scheduler"],
        "xen_pagesize": m["xen_pagesize"],
        "platform_params": f"virt_start={int(m['xen_virt_start']):#x}",
        "xen_changeset": m["xen_changeset"],
        "cc_compiler": m["cc_compiler"],
        "cc_compile_by": m["cc_compile_by"],
        "cc_compile_domain": m["cc_compile_domain"],
        "cc_compile_date": m["cc_compile_date"],
        "xend_config_format": m["xend_config_format"],
    }
    return format_info(values)


def recorded_xm_views(run: Run) -> pd.DataFrame:
    """The views the run's timeline took (`xm.view` records): `t_ns`, `command` (the
    command line) and `output` (the text, as written to the run directory's xm/)."""
    rows = run.trace.xen.kind("xm.view")
    text = rows["text"].astype(object).fillna("").astype(str)
    parts = text.str.split("\n", n=1)
    return pd.DataFrame(
        {
            "t_ns": rows["t_ns"].to_numpy(dtype="int64"),
            "command": [p[0] for p in parts],
            "output": [p[1] if len(p) > 1 else "" for p in parts],
        }
    )
