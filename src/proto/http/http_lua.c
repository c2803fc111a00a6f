/* SPDX-License-Identifier: MIT */
/*
 * http_lua.c: `cicada.http.core`, the C half of the HTTP client in Lua: sessions, requests that
 * suspend the calling user until their response, and response objects. Cookies, redirects,
 * bodies and statistics are in lua/cicada/http.lua.
 */
#include "proto/http/http_lua.h"
#include "proto/http/http.h"

#include <arpa/inet.h>
#include <lauxlib.h>
#include <stdio.h>
#include <strings.h>

#define SESSION_MT  "cicada.http.session"
#define RESPONSE_MT "cicada.http.response"
#define BLOCK_MT    "cicada.http.header_block"

/* Each metatable is in the registry by name and, for the per-request paths, under the address
 * of one of these: found without interning a string, as luaL_checkudata does on every call. */
static char session_key, response_key, block_key;

static void push_mt(lua_State *L, const char *key)
{
    lua_pushlightuserdata(L, (void *)key);
    lua_rawget(L, LUA_REGISTRYINDEX);
}

/* luaL_newmetatable, also filed under |key|: leaves the metatable on the stack. */
static bool new_mt(lua_State *L, const char *key, const char *tname)
{
    bool fresh = luaL_newmetatable(L, tname);
    lua_pushlightuserdata(L, (void *)key);
    lua_pushvalue(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
    return fresh;
}

/* luaL_checkudata by |key|. */
static void *check_ud(lua_State *L, int idx, const char *key, const char *tname)
{
    void *p = lua_touserdata(L, idx);
    if (p && lua_getmetatable(L, idx)) {
        push_mt(L, key);
        bool same = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
        if (same) return p;
    }
    luaL_typerror(L, idx, tname);
    return NULL;
}

/* ---- response objects ------------------------------------------------------------------- */

/* A response as Lua sees it: one allocation holding the fields and the bytes they point to. */
struct response {
    int status;
    int error;  /* 0, or the negative code of a failure */
    bool http2; /* it came over HTTP/2 */
    bool set_cookie;
    uint32_t location_at; /* 1 + where in |data| the first Location value is, or 0 */
    uint32_t nheaders;
    uint32_t headers_len; /* "name\0value\0" pairs */
    uint32_t reason_len;
    uint32_t errmsg_len;
    uint32_t url_len;
    uint64_t body_len; /* bytes kept */
    uint64_t length;   /* decoded body bytes, kept or streamed */
    double elapsed_ms; /* request start to the last byte */
    double ttfb_ms;    /* request start to the first response byte (0 if none came) */
    char data[];       /* headers, body, reason, error message, url */
};

static const char *r_body(const struct response *r)
{
    return r->data + r->headers_len;
}

static const char *r_reason(const struct response *r)
{
    return r_body(r) + r->body_len;
}

static const char *r_errmsg(const struct response *r)
{
    return r_reason(r) + r->reason_len;
}

static const char *r_url(const struct response *r)
{
    return r_errmsg(r) + r->errmsg_len;
}

/* Builds the response of |ex| on |L|'s stack. */
static void push_response(lua_State *L, struct http_exchange *ex)
{
    struct http_pool *p = ex->pool;
    char url[4096];
    size_t ul = 0;
    if (p) { /* scheme://authority + the target of the request line */
        const char *line = ex->req.p, *sp = memchr(line, ' ', ex->req.len);
        const char *target = sp ? sp + 1 : "";
        const char *end = sp ? memchr(target, ' ', ex->req.len - (size_t)(target - line)) : NULL;
        size_t tl = end ? (size_t)(end - target) : 0;
        const char *scheme = p->tls ? "https://" : "http://";
        size_t sl = strlen(scheme), al = strlen(p->authority);
        if (sl + al + tl < sizeof(url)) {
            memcpy(url, scheme, sl);
            memcpy(url + sl, p->authority, al);
            memcpy(url + sl + al, target, tl);
            ul = sl + al + tl;
        }
    }
    size_t hl = ex->headers.len, bl = ex->error ? 0 : ex->body.len, rl = ex->reason.len;
    size_t el = ex->errmsg ? strlen(ex->errmsg) : 0;
    struct response *r = lua_newuserdata(L, sizeof(*r) + hl + bl + rl + el + ul + 1);
    r->status = ex->error ? 0 : ex->status;
    r->error = ex->error;
    r->http2 = ex->http2;
    r->set_cookie = !ex->error && ex->set_cookie;
    r->location_at = ex->error ? 0 : ex->location_at;
    r->nheaders = ex->error ? 0 : ex->nheaders;
    r->headers_len = ex->error ? 0 : (uint32_t)hl;
    r->body_len = bl;
    r->length = ex->error ? 0 : ex->body_bytes;
    r->reason_len = ex->error ? 0 : (uint32_t)rl;
    r->errmsg_len = (uint32_t)el;
    r->url_len = (uint32_t)ul;
    r->elapsed_ms = (double)(ex->t_end - ex->t_start) / 1e6;
    r->ttfb_ms = ex->t_first_byte ? (double)(ex->t_first_byte - ex->t_start) / 1e6 : 0;
    char *d = r->data;
    if (r->headers_len) memcpy(d, ex->headers.p, r->headers_len);
    d += r->headers_len;
    if (bl) memcpy(d, ex->body.p, bl);
    d += bl;
    if (r->reason_len) memcpy(d, ex->reason.p, r->reason_len);
    d += r->reason_len;
    if (el) memcpy(d, ex->errmsg, el);
    d += el;
    if (ul) memcpy(d, url, ul);
    d[ul] = '\0';
    push_mt(L, &response_key);
    lua_setmetatable(L, -2);
}

/* Completion: resume the fiber with the response, or hand it to a request still on the stack. */
void http_lua_resume(struct http_exchange *ex)
{
    struct cc_fiber *f = ex->fiber;
    push_response(f->co, ex);
    if (ex->sync) { /* finished inside the call that started it: returned, not resumed */
        *ex->sync = true;
        return;
    }
    cc_fiber_resume(f, 1);
}

static struct response *check_response(lua_State *L)
{
    return check_ud(L, 1, &response_key, RESPONSE_MT);
}

/* The response's cache and script-set fields, created on first need. */
static void push_env(lua_State *L, int idx)
{
    lua_getfenv(L, idx);
    if (lua_istable(L, -1) && !lua_rawequal(L, -1, LUA_GLOBALSINDEX)) return;
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfenv(L, idx);
}

static bool has_env(lua_State *L, int idx)
{
    lua_getfenv(L, idx);
    bool t = lua_istable(L, -1) && !lua_rawequal(L, -1, LUA_GLOBALSINDEX);
    lua_pop(L, 1);
    return t;
}

/* A table of the headers: keys as received, and every key lower-cased (HTTP names are
 * case-insensitive); the metatable finds a key in any case. Repeated names join with ", "
 * (Set-Cookie lines join too; `r:header_list(name)` gives them apart). */
static void push_headers(lua_State *L, const struct response *r)
{
    lua_createtable(L, 0, (int)r->nheaders * 2);
    const char *h = r->data, *end = r->data + r->headers_len;
    char lower[256];
    for (uint32_t i = 0; i < r->nheaders && h < end; i++) {
        size_t nl = strlen(h);
        const char *v = h + nl + 1;
        size_t vl = strlen(v);
        size_t ll = nl < sizeof(lower) ? nl : sizeof(lower) - 1;
        for (size_t k = 0; k < ll; k++)
            lower[k] = (char)((h[k] >= 'A' && h[k] <= 'Z') ? h[k] + 32 : h[k]);
        lua_pushlstring(L, lower, ll);
        lua_rawget(L, -2);
        if (lua_isstring(L, -1)) { /* a repeated header */
            lua_pushliteral(L, ", ");
            lua_pushlstring(L, v, vl);
            lua_concat(L, 3);
        } else {
            lua_pop(L, 1);
            lua_pushlstring(L, v, vl);
        }
        lua_pushlstring(L, lower, ll);
        lua_pushvalue(L, -2);
        lua_rawset(L, -4);
        lua_pushlstring(L, h, nl);
        lua_insert(L, -2);
        lua_rawset(L, -3);
        h = v + vl + 1;
    }
    luaL_getmetatable(L, "cicada.http.headers");
    lua_setmetatable(L, -2);
}

/*
 * core.response_meta(r) -> status, error (or nil), elapsed_ms, length, has Set-Cookie,
 * Location (or nil): what the session needs after every response, in one call.
 */
static int l_response_meta(lua_State *L)
{
    struct response *r = check_response(L);
    lua_pushinteger(L, r->status);
    if (r->error)
        lua_pushlstring(L, r_errmsg(r), r->errmsg_len);
    else
        lua_pushnil(L);
    lua_pushnumber(L, r->elapsed_ms);
    lua_pushnumber(L, (double)r->length);
    lua_pushboolean(L, r->set_cookie);
    if (r->location_at && r->status >= 300 && r->status < 400)
        lua_pushstring(L, r->data + r->location_at - 1);
    else
        lua_pushnil(L);
    return 6;
}

/* r:header_list(name): every value of a header, in order (for Set-Cookie). */
static int l_response_header_list(lua_State *L)
{
    struct response *r = check_response(L);
    const char *want = luaL_checkstring(L, 2);
    lua_newtable(L);
    int n = 0;
    const char *h = r->data, *end = r->data + r->headers_len;
    for (uint32_t i = 0; i < r->nheaders && h < end; i++) {
        const char *v = h + strlen(h) + 1;
        if (strcasecmp(h, want) == 0) {
            lua_pushstring(L, v);
            lua_rawseti(L, -2, ++n);
        }
        h = v + strlen(v) + 1;
    }
    return 1;
}

static int l_response_index(lua_State *L)
{
    struct response *r = check_response(L);
    size_t kl;
    const char *k = luaL_checklstring(L, 2, &kl);
    /* script-set fields and cached values first */
    if (has_env(L, 1)) {
        lua_getfenv(L, 1);
        lua_pushvalue(L, 2);
        lua_rawget(L, -2);
        if (!lua_isnil(L, -1)) return 1;
        lua_pop(L, 2);
    }
    if (strcmp(k, "status_code") == 0) {
        lua_pushinteger(L, r->status);
    } else if (strcmp(k, "ok") == 0) {
        lua_pushboolean(L, r->error == 0 && r->status > 0 && r->status < 400);
    } else if (strcmp(k, "text") == 0 || strcmp(k, "content") == 0) {
        lua_pushlstring(L, r_body(r), r->body_len);
        push_env(L, 1); /* cached: a second access costs no copy */
        lua_pushliteral(L, "text");
        lua_pushvalue(L, -3);
        lua_rawset(L, -3);
        lua_pushliteral(L, "content");
        lua_pushvalue(L, -3);
        lua_rawset(L, -3);
        lua_pop(L, 1);
    } else if (strcmp(k, "headers") == 0) {
        push_headers(L, r);
        push_env(L, 1);
        lua_pushliteral(L, "headers");
        lua_pushvalue(L, -3);
        lua_rawset(L, -3);
        lua_pop(L, 1);
    } else if (strcmp(k, "error") == 0) {
        if (r->error)
            lua_pushlstring(L, r_errmsg(r), r->errmsg_len);
        else
            lua_pushnil(L);
    } else if (strcmp(k, "reason") == 0) {
        lua_pushlstring(L, r_reason(r), r->reason_len);
    } else if (strcmp(k, "url") == 0) {
        lua_pushlstring(L, r_url(r), r->url_len);
    } else if (strcmp(k, "elapsed") == 0) {
        lua_pushnumber(L, r->elapsed_ms / 1000);
    } else if (strcmp(k, "elapsed_ms") == 0) {
        lua_pushnumber(L, r->elapsed_ms);
    } else if (strcmp(k, "ttfb_ms") == 0) {
        lua_pushnumber(L, r->ttfb_ms);
    } else if (strcmp(k, "length") == 0) {
        lua_pushnumber(L, (double)r->length);
    } else if (strcmp(k, "error_code") == 0) {
        lua_pushinteger(L, r->error);
    } else if (strcmp(k, "http_version") == 0) {
        if (r->http2)
            lua_pushliteral(L, "HTTP/2");
        else
            lua_pushliteral(L, "HTTP/1.1");
    } else {
        /* methods written in Lua (json, raise_for_status, success, failure...) */
        push_mt(L, &response_key);
        lua_getfield(L, -1, "methods");
        lua_pushvalue(L, 2);
        lua_rawget(L, -2);
    }
    return 1;
}

static int l_response_newindex(lua_State *L)
{
    check_response(L);
    push_env(L, 1);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 3);
    lua_rawset(L, -3);
    return 0;
}

