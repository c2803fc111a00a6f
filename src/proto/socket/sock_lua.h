/* SPDX-License-Identifier: MIT */
/* sock_lua.h: the cooperative sockets' Lua entry points, for proto/registry.c. */
#ifndef CC_SOCK_LUA_H
#define CC_SOCK_LUA_H

#include <lua.h>

/* `cicada.socket.core`: the C half of the modules below. */
int sock_lua_open(lua_State *L);
/* `socket.core`: LuaSocket's core module, cooperative (lua/cicada/socket.lua). */
int sock_lua_open_socket_core(lua_State *L);
/* `ssl`: LuaSec's module, cooperative (lua/cicada/ssl.lua). */
int sock_lua_open_ssl(lua_State *L);
/* Modules that would block the thread (LuaSec's ssl.core, LuaSocket's socket.unix...): a
 * require raises an error that says why. */
int sock_lua_open_refused(lua_State *L);

#endif
