/* SPDX-License-Identifier: MIT */
/*
 * test_dist_msg.c: Locust's master/worker messages: what Python's msgpack (Locust 2.12) sends
 * decodes, every message we build decodes back, and malformed input is an error, never a crash.
 */
#include "dist/msg.h"
#include "core/err.h"

#include "dist_fixtures.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

static int decode(struct cc_dmsg *m, const void *buf, size_t len, enum cc_dmsg_dir dir)
{
    char err[160];
    return cc_dmsg_decode(m, buf, len, dir, err, sizeof(err));
}

/* ---- what Locust 2.12 sends ------------------------------------------------------------- */

static void test_locust_client_ready(void **state)
{
    (void)state;
    struct cc_dmsg m;
    assert_int_equal(decode(&m, fx_ready_version, FX_READY_VERSION_LEN, CC_DMSG_TO_MASTER), 0);
    assert_int_equal(m.type, CC_DMSG_CLIENT_READY);
    assert_string_equal(m.u.client_ready.version, "2.12.1");
    assert_false(m.u.client_ready.legacy);
    assert_string_equal(m.node_id, "box_0123abcd");
    cc_dmsg_release(&m);

    /* Debian's Locust has an empty version: Locust's own master calls that pre-2.0 */
    assert_int_equal(decode(&m, fx_ready_empty, FX_READY_EMPTY_LEN, CC_DMSG_TO_MASTER), 0);
    assert_string_equal(m.u.client_ready.version, "");
    assert_true(m.u.client_ready.legacy);
    cc_dmsg_release(&m);

    assert_int_equal(decode(&m, fx_ready_any, FX_READY_ANY_LEN, CC_DMSG_TO_MASTER), 0);
    assert_true(m.u.client_ready.any_version);
    assert_null(m.u.client_ready.version);
    cc_dmsg_release(&m);

    assert_int_equal(decode(&m, fx_ready_none, FX_READY_NONE_LEN, CC_DMSG_TO_MASTER), 0);
    assert_true(m.u.client_ready.legacy);
    assert_null(m.u.client_ready.version);
    cc_dmsg_release(&m);

    /* the same type travelling the other way is not one a worker knows */
    assert_int_equal(decode(&m, fx_ready_version, FX_READY_VERSION_LEN, CC_DMSG_TO_WORKER), 0);
    assert_int_equal(m.type, CC_DMSG_CUSTOM);
    assert_string_equal(m.type_name, "client_ready");
    cc_dmsg_release(&m);
}

