/* SPDX-License-Identifier: MIT */
/* test_stats.c: recording into shards, merging into the aggregate, and derived values. */
#include "stats/stats.h"

#include <math.h>
#include <stdio.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

static const struct cc_ikey *key(struct cc_recorder *r, const char *type, const char *name)
{
    return cc_recorder_key(r, type, strlen(type), name, strlen(name));
}

static void req(struct cc_recorder *r, const char *type, const char *name, double ms, uint64_t len,
                const char *err)
{
    cc_recorder_request(r, key(r, type, name), (uint64_t)(ms * 1e6), len, err,
                        err ? strlen(err) : 0);
}

static const struct cc_entry *find(const struct cc_agg *a, const char *type, const char *name)
{
    for (size_t i = 0; i < a->nentries; i++) {
        const struct cc_ikey *k = a->entries[i]->key;
        if (strcmp(k->part[0], type) == 0 && strcmp(k->part[1], name) == 0) return a->entries[i];
    }
    return NULL;
}

/* Two workers' shards merge into per-entry and Aggregated totals; failures group by error. */
static void test_merge_two_workers(void **state)
{
    (void)state;
    struct cc_shard s1, s2;
    struct cc_recorder r1, r2;
    cc_shard_init(&s1);
    cc_shard_init(&s2);
    cc_recorder_init(&r1, &s1);
    cc_recorder_init(&r2, &s2);
    req(&r1, "GET", "/a", 10, 100, NULL);
    req(&r1, "GET", "/a", 20, 100, "boom");
    req(&r1, "POST", "/b", 5, 0, NULL);
    req(&r2, "GET", "/a", 30, 50, "boom");
    req(&r2, "GET", "/a", 40, 50, "other");
    cc_recorder_exception(&r2, "oops", 4, "tb", 2);
    cc_recorder_exception(&r2, "oops", 4, "tb", 2);

    struct cc_agg a;
    cc_agg_init(&a, false);
    cc_agg_open_interval(&a, 0);
    cc_agg_merge(&a, &s1, 0);
    cc_agg_merge(&a, &s2, 1);
    cc_agg_close_interval(&a, 1000000000);

    const struct cc_entry *e = find(&a, "GET", "/a");
    assert_non_null(e);
    assert_int_equal(e->count, 4);
    assert_int_equal(e->failures, 3);
    assert_int_equal(e->bytes, 300);
    assert_true(fabs(cc_entry_avg_ms(e) - 25.0) < 1e-9);
    assert_true(fabs(cc_entry_min_ms(e) - 10.0) < 1e-9);
    assert_true(fabs(cc_entry_max_ms(e) - 40.0) < 1e-9);
    assert_true(fabs(cc_entry_fail_ratio(e) - 0.75) < 1e-12);
    assert_int_equal(a.total.count, 5);
    assert_int_equal(a.total.failures, 3);

    size_t n;
    struct cc_failure **f = cc_agg_sorted_failures(&a, &n);
    assert_int_equal(n, 2);
    assert_string_equal(f[0]->key->part[2], "boom");
    assert_int_equal(f[0]->occurrences, 2);
    assert_string_equal(f[1]->key->part[2], "other");
    cc_free(f);

    struct cc_exception **x = cc_agg_sorted_exceptions(&a, &n);
    assert_int_equal(n, 1);
    assert_int_equal(x[0]->count, 2);
    assert_int_equal(x[0]->nodes, 2); /* seen on worker 1 */
    cc_free(x);

    /* a cleared shard records afresh, with no trace of the last interval */
    cc_shard_clear(&s1);
    assert_int_equal(s1.ndirty, 0);
    req(&r1, "GET", "/a", 1, 0, NULL);
    assert_int_equal(s1.ndirty, 1);
    assert_int_equal(s1.cells[s1.dirty[0]].count, 1);

    cc_agg_release(&a);
    cc_recorder_release(&r1);
    cc_recorder_release(&r2);
    cc_shard_release(&s1);
    cc_shard_release(&s2);
}

