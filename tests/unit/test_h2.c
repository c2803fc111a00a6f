/* SPDX-License-Identifier: MIT */
/*
 * test_h2.c: the HTTP/2 driver (h2.c) on a connection without a socket (h2fake.h): server
 * frames, built here with nghttp2's HPACK encoder, go in whole, a byte at a time and in random
 * pieces; the exchanges' outcomes are checked. Multiplexed responses out of order, interim
 * responses, trailers, gzip, RST_STREAM, GOAWAY and its retries, the body cap, a cancelled
 * stream among others, the server's stream limit, the response timeout, broken framing.
 */
#include "h2fake.h"

#include <stdlib.h>
#include <zlib.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

/* ---- server frames ---------------------------------------------------------------------- */

struct wire {
    uint8_t b[1 << 16];
    size_t len;
    nghttp2_hd_deflater *hd;
};

static void wire_init(struct wire *w)
{
    memset(w, 0, sizeof(*w));
    assert_int_equal(nghttp2_hd_deflate_new(&w->hd, 4096), 0);
}

static void wire_free(struct wire *w)
{
    nghttp2_hd_deflate_del(w->hd);
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

static void settings(struct wire *w, int32_t max_streams)
{
    uint8_t p[6] = {0,
                    NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
                    (uint8_t)(max_streams >> 24),
                    (uint8_t)(max_streams >> 16),
                    (uint8_t)(max_streams >> 8),
                    (uint8_t)max_streams};
    frame(w, NGHTTP2_SETTINGS, 0, 0, p, max_streams >= 0 ? 6 : 0);
    frame(w, NGHTTP2_SETTINGS, NGHTTP2_FLAG_ACK, 0, NULL, 0);
}

/* HEADERS with the pairs of |nv| (NULL-terminated: name, value, name, value...). */
static void headers(struct wire *w, int32_t id, bool end, const char *const *nv)
{
    nghttp2_nv list[16];
    size_t n = 0;
    for (; nv[2 * n]; n++)
        list[n] = (nghttp2_nv){(uint8_t *)nv[2 * n], (uint8_t *)nv[2 * n + 1], strlen(nv[2 * n]),
                               strlen(nv[2 * n + 1]), NGHTTP2_NV_FLAG_NONE};
    uint8_t block[4096];
    ssize_t bl = nghttp2_hd_deflate_hd(w->hd, block, sizeof(block), list, n);
    assert_true(bl > 0);
    frame(w, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | (end ? NGHTTP2_FLAG_END_STREAM : 0), id,
          block, (size_t)bl);
}

static void data(struct wire *w, int32_t id, bool end, const void *p, size_t n)
{
    frame(w, NGHTTP2_DATA, end ? NGHTTP2_FLAG_END_STREAM : 0, id, p, n);
}

static void rst(struct wire *w, int32_t id, uint32_t code)
{
    uint8_t p[4] = {(uint8_t)(code >> 24), (uint8_t)(code >> 16), (uint8_t)(code >> 8),
                    (uint8_t)code};
    frame(w, NGHTTP2_RST_STREAM, 0, id, p, 4);
}

static void goaway(struct wire *w, int32_t last, uint32_t code, const char *debug)
{
    uint8_t p[64];
    size_t dl = strlen(debug);
    p[0] = (uint8_t)(last >> 24);
    p[1] = (uint8_t)(last >> 16);
    p[2] = (uint8_t)(last >> 8);
    p[3] = (uint8_t)last;
    p[4] = (uint8_t)(code >> 24);
    p[5] = (uint8_t)(code >> 16);
    p[6] = (uint8_t)(code >> 8);
    p[7] = (uint8_t)code;
    memcpy(p + 8, debug, dl);
    frame(w, NGHTTP2_GOAWAY, 0, 0, p, 8 + dl);
}

static size_t gzip_of(const char *s, uint8_t *out, size_t cap)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
    z.next_in = (Bytef *)s;
    z.avail_in = (uInt)strlen(s);
    z.next_out = out;
    z.avail_out = (uInt)cap;
    assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
    size_t n = z.total_out;
    deflateEnd(&z);
    return n;
}

