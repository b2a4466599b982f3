"""No silent failures (issue 13): every workload kind works on any VCPU and in any
combination the schema accepts, each timer ticks at its own rate, a workload that never
moved is reported, and a run directory never mixes two runs (issue 14: it holds one run).

Each test here failed on the code before issue 13 (checked by running it there)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest

import analysis
from framework.cli import main
from framework.scenario import parse_scenario
from framework.simulation import run_scenario
from framework.trace.recorder import Recorder

#: Every workload kind on VCPU 1, and combinations: two timers at different rates on one
#: domain, two consoles on one VCPU, compute + timer + netstream on one VCPU.  The
#: receiver d comes first, so its vif is on the bridge before c streams.
ON_VCPU_1 = """
name: on-vcpu-1
seed: 1
duration: 300ms
machine: {cpus: 2, memory: 1GiB}
dom0: {memory: 256MiB}
domains:
  - name: a
    memory: 64MiB
    vcpus: 2
    workloads:
      - {kind: pingpong, peer: b, role: ping, rounds: 100, vcpu: 1}
      - {kind: timer, hz: 100, vcpu: 1}
      - {kind: timer, hz: 1000, vcpu: 0}
  - name: b
    memory: 64MiB
    vcpus: 2
    workloads:
      - {kind: pingpong, peer: a, role: pong, vcpu: 1}
      - {kind: console, vcpu: 1, every: 10ms, count: 5}
      - {kind: console, vcpu: 1, every: 20ms, count: 3, text: second}
  - name: d
    memory: 64MiB
    devices:
      - {kind: vif}
  - name: c
    memory: 64MiB
    vcpus: 2
    start: 2ms  # once d's vif is on the bridge (a bridge drops frames it has no port for)
    devices:
      - {kind: vbd, name: xvda, size: 16MiB}
      - {kind: vif}
    workloads:
      - {kind: blockio, device: xvda, vcpu: 1, requests: 50}
      - {kind: netstream, peer: d, vcpu: 1, messages: 5}
      - {kind: compute, vcpu: 1}
      - {kind: timer, vcpu: 1, hz: 250}
"""

#: Workloads that cannot move: a guest created 5 ms before the end (its 10 Hz timer and
#: 50 ms console never fire) and I/O behind a disk and a link 5 s away.
STALLED = """
name: stalled
seed: 1
duration: 100ms
machine:
  cpus: 2
  memory: 1GiB
  disk: {latency: 5s}
  link: {latency: 5s}
domains:
  - name: late
    memory: 64MiB
    start: 95ms
    workloads:
      - {kind: timer, hz: 10}
      - {kind: console, every: 50ms}
  - name: c
    memory: 64MiB
    vcpus: 2
    devices:
      - {kind: vbd, name: xvda, size: 16MiB}
      - {kind: vif}
    workloads:
      - {kind: blockio, device: xvda}
      - {kind: netstream, peer: d, vcpu: 1}
      - {kind: compute, vcpu: 1}
  - name: d
    memory: 64MiB
    devices:
      - {kind: vif}
"""


def _marks(run: analysis.Run) -> pd.Series:
    t = run.trace
    marks = t[t.kind == "guest.mark"]
    return marks.groupby(["dom", "vcpu", "text"]).size()


def test_a_pong_bound_to_vcpu_1_answers(tmp_path: Path) -> None:
    """The issue's example: the answering side on VCPU 1 never ran and the run exited 0."""
    text = """
name: pong-on-vcpu-1
seed: 1
duration: 100ms
domains:
  - name: a
    memory: 64MiB
    workloads: [{kind: pingpong, peer: b, role: ping, rounds: 50}]
  - name: b
    memory: 64MiB
    vcpus: 2
    workloads: [{kind: pingpong, peer: a, role: pong, vcpu: 1}]
"""
    run_scenario(parse_scenario(text, "pong.yaml"), tmp_path)
    run = analysis.load_run(tmp_path)
    t = run.trace
    rounds = t[(t.kind == "guest.mark") & (t.text == "pingpong.round")]
    assert len(rounds) == 50
    b = {name: dom for dom, name in run.domains.items()}["b"]
    handled = t[(t.kind == "evtchn.handled") & (t.dom == b)]
    # The answers come from VCPU 1 (one may go from VCPU 0 while VCPU 1 is still coming
    # up: the runtime's upcall serves every pending port of the words it scans).
    assert (handled.vcpu == 1).sum() >= 45
    assert run.meta["stalled_workloads"] == []


def test_every_workload_kind_works_on_vcpu_1_and_in_combination(tmp_path: Path) -> None:
    run_scenario(parse_scenario(ON_VCPU_1, "on-vcpu-1.yaml"), tmp_path)
    run = analysis.load_run(tmp_path)
    dom = {name: d for d, name in run.domains.items()}
    a, b, c, d = dom["a"], dom["b"], dom["c"], dom["d"]
    marks = _marks(run)
    rounds = run.trace[(run.trace.kind == "guest.mark") & (run.trace.text == "pingpong.round")]
    assert len(rounds) == 100 and set(rounds.dom) == {a}
    # Two timers of one domain keep their own rates (the second's hz was ignored: both
    # ticked at 100 Hz); a timer on a compute VCPU ticks too. 300 ms of run, less boot.
    assert 290 <= marks[(a, 0, "timer.tick")] <= 300
    assert 28 <= marks[(a, 1, "timer.tick")] <= 30
    assert 72 <= marks[(c, 1, "timer.tick")] <= 75
    assert marks[(b, 1, "console.line")] == 5 + 3
    assert marks[(c, 1, "blockio.done")] == 1
    assert marks[(d, 0, "netstream.message")] == 5
    cpu = run.trace.xen.per_domain_cpu_time(run.sim_ns)
    assert cpu[c] >= 0.95 * run.sim_ns  # the compute loop had VCPU 1 to itself
    assert run.meta["stalled_workloads"] == [] and run.meta["warnings"] == []


