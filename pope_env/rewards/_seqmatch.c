/*
 * _seqmatch: a C port of CPython 3.11 difflib.SequenceMatcher's matching-block search,
 * for isjunk=None and autojunk=True, returning the same numbers to the last bit.
 *
 * What is ported (Lib/difflib.py):
 *   __chain_b            b2j: element -> ascending positions in b; with autojunk and
 *                        len(b) >= 200, elements occurring more than len(b)//100 + 1 times
 *                        ("popular") are dropped from b2j (but stay comparable, see below).
 *   find_longest_match   the longest block a[i:i+k] == b[j:j+k] inside (alo, ahi, blo, bhi)
 *                        built from b2j, ties broken like difflib (smallest i, then smallest
 *                        j), then extended on both sides by plain equality -- this is how
 *                        difflib still matches popular elements next to a found block (with
 *                        isjunk=None the set bjunk is empty, so difflib's second pair of
 *                        extension loops never runs).
 *   get_matching_blocks  the recursive split on the longest block; the sum of block sizes M
 *                        does not depend on the order in which subproblems are visited.
 *   ratio                2.0 * M / (len(a) + len(b)), or 1.0 when both are empty, computed
 *                        in IEEE double exactly like Python's float arithmetic.
 *
 * One file of about 760 lines on purpose: the port follows difflib function by function, and
 * its hot loops rely on the compiler inlining the static helpers, which it does only within
 * one translation unit (setup.py builds this file alone, without link-time optimisation).
 *
 * Elements are str code points (any code point, lone surrogates included, like difflib
 * compares str items) or Python ints that fit in 64 bits (token ids).
 *
 * Speed-ups that do not change any result:
 *   - b2j is a flat position array plus an open-addressing hash table, not a dict of lists;
 *   - each row visits only positions j in [blo, bhi) (binary search instead of skipping);
 *   - rows whose element is not in b2j are skipped (a precomputed list of candidate rows);
 *   - difflib's per-row dict j2len is one array stamped with the row id, visited in
 *     descending j so the previous row's value at j-1 is read before it is overwritten;
 *   - when the b range of a call is much shorter than its list of candidate rows (a huge
 *     a against a short b), the same cells are visited column by column instead, with the
 *     same recurrence and the same winner (largest k, then smallest end i, then end j).
 *
 * Cost: building b2j is O(len(a) + len(b)). One find_longest_match call costs
 * O(P + min(rows, columns) * log) where P is the number of equal pairs (i, j) with b[j]
 * still in b2j inside its rectangle; the rectangles of one recursion level are disjoint, so a level costs at most
 * P_total <= len(a) * min(len(b), len(b)//100 + 1) (the autojunk cap, when len(b) >= 200),
 * and there are at most min(len(a), len(b)) + 1 levels. The GIL is released while matching.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef int64_t elem_t;

/* ------------------------------------------------------------------------------------ */
/* Converting Python sequences to element arrays                                         */

/* A PyMem_RawMalloc'd array for n elements (at least one, so that n == 0 is not NULL);
   NULL with MemoryError set. */
static elem_t *
new_elements(Py_ssize_t n)
{
    elem_t *arr = (elem_t *)PyMem_RawMalloc((size_t)(n > 0 ? n : 1) * sizeof(elem_t));
    if (arr == NULL)
        PyErr_NoMemory();
    return arr;
}

/* The code points of a str. */
static Py_ssize_t
str_elements(PyObject *obj, elem_t **out)
{
    Py_ssize_t n, i;
    int kind;
    const void *data;
    if (PyUnicode_READY(obj) < 0)
        return -1;
    n = PyUnicode_GET_LENGTH(obj);
    kind = PyUnicode_KIND(obj);
    data = PyUnicode_DATA(obj);
    if ((*out = new_elements(n)) == NULL)
        return -1;
    for (i = 0; i < n; i++)
        (*out)[i] = (elem_t)PyUnicode_READ(kind, data, i);
    return n;
}

