/* SPDX-License-Identifier: MIT */
/* pg_lua.h: the `cicada.postgres.core` Lua module. */
#ifndef CC_PG_LUA_H
#define CC_PG_LUA_H

#include <lua.h>

int pg_lua_open(lua_State *L);

#endif
