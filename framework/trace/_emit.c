/*
 * The recorder's emit, in C.
 *
 * Every layer calls emit several times per simulated event (19 records per timer tick,
 * ~21 per network packet), so a Python-level function frame per record is a measurable
 * share of the simulator's time.  Emitter(records) is a callable bound to one list:
 * emitter(kind, t_ns, cpu, dom, vcpu, f0=0, f1=0, f2=0, f3=0, text=None) appends the
 * flat 10-tuple that framework/trace/recorder.py documents.  It is called through
 * vectorcall, with no functools.partial in between (whose argument copying cost as much
 * as the append).  Nothing is checked here beyond the argument count: the schema is
 * checked once, when the records become columns.
 *
 * A record that holds only atomic values (ints, strings, floats, bytes, None) cannot
 * be part of a reference cycle, so it is untracked by the cyclic GC at once: the
 * simulator's young-generation collections then scan the step's real garbage, not the
 * thousands of records the step appended.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>

#define RECORD_LEN 10
#define TEXT_SLOT 9

typedef struct {
    PyObject_HEAD
    PyObject *records; /* list */
    vectorcallfunc vectorcall;
} Emitter;

static int is_atomic(PyObject *o)
{
    return PyLong_CheckExact(o) || PyUnicode_CheckExact(o) || o == Py_None
           || PyFloat_CheckExact(o) || PyBytes_CheckExact(o) || PyBool_Check(o);
}

static PyObject *Emitter_call(Emitter *self, PyObject *const *args, size_t nargsf,
                              PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    /* kind, t_ns, cpu, dom, vcpu: 5 required; then up to f0..f3 and text. */
    if (nargs < 5 || nargs > RECORD_LEN) {
        PyErr_Format(PyExc_TypeError,
                     "emit takes kind, t_ns, cpu, dom, vcpu, up to 4 fields and text "
                     "(%zd positional arguments given)", nargs);
        return NULL;
    }
    PyObject *text = NULL;
    if (kwnames != NULL) {
        Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
        for (Py_ssize_t i = 0; i < nkw; i++) {
            PyObject *name = PyTuple_GET_ITEM(kwnames, i);
            if (!PyUnicode_Check(name) || PyUnicode_CompareWithASCIIString(name, "text") != 0
                || nargs == RECORD_LEN || text != NULL) {
                PyErr_Format(PyExc_TypeError, "emit got an unexpected keyword argument %R",
                             name);
                return NULL;
            }
            text = args[nargs + i];
        }
    }
    PyObject *record = PyTuple_New(RECORD_LEN);
    if (record == NULL)
        return NULL;
    int atomic = 1;
    Py_ssize_t i = 0;
    for (; i < nargs && i < TEXT_SLOT; i++) {
        PyObject *v = args[i];
        atomic = atomic && is_atomic(v);
        Py_INCREF(v);
        PyTuple_SET_ITEM(record, i, v);
    }
    PyObject *zero = PyLong_FromLong(0); /* a cached small int */
    for (; i < TEXT_SLOT; i++) {
        Py_INCREF(zero);
        PyTuple_SET_ITEM(record, i, zero);
    }
    Py_DECREF(zero);
    PyObject *t = nargs == RECORD_LEN ? args[TEXT_SLOT] : (text != NULL ? text : Py_None);
    atomic = atomic && is_atomic(t);
    Py_INCREF(t);
    PyTuple_SET_ITEM(record, TEXT_SLOT, t);
    if (atomic && PyObject_GC_IsTracked(record)) {
        PyObject_GC_UnTrack(record);
    }
    int err = PyList_Append(self->records, record);
    Py_DECREF(record);
    if (err < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *Emitter_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"records", NULL};
    PyObject *records;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!", names, &PyList_Type, &records)) {
        return NULL;
    }
    Emitter *self = (Emitter *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    Py_INCREF(records);
    self->records = records;
    self->vectorcall = (vectorcallfunc)Emitter_call;
    return (PyObject *)self;
}

static int Emitter_traverse(Emitter *self, visitproc visit, void *arg)
{
    Py_VISIT(self->records);
    return 0;
}

static int Emitter_clear(Emitter *self)
{
    Py_CLEAR(self->records);
    return 0;
}

static void Emitter_dealloc(Emitter *self)
{
    PyObject_GC_UnTrack(self);
    Emitter_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Emitter_get_records(Emitter *self, void *closure)
{
    (void)closure;
    if (self->records == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Emitter: cleared");
        return NULL;
    }
    Py_INCREF(self->records);
    return self->records;
}

static PyGetSetDef Emitter_getset[] = {
    {"records", (getter)Emitter_get_records, NULL, "The list records are appended to.",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject EmitterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "framework.trace._emit.Emitter",
    .tp_doc = "Emitter(records): a callable appending one trace record tuple per call.",
    .tp_basicsize = sizeof(Emitter),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_vectorcall_offset = offsetof(Emitter, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_new = Emitter_new,
    .tp_dealloc = (destructor)Emitter_dealloc,
    .tp_traverse = (traverseproc)Emitter_traverse,
    .tp_clear = (inquiry)Emitter_clear,
    .tp_getset = Emitter_getset,
};

static struct PyModuleDef emit_module = {
    PyModuleDef_HEAD_INIT, "_emit", "The trace recorder's emit, in C.", -1, NULL,
};

PyMODINIT_FUNC PyInit__emit(void)
{
    if (PyType_Ready(&EmitterType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&emit_module);
    if (m == NULL) {
        return NULL;
    }
    Py_INCREF(&EmitterType);
    if (PyModule_AddObject(m, "Emitter", (PyObject *)&EmitterType) < 0) {
        Py_DECREF(&EmitterType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
