"""`expect:`: the checks a scenario makes of its own run, validated before anything runs.

A check names a metric (`framework.scenario.metrics`), selectors that narrow it (a domain,
a VCPU, a device, a window...) and exactly one comparison: `equals`, `at_least`, `at_most`,
`between: [a, b]`, `approx: x` with a `rel:` and/or `abs:` tolerance, or `matches:` (a
regular expression, searched).  Bounds are written in the metric's unit (`50us`, `30%`,
`100Mbit/s`, `64MiB`) and stored as base-unit numbers, so the run directory carries each
check in a form `analysis.expectations` evaluates without this package.

A negative test says `expect: {refused: "<regex>"}` instead: it passes when validation
refuses the file with a message the regex finds (`Refusal`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final

from pydantic import Field, PrivateAttr, StrictFloat, StrictInt, StrictStr, model_validator

from framework.errors import UnitError
from framework.scenario.fields import (
    Duration,
    Problem,
    ScenarioModel,
    clip,
    in_range,
    matching,
    non_empty,
)
from framework.scenario.limits import is_dom0_name
from framework.scenario.metrics import COMPARISONS, DOMAIN_STATES, METRICS, ORDERED, Quantity
from framework.trace.schema import KIND_BY_NAME
from framework.units import parse_bandwidth, parse_duration, parse_fraction, parse_size
from framework.xen.public.io.blkif import vbd_devid

__all__ = ["FINGERPRINT_BASE_COLUMNS", "Check", "Expectation", "Refusal"]

#: A bound as written: a number, or a string with a unit.
Bound = StrictInt | StrictFloat | StrictStr
#: Columns every record has, which a fingerprint covers unless `columns` says otherwise.
FINGERPRINT_BASE_COLUMNS: Final = ("t_ns", "cpu", "dom", "vcpu", "kind")
_DEVICE: Final = re.compile(r"xvd[a-z]|vif[0-9]{1,2}")
_RUNSTATES: Final = ("running", "runnable", "blocked", "offline")
_MAX_PATTERN: Final = 1000
#: A check's normalised form, as run.json records it.
Check = dict[str, Any]


def _number(value: Bound, quantity: str) -> float:
    """A bound in the metric's base unit, parsed with the unit parsers every field uses."""
    if quantity == Quantity.DURATION:
        return float(parse_duration(value if isinstance(value, str | int) else str(value)))
    if quantity == Quantity.FRACTION:
        return parse_fraction(value)
    if quantity == Quantity.BANDWIDTH:
        if not isinstance(value, str):
            raise UnitError(f"missing unit in {value!r}; write a bandwidth like '100Mbit/s'")
        return float(parse_bandwidth(value))
    if quantity == Quantity.BYTES:
        if isinstance(value, float):
            raise UnitError(f"expected a size like '64MiB', got {value!r}")
        return float(parse_size(value))
    if isinstance(value, str):
        raise UnitError(f"expected a number, got {clip(repr(value))}")
    if quantity == Quantity.COUNT and not float(value).is_integer():
        raise UnitError(f"a count is a whole number, got {value!r}")
    return float(value)


def _regex(pattern: str, where: str) -> str:
    if len(pattern) > _MAX_PATTERN:
        raise Problem((where,), f"the pattern is longer than {_MAX_PATTERN} characters")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise Problem((where,), f"not a regular expression: {exc}") from None
    return pattern


