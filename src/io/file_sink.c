/* file_sink.c — the "file" sink (CSV or JSON Lines into one file) and the
 * "stdout" sink (CSV, JSON Lines or an aligned human-readable table on
 * standard output). Both run as a single task (max_parallelism 1) and share
 * the encoders of encode.c; they do not read files, and they skip canaries.
 *
 * The file sink is exactly-once as a "recoverable writer" (Flink's file
 * sink): rows go to "<path>.inprogress", each precommit makes what was
 * written durable and records its length in the checkpoint, a restart
 * truncates the file back to the length of the checkpoint it restarts from
 * (the rows after it are replayed), and <path> appears, complete, when the
 * job's input has ended and its last epoch is committed. A reader never
 * sees <path> before that; until then an older <path> stays as it was.
 * Under at-least-once and at-most-once the file behaves the same, except
 * that close() publishes without waiting for a commit.
 *
 * The stdout sink is at-least-once only (exactly_once = false): rows it
 * printed cannot be taken back, so after a restart the rows replayed since
 * the last checkpoint are printed again. precommit and commit flush.
 *
 * Invariants of the file sink, and the function that keeps each:
 * 1. Rows go only to "<path>.inprogress"; <path> itself is never opened for
 *    writing (file_open). file_open keeps an existing .inprogress as it is:
 *    the first call decides whether it is continued (fs_restore) or
 *    started afresh, truncated to nothing (fs_begin).
 * 2. flush() hands everything written so far to the operating system
 *    (fflush), so a crash loses at most what came after the last flush;
 *    the rows are still in the .inprogress file only.
 * 3. Once precommit(n) returns, the first `committed_len` bytes of the file
 *    are durable (fsync) and are exactly the output of epochs <= n
 *    (fs_precommit); snapshot() records that length, the epoch and the
 *    format (fs_snapshot). Under the other guarantees the runtime flushes
 *    instead of precommitting, and snapshot() measures and syncs itself.
 * 4. A restart from checkpoint n resumes from exactly the bytes of epochs
 *    <= n: restore cuts the file to the recorded length, and refuses
 *    (SL_ECORRUPT) a file that is missing or shorter (fs_restore); recover
 *    checks the epoch matches the restored one, and under exactly-once
 *    refuses to go on without restored state unless n = 0, the runtime's
 *    fresh start (fs_recover).
 * 5. close() publishes: unless a call failed or the job failed or was
 *    cancelled (sl_job_error), and under exactly-once only when every byte
 *    of the file belongs to a committed epoch, it fsyncs the file, renames
 *    it to <path> (atomic on POSIX, replacing an older <path>) and fsyncs
 *    the directory (fs_close / finish_file). Otherwise the .inprogress
 *    file stays for inspection or recovery and <path> is left untouched,
 *    as Flink's file sink leaves unfinished part files.
 * 6. A restart after the rename (the crash hit between the final commit and
 *    the end of the job) finds no .inprogress but a <path> of the recorded
 *    length: the output is already published, and the sink accepts no
 *    more rows (fs_restore, fs_write).
 *
 * The table format cannot know the widths of rows it has not seen: columns
 * start as wide as their names and grow when a batch holds a wider value,
 * and the header is printed again whenever they grow. Cells wider than
 * TABLE_MAX_WIDTH are cut and end with "…". */
#include <fcntl.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/runtime.h"
#include "io/encode.h"

enum { FMT_CSV = 0, FMT_JSONL = 1, FMT_TABLE = 2 }; /* = "allowed" index */
#define TABLE_MAX_WIDTH 60
#define BUF_MIN (64 * 1024)

typedef struct {
    char *path; /* file sink only */
    int format;
    bool header;
    char *delimiter;
    char sep; /* derived from delimiter */
} fs_conf;

static const sl__conf_def file_defs[] = {
    {.key = "path", .type = SL_CONF_STR, .min = 1,
     .offset = offsetof(fs_conf, path),
     .desc = "output file; written as <path>.inprogress and renamed at the "
             "end"},
    {.key = "format", .type = SL_CONF_ENUM, .def = "csv",
     .allowed = "csv|jsonl", .offset = offsetof(fs_conf, format),
     .desc = "csv (RFC 4180) or jsonl (one JSON object per line)"},
    {.key = "header", .type = SL_CONF_BOOL, .def = "true",
     .offset = offsetof(fs_conf, header),
     .desc = "CSV: write the column names as the first record"},
    {.key = "delimiter", .type = SL_CONF_STR, .def = ",",
     .offset = offsetof(fs_conf, delimiter),
     .desc = "CSV: field separator, one character or \\t"},
    {.key = NULL},
};

