/* SPDX-License-Identifier: MIT */
/*
 * cicada_api.c: include/cicada.h, the API that extension modules link against at load time.
 *
 * A thin, stable layer over the engine: users are fibers, waits are cc_waiters, connections
 * are cc_conns with name resolution and TLS contexts shared per worker thread. This file is
 * linked into the executable itself (not the core library), so that every function here is
 * exported even though nothing in cicada calls it.
 */
#include "cicada.h"
#include "core/conn.h"
#include "core/log.h"
#include "lua/offload.h"
#include "lua/vm.h"
#include "stats/stats.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#define API __attribute__((visibility("default")))

/* A cicada_user is a fiber, and a cicada_wait a cc_waiter: the same single member. */
_Static_assert(sizeof(struct cicada_wait) == sizeof(struct cc_waiter), "cicada_wait layout");
_Static_assert(offsetof(struct cicada_wait, cancel) == offsetof(struct cc_waiter, cancel),
               "cicada_wait layout");

static struct cc_fiber *fiber_of(cicada_user *u)
{
    return (struct cc_fiber *)u;
}

API int cicada_api_version(void)
{
    return CICADA_API_VERSION;
}

API uv_loop_t *cicada_loop(void)
{
    return cc_vm_self ? cc_vm_self->loop : NULL;
}

API lua_State *cicada_lua(void)
{
    return cc_vm_self ? cc_vm_self->L : NULL;
}

API cicada_user *cicada_user_current(lua_State *L)
{
    return (cicada_user *)cc_fiber_check(L);
}

API lua_State *cicada_user_lua(cicada_user *u)
{
    return fiber_of(u)->co;
}

API int cicada_suspend(lua_State *L, cicada_user *u, cicada_wait *w)
{
    return cc_fiber_wait(L, fiber_of(u), (struct cc_waiter *)w);
}

/* wrap(f) returns f with its results checked for the kill signal (cicada.signals.checked) */
static const char wrap_src[] = "local checked = require('cicada.signals').checked\n"
                               "return function(f)\n"
                               "  return function(...) return checked(f(...)) end\n"
                               "end\n";

API void cicada_register(lua_State *L, const luaL_Reg *fns)
{
    lua_getfield(L, LUA_REGISTRYINDEX, "cicada.api.wrap");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        if (luaL_loadbuffer(L, wrap_src, sizeof(wrap_src) - 1, "=cicada_register") != 0)
            lua_error(L);
        lua_call(L, 0, 1);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, "cicada.api.wrap");
    }
    /* stack: table, wrap */
    for (; fns && fns->name; fns++) {
        lua_pushvalue(L, -1);
        lua_pushcfunction(L, fns->func);
        lua_call(L, 1, 1);
        lua_setfield(L, -3, fns->name);
    }
    lua_pop(L, 1);
}

API void cicada_resume(cicada_user *u, int nresults)
{
    cc_fiber_resume(fiber_of(u), nresults);
}

API int cicada_sleep(lua_State *L, double seconds)
{
    struct cc_fiber *f = cc_fiber_check(L);
    if (!(seconds >= 0)) return luaL_error(L, "cicada_sleep: a negative or NaN time");
    return cc_fiber_sleep(L, f, (uint64_t)(seconds * 1e9 + 0.5));
}

API void cicada_record(cicada_user *u, const char *request_type, const char *name,
                       double response_time_ms, uint64_t response_length, const char *error)
{
    struct cc_vm *vm = cc_vm_self;
    if (!vm || !vm->rec || !request_type || !name) return;
    const struct cc_ikey *key =
        cc_recorder_key(vm->rec, request_type, strlen(request_type), name, strlen(name));
    uint64_t ns = response_time_ms > 0 ? (uint64_t)(response_time_ms * 1e6 + 0.5) : 0;
    cc_vm_record_for(vm, u ? fiber_of(u) : NULL, key, ns, response_length, error,
                     error ? strlen(error) : 0);
}

API uint64_t cicada_now_ns(void)
{
    return cc_now_ns();
}

API int cicada_offload(lua_State *L, void (*work)(void *arg), int (*done)(lua_State *L, void *arg),
                       void (*drop)(void *arg), void *arg)
{
    return cc_offload(L, work, done, drop, arg);
}

/* ---- timers ----------------------------------------------------------------------------- */

struct cicada_timer {
    uv_timer_t t;
    void (*cb)(cicada_timer *t, void *arg);
    void *arg;
};

static void timer_fire(uv_timer_t *h)
{
    struct cicada_timer *t = cc_container_of(h, struct cicada_timer, t);
    t->cb(t, t->arg);
}

static void timer_free(uv_handle_t *h)
{
    cc_free(cc_container_of((uv_timer_t *)h, struct cicada_timer, t));
}

