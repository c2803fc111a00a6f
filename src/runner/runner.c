/* SPDX-License-Identifier: MIT */
/* runner.c: the control thread of a local run; see runner.h and docs/internals/runner.md. */
#include "runner/runner.h"
#include "runner/dispatch.h"
#include "core/log.h"
#include "core/mq.h"
#include "core/worker.h"
#include "lua/vm.h"
#include "report/report.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TICK_MS       1000  /* stats interval */
#define SPAWN_MIN_MS  10    /* shortest pause between spawn batches */
#define KILL_GRACE_MS 10000 /* how long killed users may take to finish their on_stop */

enum state {
    ST_LOADING,   /* workers loading the script */
    ST_STARTING,  /* test_start listeners running */
    ST_RUNNING,   /* users ramping or running */
    ST_STOPPING,  /* waiting for every user to stop */
    ST_FINISHING, /* test_stop, final statistics, quitting */
    ST_DONE,
};

struct runner {
    const struct cc_options *o;
    uv_loop_t loop;
    uv_async_t async;
    struct cc_mq inbox;
    uv_signal_t sigint, sigterm;
    uv_timer_t tick_timer, spawn_timer, run_timer, stop_timer;

    struct cc_vm vm; /* the control thread's own Lua state */
    struct cc_recorder rec;
    struct cc_shard shard;
    struct cc_vm_opts vm_opts;
    char *options_lua;

    unsigned nworkers;
    struct cc_worker *workers;
    unsigned ready;
    bool load_failed;

    uint32_t nclasses;
    char **class_names;
    double *weights;
    uint32_t *fixed;
    uint32_t *reported; /* [worker * nclasses + class]: live users the workers report */
    uint64_t *spawns_sent, *spawns_acked; /* per worker */
    unsigned users_done;                  /* workers with no users left after a stop */

    struct cc_dispatch dispatch;
    uint32_t *batch; /* [worker * nclasses + class]: users to add or remove in this batch */
    size_t target;
    double rate;
    uint64_t ramp_t0_ns;
    size_t ramp_base;
    bool ramping;
    bool spawn_complete;

    struct cc_agg agg;
    unsigned pending; /* shards still to come for the interval being closed */
    uint64_t tick_ns; /* when that interval was asked for */
    unsigned ticks;
    bool reset_after_tick;
    bool final_wanted; /* test_stop is done: collect everything once more, then quit */
    bool final_tick;   /* the interval being collected is the last */
    bool kill_sent;

    struct cc_csv csv;
    bool periodic_table;
    int name_width;
    enum state state;
    unsigned signals;
    double start_s, end_s;
    int exit_code;
};

/* ---- messages --------------------------------------------------------------------------- */

static void to_worker(struct runner *r, unsigned w, enum cc_msg_type type, int64_t a, int64_t b,
                      double d, void *p)
{
    struct cc_msg m = {.type = type, .a = a, .b = b, .d = d, .p = p};
    cc_mq_push(&r->workers[w].inbox, &m);
}

static void to_all(struct runner *r, enum cc_msg_type type, double d)
{
    for (unsigned w = 0; w < r->nworkers; w++)
        if (r->workers[w].started) to_worker(r, w, type, 0, 0, d, NULL);
}

static uint32_t live_users(const struct runner *r)
{
    uint32_t n = 0;
    for (size_t i = 0; i < (size_t)r->nworkers * r->nclasses; i++)
        n += r->reported[i];
    return n;
}

/* ---- events on the control thread --------------------------------------------------------- */

/* Fires |event| in the control state, in a fiber so listeners may wait; |then| follows. */
static void fire(struct runner *r, const char *event, int user_count,
                 void (*then)(struct cc_fiber *, void *))
{
    lua_State *L = r->vm.L;
    lua_pushstring(L, event);
    lua_createtable(L, 0, 1);
    if (user_count >= 0) {
        lua_pushinteger(L, user_count);
        lua_setfield(L, -2, "user_count");
    }
    cc_vm_call(&r->vm, "fire", 2, then, r);
}

