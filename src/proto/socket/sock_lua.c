/* SPDX-License-Identifier: MIT */
/*
 * sock_lua.c: `cicada.socket.core`, the C half of cicada's LuaSocket (lua/cicada/socket.lua)
 * and LuaSec (lua/cicada/ssl.lua): socket objects, the calls that wait (connect, send,
 * receive, handshakes, select, name lookups) and those that do not. Also the package.preload
 * entries that make `require "socket.core"` and `require "ssl"` load cicada's modules inside
 * users, ahead of Debian's blocking C modules.
 *
 * A call that has to wait parks its user and returns what the loop later resumes it with;
 * the Lua layer turns the kill signal into the Killed error (signals.checked).
 */
#include "proto/socket/sock_lua.h"
#include "proto/socket/sock.h"
#include "lua/offload.h"

#include <arpa/inet.h>
#include <errno.h>
#include <lauxlib.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- objects ---------------------------------------------------------------------------- */

static struct sock_ud *to_ud(lua_State *L, int idx)
{
    struct sock_ud *u = lua_touserdata(L, idx);
    if (!u || !lua_getmetatable(L, idx)) return NULL;
    luaL_getmetatable(L, SOCK_TCP_MT);
    bool ok = lua_rawequal(L, -1, -2);
    if (!ok) {
        lua_pop(L, 1);
        luaL_getmetatable(L, SOCK_SSL_MT);
        ok = lua_rawequal(L, -1, -2);
    }
    lua_pop(L, 2);
    return ok ? u : NULL;
}

static struct sock_ud *check_ud(lua_State *L, int idx)
{
    struct sock_ud *u = to_ud(L, idx);
    if (!u) luaL_typerror(L, idx, "socket");
    return u;
}

static void ud_init(struct sock_ud *u, int family)
{
    memset(u, 0, sizeof(*u));
    u->kind = UD_MASTER;
    u->family = family;
    u->block_s = u->total_s = -1;
    u->connect_ms = u->send_ms = u->read_ms = -1;
    struct sock_opts *o = &u->opts;
    o->keepalive = o->nodelay = o->reuseaddr = o->reuseport = o->v6only = o->linger_on = -1;
    o->linger_s = o->rcvbuf = o->sndbuf = o->keepidle = o->keepcnt = o->keepintvl = -1;
}

/* core.tcp(family): 0 (either), 4 or 6. */
static int l_tcp(lua_State *L)
{
    lua_Integer fam = luaL_optinteger(L, 1, 0);
    struct sock_ud *u = lua_newuserdata(L, sizeof(*u));
    ud_init(u, fam == 4 ? AF_INET : fam == 6 ? AF_INET6 : AF_UNSPEC);
    luaL_getmetatable(L, SOCK_TCP_MT);
    lua_setmetatable(L, -2);
    return 1;
}

static int push_fail(lua_State *L, const char *err)
{
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
}

/* The socket's connection, if it is open for data. */
static struct sock *open_sock(struct sock_ud *u)
{
    struct sock *s = u->s;
    if (!s || s->state != S_OPEN || s->handshaking) return NULL;
    return s;
}

static struct sock_vm *this_sv(lua_State *L)
{
    if (!cc_vm_self) luaL_error(L, "cicada's sockets work only on a cicada thread");
    return sock_vm_get(cc_vm_self);
}

/* ---- timeouts --------------------------------------------------------------------------- */

static int64_t secs_ms(double s)
{
    if (s < 0) return -1;
    double ms = ceil(s * 1000);
    return ms > 1e12 ? (int64_t)1e12 : (int64_t)ms;
}

/* A wait's deadlines: OpenResty's per-kind timeout (a block timeout), else LuaSocket's. */
static void op_times(struct sock_op *op, const struct sock_ud *u, int64_t kind_ms)
{
    if (kind_ms >= 0)
        sock_op_deadlines(op, kind_ms, -1);
    else
        sock_op_deadlines(op, secs_ms(u->block_s), secs_ms(u->total_s));
}

/* sock:settimeout(seconds, mode): LuaSocket's block ("b") or total ("t", "r") timeout. */
static int l_settimeout(lua_State *L)
{
    struct sock_ud *u = check_ud(L, 1);
    double t = lua_isnoneornil(L, 2) ? -1 : luaL_checknumber(L, 2);
    const char *mode = luaL_optstring(L, 3, "b");
    switch (*mode) {
    case 'b':
        u->block_s = t;
        break;
    case 'r':
    case 't':
        u->total_s = t;
        break;
    default:
        return luaL_argerror(L, 3, "invalid timeout mode");
    }
    lua_pushnumber(L, 1);
    return 1;
}

static int l_gettimeout(lua_State *L)
{
    struct sock_ud *u = check_ud(L, 1);
    lua_pushnumber(L, u->block_s < 0 ? -1 : u->block_s);
    lua_pushnumber(L, u->total_s < 0 ? -1 : u->total_s);
    return 2;
}

/* sock:settimeouts(connect_ms, send_ms, read_ms): OpenResty's, in milliseconds. */
static int l_settimeouts(lua_State *L)
{
    struct sock_ud *u = check_ud(L, 1);
    int64_t *slots[3] = {&u->connect_ms, &u->send_ms, &u->read_ms};
    for (int i = 0; i < 3; i++)
        *slots[i] = lua_isnoneornil(L, i + 2) ? -1 : (int64_t)luaL_checknumber(L, i + 2);
    lua_pushnumber(L, 1);
    return 1;
}

/* ---- waiting ---------------------------------------------------------------------------- */

/* The user was killed while it waited: the wait ends without resuming it. A half-made
 * connection or handshake is closed; a receive or send leaves the connection as it is. */
static void op_cancel(struct cc_waiter *w)
{
    struct sock_op *op = (struct sock_op *)w;
    struct sock *s = op->s;
    op->fiber = NULL;
    uint8_t kind = op->kind;
    op->kind = OP_NONE;
    if (kind == OP_CONNECT || kind == OP_HANDSHAKE)
        sock_kill(s);
    else
        sock_arm(s);
}

