/* test_agg.c — every aggregate: results, NULL handling, histogram edges,
 * validation, merge and the serialisation round trip, including a
 * user-defined one. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>

#include "ops/agg.h"

/* Input columns: i BIGINT, f DOUBLE, t TIMESTAMP, s VARCHAR, b BOOLEAN. */
enum { CI, CF, CT, CS, CB };

static sl_schema *in_schema(void)
{
    sl_schema *s = sl_schema_new();
    sl_schema_add(s, "i", SL_INT64);
    sl_schema_add(s, "f", SL_FLOAT64);
    sl_schema_add(s, "t", SL_TIMESTAMP);
    sl_schema_add(s, "s", SL_STRING);
    sl_schema_add(s, "b", SL_BOOL);
    return s;
}

static sl_schema *g_in;
static int setup(void **state)
{
    (void)state;
    g_in = in_schema();
    return 0;
}
static int teardown(void **state)
{
    (void)state;
    sl_schema_free(g_in);
    return 0;
}

/* One row of input; NULL where the *_null flag is set. */
typedef struct {
    int64_t i;
    double f;
    int64_t t;
    const char *s;
    int b;
    int null_i, null_f, null_t, null_s, null_b;
} row;

static sl_batch *make_batch(const row *rows, uint32_t n)
{
    sl_batch *b = sl__batch_new(g_in, n ? n : 1);
    for (uint32_t r = 0; r < n; r++) {
        ((int64_t *)b->cols[CI].data)[r] = rows[r].i;
        b->cols[CI].valid[r] = !rows[r].null_i;
        ((double *)b->cols[CF].data)[r] = rows[r].f;
        b->cols[CF].valid[r] = !rows[r].null_f;
        ((int64_t *)b->cols[CT].data)[r] = rows[r].t;
        b->cols[CT].valid[r] = !rows[r].null_t;
        const char *s = rows[r].s ? rows[r].s : "";
        sl_batch_set_str(b, CS, r, s, strlen(s));
        b->cols[CS].valid[r] = !rows[r].null_s && rows[r].s;
        ((uint8_t *)b->cols[CB].data)[r] = (uint8_t)rows[r].b;
        b->cols[CB].valid[r] = !rows[r].null_b;
    }
    b->n = n;
    return b;
}

/* A resolved aggregate with its own output batch and group blocks. */
typedef struct {
    sl__agg a;
    sl_schema *os;
    sl_batch *out;
    uint8_t *grp[2];
} fixture;

static void fx_init(fixture *x, sl_agg_kind kind, const char *col,
                    const double *bounds, size_t nb)
{
    sl_agg_spec spec = {.kind = kind, .col = col, .as = "out",
                        .bounds = bounds, .nbounds = nb};
    char err[256];
    if (sl__agg_init(&x->a, &spec, g_in, 8, err, sizeof err) != 0)
        fail_msg("init: %s", err);
    x->os = sl_schema_new();
    sl_schema_add(x->os, "out", x->a.out_type);
    x->out = sl__batch_new(x->os, 4);
    for (int g = 0; g < 2; g++) {
        x->grp[g] = malloc(8 + x->a.size);
        sl__agg_state_init(&x->a, x->grp[g]);
    }
}

static void fx_free(fixture *x)
{
    for (int g = 0; g < 2; g++) {
        sl__agg_state_free(&x->a, x->grp[g]);
        free(x->grp[g]);
    }
    sl__agg_close(&x->a);
    sl__batch_free(x->out);
    sl_schema_free(x->os);
}

/* Adds all rows of the batch to group g. */
static void fx_add(fixture *x, const sl_batch *b, int g)
{
    uint8_t *grp[64];
    for (uint32_t i = 0; i < b->n; i++) grp[i] = x->grp[g];
    sl__agg_add(&x->a, b, NULL, grp, b->n);
}

