/* SPDX-License-Identifier: MIT */
/* stats_wire.c: cc_agg deltas to Locust's stats message and back into shards; see stats_wire.h. */
#include "dist/stats_wire.h"
#include "core/err.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cc_wire_keys_init(struct cc_wire_keys *k)
{
    cc_intern_init(&k->names);
    cc_intern_init(&k->failures);
    cc_intern_init(&k->exceptions);
}

void cc_wire_keys_release(struct cc_wire_keys *k)
{
    cc_intern_release(&k->names);
    cc_intern_release(&k->failures);
    cc_intern_release(&k->exceptions);
}

/*
 * Python's round() rounds half to even, as rint() does in the default rounding mode; round(x, -1)
 * is round(x / 10) * 10 with the same rule (125 -> 120, 135 -> 140, 147.3 -> 150).
 */
int64_t cc_wire_locust_bucket(double ms)
{
    if (!(ms > 0)) return 0;
    if (ms > 9e15) ms = 9e15;
    if (ms < 100) return (int64_t)rint(ms);
    if (ms < 1000) return (int64_t)rint(ms / 10) * 10;
    if (ms < 10000) return (int64_t)rint(ms / 100) * 100;
    return (int64_t)rint(ms / 1000) * 1000;
}

/* ---- encoding --------------------------------------------------------------------------- */

struct kv {
    int64_t k;
    uint64_t n;
};

struct kvs {
    struct kv *v;
    size_t n, cap;
};

static void kvs_add(struct kvs *s, int64_t k, uint64_t n)
{
    if (s->n && s->v[s->n - 1].k == k) {
        s->v[s->n - 1].n += n;
        return;
    }
    cc_grow((void **)&s->v, &s->cap, s->n + 1, sizeof(*s->v));
    s->v[s->n++] = (struct kv){k, n};
}

static int kv_cmp(const void *pa, const void *pb)
{
    const struct kv *a = pa, *b = pb;
    return a->k < b->k ? -1 : a->k > b->k;
}

/* Sorts by key and adds up equal keys. */
static void kvs_normalise(struct kvs *s)
{
    if (s->n < 2) return;
    qsort(s->v, s->n, sizeof(*s->v), kv_cmp);
    size_t w = 0;
    for (size_t i = 1; i < s->n; i++) {
        if (s->v[i].k == s->v[w].k)
            s->v[w].n += s->v[i].n;
        else
            s->v[++w] = s->v[i];
    }
    s->n = w + 1;
}

static void pack_kvs(msgpack_packer *pk, const struct kvs *s)
{
    msgpack_pack_map(pk, s->n);
    for (size_t i = 0; i < s->n; i++) {
        msgpack_pack_int64(pk, s->v[i].k);
        msgpack_pack_uint64(pk, s->v[i].n);
    }
}

static void pack_key(msgpack_packer *pk, const char *k)
{
    msgpack_pack_str_with_body(pk, k, strlen(k));
}

/* The value a bucket stands for: its middle, clamped to the exact extremes (as hist.c does). */
static uint64_t bucket_value(const struct cc_hist *h, unsigned idx)
{
    uint64_t v =
        idx < CC_HIST_EXACT ? idx : cc_hist_bucket_low(idx) + cc_hist_bucket_width(idx) / 2;
    if (v < h->min) v = h->min;
    if (v > h->max) v = h->max;
    return v;
}

struct locust_ctx {
    const struct cc_hist *h;
    struct kvs *out;
};

static void to_locust_bucket(void *ctx, unsigned idx, uint64_t count)
{
    struct locust_ctx *c = ctx;
    /* bucket values ascend and rounding is monotonic, so equal keys are adjacent */
    kvs_add(c->out, cc_wire_locust_bucket((double)bucket_value(c->h, idx) / 1e6), count);
}

static void to_sparse(void *ctx, unsigned idx, uint64_t count)
{
    kvs_add(ctx, idx, count);
}

/*
 * Counts per epoch second from the per-interval ring: an interval's count goes to the second of
 * its middle; what the ring does not hold (intervals never opened, or older than the ring) goes
 * to the second of |last_s|.
 */