/* Copies n Python ints into arr; -1 (TypeError, OverflowError) on a non-int or one that does
   not fit in 64 bits. */
static int
copy_ints(PyObject **items, Py_ssize_t n, elem_t *arr)
{
    Py_ssize_t i;
    for (i = 0; i < n; i++) {
        PyObject *item = items[i];
        long long v;
        if (!PyLong_Check(item)) {
            PyErr_Format(PyExc_TypeError,
                         "token sequences must hold ints; item %zd is %.100s",
                         i, Py_TYPE(item)->tp_name);
            return -1;
        }
        v = PyLong_AsLongLong(item);
        if (v == -1 && PyErr_Occurred()) {
            PyErr_Format(PyExc_OverflowError,
                         "token id at position %zd does not fit in 64 bits", i);
            return -1;
        }
        arr[i] = (elem_t)v;
    }
    return 0;
}

/* The ints of any sequence (token ids). */
static Py_ssize_t
int_elements(PyObject *obj, elem_t **out)
{
    PyObject *seq = PySequence_Fast(obj, "expected a str or a sequence of ints");
    Py_ssize_t n;
    if (seq == NULL)
        return -1;
    n = PySequence_Fast_GET_SIZE(seq);
    *out = new_elements(n);
    if (*out == NULL || copy_ints(PySequence_Fast_ITEMS(seq), n, *out) < 0) {
        PyMem_RawFree(*out);
        *out = NULL;
        n = -1;
    }
    Py_DECREF(seq);
    return n;
}

/* Fills *out (PyMem_RawMalloc'd, caller frees) with the elements of obj, a str or a sequence
   of ints, and sets *is_str; returns the length, or -1 with an exception set. */
static Py_ssize_t
to_elements(PyObject *obj, elem_t **out, int *is_str)
{
    *is_str = PyUnicode_Check(obj);
    return *is_str ? str_elements(obj, out) : int_elements(obj, out);
}

/* ------------------------------------------------------------------------------------ */
/* b2j: element -> ascending positions in b (popular elements removed)                   */

typedef struct {
    elem_t key;
    Py_ssize_t start; /* first index into positions[] */
    Py_ssize_t count; /* number of positions; 0 when the element is popular */
    int used;
} slot_t;

typedef struct {
    slot_t *slots;
    size_t mask;
    Py_ssize_t *positions; /* len(b) entries grouped by element, ascending within a group */
} b2j_t;

static inline size_t
hash_elem(elem_t key)
{
    uint64_t x = (uint64_t)key;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return (size_t)x;
}

static slot_t *
b2j_find(const b2j_t *t, elem_t key)
{
    size_t h = hash_elem(key) & t->mask;
    for (;;) {
        slot_t *s = &t->slots[h];
        if (!s->used)
            return NULL;
        if (s->key == key)
            return s;
        h = (h + 1) & t->mask;
    }
}

static slot_t *
b2j_insert(b2j_t *t, elem_t key)
{
    size_t h = hash_elem(key) & t->mask;
    for (;;) {
        slot_t *s = &t->slots[h];
        if (!s->used) {
            s->used = 1;
            s->key = key;
            s->start = 0;
            s->count = 0;
            return s;
        }
        if (s->key == key)
            return s;
        h = (h + 1) & t->mask;
    }
}

static void
b2j_free(b2j_t *t)
{
    free(t->slots);
    free(t->positions);
    t->slots = NULL;
    t->positions = NULL;
}

/* Doubles the table; returns 0 or -1 on out of memory. */
static int
b2j_grow(b2j_t *t)
{
    size_t oldcap = t->mask + 1, s;
    slot_t *old = t->slots;
    t->slots = (slot_t *)calloc(oldcap * 2, sizeof(slot_t));
    if (t->slots == NULL) {
        t->slots = old;
        return -1;
    }
    t->mask = oldcap * 2 - 1;
    for (s = 0; s < oldcap; s++) {
        if (old[s].used) {
            slot_t *n = b2j_insert(t, old[s].key);
            n->count = old[s].count;
        }
    }
    free(old);
    return 0;
}

