/* transforms._linescan: the backfill fast path's run-event lines, scanned natively.

scan_runs(line) -> list of tuples, or None.

A run event line in its canonical shape (an Event Grid or CloudEvents run event, alone
or in a JSON array, minified or not) is most of a backfill. The Python fast path
(transforms.fastpath) parses such a line with orjson into dicts, checks every field,
and serializes the run's tag maps back to JSON; this module reads the same values in
one pass over the bytes, without building the dicts, and copies the tag maps' text.

Its only contract is the fast path's: it may refuse any line (None: the Python paths
decide, and their answer is the answer), and when it takes one, every value it gives is
the value orjson.loads would have given, every text is what orjson.dumps would have
written. To keep that provable it takes a narrow grammar and refuses the rest:
  - the JSON grammar of RFC 8259 (orjson's), nothing lenient;
  - top-level keys of one schema only, each once; every data key one of the seven run
    data keys, each once; a value of the type the fast path takes for it;
  - strings returned as values contain no escapes; strings inside tag maps (and an
    array element's whole text) contain only the escapes orjson writes (\" \\ \b \t \n
    \f \r and \u00xx, lower-case hex, for other control characters), so copying them
    writes what orjson would;
  - tag map values are strings, integers that fit 64 bits (not -0), true, false or null:
    no floats (orjson rewrites them), no nested maps or lists; no key twice;
  - every string is decoded as strict UTF-8, so bytes orjson rejects are refused here.
A differential property test (tests/transforms/test_linescan.py) holds every line it takes to
the Python fast path's rows.

Each tuple: (is_run_completed, is_cloudevents, id, resource, subject, time, data_version,
run_id, experiment_id, experiment_name, run_type, run_status, parent_run_id,
published_pipeline_id, compute_target_type, step_type, run_tags_json,
run_properties_json, payload), where payload is the element's JSON (bytes) for an array
element and None for a line that is one object (its payload is the line itself).
*/

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define MAX_TAGS 64

typedef const unsigned char *ptr;

typedef struct {
    ptr p, end;
    unsigned char *out; /* the value being scanned, minified: tokens copied, blanks not */
    Py_ssize_t n;
} Scan;

/* A string token: its bytes between the quotes, as written (escapes included). */
typedef struct {
    ptr s;
    Py_ssize_t len;
    int escaped;
} Str;

enum { V_NONE = 0, V_STR, V_INT, V_TRUE, V_FALSE, V_NULL, V_OBJ };

typedef struct {
    int kind;
    Str str;     /* V_STR; V_INT: the digits */
    Py_ssize_t start, end; /* V_OBJ: its minified text, out[start:end] */
} Val;

