/* SPDX-License-Identifier: MIT */
/*
 * test_dist_stats.c: statistics on the wire. Locust's bucket rounding; a delta aggregate out
 * and back in exactly (with the cicada histogram) or to Locust's resolution (without); what a
 * Locust 2.12 worker sends; per-second counts; merged workers equal one process; malformed
 * reports are refused.
 */
#include "dist/stats_wire.h"
#include "core/err.h"

#include "dist_fixtures.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#define WALL0 1700000000.0
#define MONO0 5000000000ull /* a monotonic time matching WALL0 */

/* ---- helpers ---------------------------------------------------------------------------- */

static void req(struct cc_recorder *r, const char *type, const char *name, double ms,
                const char *err)
{
    const struct cc_ikey *k = cc_recorder_key(r, type, strlen(type), name, strlen(name));
    cc_recorder_request(r, k, (uint64_t)llround(ms * 1e6), 100, err, err ? strlen(err) : 0);
}

static const struct cc_entry *find(const struct cc_agg *a, const char *type, const char *name)
{
    for (size_t i = 0; i < a->nentries; i++) {
        const struct cc_ikey *k = a->entries[i]->key;
        if (strcmp(k->part[0], type) == 0 && strcmp(k->part[1], name) == 0) return a->entries[i];
    }
    return NULL;
}

/* Encodes |delta| as a stats message, decodes it, and merges it into |into|. */
static void through_wire(const struct cc_agg *delta, bool exact, struct cc_agg *into,
                         struct cc_wire_keys *keys)
{
    static const char *const names[2] = {"Alpha", "Beta"};
    uint32_t users[2] = {3, 1};
    struct cc_wire_report r = {.nclasses = 2,
                               .class_names = names,
                               .class_users = users,
                               .cicada_hist = exact,
                               .wall_now_s = WALL0 + 10,
                               .mono_now_ns = MONO0 + 10000000000ull};
    struct cc_dbuf b;
    cc_dbuf_init(&b);
    cc_wire_stats_msg(&b, delta, &r, "box_1");
    struct cc_dmsg m;
    char err[160];
    assert_int_equal(cc_dmsg_decode(&m, b.sb.data, b.sb.size, CC_DMSG_TO_MASTER, err, sizeof(err)),
                     0);
    assert_int_equal(m.type, CC_DMSG_STATS);
    assert_int_equal(m.u.stats.user_count, 4);
    assert_int_equal(m.u.stats.classes.n, 2);
    struct cc_shard s;
    cc_shard_init(&s);
    int rv = cc_wire_decode_stats(m.u.stats.body, keys, WALL0, &s, err, sizeof(err));
    if (rv) fprintf(stderr, "%s\n", err);
    assert_int_equal(rv, 0);
    cc_agg_merge(into, &s, 0);
    cc_shard_release(&s);
    cc_dmsg_release(&m);
    cc_dbuf_release(&b);
}

/* A delta as the worker keeps it: shards merged into an aggregate with open intervals. */
static void delta_from(struct cc_agg *a, struct cc_shard *s)
{
    cc_agg_init(a, false);
    a->start_s = WALL0;
    cc_agg_open_interval(a, MONO0);
    cc_agg_merge(a, s, 0);
    cc_agg_close_interval(a, MONO0 + 1000000000ull);
    cc_agg_open_interval(a, MONO0 + 1000000000ull);
}

/* ---- tests ------------------------------------------------------------------------------ */

/* Locust's buckets: whole ms below 100, then 2 significant digits, half to even (Python). */
static void test_locust_bucket(void **state)
{
    (void)state;
    /* expected values printed by Python's round() with Locust 2.12's rules */
    static const struct {
        double ms;
        int64_t want;
    } cases[] = {
        {0, 0},         {0.4, 0},       {0.5, 0},       {1.5, 2},       {2.5, 2},
        {3.5, 4},       {10.49, 10},    {10.5, 10},     {11.5, 12},     {99.4, 99},
        {99.5, 100},    {100, 100},     {104.9, 100},   {105, 100},     {115, 120},
        {125, 120},     {135, 140},     {147.3, 150},   {994.9, 990},   {995, 1000},
        {999, 1000},    {1000, 1000},   {1050, 1000},   {1150, 1200},   {1234, 1200},
        {1250, 1200},   {1350, 1400},   {3432, 3400},   {9949, 9900},   {9950, 10000},
        {10000, 10000}, {10500, 10000}, {11500, 12000}, {58760, 59000}, {123456.7, 123000},
    };
    for (size_t i = 0; i < CC_ARRAY_LEN(cases); i++) {
        int64_t got = cc_wire_locust_bucket(cases[i].ms);
        if (got != cases[i].want)
            fprintf(stderr, "%g ms: got %lld, want %lld\n", cases[i].ms, (long long)got,
                    (long long)cases[i].want);
        assert_int_equal(got, cases[i].want);
    }
}

