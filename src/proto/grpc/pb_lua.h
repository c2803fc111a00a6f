/* SPDX-License-Identifier: MIT */
/*
 * pb_lua.h: protocol buffer messages to and from Lua tables, by walking a schema (pb.h).
 *
 * The mapping (docs/grpc.md has the user's view):
 *   double, float, int32, uint32, sint32, fixed32, sfixed32   number
 *   int64, uint64, sint64, fixed64, sfixed64   number when exact (|v| <= 2^53), else a decimal
 *                                              string; encoding also takes strings and
 *                                              LuaJIT's 64-bit cdata (1LL, 1ULL)
 *   bool                                       boolean
 *   string, bytes                              string
 *   enum                                       the value's name (a number when it has none);
 *                                              encoding takes either
 *   message                                    table
 *   repeated                                   list
 *   map<K, V>                                  table from K to V
 *   oneof                                      whichever member is set (encoding refuses two)
 * Decoded tables read fields that are absent as their default (0, "", false, the enum's zero
 * value; an empty list or map, created on first read) unless the field has presence (message
 * fields, oneof members, proto3 `optional`, proto2): those read as nil.
 */
#ifndef CC_PB_LUA_H
#define CC_PB_LUA_H

#include "proto/grpc/pb.h"

#include <lua.h>

/*
 * Appends message |mi| of |s|, from the table at |idx| of |L|, to |b|, fields in number order
 * and map entries sorted by key (so equal tables give equal bytes, as protobuf's deterministic
 * serialisation). Tables are read raw: no metamethod runs, so nothing raises but memory
 * exhaustion, and a decoded message encodes as what it holds. A key that is not a field of
 * its message is an error. Returns 0, or -1 with a sentence naming the field in |err| (|L|'s
 * stack as it was, |b| holding part of the message).
 */
int pb_lua_encode(lua_State *L, int idx, const struct pb_schema *s, int32_t mi, struct pb_buf *b,
                  char *err, size_t errlen);

/*
 * Decodes |len| bytes at |p| as message |mi| of |s| and pushes the table on |L|. Unknown fields
 * and groups are skipped. |mts| is a registry reference made by pb_lua_metatables() for |s|
 * (the tables get their message's metatable, which gives the defaults), or LUA_NOREF. Never
 * raises but for memory exhaustion. Returns 0, or -1 with nothing pushed and a sentence in
 * |err|.
 */
int pb_lua_decode(lua_State *L, const struct pb_schema *s, int32_t mi, const char *p, size_t len,
                  int mts, char *err, size_t errlen);

/*
 * Makes one metatable per message of |s| (whose userdata is at |schema_idx|: the metatables
 * keep it alive) and returns a registry reference to the list of them, for pb_lua_decode().
 */
int pb_lua_metatables(lua_State *L, int schema_idx, const struct pb_schema *s);

/* Pushes the value field |f| reads as when absent (nil for fields with presence). */
void pb_lua_push_default(lua_State *L, const struct pb_schema *s, const struct pb_field *f);

#endif
