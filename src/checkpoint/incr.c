/* incr.c — the files of incremental RocksDB checkpoints in the checkpoint
 * store: a window task's RocksDB checkpoint (a directory of hard-linked SST
 * files plus MANIFEST, CURRENT and OPTIONS, made by sl__ks_checkpoint) is
 * moved into checkpoint directory chk-N/rdb-<task>/, its SST files into
 * <checkpoint.dir>/shared/ under a name unique to the RocksDB instance that
 * wrote them. An SST file already there (same name and size: SST files
 * never change once written) is shared, not copied again, so a checkpoint
 * costs the bytes written since the previous one. What it does not do:
 * decide when to checkpoint (ckpt.c) or what the files hold (winstore.c).
 *
 * Invariants:
 * 1. Every shared file a complete checkpoint lists exists, whole: files are
 *    linked or copied to a temporary name, fsynced, renamed, and the list
 *    rdb-*\/FILES is written and fsynced after them (sl__ck_incr_put), all
 *    before the task acknowledges, so before the manifest.
 * 2. A shared file is deleted only when no checkpoint directory under the
 *    root lists it (sl__ck_incr_gc), recomputed from the lists themselves,
 *    never from a counter that a crash could leave out of step; orphans of
 *    a checkpoint that failed or was killed are collected the same way.
 * 3. A shared name never names two contents: it is the writer instance's
 *    identity (new at every open) and the SST file's name, which RocksDB
 *    never reuses within an instance (files inherited from a restored
 *    checkpoint keep their shared names: sl__ck_inherit).
 *
 * FILES: "sluice-rdb 1", then "sst NAME SHARED SIZE NEW" and "file NAME
 * SIZE" lines; its CRC-32 is in the task's snapshot section, which the
 * manifest covers.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/store.h"

static int fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* Copies src to dst through dst.tmp (fsynced, renamed). */
static int copy_file(const char *src, const char *dst)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", dst);
    int in = open(src, O_RDONLY);
    if (in < 0) return -1;
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out < 0) {
        close(in);
        return -1;
    }
    char buf[1 << 16];
    ssize_t n;
    int rc = 0;
    while ((n = read(in, buf, sizeof buf)) > 0) {
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w <= 0) {
                rc = -1;
                break;
            }
            off += w;
        }
        if (rc) break;
    }
    if (n < 0) rc = -1;
    if (rc == 0 && fsync(out) != 0) rc = -1;
    int e = errno;
    if (close(out) != 0) rc = -1;
    close(in);
    if (rc == 0 && rename(tmp, dst) != 0) rc = -1;
    if (rc) {
        unlink(tmp);
        errno = e ? e : EIO;
    }
    return rc;
}

/* A hard link if src and dst share a file system, else a copy. */
static int link_or_copy(const char *src, const char *dst)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", dst);
    unlink(tmp);
    if (link(src, tmp) == 0) {
        if (rename(tmp, dst) == 0) return 0;
        unlink(tmp);
        return -1;
    }
    if (errno != EXDEV && errno != EPERM && errno != EMLINK) return -1;
    return copy_file(src, dst);
}

static bool is_sst(const char *name)
{
    size_t n = strlen(name);
    return n > 4 && strcmp(name + n - 4, ".sst") == 0;
}

static const char *inherited(const sl__ck_inherit *inh, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(inh[i].name, name) == 0) return inh[i].shared;
    return NULL;
}

/* Writes text as rdb/FILES, durably (file and directory synced); *crc is the
 * CRC of text, which the manifest records. */
static int write_files(const char *rdb, const char *text, size_t tlen, uint32_t *crc,
                       char *err, size_t errsz)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/FILES", rdb);
    FILE *f = fopen(path, "wb");
    bool ok = f && fwrite(text, 1, tlen, f) == tlen && fflush(f) == 0 &&
              fsync(fileno(f)) == 0;
    int e = errno;
    if (f && fclose(f) != 0) ok = false;
    if (ok && fsync_path(rdb) != 0) ok = false;
    *crc = (uint32_t)crc32(0, (const Bytef *)text, (uInt)tlen);
    if (!ok)
        return sl__err(err, errsz, SL_EIO, "checkpoint: cannot write %s: %s", path,
                       strerror(e ? e : EIO));
    return 0;
}

