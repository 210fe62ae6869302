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
 * A key file must not be accessible by others (read_file refuses it, as
 * ssh refuses a private key): owned by the running user it must be mode
 * 0600 or stricter; owned by another user (root deploying a secret for a
 * service group) it may be 0640. `sluice keygen` writes 0600.
 *
 * Every problem is an error naming the path and line, because a job must
 * never run un-pseudonymised; messages never quote a field of the line, as
 * any of them might be a misplaced secret. Secrets are wiped from memory
 * when the keyring is freed.
 *
 * The fast path (sl__hmac) precomputes the inner and outer SHA-256 states
 * after the padded key (RFC 2104) once and copies them for each message.
 * It uses OpenSSL's low-level SHA256_CTX (deprecated in 3.0, still
 * provided): a state copy is then a 112-byte struct copy, where
 * EVP_MD_CTX_copy_ex allocates and frees a provider context every time.
 * Measured on OpenSSL 3.0 with SHA-NI, 12-byte ids: ~120 ns per pseudonym,
 * against ~220 ns with EVP_MD_CTX copies, ~250 ns for EVP_MAC
 * re-initialised with the same key per message and ~1.4 us for EVP_Q_mac. */
#define OPENSSL_SUPPRESS_DEPRECATED /* SHA256_CTX: see above */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

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
    /* per key: the shared pseudonym cache, created on first use (a memo of
     * the MAC, so a const keyring may fill it) */
    _Atomic(sl__pcache *) *caches;
};

struct sl__hmac {
    SHA256_CTX inner; /* state after key ^ ipad */
    SHA256_CTX outer; /* state after key ^ opad */
    sl__pcache *cache; /* borrowed from the keyring; NULL for a raw key */
};

sl__pcache *sl__hmac_cache(const sl__hmac *h) { return h ? h->cache : NULL; }

void sl_keyring_free(sl_keyring *k)
{
    if (!k) return;
    for (int i = 0; i < k->n; i++) {
        free(k->keys[i].id);
        OPENSSL_cleanse(k->keys[i].secret, k->keys[i].len);
        free(k->keys[i].secret);
        if (k->caches) sl__pcache_free(atomic_load(&k->caches[i]));
    }
    free(k->caches);
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
    SL_ASSERT(k->n == 0 && !k->keys); /* first_line parallels k->keys */
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
    /* As ssh does for private keys: nobody but the owner may read the file;
     * a file owned by someone else (root, deploying a secret for a service
     * group) may be group-readable but never group-writable. */
    bool own = st.st_uid == geteuid();
    if ((st.st_mode & 007) || (own && (st.st_mode & 070)) || (st.st_mode & 020)) {
        fclose(f);
        return sl__err(errstr, errstr_size, SL_EINVAL,
                       "keyring: %s: permissions %04o are too open: a key "
                       "file must not be accessible by others%s (chmod %s '%s')",
                       path, (unsigned)(st.st_mode & 07777),
                       own ? " or by its group" : " nor writable by its group",
                       own ? "600" : "640", path);
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
    k->caches = sl__xcalloc((size_t)k->n, sizeof *k->caches);
    return k;
}

sl__pcache *sl__keyring_pcache(const sl_keyring *k, int i)
{
    if (!k || !k->caches || k->n == 0) return NULL;
    if (i == -1) i = k->n - 1;
    if (i < 0 || i >= k->n) return NULL;
    sl__pcache *c = atomic_load_explicit(&k->caches[i], memory_order_acquire);
    if (c) return c;
    sl__pcache *mine = sl__pcache_new(SL__PCACHE_BITS);
    if (atomic_compare_exchange_strong_explicit(&k->caches[i], &c, mine,
                                                memory_order_acq_rel,
                                                memory_order_acquire))
        return mine;
    sl__pcache_free(mine); /* another thread made it first: c is it */
    return c;
}

const char *sl_keyring_current_id(const sl_keyring *k)
{
    return k && k->n ? k->keys[k->n - 1].id : NULL;
}

int sl__keyring_nkeys(const sl_keyring *k) { return k ? k->n : 0; }
int sl_keyring_count(const sl_keyring *k) { return sl__keyring_nkeys(k); }

int64_t sl_keyring_valid_from(const sl_keyring *k, int i)
{
    return sl__keyring_valid_from(k, i);
}

const char *sl__keyring_key_id(const sl_keyring *k, int i)
{
    return k && i >= 0 && i < k->n ? k->keys[i].id : NULL;
}

int64_t sl__keyring_valid_from(const sl_keyring *k, int i)
{
    return k && i >= 0 && i < k->n ? k->keys[i].valid_from : SL_TS_MIN;
}

int sl__keyring_find(const sl_keyring *k, const char *id)
{
    for (int i = 0; k && id && i < k->n; i++)
        if (strcmp(k->keys[i].id, id) == 0) return i;
    return -1;
}

/* Purpose-bound subkeys: one secret never keys two algorithms, so the AES
 * key and the noise key reveal nothing about the pseudonymisation key. */
void sl__keyring_derive(const sl_keyring *k, int i, const char *label,
                        uint8_t out[32])
{
    SL_ASSERT(k && i >= 0 && i < k->n && label);
    size_t n = 0;
    uint8_t *r = EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL,
                           k->keys[i].secret, k->keys[i].len,
                           (const unsigned char *)label, strlen(label), out,
                           32, &n);
    SL_ASSERT(r != NULL && n == 32);
}

