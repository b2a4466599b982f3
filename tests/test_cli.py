"""The xen970 command: exit codes, one-line errors, the run flow and its summary table."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest

from framework.cli import ERROR_LOG, main
from framework.errors import SimulationError
from framework.runinfo import RUN_MARKER, write_run_json
from framework.scenario import Scenario
from framework.trace import Recorder
from framework.trace.ids import K
from framework.xen.public.vcpu import RUNSTATE_NAMES, Runstate

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "scenarios" / "quickstart.yaml"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "framework.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )


def test_validate_ok_prints_domains_and_vcpus() -> None:
    done = _cli("validate", "scenarios/quickstart.yaml")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ok: quickstart: 4 domains, 5 vcpus\n"


def test_validate_bad_scenario_exits_2_with_one_line() -> None:
    done = _cli("validate", "tests/data/bad_rma_size.yaml")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr == (
        "tests/data/bad_rma_size.yaml:9: domains[0].rma: invalid RMA size 96MiB; "
        "the 970 allows 64MiB, 128MiB, 256MiB, 1GiB, 16GiB, 256GiB\n"
    )
    assert done.stdout == ""


def test_run_with_a_bad_scenario_exits_2_before_simulating() -> None:
    done = _cli("run", "tests/data/bad_yaml_syntax.yaml", "--quiet")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("tests/data/bad_yaml_syntax.yaml:5: YAML syntax error")


def test_missing_file_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "no/such.yaml"]) == 2
    assert (
        capsys.readouterr().err == "no/such.yaml: cannot read scenario: No such file or directory\n"
    )


class _FakeSimulation:
    """Stands in for framework.simulation: writes a tiny run the way the real one does."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[tuple[Scenario, Path, bool]] = []

    def run_scenario(
        self, scenario: Scenario, out_dir: Path, *, progress: object, record: bool
    ) -> types.SimpleNamespace:
        self.calls.append((scenario, Path(out_dir), record))
        if self.fail:
            raise SimulationError("cpu0: HTAB walk looped at 0x4000")
        assert callable(progress)
        progress(0, scenario.duration)
        rec = Recorder(enabled=record, enums={"runstate": RUNSTATE_NAMES})
        rec.emit(K.SCHED_RUNSTATE, 0, 0, 1, 0, int(Runstate.RUNNING), int(Runstate.RUNNABLE))
        progress(scenario.duration, scenario.duration)
        rec.write(out_dir)
        write_run_json(
            out_dir,
            scenario_name=scenario.name,
            scenario_sha256=scenario.sha256,
            seed=scenario.seed,
            sim_ns=scenario.duration,
            wall_s=0.5,
            counts=rec.counts(),
            domains={0: "Domain-0", **{i + 1: d.name for i, d in enumerate(scenario.domains)}},
        )
        return types.SimpleNamespace(
            out_dir=Path(out_dir),
            sim_ns=scenario.duration,
            wall_s=0.5,
            warnings=(),
            bugs=(),
            checks=(),
            outcome=None,
        )


@pytest.fixture
def fake_sim(monkeypatch: pytest.MonkeyPatch) -> _FakeSimulation:
    fake = _FakeSimulation()
    module = types.ModuleType("framework.simulation")
    module.run_scenario = fake.run_scenario  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "framework.simulation", module)
    return fake


def test_run_prints_the_summary_read_from_the_run_dir(
    fake_sim: _FakeSimulation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["run", str(QUICKSTART), "--out", str(out)]) == 0
    scenario, out_dir, record = fake_sim.calls[0]
    assert scenario.name == "quickstart" and out_dir == out and record is True
    text = capsys.readouterr().out
    assert "quickstart: simulated 2.000 s in 0.50 s wall (4x real time)" in text
    for name in ("Domain-0", "guest1", "guest2", "guest3"):
        assert name in text


def test_run_defaults_to_runs_slash_name(
    fake_sim: _FakeSimulation,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(QUICKSTART), "--quiet", "--no-trace"]) == 0
    _, out_dir, record = fake_sim.calls[0]
    assert out_dir == Path("runs") / "quickstart" and record is False
    assert (tmp_path / "runs" / "quickstart" / "run.json").is_file()
    assert capsys.readouterr().out == ""


