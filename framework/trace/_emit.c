/*
 * The recorder's store and emit, in C.
 *
 * Every layer calls emit several times per simulated event (19 records per timer tick,
 * ~21 per network packet).  Emitter() is a callable, called through vectorcall:
 * emitter(kind, t_ns, cpu, dom, vcpu, f0=0, f1=0, f2=0, f3=0, text=None) appends one
 * record to nine int64 columns and a column of int32 text codes.
 *
 * Texts repeat (a hypercall's name on every call): each distinct text is kept once, in
 * order of first appearance (`text_values()`), and a record holds its index there, -1 for
 * None (`text_codes()`).  Those two are the trace's text column as a dictionary, ready for
 * Arrow without a Python object per record.
 *
 * Why columns and not a list of tuples: a tuple record with its boxed time costs ~200
 * bytes of fresh Python heap, and on these machines first-touch page faults of a growing
 * trace were ~10% of a run; here a record is 76 bytes in a few large buffers, with no
 * object to allocate, track or free.  The columns become numpy arrays in one copy
 * (`columns()`), and `records()` rebuilds the flat 10-tuples recorder.py documents.
 *
 * What is checked here: the argument count, that each number is an int that fits in
 * 64 bits (values in [2**63, 2**64), register images, keep their bit pattern) and that
 * the text is a str or None.  The
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
    int32_t *text;         /* per record: index into text_values, -1 for None */
    PyObject *text_ids;    /* dict: each distinct text -> its index */
    PyObject *text_values; /* list: the distinct texts in order of first appearance */
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
    int32_t *text = PyMem_RawRealloc(self->text, (size_t)cap * sizeof(int32_t));
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

