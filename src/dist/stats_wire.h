/* SPDX-License-Identifier: MIT */
/*
 * stats_wire.h: statistics in Locust's `stats` message (reference/locust.md §7.5), both ways.
 *
 * Out (worker): one report's delta, a struct cc_agg holding what was recorded since the last
 * report, becomes Locust's data map: a StatsEntry dict per entry that has requests, the
 * "Aggregated" total, the failures ("errors") with first and last seen, and the user counts.
 * Response times go out in Locust's rounded buckets (§3.2: whole ms below 100, then two
 * significant digits, Python's half-to-even rounding), made from our log-linear histogram by
 * giving each of its buckets' counts to the Locust bucket of its representative value. Between
 * cicada nodes each entry also carries "cicada_hist", our histogram itself (sparse bucket index
 * -> count, and the exact min and max in ns), which a cicada master merges exactly.
 * Per-second counts come from the delta's per-interval rings: each interval's count goes to the
 * epoch second of the interval's middle, and anything the rings do not account for to the second
 * of the last request, so the per-second dicts always add up to the totals.
 *
 * In (master): a stats data map becomes a struct cc_shard, the same thing a worker thread hands
 * the control thread, so cc_agg_merge() adds a remote worker exactly as it adds a local thread.
 * With "cicada_hist" the histogram is the sender's; from Locust, each bucket's count is
 * recorded at the bucket's value, and the exact min and max come from the entry.
 * stats_total is checked but not used: the shard's total is the sum of its entries, as the
 * worker's own total is.
 */
#ifndef CC_STATS_WIRE_H
#define CC_STATS_WIRE_H

#include "dist/msg.h"
#include "stats/stats.h"

#define CC_WIRE_HIST_FIELD  "cicada_hist"  /* the exact response-time histogram */
#define CC_WIRE_IHIST_FIELD "cicada_ihist" /* the same from the intended start, when recorded */

/* The key tables decoded shards point into. The master keeps one for its lifetime. */
struct cc_wire_keys {
    struct cc_intern names;      /* (type, name) */
    struct cc_intern failures;   /* (method, name, error) */
    struct cc_intern exceptions; /* (message, traceback) */
};

void cc_wire_keys_init(struct cc_wire_keys *k);
void cc_wire_keys_release(struct cc_wire_keys *k);

/* Locust's response-time bucket for |ms| milliseconds (bucket_response_time, §3.2). */
int64_t cc_wire_locust_bucket(double ms);

/* What a report says besides the statistics. */
struct cc_wire_report {
    size_t nclasses;
    const char *const *class_names;
    const uint32_t *class_users; /* users running now, per class; NULL: all 0 */
    bool cicada_hist;            /* add the exact histograms (only a cicada master reads them) */
    double wall_now_s;           /* the clocks at the time of the report; 0: read them */
    uint64_t mono_now_ns;
};

/* Packs the data map of a `stats` message for |delta| into |pk|. */
void cc_wire_pack_stats(msgpack_packer *pk, const struct cc_agg *delta,
                        const struct cc_wire_report *r);

/* A whole `stats` message from |node_id|, appended to |b|. */
void cc_wire_stats_msg(struct cc_dbuf *b, const struct cc_agg *delta,
                       const struct cc_wire_report *r, const char *node_id);

/*
 * Adds the statistics of a `stats` data map (|body|: the message's data) to |out|, interning
 * names in |keys|. Failures without first_seen/last_seen get |now_s|. Returns 0, or CC_EPROTO
 * (a reason in |err| when not NULL) after clearing |out|, which may then have held other
 * records: decode into a cleared shard.
 */
int cc_wire_decode_stats(const msgpack_object *body, struct cc_wire_keys *keys, double now_s,
                         struct cc_shard *out, char *err, size_t errlen);

/* Adds |count| occurrences of the exception (|msg|, |traceback|) to |out|. */
void cc_wire_add_exception(struct cc_wire_keys *keys, struct cc_shard *out, const char *msg,
                           const char *traceback, uint64_t count, double now_s);

#endif