def test_simulation_error_exits_1_with_one_line(
    fake_sim: _FakeSimulation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_sim.fail = True
    assert main(["run", str(QUICKSTART), "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err == "xen970: simulation failed: cpu0: HTAB walk looped at 0x4000\n"


def test_simulation_error_writes_its_traceback_to_the_run_dir(
    fake_sim: _FakeSimulation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_sim.fail = True
    out = tmp_path / "run"
    assert main(["run", str(QUICKSTART), "--out", str(out)]) == 1
    assert "Traceback" not in capsys.readouterr().err
    log = (out / ERROR_LOG).read_text()
    assert log.startswith("Traceback") and "HTAB walk looped" in log


def test_a_simulator_bug_exits_1_with_one_line_and_the_traceback_in_the_run_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def run_scenario(*_args: object, **_kwargs: object) -> None:
        {}["vcpu_info"]  # a bug in the simulator, not a project error

    module = types.ModuleType("framework.simulation")
    module.run_scenario = run_scenario  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "framework.simulation", module)
    out = tmp_path / "run"
    out.mkdir()
    (out / RUN_MARKER).write_text("")  # an earlier run's directory, which --force empties
    (out / ERROR_LOG).write_text("an earlier failure")
    assert main(["run", str(QUICKSTART), "--out", str(out), "--quiet", "--force"]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"xen970: simulation failed: KeyError: 'vcpu_info' (a bug; traceback in {out / ERROR_LOG})\n"
    )
    log = (out / ERROR_LOG).read_text()
    assert log.startswith("Traceback (most recent call last):")
    assert "in run_scenario" in log and log.rstrip().endswith("KeyError: 'vcpu_info'")


def test_a_run_that_succeeds_leaves_no_error_log(
    fake_sim: _FakeSimulation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / RUN_MARKER).write_text("")
    (out / ERROR_LOG).write_text("an earlier failure")
    assert main(["run", str(QUICKSTART), "--out", str(out), "--quiet", "--force"]) == 0
    assert not (out / ERROR_LOG).exists()


@pytest.mark.parametrize("out", ["", "/dev/null", "FILE", "/proc/xen970-cannot-create"])
def test_an_unusable_out_exits_2_with_one_line_before_simulating(
    out: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_sim: _FakeSimulation
) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text("name: s\nduration: 1ms\n")
    if out == "FILE":
        out = str(tmp_path / "a-file")
        Path(out).write_text("keep me\n")
    assert main(["run", "--quiet", "--out", out, str(scenario)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xen970: --out") and err.count("\n") == 1
    assert fake_sim.calls == []
    if out.endswith("a-file"):
        assert Path(out).read_text() == "keep me\n"


_CHECKED = """name: checked
duration: 20ms
domains:
  - name: g
    memory: 64MiB
    workloads: [{kind: timer, hz: 1000}]
expect:
  - name: tick period
    metric: timer_interval
    domain: g
    approx: 1ms
    rel: BOUND
"""


def test_a_failing_expectation_exits_1_naming_it_its_value_and_bound(tmp_path: Path) -> None:
    scenario = tmp_path / "checked.yaml"
    # A 1000 Hz timer ticks every 1 ms (closed form), so "at most 999us" fails.
    scenario.write_text(_CHECKED.replace("approx: 1ms\n    rel: BOUND", "at_most: 999us"))
    done = _cli("run", str(scenario), "--out", str(tmp_path / "run"), "--quiet")
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("xen970: expectation failed: tick period: measured 1ms")
    assert done.stderr.rstrip().endswith("expected ≤ 999us")
    assert done.stderr.count("\n") == 1

    scenario.write_text(_CHECKED.replace("rel: BOUND", "rel: 1%"))
    done = _cli("run", str(scenario), "--out", str(tmp_path / "run2"))
    assert done.returncode == 0, done.stderr
    assert "expectations: PASS" in done.stdout and "tick period" in done.stdout


def test_check_judges_a_finished_run_again(tmp_path: Path) -> None:
    scenario = tmp_path / "checked.yaml"
    scenario.write_text(_CHECKED.replace("rel: BOUND", "rel: 1%"))
    out = tmp_path / "run"
    assert _cli("run", str(scenario), "--out", str(out), "--quiet").returncode == 0
    done = _cli("check", str(out))
    assert done.returncode == 0 and "PASS" in done.stdout
    missing = _cli("check", str(tmp_path / "nothing"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1


def test_xfail_turns_a_failure_into_xfail_and_exit_0(tmp_path: Path) -> None:
    scenario = tmp_path / "checked.yaml"
    text = _CHECKED.replace("approx: 1ms\n    rel: BOUND", "at_most: 999us")
    scenario.write_text(text + "xfail: the tick cannot be early\n")
    done = _cli("run", str(scenario), "--out", str(tmp_path / "run"))
    assert done.returncode == 0, done.stderr
    assert "expectations: XFAIL" in done.stdout


@pytest.mark.parametrize(
    ("raised", "said"),
    [
        (OSError(28, "No space left on device", "runs/x/trace.parquet"), "No space left on device"),
        (MemoryError(), "out of memory"),
    ],
)
def test_what_the_host_refuses_during_a_run_is_one_line_and_exit_1(
    raised: BaseException,
    said: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def run_scenario(*_args: object, **_kwargs: object) -> None:
        raise raised

    module = types.ModuleType("framework.simulation")
    module.run_scenario = run_scenario  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "framework.simulation", module)
    out = tmp_path / "run"
    assert main(["run", str(QUICKSTART), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("xen970: simulation failed: the host refused: ") and said in err
    assert err.count("\n") == 1 and "a bug" not in err
    assert (out / ERROR_LOG).read_text().startswith("Traceback")


@pytest.mark.parametrize(
    ("raised", "code", "said"),
    [
        (OSError(5, "Input/output error"), 1, "xen970: the host refused: Input/output error"),
        (MemoryError(), 1, "xen970: the host refused: out of memory"),
        (RecursionError("maximum recursion depth exceeded"), 1, "xen970: recursion too deep"),
    ],
)
def test_errors_reaching_the_cli_are_one_line(
    raised: BaseException,
    code: int,
    said: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def load_scenario(_path: object) -> None:
        raise raised

    monkeypatch.setattr("framework.cli.load_scenario", load_scenario)
    assert main(["validate", str(QUICKSTART)]) == code
    err = capsys.readouterr().err
    assert err.startswith(said) and err.count("\n") == 1


def test_a_long_path_is_cut_to_one_line_of_300_characters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_sim: _FakeSimulation
) -> None:
    out = tmp_path / "file"
    out.write_text("keep me\n")
    long_out = str(out / ("d" * 250) / ("e" * 250) / "\n" / "run")
    assert main(["run", "--quiet", "--out", long_out, str(QUICKSTART)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xen970: --out") and err.count("\n") == 1 and len(err) == 301
    assert fake_sim.calls == [] and out.read_text() == "keep me\n"