static int op_wait(lua_State *L, struct sock_op *op, struct cc_fiber *f, uint8_t kind)
{
    op->kind = kind;
    op->fiber = f;
    op->waiter.cancel = op_cancel;
    sock_arm(op->s);
    return cc_fiber_wait(L, f, &op->waiter);
}

/* ---- connect ---------------------------------------------------------------------------- */

/* sock:connect(host, port [, {pool = name}]): 1, or nil and LuaSocket's error. A connection
 * of the pool (host:port, or the name given) left by setkeepalive is reused at once. */
static int l_connect(lua_State *L)
{
    struct sock_ud *u = check_ud(L, 1);
    const char *host = luaL_checkstring(L, 2);
    lua_Number portn = luaL_checknumber(L, 3);
    if (portn < 0 || portn > 65535) return luaL_argerror(L, 3, "invalid port");
    uint16_t port = (uint16_t)portn;
    if (u->kind == UD_CLOSED) return push_fail(L, "closed");
    if (u->s) return push_fail(L, u->kind == UD_CLIENT ? "already connected" : "socket busy");

    char keybuf[300];
    const char *key = NULL;
    if (lua_istable(L, 4)) {
        lua_getfield(L, 4, "pool");
        key = lua_tostring(L, -1);
    }
    if (!key) {
        snprintf(keybuf, sizeof(keybuf), "%s:%u", host, (unsigned)port);
        key = keybuf;
    }
    uint64_t hkey = cc_hash(CC_HASH_INIT, key, strlen(key));

    struct sock_vm *sv = this_sv(L);
    struct sock *s = sock_pool_take(sv, hkey);
    if (s) {
        s->owner = u;
        u->s = s;
        u->kind = UD_CLIENT;
        u->reused = s->reused;
        (void)sock_apply_opts(s, &u->opts);
        lua_pushnumber(L, 1);
        return 1;
    }
    struct cc_fiber *f = cc_fiber_check(L);
    s = sock_new(sv, u);
    u->s = s;
    u->reused = 0;
    s->pool_key = hkey;
    s->family = u->family;
    if (u->has_local) {
        s->local = u->local;
        s->has_local = true;
    }
    op_times(&s->rd, u, u->connect_ms);
    int rv = sock_connect(s, host, port);
    if (rv < 0) {
        sock_kill(s);
        return push_fail(L, sock_errstr(rv));
    }
    return op_wait(L, &s->rd, f, OP_CONNECT);
}

/* ---- send ------------------------------------------------------------------------------- */

/* sock:send(data [, i [, j]]): LuaSocket's: the index of the last byte sent, or nil, the
 * error and that index. Returns once the kernel holds every byte. */
static int l_send(lua_State *L)
{
    struct sock_ud *u = check_ud(L, 1);
    size_t size;
    const char *data = luaL_checklstring(L, 2, &size);
    long start = (long)luaL_optnumber(L, 3, 1);
    long end = (long)luaL_optnumber(L, 4, -1);
    if (start < 0) start = (long)size + start + 1;
    if (end < 0) end = (long)size + end + 1;
    if (start < 1) start = 1;
    if (end > (long)size) end = (long)size;
    struct sock *s = open_sock(u);
    if (!s || s->eof) {
        lua_pushnil(L);
        lua_pushliteral(L, "closed");
        lua_pushnumber(L, (lua_Number)(start - 1));
        return 3;
    }
    if (s->wr.fiber) {
        lua_pushnil(L);
        lua_pushliteral(L, "socket busy writing");
        lua_pushnumber(L, (lua_Number)(start - 1));
        return 3;
    }
    long last = start - 1;
    if (start <= end) {
        size_t n = (size_t)(end - start + 1);
        int rv = sock_write(s, data + start - 1, n);
        if (rv < 0) {
            lua_pushnil(L);
            lua_pushstring(L, sock_error(s, rv));
            lua_pushnumber(L, (lua_Number)(start - 1));
            return 3;
        }
        s->tx += n;
        last = end;
    }
    if (sock_queued(s) == 0) {
        lua_pushnumber(L, (lua_Number)last);
        lua_pushnil(L);
        lua_pushnil(L);
        return 3;
    }
    /* the kernel's buffer is full: wait until it takes the rest */
    struct cc_fiber *f = cc_fiber_check(L);
    s->wr.last = (uint64_t)last;
    op_times(&s->wr, u, u->send_ms);
    return op_wait(L, &s->wr, f, OP_SEND);
}

/* ---- receive ---------------------------------------------------------------------------- */

static int recv_start(lua_State *L, struct sock_ud *u, const struct cc_recv *pattern)
{
    struct sock *s = open_sock(u);
    if (!s) {
        lua_pushnil(L);
        lua_pushliteral(L, "closed");
        lua_pushliteral(L, "");
        return 3;
    }
    if (s->rd.fiber) {
        lua_pushnil(L);
        lua_pushliteral(L, "socket busy reading");
        lua_pushliteral(L, "");
        return 3;
    }
    s->recv = *pattern;
    cc_recv_start(&s->recv);
    int n = sock_recv_try(s, L);
    if (n > 0) return n;
    struct cc_fiber *f = cc_fiber_check(L);
    op_times(&s->rd, u, u->read_ms);
    sock_want_input(s);
    return op_wait(L, &s->rd, f, OP_RECV);
}

/*
 * sock:receive(pattern, already): "*l" (default), "*a" or a byte count (less |already|, the
 * length of the prefix the Lua layer adds). Returns data, or nil, the error and the partial
 * result.
 */
