/* encrypt.c — per-field record encryption with AES-256-GCM (OpenSSL EVP),
 * for fields that must travel (to a restricted sink, to another team) but
 * must not be readable on the way; and the decrypt helper for tools and
 * tests.
 *
 * An encrypted field is the text
 *
 *     KEY_ID ":" BASE64(nonce[12] || ciphertext || tag[16])
 *
 * (standard base64 with padding; key ids never contain '=', '+' or '/',
 * and base64 never contains ':', so the last ':' splits the two). The
 * plaintext is the field's canonical text: strings as they are, integers
 * and timestamps in decimal, doubles as %.17g, booleans as true/false. The
 * associated data is "sluice-gcm-v1" NUL KEY_ID NUL COLUMN_NAME, so a
 * ciphertext moved to another column, or relabelled with another key id,
 * fails authentication instead of decrypting.
 *
 * The AES key is not the keyring secret itself but a subkey derived from it
 * (sl__keyring_derive, label "sluice/aes-256-gcm/v1"): the same secret
 * also keys pseudonyms, and one key must never serve two algorithms.
 *
 * Nonces (96 bits) must never repeat under one key with different
 * plaintexts. Two modes:
 * - random (default): each operator instance draws a 64-bit random prefix
 *   from the OS generator (RAND_bytes) when it opens and counts records in
 *   the low 32 bits, drawing a fresh prefix every 2^32 records. Instances,
 *   restarts and replays therefore never share a prefix except by a 64-bit
 *   birthday collision (~2^-33 after 2^15 instance openings per key).
 *   Ciphertexts differ from run to run (the plaintexts do not).
 * - synthetic: nonce = the first 96 bits of HMAC-SHA-256(nonce key, AAD
 *   || plaintext), the nonce key derived with "sluice/gcm-nonce/v1". The
 *   output is then deterministic (identical on replay, as sluice's
 *   determinism rule asks), and a nonce repeats only for an identical
 *   (column, plaintext) pair, which reveals equality and nothing else: the
 *   price of determinism, as with any deterministic encryption.
 *
 * NULL stays NULL; canary rows are encrypted like data. Not done here: key
 * rotation for encryption (the key id is fixed per operator; decryption
 * takes the id from each field, so old fields stay readable while their
 * key remains in the keyring). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "ops/privacy.h"

#define AAD_TAG "sluice-gcm-v1"
#define AES_LABEL "sluice/aes-256-gcm/v1"
#define NONCE_LABEL "sluice/gcm-nonce/v1"

/* ---- AES-256-GCM ------------------------------------------------------- */
struct sl__gcm {
    EVP_CIPHER *cipher;
    EVP_CIPHER_CTX *enc, *dec;
    uint8_t key[32];
};

void sl__gcm_free(sl__gcm *g)
{
    if (!g) return;
    EVP_CIPHER_CTX_free(g->enc);
    EVP_CIPHER_CTX_free(g->dec);
    EVP_CIPHER_free(g->cipher);
    OPENSSL_cleanse(g->key, sizeof g->key);
    free(g);
}

sl__gcm *sl__gcm_new(const uint8_t key[32], char *errstr, size_t errstr_size)
{
    sl__gcm *g = sl__xcalloc(1, sizeof *g);
    memcpy(g->key, key, 32);
    g->cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    g->enc = EVP_CIPHER_CTX_new();
    g->dec = EVP_CIPHER_CTX_new();
    if (!g->cipher || !g->enc || !g->dec ||
        EVP_EncryptInit_ex2(g->enc, g->cipher, g->key, NULL, NULL) != 1 ||
        EVP_DecryptInit_ex2(g->dec, g->cipher, g->key, NULL, NULL) != 1) {
        sl__gcm_free(g);
        sl__err(errstr, errstr_size, SL_ECRYPTO,
                "encrypt: OpenSSL cannot provide AES-256-GCM");
        return NULL;
    }
    return g;
}

