/* SPDX-License-Identifier: MIT */
/* registry.c: the protocol modules scripts can require, preloaded into every Lua state. */
#include "proto/registry.h"
#include "lua/api.h"
#include "proto/http/http_lua.h"
#include "proto/xmlrpc/xmlrpc_lua.h"

static const struct {
    const char *name;
    lua_CFunction open;
} modules[] = {
    {"cicada.http.core", http_lua_open},
    {"cicada.xmlrpc.core", xmlrpc_lua_open},
};

void cc_proto_preload(lua_State *L)
{
    for (size_t i = 0; i < sizeof(modules) / sizeof(modules[0]); i++)
        cc_api_preload(L, modules[i].name, modules[i].open);
}
