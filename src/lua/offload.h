/* SPDX-License-Identifier: MIT */
/* offload.h: blocking calls moved to libuv's thread pool; the calling user waits alone. */
#ifndef CC_OFFLOAD_H
#define CC_OFFLOAD_H

#include <lua.h>

/*
 * For a Lua C function running in a user: runs |work|(arg) on a pool thread and yields; when
 * it is done, |done|(L, arg) runs on the loop, pushes the results onto the user's coroutine
 * and returns how many, and the user resumes with them. If the user is killed meanwhile,
 * |drop|(arg) runs instead of |done| once the work ends. |work| must not touch Lua or the loop.
 * Use as `return cc_offload(L, work, done, drop, arg);`.
 */
int cc_offload(lua_State *L, void (*work)(void *arg), int (*done)(lua_State *L, void *arg),
               void (*drop)(void *arg), void *arg);

/* Adds core.offload to the table on top of |L| (the cicada.core module). */
void cc_offload_register(lua_State *L);

#endif