static void per_second(const struct cc_agg *a, const uint32_t *ring, uint64_t total, double last_s,
                       const struct cc_wire_report *r, struct kvs *out)
{
    out->n = 0;
    if (!total) return;
    uint64_t sum = 0;
    uint64_t lo = a->intervals >= CC_RING - 1 ? a->intervals - (CC_RING - 1) : 0;
    for (uint64_t i = lo; i <= a->intervals; i++) {
        unsigned s = (unsigned)(i % CC_RING);
        uint64_t c = ring[s];
        uint64_t t0 = a->ring_t0[s];
        if (!c || !t0 || sum + c > total) continue;
        uint64_t t1 = i < a->intervals ? a->ring_t1[s] : r->mono_now_ns;
        if (t1 < t0) t1 = t0;
        uint64_t mid = t0 + (t1 - t0) / 2;
        double epoch = r->wall_now_s - ((double)r->mono_now_ns - (double)mid) / 1e9;
        kvs_add(out, (int64_t)floor(epoch), c);
        sum += c;
    }
    if (sum < total) kvs_add(out, (int64_t)floor(last_s > 0 ? last_s : r->wall_now_s), total - sum);
    kvs_normalise(out);
}

/* Our histogram as {"min": ns, "max": ns, "buckets": {index: count}}. */
static void pack_exact(msgpack_packer *pk, const struct cc_hist *h, struct kvs *tmp)
{
    bool timed = h->total > 0;
    msgpack_pack_map(pk, 3);
    pack_key(pk, "min");
    msgpack_pack_uint64(pk, timed ? h->min : 0);
    pack_key(pk, "max");
    msgpack_pack_uint64(pk, timed ? h->max : 0);
    pack_key(pk, "buckets");
    tmp->n = 0;
    cc_hist_foreach(h, to_sparse, tmp);
    pack_kvs(pk, tmp);
}

struct enc {
    msgpack_packer *pk;
    const struct cc_agg *a;
    const struct cc_wire_report *r;
    struct kvs tmp;
};

static void pack_entry(struct enc *x, const struct cc_entry *e, const char *name,
                       const char *method)
{
    msgpack_packer *pk = x->pk;
    const struct cc_hist *h = &e->hist;
    bool timed = h->total > 0;
    bool intended = x->r->cicada_hist && e->ihist.total > 0;
    msgpack_pack_map(pk, 14 + x->r->cicada_hist + intended);
    pack_key(pk, "name");
    cc_mp_pack_str(pk, name);
    pack_key(pk, "method");
    cc_mp_pack_str(pk, method);
    pack_key(pk, "last_request_timestamp");
    if (e->last_s > 0)
        msgpack_pack_double(pk, e->last_s);
    else
        msgpack_pack_nil(pk);
    /* a request merged just after a reset may predate it: never start after the last request */
    pack_key(pk, "start_time");
    msgpack_pack_double(pk, e->last_s > 0 && e->last_s < x->a->start_s ? e->last_s : x->a->start_s);
    pack_key(pk, "num_requests");
    msgpack_pack_uint64(pk, e->count);
    pack_key(pk, "num_none_requests");
    msgpack_pack_uint64(pk, 0);
    pack_key(pk, "num_failures");
    msgpack_pack_uint64(pk, e->failures);
    pack_key(pk, "total_response_time");
    msgpack_pack_double(pk, e->sum_ms);
    pack_key(pk, "max_response_time");
    msgpack_pack_double(pk, timed ? (double)h->max / 1e6 : 0);
    pack_key(pk, "min_response_time");
    if (timed)
        msgpack_pack_double(pk, (double)h->min / 1e6);
    else
        msgpack_pack_nil(pk);
    pack_key(pk, "total_content_length");
    msgpack_pack_uint64(pk, e->bytes);

    pack_key(pk, "response_times");
    x->tmp.n = 0;
    struct locust_ctx lc = {h, &x->tmp};
    cc_hist_foreach(h, to_locust_bucket, &lc);
    pack_kvs(pk, &x->tmp);

    pack_key(pk, "num_reqs_per_sec");
    per_second(x->a, e->ring_count, e->count, e->last_s, x->r, &x->tmp);
    pack_kvs(pk, &x->tmp);
    pack_key(pk, "num_fail_per_sec");
    per_second(x->a, e->ring_fail, e->failures, e->last_s, x->r, &x->tmp);
    pack_kvs(pk, &x->tmp);

    if (x->r->cicada_hist) {
        pack_key(pk, CC_WIRE_HIST_FIELD);
        pack_exact(pk, h, &x->tmp);
    }
    if (intended) {
        pack_key(pk, CC_WIRE_IHIST_FIELD);
        pack_exact(pk, &e->ihist, &x->tmp);
    }
}