int sl__gcm_seal(sl__gcm *g, const uint8_t iv[12], const void *aad,
                 size_t aadlen, const void *pt, size_t n, uint8_t *ct,
                 uint8_t tag[16])
{
    int len = 0;
    if (n > INT32_MAX || aadlen > INT32_MAX) return SL_EINVAL;
    int ok = EVP_EncryptInit_ex2(g->enc, NULL, NULL, iv, NULL) == 1 &&
             (aadlen == 0 ||
              EVP_EncryptUpdate(g->enc, NULL, &len, aad, (int)aadlen) == 1) &&
             (n == 0 || EVP_EncryptUpdate(g->enc, ct, &len, pt, (int)n) == 1) &&
             EVP_EncryptFinal_ex(g->enc, ct + (n ? len : 0), &len) == 1 &&
             EVP_CIPHER_CTX_ctrl(g->enc, EVP_CTRL_GCM_GET_TAG, 16, tag) == 1;
    return ok ? 0 : SL_ECRYPTO;
}

int sl__gcm_open(sl__gcm *g, const uint8_t iv[12], const void *aad,
                 size_t aadlen, const uint8_t *ct, size_t n,
                 const uint8_t tag[16], uint8_t *pt)
{
    int len = 0, fin = 0;
    if (n > INT32_MAX || aadlen > INT32_MAX) return SL_EINVAL;
    int ok = EVP_DecryptInit_ex2(g->dec, NULL, NULL, iv, NULL) == 1 &&
             (aadlen == 0 ||
              EVP_DecryptUpdate(g->dec, NULL, &len, aad, (int)aadlen) == 1) &&
             (n == 0 || EVP_DecryptUpdate(g->dec, pt, &len, ct, (int)n) == 1) &&
             EVP_CIPHER_CTX_ctrl(g->dec, EVP_CTRL_GCM_SET_TAG, 16,
                                 (void *)tag) == 1;
    if (!ok) return SL_ECRYPTO;
    /* the tag is checked here; a mismatch must release nothing */
    if (EVP_DecryptFinal_ex(g->dec, pt + (n ? len : 0), &fin) != 1) {
        OPENSSL_cleanse(pt, n);
        return SL_ECORRUPT;
    }
    return 0;
}

/* ---- field format -------------------------------------------------------- */
static size_t make_aad(char *aad, size_t cap, const char *key_id,
                       const char *col)
{
    size_t a = strlen(AAD_TAG) + 1, b = strlen(key_id) + 1, c = strlen(col);
    SL_ASSERT(a + b + c <= cap);
    memcpy(aad, AAD_TAG, a);
    memcpy(aad + a, key_id, b);
    memcpy(aad + a + b, col, c);
    return a + b + c;
}

/* Decodes standard padded base64; returns the byte count or -1. */
static long b64_decode(const char *in, size_t len, uint8_t *out)
{
    if (len % 4 || len > INT32_MAX) return -1;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                  (c >= '0' && c <= '9') || c == '+' || c == '/' ||
                  (c == '=' && i >= len - 2);
        if (!ok) return -1;
    }
    int n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)len);
    if (n < 0) return -1;
    if (len && in[len - 1] == '=') n--;
    if (len > 1 && in[len - 2] == '=') n--;
    return n;
}

