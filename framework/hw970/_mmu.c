/*
 * The 970's address translation as a Unicorn TLB-fill hook, in C.
 *
 * Unicorn (UC_TLB_VIRTUAL) asks for a translation on every miss of its soft TLB,
 * and the emulated TLB is flushed on every partition switch, so misses are frequent.
 * A Python hook costs several microseconds per miss; this one reads the hashed page
 * table straight from machine memory.  It mirrors framework/hw970/mmu.py exactly
 * (that module stays the reference, used for host-side translations, and
 * tests/hw970/test_mmu_fill.py checks the two agree).  Core keeps the struct in step
 * with the running context's MSR, HID4 (RMA), SDR1 and SLB.
 *
 * Machine memory is RAM below the 2 GiB I/O hole and, on machines of more than 2 GiB,
 * from 4 GiB up (MachineMemory.ranges); a translation that lands anywhere else (the hole,
 * or beyond the top of RAM) is a machine check, never an access of the host buffer.
 *
 * The fill also keeps the cores honest about code (code_pages.py says why): a page is
 * mapped executable only once it has been scanned for sensitive instructions and the
 * context has its trap hooks at that address, and never writable while it may be
 * executed.  A fetch from any other page stops emulation (VEC_CODE_SCAN) so that the core
 * can admit it; a store into an admitted page stops before it is done (VEC_CODE_WRITE) so
 * that the core releases the page, and every core forgets the code translated from it,
 * before the store runs again.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdbool.h>
#include <stdint.h>

#define ACCESS_FETCH 18
#define ACCESS_WRITE 17

#define MSR_HV (1ULL << 60)
#define MSR_PR (1ULL << 14)
#define MSR_IR (1ULL << 5)
#define MSR_DR (1ULL << 4)

#define VEC_MCHECK 0x200
#define VEC_DSI 0x300
#define VEC_DSEG 0x380
#define VEC_ISI 0x400
#define VEC_ISEG 0x480
/* Not interrupts: the fetch needs its page admitted (Core.run, CoreBus.admit_code), or
 * the store needs its page released (Core._code_store). */
#define VEC_CODE_SCAN 0x10000
#define VEC_CODE_WRITE 0x10001

#define DSISR_NOT_FOUND (1ULL << 30)
#define DSISR_PROTECTION (1ULL << 27)
#define DSISR_STORE (1ULL << 25)
#define ISI_SRR1_NOT_FOUND (1ULL << 30)
#define ISI_SRR1_NOEXEC (1ULL << 28)
#define ISI_SRR1_PROTECTION (1ULL << 27)

#define PTE_V 0x1ULL
#define PTE_H 0x2ULL
#define PTE_L 0x4ULL
#define PTE_R 0x100ULL
#define PTE_C 0x80ULL
#define PTE_N 0x4ULL
#define PTE_G 0x8ULL
#define PTE_PP 0x3ULL
#define PTE_RPN_MASK 0x0FFFFFFFFFFFF000ULL

#define SLB_KS 0x800ULL
#define SLB_KP 0x400ULL
#define SLB_N 0x200ULL
#define SLB_L 0x100ULL
#define SLB_ENTRIES 64

#define PROT_READ 1
#define PROT_WRITE 2
#define PROT_EXEC 4

/* Page flags (MachineMemory.code_flags) and page info (MachineMemory.code_info). */
#define CODE_EXEC 1          /* scanned and admitted: may be executed, must not be written */
#define CODE_NEXT_EXEC 2     /* the next page is CODE_EXEC */
#define CODE_GEN_ONE (1ULL << 16) /* info: generation (bumped at each release) << 16 */
#define CODE_WSTAMP 0xFFFFULL     /* info: low bits of the TLB epoch of the last W grant, + 1 */

/* How a word classifies (sensitive.classification_tables). */
#define SENS_NO 0
#define SENS_YES 1
#define SENS_UNLESS_NATIVE_SPR 2

