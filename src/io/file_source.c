/* file_source.c — the "file" source: reads CSV or JSON Lines from a file or
 * a directory of files (plain or .gz), one partition per file, and decodes
 * lines into batches. Bad lines go to the dead-letter output with their
 * file:line position and are not returned.
 *
 * It does not interpret the data beyond decoding (watermarks, canaries and
 * counting records in are the runtime's) and never holds more than one read
 * buffer per instance: the partition being read owns the shared buffer, and
 * the others keep only the unfinished line they stopped in (their carry).
 *
 * Invariants:
 * 1. A partition's `off` is the uncompressed offset, in its current file, of
 *    the first byte not yet decoded, which is always the start of a record;
 *    `line_no` is that record's line number. consume() keeps both.
 * 2. While partition i is active (s->act == i), buf[pos..len) holds its next
 *    bytes from `off` on and its carry is empty; otherwise its carry holds
 *    them. activate() and deactivate() move bytes between the two.
 * 3. A partition's files are the global files g with g % P == its global
 *    index, in discovery order (name order at configure time, then each
 *    rescan's new files in name order); rescan() keeps it.
 * 4. Lines are decoded in file order exactly once per pass; seek() only
 *    moves `off` forward by skipping, so a position taken by
 *    sl__file_source_position() resumes at the same record. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "io/decode.h"

enum { FMT_CSV = 0, FMT_JSONL = 1, FMT_BINARY = 2 };

typedef struct {
    char *path;
    int format;
    char *delimiter;
    bool header;
    char *pattern;
    bool follow;
    int64_t poll_ms;
    int64_t read_bytes;
    int64_t max_line;
    char *bin_widths;
    uint64_t used; /* projection pushdown (fs_project); ~0 = every column */
    /* derived by configure */
    char delim;
    bool is_dir;
    char **files; /* full paths, in name order */
    int nfiles;
} fs_conf;

const sl__conf_def sl__file_source_conf[] = {
    {.key = "path", .type = SL_CONF_STR, .def = NULL, .min = 1,
     .offset = offsetof(fs_conf, path),
     .desc = "File or directory to read. A directory's files are read in "
             "name order, one partition each; .gz files are decompressed."},
    {.key = "format", .type = SL_CONF_ENUM, .def = "csv",
     .allowed = "csv|jsonl|binary", .offset = offsetof(fs_conf, format),
     .desc = "Line format: CSV (RFC 4180) or JSON Lines (flat objects); or "
             "binary: fixed-width little-endian records, the columns in "
             "schema order (src/io/binrec.c)."},
    {.key = "delimiter", .type = SL_CONF_STR, .def = ",",
     .offset = offsetof(fs_conf, delimiter),
     .desc = "CSV field delimiter: one character, or \\t / tab."},
    {.key = "header", .type = SL_CONF_BOOL, .def = "true",
     .offset = offsetof(fs_conf, header),
     .desc = "CSV files start with a header naming the columns (a first "
             "line naming no schema column is read as data, by position)."},
    {.key = "pattern", .type = SL_CONF_STR, .def = NULL,
     .offset = offsetof(fs_conf, pattern),
     .desc = "Directory: read only files whose name matches this glob "
             "(e.g. *.csv). Hidden files are always skipped."},
    {.key = "follow", .type = SL_CONF_BOOL, .def = "false",
     .offset = offsetof(fs_conf, follow),
     .desc = "Unbounded input: wait at end of file for more data and rescan "
             "the directory for new files instead of ending."},
    {.key = "poll.ms", .type = SL_CONF_INT, .def = "1000", .min = 1,
     .max = 3600000, .offset = offsetof(fs_conf, poll_ms),
     .desc = "Follow mode: how often the directory is rescanned."},
    {.key = "read.bytes", .type = SL_CONF_INT, .def = "1048576",
     .min = 4096, .max = 1 << 30, .offset = offsetof(fs_conf, read_bytes),
     .desc = "Bytes read from a file at a time."},
    {.key = "max.line.bytes", .type = SL_CONF_INT, .def = "16777216",
     .min = 1024, .max = 1 << 30, .offset = offsetof(fs_conf, max_line),
     .desc = "Longer lines go to the dead-letter output as line_too_long."},
    {.key = "binary.widths", .type = SL_CONF_STR, .def = NULL,
     .offset = offsetof(fs_conf, bin_widths),
     .desc = "Format binary: bytes of STRING columns as col:bytes,... "
             "(others 16; NUL-padded on the right)."},
    {.key = NULL},
};

