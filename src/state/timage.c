/* timage.c — the binary image of a built in-memory lookup table, so that a
 * restart (or a second run on the same table file) reads the table back in
 * one sequential pass instead of parsing, pseudonymising and indexing its
 * source again: the index slots and the chunks' columns as they lie in
 * memory, strings as a per-column dictionary (the table's interned values)
 * or as lengths plus bytes. Pointers are never written; they are remade on
 * reading.
 *
 * It does not decide when an image may stand for a source: the caller
 * (ops/limage.c) passes an identity text (the source file's path, size,
 * mtime and content hash, the schema, the key column and the
 * pseudonymisation keys' ids and verifiers) that is stored in the image
 * and must match byte for byte. The image holds what the table holds and
 * nothing else: for a pseudonymised table the keys are pseudonyms, never
 * raw identifiers (sl__timage_write refuses a table that still has a
 * STRING identifier column).
 *
 * Layout (native byte order and widths, checked by the header): header
 * {magic, version, byte-order mark, identity length, body length, body
 * hash, header hash}, identity text, body {table fields, slots, chunks}.
 * The body hash chains sl__timage_hash over every piece in write order.
 *
 * Invariants:
 * 1. An image file is whole or absent: written to <path>.tmp, fsynced,
 *    renamed, and the directory fsynced (sl__timage_write).
 * 2. A table is returned only if the header, the identity, every length
 *    and the body hash check (sl__timage_read); anything else frees what
 *    was read and says why, and the caller loads from the source. */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "state/table_int.h"

#define MAGIC "SLTIMG\r\n"
#define VERSION 1u
#define BOM 0x0102030405060708ULL
#define EMPTY_STR UINT32_MAX /* dictionary index of the empty string */
#define IO_BUF (1u << 20)
#define BIG_READ (1u << 22) /* read and hash in pieces that stay in cache */

typedef struct {
    char magic[8];
    uint32_t version, slot_size;
    uint64_t bom;
    uint64_t ident_len, body_len;
    uint64_t body_hash;
    uint64_t header_hash; /* of the fields above */
} img_header;

typedef struct {
    uint32_t ncols, key_col, str_key, pad;
    uint64_t nchunks, stored, nkeys, mask;
    uint64_t hash_probe; /* the index's hash functions (hash_probe()) */
    uint8_t nulls[SL_MAX_COLS];
    uint8_t types[SL_MAX_COLS];
} img_table;

/* ---- the hash: four xxh64-style lanes, ~1 byte a cycle ------------------- */
#define P1 0x9E3779B185EBCA87ULL
#define P2 0xC2B2AE3D27D4EB4FULL
static inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static inline uint64_t round1(uint64_t acc, uint64_t w)
{
    return rotl(acc + w * P2, 31) * P1;
}

uint64_t sl__timage_hash(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *s = p;
    uint64_t a = seed + P1 + P2, b = seed + P2, c = seed, d = seed - P1;
    size_t len = n;
    while (n >= 32) {
        uint64_t w[4];
        memcpy(w, s, 32);
        a = round1(a, w[0]);
        b = round1(b, w[1]);
        c = round1(c, w[2]);
        d = round1(d, w[3]);
        s += 32;
        n -= 32;
    }
    uint64_t h = rotl(a, 1) + rotl(b, 7) + rotl(c, 12) + rotl(d, 18);
    h = sl__mix64(h ^ sl__hash_bytes(s, n, len));
    return h;
}

/* Slots hold hashes of the keys: a build whose hash functions differ
 * must not read them. */
static uint64_t hash_probe(void)
{
    return sl__table_hash_str("sluice", 6) ^ sl__table_hash_i64(1234567);
}

/* ---- writing ------------------------------------------------------------- */
typedef struct {
    FILE *f;
    uint64_t h, len;
    bool err;
} wr;

static void put(wr *w, const void *p, size_t n)
{
    if (w->err || n == 0) return;
    for (size_t off = 0; off < n; off += BIG_READ) {
        size_t m = n - off < BIG_READ ? n - off : BIG_READ;
        w->h = sl__timage_hash((const char *)p + off, m, w->h);
        if (fwrite((const char *)p + off, 1, m, w->f) != m) w->err = true;
    }
    w->len += n;
}