static bool fx_null(fixture *x, int g)
{
    assert_int_equal(sl__agg_result(&x->a, x->grp[g], x->out, 0, 0), 0);
    return x->out->cols[0].valid[0] == 0;
}
static int64_t fx_i64(fixture *x, int g)
{
    assert_false(fx_null(x, g));
    return ((int64_t *)x->out->cols[0].data)[0];
}
static double fx_f64(fixture *x, int g)
{
    assert_false(fx_null(x, g));
    return ((double *)x->out->cols[0].data)[0];
}
static const char *fx_str(fixture *x, int g, char *buf, size_t size)
{
    assert_false(fx_null(x, g));
    sl_str s = ((sl_str *)x->out->cols[0].data)[0];
    snprintf(buf, size, "%.*s", (int)s.len, s.ptr);
    return buf;
}

static const row ROWS[] = {
    {.i = 5, .f = 1.5, .t = 1000, .s = "a", .b = 1},
    {.i = -3, .f = -2.25, .t = -5000, .s = "b", .b = 0},
    {.null_i = 1, .null_f = 1, .null_t = 1, .s = NULL, .null_b = 1},
    {.i = 5, .f = 4.0, .t = 1000, .s = "a", .b = 1},
    {.i = 0, .f = -0.0, .t = 0, .s = "", .b = 1},
    {.i = 10, .f = 0.0, .t = 7, .s = "c\0", .b = 0},
};
#define NROWS (sizeof ROWS / sizeof ROWS[0])

static const row NULLS[] = {
    {.null_i = 1, .null_f = 1, .null_t = 1, .null_s = 1, .null_b = 1},
    {.null_i = 1, .null_f = 1, .null_t = 1, .null_s = 1, .null_b = 1},
};

static void count(void **state)
{
    (void)state;
    sl_batch *b = make_batch(ROWS, NROWS), *nb = make_batch(NULLS, 2);
    fixture x;
    fx_init(&x, SL_AGG_COUNT, NULL, NULL, 0);
    assert_int_equal(x.a.out_type, SL_INT64);
    assert_int_equal(fx_i64(&x, 0), 0); /* empty group: 0, not NULL */
    fx_add(&x, b, 0);
    fx_add(&x, nb, 0);
    assert_int_equal(fx_i64(&x, 0), NROWS + 2); /* COUNT(*) counts rows */
    fx_free(&x);

    fx_init(&x, SL_AGG_COUNT, "i", NULL, 0);
    fx_add(&x, b, 0);
    fx_add(&x, nb, 0);
    assert_int_equal(fx_i64(&x, 0), NROWS - 1); /* non-NULL values */
    fx_free(&x);

    fx_init(&x, SL_AGG_COUNT, "s", NULL, 0);
    fx_add(&x, b, 0);
    assert_int_equal(fx_i64(&x, 0), NROWS - 1); /* "" is not NULL */
    fx_free(&x);
    sl__batch_free(b);
    sl__batch_free(nb);
}

static void sum(void **state)
{
    (void)state;
    sl_batch *b = make_batch(ROWS, NROWS), *nb = make_batch(NULLS, 2);
    fixture x;
    fx_init(&x, SL_AGG_SUM, "i", NULL, 0);
    assert_int_equal(x.a.out_type, SL_INT64);
    assert_true(fx_null(&x, 0)); /* no values: NULL */
    fx_add(&x, nb, 0);
    assert_true(fx_null(&x, 0));
    fx_add(&x, b, 0);
    assert_int_equal(fx_i64(&x, 0), 17);
    fx_free(&x);

    fx_init(&x, SL_AGG_SUM, "f", NULL, 0);
    assert_int_equal(x.a.out_type, SL_FLOAT64);
    fx_add(&x, b, 0);
    assert_true(fx_f64(&x, 0) == 3.25);
    fx_free(&x);
    sl__batch_free(b);
    sl__batch_free(nb);
}

