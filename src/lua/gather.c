/* SPDX-License-Identifier: MIT */
/*
 * gather.c: concurrency inside one user. core.gather(fns, limit) runs each function in a child
 * fiber, at most |limit| at a time, and resumes the caller with their results once all have
 * ended. A caller killed while waiting kills its children.
 */
#include "lua/gather.h"
#include "lua/vm.h"

#include <lauxlib.h>

struct gather {
    struct cc_waiter waiter; /* first: the parent waits on it */
    struct cc_fiber *parent;
    struct cc_vm *vm;
    int fns_ref, results_ref;
    int error_index; /* the first function (by index) that raised, 0 if none */
    uint32_t n, next, done, limit;
    uint32_t refs; /* the parent's wait, and each child still running */
    bool cancelled;
    struct cc_fiber **running; /* children that have not ended, by slot */
};

static void unref(struct gather *g)
{
    if (--g->refs) return;
    luaL_unref(g->vm->L, LUA_REGISTRYINDEX, g->fns_ref);
    luaL_unref(g->vm->L, LUA_REGISTRYINDEX, g->results_ref);
    cc_free(g->running);
    cc_free(g);
}

static void child_done(struct cc_fiber *f, void *arg)
{
    struct gather *g = arg;
    for (uint32_t i = 0; i < g->limit; i++)
        if (g->running[i] == f) g->running[i] = NULL;
    unref(g);
}

static void start_next(struct gather *g, lua_State *from)
{
    lua_State *L = from;
    while (g->next < g->n) {
        uint32_t slot = 0;
        while (slot < g->limit && g->running[slot])
            slot++;
        if (slot == g->limit) return;
        uint32_t i = ++g->next;
        lua_pushlightuserdata(L, g);
        lua_pushinteger(L, i);
        lua_rawgeti(L, LUA_REGISTRYINDEX, g->fns_ref);
        lua_rawgeti(L, -1, (int)i);
        lua_remove(L, -2);
        g->refs++;
        g->running[slot] = cc_vm_call_from(g->vm, L, "gather_child", 3, child_done, g);
    }
}

static void cancel(struct cc_waiter *w)
{
    struct gather *g = (struct gather *)w;
    g->cancelled = true;
    for (uint32_t i = 0; i < g->limit; i++)
        if (g->running[i]) cc_fiber_kill(g->running[i]);
    unref(g);
}

/* core.gather(fns, limit): yields until every function ran; resumes with (results, error). */
static int l_gather(lua_State *L)
{
    struct cc_fiber *f = cc_fiber_check(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    uint32_t n = (uint32_t)lua_objlen(L, 1);
    lua_Integer limit = luaL_optinteger(L, 2, 0);
    for (uint32_t i = 1; i <= n; i++) {
        lua_rawgeti(L, 1, (int)i);
        if (!lua_isfunction(L, -1)) return luaL_error(L, "gather: entry %d is not a function", i);
        lua_pop(L, 1);
    }
    if (limit < 0) return luaL_argerror(L, 2, "the limit must be 0 (none) or more");
    lua_newtable(L); /* results */
    if (n == 0) return 1;
    struct gather *g = cc_xcalloc(1, sizeof(*g));
    g->vm = f->vm;
    g->parent = f;
    g->n = n;
    g->limit = limit == 0 || (uint32_t)limit > n ? n : (uint32_t)limit;
    g->running = cc_xcalloc(g->limit, sizeof(*g->running));
    g->refs = 1;
    g->waiter.cancel = cancel;
    g->results_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, 1);
    g->fns_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    start_next(g, L);
    lua_settop(L, 0);
    return cc_fiber_wait(L, f, &g->waiter);
}

/* core.gather_done(g, i, ok, value): a child's end (called by runtime.gather_child). */
static int l_gather_done(lua_State *L)
{
    struct gather *g = lua_touserdata(L, 1);
    uint32_t i = (uint32_t)luaL_checkinteger(L, 2);
    bool ok = lua_toboolean(L, 3);
    if (!g || g->cancelled) return 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, g->results_ref);
    lua_pushvalue(L, 4);
    lua_rawseti(L, -2, (int)i);
    lua_pop(L, 1);
    if (!ok && (g->error_index == 0 || (int)i < g->error_index)) g->error_index = (int)i;
    g->done++;
    /* this child's slot frees when its fiber ends; count it free for the next one now */
    for (uint32_t s = 0; s < g->limit; s++)
        if (g->running[s] && g->running[s]->co == L) g->running[s] = NULL;
    start_next(g, L);
    if (g->done < g->n) return 0;
    struct cc_fiber *p = g->parent;
    lua_rawgeti(p->co, LUA_REGISTRYINDEX, g->results_ref);
    if (g->error_index) {
        lua_rawgeti(p->co, -1, g->error_index);
        lua_pushinteger(p->co, g->error_index);
    } else {
        lua_pushnil(p->co);
        lua_pushnil(p->co);
    }
    g->cancelled = true; /* later child ends have nothing to report */
    cc_fiber_resume(p, 3);
    unref(g);
    return 0;
}

static const luaL_Reg fns[] = {
    {"gather", l_gather},
    {"gather_done", l_gather_done},
    {NULL, NULL},
};

void cc_gather_register(lua_State *L)
{
    luaL_register(L, NULL, fns);
}
