"""Malformed input, as a careless user or an attacker gives it to the real `xen970`
command (issue 14): every kind gets exit code 2 (bad input) or 1 (the host refused), one
line on stderr of at most 300 characters and no traceback; nothing is created outside the
run directory (the working and temporary directories are listed before and after) and no
existing file changes (hashed before and after).

Each case runs `python -m framework.cli` as a subprocess in a directory of its own, with a
temporary directory of its own. Validation-only cases use `validate`; `run` is shown to
refuse the same input the same way, and to refuse what only a run can meet (the run
directory, memory the host cannot map, a disk that fills up). The cases run a few at a
time in one fixture, so the table costs a few seconds.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MiB = 1 << 20

#: A scenario of one small guest; `{devices}` and `{workloads}` fill its lists.
GUEST = """name: bad
duration: 10ms
domains:
  - name: g
    memory: 64MiB
    devices: [{devices}]
    workloads: [{workloads}]
"""


def guest(devices: str = "", workloads: str = "", **top: str) -> str:
    text = GUEST.format(devices=devices, workloads=workloads)
    return text + "".join(f"{key}: {value}\n" for key, value in top.items())


def _image(path: Path, size: int = MiB, mode: int = 0o644) -> None:
    with path.open("wb") as file:
        file.truncate(size)
    path.chmod(mode)


# -- the cases ---------------------------------------------------------------------------------
#: A case writes its files into the directory it is given and returns the command's
#: arguments; `run_dir` names where a run may write (only for cases that get that far).
Setup = Callable[[Path], list[str]]


@dataclass(frozen=True)
class Case:
    setup: Setup
    code: int
    says: str  # a piece of the one line on stderr
    run_dir: str | None = None
    no_override: bool = False  # without root's power to read and write anything
    limit_memory: bool = False  # the host maps at most 4 GiB for the process
    limit_files: bool = False  # the host lets the process write files of 4 KiB at most


def _scenario(text: str, command: str = "validate", *extra: str) -> Setup:
    def setup(work: Path) -> list[str]:
        (work / "s.yaml").write_text(text, encoding="utf-8")
        return [command, "s.yaml", *extra]

    return setup


def _bytes(raw: bytes) -> Setup:
    def setup(work: Path) -> list[str]:
        (work / "s.yaml").write_bytes(raw)
        return ["validate", "s.yaml"]

    return setup


def _with(
    prepare: Callable[[Path], None], text: str, command: str = "validate", *extra: str
) -> Setup:
    def setup(work: Path) -> list[str]:
        prepare(work)
        return _scenario(text, command, *extra)(work)

    return setup


def _alias_bomb() -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    return "name: bomb\nduration: 1s\n" + "\n".join(lines) + "\n"


def _two_images(work: Path) -> None:
    _image(work / "disk.img")
    os.link(work / "disk.img", work / "hard.img")
    (work / "alias.img").symlink_to("disk.img")


def _earlier_run(work: Path, *, user_file: bool = False, image: bool = False) -> None:
    run = work / "runs" / "bad"
    (run / "console").mkdir(parents=True)
    (run / ".xen970-run").write_text("")
    (run / "run.json").write_text('{"versions": {"xen970": "0"}}\n')
    (run / "trace.parquet").write_bytes(b"PAR1 of an earlier run")
    (run / "console" / "g.log").write_text("hello from g\n")
    if user_file:
        (run / "notes.txt").write_text("the user's own notes\n")
    if image:
        (run / "disks").mkdir()
        _image(run / "disks" / "g-xvda.img")


def _fifo(work: Path) -> None:
    os.mkfifo(work / "fifo.img")


def _loop(work: Path) -> None:
    (work / "a.img").symlink_to("b.img")
    (work / "b.img").symlink_to("a.img")


def _huge_image(work: Path) -> None:
    _image(work / "huge.img", 3 << 40)  # sparse: no block of it is written


VBD = "{{kind: vbd, name: xvda, {}}}"
ONE_IMAGE = _with(lambda w: _image(w / "disk.img"), "")
SHARED_RW = (
    "name: shared\nduration: 10ms\ndomains:\n"
    "  - {name: a, memory: 64MiB, devices: [{kind: vbd, name: xvda, image: disk.img}]}\n"
    "  - {name: b, memory: 64MiB, devices: [{kind: vbd, name: xvda, image: disk.img, mode: w}]}\n"
)

CASES: dict[str, Case] = {
    # -- the file itself ------------------------------------------------------------------
    "missing file": Case(lambda w: ["validate", "nothing.yaml"], 2, "cannot read scenario"),
    "directory as the file": Case(
        lambda w: ["validate", "."], 2, "cannot read scenario: Is a directory"
    ),
    "/dev/zero as the file": Case(
        lambda w: ["validate", "/dev/zero"], 2, "larger than 1048576 bytes"
    ),
    "not UTF-8": Case(_bytes(b"name: \xff\xfe\n"), 2, "the file is not UTF-8"),
    "YAML alias bomb": Case(_scenario(_alias_bomb()), 2, "anchors and aliases"),
    "5000-deep nesting": Case(
        _scenario("name: x\nduration: 1s\nmachine: " + "[" * 5000 + "]" * 5000 + "\n"),
        2,
        "nest deeper than 64 levels",
    ),
    "16 MiB name": Case(_scenario("name: " + "n" * (16 * MiB) + "\n"), 2, "larger than"),
    "1 MB name, not echoed whole": Case(
        _scenario("name: " + "n" * 1_000_000 + "\nduration: 1s\n"), 2, "(1000002 characters)"
    ),
    "a 5000-digit number": Case(
        _scenario("name: x\nduration: 1s\nseed: " + "9" * 5000 + "\n"), 2, "5000 characters long"
    ),
    # -- names and text the devtree, xenstore or a file name cannot carry ------------------
    "300-character scenario name (the default run directory)": Case(
        _scenario("name: " + "s" * 300 + "\nduration: 1ms\n", "run", "--quiet"),
        2,
        "scenario name 'sss",
    ),
    "300-character domain name (a console log's file name)": Case(
        _scenario(guest().replace("name: g", "name: " + "g" * 300)), 2, "must match"
    ),
    "non-ASCII domain name": Case(_scenario(guest().replace("name: g", "name: gé")), 2, "match"),
    "non-ASCII console text": Case(
        _scenario(guest(workloads='{kind: console, text: "caf\\u00e9"}')), 2, "'é' at character 3"
    ),
    "NUL in console text": Case(
        _scenario(guest(workloads='{kind: console, text: "a\\0b"}')), 2, "ASCII without NUL"
    ),
    "NUL in console input": Case(
        _scenario(guest(timeline='[{action: console_input, at: 1ms, domain: g, text: "ls\\0"}]')),
        2,
        "timeline[0].text",
    ),
    "NUL in an image path": Case(
        _scenario(guest(VBD.format('image: "a\\0b.img"'))), 2, "NUL character"
    ),
    "image path longer than xenstore carries": Case(
        _scenario(guest(VBD.format("image: " + "a/" * 2000 + "x.img"))), 2, "xenstore"
    ),
    # -- sizes and times the host, the devtree or the trace cannot hold ---------------------
    "2^80 bytes of machine memory": Case(
        _scenario(guest(machine=f"{{memory: {1 << 80}}}")), 2, "42-bit physical address"
    ),
    "1 TiB of machine memory": Case(
        _scenario(guest(machine="{memory: 1TiB}")), 2, "the simulator backs"
    ),
    "machine memory this host cannot map": Case(
        _scenario(guest(machine="{memory: 8GiB}"), "run", "--quiet"),
        1,
        "this host cannot map 8GiB",
        limit_memory=True,
    ),
    "10^30 s duration": Case(
        _scenario("name: x\nduration: 1000000000000000000000000000000s\n"), 2, "int64"
    ),
    "a guest starting after the run ends": Case(
        _scenario(guest().replace("memory: 64MiB", "memory: 64MiB\n    start: 1s")),
        2,
        "would never be created",
    ),
    "10^30 s between console lines": Case(
        _scenario(guest(workloads="{kind: console, every: 1000000000000000000000000000000s}")),
        2,
        "int64",
    ),
    "2^64 console lines (a devtree u64)": Case(
        _scenario(guest(workloads=f"{{kind: console, count: {1 << 64}}}")), 2, "count must be"
    ),
    "a 2 GHz timer (a period of 0 ns)": Case(
        _scenario(guest(workloads="{kind: timer, hz: 2000000000}")), 2, "hz must be"
    ),
    "a 5 GHz clock (a 32-bit devtree cell)": Case(
        _scenario(guest(machine="{clock: 5GHz}")), 2, "one 32-bit cell"
    ),
    "a 3 TiB vbd": Case(_scenario(guest(VBD.format("size: 3TiB"))), 2, "more than the 2TiB"),
    # -- vbd images that cannot be opened with the mode asked ------------------------------
    "missing image": Case(_scenario(guest(VBD.format("image: gone.img"))), 2, "does not exist"),
    "unreadable image": Case(
        _with(lambda w: _image(w / "secret.img", mode=0), guest(VBD.format("image: secret.img"))),
        2,
        "Permission denied",
        no_override=True,
    ),
    "read-only image with mode w": Case(
        _with(
            lambda w: _image(w / "ro.img", mode=0o444),
            guest(VBD.format("image: ro.img, mode: w")),
        ),
        2,
        "is read-only",
    ),
    "image in a directory the user cannot enter": Case(
        _with(
            lambda w: ((w / "locked").mkdir(mode=0), _image(w / "locked" / "x.img")),
            guest(VBD.format("image: locked/x.img")),
        ),
        2,
        "Permission denied",
        no_override=True,
    ),
    "image symlink loop": Case(
        _with(_loop, guest(VBD.format("image: a.img"))), 2, "Too many levels of symbolic links"
    ),
    "directory as image": Case(
        _with(lambda w: (w / "dir.img").mkdir(), guest(VBD.format("image: dir.img"))),
        2,
        "(a directory)",
    ),
    "FIFO as image (never opened)": Case(
        _with(_fifo, guest(VBD.format("image: fifo.img"))), 2, "(a FIFO)"
    ),
    "/dev/zero as image": Case(
        _scenario(guest(VBD.format("image: /dev/zero"))), 2, "(a character device)"
    ),
    "3 TiB image": Case(
        _with(_huge_image, guest(VBD.format("image: huge.img"))), 2, "more than the 2TiB"
    ),
    "image size that disagrees": Case(
        _with(lambda w: _image(w / "disk.img"), guest(VBD.format("image: disk.img, size: 2MiB"))),
        2,
        "differs from image",
    ),
    # -- two vbds on one writable image ----------------------------------------------------
    "two guests on one writable image": Case(
        _with(lambda w: _image(w / "disk.img"), SHARED_RW), 2, "share an image only when both"
    ),
    "two vbds of a guest on one image by hard link": Case(
        _with(
            _two_images,
            guest(
                VBD.format("image: disk.img, mode: w")
                + ", {kind: vbd, name: xvdb, image: hard.img}"
            ),
        ),
        2,
        "is the same file as domains[0].devices[0]",
    ),
    "two vbds on one image by symlink": Case(
        _with(
            _two_images,
            guest(
                VBD.format("image: alias.img")
                + ", {kind: vbd, name: xvdb, image: disk.img, mode: w}"
            ),
        ),
        2,
        "share an image only when both are `mode: r`",
    ),
    # -- the run directory -----------------------------------------------------------------
    "--out ''": Case(_scenario(guest(), "run", "--out", ""), 2, "the run directory is empty"),
    "--out naming a file": Case(
        _with(lambda w: (w / "file").write_text("keep\n"), guest(), "run", "--out", "file"),
        2,
        "exists and is not a directory",
    ),
    "--out /dev/null": Case(
        _scenario(guest(), "run", "--out", "/dev/null"), 2, "exists and is not a directory"
    ),
    "--out an unwritable place": Case(
        _scenario(guest(), "run", "--out", "/proc/xen970-run"), 2, "cannot create"
    ),
    "--out below a file": Case(
        _with(lambda w: (w / "file").write_text("keep\n"), guest(), "run", "--out", "file/run"),
        2,
        "cannot create: Not a directory",
    ),
    "--out in a directory the user cannot write": Case(
        _with(lambda w: (w / "ro").mkdir(mode=0o555), guest(), "run", "--out", "ro/a/b"),
        2,
        "cannot create: Permission denied",
        no_override=True,
    ),
    "an earlier run's directory (default runs/<name>)": Case(
        _with(_earlier_run, guest(), "run", "--quiet"), 2, "pass --force"
    ),
    "--force on a directory xen970 did not make": Case(
        _with(
            lambda w: ((w / "mine").mkdir(), (w / "mine" / "notes.txt").write_text("mine")),
            guest(),
            "run",
            "--out",
            "mine",
            "--force",
        ),
        2,
        "empties only an earlier xen970 run's directory",
    ),
    "--force on an earlier run holding a file of the user's": Case(
        _with(lambda w: _earlier_run(w, user_file=True), guest(), "run", "--force"),
        2,
        "'notes.txt' is not a file a run writes; nothing was removed",
    ),
    "--force on an earlier run holding the scenario's image": Case(
        _with(
            lambda w: _earlier_run(w, image=True),
            guest(VBD.format("image: runs/bad/disks/g-xvda.img")),
            "run",
            "--force",
        ),
        2,
        "is an image the scenario uses; nothing was removed",
    ),
    "a disk that fills up during the run": Case(
        _scenario(guest(), "run", "--quiet", "--out", "out"),
        1,
        "the host refused: Error writing bytes to file. Detail: [errno 27] File too large",
        run_dir="out",
        limit_files=True,
    ),
    # -- the command line --------------------------------------------------------------------
    "unknown option": Case(lambda w: ["run", "s.yaml", "--outt", "x"], 2, "unrecognized"),
    "no scenario": Case(lambda w: ["run"], 2, "arguments are required: scenario"),
}

#: Validation cases that `run` must refuse exactly as `validate` does, creating nothing.
SAME_FOR_RUN = (
    "YAML alias bomb",
    "non-ASCII console text",
    "image symlink loop",
    "two guests on one writable image",
)


# -- running them --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str
    work_before: dict[str, object]
    work_after: dict[str, object]
    tmp_after: dict[str, object]


def _listing(top: Path) -> dict[str, object]:
    """Every entry under `top` (symlinks not followed, FIFOs never opened) with what it is:
    a regular file's size and hash (size and mtime beyond 64 MiB, for sparse images)."""
    found: dict[str, object] = {}
    for root, dirs, files in os.walk(top):
        for name in dirs + files:
            path = Path(root) / name
            st = path.lstat()
            if stat.S_ISREG(st.st_mode) and st.st_size <= 64 * MiB:
                with path.open("rb") as file:
                    found[str(path.relative_to(top))] = hashlib.file_digest(
                        file, "sha256"
                    ).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                found[str(path.relative_to(top))] = f"-> {os.readlink(path)}"
            else:
                found[str(path.relative_to(top))] = (
                    stat.S_IFMT(st.st_mode),
                    st.st_size,
                    st.st_mtime_ns,
                )
    return found


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


