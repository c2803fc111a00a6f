/* SPDX-License-Identifier: MIT */
/*
 * grpc_lua.c: `cicada.grpc.core`, the C half of the gRPC client in Lua: schemas, channels
 * (one HTTP/2 connection per user, as Locust's GrpcUser has its own channel), unary calls that
 * suspend the user until their reply, streaming calls, and status objects. Recording, stubs,
 * reflection and loading .proto files are in lua/cicada/grpc.lua.
 */
#include "proto/grpc/grpc_lua.h"
#include "proto/grpc/grpc.h"
#include "proto/grpc/pb_lua.h"
#include "proto/http/http_lua.h"

#include <lauxlib.h>
#include <stdio.h>

#define SCHEMA_MT  "cicada.grpc.schema"
#define CHANNEL_MT "cicada.grpc.channel"
#define CALL_MT    "cicada.grpc.call"
#define STATUS_MT  "cicada.grpc.status"

#define SEND_HIGH_WATER (256u << 10) /* a sender waits while this much is unsent */
#define SEND_LOW_WATER  (64u << 10)  /* ... until it is down to this */

/* ---- schemas ---------------------------------------------------------------------------- */

struct schema_ud {
    struct pb_schema *s;
    int mts; /* pb_lua_metatables() */
    const struct pb_method **methods;
    uint32_t nmethods;
};

static struct schema_ud *check_schema(lua_State *L, int idx)
{
    struct schema_ud *u = luaL_checkudata(L, idx, SCHEMA_MT);
    if (!u->s) luaL_error(L, "this schema is gone");
    return u;
}

/* core.schema(descriptor_set) or core.schema{ file_descriptor_proto, ... } -> schema */
static int l_schema(lua_State *L)
{
    struct pb_bytes *files = NULL;
    int n;
    if (lua_type(L, 1) == LUA_TSTRING) {
        size_t len;
        const char *p = lua_tolstring(L, 1, &len);
        n = pb_descriptor_set_files(p, len, &files);
        if (n < 0) return luaL_error(L, "this is not a FileDescriptorSet (malformed)");
    } else {
        luaL_checktype(L, 1, LUA_TTABLE);
        n = (int)lua_objlen(L, 1);
        for (int i = 1; i <= n; i++) {
            lua_rawgeti(L, 1, i);
            if (lua_type(L, -1) != LUA_TSTRING)
                return luaL_error(L, "file %d is not a serialised FileDescriptorProto", i);
            lua_pop(L, 1);
        }
        files = cc_xcalloc((size_t)n + 1, sizeof(*files));
        for (int i = 1; i <= n; i++) { /* the strings stay referenced by the argument */
            lua_rawgeti(L, 1, i);
            files[i - 1].p = lua_tolstring(L, -1, &files[i - 1].len);
            lua_pop(L, 1);
        }
    }
    char err[512];
    struct pb_schema *s = NULL;
    int rc = pb_schema_new(&s, files, (size_t)n, err, sizeof(err));
    cc_free(files);
    if (rc != 0) return luaL_error(L, "%s", err);
    struct schema_ud *u = lua_newuserdata(L, sizeof(*u));
    memset(u, 0, sizeof(*u));
    u->s = s;
    u->mts = LUA_NOREF;
    luaL_getmetatable(L, SCHEMA_MT);
    lua_setmetatable(L, -2);
    for (uint32_t i = 0; i < s->nsvcs; i++)
        u->nmethods += s->svcs[i].nmethods;
    u->methods = cc_xcalloc(u->nmethods + 1, sizeof(*u->methods));
    uint32_t k = 0;
    for (uint32_t i = 0; i < s->nsvcs; i++)
        for (uint32_t j = 0; j < s->svcs[i].nmethods; j++)
            u->methods[k++] = &s->svcs[i].methods[j];
    u->mts = pb_lua_metatables(L, -1, s);
    return 1;
}

static int l_schema_gc(lua_State *L)
{
    struct schema_ud *u = luaL_checkudata(L, 1, SCHEMA_MT);
    pb_schema_free(u->s);
    cc_free(u->methods);
    u->s = NULL;
    u->methods = NULL;
    return 0;
}

static const char *kind_of(const struct pb_method *m)
{
    return m->client_streaming ? (m->server_streaming ? "bidi_streaming" : "client_streaming")
                               : (m->server_streaming ? "server_streaming" : "unary");
}

