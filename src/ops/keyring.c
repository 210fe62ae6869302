/* keyring.c — secret keys for pseudonymisation and the keyed HMAC-SHA-256
 * that turns subscriber identifiers into pseudonyms.
 *
 * Key file format, one key per line:
 *
 *     # comment (also after a key)
 *     KEY_ID HEX_SECRET [VALID_FROM]
 *
 * KEY_ID is 1-64 characters of [A-Za-z0-9._:-]; HEX_SECRET is 32 to 1024
 * bytes written as hex; VALID_FROM (optional) is a date or timestamp that
 * sl__parse_ts accepts; dates given must not decrease from one key to the
 * next. The last key is the current one. The path "env:NAME" reads the
 * same text from the environment variable NAME instead of a file.
 *
 * Every problem is an error naming the path and line, because a job must
 * never run un-pseudonymised; messages never quote a field of the line, as
 * any of them might be a misplaced secret. Secrets are wiped from memory
 * when the keyring is freed.
 *
 * The fast path (sl__hmac) precomputes the inner and outer SHA-256 states
 * after the padded key (RFC 2104) once and copies them for each message.
 * Measured on OpenSSL 3.0 with SHA-NI, 12-byte ids: ~205 ns per pseudonym,
 * against ~250 ns for EVP_MAC re-initialised with the same key per message,
 * ~290 ns for hashing ipad||msg from scratch and ~1.4 us for EVP_Q_mac. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "ops/privacy.h"

#define KEY_MIN_BYTES 32
#define KEY_MAX_BYTES 1024
#define KEY_ID_MAX 64
#define KEYFILE_MAX (1 << 20)

struct key {
    char *id;
    uint8_t *secret;
    size_t len;
    int64_t valid_from; /* SL_TS_MIN when not given */
};

struct sl_keyring {
    int n;
    struct key *keys;
};

