/* SPDX-License-Identifier: MIT */
/* xmlrpc_lua.h: the `cicada.xmlrpc.core` Lua module. */
#ifndef CC_XMLRPC_LUA_H
#define CC_XMLRPC_LUA_H

#include <lua.h>

int xmlrpc_lua_open(lua_State *L);

#endif
