/* SPDX-License-Identifier: MIT */
/*
 * fuzz_httpd_request.c: arbitrary bytes as the input of one server connection, fed in pieces
 * whose size the first byte picks, through parsing, routing, the request accessors, deferred
 * answers (paused parsing and the stash) and streamed responses.
 */
#include "web/httpd.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uv_loop_t loop;
static struct cc_httpd *srv;
static struct cc_httpd_req *held;

/* Reads everything a handler may read, so the fuzzer reaches the accessors. */
static size_t touch(struct cc_httpd_req *r)
{
    size_t sum = strlen(cc_httpd_req_method(r)) + strlen(cc_httpd_req_path(r)) +
                 strlen(cc_httpd_req_query(r)) + (size_t)cc_httpd_req_version(r);
    const char *name, *value;
    for (size_t i = 0; cc_httpd_req_header_at(r, i, &name, &value); i++)
        sum += strlen(name) + strlen(value);
    const char *h = cc_httpd_req_header(r, "content-type");
    if (h) sum += strlen(h);
    size_t len;
    const char *body = cc_httpd_req_body(r, &len);
    char out[64];
    int n = cc_httpd_form_get(body, len, "a", out, sizeof(out));
    if (n > 0) sum += (size_t)n;
    n = cc_httpd_req_query_get(r, "q", out, sizeof(out));
    if (n > 0) sum += (size_t)n;
    return sum;
}

static void h_echo(struct cc_httpd_req *r, void *arg)
{
    (void)arg;
    size_t len;
    const char *body = cc_httpd_req_body(r, &len);
    const char *ua = cc_httpd_req_header(r, "user-agent");
    if (ua) cc_httpd_res_header(r, "X-UA", ua); /* refused when not a valid value: fine */
    cc_httpd_respond(r, touch(r) % 2 ? 200 : 204, "text/plain", body, len);
}

static void h_param(struct cc_httpd_req *r, void *arg)
{
    (void)arg;
    const char *id = cc_httpd_req_param(r, "id");
    const char *rest = cc_httpd_req_param(r, "*");
    json_t *j = json_object();
    json_object_set_new(j, "id", json_string(id ? id : "")); /* NULL if not UTF-8: skipped */
    json_object_set_new(j, "rest", json_string(rest ? rest : ""));
    json_object_set_new(j, "n", json_integer((json_int_t)touch(r)));
    cc_httpd_respond_json(r, 200, j);
    json_decref(j);
}

static void h_stream(struct cc_httpd_req *r, void *arg)
{
    (void)arg;
    size_t len;
    const char *body = cc_httpd_req_body(r, &len);
    cc_httpd_sse_start(r);
    cc_httpd_sse_send(r, cc_httpd_req_header(r, "x-event"), body);
    cc_httpd_stream_write(r, body, len);
    cc_httpd_stream_end(r);
}

static void h_hold(struct cc_httpd_req *r, void *arg)
{
    (void)arg;
    touch(r);
    held = r;
}

static void setup(void)
{
    struct cc_httpd_opts o;
    cc_httpd_opts_defaults(&o);
    o.max_header_bytes = 2048; /* small caps, so inputs reach them */
    o.max_headers = 16;
    o.max_body_bytes = 4096;
    o.max_output_bytes = 65536;
    uv_loop_init(&loop);
    srv = cc_httpd_new(&loop, &o);
    cc_httpd_route(srv, "POST", "/", h_echo, NULL);
    cc_httpd_route(srv, "GET", "/", h_echo, NULL);
    cc_httpd_route(srv, NULL, "/items/{id}", h_param, NULL);
    cc_httpd_route(srv, "GET", "/files/*", h_param, NULL);
    cc_httpd_route(srv, NULL, "/s", h_stream, NULL);
    cc_httpd_route(srv, NULL, "/h", h_hold, NULL);
}

/* Answers a held request and lets the loop resume the connection's parsing. */
static void release_held(void)
{
    while (held) {
        struct cc_httpd_req *r = held;
        held = NULL;
        cc_httpd_respond(r, 200, NULL, "late", 4);
        uv_run(&loop, UV_RUN_NOWAIT);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!srv) setup();
    if (size == 0) return 0;
    size_t piece = data[0] ? data[0] : size; /* 0: all at once */
    data++;
    size--;

    struct cc_httpd_conn *c = cc_httpd_test_conn_new(srv);
    for (size_t off = 0; off < size; off += piece) {
        size_t n = size - off < piece ? size - off : piece;
        if (!cc_httpd_test_conn_feed(c, data + off, n)) break;
        uv_run(&loop, UV_RUN_NOWAIT);     /* resumes a connection paused for its output */
        if (off % 3 == 0) release_held(); /* sometimes answer before more input arrives */
    }
    release_held();
    size_t out_len;
    cc_httpd_test_conn_output(c, &out_len);
    cc_httpd_test_conn_free(c);
    held = NULL; /* an aborted request was released by the free */
    uv_run(&loop, UV_RUN_NOWAIT);
    return 0;
}