static void push_method(lua_State *L, const struct schema_ud *u, const struct pb_method *m)
{
    lua_createtable(L, 0, 6);
    for (uint32_t i = 0; i < u->nmethods; i++)
        if (u->methods[i] == m) {
            lua_pushinteger(L, i);
            lua_setfield(L, -2, "index");
        }
    lua_pushstring(L, m->name);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, m->path);
    lua_setfield(L, -2, "path");
    lua_pushstring(L, kind_of(m));
    lua_setfield(L, -2, "kind");
    lua_pushstring(L, u->s->msgs[m->in].name);
    lua_setfield(L, -2, "input");
    lua_pushstring(L, u->s->msgs[m->out].name);
    lua_setfield(L, -2, "output");
}

/* schema:method("pkg.Service/Method") -> { index, name, path, kind, input, output } or nil */
static int l_schema_method(lua_State *L)
{
    struct schema_ud *u = check_schema(L, 1);
    size_t n;
    const char *path = luaL_checklstring(L, 2, &n);
    const struct pb_method *m = pb_find_method(u->s, path, n);
    if (!m) return 0;
    push_method(L, u, m);
    return 1;
}

/* schema:services() -> { { name = "pkg.Service", methods = { {...}, ... } }, ... } */
static int l_schema_services(lua_State *L)
{
    struct schema_ud *u = check_schema(L, 1);
    lua_createtable(L, (int)u->s->nsvcs, 0);
    for (uint32_t i = 0; i < u->s->nsvcs; i++) {
        const struct pb_service *svc = &u->s->svcs[i];
        lua_createtable(L, 0, 2);
        lua_pushstring(L, svc->name);
        lua_setfield(L, -2, "name");
        lua_createtable(L, (int)svc->nmethods, 0);
        for (uint32_t j = 0; j < svc->nmethods; j++) {
            push_method(L, u, &svc->methods[j]);
            lua_rawseti(L, -2, (int)j + 1);
        }
        lua_setfield(L, -2, "methods");
        lua_rawseti(L, -2, (int)i + 1);
    }
    return 1;
}

static int32_t check_message(lua_State *L, struct schema_ud *u, int idx)
{
    size_t n;
    const char *name = luaL_checklstring(L, idx, &n);
    int32_t mi = pb_find_message(u->s, name, n);
    if (mi < 0) luaL_error(L, "no message type %s in the schema", name);
    return mi;
}

/* schema:encode("pkg.Message", table) -> bytes */
static int l_schema_encode(lua_State *L)
{
    struct schema_ud *u = check_schema(L, 1);
    int32_t mi = check_message(L, u, 2);
    struct pb_buf b = {0};
    char err[512];
    int rc = pb_lua_encode(L, 3, u->s, mi, &b, err, sizeof(err));
    if (rc == 0) lua_pushlstring(L, b.p ? b.p : "", b.len);
    cc_free(b.p);
    if (rc != 0) return luaL_error(L, "%s", err);
    return 1;
}

/* schema:decode("pkg.Message", bytes) -> table */
static int l_schema_decode(lua_State *L)
{
    struct schema_ud *u = check_schema(L, 1);
    int32_t mi = check_message(L, u, 2);
    size_t n;
    const char *p = luaL_checklstring(L, 3, &n);
    char err[512];
    if (pb_lua_decode(L, u->s, mi, p, n, u->mts, err, sizeof(err)) != 0)
        return luaL_error(L, "%s", err);
    return 1;
}

/* schema:has_message(name) -> boolean */
static int l_schema_has_message(lua_State *L)
{
    struct schema_ud *u = check_schema(L, 1);
    size_t n;
    const char *name = luaL_checklstring(L, 2, &n);
    lua_pushboolean(L, pb_find_message(u->s, name, n) >= 0);
    return 1;
}

static void add_name(void *arg, int kind, const char *s, size_t n)
{
    lua_State *L = arg;
    if (kind == 0) {
        lua_pushlstring(L, s, n);
        lua_replace(L, -3);
    } else {
        lua_pushlstring(L, s, n);
        lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
    }
}

/* core.file_names(file_descriptor_proto) -> name, { dependency, ... } (for reflection) */
static int l_file_names(lua_State *L)
{
    size_t n;
    const char *p = luaL_checklstring(L, 1, &n);
    lua_pushnil(L);
    lua_newtable(L);
    if (pb_file_names(p, n, add_name, L) != 0)
        return luaL_error(L, "this is not a FileDescriptorProto (malformed)");
    return 2;
}

/* ---- statuses --------------------------------------------------------------------------- */

/* A call's outcome as Lua sees it: one allocation with the message and the metadata. */
struct status_ud {
    int code;
    uint32_t msg_len;
    uint32_t head_len, nhead; /* "name\0value\0" pairs */
    uint32_t trail_len, ntrail;
    double elapsed_ms;
    double length; /* message bytes received */
    char data[];   /* message, head pairs, trailer pairs */
};

