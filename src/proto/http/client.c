/* SPDX-License-Identifier: MIT */
/* client.c: HTTP sessions, per-origin pools, connections and the life of an exchange. */
#include "proto/http/http.h"
#include "core/log.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ---- buffers ---------------------------------------------------------------------------- */

void http_buf_grow(struct http_buf *b, size_t need)
{
    cc_grow((void **)&b->p, &b->cap, need, 1);
}

void http_buf_free(struct http_buf *b)
{
    cc_free(b->p);
    memset(b, 0, sizeof(*b));
}

void http_note_header(struct http_exchange *ex, const char *name, size_t nl, size_t value_at)
{
    /* by length and first letter: most names need no comparison at all */
    uint32_t at = (uint32_t)value_at + 1;
    switch (nl) {
    case 8:
        if ((name[0] | 0x20) == 'l' && !ex->location_at && strncasecmp(name, "location", 8) == 0)
            ex->location_at = at;
        break;
    case 10:
        if ((name[0] | 0x20) == 's' && strncasecmp(name, "set-cookie", 10) == 0)
            ex->set_cookie = true;
        break;
    case 16:
        if ((name[0] | 0x20) == 'c' && !ex->encoding_at &&
            strncasecmp(name, "content-encoding", 16) == 0)
            ex->encoding_at = at;
        break;
    }
}

/* ---- the vm's state --------------------------------------------------------------------- */

static void conn_close(struct http_conn *c);

static void maybe_free_vm(struct http_vm *hv)
{
    if (!hv->closing || hv->live_handles || !hv->resolver_closed) return;
    while (hv->free_ex) {
        struct http_exchange *ex = hv->free_ex;
        hv->free_ex = ex->next;
        http_buf_free(&ex->req);
        http_buf_free(&ex->headers);
        http_buf_free(&ex->body);
        http_buf_free(&ex->reason);
        cc_free(ex);
    }
    cc_tls_ctx_unref(hv->tls_verify);
    cc_tls_ctx_unref(hv->tls_insecure);
    cc_tls_ctx_unref(hv->tls_verify_h2);
    cc_tls_ctx_unref(hv->tls_insecure_h2);
    h2_vm_free(hv);
    cc_free(hv);
}

static void resolver_closed(struct cc_resolver *r)
{
    struct http_vm *hv = cc_container_of(r, struct http_vm, resolver);
    hv->resolver_closed = true;
    maybe_free_vm(hv);
}

/* The vm closes: every connection closes, queued exchanges are dropped (their fibers were
 * cancelled already), sessions still held by Lua become inert. */
static void vm_close(struct cc_vm *vm, void *state)
{
    (void)vm;
    struct http_vm *hv = state;
    hv->closing = true;
    for (struct http_conn *c = hv->conns; c; c = c->next_all) {
        c->pool = NULL;
        conn_close(c);
    }
    cc_resolver_close(&hv->resolver, resolver_closed);
    cc_vm_ext_set(vm, CC_EXT_HTTP, NULL, NULL);
}

struct http_vm *http_vm_get(struct cc_vm *vm)
{
    struct http_vm *hv = cc_vm_ext_get(vm, CC_EXT_HTTP);
    if (hv) return hv;
    hv = cc_xcalloc(1, sizeof(*hv));
    hv->vm = vm;
    cc_resolver_init(&hv->resolver, vm->loop, 0);
    cc_vm_ext_set(vm, CC_EXT_HTTP, hv, vm_close);
    return hv;
}

/* ---- sessions and pools ----------------------------------------------------------------- */

void http_settings_default(struct http_settings *s)
{
    memset(s, 0, sizeof(*s));
    s->connect_timeout_ms = HTTP_DEFAULT_TIMEOUT_MS;
    s->timeout_ms = HTTP_DEFAULT_TIMEOUT_MS;
    s->max_body = HTTP_DEFAULT_MAX_BODY;
    s->max_conns = HTTP_DEFAULT_MAX_CONNS;
    s->verify = true;
}

static const char *const alpn_h1[] = {"http/1.1", NULL};
static const char *const alpn_h2[] = {"h2", "http/1.1", NULL};

/* Sessions without files of their own share the vm's two contexts (so TLS sessions resume
 * across users, as a pool of browsers behind one proxy would not, but a load test wants). */