static int l_response_tostring(lua_State *L)
{
    struct response *r = check_response(L);
    if (r->error)
        lua_pushfstring(L, "<Response [error: %s]>", r_errmsg(r));
    else
        lua_pushfstring(L, "<Response [%d]>", r->status);
    return 1;
}

/* A header table's lookups ignore case. */
static int l_headers_index(lua_State *L)
{
    size_t n;
    const char *k = lua_tolstring(L, 2, &n);
    if (!k) return 0;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < n; i++)
        luaL_addchar(&b, (char)((k[i] >= 'A' && k[i] <= 'Z') ? k[i] + 32 : k[i]));
    luaL_pushresult(&b);
    lua_rawget(L, 1);
    return 1;
}

/* ---- sessions --------------------------------------------------------------------------- */

struct session_ud {
    struct http_session *s;
};

static struct http_session *check_session(lua_State *L)
{
    struct session_ud *u = check_ud(L, 1, &session_key, SESSION_MT);
    if (!u->s || !u->s->hv) luaL_error(L, "this HTTP client is closed");
    return u->s;
}

static uint32_t opt_ms(lua_State *L, int t, const char *k, uint32_t def)
{
    lua_getfield(L, t, k);
    uint32_t v = def;
    if (!lua_isnil(L, -1)) {
        double s = luaL_checknumber(L, -1);
        v = s <= 0 ? 0 : s > 4e6 ? 4000000000u : (uint32_t)(s * 1000 + 0.5);
    }
    lua_pop(L, 1);
    return v;
}

