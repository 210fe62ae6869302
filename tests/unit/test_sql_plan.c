/* test_sql_plan.c — the SQL planner and evaluator end to end: scripts are
 * compiled and built into real jobs over small CSV files (in a temporary
 * directory), and the CSV they write is compared with results worked out
 * by hand. Covers expressions and NULL semantics, a user-defined function,
 * hop windows with HAVING and HISTOGRAM, variables and explain, and a
 * user-defined aggregate. */
#include <math.h>
#include <unistd.h>

#include "testutil.h"

static char dir[64];

static void write_file(const char *name, const char *text)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static char *read_file(const char *name)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "r");
    if (!f) return NULL;
    static char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

/* Compiles and runs a script with ${dir} set; returns the rc of the run. */
static int run_sql(sl_sql *q, const char *text)
{
    char err[1024] = "";
    assert_int_equal(sl_sql_set(q, "dir", dir, err, sizeof err), 0);
    int rc = sl_sql_compile(q, text, "t.sql", err, sizeof err);
    if (rc) fail_msg("compile: %s", err);
    sl_job *job = sl_job_new(err, sizeof err);
    assert_int_equal(sl_job_set(job, "output.dir", dir, err, sizeof err), 0);
    rc = sl_sql_build(q, job, err, sizeof err);
    if (rc) fail_msg("build: %s", err);
    rc = sl_job_run(job);
    if (rc) fail_msg("run: %s", sl_job_error(job));
    sl_job_free(job);
    return rc;
}

static int shout(const sl_value *a, int n, sl_value *out, void *ud)
{
    (void)n;
    static _Thread_local char buf[256];
    if (a[0].null) {
        out->null = 1;
        return 0;
    }
    int len = snprintf(buf, sizeof buf, "%.*s%s%lld", (int)a[0].s.len, a[0].s.ptr,
                       (const char *)ud, (long long)(a[1].null ? -1 : a[1].i));
    out->s = (sl_str){buf, (uint32_t)len};
    return 0;
}

static void test_expressions_and_udf(void **state)
{
    (void)state;
    write_file("in.csv", "ts,name,n\n1000,alice,4\n2000,bob,0\n61000,,7\n62000,carol,\n");
    sl_sql *q = sl_sql_new();
    char err[256];
    assert_int_equal(sl_sql_add_function(q, "shout", SL_STRING,
                                         (sl_type[]){SL_STRING, SL_INT64}, 2, shout, "#",
                                         err, sizeof err), 0);
    assert_int_equal(sl_sql_add_function(q, "upper", SL_STRING, (sl_type[]){SL_STRING}, 1,
                                         shout, NULL, err, sizeof err), SL_EINVAL);
    assert_string_equal(err, "sql: 'upper' is a built-in function");
    run_sql(q,
            "CREATE SOURCE s (ts TIMESTAMP, name VARCHAR, n BIGINT)\n"
            "  WITH (connector='file', path='${dir}/in.csv');\n"
            "CREATE SINK o WITH (connector='file', path='${dir}/out.csv') AS\n"
            "SELECT ts, UPPER(name) || '!' AS u, 10 / n AS d, COALESCE(name, 'none') AS c,\n"
            "  CASE WHEN n > 3 THEN 'big' WHEN n IS NULL THEN 'null' ELSE 'small' END AS k,\n"
            "  name LIKE '%o%' AS l, CAST(n AS DOUBLE) / 4 AS f, SUBSTR(name, 2, 3) AS sub,\n"
            "  AGE_YEARS(TIMESTAMP '2000-02-29', TIMESTAMP '2024-02-28') AS age,\n"
            "  SHOUT(name, n) AS sh\n"
            "FROM s WHERE n IS NULL OR n < 5 OR name IS NULL;");
    assert_string_equal(read_file("out.csv"),
                        "ts,u,d,c,k,l,f,sub,age,sh\n"
                        "1000,ALICE!,2,alice,big,false,1.0,lic,23,alice#4\n"
                        "2000,BOB!,,bob,small,true,0.0,ob,23,bob#0\n"
                        "61000,,1,none,big,,1.75,,23,\n"
                        "62000,CAROL!,,carol,null,true,,aro,23,carol#-1\n");
    sl_sql_free(q);
}