static struct cc_tls_ctx *tls_for(struct http_vm *hv, const struct http_settings *set, char **err)
{
    struct cc_tls_opts o = {.insecure = !set->verify,
                            .ca_file = set->ca_file,
                            .cert_file = set->cert_file,
                            .key_file = set->key_file,
                            .alpn = set->http2 != HTTP2_OFF ? alpn_h2 : alpn_h1,
                            .verify_hint = "(pass verify = false in the client's settings, or "
                                           "--insecure, to skip verification)"};
    struct cc_tls_ctx **shared = NULL;
    if (!set->ca_file && !set->cert_file && !set->key_file) {
        if (set->http2 != HTTP2_OFF)
            shared = set->verify ? &hv->tls_verify_h2 : &hv->tls_insecure_h2;
        else
            shared = set->verify ? &hv->tls_verify : &hv->tls_insecure;
    }
    if (shared && *shared) {
        cc_tls_ctx_ref(*shared);
        return *shared;
    }
    struct cc_tls_ctx *ctx = NULL;
    if (cc_tls_ctx_new(&ctx, &o, err) != 0) return NULL;
    if (shared) {
        *shared = ctx;
        cc_tls_ctx_ref(ctx);
    }
    return ctx;
}

struct http_session *http_session_new(struct http_vm *hv, struct http_settings *set, char **err)
{
    struct http_session *s = cc_xcalloc(1, sizeof(*s));
    s->hv = hv;
    s->set = *set;
    memset(set, 0, sizeof(*set)); /* the session owns the strings now */
    (void)err;
    return s;
}

/* Fails the exchanges of list |q| (taken from a queue). */
static void fail_list(struct http_exchange *q, int code, const char *msg)
{
    char *text = cc_xstrdup(msg);
    while (q) {
        struct http_exchange *ex = q;
        q = ex->next;
        ex->next = NULL;
        http_exchange_fail(ex, code, "%s", text);
    }
    cc_free(text);
}

/* Fails what is queued now; requests that the woken users make meanwhile queue afresh. */
static void fail_queue(struct http_pool *p, int code, const char *msg)
{
    struct http_exchange *q = p->queue;
    p->queue = p->queue_tail = NULL;
    p->queued = 0;
    fail_list(q, code, msg);
}

void http_session_close(struct http_session *s)
{
    if (!s->hv) return;
    for (uint32_t i = 0; i < s->npools; i++) {
        struct http_pool *p = s->pools[i];
        fail_queue(p, CC_ECLOSED, "the HTTP client was closed");
        while (p->idle) {
            struct http_conn *c = p->idle;
            p->idle = c->next_idle;
            c->next_idle = NULL;
            conn_close(c);
        }
    }
    /* connections still busy close as their exchanges end: detach them from the pools */
    for (struct http_conn *c = s->hv->conns; c; c = c->next_all)
        if (c->pool && c->pool->s == s) {
            c->pool = NULL;
            conn_close(c);
        }
    for (uint32_t i = 0; i < s->npools; i++) {
        s->pools[i]->nconns = 0;
        s->pools[i]->h2 = NULL;
    }
}

void http_session_free(struct http_session *s)
{
    http_session_close(s);
    for (uint32_t i = 0; i < s->npools; i++) {
        cc_free(s->pools[i]->host);
        cc_free(s->pools[i]->authority);
        cc_free(s->pools[i]);
    }
    cc_free(s->pools);
    cc_tls_ctx_unref(s->tls);
    cc_free(s->set.ca_file);
    cc_free(s->set.cert_file);
    cc_free(s->set.key_file);
    cc_free(s->set.sources);
    cc_free(s);
}

uint32_t http_session_pool(struct http_session *s, bool tls, const char *host, uint16_t port,
                           const char *authority)
{
    for (uint32_t i = 0; i < s->npools; i++) {
        struct http_pool *p = s->pools[i];
        if (p->tls == tls && p->port == port && strcmp(p->host, host) == 0) return i;
    }
    struct http_pool *p = cc_xcalloc(1, sizeof(*p));
    p->s = s;
    p->host = cc_xstrdup(host);
    p->authority = cc_xstrdup(authority);
    p->port = port;
    p->tls = tls;
    /* HTTP/2 by ALPN needs TLS; without it, only prior knowledge */
    uint8_t h2 = s->set.http2;
    p->proto = h2 == HTTP2_OFF || (!tls && h2 == HTTP2_ALPN) ? HTTP_PROTO_H1
               : tls                                         ? HTTP_PROTO_UNKNOWN
                                                             : HTTP_PROTO_H2;
    cc_grow((void **)&s->pools, &s->pools_cap, s->npools + 1, sizeof(*s->pools));
    s->pools[s->npools] = p;
    return s->npools++;
}