static void min_max(void **state)
{
    (void)state;
    sl_batch *b = make_batch(ROWS, NROWS), *nb = make_batch(NULLS, 2);
    fixture x;
    fx_init(&x, SL_AGG_MIN, "i", NULL, 0);
    fx_add(&x, nb, 0);
    assert_true(fx_null(&x, 0));
    fx_add(&x, b, 0);
    assert_int_equal(fx_i64(&x, 0), -3);
    fx_free(&x);

    fx_init(&x, SL_AGG_MAX, "i", NULL, 0);
    fx_add(&x, b, 0);
    assert_int_equal(fx_i64(&x, 0), 10);
    fx_free(&x);

    fx_init(&x, SL_AGG_MIN, "t", NULL, 0);
    assert_int_equal(x.a.out_type, SL_TIMESTAMP);
    fx_add(&x, b, 0);
    assert_int_equal(fx_i64(&x, 0), -5000);
    fx_free(&x);

    fx_init(&x, SL_AGG_MAX, "t", NULL, 0);
    fx_add(&x, b, 0);
    assert_int_equal(fx_i64(&x, 0), 1000);
    fx_free(&x);

    /* Doubles, with a NaN first: ignored. */
    row nan_rows[] = {{.f = NAN}, {.f = 2.5}, {.f = -1.0}, {.f = NAN}};
    sl_batch *fb = make_batch(nan_rows, 4);
    fx_init(&x, SL_AGG_MIN, "f", NULL, 0);
    assert_int_equal(x.a.out_type, SL_FLOAT64);
    fx_add(&x, fb, 0);
    assert_true(fx_f64(&x, 0) == -1.0);
    fx_free(&x);
    fx_init(&x, SL_AGG_MAX, "f", NULL, 0);
    fx_add(&x, fb, 0);
    assert_true(fx_f64(&x, 0) == 2.5);
    fx_free(&x);
    /* Only NaN: no value, NULL. */
    fb->n = 1;
    fx_init(&x, SL_AGG_MAX, "f", NULL, 0);
    fx_add(&x, fb, 0);
    assert_true(fx_null(&x, 0));
    fx_free(&x);
    sl__batch_free(fb);
    sl__batch_free(b);
    sl__batch_free(nb);
}

static void avg(void **state)
{
    (void)state;
    sl_batch *b = make_batch(ROWS, NROWS), *nb = make_batch(NULLS, 2);
    fixture x;
    fx_init(&x, SL_AGG_AVG, "i", NULL, 0);
    assert_int_equal(x.a.out_type, SL_FLOAT64);
    fx_add(&x, nb, 0);
    assert_true(fx_null(&x, 0));
    fx_add(&x, b, 0);
    assert_true(fabs(fx_f64(&x, 0) - 17.0 / 5) < 1e-12);
    fx_free(&x);

    fx_init(&x, SL_AGG_AVG, "f", NULL, 0);
    fx_add(&x, b, 0);
    assert_true(fabs(fx_f64(&x, 0) - 3.25 / 5) < 1e-12);
    fx_free(&x);
    sl__batch_free(b);
    sl__batch_free(nb);
}

static void count_distinct(void **state)
{
    (void)state;
    sl_batch *b = make_batch(ROWS, NROWS), *nb = make_batch(NULLS, 2);
    fixture x;
    /* 5, -3, 5, 0, 10 -> {5, -3, 0, 10}; key 0 counts. */
    fx_init(&x, SL_AGG_COUNT_DISTINCT, "i", NULL, 0);
    assert_int_equal(x.a.out_type, SL_INT64);
    fx_add(&x, nb, 0);
    assert_int_equal(fx_i64(&x, 0), 0);
    fx_add(&x, b, 0);
    fx_add(&x, b, 0);
    assert_int_equal(fx_i64(&x, 0), 4);
    fx_free(&x);

    /* 1.5, -2.25, 4.0, -0.0, 0.0 -> -0.0 and 0.0 are one value. */
    fx_init(&x, SL_AGG_COUNT_DISTINCT, "f", NULL, 0);
    fx_add(&x, b, 0);
    assert_int_equal(fx_i64(&x, 0), 4);
    fx_free(&x);

    fx_init(&x, SL_AGG_COUNT_DISTINCT, "t", NULL, 0);
    fx_add(&x, b, 0);
    assert_int_equal(fx_i64(&x, 0), 4); /* 1000, -5000, 0, 7 */
    fx_free(&x);

    fx_init(&x, SL_AGG_COUNT_DISTINCT, "b", NULL, 0);
    fx_add(&x, b, 0);
    assert_int_equal(fx_i64(&x, 0), 2);
    fx_free(&x);

    /* Strings are kept whole: "a", "b", "", "c" (strlen stops at NUL). */
    fx_init(&x, SL_AGG_COUNT_DISTINCT, "s", NULL, 0);
    fx_add(&x, nb, 0);
    assert_int_equal(fx_i64(&x, 0), 0);
    fx_add(&x, b, 0);
    assert_int_equal(fx_i64(&x, 0), 4);
    fx_free(&x);

    /* Exactness at scale: 50,000 distinct values, each seen twice. */
    enum { CAP = 50 };
    row many[CAP];
    memset(many, 0, sizeof many);
    fx_init(&x, SL_AGG_COUNT_DISTINCT, "i", NULL, 0);
    for (int rep = 0; rep < 2; rep++) {
        for (int base = 0; base < 50000; base += CAP) {
            for (int k = 0; k < CAP; k++) many[k].i = (base + k) * 7919LL;
            sl_batch *mb = make_batch(many, CAP);
            fx_add(&x, mb, 0);
            sl__batch_free(mb);
        }
    }
    assert_int_equal(fx_i64(&x, 0), 50000);
    fx_free(&x);
    sl__batch_free(b);
    sl__batch_free(nb);
}

