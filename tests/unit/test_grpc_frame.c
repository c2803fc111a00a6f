/* SPDX-License-Identifier: MIT */
/*
 * test_grpc_frame.c: gRPC's length-prefixed messages (frame.c). A stream of messages (empty,
 * short, compressed-flagged, longer than a piece) goes in at every split point, at every pair
 * of split points, and a byte at a time; the messages must come out the same each time.
 * Then the broken streams: a bad flag byte, a message over the maximum, a stream cut short,
 * and a callback that stops the deframer.
 */
#include "proto/grpc/frame.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#define MAXMSG 16

struct got {
    int n;
    size_t len[MAXMSG];
    bool compressed[MAXMSG];
    char data[MAXMSG][2048];
    int stop_at; /* return 7 from this message (1-based), 0: never */
};

static int on_msg(void *arg, const char *msg, size_t len, bool compressed)
{
    struct got *g = arg;
    assert_true(g->n < MAXMSG);
    assert_true(len <= sizeof(g->data[0]));
    g->len[g->n] = len;
    g->compressed[g->n] = compressed;
    if (len) memcpy(g->data[g->n], msg, len);
    g->n++;
    return g->stop_at == g->n ? 7 : 0;
}

static size_t put(uint8_t *out, bool compressed, const char *msg, size_t len)
{
    grpc_frame_prefix((char *)out, compressed, (uint32_t)len);
    if (len) memcpy(out + GRPC_PREFIX, msg, len);
    return GRPC_PREFIX + len;
}

static char big[1500];

/* The stream of the split tests: five messages. */
static size_t stream(uint8_t *out)
{
    memset(big, 'x', sizeof(big));
    big[0] = 'A';
    big[sizeof(big) - 1] = 'Z';
    size_t n = 0;
    n += put(out + n, false, "", 0);
    n += put(out + n, false, "hello", 5);
    n += put(out + n, true, "z", 1);
    n += put(out + n, false, big, sizeof(big));
    n += put(out + n, false, "end", 3);
    return n;
}

static void check_stream(const struct got *g)
{
    assert_int_equal(g->n, 5);
    assert_int_equal(g->len[0], 0);
    assert_int_equal(g->len[1], 5);
    assert_memory_equal(g->data[1], "hello", 5);
    assert_true(g->compressed[2]);
    assert_false(g->compressed[1]);
    assert_int_equal(g->len[2], 1);
    assert_int_equal(g->len[3], sizeof(big));
    assert_memory_equal(g->data[3], big, sizeof(big));
    assert_int_equal(g->len[4], 3);
    assert_memory_equal(g->data[4], "end", 3);
}

/* Feeds |p| cut at the offsets |cuts| (ascending, |ncuts| of them). */
static void feed_cut(struct grpc_deframer *d, struct got *g, const uint8_t *p, size_t len,
                     const size_t *cuts, size_t ncuts)
{
    size_t off = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        assert_int_equal(grpc_deframe(d, (const char *)p + off, end - off, on_msg, g), 0);
        off = end;
    }
}

static void test_every_split(void **state)
{
    (void)state;
    static uint8_t s[2048];
    size_t len = stream(s);
    for (size_t i = 0; i <= len; i++) {
        struct grpc_deframer d;
        grpc_deframer_init(&d, 4096);
        struct got g = {0};
        feed_cut(&d, &g, s, len, &i, 1);
        check_stream(&g);
        assert_false(grpc_deframer_partial(&d));
        assert_int_equal(d.messages, 5);
        grpc_deframer_release(&d);
    }
}

static void test_every_pair_of_splits(void **state)
{
    (void)state;
    /* the short messages only, and the prefix of the long one: every pair of cut points */
    static uint8_t s[64];
    size_t len = 0;
    len += put(s + len, false, "", 0);
    len += put(s + len, false, "hello", 5);
    len += put(s + len, true, "z", 1);
    len += put(s + len, false, "end", 3);
    for (size_t i = 0; i <= len; i++)
        for (size_t j = i; j <= len; j++) {
            struct grpc_deframer d;
            grpc_deframer_init(&d, 64);
            struct got g = {0};
            size_t cuts[2] = {i, j};
            feed_cut(&d, &g, s, len, cuts, 2);
            assert_int_equal(g.n, 4);
            assert_memory_equal(g.data[1], "hello", 5);
            assert_true(g.compressed[2]);
            assert_memory_equal(g.data[3], "end", 3);
            assert_false(grpc_deframer_partial(&d));
            grpc_deframer_release(&d);
        }
}