void cc_wire_pack_stats(msgpack_packer *pk, const struct cc_agg *delta,
                        const struct cc_wire_report *r0)
{
    struct cc_wire_report r = *r0;
    if (r.wall_now_s <= 0) {
        r.wall_now_s = cc_wall_s();
        r.mono_now_ns = cc_now_ns();
    }
    struct enc x = {.pk = pk, .a = delta, .r = &r};

    msgpack_pack_map(pk, 5);
    pack_key(pk, "stats");
    size_t n = 0;
    for (size_t i = 0; i < delta->nentries; i++)
        if (delta->entries[i]->count || delta->entries[i]->failures) n++;
    msgpack_pack_array(pk, n);
    for (size_t i = 0; i < delta->nentries; i++) {
        const struct cc_entry *e = delta->entries[i];
        if (e->count || e->failures) pack_entry(&x, e, e->key->part[1], e->key->part[0]);
    }
    pack_key(pk, "stats_total");
    pack_entry(&x, &delta->total, "Aggregated", "");

    pack_key(pk, "errors");
    size_t nf = 0;
    for (size_t i = 0; i < delta->fail_keys.count; i++)
        if (delta->fails[i].occurrences) nf++;
    msgpack_pack_map(pk, nf);
    for (size_t i = 0; i < delta->fail_keys.count; i++) {
        const struct cc_failure *f = &delta->fails[i];
        if (!f->occurrences) continue;
        /* any stable key will do: the master merges failures by it */
        char key[24];
        snprintf(key, sizeof(key), "%016llx", (unsigned long long)f->key->hash);
        pack_key(pk, key);
        msgpack_pack_map(pk, 6);
        pack_key(pk, "name");
        cc_mp_pack_str(pk, f->key->part[1]);
        pack_key(pk, "method");
        cc_mp_pack_str(pk, f->key->part[0]);
        pack_key(pk, "error");
        cc_mp_pack_str(pk, f->key->part[2]);
        pack_key(pk, "occurrences");
        msgpack_pack_uint64(pk, f->occurrences);
        pack_key(pk, "first_seen");
        msgpack_pack_double(pk, f->first_s);
        pack_key(pk, "last_seen");
        msgpack_pack_double(pk, f->last_s);
    }

    uint64_t users = 0;
    pack_key(pk, "user_classes_count");
    msgpack_pack_map(pk, r.nclasses);
    for (size_t i = 0; i < r.nclasses; i++) {
        uint32_t u = r.class_users ? r.class_users[i] : 0;
        users += u;
        cc_mp_pack_str(pk, r.class_names[i]);
        msgpack_pack_uint32(pk, u);
    }
    pack_key(pk, "user_count");
    msgpack_pack_uint64(pk, users);
    cc_free(x.tmp.v);
}

void cc_wire_stats_msg(struct cc_dbuf *b, const struct cc_agg *delta,
                       const struct cc_wire_report *r, const char *node_id)
{
    cc_dmsg_begin(b, "stats");
    cc_wire_pack_stats(&b->pk, delta, r);
    cc_dmsg_end(b, node_id);
}

/* ---- decoding into a shard ---------------------------------------------------------------- */

struct dec {
    struct cc_wire_keys *keys;
    struct cc_shard *out;
    double now_s;
    char *err;
    size_t errlen;
    struct cc_hist h, ih; /* scratch: response times, and from the intended start */
};

static int bad(struct dec *d, const char *fmt, ...) CC_PRINTF(2, 3);
static int bad(struct dec *d, const char *fmt, ...)
{
    if (d->err && d->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(d->err, d->errlen, fmt, ap);
        va_end(ap);
    }
    return CC_EPROTO;
}

