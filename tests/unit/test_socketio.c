/* SPDX-License-Identifier: MIT */
/*
 * test_socketio.c: the Engine.IO / Socket.IO packet codec (proto/socketio/sio.c): every packet
 * type with and without namespace, ack id and attachments, the event name with its escapes,
 * the packet headers we write, and every truncation of valid packets (packets come whole in
 * WebSocket messages, so a prefix is the one way a packet is "split").
 */
#include "proto/socketio/sio.h"
#include "core/err.h"

#include <stdio.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static struct cc_sio_packet parse_ok(const char *s)
{
    struct cc_sio_packet p;
    const char *why = NULL;
    int rc = cc_sio_parse(s, strlen(s), &p, &why);
    if (rc != 0) fail_msg("'%s' did not parse: %s", s, why);
    return p;
}

static void parse_bad(const char *s, const char *text)
{
    struct cc_sio_packet p;
    const char *why = NULL;
    assert_int_equal(cc_sio_parse(s, strlen(s), &p, &why), CC_EPROTO);
    assert_non_null(why);
    if (!strstr(why, text)) fail_msg("'%s': '%s' lacks '%s'", s, why, text);
}

static bool data_is(const struct cc_sio_packet *p, const char *want)
{
    return p->data_len == strlen(want) && memcmp(p->data, want, p->data_len) == 0;
}

static bool nsp_is(const struct cc_sio_packet *p, const char *want)
{
    return p->nsp_len == strlen(want) && memcmp(p->nsp, want, p->nsp_len) == 0;
}

static void test_engine_io(void **state)
{
    (void)state;
    struct cc_sio_packet p = parse_ok("0{\"sid\":\"a\",\"pingInterval\":25000}");
    assert_int_equal(p.eio, CC_EIO_OPEN);
    assert_int_equal(p.sio, CC_SIO_NONE);
    assert_true(data_is(&p, "{\"sid\":\"a\",\"pingInterval\":25000}"));
    p = parse_ok("2");
    assert_int_equal(p.eio, CC_EIO_PING);
    assert_int_equal(p.data_len, 0);
    p = parse_ok("3probe");
    assert_int_equal(p.eio, CC_EIO_PONG);
    assert_true(data_is(&p, "probe"));
    p = parse_ok("1");
    assert_int_equal(p.eio, CC_EIO_CLOSE);
    p = parse_ok("6");
    assert_int_equal(p.eio, CC_EIO_NOOP);
    parse_bad("", "type digit");
    parse_bad("7", "type digit");
    parse_bad("x42", "type digit");
}

static void test_socket_io(void **state)
{
    (void)state;
    struct cc_sio_packet p = parse_ok("40");
    assert_int_equal(p.eio, CC_EIO_MESSAGE);
    assert_int_equal(p.sio, CC_SIO_CONNECT);
    assert_true(nsp_is(&p, "/"));
    assert_false(p.has_id);
    assert_int_equal(p.data_len, 0);

    p = parse_ok("40{\"sid\":\"x\"}");
    assert_true(data_is(&p, "{\"sid\":\"x\"}"));
    p = parse_ok("40/admin,{\"sid\":\"x\"}");
    assert_true(nsp_is(&p, "/admin"));
    assert_true(data_is(&p, "{\"sid\":\"x\"}"));
    p = parse_ok("41/admin,");
    assert_int_equal(p.sio, CC_SIO_DISCONNECT);
    assert_true(nsp_is(&p, "/admin"));
    p = parse_ok("41/admin");
    assert_true(nsp_is(&p, "/admin"));

    p = parse_ok("42[\"chat\",\"hi\"]");
    assert_int_equal(p.sio, CC_SIO_EVENT);
    assert_false(p.has_id);
    assert_true(data_is(&p, "[\"chat\",\"hi\"]"));
    p = parse_ok("4217[\"chat\"]");
    assert_true(p.has_id);
    assert_int_equal(p.id, 17);
    p = parse_ok("42/chat,0[\"x\"]");
    assert_true(nsp_is(&p, "/chat"));
    assert_true(p.has_id);
    assert_int_equal(p.id, 0);
    p = parse_ok("43123[1,2]");
    assert_int_equal(p.sio, CC_SIO_ACK);
    assert_int_equal(p.id, 123);
    assert_true(data_is(&p, "[1,2]"));
    p = parse_ok("44{\"message\":\"no\"}");
    assert_int_equal(p.sio, CC_SIO_CONNECT_ERROR);

    p = parse_ok(
        "452-[\"up\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]");
    assert_int_equal(p.sio, CC_SIO_BINARY_EVENT);
    assert_int_equal(p.attachments, 2);
    assert_false(p.has_id);
    p = parse_ok("461-/b,9[{\"_placeholder\":true,\"num\":0}]");
    assert_int_equal(p.sio, CC_SIO_BINARY_ACK);
    assert_int_equal(p.attachments, 1);
    assert_true(nsp_is(&p, "/b"));
    assert_int_equal(p.id, 9);

    parse_bad("4", "without a Socket.IO packet type");
    parse_bad("49", "without a Socket.IO packet type");
    parse_bad("45[\"x\"]", "attachment count");
    parse_bad("45-[\"x\"]", "attachment count");
    parse_bad("451[\"x\"]", "attachment count");
    parse_bad("459999-[\"x\"]", "too many");
    parse_bad("4299999999999999999999[\"x\"]", "too large");
}