static int l_receive(lua_State *L)
{
    struct sock_ud *u = check_ud(L, 1);
    struct cc_recv r = {0};
    if (lua_isnumber(L, 2)) {
        lua_Number n = lua_tonumber(L, 2);
        luaL_argcheck(L, n >= 0, 2, "invalid receive pattern");
        size_t wanted = (size_t)n, already = (size_t)luaL_optnumber(L, 3, 0);
        if (already > 0 && wanted <= already) {
            lua_pushliteral(L, "");
            return 1;
        }
        r.mode = CC_RECV_BYTES;
        r.n = wanted - already;
    } else {
        const char *p = luaL_optstring(L, 2, "*l");
        if (p[0] == '*') p++;
        if (p[0] == 'l')
            r.mode = CC_RECV_LINE;
        else if (p[0] == 'a')
            r.mode = CC_RECV_ALL;
        else
            return luaL_argerror(L, 2, "invalid receive pattern");
    }
    return recv_start(L, u, &r);
}

/* sock:receiveany(max): OpenResty's: whatever has arrived, at most |max| bytes. */
static int l_receiveany(lua_State *L)
{
    struct sock_ud *u = check_ud(L, 1);
    lua_Number n = luaL_checknumber(L, 2);
    luaL_argcheck(L, n >= 1, 2, "bad max argument");
    struct cc_recv r = {.mode = CC_RECV_ANY, .n = (size_t)n};
    return recv_start(L, u, &r);
}

/*
 * core.receiveuntil(sock, pattern, size, inclusive): one step of OpenResty's reader. Returns
 * data, nil, nil, last; false when the delimiter came next; or nil, error, partial. |pattern|
 * must stay referenced while the call waits (the reader's upvalue holds it).
 */
static int l_receiveuntil(lua_State *L)
{
    struct sock_ud *u = check_ud(L, 1);
    size_t plen;
    const char *pat = luaL_checklstring(L, 2, &plen);
    luaL_argcheck(L, plen > 0, 2, "pattern is empty");
    lua_Number size = luaL_optnumber(L, 3, 0);
    luaL_argcheck(L, size >= 0, 3, "bad size argument");
    struct cc_recv r = {.mode = CC_RECV_UNTIL,
                        .pat = pat,
                        .pat_len = plen,
                        .n = (size_t)size,
                        .inclusive = lua_toboolean(L, 4)};
    return recv_start(L, u, &r);
}

/* ---- TLS -------------------------------------------------------------------------------- */

static int handshake(lua_State *L, struct sock_ud *u, struct cc_tls_ctx *ctx, const char *sni)
{
    struct sock *s = u->s;
    if (!s || s->state != S_OPEN) return push_fail(L, "closed");
    if (s->ssl && !s->handshaking) { /* a reused connection that already speaks TLS */
        lua_pushboolean(L, 1);
        return 1;
    }
    if (s->rd.fiber || s->wr.fiber) return push_fail(L, "socket busy");
    struct cc_fiber *f = cc_fiber_check(L);
    int rv = sock_tls_start(s, ctx, sni);
    if (rv < 0) {
        lua_pushnil(L);
        lua_pushstring(L, sock_error(s, rv));
        sock_kill(s);
        return 2;
    }
    if (!s->handshaking) {
        lua_pushboolean(L, 1);
        return 1;
    }
    op_times(&s->rd, u, u->connect_ms);
    return op_wait(L, &s->rd, f, OP_HANDSHAKE);
}

static struct cc_tls_ctx *shared_ctx(lua_State *L, struct sock_vm *sv, bool verify)
{
    struct cc_tls_ctx **slot = verify ? &sv->tls_verify : &sv->tls_insecure;
    if (*slot) return *slot;
    struct cc_tls_opts o = {
        .insecure = !verify,
        .verify_hint = "(pass ssl_verify = false, or verify = \"none\" to ssl.wrap, to skip "
                       "verification)",
    };
    char *err = NULL;
    if (cc_tls_ctx_new(slot, &o, &err) != 0) {
        lua_pushstring(L, err ? err : "cannot create a TLS context");
        cc_free(err);
        lua_error(L);
    }
    return *slot;
}

/* sock:sslhandshake(reused_session, server_name, ssl_verify): OpenResty's, in place on a
 * connected socket. Returns true, or nil and the error. */
static int l_sslhandshake(lua_State *L)
{
    struct sock_ud *u = check_ud(L, 1);
    const char *sni = lua_isstring(L, 3) ? lua_tostring(L, 3) : NULL;
    bool verify = lua_toboolean(L, 4);
    struct cc_tls_ctx *ctx = shared_ctx(L, this_sv(L), verify);
    return handshake(L, u, ctx, sni);
}

/* conn:dohandshake(): LuaSec's, with the context and name of ssl.wrap and conn:sni. */
static int l_dohandshake(lua_State *L)
{
    struct sock_ud *u = check_ud(L, 1);
    if (!u->tls) return push_fail(L, "not an SSL connection");
    return handshake(L, u, u->tls, u->sni);
}

/* A LuaSec context: a cc_tls_ctx reference. */
struct ctx_ud {
    struct cc_tls_ctx *ctx;
};

/*
 * core.newcontext(verify, cafile, certificate, key, alpn, min, max): the context ssl.newcontext
 * builds from LuaSec's parameters (checked in Lua). Contexts without files or ALPN are the
 * vm's shared ones. Returns the context, or nil and the error.
 */
