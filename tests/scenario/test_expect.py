"""`expect:` checks: what validation accepts, the normal form run.json records, and the
one-line refusals (with the line) for everything a check can get wrong."""

from __future__ import annotations

import pytest

from framework.errors import ScenarioError
from framework.scenario import parse_scenario
from framework.scenario.metrics import METRICS, Quantity

HEAD = """name: e
duration: 1s
domains:
  - name: g
    memory: 64MiB
    vcpus: 2
    devices: [{kind: vbd, name: xvda, size: 1MiB}, {kind: vif}]
expect:
"""


def _checks(body: str) -> list[dict[str, object]]:
    return [dict(c) for c in parse_scenario(HEAD + body).checks]


def _refusal(body: str) -> str:
    with pytest.raises(ScenarioError) as err:
        parse_scenario(HEAD + body)
    text = str(err.value)
    assert "\n" not in text
    return text


def test_bounds_are_stored_in_base_units() -> None:
    checks = _checks(
        "  - {metric: cpu_share, domain: g, approx: 50%, rel: 5%, abs: 1%}\n"
        "  - {metric: upcall_latency, domain: g, vcpu: 1, percentile: 99, at_most: 50us}\n"
        "  - {metric: net_throughput, domain: g, device: vif0, at_least: 100Mbit/s}\n"
        "  - {metric: memory_held, domain: g, equals: 0}\n"
        "  - {metric: blk_iops, domain: g, device: xvda, between: [10, 2000.5]}\n"
    )
    assert checks[0]["op"] == "approx" and checks[0]["value"] == 0.5
    assert checks[0]["rel"] == 0.05 and checks[0]["abs"] == 0.01
    assert checks[1]["value"] == 50_000.0
    assert checks[1]["selectors"] == {"domain": "g", "vcpu": 1, "percentile": 99}
    assert checks[2]["value"] == 12_500_000.0  # bytes per second
    assert checks[2]["selectors"] == {
        "domain": "g",
        "device": 0,
        "device_kind": "vif",
    }
    # Linux's xvda: major 202, minor 0 (Xen's docs/misc/vbd-interface.txt numbering).
    assert checks[4]["selectors"]["device"] == 202 << 8
    assert (checks[4]["low"], checks[4]["high"]) == (10.0, 2000.5)


def test_latency_metrics_default_to_the_median_and_names_are_generated() -> None:
    checks = _checks("  - {metric: wake_latency, domain: g, at_most: 1ms}\n")
    assert checks[0]["selectors"] == {"domain": "g", "percentile": 50}
    assert checks[0]["name"] == "wake_latency domain=g"


def test_dom0_is_selected_by_id() -> None:
    checks = _checks("  - {metric: cpu_share, domain: dom0, at_most: 10%}\n")
    assert checks[0]["selectors"]["domain_id"] == 0


