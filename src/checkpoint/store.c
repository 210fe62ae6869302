/* store.c — the checkpoint store on a local directory.
 *
 * A checkpoint is a directory chk-N (savepoints: sp-N) holding one snapshot
 * file per task and a MANIFEST written last. It does not store anything on
 * its own initiative: the runtime (core/exec.c) decides when.
 *
 * Invariants:
 * 1. A checkpoint counts only if its MANIFEST exists and checks out: the
 *    manifest is written to a temporary name, fsynced, renamed and its
 *    directory fsynced (sl__manifest_write), after every snapshot file it
 *    lists was fsynced (sl__snapfile_close).
 * 2. Every byte is covered by a checksum: each section has a CRC-32, each
 *    file's Adler-32 and size are in the manifest (not a CRC: a CRC over
 *    data that embeds its own CRCs degenerates to a constant), the manifest ends with the
 *    CRC-32 of its own text (sl__snapfile_read, sl__manifest_read).
 * 3. A corrupt or partial newest checkpoint is skipped in favour of the
 *    previous valid one, and said so (sl__ck_find_latest).
 *
 * File format (little-endian): "SLSNAP01", u32 format version; sections
 * {u32 'SECT', u8 kind, u32 id, i32 key group, u64 length, bytes, u32 CRC of
 * kind..bytes}; trailer {u32 'END!', u64 section count}.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "core/store.h"

#define SEC_MAGIC 0x54434553u /* "SECT" */
#define END_MAGIC 0x21444e45u /* "END!" */

struct sl__snapfile {
    FILE *f;
    char *path;
    uLong crc;
    uint64_t size, nsec;
    bool failed;
    int kind;
    uint32_t id;
};

static void le32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t rd32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
    return v;
}
static uint64_t rd64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void sf_write(sl__snapfile *f, const void *p, size_t n)
{
    if (f->failed) return;
    if (n && fwrite(p, 1, n, f->f) != n) f->failed = true;
    f->crc = adler32(f->crc, p, (uInt)n);
    f->size += n;
}

sl__snapfile *sl__snapfile_create(const char *path, char *err, size_t errsz)
{
    FILE *fp = fopen(path, "wb");
    if (!fp) {
        sl__err(err, errsz, SL_EIO, "checkpoint: cannot create %s: %s", path,
                strerror(errno));
        return NULL;
    }
    sl__snapfile *f = sl__xcalloc(1, sizeof *f);
    f->f = fp;
    f->path = sl__xstrdup(path);
    f->crc = adler32(0, NULL, 0);
    unsigned char h[12];
    memcpy(h, "SLSNAP01", 8);
    le32(h + 8, SL__CK_FORMAT);
    sf_write(f, h, sizeof h);
    return f;
}

int sl__snapfile_section(sl__snapfile *f, int kind, uint32_t id, int32_t kg,
                         const void *data, size_t len)
{
    unsigned char h[21];
    le32(h, SEC_MAGIC);
    h[4] = (unsigned char)kind;
    le32(h + 5, id);
    le32(h + 9, (uint32_t)kg);
    le64(h + 13, len);
    uLong c = crc32(0, h + 4, 17);
    c = crc32(c, data, (uInt)len);
    unsigned char t[4];
    le32(t, (uint32_t)c);
    sf_write(f, h, sizeof h);
    sf_write(f, data, len);
    sf_write(f, t, 4);
    f->nsec++;
    return f->failed ? SL_EIO : 0;
}

static int writer_put(sl__snap_writer *w, int32_t kg, const void *data, size_t len)
{
    sl__snapfile *f = w->impl;
    return sl__snapfile_section(f, f->kind, f->id, kg, data, len);
}

void sl__snapfile_writer(sl__snapfile *f, int kind, uint32_t id, sl__snap_writer *w)
{
    f->kind = kind;
    f->id = id;
    w->put = writer_put;
    w->impl = f;
    w->ck_dir = w->ck_root = NULL; /* the runtime sets them for operators */
    w->op_id = id;
}

int sl__snapfile_close(sl__snapfile *f, uint64_t *size, uint32_t *crc, char *err,
                       size_t errsz)
{
    unsigned char t[12];
    le32(t, END_MAGIC);
    le64(t + 4, f->nsec);
    sf_write(f, t, sizeof t);
    bool ok = !f->failed && fflush(f->f) == 0 && fsync(fileno(f->f)) == 0;
    int e = errno;
    ok = (fclose(f->f) == 0) && ok;
    int rc = 0;
    if (!ok) {
        rc = sl__err(err, errsz, SL_EIO, "checkpoint: cannot write %s: %s", f->path,
                     strerror(e ? e : EIO));
        unlink(f->path);
    }
    if (size) *size = f->size;
    if (crc) *crc = (uint32_t)f->crc;
    free(f->path);
    free(f);
    return rc;
}

