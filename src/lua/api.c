/* SPDX-License-Identifier: MIT */
/* api.c: `cicada.core`: waiting, clocks, recording requests and exceptions, run control. */
#include "lua/api.h"
#include "lua/gather.h"
#include "lua/offload.h"
#include "lua/vm.h"
#include "core/log.h"
#include "core/options.h"
#include "proto/registry.h"

#include <lauxlib.h>
#include <string.h>

static char stop_sentinel;

static struct cc_vm *vm_of(lua_State *L)
{
    struct cc_vm *vm = cc_vm_self;
    if (!vm) luaL_error(L, "cicada.core used outside a cicada thread");
    return vm;
}

static uint64_t seconds_to_ns(lua_State *L, int idx)
{
    double s = luaL_checknumber(L, idx);
    if (!(s > 0)) return 0; /* negative and NaN sleep not at all */
    if (s > 1e9) s = 1e9;
    return (uint64_t)(s * 1e9 + 0.5);
}

/* core.sleep(seconds): parks the calling fiber; 0 yields to the others for one loop turn. */
static int l_sleep(lua_State *L)
{
    struct cc_fiber *f = cc_fiber_check(L);
    uint64_t ns = seconds_to_ns(L, 1);
    lua_settop(L, 0);
    return cc_fiber_sleep(L, f, ns);
}

/*
 * core.wait(seconds): the wait_time wait between tasks. Returns core.STOP at once when the
 * user is to stop; a graceful stop kills users parked here. A wait of 0 yields to the other
 * users only when the task itself did not wait since the last one: fair, without a pointless
 * trip through the ready queue after every request.
 */
static int l_wait(lua_State *L)
{
    struct cc_fiber *f = cc_fiber_check(L);
    uint64_t ns = seconds_to_ns(L, 1);
    lua_settop(L, 0);
    if (f->stopping || f->killed) {
        lua_pushlightuserdata(L, &stop_sentinel);
        return 1;
    }
    if (ns == 0 && f->resumes != f->resumes_at_wait && f->resume != CC_RESUME_KILL) {
        /* the task waited already (on I/O, say): the others had their turn, go on at once */
        f->resumes_at_wait = f->resumes;
        return 0;
    }
    f->resumes_at_wait = f->resumes + 1; /* the resume that ends this wait */
    f->in_wait_time = 1;
    int rc = cc_fiber_sleep(L, f, ns);
    if (rc >= 0) f->in_wait_time = 0; /* a pending kill returned without yielding */
    return rc;
}

/* core.stopping(): whether the calling user has been asked to stop. */
static int l_stopping(lua_State *L)
{
    struct cc_fiber *f = cc_fiber_check(L);
    lua_pushboolean(L, f->stopping || f->killed);
    return 1;
}

static int l_now(lua_State *L)
{
    lua_pushnumber(L, cc_wall_s());
    return 1;
}

static int l_monotonic(lua_State *L)
{
    lua_pushnumber(L, (double)cc_now_ns() / 1e9);
    return 1;
}

/* Converts an error value to its text: strings as they are, others through tostring. */
static const char *error_text(lua_State *L, int idx, size_t *len)
{
    if (lua_type(L, idx) == LUA_TSTRING) return lua_tolstring(L, idx, len);
    lua_getglobal(L, "tostring");
    lua_pushvalue(L, idx);
    lua_call(L, 1, 1); /* tostring raises only from a __tostring the script wrote */
    lua_replace(L, idx);
    const char *s = lua_tolstring(L, idx, len);
    if (!s) {
        *len = 5;
        return "error";
    }
    return s;
}

/*
 * core.record(request_type, name, response_time_ms, response_length, error): one request
 * event into this thread's stats shard. |error| nil or false means success.
 */
static int l_record(lua_State *L)
{
    struct cc_vm *vm = vm_of(L);
    size_t tl, nl, el = 0;
    const char *type = luaL_checklstring(L, 1, &tl);
    const char *name = luaL_checklstring(L, 2, &nl);
    double ms = luaL_optnumber(L, 3, 0);
    double len = luaL_optnumber(L, 4, 0);
    const char *err = NULL;
    if (lua_toboolean(L, 5)) err = error_text(L, 5, &el);
    if (!vm->rec) return luaL_error(L, "requests cannot be recorded on this thread");
    uint64_t ns = ms > 0 ? (uint64_t)(ms * 1e6 + 0.5) : 0;
    const struct cc_ikey *key = cc_recorder_key(vm->rec, type, tl, name, nl);
    cc_vm_record(vm, key, ns, len > 0 ? (uint64_t)len : 0, err, el);
    return 0;
}