API cicada_timer *cicada_timer_start(uint64_t timeout_ms, uint64_t repeat_ms,
                                     void (*cb)(cicada_timer *t, void *arg), void *arg)
{
    struct cicada_timer *t = cc_xcalloc(1, sizeof(*t));
    t->cb = cb;
    t->arg = arg;
    uv_timer_init(cicada_loop(), &t->t);
    uv_timer_start(&t->t, timer_fire, timeout_ms, repeat_ms);
    return t;
}

API void cicada_timer_stop(cicada_timer *t)
{
    if (!t) return;
    uv_timer_stop(&t->t);
    uv_close((uv_handle_t *)&t->t, timer_free);
}

/* ---- connections -------------------------------------------------------------------------- */

enum { CONN_RESOLVING, CONN_CONNECTING, CONN_DONE };

struct cicada_conn {
    struct cc_conn conn;
    struct api_vm *av; /* NULL once the thread's API state closed */
    struct cicada_conn *prev, *next;
    const struct cicada_conn_cbs *cbs;
    void *data;
    struct cc_resolve_req *rreq; /* while resolving */
    struct cc_tls_ctx *tls;      /* a reference, NULL for plain TCP */
    char *server_name;
    char *err; /* a failure found before connecting (a TLS option, the name) */
    uint32_t timeout_ms;
    uint8_t state;     /* CONN_* */
    bool closed;       /* the owner closed it: no more callbacks */
    bool conn_started; /* cc_conn_connect() took it: free in on_close */
    uint8_t in_cb;     /* callbacks of ours on the stack */
};

/* What the API keeps per worker thread: a resolver and the shared TLS contexts. */
struct api_vm {
    struct cc_resolver resolver;
    struct cc_tls_ctx *tls_verify, *tls_insecure;
    struct cicada_conn *conns; /* every connection not yet freed */
};

static void resolver_closed(struct cc_resolver *r)
{
    cc_free(cc_container_of(r, struct api_vm, resolver));
}

static void api_vm_close(struct cc_vm *vm, void *state)
{
    (void)vm;
    struct api_vm *av = state;
    /* The resolver's close cancels the lookups; modules close their connections later, from
     * their Lua objects' finalizers as the Lua state goes, and must find nothing to cancel. */
    for (struct cicada_conn *c = av->conns; c; c = c->next) {
        c->rreq = NULL;
        c->av = NULL;
    }
    av->conns = NULL;
    cc_tls_ctx_unref(av->tls_verify);
    cc_tls_ctx_unref(av->tls_insecure);
    cc_resolver_close(&av->resolver, resolver_closed);
}

static struct api_vm *api_vm(void)
{
    struct cc_vm *vm = cc_vm_self;
    struct api_vm *av = cc_vm_ext_get(vm, CC_EXT_API);
    if (!av) {
        av = cc_xcalloc(1, sizeof(*av));
        cc_resolver_init(&av->resolver, vm->loop, 0);
        cc_vm_ext_set(vm, CC_EXT_API, av, api_vm_close);
    }
    return av;
}

static void conn_free(struct cicada_conn *c)
{
    if (c->av) {
        if (c->prev)
            c->prev->next = c->next;
        else
            c->av->conns = c->next;
        if (c->next) c->next->prev = c->prev;
    }
    cc_tls_ctx_unref(c->tls);
    cc_free(c->server_name);
    cc_free(c->err);
    cc_free(c);
}

/* After one of our callbacks returned: a close it made frees what nothing else will. */
static void cb_return(struct cicada_conn *c)
{
    if (--c->in_cb == 0 && c->closed && !c->conn_started) conn_free(c);
}

static void fail_connect(struct cicada_conn *c, int status)
{
    c->state = CONN_DONE;
    if (c->closed) return;
    c->in_cb++;
    c->cbs->on_connect(c, status, c->data);
    cb_return(c);
}

static void on_connect(struct cc_conn *cc, int status)
{
    struct cicada_conn *c = cc->data;
    c->state = CONN_DONE;
    if (!c->closed) c->cbs->on_connect(c, status, c->data);
}

static void on_read(struct cc_conn *cc, const char *data, size_t len)
{
    struct cicada_conn *c = cc->data;
    if (c->closed) return;
    c->cbs->on_read(c, data, len, c->data);
}

static void on_end(struct cc_conn *cc, int status)
{
    struct cicada_conn *c = cc->data;
    if (c->closed) return;
    c->cbs->on_end(c, status, c->data);
}

static void on_drain(struct cc_conn *cc)
{
    struct cicada_conn *c = cc->data;
    if (!c->closed && c->cbs->on_drain) c->cbs->on_drain(c, c->data);
}

static void on_close(struct cc_conn *cc)
{
    conn_free(cc->data);
}

static const struct cc_conn_cbs conn_cbs = {
    .on_connect = on_connect,
    .on_read = on_read,
    .on_end = on_end,
    .on_drain = on_drain,
    .on_close = on_close,
};

