/* SPDX-License-Identifier: MIT */
/*
 * test_httpd.c: the HTTP server over real loopback sockets (keep-alive, pipelining, bodies,
 * caps, malformed input, HEAD, Connection: close, timeouts, deferred and streamed responses,
 * aborts, closing) and over socketless connections (every split of the input).
 */
#include "web/httpd.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "httpc.h"

/* ---- the test server ------------------------------------------------------------------------ */

static struct {
    struct cc_httpd_req *held; /* a request kept open by GET /hold or /sse */
    int aborts;                /* abort callbacks run */
    int held_respond_rv;       /* what answering the held request returned */
    int flood_rv;              /* the error that ended GET /flood's writes */
    int flood_writes;
    uv_timer_t flood_timer;
    bool closed; /* the server's close callback ran */
} g;

static void h_hello(struct cc_httpd_req *r, void *arg)
{
    (void)arg;
    cc_httpd_respond(r, 200, "text/plain", "hello", 5);
}

static void h_echo(struct cc_httpd_req *r, void *arg)
{
    (void)arg;
    size_t len;
    const char *b = cc_httpd_req_body(r, &len);
    const char *x = cc_httpd_req_header(r, "x-echo");
    if (x) cc_httpd_res_header(r, "X-Echo", x);
    cc_httpd_respond(r, 200, "text/plain", b, len);
}

static void h_param(struct cc_httpd_req *r, void *arg)
{
    (void)arg;
    const char *id = cc_httpd_req_param(r, "id");
    cc_httpd_respond(r, 200, "text/plain", id, strlen(id));
}

static void h_rest(struct cc_httpd_req *r, void *arg)
{
    (void)arg;
    const char *rest = cc_httpd_req_param(r, "*");
    cc_httpd_respond(r, 200, "text/plain", rest, strlen(rest));
}

static void h_big(struct cc_httpd_req *r, void *arg)
{
    (void)arg;
    static char body[8192];
    memset(body, 'b', sizeof(body));
    cc_httpd_respond(r, 200, "text/plain", body, sizeof(body));
}

static void h_query(struct cc_httpd_req *r, void *arg)
{
    (void)arg;
    char v[64];
    int n = cc_httpd_req_query_get(r, "a", v, sizeof(v));
    if (n < 0) snprintf(v, sizeof(v), "err %d", n);
    cc_httpd_respond(r, 200, "text/plain", v, strlen(v));
}

static void on_abort(struct cc_httpd_req *r, void *arg)
{
    (void)arg;
    CC_ASSERT(r == g.held);
    g.aborts++;
}

/* Kept open until the test answers it (g.held). */
static void h_hold(struct cc_httpd_req *r, void *arg)
{
    (void)arg;
    g.held = r;
    cc_httpd_req_on_abort(r, on_abort, NULL);
}

static void h_sse(struct cc_httpd_req *r, void *arg)
{
    (void)arg;
    g.held = r;
    cc_httpd_req_on_abort(r, on_abort, NULL);
    assert_int_equal(cc_httpd_sse_start(r), 0);
    assert_int_equal(cc_httpd_sse_start(r), CC_HTTPD_ESTATE);
}

static void flood_cb(uv_timer_t *t)
{
    (void)t;
    static char chunk[16384];
    for (;;) {
        int rv = cc_httpd_stream_write(g.held, chunk, sizeof(chunk));
        if (rv < 0) {
            g.flood_rv = rv;
            break;
        }
        g.flood_writes++;
    }
    cc_httpd_stream_end(g.held);
    g.held = NULL;
}

/* Streams until the client, which never reads, makes the server give up. */
static void h_flood(struct cc_httpd_req *r, void *arg)
{
    (void)arg;
    g.held = r;
    cc_httpd_stream_start(r, 200, "application/octet-stream");
    uv_timer_start(&g.flood_timer, flood_cb, 1, 0);
}

static void server_closed(void *arg)
{
    (void)arg;
    g.closed = true;
}

static struct cc_httpd *make_server(uv_loop_t *loop, const struct cc_httpd_opts *opts)
{
    memset(&g, 0, sizeof(g));
    struct cc_httpd *s = cc_httpd_new(loop, opts);
    assert_int_equal(cc_httpd_route(s, "GET", "/hello", h_hello, NULL), 0);
    assert_int_equal(cc_httpd_route(s, "POST", "/echo", h_echo, NULL), 0);
    assert_int_equal(cc_httpd_route(s, "GET", "/items/{id}", h_param, NULL), 0);
    assert_int_equal(cc_httpd_route(s, "GET", "/files/*", h_rest, NULL), 0);
    assert_int_equal(cc_httpd_route(s, "GET", "/q", h_query, NULL), 0);
    assert_int_equal(cc_httpd_route(s, "GET", "/big", h_big, NULL), 0);
    assert_int_equal(cc_httpd_route(s, "GET", "/hold", h_hold, NULL), 0);
    assert_int_equal(cc_httpd_route(s, "GET", "/sse", h_sse, NULL), 0);
    assert_int_equal(cc_httpd_route(s, "GET", "/flood", h_flood, NULL), 0);
    assert_int_equal(cc_httpd_listen(s, "127.0.0.1", 0, 0), 0);
    assert_true(cc_httpd_port(s) > 0);
    uv_timer_init(loop, &g.flood_timer);
    return s;
}