/* With the cicada field a delta crosses the wire exactly: counts, extremes, every bucket. */
static void test_roundtrip_exact(void **state)
{
    (void)state;
    struct cc_shard s;
    struct cc_recorder r;
    cc_shard_init(&s);
    cc_recorder_init(&r, &s);
    for (int i = 0; i < 1000; i++)
        req(&r, "GET", "/a", 0.137 * (i + 1), i % 10 == 0 ? "HTTP 500" : NULL);
    for (int i = 0; i < 300; i++)
        req(&r, "POST", "/b", 1000.0 + i * 3.3, NULL);
    const struct cc_ikey *k = cc_recorder_key(&r, "GET", 3, "/a", 2);
    cc_recorder_intended(&r, k, 5000000);
    struct cc_agg delta, back;
    delta_from(&delta, &s);

    struct cc_wire_keys keys;
    cc_wire_keys_init(&keys);
    cc_agg_init(&back, false);
    cc_agg_open_interval(&back, 1);
    through_wire(&delta, true, &back, &keys);

    assert_int_equal(back.nentries, 2);
    const char *names[2][2] = {{"GET", "/a"}, {"POST", "/b"}};
    for (int i = 0; i < 2; i++) {
        const struct cc_entry *x = find(&delta, names[i][0], names[i][1]);
        const struct cc_entry *y = find(&back, names[i][0], names[i][1]);
        assert_non_null(y);
        assert_int_equal(x->count, y->count);
        assert_int_equal(x->failures, y->failures);
        assert_int_equal(x->bytes, y->bytes);
        assert_true(fabs(x->sum_ms - y->sum_ms) < 1e-6);
        assert_int_equal(x->hist.min, y->hist.min);
        assert_int_equal(x->hist.max, y->hist.max);
        assert_int_equal(x->hist.total, y->hist.total);
        for (unsigned b = 0; b < CC_HIST_BUCKETS; b++)
            assert_int_equal(cc_hist_count_at(&x->hist, b), cc_hist_count_at(&y->hist, b));
        double px[CC_NPERCENTILES], py[CC_NPERCENTILES];
        cc_entry_percentiles_ms(x, cc_percentiles, CC_NPERCENTILES, px);
        cc_entry_percentiles_ms(y, cc_percentiles, CC_NPERCENTILES, py);
        for (int p = 0; p < CC_NPERCENTILES; p++)
            assert_true(px[p] == py[p]);
    }
    /* the intended-start histogram travels too */
    assert_int_equal(find(&back, "GET", "/a")->ihist.total, 1);
    assert_int_equal(back.total.count, 1300);
    assert_int_equal(back.total.failures, 100);

    /* the failure, with its first and last seen */
    assert_int_equal(back.fail_keys.count, 1);
    assert_string_equal(back.fails[0].key->part[0], "GET");
    assert_string_equal(back.fails[0].key->part[1], "/a");
    assert_string_equal(back.fails[0].key->part[2], "HTTP 500");
    assert_int_equal(back.fails[0].occurrences, 100);
    assert_true(back.fails[0].first_s == delta.fails[0].first_s);
    assert_true(back.fails[0].last_s == delta.fails[0].last_s);

    cc_agg_release(&back);
    cc_agg_release(&delta);
    cc_wire_keys_release(&keys);
    cc_recorder_release(&r);
    cc_shard_release(&s);
}

