/* test_encrypt.c — AES-256-GCM against the published GCM test vectors
 * (McGrew & Viega, "The Galois/Counter Mode of Operation", test cases
 * 13-16, the AES-256 ones used by NIST's validation), tamper detection,
 * and the encrypt operator: round trip through sl_decrypt_field, nonce
 * modes, authenticated column name, bad key ids. */
#include "testutil.h"

#include <unistd.h>

#include "ops/privacy.h"

static size_t unhex(const char *h, uint8_t *out)
{
    size_t n = strlen(h) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(h + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
    return n;
}

typedef struct {
    const char *k, *iv, *p, *a, *c, *t;
} vec;

static const vec vecs[] = {
    {"0000000000000000000000000000000000000000000000000000000000000000",
     "000000000000000000000000", "", "", "", "530f8afbc74536b9a963b4f1c4cb738b"},
    {"0000000000000000000000000000000000000000000000000000000000000000",
     "000000000000000000000000", "00000000000000000000000000000000", "",
     "cea7403d4d606b6e074ec5d3baf39d18", "d0d1c8a799996bf0265b98b5d48ab919"},
    {"feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
     "cafebabefacedbaddecaf888",
     "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95"
     "956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
     "",
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48"
     "590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
     "b094dac5d93471bdec1a502270e3cc6c"},
    {"feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
     "cafebabefacedbaddecaf888",
     "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95"
     "956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
     "feedfacedeadbeeffeedfacedeadbeefabaddad2",
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48"
     "590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
     "76fc6ece0f4e1768cddf8853bb2d551b"},
};

static void test_vectors(void **state)
{
    for (size_t v = 0; v < sizeof vecs / sizeof vecs[0]; v++) {
        uint8_t k[32], iv[12], p[64], a[32], c[64], t[16], ct[64], tag[16],
            back[64];
        unhex(vecs[v].k, k);
        unhex(vecs[v].iv, iv);
        size_t pn = unhex(vecs[v].p, p), an = unhex(vecs[v].a, a);
        size_t cn = unhex(vecs[v].c, c);
        unhex(vecs[v].t, t);
        assert_int_equal(pn, cn);
        char err[128];
        sl__gcm *g = sl__gcm_new(k, err, sizeof err);
        assert_non_null(g);
        assert_int_equal(sl__gcm_seal(g, iv, a, an, p, pn, ct, tag), 0);
        assert_memory_equal(ct, c, cn);
        assert_memory_equal(tag, t, 16);
        assert_int_equal(sl__gcm_open(g, iv, a, an, ct, cn, tag, back), 0);
        assert_memory_equal(back, p, pn);
        /* any flipped bit of tag, ciphertext or AAD fails authentication */
        tag[3] ^= 1;
        assert_int_equal(sl__gcm_open(g, iv, a, an, ct, cn, tag, back),
                         SL_ECORRUPT);
        tag[3] ^= 1;
        if (cn) {
            ct[cn - 1] ^= 0x80;
            assert_int_equal(sl__gcm_open(g, iv, a, an, ct, cn, tag, back),
                             SL_ECORRUPT);
            ct[cn - 1] ^= 0x80;
        }
        if (an) {
            a[0] ^= 1;
            assert_int_equal(sl__gcm_open(g, iv, a, an, ct, cn, tag, back),
                             SL_ECORRUPT);
        }
        sl__gcm_free(g);
    }
}

static sl_keyring *keyring(void)
{
    char path[] = "/tmp/sl-enc-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "old %s\nk1 %s\n",
            "1111111111111111111111111111111111111111111111111111111111111111",
            "2222222222222222222222222222222222222222222222222222222222222222");
    fclose(f);
    char err[256];
    sl_keyring *k = sl_keyring_load(path, err, sizeof err);
    unlink(path);
    assert_non_null(k);
    return k;
}

static sl_schema *g_in;
static sl_keyring *g_keys;