int sl_decrypt_field(const sl_keyring *keys, const char *col, const char *text,
                     size_t len, char *out, size_t out_size, size_t *out_len,
                     char *errstr, size_t errstr_size)
{
    const char *colon = NULL;
    for (size_t i = len; i-- > 0;)
        if (text[i] == ':') { colon = text + i; break; }
    if (!keys || !col || !colon || colon == text || colon - text > 64)
        return sl__err(errstr, errstr_size, SL_EPARSE,
                       "decrypt: not an encrypted field (KEY_ID:BASE64)");
    char id[65];
    memcpy(id, text, (size_t)(colon - text));
    id[colon - text] = 0;
    int ki = sl__keyring_find(keys, id);
    if (ki < 0)
        return sl__err(errstr, errstr_size, SL_ENOENT,
                       "decrypt: key id '%s' is not in the keyring", id);
    const char *b64 = colon + 1;
    size_t blen = len - (size_t)(b64 - text);
    uint8_t *raw = sl__xmalloc(blen / 4 * 3 + 3);
    long rn = b64_decode(b64, blen, raw);
    if (rn < 12 + 16) {
        free(raw);
        return sl__err(errstr, errstr_size, SL_EPARSE,
                       "decrypt: bad base64 or too short for nonce and tag");
    }
    size_t n = (size_t)rn - 28;
    if (n + 1 > out_size) {
        free(raw);
        return sl__err(errstr, errstr_size, SL_EINVAL,
                       "decrypt: output buffer too small (%zu bytes needed)",
                       n + 1);
    }
    uint8_t key[32];
    sl__keyring_derive(keys, ki, AES_LABEL, key);
    sl__gcm *g = sl__gcm_new(key, errstr, errstr_size);
    OPENSSL_cleanse(key, sizeof key);
    if (!g) {
        free(raw);
        return SL_ECRYPTO;
    }
    char aad[256];
    size_t alen = strlen(col) < 160 ? make_aad(aad, sizeof aad, id, col) : 0;
    int rc = alen ? sl__gcm_open(g, raw, aad, alen, raw + 12, n, raw + 12 + n,
                                 (uint8_t *)out)
                  : SL_EINVAL;
    sl__gcm_free(g);
    free(raw);
    if (rc != 0)
        return sl__err(errstr, errstr_size, rc == SL_ECORRUPT ? SL_ECORRUPT : rc,
                       "decrypt: authentication failed (wrong key, column or "
                       "tampered field)");
    out[n] = 0;
    if (out_len) *out_len = n;
    return 0;
}

/* ---- the operator -------------------------------------------------------- */
typedef struct {
    const sl_schema *out;
    const sl_schema *in;
    const sl__encrypt_conf *conf;
    const char *key_id;
    sl__gcm *gcm;
    sl__hmac *nonce_mac; /* synthetic mode */
    uint8_t prefix[8];
    uint32_t counter;
    char *aad[SL_MAX_COLS];
    size_t aadlen[SL_MAX_COLS];
    char *buf;
    size_t bufcap;
} enc_op;

static void enc_close(void *st)
{
    enc_op *p = st;
    if (!p) return;
    sl__gcm_free(p->gcm);
    sl__hmac_free(p->nonce_mac);
    for (int i = 0; i < SL_MAX_COLS; i++) free(p->aad[i]);
    free(p->buf);
    free(p);
}

static int enc_open(void **st, const void *conf, const sl__opinfo *info,
                    sl__ctx *ctx, char *errstr, size_t errstr_size)
{
    (void)ctx;
    const sl__encrypt_conf *c = conf;
    enc_op *p = sl__xcalloc(1, sizeof *p);
    p->in = info->in;
    p->out = info->out;
    p->conf = c;
    p->key_id = sl__keyring_key_id(c->keys, c->key);
    uint8_t key[32];
    sl__keyring_derive(c->keys, c->key, AES_LABEL, key);
    p->gcm = sl__gcm_new(key, errstr, errstr_size);
    OPENSSL_cleanse(key, sizeof key);
    if (!p->gcm) {
        enc_close(p);
        return SL_ECRYPTO;
    }
    if (c->synthetic) {
        uint8_t nk[32];
        sl__keyring_derive(c->keys, c->key, NONCE_LABEL, nk);
        p->nonce_mac = sl__hmac_new_raw(nk, sizeof nk, errstr, errstr_size);
        OPENSSL_cleanse(nk, sizeof nk);
        if (!p->nonce_mac) {
            enc_close(p);
            return SL_ECRYPTO;
        }
    } else if (RAND_bytes(p->prefix, sizeof p->prefix) != 1) {
        enc_close(p);
        return sl__err(errstr, errstr_size, SL_ECRYPTO,
                       "encrypt: the OS random generator failed");
    }
    for (int i = 0; i < c->ncols; i++) {
        const char *name = info->in->cols[c->cols[i]].name;
        size_t cap = strlen(AAD_TAG) + strlen(p->key_id) + strlen(name) + 2;
        p->aad[i] = sl__xmalloc(cap);
        p->aadlen[i] = make_aad(p->aad[i], cap, p->key_id, name);
    }
    *st = p;
    return 0;
}