static const sl__conf_def stdout_defs[] = {
    {.key = "format", .type = SL_CONF_ENUM, .def = "table",
     .allowed = "csv|jsonl|table", .offset = offsetof(fs_conf, format),
     .desc = "csv, jsonl, or table (aligned columns, ISO-8601 times)"},
    {.key = "header", .type = SL_CONF_BOOL, .def = "true",
     .offset = offsetof(fs_conf, header),
     .desc = "CSV: write the column names as the first record"},
    {.key = "delimiter", .type = SL_CONF_STR, .def = ",",
     .offset = offsetof(fs_conf, delimiter),
     .desc = "CSV: field separator, one character or \\t"},
    {.key = NULL},
};

typedef struct {
    const fs_conf *conf;
    const sl_schema *schema;
    sl_job *job; /* NULL in unit tests */
    FILE *f;
    char *tmp;  /* "<path>.inprogress"; NULL for stdout */
    int failed; /* 0, or the SL_E* code of the first error */
    char *buf;  /* encoded output not yet handed to f */
    size_t len, cap;
    /* table format */
    char *cell;
    size_t cellcap;
    size_t width[SL_MAX_COLS];
    bool header_done; /* table: printed once; CSV: written to the file */
    /* file sink: the epoch protocol */
    bool eo;
    bool created;   /* file_open found no .inprogress and created it */
    bool started;   /* fs_begin or fs_restore decided the file's start */
    bool published; /* invariant 6 */
    bool have_epoch; /* a precommit or recover happened */
    uint64_t precommitted, committed, restored_epoch;
    bool restored;
    int64_t committed_len; /* invariant 3 */
    char why[768]; /* why restore failed: it has no errstr of its own */
} fs_sink;

/* ---- configuration ------------------------------------------------------- */
static void fs_conf_free_with(const sl__conf_def *defs, void *conf)
{
    if (!conf)
        return;
    sl__conf_free(defs, conf);
    free(conf);
}
static void file_conf_free(void *conf) { fs_conf_free_with(file_defs, conf); }
static void stdout_conf_free(void *conf)
{
    fs_conf_free_with(stdout_defs, conf);
}

static int parse_sep(const char *d, const char *component, char *sep,
                     char *errstr, size_t errstr_size)
{
    unsigned char c = (unsigned char)d[0];
    if (!strcmp(d, "\\t") || !strcasecmp(d, "tab") || !strcmp(d, "\t")) {
        *sep = '\t';
        return 0;
    }
    /* Numbers are written unquoted, so the separator must not occur in
     * one; quotes and line ends belong to the CSV syntax itself. */
    if (strlen(d) == 1 && c >= 0x20 && c < 0x7F &&
        !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
          (c >= 'A' && c <= 'Z')) &&
        !strchr("\".-+", c)) {
        *sep = (char)c;
        return 0;
    }
    return sl__err(errstr, errstr_size, SL_EINVAL,
                   "%s: 'delimiter' must be one character other than a "
                   "letter, digit, '\"', '.', '-' or '+' (or \\t), got '%s'",
                   component, d);
}

static int configure_with(const sl__conf_def *defs, const char *component,
                          void **conf, const char *const *kv,
                          char *errstr, size_t errstr_size)
{
    fs_conf *c = sl__xcalloc(1, sizeof *c);
    int rc = sl__conf_apply(defs, c, kv, component, NULL, errstr,
                            errstr_size);
    if (rc == 0)
        rc = parse_sep(c->delimiter, component, &c->sep, errstr,
                       errstr_size);
    if (rc == 0 && c->path && !c->path[0])
        rc = sl__err(errstr, errstr_size, SL_EINVAL,
                     "%s: 'path' must not be empty", component);
    if (rc) {
        fs_conf_free_with(defs, c);
        return rc;
    }
    *conf = c;
    return 0;
}

