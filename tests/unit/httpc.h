/* SPDX-License-Identifier: MIT */
/*
 * httpc.h: a small HTTP/1.1 test client on a libuv loop, for the httpd and shop tests.
 *
 * It sends raw bytes (so tests can pipeline, split and corrupt requests) and parses what
 * comes back with llhttp into a list of responses. Everything is driven by running the loop
 * until a condition holds (TC_RUN_UNTIL), with a guard timer so a broken server fails the
 * test instead of hanging it. The same response parser also reads the output of the httpd's
 * socketless test connections (tc_parse_bytes).
 */
#ifndef CC_TEST_HTTPC_H
#define CC_TEST_HTTPC_H

#include "core/common.h"

#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#define TC_MAX_RESP 256
#define TC_GUARD_MS 10000

struct tc_resp {
    int status;
    char headers[512]; /* "name: value\n" lines, names lower-cased */
    size_t headers_len;
    char *body;
    size_t body_len;
};

struct tc {
    uv_loop_t *loop;
    uv_tcp_t tcp;
    uv_connect_t creq;
    llhttp_t parser;
    llhttp_settings_t settings;
    bool connected, eof, closed;
    int error;
    bool head[TC_MAX_RESP]; /* the i-th response answers a HEAD request */
    int nresp;              /* complete responses */
    struct tc_resp resp[TC_MAX_RESP];
    char field[64];
    size_t field_len;
    bool in_value;
    char *raw; /* every byte received */
    size_t raw_len;
};

static inline struct tc_resp *tc_cur(struct tc *c)
{
    return &c->resp[c->nresp < TC_MAX_RESP ? c->nresp : TC_MAX_RESP - 1];
}

static inline void tc_hdr_add(struct tc *c, const char *s, size_t n, bool lower)
{
    struct tc_resp *r = tc_cur(c);
    for (size_t i = 0; i < n && r->headers_len + 1 < sizeof(r->headers); i++) {
        char ch = s[i];
        if (lower && ch >= 'A' && ch <= 'Z') ch = (char)(ch - 'A' + 'a');
        r->headers[r->headers_len++] = ch;
    }
    r->headers[r->headers_len] = '\0';
}

static inline int tc_on_message_begin(llhttp_t *p)
{
    struct tc *c = p->data;
    struct tc_resp *r = tc_cur(c);
    free(r->body);
    memset(r, 0, sizeof(*r));
    c->in_value = false;
    return 0;
}

static inline int tc_on_header_field(llhttp_t *p, const char *at, size_t n)
{
    struct tc *c = p->data;
    if (c->in_value) tc_hdr_add(c, "\n", 1, false);
    c->in_value = false;
    tc_hdr_add(c, at, n, true);
    return 0;
}

static inline int tc_on_header_value(llhttp_t *p, const char *at, size_t n)
{
    struct tc *c = p->data;
    if (!c->in_value) tc_hdr_add(c, ": ", 2, false);
    c->in_value = true;
    tc_hdr_add(c, at, n, false);
    return 0;
}

static inline int tc_on_headers_complete(llhttp_t *p)
{
    struct tc *c = p->data;
    if (c->in_value) tc_hdr_add(c, "\n", 1, false);
    c->in_value = false;
    tc_cur(c)->status = p->status_code;
    /* A HEAD response has no body whatever its headers say; 1xx neither. */
    if (p->status_code >= 100 && p->status_code < 200) return 1;
    return c->nresp < TC_MAX_RESP && c->head[c->nresp] ? 1 : 0;
}

