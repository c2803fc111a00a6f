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
    ST_READY,     /* waiting for a start (the web UI's form) */
    ST_STARTING,  /* test_start listeners running */
    ST_RUNNING,   /* users ramping or running */
    ST_STOPPING,  /* waiting for every user to stop, then test_stop */
    ST_STOPPED,   /* stopped; may start again */
    ST_FINISHING, /* final statistics, quitting */
    ST_DONE,
};

static const char *const state_names[] = {"ready",    "ready",   "spawning", "running",
                                          "stopping", "stopped", "stopped",  "stopped"};

struct cc_runner {
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
    bool quit;       /* end the run once the users have stopped */
    bool headless;   /* no web UI: start at once, quit when the test ends */
    double run_time; /* of the test that runs, seconds; 0: until stopped */
    char *host;      /* the host a start set, or NULL */

    struct cc_history_point *history; /* one point per interval of the current test */
    size_t history_n, history_cap;
    uint32_t *test_counts; /* [class] users of the last test that stopped */

    struct cc_csv csv;
    bool periodic_table;
    int name_width;
    enum state state;
    unsigned signals;
    double start_s, end_s;
    int exit_code;
};

/* ---- messages --------------------------------------------------------------------------- */

static void to_worker(struct cc_runner *r, unsigned w, enum cc_msg_type type, int64_t a, int64_t b,
                      double d, void *p)
{
    struct cc_msg m = {.type = type, .a = a, .b = b, .d = d, .p = p};
    cc_mq_push(&r->workers[w].inbox, &m);
}

static void to_all(struct cc_runner *r, enum cc_msg_type type, double d)
{
    for (unsigned w = 0; w < r->nworkers; w++)
        if (r->workers[w].started) to_worker(r, w, type, 0, 0, d, NULL);
}

static uint32_t live_users(const struct cc_runner *r)
{
    uint32_t n = 0;
    for (size_t i = 0; i < (size_t)r->nworkers * r->nclasses; i++)
        n += r->reported[i];
    return n;
}

/* ---- events on the control thread --------------------------------------------------------- */

/* Fires |event| in the control state, in a fiber so listeners may wait; |then| follows. */
static void fire(struct cc_runner *r, const char *event, int user_count,
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

static void after_final_tick(struct cc_runner *r);
static void close_all(struct cc_runner *r);
static void request_shards(struct cc_runner *r);

static void add_history(struct cc_runner *r, double now)
{
    double p[2] = {0.5, 0.95}, v[2] = {0, 0};
    cc_entry_current_percentiles_ms(&r->agg, &r->agg.total, p, 2, v);
    cc_grow((void **)&r->history, &r->history_cap, r->history_n + 1, sizeof(*r->history));
    r->history[r->history_n++] = (struct cc_history_point){
        .time_s = now,
        .users = live_users(r),
        .rps = cc_entry_current_rps(&r->agg, &r->agg.total),
        .fail_per_s = cc_entry_current_fail_per_s(&r->agg, &r->agg.total),
        .p50_ms = v[0],
        .p95_ms = v[1],
        .avg_ms = cc_entry_avg_ms(&r->agg.total),
    };
}

static void tick_outputs(struct cc_runner *r)
{
    double now = cc_wall_s();
    if (r->state == ST_RUNNING || r->state == ST_STOPPING) add_history(r, now);
    if (r->csv.prefix) cc_csv_write(&r->csv, &r->agg, live_users(r), now, true);
    if (r->periodic_table && r->ticks % 2 == 0 && r->state == ST_RUNNING) {
        cc_console_stats(stderr, &r->agg, true, r->name_width);
    }
}

/* An interval is complete once every worker's shard is merged. */
static void interval_complete(struct cc_runner *r)
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

static void request_shards(struct cc_runner *r)
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
    struct cc_runner *r = cc_container_of(t, struct cc_runner, tick_timer);
    request_shards(r);
}

/* ---- spawning ------------------------------------------------------------------------------ */

static void check_spawn_complete(struct cc_runner *r)
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

static void send_batch(struct cc_runner *r, enum cc_msg_type type)
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
    struct cc_runner *r = cc_container_of(t, struct cc_runner, spawn_timer);
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
static void ramp(struct cc_runner *r, size_t target, double rate)
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

/* ---- stopping and quitting -------------------------------------------------------------- */

