"""Every ABI number of the port, written as the Xen 3.0.4 / PowerPC headers write it.

The independent source is the header text (xen/include/public/*.h of 3.0.4,
arch-powerpc.h and asm-powerpc/papr.h of the last tree with the port), never our own
constants: a wrong constant in framework.xen.public fails here.
"""

from __future__ import annotations

from framework.xen.public import (
    domctl,
    errno,
    event_channel,
    grant_table,
    memory,
    papr,
    physdev,
    sched,
    sysctl,
    vcpu,
    version,
    xen,
    xencomm,
)
from framework.xen.public.layout import Layout


def offsets(layout: Layout) -> dict[str, int]:
    return {name: off for name, (off, _w) in layout.fields.items()}


def test_hypercall_numbers_and_the_xen_mark() -> None:
    # xen.h: #define __HYPERVISOR_<name> <n>
    assert xen.HYPERVISOR_sched_op_compat == 6
    assert xen.HYPERVISOR_memory_op == 12
    assert xen.HYPERVISOR_set_timer_op == 15
    assert xen.HYPERVISOR_xen_version == 17
    assert xen.HYPERVISOR_console_io == 18
    assert xen.HYPERVISOR_grant_table_op == 20
    assert xen.HYPERVISOR_vm_assist == 21
    assert xen.HYPERVISOR_vcpu_op == 24
    assert xen.HYPERVISOR_sched_op == 29
    assert xen.HYPERVISOR_event_channel_op == 32
    assert xen.HYPERVISOR_physdev_op == 33
    assert xen.HYPERVISOR_sysctl == 35
    assert xen.HYPERVISOR_domctl == 36
    # asm-powerpc/hcalls.h: #define XEN_MARK(a) ((a) | (~0UL << 16))
    assert xen.xen_mark(17) == (17 | (~0 << 16)) & (2**64 - 1)
    assert xen.XEN_MARK == (~0 << 16) & (2**64 - 1)


def test_xen_h_constants() -> None:
    assert (xen.VIRQ_TIMER, xen.VIRQ_DEBUG, xen.VIRQ_CONSOLE, xen.VIRQ_DOM_EXC) == (0, 1, 2, 3)
    assert xen.NR_VIRQS == 24
    assert xen.DOMID_SELF == 0x7FF0
    assert xen.DOMID_FIRST_RESERVED == 0x7FF0
    assert (xen.CONSOLEIO_write, xen.CONSOLEIO_read) == (0, 1)
    assert (xen.VMASST_CMD_enable, xen.VMASST_CMD_disable) == (0, 1)
    assert xen.VMASST_TYPE_4gb_segments == 0
    assert xen.VMASST_TYPE_4gb_segments_notify == 1
    assert xen.VMASST_TYPE_writable_pagetables == 2
    assert xen.VMASST_TYPE_pae_extended_cr3 == 3
    assert xen.MAX_VMASST_TYPE == 3
    assert xen.MAX_VIRT_CPUS == 32  # arch-powerpc.h


def test_shared_info_and_vcpu_info_layouts() -> None:
    # LP64 big-endian: vcpu_info = u8 upcall_pending, u8 upcall_mask, (pad), unsigned long
    # evtchn_pending_sel, arch_vcpu_info (empty on PPC), vcpu_time_info (32 bytes).
    assert xen.VCPU_INFO.size == 48
    vi = offsets(xen.VCPU_INFO)
    assert vi["evtchn_upcall_pending"] == 0 and vi["evtchn_upcall_mask"] == 1
    assert vi["evtchn_pending_sel"] == 8
    assert vi["time_version"] == 16  # vcpu_time_info.version
    assert vi["tsc_timestamp"] == 16 + 8 and vi["system_time"] == 16 + 16
    # shared_info: vcpu_info[MAX_VIRT_CPUS], evtchn_pending[sizeof(long) * 8],
    # evtchn_mask[sizeof(long) * 8], wc_version, wc_sec, wc_nsec, arch (boot_timebase).
    si = offsets(xen.SHARED_INFO)
    assert si["evtchn_pending"] == 48 * 32 == xen.EVTCHN_PENDING_OFF
    assert si["evtchn_mask"] == 48 * 32 + 8 * 64 == xen.EVTCHN_MASK_OFF
    assert xen.SHARED_INFO.fields["evtchn_pending"][1] == 8 * (8 * 8)
    assert (si["wc_version"], si["wc_sec"], si["wc_nsec"]) == (2560, 2564, 2568)
    assert si["boot_timebase"] == 2576
    # NR_EVENT_CHANNELS (sizeof(unsigned long) * sizeof(unsigned long) * 64)
    assert event_channel.NR_EVENT_CHANNELS == 8 * 8 * 64


