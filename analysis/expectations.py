"""A run's `expect:` checks, measured from its run directory and judged.

run.json carries each check in normal form (metric, selectors, comparison, base-unit
bounds) as the scenario language wrote it, so this module needs nothing but the run
directory: a run made elsewhere is checked the same way.  Each metric `m` is measured by
`measure_m(run, selectors)`; a metric with nothing to measure (a latency with no samples)
measures None, which fails every comparison and says so.

Verdicts: each check PASS or FAIL; the run's `outcome` is PASS or FAIL, or XFAIL / XPASS
when the scenario is marked `xfail` (expected to fail).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from analysis import io as io_metrics
from analysis.run import RUN_FILE, Run, load_run

__all__ = [
    "MEASURES",
    "CheckResult",
    "check_run",
    "check_run_dir",
    "fingerprint",
    "format_value",
    "judge",
    "outcome",
]

Selectors = Mapping[str, Any]
Value = float | str | None
_NS_PER_S: Final = 1e9


@dataclass(frozen=True)
class CheckResult:
    """One check judged: what was measured, the bound, PASS or FAIL."""

    name: str
    metric: str
    measured: Value
    shown: str  # the measured value in the metric's unit
    bound: str  # the comparison as a reader writes it
    verdict: str  # PASS or FAIL

    def as_json(self) -> dict[str, Any]:
        """run.json's record of it (NaN-free: an unmeasurable value is null)."""
        return asdict(self)


# -- selection ---------------------------------------------------------------------------
#: What run.json appends (framework.dom0.xm_create) to the name of a domain the toolstack
#: created but could not build (its RMA could not be placed, ...) and destroyed again.
_NOT_BUILT_SUFFIX: Final = " (not built)"


def _domid(run: Run, sel: Selectors) -> int | None:
    """The selected domain's id (None: the whole machine); KeyError for an unknown name.

    A domain that was created but not built is found by its scenario name too. A name
    that several domains had (a guest rebooted or created again) selects the latest of
    them, the one `xm list` would show by that name; `domain_id` selects an earlier one.
    """
    if "domain_id" in sel:
        return int(sel["domain_id"])
    name = sel.get("domain")
    if name is None:
        return None
    found = [
        domid
        for domid, known in run.domains.items()
        if known in (name, f"{name}{_NOT_BUILT_SUFFIX}")
    ]
    if found:
        return found[-1]
    raise KeyError(f"domain {name!r} is not in this run (run.json domains)")


def _rows(run: Run, kind: str, sel: Selectors, *, by_vcpu: bool = True) -> pd.DataFrame:
    """Records of one kind narrowed by domain, VCPU and window (start inclusive), with its
    fields by name."""
    df = run.trace
    mask = (df["kind"] == kind).to_numpy(dtype=bool, na_value=False)
    dom = _domid(run, sel)
    if dom is not None:
        mask = mask & (df["dom"].to_numpy() == dom)
    if by_vcpu and "vcpu" in sel:
        mask = mask & (df["vcpu"].to_numpy() == int(sel["vcpu"]))
    if "window" in sel:
        t = df["t_ns"].to_numpy()
        lo, hi = sel["window"]
        mask = mask & (t >= lo) & (t < hi)
    return df.loc[mask].xen.kind(kind)


def _window(run: Run, sel: Selectors) -> tuple[int, int]:
    lo, hi = sel.get("window", (0, run.sim_ns))
    return int(lo), int(hi)


def _runstate_ns(run: Run, sel: Selectors) -> pd.DataFrame:
    """(vcpu, state, ns) of the selected VCPUs' runstate intervals clipped to the window."""
    lo, hi = _window(run, sel)
    rs = run.trace.xen.kind("sched.runstate")
    dom = _domid(run, sel)
    if dom is not None:
        rs = rs[rs["dom"] == dom]
    if "vcpu" in sel:
        rs = rs[rs["vcpu"] == int(sel["vcpu"])]
    keys = [rs["dom"], rs["vcpu"]]
    stop = rs.groupby(keys, sort=False)["t_ns"].shift(-1).fillna(run.sim_ns).astype("int64")
    start = rs["t_ns"].clip(lower=lo)
    ns = (stop.clip(upper=hi) - start).clip(lower=0)
    return pd.DataFrame({"vcpu": rs["vcpu"], "state": rs["state"], "ns": ns})