/* ---- connections ------------------------------------------------------------------------ */

static void handle_closed(struct http_conn *c)
{
    struct http_vm *hv = c->hv;
    if (--c->handles) return;
    if (c->prev_all)
        c->prev_all->next_all = c->next_all;
    else
        hv->conns = c->next_all;
    if (c->next_all) c->next_all->prev_all = c->prev_all;
    cc_free(c->h2_err);
    cc_free(c);
    hv->live_handles--;
    maybe_free_vm(hv);
}

static void conn_closed(struct cc_conn *cc)
{
    handle_closed(cc_container_of(cc, struct http_conn, conn));
}

static void timer_closed(uv_handle_t *h)
{
    handle_closed(cc_container_of((uv_timer_t *)h, struct http_conn, timer));
}

static void pool_forget(struct http_conn *c)
{
    struct http_pool *p = c->pool;
    if (!p) return;
    for (struct http_conn **pp = &p->idle; *pp; pp = &(*pp)->next_idle)
        if (*pp == c) {
            *pp = c->next_idle;
            break;
        }
    c->next_idle = NULL;
    if (p->nconns) p->nconns--;
    if (p->h2 == c) p->h2 = NULL;
    c->pool = NULL;
}

static void dispatch(struct http_pool *p);

/* Closes a connection for good; a pool it belonged to may open another for its queue. */
static void conn_close(struct http_conn *c)
{
    if (c->closing) return;
    c->closing = true;
    struct http_pool *p = c->pool;
    pool_forget(c);
    uv_timer_stop(&c->timer);
    cc_conn_close(&c->conn);
    uv_close((uv_handle_t *)&c->timer, timer_closed);
    if (c->is_h2) h2_conn_closed(c); /* its streams fail (users may run), the session goes */
    if (p && p->queue && p->s->hv && !p->s->hv->closing) dispatch(p);
}

static void timeout_cb(uv_timer_t *t)
{
    struct http_conn *c = cc_container_of(t, struct http_conn, timer);
    struct http_exchange *ex = c->ex;
    if (!ex) return;
    uint64_t idle = uv_now(t->loop) - c->active_ms;
    if (idle < c->timeout_ms) { /* there was progress: wait for the rest of the timeout */
        uv_timer_start(&c->timer, timeout_cb, c->timeout_ms - idle, 0);
        return;
    }
    double s = ex->timeout_ms / 1000.0;
    c->ex = NULL;
    ex->conn = NULL;
    conn_close(c);
    http_exchange_fail(ex, UV_ETIMEDOUT, "read timed out: no response within %g s", s);
}

void http_conn_arm_timer(struct http_conn *c, uint32_t ms)
{
    c->timeout_ms = ms;
    c->active_ms = uv_now(c->timer.loop);
    if (!ms) {
        uv_timer_stop(&c->timer);
        return;
    }
    /* A timer left running by an earlier exchange fires no later than this one's timeout
     * would: it stays, and timeout_cb re-arms it for the rest. Back-to-back requests on a
     * connection then cost no timer heap work. */
    if (uv_is_active((uv_handle_t *)&c->timer) && uv_timer_get_due_in(&c->timer) <= ms) return;
    uv_timer_start(&c->timer, timeout_cb, ms, 0);
}

/* The exchange on |c| is over: the connection goes back to its pool or closes. */
void http_conn_release(struct http_conn *c, bool reusable)
{
    c->ex = NULL; /* the timer may run on: it finds no exchange, or re-arms for the next */
    struct http_pool *p = c->pool;
    if (!reusable || !p || c->closing || !p->s->hv) {
        conn_close(c);
        return;
    }
    c->next_idle = p->idle;
    p->idle = c;
    if (p->queue) dispatch(p);
}

static void on_connect(struct cc_conn *cc, int status);
static void on_read(struct cc_conn *cc, const char *data, size_t len)
{
    struct http_conn *c = cc_container_of(cc, struct http_conn, conn);
    if (c->is_h2)
        h2_on_read(c, data, len);
    else
        h1_on_read(c, data, len);
}