def test_vcpu_guest_context_as_arch_powerpc_h() -> None:
    ctx = offsets(vcpu.VCPU_GUEST_CONTEXT)
    assert [ctx[f"gpr{i}"] for i in range(32)] == [8 * i for i in range(32)]
    u64s = ["lr", "ctr", "srr0", "srr1", "pc", "msr", "fpscr", "xer", "hid4", "dar"]
    assert [ctx[n] for n in u64s] == [256 + 8 * i for i in range(10)]
    assert (ctx["dsisr"], ctx["cr"], ctx["__pad"], ctx["entry_vector"]) == (336, 340, 344, 348)
    assert ctx["sdr1"] == 352
    assert vcpu.VCPU_GUEST_CONTEXT.size == 360


def test_vcpu_and_sched_h() -> None:
    assert (vcpu.VCPUOP_initialise, vcpu.VCPUOP_up, vcpu.VCPUOP_down) == (0, 1, 2)
    assert vcpu.VCPUOP_is_up == 3
    r = vcpu.Runstate
    assert (r.RUNNING, r.RUNNABLE, r.BLOCKED, r.OFFLINE) == (0, 1, 2, 3)
    assert (sched.SCHEDOP_yield, sched.SCHEDOP_block) == (0, 1)
    assert (sched.SCHEDOP_shutdown, sched.SCHEDOP_poll) == (2, 3)
    assert (sched.SHUTDOWN_poweroff, sched.SHUTDOWN_reboot) == (0, 1)
    assert (sched.SHUTDOWN_suspend, sched.SHUTDOWN_crash) == (2, 3)
    assert sched.SCHED_SHUTDOWN.size == 4
    # sched_poll: XEN_GUEST_HANDLE(evtchn_port_t) ports; unsigned int nr_ports; u64 timeout
    assert offsets(sched.SCHED_POLL) == {"ports": 0, "nr_ports": 8, "timeout": 16}


def test_version_and_memory_h() -> None:
    assert (version.XENVER_version, version.XENVER_extraversion) == (0, 1)
    assert (version.XENVER_capabilities, version.XENVER_pagesize) == (3, 7)
    assert memory.XENMEM_increase_reservation == 0
    assert memory.XENMEM_decrease_reservation == 1
    assert memory.XENMEM_populate_physmap == 6


def test_event_channel_h() -> None:
    ec = event_channel
    assert ec.EVTCHNOP_bind_interdomain == 0
    assert ec.EVTCHNOP_bind_virq == 1
    assert ec.EVTCHNOP_bind_pirq == 2
    assert ec.EVTCHNOP_close == 3
    assert ec.EVTCHNOP_send == 4
    assert ec.EVTCHNOP_status == 5
    assert ec.EVTCHNOP_alloc_unbound == 6
    assert ec.EVTCHNOP_bind_ipi == 7
    assert ec.EVTCHNOP_bind_vcpu == 8
    assert ec.EVTCHNOP_unmask == 9
    assert (ec.EVTCHNSTAT_closed, ec.EVTCHNSTAT_unbound, ec.EVTCHNSTAT_interdomain) == (0, 1, 2)
    assert (ec.EVTCHNSTAT_pirq, ec.EVTCHNSTAT_virq, ec.EVTCHNSTAT_ipi) == (3, 4, 5)
    # domid_t dom, remote_dom; evtchn_port_t port
    assert offsets(ec.EVTCHN_ALLOC_UNBOUND) == {"dom": 0, "remote_dom": 2, "port": 4}
    assert offsets(ec.EVTCHN_BIND_VIRQ) == {"virq": 0, "vcpu": 4, "port": 8}
    assert offsets(ec.EVTCHN_BIND_PIRQ) == {"pirq": 0, "flags": 4, "port": 8}