static char *opt_str(lua_State *L, int t, const char *k)
{
    lua_getfield(L, t, k);
    char *v = lua_isnil(L, -1) ? NULL : cc_xstrdup(lua_tostring(L, -1));
    lua_pop(L, 1);
    return v;
}

static void check_str(lua_State *L, int t, const char *k)
{
    lua_getfield(L, t, k);
    if (!lua_isnil(L, -1) && !lua_isstring(L, -1)) luaL_error(L, "%s must be a string", k);
    lua_pop(L, 1);
}

void http_lua_settings(lua_State *L, int t, struct http_settings *out)
{
    /* read and check everything before allocating: errors longjmp */
    uint32_t connect_ms = opt_ms(L, t, "connect_timeout", HTTP_DEFAULT_TIMEOUT_MS);
    uint32_t timeout_ms = opt_ms(L, t, "timeout", HTTP_DEFAULT_TIMEOUT_MS);
    lua_getfield(L, t, "max_body");
    double max_body = luaL_optnumber(L, -1, (double)HTTP_DEFAULT_MAX_BODY);
    lua_getfield(L, t, "max_conns");
    double max_conns = luaL_optnumber(L, -1, HTTP_DEFAULT_MAX_CONNS);
    lua_getfield(L, t, "verify");
    bool verify = lua_isnil(L, -1) ? true : lua_toboolean(L, -1);
    lua_getfield(L, t, "source_addresses");
    int nsrc = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0;
    union cc_sockaddr srcs[64];
    if (nsrc > 64) luaL_error(L, "source_addresses: at most 64 addresses");
    for (int i = 0; i < nsrc; i++) {
        lua_rawgeti(L, -1, i + 1);
        const char *ip = luaL_checkstring(L, -1);
        memset(&srcs[i], 0, sizeof(srcs[i]));
        if (inet_pton(AF_INET, ip, &srcs[i].in.sin_addr) == 1) {
            srcs[i].in.sin_family = AF_INET;
        } else if (inet_pton(AF_INET6, ip, &srcs[i].in6.sin6_addr) == 1) {
            srcs[i].in6.sin6_family = AF_INET6;
        } else {
            luaL_error(L, "source_addresses: '%s' is not an IP address", ip);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 4);
    if (max_conns < 1) luaL_error(L, "max_conns must be 1 or more");
    lua_getfield(L, t, "http2");
    uint8_t http2 = HTTP2_OFF;
    if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "prior_knowledge") == 0)
        http2 = HTTP2_PRIOR;
    else if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "required") == 0)
        http2 = HTTP2_REQUIRED;
    else if (lua_isboolean(L, -1))
        http2 = lua_toboolean(L, -1) ? HTTP2_ALPN : HTTP2_OFF;
    else if (!lua_isnil(L, -1))
        luaL_error(L, "http2 must be false, true, \"prior_knowledge\" or \"required\"");
    lua_pop(L, 1);
    check_str(L, t, "ca_file");
    check_str(L, t, "cert_file");
    check_str(L, t, "key_file");

    struct http_settings set;
    http_settings_default(&set);
    set.connect_timeout_ms = connect_ms;
    set.timeout_ms = timeout_ms;
    set.max_body = max_body < 0 ? 0 : (uint64_t)max_body;
    set.max_conns = (uint32_t)max_conns;
    set.verify = verify;
    set.http2 = http2;
    set.ca_file = opt_str(L, t, "ca_file");
    set.cert_file = opt_str(L, t, "cert_file");
    set.key_file = opt_str(L, t, "key_file");
    if (nsrc) {
        set.sources = cc_xmalloc((size_t)nsrc * sizeof(*set.sources));
        memcpy(set.sources, srcs, (size_t)nsrc * sizeof(*set.sources));
        set.nsources = (uint32_t)nsrc;
    }
    *out = set;
}