static void on_end(struct cc_conn *cc, int status)
{
    struct http_conn *c = cc_container_of(cc, struct http_conn, conn);
    if (c->is_h2)
        h2_on_end(c, status);
    else
        h1_on_end(c, status);
}

/* HTTP/1.1 writes one request at a time; HTTP/2 holds frames back while the socket is full. */
static void on_drain(struct cc_conn *cc)
{
    struct http_conn *c = cc_container_of(cc, struct http_conn, conn);
    if (c->is_h2) h2_on_drain(c);
}

static const struct cc_conn_cbs conn_cbs = {
    .on_connect = on_connect,
    .on_read = on_read,
    .on_end = on_end,
    .on_drain = on_drain,
    .on_close = conn_closed,
};

/* Opens a new connection for pool |p| (resolved) and gives it |ex| once connected. */
static void conn_open(struct http_pool *p, struct http_exchange *ex)
{
    struct http_session *s = p->s;
    struct http_vm *hv = s->hv;
    struct http_conn *c = cc_xcalloc(1, sizeof(*c));
    c->hv = hv;
    c->pool = p;
    c->ex = ex;
    ex->conn = c;
    h1_conn_init(c);
    uv_timer_init(hv->vm->loop, &c->timer);
    c->handles = 2;
    hv->live_handles++;
    c->next_all = hv->conns;
    if (hv->conns) hv->conns->prev_all = c;
    hv->conns = c;
    p->nconns++;
    if (p->proto != HTTP_PROTO_H1) { /* HTTP/2 may be spoken: the queue waits for this one */
        c->h2_capable = true;
        p->h2 = c;
    }

    char *err = NULL;
    if (p->tls && !s->tls) s->tls = tls_for(hv, &s->set, &err);
    if (p->tls && !s->tls) {
        c->ex = NULL;
        ex->conn = NULL;
        conn_close(c);
        http_exchange_fail(ex, CC_ECONFIG, "%s", err ? err : "TLS set-up failed");
        cc_free(err);
        return;
    }
    union cc_sockaddr local;
    uint32_t connect_ms = s->set.connect_timeout_ms;
    if (ex->deadline_ns) { /* a call's deadline bounds its connect too */
        uint64_t now = cc_now_ns();
        uint64_t left = ex->deadline_ns > now ? (ex->deadline_ns - now + 999999) / 1000000 : 1;
        if (!connect_ms || left < connect_ms) connect_ms = (uint32_t)left;
    }
    struct cc_conn_opts o = {.addr = &p->addr.sa,
                             .connect_timeout_ms = connect_ms,
                             .tls = p->tls ? s->tls : NULL,
                             .server_name = p->host};
    if (s->set.nsources) {
        local = s->set.sources[s->next_source++ % s->set.nsources];
        o.local = &local.sa;
    }
    int rc = cc_conn_connect(&c->conn, hv->vm->loop, &o, &conn_cbs, c);
    if (rc != 0) {
        c->ex = NULL;
        ex->conn = NULL;
        /* never connected: nothing of |conn| to close but our timer */
        c->handles = 1;
        c->closing = true;
        pool_forget(c);
        uv_close((uv_handle_t *)&c->timer, timer_closed);
        http_exchange_fail(ex, rc, "cannot connect to %s: %s", p->authority, cc_strerror(rc));
    }
}

