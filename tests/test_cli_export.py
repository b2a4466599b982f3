"""`xen970 export`: where it writes, that it never replaces a file unless --force, and that
bad input is one line and exit 2 (the formats themselves: tests/analysis/test_export_*)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from framework.cli import main
from tests.analysis.export_runs import write_tiny_run


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    run = tmp_path / "tiny"
    run.mkdir()
    write_tiny_run(run)
    return run


def _one_line_exit_2(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse's own refusals
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    ("fmt", "name"), [("perfetto", "trace.perfetto.json"), ("xentrace", "trace.xentrace")]
)
def test_export_writes_into_the_run_directory_by_default(
    tiny: Path, capsys: pytest.CaptureFixture[str], fmt: str, name: str
) -> None:
    assert main(["export", "--format", fmt, str(tiny)]) == 0
    out = capsys.readouterr().out
    assert (tiny / name).stat().st_size > 0
    assert f"wrote {tiny / name}" in out
    assert not list(tiny.glob(".*.partial"))


def test_the_xentrace_export_says_how_to_read_it(
    tiny: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tiny / "t.bin"
    args = ["export", "--format", "xentrace", str(tiny), "--out", str(out_file)]
    assert main([*args, "--timebase", "512MHz"]) == 0
    assert f"xenalyze --cpu-hz=512000000 --summary {out_file}" in capsys.readouterr().out


def test_an_existing_file_is_never_replaced_without_force(
    tiny: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = tiny / "notes.json"
    mine.write_text("precious", encoding="utf-8")
    err = _one_line_exit_2(capsys, "export", "--format", "perfetto", str(tiny), "--out", str(mine))
    assert "exists; pass --force" in err
    assert mine.read_text(encoding="utf-8") == "precious"
    # The default file too: a second export refuses, --force replaces.
    assert main(["export", "--format", "perfetto", str(tiny)]) == 0
    default = tiny / "trace.perfetto.json"
    default.write_text("edited", encoding="utf-8")
    _one_line_exit_2(capsys, "export", "--format", "perfetto", str(tiny))
    assert default.read_text(encoding="utf-8") == "edited"
    assert main(["export", "--format", "perfetto", str(tiny), "--force"]) == 0
    assert json.loads(default.read_text(encoding="utf-8"))["otherData"]["scenario"] == "tiny"


def test_force_never_replaces_the_runs_own_files(
    tiny: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tiny / "trace.parquet"
    before = trace.read_bytes()
    err = _one_line_exit_2(
        capsys, "export", "--format", "xentrace", str(tiny), "--out", str(trace), "--force"
    )
    assert "the run's own trace.parquet" in err
    assert trace.read_bytes() == before


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--format", "perfetto", "{missing}"], "no such run directory"),
        (["--format", "perfetto", "{empty}"], "not a run directory"),
        (["--format", "xentrace", "{garbled}"], "not a readable run"),
        (["--format", "svg", "{tiny}"], "invalid choice: 'svg'"),
        (["{tiny}"], "--format"),
        (["--format", "xentrace", "{tiny}", "--timebase", "fast"], "--timebase"),
        (["--format", "xentrace", "{tiny}", "--timebase", "0Hz"], "--timebase"),
        (["--format", "perfetto", "{tiny}", "--timebase", "1GHz"], "xentrace only"),
        (["--format", "perfetto", "{tiny}", "--out", "{tiny}"], "is a directory"),
        (["--format", "perfetto", "{tiny}", "--out", "{missing}/x.json"], "no directory"),
        (["--format", "perfetto", "{tiny}", "--out", ""], "empty"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tiny: Path, capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    root = tiny.parent
    (root / "empty").mkdir()
    garbled = root / "garbled"
    garbled.mkdir()
    (garbled / "run.json").write_text((tiny / "run.json").read_text(encoding="utf-8"))
    (garbled / "trace.parquet").write_bytes(b"PAR1 not really a parquet file PAR1")
    where = {"missing": root / "missing", "empty": root / "empty", "garbled": garbled, "tiny": tiny}
    filled = [a.format(**{k: str(v) for k, v in where.items()}) for a in argv]
    err = _one_line_exit_2(capsys, "export", *filled)
    assert says in err
    assert not list(root.rglob("*.partial")) and not list(root.rglob("trace.xentrace"))
