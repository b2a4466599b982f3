"""An independent reference model of Xen 3.1's credit policy, for checking the scheduler.

Written from ``common/sched_credit.c`` (3.0.4/3.1) without looking at
``framework.xen.sched_credit``: one VCPU per domain, plain dicts and lists, no SimPy. It
keeps what decides who runs: the tick that debits the runner 100 credits and (only then)
puts it on the active list; accounting every third tick of CPU 0 that splits 300 credits
per CPU by weight among active domains, caps them, redistributes what a domain cannot use,
clamps at -300 and drops hoarders over +300 (credit reset to 0); BOOST for UNDER wakes;
per-CPU queues (tail of priority class, lazy UNDER-before-OVER sort at each CPU's tick)
and stealing of strictly better work from busy peers. Numbers are the header's, written
out here on purpose rather than imported.
"""

from __future__ import annotations

from dataclasses import dataclass

BOOST, UNDER, OVER, IDLE = 0, -1, -2, -64
TICK, ACCT, TSLICE = 100, 300, 300  # credits per tick, per accounting, per time slice


@dataclass
class _V:
    weight: int
    cap: int
    pin: int | None
    proc: int
    credit: int = 0
    pri: int = UNDER
    parked: bool = False
    active: bool = False
    where: str = "off"  # off / blk / q (queued or, if parked, paused) / run


class RefCredit:
    """Same call surface as the scheduler under test, for one-VCPU domains numbered 1..n."""

    def __init__(self, ncpus: int, doms: dict[int, tuple[int, int, int | None]]) -> None:
        """doms: dom -> (weight, cap, pinned cpu or None); placed as default_vcpu0_location."""
        self.n = ncpus
        self.v: dict[int, _V] = {}
        for d, (w, cap, pin) in doms.items():
            cnt = [0] * ncpus
            for x in self.v.values():
                cnt[x.proc] += 1
            best = 0
            for c in range(1, ncpus):
                if cnt[c] <= cnt[best]:
                    best = c
            self.v[d] = _V(w, cap, pin, best if pin is None else pin)
        self.q: list[list[int]] = [[] for _ in range(ncpus)]
        self.cur: list[int | None] = [None] * ncpus
        self.ticks = [0] * ncpus
        self.active: list[int] = []
        self.balance = 0
        self.epoch = 0
        self.sorted_at = [0] * ncpus
        self.kicks: set[int] = set()

    def _ok(self, d: int, c: int) -> bool:
        return self.v[d].pin in (None, c)

    def _enq(self, c: int, d: int) -> None:
        q = self.q[c]
        i = next((i for i, o in enumerate(q) if self.v[d].pri > self.v[o].pri), len(q))
        q.insert(i, d)

    def _tickle(self, c: int, d: int) -> list[int]:
        cur = self.cur[c]
        cp = IDLE if cur is None else self.v[cur].pri
        out = {c} if self.v[d].pri > cp else set()
        if cp != IDLE:
            out |= {i for i in range(self.n) if self.cur[i] is None and self._ok(d, i)}
        return sorted(out)

    def _queue_woken(self, d: int, boost: bool = True) -> list[int]:
        x = self.v[d]
        if boost and x.pri == UNDER:
            x.pri = BOOST
        self._enq(x.proc, d)
        return self._tickle(x.proc, d)

    def wake(self, dom: int, vcpu: int, now: int) -> list[int]:
        x = self.v[dom]
        if x.where in ("run", "q"):
            return []
        x.where = "q"
        return [] if x.parked else self._queue_woken(dom)

    def block(self, dom: int, vcpu: int, now: int) -> None:
        x = self.v[dom]
        if x.where == "run":
            self.cur[x.proc] = None
            self.kicks.add(x.proc)
        elif x.where == "q" and not x.parked:
            self.q[x.proc].remove(dom)
        x.where = "blk"

    def deschedule(self, cpu: int, now: int, still_runnable: bool) -> None:
        d = self.cur[cpu]
        if d is None:
            return
        self.cur[cpu] = None
        self.v[d].where = "q" if still_runnable else "blk"
        if still_runnable and not self.v[d].parked:
            self._enq(cpu, d)

    def pick_next(self, cpu: int, now: int) -> tuple[int | None, int]:
        q = self.q[cpu]
        best = q[0] if q else None
        if best is None or self.v[best].pri <= OVER:
            floor = IDLE if best is None else self.v[best].pri
            for i in range(1, self.n):
                peer = (cpu + i) % self.n
                if self.cur[peer] is None:
                    continue
                got = None
                for d in self.q[peer]:
                    if self.v[d].pri <= floor:
                        break
                    if self._ok(d, cpu):
                        got = d
                        break
                if got is not None:
                    self.q[peer].remove(got)
                    best = got
                    break
            else:
                if best is not None:
                    q.pop(0)
        else:
            q.pop(0)
        if best is not None:
            self.v[best].proc, self.v[best].where = cpu, "run"
        self.cur[cpu] = best
        return best, 30_000_000

    def tick(self, cpu: int, now: int) -> bool:
        self.ticks[cpu] += 1
        d = self.cur[cpu]
        if d is not None:
            x = self.v[d]
            x.pri = UNDER if x.pri == BOOST else x.pri
            x.credit -= TICK
            if not x.active:
                x.active = True
                self.active.insert(0, d)
        me = False
        if cpu == 0 and self.ticks[0] % 3 == 0:
            for k in self._acct():
                if k == cpu:
                    me = True
                else:
                    self.kicks.add(k)
        if self.sorted_at[cpu] != self.epoch:
            self.sorted_at[cpu] = self.epoch
            q = self.q[cpu]
            q[:] = [d for d in q if self.v[d].pri >= UNDER] + [
                d for d in q if self.v[d].pri < UNDER
            ]
        return me

    def _acct(self) -> list[int]:
        wt = sum(self.v[d].weight for d in self.active)
        total = ACCT * self.n - min(self.balance, 0)
        kicks: list[int] = []
        if wt == 0:
            self.balance = 0
            return kicks
        left, xtra, bal, old = wt, False, 0, self.balance
        for d in list(self.active):
            x = self.v[d]
            left -= x.weight
            peak = ACCT + ((-old * x.weight + wt - 1) // wt if old < 0 else 0)
            cap = 0
            if x.cap:
                cap = (x.cap * ACCT + 99) // 100
                peak = min(peak, cap)
            fair = (total * x.weight + wt - 1) // wt
            if fair < peak:
                xtra = True
            else:
                if left:
                    total += ((fair - peak) * wt + left - 1) // left
                if xtra:
                    self.active.remove(d)
                    self.active.insert(0, d)
                fair = peak
            x.credit += fair
            if x.credit < 0:
                x.pri = OVER
                if x.cap and x.credit < -cap and not x.parked:
                    x.parked = True
                    if x.where == "run":
                        kicks.append(x.proc)
                    elif x.where == "q":
                        self.q[x.proc].remove(d)
                x.credit = max(x.credit, -TSLICE)
            else:
                x.pri = UNDER
                if x.parked:
                    x.parked = False
                    if x.where == "q":
                        kicks += self._queue_woken(d, boost=False)  # flag still set
                if x.credit > TSLICE:
                    x.active, x.credit = False, 0
                    self.active.remove(d)
            bal += x.credit
        self.balance = bal
        self.epoch += 1
        return sorted(set(kicks))

    def take_kicks(self) -> list[int]:
        out = sorted(self.kicks)
        self.kicks.clear()
        return out

    def running(self, cpu: int) -> int | None:
        """The domain on ``cpu``, comparable with the scheduler's ``current(cpu).dom``."""
        return self.cur[cpu]
