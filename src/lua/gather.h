/* SPDX-License-Identifier: MIT */
/* gather.h: core.gather and core.gather_done, for cicada.gather. */
#ifndef CC_GATHER_H
#define CC_GATHER_H

#include <lua.h>

/* Adds gather's functions to the table on top of |L| (the cicada.core module). */
void cc_gather_register(lua_State *L);

#endif