/* ---- listing ------------------------------------------------------------ */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_list(char **v, int n)
{
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

/* Regular, non-hidden files of dir matching pattern, as full paths sorted
 * by name. */
static int list_dir(const char *dir, const char *pattern, char ***out,
                    int *nout, char *err, size_t esz)
{
    *out = NULL; /* defined on every return, not only on success */
    *nout = 0;
    DIR *d = opendir(dir);
    if (d == NULL)
        return sl__err(err, esz, errno == ENOENT ? SL_ENOENT : SL_EIO,
                       "file: cannot open directory '%s': %s", dir,
                       strerror(errno));
    char **v = NULL;
    int n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        if (pattern != NULL && fnmatch(pattern, e->d_name, 0) != 0) continue;
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        char *full = sl__xmalloc(len);
        snprintf(full, len, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(full, &st) != 0 || !S_ISREG(st.st_mode)) {
            free(full);
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            v = sl__xrealloc(v, (size_t)cap * sizeof *v);
        }
        v[n++] = full;
    }
    closedir(d);
    if (n > 0) qsort(v, (size_t)n, sizeof *v, cmp_str);
    *out = v;
    *nout = n;
    return 0;
}

/* ---- configuration ------------------------------------------------------ */

static void fs_conf_free(void *cv)
{
    fs_conf *c = cv;
    if (c == NULL) return;
    free_list(c->files, c->nfiles);
    sl__conf_free(sl__file_source_conf, c);
    free(c);
}

static int fs_configure(void **out, const char *const *kv,
                        const sl_schema *schema, char *err, size_t esz)
{
    fs_conf *c = sl__xcalloc(1, sizeof *c);
    c->used = ~0ULL;
    int rc = sl__conf_apply(sl__file_source_conf, c, kv, "file source", NULL,
                            err, esz);
    if (rc != 0) {
        sl__conf_free(sl__file_source_conf, c);
        free(c);
        return rc;
    }
    const char *d = c->delimiter;
    if (strcmp(d, "\\t") == 0 || strcmp(d, "tab") == 0)
        c->delim = '\t';
    else if (strlen(d) == 1 && d[0] != '"' && d[0] != '\n' && d[0] != '\r')
        c->delim = d[0];
    else {
        rc = sl__err(err, esz, SL_EINVAL,
                     "file source: delimiter '%s' must be one character "
                     "other than a quote or newline (or \\t)", d);
        fs_conf_free(c);
        return rc;
    }
    if (c->format == FMT_BINARY) { /* check binary.widths against the schema */
        sl__bin_dec bd;
        rc = sl__bin_init(&bd, schema, c->bin_widths, err, esz);
        if (rc != 0) {
            fs_conf_free(c);
            return rc;
        }
        sl__bin_close(&bd);
    }
    struct stat st;
    if (stat(c->path, &st) != 0) {
        rc = sl__err(err, esz, errno == ENOENT ? SL_ENOENT : SL_EIO,
                     "file source: path '%s': %s", c->path, strerror(errno));
        fs_conf_free(c);
        return rc;
    }
    if (S_ISDIR(st.st_mode)) {
        c->is_dir = true;
        rc = list_dir(c->path, c->pattern, &c->files, &c->nfiles, err, esz);
        if (rc != 0) {
            fs_conf_free(c);
            return rc;
        }
    } else {
        c->files = sl__xmalloc(sizeof *c->files);
        c->files[0] = sl__xstrdup(c->path);
        c->nfiles = 1;
    }
    *out = c;
    return 0;
}

static int fs_partitions(const void *cv)
{
    const fs_conf *c = cv;
    return c->nfiles > 0 ? c->nfiles : 1;
}

