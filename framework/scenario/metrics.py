"""The metrics an `expect:` check may name: what each measures, its unit, its selectors.

This is the scenario language's side of expectations, declared once: validation checks a
check's metric, selectors and bound against it, and the run directory records the checks
with it, so `analysis.expectations` (which imports nothing of framework, by design: it reads
runs made anywhere) measures from the run directory alone.  Every name here has a
`measure_<name>` function in `analysis.expectations`; tests/analysis/test_expectations.py
proves the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = [
    "COMPARISONS",
    "DOMAIN_STATES",
    "METRICS",
    "ORDERED",
    "SELECTORS",
    "Metric",
    "Quantity",
]


class Quantity:
    """What a metric's value is, which decides how a bound is written and shown."""

    DURATION: Final = "duration"  # ns; bounds like '50us'
    FRACTION: Final = "fraction"  # 0..1 (or more for a multi-VCPU domain); bounds like '30%'
    COUNT: Final = "count"  # a whole number
    RATE: Final = "rate"  # a plain number per simulated second (IOPS)
    BANDWIDTH: Final = "bandwidth"  # bytes per simulated second; bounds like '100Mbit/s'
    BYTES: Final = "bytes"  # bounds like '64MiB'
    STATE: Final = "state"  # one of DOMAIN_STATES
    TEXT: Final = "text"  # compared with `matches`
    HASH: Final = "hash"  # a hex digest, compared with `equals`


#: The comparisons a check may use (exactly one per check).
COMPARISONS: Final = ("equals", "at_least", "at_most", "between", "approx", "matches")
#: Comparisons that need an ordered (numeric) value.
ORDERED: Final = frozenset({"at_least", "at_most", "between", "approx"})
#: A domain's state at the end of the run, as `final_state` reports it.  `shutdown` may
#: carry its reason: `shutdown:poweroff`, `shutdown:reboot`, `shutdown:suspend`.
DOMAIN_STATES: Final = ("running", "blocked", "paused", "shutdown", "crashed", "destroyed")

#: Selectors, by name: what each picks.
SELECTORS: Final = {
    "domain": "a domain by name (dom0 included); without it, the whole machine",
    "vcpu": "one VCPU of `domain`",
    "device": "one device of `domain`: its vbd `dev` number or vif number",
    "window": "[from, to]: only what happened in that simulated interval",
    "percentile": "0..100, for latency metrics (default 50)",
    "state": "a runstate: running, runnable, blocked or offline",
    "kind": "a trace record kind, e.g. `blk.complete`",
    "where": "{field: integer}: records whose fields (or `cpu`) have these values",
    "kinds": "the record kinds a fingerprint covers (default: all)",
    "columns": "the columns a fingerprint covers (default: t_ns, cpu, dom, vcpu, kind and "
    "the kind's fields)",
}


@dataclass(frozen=True)
class Metric:
    """One metric: its unit, the selectors it takes (and needs), and what it measures."""

    name: str
    quantity: str
    doc: str
    selectors: frozenset[str] = frozenset()
    required: frozenset[str] = frozenset()


def _m(name: str, quantity: str, doc: str, selectors: str = "", required: str = "") -> Metric:
    return Metric(name, quantity, doc, frozenset(selectors.split()), frozenset(required.split()))


_WINDOWED: Final = "domain vcpu window"
_LATENCY: Final = "domain vcpu window percentile"
_IO: Final = "domain device window"

METRICS: Final[dict[str, Metric]] = {
    m.name: m
    for m in (
        _m(
            "cpu_share",
            Quantity.FRACTION,
            "running time over the window's length, summed over the selected VCPUs "
            "(as xentop's CPU%: a 2-VCPU domain can reach 200%)",
            _WINDOWED,
            "domain",
        ),
        _m(
            "runstate_share",
            Quantity.FRACTION,
            "share of the selected VCPUs' tracked time spent in `state`",
            f"{_WINDOWED} state",
            "domain state",
        ),
        _m(
            "upcall_latency",
            Quantity.DURATION,
            "time from an event marked pending to the upcall that takes it",
            _LATENCY,
        ),
        _m(
            "wake_latency",
            Quantity.DURATION,
            "time from a VCPU's wake (sched.wake) to it running",
            _LATENCY,
        ),
        _m(
            "event_rtt",
            Quantity.DURATION,
            "pingpong round-trip time: between successive completed rounds of the ping side",
            "domain window percentile",
        ),
        _m(
            "timer_interval",
            Quantity.DURATION,
            "time between successive timer workload ticks of one VCPU",
            _LATENCY,
        ),
        _m(
            "timer_lateness",
            Quantity.DURATION,
            "how long after its deadline a timer workload tick ran",
            _LATENCY,
        ),
        _m("blk_iops", Quantity.RATE, "block requests completed per simulated second", _IO),
        _m(
            "blk_latency",
            Quantity.DURATION,
            "block request latency, submit to response",
            f"{_IO} percentile",
        ),
        _m("blk_errors", Quantity.COUNT, "block responses with an error status", _IO),
        _m("blk_verify_failures", Quantity.COUNT, "reads whose data did not verify", _IO),
        _m(
            "blk_outstanding",
            Quantity.COUNT,
            "block requests submitted and never answered",
            _IO,
        ),
        _m(
            "net_throughput",
            Quantity.BANDWIDTH,
            "bytes received per simulated second over the window (default: the run)",
            _IO,
        ),
        _m("net_sent", Quantity.COUNT, "network frames sent", _IO),
        _m("net_received", Quantity.COUNT, "network frames received", _IO),
        _m(
            "net_drops",
            Quantity.COUNT,
            "network frames the selection sent that were dropped, wherever and for any reason",
            _IO,
        ),
        _m(
            "grants_mapped",
            Quantity.COUNT,
            "grant mappings the selected domain (the mapper) still holds at the end",
            "domain",
        ),
        # grants in scenarios (issue 16): the sharedmem workload's checks
        _m(
            "sharedmem_verified",
            Quantity.COUNT,
            "sharedmem checks whose data matched (shm.verify status 0), by the checking "
            "domain: the peer checks the granter's data, the granter a read-write peer's answer",
            "domain window",
        ),
        _m(
            "sharedmem_failures",
            Quantity.COUNT,
            "sharedmem checks whose data did not match, or that could not reach the pages",
            "domain window",
        ),
        _m(
            "grant_revoke_busy",
            Quantity.COUNT,
            "grant refs a revoke found still mapped by the peer (left granted)",
            "domain window",
        ),
        _m(
            "memory_held",
            Quantity.BYTES,
            "memory allocated to the selection and not freed by the end (0 = all returned)",
            "domain",
        ),
        _m(
            "final_state",
            Quantity.STATE,
            "the domain's state at the end: " + ", ".join(DOMAIN_STATES),
            "domain",
            "domain",
        ),
        _m(
            "console",
            Quantity.TEXT,
            "the domain's console output, one line per console.out record",
            "domain",
            "domain",
        ),
        _m(
            "xm_output",
            Quantity.TEXT,
            "what the timeline's xm views printed (xm.view records: the command line, then "
            "its output), in time order",
            "window",
        ),
        _m(
            "records",
            Quantity.COUNT,
            "trace records of `kind` matching the selectors and `where`",
            "domain vcpu window kind where",
            "kind",
        ),
        _m(
            "fingerprint",
            Quantity.HASH,
            "SHA-256 (first 16 hex digits) of the selected records' selected columns; "
            "`xen970 test --update-fingerprints` writes it",
            "kinds columns window",
        ),
    )
}
