/* SPDX-License-Identifier: MIT */
/* stats.c: worker shards, the control thread's aggregate, and the values derived from it. */
#include "stats/stats.h"

#include <stdlib.h>
#include <string.h>

const double cc_percentiles[CC_NPERCENTILES] = {0.50, 0.66, 0.75,  0.80,   0.90, 0.95,
                                                0.98, 0.99, 0.999, 0.9999, 1.0};
const char *const cc_percentile_labels[CC_NPERCENTILES] = {
    "50%", "66%", "75%", "80%", "90%", "95%", "98%", "99%", "99.9%", "99.99%", "100%"};

/* ---- shard ------------------------------------------------------------------------------ */

void cc_shard_init(struct cc_shard *s)
{
    memset(s, 0, sizeof(*s));
}

void cc_shard_release(struct cc_shard *s)
{
    for (size_t i = 0; i < s->cells_cap; i++) {
        cc_hist_release(&s->cells[i].hist);
        cc_hist_release(&s->cells[i].ihist);
    }
    cc_free(s->cells);
    cc_free(s->dropped);
    cc_free(s->dirty);
    cc_free(s->fails);
    cc_free(s->fdirty);
    cc_free(s->excs);
    cc_free(s->edirty);
    cc_shard_init(s);
}

static void clear_counts(struct cc_shard_count *c, uint32_t *dirty, size_t *ndirty)
{
    for (size_t i = 0; i < *ndirty; i++) {
        struct cc_shard_count *x = &c[dirty[i]];
        x->n = 0;
        x->dirty = false;
        x->key = NULL;
    }
    *ndirty = 0;
}

void cc_shard_clear(struct cc_shard *s)
{
    for (size_t i = 0; i < s->ndirty; i++) {
        struct cc_shard_cell *c = &s->cells[s->dirty[i]];
        c->count = c->failures = c->bytes = c->sum_ns = 0;
        c->last_s = 0;
        c->dirty = false;
        c->key = NULL;
        cc_hist_clear(&c->hist);
        cc_hist_clear(&c->ihist);
    }
    s->ndirty = 0;
    if (s->dropped) memset(s->dropped, 0, s->dropped_cap * sizeof(*s->dropped));
    clear_counts(s->fails, s->fdirty, &s->nfdirty);
    clear_counts(s->excs, s->edirty, &s->nedirty);
}

static void grow_cells(struct cc_shard *s, size_t need)
{
    size_t old = s->cells_cap;
    cc_grow((void **)&s->cells, &s->cells_cap, need, sizeof(*s->cells));
    for (size_t i = old; i < s->cells_cap; i++) {
        memset(&s->cells[i], 0, sizeof(s->cells[i]));
        cc_hist_init(&s->cells[i].hist);
        cc_hist_init(&s->cells[i].ihist);
    }
}

static struct cc_shard_count *count_slot(struct cc_shard_count **arr, size_t *cap, uint32_t **dirty,
                                         size_t *ndirty, size_t *dirty_cap,
                                         const struct cc_ikey *key)
{
    if (key->id >= *cap) {
        size_t old = *cap;
        cc_grow((void **)arr, cap, key->id + 1, sizeof(**arr));
        memset(*arr + old, 0, (*cap - old) * sizeof(**arr));
    }
    struct cc_shard_count *c = &(*arr)[key->id];
    if (!c->dirty) {
        c->dirty = true;
        c->key = key;
        cc_grow((void **)dirty, dirty_cap, *ndirty + 1, sizeof(**dirty));
        (*dirty)[(*ndirty)++] = key->id;
    }
    return c;
}

/* ---- recorder --------------------------------------------------------------------------- */

void cc_recorder_init(struct cc_recorder *r, struct cc_shard *active)
{
    memset(r, 0, sizeof(*r));
    cc_intern_init(&r->names);
    cc_intern_init(&r->failures);
    cc_intern_init(&r->exceptions);
    r->shard = active;
    r->now_s = cc_wall_s();
}

void cc_recorder_release(struct cc_recorder *r)
{
    cc_intern_release(&r->names);
    cc_intern_release(&r->failures);
    cc_intern_release(&r->exceptions);
}

const struct cc_ikey *cc_recorder_key(struct cc_recorder *r, const char *type, size_t type_len,
                                      const char *name, size_t name_len)
{
    const struct cc_ikey **slot = &r->recent[((uintptr_t)name >> 4) % CC_ARRAY_LEN(r->recent)];
    const struct cc_ikey *k = *slot;
    if (k && k->len[1] == name_len && k->len[0] == type_len &&
        memcmp(k->part[1], name, name_len) == 0 && memcmp(k->part[0], type, type_len) == 0)
        return k;
    return *slot = cc_intern_get2(&r->names, type, type_len, name, name_len);
}

