/* server.c — the HTTP endpoint (libmicrohttpd, one internal polling thread)
 * and the sampler thread behind the derived figures.
 *
 * Routes: GET /metrics (Prometheus text), GET /status (JSON), GET /healthz,
 * and GET /<file> from the dashboard directory (index.html for /). Only
 * GET and HEAD.
 *
 * Security (docs/operations.md): the server binds 127.0.0.1 unless
 * metrics.address says otherwise. Static files come from a fixed set: the
 * regular files directly in the dashboard directory with a known type,
 * listed once at start; a URL is looked up in that list, never joined to a
 * path, so no traversal is possible. With metrics.token.file every route but
 * /healthz needs the token, as "Authorization: Bearer TOKEN" or as the
 * password of HTTP Basic authentication (so a browser can open the
 * dashboard); the comparison takes constant time. Requests are bounded:
 * 16 KiB of headers (libmicrohttpd answers larger ones itself), 1 KiB of
 * URL, no body, 8 connections per client address, and metrics.rate.limit
 * requests per second (429 beyond).
 *
 * The sampler takes a snapshot of the job five times a second: whether a
 * task's output channels are full (back pressure is the fraction of those
 * samples, or of the second spent blocked, whichever is larger); once a
 * second it turns two snapshots into rates, appends a point to the
 * throughput history and notices completed checkpoints. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

double sl__obs_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double mono_s(void) { return (double)sl__clock_monotonic() / 1e9; }

/* ---- sampler ------------------------------------------------------------- */
enum { SUBSAMPLES = 5 };

static void sampler_second(sl__obs *o, const sl__job_snap *a, const sl__job_snap *b,
                           const int *full, double dt)
{
    pthread_mutex_lock(&o->lock);
    if (o->ntasks != b->ntasks) {
        free(o->rates);
        o->ntasks = b->ntasks;
        o->rates = sl__xcalloc((size_t)b->ntasks + 1, sizeof *o->rates);
    }
    bool same = a->ntasks == b->ntasks;
    double src = 0, sink = 0, bpmax = 0;
    for (int k = 0; k < b->ntasks; k++) {
        sl__obs_task_rate *r = &o->rates[k];
        const sl__task_stat *y = &b->tasks[k], *x = same ? &a->tasks[k] : y;
        r->in_rate = (double)(y->records_in - x->records_in) / dt;
        r->out_rate = (double)(y->records_out - x->records_out) / dt;
        r->busy = (double)(y->busy_ns - x->busy_ns) / 1e9 / dt;
        if (r->busy > 1) r->busy = 1;
        double blocked = (double)(y->ctr[SL__CTR_BLOCKED_NS] - x->ctr[SL__CTR_BLOCKED_NS]) /
                         1e9 / dt;
        double sampled = (double)full[k] / SUBSAMPLES;
        r->backpressure = blocked > sampled ? blocked : sampled;
        if (r->backpressure > 1) r->backpressure = 1;
        if (r->backpressure > bpmax) bpmax = r->backpressure;
        src += (double)(y->ctr[SL__CTR_RECORDS_IN] - x->ctr[SL__CTR_RECORDS_IN]) / dt;
        sink += (double)(y->ctr[SL__CTR_RECORDS_OUT] - x->ctr[SL__CTR_RECORDS_OUT]) / dt;
    }
    if (!same || !b->planned) src = sink = 0;
    o->job_rates = (sl__obs_rates){.in_rate = src, .out_rate = sink,
                                   .backpressure = bpmax};
    if (b->planned) {
        o->hist[o->hist_at] = (sl__obs_point){.t = sl__obs_now(), .in_rate = src,
                                              .out_rate = sink, .backpressure = bpmax};
        o->hist_at = (o->hist_at + 1) % OBS_HISTORY;
        if (o->nhist < OBS_HISTORY) o->nhist++;
    }
    const sl_job_stats *js = &b->job;
    bool done = js->checkpoints_completed > o->ck_seen;
    bool fail = js->checkpoints_failed > o->ckf_seen;
    if (done || fail) {
        sl__obs_ck *c = &o->ck[o->ck_at];
        *c = (sl__obs_ck){.epoch = b->ck_committed, .t = sl__obs_now(),
                          .ms = js->last_checkpoint_ms,
                          .bytes = js->last_checkpoint_bytes,
                          .pause_us = js->last_snapshot_pause_us, .failed = !done};
        o->ck_at = (o->ck_at + 1) % OBS_CK_HISTORY;
        if (o->nck < OBS_CK_HISTORY) o->nck++;
    }
    if (done) {
        o->ck_last_t = sl__obs_now();
        double d = (double)js->last_checkpoint_ms / 1e3;
        int bkt = 0;
        while (bkt < OBS_CK_BUCKETS && d > sl__obs_ck_bounds[bkt]) bkt++;
        o->ck_hist[bkt]++;
        o->ck_hist_n++;
        o->ck_hist_sum += d;
    }
    o->ck_seen = js->checkpoints_completed;
    o->ckf_seen = js->checkpoints_failed;
    pthread_mutex_unlock(&o->lock);
}

