"""Compute-bound guest: emulated instructions per wall second, relative to raw Unicorn.

Why a ratio: it isolates what the simulator adds on top of Unicorn (slices, the C block
hook that counts instructions, scheduling, SimPy) from how fast this machine is today.
Target: >= 0.5 of raw Unicorn running the same loop bounded by `emu_start(count=N)`.

The guest's instruction count is its VCPU's CPU time times the clock: the cost model
charges one cycle per emulated instruction (framework/xen/costs.py), so this is exact
apart from the few Xen cycles (ticks, context switches) charged to the VCPU.

Raw Unicorn needs one deviation from a bare `Uc`: the default PPC64 model's hash MMU
raises an instruction storage interrupt even in real mode (unicorn issue #1591), so the
reference instance uses `UC_TLB_VIRTUAL` with an identity TLB-fill hook, as the simulator's
cores do. The hook runs once per page miss (one page here), not per instruction.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from unicorn import Uc
from unicorn import unicorn_const as uc_const
from unicorn.ppc_const import UC_PPC_REG_5, UC_PPC_REG_CTR, UC_PPC_REG_PC

from benchmarks._common import (
    BenchmarkError,
    BenchResult,
    bench_main,
    fmt,
    scenario,
    settle,
    timed_run,
)
from framework.guest.runtime import build_runtime
from framework.hw970.asm import assemble
from framework.simulation import Simulation

NAME = "compute"
TARGET = 0.5
GUEST = "guest1"
LOOP_BYTES = 24  # li r5,0 then addi/xor/add/rldicl/b: the runtime's compute loop
BODY = slice(4, 20)  # the four arithmetic instructions, without `li` and the branch
RAW_BASE = 0x10000
RAW_UNTIL = RAW_BASE + 0x800  # mapped but never reached: the loop branches back
CHUNK = 10_000_000  # instructions per emu_start on the raw side


def scenario_text(duration: str) -> str:
    """One CPU, an idle single-VCPU dom0, one guest running the compute loop."""
    return f"""\
name: bench-compute
duration: {duration}
machine:
  cpus: 1
dom0:
  vcpus: 1
domains:
  - name: {GUEST}
    memory: 64MiB
    workloads:
      - kind: compute
        vcpu: 0
"""


def _guest_cpu_ns(sim: Simulation) -> int:
    """CPU time of the compute guest's VCPU 0 so far (0 before it is built)."""
    for domid, name in sim.names.items():
        if name == GUEST and domid in sim.xen.domains:
            return sim.xen.domains[domid].vcpus[0].cpu_time_ns
    return 0


def simulated(duration: str) -> tuple[int, float, float]:
    """(guest instructions, run() wall seconds, second-half instructions per wall second)."""
    sim = Simulation(scenario(scenario_text(duration), NAME), record=True)
    clock = sim.machine.config.clock_hz
    cpu_at_step: list[int] = []
    settle()
    run = timed_run(sim, lambda _t: cpu_at_step.append(_guest_cpu_ns(sim)))
    cpu_ns = _guest_cpu_ns(sim)
    if cpu_ns <= 0:
        raise BenchmarkError(f"the compute guest never ran; build errors: {sim.build_errors}")
    insns = cpu_ns * clock // 1_000_000_000
    mid = len(run.steps) // 2 - 1
    d_insns = (cpu_at_step[-1] - cpu_at_step[mid]) * clock / 1e9
    d_wall = run.steps[-1][1] - run.steps[mid][1]
    return insns, run.wall_s, d_insns / d_wall if d_wall > 0 else 0.0


def _raw_uc(code: bytes) -> Uc:
    """A default-model PPC64 Unicorn with `code` at RAW_BASE, translated 1:1."""
    uc = Uc(uc_const.UC_ARCH_PPC, uc_const.UC_MODE_PPC64 | uc_const.UC_MODE_BIG_ENDIAN)
    uc.mem_map(RAW_BASE, 0x1000, uc_const.UC_PROT_ALL)
    uc.mem_write(RAW_BASE, code)
    uc.ctl_set_tlb_mode(uc_const.UC_TLB_VIRTUAL)

    def fill(_uc: Uc, vaddr: int, _access: int, entry: object, _ud: object) -> bool:
        entry.paddr = vaddr & ~0xFFF  # type: ignore[attr-defined]
        entry.perms = uc_const.UC_PROT_ALL  # type: ignore[attr-defined]
        return True

    uc.hook_add(uc_const.UC_HOOK_TLB_FILL, fill)
    return uc


