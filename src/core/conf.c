/* conf.c — configuration tables: every component declares its keys (type,
 * default, range, description) in one sl__conf_def array; this module
 * applies defaults and key/value pairs, rejecting unknown keys and bad
 * values with a message naming the key and what is allowed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core.h"

int sl__parse_i64(const char *s, int64_t *out)
{
    if (!s || !*s) return SL_EINVAL;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end) return SL_EINVAL;
    *out = v;
    return 0;
}

int sl__parse_f64(const char *s, double *out)
{
    if (!s || !*s) return SL_EINVAL;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end) return SL_EINVAL;
    *out = v;
    return 0;
}

const char *sl__kv_get(const char *const *kv, const char *key)
{
    const char *v = NULL;
    for (size_t i = 0; kv && kv[i] && kv[i + 1]; i += 2)
        if (strcmp(kv[i], key) == 0) v = kv[i + 1];
    return v;
}

static int enum_index(const char *allowed, const char *v)
{
    size_t vl = strlen(v);
    int idx = 0;
    for (const char *p = allowed;; idx++) {
        const char *bar = strchr(p, '|');
        size_t l = bar ? (size_t)(bar - p) : strlen(p);
        if (l == vl && strncasecmp(p, v, l) == 0) return idx;
        if (!bar) return -1;
        p = bar + 1;
    }
}

static int set_one(const sl__conf_def *d, void *dst, const char *v,
                   const char *component, char *err, size_t errsz)
{
    char *field = (char *)dst + d->offset;
    switch (d->type) {
    case SL_CONF_INT: {
        int64_t x;
        if (sl__parse_i64(v, &x) || x < d->min || x > d->max)
            return sl__err(err, errsz, SL_EINVAL,
                           "%s: '%s' must be an integer in [%lld, %lld], got '%s'",
                           component, d->key, (long long)d->min,
                           (long long)d->max, v);
        memcpy(field, &x, sizeof x);
        return 0;
    }
    case SL_CONF_DOUBLE: {
        double x;
        bool ranged = d->min != 0 || d->max != 0; /* 0, 0: any number */
        if (sl__parse_f64(v, &x) ||
            (ranged && (x < (double)d->min || x > (double)d->max)))
            return sl__err(err, errsz, SL_EINVAL,
                           "%s: '%s' must be a number in [%lld, %lld], got '%s'",
                           component, d->key, (long long)d->min,
                           (long long)d->max, v);
        memcpy(field, &x, sizeof x);
        return 0;
    }
    case SL_CONF_BOOL: {
        bool x;
        if (!strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "yes")) x = true;
        else if (!strcasecmp(v, "false") || !strcmp(v, "0") || !strcasecmp(v, "no")) x = false;
        else
            return sl__err(err, errsz, SL_EINVAL,
                           "%s: '%s' must be true or false, got '%s'", component,
                           d->key, v);
        memcpy(field, &x, sizeof x);
        return 0;
    }
    case SL_CONF_ENUM: {
        int x = enum_index(d->allowed, v);
        if (x < 0)
            return sl__err(err, errsz, SL_EINVAL,
                           "%s: '%s' must be one of %s, got '%s'", component,
                           d->key, d->allowed, v);
        memcpy(field, &x, sizeof x);
        return 0;
    }
    case SL_CONF_STR: {
        char *old;
        memcpy(&old, field, sizeof old);
        free(old);
        char *x = sl__xstrdup(v);
        memcpy(field, &x, sizeof x);
        return 0;
    }
    }
    return SL_EINTERNAL;
}

static bool listed(const char *const *list, const char *k)
{
    for (size_t i = 0; list && list[i]; i++)
        if (strcmp(list[i], k) == 0) return true;
    return false;
}

int sl__conf_apply(const sl__conf_def *defs, void *dst, const char *const *kv,
                   const char *component, const char *const *ignore,
                   char *err, size_t errsz)
{
    for (const sl__conf_def *d = defs; d->key; d++) {
        if (d->type == SL_CONF_STR) {
            char *z = NULL;
            memcpy((char *)dst + d->offset, &z, sizeof z);
        }
        if (d->def) {
            int rc = set_one(d, dst, d->def, component, err, errsz);
            if (rc) return rc;
        }
    }
    for (size_t i = 0; kv && kv[i]; i += 2) {
        if (!kv[i + 1])
            return sl__err(err, errsz, SL_EINVAL, "%s: key '%s' has no value",
                           component, kv[i]);
        if (listed(ignore, kv[i])) continue;
        const sl__conf_def *d = defs;
        while (d->key && strcmp(d->key, kv[i]) != 0) d++;
        if (!d->key) {
            char keys[2048];
            size_t off = 0;
            keys[0] = 0;
            for (const sl__conf_def *e = defs; e->key && off < sizeof keys; e++)
                off += (size_t)snprintf(keys + off, sizeof keys - off, "%s%s",
                                        off ? ", " : "", e->key);
            return sl__err(err, errsz, SL_EINVAL,
                           "%s: unknown key '%s' (known keys: %s)", component,
                           kv[i], keys);
        }
        int rc = set_one(d, dst, kv[i + 1], component, err, errsz);
        if (rc) return rc;
    }
    for (const sl__conf_def *d = defs; d->key; d++) {
        if (d->type != SL_CONF_STR || d->def) continue;
        char *v;
        memcpy(&v, (char *)dst + d->offset, sizeof v);
        if (!v && d->min == 1) /* min 1 on a STR marks it required */
            return sl__err(err, errsz, SL_EINVAL, "%s: key '%s' is required (%s)",
                           component, d->key, d->desc ? d->desc : "");
    }
    return 0;
}

void sl__conf_free(const sl__conf_def *defs, void *dst)
{
    for (const sl__conf_def *d = defs; d->key; d++) {
        if (d->type != SL_CONF_STR) continue;
        char *v;
        memcpy(&v, (char *)dst + d->offset, sizeof v);
        free(v);
        v = NULL;
        memcpy((char *)dst + d->offset, &v, sizeof v);
    }
}
