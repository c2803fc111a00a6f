/* SPDX-License-Identifier: MIT */
/*
 * socketio_lua.c: `cicada.socketio.core`, the C half of the Socket.IO client in Lua. connect,
 * call (an emit that waits for its acknowledgement), wait and disconnect suspend the calling
 * user; emit does not. An acknowledged call is timed here, from the emit to the answer, and
 * recorded as request type "WSC". Events the script handles with `on` run their handler in a
 * fiber of its own, so a handler may wait too. JSON and attachments are encoded and decoded in
 * lua/cicada/socketio.lua.
 */
#include "proto/socketio/socketio_lua.h"
#include "proto/socketio/socketio.h"
#include "core/log.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#define CLIENT_MT "cicada.socketio.client"

static char binder_key; /* the registry holds the Lua function that binds a handler's call */
/* and a table of the live clients' userdata by their address, with weak values: a handler's
 * event finds its client's dispatch function there (in the userdata's environment) without
 * the registry keeping the client alive */
static char clients_key;

struct sioc;

/* A user waiting for the answer to its call. */
struct call_wait {
    struct cc_waiter waiter; /* first: the fiber's view */
    struct cc_fiber *fiber;
    struct sioc *c;
    const struct cc_ikey *key; /* its statistics entry: WSC and the event's name */
    struct call_wait *next;    /* in the client's free list */
    uint32_t timeout_ms;
};

/* A user waiting for the connection, an event, or the end of a disconnect. */
struct plain_wait {
    struct cc_waiter waiter;
    struct cc_fiber *fiber;
    struct sioc *c;
    uint64_t t0;
    uint64_t deadline;
    char event[256]; /* wait(): the event awaited, "" for any */
};

/* The userdata. */
struct sioc {
    struct cc_sio sio; /* first */
    struct cc_vm *vm;
    struct plain_wait conn_w, wait_w, disc_w;
    struct call_wait *free_calls;
    uint32_t calls_out; /* calls whose answer is awaited */
    bool has_dispatch;  /* its environment holds dispatch(name, json, atts, id) */
    bool handle_all;    /* a "*" handler is set */
    char **handled;     /* events with a handler */
    uint32_t nhandled;
    bool started, connected, ended;
    int end_status;
    char errmsg[512];
};

static double ms_of(uint64_t ns)
{
    return (double)ns / 1e6;
}

static struct cc_fiber *take(struct plain_wait *w)
{
    struct cc_fiber *f = w->fiber;
    w->fiber = NULL;
    w->deadline = 0;
    return f;
}

static void rearm(struct sioc *c)
{
    uint64_t d = c->wait_w.fiber ? c->wait_w.deadline : 0;
    if (!c->sio.released) cc_sio_set_deadline(&c->sio, d);
}

static void resume_fail(struct plain_wait *w, const char *msg)
{
    uint64_t t0 = w->t0;
    struct cc_fiber *f = take(w);
    if (!f) return;
    lua_pushnil(f->co);
    lua_pushstring(f->co, msg);
    lua_pushnumber(f->co, ms_of(cc_now_ns() - t0));
    cc_fiber_resume(f, 3);
}

/* Pushes a table of the attachments, or nil. */
static void push_atts(lua_State *L, const struct cc_sio_att *atts, uint32_t n)
{
    if (!n) {
        lua_pushnil(L);
        return;
    }
    lua_createtable(L, (int)n, 0);
    for (uint32_t i = 0; i < n; i++) {
        lua_pushlstring(L, atts[i].data, atts[i].len);
        lua_rawseti(L, -2, (int)i + 1);
    }
}

/* ---- the client's callbacks ------------------------------------------------------------- */

static void on_connect(struct cc_sio *s, int status)
{
    struct sioc *c = (struct sioc *)s;
    if (status == 0) {
        c->connected = true;
        uint64_t t0 = c->conn_w.t0;
        struct cc_fiber *f = take(&c->conn_w);
        if (!f) return;
        lua_pushboolean(f->co, 1);
        lua_pushnil(f->co);
        lua_pushnumber(f->co, ms_of(cc_now_ns() - t0));
        cc_fiber_resume(f, 3);
        return;
    }
    c->ended = true;
    c->end_status = status;
    snprintf(c->errmsg, sizeof(c->errmsg), "%s", cc_sio_error(s));
    resume_fail(&c->conn_w, c->errmsg);
    resume_fail(&c->wait_w, c->errmsg);
}

