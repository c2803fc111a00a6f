/* SPDX-License-Identifier: MIT */
/* client.c: PostgreSQL clients on the worker's loop: libpq's asynchronous API over a uv_poll. */
#include "proto/pg/pg.h"
#include "core/err.h"
#include "core/log.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void pump(struct pg_client *c);
static void client_close(struct pg_client *c);
static void on_timer(uv_timer_t *t);

/* ---- the vm's state --------------------------------------------------------------------- */

static void op_free(struct pg_op *op)
{
    for (uint32_t i = 0; i < op->nstmts; i++) {
        if (op->stmts[i].res) PQclear(op->stmts[i].res);
        cc_free(op->stmts[i].err);
    }
    cc_free(op->buf);
    cc_free(op->params);
    cc_free(op->stmts);
    cc_free(op);
}

static void maybe_free_vm(struct pg_vm *pv)
{
    if (!pv->closing || pv->live_handles || !pv->resolver_closed) return;
    if (pv->building) op_free(pv->building);
    while (pv->free_ops) {
        struct pg_op *op = pv->free_ops;
        pv->free_ops = op->next;
        op_free(op);
    }
    cc_free(pv->vals);
    cc_free(pv->lens);
    cc_free(pv);
}

static void resolver_closed(struct cc_resolver *r)
{
    struct pg_vm *pv = cc_container_of(r, struct pg_vm, resolver);
    pv->resolver_closed = true;
    maybe_free_vm(pv);
}

static void vm_close(struct cc_vm *vm, void *state)
{
    struct pg_vm *pv = state;
    pv->closing = true;
    /* the fibers' waits were cancelled already: what is queued is detached */
    for (struct pg_client *c = pv->clients; c; c = c->next) {
        while (c->head) {
            struct pg_op *op = c->head;
            c->head = op->next;
            op_free(op);
        }
        c->tail = NULL;
        client_close(c);
    }
    cc_resolver_close(&pv->resolver, resolver_closed);
    cc_vm_ext_set(vm, CC_EXT_PG, NULL, NULL);
    maybe_free_vm(pv);
}

struct pg_vm *pg_vm_get(struct cc_vm *vm)
{
    struct pg_vm *pv = cc_vm_ext_get(vm, CC_EXT_PG);
    if (pv) return pv;
    pv = cc_xcalloc(1, sizeof(*pv));
    pv->vm = vm;
    cc_resolver_init(&pv->resolver, vm->loop, 0);
    cc_vm_ext_set(vm, CC_EXT_PG, pv, vm_close);
    return pv;
}

/* ---- operations ------------------------------------------------------------------------- */

struct pg_op *pg_op_new(struct pg_vm *pv)
{
    struct pg_op *op = pv->free_ops;
    if (op) {
        pv->free_ops = op->next;
    } else {
        op = cc_xcalloc(1, sizeof(*op));
    }
    op->next = NULL;
    op->fiber = NULL;
    op->c = NULL;
    op->kind = PG_OP_STMT;
    op->typed = true;
    op->array = false;
    op->sent = false;
    op->sync = NULL;
    op->timeout_ms = 0;
    op->cur = 0;
    op->t0 = cc_now_ns();
    op->t_sent = 0;
    op->len = 0;
    op->nparams = 0;
    op->nstmts = 0;
    op->waiter.cancel = pg_op_cancel;
    return op;
}

static void op_release(struct pg_vm *pv, struct pg_op *op)
{
    for (uint32_t i = 0; i < op->nstmts; i++) {
        struct pg_stmt *st = &op->stmts[i];
        if (st->res) PQclear(st->res);
        cc_free(st->err);
        st->res = NULL;
        st->err = NULL;
    }
    op->nstmts = 0;
    if (!pv || pv->closing) {
        op_free(op);
        return;
    }
    if (op->cap > PG_KEEP_BUF) { /* one huge query should not pin its buffer forever */
        cc_free(op->buf);
        op->buf = NULL;
        op->cap = 0;
    }
    op->next = pv->free_ops;
    pv->free_ops = op;
}

uint32_t pg_op_put(struct pg_op *op, const char *s, size_t n)
{
    if (op->len + n + 1 > op->cap) cc_grow((void **)&op->buf, &op->cap, op->len + n + 1, 1);
    uint32_t off = (uint32_t)op->len;
    if (n) memcpy(op->buf + op->len, s, n);
    op->buf[op->len + n] = '\0';
    op->len += n + 1;
    return off;
}

