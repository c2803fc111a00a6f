/* SPDX-License-Identifier: MIT */
/*
 * xmlrpc_lua.c: `cicada.xmlrpc.core`, Lua values to an XML-RPC call and a response back to Lua
 * values. The HTTP exchange, the statistics and the wrappers' constructors are in
 * lua/cicada/xmlrpc.lua.
 *
 * Each Lua state (one per thread) has one parser and one output buffer, reused for every call:
 * encoding and decoding are synchronous, so no two calls of a thread ever share them at once.
 *
 * Lua is ambiguous where XML-RPC is not; the wrappers say what a value is. They are tables
 * whose metatable is one of this module's:
 *   datetime {value = "20260102T03:04:05"}   <dateTime.iso8601>
 *   binary   {data = bytes}                   <base64>
 *   double   {value = number}                 <double> even for a whole number
 *   array / struct (set on the table itself)  the container, even when empty
 *   null (the one sentinel xmlrpc.null)       <nil/>
 */
#include "proto/xmlrpc/xmlrpc_lua.h"
#include "proto/xmlrpc/xmlrpc.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum kind { K_PLAIN, K_DATETIME, K_BINARY, K_DOUBLE, K_ARRAY, K_STRUCT, K_NULL };

static const char *const mt_names[] = {
    NULL,
    "cicada.xmlrpc.datetime",
    "cicada.xmlrpc.binary",
    "cicada.xmlrpc.double",
    "cicada.xmlrpc.array",
    "cicada.xmlrpc.struct",
    "cicada.xmlrpc.null",
};

struct state {
    struct cc_xr_parser parser;
    bool parser_ok;
    struct cc_xr_buf out;
};

/* The upvalues of every function of the module. */
#define UV_STATE    lua_upvalueindex(1)
#define UV_KINDS    lua_upvalueindex(2) /* metatable -> enum kind */
#define UV_NULL     lua_upvalueindex(3)
#define UV_DATETIME lua_upvalueindex(4) /* the datetime metatable */

static struct state *state_of(lua_State *L)
{
    return lua_touserdata(L, UV_STATE);
}

static int state_gc(lua_State *L)
{
    struct state *st = lua_touserdata(L, 1);
    if (st->parser_ok) cc_xr_parser_release(&st->parser);
    st->parser_ok = false;
    cc_xr_buf_release(&st->out);
    return 0;
}

/* ---- encoding --------------------------------------------------------------------------- */

struct enc {
    struct cc_xr_buf *b;
    bool allow_none;
};

static void put(struct enc *e, const char *s)
{
    cc_xr_buf_add(e->b, s, strlen(s));
}

static enum kind kind_of(lua_State *L, int idx)
{
    if (!lua_getmetatable(L, idx)) return K_PLAIN;
    lua_rawget(L, UV_KINDS);
    enum kind k = (enum kind)lua_tointeger(L, -1); /* nil (a foreign metatable): 0, plain */
    lua_pop(L, 1);
    return k;
}

static void put_text(lua_State *L, struct enc *e, const char *s, size_t n)
{
    if (cc_xr_escape(e->b, s, n) != 0)
        luaL_error(L, "a string holds a control character XML cannot carry; send bytes as "
                      "xmlrpc.base64(s)");
}

static void put_double(struct enc *e, double d)
{
    char tmp[40];
    /* the shortest form that reads back as the same double */
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*g", prec, d);
        if (strtod(tmp, NULL) == d) break;
    }
    put(e, "<double>");
    put(e, tmp);
    put(e, "</double>");
}

static void put_number(struct enc *e, double d)
{
    char tmp[32];
    /* a whole number is an int: <int> within 32 bits (every server's range), else the <i8>
     * extension (Python and Apache read it); fractions, infinities and NaN are doubles */
    if (d == floor(d) && fabs(d) < 9223372036854775808.0) {
        int64_t i = (int64_t)d;
        bool small = i >= INT32_MIN && i <= INT32_MAX;
        snprintf(tmp, sizeof(tmp), small ? "<int>%lld</int>" : "<i8>%lld</i8>", (long long)i);
        put(e, tmp);
        return;
    }
    put_double(e, d);
}

static void put_value(lua_State *L, struct enc *e, int idx, int depth);

static void put_nil(lua_State *L, struct enc *e)
{
    if (!e->allow_none)
        luaL_error(L, "cannot send nil unless allow_none is set (the server must accept <nil/>)");
    put(e, "<nil/>");
}

static void put_array(lua_State *L, struct enc *e, int idx, size_t n, int depth)
{
    put(e, "<array><data>");
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, (int)i);
        put_value(L, e, lua_gettop(L), depth + 1);
        lua_pop(L, 1);
    }
    put(e, "</data></array>");
}

static void put_struct(lua_State *L, struct enc *e, int idx, int depth)
{
    put(e, "<struct>");
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "a struct's keys are strings, not %s", luaL_typename(L, -2));
        size_t kl;
        const char *k = lua_tolstring(L, -2, &kl);
        put(e, "<member><name>");
        put_text(L, e, k, kl);
        put(e, "</name>");
        put_value(L, e, lua_gettop(L), depth + 1);
        put(e, "</member>");
        lua_pop(L, 1);
    }
    put(e, "</struct>");
}

