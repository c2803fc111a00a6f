/* SPDX-License-Identifier: MIT */
/*
 * test_sock_recv.c: the receive patterns of the cooperative sockets (proto/socket/recv.c), fed
 * every split of their input: whatever way the bytes arrive, the results are the same.
 */
#include "proto/socket/recv.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

/*
 * Runs receives of |proto| back to back over |input|, which arrives in pieces: bytes up to
 * cuts[0], then up to cuts[1], ..., then the rest and the end. Writes each outcome to |out|
 * as "D<data>|" (done), "E|" (end of an until reader), "C<partial>|" (closed), and returns it.
 * For CC_RECV_ANY, results depend on how bytes arrive; pass |join| to write only the data.
 */
static char *run(const struct cc_recv *proto, const char *input, const size_t *cuts, size_t ncuts,
                 bool join, char *out, size_t cap)
{
    size_t len = strlen(input), avail = 0, off = 0, o = 0, next = 0;
    struct cc_recv r = *proto;
    cc_recv_start(&r);
    char tmp[4096];
    out[0] = '\0';
    for (;;) {
        bool eof = avail == len && next > ncuts;
        struct cc_recv_result res;
        enum cc_recv_status st = cc_recv_step(&r, input + off, avail - off, eof, &res);
        if (st == CC_RECV_MORE) {
            assert_false(eof);
            if (next < ncuts)
                avail = CC_MAX(avail, cuts[next]);
            else
                avail = len;
            next++;
            continue;
        }
        assert_true(res.consume <= avail - off);
        assert_true(res.data_len <= avail - off);
        size_t dl = res.data_len;
        const char *d = input + off;
        if (res.strip_cr) {
            dl = cc_recv_strip_cr(tmp, d, dl);
            d = tmp;
        }
        if (!join || st == CC_RECV_DONE) {
            if (!join) out[o++] = st == CC_RECV_DONE ? 'D' : st == CC_RECV_END ? 'E' : 'C';
            if (st != CC_RECV_END) {
                assert_true(o + dl + 2 < cap);
                memcpy(out + o, d, dl);
                o += dl;
            }
            if (!join) out[o++] = '|';
            /* a chunk flagged last and a separate end read the same to a script: nil next */
            if (!join && res.last) {
                out[o++] = 'E';
                out[o++] = '|';
            }
            out[o] = '\0';
        }
        off += res.consume;
        if (st == CC_RECV_CLOSED) return out;
        /* a new receive after each result (an until reader just goes on with its chunks) */
        if (r.mode != CC_RECV_UNTIL || r.n == 0 || res.last || st == CC_RECV_END) {
            struct cc_recv again = *proto;
            r = again;
            cc_recv_start(&r);
        }
        if (r.mode == CC_RECV_ALL && st == CC_RECV_DONE) return out;
    }
}

/* Checks |proto| over |input| against |want| for no cuts, every single cut, every pair of
 * cuts, and one byte at a time. */
static void check(const struct cc_recv *proto, const char *input, const char *want)
{
    char got[4096];
    size_t len = strlen(input);
    bool join = proto->mode == CC_RECV_ANY;
    run(proto, input, NULL, 0, join, got, sizeof(got));
    assert_string_equal(got, want);
    for (size_t i = 0; i <= len; i++) {
        size_t cuts[1] = {i};
        run(proto, input, cuts, 1, join, got, sizeof(got));
        assert_string_equal(got, want);
        for (size_t j = i; j <= len; j++) {
            size_t cuts2[2] = {i, j};
            run(proto, input, cuts2, 2, join, got, sizeof(got));
            assert_string_equal(got, want);
        }
    }
    size_t *each = malloc((len + 1) * sizeof(*each));
    for (size_t i = 0; i <= len; i++)
        each[i] = i;
    run(proto, input, each, len + 1, join, got, sizeof(got));
    assert_string_equal(got, want);
    free(each);
}

static void test_lines(void **state)
{
    (void)state;
    struct cc_recv r = {.mode = CC_RECV_LINE};
    check(&r, "one\r\ntwo\nthree", "Done|Dtwo|Cthree|");
    check(&r, "a\rb\r\r\n\n", "Dab|D|C|");
    check(&r, "", "C|");
    check(&r, "+OK\r\n$3\r\nbar\r\n", "D+OK|D$3|Dbar|C|");
}