struct pg_stmt *pg_op_add_stmt(struct pg_op *op)
{
    cc_grow((void **)&op->stmts, &op->stmts_cap, op->nstmts + 1, sizeof(*op->stmts));
    struct pg_stmt *st = &op->stmts[op->nstmts++];
    memset(st, 0, sizeof(*st));
    st->param0 = (uint32_t)op->nparams;
    return st;
}

struct pg_param *pg_op_add_param(struct pg_op *op)
{
    cc_grow((void **)&op->params, &op->params_cap, op->nparams + 1, sizeof(*op->params));
    return &op->params[op->nparams++];
}

static const char *stmt_text(const struct pg_op *op, const struct pg_stmt *st)
{
    return op->buf + st->text;
}

/* The failure text of a statement: its own error, or its result's ("SQLSTATE 42P01: ..."),
 * written into |buf|; NULL for a success. */
static const char *stmt_error(const struct pg_stmt *st, char *buf, size_t cap)
{
    if (st->err) return st->err;
    if (!st->res) return "no result";
    switch (PQresultStatus(st->res)) {
    case PGRES_COMMAND_OK:
    case PGRES_TUPLES_OK:
    case PGRES_EMPTY_QUERY:
    case PGRES_SINGLE_TUPLE:
        return NULL;
    case PGRES_PIPELINE_ABORTED:
        return "not run: an earlier statement of the pipeline failed";
    default:
        break;
    }
    const char *state = PQresultErrorField(st->res, PG_DIAG_SQLSTATE);
    const char *msg = PQresultErrorField(st->res, PG_DIAG_MESSAGE_PRIMARY);
    char line[400];
    if (!msg) {
        pg_first_line(PQresultErrorMessage(st->res), line, sizeof(line));
        msg = line[0] ? line : PQresStatus(PQresultStatus(st->res));
    }
    if (state)
        snprintf(buf, cap, "SQLSTATE %s: %s", state, msg);
    else
        snprintf(buf, cap, "%s", msg);
    return buf;
}

/*
 * cc_vm_record measures a request against the intended start of the fiber that made it (open
 * model, pacing), which it finds in vm->current. Completions run from the loop, where no fiber
 * is current, so the fiber that made the call stands in for the length of the call.
 */
static void record_for(struct cc_vm *vm, struct cc_fiber *f, const struct cc_ikey *key, uint64_t ns,
                       uint64_t length, const char *err)
{
    if (!vm->rec) return;
    struct cc_fiber *cur = vm->current;
    vm->current = f;
    cc_vm_record(vm, key, ns, length, err, err ? strlen(err) : 0);
    vm->current = cur;
}

static uint64_t result_bytes(const PGresult *r)
{
    if (!r) return 0;
    uint64_t n = 0;
    int rows = PQntuples(r), cols = PQnfields(r);
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++)
            n += (uint64_t)PQgetlength(r, i, j);
    return n;
}

/* A statement's results are all in: its request event. */
static void stmt_done(struct pg_client *c, struct pg_op *op, struct pg_stmt *st)
{
    st->done = true;
    char buf[512];
    const char *err = stmt_error(st, buf, sizeof(buf));
    if (err && c->in_tx && !c->tx_error) c->tx_error = cc_xstrdup(err);
    if (!err && st->kind == PG_STMT_PREPARE && !st->internal)
        pg_client_remember(c, op->buf + st->text, op->buf + st->sql);
    if (!op->fiber || st->internal || !c->pv) return; /* nobody waits for it */
    record_for(c->pv->vm, op->fiber, st->key, cc_now_ns() - op->t0, result_bytes(st->res), err);
}

/* Fails every statement of |op| still open with |msg|. */
static void op_fail(struct pg_client *c, struct pg_op *op, const char *msg)
{
    for (uint32_t i = 0; i < op->nstmts; i++) {
        struct pg_stmt *st = &op->stmts[i];
        if (st->done) continue;
        if (st->res && PQresultStatus(st->res) == PGRES_FATAL_ERROR) { /* its own error */
            stmt_done(c, op, st);
            continue;
        }
        st->err = cc_xstrdup(msg);
        stmt_done(c, op, st);
    }
    if (op->kind == PG_OP_CONNECT && op->nstmts == 0) {
        /* a connect() call carries its error as a statement-less failure */
        struct pg_stmt *st = pg_op_add_stmt(op);
        st->internal = true;
        st->err = cc_xstrdup(msg);
        st->done = true;
    }
}

