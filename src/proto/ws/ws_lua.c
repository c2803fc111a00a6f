/* SPDX-License-Identifier: MIT */
/*
 * ws_lua.c: `cicada.ws.core`, the C half of the WebSocket client in Lua: connections whose
 * connect, receive, ping and close suspend the calling user until they finish. Messages that
 * arrive while nobody receives wait in a queue of the connection; a user waiting in receive
 * gets the next one straight from the connection's buffer. Statistics and names are in
 * lua/cicada/websocket.lua.
 */
#include "proto/ws/ws_lua.h"
#include "proto/ws/ws.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#define CONN_MT "cicada.ws.conn"

#define DEFAULT_MAX_QUEUE 1024

struct wsl;

enum wait_kind { W_NONE, W_CONNECT, W_RECV, W_PING, W_CLOSE, W_DRAIN };

struct wsl_wait {
    struct cc_waiter waiter; /* first: the fiber's view */
    struct cc_fiber *fiber;  /* NULL when nobody waits */
    struct wsl *c;
    uint8_t kind;
    uint64_t t0;       /* when the wait began (ns) */
    uint64_t deadline; /* ns; 0: none */
};

/* The userdata. */
struct wsl {
    struct cc_ws *ws;            /* NULL once the driver let go of it */
    struct wsl_wait rx, ctl, tx; /* a receive; a connect, ping or close; a send held back */
    /* messages nobody received yet: [u32 length][u8 binary][bytes]... from q_head to q_len */
    char *q;
    size_t q_head, q_len, q_cap;
    uint32_t q_count, max_queue;
    uint64_t dropped; /* messages that found the queue full */
    bool opened;      /* on_open(0) came */
    bool ended;       /* on_open(error) or on_end came */
    int end_status;
    uint16_t close_code;
    char protocol[128];
    char close_reason[124];
    char errmsg[512];
};

/* ---- results -------------------------------------------------------------------------------- */

static double ms_since(uint64_t t0)
{
    return (double)(cc_now_ns() - t0) / 1e6;
}

/* The sentence for a connection that is over, for an operation that needed it open. */
static const char *closed_text(struct wsl *c, char *buf, size_t len)
{
    if (c->end_status != 0 && c->errmsg[0]) return c->errmsg;
    if (c->close_code) {
        snprintf(buf, len, "the connection is closed (code %u%s%s)", c->close_code,
                 c->close_reason[0] ? ": " : "", c->close_reason);
        return buf;
    }
    return "the connection is closed";
}

static void arm(struct wsl *c);

/* Takes |w|'s fiber off it (the waker then resumes it). */
static struct cc_fiber *take(struct wsl_wait *w)
{
    struct cc_fiber *f = w->fiber;
    w->fiber = NULL;
    w->kind = W_NONE;
    w->deadline = 0;
    return f;
}

static void resume_fail(struct wsl_wait *w, const char *msg)
{
    uint64_t t0 = w->t0;
    struct cc_fiber *f = take(w);
    if (!f) return;
    lua_pushnil(f->co);
    lua_pushstring(f->co, msg);
    lua_pushnumber(f->co, ms_since(t0));
    cc_fiber_resume(f, 3);
}

/* ---- the queue ---------------------------------------------------------------------------- */

static void q_push(struct wsl *c, bool binary, const char *data, size_t len)
{
    if (c->q_count >= c->max_queue || len > UINT32_MAX) {
        c->dropped++;
        return;
    }
    if (c->q_head > 0 && c->q_head >= c->q_len / 2) { /* slide what is left to the front */
        memmove(c->q, c->q + c->q_head, c->q_len - c->q_head);
        c->q_len -= c->q_head;
        c->q_head = 0;
    }
    size_t need = c->q_len + 5 + len;
    if (need > c->q_cap) cc_grow((void **)&c->q, &c->q_cap, need, 1);
    uint32_t l = (uint32_t)len;
    memcpy(c->q + c->q_len, &l, 4);
    c->q[c->q_len + 4] = binary ? 1 : 0;
    if (len) memcpy(c->q + c->q_len + 5, data, len);
    c->q_len = need;
    c->q_count++;
}

