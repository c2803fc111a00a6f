/* SPDX-License-Identifier: MIT */
/*
 * test_cdpmsg.c: reading Chrome DevTools Protocol messages: answers, errors, events, the
 * network events behind per-resource timings, and what is refused. A WebSocket message arrives
 * whole, so instead of chunkings each message is also cut at every byte: no prefix of a valid
 * message is ever read as a message.
 */
#include "proto/browser/cdpmsg.h"

#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static int parse(struct cc_cdp_msg *m, const char *s)
{
    return cc_cdp_msg_parse(m, s, strlen(s));
}

/* Every proper prefix of |s| is refused. */
static void prefixes_refused(const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++) {
        struct cc_cdp_msg m;
        if (cc_cdp_msg_parse(&m, s, i) == 0) {
            cc_cdp_msg_release(&m);
            fail_msg("a prefix of %zu bytes of %s was read", i, s);
        }
        assert_null(m.root);
    }
}

static void test_answer(void **state)
{
    (void)state;
    const char *s =
        "{\"id\":12,\"result\":{\"frameId\":\"F\",\"loaderId\":\"L\"},\"sessionId\":\"ABC\"}";
    struct cc_cdp_msg m;
    assert_int_equal(parse(&m, s), 0);
    assert_int_equal(m.id, 12);
    assert_string_equal(m.session, "ABC");
    assert_null(m.method);
    assert_null(m.error);
    assert_int_equal(m.net, CC_CDP_NET_NONE);
    cc_cdp_msg_release(&m);
    prefixes_refused(s);

    /* the browser's own connection: no session; a null error is no error */
    assert_int_equal(parse(&m, "{\"id\":0,\"result\":{},\"error\":null}"), 0);
    assert_int_equal(m.id, 0);
    assert_null(m.session);
    assert_null(m.error);
    cc_cdp_msg_release(&m);
}

static void test_error(void **state)
{
    (void)state;
    struct cc_cdp_msg m;
    const char *s = "{\"id\":3,\"error\":{\"code\":-32601,\"message\":\"'Nope.x' wasn't found\"}}";
    assert_int_equal(parse(&m, s), 0);
    assert_int_equal(m.id, 3);
    assert_string_equal(m.error, "'Nope.x' wasn't found");
    cc_cdp_msg_release(&m);
    prefixes_refused(s);

    /* an error without a message, or of the wrong shape, is still an error */
    assert_int_equal(parse(&m, "{\"id\":4,\"error\":{\"code\":1}}"), 0);
    assert_string_equal(m.error, "error");
    cc_cdp_msg_release(&m);
    assert_int_equal(parse(&m, "{\"id\":5,\"error\":\"bad\"}"), 0);
    assert_string_equal(m.error, "error");
    cc_cdp_msg_release(&m);
}

static void test_event(void **state)
{
    (void)state;
    struct cc_cdp_msg m;
    const char *s =
        "{\"method\":\"Page.loadEventFired\",\"params\":{\"timestamp\":5.5},\"sessionId\":\"S\"}";
    assert_int_equal(parse(&m, s), 0);
    assert_int_equal(m.id, -1);
    assert_string_equal(m.method, "Page.loadEventFired");
    assert_string_equal(m.session, "S");
    assert_int_equal(m.net, CC_CDP_NET_NONE);
    cc_cdp_msg_release(&m);
    prefixes_refused(s);

    /* a Network event that is not one of the four, or lacks its requestId, is a plain event */
    assert_int_equal(
        parse(&m, "{\"method\":\"Network.dataReceived\",\"params\":{\"requestId\":\"R\"}}"), 0);
    assert_int_equal(m.net, CC_CDP_NET_NONE);
    cc_cdp_msg_release(&m);
    assert_int_equal(
        parse(&m, "{\"method\":\"Network.loadingFinished\",\"params\":{\"timestamp\":1}}"), 0);
    assert_int_equal(m.net, CC_CDP_NET_NONE);
    assert_string_equal(m.method, "Network.loadingFinished");
    cc_cdp_msg_release(&m);
    assert_int_equal(parse(&m, "{\"method\":\"Network.requestWillBeSent\",\"params\":7}"), 0);
    assert_int_equal(m.net, CC_CDP_NET_NONE);
    cc_cdp_msg_release(&m);
}

