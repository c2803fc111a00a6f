/* SPDX-License-Identifier: MIT */
/*
 * stats.h: request statistics.
 *
 * Each worker thread records into a shard that only it touches: no locks, no atomics, and no
 * allocation once an entry and its histogram buckets exist. About once a second the control
 * thread takes the shard (the worker switches to its spare one), merges it into the aggregate
 * and hands it back cleared. Entries are keyed by (request_type, name); failures by
 * (method, name, error); exceptions by (message, traceback).
 *
 * Everything the reports show is derived from the aggregate: counts, exact min/max/average,
 * percentiles from the log-linear histogram, and current rates over the last
 * CC_CURRENT_WINDOW intervals.
 */
#ifndef CC_STATS_H
#define CC_STATS_H

#include "core/common.h"
#include "stats/hist.h"
#include "stats/intern.h"

/* Distinct failure or exception keys one table keeps; the rest share one overflow key. */
#define CC_MAX_DISTINCT_ERRORS 2000
#define CC_OVERFLOW_ERROR      "(more distinct errors than cicada keeps apart; counted together here)"

/* ---- worker side ------------------------------------------------------------------------ */

struct cc_shard_cell {
    const struct cc_ikey *key; /* (type, name) in the worker's table; set while dirty */
    uint64_t count;            /* requests, failed ones included */
    uint64_t failures;         /* subset of count */
    uint64_t bytes;            /* sum of response lengths */
    uint64_t sum_ns;           /* sum of response times */
    double last_s;             /* epoch of the last request */
    struct cc_hist hist;       /* response times */
    struct cc_hist ihist;      /* response times from the intended start (open model, pacing) */
    bool dirty;                /* used in this interval; listed in dirty[] */
};

struct cc_shard_count {
    const struct cc_ikey *key; /* set while dirty */
    uint64_t n;
    double first_s, last_s;
    bool dirty;
};

/* One interval's worth of records from one worker. */
struct cc_shard {
    struct cc_shard_cell *cells; /* by entry id */
    size_t cells_cap;
    uint32_t *dirty; /* ids of cells used in this interval, in first-use order */
    size_t ndirty, dirty_cap;

    struct cc_shard_count *fails; /* by failure id */
    size_t fails_cap;
    uint32_t *fdirty;
    size_t nfdirty, fdirty_cap;

    struct cc_shard_count *excs; /* by exception id */
    size_t excs_cap;
    uint32_t *edirty;
    size_t nedirty, edirty_cap;

    uint64_t *dropped; /* [user class] open-model iterations that found no free user */
    size_t dropped_cap;
};

void cc_shard_init(struct cc_shard *s);
void cc_shard_release(struct cc_shard *s);
/* Zeroes what was recorded, keeping memory for reuse. */
void cc_shard_clear(struct cc_shard *s);

/* The worker's recorder: its key tables and the shard it currently writes. */
struct cc_recorder {
    struct cc_intern names;      /* (type, name) */
    struct cc_intern failures;   /* (method, name, error) */
    struct cc_intern exceptions; /* (message, traceback) */
    struct cc_shard *shard;      /* active shard */
    double now_s;                /* wall clock, refreshed by the worker once per loop turn */
    /* recent keys of cc_recorder_key, by where the caller's name string lives (Lua's strings
     * stay put): a hit still compares the bytes, so a reused address cannot mislead it */
    const struct cc_ikey *recent[16];
};

void cc_recorder_init(struct cc_recorder *r, struct cc_shard *active);
void cc_recorder_release(struct cc_recorder *r);

/* The key of (type, name), for callers that record the same entry repeatedly. */
const struct cc_ikey *cc_recorder_key(struct cc_recorder *r, const char *type, size_t type_len,
                                      const char *name, size_t name_len);

/*
 * Records one request. |error| (|error_len| bytes) is NULL for a success; a failure counts in
 * both the entry's requests and failures, and in the failures table under its error text.
 */
void cc_recorder_request(struct cc_recorder *r, const struct cc_ikey *key, uint64_t response_ns,
                         uint64_t length, const char *error, size_t error_len);

/*
 * Adds one sample to the entry's intended-start histogram: the response time counted from when
 * the request was meant to start (open-model arrivals, pacing), for coordinated omission.
 */
void cc_recorder_intended(struct cc_recorder *r, const struct cc_ikey *key, uint64_t ns);
/* Counts an open-model iteration of user class |cls| that found no free user. */
void cc_recorder_dropped(struct cc_recorder *r, uint32_t cls);

/* Counts one exception raised by user code. */
void cc_recorder_exception(struct cc_recorder *r, const char *msg, size_t msg_len, const char *tb,
                           size_t tb_len);

/* ---- control side ----------------------------------------------------------------------- */

#define CC_RING 32 /* intervals of per-interval counts kept */
#define CC_CURRENT_WINDOW                                                                          \
    10 /* intervals (about seconds) behind "current" rates and percentiles                         \
        */

