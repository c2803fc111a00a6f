/* SPDX-License-Identifier: MIT */
/* ws_lua.h: the `cicada.ws.core` Lua module. */
#ifndef CC_WS_LUA_H
#define CC_WS_LUA_H

#include <lua.h>

int ws_lua_open(lua_State *L);

#endif
