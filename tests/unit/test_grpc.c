/* SPDX-License-Identifier: MIT */
/*
 * test_grpc.c: gRPC over the HTTP/2 client (grpc.c, and the streams of h2.c) on a connection
 * without a socket (h2fake.h). Server frames built with nghttp2's HPACK encoder go in whole,
 * a byte at a time and in random pieces: unary replies of every shape (a message and
 * trailers, trailers-only failures, no grpc-status, HTTP errors, not gRPC, two messages, a
 * compressed or cut message, resets), streaming calls (messages split across DATA frames,
 * a server that ends the call while the request is open, a cancelled call among others,
 * a broken prefix), the deadline, and the request head with its metadata.
 */
#define _GNU_SOURCE /* memmem */
#include "h2fake.h"
#include "proto/grpc/grpc.h"

#include <stdlib.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

/* ---- server frames ---------------------------------------------------------------------- */

struct wire {
    uint8_t b[1 << 15];
    size_t len;
    nghttp2_hd_deflater *hd;
};

static void wire_init(struct wire *w)
{
    w->len = 0;
    assert_int_equal(nghttp2_hd_deflate_new(&w->hd, 4096), 0);
    static const uint8_t settings[9] = {0, 0, 0, NGHTTP2_SETTINGS, 0, 0, 0, 0, 0};
    memcpy(w->b, settings, 9); /* the server's preface */
    w->len = 9;
}

static void frame(struct wire *w, uint8_t type, uint8_t flags, int32_t id, const void *p, size_t n)
{
    assert_true(w->len + 9 + n <= sizeof(w->b));
    uint8_t *h = w->b + w->len;
    h[0] = (uint8_t)(n >> 16);
    h[1] = (uint8_t)(n >> 8);
    h[2] = (uint8_t)n;
    h[3] = type;
    h[4] = flags;
    h[5] = (uint8_t)((uint32_t)id >> 24);
    h[6] = (uint8_t)(id >> 16);
    h[7] = (uint8_t)(id >> 8);
    h[8] = (uint8_t)id;
    if (n) memcpy(h + 9, p, n);
    w->len += 9 + n;
}

/* HEADERS with the NULL-terminated name, value pairs of |nv|. */
static void headers(struct wire *w, int32_t id, bool end, const char *const *nv)
{
    nghttp2_nv list[16];
    size_t n = 0;
    for (; nv[2 * n]; n++)
        list[n] = (nghttp2_nv){(uint8_t *)nv[2 * n], (uint8_t *)nv[2 * n + 1], strlen(nv[2 * n]),
                               strlen(nv[2 * n + 1]), NGHTTP2_NV_FLAG_NONE};
    uint8_t block[2048];
    ssize_t bl = nghttp2_hd_deflate_hd(w->hd, block, sizeof(block), list, n);
    assert_true(bl > 0);
    frame(w, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | (end ? NGHTTP2_FLAG_END_STREAM : 0), id,
          block, (size_t)bl);
}

static void data(struct wire *w, int32_t id, bool end, const void *p, size_t n)
{
    frame(w, NGHTTP2_DATA, end ? NGHTTP2_FLAG_END_STREAM : 0, id, p, n);
}

/* A message with its prefix, as DATA. */
static void message(struct wire *w, int32_t id, bool end, const char *msg)
{
    char buf[512];
    size_t n = strlen(msg);
    grpc_frame_prefix(buf, false, (uint32_t)n);
    memcpy(buf + GRPC_PREFIX, msg, n);
    data(w, id, end, buf, n + GRPC_PREFIX);
}

static void rst(struct wire *w, int32_t id, uint32_t code)
{
    uint8_t p[4] = {(uint8_t)(code >> 24), (uint8_t)(code >> 16), (uint8_t)(code >> 8),
                    (uint8_t)code};
    frame(w, NGHTTP2_RST_STREAM, 0, id, p, 4);
}

static const char *const HEAD[] = {":status", "200", "content-type", "application/grpc", NULL};

