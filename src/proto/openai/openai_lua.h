/* SPDX-License-Identifier: MIT */
/* openai_lua.h: the `cicada.openai.core` Lua module. */
#ifndef CC_OPENAI_LUA_H
#define CC_OPENAI_LUA_H

#include <lua.h>

int openai_lua_open(lua_State *L);

#endif
