/* SPDX-License-Identifier: MIT */
/* vm.c: Lua states on libuv loops, and the fiber scheduler (timer heap, ready queue). */
#include "lua/vm.h"
#include "lua/api.h"
#include "core/log.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>

_Thread_local struct cc_vm *cc_vm_self;
char cc_kill_sentinel;

#define HEAP_NONE UINT32_MAX

static struct cc_waiter arrival_waiter;
static void idle_remove(struct cc_vm *vm, struct cc_fiber *f);

/* ---- timer heap ------------------------------------------------------------------------- */

static void heap_set(struct cc_vm *vm, size_t i, struct cc_fiber *f)
{
    vm->heap[i] = f;
    f->heap_idx = (uint32_t)i;
}

static void heap_up(struct cc_vm *vm, size_t i)
{
    struct cc_fiber *f = vm->heap[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (vm->heap[p]->wake_ns <= f->wake_ns) break;
        heap_set(vm, i, vm->heap[p]);
        i = p;
    }
    heap_set(vm, i, f);
}

static void heap_down(struct cc_vm *vm, size_t i)
{
    struct cc_fiber *f = vm->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= vm->heap_n) break;
        if (c + 1 < vm->heap_n && vm->heap[c + 1]->wake_ns < vm->heap[c]->wake_ns) c++;
        if (vm->heap[c]->wake_ns >= f->wake_ns) break;
        heap_set(vm, i, vm->heap[c]);
        i = c;
    }
    heap_set(vm, i, f);
}

static void heap_push(struct cc_vm *vm, struct cc_fiber *f)
{
    cc_grow((void **)&vm->heap, &vm->heap_cap, vm->heap_n + 1, sizeof(*vm->heap));
    vm->heap[vm->heap_n++] = f;
    heap_up(vm, vm->heap_n - 1);
}

static void heap_remove(struct cc_vm *vm, struct cc_fiber *f)
{
    size_t i = f->heap_idx;
    CC_ASSERT(i < vm->heap_n && vm->heap[i] == f);
    f->heap_idx = HEAP_NONE;
    struct cc_fiber *last = vm->heap[--vm->heap_n];
    if (last == f) return;
    heap_set(vm, i, last);
    heap_up(vm, i);
    heap_down(vm, last->heap_idx);
}

static void timer_cb(uv_timer_t *t);

/* Arms the loop timer for the earliest sleeper; never early (see docs/internals/scheduler.md). */
static void arm_timer(struct cc_vm *vm)
{
    if (vm->heap_n == 0 || vm->closing) {
        if (vm->timer_due_ns) uv_timer_stop(&vm->timer);
        vm->timer_due_ns = 0;
        return;
    }
    uint64_t due = vm->heap[0]->wake_ns;
    if (due == vm->timer_due_ns) return;
    vm->timer_due_ns = due;
    uint64_t due_ms = (due + 999999) / 1000000;
    uint64_t now_ms = uv_now(vm->loop);
    uv_timer_start(&vm->timer, timer_cb, due_ms > now_ms ? due_ms - now_ms : 0, 0);
}

/* ---- ready queue ------------------------------------------------------------------------ */

static void idle_cb(uv_idle_t *h);

static void ready_push(struct cc_vm *vm, struct cc_fiber *f)
{
    if (vm->ready_n == vm->ready_cap) {
        size_t cap = vm->ready_cap ? vm->ready_cap * 2 : 64;
        struct cc_fiber **r = cc_xmalloc(cap * sizeof(*r));
        for (size_t i = 0; i < vm->ready_n; i++)
            r[i] = vm->ready[(vm->ready_head + i) % vm->ready_cap];
        cc_free(vm->ready);
        vm->ready = r;
        vm->ready_cap = cap;
        vm->ready_head = 0;
    }
    vm->ready[(vm->ready_head + vm->ready_n++) % vm->ready_cap] = f;
    if (vm->ready_n == 1 && !vm->closing) uv_idle_start(&vm->idle, idle_cb);
}