static void test_byte_at_a_time(void **state)
{
    (void)state;
    static uint8_t s[2048];
    size_t len = stream(s);
    struct grpc_deframer d;
    grpc_deframer_init(&d, 4096);
    struct got g = {0};
    for (size_t i = 0; i < len; i++) {
        assert_int_equal(grpc_deframe(&d, (const char *)s + i, 1, on_msg, &g), 0);
        if (i + 1 < len) assert_true(g.n < 5);
    }
    check_stream(&g);
    /* reset and used again: the buffer is kept */
    grpc_deframer_reset(&d);
    memset(&g, 0, sizeof(g));
    assert_int_equal(grpc_deframe(&d, (const char *)s, len, on_msg, &g), 0);
    check_stream(&g);
    grpc_deframer_release(&d);
}

static void test_broken_streams(void **state)
{
    (void)state;
    struct got g = {0};
    struct grpc_deframer d;
    /* a flag byte that is neither 0 nor 1, whole or split */
    static const uint8_t flag[] = {2, 0, 0, 0, 1, 'x'};
    for (size_t i = 0; i <= sizeof(flag); i++) {
        grpc_deframer_init(&d, 100);
        int rc = grpc_deframe(&d, (const char *)flag, i, on_msg, &g);
        if (rc == 0) rc = grpc_deframe(&d, (const char *)flag + i, sizeof(flag) - i, on_msg, &g);
        assert_int_equal(rc, GRPC_FRAME_EFLAG);
        grpc_deframer_release(&d);
    }
    assert_int_equal(g.n, 0);
    /* a message over the maximum is refused at its prefix, before any of it is kept */
    static const uint8_t huge[] = {0, 0x7f, 0xff, 0xff, 0xff};
    for (size_t i = 0; i <= sizeof(huge); i++) {
        grpc_deframer_init(&d, 1000);
        int rc = grpc_deframe(&d, (const char *)huge, i, on_msg, &g);
        if (rc == 0) rc = grpc_deframe(&d, (const char *)huge + i, sizeof(huge) - i, on_msg, &g);
        assert_int_equal(rc, GRPC_FRAME_ETOOBIG);
        assert_null(d.buf);
        grpc_deframer_release(&d);
    }
    /* exactly the maximum is fine */
    uint8_t at_max[5 + 10];
    put(at_max, false, "0123456789", 10);
    grpc_deframer_init(&d, 10);
    assert_int_equal(grpc_deframe(&d, (const char *)at_max, sizeof(at_max), on_msg, &g), 0);
    assert_int_equal(g.n, 1);
    grpc_deframer_release(&d);
    /* cut short: inside a prefix, inside a message */
    grpc_deframer_init(&d, 100);
    assert_int_equal(grpc_deframe(&d, (const char *)at_max, 3, on_msg, &g), 0);
    assert_true(grpc_deframer_partial(&d));
    grpc_deframer_reset(&d);
    assert_false(grpc_deframer_partial(&d));
    assert_int_equal(grpc_deframe(&d, (const char *)at_max, 9, on_msg, &g), 0);
    assert_true(grpc_deframer_partial(&d));
    grpc_deframer_release(&d);
}

static void test_callback_stops(void **state)
{
    (void)state;
    static uint8_t s[2048];
    size_t len = stream(s);
    for (int stop = 1; stop <= 5; stop++) {
        struct grpc_deframer d;
        grpc_deframer_init(&d, 4096);
        struct got g = {.stop_at = stop};
        assert_int_equal(grpc_deframe(&d, (const char *)s, len, on_msg, &g), 7);
        assert_int_equal(g.n, stop);
        grpc_deframer_release(&d);
    }
}

static void test_prefix(void **state)
{
    (void)state;
    char p[GRPC_PREFIX];
    grpc_frame_prefix(p, true, 0x01020304u);
    assert_memory_equal(p, "\x01\x01\x02\x03\x04", 5);
    grpc_frame_prefix(p, false, 6);
    assert_memory_equal(p, "\x00\x00\x00\x00\x06", 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_split),    cmocka_unit_test(test_every_pair_of_splits),
        cmocka_unit_test(test_byte_at_a_time), cmocka_unit_test(test_broken_streams),
        cmocka_unit_test(test_callback_stops), cmocka_unit_test(test_prefix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
