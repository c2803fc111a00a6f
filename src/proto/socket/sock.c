/* SPDX-License-Identifier: MIT */
/* sock.c: the cooperative sockets' driver: connections, input, TLS, pools, select; see sock.h. */
#include "proto/socket/sock.h"
#include "core/log.h"

#include <lauxlib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#define TLSBUF_SIZE (32 * 1024)

struct sock_pool {
    uint64_t key;
    struct sock *head, *tail; /* oldest first */
    uint32_t n, max;
    struct sock_pool *next;
};

static const struct cc_conn_cbs sock_cbs;
static void sock_progress(struct sock *s);
static void sock_free_maybe(struct sock *s);

/* ---- errors ----------------------------------------------------------------------------- */

const char *sock_errstr(int err)
{
    switch (err) {
    case 0:
        return NULL;
    case CC_ETIMEDOUT_CONNECT:
    case UV_ETIMEDOUT:
        return "timeout";
    case UV_ECONNREFUSED:
        return "connection refused";
    /* LuaSocket reports every way a stream ends under it as "closed" */
    case UV_ECONNRESET:
    case UV_ECONNABORTED:
    case UV_EPIPE:
    case UV_EOF:
    case UV_ENOTCONN:
    case CC_ECLOSED:
        return "closed";
    case UV_EADDRINUSE:
        return "address already in use";
    case UV_EACCES:
        return "permission denied";
    case UV_EISCONN:
        return "already connected";
    /* its getaddrinfo() texts */
    case UV_EAI_NONAME:
    case UV_EAI_NODATA:
        return "host or service not provided, or not known";
    case UV_EAI_AGAIN:
        return "temporary failure in name resolution";
    case UV_EAI_FAIL:
        return "non-recoverable failure in name resolution";
    case UV_EAI_SERVICE:
        return "service not supported for socket type";
    case UV_EAI_MEMORY:
        return "memory allocation failure";
    case UV_EAI_FAMILY:
        return "ai_family not supported";
    default:
        return cc_strerror(err);
    }
}

const char *sock_error(const struct sock *s, int err)
{
    if (s->errmsg && (err == CC_ETLS || err == CC_ECERT)) return s->errmsg;
    return sock_errstr(err);
}

/* ---- the vm's state --------------------------------------------------------------------- */

static void sv_free_maybe(struct sock_vm *sv)
{
    if (!sv->closing || sv->socks || sv->handles || !sv->resolver_closed) return;
    cc_tls_ctx_unref(sv->tls_verify);
    cc_tls_ctx_unref(sv->tls_insecure);
    cc_free(sv->tlsbuf);
    cc_free(sv);
}

static void resolver_closed(struct cc_resolver *r)
{
    struct sock_vm *sv = cc_container_of(r, struct sock_vm, resolver);
    sv->resolver_closed = true;
    sv_free_maybe(sv);
}

/* The vm closes: its users' waits are already cancelled; every socket and pooled connection
 * closes, and Lua objects that still point at one are detached. */
static void sv_close(struct cc_vm *vm, void *state)
{
    struct sock_vm *sv = state;
    sv->closing = true;
    while (sv->pools) {
        struct sock_pool *p = sv->pools;
        while (p->head)
            sock_kill(p->head);
        sv->pools = p->next;
        cc_free(p);
    }
    for (struct sock *s = sv->socks; s; s = s->next)
        sock_kill(s);
    cc_resolver_close(&sv->resolver, resolver_closed);
    cc_vm_ext_set(vm, CC_EXT_SOCKET, NULL, NULL);
}

struct sock_vm *sock_vm_get(struct cc_vm *vm)
{
    struct sock_vm *sv = cc_vm_ext_get(vm, CC_EXT_SOCKET);
    if (sv) return sv;
    sv = cc_xcalloc(1, sizeof(*sv));
    sv->vm = vm;
    sv->tlsbuf = cc_xmalloc(TLSBUF_SIZE);
    cc_resolver_init(&sv->resolver, vm->loop, 0);
    cc_vm_ext_set(vm, CC_EXT_SOCKET, sv, sv_close);
    return sv;
}

/* ---- lists ------------------------------------------------------------------------------ */

static void list_add(struct sock **head, struct sock *s)
{
    s->prev = NULL;
    s->next = *head;
    if (*head) (*head)->prev = s;
    *head = s;
}

static void list_del(struct sock **head, struct sock *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        *head = s->next;
    if (s->next) s->next->prev = s->prev;
    s->prev = s->next = NULL;
}

/* ---- life ------------------------------------------------------------------------------- */