/* Hands |op| (out of the queue) its results: on the starting call's stack, to its fiber, or
 * nowhere when nobody waits. */
static void complete(struct pg_client *c, struct pg_op *op)
{
    struct pg_vm *pv = c->pv;
    struct cc_fiber *f = op->fiber;
    if (!f) {
        op_release(pv, op);
        return;
    }
    if (op->sync) {
        *op->sync = pg_lua_push_results(f->co, op);
        op_release(pv, op);
        return;
    }
    int n = pg_lua_push_results(f->co, op);
    op_release(pv, op);
    cc_fiber_resume(f, n);
}

static void unlink_head(struct pg_client *c, struct pg_op *op)
{
    CC_ASSERT(c->head == op);
    c->head = op->next;
    if (!c->head) c->tail = NULL;
    op->next = NULL;
    op->sent = false;
}

/* |op| (the head) is over: the next one goes out, then its fiber resumes. */
static void finish(struct pg_client *c, struct pg_op *op)
{
    unlink_head(c, op);
    c->deadline_ns = 0;
    pump(c);
    complete(c, op);
    if (c->lua_gone && !c->head && !c->closed) client_close(c);
}

void pg_op_cancel(struct cc_waiter *w)
{
    struct pg_op *op = cc_container_of(w, struct pg_op, waiter);
    struct pg_client *c = op->c;
    op->fiber = NULL;
    if (op->sent || !c) return; /* on the wire: its results are read and dropped */
    /* still queued: it leaves the queue now */
    struct pg_op **pp = &c->head, *prev = NULL;
    while (*pp && *pp != op) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (!*pp) return;
    *pp = op->next;
    if (c->tail == op) c->tail = prev;
    op_release(c->pv, op);
    if (c->lua_gone && !c->head && !c->closed) client_close(c);
}

/* ---- the socket ------------------------------------------------------------------------- */

static void on_poll(uv_poll_t *h, int status, int events);

static void handle_closed(uv_handle_t *h)
{
    struct pg_client *c = h->data;
    struct pg_vm *pv = c->pv;
    if (h != (uv_handle_t *)&c->timer) cc_free(h);
    c->handles--;
    pv->live_handles--;
    if (c->handles == 0 && c->closed) {
        if (c->prev)
            c->prev->next = c->next;
        else
            pv->clients = c->next;
        if (c->next) c->next->prev = c->prev;
        c->pv = NULL;
        if (c->lua_gone) {
            cc_free(c->conninfo);
            cc_free(c->host);
            cc_free(c->tx_error);
            for (size_t i = 0; i < c->nprepared; i++) {
                cc_free(c->prepared[i].name);
                cc_free(c->prepared[i].sql);
            }
            cc_free(c->prepared);
            cc_free(c);
        }
    }
    maybe_free_vm(pv);
}

static void close_poll(struct pg_client *c)
{
    if (!c->poll) return;
    uv_close((uv_handle_t *)c->poll, handle_closed);
    c->poll = NULL;
    c->fd = -1;
    c->events = 0;
}

/*
 * libpq closes its socket by itself when it gives up on a connection (lost synchronisation, a
 * failed read). The watcher of that descriptor must go at once, before anything else on this
 * loop can open a socket that reuses the number.
 */
static void check_socket(struct pg_client *c)
{
    if (c->poll && (!c->pg || PQsocket(c->pg) != c->fd)) close_poll(c);
}

/* Watches |events| on the connection's current socket. Returns false (the connection is lost
 * then) when the socket cannot be watched. */
