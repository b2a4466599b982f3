/*
 * The calls a Core makes into Unicorn on every hypercall, native routine and
 * slice, and the hooks Unicorn makes back, without ctypes.
 *
 * Why: a ctypes foreign call costs ~0.4 us of argument conversion and a ctypes
 * callback ~1.5 us (GIL hand-over, argument boxing); a timer tick makes about
 * twenty of the one and three of the other.  Glue calls the Unicorn functions
 * through pointers taken from the unicorn binding's own library (so there is
 * one libunicorn in the process), keeps the GIL while emulation runs, and
 * calls the Core's Python handlers straight from its hook trampolines.
 *
 * It also owns the instruction counter (the UC_HOOK_BLOCK hook that ends a
 * slice once its budget is used): the counters are attributes of the object.
 *
 * Trap hooks (HOOK_TRAP) sit on the addresses where a context's code has sensitive
 * instructions.  One address may hold other code in another address space, so the
 * trampoline asks `_mmu.c` what word the running context has there, and calls the Core
 * only for a sensitive one (with the word, which the Core emulates).
 *
 * EnginePool opens Unicorn instances ahead of need on a plain C thread.  Opening
 * one costs ~0.5 ms, nearly all of it the host kernel faulting in the engine's
 * fresh tables; a machine opens one per execution context, so building eight
 * 4-VCPU guests would otherwise stall the simulation for ~20 ms.  The thread
 * never touches Python objects or the GIL, and which engine a context gets does
 * not change what it computes, so runs stay deterministic.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <pthread.h>

typedef int (*uc_open_fn)(int arch, int mode, void **uc);
typedef int (*uc_close_fn)(void *uc);
typedef int (*uc_reg_fn)(void *uc, int regid, void *value);
typedef int (*uc_emu_start_fn)(void *uc, uint64_t begin, uint64_t until,
                               uint64_t timeout, size_t count);
typedef int (*uc_emu_stop_fn)(void *uc);
typedef int (*uc_ctl_fn)(void *uc, int control, ...);
typedef int (*uc_mem_map_ptr_fn)(void *uc, uint64_t address, size_t size, uint32_t perms,
                                 void *ptr);
typedef int (*uc_hook_add_fn)(void *uc, size_t *hh, int type, void *callback,
                              void *user_data, uint64_t begin, uint64_t end, ...);
typedef int (*uc_hook_del_fn)(void *uc, size_t hh);
/* _mmu.c's xen970_code_trap_word: 1 sensitive (word set), 0 not, -1 no translation. */
typedef int (*trap_word_fn)(void *mmu, uint64_t ea, uint32_t *word);

/* The binding's libunicorn functions and the uc_ctl codes we use, set once by
 * bind() (the codes come from the binding's constants, not from copies here). */
static struct {
    int bound;
    uc_open_fn open;
    uc_close_fn close;
    uc_reg_fn reg_read;
    uc_reg_fn reg_write;
    uc_emu_start_fn emu_start;
    uc_emu_stop_fn emu_stop;
    uc_ctl_fn ctl;
    uc_mem_map_ptr_fn mem_map_ptr;
    uc_hook_add_fn hook_add;
    uc_hook_del_fn hook_del;
    int ctl_tlb_flush, ctl_tb_flush, ctl_tlb_type, ctl_tcg_buffer_size;
} api;

typedef struct {
    PyObject_HEAD
    void *uc; /* owned: closed with this object */
    PyObject *on_intr; /* callable(intno) */
    PyObject *on_site; /* callable(address) */
    /* The first exception a handler raised during this emulation run. */
    PyObject *err_type, *err_value, *err_tb;
    /* Instruction counting (read and written by Core as attributes). */
    unsigned long long executed;   /* instructions of every block entered */
    unsigned long long budget;     /* stop at the first block entered at/past it */
    unsigned long long last_block; /* address of the block entered last */
    unsigned long long last_size;  /* its size in bytes */
    unsigned long long stopped;    /* the budget stopped emulation */
    /* After the counters, which the block hook touches on every block (placed after
     * them, these cost nothing there). */
    PyObject *on_trap; /* callable(address, word); word -1: unreadable */
    trap_word_fn trap_word; /* how the trap hook reads the running context's code */
    void *trap_state;       /* ... and the context's struct xen970_mmu */
} Glue;

/* -- hooks (Unicorn calls these with the GIL held: emu_start keeps it) ------- */