def _percentile(values: np.ndarray, sel: Selectors) -> float | None:
    if values.size == 0:
        return None
    return float(np.percentile(values.astype("float64"), float(sel.get("percentile", 50))))


def _state_code(run: Run, name: str) -> int:
    return run.trace.xen.metadata.code_of("state", name)


# -- measures ----------------------------------------------------------------------------
def measure_cpu_share(run: Run, sel: Selectors) -> Value:
    lo, hi = _window(run, sel)
    iv = _runstate_ns(run, sel)
    running = iv["ns"][iv["state"] == _state_code(run, "running")].sum()
    return float(running) / (hi - lo)


def measure_runstate_share(run: Run, sel: Selectors) -> Value:
    iv = _runstate_ns(run, sel)
    total = iv["ns"].sum()
    if total == 0:
        return None
    return float(iv["ns"][iv["state"] == _state_code(run, str(sel["state"]))].sum()) / total


def measure_upcall_latency(run: Run, sel: Selectors) -> Value:
    lat = run.trace.xen.upcall_latency()
    dom = _domid(run, sel)
    keep = np.ones(len(lat), dtype=bool)
    if dom is not None:
        keep = keep & (lat.index.get_level_values("dom") == dom)
    if "vcpu" in sel:
        keep = keep & (lat.index.get_level_values("vcpu") == int(sel["vcpu"]))
    return _percentile(lat.to_numpy()[keep], sel)


def measure_wake_latency(run: Run, sel: Selectors) -> Value:
    df = run.trace
    running = _state_code(run, "running")
    wake = (df["kind"] == "sched.wake").to_numpy(dtype=bool, na_value=False)
    ran = (df["kind"] == "sched.runstate").to_numpy(dtype=bool, na_value=False)
    ran = ran & (df.xen.field("state") == running).to_numpy(dtype=bool, na_value=False)
    sub = df.loc[wake | ran, ["t_ns", "dom", "vcpu"]]
    is_run = ran[wake | ran]
    run_t = sub["t_ns"].astype("Int64").where(is_run)
    next_run = run_t.groupby([sub["dom"], sub["vcpu"]], sort=False).bfill()
    woke = ~is_run & next_run.notna().to_numpy()
    picked = sub[woke].assign(lat=(next_run[woke] - sub["t_ns"][woke]).astype("int64"))
    picked = _narrow(run, picked, sel)
    return _percentile(picked["lat"].to_numpy(), sel)


def _narrow(run: Run, frame: pd.DataFrame, sel: Selectors) -> pd.DataFrame:
    """Rows of a (t_ns, dom, vcpu, ...) frame inside the selection."""
    dom = _domid(run, sel)
    if dom is not None:
        frame = frame[frame["dom"] == dom]
    if "vcpu" in sel:
        frame = frame[frame["vcpu"] == int(sel["vcpu"])]
    if "window" in sel:
        lo, hi = sel["window"]
        frame = frame[(frame["t_ns"] >= lo) & (frame["t_ns"] < hi)]
    return frame


def _marks(run: Run, label: str, sel: Selectors) -> pd.DataFrame:
    marks = run.trace.xen.kind("guest.mark")
    return _narrow(run, marks[marks["text"] == label], sel)


def _mark_gaps(run: Run, label: str, by: list[str], sel: Selectors) -> Value:
    """Percentile of the time between successive `label` marks of each `by` group, the
    gaps ending inside the window (the first mark of a window still has its gap)."""
    marks = _marks(run, label, {k: v for k, v in sel.items() if k != "window"})
    gaps = marks.groupby(by, sort=False)["t_ns"].diff()
    gaps = gaps[gaps.notna()]
    if "window" in sel:
        lo, hi = sel["window"]
        t = marks["t_ns"][gaps.index]
        gaps = gaps[(t >= lo) & (t < hi)]
    return _percentile(gaps.to_numpy(dtype="int64"), sel)


def measure_event_rtt(run: Run, sel: Selectors) -> Value:
    return _mark_gaps(run, "pingpong.round", ["dom"], sel)


def measure_timer_interval(run: Run, sel: Selectors) -> Value:
    return _mark_gaps(run, "timer.tick", ["dom", "vcpu"], sel)