static bool watch(struct pg_client *c, int events)
{
    int fd = PQsocket(c->pg);
    if (fd < 0) return false;
    if (c->poll && c->fd != fd) close_poll(c);
    if (!c->poll) {
        c->poll = cc_xmalloc(sizeof(*c->poll));
        if (uv_poll_init(c->pv->vm->loop, c->poll, fd) != 0) {
            cc_free(c->poll);
            c->poll = NULL;
            return false;
        }
        c->poll->data = c;
        c->handles++;
        c->pv->live_handles++;
        c->fd = fd;
        c->events = 0;
    }
    if (c->events != events) {
        if (uv_poll_start(c->poll, events, on_poll) != 0) return false;
        c->events = events;
    }
    return true;
}

static void arm_timer(struct pg_client *c, uint32_t ms)
{
    if (!ms) {
        c->deadline_ns = 0;
        return;
    }
    c->deadline_ns = cc_now_ns() + (uint64_t)ms * 1000000u;
    /* a timer armed for this deadline or an earlier one stays: when it fires before the
     * deadline it re-arms for the rest, so most calls cost no timer operation */
    if (!uv_is_active((uv_handle_t *)&c->timer) || c->deadline_ns < c->timer_due_ns) {
        uv_timer_start(&c->timer, on_timer, ms, 0);
        c->timer_due_ns = c->deadline_ns;
    }
}

/* Drops the connection (the socket's watcher first, then libpq's socket). */
static void conn_close(struct pg_client *c)
{
    if (c->rreq) {
        cc_resolve_cancel(c->rreq);
        c->rreq = NULL;
    }
    close_poll(c);
    if (c->pg) PQfinish(c->pg);
    c->pg = NULL;
    c->state = PG_DOWN;
    c->deadline_ns = 0;
    if (c->in_tx) c->tx_broken = true;
}

/* The connection failed in use: the operation on it fails, queued ones go to a new one. */
static void conn_lost(struct pg_client *c, const char *why)
{
    char line[400];
    pg_first_line(why, line, sizeof(line));
    struct pg_op *op = c->head && c->head->sent ? c->head : NULL;
    conn_close(c);
    if (!op) return;
    unlink_head(c, op);
    op_fail(c, op, line[0] ? line : "connection lost");
    pump(c);
    complete(c, op);
    if (c->lua_gone && !c->head && !c->closed) client_close(c);
}

/* ---- connecting ------------------------------------------------------------------------- */

static void notice_ignore(void *arg, const PGresult *res)
{
    (void)arg;
    (void)res;
}

static struct cc_fiber *head_fiber(struct pg_client *c)
{
    return c->head ? c->head->fiber : NULL;
}

static void connect_failed(struct pg_client *c, const char *why)
{
    char line[400], msg[440];
    pg_first_line(why, line, sizeof(line));
    snprintf(msg, sizeof(msg), "connect: %s", line[0] ? line : "failed");
    struct pg_vm *pv = c->pv;
    record_for(pv->vm, head_fiber(c), pv->connect_key, cc_now_ns() - c->connect_t0, 0, msg);
    conn_close(c);
    /* every queued call fails with it; a later call tries again */
    struct pg_op *list = c->head;
    c->head = c->tail = NULL;
    while (list) {
        struct pg_op *op = list;
        list = op->next;
        op->next = NULL;
        op_fail(c, op, msg);
        complete(c, op);
    }
    if (c->lua_gone && !c->head && !c->closed) client_close(c);
}

/* Puts a prepare of every remembered statement at the head of the queue (a new connection). */
static void reprepare(struct pg_client *c)
{
    for (size_t i = c->nprepared; i-- > 0;) {
        struct pg_op *op = pg_op_new(c->pv);
        op->c = c;
        op->timeout_ms = c->timeout_ms;
        struct pg_stmt *st = pg_op_add_stmt(op);
        st->kind = PG_STMT_PREPARE;
        st->internal = true;
        const char *name = c->prepared[i].name, *sql = c->prepared[i].sql;
        st->text = pg_op_put(op, name, strlen(name));
        st->text_len = (uint32_t)strlen(name);
        st->sql = pg_op_put(op, sql, strlen(sql));
        st->sql_len = (uint32_t)strlen(sql);
        op->next = c->head;
        c->head = op;
        if (!c->tail) c->tail = op;
    }
}

