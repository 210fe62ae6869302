/* log.h — structured, levelled logging for the library (private to sluice).
 *
 * One line per event in logfmt:
 *   ts=2026-11-24T04:40:01.123Z level=warn component=canary msg="..." k=v ...
 * to stderr, or to the file of the job key `log.file` (appended). Lines
 * never interleave (a mutex guards the stream). SIGHUP handling is the
 * caller's: its handler calls sl_log_reopen() (async-signal-safe), and the
 * file is reopened by the next log call or sl__log_tick(), whichever comes
 * first, so logrotate's create mode works without copytruncate.
 *
 * Never pass a raw subscriber identifier: messages are not masked. */
#ifndef SL_LOG_H
#define SL_LOG_H

#include <stdbool.h>
#include <stddef.h>

typedef enum {
    SL__LOG_ERROR = 0,
    SL__LOG_WARN = 1,
    SL__LOG_INFO = 2,
    SL__LOG_DEBUG = 3
} sl__log_level;

/* Sends the log to path (NULL or "": stderr) from now on, keeping events
 * up to `level`. Returns 0, or SL_EIO naming the path in errstr (the log
 * is then unchanged). */
int sl__log_open(const char *path, int level, char *errstr, size_t errstr_size);
/* Back to stderr at level info; closes the file. */
void sl__log_close(void);
/* Performs a reopen requested by sl_log_reopen(); cheap when none is. */
void sl__log_tick(void);
bool sl__log_enabled(int level);
/* Writes one event. msg is quoted and escaped; kvfmt (may be NULL) is a
 * printf format producing the trailing `key=value` pairs verbatim. */
void sl__log(int level, const char *component, const char *msg, const char *kvfmt,
             ...) __attribute__((format(printf, 4, 5)));

#endif
