/* test_sql_parse.c — the SQL front end's lexer, parser and semantic
 * checks: tokens with positions, statements parsed, and at least 20
 * malformed scripts each with its exact message (file:line:col, the
 * offending token or name, what was expected or the nearest valid name).
 * Then a fuzz-style check: random token soup and every truncation of the
 * example jobs must be rejected or accepted cleanly, never crash (run it
 * under ASan: make B=build-asan OPT="-O1 -fsanitize=address,undefined
 * -fno-sanitize-recover=all" build-asan/tests/test_sql_parse). */
#include "testutil.h"

#include "sql/sql.h"

#define SRC "CREATE SOURCE s (ts TIMESTAMP, x VARCHAR, n BIGINT) WITH (connector='file', path='in');\n"
#define SNK "CREATE SINK k WITH (connector='stdout') AS\n"
#define TAB "CREATE TABLE t (k VARCHAR, v BIGINT, PRIMARY KEY (k)) WITH (connector='file', path='t.csv');\n"

static void test_lexer(void **state)
{
    (void)state;
    sql_tok *t;
    int n;
    char err[256];
    assert_int_equal(sql_lex("SELECT a.b, 'it''s' -- c\n  <= 1.5e3 <> \"Q x\" ||", &t, &n,
                             err, sizeof err), 0);
    sql_tok_kind want[] = {T_IDENT, T_IDENT, T_DOT, T_IDENT, T_COMMA, T_STRING, T_LE,
                           T_FLOAT, T_NE, T_IDENT, T_CONCAT, T_EOF};
    assert_int_equal(n, (int)(sizeof want / sizeof want[0]));
    for (int i = 0; i < n; i++) assert_int_equal(t[i].kind, want[i]);
    assert_int_equal(t[6].line, 2);
    assert_int_equal(t[6].col, 3);
    assert_true(t[9].quoted);
    assert_int_equal(t[9].len, 3);
    free(t);
    assert_int_equal(sql_lex("a /* never closed", &t, &n, err, sizeof err), SL_EPARSE);
    assert_string_equal(err, "1:3: unterminated comment");
    free(t);
    assert_int_equal(sql_lex("x = 12ab", &t, &n, err, sizeof err), SL_EPARSE);
    assert_string_equal(err, "1:5: malformed number '12a'");
    free(t);
}

static void test_parser(void **state)
{
    (void)state;
    sql_script s;
    char err[256];
    int l, c;
    const char *q =
        "SET 'parallelism' = '2';\n"
        "CREATE SOURCE e (ts TIMESTAMP, k VARCHAR CHECK (k IN ('a', 'b')),\n"
        "  WATERMARK FOR ts AS ts - INTERVAL '3' SECOND) WITH (connector = 'file', path = 'p');\n"
        "CREATE SINK o WITH (connector = 'stdout') AS SELECT window_start, k,\n"
        "  COUNT(DISTINCT k) AS n FROM e GROUP BY TUMBLE(ts, INTERVAL '1' MINUTE), k\n"
        "  HAVING COUNT(*) > 1 + 2 * 3";
    assert_int_equal(sql_parse(q, &s, err, sizeof err, &l, &c), 0);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.v[0].k, S_SET);
    assert_string_equal(s.v[0].opts[0].value, "2");
    assert_int_equal(s.v[1].k, S_SOURCE);
    assert_int_equal(s.v[1].ncols, 2);
    assert_string_equal(s.v[1].cols[1].domain[1], "b");
    assert_int_equal(s.v[1].wm_delay, 3000);
    const sql_select *sel = s.v[2].sel;
    assert_int_equal(sel->nitems, 3);
    assert_true(sel->items[2].expr->distinct);
    assert_int_equal(sel->ngroup, 2);
    assert_int_equal(sel->group[0]->args[1]->li, 60000);
    /* precedence: 1 + (2 * 3) */
    const sql_expr *h = sel->having;
    assert_int_equal(h->op, OP_GT);
    assert_int_equal(h->args[1]->op, OP_ADD);
    assert_int_equal(h->args[1]->args[1]->op, OP_MUL);
    char buf[128];
    sql_expr_print(h, buf, sizeof buf);
    assert_string_equal(buf, "(COUNT(*) > (1 + (2 * 3)))");
    sql_script_free(&s);
}

