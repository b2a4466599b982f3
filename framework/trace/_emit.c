/*
 * The recorder's store and emit, in C.
 *
 * Every layer calls emit several times per simulated event (19 records per timer tick,
 * ~21 per network packet).  Emitter() is a callable, called through vectorcall:
 * emitter(kind, t_ns, cpu, dom, vcpu, f0=0, f1=0, f2=0, f3=0, text=None) appends one
 * record to nine int64 columns and a column of text objects (NULL for None).
 *
 * Why columns and not a list of tuples: a tuple record with its boxed time costs ~200
 * bytes of fresh Python heap, and on these machines first-touch page faults of a growing
 * trace were ~10% of a run; here a record is 80 bytes in a few large buffers, with no
 * object to allocate, track or free.  The columns become numpy arrays in one copy
 * (`columns()`), and `records()` rebuilds the flat 10-tuples recorder.py documents.
 *
 * What is checked here: the argument count, and that each number is an int that fits in
 * 64 bits (values in [2**63, 2**64), register images, keep their bit pattern).  The
 * schema (kinds, fields per kind, int16 ids) is checked once, when the records become
 * columns.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define RECORD_LEN 10
#define TEXT_SLOT 9
#define NCOLS 9 /* kind, t_ns, cpu, dom, vcpu, f0..f3 */
#define FIRST_CAPACITY 4096

static const char *const COLUMN_NAMES[NCOLS] = {"kind", "t_ns", "cpu", "dom", "vcpu",
                                                "f0",   "f1",   "f2",  "f3"};

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    Py_ssize_t n, cap;
    int64_t *cols[NCOLS];
    PyObject **text; /* owned references; NULL stands for None */
} Emitter;