static void users_stopped(struct cc_runner *r);

static void kill_cb(uv_timer_t *t)
{
    struct cc_runner *r = cc_container_of(t, struct cc_runner, stop_timer);
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
    users_stopped(r);
}

static void finish(struct cc_runner *r);

/*
 * Stops the test: every user stops (gracefully within --stop-timeout), test_stop runs, and
 * then the run either waits for another start (the web UI's Stop) or, with |quit|, ends.
 */
static void stop(struct cc_runner *r, const char *why, bool quit)
{
    if (quit) r->quit = true;
    switch (r->state) {
    case ST_LOADING: /* nothing has started yet */
        if (!quit) return;
        cc_info("runner", "%s", why);
        r->exit_code = 1;
        close_all(r);
        return;
    case ST_READY:
    case ST_STOPPED:
        if (!quit) return;
        cc_info("runner", "%s", why);
        finish(r);
        return;
    case ST_STARTING: /* test_start listeners run: no user yet */
        cc_info("runner", "%s", why);
        r->state = ST_STOPPING;
        r->users_done = r->nworkers;
        users_stopped(r);
        return;
    case ST_RUNNING:
        break;
    default: /* stopping or finishing already */
        return;
    }
    cc_info("runner", "%s", why);
    r->state = ST_STOPPING;
    uv_timer_stop(&r->spawn_timer);
    uv_timer_stop(&r->run_timer);
    r->ramping = false;
    r->users_done = 0;
    bool graceful = r->o->stop_timeout > 0;
    to_all(r, CC_MSG_STOP_ALL, r->o->stop_timeout);
    r->kill_sent = !graceful;
    uv_timer_start(&r->stop_timer, kill_cb,
                   graceful ? (uint64_t)(r->o->stop_timeout * 1000) : KILL_GRACE_MS, 0);
}

static void run_timer_cb(uv_timer_t *t)
{
    struct cc_runner *r = cc_container_of(t, struct cc_runner, run_timer);
    stop(r, "--run-time limit reached, shutting down", r->headless || r->o->autoquit >= 0);
}

static void write_results(struct cc_runner *r)
{
    if (r->csv.prefix) {
        cc_csv_write(&r->csv, &r->agg, live_users(r), r->end_s, true);
        cc_csv_close(&r->csv);
    }
    cc_console_stats(stderr, &r->agg, false, r->name_width);
    cc_console_percentiles(stderr, &r->agg, r->name_width);
    cc_console_errors(stderr, &r->agg, r->name_width);
    if (!r->o->json && !r->o->json_file) return;
    struct cc_run_info info = {.start_s = r->start_s,
                               .end_s = r->end_s,
                               .nclasses = r->nclasses,
                               .class_names = (const char *const *)r->class_names,
                               .class_users = r->test_counts};
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
}

/* The exit code, as Locust decides it. */
static int exit_code(struct cc_runner *r)
{
    lua_State *L = r->vm.L;
    if (cc_vm_pcall(&r->vm, "exit_code", 0, 1) == 0) {
        bool set = lua_isnumber(L, -1);
        int code = set ? (int)lua_tointeger(L, -1) : 0;
        lua_pop(L, 1);
        if (set) return code;
    }
    if (r->agg.fail_keys.count || r->agg.exc_keys.count) return (int)r->o->exit_code_on_error;
    bool listener_error = r->vm.listener_error;
    for (unsigned w = 0; w < r->nworkers; w++)
        listener_error |= r->workers[w].vm.listener_error;
    return listener_error ? 2 : 0;
}

static void quitting_done(struct cc_fiber *f, void *arg)
{
    (void)f;
    struct cc_runner *r = arg;
    write_results(r);
    r->exit_code = exit_code(r);
    cc_info("runner", "Shutting down (exit code %d)", r->exit_code);
    close_all(r);
}

static void after_final_tick(struct cc_runner *r)
{
    if (!r->end_s) r->end_s = cc_wall_s();
    fire(r, "quitting", -1, quitting_done);
}

/* The last statistics (every thread's, test_stop's requests included), then quitting. */
static void finish(struct cc_runner *r)
{
    if (r->state == ST_FINISHING || r->state == ST_DONE) return;
    r->state = ST_FINISHING;
    uv_timer_stop(&r->tick_timer);
    uv_timer_stop(&r->stop_timer);
    uv_timer_stop(&r->run_timer);
    r->final_wanted = true;
    if (r->pending == 0) {
        r->final_tick = true;
        request_shards(r);
    } /* else the interval in flight completes first and asks again */
}