static void *sampler_main(void *arg)
{
    sl__obs *o = arg;
    sl__job_snap prev;
    sl__job_snap_take(o->job, &prev);
    double t_prev = mono_s();
    int nfull = 0, sub = 0;
    int *full = sl__xcalloc(1, sizeof *full); /* never NULL, even with no task */
    while (!atomic_load(&o->stop)) {
        struct timespec ts = {0, 1000000000L / SUBSAMPLES};
        nanosleep(&ts, NULL);
        sl__job_snap cur;
        sl__job_snap_take(o->job, &cur);
        if (cur.ntasks != nfull) {
            free(full);
            nfull = cur.ntasks;
            full = sl__xcalloc((size_t)nfull + 1, sizeof *full);
        }
        for (int k = 0; k < cur.ntasks; k++) full[k] += cur.tasks[k].out_full > 0;
        if (++sub < SUBSAMPLES) {
            sl__job_snap_close(&cur);
            continue;
        }
        double t = mono_s();
        sampler_second(o, &prev, &cur, full, t - t_prev);
        memset(full, 0, sizeof *full * (size_t)(nfull + 1));
        sub = 0;
        t_prev = t;
        sl__job_snap_close(&prev);
        prev = cur;
    }
    sl__job_snap_close(&prev);
    free(full);
    return NULL;
}

void sl__obs_rates_get(sl__obs *o, sl__obs_rates *r)
{
    memset(r, 0, sizeof *r);
    if (!o) return;
    pthread_mutex_lock(&o->lock);
    *r = o->job_rates;
    pthread_mutex_unlock(&o->lock);
}

/* ---- HTTP ---------------------------------------------------------------- */
static enum MHD_Result reply(struct MHD_Connection *c, unsigned status,
                             const char *type, sl__obs_text *body)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        body->len, body->p ? body->p : (char *)"", MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    enum MHD_Result rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    sl__obs_text_free(body);
    return rc;
}

static enum MHD_Result text_reply(struct MHD_Connection *c, unsigned status,
                                  const char *msg)
{
    sl__obs_text t = {0};
    sl__obs_text_put(&t, msg, strlen(msg));
    return reply(c, status, "text/plain; charset=utf-8", &t);
}

static const char *mime(const char *path)
{
    const char *dot = strrchr(path, '.');
    if (!dot) return "application/octet-stream";
    if (!strcmp(dot, ".html")) return "text/html; charset=utf-8";
    if (!strcmp(dot, ".css")) return "text/css; charset=utf-8";
    if (!strcmp(dot, ".js")) return "text/javascript; charset=utf-8";
    if (!strcmp(dot, ".svg")) return "image/svg+xml";
    if (!strcmp(dot, ".png")) return "image/png";
    if (!strcmp(dot, ".ico")) return "image/x-icon";
    if (!strcmp(dot, ".json")) return "application/json";
    return "application/octet-stream";
}

/* A dashboard file name: [A-Za-z0-9._-], not starting with a dot. */
static bool safe_name(const char *p)
{
    if (!*p || *p == '.' || strlen(p) >= 64) return false;
    for (; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-'))
            return false;
    return true;
}

static enum MHD_Result serve_file(sl__obs *o, struct MHD_Connection *c,
                                  const char *url)
{
    if (!o->dash_dir[0])
        return text_reply(c, MHD_HTTP_NOT_FOUND,
                          "sluice: the dashboard's files were not found (job key "
                          "dashboard.dir); /metrics and /status work.\n");
    const char *rel = !strcmp(url, "/") ? "/index.html" : url;
    int found = -1;
    for (int i = 0; i < o->nfiles && found < 0; i++)
        if (rel[0] == '/' && !strcmp(rel + 1, o->files[i])) found = i;
    if (found < 0) return text_reply(c, MHD_HTTP_NOT_FOUND, "not found\n");
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", o->dash_dir, o->files[found]);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        if (fd >= 0) close(fd);
        return text_reply(c, MHD_HTTP_NOT_FOUND, "not found\n");
    }
    struct MHD_Response *r = MHD_create_response_from_fd((uint64_t)st.st_size, fd);
    MHD_add_response_header(r, "Content-Type", mime(rel));
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    enum MHD_Result rc = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return rc;
}