def compute_loop_bytes() -> bytes:
    """The guest runtime's compute loop, exactly as the simulated guest runs it."""
    rt = build_runtime()
    start = rt.symbols["compute_loop"]
    return rt.image[start : start + LOOP_BYTES]


def raw_count_bounded(n: int) -> float:
    """Run n instructions of the compute loop in emu_start(count=CHUNK) calls; wall s."""
    uc = _raw_uc(compute_loop_bytes())
    pc, done = RAW_BASE, 0
    t0 = time.perf_counter()
    while done < n:
        step = min(CHUNK, n - done)
        uc.emu_start(pc, RAW_UNTIL, count=step)
        pc = uc.reg_read(UC_PPC_REG_PC)
        done += step
    wall = time.perf_counter() - t0
    # r5 counts loop iterations (addi is first in the body): proof that count= was obeyed.
    if uc.reg_read(UC_PPC_REG_5) != (n - 1 + 4) // 5:
        raise BenchmarkError("raw Unicorn did not run the requested number of instructions")
    return wall


def bdnz_loop_bytes() -> bytes:
    """`li r5,0`, then the compute loop's body closed by `bdnz` instead of `b`."""
    code = assemble(
        "li 5, 0\nloop:\naddi 5, 5, 1\nxor 6, 5, 7\nadd 7, 7, 6\nrldicl 8, 7, 13, 0\nbdnz loop",
        RAW_BASE,
    )
    if code[BODY] != compute_loop_bytes()[BODY]:
        raise BenchmarkError("the bdnz variant's body differs from the runtime's compute loop")
    return code


def raw_until_bounded(n: int) -> tuple[int, float]:
    """Run ~n instructions of the bdnz loop, bounded by `until` only; (instructions, wall s)."""
    code = bdnz_loop_bytes()
    uc = _raw_uc(code)
    end = RAW_BASE + len(code)
    iters_left = max((n - 1) // 5, 1)
    pc = RAW_BASE
    t0 = time.perf_counter()
    while iters_left:
        iters = min(CHUNK // 5, iters_left)
        uc.reg_write(UC_PPC_REG_CTR, iters)
        uc.emu_start(pc, end)
        pc = RAW_BASE + 4  # later chunks re-enter the loop body
        iters_left -= iters
    wall = time.perf_counter() - t0
    total = max((n - 1) // 5, 1)
    if uc.reg_read(UC_PPC_REG_5) != total or uc.reg_read(UC_PPC_REG_PC) != end:
        raise BenchmarkError("the bdnz loop did not run to completion")
    return 1 + 5 * total, wall


def measure(quick: bool) -> BenchResult:
    """Simulate, then run the same number of instructions on raw Unicorn both ways."""
    duration = "200ms" if quick else "2s"
    insns, sim_wall, steady_ips = simulated(duration)
    sim_ips = insns / sim_wall
    count_wall = raw_count_bounded(insns)
    count_ips = insns / count_wall
    until_insns, until_wall = raw_until_bounded(insns)
    until_ips = until_insns / until_wall
    simulated_text = (
        f"{duration} of 1 CPU: guest ran {insns:,} instructions in "
        f"{sim_wall:.2f} s of run() = {fmt(sim_ips / 1e6)} M/s"
    )
    steady_text = f"{fmt(steady_ips / 1e6)} M/s (after the guest's memory was built)"
    return BenchResult(
        name=NAME,
        figure=sim_ips / count_ips,
        unit="x raw Unicorn",
        target=TARGET,
        baseline=f"raw Unicorn, same loop, emu_start(count={CHUNK // 1_000_000}M)",
        details=[
            ("simulated", simulated_text),
            ("simulated, 2nd half of run()", steady_text),
            (
                "raw, count-bounded (target baseline)",
                f"{fmt(count_ips / 1e6)} M/s ({count_wall:.2f} s); ratio {sim_ips / count_ips:.3f}",
            ),
            (
                "raw, until-bounded bdnz loop (no count hook)",
                f"{fmt(until_ips / 1e6)} M/s ({until_wall:.2f} s); ratio {sim_ips / until_ips:.3f}",
            ),
        ],
    )


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main((__doc__ or NAME).splitlines()[0], measure, argv)


if __name__ == "__main__":
    sys.exit(main())
