/* SPDX-License-Identifier: MIT */
/*
 * test_pg_value.c: the PostgreSQL client's text readers (value.c): integers, floats and
 * booleans in PostgreSQL's output forms, the statistics names of SQL texts, and libpq message
 * lines. Each reader is also given every prefix of each input, in a heap buffer of exactly
 * that size, so that a read past the end shows under AddressSanitizer.
 */
#include "proto/pg/pg.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

/* An exact-size copy of the first |n| bytes of |s| (no NUL after them). */
static char *exact(const char *s, size_t n)
{
    char *p = malloc(n ? n : 1);
    memcpy(p, s, n);
    return p;
}

static bool int_of(const char *s, int64_t *v)
{
    char *p = exact(s, strlen(s));
    bool ok = pg_parse_int(p, strlen(s), v);
    free(p);
    return ok;
}

static bool float_of(const char *s, double *v)
{
    char *p = exact(s, strlen(s));
    bool ok = pg_parse_float(p, strlen(s), v);
    free(p);
    return ok;
}

static void test_int(void **state)
{
    (void)state;
    int64_t v;
    assert_true(int_of("0", &v));
    assert_int_equal(v, 0);
    assert_true(int_of("-42", &v));
    assert_int_equal(v, -42);
    assert_true(int_of("123456789", &v));
    assert_int_equal(v, 123456789);
    assert_true(int_of("9223372036854775807", &v));
    assert_true(v == INT64_MAX);
    assert_true(int_of("-9223372036854775808", &v));
    assert_true(v == INT64_MIN);
    assert_false(int_of("9223372036854775808", &v));
    assert_false(int_of("-9223372036854775809", &v));
    assert_false(int_of("99999999999999999999", &v));
    assert_false(int_of("", &v));
    assert_false(int_of("-", &v));
    assert_false(int_of("+1", &v));
    assert_false(int_of(" 1", &v));
    assert_false(int_of("1 ", &v));
    assert_false(int_of("1a", &v));
    assert_false(int_of("1.0", &v));
    assert_false(int_of("--1", &v));
}

static void test_float(void **state)
{
    (void)state;
    double d;
    assert_true(float_of("1.5", &d));
    assert_true(d == 1.5);
    assert_true(float_of("-2e-07", &d));
    assert_true(d == -2e-07);
    assert_true(float_of("3", &d));
    assert_true(d == 3);
    assert_true(float_of("1.7976931348623157e+308", &d));
    assert_true(d == 1.7976931348623157e+308);
    assert_true(float_of(".5", &d));
    assert_true(d == 0.5);
    assert_true(float_of("5.", &d));
    assert_true(d == 5);
    assert_true(float_of("NaN", &d));
    assert_true(isnan(d));
    assert_true(float_of("Infinity", &d));
    assert_true(isinf(d) && d > 0);
    assert_true(float_of("-Infinity", &d));
    assert_true(isinf(d) && d < 0);
    const char *bad[] = {"",     "-",  ".",  "e5",   "1e",    "1e+", "inf",     "nan",
                         "0x10", " 1", "1 ", "1..2", "1e5.5", "--1", "Infinit", "NaNa"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(float_of(bad[i], &d));
    /* a text too long for any float PostgreSQL prints */
    char lon[80];
    memset(lon, '1', sizeof(lon));
    lon[63] = '\0';
    assert_true(float_of(lon, &d));
    lon[63] = '1';
    lon[64] = '\0';
    assert_false(float_of(lon, &d));
}

static void test_bool(void **state)
{
    (void)state;
    bool b;
    assert_true(pg_parse_bool("t", 1, &b));
    assert_true(b);
    assert_true(pg_parse_bool("f", 1, &b));
    assert_false(b);
    assert_false(pg_parse_bool("true", 4, &b));
    assert_false(pg_parse_bool("", 0, &b));
    assert_false(pg_parse_bool("x", 1, &b));
}

static void test_types(void **state)
{
    (void)state;
    assert_int_equal(pg_vtype_of(16), PGV_BOOL);
    assert_int_equal(pg_vtype_of(20), PGV_INT);
    assert_int_equal(pg_vtype_of(21), PGV_INT);
    assert_int_equal(pg_vtype_of(23), PGV_INT);
    assert_int_equal(pg_vtype_of(26), PGV_INT);
    assert_int_equal(pg_vtype_of(700), PGV_FLOAT);
    assert_int_equal(pg_vtype_of(701), PGV_FLOAT);
    assert_int_equal(pg_vtype_of(1700), PGV_TEXT); /* numeric keeps its digits */
    assert_int_equal(pg_vtype_of(25), PGV_TEXT);
    assert_int_equal(pg_vtype_of(0), PGV_TEXT);
}

/* Every prefix of every input, in exact-size buffers: no reader looks past its length. */
static void test_every_prefix(void **state)
{
    (void)state;
    const char *inputs[] = {"-9223372036854775808",
                            "9223372036854775807",
                            "-2.5e-07",
                            "Infinity",
                            "-Infinity",
                            "NaN",
                            "t",
                            "f",
                            "12.75",
                            "1e308"};
    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
        size_t n = strlen(inputs[i]);
        for (size_t k = 0; k <= n; k++) {
            char *p = exact(inputs[i], k);
            int64_t v;
            double d;
            bool b;
            bool int_ok = pg_parse_int(p, k, &v);
            bool float_ok = pg_parse_float(p, k, &d);
            pg_parse_bool(p, k, &b);
            /* a prefix that reads as an integer reads as a float too, with the same value */
            if (int_ok) {
                assert_true(float_ok);
                assert_true((double)v == d || fabs((double)v - d) <= fabs(d) * 1e-15);
            }
            char name[PG_MAX_NAME + 8];
            size_t nl = pg_stats_name(p, k, name, sizeof(name));
            assert_true(nl > 0 && nl <= PG_MAX_NAME + 3);
            free(p);
        }
    }
}