static void test_stop_done(struct cc_fiber *f, void *arg)
{
    (void)f;
    struct cc_runner *r = arg;
    r->end_s = cc_wall_s();
    if (r->quit) {
        finish(r);
        return;
    }
    r->state = ST_STOPPED;
    cc_info("runner", "Test stopped");
    request_shards(r); /* the numbers the UI shows include the last requests */
    if (r->o->autoquit >= 0) {
        cc_info("runner", "Quitting in %ld seconds (--autoquit)", r->o->autoquit);
        uv_timer_start(&r->run_timer, run_timer_cb, (uint64_t)r->o->autoquit * 1000, 0);
    }
}

/* Every user has stopped: test_stop runs. */
static void users_stopped(struct cc_runner *r)
{
    if (r->state != ST_STOPPING || r->users_done < r->nworkers) return;
    uv_timer_stop(&r->stop_timer);
    /* the mix the test ran with, for the results; the next test assigns users afresh */
    memcpy(r->test_counts, r->dispatch.count, r->nclasses * sizeof(*r->test_counts));
    cc_dispatch_clear(&r->dispatch);
    fire(r, "test_stop", -1, test_stop_done);
}

/* ---- starting -------------------------------------------------------------------------- */

static void test_start_done(struct cc_fiber *f, void *arg)
{
    (void)f;
    struct cc_runner *r = arg;
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
    if (r->run_time > 0) {
        cc_info("runner", "Run time limit set to %.0f seconds", r->run_time);
        uv_timer_start(&r->run_timer, run_timer_cb, (uint64_t)(r->run_time * 1000), 0);
    }
    ramp(r, r->target, r->rate);
}

static void set_host(struct cc_runner *r, const char *host)
{
    lua_State *L = r->vm.L;
    lua_pushstring(L, host);
    cc_vm_pcall(&r->vm, "set_host", 1, 0);
    for (unsigned w = 0; w < r->nworkers; w++)
        to_worker(r, w, CC_MSG_SET_HOST, 0, 0, 0, cc_xstrdup(host));
    cc_free(r->host);
    r->host = cc_xstrdup(host);
}

int cc_runner_swarm(struct cc_runner *r, long users, double rate, const char *host, double run_time,
                    char **err)
{
    if (users < 0 || !(rate > 0)) {
        *err = cc_xstrdup("the user count must be 0 or more and the spawn rate above 0");
        return -1;
    }
    switch (r->state) {
    case ST_RUNNING: /* a new target for the test that runs */
        if (host && *host) set_host(r, host);
        if (run_time > 0) {
            r->run_time = run_time;
            uv_timer_start(&r->run_timer, run_timer_cb, (uint64_t)(run_time * 1000), 0);
        }
        ramp(r, (size_t)users, rate);
        return 0;
    case ST_READY:
    case ST_STOPPED:
        break;
    default:
        *err = cc_xstrdup(r->state == ST_STARTING ? "the test is starting"
                                                  : "the test is stopping or over");
        return -1;
    }
    if (host && *host) set_host(r, host);
    if (r->state == ST_STOPPED) { /* a new test starts with clean statistics, as Locust's */
        r->history_n = 0;
    }
    r->start_s = cc_wall_s();
    r->end_s = 0;
    cc_agg_reset(&r->agg, r->start_s);
    cc_agg_open_interval(&r->agg, cc_now_ns());
    if (!uv_is_active((uv_handle_t *)&r->tick_timer))
        uv_timer_start(&r->tick_timer, tick_cb, TICK_MS, TICK_MS);
    r->target = (size_t)users;
    r->rate = rate;
    r->run_time = run_time;
    r->state = ST_STARTING;
    fire(r, "test_start", -1, test_start_done);
    return 0;
}

void cc_runner_stop(struct cc_runner *r)
{
    stop(r, "Stopping the test", false);
}

void cc_runner_quit(struct cc_runner *r)
{
    stop(r, "Quitting", true);
}

void cc_runner_reset_stats(struct cc_runner *r)
{
    r->reset_after_tick = true;
    request_shards(r);
}