/* core.session{ connect_timeout=, timeout=, max_body=, verify=, ca_file=, cert_file=,
 * key_file=, max_conns=, source_addresses = { "127.0.0.2", ... },
 * http2 = false | true | "prior_knowledge" | "required" } */
static int l_session(lua_State *L)
{
    struct cc_vm *vm = cc_vm_self;
    if (!vm) return luaL_error(L, "HTTP clients live in cicada's threads");
    luaL_checktype(L, 1, LUA_TTABLE);
    struct http_settings set;
    http_lua_settings(L, 1, &set);
    struct session_ud *u = lua_newuserdata(L, sizeof(*u));
    u->s = NULL;
    push_mt(L, &session_key);
    lua_setmetatable(L, -2);
    char *err = NULL;
    u->s = http_session_new(http_vm_get(vm), &set, &err);
    return 1;
}

/* session:pool(tls, host, port, authority) -> an id for requests to that origin */
static int l_pool(lua_State *L)
{
    struct http_session *s = check_session(L);
    bool tls = lua_toboolean(L, 2);
    const char *host = luaL_checkstring(L, 3);
    int port = (int)luaL_checkinteger(L, 4);
    const char *authority = luaL_checkstring(L, 5);
    if (port < 1 || port > 65535) return luaL_argerror(L, 4, "port out of range");
    lua_pushinteger(L, http_session_pool(s, tls, host, (uint16_t)port, authority));
    return 1;
}