static void approx_count_distinct(void **state)
{
    (void)state;
    sl_batch *b = make_batch(ROWS, NROWS), *nb = make_batch(NULLS, 2);
    fixture x;
    fx_init(&x, SL_AGG_APPROX_COUNT_DISTINCT, "i", NULL, 0);
    fx_add(&x, nb, 0);
    assert_int_equal(fx_i64(&x, 0), 0);
    fx_add(&x, b, 0);
    assert_int_equal(fx_i64(&x, 0), 4);
    fx_free(&x);
    fx_init(&x, SL_AGG_APPROX_COUNT_DISTINCT, "s", NULL, 0);
    fx_add(&x, b, 0);
    assert_int_equal(fx_i64(&x, 0), 4);
    fx_free(&x);
    sl__batch_free(b);
    sl__batch_free(nb);
}

static void histogram(void **state)
{
    (void)state;
    char buf[128];
    const double bounds[] = {0, 10, 20};
    /* Each bound belongs to the bucket it opens: [b(i-1), b(i)). */
    row rows[] = {
        {.f = -5}, {.f = 0}, {.f = 9.999}, {.f = 10}, {.f = 20},
        {.f = 1e300}, {.f = -INFINITY}, {.f = INFINITY}, {.f = NAN},
        {.null_f = 1},
    };
    sl_batch *b = make_batch(rows, sizeof rows / sizeof rows[0]);
    fixture x;
    fx_init(&x, SL_AGG_HISTOGRAM, "f", bounds, 3);
    assert_int_equal(x.a.out_type, SL_STRING);
    assert_string_equal(fx_str(&x, 0, buf, sizeof buf), "0,0,0,0");
    fx_add(&x, b, 0);
    assert_string_equal(fx_str(&x, 0, buf, sizeof buf), "2,2,1,3");
    fx_free(&x);

    /* Integer input, a single bound, negative values. */
    row irows[] = {{.i = -1}, {.i = 1}, {.i = 2}, {.i = 2}, {.null_i = 1}};
    sl_batch *ib = make_batch(irows, 5);
    const double one[] = {1.5};
    fx_init(&x, SL_AGG_HISTOGRAM, "i", one, 1);
    fx_add(&x, ib, 0);
    assert_string_equal(fx_str(&x, 0, buf, sizeof buf), "2,2");
    fx_free(&x);

    /* Many buckets: the result outgrows the stack buffer. */
    double *many = malloc(300 * sizeof *many);
    for (int i = 0; i < 300; i++) many[i] = i;
    fx_init(&x, SL_AGG_HISTOGRAM, "i", many, 300);
    fx_add(&x, ib, 0);
    char big[1024];
    fx_str(&x, 0, big, sizeof big);
    assert_int_equal(strncmp(big, "1,0,1,2,0", 9), 0);
    assert_int_equal(strlen(big), 2 * 301 - 1);
    fx_free(&x);
    free(many);
    sl__batch_free(ib);
    sl__batch_free(b);
}