static void connected(struct pg_client *c)
{
    struct pg_vm *pv = c->pv;
    if (PQsetnonblocking(c->pg, 1) != 0) {
        connect_failed(c, PQerrorMessage(c->pg));
        return;
    }
    PQsetNoticeReceiver(c->pg, notice_ignore, NULL);
    c->state = PG_READY;
    c->epoch++;
    c->deadline_ns = 0;
    record_for(pv->vm, head_fiber(c), pv->connect_key, cc_now_ns() - c->connect_t0, 0, NULL);
    if (c->epoch > 1 && c->nprepared) reprepare(c);
    if (!watch(c, UV_READABLE)) {
        conn_lost(c, "cannot watch the connection's socket");
        return;
    }
    pump(c);
}

/* One step of PQconnectPoll, then the events it asks for. */
static void connect_step(struct pg_client *c)
{
    /* libpq may close the socket and open another inside PQconnectPoll (the next address, a
     * retry without TLS), possibly under the same number: the watcher is taken off epoll
     * first and put back on whatever socket there is after */
    if (c->poll) uv_poll_stop(c->poll);
    c->events = 0;
    PostgresPollingStatusType st = PQconnectPoll(c->pg);
    switch (st) {
    case PGRES_POLLING_READING:
        if (!watch(c, UV_READABLE)) connect_failed(c, "cannot watch the connection's socket");
        return;
    case PGRES_POLLING_WRITING:
        if (!watch(c, UV_WRITABLE)) connect_failed(c, "cannot watch the connection's socket");
        return;
    case PGRES_POLLING_OK:
        connected(c);
        return;
    default:
        connect_failed(c, PQerrorMessage(c->pg));
        return;
    }
}

static void connect_to(struct pg_client *c, const char *hostaddr)
{
    const char *keys[3] = {"dbname", NULL, NULL};
    const char *vals[3] = {c->conninfo, NULL, NULL};
    if (hostaddr) {
        keys[1] = "hostaddr";
        vals[1] = hostaddr;
    }
    /* expand_dbname: the conninfo string or URL is read as a whole, and a hostaddr given
     * after it overrides it */
    c->pg = PQconnectStartParams(keys, vals, 1);
    if (!c->pg) {
        connect_failed(c, "out of memory");
        return;
    }
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        connect_failed(c, PQerrorMessage(c->pg));
        return;
    }
    c->state = PG_CONNECTING;
    /* as if PQconnectPoll had answered PGRES_POLLING_WRITING */
    if (!watch(c, UV_WRITABLE)) connect_failed(c, "cannot watch the connection's socket");
}

static void resolved(const struct cc_resolve_result *res, void *data)
{
    struct pg_client *c = data;
    c->rreq = NULL;
    if (res->status < 0) {
        connect_failed(c, res->error);
        return;
    }
    char ip[INET6_ADDRSTRLEN];
    const union cc_sockaddr *a = &res->addrs[0];
    if (a->sa.sa_family == AF_INET6)
        inet_ntop(AF_INET6, &a->in6.sin6_addr, ip, sizeof(ip));
    else
        inet_ntop(AF_INET, &a->in.sin_addr, ip, sizeof(ip));
    connect_to(c, ip);
}

static void start_connect(struct pg_client *c)
{
    c->connect_t0 = cc_now_ns();
    arm_timer(c, c->connect_timeout_ms);
    if (c->host) {
        /* libpq resolves host names with a blocking getaddrinfo(): the loop's resolver does
         * it instead, and libpq gets the address as hostaddr */
        c->state = PG_RESOLVING;
        int rc = cc_resolve(&c->pv->resolver, c->host, c->port, resolved, c, &c->rreq);
        if (rc != 0) {
            c->rreq = NULL;
            connect_failed(c, cc_strerror(rc));
        }
        return;
    }
    connect_to(c, NULL);
}

/* ---- queries ---------------------------------------------------------------------------- */

static void fill_params(struct pg_client *c, struct pg_op *op, struct pg_stmt *st)
{
    struct pg_vm *pv = c->pv;
    cc_grow((void **)&pv->vals, &pv->vals_cap, st->nparams + 1, sizeof(*pv->vals));
    for (uint32_t i = 0; i < st->nparams; i++) {
        const struct pg_param *p = &op->params[st->param0 + i];
        pv->vals[i] = p->len < 0 ? NULL : op->buf + p->off;
    }
}