static int file_configure(void **conf, const char *const *kv,
                          const sl_schema *in, char *errstr,
                          size_t errstr_size)
{
    (void)in;
    return configure_with(file_defs, "file sink", conf, kv, errstr,
                          errstr_size);
}

static int stdout_configure(void **conf, const char *const *kv,
                            const sl_schema *in, char *errstr,
                            size_t errstr_size)
{
    (void)in;
    return configure_with(stdout_defs, "stdout sink", conf, kv, errstr,
                          errstr_size);
}

/* ---- output buffer ------------------------------------------------------- */
static const char *where(const fs_sink *s)
{
    return s->tmp ? s->tmp : "standard output";
}

static int io_fail(fs_sink *s, const char *what, char *errstr,
                   size_t errstr_size)
{
    int rc = sl__err(errstr, errstr_size, SL_EIO, "%s %s: %s", what,
                     where(s), strerror(errno));
    s->failed = rc;
    return rc;
}

static int drain(fs_sink *s, char *errstr, size_t errstr_size)
{
    if (s->len && fwrite(s->buf, 1, s->len, s->f) != s->len)
        return io_fail(s, "writing", errstr, errstr_size);
    s->len = 0;
    return 0;
}

/* Makes room for n more bytes in buf: drains it, and grows it only for a
 * single piece larger than the whole buffer (one huge row). */
static int reserve(fs_sink *s, size_t n, char *errstr, size_t errstr_size)
{
    if (n <= s->cap - s->len)
        return 0;
    int rc = drain(s, errstr, errstr_size);
    if (rc)
        return rc;
    if (n > s->cap) {
        while (s->cap < n)
            s->cap *= 2;
        s->buf = sl__xrealloc(s->buf, s->cap);
    }
    return 0;
}

static int put(fs_sink *s, const char *p, size_t n, char *errstr,
               size_t errstr_size)
{
    int rc = reserve(s, n, errstr, errstr_size);
    if (rc)
        return rc;
    memcpy(s->buf + s->len, p, n);
    s->len += n;
    return 0;
}

static int put_pad(fs_sink *s, char c, size_t n, char *errstr,
                   size_t errstr_size)
{
    int rc = reserve(s, n, errstr, errstr_size);
    if (rc)
        return rc;
    memset(s->buf + s->len, c, n);
    s->len += n;
    return 0;
}

/* ---- CSV and JSON Lines -------------------------------------------------- */
static size_t encode_row(const fs_sink *s, const sl_batch *b, uint32_t r,
                         char *buf, size_t cap)
{
    if (s->conf->format == FMT_JSONL)
        return sl__encode_jsonl_row(b, r, buf, cap);
    return sl__encode_csv_row(b, r, s->conf->sep, buf, cap);
}

static int write_rows(fs_sink *s, const sl_batch *b, char *errstr,
                      size_t errstr_size)
{
    for (uint32_t r = 0; r < b->n; r++) {
        if (b->kind[r] != SL_KIND_DATA)
            continue; /* canaries are recorded apart (issue "canaries") */
        size_t need = encode_row(s, b, r, s->buf + s->len, s->cap - s->len);
        if (need > s->cap - s->len) {
            int rc = reserve(s, need, errstr, errstr_size);
            if (rc)
                return rc;
            need = encode_row(s, b, r, s->buf + s->len, s->cap - s->len);
            SL_ASSERT(need <= s->cap - s->len);
        }
        s->len += need;
    }
    return 0;
}

static int write_csv_header(fs_sink *s, char *errstr, size_t errstr_size)
{
    size_t need = sl__encode_csv_header(s->schema, s->conf->sep, NULL, 0);
    int rc = reserve(s, need, errstr, errstr_size);
    if (rc)
        return rc;
    sl__encode_csv_header(s->schema, s->conf->sep, s->buf + s->len, need);
    s->len += need;
    s->header_done = true;
    return 0;
}

/* ---- table --------------------------------------------------------------- */
static bool right_aligned(sl_type t)
{
    return t == SL_INT64 || t == SL_FLOAT64;
}

/* Renders a cell into s->cell; returns its length, and its display width,
 * cut to TABLE_MAX_WIDTH (the cut text then ends with "…"). */