int sl__ck_incr_put(const char *cut, const char *root, const char *rdb, const char *id,
                    const sl__ck_inherit *inh, size_t ninh, uint64_t *new_bytes,
                    uint64_t *total_bytes, uint32_t *files_crc, char *err, size_t errsz)
{
    char shared[4200], src[4200], dst[4400];
    snprintf(shared, sizeof shared, "%s/shared", root);
    *new_bytes = *total_bytes = 0;
    if (sl__mkdirs(shared) || sl__mkdirs(rdb))
        return sl__err(err, errsz, SL_EIO, "checkpoint: cannot create %s: %s", rdb,
                       strerror(errno));
    char *text = NULL;
    size_t tlen = 0;
    FILE *mem = open_memstream(&text, &tlen);
    if (!mem) return sl__err(err, errsz, SL_ENOMEM, "checkpoint: out of memory");
    DIR *d = opendir(cut);
    if (!d) {
        fclose(mem);
        free(text);
        return sl__err(err, errsz, SL_EIO, "checkpoint: %s: %s", cut, strerror(errno));
    }
    fprintf(mem, "sluice-rdb 1\n");
    struct dirent *e;
    int rc = 0;
    bool any_new_sst = false;
    while (rc == 0 && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        struct stat st;
        snprintf(src, sizeof src, "%s/%s", cut, e->d_name);
        if (stat(src, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        uint64_t size = (uint64_t)st.st_size;
        *total_bytes += size;
        if (!is_sst(e->d_name)) {
            snprintf(dst, sizeof dst, "%s/%s", rdb, e->d_name);
            if (copy_file(src, dst) != 0)
                rc = sl__err(err, errsz, SL_EIO, "checkpoint: cannot write %s: %s", dst,
                             strerror(errno));
            *new_bytes += size;
            fprintf(mem, "file %s %" PRIu64 "\n", e->d_name, size);
            continue;
        }
        char sname[160];
        const char *in = inherited(inh, ninh, e->d_name);
        if (in) snprintf(sname, sizeof sname, "%s", in);
        else snprintf(sname, sizeof sname, "%s-%s", id, e->d_name);
        snprintf(dst, sizeof dst, "%s/%s", shared, sname);
        struct stat sh;
        bool fresh = !(stat(dst, &sh) == 0 && (uint64_t)sh.st_size == size);
        if (fresh) {
            if (link_or_copy(src, dst) != 0) {
                rc = sl__err(err, errsz, SL_EIO, "checkpoint: cannot write %s: %s", dst,
                             strerror(errno));
                break;
            }
            *new_bytes += size;
            any_new_sst = true;
        }
        fprintf(mem, "sst %s %s %" PRIu64 " %d\n", e->d_name, sname, size, fresh ? 1 : 0);
    }
    closedir(d);
    fclose(mem);
    sl__crash_point("incremental-cut");
    if (rc == 0 && any_new_sst && fsync_path(shared) != 0)
        rc = sl__err(err, errsz, SL_EIO, "checkpoint: cannot sync %s: %s", shared,
                     strerror(errno));
    if (rc == 0) rc = write_files(rdb, text, tlen, files_crc, err, errsz);
    free(text);
    return rc;
}

/* Calls fn for each line of rdb/FILES; checks its CRC when want_crc. */
typedef int (*files_fn)(void *ud, bool sst, const char *name, const char *shared,
                        uint64_t size, bool fresh);

static int read_files(const char *rdb, bool check, uint32_t want_crc, files_fn fn,
                      void *ud, char *err, size_t errsz)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/FILES", rdb);
    FILE *f = fopen(path, "rb");
    if (!f) return sl__err(err, errsz, SL_ENOENT, "cannot open %s: %s", path, strerror(errno));
    char *text = NULL;
    size_t cap = 0, len = 0;
    char buf[4096];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, f)) > 0) {
        if (len + k + 1 > cap) text = sl__xrealloc(text, cap = (len + k + 1) * 2);
        memcpy(text + len, buf, k);
        len += k;
    }
    fclose(f);
    if (!text) text = sl__xcalloc(1, 1);
    text[len] = 0;
    if (check && (uint32_t)crc32(0, (const Bytef *)text, (uInt)len) != want_crc) {
        free(text);
        return sl__err(err, errsz, SL_ECORRUPT, "%s: checksum differs from the snapshot's",
                       path);
    }
    int rc = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line && rc == 0;
         line = strtok_r(NULL, "\n", &save)) {
        char name[128], sname[160];
        uint64_t size;
        int fresh;
        if (!strncmp(line, "sluice-rdb ", 11)) continue;
        if (sscanf(line, "sst %127s %159s %" SCNu64 " %d", name, sname, &size, &fresh) == 4)
            rc = fn(ud, true, name, sname, size, fresh != 0);
        else if (sscanf(line, "file %127s %" SCNu64, name, &size) == 2)
            rc = fn(ud, false, name, NULL, size, true);
        else
            rc = sl__err(err, errsz, SL_ECORRUPT, "%s: malformed line", path);
    }
    free(text);
    return rc;
}