static void push_status(lua_State *L, int code, const char *msg, size_t ml, struct grpc_meta head,
                        struct grpc_meta trail, double elapsed_ms, double length)
{
    struct status_ud *u = lua_newuserdata(L, sizeof(*u) + ml + head.len + trail.len + 1);
    u->code = code;
    u->msg_len = (uint32_t)ml;
    u->head_len = (uint32_t)head.len;
    u->nhead = head.count;
    u->trail_len = (uint32_t)trail.len;
    u->ntrail = trail.count;
    u->elapsed_ms = elapsed_ms;
    u->length = length;
    char *d = u->data;
    if (ml) memcpy(d, msg, ml);
    d += ml;
    if (head.len) memcpy(d, head.p, head.len);
    d += head.len;
    if (trail.len) memcpy(d, trail.p, trail.len);
    d[trail.len] = '\0';
    luaL_getmetatable(L, STATUS_MT);
    lua_setmetatable(L, -2);
}

/* "NAME: message" (or "NAME" alone): how a failure is named in the statistics. */
static void push_error(lua_State *L, int code, const char *msg, size_t ml)
{
    const char *name = grpc_code_name(code);
    if (!ml) {
        lua_pushstring(L, name);
        return;
    }
    char buf[600];
    int n = snprintf(buf, sizeof(buf), "%s: %.*s", name, (int)CC_MIN(ml, 500u), msg);
    lua_pushlstring(L, buf, (size_t)n);
}

/* The pairs as a table: lower-case names (as HTTP/2 carries them); a repeated name's values
 * join with ","; values of names ending in -bin are decoded from base64. */
static void push_meta(lua_State *L, const char *p, uint32_t count)
{
    lua_createtable(L, 0, (int)count);
    struct http_buf bin = {0};
    for (uint32_t i = 0; i < count; i++) {
        size_t nl = strlen(p);
        const char *v = p + nl + 1;
        size_t vl = strlen(v);
        bool isbin = nl > 4 && memcmp(p + nl - 4, "-bin", 4) == 0;
        if (isbin) {
            bin.len = 0;
            if (grpc_base64_decode(&bin, v, vl) == 0) {
                v = bin.p ? bin.p : "";
                vl = bin.len;
            }
        }
        lua_pushlstring(L, p, nl);
        lua_rawget(L, -2);
        if (lua_isstring(L, -1)) {
            lua_pushliteral(L, ",");
            lua_pushlstring(L, v, vl);
            lua_concat(L, 3);
        } else {
            lua_pop(L, 1);
            lua_pushlstring(L, v, vl);
        }
        lua_pushlstring(L, p, nl);
        lua_insert(L, -2);
        lua_rawset(L, -3);
        p = p + nl + 1;
        p = p + strlen(p) + 1;
    }
    http_buf_free(&bin);
}

static struct status_ud *check_status(lua_State *L)
{
    return luaL_checkudata(L, 1, STATUS_MT);
}

static int l_status_index(lua_State *L)
{
    struct status_ud *u = check_status(L);
    const char *k = luaL_checkstring(L, 2);
    if (strcmp(k, "code") == 0) {
        lua_pushinteger(L, u->code);
    } else if (strcmp(k, "ok") == 0) {
        lua_pushboolean(L, u->code == GRPC_OK);
    } else if (strcmp(k, "name") == 0 || strcmp(k, "status") == 0) {
        lua_pushstring(L, grpc_code_name(u->code));
    } else if (strcmp(k, "message") == 0 || strcmp(k, "details") == 0) {
        lua_pushlstring(L, u->data, u->msg_len);
    } else if (strcmp(k, "error") == 0) {
        if (u->code == GRPC_OK)
            lua_pushnil(L);
        else
            push_error(L, u->code, u->data, u->msg_len);
    } else if (strcmp(k, "headers") == 0 || strcmp(k, "trailers") == 0) {
        bool head = k[0] == 'h';
        lua_getfenv(L, 1); /* cached: built on first read */
        if (!lua_istable(L, -1) || lua_rawequal(L, -1, LUA_GLOBALSINDEX)) {
            lua_pop(L, 1);
            lua_newtable(L);
            lua_pushvalue(L, -1);
            lua_setfenv(L, 1);
        }
        lua_pushvalue(L, 2);
        lua_rawget(L, -2);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            const char *p = u->data + u->msg_len + (head ? 0 : u->head_len);
            push_meta(L, p, head ? u->nhead : u->ntrail);
            lua_pushvalue(L, 2);
            lua_pushvalue(L, -2);
            lua_rawset(L, -4);
        }
    } else if (strcmp(k, "elapsed_ms") == 0) {
        lua_pushnumber(L, u->elapsed_ms);
    } else if (strcmp(k, "length") == 0) {
        lua_pushnumber(L, u->length);
    } else {
        lua_pushnil(L);
    }
    return 1;
}