void sl_keyring_free(sl_keyring *k)
{
    if (!k) return;
    for (int i = 0; i < k->n; i++) {
        free(k->keys[i].id);
        OPENSSL_cleanse(k->keys[i].secret, k->keys[i].len);
        free(k->keys[i].secret);
    }
    free(k->keys);
    free(k);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool id_char(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '.' || c == '_' || c == ':' ||
           c == '-';
}

/* Parses one line (already cut at '#' and at its end) into key `out`.
 * Returns 1 for a key, 0 for a blank line, or a negative SL_E*. */
static int parse_line(char *line, size_t len, struct key *out,
                      const char *path, int lineno, char *errstr,
                      size_t errstr_size)
{
    const char *tok[4];
    size_t tlen[4];
    int ntok = 0;
    for (size_t i = 0; i < len;) {
        while (i < len && (line[i] == ' ' || line[i] == '\t')) i++;
        if (i == len) break;
        size_t s = i;
        while (i < len && line[i] != ' ' && line[i] != '\t') i++;
        if (ntok == 4) break;
        tok[ntok] = line + s;
        tlen[ntok++] = i - s;
    }
    if (ntok == 0) return 0;
    if (ntok < 2 || ntok > 3)
        return sl__err(errstr, errstr_size, SL_EPARSE,
                       "keyring: %s:%d: expected 'KEY_ID HEX_SECRET "
                       "[VALID_FROM]', found %d field%s", path, lineno,
                       ntok > 3 ? 4 : ntok, ntok == 1 ? "" : "s or more");
    if (tlen[0] > KEY_ID_MAX)
        return sl__err(errstr, errstr_size, SL_EPARSE,
                       "keyring: %s:%d: key id is longer than %d characters",
                       path, lineno, KEY_ID_MAX);
    for (size_t i = 0; i < tlen[0]; i++)
        if (!id_char((unsigned char)tok[0][i]))
            return sl__err(errstr, errstr_size, SL_EPARSE,
                           "keyring: %s:%d: key id may only contain letters, "
                           "digits and . _ : -", path, lineno);
    size_t hl = tlen[1];
    for (size_t i = 0; i < hl; i++)
        if (hexval((unsigned char)tok[1][i]) < 0)
            return sl__err(errstr, errstr_size, SL_EPARSE,
                           "keyring: %s:%d: secret is not hexadecimal "
                           "(character %zu)", path, lineno, i + 1);
    if (hl % 2)
        return sl__err(errstr, errstr_size, SL_EPARSE,
                       "keyring: %s:%d: secret has an odd number of hex digits",
                       path, lineno);
    if (hl / 2 < KEY_MIN_BYTES || hl / 2 > KEY_MAX_BYTES)
        return sl__err(errstr, errstr_size, SL_EPARSE,
                       "keyring: %s:%d: secret is %zu bytes; it must be %d to "
                       "%d bytes (%d to %d hex digits)", path, lineno, hl / 2,
                       KEY_MIN_BYTES, KEY_MAX_BYTES, 2 * KEY_MIN_BYTES,
                       2 * KEY_MAX_BYTES);
    int64_t vf = SL_TS_MIN;
    if (ntok == 3 && sl__parse_ts(tok[2], tlen[2], &vf) != 0)
        return sl__err(errstr, errstr_size, SL_EPARSE,
                       "keyring: %s:%d: VALID_FROM is not a date "
                       "(YYYY-MM-DD[THH:MM:SS[.fff]][Z] or epoch ms)",
                       path, lineno);
    out->id = sl__xstrndup(tok[0], tlen[0]);
    out->len = hl / 2;
    out->secret = sl__xmalloc(out->len);
    for (size_t i = 0; i < out->len; i++)
        out->secret[i] = (uint8_t)(hexval((unsigned char)tok[1][2 * i]) << 4 |
                                   hexval((unsigned char)tok[1][2 * i + 1]));
    out->valid_from = vf;
    return 1;
}

/* Parses the whole text; on error frees what it built. */
static int parse_text(sl_keyring *k, char *text, size_t size,
                      const char *path, char *errstr, size_t errstr_size)
{
    int lineno = 0, cap = 0;
    size_t pos = 0;
    int *first_line = NULL;
    int rc = 0;
    while (pos < size && rc == 0) {
        char *line = text + pos;
        char *nl = memchr(line, '\n', size - pos);
        size_t len = nl ? (size_t)(nl - line) : size - pos;
        pos += len + (nl != NULL);
        lineno++;
        char *hash = memchr(line, '#', len);
        if (hash) len = (size_t)(hash - line);
        if (len && line[len - 1] == '\r') len--;
        if (memchr(line, '\0', len)) {
            rc = sl__err(errstr, errstr_size, SL_EPARSE,
                         "keyring: %s:%d: NUL byte in the line", path, lineno);
            break;
        }
        struct key key = {0};
        int r = parse_line(line, len, &key, path, lineno, errstr, errstr_size);
        if (r < 0) { rc = r; break; }
        if (r == 0) continue;
        for (int i = 0; i < k->n && r > 0; i++) {
            if (strcmp(k->keys[i].id, key.id) == 0) {
                rc = sl__err(errstr, errstr_size, SL_EPARSE,
                             "keyring: %s:%d: duplicate key id (first defined "
                             "on line %d)", path, lineno, first_line[i]);
                r = -1;
            } else if (key.valid_from != SL_TS_MIN &&
                       key.valid_from < k->keys[i].valid_from) {
                rc = sl__err(errstr, errstr_size, SL_EPARSE,
                             "keyring: %s:%d: VALID_FROM is earlier than the "
                             "key on line %d; list keys oldest first, the "
                             "current key last", path, lineno, first_line[i]);
                r = -1;
            }
        }
        if (r < 0) {
            free(key.id);
            OPENSSL_cleanse(key.secret, key.len);
            free(key.secret);
            break;
        }
        if (k->n == cap) {
            cap = cap ? 2 * cap : 4;
            k->keys = sl__xrealloc(k->keys, sizeof *k->keys * (size_t)cap);
            first_line = sl__xrealloc(first_line, sizeof(int) * (size_t)cap);
        }
        first_line[k->n] = lineno;
        k->keys[k->n++] = key;
    }
    free(first_line);
    if (rc == 0 && k->n == 0)
        rc = sl__err(errstr, errstr_size, SL_EINVAL,
                     "keyring: %s: no keys (expected lines 'KEY_ID "
                     "HEX_SECRET'); refusing to run without a key", path);
    return rc;
}

/* Reads the whole file (bounded) into a new buffer. */
static int read_file(const char *path, char **out, size_t *size, char *errstr,
                     size_t errstr_size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return sl__err(errstr, errstr_size, errno == ENOENT ? SL_ENOENT : SL_EIO,
                       "keyring: %s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return sl__err(errstr, errstr_size, SL_EIO,
                       "keyring: %s: not a regular file", path);
    }
    if (st.st_size > KEYFILE_MAX) {
        fclose(f);
        return sl__err(errstr, errstr_size, SL_EINVAL,
                       "keyring: %s: larger than %d bytes", path, KEYFILE_MAX);
    }
    char *buf = sl__xmalloc((size_t)st.st_size + 1);
    size_t n = fread(buf, 1, (size_t)st.st_size, f);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        OPENSSL_cleanse(buf, n);
        free(buf);
        return sl__err(errstr, errstr_size, SL_EIO,
                       "keyring: %s: read error", path);
    }
    *out = buf;
    *size = n;
    return 0;
}

