/* SPDX-License-Identifier: MIT */
/*
 * memcached.c: a memcached client for cicada, written against include/cicada.h as a Lua C
 * module. It speaks memcached's text protocol over cicada's transport, makes the calling user
 * wait (and only it) for each reply, and records every command as a request event:
 *
 *   local memcached = require "memcached"
 *   local mc, err = memcached.connect("127.0.0.1", 11211, { timeout = 5 })
 *   mc:set("k", "v", 60)       --> true, or nil and the error ("NOT_STORED" is a failure)
 *   mc:get("k")                --> "v"; nil for a miss; nil and the error on failure
 *   mc:delete("k")             --> true, or false when the key was not there
 *   mc:incr("n", 1)            --> the new value, or nil when the key was not there
 *   mc:close()
 *
 * Statistics: request_type "memcached", named after the command ("get", "set", ...) and
 * "connect". One command at a time per client, as with one connection.
 */
#include <cicada.h>

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLIENT_MT "cicada.example.memcached"

enum op_kind { OP_NONE, OP_CONNECT, OP_GET, OP_STORE, OP_DELETE, OP_INCR };

struct client {
    cicada_conn *conn;
    bool open;        /* connected and not ended */
    int self_ref;     /* while connecting: the registry reference to this client */
    double timeout_s; /* per command */
    /* the command in flight */
    enum op_kind op;
    const char *op_name; /* for the statistics */
    cicada_user *user;   /* NULL once the user went away (killed) */
    cicada_wait wait;
    cicada_timer *timer;
    uint64_t t0;
    /* the reply so far */
    char *buf;
    size_t len, cap;
};

/* ---- finishing a command ------------------------------------------------------------------ */

static void stop_timer(struct client *c)
{
    cicada_timer_stop(c->timer);
    c->timer = NULL;
}

/*
 * Ends the command in flight: records it and resumes the user with |nres| values already
 * pushed on its Lua state (by the caller), or drops them when the user was killed.
 */
static void finish(struct client *c, int nres, size_t length, const char *error)
{
    cicada_user *u = c->user;
    double ms = (double)(cicada_now_ns() - c->t0) / 1e6;
    stop_timer(c);
    c->op = OP_NONE;
    c->user = NULL;
    cicada_record(u, "memcached", c->op_name, ms, length, error);
    if (u) cicada_resume(u, nres);
}

/* Fails the command in flight with |msg|: the user gets nil and the message. */
static void fail(struct client *c, const char *msg)
{
    if (c->self_ref != LUA_NOREF) { /* a connect that timed out */
        luaL_unref(cicada_lua(), LUA_REGISTRYINDEX, c->self_ref);
        c->self_ref = LUA_NOREF;
    }
    if (c->op == OP_NONE) return;
    if (c->user) {
        lua_State *L = cicada_user_lua(c->user);
        lua_pushnil(L);
        lua_pushstring(L, msg);
    }
    finish(c, 2, 0, msg);
}

/* A broken connection or a reply we cannot trust: the client is done. */
static void fail_and_close(struct client *c, const char *msg)
{
    fail(c, msg);
    if (c->conn) cicada_conn_close(c->conn);
    c->conn = NULL;
    c->open = false;
}

/* ---- replies -------------------------------------------------------------------------------- */

/* The first line of the buffer (without CRLF) and its length with it, or 0 if incomplete. */
static size_t line_end(const struct client *c)
{
    for (size_t i = 0; i + 1 < c->len; i++)
        if (c->buf[i] == '\r' && c->buf[i + 1] == '\n') return i + 2;
    return 0;
}