static bool is_idempotent(const char *m)
{
    static const char *const ok[] = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"};
    for (size_t i = 0; i < CC_ARRAY_LEN(ok); i++)
        if (strcmp(m, ok[i]) == 0) return true;
    return false;
}

static bool valid_token(const char *s, size_t n)
{
    if (n == 0) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= ' ' || s[i] == ':' || (unsigned char)s[i] >= 127) return false;
    return true;
}

static bool valid_value(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0') return false;
    return true;
}

int http_lua_check_headers(lua_State *L, int idx)
{
    int nh = (int)lua_objlen(L, idx);
    for (int i = 1; i <= nh; i++) {
        lua_rawgeti(L, idx, i);
        size_t n;
        const char *v = lua_tolstring(L, -1, &n);
        if (!v || !(i % 2 ? valid_token(v, n) : valid_value(v, n)))
            return luaL_error(L, "header %s %d is not valid: %s", i % 2 ? "name" : "value",
                              (i + 1) / 2, v ? v : "(not a string)");
        lua_pop(L, 1);
    }
    return nh;
}

bool http_lua_valid_target(const char *target, size_t tl)
{
    return valid_value(target, tl) && !memchr(target, ' ', tl);
}

/* The header lines of a flat list checked by http_lua_check_headers, appended to |b|; sets
 * *have_host and *have_length when the list gives Host, or Content-Length or
 * Transfer-Encoding. */