/* ---- instances ---------------------------------------------------------- */

typedef struct {
    int *files; /* global file indices, in reading order */
    int nf, fcap;
    int cur;    /* index into files of the current file */
    int fd;
    gzFile gz;
    bool open;
    bool eof;        /* the current file returned end of file */
    bool final_tail; /* the bytes after the last newline are a last line */
    bool need_header, skipping, done;
    int64_t off;     /* see invariant 1 */
    int64_t line_no;
    int64_t skip_to; /* records starting before this offset are skipped */
    int64_t done_bytes; /* bytes of files[0..cur), for progress metrics */
    int64_t end_cache;  /* bytes the partition held at end_at (-1 unknown) */
    uint64_t end_at;
    char *carry;
    size_t carry_len, carry_cap;
    sl__csv_dec csv;
} fs_part;

typedef struct {
    const fs_conf *c;
    const sl_schema *schema;
    sl__ctx *ctx;
    char *source;  /* "file:<path>" */
    int np;
    fs_part *p;
    int P;         /* partitions at configure time */
    int *local;    /* P entries: global partition -> index in p, or -1 */
    char **files;  /* global file list, grows in follow mode */
    int nfiles, fcap;
    char **known;  /* the same names sorted, for rescans */
    int act;       /* active partition (invariant 2) or -1 */
    char *buf;
    size_t cap, len, pos;
    int rr;
    uint64_t last_scan;
    sl__json_dec json;
    sl__bin_dec bin;
    sl__csv_block blk; /* scratch of sl__csv_decode_block */
    bool blk_off;      /* decode line by line until this read returns */
    char *mask;
    size_t mask_cap;
    char reason[128];
} fs_src;

static void part_add_file(fs_part *p, int g)
{
    if (p->nf == p->fcap) {
        p->fcap = p->fcap ? p->fcap * 2 : 4;
        p->files = sl__xrealloc(p->files, (size_t)p->fcap * sizeof(int));
    }
    p->files[p->nf++] = g;
    p->done = false;
}

static void add_file(fs_src *s, const char *path)
{
    if (s->nfiles == s->fcap) {
        s->fcap = s->fcap ? s->fcap * 2 : 16;
        s->files = sl__xrealloc(s->files, (size_t)s->fcap * sizeof(char *));
        s->known = sl__xrealloc(s->known, (size_t)s->fcap * sizeof(char *));
    }
    int g = s->nfiles++;
    s->files[g] = sl__xstrdup(path);
    /* keep `known` sorted: insertion from the back */
    int k = g;
    while (k > 0 && strcmp(s->known[k - 1], s->files[g]) > 0) {
        s->known[k] = s->known[k - 1];
        k--;
    }
    s->known[k] = s->files[g];
    int li = s->local[g % s->P];
    if (li >= 0) part_add_file(&s->p[li], g);
}

static void close_file(fs_part *p)
{
    if (!p->open) return;
    if (p->gz != NULL) gzclose(p->gz);
    if (p->fd >= 0) close(p->fd);
    p->gz = NULL;
    p->fd = -1;
    p->open = false;
}

static void fs_close(void *st)
{
    fs_src *s = st;
    if (s == NULL) return;
    for (int i = 0; i < s->np; i++) {
        close_file(&s->p[i]);
        free(s->p[i].files);
        free(s->p[i].carry);
        sl__csv_close(&s->p[i].csv);
    }
    free(s->p);
    free(s->local);
    free_list(s->files, s->nfiles);
    free(s->known);
    free(s->buf);
    free(s->mask);
    free(s->source);
    sl__json_close(&s->json);
    sl__csv_block_free(&s->blk);
    sl__bin_close(&s->bin);
    free(s);
}