static void on_connect(struct cc_conn *cc, int status)
{
    struct http_conn *c = cc_container_of(cc, struct http_conn, conn);
    struct http_exchange *ex = c->ex;
    if (status != 0) {
        c->ex = NULL;
        char *msg = cc_xstrdup(cc_conn_error(cc));
        /* the queue of a pool that may speak HTTP/2 waited for this connection: it fails
         * too, rather than each request trying (and timing out) in turn */
        struct http_exchange *q = NULL;
        if (c->h2_capable && c->pool) {
            q = c->pool->queue;
            c->pool->queue = c->pool->queue_tail = NULL;
            c->pool->queued = 0;
        }
        conn_close(c);
        if (ex) {
            ex->conn = NULL;
            http_exchange_fail(ex, status, "%s", msg);
        }
        fail_list(q, status, msg);
        cc_free(msg);
        return;
    }
    c->open = true;
    struct http_pool *p = c->pool;
    if (c->h2_capable && p) {
        const char *alpn = cc_conn_alpn(cc);
        if (!p->tls || (alpn && strcmp(alpn, "h2") == 0)) {
            p->proto = HTTP_PROTO_H2;
            h2_conn_start(c);
            return;
        }
        if (p->s->set.http2 == HTTP2_REQUIRED) { /* it fails, and so does what waited for it */
            char msg[400];
            snprintf(msg, sizeof(msg),
                     "%s does not speak HTTP/2 (TLS ALPN chose %s), which gRPC needs", p->authority,
                     alpn ? alpn : "nothing");
            struct http_exchange *q = p->queue;
            p->queue = p->queue_tail = NULL;
            p->queued = 0;
            c->ex = NULL;
            conn_close(c);
            if (ex) {
                ex->conn = NULL;
                http_exchange_fail(ex, CC_EPROTO, "%s", msg);
            }
            fail_list(q, CC_EPROTO, msg);
            return;
        }
        /* the server speaks HTTP/1.1 only: the pool is an ordinary one from now on */
        p->proto = HTTP_PROTO_H1;
        if (p->h2 == c) p->h2 = NULL;
        c->h2_capable = false;
        if (ex) {
            h1_send(c, ex);
            if (p->queue && !c->closing) dispatch(p);
            return;
        }
    }
    if (ex)
        h1_send(c, ex);
    else
        http_conn_release(c, true);
}

/* ---- exchanges -------------------------------------------------------------------------- */

struct http_exchange *http_exchange_new(struct http_vm *hv)
{
    struct http_exchange *ex = hv->free_ex;
    if (ex) {
        hv->free_ex = ex->next;
        struct http_buf req = ex->req, headers = ex->headers, body = ex->body, reason = ex->reason;
        memset(ex, 0, sizeof(*ex));
        ex->req = req;
        ex->headers = headers;
        ex->body = body;
        ex->reason = reason;
        ex->req.len = ex->headers.len = ex->body.len = ex->reason.len = 0;
    } else {
        ex = cc_xcalloc(1, sizeof(*ex));
    }
    return ex;
}

static void exchange_recycle(struct http_vm *hv, struct http_exchange *ex)
{
    CC_ASSERT(!ex->notify_queued);
    if (ex->inflating) inflateEnd(&ex->zs);
    ex->inflating = false;
    cc_free(ex->errmsg);
    ex->errmsg = NULL;
    /* keep buffers of ordinary size for the next exchange; give big ones back */
    if (ex->body.cap > (1u << 20)) http_buf_free(&ex->body);
    if (ex->req.cap > (1u << 20)) http_buf_free(&ex->req);
    if (ex->headers.cap > (64u << 10)) http_buf_free(&ex->headers);
    if (!hv || hv->closing) {
        http_buf_free(&ex->req);
        http_buf_free(&ex->headers);
        http_buf_free(&ex->body);
        http_buf_free(&ex->reason);
        cc_free(ex);
        return;
    }
    ex->next = hv->free_ex;
    hv->free_ex = ex;
}

void http_exchange_discard(struct http_vm *hv, struct http_exchange *ex)
{
    exchange_recycle(hv, ex);
}

/* The fiber was killed while waiting: the exchange is dropped, its connection closed. */
void http_exchange_cancel(struct cc_waiter *w)
{
    struct http_exchange *ex = (struct http_exchange *)w;
    struct http_pool *p = ex->pool;
    ex->fiber = NULL;
    if (ex->state == HX_QUEUED && p) {
        for (struct http_exchange **pp = &p->queue; *pp; pp = &(*pp)->next)
            if (*pp == ex) {
                *pp = ex->next;
                p->queued--;
                break;
            }
        p->queue_tail = NULL;
        for (struct http_exchange *q = p->queue; q; q = q->next)
            p->queue_tail = q;
    }
    struct http_conn *c = ex->conn;
    if (c && c->is_h2) {
        h2_cancel(c, ex); /* its stream is reset; the connection serves the others */
    } else if (c) {
        c->ex = NULL;
        ex->conn = NULL;
        /* a response may be half read: the connection cannot be reused; but one still
         * connecting for a pool that may speak HTTP/2 has the pool's queue waiting on it */
        if (!c->h2_capable || c->open) conn_close(c);
    }
    ex->state = HX_DETACHED;
    exchange_recycle(p && p->s ? p->s->hv : NULL, ex);
}