static size_t table_cell(fs_sink *s, const sl_batch *b, uint32_t r, int c,
                         size_t *width)
{
    /* 4 spare bytes for the ellipsis that may replace the cut tail */
    size_t n = sl__encode_text_cell(b, r, c, s->cell, s->cellcap - 4);
    if (n > s->cellcap - 4) {
        while (s->cellcap - 4 < n)
            s->cellcap *= 2;
        s->cell = sl__xrealloc(s->cell, s->cellcap);
        n = sl__encode_text_cell(b, r, c, s->cell, s->cellcap - 4);
    }
    size_t w = sl__utf8_width(s->cell, n);
    if (w <= TABLE_MAX_WIDTH) {
        *width = w;
        return n;
    }
    /* Keep TABLE_MAX_WIDTH - 1 code points, then the ellipsis. */
    size_t cps = 0, i = 0;
    for (; i < n; i++) {
        if (((unsigned char)s->cell[i] & 0xC0) != 0x80 &&
            cps++ == TABLE_MAX_WIDTH - 1)
            break;
    }
    memcpy(s->cell + i, "\xe2\x80\xa6", 3);
    *width = TABLE_MAX_WIDTH;
    return i + 3;
}

static int table_line(fs_sink *s, int c, const char *text, size_t len,
                      size_t w, bool right, char *errstr, size_t errstr_size)
{
    int last = c == s->schema->n - 1;
    size_t pad = s->width[c] > w ? s->width[c] - w : 0;
    int rc = 0;
    if (c)
        rc = put(s, " | ", 3, errstr, errstr_size);
    if (!rc && right)
        rc = put_pad(s, ' ', pad, errstr, errstr_size);
    if (!rc)
        rc = put(s, text, len, errstr, errstr_size);
    if (!rc && !right && !last)
        rc = put_pad(s, ' ', pad, errstr, errstr_size);
    if (!rc && last)
        rc = put(s, "\n", 1, errstr, errstr_size);
    return rc;
}

static int table_header(fs_sink *s, char *errstr, size_t errstr_size)
{
    const sl_schema *sc = s->schema;
    int rc = 0;
    for (int c = 0; c < sc->n && !rc; c++) {
        const char *name = sc->cols[c].name;
        size_t len = strlen(name);
        rc = table_line(s, c, name, len, sl__utf8_width(name, len),
                        right_aligned(sc->cols[c].type), errstr,
                        errstr_size);
    }
    for (int c = 0; c < sc->n && !rc; c++) {
        if (c)
            rc = put(s, "-+-", 3, errstr, errstr_size);
        if (!rc)
            rc = put_pad(s, '-', s->width[c], errstr, errstr_size);
    }
    if (!rc && sc->n)
        rc = put(s, "\n", 1, errstr, errstr_size);
    s->header_done = true;
    return rc;
}

static int write_table(fs_sink *s, const sl_batch *b, char *errstr,
                       size_t errstr_size)
{
    const sl_schema *sc = s->schema;
    bool grew = false;
    size_t w;
    int rc = 0;
    /* Pass 1: widths, so the header (again, if they grew) comes first. */
    for (uint32_t r = 0; r < b->n; r++) {
        if (b->kind[r] != SL_KIND_DATA)
            continue;
        for (int c = 0; c < sc->n; c++) {
            table_cell(s, b, r, c, &w);
            if (w > s->width[c]) {
                s->width[c] = w;
                grew = true;
            }
        }
    }
    if (!s->header_done || grew)
        rc = table_header(s, errstr, errstr_size);
    for (uint32_t r = 0; r < b->n && !rc; r++) {
        if (b->kind[r] != SL_KIND_DATA)
            continue;
        for (int c = 0; c < sc->n && !rc; c++) {
            size_t len = table_cell(s, b, r, c, &w);
            rc = table_line(s, c, s->cell, len, w,
                            right_aligned(sc->cols[c].type), errstr,
                            errstr_size);
        }
    }
    return rc;
}

/* ---- the instance -------------------------------------------------------- */
static void fs_close(void *st);

