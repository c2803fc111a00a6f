/* SPDX-License-Identifier: MIT */
/*
 * browser_lua.c: `cicada.browser.core`, what the browser users (lua/cicada/webdriver.lua and
 * lua/cicada/browser.lua) need from C: programs started under a guard (proc.h) so that no
 * browser outlives cicada, scratch directories, and DevTools connections (cdp.c).
 */
#include "proto/browser/browser_lua.h"
#include "proto/browser/browser_int.h"

#include <errno.h>
#include <lauxlib.h>
#include <string.h>
#include <unistd.h>

#define PROC_MT  "cicada.browser.proc"
#define MAX_ARGS 256
#define MAX_ENV  64

struct proc_ud {
    struct cc_proc p;
    struct browser_vm *bv; /* NULL when not running under the vm's watch */
    struct proc_ud *prev, *next;
};

/* ---- the vm's state --------------------------------------------------------------------- */

static void reap_stopped(struct browser_vm *bv)
{
    size_t j = 0;
    for (size_t i = 0; i < bv->nstopped; i++) {
        cc_proc_poll(&bv->stopped[i]);
        if (!bv->stopped[i].reaped) bv->stopped[j++] = bv->stopped[i];
    }
    bv->nstopped = j;
}

static void proc_unlink(struct proc_ud *u)
{
    struct browser_vm *bv = u->bv;
    if (!bv) return;
    if (u->prev)
        u->prev->next = u->next;
    else
        bv->procs = u->next;
    if (u->next) u->next->prev = u->prev;
    u->prev = u->next = NULL;
    u->bv = NULL;
}

/* Stops the program; the guard is reaped later (reap_stopped) or when the vm closes. */
static void proc_stop(struct proc_ud *u)
{
    struct browser_vm *bv = u->bv;
    if (!bv) return;
    proc_unlink(u);
    cc_proc_stop(&u->p);
    cc_proc_poll(&u->p);
    if (!u->p.reaped) {
        if (bv->nstopped == bv->stopped_cap)
            cc_grow((void **)&bv->stopped, &bv->stopped_cap, bv->nstopped + 1,
                    sizeof(*bv->stopped));
        bv->stopped[bv->nstopped++] = u->p;
        u->p.reaped = true; /* the copy is the one reaped */
    }
    reap_stopped(bv);
}

static void vm_close(struct cc_vm *vm, void *state)
{
    struct browser_vm *bv = state;
    cdp_close_all(bv);
    /* Every guard is told at once, then waited for: they end their groups in parallel. */
    for (struct proc_ud *u = bv->procs; u; u = u->next)
        cc_proc_stop(&u->p);
    for (size_t i = 0; i < bv->nstopped; i++)
        cc_proc_wait(&bv->stopped[i]);
    while (bv->procs) {
        struct proc_ud *u = bv->procs;
        cc_proc_wait(&u->p);
        proc_unlink(u);
    }
    cc_free(bv->stopped);
    cc_free(bv);
    cc_vm_ext_set(vm, CC_EXT_BROWSER, NULL, NULL);
}

struct browser_vm *browser_vm_get(struct cc_vm *vm)
{
    struct browser_vm *bv = cc_vm_ext_get(vm, CC_EXT_BROWSER);
    if (bv) return bv;
    bv = cc_xcalloc(1, sizeof(*bv));
    bv->vm = vm;
    cc_vm_ext_set(vm, CC_EXT_BROWSER, bv, vm_close);
    return bv;
}

/* ---- processes ---------------------------------------------------------------------------- */

static const char *opt_string(lua_State *L, int t, const char *k)
{
    lua_getfield(L, t, k);
    const char *s = lua_isnil(L, -1) ? NULL : luaL_checkstring(L, -1);
    lua_pop(L, 1); /* the table keeps the string alive */
    return s;
}

/*
 * core.spawn{ path=, args={...}, env={NAME=value...}, log=, scratch=, grace= } -> proc | nil, err
 * Starts |path| with |args| under a guard, with |env| set over cicada's environment. Its output
 * goes to |log| (else nowhere); |scratch|, a directory, is removed when it ends; |grace|
 * seconds pass between SIGTERM and SIGKILL.
 */