static void finish(struct http_exchange *ex)
{
    ex->t_end = cc_now_ns();
    ex->state = HX_DONE;
    if (ex->conn) ex->conn->ex = NULL;
    ex->conn = NULL;
    struct http_vm *hv = ex->pool && ex->pool->s ? ex->pool->s->hv : NULL;
    if (ex->on_done) /* a C owner (gRPC, tests); it may resume the fiber itself */
        ex->on_done(ex);
    else if (ex->fiber)
        http_lua_resume(ex);
    exchange_recycle(hv, ex);
}

void http_exchange_complete(struct http_exchange *ex)
{
    finish(ex);
}

void http_exchange_fail(struct http_exchange *ex, int code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ex->error = code;
    cc_free(ex->errmsg);
    ex->errmsg = cc_xstrdup(msg);
    ex->status = 0;
    finish(ex);
}

/* A pool that may speak HTTP/2 has one connection: while it opens, the queue waits; once
 * open, its free streams take the queue (h2.c). */
static void dispatch_h2(struct http_pool *p)
{
    while (p->queue && !p->h2) { /* conn_open() may fail at once: then the next one tries */
        struct http_exchange *ex = p->queue;
        p->queue = ex->next;
        if (!p->queue) p->queue_tail = NULL;
        p->queued--;
        ex->next = NULL;
        conn_open(p, ex);
    }
    if (p->h2 && p->h2->is_h2) h2_dispatch(p->h2);
}

/* Hands queued exchanges to idle connections, and opens connections up to the limit. */
static void dispatch(struct http_pool *p)
{
    if (p->proto != HTTP_PROTO_H1) {
        dispatch_h2(p);
        return;
    }
    while (p->queue) {
        struct http_exchange *ex = p->queue;
        struct http_conn *c = p->idle;
        if (c) {
            p->idle = c->next_idle;
            c->next_idle = NULL;
        } else if (p->nconns >= p->s->set.max_conns) {
            return; /* wait for one to come free */
        }
        p->queue = ex->next;
        if (!p->queue) p->queue_tail = NULL;
        p->queued--;
        ex->next = NULL;
        if (c) {
            c->ex = ex;
            ex->conn = c;
            h1_send(c, ex);
        } else {
            conn_open(p, ex);
        }
    }
}

void http_pool_dispatch(struct http_pool *p)
{
    dispatch(p);
}

void http_exchange_send(struct http_exchange *ex, const char *data, size_t len, bool end)
{
    http_buf_append(&ex->req, data, len);
    if (end) ex->req_open = false;
    struct http_conn *c = ex->conn;
    /* queued, or still connecting: it all goes out when the stream opens */
    if (ex->state == HX_SENT && c && c->is_h2) h2_send_more(c, ex);
}

static void resolved(const struct cc_resolve_result *res, void *data)
{
    struct http_pool *p = data;
    p->resolving = false;
    if (res->status != 0) {
        fail_queue(p, res->status, res->error);
        return;
    }
    p->addr = res->addrs[0];
    p->resolved_ns = cc_now_ns();
    dispatch(p);
}

#define RESOLVE_TTL_NS (30ull * 1000000000ull)

void http_exchange_start(struct http_pool *p, struct http_exchange *ex)
{
    ex->pool = p;
    ex->state = HX_QUEUED;
    if (!ex->t_start) ex->t_start = cc_now_ns(); /* a retry keeps the first start */
    ex->next = NULL;
    if (p->queue_tail)
        p->queue_tail->next = ex;
    else
        p->queue = ex;
    p->queue_tail = ex;
    p->queued++;
    /* an idle connection needs no address; a new one needs a fresh one */
    if (p->idle || p->h2 || (p->resolved_ns && cc_now_ns() - p->resolved_ns < RESOLVE_TTL_NS)) {
        dispatch(p);
        return;
    }
    if (p->resolving) return;
    p->resolving = true;
    int rc = cc_resolve(&p->s->hv->resolver, p->host, p->port, resolved, p, NULL);
    if (rc != 0) {
        p->resolving = false;
        fail_queue(p, rc, "cannot resolve the host name");
    }
}
