/* limage.c — when a lookup table may be read back from its binary image
 * (state/timage.c) instead of loaded from its source, as Flink restores
 * broadcast state from a checkpoint rather than re-reading the source.
 *
 * Only "file" tables kept in memory, with sl__state_conf.table_image_dir
 * set (checkpoint.dir given and table.images true), whose path is one
 * regular file, have an image: <dir>/<hash of path, key column and
 * connector>.img. Its identity text pins everything the built table
 * depends on: every connector option as given, the file's resolved path,
 * size, mtime and a hash of its whole content, the source and table
 * schemas, the key column, and for a pseudonymised table each key's id and
 * a verifier (the HMAC under that key of a fixed label: it changes with
 * the secret and reveals nothing of it; the secret itself never leaves the
 * keyring). Any difference, a torn or corrupt image or a new image version
 * means a load from the source, after which the image is written again.
 *
 * The log says which way each table came (component "table": "table image
 * used" or "table image ignored" with the reason, "table image written").
 * The identity holds no subscriber data: option values, paths, sizes,
 * hashes and key ids only. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ops/privacy.h"
#include "state/state.h"

#define VERIFY_LABEL "sluice/table-image/v1"

/* Appends printf output to a growing string. */
static void cat(char **s, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void cat(char **s, size_t *len, const char *fmt, ...)
{
    va_list ap, aq;
    va_start(ap, fmt);
    va_copy(aq, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n > 0) {
        *s = sl__xrealloc(*s, *len + (size_t)n + 1);
        vsnprintf(*s + *len, (size_t)n + 1, fmt, aq);
        *len += (size_t)n;
    }
    va_end(aq);
}

/* Hash of the whole file (0 and -1 on a read error). */
static int file_hash(const char *path, uint64_t *out)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
#ifdef POSIX_FADV_SEQUENTIAL
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
    size_t cap = 1u << 22;
    char *buf = sl__xmalloc(cap);
    uint64_t h = 0;
    int rc = 0;
    for (;;) {
        ssize_t n = read(fd, buf, cap);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) rc = -1;
        if (n <= 0) break;
        h = sl__timage_hash(buf, (size_t)n, h);
    }
    free(buf);
    close(fd);
    *out = h;
    return rc;
}

static void schema_text(char **s, size_t *len, const char *what, const sl_schema *sc)
{
    cat(s, len, "%s=", what);
    for (int c = 0; c < sc->n; c++)
        cat(s, len, "%s%s:%s:%d", c ? "," : "", sc->cols[c].name,
            sl_type_name(sc->cols[c].type), sc->cols[c].identifier ? 1 : 0);
    cat(s, len, "\n");
}

int sl__limg_prepare(sl__limg *li, const sl__state_conf *sc, const char *connector,
                     const char *const *conf, const sl_schema *schema, int kc,
                     const sl_schema *tschema, const sl_keyring *keys,
                     const int *kidx, sl__hmac *const *h, int nh)
{
    memset(li, 0, sizeof *li);
    if (!sc || sc->backend != SL__STATE_MEMORY || !sc->table_image_dir[0] ||
        strcmp(connector, "file") != 0)
        return 0;
    const char *path = sl__kv_get(conf, "path");
    struct stat st;
    char real[PATH_MAX];
    if (!path || stat(path, &st) != 0 || !S_ISREG(st.st_mode) ||
        !realpath(path, real))
        return 0; /* a directory of files, or unreadable: no image */
    uint64_t fh;
    if (file_hash(real, &fh) != 0) return 0;
    size_t len = 0;
    char *id = NULL;
    cat(&id, &len, "sluice table image\nconnector=%s\n", connector);
    /* the path as given is left out: the same file reached another way
     * (a relative path from another directory, a symlink) is the same
     * source, named below by its resolved path */
    for (size_t i = 0; conf && conf[i] && conf[i + 1]; i += 2)
        if (strcmp(conf[i], "path") != 0)
            cat(&id, &len, "conf.%s=%s\n", conf[i], conf[i + 1]);
    cat(&id, &len, "file=%s\nsize=%lld\nmtime=%lld.%09ld\ncontent=%016llx\n", real,
        (long long)st.st_size, (long long)st.st_mtim.tv_sec, (long)st.st_mtim.tv_nsec,
        (unsigned long long)fh);
    schema_text(&id, &len, "schema", schema);
    schema_text(&id, &len, "table", tschema);
    cat(&id, &len, "key=%s\n", schema->cols[kc].name);
    for (int i = 0; i < nh; i++) {
        uint64_t v = (uint64_t)sl__hmac_pseudo(h[i], VERIFY_LABEL, strlen(VERIFY_LABEL));
        cat(&id, &len, "pseudonym.key=%s verifier=%016llx\n",
            sl__keyring_key_id(keys, kidx[i]), (unsigned long long)v);
    }
    char nm[PATH_MAX + 256];
    snprintf(nm, sizeof nm, "%s\n%s\n%s", connector, real, schema->cols[kc].name);
    snprintf(li->path, sizeof li->path, "%s/%016llx.img", sc->table_image_dir,
             (unsigned long long)sl__hash_bytes(nm, strlen(nm), 0x696d67ULL));
    snprintf(li->dir, sizeof li->dir, "%s", sc->table_image_dir);
    snprintf(li->src, sizeof li->src, "%s", real);
    li->ident = id;
    return 1;
}

sl_table *sl__limg_open(sl__limg *li, const sl_schema *tschema, int kc)
{
    if (!li->ident) return NULL;
    char why[128] = "";
    int64_t t0 = sl__refresh_wall_ms();
    sl_table *t = sl__timage_read(li->path, li->ident, tschema, kc, why, sizeof why);
    if (t)
        sl__log(SL__LOG_INFO, "table", "table image used",
                "source=%s image=%s rows=%zu ms=%lld", li->src, li->path,
                sl_table_rows(t), (long long)(sl__refresh_wall_ms() - t0));
    else
        sl__log(SL__LOG_INFO, "table", "table image ignored", "source=%s image=%s why=\"%s\"",
                li->src, li->path, why);
    return t;
}

void sl__limg_save(sl__limg *li, const sl_table *t)
{
    if (!li->ident || !t) return;
    char err[512] = "";
    int64_t t0 = sl__refresh_wall_ms();
    int rc = sl__mkdirs(li->dir) ? SL_EIO
                                 : sl__timage_write(t, li->path, li->ident, err, sizeof err);
    if (rc)
        sl__log(SL__LOG_WARN, "table", "table image not written", "source=%s error=\"%s\"",
                li->src, err[0] ? err : li->dir);
    else
        sl__log(SL__LOG_INFO, "table", "table image written", "source=%s image=%s ms=%lld",
                li->src, li->path, (long long)(sl__refresh_wall_ms() - t0));
}

void sl__limg_close(sl__limg *li)
{
    free(li->ident);
    li->ident = NULL;
}