/* Pairs (effective page, machine page) a context may execute: see `allowed`. */
#define ALLOW_SLOTS 256
#define ALLOW_PROBES 8

struct xen970_tlb_entry { /* Unicorn's struct uc_tlb_entry */
    uint64_t paddr;
    uint32_t perms;
};

/* What the cores of one machine know about the code in its memory (CodeMap). */
struct xen970_code {
    uint8_t *flags;        /* per machine page: CODE_EXEC | CODE_NEXT_EXEC */
    uint64_t *info;        /* per machine page: generation << 16 | W stamp */
    uint64_t epoch;        /* broadcast TLB invalidations so far (CoreBus.tlb_epoch) */
    uint8_t op19[1024];    /* class of each extended opcode of primary opcode 19 */
    uint8_t op31[1024];    /* ... and of primary opcode 31 */
    uint8_t spr_native[1024]; /* SPRs Unicorn may keep itself (regs.NATIVE_SPRS) */
};

struct xen970_mmu {
    uint8_t *mem;          /* host address of machine memory */
    uint64_t mem_size;     /* top of RAM: the machine address span mapped */
    uint64_t ram_low_end;  /* end of the RAM below the I/O hole */
    uint64_t ram_high_start; /* start of the RAM above it (mem_size when there is none) */
    uint64_t active;       /* a context is loaded (else every fill fails quietly) */
    uint64_t msr;
    uint64_t rma_base;
    uint64_t rma_size;
    uint64_t sdr1;
    uint64_t until_page;   /* Unicorn's `until` page: mapped to zero_page, r-x */
    uint64_t zero_page;
    uint64_t nslb;
    uint64_t slb_esid[SLB_ENTRIES];
    uint64_t slb_rs[SLB_ENTRIES];
    /* The first fault of the current emulation run (the architected interrupt). */
    uint64_t fault_set;
    uint64_t fault_vector;
    uint64_t fault_dar;
    uint64_t fault_dsisr;
    uint64_t fault_srr1;
    struct xen970_code *code;
    /* Machine page | 1 that a one-instruction step may fetch from and write without
     * admission: a store into the code page it sits in (Core._code_store); else 0. */
    uint64_t step_page;
    /* The (effective page | 1, machine page, generation) this context may execute. */
    uint64_t allow_ea[ALLOW_SLOTS];
    uint64_t allow_paddr[ALLOW_SLOTS];
    uint64_t allow_gen[ALLOW_SLOTS];
};

static uint64_t load_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

static uint32_t load_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void store_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static bool fault(struct xen970_mmu *st, uint64_t vector, uint64_t dar, uint64_t dsisr,
                  uint64_t srr1)
{
    if (!st->fault_set) {
        st->fault_set = 1;
        st->fault_vector = vector;
        st->fault_dar = dar;
        st->fault_dsisr = dsisr;
        st->fault_srr1 = srr1;
    }
    return false;
}

/* Whether machine addresses [addr, addr + n) are all RAM (MachineMemory.is_ram). */
static bool is_ram(const struct xen970_mmu *st, uint64_t addr, uint64_t n)
{
    uint64_t end = addr + n;
    if (end < addr)
        return false;
    return end <= st->ram_low_end || (st->ram_high_start <= addr && end <= st->mem_size);
}

static bool storage_fault(struct xen970_mmu *st, uint64_t ea, int access, uint64_t dsisr,
                          uint64_t srr1)
{
    if (access == ACCESS_FETCH)
        return fault(st, VEC_ISI, 0, 0, srr1);
    if (access == ACCESS_WRITE)
        dsisr |= DSISR_STORE;
    return fault(st, VEC_DSI, ea, dsisr, 0);
}