static void consume(struct client *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

/* An error line: ERROR, CLIENT_ERROR ..., SERVER_ERROR ... */
static bool error_line(const char *s, size_t n)
{
    return (n >= 5 && memcmp(s, "ERROR", 5) == 0) ||
           (n >= 12 && memcmp(s, "CLIENT_ERROR", 12) == 0) ||
           (n >= 12 && memcmp(s, "SERVER_ERROR", 12) == 0);
}

static bool line_is(const char *s, size_t n, const char *word)
{
    return n == strlen(word) && memcmp(s, word, n) == 0;
}

/*
 * Tries to complete the command in flight from the bytes buffered. Returns 1 when done, 0 when
 * more bytes are needed, -1 after failing on a malformed reply.
 */
static int parse_reply(struct client *c)
{
    size_t le = line_end(c);
    if (!le) return c->len > 4096 ? (fail_and_close(c, "memcached: reply line too long"), -1) : 0;
    const char *s = c->buf;
    size_t n = le - 2;
    char msg[300];
    lua_State *L = c->user ? cicada_user_lua(c->user) : NULL;

    if (error_line(s, n)) {
        snprintf(msg, sizeof(msg), "memcached: %.*s", (int)(n > 200 ? 200 : n), s);
        consume(c, le);
        fail(c, msg);
        return 1;
    }
    switch (c->op) {
    case OP_GET:
        if (line_is(s, n, "END")) { /* a miss: a success with no value */
            consume(c, le);
            if (L) lua_pushnil(L);
            finish(c, 1, 0, NULL);
            return 1;
        }
        if (n > 6 && memcmp(s, "VALUE ", 6) == 0) {
            /* VALUE <key> <flags> <bytes>[ <cas>] */
            char line[300];
            if (n >= sizeof(line)) break;
            memcpy(line, s, n);
            line[n] = '\0';
            char key[251];
            unsigned flags;
            unsigned long bytes;
            if (sscanf(line, "VALUE %250s %u %lu", key, &flags, &bytes) != 3) break;
            if (bytes > 64ul * 1024 * 1024) break;
            size_t need = le + bytes + 2 + 5; /* data, CRLF, "END\r\n" */
            if (c->len < need) return 0;
            if (memcmp(c->buf + le + bytes, "\r\nEND\r\n", 7) != 0) break;
            if (L) lua_pushlstring(L, c->buf + le, bytes);
            consume(c, need);
            finish(c, 1, bytes, NULL);
            return 1;
        }
        break;
    case OP_STORE:
        if (line_is(s, n, "STORED")) {
            consume(c, le);
            if (L) lua_pushboolean(L, 1);
            finish(c, 1, 0, NULL);
            return 1;
        }
        if (line_is(s, n, "NOT_STORED") || line_is(s, n, "EXISTS") || line_is(s, n, "NOT_FOUND")) {
            snprintf(msg, sizeof(msg), "memcached: %.*s", (int)n, s);
            consume(c, le);
            fail(c, msg);
            return 1;
        }
        break;
    case OP_DELETE:
        if (line_is(s, n, "DELETED") || line_is(s, n, "NOT_FOUND")) {
            bool deleted = n == 7;
            consume(c, le);
            if (L) lua_pushboolean(L, deleted);
            finish(c, 1, 0, NULL);
            return 1;
        }
        break;
    case OP_INCR:
        if (line_is(s, n, "NOT_FOUND")) {
            consume(c, le);
            if (L) lua_pushnil(L);
            finish(c, 1, 0, NULL);
            return 1;
        }
        if (n > 0 && n < 21 && strspn(s, "0123456789") == n) {
            char num[24];
            memcpy(num, s, n);
            num[n] = '\0';
            consume(c, le);
            if (L) lua_pushnumber(L, strtod(num, NULL));
            finish(c, 1, n, NULL);
            return 1;
        }
        break;
    default:
        break;
    }
    snprintf(msg, sizeof(msg), "memcached: unexpected reply to %s: %.*s", c->op_name,
             (int)(n > 100 ? 100 : n), s);
    fail_and_close(c, msg);
    return -1;
}

/* ---- the connection's callbacks -------------------------------------------------------------- */

static void on_connect(cicada_conn *conn, int status, void *data)
{
    struct client *c = data;
    (void)conn;
    int ref = c->self_ref;
    c->self_ref = LUA_NOREF;
    if (c->user && status == 0) lua_rawgeti(cicada_user_lua(c->user), LUA_REGISTRYINDEX, ref);
    luaL_unref(cicada_lua(), LUA_REGISTRYINDEX, ref);
    if (status != 0) {
        char msg[300];
        snprintf(msg, sizeof(msg), "%s", cicada_conn_error(c->conn));
        fail_and_close(c, msg);
        return;
    }
    c->open = true;
    finish(c, 1, 0, NULL); /* with the client pushed above */
}

static void on_read(cicada_conn *conn, const char *bytes, size_t len, void *data)
{
    struct client *c = data;
    (void)conn;
    if (c->op == OP_NONE) {
        fail_and_close(c, "memcached: bytes from the server with no command in flight");
        return;
    }
    if (c->len + len > c->cap) {
        size_t cap = c->cap ? c->cap : 1024;
        while (cap < c->len + len)
            cap *= 2;
        char *nb = realloc(c->buf, cap);
        if (!nb) {
            fail_and_close(c, "memcached: out of memory");
            return;
        }
        c->buf = nb;
        c->cap = cap;
    }
    memcpy(c->buf + c->len, bytes, len);
    c->len += len;
    while (c->op != OP_NONE && c->len > 0)
        if (parse_reply(c) <= 0) break;
}

static void on_end(cicada_conn *conn, int status, void *data)
{
    struct client *c = data;
    (void)conn;
    char msg[300];
    if (status == 0)
        snprintf(msg, sizeof(msg), "memcached: the server closed the connection");
    else
        snprintf(msg, sizeof(msg), "%s", cicada_conn_error(c->conn));
    fail_and_close(c, msg);
}

static const struct cicada_conn_cbs conn_cbs = {
    .on_connect = on_connect,
    .on_read = on_read,
    .on_end = on_end,
};

/* ---- waiting ------------------------------------------------------------------------------- */

/* The user was killed while it waited: the command goes on, its result is dropped. */
static void cancel(cicada_wait *w)
{
    struct client *c = (struct client *)((char *)w - offsetof(struct client, wait));
    c->user = NULL;
}

static void timed_out(cicada_timer *t, void *arg)
{
    struct client *c = arg;
    (void)t;
    char msg[100];
    snprintf(msg, sizeof(msg), "memcached: no reply to %s within %g s", c->op_name, c->timeout_s);
    fail_and_close(c, msg); /* the reply may still come: the connection cannot be trusted */
}

/* Starts waiting for the reply to the command just sent. */
static int await_reply(lua_State *L, struct client *c, enum op_kind op, const char *name)
{
    c->op = op;
    c->op_name = name;
    c->user = cicada_user_current(L);
    c->wait.cancel = cancel;
    c->t0 = cicada_now_ns();
    c->timer = cicada_timer_start((uint64_t)(c->timeout_s * 1000), 0, timed_out, c);
    return cicada_suspend(L, c->user, &c->wait);
}

/* ---- Lua ----------------------------------------------------------------------------------- */

static struct client *check_client(lua_State *L)
{
    struct client *c = luaL_checkudata(L, 1, CLIENT_MT);
    if (c->op != OP_NONE) luaL_error(L, "memcached: one command at a time per client");
    return c;
}

/* Sends |cmd| (and |data|, for a store) or returns nil and the error at once. */
static int send_command(lua_State *L, struct client *c, const char *cmd, size_t cmdlen)
{
    if (!c->open || cicada_conn_write(c->conn, cmd, cmdlen) != 0) {
        lua_pushnil(L);
        lua_pushstring(L, "memcached: the connection is closed");
        return 2;
    }
    return 0;
}

static const char *check_key(lua_State *L, int idx)
{
    size_t n;
    const char *k = luaL_checklstring(L, idx, &n);
    if (n == 0 || n > 250 || strcspn(k, " \r\n\t") != n)
        luaL_argerror(L, idx, "a key is 1 to 250 bytes without spaces or control characters");
    return k;
}

/* memcached.connect(host, port[, { timeout = seconds, tls = bool, insecure = bool }]) */
static int l_connect(lua_State *L)
{
    const char *host = luaL_checkstring(L, 1);
    int port = (int)luaL_checkinteger(L, 2);
    luaL_argcheck(L, port > 0 && port < 65536, 2, "a port from 1 to 65535");
    double timeout = 10;
    bool tls = false, insecure = false;
    if (lua_istable(L, 3)) {
        lua_getfield(L, 3, "timeout");
        timeout = luaL_optnumber(L, -1, timeout);
        lua_getfield(L, 3, "tls");
        tls = lua_toboolean(L, -1);
        lua_getfield(L, 3, "insecure");
        insecure = lua_toboolean(L, -1);
        lua_pop(L, 3);
    }
    luaL_argcheck(L, timeout > 0, 3, "timeout must be positive");
    cicada_user_current(L); /* raises outside a user, before anything starts */
    struct client *c = lua_newuserdata(L, sizeof(*c));
    memset(c, 0, sizeof(*c));
    c->self_ref = LUA_NOREF;
    c->timeout_s = timeout;
    luaL_getmetatable(L, CLIENT_MT);
    lua_setmetatable(L, -2);
    struct cicada_conn_opts o = {
        .host = host,
        .port = (uint16_t)port,
        .tls = tls,
        .insecure = insecure,
        .connect_timeout_ms = (uint32_t)(timeout * 1000),
    };
    c->conn = cicada_conn_open(&o, &conn_cbs, c);
    /* a reference keeps the client from the garbage collector until on_connect returns it */
    c->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return await_reply(L, c, OP_CONNECT, "connect");
}

static int l_get(lua_State *L)
{
    struct client *c = check_client(L);
    const char *key = check_key(L, 2);
    char cmd[270];
    int n = snprintf(cmd, sizeof(cmd), "get %s\r\n", key);
    int r = send_command(L, c, cmd, (size_t)n);
    return r ? r : await_reply(L, c, OP_GET, "get");
}

/* client:set(key, value[, exptime]), and add/replace/append/prepend alike */
static int store(lua_State *L, const char *verb)
{
    struct client *c = check_client(L);
    const char *key = check_key(L, 2);
    size_t vl;
    const char *value = luaL_checklstring(L, 3, &vl);
    long exptime = (long)luaL_optinteger(L, 4, 0);
    char head[300];
    int n = snprintf(head, sizeof(head), "%s %s 0 %ld %zu\r\n", verb, key, exptime, vl);
    if (!c->open) return send_command(L, c, head, (size_t)n);
    if (cicada_conn_write(c->conn, head, (size_t)n) != 0 ||
        cicada_conn_write(c->conn, value, vl) != 0 || cicada_conn_write(c->conn, "\r\n", 2) != 0)
        return send_command(L, c, NULL, 0);
    return await_reply(L, c, OP_STORE, verb);
}

static int l_set(lua_State *L)
{
    return store(L, "set");
}

static int l_add(lua_State *L)
{
    return store(L, "add");
}

static int l_delete(lua_State *L)
{
    struct client *c = check_client(L);
    const char *key = check_key(L, 2);
    char cmd[270];
    int n = snprintf(cmd, sizeof(cmd), "delete %s\r\n", key);
    int r = send_command(L, c, cmd, (size_t)n);
    return r ? r : await_reply(L, c, OP_DELETE, "delete");
}

static int l_incr(lua_State *L)
{
    struct client *c = check_client(L);
    const char *key = check_key(L, 2);
    lua_Integer by = luaL_optinteger(L, 3, 1);
    luaL_argcheck(L, by >= 0, 3, "a non-negative amount");
    char cmd[300];
    int n = snprintf(cmd, sizeof(cmd), "incr %s %lld\r\n", key, (long long)by);
    int r = send_command(L, c, cmd, (size_t)n);
    return r ? r : await_reply(L, c, OP_INCR, "incr");
}

static int l_close(lua_State *L)
{
    struct client *c = luaL_checkudata(L, 1, CLIENT_MT);
    if (c->op != OP_NONE) {
        c->user = NULL; /* only a killed user's command can still be in flight here */
        c->op = OP_NONE;
        stop_timer(c);
    }
    if (c->conn) cicada_conn_close(c->conn);
    c->conn = NULL;
    c->open = false;
    free(c->buf);
    c->buf = NULL;
    c->len = c->cap = 0;
    return 0;
}

int luaopen_memcached(lua_State *L);

int luaopen_memcached(lua_State *L)
{
    if (cicada_api_version() != CICADA_API_VERSION)
        return luaL_error(L, "memcached: built for cicada API %d, running %d", CICADA_API_VERSION,
                          cicada_api_version());
    /* the commands wait for the server: a killed user must unwind from them */
    static const luaL_Reg commands[] = {
        {"get", l_get},       {"set", l_set},   {"add", l_add},
        {"delete", l_delete}, {"incr", l_incr}, {NULL, NULL},
    };
    luaL_newmetatable(L, CLIENT_MT);
    lua_newtable(L);
    cicada_register(L, commands);
    lua_pushcfunction(L, l_close);
    lua_setfield(L, -2, "close");
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_close);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);

    static const luaL_Reg functions[] = {{"connect", l_connect}, {NULL, NULL}};
    lua_newtable(L);
    cicada_register(L, functions);
    return 1;
}