def measure_timer_lateness(run: Run, sel: Selectors) -> Value:
    ticks = _marks(run, "timer.tick", sel)
    return _percentile((ticks["t_ns"] - ticks["value"]).to_numpy(dtype="int64"), sel)


def _io_rows(run: Run, kind: str, fields: tuple[str, ...], sel: Selectors) -> pd.DataFrame:
    rows = _rows(run, kind, sel, by_vcpu=False)
    out = pd.DataFrame({"t_ns": rows["t_ns"].to_numpy()})
    for name in fields:
        out[name] = rows[name].to_numpy(dtype="int64")
    if "device" in sel and "dev" in fields:
        out = out[out["dev"] == int(sel["device"])]
    return out


def measure_blk_iops(run: Run, sel: Selectors) -> Value:
    done = _io_rows(run, "blk.complete", ("dev",), sel)
    lo, hi = _window(run, sel)
    return len(done) / ((hi - lo) / _NS_PER_S)


def measure_blk_latency(run: Run, sel: Selectors) -> Value:
    done = _io_rows(run, "blk.complete", ("dev", "latency_ns"), sel)
    return _percentile(done["latency_ns"].to_numpy(), sel)


def measure_blk_errors(run: Run, sel: Selectors) -> Value:
    done = _io_rows(run, "blk.complete", ("dev", "status"), sel)
    return float((done["status"] != 0).sum())


def measure_blk_verify_failures(run: Run, sel: Selectors) -> Value:
    return float(len(_io_rows(run, "blk.verify", ("dev",), sel)))


def measure_blk_outstanding(run: Run, sel: Selectors) -> Value:
    sent = len(_io_rows(run, "blk.submit", ("dev",), sel))
    return float(sent - len(_io_rows(run, "blk.complete", ("dev",), sel)))


def measure_net_throughput(run: Run, sel: Selectors) -> Value:
    rx = _io_rows(run, "net.rx", ("dev", "bytes"), sel)
    lo, hi = _window(run, sel)
    return float(rx["bytes"].sum()) / ((hi - lo) / _NS_PER_S)


def measure_net_sent(run: Run, sel: Selectors) -> Value:
    return float(len(_io_rows(run, "net.tx", ("dev",), sel)))


def measure_net_received(run: Run, sel: Selectors) -> Value:
    return float(len(_io_rows(run, "net.rx", ("dev",), sel)))


def measure_net_drops(run: Run, sel: Selectors) -> Value:
    # Who dropped a frame (the sender's netfront, dom0's bridge, the receiver) records it
    # under its own domain; the packet id names the stream that sent it, so a domain's
    # drops are those of the frames it sent, wherever they were dropped.
    drops = run.trace.xen.kind("net.drop")
    if "window" in sel:
        lo, hi = sel["window"]
        drops = drops[(drops["t_ns"] >= lo) & (drops["t_ns"] < hi)]
    dom = _domid(run, sel)
    pkt = drops["pkt"].to_numpy(dtype="int64")
    keep = np.ones(len(drops), dtype=bool)
    if dom is not None:
        keep = keep & (pkt >= 0) & ((pkt >> 48) == dom)
    if "device" in sel:
        keep = keep & ((pkt >> 32) & 0xFFFF == int(sel["device"]))
    return float(keep.sum())


def measure_grants_mapped(run: Run, sel: Selectors) -> Value:
    balance = io_metrics.grant_balance(run.trace)
    dom = _domid(run, sel)
    if dom is None:
        return float(balance["still_mapped"].sum())
    return float(balance["still_mapped"].get(dom, 0))


def measure_sharedmem_verified(run: Run, sel: Selectors) -> Value:
    rows = _rows(run, "shm.verify", sel, by_vcpu=False)
    return float((rows["status"] == 0).sum())


def measure_sharedmem_failures(run: Run, sel: Selectors) -> Value:
    rows = _rows(run, "shm.verify", sel, by_vcpu=False)
    return float((rows["status"] != 0).sum())


def measure_grant_revoke_busy(run: Run, sel: Selectors) -> Value:
    rows = _rows(run, "shm.revoke", sel, by_vcpu=False)
    return float((rows["status"] == 1).sum())