static void append_headers(lua_State *L, struct http_buf *b, int hidx, int nh, bool *have_host,
                           bool *have_length)
{
    for (int i = 1; i + 1 <= nh; i += 2) {
        size_t n, vn;
        lua_rawgeti(L, hidx, i);
        lua_rawgeti(L, hidx, i + 1);
        const char *name = lua_tolstring(L, -2, &n);
        const char *val = lua_tolstring(L, -1, &vn);
        char c0 = (char)(name[0] | 0x20);
        if (!*have_host && c0 == 'h' && n == 4 && strcasecmp(name, "host") == 0) *have_host = true;
        if (!*have_length && ((c0 == 'c' && n == 14 && strcasecmp(name, "content-length") == 0) ||
                              (c0 == 't' && n == 17 && strcasecmp(name, "transfer-encoding") == 0)))
            *have_length = true;
        http_buf_append(b, name, n);
        http_buf_append(b, ": ", 2);
        http_buf_append(b, val, vn);
        http_buf_append(b, "\r\n", 2);
        lua_pop(L, 2);
    }
}

/* A header list checked and serialised once, for requests that send the same headers every
 * time (the client's plain GET): the request copies its lines instead of reading the list. */
struct header_block {
    bool have_host, have_length;
    uint32_t len;
    char lines[];
};

/* core.header_block({ name, value, ... }) -> a block l_request takes in place of the list */
static int l_header_block(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int nh = http_lua_check_headers(L, 1);
    struct http_buf b = {0};
    bool have_host = false, have_length = false;
    append_headers(L, &b, 1, nh, &have_host, &have_length);
    struct header_block *hb = lua_newuserdata(L, sizeof(*hb) + b.len);
    hb->have_host = have_host;
    hb->have_length = have_length;
    hb->len = (uint32_t)b.len;
    if (b.len) memcpy(hb->lines, b.p, b.len);
    http_buf_free(&b);
    push_mt(L, &block_key);
    lua_setmetatable(L, -2);
    return 1;
}

void http_lua_serialise(lua_State *L, struct http_exchange *ex, const struct http_pool *p,
                        const char *method, size_t ml, const char *target, size_t tl, int hidx,
                        int nh, const char *body, size_t bl)
{
    struct http_buf *b = &ex->req;
    http_buf_append(b, method, ml);
    http_buf_append(b, " ", 1);
    http_buf_append(b, target, tl);
    http_buf_puts(b, " HTTP/1.1\r\n");
    bool have_host = false, have_length = false;
    if (nh < 0) { /* a header block */
        const struct header_block *hb = lua_touserdata(L, hidx);
        http_buf_append(b, hb->lines, hb->len);
        have_host = hb->have_host;
        have_length = hb->have_length;
    } else {
        append_headers(L, b, hidx, nh, &have_host, &have_length);
    }
    if (!have_host) {
        http_buf_puts(b, "Host: ");
        http_buf_puts(b, p->authority);
        http_buf_append(b, "\r\n", 2);
    }
    if (!have_length && (body || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
                         strcmp(method, "PATCH") == 0)) {
        char cl[48];
        int n = snprintf(cl, sizeof(cl), "Content-Length: %zu\r\n", bl);
        http_buf_append(b, cl, (size_t)n);
    }
    http_buf_append(b, "\r\n", 2);
    ex->req_head = (uint32_t)b->len; /* where HTTP/2 finds the body */
    if (body) http_buf_append(b, body, bl);
}

/*
 * session:request(pool, method, target, headers, body, opts) -> response
 * |headers| is a flat list { name, value, name, value... }; Host and Content-Length are added
 * unless given. |opts| may set timeout (seconds), max_body and stream. Waits for the response.
 */