/* ---- statistics ticks ------------------------------------------------------------------------ */

static void finish_run(struct runner *r);
static void after_final_tick(struct runner *r);
static void close_all(struct runner *r);
static void request_shards(struct runner *r);

static void tick_outputs(struct runner *r)
{
    double now = cc_wall_s();
    if (r->csv.prefix) cc_csv_write(&r->csv, &r->agg, live_users(r), now, true);
    if (r->periodic_table && r->ticks % 2 == 0) {
        cc_console_stats(stderr, &r->agg, true, r->name_width);
    }
}

/* An interval is complete once every worker's shard is merged. */
static void interval_complete(struct runner *r)
{
    cc_agg_close_interval(&r->agg, r->tick_ns);
    cc_agg_open_interval(&r->agg, r->tick_ns);
    r->ticks++;
    if (r->final_tick) {
        after_final_tick(r);
        return;
    }
    if (r->reset_after_tick) {
        r->reset_after_tick = false;
        cc_agg_reset(&r->agg, cc_wall_s());
        cc_agg_open_interval(&r->agg, cc_now_ns());
        cc_info("runner", "Resetting stats");
        fire(r, "reset_stats", -1, NULL);
    } else {
        tick_outputs(r);
    }
    if (r->final_wanted) {
        r->final_tick = true;
        request_shards(r);
    }
}

static void request_shards(struct runner *r)
{
    if (r->pending) return; /* the last interval is still being collected */
    r->tick_ns = cc_now_ns();
    /* the control thread's own records, merged in place */
    cc_agg_merge(&r->agg, &r->shard, 0);
    cc_shard_clear(&r->shard);
    r->pending = r->nworkers;
    to_all(r, CC_MSG_SWAP, 0);
    if (r->pending == 0) interval_complete(r);
}

static void tick_cb(uv_timer_t *t)
{
    struct runner *r = cc_container_of(t, struct runner, tick_timer);
    request_shards(r);
}

/* ---- spawning ------------------------------------------------------------------------------ */

static void check_spawn_complete(struct runner *r)
{
    if (r->spawn_complete || r->ramping || r->state != ST_RUNNING) return;
    for (unsigned w = 0; w < r->nworkers; w++)
        if (r->spawns_acked[w] < r->spawns_sent[w]) return;
    r->spawn_complete = true;
    char buf[2048];
    size_t k = 0;
    k += (size_t)snprintf(buf + k, sizeof(buf) - k, "{");
    for (uint32_t c = 0; c < r->nclasses && k < sizeof(buf) - 100; c++)
        k += (size_t)snprintf(buf + k, sizeof(buf) - k, "%s\"%s\": %u", c ? ", " : "",
                              r->class_names[c], r->dispatch.count[c]);
    snprintf(buf + k, sizeof(buf) - k, "}");
    cc_info("runner", "All users spawned: %s (%zu total users)", buf,
            cc_dispatch_total(&r->dispatch));
    fire(r, "spawning_complete", (int)cc_dispatch_total(&r->dispatch), NULL);
    if (r->o->reset_stats) {
        r->reset_after_tick = true;
        request_shards(r);
    }
}

static void send_batch(struct runner *r, enum cc_msg_type type)
{
    for (unsigned w = 0; w < r->nworkers; w++) {
        for (uint32_t c = 0; c < r->nclasses; c++) {
            uint32_t *n = &r->batch[w * r->nclasses + c];
            if (!*n) continue;
            to_worker(r, w, type, c, *n, r->o->stop_timeout, NULL);
            if (type == CC_MSG_SPAWN) r->spawns_sent[w]++;
            *n = 0;
        }
    }
}