/* Interns a failure or exception key, folding new keys past the cap into one overflow key. */
static const struct cc_ikey *bounded_key(struct cc_intern *t, const char **part, size_t *len,
                                         unsigned nparts)
{
    uint64_t h = cc_intern_hash(part, len, nparts);
    const struct cc_ikey *k = cc_intern_find(t, part, len, nparts, h);
    if (k) return k;
    if (t->count >= CC_MAX_DISTINCT_ERRORS) {
        part[nparts - 1] = CC_OVERFLOW_ERROR;
        len[nparts - 1] = strlen(CC_OVERFLOW_ERROR);
        h = cc_intern_hash(part, len, nparts);
    }
    return cc_intern_get(t, part, len, nparts, h, NULL);
}

static struct cc_shard_cell *cell_of(struct cc_shard *s, const struct cc_ikey *key)
{
    if (CC_UNLIKELY(key->id >= s->cells_cap)) grow_cells(s, key->id + 1);
    struct cc_shard_cell *c = &s->cells[key->id];
    if (CC_UNLIKELY(!c->dirty)) {
        c->dirty = true;
        c->key = key;
        cc_grow((void **)&s->dirty, &s->dirty_cap, s->ndirty + 1, sizeof(*s->dirty));
        s->dirty[s->ndirty++] = key->id;
    }
    return c;
}

void cc_recorder_intended(struct cc_recorder *r, const struct cc_ikey *key, uint64_t ns)
{
    cc_hist_record(&cell_of(r->shard, key)->ihist, ns);
}

void cc_recorder_dropped(struct cc_recorder *r, uint32_t cls)
{
    struct cc_shard *s = r->shard;
    if (cls >= s->dropped_cap) {
        size_t old = s->dropped_cap;
        cc_grow((void **)&s->dropped, &s->dropped_cap, cls + 1, sizeof(*s->dropped));
        memset(s->dropped + old, 0, (s->dropped_cap - old) * sizeof(*s->dropped));
    }
    s->dropped[cls]++;
}

void cc_recorder_request(struct cc_recorder *r, const struct cc_ikey *key, uint64_t response_ns,
                         uint64_t length, const char *error, size_t error_len)
{
    struct cc_shard *s = r->shard;
    struct cc_shard_cell *c = cell_of(s, key);
    c->count++;
    c->bytes += length;
    c->sum_ns += response_ns;
    c->last_s = r->now_s;
    cc_hist_record(&c->hist, response_ns);
    if (!error) return;

    c->failures++;
    const char *part[3] = {key->part[0], key->part[1], error};
    size_t len[3] = {key->len[0], key->len[1], error_len};
    const struct cc_ikey *fk = bounded_key(&r->failures, part, len, 3);
    struct cc_shard_count *f =
        count_slot(&s->fails, &s->fails_cap, &s->fdirty, &s->nfdirty, &s->fdirty_cap, fk);
    if (f->n++ == 0) f->first_s = r->now_s;
    f->last_s = r->now_s;
}

void cc_recorder_exception(struct cc_recorder *r, const char *msg, size_t msg_len, const char *tb,
                           size_t tb_len)
{
    struct cc_shard *s = r->shard;
    const char *part[2] = {msg, tb};
    size_t len[2] = {msg_len, tb_len};
    const struct cc_ikey *k = bounded_key(&r->exceptions, part, len, 2);
    struct cc_shard_count *e =
        count_slot(&s->excs, &s->excs_cap, &s->edirty, &s->nedirty, &s->edirty_cap, k);
    if (e->n++ == 0) e->first_s = r->now_s;
    e->last_s = r->now_s;
}

/* ---- aggregate -------------------------------------------------------------------------- */

static void entry_init(struct cc_entry *e, const struct cc_ikey *key, bool window)
{
    memset(e, 0, sizeof(*e));
    e->key = key;
    cc_hist_init(&e->hist);
    cc_hist_init(&e->ihist);
    if (window) {
        e->window = cc_xcalloc(CC_CURRENT_WINDOW, sizeof(*e->window));
        for (unsigned i = 0; i < CC_CURRENT_WINDOW; i++)
            cc_hist_init(&e->window[i]);
    }
}

