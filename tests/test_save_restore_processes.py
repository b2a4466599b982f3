"""A save file written by one `xen970 run` restores in another (issue 16, item 4): the
guest of scenarios/save-restore.yaml goes on in a second process from
scenarios/save-restore-resume.yaml, a checkpoint's file too; a bad file, a missing image or
a key the file gives is refused in one line, exit 2, before the run directory exists."""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import analysis
from framework.save_file import DIGEST, SIGNATURE

ROOT = Path(__file__).resolve().parents[1]
FIRST = ROOT / "scenarios" / "save-restore.yaml"
RESUME = ROOT / "scenarios" / "save-restore-resume.yaml"


def xen970_run(scenario: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "framework", "run", str(scenario), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )


def resume_scenario(tmp: Path, save: Path, name: str = "resume") -> Path:
    """scenarios/save-restore-resume.yaml pointing at `save`."""
    text = RESUME.read_text()
    assert "restore: ../runs/save-restore/guest.save" in text
    path = tmp / f"{name}.yaml"
    path.write_text(text.replace("../runs/save-restore/guest.save", str(save)))
    return path


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("first") / "run"
    proc = xen970_run(FIRST, out)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def second(first: Path, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    tmp = tmp_path_factory.mktemp("second")
    out = tmp / "run"
    proc = xen970_run(resume_scenario(tmp, first / "guest.save"), out)
    assert proc.returncode == 0, proc.stderr
    return analysis.read_trace(out / "trace.parquet").xen.wide()


def test_the_saved_guest_goes_on_in_a_second_process(first: Path, second: pd.DataFrame) -> None:
    df = second
    guest = int(df[df.kind == "dom.create"].dom.max())
    assert (df.kind == "blk.verify").sum() == 0
    ticks = df[(df.text == "timer.tick") & (df.dom == guest)]
    assert len(ticks) >= 250  # 1 kHz for the ~300 ms of the second run
    assert ticks.t_ns.diff().dropna().max() < 2_000_000
    done = df[(df.kind == "blk.complete") & (df.dom == guest)]
    assert len(done) > 1000
    assert (done.req_id.value_counts() == 1).all(), "a request was answered twice"
    # The requests in flight at the first run's save are answered here, once each.
    one = analysis.read_trace(first / "trace.parquet").xen.wide()
    old = int(one[(one.kind == "dom.shutdown") & (one.text == "suspend")].dom.iloc[0])
    saved_at = one[(one.text == "xend.save")].t_ns.min()
    before = one[(one.dom == old) & (one.t_ns <= saved_at)]
    open_ids = set(before[before.kind == "blk.submit"].req_id) - set(
        before[before.kind == "blk.complete"].req_id
    )
    assert len(open_ids) == 8
    assert ((df.text == "blkfront.reissue") & (df.dom == guest)).sum() == 8
    assert open_ids <= set(done.req_id)


def test_a_checkpoint_file_restores_in_a_fresh_process(tmp_path: Path) -> None:
    text = FIRST.read_text().split("timeline:")[0].replace("name: save-restore", "name: ckpt")
    text += (
        "timeline:\n  - {at: 300ms, action: save, domain: guest, file: g.save, checkpoint: true}\n"
    )
    ckpt = tmp_path / "ckpt.yaml"
    ckpt.write_text(text)
    proc = xen970_run(ckpt, tmp_path / "one")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "two"
    proc = xen970_run(resume_scenario(tmp_path, tmp_path / "one" / "g.save"), out)
    assert proc.returncode == 0, proc.stderr
    df = analysis.read_trace(out / "trace.parquet").xen.wide()
    guest = int(df[df.kind == "dom.create"].dom.max())
    assert (df.kind == "blk.verify").sum() == 0
    assert ((df.text == "timer.tick") & (df.dom == guest)).sum() >= 250
    assert ((df.kind == "blk.complete") & (df.dom == guest)).sum() > 1000


def rewrite_config(good: bytes, change: dict[str, object]) -> bytes:
    """A save file whose configuration has `change`, its SHA-256 made right again."""
    (n,) = struct.unpack(">I", good[16:20])
    config = json.loads(good[20 : 20 + n])
    config.update(change)
    raw = json.dumps(config, sort_keys=True).encode()
    body = SIGNATURE + struct.pack(">I", len(raw)) + raw + good[20 + n : -DIGEST]
    return body + hashlib.sha256(body).digest()


def refused(tmp: Path, scenario: Path) -> str:
    out = tmp / "never"
    proc = xen970_run(scenario, out)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert not out.exists()
    return lines[0]


def test_a_bad_file_or_key_is_refused_before_the_run_directory(first: Path, tmp_path: Path) -> None:
    good = (first / "guest.save").read_bytes()
    cases = {
        "missing": (None, "cannot read the save file"),
        "truncated": (good[: len(good) // 2], "SHA-256"),
        "corrupt": (good[:9000] + bytes([good[9000] ^ 4]) + good[9001:], "SHA-256"),
        "noimage": (
            rewrite_config(
                good,
                {"devices": [{"kind": "vbd", "name": "xvda", "image": "/nonexistent.img"}]},
            ),
            "the saved devices[0]",
        ),
    }
    for name, (data, words) in cases.items():
        save = tmp_path / f"{name}.save"
        if data is not None:
            save.write_bytes(data)
        line = refused(tmp_path, resume_scenario(tmp_path, save, name))
        assert f"{name}.yaml:20: domains[0].restore: " in line, line
        assert words in line, line
    extra = resume_scenario(tmp_path, first / "guest.save", "extra")
    extra.write_text(extra.read_text().replace("{restore:", "{memory: 64MiB, restore:"))
    line = refused(tmp_path, extra)
    assert "extra.yaml:20: domains[0].memory: " in line and "only name and start" in line, line
