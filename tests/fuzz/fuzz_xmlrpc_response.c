/* SPDX-License-Identifier: MIT */
/*
 * fuzz_xmlrpc_response.c: the XML-RPC response parser on arbitrary bytes, fed whole and then
 * cut into pieces the first byte chooses, by one reused parser; both ways must agree on the
 * outcome, and on the values when there are any. The values then go through the Lua binding's
 * decoder, which builds them as Lua tables.
 */
#include "proto/xmlrpc/xmlrpc.h"
#include "proto/xmlrpc/xmlrpc_lua.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct cc_xr_parser whole, split;
static lua_State *L;

/* A digest of the values: types, counts, numbers and bytes, in order. */
static uint64_t digest(const struct cc_xr_parser *p)
{
    uint64_t h = CC_HASH_INIT;
    for (size_t i = 0; i < p->nnodes; i++) {
        const struct cc_xr_node *n = &p->nodes[i];
        h = cc_hash(h, &n->type, 1);
        h = cc_hash(h, &n->count, sizeof(n->count));
        h = cc_hash(h, &n->end, sizeof(n->end));
        if (n->name_len != UINT32_MAX) h = cc_hash(h, cc_xr_bytes(p, n->name_off), n->name_len);
        if (n->type == CC_XR_STRING || n->type == CC_XR_BASE64 || n->type == CC_XR_DATETIME)
            h = cc_hash(h, cc_xr_bytes(p, n->str_off), n->str_len);
        if (n->type == CC_XR_INT || n->type == CC_XR_BOOL) h = cc_hash(h, &n->v.i, sizeof(n->v.i));
    }
    return h;
}

/* The Lua heap on malloc, so that LeakSanitizer sees the parser a Lua userdata holds. */
static void *lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    (void)osize;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    return realloc(ptr, nsize);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!L) {
        if (cc_xr_parser_init(&whole) != 0 || cc_xr_parser_init(&split) != 0) abort();
        L = lua_newstate(lua_alloc, NULL);
        if (!L) abort();
        luaL_openlibs(L);
        lua_pushcfunction(L, xmlrpc_lua_open);
        lua_call(L, 0, 1);
        lua_getfield(L, -1, "decode");
        lua_setglobal(L, "decode");
        lua_pop(L, 1);
    }
    if (size < 1) return 0;
    size_t piece = data[0] ? data[0] : 1;
    const char *doc = (const char *)data + 1;
    size--;

    enum cc_xr_outcome a = cc_xr_parse(&whole, doc, size);
    cc_xr_parser_reset(&split);
    enum cc_xr_outcome b = CC_XR_MORE;
    for (size_t off = 0; off < size || off == 0;) {
        size_t n = CC_MIN(piece, size - off);
        bool last = off + n == size;
        b = cc_xr_parser_feed(&split, doc + off, n, last);
        off += n;
        if (last || b != CC_XR_MORE) break;
    }
    if (b == CC_XR_MORE) abort();
    if (a != b) abort();
    if (a == CC_XR_OK && digest(&whole) != digest(&split)) abort();
    if (a == CC_XR_FAULT && whole.fault_code != split.fault_code) abort();

    lua_getglobal(L, "decode");
    lua_pushlstring(L, doc, size);
    if (lua_pcall(L, 1, 3, 0) != 0) abort(); /* decoding never raises */
    lua_settop(L, 0);
    lua_gc(L, LUA_GCSTEP, 0);
    return 0;
}
