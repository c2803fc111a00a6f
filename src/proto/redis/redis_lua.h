/* SPDX-License-Identifier: MIT */
/* redis_lua.h: the `cicada.redis.core` Lua module. */
#ifndef CC_REDIS_LUA_H
#define CC_REDIS_LUA_H

#include <lua.h>

int redis_lua_open(lua_State *L);

#endif