/* Feeds |w| whole (|piece| 0), in pieces of |piece| bytes, or (|piece| < 0) in random ones. */
static void feed(struct h2fake *f, const struct wire *w, int piece)
{
    for (size_t off = 0; off < w->len;) {
        size_t n = w->len - off;
        if (piece > 0) n = CC_MIN(n, (size_t)piece);
        if (piece < 0) {
            size_t r = (size_t)(rand() % 40) + 1;
            n = CC_MIN(n, r);
        }
        h2fake_feed(f, w->b + off, n);
        off += n;
    }
}

static const int splits[] = {0, 1, 2, 7, -1, -1, -1};

#define GET(path) "GET " path " HTTP/1.1\r\nHost: example.test\r\nConnection: keep-alive\r\n\r\n"

/* ---- tests ------------------------------------------------------------------------------ */

/* Three streams answered out of order: gzip, interim 103 and trailers, a 404. */
static void test_multiplexed_responses(void **state)
{
    (void)state;
    struct wire w;
    wire_init(&w);
    settings(&w, 100);
    uint8_t gz[256];
    size_t gl = gzip_of("hello, compressed world", gz, sizeof(gz));
    headers(&w, 5, true, (const char *const[]){":status", "404", "server", "fake", NULL});
    headers(&w, 1, false, (const char *const[]){":status", "103", "link", "</a>", NULL});
    headers(&w, 1, false,
            (const char *const[]){":status", "200", "content-encoding", "gzip", "x-a", "1", NULL});
    headers(&w, 3, false, (const char *const[]){":status", "200", "x-b", "2", NULL});
    data(&w, 1, false, gz, gl / 2);
    data(&w, 3, false, "part one, ", 10);
    data(&w, 1, true, gz + gl / 2, gl - gl / 2);
    data(&w, 3, false, "part two", 8);
    headers(&w, 3, true, (const char *const[]){"x-trailer", "t", NULL});
    for (size_t s = 0; s < CC_ARRAY_LEN(splits); s++) {
        struct h2fake f;
        h2fake_open(&f);
        h2fake_request(&f, GET("/gzip"), 0, 1 << 20);
        h2fake_request(&f, GET("/two"), 0, 1 << 20);
        h2fake_request(&f, GET("/missing"), 0, 1 << 20);
        assert_int_equal(f.c->nstreams, 3);
        feed(&f, &w, splits[s]);
        struct h2fake_result *r = h2fake_results;
        assert_true(r[0].done && r[1].done && r[2].done);
        assert_int_equal(r[0].error, 0);
        assert_int_equal(r[0].status, 200);
        assert_true(r[0].http2);
        assert_string_equal(r[0].reason, "OK");
        assert_int_equal(r[0].body_len, 23);
        assert_memory_equal(r[0].body, "hello, compressed world", 23);
        assert_string_equal(r[0].headers, "content-encoding: gzip\nx-a: 1\n"); /* 103 forgotten */
        assert_int_equal(r[1].status, 200);
        assert_int_equal(r[1].body_len, 18);
        assert_memory_equal(r[1].body, "part one, part two", 18);
        assert_string_equal(r[1].headers, "x-b: 2\nx-trailer: t\n");
        assert_int_equal(r[2].status, 404);
        assert_string_equal(r[2].reason, "Not Found");
        assert_int_equal(r[2].body_len, 0);
        assert_int_equal(f.c->nstreams, 0);
        assert_int_equal(f.c->served, 3);
        assert_false(f.c->closing); /* the connection stays for more */
        h2fake_close(&f);
    }
    wire_free(&w);
}

/* RST_STREAM fails its stream alone; REFUSED_STREAM is retried once (on a new connection,
 * which here cannot connect); a GOAWAY refuses the streams above its last id and the
 * connection closes once the others are done. */