static fs_sink *fs_new(const fs_conf *c, const sl_schema *in)
{
    fs_sink *s = sl__xcalloc(1, sizeof *s);
    s->conf = c;
    s->schema = in;
    s->cap = BUF_MIN;
    s->buf = sl__xmalloc(s->cap);
    if (c->format == FMT_TABLE) {
        s->cellcap = 256;
        s->cell = sl__xmalloc(s->cellcap);
        for (int i = 0; i < in->n; i++)
            s->width[i] = sl__utf8_width(in->cols[i].name,
                                         strlen(in->cols[i].name));
    }
    return s;
}

static int fs_start(fs_sink *s, char *errstr, size_t errstr_size)
{
    if (s->conf->format == FMT_CSV && s->conf->header)
        return write_csv_header(s, errstr, errstr_size);
    return 0;
}

static int stopped(const fs_sink *s, char *errstr, size_t errstr_size)
{
    if (s->why[0])
        return sl__err(errstr, errstr_size, s->failed, "%s", s->why);
    return sl__err(errstr, errstr_size, s->failed,
                   "%s: stopped after an earlier error", where(s));
}

/* Invariant 1: the first call that is not restore() starts a new file. */
static int fs_begin(fs_sink *s, char *errstr, size_t errstr_size)
{
    if (s->started)
        return 0;
    s->started = true;
    if (!s->tmp)
        return 0;
    if (ftruncate(fileno(s->f), 0) != 0 || fseeko(s->f, 0, SEEK_SET) != 0)
        return io_fail(s, "truncating", errstr, errstr_size);
    return fs_start(s, errstr, errstr_size);
}

static int file_open(void **st, const void *conf, const sl_schema *in,
                     sl__ctx *ctx, char *errstr, size_t errstr_size)
{
    const fs_conf *c = conf;
    fs_sink *s = fs_new(c, in);
    s->job = ctx ? ctx->job : NULL;
    s->eo = ctx && ctx->delivery == SL__EXACTLY_ONCE;
    size_t n = strlen(c->path) + sizeof ".inprogress";
    s->tmp = sl__xmalloc(n);
    snprintf(s->tmp, n, "%s.inprogress", c->path);
    int rc = sl__mkdir_parents(c->path, errstr, errstr_size);
    if (!rc) {
        /* Invariant 1: keep an existing file for restore(); creating a
         * missing one now still reports an unwritable directory at open. */
        int fd = open(s->tmp, O_RDWR | O_CREAT | O_EXCL, 0666);
        if (fd >= 0)
            s->created = true;
        else if (errno == EEXIST)
            fd = open(s->tmp, O_RDWR);
        if (fd < 0 || !(s->f = fdopen(fd, "r+"))) {
            rc = io_fail(s, "cannot create", errstr, errstr_size);
            if (fd >= 0)
                close(fd);
        }
    }
    if (rc) {
        char tmp[1024];
        if (errstr && errstr_size) { /* open errors get no runtime prefix */
            snprintf(tmp, sizeof tmp, "file sink: %s", errstr);
            snprintf(errstr, errstr_size, "%s", tmp);
        }
        s->failed = rc;
        fs_close(s);
        return rc;
    }
    *st = s;
    return 0;
}

static int stdout_open(void **st, const void *conf, const sl_schema *in,
                       sl__ctx *ctx, char *errstr, size_t errstr_size)
{
    (void)ctx;
    fs_sink *s = fs_new(conf, in);
    s->f = stdout;
    s->started = true;
    int rc = fs_start(s, errstr, errstr_size);
    if (rc) {
        fs_close(s);
        return rc;
    }
    *st = s;
    return 0;
}

static int fs_write(void *st, const sl_batch *b, char *errstr,
                    size_t errstr_size)
{
    fs_sink *s = st;
    int rc;
    if (s->failed)
        return stopped(s, errstr, errstr_size);
    SL_ASSERT(b->schema->n == s->schema->n);
    if (s->published) { /* invariant 6 */
        for (uint32_t r = 0; r < b->n; r++)
            if (b->kind[r] == SL_KIND_DATA)
                return s->failed = sl__err(
                           errstr, errstr_size, SL_ECORRUPT,
                           "%s was already published complete by an "
                           "earlier run, but the restarted job produces "
                           "more rows for it", s->conf->path);
        return 0;
    }
    if ((rc = fs_begin(s, errstr, errstr_size)))
        return rc;
    if (s->conf->format == FMT_TABLE)
        rc = write_table(s, b, errstr, errstr_size);
    else
        rc = write_rows(s, b, errstr, errstr_size);
    if (!rc)
        rc = drain(s, errstr, errstr_size);
    return rc;
}

