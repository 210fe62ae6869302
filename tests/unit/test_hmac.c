/* test_hmac.c — the keyed HMAC-SHA-256 fast path against RFC 4231, context
 * reuse against one-shot MACs, and the keyring file's error reporting. */
#include "testutil.h"

#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "ops/privacy.h"

static char g_dir[] = "/tmp/sl_test_hmac_XXXXXX";

static int setup(void **state)
{
    (void)state;
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Writes text to a new file in the test directory; returns its path. */
static const char *write_file(const char *name, const char *text)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, 0600), 0); /* key files must be private */
    return path;
}

static void unhex(const char *hex, uint8_t *out)
{
    for (size_t i = 0; hex[2 * i]; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
}

static int64_t be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | p[i];
    return (int64_t)v;
}

/* ---- RFC 4231 ------------------------------------------------------------ */
static void check_vector(const uint8_t *key, size_t keylen, const void *msg,
                         size_t len, const char *want_hex)
{
    uint8_t want[32], got[32];
    unhex(want_hex, want);
    char err[256] = "";
    sl__hmac *h = sl__hmac_new_raw(key, keylen, err, sizeof err);
    assert_non_null(h);
    sl__hmac_full(h, msg, len, got);
    assert_memory_equal(got, want, 32);
    assert_int_equal(sl__hmac_pseudo(h, msg, len), be64(want));
    /* the context is reusable: a second MAC of the same message agrees */
    sl__hmac_full(h, msg, len, got);
    assert_memory_equal(got, want, 32);
    sl__hmac_free(h);
}

static void test_rfc4231(void **state)
{
    (void)state;
    uint8_t k[131];
    uint8_t d[50];

    memset(k, 0x0b, 20); /* case 1 */
    check_vector(k, 20, "Hi There", 8,
                 "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");

    check_vector((const uint8_t *)"Jefe", 4, "what do ya want for nothing?", 28,
                 "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

    memset(k, 0xaa, 20); /* case 3 */
    memset(d, 0xdd, 50);
    check_vector(k, 20, d, 50,
                 "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");

    for (int i = 0; i < 25; i++) k[i] = (uint8_t)(i + 1); /* case 4 */
    memset(d, 0xcd, 50);
    check_vector(k, 25, d, 50,
                 "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");

    memset(k, 0xaa, 131); /* case 6: key longer than the block */
    const char *m6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    check_vector(k, 131, m6, strlen(m6),
                 "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");

    const char *m7 = "This is a test using a larger than block-size key and a "
                     "larger than block-size data. The key needs to be hashed "
                     "before being used by the HMAC algorithm.";
    check_vector(k, 131, m7, strlen(m7),
                 "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
}

/* One context over many messages (lengths across the SHA-256 padding and
 * block boundaries) equals OpenSSL's one-shot HMAC of each. */
static void test_reuse_equals_oneshot(void **state)
{
    (void)state;
    uint8_t key[40], msg[300];
    for (int i = 0; i < 40; i++) key[i] = (uint8_t)(i * 7 + 3);
    for (int i = 0; i < 300; i++) msg[i] = (uint8_t)(i * 31 + 11);
    sl__hmac *h = sl__hmac_new_raw(key, sizeof key, NULL, 0);
    assert_non_null(h);
    for (int round = 0; round < 3; round++) {
        for (size_t len = 0; len <= 300; len++) {
            uint8_t got[32], want[32];
            size_t wl = 0;
            sl__hmac_full(h, msg, len, got);
            assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key,
                                      sizeof key, msg, len, want, 32, &wl));
            assert_int_equal(wl, 32);
            assert_memory_equal(got, want, 32);
        }
    }
    sl__hmac_free(h);
    sl__hmac_free(NULL);
}

/* ---- keyring ------------------------------------------------------------- */
#define SECRET_A "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define SECRET_B "f0e1d2c3b4a5968778695a4b3c2d1e0ff0e1d2c3b4a5968778695a4b3c2d1e0f" \
                 "00112233"

static void test_keyring_load(void **state)
{
    (void)state;
    const char *path = write_file("good.keys",
                                  "# sluice keys\n"
                                  "\n"
                                  "k2024 " SECRET_A " 2024-01-01\n"
                                  "  k2025\t" SECRET_B "   # rotated\r\n");
    char err[512] = "";
    sl_keyring *k = sl_keyring_load(path, err, sizeof err);
    assert_non_null(k);
    assert_string_equal(sl_keyring_current_id(k), "k2025");
    assert_int_equal(sl__keyring_nkeys(k), 2);
    assert_string_equal(sl__keyring_key_id(k, 0), "k2024");
    assert_int_equal(sl__keyring_valid_from(k, 0), 1704067200000LL);
    assert_true(sl__keyring_valid_from(k, 1) == SL_TS_MIN);

    /* the current key is the last one, 36 bytes long */
    uint8_t sb[36];
    unhex(SECRET_B, sb);
    sl__hmac *raw = sl__hmac_new_raw(sb, sizeof sb, NULL, 0);
    sl__hmac *h = sl__hmac_new(k, err, sizeof err);
    assert_non_null(h);
    const char *id = "491701234567";
    int64_t p = sl_keyring_pseudonym(k, id, 12);
    assert_int_equal(p, sl__hmac_pseudo(h, id, 12));
    assert_int_equal(p, sl__hmac_pseudo(raw, id, 12));
    assert_true(p != sl_keyring_pseudonym(k, "491701234568", 12));
    sl__hmac_free(h);
    sl__hmac_free(raw);
    sl_keyring_free(k);
    sl_keyring_free(NULL);
}