#: CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (linux/capability.h): what lets root open any
#: file whatever its mode bits say.
_DAC_CAPS = (1 << 1) | (1 << 2)
_PR_CAPBSET_DROP = 24


def _drop_dac_override() -> None:
    """In the child, before exec: give up root's DAC override for good (bounding set,
    then the sets capset holds), so mode bits bind the command as they bind any user."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (_CapData * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    for field in ("effective", "permitted", "inheritable"):
        setattr(data[0], field, getattr(data[0], field) & ~_DAC_CAPS)
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def _limits(case: Case) -> Callable[[], None] | None:
    def apply() -> None:
        if case.no_override and os.geteuid() == 0:
            _drop_dac_override()
        if case.limit_memory:
            resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
        if case.limit_files:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG, as a full disk's ENOSPC
            resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    return apply if case.limit_memory or case.limit_files or case.no_override else None


def _run_case(base: Path, name: str, case: Case, command: str | None = None) -> Outcome:
    work = Path(tempfile.mkdtemp(dir=base))
    tmp = Path(tempfile.mkdtemp(dir=base))
    args = case.setup(work)
    if command is not None:
        args = [command, *args[1:]]
    before = _listing(work)
    done = subprocess.run(
        [sys.executable, "-m", "framework.cli", *args],
        cwd=work,
        env={**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmp)},
        capture_output=True,
        text=True,
        errors="backslashreplace",
        timeout=120,
        check=False,
        preexec_fn=_limits(case),  # a resource limit or capability drop for the child alone
    )
    return Outcome(done.returncode, done.stdout, done.stderr, before, _listing(work), _listing(tmp))


@pytest.fixture(scope="module")
def outcomes() -> Iterator[dict[str, Outcome]]:
    base = Path(tempfile.mkdtemp(prefix="xen970-bad-inputs-"))
    jobs = [(name, case, None) for name, case in CASES.items()]
    jobs += [(f"run: {name}", CASES[name], "run") for name in SAME_FOR_RUN]
    try:
        with ThreadPoolExecutor(max_workers=(os.cpu_count() or 1) + 2) as pool:
            futures = {name: pool.submit(_run_case, base, name, c, cmd) for name, c, cmd in jobs}
            yield {name: future.result() for name, future in futures.items()}
    finally:
        for root, dirs, _ in os.walk(base):
            for name in dirs:
                Path(root, name).chmod(0o755)  # the cases' locked directories
        shutil.rmtree(base, ignore_errors=True)


def _check(outcome: Outcome, case: Case) -> None:
    assert outcome.code == case.code, outcome.stderr
    assert outcome.stderr.endswith("\n") and outcome.stderr.count("\n") == 1, outcome.stderr
    assert len(outcome.stderr) <= 301 and "Traceback" not in outcome.stderr
    assert case.says in outcome.stderr
    assert outcome.tmp_after == {}, "nothing goes to the temporary directory"
    after = outcome.work_after
    if case.run_dir is not None:
        inside = case.run_dir + os.sep
        after = {k: v for k, v in after.items() if k != case.run_dir and not k.startswith(inside)}
    assert after == outcome.work_before, "nothing outside the run directory was made or changed"


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gets_one_line_and_changes_nothing(
    name: str, outcomes: dict[str, Outcome]
) -> None:
    _check(outcomes[name], CASES[name])


@pytest.mark.parametrize("name", SAME_FOR_RUN)
def test_run_refuses_bad_input_as_validate_does(name: str, outcomes: dict[str, Outcome]) -> None:
    _check(outcomes[f"run: {name}"], CASES[name])
    assert outcomes[f"run: {name}"].stderr == outcomes[name].stderr


# -- what is accepted, and what a run does with the user's files ------------------------------
GOOD = """name: good
duration: 20ms
domains:
  - name: a
    memory: 64MiB
    devices: [{kind: vbd, name: xvda, image: shared.img}, {kind: vbd, name: xvdb, image: mine.img, mode: w}]
    workloads:
      - {kind: blockio, device: xvda, read_percent: 100, requests: 20, verify: false}
      - {kind: blockio, device: xvdb, read_percent: 0, requests: 20}
  - name: b
    memory: 64MiB
    devices: [{kind: vbd, name: xvda, image: ./shared.img}]
    workloads: [{kind: blockio, device: xvda, read_percent: 100, requests: 20, verify: false}]
"""


def test_a_run_reads_shared_read_only_images_and_writes_only_a_mode_w_one(tmp_path: Path) -> None:
    """Read-only sharing is allowed; an image is written only with `mode: w` (its promise),
    and the run creates nothing but its directory."""
    work, tmp = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    tmp.mkdir()
    (work / "shared.img").write_bytes(b"\x5a" * MiB)
    (work / "mine.img").write_bytes(b"\x00" * MiB)
    (work / "s.yaml").write_text(GOOD)
    before = _listing(work)
    done = subprocess.run(
        [sys.executable, "-m", "framework.cli", "run", "s.yaml", "--quiet"],
        cwd=work,
        env={**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmp)},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert (done.returncode, done.stderr) == (0, "")
    after = _listing(work)
    assert sorted(set(after) - set(before)) == sorted(
        k for k in after if k == "runs" or k.startswith("runs/")
    )
    assert (work / "runs" / "good" / "run.json").is_file() and _listing(tmp) == {}
    assert after["shared.img"] == before["shared.img"] and after["s.yaml"] == before["s.yaml"]
    assert after["mine.img"] != before["mine.img"]  # mode w: the guest's writes are in it