static void test_nearest(void **state)
{
    (void)state;
    const char *c[] = {"event_type", "cell_id", "ts"};
    assert_string_equal(sql_nearest("evnt_type", c, 3), "event_type");
    assert_string_equal(sql_nearest("cel_id", c, 3), "cell_id");
    assert_null(sql_nearest("weather", c, 3));
}

static const struct {
    const char *sql;
    int rc;
    const char *msg;
} bad[] = {
    {"SELEC 1;",
     SL_EPARSE, "q.sql:1:1: expected CREATE or SET at the start of a statement, found 'SELEC'"},
    {"CREATE SOURCE s (ts TIMESTAMP WITH (connector='file', path='x');",
     SL_EPARSE, "q.sql:1:31: expected ')' or ',' in the column list, found 'WITH'"},
    {"CREATE SOURCE s (ts TIMESTMP) WITH (connector='file', path='x');",
     SL_EPARSE, "q.sql:1:21: expected a type (BIGINT, DOUBLE, BOOLEAN, VARCHAR or TIMESTAMP), found 'TIMESTMP'"},
    {SRC
         SNK
         "SELECT ts FROM s WHERE x = 'abc;",
     SL_EPARSE, "q.sql:3:28: unterminated string"},
    {SRC
         SNK
         "SELECT ts, FROM s;",
     SL_EPARSE, "q.sql:3:12: expected an expression, found 'FROM'"},
    {SRC
         SNK
         "SELECT ts FROM s WHERE n > 1 +;",
     SL_EPARSE, "q.sql:3:31: expected an expression, found ';'"},
    {SRC
         SNK
         "SELECT CASE WHEN n > 0 THEN 1 FROM s;",
     SL_EPARSE, "q.sql:3:31: expected END to close CASE, found 'FROM'"},
    {"CREATE SOURCE s (ts TIMESTAMP,\n"
         "  WATERMARK FOR ts AS ts - INTERVAL '5' SECONDZ) WITH (connector='file', path='x');",
     SL_EPARSE, "q.sql:2:41: expected a time unit (MILLISECOND, SECOND, MINUTE, HOUR or DAY), found 'SECONDZ'"},
    {SRC
         SNK
         "SELECT ts FROM s @;",
     SL_EPARSE, "q.sql:3:18: unexpected character '@'"},
    {SRC
         SNK
         "SELECT y FROM s;",
     SL_EINVAL, "q.sql:3:8: unknown column 'y'; did you mean 'x'?"},
    {SRC
         SNK
         "SELECT nn FROM s;",
     SL_EINVAL, "q.sql:3:8: unknown column 'nn'; did you mean 'n'?"},
    {SRC
         SNK
         "SELECT UPPR(x) FROM s;",
     SL_EINVAL, "q.sql:3:8: unknown function 'UPPR'; did you mean 'UPPER'?"},
    {"CREATE SOURCE s (ts TIMESTAMP) WITH (connector='fil', path='x');\n"
         SNK
         "SELECT ts FROM s;",
     SL_EINVAL, "q.sql:1:48: unknown connector 'fil'; did you mean 'file'?"},
    {SRC
         "CREATE SINK k WITH (connector='sqlit', path='x') AS\n"
         "SELECT ts FROM s;",
     SL_EINVAL, "q.sql:2:31: unknown connector 'sqlit'; did you mean 'sqlite'?"},
    {SRC
         SNK
         "SELECT ts FROM ss;",
     SL_EINVAL, "q.sql:3:16: unknown source 'ss'; did you mean 's'?"},
    {SRC
         SNK
         "SELECT x + 1 AS y FROM s;",
     SL_EINVAL, "q.sql:3:10: operator '+' needs numbers, got VARCHAR and BIGINT"},
    {SRC
         SNK
         "SELECT ts FROM s WHERE x;",
     SL_EINVAL, "q.sql:3:24: WHERE needs a BOOLEAN condition, got VARCHAR"},
    {SRC
         SNK
         "SELECT ts FROM s WHERE x = 1;",
     SL_EINVAL, "q.sql:3:26: cannot compare VARCHAR with BIGINT"},
    {SRC
         SNK
         "SELECT x, COUNT(*) AS c FROM s GROUP BY x;",
     SL_EINVAL, "q.sql:3:41: an aggregate over a stream needs GROUP BY TUMBLE(time, INTERVAL ...) or HOP(...)"},
    {SRC
         SNK
         "SELECT x, ts, COUNT(*) AS c FROM s GROUP BY TUMBLE(ts, INTERVAL '1' MINUTE), x;",
     SL_EINVAL, "q.sql:3:11: column 'ts' must appear in GROUP BY or be used in an aggregate function"},
    {SRC
         SNK
         "SELECT x, SUM(x) AS c FROM s GROUP BY TUMBLE(ts, INTERVAL '1' MINUTE), x;",
     SL_EINVAL, "q.sql:3:15: SUM does not accept VARCHAR values"},
    {SRC
         SNK
         "SELECT x FROM s WHERE COUNT(*) > 1;",
     SL_EINVAL, "q.sql:3:32: aggregates are not allowed in WHERE (use HAVING)"},
    {SRC
         SNK
         "SELECT x, PSEUDONYMIZE(x) AS p FROM s;",
     SL_EINVAL, "q.sql:3:8: column 'x' is pseudonymised in this job: write PSEUDONYMIZE(x) (the raw identifier never passes the first operator)"},
    {SRC
         "CREATE TABLE t (k VARCHAR, v BIGINT) WITH (connector='file', path='t.csv');\n"
         SNK
         "SELECT t.v FROM s JOIN t FOR SYSTEM_TIME AS OF s.ts ON t.k = s.x;",
     SL_EINVAL, "q.sql:2:14: table 't' needs a PRIMARY KEY to be joined"},
    {SRC
         TAB
         SNK
         "SELECT u.v FROM s JOIN t FOR SYSTEM_TIME AS OF s.ts AS tt ON tt.k = s.x;",
     SL_EINVAL, "q.sql:4:8: unknown table or alias 'u'; did you mean 's'?"},
    {SRC
         TAB
         SNK
         "SELECT t.v FROM s JOIN t FOR SYSTEM_TIME AS OF s.ts ON t.k = s.n;",
     SL_EINVAL, "q.sql:4:60: cannot join VARCHAR key 't.k' with BIGINT column 'n'"},
    {SRC
         TAB
         SNK
         "SELECT x FROM s JOIN t ON t.k = s.x;",
     SL_EPARSE, "q.sql:4:24: expected FOR (lookup joins read FOR SYSTEM_TIME AS OF e.ts), found 'ON'"},
    {SRC
         TAB
         SNK
         "SELECT t.k FROM s JOIN t FOR SYSTEM_TIME AS OF s.ts ON t.k = s.x;",
     SL_EINVAL, "q.sql:4:8: 't.k' is the table's key, which the lookup does not append; use the stream's column 'x'"},
    {"SET 'paralelism' = '4';\n"
         SRC
         SNK
         "SELECT ts FROM s;",
     SL_EINVAL, "q.sql:1:5: SET: job: unknown key 'paralelism' (known keys: parallelism, workers, batch.size, exchange.capacity, key.groups, flush.ms, sink.flush.ms, output.dir, name, checkpoint.dir, checkpoint.interval.ms, checkpoint.retain, delivery, from.scratch, restore.from, canary.interval.ms, canary.timeout.ms, source.rate, metrics.address, metrics.linger.ms, dashboard.dir, metrics.token.file, metrics.rate.limit, state.backend, state.rocksdb.dir, state.memory.bound, state.ttl.ms, state.checkpoints.incremental, window.max.groups, deadletter.max.count, deadletter.max.bytes, deadletter.overflow, exchange.max.bytes, log.file, log.level, cluster.instance.id, cluster.session.timeout.ms, cluster.transaction.timeout.ms, cluster.replication.factor, checkpoint.async, table.images) (or key.file)"},
    {"SET 'parallelism' = '-4';\n"
         SRC
         SNK
         "SELECT ts FROM s;",
     SL_EINVAL, "q.sql:1:21: SET: job: 'parallelism' must be an integer in [0, 256], got '-4'"},
    {"SET 'checkpoint.interval' = 'soon';\n"
         SRC
         SNK
         "SELECT ts FROM s;",
     SL_EINVAL, "q.sql:1:29: 'checkpoint.interval' must be a duration such as '10s', '500ms' or '1min', got 'soon'"},
    {SRC
         "",
     SL_EINVAL, "q.sql:1:1: the script has no CREATE SINK ... AS SELECT: nothing to run"},
    {SRC
         "CREATE SINK k WITH (connector='sqlite', path='o.db', k_anonymity='16', k_column='c') AS\n"
         "SELECT x, COUNT(*) AS c FROM s GROUP BY TUMBLE(ts, INTERVAL '1' MINUTE), x;",
     SL_EINVAL, "q.sql:2:81: k_column 'c' must be a COUNT(DISTINCT ...) of subscribers"},
    {SRC
         "CREATE SINK k WITH (connector='sqlite', path='o.db', k_anonymity='1', k_column='c') AS\n"
         "SELECT x, COUNT(DISTINCT n) AS c FROM s GROUP BY TUMBLE(ts, INTERVAL '1' MINUTE), x;",
     SL_EINVAL, "q.sql:2:66: k_anonymity must be an integer in [2, 1000000000], got '1'"},
    {SRC
         SNK
         "SELECT x, COUNT(*) AS c FROM s GROUP BY HOP(ts, INTERVAL '1' MINUTE, INTERVAL '90' SECOND), x;",
     SL_EINVAL, "q.sql:3:70: HOP's size must be a multiple of its slide"},
    {SRC
         SNK
         "SELECT x, COUNT(*) AS c, SUM(n) AS c FROM s GROUP BY TUMBLE(ts, INTERVAL '1' MINUTE), x;",
     SL_EINVAL, "q.sql:3:26: two result columns are named 'c'; name one with AS"},
    {"CREATE SOURCE s (ts TIMESTAMP) WITH (connector='postgres', path='x');\n"
         SNK
         "SELECT ts FROM s;",
     SL_EINVAL, "q.sql:1:48: connector 'postgres' is not available yet for a source"},
    {SRC
         SNK
         "SELECT SUBSTR(x) FROM s;",
     SL_EINVAL, "q.sql:3:8: SUBSTR takes a different number of arguments: SUBSTR(string, start [, length])"},
    {"CREATE SOURCE s (ts TIMESTAMP, x VARCHAR) WITH (connector='file', path='${nope}');\n"
         SNK
         "SELECT x FROM s;",
     SL_EINVAL, "q.sql:1:72: variable '${nope}' is not set (sluice run FILE.sql --set nope=VALUE, or write ${nope:-default})"},
    {SRC
         SNK
         "SELECT CAST(x AS BLOB) FROM s;",
     SL_EPARSE, "q.sql:3:18: expected a type (BIGINT, DOUBLE, BOOLEAN, VARCHAR or TIMESTAMP), found 'BLOB'"},
    {SRC
         SNK
         "SELECT x FROM s;\n"
         SNK
         "SELECT x FROM s;",
     SL_EINVAL, "q.sql:4:13: 'k' is already defined on line 2"},
    {SRC
         SNK
         "SELECT x, COUNT(*) AS c FROM s GROUP BY TUMBLE(x, INTERVAL '1' MINUTE), x;",
     SL_EINVAL, "q.sql:3:48: time column 'x' must be TIMESTAMP, not VARCHAR"},
    {SRC
         SNK
         "SELECT x, COUNT(*) AS c FROM s GROUP BY TUMBLE(ts, INTERVAL '0' MINUTE), x;",
     SL_EINVAL, "q.sql:3:52: TUMBLE needs a positive INTERVAL here, as in INTERVAL '1' MINUTE"},
    {SRC
         SNK
         "SELECT x, AVG(DISTINCT n) AS c FROM s GROUP BY TUMBLE(ts, INTERVAL '1' MINUTE), x;",
     SL_EINVAL, "q.sql:3:11: DISTINCT is only supported in COUNT(DISTINCT ...)"},
    {SRC
         SNK
         "SELECT CASE WHEN n > 0 THEN 'a' ELSE 2 END FROM s;",
     SL_EINVAL, "q.sql:3:8: the branches of CASE have different types"},
    {SRC
         SNK
         "SELECT x FROM s WHERE x LIKE 5;",
     SL_EINVAL, "q.sql:3:25: LIKE needs VARCHAR operands, got VARCHAR and BIGINT"},
    {SRC
         SNK
         "SELECT * FROM s;",
     SL_EPARSE, "q.sql:3:8: SELECT * is not supported: name the columns"},
    {SRC
         SNK
         "SELECT window_start, x, COUNT(*) AS c FROM s GROUP BY HOP(ts, INTERVAL '1' MINUTE, INTERVAL '2' MINUTE), x HAVING window_start > 0 AND x = window_end;",
     SL_EINVAL, "q.sql:3:138: cannot compare VARCHAR with TIMESTAMP"},
    {SRC
         SNK
         "SELECT x FROM s WHERE (((x = 'a');",
     SL_EPARSE, "q.sql:3:34: expected ')' to close '(', found ';'"},
    {"CREATE TABLE s (ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH (connector='file', path='x');",
     SL_EPARSE, "q.sql:1:31: WATERMARK belongs to sources (CREATE SOURCE), not tables"},
};