/* Values go to the group of their pair, rows picked through `rows`. */
static void rows_and_groups(void **state)
{
    (void)state;
    sl_batch *b = make_batch(ROWS, NROWS);
    fixture x;
    fx_init(&x, SL_AGG_SUM, "i", NULL, 0);
    uint32_t rows[] = {0, 1, 5, 1};
    uint8_t *grp[] = {x.grp[0], x.grp[1], x.grp[1], x.grp[0]};
    sl__agg_add(&x.a, b, rows, grp, 4);
    assert_int_equal(fx_i64(&x, 0), 5 - 3);
    assert_int_equal(fx_i64(&x, 1), -3 + 10);
    fx_free(&x);
    sl__batch_free(b);
}

static void expect_error(sl_agg_kind kind, const char *col,
                         const double *bounds, size_t nb, const char *needle)
{
    sl_agg_spec spec = {.kind = kind, .col = col, .as = "out",
                        .bounds = bounds, .nbounds = nb};
    sl__agg a;
    char err[256] = "";
    assert_int_equal(sl__agg_init(&a, &spec, g_in, 0, err, sizeof err),
                     SL_EINVAL);
    sl__agg_close(&a);
    if (!strstr(err, needle)) fail_msg("'%s' lacks '%s'", err, needle);
    if (!strstr(err, "'out'")) fail_msg("'%s' does not name 'out'", err);
}

static void validation(void **state)
{
    (void)state;
    const double desc[] = {1, 0}, nan[] = {0, NAN}, dup[] = {1, 1};
    expect_error(SL_AGG_MIN, "s", NULL, 0,
                 "MIN does not accept VARCHAR column 's' (allowed: BIGINT, "
                 "TIMESTAMP, DOUBLE)");
    expect_error(SL_AGG_MAX, "b", NULL, 0, "BOOLEAN");
    expect_error(SL_AGG_SUM, "t", NULL, 0, "SUM does not accept TIMESTAMP");
    expect_error(SL_AGG_AVG, "s", NULL, 0, "AVG");
    expect_error(SL_AGG_HISTOGRAM, "s", NULL, 0, "HISTOGRAM");
    expect_error(SL_AGG_SUM, NULL, NULL, 0, "needs an input column");
    expect_error(SL_AGG_COUNT, "nope", NULL, 0, "no input column 'nope'");
    expect_error((sl_agg_kind)99, "i", NULL, 0, "unknown kind");
    expect_error(SL_AGG_HISTOGRAM, "i", NULL, 0, "at least one bound");
    expect_error(SL_AGG_HISTOGRAM, "i", desc, 2, "strictly ascending");
    expect_error(SL_AGG_HISTOGRAM, "i", nan, 2, "bound 1");
    expect_error(SL_AGG_HISTOGRAM, "i", dup, 2, "strictly ascending");
    assert_true(sl__agg_accepts(SL_AGG_COUNT_DISTINCT, SL_STRING));
    assert_false(sl__agg_accepts(SL_AGG_SUM, SL_BOOL));
    assert_string_equal(sl__agg_kind_name(SL_AGG_HISTOGRAM), "HISTOGRAM");
}

/* Every kind: split the input over two groups, merge, compare with one
 * group that saw everything; then serialise, truncate, restore. */
typedef struct {
    sl_agg_kind kind;
    const char *col;
} kind_col;
static const kind_col ALL[] = {
    {SL_AGG_COUNT, NULL},           {SL_AGG_COUNT, "f"},
    {SL_AGG_SUM, "i"},              {SL_AGG_SUM, "f"},
    {SL_AGG_MIN, "i"},              {SL_AGG_MIN, "f"},
    {SL_AGG_MAX, "t"},              {SL_AGG_MAX, "f"},
    {SL_AGG_AVG, "i"},              {SL_AGG_AVG, "f"},
    {SL_AGG_COUNT_DISTINCT, "i"},   {SL_AGG_COUNT_DISTINCT, "s"},
    {SL_AGG_COUNT_DISTINCT, "f"},   {SL_AGG_APPROX_COUNT_DISTINCT, "i"},
    {SL_AGG_APPROX_COUNT_DISTINCT, "s"}, {SL_AGG_HISTOGRAM, "f"},
};