static int l_newcontext(lua_State *L)
{
    bool verify = lua_toboolean(L, 1);
    const char *ca = luaL_optstring(L, 2, NULL);
    const char *cert = luaL_optstring(L, 3, NULL);
    const char *key = luaL_optstring(L, 4, NULL);
    const char *alpn[17] = {0};
    if (lua_istable(L, 5)) {
        int n = (int)lua_objlen(L, 5);
        if (n > 16) return push_fail(L, "too many ALPN protocols");
        for (int i = 1; i <= n; i++) {
            lua_rawgeti(L, 5, i);
            alpn[i - 1] = lua_tostring(L, -1);
            if (!alpn[i - 1]) return push_fail(L, "ALPN protocols must be strings");
            lua_pop(L, 1); /* the table keeps it */
        }
    }
    lua_Integer minv = luaL_optinteger(L, 6, 0), maxv = luaL_optinteger(L, 7, 0);
    struct cc_tls_ctx *ctx = NULL;
    if (!ca && !cert && !key && !alpn[0] && !minv && !maxv) {
        ctx = shared_ctx(L, this_sv(L), verify);
        cc_tls_ctx_ref(ctx);
    } else {
        struct cc_tls_opts o = {
            .insecure = !verify,
            .ca_file = ca,
            .cert_file = cert,
            .key_file = key,
            .alpn = alpn[0] ? alpn : NULL,
            .min_version = (enum cc_tls_version)minv,
            .max_version = (enum cc_tls_version)maxv,
            .verify_hint = "(set verify = \"none\" to skip verification)",
        };
        char *err = NULL;
        if (cc_tls_ctx_new(&ctx, &o, &err) != 0) {
            lua_pushnil(L);
            lua_pushstring(L, err ? err : "cannot create a TLS context");
            cc_free(err);
            return 2;
        }
    }
    struct ctx_ud *c = lua_newuserdata(L, sizeof(*c));
    c->ctx = ctx;
    luaL_getmetatable(L, SOCK_CTX_MT);
    lua_setmetatable(L, -2);
    return 1;
}

static int l_ctx_gc(lua_State *L)
{
    struct ctx_ud *c = luaL_checkudata(L, 1, SOCK_CTX_MT);
    cc_tls_ctx_unref(c->ctx);
    c->ctx = NULL;
    return 0;
}

/* core.wrap(sock, ctx): LuaSec's ssl.wrap: a new SSL object takes the connection over; the
 * TCP object is closed. Returns it, or nil and the error. */
static int l_wrap(lua_State *L)
{
    struct sock_ud *u = check_ud(L, 1);
    struct ctx_ud *c = luaL_checkudata(L, 2, SOCK_CTX_MT);
    if (u->is_ssl) return push_fail(L, "already an SSL connection");
    if (!u->s || u->s->state != S_OPEN) return push_fail(L, "closed");
    struct sock_ud *n = lua_newuserdata(L, sizeof(*n));
    *n = *u;
    n->is_ssl = true;
    n->tls = c->ctx;
    cc_tls_ctx_ref(c->ctx);
    n->sni = NULL;
    n->s->owner = n;
    u->s = NULL;
    u->kind = UD_CLOSED;
    luaL_getmetatable(L, SOCK_SSL_MT);
    lua_setmetatable(L, -2);
    return 1;
}

/* conn:sni(name): the server name the handshake sends and verifies. */
static int l_sni(lua_State *L)
{
    struct sock_ud *u = check_ud(L, 1);
    const char *name = luaL_checkstring(L, 2);
    cc_free(u->sni);
    u->sni = cc_xstrdup(name);
    return 0;
}

static SSL *ssl_of(struct sock_ud *u)
{
    return u->s && u->s->ssl && !u->s->handshaking ? u->s->ssl : NULL;
}

/* conn:getalpn(): the protocol ALPN chose, or nil. */
static int l_getalpn(lua_State *L)
{
    SSL *ssl = ssl_of(check_ud(L, 1));
    const unsigned char *p = NULL;
    unsigned len = 0;
    if (ssl) SSL_get0_alpn_selected(ssl, &p, &len);
    if (!p || !len) return 0;
    lua_pushlstring(L, (const char *)p, len);
    return 1;
}

/* conn:info([field]): protocol, cipher, bits and algbits, as LuaSec's. */
static int l_info(lua_State *L)
{
    SSL *ssl = ssl_of(check_ud(L, 1));
    if (!ssl) return 0;
    const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
    int alg = 0, bits = c ? SSL_CIPHER_get_bits(c, &alg) : 0;
    lua_createtable(L, 0, 4);
    lua_pushstring(L, SSL_get_version(ssl));
    lua_setfield(L, -2, "protocol");
    lua_pushstring(L, c ? SSL_CIPHER_get_name(c) : "");
    lua_setfield(L, -2, "cipher");
    lua_pushinteger(L, bits);
    lua_setfield(L, -2, "bits");
    lua_pushinteger(L, alg);
    lua_setfield(L, -2, "algbits");
    if (lua_isstring(L, 2)) lua_getfield(L, -1, lua_tostring(L, 2));
    return 1;
}

/* conn:getpeerverification(): true, or false and the reason in a list. */
static int l_getpeerverification(lua_State *L)
{
    SSL *ssl = ssl_of(check_ud(L, 1));
    if (!ssl) return push_fail(L, "closed");
    long r = SSL_get_verify_result(ssl);
    if (r == X509_V_OK) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushboolean(L, 0);
    lua_createtable(L, 1, 0);
    lua_pushstring(L, X509_verify_cert_error_string(r));
    lua_rawseti(L, -2, 1);
    return 2;
}

static int l_want(lua_State *L)
{
    check_ud(L, 1);
    lua_pushliteral(L, "nothing");
    return 1;
}

/* ---- select ----------------------------------------------------------------------------- */

/* core.ready(sock, "r" or "w"): whether select reports it now. */
static int l_ready(lua_State *L)
{
    struct sock_ud *u = to_ud(L, 1);
    if (!u) return luaL_error(L, "socket.select: only cicada sockets can be selected");
    const char *mode = luaL_checkstring(L, 2);
    bool r;
    if (!u->s)
        r = u->kind == UD_CLOSED; /* a closed socket is ready: its next call says "closed" */
    else
        r = mode[0] == 'r' ? sock_readable(u->s) : sock_writable(u->s);
    lua_pushboolean(L, r);
    return 1;
}

/* core.select_wait(socks, timeout): waits until one of |socks| (a list) has news, or the
 * timeout (seconds; nil or negative: none). Returns true; the Lua layer looks again. */
