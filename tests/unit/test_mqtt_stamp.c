/* SPDX-License-Identifier: MIT */
/* test_mqtt_stamp.c: the delivery stamp in MQTT payloads, and the names of MQTT statistics. */
#include "proto/mqtt/mqtt.h"

#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static void test_round_trip(void **state)
{
    (void)state;
    const uint64_t values[] = {0, 1, 0x0123456789abcdefull, UINT64_MAX, mqtt_wall_ns()};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        unsigned char buf[MQTT_STAMP_LEN + 5];
        mqtt_stamp_write(buf, values[i]);
        memcpy(buf + MQTT_STAMP_LEN, "hello", 5);
        uint64_t got = 1;
        assert_true(mqtt_stamp_read(buf, sizeof(buf), &got));
        assert_true(got == values[i]);
        /* the stamp alone, with an empty payload, is still a stamp */
        assert_true(mqtt_stamp_read(buf, MQTT_STAMP_LEN, &got));
        /* every shorter prefix is not */
        for (size_t n = 0; n < MQTT_STAMP_LEN; n++)
            assert_false(mqtt_stamp_read(buf, n, &got));
    }
}

static void test_not_stamped(void **state)
{
    (void)state;
    uint64_t t = 5;
    assert_false(mqtt_stamp_read(NULL, 0, &t));
    assert_false(mqtt_stamp_read("hello, this is a payload", 24, &t));
    unsigned char buf[MQTT_STAMP_LEN];
    mqtt_stamp_write(buf, 99);
    for (size_t i = 0; i < 4; i++) { /* any change to the magic bytes */
        unsigned char c[MQTT_STAMP_LEN];
        memcpy(c, buf, sizeof(c));
        c[i] ^= 0x40;
        assert_false(mqtt_stamp_read(c, sizeof(c), &t));
    }
    assert_true(t == 5);
}

static void test_event_names(void **state)
{
    (void)state;
    char buf[64];
    assert_int_equal(mqtt_event_name(buf, sizeof(buf), "publish", 1, "a/b", 3), 13);
    assert_string_equal(buf, "publish:1:a/b");
    assert_int_equal(mqtt_event_name(buf, sizeof(buf), "unsubscribe", -1, "x/#", 3), 15);
    assert_string_equal(buf, "unsubscribe:x/#");
    /* a topic longer than the buffer is cut, never overflows */
    char topic[200];
    memset(topic, 't', sizeof(topic));
    size_t n = mqtt_event_name(buf, sizeof(buf), "subscribe", 2, topic, sizeof(topic));
    assert_int_equal(n, sizeof(buf) - 1);
    assert_int_equal(strlen(buf), sizeof(buf) - 1);
    assert_memory_equal(buf, "subscribe:2:ttt", 15);
    /* tiny buffers */
    char one[1];
    assert_int_equal(mqtt_event_name(one, 1, "publish", 0, "t", 1), 0);
    assert_int_equal(one[0], '\0');
    char few[5];
    assert_int_equal(mqtt_event_name(few, sizeof(few), "publish", 0, "t", 1), 4);
    assert_string_equal(few, "publ");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_not_stamped),
        cmocka_unit_test(test_event_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