/* Sends one statement; returns libpq's answer (1 sent, 0 failed). */
static int send_stmt(struct pg_client *c, struct pg_op *op, struct pg_stmt *st, bool pipeline)
{
    fill_params(c, op, st);
    const char *const *vals = c->pv->vals;
    int n = (int)st->nparams;
    switch (st->kind) {
    case PG_STMT_QUERY:
        /* no parameters: the simple protocol, one message, several statements allowed */
        if (!pipeline && n == 0) return PQsendQuery(c->pg, stmt_text(op, st));
        return PQsendQueryParams(c->pg, stmt_text(op, st), n, NULL, vals, NULL, NULL, 0);
    case PG_STMT_EXECUTE:
        return PQsendQueryPrepared(c->pg, stmt_text(op, st), n, vals, NULL, NULL, 0);
    case PG_STMT_PREPARE:
        return PQsendPrepare(c->pg, stmt_text(op, st), op->buf + st->sql, 0, NULL);
    }
    return 0;
}

static void flush(struct pg_client *c)
{
    int r = PQflush(c->pg);
    check_socket(c);
    if (r < 0) {
        conn_lost(c, PQerrorMessage(c->pg));
        return;
    }
    if (!watch(c, r == 1 ? UV_READABLE | UV_WRITABLE : UV_READABLE))
        conn_lost(c, "cannot watch the connection's socket");
}

static void send_op(struct pg_client *c, struct pg_op *op)
{
    op->sent = true;
    op->t_sent = cc_now_ns();
    op->cur = 0;
    if (op->kind == PG_OP_CONNECT) { /* connect(): the connection is up */
        finish(c, op);
        return;
    }
    arm_timer(c, op->timeout_ms);
    bool ok = true;
    if (op->kind == PG_OP_PIPELINE) {
        ok = PQenterPipelineMode(c->pg) == 1;
        for (uint32_t i = 0; ok && i < op->nstmts; i++)
            ok = send_stmt(c, op, &op->stmts[i], true) == 1;
        if (ok) ok = PQpipelineSync(c->pg) == 1;
    } else {
        ok = send_stmt(c, op, &op->stmts[0], false) == 1;
    }
    check_socket(c);
    if (!ok) {
        if (PQstatus(c->pg) == CONNECTION_BAD) {
            conn_lost(c, PQerrorMessage(c->pg));
            return;
        }
        /* refused before sending (a bad statement name, too many parameters): the connection
         * is fine, the call fails */
        char line[400];
        pg_first_line(PQerrorMessage(c->pg), line, sizeof(line));
        if (PQpipelineStatus(c->pg) != PQ_PIPELINE_OFF) {
            /* statements already queued in libpq cannot be taken back: start afresh */
            conn_lost(c, line);
            return;
        }
        unlink_head(c, op);
        op_fail(c, op, line[0] ? line : "the statement could not be sent");
        pump(c);
        complete(c, op);
        return;
    }
    flush(c);
}

/* Starts what the head of the queue needs: a connection, or being sent. */
static void pump(struct pg_client *c)
{
    while (c->head && !c->head->sent && !c->closed) {
        struct pg_op *op = c->head;
        if (c->tx_broken && op->kind != PG_OP_CONNECT) {
            /* the transaction's connection went: its statements must not run on a new one,
             * outside it */
            unlink_head(c, op);
            op_fail(c, op, "connection lost during the transaction");
            complete(c, op);
            continue;
        }
        switch (c->state) {
        case PG_DOWN:
            start_connect(c);
            return;
        case PG_RESOLVING:
        case PG_CONNECTING:
            return;
        case PG_READY:
            if (PQstatus(c->pg) == CONNECTION_BAD) { /* libpq dropped it meanwhile */
                conn_close(c);
                continue;
            }
            send_op(c, op);
            return;
        }
    }
}