static void test_keyring_env(void **state)
{
    (void)state;
    char err[512] = "";
    setenv("SL_TEST_KEYS", "e1 " SECRET_A, 1);
    sl_keyring *k = sl_keyring_load("env:SL_TEST_KEYS", err, sizeof err);
    assert_non_null(k);
    assert_string_equal(sl_keyring_current_id(k), "e1");
    sl_keyring_free(k);
    unsetenv("SL_TEST_KEYS");
    assert_null(sl_keyring_load("env:SL_TEST_KEYS", err, sizeof err));
    assert_non_null(strstr(err, "env:SL_TEST_KEYS"));
}

/* Loading `text` fails with a message that names path:line, contains
 * `what`, and quotes none of the secrets. */
static void expect_error(const char *name, const char *text, int line,
                         const char *what)
{
    const char *path = write_file(name, text);
    char err[512] = "";
    assert_null(sl_keyring_load(path, err, sizeof err));
    char where[600];
    if (line > 0) snprintf(where, sizeof where, "%s:%d:", path, line);
    else snprintf(where, sizeof where, "%s:", path);
    if (!strstr(err, where) || !strstr(err, what))
        fail_msg("error '%s' lacks '%s' or '%s'", err, where, what);
    assert_null(strstr(err, "0a0b0c0d"));
    assert_null(strstr(err, "a5968778"));
    assert_null(strstr(err, "deadbeef"));
}

static void test_keyring_errors(void **state)
{
    (void)state;
    expect_error("short.keys", "# c\nk1 deadbeefdeadbeefdeadbeefdeadbeef\n", 2,
                 "16 bytes");
    expect_error("badhex.keys", "k1 " SECRET_A "\nk2 deadbeefXX" SECRET_A "\n", 2,
                 "not hexadecimal");
    expect_error("odd.keys", "k1 " SECRET_A "0\n", 1, "odd number");
    expect_error("dup.keys", "k1 " SECRET_A "\n\nk1 " SECRET_B "\n", 3,
                 "duplicate key id (first defined on line 1)");
    expect_error("onefield.keys", SECRET_A "\n", 1, "expected 'KEY_ID");
    expect_error("toomany.keys", "k1 " SECRET_A " 2024-01-01 x\n", 1,
                 "expected 'KEY_ID");
    expect_error("date.keys", "k1 " SECRET_A " yesterday\n", 1, "VALID_FROM");
    expect_error("order.keys",
                 "k1 " SECRET_A " 2025-01-01\nk2 " SECRET_B " 2024-01-01\n", 2,
                 "earlier");
    expect_error("id.keys", "k/1 " SECRET_A "\n", 1, "key id");
    expect_error("empty.keys", "", 0, "no keys");
    expect_error("comments.keys", "# nothing here\n\n   \n", 0, "no keys");

    char err[512] = "";
    char missing[600];
    snprintf(missing, sizeof missing, "%s/missing.keys", g_dir);
    assert_null(sl_keyring_load(missing, err, sizeof err));
    assert_non_null(strstr(err, missing));
    assert_null(sl_keyring_load(NULL, err, sizeof err));
    assert_null(sl__hmac_new(NULL, err, sizeof err));
}

/* A key file others can read is refused with a message naming the path,
 * the mode and the fix; 0600 and 0400 load. */
static void test_keyring_permissions(void **state)
{
    (void)state;
    const char *path = write_file("perm.keys", "k1 " SECRET_A "\n");
    static const mode_t bad[] = {0644, 0604, 0640, 0620, 0660, 0602};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char err[512] = "", mode[16];
        assert_int_equal(chmod(path, bad[i]), 0);
        assert_null(sl_keyring_load(path, err, sizeof err));
        snprintf(mode, sizeof mode, "%04o", (unsigned)bad[i]);
        if (!strstr(err, path) || !strstr(err, mode) || !strstr(err, "too open") ||
            !strstr(err, "chmod 600"))
            fail_msg("mode %s: error '%s'", mode, err);
        if (strstr(err, SECRET_A)) fail_msg("error quotes the secret");
    }
    static const mode_t good[] = {0600, 0400};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        char err[512] = "";
        assert_int_equal(chmod(path, good[i]), 0);
        sl_keyring *k = sl_keyring_load(path, err, sizeof err);
        if (!k) fail_msg("mode %04o refused: %s", (unsigned)good[i], err);
        sl_keyring_free(k);
    }
}

/* Not a pass/fail test: prints the cost of one pseudonym (12-byte ids). */
static void test_speed(void **state)
{
    (void)state;
    uint8_t key[32] = {1, 2, 3};
    sl__hmac *h = sl__hmac_new_raw(key, sizeof key, NULL, 0);
    char id[13] = "491700000000";
    enum { N = 300000 };
    uint64_t acc = 0, t0 = sl__clock_monotonic();
    for (int i = 0; i < N; i++) {
        id[11] = (char)('0' + i % 10);
        id[10] = (char)('0' + i / 10 % 10);
        acc += (uint64_t)sl__hmac_pseudo(h, id, 12);
    }
    uint64_t t1 = sl__clock_monotonic();
    print_message("sl__hmac_pseudo: %.0f ns per 12-byte id (checksum %llx)\n",
                  (double)(t1 - t0) / N, (unsigned long long)acc & 0xff);
    sl__hmac_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc4231),
        cmocka_unit_test(test_reuse_equals_oneshot),
        cmocka_unit_test(test_keyring_load),
        cmocka_unit_test(test_keyring_env),
        cmocka_unit_test(test_keyring_errors),
        cmocka_unit_test(test_keyring_permissions),
        cmocka_unit_test(test_speed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
