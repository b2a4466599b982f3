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
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>

typedef int (*uc_reg_fn)(void *uc, int regid, void *value);
typedef int (*uc_emu_start_fn)(void *uc, uint64_t begin, uint64_t until,
                               uint64_t timeout, size_t count);
typedef int (*uc_emu_stop_fn)(void *uc);
typedef int (*uc_ctl_fn)(void *uc, int control, ...);

/* uc_ctl's code for UC_CTL_TLB_FLUSH written with no argument (unicorn.h). */
#define UC_CTL_IO_WRITE 1
#define UC_CTL_TLB_FLUSH 11
#define CTL_TLB_FLUSH ((UC_CTL_IO_WRITE << 30) | UC_CTL_TLB_FLUSH)

typedef struct {
    PyObject_HEAD
    void *uc;
    uc_reg_fn reg_read;
    uc_reg_fn reg_write;
    uc_emu_start_fn emu_start;
    uc_emu_stop_fn emu_stop;
    uc_ctl_fn ctl;
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
} Glue;

/* -- hooks (Unicorn calls these with the GIL held: emu_start keeps it) ------- */

static void glue_keep_error(Glue *g)
{
    if (g->err_type == NULL) {
        PyErr_Fetch(&g->err_type, &g->err_value, &g->err_tb);
    } else {
        PyErr_Clear();
    }
    g->emu_stop(g->uc);
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

static void glue_hook_block(void *uc, uint64_t address, uint32_t size, Glue *g)
{
    if (g->executed >= g->budget) {
        g->stopped = 1;
        g->last_block = address;
        g->last_size = 0;
        g->emu_stop(uc);
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

static int Glue_init(Glue *g, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"uc", "reg_read", "reg_write", "emu_start", "emu_stop",
                            "ctl", "on_intr", "on_site", NULL};
    unsigned long long uc, rr, rw, es, est, ctl;
    PyObject *on_intr, *on_site;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "KKKKKKOO", names, &uc, &rr, &rw, &es,
                                     &est, &ctl, &on_intr, &on_site)) {
        return -1;
    }
    if (!uc || !rr || !rw || !es || !est || !ctl) {
        PyErr_SetString(PyExc_ValueError, "Glue: a Unicorn handle or function is NULL");
        return -1;
    }
    if (!PyCallable_Check(on_intr) || !PyCallable_Check(on_site)) {
        PyErr_SetString(PyExc_TypeError, "Glue: on_intr and on_site must be callable");
        return -1;
    }
    g->uc = (void *)(uintptr_t)uc;
    g->reg_read = (uc_reg_fn)(uintptr_t)rr;
    g->reg_write = (uc_reg_fn)(uintptr_t)rw;
    g->emu_start = (uc_emu_start_fn)(uintptr_t)es;
    g->emu_stop = (uc_emu_stop_fn)(uintptr_t)est;
    g->ctl = (uc_ctl_fn)(uintptr_t)ctl;
    Py_INCREF(on_intr);
    Py_XSETREF(g->on_intr, on_intr);
    Py_INCREF(on_site);
    Py_XSETREF(g->on_site, on_site);
    return 0;
}

static int Glue_traverse(Glue *g, visitproc visit, void *arg)
{
    Py_VISIT(g->on_intr);
    Py_VISIT(g->on_site);
    Py_VISIT(g->err_type);
    Py_VISIT(g->err_value);
    Py_VISIT(g->err_tb);
    return 0;
}

static int Glue_clear(Glue *g)
{
    Py_CLEAR(g->on_intr);
    Py_CLEAR(g->on_site);
    Py_CLEAR(g->err_type);
    Py_CLEAR(g->err_value);
    Py_CLEAR(g->err_tb);
    return 0;
}

static void Glue_dealloc(Glue *g)
{
    PyObject_GC_UnTrack(g);
    Glue_clear(g);
    Py_TYPE(g)->tp_free((PyObject *)g);
}

static PyObject *Glue_reg_read(Glue *g, PyObject *arg)
{
    int regid = _PyLong_AsInt(arg);
    if (regid == -1 && PyErr_Occurred()) {
        return NULL;
    }
    uint64_t value = 0;
    int err = g->reg_read(g->uc, regid, &value);
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
    int err = g->reg_write(g->uc, regid, &value);
    if (err) {
        glue_fail("uc_reg_write", err);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* emu_start(begin, until) -> Unicorn status; a handler's exception is raised. */
static PyObject *Glue_emu_start(Glue *g, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "emu_start(begin, until)");
        return NULL;
    }
    uint64_t begin = PyLong_AsUnsignedLongLongMask(args[0]);
    uint64_t until = PyLong_AsUnsignedLongLongMask(args[1]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    Py_CLEAR(g->err_type);
    Py_CLEAR(g->err_value);
    Py_CLEAR(g->err_tb);
    int status = g->emu_start(g->uc, begin, until, 0, 0);
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
    g->emu_stop(g->uc);
    Py_RETURN_NONE;
}

static PyObject *Glue_tlb_flush(Glue *g, PyObject *unused)
{
    (void)unused;
    int err = g->ctl(g->uc, CTL_TLB_FLUSH);
    if (err) {
        glue_fail("uc_ctl(UC_CTL_TLB_FLUSH)", err);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *Glue_set_handlers(Glue *g, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyCallable_Check(args[0]) || !PyCallable_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "set_handlers(on_intr, on_site): two callables");
        return NULL;
    }
    Py_INCREF(args[0]);
    Py_XSETREF(g->on_intr, args[0]);
    Py_INCREF(args[1]);
    Py_XSETREF(g->on_site, args[1]);
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
     "Emulate from begin until stopped; returns Unicorn's status."},
    {"emu_stop", (PyCFunction)Glue_emu_stop, METH_NOARGS, "Stop emulation."},
    {"tlb_flush", (PyCFunction)Glue_tlb_flush, METH_NOARGS, "Empty the emulated TLB."},
    {"set_handlers", (PyCFunction)(void (*)(void))Glue_set_handlers, METH_FASTCALL,
     "The callables the hooks call from now on (a context moved to another core)."},
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
    .tp_doc = "One Unicorn instance's hot calls and hooks (see _ucglue.c).",
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

static struct PyModuleDef glue_module = {
    PyModuleDef_HEAD_INIT, "_ucglue",
    "Unicorn calls and hooks for the emulated cores, without ctypes.", -1, NULL,
};

PyMODINIT_FUNC PyInit__ucglue(void)
{
    if (PyType_Ready(&GlueType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&glue_module);
    if (m == NULL) {
        return NULL;
    }
    Py_INCREF(&GlueType);
    if (PyModule_AddObject(m, "Glue", (PyObject *)&GlueType) < 0
        || PyModule_AddObject(m, "HOOK_INTR", PyLong_FromVoidPtr((void *)glue_hook_intr)) < 0
        || PyModule_AddObject(m, "HOOK_CODE", PyLong_FromVoidPtr((void *)glue_hook_code)) < 0
        || PyModule_AddObject(m, "HOOK_BLOCK",
                              PyLong_FromVoidPtr((void *)glue_hook_block)) < 0) {
        Py_DECREF(&GlueType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
