"""Device models: a vbd takes its size from an existing image and never touches the file."""

from __future__ import annotations

from pathlib import Path

from framework.scenario import load_scenario, parse_scenario
from tests.scenario.texts import vbd_scenario

REPO = Path(__file__).resolve().parents[2]
MiB = 1 << 20


def test_an_existing_image_gives_the_vbd_its_size_and_is_left_untouched(tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    image.write_bytes(b"\x5a" * (3 * MiB))
    before = (image.stat().st_mtime_ns, image.read_bytes())
    (tmp_path / "s.yaml").write_text(vbd_scenario("image: disk.img, mode: r"), encoding="utf-8")
    vbd = load_scenario(tmp_path / "s.yaml").domains[0].vbds[0]
    assert (vbd.name, vbd.size, vbd.image, vbd.mode) == ("xvda", 3 * MiB, "disk.img", "r")
    # A size that agrees with the file is accepted too.
    (tmp_path / "t.yaml").write_text(vbd_scenario("image: disk.img, size: 3MiB"), encoding="utf-8")
    assert load_scenario(tmp_path / "t.yaml").domains[0].vbds[0].size == 3 * MiB
    assert (image.stat().st_mtime_ns, image.read_bytes()) == before
    # An absolute image path does not depend on where the scenario is.
    absolute = parse_scenario(vbd_scenario(f"image: '{image}'"), base_dir=REPO)
    assert absolute.domains[0].vbds[0].size == 3 * MiB