static bool check_pte(struct xen970_mmu *st, uint64_t rs, uint64_t addr, uint64_t ea,
                      int access, int shift, struct xen970_tlb_entry *out)
{
    uint8_t *p = st->mem + addr + 8;
    uint64_t lo = load_be64(p);
    int key = (rs & ((st->msr & MSR_PR) ? SLB_KP : SLB_KS)) != 0;
    uint64_t pp = lo & PTE_PP;
    int can_read = !(key && pp == 0);
    int can_write = (pp == 2) || (!key && (pp == 0 || pp == 1));
    if (access == ACCESS_FETCH) {
        if ((lo & (PTE_N | PTE_G)) || (rs & SLB_N))
            return fault(st, VEC_ISI, 0, 0, ISI_SRR1_NOEXEC);
        if (!can_read)
            return fault(st, VEC_ISI, 0, 0, ISI_SRR1_PROTECTION);
    } else if (access == ACCESS_WRITE) {
        if (!can_write)
            return fault(st, VEC_DSI, ea, DSISR_PROTECTION | DSISR_STORE, 0);
    } else if (!can_read) {
        return fault(st, VEC_DSI, ea, DSISR_PROTECTION, 0);
    }
    uint64_t size_mask = (1ULL << shift) - 1;
    uint64_t paddr = (lo & PTE_RPN_MASK & ~size_mask) | (ea & size_mask & ~0xFFFULL);
    if (!is_ram(st, paddr, 0x1000))
        return fault(st, VEC_MCHECK, paddr, 0, 0);
    /* Reference and change bits; a read maps writable only once C is set. */
    uint64_t nw = lo | PTE_R;
    if (access == ACCESS_WRITE)
        nw |= PTE_C;
    if (nw != lo)
        store_be64(p, nw);
    uint32_t perms = PROT_READ;
    if (can_write && (nw & PTE_C))
        perms |= PROT_WRITE;
    if (!(lo & (PTE_N | PTE_G)))
        perms |= PROT_EXEC;
    out->paddr = paddr;
    out->perms = perms;
    return true;
}

static bool hashed(struct xen970_mmu *st, uint64_t ea, int access, struct xen970_tlb_entry *out)
{
    uint64_t esid = ea >> 28;
    uint64_t rs = 0;
    int found = 0;
    for (uint64_t i = 0; i < st->nslb; i++) {
        if (st->slb_esid[i] == esid) {
            rs = st->slb_rs[i];
            found = 1;
            break;
        }
    }
    if (!found) {
        if (access == ACCESS_FETCH)
            return fault(st, VEC_ISEG, 0, 0, 0);
        return fault(st, VEC_DSEG, ea, 0, 0);
    }
    uint64_t vsid = rs >> 12;
    int large = (rs & SLB_L) != 0;
    int shift = large ? 24 : 12;
    uint64_t htab = st->sdr1 & 0x0FFFFFFFFFFC0000ULL;
    uint64_t n_ptegs = 1ULL << (11 + (st->sdr1 & 0x1F));
    uint64_t avpn = (vsid << 5) | ((ea >> 23) & 0x1F);
    if (large)
        avpn >>= 1;
    if (!is_ram(st, htab, n_ptegs * 128))
        return fault(st, VEC_MCHECK, htab, 0, 0);
    uint64_t h0 = (vsid & 0x7FFFFFFFFFULL) ^ ((ea & 0x0FFFFFFFULL) >> shift);
    for (int secondary = 0; secondary < 2; secondary++) {
        uint64_t h = secondary ? ~h0 : h0;
        uint64_t base = htab + (h & (n_ptegs - 1)) * 128;
        for (int slot = 0; slot < 8; slot++) {
            uint64_t addr = base + (uint64_t)slot * 16;
            uint64_t hi = load_be64(st->mem + addr);
            if (!(hi & PTE_V) || ((hi & PTE_H) != 0) != secondary || ((hi & PTE_L) != 0) != large)
                continue;
            if ((large ? (hi >> 8) : (hi >> 7)) != avpn)
                continue;
            return check_pte(st, rs, addr, ea, access, shift, out);
        }
    }
    return storage_fault(st, ea, access, DSISR_NOT_FOUND, ISI_SRR1_NOT_FOUND);
}

/* One translation, as Mmu.translate: true with *out filled, or false with the fault
 * recorded (unless one is already recorded for this run). */
