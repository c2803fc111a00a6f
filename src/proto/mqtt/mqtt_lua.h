/* SPDX-License-Identifier: MIT */
/* mqtt_lua.h: the `cicada.mqtt.core` Lua module. */
#ifndef CC_MQTT_LUA_H
#define CC_MQTT_LUA_H

#include <lua.h>

int mqtt_lua_open(lua_State *L);

#endif