/* The same bookkeeping stats.c does for a worker's shard. */
static struct cc_shard_cell *shard_cell(struct cc_shard *s, const struct cc_ikey *key)
{
    if (key->id >= s->cells_cap) {
        size_t old = s->cells_cap;
        cc_grow((void **)&s->cells, &s->cells_cap, key->id + 1, sizeof(*s->cells));
        for (size_t i = old; i < s->cells_cap; i++) {
            memset(&s->cells[i], 0, sizeof(s->cells[i]));
            cc_hist_init(&s->cells[i].hist);
            cc_hist_init(&s->cells[i].ihist);
        }
    }
    struct cc_shard_cell *c = &s->cells[key->id];
    if (!c->dirty) {
        c->dirty = true;
        c->key = key;
        cc_grow((void **)&s->dirty, &s->dirty_cap, s->ndirty + 1, sizeof(*s->dirty));
        s->dirty[s->ndirty++] = key->id;
    }
    return c;
}

static struct cc_shard_count *shard_count(struct cc_shard_count **arr, size_t *cap,
                                          uint32_t **dirty, size_t *ndirty, size_t *dirty_cap,
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
        c->n = 0;
        cc_grow((void **)dirty, dirty_cap, *ndirty + 1, sizeof(**dirty));
        (*dirty)[(*ndirty)++] = key->id;
    }
    return c;
}

/* A failure or exception key; past CC_MAX_DISTINCT_ERRORS new ones share the overflow key. */
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

static void add_count(struct cc_shard_count *c, uint64_t n, double first_s, double last_s)
{
    if (c->n == 0 || first_s < c->first_s) c->first_s = first_s;
    if (c->n == 0 || last_s > c->last_s) c->last_s = last_s;
    c->n += n;
}

void cc_wire_add_exception(struct cc_wire_keys *keys, struct cc_shard *out, const char *msg,
                           const char *traceback, uint64_t count, double now_s)
{
    const char *part[2] = {msg, traceback};
    size_t len[2] = {strlen(msg), strlen(traceback)};
    const struct cc_ikey *k = bounded_key(&keys->exceptions, part, len, 2);
    struct cc_shard_count *c =
        shard_count(&out->excs, &out->excs_cap, &out->edirty, &out->nedirty, &out->edirty_cap, k);
    add_count(c, count, now_s, now_s);
}

static bool str_view(const msgpack_object *o, const char **p, size_t *n)
{
    if (cc_mp_is_nil(o)) {
        *p = "";
        *n = 0;
        return true;
    }
    if (!cc_mp_is_str(o)) return false;
    *p = o->via.str.ptr;
    *n = o->via.str.size;
    return true;
}

/* An optional number: absent or nil gives |dflt|; it must be finite and not negative. */
static bool opt_num(const msgpack_object *map, const char *key, double dflt, double *out)
{
    const msgpack_object *o = cc_mp_get(map, key);
    *out = dflt;
    if (!o || cc_mp_is_nil(o)) return true;
    return cc_mp_num(o, out) && isfinite(*out) && *out >= 0;
}

static bool opt_uint(const msgpack_object *map, const char *key, uint64_t *out)
{
    const msgpack_object *o = cc_mp_get(map, key);
    *out = 0;
    if (!o || cc_mp_is_nil(o)) return true;
    return cc_mp_uint(o, out);
}

/* Milliseconds to whole nanoseconds, kept inside the histogram's range. */
static uint64_t ms_to_ns(double ms)
{
    double ns = ms * 1e6;
    if (!(ns > 0)) return 0;
    if (ns >= (double)CC_HIST_MAX_VALUE) return CC_HIST_MAX_VALUE;
    return (uint64_t)llround(ns);
}

/* A {number: count} map; with |h|, every pair is recorded there (keys in ms). */
static bool count_map(const msgpack_object *o, struct cc_hist *h)
{
    if (!o || o->type != MSGPACK_OBJECT_MAP) return false;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        double k;
        uint64_t n;
        if (!cc_mp_num(&o->via.map.ptr[i].key, &k) || !isfinite(k) ||
            !cc_mp_uint(&o->via.map.ptr[i].val, &n))
            return false;
        if (h && n) {
            if (k < 0) return false;
            cc_hist_record_n(h, ms_to_ns(k), n);
        }
    }
    return true;
}