static void next_nonce(enc_op *p, int ci, const void *pt, size_t n,
                       uint8_t iv[12])
{
    if (p->nonce_mac) {
        uint8_t mac[32];
        size_t total = p->aadlen[ci] + 1 + n;
        if (total > p->bufcap) {
            p->bufcap = total * 2;
            p->buf = sl__xrealloc(p->buf, p->bufcap);
        }
        /* AAD || NUL || plaintext: unambiguous as the AAD has fixed parts */
        memcpy(p->buf, p->aad[ci], p->aadlen[ci]);
        p->buf[p->aadlen[ci]] = 0;
        memcpy(p->buf + p->aadlen[ci] + 1, pt, n);
        sl__hmac_full(p->nonce_mac, p->buf, total, mac);
        memcpy(iv, mac, 12);
        return;
    }
    if (p->counter == UINT32_MAX) {
        SL_ASSERT(RAND_bytes(p->prefix, sizeof p->prefix) == 1);
        p->counter = 0;
    }
    uint32_t c = p->counter++;
    memcpy(iv, p->prefix, 8);
    iv[8] = (uint8_t)(c >> 24);
    iv[9] = (uint8_t)(c >> 16);
    iv[10] = (uint8_t)(c >> 8);
    iv[11] = (uint8_t)c;
}

/* Canonical text of (col, row) into txt (>= 40 bytes) unless a string;
 * sets *pt to the bytes. */
static size_t field_text(const sl_batch *b, int col, uint32_t row, char *txt,
                         const char **pt)
{
    switch (b->schema->cols[col].type) {
    case SL_STRING: {
        sl_str s = ((const sl_str *)b->cols[col].data)[row];
        *pt = s.ptr;
        return s.len;
    }
    case SL_FLOAT64:
        *pt = txt;
        return (size_t)snprintf(txt, 40, "%.17g",
                                ((const double *)b->cols[col].data)[row]);
    case SL_BOOL:
        *pt = ((const uint8_t *)b->cols[col].data)[row] ? "true" : "false";
        return strlen(*pt);
    default:
        *pt = txt;
        return (size_t)snprintf(txt, 40, "%lld",
                                (long long)((const int64_t *)b->cols[col].data)[row]);
    }
}

static int enc_field(enc_op *p, sl_batch *o, int ci, int col, const sl_batch *b,
                     uint32_t row)
{
    char txt[40];
    const char *pt;
    size_t n = field_text(b, col, row, txt, &pt);
    size_t idl = strlen(p->key_id), raw = 12 + n + 16;
    size_t b64 = (raw + 2) / 3 * 4;
    /* layout in buf: [text: id ':' b64 + NUL][raw: nonce ct tag] */
    size_t need = idl + 1 + b64 + 1 + raw + p->aadlen[ci] + 1 + n;
    if (need > p->bufcap) {
        p->bufcap = need * 2;
        p->buf = sl__xrealloc(p->buf, p->bufcap);
    }
    uint8_t iv[12];
    next_nonce(p, ci, pt, n, iv); /* may use buf as scratch: fill it after */
    char *text = p->buf;
    uint8_t *r = (uint8_t *)p->buf + idl + 1 + b64 + 1;
    memcpy(r, iv, 12);
    int rc = sl__gcm_seal(p->gcm, iv, p->aad[ci], p->aadlen[ci], pt, n, r + 12,
                          r + 12 + n);
    if (rc) return rc;
    memcpy(text, p->key_id, idl);
    text[idl] = ':';
    int w = EVP_EncodeBlock((unsigned char *)text + idl + 1, r, (int)raw);
    SL_ASSERT(w == (int)b64);
    return sl_batch_set_str(o, col, row, text, idl + 1 + b64);
}