static void test_reset_and_goaway(void **state)
{
    (void)state;
    struct wire w;
    wire_init(&w);
    settings(&w, 100);
    rst(&w, 1, NGHTTP2_INTERNAL_ERROR);
    goaway(&w, 5, NGHTTP2_NO_ERROR, "");
    headers(&w, 3, false, (const char *const[]){":status", "200", NULL});
    rst(&w, 5, NGHTTP2_REFUSED_STREAM);
    data(&w, 3, true, "ok", 2);
    for (size_t s = 0; s < CC_ARRAY_LEN(splits); s++) {
        struct h2fake f;
        h2fake_open(&f);
        for (int i = 0; i < 4; i++)
            h2fake_request(&f, GET("/"), 0, 1 << 20);
        feed(&f, &w, splits[s]);
        struct h2fake_result *r = h2fake_results;
        assert_true(r[0].done && r[1].done && r[2].done && r[3].done);
        assert_int_equal(r[0].error, CC_EPROTO);
        assert_non_null(strstr(r[0].errmsg, "reset the HTTP/2 stream: INTERNAL_ERROR (0x2)"));
        assert_int_equal(r[1].status, 200);
        assert_memory_equal(r[1].body, "ok", 2);
        /* streams 5 (refused) and 7 (above the GOAWAY) went to a new connection */
        assert_non_null(strstr(r[2].errmsg, "cannot connect"));
        assert_non_null(strstr(r[3].errmsg, "cannot connect"));
        assert_true(f.c->closing); /* GOAWAY, and nothing left on it */
        h2fake_close(&f);
    }
    wire_free(&w);
}

/* A GOAWAY with an error fails what it refuses with the server's reason; a connection that
 * breaks the protocol fails every stream. */
