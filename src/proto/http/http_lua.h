/* SPDX-License-Identifier: MIT */
/* http_lua.h: the `cicada.http.core` Lua module. */
#ifndef CC_HTTP_LUA_H
#define CC_HTTP_LUA_H

#include <lua.h>

struct http_settings;

int http_lua_open(lua_State *L);

/*
 * Reads a client's settings from the table at |t| (connect_timeout, timeout, max_body,
 * max_conns, verify, ca_file, cert_file, key_file, source_addresses, http2) into |set|, which
 * then owns its strings. Raises a Lua error on a bad value, before allocating anything.
 */
void http_lua_settings(lua_State *L, int t, struct http_settings *set);

#endif
