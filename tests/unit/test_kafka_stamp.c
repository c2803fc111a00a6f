/* SPDX-License-Identifier: MIT */
/*
 * test_kafka_stamp.c: the send-time stamp the Kafka producer puts on messages (stamp.c):
 * encoding, decoding (every prefix of a stamp, in exact-size buffers), and the end-to-end
 * latency read from a message's headers.
 */
#include "proto/kafka/kafka.h"

#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static void test_roundtrip(void **state)
{
    (void)state;
    const uint64_t values[] = {0, 1, 255, 256, 1700000000123456789ull, UINT64_MAX};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        unsigned char b[KAFKA_STAMP_LEN];
        kafka_stamp_encode(values[i], b);
        uint64_t back = 7;
        assert_true(kafka_stamp_decode(b, sizeof(b), &back));
        assert_true(back == values[i]);
    }
    /* big-endian on the wire */
    unsigned char b[KAFKA_STAMP_LEN];
    kafka_stamp_encode(0x0102030405060708ull, b);
    const unsigned char want[] = {1, 2, 3, 4, 5, 6, 7, 8};
    assert_memory_equal(b, want, sizeof(want));
}

static void test_every_prefix(void **state)
{
    (void)state;
    unsigned char b[KAFKA_STAMP_LEN + 1];
    kafka_stamp_encode(1700000000123456789ull, b);
    b[KAFKA_STAMP_LEN] = 9;
    for (size_t k = 0; k <= sizeof(b); k++) {
        unsigned char *p = malloc(k ? k : 1);
        memcpy(p, b, k);
        uint64_t v;
        assert_int_equal(kafka_stamp_decode(p, k, &v), k == KAFKA_STAMP_LEN);
        free(p);
    }
    uint64_t v;
    assert_false(kafka_stamp_decode(NULL, KAFKA_STAMP_LEN, &v));
}

static void test_latency(void **state)
{
    (void)state;
    uint64_t ns;
    assert_false(kafka_stamp_latency(NULL, 100, &ns));
    rd_kafka_headers_t *h = rd_kafka_headers_new(4);
    assert_false(kafka_stamp_latency(h, 100, &ns)); /* no stamp */
    rd_kafka_header_add(h, "other", -1, "x", 1);
    assert_false(kafka_stamp_latency(h, 100, &ns));

    unsigned char b[KAFKA_STAMP_LEN];
    kafka_stamp_encode(1000, b);
    rd_kafka_header_add(h, KAFKA_STAMP_HEADER, -1, b, sizeof(b));
    assert_true(kafka_stamp_latency(h, 1500, &ns));
    assert_true(ns == 500);
    /* the sender's clock ahead of ours: no negative latency */
    assert_true(kafka_stamp_latency(h, 900, &ns));
    assert_true(ns == 0);
    /* a later stamp (a message passed on) counts */
    kafka_stamp_encode(1400, b);
    rd_kafka_header_add(h, KAFKA_STAMP_HEADER, -1, b, sizeof(b));
    assert_true(kafka_stamp_latency(h, 1500, &ns));
    assert_true(ns == 100);
    rd_kafka_headers_destroy(h);

    /* a header of that name that is not a stamp, or a null one */
    h = rd_kafka_headers_new(2);
    rd_kafka_header_add(h, KAFKA_STAMP_HEADER, -1, "short", 5);
    assert_false(kafka_stamp_latency(h, 1500, &ns));
    rd_kafka_header_add(h, KAFKA_STAMP_HEADER, -1, NULL, 0);
    assert_false(kafka_stamp_latency(h, 1500, &ns));
    rd_kafka_headers_destroy(h);
}

static void test_wall_clock(void **state)
{
    (void)state;
    uint64_t a = kafka_wall_ns();
    assert_true(a > 1500000000ull * 1000000000ull); /* after 2017 */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_every_prefix),
        cmocka_unit_test(test_latency),
        cmocka_unit_test(test_wall_clock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
