/* test_timage.c — lookup table images (state/timage.c, ops/limage.c): a
 * table read back from its image answers every lookup exactly as the table
 * loaded from the CSV (the expected rows come from the generator's own
 * arrays, not from sluice); every mismatch (one byte of the file changed
 * with its size and mtime restored, another schema, another pseudonymisation
 * key under the same id, a truncated image, a flipped byte, another image
 * version) is noticed, the table is loaded from the source with the right
 * rows and the image written again; the image of a pseudonymised table holds
 * no raw msisdn, in text or as a number. Whether the image was used is read
 * from the log, as an operator would. */
#include "testutil.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "ops/privacy.h"
#include "state/state.h"

#define NSUB 20000u /* three chunks: 4096 + 8192 + 16384 rows */
#define NDUP 500u   /* rows that repeat an earlier msisdn (the last wins) */
#define SECRET_A "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define SECRET_B "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"

static char g_dir[] = "/tmp/sl_test_timage_XXXXXX";
static char g_csv[600], g_log[600], g_ck[600], g_tables[700];
static sl_schema *g_subs;

/* The generator's rows: msisdn i is 4917 followed by 8 digits. */
typedef struct {
    char id[16];
    bool has_birth;
    int y, m, d;
    const char *gender; /* "" = empty */
    bool last;          /* no later row has this msisdn */
} row;
static row g_rows[NSUB + NDUP];

static void make_rows(void)
{
    static const char *const genders[] = {"F", "M", "", "X"};
    for (uint32_t i = 0; i < NSUB + NDUP; i++) {
        row *r = &g_rows[i];
        uint32_t who = i < NSUB ? i : (i - NSUB) * 37 % NSUB;
        snprintf(r->id, sizeof r->id, "4917%08u", 10000000u + who * 7919u % 90000000u);
        r->has_birth = i % 11 != 3;
        r->y = 1940 + (int)(i * 13 % 70);
        r->m = 1 + (int)(i % 12);
        r->d = 1 + (int)(i * 7 % 28);
        r->gender = genders[i % 4];
        r->last = true;
        if (i >= NSUB) g_rows[who].last = false; /* ids are distinct per `who` */
    }
}

static void write_csv(void)
{
    FILE *f = fopen(g_csv, "w");
    assert_non_null(f);
    fputs("msisdn,birth_date,gender\n", f);
    for (uint32_t i = 0; i < NSUB + NDUP; i++) {
        const row *r = &g_rows[i];
        if (r->has_birth)
            fprintf(f, "%s,%04d-%02d-%02d,%s\n", r->id, r->y, r->m, r->d, r->gender);
        else
            fprintf(f, "%s,,%s\n", r->id, r->gender);
    }
    fclose(f);
}

static int64_t days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(g_dir)) return -1;
    snprintf(g_csv, sizeof g_csv, "%s/subscribers.csv", g_dir);
    snprintf(g_log, sizeof g_log, "%s/sluice.log", g_dir);
    snprintf(g_ck, sizeof g_ck, "%s/ck", g_dir);
    snprintf(g_tables, sizeof g_tables, "%s/shared/tables", g_ck);
    g_subs = sl_schema_new();
    sl_schema_set_identifier(g_subs, sl_schema_add(g_subs, "msisdn", SL_STRING));
    sl_schema_add(g_subs, "birth_date", SL_TIMESTAMP);
    sl_schema_add(g_subs, "gender", SL_STRING);
    make_rows();
    write_csv();
    char err[256];
    return sl__log_open(g_log, SL__LOG_INFO, err, sizeof err);
}

static int teardown(void **state)
{
    (void)state;
    sl__log_close();
    sl_schema_free(g_subs);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int count_in_log(const char *what)
{
    FILE *f = fopen(g_log, "r");
    if (!f) return 0;
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f)) n += strstr(line, what) != NULL;
    fclose(f);
    return n;
}

static sl_keyring *keyring(const char *id, const char *secret)
{
    char v[200];
    snprintf(v, sizeof v, "%s %s", id, secret);
    setenv("SL_TEST_TIMAGE_KEYS", v, 1);
    char err[256] = "";
    sl_keyring *k = sl_keyring_load("env:SL_TEST_TIMAGE_KEYS", err, sizeof err);
    if (!k) fail_msg("%s", err);
    return k;
}

/* The subscribers table as a job with checkpoints loads it. */
static sl_table *load(const sl_schema *s, const sl_keyring *k, bool images)
{
    char err[512] = "";
    sl_job *job = sl_job_new(err, sizeof err);
    assert_non_null(job);
    assert_int_equal(sl_job_set(job, "checkpoint.dir", g_ck, err, sizeof err), 0);
    if (!images) assert_int_equal(sl_job_set(job, "table.images", "false", err, sizeof err), 0);
    sl_table *t = sl_job_table_load(job, "file", s, "msisdn",
                                    (const char *[]){"path", g_csv, NULL}, k, NULL, err,
                                    sizeof err);
    if (!t) fail_msg("%s", err);
    sl_job_free(job);
    return t;
}