static int l_request(lua_State *L)
{
    struct http_session *s = check_session(L);
    struct cc_fiber *f = cc_fiber_check(L);
    lua_Integer pool = luaL_checkinteger(L, 2);
    size_t ml, tl, bl = 0;
    const char *method = luaL_checklstring(L, 3, &ml);
    const char *target = luaL_checklstring(L, 4, &tl);
    const char *body = luaL_optlstring(L, 6, NULL, &bl);
    if (pool < 0 || (uint32_t)pool >= s->npools) return luaL_argerror(L, 2, "no such pool");
    if (!valid_token(method, ml)) return luaL_argerror(L, 3, "not a valid method");
    if (!http_lua_valid_target(target, tl))
        return luaL_argerror(L, 4, "the path holds a space or a line break");
    int nh = 0;
    if (lua_istable(L, 5)) {
        nh = http_lua_check_headers(L, 5);
    } else if (!lua_isnoneornil(L, 5)) {
        check_ud(L, 5, &block_key, BLOCK_MT); /* or it raises */
        nh = -1;
    }
    uint32_t timeout_ms = s->set.timeout_ms;
    uint64_t max_body = s->set.max_body;
    bool stream = false;
    if (lua_istable(L, 7)) {
        timeout_ms = opt_ms(L, 7, "timeout", timeout_ms);
        lua_getfield(L, 7, "max_body");
        if (!lua_isnil(L, -1)) max_body = (uint64_t)luaL_checknumber(L, -1);
        lua_getfield(L, 7, "stream");
        stream = lua_toboolean(L, -1);
        lua_pop(L, 2);
    }

    struct http_pool *p = s->pools[pool];
    struct http_exchange *ex = http_exchange_new(s->hv);
    ex->idempotent = is_idempotent(method);
    ex->head = strcmp(method, "HEAD") == 0;
    ex->timeout_ms = timeout_ms;
    ex->max_body = max_body;
    ex->stream = stream;

    /* serialise the request once; a retry writes the same bytes */
    http_lua_serialise(L, ex, p, method, ml, target, tl, 5, nh, body, bl);

    bool done = false;
    ex->fiber = f;
    ex->waiter.cancel = http_exchange_cancel;
    ex->sync = &done;
    lua_settop(L, 0);
    http_exchange_start(p, ex);
    if (done) return 1; /* failed at once: the response is on the stack */
    ex->sync = NULL;
    return cc_fiber_wait(L, f, &ex->waiter);
}

static int l_close(lua_State *L)
{
    struct session_ud *u = check_ud(L, 1, &session_key, SESSION_MT);
    if (u->s && u->s->hv) http_session_close(u->s);
    return 0;
}

static int l_session_gc(lua_State *L)
{
    struct session_ud *u = check_ud(L, 1, &session_key, SESSION_MT);
    if (u->s) http_session_free(u->s);
    u->s = NULL;
    return 0;
}

/* core.set_response_methods(t): adds the Lua-written methods every response has. */
static int l_set_response_methods(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    push_mt(L, &response_key);
    lua_getfield(L, -1, "methods");
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, -4);
    }
    return 0;
}

static const luaL_Reg session_methods[] = {
    {"pool", l_pool},
    {"request", l_request},
    {"close", l_close},
    {NULL, NULL},
};

int http_lua_open(lua_State *L)
{
    if (new_mt(L, &session_key, SESSION_MT)) {
        lua_newtable(L);
        luaL_register(L, NULL, session_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_session_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    if (new_mt(L, &response_key, RESPONSE_MT)) {
        lua_pushcfunction(L, l_response_index);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_response_newindex);
        lua_setfield(L, -2, "__newindex");
        lua_pushcfunction(L, l_response_tostring);
        lua_setfield(L, -2, "__tostring");
        lua_newtable(L);
        lua_pushcfunction(L, l_response_header_list);
        lua_setfield(L, -2, "header_list");
        lua_setfield(L, -2, "methods");
    }
    lua_pop(L, 1);
    new_mt(L, &block_key, BLOCK_MT);
    lua_pop(L, 1);
    if (luaL_newmetatable(L, "cicada.http.headers")) {
        lua_pushcfunction(L, l_headers_index);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);

    lua_newtable(L);
    lua_pushcfunction(L, l_session);
    lua_setfield(L, -2, "session");
    lua_pushcfunction(L, l_response_meta); /* as a function: no method lookup per request */
    lua_setfield(L, -2, "response_meta");
    lua_pushcfunction(L, l_header_block);
    lua_setfield(L, -2, "header_block");
    lua_pushcfunction(L, l_set_response_methods);
    lua_setfield(L, -2, "set_response_methods");
    return 1;
}
