/*
 * The recorder's emit, in C.
 *
 * Every layer calls emit several times per simulated event (21 records per event-channel
 * round trip, ~26 per block request), so a Python-level function frame per record is a
 * measurable share of the simulator's time.  emit_into(records, kind, t_ns, cpu, dom,
 * vcpu, f0=0, f1=0, f2=0, f3=0, text=None) appends the flat 10-tuple that
 * framework/trace/recorder.py documents; Recorder binds `records` with functools.partial.
 * Nothing is checked here beyond the argument count: the schema is checked once, when
 * the records become columns.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define RECORD_LEN 10
#define TEXT_SLOT 9

static PyObject *emit_into(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames)
{
    (void)self;
    /* records, kind, t_ns, cpu, dom, vcpu: 6 required; then up to f0..f3 and text. */
    if (nargs < 6 || nargs > 6 + 5) {
        PyErr_Format(PyExc_TypeError,
                     "emit takes kind, t_ns, cpu, dom, vcpu, up to 4 fields and text "
                     "(%zd positional arguments given)", nargs - 1);
        return NULL;
    }
    PyObject *records = args[0];
    if (!PyList_Check(records)) {
        PyErr_SetString(PyExc_TypeError, "emit_into: records must be a list");
        return NULL;
    }
    PyObject *text = NULL;
    if (kwnames != NULL) {
        Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
        for (Py_ssize_t i = 0; i < nkw; i++) {
            PyObject *name = PyTuple_GET_ITEM(kwnames, i);
            if (!PyUnicode_Check(name) || PyUnicode_CompareWithASCIIString(name, "text") != 0
                || nargs == 6 + 5 || text != NULL) {
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
    Py_ssize_t i = 0;
    for (; i < nargs - 1 && i < TEXT_SLOT; i++) {
        Py_INCREF(args[i + 1]);
        PyTuple_SET_ITEM(record, i, args[i + 1]);
    }
    if (nargs - 1 == RECORD_LEN) { /* text given positionally */
        Py_INCREF(args[RECORD_LEN]);
        PyTuple_SET_ITEM(record, TEXT_SLOT, args[RECORD_LEN]);
    }
    PyObject *zero = PyLong_FromLong(0); /* a cached small int */
    for (; i < TEXT_SLOT; i++) {
        Py_INCREF(zero);
        PyTuple_SET_ITEM(record, i, zero);
    }
    Py_DECREF(zero);
    if (nargs - 1 < RECORD_LEN) {
        PyObject *t = text != NULL ? text : Py_None;
        Py_INCREF(t);
        PyTuple_SET_ITEM(record, TEXT_SLOT, t);
    }
    int err = PyList_Append(records, record);
    Py_DECREF(record);
    if (err < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef emit_methods[] = {
    {"emit_into", (PyCFunction)(void (*)(void))emit_into, METH_FASTCALL | METH_KEYWORDS,
     "emit_into(records, kind, t_ns, cpu, dom, vcpu, f0=0, f1=0, f2=0, f3=0, text=None):"
     " append one trace record tuple to `records`."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef emit_module = {
    PyModuleDef_HEAD_INIT, "_emit", "The trace recorder's emit, in C.", -1, emit_methods,
};

PyMODINIT_FUNC PyInit__emit(void) { return PyModule_Create(&emit_module); }