typedef struct {
    const char *rdb, *dest;
    char shared[4200];
    sl__ck_inherit *inh;
    size_t ninh;
    char *err;
    size_t errsz;
} rebuild_ctx;

static int rebuild_one(void *ud, bool sst, const char *name, const char *sname,
                       uint64_t size, bool fresh)
{
    (void)fresh;
    rebuild_ctx *c = ud;
    char src[4400], dst[4400];
    if (sst) snprintf(src, sizeof src, "%s/%s", c->shared, sname);
    else snprintf(src, sizeof src, "%s/%s", c->rdb, name);
    snprintf(dst, sizeof dst, "%s/%s", c->dest, name);
    struct stat st;
    if (stat(src, &st) != 0 || (uint64_t)st.st_size != size)
        return sl__err(c->err, c->errsz, SL_ECORRUPT, "incremental checkpoint: %s is %s",
                       src, errno == ENOENT ? "missing" : "not the size its list says");
    /* SST files are never written again: a link is safe; the MANIFEST is
     * appended to once the instance opens, so it is copied */
    if ((sst ? link_or_copy(src, dst) : copy_file(src, dst)) != 0)
        return sl__err(c->err, c->errsz, SL_EIO, "cannot create %s: %s", dst,
                       strerror(errno));
    if (sst) {
        c->inh = sl__xrealloc(c->inh, (c->ninh + 1) * sizeof *c->inh);
        snprintf(c->inh[c->ninh].name, sizeof c->inh[c->ninh].name, "%s", name);
        snprintf(c->inh[c->ninh].shared, sizeof c->inh[c->ninh].shared, "%s", sname);
        c->ninh++;
    }
    return 0;
}

int sl__ck_incr_rebuild(const char *rdb, uint32_t files_crc, const char *dest,
                        sl__ck_inherit **inh, size_t *ninh, char *err, size_t errsz)
{
    rebuild_ctx c = {.rdb = rdb, .dest = dest, .err = err, .errsz = errsz};
    /* rdb is <root>/chk-N/rdb-X: the shared files are in <root>/shared */
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", rdb);
    for (int up = 0; up < 2; up++) {
        char *s = strrchr(tmp, '/');
        if (!s) return sl__err(err, errsz, SL_ECORRUPT, "%s: not in a checkpoint", rdb);
        *s = 0;
    }
    snprintf(c.shared, sizeof c.shared, "%s/shared", tmp[0] ? tmp : "/");
    if (sl__mkdirs(dest))
        return sl__err(err, errsz, SL_EIO, "cannot create %s: %s", dest, strerror(errno));
    int rc = read_files(rdb, true, files_crc, rebuild_one, &c, err, errsz);
    if (rc) {
        free(c.inh);
        return rc;
    }
    if (inh) *inh = c.inh;
    else free(c.inh);
    if (ninh) *ninh = c.ninh;
    return 0;
}

/* ---- reference counting by listing ----------------------------------------- */
typedef struct {
    char **names;
    size_t n, cap;
    uint64_t new_bytes, total;
} name_set;

static int collect(void *ud, bool sst, const char *name, const char *sname,
                   uint64_t size, bool fresh)
{
    (void)name;
    name_set *s = ud;
    s->total += size;
    if (fresh) s->new_bytes += size;
    if (!sst) return 0;
    if (s->n == s->cap) s->names = sl__xrealloc(s->names, (s->cap = s->cap ? 2 * s->cap : 64) *
                                                              sizeof *s->names);
    s->names[s->n++] = sl__xstrdup(sname);
    return 0;
}

/* Adds what every rdb-* directory of ck lists to s. */
static void collect_ck(const char *ck, name_set *s)
{
    DIR *d = opendir(ck);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "rdb-", 4) != 0) continue;
        char rdb[4400], why[256];
        snprintf(rdb, sizeof rdb, "%s/%s", ck, e->d_name);
        (void)read_files(rdb, false, 0, collect, s, why, sizeof why);
    }
    closedir(d);
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Shared files written outside a checkpoint (a chain's compaction in
 * winchg.c): names retention leaves alone, with or without ".tmp". */
static pthread_mutex_t held_lock = PTHREAD_MUTEX_INITIALIZER;
static char **held;
static size_t nheld, capheld;