static void feed(struct h2fake *f, const struct wire *w, int piece)
{
    for (size_t off = 0; off < w->len;) {
        size_t n = w->len - off;
        if (piece > 0) n = CC_MIN(n, (size_t)piece);
        if (piece < 0) {
            size_t r = (size_t)(rand() % 40) + 1; /* once: CC_MIN evaluates twice */
            n = CC_MIN(n, r);
        }
        h2fake_feed(f, w->b + off, n);
        off += n;
    }
}

static const int splits[] = {0, 1, 2, 3, 7, -1, -1, -1};

/* ---- calls ------------------------------------------------------------------------------ */

struct result {
    bool done;
    int code;
    char msg[300];
    char reply[300];
    size_t reply_len;
};

static struct result results[8];

static void unary_done(struct http_exchange *ex)
{
    struct result *r = &results[ex->uarg];
    struct http_buf msg = {0};
    const char *reply = NULL;
    size_t rl = 0;
    r->done = true;
    r->code = grpc_unary_reply(ex, 1000, &reply, &rl, &msg);
    snprintf(r->msg, sizeof(r->msg), "%.*s", (int)msg.len, msg.p ? msg.p : "");
    r->reply_len = rl;
    if (rl) memcpy(r->reply, reply, CC_MIN(rl, sizeof(r->reply)));
    http_buf_free(&msg);
}

/* A call's request: its head, and |msg| (with its prefix) unless NULL. */
static struct http_exchange *request(struct h2fake *f, const char *msg, uint64_t timeout_ms)
{
    struct http_exchange *ex = http_exchange_new(f->hv);
    grpc_head_begin(&ex->req, "/pkg.Svc/Method", "example.test", timeout_ms);
    ex->req_head = grpc_head_end(&ex->req);
    if (msg) {
        char pre[GRPC_PREFIX];
        grpc_frame_prefix(pre, false, (uint32_t)strlen(msg));
        http_buf_append(&ex->req, pre, GRPC_PREFIX);
        http_buf_append(&ex->req, msg, strlen(msg));
    }
    ex->max_body = 1 << 20;
    return ex;
}

static void unary(struct h2fake *f, int i, const char *msg)
{
    struct http_exchange *ex = request(f, msg, 0);
    ex->uarg = i;
    ex->on_done = unary_done;
    http_exchange_start(f->p, ex);
}