/* Every generator row's last value, looked up in t by its pseudonym under k. */
static void expect_rows(const sl_table *t, const sl_keyring *k)
{
    uint32_t distinct = 0;
    for (uint32_t i = 0; i < NSUB + NDUP; i++) {
        const row *r = &g_rows[i];
        if (!r->last) continue;
        distinct++;
        const sl_batch *ch = NULL;
        uint32_t at = 0;
        int64_t p = sl_keyring_pseudonym(k, r->id, strlen(r->id));
        assert_int_equal(sl__table_find_i64(t, p, &ch, &at), 1);
        assert_int_equal(sl_batch_valid(ch, 1)[at], r->has_birth);
        if (r->has_birth)
            assert_true(sl_batch_i64(ch, 1)[at] ==
                        days_from_civil(r->y, r->m, r->d) * 86400000LL);
        sl_str g = sl_batch_str(ch, 2)[at];
        assert_int_equal(g.len, strlen(r->gender));
        assert_memory_equal(g.ptr, r->gender, g.len);
    }
    assert_int_equal(sl_table_rows(t), distinct);
    assert_true(sl__table_has_nulls(t, 1));
    const sl_batch *ch;
    uint32_t at;
    assert_int_equal(sl__table_find_i64(t, sl_keyring_pseudonym(k, "491799999999", 12),
                                        &ch, &at), 0);
}