def measure_memory_held(run: Run, sel: Selectors) -> Value:
    held = 0
    for kind, sign in (("mem.alloc", 1), ("mem.free", -1)):
        rows = _rows(run, kind, {k: v for k, v in sel.items() if k != "window"})
        held += sign * int(rows["count"].astype("int64").sum())
    return float(held * 4096)


def measure_final_state(run: Run, sel: Selectors) -> Value:
    dom = _domid(run, sel)
    df = run.trace
    mine = df[(df["dom"] == dom).to_numpy() & df["kind"].astype(str).str.startswith("dom.")]
    kinds = list(mine["kind"].astype(str))
    if "dom.destroy" in kinds:
        return "destroyed"
    if "dom.crash" in kinds:
        return "crashed"
    if "dom.shutdown" in kinds:
        reason = mine[mine["kind"] == "dom.shutdown"]["text"].iloc[-1]
        return "shutdown" if pd.isna(reason) else f"shutdown:{reason}"
    if kinds and kinds[-1] == "dom.pause":
        return "paused"
    rs = run.trace.xen.kind("sched.runstate")
    last = rs[rs["dom"] == dom].groupby("vcpu")["state"].last()
    busy = {_state_code(run, "running"), _state_code(run, "runnable")}
    return "running" if last.isin(busy).any() else "blocked"


def measure_console(run: Run, sel: Selectors) -> Value:
    lines = _rows(run, "console.out", sel, by_vcpu=False)["text"]
    return "\n".join(str(line) for line in lines.dropna())


def measure_xm_output(run: Run, sel: Selectors) -> Value:
    texts = _rows(run, "xm.view", sel, by_vcpu=False)["text"]
    return "\n".join(str(text) for text in texts.dropna())


def measure_records(run: Run, sel: Selectors) -> Value:
    rows = _rows(run, str(sel["kind"]), sel)
    for field, value in dict(sel.get("where", {})).items():
        rows = rows[rows[field].astype("int64") == int(value)]
    return float(len(rows))


def fingerprint_rows(run: Run, sel: Selectors) -> pd.DataFrame:
    """The records and columns a fingerprint covers, in emission order."""
    rows = run.trace.xen.wide(list(sel["kinds"]))
    if "window" in sel:
        lo, hi = sel["window"]
        rows = rows[(rows["t_ns"] >= lo) & (rows["t_ns"] < hi)]
    return rows[[c for c in sel["columns"] if c in rows.columns]].reset_index(drop=True)


def fingerprint(rows: pd.DataFrame) -> str:
    """SHA-256 (16 hex digits) of the rows, column by column, independent of dtypes."""
    digest = hashlib.sha256()
    for name in rows.columns:
        column = rows[name]
        digest.update(name.encode() + b"\0")
        if name == "kind" or name == "text":
            cells = column.astype(object).where(column.notna(), None)
            digest.update(json.dumps(list(map(_text_or_none, cells))).encode())
        else:
            values = column.astype("Int64")
            digest.update(values.fillna(-(1 << 63)).to_numpy(dtype="<i8").tobytes())
            digest.update(values.isna().to_numpy().tobytes())
    return digest.hexdigest()[:16]


def _text_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def measure_fingerprint(run: Run, sel: Selectors) -> Value:
    return fingerprint(fingerprint_rows(run, sel))


#: Every metric's measure, by name (tests check it covers the scenario language's METRICS).
MEASURES: Final[dict[str, Callable[[Run, Selectors], Value]]] = {
    "cpu_share": measure_cpu_share,
    "runstate_share": measure_runstate_share,
    "upcall_latency": measure_upcall_latency,
    "wake_latency": measure_wake_latency,
    "event_rtt": measure_event_rtt,
    "timer_interval": measure_timer_interval,
    "timer_lateness": measure_timer_lateness,
    "blk_iops": measure_blk_iops,
    "blk_latency": measure_blk_latency,
    "blk_errors": measure_blk_errors,
    "blk_verify_failures": measure_blk_verify_failures,
    "blk_outstanding": measure_blk_outstanding,
    "net_throughput": measure_net_throughput,
    "net_sent": measure_net_sent,
    "net_received": measure_net_received,
    "net_drops": measure_net_drops,
    "grants_mapped": measure_grants_mapped,
    "sharedmem_verified": measure_sharedmem_verified,
    "sharedmem_failures": measure_sharedmem_failures,
    "grant_revoke_busy": measure_grant_revoke_busy,
    "memory_held": measure_memory_held,
    "final_state": measure_final_state,
    "console": measure_console,
    "xm_output": measure_xm_output,
    "records": measure_records,
    "fingerprint": measure_fingerprint,
}