def test_workloads_that_never_moved_are_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "stalled.yaml"
    path.write_text(STALLED)
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out)]) == 0
    shown = capsys.readouterr().out
    expected = [
        ("late", "timer", 0, 0, "no tick arrived"),
        ("late", "console", 0, 1, "no line was written"),
        ("c", "blockio", 0, 0, "no request completed"),
        ("c", "netstream", 1, 1, "d received no whole message"),
    ]
    stalled = analysis.stalled_workloads(analysis.load_run(out))
    assert list(stalled.itertuples(index=False, name=None)) == expected
    meta = json.loads((out / "run.json").read_text())
    assert meta["warnings"][3] == (
        "c: netstream workload (workloads[1]) on VCPU 1 made no progress: "
        "d received no whole message"
    )
    for domain, kind, vcpu, j, why in expected:
        line = f"{domain}: {kind} workload (workloads[{j}]) on VCPU {vcpu} made no progress"
        assert f"warning: {line}: {why}" in " ".join(shown.split())
    # The compute loop ran: it is not reported.
    assert "compute" not in set(stalled.kind)


def test_quiet_runs_still_warn_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "stalled.yaml"
    path.write_text(STALLED.replace("duration: 100ms", "duration: 30ms").replace("95ms", "25ms"))
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "--quiet", "--no-trace"]) == 0
    err = capsys.readouterr().err
    assert err.count("xen970: warning: ") == 4, err


SMALL = """
name: small
seed: 1
duration: 20ms
domains:
  - name: g
    memory: 64MiB
    devices:
      - {kind: vbd, name: xvda, size: 1MiB}
      - {kind: vbd, name: xvdb, image: IMAGE}
    workloads:
      - {kind: console, every: 5ms, count: 2}
"""


def test_a_run_directory_never_mixes_two_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 14: a run directory holds one run. An earlier run's is refused unless --force,
    which empties it; --force never removes what a run did not write."""
    user_image = tmp_path / "keep-xvdb.img"
    user_image.write_bytes(b"\x5a" * (1 << 20))
    path = tmp_path / "small.yaml"
    path.write_text(SMALL.replace("IMAGE", str(user_image)))
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    assert (out / "trace.parquet").is_file()
    created = out / "disks" / "g-xvda.img"
    with created.open("r+b") as f:
        f.write(b"old run's data")
    (out / "error.log").write_text("Traceback of an older failed run\n")
    listing = sorted(p.relative_to(out) for p in out.rglob("*"))
    capsys.readouterr()
    # Without --force the earlier run stays as it was, and the user is told why.
    assert main(["run", str(path), "--out", str(out), "--quiet", "--no-trace"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"xen970: --out {out}: holds ") and err.count("\n") == 1
    assert "--force" in err and sorted(p.relative_to(out) for p in out.rglob("*")) == listing
    assert main(["run", str(path), "--out", str(out), "--quiet", "--no-trace", "--force"]) == 0
    # The new run.json stands alone: no older trace, logs, disks or error log beside it.
    assert not (out / "trace.parquet").exists()
    assert not (out / "error.log").exists()
    assert sorted(p.name for p in (out / "console").iterdir()) == ["Domain-0.log", "g.log"]
    assert created.read_bytes()[:14] == b"\0" * 14  # a fresh disk, not the last run's
    assert user_image.read_bytes() == b"\x5a" * (1 << 20)  # mode r: never written


@pytest.mark.parametrize(
    ("what", "refused"),
    [
        ("a directory xen970 did not make", "--force empties only an earlier xen970 run's"),
        ("an earlier run's directory with a file of the user's", "'notes.txt' is not a file"),
        ("an earlier run's directory with a log of the user's", "console/README is not a"),
        ("an earlier run's directory holding an image the scenario uses", "an image the"),
    ],
)
def test_force_never_removes_what_a_run_did_not_write(
    what: str, refused: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    (out / "console").mkdir(parents=True)
    (out / "disks").mkdir()
    image = tmp_path / "keep-xvdb.img"
    if what.startswith("an earlier run's"):
        (out / ".xen970-run").write_text("")
        (out / "run.json").write_text("{}")
    if "file of the user's" in what or "did not make" in what:
        (out / "notes.txt").write_text("mine")
    if "log of the user's" in what:
        (out / "console" / "README").write_text("mine")
    if "image the scenario uses" in what:
        image = out / "disks" / "g-xvdb.img"  # named like a disk a run makes
    image.write_bytes(b"\x5a" * (1 << 20))
    path = tmp_path / "small.yaml"
    path.write_text(SMALL.replace("IMAGE", str(image)))
    listing = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert main(["run", str(path), "--out", str(out), "--quiet", "--force"]) == 2, what
    err = capsys.readouterr().err
    assert refused in err and "nothing was removed" in err and err.count("\n") == 1, err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == listing


def test_wall_time_includes_writing_the_trace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write = Recorder.write

    def slow_write(self: Recorder, directory: str | Path) -> Path:
        time.sleep(0.5)  # a large trace takes this long to compress and write
        return write(self, directory)

    monkeypatch.setattr(Recorder, "write", slow_write)
    scenario = parse_scenario("name: w\nduration: 1ms\n", "w.yaml")
    result = run_scenario(scenario, tmp_path)
    meta = json.loads((tmp_path / "run.json").read_text())
    assert result.wall_s >= 0.5 and meta["wall_s"] == result.wall_s
