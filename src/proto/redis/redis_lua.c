/* SPDX-License-Identifier: MIT */
/*
 * redis_lua.c: `cicada.redis.core`, the C half of the Redis client in Lua: clients whose
 * commands and pipelines suspend the calling user until the replies are in. RedisUser, the
 * command methods and the pipeline builder are in lua/cicada/redis.lua.
 */
#include "proto/redis/redis_lua.h"
#include "proto/redis/redis.h"

#include <arpa/inet.h>
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define CLIENT_MT "cicada.redis.client"

struct client_ud {
    struct redis_client *c;
};

static struct redis_client *check_client(lua_State *L)
{
    struct client_ud *u = luaL_checkudata(L, 1, CLIENT_MT);
    if (!u->c || !u->c->rv) luaL_error(L, "this Redis client is closed");
    return u->c;
}

/* ---- replies as Lua values --------------------------------------------------------------------
 */

/*
 * Strings and statuses are strings, integers numbers, arrays tables. A nil is nil on its own and
 * core.null (a light userdata NULL, equal to cjson.null) inside an array, so arrays have no
 * holes. An error inside an array (EXEC, a pipeline) is { false, message }.
 */
static void push_node(lua_State *L, const struct redis_node *n, bool in_array)
{
    if (!n) {
        lua_pushlightuserdata(L, NULL);
        return;
    }
    switch (n->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
        lua_pushlstring(L, n->u.str, n->n);
        return;
    case REDIS_REPLY_INTEGER:
        lua_pushnumber(L, (lua_Number)n->u.integer);
        return;
    case REDIS_REPLY_NIL:
        if (in_array)
            lua_pushlightuserdata(L, NULL);
        else
            lua_pushnil(L);
        return;
    case REDIS_REPLY_ERROR:
        lua_createtable(L, 2, 0);
        lua_pushboolean(L, 0);
        lua_rawseti(L, -2, 1);
        lua_pushlstring(L, n->u.str, n->n);
        lua_rawseti(L, -2, 2);
        return;
    case REDIS_REPLY_ARRAY:
        luaL_checkstack(L, 4, "deep reply");
        lua_createtable(L, n->n > 0x7fffffff ? 0 : (int)n->n, 0);
        for (size_t i = 0; i < n->n; i++) {
            push_node(L, n->u.elem[i], true);
            lua_rawseti(L, -2, (int)(i + 1));
        }
        return;
    default:
        lua_pushnil(L);
        return;
    }
}

int redis_lua_push_result(lua_State *L, struct redis_req *r)
{
    if (r->error) {
        lua_pushnil(L);
        lua_pushstring(L, r->error);
        return 2;
    }
    if (!r->pipeline) {
        const struct redis_node *n = r->replies[0];
        if (n && n->type == REDIS_REPLY_ERROR) {
            lua_pushnil(L);
            lua_pushlstring(L, n->u.str, n->n);
            return 2;
        }
        push_node(L, n, false);
        return 1;
    }
    lua_createtable(L, (int)r->ncmds, 0);
    for (uint32_t i = 0; i < r->ncmds; i++) {
        push_node(L, r->replies[i], true);
        lua_rawseti(L, -2, (int)(i + 1));
    }
    return 1;
}

/* ---- clients ------------------------------------------------------------------------------------
 */

static char *opt_str(lua_State *L, int t, const char *k)
{
    lua_getfield(L, t, k);
    char *v = lua_isnil(L, -1) ? NULL : cc_xstrdup(lua_tostring(L, -1));
    lua_pop(L, 1);
    return v;
}

static uint32_t opt_ms(lua_State *L, int t, const char *k, uint32_t def)
{
    lua_getfield(L, t, k);
    uint32_t v = def;
    if (!lua_isnil(L, -1)) {
        double s = lua_tonumber(L, -1);
        v = s <= 0 ? 0 : s > 4e6 ? 4000000000u : (uint32_t)(s * 1000 + 0.5);
    }
    lua_pop(L, 1);
    return v;
}

/*
 * core.client{ host=, port=, username=, password=, db=, tls=, verify=, ca_file=, cert_file=,
 * key_file=, connect_timeout=, timeout=, max_reply= } -> a client (it connects on first use)
 */