static void spawn_cb(uv_timer_t *t)
{
    struct runner *r = cc_container_of(t, struct runner, spawn_timer);
    double elapsed = (double)(cc_now_ns() - r->ramp_t0_ns) / 1e9;
    size_t step = 1 + (size_t)(r->rate * elapsed); /* users that may have changed by now */
    size_t cur = cc_dispatch_total(&r->dispatch);
    struct cc_dispatch_entry e;
    bool stuck = false;
    if (cur < r->target) {
        size_t want = CC_MIN(r->target, r->ramp_base + step);
        for (; cur < want; cur++) {
            if (!cc_dispatch_add(&r->dispatch, &e)) {
                stuck = true;
                cc_warn("runner",
                        "Only %zu users can be spawned: every user class has a "
                        "fixed_count and they are all reached",
                        cur);
                break;
            }
            r->batch[e.worker * r->nclasses + e.cls]++;
        }
        send_batch(r, CC_MSG_SPAWN);
    } else if (cur > r->target) {
        size_t want = r->ramp_base > step ? CC_MAX(r->target, r->ramp_base - step) : r->target;
        for (; cur > want && cc_dispatch_remove(&r->dispatch, &e); cur--)
            r->batch[e.worker * r->nclasses + e.cls]++;
        send_batch(r, CC_MSG_STOP_USERS);
    }
    if (cur == r->target || stuck) {
        uv_timer_stop(&r->spawn_timer);
        r->ramping = false;
        check_spawn_complete(r);
    }
}

/* Ramps to |target| users at |rate| per second from the users assigned now. */
static void ramp(struct runner *r, size_t target, double rate)
{
    r->target = target;
    r->rate = rate;
    r->ramp_t0_ns = cc_now_ns();
    r->ramp_base = cc_dispatch_total(&r->dispatch);
    r->ramping = true;
    r->spawn_complete = false;
    cc_info("runner", "Ramping to %zu users at a rate of %.2f per second", target, rate);
    double period = 1000.0 / rate;
    uint64_t ms = period < SPAWN_MIN_MS ? SPAWN_MIN_MS : period > 1000 ? 1000 : (uint64_t)period;
    uv_timer_start(&r->spawn_timer, spawn_cb, 0, ms);
}

/* ---- stopping ---------------------------------------------------------------------------- */

static void kill_cb(uv_timer_t *t)
{
    struct runner *r = cc_container_of(t, struct runner, stop_timer);
    if (r->state != ST_STOPPING) return;
    if (!r->kill_sent) {
        /* the stop timeout ran out: kill what still runs, and give on_stop a grace period */
        cc_info("runner", "Stop timeout reached; stopping the users that still run");
        to_all(r, CC_MSG_KILL_ALL, 0);
        r->kill_sent = true;
        uv_timer_start(&r->stop_timer, kill_cb, KILL_GRACE_MS, 0);
        return;
    }
    cc_warn("runner", "%u users did not finish their on_stop in time; leaving them", live_users(r));
    r->users_done = r->nworkers;
    finish_run(r);
}

static void stop_test(struct runner *r, const char *why)
{
    if (r->state >= ST_STOPPING) return;
    cc_info("runner", "%s", why);
    if (r->state == ST_LOADING) { /* nothing has started yet */
        r->exit_code = 1;
        close_all(r);
        return;
    }
    bool started = r->state == ST_RUNNING;
    r->state = ST_STOPPING;
    uv_timer_stop(&r->spawn_timer);
    uv_timer_stop(&r->run_timer);
    r->ramping = false;
    if (!started) { /* test_start listeners still running: no user to stop */
        r->users_done = r->nworkers;
        finish_run(r);
        return;
    }
    r->users_done = 0;
    bool graceful = r->o->stop_timeout > 0;
    to_all(r, CC_MSG_STOP_ALL, r->o->stop_timeout);
    r->kill_sent = !graceful;
    uv_timer_start(&r->stop_timer, kill_cb,
                   graceful ? (uint64_t)(r->o->stop_timeout * 1000) : KILL_GRACE_MS, 0);
}

static void run_timer_cb(uv_timer_t *t)
{
    struct runner *r = cc_container_of(t, struct runner, run_timer);
    stop_test(r, "--run-time limit reached, shutting down");
}

