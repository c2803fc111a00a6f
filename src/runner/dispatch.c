/* SPDX-License-Identifier: MIT */
/* dispatch.c: user class and worker choice for each new user; see dispatch.h. */
#include "runner/dispatch.h"

#include <string.h>

void cc_dispatch_init(struct cc_dispatch *d, uint32_t nclasses, const double *weight,
                      const uint32_t *fixed, uint32_t nworkers)
{
    memset(d, 0, sizeof(*d));
    d->nclasses = nclasses;
    d->nworkers = nworkers;
    d->weight = cc_xmalloc(nclasses * sizeof(*d->weight));
    d->fixed = cc_xmalloc(nclasses * sizeof(*d->fixed));
    memcpy(d->weight, weight, nclasses * sizeof(*d->weight));
    memcpy(d->fixed, fixed, nclasses * sizeof(*d->fixed));
    d->count = cc_xcalloc(nclasses, sizeof(*d->count));
    d->wcount = cc_xcalloc((size_t)nclasses * nworkers, sizeof(*d->wcount));
    d->wtotal = cc_xcalloc(nworkers, sizeof(*d->wtotal));
}

void cc_dispatch_release(struct cc_dispatch *d)
{
    cc_free(d->weight);
    cc_free(d->fixed);
    cc_free(d->count);
    cc_free(d->wcount);
    cc_free(d->wtotal);
    cc_free(d->log);
    memset(d, 0, sizeof(*d));
}

static int next_class(const struct cc_dispatch *d)
{
    for (uint32_t c = 0; c < d->nclasses; c++)
        if (d->fixed[c] && d->count[c] < d->fixed[c]) return (int)c;

    double total_w = 0;
    uint64_t weighted = 0;
    for (uint32_t c = 0; c < d->nclasses; c++) {
        if (d->fixed[c]) continue;
        total_w += d->weight[c];
        weighted += d->count[c];
    }
    if (total_w <= 0) return -1;
    /* the class furthest below its share once this user is added; ties go to the first */
    int best = -1;
    double best_gap = 0;
    for (uint32_t c = 0; c < d->nclasses; c++) {
        if (d->fixed[c] || d->weight[c] <= 0) continue;
        double gap = (double)(weighted + 1) * d->weight[c] / total_w - (double)d->count[c];
        if (best < 0 || gap > best_gap + 1e-9) {
            best = (int)c;
            best_gap = gap;
        }
    }
    return best;
}

static uint32_t next_worker(const struct cc_dispatch *d, uint32_t cls)
{
    uint32_t best = 0;
    for (uint32_t w = 1; w < d->nworkers; w++) {
        uint32_t a = d->wcount[w * d->nclasses + cls], b = d->wcount[best * d->nclasses + cls];
        if (a < b || (a == b && d->wtotal[w] < d->wtotal[best])) best = w;
    }
    return best;
}

bool cc_dispatch_add(struct cc_dispatch *d, struct cc_dispatch_entry *out)
{
    int c = next_class(d);
    if (c < 0) return false;
    uint32_t cls = (uint32_t)c;
    uint32_t w = next_worker(d, cls);
    d->count[cls]++;
    d->wcount[w * d->nclasses + cls]++;
    d->wtotal[w]++;
    cc_grow((void **)&d->log, &d->cap, d->nlog + 1, sizeof(*d->log));
    d->log[d->nlog].cls = cls;
    d->log[d->nlog].worker = w;
    *out = d->log[d->nlog++];
    return true;
}

bool cc_dispatch_remove(struct cc_dispatch *d, struct cc_dispatch_entry *out)
{
    if (d->nlog == 0) return false;
    *out = d->log[--d->nlog];
    d->count[out->cls]--;
    d->wcount[out->worker * d->nclasses + out->cls]--;
    d->wtotal[out->worker]--;
    return true;
}

void cc_dispatch_clear(struct cc_dispatch *d)
{
    memset(d->count, 0, d->nclasses * sizeof(*d->count));
    memset(d->wcount, 0, (size_t)d->nclasses * d->nworkers * sizeof(*d->wcount));
    memset(d->wtotal, 0, d->nworkers * sizeof(*d->wtotal));
    d->nlog = 0;
}