static inline void blanks(Scan *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static inline int expect(Scan *c, unsigned char ch) {
    blanks(c);
    if (c->p >= c->end || *c->p != ch)
        return 0;
    c->out[c->n++] = ch;
    c->p++;
    return 1;
}

static inline int hexlower(unsigned char ch) {
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f');
}

/* A string at c->p (after blanks), copied to out. Escapes must be ones orjson writes. */
static int string(Scan *c, Str *s) {
    blanks(c);
    if (c->p >= c->end || *c->p != '"')
        return 0;
    ptr q = c->p + 1;
    s->s = q;
    s->escaped = 0;
    while (q < c->end) {
        unsigned char ch = *q;
        if (ch == '"') {
            s->len = q - s->s;
            Py_ssize_t total = q + 1 - c->p;
            memcpy(c->out + c->n, c->p, (size_t)total);
            c->n += total;
            c->p = q + 1;
            return 1;
        }
        if (ch < 0x20)
            return 0; /* a raw control character: invalid JSON */
        if (ch == '\\') {
            if (q + 1 >= c->end)
                return 0;
            unsigned char e = q[1];
            s->escaped = 1;
            if (e == '"' || e == '\\' || e == 'b' || e == 't' || e == 'n' || e == 'f' || e == 'r') {
                q += 2;
                continue;
            }
            /* \u00xx for a control character without a short form, as orjson writes it */
            if (e == 'u' && q + 5 < c->end && q[2] == '0' && q[3] == '0' && (q[4] == '0' || q[4] == '1')
                && hexlower(q[5])) {
                int code = (q[4] - '0') * 16 + (q[5] <= '9' ? q[5] - '0' : q[5] - 'a' + 10);
                if (code == 0x08 || code == 0x09 || code == 0x0a || code == 0x0c || code == 0x0d)
                    return 0;
                q += 6;
                continue;
            }
            return 0;
        }
        q++;
    }
    return 0;
}

/* An integer as orjson reads and writes it: -?(0|[1-9][0-9]*), no fraction or exponent,
   not -0 (orjson reads 0). At most 18 digits, which always fit 64 bits; longer ones are
   refused rather than range-checked. */
static int integer(Scan *c, Str *s) {
    ptr q = c->p;
    ptr start = q;
    if (q < c->end && *q == '-')
        q++;
    ptr digits = q;
    while (q < c->end && *q >= '0' && *q <= '9')
        q++;
    Py_ssize_t nd = q - digits;
    if (nd == 0 || nd > 18 || (nd > 1 && *digits == '0'))
        return 0;
    if (q < c->end && (*q == '.' || *q == 'e' || *q == 'E'))
        return 0; /* a float */
    if (*start == '-' && nd == 1 && *digits == '0')
        return 0;
    s->s = start;
    s->len = q - start;
    s->escaped = 0;
    memcpy(c->out + c->n, start, (size_t)(q - start));
    c->n += q - start;
    c->p = q;
    return 1;
}

static int literal(Scan *c, const char *word, Py_ssize_t len) {
    if (c->end - c->p < len || memcmp(c->p, word, (size_t)len) != 0)
        return 0;
    memcpy(c->out + c->n, word, (size_t)len);
    c->n += len;
    c->p += len;
    return 1;
}

/* A scalar: string, integer, true, false or null. */
static int scalar(Scan *c, Val *v) {
    blanks(c);
    if (c->p >= c->end)
        return 0;
    unsigned char ch = *c->p;
    if (ch == '"') {
        v->kind = V_STR;
        return string(c, &v->str);
    }
    if (ch == '-' || (ch >= '0' && ch <= '9')) {
        v->kind = V_INT;
        return integer(c, &v->str);
    }
    if (ch == 't') {
        v->kind = V_TRUE;
        return literal(c, "true", 4);
    }
    if (ch == 'f') {
        v->kind = V_FALSE;
        return literal(c, "false", 5);
    }
    if (ch == 'n') {
        v->kind = V_NULL;
        return literal(c, "null", 4);
    }
    return 0;
}

static inline int is_key(const Str *s, const char *name, Py_ssize_t len) {
    return s->len == len && !s->escaped && memcmp(s->s, name, (size_t)len) == 0;
}
#define IS(s, lit) is_key((s), (lit), (Py_ssize_t)(sizeof(lit) - 1))

typedef struct {
    const char *name;
    Py_ssize_t len;
} Name;
#define NAME(lit) {(lit), (Py_ssize_t)(sizeof(lit) - 1)}

/* The position of `key` among `names`, -1 when it is none of them. */
static int slot_of(const Str *key, const Name *names, int count) {
    for (int i = 0; i < count; i++)
        if (is_key(key, names[i].name, names[i].len))
            return i;
    return -1;
}

/* The next member's key, read through its ':': the key's position among `names`, or -1
   (the line is refused) when it is none of them or already has a value in `seen`. */
static int member_slot(Scan *c, const Name *names, int count, const Val *seen) {
    Str key;
    if (!string(c, &key) || !expect(c, ':'))
        return -1;
    int slot = slot_of(&key, names, count);
    return slot >= 0 && seen[slot].kind == V_NONE ? slot : -1;
}

/* After an object's member: 1 when another follows (','), 0 at its closing '}', -1 else. */
static int more_members(Scan *c) {
    blanks(c);
    if (c->p < c->end && *c->p == ',') {
        c->out[c->n++] = ',';
        c->p++;
        return 1;
    }
    return expect(c, '}') ? 0 : -1;
}

/* The four tags a run row reads (rows.fact_rows' _first), by position. */
static const Name FIRST_KEYS[4] = {
    NAME("azureml.pipelinerunid"), NAME("azureml.pipelineid"), NAME("computeTargetType"),
    NAME("stepType")};

/* A tag map: object of scalars, no key twice; found[i] = the value of FIRST_KEYS[i]. */
static int tag_map(Scan *c, Val *v, Val found[4]) {
    Str keys[MAX_TAGS];
    int count = 0;
    for (int i = 0; i < 4; i++)
        found[i].kind = V_NONE;
    v->kind = V_OBJ;
    v->start = c->n;
    if (!expect(c, '{'))
        return 0;
    blanks(c);
    if (c->p < c->end && *c->p == '}') {
        c->out[c->n++] = '}';
        c->p++;
        v->end = c->n;
        return 1;
    }
    for (;;) {
        Str key;
        Val item;
        if (count == MAX_TAGS || !string(c, &key) || !expect(c, ':') || !scalar(c, &item))
            return 0;
        for (int i = 0; i < count; i++)
            if (keys[i].len == key.len && memcmp(keys[i].s, key.s, (size_t)key.len) == 0)
                return 0; /* a key twice: orjson keeps the last value, a copy both */
        keys[count++] = key;
        int first = slot_of(&key, FIRST_KEYS, 4);
        if (first >= 0)
            found[first] = item;
        int more = more_members(c);
        if (more < 0)
            return 0;
        if (!more) {
            v->end = c->n;
            return 1;
        }
    }
}

enum { D_RUN_ID, D_EXP_ID, D_EXP_NAME, D_RUN_TYPE, D_STATUS, D_TAGS, D_PROPS, D_COUNT };
static const Name DATA_KEYS[D_COUNT] = {
    NAME("runId"), NAME("experimentId"), NAME("experimentName"), NAME("runType"),
    NAME("runStatus"), NAME("runTags"), NAME("runProperties")};

typedef struct {
    Val field[D_COUNT];
    Val first[2][4]; /* found in runTags, runProperties */
} RunData;

/* A text-or-null data field: a string without escapes, or null. */
static int text_or_null(Scan *c, Val *v) {
    if (!scalar(c, v))
        return 0;
    return (v->kind == V_STR && !v->str.escaped) || v->kind == V_NULL;
}

static int run_data(Scan *c, RunData *d) {
    for (int i = 0; i < D_COUNT; i++)
        d->field[i].kind = V_NONE;
    for (int i = 0; i < 4; i++) /* a map that is absent or null has none of them */
        d->first[0][i].kind = d->first[1][i].kind = V_NONE;
    if (!expect(c, '{'))
        return 0;
    blanks(c);
    if (c->p < c->end && *c->p == '}')
        return 0; /* no runId */
    int more = 1;
    while (more) {
        int slot = member_slot(c, DATA_KEYS, D_COUNT, d->field);
        if (slot < 0)
            return 0; /* an unknown key, or a key twice */
        if (slot == D_TAGS || slot == D_PROPS) {
            blanks(c);
            if (c->p < c->end && *c->p == 'n') {
                if (!literal(c, "null", 4))
                    return 0;
                d->field[slot].kind = V_NULL;
            } else if (!tag_map(c, &d->field[slot], d->first[slot - D_TAGS])) {
                return 0;
            }
        } else if (!text_or_null(c, &d->field[slot])) {
            return 0;
        }
        if ((more = more_members(c)) < 0)
            return 0;
    }
    /* runId: required, a non-empty string (plain.plain_run) */
    return d->field[D_RUN_ID].kind == V_STR && d->field[D_RUN_ID].str.len > 0;
}

enum {
    K_ID, K_TOPIC, K_SUBJECT, K_EVENT_TYPE, K_EVENT_TIME, K_DATA, K_DATA_VERSION,
    K_METADATA_VERSION, K_SPECVERSION, K_SOURCE, K_TYPE, K_TIME, K_CONTENT_TYPE,
    K_DATASCHEMA, K_COUNT
};
static const Name EVENT_KEYS[K_COUNT] = {
    NAME("id"), NAME("topic"), NAME("subject"), NAME("eventType"), NAME("eventTime"),
    NAME("data"), NAME("dataVersion"), NAME("metadataVersion"), NAME("specversion"),
    NAME("source"), NAME("type"), NAME("time"), NAME("datacontenttype"), NAME("dataschema")};

typedef struct {
    Val key[K_COUNT];
    RunData data;
    Py_ssize_t start, end; /* the event's minified text */
} Event;

static const char RUN_COMPLETED[] = "Microsoft.MachineLearningServices.RunCompleted";
static const char RUN_STATUS_CHANGED[] = "Microsoft.MachineLearningServices.RunStatusChanged";

static int event(Scan *c, Event *e) {
    for (int i = 0; i < K_COUNT; i++)
        e->key[i].kind = V_NONE;
    blanks(c);
    e->start = c->n;
    if (!expect(c, '{'))
        return 0;
    int more = 1;
    while (more) {
        int slot = member_slot(c, EVENT_KEYS, K_COUNT, e->key);
        if (slot < 0)
            return 0;
        Val *v = &e->key[slot];
        if (slot == K_DATA) {
            if (!run_data(c, &e->data))
                return 0;
            v->kind = V_OBJ;
        } else if (!scalar(c, v)) {
            return 0;
        }
        if ((more = more_members(c)) < 0)
            return 0;
    }
    e->end = c->n;
    return 1;
}

/* ---- values for Python ---- */

static inline int plain_text(const Val *v) {
    return v->kind == V_STR && !v->str.escaped;
}

/* A returned string, decoded as strict UTF-8; NULL with no error set when invalid. */
static PyObject *text(const Val *v) {
    PyObject *s = PyUnicode_DecodeUTF8((const char *)v->str.s, v->str.len, NULL);
    if (s == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
        PyErr_Clear();
    return s;
}

/* str | None field: V_NONE (absent) and V_NULL give None. */
static PyObject *text_or_none(const Val *v) {
    if (v->kind == V_NONE || v->kind == V_NULL)
        Py_RETURN_NONE;
    return text(v);
}

/* rows._first over the two maps: the first non-null value, as text (str(x) for the
   rest: an integer's digits, True, False); None when neither has one. Escaped -> NULL. */
static PyObject *first(const Val *a, const Val *b, int *refused) {
    const Val *v = (a->kind != V_NONE && a->kind != V_NULL) ? a
                   : (b->kind != V_NONE && b->kind != V_NULL) ? b : NULL;
    if (v == NULL)
        Py_RETURN_NONE;
    if (v->kind == V_TRUE)
        return PyUnicode_FromString("True");
    if (v->kind == V_FALSE)
        return PyUnicode_FromString("False");
    if (v->str.escaped) {
        *refused = 1;
        return NULL;
    }
    return text(v);
}

/* A tag map's JSON text: its minified copy, or "{}" for null (rows._json of {}). */
static PyObject *map_text(const Scan *c, const Val *v) {
    if (v->kind != V_OBJ)
        return PyUnicode_FromStringAndSize("{}", 2);
    PyObject *s = PyUnicode_DecodeUTF8((const char *)c->out + v->start, v->end - v->start, NULL);
    if (s == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
        PyErr_Clear();
    return s;
}

/* Validates a scalar the fast path ignores (metadataVersion, specversion, ...): a
   string must still be valid UTF-8 for orjson to have taken the line. */
static int valid_scalar(const Val *v) {
    if (v->kind != V_STR)
        return 1;
    PyObject *s = PyUnicode_DecodeUTF8((const char *)v->str.s, v->str.len, NULL);
    if (s == NULL) {
        PyErr_Clear();
        return 0;
    }
    Py_DECREF(s);
    return 1;
}

/* The tuple of one event, Py_None when refused, NULL on a Python error. */
static PyObject *event_tuple(const Scan *c, const Event *e, int in_array) {
    const Val *k = e->key;
    int cloudevents;
    const Val *type, *resource, *time;
    if (k[K_EVENT_TYPE].kind != V_NONE) {
        /* Event Grid: no CloudEvents-only key */
        if (k[K_SPECVERSION].kind || k[K_SOURCE].kind || k[K_TYPE].kind || k[K_TIME].kind
            || k[K_CONTENT_TYPE].kind || k[K_DATASCHEMA].kind)
            Py_RETURN_NONE;
        cloudevents = 0;
        type = &k[K_EVENT_TYPE], resource = &k[K_TOPIC], time = &k[K_EVENT_TIME];
    } else if (k[K_SPECVERSION].kind != V_NONE) {
        if (k[K_TOPIC].kind || k[K_EVENT_TIME].kind || k[K_DATA_VERSION].kind
            || k[K_METADATA_VERSION].kind)
            Py_RETURN_NONE;
        cloudevents = 1;
        type = &k[K_TYPE], resource = &k[K_SOURCE], time = &k[K_TIME];
    } else {
        Py_RETURN_NONE;
    }
    int completed;
    if (plain_text(type) && IS(&type->str, RUN_COMPLETED))
        completed = 1;
    else if (plain_text(type) && IS(&type->str, RUN_STATUS_CHANGED))
        completed = 0;
    else
        Py_RETURN_NONE;
    const Val *id = &k[K_ID];
    if (!plain_text(id) || !plain_text(resource) || !plain_text(time) || k[K_DATA].kind != V_OBJ)
        Py_RETURN_NONE;
    /* the id must not strip() to nothing: one visible ASCII character settles it */
    int visible = 0;
    for (Py_ssize_t i = 0; i < id->str.len && !visible; i++)
        visible = id->str.s[i] > 0x20 && id->str.s[i] < 0x7f;
    if (!visible)
        Py_RETURN_NONE;
    const Val *subject = &k[K_SUBJECT];
    if (subject->kind != V_NONE && subject->kind != V_NULL && !plain_text(subject))
        Py_RETURN_NONE;
    const Val *version = &k[K_DATA_VERSION];
    if (version->kind != V_NONE && version->kind != V_NULL && version->kind != V_INT
        && !plain_text(version))
        Py_RETURN_NONE;
    const Val *status = &e->data.field[D_STATUS];
    if (!completed && !(status->kind == V_STR && status->str.len > 0))
        Py_RETURN_NONE; /* a RunStatusChanged must say its status */
    const int ignored[] = {K_METADATA_VERSION, K_SPECVERSION, K_CONTENT_TYPE, K_DATASCHEMA};
    for (int i = 0; i < 4; i++) {
        int kind = k[ignored[i]].kind;
        if (kind == V_OBJ || !valid_scalar(&k[ignored[i]]))
            Py_RETURN_NONE;
    }

    PyObject *item[19] = {NULL};
    int refused = 0;
    const RunData *d = &e->data;
    item[0] = PyBool_FromLong(completed);
    item[1] = PyBool_FromLong(cloudevents);
    item[2] = text(id);
    item[3] = text(resource);
    item[4] = text_or_none(subject);
    item[5] = text(time);
    /* dataVersion: str(version) for an int, as the fast path writes it (digits) */
    item[6] = text_or_none(version);
    for (int i = 0; i < 5; i++) /* run id .. run status */
        item[7 + i] = text_or_none(&d->field[i]);
    item[12] = first(&d->first[0][0], &d->first[1][0], &refused); /* tags, then props */
    for (int i = 1; i < 4; i++)
        item[12 + i] = refused ? NULL : first(&d->first[1][i], &d->first[0][i], &refused);
    item[16] = map_text(c, &d->field[D_TAGS]);
    item[17] = map_text(c, &d->field[D_PROPS]);
    if (in_array)
        item[18] = PyBytes_FromStringAndSize((const char *)c->out + e->start, e->end - e->start);
    else
        item[18] = Py_NewRef(Py_None);
    PyObject *result = NULL;
    int complete = !refused;
    for (int i = 0; i < 19 && complete; i++)
        complete = item[i] != NULL;
    if (complete) {
        result = PyTuple_New(19);
        if (result != NULL) {
            for (int i = 0; i < 19; i++)
                PyTuple_SET_ITEM(result, i, item[i]);
            return result;
        }
    }
    for (int i = 0; i < 19; i++)
        Py_XDECREF(item[i]);
    if (PyErr_Occurred())
        return NULL; /* memory, not the line */
    Py_RETURN_NONE; /* invalid UTF-8 or an escaped first-tag: the Python paths decide */
}

/* Append one event's tuple; 1 taken, 0 refused, -1 error. */
static int add_event(PyObject *list, const Scan *c, const Event *e, int in_array) {
    PyObject *t = event_tuple(c, e, in_array);
    if (t == NULL)
        return -1;
    if (t == Py_None) {
        Py_DECREF(t);
        return 0;
    }
    int rc = PyList_Append(list, t);
    Py_DECREF(t);
    return rc == 0 ? 1 : -1;
}

static PyObject *scan_runs(PyObject *module, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    unsigned char stack[8192];
    unsigned char *out = view.len <= (Py_ssize_t)sizeof(stack) ? stack : PyMem_Malloc((size_t)view.len);
    PyObject *list = NULL;
    if (out == NULL) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    Scan c = {(ptr)view.buf, (ptr)view.buf + view.len, out, 0};
    Event e;
    int ok = 0;
    list = PyList_New(0);
    if (list == NULL)
        goto done;
    blanks(&c);
    if (c.p < c.end && *c.p == '{') {
        ok = event(&c, &e);
        blanks(&c);
        ok = ok && c.p == c.end;
        if (ok) {
            int rc = add_event(list, &c, &e, 0);
            if (rc < 0)
                goto error;
            ok = rc;
        }
    } else if (expect(&c, '[')) {
        blanks(&c);
        ok = c.p < c.end && *c.p != ']'; /* an empty array is not the fast path's */
        while (ok) {
            ok = event(&c, &e);
            if (!ok)
                break;
            int rc = add_event(list, &c, &e, 1);
            if (rc < 0)
                goto error;
            if (!(ok = rc))
                break;
            blanks(&c);
            if (c.p < c.end && *c.p == ',') {
                c.out[c.n++] = ',';
                c.p++;
                continue;
            }
            ok = expect(&c, ']');
            blanks(&c);
            ok = ok && c.p == c.end;
            break;
        }
    }
    goto done;
error:
    Py_CLEAR(list);
done:
    if (out != stack)
        PyMem_Free(out);
    PyBuffer_Release(&view);
    if (list != NULL && !ok) {
        Py_DECREF(list);
        Py_RETURN_NONE;
    }
    return list;
}

static PyMethodDef methods[] = {
    {"scan_runs", scan_runs, METH_O,
     "scan_runs(line) -> list of run event tuples, or None when the Python paths must decide."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "transforms._linescan",
    .m_doc = "Native scanner of canonical run-event lines for the backfill fast path.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__linescan(void) {
    return PyModule_Create(&module);
}