/* The code of a text: its index among the distinct texts, added there if new. */
static int text_code(Emitter *self, PyObject *text, int32_t *out)
{
    if (!PyUnicode_Check(text)) {
        PyErr_Format(PyExc_TypeError, "trace text must be a str or None, not %.80s",
                     Py_TYPE(text)->tp_name);
        return -1;
    }
    PyObject *id = PyDict_GetItemWithError(self->text_ids, text); /* borrowed */
    if (id != NULL) {
        *out = (int32_t)PyLong_AsLong(id);
        return 0;
    }
    if (PyErr_Occurred()) {
        return -1;
    }
    Py_ssize_t k = PyList_GET_SIZE(self->text_values);
    if (k >= INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "trace: more than 2**31 - 1 distinct texts");
        return -1;
    }
    PyObject *num = PyLong_FromSsize_t(k);
    if (num == NULL) {
        return -1;
    }
    int rc = PyDict_SetItem(self->text_ids, text, num);
    Py_DECREF(num);
    if (rc < 0) {
        return -1;
    }
    if (PyList_Append(self->text_values, text) < 0) {
        PyDict_DelItem(self->text_ids, text);
        return -1;
    }
    *out = (int32_t)k;
    return 0;
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
    int32_t code = -1;
    if (text != NULL && text != Py_None && text_code(self, text, &code) < 0) {
        return NULL;
    }
    if (self->n == self->cap && grow(self) < 0) {
        return NULL;
    }
    Py_ssize_t at = self->n;
    for (int c = 0; c < NCOLS; c++) {
        self->cols[c][at] = row[c];
    }
    self->text[at] = code;
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
    self->text_ids = PyDict_New();
    self->text_values = PyList_New(0);
    if (self->text_ids == NULL || self->text_values == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int Emitter_traverse(Emitter *self, visitproc visit, void *arg)
{
    Py_VISIT(self->text_ids);
    Py_VISIT(self->text_values);
    return 0;
}

/* Forget every record and text (the tables stay, empty). */
static void drop_texts(Emitter *self)
{
    self->n = 0;
    if (self->text_ids != NULL) {
        PyDict_Clear(self->text_ids);
    }
    if (self->text_values != NULL) {
        PyList_SetSlice(self->text_values, 0, PyList_GET_SIZE(self->text_values), NULL);
    }
}

static int Emitter_clear(Emitter *self)
{
    self->n = 0;
    Py_CLEAR(self->text_ids);
    Py_CLEAR(self->text_values);
    return 0;
}

static void Emitter_dealloc(Emitter *self)
{
    PyObject_GC_UnTrack(self);
    Emitter_clear(self);
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

/* Record i's text (borrowed), Py_None when it has none. */
static PyObject *text_at(Emitter *self, Py_ssize_t i)
{
    int32_t code = self->text[i];
    return code < 0 ? Py_None : PyList_GET_ITEM(self->text_values, code);
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
        PyObject *t = text_at(self, i);
        Py_INCREF(t);
        PyList_SET_ITEM(out, i, t);
    }
    return out;
}

/* text_codes() -> the text column as bytes: n native int32 codes, -1 for None. */
static PyObject *Emitter_text_codes(Emitter *self, PyObject *unused)
{
    (void)unused;
    return PyBytes_FromStringAndSize((const char *)self->text,
                                     self->n * (Py_ssize_t)sizeof(int32_t));
}

/* text_values() -> the distinct texts, code k at index k (a new list). */
static PyObject *Emitter_text_values(Emitter *self, PyObject *unused)
{
    (void)unused;
    return PyList_GetSlice(self->text_values, 0, PyList_GET_SIZE(self->text_values));
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
        PyObject *t = text_at(self, i);
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

/* The outputs of gather(): name, element size. */
#define NOUT 11
static const int OUT_SIZE[NOUT] = {8, 8, 2, 2, 2, 1, 8, 8, 8, 8, 4};

/*
 * gather(order, nfields, has_text, by_kind) -> tuple of 11 bytearrays, or an int.
 *
 * `order` (native int64 buffer) lists the records in time order.  Each record is checked
 * against the schema as `nfields` (one byte per kind id: its number of fields) and
 * `has_text` (one byte per kind id) describe it: kind id known, no field past the kind's,
 * no text on a kind without one, cpu/dom/vcpu in int16.  The first record that breaks one
 * (in time order) is returned as its position in `order`, for the caller to describe.
 * Otherwise the records come out in time order, or (`by_kind`) grouped by kind id and in
 * time order within a kind, as the typed columns of the trace file:
 * seq (int64: position in time order), t_ns (int64), cpu, dom, vcpu (int16), kind (int8),
 * a0..a3 (int64), text (int32 code, -1 = none).  One pass to check and count, one to
 * find each record's output row, then one per column (no intermediate copy).
 */
static PyObject *Emitter_gather(Emitter *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "gather(order, nfields, has_text, by_kind)");
        return NULL;
    }
    Py_buffer ob, nb, hb;
    if (PyObject_GetBuffer(args[0], &ob, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[1], &nb, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&ob);
        return NULL;
    }
    if (PyObject_GetBuffer(args[2], &hb, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&ob);
        PyBuffer_Release(&nb);
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t *offset = NULL;
    int64_t *dest = NULL;
    int by_kind = PyObject_IsTrue(args[3]);
    Py_ssize_t n = self->n, nkinds = nb.len;
    const int64_t *order = (const int64_t *)ob.buf;
    const unsigned char *nfields = (const unsigned char *)nb.buf;
    const unsigned char *has_text = (const unsigned char *)hb.buf;
    if (by_kind < 0) {
        goto done;
    }
    if (ob.len != n * (Py_ssize_t)sizeof(int64_t) || hb.len != nkinds || nkinds > 128) {
        PyErr_SetString(PyExc_ValueError, "gather: order must hold one int64 per record, "
                                          "nfields and has_text one byte per kind (<= 128)");
        goto done;
    }
    offset = PyMem_Calloc((size_t)nkinds + 1, sizeof(Py_ssize_t));
    if (offset == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    /* Check, and count records per kind. */
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t r = order[i];
        if (r < 0 || r >= n) {
            PyErr_SetString(PyExc_ValueError, "gather: order holds a record that does not exist");
            goto done;
        }
        int64_t kind = self->cols[0][r];
        int bad = kind < 0 || kind >= nkinds;
        for (int p = 0; !bad && p < 4; p++) {
            bad = self->cols[5 + p][r] != 0 && nfields[kind] <= p;
        }
        bad = bad || (self->text[r] >= 0 && !has_text[kind]);
        for (int c = 2; !bad && c < 5; c++) {
            bad = self->cols[c][r] < -32768 || self->cols[c][r] > 32767;
        }
        if (bad) {
            result = PyLong_FromSsize_t(i);
            goto done;
        }
        offset[kind + 1]++;
    }
    for (Py_ssize_t k = 0; k < nkinds; k++) {
        offset[k + 1] += offset[k];
    }
    /* Each record's output row (`dest`, by time position): its time position, or the
     * next free row of its kind (a stable counting sort).  The columns are then
     * scattered, each read front to back: with ~30 kinds the rows written to stay few and
     * in cache, where gathering by kind would read each source line once per kind. */
    dest = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(int64_t));
    if (dest == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        dest[i] = by_kind ? offset[self->cols[0][order[i]]]++ : i;
    }
    PyObject *outs[NOUT] = {NULL};
    char *buf[NOUT];
    for (int o = 0; o < NOUT; o++) {
        outs[o] = PyByteArray_FromStringAndSize(NULL, n * OUT_SIZE[o]);
        if (outs[o] == NULL) {
            for (int j = 0; j < o; j++) {
                Py_DECREF(outs[j]);
            }
            goto done;
        }
        buf[o] = PyByteArray_AS_STRING(outs[o]);
    }
    int64_t *seq = (int64_t *)buf[0];
    for (Py_ssize_t i = 0; i < n; i++) {
        seq[dest[i]] = i;
    }
    const int64_t *src = self->cols[1];
    int64_t *t_ns = (int64_t *)buf[1];
    for (Py_ssize_t i = 0; i < n; i++) {
        t_ns[dest[i]] = src[order[i]];
    }
    for (int c = 2; c < 5; c++) {
        int16_t *out = (int16_t *)buf[c];
        src = self->cols[c];
        for (Py_ssize_t i = 0; i < n; i++) {
            out[dest[i]] = (int16_t)src[order[i]];
        }
    }
    int8_t *kinds = (int8_t *)buf[5];
    src = self->cols[0];
    for (Py_ssize_t i = 0; i < n; i++) {
        kinds[dest[i]] = (int8_t)src[order[i]];
    }
    for (int p = 0; p < 4; p++) {
        int64_t *out = (int64_t *)buf[6 + p];
        src = self->cols[5 + p];
        for (Py_ssize_t i = 0; i < n; i++) {
            out[dest[i]] = src[order[i]];
        }
    }
    int32_t *text = (int32_t *)buf[10];
    const int32_t *codes = self->text;
    for (Py_ssize_t i = 0; i < n; i++) {
        text[dest[i]] = codes[order[i]];
    }
    result = PyTuple_New(NOUT);
    if (result == NULL) {
        for (int o = 0; o < NOUT; o++) {
            Py_DECREF(outs[o]);
        }
        goto done;
    }
    for (int o = 0; o < NOUT; o++) {
        PyTuple_SET_ITEM(result, o, outs[o]);
    }
done:
    PyMem_Free(offset);
    PyMem_Free(dest);
    PyBuffer_Release(&ob);
    PyBuffer_Release(&nb);
    PyBuffer_Release(&hb);
    return result;
}