static void put_u32(wr *w, uint32_t v) { put(w, &v, sizeof v); }

/* Column c of chunk ch: as a dictionary of the table's interned values if
 * every value of the column is one (the map never filled), else as
 * lengths and bytes. */
static void put_strings(wr *w, const sl_table *t, int c, const sl_batch *ch)
{
    const sl__bmap *m = t->intern[c];
    const sl_str *v = ch->cols[c].data;
    uint32_t nd = m ? sl__bmap_count(m) : 0;
    if (m && nd < SL__TABLE_INTERN_MAX) {
        /* pointer -> dictionary index, by open addressing on the address */
        uint64_t size = 16;
        while (size < 2 * (uint64_t)nd) size *= 2;
        uintptr_t *pk = sl__xcalloc(size, sizeof *pk);
        uint32_t *pi = sl__xcalloc(size, sizeof *pi);
        put_u32(w, 0); /* mode: dictionary */
        put_u32(w, nd);
        for (uint32_t i = 0; i < nd; i++) {
            const uint8_t *k;
            uint32_t kl;
            sl__bmap_at(m, i, &k, &kl);
            put_u32(w, kl);
            put(w, k, kl);
            uint64_t j = sl__mix64((uint64_t)(uintptr_t)k) & (size - 1);
            while (pk[j]) j = (j + 1) & (size - 1);
            pk[j] = (uintptr_t)k;
            pi[j] = i;
        }
        uint32_t *idx = sl__xmalloc(sizeof *idx * (ch->n ? ch->n : 1));
        for (uint32_t r = 0; r < ch->n && !w->err; r++) {
            idx[r] = EMPTY_STR;
            if (v[r].len == 0) continue;
            uint64_t j = sl__mix64((uint64_t)(uintptr_t)v[r].ptr) & (size - 1);
            while (pk[j] && pk[j] != (uintptr_t)v[r].ptr) j = (j + 1) & (size - 1);
            if (!pk[j]) w->err = true; /* not interned after all: never expected */
            else idx[r] = pi[j];
        }
        put(w, idx, sizeof *idx * ch->n);
        free(idx);
        free(pk);
        free(pi);
        return;
    }
    put_u32(w, 1); /* mode: lengths and bytes */
    uint32_t *lens = sl__xmalloc(sizeof *lens * (ch->n ? ch->n : 1));
    uint64_t total = 0;
    for (uint32_t r = 0; r < ch->n; r++) total += lens[r] = (uint32_t)v[r].len;
    put(w, lens, sizeof *lens * ch->n);
    put(w, &total, sizeof total);
    char *blob = sl__xmalloc(total ? total : 1), *p = blob; /* one piece, as read */
    for (uint32_t r = 0; r < ch->n; r++) {
        if (v[r].len) memcpy(p, v[r].ptr, v[r].len);
        p += v[r].len;
    }
    put(w, blob, total);
    free(blob);
    free(lens);
}