/* Unary replies of every shape, each on its own stream of one connection. */
static void test_unary_replies(void **state)
{
    (void)state;
    struct wire w;
    wire_init(&w);
    /* 1: a reply and trailers with a message */
    headers(&w, 1, false, HEAD);
    message(&w, 1, false, "\x0a\x02hi");
    headers(&w, 1, true, (const char *const[]){"grpc-status", "0", "x-t", "1", NULL});
    /* 3: trailers-only failure, percent-encoded message */
    headers(&w, 3, true,
            (const char *const[]){":status", "200", "content-type", "application/grpc",
                                  "grpc-status", "3", "grpc-message", "bad%20name%3A%E2%9C%93",
                                  NULL});
    /* 5: OK, but no grpc-status at all */
    headers(&w, 5, false, HEAD);
    message(&w, 5, true, "");
    /* 7: HTTP 503 */
    headers(&w, 7, true, (const char *const[]){":status", "503", NULL});
    /* 9: not gRPC */
    headers(&w, 9, false,
            (const char *const[]){":status", "200", "content-type", "text/html", NULL});
    data(&w, 9, true, "<html>", 6);
    /* 11: two messages for a unary call */
    headers(&w, 11, false, HEAD);
    message(&w, 11, false, "a");
    message(&w, 11, false, "b");
    headers(&w, 11, true, (const char *const[]){"grpc-status", "0", NULL});
    /* 13: a compressed message (never asked for) */
    headers(&w, 13, false, HEAD);
    data(&w, 13, false, "\x01\x00\x00\x00\x01x", 6);
    headers(&w, 13, true, (const char *const[]){"grpc-status", "0", NULL});
    /* 15: cut in the middle of its message */
    headers(&w, 15, false, HEAD);
    data(&w, 15, false, "\x00\x00\x00\x00\x09xyz", 8);
    headers(&w, 15, true, (const char *const[]){"grpc-status", "0", NULL});
    for (size_t s = 0; s < CC_ARRAY_LEN(splits); s++) {
        memset(results, 0, sizeof(results));
        struct h2fake f;
        h2fake_open(&f);
        for (int i = 0; i < 8; i++)
            unary(&f, i, "\x0a\x01x");
        feed(&f, &w, splits[s]);
        struct result *r = results;
        for (int i = 0; i < 8; i++)
            assert_true(r[i].done);
        assert_int_equal(r[0].code, GRPC_OK);
        assert_int_equal(r[0].reply_len, 4);
        assert_memory_equal(r[0].reply, "\x0a\x02hi", 4);
        assert_int_equal(r[1].code, GRPC_INVALID_ARGUMENT);
        assert_string_equal(r[1].msg, "bad name:\xe2\x9c\x93");
        assert_int_equal(r[2].code, GRPC_INTERNAL);
        assert_string_equal(r[2].msg, "the server ended the call without a grpc-status");
        assert_int_equal(r[3].code, GRPC_UNAVAILABLE);
        assert_non_null(strstr(r[3].msg, "HTTP status 503 Service Unavailable"));
        assert_int_equal(r[4].code, GRPC_UNKNOWN);
        assert_string_equal(r[4].msg, "the response is not gRPC (content-type: text/html)");
        assert_int_equal(r[5].code, GRPC_INTERNAL);
        assert_string_equal(r[5].msg, "more than one reply message for a unary call");
        assert_int_equal(r[6].code, GRPC_INTERNAL);
        assert_non_null(strstr(r[6].msg, "compressed"));
        assert_int_equal(r[7].code, GRPC_INTERNAL);
        assert_string_equal(r[7].msg, "the reply ends inside its message");
        assert_int_equal(f.c->nstreams, 0);
        h2fake_close(&f);
    }
    nghttp2_hd_deflate_del(w.hd);
}

/* Resets map to codes: CANCEL is CANCELLED, REFUSED_STREAM (after its one retry, which cannot
 * connect here) UNAVAILABLE, others INTERNAL; a connection that closes is UNAVAILABLE. */
static void test_resets_and_closes(void **state)
{
    (void)state;
    struct wire w;
    wire_init(&w);
    rst(&w, 1, NGHTTP2_CANCEL);
    rst(&w, 3, NGHTTP2_INTERNAL_ERROR);
    rst(&w, 5, NGHTTP2_ENHANCE_YOUR_CALM);
    headers(&w, 7, false, HEAD);
    for (size_t s = 0; s < CC_ARRAY_LEN(splits); s++) {
        memset(results, 0, sizeof(results));
        struct h2fake f;
        h2fake_open(&f);
        for (int i = 0; i < 4; i++)
            unary(&f, i, "");
        feed(&f, &w, splits[s]);
        assert_int_equal(results[0].code, GRPC_CANCELLED);
        assert_int_equal(results[1].code, GRPC_INTERNAL);
        assert_non_null(strstr(results[1].msg, "reset the HTTP/2 stream: INTERNAL_ERROR"));
        assert_int_equal(results[2].code, GRPC_RESOURCE_EXHAUSTED);
        assert_false(results[3].done);
        h2fake_end(&f, 0); /* the server closes mid-call */
        assert_int_equal(results[3].code, GRPC_UNAVAILABLE);
        assert_non_null(strstr(results[3].msg, "closed the connection"));
        h2fake_close(&f);
    }
    nghttp2_hd_deflate_del(w.hd);
}

/* ---- streaming calls -------------------------------------------------------------------- */

struct watch {
    int changes;
    int messages;
    char got[8][32];
};

static void changed(struct grpc_call *call)
{
    struct watch *wt = call->owner;
    wt->changes++;
    const char *m;
    size_t n;
    while (grpc_call_next(call, &m, &n)) { /* as a user reading as they come */
        assert_true(wt->messages < 8);
        snprintf(wt->got[wt->messages++], 32, "%.*s", (int)n, m);
    }
}

