/* venue.h — the ops layer's internal interface for venue reports: the
 * loaded venue table (venue.c) shared by the venue-assign and venue-report
 * operators (venue_report.c), and the age bands and genders they use. */
#ifndef SL_OPS_VENUE_H
#define SL_OPS_VENUE_H

#include "core/runtime.h"

typedef struct {
    char *name;
    int64_t start, end; /* UTC epoch ms, end > start */
    char *area;         /* NULL when the file gives none */
    double share;       /* market share of the area, 1 without a table */
    int64_t day;        /* UTC date of start (days): ages are taken there */
} sl__venue;

typedef struct {
    int64_t cell;
    uint32_t venue;
} sl__venue_cell;

struct sl_venues {
    sl__venue *v;
    size_t n;
    sl__venue_cell *idx; /* (cell, venue) sorted by cell then venue */
    size_t nidx;
};

/* The loaders' parsers, on a NUL-terminated buffer they take over (and
 * free); `path` names the input in errors. For sl_venues_load,
 * sl_venues_market_share and the fuzz target. */
sl_venues *sl__venues_parse(char *buf, const char *path, char *errstr,
                            size_t errstr_size);
int sl__venues_share_parse(sl_venues *vs, char *buf, const char *path,
                           char *errstr, size_t errstr_size);

/* Age bands: 0 "unknown", 1 "0-17" ... 7 "65+"; genders: "*" alone when
 * the report is not split by gender, else "F", "M", "X", "unknown". */
#define SL__VENUE_BANDS 8
extern const sl_str sl__venue_band_names[SL__VENUE_BANDS];
extern const sl_str sl__venue_gender_names[4];
/* The band (1..7) of someone born at birth_ms on UTC day `day`; 0 if the
 * birth is after that day. */
int sl__venue_band(int64_t birth_ms, int64_t day);

/* Input of the report operator: ts, sub, venue (INT64 index), grp
 * (band * ngender + gender), one row per (event, venue it falls in). */
typedef struct {
    const sl_venues *venues; /* borrowed */
    sl_venue_report_spec spec;
    int ngender; /* 1 or 4 */
    int in_ts, in_sub, in_venue, in_grp;
} sl__venue_report_conf;
extern const sl__op_vt sl__op_venue_report;
/* The report's output schema (caller frees). */
sl_schema *sl__venue_report_schema(void);

#endif
