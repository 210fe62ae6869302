/* table_refresh.c — keeps a lookup table loaded from PostgreSQL up to date
 * while the job runs: a thread polls the table every refresh.interval.ms
 * for rows whose refresh.column (a timestamp, e.g. updated_at) is at or
 * after the start of the previous poll minus refresh.slack.ms, pseudonymises
 * their key like the load did, and publishes every row changed since the
 * load as the table's overlay (state/table.c), which the lookup join probes
 * before the table. So a changed birth date or a new subscriber is used by
 * the windows processed after the next poll, without a restart.
 *
 * It does not see deleted rows (a deleted subscriber keeps its last row
 * until the job restarts), and which records see a change depends on when
 * the poll ran (processing time), as with Flink's lookup joins with a
 * cache TTL: a replay after a failure may join a record with newer data.
 * The slack covers transactions that commit after a poll but stamped their
 * rows (now() is the transaction's start) before it; rows read twice are
 * harmless, as the last row of a key wins.
 *
 * Invariants:
 * 1. Only the refresher thread builds and publishes overlays, each a whole
 *    new table (old overlay + new rows), so lookups never see one half
 *    built (poll).
 * 2. sl_table_free stops and joins the thread before it frees the
 *    overlays (refresh_stop, registered with sl__table_on_free). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/log.h"
#include "ops/privacy.h"
#include "state/state.h"

typedef struct {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    sl_table *t;
    const sl__source_vt *vt;
    char **kv; /* the source's configuration without `where`, owned */
    char *column, *where;
    int64_t interval_ms, slack_ms, since_ms;
    sl_schema *schema, *tschema;
    int kc;
    sl__hmac **h;
    int nh;
    char name[128];
} refresher;

int64_t sl__refresh_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool is_column(const char *s)
{
    if (!*s || strlen(s) > 63 || (*s >= '0' && *s <= '9')) return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9') || *s == '_'))
            return false;
    return true;
}

int sl__refresh_opts_parse(const char *connector, const char *const *conf,
                           sl__refresh_opts *o, const char ***kv, char *errstr,
                           size_t errstr_size)
{
    *o = (sl__refresh_opts){.column = "updated_at", .slack_ms = 60000};
    size_t n = 0;
    while (conf && conf[n]) n += 2;
    const char **out = sl__xcalloc(n + 1, sizeof *out);
    size_t m = 0;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i += 2) {
        const char *k = conf[i], *v = conf[i + 1];
        if (!strcmp(k, "refresh.interval.ms") || !strcmp(k, "refresh.slack.ms")) {
            int64_t x;
            if (sl__parse_i64(v, &x) || x < 0 || x > 86400000)
                rc = sl__err(errstr, errstr_size, SL_EINVAL, "table: '%s' must be "
                             "an integer in [0, 86400000], got '%s'", k, v);
            else if (k[8] == 'i')
                o->interval_ms = x;
            else
                o->slack_ms = x;
            continue;
        }
        if (!strcmp(k, "refresh.column")) {
            if (!is_column(v))
                rc = sl__err(errstr, errstr_size, SL_EINVAL, "table: "
                             "'refresh.column' must be a column name (letters, "
                             "digits, _), got '%s'", v);
            o->column = v;
            continue;
        }
        if (!strcmp(k, "where")) o->where = v;
        out[m++] = k;
        out[m++] = v;
    }
    if (rc == 0 && o->interval_ms > 0 && strcmp(connector, "postgres"))
        rc = sl__err(errstr, errstr_size, SL_EINVAL, "table: 'refresh.interval.ms' "
                     "needs connector 'postgres' (a %s table is read once)",
                     connector);
    if (rc == 0 && o->interval_ms > 0 && o->interval_ms < 100)
        rc = sl__err(errstr, errstr_size, SL_EINVAL, "table: "
                     "'refresh.interval.ms' must be 0 (off) or >= 100, got %lld",
                     (long long)o->interval_ms);
    if (rc) {
        free(out);
        return rc;
    }
    *kv = out;
    return 0;
}

/* One poll (invariant 1). Returns rows read, or a negative SL_E*. */
static int poll(refresher *r, int64_t since, char *err, size_t errsz)
{
    char cond[512];
    snprintf(cond, sizeof cond, "%s%s%s\"%s\" >= to_timestamp(%lld / 1000.0)",
             r->where ? "(" : "", r->where ? r->where : "", r->where ? ") AND " : "",
             r->column, (long long)since);
    size_t n = 0;
    while (r->kv[n]) n++;
    const char **kv = sl__xcalloc(n + 3, sizeof *kv);
    memcpy(kv, r->kv, n * sizeof *kv);
    kv[n] = "where";
    kv[n + 1] = cond;
    void *sconf = NULL, *st = NULL;
    int part = 0;
    int rc = r->vt->configure(&sconf, kv, r->schema, err, errsz);
    if (rc == 0) rc = r->vt->open(&st, sconf, r->schema, &part, 1,
                                  &(sl__ctx){.ntasks = 1}, err, errsz);
    sl_table *fresh = NULL, *ov = NULL;
    size_t changed = 0;
    if (rc == 0) {
        fresh = sl__table_new(r->tschema, r->kc);
        rc = sl__table_load_all(r->vt, st, fresh, r->schema, r->h, r->nh, r->kc,
                                r->tschema, err, errsz);
    }
    /* rows read again (the slack) and unchanged are no change */
    if (rc == 0) changed = sl__table_changes(fresh, r->t);
    if (rc == 0 && changed > 0) {
        ov = sl__table_new(r->tschema, r->kc);
        rc = sl__table_append_table(ov, sl__table_overlay(r->t), err, errsz);
        if (rc == 0) rc = sl__table_append_table(ov, fresh, err, errsz);
        if (rc == 0) {
            sl__table_set_overlay(r->t, ov);
            ov = NULL;
        }
    }
    sl_table_free(fresh);
    sl_table_free(ov);
    if (st) r->vt->close(st);
    if (sconf && r->vt->conf_free) r->vt->conf_free(sconf);
    free(kv);
    return rc ? rc : (int)(changed / (size_t)(r->nh ? r->nh : 1));
}