static int fs_open(void **out, const void *cv, const sl_schema *schema,
                   const int *parts, int nparts, sl__ctx *ctx, char *err,
                   size_t esz)
{
    const fs_conf *c = cv;
    fs_src *s = sl__xcalloc(1, sizeof *s);
    s->c = c;
    s->schema = schema;
    s->ctx = ctx;
    s->act = -1;
    s->P = fs_partitions(c);
    size_t sl = strlen(c->path) + 6;
    s->source = sl__xmalloc(sl);
    snprintf(s->source, sl, "file:%s", c->path);
    s->local = sl__xmalloc((size_t)s->P * sizeof(int));
    for (int i = 0; i < s->P; i++) s->local[i] = -1;
    s->np = nparts;
    s->p = sl__xcalloc(nparts > 0 ? (size_t)nparts : 1, sizeof *s->p);
    for (int i = 0; i < nparts; i++) {
        if (parts[i] < 0 || parts[i] >= s->P || s->local[parts[i]] >= 0) {
            int rc = sl__err(err, esz, SL_EINVAL,
                             "file source: bad partition %d (of %d)",
                             parts[i], s->P);
            fs_close(s);
            return rc;
        }
        s->local[parts[i]] = i;
        s->p[i].fd = -1;
        s->p[i].done = true; /* until a file is added */
        sl__csv_init(&s->p[i].csv, schema, c->delim);
        sl__csv_project(&s->p[i].csv, c->used);
    }
    for (int g = 0; g < c->nfiles; g++) add_file(s, c->files[g]);
    if (c->format == FMT_JSONL) {
        sl__json_init(&s->json, schema);
        sl__dec_types_project(&s->json.t, c->used);
    }
    if (c->format == FMT_BINARY) {
        int rc = sl__bin_init(&s->bin, schema, c->bin_widths, err, esz);
        if (rc != 0) {
            fs_close(s);
            return rc;
        }
        sl__bin_project(&s->bin, c->used);
    }
    s->cap = (size_t)c->read_bytes;
    s->buf = sl__xmalloc(s->cap);
    s->last_scan = sl__clock();
    *out = s;
    return 0;
}

/* Follow mode: picks up files that appeared since the last scan. Returns
 * the number added. */
static int rescan(fs_src *s)
{
    s->last_scan = sl__clock();
    if (!s->c->is_dir) return 0;
    char **v;
    int n;
    if (list_dir(s->c->path, s->c->pattern, &v, &n, NULL, 0) != 0) return 0;
    int added = 0;
    for (int i = 0; i < n; i++) {
        if (bsearch(&v[i], s->known, (size_t)s->nfiles, sizeof(char *),
                    cmp_str) != NULL)
            continue;
        add_file(s, v[i]);
        added++;
    }
    free_list(v, n);
    return added;
}

static bool is_gz(const char *path)
{
    size_t n = strlen(path);
    return n > 3 && strcmp(path + n - 3, ".gz") == 0;
}

static int open_file(fs_src *s, fs_part *p, char *err, size_t esz)
{
    const char *path = s->files[p->files[p->cur]];
    p->fd = -1;
    p->gz = NULL;
    if (is_gz(path)) {
        p->gz = gzopen(path, "rb");
        if (p->gz != NULL) gzbuffer(p->gz, 256 * 1024);
    } else {
        p->fd = open(path, O_RDONLY | O_CLOEXEC);
    }
    if (p->fd < 0 && p->gz == NULL)
        return sl__err(err, esz, errno == ENOENT ? SL_ENOENT : SL_EIO,
                       "file source: cannot open '%s': %s", path,
                       strerror(errno));
    p->open = true;
    p->eof = false;
    p->final_tail = false;
    p->skipping = false;
    p->off = 0;
    p->line_no = 1;
    p->carry_len = 0;
    p->need_header = s->c->format == FMT_CSV && s->c->header;
    sl__csv_set_positional(&p->csv);
    return 0;
}