static void glue_keep_error(Glue *g)
{
    if (g->err_type == NULL) {
        PyErr_Fetch(&g->err_type, &g->err_value, &g->err_tb);
    } else {
        PyErr_Clear();
    }
    api.emu_stop(g->uc);
}

static void glue_call(Glue *g, PyObject *fn, unsigned long long arg)
{
    if (g->err_type != NULL) {
        return; /* emulation is stopping: run no more handlers */
    }
    PyObject *num = PyLong_FromUnsignedLongLong(arg);
    if (num == NULL) {
        glue_keep_error(g);
        return;
    }
    PyObject *res = PyObject_CallOneArg(fn, num);
    Py_DECREF(num);
    if (res == NULL) {
        glue_keep_error(g);
        return;
    }
    Py_DECREF(res);
}

static void glue_hook_intr(void *uc, uint32_t intno, Glue *g)
{
    (void)uc;
    glue_call(g, g->on_intr, intno);
}

static void glue_hook_code(void *uc, uint64_t address, uint32_t size, Glue *g)
{
    (void)uc;
    (void)size;
    glue_call(g, g->on_site, address);
}

static void glue_hook_trap(void *uc, uint64_t address, uint32_t size, Glue *g)
{
    (void)uc;
    (void)size;
    if (g->err_type != NULL) {
        return;
    }
    uint32_t word = 0;
    int kind = g->trap_word != NULL ? g->trap_word(g->trap_state, address, &word) : -1;
    if (kind == 0) {
        return; /* this context has an ordinary instruction here */
    }
    PyObject *args[2];
    args[0] = PyLong_FromUnsignedLongLong(address);
    args[1] = kind < 0 ? PyLong_FromLong(-1) : PyLong_FromUnsignedLong(word);
    PyObject *res = NULL;
    if (args[0] != NULL && args[1] != NULL) {
        res = PyObject_Vectorcall(g->on_trap, args, 2, NULL);
    }
    Py_XDECREF(args[0]);
    Py_XDECREF(args[1]);
    if (res == NULL) {
        glue_keep_error(g);
        return;
    }
    Py_DECREF(res);
}

/* Runs once per block executed: aligned to a cache line, since where the linker happens
 * to put it was measured to cost up to 9% of a compute-bound guest's speed. */
__attribute__((aligned(64))) static void glue_hook_block(void *uc, uint64_t address,
                                                        uint32_t size, Glue *g)
{
    if (g->executed >= g->budget) {
        g->stopped = 1;
        g->last_block = address;
        g->last_size = 0;
        api.emu_stop(uc);
        return;
    }
    g->executed += size >> 2;
    g->last_block = address;
    g->last_size = size;
}

/* -- the type ----------------------------------------------------------------- */

static int glue_fail(const char *what, int err)
{
    PyErr_Format(PyExc_RuntimeError, "%s failed: Unicorn error %d", what, err);
    return -1;
}

static int require_bound(void)
{
    if (!api.bound) {
        PyErr_SetString(PyExc_RuntimeError,
                        "_ucglue.bind() must be given the Unicorn functions first");
        return -1;
    }
    return 0;
}

static int Glue_init(Glue *g, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"uc", "on_intr", "on_site", "on_trap", NULL};
    unsigned long long uc;
    PyObject *on_intr, *on_site, *on_trap;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "KOOO", names, &uc, &on_intr, &on_site,
                                     &on_trap)) {
        return -1;
    }
    if (require_bound() < 0) {
        return -1;
    }
    if (!uc) {
        PyErr_SetString(PyExc_ValueError, "Glue: the Unicorn handle is NULL");
        return -1;
    }
    if (g->uc != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Glue: already owns a Unicorn instance");
        return -1;
    }
    if (!PyCallable_Check(on_intr) || !PyCallable_Check(on_site) || !PyCallable_Check(on_trap)) {
        PyErr_SetString(PyExc_TypeError, "Glue: on_intr, on_site and on_trap must be callable");
        return -1;
    }
    g->uc = (void *)(uintptr_t)uc;
    Py_INCREF(on_intr);
    Py_XSETREF(g->on_intr, on_intr);
    Py_INCREF(on_site);
    Py_XSETREF(g->on_site, on_site);
    Py_INCREF(on_trap);
    Py_XSETREF(g->on_trap, on_trap);
    return 0;
}