/* Constant-time comparison of a presented token with ours. */
static bool token_eq(const char *have, size_t n, const char *want)
{
    size_t w = strlen(want);
    unsigned char d = (unsigned char)(n != w);
    for (size_t i = 0; i < w; i++)
        d |= (unsigned char)(want[i] ^ (i < n ? have[i] : 0));
    return d == 0;
}

static int b64val(int c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* The request carries our token: "Bearer TOKEN", or "Basic" with TOKEN as
 * the password (any user name). */
static bool authorized(const sl__obs *o, struct MHD_Connection *c)
{
    if (!o->token[0]) return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h) return false;
    if (!strncasecmp(h, "Bearer ", 7)) {
        h += 7;
        while (*h == ' ') h++;
        size_t n = strlen(h);
        while (n && h[n - 1] == ' ') n--;
        return token_eq(h, n, o->token);
    }
    if (strncasecmp(h, "Basic ", 6)) return false;
    char dec[512] = {0};
    size_t n = 0;
    unsigned acc = 0;
    int bits = 0;
    for (h += 6; *h && *h != '='; h++) {
        int v = b64val((unsigned char)*h);
        if (v < 0 || n + 1 >= sizeof dec) return false;
        acc = acc << 6 | (unsigned)v;
        if ((bits += 6) >= 8) {
            bits -= 8;
            dec[n++] = (char)(acc >> bits & 0xff);
        }
    }
    const char *colon = memchr(dec, ':', n);
    if (!colon) return false;
    size_t off = (size_t)(colon + 1 - dec);
    bool ok = token_eq(colon + 1, n - off, o->token);
    memset(dec, 0, sizeof dec);
    return ok;
}

/* A fixed window per monotonic second: enough to stop a polling loop or a
 * scanner from taking the job's cores; called from the HTTP thread only. */
static bool rate_ok(sl__obs *o)
{
    if (o->rate_limit <= 0) return true;
    int64_t sec = (int64_t)sl__clock_monotonic() / 1000000000;
    if (sec != o->rate_sec) {
        o->rate_sec = sec;
        o->rate_n = 0;
    }
    return ++o->rate_n <= o->rate_limit;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
                                  const char *url, const char *method,
                                  const char *version, const char *upload,
                                  size_t *upload_size, void **req)
{
    (void)version; (void)upload; (void)upload_size; (void)req;
    sl__obs *o = cls;
    if (!rate_ok(o)) {
        sl__obs_text t = {0};
        sl__obs_text_put(&t, "too many requests\n", 18);
        struct MHD_Response *r = MHD_create_response_from_buffer(
            t.len, t.p, MHD_RESPMEM_MUST_COPY);
        MHD_add_response_header(r, "Retry-After", "1");
        enum MHD_Result rc = MHD_queue_response(c, 429, r);
        MHD_destroy_response(r);
        sl__obs_text_free(&t);
        return rc;
    }
    if (strcmp(method, "GET") && strcmp(method, "HEAD"))
        return text_reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "GET only\n");
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_CONTENT_LENGTH);
    if ((cl && strcmp(cl, "0")) ||
        MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                    MHD_HTTP_HEADER_TRANSFER_ENCODING))
        return text_reply(c, MHD_HTTP_CONTENT_TOO_LARGE, "no request body allowed\n");
    if (strlen(url) > 1024)
        return text_reply(c, MHD_HTTP_URI_TOO_LONG, "URL too long\n");
    if (!strcmp(url, "/healthz")) return text_reply(c, MHD_HTTP_OK, "ok\n");
    if (!authorized(o, c)) {
        sl__obs_text t = {0};
        static const char msg[] = "sluice: a token is required (metrics.token.file)\n";
        sl__obs_text_put(&t, msg, sizeof msg - 1);
        struct MHD_Response *r = MHD_create_response_from_buffer(
            t.len, t.p, MHD_RESPMEM_MUST_COPY);
        MHD_add_response_header(r, "Content-Type", "text/plain; charset=utf-8");
        /* API clients send Bearer; for the dashboard a browser shows its
         * Basic login (the token as password) and then reuses it for the
         * page's own requests. */
        bool api = !strcmp(url, "/metrics") || !strcmp(url, "/status") ||
                   !strncmp(url, "/state/", 7);
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                api ? "Bearer realm=\"sluice\""
                                    : "Basic realm=\"sluice\", charset=\"UTF-8\"");
        enum MHD_Result rc = MHD_queue_response(c, MHD_HTTP_UNAUTHORIZED, r);
        MHD_destroy_response(r);
        sl__obs_text_free(&t);
        return rc;
    }
    sl__obs_text t = {0};
    if (!strcmp(url, "/metrics")) {
        sl__obs_render_metrics(o, &t);
        return reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", &t);
    }
    if (!strcmp(url, "/status")) {
        sl__obs_render_status(o, &t);
        return reply(c, MHD_HTTP_OK, "application/json", &t);
    }
    if (!strncmp(url, "/state/", 7) && url[7]) {
        const char *key = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "key");
        unsigned st = sl__obs_render_state(o, url + 7, key, &t);
        return reply(c, st, "application/json", &t);
    }
    if (!strcmp(url, "/healthz")) return text_reply(c, MHD_HTTP_OK, "ok\n");
    return serve_file(o, c, url);
}