static void timer_cb(uv_timer_t *t);

struct sock *sock_new(struct sock_vm *sv, struct sock_ud *owner)
{
    struct sock *s = cc_xcalloc(1, sizeof(*s));
    s->sv = sv;
    s->owner = owner;
    s->rd.s = s->wr.s = s;
    s->born_ns = cc_now_ns();
    CC_ASSERT(uv_timer_init(sv->vm->loop, &s->timer) == 0);
    s->timer.data = s;
    s->timer_live = true;
    list_add(&sv->socks, s);
    return s;
}

static void timer_closed(uv_handle_t *h)
{
    struct sock *s = h->data;
    s->timer_live = false;
    sock_free_maybe(s);
}

/* Pushes the results a wait ends with when its socket is gone. */
static int push_closed(lua_State *L, const struct sock_op *op)
{
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    switch (op->kind) {
    case OP_RECV:
        lua_pushliteral(L, "");
        return 3;
    case OP_SEND:
        lua_pushnumber(L, (lua_Number)op->last);
        return 3;
    default:
        return 2;
    }
}

/* The handles are closed: users still waiting learn that the socket is gone (from the loop, so
 * they may resume at once), and the memory goes. */
static void sock_free_maybe(struct sock *s)
{
    if (s->state != S_DEAD || s->conn_live || s->timer_live) return;
    struct sock_op *ops[2] = {&s->rd, &s->wr};
    for (int i = 0; i < 2; i++) {
        struct sock_op *op = ops[i];
        if (!op->fiber) continue;
        struct cc_fiber *f = op->fiber;
        op->fiber = NULL;
        cc_fiber_resume(f, push_closed(f->co, op));
    }
    if (s->sel) sock_select_end(s->sel, true);
    struct sock_vm *sv = s->sv;
    list_del(&sv->socks, s);
    cc_tls_ssl_free(s->ssl); /* the BIOs go with it, and its context reference */
    cc_free(s->in);
    cc_free(s->errmsg);
    cc_free(s);
    sv_free_maybe(sv);
}

void sock_kill(struct sock *s)
{
    if (s->state == S_DEAD) return;
    s->state = S_DEAD;
    if (s->owner) {
        s->owner->s = NULL;
        s->owner = NULL;
    }
    if (s->pool) {
        struct sock_pool *p = s->pool;
        /* pooled socks live on the pool's list, not the vm's */
        if (s->prev)
            s->prev->next = s->next;
        else
            p->head = s->next;
        if (s->next)
            s->next->prev = s->prev;
        else
            p->tail = s->prev;
        p->n--;
        s->pool = NULL;
        list_add(&s->sv->socks, s);
    }
    if (s->rreq) {
        cc_resolve_cancel(s->rreq);
        s->rreq = NULL;
    }
    if (s->ssl && s->conn_live && cc_conn_is_open(&s->conn) && !s->handshaking && !s->eof) {
        /* a close_notify, if the socket takes it now */
        ERR_clear_error();
        (void)SSL_shutdown(s->ssl);
        ERR_clear_error();
        char *p;
        long n = BIO_get_mem_data(s->wbio, &p);
        if (n > 0) (void)cc_conn_write(&s->conn, p, (size_t)n);
    }
    if (s->conn_live) cc_conn_close(&s->conn);
    if (s->timer_live) uv_close((uv_handle_t *)&s->timer, timer_closed);
}

/* ---- deadlines -------------------------------------------------------------------------- */

static uint64_t op_due(const struct sock_op *op)
{
    if (!op->fiber) return 0;
    uint64_t a = op->due_total, b = op->due_block;
    if (!a) return b;
    if (!b) return a;
    return CC_MIN(a, b);
}

void sock_arm(struct sock *s)
{
    if (s->state == S_DEAD) return;
    uint64_t due = 0;
    uint64_t cand[3] = {op_due(&s->rd), op_due(&s->wr), s->pool ? s->idle_due : 0};
    for (int i = 0; i < 3; i++)
        if (cand[i] && (!due || cand[i] < due)) due = cand[i];
    if (due == s->timer_due) return;
    s->timer_due = due;
    if (!due) {
        uv_timer_stop(&s->timer);
        return;
    }
    uint64_t now = cc_now_ns();
    uint64_t ms = due > now ? (due - now + 999999) / 1000000 : 0;
    uv_timer_start(&s->timer, timer_cb, ms, 0);
}