/* Closes the server and the clients, and checks that nothing is left on the loop. */
static void finish(uv_loop_t *loop, struct cc_httpd *s, struct tc **clients, size_t n)
{
    for (size_t i = 0; i < n; i++)
        tc_close(clients[i]);
    uv_close((uv_handle_t *)&g.flood_timer, NULL);
    cc_httpd_close(s, server_closed, NULL);
    TC_RUN_UNTIL(loop, g.closed);
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(loop), 0);
}

static struct cc_httpd_stats stats_of(struct cc_httpd *s)
{
    struct cc_httpd_stats st;
    cc_httpd_get_stats(s, &st);
    return st;
}

/* ---- tests over sockets --------------------------------------------------------------------- */

static void test_keep_alive(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct cc_httpd *s = make_server(&loop, NULL);
    struct tc a;
    tc_start(&a, &loop, cc_httpd_port(s), false);
    for (int i = 0; i < 3; i++) {
        tc_sends(&a, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
        TC_RUN_UNTIL(&loop, a.nresp == i + 1);
        assert_int_equal(a.resp[i].status, 200);
        assert_string_equal(a.resp[i].body, "hello");
        assert_string_equal(tc_header(&a, i, "content-length"), "5");
        assert_null(tc_header(&a, i, "connection"));
    }
    assert_false(a.eof);
    struct cc_httpd_stats st = stats_of(s);
    assert_int_equal(st.connections, 1);
    assert_int_equal(st.requests, 3);
    struct tc *all[] = {&a};
    finish(&loop, s, all, 1);
}

/* Three requests in one write, the first answered later: answers come in request order. */
static void test_pipelining_in_order(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct cc_httpd *s = make_server(&loop, NULL);
    struct tc a;
    tc_start(&a, &loop, cc_httpd_port(s), false);
    tc_sends(&a, "GET /hold HTTP/1.1\r\n\r\nGET /hello HTTP/1.1\r\n\r\n"
                 "GET /items/42 HTTP/1.1\r\n\r\n");
    TC_RUN_UNTIL(&loop, g.held != NULL);
    for (int i = 0; i < 20; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(a.nresp, 0); /* nothing overtakes the held request */
    assert_int_equal(cc_httpd_respond(g.held, 200, "text/plain", "held", 4), 0);
    TC_RUN_UNTIL(&loop, a.nresp == 3);
    assert_string_equal(a.resp[0].body, "held");
    assert_string_equal(a.resp[1].body, "hello");
    assert_string_equal(a.resp[2].body, "42");
    assert_int_equal(a.error, 0);
    struct tc *all[] = {&a};
    finish(&loop, s, all, 1);
}

/* Far more output than the high-water mark from one read: parsing pauses and resumes. */
static void test_pipelined_output_backlog(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct cc_httpd *s = make_server(&loop, NULL);
    struct tc a;
    tc_start(&a, &loop, cc_httpd_port(s), false);
    static char reqs[200 * 24];
    size_t n = 0;
    for (int i = 0; i < 200; i++)
        n += (size_t)snprintf(reqs + n, sizeof(reqs) - n, "GET /big HTTP/1.1\r\n\r\n");
    tc_send(&a, reqs, n);
    TC_RUN_UNTIL(&loop, a.nresp == 200);
    for (int i = 0; i < 200; i++)
        assert_int_equal(a.resp[i].body_len, 8192);
    assert_int_equal(a.error, 0);
    assert_int_equal(stats_of(s).requests, 200);
    struct tc *all[] = {&a};
    finish(&loop, s, all, 1);
}

static void test_chunked_request_body(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct cc_httpd *s = make_server(&loop, NULL);
    struct tc a;
    tc_start(&a, &loop, cc_httpd_port(s), false);
    tc_sends(&a,
             "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\nX-Echo: yes  \r\n\r\n5\r\nhel");
    for (int i = 0; i < 5; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    tc_sends(&a, "lo\r\n7;ext=1\r\n world!\r\n");
    for (int i = 0; i < 5; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    tc_sends(&a, "0\r\nX-Trailer: t\r\n\r\n");
    TC_RUN_UNTIL(&loop, a.nresp == 1);
    assert_int_equal(a.resp[0].status, 200);
    assert_string_equal(a.resp[0].body, "hello world!");
    assert_string_equal(tc_header(&a, 0, "x-echo"), "yes");
    struct tc *all[] = {&a};
    finish(&loop, s, all, 1);
}

static void test_body_cap(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct cc_httpd_opts o;
    cc_httpd_opts_defaults(&o);
    o.max_body_bytes = 1000;
    struct cc_httpd *s = make_server(&loop, &o);
    struct tc a, b, c;

    /* A declared length over the cap is refused before the body is read. */
    tc_start(&a, &loop, cc_httpd_port(s), false);
    tc_sends(&a, "POST /echo HTTP/1.1\r\nContent-Length: 1001\r\n\r\n");
    TC_RUN_UNTIL(&loop, a.nresp == 1 && a.eof);
    assert_int_equal(a.resp[0].status, 413);
    assert_string_equal(tc_header(&a, 0, "connection"), "close");

    /* A chunked body is counted as it comes. */
    static char chunk[600];
    memset(chunk, 'x', sizeof(chunk));
    tc_start(&b, &loop, cc_httpd_port(s), false);
    tc_sends(&b, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n258\r\n");
    tc_send(&b, chunk, sizeof(chunk));
    tc_sends(&b, "\r\n258\r\n");
    tc_send(&b, chunk, sizeof(chunk));
    tc_sends(&b, "\r\n0\r\n\r\n");
    TC_RUN_UNTIL(&loop, b.nresp == 1 && b.eof);
    assert_int_equal(b.resp[0].status, 413);

    /* Exactly at the cap is fine. */
    static char body[1000];
    memset(body, 'y', sizeof(body));
    tc_start(&c, &loop, cc_httpd_port(s), false);
    tc_sends(&c, "POST /echo HTTP/1.1\r\nContent-Length: 1000\r\n\r\n");
    tc_send(&c, body, sizeof(body));
    TC_RUN_UNTIL(&loop, c.nresp == 1);
    assert_int_equal(c.resp[0].status, 200);
    assert_int_equal(c.resp[0].body_len, 1000);
    assert_int_equal(stats_of(s).client_errors, 2);
    struct tc *all[] = {&a, &b, &c};
    finish(&loop, s, all, 3);
}

static void test_header_cap(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct cc_httpd_opts o;
    cc_httpd_opts_defaults(&o);
    o.max_header_bytes = 1024;
    o.max_headers = 10;
    struct cc_httpd *s = make_server(&loop, &o);
    struct tc a, b, c, d;
    char req[4096];

    /* One long header value. */
    tc_start(&a, &loop, cc_httpd_port(s), false);
    memset(req, 'v', sizeof(req));
    memcpy(req, "GET /hello HTTP/1.1\r\nX-Big: ", 28);
    memcpy(req + 2000, "\r\n\r\n", 5);
    tc_sends(&a, req);
    TC_RUN_UNTIL(&loop, a.nresp == 1 && a.eof);
    assert_int_equal(a.resp[0].status, 431);

    /* Too many fields. */
    tc_start(&b, &loop, cc_httpd_port(s), false);
    tc_sends(&b, "GET /hello HTTP/1.1\r\n");
    for (int i = 0; i < 11; i++)
        tc_sends(&b, "A: b\r\n");
    tc_sends(&b, "\r\n");
    TC_RUN_UNTIL(&loop, b.nresp == 1 && b.eof);
    assert_int_equal(b.resp[0].status, 431);

    /* Bytes the parser skips without a callback still count (a flood of blank lines). */
    tc_start(&c, &loop, cc_httpd_port(s), false);
    for (int i = 0; i < 2000; i++)
        tc_sends(&c, "\r\n");
    TC_RUN_UNTIL(&loop, c.eof);
    assert_int_equal(c.nresp, 1);
    assert_int_equal(c.resp[0].status, 431);

    /* Ten fields, under the size: fine. */
    tc_start(&d, &loop, cc_httpd_port(s), false);
    tc_sends(&d, "GET /hello HTTP/1.1\r\n");
    for (int i = 0; i < 10; i++)
        tc_sends(&d, "A: b\r\n");
    tc_sends(&d, "\r\n");
    TC_RUN_UNTIL(&loop, d.nresp == 1);
    assert_int_equal(d.resp[0].status, 200);
    struct tc *all[] = {&a, &b, &c, &d};
    finish(&loop, s, all, 4);
}

static void test_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "GARBAGE\r\n\r\n",
        "GET / HTTP/1.1\nHost: bare-lf\n\n",
        "GET / HTTP/9.9\r\n\r\n",
        "POST /echo HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        "POST /echo HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "GET /hello HTTP/1.1\r\nBad Header: x\r\n\r\n",
        "\x00\x01\x02\x03\r\n\r\n",
        "GET /hello HTTP/1.1\r\nHost: a\r\n\r\n\x16\x03\x01 TLS",
    };
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct cc_httpd *s = make_server(&loop, NULL);
    struct tc c[CC_ARRAY_LEN(bad)];
    struct tc *all[CC_ARRAY_LEN(bad) + 1];
    for (size_t i = 0; i < CC_ARRAY_LEN(bad); i++) {
        tc_start(&c[i], &loop, cc_httpd_port(s), false);
        tc_send(&c[i], bad[i], i == 7 ? 8 : strlen(bad[i]));
        TC_RUN_UNTIL(&loop, c[i].eof);
        /* The last one is a good request followed by garbage. */
        int last = c[i].nresp - 1;
        assert_true(last >= 0);
        assert_int_equal(c[i].resp[last].status, 400);
        assert_string_equal(tc_header(&c[i], last, "connection"), "close");
        all[i] = &c[i];
    }
    assert_int_equal(stats_of(s).client_errors, CC_ARRAY_LEN(bad));

    /* The server is unharmed. */
    struct tc ok;
    tc_start(&ok, &loop, cc_httpd_port(s), false);
    tc_sends(&ok, "GET /hello HTTP/1.1\r\n\r\n");
    TC_RUN_UNTIL(&loop, ok.nresp == 1);
    assert_int_equal(ok.resp[0].status, 200);
    all[CC_ARRAY_LEN(bad)] = &ok;
    finish(&loop, s, all, CC_ARRAY_LEN(bad) + 1);
}

static void test_head_and_errors(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct cc_httpd *s = make_server(&loop, NULL);
    struct tc a;
    tc_start(&a, &loop, cc_httpd_port(s), false);
    a.head[0] = true;
    tc_sends(&a, "HEAD /hello HTTP/1.1\r\n\r\nGET /hello HTTP/1.1\r\n\r\n"
                 "DELETE /hello HTTP/1.1\r\n\r\nGET /nowhere HTTP/1.1\r\n\r\n"
                 "GET /files/a/b.txt HTTP/1.1\r\n\r\nGET /q?b=1&a=x%20y+z HTTP/1.1\r\n\r\n"
                 "GET /items/ HTTP/1.1\r\n\r\n");
    TC_RUN_UNTIL(&loop, a.nresp == 7);
    assert_int_equal(a.error, 0);
    assert_int_equal(a.resp[0].status, 200);
    assert_string_equal(tc_header(&a, 0, "content-length"), "5");
    assert_int_equal(a.resp[0].body_len, 0);
    assert_string_equal(a.resp[1].body, "hello"); /* parsed right after the body-less HEAD */
    assert_int_equal(a.resp[2].status, 405);
    assert_string_equal(tc_header(&a, 2, "allow"), "GET, HEAD");
    assert_int_equal(a.resp[3].status, 404);
    assert_string_equal(a.resp[4].body, "a/b.txt");
    assert_string_equal(a.resp[5].body, "x y z");
    assert_int_equal(a.resp[6].status, 404); /* a parameter never matches an empty segment */
    /* No stray bytes: the HEAD response carried no body. */
    assert_non_null(strstr(a.raw, "Content-Length: 5\r\n\r\nHTTP/1.1 200 OK"));

    /* A long parameter is copied within the growing arena (found by the fuzzer). */
    char req[1200], id[1001];
    memset(id, 'i', 1000);
    id[1000] = '\0';
    snprintf(req, sizeof(req), "GET /items/%s HTTP/1.1\r\n\r\n", id);
    tc_sends(&a, req);
    TC_RUN_UNTIL(&loop, a.nresp == 8);
    assert_string_equal(a.resp[7].body, id);

    /* The absolute form of the request target. */
    tc_sends(&a, "GET http://example.com/items/abs?x=1 HTTP/1.1\r\n\r\n");
    TC_RUN_UNTIL(&loop, a.nresp == 9);
    assert_string_equal(a.resp[8].body, "abs");
    struct tc *all[] = {&a};
    finish(&loop, s, all, 1);
}

static void test_connection_close(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct cc_httpd *s = make_server(&loop, NULL);
    struct tc a, b, c;

    /* Connection: close is answered, then the connection ends; pipelined extras are dropped. */
    tc_start(&a, &loop, cc_httpd_port(s), false);
    tc_sends(&a, "GET /hello HTTP/1.1\r\nConnection: close\r\n\r\nGET /hello HTTP/1.1\r\n\r\n");
    TC_RUN_UNTIL(&loop, a.eof);
    assert_int_equal(a.nresp, 1);
    assert_string_equal(tc_header(&a, 0, "connection"), "close");

    /* HTTP/1.0 closes unless it asks for keep-alive. */
    tc_start(&b, &loop, cc_httpd_port(s), false);
    tc_sends(&b, "GET /hello HTTP/1.0\r\n\r\n");
    TC_RUN_UNTIL(&loop, b.eof);
    assert_int_equal(b.nresp, 1);
    assert_string_equal(tc_header(&b, 0, "connection"), "close");

    tc_start(&c, &loop, cc_httpd_port(s), false);
    tc_sends(&c, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    TC_RUN_UNTIL(&loop, c.nresp == 1);
    assert_string_equal(tc_header(&c, 0, "connection"), "keep-alive");
    tc_sends(&c, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    TC_RUN_UNTIL(&loop, c.nresp == 2);
    assert_false(c.eof);
    struct tc *all[] = {&a, &b, &c};
    finish(&loop, s, all, 3);
}

static void test_idle_timeout(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct cc_httpd_opts o;
    cc_httpd_opts_defaults(&o);
    o.idle_timeout_ms = 50;
    struct cc_httpd *s = make_server(&loop, &o);
    struct tc a, b, c;

    tc_start(&a, &loop, cc_httpd_port(s), false); /* says nothing */
    tc_start(&b, &loop, cc_httpd_port(s), false); /* starts a head and stalls */
    tc_sends(&b, "GET /hello HT");
    tc_start(&c, &loop, cc_httpd_port(s), false); /* a request, then idle keep-alive */
    tc_sends(&c, "GET /hello HTTP/1.1\r\n\r\n");
    TC_RUN_UNTIL(&loop, a.eof && b.eof && c.eof);
    assert_int_equal(a.nresp, 0);
    assert_int_equal(b.nresp, 0);
    assert_int_equal(c.nresp, 1);
    assert_int_equal(stats_of(s).timeouts, 3);
    struct tc *all[] = {&a, &b, &c};
    finish(&loop, s, all, 3);
}

/* A request held by its handler does not stop other connections: counts, not times. */
static void test_deferred_does_not_block(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct cc_httpd *s = make_server(&loop, NULL);
    struct tc a, b;
    tc_start(&a, &loop, cc_httpd_port(s), false);
    tc_start(&b, &loop, cc_httpd_port(s), false);
    tc_sends(&a, "GET /hold HTTP/1.1\r\n\r\n");
    TC_RUN_UNTIL(&loop, g.held != NULL);
    for (int i = 0; i < 10; i++) {
        tc_sends(&b, "GET /hello HTTP/1.1\r\n\r\n");
        TC_RUN_UNTIL(&loop, b.nresp == i + 1);
    }
    assert_int_equal(a.nresp, 0);
    struct cc_httpd_req *r = g.held;
    assert_string_equal(cc_httpd_req_method(r), "GET");
    assert_string_equal(cc_httpd_req_path(r), "/hold");
    assert_int_equal(cc_httpd_req_version(r), 11);
    assert_true(cc_httpd_req_keep_alive(r));
    assert_int_equal(cc_httpd_respond(r, 202, NULL, "later", 5), 0);
    TC_RUN_UNTIL(&loop, a.nresp == 1);
    assert_int_equal(a.resp[0].status, 202);
    assert_string_equal(a.resp[0].body, "later");
    /* The connection goes on after the deferred answer. */
    tc_sends(&a, "GET /hello HTTP/1.1\r\n\r\n");
    TC_RUN_UNTIL(&loop, a.nresp == 2);
    struct tc *all[] = {&a, &b};
    finish(&loop, s, all, 2);
}

static void test_sse_stream(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct cc_httpd *s = make_server(&loop, NULL);
    struct tc a, b;
    tc_start(&a, &loop, cc_httpd_port(s), false);
    tc_start(&b, &loop, cc_httpd_port(s), false);
    tc_sends(&a, "GET /sse HTTP/1.1\r\n\r\n");
    TC_RUN_UNTIL(&loop, g.held != NULL && strstr(a.raw ? a.raw : "", "\r\n\r\n"));
    assert_non_null(strstr(a.raw, "Content-Type: text/event-stream\r\n"));
    assert_non_null(strstr(a.raw, "Transfer-Encoding: chunked\r\n"));
    assert_non_null(strstr(a.raw, "Cache-Control: no-cache\r\n"));
    for (int i = 0; i < 3; i++) {
        char data[32], want[48];
        snprintf(data, sizeof(data), "tick %d\nline two", i);
        snprintf(want, sizeof(want), "data: tick %d\ndata: line two\n\n", i);
        assert_int_equal(cc_httpd_sse_send(g.held, i == 1 ? "stats" : NULL, data), 0);
        TC_RUN_UNTIL(&loop, tc_cur(&a)->body && strstr(tc_cur(&a)->body, want));
        /* Another client is served while the stream is open. */
        tc_sends(&b, "GET /hello HTTP/1.1\r\n\r\n");
        TC_RUN_UNTIL(&loop, b.nresp == i + 1);
        assert_int_equal(a.nresp, 0);
    }
    assert_non_null(strstr(tc_cur(&a)->body, "event: stats\ndata: tick 1\n"));
    assert_int_equal(cc_httpd_sse_send(g.held, "bad\nname", "x"), UV_EINVAL);
    assert_int_equal(cc_httpd_respond(g.held, 200, NULL, NULL, 0), CC_HTTPD_ESTATE);
    assert_int_equal(cc_httpd_stream_end(g.held), 0);
    TC_RUN_UNTIL(&loop, a.nresp == 1);
    assert_int_equal(a.resp[0].status, 200);
    assert_int_equal(a.error, 0);
    assert_false(a.eof);
    struct tc *all[] = {&a, &b};
    finish(&loop, s, all, 2);
}

/* HTTP/1.0 has no chunked coding: the stream is the rest of the connection. */
static void test_stream_http10(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct cc_httpd *s = make_server(&loop, NULL);
    struct tc a;
    tc_start(&a, &loop, cc_httpd_port(s), false);
    tc_sends(&a, "GET /sse HTTP/1.0\r\n\r\n");
    TC_RUN_UNTIL(&loop, g.held != NULL);
    assert_int_equal(cc_httpd_sse_send(g.held, NULL, "one"), 0);
    assert_int_equal(cc_httpd_stream_end(g.held), 0);
    TC_RUN_UNTIL(&loop, a.eof);
    assert_int_equal(a.nresp, 1);
    assert_string_equal(a.resp[0].body, "data: one\n\n");
    assert_null(strstr(a.raw, "chunked"));
    struct tc *all[] = {&a};
    finish(&loop, s, all, 1);
}

static void test_client_abort(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct cc_httpd *s = make_server(&loop, NULL);
    struct tc a, b;

    /* A held request whose client leaves: the abort callback, then the late answer releases. */
    tc_start(&a, &loop, cc_httpd_port(s), false);
    tc_sends(&a, "GET /hold HTTP/1.1\r\n\r\n");
    TC_RUN_UNTIL(&loop, g.held != NULL);
    tc_close(&a);
    TC_RUN_UNTIL(&loop, g.aborts == 1);
    assert_true(cc_httpd_req_aborted(g.held));
    assert_int_equal(cc_httpd_respond(g.held, 200, NULL, "x", 1), CC_HTTPD_ECLOSED);
    g.held = NULL;

    /* A stream whose client leaves: writes fail, ending releases. */
    tc_start(&b, &loop, cc_httpd_port(s), false);
    tc_sends(&b, "GET /sse HTTP/1.1\r\n\r\n");
    TC_RUN_UNTIL(&loop, g.held != NULL);
    tc_close(&b);
    TC_RUN_UNTIL(&loop, g.aborts == 2);
    assert_int_equal(cc_httpd_sse_send(g.held, NULL, "late"), CC_HTTPD_ECLOSED);
    assert_int_equal(cc_httpd_stream_end(g.held), CC_HTTPD_ECLOSED);
    assert_int_equal(stats_of(s).aborted, 2);
    TC_RUN_UNTIL(&loop, stats_of(s).open == 0);
    finish(&loop, s, NULL, 0);
}

/* A client that never reads cannot make the server queue without bound. */
static void test_stream_output_cap(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct cc_httpd_opts o;
    cc_httpd_opts_defaults(&o);
    o.max_output_bytes = 256 * 1024;
    struct cc_httpd *s = make_server(&loop, &o);
    struct tc a;
    tc_start(&a, &loop, cc_httpd_port(s), true);
    TC_RUN_UNTIL(&loop, a.connected);
    tc_sends(&a, "GET /flood HTTP/1.1\r\n\r\n");
    TC_RUN_UNTIL(&loop, g.flood_rv != 0);
    assert_int_equal(g.flood_rv, CC_HTTPD_EFULL);
    assert_true(g.flood_writes > 0);
    TC_RUN_UNTIL(&loop, stats_of(s).open == 0);
    assert_int_equal(stats_of(s).aborted, 1);
    struct tc *all[] = {&a};
    finish(&loop, s, all, 1);
}

/* Closing the server aborts the held request; the server is freed once it is answered. */
static void close_answers(struct cc_httpd_req *r, void *arg)
{
    (void)arg;
    g.aborts++;
    g.held_respond_rv = cc_httpd_respond(r, 200, NULL, NULL, 0);
    g.held = NULL;
}

static void test_close_with_pending(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct cc_httpd *s = make_server(&loop, NULL);
    struct tc a, b;
    tc_start(&a, &loop, cc_httpd_port(s), false);
    tc_start(&b, &loop, cc_httpd_port(s), false);
    tc_sends(&a, "GET /hold HTTP/1.1\r\n\r\n");
    tc_sends(&b, "GET /hello HTTP/1.1\r\n\r\n");
    TC_RUN_UNTIL(&loop, g.held != NULL && b.nresp == 1);
    cc_httpd_req_on_abort(g.held, close_answers, NULL);
    uv_close((uv_handle_t *)&g.flood_timer, NULL);
    cc_httpd_close(s, server_closed, NULL);
    TC_RUN_UNTIL(&loop, g.closed && a.eof && b.eof);
    assert_int_equal(g.aborts, 1);
    assert_int_equal(g.held_respond_rv, CC_HTTPD_ECLOSED);
    tc_close(&a);
    tc_close(&b);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_expect_continue(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct cc_httpd *s = make_server(&loop, NULL);
    struct tc a;
    tc_start(&a, &loop, cc_httpd_port(s), false);
    tc_sends(&a, "POST /echo HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
    TC_RUN_UNTIL(&loop, a.nresp == 1);
    assert_int_equal(a.resp[0].status, 100);
    tc_sends(&a, "body");
    TC_RUN_UNTIL(&loop, a.nresp == 2);
    assert_int_equal(a.resp[1].status, 200);
    assert_string_equal(a.resp[1].body, "body");
    struct tc *all[] = {&a};
    finish(&loop, s, all, 1);
}

static void test_connection_limit(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct cc_httpd_opts o;
    cc_httpd_opts_defaults(&o);
    o.max_connections = 2;
    struct cc_httpd *s = make_server(&loop, &o);
    struct tc c[3];
    for (int i = 0; i < 3; i++) {
        tc_start(&c[i], &loop, cc_httpd_port(s), false);
        TC_RUN_UNTIL(&loop, stats_of(s).connections == (uint64_t)i + 1);
    }
    TC_RUN_UNTIL(&loop, c[2].eof);
    assert_int_equal(stats_of(s).refused, 1);
    for (int i = 0; i < 2; i++) {
        tc_sends(&c[i], "GET /hello HTTP/1.1\r\n\r\n");
        TC_RUN_UNTIL(&loop, c[i].nresp == 1);
    }
    struct tc *all[] = {&c[0], &c[1], &c[2]};
    finish(&loop, s, all, 3);
}

/* ---- tests without sockets ------------------------------------------------------------------ */

/* Removes "Date: ...\r\n" lines, the only part of the output that depends on the clock. */
static size_t strip_dates(char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (n - i > 6 && memcmp(s + i, "Date: ", 6) == 0) {
            while (i < n && s[i] != '\n')
                i++;
            i++;
            continue;
        }
        s[o++] = s[i++];
    }
    return o;
}

static char *run_split(struct cc_httpd *s, const char *in, size_t n, size_t split, size_t *outlen)
{
    struct cc_httpd_conn *c = cc_httpd_test_conn_new(s);
    if (split > 0) cc_httpd_test_conn_feed(c, in, split);
    if (split < n) cc_httpd_test_conn_feed(c, in + split, n - split);
    size_t len;
    const char *out = cc_httpd_test_conn_output(c, &len);
    char *copy = malloc(len + 1);
    memcpy(copy, out, len);
    *outlen = strip_dates(copy, len);
    cc_httpd_test_conn_free(c);
    return copy;
}

/* Every split of a pipelined stream in two gives the same output as the stream in one piece. */
static void test_every_split(void **state)
{
    (void)state;
    static const char in[] = "GET /hello HTTP/1.1\r\nHost: a\r\n\r\n"
                             "POST /echo HTTP/1.1\r\nContent-Length: 5\r\nX-Echo: e\r\n\r\nabcde"
                             "POST /echo HTTP/1.1\r\nTransfer-Encoding: "
                             "chunked\r\n\r\n3\r\nxyz\r\n2;a=b\r\nuv\r\n0\r\n\r\n"
                             "HEAD /items/9 HTTP/1.1\r\n\r\n"
                             "GET /q?a=%41%42 HTTP/1.1\r\nConnection: close\r\n\r\n"
                             "GET /hello HTTP/1.1\r\n\r\n";
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct cc_httpd *s = make_server(&loop, NULL);
    size_t n = sizeof(in) - 1, want_len;
    char *want = run_split(s, in, n, n, &want_len);
    struct tc p;
    tc_init(&p);
    p.head[3] = true;
    tc_parse_bytes(&p, want, want_len);
    assert_int_equal(p.error, 0);
    assert_int_equal(p.nresp, 5); /* the request after Connection: close is not answered */
    assert_string_equal(p.resp[1].body, "abcde");
    assert_string_equal(p.resp[2].body, "xyzuv");
    assert_string_equal(p.resp[4].body, "AB");
    tc_release(&p);
    for (size_t split = 0; split < n; split++) {
        size_t len;
        char *got = run_split(s, in, n, split, &len);
        assert_int_equal(len, want_len);
        assert_memory_equal(got, want, len);
        free(got);
    }
    /* And one byte at a time. */
    struct cc_httpd_conn *c = cc_httpd_test_conn_new(s);
    for (size_t i = 0; i < n; i++)
        cc_httpd_test_conn_feed(c, in + i, 1);
    size_t len;
    const char *out = cc_httpd_test_conn_output(c, &len);
    char *copy = malloc(len);
    memcpy(copy, out, len);
    len = strip_dates(copy, len);
    assert_int_equal(len, want_len);
    assert_memory_equal(copy, want, len);
    free(copy);
    cc_httpd_test_conn_free(c);
    free(want);
    finish(&loop, s, NULL, 0);
}

static void test_form_and_patterns(void **state)
{
    (void)state;
    char out[16];
    static const char form[] = "a=1&b=x%2By+z&empty=&flag&per%5Fpage=7&bad=%zz";
    size_t n = sizeof(form) - 1;
    assert_int_equal(cc_httpd_form_get(form, n, "a", out, sizeof(out)), 1);
    assert_string_equal(out, "1");
    assert_int_equal(cc_httpd_form_get(form, n, "b", out, sizeof(out)), 5);
    assert_string_equal(out, "x+y z");
    assert_int_equal(cc_httpd_form_get(form, n, "empty", out, sizeof(out)), 0);
    assert_int_equal(cc_httpd_form_get(form, n, "flag", out, sizeof(out)), 0);
    assert_int_equal(cc_httpd_form_get(form, n, "per_page", out, sizeof(out)), 1);
    assert_int_equal(cc_httpd_form_get(form, n, "bad", out, sizeof(out)), UV_EINVAL);
    assert_int_equal(cc_httpd_form_get(form, n, "missing", out, sizeof(out)), UV_ENOENT);
    assert_int_equal(cc_httpd_form_get(form, n, "b", out, 3), UV_ENOBUFS);
    assert_int_equal(cc_httpd_url_decode("%4", 2, false, out, sizeof(out)), UV_EINVAL);
    assert_int_equal(cc_httpd_url_decode("a+b", 3, false, out, sizeof(out)), 3);
    assert_string_equal(out, "a+b");

    uv_loop_t loop;
    uv_loop_init(&loop);
    struct cc_httpd *s = cc_httpd_new(&loop, NULL);
    static const char *const bad[] = {
        "",    "x", "/a/{", "/a/{}", "/a/b{c}", "/a/{c}d", "/a/*/b", "/a*", "/{a}/{b}/{c}/{d}/{e}",
        "/a/}"};
    for (size_t i = 0; i < CC_ARRAY_LEN(bad); i++)
        assert_int_equal(cc_httpd_route(s, "GET", bad[i], h_hello, NULL), UV_EINVAL);
    assert_int_equal(cc_httpd_route(s, "FETCH", "/", h_hello, NULL), UV_EINVAL);
    assert_int_equal(cc_httpd_route(s, NULL, "/{a}/x/{b}/*", h_hello, NULL), 0);
    assert_int_equal(cc_httpd_listen(s, "not-an-ip", 0, 0), UV_EINVAL);
    assert_int_equal(cc_httpd_port(s), -1);
    cc_httpd_close(s, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_pipelining_in_order),
        cmocka_unit_test(test_pipelined_output_backlog),
        cmocka_unit_test(test_chunked_request_body),
        cmocka_unit_test(test_body_cap),
        cmocka_unit_test(test_header_cap),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_head_and_errors),
        cmocka_unit_test(test_connection_close),
        cmocka_unit_test(test_idle_timeout),
        cmocka_unit_test(test_deferred_does_not_block),
        cmocka_unit_test(test_sse_stream),
        cmocka_unit_test(test_stream_http10),
        cmocka_unit_test(test_client_abort),
        cmocka_unit_test(test_stream_output_cap),
        cmocka_unit_test(test_close_with_pending),
        cmocka_unit_test(test_expect_continue),
        cmocka_unit_test(test_connection_limit),
        cmocka_unit_test(test_every_split),
        cmocka_unit_test(test_form_and_patterns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
