"""The hostile-guest campaign: `python -m fuzz.hostile_guest --calls 1000000 --from domU`.

Runs batches of random hypercalls and instruction words from a domU (or from dom0) on a
booted machine, checks each batch (`session.Session.run`: no exception out of Xen, no
hang, simulated time goes on, the ownership oracle holds) and reboots a fresh machine
every `--session-batches` batches, after a finding, or when the fuzzing domain has ended
itself (it crashed its own kernel).  Every batch's calls come from the seed: session `k`
draws from `Random(f"{seed}:{mode}:{k}")`, so `--seed S --first-session K` replays a
session exactly, and each finding also writes the session's calls to a JSON file that
`--replay FILE` runs on a fresh machine.  Exit code 1 if anything was found.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TextIO

from .call import Call
from .calls import generate
from .layout import ARG_SLOT, ARGS_GPA, MAX_BATCH
from .session import MODES, Finding, Session

#: Seconds between progress lines.
PROGRESS_S: Final = 10.0


@dataclass
class Campaign:
    """What a campaign did: calls, time, findings, and why fuzzing domains ended."""

    mode: str
    seed: int
    calls: int = 0
    words: int = 0
    batches: int = 0
    sessions: int = 0
    sim_ns: int = 0
    wall_s: float = 0.0
    findings: list[tuple[str, Finding]] = field(default_factory=list)
    restarts: Counter[str] = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        return self.calls / self.wall_s if self.wall_s > 0 else 0.0

    def summary(self) -> str:
        kinds = Counter(f.kind for _where, f in self.findings)
        found = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())) or "nothing"
        figures = (
            f"hostile guest from {self.mode}, seed {self.seed}: {self.calls} calls and "
            f"{self.words} instruction words in {self.batches} batches, {self.sessions} "
            f"sessions; {self.wall_s:.1f} s wall, {self.rate:.0f} calls/s, "
            f"{self.sim_ns / 1e9:.3f} s simulated"
        )
        lines = [figures, f"found: {found}"]
        for reason, n in self.restarts.most_common():
            lines.append(f"fuzzing domain ended itself {n}x: {reason}")
        return "\n".join(lines)


def batch_calls(session: Session, rng: random.Random, n: int, all_words: bool) -> list[Call]:
    """`n` calls drawn from `rng` for the session's machine as it is now."""
    world = session.world()
    return [
        generate(world, rng.getrandbits(64), ARGS_GPA + i * ARG_SLOT, all_words=all_words)
        for i in range(n)
    ]


def write_reproduction(
    out: Path, campaign: Campaign, session: int, batches: Sequence[Sequence[Call]], found: str
) -> Path:
    """The session's calls (every batch up to the failing one) as JSON for `--replay`."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"hostile-{campaign.mode}-seed{campaign.seed}-session{session}.json"
    doc: dict[str, Any] = {
        "mode": campaign.mode,
        "seed": campaign.seed,
        "session": session,
        "found": found,
        "batches": [[call.as_json() for call in batch] for batch in batches],
    }
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return path


def run_campaign(
    mode: str,
    calls: int,
    *,
    seed: int = 0,
    batch: int = 1000,
    session_batches: int = 100,
    first_session: int = 0,
    all_words: bool = False,
    out: Path = Path("fuzz-findings"),
    log: TextIO | None = None,
) -> Campaign:
    """Run `calls` hostile calls from `mode` ("domU" or "dom0"), reporting on `log`
    (standard output by default)."""
    log = log if log is not None else sys.stdout
    if not 1 <= batch <= MAX_BATCH:
        raise ValueError(f"--batch {batch}: 1..{MAX_BATCH}")
    campaign = Campaign(mode, seed)
    t0 = last = time.perf_counter()
    session_no = first_session
    while campaign.calls < calls:
        rng = random.Random(f"{seed}:{mode}:{session_no}")
        session = Session(mode)
        campaign.sessions += 1
        history: list[list[Call]] = []
        try:
            for _ in range(session_batches):
                if campaign.calls >= calls:
                    break
                drawn = batch_calls(session, rng, min(batch, calls - campaign.calls), all_words)
                history.append(drawn)
                result = session.run(drawn)
                campaign.batches += 1
                campaign.calls += result.calls
                campaign.words += sum(len(c.words) for c in drawn[: result.calls])
                campaign.sim_ns += result.sim_ns
                if result.findings:
                    where = f"session {session_no} batch {len(history) - 1}"
                    path = write_reproduction(
                        out, campaign, session_no, history, str(result.findings[0])
                    )
                    for finding in result.findings:
                        campaign.findings.append((where, finding))
                        print(f"FOUND ({where}) {finding}", file=log)
                    print(
                        f"reproduce: python -m fuzz.hostile_guest --replay {path}  (or --from "
                        f"{mode} --seed {seed} --first-session {session_no} --batch {batch} "
                        f"--calls {len(history) * batch})",
                        file=log,
                    )
                    break
                if result.lost is not None:
                    campaign.restarts[re.sub(r" at 0x[0-9a-f]+", "", result.lost)] += 1
                    break
                now = time.perf_counter()
                if now - last >= PROGRESS_S:
                    last = now
                    campaign.wall_s = now - t0
                    print(
                        f"{campaign.calls} calls, {campaign.rate:.0f}/s, "
                        f"{len(campaign.findings)} findings",
                        file=log,
                        flush=True,
                    )
        finally:
            session.close()
        session_no += 1
    campaign.wall_s = time.perf_counter() - t0
    return campaign


def replay(path: Path, log: TextIO | None = None) -> list[Finding]:
    """Run a reproduction file's batches on a fresh machine; the findings of the last."""
    log = log if log is not None else sys.stdout
    doc = json.loads(path.read_text(encoding="utf-8"))
    session = Session(doc["mode"])
    found: list[Finding] = []
    try:
        for i, raw in enumerate(doc["batches"]):
            result = session.run([Call.from_json(c) for c in raw])
            for finding in result.findings:
                print(f"FOUND (batch {i}) {finding}", file=log)
            found += result.findings
            if result.findings or result.lost:
                break
    finally:
        session.close()
    return found


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fuzz.hostile_guest",
        description="Random hypercalls and instruction words from a hostile guest, checked "
        "for exceptions out of Xen, hangs and isolation violations.",
    )
    parser.add_argument("--calls", type=int, default=100_000, help="calls to make in all")
    parser.add_argument("--from", dest="mode", choices=MODES, default="domU")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=1000, help="calls per batch (checked)")
    parser.add_argument(
        "--session-batches", type=int, default=100, help="batches before a fresh machine"
    )
    parser.add_argument("--first-session", type=int, default=0, help="session to start at")
    parser.add_argument(
        "--all-words",
        action="store_true",
        help="also execute words the emulated core does not model yet (FP/VMX/alignment)",
    )
    parser.add_argument("--out", type=Path, default=Path("fuzz-findings"))
    parser.add_argument("--replay", type=Path, help="run a reproduction file instead")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.replay is not None:
        return 1 if replay(args.replay) else 0
    campaign = run_campaign(
        args.mode,
        args.calls,
        seed=args.seed,
        batch=args.batch,
        session_batches=args.session_batches,
        first_session=args.first_session,
        all_words=args.all_words,
        out=args.out,
    )
    print(campaign.summary())
    return 1 if campaign.findings else 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["Campaign", "batch_calls", "main", "replay", "run_campaign", "write_reproduction"]