static int l_select_wait(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    double t = lua_isnoneornil(L, 2) ? -1 : luaL_checknumber(L, 2);
    struct cc_fiber *f = cc_fiber_check(L);
    struct sock_vm *sv = this_sv(L);
    uint32_t n = (uint32_t)lua_objlen(L, 1);
    for (uint32_t i = 1; i <= n; i++) {
        lua_rawgeti(L, 1, (int)i);
        struct sock_ud *u = to_ud(L, -1);
        lua_pop(L, 1);
        if (u && u->s && u->s->sel)
            return luaL_error(L, "socket.select: a socket is already selected by another user");
    }
    struct sock_select *w = sock_select_new(sv, n);
    for (uint32_t i = 1; i <= n; i++) {
        lua_rawgeti(L, 1, (int)i);
        struct sock_ud *u = to_ud(L, -1);
        lua_pop(L, 1);
        if (!u || !u->s || u->s->sel == w) continue;
        u->s->sel = w;
        w->socks[w->n++] = u->s;
    }
    w->fiber = f;
    int64_t ms = secs_ms(t);
    if (ms >= 0) uv_timer_start(&w->timer, sock_select_timeout, (uint64_t)ms, 0);
    return cc_fiber_wait(L, f, &w->waiter);
}

/* ---- name lookups ----------------------------------------------------------------------- */

struct dns_op {
    struct cc_waiter waiter;
    struct cc_fiber *fiber;
    struct cc_resolve_req *req;
    bool addrinfo; /* getaddrinfo's list, else toip's answer */
};

static void dns_cancel(struct cc_waiter *w)
{
    struct dns_op *op = (struct dns_op *)w;
    cc_resolve_cancel(op->req);
    cc_free(op);
}

static void dns_done(const struct cc_resolve_result *res, void *data)
{
    struct dns_op *op = data;
    lua_State *co = op->fiber->co;
    int n;
    if (res->status < 0) {
        lua_pushnil(co);
        /* LuaSocket's toip speaks of hosts, its getaddrinfo as getaddrinfo() does */
        lua_pushstring(co, op->addrinfo ? sock_errstr(res->status) : "host not found");
        n = 2;
    } else if (op->addrinfo) {
        lua_createtable(co, (int)res->n, 0);
        for (size_t i = 0; i < res->n; i++) {
            char ip[64];
            const union cc_sockaddr *a = &res->addrs[i];
            if (a->sa.sa_family == AF_INET)
                uv_ip4_name(&a->in, ip, sizeof(ip));
            else
                uv_ip6_name(&a->in6, ip, sizeof(ip));
            lua_createtable(co, 0, 2);
            lua_pushstring(co, a->sa.sa_family == AF_INET ? "inet" : "inet6");
            lua_setfield(co, -2, "family");
            lua_pushstring(co, ip);
            lua_setfield(co, -2, "addr");
            lua_rawseti(co, -2, (int)i + 1);
        }
        n = 1;
    } else {
        /* toip: the first IPv4 address, and the resolved table LuaSocket returns */
        char first[64] = "";
        lua_createtable(co, 0, 3);
        lua_pushstring(co, res->host);
        lua_setfield(co, -2, "name");
        lua_newtable(co);
        lua_setfield(co, -2, "alias");
        lua_newtable(co);
        int k = 0;
        for (size_t i = 0; i < res->n; i++) {
            if (res->addrs[i].sa.sa_family != AF_INET) continue;
            char ip[64];
            uv_ip4_name(&res->addrs[i].in, ip, sizeof(ip));
            if (!first[0]) memcpy(first, ip, sizeof(ip));
            lua_pushstring(co, ip);
            lua_rawseti(co, -2, ++k);
        }
        lua_setfield(co, -2, "ip");
        if (!first[0]) {
            lua_pop(co, 1);
            lua_pushnil(co);
            lua_pushliteral(co, "host not found");
        } else {
            lua_pushstring(co, first);
            lua_insert(co, -2);
        }
        n = 2;
    }
    struct cc_fiber *f = op->fiber;
    cc_free(op);
    cc_fiber_resume(f, n);
}

static int dns_lookup(lua_State *L, bool addrinfo)
{
    const char *host = luaL_checkstring(L, 1);
    struct cc_fiber *f = cc_fiber_check(L);
    struct sock_vm *sv = this_sv(L);
    struct dns_op *op = cc_xcalloc(1, sizeof(*op));
    op->fiber = f;
    op->addrinfo = addrinfo;
    op->waiter.cancel = dns_cancel;
    int rv = cc_resolve(&sv->resolver, host, 0, dns_done, op, &op->req);
    if (rv < 0) {
        cc_free(op);
        return push_fail(L, addrinfo ? sock_errstr(rv) : "host not found");
    }
    return cc_fiber_wait(L, f, &op->waiter);
}

static int l_toip(lua_State *L)
{
    return dns_lookup(L, false);
}

static int l_getaddrinfo(lua_State *L)
{
    return dns_lookup(L, true);
}

/* dns.tohostname(address): getnameinfo() blocks, so it runs on the offload pool. */
struct rdns {
    union cc_sockaddr sa;
    int rv;
    char ip[64];
    char name[NI_MAXHOST];
};

static void rdns_work(void *arg)
{
    struct rdns *r = arg;
    r->rv = getnameinfo(&r->sa.sa, (socklen_t)cc_sockaddr_len(&r->sa.sa), r->name, sizeof(r->name),
                        NULL, 0, NI_NAMEREQD);
}

static int rdns_done(lua_State *L, void *arg)
{
    struct rdns *r = arg;
    if (r->rv != 0) {
        cc_free(r);
        return push_fail(L, "host not found");
    }
    lua_pushstring(L, r->name);
    lua_createtable(L, 0, 3);
    lua_pushstring(L, r->name);
    lua_setfield(L, -2, "name");
    lua_newtable(L);
    lua_setfield(L, -2, "alias");
    lua_createtable(L, 1, 0);
    lua_pushstring(L, r->ip);
    lua_rawseti(L, -2, 1);
    lua_setfield(L, -2, "ip");
    cc_free(r);
    return 2;
}

static void rdns_drop(void *arg)
{
    cc_free(arg);
}

