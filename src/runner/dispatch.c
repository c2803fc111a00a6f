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
    d->allowed = cc_xmalloc(nclasses * sizeof(*d->allowed));
    for (uint32_t c = 0; c < nclasses; c++)
        d->allowed[c] = true;
    d->by_class = cc_xcalloc(nclasses, sizeof(*d->by_class));
    d->nby = cc_xcalloc(nclasses, sizeof(*d->nby));
    d->capby = cc_xcalloc(nclasses, sizeof(*d->capby));
}

void cc_dispatch_release(struct cc_dispatch *d)
{
    cc_free(d->weight);
    cc_free(d->fixed);
    cc_free(d->count);
    cc_free(d->wcount);
    cc_free(d->wtotal);
    cc_free(d->log);
    for (uint32_t c = 0; c < d->nclasses && d->by_class; c++)
        cc_free(d->by_class[c]);
    cc_free(d->by_class);
    cc_free(d->nby);
    cc_free(d->capby);
    cc_free(d->allowed);
    memset(d, 0, sizeof(*d));
}

static int next_class(const struct cc_dispatch *d)
{
    for (uint32_t c = 0; c < d->nclasses; c++)
        if (d->allowed[c] && d->fixed[c] && d->count[c] < d->fixed[c]) return (int)c;

    double total_w = 0;
    uint64_t weighted = 0;
    for (uint32_t c = 0; c < d->nclasses; c++) {
        if (d->fixed[c] || !d->allowed[c]) continue;
        total_w += d->weight[c];
        weighted += d->count[c];
    }
    if (total_w <= 0) return -1;
    /* the class furthest below its share once this user is added; ties go to the first */
    int best = -1;
    double best_gap = 0;
    for (uint32_t c = 0; c < d->nclasses; c++) {
        if (d->fixed[c] || d->weight[c] <= 0 || !d->allowed[c]) continue;
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
    cc_dispatch_add_class(d, (uint32_t)c, out);
    return true;
}

void cc_dispatch_add_class(struct cc_dispatch *d, uint32_t cls, struct cc_dispatch_entry *out)
{
    CC_ASSERT(cls < d->nclasses);
    uint32_t w = next_worker(d, cls);
    d->count[cls]++;
    d->wcount[w * d->nclasses + cls]++;
    d->wtotal[w]++;
    cc_grow((void **)&d->log, &d->cap, d->nlog + 1, sizeof(*d->log));
    d->log[d->nlog] = (struct cc_dispatch_entry){.cls = cls, .worker = w};
    cc_grow((void **)&d->by_class[cls], &d->capby[cls], d->nby[cls] + 1, sizeof(size_t));
    d->by_class[cls][d->nby[cls]++] = d->nlog;
    *out = d->log[d->nlog++];
    d->live++;
}

static void take(struct cc_dispatch *d, size_t pos, struct cc_dispatch_entry *out)
{
    struct cc_dispatch_entry *e = &d->log[pos];
    e->gone = true;
    d->count[e->cls]--;
    d->wcount[e->worker * d->nclasses + e->cls]--;
    d->wtotal[e->worker]--;
    d->live--;
    *out = *e;
    while (d->nlog && d->log[d->nlog - 1].gone) /* the log ends with a live entry */
        d->nlog--;
}

bool cc_dispatch_remove(struct cc_dispatch *d, struct cc_dispatch_entry *out)
{
    if (d->live == 0) return false;
    size_t pos = d->nlog - 1; /* live: take() trims gone entries off the end */
    uint32_t cls = d->log[pos].cls;
    CC_ASSERT(d->nby[cls] && d->by_class[cls][d->nby[cls] - 1] == pos);
    d->nby[cls]--;
    take(d, pos, out);
    return true;
}

bool cc_dispatch_remove_class(struct cc_dispatch *d, uint32_t cls, struct cc_dispatch_entry *out)
{
    if (cls >= d->nclasses || d->nby[cls] == 0) return false;
    size_t pos = d->by_class[cls][--d->nby[cls]];
    take(d, pos, out);
    return true;
}

void cc_dispatch_set_allowed(struct cc_dispatch *d, const bool *allowed)
{
    for (uint32_t c = 0; c < d->nclasses; c++)
        d->allowed[c] = allowed ? allowed[c] : true;
}

int cc_dispatch_disallowed(const struct cc_dispatch *d)
{
    for (uint32_t c = 0; c < d->nclasses; c++)
        if (!d->allowed[c] && d->count[c]) return (int)c;
    return -1;
}

void cc_dispatch_clear(struct cc_dispatch *d)
{
    memset(d->count, 0, d->nclasses * sizeof(*d->count));
    memset(d->wcount, 0, (size_t)d->nclasses * d->nworkers * sizeof(*d->wcount));
    memset(d->wtotal, 0, d->nworkers * sizeof(*d->wtotal));
    memset(d->nby, 0, d->nclasses * sizeof(*d->nby));
    d->nlog = 0;
    d->live = 0;
}