static int l_client(lua_State *L)
{
    struct cc_vm *vm = cc_vm_self;
    if (!vm) return luaL_error(L, "Redis clients live in cicada's threads");
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "host");
    if (!lua_isstring(L, -1) || lua_objlen(L, -1) == 0)
        return luaL_error(L, "a Redis client needs a host");
    lua_getfield(L, 1, "port");
    lua_Integer port = luaL_optinteger(L, -1, REDIS_DEFAULT_PORT);
    if (port < 1 || port > 65535) return luaL_error(L, "port %d is out of range", (int)port);
    lua_getfield(L, 1, "db");
    lua_Integer db = luaL_optinteger(L, -1, 0);
    if (db < 0 || db > 1000000) return luaL_error(L, "db must be 0 or more");
    lua_getfield(L, 1, "max_reply");
    double max_reply = luaL_optnumber(L, -1, REDIS_DEFAULT_MAX_REPLY);
    if (max_reply < 1024) return luaL_error(L, "max_reply must be at least 1024 bytes");
    lua_pop(L, 4);
    static const char *const strings[] = {"username", "password", "ca_file", "cert_file",
                                          "key_file"};
    for (size_t i = 0; i < CC_ARRAY_LEN(strings); i++) {
        lua_getfield(L, 1, strings[i]);
        if (!lua_isnil(L, -1) && !lua_isstring(L, -1))
            return luaL_error(L, "%s must be a string", strings[i]);
        lua_pop(L, 1);
    }
    static const char *const numbers[] = {"connect_timeout", "timeout"};
    for (size_t i = 0; i < CC_ARRAY_LEN(numbers); i++) {
        lua_getfield(L, 1, numbers[i]);
        if (!lua_isnil(L, -1) && !lua_isnumber(L, -1))
            return luaL_error(L, "%s must be a number of seconds", numbers[i]);
        lua_pop(L, 1);
    }

    struct redis_vm *rv = redis_vm_get(vm);
    struct redis_settings set = {0};
    set.host = opt_str(L, 1, "host");
    set.port = (uint16_t)port;
    set.username = opt_str(L, 1, "username");
    set.password = opt_str(L, 1, "password");
    set.db = (int)db;
    lua_getfield(L, 1, "tls");
    set.tls = lua_toboolean(L, -1);
    lua_getfield(L, 1, "verify");
    set.verify = lua_isnil(L, -1) ? true : lua_toboolean(L, -1);
    lua_pop(L, 2);
    set.ca_file = opt_str(L, 1, "ca_file");
    set.cert_file = opt_str(L, 1, "cert_file");
    set.key_file = opt_str(L, 1, "key_file");
    set.connect_timeout_ms = opt_ms(L, 1, "connect_timeout", REDIS_DEFAULT_TIMEOUT_MS);
    set.timeout_ms = opt_ms(L, 1, "timeout", REDIS_DEFAULT_TIMEOUT_MS);
    set.max_reply = (size_t)max_reply;

    struct cc_tls_ctx *ctx = NULL;
    if (set.tls) {
        char *err = NULL;
        ctx = redis_tls_get(rv, &set, &err);
        if (!ctx) {
            cc_free(set.host);
            cc_free(set.username);
            cc_free(set.password);
            cc_free(set.ca_file);
            cc_free(set.cert_file);
            cc_free(set.key_file);
            lua_pushstring(L, err ? err : "TLS: cannot make a context");
            cc_free(err);
            return lua_error(L);
        }
    }
    struct client_ud *u = lua_newuserdata(L, sizeof(*u));
    u->c = NULL;
    luaL_getmetatable(L, CLIENT_MT);
    lua_setmetatable(L, -2);
    u->c = redis_client_new(rv, &set);
    u->c->tls = ctx;
    return 1;
}

/* After the call that made |r|: its outcome now (a failure before anything was sent), or a
 * wait for its replies. */
static int finish(lua_State *L, struct redis_req *r, struct cc_fiber *f)
{
    lua_settop(L, 0);
    if (r->done) {
        int n = redis_lua_push_result(L, r);
        redis_req_free(r);
        redis_flush();
        return n;
    }
    r->starting = false;
    return cc_fiber_wait(L, f, &r->waiter);
}

/* Commands that turn a connection into a stream of pushes: they need a client of their own,
 * which this request/reply client is not. */
static bool is_streaming(const char *u)
{
    return strcmp(u, "SUBSCRIBE") == 0 || strcmp(u, "PSUBSCRIBE") == 0 ||
           strcmp(u, "SSUBSCRIBE") == 0 || strcmp(u, "MONITOR") == 0;
}

/* Checks the arguments |from|..|to| of a command and returns its statistics name (upper case,
 * into |up|). */