static int l_status_tostring(lua_State *L)
{
    struct status_ud *u = check_status(L);
    if (u->code == GRPC_OK)
        lua_pushliteral(L, "OK");
    else
        push_error(L, u->code, u->data, u->msg_len);
    return 1;
}

/* ---- channels --------------------------------------------------------------------------- */

struct channel_ud {
    struct http_session *s; /* NULL once closed */
    uint32_t pool;
    struct schema_ud *schema; /* kept alive by the channel's environment */
    char *authority;
    uint32_t max_message; /* longest message received */
};

static struct channel_ud *check_channel(lua_State *L, int idx)
{
    struct channel_ud *u = luaL_checkudata(L, idx, CHANNEL_MT);
    if (!u->s) luaL_error(L, "this gRPC channel is closed");
    return u;
}

/* core.channel{ host=, port=, tls=, authority=, max_message=, and the HTTP client's settings
 * (connect_timeout, timeout, verify, ca_file, cert_file, key_file, source_addresses) } */
static int l_channel(lua_State *L)
{
    struct cc_vm *vm = cc_vm_self;
    if (!vm) return luaL_error(L, "gRPC channels live in cicada's threads");
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "host");
    const char *host = luaL_checkstring(L, -1);
    lua_getfield(L, 1, "port");
    lua_Integer port = luaL_checkinteger(L, -1);
    lua_getfield(L, 1, "authority");
    const char *authority = luaL_optstring(L, -1, host);
    lua_getfield(L, 1, "tls");
    bool tls = lua_toboolean(L, -1);
    lua_getfield(L, 1, "max_message");
    double max_message = luaL_optnumber(L, -1, GRPC_DEFAULT_MAX_MESSAGE);
    if (port < 1 || port > 65535) return luaL_error(L, "port %d out of range", (int)port);
    if (max_message < 1 || max_message > 1e9)
        return luaL_error(L, "max_message must be from 1 to 1e9 bytes");
    struct http_settings set;
    http_lua_settings(L, 1, &set);
    set.http2 = HTTP2_REQUIRED;
    set.max_conns = 1;
    struct channel_ud *u = lua_newuserdata(L, sizeof(*u));
    memset(u, 0, sizeof(*u));
    luaL_getmetatable(L, CHANNEL_MT);
    lua_setmetatable(L, -2);
    lua_newtable(L); /* the environment: its schema */
    lua_setfenv(L, -2);
    char *err = NULL;
    u->s = http_session_new(http_vm_get(vm), &set, &err);
    u->authority = cc_xstrdup(authority);
    u->max_message = (uint32_t)max_message;
    u->pool = http_session_pool(u->s, tls, host, (uint16_t)port, authority);
    return 1;
}

static int l_channel_set_schema(lua_State *L)
{
    struct channel_ud *u = check_channel(L, 1);
    struct schema_ud *s = check_schema(L, 2);
    lua_getfenv(L, 1);
    lua_pushvalue(L, 2);
    lua_setfield(L, -2, "schema");
    u->schema = s;
    return 0;
}

static int l_channel_close(lua_State *L)
{
    struct channel_ud *u = luaL_checkudata(L, 1, CHANNEL_MT);
    if (u->s) http_session_close(u->s);
    return 0;
}

static int l_channel_gc(lua_State *L)
{
    struct channel_ud *u = luaL_checkudata(L, 1, CHANNEL_MT);
    if (u->s) http_session_free(u->s);
    u->s = NULL;
    cc_free(u->authority);
    u->authority = NULL;
    return 0;
}

static const struct pb_method *check_method(lua_State *L, struct channel_ud *ch, int idx)
{
    if (!ch->schema || !ch->schema->s) luaL_error(L, "the channel has no schema yet");
    lua_Integer i = luaL_checkinteger(L, idx);
    if (i < 0 || (uint64_t)i >= ch->schema->nmethods) luaL_argerror(L, idx, "no such method");
    return ch->schema->methods[i];
}

static uint64_t opt_timeout_ms(lua_State *L, int idx)
{
    if (lua_isnoneornil(L, idx)) return 0;
    double s = luaL_checknumber(L, idx);
    if (s <= 0) return 1; /* already past: fails at once, as gRPC's own clients do */
    return s > 1e9 ? 1000000000000ull : (uint64_t)(s * 1000 + 0.5);
}

