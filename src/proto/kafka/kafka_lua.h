/* SPDX-License-Identifier: MIT */
/* kafka_lua.h: the `cicada.kafka.core` Lua module. */
#ifndef CC_KAFKA_LUA_H
#define CC_KAFKA_LUA_H

#include <lua.h>

int kafka_lua_open(lua_State *L);

#endif