static int decode_hist_field(struct dec *d, const msgpack_object *f, const char *name,
                             struct cc_hist *h)
{
    uint64_t min, max;
    const msgpack_object *b = cc_mp_get(f, "buckets");
    if (f->type != MSGPACK_OBJECT_MAP || !cc_mp_uint(cc_mp_get(f, "min"), &min) ||
        !cc_mp_uint(cc_mp_get(f, "max"), &max) || !b || b->type != MSGPACK_OBJECT_MAP)
        return bad(d, "stats: a %s field is malformed", name);
    for (uint32_t i = 0; i < b->via.map.size; i++) {
        uint64_t idx, n;
        if (!cc_mp_uint(&b->via.map.ptr[i].key, &idx) || idx >= CC_HIST_BUCKETS ||
            !cc_mp_uint(&b->via.map.ptr[i].val, &n))
            return bad(d, "stats: a bucket of a %s field is out of range", name);
        if (n) cc_hist_record_n(h, cc_hist_bucket_low((unsigned)idx), n);
    }
    if (h->total) {
        if (min > max) return bad(d, "stats: the extremes of \"%s\" are inconsistent", name);
        h->min = min;
        h->max = max;
    }
    return 0;
}

static int decode_entry(struct dec *d, const msgpack_object *e, bool use)
{
    const char *name, *method;
    size_t name_len, method_len;
    if (!e || e->type != MSGPACK_OBJECT_MAP) return bad(d, "stats: an entry is not a map");
    const msgpack_object *no = cc_mp_get(e, "name"), *mo = cc_mp_get(e, "method");
    if (!no || !cc_mp_is_str(no) || !str_view(no, &name, &name_len))
        return bad(d, "stats: an entry has no name");
    if (mo && !str_view(mo, &method, &method_len))
        return bad(d, "stats: the method of \"%.*s\" is not a string", (int)name_len, name);
    if (!mo) method = "", method_len = 0;

    uint64_t reqs, fails, nones;
    double total_ms, max_ms, min_ms, bytes, last_s, start_s;
    if (!cc_mp_uint(cc_mp_get(e, "num_requests"), &reqs) || !opt_uint(e, "num_failures", &fails) ||
        !opt_uint(e, "num_none_requests", &nones) ||
        !opt_num(e, "total_response_time", 0, &total_ms) ||
        !opt_num(e, "max_response_time", 0, &max_ms) ||
        !opt_num(e, "min_response_time", -1, &min_ms) ||
        !opt_num(e, "total_content_length", 0, &bytes) ||
        !opt_num(e, "last_request_timestamp", 0, &last_s) || !opt_num(e, "start_time", 0, &start_s))
        return bad(d, "stats: a count or time of \"%.*s\" is missing or malformed", (int)name_len,
                   name);
    const msgpack_object *rt = cc_mp_get(e, "response_times"),
                         *rps = cc_mp_get(e, "num_reqs_per_sec"),
                         *fps = cc_mp_get(e, "num_fail_per_sec"),
                         *ch = cc_mp_get(e, CC_WIRE_HIST_FIELD),
                         *ci = cc_mp_get(e, CC_WIRE_IHIST_FIELD);
    cc_hist_clear(&d->h);
    cc_hist_clear(&d->ih);
    bool exact = ch && !cc_mp_is_nil(ch);
    if (!count_map(rt, exact ? NULL : &d->h))
        return bad(d, "stats: the response_times of \"%.*s\" are malformed", (int)name_len, name);
    if ((rps && !count_map(rps, NULL)) || (fps && !count_map(fps, NULL)))
        return bad(d, "stats: the per-second counts of \"%.*s\" are malformed", (int)name_len,
                   name);
    if (exact) {
        int rv = decode_hist_field(d, ch, CC_WIRE_HIST_FIELD, &d->h);
        if (rv) return rv;
    } else if (d->h.total) {
        /* the buckets are rounded; the extremes Locust sends are exact */
        uint64_t lo = min_ms >= 0 ? ms_to_ns(min_ms) : d->h.min, hi = ms_to_ns(max_ms);
        if (hi < lo) hi = d->h.max > lo ? d->h.max : lo;
        d->h.min = lo;
        d->h.max = hi;
    }
    if (ci && !cc_mp_is_nil(ci)) {
        int rv = decode_hist_field(d, ci, CC_WIRE_IHIST_FIELD, &d->ih);
        if (rv) return rv;
    }
    if (!use || (!reqs && !fails)) return 0;

    const struct cc_ikey *k = cc_intern_get2(&d->keys->names, method, method_len, name, name_len);
    struct cc_shard_cell *c = shard_cell(d->out, k);
    c->count += reqs;
    c->failures += fails;
    c->bytes += bytes < 9e18 ? (uint64_t)bytes : (uint64_t)9e18;
    double sum_ns = total_ms * 1e6;
    c->sum_ns += sum_ns < 9e18 ? (uint64_t)llround(sum_ns) : (uint64_t)9e18;
    if (last_s > c->last_s) c->last_s = last_s;
    cc_hist_merge(&c->hist, &d->h);
    cc_hist_merge(&c->ihist, &d->ih);
    return 0;
}

