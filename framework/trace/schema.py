"""Every trace record kind, defined once: name, meaning, integer fields and text column.

The recorder stores records as tuples tagged with a small integer kind id (`K.SCHED_SWITCH`
etc.) so the hot path never touches strings. Everything else is generated from `KINDS`: the
literal ids (`framework/trace/ids.py`, by `framework.trace.gen_ids`), the trace file's
metadata and the documentation (`docs/trace-schema.md`, by `framework.trace.doc`).

A field name means the same thing in every kind that has it (`FIELD_DOCS`). The trace
stores a record's fields, in the kind's order, in the generic argument columns `a0`..`a3`
(`ARG_COLUMNS`, as xentrace's extra words): a kind's field `i` is column `a<i>`, and the
file's metadata says which kind names which field, so readers give them back by name.
Integer values are int64; 64-bit register images at or above 2**63 (an MSR with SF set,
for instance) are stored as the int64 with the same bit pattern.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = [
    "ARG_COLUMNS",
    "BASE_COLUMNS",
    "FIELD_COLUMNS",
    "FIELD_DOCS",
    "FIELD_ENUMS",
    "KINDS",
    "KIND_BY_NAME",
    "MAX_FIELDS",
    "SCHEMA_VERSION",
    "Kind",
    "kind_ident",
]

MAX_FIELDS: Final = 4
#: Version of the trace file's layout and metadata; readers refuse versions they do not know.
#: 2: the metadata carries `value_names` (names of enumerated field values).
#: 3: narrow layout: fields in the argument columns `a0`..`a3` instead of one column per
#: field name; rows grouped by kind (each row group holds one kind) with `seq`, each
#: record's position in time order; text dictionary-encoded.
SCHEMA_VERSION: Final = 3


@dataclass(frozen=True, slots=True)
class Kind:
    """One record kind: its dotted name, what it means, its int fields and text meaning."""

    name: str
    doc: str
    fields: tuple[str, ...] = ()
    text: str | None = None

    def __post_init__(self) -> None:
        if len(self.fields) > MAX_FIELDS:
            raise ValueError(f"kind {self.name}: at most {MAX_FIELDS} fields, got {self.fields}")
        if len(set(self.fields)) != len(self.fields):
            raise ValueError(f"kind {self.name}: repeated field in {self.fields}")


KINDS: tuple[Kind, ...] = (
    Kind("sched.switch", "A physical CPU switched to this VCPU from (prev_dom, prev_vcpu).",
         ("prev_dom", "prev_vcpu")),
    Kind("sched.wake", "The VCPU was woken (made runnable); boost=1 when it got BOOST priority.",
         ("boost",)),
    Kind("sched.block", "The VCPU blocked (SCHEDOP_block or idle)."),
    Kind("sched.runstate", "The VCPU entered runstate `state`, leaving `prev_state`.",
         ("state", "prev_state")),
    Kind("sched.migrate", "The VCPU moved from one physical CPU's run queue to another's.",
         ("from_cpu", "to_cpu")),
    Kind("sched.tick", "Credit accounting tick for the VCPU running on this CPU.", ("credit",)),
    Kind("hcall.enter", "The guest executed `sc 1`: hypercall `nr` with its first arguments.",
         ("nr", "arg0", "arg1", "arg2"), "hypercall name"),
    Kind("hcall.exit", "Xen returned from hypercall `nr` with `result` in r3.",
         ("nr", "result"), "hypercall name"),
    Kind("hcall.continuation", "Hypercall `nr` was preempted and will be re-issued (pc -= 4).",
         ("nr",)),
    Kind("exc.deliver", "An exception was delivered to the guest at `vector`.",
         ("vector", "srr0", "srr1", "dar"), "exception name"),
    Kind("exc.rfid", "The guest returned from an interrupt with rfid to (pc, msr).",
         ("pc", "msr")),
    Kind("evtchn.send", "The domain sent an event on its `port`, bound to the remote end.",
         ("port", "remote_dom", "remote_port")),
    Kind("evtchn.pending", "Xen marked `port` pending in this domain; vcpu = notified VCPU.",
         ("port",)),
    Kind("evtchn.upcall", "The 0x500 upcall entered the guest; pending_sel as found.",
         ("pending_sel",)),
    Kind("evtchn.handled", "The guest's upcall handler consumed the event on `port`.",
         ("port",)),
    Kind("evtchn.bind", "An event channel port was bound.",
         ("port", "remote_dom", "remote_port"), "binding type (interdomain, virq, ipi, ...)"),
    Kind("evtchn.close", "An event channel port was closed.", ("port",)),
    Kind("ipi.send", "An inter-processor interrupt was sent to `target_cpu`.",
         ("target_cpu", "ipi")),
    Kind("ipi.recv", "This CPU took inter-processor interrupt `ipi`.", ("ipi",)),
    Kind("irq.raise", "An MPIC interrupt source was raised towards `target_cpu`.",
         ("source", "target_cpu")),
    Kind("timer.set", "A timer was armed (set_timer_op or Xen's own) for `deadline_ns`.",
         ("deadline_ns",)),
    Kind("timer.fire", "A timer armed for `deadline_ns` fired.", ("deadline_ns",)),
    Kind("dom.create", "A domain was created (dom = the new domain id).",
         ("memory", "vcpus", "rma_base", "rma_size")),
    Kind("dom.start", "The domain's boot VCPU was started (or the domain was unpaused)."),
    Kind("dom.pause", "The domain was paused (xm pause, or xm destroy tearing it down)."),
    Kind("dom.shutdown", "The domain shut down with `reason` (SHUTDOWN_* code).",
         ("reason",), "reason name"),
    Kind("dom.crash", "The domain was crashed by Xen; pc = the guest pc at the time.",
         ("pc",), "why"),
    Kind("dom.destroy", "The domain was destroyed and its memory freed."),
    Kind("dom.dying", "The domain was killed (destroydomain) but another domain still maps "
         "`count` of its frames: it stays dying until they are unmapped, then dom.destroy.",
         ("count",)),
    Kind("vcpu.up", "The VCPU was brought online."),
    Kind("vcpu.down", "The VCPU was taken offline."),
    Kind("console.out", "One line the domain wrote to its console.", (), "the line"),
    Kind("mem.alloc", "Machine frames were allocated to the domain.", ("mfn", "count"),
         "purpose"),
    Kind("mem.fail", "A memory allocation for the domain failed.", (), "reason"),
    Kind("guest.mark", "A workload milestone (e.g. a pingpong round trip completed).",
         ("value",), "label"),
    Kind("mem.free", "Machine frames were returned to Xen's free memory.", ("mfn", "count"),
         "purpose"),
    Kind("gnttab.map", "map_grant_ref of (remote_dom, ref) into foreign `slot`; status GNTST_*.",
         ("remote_dom", "ref", "slot", "status"), "error reason, empty on success"),
    Kind("gnttab.unmap", "unmap_grant_ref of foreign `slot`; status GNTST_*.",
         ("remote_dom", "ref", "slot", "status"), "error reason, empty on success"),
    Kind("gnttab.copy", "GNTTABOP_copy of `bytes` with remote_dom; status GNTST_*.",
         ("remote_dom", "ref", "bytes", "status"), "error reason, empty on success"),
    Kind("gnttab.transfer", "GNTTABOP_transfer of a page to (remote_dom, ref); status GNTST_*.",
         ("remote_dom", "ref", "mfn", "status"), "error reason, empty on success"),
    Kind("tce.put", "H_PUT_TCE: the IOMMU entry for (liobn, ioba) now maps `mfn` (0 = cleared).",
         ("liobn", "ioba", "mfn")),
    Kind("dma.fault", "A device DMA through (liobn, ioba) was refused by the IOMMU.",
         ("liobn", "ioba"), "reason"),
    Kind("disk.done", "The disk model finished a request: `bytes` at `sector` in `service_ns`.",
         ("sector", "bytes", "service_ns", "status"), "operation"),
    Kind("blk.submit", "A frontend queued block request `req_id` on device `dev`.",
         ("dev", "req_id", "sector", "bytes"), "operation (read, write, flush)"),
    Kind("blk.complete", "The frontend got the response to `req_id` (status BLKIF_RSP_*).",
         ("dev", "req_id", "status", "latency_ns"), "operation"),
    Kind("blk.respond", "blkback answered request `req_id` of `remote_dom`'s device `dev` "
         "(status BLKIF_RSP_*): every request it takes off a ring gets exactly one.",
         ("dev", "req_id", "status", "remote_dom")),
    Kind("blk.verify", "A read's data did not match what was written (a verification failure).",
         ("dev", "sector"), "what differed"),
    Kind("net.tx", "A netfront queued packet `pkt` of `bytes` on its vif `dev`.",
         ("dev", "pkt", "bytes")),
    Kind("net.rx", "A netfront received packet `pkt` of `bytes` sent `latency_ns` ago.",
         ("dev", "pkt", "bytes", "latency_ns")),
    Kind("net.drop", "Packet `pkt` (`bytes` long) was dropped: by its sender's netfront, dom0 "
         "(bridge, link, queue, unplug: dom = 0, dev = the vif) or its receiver. A sent "
         "packet gets exactly one net.rx or net.drop.",
         ("dev", "pkt", "bytes"), "who dropped it and why"),
    Kind("ring.full", "A producer found its shared ring full and waited (backpressure).",
         ("dev",), "ring name"),
    Kind("xs.request", "xenstored handled a request of type `xs_type` from this domain.",
         ("xs_type", "req_id", "tx_id"), "path, and the error if any"),
    Kind("xs.watch", "xenstored fired a watch event to this domain.", (), "path and token"),
    Kind("xenbus.state", "A xenbus device end changed state (XenbusState numbers).",
         ("dev", "xb_state", "xb_prev"), "the device's store path"),
    Kind("console.in", "Input written to the domain's console ring.", (), "the text"),
    Kind("hcall.bug", "Hypercall `nr` raised an unexpected exception in Xen (a simulator bug); "
         "the calling domain is crashed.", ("nr", "arg0", "arg1", "arg2"),
         "the call with all its arguments (r4..r11), and the exception"),
    # grants in scenarios (issue 16): the granter's and the peer's view of a `grants:` entry
    Kind("shm.publish", "The granter granted `count` pages to `remote_dom` and published "
         "their refs and event channel `port` in xenstore.", ("remote_dom", "count", "port"),
         "grant name"),
    Kind("shm.verify", "A sharedmem round `value` checked on `count` pages by this domain "
         "(the peer: the granter's data; the granter: the peer's answer); status 0 = the "
         "data matched, 1 = it did not.", ("remote_dom", "value", "count", "status"),
         "grant name, and what differed"),
    Kind("shm.revoke", "The granter ended grant `ref` (status 0), or found it still mapped "
         "by `remote_dom` (GTF_reading/GTF_writing set: status 1 = busy, left granted).",
         ("remote_dom", "ref", "status"), "grant name and outcome"),
    Kind("shm.fault", "A store into a mapped grant took a storage exception (a read-only "
         "grant): the peer's write was refused by the MMU.", ("remote_dom", "ref"),
         "grant name and the fault"),
    # -- domain lifecycle (xm shutdown / reboot / create) --
    Kind("xend.shutdown", "xend found the domain shut down with `reason` (getdomaininfo after "
         "VIRQ_DOM_EXC) and acts on it as the domain's on_poweroff / on_reboot / on_crash say.",
         ("reason",), "reason name and action: `poweroff: destroy`, `reboot: restart`, ..."),
    Kind("xend.restart", "xend built the domain again after it shut down (on_... = restart): "
         "dom = the new domain id.", (), "the domain's name and the id it had before"),
    Kind("dev.attach", "dom0's toolstack gave guest `dom` device `dev` (its xenstore nodes are "
         "written): at creation, or by xm block-attach / network-attach.", ("dev",),
         "class and description, as `xm block-list` / `network-list` show it"),
    Kind("dev.detach", "dom0's toolstack took device `dev` from guest `dom` (both ends closed, "
         "or the wait timed out, and its nodes are removed).", ("dev",),
         "class and name, and how it ended"),
    # xm's views (issue 16): what they read back, so analysis can rebuild them.
    Kind("xen.printk", "Xen wrote a line to its console ring (`xm dmesg` reads it back).",
         (), "the line, without the `(XEN) ` prefix"),
    Kind("sched.affinity", "The VCPU's CPU affinity was set (setvcpuaffinity).", ("cpumap",)),
    Kind("xm.view", "dom0 ran an xm view command (list, vcpu-list, info, dmesg, domid, "
         "domname) and got this output; also written to the run directory's xm/.", (),
         "the command line, then the output"),
    Kind("vcpu.create", "Xen created the VCPU (max_vcpus) and placed it on physical CPU "
         "`processor`, where it stays until it first runs (analysis.xm_vcpu_list's CPU).",
         ("processor",)),
)  # fmt: skip

FIELD_DOCS: dict[str, str] = {
    "prev_dom": "domain id that ran before on this CPU (-1 = idle)",
    "prev_vcpu": "VCPU id that ran before on this CPU (-1 = idle)",
    "boost": "1 if the woken VCPU got BOOST priority, else 0",
    "state": "runstate entered (RUNSTATE_* code of Xen's public vcpu.h)",
    "prev_state": "runstate left (same codes as `state`)",
    "from_cpu": "physical CPU the VCPU left",
    "to_cpu": "physical CPU the VCPU moved to",
    "credit": "the VCPU's credit after the tick",
    "nr": "hypercall number (Xen calls as r3 & 0xffff; PAPR calls as the token)",
    "arg0": "first hypercall argument (r4)",
    "arg1": "second hypercall argument (r5)",
    "arg2": "third hypercall argument (r6)",
    "result": "value returned in r3 (signed)",
    "vector": "exception vector offset (0x300, 0x500, 0x900, ...)",
    "srr0": "SRR0: where the guest was interrupted",
    "srr1": "SRR1: the guest MSR image saved by the exception",
    "dar": "DAR for storage exceptions, else 0",
    "pc": "program counter",
    "msr": "machine state register image",
    "port": "event channel port of this record's domain",
    "remote_dom": "domain id at the other end of the channel (-1 = none)",
    "remote_port": "port at the other end, or the VIRQ/IPI number for such bindings",
    "pending_sel": "the vcpu_info evtchn_pending_sel word at upcall time",
    "target_cpu": "physical CPU the interrupt is directed to",
    "ipi": "IPI number: 0 = call function, 1 = reschedule / event check",
    "source": "MPIC interrupt source number",
    "deadline_ns": "simulated time the timer is due, in ns",
    "memory": "domain memory in bytes",
    "vcpus": "number of VCPUs",
    "rma_base": "machine address of the Real Mode Area",
    "rma_size": "size of the Real Mode Area in bytes",
    "reason": "SHUTDOWN_* code: poweroff=0, reboot=1, suspend=2, crash=3",
    "mfn": "first machine frame number",
    "count": "number of frames",
    "value": "milestone value (e.g. the round number)",
    "ref": "grant reference in the granting domain's table",
    "slot": "foreign map area slot (0..1023) of the mapping domain",
    "status": "status code of the operation (GNTST_*, BLKIF_RSP_*, ...; 0 = okay)",
    "bytes": "length in bytes",
    "liobn": "logical I/O bus number: which device's TCE table",
    "ioba": "I/O bus address the device uses",
    "sector": "disk position in 512-byte sectors",
    "service_ns": "time the disk spent on the request, in ns",
    "dev": "device id within the domain (the xenbus device number)",
    "req_id": "request id (blkif id, or the xenstore req_id)",
    "latency_ns": "time from submission (or send) to completion (or receipt), in ns",
    "pkt": "packet id: the sending stream (domain << 16 | vif) << 32 | the packet's "
    "sequence number in its stream (mod 2**32); the same in its net.tx, net.rx, net.drop",
    "xs_type": "xenstore message type (XS_READ=2, XS_WRITE=11, ...)",
    "tx_id": "xenstore transaction id (0 = none)",
    "xb_state": "XenbusState entered: 1 Initialising, 2 InitWait, 3 Initialised, "
    "4 Connected, 5 Closing, 6 Closed",
    "xb_prev": "XenbusState left (same codes as `xb_state`)",
    "cpumap": "bit n set = physical CPU n allowed",
    "processor": "physical CPU the VCPU was placed on",
}

#: Fields whose values are codes of an enumeration this package does not own (it imports
#: nothing of Xen): field -> enumeration name. Whoever builds the recorder supplies each
#: enumeration's names (`Recorder(enums=...)`); they travel in the trace file's metadata.
FIELD_ENUMS: dict[str, str] = {"state": "runstate", "prev_state": "runstate"}

BASE_COLUMNS: dict[str, str] = {
    "t_ns": "simulated time in nanoseconds (int64); a loaded trace's rows are in time order",
    "cpu": "physical CPU (int16), -1 when not applicable",
    "dom": "domain id (int16), -1 when not applicable",
    "vcpu": "VCPU id within the domain (int16), -1 when not applicable",
    "kind": "record kind (categorical, dotted name; categories = all kinds in schema order)",
}


#: The generic argument columns: a kind's field `i` is stored in `ARG_COLUMNS[i]` (int64,
#: 0 where the kind has fewer fields).
ARG_COLUMNS: tuple[str, ...] = tuple(f"a{i}" for i in range(MAX_FIELDS))


def _field_columns() -> tuple[str, ...]:
    """Distinct field names in first-appearance order (the columns of the wide view)."""
    seen: dict[str, None] = {}
    for kind in KINDS:
        for name in kind.fields:
            seen.setdefault(name)
    return tuple(seen)


FIELD_COLUMNS: tuple[str, ...] = _field_columns()
KIND_BY_NAME: dict[str, Kind] = {kind.name: kind for kind in KINDS}


def kind_ident(name: str) -> str:
    """The `K` attribute for a kind name: 'sched.switch' -> 'SCHED_SWITCH'."""
    return name.replace(".", "_").upper()