/* Pushes the oldest queued message on |L|: data and kind. */
static void q_pop(struct wsl *c, lua_State *L)
{
    uint32_t l;
    memcpy(&l, c->q + c->q_head, 4);
    bool binary = c->q[c->q_head + 4] != 0;
    lua_pushlstring(L, c->q + c->q_head + 5, l);
    lua_pushstring(L, binary ? "binary" : "text");
    c->q_head += 5 + (size_t)l;
    c->q_count--;
    if (c->q_count == 0) {
        c->q_head = c->q_len = 0;
        if (c->q_cap > (1u << 20)) {
            cc_free(c->q);
            c->q = NULL;
            c->q_cap = 0;
        }
    }
}

/* ---- the driver's callbacks ---------------------------------------------------------------- */

static void copy_end(struct wsl *c, int status)
{
    c->ended = true;
    c->end_status = status;
    if (c->ws) {
        snprintf(c->errmsg, sizeof(c->errmsg), "%s", cc_ws_error(c->ws));
        c->close_code = cc_ws_close_code(c->ws);
        snprintf(c->close_reason, sizeof(c->close_reason), "%s", cc_ws_close_reason(c->ws));
    }
}

static void on_open(struct cc_ws *ws, int status)
{
    struct wsl *c = cc_ws_data(ws);
    if (status == 0) {
        c->opened = true;
        snprintf(c->protocol, sizeof(c->protocol), "%s", cc_ws_protocol(ws));
        if (c->ctl.kind == W_CONNECT) {
            uint64_t t0 = c->ctl.t0;
            struct cc_fiber *f = take(&c->ctl);
            if (f) {
                lua_pushboolean(f->co, 1);
                lua_pushnil(f->co);
                lua_pushnumber(f->co, ms_since(t0));
                cc_fiber_resume(f, 3);
            }
        }
        return;
    }
    copy_end(c, status);
    if (c->ctl.kind == W_CONNECT) resume_fail(&c->ctl, c->errmsg);
}

static void on_message(struct cc_ws *ws, bool binary, const char *data, size_t len)
{
    struct wsl *c = cc_ws_data(ws);
    if (c->rx.fiber && c->q_count == 0) {
        uint64_t t0 = c->rx.t0;
        struct cc_fiber *f = take(&c->rx);
        lua_pushlstring(f->co, data, len);
        lua_pushstring(f->co, binary ? "binary" : "text");
        lua_pushnumber(f->co, ms_since(t0));
        arm(c);
        cc_fiber_resume(f, 3);
        return;
    }
    q_push(c, binary, data, len);
}

static void on_pong(struct cc_ws *ws, const char *data, size_t len)
{
    (void)data;
    (void)len;
    struct wsl *c = cc_ws_data(ws);
    if (c->ctl.kind != W_PING) return; /* unsolicited: a heartbeat of the server's */
    uint64_t t0 = c->ctl.t0;
    struct cc_fiber *f = take(&c->ctl);
    arm(c);
    if (!f) return;
    lua_pushnumber(f->co, ms_since(t0));
    cc_fiber_resume(f, 1);
}

static void on_end(struct cc_ws *ws, int status)
{
    struct wsl *c = cc_ws_data(ws);
    copy_end(c, status);
    char buf[256];
    const char *msg = closed_text(c, buf, sizeof(buf));
    if (c->ctl.kind == W_CLOSE && status == 0) {
        uint64_t t0 = c->ctl.t0;
        struct cc_fiber *f = take(&c->ctl);
        if (f) {
            lua_pushboolean(f->co, 1);
            lua_pushnil(f->co);
            lua_pushnumber(f->co, ms_since(t0));
            cc_fiber_resume(f, 3);
        }
    } else if (c->ctl.fiber) {
        resume_fail(&c->ctl, msg);
    }
    if (c->rx.fiber) resume_fail(&c->rx, msg);
    if (c->tx.fiber) resume_fail(&c->tx, msg);
}

/* The socket took what was queued: a user held back in send() goes on. */
static void on_drain(struct cc_ws *ws)
{
    struct wsl *c = cc_ws_data(ws);
    if (!c->tx.fiber) return;
    uint64_t t0 = c->tx.t0;
    struct cc_fiber *f = take(&c->tx);
    lua_pushboolean(f->co, 1);
    lua_pushnil(f->co);
    lua_pushnumber(f->co, ms_since(t0));
    cc_fiber_resume(f, 3);
}