static int fsync_dir_of(const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *sl = strrchr(dir, '/');
    if (sl) *sl = 0;
    else snprintf(dir, sizeof dir, ".");
    int fd = open(dir[0] ? dir : "/", O_RDONLY | O_DIRECTORY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int sl__timage_write(const sl_table *t, const char *path, const char *ident,
                     char *errstr, size_t errstr_size)
{
    if (!t || t->disk || atomic_load(&((sl_table *)t)->overlay))
        return sl__err(errstr, errstr_size, SL_EINVAL,
                       "table image: only a loaded in-memory table has one");
    for (int c = 0; c < t->schema->n; c++)
        if (t->schema->cols[c].identifier && t->schema->cols[c].type == SL_STRING)
            return sl__err(errstr, errstr_size, SL_EINVAL, "table image: column "
                           "'%s' holds raw identifiers; no image is written",
                           t->schema->cols[c].name);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return sl__err(errstr, errstr_size, SL_EIO, "table image: %s: %s", tmp,
                       strerror(errno));
    char *buf = sl__xmalloc(IO_BUF);
    setvbuf(f, buf, _IOFBF, IO_BUF);
    img_header h = {.version = VERSION, .slot_size = sizeof(slot), .bom = BOM,
                    .ident_len = strlen(ident)};
    memcpy(h.magic, MAGIC, 8);
    wr w = {.f = f};
    if (fwrite(&h, sizeof h, 1, f) != 1) w.err = true; /* rewritten below */
    put(&w, ident, h.ident_len);
    img_table it = {.ncols = (uint32_t)t->schema->n, .key_col = (uint32_t)t->key_col,
                    .str_key = t->str_key, .nchunks = t->nchunks,
                    .stored = t->stored, .nkeys = t->nkeys, .mask = t->mask,
                    .hash_probe = hash_probe()};
    for (int c = 0; c < t->schema->n; c++) {
        it.nulls[c] = t->nulls[c];
        it.types[c] = (uint8_t)t->schema->cols[c].type;
    }
    put(&w, &it, sizeof it);
    put(&w, t->slots, (t->mask + 1) * sizeof(slot));
    for (size_t i = 0; i < t->nchunks && !w.err; i++) {
        const sl_batch *ch = t->chunks[i];
        put_u32(&w, ch->n);
        put_u32(&w, ch->cap);
        put(&w, ch->kind, ch->n);
        for (int c = 0; c < t->schema->n; c++) {
            put(&w, ch->cols[c].valid, ch->n);
            switch (t->schema->cols[c].type) {
            case SL_BOOL: put(&w, ch->cols[c].data, ch->n); break;
            case SL_STRING: put_strings(&w, t, c, ch); break;
            default: put(&w, ch->cols[c].data, 8 * (size_t)ch->n); break;
            }
        }
    }
    /* the projections a join may read (invariant 5 of table.c): built
     * here if the table has none yet, so that a restart reads them in
     * sequence instead of gathering them at random from the chunks */
    uint32_t nproj = 0;
    for (int c = 0; c < t->schema->n; c++) nproj += sl__table_proj_col(t, c);
    put_u32(&w, nproj);
    for (int c = 0; c < t->schema->n && !w.err; c++) {
        if (!sl__table_proj_col(t, c)) continue;
        sl__tproj *have = atomic_load(&((sl_table *)t)->proj[c]);
        sl__tproj *pj = have ? have : sl__table_proj_build(t, c);
        uint64_t f[3] = {pj->mask, pj->zero, pj->zero_v};
        put_u32(&w, (uint32_t)c);
        put(&w, f, sizeof f);
        put(&w, pj->s, (pj->mask + 1) * sizeof(pslot));
        if (!have) sl__tproj_free(pj);
    }
    h.body_len = w.len - h.ident_len;
    h.body_hash = w.h;
    h.header_hash = sl__timage_hash(&h, offsetof(img_header, header_hash), 0);
    if (!w.err && (fflush(f) != 0 || fseek(f, 0, SEEK_SET) != 0 ||
                   fwrite(&h, sizeof h, 1, f) != 1 || fflush(f) != 0 ||
                   fsync(fileno(f)) != 0))
        w.err = true;
    int saved = errno;
    if (fclose(f) != 0) w.err = true;
    free(buf);
    if (w.err || rename(tmp, path) != 0 || fsync_dir_of(path) != 0) {
        if (!saved) saved = errno;
        unlink(tmp);
        return sl__err(errstr, errstr_size, SL_EIO, "table image: cannot write "
                       "%s: %s", path, saved ? strerror(saved) : "short write");
    }
    return 0;
}

/* ---- reading ------------------------------------------------------------- */
typedef struct {
    FILE *f;
    uint64_t h, left; /* body bytes not yet read */
    bool err;
} rd;

static bool get(rd *r, void *p, size_t n)
{
    if (r->err || n > r->left) return !(r->err = true);
    for (size_t off = 0; off < n; off += BIG_READ) {
        size_t m = n - off < BIG_READ ? n - off : BIG_READ;
        if (fread((char *)p + off, 1, m, r->f) != m) return !(r->err = true);
        r->h = sl__timage_hash((char *)p + off, m, r->h);
    }
    r->left -= n;
    return true;
}

static uint32_t get_u32(rd *r)
{
    uint32_t v = 0;
    get(r, &v, sizeof v);
    return v;
}

static bool get_strings(rd *r, sl_table *t, int c, sl_batch *ch)
{
    sl_str *v = ch->cols[c].data;
    uint32_t mode = get_u32(r);
    if (mode == 0) {
        uint32_t nd = get_u32(r);
        if (r->err || nd >= SL__TABLE_INTERN_MAX) return false;
        sl_str *dict = sl__xmalloc(sizeof *dict * (nd ? nd : 1));
        char *kb = NULL;
        bool ok = true;
        for (uint32_t i = 0; i < nd && ok; i++) {
            uint32_t kl = get_u32(r);
            ok = !r->err && kl <= r->left && kl > 0;
            if (!ok) break;
            kb = sl__xrealloc(kb, kl);
            ok = get(r, kb, kl);
            if (ok) dict[i] = sl__table_intern(t, c, ch, (sl_str){kb, kl});
        }
        free(kb);
        uint32_t *idx = ok ? sl__xmalloc(sizeof *idx * (ch->n ? ch->n : 1)) : NULL;
        if (ok) ok = get(r, idx, sizeof *idx * ch->n);
        for (uint32_t i = 0; ok && i < ch->n; i++) {
            if (idx[i] == EMPTY_STR) v[i] = (sl_str){"", 0};
            else if (idx[i] < nd) v[i] = dict[idx[i]];
            else ok = false;
        }
        free(idx);
        free(dict);
        return ok;
    }
    if (mode != 1) return false;
    uint32_t *lens = sl__xmalloc(sizeof *lens * (ch->n ? ch->n : 1));
    uint64_t total = 0, sum = 0;
    bool ok = get(r, lens, sizeof *lens * ch->n) && get(r, &total, sizeof total);
    for (uint32_t i = 0; ok && i < ch->n; i++) sum += lens[i];
    ok = ok && sum == total && total <= r->left;
    char *blob = ok && total ? sl__arena_alloc(&ch->arena, total) : NULL;
    if (ok && total) ok = get(r, blob, total);
    for (uint32_t i = 0, off = 0; ok && i < ch->n; off += lens[i], i++)
        v[i] = lens[i] ? (sl_str){blob + off, lens[i]} : (sl_str){"", 0};
    free(lens);
    return ok;
}

static bool read_body(rd *r, sl_table *t, const img_table *it)
{
    if (!get(r, t->slots, (t->mask + 1) * sizeof(slot))) return false;
    for (uint64_t i = 0; i < it->nchunks; i++) {
        uint32_t n = get_u32(r), cap = get_u32(r);
        if (r->err || n > cap || cap < SL__TABLE_CHUNK || cap > SL__TABLE_CHUNK_MAX)
            return false;
        if (t->nchunks == t->chunks_cap) {
            t->chunks_cap = t->chunks_cap ? 2 * t->chunks_cap : 16;
            t->chunks = sl__xrealloc(t->chunks, sizeof(*t->chunks) * t->chunks_cap);
        }
        sl_batch *ch = cap < SL__TABLE_CHUNK_MAX ? sl__batch_new(t->schema, cap)
                                                 : sl__batch_new_huge(t->schema, cap);
        t->chunks[t->nchunks++] = ch;
        ch->n = n;
        if (!get(r, ch->kind, n)) return false;
        for (int c = 0; c < t->schema->n; c++) {
            if (!get(r, ch->cols[c].valid, n)) return false;
            bool ok;
            switch (t->schema->cols[c].type) {
            case SL_BOOL: ok = get(r, ch->cols[c].data, n); break;
            case SL_STRING: ok = get_strings(r, t, c, ch); break;
            default: ok = get(r, ch->cols[c].data, 8 * (size_t)n); break;
            }
            if (!ok) return false;
        }
    }
    uint32_t nproj = get_u32(r);
    for (uint32_t i = 0; i < nproj && !r->err; i++) {
        uint32_t c = get_u32(r);
        uint64_t f[3];
        if (!get(r, f, sizeof f) || c >= (uint32_t)t->schema->n ||
            !sl__table_proj_col(t, (int)c) || atomic_load(&t->proj[c]) ||
            f[0] >= (1ULL << 40) || ((f[0] + 1) & f[0]) ||
            (f[0] + 1) * sizeof(pslot) > r->left)
            return false;
        sl__tproj *pj = sl__xcalloc(1, sizeof *pj);
        pj->mask = f[0];
        pj->zero = f[1] != 0;
        pj->zero_v = f[2];
        pj->s = sl__huge_alloc((pj->mask + 1) * sizeof(pslot));
        atomic_store(&t->proj[c], pj); /* freed with the table from here on */
        if (!get(r, pj->s, (pj->mask + 1) * sizeof(pslot))) return false;
    }
    /* every slot must point at a stored row (a corrupt one would be caught
     * by the hash, but the hash is not a proof) */
    uint64_t used = 0;
    for (uint64_t i = 0; i <= t->mask; i++) {
        const slot *s = &t->slots[i];
        if (!s->chunk) continue;
        used++;
        if (s->chunk > t->nchunks || s->row >= t->chunks[s->chunk - 1]->n) return false;
    }
    return used == it->nkeys;
}

sl_table *sl__timage_read(const char *path, const char *ident,
                          const sl_schema *schema, int key_col, char *why,
                          size_t why_size)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(why, why_size, "%s", errno == ENOENT ? "no image" : strerror(errno));
        return NULL;
    }
    char *buf = sl__xmalloc(IO_BUF);
    setvbuf(f, buf, _IOFBF, IO_BUF);
    struct stat st;
    img_header h;
    sl_table *t = NULL;
    char *id = NULL;
    const char *bad = NULL;
    size_t idl = strlen(ident);
    if (fstat(fileno(f), &st) != 0 || fread(&h, sizeof h, 1, f) != 1)
        bad = "truncated header";
    else if (memcmp(h.magic, MAGIC, 8) || h.version != VERSION || h.bom != BOM ||
             h.slot_size != sizeof(slot) ||
             h.header_hash != sl__timage_hash(&h, offsetof(img_header, header_hash), 0))
        bad = "not an image of this version";
    else if ((uint64_t)st.st_size != sizeof h + h.ident_len + h.body_len)
        bad = "truncated or extended";
    else if (h.ident_len != idl)
        bad = "source, schema or keys changed";
    if (!bad) {
        id = sl__xmalloc(idl + 1);
        rd r = {.f = f, .left = h.ident_len + h.body_len};
        img_table it = {0};
        if (!get(&r, id, idl) || memcmp(id, ident, idl))
            bad = "source, schema or keys changed";
        else if (!get(&r, &it, sizeof it) || it.ncols != (uint32_t)schema->n ||
                 it.key_col != (uint32_t)key_col || it.mask >= (1ULL << 40) ||
                 ((it.mask + 1) & it.mask) || it.nkeys > it.stored ||
                 it.hash_probe != hash_probe())
            bad = "schema changed";
        for (int c = 0; !bad && c < schema->n; c++)
            if (it.types[c] != (uint8_t)schema->cols[c].type) bad = "schema changed";
        if (!bad) {
            t = sl__table_new(schema, key_col);
            if (!t || t->str_key != (it.str_key != 0)) {
                bad = "schema changed";
            } else {
                sl__huge_free(t->slots, (t->mask + 1) * sizeof(slot));
                t->mask = it.mask;
                t->slots = sl__table_slots_new(t->mask + 1);
                t->stored = it.stored;
                t->nkeys = it.nkeys;
                for (int c = 0; c < schema->n; c++) t->nulls[c] = it.nulls[c];
                if (!read_body(&r, t, &it) || r.left != 0) bad = "corrupt (bad lengths)";
                else if (r.h != h.body_hash) bad = "corrupt (hash mismatch)";
            }
        }
    }
    fclose(f);
    free(buf);
    free(id);
    if (bad) {
        snprintf(why, why_size, "%s", bad);
        sl_table_free(t);
        return NULL;
    }
    return t;
}
