/* SPDX-License-Identifier: MIT */
/*
 * offload.c: blocking work moved off the loop, so that only the user who asked waits.
 *
 * cc_offload() runs a C function on libuv's thread pool and resumes the fiber with what its
 * completion pushes. cicada.offload(fn, ...) does the same for a Lua function: the function
 * (compiled to bytecode) and its arguments (plain values, serialised) go to a pool thread,
 * which runs them in a Lua state of its own (one per pool thread, kept), typically around a
 * blocking FFI call; the results come back the same way.
 */
#include "lua/offload.h"
#include "lua/vm.h"
#include "core/log.h"
#include "core/strbuf.h"

#include <lauxlib.h>
#include <lualib.h>
#include <string.h>

struct offload {
    uv_work_t req;
    struct cc_waiter waiter; /* the fiber's view */
    struct cc_fiber *fiber;  /* NULL once the fiber was killed: the result is dropped */
    void (*work)(void *arg);
    int (*done)(lua_State *L, void *arg);
    void (*drop)(void *arg);
    void *arg;
};

static void work_cb(uv_work_t *req)
{
    struct offload *o = cc_container_of(req, struct offload, req);
    o->work(o->arg);
}

static void after_cb(uv_work_t *req, int status)
{
    (void)status;
    struct offload *o = cc_container_of(req, struct offload, req);
    struct cc_fiber *f = o->fiber;
    if (!f) { /* the user went away meanwhile */
        if (o->drop) o->drop(o->arg);
        cc_free(o);
        return;
    }
    int n = o->done(f->co, o->arg);
    cc_free(o);
    cc_fiber_resume(f, n);
}

/* A killed user does not wait for its work, which finishes on its own and is then dropped. */
static void cancel(struct cc_waiter *w)
{
    struct offload *o = cc_container_of(w, struct offload, waiter);
    o->fiber = NULL;
}

int cc_offload(lua_State *L, void (*work)(void *arg), int (*done)(lua_State *L, void *arg),
               void (*drop)(void *arg), void *arg)
{
    struct cc_fiber *f = cc_fiber_check(L);
    struct offload *o = cc_xcalloc(1, sizeof(*o));
    o->waiter.cancel = cancel;
    o->fiber = f;
    o->work = work;
    o->done = done;
    o->drop = drop;
    o->arg = arg;
    int rc = uv_queue_work(f->vm->loop, &o->req, work_cb, after_cb);
    if (rc != 0) {
        cc_free(o);
        return luaL_error(L, "offload: cannot queue the work: %s", uv_strerror(rc));
    }
    lua_settop(L, 0);
    return cc_fiber_wait(L, f, &o->waiter);
}

/* ---- cicada.offload(fn, ...) ------------------------------------------------------------- */

/*
 * Values cross between Lua states as source text: serialise(...) returns "return v1, v2..."
 * with each value a Lua literal. Plain values and tables of them only (no functions, userdata
 * or cycles).
 */
static const char serialise_src[] =
    "local function lit(v, seen)\n"
    "  local t = type(v)\n"
    "  if t == 'string' then return string.format('%q', v) end\n"
    "  if t == 'number' then\n"
    "    if v ~= v then return '0/0' end\n"
    "    if v == math.huge then return 'math.huge' end\n"
    "    if v == -math.huge then return '-math.huge' end\n"
    "    return string.format('%.17g', v)\n"
    "  end\n"
    "  if t == 'boolean' or t == 'nil' then return tostring(v) end\n"
    "  if t == 'table' then\n"
    "    if seen[v] then error('offload: a table appears twice in the values', 0) end\n"
    "    seen[v] = true\n"
    "    local p = {}\n"
    "    for k, x in pairs(v) do p[#p + 1] = '[' .. lit(k, seen) .. ']=' .. lit(x, seen) end\n"
    "    seen[v] = nil\n"
    "    return '{' .. table.concat(p, ',') .. '}'\n"
    "  end\n"
    "  error('offload: cannot pass a ' .. t .. ' between threads', 0)\n"
    "end\n"
    "return function(...)\n"
    "  local p = {}\n"
    "  for i = 1, select('#', ...) do p[i] = lit((select(i, ...)), {}) end\n"
    "  return 'return ' .. table.concat(p, ',')\n"
    "end\n";