sl_keyring *sl_keyring_load(const char *path, char *errstr, size_t errstr_size)
{
    if (!path || !*path) {
        sl__err(errstr, errstr_size, SL_EINVAL, "keyring: no path given");
        return NULL;
    }
    char *text = NULL;
    size_t size = 0;
    if (strncmp(path, "env:", 4) == 0) {
        const char *v = getenv(path + 4);
        if (!v) {
            sl__err(errstr, errstr_size, SL_ENOENT,
                    "keyring: %s: environment variable not set", path);
            return NULL;
        }
        size = strlen(v);
        text = sl__xstrndup(v, size);
    } else if (read_file(path, &text, &size, errstr, errstr_size) != 0) {
        return NULL;
    }
    sl_keyring *k = sl__xcalloc(1, sizeof *k);
    int rc = parse_text(k, text, size, path, errstr, errstr_size);
    OPENSSL_cleanse(text, size);
    free(text);
    if (rc != 0) {
        sl_keyring_free(k);
        return NULL;
    }
    return k;
}

const char *sl_keyring_current_id(const sl_keyring *k)
{
    return k && k->n ? k->keys[k->n - 1].id : NULL;
}

int sl__keyring_nkeys(const sl_keyring *k) { return k ? k->n : 0; }

const char *sl__keyring_key_id(const sl_keyring *k, int i)
{
    return k && i >= 0 && i < k->n ? k->keys[i].id : NULL;
}

int64_t sl__keyring_valid_from(const sl_keyring *k, int i)
{
    return k && i >= 0 && i < k->n ? k->keys[i].valid_from : SL_TS_MIN;
}

static int64_t be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | p[i];
    return (int64_t)v;
}

int64_t sl_keyring_pseudonym(const sl_keyring *k, const char *id, size_t len)
{
    SL_ASSERT(k && k->n > 0);
    const struct key *key = &k->keys[k->n - 1];
    uint8_t mac[32];
    size_t maclen = 0;
    /* One-shot and independent of sl__hmac, which tests compare it with. */
    uint8_t *r = EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key->secret,
                           key->len, (const unsigned char *)(id ? id : ""),
                           id ? len : 0, mac, sizeof mac, &maclen);
    SL_ASSERT(r != NULL && maclen == 32);
    return be64(mac);
}