void sock_op_deadlines(struct sock_op *op, int64_t block_ms, int64_t total_ms)
{
    uint64_t now = cc_now_ns();
    op->block_ms = block_ms;
    op->due_block = block_ms >= 0 ? now + (uint64_t)block_ms * 1000000 + 1 : 0;
    op->due_total = total_ms >= 0 ? now + (uint64_t)total_ms * 1000000 + 1 : 0;
}

void sock_op_finish(struct sock_op *op, int n)
{
    struct cc_fiber *f = op->fiber;
    op->fiber = NULL;
    op->kind = OP_NONE;
    sock_arm(op->s);
    cc_fiber_resume(f, n);
}

/* Pushes |n| bytes at |d| without their CRs (LuaSocket's lines drop every one). */
static void push_stripped(lua_State *L, const char *d, size_t n)
{
    if (n == 0) {
        lua_pushliteral(L, "");
        return;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (;;) {
        const char *cr = memchr(d, '\r', n);
        size_t k = cr ? (size_t)(cr - d) : n;
        luaL_addlstring(&b, d, k);
        if (!cr) break;
        d += k + 1;
        n -= k + 1;
    }
    luaL_pushresult(&b);
}

/* A wait ran past its deadline. */
static void op_timeout(struct sock_op *op)
{
    struct sock *s = op->s;
    lua_State *co = op->fiber->co;
    switch (op->kind) {
    case OP_RECV: {
        /* LuaSocket hands back what arrived as the partial result, and drops it */
        size_t n = sock_buffered(s);
        const char *d = sock_data(s);
        lua_pushnil(co);
        lua_pushliteral(co, "timeout");
        if (s->recv.mode == CC_RECV_LINE)
            push_stripped(co, d, n);
        else
            lua_pushlstring(co, d, n);
        sock_consume(s, n);
        sock_op_finish(op, 3);
        return;
    }
    case OP_SEND:
        lua_pushnil(co);
        lua_pushliteral(co, "timeout");
        lua_pushnumber(co, (lua_Number)op->last);
        sock_op_finish(op, 3);
        return;
    default: { /* connect, handshake: the connection is of no further use */
        struct cc_fiber *f = op->fiber;
        op->fiber = NULL;
        op->kind = OP_NONE;
        sock_kill(s);
        lua_pushnil(f->co);
        lua_pushliteral(f->co, "timeout");
        cc_fiber_resume(f, 2);
        return;
    }
    }
}

static void timer_cb(uv_timer_t *t)
{
    struct sock *s = t->data;
    s->timer_due = 0;
    uint64_t now = cc_now_ns();
    if (s->pool) {
        if (s->idle_due && s->idle_due <= now)
            sock_kill(s);
        else
            sock_arm(s);
        return;
    }
    uint64_t d = op_due(&s->wr);
    if (d && d <= now) op_timeout(&s->wr);
    if (s->state == S_DEAD) return;
    d = op_due(&s->rd);
    if (d && d <= now) op_timeout(&s->rd);
    sock_arm(s);
}

/* ---- input ------------------------------------------------------------------------------ */

static void in_append(struct sock *s, const char *data, size_t len)
{
    if (s->in_off == s->in_len) s->in_off = s->in_len = 0;
    if (s->in_len + len > s->in_cap && s->in_off > 0) {
        memmove(s->in, s->in + s->in_off, s->in_len - s->in_off);
        s->in_len -= s->in_off;
        s->in_off = 0;
    }
    if (s->in_len + len > s->in_cap) cc_grow((void **)&s->in, &s->in_cap, s->in_len + len, 1);
    memcpy(s->in + s->in_len, data, len);
    s->in_len += len;
}

void sock_consume(struct sock *s, size_t n)
{
    s->in_off += n;
    if (s->in_off < s->in_len) return;
    s->in_off = s->in_len = 0;
    /* a big receive's buffer goes back rather than stay with an idle connection */
    if (s->in_cap > 256 * 1024) {
        cc_free(s->in);
        s->in = NULL;
        s->in_cap = 0;
    }
}

void sock_want_input(struct sock *s)
{
    if (!s->paused) return;
    s->paused = false;
    if (s->conn_live) cc_conn_read_start(&s->conn);
}

/* Pushes the result of a finished receive. */
static int push_recv(lua_State *L, struct sock *s, enum cc_recv_status st,
                     const struct cc_recv_result *res)
{
    const char *d = sock_data(s);
    int n;
    if (st == CC_RECV_END) { /* an until reader met its delimiter: nil, nil */
        lua_pushboolean(L, 0);
        n = 1;
    } else {
        size_t dl = res->data_len;
        if (st == CC_RECV_CLOSED) {
            lua_pushnil(L);
            lua_pushstring(L, s->end_err && !s->shut_rd ? sock_error(s, s->end_err) : "closed");
        }
        if (res->strip_cr)
            push_stripped(L, d, dl);
        else
            lua_pushlstring(L, d, dl);
        if (st == CC_RECV_CLOSED) {
            n = 3;
        } else {
            lua_pushnil(L);
            lua_pushnil(L);
            n = 3;
            if (s->recv.mode == CC_RECV_UNTIL) { /* for the reader: the delimiter came */
                lua_pushboolean(L, res->last);
                n = 4;
            }
        }
    }
    sock_consume(s, res->consume);
    return n;
}

int sock_recv_try(struct sock *s, lua_State *L)
{
    struct cc_recv_result res;
    /* "*a" ends at the peer's clean close; a reset is a failure with the partial result */
    bool eof = s->eof || s->shut_rd;
    enum cc_recv_status st = cc_recv_step(&s->recv, sock_data(s), sock_buffered(s), eof, &res);
    if (st == CC_RECV_DONE && s->recv.mode == CC_RECV_ALL && s->end_err && !s->shut_rd) {
        res.data_len = res.consume;
        st = CC_RECV_CLOSED;
    }
    if (st == CC_RECV_MORE) {
        if (sock_buffered(s) <= SOCK_RECV_LIMIT || s->recv.mode == CC_RECV_BYTES) return 0;
        lua_State *to = L ? L : s->rd.fiber->co;
        lua_pushnil(to);
        lua_pushliteral(to, "receive limit exceeded");
        lua_pushliteral(to, "");
        sock_consume(s, sock_buffered(s));
        if (!L) sock_op_finish(&s->rd, 3);
        return 3;
    }
    if (L) return push_recv(L, s, st, &res);
    int n = push_recv(s->rd.fiber->co, s, st, &res);
    sock_op_finish(&s->rd, n);
    return n;
}

/* Reading may pause when nobody receives and much waits; it resumes with the next receive. */
static void maybe_pause(struct sock *s)
{
    if (s->paused || s->rd.fiber || s->state != S_OPEN || !s->conn_live) return;
    if (sock_buffered(s) < SOCK_READ_PAUSE) return;
    s->paused = true;
    cc_conn_read_stop(&s->conn);
}

/* ---- TLS over the connection ------------------------------------------------------------ */

/* Hands OpenSSL's output to the connection. */
static int tls_flush(struct sock *s)
{
    char *p;
    long n = BIO_get_mem_data(s->wbio, &p);
    if (n <= 0) return 0;
    int rv = cc_conn_write(&s->conn, p, (size_t)n);
    (void)BIO_reset(s->wbio);
    return rv;
}

static void tls_fail(struct sock *s, int code, char *msg)
{
    cc_free(s->errmsg);
    s->errmsg = msg;
    s->eof = true;
    s->end_err = code;
}

static const char *peer_name(const struct sock *s, char *buf, size_t len)
{
    return cc_sockaddr_str(cc_conn_peer(&s->conn), buf, len);
}

/* Drives the handshake. Returns 1 when done, 0 while it needs the peer, < 0 on failure. */
static int tls_handshake(struct sock *s)
{
    ERR_clear_error();
    int r = SSL_do_handshake(s->ssl);
    int frv = tls_flush(s);
    if (r == 1) {
        s->handshaking = false;
        return frv < 0 ? frv : 1;
    }
    int e = SSL_get_error(s->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        if (s->eof) { /* the peer left in the middle */
            char who[64], *msg = NULL;
            peer_name(s, who, sizeof(who));
            size_t n = strlen(who) + 80;
            msg = cc_xmalloc(n);
            snprintf(msg, n, "TLS handshake with %s failed: the server closed the connection", who);
            tls_fail(s, CC_ETLS, msg);
            return CC_ETLS;
        }
        return frv < 0 ? frv : 0;
    }
    char who[64], *msg;
    int rv = cc_tls_handshake_error(s->ssl, peer_name(s, who, sizeof(who)), &msg);
    tls_fail(s, rv, msg);
    return rv;
}

/* Decrypts what OpenSSL holds into the input buffer. */
static void tls_read(struct sock *s)
{
    char *buf = s->sv->tlsbuf;
    ERR_clear_error();
    for (;;) {
        size_t got;
        if (SSL_read_ex(s->ssl, buf, TLSBUF_SIZE, &got) == 1) {
            in_append(s, buf, got);
            continue;
        }
        int e = SSL_get_error(s->ssl, 0);
        if (e == SSL_ERROR_WANT_READ) break;
        if (e == SSL_ERROR_ZERO_RETURN) { /* close_notify */
            s->eof = true;
            break;
        }
        char who[64], *msg;
        cc_tls_record_error(peer_name(s, who, sizeof(who)), &msg);
        tls_fail(s, CC_ETLS, msg);
        break;
    }
    (void)tls_flush(s); /* post-handshake messages may want an answer */
}

int sock_tls_start(struct sock *s, struct cc_tls_ctx *ctx, const char *sni)
{
    const struct sockaddr *sa = cc_conn_peer(&s->conn);
    char ip[64];
    uint16_t port;
    if (sa->sa_family == AF_INET) {
        uv_ip4_name((const struct sockaddr_in *)sa, ip, sizeof(ip));
        port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
    } else {
        uv_ip6_name((const struct sockaddr_in6 *)sa, ip, sizeof(ip));
        port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    }
    s->ssl = cc_tls_ssl_new(ctx, sni, ip, port);
    if (!s->ssl) return CC_ETLS;
    s->rbio = BIO_new(BIO_s_mem());
    s->wbio = BIO_new(BIO_s_mem());
    if (!s->rbio || !s->wbio) {
        BIO_free(s->rbio);
        BIO_free(s->wbio);
        s->rbio = s->wbio = NULL;
        cc_tls_ssl_free(s->ssl);
        s->ssl = NULL;
        return CC_ETLS;
    }
    /* an empty read BIO means "wait for the peer", not the end of the stream */
    BIO_set_mem_eof_return(s->rbio, -1);
    SSL_set_bio(s->ssl, s->rbio, s->wbio);
    s->handshaking = true;
    /* bytes already read belong to the handshake (the server answered early) */
    if (sock_buffered(s)) {
        BIO_write(s->rbio, sock_data(s), (int)sock_buffered(s));
        sock_consume(s, sock_buffered(s));
    }
    sock_want_input(s);
    int rv = tls_handshake(s);
    return rv < 0 ? rv : 0;
}

/* The reader waits for the handshake: finish it when it is over. */
static void handshake_progress(struct sock *s, int rv)
{
    if (rv == 0) return;
    struct sock_op *op = &s->rd;
    if (!op->fiber || op->kind != OP_HANDSHAKE) return;
    lua_State *co = op->fiber->co;
    if (rv > 0) {
        lua_pushboolean(co, 1);
        sock_op_finish(op, 1);
        return;
    }
    struct cc_fiber *f = op->fiber;
    op->fiber = NULL;
    op->kind = OP_NONE;
    lua_pushnil(co);
    lua_pushstring(co, sock_error(s, rv));
    sock_kill(s);
    cc_fiber_resume(f, 2);
}

int sock_write(struct sock *s, const char *data, size_t len)
{
    if (s->state != S_OPEN || !s->conn_live) return CC_ECLOSED;
    if (!s->ssl) return cc_conn_write(&s->conn, data, len);
    if (s->handshaking) return CC_ECLOSED;
    size_t w;
    ERR_clear_error();
    if (len > 0 && SSL_write_ex(s->ssl, data, len, &w) != 1) {
        char who[64], *msg;
        cc_tls_record_error(peer_name(s, who, sizeof(who)), &msg);
        cc_free(s->errmsg);
        s->errmsg = msg;
        return CC_ETLS;
    }
    return tls_flush(s);
}

size_t sock_queued(const struct sock *s)
{
    return s->conn_live ? cc_conn_write_queued(&s->conn) : 0;
}

/* ---- connection callbacks --------------------------------------------------------------- */

static void connect_next(struct sock *s);

/* Ends a connect wait with an error, from the loop. */
static void connect_fail(struct sock *s, int err)
{
    struct sock_op *op = &s->rd;
    if (!op->fiber) {
        sock_kill(s);
        return;
    }
    struct cc_fiber *f = op->fiber;
    op->fiber = NULL;
    op->kind = OP_NONE;
    lua_pushnil(f->co);
    lua_pushstring(f->co, sock_errstr(err));
    sock_kill(s);
    cc_fiber_resume(f, 2);
}

static void on_connect(struct cc_conn *c, int status)
{
    struct sock *s = c->data;
    if (status < 0) {
        s->connect_err = status;
        if (s->addr_i + 1 < s->naddrs && s->rd.fiber) {
            /* the next address, once this attempt's handles are closed */
            s->retry = true;
            cc_conn_close(c);
            return;
        }
        connect_fail(s, status);
        return;
    }
    s->state = S_OPEN;
    if (s->owner) {
        s->owner->kind = UD_CLIENT;
        (void)sock_apply_opts(s, &s->owner->opts);
    }
    /* a select first: the user resumed next may select on this very socket */
    sock_select_wake(s);
    if (s->state == S_DEAD) return;
    if (s->rd.fiber && s->rd.kind == OP_CONNECT) {
        lua_pushnumber(s->rd.fiber->co, 1);
        sock_op_finish(&s->rd, 1);
    }
}

static void on_read(struct cc_conn *c, const char *data, size_t len)
{
    struct sock *s = c->data;
    if (s->state == S_DEAD) return;
    s->rx += len;
    if (s->pool) { /* an idle connection has nothing to say: it is closing, or out of step */
        sock_kill(s);
        return;
    }
    if (s->shut_rd) return;
    if (!s->ssl) {
        in_append(s, data, len);
        sock_progress(s);
        return;
    }
    if (BIO_write(s->rbio, data, (int)len) != (int)len) {
        tls_fail(s, CC_ETLS, cc_xstrdup("TLS: out of memory"));
    } else if (s->handshaking) {
        int rv = tls_handshake(s);
        if (rv > 0) tls_read(s);
        handshake_progress(s, rv);
        if (s->state == S_DEAD) return;
    } else {
        tls_read(s);
    }
    sock_progress(s);
}

static void on_end(struct cc_conn *c, int status)
{
    struct sock *s = c->data;
    if (s->state == S_DEAD) return;
    if (s->pool) {
        sock_kill(s);
        return;
    }
    if (!s->eof) {
        s->eof = true;
        s->end_err = status;
    }
    if (s->handshaking) {
        int rv = tls_handshake(s);
        handshake_progress(s, rv < 0 ? rv : CC_ETLS);
        if (s->state == S_DEAD) return;
    }
    if (s->wr.fiber) { /* a send waiting for the kernel: it never will */
        lua_State *co = s->wr.fiber->co;
        lua_pushnil(co);
        lua_pushstring(co, status < 0 ? sock_errstr(status) : "closed");
        lua_pushnumber(co, (lua_Number)s->wr.last);
        sock_op_finish(&s->wr, 3);
        if (s->state == S_DEAD) return;
    }
    sock_progress(s);
}

static void on_drain(struct cc_conn *c)
{
    struct sock *s = c->data;
    if (s->state == S_DEAD) return;
    sock_select_wake(s);
    if (s->state == S_DEAD) return;
    if (s->wr.fiber && s->wr.kind == OP_SEND) {
        lua_State *co = s->wr.fiber->co;
        lua_pushnumber(co, (lua_Number)s->wr.last);
        lua_pushnil(co);
        lua_pushnil(co);
        sock_op_finish(&s->wr, 3);
    }
}

static void on_close(struct cc_conn *c)
{
    struct sock *s = c->data;
    s->conn_live = false;
    if (s->retry && s->state == S_CONNECTING) {
        s->retry = false;
        s->addr_i++;
        connect_next(s);
        return;
    }
    sock_free_maybe(s);
}

static const struct cc_conn_cbs sock_cbs = {
    .on_connect = on_connect,
    .on_read = on_read,
    .on_end = on_end,
    .on_drain = on_drain,
    .on_close = on_close,
};

/*
 * New input or the end: a select, the waiting receive, and backpressure. From the loop. Each
 * user resumed here runs before this returns and may have closed the socket, or started
 * another wait on it; hence the select first (its user may well receive next), and the checks.
 */
static void sock_progress(struct sock *s)
{
    if (sock_readable(s)) sock_select_wake(s);
    if (s->state == S_DEAD) return;
    if (s->rd.fiber && s->rd.kind == OP_RECV) {
        if (sock_recv_try(s, NULL) == 0 && s->rd.block_ms >= 0) {
            /* progress renews LuaSocket's block timeout */
            s->rd.due_block = cc_now_ns() + (uint64_t)s->rd.block_ms * 1000000 + 1;
            sock_arm(s);
        }
        if (s->state == S_DEAD) return;
    }
    maybe_pause(s);
}

/* ---- connecting ------------------------------------------------------------------------- */

static void connect_next(struct sock *s)
{
    for (; s->addr_i < s->naddrs; s->addr_i++) {
        if (s->family && s->addrs[s->addr_i].sa.sa_family != s->family) continue;
        break;
    }
    if (s->addr_i >= s->naddrs) {
        connect_fail(s, s->connect_err ? s->connect_err : UV_EAI_NONAME);
        return;
    }
    const struct sockaddr *local = NULL;
    if (s->has_local && s->local.sa.sa_family == s->addrs[s->addr_i].sa.sa_family)
        local = &s->local.sa;
    struct cc_conn_opts o = {
        .addr = &s->addrs[s->addr_i].sa,
        .local = local,
        /* send() returns once the kernel has every byte, as LuaSocket's does: anything
         * queued counts as backpressure, so that on_drain says when the queue empties */
        .write_high_water = 1,
    };
    s->state = S_CONNECTING;
    int rv = cc_conn_connect(&s->conn, s->sv->vm->loop, &o, &sock_cbs, s);
    if (rv < 0) {
        connect_fail(s, rv);
        return;
    }
    s->conn_live = true;
}

static void resolved(const struct cc_resolve_result *res, void *data)
{
    struct sock *s = data;
    s->rreq = NULL;
    if (res->status < 0) {
        connect_fail(s, res->status);
        return;
    }
    s->naddrs = (uint8_t)res->n;
    memcpy(s->addrs, res->addrs, res->n * sizeof(*res->addrs));
    s->addr_i = 0;
    s->connect_err = 0;
    connect_next(s);
}

int sock_connect(struct sock *s, const char *host, uint16_t port)
{
    s->state = S_RESOLVING;
    return cc_resolve(&s->sv->resolver, host, port, resolved, s, &s->rreq);
}

/* ---- pools ------------------------------------------------------------------------------ */

static struct sock_pool *pool_find(struct sock_vm *sv, uint64_t key)
{
    for (struct sock_pool *p = sv->pools; p; p = p->next)
        if (p->key == key) return p;
    return NULL;
}

/*
 * Whether a pooled plain connection has bytes or an end waiting that the loop has not seen yet
 * (the server answered late, or closed it): handed out, they would be read as the reply to the
 * next request. One recv(MSG_PEEK) per reuse; TLS connections are left to their reads (a
 * session ticket arriving while idle is not an answer).
 */
static bool pooled_stale(struct sock *s)
{
    uv_os_fd_t fd;
    if (s->ssl || uv_fileno((const uv_handle_t *)&s->conn.tcp, &fd) != 0) return false;
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

struct sock *sock_pool_take(struct sock_vm *sv, uint64_t key)
{
    struct sock_pool *p = pool_find(sv, key);
    if (!p) return NULL;
    while (p->tail && pooled_stale(p->tail))
        sock_kill(p->tail);
    if (!p->tail) return NULL;
    struct sock *s = p->tail; /* the newest: the least likely to have been dropped */
    p->tail = s->prev;
    if (p->tail)
        p->tail->next = NULL;
    else
        p->head = NULL;
    p->n--;
    s->pool = NULL;
    s->idle_due = 0;
    list_add(&sv->socks, s);
    s->reused++;
    sock_arm(s);
    return s;
}

const char *sock_pool_put(struct sock *s, int64_t timeout_ms, int64_t size)
{
    if (s->state != S_OPEN || s->eof || s->handshaking) return "closed";
    if (s->rd.fiber || s->wr.fiber) return "socket busy";
    if (sock_buffered(s) > 0) return "unread data in buffer";
    if (sock_queued(s) > 0) return "unsent data in buffer";
    struct sock_vm *sv = s->sv;
    struct sock_pool *p = pool_find(sv, s->pool_key);
    if (!p) {
        p = cc_xcalloc(1, sizeof(*p));
        p->key = s->pool_key;
        p->max = size > 0 ? (uint32_t)size : SOCK_POOL_SIZE;
        p->next = sv->pools;
        sv->pools = p;
    }
    if (p->n >= p->max && p->head) sock_kill(p->head); /* the oldest makes room */
    if (s->owner) {
        s->owner->s = NULL;
        s->owner = NULL;
    }
    list_del(&sv->socks, s);
    s->pool = p;
    s->next = NULL;
    s->prev = p->tail;
    if (p->tail)
        p->tail->next = s;
    else
        p->head = s;
    p->tail = s;
    p->n++;
    if (timeout_ms < 0) timeout_ms = SOCK_POOL_TIMEOUT_MS;
    s->idle_due = timeout_ms > 0 ? cc_now_ns() + (uint64_t)timeout_ms * 1000000 : 0;
    if (s->sel) sock_select_end(s->sel, true);
    sock_want_input(s); /* notice the server closing it */
    cc_conn_trim(&s->conn);
    if (s->in_cap > 16 * 1024) {
        cc_free(s->in);
        s->in = NULL;
        s->in_cap = 0;
    }
    sock_arm(s);
    return NULL;
}

/* ---- select ----------------------------------------------------------------------------- */

bool sock_readable(const struct sock *s)
{
    if (s->state == S_DEAD) return true;
    if (s->state != S_OPEN || s->handshaking) return false;
    return sock_buffered(s) > 0 || s->eof || s->shut_rd;
}

bool sock_writable(const struct sock *s)
{
    if (s->state == S_DEAD) return true;
    return s->state == S_OPEN && !s->handshaking && sock_queued(s) == 0;
}

static void select_timer_closed(uv_handle_t *h)
{
    struct sock_select *w = h->data;
    struct sock_vm *sv = w->sv;
    sv->handles--;
    cc_free(w);
    sv_free_maybe(sv);
}

void sock_select_timeout(uv_timer_t *t)
{
    sock_select_end(t->data, true);
}

static void select_cancel(struct cc_waiter *wt)
{
    sock_select_end((struct sock_select *)wt, false);
}

struct sock_select *sock_select_new(struct sock_vm *sv, uint32_t n)
{
    struct sock_select *w = cc_xcalloc(1, sizeof(*w) + n * sizeof(w->socks[0]));
    w->sv = sv;
    w->waiter.cancel = select_cancel;
    CC_ASSERT(uv_timer_init(sv->vm->loop, &w->timer) == 0);
    w->timer.data = w;
    sv->handles++;
    return w;
}

void sock_select_end(struct sock_select *w, bool resume)
{
    for (uint32_t i = 0; i < w->n; i++)
        if (w->socks[i] && w->socks[i]->sel == w) w->socks[i]->sel = NULL;
    w->n = 0;
    struct cc_fiber *f = w->fiber;
    w->fiber = NULL;
    if (!uv_is_closing((uv_handle_t *)&w->timer))
        uv_close((uv_handle_t *)&w->timer, select_timer_closed);
    if (resume && f) {
        lua_pushboolean(f->co, 1);
        cc_fiber_resume(f, 1);
    }
}

void sock_select_wake(struct sock *s)
{
    if (s->sel) sock_select_end(s->sel, true);
}

/* ---- options ---------------------------------------------------------------------------- */

static int set_int(int fd, int level, int name, int v)
{
    return setsockopt(fd, level, name, &v, sizeof(v)) == 0 ? 0 : -errno;
}

int sock_apply_opts(struct sock *s, const struct sock_opts *o)
{
    uv_os_fd_t fd;
    if (!s->conn_live || uv_fileno((uv_handle_t *)&s->conn.tcp, &fd) < 0) return UV_EBADF;
    int rv = 0, r;
#define APPLY(cond, expr)                                                                          \
    if (cond) {                                                                                    \
        r = (expr);                                                                                \
        if (r < 0) rv = r;                                                                         \
    }
    APPLY(o->keepalive >= 0, set_int(fd, SOL_SOCKET, SO_KEEPALIVE, o->keepalive));
    APPLY(o->nodelay >= 0, set_int(fd, IPPROTO_TCP, TCP_NODELAY, o->nodelay));
    APPLY(o->reuseaddr >= 0, set_int(fd, SOL_SOCKET, SO_REUSEADDR, o->reuseaddr));
    APPLY(o->reuseport >= 0, set_int(fd, SOL_SOCKET, SO_REUSEPORT, o->reuseport));
    APPLY(o->rcvbuf >= 0, set_int(fd, SOL_SOCKET, SO_RCVBUF, o->rcvbuf));
    APPLY(o->sndbuf >= 0, set_int(fd, SOL_SOCKET, SO_SNDBUF, o->sndbuf));
    APPLY(o->keepidle >= 0, set_int(fd, IPPROTO_TCP, TCP_KEEPIDLE, o->keepidle));
    APPLY(o->keepcnt >= 0, set_int(fd, IPPROTO_TCP, TCP_KEEPCNT, o->keepcnt));
    APPLY(o->keepintvl >= 0, set_int(fd, IPPROTO_TCP, TCP_KEEPINTVL, o->keepintvl));
    if (o->v6only >= 0 && s->conn.peer.sa.sa_family == AF_INET6)
        APPLY(true, set_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, o->v6only));
    if (o->linger_on >= 0) {
        struct linger l = {.l_onoff = o->linger_on, .l_linger = o->linger_s < 0 ? 0 : o->linger_s};
        if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l)) != 0) rv = -errno;
    }
#undef APPLY
    return rv;
}