def test_grant_table_h() -> None:
    gt = grant_table
    assert (gt.GNTTABOP_map_grant_ref, gt.GNTTABOP_unmap_grant_ref) == (0, 1)
    assert (gt.GNTTABOP_setup_table, gt.GNTTABOP_transfer, gt.GNTTABOP_copy) == (2, 4, 5)
    assert gt.GNTTABOP_query_size == 6  # 3.1's grant_table.h
    assert (gt.GTF_invalid, gt.GTF_permit_access, gt.GTF_accept_transfer) == (0, 1, 2)
    assert gt.GTF_type_mask == 3
    assert gt.GTF_readonly == 1 << 2  # (1U<<_GTF_readonly), _GTF_readonly (2)
    assert gt.GTF_reading == 1 << 3
    assert gt.GTF_writing == 1 << 4
    assert gt.GTF_transfer_committed == 1 << 2
    assert gt.GTF_transfer_completed == 1 << 3
    assert gt.GNTMAP_device_map == 1 << 0
    assert gt.GNTMAP_host_map == 1 << 1
    assert gt.GNTMAP_readonly == 1 << 2
    assert gt.GNTMAP_application_map == 1 << 3
    assert gt.GNTMAP_contains_pte == 1 << 4
    assert (gt.GNTCOPY_source_gref, gt.GNTCOPY_dest_gref) == (1 << 0, 1 << 1)
    statuses = [
        gt.GNTST_okay,
        gt.GNTST_general_error,
        gt.GNTST_bad_domain,
        gt.GNTST_bad_gntref,
        gt.GNTST_bad_handle,
        gt.GNTST_bad_virt_addr,
        gt.GNTST_bad_dev_addr,
        gt.GNTST_no_device_space,
        gt.GNTST_permission_denied,
        gt.GNTST_bad_page,
        gt.GNTST_bad_copy_arg,
    ]
    assert statuses == [0, -1, -2, -3, -4, -5, -6, -7, -8, -9, -10]
    # struct grant_entry { uint16_t flags; domid_t domid; uint32_t frame; }
    assert gt.GRANT_ENTRY.size == 8
    assert offsets(gt.GRANT_ENTRY) == {"flags": 0, "domid": 2, "frame": 4}


def test_domctl_h() -> None:
    d = domctl
    assert d.XEN_DOMCTL_INTERFACE_VERSION == 0x00000004
    assert (d.XEN_DOMCTL_createdomain, d.XEN_DOMCTL_destroydomain) == (1, 2)
    assert (d.XEN_DOMCTL_pausedomain, d.XEN_DOMCTL_unpausedomain) == (3, 4)
    assert d.XEN_DOMCTL_getdomaininfo == 5
    assert d.XEN_DOMCTL_setvcpuaffinity == 9
    assert d.XEN_DOMCTL_max_mem == 11
    assert d.XEN_DOMCTL_setvcpucontext == 12
    assert d.XEN_DOMCTL_max_vcpus == 15
    assert d.XEN_DOMCTL_scheduler_op == 16
    assert d.XEN_DOMCTL_real_mode_area == 26
    assert d.XEN_SCHEDULER_CREDIT == 5
    assert (d.XEN_DOMCTL_SCHEDOP_putinfo, d.XEN_DOMCTL_SCHEDOP_getinfo) == (0, 1)
    assert (d.DOMINF_dying, d.DOMINF_hvm_guest, d.DOMINF_shutdown) == (1 << 0, 1 << 1, 1 << 2)
    assert (d.DOMINF_paused, d.DOMINF_blocked, d.DOMINF_running) == (1 << 3, 1 << 4, 1 << 5)
    assert (d.XEN_DOMINF_cpushift, d.XEN_DOMINF_shutdownshift) == (8, 16)
    # struct xen_domctl: u32 cmd, u32 interface_version, domid_t domain, union u (8-aligned,
    # pad[128]).
    assert d.DOMCTL.size == 16 + 128
    o = offsets(d.DOMCTL)
    assert (o["cmd"], o["interface_version"], o["domain"]) == (0, 4, 8)
    # getdomaininfo: domid_t domain; u32 flags; u64 tot_pages, max_pages,
    # shared_info_frame, cpu_time; u32 nr_online_vcpus, max_vcpu_id, ssidref; handle[16]
    gi = offsets(d.GETDOMAININFO)
    assert (gi["domain"], gi["flags"], gi["tot_pages"], gi["max_pages"]) == (0, 4, 8, 16)
    assert (gi["shared_info_frame"], gi["cpu_time"]) == (24, 32)
    assert (gi["nr_online_vcpus"], gi["max_vcpu_id"], gi["ssidref"]) == (40, 44, 48)
    assert d.GETDOMAININFO.size == 88
    for name, off in gi.items():
        assert o["info_" + name] == 16 + off
    # vcpucontext: u32 vcpu; handle ctxt. vcpuaffinity: u32 vcpu; {handle bitmap; u32 nr_cpus}
    assert (o["vcpu"], o["vcpu_ctxt"]) == (16, 24)
    assert (o["cpumap_bitmap"], o["cpumap_nr_cpus"]) == (24, 32)
    # scheduler_op: u32 sched_id, cmd; union (sedf has u64s) { credit: u16 weight, cap }
    assert (o["sched_id"], o["sched_cmd"], o["sched_weight"], o["sched_cap"]) == (16, 20, 24, 26)