static int l_tohostname(lua_State *L)
{
    const char *ip = luaL_checkstring(L, 1);
    struct rdns *r = cc_xcalloc(1, sizeof(*r));
    if (uv_ip4_addr(ip, 0, &r->sa.in) != 0 && uv_ip6_addr(ip, 0, &r->sa.in6) != 0) {
        cc_free(r);
        return push_fail(L, "host not found");
    }
    snprintf(r->ip, sizeof(r->ip), "%s", ip);
    cc_fiber_check(L);
    return cc_offload(L, rdns_work, rdns_done, rdns_drop, r);
}

static int l_gethostname(lua_State *L)
{
    char name[256];
    if (gethostname(name, sizeof(name)) != 0) return push_fail(L, strerror(errno));
    name[sizeof(name) - 1] = '\0';
    lua_pushstring(L, name);
    return 1;
}

/* ---- the rest of a socket's methods ------------------------------------------------------ */

static int l_close(lua_State *L)
{
    struct sock_ud *u = check_ud(L, 1);
    if (u->s) sock_kill(u->s);
    u->kind = UD_CLOSED;
    lua_pushnumber(L, 1);
    return 1;
}

static int l_gc(lua_State *L)
{
    struct sock_ud *u = lua_touserdata(L, 1);
    if (u->s) sock_kill(u->s);
    cc_tls_ctx_unref(u->tls);
    u->tls = NULL;
    cc_free(u->sni);
    u->sni = NULL;
    return 0;
}

static int l_tostring(lua_State *L)
{
    struct sock_ud *u = check_ud(L, 1);
    if (u->is_ssl)
        lua_pushfstring(L, "SSL connection: %p", (void *)u);
    else
        lua_pushfstring(L, "tcp{%s}: %p",
                        u->kind == UD_MASTER   ? "master"
                        : u->kind == UD_CLIENT ? "client"
                                               : "closed",
                        (void *)u);
    return 1;
}

/* sock:setkeepalive([timeout_ms [, size]]): OpenResty's: the connection goes to this thread's
 * pool for the next connect to the same host and port (or pool name); the object is closed. */
static int l_setkeepalive(lua_State *L)
{
    struct sock_ud *u = check_ud(L, 1);
    int64_t timeout = lua_isnoneornil(L, 2) ? -1 : (int64_t)luaL_checknumber(L, 2);
    int64_t size = lua_isnoneornil(L, 3) ? 0 : (int64_t)luaL_checknumber(L, 3);
    if (!u->s) return push_fail(L, "closed");
    const char *err = sock_pool_put(u->s, timeout, size);
    if (err) return push_fail(L, err);
    u->kind = UD_CLOSED;
    lua_pushnumber(L, 1);
    return 1;
}

static int l_getreusedtimes(lua_State *L)
{
    struct sock_ud *u = check_ud(L, 1);
    if (!u->s) return push_fail(L, "closed");
    lua_pushinteger(L, u->reused);
    return 1;
}

static const char *family_name(int fam)
{
    return fam == AF_INET6 ? "inet6" : "inet";
}

static int push_addr(lua_State *L, const struct sockaddr *sa)
{
    char ip[64];
    int port;
    if (sa->sa_family == AF_INET) {
        uv_ip4_name((const struct sockaddr_in *)sa, ip, sizeof(ip));
        port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        uv_ip6_name((const struct sockaddr_in6 *)sa, ip, sizeof(ip));
        port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    } else {
        return push_fail(L, "getpeername failed");
    }
    lua_pushstring(L, ip);
    lua_pushinteger(L, port);
    lua_pushstring(L, family_name(sa->sa_family));
    return 3;
}

static int l_getpeername(lua_State *L)
{
    struct sock_ud *u = check_ud(L, 1);
    if (!u->s || u->s->state != S_OPEN) return push_fail(L, "closed");
    return push_addr(L, cc_conn_peer(&u->s->conn));
}

static int l_getsockname(lua_State *L)
{
    struct sock_ud *u = check_ud(L, 1);
    if (!u->s || !u->s->conn_live) return push_fail(L, "closed");
    union cc_sockaddr a;
    int len = sizeof(a);
    int rv = uv_tcp_getsockname(&u->s->conn.tcp, &a.sa, &len);
    if (rv < 0) return push_fail(L, sock_errstr(rv));
    return push_addr(L, &a.sa);
}

static int l_getfamily(lua_State *L)
{
    struct sock_ud *u = check_ud(L, 1);
    int fam = u->s && u->s->state == S_OPEN ? cc_conn_peer(&u->s->conn)->sa_family : u->family;
    lua_pushstring(L, fam == AF_UNSPEC ? "inet" : family_name(fam));
    return 1;
}

static int l_getfd(lua_State *L)
{
    struct sock_ud *u = check_ud(L, 1);
    uv_os_fd_t fd = -1;
    if (!u->s || !u->s->conn_live || uv_fileno((uv_handle_t *)&u->s->conn.tcp, &fd) < 0) fd = -1;
    lua_pushnumber(L, fd);
    return 1;
}

static int l_setfd(lua_State *L)
{
    check_ud(L, 1);
    return luaL_error(L, "setfd: cicada's sockets own their descriptors");
}

static int l_dirty(lua_State *L)
{
    struct sock_ud *u = check_ud(L, 1);
    lua_pushboolean(L, u->s && sock_buffered(u->s) > 0);
    return 1;
}

static int l_getstats(lua_State *L)
{
    struct sock_ud *u = check_ud(L, 1);
    struct sock *s = u->s;
    lua_pushnumber(L, s ? (lua_Number)s->rx : 0);
    lua_pushnumber(L, s ? (lua_Number)s->tx : 0);
    lua_pushnumber(L, s ? (double)(cc_now_ns() - s->born_ns) / 1e9 : 0);
    return 3;
}

