/* SPDX-License-Identifier: MIT */
/* hist.c: the log-linear latency histogram; see hist.h for the layout and the error bound. */
#include "stats/hist.h"

#include <string.h>

static unsigned group_size(unsigned g)
{
    return g == 0 ? CC_HIST_EXACT : CC_HIST_SUB;
}

static unsigned group_first(unsigned g)
{
    return g == 0 ? 0 : CC_HIST_EXACT + (g - 1) * CC_HIST_SUB;
}

void cc_hist_init(struct cc_hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

void cc_hist_release(struct cc_hist *h)
{
    for (unsigned g = 0; g < CC_HIST_GROUPS; g++)
        cc_free(h->group[g]);
    cc_hist_init(h);
}

void cc_hist_clear(struct cc_hist *h)
{
    if (h->total == 0) return;
    for (unsigned g = 0; g < CC_HIST_GROUPS; g++)
        if (h->group[g]) memset(h->group[g], 0, group_size(g) * sizeof(uint64_t));
    h->total = 0;
    h->min = UINT64_MAX;
    h->max = 0;
}

uint64_t *cc_hist_group_alloc(struct cc_hist *h, unsigned g)
{
    h->group[g] = cc_xcalloc(group_size(g), sizeof(uint64_t));
    return h->group[g];
}

uint64_t cc_hist_bucket_low(unsigned idx)
{
    if (idx < CC_HIST_EXACT) return idx;
    unsigned j = idx - CC_HIST_EXACT;
    unsigned shift = j / CC_HIST_SUB + 1;
    return (uint64_t)(j % CC_HIST_SUB + CC_HIST_SUB) << shift;
}

uint64_t cc_hist_bucket_width(unsigned idx)
{
    if (idx < CC_HIST_EXACT) return 1;
    return 1ull << ((idx - CC_HIST_EXACT) / CC_HIST_SUB + 1);
}

uint64_t cc_hist_count_at(const struct cc_hist *h, unsigned idx)
{
    unsigned g = idx < CC_HIST_EXACT ? 0 : 1 + (idx - CC_HIST_EXACT) / CC_HIST_SUB;
    const uint64_t *c = h->group[g];
    return c ? c[idx - group_first(g)] : 0;
}

void cc_hist_merge(struct cc_hist *dst, const struct cc_hist *src)
{
    if (src->total == 0) return;
    for (unsigned g = 0; g < CC_HIST_GROUPS; g++) {
        const uint64_t *s = src->group[g];
        if (!s) continue;
        uint64_t *d = dst->group[g];
        if (!d) d = cc_hist_group_alloc(dst, g);
        for (unsigned i = 0; i < group_size(g); i++)
            d[i] += s[i];
    }
    dst->total += src->total;
    if (src->min < dst->min) dst->min = src->min;
    if (src->max > dst->max) dst->max = src->max;
}

static uint64_t representative(const struct cc_hist *h, unsigned idx)
{
    uint64_t v = cc_hist_bucket_low(idx) + cc_hist_bucket_width(idx) / 2;
    if (idx < CC_HIST_EXACT) v = idx;
    if (v < h->min) v = h->min;
    if (v > h->max) v = h->max;
    return v;
}

static uint64_t rank_of(uint64_t total, double p)
{
    if (p <= 0) return 0;
    double r = (double)total * p;
    uint64_t k = r >= (double)total ? total : (uint64_t)r;
    return k >= total ? total - 1 : k;
}

void cc_hist_values_at(const struct cc_hist *h, const double *ps, size_t n, uint64_t *out)
{
    if (h->total == 0) {
        for (size_t i = 0; i < n; i++)
            out[i] = 0;
        return;
    }
    size_t i = 0;
    uint64_t seen = 0; /* samples in the buckets already passed */
    for (unsigned g = 0; g < CC_HIST_GROUPS && i < n; g++) {
        const uint64_t *c = h->group[g];
        if (!c) continue;
        for (unsigned j = 0; j < group_size(g) && i < n; j++) {
            if (!c[j]) continue;
            seen += c[j];
            /* every percentile whose rank falls inside this bucket takes its value */
            while (i < n && rank_of(h->total, ps[i]) < seen)
                out[i++] = representative(h, group_first(g) + j);
        }
    }
    while (i < n)
        out[i++] = h->max;
}

uint64_t cc_hist_value_at(const struct cc_hist *h, double p)
{
    uint64_t v;
    cc_hist_values_at(h, &p, 1, &v);
    return v;
}

void cc_hist_foreach(const struct cc_hist *h, void (*fn)(void *ctx, unsigned idx, uint64_t count),
                     void *ctx)
{
    for (unsigned g = 0; g < CC_HIST_GROUPS; g++) {
        const uint64_t *c = h->group[g];
        if (!c) continue;
        for (unsigned j = 0; j < group_size(g); j++)
            if (c[j]) fn(ctx, group_first(g) + j, c[j]);
    }
}