static void test_hop_having_histogram(void **state)
{
    (void)state;
    /* one minute windows every 30 s; k=a twice at 10 s and 40 s, k=b once */
    write_file("ev.csv", "ts,k,v\n10000,a,1\n40000,a,50\n45000,b,5\n");
    sl_sql *q = sl_sql_new();
    run_sql(q,
            "SET 'parallelism' = '1'; -- one task: rows come out in window, key order\n"
            "CREATE SOURCE s (ts TIMESTAMP, k VARCHAR, v BIGINT,\n"
            "  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)\n"
            "  WITH (connector='file', path='${dir}/ev.csv');\n"
            "CREATE SINK o WITH (connector='file', path='${dir}/hop.csv') AS\n"
            "SELECT window_start AS ws, window_end - window_start AS len, k,\n"
            "  COUNT(*) AS c, SUM(v) AS s, HISTOGRAM(v, 10, 100) AS h, MAX(v) * 2 AS m2\n"
            "FROM s GROUP BY HOP(ts, INTERVAL '30' SECOND, INTERVAL '1' MINUTE), k\n"
            "HAVING COUNT(*) >= 1 AND k <> 'zz';");
    /* windows [-30,30) [0,60) [30,90): a: 1; 2; 1 -- b: -; 1; 1 */
    assert_string_equal(read_file("hop.csv"),
                        "ws,len,k,c,s,h,m2\n"
                        "-30000,60000,a,1,1,\"1,0,0\",2\n"
                        "0,60000,a,2,51,\"1,1,0\",100\n"
                        "0,60000,b,1,5,\"1,0,0\",10\n"
                        "30000,60000,a,1,50,\"0,1,0\",100\n"
                        "30000,60000,b,1,5,\"1,0,0\",10\n");
    size_t need = sl_sql_explain(q, NULL, 0);
    char *plan = malloc(need + 1);
    sl_sql_explain(q, plan, need + 1);
    assert_non_null(strstr(plan, "window HOP size 60000 ms, slide 30000 ms"));
    assert_non_null(strstr(plan, "stage 2: keyed by (k)"));
    assert_non_null(strstr(plan, "filter HAVING"));
    free(plan);
    sl_sql_free(q);
}

/* STDDEV_POP as a user-defined aggregate: a plain-bytes state. */
typedef struct {
    double n, sum, sq;
} moments;

static void sd_add(void *st, const sl_value *v, void *ud)
{
    moments *m = st;
    (void)ud;
    m->n += 1;
    m->sum += v->f;
    m->sq += v->f * v->f;
}

static void sd_merge(void *dst, const void *src, void *ud)
{
    moments *d = dst;
    const moments *s = src;
    (void)ud;
    d->n += s->n;
    d->sum += s->sum;
    d->sq += s->sq;
}

static void sd_result(const void *st, sl_value *out, void *ud)
{
    const moments *m = st;
    (void)ud;
    if (m->n == 0) {
        out->null = 1;
        return;
    }
    double mean = m->sum / m->n;
    out->f = sqrt(m->sq / m->n - mean * mean);
}

static const sl_udaf STDDEV = {.name = "stddev_pop", .in_type = SL_FLOAT64,
                               .out_type = SL_FLOAT64, .state_size = sizeof(moments),
                               .add = sd_add, .merge = sd_merge, .result = sd_result};