static void resolved(const struct cc_resolve_result *res, void *data)
{
    struct cicada_conn *c = data;
    c->rreq = NULL;
    if (c->err) {
        fail_connect(c, CC_ECONFIG);
        return;
    }
    if (res->status < 0) {
        c->err = cc_xstrdup(res->error);
        fail_connect(c, res->status);
        return;
    }
    struct cc_conn_opts o = {
        .addr = &res->addrs[0].sa,
        .connect_timeout_ms = c->timeout_ms,
        .tls = c->tls,
        .server_name = c->server_name,
    };
    int rc = cc_conn_connect(&c->conn, cicada_loop(), &o, &conn_cbs, c);
    if (rc != 0) {
        char addr[64], msg[160];
        snprintf(msg, sizeof(msg), "connect to %s failed: %s",
                 cc_sockaddr_str(o.addr, addr, sizeof(addr)), cc_strerror(rc));
        c->err = cc_xstrdup(msg);
        fail_connect(c, rc);
        return;
    }
    c->conn_started = true;
    c->state = CONN_CONNECTING;
}

static void report_later(cicada_timer *t, void *arg)
{
    struct cicada_conn *c = arg;
    cicada_timer_stop(t);
    c->in_cb--;
    if (c->closed) {
        if (c->in_cb == 0) conn_free(c);
        return;
    }
    fail_connect(c, UV_EINVAL);
}

/* The TLS context for |o|: the thread's shared one, or one of its own for a CA file. */
static struct cc_tls_ctx *tls_for(struct api_vm *av, const struct cicada_conn_opts *o, char **err)
{
    struct cc_tls_ctx **shared = o->insecure ? &av->tls_insecure : &av->tls_verify;
    if (!o->ca_file && *shared) {
        cc_tls_ctx_ref(*shared);
        return *shared;
    }
    struct cc_tls_opts to = {.insecure = o->insecure, .ca_file = o->ca_file};
    struct cc_tls_ctx *ctx = NULL;
    if (cc_tls_ctx_new(&ctx, &to, err) != 0) return NULL;
    if (!o->ca_file) {
        *shared = ctx;
        cc_tls_ctx_ref(ctx);
    }
    return ctx;
}

API cicada_conn *cicada_conn_open(const struct cicada_conn_opts *o,
                                  const struct cicada_conn_cbs *cbs, void *data)
{
    struct api_vm *av = api_vm();
    struct cicada_conn *c = cc_xcalloc(1, sizeof(*c));
    c->av = av;
    c->next = av->conns;
    if (c->next) c->next->prev = c;
    av->conns = c;
    c->cbs = cbs;
    c->data = data;
    c->timeout_ms = o->connect_timeout_ms ? o->connect_timeout_ms : 60000;
    c->state = CONN_RESOLVING;
    if (o->tls) {
        c->tls = tls_for(av, o, &c->err);
        if (!c->tls && !c->err) c->err = cc_xstrdup("TLS: cannot create a context");
        const char *sn = o->server_name ? o->server_name : o->host;
        /* an IP address is verified as such, without SNI */
        union cc_sockaddr probe;
        if (sn && uv_inet_pton(AF_INET, sn, &probe.in.sin_addr) != 0 &&
            uv_inet_pton(AF_INET6, sn, &probe.in6.sin6_addr) != 0)
            c->server_name = cc_xstrdup(sn);
    }
    int rc = cc_resolve(&av->resolver, o->host ? o->host : "", o->port, resolved, c, &c->rreq);
    if (rc != 0) {
        /* no host: reported from the loop, as every other failure */
        c->rreq = NULL;
        if (!c->err) c->err = cc_xstrdup("cicada_conn_open: no host given");
        c->in_cb++; /* a hold until report_later runs */
        cicada_timer_start(0, 0, report_later, c);
    }
    return c;
}

API int cicada_conn_write(cicada_conn *c, const void *bytes, size_t len)
{
    if (c->state != CONN_DONE || !c->conn_started) return CC_ECLOSED;
    return cc_conn_write(&c->conn, bytes, len);
}

API bool cicada_conn_blocked(const cicada_conn *c)
{
    return c->conn_started && cc_conn_write_blocked(&c->conn);
}

API void cicada_conn_read_stop(cicada_conn *c)
{
    if (c->conn_started) cc_conn_read_stop(&c->conn);
}

API void cicada_conn_read_start(cicada_conn *c)
{
    if (c->conn_started) cc_conn_read_start(&c->conn);
}

API const char *cicada_conn_error(const cicada_conn *c)
{
    if (c->err) return c->err;
    return c->conn_started ? cc_conn_error(&c->conn) : "";
}

API void cicada_conn_close(cicada_conn *c)
{
    if (!c || c->closed) return;
    c->closed = true;
    if (c->rreq) {
        cc_resolve_cancel(c->rreq);
        c->rreq = NULL;
    }
    if (c->conn_started)
        cc_conn_close(&c->conn); /* on_close frees it */
    else if (c->in_cb == 0)
        conn_free(c);
}
