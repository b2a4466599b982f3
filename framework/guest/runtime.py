"""The guest kernel's PPC64 runtime, assembled with keystone.

Real code runs where the architecture matters: the exception vectors, the 0x500 event
upcall (real mode) that scans pending & ~mask & this VCPU's binding mask (as Linux's
`active_evtchns` does), clears each bit with ldarx/stdcx. and dispatches the port, the idle loop that blocks with SCHEDOP_block, and the compute loop.  Driver-level
logic is in native routines (`kernel.py`) reached with `bl` to a stub whose address a
code hook is bound to.

`suspend_stub` (real mode, interrupts off) is where a suspending kernel's upcall returns
to: `native_suspend` writes the kernel's state into its memory and loads the arguments of
`SCHEDOP_shutdown(SHUTDOWN_suspend)` (start-info frame in r6); after the real `sc 1` the
VCPU stops there, so a saved context is this clean instruction boundary. When the VCPU
runs again (r3 = 0: restored in a new domain; 1: cancelled, `xm save -c`),
`native_resume` rebuilds or resumes the kernel and the stub returns to the interrupted
context with the registers the upcall saved.

Conventions: r13 holds the real address of the VCPU's kernel area (like Linux's PACA);
natives follow the PPC64 ELF ABI: they may clobber r0 and r3-r12, CTR, XER and LR, and
keep r1, r2 and r13-r31.  The image loads at guest-physical 0, and
after start-up runs translated at KERNEL_BASE + gpa (16 MiB pages).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from framework.hw970.asm import assemble
from framework.xen.public.xen import EVTCHN_MASK_OFF, EVTCHN_PENDING_OFF, HYPERVISOR_sched_op

KERNEL_BASE: Final = 0xC000000000000000
ENTRY: Final = 0x3000
NATIVE_BASE: Final = 0x2000  # one 16-byte stub per native routine
AREA_BASE: Final = 0x10000  # per-VCPU kernel areas, AREA_SIZE each
AREA_SIZE: Final = 0x400
SCRATCH_BASE: Final = 0x20000  # per-VCPU hypercall argument pages, SCRATCH_SIZE each
SCRATCH_SIZE: Final = 0x2000
DEVTREE_GPA: Final = 0x80000
BUFFER_GPA: Final = 0x100000  # dom0: toolstack buffers (kernel image, devtrees)

# Offsets inside a VCPU area.
AREA_GPR: Final = 0  # slot of rN at AREA_GPR + 8N: volatile registers and r14-r19 saved by handlers
AREA_R1: Final = 8 * 1
AREA_LR: Final = 256
AREA_CTR: Final = 264
AREA_CR: Final = 272
AREA_XER: Final = 280
AREA_SHINFO: Final = 288
AREA_VCPUINFO: Final = 296
AREA_CONT: Final = 304  # translated PC to continue at after start-up
AREA_MSR: Final = 312
#: Suspend: the interrupted context's SRR0/SRR1, which `suspend_stub` returns to.
AREA_SUSP_SRR0: Final = 320
AREA_SUSP_SRR1: Final = 328
#: This VCPU's event-channel binding mask (Linux's cpu_evtchn_mask[cpu]): one bit per port,
#: laid out like shared_info's pending words; the upcall handles only ports whose bit is set.
AREA_EVTMASK: Final = 0x200
AREA_EVTMASK_BYTES: Final = 512  # NR_EVENT_CHANNELS (4096) bits

NATIVES: Final = (
    "kinit",
    "evtchn_dispatch",
    "program_check",
    "storage_fault",
    "decrementer",
    "suspend",
    "resume",
)


def native_address(name: str) -> int:
    return NATIVE_BASE + 16 * NATIVES.index(name)


# Volatile registers (PPC64 ELF ABI) plus r14-r19, which the upcall loop keeps its state
# in across native calls.
_SAVED: Final = (0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 15, 16, 17, 18, 19)


def _save_volatile() -> str:
    lines = [f"std {r}, {AREA_GPR + 8 * r}(13)" for r in _SAVED]
    lines += [
        "mflr 0",
        f"std 0, {AREA_LR}(13)",
        "mfctr 0",
        f"std 0, {AREA_CTR}(13)",
        "mfcr 0",
        f"std 0, {AREA_CR}(13)",
        "mfxer 0",
        f"std 0, {AREA_XER}(13)",
    ]
    return "\n".join(lines)


def _restore_volatile() -> str:
    lines = [
        f"ld 0, {AREA_LR}(13)",
        "mtlr 0",
        f"ld 0, {AREA_CTR}(13)",
        "mtctr 0",
        f"ld 0, {AREA_CR}(13)",
        "mtcrf 0xff, 0",
        f"ld 0, {AREA_XER}(13)",
        "mtxer 0",
    ]
    lines += [f"ld {r}, {AREA_GPR + 8 * r}(13)" for r in _SAVED]
    lines.append(f"ld 1, {AREA_R1}(13)")
    return "\n".join(lines)


def _vector(vec: int, target: str) -> str:
    """A vector stub: stash r1 in the area and branch to the full handler."""
    return f"std 1, {AREA_R1}(13)\n b {target}"


def _body() -> str:
    sched_op = HYPERVISOR_sched_op
    return f"""