static inline int tc_on_body(llhttp_t *p, const char *at, size_t n)
{
    struct tc *c = p->data;
    struct tc_resp *r = tc_cur(c);
    r->body = realloc(r->body, r->body_len + n + 1);
    memcpy(r->body + r->body_len, at, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
    return 0;
}

static inline int tc_on_message_complete(llhttp_t *p)
{
    struct tc *c = p->data;
    struct tc_resp *r = tc_cur(c);
    if (!r->body) r->body = calloc(1, 1);
    if (c->nresp < TC_MAX_RESP) c->nresp++;
    return 0;
}

/* Prepares |c| to parse responses (no socket). */
static inline void tc_init(struct tc *c)
{
    memset(c, 0, sizeof(*c));
    llhttp_settings_init(&c->settings);
    c->settings.on_message_begin = tc_on_message_begin;
    c->settings.on_header_field = tc_on_header_field;
    c->settings.on_header_value = tc_on_header_value;
    c->settings.on_headers_complete = tc_on_headers_complete;
    c->settings.on_body = tc_on_body;
    c->settings.on_message_complete = tc_on_message_complete;
    llhttp_init(&c->parser, HTTP_RESPONSE, &c->settings);
    c->parser.data = c;
}

/* Feeds received bytes; sets |error| if they are not a valid response stream. */
static inline void tc_parse_bytes(struct tc *c, const char *data, size_t n)
{
    c->raw = realloc(c->raw, c->raw_len + n + 1);
    memcpy(c->raw + c->raw_len, data, n);
    c->raw_len += n;
    c->raw[c->raw_len] = '\0';
    if (c->error) return;
    enum llhttp_errno e = llhttp_execute(&c->parser, data, n);
    if (e != HPE_OK) c->error = (int)e;
}

static inline void tc_release(struct tc *c)
{
    for (int i = 0; i < TC_MAX_RESP; i++)
        free(c->resp[i].body);
    free(c->raw);
    memset(c->resp, 0, sizeof(c->resp));
    c->raw = NULL;
}

/* The value of header |name| (lower case) in response |i|, copied to a static buffer. */
static inline const char *tc_header(struct tc *c, int i, const char *name)
{
    static char value[512];
    const char *h = c->resp[i].headers;
    size_t n = strlen(name);
    while (*h) {
        const char *eol = strchr(h, '\n');
        size_t len = eol ? (size_t)(eol - h) : strlen(h);
        if (len > n + 1 && strncmp(h, name, n) == 0 && h[n] == ':') {
            size_t vlen = len - n - 2;
            if (vlen >= sizeof(value)) vlen = sizeof(value) - 1;
            memcpy(value, h + n + 2, vlen);
            value[vlen] = '\0';
            return value;
        }
        if (!eol) break;
        h = eol + 1;
    }
    return NULL;
}

static inline void tc_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)h;
    static char buf[65536];
    (void)suggested;
    *b = uv_buf_init(buf, sizeof(buf));
}

static inline void tc_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct tc *c = s->data;
    if (n > 0) {
        tc_parse_bytes(c, b->base, (size_t)n);
    } else if (n < 0) {
        c->eof = true;
        if (n != UV_EOF) c->error = (int)n;
        if (!c->error) llhttp_finish(&c->parser); /* ends a body delimited by the close */
        uv_read_stop(s);
    }
}

static inline void tc_connect_cb(uv_connect_t *req, int status)
{
    struct tc *c = req->data;
    if (status < 0) {
        c->error = status;
        c->eof = true;
        return;
    }
    c->connected = true;
}

/* Connects to 127.0.0.1:|port|; reading starts at once unless |no_read|. */
static inline void tc_start(struct tc *c, uv_loop_t *loop, int port, bool no_read)
{
    struct sockaddr_in sa;
    tc_init(c);
    c->loop = loop;
    uv_tcp_init(loop, &c->tcp);
    c->tcp.data = c;
    c->creq.data = c;
    uv_ip4_addr("127.0.0.1", port, &sa);
    uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&sa, tc_connect_cb);
    if (!no_read) uv_read_start((uv_stream_t *)&c->tcp, tc_alloc_cb, tc_read_cb);
}

struct tc_write {
    uv_write_t req;
    char data[];
};

static inline void tc_write_cb(uv_write_t *w, int status)
{
    (void)status;
    free(w);
}

/* Queues |n| bytes (copied). */
static inline void tc_send(struct tc *c, const void *data, size_t n)
{
    struct tc_write *w = malloc(sizeof(*w) + n);
    memcpy(w->data, data, n);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, tc_write_cb) < 0) free(w);
}

static inline void tc_sends(struct tc *c, const char *s)
{
    tc_send(c, s, strlen(s));
}

static inline void tc_closed_cb(uv_handle_t *h)
{
    struct tc *c = h->data;
    c->closed = true;
}

/* Closes the socket (the loop must run for the close to complete) and frees the responses. */
static inline void tc_close(struct tc *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->tcp)) uv_close((uv_handle_t *)&c->tcp, tc_closed_cb);
    tc_release(c);
}

static inline void tc_guard_cb(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

/* Runs |loop| until |cond| holds or TC_GUARD_MS pass (a hang guard, not a timing check). */
#define TC_RUN_UNTIL(loop, cond)                                                                   \
    do {                                                                                           \
        bool tc_expired_ = false;                                                                  \
        uv_timer_t tc_guard_;                                                                      \
        uv_timer_init((loop), &tc_guard_);                                                         \
        tc_guard_.data = &tc_expired_;                                                             \
        uv_timer_start(&tc_guard_, tc_guard_cb, TC_GUARD_MS, 0);                                   \
        while (!(cond) && !tc_expired_)                                                            \
            uv_run((loop), UV_RUN_ONCE);                                                           \
        uv_close((uv_handle_t *)&tc_guard_, NULL);                                                 \
        uv_run((loop), UV_RUN_NOWAIT);                                                             \
        if (!(cond)) fprintf(stderr, "gave up waiting for: %s\n", #cond);                          \
        assert_true(cond);                                                                         \
    } while (0)

#endif
