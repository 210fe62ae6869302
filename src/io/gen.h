/* gen.h — the synthetic telecom data of the reference job (DESIGN.md "The
 * reference data"): a deterministic model of subscribers, cells and events,
 * written to CSV files (sl__gen_write) or produced directly into batches by
 * the "generator" source. For the same configuration both give the same
 * events, in the same order per partition.
 *
 * Every value is a pure function of (seed, row index), so any partition can
 * be generated from any point without generating what precedes it. */
#ifndef SL_IO_GEN_H
#define SL_IO_GEN_H

#include "core/runtime.h"

/* Caller-allocated; sl__gen_conf_init() sets the defaults and
 * sl__gen_conf_close() frees the one owned string. */
typedef struct {
    int64_t seed;
    int64_t subscribers;      /* 10,000,000 */
    int64_t cells;            /* 20,000 */
    int64_t areas;            /* 400 */
    int64_t events;           /* 1,000,000 */
    char *start;              /* text as given: epoch ms or ISO-8601 */
    int64_t start_ms;         /* derived from start */
    int64_t span_ms;          /* one day */
    int64_t out_of_order_ms;  /* 2000: max backwards jitter */
    double unknown_fraction;  /* 0.02: subscribers missing from the table */
    int64_t parts;            /* event partitions (files) */
    double rate;              /* source: events/s for the whole source, 0 = max */
    int dataset;              /* source: 0 events, 1 subscribers, 2 cells */
    bool gzip;                /* sl__gen_write: .csv.gz files */
    /* a staged public event (gen_crowd.c; sl__gen_write only) */
    int64_t crowd_size;       /* 0 = none */
    char *crowd_cells;        /* "LO-HI" or "a;b;c" */
    char *crowd_start;        /* "" = start + span / 2 */
    int64_t crowd_span_ms;    /* 3 h */
    int64_t crowd_events;     /* per member */
    int64_t crowd_age_lo, crowd_age_hi; /* the crowd's favoured ages */
    double crowd_skew;        /* share of members drawn from those ages */
} sl__gen_conf;

/* The configuration table (keys seed, subscribers, cells, areas, events,
 * start, span.ms, out.of.order.ms, unknown.fraction, parts, gzip) used by
 * sl__gen_conf_set, for the docs. The source's table has rate and dataset
 * instead of gzip. */
extern const sl__conf_def sl__gen_conf_defs[];
extern const sl__conf_def sl__gen_source_conf_defs[];

void sl__gen_conf_init(sl__gen_conf *c);
void sl__gen_conf_close(sl__gen_conf *c);
/* Sets one key (for the CLI's --set key=value); an unknown key or bad value
 * is an error naming the key and what is allowed. */
int sl__gen_conf_set(sl__gen_conf *c, const char *key, const char *value,
                     char *errstr, size_t errstr_size);

/* Writes dir/events/events-NNN.csv (one file per part; header
 * ts,msisdn,event_type,cell_id,duration_s,bytes), dir/subscribers.csv
 * (msisdn,birth_date,gender; without the unknown fraction) and
 * dir/cells.csv (cell_id,area). With gzip, the names end in .csv.gz.
 * Creates dir and dir/events if needed; replaces existing files. */
int sl__gen_write(const sl__gen_conf *c, const char *dir, char *errstr,
                  size_t errstr_size);

/* The staged event (docs/venues.md): with crowd_size > 0, writes
 * dir/events/crowd.csv (crowd_size members, crowd_skew of them aged
 * [crowd_age_lo, crowd_age_hi] at the event's date, the rest drawn like
 * any subscriber, each with crowd_events events in the crowd's cells
 * between an arrival in the first third of the event and a departure in
 * the last third), dir/venues.csv naming the event "staged-event" and
 * dir/market_share.csv (a share per area); with 0, removes crowd.csv. */
typedef struct sl__gen sl__gen;
int sl__gen_write_crowd(const sl__gen_conf *c, const sl__gen *g,
                        const char *dir, char *errstr, size_t errstr_size);

/* ---- the model, for tests and tools ------------------------------------- */
typedef struct sl__gen sl__gen;
/* Validates c and precomputes the tables; the model copies what it needs. */
sl__gen *sl__gen_new(const sl__gen_conf *c, char *errstr, size_t errstr_size);
void sl__gen_free(sl__gen *g);

enum { SL__GEN_SMS_SENT, SL__GEN_SMS_RECEIVED, SL__GEN_CALL_PLACED,
       SL__GEN_CALL_RECEIVED, SL__GEN_DATA_SESSION, SL__GEN_NTYPES };
extern const char *const sl__gen_event_types[SL__GEN_NTYPES];

typedef struct {
    int64_t ts;         /* epoch ms */
    int64_t sub;        /* subscriber index, 0 .. subscribers-1 */
    int type;           /* SL__GEN_* */
    int64_t cell;       /* 1 .. cells */
    int64_t duration_s; /* calls, else -1 (NULL) */
    int64_t bytes;      /* data sessions, else -1 (NULL) */
} sl__gen_event;

/* Event number i (0 .. events-1; partition i % parts). */
void sl__gen_event_at(const sl__gen *g, int64_t i, sl__gen_event *ev);
/* The 12-digit MSISDN of a subscriber into out[12] (not NUL-terminated). */
void sl__gen_msisdn(int64_t sub, char out[12]);
/* Whether the subscriber is in the subscriber table; its birth date (days
 * since the epoch) and gender ('M', 'F' or 'X'). */
bool sl__gen_sub_known(const sl__gen *g, int64_t sub);
int64_t sl__gen_sub_birth_day(const sl__gen *g, int64_t sub);
char sl__gen_sub_gender(const sl__gen *g, int64_t sub);
/* Area number (1 .. areas) of a cell; its name is "A%04d". */
int64_t sl__gen_cell_area(const sl__gen *g, int64_t cell);

/* The source. Conf keys as sl__gen_source_conf_defs; schema columns are
 * matched by name (events: ts, msisdn, event_type, cell_id, duration_s,
 * bytes; subscribers: msisdn, birth_date, gender; cells: cell_id, area);
 * other columns are NULL. */
extern const sl__source_vt sl__src_generator;
/* Rows of the dataset the partition has produced, and a rewind to such a
 * count (for checkpoints). */
int sl__gen_source_position(void *st, int part, int64_t *offset);
int sl__gen_source_seek(void *st, int part, int64_t offset);

#endif