void sl__snapfile_abort(sl__snapfile *f)
{
    if (!f) return;
    fclose(f->f);
    unlink(f->path);
    free(f->path);
    free(f);
}

static int read_all(const char *path, unsigned char **out, size_t *len, char *err,
                    size_t errsz)
{
    *out = NULL; /* defined on every return, not only on success */
    *len = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return sl__err(err, errsz, SL_ENOENT, "cannot open %s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    unsigned char *b = sl__xmalloc(cap);
    for (;;) {
        if (n == cap) b = sl__xrealloc(b, cap *= 2);
        size_t k = fread(b + n, 1, cap - n, fp);
        n += k;
        if (k == 0) break;
    }
    bool bad = ferror(fp);
    fclose(fp);
    if (bad) {
        free(b);
        return sl__err(err, errsz, SL_EIO, "cannot read %s", path);
    }
    *out = b;
    *len = n;
    return 0;
}

int sl__snapfile_read(const char *path, sl__section_fn fn, void *ud, char *err,
                      size_t errsz)
{
    unsigned char *b;
    size_t n;
    int rc = read_all(path, &b, &n, err, errsz);
    if (rc) return rc;
    size_t off = 12;
    uint64_t nsec = 0;
    if (n < 12 || memcmp(b, "SLSNAP01", 8) != 0) {
        rc = sl__err(err, errsz, SL_ECORRUPT, "%s: not a sluice snapshot", path);
        goto out;
    }
    if (rd32(b + 8) != SL__CK_FORMAT) {
        rc = sl__err(err, errsz, SL_ECORRUPT, "%s: snapshot format %u, this sluice reads %d",
                     path, rd32(b + 8), SL__CK_FORMAT);
        goto out;
    }
    for (;;) {
        if (n - off < 4) break;
        uint32_t magic = rd32(b + off);
        if (magic == END_MAGIC) {
            if (n - off != 12 || rd64(b + off + 4) != nsec) break;
            rc = 0;
            goto out;
        }
        if (magic != SEC_MAGIC || n - off < 21) break;
        int kind = b[off + 4];
        uint32_t id = rd32(b + off + 5);
        int32_t kg = (int32_t)rd32(b + off + 9);
        uint64_t len = rd64(b + off + 13);
        if (len > n - off - 21 || n - off - 21 - len < 4) break;
        uLong c = crc32(0, b + off + 4, 17);
        c = crc32(c, b + off + 21, (uInt)len);
        if ((uint32_t)c != rd32(b + off + 21 + len)) break;
        if ((rc = fn(ud, kind, id, kg, b + off + 21, (size_t)len))) {
            if (err && !err[0]) sl__err(err, errsz, rc, "%s: restoring a section failed", path);
            goto out;
        }
        off += 21 + len + 4;
        nsec++;
    }
    rc = sl__err(err, errsz, SL_ECORRUPT, "%s: corrupt or truncated at byte %zu", path, off);
out:
    free(b);
    return rc;
}

/* ---- manifests ----------------------------------------------------------- */
void sl__manifest_free(sl__manifest *m)
{
    free(m->files);
    free(m->ops);
    memset(m, 0, sizeof *m);
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int sl__manifest_write(const char *dir, const sl__manifest *m, char *err, size_t errsz)
{
    char *text = NULL;
    size_t tlen = 0;
    FILE *mem = open_memstream(&text, &tlen);
    fprintf(mem, "sluice-checkpoint %d\nepoch %" PRIu64 "\nsavepoint %d\ncreated_ms %" PRId64
            "\nkey_groups %d\n", SL__CK_FORMAT, m->epoch, m->savepoint ? 1 : 0,
            m->created_ms, m->key_groups);
    for (int i = 0; i < m->nfiles; i++)
        fprintf(mem, "file %s %d %d %" PRIu64 " %08x\n", m->files[i].name,
                m->files[i].stage, m->files[i].task, m->files[i].size, m->files[i].crc);
    for (int i = 0; i < m->nops; i++)
        fprintf(mem, "op %u %u %s %s\n", m->ops[i].id, m->ops[i].version,
                m->ops[i].name, m->ops[i].fingerprint);
    for (int i = 0; i < m->ncounters; i++)
        fprintf(mem, "counter %d %" PRIu64 "\n", i, m->counters[i]);
    fclose(mem);
    uint32_t c = (uint32_t)crc32(0, (const Bytef *)text, (uInt)tlen);
    char tmp[4096], fin[4096];
    snprintf(tmp, sizeof tmp, "%s/MANIFEST.tmp", dir);
    snprintf(fin, sizeof fin, "%s/MANIFEST", dir);
    FILE *f = fopen(tmp, "wb");
    int rc = 0;
    if (!f) {
        rc = sl__err(err, errsz, SL_EIO, "checkpoint: cannot create %s: %s", tmp, strerror(errno));
    } else {
        bool ok = fwrite(text, 1, tlen, f) == tlen && fprintf(f, "checksum %08x\n", c) > 0 &&
                  fflush(f) == 0 && fsync(fileno(f)) == 0;
        int e = errno;
        ok = fclose(f) == 0 && ok;
        if (!ok || rename(tmp, fin) != 0 || fsync_dir(dir) != 0) {
            rc = sl__err(err, errsz, SL_EIO, "checkpoint: cannot write %s: %s", fin,
                         strerror(e ? e : errno));
            unlink(tmp);
        }
    }
    free(text);
    return rc;
}

int sl__manifest_read(const char *dir, sl__manifest *m, bool verify_files, char *err,
                      size_t errsz)
{
    memset(m, 0, sizeof *m);
    char path[4096];
    snprintf(path, sizeof path, "%s/MANIFEST", dir);
    unsigned char *b;
    size_t n;
    int rc = read_all(path, &b, &n, err, errsz);
    if (rc) return rc;
    /* the last line is "checksum XXXXXXXX" over everything before it */
    size_t body = n;
    while (body > 0 && b[body - 1] == '\n') body--;
    while (body > 0 && b[body - 1] != '\n') body--;
    unsigned want;
    if (body == 0 || sscanf((char *)b + body, "checksum %8x", &want) != 1 ||
        (uint32_t)crc32(0, b, (uInt)body) != want) {
        free(b);
        return sl__err(err, errsz, SL_ECORRUPT, "%s: checksum mismatch or truncated", path);
    }
    char *text = sl__xstrndup((char *)b, body);
    free(b);
    int fmt = -1;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (sscanf(line, "sluice-checkpoint %d", &fmt) == 1) continue;
        if (sscanf(line, "epoch %" SCNu64, &m->epoch) == 1) continue;
        int sp;
        if (sscanf(line, "savepoint %d", &sp) == 1) { m->savepoint = sp; continue; }
        if (sscanf(line, "created_ms %" SCNd64, &m->created_ms) == 1) continue;
        if (sscanf(line, "key_groups %d", &m->key_groups) == 1) continue;
        if (!strncmp(line, "file ", 5)) {
            m->files = sl__xrealloc(m->files, sizeof(sl__ck_file) * (size_t)(m->nfiles + 1));
            sl__ck_file *f = &m->files[m->nfiles];
            if (sscanf(line, "file %63s %d %d %" SCNu64 " %x", f->name, &f->stage, &f->task,
                       &f->size, &f->crc) != 5)
                goto bad;
            m->nfiles++;
            continue;
        }
        if (!strncmp(line, "op ", 3)) {
            m->ops = sl__xrealloc(m->ops, sizeof(sl__ck_op) * (size_t)(m->nops + 1));
            sl__ck_op *o = &m->ops[m->nops];
            int pos = 0;
            if (sscanf(line, "op %u %u %31s %n", &o->id, &o->version, o->name, &pos) != 3)
                goto bad;
            snprintf(o->fingerprint, sizeof o->fingerprint, "%s", line + pos);
            m->nops++;
            continue;
        }
        int ci;
        uint64_t cv;
        if (sscanf(line, "counter %d %" SCNu64, &ci, &cv) == 2 && ci >= 0 && ci < 16) {
            m->counters[ci] = cv;
            if (ci + 1 > m->ncounters) m->ncounters = ci + 1;
            continue;
        }
        goto bad;
    }
    free(text);
    if (fmt != SL__CK_FORMAT) {
        sl__manifest_free(m);
        return sl__err(err, errsz, SL_ECORRUPT, "%s: format %d, this sluice reads %d", path,
                       fmt, SL__CK_FORMAT);
    }
    for (int i = 0; verify_files && i < m->nfiles; i++) {
        char fp[4096];
        snprintf(fp, sizeof fp, "%s/%s", dir, m->files[i].name);
        unsigned char *d;
        size_t dn;
        if (read_all(fp, &d, &dn, err, errsz)) {
            sl__manifest_free(m);
            return SL_ECORRUPT;
        }
        bool ok = dn == m->files[i].size &&
                  (uint32_t)adler32(adler32(0, NULL, 0), d, (uInt)dn) == m->files[i].crc;
        free(d);
        if (!ok) {
            sl__manifest_free(m);
            return sl__err(err, errsz, SL_ECORRUPT, "%s: size or checksum differs from the "
                           "manifest", fp);
        }
    }
    return 0;
bad:
    free(text);
    sl__manifest_free(m);
    return sl__err(err, errsz, SL_ECORRUPT, "%s: malformed line", path);
}

/* ---- the directory ------------------------------------------------------- */
typedef struct {
    uint64_t n;
    bool sp;
    char name[64];
} ck_ent;

static int ent_cmp_desc(const void *a, const void *b)
{
    const ck_ent *x = a, *y = b;
    return x->n < y->n ? 1 : x->n > y->n ? -1 : 0;
}

static int list_ck(const char *root, ck_ent **out)
{
    DIR *d = opendir(root);
    *out = NULL;
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        uint64_t v;
        char tail;
        bool sp = false;
        if (sscanf(e->d_name, "chk-%" SCNu64 "%c", &v, &tail) == 1) sp = false;
        else if (sscanf(e->d_name, "sp-%" SCNu64 "%c", &v, &tail) == 1) sp = true;
        else continue;
        *out = sl__xrealloc(*out, sizeof(ck_ent) * (size_t)(n + 1));
        (*out)[n].n = v;
        (*out)[n].sp = sp;
        snprintf((*out)[n].name, sizeof (*out)[n].name, "%s", e->d_name);
        n++;
    }
    closedir(d);
    if (n > 1) qsort(*out, (size_t)n, sizeof(ck_ent), ent_cmp_desc);
    return n;
}