static void test_locust_worker_messages(void **state)
{
    (void)state;
    struct cc_dmsg m;
    assert_int_equal(decode(&m, fx_heartbeat, FX_HEARTBEAT_LEN, CC_DMSG_TO_MASTER), 0);
    assert_int_equal(m.type, CC_DMSG_HEARTBEAT);
    assert_string_equal(m.u.heartbeat.state, "running");
    assert_true(m.u.heartbeat.cpu == 12.5);
    assert_int_equal(m.u.heartbeat.memory, 52428800);
    assert_null(m.u.heartbeat.cicada);
    cc_dmsg_release(&m);

    assert_int_equal(decode(&m, fx_spawning_complete, FX_SPAWNING_COMPLETE_LEN, CC_DMSG_TO_MASTER),
                     0);
    assert_int_equal(m.type, CC_DMSG_SPAWNING_COMPLETE);
    assert_true(m.u.spawning_complete.has_classes);
    assert_int_equal(m.u.spawning_complete.classes.n, 2);
    assert_string_equal(m.u.spawning_complete.classes.names[0], "Alpha");
    assert_int_equal(m.u.spawning_complete.classes.counts[0], 3);
    assert_string_equal(m.u.spawning_complete.classes.names[1], "Beta");
    assert_int_equal(m.u.spawning_complete.classes.counts[1], 1);
    assert_int_equal(m.u.spawning_complete.user_count, 4);
    cc_dmsg_release(&m);

    assert_int_equal(decode(&m, fx_exception, FX_EXCEPTION_LEN, CC_DMSG_TO_MASTER), 0);
    assert_int_equal(m.type, CC_DMSG_EXCEPTION);
    assert_string_equal(m.u.exception.msg, "ZeroDivisionError('division by zero')");
    assert_string_equal(m.u.exception.traceback, "  File \"x.py\", line 3\n");
    assert_int_equal(m.u.exception.count, 1);
    cc_dmsg_release(&m);

    assert_int_equal(decode(&m, fx_stats, FX_STATS_LEN, CC_DMSG_TO_MASTER), 0);
    assert_int_equal(m.type, CC_DMSG_STATS);
    assert_non_null(m.u.stats.body);
    assert_true(m.u.stats.has_classes);
    assert_int_equal(m.u.stats.user_count, 4);
    cc_dmsg_release(&m);

    assert_int_equal(decode(&m, fx_custom, FX_CUSTOM_LEN, CC_DMSG_TO_MASTER), 0);
    assert_int_equal(m.type, CC_DMSG_CUSTOM);
    assert_string_equal(m.type_name, "my_type");
    assert_int_equal(m.data->type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal(m.data->via.array.size, 4);
    cc_dmsg_release(&m);
}

static void test_locust_master_messages(void **state)
{
    (void)state;
    struct cc_dmsg m;
    assert_int_equal(decode(&m, fx_spawn, FX_SPAWN_LEN, CC_DMSG_TO_WORKER), 0);
    assert_int_equal(m.type, CC_DMSG_SPAWN);
    assert_true(m.u.spawn.timestamp == 1700000000.125);
    assert_int_equal(m.u.spawn.classes.n, 2);
    assert_string_equal(m.u.spawn.classes.names[0], "Alpha");
    assert_int_equal(m.u.spawn.classes.counts[0], 2);
    assert_int_equal(m.u.spawn.classes.counts[1], 0);
    assert_string_equal(m.u.spawn.host, "http://127.0.0.1:8080");
    assert_false(m.u.spawn.has_stop_timeout);
    assert_true(m.u.spawn.has_tags);
    assert_int_equal(m.u.spawn.ntags, 2);
    assert_string_equal(m.u.spawn.tags[1], "b");
    assert_false(m.u.spawn.has_exclude_tags);
    assert_non_null(m.u.spawn.parsed_options);
    /* options pass through untouched: datetime hook maps included */
    const msgpack_object *custom = cc_mp_get(m.u.spawn.parsed_options, "custom");
    assert_non_null(custom);
    assert_true(cc_mp_str_eq(cc_mp_get(custom, "as_str"), "20240101T00:00:00.000000"));
    cc_dmsg_release(&m);

    assert_int_equal(decode(&m, fx_ack, FX_ACK_LEN, CC_DMSG_TO_WORKER), 0);
    assert_int_equal(m.type, CC_DMSG_ACK);
    assert_int_equal(m.u.ack.index, 7);
    assert_null(m.u.ack.cicada);
    cc_dmsg_release(&m);

    assert_int_equal(decode(&m, fx_stop, FX_STOP_LEN, CC_DMSG_TO_WORKER), 0);
    assert_int_equal(m.type, CC_DMSG_STOP);
    cc_dmsg_release(&m);
}

/* ---- our messages round trip ------------------------------------------------------------ */

static void roundtrip(struct cc_dbuf *b, struct cc_dmsg *m, enum cc_dmsg_dir dir)
{
    assert_int_equal(decode(m, b->sb.data, b->sb.size, dir), 0);
    cc_dbuf_clear(b);
}

static void test_roundtrip_worker_to_master(void **state)
{
    (void)state;
    struct cc_dbuf b;
    struct cc_dmsg m;
    cc_dbuf_init(&b);

    cc_dmsg_pack_client_ready(&b, NULL, "w_1");
    roundtrip(&b, &m, CC_DMSG_TO_MASTER);
    assert_int_equal(m.type, CC_DMSG_CLIENT_READY);
    assert_true(m.u.client_ready.any_version);
    assert_string_equal(m.node_id, "w_1");
    cc_dmsg_release(&m);

    cc_dmsg_pack_client_ready(&b, "2.46.3", "w_1");
    roundtrip(&b, &m, CC_DMSG_TO_MASTER);
    assert_string_equal(m.u.client_ready.version, "2.46.3");
    cc_dmsg_release(&m);

    cc_dmsg_pack_heartbeat(&b, "spawning", 33.25, 1234567, "0.1.0", "w_1");
    roundtrip(&b, &m, CC_DMSG_TO_MASTER);
    assert_int_equal(m.type, CC_DMSG_HEARTBEAT);
    assert_string_equal(m.u.heartbeat.state, "spawning");
    assert_true(m.u.heartbeat.cpu == 33.25);
    assert_int_equal(m.u.heartbeat.memory, 1234567);
    assert_string_equal(m.u.heartbeat.cicada, "0.1.0");
    cc_dmsg_release(&m);

    const char *names[2] = {"A", "B"};
    uint32_t counts[2] = {5, 7};
    cc_dmsg_pack_spawning_complete(&b, 2, names, counts, "0.1.0", "w_1");
    roundtrip(&b, &m, CC_DMSG_TO_MASTER);
    assert_int_equal(m.type, CC_DMSG_SPAWNING_COMPLETE);
    assert_int_equal(m.u.spawning_complete.classes.counts[1], 7);
    assert_int_equal(m.u.spawning_complete.user_count, 12);
    assert_string_equal(m.u.spawning_complete.cicada, "0.1.0");
    cc_dmsg_release(&m);

    cc_dmsg_pack_exception(&b, "boom", "tb line\n", 1, "w_1");
    roundtrip(&b, &m, CC_DMSG_TO_MASTER);
    assert_int_equal(m.type, CC_DMSG_EXCEPTION);
    assert_string_equal(m.u.exception.msg, "boom");
    assert_int_equal(m.u.exception.count, 1);
    cc_dmsg_release(&m);

    cc_dmsg_pack_exception(&b, "boom", "tb", 42, "w_1");
    roundtrip(&b, &m, CC_DMSG_TO_MASTER);
    assert_int_equal(m.u.exception.count, 42);
    cc_dmsg_release(&m);

    const char *lines[2] = {"line one", "line two"};
    cc_dmsg_pack_logs(&b, "w_1", lines, 2, "w_1");
    roundtrip(&b, &m, CC_DMSG_TO_MASTER);
    assert_int_equal(m.type, CC_DMSG_LOGS);
    assert_int_equal(m.u.logs.nlines, 2);
    assert_string_equal(m.u.logs.lines[1], "line two");
    cc_dmsg_release(&m);

    static const char *const empty_types[] = {"spawning", "client_stopped", "quit"};
    static const enum cc_dmsg_type empty_codes[] = {CC_DMSG_SPAWNING, CC_DMSG_CLIENT_STOPPED,
                                                    CC_DMSG_QUIT};
    for (size_t i = 0; i < 3; i++) {
        cc_dmsg_pack_empty(&b, empty_types[i], "w_1");
        roundtrip(&b, &m, CC_DMSG_TO_MASTER);
        assert_int_equal(m.type, empty_codes[i]);
        assert_int_equal(m.data->type, MSGPACK_OBJECT_NIL);
        cc_dmsg_release(&m);
    }

    /* a custom message passes its data through */
    struct cc_dbuf d;
    cc_dbuf_init(&d);
    msgpack_pack_array(&d.pk, 2);
    msgpack_pack_int(&d.pk, 1);
    cc_mp_pack_str(&d.pk, "x");
    cc_dmsg_pack_raw(&b, "acme_event", d.sb.data, d.sb.size, "w_1");
    roundtrip(&b, &m, CC_DMSG_TO_MASTER);
    assert_int_equal(m.type, CC_DMSG_CUSTOM);
    assert_string_equal(m.type_name, "acme_event");
    assert_int_equal(m.data->via.array.size, 2);
    cc_dmsg_release(&m);
    cc_dbuf_release(&d);
    cc_dbuf_release(&b);
}

static void test_roundtrip_master_to_worker(void **state)
{
    (void)state;
    struct cc_dbuf b, o;
    struct cc_dmsg m;
    cc_dbuf_init(&b);
    cc_dbuf_init(&o);

    cc_dmsg_pack_ack(&b, 3, "0.1.0", "w_1");
    roundtrip(&b, &m, CC_DMSG_TO_WORKER);
    assert_int_equal(m.type, CC_DMSG_ACK);
    assert_int_equal(m.u.ack.index, 3);
    assert_string_equal(m.u.ack.cicada, "0.1.0");
    cc_dmsg_release(&m);

    const char *tags[2] = {"fast", "slow"};
    struct cc_dopt opts[4] = {
        {.key = "tags", .type = CC_DOPT_LIST, .list = tags, .nlist = 2},
        {.key = "exclude_tags", .type = CC_DOPT_NIL},
        {.key = "num_users", .type = CC_DOPT_INT, .i = 10},
        {.key = "headless", .type = CC_DOPT_BOOL, .b = true},
    };
    cc_dmsg_pack_options(&o.pk, opts, 4);
    const char *names[2] = {"A", "B"};
    uint32_t counts[2] = {2, 0};
    struct cc_dspawn s = {.timestamp = 1700000000.5,
                          .nclasses = 2,
                          .names = names,
                          .counts = counts,
                          .host = "http://h",
                          .stop_timeout = 2.5,
                          .has_stop_timeout = true,
                          .options = o.sb.data,
                          .options_len = o.sb.size};
    cc_dmsg_pack_spawn(&b, &s, "w_1");
    roundtrip(&b, &m, CC_DMSG_TO_WORKER);
    assert_int_equal(m.type, CC_DMSG_SPAWN);
    assert_true(m.u.spawn.timestamp == 1700000000.5);
    assert_int_equal(m.u.spawn.classes.counts[0], 2);
    assert_string_equal(m.u.spawn.host, "http://h");
    assert_true(m.u.spawn.has_stop_timeout && m.u.spawn.stop_timeout == 2.5);
    assert_int_equal(m.u.spawn.ntags, 2);
    assert_string_equal(m.u.spawn.tags[0], "fast");
    assert_false(m.u.spawn.has_exclude_tags);
    cc_dmsg_release(&m);

    /* no options and no host: parsed_options {}, host None */
    s.options = NULL;
    s.host = NULL;
    s.has_stop_timeout = false;
    cc_dmsg_pack_spawn(&b, &s, "w_1");
    roundtrip(&b, &m, CC_DMSG_TO_WORKER);
    assert_null(m.u.spawn.host);
    assert_false(m.u.spawn.has_tags);
    assert_non_null(m.u.spawn.parsed_options);
    cc_dmsg_release(&m);

    cc_dmsg_pack_all_spawned(&b, 99, "w_1");
    roundtrip(&b, &m, CC_DMSG_TO_WORKER);
    assert_int_equal(m.type, CC_DMSG_SPAWNING_COMPLETE);
    assert_int_equal(m.u.spawning_complete.user_count, 99);
    cc_dmsg_release(&m);

    static const char *const empty_types[] = {"heartbeat", "stop", "quit", "reconnect"};
    static const enum cc_dmsg_type empty_codes[] = {CC_DMSG_HEARTBEAT, CC_DMSG_STOP, CC_DMSG_QUIT,
                                                    CC_DMSG_RECONNECT};
    for (size_t i = 0; i < 4; i++) {
        cc_dmsg_pack_empty(&b, empty_types[i], "w_1");
        roundtrip(&b, &m, CC_DMSG_TO_WORKER);
        assert_int_equal(m.type, empty_codes[i]);
        cc_dmsg_release(&m);
    }
    cc_dbuf_release(&o);
    cc_dbuf_release(&b);
}

/* ---- malformed input -------------------------------------------------------------------- */

struct bad_case {
    const char *what;
    const char *bytes;
    size_t len;
    enum cc_dmsg_dir dir;
};

#define BAD(w, s, d)                                                                               \
    {                                                                                              \
        w, s, sizeof(s) - 1, d                                                                     \
    }

static void test_malformed(void **state)
{
    (void)state;
    static const struct bad_case cases[] = {
        BAD("empty", "", CC_DMSG_TO_MASTER),
        BAD("not msgpack", "\xc1", CC_DMSG_TO_MASTER),
        BAD("a string",
            "\xa3"
            "abc",
            CC_DMSG_TO_MASTER),
        BAD("array of 2", "\x92\xa4stop\xc0", CC_DMSG_TO_WORKER),
        BAD("array of 4", "\x94\xa4stop\xc0\xc0\xc0", CC_DMSG_TO_WORKER),
        BAD("type not a string", "\x93\x01\xc0\xc0", CC_DMSG_TO_WORKER),
        BAD("empty type", "\x93\xa0\xc0\xc0", CC_DMSG_TO_WORKER),
        BAD("node id an int", "\x93\xa4stop\xc0\x05", CC_DMSG_TO_WORKER),
        BAD("trailing bytes", "\x93\xa4stop\xc0\xc0\xc0", CC_DMSG_TO_WORKER),
        BAD("truncated string", "\x93\xa4st", CC_DMSG_TO_WORKER),
        BAD("array32 claiming 4G items", "\xdd\xff\xff\xff\xff\xc0\xc0\xc0", CC_DMSG_TO_WORKER),
        BAD("map32 claiming 4G pairs", "\x93\xa4stop\xdf\xff\xff\xff\xff\xc0", CC_DMSG_TO_WORKER),
        BAD("str32 claiming 4 GB",
            "\x93\xdb\xff\xff\xff\xff"
            "ab",
            CC_DMSG_TO_WORKER),
        BAD("client_ready 5",
            "\x93\xac"
            "client_ready\x05\xc0",
            CC_DMSG_TO_MASTER),
        BAD("client_ready a map",
            "\x93\xac"
            "client_ready\x80\xc0",
            CC_DMSG_TO_MASTER),
        BAD("heartbeat without state",
            "\x93\xa9heartbeat\x81\xb1"
            "current_cpu_usage\x01\xc0",
            CC_DMSG_TO_MASTER),
        BAD("heartbeat cpu a string",
            "\x93\xa9heartbeat\x82\xa5state\xa5ready\xb1"
            "current_cpu_usage\xa1x\xc0",
            CC_DMSG_TO_MASTER),
        BAD("heartbeat a list", "\x93\xa9heartbeat\x90\xc0", CC_DMSG_TO_MASTER),
        BAD("ack index negative",
            "\x93\xa3"
            "ack\x81\xa5index\xff\xc0",
            CC_DMSG_TO_WORKER),
        BAD("ack index a string",
            "\x93\xa3"
            "ack\x81\xa5index\xa1"
            "1\xc0",
            CC_DMSG_TO_WORKER),
        BAD("spawn without timestamp", "\x93\xa5spawn\x81\xb2user_classes_count\x80\xc0",
            CC_DMSG_TO_WORKER),
        BAD("spawn counts a list",
            "\x93\xa5spawn\x82\xa9timestamp\x01\xb2user_classes_count\x90\xc0", CC_DMSG_TO_WORKER),
        BAD("spawn count negative",
            "\x93\xa5spawn\x82\xa9timestamp\x01\xb2user_classes_count\x81\xa1"
            "A\xff\xc0",
            CC_DMSG_TO_WORKER),
        BAD("spawn class name an int",
            "\x93\xa5spawn\x82\xa9timestamp\x01\xb2user_classes_count\x81\x01\x01\xc0",
            CC_DMSG_TO_WORKER),
        BAD("spawn tags a string",
            "\x93\xa5spawn\x83\xa9timestamp\x01\xb2user_classes_count\x80\xaeparsed_options"
            "\x81\xa4tags\xa1x\xc0",
            CC_DMSG_TO_WORKER),
        BAD("spawn host an int",
            "\x93\xa5spawn\x83\xa9timestamp\x01\xb2user_classes_count\x80\xa4host\x01\xc0",
            CC_DMSG_TO_WORKER),
        BAD("spawning_complete without counts",
            "\x93\xb1spawning_complete\x81\xaauser_count\x01\xc0", CC_DMSG_TO_MASTER),
        BAD("exception without msg",
            "\x93\xa9"
            "exception\x80\xc0",
            CC_DMSG_TO_MASTER),
        BAD("stats a list", "\x93\xa5stats\x90\xc0", CC_DMSG_TO_MASTER),
    };
    for (size_t i = 0; i < CC_ARRAY_LEN(cases); i++) {
        struct cc_dmsg m;
        char err[160] = "";
        int rv = cc_dmsg_decode(&m, cases[i].bytes, cases[i].len, cases[i].dir, err, sizeof(err));
        if (rv == 0) {
            fprintf(stderr, "accepted: %s\n", cases[i].what);
            cc_dmsg_release(&m);
        }
        assert_int_equal(rv, CC_EPROTO);
        assert_true(err[0] != '\0');
        assert_null(m.buf); /* nothing left to release */
    }
}

/* Nesting deeper than the limit is refused before msgpack-c sees it. */
static void test_deep_nesting(void **state)
{
    (void)state;
    char buf[4 + 200 + 2];
    size_t n = 0;
    buf[n++] = '\x93';
    buf[n++] = '\xa4';
    memcpy(buf + n, "stop", 4);
    n += 4;
    for (int i = 0; i < 150; i++)
        buf[n++] = '\x91';
    buf[n++] = '\xc0';
    buf[n++] = '\xc0';
    struct cc_dmsg m;
    assert_int_equal(decode(&m, buf, n, CC_DMSG_TO_WORKER), CC_EPROTO);
}

/* Every prefix of every valid message fails cleanly; flipped bytes never crash. */
static void test_every_truncation_and_flip(void **state)
{
    (void)state;
    static const struct {
        const char *p;
        size_t n;
        enum cc_dmsg_dir dir;
    } fx[] = {
        {fx_stats, FX_STATS_LEN, CC_DMSG_TO_MASTER},
        {fx_spawn, FX_SPAWN_LEN, CC_DMSG_TO_WORKER},
        {fx_heartbeat, FX_HEARTBEAT_LEN, CC_DMSG_TO_MASTER},
        {fx_custom, FX_CUSTOM_LEN, CC_DMSG_TO_MASTER},
    };
    for (size_t f = 0; f < CC_ARRAY_LEN(fx); f++) {
        for (size_t len = 0; len < fx[f].n; len++) {
            struct cc_dmsg m;
            assert_int_not_equal(decode(&m, fx[f].p, len, fx[f].dir), 0);
        }
        char *copy = malloc(fx[f].n);
        for (size_t i = 0; i < fx[f].n; i++) {
            for (unsigned bit = 0; bit < 8; bit++) {
                memcpy(copy, fx[f].p, fx[f].n);
                copy[i] ^= (char)(1u << bit);
                struct cc_dmsg m;
                if (decode(&m, copy, fx[f].n, fx[f].dir) == 0) cc_dmsg_release(&m);
            }
        }
        free(copy);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_locust_client_ready),
        cmocka_unit_test(test_locust_worker_messages),
        cmocka_unit_test(test_locust_master_messages),
        cmocka_unit_test(test_roundtrip_worker_to_master),
        cmocka_unit_test(test_roundtrip_master_to_worker),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_every_truncation_and_flip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
