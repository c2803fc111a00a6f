/* SPDX-License-Identifier: MIT */
/* registry.h: every protocol module's Lua entry point. */
#ifndef CC_PROTO_REGISTRY_H
#define CC_PROTO_REGISTRY_H

#include <lua.h>

/* Registers each protocol's C module in package.preload of |L|. */
void cc_proto_preload(lua_State *L);

#endif