static void test_bytes(void **state)
{
    (void)state;
    struct cc_recv r = {.mode = CC_RECV_BYTES, .n = 3};
    check(&r, "abcdefgh", "Dabc|Ddef|Cgh|");
    check(&r, "abcdef", "Dabc|Ddef|C|");
    struct cc_recv zero = {.mode = CC_RECV_BYTES, .n = 0};
    struct cc_recv_result res;
    cc_recv_start(&zero);
    assert_int_equal(cc_recv_step(&zero, "", 0, false, &res), CC_RECV_DONE);
    assert_int_equal(res.data_len, 0);
}

static void test_all(void **state)
{
    (void)state;
    struct cc_recv r = {.mode = CC_RECV_ALL};
    check(&r, "everything\r\nthere is", "Deverything\r\nthere is|");
    check(&r, "", "D|");
}

static void test_any(void **state)
{
    (void)state;
    struct cc_recv r = {.mode = CC_RECV_ANY, .n = 4};
    check(&r, "abcdefghij", "abcdefghij");
    /* what has arrived, at most n */
    struct cc_recv_result res;
    cc_recv_start(&r);
    assert_int_equal(cc_recv_step(&r, "ab", 2, false, &res), CC_RECV_DONE);
    assert_int_equal(res.data_len, 2);
    assert_int_equal(cc_recv_step(&r, "abcdefg", 7, false, &res), CC_RECV_DONE);
    assert_int_equal(res.data_len, 4);
    assert_int_equal(cc_recv_step(&r, "", 0, false, &res), CC_RECV_MORE);
    assert_int_equal(cc_recv_step(&r, "", 0, true, &res), CC_RECV_CLOSED);
}

static void test_until(void **state)
{
    (void)state;
    struct cc_recv r = {.mode = CC_RECV_UNTIL, .pat = "\r\n--abcedhb", .pat_len = 11};
    check(&r, "hello, world! -agentzh\r\n--abcedhb", "Dhello, world! -agentzh|C|");
    check(&r, "a\r\n--abcedhb\r\n--abcedhbrest", "Da|D|Crest|");
    /* OpenResty's documented example: four bytes at a time, then the end */
    r.n = 4;
    check(&r, "hello, world! -agentzh\r\n--abcedhb", "Dhell|Do, w|Dorld|D! -a|Dgent|Dzh|E|C|");
    check(&r, "\r\n--abcedhbabcd", "E|Dabcd|C|");
    check(&r, "abcd\r\n--abcedhb", "Dabcd|E|C|");
    /* partial delimiters in the data */
    struct cc_recv p = {.mode = CC_RECV_UNTIL, .pat = "aab", .pat_len = 3};
    check(&p, "aaaabxaab", "Daa|Dx|C|");
    p.n = 1;
    check(&p, "aaaabxaab", "Da|Da|E|Dx|E|C|");
    p.n = 2;
    check(&p, "xyaaaab", "Dxy|Daa|E|C|");
    /* inclusive: the delimiter is part of the data */
    struct cc_recv inc = {.mode = CC_RECV_UNTIL, .pat = "--", .pat_len = 2, .inclusive = true};
    check(&inc, "ab--cd--", "Dab--|Dcd--|C|");
    inc.n = 3;
    check(&inc, "abcd--ef", "Dabc|Dd--|E|Cef|");
    /* a one-byte delimiter, and one never seen */
    struct cc_recv one = {.mode = CC_RECV_UNTIL, .pat = ",", .pat_len = 1};
    check(&one, "a,,b", "Da|D|Cb|");
    struct cc_recv none = {.mode = CC_RECV_UNTIL, .pat = "zz", .pat_len = 2, .n = 2};
    check(&none, "abcdez", "Dab|Dcd|Cez|");
}

static void test_strip_cr(void **state)
{
    (void)state;
    char buf[16];
    assert_int_equal(cc_recv_strip_cr(buf, "\ra\r\rb\r", 6), 2);
    assert_memory_equal(buf, "ab", 2);
    assert_int_equal(cc_recv_strip_cr(buf, "", 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines), cmocka_unit_test(test_bytes), cmocka_unit_test(test_all),
        cmocka_unit_test(test_any),   cmocka_unit_test(test_until), cmocka_unit_test(test_strip_cr),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