static int grow(Emitter *self)
{
    Py_ssize_t cap = self->cap ? self->cap * 2 : FIRST_CAPACITY;
    for (int c = 0; c < NCOLS; c++) {
        int64_t *col = PyMem_RawRealloc(self->cols[c], (size_t)cap * sizeof(int64_t));
        if (col == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->cols[c] = col;
    }
    PyObject **text = PyMem_RawRealloc(self->text, (size_t)cap * sizeof(PyObject *));
    if (text == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->text = text;
    self->cap = cap;
    return 0;
}

/* An int's 64-bit image: int64 values as they are, [2**63, 2**64) as their bits. */
static int to_bits(PyObject *v, int column, int64_t *out)
{
    if (!PyLong_Check(v)) {
        PyErr_Format(PyExc_TypeError, "trace %s must be an int, not %.80s", COLUMN_NAMES[column],
                     Py_TYPE(v)->tp_name);
        return -1;
    }
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (!overflow) {
        if (x == -1 && PyErr_Occurred()) {
            return -1;
        }
        *out = (int64_t)x;
        return 0;
    }
    if (overflow > 0) {
        unsigned long long u = PyLong_AsUnsignedLongLong(v);
        if (!(u == (unsigned long long)-1 && PyErr_Occurred())) {
            *out = (int64_t)u;
            return 0;
        }
        PyErr_Clear();
    }
    PyErr_Format(PyExc_OverflowError, "trace %s value %R does not fit in 64 bits",
                 COLUMN_NAMES[column], v);
    return -1;
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
    PyObject *text = nargs == RECORD_LEN ? args[TEXT_SLOT] : NULL;
    if (kwnames != NULL) {
        Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
        for (Py_ssize_t i = 0; i < nkw; i++) {
            PyObject *name = PyTuple_GET_ITEM(kwnames, i);
            if (!PyUnicode_Check(name) || PyUnicode_CompareWithASCIIString(name, "text") != 0
                || nargs == RECORD_LEN || i > 0) {
                PyErr_Format(PyExc_TypeError, "emit got an unexpected keyword argument %R",
                             name);
                return NULL;
            }
            text = args[nargs + i];
        }
    }
    int64_t row[NCOLS] = {0};
    Py_ssize_t nnum = nargs < TEXT_SLOT ? nargs : TEXT_SLOT;
    for (Py_ssize_t i = 0; i < nnum; i++) {
        if (to_bits(args[i], (int)i, &row[i]) < 0) {
            return NULL;
        }
    }
    if (self->n == self->cap && grow(self) < 0) {
        return NULL;
    }
    Py_ssize_t at = self->n;
    for (int c = 0; c < NCOLS; c++) {
        self->cols[c][at] = row[c];
    }
    if (text == Py_None) {
        text = NULL;
    }
    Py_XINCREF(text);
    self->text[at] = text;
    self->n = at + 1;
    Py_RETURN_NONE;
}

static PyObject *Emitter_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    if (PyTuple_GET_SIZE(args) != 0 || (kwds != NULL && PyDict_GET_SIZE(kwds) != 0)) {
        PyErr_SetString(PyExc_TypeError, "Emitter() takes no arguments");
        return NULL;
    }
    Emitter *self = (Emitter *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->vectorcall = (vectorcallfunc)Emitter_call;
    return (PyObject *)self;
}

static int Emitter_traverse(Emitter *self, visitproc visit, void *arg)
{
    for (Py_ssize_t i = 0; i < self->n; i++) {
        Py_VISIT(self->text[i]);
    }
    return 0;
}

static void drop_texts(Emitter *self)
{
    Py_ssize_t n = self->n;
    self->n = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_CLEAR(self->text[i]);
    }
}

static int Emitter_clear(Emitter *self)
{
    drop_texts(self);
    return 0;
}

static void Emitter_dealloc(Emitter *self)
{
    PyObject_GC_UnTrack(self);
    drop_texts(self);
    for (int c = 0; c < NCOLS; c++) {
        PyMem_RawFree(self->cols[c]);
    }
    PyMem_RawFree(self->text);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static Py_ssize_t Emitter_len(Emitter *self) { return self->n; }

static PyObject *column_bytes(Emitter *self, int c)
{
    return PyBytes_FromStringAndSize((const char *)self->cols[c],
                                     self->n * (Py_ssize_t)sizeof(int64_t));
}

/* columns() -> nine bytes objects, each n native int64 values, in emission order. */
static PyObject *Emitter_columns(Emitter *self, PyObject *unused)
{
    (void)unused;
    PyObject *out = PyTuple_New(NCOLS);
    if (out == NULL) {
        return NULL;
    }
    for (int c = 0; c < NCOLS; c++) {
        PyObject *b = column_bytes(self, c);
        if (b == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyTuple_SET_ITEM(out, c, b);
    }
    return out;
}

/* column(i) -> one of those columns (counting kinds needs only the first). */
static PyObject *Emitter_column(Emitter *self, PyObject *arg)
{
    long c = PyLong_AsLong(arg);
    if (c == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (c < 0 || c >= NCOLS) {
        PyErr_Format(PyExc_IndexError, "column %ld: there are %d", c, NCOLS);
        return NULL;
    }
    return column_bytes(self, (int)c);
}

/* texts() -> the text column as a list (None where no text was given). */
static PyObject *Emitter_texts(Emitter *self, PyObject *unused)
{
    (void)unused;
    PyObject *out = PyList_New(self->n);
    if (out == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < self->n; i++) {
        PyObject *t = self->text[i] != NULL ? self->text[i] : Py_None;
        Py_INCREF(t);
        PyList_SET_ITEM(out, i, t);
    }
    return out;
}

/* records(start=0) -> the records from `start` on as flat 10-tuples. */
static PyObject *Emitter_records(Emitter *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t start = 0;
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "records(start=0)");
        return NULL;
    }
    if (nargs == 1) {
        start = PyLong_AsSsize_t(args[0]);
        if (start == -1 && PyErr_Occurred()) {
            return NULL;
        }
        if (start < 0) {
            start = 0;
        }
    }
    if (start > self->n) {
        start = self->n;
    }
    PyObject *out = PyList_New(self->n - start);
    if (out == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = start; i < self->n; i++) {
        PyObject *rec = PyTuple_New(RECORD_LEN);
        if (rec == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        for (int c = 0; c < NCOLS; c++) {
            PyObject *v = PyLong_FromLongLong(self->cols[c][i]);
            if (v == NULL) {
                Py_DECREF(rec);
                Py_DECREF(out);
                return NULL;
            }
            PyTuple_SET_ITEM(rec, c, v);
        }
        PyObject *t = self->text[i] != NULL ? self->text[i] : Py_None;
        Py_INCREF(t);
        PyTuple_SET_ITEM(rec, TEXT_SLOT, t);
        PyList_SET_ITEM(out, i - start, rec);
    }
    return out;
}

static PyObject *Emitter_clear_records(Emitter *self, PyObject *unused)
{
    (void)unused;
    drop_texts(self);
    Py_RETURN_NONE;
}

static PyMethodDef Emitter_methods[] = {
    {"columns", (PyCFunction)Emitter_columns, METH_NOARGS,
     "The nine int64 columns (kind, t_ns, cpu, dom, vcpu, f0..f3) as bytes."},
    {"column", (PyCFunction)Emitter_column, METH_O, "One int64 column as bytes."},
    {"texts", (PyCFunction)Emitter_texts, METH_NOARGS, "The text column as a list."},
    {"records", (PyCFunction)(void (*)(void))Emitter_records, METH_FASTCALL,
     "records(start=0): the records from `start` on, as flat 10-tuples."},
    {"clear", (PyCFunction)Emitter_clear_records, METH_NOARGS, "Forget every record."},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods Emitter_as_sequence = {
    .sq_length = (lenfunc)Emitter_len,
};

static PyTypeObject EmitterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "framework.trace._emit.Emitter",
    .tp_doc = "Emitter(): a callable storing one trace record per call, in columns.",
    .tp_basicsize = sizeof(Emitter),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_vectorcall_offset = offsetof(Emitter, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_new = Emitter_new,
    .tp_dealloc = (destructor)Emitter_dealloc,
    .tp_traverse = (traverseproc)Emitter_traverse,
    .tp_clear = (inquiry)Emitter_clear,
    .tp_methods = Emitter_methods,
    .tp_as_sequence = &Emitter_as_sequence,
};

static struct PyModuleDef emit_module = {
    PyModuleDef_HEAD_INIT, "_emit", "The trace recorder's store and emit, in C.", -1, NULL,
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