/* The only image in the tables directory. */
static const char *image_path(void)
{
    static char path[1400];
    char cmd[900];
    snprintf(cmd, sizeof cmd, "ls '%s'/*.img", g_tables);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    int n = 0;
    char line[1400];
    while (fgets(line, sizeof line, p)) {
        line[strcspn(line, "\n")] = 0;
        snprintf(path, sizeof path, "%s", line);
        n++;
    }
    pclose(p);
    assert_int_equal(n, 1);
    return path;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Fails if the image holds any raw msisdn: as digits (a run of 10 or more
 * ASCII digits containing an id or the id without its leading "49"), or as
 * the id's value in 8 bytes at any offset. */
static void expect_no_raw_ids(const char *b, size_t len)
{
    const uint32_t n = NSUB + NDUP;
    uint64_t *nums = malloc(sizeof *nums * n);
    for (uint32_t i = 0; i < n; i++) nums[i] = strtoull(g_rows[i].id, NULL, 10);
    qsort(nums, n, sizeof *nums, cmp_u64);
    for (size_t i = 0; i + 8 <= len; i++) {
        uint64_t v;
        memcpy(&v, b + i, 8);
        assert_null(bsearch(&v, nums, n, sizeof *nums, cmp_u64));
    }
    free(nums);
    for (size_t i = 0; i < len;) {
        size_t j = i;
        while (j < len && b[j] >= '0' && b[j] <= '9') j++;
        if (j - i >= 10) {
            char run[64];
            size_t m = j - i < sizeof run - 1 ? j - i : sizeof run - 1;
            memcpy(run, b + i, m);
            run[m] = 0;
            for (uint32_t r = 0; r < n; r++) {
                assert_null(strstr(run, g_rows[r].id));
                assert_null(strstr(run, g_rows[r].id + 2));
            }
        }
        i = j > i ? j : i + 1;
    }
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc(*len ? *len : 1);
    assert_int_equal(fread(b, 1, *len, f), *len);
    fclose(f);
    return b;
}

/* Loads from the source (image ignored and written again) or from the
 * image, as `from_image` says, and checks every row under k. */
static void load_and_check(const sl_schema *s, const sl_keyring *k, bool from_image)
{
    int used = count_in_log("table image used"), written = count_in_log("table image written");
    sl_table *t = load(s, k, true);
    assert_int_equal(count_in_log("table image used"), used + from_image);
    assert_int_equal(count_in_log("table image written"), written + !from_image);
    /* a table from its image has no pseudonym-join memo (needs raw ids) */
    assert_int_equal(sl__table_ext(t) == NULL, from_image);
    expect_rows(t, k);
    sl_table_free(t);
}

static void test_round_trip_and_privacy(void **state)
{
    (void)state;
    sl_keyring *k = keyring("t1", SECRET_A);
    sl_table *fresh = load(g_subs, k, false); /* no image: the reference load */
    expect_rows(fresh, k);
    load_and_check(g_subs, k, false); /* first load writes the image */
    sl_table *img = load(g_subs, k, true);
    assert_int_equal(count_in_log("table image used"), 1);
    /* the same answers as the fresh load, row by row, NULLs included */
    assert_int_equal(sl_table_rows(img), sl_table_rows(fresh));
    for (uint32_t i = 0; i < NSUB + NDUP; i++) {
        int64_t p = sl_keyring_pseudonym(k, g_rows[i].id, strlen(g_rows[i].id));
        const sl_batch *a, *b;
        uint32_t ra, rb;
        assert_int_equal(sl__table_find_i64(fresh, p, &a, &ra), 1);
        assert_int_equal(sl__table_find_i64(img, p, &b, &rb), 1);
        for (int c = 0; c < 3; c++)
            assert_int_equal(sl_batch_valid(a, c)[ra], sl_batch_valid(b, c)[rb]);
        assert_true(sl_batch_i64(a, 0)[ra] == sl_batch_i64(b, 0)[rb]);
        if (sl_batch_valid(a, 1)[ra])
            assert_true(sl_batch_i64(a, 1)[ra] == sl_batch_i64(b, 1)[rb]);
        sl_str x = sl_batch_str(a, 2)[ra], y = sl_batch_str(b, 2)[rb];
        assert_int_equal(x.len, y.len);
        assert_memory_equal(x.ptr, y.ptr, x.len);
    }
    /* the projection the join reads is built alike from both */
    const sl__tproj *pa = sl__table_proj(fresh, 1), *pb = sl__table_proj(img, 1);
    for (uint32_t i = 0; i < NSUB; i += 7) {
        int64_t p = sl_keyring_pseudonym(k, g_rows[i].id, strlen(g_rows[i].id));
        uint64_t va = 0, vb = 0;
        int fa = sl__tproj_find(pa, p, sl__table_hash_i64(p), &va);
        assert_int_equal(fa, sl__tproj_find(pb, p, sl__table_hash_i64(p), &vb));
        if (fa) assert_true(va == vb);
    }
    sl_table_free(img);
    sl_table_free(fresh);

    /* no raw msisdn in the image: not as text, not as an 8-byte number */
    size_t len;
    char *b = slurp(image_path(), &len);
    expect_no_raw_ids(b, len);
    free(b);
    sl_keyring_free(k);
}

static void test_changed_file_same_size_and_mtime(void **state)
{
    (void)state;
    sl_keyring *k = keyring("t1", SECRET_A);
    load_and_check(g_subs, k, true);
    struct stat st;
    assert_int_equal(stat(g_csv, &st), 0);
    /* one digit of the last row's birth year, in place */
    row *r = &g_rows[NSUB + NDUP - 1];
    assert_true(r->has_birth);
    r->y = r->y == 1999 ? 1998 : r->y + 1;
    write_csv();
    struct stat st2;
    assert_int_equal(stat(g_csv, &st2), 0);
    assert_int_equal(st2.st_size, st.st_size);
    struct timespec ts[2] = {st.st_atim, st.st_mtim};
    assert_int_equal(utimensat(AT_FDCWD, g_csv, ts, 0), 0);
    assert_int_equal(stat(g_csv, &st2), 0);
    assert_true(st2.st_mtim.tv_sec == st.st_mtim.tv_sec &&
                st2.st_mtim.tv_nsec == st.st_mtim.tv_nsec);
    load_and_check(g_subs, k, false); /* the new year, from the source */
    load_and_check(g_subs, k, true);  /* and from the image written again */
    sl_keyring_free(k);
}

static void test_schema_and_key_changes(void **state)
{
    (void)state;
    sl_keyring *k = keyring("t1", SECRET_A);
    load_and_check(g_subs, k, true);
    /* birth_date as VARCHAR: another schema, the text as it is */
    sl_schema *s2 = sl_schema_new();
    sl_schema_set_identifier(s2, sl_schema_add(s2, "msisdn", SL_STRING));
    sl_schema_add(s2, "birth_date", SL_STRING);
    sl_schema_add(s2, "gender", SL_STRING);
    int used = count_in_log("table image used");
    sl_table *t = load(s2, k, true);
    assert_int_equal(count_in_log("table image used"), used);
    const row *r = &g_rows[5];
    const sl_batch *ch;
    uint32_t at;
    assert_int_equal(sl__table_find_i64(t, sl_keyring_pseudonym(k, r->id, strlen(r->id)),
                                        &ch, &at), 1);
    char want[16];
    snprintf(want, sizeof want, "%04d-%02d-%02d", r->y, r->m, r->d);
    sl_str got = sl_batch_str(ch, 1)[at];
    assert_int_equal(got.len, strlen(want));
    assert_memory_equal(got.ptr, want, got.len);
    sl_table_free(t);
    sl_schema_free(s2);
    load_and_check(g_subs, k, false); /* the other schema's image replaced it */

    /* another secret under the same key id, then another key id */
    sl_keyring *kb = keyring("t1", SECRET_B);
    load_and_check(g_subs, kb, false);
    load_and_check(g_subs, kb, true);
    sl_keyring *kc = keyring("t2", SECRET_B);
    load_and_check(g_subs, kc, false);
    load_and_check(g_subs, kc, true);
    sl_keyring_free(kc);
    sl_keyring_free(kb);
    sl_keyring_free(k);
}

static void rewrite_image(void (*damage)(char *b, size_t *len))
{
    const char *p = image_path();
    size_t len;
    char *b = slurp(p, &len);
    damage(b, &len);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, len, f), len);
    fclose(f);
    free(b);
}