/* Reads up to n bytes of the current file; 0 at end of file. */
static long read_file(fs_src *s, fs_part *p, char *dst, size_t n, char *err,
                      size_t esz)
{
    const char *path = s->files[p->files[p->cur]];
    if (p->gz != NULL) {
        if (p->eof) gzclearerr(p->gz); /* follow: the file may have grown */
        int r = gzread(p->gz, dst, (unsigned)n);
        int zerr = Z_OK;
        const char *msg = gzerror(p->gz, &zerr);
        if (r < 0 || (zerr != Z_OK && zerr != Z_BUF_ERROR))
            return sl__err(err, esz, SL_ECORRUPT,
                           "file source: '%s': gzip error: %s", path, msg);
        if (r == 0 && zerr == Z_BUF_ERROR && !s->c->follow)
            return sl__err(err, esz, SL_ECORRUPT,
                           "file source: '%s': truncated gzip file", path);
        return r;
    }
    for (;;) {
        ssize_t r = read(p->fd, dst, n);
        if (r >= 0) return (long)r;
        if (errno == EINTR) continue;
        return sl__err(err, esz, SL_EIO, "file source: read '%s': %s", path,
                       strerror(errno));
    }
}

/* Moves the unread bytes of the active partition into its carry. */
static void deactivate(fs_src *s)
{
    if (s->act < 0) return;
    fs_part *p = &s->p[s->act];
    size_t n = s->len - s->pos;
    if (n > p->carry_cap) {
        p->carry_cap = n;
        p->carry = sl__xrealloc(p->carry, n);
    }
    if (n > 0) memcpy(p->carry, s->buf + s->pos, n);
    p->carry_len = n;
    s->act = -1;
    s->len = s->pos = 0;
}

/* Makes partition i active and reads its next chunk. Returns 1 when there
 * are new bytes to decode (or a last line to finish), 0 when the partition
 * has nothing now (ended, or waiting in follow mode), or an error. */
static int activate(fs_src *s, int i, char *err, size_t esz)
{
    fs_part *p = &s->p[i];
    const fs_conf *c = s->c;
    s->act = i;
    s->pos = 0;
    s->len = 0;
    for (;;) {
        if (!p->open) {
            if (p->cur >= p->nf) {
                if (!c->follow) p->done = true;
                return 0;
            }
            int rc = open_file(s, p, err, esz);
            if (rc != 0) return rc;
        }
        size_t need = p->carry_len + (size_t)c->read_bytes;
        if (need > s->cap) {
            s->buf = sl__xrealloc(s->buf, need);
            s->cap = need;
        }
        if (p->carry_len > 0) memcpy(s->buf, p->carry, p->carry_len);
        s->len = p->carry_len;
        p->carry_len = 0;
        long n = read_file(s, p, s->buf + s->len, (size_t)c->read_bytes, err,
                           esz);
        if (n < 0) return (int)n;
        if (n > 0) {
            p->eof = false;
            s->len += (size_t)n;
            return 1;
        }
        p->eof = true;
        bool complete = !c->follow || p->cur + 1 < p->nf;
        if (s->len > 0) {
            if (!complete) return 0; /* a partial line: wait for the rest */
            p->final_tail = true;
            return 1;
        }
        if (!complete) return 0;
        close_file(p);
        p->done_bytes += p->off;
        p->cur++;
        p->off = p->skip_to = 0;
        p->line_no = 1;
    }
}

static void dead_letter(fs_src *s, fs_part *p, int64_t line_no,
                        const char *reason, const char *line, size_t n,
                        bool csv_mapping)
{
    if (n + 1 > s->mask_cap) {
        s->mask_cap = n + 1;
        s->mask = sl__xrealloc(s->mask, s->mask_cap);
    }
    size_t m;
    if (s->c->format == FMT_CSV && csv_mapping)
        m = sl__mask_payload(s->schema, p->csv.field_col, p->csv.nfield,
                             s->c->delim, line, n, s->mask);
    else
        m = sl__mask_payload(s->schema, NULL, 0, 0, line, n, s->mask);
    char pos[4200];
    snprintf(pos, sizeof pos, "%s:%lld", s->files[p->files[p->cur]],
             (long long)line_no);
    sl__dead_letter(s->ctx, s->source, pos, reason, s->mask, m);
}

static inline void consume(fs_src *s, fs_part *p, size_t next, int lines)
{
    p->off += (int64_t)(next - s->pos);
    p->line_no += lines;
    s->pos = next;
}