static void test_malformed(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sl_sql *q = sl_sql_new();
        char err[1024] = "";
        int rc = sl_sql_compile(q, bad[i].sql, "q.sql", err, sizeof err);
        if (rc != bad[i].rc || strcmp(err, bad[i].msg))
            fail_msg("case %zu: got %d '%s', want %d '%s'", i, rc, err, bad[i].rc,
                     bad[i].msg);
        int line, col;
        sl_sql_error_pos(q, &line, &col);
        assert_true(line >= 1 && col >= 1);
        sl_sql_free(q);
    }
    assert_true(sizeof bad / sizeof bad[0] >= 20);
}

static const char *const words[] = {
    "SELECT", "FROM", "WHERE", "GROUP", "BY", "HAVING", "JOIN", "FOR", "SYSTEM_TIME",
    "AS", "OF", "ON", "CREATE", "SOURCE", "TABLE", "SINK", "WITH", "SET", "TUMBLE",
    "HOP", "INTERVAL", "'1'", "MINUTE", "CASE", "WHEN", "THEN", "ELSE", "END", "COUNT",
    "DISTINCT", "PSEUDONYMIZE", "(", ")", ",", ";", "=", "<", "+", "-", "*", "/", "||",
    "'x'", "1", "2.5", "NULL", "IS", "NOT", "IN", "BETWEEN", "AND", "OR", "s", "x",
    "ts", "n", "t", "k", "window_start", "connector", "'file'", "'stdout'", "CAST",
    "BIGINT", "VARCHAR", "TIMESTAMP", "WATERMARK", "PRIMARY", "KEY", "\"q\"", ".",
    "LIKE", "COALESCE", "AGE_YEARS", "HISTOGRAM", "'${v:-a}'", "/*", "--", "'"};

