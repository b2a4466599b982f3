"""Timeline actions that run xm's read-only views (`xm list`, `vcpu-list`, `info`, `dmesg`,
`domid`, `domname`) at a simulated time: dom0 asks Xen through real hypercalls, and the
output goes to the trace (`xm.view`) and the run directory (`xm/<view>-<t_ns>.txt`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StrictBool, StrictInt, StrictStr

from framework.scenario.fields import Duration, ScenarioModel, in_range

__all__ = [
    "XM_VIEW_MODELS",
    "XmDmesgAction",
    "XmDomidAction",
    "XmDomnameAction",
    "XmInfoAction",
    "XmListAction",
    "XmVcpuListAction",
    "XmViewAction",
]

_AT = "simulated time; before `duration`"


class XmListAction(ScenarioModel):
    """`xm list [domain]`: name, id, memory (MiB), online VCPUs, the six-letter state and
    CPU time of every domain (or one), from sysctl getdomaininfolist."""

    action: Literal["xm_list"] = Field("xm_list", description="`xm_list`")
    at: Duration = Field(description=_AT)
    domain: StrictStr | None = Field(None, description="one domain by name (default: all)")


class XmVcpuListAction(ScenarioModel):
    """`xm vcpu-list [domain]`: each VCPU's CPU, state, CPU time and affinity, from domctl
    getvcpuinfo and getvcpuaffinity."""

    action: Literal["xm_vcpu_list"] = Field("xm_vcpu_list", description="`xm_vcpu_list`")
    at: Duration = Field(description=_AT)
    domain: StrictStr | None = Field(None, description="one domain by name (default: all)")


class XmInfoAction(ScenarioModel):
    """`xm info`: the host (sysctl physinfo, sched_id) and Xen (xen_version) as xend shows
    them."""

    action: Literal["xm_info"] = Field("xm_info", description="`xm_info`")
    at: Duration = Field(description=_AT)


class XmDmesgAction(ScenarioModel):
    """`xm dmesg [-c]`: Xen's console ring, read with sysctl readconsole."""

    action: Literal["xm_dmesg"] = Field("xm_dmesg", description="`xm_dmesg`")
    at: Duration = Field(description=_AT)
    clear: StrictBool = Field(False, description="`-c`: empty the ring after reading it")


class XmDomidAction(ScenarioModel):
    """`xm domid <name>`: the id of the domain called `domain` (an error line if none)."""

    action: Literal["xm_domid"] = Field("xm_domid", description="`xm_domid`")
    at: Duration = Field(description=_AT)
    domain: StrictStr = Field(description="a domain name (`Domain-0` is dom0)")


class XmDomnameAction(ScenarioModel):
    """`xm domname <id>`: the name of domain `domid` (an error line if none)."""

    action: Literal["xm_domname"] = Field("xm_domname", description="`xm_domname`")
    at: Duration = Field(description=_AT)
    domid: Annotated[StrictInt, in_range(0, 32767, "domid")] = Field(description="a domain id")


XmViewAction = (
    XmListAction | XmVcpuListAction | XmInfoAction | XmDmesgAction | XmDomidAction | XmDomnameAction
)
XM_VIEW_MODELS: dict[str, type[ScenarioModel]] = {
    "xm_list": XmListAction,
    "xm_vcpu_list": XmVcpuListAction,
    "xm_info": XmInfoAction,
    "xm_dmesg": XmDmesgAction,
    "xm_domid": XmDomidAction,
    "xm_domname": XmDomnameAction,
}