static size_t count_nl(const char *a, size_t n)
{
    size_t k = 0;
    const char *e = a + n;
    while ((a = memchr(a, '\n', (size_t)(e - a))) != NULL) {
        k++;
        a++;
    }
    return k;
}

/* Format binary: decodes the active partition's whole records, as
 * decode() does lines; `line_no` counts records (dead letters name the
 * record number) and trailing bytes shorter than a record at the end of a
 * file are one short_record. */
static void decode_binary(fs_src *s, fs_part *p, sl_batch *out, int *bad)
{
    const size_t R = s->bin.size;
    bool block_next = true; /* after a block, the record it stopped at */
    while (out->n < out->cap && s->pos < s->len) {
        size_t avail = s->len - s->pos, n = avail < R ? avail : R;
        if (block_next && avail >= R && p->off >= p->skip_to) {
            const size_t whole = avail / R;
            const uint32_t got = sl__bin_decode_block(
                &s->bin, s->buf + s->pos, whole > UINT32_MAX ? UINT32_MAX : (uint32_t)whole,
                out);
            consume(s, p, s->pos + got * R, (int)got);
            block_next = false;
            continue;
        }
        block_next = true;
        const char *rec = s->buf + s->pos;
        const char *why = NULL;
        if (avail < R) {
            if (!p->final_tail) break; /* the rest comes with the next read */
            why = "short_record";
        } else if (p->off >= p->skip_to &&
                   sl__bin_decode(&s->bin, rec, out, s->reason,
                                  sizeof s->reason) != 0) {
            why = s->reason;
        }
        if (why != NULL && p->off >= p->skip_to) {
            if (2 * n + 1 > s->mask_cap) {
                s->mask_cap = 2 * n + 1;
                s->mask = sl__xrealloc(s->mask, s->mask_cap);
            }
            size_t m = sl__bin_payload(&s->bin, rec, n, s->mask);
            char pos[4200];
            snprintf(pos, sizeof pos, "%s:%lld", s->files[p->files[p->cur]],
                     (long long)p->line_no);
            sl__dead_letter(s->ctx, s->source, pos, why, s->mask, m);
            ++*bad;
        }
        consume(s, p, s->pos + n, 1);
    }
    if (s->pos >= s->len) p->final_tail = false;
}

/* Decodes the active partition's complete lines into out until it is full
 * or only an incomplete line is left. *bad counts dead letters. */