static void start_call_by(struct h2fake *f, struct grpc_call *call, struct watch *wt, bool closed,
                          uint64_t deadline_ns)
{
    memset(call, 0, sizeof(*call));
    memset(wt, 0, sizeof(*wt));
    call->owner = wt;
    call->on_change = changed;
    call->send_closed = closed;
    struct http_exchange *ex = request(f, closed ? "first" : NULL, 0);
    ex->deadline_ns = deadline_ns;
    grpc_call_start(call, f->p, ex, 1000);
}

static void start_call(struct h2fake *f, struct grpc_call *call, struct watch *wt, bool closed)
{
    start_call_by(f, call, wt, closed, 0);
}

/* Messages split across DATA frames, and frames holding several; the trailers end it. */
static void test_stream_messages(void **state)
{
    (void)state;
    struct wire w;
    wire_init(&w);
    headers(&w, 1, false,
            (const char *const[]){":status", "200", "content-type", "application/grpc+proto", "x-h",
                                  "head", NULL});
    /* "one", "two", "", "three": cut across three frames */
    static const char bytes[] = "\x00\x00\x00\x00\x03one\x00\x00\x00\x00\x03two"
                                "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x05three";
    size_t bl = sizeof(bytes) - 1;
    data(&w, 1, false, bytes, 6);
    data(&w, 1, false, bytes + 6, 11);
    data(&w, 1, false, bytes + 17, bl - 17);
    headers(&w, 1, true, (const char *const[]){"grpc-status", "0", "x-t", "tail", NULL});
    for (size_t s = 0; s < CC_ARRAY_LEN(splits); s++) {
        struct h2fake f;
        h2fake_open(&f);
        struct grpc_call call;
        struct watch wt;
        start_call(&f, &call, &wt, false);
        assert_int_equal(grpc_call_send(&call, "\x0a\x01x", 3, false), 0);
        assert_int_equal(grpc_call_send(&call, NULL, 0, true), 0);
        assert_int_equal(grpc_call_send(&call, "x", 1, false), -1); /* closed */
        feed(&f, &w, splits[s]);
        assert_true(call.ended);
        assert_int_equal(call.code, GRPC_OK);
        assert_int_equal(wt.messages, 4);
        assert_string_equal(wt.got[0], "one");
        assert_string_equal(wt.got[1], "two");
        assert_string_equal(wt.got[2], "");
        assert_string_equal(wt.got[3], "three");
        assert_int_equal(call.received, 11);
        assert_int_equal(call.messages, 4);
        struct grpc_meta h = grpc_call_headers(&call), t = grpc_call_trailers(&call);
        assert_int_equal(h.count, 2);
        assert_string_equal(h.p, "content-type");
        assert_int_equal(t.count, 2);
        assert_string_equal(t.p, "grpc-status");
        assert_null(call.ex);
        grpc_call_release(&call);
        h2fake_close(&f);
    }
    nghttp2_hd_deflate_del(w.hd);
}

/* A server that ends the call while the request is still open (it need not wait for the
 * client's end): the call ends with its status, the stream is reset, the connection goes on. */
static void test_stream_ended_by_server(void **state)
{
    (void)state;
    struct wire w;
    wire_init(&w);
    headers(&w, 1, false, HEAD);
    message(&w, 1, false, "early");
    headers(&w, 1, true,
            (const char *const[]){"grpc-status", "9", "grpc-message", "not now", NULL});
    for (size_t s = 0; s < CC_ARRAY_LEN(splits); s++) {
        struct h2fake f;
        h2fake_open(&f);
        struct grpc_call call;
        struct watch wt;
        start_call(&f, &call, &wt, false);
        grpc_call_send(&call, "a", 1, false);
        feed(&f, &w, splits[s]);
        assert_true(call.ended);
        assert_int_equal(call.code, GRPC_FAILED_PRECONDITION);
        assert_int_equal(call.message.len, 7);
        assert_memory_equal(call.message.p, "not now", 7);
        assert_int_equal(wt.messages, 1);
        assert_int_equal(f.c->nstreams, 0);
        assert_false(f.c->closing);
        assert_int_equal(grpc_call_send(&call, "b", 1, false), -1);
        grpc_call_release(&call);
        h2fake_close(&f);
    }
    nghttp2_hd_deflate_del(w.hd);
}

