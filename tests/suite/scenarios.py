"""A small suite of scenario tests, one of each verdict, written into a directory."""

from __future__ import annotations

from pathlib import Path

TICK = """# A 1 kHz timer ticks every 1 ms (closed form).
name: tick
duration: 20ms
domains:
  - name: g
    memory: 64MiB
    workloads: [{kind: timer, hz: 1000}]
expect:
  - {metric: timer_interval, domain: g, approx: 1ms, rel: 1%}
  - {metric: fingerprint, kinds: [dom.create, timer.set], equals: 'FP'}
"""
LATE = TICK.replace("approx: 1ms, rel: 1%", "at_most: 999us").replace("name: tick", "name: late")
REFUSED = """name: badrma
duration: 20ms
domains: [{name: g, memory: 96MiB, rma: 96MiB}]
expect: {refused: 'invalid RMA size'}
"""
ACCEPTED = """name: fine
duration: 20ms
expect: {refused: 'anything'}
"""
XFAIL = """name: xf
duration: 20ms
domains: [{name: g, memory: 64MiB}]
xfail: pause is not modelled
expect:
  - {metric: final_state, domain: g, equals: paused}
"""
SKIP = "name: sk\nduration: 20ms\nskip: not today\n"
NOT_A_TEST = "name: plain\nduration: 20ms\n"


def write_suite(root: Path, fingerprint: str = "0") -> dict[str, str]:
    """The files, by test id, and the verdict each must get."""
    files = {
        "timer/01_tick_pos": (
            TICK.replace("FP", fingerprint),
            "PASS" if fingerprint != "0" else "FAIL",
        ),
        "timer/02_late_neg": (LATE.replace("FP", fingerprint), "FAIL"),
        "create/01_badrma_neg": (REFUSED, "PASS"),
        "create/02_fine_neg": (ACCEPTED, "FAIL"),
        "create/03_pause_pos": (XFAIL, "XFAIL"),
        "create/04_skip_pos": (SKIP, "SKIP"),
    }
    for test_id, (text, _) in files.items():
        path = root / f"{test_id}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "create" / "plain.yaml").write_text(NOT_A_TEST)
    return {test_id: verdict for test_id, (_, verdict) in files.items()}
