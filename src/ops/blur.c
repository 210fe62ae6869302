/* blur.c — time blurring: the operator behind sl_stream_blur_time. It adds
 * to each row's event time a bounded noise, uniform over the integers in
 * [-B, +B] milliseconds, before windowing, as operators perturb event times
 * before publishing location statistics.
 *
 * The noise is a keyed PRF, HMAC-SHA-256 under a subkey of the keyring's
 * current secret (label "sluice/time-blur/v1"), of the subscriber's
 * pseudonym and the bucket floor(ts / bucket) of the original time: it is
 * unpredictable without the secret, identical on replay and at any
 * parallelism, and the same for all of a subscriber's events within one
 * bucket, so averaging many events of a bucket does not remove it. It runs
 * after pseudonymisation (raw identifiers never reach it) and needs no
 * state. A blurred time may be up to B earlier than the original, so the
 * source's watermark delay must include B, or blurred rows arrive late for
 * their windows (docs/venues.md).
 *
 * Not done here: other noise distributions, blurring of other columns. */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "ops/privacy.h"

#define BLUR_LABEL "sluice/time-blur/v1"
#define MAX_BOUND_MS 86400000

typedef struct {
    int ts, sub;
    int64_t bound, bucket;
    const sl_keyring *keys; /* borrowed */
} blur_conf;

typedef struct {
    const blur_conf *c;
    sl__hmac *mac;
} blur_op;

int64_t sl__blur_noise(sl__hmac *mac, int64_t sub, int64_t bucket, int64_t bound)
{
    uint8_t msg[24];
    memcpy(msg, "sl-blur1", 8); /* a fixed 8-byte tag, then sub, bucket */
    for (int i = 0; i < 8; i++) {
        msg[8 + i] = (uint8_t)((uint64_t)sub >> (56 - 8 * i));
        msg[16 + i] = (uint8_t)((uint64_t)bucket >> (56 - 8 * i));
    }
    uint8_t mac_out[32];
    sl__hmac_full(mac, msg, sizeof msg, mac_out);
    uint64_t u = 0;
    for (int i = 0; i < 8; i++) u = u << 8 | mac_out[i];
    uint64_t span = 2 * (uint64_t)bound + 1; /* bias < span / 2^64 */
    return (int64_t)(u % span) - bound;
}

static void bl_close(void *st)
{
    blur_op *p = st;
    if (!p) return;
    sl__hmac_free(p->mac);
    free(p);
}

/* The subkey for blurring from the keyring's current key. */
sl__hmac *sl__blur_mac(const sl_keyring *keys, char *errstr, size_t errstr_size)
{
    uint8_t k[32];
    sl__keyring_derive(keys, sl__keyring_nkeys(keys) - 1, BLUR_LABEL, k);
    sl__hmac *h = sl__hmac_new_raw(k, sizeof k, errstr, errstr_size);
    OPENSSL_cleanse(k, sizeof k);
    return h;
}

static int bl_open(void **st, const void *conf, const sl__opinfo *info,
                   sl__ctx *ctx, char *errstr, size_t errstr_size)
{
    (void)info;
    (void)ctx;
    blur_op *p = sl__xcalloc(1, sizeof *p);
    p->c = conf;
    p->mac = sl__blur_mac(p->c->keys, errstr, errstr_size);
    if (!p->mac) {
        free(p);
        return SL_ECRYPTO;
    }
    *st = p;
    return 0;
}

static int bl_batch(void *st, sl_batch *b, sl__out *out)
{
    blur_op *p = st;
    const blur_conf *c = p->c;
    int64_t *ts = b->cols[c->ts].data;
    const int64_t *sub = b->cols[c->sub].data;
    for (uint32_t r = 0; r < b->n; r++) {
        if (b->kind[r] != SL_KIND_DATA || !b->cols[c->ts].valid[r] ||
            !b->cols[c->sub].valid[r] || c->bound == 0)
            continue;
        int64_t n = sl__blur_noise(p->mac, sub[r], sl__floor_div(ts[r], c->bucket),
                                   c->bound);
        if (__builtin_add_overflow(ts[r], n, &ts[r])) ts[r] = n < 0 ? SL_TS_MIN : SL_TS_MAX;
    }
    b->khash = NULL; /* not keyed by time, but be safe: rows changed */
    return sl__emit(out, b);
}

static const sl__op_vt op_blur = {
    .name = "blur_time",
    .open = bl_open,
    .batch = bl_batch,
    .close = bl_close,
    .conf_free = free,
};

sl_stream *sl_stream_blur_time(sl_stream *s, const char *time_col,
                               const char *sub_col, int64_t bound_ms,
                               int64_t bucket_ms, const sl_keyring *keys)
{
    if (!s) return NULL;
    sl_job *job = sl__stream_job(s);
    const sl_schema *in = sl_stream_schema(s);
    if (!time_col) time_col = sl__stream_time_col(s);
    int tc = time_col ? sl_schema_find(in, time_col) : -1;
    int sc = sub_col ? sl_schema_find(in, sub_col) : -1;
    if (tc < 0 || in->cols[tc].type != SL_TIMESTAMP) {
        sl__job_fail(job, SL_EINVAL, "blur_time: '%s' is not a TIMESTAMP column "
                     "of the stream", time_col ? time_col : "(no time column)");
        return NULL;
    }
    if (sc < 0 || in->cols[sc].type != SL_INT64) {
        sl__job_fail(job, SL_EINVAL, "blur_time: '%s' is not a BIGINT (pseudonym) "
                     "column of the stream: blur after pseudonymise",
                     sub_col ? sub_col : "");
        return NULL;
    }
    if (bound_ms < 0 || bound_ms > MAX_BOUND_MS || bucket_ms < 1) {
        sl__job_fail(job, SL_EINVAL, "blur_time: bound_ms must be in [0, %d] and "
                     "bucket_ms >= 1, got %lld and %lld", MAX_BOUND_MS,
                     (long long)bound_ms, (long long)bucket_ms);
        return NULL;
    }
    if (!keys || sl__keyring_nkeys(keys) == 0) {
        sl__job_fail(job, SL_EINVAL, "blur_time: no keyring (the noise must be "
                     "unpredictable without a secret)");
        return NULL;
    }
    blur_conf *c = sl__xcalloc(1, sizeof *c);
    *c = (blur_conf){.ts = tc, .sub = sc, .bound = bound_ms, .bucket = bucket_ms,
                     .keys = keys};
    return sl__stream_add_op(s, &op_blur, c, in);
}