/* One call cancelled, one with a broken prefix, one that is not gRPC: the fourth is answered. */
static void test_stream_failures(void **state)
{
    (void)state;
    struct wire w;
    wire_init(&w);
    headers(&w, 3, false, HEAD);
    data(&w, 3, false, "\x05\x00\x00\x00\x00", 5);
    headers(&w, 5, false,
            (const char *const[]){":status", "200", "content-type", "application/json", NULL});
    data(&w, 5, false, "{}", 2);
    headers(&w, 7, false, HEAD);
    message(&w, 7, false, "ok");
    headers(&w, 7, true, (const char *const[]){"grpc-status", "0", NULL});
    for (size_t s = 0; s < CC_ARRAY_LEN(splits); s++) {
        struct h2fake f;
        h2fake_open(&f);
        struct grpc_call c[4];
        struct watch wt[4];
        for (int i = 0; i < 4; i++)
            start_call(&f, &c[i], &wt[i], true);
        assert_int_equal(f.c->nstreams, 4);
        grpc_call_cancel(&c[0], GRPC_CANCELLED, "by the test");
        assert_true(c[0].ended);
        assert_int_equal(c[0].code, GRPC_CANCELLED);
        assert_int_equal(f.c->nstreams, 3);
        feed(&f, &w, splits[s]);
        assert_int_equal(c[1].code, GRPC_INTERNAL);
        assert_non_null(strstr(c[1].message.p, "malformed message prefix (flag byte 5)"));
        assert_int_equal(c[2].code, GRPC_UNKNOWN);
        assert_int_equal(wt[2].messages, 0);
        assert_true(c[3].ended);
        assert_int_equal(c[3].code, GRPC_OK);
        assert_int_equal(wt[3].messages, 1);
        assert_string_equal(wt[3].got[0], "ok");
        assert_int_equal(wt[0].changes, 0); /* a cancel tells no one */
        for (int i = 0; i < 4; i++)
            grpc_call_release(&c[i]);
        h2fake_close(&f);
    }
    nghttp2_hd_deflate_del(w.hd);
}

/* The deadline fails a call whatever it receives; a call released while going is cancelled. */
static void test_deadline(void **state)
{
    (void)state;
    struct wire w;
    wire_init(&w);
    headers(&w, 1, false, HEAD);
    headers(&w, 3, false, HEAD);
    struct h2fake f;
    h2fake_open(&f);
    struct grpc_call c, d;
    struct watch wc, wd;
    start_call_by(&f, &c, &wc, false, cc_now_ns() + 20 * 1000000ull);
    start_call(&f, &d, &wd, false);
    feed(&f, &w, 0);
    uint64_t give_up = cc_now_ns() + 5000000000ull;
    while (!c.ended && cc_now_ns() < give_up)
        uv_run(&f.loop, UV_RUN_ONCE);
    assert_int_equal(c.code, GRPC_DEADLINE_EXCEEDED);
    assert_memory_equal(c.message.p, "Deadline Exceeded", 17);
    assert_false(d.ended);
    grpc_call_release(&d);
    assert_true(d.ended);
    assert_int_equal(d.code, GRPC_CANCELLED);
    assert_int_equal(f.c->nstreams, 0);
    grpc_call_release(&c);
    h2fake_close(&f);
    nghttp2_hd_deflate_del(w.hd);
}

/* ---- the request ------------------------------------------------------------------------ */