/* ---- lifecycle ----------------------------------------------------------- */
static bool is_dir(const char *p)
{
    struct stat st;
    return !stat(p, &st) && S_ISDIR(st.st_mode);
}

static void find_dashboard(sl__obs *o)
{
    const char *conf = sl__job_dashboard_dir(o->job);
    if (conf[0]) {
        if (is_dir(conf)) snprintf(o->dash_dir, sizeof o->dash_dir, "%s", conf);
        return;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        static const char *const rel[] = {"/../src/obs/dashboard",
                                          "/../share/sluice/dashboard",
                                          "/../../src/obs/dashboard"};
        for (size_t i = 0; i < sizeof rel / sizeof *rel; i++) {
            char p[PATH_MAX + 64];
            snprintf(p, sizeof p, "%s%s", exe, rel[i]);
            char real[PATH_MAX];
            if (is_dir(p) && realpath(p, real)) {
                snprintf(o->dash_dir, sizeof o->dash_dir, "%s", real);
                return;
            }
        }
    }
    if (is_dir("/usr/share/sluice/dashboard"))
        snprintf(o->dash_dir, sizeof o->dash_dir, "/usr/share/sluice/dashboard");
}

/* Lists the fixed set of files the dashboard may serve. */
static void list_dashboard(sl__obs *o)
{
    o->nfiles = 0;
    DIR *d = o->dash_dir[0] ? opendir(o->dash_dir) : NULL;
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) && o->nfiles < (int)(sizeof o->files / sizeof *o->files)) {
        if (!safe_name(e->d_name) || !strcmp(mime(e->d_name), "application/octet-stream"))
            continue;
        char p[4400];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", o->dash_dir, e->d_name);
        if (lstat(p, &st) || !S_ISREG(st.st_mode)) continue;
        snprintf(o->files[o->nfiles++], sizeof o->files[0], "%s", e->d_name);
    }
    closedir(d);
}

/* Reads the bearer token; the file must be as private as a key file. */
static int load_token(sl__obs *o, const char *path, char *err, size_t errsz)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errsz, "metrics.token.file: %s: cannot open: %s", path, strerror(errno));
        return SL_ENOENT;
    }
    struct stat st;
    if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode)) {
        fclose(f);
        snprintf(err, errsz, "metrics.token.file: %s: not a regular file", path);
        return SL_EINVAL;
    }
    bool own = st.st_uid == geteuid();
    if ((st.st_mode & 007) || (own && (st.st_mode & 070)) || (st.st_mode & 020)) {
        fclose(f);
        snprintf(err, errsz, "metrics.token.file: %s: permissions %04o are too open: "
                 "it must not be accessible by others%s (chmod %s '%s')", path,
                 (unsigned)(st.st_mode & 07777), own ? " or by its group" : "",
                 own ? "600" : "640", path);
        return SL_EINVAL;
    }
    char buf[sizeof o->token + 1];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ')) n--;
    bool ok = n >= 16 && n < sizeof o->token;
    for (size_t i = 0; ok && i < n; i++) ok = buf[i] > ' ' && buf[i] < 127;
    if (ok) memcpy(o->token, buf, n);
    memset(buf, 0, sizeof buf);
    if (!ok) {
        snprintf(err, errsz, "metrics.token.file: %s: the token must be one line of "
                 "16 to %zu printable characters without spaces", path,
                 sizeof o->token - 1);
        return SL_EINVAL;
    }
    return 0;
}