static void same_result(fixture *x, uint8_t *g1, uint8_t *g2)
{
    sl__agg_result(&x->a, g1, x->out, 0, 0);
    sl__agg_result(&x->a, g2, x->out, 0, 1);
    assert_int_equal(x->out->cols[0].valid[0], x->out->cols[0].valid[1]);
    if (!x->out->cols[0].valid[0]) return;
    if (x->a.out_type == SL_STRING) {
        sl_str *s = x->out->cols[0].data;
        assert_int_equal(s[0].len, s[1].len);
        assert_memory_equal(s[0].ptr, s[1].ptr, s[0].len);
    } else if (x->a.out_type == SL_FLOAT64) {
        double *d = x->out->cols[0].data;
        assert_true(fabs(d[0] - d[1]) < 1e-9);
    } else {
        int64_t *v = x->out->cols[0].data;
        assert_int_equal(v[0], v[1]);
    }
}

static void merge_and_serialize(void **state)
{
    (void)state;
    const double bounds[] = {-1, 0, 2};
    sl_batch *b = make_batch(ROWS, NROWS);
    sl_batch *first = make_batch(ROWS, 3), *rest = make_batch(ROWS + 3,
                                                              NROWS - 3);
    for (size_t k = 0; k < sizeof ALL / sizeof ALL[0]; k++) {
        fixture x;
        fx_init(&x, ALL[k].kind, ALL[k].col, bounds, 3);
        uint8_t *all = calloc(1, 8 + x.a.size);
        uint8_t *grp[NROWS];
        for (size_t i = 0; i < NROWS; i++) grp[i] = all;
        sl__agg_add(&x.a, b, NULL, grp, NROWS);

        /* Merge: first rows in group 0, the rest in group 1. */
        fx_add(&x, first, 0);
        fx_add(&x, rest, 1);
        sl__agg_merge(&x.a, x.grp[0], x.grp[1]);
        same_result(&x, x.grp[0], all);

        /* Round trip of a full state, and of an empty one. */
        for (int empty = 0; empty < 2; empty++) {
            uint8_t *src = empty ? x.grp[1] : all;
            if (empty) sl__agg_state_free(&x.a, src);
            size_t size = sl__agg_serialized_size(&x.a, src);
            uint8_t *buf = malloc(size);
            assert_int_equal(sl__agg_serialize(&x.a, src, buf), size);
            uint8_t *back = calloc(1, 8 + x.a.size);
            assert_int_equal(sl__agg_deserialize(&x.a, back, buf, size),
                             (int64_t)size);
            same_result(&x, back, src);
            /* Truncated: an error, and the state is left empty. */
            assert_int_equal(sl__agg_deserialize(&x.a, back, buf, size - 1),
                             SL_ECORRUPT);
            sl__agg_state_free(&x.a, back);
            free(back);
            free(buf);
        }
        sl__agg_state_free(&x.a, all);
        free(all);
        fx_free(&x);
    }
    sl__batch_free(b);
    sl__batch_free(first);
    sl__batch_free(rest);
}

/* A user-defined aggregate over VARCHAR: the longest string's length, and
 * how many values it saw (state: two int64). */
static void len_add(void *st, const sl_value *v, void *ud)
{
    int64_t *m = st;
    (void)ud;
    if ((int64_t)v->s.len > m[0]) m[0] = (int64_t)v->s.len;
    m[1]++;
}
static void len_merge(void *dst, const void *src, void *ud)
{
    int64_t *d = dst;
    const int64_t *s = src;
    (void)ud;
    if (s[0] > d[0]) d[0] = s[0];
    d[1] += s[1];
}
static void len_result(const void *st, sl_value *out, void *ud)
{
    const int64_t *m = st;
    (void)ud;
    if (m[1] == 0) out->null = 1;
    else out->i = m[0];
}

