/* SPDX-License-Identifier: MIT */
/* browser_lua.h: the Lua module cicada.browser.core (processes, DevTools connections). */
#ifndef CC_BROWSER_LUA_H
#define CC_BROWSER_LUA_H

#include <lua.h>

int browser_lua_open(lua_State *L);

#endif