static int l_spawn(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    const char *path = opt_string(L, 1, "path");
    if (!path) return luaL_error(L, "spawn: no path");
    const char *log = opt_string(L, 1, "log");
    const char *scratch = opt_string(L, 1, "scratch");
    lua_getfield(L, 1, "grace");
    double grace = luaL_optnumber(L, -1, 2);
    lua_pop(L, 1);
    lua_getfield(L, 1, "args");
    int args = lua_gettop(L);
    size_t n = lua_istable(L, args) ? lua_objlen(L, args) : 0;
    if (n > MAX_ARGS) return luaL_error(L, "spawn: too many arguments");
    const char *argv[MAX_ARGS + 2];
    argv[0] = path;
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, args, (int)i + 1);
        argv[i + 1] = luaL_checkstring(L, -1); /* kept alive by the args table */
        lua_pop(L, 1);
    }
    argv[n + 1] = NULL;
    /* "NAME=value" strings, kept alive in a list at |keep| until the program is started */
    lua_getfield(L, 1, "env");
    int envt = lua_gettop(L);
    lua_newtable(L);
    int keep = lua_gettop(L);
    const char *env[MAX_ENV + 1];
    size_t nenv = 0;
    if (lua_istable(L, envt)) {
        for (lua_pushnil(L); lua_next(L, envt); lua_pop(L, 1)) {
            if (lua_type(L, -2) != LUA_TSTRING || !lua_isstring(L, -1) || nenv == MAX_ENV)
                return luaL_error(L, "spawn: env is a table of NAME = value strings");
            const char *k = lua_tostring(L, -2);
            if (!*k || strchr(k, '=')) return luaL_error(L, "spawn: bad variable name");
            lua_pushfstring(L, "%s=%s", k, lua_tostring(L, -1));
            env[nenv] = lua_tostring(L, -1);
            lua_rawseti(L, keep, (int)++nenv);
        }
    }
    env[nenv] = NULL;

    struct browser_vm *bv = browser_vm_get(cc_vm_self);
    reap_stopped(bv);
    struct proc_ud *u = lua_newuserdata(L, sizeof(*u));
    memset(u, 0, sizeof(*u));
    u->p.ctl = -1;
    struct cc_proc_opts o = {
        .path = path,
        .argv = argv,
        .log = log,
        .scratch = scratch,
        .env = nenv ? env : NULL,
        .grace_ms = grace > 0 && grace < 600 ? (unsigned)(grace * 1000) : 2000,
    };
    int rc = cc_proc_start(&u->p, &o);
    if (rc != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "cannot start %s: %s", path, strerror(-rc));
        return 2;
    }
    luaL_getmetatable(L, PROC_MT);
    lua_setmetatable(L, -2);
    u->bv = bv;
    u->next = bv->procs;
    if (bv->procs) bv->procs->prev = u;
    bv->procs = u;
    return 1;
}

static struct proc_ud *check_proc(lua_State *L)
{
    return luaL_checkudata(L, 1, PROC_MT);
}

/* proc:alive() -> whether the program still runs */
static int l_proc_alive(lua_State *L)
{
    struct proc_ud *u = check_proc(L);
    lua_pushboolean(L, u->bv && cc_proc_alive(&u->p));
    return 1;
}

/* proc:pid() -> the program's pid, which is also its process group */
static int l_proc_pid(lua_State *L)
{
    lua_pushinteger(L, check_proc(L)->p.pid);
    return 1;
}

/* proc:stop(): ends the program and its group (in the background). Idempotent. */
static int l_proc_stop(lua_State *L)
{
    proc_stop(check_proc(L));
    return 0;
}

/* ---- files ---------------------------------------------------------------------------------- */

/* core.mkdtemp(prefix) -> a new private directory under $TMPDIR or /tmp | nil, error */
static int l_mkdtemp(lua_State *L)
{
    const char *prefix = luaL_checkstring(L, 1);
    if (strchr(prefix, '/')) return luaL_argerror(L, 1, "a prefix, not a path");
    char *dir = cc_proc_mkdtemp(prefix);
    if (!dir) {
        lua_pushnil(L);
        lua_pushfstring(L, "cannot create a temporary directory: %s", strerror(errno));
        return 2;
    }
    lua_pushstring(L, dir);
    cc_free(dir);
    return 1;
}

/* core.rmtree(path) -> true | nil, error */
static int l_rmtree(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    if (!*path || strcmp(path, "/") == 0) return luaL_argerror(L, 1, "refusing to remove that");
    int rc = cc_proc_rmtree(path);
    if (rc != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "cannot remove %s: %s", path, strerror(-rc));
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* core.executable(path) -> whether |path| can be run */
static int l_executable(lua_State *L)
{
    lua_pushboolean(L, access(luaL_checkstring(L, 1), X_OK) == 0);
    return 1;
}

static const luaL_Reg proc_methods[] = {
    {"alive", l_proc_alive},
    {"pid", l_proc_pid},
    {"stop", l_proc_stop},
    {NULL, NULL},
};

static const luaL_Reg funcs[] = {
    {"spawn", l_spawn},           {"mkdtemp", l_mkdtemp}, {"rmtree", l_rmtree},
    {"executable", l_executable}, {NULL, NULL},
};

static int l_proc_gc(lua_State *L)
{
    proc_stop(check_proc(L));
    return 0;
}

int browser_lua_open(lua_State *L)
{
    luaL_newmetatable(L, PROC_MT);
    lua_newtable(L);
    luaL_register(L, NULL, proc_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_proc_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);

    lua_newtable(L);
    luaL_register(L, NULL, funcs);
    cdp_lua_register(L);
    return 1;
}
