/* SPDX-License-Identifier: MIT */
/*
 * h2fake.h: an HTTP/2 client connection without a socket, for test_h2.c and fuzz_h2_response.c.
 *
 * The connection is made as conn_open() makes one, but never connects: what the client sends
 * is dropped (cc_conn_write() on a connection that is not open refuses it), and the server's
 * bytes go in through h2_on_read(). Exchanges have no fiber: their outcome is copied into
 * h2fake_results by their on_done hook.
 */
#ifndef CC_TEST_H2FAKE_H
#define CC_TEST_H2FAKE_H

#include "proto/http/http.h"

#include <stdio.h>
#include <string.h>

#define H2FAKE_MAX 16

struct h2fake_result {
    bool done;
    bool http2;
    int status;
    int error;
    char errmsg[512];
    char reason[64];
    char body[8192];
    size_t body_len;
    uint64_t length;
    char headers[2048]; /* "name: value\n" lines */
};

struct h2fake {
    uv_loop_t loop;
    struct cc_vm vm;
    struct http_vm *hv;
    struct http_session *s;
    struct http_pool *p;
    struct http_conn *c;
    struct http_exchange *ex[H2FAKE_MAX];
    uint32_t n;
};

static struct h2fake_result h2fake_results[H2FAKE_MAX];
static struct h2fake *h2fake_current;

static void h2fake_on_done(struct http_exchange *ex)
{
    struct h2fake *f = h2fake_current;
    for (uint32_t i = 0; i < f->n; i++) {
        if (f->ex[i] != ex) continue;
        struct h2fake_result *r = &h2fake_results[i];
        r->done = true;
        r->http2 = ex->http2;
        r->status = ex->status;
        r->error = ex->error;
        snprintf(r->errmsg, sizeof(r->errmsg), "%s", ex->errmsg ? ex->errmsg : "");
        snprintf(r->reason, sizeof(r->reason), "%.*s", (int)ex->reason.len,
                 ex->reason.p ? ex->reason.p : "");
        r->body_len = CC_MIN(ex->body.len, sizeof(r->body));
        if (r->body_len) memcpy(r->body, ex->body.p, r->body_len);
        r->length = ex->body_bytes;
        const char *h = ex->headers.p;
        size_t off = 0;
        for (uint32_t k = 0; k < ex->nheaders; k++) {
            const char *v = h + strlen(h) + 1;
            int w = snprintf(r->headers + off, sizeof(r->headers) - off, "%s: %s\n", h, v);
            if (w > 0) off = CC_MIN(off + (size_t)w, sizeof(r->headers) - 1);
            h = v + strlen(v) + 1;
        }
        f->ex[i] = NULL; /* recycled after this */
        return;
    }
}

/* Opens |f|: a session with one pool whose HTTP/2 connection is up (it sent its SETTINGS). */
static void h2fake_open(struct h2fake *f)
{
    memset(f, 0, sizeof(*f));
    memset(h2fake_results, 0, sizeof(h2fake_results));
    h2fake_current = f;
    uv_loop_init(&f->loop);
    f->vm.loop = &f->loop;
    f->hv = http_vm_get(&f->vm);
    struct http_settings set;
    http_settings_default(&set);
    set.http2 = HTTP2_PRIOR;
    f->s = http_session_new(f->hv, &set, NULL);
    uint32_t pool = http_session_pool(f->s, false, "example.test", 80, "example.test");
    f->p = f->s->pools[pool];
    f->p->resolved_ns = cc_now_ns();

    struct http_conn *c = cc_xcalloc(1, sizeof(*c));
    c->hv = f->hv;
    c->pool = f->p;
    h1_conn_init(c);
    uv_timer_init(&f->loop, &c->timer);
    c->handles = 1; /* the timer: a connection that never connected has no handle to close */
    c->conn.high_water = CC_CONN_HIGH_WATER; /* as cc_conn_connect() sets it */
    f->hv->live_handles++;
    c->next_all = f->hv->conns;
    if (f->hv->conns) f->hv->conns->prev_all = c;
    f->hv->conns = c;
    f->p->nconns++;
    c->h2_capable = true;
    c->open = true;
    f->p->h2 = c;
    f->c = c;
    h2_conn_start(c);
}

/* Starts a request given as HTTP/1.1 bytes (the body after the blank line); its index. */
static uint32_t h2fake_request(struct h2fake *f, const char *bytes, uint32_t timeout_ms,
                               uint64_t max_body)
{
    struct http_exchange *ex = http_exchange_new(f->hv);
    http_buf_append(&ex->req, bytes, strlen(bytes));
    ex->idempotent = strncmp(bytes, "GET ", 4) == 0;
    ex->timeout_ms = timeout_ms;
    ex->max_body = max_body;
    ex->on_done = h2fake_on_done;
    uint32_t i = f->n++;
    f->ex[i] = ex;
    http_exchange_start(f->p, ex);
    return i;
}

static void h2fake_feed(struct h2fake *f, const uint8_t *data, size_t len)
{
    if (f->c && f->c->is_h2 && !f->c->closing) h2_on_read(f->c, (const char *)data, len);
}

/* The server closes the connection (|status| 0) or it fails. */
static void h2fake_end(struct h2fake *f, int status)
{
    if (f->c && f->c->is_h2 && !f->c->closing) h2_on_end(f->c, status);
}

static void h2fake_close(struct h2fake *f)
{
    http_session_free(f->s); /* fails what is still open */
    f->vm.ext[CC_EXT_HTTP].close(&f->vm, f->vm.ext[CC_EXT_HTTP].state);
    uv_run(&f->loop, UV_RUN_DEFAULT); /* the handles close, then the vm's HTTP state goes */
    uv_loop_close(&f->loop);
    h2fake_current = NULL;
}

#endif