static void quitting_done(struct cc_fiber *f, void *arg)
{
    (void)f;
    struct runner *r = arg;
    /* outputs */
    if (r->csv.prefix) {
        cc_csv_write(&r->csv, &r->agg, live_users(r), r->end_s, true);
        cc_csv_close(&r->csv);
    }
    cc_console_stats(stderr, &r->agg, false, r->name_width);
    cc_console_percentiles(stderr, &r->agg, r->name_width);
    cc_console_errors(stderr, &r->agg, r->name_width);
    if (r->o->json || r->o->json_file) {
        uint32_t *users = cc_xcalloc(r->nclasses + 1, sizeof(*users));
        for (uint32_t c = 0; c < r->nclasses; c++)
            users[c] = r->dispatch.count[c];
        struct cc_run_info info = {.start_s = r->start_s,
                                   .end_s = r->end_s,
                                   .nclasses = r->nclasses,
                                   .class_names = (const char *const *)r->class_names,
                                   .class_users = users};
        char *json = cc_report_json(&r->agg, &info);
        if (r->o->json) {
            fputs(json, stdout);
            fputc('\n', stdout);
            fflush(stdout);
        }
        if (r->o->json_file) {
            FILE *out = fopen(r->o->json_file, "w");
            if (out) {
                fputs(json, out);
                fputc('\n', out);
                fclose(out);
            } else {
                cc_error("runner", "cannot write %s", r->o->json_file);
            }
        }
        cc_free(json);
        cc_free(users);
    }

    /* the exit code, as Locust decides it */
    lua_State *L = r->vm.L;
    int code = 0;
    bool set = false;
    if (cc_vm_pcall(&r->vm, "exit_code", 0, 1) == 0) {
        if (lua_isnumber(L, -1)) {
            code = (int)lua_tointeger(L, -1);
            set = true;
        }
        lua_pop(L, 1);
    }
    if (!set) {
        bool listener_error = r->vm.listener_error;
        for (unsigned w = 0; w < r->nworkers; w++)
            listener_error |= r->workers[w].vm.listener_error;
        if (r->agg.fail_keys.count || r->agg.exc_keys.count)
            code = (int)r->o->exit_code_on_error;
        else if (listener_error)
            code = 2;
    }
    r->exit_code = code;
    cc_info("runner", "Shutting down (exit code %d)", code);
    close_all(r);
}

static void after_final_tick(struct runner *r)
{
    r->end_s = cc_wall_s();
    fire(r, "quitting", -1, quitting_done);
}

static void test_stop_done(struct cc_fiber *f, void *arg)
{
    (void)f;
    struct runner *r = arg;
    /* final statistics: everything every thread recorded, test_stop's requests included */
    uv_timer_stop(&r->tick_timer);
    r->final_wanted = true;
    if (r->pending == 0) {
        r->final_tick = true;
        request_shards(r);
    } /* else the interval in flight completes first and asks again */
}

static void finish_run(struct runner *r)
{
    if (r->state >= ST_FINISHING) return;
    if (r->users_done < r->nworkers) return;
    r->state = ST_FINISHING;
    uv_timer_stop(&r->stop_timer);
    fire(r, "test_stop", -1, test_stop_done);
}

/* ---- starting -------------------------------------------------------------------------- */

static void test_start_done(struct cc_fiber *f, void *arg)
{
    (void)f;
    struct runner *r = arg;
    if (r->state != ST_STARTING) return;
    /* hand cicada.shared to the workers before any user starts */
    lua_State *L = r->vm.L;
    if (cc_vm_pcall(&r->vm, "shared_dump", 0, 1) == 0) {
        if (lua_isstring(L, -1)) {
            const char *s = lua_tostring(L, -1);
            for (unsigned w = 0; w < r->nworkers; w++)
                to_worker(r, w, CC_MSG_SHARED, 0, 0, 0, cc_xstrdup(s));
        }
        lua_pop(L, 1);
    }
    r->state = ST_RUNNING;
    r->start_s = cc_wall_s();
    cc_agg_reset(&r->agg, r->start_s);
    cc_agg_open_interval(&r->agg, cc_now_ns());
    uv_timer_start(&r->tick_timer, tick_cb, TICK_MS, TICK_MS);
    if (r->o->run_time > 0) {
        cc_info("runner", "Run time limit set to %.0f seconds", r->o->run_time);
        uv_timer_start(&r->run_timer, run_timer_cb, (uint64_t)(r->o->run_time * 1000), 0);
    }
    long users = r->o->users < 0 ? 1 : r->o->users;
    double rate = r->o->spawn_rate > 0 ? r->o->spawn_rate : 1;
    ramp(r, (size_t)users, rate);
}

