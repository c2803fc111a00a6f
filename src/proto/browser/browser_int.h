/* SPDX-License-Identifier: MIT */
/*
 * browser_int.h: what the browser module's files share: the per-vm state (the processes it
 * started and its DevTools connections) and the DevTools binding's entry points.
 */
#ifndef CC_BROWSER_INT_H
#define CC_BROWSER_INT_H

#include "lua/vm.h"
#include "proto/browser/proc.h"

#include <lua.h>

struct cdp_conn;
struct proc_ud;

/* Per vm. Closed with the vm: every connection is released and every program ended. */
struct browser_vm {
    struct cc_vm *vm;
    struct cdp_conn *conns;
    struct proc_ud *procs;
    struct cc_proc *stopped; /* guards stopped while the vm runs, reaped when they are done */
    size_t nstopped, stopped_cap;
};

/* The vm's state, created on first use. */
struct browser_vm *browser_vm_get(struct cc_vm *vm);

/* Adds the DevTools connection and page types and core.cdp_connect to the module table on
 * top of |L|. */
void cdp_lua_register(lua_State *L);

/* Releases every connection of |bv| (the vm closes): no callback runs after. */
void cdp_close_all(struct browser_vm *bv);

#endif