bool sl__keyring_in_domain(const sl_keyring *k, int i, const char *domain)
{
    if (!k || i < 0 || i >= k->n) return false;
    if (!domain || !*domain) return true;
    size_t n = strlen(domain);
    const char *id = k->keys[i].id;
    return strncmp(id, domain, n) == 0 && (id[n] == 0 || id[n] == ':');
}

int sl__keyring_select(const sl_keyring *k, const char *domain, int64_t at)
{
    /* VALID_FROM never decreases in file order (parse_text checks it) */
    int best = -1;
    for (int i = 0; k && i < k->n; i++)
        if (sl__keyring_in_domain(k, i, domain) && k->keys[i].valid_from <= at)
            best = i;
    return best;
}

int sl__keyring_check_rotation(const sl_keyring *k, const char *domain,
                               int64_t period_ms, char *errstr,
                               size_t errstr_size)
{
    int n = 0;
    for (int i = 0; k && i < k->n; i++) {
        if (!sl__keyring_in_domain(k, i, domain)) continue;
        n++;
        int64_t vf = k->keys[i].valid_from;
        if (period_ms > 0 && vf != SL_TS_MIN && vf % period_ms != 0)
            return sl__err(errstr, errstr_size, SL_EINVAL,
                           "keyring: key '%s' becomes valid at %lld ms, not on "
                           "a rotation boundary (a multiple of %lld ms); a "
                           "window would mix two keys", k->keys[i].id,
                           (long long)vf, (long long)period_ms);
    }
    if (n == 0)
        return sl__err(errstr, errstr_size, SL_ENOENT,
                       "keyring: no key with id '%s' or '%s:...'",
                       domain ? domain : "", domain ? domain : "");
    return 0;
}

sl__hmac *sl__hmac_new_key(const sl_keyring *k, int i, char *errstr,
                           size_t errstr_size)
{
    if (!k || i < 0 || i >= k->n) {
        sl__err(errstr, errstr_size, SL_EINVAL, "hmac: no key %d", i);
        return NULL;
    }
    sl__hmac *h = sl__hmac_new_raw(k->keys[i].secret, k->keys[i].len, errstr,
                                   errstr_size);
    if (h) h->cache = sl__keyring_pcache(k, i);
    return h;
}

static int64_t be64(const uint8_t *p)
{
    uint64_t v = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(&v, p, 8);
    v = __builtin_bswap64(v);
#else
    for (int i = 0; i < 8; i++) v = v << 8 | p[i];
#endif
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

void sl__hmac_free(sl__hmac *h)
{
    if (!h) return;
    OPENSSL_cleanse(h, sizeof *h); /* the states are as good as the key */
    free(h);
}

sl__hmac *sl__hmac_new_raw(const uint8_t *key, size_t keylen, char *errstr,
                           size_t errstr_size)
{
    enum { BLOCK = 64 };
    uint8_t k0[BLOCK] = {0}, pad[BLOCK];
    sl__hmac *h = sl__xcalloc(1, sizeof *h);
    bool ok = true;
    if (keylen > BLOCK) {
        SHA256_CTX c;
        ok = SHA256_Init(&c) == 1 && SHA256_Update(&c, key, keylen) == 1 &&
             SHA256_Final(k0, &c) == 1;
        OPENSSL_cleanse(&c, sizeof c);
    } else if (keylen) {
        memcpy(k0, key, keylen);
    }
    for (int i = 0; ok && i < BLOCK; i++) pad[i] = k0[i] ^ 0x36;
    ok = ok && SHA256_Init(&h->inner) == 1 &&
         SHA256_Update(&h->inner, pad, BLOCK) == 1;
    for (int i = 0; ok && i < BLOCK; i++) pad[i] = k0[i] ^ 0x5c;
    ok = ok && SHA256_Init(&h->outer) == 1 &&
         SHA256_Update(&h->outer, pad, BLOCK) == 1;
    OPENSSL_cleanse(k0, sizeof k0);
    OPENSSL_cleanse(pad, sizeof pad);
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
    sl__hmac *h = sl__hmac_new_raw(key->secret, key->len, errstr, errstr_size);
    if (h) h->cache = sl__keyring_pcache(k, k->n - 1);
    return h;
}

void sl__hmac_full(sl__hmac *h, const void *msg, size_t len, uint8_t mac[32])
{
    uint8_t ih[32];
    SHA256_CTX w = h->inner;
    /* The low-level calls cannot fail for in-memory input; a wrong
     * pseudonym must never go on, so a failure would still be fatal. */
    int ok = SHA256_Update(&w, msg, len) == 1 && SHA256_Final(ih, &w) == 1;
    w = h->outer;
    ok = ok && SHA256_Update(&w, ih, sizeof ih) == 1 && SHA256_Final(mac, &w) == 1;
    SL_ASSERT(ok);
}

int64_t sl__hmac_pseudo(sl__hmac *h, const void *msg, size_t len)
{
    uint8_t mac[32];
    sl__hmac_full(h, msg, len, mac);
    return be64(mac);
}
