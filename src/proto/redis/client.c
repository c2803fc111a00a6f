/* SPDX-License-Identifier: MIT */
/*
 * client.c: Redis clients on cc_conn: connecting (AUTH and SELECT first), a FIFO of requests
 * matched to replies in order, per-command statistics, the reply timeout, and failures.
 *
 * A request is one command or a pipeline of several; its commands are encoded by the binding
 * into the client's output buffer and written at once when connected (or when the connection
 * comes up). Each reply is recorded as it arrives, named after its command; the request
 * completes with its last reply: its results go on the waiting user's stack, and the user
 * resumes once the whole read has been parsed. A connection that fails (refused, reset, closed
 * mid-reply, garbage, a reply over max_reply, no reply within the timeout) fails every request
 * it carried, each command recorded with the reason, and is closed; the next command connects
 * again.
 */
#include "proto/redis/redis.h"
#include "core/log.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

static void flush_done(struct redis_vm *rv);
static void connect_start(struct redis_client *c);

/* Requests whose users are to resume, across clients: resumed once the callback that completed
 * them is done with its client. */
static _Thread_local struct redis_req *done_head, *done_tail;

/* ---- the vm's state ---------------------------------------------------------------------- */

static void rv_free(struct redis_vm *rv)
{
    while (rv->free_reqs) {
        struct redis_req *r = rv->free_reqs;
        rv->free_reqs = r->next;
        cc_free(r->keys);
        cc_free(r->replies);
        cc_free(r);
    }
    cc_tls_cache_free(&rv->tls);
    cc_free(rv);
}

static void resolver_closed(struct cc_resolver *r)
{
    rv_free(cc_container_of(r, struct redis_vm, resolver));
}

