"""xm's text formats, declared once: `xm list`, `xm vcpu-list` and `xm info` as Xen 3.1's
xm prints them (tools/python/xen/xm/main.py: xm_brief_list, xm_vcpu_list, xm_info).

Pure formatting of values already read: dom0's `xm` (framework.dom0.xm_views, from
hypercalls) and `analysis.xm` (from a finished run's trace and run.json) both print
through these functions, so the two cannot drift apart in a width or a column.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

__all__ = [
    "INFO_KEYS",
    "LIST_HEADER",
    "VCPU_HEADER",
    "ListRow",
    "VcpuRow",
    "format_cpumap",
    "format_hw_caps",
    "format_info",
    "format_list",
    "format_no_domain",
    "format_state",
    "format_vcpu_list",
]

# xm's own format strings, kept as main.py writes them (so their widths can be compared).
LIST_HEADER: Final = "%-40s %3s %5s %5s %10s %9s" % (  # noqa: UP031
    "Name",
    "ID",
    "Mem",
    "VCPUs",
    "State",
    "Time(s)",
)
_LIST_ROW: Final = "%-40s %3s %5d %5d %10s %8.1f"
VCPU_HEADER: Final = "%-32s %3s %5s %5s %5s %9s %s" % (  # noqa: UP031
    "Name",
    "ID",
    "VCPU",
    "CPU",
    "State",
    "Time(s)",
    "CPU Affinity",
)
_VCPU_ROW: Final = "%-32s %3d %5d %5s %5s  %8.1f %s"
_INFO_ROW: Final = "%-23s: %s\n"
#: `xm info`'s lines in xm's order: dom0's uname, xend's node info, then xend's config.
INFO_KEYS: Final = (
    "system",
    "host",
    "release",
    "version",
    "machine",
    "nr_cpus",
    "nr_nodes",
    "sockets_per_node",
    "cores_per_socket",
    "threads_per_core",
    "cpu_mhz",
    "hw_caps",
    "total_memory",
    "free_memory",
    "xen_major",
    "xen_minor",
    "xen_extra",
    "xen_caps",
    "xen_scheduler",
    "xen_pagesize",
    "platform_params",
    "xen_changeset",
    "cc_compiler",
    "cc_compile_by",
    "cc_compile_domain",
    "cc_compile_date",
    "xend_config_format",
)

#: One domain as `xm list` shows it: (name, domid, MiB, online VCPUs, state, cpu ns).
ListRow = tuple[str, int, int, int, str, int]
#: One VCPU as vcpu-list shows it: (number, online, blocked, running, cpu ns, cpu, cpus).
VcpuRow = tuple[int, int, int, int, int, int, list[int]]


def format_state(
    *, running: bool, blocked: bool, paused: bool, shutdown: bool, crashed: bool, dying: bool
) -> str:
    """xend's old six-letter state `rbpscd`, `-` for each one not set (`c`: shut down for
    a crash, which then does not show `s`)."""
    on = (running, blocked, paused, shutdown, crashed, dying)
    return "".join(c if bit else "-" for c, bit in zip("rbpscd", on, strict=True))


def format_list(rows: list[ListRow]) -> str:
    """`xm list`: one line per domain, sorted by name as xend's list_sorted does."""
    out = [LIST_HEADER]
    for name, domid, mem, vcpus, state, cpu_ns in sorted(rows):
        out.append(_LIST_ROW % (name, domid, mem, vcpus, state, cpu_ns / 1e9))
    return "\n".join(out) + "\n"


def format_cpumap(cpus: list[int], nr_cpus: int) -> str:
    """xm vcpu-list's affinity: `any cpu`, or ranges `0-1,3`."""
    cpumap = sorted({c % nr_cpus for c in cpus})
    if len(cpumap) == nr_cpus:
        return "any cpu"
    if not cpumap:
        return "no cpus"
    pairs: list[list[int]] = []
    for c in cpumap:
        if pairs and c == pairs[-1][1] + 1:
            pairs[-1][1] = c
        else:
            pairs.append([c, c])
    return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in pairs)


def format_vcpu_list(doms: list[tuple[str, int, list[VcpuRow]]], nr_cpus: int) -> str:
    """`xm vcpu-list`: per domain (in xend's order, by name) each VCPU's line; an offline
    VCPU shows CPU `-` and state `--p`."""
    out = [VCPU_HEADER]
    for name, domid, vcpus in sorted(doms):
        for number, online, blocked, running, cpu_ns, cpu, cpus in vcpus:
            if online:
                c = str(cpu)
                s = ("r" if running else "-") + ("b" if blocked else "-") + "-"
            else:
                c, s = "-", "--p"
            affinity = format_cpumap(cpus, nr_cpus)
            out.append(_VCPU_ROW % (name, domid, number, c, s, cpu_ns / 1e9, affinity))
    return "\n".join(out) + "\n"


def format_no_domain(domain: str) -> str:
    """What `xm list` and `xm vcpu-list` say of a domain that does not exist."""
    return f"Error: Domain '{domain}' does not exist.\n"


def format_hw_caps(words: list[int]) -> str:
    """xc.physinfo's hw_caps: eight `%08x:` words, cut after the last non-zero one (all
    zero: the whole string, trailing colon and all, as xc.c's loop leaves it)."""
    text = "".join(f"{w:08x}:" for w in words)
    last = max((9 * (i + 1) for i, w in enumerate(words) if w), default=0)
    return text[: last - 1] if last else text


def format_info(values: Mapping[str, object]) -> str:
    """`xm info`: `values` holds every key of `INFO_KEYS` (a missing one is a KeyError)."""
    return "".join(_INFO_ROW % (key, values[key]) for key in INFO_KEYS)