void sl__ck_shared_hold(const char *name)
{
    pthread_mutex_lock(&held_lock);
    if (nheld == capheld)
        held = sl__xrealloc(held, (capheld = capheld ? 2 * capheld : 8) * sizeof *held);
    held[nheld++] = sl__xstrdup(name);
    pthread_mutex_unlock(&held_lock);
}

void sl__ck_shared_release(const char *name)
{
    pthread_mutex_lock(&held_lock);
    for (size_t i = 0; i < nheld; i++)
        if (strcmp(held[i], name) == 0) {
            free(held[i]);
            held[i] = held[--nheld];
            break;
        }
    if (nheld == 0) { /* nothing left: no leak at exit */
        free(held);
        held = NULL;
        capheld = 0;
    }
    pthread_mutex_unlock(&held_lock);
}

static bool is_held(const char *name)
{
    size_t n = strlen(name);
    if (n > 4 && strcmp(name + n - 4, ".tmp") == 0) n -= 4;
    bool yes = false;
    pthread_mutex_lock(&held_lock);
    for (size_t i = 0; i < nheld && !yes; i++)
        yes = strlen(held[i]) == n && strncmp(held[i], name, n) == 0;
    pthread_mutex_unlock(&held_lock);
    return yes;
}

int sl__ck_incr_gc(const char *root)
{
    char shared[4200];
    snprintf(shared, sizeof shared, "%s/shared", root);
    DIR *sd = opendir(shared);
    if (!sd) return 0; /* no incremental checkpoint yet */
    name_set s = {0};
    DIR *d = opendir(root);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        uint64_t v;
        char tail;
        if (sscanf(e->d_name, "chk-%" SCNu64 "%c", &v, &tail) != 1 &&
            sscanf(e->d_name, "sp-%" SCNu64 "%c", &v, &tail) != 1)
            continue;
        char ck[4400];
        snprintf(ck, sizeof ck, "%s/%s", root, e->d_name);
        collect_ck(ck, &s);
    }
    if (d) closedir(d);
    if (s.n > 1) qsort(s.names, s.n, sizeof *s.names, str_cmp);
    int removed = 0;
    while ((e = readdir(sd))) {
        if (e->d_name[0] == '.') continue;
        const char *key = e->d_name;
        if (s.n && bsearch(&key, s.names, s.n, sizeof *s.names, str_cmp)) continue;
        if (is_held(e->d_name)) continue;
        char p[4400];
        snprintf(p, sizeof p, "%s/%s", shared, e->d_name);
        if (unlink(p) == 0) removed++;
    }
    closedir(sd);
    for (size_t i = 0; i < s.n; i++) free(s.names[i]);
    free(s.names);
    return removed;
}

void sl__ck_incr_sizes(const char *ck, uint64_t *new_bytes, uint64_t *total)
{
    name_set s = {0};
    collect_ck(ck, &s);
    for (size_t i = 0; i < s.n; i++) free(s.names[i]);
    free(s.names);
    *new_bytes = s.new_bytes;
    *total = s.total;
}

/* ---- shared files of other state (winchg.c) --------------------------------- */
int sl__ck_shared_publish(const char *root, const char *name, char *err, size_t errsz)
{
    char tmp[4400], dst[4400], shared[4200];
    snprintf(shared, sizeof shared, "%s/shared", root);
    snprintf(tmp, sizeof tmp, "%s/%s.tmp", shared, name);
    snprintf(dst, sizeof dst, "%s/%s", shared, name);
    if (rename(tmp, dst) != 0 || fsync_path(shared) != 0) {
        int e = errno;
        unlink(tmp);
        return sl__err(err, errsz, SL_EIO, "checkpoint: cannot publish %s: %s", dst,
                       strerror(e));
    }
    return 0;
}

int sl__ck_shared_list(const char *rdb, const sl__ck_shared *f, size_t n, uint32_t *crc,
                       char *err, size_t errsz)
{
    if (sl__mkdirs(rdb))
        return sl__err(err, errsz, SL_EIO, "checkpoint: cannot create %s: %s", rdb,
                       strerror(errno));
    char *text = NULL;
    size_t tlen = 0;
    FILE *mem = open_memstream(&text, &tlen);
    if (!mem) return sl__err(err, errsz, SL_ENOMEM, "checkpoint: out of memory");
    fprintf(mem, "sluice-rdb 1\n");
    for (size_t i = 0; i < n; i++)
        fprintf(mem, "sst %s %s %" PRIu64 " %d\n", f[i].name, f[i].name, f[i].size,
                f[i].fresh ? 1 : 0);
    fclose(mem);
    int rc = write_files(rdb, text, tlen, crc, err, errsz);
    free(text);
    return rc;
}
