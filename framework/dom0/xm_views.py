"""xm's views as dom0 computes them: `xm list`, `xm vcpu-list`, `xm info`, `xm dmesg`,
`xm domid`, `xm domname`, from real hypercalls only.

What each asks Xen (as xend 3.1 and libxc do): `list` sysctl getdomaininfolist (state
flags, tot_pages, online VCPUs, CPU time); `vcpu-list` domctl getvcpuinfo and
getvcpuaffinity per VCPU; `info` sysctl physinfo and sched_id and xen_version
(version, extraversion, capabilities, pagesize, platform parameters, changeset, compile
info); `dmesg` sysctl readconsole. Names are xend's own (Domain-0 and the names it gave
the guests it created). The output is byte for byte Xen 3.1's `xm` (tools/python/xen/xm/
main.py: xm_brief_list, xm_vcpu_list, xm_info, xm_dmesg), with xend's node info; the
`system`/`host`/`release`/`version`/`machine` lines are dom0's uname, fixed here. The
text formats are `analysis.xm_format`'s, which `analysis.xm` also prints through when it
rebuilds these views from a finished run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from analysis.xm_format import (
    VcpuRow,
    format_hw_caps,
    format_info,
    format_list,
    format_no_domain,
    format_state,
    format_vcpu_list,
)
from framework.dom0.toolstack import HypercallPort, Toolstack
from framework.xen.public.domctl import (
    GETDOMAININFO,
    XEN_SCHEDULER_CREDIT,
    DOMINF_blocked,
    DOMINF_dying,
    DOMINF_paused,
    DOMINF_running,
    DOMINF_shutdown,
    XEN_DOMCTL_getvcpuaffinity,
    XEN_DOMCTL_getvcpuinfo,
    XEN_DOMINF_shutdownshift,
)
from framework.xen.public.sched import SHUTDOWN_crash
from framework.xen.public.sysctl import (
    SYSCTL,
    XEN_SYSCTL_INTERFACE_VERSION,
    XEN_SYSCTL_getdomaininfolist,
    XEN_SYSCTL_physinfo,
    XEN_SYSCTL_readconsole,
    XEN_SYSCTL_sched_id,
)
from framework.xen.public.version import (
    XENVER_capabilities,
    XENVER_changeset,
    XENVER_compile_info,
    XENVER_extraversion,
    XENVER_pagesize,
    XENVER_platform_parameters,
    XENVER_version,
)
from framework.xen.public.xen import HYPERVISOR_sysctl, HYPERVISOR_xen_version, xen_mark
from framework.xen.public.xencomm import build_descriptor, descriptor_for_buffer

__all__ = ["DOM0_NAME", "UNAME", "XEND_CONFIG_FORMAT", "XmViews", "state_string"]

#: What xend calls dom0.
DOM0_NAME: Final = "Domain-0"
#: dom0's `os.uname()` as xend's nodeinfo reports it (xend's first five `xm info` lines).
UNAME: Final = (
    ("system", "Linux"),
    ("host", "xen970"),
    ("release", "2.6.18-xen"),
    ("version", "#1 SMP"),
    ("machine", "ppc64"),
)
_MAX_DOMAINS: Final = 1024
_DMESG_BYTES: Final = 16384  # xend reads the whole ring in one call
#: xend 3.1's `xend_config_format` (the last line of `xm info`).
XEND_CONFIG_FORMAT: Final = 4


def state_string(flags: int) -> str:
    """xend's old six-letter state: r b p s c d, `-` for each flag not set; a domain shut
    down for a crash shows `c`, not `s` (libxc's xc_domain_getinfo)."""
    shutdown = bool(flags & DOMINF_shutdown)
    crashed = shutdown and (flags >> XEN_DOMINF_shutdownshift) & 0xFF == SHUTDOWN_crash
    return format_state(
        running=bool(flags & DOMINF_running),
        blocked=bool(flags & DOMINF_blocked),
        paused=bool(flags & DOMINF_paused),
        shutdown=shutdown and not crashed,
        crashed=crashed,
        dying=bool(flags & DOMINF_dying),
    )


def _cstr(data: bytes) -> str:
    return data.split(b"\0", 1)[0].decode("ascii", "replace")


class XmViews:
    """xm's read-only commands, run by dom0 through its hypercall port."""

    ARG = Toolstack.ARG
    BUF = Toolstack.BUF

    def __init__(self, toolstack: Toolstack, names: Callable[[int], str | None]) -> None:
        self.ts = toolstack
        self.port: HypercallPort = toolstack.port
        self.names = names

    # -- plumbing --------------------------------------------------------------------------
    def _handle(self, gpa: int, nbytes: int, desc_gpa: int) -> int:
        self.port.write(desc_gpa, build_descriptor(descriptor_for_buffer(gpa, nbytes)))
        return desc_gpa

    def _buffer(self, nbytes: int) -> int:
        """A xencomm handle of `nbytes` of dom0's bulk buffer (zeroed)."""
        self.port.write(self.BUF, bytes(nbytes))
        return self._handle(self.BUF, nbytes, self.BUF + Toolstack.BUF_MAX)

    def _sysctl(self, cmd: int, **fields: int) -> tuple[int, dict[str, int]]:
        data = SYSCTL.pack(cmd=cmd, interface_version=XEN_SYSCTL_INTERFACE_VERSION, **fields)
        self.port.write(self.ARG, data)
        handle = self._handle(self.ARG, SYSCTL.size, self.ARG + 0x1000)
        rc = self.port.hypercall(xen_mark(HYPERVISOR_sysctl), handle)
        return rc, SYSCTL.unpack(self.port.read(self.ARG, SYSCTL.size))

    def _version(self, cmd: int, size: int = 0) -> tuple[int, bytes]:
        handle = self._buffer(size) if size else 0
        rc = self.port.hypercall(xen_mark(HYPERVISOR_xen_version), cmd, handle)
        return rc, self.port.read(self.BUF, size) if size else b""

    def _name(self, domid: int) -> str:
        return DOM0_NAME if domid == 0 else self.names(domid) or f"Domain-{domid}"

    def domains(self) -> list[dict[str, int]]:
        """sysctl getdomaininfolist from domain 0: each domain's getdomaininfo record."""
        handle = self._buffer(GETDOMAININFO.size * _MAX_DOMAINS)
        rc, op = self._sysctl(
            XEN_SYSCTL_getdomaininfolist,
            getdomaininfolist_first_domain=0,
            getdomaininfolist_max_domains=_MAX_DOMAINS,
            getdomaininfolist_buffer=handle,
        )
        if rc < 0:
            return []
        n = op["getdomaininfolist_num_domains"]
        raw = self.port.read(self.BUF, GETDOMAININFO.size * n)
        size = GETDOMAININFO.size
        return [GETDOMAININFO.unpack(raw[i * size : (i + 1) * size]) for i in range(n)]

    def nr_cpus(self) -> int:
        _, op = self._sysctl(XEN_SYSCTL_physinfo)
        return (
            op["physinfo_nr_nodes"]
            * op["physinfo_sockets_per_node"]
            * op["physinfo_cores_per_socket"]
            * op["physinfo_threads_per_core"]
        )

    # -- the views ---------------------------------------------------------------------------
    def xm_list(self, domain: str | None = None) -> str:
        rows = [
            (
                self._name(d["domain"]),
                d["domain"],
                d["tot_pages"] * 4096 >> 20,
                d["nr_online_vcpus"],
                state_string(d["flags"]),
                d["cpu_time"],
            )
            for d in self.domains()
        ]
        if domain is not None:
            rows = [r for r in rows if domain in (r[0], str(r[1]))]
            if not rows:
                return format_no_domain(domain)
        return format_list(rows)

    def xm_vcpu_list(self, domain: str | None = None) -> str:
        nr_cpus = self.nr_cpus()
        doms: list[tuple[str, int, list[VcpuRow]]] = []
        for d in self.domains():
            domid, name = d["domain"], self._name(d["domain"])
            if domain is not None and domain not in (name, str(domid)):
                continue
            vcpus: list[VcpuRow] = []
            for vid in range(d["max_vcpu_id"] + 1):
                rc, info = self.ts.domctl(XEN_DOMCTL_getvcpuinfo, domid, vcpu=vid)
                if rc < 0:
                    continue
                handle = self._buffer(2)
                rc, _ = self.ts.domctl(
                    XEN_DOMCTL_getvcpuaffinity,
                    domid,
                    vcpu=vid,
                    cpumap_bitmap=handle,
                    cpumap_nr_cpus=16,
                )
                bits = int.from_bytes(self.port.read(self.BUF, 2), "little") if rc == 0 else 0
                vcpus.append(
                    (
                        vid,
                        info["vcpuinfo_online"],
                        info["vcpuinfo_blocked"],
                        info["vcpuinfo_running"],
                        info["vcpuinfo_cpu_time"],
                        info["vcpuinfo_cpu"],
                        [c for c in range(16) if bits >> c & 1],
                    )
                )
            doms.append((name, domid, vcpus))
        if domain is not None and not doms:
            return format_no_domain(domain)
        return format_vcpu_list(doms, nr_cpus)

    def xm_info(self) -> str:
        _, phys = self._sysctl(XEN_SYSCTL_physinfo)
        _, sched = self._sysctl(XEN_SYSCTL_sched_id)
        version = self.port.hypercall(xen_mark(HYPERVISOR_xen_version), XENVER_version, 0)
        pagesize = self.port.hypercall(xen_mark(HYPERVISOR_xen_version), XENVER_pagesize, 0)
        extra = _cstr(self._version(XENVER_extraversion, 16)[1])
        caps = _cstr(self._version(XENVER_capabilities, 1024)[1])
        changeset = _cstr(self._version(XENVER_changeset, 64)[1])
        cc = self._version(XENVER_compile_info, 144)[1]
        virt_start = int.from_bytes(self._version(XENVER_platform_parameters, 8)[1], "big")
        nodes, sockets = phys["physinfo_nr_nodes"], phys["physinfo_sockets_per_node"]
        cores, threads = phys["physinfo_cores_per_socket"], phys["physinfo_threads_per_core"]
        values: dict[str, object] = {
            **dict(UNAME),
            "nr_cpus": nodes * sockets * cores * threads,
            "nr_nodes": nodes,
            "sockets_per_node": sockets,
            "cores_per_socket": cores,
            "threads_per_core": threads,
            "cpu_mhz": phys["physinfo_cpu_khz"] // 1000,
            "hw_caps": format_hw_caps([0] * 8),
            "total_memory": phys["physinfo_total_pages"] * 4 // 1024,
            "free_memory": phys["physinfo_free_pages"] * 4 // 1024,
            "xen_major": version >> 16,
            "xen_minor": version & 0xFFFF,
            "xen_extra": extra,
            "xen_caps": caps,
            "xen_scheduler": "credit" if sched["sched_id"] == XEN_SCHEDULER_CREDIT else "unknown",
            "xen_pagesize": pagesize,
            "platform_params": f"virt_start={virt_start:#x}",
            "xen_changeset": changeset,
            "cc_compiler": _cstr(cc[0:64]),
            "cc_compile_by": _cstr(cc[64:80]),
            "cc_compile_domain": _cstr(cc[80:112]),
            "cc_compile_date": _cstr(cc[112:144]),
            "xend_config_format": XEND_CONFIG_FORMAT,
        }
        return format_info(values)

    def xm_dmesg(self, clear: bool = False) -> str:
        """sysctl readconsole of the whole ring (`-c` clears what it read)."""
        handle = self._buffer(_DMESG_BYTES)
        rc, op = self._sysctl(
            XEN_SYSCTL_readconsole,
            readconsole_clear=int(clear),
            readconsole_buffer=handle,
            readconsole_count=_DMESG_BYTES,
        )
        if rc < 0:
            return f"Error: readconsole failed ({rc})\n"
        return self.port.read(self.BUF, op["readconsole_count"]).decode("ascii", "replace")

    def xm_domid(self, name: str) -> str:
        for d in self.domains():
            if self._name(d["domain"]) == name:
                return f"{d['domain']}\n"
        return f"Error: the domain '{name}' does not exist.\n"

    def xm_domname(self, domid: int) -> str:
        for d in self.domains():
            if d["domain"] == domid:
                return f"{self._name(domid)}\n"
        return f"Error: the domain '{domid}' does not exist.\n"