/* Binds a listening socket on "HOST:PORT" ("[V6]:PORT" for IPv6). */
static int listen_on(const char *addr, int flags, int *fd_out, char *url,
                     size_t urlsz, char *err, size_t errsz)
{
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || !colon[1]) {
        snprintf(err, errsz, "metrics.address: '%s' must be HOST:PORT, \"\" or off", addr);
        return SL_EINVAL;
    }
    const char *h = addr;
    size_t hl = (size_t)(colon - addr);
    if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') { h++; hl -= 2; }
    if (hl >= sizeof host) hl = sizeof host - 1;
    memcpy(host, h, hl);
    host[hl] = 0;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535) {
        snprintf(err, errsz, "metrics.address: port in '%s' must be 0..65535", addr);
        return SL_EINVAL;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV}, *ai = NULL;
    char ps[16];
    snprintf(ps, sizeof ps, "%ld", port);
    int g = getaddrinfo(host, ps, &hints, &ai);
    if (g || !ai) {
        snprintf(err, errsz, "metrics.address: cannot resolve '%s': %s", host,
                 gai_strerror(g));
        return SL_EINVAL;
    }
    int fd = -1, e = 0;
    for (int attempt = 0; attempt < 2 && fd < 0; attempt++) {
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (fd >= 0 && attempt == 1) /* any free port */
            ((struct sockaddr_in *)ai->ai_addr)->sin_port = 0; /* same offset in v6 */
        if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 64)) {
            e = errno;
            if (fd >= 0) close(fd);
            fd = -1;
            if (!(e == EADDRINUSE && (flags & SL__OBS_ANY_PORT_IF_BUSY))) break;
        }
    }
    if (fd < 0) {
        snprintf(err, errsz, "metrics.address: cannot listen on %s: %s%s", addr,
                 strerror(e), e == EADDRINUSE ? " (set metrics.address=HOST:0 for "
                                                "any free port, or \"\" to disable)"
                                              : "");
        freeaddrinfo(ai);
        return SL_EIO;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    char ip[INET6_ADDRSTRLEN] = "";
    int bport = 0;
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof ip);
        bport = ntohs(s6->sin6_port);
        snprintf(url, urlsz, "http://[%s]:%d/", ip, bport);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof ip);
        bport = ntohs(s4->sin_port);
        snprintf(url, urlsz, "http://%s:%d/", ip, bport);
    }
    freeaddrinfo(ai);
    *fd_out = fd;
    return 0;
}

int sl__obs_start(sl_job *job, int flags, sl__obs **out, char *err, size_t errsz)
{
    *out = NULL;
    const char *addr = sl__job_metrics_address(job);
    if (!addr[0] || !strcmp(addr, "off")) return 0;
    sl__obs *o = sl__xcalloc(1, sizeof *o);
    o->job = job;
    o->started = sl__obs_now();
    pthread_mutex_init(&o->lock, NULL);
    atomic_init(&o->stop, 0);
    int fd = -1;
    o->rate_limit = sl__job_metrics_rate_limit(job);
    const char *tf = sl__job_metrics_token_file(job);
    int rc = tf[0] ? load_token(o, tf, err, errsz) : 0;
    if (!rc) rc = listen_on(addr, flags, &fd, o->url, sizeof o->url, err, errsz);
    if (rc) {
        pthread_mutex_destroy(&o->lock);
        free(o);
        return rc;
    }
    find_dashboard(o);
    list_dashboard(o);
    o->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0,
                            NULL, NULL, on_request, o, MHD_OPTION_LISTEN_SOCKET, fd,
                            MHD_OPTION_CONNECTION_LIMIT, 64u,
                            MHD_OPTION_PER_IP_CONNECTION_LIMIT, 8u,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)16384,
                            MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
    if (!o->d) {
        close(fd);
        snprintf(err, errsz, "metrics.address: cannot start the HTTP server on %s", addr);
        pthread_mutex_destroy(&o->lock);
        free(o);
        return SL_EIO;
    }
    if (pthread_create(&o->sampler, NULL, sampler_main, o)) {
        MHD_stop_daemon(o->d);
        snprintf(err, errsz, "metrics: cannot start the sampler thread");
        pthread_mutex_destroy(&o->lock);
        free(o);
        return SL_EINTERNAL;
    }
    *out = o;
    return 0;
}

const char *sl__obs_url(const sl__obs *o) { return o ? o->url : ""; }

void sl__obs_stop(sl__obs *o)
{
    if (!o) return;
    int64_t linger = sl__job_metrics_linger_ms(o->job);
    if (linger > 0) {
        struct timespec ts = {linger / 1000, (long)(linger % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    atomic_store(&o->stop, 1);
    pthread_join(o->sampler, NULL);
    MHD_stop_daemon(o->d);
    pthread_mutex_destroy(&o->lock);
    free(o->rates);
    free(o);
}