static int fs_flush(void *st, char *errstr, size_t errstr_size)
{
    fs_sink *s = st;
    if (s->failed)
        return stopped(s, errstr, errstr_size);
    if (s->published)
        return 0;
    int rc = fs_begin(s, errstr, errstr_size);
    if (!rc)
        rc = drain(s, errstr, errstr_size);
    if (!rc && fflush(s->f) != 0)
        rc = io_fail(s, "flushing", errstr, errstr_size);
    return rc;
}

/* ---- the file sink's epochs ---------------------------------------------- */
/* Invariant 3, in every delivery mode: the length in the snapshot must be
 * on disk, or a restart after a power loss would find the file short. */
static int fs_precommit(void *st, uint64_t epoch, char *errstr,
                        size_t errstr_size)
{
    fs_sink *s = st;
    if (s->failed)
        return stopped(s, errstr, errstr_size);
    if (s->eo && s->have_epoch && epoch <= s->precommitted)
        return sl__err(errstr, errstr_size, SL_ESTATE,
                       "%s: precommit(%llu) does not follow the last "
                       "precommitted epoch %llu", s->tmp,
                       (unsigned long long)epoch,
                       (unsigned long long)s->precommitted);
    s->precommitted = epoch;
    s->have_epoch = true;
    if (s->published)
        return 0;
    int rc = fs_flush(s, errstr, errstr_size);
    if (!rc && fsync(fileno(s->f)) != 0)
        rc = io_fail(s, "syncing", errstr, errstr_size);
    off_t len = rc ? -1 : ftello(s->f);
    if (!rc && len < 0)
        rc = io_fail(s, "reading the length of", errstr, errstr_size);
    if (!rc)
        s->committed_len = (int64_t)len;
    return rc;
}

static int fs_commit(void *st, uint64_t epoch, char *errstr,
                     size_t errstr_size)
{
    fs_sink *s = st;
    if (s->failed)
        return stopped(s, errstr, errstr_size);
    if (!s->eo)
        return fs_flush(s, errstr, errstr_size);
    if (!s->have_epoch || epoch > s->precommitted)
        return sl__err(errstr, errstr_size, SL_ESTATE,
                       "%s: commit(%llu) comes before its precommit", s->tmp,
                       (unsigned long long)epoch);
    /* Nothing to do until close (invariant 5): the file is published
     * once, whole, when the last epoch is committed. */
    if (epoch > s->committed)
        s->committed = epoch;
    return 0;
}

enum { SNAP_VERSION = 1 };

/* Invariant 3: epoch, committed length, and what shaped the bytes (format,
 * separator, whether the CSV header is in the file). Under exactly-once
 * the snapshot follows precommit(n), which measured the length; the other
 * guarantees flush instead of precommitting, so it is measured here. */
static int fs_snapshot(void *st, sl__snap_writer *w)
{
    fs_sink *s = st;
    sl__buf b = {0};
    char err[512];
    if (s->failed)
        return s->failed;
    if (s->eo && !s->have_epoch)
        return SL_ESTATE;
    if (!s->eo && !s->published) {
        int rc = fs_precommit(s, s->precommitted, err, sizeof err);
        if (rc) {
            sl__log(SL__LOG_ERROR, "sink", err, "connector=file step=snapshot");
            return rc;
        }
    }
    sl__buf_put_u32(&b, SNAP_VERSION);
    sl__buf_put_u64(&b, s->precommitted);
    sl__buf_put_i64(&b, s->committed_len);
    sl__buf_put_u32(&b, (uint32_t)s->conf->format);
    sl__buf_put_u32(&b, (uint32_t)(unsigned char)s->conf->sep);
    sl__buf_put_u32(&b, s->header_done);
    int rc = sl__snap_put(w, -1, b.p, b.len);
    sl__buf_free(&b);
    return rc;
}