static int Glue_traverse(Glue *g, visitproc visit, void *arg)
{
    Py_VISIT(g->on_intr);
    Py_VISIT(g->on_site);
    Py_VISIT(g->on_trap);
    Py_VISIT(g->err_type);
    Py_VISIT(g->err_value);
    Py_VISIT(g->err_tb);
    return 0;
}

static int Glue_clear(Glue *g)
{
    Py_CLEAR(g->on_intr);
    Py_CLEAR(g->on_site);
    Py_CLEAR(g->on_trap);
    Py_CLEAR(g->err_type);
    Py_CLEAR(g->err_value);
    Py_CLEAR(g->err_tb);
    return 0;
}

static void Glue_dealloc(Glue *g)
{
    PyObject_GC_UnTrack(g);
    Glue_clear(g);
    if (g->uc != NULL) {
        api.close(g->uc);
        g->uc = NULL;
    }
    Py_TYPE(g)->tp_free((PyObject *)g);
}

static PyObject *Glue_reg_read(Glue *g, PyObject *arg)
{
    int regid = _PyLong_AsInt(arg);
    if (regid == -1 && PyErr_Occurred()) {
        return NULL;
    }
    uint64_t value = 0;
    int err = api.reg_read(g->uc, regid, &value);
    if (err) {
        glue_fail("uc_reg_read", err);
        return NULL;
    }
    return PyLong_FromUnsignedLongLong(value);
}

static PyObject *Glue_reg_write(Glue *g, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "reg_write(regid, value)");
        return NULL;
    }
    int regid = _PyLong_AsInt(args[0]);
    if (regid == -1 && PyErr_Occurred()) {
        return NULL;
    }
    uint64_t value = PyLong_AsUnsignedLongLongMask(args[1]);
    if (value == (uint64_t)-1 && PyErr_Occurred()) {
        return NULL;
    }
    int err = api.reg_write(g->uc, regid, &value);
    if (err) {
        glue_fail("uc_reg_write", err);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* emu_start(begin, until[, count]) -> Unicorn status; a handler's exception is raised.
 * A count (instructions) makes Unicorn hook every instruction until the next run
 * without one, which flushes its translations: for single steps only. */
static PyObject *Glue_emu_start(Glue *g, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 && nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "emu_start(begin, until[, count])");
        return NULL;
    }
    uint64_t begin = PyLong_AsUnsignedLongLongMask(args[0]);
    uint64_t until = PyLong_AsUnsignedLongLongMask(args[1]);
    size_t count = nargs == 3 ? PyLong_AsSize_t(args[2]) : 0;
    if (PyErr_Occurred()) {
        return NULL;
    }
    Py_CLEAR(g->err_type);
    Py_CLEAR(g->err_value);
    Py_CLEAR(g->err_tb);
    int status = api.emu_start(g->uc, begin, until, 0, count);
    if (g->err_type != NULL) {
        PyErr_Restore(g->err_type, g->err_value, g->err_tb);
        g->err_type = g->err_value = g->err_tb = NULL;
        return NULL;
    }
    return PyLong_FromLong(status);
}

static PyObject *Glue_emu_stop(Glue *g, PyObject *unused)
{
    (void)unused;
    api.emu_stop(g->uc);
    Py_RETURN_NONE;
}

