/* SPDX-License-Identifier: MIT */
/* http_lua.h: the `cicada.http.core` Lua module. */
#ifndef CC_HTTP_LUA_H
#define CC_HTTP_LUA_H

#include <lua.h>

#include <stdbool.h>
#include <stddef.h>

struct http_settings;
struct http_exchange;
struct http_pool;

int http_lua_open(lua_State *L);

/*
 * Reads a client's settings from the table at |t| (connect_timeout, timeout, max_body,
 * max_conns, verify, ca_file, cert_file, key_file, source_addresses, http2) into |set|, which
 * then owns its strings. Raises a Lua error on a bad value, before allocating anything.
 */
void http_lua_settings(lua_State *L, int t, struct http_settings *set);

/*
 * Checks the flat header list { name, value, ... } at |idx|: raises a Lua error naming a bad
 * name or value. Returns the list's length.
 */
int http_lua_check_headers(lua_State *L, int idx);
/* Whether |target| can stand in a request line (no space, CR, LF or NUL). */
bool http_lua_valid_target(const char *target, size_t tl);
/*
 * Serialises a request into |ex|->req: the request line, the |nh| entries of the checked header
 * list at |hidx| (or, when |nh| is -1, the lines of the header block there), Host (|p|'s
 * authority) and Content-Length unless the headers have them (the latter when there is a body
 * or the method has one), then |body|; sets req_head.
 */
void http_lua_serialise(lua_State *L, struct http_exchange *ex, const struct http_pool *p,
                        const char *method, size_t ml, const char *target, size_t tl, int hidx,
                        int nh, const char *body, size_t bl);

#endif