struct cc_entry {
    const struct cc_ikey *key; /* (type, name); NULL for the Aggregated total */
    uint64_t count;
    uint64_t failures;
    uint64_t bytes;
    double sum_ms;
    double last_s; /* epoch of the last request, 0 before the first */
    struct cc_hist hist;
    struct cc_hist ihist;         /* from the intended start; empty unless the run measures it */
    uint32_t ring_count[CC_RING]; /* requests per interval, by interval number % CC_RING */
    uint32_t ring_fail[CC_RING];
    struct cc_hist *window; /* CC_CURRENT_WINDOW interval histograms, or NULL when not kept */
};

struct cc_failure {
    const struct cc_ikey *key; /* (method, name, error) */
    uint64_t occurrences;
    double first_s, last_s;
};

struct cc_exception {
    const struct cc_ikey *key; /* (message, traceback) */
    uint64_t count;
    uint64_t nodes; /* bit i set: seen on worker i (for the CSV's Nodes column) */
};

struct cc_agg {
    struct cc_intern names;
    struct cc_entry **entries; /* by id of |names| */
    size_t nentries, entries_cap;
    struct cc_entry total; /* "Aggregated" */

    struct cc_intern fail_keys;
    struct cc_failure *fails;
    size_t fails_cap;

    struct cc_intern exc_keys;
    struct cc_exception *excs;
    size_t excs_cap;

    double start_s;            /* epoch when these stats started (test start or last reset) */
    uint64_t intervals;        /* intervals opened so far */
    uint64_t ring_t0[CC_RING]; /* monotonic start and end of each interval */
    uint64_t ring_t1[CC_RING];
    bool window_all;   /* keep current-percentile windows for every entry, not only the total */
    uint64_t *dropped; /* [user class] open-model iterations that found no free user */
    size_t dropped_cap;
};

void cc_agg_init(struct cc_agg *a, bool window_all);
void cc_agg_release(struct cc_agg *a);
/* Zeroes every count and forgets failures and exceptions; keeps the entries' names. */
void cc_agg_reset(struct cc_agg *a, double now_s);

/* Starts interval number a->intervals at monotonic time |t_ns|. */
void cc_agg_open_interval(struct cc_agg *a, uint64_t t_ns);
/* Adds a worker's shard to the open interval. |worker| indexes the exception nodes. */
void cc_agg_merge(struct cc_agg *a, const struct cc_shard *s, unsigned worker);
/* Ends the open interval at monotonic time |t_ns|. */
void cc_agg_close_interval(struct cc_agg *a, uint64_t t_ns);

/* Derived values. Times are in milliseconds. */
double cc_entry_avg_ms(const struct cc_entry *e);
double cc_entry_min_ms(const struct cc_entry *e);
double cc_entry_max_ms(const struct cc_entry *e);
double cc_entry_percentile_ms(const struct cc_entry *e, double p);
/* Percentiles from the intended start; false when none was recorded. */
bool cc_entry_intended_percentiles_ms(const struct cc_entry *e, const double *ps, size_t n,
                                      double *out);
void cc_entry_percentiles_ms(const struct cc_entry *e, const double *ps, size_t n, double *out);
double cc_entry_fail_ratio(const struct cc_entry *e);
double cc_entry_avg_bytes(const struct cc_entry *e);
/* Requests and failures per second over the run: count / (last request - start). */
double cc_entry_total_rps(const struct cc_agg *a, const struct cc_entry *e);
double cc_entry_total_fail_per_s(const struct cc_agg *a, const struct cc_entry *e);
/* Requests and failures per second over the last CC_CURRENT_WINDOW closed intervals. */
double cc_entry_current_rps(const struct cc_agg *a, const struct cc_entry *e);
double cc_entry_current_fail_per_s(const struct cc_agg *a, const struct cc_entry *e);
/*
 * Percentiles over the last CC_CURRENT_WINDOW closed intervals; false when the entry keeps no
 * window.
 */
bool cc_entry_current_percentiles_ms(const struct cc_agg *a, const struct cc_entry *e,
                                     const double *ps, size_t n, double *out);

/* Entries in report order (by name, then type), into a new array the caller frees. */
struct cc_entry **cc_agg_sorted(const struct cc_agg *a, size_t *n);
/* Failures in report order (by method, name, error). */
struct cc_failure **cc_agg_sorted_failures(const struct cc_agg *a, size_t *n);
/* Exceptions, most frequent first. */
struct cc_exception **cc_agg_sorted_exceptions(const struct cc_agg *a, size_t *n);

/* Locust's percentile set, as fractions, and their column labels ("50%", "99.9%", "100%"). */
extern const double cc_percentiles[11];
extern const char *const cc_percentile_labels[11];
#define CC_NPERCENTILES 11

#endif