/* Returns 0 on success, -1 on out of memory. Called without the GIL. */
static int
b2j_build(b2j_t *t, const elem_t *b, Py_ssize_t lb, int autojunk)
{
    size_t cap = 64, used = 0, s;
    Py_ssize_t j, total = 0;
    t->slots = (slot_t *)calloc(cap, sizeof(slot_t));
    t->positions = (Py_ssize_t *)malloc((size_t)(lb > 0 ? lb : 1) * sizeof(Py_ssize_t));
    t->mask = cap - 1;
    if (t->slots == NULL || t->positions == NULL) {
        b2j_free(t);
        return -1;
    }
    /* Counting pass; the table stays at most half full (text has few distinct elements,
       so it usually stays at 64 slots). */
    for (j = 0; j < lb; j++) {
        slot_t *sl = b2j_insert(t, b[j]);
        if (sl->count++ == 0 && ++used * 2 > t->mask + 1) {
            if (b2j_grow(t) < 0) {
                b2j_free(t);
                return -1;
            }
        }
    }
    for (s = 0; s <= t->mask; s++) {
        if (t->slots[s].used) {
            t->slots[s].start = total;
            total += t->slots[s].count;
            t->slots[s].count = 0;
        }
    }
    for (j = 0; j < lb; j++) {
        slot_t *sl = b2j_find(t, b[j]);
        t->positions[sl->start + sl->count++] = j;
    }
    if (autojunk && lb >= 200) {
        Py_ssize_t ntest = lb / 100 + 1;
        for (s = 0; s <= t->mask; s++)
            if (t->slots[s].used && t->slots[s].count > ntest)
                t->slots[s].count = 0;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* The matcher                                                                           */

typedef struct {
    const elem_t *a, *b;
    Py_ssize_t la, lb;
    b2j_t b2j;
    Py_ssize_t nslots;
    const slot_t **arow;  /* per i: the b2j slot of a[i], or NULL when it has no positions */
    Py_ssize_t *cand;     /* ascending rows i whose a[i] has positions in b2j */
    Py_ssize_t ncand;
    Py_ssize_t *len;      /* row scan: len[j + 1] is difflib's j2len[j] for row stamp[j + 1] */
    int64_t *stamp;
    /* Column scan (built on first use): a2i[a2i_start[s] ...] are the rows i, ascending,
       whose a[i] is the element of b2j slot s; clen/cstamp are len/stamp indexed by i. */
    Py_ssize_t *a2i, *a2i_start, *a2i_count;
    Py_ssize_t *clen;
    int64_t *cstamp;
    int64_t base;         /* stamp offset of the current find_longest_match call */
} matcher_t;

typedef struct {
    Py_ssize_t i, j, k;
} block_t;

static void
matcher_free(matcher_t *m)
{
    b2j_free(&m->b2j);
    free((void *)m->arow);
    free(m->cand);
    free(m->len);
    free(m->stamp);
    free(m->a2i);
    free(m->a2i_start);
    free(m->a2i_count);
    free(m->clen);
    free(m->cstamp);
}

static int
matcher_init(matcher_t *m, const elem_t *a, Py_ssize_t la, const elem_t *b, Py_ssize_t lb)
{
    Py_ssize_t i;
    memset(m, 0, sizeof(*m));
    m->a = a;
    m->b = b;
    m->la = la;
    m->lb = lb;
    if (b2j_build(&m->b2j, b, lb, 1) < 0)
        return -1;
    m->nslots = (Py_ssize_t)m->b2j.mask + 1;
    m->arow = (const slot_t **)malloc((size_t)(la > 0 ? la : 1) * sizeof(slot_t *));
    m->cand = (Py_ssize_t *)malloc((size_t)(la > 0 ? la : 1) * sizeof(Py_ssize_t));
    m->len = (Py_ssize_t *)malloc((size_t)(lb + 1) * sizeof(Py_ssize_t));
    m->stamp = (int64_t *)calloc((size_t)(lb + 1), sizeof(int64_t));
    if (!m->arow || !m->cand || !m->len || !m->stamp) {
        matcher_free(m);
        return -1;
    }
    for (i = 0; i < la; i++) {
        const slot_t *s = b2j_find(&m->b2j, a[i]);
        if (s != NULL && s->count > 0) {
            m->arow[i] = s;
            m->cand[m->ncand++] = i;
        } else {
            m->arow[i] = NULL;
        }
    }
    m->base = 2; /* stamps are >= 1 for real rows; calloc'd 0 never matches */
    return 0;
}

/* Builds the column-scan index; returns 0 or -1 on out of memory. */
static int
matcher_init_columns(matcher_t *m)
{
    Py_ssize_t c, s, total = 0;
    m->a2i = (Py_ssize_t *)malloc((size_t)(m->ncand > 0 ? m->ncand : 1) * sizeof(Py_ssize_t));
    m->a2i_start = (Py_ssize_t *)calloc((size_t)m->nslots, sizeof(Py_ssize_t));
    m->a2i_count = (Py_ssize_t *)calloc((size_t)m->nslots, sizeof(Py_ssize_t));
    m->clen = (Py_ssize_t *)malloc((size_t)(m->la + 1) * sizeof(Py_ssize_t));
    m->cstamp = (int64_t *)calloc((size_t)(m->la + 1), sizeof(int64_t));
    if (!m->a2i || !m->a2i_start || !m->a2i_count || !m->clen || !m->cstamp)
        return -1;
    for (c = 0; c < m->ncand; c++)
        m->a2i_count[m->arow[m->cand[c]] - m->b2j.slots]++;
    for (s = 0; s < m->nslots; s++) {
        m->a2i_start[s] = total;
        total += m->a2i_count[s];
        m->a2i_count[s] = 0;
    }
    for (c = 0; c < m->ncand; c++) {
        s = m->arow[m->cand[c]] - m->b2j.slots;
        m->a2i[m->a2i_start[s] + m->a2i_count[s]++] = m->cand[c];
    }
    return 0;
}

/* First index in sorted v[0:n) with v[idx] >= x. */
static inline Py_ssize_t
lower_bound(const Py_ssize_t *v, Py_ssize_t n, Py_ssize_t x)
{
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (v[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* difflib's scan: rows i ascending, and in each row the positions j of a[i] in b2j.
   Sets *bi, *bj (end cell) and returns k of the first cell in row-major order with the
   largest k. */
static Py_ssize_t
scan_rows(matcher_t *m, Py_ssize_t alo, Py_ssize_t ahi, Py_ssize_t blo, Py_ssize_t bhi,
          int64_t base, Py_ssize_t *bi, Py_ssize_t *bj)
{
    Py_ssize_t bestk = 0, c = lower_bound(m->cand, m->ncand, alo);
    for (; c < m->ncand && m->cand[c] < ahi; c++) {
        Py_ssize_t i = m->cand[c];
        const slot_t *s = m->arow[i];
        const Py_ssize_t *pos = m->b2j.positions + s->start;
        Py_ssize_t lo = lower_bound(pos, s->count, blo);
        Py_ssize_t hi = lower_bound(pos, s->count, bhi);
        int64_t cur = base + i, prev = base + i - 1;
        Py_ssize_t rowk = 0, rowj = 0, p;
        /* Descending j: len[j] (difflib's j2len[j-1]) still holds the previous row. */
        for (p = hi - 1; p >= lo; p--) {
            Py_ssize_t j = pos[p];
            Py_ssize_t k = (m->stamp[j] == prev) ? m->len[j] + 1 : 1;
            m->len[j + 1] = k;
            m->stamp[j + 1] = cur;
            if (k >= rowk) { /* ties: the smallest j wins, as in difflib's ascending scan */
                rowk = k;
                rowj = j;
            }
        }
        if (rowk > bestk) {
            bestk = rowk;
            *bi = i;
            *bj = rowj;
        }
    }
    return bestk;
}

/* The same cells visited column by column (j ascending, i descending within a column):
   cheaper when the b range is short and the a range long (a huge a against a short b).
   The recurrence k(i, j) = k(i-1, j-1) + 1 is the same; the winner is chosen by the same
   rule (largest k, then smallest end row i, then smallest end column j). */
static Py_ssize_t
scan_columns(matcher_t *m, Py_ssize_t alo, Py_ssize_t ahi, Py_ssize_t blo, Py_ssize_t bhi,
             int64_t base, Py_ssize_t *bi, Py_ssize_t *bj)
{
    Py_ssize_t bestk = 0, besti = 0, j;
    for (j = blo; j < bhi; j++) {
        const slot_t *s = b2j_find(&m->b2j, m->b[j]);
        Py_ssize_t sid, lo, hi, p;
        const Py_ssize_t *rows;
        int64_t cur = base + j, prev = base + j - 1;
        if (s == NULL || s->count == 0)
            continue;
        sid = s - m->b2j.slots;
        rows = m->a2i + m->a2i_start[sid];
        lo = lower_bound(rows, m->a2i_count[sid], alo);
        hi = lower_bound(rows, m->a2i_count[sid], ahi);
        for (p = hi - 1; p >= lo; p--) {
            Py_ssize_t i = rows[p];
            Py_ssize_t k = (m->cstamp[i] == prev) ? m->clen[i] + 1 : 1;
            m->clen[i + 1] = k;
            m->cstamp[i + 1] = cur;
            /* equal k and equal i: keep the earlier column */
            if (k > bestk || (k == bestk && i < besti)) {
                bestk = k;
                besti = i;
                *bi = i;
                *bj = j;
            }
        }
    }
    return bestk;
}

static block_t
find_longest_match(matcher_t *m, Py_ssize_t alo, Py_ssize_t ahi, Py_ssize_t blo, Py_ssize_t bhi,
                   int *nomem)
{
    const elem_t *a = m->a, *b = m->b;
    Py_ssize_t besti = alo, bestj = blo, bestsize = 0, ei = 0, ej = 0, k;
    Py_ssize_t nrows = lower_bound(m->cand, m->ncand, ahi) - lower_bound(m->cand, m->ncand, alo);
    int64_t base = m->base;

    m->base += (int64_t)m->la + (int64_t)m->lb + 2;
    if (bhi - blo < nrows / 4) {
        if (m->a2i == NULL && matcher_init_columns(m) < 0) {
            *nomem = 1;
            k = 0;
        } else {
            k = scan_columns(m, alo, ahi, blo, bhi, base, &ei, &ej);
        }
    } else {
        k = scan_rows(m, alo, ahi, blo, bhi, base, &ei, &ej);
    }
    if (k > 0) {
        besti = ei - k + 1;
        bestj = ej - k + 1;
        bestsize = k;
    }
    /* Extend by plain equality: with isjunk=None no element is junk, and popular
       elements, absent from b2j, are matched here exactly as difflib does. */
    while (besti > alo && bestj > blo && a[besti - 1] == b[bestj - 1]) {
        besti--;
        bestj--;
        bestsize++;
    }
    while (besti + bestsize < ahi && bestj + bestsize < bhi &&
           a[besti + bestsize] == b[bestj + bestsize])
        bestsize++;
    {
        block_t r = {besti, bestj, bestsize};
        return r;
    }
}

/* Appends every matching block (unsorted, unmerged) to *blocks; returns count or -1. */
static Py_ssize_t
all_blocks(matcher_t *m, block_t **blocks)
{
    Py_ssize_t cap = 64, n = 0, qcap = 64, qn = 0;
    int nomem = 0;
    block_t *out = (block_t *)malloc((size_t)cap * sizeof(block_t));
    Py_ssize_t(*queue)[4] = malloc((size_t)qcap * sizeof(*queue));
    if (!out || !queue)
        goto oom;
    queue[qn][0] = 0;
    queue[qn][1] = m->la;
    queue[qn][2] = 0;
    queue[qn][3] = m->lb;
    qn++;
    while (qn > 0) {
        Py_ssize_t alo, ahi, blo, bhi;
        block_t x;
        qn--;
        alo = queue[qn][0];
        ahi = queue[qn][1];
        blo = queue[qn][2];
        bhi = queue[qn][3];
        x = find_longest_match(m, alo, ahi, blo, bhi, &nomem);
        if (nomem)
            goto oom;
        if (x.k == 0)
            continue;
        if (n == cap) {
            block_t *grown = (block_t *)realloc(out, (size_t)cap * 2 * sizeof(block_t));
            if (!grown)
                goto oom;
            out = grown;
            cap *= 2;
        }
        out[n++] = x;
        if (qn + 2 > qcap) {
            void *grown = realloc(queue, (size_t)qcap * 2 * sizeof(*queue));
            if (!grown)
                goto oom;
            queue = grown;
            qcap *= 2;
        }
        if (alo < x.i && blo < x.j) {
            queue[qn][0] = alo;
            queue[qn][1] = x.i;
            queue[qn][2] = blo;
            queue[qn][3] = x.j;
            qn++;
        }
        if (x.i + x.k < ahi && x.j + x.k < bhi) {
            queue[qn][0] = x.i + x.k;
            queue[qn][1] = ahi;
            queue[qn][2] = x.j + x.k;
            queue[qn][3] = bhi;
            qn++;
        }
    }
    free(queue);
    *blocks = out;
    return n;
oom:
    free(out);
    free(queue);
    return -1;
}

/* ------------------------------------------------------------------------------------ */
/* Python entry points                                                                   */

typedef struct {
    elem_t *a, *b;
    Py_ssize_t la, lb;
} pair_t;

static int
load_pair(PyObject *oa, PyObject *ob, pair_t *p)
{
    int sa = 0, sb = 0;
    p->a = p->b = NULL;
    p->la = to_elements(oa, &p->a, &sa);
    if (p->la < 0)
        return -1;
    p->lb = to_elements(ob, &p->b, &sb);
    if (p->lb < 0) {
        PyMem_RawFree(p->a);
        return -1;
    }
    if (sa != sb) {
        PyErr_SetString(PyExc_TypeError,
                        "compare a str with a str, or a token sequence with a token sequence");
        PyMem_RawFree(p->a);
        PyMem_RawFree(p->b);
        return -1;
    }
    return 0;
}

static void
free_pair(pair_t *p)
{
    PyMem_RawFree(p->a);
    PyMem_RawFree(p->b);
}

/* Runs the matcher without the GIL; returns the number of blocks or -1 (MemoryError set). */
static Py_ssize_t
match_pair(pair_t *p, block_t **blocks)
{
    matcher_t m;
    Py_ssize_t n = -1;
    Py_BEGIN_ALLOW_THREADS
    if (matcher_init(&m, p->a, p->la, p->b, p->lb) == 0) {
        n = all_blocks(&m, blocks);
        matcher_free(&m);
    }
    Py_END_ALLOW_THREADS
    if (n < 0)
        PyErr_NoMemory();
    return n;
}

/* Parses (a, b) from args with format and matches them; returns the number of blocks put in
   *blocks (caller frees), and len(a), len(b); -1 with an exception set. */
static Py_ssize_t
blocks_of_args(PyObject *args, const char *format, block_t **blocks, Py_ssize_t *la, Py_ssize_t *lb)
{
    PyObject *oa, *ob;
    pair_t p;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, format, &oa, &ob) || load_pair(oa, ob, &p) < 0)
        return -1;
    *la = p.la;
    *lb = p.lb;
    n = match_pair(&p, blocks);
    free_pair(&p);
    return n;
}

/* M, the total size of the matching blocks of the pair in args, and *length = len(a) + len(b);
   -1 with an exception set. */
static Py_ssize_t
matched_total(PyObject *args, const char *format, Py_ssize_t *length)
{
    block_t *blocks = NULL;
    Py_ssize_t la, lb, t, total = 0;
    Py_ssize_t n = blocks_of_args(args, format, &blocks, &la, &lb);
    if (n < 0)
        return -1;
    for (t = 0; t < n; t++)
        total += blocks[t].k;
    free(blocks);
    *length = la + lb;
    return total;
}

static PyObject *
seqmatch_match_count(PyObject *Py_UNUSED(self), PyObject *args)
{
    Py_ssize_t length, total = matched_total(args, "OO:match_count", &length);
    return total < 0 ? NULL : PyLong_FromSsize_t(total);
}

static PyObject *
seqmatch_ratio(PyObject *Py_UNUSED(self), PyObject *args)
{
    Py_ssize_t length, total = matched_total(args, "OO:ratio", &length);
    if (total < 0)
        return NULL;
    /* difflib._calculate_ratio: 2.0 * matches / length, or 1.0 when length == 0.
       Python converts both ints to double (exact below 2**53) and divides once. */
    if (length == 0)
        return PyFloat_FromDouble(1.0);
    return PyFloat_FromDouble(2.0 * (double)total / (double)length);
}

static int
block_cmp(const void *x, const void *y)
{
    const block_t *p = (const block_t *)x, *q = (const block_t *)y;
    if (p->i != q->i)
        return p->i < q->i ? -1 : 1;
    if (p->j != q->j)
        return p->j < q->j ? -1 : 1;
    return (p->k > q->k) - (p->k < q->k);
}

static PyObject *
seqmatch_matching_blocks(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *result;
    block_t *blocks = NULL;
    Py_ssize_t t, la, lb, i1 = 0, j1 = 0, k1 = 0;
    Py_ssize_t n = blocks_of_args(args, "OO:matching_blocks", &blocks, &la, &lb);
    if (n < 0)
        return NULL;
    qsort(blocks, (size_t)n, sizeof(block_t), block_cmp);
    result = PyList_New(0);
    if (result == NULL)
        goto done;
#define EMIT(I, J, K)                                                        \
    do {                                                                     \
        PyObject *tup = Py_BuildValue("(nnn)", (I), (J), (K));               \
        if (tup == NULL || PyList_Append(result, tup) < 0) {                 \
            Py_XDECREF(tup);                                                 \
            Py_CLEAR(result);                                                \
            goto done;                                                       \
        }                                                                    \
        Py_DECREF(tup);                                                      \
    } while (0)
    /* Merge adjacent blocks and append the (la, lb, 0) sentinel, like difflib. */
    for (t = 0; t < n; t++) {
        if (i1 + k1 == blocks[t].i && j1 + k1 == blocks[t].j) {
            k1 += blocks[t].k;
        } else {
            if (k1)
                EMIT(i1, j1, k1);
            i1 = blocks[t].i;
            j1 = blocks[t].j;
            k1 = blocks[t].k;
        }
    }
    if (k1)
        EMIT(i1, j1, k1);
    EMIT(la, lb, (Py_ssize_t)0);
#undef EMIT
done:
    free(blocks);
    return result;
}

static PyMethodDef seqmatch_methods[] = {
    {"ratio", seqmatch_ratio, METH_VARARGS,
     "ratio(a, b) -> float\n\n"
     "difflib.SequenceMatcher(None, a, b).ratio(), bit for bit. a and b are both str\n"
     "(compared by code point) or both sequences of ints (token ids)."},
    {"match_count", seqmatch_match_count, METH_VARARGS,
     "match_count(a, b) -> int\n\nM: the total size of difflib's matching blocks."},
    {"matching_blocks", seqmatch_matching_blocks, METH_VARARGS,
     "matching_blocks(a, b) -> list[tuple[int, int, int]]\n\n"
     "difflib.SequenceMatcher(None, a, b).get_matching_blocks() as plain tuples."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef seqmatch_module = {
    PyModuleDef_HEAD_INIT,
    "_seqmatch",
    "C port of difflib.SequenceMatcher(None, a, b) matching (ratio, blocks); exact.",
    -1,
    seqmatch_methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__seqmatch(void)
{
    return PyModule_Create(&seqmatch_module);
}