/* Writes the metadata of table |idx| (name = value or name = { value, ... }), leaving out
 * names that table |over| has (its own come after). Returns 0, or -1 with |err| set. */
static int add_metadata(lua_State *L, int idx, int over, struct http_buf *b, char *err,
                        size_t errlen)
{
    if (!lua_istable(L, idx)) return 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING) {
            lua_pop(L, 2);
            snprintf(err, errlen, "metadata names must be strings");
            return -1;
        }
        size_t nl;
        const char *name = lua_tolstring(L, -2, &nl);
        if (over && lua_istable(L, over)) {
            lua_pushvalue(L, -2);
            lua_rawget(L, over);
            bool shadowed = !lua_isnil(L, -1);
            lua_pop(L, 1);
            if (shadowed) {
                lua_pop(L, 1);
                continue;
            }
        }
        int n = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 1;
        for (int i = 1; i <= n; i++) {
            if (lua_istable(L, -1))
                lua_rawgeti(L, -1, i);
            else
                lua_pushvalue(L, -1);
            int t = lua_type(L, -1);
            if (t != LUA_TSTRING && t != LUA_TNUMBER) {
                lua_pop(L, 3);
                snprintf(err, errlen, "metadata '%.60s': values must be strings", name);
                return -1;
            }
            size_t vl;
            const char *v = lua_tolstring(L, -1, &vl);
            int rc = grpc_head_metadata(b, name, nl, v, vl, err, errlen);
            lua_pop(L, 1);
            if (rc != 0) {
                lua_pop(L, 2);
                return -1;
            }
        }
        lua_pop(L, 1);
    }
    return 0;
}

/* Encodes the message at |idx| as type |mi| after a 5-byte prefix at the end of |req|. */
static int add_message(lua_State *L, int idx, struct schema_ud *sch, int32_t mi,
                       struct http_buf *req, char *err, size_t errlen)
{
    http_buf_append(req, "\0\0\0\0\0", GRPC_PREFIX);
    size_t at = req->len;
    struct pb_buf b = {req->p, req->len, req->cap}; /* the encoder writes into |req| itself */
    int rc = pb_lua_encode(L, idx, sch->s, mi, &b, err, errlen);
    req->p = b.p;
    req->len = b.len;
    req->cap = b.cap;
    if (rc != 0) return -1;
    size_t n = req->len - at;
    if (n > UINT32_MAX) {
        snprintf(err, errlen, "the message is larger than 4 GiB");
        return -1;
    }
    grpc_frame_prefix(req->p + at - GRPC_PREFIX, false, (uint32_t)n);
    return 0;
}

/* A new exchange carrying the head of a call to |m| (and its message at |msg_idx| if not 0).
 * Raises a Lua error (with nothing held) on bad metadata or a message that does not encode. */
static struct http_exchange *new_request(lua_State *L, struct channel_ud *ch,
                                         const struct pb_method *m, uint64_t timeout_ms,
                                         int meta_idx, int defaults_idx, int msg_idx)
{
    struct http_vm *hv = ch->s->hv;
    struct http_exchange *ex = http_exchange_new(hv);
    grpc_head_begin(&ex->req, m->path, ch->authority, timeout_ms);
    char err[600];
    if (add_metadata(L, defaults_idx, meta_idx, &ex->req, err, sizeof(err)) != 0 ||
        add_metadata(L, meta_idx, 0, &ex->req, err, sizeof(err)) != 0)
        goto fail;
    ex->req_head = grpc_head_end(&ex->req);
    if (msg_idx && add_message(L, msg_idx, ch->schema, m->in, &ex->req, err, sizeof(err)) != 0)
        goto fail;
    ex->idempotent = false;
    ex->timeout_ms = ch->s->set.timeout_ms;
    if (timeout_ms) ex->deadline_ns = cc_now_ns() + timeout_ms * 1000000ull;
    return ex;
fail:
    http_exchange_discard(hv, ex);
    luaL_error(L, "%s", err);
    return NULL;
}

/* Completion of a unary call: the reply (or nil), the status, elapsed ms, reply length and the
 * failure's name for the statistics (nil on success), on the fiber; then it resumes. */
