/* time.c — event-time parsing and formatting (epoch milliseconds, ISO-8601
 * UTC) and civil-calendar conversions (Howard Hinnant's algorithms), with no
 * dependence on the process time zone. */
#include <stdio.h>

#include "core.h"

int64_t sl__days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

void sl__civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static int digits(const char *s, size_t n, int64_t *out)
{
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

int sl__parse_ts(const char *s, size_t len, int64_t *out)
{
    if (len == 0) return SL_EPARSE;
    /* epoch milliseconds: an optional sign and digits only */
    size_t i = (s[0] == '-') ? 1 : 0;
    bool all_digits = i < len;
    for (size_t j = i; j < len; j++)
        if (s[j] < '0' || s[j] > '9') { all_digits = false; break; }
    if (all_digits) {
        if (len - i > 18) return SL_EPARSE;
        int64_t v = 0;
        digits(s + i, len - i, &v);
        *out = i ? -v : v;
        return 0;
    }
    int64_t y, mo, d, h = 0, mi = 0, se = 0, ms = 0;
    if (len < 10 || s[4] != '-' || s[7] != '-' || digits(s, 4, &y) ||
        digits(s + 5, 2, &mo) || digits(s + 8, 2, &d))
        return SL_EPARSE;
    if (mo < 1 || mo > 12 || d < 1 || d > 31) return SL_EPARSE;
    size_t p = 10;
    if (p < len) {
        if ((s[p] != 'T' && s[p] != ' ') || len < p + 9 || s[p + 3] != ':' ||
            s[p + 6] != ':' || digits(s + p + 1, 2, &h) ||
            digits(s + p + 4, 2, &mi) || digits(s + p + 7, 2, &se))
            return SL_EPARSE;
        if (h > 23 || mi > 59 || se > 60) return SL_EPARSE;
        p += 9;
        if (p < len && s[p] == '.') {
            size_t q = ++p;
            int64_t frac = 0, scale = 0;
            while (p < len && s[p] >= '0' && s[p] <= '9') {
                if (p - q < 3) { frac = frac * 10 + (s[p] - '0'); scale++; }
                p++;
            }
            if (p == q) return SL_EPARSE;
            while (scale++ < 3) frac *= 10;
            ms = frac;
        }
        if (p < len && s[p] == 'Z') p++;
        if (p != len) return SL_EPARSE;
    }
    /* reject impossible dates such as 2026-02-30 */
    int64_t days = sl__days_from_civil(y, (unsigned)mo, (unsigned)d);
    int64_t yy;
    unsigned mm, dd;
    sl__civil_from_days(days, &yy, &mm, &dd);
    if (mm != (unsigned)mo || dd != (unsigned)d) return SL_EPARSE;
    *out = ((days * 24 + h) * 60 + mi) * 60000 + se * 1000 + ms;
    return 0;
}

int sl__format_ts(int64_t ms, char *buf, size_t size)
{
    int64_t days = sl__floor_div(ms, 86400000);
    int64_t rem = ms - days * 86400000;
    int64_t y;
    unsigned m, d;
    sl__civil_from_days(days, &y, &m, &d);
    return snprintf(buf, size, "%04lld-%02u-%02uT%02d:%02d:%02d.%03dZ",
                    (long long)y, m, d, (int)(rem / 3600000),
                    (int)(rem / 60000 % 60), (int)(rem / 1000 % 60),
                    (int)(rem % 1000));
}