static void test_network(void **state)
{
    (void)state;
    struct cc_cdp_msg m;
    const char *req = "{\"method\":\"Network.requestWillBeSent\",\"params\":{\"requestId\":\"R1\","
                      "\"request\":{\"url\":\"http://127.0.0.1/a.js\",\"method\":\"GET\"},"
                      "\"timestamp\":100.25,\"type\":\"Script\"},\"sessionId\":\"S\"}";
    assert_int_equal(parse(&m, req), 0);
    assert_int_equal(m.net, CC_CDP_NET_REQUEST);
    assert_string_equal(m.request, "R1");
    assert_string_equal(m.url, "http://127.0.0.1/a.js");
    assert_true(m.timestamp == 100.25);
    assert_int_equal(m.redirect_status, -1);
    cc_cdp_msg_release(&m);
    prefixes_refused(req);

    const char *redir =
        "{\"method\":\"Network.requestWillBeSent\",\"params\":{\"requestId\":\"R1\","
        "\"request\":{\"url\":\"http://127.0.0.1/b\"},\"timestamp\":101,"
        "\"redirectResponse\":{\"status\":301}}}";
    assert_int_equal(parse(&m, redir), 0);
    assert_int_equal(m.net, CC_CDP_NET_REQUEST);
    assert_int_equal(m.redirect_status, 301);
    cc_cdp_msg_release(&m);

    /* a request without a URL cannot be named: not used */
    assert_int_equal(
        parse(&m, "{\"method\":\"Network.requestWillBeSent\",\"params\":{\"requestId\":\"R\","
                  "\"request\":{}}}"),
        0);
    assert_int_equal(m.net, CC_CDP_NET_NONE);
    cc_cdp_msg_release(&m);

    const char *resp = "{\"method\":\"Network.responseReceived\",\"params\":{\"requestId\":\"R1\","
                       "\"response\":{\"status\":404.0,\"url\":\"x\"}}}";
    assert_int_equal(parse(&m, resp), 0);
    assert_int_equal(m.net, CC_CDP_NET_RESPONSE);
    assert_int_equal(m.status, 404);
    cc_cdp_msg_release(&m);
    assert_int_equal(
        parse(&m, "{\"method\":\"Network.responseReceived\",\"params\":{\"requestId\":\"R\","
                  "\"response\":{\"status\":1e9}}}"),
        0);
    assert_int_equal(m.status, -1); /* absurd statuses are not believed */
    cc_cdp_msg_release(&m);

    const char *fin = "{\"method\":\"Network.loadingFinished\",\"params\":{\"requestId\":\"R1\","
                      "\"timestamp\":100.5,\"encodedDataLength\":1234}}";
    assert_int_equal(parse(&m, fin), 0);
    assert_int_equal(m.net, CC_CDP_NET_FINISHED);
    assert_true(m.timestamp == 100.5);
    assert_true(m.length == 1234);
    cc_cdp_msg_release(&m);
    assert_int_equal(
        parse(&m, "{\"method\":\"Network.loadingFinished\",\"params\":{\"requestId\":\"R\","
                  "\"encodedDataLength\":-5}}"),
        0);
    assert_true(m.length == 0);
    cc_cdp_msg_release(&m);

    const char *failed = "{\"method\":\"Network.loadingFailed\",\"params\":{\"requestId\":\"R2\","
                         "\"timestamp\":3,\"errorText\":\"net::ERR_ABORTED\",\"canceled\":true}}";
    assert_int_equal(parse(&m, failed), 0);
    assert_int_equal(m.net, CC_CDP_NET_FAILED);
    assert_string_equal(m.error_text, "net::ERR_ABORTED");
    assert_true(m.canceled);
    cc_cdp_msg_release(&m);
}

static void test_refused(void **state)
{
    (void)state;
    const char *bad[] = {
        "",
        "null",
        "[1,2]",
        "\"text\"",
        "42",
        "{}",
        "{\"id\":-1}",
        "{\"id\":\"1\"}",
        "{\"method\":5}",
        "{\"params\":{}}",
        "{\"id\":1.5}",
        "{\"id\":1",
        "not json",
        "{\"id\":1}{\"id\":2}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct cc_cdp_msg m;
        if (parse(&m, bad[i]) == 0) {
            cc_cdp_msg_release(&m);
            fail_msg("read: %s", bad[i]);
        }
        assert_null(m.root);
    }
}

static void test_nul_in_strings(void **state)
{
    (void)state;
    /* a page's console text may carry \u0000: the message is still routed */
    struct cc_cdp_msg m;
    static const char s[] = "{\"method\":\"Runtime.consoleAPICalled\",\"params\":{\"args\":"
                            "[{\"value\":\"a\\u0000b\"}]},\"sessionId\":\"S\"}";
    assert_int_equal(cc_cdp_msg_parse(&m, s, sizeof(s) - 1), 0);
    assert_string_equal(m.method, "Runtime.consoleAPICalled");
    cc_cdp_msg_release(&m);
    /* raw NUL bytes are not JSON */
    static const char raw[] = "{\"id\":1,\"result\":{}}\0";
    assert_int_not_equal(cc_cdp_msg_parse(&m, raw, sizeof(raw)), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_answer),  cmocka_unit_test(test_error),
        cmocka_unit_test(test_event),   cmocka_unit_test(test_network),
        cmocka_unit_test(test_refused), cmocka_unit_test(test_nul_in_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