/* core.await_arrival(): an open-model user waits for its next iteration. Returns core.STOP
 * at once when the user is to stop. */
static int l_await_arrival(lua_State *L)
{
    struct cc_fiber *f = cc_fiber_check(L);
    if (f->cls < 0) return luaL_error(L, "await_arrival: only users have arrivals");
    if (f->stopping || f->killed) {
        lua_pushlightuserdata(L, &stop_sentinel);
        return 1;
    }
    lua_settop(L, 0);
    return cc_fiber_await_arrival(L, f);
}

/* core.set_pacing(seconds): the calling user starts a task every |seconds|; its requests are
 * also measured as if none were held back by a slow one (coordinated omission). */
static int l_set_pacing(lua_State *L)
{
    struct cc_fiber *f = cc_fiber_check(L);
    uint64_t ns = seconds_to_ns(L, 1);
    f->intended = ns ? CC_INTENDED_PACING : CC_INTENDED_NONE;
    f->intended_ns = ns;
    return 0;
}

/* core.exception(message, traceback): counts an error raised by user code. */
static int l_exception(lua_State *L)
{
    struct cc_vm *vm = vm_of(L);
    size_t ml, tl;
    const char *msg = luaL_checklstring(L, 1, &ml);
    const char *tb = luaL_checklstring(L, 2, &tl);
    if (vm->rec) cc_recorder_exception(vm->rec, msg, ml, tb, tl);
    return 0;
}

static int l_stop_test(lua_State *L)
{
    struct cc_vm *vm = vm_of(L);
    if (vm->hooks && vm->hooks->stop_test) vm->hooks->stop_test(vm);
    return 0;
}

/* core.user_count(): users running in the whole run (on a worker: on this thread). */
static int l_user_count(lua_State *L)
{
    struct cc_vm *vm = vm_of(L);
    uint32_t n = vm->hooks && vm->hooks->user_count ? vm->hooks->user_count(vm) : vm->users;
    lua_pushinteger(L, n);
    return 1;
}

/* core.timespan("1h30m") -> seconds, or nil. */
static int l_timespan(lua_State *L)
{
    double s = cc_parse_timespan(luaL_checkstring(L, 1));
    if (s < 0) return 0;
    lua_pushnumber(L, s);
    return 1;
}

static int l_listener_error(lua_State *L)
{
    vm_of(L)->listener_error = true;
    return 0;
}

static int l_set_request_listeners(lua_State *L)
{
    vm_of(L)->request_listeners = lua_toboolean(L, 1);
    return 0;
}

/* core.log(level, message): level is "debug", "info", "warning" or "error". */
static int l_log(lua_State *L)
{
    int level = cc_log_parse_level(luaL_checkstring(L, 1));
    const char *msg = luaL_checkstring(L, 2);
    cc_log(level < 0 ? CC_LOG_INFO : (enum cc_log_level)level, "script", "%s", msg);
    return 0;
}

static void set_num(lua_State *L, const char *k, double v)
{
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}

static void push_entry(lua_State *L, const struct cc_agg *a, const struct cc_entry *e)
{
    lua_createtable(L, 0, 16);
    lua_pushstring(L, e->key ? e->key->part[0] : "");
    lua_setfield(L, -2, "method");
    lua_pushstring(L, e->key ? e->key->part[1] : "Aggregated");
    lua_setfield(L, -2, "name");
    set_num(L, "num_requests", (double)e->count);
    set_num(L, "num_failures", (double)e->failures);
    set_num(L, "fail_ratio", cc_entry_fail_ratio(e));
    set_num(L, "avg_response_time", cc_entry_avg_ms(e));
    set_num(L, "min_response_time", cc_entry_min_ms(e));
    set_num(L, "max_response_time", cc_entry_max_ms(e));
    set_num(L, "median_response_time", cc_entry_percentile_ms(e, 0.5));
    set_num(L, "avg_content_length", cc_entry_avg_bytes(e));
    set_num(L, "total_content_length", (double)e->bytes);
    set_num(L, "total_rps", cc_entry_total_rps(a, e));
    set_num(L, "total_fail_per_sec", cc_entry_total_fail_per_s(a, e));
    set_num(L, "current_rps", cc_entry_current_rps(a, e));
    set_num(L, "current_fail_per_sec", cc_entry_current_fail_per_s(a, e));
    double pv[CC_NPERCENTILES];
    cc_entry_percentiles_ms(e, cc_percentiles, CC_NPERCENTILES, pv);
    lua_createtable(L, 0, CC_NPERCENTILES);
    for (unsigned i = 0; i < CC_NPERCENTILES; i++) {
        lua_pushnumber(L, pv[i]);
        lua_setfield(L, -2, cc_percentile_labels[i]);
    }
    lua_setfield(L, -2, "percentiles");
}