static void entry_release(struct cc_entry *e)
{
    cc_hist_release(&e->hist);
    cc_hist_release(&e->ihist);
    if (e->window) {
        for (unsigned i = 0; i < CC_CURRENT_WINDOW; i++)
            cc_hist_release(&e->window[i]);
        cc_free(e->window);
    }
}

static void entry_reset(struct cc_entry *e)
{
    e->count = e->failures = e->bytes = 0;
    e->sum_ms = 0;
    e->last_s = 0;
    cc_hist_clear(&e->hist);
    cc_hist_clear(&e->ihist);
    memset(e->ring_count, 0, sizeof(e->ring_count));
    memset(e->ring_fail, 0, sizeof(e->ring_fail));
    if (e->window)
        for (unsigned i = 0; i < CC_CURRENT_WINDOW; i++)
            cc_hist_clear(&e->window[i]);
}

void cc_agg_init(struct cc_agg *a, bool window_all)
{
    memset(a, 0, sizeof(*a));
    cc_intern_init(&a->names);
    cc_intern_init(&a->fail_keys);
    cc_intern_init(&a->exc_keys);
    entry_init(&a->total, NULL, true);
    a->window_all = window_all;
    a->start_s = cc_wall_s();
}

void cc_agg_release(struct cc_agg *a)
{
    for (size_t i = 0; i < a->nentries; i++) {
        entry_release(a->entries[i]);
        cc_free(a->entries[i]);
    }
    cc_free(a->entries);
    entry_release(&a->total);
    cc_intern_release(&a->names);
    cc_intern_release(&a->fail_keys);
    cc_intern_release(&a->exc_keys);
    cc_free(a->fails);
    cc_free(a->excs);
    cc_free(a->dropped);
}

void cc_agg_reset(struct cc_agg *a, double now_s)
{
    for (size_t i = 0; i < a->nentries; i++)
        entry_reset(a->entries[i]);
    entry_reset(&a->total);
    /* failures and exceptions are forgotten entirely; their key tables start over */
    cc_intern_release(&a->fail_keys);
    cc_intern_release(&a->exc_keys);
    cc_free(a->fails);
    cc_free(a->excs);
    a->fails = NULL;
    a->excs = NULL;
    a->fails_cap = a->excs_cap = 0;
    a->start_s = now_s;
    a->intervals = 0;
    if (a->dropped) memset(a->dropped, 0, a->dropped_cap * sizeof(*a->dropped));
}

static unsigned slot(uint64_t interval)
{
    return (unsigned)(interval % CC_RING);
}

void cc_agg_open_interval(struct cc_agg *a, uint64_t t_ns)
{
    unsigned s = slot(a->intervals);
    unsigned w = (unsigned)(a->intervals % CC_CURRENT_WINDOW);
    a->ring_t0[s] = t_ns;
    a->ring_t1[s] = t_ns;
    for (size_t i = 0; i <= a->nentries; i++) {
        struct cc_entry *e = i < a->nentries ? a->entries[i] : &a->total;
        e->ring_count[s] = 0;
        e->ring_fail[s] = 0;
        if (e->window) cc_hist_clear(&e->window[w]);
    }
}

void cc_agg_close_interval(struct cc_agg *a, uint64_t t_ns)
{
    a->ring_t1[slot(a->intervals)] = t_ns;
    a->intervals++;
}

static struct cc_entry *entry_for(struct cc_agg *a, const struct cc_ikey *wkey)
{
    bool added;
    const struct cc_ikey *k = cc_intern_get_key(&a->names, wkey, &added);
    if (added) {
        struct cc_entry *e = cc_xmalloc(sizeof(*e));
        entry_init(e, k, a->window_all);
        cc_grow((void **)&a->entries, &a->entries_cap, a->nentries + 1, sizeof(*a->entries));
        a->entries[a->nentries++] = e;
    }
    return a->entries[k->id];
}

static void add_cell(struct cc_agg *a, struct cc_entry *e, const struct cc_shard_cell *c)
{
    unsigned s = slot(a->intervals);
    e->count += c->count;
    e->failures += c->failures;
    e->bytes += c->bytes;
    e->sum_ms += (double)c->sum_ns / 1e6;
    if (c->last_s > e->last_s) e->last_s = c->last_s;
    cc_hist_merge(&e->hist, &c->hist);
    cc_hist_merge(&e->ihist, &c->ihist);
    e->ring_count[s] += (uint32_t)c->count;
    e->ring_fail[s] += (uint32_t)c->failures;
    if (e->window) cc_hist_merge(&e->window[a->intervals % CC_CURRENT_WINDOW], &c->hist);
}