/* ---- the control inbox ------------------------------------------------------------------- */

static void handle(struct cc_runner *r, struct cc_msg *m)
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
                break;
            }
            r->state = ST_READY;
            if (r->headless || r->o->autostart) {
                char *err = NULL;
                long users = r->o->users < 0 ? 1 : r->o->users;
                double rate = r->o->spawn_rate > 0 ? r->o->spawn_rate : 1;
                if (cc_runner_swarm(r, users, rate, NULL, r->o->run_time, &err) != 0) {
                    cc_error("runner", "%s", err);
                    cc_free(err);
                }
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
        stop(r, "StopTest raised by a user: stopping the test", r->headless);
        break;
    case CC_MSG_USERS_DONE:
        if (r->state == ST_STOPPING) {
            r->users_done++;
            users_stopped(r);
        }
        break;
    default:
        break;
    }
}

static void async_cb(uv_async_t *h)
{
    struct cc_runner *r = cc_container_of(h, struct cc_runner, async);
    struct cc_msg *batch = NULL;
    size_t cap = 0;
    size_t n = cc_mq_take(&r->inbox, &batch, &cap);
    for (size_t i = 0; i < n; i++)
        handle(r, &batch[i]);
    cc_free(batch);
}

static void signal_cb(uv_signal_t *h, int signum)
{
    struct cc_runner *r = h->data;
    if (++r->signals > 1) {
        cc_warn("runner", "Second signal: exiting at once");
        _exit(r->exit_code ? r->exit_code : 1);
    }
    stop(r,
         signum == SIGINT ? "Got SIGINT, shutting down (a second one exits at once)"
                          : "Got SIGTERM, shutting down (a second one exits at once)",
         true);
}

static void control_stop_test(struct cc_vm *vm)
{
    struct cc_runner *r = vm->owner;
    struct cc_msg m = {.type = CC_MSG_STOP_TEST};
    cc_mq_push(&r->inbox, &m);
}

static const struct cc_vm_hooks control_hooks = {.stop_test = control_stop_test};

/* ---- set-up and tear-down -------------------------------------------------------------- */

static void close_all(struct cc_runner *r)
{
    if (r->state == ST_DONE) return;
    r->state = ST_DONE;
    to_all(r, CC_MSG_QUIT, 0);
    uv_stop(&r->loop);
}

static void init_done(struct cc_fiber *f, void *arg)
{
    (void)f;
    struct cc_runner *r = arg;
    for (unsigned w = 0; w < r->nworkers; w++)
        cc_worker_start(&r->workers[w]);
}

static bool read_classes(struct cc_runner *r)
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
static void drain_inbox(struct cc_runner *r)
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
static int early_exit(struct cc_runner *r)
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
    struct cc_runner *r = cc_xcalloc(1, sizeof(*r));
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
        r->headless = o->headless;
        if (!o->headless) {
            cc_warn("main", "this build of cicada has no web UI yet: running headless");
            r->headless = true;
        }
        r->periodic_table = !o->only_summary && (r->headless || o->print_stats);
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
        r->test_counts = cc_xcalloc(r->nclasses + 1, sizeof(uint32_t));
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
    cc_free(r->history);
    cc_free(r->test_counts);
    cc_free(r->host);
    cc_free(r);
    return code;
}

/* ---- what the web UI and the reports read ------------------------------------------------ */

void cc_runner_view(const struct cc_runner *r, struct cc_runner_view *v)
{
    v->state = state_names[r->state];
    v->user_count = live_users(r);
    v->target = r->target;
    v->nclasses = r->nclasses;
    v->class_names = (const char *const *)r->class_names;
    v->threads = r->nworkers;
    v->host = r->host ? r->host : r->o->host;
    v->start_s = r->start_s;
    v->end_s = r->end_s;
    v->run_time = r->run_time;
    v->agg = &r->agg;
    v->history = r->history;
    v->history_n = r->history_n;
    v->locustfile = r->o->locustfile;
}

uint32_t cc_runner_class_users(const struct cc_runner *r, uint32_t cls)
{
    uint32_t n = 0;
    for (unsigned w = 0; w < r->nworkers; w++)
        n += r->reported[w * r->nclasses + cls];
    return n;
}

lua_State *cc_runner_lua(struct cc_runner *r)
{
    return r->vm.L;
}