static void on_timer(struct cc_ws *ws)
{
    struct wsl *c = cc_ws_data(ws);
    uint64_t now = cc_now_ns();
    char msg[96];
    if (c->rx.fiber && c->rx.deadline && c->rx.deadline <= now) {
        snprintf(msg, sizeof(msg), "timeout: no message within %g s",
                 (double)(c->rx.deadline - c->rx.t0) / 1e9);
        resume_fail(&c->rx, msg);
    }
    if (c->ctl.fiber && c->ctl.deadline && c->ctl.deadline <= now) {
        snprintf(msg, sizeof(msg), "timeout: no pong within %g s",
                 (double)(c->ctl.deadline - c->ctl.t0) / 1e9);
        resume_fail(&c->ctl, msg);
    }
    if (c->tx.fiber && c->tx.deadline && c->tx.deadline <= now) {
        snprintf(msg, sizeof(msg), "timeout: the server read nothing for %g s",
                 (double)(c->tx.deadline - c->tx.t0) / 1e9);
        resume_fail(&c->tx, msg);
    }
    arm(c);
}

static const struct cc_ws_cbs ws_cbs = {
    .on_open = on_open,
    .on_message = on_message,
    .on_pong = on_pong,
    .on_end = on_end,
    .on_timer = on_timer,
    .on_drain = on_drain,
};

/* Arms the driver's timer for the nearest deadline of a waiting fiber. */
static void arm(struct wsl *c)
{
    if (!c->ws || !cc_ws_is_open(c->ws)) return;
    uint64_t d = 0;
    if (c->rx.fiber && c->rx.deadline) d = c->rx.deadline;
    if (c->ctl.fiber && c->ctl.deadline && (!d || c->ctl.deadline < d)) d = c->ctl.deadline;
    if (c->tx.fiber && c->tx.deadline && (!d || c->tx.deadline < d)) d = c->tx.deadline;
    if (!d) {
        cc_ws_set_timer(c->ws, 0);
        return;
    }
    uint64_t now = cc_now_ns();
    uint64_t ms = d > now ? (d - now + 999999) / 1000000 : 0;
    cc_ws_set_timer(c->ws, ms ? ms : 1);
}

/* A fiber waiting on the connection was killed. */
static void cancel(struct cc_waiter *w)
{
    struct wsl_wait *ww = (struct wsl_wait *)w;
    ww->fiber = NULL;
    ww->kind = W_NONE;
    ww->deadline = 0;
    arm(ww->c);
}

static int wait_on(lua_State *L, struct wsl *c, struct wsl_wait *w, uint8_t kind, double timeout_s)
{
    struct cc_fiber *f = cc_fiber_check(L);
    w->c = c;
    w->fiber = f;
    w->kind = kind;
    w->t0 = cc_now_ns();
    w->deadline = timeout_s > 0 ? w->t0 + (uint64_t)(timeout_s * 1e9) : 0;
    w->waiter.cancel = cancel;
    arm(c);
    lua_settop(L, 1); /* the connection stays referenced while the fiber waits */
    return cc_fiber_wait(L, f, &w->waiter);
}

/* ---- Lua ---------------------------------------------------------------------------------- */

static struct wsl *check(lua_State *L)
{
    return luaL_checkudata(L, 1, CONN_MT);
}

static const char *opt_string(lua_State *L, int t, const char *k)
{
    lua_getfield(L, t, k);
    const char *s = lua_isnil(L, -1) ? NULL : luaL_checkstring(L, -1);
    lua_pop(L, 1); /* the table keeps the string alive */
    return s;
}

static double opt_number(lua_State *L, int t, const char *k, double def)
{
    lua_getfield(L, t, k);
    double v = lua_isnil(L, -1) ? def : luaL_checknumber(L, -1);
    lua_pop(L, 1);
    return v;
}

/* core.new() -> a connection, not yet connected. */
static int l_new(lua_State *L)
{
    struct wsl *c = lua_newuserdata(L, sizeof(*c));
    memset(c, 0, sizeof(*c));
    c->max_queue = DEFAULT_MAX_QUEUE;
    luaL_getmetatable(L, CONN_MT);
    lua_setmetatable(L, -2);
    return 1;
}

/*
 * conn:connect{ tls=, host=, port=, authority=, target=, protocols=, headers=, timeout=,
 * insecure=, ca_file=, cert_file=, key_file=, max_message=, max_queue= }
 * -> true, nil, ms | nil, error, ms. Waits for the handshake.
 */