/* A table without a wrapper: a list is an array, named fields a struct, {} an empty struct. */
static void put_table(lua_State *L, struct enc *e, int idx, int depth)
{
    size_t n = 0, ints = 0, strs = 0;
    double max = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        n++;
        int kt = lua_type(L, -1);
        if (kt == LUA_TSTRING) {
            strs++;
        } else if (kt == LUA_TNUMBER) {
            double k = lua_tonumber(L, -1);
            if (k >= 1 && k == floor(k)) {
                ints++;
                if (k > max) max = k;
            }
        } else {
            luaL_error(L, "a table key of type %s cannot be sent", luaL_typename(L, -1));
        }
    }
    if (strs == n) {
        put_struct(L, e, idx, depth);
    } else if (ints == n && max == (double)n) {
        put_array(L, e, idx, n, depth);
    } else if (ints == n) {
        luaL_error(L,
                   "a list with holes (%d values, the last at %d) cannot be sent: fill them "
                   "with xmlrpc.null",
                   (int)n, (int)max);
    } else {
        luaL_error(L, "a table mixes list entries and named fields (or has keys that are "
                      "neither): XML-RPC has arrays and structs");
    }
}

static void put_value(lua_State *L, struct enc *e, int idx, int depth)
{
    if (depth > CC_XR_MAX_DEPTH)
        luaL_error(L, "tables nest deeper than %d (does one hold itself?)", CC_XR_MAX_DEPTH);
    luaL_checkstack(L, 8, "nested tables");
    put(e, "<value>");
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        put_nil(L, e);
        break;
    case LUA_TBOOLEAN:
        put(e, lua_toboolean(L, idx) ? "<boolean>1</boolean>" : "<boolean>0</boolean>");
        break;
    case LUA_TNUMBER:
        put_number(e, lua_tonumber(L, idx));
        break;
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        put(e, "<string>");
        put_text(L, e, s, n);
        put(e, "</string>");
        break;
    }
    case LUA_TTABLE:
        switch (kind_of(L, idx)) {
        case K_NULL:
            put_nil(L, e);
            break;
        case K_DATETIME: {
            lua_getfield(L, idx, "value");
            size_t n;
            const char *s = lua_tolstring(L, -1, &n);
            if (!s) luaL_error(L, "a datetime without its value");
            put(e, "<dateTime.iso8601>");
            put_text(L, e, s, n);
            put(e, "</dateTime.iso8601>");
            lua_pop(L, 1);
            break;
        }
        case K_BINARY: {
            lua_getfield(L, idx, "data");
            size_t n;
            const char *s = lua_tolstring(L, -1, &n);
            if (!s) luaL_error(L, "a base64 value without its data");
            put(e, "<base64>");
            cc_xr_base64(e->b, s, n);
            put(e, "</base64>");
            lua_pop(L, 1);
            break;
        }
        case K_DOUBLE:
            lua_getfield(L, idx, "value");
            if (lua_type(L, -1) != LUA_TNUMBER) luaL_error(L, "a double without its value");
            put_double(e, lua_tonumber(L, -1));
            lua_pop(L, 1);
            break;
        case K_ARRAY:
            put_array(L, e, idx, lua_objlen(L, idx), depth);
            break;
        case K_STRUCT:
            put_struct(L, e, idx, depth);
            break;
        case K_PLAIN:
            put_table(L, e, idx, depth);
            break;
        }
        break;
    default:
        luaL_error(L, "a %s cannot be sent over XML-RPC", luaL_typename(L, idx));
    }
    put(e, "</value>");
}

/* encode_call(method, allow_none, ...): the <methodCall> document for the arguments after the
 * first two (trailing nils included: they are arguments too). */
static int l_encode_call(lua_State *L)
{
    struct state *st = state_of(L);
    size_t ml;
    const char *method = luaL_checklstring(L, 1, &ml);
    if (!cc_xr_method_name_ok(method, ml))
        return luaL_error(L, "'%s' is not a valid XML-RPC method name (A-Z a-z 0-9 _ . : /)",
                          method);
    struct enc e = {.b = &st->out, .allow_none = lua_toboolean(L, 2)};
    int top = lua_gettop(L);
    cc_xr_buf_clear(e.b);
    put(&e, "<?xml version=\"1.0\"?>\n<methodCall><methodName>");
    cc_xr_buf_add(e.b, method, ml);
    put(&e, "</methodName><params>");
    for (int i = 3; i <= top; i++) {
        put(&e, "<param>");
        put_value(L, &e, i, 1);
        put(&e, "</param>");
    }
    put(&e, "</params></methodCall>\n");
    lua_pushlstring(L, e.b->p, e.b->len);
    return 1;
}