static void unary_done(struct http_exchange *ex)
{
    struct channel_ud *ch = ex->udata;
    struct cc_fiber *f = ex->fiber;
    lua_State *co = f->co;
    struct http_buf msg = {0};
    const char *reply = NULL;
    size_t rl = 0;
    int code = grpc_unary_reply(ex, ch->max_message, &reply, &rl, &msg);
    if (code == GRPC_OK) {
        char err[512];
        struct schema_ud *sch = ch->schema;
        if (pb_lua_decode(co, sch->s, ex->uarg, reply, rl, sch->mts, err, sizeof(err)) != 0) {
            code = GRPC_INTERNAL;
            msg.len = 0;
            http_buf_puts(&msg, "cannot decode the reply: ");
            http_buf_puts(&msg, err);
            lua_pushnil(co);
        }
    } else {
        lua_pushnil(co);
    }
    double ms = (double)(ex->t_end - ex->t_start) / 1e6;
    struct grpc_meta head = {NULL, 0, 0}, trail = {NULL, 0, 0};
    if (!ex->error && ex->nheaders) { /* the pairs: head first, trailers after */
        const char *h = ex->headers.p;
        uint32_t nh = ex->h2_final ? ex->nhead : 0;
        for (uint32_t i = 0; i < nh; i++) {
            const char *v = h + strlen(h) + 1;
            h = v + strlen(v) + 1;
        }
        head = (struct grpc_meta){ex->headers.p, (size_t)(h - ex->headers.p), nh};
        trail = (struct grpc_meta){h, ex->headers.len - head.len, ex->nheaders - nh};
    }
    double length = code == GRPC_OK ? (double)rl : 0;
    push_status(co, code, msg.p, msg.len, head, trail, ms, length);
    lua_pushnumber(co, ms);
    lua_pushnumber(co, length);
    if (code == GRPC_OK)
        lua_pushnil(co);
    else
        push_error(co, code, msg.p, msg.len);
    http_buf_free(&msg);
    if (ex->sync) { /* finished inside the call that started it: returned, not resumed */
        *ex->sync = true;
        return;
    }
    cc_fiber_resume(f, 5);
}

/*
 * channel:unary(method_index, request, timeout_s, metadata, default_metadata)
 *   -> reply | nil, status, elapsed_ms, length, error | nil
 * Waits for the reply.
 */
static int l_unary(lua_State *L)
{
    struct channel_ud *ch = check_channel(L, 1);
    struct cc_fiber *f = cc_fiber_check(L);
    const struct pb_method *m = check_method(L, ch, 2);
    uint64_t timeout_ms = opt_timeout_ms(L, 4);
    struct http_exchange *ex = new_request(L, ch, m, timeout_ms, 5, 6, 3);
    ex->max_body = (uint64_t)ch->max_message + GRPC_PREFIX + 65536; /* past it: framing says */
    ex->udata = ch;
    ex->uarg = m->out;
    ex->on_done = unary_done;
    bool done = false;
    ex->fiber = f;
    ex->waiter.cancel = http_exchange_cancel;
    ex->sync = &done;
    lua_settop(L, 0);
    http_exchange_start(ch->s->pools[ch->pool], ex);
    if (done) return 5; /* failed at once: the results are on the stack */
    ex->sync = NULL;
    return cc_fiber_wait(L, f, &ex->waiter);
}

/* ---- streaming calls -------------------------------------------------------------------- */

enum want { WANT_NONE, WANT_MSG, WANT_HEAD, WANT_END, WANT_DRAIN };

struct call_ud {
    struct grpc_call c;
    struct cc_waiter waiter;
    struct cc_fiber *fiber; /* waiting on the call, or NULL */
    uint8_t want;           /* enum want */
    struct schema_ud *schema;
    int32_t in, out;
    struct pb_buf scratch; /* a message being encoded */
};

static struct call_ud *check_call(lua_State *L)
{
    return luaL_checkudata(L, 1, CALL_MT);
}

static void push_call_status(lua_State *L, struct call_ud *u)
{
    struct grpc_call *c = &u->c;
    push_status(L, c->code, c->message.p, c->message.len, grpc_call_headers(c),
                grpc_call_trailers(c), (double)(c->t_end - c->t_start) / 1e6, (double)c->received);
}