def test_fingerprint_covers_the_named_kinds_and_their_fields() -> None:
    checks = _checks("  - {metric: fingerprint, kinds: [blk.submit], equals: 0123abcd}\n")
    sel = checks[0]["selectors"]
    assert sel["kinds"] == ["blk.submit"]
    assert sel["columns"] == [
        *("t_ns", "cpu", "dom", "vcpu", "kind"),
        *("bytes", "dev", "req_id", "sector"),
        "text",
    ]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "  - {metric: cpu_time, at_least: 1}\n",
            "<string>:9: expect[0].metric: unknown metric 'cpu_time'; known: cpu_share",
        ),
        (
            "  - {metric: cpu_share, at_least: 1%}\n",
            "expect[0].metric: metric cpu_share needs `domain`",
        ),
        (
            "  - {metric: console, domain: g, kind: blk.submit, matches: x}\n",
            "expect[0].kind: metric console takes no kind",
        ),
        ("  - {metric: cpu_share, domain: g}\n", "needs exactly one of equals, at_least"),
        (
            "  - {metric: cpu_share, domain: g, at_least: 1%, at_most: 5%}\n",
            "(found at_least, at_most)",
        ),
        (
            "  - {metric: cpu_share, domain: g, at_least: 5ms}\n",
            "expect[0].at_least: bad unit 'ms'",
        ),
        ("  - {metric: upcall_latency, at_most: 5}\n", "expect[0].at_most: missing unit in 5"),
        ("  - {metric: cpu_share, domain: g, approx: 5%}\n", "approx needs a tolerance"),
        ("  - {metric: cpu_share, domain: g, at_least: 5%, rel: 1%}\n", "rel/abs go with approx"),
        ("  - {metric: console, domain: g, at_least: 1}\n", "compared with equals or matches"),
        ("  - {metric: console, domain: g, matches: '(unclosed'}\n", "not a regular expression"),
        ("  - {metric: final_state, domain: g, equals: sleeping}\n", "unknown state 'sleeping'"),
        ("  - {metric: blk_errors, domain: g, equals: 1.5}\n", "a count is a whole number"),
        (
            "  - {metric: cpu_share, domain: h, at_least: 1%}\n",
            "<string>:9: expect[0].domain: unknown domain 'h'; expected one of dom0, g",
        ),
        (
            "  - {metric: cpu_share, domain: g, vcpu: 2, at_least: 1%}\n",
            "expect[0].vcpu: domain 'g' has 2 VCPU(s); vcpu 2 is not one",
        ),
        (
            "  - {metric: blk_iops, domain: g, device: xvdb, at_least: 1}\n",
            "expect[0].device: domain 'g' has no device xvdb",
        ),
        (
            "  - {metric: cpu_share, domain: g, window: [0, 2s], at_least: 1%}\n",
            "expect[0].window: window ends at 2s, after the run (duration 1s)",
        ),
        (
            "  - {metric: cpu_share, domain: g, window: [5ms, 5ms], at_least: 1%}\n",
            "window must be [from, to] with from < to",
        ),
        ("  - {metric: records, kind: blk.nope, at_least: 1}\n", "unknown record kind 'blk.nope'"),
        (
            "  - {metric: records, kind: blk.submit, where: {lba: 1}, at_least: 1}\n",
            "expect[0].where.lba: blk.submit has no field 'lba'",
        ),
        (
            "  - {metric: runstate_share, domain: g, state: napping, at_least: 1%}\n",
            "unknown runstate 'napping'",
        ),
        (
            (
                "  - {metric: cpu_share, domain: g, at_least: 1%}\n"
                "  - {metric: cpu_share, domain: g, at_most: 99%}\n"
            ),
            "<string>:10: expect[1].name: two checks are called 'cpu_share domain=g'",
        ),
    ],
)
def test_bad_checks_are_refused_with_field_and_line(body: str, expected: str) -> None:
    assert expected in _refusal(body)


def test_every_metric_declares_a_known_quantity() -> None:
    known = {v for k, v in vars(Quantity).items() if k.isupper()}
    assert {m.quantity for m in METRICS.values()} <= known
    assert all(m.required <= m.selectors for m in METRICS.values())


def test_a_negative_test_carries_its_expected_refusal() -> None:
    text = "name: neg\nduration: 1s\ndomains: [{name: g, memory: 96MiB, rma: 96MiB}]\n"
    with pytest.raises(ScenarioError) as err:
        parse_scenario(text + "expect: {refused: 'invalid RMA size'}\n")
    assert err.value.expected_refusal == "invalid RMA size"
    with pytest.raises(ScenarioError) as plain:
        parse_scenario(text)
    assert plain.value.expected_refusal is None


def test_a_valid_negative_test_keeps_its_refusal_and_has_no_checks() -> None:
    scenario = parse_scenario("name: neg\nduration: 1s\nexpect: {refused: x}\n")
    assert scenario.checks == ()


def test_xfail_and_skip_are_reasons() -> None:
    scenario = parse_scenario("name: x\nduration: 1s\nxfail: 'save is not modelled'\n")
    assert scenario.xfail == "save is not modelled" and scenario.skip is None
    with pytest.raises(ScenarioError, match="xfail is empty"):
        parse_scenario("name: x\nduration: 1s\nxfail: ''\n")