uint64_t sl__ck_max_epoch(const char *root)
{
    ck_ent *e;
    int n = list_ck(root, &e);
    uint64_t m = n ? e[0].n : 0;
    free(e);
    return m;
}

int sl__ck_find_latest(const char *root, sl__manifest *m, char *dir_out, size_t dir_size,
                       void (*warn)(void *, const char *), void *ud, char *err,
                       size_t errsz)
{
    (void)err, (void)errsz;
    ck_ent *e;
    int n = list_ck(root, &e);
    int found = 0;
    for (int i = 0; i < n && !found; i++) {
        char dir[4096], why[512] = "", msg[1024];
        snprintf(dir, sizeof dir, "%s/%s", root, e[i].name);
        char mf[4200];
        snprintf(mf, sizeof mf, "%s/MANIFEST", dir);
        if (access(mf, F_OK) != 0) continue; /* incomplete: never finished */
        if (sl__manifest_read(dir, m, true, why, sizeof why) == 0) {
            snprintf(dir_out, dir_size, "%s", dir);
            found = 1;
        } else if (warn) {
            snprintf(msg, sizeof msg, "checkpoint %s is corrupt (%s); falling back to an "
                     "older one", dir, why);
            warn(ud, msg);
        }
    }
    free(e);
    return found;
}

int sl__rmtree(const char *path)
{
    DIR *d = opendir(path);
    if (!d) return unlink(path) == 0 || errno == ENOENT ? 0 : SL_EIO;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) sl__rmtree(p);
        else unlink(p);
    }
    closedir(d);
    return rmdir(path) == 0 ? 0 : SL_EIO;
}

int sl__ck_retain(const char *root, int keep, uint64_t keep_epoch)
{
    ck_ent *e;
    int n = list_ck(root, &e);
    int complete = 0;
    for (int i = 0; i < n; i++) {
        if (e[i].sp) continue;
        char dir[4096], mf[4200];
        snprintf(dir, sizeof dir, "%s/%s", root, e[i].name);
        snprintf(mf, sizeof mf, "%s/MANIFEST", dir);
        bool done = access(mf, F_OK) == 0;
        if (e[i].n == keep_epoch) { complete++; continue; }
        if (done && complete < keep) { complete++; continue; }
        if (!done && e[i].n > keep_epoch) continue; /* may be in flight */
        sl__rmtree(dir);
    }
    free(e);
    sl__ck_incr_gc(root); /* shared files no retained checkpoint lists */
    return 0;
}
