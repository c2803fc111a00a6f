/* SPDX-License-Identifier: MIT */
/*
 * hist.h: a log-linear latency histogram (HdrHistogram's layout).
 *
 * Values are nanoseconds. Values below 128 ns are counted exactly; above that every power of
 * two is split into 64 linear sub-buckets, so a bucket's width is at most 1/64 of its lower
 * bound. A percentile is reported as the middle of its bucket, clamped to the exact minimum
 * and maximum, which bounds the relative error by 1/128 (0.79%). The range ends at 2^43 ns
 * (about 2.4 hours); larger values are counted in the last bucket, and min and max stay exact.
 *
 * Buckets are kept in 37 groups allocated on first use, so a histogram whose samples span a
 * few octaves costs a few kilobytes, and never more than about 20 KiB. Merging adds counts.
 * A histogram has one writer; nothing here is thread-safe.
 */
#ifndef CC_HIST_H
#define CC_HIST_H

#include "core/common.h"

#define CC_HIST_SUB_BITS  6
#define CC_HIST_SUB       (1u << CC_HIST_SUB_BITS) /* 64 linear buckets per octave */
#define CC_HIST_EXACT     (2u * CC_HIST_SUB)       /* values below this are exact */
#define CC_HIST_MAX_BITS  43                       /* range ends at 2^43 ns */
#define CC_HIST_MAX_VALUE ((1ull << CC_HIST_MAX_BITS) - 1)
#define CC_HIST_GROUPS    (1 + CC_HIST_MAX_BITS - CC_HIST_SUB_BITS - 1) /* 37 */
#define CC_HIST_BUCKETS   (CC_HIST_EXACT + (CC_HIST_GROUPS - 1) * CC_HIST_SUB)

struct cc_hist {
    uint64_t total;                  /* samples recorded */
    uint64_t min;                    /* exact smallest sample, UINT64_MAX when empty */
    uint64_t max;                    /* exact largest sample (unclamped) */
    uint64_t *group[CC_HIST_GROUPS]; /* group 0: CC_HIST_EXACT counters; others CC_HIST_SUB */
};

void cc_hist_init(struct cc_hist *h);
/* Frees the bucket groups; |h| may be initialised again. */
void cc_hist_release(struct cc_hist *h);
/* Zeroes the counts, keeping allocated groups for reuse. */
void cc_hist_clear(struct cc_hist *h);

/* Bucket index of |v| (clamped to the range). */
static inline unsigned cc_hist_index(uint64_t v)
{
    if (v < CC_HIST_EXACT) return (unsigned)v;
    if (v > CC_HIST_MAX_VALUE) v = CC_HIST_MAX_VALUE;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - CC_HIST_SUB_BITS;
    return CC_HIST_EXACT + (shift - 1) * CC_HIST_SUB + (unsigned)((v >> shift) - CC_HIST_SUB);
}

/* Lowest value counted by bucket |idx|, and the bucket's width. */
uint64_t cc_hist_bucket_low(unsigned idx);
uint64_t cc_hist_bucket_width(unsigned idx);

uint64_t *cc_hist_group_alloc(struct cc_hist *h, unsigned g);

/* Adds |n| samples of value |v| nanoseconds. Allocates only the first time a group is used. */
static inline void cc_hist_record_n(struct cc_hist *h, uint64_t v, uint64_t n)
{
    unsigned idx = cc_hist_index(v);
    unsigned g, off;
    if (idx < CC_HIST_EXACT) {
        g = 0;
        off = idx;
    } else {
        g = 1 + (idx - CC_HIST_EXACT) / CC_HIST_SUB;
        off = (idx - CC_HIST_EXACT) % CC_HIST_SUB;
    }
    uint64_t *c = h->group[g];
    if (CC_UNLIKELY(!c)) c = cc_hist_group_alloc(h, g);
    c[off] += n;
    h->total += n;
    if (v < h->min) h->min = v;
    if (v > h->max) h->max = v;
}

static inline void cc_hist_record(struct cc_hist *h, uint64_t v)
{
    cc_hist_record_n(h, v, 1);
}

/* Count in bucket |idx|. */
uint64_t cc_hist_count_at(const struct cc_hist *h, unsigned idx);

/* Adds every sample of |src| to |dst|. */
void cc_hist_merge(struct cc_hist *dst, const struct cc_hist *src);

/*
 * The value at percentile |p| (0 to 1): the sample of 0-based rank min(floor(total * p),
 * total - 1) in ascending order, as Locust ranks them, reported as the middle of its bucket
 * clamped to [min, max]. Returns 0 for an empty histogram.
 */
uint64_t cc_hist_value_at(const struct cc_hist *h, double p);

/* Fills |out[i]| with cc_hist_value_at(h, ps[i]) in one pass; |ps| must be ascending. */
void cc_hist_values_at(const struct cc_hist *h, const double *ps, size_t n, uint64_t *out);

/* Calls |fn| for every non-empty bucket in ascending order (for serialising). */
void cc_hist_foreach(const struct cc_hist *h, void (*fn)(void *ctx, unsigned idx, uint64_t count),
                     void *ctx);

#endif
