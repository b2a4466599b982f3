"""Virtual network I/O: wall microseconds per simulated network packet.

Why: a network study moves tens of thousands of frames through netfront, the netif rings,
grant copies, netback, the bridge in dom0 and the link models; every packet crosses two
split drivers and the bridge, so this is the simulator's per-packet overhead. Target:
<= 100 wall us per packet received, for one guest streaming 64 KiB messages to another
on bridge xenbr0 over the scenario schema's default links (1 Gbit/s, 20 us, MTU 1500).

The scenario runs for a fixed simulated span (`run()` always runs to the duration) chosen
so the stream finishes well before the end; nothing is subtracted from the headline wall
time. A second figure leaves out the boot: wall time between two progress steps inside the
stream, over the packets received between them.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from benchmarks._common import (
    BenchmarkError,
    BenchResult,
    TimedRun,
    bench_main,
    fmt,
    scenario,
    settle,
    timed_run,
    window_wall_per_item,
)
from framework.simulation import Simulation
from framework.trace.ids import K

NAME = "net"
TARGET = 100.0
MESSAGES = 400
QUICK_MESSAGES = 20
MESSAGE_SIZE = 64 * 1024
# A 64 KiB message is 45 frames, ~0.55 ms on a 1 Gbit/s link; booting dom0 and both
# guests and connecting the vifs take a few ms before the first frame.
BASE_NS = 20_000_000
PER_MESSAGE_NS = 1_000_000


def scenario_text(messages: int, duration_ns: int) -> str:
    """dom0 bridging two guests on xenbr0; `sender` streams `messages` to `receiver`."""
    return f"""\
name: bench-net
duration: {duration_ns}ns
machine:
  cpus: 2
  memory: 1GiB
  link: {{bandwidth: 1Gbit/s, latency: 20us, mtu: 1500}}
dom0:
  memory: 256MiB
domains:
  - name: sender
    memory: 64MiB
    devices:
      - {{kind: vif, bridge: xenbr0}}
    workloads:
      - kind: netstream
        peer: receiver
        message_size: {MESSAGE_SIZE}
        messages: {messages}
  - name: receiver
    memory: 64MiB
    devices:
      - {{kind: vif, bridge: xenbr0}}
"""


def measure(quick: bool) -> BenchResult:
    """Run the whole stream once and divide the wall time of `run()` by packets received."""
    messages = QUICK_MESSAGES if quick else MESSAGES
    duration_ns = BASE_NS + messages * PER_MESSAGE_NS
    sim = Simulation(scenario(scenario_text(messages, duration_ns), NAME), record=True)
    try:
        settle()
        run = timed_run(sim)
        return _result(sim, run, messages, duration_ns)
    finally:
        sim.close()


def _result(sim: Simulation, run: TimedRun, messages: int, duration_ns: int) -> BenchResult:
    """Check the stream arrived whole and undropped, then build the figures from the trace."""
    rx_ns: list[int] = []
    drops: list[tuple[int, str]] = []
    latency_ns = rx_bytes = sent = whole = 0
    first_tx_ns = finished_ns = -1
    for r in sim.rec.records:
        kind = r[0]
        if kind == K.NET_RX:
            rx_ns.append(r[1])
            rx_bytes += r[7]
            latency_ns += r[8]
        elif kind == K.NET_TX:
            sent += 1
            if first_tx_ns < 0:
                first_tx_ns = r[1]
        elif kind == K.NET_DROP:
            drops.append((r[1], str(r[9])))
        elif kind == K.GUEST_MARK and r[9] == "netstream.message":
            whole += 1
            if whole == messages:
                finished_ns = r[1]
    received = len(rx_ns)
    if received == 0:
        raise BenchmarkError(
            f"no packet arrived ({sent} sent) in {duration_ns / 1e6:.1f} ms simulated; "
            f"build errors: {sim.build_errors}"
        )
    if finished_ns < 0:
        raise BenchmarkError(
            f"only {whole} of {messages} messages arrived whole in {duration_ns / 1e6:.1f} ms "
            f"simulated ({received:,} of {sent:,} packets received, {len(drops)} dropped)"
        )
    early = [d for d in drops if d[0] <= finished_ns]
    if early:
        t, why = early[0]
        raise BenchmarkError(
            f"{len(early)} packets dropped before the stream finished, first at "
            f"{t / 1e6:.3f} ms: {why}"
        )
    stream_s = (rx_ns[-1] - first_tx_ns) / 1e9
    counts = sim.rec.counts()
    hcalls = counts.get("hcall.enter", 0)
    sends = counts.get("evtchn.send", 0)
    copies = counts.get("gnttab.copy", 0)
    steady = window_wall_per_item(run, first_tx_ns, rx_ns)
    if steady is None:
        steady_text = "n/a (the stream spans fewer than two progress steps)"
    else:
        per, items, t0, t1 = steady
        steady_text = (
            f"{per * 1e6:.0f} us ({items:,} packets received between "
            f"{t0 / 1e6:.1f} and {t1 / 1e6:.1f} ms simulated)"
        )
    simulated_text = (
        f"{messages:,} messages of {MESSAGE_SIZE // 1024} KiB from sender to receiver on "
        f"xenbr0; run() of {duration_ns / 1e6:.1f} ms simulated took {run.wall_s:.2f} s"
    )
    done_text = (
        f"{received:,} of {sent:,} packets received ({rx_bytes:,} frame bytes), {whole} "
        f"messages whole, from {first_tx_ns / 1e6:.3f} to {rx_ns[-1] / 1e6:.3f} ms "
        f"simulated: {fmt(rx_bytes * 8 / stream_s / 1e6)} Mbit/s simulated, mean latency "
        f"{latency_ns / received / 1000:.1f} us; {len(drops)} dropped"
    )
    per_packet_text = (
        f"{fmt(hcalls / received)} hypercalls, {fmt(sends / received)} evtchn.send, "
        f"{fmt(copies / received)} gnttab.copy, {fmt(len(sim.rec) / received)} trace records"
    )
    return BenchResult(
        name=NAME,
        figure=run.wall_s / received * 1e6,
        unit="wall us / packet",
        target=TARGET,
        higher_is_better=False,
        baseline="wall time of run() (includes booting both guests)",
        details=[
            ("simulated", simulated_text),
            ("work done", done_text),
            ("wall per packet", f"{run.wall_s / received * 1e6:.0f} us"),
            ("wall per packet, boot excluded", steady_text),
            ("per packet", per_packet_text),
        ],
    )


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main((__doc__ or NAME).splitlines()[0], measure, argv)


if __name__ == "__main__":
    sys.exit(main())