static int setup(void **state)
{
    g_in = sl_schema_new();
    sl_schema_add(g_in, "ts", SL_TIMESTAMP);
    sl_schema_set_identifier(g_in, sl_schema_add(g_in, "msisdn", SL_STRING));
    sl_schema_add(g_in, "bytes", SL_INT64);
    g_keys = keyring();
    return 0;
}

static int teardown(void **state)
{
    sl_schema_free(g_in);
    sl_keyring_free(g_keys);
    return 0;
}

static sl_batch *input(void)
{
    sl_batch *b = sl__batch_new(g_in, 8);
    const char *ids[] = {"31612345678", "", "31612345678", "4915112345678"};
    for (int i = 0; i < 4; i++) {
        sl_batch_i64(b, 0)[i] = 1000 * i;
        sl_batch_set_str(b, 1, (size_t)i, ids[i], strlen(ids[i]));
        sl_batch_i64(b, 2)[i] = 100 + i;
    }
    sl_batch_valid(b, 2)[3] = 0; /* a NULL stays NULL */
    sl_batch_kind(b)[1] = SL_KIND_CANARY;
    sl_batch_set_len(b, 4);
    return b;
}

/* Runs the operator over input() and returns its output batch. */
static sl_batch *run(sl_schema **out, bool synthetic, int key)
{
    int cols[] = {1, 2};
    sl__encrypt_conf conf = {.keys = g_keys, .key = key,
                             .synthetic = synthetic, .ncols = 2,
                             .cols = {1, 2}};
    *out = sl__encrypt_schema(g_in, cols, 2);
    sl__opinfo info = {.in = g_in, .out = *out, .time_col = 0, .batch_cap = 8};
    sl__ctx ctx = tu_ctx();
    void *st = NULL;
    char err[256];
    assert_int_equal(sl__op_encrypt.open(&st, &conf, &info, &ctx, err, sizeof err), 0);
    tu_sink sink;
    tu_sink_init(&sink, 8);
    assert_int_equal(sl__op_encrypt.batch(st, input(), &sink.out), 0);
    sl__op_encrypt.close(st);
    assert_int_equal(sink.n, 1);
    return sink.got[0];
}

static void field(const sl_batch *b, int col, int row, char *out)
{
    sl_str s = sl_batch_str(b, col)[row];
    memcpy(out, s.ptr, s.len);
    out[s.len] = 0;
}

static void test_round_trip(void **state)
{
    sl_schema *os;
    sl_batch *o = run(&os, false, 1);
    assert_int_equal(sl_schema_col_type(os, 1), SL_STRING);
    assert_int_equal(sl_schema_col_type(os, 2), SL_STRING);
    assert_int_equal(sl_batch_len(o), 4);
    assert_int_equal(sl_batch_kind(o)[1], SL_KIND_CANARY);
    assert_int_equal(sl_batch_i64(o, 0)[2], 2000);
    const char *want1[] = {"31612345678", "", "31612345678", "4915112345678"};
    const char *want2[] = {"100", "101", "102", NULL};
    char text[512], plain[128], err[256];
    size_t n;
    for (int r = 0; r < 4; r++) {
        field(o, 1, r, text);
        assert_int_equal(strncmp(text, "k1:", 3), 0);
        assert_null(strstr(text, "3161")); /* no plaintext in the field */
        assert_int_equal(sl_decrypt_field(g_keys, "msisdn", text, strlen(text),
                                          plain, sizeof plain, &n, err,
                                          sizeof err), 0);
        assert_string_equal(plain, want1[r]);
        /* the column name is authenticated */
        assert_int_equal(sl_decrypt_field(g_keys, "bytes", text, strlen(text),
                                          plain, sizeof plain, &n, err,
                                          sizeof err), SL_ECORRUPT);
        if (!want2[r]) {
            assert_int_equal(sl_batch_valid(o, 2)[r], 0);
            continue;
        }
        field(o, 2, r, text);
        assert_int_equal(sl_decrypt_field(g_keys, "bytes", text, strlen(text),
                                          plain, sizeof plain, &n, err,
                                          sizeof err), 0);
        assert_string_equal(plain, want2[r]);
        /* tampering: flip one base64 character of the ciphertext */
        text[10] = text[10] == 'A' ? 'B' : 'A';
        assert_int_equal(sl_decrypt_field(g_keys, "bytes", text, strlen(text),
                                          plain, sizeof plain, &n, err,
                                          sizeof err), SL_ECORRUPT);
    }
    /* random nonces: the same plaintext twice gives different fields */
    char a[512], b[512];
    field(o, 1, 0, a);
    field(o, 1, 2, b);
    assert_string_not_equal(a, b);
    /* relabelling with another key id fails, an unknown id is named */
    a[1] = 'x';
    assert_int_equal(sl_decrypt_field(g_keys, "msisdn", a, strlen(a), plain,
                                      sizeof plain, &n, err, sizeof err),
                     SL_ENOENT);
    assert_non_null(strstr(err, "kx"));
    char c[520];
    snprintf(c, sizeof c, "old%s", b + 2); /* "k1:..." -> "old:..." */
    memcpy(b, c, strlen(c) + 1);
    assert_int_equal(sl_decrypt_field(g_keys, "msisdn", b, strlen(b), plain,
                                      sizeof plain, &n, err, sizeof err),
                     SL_ECORRUPT);
    assert_int_equal(sl_decrypt_field(g_keys, "msisdn", "garbage", 7, plain,
                                      sizeof plain, &n, err, sizeof err),
                     SL_EPARSE);
    sl__batch_free(o);
    sl_schema_free(os);
}