static void decode(fs_src *s, sl_batch *out, int *bad)
{
    fs_part *p = &s->p[s->act];
    const fs_conf *c = s->c;
    if (c->format == FMT_BINARY) {
        decode_binary(s, p, out, bad);
        return;
    }
    const bool csv = c->format == FMT_CSV;
    char *buf = s->buf;
    bool block_next = true; /* after a block, the line it stopped at */
    while (out->n < out->cap && s->pos < s->len) {
        size_t start = s->pos, avail = s->len - start;
        if (p->skipping) { /* the rest of a line that was too long */
            char *nl = memchr(buf + start, '\n', avail);
            if (nl == NULL) {
                consume(s, p, s->len, 0);
                p->final_tail = false;
                break;
            }
            p->skipping = false;
            consume(s, p, (size_t)(nl - buf) + 1, 1);
            continue;
        }
        /* The common case, whole unquoted lines, goes a block at a time;
         * line 1 (byte order mark, header) and lines before a seek target
         * go line by line, as does every line the block stopped at. */
        if (csv && block_next && !s->blk_off && !p->need_header &&
            p->line_no > 1 && p->off >= p->skip_to) {
            size_t used;
            bool failed;
            uint32_t got = sl__csv_decode_block(&p->csv, &s->blk, buf + start,
                                                avail, out, &used, &failed);
            if (got > 0) consume(s, p, start + used, (int)got);
            s->blk_off = failed;
            block_next = false;
            continue;
        }
        block_next = true;
        char *nl = memchr(buf + start, '\n', avail);
        size_t end, next;
        if (nl != NULL) {
            end = (size_t)(nl - buf);
            next = end + 1;
        } else if (p->final_tail) {
            end = next = s->len;
        } else {
            if (avail > (size_t)c->max_line) {
                dead_letter(s, p, p->line_no, "line_too_long", buf + start,
                            avail < 1024 ? avail : 1024, false);
                ++*bad;
                p->skipping = true;
                consume(s, p, s->len, 0);
            }
            break;
        }
        int lines = nl != NULL ? 1 : 0;
        size_t lstart = start; /* after a byte order mark */
        if (p->line_no == 1 && end - start >= 3 &&
            memcmp(buf + start, "\xEF\xBB\xBF", 3) == 0)
            lstart += 3;
        const char *line = buf + lstart;
        size_t n = end - lstart;
        if (n > 0 && line[n - 1] == '\r') n--;
        if (n == 0) {
            consume(s, p, next, lines);
            if (nl == NULL) p->final_tail = false;
            continue;
        }
        if (p->need_header) {
            p->need_header = false;
            int rc = sl__csv_set_header(&p->csv, line, n);
            if (rc == SL_EPARSE) {
                dead_letter(s, p, p->line_no, "malformed_header", line, n,
                            false);
                ++*bad;
            }
            if (rc != 0) {
                consume(s, p, next, lines);
                continue;
            }
            /* no column named: a headerless file, this line is data */
        }
        if (p->off < p->skip_to) {
            /* Before a seek target: only count the lines. */
            consume(s, p, next, lines);
            continue;
        }
        int rc;
        if (csv) {
            bool extended = false;
            rc = sl__csv_decode(&p->csv, line, n, out, s->reason,
                                sizeof s->reason);
            while (rc == SL__DEC_MORE) { /* a quoted field spans lines */
                extended = true;
                char *nl2 = next < s->len
                                ? memchr(buf + next, '\n', s->len - next)
                                : NULL;
                if (nl2 != NULL) {
                    end = (size_t)(nl2 - buf);
                    next = end + 1;
                } else if (p->final_tail && next < s->len) {
                    end = next = s->len;
                } else if (p->final_tail) {
                    snprintf(s->reason, sizeof s->reason, "malformed_csv");
                    rc = SL_EPARSE;
                    break;
                } else {
                    if (s->len - start > (size_t)c->max_line) {
                        dead_letter(s, p, p->line_no, "line_too_long",
                                    buf + start, 1024, false);
                        ++*bad;
                        p->skipping = true;
                        consume(s, p, s->len, 0);
                    }
                    return; /* need more bytes: the record stays unread */
                }
                n = end - lstart;
                line = buf + lstart;
                if (n > 0 && line[n - 1] == '\r') n--;
                rc = sl__csv_decode(&p->csv, line, n, out, s->reason,
                                    sizeof s->reason);
            }
            if (extended) lines = (int)count_nl(buf + start, next - start);
        } else {
            rc = sl__json_decode(&s->json, line, n, out, s->reason,
                                 sizeof s->reason);
        }
        if (rc != 0) {
            dead_letter(s, p, p->line_no, s->reason, line, n, true);
            ++*bad;
        }
        consume(s, p, next, lines);
        if (next == s->len && p->final_tail && nl == NULL) p->final_tail = false;
    }
    if (s->pos >= s->len) p->final_tail = false;
}

static bool all_done(const fs_src *s)
{
    for (int i = 0; i < s->np; i++)
        if (!s->p[i].done) return false;
    return true;
}