static void *run(void *arg)
{
    refresher *r = arg;
    pthread_mutex_lock(&r->mu);
    while (!r->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        int64_t ns = until.tv_nsec + (r->interval_ms % 1000) * 1000000;
        until.tv_sec += (time_t)(r->interval_ms / 1000 + ns / 1000000000);
        until.tv_nsec = (long)(ns % 1000000000);
        while (!r->stop &&
               pthread_cond_timedwait(&r->cv, &r->mu, &until) == 0) {
        }
        if (r->stop) break;
        pthread_mutex_unlock(&r->mu);
        int64_t start = sl__refresh_wall_ms();
        char err[768] = "";
        int n = poll(r, r->since_ms - r->slack_ms, err, sizeof err);
        if (n < 0)
            sl__log(SL__LOG_WARN, "table", "refresh failed, keeping the rows as they were",
                    "table=%s error=\"%s\"", r->name, err);
        else
            r->since_ms = start;
        if (n > 0)
            sl__log(SL__LOG_INFO, "table", "refreshed changed rows", "table=%s rows=%d",
                    r->name, n);
        pthread_mutex_lock(&r->mu);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

static void refresh_stop(void *arg)
{
    refresher *r = arg;
    pthread_mutex_lock(&r->mu);
    r->stop = true;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->th, NULL);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    for (size_t i = 0; r->kv[i]; i++) free(r->kv[i]);
    free(r->kv);
    free(r->column);
    free(r->where);
    sl_schema_free(r->schema);
    sl_schema_free(r->tschema);
    for (int i = 0; i < r->nh; i++) sl__hmac_free(r->h[i]);
    free(r->h);
    free(r);
}

int sl__refresh_start(sl_table *t, const sl__source_vt *vt, const char *const *kv,
                      const sl__refresh_opts *o, const sl_schema *schema, int kc,
                      const sl_schema *tschema, const sl_keyring *pseudo,
                      const sl_rotation *rot, int64_t load_start_ms, char *errstr,
                      size_t errstr_size)
{
    refresher *r = sl__xcalloc(1, sizeof *r);
    size_t n = 0, m = 0;
    while (kv[n]) n += 2;
    r->kv = sl__xcalloc(n + 1, sizeof *r->kv);
    for (size_t i = 0; i < n; i += 2) {
        if (!strcmp(kv[i], "where")) continue;
        if (!strcmp(kv[i], "table"))
            snprintf(r->name, sizeof r->name, "%s", kv[i + 1]);
        r->kv[m++] = sl__xstrdup(kv[i]);
        r->kv[m++] = sl__xstrdup(kv[i + 1]);
    }
    r->t = t;
    r->vt = vt;
    r->column = sl__xstrdup(o->column);
    r->where = o->where && *o->where ? sl__xstrdup(o->where) : NULL;
    r->interval_ms = o->interval_ms;
    r->slack_ms = o->slack_ms;
    r->since_ms = load_start_ms;
    r->schema = sl__schema_copy(schema);
    r->tschema = sl__schema_copy(tschema);
    r->kc = kc;
    int nkeys = pseudo ? sl__keyring_nkeys(pseudo) : 0;
    r->h = sl__xcalloc(nkeys > 0 ? (size_t)nkeys : 1, sizeof *r->h);
    int rc = 0;
    if (pseudo && !rot && !(r->h[r->nh++] = sl__hmac_new(pseudo, errstr, errstr_size)))
        rc = SL_ECRYPTO;
    for (int i = 0; rc == 0 && rot && i < nkeys; i++) {
        if (!sl__keyring_in_domain(pseudo, i, rot->domain)) continue;
        if (!(r->h[r->nh++] = sl__hmac_new_key(pseudo, i, errstr, errstr_size)))
            rc = SL_ECRYPTO;
    }
    if (rc == 0) {
        pthread_mutex_init(&r->mu, NULL);
        pthread_cond_init(&r->cv, NULL);
        if (pthread_create(&r->th, NULL, run, r)) {
            pthread_mutex_destroy(&r->mu);
            pthread_cond_destroy(&r->cv);
            rc = sl__err(errstr, errstr_size, SL_EINTERNAL, "table: cannot start "
                         "the refresh thread");
        }
    }
    if (rc) {
        for (size_t i = 0; r->kv[i]; i++) free(r->kv[i]);
        free(r->kv);
        free(r->column);
        free(r->where);
        sl_schema_free(r->schema);
        sl_schema_free(r->tschema);
        for (int i = 0; i < r->nh; i++) sl__hmac_free(r->h[i]);
        free(r->h);
        free(r);
        return rc;
    }
    sl__table_on_free(t, refresh_stop, r);
    return 0;
}