static void unlink_client(struct redis_client *c)
{
    struct redis_vm *rv = c->rv;
    if (!rv) return;
    if (c->prev)
        c->prev->next = c->next;
    else if (rv->clients == c)
        rv->clients = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static void close_timer(struct redis_client *c);
static void maybe_free(struct redis_client *c);

/* The vm closes: connections close, requests are dropped (their users' waits were cancelled),
 * clients that Lua still holds become inert. */
static void vm_close(struct cc_vm *vm, void *state)
{
    struct redis_vm *rv = state;
    rv->closing = true;
    while (rv->clients) {
        struct redis_client *c = rv->clients;
        redis_client_close(c, "the run ended");
        unlink_client(c);
        close_timer(c);
        c->rv = NULL;
        maybe_free(c);
    }
    while (done_head) {
        struct redis_req *r = done_head;
        done_head = r->next;
        redis_req_free(r);
    }
    done_tail = NULL;
    cc_resolver_close(&rv->resolver, resolver_closed);
    cc_vm_ext_set(vm, CC_EXT_REDIS, NULL, NULL);
}

struct redis_vm *redis_vm_get(struct cc_vm *vm)
{
    struct redis_vm *rv = cc_vm_ext_get(vm, CC_EXT_REDIS);
    if (rv) return rv;
    rv = cc_xcalloc(1, sizeof(*rv));
    rv->vm = vm;
    cc_resolver_init(&rv->resolver, vm->loop, 0);
    cc_vm_ext_set(vm, CC_EXT_REDIS, rv, vm_close);
    return rv;
}

struct cc_tls_ctx *redis_tls_get(struct redis_vm *rv, const struct redis_settings *s, char **err)
{
    char key[2048];
    snprintf(key, sizeof(key), "%d|%s|%s|%s", s->verify, s->ca_file ? s->ca_file : "",
             s->cert_file ? s->cert_file : "", s->key_file ? s->key_file : "");
    struct cc_tls_ctx *cached = cc_tls_cache_get(&rv->tls, key);
    if (cached) return cached;
    struct cc_tls_opts o = {.insecure = !s->verify,
                            .ca_file = s->ca_file,
                            .cert_file = s->cert_file,
                            .key_file = s->key_file,
                            .verify_hint = "(set verify = false in the client's settings, or "
                                           "--insecure, to skip verification)"};
    struct cc_tls_ctx *ctx = NULL;
    if (cc_tls_ctx_new(&ctx, &o, err) != 0) return NULL;
    cc_tls_cache_put(&rv->tls, key, ctx);
    return ctx;
}

const struct cc_ikey *redis_key(struct redis_vm *rv, const char *name, size_t len)
{
    struct cc_recorder *rec = rv->vm->rec;
    if (!rec) return NULL;
    return cc_recorder_key(rec, REDIS_REQUEST_TYPE, sizeof(REDIS_REQUEST_TYPE) - 1, name, len);
}

/* ---- requests ------------------------------------------------------------------------------ */

struct redis_req *redis_req_new(struct redis_client *c, uint32_t ncmds, struct cc_fiber *f)
{
    struct redis_vm *rv = c->rv;
    struct redis_req *r = rv->free_reqs;
    if (r) {
        rv->free_reqs = r->next;
    } else {
        r = cc_xcalloc(1, sizeof(*r));
    }
    if (r->cap < ncmds) {
        size_t cap = r->cap;
        cc_grow((void **)&r->keys, &cap, ncmds, sizeof(*r->keys));
        cap = r->cap;
        cc_grow((void **)&r->replies, &cap, ncmds, sizeof(*r->replies));
        r->cap = (uint32_t)cap;
    }
    r->waiter.cancel = redis_req_cancel;
    r->fiber = f;
    r->c = c;
    r->next = NULL;
    r->ncmds = ncmds;
    r->nreplies = 0;
    r->t_start = cc_now_ns();
    r->error = NULL;
    r->what = NULL;
    r->internal = r->pipeline = r->done = r->pushed = false;
    r->queued = false;
    r->npushed = 0;
    r->starting = true;
    memset(r->keys, 0, ncmds * sizeof(*r->keys));
    return r;
}

void redis_req_free(struct redis_req *r)
{
    cc_free(r->error);
    r->error = NULL;
    struct redis_vm *rv = r->c ? r->c->rv : NULL;
    if (rv && !rv->closing && r->cap <= 1024) {
        r->next = rv->free_reqs;
        rv->free_reqs = r;
        return;
    }
    cc_free(r->keys);
    cc_free(r->replies);
    cc_free(r);
}

/* Records command |i| of |r| as the request of r's user (whose intended-start histogram counts
 * it), with |err| (NULL: a success). */
static void record(struct redis_req *r, uint32_t i, uint64_t length, const char *err, size_t errlen)
{
    struct redis_client *c = r->c;
    struct redis_vm *rv = c->rv;
    if (!rv || rv->closing || r->internal || !r->keys[i] || !r->fiber) return;
    struct cc_vm *vm = rv->vm;
    if (!vm->rec) return;
    struct cc_fiber *cur = vm->current;
    vm->current = r->fiber;
    cc_vm_record(vm, r->keys[i], cc_now_ns() - r->t_start, length, err, errlen);
    vm->current = cur;
}

static void dequeue(struct redis_req *r)
{
    struct redis_client *c = r->c;
    if (!r->queued) return;
    struct redis_req *prev = NULL;
    for (struct redis_req *q = c->head; q; prev = q, q = q->next) {
        if (q != r) continue;
        if (prev)
            prev->next = r->next;
        else
            c->head = r->next;
        if (c->tail == r) c->tail = prev;
        break;
    }
    r->next = NULL;
    r->queued = false;
}

/* Ends |r|: with |error| (the commands still without a reply are recorded as failures), or
 * with all its replies. Its user's results are pushed now, while the replies are valid. */
static void complete(struct redis_req *r, const char *error)
{
    dequeue(r);
    if (error) {
        if (!r->error) r->error = cc_xstrdup(error);
        for (uint32_t i = r->nreplies; i < r->ncmds; i++)
            record(r, i, 0, r->error, strlen(r->error));
    }
    if (r->starting) { /* the call that made it returns the outcome */
        r->done = true;
        return;
    }
    if (!r->fiber || !r->c->rv || r->c->rv->closing) {
        redis_req_free(r);
        return;
    }
    r->npushed = redis_lua_push_result(r->fiber->co, r);
    r->pushed = true;
    r->next = NULL;
    if (done_tail)
        done_tail->next = r;
    else
        done_head = r;
    done_tail = r;
}

void redis_req_cancel(struct cc_waiter *w)
{
    struct redis_req *r = (struct redis_req *)w;
    if (r->pushed && r->fiber) lua_pop(r->fiber->co, r->npushed); /* results nobody will see */
    r->pushed = false;
    r->fiber = NULL; /* in the queue: its replies are consumed unseen; done: freed unseen */
}

static void flush_done(struct redis_vm *rv)
{
    (void)rv;
    struct redis_req *r;
    while ((r = done_head)) {
        done_head = r->next;
        if (!done_head) done_tail = NULL;
        struct cc_fiber *f = r->fiber;
        int n = r->npushed;
        r->pushed = false;
        redis_req_free(r);
        if (f) cc_fiber_resume(f, n);
    }
}

/* ---- the connection -------------------------------------------------------------------------- */

static void fail_all(struct redis_client *c, const char *why)
{
    while (c->head)
        complete(c->head, why);
    c->out.len = 0; /* their commands, if not yet written */
}

static void set_error(struct redis_client *c, const char *why)
{
    cc_free(c->error);
    c->error = why ? cc_xstrdup(why) : NULL;
}

static void timer_closed(uv_handle_t *h)
{
    struct redis_client *c = cc_container_of((uv_timer_t *)h, struct redis_client, timer);
    c->handles--;
    maybe_free(c);
}

static void close_timer(struct redis_client *c)
{
    if (c->timer_closed) return;
    c->timer_closed = true;
    c->timer_on = false;
    uv_close((uv_handle_t *)&c->timer, timer_closed);
}

/* The connection cannot go on: its requests fail with |why| and it closes. */
static void conn_fail(struct redis_client *c, const char *why)
{
    set_error(c, why);
    fail_all(c, why);
    if (c->resolving) {
        cc_resolve_cancel(c->resolving);
        c->resolving = NULL;
    }
    if (c->conn_used) {
        cc_conn_close(&c->conn);
        c->state = REDIS_CLOSING;
    } else {
        c->state = REDIS_IDLE;
    }
}

static void write_out(struct redis_client *c)
{
    if (!c->out.len) return;
    cc_conn_write(&c->conn, c->out.p, c->out.len); /* a failure comes back through on_end */
    c->out.len = 0;
    if (c->out.cap > 256 * 1024) redis_buf_free(&c->out);
}

static void on_timer(uv_timer_t *t);

static void arm_timer(struct redis_client *c)
{
    if (!c->set.timeout_ms || c->timer_on || !c->head || c->timer_closed) return;
    uv_timer_start(&c->timer, on_timer, c->set.timeout_ms, 0);
    c->timer_on = true;
}

/* The reply timeout counts from when the oldest waiting request was queued; it is armed once,
 * and re-armed for the remainder when it fires early (no timer call per command). */
static void on_timer(uv_timer_t *t)
{
    struct redis_client *c = cc_container_of(t, struct redis_client, timer);
    c->timer_on = false;
    if (!c->head) return;
    uint64_t waited_ms = (cc_now_ns() - c->head->t_start) / 1000000u;
    if (waited_ms + 1 < c->set.timeout_ms) {
        uv_timer_start(&c->timer, on_timer, c->set.timeout_ms - waited_ms, 0);
        c->timer_on = true;
        return;
    }
    char why[160];
    snprintf(why, sizeof(why), "no reply within %.1f s", c->set.timeout_ms / 1000.0);
    conn_fail(c, why);
    flush_done(c->rv);
}

/* One reply for the oldest request. */
static void deliver(struct redis_client *c, struct redis_node *n)
{
    struct redis_req *r = c->head;
    if (!r) {
        conn_fail(c, "protocol error: a reply came for no command");
        return;
    }
    uint32_t i = r->nreplies++;
    r->replies[i] = n;
    if (r->internal) {
        if (n->type == REDIS_REPLY_ERROR) {
            char why[400];
            snprintf(why, sizeof(why), "%s on connect failed: %s", r->what ? r->what : "setup",
                     n->u.str);
            dequeue(r);
            redis_req_free(r);
            conn_fail(c, why);
            return;
        }
        if (r->nreplies == r->ncmds) {
            dequeue(r);
            redis_req_free(r);
            redis_parser_reset(&c->parser);
        }
        return;
    }
    if (n->type == REDIS_REPLY_ERROR)
        record(r, i, 0, n->u.str, n->n);
    else
        record(r, i, redis_node_bytes(n), NULL, 0);
    if (r->nreplies < r->ncmds) return;
    complete(r, NULL);
    redis_parser_reset(&c->parser);
}

static void on_read(struct cc_conn *conn, const char *data, size_t len)
{
    struct redis_client *c = conn->data;
    if (c->state != REDIS_READY) return;
    if (redis_parser_feed(&c->parser, data, len) != 0) {
        conn_fail(c, c->parser.error);
    } else {
        while (c->state == REDIS_READY) {
            struct redis_node *n;
            int rc = redis_parser_next(&c->parser, &n);
            if (rc == 0) break;
            if (rc < 0) {
                conn_fail(c, c->parser.error);
                break;
            }
            deliver(c, n);
        }
    }
    if (c->head) arm_timer(c);
    flush_done(c->rv);
}

static void on_end(struct cc_conn *conn, int status)
{
    struct redis_client *c = conn->data;
    char hp[300], why[600];
    cc_sockaddr_str(cc_conn_peer(conn), hp, sizeof(hp));
    if (status == 0)
        snprintf(why, sizeof(why), "%s closed the connection%s", hp,
                 c->head ? " before the reply" : "");
    else
        snprintf(why, sizeof(why), "connection to %s lost: %s", hp,
                 cc_conn_error(conn)[0] ? cc_conn_error(conn) : cc_strerror(status));
    conn_fail(c, why);
    flush_done(c->rv);
}

static void on_connect(struct cc_conn *conn, int status)
{
    struct redis_client *c = conn->data;
    if (status < 0) {
        conn_fail(c, cc_conn_error(conn)[0] ? cc_conn_error(conn) : cc_strerror(status));
        flush_done(c->rv);
        return;
    }
    c->state = REDIS_READY;
    /* AUTH and SELECT go first, each its own internal request ahead of the users' */
    struct redis_buf pre = {0};
    struct redis_req *first = NULL, *last = NULL;
    if (c->set.password) {
        struct redis_req *r = redis_req_new(c, 1, NULL);
        r->internal = true;
        r->starting = false;
        r->what = "AUTH";
        if (c->set.username) {
            resp_begin(&pre, 3);
            resp_arg(&pre, "AUTH", 4);
            resp_arg(&pre, c->set.username, strlen(c->set.username));
        } else {
            resp_begin(&pre, 2);
            resp_arg(&pre, "AUTH", 4);
        }
        resp_arg(&pre, c->set.password, strlen(c->set.password));
        first = last = r;
    }
    if (c->set.db) {
        struct redis_req *r = redis_req_new(c, 1, NULL);
        r->internal = true;
        r->starting = false;
        r->what = "SELECT";
        char db[16];
        int n = snprintf(db, sizeof(db), "%d", c->set.db);
        resp_begin(&pre, 2);
        resp_arg(&pre, "SELECT", 6);
        resp_arg(&pre, db, (size_t)n);
        if (last)
            last->next = r;
        else
            first = r;
        last = r;
    }
    if (first) {
        for (struct redis_req *r = first; r; r = r->next)
            r->queued = true;
        last->next = c->head;
        c->head = first;
        if (!c->tail) c->tail = last;
        cc_conn_write(&c->conn, pre.p, pre.len);
        redis_buf_free(&pre);
    }
    write_out(c);
    arm_timer(c);
}

static void on_close(struct cc_conn *conn)
{
    struct redis_client *c = conn->data;
    c->conn_used = false;
    c->handles--;
    if (c->released || !c->rv) {
        maybe_free(c);
        return;
    }
    c->state = REDIS_IDLE;
    if (c->head) connect_start(c); /* commands came while it closed */
    flush_done(c->rv);
}

static const struct cc_conn_cbs conn_cbs = {
    .on_connect = on_connect,
    .on_read = on_read,
    .on_end = on_end,
    .on_close = on_close,
};

static bool is_ip(const char *h)
{
    unsigned char b[16];
    return inet_pton(AF_INET, h, b) == 1 || inet_pton(AF_INET6, h, b) == 1;
}

static void on_resolved(const struct cc_resolve_result *res, void *data)
{
    struct redis_client *c = data;
    c->resolving = NULL;
    if (c->state != REDIS_RESOLVING) return;
    if (res->status < 0) {
        conn_fail(c, res->error);
        flush_done(c->rv);
        return;
    }
    const union cc_sockaddr *a = &res->addrs[0];
    for (size_t i = 0; i < res->n; i++) {
        if (res->addrs[i].sa.sa_family == AF_INET) { /* localhost: 127.0.0.1 before ::1 */
            a = &res->addrs[i];
            break;
        }
    }
    struct cc_conn_opts o = {
        .addr = &a->sa,
        .connect_timeout_ms = c->set.connect_timeout_ms,
        .tls = c->tls,
        .server_name = c->tls && !is_ip(c->set.host) ? c->set.host : NULL,
    };
    redis_parser_restart(&c->parser);
    memset(&c->conn, 0, sizeof(c->conn));
    int rc = cc_conn_connect(&c->conn, c->rv->vm->loop, &o, &conn_cbs, c);
    if (rc != 0) {
        char why[400], hp[300];
        snprintf(why, sizeof(why), "connect to %s failed: %s",
                 cc_sockaddr_str(&a->sa, hp, sizeof(hp)), cc_strerror(rc));
        conn_fail(c, why);
        flush_done(c->rv);
        return;
    }
    c->conn_used = true;
    c->handles++;
    c->state = REDIS_CONNECTING;
}

static void connect_start(struct redis_client *c)
{
    c->state = REDIS_RESOLVING;
    int rc = cc_resolve(&c->rv->resolver, c->set.host, c->set.port, on_resolved, c, &c->resolving);
    if (rc < 0) {
        c->resolving = NULL;
        char why[400];
        snprintf(why, sizeof(why), "cannot resolve '%s': %s", c->set.host, cc_strerror(rc));
        conn_fail(c, why);
    }
    arm_timer(c);
}

void redis_req_send(struct redis_req *r)
{
    struct redis_client *c = r->c;
    r->queued = true;
    r->next = NULL;
    if (c->tail)
        c->tail->next = r;
    else
        c->head = r;
    c->tail = r;
    switch (c->state) {
    case REDIS_READY:
        write_out(c);
        arm_timer(c);
        break;
    case REDIS_IDLE:
        connect_start(c);
        break;
    default: /* resolving, connecting or closing: written once connected */
        break;
    }
}

/* ---- clients --------------------------------------------------------------------------------- */

struct redis_client *redis_client_new(struct redis_vm *rv, struct redis_settings *set)
{
    struct redis_client *c = cc_xcalloc(1, sizeof(*c));
    c->rv = rv;
    c->set = *set;
    memset(set, 0, sizeof(*set));
    redis_parser_init(&c->parser, c->set.max_reply);
    uv_timer_init(rv->vm->loop, &c->timer);
    c->handles = 1;
    c->next = rv->clients;
    if (rv->clients) rv->clients->prev = c;
    rv->clients = c;
    return c;
}

static void maybe_free(struct redis_client *c)
{
    if (!c->released || c->handles || c->resolving) return;
    redis_parser_release(&c->parser);
    redis_buf_free(&c->out);
    cc_free(c->set.host);
    cc_free(c->set.username);
    cc_free(c->set.password);
    cc_free(c->set.ca_file);
    cc_free(c->set.cert_file);
    cc_free(c->set.key_file);
    cc_tls_ctx_unref(c->tls);
    cc_free(c->error);
    cc_free(c);
}

void redis_client_close(struct redis_client *c, const char *why)
{
    char msg[400];
    if (!why) {
        snprintf(msg, sizeof(msg), "the client closed its connection to %s:%u", c->set.host,
                 (unsigned)c->set.port);
        why = msg;
    }
    if (c->resolving) {
        cc_resolve_cancel(c->resolving);
        c->resolving = NULL;
    }
    fail_all(c, why);
    if (c->conn_used && c->state != REDIS_CLOSING) {
        cc_conn_close(&c->conn);
        c->state = REDIS_CLOSING;
    } else if (!c->conn_used) {
        c->state = REDIS_IDLE;
    }
}

void redis_flush(void)
{
    flush_done(NULL);
}

void redis_client_release(struct redis_client *c)
{
    c->released = true;
    if (c->rv) {
        redis_client_close(c, NULL);
        unlink_client(c);
        close_timer(c);
    }
    maybe_free(c);
}