static void test_synthetic(void **state)
{
    sl_schema *s1, *s2;
    sl_batch *o1 = run(&s1, true, 0), *o2 = run(&s2, true, 0);
    char a[512], b[512], plain[64], err[256];
    for (int r = 0; r < 4; r++) {
        field(o1, 1, r, a);
        field(o2, 1, r, b);
        assert_string_equal(a, b); /* deterministic across runs */
        assert_int_equal(strncmp(a, "old:", 4), 0);
        assert_int_equal(sl_decrypt_field(g_keys, "msisdn", a, strlen(a), plain,
                                          sizeof plain, NULL, err, sizeof err), 0);
    }
    field(o1, 1, 0, a);
    field(o1, 1, 2, b);
    assert_string_equal(a, b); /* equal plaintexts: equal fields (documented) */
    field(o1, 1, 3, b);
    assert_string_not_equal(a, b);
    sl__batch_free(o1);
    sl__batch_free(o2);
    sl_schema_free(s1);
    sl_schema_free(s2);
}

static int fake_configure(void **conf, const char *const *kv,
                          const sl_schema *schema, char *e, size_t n)
{
    *conf = NULL;
    return 0;
}
static const sl__source_vt fake_src = {.name = "fake",
                                       .configure = fake_configure};

static void test_builder(void **state)
{
    sl_job *job = sl_job_new(NULL, 0);
    sl_stream *s = sl__job_add_source(job, &fake_src, g_in, NULL);
    sl_stream *e = sl_stream_encrypt(s, (const char *[]){"msisdn", NULL},
                                     g_keys, "k1", SL_NONCE_RANDOM);
    assert_non_null(e);
    assert_int_equal(sl_schema_col_type(sl_stream_schema(e), 1), SL_STRING);
    sl_job_free(job);
    const char *bad[][2] = {{"nope", "msisdn"}, {"k1", "imsi"}};
    for (int i = 0; i < 2; i++) {
        job = sl_job_new(NULL, 0);
        s = sl__job_add_source(job, &fake_src, g_in, NULL);
        assert_null(sl_stream_encrypt(s, (const char *[]){bad[i][1], NULL},
                                      g_keys, bad[i][0], SL_NONCE_RANDOM));
        assert_non_null(strstr(sl_job_error(job), i ? "imsi" : "nope"));
        sl_job_free(job);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_synthetic),
        cmocka_unit_test(test_builder),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