static void test_request_head(void **state)
{
    (void)state;
    struct h2fake f;
    h2fake_open(&f);
    struct http_exchange *ex = http_exchange_new(f.hv);
    grpc_head_begin(&ex->req, "/pkg.Svc/M", "example.test:50051", 1500);
    char err[256];
    assert_int_equal(grpc_head_metadata(&ex->req, "X-Key", 5, "v", 1, err, sizeof(err)), 0);
    assert_int_equal(
        grpc_head_metadata(&ex->req, "x-data-bin", 10, "\x00\xff", 2, err, sizeof(err)), 0);
    assert_int_equal(grpc_head_metadata(&ex->req, "grpc-timeout", 12, "1S", 2, err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "reserved"));
    assert_int_equal(grpc_head_metadata(&ex->req, "te", 2, "x", 1, err, sizeof(err)), -1);
    assert_int_equal(grpc_head_metadata(&ex->req, "a b", 3, "x", 1, err, sizeof(err)), -1);
    assert_int_equal(grpc_head_metadata(&ex->req, "x-text", 6, "\n", 1, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "-bin"));
    ex->req_head = grpc_head_end(&ex->req);
    size_t n = h2_request_headers(f.hv, f.p, ex);
    const nghttp2_nv *nv = f.hv->h2_nv;
    char all[1024] = "";
    for (size_t i = 0; i < n; i++)
        snprintf(all + strlen(all), sizeof(all) - strlen(all), "%.*s=%.*s\n", (int)nv[i].namelen,
                 nv[i].name, (int)nv[i].valuelen, nv[i].value);
    assert_string_equal(all, ":method=POST\n:scheme=http\n:authority=example.test:50051\n"
                             ":path=/pkg.Svc/M\ncontent-type=application/grpc\nte=trailers\n"
                             "user-agent=cicada/" CC_VERSION "\ngrpc-timeout=1500m\nx-key=v\n"
                             "x-data-bin=AP8\n");
    http_exchange_discard(f.hv, ex);
    /* the timeout's unit: at most eight digits */
    struct http_buf b = {0};
    grpc_head_begin(&b, "/p", "h", 100000000ull);
    assert_non_null(memmem(b.p, b.len, "grpc-timeout: 100000S", 21));
    http_buf_free(&b);
    h2fake_close(&f);
}

static void test_encodings(void **state)
{
    (void)state;
    struct http_buf b = {0};
    static const struct {
        const char *in, *b64;
    } cases[] = {{"", ""}, {"f", "Zg"}, {"fo", "Zm8"}, {"foo", "Zm9v"}, {"\xff\xfe\x00", "//4A"}};
    for (size_t i = 0; i < CC_ARRAY_LEN(cases); i++) {
        size_t n = i == 4 ? 3 : strlen(cases[i].in);
        b.len = 0;
        grpc_base64_encode(&b, cases[i].in, n);
        assert_int_equal(b.len, strlen(cases[i].b64));
        if (b.len) assert_memory_equal(b.p, cases[i].b64, b.len);
        b.len = 0;
        assert_int_equal(grpc_base64_decode(&b, cases[i].b64, strlen(cases[i].b64)), 0);
        assert_int_equal(b.len, n);
        if (n) assert_memory_equal(b.p, cases[i].in, n);
    }
    b.len = 0;
    assert_int_equal(grpc_base64_decode(&b, "Zg==", 4), 0); /* padded */
    assert_int_equal(b.len, 1);
    assert_int_equal(grpc_base64_decode(&b, "Z", 1), -1);
    assert_int_equal(grpc_base64_decode(&b, "Z!", 2), -1);
    b.len = 0;
    grpc_percent_decode(&b, "a%20b%zz%4", 10);
    assert_int_equal(b.len, 8);
    assert_memory_equal(b.p, "a b%zz%4", 8);
    http_buf_free(&b);
    assert_string_equal(grpc_code_name(14), "UNAVAILABLE");
    assert_string_equal(grpc_code_name(99), "UNKNOWN");
}

int main(void)
{
    (void)h2fake_request; /* h2fake.h's plain HTTP requests: not needed here */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unary_replies),   cmocka_unit_test(test_resets_and_closes),
        cmocka_unit_test(test_stream_messages), cmocka_unit_test(test_stream_ended_by_server),
        cmocka_unit_test(test_stream_failures), cmocka_unit_test(test_deadline),
        cmocka_unit_test(test_request_head),    cmocka_unit_test(test_encodings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