/* The buckets a Locust master gets: {10: 500, 150: 400, 1200: 100}, and back to percentiles. */
static void test_locust_form(void **state)
{
    (void)state;
    struct cc_shard s;
    struct cc_recorder r;
    cc_shard_init(&s);
    cc_recorder_init(&r, &s);
    for (int i = 0; i < 500; i++)
        req(&r, "GET", "/x", 10, NULL);
    for (int i = 0; i < 400; i++)
        req(&r, "GET", "/x", 147.3, NULL);
    for (int i = 0; i < 100; i++)
        req(&r, "GET", "/x", 1234, NULL);
    struct cc_agg delta;
    delta_from(&delta, &s);

    struct cc_dbuf b;
    cc_dbuf_init(&b);
    struct cc_wire_report rep = {.wall_now_s = WALL0 + 2, .mono_now_ns = MONO0 + 2000000000ull};
    cc_wire_stats_msg(&b, &delta, &rep, "w");
    struct cc_dmsg m;
    assert_int_equal(cc_dmsg_decode(&m, b.sb.data, b.sb.size, CC_DMSG_TO_MASTER, NULL, 0), 0);
    const msgpack_object *st = cc_mp_get(m.u.stats.body, "stats");
    assert_int_equal(st->via.array.size, 1);
    const msgpack_object *e = &st->via.array.ptr[0];
    assert_null(cc_mp_get(e, CC_WIRE_HIST_FIELD));
    assert_true(cc_mp_str_eq(cc_mp_get(e, "name"), "/x"));
    assert_true(cc_mp_str_eq(cc_mp_get(e, "method"), "GET"));
    const msgpack_object *rt = cc_mp_get(e, "response_times");
    assert_int_equal(rt->via.map.size, 3);
    static const uint64_t keys_want[3] = {10, 150, 1200}, counts_want[3] = {500, 400, 100};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(rt->via.map.ptr[i].key.via.u64, keys_want[i]);
        assert_int_equal(rt->via.map.ptr[i].val.via.u64, counts_want[i]);
    }
    double v;
    assert_true(cc_mp_num(cc_mp_get(e, "min_response_time"), &v) && fabs(v - 10) < 1e-9);
    assert_true(cc_mp_num(cc_mp_get(e, "max_response_time"), &v) && fabs(v - 1234) < 1e-9);
    assert_true(cc_mp_num(cc_mp_get(e, "total_response_time"), &v) &&
                fabs(v - (5000 + 400 * 147.3 + 123400)) < 1e-6);
    /* the Aggregated total is always there */
    const msgpack_object *tot = cc_mp_get(m.u.stats.body, "stats_total");
    assert_true(cc_mp_str_eq(cc_mp_get(tot, "name"), "Aggregated"));
    assert_true(cc_mp_str_eq(cc_mp_get(tot, "method"), ""));
    uint64_t n;
    assert_true(cc_mp_uint(cc_mp_get(tot, "num_requests"), &n) && n == 1000);

    /* a master without the cicada field rebuilds the histogram from the rounded buckets */
    struct cc_wire_keys keys;
    cc_wire_keys_init(&keys);
    struct cc_shard in;
    cc_shard_init(&in);
    assert_int_equal(cc_wire_decode_stats(m.u.stats.body, &keys, WALL0, &in, NULL, 0), 0);
    struct cc_agg back;
    cc_agg_init(&back, false);
    cc_agg_merge(&back, &in, 0);
    const struct cc_entry *x = find(&back, "GET", "/x");
    assert_int_equal(x->count, 1000);
    assert_true(fabs(cc_entry_min_ms(x) - 10) < 1e-9);
    assert_true(fabs(cc_entry_max_ms(x) - 1234) < 1e-9);
    /* ranks as Locust's: rank 500 of 1000 is the first sample of the 150 ms bucket */
    assert_true(fabs(cc_entry_percentile_ms(x, 0.4) - 10) < 0.2);
    assert_true(fabs(cc_entry_percentile_ms(x, 0.5) - 150) < 1.5);
    /* rank 900 of 1000 is the first of the 1200 ms bucket, for Locust as for us */
    assert_true(fabs(cc_entry_percentile_ms(x, 0.9) - 1200) < 12);

    cc_agg_release(&back);
    cc_shard_release(&in);
    cc_wire_keys_release(&keys);
    cc_dmsg_release(&m);
    cc_dbuf_release(&b);
    cc_agg_release(&delta);
    cc_recorder_release(&r);
    cc_shard_release(&s);
}