/* encode(value, allow_none): one <value> element, for tests and custom documents. */
static int l_encode(lua_State *L)
{
    struct state *st = state_of(L);
    lua_settop(L, 2);
    struct enc e = {.b = &st->out, .allow_none = lua_toboolean(L, 2)};
    cc_xr_buf_clear(e.b);
    put_value(L, &e, 1, 1);
    lua_pushlstring(L, e.b->p, e.b->len);
    return 1;
}

/* ---- decoding --------------------------------------------------------------------------- */

static void push_node(lua_State *L, const struct cc_xr_parser *p, uint32_t i)
{
    const struct cc_xr_node *n = &p->nodes[i];
    luaL_checkstack(L, 4, "nested values");
    switch ((enum cc_xr_type)n->type) {
    case CC_XR_NIL:
        lua_pushvalue(L, UV_NULL);
        return;
    case CC_XR_INT:
        lua_pushnumber(L, (lua_Number)n->v.i);
        return;
    case CC_XR_BOOL:
        lua_pushboolean(L, n->v.i != 0);
        return;
    case CC_XR_DOUBLE:
        lua_pushnumber(L, n->v.d);
        return;
    case CC_XR_STRING:
    case CC_XR_BASE64:
        lua_pushlstring(L, cc_xr_bytes(p, n->str_off), n->str_len);
        return;
    case CC_XR_DATETIME:
        lua_createtable(L, 0, 1);
        lua_pushlstring(L, cc_xr_bytes(p, n->str_off), n->str_len);
        lua_setfield(L, -2, "value");
        lua_pushvalue(L, UV_DATETIME);
        lua_setmetatable(L, -2);
        return;
    case CC_XR_ARRAY: {
        lua_createtable(L, (int)n->count, 0);
        int k = 1;
        for (uint32_t c = i + 1; c < n->end; c = p->nodes[c].end) {
            push_node(L, p, c);
            lua_rawseti(L, -2, k++);
        }
        return;
    }
    case CC_XR_STRUCT:
        lua_createtable(L, 0, (int)n->count);
        for (uint32_t c = i + 1; c < n->end; c = p->nodes[c].end) {
            const struct cc_xr_node *m = &p->nodes[c];
            lua_pushlstring(L, cc_xr_bytes(p, m->name_off), m->name_len);
            push_node(L, p, c);
            lua_rawset(L, -3);
        }
        return;
    }
}

/*
 * decode(text): a <methodResponse>. Returns "ok", value; or "fault", faultCode, faultString;
 * or nil and why the text is not an XML-RPC response.
 */
static int l_decode(lua_State *L)
{
    struct state *st = state_of(L);
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    if (!st->parser_ok) {
        if (cc_xr_parser_init(&st->parser) != 0) return luaL_error(L, "expat: out of memory");
        st->parser_ok = true;
    }
    struct cc_xr_parser *p = &st->parser;
    switch (cc_xr_parse(p, s, n)) {
    case CC_XR_OK:
        lua_pushliteral(L, "ok");
        push_node(L, p, 0);
        return 2;
    case CC_XR_FAULT:
        lua_pushliteral(L, "fault");
        lua_pushnumber(L, (lua_Number)p->fault_code);
        lua_pushlstring(L, cc_xr_bytes(p, p->fault_off), p->fault_len);
        return 3;
    default:
        lua_pushnil(L);
        lua_pushstring(L, p->errmsg);
        return 2;
    }
}

int xmlrpc_lua_open(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"encode_call", l_encode_call},
        {"encode", l_encode},
        {"decode", l_decode},
        {NULL, NULL},
    };
    lua_newtable(L); /* the module */
    int mod = lua_gettop(L);

    struct state *st = lua_newuserdata(L, sizeof(*st));
    memset(st, 0, sizeof(*st));
    lua_newtable(L);
    lua_pushcfunction(L, state_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    int ust = lua_gettop(L);

    lua_newtable(L); /* kinds: metatable -> kind */
    int kinds = lua_gettop(L);
    lua_newtable(L); /* module.mt: name -> metatable */
    int mts = lua_gettop(L);
    static const char *const short_names[] = {NULL,    "datetime", "binary", "double",
                                              "array", "struct",   "null"};
    for (int k = K_DATETIME; k <= K_NULL; k++) {
        luaL_newmetatable(L, mt_names[k]);
        lua_pushvalue(L, -1);
        lua_pushinteger(L, k);
        lua_rawset(L, kinds);
        lua_setfield(L, mts, short_names[k]);
    }
    lua_setfield(L, mod, "mt");

    lua_newtable(L); /* xmlrpc.null */
    luaL_getmetatable(L, mt_names[K_NULL]);
    lua_setmetatable(L, -2);
    int null = lua_gettop(L);
    lua_pushvalue(L, null);
    lua_setfield(L, mod, "null");

    for (const luaL_Reg *r = fns; r->name; r++) {
        lua_pushvalue(L, ust);
        lua_pushvalue(L, kinds);
        lua_pushvalue(L, null);
        luaL_getmetatable(L, mt_names[K_DATETIME]);
        lua_pushcclosure(L, r->func, 4);
        lua_setfield(L, mod, r->name);
    }
    lua_settop(L, mod);
    return 1;
}