static int fs_read(void *st, sl_batch *out, int *part, char *err, size_t esz)
{
    fs_src *s = st;
    const fs_conf *c = s->c;
    int idle = 0; /* partitions visited in a row without new bytes */
    *part = s->act >= 0 ? s->act : 0;
    s->blk_off = false;
    if (s->np == 0) return SL_EEOF;
    if (out->n >= out->cap) return 0;
    for (;;) {
        if (s->act < 0) {
            if (idle >= s->np) {
                if (!c->follow) return all_done(s) ? SL_EEOF : SL_EAGAIN;
                uint64_t poll = (uint64_t)c->poll_ms * 1000000u;
                if (sl__clock() - s->last_scan >= poll && rescan(s) > 0) {
                    idle = 0;
                    continue;
                }
                return SL_EAGAIN;
            }
            int i = s->rr;
            s->rr = (s->rr + 1) % s->np;
            if (s->p[i].done) {
                idle++;
                continue;
            }
            int rc = activate(s, i, err, esz);
            if (rc < 0) {
                deactivate(s);
                return rc;
            }
            if (rc == 0) {
                deactivate(s);
                idle++;
                continue;
            }
        }
        int a = s->act, bad = 0;
        uint32_t before = out->n;
        decode(s, out, &bad);
        *part = a;
        int got = (int)(out->n - before);
        if (out->n >= out->cap && s->pos < s->len) return got;
        deactivate(s);
        if (got > 0 || bad > 0 || out->n >= out->cap) return got;
        idle = 0;
    }
}

/* ---- checkpoint hooks --------------------------------------------------- */

int sl__file_source_position(void *st, int part, int64_t *offset)
{
    fs_src *s = st;
    if (s == NULL || part < 0 || part >= s->np) return SL_EINVAL;
    const fs_part *p = &s->p[part];
    int64_t off = p->off > p->skip_to ? p->off : p->skip_to;
    *offset = ((int64_t)p->cur << SL__FILE_POS_SHIFT) | off;
    return 0;
}

int sl__file_source_seek(void *st, int part, int64_t offset)
{
    fs_src *s = st;
    if (s == NULL || part < 0 || part >= s->np || offset < 0)
        return SL_EINVAL;
    fs_part *p = &s->p[part];
    int k = (int)(offset >> SL__FILE_POS_SHIFT);
    int64_t byte = offset & (((int64_t)1 << SL__FILE_POS_SHIFT) - 1);
    if (k >= p->nf && s->c->follow) rescan(s);
    if (k > p->nf || (k == p->nf && byte != 0)) return SL_EINVAL;
    if (s->act == part) {
        s->act = -1;
        s->len = s->pos = 0;
    }
    close_file(p);
    p->carry_len = 0;
    p->done_bytes = 0;
    for (int f = 0; f < k && f < p->nf; f++) {
        struct stat sb;
        if (stat(s->files[p->files[f]], &sb) == 0) p->done_bytes += sb.st_size;
    }
    p->end_at = 0;
    p->cur = k;
    p->off = 0;
    p->line_no = 1;
    p->skip_to = byte;
    p->skipping = false;
    p->final_tail = false;
    p->done = k >= p->nf && !s->c->follow;
    return 0;
}

/* Bytes consumed and held for metrics. The files' sizes are summed again
 * at most once a second (follow mode grows them); a compressed file makes
 * the end unknown, as its offsets count uncompressed bytes. */
static int fs_progress(void *st, int part, int64_t *offset, int64_t *end)
{
    fs_src *s = st;
    if (s == NULL || part < 0 || part >= s->np) return SL_EINVAL;
    fs_part *p = &s->p[part];
    *offset = p->done_bytes + (p->off > p->skip_to ? p->off : p->skip_to);
    uint64_t now = sl__clock_monotonic();
    if (!p->end_at || now - p->end_at >= 1000000000ULL) {
        int64_t sum = 0;
        for (int f = 0; f < p->nf && sum >= 0; f++) {
            struct stat sb;
            const char *path = s->files[p->files[f]];
            if (is_gz(path) || stat(path, &sb) != 0) sum = -1;
            else sum += sb.st_size;
        }
        p->end_cache = sum;
        p->end_at = now ? now : 1;
    }
    *end = p->end_cache >= 0 && p->end_cache < *offset ? *offset : p->end_cache;
    return 0;
}

static void fs_project(void *conf, uint64_t used) { ((fs_conf *)conf)->used = used; }

const sl__source_vt sl__src_file = {
    .name = "file",
    .configure = fs_configure,
    .partitions = fs_partitions,
    .open = fs_open,
    .read = fs_read,
    .close = fs_close,
    .conf_free = fs_conf_free,
    .position = sl__file_source_position,
    .seek = sl__file_source_seek,
    .progress = fs_progress,
    .project = fs_project,
};