def test_sysctl_h() -> None:
    s = sysctl
    assert s.XEN_SYSCTL_INTERFACE_VERSION == 0x00000002
    assert (s.XEN_SYSCTL_readconsole, s.XEN_SYSCTL_tbuf_op, s.XEN_SYSCTL_physinfo) == (1, 2, 3)
    assert (s.XEN_SYSCTL_sched_id, s.XEN_SYSCTL_perfc_op) == (4, 5)
    assert s.XEN_SYSCTL_getdomaininfolist == 6
    assert s.SYSCTL.size == 8 + 128
    o = offsets(s.SYSCTL)
    assert (o["readconsole_clear"], o["readconsole_buffer"], o["readconsole_count"]) == (
        8,
        16,
        24,
    )
    # physinfo: five u32 (threads_per_core .. cpu_khz), then u64 total_pages (aligned)
    assert o["physinfo_cpu_khz"] == 8 + 16
    assert (o["physinfo_total_pages"], o["physinfo_free_pages"]) == (32, 40)
    assert o["sched_id"] == 8
    assert o["getdomaininfolist_max_domains"] == 12
    assert o["getdomaininfolist_buffer"] == 16
    assert o["getdomaininfolist_num_domains"] == 24


def test_physdev_h() -> None:
    assert physdev.PHYSDEVOP_irq_status_query == 5
    assert physdev.PHYSDEVOP_eoi == 12
    assert physdev.XENIRQSTAT_needs_eoi == 1 << 0
    assert physdev.XENIRQSTAT_shared == 1 << 1
    assert offsets(physdev.PHYSDEV_IRQ_STATUS_QUERY) == {"irq": 0, "flags": 4}


def test_papr_tokens_returns_and_flags() -> None:
    p = papr
    tokens = [p.H_REMOVE, p.H_ENTER, p.H_READ, p.H_CLEAR_MOD, p.H_CLEAR_REF, p.H_PROTECT]
    assert tokens == [0x0004, 0x0008, 0x000C, 0x0010, 0x0014, 0x0018]
    assert (p.H_GET_TCE, p.H_PUT_TCE, p.H_SET_DABR) == (0x001C, 0x0020, 0x0028)
    assert (p.H_GET_TERM_CHAR, p.H_PUT_TERM_CHAR) == (0x0054, 0x0058)
    assert p.PAPR_MAX_TOKEN == 0x01D4  # RPA_HCALL_END
    assert (p.H_SUCCESS, p.H_HARDWARE, p.H_FUNCTION, p.H_PRIVILEGE) == (0, -1, -2, -3)
    assert (p.H_PARAMETER, p.H_PTEG_FULL, p.H_NOT_FOUND) == (-4, -6, -7)
    assert p.H_EXACT == 1 << (63 - 24) == 0x8000000000
    assert p.H_R_XLATE == 1 << (63 - 25)
    assert p.H_READ_4 == 1 << (63 - 26)
    assert p.H_AVPN == 1 << (63 - 32)
    assert p.H_ANDCOND == 1 << (63 - 33)
    assert p.H_ICACHE_INVALIDATE == 1 << (63 - 40)
    assert p.H_ICACHE_SYNCHRONIZE == 1 << (63 - 41)
    assert p.H_ZERO_PAGE == 1 << (63 - 48)
    assert p.H_COPY_PAGE == 1 << (63 - 49)
    assert (p.H_N, p.H_PP1, p.H_PP2) == (1 << (63 - 61), 1 << (63 - 62), 1 << (63 - 63))


def test_xencomm_h_and_errno() -> None:
    assert xencomm.XENCOMM_MAGIC == 0x58434F4D  # 'XCOM'
    assert xencomm.XENCOMM_INVALID == ~0 & (2**64 - 1)  # (~0UL)
    assert xencomm.XENCOMM_INLINE_FLAG == 1 << 63  # arch-powerpc.h (1UL << 63)
    assert (errno.EPERM, errno.ENOENT, errno.ESRCH, errno.EINTR, errno.EIO) == (1, 2, 3, 4, 5)
    assert (errno.E2BIG, errno.EAGAIN, errno.ENOMEM, errno.EACCES) == (7, 11, 12, 13)
    assert (errno.EFAULT, errno.EBUSY, errno.EEXIST, errno.EINVAL) == (14, 16, 17, 22)
    assert (errno.ENOSPC, errno.EROFS, errno.ENOSYS) == (28, 30, 38)
