/* SPDX-License-Identifier: MIT */
/* grpc_lua.h: the `cicada.grpc.core` Lua module. */
#ifndef CC_GRPC_LUA_H
#define CC_GRPC_LUA_H

#include <lua.h>

int grpc_lua_open(lua_State *L);

#endif
