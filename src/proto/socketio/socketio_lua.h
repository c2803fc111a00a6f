/* SPDX-License-Identifier: MIT */
/* socketio_lua.h: the `cicada.socketio.core` Lua module. */
#ifndef CC_SOCKETIO_LUA_H
#define CC_SOCKETIO_LUA_H

#include <lua.h>

int socketio_lua_open(lua_State *L);

#endif