static int decode_error(struct dec *d, const msgpack_object *f)
{
    const char *part[3];
    size_t len[3];
    uint64_t n;
    double first_s, last_s;
    if (!f || f->type != MSGPACK_OBJECT_MAP) return bad(d, "stats: a failure is not a map");
    const msgpack_object *mo = cc_mp_get(f, "method"), *no = cc_mp_get(f, "name"),
                         *eo = cc_mp_get(f, "error");
    if (!mo || !no || !eo || !str_view(mo, &part[0], &len[0]) || !str_view(no, &part[1], &len[1]) ||
        !str_view(eo, &part[2], &len[2]) || !cc_mp_uint(cc_mp_get(f, "occurrences"), &n) ||
        !opt_num(f, "first_seen", d->now_s, &first_s) ||
        !opt_num(f, "last_seen", d->now_s, &last_s))
        return bad(d, "stats: a failure lacks its method, name, error or occurrences");
    if (!n) return 0;
    const struct cc_ikey *k = bounded_key(&d->keys->failures, part, len, 3);
    struct cc_shard *s = d->out;
    struct cc_shard_count *c =
        shard_count(&s->fails, &s->fails_cap, &s->fdirty, &s->nfdirty, &s->fdirty_cap, k);
    add_count(c, n, first_s, last_s);
    return 0;
}

int cc_wire_decode_stats(const msgpack_object *body, struct cc_wire_keys *keys, double now_s,
                         struct cc_shard *out, char *err, size_t errlen)
{
    struct dec d = {.keys = keys, .out = out, .now_s = now_s, .err = err, .errlen = errlen};
    cc_hist_init(&d.h);
    cc_hist_init(&d.ih);
    int rv = 0;
    if (!body || body->type != MSGPACK_OBJECT_MAP) {
        rv = bad(&d, "stats: the data is not a map");
        goto out;
    }
    const msgpack_object *st = cc_mp_get(body, "stats"), *tot = cc_mp_get(body, "stats_total"),
                         *errs = cc_mp_get(body, "errors");
    if (!st || st->type != MSGPACK_OBJECT_ARRAY) {
        rv = bad(&d, "stats: \"stats\" is missing or not a list");
        goto out;
    }
    for (uint32_t i = 0; i < st->via.array.size && !rv; i++)
        rv = decode_entry(&d, &st->via.array.ptr[i], true);
    if (!rv && tot && !cc_mp_is_nil(tot)) rv = decode_entry(&d, tot, false);
    if (!rv && errs && !cc_mp_is_nil(errs)) {
        if (errs->type != MSGPACK_OBJECT_MAP) {
            rv = bad(&d, "stats: \"errors\" is not a map");
        } else {
            for (uint32_t i = 0; i < errs->via.map.size && !rv; i++)
                rv = decode_error(&d, &errs->via.map.ptr[i].val);
        }
    }
out:
    cc_hist_release(&d.h);
    cc_hist_release(&d.ih);
    if (rv) cc_shard_clear(out);
    return rv;
}