static PyMethodDef Emitter_methods[] = {
    {"columns", (PyCFunction)Emitter_columns, METH_NOARGS,
     "The nine int64 columns (kind, t_ns, cpu, dom, vcpu, f0..f3) as bytes."},
    {"column", (PyCFunction)Emitter_column, METH_O, "One int64 column as bytes."},
    {"texts", (PyCFunction)Emitter_texts, METH_NOARGS, "The text column as a list."},
    {"text_codes", (PyCFunction)Emitter_text_codes, METH_NOARGS,
     "The text column as int32 codes (bytes): index into text_values(), -1 for None."},
    {"text_values", (PyCFunction)Emitter_text_values, METH_NOARGS,
     "The distinct texts in order of first appearance."},
    {"records", (PyCFunction)(void (*)(void))Emitter_records, METH_FASTCALL,
     "records(start=0): the records from `start` on, as flat 10-tuples."},
    {"clear", (PyCFunction)Emitter_clear_records, METH_NOARGS, "Forget every record."},
    {"gather", (PyCFunction)(void (*)(void))Emitter_gather, METH_FASTCALL,
     "gather(order, nfields, has_text, by_kind): the checked, typed columns of the trace "
     "in the given time order (grouped by kind if by_kind), or the position of the first "
     "record that breaks the schema."},
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