bool xen970_mmu_translate(struct xen970_mmu *st, uint64_t ea, int access,
                          struct xen970_tlb_entry *out)
{
    int fetch = access == ACCESS_FETCH;
    if (st->msr & (fetch ? MSR_IR : MSR_DR))
        return hashed(st, ea, access, out);
    uint64_t off = ea & 0x0FFFFFFFFFFFFFFFULL;
    if (st->msr & MSR_HV) {
        if (!is_ram(st, off & ~0xFFFULL, 0x1000))
            return fault(st, VEC_MCHECK, off & ~0xFFFULL, 0, 0);
        out->paddr = off & ~0xFFFULL;
        out->perms = PROT_READ | PROT_WRITE | PROT_EXEC;
        return true;
    }
    if (off >= st->rma_size)
        return storage_fault(st, ea, access, DSISR_PROTECTION, ISI_SRR1_PROTECTION);
    out->paddr = (st->rma_base + off) & ~0xFFFULL;
    out->perms = PROT_READ | PROT_WRITE | PROT_EXEC;
    return true;
}

/* -- code pages ---------------------------------------------------------------- */

/* Whether `w` must be intercepted (sensitive.decode_sensitive is the reference). */
static int sensitive(const struct xen970_code *code, uint32_t w)
{
    uint32_t op = w >> 26;
    uint32_t xo = (w >> 1) & 0x3FF;
    int c;
    if (op == 19)
        c = code->op19[xo];
    else if (op == 31)
        c = code->op31[xo];
    else
        return 0;
    if (c == SENS_UNLESS_NATIVE_SPR)
        return !code->spr_native[((w >> 16) & 31) | (((w >> 11) & 31) << 5)];
    return c != SENS_NO;
}

static unsigned allow_home(uint64_t ea_page, uint64_t paddr)
{
    uint64_t h = ((ea_page >> 12) ^ (ea_page >> 40) ^ (paddr >> 12)) * 0x9E3779B97F4A7C15ULL;
    return (unsigned)(h >> 56) & (ALLOW_SLOTS - 1);
}

/* Whether this context was allowed to execute effective page `ea_page` as machine page
 * `paddr` in the page's current generation (its trap hooks are in place for that code). */
static bool allowed(const struct xen970_mmu *st, uint64_t ea_page, uint64_t paddr, uint64_t gen)
{
    unsigned home = allow_home(ea_page, paddr);
    for (unsigned i = 0; i < ALLOW_PROBES; i++) {
        unsigned s = (home + i) & (ALLOW_SLOTS - 1);
        if (st->allow_ea[s] == 0)
            return false;
        if (st->allow_ea[s] == (ea_page | 1) && st->allow_paddr[s] == paddr)
            return st->allow_gen[s] == gen;
    }
    return false;
}

/* Let this context execute `ea_page` as `paddr` in the page's current generation (the
 * core has scanned it and hooked its sensitive instructions at that address). */
void xen970_code_allow(struct xen970_mmu *st, uint64_t ea_page, uint64_t paddr)
{
    ea_page &= ~0xFFFULL;
    paddr &= ~0xFFFULL;
    unsigned home = allow_home(ea_page, paddr);
    unsigned slot = home;
    for (unsigned i = 0; i < ALLOW_PROBES; i++) {
        unsigned s = (home + i) & (ALLOW_SLOTS - 1);
        if (st->allow_ea[s] == 0 || (st->allow_ea[s] == (ea_page | 1) && st->allow_paddr[s] == paddr)) {
            slot = s;
            break;
        }
    }
    /* No room: the home slot's pair goes (it is admitted again when next fetched). */
    st->allow_ea[slot] = ea_page | 1;
    st->allow_paddr[slot] = paddr;
    st->allow_gen[slot] = st->code->info[paddr >> 12] >> 16;
}