static void test_user_defined_aggregate(void **state)
{
    (void)state;
    /* minute 0: a = 2, 4, 4, 4, 5, 5, 7, 9 (sd 2), b = 1 and NULL (sd 0);
     * minute 1: a = 3 only (sd 0) */
    write_file("ud.csv", "ts,k,v\n1000,a,2\n2000,a,4\n3000,a,4\n4000,a,4\n5000,a,5\n"
                         "6000,a,5\n7000,a,7\n8000,a,9\n9000,b,1\n9500,b,\n61000,a,3\n");
    sl_sql *q = sl_sql_new();
    char err[256];
    assert_int_equal(sl_sql_add_aggregate(q, &STDDEV, err, sizeof err), 0);
    assert_int_equal(sl_sql_add_aggregate(q, &STDDEV, err, sizeof err), SL_EINVAL);
    assert_string_equal(err, "sql: function 'stddev_pop' is already registered");
    run_sql(q,
            "SET 'parallelism' = '1';\n"
            "CREATE SOURCE s (ts TIMESTAMP, k VARCHAR, v DOUBLE)\n"
            "  WITH (connector='file', path='${dir}/ud.csv');\n"
            "CREATE SINK o WITH (connector='file', path='${dir}/ud_out.csv') AS\n"
            "SELECT window_start AS ws, k, STDDEV_POP(v) AS sd, STDDEV_POP(v) * 10 AS sd10,\n"
            "  COUNT(v) AS n FROM s GROUP BY TUMBLE(ts, INTERVAL '1' MINUTE), k\n"
            "HAVING STDDEV_POP(v) >= 0;");
    assert_string_equal(read_file("ud_out.csv"),
                        "ws,k,sd,sd10,n\n"
                        "0,a,2.0,20.0,8\n"
                        "0,b,0.0,0.0,1\n"
                        "60000,a,0.0,0.0,1\n");
    /* the argument's type is checked, and an aggregate stays out of WHERE */
    const char *bad[][2] = {
        {"SELECT window_start, STDDEV_POP(k) AS x FROM s GROUP BY TUMBLE(ts, INTERVAL '1' "
         "MINUTE);", "t.sql:4:33: stddev_pop takes DOUBLE, got VARCHAR"},
        {"SELECT window_start, COUNT(*) AS x FROM s WHERE STDDEV_POP(v) > 1 GROUP BY "
         "TUMBLE(ts, INTERVAL '1' MINUTE);", "t.sql:4:63: aggregates are not allowed in WHERE "
         "(use HAVING)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[1024];
        snprintf(text, sizeof text,
                 "CREATE SOURCE s (ts TIMESTAMP, k VARCHAR, v DOUBLE)\n"
                 "  WITH (connector='file', path='x.csv');\n"
                 "CREATE SINK o WITH (connector='stdout') AS\n%s", bad[i][0]);
        const char *want = bad[i][1];
        assert_int_equal(sl_sql_compile(q, text, "t.sql", err, sizeof err), SL_EINVAL);
        if (strncmp(err, want, strlen(want))) fail_msg("got: %s", err);
    }
    sl_sql_free(q);
}

static void test_variables(void **state)
{
    (void)state;
    sl_sql *q = sl_sql_new();
    char err[512];
    const char *job = "CREATE SOURCE s (ts TIMESTAMP) WITH (connector='file', "
                      "path='${p:-default.csv}');\n"
                      "CREATE SINK o WITH (connector='stdout') AS SELECT ts FROM s;";
    assert_int_equal(sl_sql_compile(q, job, "v.sql", err, sizeof err), 0);
    char plan[2048];
    sl_sql_explain(q, plan, sizeof plan);
    assert_non_null(strstr(plan, "path=default.csv"));
    assert_int_equal(sl_sql_set(q, "parallelism", "3", err, sizeof err), 0);
    assert_int_equal(sl_sql_set(q, "typo", "1", err, sizeof err), 0);
    assert_int_equal(sl_sql_compile(q, job, "v.sql", err, sizeof err), SL_EINVAL);
    assert_string_equal(err, "v.sql: --set typo: not a job key and not used as ${typo} in "
                        "the script");
    sl_sql_free(q);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/sluice-sql-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expressions_and_udf),
        cmocka_unit_test(test_hop_having_histogram),
        cmocka_unit_test(test_variables),
        cmocka_unit_test(test_user_defined_aggregate),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) {}
    return rc;
}