static struct cc_fiber *ready_pop(struct cc_vm *vm)
{
    struct cc_fiber *f = vm->ready[vm->ready_head];
    vm->ready_head = (vm->ready_head + 1) % vm->ready_cap;
    vm->ready_n--;
    return f;
}

/* ---- fibers ----------------------------------------------------------------------------- */

static struct cc_fiber_list *list_of(struct cc_vm *vm, struct cc_fiber *f)
{
    return &vm->lists[f->cls < 0 ? vm->nclasses : (uint32_t)f->cls];
}

static struct cc_fiber *fiber_new(struct cc_vm *vm, lua_State *co, int ref, int32_t cls)
{
    struct cc_fiber *f = cc_xcalloc(1, sizeof(*f));
    f->co = co;
    f->vm = vm;
    f->ref = ref;
    f->cls = cls;
    f->heap_idx = HEAP_NONE;
    f->state = CC_FIBER_NEW;
    struct cc_fiber_list *l = list_of(vm, f);
    f->prev = l->tail;
    if (l->tail)
        l->tail->next = f;
    else
        l->head = f;
    l->tail = f;
    l->n++;
    return f;
}

static void fiber_finish(struct cc_fiber *f)
{
    struct cc_vm *vm = f->vm;
    if (f->fresh && vm->arrivals) vm->arrivals[f->cls].fresh--;
    struct cc_fiber_list *l = list_of(vm, f);
    if (f->prev)
        f->prev->next = f->next;
    else
        l->head = f->next;
    if (f->next)
        f->next->prev = f->prev;
    else
        l->tail = f->prev;
    l->n--;
    f->state = CC_FIBER_DONE;
    luaL_unref(vm->L, LUA_REGISTRYINDEX, f->ref);
    if (f->on_done) f->on_done(f, f->done_arg);
    bool user = f->cls >= 0;
    cc_free(f);
    if (user) {
        vm->users--;
        if (vm->hooks && vm->hooks->users_changed) vm->hooks->users_changed(vm);
    }
}

static void do_resume(struct cc_fiber *f, int nargs)
{
    struct cc_vm *vm = f->vm;
    CC_ASSERT(vm->current == NULL);
    vm->current = f;
    f->state = CC_FIBER_RUNNING;
    f->resumes++;
    f->waiter = NULL;
    f->in_wait_time = 0;
    int rc = lua_resume(f->co, nargs);
    vm->current = NULL;
    if (rc == LUA_YIELD) {
        lua_settop(f->co, 0);
        if (f->state == CC_FIBER_RUNNING) { /* a plain coroutine.yield: run again next turn */
            f->state = CC_FIBER_READY;
            ready_push(vm, f);
        }
        return;
    }
    if (rc != 0) {
        const char *msg = lua_tostring(f->co, -1);
        cc_error("runner", "fiber ended with an error: %s", msg ? msg : "(not a string)");
    }
    fiber_finish(f);
}

/* Starts or continues a fiber taken from the ready queue or the timer heap. */
static void run_fiber(struct cc_fiber *f)
{
    if (f->state == CC_FIBER_NEW) {
        if (f->resume == CC_RESUME_KILL) { /* stopped before it ever ran */
            fiber_finish(f);
            return;
        }
        do_resume(f, lua_gettop(f->co) - 1);
        return;
    }
    int nres = f->nres;
    f->nres = 0;
    if (f->resume == CC_RESUME_KILL) {
        lua_pop(f->co, nres); /* a wake that came too late */
        f->resume = CC_RESUME_NONE;
        f->killed = 1;
        lua_pushlightuserdata(f->co, &cc_kill_sentinel);
        do_resume(f, 1);
        return;
    }
    do_resume(f, nres);
}

static void timer_cb(uv_timer_t *t)
{
    struct cc_vm *vm = cc_container_of(t, struct cc_vm, timer);
    vm->timer_due_ns = 0;
    uint64_t now = cc_now_ns();
    while (vm->heap_n && vm->heap[0]->wake_ns <= now) {
        struct cc_fiber *f = vm->heap[0];
        heap_remove(vm, f);
        run_fiber(f);
    }
    arm_timer(vm);
}