/* Entries sort by name, then type, as Locust's tables. */
static void test_report_order(void **state)
{
    (void)state;
    struct cc_shard s;
    struct cc_recorder r;
    cc_shard_init(&s);
    cc_recorder_init(&r, &s);
    req(&r, "POST", "/b", 1, 0, NULL);
    req(&r, "GET", "/b", 1, 0, NULL);
    req(&r, "GET", "/a", 1, 0, NULL);
    struct cc_agg a;
    cc_agg_init(&a, false);
    cc_agg_open_interval(&a, 0);
    cc_agg_merge(&a, &s, 0);
    size_t n;
    struct cc_entry **e = cc_agg_sorted(&a, &n);
    assert_int_equal(n, 3);
    assert_string_equal(e[0]->key->part[1], "/a");
    assert_string_equal(e[1]->key->part[0], "GET");
    assert_string_equal(e[2]->key->part[0], "POST");
    cc_free(e);
    cc_agg_release(&a);
    cc_recorder_release(&r);
    cc_shard_release(&s);
}

/* Current rates cover the last CC_CURRENT_WINDOW closed intervals, measured by their clocks. */
static void test_current_rate_window(void **state)
{
    (void)state;
    struct cc_shard s;
    struct cc_recorder r;
    cc_shard_init(&s);
    cc_recorder_init(&r, &s);
    struct cc_agg a;
    cc_agg_init(&a, true);
    uint64_t t = 0, sec = 1000000000ull;
    /* 20 intervals of one second: the first ten with 100 requests, the last ten with 10 */
    for (int i = 0; i < 20; i++) {
        cc_agg_open_interval(&a, t);
        int n = i < 10 ? 100 : 10;
        for (int k = 0; k < n; k++)
            req(&r, "GET", "/x", i < 10 ? 100 : 1, 0, k == 0 ? "e" : NULL);
        cc_agg_merge(&a, &s, 0);
        cc_shard_clear(&s);
        t += sec;
        cc_agg_close_interval(&a, t);
    }
    const struct cc_entry *e = find(&a, "GET", "/x");
    assert_true(fabs(cc_entry_current_rps(&a, e) - 10.0) < 1e-9);
    assert_true(fabs(cc_entry_current_fail_per_s(&a, e) - 1.0) < 1e-9);
    /* the window's percentiles see only the recent, fast requests; the totals see all */
    double p[1] = {0.99}, v[1];
    assert_true(cc_entry_current_percentiles_ms(&a, &a.total, p, 1, v));
    assert_true(fabs(v[0] - 1.0) < 0.01);
    assert_true(fabs(cc_entry_percentile_ms(e, 0.99) - 100.0) < 1.0);
    cc_agg_release(&a);
    cc_recorder_release(&r);
    cc_shard_release(&s);
}

/* Distinct errors beyond the cap are counted under one overflow key: none is lost. */
static void test_distinct_error_cap(void **state)
{
    (void)state;
    struct cc_shard s;
    struct cc_recorder r;
    cc_shard_init(&s);
    cc_recorder_init(&r, &s);
    char err[32];
    int total = CC_MAX_DISTINCT_ERRORS + 500;
    for (int i = 0; i < total; i++) {
        snprintf(err, sizeof(err), "error %d", i);
        req(&r, "GET", "/x", 1, 0, err);
    }
    struct cc_agg a;
    cc_agg_init(&a, false);
    cc_agg_open_interval(&a, 0);
    cc_agg_merge(&a, &s, 0);
    size_t n;
    struct cc_failure **f = cc_agg_sorted_failures(&a, &n);
    assert_int_equal(n, CC_MAX_DISTINCT_ERRORS + 1);
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += f[i]->occurrences;
    assert_int_equal(sum, (uint64_t)total);
    cc_free(f);
    cc_agg_release(&a);
    cc_recorder_release(&r);
    cc_shard_release(&s);
}

static void test_reset(void **state)
{
    (void)state;
    struct cc_shard s;
    struct cc_recorder r;
    cc_shard_init(&s);
    cc_recorder_init(&r, &s);
    req(&r, "GET", "/x", 5, 10, "e");
    struct cc_agg a;
    cc_agg_init(&a, false);
    cc_agg_open_interval(&a, 0);
    cc_agg_merge(&a, &s, 0);
    cc_agg_reset(&a, 123.0);
    assert_int_equal(a.total.count, 0);
    assert_int_equal(a.fail_keys.count, 0);
    assert_true(a.start_s == 123.0);
    size_t n;
    cc_free(cc_agg_sorted(&a, &n));
    assert_int_equal(n, 0); /* entries without requests are not reported */
    cc_agg_release(&a);
    cc_recorder_release(&r);
    cc_shard_release(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merge_two_workers),
        cmocka_unit_test(test_report_order),
        cmocka_unit_test(test_current_rate_window),
        cmocka_unit_test(test_distinct_error_cap),
        cmocka_unit_test(test_reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