/* The permissions a translation may have given what the page holds (see the header). */
static bool code_fill(struct xen970_mmu *st, uint64_t vaddr, int access,
                      struct xen970_tlb_entry *out)
{
    struct xen970_code *code = st->code;
    uint64_t page = out->paddr >> 12;
    int exec = code->flags[page] & CODE_EXEC;
    if (st->step_page && st->step_page == (out->paddr | 1))
        return true; /* the one store being stepped; the core forgets it all after */
    if (access == ACCESS_FETCH) {
        if (!exec || !allowed(st, vaddr & ~0xFFFULL, out->paddr, code->info[page] >> 16))
            return fault(st, VEC_CODE_SCAN, vaddr, out->paddr, 0);
        out->perms &= ~PROT_WRITE;
        return true;
    }
    /* Only a fetch maps a page executable: it is the one access that is checked. */
    out->perms &= ~PROT_EXEC;
    if (exec) {
        if (access != ACCESS_WRITE) {
            out->perms &= ~PROT_WRITE;
            return true;
        }
        /* Refused, so the store has not begun (a fill that stops emulation yet lets
         * the store finish leaves Unicorn mid-instruction: a stwcx. would be done twice). */
        return fault(st, VEC_CODE_WRITE, vaddr, out->paddr, 0);
    }
    if (out->perms & PROT_WRITE)
        code->info[page] = (code->info[page] & ~CODE_WSTAMP) | ((code->epoch + 1) & CODE_WSTAMP);
    return true;
}

/* For a trap hook: the instruction word at `ea` in the running context and whether it is
 * sensitive (1) or not (0); -1 when `ea` does not translate (nothing is recorded). */
int xen970_code_trap_word(struct xen970_mmu *st, uint64_t ea, uint32_t *word)
{
    struct xen970_tlb_entry e;
    uint64_t recorded = st->fault_set;
    st->fault_set = 1; /* a probe: the run's first fault stays what it was */
    bool ok = st->active && xen970_mmu_translate(st, ea, ACCESS_FETCH, &e);
    st->fault_set = recorded;
    if (!ok)
        return -1;
    *word = load_be32(st->mem + e.paddr + (ea & 0xFFC));
    return sensitive(st->code, *word);
}

/* Byte offsets of the sensitive words of the machine page at `paddr` into `out` (room
 * for 1024); returns how many there are. */
int xen970_code_scan(const struct xen970_code *code, const uint8_t *mem, uint64_t paddr,
                     uint16_t *out)
{
    int n = 0;
    const uint8_t *p = mem + (paddr & ~0xFFFULL);
    for (int off = 0; off < 0x1000; off += 4) {
        if (sensitive(code, load_be32(p + off)))
            out[n++] = (uint16_t)off;
    }
    return n;
}

/* Whether one word is sensitive (tests compare it with sensitive.decode_sensitive). */
int xen970_code_sensitive(const struct xen970_code *code, uint32_t word)
{
    return sensitive(code, word);
}

/* The UC_HOOK_TLB_FILL callback. */
bool xen970_mmu_fill(void *uc, uint64_t vaddr, int access, struct xen970_tlb_entry *out,
                     struct xen970_mmu *st)
{
    (void)uc;
    if (!st->active)
        return false;
    /* Unicorn fetches at its stop address; a data access to that page (an EA near 0 - n)
       is an ordinary one, translated (and refused) like any other.  The entry is
       execute-only, so a load after the fetch misses it and comes back here as a read. */
    if (vaddr == st->until_page && access == ACCESS_FETCH) {
        out->paddr = st->zero_page;
        out->perms = PROT_EXEC;
        return true;
    }
    if (!xen970_mmu_translate(st, vaddr, access, out))
        return false;
    return code_fill(st, vaddr, access, out);
}

static struct PyModuleDef mmu_module = {
    PyModuleDef_HEAD_INIT, "_mmu",
    "C TLB-fill hook for the 970's hashed page table (load with ctypes).", -1, NULL,
};

PyMODINIT_FUNC PyInit__mmu(void) { return PyModule_Create(&mmu_module); }