/* Pushes the serialise function, compiled once per Lua state and kept in its registry. */
static void push_serialise(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, "cicada.offload.serialise");
    if (!lua_isnil(L, -1)) return;
    lua_pop(L, 1);
    if (luaL_loadbuffer(L, serialise_src, sizeof(serialise_src) - 1, "=offload") != 0 ||
        lua_pcall(L, 0, 1, 0) != 0)
        lua_error(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, "cicada.offload.serialise");
}

static int serialise_fn(lua_State *L)
{
    push_serialise(L);
    return 1;
}

/* The pool thread's own Lua state, made on first use and kept for the thread's life. */
static _Thread_local lua_State *pool_state;

struct lua_job {
    char *code; /* the function's bytecode */
    size_t code_len;
    char *args;   /* "return a, b, c" of the arguments */
    char *result; /* "return r1, r2" of the results, or the error */
    bool ok;
};

static char *dup_top(lua_State *L)
{
    size_t n;
    const char *s = lua_tolstring(L, -1, &n);
    return s ? cc_xstrndup(s, n) : cc_xstrdup("offloaded work raised a non-string error");
}

static void lua_job_run(void *arg)
{
    struct lua_job *j = arg;
    if (!pool_state) {
        pool_state = luaL_newstate();
        if (!pool_state) {
            j->result = cc_xstrdup("offload: out of memory for the thread's Lua state");
            return;
        }
        luaL_openlibs(pool_state);
    }
    lua_State *L = pool_state;
    int top = lua_gettop(L);
    j->ok = false;
    lua_pushcfunction(L, serialise_fn);
    if (lua_pcall(L, 0, 1, 0) != 0) goto fail;
    if (luaL_loadbuffer(L, j->code, j->code_len, "=offloaded") != 0) goto fail;
    if (luaL_loadbuffer(L, j->args, strlen(j->args), "=offload arguments") != 0) goto fail;
    if (lua_pcall(L, 0, LUA_MULTRET, 0) != 0) goto fail;
    int nargs = lua_gettop(L) - top - 2;
    if (lua_pcall(L, nargs, LUA_MULTRET, 0) != 0) goto fail;
    int nres = lua_gettop(L) - top - 1;
    if (lua_pcall(L, nres, 1, 0) != 0) goto fail;
    j->result = dup_top(L);
    j->ok = true;
    lua_settop(L, top);
    return;
fail:
    j->result = dup_top(L);
    lua_settop(L, top);
}

static void lua_job_free(void *arg)
{
    struct lua_job *j = arg;
    cc_free(j->code);
    cc_free(j->args);
    cc_free(j->result);
    cc_free(j);
}

/* Pushes ok and the results' source (or the error) for the Lua wrapper to load or raise. */
static int lua_job_done(lua_State *L, void *arg)
{
    struct lua_job *j = arg;
    lua_pushboolean(L, j->ok);
    lua_pushstring(L, j->result ? j->result : "offloaded work failed");
    lua_job_free(j);
    return 2;
}

static int dump_writer(lua_State *L, const void *p, size_t sz, void *ud)
{
    (void)L;
    cc_strbuf_add(ud, p, sz);
    return 0;
}

/* core.offload(fn, ...): runs fn(...) in a pool thread's Lua state; resumes with ok and the
 * source of its results, or false and the error. */
static int l_offload(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    if (lua_iscfunction(L, 1)) return luaL_error(L, "offload: the function must be a Lua function");
    const char *up = lua_getupvalue(L, 1, 1);
    if (up) {
        return luaL_error(L,
                          "offload: the function uses '%s' from outside it; it runs in another "
                          "Lua state, so pass such values as arguments and require modules "
                          "inside it",
                          up);
    }
    cc_fiber_check(L);
    int nargs = lua_gettop(L) - 1;
    push_serialise(L);
    lua_insert(L, 2);
    lua_call(L, nargs, 1); /* raises on a value that cannot cross */
    size_t al;
    const char *args = lua_tolstring(L, 2, &al);

    struct lua_job *j = cc_xcalloc(1, sizeof(*j));
    struct cc_strbuf code = {0};
    lua_pushvalue(L, 1);
    lua_dump(L, dump_writer, &code);
    j->code = cc_strbuf_detach(&code, &j->code_len);
    j->args = cc_xstrndup(args, al);
    return cc_offload(L, lua_job_run, lua_job_done, lua_job_free, j);
}

void cc_offload_register(lua_State *L)
{
    lua_pushcfunction(L, l_offload);
    lua_setfield(L, -2, "offload");
}
