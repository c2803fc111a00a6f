/* SPDX-License-Identifier: MIT */
/*
 * openai_lua.c: `cicada.openai.core`, the C half of the OpenAI client in Lua: a client (an HTTP
 * session of its own) whose post() sends one request, suspends the user until the response is
 * whole, records the request and its LLM metrics (openai.c), and returns a table of what it
 * measured. Request bodies are built in lua/cicada/openai.lua.
 */
#include "proto/openai/openai_lua.h"
#include "proto/http/http_lua.h"
#include "proto/openai/openai.h"

#include <lauxlib.h>
#include <string.h>

#define CLIENT_MT "cicada.openai.client"
#define MAX_NAMES 16 /* request names whose statistics keys a client keeps at hand */

struct oai_client {
    struct http_session *s;
    struct cc_vm *vm;
    struct cc_oai_slo slo;
    struct cc_oai_keys keys[MAX_NAMES];
    uint32_t nkeys, next_key;
    struct cc_oai_req *free_reqs;
};

/* What a request needs besides the request object: its name and its client. */
struct oai_call {
    struct cc_oai_req r; /* first: its waiter is the fiber's */
    struct oai_client *cl;
    bool record;
    char name[256];
    size_t name_len;
};

static struct oai_client *check(lua_State *L)
{
    struct oai_client *cl = luaL_checkudata(L, 1, CLIENT_MT);
    if (!cl->s || !cl->s->hv) luaL_error(L, "this OpenAI client is closed");
    return cl;
}

/* The statistics keys of |name|, kept for the last MAX_NAMES names. */
static struct cc_oai_keys *keys_for(struct oai_client *cl, const char *name, size_t len)
{
    for (uint32_t i = 0; i < cl->nkeys; i++)
        if (cl->keys[i].name_len == len && memcmp(cl->keys[i].name, name, len) == 0)
            return &cl->keys[i];
    struct cc_oai_keys *k;
    if (cl->nkeys < MAX_NAMES) {
        k = &cl->keys[cl->nkeys++];
    } else { /* keys live as long as the thread's statistics: forgetting one costs a lookup */
        k = &cl->keys[cl->next_key++ % MAX_NAMES];
        cc_free(k->name);
    }
    memset(k, 0, sizeof(*k));
    k->name = cc_xstrndup(name, len);
    k->name_len = len;
    return k;
}

static void set_num(lua_State *L, const char *k, double v)
{
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}

/* The result table of a finished request. */
static void push_result(lua_State *L, struct oai_call *c)
{
    struct cc_oai_req *r = &c->r;
    bool ok = !r->err && r->status >= 200 && r->status < 300;
    lua_createtable(L, 0, 16);
    lua_pushboolean(L, ok);
    lua_setfield(L, -2, "ok");
    set_num(L, "status", r->status);
    if (!ok) {
        lua_pushstring(L, r->errmsg[0] ? r->errmsg : "failed");
        lua_setfield(L, -2, "error");
    }
    double e2e_ms = (double)(r->t_end - r->t0) / 1e6;
    set_num(L, "e2e_ms", e2e_ms);
    lua_pushboolean(L, r->stream);
    lua_setfield(L, -2, "streamed");
    int64_t tokens = cc_oai_tokens(r);
    if (tokens >= 0) set_num(L, "tokens", (double)tokens);
    if (r->usage_in >= 0) set_num(L, "prompt_tokens", (double)r->usage_in);
    if (r->usage_out >= 0) set_num(L, "usage_tokens", (double)r->usage_out);
    set_num(L, "chunks", r->chunks);
    if (r->stream && r->chunks) {
        set_num(L, "ttft_ms", (double)(r->t_first - r->t0) / 1e6);
        uint64_t mx = 0, sum = 0;
        for (size_t i = 0; i < r->ngaps; i++) {
            sum += r->gaps[i];
            if (r->gaps[i] > mx) mx = r->gaps[i];
        }
        if (r->ngaps) {
            set_num(L, "itl_ms", (double)sum / (double)r->ngaps / 1e6);
            set_num(L, "itl_max_ms", (double)mx / 1e6);
        }
    }
    if (cc_oai_has_tpot(r)) set_num(L, "tpot_ms", (double)cc_oai_tpot_ns(r) / 1e6);
    if (tokens >= 0 && e2e_ms > 0) set_num(L, "tokens_per_s", (double)tokens / (e2e_ms / 1e3));
    if (r->embeddings) set_num(L, "embeddings", r->embeddings);
    if (r->finish_reason[0]) {
        lua_pushstring(L, r->finish_reason);
        lua_setfield(L, -2, "finish_reason");
    }
    if (r->keep_text) {
        lua_pushlstring(L, r->text.data ? r->text.data : "", r->text.len);
        lua_setfield(L, -2, "text");
    }
    if (r->keep_body && !r->stream) {
        lua_pushlstring(L, r->body.data ? r->body.data : "", r->body.len);
        lua_setfield(L, -2, "body");
    }
    struct oai_client *cl = c->cl;
    bool slo = cl->slo.ttft_ms > 0 || cl->slo.tpot_ms > 0 || cl->slo.itl_ms > 0 ||
               cl->slo.e2e_ms > 0 || cl->slo.tokens_per_s > 0;
    if (slo) {
        lua_pushboolean(L, cc_oai_slo_met(r, &cl->slo));
        lua_setfield(L, -2, "slo_met");
    }
    lua_pushlstring(L, c->name, c->name_len);
    lua_setfield(L, -2, "name");
}