static int l_connect(lua_State *L)
{
    struct wsl *c = check(L);
    cc_fiber_check(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    if (c->ws || c->opened || c->ended) return luaL_error(L, "this WebSocket was connected before");
    struct cc_ws_opts o = {0};
    lua_getfield(L, 2, "tls");
    o.tls = lua_toboolean(L, -1);
    lua_pop(L, 1);
    o.host = opt_string(L, 2, "host");
    if (!o.host) return luaL_error(L, "connect: no host");
    double port = opt_number(L, 2, "port", 0);
    if (port < 1 || port > 65535) return luaL_error(L, "connect: port out of range");
    o.port = (uint16_t)port;
    o.authority = opt_string(L, 2, "authority");
    o.target = opt_string(L, 2, "target");
    o.protocols = opt_string(L, 2, "protocols");
    o.headers = opt_string(L, 2, "headers");
    double timeout = opt_number(L, 2, "timeout", CC_WS_DEFAULT_TIMEOUT_MS / 1000.0);
    o.connect_timeout_ms = timeout <= 0    ? 0
                           : timeout > 4e6 ? 4000000000u
                                           : (uint32_t)(timeout * 1e3);
    lua_getfield(L, 2, "insecure");
    o.insecure = lua_toboolean(L, -1);
    lua_pop(L, 1);
    o.ca_file = opt_string(L, 2, "ca_file");
    o.cert_file = opt_string(L, 2, "cert_file");
    o.key_file = opt_string(L, 2, "key_file");
    double max_message = opt_number(L, 2, "max_message", 0);
    o.max_message = max_message > 0 ? (uint64_t)max_message : 0;
    double max_queue = opt_number(L, 2, "max_queue", DEFAULT_MAX_QUEUE);
    c->max_queue = max_queue < 0 ? 0 : max_queue > 1e9 ? 1000000000u : (uint32_t)max_queue;
    /* header lines are checked one by one in Lua; this guards the end of the block */
    if (o.headers && strstr(o.headers, "\r\n\r\n")) return luaL_error(L, "connect: bad headers");
    c->ws = cc_ws_open(cc_vm_self, &o, &ws_cbs, c);
    cc_ws_set_backref(c->ws, &c->ws);
    return wait_on(L, c, &c->ctl, W_CONNECT, 0);
}

/* conn:send(data, binary, timeout_s) -> true | nil, error; and the ms it waited when it did.
 * Waits (up to timeout_s, 0: no limit) while the socket's queue is full. */
static int l_send(lua_State *L)
{
    struct wsl *c = check(L);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    bool binary = lua_toboolean(L, 3);
    double timeout = luaL_optnumber(L, 4, 0);
    char buf[256];
    int rc = c->ws ? cc_ws_send(c->ws, binary, data, len) : CC_ECLOSED;
    if (rc == 0) {
        /* a server that does not read holds the sender back, not the sender's memory */
        if (cc_ws_blocked(c->ws) && !c->tx.fiber && cc_vm_self && cc_vm_self->current &&
            cc_vm_self->current->co == L)
            return wait_on(L, c, &c->tx, W_DRAIN, timeout);
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushnil(L);
    lua_pushstring(L, c->opened || c->ended ? closed_text(c, buf, sizeof(buf))
                                            : "the WebSocket is not connected");
    return 2;
}

/*
 * conn:receive(timeout_s) -> data, "text"|"binary", waited_ms | nil, error, waited_ms.
 * Queued messages come first; then it waits, up to timeout_s when given.
 */
static int l_receive(lua_State *L)
{
    struct wsl *c = check(L);
    double timeout = luaL_optnumber(L, 2, 0);
    if (c->q_count) {
        q_pop(c, L);
        lua_pushnumber(L, 0);
        return 3;
    }
    char buf[256];
    if (!c->ws || c->ended || !cc_ws_is_open(c->ws)) {
        lua_pushnil(L);
        lua_pushstring(L, c->opened || c->ended ? closed_text(c, buf, sizeof(buf))
                                                : "the WebSocket is not connected");
        lua_pushnumber(L, 0);
        return 3;
    }
    if (c->rx.fiber) return luaL_error(L, "another user is already receiving on this WebSocket");
    return wait_on(L, c, &c->rx, W_RECV, timeout);
}

/* conn:ping(payload, timeout_s) -> round-trip ms | nil, error, ms */
static int l_ping(lua_State *L)
{
    struct wsl *c = check(L);
    size_t len = 0;
    const char *data = luaL_optlstring(L, 2, "", &len);
    double timeout = luaL_optnumber(L, 3, 0);
    if (len > 125) return luaL_argerror(L, 2, "a ping carries at most 125 bytes");
    if (c->ctl.fiber) return luaL_error(L, "another user is already waiting on this WebSocket");
    char buf[256];
    int rc = c->ws ? cc_ws_ping(c->ws, data, len) : CC_ECLOSED;
    if (rc != 0) {
        lua_pushnil(L);
        lua_pushstring(L, closed_text(c, buf, sizeof(buf)));
        lua_pushnumber(L, 0);
        return 3;
    }
    return wait_on(L, c, &c->ctl, W_PING, timeout);
}

/* conn:close(code, reason, timeout_s) -> true, nil, ms | nil, error, ms. Waits for the server's
 * close frame. */
static int l_close(lua_State *L)
{
    struct wsl *c = check(L);
    lua_Integer code = luaL_optinteger(L, 2, 1000);
    size_t rl = 0;
    const char *reason = luaL_optlstring(L, 3, "", &rl);
    double timeout = luaL_optnumber(L, 4, 0);
    if (code < 0 || code > 65535) return luaL_argerror(L, 2, "not a close code");
    if (c->ctl.fiber) return luaL_error(L, "another user is already waiting on this WebSocket");
    if (!c->ws || !cc_ws_is_open(c->ws)) { /* closed already: nothing to wait for */
        lua_pushboolean(L, 1);
        return 1;
    }
    uint32_t ms = timeout <= 0 ? 0 : timeout > 4e6 ? 4000000000u : (uint32_t)(timeout * 1e3);
    int rc = cc_ws_close(c->ws, (uint16_t)code, reason, rl, ms);
    if (rc == UV_EINVAL)
        return luaL_error(L, "close: code %d is reserved, or the reason is over 123 bytes",
                          (int)code);
    if (rc != 0) {
        lua_pushboolean(L, 1);
        return 1;
    }
    return wait_on(L, c, &c->ctl, W_CLOSE, 0);
}

/* conn:info() -> open, subprotocol, close code, close reason, queued messages, dropped */
static int l_info(lua_State *L)
{
    struct wsl *c = check(L);
    lua_pushboolean(L, c->ws && cc_ws_is_open(c->ws));
    lua_pushstring(L, c->protocol);
    if (c->close_code)
        lua_pushinteger(L, c->close_code);
    else if (c->ws && cc_ws_close_code(c->ws))
        lua_pushinteger(L, cc_ws_close_code(c->ws));
    else
        lua_pushnil(L);
    lua_pushstring(L, c->close_reason[0] || !c->ws ? c->close_reason : cc_ws_close_reason(c->ws));
    lua_pushinteger(L, c->q_count);
    lua_pushnumber(L, (double)c->dropped);
    return 6;
}

/* conn:abort(): closes at once, without waiting (also what collection does). */
static int l_abort(lua_State *L)
{
    struct wsl *c = check(L);
    if (c->ws) {
        cc_ws_release(c->ws);
        c->ws = NULL;
    }
    if (!c->ended) {
        c->ended = true;
        if (!c->errmsg[0]) snprintf(c->errmsg, sizeof(c->errmsg), "the connection was closed");
    }
    return 0;
}

static int l_gc(lua_State *L)
{
    struct wsl *c = check(L);
    if (c->ws) cc_ws_release(c->ws);
    c->ws = NULL;
    cc_free(c->q);
    c->q = NULL;
    return 0;
}

static const luaL_Reg conn_methods[] = {
    {"connect", l_connect}, {"send", l_send}, {"receive", l_receive}, {"ping", l_ping},
    {"close", l_close},     {"info", l_info}, {"abort", l_abort},     {NULL, NULL},
};

int ws_lua_open(lua_State *L)
{
    if (luaL_newmetatable(L, CONN_MT)) {
        lua_newtable(L);
        luaL_register(L, NULL, conn_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushcfunction(L, l_new);
    lua_setfield(L, -2, "new");
    return 1;
}
