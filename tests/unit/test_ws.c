/* SPDX-License-Identifier: MIT */
/*
 * test_ws.c: the WebSocket opening handshake codec (proto/ws/handshake.c): the accept value of
 * RFC 6455's example, the request it writes, and answers fed whole, in every two-piece split
 * and a byte at a time, good ones (with frames after them) and every kind of bad one.
 */
#include "proto/ws/handshake.h"
#include "core/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static const char key[] = "dGhlIHNhbXBsZSBub25jZQ==";

static void test_accept(void **state)
{
    (void)state;
    char out[CC_WS_ACCEPT_LEN + 1];
    cc_ws_accept_for(key, out); /* RFC 6455 section 1.3 */
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    char k1[CC_WS_KEY_LEN + 1], k2[CC_WS_KEY_LEN + 1];
    cc_ws_key_new(k1);
    cc_ws_key_new(k2);
    assert_int_equal(strlen(k1), 24);
    assert_string_not_equal(k1, k2);
    assert_int_equal(k1[22], '=');
}

static void test_request(void **state)
{
    (void)state;
    struct cc_strbuf b = {0};
    cc_ws_hs_request(&b, "/chat?x=1", "example.com:8080", key, "chat.v1, chat.v2",
                     "Origin: http://o\r\nX-A: 1\r\n");
    const char *s = cc_strbuf_str(&b);
    assert_non_null(strstr(s, "GET /chat?x=1 HTTP/1.1\r\n"));
    assert_non_null(strstr(s, "Host: example.com:8080\r\n"));
    assert_non_null(strstr(s, "Upgrade: websocket\r\n"));
    assert_non_null(strstr(s, "Connection: Upgrade\r\n"));
    assert_non_null(strstr(s, "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"));
    assert_non_null(strstr(s, "Sec-WebSocket-Version: 13\r\n"));
    assert_non_null(strstr(s, "Sec-WebSocket-Protocol: chat.v1, chat.v2\r\n"));
    assert_non_null(strstr(s, "User-Agent: cicada/"));
    assert_non_null(strstr(s, "Origin: http://o\r\nX-A: 1\r\n\r\n"));
    cc_strbuf_release(&b);

    cc_ws_hs_request(&b, "", "h", key, NULL, "user-agent: mine\r\n");
    s = cc_strbuf_str(&b);
    assert_non_null(strstr(s, "GET / HTTP/1.1\r\n"));
    assert_null(strstr(s, "Sec-WebSocket-Protocol"));
    assert_null(strstr(s, "cicada/"));
    cc_strbuf_release(&b);
}

static const char good[] = "HTTP/1.1 101 Switching Protocols\r\n"
                           "Upgrade: WebSocket\r\n"
                           "Connection: keep-alive, Upgrade\r\n"
                           "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                           "Sec-WebSocket-Protocol: chat.v2\r\n"
                           "X-Long-Header-Name-That-We-Do-Not-Check-At-All: whatever\r\n"
                           "\r\n";

/* Feeds |msg| in pieces of |piece| bytes (the first one |first| bytes, if not 0); returns the
 * result and the offset in |msg| where the frames start. */
static int feed(struct cc_ws_hs *hs, const char *msg, size_t len, size_t first, size_t piece,
                size_t *frames_at)
{
    size_t off = 0;
    int rc = CC_WS_HS_MORE;
    while (off < len) {
        size_t n = off == 0 && first ? first : piece;
        if (n > len - off) n = len - off;
        size_t used = 0;
        rc = cc_ws_hs_feed(hs, msg + off, n, &used);
        if (rc == CC_WS_HS_DONE) {
            *frames_at = off + used;
            return rc;
        }
        if (rc < 0) return rc;
        off += n;
    }
    return rc;
}

static void check_good(size_t first, size_t piece)
{
    char msg[1024];
    size_t hl = strlen(good);
    memcpy(msg, good, hl);
    memcpy(msg + hl, "\x81\x02hi", 4); /* a frame right behind the header block */
    struct cc_ws_hs hs;
    cc_ws_hs_init(&hs, key, "chat.v1, chat.v2");
    size_t at = 0;
    int rc = feed(&hs, msg, hl + 4, first, piece, &at);
    assert_int_equal(rc, CC_WS_HS_DONE);
    assert_int_equal(at, hl);
    assert_string_equal(hs.protocol, "chat.v2");
    assert_int_equal(hs.status, 101);
    cc_ws_hs_release(&hs);
}