/* ---- the keyed fast path ------------------------------------------------- */
struct sl__hmac {
    EVP_MD_CTX *inner; /* SHA-256 state after key ^ ipad */
    EVP_MD_CTX *outer; /* SHA-256 state after key ^ opad */
    EVP_MD_CTX *work;
};

void sl__hmac_free(sl__hmac *h)
{
    if (!h) return;
    EVP_MD_CTX_free(h->inner); /* EVP_MD_CTX_free cleanses the state */
    EVP_MD_CTX_free(h->outer);
    EVP_MD_CTX_free(h->work);
    free(h);
}

sl__hmac *sl__hmac_new_raw(const uint8_t *key, size_t keylen, char *errstr,
                           size_t errstr_size)
{
    enum { BLOCK = 64 };
    uint8_t k0[BLOCK] = {0}, pad[BLOCK];
    sl__hmac *h = sl__xcalloc(1, sizeof *h);
    EVP_MD *md = EVP_MD_fetch(NULL, "SHA256", NULL);
    h->inner = EVP_MD_CTX_new();
    h->outer = EVP_MD_CTX_new();
    h->work = EVP_MD_CTX_new();
    bool ok = md && h->inner && h->outer && h->work;
    if (ok && keylen > BLOCK) {
        unsigned int n = 0;
        ok = EVP_Digest(key, keylen, k0, &n, md, NULL) == 1;
    } else if (ok && keylen) {
        memcpy(k0, key, keylen);
    }
    for (int i = 0; ok && i < BLOCK; i++) pad[i] = k0[i] ^ 0x36;
    ok = ok && EVP_DigestInit_ex2(h->inner, md, NULL) == 1 &&
         EVP_DigestUpdate(h->inner, pad, BLOCK) == 1;
    for (int i = 0; ok && i < BLOCK; i++) pad[i] = k0[i] ^ 0x5c;
    ok = ok && EVP_DigestInit_ex2(h->outer, md, NULL) == 1 &&
         EVP_DigestUpdate(h->outer, pad, BLOCK) == 1;
    OPENSSL_cleanse(k0, sizeof k0);
    OPENSSL_cleanse(pad, sizeof pad);
    EVP_MD_free(md); /* the contexts hold their own references */
    if (!ok) {
        sl__hmac_free(h);
        sl__err(errstr, errstr_size, SL_ECRYPTO,
                "hmac: OpenSSL cannot provide SHA-256");
        return NULL;
    }
    return h;
}

sl__hmac *sl__hmac_new(const sl_keyring *k, char *errstr, size_t errstr_size)
{
    if (!k || k->n == 0) {
        sl__err(errstr, errstr_size, SL_EINVAL, "hmac: no keyring");
        return NULL;
    }
    const struct key *key = &k->keys[k->n - 1];
    return sl__hmac_new_raw(key->secret, key->len, errstr, errstr_size);
}

void sl__hmac_full(sl__hmac *h, const void *msg, size_t len, uint8_t mac[32])
{
    uint8_t ih[32];
    unsigned int n1 = 0, n2 = 0;
    int ok = EVP_MD_CTX_copy_ex(h->work, h->inner) == 1 &&
             EVP_DigestUpdate(h->work, msg, len) == 1 &&
             EVP_DigestFinal_ex(h->work, ih, &n1) == 1 &&
             EVP_MD_CTX_copy_ex(h->work, h->outer) == 1 &&
             EVP_DigestUpdate(h->work, ih, sizeof ih) == 1 &&
             EVP_DigestFinal_ex(h->work, mac, &n2) == 1;
    /* Only an allocation failure inside OpenSSL can get here; a missing or
     * wrong pseudonym must never go on, so it is fatal. */
    SL_ASSERT(ok && n1 == 32 && n2 == 32);
}

int64_t sl__hmac_pseudo(sl__hmac *h, const void *msg, size_t len)
{
    uint8_t mac[32];
    sl__hmac_full(h, msg, len, mac);
    return be64(mac);
}