static void start_test(struct runner *r)
{
    r->state = ST_STARTING;
    fire(r, "test_start", -1, test_start_done);
}

/* ---- the control inbox ------------------------------------------------------------------- */

static void handle(struct runner *r, struct cc_msg *m)
{
    switch (m->type) {
    case CC_MSG_READY:
        if (m->a) {
            if (!r->load_failed)
                fprintf(stderr, "cicada: worker thread %u could not load the script: %s\n", m->from,
                        (char *)m->p);
            r->load_failed = true;
            cc_free(m->p);
        }
        if (++r->ready == r->nworkers) {
            if (r->load_failed) {
                r->exit_code = 2;
                close_all(r);
            } else {
                start_test(r);
            }
        }
        break;
    case CC_MSG_SHARD: {
        struct cc_shard *s = m->p;
        cc_agg_merge(&r->agg, s, m->from);
        cc_shard_clear(s);
        to_worker(r, m->from, CC_MSG_SHARD_BACK, 0, 0, 0, s);
        CC_ASSERT(r->pending > 0);
        if (--r->pending == 0) interval_complete(r);
        break;
    }
    case CC_MSG_USERS:
        memcpy(&r->reported[m->from * r->nclasses], m->p, r->nclasses * sizeof(uint32_t));
        r->spawns_acked[m->from] = (uint64_t)m->b;
        cc_free(m->p);
        check_spawn_complete(r);
        break;
    case CC_MSG_STOP_TEST:
        stop_test(r, "StopTest raised by a user: stopping the test");
        break;
    case CC_MSG_USERS_DONE:
        if (r->state == ST_STOPPING) {
            r->users_done++;
            finish_run(r);
        }
        break;
    default:
        break;
    }
}

static void async_cb(uv_async_t *h)
{
    struct runner *r = cc_container_of(h, struct runner, async);
    struct cc_msg *batch = NULL;
    size_t cap = 0;
    size_t n = cc_mq_take(&r->inbox, &batch, &cap);
    for (size_t i = 0; i < n; i++)
        handle(r, &batch[i]);
    cc_free(batch);
}

static void signal_cb(uv_signal_t *h, int signum)
{
    struct runner *r = h->data;
    if (++r->signals > 1) {
        cc_warn("runner", "Second signal: exiting at once");
        _exit(r->exit_code ? r->exit_code : 1);
    }
    stop_test(r, signum == SIGINT ? "Got SIGINT, shutting down (a second one exits at once)"
                                  : "Got SIGTERM, shutting down (a second one exits at once)");
}

static void control_stop_test(struct cc_vm *vm)
{
    struct runner *r = vm->owner;
    struct cc_msg m = {.type = CC_MSG_STOP_TEST};
    cc_mq_push(&r->inbox, &m);
}

static const struct cc_vm_hooks control_hooks = {.stop_test = control_stop_test};

/* ---- set-up and tear-down -------------------------------------------------------------- */

static void close_all(struct runner *r)
{
    if (r->state == ST_DONE) return;
    r->state = ST_DONE;
    to_all(r, CC_MSG_QUIT, 0);
    uv_stop(&r->loop);
}

static void init_done(struct cc_fiber *f, void *arg)
{
    (void)f;
    struct runner *r = arg;
    for (unsigned w = 0; w < r->nworkers; w++)
        cc_worker_start(&r->workers[w]);
}