static void test_connection_errors(void **state)
{
    (void)state;
    struct wire w;
    wire_init(&w);
    settings(&w, 100);
    goaway(&w, 0, NGHTTP2_ENHANCE_YOUR_CALM, "calm down");
    struct h2fake f;
    h2fake_open(&f);
    h2fake_request(&f, GET("/"), 0, 1 << 20);
    feed(&f, &w, 0);
    /* refused unprocessed: retried once, on a connection that cannot connect here */
    assert_true(h2fake_results[0].done);
    assert_non_null(strstr(h2fake_results[0].errmsg, "cannot connect"));
    assert_true(f.c->closing);
    h2fake_close(&f);
    wire_free(&w);

    /* an HTTP/1.1 answer where frames should be */
    static const char h1[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
    h2fake_open(&f);
    h2fake_request(&f, GET("/a"), 0, 1 << 20);
    h2fake_request(&f, GET("/b"), 0, 1 << 20);
    h2fake_feed(&f, (const uint8_t *)h1, sizeof(h1) - 1);
    for (int i = 0; i < 2; i++) {
        assert_true(h2fake_results[i].done);
        assert_int_equal(h2fake_results[i].error, CC_EPROTO);
        assert_non_null(strstr(h2fake_results[i].errmsg, "malformed response from example.test"));
    }
    assert_true(f.c->closing);
    h2fake_close(&f);

    /* the server closes the connection mid-response */
    wire_init(&w);
    settings(&w, 100);
    headers(&w, 1, false, (const char *const[]){":status", "200", NULL});
    data(&w, 1, false, "he", 2);
    h2fake_open(&f);
    h2fake_request(&f, GET("/a"), 0, 1 << 20);
    h2fake_request(&f, GET("/b"), 0, 1 << 20);
    feed(&f, &w, 0);
    h2fake_end(&f, 0);
    assert_non_null(strstr(h2fake_results[0].errmsg,
                           "example.test closed the connection before the response was complete"));
    assert_non_null(
        strstr(h2fake_results[1].errmsg, "example.test closed the connection without a response"));
    h2fake_close(&f);
    wire_free(&w);
}

/* A malformed response (a bad :status) is a stream error: that stream fails, others go on. */
static void test_stream_error(void **state)
{
    (void)state;
    struct wire w;
    wire_init(&w);
    settings(&w, 100);
    headers(&w, 1, true, (const char *const[]){":status", "abc", NULL});
    headers(&w, 3, true, (const char *const[]){":status", "204", NULL});
    for (size_t s = 0; s < CC_ARRAY_LEN(splits); s++) {
        struct h2fake f;
        h2fake_open(&f);
        h2fake_request(&f, GET("/a"), 0, 1 << 20);
        h2fake_request(&f, GET("/b"), 0, 1 << 20);
        feed(&f, &w, splits[s]);
        assert_int_equal(h2fake_results[0].error, CC_EPROTO);
        assert_non_null(strstr(h2fake_results[0].errmsg, "malformed response from example.test"));
        assert_int_equal(h2fake_results[1].error, 0);
        assert_int_equal(h2fake_results[1].status, 204);
        h2fake_close(&f);
    }
    wire_free(&w);
}

/* A body over the exchange's cap fails that stream (reset), not its neighbour. */
static void test_body_cap(void **state)
{
    (void)state;
    char big[200];
    memset(big, 'x', sizeof(big));
    struct wire w;
    wire_init(&w);
    settings(&w, 100);
    headers(&w, 1, false, (const char *const[]){":status", "200", NULL});
    headers(&w, 3, false, (const char *const[]){":status", "200", NULL});
    data(&w, 1, false, big, 100);
    data(&w, 3, true, "small", 5);
    data(&w, 1, true, big, 100); /* after the reset: ignored */
    struct h2fake f;
    h2fake_open(&f);
    h2fake_request(&f, GET("/big"), 0, 50);
    h2fake_request(&f, GET("/small"), 0, 50);
    feed(&f, &w, 1);
    assert_int_equal(h2fake_results[0].error, CC_ETOOBIG);
    assert_non_null(strstr(h2fake_results[0].errmsg, "larger than max_body"));
    assert_int_equal(h2fake_results[1].error, 0);
    assert_memory_equal(h2fake_results[1].body, "small", 5);
    assert_false(f.c->closing);
    h2fake_close(&f);
    wire_free(&w);
}

/* A killed user's stream is reset; its frames that still come are ignored, the others' are
 * answered. */
static void test_cancel_one_stream(void **state)
{
    (void)state;
    struct wire w;
    wire_init(&w);
    settings(&w, 100);
    headers(&w, 1, false, (const char *const[]){":status", "200", NULL});
    headers(&w, 3, false, (const char *const[]){":status", "200", NULL});
    headers(&w, 5, false, (const char *const[]){":status", "200", NULL});
    data(&w, 3, true, "three", 5);
    data(&w, 1, true, "one", 3);
    data(&w, 5, true, "five", 4);
    for (size_t s = 0; s < CC_ARRAY_LEN(splits); s++) {
        struct h2fake f;
        h2fake_open(&f);
        for (int i = 0; i < 3; i++)
            h2fake_request(&f, GET("/"), 0, 1 << 20);
        struct http_exchange *killed = f.ex[1];
        f.ex[1] = NULL;
        http_exchange_cancel(&killed->waiter);
        assert_int_equal(f.c->nstreams, 2);
        feed(&f, &w, splits[s]);
        assert_true(h2fake_results[0].done && h2fake_results[2].done);
        assert_false(h2fake_results[1].done);
        assert_memory_equal(h2fake_results[0].body, "one", 3);
        assert_memory_equal(h2fake_results[2].body, "five", 4);
        assert_false(f.c->closing);
        h2fake_close(&f);
    }
    wire_free(&w);
}

/* With the server's limit of one stream, requests wait in the pool's queue. */
static void test_concurrency_limit(void **state)
{
    (void)state;
    struct wire first, rest;
    wire_init(&first);
    settings(&first, 1);
    rest.hd = first.hd; /* one HPACK context: the client decodes them in this order */
    rest.len = 0;
    struct h2fake f;
    h2fake_open(&f);
    h2fake_feed(&f, first.b, first.len);
    for (int i = 0; i < 3; i++)
        h2fake_request(&f, GET("/"), 0, 1 << 20);
    assert_int_equal(f.c->nstreams, 1);
    assert_int_equal(f.p->queued, 2);
    for (int32_t id = 1; id <= 5; id += 2) {
        rest.len = 0;
        headers(&rest, id, true, (const char *const[]){":status", "200", NULL});
        h2fake_feed(&f, rest.b, rest.len);
        assert_true(h2fake_results[(id - 1) / 2].done);
        assert_int_equal(f.c->nstreams, id < 5 ? 1 : 0);
    }
    assert_int_equal(f.p->queued, 0);
    h2fake_close(&f);
    wire_free(&first);
}

/* A stream that shows no sign of life for its timeout fails; the connection goes on. */
static void test_timeout(void **state)
{
    (void)state;
    struct wire w;
    wire_init(&w);
    settings(&w, 100);
    struct h2fake f;
    h2fake_open(&f);
    h2fake_request(&f, GET("/slow"), 20, 1 << 20);
    h2fake_request(&f, GET("/never"), 0, 1 << 20);
    feed(&f, &w, 0);
    while (!h2fake_results[0].done)
        uv_run(&f.loop, UV_RUN_ONCE);
    assert_int_equal(h2fake_results[0].error, UV_ETIMEDOUT);
    assert_non_null(strstr(h2fake_results[0].errmsg, "read timed out"));
    assert_false(h2fake_results[1].done);
    assert_int_equal(f.c->nstreams, 1);
    h2fake_close(&f); /* fails the other */
    assert_true(h2fake_results[1].done);
    assert_int_equal(h2fake_results[1].error, CC_ECLOSED);
    wire_free(&w);
}

/* Request bodies go out as DATA (the write is dropped here; nothing may break), and a POST is
 * not retried on a stale connection. */
static void test_request_body(void **state)
{
    (void)state;
    struct h2fake f;
    h2fake_open(&f);
    static char req[100000];
    int n = snprintf(req, sizeof(req),
                     "POST /up HTTP/1.1\r\nHost: example.test\r\nContent-Length: 70000\r\n"
                     "Transfer-Encoding: identity\r\nTE: gzip\r\n\r\n");
    memset(req + n, 'b', 70000);
    req[n + 70000] = 0;
    h2fake_request(&f, req, 0, 1 << 20);
    assert_int_equal(f.c->nstreams, 1);
    assert_true(f.ex[0]->req_sent > 0); /* nghttp2 took the first window's worth */
    f.c->served = 1;
    h2fake_end(&f, UV_ECONNRESET);
    assert_true(h2fake_results[0].done);
    assert_int_equal(h2fake_results[0].error, UV_ECONNRESET);
    h2fake_close(&f);
}

/* The request as HTTP/2 headers: pseudo-headers first, Host as :authority, names in lower
 * case, no connection-specific headers, TE only as "trailers". */
static void test_request_headers(void **state)
{
    (void)state;
    struct h2fake f;
    h2fake_open(&f);
    struct http_exchange *ex = http_exchange_new(f.hv);
    static const char req[] = "PATCH /a?b=c HTTP/1.1\r\nHost: other.test:8080\r\n"
                              "Connection: keep-alive\r\nKeep-Alive: timeout=5\r\n"
                              "Transfer-Encoding: chunked\r\nUpgrade: h2c\r\n"
                              "Proxy-Connection: x\r\nTE: trailers\r\nX-Mixed-Case:  v 1 \r\n"
                              "Content-Length: 4\r\n\r\nbody";
    http_buf_append(&ex->req, req, sizeof(req) - 1);
    size_t n = h2_request_headers(f.hv, f.p, ex);
    assert_int_equal(ex->req_head, sizeof(req) - 1 - 4);
    static const char *const want[] = {
        ":method", "PATCH", ":scheme",  "http",         ":authority", "other.test:8080", ":path",
        "/a?b=c",  "te",    "trailers", "x-mixed-case", "v 1",        "content-length",  "4",
    };
    assert_int_equal(n, CC_ARRAY_LEN(want) / 2);
    for (size_t i = 0; i < n; i++) {
        const nghttp2_nv *nv = &f.hv->h2_nv[i];
        assert_int_equal(nv->namelen, strlen(want[2 * i]));
        assert_memory_equal(nv->name, want[2 * i], nv->namelen);
        assert_int_equal(nv->valuelen, strlen(want[2 * i + 1]));
        assert_memory_equal(nv->value, want[2 * i + 1], nv->valuelen);
    }
    /* no Host header: the pool's authority; TE other than trailers goes */
    ex->req.len = 0;
    ex->req_head = 0;
    http_buf_puts(&ex->req, "GET / HTTP/1.1\r\nTE: gzip\r\n\r\n");
    n = h2_request_headers(f.hv, f.p, ex);
    assert_int_equal(n, 4);
    assert_memory_equal(f.hv->h2_nv[2].value, "example.test", 12);
    /* not a request line */
    ex->req.len = 0;
    ex->req_head = 0;
    http_buf_puts(&ex->req, "garbage");
    assert_int_equal(h2_request_headers(f.hv, f.p, ex), 0);
    ex->on_done = NULL;
    http_exchange_complete(ex); /* back to the free list */
    h2fake_close(&f);
}

int main(void)
{
    srand(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_multiplexed_responses),
        cmocka_unit_test(test_reset_and_goaway),
        cmocka_unit_test(test_connection_errors),
        cmocka_unit_test(test_stream_error),
        cmocka_unit_test(test_body_cap),
        cmocka_unit_test(test_cancel_one_stream),
        cmocka_unit_test(test_concurrency_limit),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_request_body),
        cmocka_unit_test(test_request_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
