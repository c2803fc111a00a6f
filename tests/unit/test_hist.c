/* SPDX-License-Identifier: MIT */
/* test_hist.c: the histogram's layout, its error bound against exact sorted samples, merging. */
#include "stats/hist.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <cmocka.h>

/* xorshift64*: the tests' own reproducible generator */
static uint64_t rng_state;
static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}
static double uniform(void)
{
    return (double)(rng() >> 11) / 9007199254740992.0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Every value maps to a bucket whose range holds it, and bucket ranges tile the line. */
static void test_buckets_tile_the_range(void **state)
{
    (void)state;
    uint64_t expect_low = 0;
    for (unsigned idx = 0; idx < CC_HIST_BUCKETS; idx++) {
        uint64_t low = cc_hist_bucket_low(idx), width = cc_hist_bucket_width(idx);
        assert_int_equal(low, expect_low);
        assert_int_equal(cc_hist_index(low), idx);
        assert_int_equal(cc_hist_index(low + width - 1), idx);
        /* the bound: a bucket is at most 1/64 as wide as its lower edge (or exact) */
        if (idx >= CC_HIST_EXACT) assert_true(width * 64 <= low);
        expect_low = low + width;
    }
    assert_int_equal(expect_low, CC_HIST_MAX_VALUE + 1);
    /* one hour and more are in range */
    assert_true(3600ull * 1000000000ull < CC_HIST_MAX_VALUE);
    assert_int_equal(cc_hist_index(UINT64_MAX), CC_HIST_BUCKETS - 1);
}

static void check_against_exact(uint64_t *v, size_t n)
{
    struct cc_hist h;
    cc_hist_init(&h);
    for (size_t i = 0; i < n; i++)
        cc_hist_record(&h, v[i]);
    qsort(v, n, sizeof(*v), cmp_u64);
    assert_int_equal(h.total, n);
    assert_int_equal(h.min, v[0]);
    assert_int_equal(h.max, v[n - 1]);
    for (int k = 0; k <= 10000; k++) {
        double p = k / 10000.0;
        size_t rank = (size_t)((double)n * p);
        if (rank >= n) rank = n - 1;
        uint64_t exact = v[rank];
        uint64_t got = cc_hist_value_at(&h, p);
        double err = fabs((double)got - (double)exact) / (double)(exact ? exact : 1);
        if (err > 0.01)
            fail_msg("p=%.4f exact=%llu got=%llu err=%.4f", p, (unsigned long long)exact,
                     (unsigned long long)got, err);
        assert_true(err <= 1.0 / 128 + 1e-12);
    }
    cc_hist_release(&h);
}

/* 1 µs to 1 hour, log-uniform: the whole range the issue names. */
static void test_bound_log_uniform(void **state)
{
    (void)state;
    rng_state = 0x1234567;
    size_t n = 200000;
    uint64_t *v = malloc(n * sizeof(*v));
    for (size_t i = 0; i < n; i++)
        v[i] = (uint64_t)(1000.0 * pow(3.6e6, uniform())); /* 1e3 ns .. 3.6e12 ns */
    check_against_exact(v, n);
    free(v);
}

/* A latency-like shape: mostly around 2 ms with a long tail. */
static void test_bound_lognormal(void **state)
{
    (void)state;
    rng_state = 42;
    size_t n = 100000;
    uint64_t *v = malloc(n * sizeof(*v));
    for (size_t i = 0; i < n; i++) {
        double u1 = uniform() + 1e-12, u2 = uniform();
        double z = sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
        v[i] = (uint64_t)(2e6 * exp(0.8 * z));
    }
    check_against_exact(v, n);
    free(v);
}

/* Two clusters far apart and few samples: percentiles must land in the right cluster. */
static void test_bound_bimodal_small(void **state)
{
    (void)state;
    uint64_t v[] = {1000, 1001, 1003, 999, 5000000000ull, 5000000001ull, 7, 3};
    check_against_exact(v, sizeof(v) / sizeof(v[0]));
    uint64_t one[] = {123456789};
    check_against_exact(one, 1);
}

static void test_locust_rank_rule(void **state)
{
    (void)state;
    struct cc_hist h;
    cc_hist_init(&h);
    for (uint64_t i = 1; i <= 10; i++)
        cc_hist_record(&h, i); /* exact region */
    /* rank = floor(n * p): the upper median for even n, as Locust's percentile column */
    assert_int_equal(cc_hist_value_at(&h, 0.5), 6);
    assert_int_equal(cc_hist_value_at(&h, 0.0), 1);
    assert_int_equal(cc_hist_value_at(&h, 0.95), 10);
    assert_int_equal(cc_hist_value_at(&h, 1.0), 10);
    double ps[] = {0.1, 0.5, 0.9, 1.0};
    uint64_t out[4];
    cc_hist_values_at(&h, ps, 4, out);
    assert_int_equal(out[0], 2);
    assert_int_equal(out[1], 6);
    assert_int_equal(out[2], 10);
    assert_int_equal(out[3], 10);
    cc_hist_release(&h);
}

static void test_empty_and_clamp(void **state)
{
    (void)state;
    struct cc_hist h;
    cc_hist_init(&h);
    assert_int_equal(cc_hist_value_at(&h, 0.5), 0);
    cc_hist_record(&h, CC_HIST_MAX_VALUE * 4); /* beyond the range: counted, max exact */
    assert_int_equal(h.total, 1);
    assert_int_equal(h.max, CC_HIST_MAX_VALUE * 4);
    assert_int_equal(cc_hist_value_at(&h, 1.0), CC_HIST_MAX_VALUE * 4);
    cc_hist_clear(&h);
    assert_int_equal(h.total, 0);
    assert_int_equal(cc_hist_count_at(&h, CC_HIST_BUCKETS - 1), 0);
    cc_hist_release(&h);
}

/* Merging two histograms gives exactly the histogram of all the samples. */
static void test_merge_equals_union(void **state)
{
    (void)state;
    rng_state = 7;
    struct cc_hist a, b, all;
    cc_hist_init(&a);
    cc_hist_init(&b);
    cc_hist_init(&all);
    for (int i = 0; i < 50000; i++) {
        uint64_t v = rng() % 10000000000ull;
        cc_hist_record(i % 3 ? &a : &b, v);
        cc_hist_record(&all, v);
    }
    cc_hist_merge(&a, &b);
    assert_int_equal(a.total, all.total);
    assert_int_equal(a.min, all.min);
    assert_int_equal(a.max, all.max);
    for (unsigned i = 0; i < CC_HIST_BUCKETS; i++)
        assert_int_equal(cc_hist_count_at(&a, i), cc_hist_count_at(&all, i));
    cc_hist_release(&a);
    cc_hist_release(&b);
    cc_hist_release(&all);
}

/* The memory of a histogram is bounded: every group allocated at most once. */
static void test_memory_is_bounded(void **state)
{
    (void)state;
    struct cc_hist h;
    cc_hist_init(&h);
    for (unsigned idx = 0; idx < CC_HIST_BUCKETS; idx++)
        cc_hist_record(&h, cc_hist_bucket_low(idx));
    size_t groups = 0;
    for (unsigned g = 0; g < CC_HIST_GROUPS; g++)
        groups += h.group[g] != NULL;
    assert_int_equal(groups, CC_HIST_GROUPS);
    assert_true(CC_HIST_BUCKETS * sizeof(uint64_t) < 20 * 1024);
    cc_hist_release(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buckets_tile_the_range), cmocka_unit_test(test_bound_log_uniform),
        cmocka_unit_test(test_bound_lognormal),        cmocka_unit_test(test_bound_bimodal_small),
        cmocka_unit_test(test_locust_rank_rule),       cmocka_unit_test(test_empty_and_clamp),
        cmocka_unit_test(test_merge_equals_union),     cmocka_unit_test(test_memory_is_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