static int l_setstats(lua_State *L)
{
    struct sock_ud *u = check_ud(L, 1);
    struct sock *s = u->s;
    if (!s) return push_fail(L, "closed");
    s->rx = (uint64_t)luaL_optnumber(L, 2, (lua_Number)s->rx);
    s->tx = (uint64_t)luaL_optnumber(L, 3, (lua_Number)s->tx);
    if (lua_isnumber(L, 4)) s->born_ns = cc_now_ns() - (uint64_t)(lua_tonumber(L, 4) * 1e9);
    lua_pushnumber(L, 1);
    return 1;
}

/* sock:bind(address, port): the source address of the coming connect ("*" for any). */
static int l_bind(lua_State *L)
{
    struct sock_ud *u = check_ud(L, 1);
    const char *addr = luaL_checkstring(L, 2);
    int port = (int)luaL_optnumber(L, 3, 0);
    if (u->kind != UD_MASTER || u->s) return push_fail(L, "already connected");
    if (strcmp(addr, "*") == 0) addr = u->family == AF_INET6 ? "::" : "0.0.0.0";
    if (strcmp(addr, "localhost") == 0) addr = u->family == AF_INET6 ? "::1" : "127.0.0.1";
    if (uv_ip4_addr(addr, port, &u->local.in) != 0 && uv_ip6_addr(addr, port, &u->local.in6) != 0)
        return push_fail(L, "host or service not provided, or not known");
    u->has_local = true;
    lua_pushnumber(L, 1);
    return 1;
}

static int l_server_only(lua_State *L)
{
    check_ud(L, 1);
    return push_fail(L, "not supported: cicada's sockets are clients only");
}

/* sock:shutdown([how]): "both" (default), "send" or "receive". */
static int l_shutdown(lua_State *L)
{
    struct sock_ud *u = check_ud(L, 1);
    const char *how = luaL_optstring(L, 2, "both");
    bool rd = strcmp(how, "receive") == 0 || strcmp(how, "both") == 0;
    bool wr = strcmp(how, "send") == 0 || strcmp(how, "both") == 0;
    if (!rd && !wr) return luaL_argerror(L, 2, "invalid shutdown method");
    struct sock *s = open_sock(u);
    if (!s) return push_fail(L, "closed");
    if (wr) {
        uv_os_fd_t fd;
        if (s->ssl) {
            (void)SSL_shutdown(s->ssl);
            (void)sock_write(s, "", 0);
        }
        if (uv_fileno((uv_handle_t *)&s->conn.tcp, &fd) == 0) (void)shutdown(fd, SHUT_WR);
    }
    if (rd) {
        s->shut_rd = true;
        sock_consume(s, sock_buffered(s));
        if (s->rd.fiber && s->rd.kind == OP_RECV) sock_recv_try(s, NULL);
    }
    lua_pushnumber(L, 1);
    return 1;
}

static const struct {
    const char *name;
    size_t off;   /* in struct sock_opts */
    bool boolean; /* an int8_t flag, else an int */
    int level, opt;
} option_fields[] = {
    {"keepalive", offsetof(struct sock_opts, keepalive), true, SOL_SOCKET, SO_KEEPALIVE},
    {"tcp-nodelay", offsetof(struct sock_opts, nodelay), true, IPPROTO_TCP, TCP_NODELAY},
    {"reuseaddr", offsetof(struct sock_opts, reuseaddr), true, SOL_SOCKET, SO_REUSEADDR},
    {"reuseport", offsetof(struct sock_opts, reuseport), true, SOL_SOCKET, SO_REUSEPORT},
    {"ipv6-v6only", offsetof(struct sock_opts, v6only), true, IPPROTO_IPV6, IPV6_V6ONLY},
    {"recv-buffer-size", offsetof(struct sock_opts, rcvbuf), false, SOL_SOCKET, SO_RCVBUF},
    {"send-buffer-size", offsetof(struct sock_opts, sndbuf), false, SOL_SOCKET, SO_SNDBUF},
    {"tcp-keepidle", offsetof(struct sock_opts, keepidle), false, IPPROTO_TCP, TCP_KEEPIDLE},
    {"tcp-keepcnt", offsetof(struct sock_opts, keepcnt), false, IPPROTO_TCP, TCP_KEEPCNT},
    {"tcp-keepintvl", offsetof(struct sock_opts, keepintvl), false, IPPROTO_TCP, TCP_KEEPINTVL},
};

/* sock:setoption(name, value): LuaSocket's TCP options; kept until connect if need be. */
static int l_setoption(lua_State *L)
{
    struct sock_ud *u = check_ud(L, 1);
    const char *name = luaL_checkstring(L, 2);
    struct sock_opts *o = &u->opts;
    bool known = false;
    if (strcmp(name, "linger") == 0) {
        luaL_checktype(L, 3, LUA_TTABLE);
        lua_getfield(L, 3, "on");
        if (!lua_isboolean(L, -1)) return luaL_argerror(L, 3, "boolean 'on' field expected");
        o->linger_on = (int8_t)lua_toboolean(L, -1);
        lua_getfield(L, 3, "timeout");
        if (!lua_isnumber(L, -1)) return luaL_argerror(L, 3, "number 'timeout' field expected");
        o->linger_s = (int)lua_tonumber(L, -1);
        lua_pop(L, 2);
        known = true;
    }
    for (size_t i = 0; !known && i < CC_ARRAY_LEN(option_fields); i++) {
        if (strcmp(name, option_fields[i].name) != 0) continue;
        char *field = (char *)o + option_fields[i].off;
        if (option_fields[i].boolean) {
            luaL_checkany(L, 3);
            *(int8_t *)field = (int8_t)lua_toboolean(L, 3);
        } else {
            *(int *)field = (int)luaL_checknumber(L, 3);
        }
        known = true;
    }
    if (!known) return luaL_argerror(L, 2, lua_pushfstring(L, "unsupported option `%s'", name));
    if (u->s && u->s->conn_live) {
        int rv = sock_apply_opts(u->s, o);
        if (rv < 0) return push_fail(L, sock_errstr(rv));
    }
    lua_pushnumber(L, 1);
    return 1;
}