static void finish(struct oai_call *c, struct cc_fiber *f)
{
    struct oai_client *cl = c->cl;
    if (c->record) cc_oai_record(cl->vm, f, keys_for(cl, c->name, c->name_len), &c->r, &cl->slo);
}

static void release_call(struct oai_call *c)
{
    struct oai_client *cl = c->cl;
    c->r.next = cl->free_reqs;
    cl->free_reqs = &c->r;
}

/* The request ended (from the loop): record it, resume the user with its result. */
static void on_done(struct cc_oai_req *r)
{
    struct oai_call *c = (struct oai_call *)r;
    struct cc_fiber *f = r->fiber;
    r->fiber = NULL;
    finish(c, f);
    if (f) {
        push_result(f->co, c);
        release_call(c);
        cc_fiber_resume(f, 1);
        return;
    }
    release_call(c);
}

/* The user was killed while waiting: the request goes, unrecorded. */
static void on_cancel(struct cc_waiter *w)
{
    struct oai_call *c = (struct oai_call *)w;
    c->r.fiber = NULL;
    cc_oai_cancel(&c->r);
    release_call(c);
}

/* core.client(settings) -> a client; settings as HttpUser's client's (timeout, verify...). */
static int l_client(lua_State *L)
{
    struct cc_vm *vm = cc_vm_self;
    if (!vm) return luaL_error(L, "OpenAI clients live in cicada's threads");
    luaL_checktype(L, 1, LUA_TTABLE);
    struct http_settings set;
    http_lua_settings(L, 1, &set); /* raises before allocating on a bad value */
    struct oai_client *cl = lua_newuserdata(L, sizeof(*cl));
    memset(cl, 0, sizeof(*cl));
    cl->vm = vm;
    luaL_getmetatable(L, CLIENT_MT);
    lua_setmetatable(L, -2);
    char *err = NULL;
    cl->s = http_session_new(http_vm_get(vm), &set, &err);
    cc_free(err);
    return 1;
}

/* client:pool(tls, host, port, authority) -> an id for requests to that server */
static int l_pool(lua_State *L)
{
    struct oai_client *cl = check(L);
    bool tls = lua_toboolean(L, 2);
    const char *host = luaL_checkstring(L, 3);
    lua_Integer port = luaL_checkinteger(L, 4);
    const char *authority = luaL_checkstring(L, 5);
    if (port < 1 || port > 65535) return luaL_argerror(L, 4, "port out of range");
    lua_pushinteger(L, http_session_pool(cl->s, tls, host, (uint16_t)port, authority));
    return 1;
}

static double opt_num(lua_State *L, int t, const char *k)
{
    lua_getfield(L, t, k);
    double v = lua_isnil(L, -1) ? 0 : luaL_checknumber(L, -1);
    lua_pop(L, 1);
    if (v < 0) luaL_error(L, "slo: %s must not be negative", k);
    return v;
}

/* client:set_slo{ ttft_ms=, tpot_ms=, itl_ms=, e2e_ms=, tokens_per_s= } (nil: none) */
static int l_set_slo(lua_State *L)
{
    struct oai_client *cl = check(L);
    struct cc_oai_slo s = {0};
    if (lua_istable(L, 2)) {
        s.ttft_ms = opt_num(L, 2, "ttft_ms");
        s.tpot_ms = opt_num(L, 2, "tpot_ms");
        s.itl_ms = opt_num(L, 2, "itl_ms");
        s.e2e_ms = opt_num(L, 2, "e2e_ms");
        s.tokens_per_s = opt_num(L, 2, "tokens_per_s");
    }
    cl->slo = s;
    return 0;
}

/*
 * client:post(pool, target, headers, body, opts) -> result table. |headers| is a flat list
 * { name, value, ... } (Host and Content-Length are added); |opts|: stream, name (false: not
 * recorded), text (keep the content text), keep_body, timeout (seconds without a byte),
 * max_body. Waits for the whole response.
 */