static int restore_fail(fs_sink *s, int code, char *errstr,
                        size_t errstr_size, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int restore_fail(fs_sink *s, int code, char *errstr,
                        size_t errstr_size, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    s->failed = sl__err(errstr, errstr_size, code,
                        "file sink: cannot resume %s from the checkpoint: "
                        "%s", s->conf->path, msg);
    snprintf(s->why, sizeof s->why, "%s", errstr);
    return s->failed;
}

/* Invariants 4 and 6. restore() has no errstr: the reason goes to the log
 * and comes back from the next call (recover). */
static int fs_restore_msg(fs_sink *s, const void *data, size_t len,
                          char *errstr, size_t errstr_size)
{
    sl__rbuf r = {.p = data, .len = len};
    uint32_t version = sl__rbuf_u32(&r);
    uint64_t epoch = sl__rbuf_u64(&r);
    int64_t clen = sl__rbuf_i64(&r);
    uint32_t format = sl__rbuf_u32(&r);
    uint32_t sep = sl__rbuf_u32(&r);
    uint32_t header = sl__rbuf_u32(&r);
    struct stat sb;

    if (s->started)
        return restore_fail(s, SL_ESTATE, errstr, errstr_size,
                            "restore must come before any other call");
    if (r.err || r.off != len || version != SNAP_VERSION || clen < 0 ||
        header > 1)
        return restore_fail(s, SL_ECORRUPT, errstr, errstr_size,
                            "its state for the file sink is malformed "
                            "(%zu bytes, version %u)", len, version);
    if (format != (uint32_t)s->conf->format ||
        sep != (uint32_t)(unsigned char)s->conf->sep ||
        header != (uint32_t)(s->conf->format == FMT_CSV && s->conf->header))
        return restore_fail(s, SL_EINVAL, errstr, errstr_size,
                            "'format', 'delimiter' or 'header' changed "
                            "since the checkpoint was taken");
    s->started = s->restored = true;
    s->restored_epoch = epoch;
    s->committed_len = clen;
    s->header_done = header;
    if (s->created) {
        /* Our own empty file: .inprogress was missing. */
        unlink(s->tmp);
        fclose(s->f);
        s->f = NULL;
        if (stat(s->conf->path, &sb) == 0 && sb.st_size == clen) {
            s->published = true;
            return 0;
        }
        return restore_fail(s, SL_ECORRUPT, errstr, errstr_size,
                            "%s is missing; the checkpoint recorded %lld "
                            "bytes of output in it", s->tmp,
                            (long long)clen);
    }
    if (fstat(fileno(s->f), &sb) != 0)
        return io_fail(s, "reading the size of", errstr, errstr_size);
    if (sb.st_size < clen)
        return restore_fail(s, SL_ECORRUPT, errstr, errstr_size,
                            "%s holds %lld bytes, fewer than the %lld the "
                            "checkpoint recorded", s->tmp,
                            (long long)sb.st_size, (long long)clen);
    /* The bytes past clen belong to epochs that never completed; their
     * rows will be written again by the replay. */
    if (ftruncate(fileno(s->f), (off_t)clen) != 0 ||
        fseeko(s->f, 0, SEEK_END) != 0)
        return io_fail(s, "truncating", errstr, errstr_size);
    return 0;
}

static int fs_restore(void *st, int32_t key_group, const void *data,
                      size_t len)
{
    fs_sink *s = st;
    char err[1024];
    int rc;
    if (s->failed)
        return s->failed;
    if (key_group != -1)
        rc = restore_fail(s, SL_ECORRUPT, err, sizeof err,
                          "it holds a keyed section (key group %d) for the "
                          "file sink, which keeps none", (int)key_group);
    else
        rc = fs_restore_msg(s, data, len, err, sizeof err);
    if (rc) {
        if (!s->why[0])
            snprintf(s->why, sizeof s->why, "%s", err);
        sl__log(SL__LOG_ERROR, "sink", s->why, "connector=file step=restore");
    }
    return rc;
}

static int fs_recover(void *st, uint64_t epoch, char *errstr,
                      size_t errstr_size)
{
    fs_sink *s = st;
    if (s->failed)
        return stopped(s, errstr, errstr_size);
    if (!s->restored) {
        /* Checkpoint 0 is the empty start: a new run. */
        if (!s->eo || epoch == 0)
            return fs_begin(s, errstr, errstr_size);
        return s->failed = sl__err(
                   errstr, errstr_size, SL_ECORRUPT,
                   "%s: recover(%llu) without restored state: the "
                   "checkpoint does not say how much of the file is "
                   "committed", s->tmp, (unsigned long long)epoch);
    }
    if (epoch != s->restored_epoch)
        return s->failed = sl__err(
                   errstr, errstr_size, SL_ECORRUPT,
                   "%s: recover(%llu), but the restored state is that of "
                   "epoch %llu", s->tmp, (unsigned long long)epoch,
                   (unsigned long long)s->restored_epoch);
    s->precommitted = s->committed = epoch;
    s->have_epoch = true;
    return 0;
}

/* ---- close --------------------------------------------------------------- */
/* Invariant 5: fsync, rename over <path>, fsync the directory. */
static int finish_file(fs_sink *s, char *errstr, size_t errstr_size)
{
    int rc = fs_flush(s, errstr, errstr_size);
    if (!rc && fsync(fileno(s->f)) != 0)
        rc = io_fail(s, "syncing", errstr, errstr_size);
    if (fclose(s->f) != 0 && !rc)
        rc = io_fail(s, "closing", errstr, errstr_size);
    s->f = NULL;
    if (rc)
        return rc;
    if (rename(s->tmp, s->conf->path) != 0)
        return sl__err(errstr, errstr_size, SL_EIO, "renaming %s to %s: %s",
                       s->tmp, s->conf->path, strerror(errno));
    char *dir = sl__xstrdup(s->conf->path);
    char *slash = strrchr(dir, '/');
    if (slash)
        slash[slash == dir] = '\0'; /* "/x" -> "/" */
    int fd = open(slash ? dir : ".", O_RDONLY);
    if (fd >= 0) {
        fsync(fd); /* best effort: some file systems refuse it on dirs */
        close(fd);
    }
    free(dir);
    return 0;
}

/* Invariant 5 under exactly-once: every byte in the file (and nothing
 * still buffered) belongs to a committed epoch. */
static bool all_committed(fs_sink *s)
{
    if (!s->eo)
        return true;
    if (!s->started || !s->have_epoch || s->committed < s->precommitted ||
        s->len)
        return false;
    off_t at = ftello(s->f);
    return at >= 0 && (int64_t)at == s->committed_len;
}

static void fs_close(void *st)
{
    fs_sink *s = st;
    char err[512];
    if (!s)
        return;
    if (s->tmp) {
        if (s->f && !s->failed && !(s->job && sl_job_error(s->job)) &&
            all_committed(s)) {
            if (finish_file(s, err, sizeof err))
                sl__log(SL__LOG_ERROR, "sink", err, "connector=file step=close");
        } else if (s->f) {
            fclose(s->f);
        }
    } else if (s->f && !s->failed) {
        if (s->conf->format == FMT_TABLE && !s->header_done)
            table_header(s, err, sizeof err);
        fs_flush(s, err, sizeof err);
    }
    free(s->tmp);
    free(s->buf);
    free(s->cell);
    free(s);
}

/* ---- stdout: at-least-once ----------------------------------------------- */
static int stdout_epoch(void *st, uint64_t epoch, char *errstr,
                        size_t errstr_size)
{
    (void)epoch;
    return fs_flush(st, errstr, errstr_size);
}

static int stdout_recover(void *st, uint64_t epoch, char *errstr,
                          size_t errstr_size)
{
    (void)st, (void)epoch, (void)errstr, (void)errstr_size;
    return 0;
}

const sl__sink_vt sl__sink_file = {
    .name = "file",
    .configure = file_configure,
    .max_parallelism = 1,
    .open = file_open,
    .write = fs_write,
    .flush = fs_flush,
    .close = fs_close,
    .conf_free = file_conf_free,
    .precommit = fs_precommit,
    .commit = fs_commit,
    .recover = fs_recover,
    .snapshot = fs_snapshot,
    .restore = fs_restore,
    .exactly_once = true,
};

const sl__sink_vt sl__sink_stdout = {
    .name = "stdout",
    .configure = stdout_configure,
    .max_parallelism = 1,
    .open = stdout_open,
    .write = fs_write,
    .flush = fs_flush,
    .close = fs_close,
    .conf_free = stdout_conf_free,
    .precommit = stdout_epoch,
    .commit = stdout_epoch,
    .recover = stdout_recover,
    .exactly_once = false,
};