/* sock:getoption(name): the value the socket has (or will have once connected). */
static int l_getoption(lua_State *L)
{
    struct sock_ud *u = check_ud(L, 1);
    const char *name = luaL_checkstring(L, 2);
    uv_os_fd_t fd = -1;
    if (u->s && u->s->conn_live) (void)uv_fileno((uv_handle_t *)&u->s->conn.tcp, &fd);
    if (strcmp(name, "linger") == 0) {
        struct linger l = {.l_onoff = u->opts.linger_on > 0, .l_linger = u->opts.linger_s};
        socklen_t len = sizeof(l);
        if (fd >= 0) (void)getsockopt(fd, SOL_SOCKET, SO_LINGER, &l, &len);
        lua_createtable(L, 0, 2);
        lua_pushboolean(L, l.l_onoff);
        lua_setfield(L, -2, "on");
        lua_pushinteger(L, l.l_linger);
        lua_setfield(L, -2, "timeout");
        return 1;
    }
    for (size_t i = 0; i < CC_ARRAY_LEN(option_fields); i++) {
        if (strcmp(name, option_fields[i].name) != 0) continue;
        const char *field = (const char *)&u->opts + option_fields[i].off;
        int v = option_fields[i].boolean ? *(const int8_t *)field : *(const int *)field;
        if (fd >= 0) {
            socklen_t len = sizeof(v);
            if (getsockopt(fd, option_fields[i].level, option_fields[i].opt, &v, &len) != 0)
                return push_fail(L, strerror(errno));
        } else if (v < 0) {
            v = 0;
        }
        if (option_fields[i].boolean)
            lua_pushboolean(L, v != 0);
        else
            lua_pushinteger(L, v);
        return 1;
    }
    return luaL_argerror(L, 2, lua_pushfstring(L, "unsupported option `%s'", name));
}

static int l_gettime(lua_State *L)
{
    lua_pushnumber(L, cc_wall_s());
    return 1;
}

/* ---- the module ------------------------------------------------------------------------- */

/* Methods every socket object has that never wait; the Lua layer adds the ones that do. */
static const luaL_Reg common_methods[] = {
    {"close", l_close},
    {"settimeout", l_settimeout},
    {"gettimeout", l_gettimeout},
    {"settimeouts", l_settimeouts},
    {"getpeername", l_getpeername},
    {"getsockname", l_getsockname},
    {"getfamily", l_getfamily},
    {"getfd", l_getfd},
    {"setfd", l_setfd},
    {"dirty", l_dirty},
    {"getstats", l_getstats},
    {"setstats", l_setstats},
    {"setoption", l_setoption},
    {"getoption", l_getoption},
    {"shutdown", l_shutdown},
    {"setkeepalive", l_setkeepalive},
    {"getreusedtimes", l_getreusedtimes},
    {NULL, NULL},
};

static const luaL_Reg tcp_methods[] = {
    {"bind", l_bind},
    {"listen", l_server_only},
    {"accept", l_server_only},
    {NULL, NULL},
};

static const luaL_Reg ssl_methods[] = {
    {"sni", l_sni},   {"getalpn", l_getalpn},
    {"info", l_info}, {"getpeerverification", l_getpeerverification},
    {"want", l_want}, {NULL, NULL},
};

static const luaL_Reg functions[] = {
    {"tcp", l_tcp},
    {"connect", l_connect},
    {"send", l_send},
    {"receive", l_receive},
    {"receiveany", l_receiveany},
    {"receiveuntil", l_receiveuntil},
    {"sslhandshake", l_sslhandshake},
    {"dohandshake", l_dohandshake},
    {"newcontext", l_newcontext},
    {"wrap", l_wrap},
    {"ready", l_ready},
    {"select_wait", l_select_wait},
    {"toip", l_toip},
    {"getaddrinfo", l_getaddrinfo},
    {"tohostname", l_tohostname},
    {"gethostname", l_gethostname},
    {"gettime", l_gettime},
    {NULL, NULL},
};

/* A socket metatable whose __index table holds |extra| and the common methods. */
static void new_mt(lua_State *L, const char *name, const luaL_Reg *extra)
{
    luaL_newmetatable(L, name);
    lua_newtable(L);
    luaL_register(L, NULL, common_methods);
    luaL_register(L, NULL, extra);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
}

int sock_lua_open(lua_State *L)
{
    new_mt(L, SOCK_TCP_MT, tcp_methods);
    new_mt(L, SOCK_SSL_MT, ssl_methods);
    luaL_newmetatable(L, SOCK_CTX_MT);
    lua_pushcfunction(L, l_ctx_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);

    lua_newtable(L);
    luaL_register(L, NULL, functions);
    luaL_getmetatable(L, SOCK_TCP_MT);
    lua_getfield(L, -1, "__index");
    lua_setfield(L, -3, "tcp_methods");
    lua_pop(L, 1);
    luaL_getmetatable(L, SOCK_SSL_MT);
    lua_getfield(L, -1, "__index");
    lua_setfield(L, -3, "ssl_methods");
    lua_pop(L, 1);
    lua_pushnumber(L, SOCK_RECV_LIMIT);
    lua_setfield(L, -2, "RECV_LIMIT");
    return 1;
}

/* ---- package.preload entries ------------------------------------------------------------- */

static int require_as(lua_State *L, const char *module)
{
    lua_getglobal(L, "require");
    lua_pushstring(L, module);
    lua_call(L, 1, 1);
    return 1;
}

int sock_lua_open_socket_core(lua_State *L)
{
    return require_as(L, "cicada.socket");
}

int sock_lua_open_ssl(lua_State *L)
{
    return require_as(L, "cicada.ssl");
}

int sock_lua_open_refused(lua_State *L)
{
    const char *name = luaL_optstring(L, 1, "this module");
    return luaL_error(L,
                      "module '%s' is not available inside cicada: it would block every user "
                      "of the thread (cicada provides the cooperative 'socket' and 'ssl' "
                      "modules; see docs/luasocket.md)",
                      name);
}
