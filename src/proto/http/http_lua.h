/* SPDX-License-Identifier: MIT */
/* http_lua.h: the `cicada.http.core` Lua module. */
#ifndef CC_HTTP_LUA_H
#define CC_HTTP_LUA_H

#include <lua.h>

int http_lua_open(lua_State *L);

#endif