void cc_agg_merge(struct cc_agg *a, const struct cc_shard *s, unsigned worker)
{
    for (size_t i = 0; i < s->dropped_cap; i++) {
        if (!s->dropped[i]) continue;
        if (i >= a->dropped_cap) {
            size_t old = a->dropped_cap;
            cc_grow((void **)&a->dropped, &a->dropped_cap, i + 1, sizeof(*a->dropped));
            memset(a->dropped + old, 0, (a->dropped_cap - old) * sizeof(*a->dropped));
        }
        a->dropped[i] += s->dropped[i];
    }
    for (size_t i = 0; i < s->ndirty; i++) {
        const struct cc_shard_cell *c = &s->cells[s->dirty[i]];
        add_cell(a, entry_for(a, c->key), c);
        add_cell(a, &a->total, c);
    }
    for (size_t i = 0; i < s->nfdirty; i++) {
        const struct cc_shard_count *c = &s->fails[s->fdirty[i]];
        bool added;
        const struct cc_ikey *k = cc_intern_get_key(&a->fail_keys, c->key, &added);
        if (added) {
            size_t old = a->fails_cap;
            cc_grow((void **)&a->fails, &a->fails_cap, k->id + 1, sizeof(*a->fails));
            memset(a->fails + old, 0, (a->fails_cap - old) * sizeof(*a->fails));
            a->fails[k->id].key = k;
            a->fails[k->id].first_s = c->first_s;
        }
        struct cc_failure *f = &a->fails[k->id];
        f->occurrences += c->n;
        if (c->first_s < f->first_s) f->first_s = c->first_s;
        if (c->last_s > f->last_s) f->last_s = c->last_s;
    }
    for (size_t i = 0; i < s->nedirty; i++) {
        const struct cc_shard_count *c = &s->excs[s->edirty[i]];
        bool added;
        const struct cc_ikey *k = cc_intern_get_key(&a->exc_keys, c->key, &added);
        if (added) {
            size_t old = a->excs_cap;
            cc_grow((void **)&a->excs, &a->excs_cap, k->id + 1, sizeof(*a->excs));
            memset(a->excs + old, 0, (a->excs_cap - old) * sizeof(*a->excs));
            a->excs[k->id].key = k;
        }
        a->excs[k->id].count += c->n;
        if (worker < 64) a->excs[k->id].nodes |= 1ull << worker;
    }
}

/* ---- derived values --------------------------------------------------------------------- */

double cc_entry_avg_ms(const struct cc_entry *e)
{
    return e->count ? e->sum_ms / (double)e->count : 0;
}

double cc_entry_min_ms(const struct cc_entry *e)
{
    return e->count ? (double)e->hist.min / 1e6 : 0;
}

double cc_entry_max_ms(const struct cc_entry *e)
{
    return e->count ? (double)e->hist.max / 1e6 : 0;
}

double cc_entry_percentile_ms(const struct cc_entry *e, double p)
{
    return (double)cc_hist_value_at(&e->hist, p) / 1e6;
}

void cc_entry_percentiles_ms(const struct cc_entry *e, const double *ps, size_t n, double *out)
{
    uint64_t v[32];
    CC_ASSERT(n <= CC_ARRAY_LEN(v));
    cc_hist_values_at(&e->hist, ps, n, v);
    for (size_t i = 0; i < n; i++)
        out[i] = (double)v[i] / 1e6;
}

bool cc_entry_intended_percentiles_ms(const struct cc_entry *e, const double *ps, size_t n,
                                      double *out)
{
    if (e->ihist.total == 0) return false;
    uint64_t v[32];
    CC_ASSERT(n <= CC_ARRAY_LEN(v));
    cc_hist_values_at(&e->ihist, ps, n, v);
    for (size_t i = 0; i < n; i++)
        out[i] = (double)v[i] / 1e6;
    return true;
}

double cc_entry_fail_ratio(const struct cc_entry *e)
{
    if (!e->count) return e->failures ? 1.0 : 0.0;
    return (double)e->failures / (double)e->count;
}

double cc_entry_avg_bytes(const struct cc_entry *e)
{
    return e->count ? (double)e->bytes / (double)e->count : 0;
}

static double run_span(const struct cc_agg *a, const struct cc_entry *e)
{
    double span = e->last_s - a->start_s;
    return span > 1e-9 ? span : 1e-9;
}

double cc_entry_total_rps(const struct cc_agg *a, const struct cc_entry *e)
{
    return e->count ? (double)e->count / run_span(a, e) : 0;
}