/* The results of the wait |u->want| pushed on |L| if it is over: their number, else -1. */
static int results(struct call_ud *u, lua_State *L)
{
    struct grpc_call *c = &u->c;
    switch (u->want) {
    case WANT_MSG: {
        const char *msg;
        size_t len;
        if (grpc_call_next(c, &msg, &len)) {
            char err[512];
            if (pb_lua_decode(L, u->schema->s, u->out, msg, len, u->schema->mts, err,
                              sizeof(err)) == 0)
                return 1;
            char m[600];
            snprintf(m, sizeof(m), "cannot decode a message: %s", err);
            grpc_call_cancel(c, GRPC_INTERNAL, m);
            lua_pushnil(L);
            push_call_status(L, u);
            return 2;
        }
        break;
    }
    case WANT_HEAD:
        if (c->head || (c->ended && c->nhead)) {
            struct grpc_meta h = grpc_call_headers(c);
            push_meta(L, h.p, h.count);
            return 1;
        }
        break;
    case WANT_END:
        if (c->ended) {
            push_call_status(L, u);
            return 1;
        }
        return -1;
    case WANT_DRAIN:
        if (!c->ended && grpc_call_unsent(c) <= SEND_LOW_WATER) {
            lua_pushboolean(L, 1);
            return 1;
        }
        break;
    default:
        return -1;
    }
    if (!c->ended) return -1;
    lua_pushnil(L);
    push_call_status(L, u);
    return 2;
}

static void call_changed(struct grpc_call *c)
{
    struct call_ud *u = c->owner;
    if (!u->fiber) return;
    struct cc_fiber *f = u->fiber;
    int n = results(u, f->co);
    if (n < 0) return;
    u->fiber = NULL;
    u->want = WANT_NONE;
    cc_fiber_resume(f, n);
}

/* The waiting user was killed: the call is cancelled (no Lua runs here). */
static void call_waiter_cancel(struct cc_waiter *w)
{
    struct call_ud *u = cc_container_of(w, struct call_ud, waiter);
    u->fiber = NULL;
    u->want = WANT_NONE;
    grpc_call_cancel(&u->c, GRPC_CANCELLED, "the user was stopped");
}

/* Returns the results of |want| now, or parks the fiber until they come. */
static int wait_for(lua_State *L, struct call_ud *u, uint8_t want)
{
    struct cc_fiber *f = cc_fiber_check(L);
    if (u->fiber) return luaL_error(L, "another user is waiting on this call");
    lua_settop(L, 0);
    u->want = want;
    int n = results(u, L);
    if (n >= 0) {
        u->want = WANT_NONE;
        return n;
    }
    u->fiber = f;
    u->waiter.cancel = call_waiter_cancel;
    return cc_fiber_wait(L, f, &u->waiter);
}

/*
 * channel:open(method_index, timeout_s, metadata, default_metadata, first_message, close)
 *   -> call
 * Starts a streaming call; |first_message| (or nil) goes first, and |close| ends the request
 * after it (a server-streaming call).
 */
static int l_open(lua_State *L)
{
    struct channel_ud *ch = check_channel(L, 1);
    const struct pb_method *m = check_method(L, ch, 2);
    uint64_t timeout_ms = opt_timeout_ms(L, 3);
    int msg_idx = lua_isnoneornil(L, 6) ? 0 : 6;
    bool close = lua_toboolean(L, 7);
    struct http_exchange *ex = new_request(L, ch, m, timeout_ms, 4, 5, msg_idx);
    struct call_ud *u = lua_newuserdata(L, sizeof(*u));
    memset(u, 0, sizeof(*u));
    luaL_getmetatable(L, CALL_MT);
    lua_setmetatable(L, -2);
    lua_createtable(L, 0, 1); /* its environment keeps the channel (and so the schema) */
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "channel");
    lua_setfenv(L, -2);
    u->schema = ch->schema;
    u->in = m->in;
    u->out = m->out;
    u->c.owner = u;
    u->c.on_change = call_changed;
    u->c.send_closed = close;
    u->c.one_reply = !m->server_streaming;
    grpc_call_start(&u->c, ch->s->pools[ch->pool], ex, ch->max_message);
    return 1;
}

/* call:send(message) -> true | nil, status. Waits while much is unsent. */
static int l_call_send(lua_State *L)
{
    struct call_ud *u = check_call(L);
    struct grpc_call *c = &u->c;
    if (c->ended) {
        lua_pushnil(L);
        push_call_status(L, u);
        return 2;
    }
    if (c->send_closed) return luaL_error(L, "send after close_send");
    u->scratch.len = 0;
    char err[512];
    if (pb_lua_encode(L, 2, u->schema->s, u->in, &u->scratch, err, sizeof(err)) != 0)
        return luaL_error(L, "%s", err);
    grpc_call_send(c, u->scratch.p ? u->scratch.p : "", u->scratch.len, false);
    if (u->scratch.cap > (1u << 20)) { /* give a big buffer back */
        cc_free(u->scratch.p);
        memset(&u->scratch, 0, sizeof(u->scratch));
    }
    if (c->ended || grpc_call_unsent(c) <= SEND_HIGH_WATER) {
        if (!c->ended) {
            lua_pushboolean(L, 1);
            return 1;
        }
        lua_pushnil(L);
        push_call_status(L, u);
        return 2;
    }
    if (c->ex) c->ex->drain_events = true;
    return wait_for(L, u, WANT_DRAIN);
}

