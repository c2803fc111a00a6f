/* SPDX-License-Identifier: MIT */
/*
 * test_kafka_wake.c: the loop hears of a producer's events through an eventfd
 * (kafka_wake_on_queue), also when librdkafka queued one before the eventfd was set up. Here
 * a broker that refuses connections has an error event queued first; the delivery report of a
 * message that then times out must still wake the eventfd, each time the queue is read empty.
 */
#include "proto/kafka/kafka.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

/* Bounds for a loaded machine, not expectations: an event queued within them is seen. */
#define EVENT_WITHIN_MS 20000

/* A loopback port that refuses connections: bound, never listening, held by the test. */
static int refusing_port(int *fd)
{
    *fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(*fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(*fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(*fd, (struct sockaddr *)&a, &len), 0);
    return ntohs(a.sin_port);
}

static void set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
    char err[256];
    assert_int_equal(rd_kafka_conf_set(conf, name, value, err, sizeof(err)), RD_KAFKA_CONF_OK);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void test_event_queued_before(void **state)
{
    (void)state;
    int held;
    char bootstrap[64];
    snprintf(bootstrap, sizeof(bootstrap), "127.0.0.1:%d", refusing_port(&held));
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    set(conf, "bootstrap.servers", bootstrap);
    set(conf, "message.timeout.ms", "100");
    set(conf, "log_level", "0");
    rd_kafka_conf_set_events(conf, RD_KAFKA_EVENT_DR | RD_KAFKA_EVENT_ERROR);
    char err[256];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    assert_non_null(rk);
    rd_kafka_queue_t *q = rd_kafka_queue_get_main(rk);

    /* the refused connection's error is queued before anyone listens for it */
    for (int waited = 0; rd_kafka_queue_length(q) == 0; waited += 10) {
        assert_true(waited < EVENT_WITHIN_MS);
        sleep_ms(10);
    }
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    assert_true(efd >= 0);
    kafka_wake_on_queue(q, efd);

    int mark = 42;
    assert_int_equal(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC("t"), RD_KAFKA_V_PARTITION(0),
                                       RD_KAFKA_V_VALUE("x", 1), RD_KAFKA_V_OPAQUE(&mark),
                                       RD_KAFKA_V_END),
                     RD_KAFKA_RESP_ERR_NO_ERROR);

    /* as the loop does: wait for the eventfd, read it, serve the queue until it is empty; the
     * delivery report (the message times out) must come through */
    bool delivered = false;
    while (!delivered) {
        struct pollfd p = {.fd = efd, .events = POLLIN};
        assert_int_equal(poll(&p, 1, EVENT_WITHIN_MS), 1);
        uint64_t v;
        assert_int_equal(read(efd, &v, sizeof(v)), (ssize_t)sizeof(v));
        rd_kafka_event_t *ev;
        while ((ev = rd_kafka_queue_poll(q, 0))) {
            if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_DR) {
                const rd_kafka_message_t *m = rd_kafka_event_message_next(ev);
                assert_non_null(m);
                assert_ptr_equal(m->_private, &mark);
                assert_int_equal(m->err, RD_KAFKA_RESP_ERR__MSG_TIMED_OUT);
                delivered = true;
            }
            rd_kafka_event_destroy(ev);
        }
    }
    rd_kafka_queue_io_event_enable(q, -1, NULL, 0);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    close(efd);
    close(held);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event_queued_before),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