/* Per-second counts: each interval's count goes to the epoch second of its middle. */
static void test_per_second(void **state)
{
    (void)state;
    struct cc_shard s1, s2;
    struct cc_recorder r1, r2;
    cc_shard_init(&s1);
    cc_shard_init(&s2);
    cc_recorder_init(&r1, &s1);
    cc_recorder_init(&r2, &s2);
    for (int i = 0; i < 7; i++)
        req(&r1, "GET", "/p", 5, i < 2 ? "x" : NULL);
    for (int i = 0; i < 4; i++)
        req(&r2, "GET", "/p", 5, NULL);
    struct cc_agg a;
    cc_agg_init(&a, false);
    a.start_s = WALL0;
    /* interval 0: [MONO0, MONO0+1s) -> second WALL0; interval 1: the open one, till now */
    cc_agg_open_interval(&a, MONO0 + 100000000ull);
    cc_agg_merge(&a, &s1, 0);
    cc_agg_close_interval(&a, MONO0 + 900000000ull);
    cc_agg_open_interval(&a, MONO0 + 1100000000ull);
    cc_agg_merge(&a, &s2, 0);

    struct cc_dbuf b;
    cc_dbuf_init(&b);
    struct cc_wire_report rep = {.wall_now_s = WALL0 + 1.9, .mono_now_ns = MONO0 + 1900000000ull};
    cc_wire_stats_msg(&b, &a, &rep, "w");
    struct cc_dmsg m;
    assert_int_equal(cc_dmsg_decode(&m, b.sb.data, b.sb.size, CC_DMSG_TO_MASTER, NULL, 0), 0);
    const msgpack_object *e = &cc_mp_get(m.u.stats.body, "stats")->via.array.ptr[0];
    const msgpack_object *rps = cc_mp_get(e, "num_reqs_per_sec");
    assert_int_equal(rps->via.map.size, 2);
    assert_int_equal(rps->via.map.ptr[0].key.via.u64, (uint64_t)WALL0);
    assert_int_equal(rps->via.map.ptr[0].val.via.u64, 7);
    assert_int_equal(rps->via.map.ptr[1].key.via.u64, (uint64_t)WALL0 + 1);
    assert_int_equal(rps->via.map.ptr[1].val.via.u64, 4);
    const msgpack_object *fps = cc_mp_get(e, "num_fail_per_sec");
    assert_int_equal(fps->via.map.size, 1);
    assert_int_equal(fps->via.map.ptr[0].val.via.u64, 2);
    cc_dmsg_release(&m);
    cc_dbuf_clear(&b);

    /* an aggregate without intervals puts everything on the second of the last request */
    struct cc_agg flat;
    cc_agg_init(&flat, false);
    cc_agg_merge(&flat, &s1, 0);
    cc_wire_stats_msg(&b, &flat, &rep, "w");
    assert_int_equal(cc_dmsg_decode(&m, b.sb.data, b.sb.size, CC_DMSG_TO_MASTER, NULL, 0), 0);
    e = &cc_mp_get(m.u.stats.body, "stats")->via.array.ptr[0];
    rps = cc_mp_get(e, "num_reqs_per_sec");
    assert_int_equal(rps->via.map.size, 1);
    assert_int_equal(rps->via.map.ptr[0].val.via.u64, 7);
    cc_dmsg_release(&m);

    cc_agg_release(&flat);
    cc_dbuf_release(&b);
    cc_agg_release(&a);
    cc_recorder_release(&r1);
    cc_recorder_release(&r2);
    cc_shard_release(&s1);
    cc_shard_release(&s2);
}

