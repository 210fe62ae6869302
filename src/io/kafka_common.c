/* kafka_common.c — librdkafka configuration and error translation shared by
 * the Kafka source (kafka_source.c) and sink (kafka_sink.c). It opens no
 * connection itself. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "io/kafka.h"

static char **kv_push(char **kv, size_t *n, const char *k, const char *v)
{
    kv = sl__xrealloc(kv, (*n + 3) * sizeof *kv);
    kv[(*n)++] = sl__xstrdup(k);
    kv[(*n)++] = sl__xstrdup(v);
    kv[*n] = NULL;
    return kv;
}

void sl__kafka_split(const char *const *kv, char ***own, char ***props)
{
    size_t no = 0, np = 0;
    char **o = sl__xcalloc(1, sizeof *o), **p = sl__xcalloc(1, sizeof *p);
    size_t plen = strlen(SL__KAFKA_PROP_PREFIX);
    for (size_t i = 0; kv && kv[i] && kv[i + 1]; i += 2) {
        if (strncmp(kv[i], SL__KAFKA_PROP_PREFIX, plen) == 0)
            p = kv_push(p, &np, kv[i] + plen, kv[i + 1]);
        else
            o = kv_push(o, &no, kv[i], kv[i + 1]);
    }
    *own = o;
    *props = p;
}

void sl__kafka_kv_free(char **kv)
{
    if (!kv) return;
    for (size_t i = 0; kv[i]; i++) free(kv[i]);
    free(kv);
}

int sl__kafka_conf(rd_kafka_conf_t **out, const char *component,
                   const char *bootstrap, const char *const *fixed,
                   const char *const *props, const char *const *reserved,
                   char *errstr, size_t errstr_size)
{
    char why[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    if (rd_kafka_conf_set(c, "bootstrap.servers", bootstrap, why, sizeof why)) {
        rd_kafka_conf_destroy(c);
        return sl__err(errstr, errstr_size, SL_EINVAL, "%s: bootstrap.servers: %s",
                       component, why);
    }
    for (size_t i = 0; fixed && fixed[i]; i += 2)
        if (rd_kafka_conf_set(c, fixed[i], fixed[i + 1], why, sizeof why)) {
            rd_kafka_conf_destroy(c);
            return sl__err(errstr, errstr_size, SL_EINTERNAL, "%s: %s: %s", component,
                           fixed[i], why);
        }
    for (size_t i = 0; props && props[i]; i += 2) {
        for (size_t r = 0; reserved && reserved[r]; r++)
            if (strcmp(props[i], reserved[r]) == 0) {
                rd_kafka_conf_destroy(c);
                return sl__err(errstr, errstr_size, SL_EINVAL,
                               "%s: " SL__KAFKA_PROP_PREFIX "%s is set by sluice and "
                               "cannot be overridden (it carries the delivery guarantee)",
                               component, props[i]);
            }
        if (strcmp(props[i], "bootstrap.servers") == 0) {
            rd_kafka_conf_destroy(c);
            return sl__err(errstr, errstr_size, SL_EINVAL, "%s: " SL__KAFKA_PROP_PREFIX
                           "bootstrap.servers: use the key bootstrap.servers", component);
        }
        if (rd_kafka_conf_set(c, props[i], props[i + 1], why, sizeof why)) {
            rd_kafka_conf_destroy(c);
            return sl__err(errstr, errstr_size, SL_EINVAL,
                           "%s: " SL__KAFKA_PROP_PREFIX "%s: %s (librdkafka properties: "
                           "see docs/kafka.md)", component, props[i], why);
        }
    }
    *out = c;
    return 0;
}

static int code_of(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
    case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS:
        return SL_EIO;
    case RD_KAFKA_RESP_ERR__FENCED:
    case RD_KAFKA_RESP_ERR_PRODUCER_FENCED:
    case RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH:
        return SL_ESTATE;
    default:
        return SL_EIO;
    }
}

int sl__kafka_err(char *errstr, size_t errstr_size, const char *component,
                  const char *what, rd_kafka_resp_err_t err)
{
    return sl__err(errstr, errstr_size, code_of(err), "%s: %s: %s (%s)", component,
                   what, rd_kafka_err2str(err), rd_kafka_err2name(err));
}

int sl__kafka_err_obj(char *errstr, size_t errstr_size, const char *component,
                      const char *what, rd_kafka_error_t *error)
{
    rd_kafka_resp_err_t code = rd_kafka_error_code(error);
    int fenced = code == RD_KAFKA_RESP_ERR__FENCED || rd_kafka_error_is_fatal(error);
    int rc = sl__err(errstr, errstr_size, fenced ? SL_ESTATE : code_of(code),
                     "%s: %s: %s%s", component, what, rd_kafka_error_string(error),
                     rd_kafka_error_is_retriable(error) ? " (retriable)"
                     : fenced ? " (fatal: another instance with the same "
                                "transactional.id took over)" : "");
    rd_kafka_error_destroy(error);
    return rc;
}

void sl__kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac,
                      const char *buf)
{
    /* librdkafka's syslog levels: 0-3 errors, 4 warnings, 5-6 info, 7 debug */
    sl__log(level <= 3 ? SL__LOG_ERROR : level == 4 ? SL__LOG_WARN
            : level <= 6 ? SL__LOG_INFO : SL__LOG_DEBUG, "kafka", "librdkafka",
            "client=%s facility=%s text=\"%s\"", rd_kafka_name(rk), fac, buf);
}

int sl__kafka_new(rd_kafka_t **out, rd_kafka_type_t type, rd_kafka_conf_t *kc,
                  void *opaque, const char *component, char *errstr,
                  size_t errstr_size)
{
    rd_kafka_conf_set_log_cb(kc, sl__kafka_log_cb);
    if (opaque) rd_kafka_conf_set_opaque(kc, opaque);
    char why[512];
    *out = rd_kafka_new(type, kc, why, sizeof why);
    if (*out) return 0;
    rd_kafka_conf_destroy(kc);
    return sl__err(errstr, errstr_size, SL_EINVAL, "%s: %s", component, why);
}