/* Takes one result of the operation in flight; returns true when the operation is over. */
static bool take_result(struct pg_client *c, struct pg_op *op, PGresult *r)
{
    if (op->kind == PG_OP_PIPELINE && r && PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
        PQclear(r);
        op->cur = op->nstmts + 1; /* the NULL that follows the sync ends it */
        return false;
    }
    if (!r) {
        if (op->kind != PG_OP_PIPELINE) {
            stmt_done(c, op, &op->stmts[0]);
            return true;
        }
        if (op->cur < op->nstmts) {
            stmt_done(c, op, &op->stmts[op->cur]);
            op->cur++;
            return false;
        }
        if (op->cur > op->nstmts) {
            PQexitPipelineMode(c->pg);
            return true;
        }
        return false;
    }
    ExecStatusType s = PQresultStatus(r);
    if (s == PGRES_COPY_IN) {
        /* COPY FROM STDIN has no data to send from here: end it, the server answers with an
         * error */
        PQclear(r);
        PQputCopyEnd(c->pg, "COPY FROM STDIN is not supported by cicada's client");
        return false;
    }
    if (s == PGRES_COPY_OUT || s == PGRES_COPY_BOTH) {
        PQclear(r);
        conn_lost(c, "COPY TO STDOUT is not supported by cicada's client");
        return false; /* conn_lost completed the operation */
    }
    uint32_t i = op->kind == PG_OP_PIPELINE ? op->cur : 0;
    if (i >= op->nstmts) { /* nothing expects it */
        PQclear(r);
        return false;
    }
    struct pg_stmt *st = &op->stmts[i];
    /* several statements in one text: the first error stays, else the last result */
    if (st->res && PQresultStatus(st->res) == PGRES_FATAL_ERROR) {
        PQclear(r);
    } else {
        if (st->res) PQclear(st->res);
        st->res = r;
    }
    return false;
}

/* Reads every result that is in, completing operations as they end. */
static void drain(struct pg_client *c)
{
    for (;;) {
        if (c->closed || c->state != PG_READY || !c->pg) return;
        struct pg_op *op = c->head;
        if (!op || !op->sent) {
            /* idle: notifications and server messages; a connection the server ended */
            PGnotify *n;
            while ((n = PQnotifies(c->pg)))
                PQfreemem(n);
            check_socket(c);
            if (PQstatus(c->pg) == CONNECTION_BAD) conn_close(c);
            return;
        }
        int busy = PQisBusy(c->pg);
        check_socket(c);
        if (busy) {
            if (PQstatus(c->pg) == CONNECTION_BAD) conn_lost(c, PQerrorMessage(c->pg));
            return;
        }
        PGresult *r = PQgetResult(c->pg);
        check_socket(c);
        /* a result that lost the connection (COPY TO STDOUT) ended the operation itself;
         * the loop's first line then sees the connection down */
        if (take_result(c, op, r)) finish(c, op);
    }
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct pg_client *c = h->data;
    if (c->closed || h != c->poll) return;
    if (status < 0) {
        /* libuv reports POLLERR (a refused connect, a reset) as UV_EBADF and stops the
         * handle: libpq reads the socket's own error, so it is asked as if the socket were
         * ready */
        c->events = 0;
        events = UV_READABLE | UV_WRITABLE;
    }
    if (c->state == PG_CONNECTING) {
        connect_step(c);
        return;
    }
    if (c->state != PG_READY) return;
    if (status < 0 && !watch(c, UV_READABLE)) {
        conn_lost(c, cc_strerror(status));
        return;
    }
    if (events & UV_READABLE) {
        int ok = PQconsumeInput(c->pg);
        check_socket(c);
        if (!ok) {
            conn_lost(c, PQerrorMessage(c->pg));
            return;
        }
    }
    if ((events & UV_WRITABLE) || (c->events & UV_WRITABLE)) {
        flush(c); /* a pending flush goes on after reading, as libpq asks */
        if (c->state != PG_READY) return;
    }
    drain(c);
}

static void on_timer(uv_timer_t *t)
{
    struct pg_client *c = cc_container_of(t, struct pg_client, timer);
    if (c->closed || !c->deadline_ns) return;
    uint64_t now = cc_now_ns();
    if (now < c->deadline_ns) {
        uv_timer_start(&c->timer, on_timer, (c->deadline_ns - now + 999999) / 1000000u, 0);
        c->timer_due_ns = c->deadline_ns;
        return;
    }
    c->deadline_ns = 0;
    char msg[128];
    if (c->state == PG_RESOLVING || c->state == PG_CONNECTING) {
        snprintf(msg, sizeof(msg), "timed out after %g s", c->connect_timeout_ms / 1000.0);
        connect_failed(c, msg);
        return;
    }
    struct pg_op *op = c->head;
    if (!op || !op->sent) return;
    /* a cancel request would block (PQcancel opens a connection): this one is dropped */
    snprintf(msg, sizeof(msg), "query timed out after %g s", op->timeout_ms / 1000.0);
    conn_lost(c, msg);
}