class Expectation(ScenarioModel):
    """One check of the run: a metric, its selectors and one comparison."""

    name: StrictStr | None = Field(None, description="what the check is called in reports")
    metric: StrictStr = Field(description="what to measure; see the metrics table")
    domain: StrictStr | None = Field(None, description="selector: a domain by name")
    vcpu: Annotated[StrictInt, in_range(0, 31, "vcpu")] | None = Field(
        None, description="selector: one VCPU of `domain`"
    )
    device: Annotated[StrictStr, matching(_DEVICE, "device")] | None = Field(
        None, description="selector: a vbd by name (`xvda`) or a vif by number (`vif0`)"
    )
    window: tuple[Duration, Duration] | None = Field(
        None, description="selector: [from, to] in simulated time"
    )
    percentile: Annotated[StrictInt | StrictFloat, Field(ge=0, le=100)] | None = Field(
        None, description="selector: 0..100 for latency metrics (default 50)"
    )
    state: StrictStr | None = Field(None, description="selector: a runstate name")
    kind: StrictStr | None = Field(None, description="selector: a trace record kind")
    where: dict[StrictStr, StrictInt] | None = Field(
        None, description="selector: {field: integer} filters on `kind`'s fields"
    )
    kinds: tuple[StrictStr, ...] | None = Field(
        None, description="fingerprint: the record kinds it covers"
    )
    columns: tuple[StrictStr, ...] | None = Field(
        None, description="fingerprint: the columns it covers"
    )
    equals: Bound | None = Field(None, description="comparison: exactly this value")
    at_least: Bound | None = Field(None, description="comparison: this value or more")
    at_most: Bound | None = Field(None, description="comparison: this value or less")
    between: tuple[Bound, Bound] | None = Field(None, description="comparison: [low, high]")
    approx: Bound | None = Field(None, description="comparison: near this, by `rel`/`abs`")
    rel: Bound | None = Field(None, description="`approx` tolerance relative to it, e.g. 5%")
    abs: Bound | None = Field(None, description="`approx` tolerance in the metric's unit")
    matches: Annotated[StrictStr, non_empty("matches")] | None = Field(
        None, description="comparison: a regular expression searched in the value"
    )

    _check: Check = PrivateAttr(default_factory=dict)

    @property
    def check(self) -> Check:
        """The check as run.json records it: base-unit bounds, no unit strings."""
        return dict(self._check)

    @model_validator(mode="after")
    def _normalise(self) -> Expectation:
        metric = METRICS.get(self.metric)
        if metric is None:
            known = ", ".join(METRICS)
            raise Problem(("metric",), f"unknown metric {clip(repr(self.metric))}; known: {known}")
        given = {
            name
            for name in ("domain", "vcpu", "device", "window", "percentile", "state", "kind")
            + ("where", "kinds", "columns")
            if getattr(self, name) is not None
        }
        for name in sorted(given - metric.selectors):
            allowed = ", ".join(sorted(metric.selectors)) or "none"
            raise Problem((name,), f"metric {metric.name} takes no {name} (selectors: {allowed})")
        for name in sorted(metric.required - given):
            raise Problem(("metric",), f"metric {metric.name} needs `{name}`")
        if self.vcpu is not None and self.domain is None:
            raise Problem(("vcpu",), "a vcpu selector needs `domain`")
        if self.device is not None and self.domain is None:
            raise Problem(("device",), "a device selector needs `domain`")
        if self.window is not None and self.window[0] >= self.window[1]:
            raise Problem(("window",), "window must be [from, to] with from < to")
        selectors = {name: getattr(self, name) for name in sorted(given)}
        selectors.update(self._check_selectors(metric.name))
        check: Check = {
            "name": self.name or self._default_name(),
            "metric": metric.name,
            "quantity": metric.quantity,
            "selectors": selectors,
        }
        check.update(self._comparison(metric.quantity))
        self._check = check
        return self

    def _check_selectors(self, metric: str) -> dict[str, Any]:
        """Checks of the selectors whose meaning depends on the metric; normalised values."""
        out: dict[str, Any] = {}
        if self.state is not None and self.state not in _RUNSTATES:
            raise Problem(
                ("state",),
                f"unknown runstate {clip(repr(self.state))}; "
                f"expected one of {', '.join(_RUNSTATES)}",
            )
        if self.kind is not None:
            kind = KIND_BY_NAME.get(self.kind)
            if kind is None:
                raise Problem(("kind",), f"unknown record kind {clip(repr(self.kind))}")
            for field in self.where or {}:
                if field not in (*kind.fields, "cpu"):
                    raise Problem(
                        ("where", field),
                        f"{kind.name} has no field {clip(field)!r} "
                        f"(fields: {', '.join((*kind.fields, 'cpu'))})",
                    )
        if self.window is not None:
            out["window"] = list(self.window)
        if self.domain is not None and is_dom0_name(self.domain):
            out["domain_id"] = 0
        if self.device is not None:
            vbd = self.device.startswith("xvd")
            out["device"] = vbd_devid(self.device) if vbd else int(self.device[3:])
            out["device_kind"] = "vbd" if vbd else "vif"
        if self.percentile is None and metric in (
            "upcall_latency",
            "wake_latency",
            "event_rtt",
            "timer_interval",
            "timer_lateness",
            "blk_latency",
        ):
            out["percentile"] = 50
        if metric == "fingerprint":
            kinds = self.kinds if self.kinds is not None else tuple(KIND_BY_NAME)
            for i, name in enumerate(kinds):
                if name not in KIND_BY_NAME:
                    raise Problem(("kinds", i), f"unknown record kind {clip(repr(name))}")
            fields = {f for name in kinds for f in KIND_BY_NAME[name].fields}
            allowed = {*FINGERPRINT_BASE_COLUMNS, *fields, "text"}
            columns = (
                self.columns
                if self.columns is not None
                else (*FINGERPRINT_BASE_COLUMNS, *sorted(fields), "text")
            )
            for i, col in enumerate(columns):
                if col not in allowed:
                    raise Problem(
                        ("columns", i), f"no column {clip(repr(col))} in the selected kinds"
                    )
            out["kinds"] = sorted(kinds)
            out["columns"] = list(columns)
        return out

    def _default_name(self) -> str:
        parts = [self.metric]
        for name in ("domain", "vcpu", "device", "state", "kind", "percentile"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}={value}")
        parts += [f"{field}={value}" for field, value in (self.where or {}).items()]
        return " ".join(parts)

    def _comparison(self, quantity: str) -> Check:
        used = [c for c in COMPARISONS if getattr(self, c) is not None]
        if len(used) != 1:
            what = "none" if not used else ", ".join(used)
            raise Problem(
                ("metric",), f"a check needs exactly one of {', '.join(COMPARISONS)} (found {what})"
            )
        op = used[0]
        if (self.rel is not None or self.abs is not None) and op != "approx":
            raise Problem(("rel" if self.rel is not None else "abs",), "rel/abs go with approx")
        ordered = quantity not in (Quantity.STATE, Quantity.TEXT, Quantity.HASH)
        if op in ORDERED and not ordered:
            raise Problem((op,), f"a {quantity} value is compared with equals or matches")
        if op == "matches":
            if quantity not in (Quantity.STATE, Quantity.TEXT):
                raise Problem((op,), f"a {quantity} value is compared with numbers, not matches")
            assert self.matches is not None
            return {"op": op, "pattern": _regex(self.matches, "matches")}
        try:
            return self._bounds(op, quantity, ordered)
        except UnitError as exc:
            raise Problem((op,), str(exc)) from None

    def _bounds(self, op: str, quantity: str, ordered: bool) -> Check:
        if op == "equals" and not ordered:
            value = self.equals
            if not isinstance(value, str):
                raise UnitError(f"expected a string, got {value!r}")
            if quantity == Quantity.STATE and value.split(":")[0] not in DOMAIN_STATES:
                raise UnitError(
                    f"unknown state {clip(repr(value))}; expected one of {', '.join(DOMAIN_STATES)}"
                )
            if quantity == Quantity.TEXT:
                raise UnitError("console text is compared with matches")
            return {"op": op, "value": value}
        if op == "between":
            assert self.between is not None
            lo, hi = (_number(b, quantity) for b in self.between)
            if lo > hi:
                raise UnitError(f"between [{lo:g}, {hi:g}]: the low bound is above the high one")
            return {"op": op, "low": lo, "high": hi}
        if op == "approx":
            assert self.approx is not None
            if self.rel is None and self.abs is None:
                raise UnitError("approx needs a tolerance: rel (e.g. 5%) and/or abs")
            target = _number(self.approx, quantity)
            rel = parse_fraction(self.rel) if self.rel is not None else 0.0
            tol = _number(self.abs, quantity) if self.abs is not None else 0.0
            return {"op": op, "value": target, "rel": rel, "abs": tol}
        bound = getattr(self, op)
        return {"op": op, "value": _number(bound, quantity)}


class Refusal(ScenarioModel):
    """A negative test: validation must refuse this file with a message matching `refused`."""

    refused: Annotated[StrictStr, non_empty("refused")] = Field(
        description="a regular expression the refusal message must contain"
    )

    @model_validator(mode="after")
    def _compiles(self) -> Refusal:
        _regex(self.refused, "refused")
        return self