_start:
    bl native_kinit
    ld 4, {AREA_MSR}(13)
    ld 5, {AREA_CONT}(13)
    mtspr 27, 4
    mtspr 26, 5
    rfid

idle_loop:
    lis 3, -1
    ori 3, 3, {sched_op}
    li 4, 1
    sc 1
    b idle_loop

compute_loop:
    li 5, 0
compute_next:
    addi 5, 5, 1
    xor 6, 5, 7
    add 7, 7, 6
    rldicl 8, 7, 13, 0
    b compute_next

upcall:
    {_save_volatile()}
    ld 14, {AREA_SHINFO}(13)
    ld 15, {AREA_VCPUINFO}(13)
upcall_again:
    li 6, 0
    stb 6, 0(15)
    addi 7, 15, 8
upcall_xchg_sel:
    ldarx 16, 0, 7
    stdcx. 6, 0, 7
    bne- upcall_xchg_sel
upcall_next_word:
    cmpdi 16, 0
    beq upcall_check_again
    cntlzd 17, 16
    subfic 17, 17, 63
    li 10, 1
    sld 10, 10, 17
    andc 16, 16, 10
    sldi 18, 17, 3
    addi 19, 18, {EVTCHN_PENDING_OFF}
    add 19, 19, 14
    addi 18, 18, {EVTCHN_MASK_OFF}
    add 18, 18, 14
upcall_next_bit:
    ld 10, 0(19)
    ld 7, 0(18)
    andc 10, 10, 7
    subf 6, 14, 19
    addi 6, 6, {AREA_EVTMASK - EVTCHN_PENDING_OFF}
    ldx 7, 13, 6
    and 10, 10, 7
    cmpdi 10, 0
    beq upcall_next_word
    cntlzd 7, 10
    subfic 7, 7, 63
    li 10, 1
    sld 10, 10, 7
upcall_clear_bit:
    ldarx 6, 0, 19
    andc 6, 6, 10
    stdcx. 6, 0, 19
    bne- upcall_clear_bit
    sldi 3, 17, 6
    add 3, 3, 7
    bl native_evtchn_dispatch
    b upcall_next_bit
upcall_check_again:
    lbz 6, 0(15)
    cmpdi 6, 0
    bne upcall_again
    {_restore_volatile()}
    rfid

program_check:
    {_save_volatile()}
    bl native_program_check
    {_restore_volatile()}
    rfid

storage_fault:
    {_save_volatile()}
    bl native_storage_fault
    {_restore_volatile()}
    rfid

suspend_stub:
    bl native_suspend
    sc 1
    bl native_resume
    {_restore_volatile()}
    rfid

decrementer:
    {_save_volatile()}
    bl native_decrementer
    {_restore_volatile()}
    rfid
"""


@dataclass(frozen=True)
class Runtime:
    """The assembled kernel image and the addresses of its symbols (guest-physical)."""

    image: bytes
    symbols: dict[str, int]

    @property
    def entry(self) -> int:
        return self.symbols["_start"]

    def virt(self, name: str) -> int:
        """Translated (kernel linear map) address of a symbol."""
        return KERNEL_BASE | self.symbols[name]


@lru_cache(maxsize=1)
def build_runtime() -> Runtime:
    """Assemble the kernel: vectors at their architected offsets, code at ENTRY."""
    image = bytearray(0x3000)
    # Native stubs: the hook runs the routine and returns to LR; `blr` only documents it.
    blr = assemble("blr")
    for name in NATIVES:
        off = native_address(name)
        image[off : off + 4] = blr
    body = _body()
    symbols = _symbols(body, ENTRY)
    for name in NATIVES:
        symbols[f"native_{name}"] = native_address(name)
    code = assemble(_with_native_targets(body, symbols, ENTRY), ENTRY)
    image += code
    vectors = {
        0x300: "storage_fault",
        0x380: "storage_fault",
        0x400: "storage_fault",
        0x480: "storage_fault",
        0x500: "upcall",
        0x700: "program_check",
        0x900: "decrementer",
        0xC00: "program_check",
    }
    for vec, target in vectors.items():
        stub = assemble(_vector(vec, f"{symbols[target]:#x}"), vec)
        image[vec : vec + len(stub)] = stub
    return Runtime(bytes(image), symbols)


def _symbols(body: str, base: int) -> dict[str, int]:
    """Label addresses: every PPC instruction is one 4-byte word, so count them."""
    out: dict[str, int] = {}
    addr = base
    for raw in body.split("\n"):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*):$", line)
        if m:
            out[m.group(1)] = addr
        else:
            addr += 4
    return out


def _with_native_targets(src: str, symbols: dict[str, int], base: int) -> str:
    """`bl native_x` becomes a raw relative `bl` word (keystone mis-encodes numeric targets
    that are not the first instruction, so the displacement is encoded here)."""
    lines = []
    addr = base
    for raw in src.split("\n"):
        line = raw.split("#", 1)[0].strip()
        m = re.match(r"^bl (native_[a-z_]+)$", line)
        if m:
            disp = (symbols[m.group(1)] - addr) & 0x03FFFFFC
            lines.append(f"    .long {0x48000001 | disp:#x}")
        else:
            lines.append(raw)
        if line and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*:$", line):
            addr += 4
    return "\n".join(lines)