static void test_good_every_split(void **state)
{
    (void)state;
    size_t len = strlen(good) + 4;
    check_good(0, len);
    check_good(0, 1);
    for (size_t cut = 1; cut < len; cut++)
        check_good(cut, len);
    srand(7);
    for (int i = 0; i < 200; i++)
        check_good(0, 1 + (size_t)rand() % 17);
}

/* Feeds a whole |msg| and expects the failure |code| with |text| in the message, also byte by
 * byte. */
static void expect_fail(const char *msg, const char *protocols, int code, const char *text)
{
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        struct cc_ws_hs hs;
        cc_ws_hs_init(&hs, key, protocols);
        size_t at = 0;
        int rc = feed(&hs, msg, strlen(msg), 0, bytewise ? 1 : strlen(msg), &at);
        if (rc != code || !strstr(hs.errmsg, text))
            fail_msg("%s: got %d '%s', wanted %d '%s'", msg, rc, hs.errmsg, code, text);
        size_t used;
        assert_int_equal(cc_ws_hs_feed(&hs, "x", 1, &used), code); /* it stays failed */
        cc_ws_hs_release(&hs);
    }
}

#define ACCEPT "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"

static void test_bad(void **state)
{
    (void)state;
    expect_fail("HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nno!", NULL, CC_EPROTO,
                "answered 404 Not Found instead of 101");
    expect_fail("HTTP/1.1 200 OK\r\n\r\n", NULL, CC_EPROTO, "answered 200 OK");
    expect_fail("\x16\x03\x01garbage\r\n\r\n", NULL, CC_EPROTO, "malformed response");
    expect_fail("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n" ACCEPT "\r\n", NULL,
                CC_EPROTO, "no 'Upgrade: websocket'");
    expect_fail("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n" ACCEPT
                "\r\n",
                NULL, CC_EPROTO, "no 'Upgrade: websocket'");
    expect_fail("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" ACCEPT "\r\n", NULL,
                CC_EPROTO, "no 'Connection: Upgrade'");
    expect_fail("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: "
                "Upgrade\r\n\r\n",
                NULL, CC_EPROTO, "no Sec-WebSocket-Accept");
    expect_fail("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: "
                "Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n",
                NULL, CC_EPROTO, "does not match");
    expect_fail("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: "
                "Upgrade\r\n" ACCEPT ACCEPT "\r\n",
                NULL, CC_EPROTO, "does not match");
    expect_fail("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: "
                "Upgrade\r\n" ACCEPT "Sec-WebSocket-Protocol: chat.v3\r\n\r\n",
                "chat.v1, chat.v2", CC_EPROTO, "'chat.v3', which was not offered");
    expect_fail("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: "
                "Upgrade\r\n" ACCEPT "Sec-WebSocket-Protocol: chat.v1\r\n\r\n",
                NULL, CC_EPROTO, "not offered");
    expect_fail("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: "
                "Upgrade\r\n" ACCEPT "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
                NULL, CC_EPROTO, "extension 'permessage-deflate'");

    /* a header block that never ends */
    size_t n = CC_WS_MAX_HEAD_BYTES + 100;
    char *big = malloc(n + 1);
    strcpy(big, "HTTP/1.1 101 Switching Protocols\r\n");
    for (size_t i = strlen(big); i < n; i += 16)
        memcpy(big + i, "X-Pad: 0123456\r\n", CC_MIN(16, n - i));
    big[n] = '\0';
    expect_fail(big, NULL, CC_ETOOBIG, "larger than");
    free(big);
}

static void test_no_subprotocol_is_fine(void **state)
{
    (void)state;
    const char *msg = "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: "
                      "upgrade\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    struct cc_ws_hs hs;
    cc_ws_hs_init(&hs, key, "chat.v1");
    size_t used = 0;
    assert_int_equal(cc_ws_hs_feed(&hs, msg, strlen(msg), &used), CC_WS_HS_DONE);
    assert_int_equal(used, strlen(msg));
    assert_string_equal(hs.protocol, "");
    cc_ws_hs_release(&hs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept),
        cmocka_unit_test(test_request),
        cmocka_unit_test(test_good_every_split),
        cmocka_unit_test(test_bad),
        cmocka_unit_test(test_no_subprotocol_is_fine),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