static bool read_classes(struct runner *r)
{
    lua_State *L = r->vm.L;
    if (cc_vm_pcall(&r->vm, "classes_info", 0, 1) != 0) return false;
    r->nclasses = (uint32_t)lua_objlen(L, -1);
    r->class_names = cc_xcalloc(r->nclasses + 1, sizeof(char *));
    r->weights = cc_xcalloc(r->nclasses + 1, sizeof(double));
    r->fixed = cc_xcalloc(r->nclasses + 1, sizeof(uint32_t));
    for (uint32_t i = 0; i < r->nclasses; i++) {
        lua_rawgeti(L, -1, (int)i + 1);
        lua_getfield(L, -1, "name");
        r->class_names[i] = cc_xstrdup(lua_tostring(L, -1));
        lua_getfield(L, -2, "weight");
        r->weights[i] = lua_tonumber(L, -1);
        lua_getfield(L, -3, "fixed_count");
        r->fixed[i] = (uint32_t)lua_tointeger(L, -1);
        lua_pop(L, 4);
    }
    lua_pop(L, 1);
    return true;
}

/* Frees what messages still queued for the control thread own. */
static void drain_inbox(struct runner *r)
{
    struct cc_msg *batch = NULL;
    size_t cap = 0;
    size_t n = cc_mq_take(&r->inbox, &batch, &cap);
    for (size_t i = 0; i < n; i++)
        if (batch[i].type == CC_MSG_USERS || (batch[i].type == CC_MSG_READY && batch[i].a))
            cc_free(batch[i].p);
    cc_free(batch);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

static unsigned thread_count(const struct cc_options *o)
{
    if (o->threads > 0) return (unsigned)o->threads;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

/* -l, --show-task-ratio and the checks that end a run before it starts. Returns -1 to go on. */
static int early_exit(struct runner *r)
{
    const struct cc_options *o = r->o;
    lua_State *L = r->vm.L;
    if (o->list) {
        if (cc_vm_pcall(&r->vm, "class_names", 0, 1) != 0) return 1;
        printf("Available Users:\n");
        for (int i = 1; i <= (int)lua_objlen(L, -1); i++) {
            lua_rawgeti(L, -1, i);
            printf("    %s\n", lua_tostring(L, -1));
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        return 0;
    }
    if (r->vm.nclasses == 0) {
        if (cc_vm_pcall(&r->vm, "no_class_reason", 0, 1) == 0) {
            cc_error("main", "%s", lua_tostring(L, -1));
            lua_pop(L, 1);
        }
        return 1;
    }
    if (o->show_task_ratio || o->show_task_ratio_json) {
        lua_pushinteger(L, o->users);
        lua_pushboolean(L, o->show_task_ratio_json);
        if (cc_vm_pcall(&r->vm, "task_ratio", 2, 1) != 0) return 1;
        printf("%s\n", lua_tostring(L, -1));
        lua_pop(L, 1);
        return 0;
    }
    return -1;
}

int cc_run(const struct cc_options *o, const char *lua_dir)
{
    struct runner *r = cc_xcalloc(1, sizeof(*r));
    r->o = o;
    CC_ASSERT(uv_loop_init(&r->loop) == 0);
    uv_async_init(&r->loop, &r->async, async_cb);
    cc_mq_init(&r->inbox, &r->async);
    uv_timer_init(&r->loop, &r->tick_timer);
    uv_timer_init(&r->loop, &r->spawn_timer);
    uv_timer_init(&r->loop, &r->run_timer);
    uv_timer_init(&r->loop, &r->stop_timer);
    uv_signal_init(&r->loop, &r->sigint);
    uv_signal_init(&r->loop, &r->sigterm);
    r->sigint.data = r->sigterm.data = r;
    cc_shard_init(&r->shard);
    cc_recorder_init(&r->rec, &r->shard);
    cc_agg_init(&r->agg, o->csv_full_history);
    r->nworkers = thread_count(o);
    r->name_width = cc_console_name_width();

    r->options_lua = cc_options_to_lua(o);
    r->vm_opts = (struct cc_vm_opts){
        .role = CC_ROLE_CONTROL,
        .worker_index = -1,
        .threads = (int)r->nworkers,
        .script = o->locustfile,
        .lua_dir = lua_dir,
        .options = r->options_lua,
        .host = o->host,
        .tags = o->tags,
        .exclude_tags = o->exclude_tags,
        .classes = o->classes,
        .seed = (uint64_t)cc_now_ns(),
    };

    int code = -1;
    char *err = NULL;
    if (access(o->locustfile, R_OK) != 0) {
        fprintf(stderr, "cicada: cannot read the script %s (give it with -f FILE)\n",
                o->locustfile);
        code = 1;
    } else if (cc_vm_init(&r->vm, &r->loop, &r->vm_opts, &r->rec, &control_hooks, r, &err) != 0) {
        fprintf(stderr, "cicada: the script %s did not load:\n%s\n", o->locustfile, err);
        cc_free(err);
        code = 2;
    } else {
        r->vm.agg = &r->agg;
        code = early_exit(r);
        if (code < 0 && !read_classes(r)) code = 1;
    }

    if (code < 0) {
        if (!o->headless && !o->autostart)
            cc_warn("main", "this build of cicada has no web UI yet: running headless");
        r->periodic_table = !o->only_summary;
        if (o->csv) {
            if (cc_csv_open(&r->csv, o->csv, o->csv_full_history, &err) != 0) {
                fprintf(stderr, "cicada: %s\n", err);
                cc_free(err);
                code = 1;
            }
        }
    }

    if (code < 0) {
        cc_info("main", "Starting cicada %s", CC_VERSION);
        r->reported = cc_xcalloc((size_t)r->nworkers * r->nclasses + 1, sizeof(uint32_t));
        r->batch = cc_xcalloc((size_t)r->nworkers * r->nclasses + 1, sizeof(uint32_t));
        r->spawns_sent = cc_xcalloc(r->nworkers, sizeof(uint64_t));
        r->spawns_acked = cc_xcalloc(r->nworkers, sizeof(uint64_t));
        cc_dispatch_init(&r->dispatch, r->nclasses, r->weights, r->fixed, r->nworkers);
        r->workers = cc_xcalloc(r->nworkers, sizeof(*r->workers));
        for (unsigned w = 0; w < r->nworkers; w++) {
            struct cc_worker *wk = &r->workers[w];
            wk->index = w;
            wk->to_control = &r->inbox;
            wk->opts = r->vm_opts;
            wk->opts.role = CC_ROLE_WORKER;
            wk->opts.worker_index = (int)w;
            wk->opts.seed = r->vm_opts.seed ^ (0x9e3779b97f4a7c15ull * (w + 1));
        }
        uv_signal_start(&r->sigint, signal_cb, SIGINT);
        uv_signal_start(&r->sigterm, signal_cb, SIGTERM);
        r->state = ST_LOADING;
        lua_pushliteral(r->vm.L, "init");
        lua_newtable(r->vm.L);
        cc_vm_call(&r->vm, "fire", 2, init_done, r);

        uv_run(&r->loop, UV_RUN_DEFAULT);

        for (unsigned w = 0; w < r->nworkers; w++)
            if (r->workers[w].started) cc_worker_join(&r->workers[w]);
        code = r->exit_code;
        drain_inbox(r);
    }

    /* tear-down */
    if (r->vm.L) cc_vm_close(&r->vm);
    cc_vm_release(&r->vm);
    uv_walk(&r->loop, close_walk, NULL);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    uv_loop_close(&r->loop);
    cc_mq_release(&r->inbox);
    cc_recorder_release(&r->rec);
    cc_shard_release(&r->shard);
    cc_agg_release(&r->agg);
    cc_csv_close(&r->csv);
    cc_dispatch_release(&r->dispatch);
    for (uint32_t i = 0; i < r->nclasses; i++)
        cc_free(r->class_names[i]);
    cc_free(r->class_names);
    cc_free(r->weights);
    cc_free(r->fixed);
    cc_free(r->reported);
    cc_free(r->batch);
    cc_free(r->spawns_sent);
    cc_free(r->spawns_acked);
    cc_free(r->workers);
    cc_free(r->options_lua);
    cc_free(r);
    return code;
}