/* A Locust 2.12 worker's report: float bucket keys, no first_seen/last_seen. */
static void test_locust_worker_report(void **state)
{
    (void)state;
    struct cc_dmsg m;
    assert_int_equal(cc_dmsg_decode(&m, fx_stats, FX_STATS_LEN, CC_DMSG_TO_MASTER, NULL, 0), 0);
    struct cc_wire_keys keys;
    cc_wire_keys_init(&keys);
    struct cc_shard s;
    cc_shard_init(&s);
    char err[160];
    assert_int_equal(cc_wire_decode_stats(m.u.stats.body, &keys, WALL0 + 5, &s, err, sizeof(err)),
                     0);
    struct cc_agg a;
    cc_agg_init(&a, false);
    cc_agg_merge(&a, &s, 3);
    const struct cc_entry *e = find(&a, "GET", "/x");
    assert_non_null(e);
    assert_int_equal(e->count, 5);
    assert_int_equal(e->failures, 1);
    assert_int_equal(e->bytes, 500);
    assert_true(fabs(e->sum_ms - 770.3) < 1e-6);
    assert_true(fabs(cc_entry_min_ms(e) - 10.1) < 1e-9);
    assert_true(fabs(cc_entry_max_ms(e) - 400.2) < 1e-9);
    assert_int_equal(e->hist.total, 5);
    assert_true(e->last_s == 1700000001.5);
    /* stats_total is not added on top of the entries */
    assert_int_equal(a.total.count, 5);
    assert_int_equal(a.fail_keys.count, 1);
    assert_string_equal(a.fails[0].key->part[2], "HTTPError('500')");
    assert_int_equal(a.fails[0].occurrences, 1);
    assert_true(a.fails[0].first_s == WALL0 + 5);

    /* exceptions arrive as their own messages */
    cc_shard_clear(&s);
    cc_wire_add_exception(&keys, &s, "boom", "tb", 3, WALL0);
    cc_wire_add_exception(&keys, &s, "boom", "tb", 1, WALL0);
    cc_agg_merge(&a, &s, 3);
    assert_int_equal(a.exc_keys.count, 1);
    assert_int_equal(a.excs[0].count, 4);
    assert_int_equal(a.excs[0].nodes, 1u << 3);

    cc_agg_release(&a);
    cc_shard_release(&s);
    cc_wire_keys_release(&keys);
    cc_dmsg_release(&m);
}

/* Two workers through the wire and into one master equal one process recording everything. */
static void test_two_workers_equal_one_process(void **state)
{
    (void)state;
    struct cc_shard sw[2], sall;
    struct cc_recorder rw[2], rall;
    cc_shard_init(&sall);
    cc_recorder_init(&rall, &sall);
    for (int w = 0; w < 2; w++) {
        cc_shard_init(&sw[w]);
        cc_recorder_init(&rw[w], &sw[w]);
    }
    uint64_t x = 12345;
    for (int i = 0; i < 20000; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        double ms = 0.05 + (double)(x >> 40) / (double)(1ull << 24) * 3000.0;
        const char *name = i % 3 ? "/fast" : "/slow";
        const char *err = i % 97 == 0 ? "timeout" : NULL;
        req(&rw[i % 2], "GET", name, ms, err);
        req(&rall, "GET", name, ms, err);
    }
    struct cc_agg one, master, delta[2];
    delta_from(&one, &sall);
    cc_agg_init(&master, false);
    cc_agg_open_interval(&master, 1);
    struct cc_wire_keys keys;
    cc_wire_keys_init(&keys);
    for (int w = 0; w < 2; w++) {
        delta_from(&delta[w], &sw[w]);
        through_wire(&delta[w], true, &master, &keys);
    }
    const struct cc_entry *pairs[3][2] = {
        {find(&one, "GET", "/fast"), find(&master, "GET", "/fast")},
        {find(&one, "GET", "/slow"), find(&master, "GET", "/slow")},
        {&one.total, &master.total},
    };
    for (int i = 0; i < 3; i++) {
        const struct cc_entry *a = pairs[i][0], *b = pairs[i][1];
        assert_non_null(b);
        assert_int_equal(a->count, b->count);
        assert_int_equal(a->failures, b->failures);
        assert_int_equal(a->hist.min, b->hist.min);
        assert_int_equal(a->hist.max, b->hist.max);
        double pa[CC_NPERCENTILES], pb[CC_NPERCENTILES];
        cc_entry_percentiles_ms(a, cc_percentiles, CC_NPERCENTILES, pa);
        cc_entry_percentiles_ms(b, cc_percentiles, CC_NPERCENTILES, pb);
        for (int p = 0; p < CC_NPERCENTILES; p++)
            assert_true(pa[p] == pb[p]);
        assert_true(fabs(cc_entry_avg_ms(a) - cc_entry_avg_ms(b)) < 1e-6);
    }
    assert_int_equal(master.fails[0].occurrences, one.fails[0].occurrences);

    for (int w = 0; w < 2; w++) {
        cc_agg_release(&delta[w]);
        cc_recorder_release(&rw[w]);
        cc_shard_release(&sw[w]);
    }
    cc_wire_keys_release(&keys);
    cc_agg_release(&master);
    cc_agg_release(&one);
    cc_recorder_release(&rall);
    cc_shard_release(&sall);
}

