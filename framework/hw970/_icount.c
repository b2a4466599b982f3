/*
 * Instruction counting and slice budgets for the emulated 970 cores.
 *
 * Unicorn has no instruction counter, and a Python block hook costs ~200 ns
 * per block.  This UC_HOOK_BLOCK callback, called from C, adds each block's
 * instruction count to a per-core counter and stops emulation once the slice
 * budget is used up, so slices end deterministically at block boundaries.
 * It is also a (trivial) CPython extension module so setuptools builds it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

typedef int (*uc_stop_fn)(void *uc);

struct xen970_icount {
    uint64_t executed;   /* instructions of every block entered this slice */
    uint64_t budget;     /* stop at the first block entered at or past this */
    uint64_t last_block; /* address of the block entered last */
    uint64_t last_size;  /* its size in bytes */
    uc_stop_fn stop;     /* uc_emu_stop */
    uint64_t stopped;    /* set when the budget stopped emulation */
};

void xen970_icount_block(void *uc, uint64_t address, uint32_t size,
                         struct xen970_icount *st)
{
    if (st->executed >= st->budget) {
        st->stopped = 1;
        st->last_block = address;
        st->last_size = 0;
        st->stop(uc);
        return;
    }
    st->executed += size >> 2;
    st->last_block = address;
    st->last_size = size;
}

static struct PyModuleDef icount_module = {
    PyModuleDef_HEAD_INIT, "_icount",
    "C block hook that counts instructions (load with ctypes).", -1, NULL,
};

PyMODINIT_FUNC PyInit__icount(void) { return PyModule_Create(&icount_module); }
