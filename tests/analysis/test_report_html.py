"""`xen970 report` and analysis.report_html: the page's content, bad input, and the page
as a real headless Chromium renders it (no console errors, every image loaded, nothing
fetched; screenshots in the test's tmp_path)."""

from __future__ import annotations

import base64
import re
import shutil
from pathlib import Path

import pytest

from analysis import load_run
from analysis.report_html import render_report, write_report
from framework.cli import main
from tests.analysis.browser import chromium, view
from tests.analysis.synthetic_runs import run_a

SCENARIO = """\
name: report-demo
seed: 1
duration: 60ms
machine: {cpus: 2}
dom0: {memory: 256MiB}
domains:
  - name: guest1
    memory: 64MiB
    workloads:
      - {kind: compute, vcpu: 0}
      - {kind: timer, hz: 100, vcpu: 0}
  - name: guest2
    memory: 64MiB
    workloads:
      - {kind: pingpong, peer: guest3, role: ping, rounds: 100}
  - name: guest3
    memory: 64MiB
    workloads:
      - {kind: pingpong, peer: guest2, role: pong}
expect:
  - {name: guest1 computes, metric: cpu_share, domain: guest1, window: [10ms, 60ms], approx: 100%, abs: 5%}
  - {name: fast round trips, metric: event_rtt, domain: guest2, at_most: 1ms}
"""
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of a small scenario with expectations, made by `xen970 run`."""
    base = tmp_path_factory.mktemp("report")
    (base / "demo.yaml").write_text(SCENARIO, encoding="utf-8")
    assert main(["run", str(base / "demo.yaml"), "--out", str(base / "run"), "--quiet"]) == 0
    return base / "run"


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def test_report_command_writes_a_self_contained_page(real_run: Path, capsys) -> None:
    assert main(["report", str(real_run)]) == 0
    out = real_run / "report.html"
    assert capsys.readouterr().out.strip() == f"report: {out}"
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page and "http://" not in page and "https://" not in page
    images = _images(page)
    assert len(images) == 4  # gantt, cpu share, runstate, latency CDFs (no I/O here)
    assert all(img.startswith(PNG_MAGIC) for img in images)
    for domain in ("Domain-0", "guest1", "guest2", "guest3"):
        assert f"<td>{domain}</td>" in page
    assert '<td class="PASS">PASS</td>' in page
    assert "guest1 computes" in page and "fast round trips" in page
    assert "No virtual I/O in this run." in page


def test_report_out_option(real_run: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.html"
    assert main(["report", str(real_run), "--out", str(target)]) == 0
    assert target.read_text(encoding="utf-8").count("<img ") == 4


def test_report_of_what_is_not_a_run_is_one_line_exit_2(tmp_path: Path, capsys) -> None:
    assert main(["report", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a run directory (no trace.parquet)" in err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "trace.parquet").write_bytes(b"not parquet")
    (tmp_path / "bad" / "run.json").write_text("{}", encoding="utf-8")
    assert main(["report", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a run xen970 can read" in err
    assert "Traceback" not in err


def test_io_table_and_device_names(tmp_path: Path) -> None:
    run = run_a(tmp_path / "a")
    page = render_report(run, title="synthetic <A>", device_name=lambda dev: f"disk#{dev}")
    assert "<h1>synthetic &lt;A&gt;</h1>" in page
    assert "<td>disk#51712</td>" in page and "<td>vif/0</td>" in page
    assert "The scenario has no expectations" in page
    assert len(_images(page)) == 5  # with the I/O throughput plot


def test_report_renders_in_headless_chromium(real_run: Path, tmp_path: Path) -> None:
    pages = {
        "real": write_report(load_run(real_run), tmp_path / "real.html"),
        "synthetic": write_report(run_a(tmp_path / "a"), tmp_path / "synthetic.html"),
    }
    with chromium(tmp_path / "profile") as driver:
        for name, page in pages.items():
            shot = tmp_path / f"{name}.png"
            seen = view(driver, page, shot)
            assert seen.ready_state == "complete"
            assert seen.console_errors == [], name
            assert seen.fetched == [], name
            assert len(seen.images) == page.read_text().count("<img "), name
            assert all(done and width > 0 for done, width in seen.images), seen.images
            assert "Summary" in seen.body_text and "Expectations" in seen.body_text
            assert shot.read_bytes().startswith(PNG_MAGIC) and shot.stat().st_size > 20_000
        # The checks can fail: a page with a broken image and a script error.
        broken = tmp_path / "broken.html"
        text = pages["real"].read_text().replace("base64,iVBOR", "base64,AAAA", 1)
        broken.write_text(text.replace("</body>", "<script>undefinedCall()</script></body>"))
        seen = view(driver, broken, tmp_path / "broken.png")
        assert min(w for _, w in seen.images) == 0
        assert any("undefinedCall" in e for e in seen.console_errors)


def test_run_force_reuses_a_directory_holding_its_report(real_run: Path, tmp_path: Path) -> None:
    """report.html is a file of the run directory: `run --force` may empty it with the rest."""
    copy = tmp_path / "run"
    shutil.copytree(real_run, copy)
    assert main(["report", str(copy)]) == 0
    scenario = str(real_run.parent / "demo.yaml")
    assert main(["run", scenario, "--out", str(copy), "--force", "--quiet"]) == 0
    assert not (copy / "report.html").exists()
    assert (copy / "trace.parquet").is_file()