static void name_is(const char *sql, const char *want)
{
    char out[PG_MAX_NAME + 8];
    char *p = exact(sql, strlen(sql));
    size_t n = pg_stats_name(p, strlen(sql), out, sizeof(out));
    free(p);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);
}

static void test_stats_name(void **state)
{
    (void)state;
    name_is("select 1", "select 1");
    name_is("  select   *\n\tfrom  t\r\n where id = $1  ", "select * from t where id = $1");
    name_is("", "(empty)");
    name_is(" \n\t ", "(empty)");
    /* long texts are cut at PG_MAX_NAME bytes and marked */
    char lon[400], want[PG_MAX_NAME + 4];
    memset(lon, 'a', 300);
    lon[300] = '\0';
    memset(want, 'a', PG_MAX_NAME);
    memcpy(want + PG_MAX_NAME, "...", 4);
    name_is(lon, want);
    /* exactly PG_MAX_NAME bytes: kept whole */
    lon[PG_MAX_NAME] = '\0';
    want[PG_MAX_NAME] = '\0';
    name_is(lon, want);
    /* never cut inside a UTF-8 character: "é" (2 bytes) straddling the limit goes */
    memset(lon, 'a', PG_MAX_NAME - 1);
    memcpy(lon + PG_MAX_NAME - 1, "\xc3\xa9xyz", 6);
    memset(want, 'a', PG_MAX_NAME - 1);
    memcpy(want + PG_MAX_NAME - 1, "...", 4);
    name_is(lon, want);
    /* a character that ends right at the limit stays */
    memset(lon, 'a', PG_MAX_NAME - 2);
    memcpy(lon + PG_MAX_NAME - 2, "\xc3\xa9xyz", 6);
    memset(want, 'a', PG_MAX_NAME - 2);
    memcpy(want + PG_MAX_NAME - 2, "\xc3\xa9...", 6);
    name_is(lon, want);
}

static void test_first_line(void **state)
{
    (void)state;
    char out[64];
    size_t n =
        pg_first_line("ERROR:  relation \"x\" does not exist\nLINE 1: select", out, sizeof(out));
    assert_string_equal(out, "relation \"x\" does not exist");
    assert_int_equal(n, strlen(out));
    pg_first_line("server closed the connection unexpectedly\n\tThis probably means\n", out,
                  sizeof(out));
    assert_string_equal(out, "server closed the connection unexpectedly");
    pg_first_line("FATAL:  role \"x\" does not exist  \n", out, sizeof(out));
    assert_string_equal(out, "role \"x\" does not exist");
    pg_first_line(NULL, out, sizeof(out));
    assert_string_equal(out, "");
    /* cut to the buffer */
    char small[8];
    pg_first_line("0123456789", small, sizeof(small));
    assert_string_equal(small, "0123456");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_int),          cmocka_unit_test(test_float),
        cmocka_unit_test(test_bool),         cmocka_unit_test(test_types),
        cmocka_unit_test(test_every_prefix), cmocka_unit_test(test_stats_name),
        cmocka_unit_test(test_first_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