static void truncate_tail(char *b, size_t *len) { (void)b; *len -= 100; }
static void truncate_header(char *b, size_t *len) { (void)b; *len = 20; }
static void flip_middle(char *b, size_t *len) { b[*len / 2] ^= 0x10; }
static void flip_last(char *b, size_t *len) { b[*len - 1] ^= 0x01; }
static void other_version(char *b, size_t *len) { (void)len; b[8] ^= 0x02; }

static void test_damaged_images(void **state)
{
    (void)state;
    sl_keyring *k = keyring("t1", SECRET_A);
    load_and_check(g_subs, k, false); /* the image was under key t2 */
    load_and_check(g_subs, k, true);
    void (*const damage[])(char *, size_t *) = {truncate_tail, truncate_header,
                                                flip_middle, flip_last, other_version};
    for (size_t i = 0; i < sizeof damage / sizeof *damage; i++) {
        rewrite_image(damage[i]);
        int ignored = count_in_log("table image ignored");
        load_and_check(g_subs, k, false);
        assert_int_equal(count_in_log("table image ignored"), ignored + 1);
        load_and_check(g_subs, k, true);
    }
    assert_true(count_in_log("why=\"corrupt") >= 2);
    assert_true(count_in_log("truncated") >= 2);
    assert_true(count_in_log("not an image of this version") >= 1);
    sl_keyring_free(k);
}

/* A STRING-keyed table without keys whose string column has more distinct
 * values than are interned: the lengths-and-bytes form of a column. */
static void test_string_key_many_values(void **state)
{
    (void)state;
    char path[700];
    snprintf(path, sizeof path, "%s/names.csv", g_dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("name,label,n\n", f);
    const uint32_t n = 70000;
    for (uint32_t i = 0; i < n; i++) fprintf(f, "name-%u,label-%u-%s,%u\n", i, i * 3,
                                             i % 5 ? "x" : "long-suffix", i);
    fclose(f);
    sl_schema *s = sl_schema_new();
    sl_schema_add(s, "name", SL_STRING);
    sl_schema_add(s, "label", SL_STRING);
    sl_schema_add(s, "n", SL_INT64);
    char err[512] = "";
    sl_table *t[2];
    for (int pass = 0; pass < 2; pass++) {
        int used = count_in_log("table image used");
        sl_job *job = sl_job_new(err, sizeof err);
        assert_int_equal(sl_job_set(job, "checkpoint.dir", g_ck, err, sizeof err), 0);
        t[pass] = sl_job_table_load(job, "file", s, "name",
                                    (const char *[]){"path", path, NULL}, NULL, NULL, err,
                                    sizeof err);
        if (!t[pass]) fail_msg("%s", err);
        sl_job_free(job);
        assert_int_equal(count_in_log("table image used"), used + pass);
        assert_int_equal(sl_table_rows(t[pass]), n);
    }
    for (uint32_t i = 0; i < n; i += 3) {
        char key[32], want[64];
        snprintf(key, sizeof key, "name-%u", i);
        snprintf(want, sizeof want, "label-%u-%s", i * 3, i % 5 ? "x" : "long-suffix");
        const sl_batch *ch;
        uint32_t at;
        assert_int_equal(sl__table_find_str(t[1], key, strlen(key), &ch, &at), 1);
        sl_str v = sl_batch_str(ch, 1)[at];
        assert_int_equal(v.len, strlen(want));
        assert_memory_equal(v.ptr, want, v.len);
        assert_true(sl_batch_i64(ch, 2)[at] == (int64_t)i);
    }
    assert_int_equal(sl__table_find_str(t[1], "name-x", 6, NULL, NULL), 0);
    sl_table_free(t[0]);
    sl_table_free(t[1]);
    sl_schema_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_and_privacy),
        cmocka_unit_test(test_changed_file_same_size_and_mtime),
        cmocka_unit_test(test_schema_and_key_changes),
        cmocka_unit_test(test_damaged_images),
        cmocka_unit_test(test_string_key_many_values),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