/* Every prefix of valid packets parses or fails cleanly, never reading past its end. */
static void test_truncations(void **state)
{
    (void)state;
    static const char *const packets[] = {
        "0{\"sid\":\"a\",\"pingInterval\":25000,\"pingTimeout\":20000}",
        "40/admin,{\"token\":\"x\"}",
        "42/chat,17[\"chat\",{\"a\":[1,2,3]}]",
        "461-/b,9[{\"_placeholder\":true,\"num\":0}]",
        "43123[1,2]",
    };
    for (size_t i = 0; i < CC_ARRAY_LEN(packets); i++) {
        size_t len = strlen(packets[i]);
        for (size_t n = 0; n <= len; n++) {
            char copy[256];
            memcpy(copy, packets[i], n); /* a buffer of exactly n bytes under ASan's eyes */
            struct cc_sio_packet p;
            const char *why;
            int rc = cc_sio_parse(copy, n, &p, &why);
            if (rc == 0) {
                assert_true(p.data + p.data_len <= copy + n);
                assert_true(p.nsp_len >= 1);
                char name[64];
                size_t nl;
                cc_sio_event_name(p.data, p.data_len, name, sizeof(name), &nl);
            } else {
                assert_int_equal(rc, CC_EPROTO);
            }
        }
    }
}

static void name_is(const char *json, const char *want)
{
    char buf[64];
    size_t n;
    int rc = cc_sio_event_name(json, strlen(json), buf, sizeof(buf), &n);
    if (rc != 0) fail_msg("%s: %d", json, rc);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(buf, want, n);
}

static void test_event_name(void **state)
{
    (void)state;
    name_is("[\"chat\",1]", "chat");
    name_is(" [ \"chat\" ]", "chat");
    name_is("[\"\"]", "");
    name_is("[\"a\\\"b\\\\c\\/d\\n\"]", "a\"b\\c/d\n");
    name_is("[\"caf\\u00e9\"]", "caf\xc3\xa9");
    name_is("[\"\\u20ac\"]", "\xe2\x82\xac");
    name_is("[\"\\ud83d\\ude00\"]", "\xf0\x9f\x98\x80"); /* a surrogate pair */
    name_is("[\"\\ud83d\"]", "\xef\xbf\xbd");            /* a lone one */
    name_is("[\"snow \xe2\x98\x83\"]", "snow \xe2\x98\x83");

    char buf[8];
    size_t n;
    assert_int_equal(cc_sio_event_name("{\"a\":1}", 7, buf, sizeof(buf), &n), CC_EPROTO);
    assert_int_equal(cc_sio_event_name("[1,2]", 5, buf, sizeof(buf), &n), CC_EPROTO);
    assert_int_equal(cc_sio_event_name("[\"open", 6, buf, sizeof(buf), &n), CC_EPROTO);
    assert_int_equal(cc_sio_event_name("[\"\\x\"]", 6, buf, sizeof(buf), &n), CC_EPROTO);
    assert_int_equal(cc_sio_event_name("[\"\\u12\"]", 8, buf, sizeof(buf), &n), CC_EPROTO);
    assert_int_equal(cc_sio_event_name("[\"a\nb\"]", 7, buf, sizeof(buf), &n), CC_EPROTO);
    assert_int_equal(cc_sio_event_name("[\"12345678\"]", 12, buf, sizeof(buf), &n), CC_ETOOBIG);
    assert_int_equal(cc_sio_event_name("", 0, buf, sizeof(buf), &n), CC_EPROTO);
}