static size_t check_command(lua_State *L, int from, int to, char *up, size_t cap, int argpos)
{
    if (to < from) luaL_argerror(L, argpos, "a command name is needed");
    for (int i = from; i <= to; i++) {
        int t = lua_type(L, i);
        if (t != LUA_TSTRING && t != LUA_TNUMBER)
            luaL_error(L, "command argument %d is a %s: pass strings or numbers", i - from + 1,
                       lua_typename(L, t));
    }
    size_t cl;
    const char *cmd = lua_tolstring(L, from, &cl);
    if (cl == 0) luaL_argerror(L, argpos, "empty command name");
    size_t n = cl < cap - 1 ? cl : cap - 1;
    for (size_t i = 0; i < n; i++)
        up[i] = (char)((cmd[i] >= 'a' && cmd[i] <= 'z') ? cmd[i] - 32 : cmd[i]);
    up[n] = '\0';
    if (is_streaming(up))
        luaL_error(L, "%s is not supported: it makes the connection a stream of pushes", up);
    return n;
}

static void encode(struct redis_buf *b, lua_State *L, int from, int to)
{
    resp_begin(b, (size_t)(to - from + 1));
    for (int i = from; i <= to; i++) {
        size_t l;
        const char *s = lua_tolstring(L, i, &l);
        resp_arg(b, s, l);
    }
}

/* client:call(cmd, arg...) -> the reply | nil, err. Recorded as "redis" / CMD. */
static int l_call(lua_State *L)
{
    struct redis_client *c = check_client(L);
    struct cc_fiber *f = cc_fiber_check(L);
    int top = lua_gettop(L);
    char up[64];
    size_t ul = check_command(L, 2, top, up, sizeof(up), 2);
    struct redis_req *r = redis_req_new(c, 1, f);
    r->keys[0] = redis_key(c->rv, up, ul);
    encode(&c->out, L, 2, top);
    redis_req_send(r);
    return finish(L, r, f);
}

/* client:pipeline({ {cmd, arg...}, ... }) -> { reply... } | nil, err: one write, one wait, each
 * command recorded as its reply arrives. */
static int l_pipeline(lua_State *L)
{
    struct redis_client *c = check_client(L);
    struct cc_fiber *f = cc_fiber_check(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    int n = (int)lua_objlen(L, 2);
    if (n == 0) {
        lua_newtable(L);
        return 1;
    }
    /* check every command before anything is queued */
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, 2, i);
        if (!lua_istable(L, -1)) return luaL_error(L, "pipeline entry %d is not a table", i);
        int k = (int)lua_objlen(L, -1);
        luaL_checkstack(L, k + 2, "pipeline command");
        int base = lua_gettop(L);
        for (int j = 1; j <= k; j++)
            lua_rawgeti(L, base, j);
        char up[64];
        check_command(L, base + 1, base + k, up, sizeof(up), 2);
        lua_settop(L, base - 1);
    }
    struct redis_req *r = redis_req_new(c, (uint32_t)n, f);
    r->pipeline = true;
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, 2, i);
        int k = (int)lua_objlen(L, -1);
        int base = lua_gettop(L);
        for (int j = 1; j <= k; j++)
            lua_rawgeti(L, base, j);
        char up[64];
        size_t ul = check_command(L, base + 1, base + k, up, sizeof(up), 2);
        r->keys[i - 1] = redis_key(c->rv, up, ul);
        encode(&c->out, L, base + 1, base + k);
        lua_settop(L, base - 1);
    }
    redis_req_send(r);
    return finish(L, r, f);
}

/* client:close(): closes the connection now; the next command connects again. */
static int l_close(lua_State *L)
{
    struct client_ud *u = luaL_checkudata(L, 1, CLIENT_MT);
    if (!u->c || !u->c->rv) return 0;
    redis_client_close(u->c, NULL);
    redis_flush();
    return 0;
}

static int l_is_connected(lua_State *L)
{
    struct client_ud *u = luaL_checkudata(L, 1, CLIENT_MT);
    lua_pushboolean(L, u->c && u->c->rv && u->c->state == REDIS_READY);
    return 1;
}

static int l_last_error(lua_State *L)
{
    struct client_ud *u = luaL_checkudata(L, 1, CLIENT_MT);
    if (u->c && u->c->error)
        lua_pushstring(L, u->c->error);
    else
        lua_pushnil(L);
    return 1;
}

static int l_gc(lua_State *L)
{
    struct client_ud *u = luaL_checkudata(L, 1, CLIENT_MT);
    if (u->c) redis_client_release(u->c);
    u->c = NULL;
    return 0;
}

static const luaL_Reg client_methods[] = {
    {"call", l_call},
    {"pipeline", l_pipeline},
    {"close", l_close},
    {"is_connected", l_is_connected},
    {"last_error", l_last_error},
    {NULL, NULL},
};

int redis_lua_open(lua_State *L)
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
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    return 1;
}