/*
 * core.stats([name, method]): a snapshot of the Aggregated entry, or of one entry (nil when it
 * has no requests). Control thread only: that is where the statistics are merged.
 */
static int l_stats(lua_State *L)
{
    struct cc_vm *vm = vm_of(L);
    if (!vm->agg) return luaL_error(L, "statistics are only readable in environment-level code");
    if (lua_isnoneornil(L, 1)) {
        push_entry(L, vm->agg, &vm->agg->total);
        return 1;
    }
    size_t nl, tl;
    const char *name = luaL_checklstring(L, 1, &nl);
    if (lua_isnoneornil(L, 2)) { /* any type: the first entry of that name */
        for (size_t i = 0; i < vm->agg->nentries; i++) {
            const struct cc_entry *e = vm->agg->entries[i];
            if (e->key->len[1] == nl && memcmp(e->key->part[1], name, nl) == 0 && e->count) {
                push_entry(L, vm->agg, e);
                return 1;
            }
        }
        lua_pushnil(L);
        return 1;
    }
    const char *type = luaL_checklstring(L, 2, &tl);
    const char *p[2] = {type, name};
    size_t l[2] = {tl, nl};
    const struct cc_ikey *k = cc_intern_find(&vm->agg->names, p, l, 2, cc_intern_hash(p, l, 2));
    if (!k) {
        lua_pushnil(L);
        return 1;
    }
    push_entry(L, vm->agg, vm->agg->entries[k->id]);
    return 1;
}

/* core.percentile(p[, name, method]): one percentile in ms. */
static int l_percentile(lua_State *L)
{
    struct cc_vm *vm = vm_of(L);
    if (!vm->agg) return luaL_error(L, "statistics are only readable in environment-level code");
    double p = luaL_checknumber(L, 1);
    const struct cc_entry *e = &vm->agg->total;
    if (!lua_isnoneornil(L, 2) && lua_isnoneornil(L, 3)) { /* by name, any type */
        size_t nl;
        const char *name = luaL_checklstring(L, 2, &nl);
        e = NULL;
        for (size_t i = 0; i < vm->agg->nentries && !e; i++) {
            const struct cc_entry *x = vm->agg->entries[i];
            if (x->key->len[1] == nl && memcmp(x->key->part[1], name, nl) == 0 && x->count) e = x;
        }
        if (!e) return 0;
    } else if (!lua_isnoneornil(L, 2)) {
        size_t nl, tl;
        const char *name = luaL_checklstring(L, 2, &nl);
        const char *type = luaL_checklstring(L, 3, &tl);
        const char *parts[2] = {type, name};
        size_t l[2] = {tl, nl};
        const struct cc_ikey *k =
            cc_intern_find(&vm->agg->names, parts, l, 2, cc_intern_hash(parts, l, 2));
        if (!k) return 0;
        e = vm->agg->entries[k->id];
    }
    lua_pushnumber(L, cc_entry_percentile_ms(e, p));
    return 1;
}

static const luaL_Reg core_fns[] = {
    {"sleep", l_sleep},
    {"wait", l_wait},
    {"stopping", l_stopping},
    {"now", l_now},
    {"monotonic", l_monotonic},
    {"record", l_record},
    {"await_arrival", l_await_arrival},
    {"set_pacing", l_set_pacing},
    {"exception", l_exception},
    {"stop_test", l_stop_test},
    {"user_count", l_user_count},
    {"timespan", l_timespan},
    {"listener_error", l_listener_error},
    {"set_request_listeners", l_set_request_listeners},
    {"log", l_log},
    {"stats", l_stats},
    {"percentile", l_percentile},
    {NULL, NULL},
};

static int open_core(lua_State *L)
{
    lua_newtable(L);
    luaL_register(L, NULL, core_fns);
    cc_gather_register(L);
    cc_offload_register(L);
    lua_pushlightuserdata(L, &cc_kill_sentinel);
    lua_setfield(L, -2, "KILL");
    lua_pushlightuserdata(L, &stop_sentinel);
    lua_setfield(L, -2, "STOP");
    lua_pushstring(L, CC_VERSION);
    lua_setfield(L, -2, "version");
    return 1;
}

void cc_api_preload(lua_State *L, const char *name, lua_CFunction open)
{
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, open);
    lua_setfield(L, -2, name);
    lua_pop(L, 2);
}

void cc_api_open(lua_State *L)
{
    cc_api_preload(L, "cicada.core", open_core);
    cc_proto_preload(L);
}