# -- judging -----------------------------------------------------------------------------
def format_value(value: Value, quantity: str) -> str:
    """A measured value or bound in the metric's unit, as a reader writes it."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nothing measured"
    if isinstance(value, str):
        return value if len(value) <= 60 else f"{value[:57]}..."
    if quantity == "duration":
        for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
            if abs(value) >= scale:
                return f"{value / scale:.4g}{unit}"
        return f"{value:.4g}ns"
    if quantity == "fraction":
        return f"{value * 100:.4g}%"
    if quantity == "bandwidth":
        return f"{value * 8 / 1e6:.4g}Mbit/s"
    if quantity == "bytes":
        for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
            if value and value % scale == 0:
                return f"{value / scale:g}{unit}"
        return f"{value:g}B"
    if quantity == "rate":
        return f"{value:.4g}/s"
    return f"{value:g}"


def _bound(check: Mapping[str, Any]) -> str:
    q = check["quantity"]
    op = check["op"]
    if op == "matches":
        return f"matches /{check['pattern']}/"
    if op == "between":
        return f"between {format_value(check['low'], q)} and {format_value(check['high'], q)}"
    if op == "approx":
        tol = []
        if check["rel"]:
            tol.append(f"{check['rel'] * 100:g}%")
        if check["abs"]:
            tol.append(format_value(check["abs"], q))
        return f"≈ {format_value(check['value'], q)} ± {' + '.join(tol)}"
    sign = {"equals": "=", "at_least": "≥", "at_most": "≤"}[op]
    return f"{sign} {format_value(check['value'], q)}"


def judge(check: Mapping[str, Any], value: Value) -> bool:
    """Whether a measured value meets the check's comparison."""
    op = check["op"]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    if op == "matches":
        return re.search(check["pattern"], str(value), re.MULTILINE) is not None
    if isinstance(value, str):
        if check["quantity"] == "state" and ":" not in str(check["value"]):
            return value.split(":")[0] == check["value"]
        return value == check["value"]
    if op == "equals":
        return math.isclose(value, float(check["value"]), rel_tol=1e-12, abs_tol=1e-12)
    if op == "at_least":
        return value >= float(check["value"])
    if op == "at_most":
        return value <= float(check["value"])
    if op == "between":
        return float(check["low"]) <= value <= float(check["high"])
    target = float(check["value"])
    tolerance = float(check["rel"]) * abs(target) + float(check["abs"])
    return abs(value - target) <= tolerance


def check_run(run: Run) -> list[CheckResult]:
    """Every check run.json's `expect` lists, measured and judged."""
    results = []
    for check in run.meta.get("expect", []):
        try:
            value = MEASURES[check["metric"]](run, check["selectors"])
        except KeyError as exc:  # a domain or metric this run does not have
            value, shown = None, f"cannot measure: {exc.args[0]}"
        else:
            shown = format_value(value, check["quantity"])
        if isinstance(value, float) and math.isnan(value):
            value = None
        verdict = "PASS" if judge(check, value) else "FAIL"
        results.append(
            CheckResult(check["name"], check["metric"], value, shown, _bound(check), verdict)
        )
    return results


def outcome(results: list[CheckResult], xfail: str | None) -> str:
    """The run's verdict: PASS/FAIL, or XFAIL/XPASS for a scenario expected to fail."""
    failed = any(r.verdict == "FAIL" for r in results)
    if xfail is not None:
        return "XFAIL" if failed else "XPASS"
    return "FAIL" if failed else "PASS"


def check_run_dir(directory: str | Path) -> tuple[list[CheckResult], str]:
    """Check the run in `directory` and record the results and outcome in its run.json."""
    run = load_run(directory)
    results = check_run(run)
    verdict = outcome(results, run.meta.get("xfail"))
    meta = dict(run.meta)
    meta["expectations"] = [r.as_json() for r in results]
    meta["outcome"] = verdict
    path = Path(directory) / RUN_FILE
    path.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return results, verdict