/* call:close_send() -> true | nil, status: the request ends (half-close). */
static int l_call_close_send(lua_State *L)
{
    struct call_ud *u = check_call(L);
    if (u->c.ended) {
        lua_pushnil(L);
        push_call_status(L, u);
        return 2;
    }
    if (!u->c.send_closed) grpc_call_send(&u->c, NULL, 0, true);
    lua_pushboolean(L, 1);
    return 1;
}

/* call:recv() -> message | nil, status (status.ok at the end of a good stream) */
static int l_call_recv(lua_State *L)
{
    return wait_for(L, check_call(L), WANT_MSG);
}

/* call:headers() -> the response head's metadata | nil, status */
static int l_call_headers(lua_State *L)
{
    return wait_for(L, check_call(L), WANT_HEAD);
}

/* call:finish() -> status: waits for the end; messages not read are dropped. */
static int l_call_finish(lua_State *L)
{
    struct call_ud *u = check_call(L);
    const char *msg;
    size_t len;
    while (grpc_call_next(&u->c, &msg, &len))
        ;
    if (!u->c.ended && !u->c.send_closed) grpc_call_send(&u->c, NULL, 0, true);
    return wait_for(L, u, WANT_END);
}

/* call:cancel() -> status */
static int l_call_cancel(lua_State *L)
{
    struct call_ud *u = check_call(L);
    grpc_call_cancel(&u->c, GRPC_CANCELLED, "cancelled by the script");
    push_call_status(L, u);
    return 1;
}

/* call:status() -> status, or nil while the call goes on */
static int l_call_status(lua_State *L)
{
    struct call_ud *u = check_call(L);
    if (!u->c.ended) return 0;
    push_call_status(L, u);
    return 1;
}

/* call:pending() -> messages received and not yet read */
static int l_call_pending(lua_State *L)
{
    lua_pushinteger(L, check_call(L)->c.unread);
    return 1;
}

static int l_call_gc(lua_State *L)
{
    struct call_ud *u = check_call(L);
    u->fiber = NULL;
    grpc_call_release(&u->c);
    cc_free(u->scratch.p);
    u->scratch.p = NULL;
    return 0;
}

/* ---- the module ------------------------------------------------------------------------- */

static int l_code_name(lua_State *L)
{
    lua_pushstring(L, grpc_code_name((int)luaL_checkinteger(L, 1)));
    return 1;
}

static void new_mt(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc)
{
    luaL_newmetatable(L, name);
    if (methods) {
        lua_newtable(L);
        luaL_register(L, NULL, methods);
        lua_setfield(L, -2, "__index");
    }
    if (gc) {
        lua_pushcfunction(L, gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
}

int grpc_lua_open(lua_State *L)
{
    static const luaL_Reg schema_methods[] = {
        {"method", l_schema_method},           {"services", l_schema_services},
        {"encode", l_schema_encode},           {"decode", l_schema_decode},
        {"has_message", l_schema_has_message}, {NULL, NULL},
    };
    static const luaL_Reg channel_methods[] = {
        {"set_schema", l_channel_set_schema}, {"unary", l_unary}, {"open", l_open},
        {"close", l_channel_close},           {NULL, NULL},
    };
    static const luaL_Reg call_methods[] = {
        {"send", l_call_send},       {"close_send", l_call_close_send}, {"recv", l_call_recv},
        {"headers", l_call_headers}, {"finish", l_call_finish},         {"cancel", l_call_cancel},
        {"status", l_call_status},   {"pending", l_call_pending},       {NULL, NULL},
    };
    new_mt(L, SCHEMA_MT, schema_methods, l_schema_gc);
    new_mt(L, CHANNEL_MT, channel_methods, l_channel_gc);
    new_mt(L, CALL_MT, call_methods, l_call_gc);
    if (luaL_newmetatable(L, STATUS_MT)) {
        lua_pushcfunction(L, l_status_index);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_status_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);

    lua_newtable(L);
    lua_pushcfunction(L, l_schema);
    lua_setfield(L, -2, "schema");
    lua_pushcfunction(L, l_channel);
    lua_setfield(L, -2, "channel");
    lua_pushcfunction(L, l_file_names);
    lua_setfield(L, -2, "file_names");
    lua_pushcfunction(L, l_code_name);
    lua_setfield(L, -2, "code_name");
    return 1;
}