static bool handled(struct sioc *c, const char *name)
{
    if (c->handle_all) return true;
    for (uint32_t i = 0; i < c->nhandled; i++)
        if (strcmp(c->handled[i], name) == 0) return true;
    return false;
}

/* Runs the script's handler for an event in a fiber of its own. */
static void spawn_handler(struct sioc *c, const char *name, const char *json, size_t len,
                          const struct cc_sio_att *atts, uint32_t natts, bool has_id, uint64_t id)
{
    lua_State *L = c->vm->L;
    int top = lua_gettop(L);
    lua_pushlightuserdata(L, &binder_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    lua_pushlightuserdata(L, &clients_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    lua_pushlightuserdata(L, c);
    lua_rawget(L, -2);
    if (!lua_isuserdata(L, -1)) { /* being collected */
        lua_settop(L, top);
        return;
    }
    lua_getfenv(L, -1);
    lua_getfield(L, -1, "dispatch");
    lua_replace(L, top + 2);
    lua_settop(L, top + 2);
    lua_pushstring(L, name);
    lua_pushlstring(L, json, len);
    push_atts(L, atts, natts);
    if (has_id)
        lua_pushnumber(L, (double)id);
    else
        lua_pushnil(L);
    if (lua_pcall(L, 5, 1, 0) != 0) { /* the binder only makes a closure: out of memory */
        cc_error("socketio", "cannot start the handler of '%s': %s", name, lua_tostring(L, -1));
        lua_settop(L, top);
        return;
    }
    /* cicada.gather's child body runs the closure in a new fiber; with no gather to report
     * to, its end is reported by nobody, and the closure catches its own errors */
    lua_pushlightuserdata(L, NULL);
    lua_pushinteger(L, 0);
    lua_pushvalue(L, -3);
    cc_vm_call_from(c->vm, L, "gather_child", 3, NULL, NULL);
    lua_settop(L, top);
}

static void on_event(struct cc_sio *s, const char *name, const char *json, size_t len,
                     const struct cc_sio_att *atts, uint32_t natts, bool has_id, uint64_t id)
{
    struct sioc *c = (struct sioc *)s;
    bool handle = c->has_dispatch && handled(c, name);
    if (c->wait_w.fiber && (!c->wait_w.event[0] || strcmp(c->wait_w.event, name) == 0)) {
        uint64_t t0 = c->wait_w.t0;
        struct cc_fiber *f = take(&c->wait_w);
        lua_pushstring(f->co, name);
        lua_pushlstring(f->co, json, len);
        push_atts(f->co, atts, natts);
        lua_pushnumber(f->co, ms_of(cc_now_ns() - t0));
        if (handle) spawn_handler(c, name, json, len, atts, natts, has_id, id);
        rearm(c);
        cc_fiber_resume(f, 4);
        return;
    }
    if (handle) spawn_handler(c, name, json, len, atts, natts, has_id, id);
}

static void on_ack(struct cc_sio *s, void *ctx, int status, const char *json, size_t len,
                   const struct cc_sio_att *atts, uint32_t natts, uint64_t ns)
{
    struct sioc *c = (struct sioc *)s;
    struct call_wait *cw = ctx;
    struct cc_fiber *f = cw->fiber;
    cw->fiber = NULL;
    c->calls_out--;
    char msg[600];
    if (status == UV_ETIMEDOUT)
        snprintf(msg, sizeof(msg), "no acknowledgement within %g s", cw->timeout_ms / 1000.0);
    else if (status)
        snprintf(msg, sizeof(msg), "%s", cc_sio_error(s)[0] ? cc_sio_error(s) : "closed");
    if (cw->key && c->vm->rec)
        cc_vm_record_for(c->vm, f, cw->key, ns, 0, status ? msg : NULL, status ? strlen(msg) : 0);
    cw->next = c->free_calls;
    c->free_calls = cw;
    if (!f) return;
    if (status == 0) {
        lua_pushlstring(f->co, json, len);
        push_atts(f->co, atts, natts);
        lua_pushnumber(f->co, ms_of(ns));
    } else {
        lua_pushnil(f->co);
        lua_pushstring(f->co, msg);
        lua_pushnumber(f->co, ms_of(ns));
    }
    cc_fiber_resume(f, 3);
}

static void on_end(struct cc_sio *s, int status)
{
    struct sioc *c = (struct sioc *)s;
    c->ended = true;
    c->end_status = status;
    snprintf(c->errmsg, sizeof(c->errmsg), "%s",
             status == 0 ? "the client disconnected" : cc_sio_error(s));
    if (c->disc_w.fiber) {
        uint64_t t0 = c->disc_w.t0;
        struct cc_fiber *f = take(&c->disc_w);
        lua_pushboolean(f->co, status == 0);
        if (status == 0)
            lua_pushnil(f->co);
        else
            lua_pushstring(f->co, c->errmsg);
        lua_pushnumber(f->co, ms_of(cc_now_ns() - t0));
        cc_fiber_resume(f, 3);
    }
    resume_fail(&c->wait_w, c->errmsg);
}

static void on_timer(struct cc_sio *s)
{
    struct sioc *c = (struct sioc *)s;
    if (!c->wait_w.fiber || !c->wait_w.deadline || c->wait_w.deadline > cc_now_ns()) {
        rearm(c);
        return;
    }
    char msg[320];
    snprintf(msg, sizeof(msg), "timeout: no %s%s%s within %g s", c->wait_w.event[0] ? "'" : "event",
             c->wait_w.event, c->wait_w.event[0] ? "' event" : "",
             (double)(c->wait_w.deadline - c->wait_w.t0) / 1e9);
    resume_fail(&c->wait_w, msg);
}

static const struct cc_sio_cbs sio_cbs = {
    .on_connect = on_connect,
    .on_event = on_event,
    .on_ack = on_ack,
    .on_end = on_end,
    .on_timer = on_timer,
};

/* ---- waiting ---------------------------------------------------------------------------- */

static void plain_cancel(struct cc_waiter *w)
{
    struct plain_wait *pw = (struct plain_wait *)w;
    pw->fiber = NULL;
    pw->deadline = 0;
    rearm(pw->c);
}

static int plain_wait(lua_State *L, struct sioc *c, struct plain_wait *w, double timeout_s)
{
    struct cc_fiber *f = cc_fiber_check(L);
    w->c = c;
    w->fiber = f;
    w->t0 = cc_now_ns();
    w->deadline = timeout_s > 0 ? w->t0 + (uint64_t)(timeout_s * 1e9) : 0;
    w->waiter.cancel = plain_cancel;
    if (w == &c->wait_w) rearm(c);
    lua_settop(L, 1); /* the client stays referenced while the fiber waits */
    return cc_fiber_wait(L, f, &w->waiter);
}

static void call_cancel(struct cc_waiter *w)
{
    struct call_wait *cw = (struct call_wait *)w;
    struct sioc *c = cw->c;
    cw->fiber = NULL;
    cc_sio_cancel_ack(&c->sio, cw);
    c->calls_out--;
    cw->next = c->free_calls;
    c->free_calls = cw;
}

/* ---- Lua -------------------------------------------------------------------------------- */

static struct sioc *check(lua_State *L)
{
    return luaL_checkudata(L, 1, CLIENT_MT);
}

static const char *closed_text(struct sioc *c)
{
    if (c->ended) return c->errmsg;
    if (!c->started) return "the Socket.IO client is not connected";
    return "the Socket.IO client is not connected yet";
}

static const char *opt_string(lua_State *L, int t, const char *k)
{
    lua_getfield(L, t, k);
    const char *s = lua_isnil(L, -1) ? NULL : luaL_checkstring(L, -1);
    lua_pop(L, 1);
    return s;
}

static double opt_number(lua_State *L, int t, const char *k, double def)
{
    lua_getfield(L, t, k);
    double v = lua_isnil(L, -1) ? def : luaL_checknumber(L, -1);
    lua_pop(L, 1);
    return v;
}

static uint32_t ms_of_s(double s)
{
    return s <= 0 ? 0 : s > 4e6 ? 4000000000u : (uint32_t)(s * 1e3 + 0.5);
}

/* core.new(dispatch) -> a client, not yet connected; dispatch runs handlers (see above). */
static int l_new(lua_State *L)
{
    struct sioc *c = lua_newuserdata(L, sizeof(*c));
    memset(c, 0, sizeof(*c));
    c->vm = cc_vm_self;
    luaL_getmetatable(L, CLIENT_MT);
    lua_setmetatable(L, -2);
    if (lua_isfunction(L, 1)) {
        lua_createtable(L, 0, 1);
        lua_pushvalue(L, 1);
        lua_setfield(L, -2, "dispatch");
        lua_setfenv(L, -2);
        c->has_dispatch = true;
        lua_pushlightuserdata(L, &clients_key);
        lua_rawget(L, LUA_REGISTRYINDEX);
        lua_pushlightuserdata(L, c);
        lua_pushvalue(L, -3);
        lua_rawset(L, -3);
        lua_pop(L, 1);
    }
    return 1;
}

/*
 * client:connect{ tls=, host=, port=, authority=, target=, headers=, timeout=, insecure=,
 * ca_file=, cert_file=, key_file=, max_message=, namespace=, auth= (a JSON object) }
 * -> true, nil, ms | nil, error, ms
 */
static int l_connect(lua_State *L)
{
    struct sioc *c = check(L);
    cc_fiber_check(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    if (c->started) return luaL_error(L, "this Socket.IO client was connected before");
    if (!c->vm || !c->vm->loop) return luaL_error(L, "Socket.IO clients live in cicada's threads");
    struct cc_sio_opts o = {0};
    lua_getfield(L, 2, "tls");
    o.ws.tls = lua_toboolean(L, -1);
    lua_pop(L, 1);
    o.ws.host = opt_string(L, 2, "host");
    if (!o.ws.host) return luaL_error(L, "connect: no host");
    double port = opt_number(L, 2, "port", 0);
    if (port < 1 || port > 65535) return luaL_error(L, "connect: port out of range");
    o.ws.port = (uint16_t)port;
    o.ws.authority = opt_string(L, 2, "authority");
    o.ws.target = opt_string(L, 2, "target");
    o.ws.headers = opt_string(L, 2, "headers");
    if (o.ws.headers && strstr(o.ws.headers, "\r\n\r\n"))
        return luaL_error(L, "connect: bad headers");
    lua_getfield(L, 2, "insecure");
    o.ws.insecure = lua_toboolean(L, -1);
    lua_pop(L, 1);
    o.ws.ca_file = opt_string(L, 2, "ca_file");
    o.ws.cert_file = opt_string(L, 2, "cert_file");
    o.ws.key_file = opt_string(L, 2, "key_file");
    double max_message = opt_number(L, 2, "max_message", 0);
    o.ws.max_message = max_message > 0 ? (uint64_t)max_message : 0;
    o.nsp = opt_string(L, 2, "namespace");
    if (o.nsp && (o.nsp[0] != '/' || strlen(o.nsp) > 200 || strchr(o.nsp, ',')))
        return luaL_error(L, "connect: a namespace starts with '/', has no ',' and is at most "
                             "200 bytes");
    o.auth = opt_string(L, 2, "auth");
    o.timeout_ms = ms_of_s(opt_number(L, 2, "timeout", CC_WS_DEFAULT_TIMEOUT_MS / 1000.0));
    c->started = true;
    cc_sio_connect(&c->sio, c->vm, &o, &sio_cbs);
    return plain_wait(L, c, &c->conn_w, 0);
}

/* The binary attachments at |idx| (a list of strings, or nil) into |atts| (64 of them); the
 * list keeps the strings alive. Returns how many; raises past 64. */
static uint32_t check_atts(lua_State *L, int idx, struct cc_sio_att atts[64], const char *what)
{
    if (!lua_istable(L, idx)) return 0;
    size_t na = lua_objlen(L, idx);
    if (na > 64) luaL_error(L, "%s: at most 64 binary attachments", what);
    for (uint32_t n = 0; n < na; n++) {
        lua_rawgeti(L, idx, (int)n + 1);
        atts[n].data = luaL_checklstring(L, -1, &atts[n].len);
        lua_pop(L, 1);
    }
    return (uint32_t)na;
}

/* client:emit(json, atts) -> true | nil, error. |json| is the event's array, name first. */
static int l_emit(lua_State *L)
{
    struct sioc *c = check(L);
    size_t len;
    const char *json = luaL_checklstring(L, 2, &len);
    struct cc_sio_att atts[64];
    uint32_t n = check_atts(L, 3, atts, "emit");
    int rc = cc_sio_emit(&c->sio, json, len, atts, n, NULL, 0);
    if (rc == 0) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushnil(L);
    lua_pushstring(L, closed_text(c));
    return 2;
}

/*
 * client:call(json, atts, timeout_s, name) -> answer_json, atts, ms | nil, error, ms.
 * Emits with an acknowledgement and waits for it; the round trip is recorded as WSC |name|
 * (unless |name| is false).
 */
static int l_call(lua_State *L)
{
    struct sioc *c = check(L);
    struct cc_fiber *f = cc_fiber_check(L);
    size_t len, nl = 0;
    const char *json = luaL_checklstring(L, 2, &len);
    double timeout = luaL_optnumber(L, 4, 0);
    const char *name = lua_isstring(L, 5) ? lua_tolstring(L, 5, &nl) : NULL;
    struct cc_sio_att atts[64];
    uint32_t n = check_atts(L, 3, atts, "call");
    const struct cc_ikey *key =
        name && c->vm->rec ? cc_recorder_key(c->vm->rec, "WSC", 3, name, nl) : NULL;
    if (!cc_sio_connected(&c->sio)) {
        const char *msg = closed_text(c);
        if (key) cc_vm_record(c->vm, key, 0, 0, msg, strlen(msg));
        lua_pushnil(L);
        lua_pushstring(L, msg);
        lua_pushnumber(L, 0);
        return 3;
    }
    struct call_wait *cw = c->free_calls;
    if (cw)
        c->free_calls = cw->next;
    else
        cw = cc_xmalloc(sizeof(*cw));
    memset(cw, 0, sizeof(*cw));
    cw->c = c;
    cw->fiber = f;
    cw->key = key;
    cw->timeout_ms = ms_of_s(timeout);
    cw->waiter.cancel = call_cancel;
    int rc = cc_sio_emit(&c->sio, json, len, atts, n, cw, cw->timeout_ms);
    if (rc != 0) {
        cw->next = c->free_calls;
        c->free_calls = cw;
        const char *msg = closed_text(c);
        if (key) cc_vm_record(c->vm, key, 0, 0, msg, strlen(msg));
        lua_pushnil(L);
        lua_pushstring(L, msg);
        lua_pushnumber(L, 0);
        return 3;
    }
    c->calls_out++;
    lua_settop(L, 1);
    return cc_fiber_wait(L, f, &cw->waiter);
}

/* client:ack(id, json, atts) -> true | nil, error: answers the server's event |id|. */
static int l_ack(lua_State *L)
{
    struct sioc *c = check(L);
    double id = luaL_checknumber(L, 2);
    size_t len;
    const char *json = luaL_checklstring(L, 3, &len);
    struct cc_sio_att atts[64];
    uint32_t n = check_atts(L, 4, atts, "ack");
    if (id < 0 || id > (double)CC_SIO_MAX_ID) return luaL_argerror(L, 2, "not an ack id");
    if (cc_sio_ack(&c->sio, (uint64_t)id, json, len, atts, n) != 0) {
        lua_pushnil(L);
        lua_pushstring(L, closed_text(c));
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* client:handle(event, on): whether events of that name ("*": every one) go to dispatch. */
static int l_handle(lua_State *L)
{
    struct sioc *c = check(L);
    const char *name = luaL_checkstring(L, 2);
    bool on = lua_toboolean(L, 3);
    if (strcmp(name, "*") == 0) {
        c->handle_all = on;
        return 0;
    }
    for (uint32_t i = 0; i < c->nhandled; i++) {
        if (strcmp(c->handled[i], name) != 0) continue;
        if (!on) {
            cc_free(c->handled[i]);
            c->handled[i] = c->handled[--c->nhandled];
        }
        return 0;
    }
    if (!on) return 0;
    c->handled = cc_xrealloc(c->handled, (c->nhandled + 1) * sizeof(*c->handled));
    c->handled[c->nhandled++] = cc_xstrdup(name);
    return 0;
}

/* client:wait(event_or_nil, timeout_s) -> name, json, atts, ms | nil, error, ms */
static int l_wait(lua_State *L)
{
    struct sioc *c = check(L);
    size_t nl = 0;
    const char *name = luaL_optlstring(L, 2, "", &nl);
    double timeout = luaL_optnumber(L, 3, 0);
    if (nl >= sizeof(c->wait_w.event)) return luaL_argerror(L, 2, "event name too long");
    if (c->wait_w.fiber) return luaL_error(L, "another user already waits on this client");
    if (!cc_sio_connected(&c->sio)) {
        lua_pushnil(L);
        lua_pushstring(L, closed_text(c));
        lua_pushnumber(L, 0);
        return 3;
    }
    memcpy(c->wait_w.event, name, nl + 1);
    return plain_wait(L, c, &c->wait_w, timeout);
}

/* client:disconnect() -> true, nil, ms | nil, error, ms: leaves and closes, waiting for it. */
static int l_disconnect(lua_State *L)
{
    struct sioc *c = check(L);
    if (c->disc_w.fiber) return luaL_error(L, "another user is already disconnecting");
    if (cc_sio_disconnect(&c->sio) != 0) {
        lua_pushboolean(L, 1);
        return 1;
    }
    return plain_wait(L, c, &c->disc_w, 0);
}

/* client:info() -> connected, session id, calls awaiting their answer */
static int l_info(lua_State *L)
{
    struct sioc *c = check(L);
    lua_pushboolean(L, cc_sio_connected(&c->sio));
    lua_pushstring(L, c->sio.sid);
    lua_pushinteger(L, c->calls_out);
    return 3;
}

static void release(lua_State *L, struct sioc *c)
{
    if (c->started && !c->sio.released) {
        cc_sio_abort(&c->sio, "the Socket.IO client was closed"); /* waiting users resume */
        cc_sio_release(&c->sio);
    }
    if (!c->ended) {
        c->ended = true;
        snprintf(c->errmsg, sizeof(c->errmsg), "the Socket.IO client was closed");
    }
    (void)L;
}

/* client:close(): closes at once (leaving the namespace), without waiting. */
static int l_close(lua_State *L)
{
    release(L, check(L));
    return 0;
}

static int l_gc(lua_State *L)
{
    struct sioc *c = check(L);
    release(L, c);
    while (c->free_calls) {
        struct call_wait *cw = c->free_calls;
        c->free_calls = cw->next;
        cc_free(cw);
    }
    for (uint32_t i = 0; i < c->nhandled; i++)
        cc_free(c->handled[i]);
    cc_free(c->handled);
    c->handled = NULL;
    c->nhandled = 0;
    c->has_dispatch = false;
    return 0;
}

/* core.set_binder(fn): fn(dispatch, name, json, atts, id) returns the function a handler's
 * fiber runs. */
static int l_set_binder(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_pushlightuserdata(L, &binder_key);
    lua_pushvalue(L, 1);
    lua_rawset(L, LUA_REGISTRYINDEX);
    return 0;
}

static const luaL_Reg client_methods[] = {
    {"connect", l_connect},
    {"emit", l_emit},
    {"call", l_call},
    {"ack", l_ack},
    {"handle", l_handle},
    {"wait", l_wait},
    {"disconnect", l_disconnect},
    {"info", l_info},
    {"close", l_close},
    {NULL, NULL},
};

int socketio_lua_open(lua_State *L)
{
    if (luaL_newmetatable(L, CLIENT_MT)) {
        lua_newtable(L);
        luaL_register(L, NULL, client_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    lua_pushlightuserdata(L, &clients_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    if (lua_isnil(L, -1)) {
        lua_pushlightuserdata(L, &clients_key);
        lua_newtable(L);
        lua_createtable(L, 0, 1);
        lua_pushliteral(L, "v");
        lua_setfield(L, -2, "__mode");
        lua_setmetatable(L, -2);
        lua_rawset(L, LUA_REGISTRYINDEX);
    }
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushcfunction(L, l_new);
    lua_setfield(L, -2, "new");
    lua_pushcfunction(L, l_set_binder);
    lua_setfield(L, -2, "set_binder");
    return 1;
}