static void idle_cb(uv_idle_t *h)
{
    struct cc_vm *vm = cc_container_of(h, struct cc_vm, idle);
    /* only those queued before this turn: fibers that yield again wait for the next one */
    for (size_t n = vm->ready_n; n > 0 && vm->ready_n > 0; n--)
        run_fiber(ready_pop(vm));
    if (vm->ready_n == 0) uv_idle_stop(&vm->idle);
    arm_timer(vm);
}

static void prepare_cb(uv_prepare_t *h)
{
    struct cc_vm *vm = cc_container_of(h, struct cc_vm, prepare);
    if (vm->rec) vm->rec->now_s = cc_wall_s();
}

struct cc_fiber *cc_fiber_check(lua_State *L)
{
    struct cc_vm *vm = cc_vm_self;
    struct cc_fiber *f = vm ? vm->current : NULL;
    if (!f || f->co != L) {
        luaL_error(L, "this call can wait, so it must run inside a user or an event listener, "
                      "not inside a coroutine of the script's own");
        return NULL;
    }
    return f;
}

/* A kill that arrived while the fiber was running is delivered at its next wait. */
static int pending_kill(lua_State *L, struct cc_fiber *f)
{
    if (f->resume != CC_RESUME_KILL) return 0;
    f->resume = CC_RESUME_NONE;
    f->killed = 1;
    lua_pushlightuserdata(L, &cc_kill_sentinel);
    return 1;
}

int cc_fiber_wait(lua_State *L, struct cc_fiber *f, struct cc_waiter *w)
{
    if (pending_kill(L, f)) {
        w->cancel(w);
        return 1;
    }
    f->state = CC_FIBER_WAITING;
    f->waiter = w;
    return lua_yield(L, 0);
}

int cc_fiber_sleep(lua_State *L, struct cc_fiber *f, uint64_t ns)
{
    if (pending_kill(L, f)) return 1;
    struct cc_vm *vm = f->vm;
    if (ns == 0) {
        f->state = CC_FIBER_READY;
        ready_push(vm, f);
    } else {
        f->state = CC_FIBER_SLEEPING;
        f->wake_ns = cc_now_ns() + ns;
        heap_push(vm, f);
        arm_timer(vm);
    }
    return lua_yield(L, 0);
}

void cc_fiber_resume(struct cc_fiber *f, int nargs)
{
    CC_ASSERT(f->state == CC_FIBER_WAITING);
    struct cc_vm *vm = f->vm;
    if (vm->current) {
        f->waiter = NULL;
        f->nres = (uint8_t)nargs;
        f->state = CC_FIBER_READY;
        ready_push(vm, f);
        return;
    }
    do_resume(f, nargs);
}

void cc_fiber_kill(struct cc_fiber *f)
{
    struct cc_vm *vm = f->vm;
    switch (f->state) {
    case CC_FIBER_DONE:
        return;
    case CC_FIBER_RUNNING:
    case CC_FIBER_READY:
    case CC_FIBER_NEW:
        f->resume = CC_RESUME_KILL; /* delivered when it next runs or waits */
        return;
    case CC_FIBER_SLEEPING:
        heap_remove(vm, f);
        arm_timer(vm);
        break;
    case CC_FIBER_WAITING:
        if (f->waiter == &arrival_waiter) idle_remove(vm, f);
        if (f->waiter) f->waiter->cancel(f->waiter);
        f->waiter = NULL;
        break;
    }
    f->resume = CC_RESUME_KILL;
    f->state = CC_FIBER_READY;
    ready_push(vm, f);
}

static void fiber_stop(struct cc_fiber *f, bool graceful)
{
    if (!graceful || f->in_wait_time || f->state == CC_FIBER_NEW) {
        cc_fiber_kill(f);
        return;
    }
    f->stopping = 1;
}

/* ---- open-model arrivals --------------------------------------------------------------- */

static void arrival_cb(uv_timer_t *t);

