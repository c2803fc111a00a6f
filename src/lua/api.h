/* SPDX-License-Identifier: MIT */
/* api.h: the `cicada.core` Lua module, the C half of the scripting API. */
#ifndef CC_API_H
#define CC_API_H

#include <lua.h>

/* Registers `cicada.core` in package.preload of |L|. */
void cc_api_open(lua_State *L);

/* Registers a further preloaded module (protocol bindings use this). */
void cc_api_preload(lua_State *L, const char *name, lua_CFunction open);

#endif