static void header_is(enum cc_sio_type t, uint32_t natt, const char *nsp, bool has_id, uint64_t id,
                      const char *want)
{
    char out[CC_SIO_HEADER_MAX + 64];
    size_t n = cc_sio_header(out, t, natt, nsp, nsp ? strlen(nsp) : 0, has_id, id);
    out[n] = '\0';
    assert_string_equal(out, want);
}

static void test_header(void **state)
{
    (void)state;
    header_is(CC_SIO_CONNECT, 0, "/", false, 0, "40");
    header_is(CC_SIO_CONNECT, 0, "/admin", false, 0, "40/admin,");
    header_is(CC_SIO_EVENT, 0, NULL, false, 0, "42");
    header_is(CC_SIO_EVENT, 0, "/", true, 12, "4212");
    header_is(CC_SIO_EVENT, 0, "/chat", true, 0, "42/chat,0");
    header_is(CC_SIO_ACK, 0, "/", true, 7, "437");
    header_is(CC_SIO_BINARY_EVENT, 2, "/", true, 3, "452-3");
    header_is(CC_SIO_BINARY_ACK, 1, "/x", true, 4, "461-/x,4");
    header_is(CC_SIO_DISCONNECT, 0, "/x", false, 0, "41/x,");
    /* what we write reads back */
    char out[CC_SIO_HEADER_MAX + 64];
    size_t n = cc_sio_header(out, CC_SIO_BINARY_EVENT, 3, "/ns", 3, true, CC_SIO_MAX_ID);
    memcpy(out + n, "[\"e\"]", 6);
    struct cc_sio_packet p = parse_ok(out);
    assert_int_equal(p.sio, CC_SIO_BINARY_EVENT);
    assert_int_equal(p.attachments, 3);
    assert_int_equal(p.id, CC_SIO_MAX_ID);
    assert_true(nsp_is(&p, "/ns"));
    assert_true(data_is(&p, "[\"e\"]"));
}

/* A binary packet's attachments come in one by one, and are handed on back to back; an
 * attachment nothing waits for is dropped; a second packet reuses the room of the first. */
static void test_attachments(void **state)
{
    (void)state;
    struct cc_sio_asm a = {0};
    assert_false(cc_sio_asm_add(&a, "stray", 5));
    const char *pkt = "452-[\"blob\",{\"_placeholder\":true,\"num\":0}]";
    cc_sio_asm_start(&a, pkt, strlen(pkt), 2);
    assert_false(cc_sio_asm_add(&a, "\0\1\2", 3));
    assert_true(cc_sio_asm_add(&a, "", 0));
    uint32_t n;
    const struct cc_sio_att *atts = cc_sio_asm_done(&a, &n);
    assert_int_equal(n, 2);
    assert_int_equal(atts[0].len, 3);
    assert_memory_equal(atts[0].data, "\0\1\2", 3);
    assert_int_equal(atts[1].len, 0);
    assert_int_equal(a.pkt.len, strlen(pkt));
    assert_memory_equal(a.pkt.data, pkt, strlen(pkt));
    assert_int_equal(a.want, 0);
    assert_false(cc_sio_asm_add(&a, "late", 4)); /* the packet was handed on: nothing waits */
    cc_sio_asm_clear(&a);

    cc_sio_asm_start(&a, "461-0[]", 7, 1);
    assert_true(cc_sio_asm_add(&a, "xy", 2));
    atts = cc_sio_asm_done(&a, &n);
    assert_int_equal(n, 1);
    assert_int_equal(atts[0].len, 2);
    assert_memory_equal(atts[0].data, "xy", 2);
    cc_sio_asm_release(&a);
    assert_null(a.view);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_engine_io),   cmocka_unit_test(test_socket_io),
        cmocka_unit_test(test_truncations), cmocka_unit_test(test_event_name),
        cmocka_unit_test(test_header),      cmocka_unit_test(test_attachments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