static void user_defined(void **state)
{
    (void)state;
    static const sl_udaf MAXLEN = {.name = "maxlen", .in_type = SL_STRING,
                                   .out_type = SL_INT64, .state_size = 16,
                                   .add = len_add, .merge = len_merge,
                                   .result = len_result};
    static const row R1[] = {{.s = "abc"}, {.s = NULL}, {.s = "hello"}};
    static const row R2[] = {{.s = "sluice!"}, {.s = "x"}};
    sl_agg_spec spec = {.kind = SL_AGG_UDAF, .col = "s", .as = "out", .udaf = &MAXLEN};
    fixture x;
    char err[256];
    assert_int_equal(sl__agg_init(&x.a, &spec, g_in, 8, err, sizeof err), 0);
    x.os = sl_schema_new();
    sl_schema_add(x.os, "out", x.a.out_type);
    x.out = sl__batch_new(x.os, 4);
    for (int g = 0; g < 2; g++) {
        x.grp[g] = malloc(8 + x.a.size);
        sl__agg_state_init(&x.a, x.grp[g]);
    }
    assert_true(fx_null(&x, 0)); /* empty: the UDAF's NULL */
    sl_batch *b1 = make_batch(R1, 3), *b2 = make_batch(R2, 2);
    fx_add(&x, b1, 0); /* NULL skipped: 2 values, longest 5 */
    fx_add(&x, b2, 1);
    assert_int_equal(fx_i64(&x, 0), 5);
    assert_int_equal(fx_i64(&x, 1), 7);
    /* checkpoint round trip, then merge */
    uint8_t buf[64];
    size_t n = sl__agg_serialized_size(&x.a, x.grp[0]);
    assert_int_equal(n, 16);
    assert_int_equal(sl__agg_serialize(&x.a, x.grp[0], buf), 16);
    sl__agg_state_init(&x.a, x.grp[0]);
    assert_int_equal(sl__agg_deserialize(&x.a, x.grp[0], buf, 15), SL_ECORRUPT);
    assert_int_equal(sl__agg_deserialize(&x.a, x.grp[0], buf, n), 16);
    sl__agg_merge(&x.a, x.grp[0], x.grp[1]);
    assert_int_equal(fx_i64(&x, 0), 7);
    int64_t st[2];
    memcpy(st, x.grp[0] + x.a.off, sizeof st);
    assert_int_equal(st[1], 4);
    fx_free(&x);
    sl__batch_free(b1);
    sl__batch_free(b2);
    /* validation: the input type, the output type, the callbacks */
    spec.col = "i";
    expect_error(SL_AGG_UDAF, NULL, NULL, 0, "udaf"); /* no udaf at all */
    sl__agg a;
    assert_int_equal(sl__agg_init(&a, &spec, g_in, 0, err, sizeof err), SL_EINVAL);
    assert_string_equal(err, "aggregate 'out': maxlen takes VARCHAR, column 'i' is BIGINT");
    sl_udaf bad = MAXLEN;
    bad.out_type = SL_STRING;
    spec.col = "s";
    spec.udaf = &bad;
    assert_int_equal(sl__agg_init(&a, &spec, g_in, 0, err, sizeof err), SL_EINVAL);
    assert_non_null(strstr(err, "maxlen returns VARCHAR"));
    bad = MAXLEN;
    bad.merge = NULL;
    assert_int_equal(sl__agg_init(&a, &spec, g_in, 0, err, sizeof err), SL_EINVAL);
    assert_non_null(strstr(err, "merge"));
}

/* APPROX_PERCENTILE (DDSketch): on known distributions every quantile is
 * within the relative error of the exact item of rank floor(q (n - 1));
 * the sketch does not depend on arrival or merge order (what exactly-once
 * replay needs); serialisation round-trips and rejects damage. */