/*
 * Arms the arrival timer for the earliest due arrival. A class whose arrival is already due
 * but whose users are all still starting is left out: the timer would fire at once, again and
 * again, without letting them start (libuv runs a timer re-armed at 0 in the same pass); the
 * first of them to wait for an arrival arms it again.
 */
static void arm_arrivals(struct cc_vm *vm)
{
    uint64_t next = UINT64_MAX, now = cc_now_ns();
    for (uint32_t c = 0; vm->arrivals && c < vm->nclasses; c++) {
        struct cc_arrival *a = &vm->arrivals[c];
        if (a->rate <= 0) continue;
        uint64_t at = a->t0_ns + (uint64_t)((double)(a->done + 1) * 1e9 / a->rate);
        if (at <= now && a->nidle == 0 && a->fresh) continue;
        if (at < next) next = at;
    }
    if (next == UINT64_MAX || vm->closing) {
        uv_timer_stop(&vm->arrival_timer);
        vm->arrival_due_ns = 0;
        return;
    }
    if (next == vm->arrival_due_ns && uv_is_active((uv_handle_t *)&vm->arrival_timer)) return;
    vm->arrival_due_ns = next;
    uint64_t due_ms = (next + 999999) / 1000000, now_ms = uv_now(vm->loop);
    uv_timer_start(&vm->arrival_timer, arrival_cb, due_ms > now_ms ? due_ms - now_ms : 0, 0);
}

/* Starts every iteration that is due: on an idle user, or counted as dropped. */
static void arrival_cb(uv_timer_t *t)
{
    struct cc_vm *vm = cc_container_of(t, struct cc_vm, arrival_timer);
    uint64_t now = cc_now_ns();
    for (uint32_t c = 0; vm->arrivals && c < vm->nclasses; c++) {
        struct cc_arrival *a = &vm->arrivals[c];
        while (a->rate > 0) {
            /* the k-th arrival is due k / rate seconds after the rate was set */
            uint64_t at = a->t0_ns + (uint64_t)((double)(a->done + 1) * 1e9 / a->rate);
            if (at > now) break;
            if (a->nidle == 0 && a->fresh) break; /* users still starting: they take it late */
            a->done++;
            if (a->nidle == 0) {
                if (vm->rec) cc_recorder_dropped(vm->rec, c);
                continue;
            }
            struct cc_fiber *f = a->idle[--a->nidle];
            f->intended = CC_INTENDED_OPEN;
            f->intended_ns = now - at;
            f->waiter = NULL;
            cc_fiber_resume(f, 0);
        }
    }
    arm_arrivals(vm);
}

void cc_vm_set_arrival_rate(struct cc_vm *vm, uint32_t cls, double rate)
{
    CC_ASSERT(cls < vm->nclasses);
    if (!vm->arrivals) vm->arrivals = cc_xcalloc(vm->nclasses, sizeof(*vm->arrivals));
    struct cc_arrival *a = &vm->arrivals[cls];
    if (rate == a->rate) return;
    a->rate = rate;
    a->t0_ns = cc_now_ns();
    a->done = 0;
    arm_arrivals(vm);
}

static void arrival_cancel(struct cc_waiter *w)
{
    (void)w; /* the fiber is removed from its idle list by cc_fiber_kill's caller below */
}

static struct cc_waiter arrival_waiter = {.cancel = arrival_cancel};

static void idle_remove(struct cc_vm *vm, struct cc_fiber *f)
{
    if (!vm->arrivals || f->cls < 0) return;
    struct cc_arrival *a = &vm->arrivals[f->cls];
    for (size_t i = 0; i < a->nidle; i++)
        if (a->idle[i] == f) {
            a->idle[i] = a->idle[--a->nidle];
            return;
        }
}

