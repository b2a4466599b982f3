"""EVTCHNOP_* (`event_channel.h`): commands, port status codes and argument layouts."""

from __future__ import annotations

from typing import Final

from framework.xen.public.layout import Layout

EVTCHNOP_bind_interdomain: Final = 0
EVTCHNOP_bind_virq: Final = 1
EVTCHNOP_bind_pirq: Final = 2
EVTCHNOP_close: Final = 3
EVTCHNOP_send: Final = 4
EVTCHNOP_status: Final = 5
EVTCHNOP_alloc_unbound: Final = 6
EVTCHNOP_bind_ipi: Final = 7
EVTCHNOP_bind_vcpu: Final = 8
EVTCHNOP_unmask: Final = 9
EVTCHNSTAT_closed: Final = 0
EVTCHNSTAT_unbound: Final = 1
EVTCHNSTAT_interdomain: Final = 2
EVTCHNSTAT_pirq: Final = 3
EVTCHNSTAT_virq: Final = 4
EVTCHNSTAT_ipi: Final = 5
NR_EVENT_CHANNELS: Final = 4096


EVTCHN_ALLOC_UNBOUND: Final = Layout(
    "evtchn_alloc_unbound", 8, {"dom": (0, 2), "remote_dom": (2, 2), "port": (4, 4)}
)
EVTCHN_BIND_INTERDOMAIN: Final = Layout(
    "evtchn_bind_interdomain",
    12,
    {"remote_dom": (0, 2), "remote_port": (4, 4), "local_port": (8, 4)},
)
EVTCHN_BIND_VIRQ: Final = Layout(
    "evtchn_bind_virq", 12, {"virq": (0, 4), "vcpu": (4, 4), "port": (8, 4)}
)
EVTCHN_BIND_PIRQ: Final = Layout(
    "evtchn_bind_pirq", 12, {"pirq": (0, 4), "flags": (4, 4), "port": (8, 4)}
)
EVTCHN_BIND_IPI: Final = Layout("evtchn_bind_ipi", 8, {"vcpu": (0, 4), "port": (4, 4)})
EVTCHN_PORT: Final = Layout("evtchn_port", 4, {"port": (0, 4)})  # send, close, unmask
EVTCHN_BIND_VCPU: Final = Layout("evtchn_bind_vcpu", 8, {"port": (0, 4), "vcpu": (4, 4)})
EVTCHN_STATUS: Final = Layout(
    "evtchn_status",
    24,
    {
        "dom": (0, 2),
        "port": (4, 4),
        "status": (8, 4),
        "vcpu": (12, 4),
        "u_dom": (16, 2),
        "u_port": (20, 4),
        "u_virq": (16, 4),
    },
)