/* Reports with wrong types are refused and leave the shard empty. */
static void test_malformed_reports(void **state)
{
    (void)state;
    static const char *const bodies[] = {
        /* {"stats": "x"} */
        "\x81\xa5stats\xa1x",
        /* no "stats" at all */
        "\x81\xa6"
        "errors\x80",
        /* an entry without a name */
        "\x81\xa5stats\x91\x81\xacnum_requests\x01",
        /* num_requests negative */
        "\x81\xa5stats\x91\x83\xa4name\xa1"
        "a\xacnum_requests\xff\xaeresponse_times\x80",
        /* a response_times key that is a string */
        "\x81\xa5stats\x91\x83\xa4name\xa1"
        "a\xacnum_requests\x01\xaeresponse_times\x81\xa1"
        "k\x01",
        /* a cicada bucket index out of range */
        "\x81\xa5stats\x91\x84\xa4name\xa1"
        "a\xacnum_requests\x01\xaeresponse_times\x80\xab"
        "cicada_hist\x83\xa3min\x01\xa3max\x02\xa7"
        "buckets\x81\xcd\xff\xff\x01",
        /* cicada extremes upside down */
        "\x81\xa5stats\x91\x84\xa4name\xa1"
        "a\xacnum_requests\x01\xaeresponse_times\x80\xab"
        "cicada_hist\x83\xa3min\x09\xa3max\x02\xa7"
        "buckets\x81\x01\x01",
        /* errors a list */
        "\x82\xa5stats\x90\xa6"
        "errors\x90",
        /* a failure without occurrences */
        "\x82\xa5stats\x90\xa6"
        "errors\x81\xa1k\x83\xa4name\xa1"
        "a\xa6method\xa1"
        "b\xa5"
        "error\xa1"
        "c",
    };
    struct cc_wire_keys keys;
    cc_wire_keys_init(&keys);
    struct cc_shard s;
    cc_shard_init(&s);
    for (size_t i = 0; i < CC_ARRAY_LEN(bodies); i++) {
        /* wrap the body as a message so that the msgpack tree is msgpack-c's own */
        struct cc_dbuf b;
        cc_dbuf_init(&b);
        cc_dmsg_pack_raw(&b, "stats", bodies[i], strlen(bodies[i]), "w");
        struct cc_dmsg m;
        char err[160] = "";
        int rv = cc_dmsg_decode(&m, b.sb.data, b.sb.size, CC_DMSG_TO_MASTER, err, sizeof(err));
        if (rv == 0) {
            /* a good entry first, so the shard has something to clear */
            struct cc_recorder r;
            cc_recorder_init(&r, &s);
            req(&r, "GET", "/ok", 1, NULL);
            rv = cc_wire_decode_stats(m.u.stats.body, &keys, WALL0, &s, err, sizeof(err));
            cc_recorder_release(&r);
            cc_dmsg_release(&m);
        }
        if (rv == 0) fprintf(stderr, "accepted body %zu\n", i);
        assert_int_equal(rv, CC_EPROTO);
        assert_int_equal(s.ndirty, 0);
        cc_dbuf_release(&b);
    }
    cc_shard_release(&s);
    cc_wire_keys_release(&keys);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_locust_bucket),
        cmocka_unit_test(test_roundtrip_exact),
        cmocka_unit_test(test_locust_form),
        cmocka_unit_test(test_per_second),
        cmocka_unit_test(test_locust_worker_report),
        cmocka_unit_test(test_two_workers_equal_one_process),
        cmocka_unit_test(test_malformed_reports),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