double cc_entry_total_fail_per_s(const struct cc_agg *a, const struct cc_entry *e)
{
    return e->failures ? (double)e->failures / run_span(a, e) : 0;
}

/* The closed intervals that make up the current window: [first, a->intervals). */
static uint64_t window_first(const struct cc_agg *a)
{
    return a->intervals > CC_CURRENT_WINDOW ? a->intervals - CC_CURRENT_WINDOW : 0;
}

static double window_rate(const struct cc_agg *a, const uint32_t *ring)
{
    if (!a->intervals) return 0;
    uint64_t first = window_first(a);
    uint64_t sum = 0;
    for (uint64_t i = first; i < a->intervals; i++)
        sum += ring[slot(i)];
    uint64_t t0 = a->ring_t0[slot(first)];
    uint64_t t1 = a->ring_t1[slot(a->intervals - 1)];
    double span = (double)(t1 - t0) / 1e9;
    return span > 1e-9 ? (double)sum / span : 0;
}

double cc_entry_current_rps(const struct cc_agg *a, const struct cc_entry *e)
{
    return window_rate(a, e->ring_count);
}

double cc_entry_current_fail_per_s(const struct cc_agg *a, const struct cc_entry *e)
{
    return window_rate(a, e->ring_fail);
}

bool cc_entry_current_percentiles_ms(const struct cc_agg *a, const struct cc_entry *e,
                                     const double *ps, size_t n, double *out)
{
    if (!e->window) return false;
    struct cc_hist sum;
    cc_hist_init(&sum);
    /* the open interval's histogram is excluded: it is still being filled */
    uint64_t open = a->intervals;
    for (uint64_t i = window_first(a); i < open; i++)
        cc_hist_merge(&sum, &e->window[i % CC_CURRENT_WINDOW]);
    uint64_t v[32];
    CC_ASSERT(n <= CC_ARRAY_LEN(v));
    cc_hist_values_at(&sum, ps, n, v);
    for (size_t i = 0; i < n; i++)
        out[i] = (double)v[i] / 1e6;
    cc_hist_release(&sum);
    return true;
}

/* ---- ordering --------------------------------------------------------------------------- */

static int cmp_parts(const struct cc_ikey *x, const struct cc_ikey *y, const unsigned *order,
                     unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        int c = strcmp(x->part[order[i]], y->part[order[i]]);
        if (c) return c;
    }
    return 0;
}

static int cmp_entries(const void *pa, const void *pb)
{
    static const unsigned order[2] = {1, 0}; /* name, then type, as Locust sorts */
    return cmp_parts((*(struct cc_entry *const *)pa)->key, (*(struct cc_entry *const *)pb)->key,
                     order, 2);
}

struct cc_entry **cc_agg_sorted(const struct cc_agg *a, size_t *n)
{
    struct cc_entry **out = cc_xmalloc((a->nentries + 1) * sizeof(*out));
    size_t k = 0;
    for (size_t i = 0; i < a->nentries; i++)
        if (a->entries[i]->count) out[k++] = a->entries[i];
    qsort(out, k, sizeof(*out), cmp_entries);
    *n = k;
    return out;
}

static int cmp_failures(const void *pa, const void *pb)
{
    static const unsigned order[3] = {0, 1, 2};
    return cmp_parts((*(struct cc_failure *const *)pa)->key, (*(struct cc_failure *const *)pb)->key,
                     order, 3);
}

struct cc_failure **cc_agg_sorted_failures(const struct cc_agg *a, size_t *n)
{
    size_t count = a->fail_keys.count;
    struct cc_failure **out = cc_xmalloc((count + 1) * sizeof(*out));
    for (size_t i = 0; i < count; i++)
        out[i] = &a->fails[i];
    qsort(out, count, sizeof(*out), cmp_failures);
    *n = count;
    return out;
}

static int cmp_exceptions(const void *pa, const void *pb)
{
    const struct cc_exception *x = *(struct cc_exception *const *)pa;
    const struct cc_exception *y = *(struct cc_exception *const *)pb;
    if (x->count != y->count) return x->count < y->count ? 1 : -1;
    return x->key->id < y->key->id ? -1 : 1;
}

struct cc_exception **cc_agg_sorted_exceptions(const struct cc_agg *a, size_t *n)
{
    size_t count = a->exc_keys.count;
    struct cc_exception **out = cc_xmalloc((count + 1) * sizeof(*out));
    for (size_t i = 0; i < count; i++)
        out[i] = &a->excs[i];
    qsort(out, count, sizeof(*out), cmp_exceptions);
    *n = count;
    return out;
}