int cc_fiber_await_arrival(lua_State *L, struct cc_fiber *f)
{
    struct cc_vm *vm = f->vm;
    CC_ASSERT(f->cls >= 0);
    if (!vm->arrivals) vm->arrivals = cc_xcalloc(vm->nclasses, sizeof(*vm->arrivals));
    struct cc_arrival *a = &vm->arrivals[f->cls];
    f->intended = CC_INTENDED_NONE;
    if (f->fresh) {
        f->fresh = 0;
        a->fresh--;
    }
    cc_grow((void **)&a->idle, &a->idle_cap, a->nidle + 1, sizeof(*a->idle));
    a->idle[a->nidle++] = f;
    if (a->nidle == 1) arm_arrivals(vm); /* arrivals may have waited for a user to start */
    f->in_wait_time = 1;                 /* waiting for work: a graceful stop kills it at once */
    int rc = cc_fiber_wait(L, f, &arrival_waiter);
    if (rc >= 0) { /* a pending kill: not parked after all */
        idle_remove(vm, f);
        f->in_wait_time = 0;
    }
    return rc;
}

void cc_vm_record(struct cc_vm *vm, const struct cc_ikey *key, uint64_t ns, uint64_t length,
                  const char *error, size_t error_len)
{
    cc_vm_record_for(vm, vm->current, key, ns, length, error, error_len);
}

void cc_vm_record_for(struct cc_vm *vm, struct cc_fiber *f, const struct cc_ikey *key, uint64_t ns,
                      uint64_t length, const char *error, size_t error_len)
{
    cc_recorder_request(vm->rec, key, ns, length, error, error_len);
    if (!f || f->intended == CC_INTENDED_NONE) return;
    if (f->intended == CC_INTENDED_OPEN) {
        cc_recorder_intended(vm->rec, key, ns + f->intended_ns);
        return;
    }
    /* pacing: the samples a stalled user could not take, as the ones it did */
    uint64_t period = f->intended_ns;
    cc_recorder_intended(vm->rec, key, ns);
    unsigned n = 0;
    for (uint64_t missed = ns > period ? ns - period : 0; period && missed >= period && n < 100000;
         missed -= period, n++)
        cc_recorder_intended(vm->rec, key, missed);
}

/* ---- Lua state -------------------------------------------------------------------------- */

static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (!msg) msg = luaL_typename(L, 1);
    luaL_traceback(L, L, msg, 1);
    return 1;
}

static bool push_rt(struct cc_vm *vm, lua_State *L, const char *fn)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, vm->rt_ref);
    lua_getfield(L, -1, fn);
    lua_remove(L, -2);
    return lua_isfunction(L, -1);
}