/* ---- clients ---------------------------------------------------------------------------- */

static bool is_ip_literal(const char *h)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, h, buf) == 1 || inet_pton(AF_INET6, h, buf) == 1;
}

struct pg_client *pg_client_new(struct pg_vm *pv, const char *conninfo)
{
    struct pg_client *c = cc_xcalloc(1, sizeof(*c));
    c->pv = pv;
    c->conninfo = cc_xstrdup(conninfo);
    c->fd = -1;
    c->connect_timeout_ms = PG_DEFAULT_TIMEOUT_MS;
    c->timeout_ms = PG_DEFAULT_TIMEOUT_MS;
    c->typed = true;
    uv_timer_init(pv->vm->loop, &c->timer);
    c->timer.data = c;
    c->handles = 1;
    pv->live_handles++;
    c->next = pv->clients;
    if (pv->clients) pv->clients->prev = c;
    pv->clients = c;
    if (!pv->connect_key && pv->vm->rec)
        pv->connect_key = cc_recorder_key(pv->vm->rec, "postgres", 8, "connect", 7);

    /* a single host given by name: resolved on the loop (see start_connect) */
    PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);
    if (opts) {
        const char *host = NULL, *hostaddr = NULL, *port = NULL;
        for (PQconninfoOption *o = opts; o->keyword; o++) {
            if (!o->val || !o->val[0]) continue;
            if (strcmp(o->keyword, "host") == 0) host = o->val;
            if (strcmp(o->keyword, "hostaddr") == 0) hostaddr = o->val;
            if (strcmp(o->keyword, "port") == 0) port = o->val;
        }
        if (host && !hostaddr && host[0] != '/' && host[0] != '@' && !strchr(host, ',') &&
            !is_ip_literal(host) && (!port || !strchr(port, ','))) {
            c->host = cc_xstrdup(host);
            long p = port ? strtol(port, NULL, 10) : 5432;
            c->port = (uint16_t)(p > 0 && p < 65536 ? p : 5432);
        }
        PQconninfoFree(opts);
    }
    return c;
}

const char *pg_client_prepared(const struct pg_client *c, const char *name)
{
    for (size_t i = 0; i < c->nprepared; i++)
        if (strcmp(c->prepared[i].name, name) == 0) return c->prepared[i].sql;
    return NULL;
}

void pg_client_remember(struct pg_client *c, const char *name, const char *sql)
{
    for (size_t i = 0; i < c->nprepared; i++) {
        if (strcmp(c->prepared[i].name, name) == 0) {
            cc_free(c->prepared[i].sql);
            c->prepared[i].sql = cc_xstrdup(sql);
            return;
        }
    }
    cc_grow((void **)&c->prepared, &c->prepared_cap, c->nprepared + 1, sizeof(*c->prepared));
    c->prepared[c->nprepared].name = cc_xstrdup(name);
    c->prepared[c->nprepared].sql = cc_xstrdup(sql);
    c->nprepared++;
}

void pg_op_start(struct pg_client *c, struct pg_op *op)
{
    op->c = c;
    op->next = NULL;
    if (c->tail)
        c->tail->next = op;
    else
        c->head = op;
    c->tail = op;
    pump(c);
}

void pg_client_disconnect(struct pg_client *c, const char *why)
{
    if (c->closed) return;
    if (c->head && c->head->sent)
        conn_lost(c, why);
    else
        conn_close(c);
}

static void client_close(struct pg_client *c)
{
    if (c->closed) return;
    conn_close(c);
    c->closed = true;
    uv_close((uv_handle_t *)&c->timer, handle_closed);
}

void pg_client_release(struct pg_client *c)
{
    c->lua_gone = true;
    if (!c->pv) { /* the vm closed and every handle is gone */
        cc_free(c->conninfo);
        cc_free(c->host);
        cc_free(c->tx_error);
        for (size_t i = 0; i < c->nprepared; i++) {
            cc_free(c->prepared[i].name);
            cc_free(c->prepared[i].sql);
        }
        cc_free(c->prepared);
        cc_free(c);
        return;
    }
    if (!c->head) client_close(c);
}