/* A uc_ctl write that takes no argument (the flushes). */
static PyObject *glue_ctl(Glue *g, int code, const char *what)
{
    int err = api.ctl(g->uc, code);
    if (err) {
        glue_fail(what, err);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *Glue_tlb_flush(Glue *g, PyObject *unused)
{
    (void)unused;
    return glue_ctl(g, api.ctl_tlb_flush, "uc_ctl(UC_CTL_TLB_FLUSH)");
}

static PyObject *Glue_tb_flush(Glue *g, PyObject *unused)
{
    (void)unused;
    return glue_ctl(g, api.ctl_tb_flush, "uc_ctl(UC_CTL_TB_FLUSH)");
}

/* hook_add(type, callback, user_data, begin, end) -> the hook's handle. */
static PyObject *Glue_hook_add(Glue *g, PyObject *args)
{
    int htype;
    unsigned long long fn, user_data, begin, end;
    if (!PyArg_ParseTuple(args, "iKKKK", &htype, &fn, &user_data, &begin, &end)) {
        return NULL;
    }
    if (!fn) {
        PyErr_SetString(PyExc_ValueError, "hook_add: the callback is NULL");
        return NULL;
    }
    size_t handle = 0;
    int err = api.hook_add(g->uc, &handle, htype, (void *)(uintptr_t)fn,
                           (void *)(uintptr_t)user_data, (uint64_t)begin, (uint64_t)end);
    if (err) {
        PyErr_Format(PyExc_RuntimeError, "uc_hook_add(type %d) failed: Unicorn error %d",
                     htype, err);
        return NULL;
    }
    return PyLong_FromSize_t(handle);
}

/* hook_del(handle): remove a hook added with hook_add. */
static PyObject *Glue_hook_del(Glue *g, PyObject *arg)
{
    size_t handle = PyLong_AsSize_t(arg);
    if (handle == (size_t)-1 && PyErr_Occurred()) {
        return NULL;
    }
    int err = api.hook_del(g->uc, handle);
    if (err) {
        glue_fail("uc_hook_del", err);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *Glue_set_handlers(Glue *g, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyCallable_Check(args[0]) || !PyCallable_Check(args[1])
        || !PyCallable_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError,
                        "set_handlers(on_intr, on_site, on_trap): three callables");
        return NULL;
    }
    Py_INCREF(args[0]);
    Py_XSETREF(g->on_intr, args[0]);
    Py_INCREF(args[1]);
    Py_XSETREF(g->on_site, args[1]);
    Py_INCREF(args[2]);
    Py_XSETREF(g->on_trap, args[2]);
    Py_RETURN_NONE;
}

/* set_trap_check(trap_word, mmu_state): how trap hooks read this context's code. */
static PyObject *Glue_set_trap_check(Glue *g, PyObject *args)
{
    unsigned long long fn, state;
    if (!PyArg_ParseTuple(args, "KK", &fn, &state)) {
        return NULL;
    }
    if (!fn || !state) {
        PyErr_SetString(PyExc_ValueError, "set_trap_check: NULL function or state");
        return NULL;
    }
    g->trap_word = (trap_word_fn)(uintptr_t)fn;
    g->trap_state = (void *)(uintptr_t)state;
    Py_RETURN_NONE;
}

static PyObject *Glue_address(Glue *g, void *closure)
{
    (void)closure;
    return PyLong_FromVoidPtr(g);
}

static PyMethodDef Glue_methods[] = {
    {"reg_read", (PyCFunction)Glue_reg_read, METH_O, "A register's value."},
    {"reg_write", (PyCFunction)(void (*)(void))Glue_reg_write, METH_FASTCALL,
     "Write a register (a PC write inside a hook redirects emulation)."},
    {"emu_start", (PyCFunction)(void (*)(void))Glue_emu_start, METH_FASTCALL,
     "Emulate from begin until stopped (or count instructions); returns Unicorn's status."},
    {"emu_stop", (PyCFunction)Glue_emu_stop, METH_NOARGS, "Stop emulation."},
    {"tlb_flush", (PyCFunction)Glue_tlb_flush, METH_NOARGS, "Empty the emulated TLB."},
    {"tb_flush", (PyCFunction)Glue_tb_flush, METH_NOARGS, "Forget all translated code."},
    {"hook_add", (PyCFunction)Glue_hook_add, METH_VARARGS,
     "Register a C hook: (type, callback, user_data, begin, end) -> handle."},
    {"hook_del", (PyCFunction)Glue_hook_del, METH_O, "Remove a hook by its handle."},
    {"set_handlers", (PyCFunction)(void (*)(void))Glue_set_handlers, METH_FASTCALL,
     "The callables the hooks call from now on (a context moved to another core)."},
    {"set_trap_check", (PyCFunction)Glue_set_trap_check, METH_VARARGS,
     "(trap_word, mmu_state): the C function and state trap hooks read code with."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Glue_members[] = {
    {"executed", T_ULONGLONG, offsetof(Glue, executed), 0, NULL},
    {"budget", T_ULONGLONG, offsetof(Glue, budget), 0, NULL},
    {"last_block", T_ULONGLONG, offsetof(Glue, last_block), 0, NULL},
    {"last_size", T_ULONGLONG, offsetof(Glue, last_size), 0, NULL},
    {"stopped", T_ULONGLONG, offsetof(Glue, stopped), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef Glue_getset[] = {
    {"address", (getter)Glue_address, NULL,
     "This object's address: the user data the hooks expect.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject GlueType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "framework.hw970._ucglue.Glue",
    .tp_doc = "One Unicorn instance (owned) with its hot calls and hooks (see _ucglue.c).",
    .tp_basicsize = sizeof(Glue),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Glue_init,
    .tp_dealloc = (destructor)Glue_dealloc,
    .tp_traverse = (traverseproc)Glue_traverse,
    .tp_clear = (inquiry)Glue_clear,
    .tp_methods = Glue_methods,
    .tp_members = Glue_members,
    .tp_getset = Glue_getset,
};

/* -- binding the library ------------------------------------------------------ */

/* bind(open, close, reg_read, reg_write, emu_start, emu_stop, ctl, mem_map_ptr,
 *      hook_add, hook_del, ctl_tlb_flush, ctl_tb_flush, ctl_tlb_type, ctl_tcg_buffer_size) */
static PyObject *glue_bind(PyObject *module, PyObject *args)
{
    (void)module;
    unsigned long long f[10];
    int codes[4];
    if (!PyArg_ParseTuple(args, "KKKKKKKKKKiiii", &f[0], &f[1], &f[2], &f[3], &f[4], &f[5],
                          &f[6], &f[7], &f[8], &f[9], &codes[0], &codes[1], &codes[2],
                          &codes[3])) {
        return NULL;
    }
    for (int i = 0; i < 10; i++) {
        if (!f[i]) {
            PyErr_Format(PyExc_ValueError, "bind: Unicorn function %d is NULL", i);
            return NULL;
        }
    }
    if (api.bound) {
        /* Bound again (another import path): it must be the same library. */
        if (api.open != (uc_open_fn)(uintptr_t)f[0]) {
            PyErr_SetString(PyExc_RuntimeError, "bind: a different libunicorn is bound");
            return NULL;
        }
        Py_RETURN_NONE;
    }
    api.open = (uc_open_fn)(uintptr_t)f[0];
    api.close = (uc_close_fn)(uintptr_t)f[1];
    api.reg_read = (uc_reg_fn)(uintptr_t)f[2];
    api.reg_write = (uc_reg_fn)(uintptr_t)f[3];
    api.emu_start = (uc_emu_start_fn)(uintptr_t)f[4];
    api.emu_stop = (uc_emu_stop_fn)(uintptr_t)f[5];
    api.ctl = (uc_ctl_fn)(uintptr_t)f[6];
    api.mem_map_ptr = (uc_mem_map_ptr_fn)(uintptr_t)f[7];
    api.hook_add = (uc_hook_add_fn)(uintptr_t)f[8];
    api.hook_del = (uc_hook_del_fn)(uintptr_t)f[9];
    api.ctl_tlb_flush = codes[0];
    api.ctl_tb_flush = codes[1];
    api.ctl_tlb_type = codes[2];
    api.ctl_tcg_buffer_size = codes[3];
    api.bound = 1;
    Py_RETURN_NONE;
}

/* -- engines opened ahead of need ---------------------------------------------- */

#define POOL_MAX 64

/* How to open an engine: all plain data, readable without the GIL. */
typedef struct {
    int arch, mode, tlb_type;
    unsigned int tcg_bytes, perms;
    uint64_t mem_size;
    void *mem_ptr;
} Recipe;

static int engine_open(const Recipe *r, void **out)
{
    void *uc = NULL;
    int err = api.open(r->arch, r->mode, &uc);
    if (err) {
        return err;
    }
    /* Mapping the memory is what initialises the engine (the costly part). */
    if ((err = api.ctl(uc, api.ctl_tcg_buffer_size, r->tcg_bytes))
        || (err = api.mem_map_ptr(uc, 0, (size_t)r->mem_size, r->perms, r->mem_ptr))
        || (err = api.ctl(uc, api.ctl_tlb_type, r->tlb_type))) {
        api.close(uc);
        return err;
    }
    *out = uc;
    return 0;
}

typedef struct {
    PyObject_HEAD
    Recipe r;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int initialised; /* lock and wake exist */
    int started;     /* the thread runs (or ran) and must be joined */
    int stop;
    int error;       /* the Unicorn error that stopped the thread, 0 if none */
    int spare;       /* engines to keep ready */
    int n_ready;
    void *ready[POOL_MAX];
    pthread_t thread;
    unsigned long long ahead, on_demand;
    PyObject *weakrefs;
} EnginePool;

static void *pool_main(void *arg)
{
    EnginePool *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->stop && p->n_ready >= p->spare) {
            pthread_cond_wait(&p->wake, &p->lock);
        }
        if (p->stop) {
            break;
        }
        pthread_mutex_unlock(&p->lock);
        void *uc = NULL;
        int err = engine_open(&p->r, &uc);
        pthread_mutex_lock(&p->lock);
        if (err) {
            p->error = err;
            break;
        }
        if (p->stop) {
            api.close(uc);
            break;
        }
        p->ready[p->n_ready++] = uc;
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

static int EnginePool_init(EnginePool *p, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"arch",     "mode",     "tcg_bytes", "tlb_type",
                            "perms",    "mem_ptr",  "mem_size",  "spare", NULL};
    int arch, mode, tlb_type, spare;
    unsigned int tcg_bytes, perms;
    unsigned long long mem_ptr, mem_size;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iiIiIKKi", names, &arch, &mode,
                                     &tcg_bytes, &tlb_type, &perms, &mem_ptr, &mem_size,
                                     &spare)) {
        return -1;
    }
    if (require_bound() < 0) {
        return -1;
    }
    if (p->initialised) {
        PyErr_SetString(PyExc_RuntimeError, "EnginePool: already initialised");
        return -1;
    }
    if (spare < 0 || spare > POOL_MAX) {
        PyErr_Format(PyExc_ValueError, "EnginePool: spare %d is outside 0..%d", spare,
                     POOL_MAX);
        return -1;
    }
    if (!mem_ptr || !mem_size) {
        PyErr_SetString(PyExc_ValueError, "EnginePool: no machine memory to map");
        return -1;
    }
    p->r.arch = arch;
    p->r.mode = mode;
    p->r.tlb_type = tlb_type;
    p->r.tcg_bytes = tcg_bytes;
    p->r.perms = perms;
    p->r.mem_ptr = (void *)(uintptr_t)mem_ptr;
    p->r.mem_size = (uint64_t)mem_size;
    p->spare = spare;
    if (pthread_mutex_init(&p->lock, NULL) || pthread_cond_init(&p->wake, NULL)) {
        PyErr_SetString(PyExc_OSError, "EnginePool: cannot create its lock");
        return -1;
    }
    p->initialised = 1;
    if (spare > 0) {
        int err = pthread_create(&p->thread, NULL, pool_main, p);
        if (err) {
            PyErr_Format(PyExc_OSError, "EnginePool: cannot start its thread (errno %d)", err);
            return -1;
        }
        p->started = 1;
    }
    return 0;
}

/* Stop the thread and close the engines nobody took (idempotent). */
static void pool_shutdown(EnginePool *p)
{
    if (!p->initialised) {
        return;
    }
    pthread_mutex_lock(&p->lock);
    p->stop = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    if (p->started) {
        Py_BEGIN_ALLOW_THREADS
        pthread_join(p->thread, NULL);
        Py_END_ALLOW_THREADS
        p->started = 0;
    }
    while (p->n_ready > 0) {
        api.close(p->ready[--p->n_ready]);
    }
}

static PyObject *EnginePool_take(EnginePool *p, PyObject *unused)
{
    (void)unused;
    if (!p->initialised) {
        PyErr_SetString(PyExc_RuntimeError, "EnginePool: not initialised");
        return NULL;
    }
    void *uc = NULL;
    pthread_mutex_lock(&p->lock);
    if (p->n_ready > 0) {
        uc = p->ready[--p->n_ready];
        p->ahead++;
        pthread_cond_signal(&p->wake);
    }
    int thread_error = p->error;
    pthread_mutex_unlock(&p->lock);
    if (uc == NULL) {
        int err = engine_open(&p->r, &uc);
        if (err) {
            PyErr_Format(PyExc_RuntimeError,
                         "cannot open a Unicorn PPC64 engine: Unicorn error %d%s", err,
                         thread_error ? " (the engine thread failed the same way)" : "");
            return NULL;
        }
        p->on_demand++;
    }
    return PyLong_FromVoidPtr(uc);
}

static PyObject *EnginePool_close(EnginePool *p, PyObject *unused)
{
    (void)unused;
    pool_shutdown(p);
    Py_RETURN_NONE;
}

/* In a child forked while the pool existed: the thread did not come along, and the lock
 * may have been held by it at the fork.  Make fresh sync objects and open engines on
 * demand from now on (the engines already opened were copied and stay usable). */
static PyObject *EnginePool_after_fork(EnginePool *p, PyObject *unused)
{
    (void)unused;
    if (!p->initialised) {
        Py_RETURN_NONE;
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    p->started = 0;
    p->stop = 1;
    Py_RETURN_NONE;
}

static PyObject *EnginePool_ready(EnginePool *p, void *closure)
{
    (void)closure;
    if (!p->initialised) {
        return PyLong_FromLong(0);
    }
    pthread_mutex_lock(&p->lock);
    int n = p->n_ready;
    pthread_mutex_unlock(&p->lock);
    return PyLong_FromLong(n);
}

static void EnginePool_dealloc(EnginePool *p)
{
    if (p->weakrefs != NULL) {
        PyObject_ClearWeakRefs((PyObject *)p);
    }
    pool_shutdown(p);
    if (p->initialised) {
        pthread_mutex_destroy(&p->lock);
        pthread_cond_destroy(&p->wake);
        p->initialised = 0;
    }
    Py_TYPE(p)->tp_free((PyObject *)p);
}

static PyMethodDef EnginePool_methods[] = {
    {"take", (PyCFunction)EnginePool_take, METH_NOARGS,
     "An opened engine's handle (now owned by the caller: give it to a Glue)."},
    {"close", (PyCFunction)EnginePool_close, METH_NOARGS,
     "Stop the thread and close the engines still waiting."},
    {"after_fork", (PyCFunction)EnginePool_after_fork, METH_NOARGS,
     "In a forked child: forget the parent's thread; open engines on demand."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef EnginePool_members[] = {
    {"ahead", T_ULONGLONG, offsetof(EnginePool, ahead), READONLY,
     "Engines handed out that the thread had opened ahead."},
    {"on_demand", T_ULONGLONG, offsetof(EnginePool, on_demand), READONLY,
     "Engines opened by take() itself because none was ready."},
    {"spare", T_INT, offsetof(EnginePool, spare), READONLY, "Engines kept ready."},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef EnginePool_getset[] = {
    {"ready", (getter)EnginePool_ready, NULL, "Engines opened and waiting now.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject EnginePoolType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "framework.hw970._ucglue.EnginePool",
    .tp_doc = "Unicorn engines over one machine memory, opened ahead by a C thread.",
    .tp_basicsize = sizeof(EnginePool),
    .tp_weaklistoffset = offsetof(EnginePool, weakrefs),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)EnginePool_init,
    .tp_dealloc = (destructor)EnginePool_dealloc,
    .tp_methods = EnginePool_methods,
    .tp_members = EnginePool_members,
    .tp_getset = EnginePool_getset,
};

static PyMethodDef module_methods[] = {
    {"bind", glue_bind, METH_VARARGS,
     "Give the glue the binding's libunicorn functions and uc_ctl codes (once)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef glue_module = {
    PyModuleDef_HEAD_INIT, "_ucglue",
    "Unicorn calls and hooks for the emulated cores, without ctypes.", -1, module_methods,
};

PyMODINIT_FUNC PyInit__ucglue(void)
{
    if (PyType_Ready(&GlueType) < 0 || PyType_Ready(&EnginePoolType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&glue_module);
    if (m == NULL) {
        return NULL;
    }
    Py_INCREF(&GlueType);
    Py_INCREF(&EnginePoolType);
    if (PyModule_AddObject(m, "Glue", (PyObject *)&GlueType) < 0
        || PyModule_AddObject(m, "EnginePool", (PyObject *)&EnginePoolType) < 0
        || PyModule_AddObject(m, "HOOK_INTR", PyLong_FromVoidPtr((void *)glue_hook_intr)) < 0
        || PyModule_AddObject(m, "HOOK_CODE", PyLong_FromVoidPtr((void *)glue_hook_code)) < 0
        || PyModule_AddObject(m, "HOOK_TRAP", PyLong_FromVoidPtr((void *)glue_hook_trap)) < 0
        || PyModule_AddObject(m, "HOOK_BLOCK",
                              PyLong_FromVoidPtr((void *)glue_hook_block)) < 0) {
        Py_DECREF(&GlueType);
        Py_DECREF(&EnginePoolType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