int cc_vm_pcall(struct cc_vm *vm, const char *fn, int nargs, int nres)
{
    lua_State *L = vm->L;
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, traceback);
    lua_insert(L, base + 1);
    CC_ASSERT(push_rt(vm, L, fn));
    lua_insert(L, base + 2);
    int rc = lua_pcall(L, nargs, nres, base + 1);
    lua_remove(L, base + 1);
    if (rc != 0) {
        cc_error("runner", "%s", lua_tostring(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    return 0;
}

static void set_path(lua_State *L, const char *field, const char *prefix)
{
    lua_getglobal(L, "package");
    lua_getfield(L, -1, field);
    const char *cur = lua_tostring(L, -1);
    lua_pushfstring(L, "%s;%s", prefix, cur ? cur : "");
    lua_setfield(L, -3, field);
    lua_pop(L, 2);
}

static char *script_dir(const char *script)
{
    const char *slash = strrchr(script, '/');
    if (!slash) return cc_xstrdup(".");
    if (slash == script) return cc_xstrdup("/");
    return cc_xstrndup(script, (size_t)(slash - script));
}

int cc_vm_init(struct cc_vm *vm, uv_loop_t *loop, const struct cc_vm_opts *o,
               struct cc_recorder *rec, const struct cc_vm_hooks *hooks, void *owner, char **err)
{
    memset(vm, 0, sizeof(*vm));
    vm->loop = loop;
    vm->role = o->role;
    vm->worker_index = o->worker_index;
    vm->threads = o->threads;
    vm->rec = rec;
    vm->hooks = hooks;
    vm->owner = owner;
    vm->rt_ref = LUA_NOREF;
    cc_vm_self = vm;

    uv_timer_init(loop, &vm->timer);
    uv_timer_init(loop, &vm->arrival_timer);
    uv_idle_init(loop, &vm->idle);
    uv_prepare_init(loop, &vm->prepare);
    uv_prepare_start(&vm->prepare, prepare_cb);

    lua_State *L = luaL_newstate();
    CC_ASSERT(L != NULL);
    vm->L = L;
    luaL_openlibs(L);

    char *dir = script_dir(o->script);
    char buf[4096];
    snprintf(buf, sizeof(buf), "%s/?.lua;%s/?/init.lua;%s/?.lua;%s/?/init.lua", dir, dir,
             o->lua_dir, o->lua_dir);
    set_path(L, "path", buf);
    snprintf(buf, sizeof(buf), "%s/?.so", dir);
    set_path(L, "cpath", buf);
    cc_free(dir);

    cc_api_open(L);

    /* rt = require "cicada.runtime"; rt.load(script, config) */
    lua_pushcfunction(L, traceback);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "cicada.runtime");
    if (lua_pcall(L, 1, 1, -3) != 0) goto fail;
    vm->rt_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    CC_ASSERT(push_rt(vm, L, "load"));
    lua_pushstring(L, o->script);
    lua_createtable(L, 0, 12);
    lua_pushstring(L, o->role == CC_ROLE_CONTROL ? "control" : "worker");
    lua_setfield(L, -2, "role");
    lua_pushinteger(L, o->worker_index);
    lua_setfield(L, -2, "worker_index");
    lua_pushinteger(L, o->threads);
    lua_setfield(L, -2, "threads");
    lua_pushnumber(L, (double)o->seed);
    lua_setfield(L, -2, "seed");
#define OPT_STR(name)                                                                              \
    if (o->name) {                                                                                 \
        lua_pushstring(L, o->name);                                                                \
        lua_setfield(L, -2, #name);                                                                \
    }
    OPT_STR(options)
    OPT_STR(host)
    OPT_STR(tags)
    OPT_STR(exclude_tags)
    OPT_STR(classes)
#undef OPT_STR
    if (lua_pcall(L, 2, 1, -4) != 0) goto fail;
    vm->nclasses = (uint32_t)lua_tointeger(L, -1);
    lua_pop(L, 2); /* result, traceback */

    vm->lists = cc_xcalloc(vm->nclasses + 1, sizeof(*vm->lists));
    return 0;

fail : {
    const char *msg = lua_tostring(L, -1);
    *err = cc_xstrdup(msg ? msg : "unknown error");
    lua_settop(L, 0);
    vm->lists = cc_xcalloc(1, sizeof(*vm->lists));
    return -1;
}
}

void cc_vm_ext_set(struct cc_vm *vm, enum cc_vm_ext_slot slot, void *state,
                   void (*close)(struct cc_vm *vm, void *state))
{
    vm->ext[slot].state = state;
    vm->ext[slot].close = close;
}

/* Cancels what every fiber waits on, so that no callback can resume a fiber of a closed state. */
static void cancel_waits(struct cc_vm *vm)
{
    for (uint32_t c = 0; vm->lists && c <= vm->nclasses; c++) {
        for (struct cc_fiber *f = vm->lists[c].head; f; f = f->next) {
            if (f->state == CC_FIBER_WAITING && f->waiter) f->waiter->cancel(f->waiter);
            f->waiter = NULL;
            if (f->state == CC_FIBER_WAITING) f->state = CC_FIBER_DONE;
        }
    }
}

static void closed_cb(uv_handle_t *h)
{
    struct cc_vm *vm = h->data;
    vm->closing--;
}

void cc_vm_close(struct cc_vm *vm)
{
    cancel_waits(vm);
    for (int i = 0; i < CC_EXT_MAX; i++)
        if (vm->ext[i].close) vm->ext[i].close(vm, vm->ext[i].state);
    uv_handle_t *hs[] = {(uv_handle_t *)&vm->timer, (uv_handle_t *)&vm->idle,
                         (uv_handle_t *)&vm->prepare, (uv_handle_t *)&vm->arrival_timer};
    vm->closing = (int)CC_ARRAY_LEN(hs);
    for (size_t i = 0; i < CC_ARRAY_LEN(hs); i++) {
        hs[i]->data = vm;
        uv_close(hs[i], closed_cb);
    }
}

void cc_vm_release(struct cc_vm *vm)
{
    cancel_waits(vm);
    for (uint32_t c = 0; vm->lists && c <= vm->nclasses; c++) {
        for (struct cc_fiber *f = vm->lists[c].head, *next; f; f = next) {
            next = f->next;
            cc_free(f);
        }
    }
    if (vm->L) lua_close(vm->L);
    vm->L = NULL;
    for (uint32_t c = 0; vm->arrivals && c < vm->nclasses; c++)
        cc_free(vm->arrivals[c].idle);
    cc_free(vm->arrivals);
    vm->arrivals = NULL;
    cc_free(vm->lists);
    cc_free(vm->heap);
    cc_free(vm->ready);
    vm->lists = NULL;
    vm->heap = NULL;
    vm->ready = NULL;
    if (cc_vm_self == vm) cc_vm_self = NULL;
}

/* ---- users ------------------------------------------------------------------------------ */

void cc_vm_spawn(struct cc_vm *vm, uint32_t cls, uint32_t n)
{
    lua_State *L = vm->L;
    CC_ASSERT(cls < vm->nclasses);
    for (uint32_t i = 0; i < n; i++) {
        lua_pushinteger(L, (lua_Integer)cls + 1);
        if (cc_vm_pcall(vm, "new_user", 1, 2) != 0) return;
        /* stack: co, self */
        lua_State *co = lua_tothread(L, -2);
        lua_xmove(L, co, 1);
        int ref = luaL_ref(L, LUA_REGISTRYINDEX);
        struct cc_fiber *f = fiber_new(vm, co, ref, (int32_t)cls);
        vm->users++;
        if (!vm->arrivals) vm->arrivals = cc_xcalloc(vm->nclasses, sizeof(*vm->arrivals));
        f->fresh = 1; /* counted until it first waits for an arrival (open-model classes) */
        vm->arrivals[cls].fresh++;
        ready_push(vm, f); /* stays CC_FIBER_NEW until its first resume */
    }
    if (n && vm->hooks && vm->hooks->users_changed) vm->hooks->users_changed(vm);
}

void cc_vm_stop_users(struct cc_vm *vm, uint32_t cls, uint32_t n, bool graceful)
{
    CC_ASSERT(cls < vm->nclasses);
    for (struct cc_fiber *f = vm->lists[cls].tail; f && n > 0; f = f->prev) {
        if (f->stopping || f->killed || f->resume == CC_RESUME_KILL) continue;
        fiber_stop(f, graceful);
        n--;
    }
}

void cc_vm_stop_all(struct cc_vm *vm, bool graceful)
{
    for (uint32_t c = 0; c < vm->nclasses; c++)
        for (struct cc_fiber *f = vm->lists[c].tail; f; f = f->prev)
            if (!f->killed && f->resume != CC_RESUME_KILL) fiber_stop(f, graceful);
}

struct cc_fiber *cc_vm_call_from(struct cc_vm *vm, lua_State *from, const char *fn, int nargs,
                                 void (*done)(struct cc_fiber *f, void *arg), void *arg)
{
    lua_State *L = vm->L;
    lua_State *co = lua_newthread(L);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    CC_ASSERT(push_rt(vm, co, fn));
    lua_xmove(from, co, nargs);
    struct cc_fiber *f = fiber_new(vm, co, ref, -1);
    f->on_done = done;
    f->done_arg = arg;
    ready_push(vm, f);
    return f;
}

void cc_vm_call(struct cc_vm *vm, const char *fn, int nargs,
                void (*done)(struct cc_fiber *f, void *arg), void *arg)
{
    cc_vm_call_from(vm, vm->L, fn, nargs, done, arg);
}