static int enc_batch(void *st, sl_batch *b, sl__out *out)
{
    enc_op *p = st;
    const sl__encrypt_conf *c = p->conf;
    uint32_t n = b->n;
    sl_batch *o = sl__batch_new(p->out, b->cap);
    memcpy(o->kind, b->kind, n);
    bool enc[SL_MAX_COLS] = {0};
    for (int i = 0; i < c->ncols; i++) enc[c->cols[i]] = true;
    for (int col = 0; col < p->out->n; col++)
        if (!enc[col]) sl__ops_copy_column(o, col, b, col, p->out->cols[col].type);
    int rc = 0;
    for (int i = 0; i < c->ncols && rc == 0; i++) {
        int col = c->cols[i];
        const uint8_t *v = b->cols[col].valid;
        memcpy(o->cols[col].valid, v, n);
        for (uint32_t r = 0; r < n && rc == 0; r++) {
            if (!v[r]) {
                ((sl_str *)o->cols[col].data)[r] = (sl_str){"", 0};
                continue;
            }
            rc = enc_field(p, o, i, col, b, r);
        }
    }
    o->n = n;
    sl__batch_free(b);
    if (rc) {
        sl__batch_free(o);
        return rc;
    }
    return sl__emit(out, o);
}

const sl__op_vt sl__op_encrypt = {
    .name = "encrypt",
    .open = enc_open,
    .batch = enc_batch,
    .close = enc_close,
    .conf_free = free,
};

sl_schema *sl__encrypt_schema(const sl_schema *in, const int *cols, int n)
{
    sl_schema *s = sl__schema_copy(in);
    for (int i = 0; i < n; i++) {
        struct sl__colinfo *c = &s->cols[cols[i]];
        for (int d = 0; d < c->ndomain; d++) free(c->domain[d]);
        free(c->domain);
        c->domain = NULL;
        c->ndomain = 0;
        c->type = SL_STRING;
        c->identifier = false; /* ciphertext is what may travel */
    }
    return s;
}

sl_stream *sl_stream_encrypt(sl_stream *s, const char *const *cols,
                             const sl_keyring *keys, const char *key_id,
                             int nonce_mode)
{
    if (!s) return NULL;
    sl_job *job = sl__stream_job(s);
    const sl_schema *in = sl_stream_schema(s);
    if (!keys || sl__keyring_nkeys(keys) == 0) {
        sl__job_fail(job, SL_EINVAL, "encrypt: no keyring given");
        return NULL;
    }
    int ki = key_id ? sl__keyring_find(keys, key_id)
                    : sl__keyring_nkeys(keys) - 1;
    if (ki < 0) {
        sl__job_fail(job, SL_EINVAL, "encrypt: key id '%s' is not in the "
                     "keyring", key_id);
        return NULL;
    }
    if (nonce_mode != SL_NONCE_RANDOM && nonce_mode != SL_NONCE_SYNTHETIC) {
        sl__job_fail(job, SL_EINVAL, "encrypt: nonce mode must be "
                     "SL_NONCE_RANDOM or SL_NONCE_SYNTHETIC");
        return NULL;
    }
    sl__encrypt_conf *conf = sl__xcalloc(1, sizeof *conf);
    conf->keys = keys;
    conf->key = ki;
    conf->synthetic = nonce_mode == SL_NONCE_SYNTHETIC;
    for (size_t i = 0; cols && cols[i]; i++) {
        int c = sl_schema_find(in, cols[i]);
        bool dup = false;
        for (int j = 0; j < conf->ncols; j++) dup |= conf->cols[j] == c;
        if (c < 0 || dup || strlen(cols[i]) >= 160) {
            sl__job_fail(job, SL_EINVAL, "encrypt: column '%s' %s", cols[i],
                         c < 0 ? "is not in the stream"
                               : dup ? "is listed twice" : "has too long a name");
            free(conf);
            return NULL;
        }
        const char *const *key = sl__stream_key(s);
        for (size_t k = 0; key && key[k]; k++)
            if (strcmp(key[k], cols[i]) == 0) {
                sl__job_fail(job, SL_EINVAL, "encrypt: column '%s' is part of "
                             "the stream's key", cols[i]);
                free(conf);
                return NULL;
            }
        conf->cols[conf->ncols++] = c;
    }
    if (conf->ncols == 0) {
        sl__job_fail(job, SL_EINVAL, "encrypt: no columns given");
        free(conf);
        return NULL;
    }
    sl_schema *out = sl__encrypt_schema(in, conf->cols, conf->ncols);
    sl_stream *r = sl__stream_add_op(s, &sl__op_encrypt, conf, out);
    sl_schema_free(out);
    return r;
}