static uint64_t rng_state;
static uint32_t rnd(void)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(rng_state >> 33);
}

static void compile_once(const char *text)
{
    sl_sql *q = sl_sql_new();
    char err[512];
    int rc = sl_sql_compile(q, text, "fuzz.sql", err, sizeof err);
    assert_true(rc == 0 || rc == SL_EPARSE || rc == SL_EINVAL);
    if (rc) assert_true(strncmp(err, "fuzz.sql:", 9) == 0);
    char plan[256];
    sl_sql_explain(q, plan, sizeof plan);
    sl_sql_free(q);
}

static void test_fuzz(void **state)
{
    (void)state;
    const char *seed = getenv("SLUICE_SEED");
    rng_state = seed ? strtoull(seed, NULL, 10) : 12345;
    printf("test_fuzz: seed %llu (SLUICE_SEED=N to change)\n",
           (unsigned long long)rng_state);
    char buf[4096];
    /* token soup, biased to start like a job */
    for (int it = 0; it < 3000; it++) {
        size_t o = 0;
        if (it % 2) o += (size_t)snprintf(buf, sizeof buf, SRC SNK);
        int n = 1 + (int)(rnd() % 40);
        for (int i = 0; i < n && o + 40 < sizeof buf; i++)
            o += (size_t)snprintf(buf + o, sizeof buf - o, "%s ",
                                  words[rnd() % (sizeof words / sizeof words[0])]);
        buf[o] = 0;
        compile_once(buf);
    }
    /* every truncation of real jobs, and single-byte damage */
    const char *jobs[] = {
        "CREATE SOURCE s (ts TIMESTAMP, x VARCHAR, n BIGINT, m VARCHAR) WITH "
        "(connector='file', path='in');\n" TAB "SET 'key.file' = 'k';\n"
        "CREATE SINK k WITH (connector='sqlite', path='o.db', mode='upsert', "
        "k_anonymity='2', k_column='c') AS\n"
        "SELECT window_start, window_end, x, CASE WHEN t.v IS NULL THEN 'u' ELSE 'k' END AS b,\n"
        "  COUNT(DISTINCT PSEUDONYMIZE(s.m)) AS c, HISTOGRAM(n, 1, 10, 100) AS h,\n"
        "  AVG(n) AS a, APPROX_COUNT_DISTINCT(n) AS d\n"
        "FROM s JOIN t FOR SYSTEM_TIME AS OF s.ts ON t.k = PSEUDONYMIZE(s.m)\n"
        "WHERE n BETWEEN 1 AND 5 OR x IN ('a', 'b') OR x LIKE 'a%'\n"
        "GROUP BY TUMBLE(ts, INTERVAL '1' MINUTE), x, b HAVING COUNT(*) > 2;",
        SRC SNK "SELECT UPPER(x) || '-' || CAST(n AS VARCHAR) AS y, n / 0 AS z, "
        "COALESCE(NULL, n, 1) AS w FROM s WHERE NOT (x = 'a') AND n <> 3;"};
    for (size_t j = 0; j < sizeof jobs / sizeof jobs[0]; j++) {
        size_t len = strlen(jobs[j]);
        char *cp = malloc(len + 1);
        for (size_t cut = 0; cut <= len; cut++) {
            memcpy(cp, jobs[j], cut);
            cp[cut] = 0;
            compile_once(cp);
        }
        for (int it = 0; it < 500; it++) {
            memcpy(cp, jobs[j], len + 1);
            cp[rnd() % len] = (char)(1 + rnd() % 126);
            compile_once(cp);
        }
        free(cp);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lexer),
        cmocka_unit_test(test_parser),
        cmocka_unit_test(test_nearest),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_fuzz),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