static int cmp_dbl(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void percentile(void **state)
{
    (void)state;
    enum { N = 20000 };
    static double v[N], sorted[N];
    const double alpha = 0.01, qs[] = {0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1};
    for (int dist = 0; dist < 3; dist++) {
        uint64_t seed = 42 + (uint64_t)dist;
        for (int i = 0; i < N; i++) {
            double u = ((double)(splitmix(&seed) >> 11) + 0.5) / 9007199254740992.0;
            v[i] = dist == 0 ? floor(u * 100000)              /* uniform integers */
                 : dist == 1 ? exp(3 + 2 * sqrt(-2 * log(u)) *  /* log-normal-ish */
                                   cos(6.283185307179586 * u * 7))
                             : (u - 0.3) * 1e4;               /* negatives too */
        }
        memcpy(sorted, v, sizeof v);
        qsort(sorted, N, sizeof *sorted, cmp_dbl);
        sl__dds a = {0}, b = {0}, c = {0};
        for (int i = 0; i < N; i++) sl__dds_add(&a, v[i], alpha);
        /* another order, in two halves merged: the same sketch */
        for (int i = N - 1; i >= N / 2; i--) sl__dds_add(&b, v[i], alpha);
        for (int i = 0; i < N / 2; i++) sl__dds_add(&c, v[i], alpha);
        sl__dds_merge(&b, &c);
        for (size_t k = 0; k < sizeof qs / sizeof qs[0]; k++) {
            double got, got2;
            assert_true(sl__dds_quantile(&a, qs[k], alpha, &got));
            assert_true(sl__dds_quantile(&b, qs[k], alpha, &got2));
            assert_memory_equal(&got, &got2, sizeof got); /* bit-identical */
            double want = sorted[(size_t)floor(qs[k] * (N - 1))];
            if (!(fabs(got - want) <= alpha * fabs(want) + 1e-9))
                fail_msg("dist %d q %g: got %g, exact %g", dist, qs[k], got, want);
        }
        /* round trip */
        size_t n = sl__dds_serialized_size(&a);
        uint8_t *buf = malloc(n);
        assert_int_equal(sl__dds_serialize(&a, buf), n);
        sl__dds r = {0};
        assert_int_equal(sl__dds_deserialize(&r, buf, n), (int64_t)n);
        double x, y;
        assert_true(sl__dds_quantile(&r, 0.5, alpha, &x));
        assert_true(sl__dds_quantile(&a, 0.5, alpha, &y));
        assert_memory_equal(&x, &y, sizeof x);
        assert_int_equal(sl__dds_deserialize(&r, buf, n - 8), SL_ECORRUPT);
        buf[0] ^= 1; /* the count no longer matches the buckets */
        assert_int_equal(sl__dds_deserialize(&r, buf, n), SL_ECORRUPT);
        free(buf);
        sl__dds_close(&r);
        sl__dds_close(&a);
        sl__dds_close(&b);
        sl__dds_close(&c);
    }
    /* empty: NULL through the aggregate; bad parameters named */
    sl__dds e = {0};
    double x;
    assert_false(sl__dds_quantile(&e, 0.5, alpha, &x));
    sl_agg_spec spec = {.kind = SL_AGG_APPROX_PERCENTILE, .col = "f", .as = "out",
                        .quantile = 1.5};
    sl__agg ag;
    char err[256];
    assert_int_equal(sl__agg_init(&ag, &spec, g_in, 0, err, sizeof err), SL_EINVAL);
    assert_non_null(strstr(err, "quantile must be in [0, 1]"));
    spec.quantile = 0.5;
    spec.accuracy = 0.9;
    assert_int_equal(sl__agg_init(&ag, &spec, g_in, 0, err, sizeof err), SL_EINVAL);
    assert_non_null(strstr(err, "accuracy"));
    /* values over a range wider than the buckets: the top quantiles stay
     * accurate (the lowest buckets collapse) */
    sl__dds w = {0};
    for (int i = 0; i < 4000; i++) sl__dds_add(&w, pow(10, -8 + i * 0.01), 0.01);
    assert_true(sl__dds_quantile(&w, 0.99, 0.01, &x));
    double want = pow(10, -8 + floor(0.99 * 3999) * 0.01);
    assert_true(fabs(x - want) <= 0.01 * want);
    sl__dds_close(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(count),
        cmocka_unit_test(sum),
        cmocka_unit_test(min_max),
        cmocka_unit_test(avg),
        cmocka_unit_test(count_distinct),
        cmocka_unit_test(approx_count_distinct),
        cmocka_unit_test(histogram),
        cmocka_unit_test(rows_and_groups),
        cmocka_unit_test(validation),
        cmocka_unit_test(merge_and_serialize),
        cmocka_unit_test(user_defined),
        cmocka_unit_test(percentile),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
