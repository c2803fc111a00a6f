/* SPDX-License-Identifier: MIT */
/* test_dispatch.c: the class mix at every user count, fixed counts, worker balance, LIFO. */
#include "runner/dispatch.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

/* At every user count the weighted mix is within one user of the exact share. */
static void test_weights_at_every_count(void **state)
{
    (void)state;
    double w[3] = {5, 1, 2};
    uint32_t fixed[3] = {0, 0, 0};
    struct cc_dispatch d;
    cc_dispatch_init(&d, 3, w, fixed, 4);
    struct cc_dispatch_entry e;
    for (int n = 1; n <= 800; n++) {
        assert_true(cc_dispatch_add(&d, &e));
        for (int c = 0; c < 3; c++) {
            double ideal = n * w[c] / 8.0;
            assert_true(fabs(d.count[c] - ideal) < 1.0 + 1e-9);
        }
    }
    assert_int_equal(d.count[0], 500);
    assert_int_equal(d.count[1], 100);
    assert_int_equal(d.count[2], 200);
    /* workers share every class evenly */
    for (uint32_t k = 0; k < 4; k++) {
        assert_int_equal(d.wtotal[k], 200);
        assert_int_equal(d.wcount[k * 3 + 0], 125);
    }
    cc_dispatch_release(&d);
}

/* fixed_count classes come first and stop at their count; zero weight gets nobody. */
static void test_fixed_count_first(void **state)
{
    (void)state;
    double w[3] = {1, 1, 0};
    uint32_t fixed[3] = {0, 2, 0};
    struct cc_dispatch d;
    cc_dispatch_init(&d, 3, w, fixed, 1);
    struct cc_dispatch_entry e;
    assert_true(cc_dispatch_add(&d, &e));
    assert_int_equal(e.cls, 1);
    assert_true(cc_dispatch_add(&d, &e));
    assert_int_equal(e.cls, 1);
    for (int i = 0; i < 10; i++) {
        assert_true(cc_dispatch_add(&d, &e));
        assert_int_equal(e.cls, 0);
    }
    assert_int_equal(d.count[2], 0);
    cc_dispatch_release(&d);

    /* only fixed classes: no user beyond their total */
    double w2[1] = {1};
    uint32_t f2[1] = {3};
    cc_dispatch_init(&d, 1, w2, f2, 2);
    for (int i = 0; i < 3; i++)
        assert_true(cc_dispatch_add(&d, &e));
    assert_false(cc_dispatch_add(&d, &e));
    cc_dispatch_release(&d);
}

/* Removing takes the most recent users first, so ramping down retraces ramping up. */
static void test_remove_is_lifo(void **state)
{
    (void)state;
    double w[2] = {3, 1};
    uint32_t fixed[2] = {0, 0};
    struct cc_dispatch d;
    cc_dispatch_init(&d, 2, w, fixed, 3);
    struct cc_dispatch_entry added[40], e;
    for (int i = 0; i < 40; i++)
        assert_true(cc_dispatch_add(&d, &added[i]));
    for (int i = 39; i >= 10; i--) {
        assert_true(cc_dispatch_remove(&d, &e));
        assert_int_equal(e.cls, added[i].cls);
        assert_int_equal(e.worker, added[i].worker);
    }
    assert_int_equal(cc_dispatch_total(&d), 10);
    /* the mix at 10 users is the mix the ramp-up had at 10 */
    assert_int_equal(d.count[0] + d.count[1], 10);
    assert_true(d.count[0] >= 7 && d.count[0] <= 8);
    cc_dispatch_release(&d);
}

/* A stage that allows fewer classes: their users leave, most recent first, and the mix of the
 * others follows the weights; LIFO removal skips the users already taken. */
static void test_allowed_classes(void **state)
{
    (void)state;
    double w[3] = {1, 1, 2};
    uint32_t fixed[3] = {0, 0, 0};
    struct cc_dispatch d;
    cc_dispatch_init(&d, 3, w, fixed, 2);
    struct cc_dispatch_entry e, added[40];
    for (int i = 0; i < 40; i++)
        assert_true(cc_dispatch_add(&d, &added[i]));
    assert_int_equal(d.count[0], 10);
    bool allowed[3] = {true, false, true};
    cc_dispatch_set_allowed(&d, allowed);
    assert_int_equal(cc_dispatch_disallowed(&d), 1);
    int last = -1;
    for (int i = 39; i >= 0; i--)
        if (added[i].cls == 1) {
            last = i;
            break;
        }
    assert_true(cc_dispatch_remove_class(&d, 1, &e));
    assert_int_equal(e.worker, added[last].worker);
    while (cc_dispatch_remove_class(&d, 1, &e))
        ;
    assert_int_equal(cc_dispatch_disallowed(&d), -1);
    assert_int_equal(cc_dispatch_total(&d), 30);
    /* new users go to the allowed classes only, by weight */
    for (int i = 0; i < 30; i++) {
        assert_true(cc_dispatch_add(&d, &e));
        assert_true(e.cls != 1);
    }
    assert_int_equal(d.count[1], 0);
    assert_int_equal(d.count[0] + d.count[2], 60);
    assert_true(d.count[2] >= 39 && d.count[2] <= 41);
    /* LIFO removal takes the newest first and never a user already gone */
    size_t before = cc_dispatch_total(&d);
    while (cc_dispatch_remove(&d, &e))
        assert_true(e.cls != 1);
    assert_int_equal(cc_dispatch_total(&d), 0);
    assert_true(before == 60);
    cc_dispatch_release(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_weights_at_every_count),
        cmocka_unit_test(test_fixed_count_first),
        cmocka_unit_test(test_remove_is_lifo),
        cmocka_unit_test(test_allowed_classes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