static int l_post(lua_State *L)
{
    struct oai_client *cl = check(L);
    struct cc_fiber *f = cc_fiber_check(L);
    lua_Integer pool = luaL_checkinteger(L, 2);
    size_t tl, bl;
    const char *target = luaL_checklstring(L, 3, &tl);
    luaL_checktype(L, 4, LUA_TTABLE);
    const char *body = luaL_checklstring(L, 5, &bl);
    if (pool < 0 || (uint32_t)pool >= cl->s->npools) return luaL_argerror(L, 2, "no such pool");
    if (tl == 0 || !http_lua_valid_target(target, tl))
        return luaL_argerror(L, 3, "not a request target");
    int nh = http_lua_check_headers(L, 4);
    bool stream = false, text = true, keep_body = false, record = true;
    uint32_t timeout_ms = cl->s->set.timeout_ms;
    uint64_t max_body = cl->s->set.max_body;
    size_t nl = tl;
    const char *name = target;
    if (lua_istable(L, 6)) {
        lua_getfield(L, 6, "stream");
        stream = lua_toboolean(L, -1);
        lua_getfield(L, 6, "text");
        text = lua_isnil(L, -1) || lua_toboolean(L, -1);
        lua_getfield(L, 6, "keep_body");
        keep_body = lua_toboolean(L, -1);
        lua_getfield(L, 6, "timeout");
        if (!lua_isnil(L, -1)) {
            double s = luaL_checknumber(L, -1);
            timeout_ms = s <= 0 ? 0 : s > 4e6 ? 4000000000u : (uint32_t)(s * 1000 + 0.5);
        }
        lua_getfield(L, 6, "max_body");
        if (!lua_isnil(L, -1)) max_body = (uint64_t)luaL_checknumber(L, -1);
        lua_pop(L, 5);
        lua_getfield(L, 6, "name");
        if (lua_type(L, -1) == LUA_TSTRING) {
            name = lua_tolstring(L, -1, &nl);
        } else if (lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
            record = false;
        }
        lua_pop(L, 1); /* the options table keeps the name alive */
    }
    if (nl >= sizeof(((struct oai_call *)0)->name)) nl = sizeof(((struct oai_call *)0)->name) - 1;

    struct http_pool *p = cl->s->pools[pool];
    struct http_exchange *ex = http_exchange_new(cl->s->hv);
    ex->timeout_ms = timeout_ms;
    http_lua_serialise(L, ex, p, "POST", 4, target, tl, 4, nh, body, bl);

    struct oai_call *c = (struct oai_call *)cl->free_reqs;
    if (c) {
        cl->free_reqs = c->r.next;
    } else {
        c = cc_xmalloc(sizeof(*c));
        cc_oai_req_init(&c->r);
    }
    c->cl = cl;
    c->record = record;
    memcpy(c->name, name, nl);
    c->name[nl] = '\0';
    c->name_len = nl;
    c->r.stream = stream;
    c->r.keep_text = text;
    c->r.keep_body = keep_body;
    c->r.max_body = max_body;
    c->r.on_done = on_done;
    c->r.fiber = f;
    c->r.waiter.cancel = on_cancel;
    lua_settop(L, 1);
    cc_oai_start(&c->r, p, ex);
    if (c->r.done) { /* it failed at once: no wait */
        c->r.fiber = NULL;
        finish(c, f);
        push_result(L, c);
        release_call(c);
        return 1;
    }
    return cc_fiber_wait(L, f, &c->r.waiter);
}

static int l_close(lua_State *L)
{
    struct oai_client *cl = luaL_checkudata(L, 1, CLIENT_MT);
    if (cl->s && cl->s->hv) http_session_close(cl->s);
    return 0;
}

static int l_gc(lua_State *L)
{
    struct oai_client *cl = luaL_checkudata(L, 1, CLIENT_MT);
    if (cl->s) http_session_free(cl->s);
    cl->s = NULL;
    while (cl->free_reqs) {
        struct cc_oai_req *r = cl->free_reqs;
        cl->free_reqs = r->next;
        cc_oai_req_release(r);
        cc_free(r);
    }
    for (uint32_t i = 0; i < cl->nkeys; i++)
        cc_free(cl->keys[i].name);
    cl->nkeys = 0;
    return 0;
}

static const luaL_Reg client_methods[] = {
    {"pool", l_pool}, {"set_slo", l_set_slo}, {"post", l_post}, {"close", l_close}, {NULL, NULL},
};

int openai_lua_open(lua_State *L)
{
    if (luaL_newmetatable(L, CLIENT_MT)) {
        lua_newtable(L);
        luaL_register(L, NULL, client_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushcfunction(L, l_client);
    lua_setfield(L, -2, "client");
    return 1;
}
