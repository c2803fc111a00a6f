/* SPDX-License-Identifier: MIT */
/* runner.c: the control thread of a run; see runner.h and docs/internals/runner.md. */
#include "runner/runner.h"
#include "runner/dispatch.h"
#include "core/err.h"
#include "core/log.h"
#include "dist/master.h"
#include "dist/worker.h"
#include "core/mq.h"
#include "core/worker.h"
#include "lua/vm.h"
#include "report/report.h"
#include "web/webui.h"

#include <errno.h>
#include <lauxlib.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
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

/* The arrival rate of an open-model class: a constant, or stages it ramps through linearly. */
struct arrival_spec {
    bool open;
    double start_rate;
    size_t nstages;
    double *duration, *rate; /* [stage] */
};

struct cc_runner {
    const struct cc_options *o;
    uv_loop_t loop;
    uv_async_t async;
    struct cc_mq inbox;
    uv_signal_t sigint, sigterm;
    uv_timer_t tick_timer, spawn_timer, run_timer, stop_timer, shape_timer;

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
    size_t ramp_steps;    /* users added or removed since the ramp began */
    uint32_t *batch_stop; /* [worker * nclasses + class]: users to stop in this batch */
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
    bool quit;            /* end the run once the users have stopped */
    bool headless;        /* no web UI: start at once, quit when the test ends */
    double run_time;      /* of the test that runs, seconds; 0: until stopped */
    char *host;           /* the host a start set, or NULL */
    struct cc_webui *web; /* the web UI, unless headless */
    bool *picked;         /* [class] the classes the web UI's form picked; NULL: all */

    struct cc_history_point *history; /* one point per interval of the current test */
    size_t history_n, history_cap;
    uint32_t *test_counts;        /* [class] users of the last test that stopped */
    struct arrival_spec *arrival; /* [class] open-model arrival rates (NULL entries: closed) */
    double *sent_rate;            /* [worker * nclasses + class] the rate a worker last got */
    uv_timer_t arrival_timer;     /* re-rates ramping arrival rates once a second */
    bool has_shape;               /* the script has a load shape: it sets users and rate */
    bool abort_thresholds;        /* some threshold ends the run as soon as it fails */
    bool thresholds_failed;       /* exit code 3 */
    bool status_line;             /* show the live status line (stderr is a terminal) */
    FILE *json_stream;            /* --json-stream */
    long shape_users;             /* the shape's last step, to ramp only when it changes */
    double shape_rate;
    uint64_t shape_mask;

    struct cc_csv csv;
    bool periodic_table;
    int name_width;
    enum state state;
    unsigned signals;
    double start_s, end_s;
    int exit_code;
    double stop_timeout; /* --stop-timeout, or the one a distributed master sent */

    /* distributed mode (src/dist): a master runs no users, a worker runs what it is told */
    struct cc_dist_master *master;
    struct cc_dist_worker *dworker;
    bool is_master, is_worker;
    bool tearing_down;       /* the master or worker closes as cc_run ends: no uv_stop */
    bool master_lost;        /* worker: exit code 1 */
    uv_timer_t expect_timer; /* --expect-workers-max-wait */
    uint32_t *dist_counts;   /* worker: [class] the users the master asked this worker for */
    bool use_curve;
    struct cc_zcurve curve;
    char (*curve_allowed)[CC_ZKEY_LEN + 1];
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
    if (r->master) return (uint32_t)cc_dist_master_user_count(r->master);
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
static void stop(struct cc_runner *r, const char *why, bool quit);
static void request_shards(struct cc_runner *r);
static void master_class_users(const struct cc_runner *r, uint32_t *out);
static void master_start(struct cc_runner *r, size_t target, double rate, const bool *allowed);
static void worker_apply(struct cc_runner *r);
static void print_workers(struct cc_runner *r);
static void worker_join(struct cc_runner *r);

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

/* The aborting thresholds, every interval: one that no longer holds ends the run. */
static void check_thresholds(struct cc_runner *r)
{
    if (!r->abort_thresholds || r->state != ST_RUNNING) return;
    lua_State *L = r->vm.L;
    lua_pushboolean(L, 0);
    lua_pushnumber(L, cc_wall_s() - r->start_s);
    if (cc_vm_pcall(&r->vm, "check_thresholds", 2, 2) != 0) return;
    bool ok = lua_toboolean(L, -2);
    if (!ok) {
        r->thresholds_failed = true;
        cc_error("runner", "A threshold does not hold:\n%s", lua_tostring(L, -1));
    }
    lua_pop(L, 2);
    if (!ok) stop(r, "Stopping: a threshold with abort = true does not hold", true);
}

/* The live status line on a terminal: elapsed and remaining time, users, rate, failures. */
static void status_line(struct cc_runner *r, double now)
{
    if (!r->status_line || r->state != ST_RUNNING) return;
    char line[256], left[32] = "";
    double el = now - r->start_s;
    if (r->run_time > 0) {
        double rem = r->run_time - el;
        if (rem < 0) rem = 0;
        snprintf(left, sizeof(left), ", %02d:%02d left", (int)rem / 60, (int)rem % 60);
    }
    const struct cc_entry *t = &r->agg.total;
    snprintf(line, sizeof(line), "%02d:%02d%s | %u users | %.1f req/s | %.2f%% failed",
             (int)el / 60, (int)el % 60, left, live_users(r), cc_entry_current_rps(&r->agg, t),
             cc_entry_fail_ratio(t) * 100);
    cc_status(line);
}

static void tick_outputs(struct cc_runner *r)
{
    double now = cc_wall_s();
    if (r->state == ST_RUNNING || r->state == ST_STOPPING) add_history(r, now);
    if (r->json_stream && (r->state == ST_RUNNING || r->state == ST_STOPPING)) {
        char *line = cc_report_json_line(&r->agg, now, live_users(r), state_names[r->state]);
        fprintf(r->json_stream, "%s\n", line);
        fflush(r->json_stream);
        cc_free(line);
    }
    check_thresholds(r);
    if (r->csv.prefix) cc_csv_write(&r->csv, &r->agg, live_users(r), now, true);
    if (r->periodic_table && r->ticks % 2 == 0 && r->state == ST_RUNNING) {
        cc_status_clear();
        cc_console_stats(stderr, &r->agg, true, r->name_width);
        print_workers(r);
    }
    status_line(r, now);
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
    if (r->dworker) cc_agg_merge(cc_dist_worker_delta(r->dworker), &r->shard, 0);
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

/* ---- open-model arrivals ---------------------------------------------------------------- */

/* The iterations per second class |c| starts |t| seconds into the test. */
static double arrival_rate_at(const struct arrival_spec *a, double t)
{
    double from = a->start_rate;
    if (a->nstages == 0) return from;
    for (size_t i = 0; i < a->nstages; i++) {
        if (t < a->duration[i]) return from + (a->rate[i] - from) * t / a->duration[i];
        t -= a->duration[i];
        from = a->rate[i];
    }
    return from;
}

/* Splits each open-model class's rate over the threads by their share of its pool of users
 * (max_users): while the pool fills, the rate grows with it. */
static void send_arrival_rates(struct cc_runner *r)
{
    if (!r->arrival || r->state != ST_RUNNING) return;
    double t = cc_wall_s() - r->start_s;
    for (uint32_t c = 0; c < r->nclasses; c++) {
        const struct arrival_spec *a = &r->arrival[c];
        if (!a->open) continue;
        double rate = arrival_rate_at(a, t);
        uint32_t total = r->fixed[c];
        for (unsigned w = 0; w < r->nworkers; w++) {
            uint32_t mine = r->dispatch.wcount[w * r->nclasses + c];
            double share = total ? rate * mine / total : 0;
            double *sent = &r->sent_rate[w * r->nclasses + c];
            if (share == *sent) continue;
            *sent = share;
            to_worker(r, w, CC_MSG_ARRIVAL, c, 0, share, NULL);
        }
    }
}

static void arrival_tick(uv_timer_t *t)
{
    send_arrival_rates(cc_container_of(t, struct cc_runner, arrival_timer));
}

/* ---- spawning ------------------------------------------------------------------------------ */

static void check_spawn_complete(struct cc_runner *r)
{
    if (r->spawn_complete || r->ramping || r->state != ST_RUNNING) return;
    for (unsigned w = 0; w < r->nworkers; w++)
        if (r->spawns_acked[w] < r->spawns_sent[w]) return;
    r->spawn_complete = true;
    if (r->dworker) { /* the master decides when the whole ramp is done (on_all_spawned) */
        cc_dist_worker_spawning_complete(r->dworker);
        return;
    }
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

static void send_batch(struct cc_runner *r, uint32_t *batch, enum cc_msg_type type)
{
    for (unsigned w = 0; w < r->nworkers; w++) {
        for (uint32_t c = 0; c < r->nclasses; c++) {
            uint32_t *n = &batch[w * r->nclasses + c];
            if (!*n) continue;
            to_worker(r, w, type, c, *n, r->stop_timeout, NULL);
            if (type == CC_MSG_SPAWN) r->spawns_sent[w]++;
            *n = 0;
        }
    }
}

/*
 * One step of a ramp: the users of classes the stage no longer allows leave first, then users
 * are added or removed (most recent first) towards the target. Returns false when there is
 * nothing left to do.
 */
static bool ramp_one(struct cc_runner *r, bool *stuck)
{
    struct cc_dispatch_entry e;
    int gone = cc_dispatch_disallowed(&r->dispatch);
    if (gone >= 0) {
        cc_dispatch_remove_class(&r->dispatch, (uint32_t)gone, &e);
        r->batch_stop[e.worker * r->nclasses + e.cls]++;
        return true;
    }
    size_t cur = cc_dispatch_total(&r->dispatch);
    if (cur > r->target) {
        cc_dispatch_remove(&r->dispatch, &e);
        r->batch_stop[e.worker * r->nclasses + e.cls]++;
        return true;
    }
    if (cur == r->target) return false;
    if (!cc_dispatch_add(&r->dispatch, &e)) {
        cc_warn("runner",
                "Only %zu users can be spawned: the user classes allowed have a fixed_count "
                "and they are all reached",
                cur);
        *stuck = true;
        return false;
    }
    r->batch[e.worker * r->nclasses + e.cls]++;
    return true;
}

static void spawn_cb(uv_timer_t *t)
{
    struct cc_runner *r = cc_container_of(t, struct cc_runner, spawn_timer);
    double elapsed = (double)(cc_now_ns() - r->ramp_t0_ns) / 1e9;
    size_t allowed = 1 + (size_t)(r->rate * elapsed); /* changes the rate allows by now */
    bool stuck = false, more = true;
    while (r->ramp_steps < allowed && (more = ramp_one(r, &stuck)))
        r->ramp_steps++;
    send_batch(r, r->batch_stop, CC_MSG_STOP_USERS);
    send_batch(r, r->batch, CC_MSG_SPAWN);
    send_arrival_rates(r); /* after the users: a thread's rate follows its share of them */
    if (!more) {
        uv_timer_stop(&r->spawn_timer);
        r->ramping = false;
        check_spawn_complete(r);
    }
}

/* Ramps to |target| users at |rate| per second from the users assigned now; |allowed| (NULL:
 * every class) narrows the classes that may have users. */
static void ramp(struct cc_runner *r, size_t target, double rate, const bool *allowed)
{
    if (r->master) {
        master_start(r, target, rate, allowed);
        return;
    }
    if (r->dworker) {
        worker_apply(r);
        return;
    }
    r->target = target;
    r->rate = rate;
    r->ramp_t0_ns = cc_now_ns();
    r->ramp_steps = 0;
    r->ramping = true;
    r->spawn_complete = false;
    cc_dispatch_set_allowed(&r->dispatch, allowed);
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
    case ST_LOADING: /* the run ends as one that never started, once the script is loaded */
        if (quit) cc_info("runner", "%s", why);
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
    uv_timer_stop(&r->shape_timer);
    uv_timer_stop(&r->arrival_timer);
    r->ramping = false;
    r->users_done = 0;
    if (r->master) { /* the workers stop their users; on_stopped follows */
        master_class_users(r, r->test_counts);
        cc_dist_master_stop(r->master);
        return;
    }
    bool graceful = r->stop_timeout > 0;
    to_all(r, CC_MSG_STOP_ALL, r->stop_timeout);
    r->kill_sent = !graceful;
    uv_timer_start(&r->stop_timer, kill_cb,
                   graceful ? (uint64_t)(r->stop_timeout * 1000) : KILL_GRACE_MS, 0);
}

static void run_timer_cb(uv_timer_t *t)
{
    struct cc_runner *r = cc_container_of(t, struct cc_runner, run_timer);
    stop(r, "--run-time limit reached, shutting down", r->headless || r->o->autoquit >= 0);
}

/* The thresholds, checked on the final statistics and printed with their measured values. */
static void final_thresholds(struct cc_runner *r)
{
    lua_State *L = r->vm.L;
    lua_pushboolean(L, 1);
    lua_pushnumber(L, r->end_s - r->start_s);
    if (cc_vm_pcall(&r->vm, "check_thresholds", 2, 2) != 0) return;
    const char *lines = lua_tostring(L, -1);
    if (lines && *lines) cc_console("Thresholds\n%s\n", lines);
    if (!lua_toboolean(L, -2)) r->thresholds_failed = true;
    lua_pop(L, 2);
}

static void write_results(struct cc_runner *r)
{
    cc_status(NULL);
    if (r->csv.prefix) {
        cc_csv_write(&r->csv, &r->agg, live_users(r), r->end_s, true);
        cc_csv_close(&r->csv);
    }
    if (!r->is_worker) { /* a worker's numbers are its master's to report */
        cc_console_stats(stderr, &r->agg, false, r->name_width);
        cc_console_percentiles(stderr, &r->agg, r->name_width);
        cc_console_intended(stderr, &r->agg, r->name_width, (const char *const *)r->class_names,
                            r->nclasses);
        cc_console_errors(stderr, &r->agg, r->name_width);
        print_workers(r);
        final_thresholds(r);
    }
    if (r->o->html) cc_report_html_save(r, r->o->html);
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
    if (r->master_lost) return 1;
    if (r->thresholds_failed) return 3;
    /* as locust-plugins: with --check-fail-ratio, the ratio decides, not every failure */
    bool ratio_decides = r->o->check_fail_ratio >= 0;
    if (r->agg.exc_keys.count || (r->agg.fail_keys.count && !ratio_decides))
        return (int)r->o->exit_code_on_error;
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

/* The script is loaded: the run waits for a start, or ends when a signal came meanwhile (then
 * false). */
static bool become_ready(struct cc_runner *r)
{
    r->state = ST_READY;
    if (!r->quit) return true;
    finish(r);
    return false;
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
    if (r->dworker) cc_dist_worker_stopped(r->dworker); /* ready for the master's next test */
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
    /* the mix the test ran with, for the results; the next test assigns users afresh (a
     * master took it from its workers as the test stopped) */
    if (!r->master)
        memcpy(r->test_counts, r->dispatch.count, r->nclasses * sizeof(*r->test_counts));
    cc_dispatch_clear(&r->dispatch);
    fire(r, "test_stop", -1, test_stop_done);
}

/* ---- starting -------------------------------------------------------------------------- */

/* The load shape's tick, once a second: a new target when it changed, or the end. */
static void shape_cb(uv_timer_t *t)
{
    struct cc_runner *r = cc_container_of(t, struct cc_runner, shape_timer);
    if (r->state != ST_RUNNING) {
        uv_timer_stop(t);
        return;
    }
    lua_State *L = r->vm.L;
    int top = lua_gettop(L);
    if (cc_vm_pcall(&r->vm, "shape_tick", 0, 3) != 0) {
        uv_timer_stop(t);
        r->vm.listener_error = true;
        stop(r, "The load shape's tick() failed: stopping", r->headless);
        return;
    }
    if (lua_isnil(L, -3)) {
        lua_settop(L, top);
        uv_timer_stop(t);
        stop(r, "The load shape ended the test", r->headless);
        return;
    }
    long users = (long)lua_tointeger(L, -3);
    double rate = lua_tonumber(L, -2);
    bool *allowed = NULL;
    uint64_t mask = UINT64_MAX;
    if (lua_istable(L, -1)) {
        allowed = cc_xcalloc(r->nclasses + 1, sizeof(*allowed));
        mask = 0;
        for (int i = 1; i <= (int)lua_objlen(L, -1); i++) {
            lua_rawgeti(L, -1, i);
            lua_Integer c = lua_tointeger(L, -1);
            lua_pop(L, 1);
            if (c >= 0 && (uint32_t)c < r->nclasses) {
                allowed[c] = true;
                mask |= 1ull << (c % 64);
            }
        }
    }
    lua_settop(L, top);
    if (users != r->shape_users || rate != r->shape_rate || mask != r->shape_mask) {
        r->shape_users = users;
        r->shape_rate = rate;
        r->shape_mask = mask;
        ramp(r, (size_t)users, rate, allowed);
    }
    cc_free(allowed);
}

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
    if (r->arrival) {
        memset(r->sent_rate, 0, (size_t)r->nworkers * r->nclasses * sizeof(*r->sent_rate));
        uv_timer_start(&r->arrival_timer, arrival_tick, 1000, 1000);
    }
    if (r->has_shape) {
        cc_vm_pcall(&r->vm, "shape_start", 0, 0);
        r->shape_users = -1;
        uv_timer_start(&r->shape_timer, shape_cb, 0, 1000);
        return;
    }
    ramp(r, r->target, r->rate, r->picked);
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
        ramp(r, (size_t)users, rate, r->picked);
        return 0;
    case ST_READY:
    case ST_STOPPED:
        break;
    default:
        *err = cc_xstrdup(r->state == ST_STARTING  ? "the test is starting"
                          : r->state == ST_LOADING ? "the script is still loading: try again"
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
            if (!become_ready(r)) break;
            if (r->is_worker) {
                worker_join(r);
                break;
            }
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
        if (r->dworker) cc_agg_merge(cc_dist_worker_delta(r->dworker), s, m->from);
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
        if (r->dworker) {
            uint32_t *per_class = cc_xcalloc(r->nclasses + 1, sizeof(uint32_t));
            for (uint32_t c = 0; c < r->nclasses; c++)
                per_class[c] = cc_runner_class_users(r, c);
            cc_dist_worker_set_users(r->dworker, per_class);
            cc_free(per_class);
        }
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

static uint32_t control_user_count(struct cc_vm *vm)
{
    return live_users(vm->owner);
}

static const struct cc_vm_hooks control_hooks = {.stop_test = control_stop_test,
                                                 .user_count = control_user_count};

/* ---- distributed mode: the master ---------------------------------------------------------- */

/* Users per class the master assigned to its workers (reported ones, with |reported|), into
 * |out| ([nclasses]). */
static void master_users(const struct cc_runner *r, uint32_t *out, bool reported)
{
    memset(out, 0, r->nclasses * sizeof(*out));
    if (!r->master) return;
    size_t n = 0;
    const struct cc_dist_node *const *nodes = cc_dist_master_nodes(r->master, &n);
    for (size_t i = 0; i < n; i++) {
        const uint32_t *u = reported ? nodes[i]->users : nodes[i]->assigned;
        for (uint32_t c = 0; u && c < r->nclasses; c++)
            out[c] += u[c];
    }
}

/* The users the test runs with, per class, as a local run's dispatch counts them. */
static void master_class_users(const struct cc_runner *r, uint32_t *out)
{
    master_users(r, out, false);
}

/* The workers' table, under the statistics: state, users and CPU of each. */
static void print_workers(struct cc_runner *r)
{
    if (!r->master) return;
    size_t n = 0;
    const struct cc_dist_node *const *nodes = cc_dist_master_nodes(r->master, &n);
    cc_console("%-48s %-10s %8s %7s %10s\n", "Worker", "State", "Users", "CPU %", "Memory MiB");
    for (size_t i = 0; i < n; i++)
        cc_console("%-48.48s %-10s %8llu %7.1f %10.1f\n", nodes[i]->id,
                   cc_dist_node_state_name(nodes[i]->state),
                   (unsigned long long)nodes[i]->user_count, nodes[i]->cpu,
                   (double)nodes[i]->memory / (1024.0 * 1024.0));
    cc_console("\n");
}

/* Splits a space- or comma-separated list into |out| (strings inside |copy|); returns the count. */
static size_t split_words(char *copy, const char **out, size_t max)
{
    size_t n = 0;
    for (char *save = NULL, *w = strtok_r(copy, " ,", &save); w && n < max;
         w = strtok_r(NULL, " ,", &save))
        out[n++] = w;
    return n;
}

/* parsed_options for the workers: what a Locust worker reads from its master. */
static void pack_options(struct cc_runner *r, struct cc_dbuf *b)
{
    const struct cc_options *o = r->o;
    char *tags = cc_xstrdup(o->tags ? o->tags : ""),
         *ex = cc_xstrdup(o->exclude_tags ? o->exclude_tags : "");
    const char *tag_list[64], *ex_list[64];
    size_t ntags = split_words(tags, tag_list, 64), nex = split_words(ex, ex_list, 64);
    const char *host = r->host ? r->host : o->host;
    struct cc_dopt opts[] = {
        {.key = "host", .type = host ? CC_DOPT_STR : CC_DOPT_NIL, .s = host},
        {.key = "num_users", .type = CC_DOPT_INT, .i = (int64_t)r->target},
        {.key = "spawn_rate", .type = CC_DOPT_NUM, .d = r->rate},
        {.key = "run_time",
         .type = r->run_time > 0 ? CC_DOPT_INT : CC_DOPT_NIL,
         .i = (int64_t)r->run_time},
        {.key = "stop_timeout", .type = CC_DOPT_NUM, .d = r->stop_timeout},
        {.key = "tags",
         .type = ntags ? CC_DOPT_LIST : CC_DOPT_NIL,
         .list = tag_list,
         .nlist = ntags},
        {.key = "exclude_tags",
         .type = nex ? CC_DOPT_LIST : CC_DOPT_NIL,
         .list = ex_list,
         .nlist = nex},
        {.key = "headless", .type = CC_DOPT_BOOL, .b = r->headless},
    };
    cc_dmsg_pack_options(&b->pk, opts, CC_ARRAY_LEN(opts));
    cc_free(tags);
    cc_free(ex);
}

/* Starts the test on the workers, or gives the running one a new target. */
static void master_start(struct cc_runner *r, size_t target, double rate, const bool *allowed)
{
    r->target = target;
    r->rate = rate;
    r->spawn_complete = false;
    struct cc_dist_class *cls = cc_xcalloc(r->nclasses + 1, sizeof(*cls));
    for (uint32_t c = 0; c < r->nclasses; c++) {
        bool in = !allowed || allowed[c];
        cls[c] = (struct cc_dist_class){.name = r->class_names[c],
                                        .weight = in ? r->weights[c] : 0,
                                        .fixed_count = in ? r->fixed[c] : 0};
    }
    struct cc_dbuf b;
    cc_dbuf_init(&b);
    pack_options(r, &b);
    struct cc_dist_test t = {
        .users = target,
        .rate = rate,
        .classes = cls,
        .nclasses = r->nclasses,
        .host = r->host ? r->host : r->o->host,
        .stop_timeout = r->stop_timeout,
        .has_stop_timeout = true,
        .options = b.sb.data,
        .options_len = b.sb.size,
    };
    int rc = cc_dist_master_start(r->master, &t);
    cc_dbuf_release(&b);
    cc_free(cls);
    if (rc == -ENOTCONN)
        stop(r, "No worker is connected: the test cannot start (start some with --worker)",
             r->headless);
    else if (rc != 0)
        stop(r, "The master could not start the test", r->headless);
}

static void m_expected_workers(struct cc_dist_master *m, unsigned ready, void *data)
{
    (void)m;
    struct cc_runner *r = data;
    uv_timer_stop(&r->expect_timer);
    if (r->state != ST_READY || !(r->headless || r->o->autostart)) return;
    cc_info("runner", "%u workers connected: starting", ready);
    char *err = NULL;
    long users = r->o->users < 0 ? 1 : r->o->users;
    double rate = r->o->spawn_rate > 0 ? r->o->spawn_rate : 1;
    if (cc_runner_swarm(r, users, rate, NULL, r->o->run_time, &err) != 0) {
        cc_error("runner", "%s", err);
        cc_free(err);
    }
}

static void m_spawning_complete(struct cc_dist_master *m, uint64_t user_count, void *data)
{
    (void)m;
    struct cc_runner *r = data;
    if (r->state != ST_RUNNING || r->spawn_complete) return;
    r->spawn_complete = true; /* src/dist logged it */
    fire(r, "spawning_complete", (int)user_count, NULL);
    if (r->o->reset_stats) {
        r->reset_after_tick = true;
        request_shards(r);
    }
}

static void m_stopped(struct cc_dist_master *m, void *data)
{
    (void)m;
    struct cc_runner *r = data;
    if (r->state != ST_STOPPING) return;
    r->users_done = r->nworkers;
    users_stopped(r);
}

static void m_no_workers(struct cc_dist_master *m, void *data)
{
    (void)m;
    struct cc_runner *r = data;
    stop(r, "Every worker is gone: stopping the test", r->headless);
}

static void m_closed(void *data)
{
    struct cc_runner *r = data;
    r->master = NULL;
    if (!r->tearing_down) uv_stop(&r->loop);
}

static const struct cc_dist_master_cbs master_cbs = {
    .on_expected_workers = m_expected_workers,
    .on_spawning_complete = m_spawning_complete,
    .on_stopped = m_stopped,
    .on_no_workers = m_no_workers,
    .on_closed = m_closed,
};

static void expect_timeout(uv_timer_t *t)
{
    struct cc_runner *r = cc_container_of(t, struct cc_runner, expect_timer);
    if (r->state != ST_READY) return;
    cc_error("runner", "Gave up waiting for workers to connect: %zu of %ld after %.0f s",
             cc_dist_master_worker_count(r->master), r->o->expect_workers,
             r->o->expect_workers_max_wait);
    r->exit_code = 1;
    close_all(r);
}

/* The master listens for its workers; headless, it starts once enough of them are there. */
static void master_listen(struct cc_runner *r)
{
    const struct cc_options *o = r->o;
    struct cc_dist_master_opts mo;
    cc_dist_master_opts_init(&mo);
    mo.bind_host = o->master_bind_host;
    mo.bind_port = (int)o->master_bind_port;
    bool autostart = r->headless || o->autostart;
    mo.expect_workers = autostart ? (unsigned)(o->expect_workers > 0 ? o->expect_workers : 1) : 0;
    mo.rebalance = o->enable_rebalancing;
    mo.agg = &r->agg;
    mo.curve = r->use_curve ? &r->curve : NULL;
    char *err = NULL;
    int rc = cc_dist_master_new(&r->loop, &mo, &master_cbs, r, &r->master, &err);
    if (rc != 0) {
        cc_error("runner", "The master cannot listen on %s:%ld: %s", o->master_bind_host,
                 o->master_bind_port, err ? err : cc_strerror(rc));
        cc_free(err);
        r->exit_code = 1;
        close_all(r);
        return;
    }
    if (!become_ready(r)) return;
    cc_info("runner", "Master listening on %s:%d", o->master_bind_host,
            cc_dist_master_port(r->master));
    if (autostart) {
        cc_info("runner", "Waiting for workers to be ready, 0 of %u connected", mo.expect_workers);
        if (o->expect_workers_max_wait > 0)
            uv_timer_start(&r->expect_timer, expect_timeout,
                           (uint64_t)(o->expect_workers_max_wait * 1000), 0);
    }
}

/* ---- distributed mode: the worker ------------------------------------------------------------ */

/* Makes the users of this process what the master asked for, class by class, at once (the
 * master paces the ramp); the master hears once every thread runs them. */
static void worker_apply(struct cc_runner *r)
{
    struct cc_dispatch_entry e;
    size_t total = 0;
    for (uint32_t c = 0; c < r->nclasses; c++) {
        while (r->dispatch.count[c] > r->dist_counts[c] &&
               cc_dispatch_remove_class(&r->dispatch, c, &e))
            r->batch_stop[e.worker * r->nclasses + e.cls]++;
        while (r->dispatch.count[c] < r->dist_counts[c]) {
            cc_dispatch_add_class(&r->dispatch, c, &e);
            r->batch[e.worker * r->nclasses + e.cls]++;
        }
        total += r->dist_counts[c];
    }
    r->target = total;
    send_batch(r, r->batch_stop, CC_MSG_STOP_USERS);
    send_batch(r, r->batch, CC_MSG_SPAWN);
    send_arrival_rates(r);
    r->ramping = false;
    r->spawn_complete = false;
    check_spawn_complete(r);
}

static void w_spawn(struct cc_dist_worker *w, const struct cc_dist_spawn *s, void *data)
{
    (void)w;
    struct cc_runner *r = data;
    for (size_t i = 0; i < s->nunknown; i++)
        cc_warn("runner", "The master asks for users of class %s, which %s does not have",
                s->unknown[i], r->o->locustfile);
    if (s->has_stop_timeout) r->stop_timeout = s->stop_timeout;
    memcpy(r->dist_counts, s->counts, r->nclasses * sizeof(*r->dist_counts));
    if (s->host && (!r->host || strcmp(r->host, s->host) != 0)) set_host(r, s->host);
    switch (r->state) {
    case ST_READY:
    case ST_STOPPED: { /* a new test: test_start, then the counts (test_start_done -> ramp) */
        char *err = NULL;
        if (cc_runner_swarm(r, 0, 1, NULL, 0, &err) != 0) {
            cc_error("runner", "%s", err);
            cc_free(err);
        }
        break;
    }
    case ST_RUNNING:
        worker_apply(r);
        break;
    default: /* starting: applied when test_start is done; stopping: too late */
        break;
    }
}

static void w_all_spawned(struct cc_dist_worker *w, uint64_t user_count, void *data)
{
    (void)w;
    struct cc_runner *r = data;
    cc_info("runner", "All users spawned: %llu total users (this worker: %u)",
            (unsigned long long)user_count, live_users(r));
    fire(r, "spawning_complete", (int)user_count, NULL);
}

static void w_stop(struct cc_dist_worker *w, void *data)
{
    (void)w;
    struct cc_runner *r = data;
    if (r->state == ST_RUNNING || r->state == ST_STARTING)
        stop(r, "The master stopped the test", false);
    else
        cc_dist_worker_stopped(r->dworker);
}

static void w_quit(struct cc_dist_worker *w, void *data)
{
    (void)w;
    stop(data, "The master quit: shutting down", true);
}

static void w_master_lost(struct cc_dist_worker *w, const char *why, void *data)
{
    (void)w;
    struct cc_runner *r = data;
    cc_error("runner", "Lost the master: %s", why);
    r->master_lost = true;
    stop(r, "Shutting down without a master", true);
}

static void w_closed(void *data)
{
    struct cc_runner *r = data;
    r->dworker = NULL;
    if (!r->tearing_down) uv_stop(&r->loop);
}

static const struct cc_dist_worker_cbs worker_cbs = {
    .on_spawn = w_spawn,
    .on_all_spawned = w_all_spawned,
    .on_stop = w_stop,
    .on_quit = w_quit,
    .on_master_lost = w_master_lost,
    .on_closed = w_closed,
};

/* Every thread has loaded the script: the worker joins its master. */
static void worker_join(struct cc_runner *r)
{
    const struct cc_options *o = r->o;
    struct cc_dist_worker_opts wo;
    cc_dist_worker_opts_init(&wo);
    wo.master_host = o->master_host;
    wo.master_port = (int)o->master_port;
    wo.version = CC_VERSION;
    wo.nclasses = r->nclasses;
    wo.class_names = (const char *const *)r->class_names;
    wo.cpu_threads = r->nworkers;
    wo.master_timeout_s = o->heartbeat_timeout;
    wo.curve = r->use_curve ? &r->curve : NULL;
    int rc = cc_dist_worker_new(&r->loop, &wo, &worker_cbs, r, &r->dworker);
    if (rc != 0) {
        cc_error("runner", "The worker cannot start: %s", cc_strerror(rc));
        r->exit_code = 1;
        close_all(r);
        return;
    }
}

/* CURVE keys from the options; returns -1 with a message in *|err| (caller frees). */
static int load_curve(struct cc_runner *r, char **err)
{
    const struct cc_options *o = r->o;
    if (!o->curve_secret_key) {
        if (o->curve_server_key || o->curve_allow) {
            *err = cc_xstrdup("--curve-server-key and --curve-allow need --curve-secret-key");
            return -1;
        }
        return 0;
    }
    struct cc_zcurve *c = &r->curve;
    c->server = r->is_master;
    if (cc_zcurve_load_key(o->curve_secret_key, "secret-key", c->secret_key, err) != 0) return -1;
    if (cc_zcurve_public_from_secret(c->secret_key, c->public_key) != 0) {
        *err = cc_xstrdup("--curve-secret-key: not a valid CURVE secret key");
        return -1;
    }
    if (r->is_worker) {
        if (!o->curve_server_key) {
            *err = cc_xstrdup("a worker with --curve-secret-key also needs --curve-server-key, "
                              "the master's public key");
            return -1;
        }
        if (cc_zcurve_load_key(o->curve_server_key, "public-key", c->server_key, err) != 0)
            return -1;
    } else if (o->curve_allow) {
        char *copy = cc_xstrdup(o->curve_allow);
        const char *specs[1024];
        size_t n = split_words(copy, specs, 1024);
        r->curve_allowed = cc_xcalloc(n + 1, sizeof(*r->curve_allowed));
        for (size_t i = 0; i < n; i++) {
            if (cc_zcurve_load_key(specs[i], "public-key", r->curve_allowed[i], err) != 0) {
                cc_free(copy);
                return -1;
            }
        }
        c->allowed = r->curve_allowed;
        c->nallowed = n;
        cc_free(copy);
    }
    r->use_curve = true;
    return 0;
}

/* ---- set-up and tear-down -------------------------------------------------------------- */

static void close_all(struct cc_runner *r)
{
    if (r->state == ST_DONE) return;
    r->state = ST_DONE;
    uv_timer_stop(&r->expect_timer);
    to_all(r, CC_MSG_QUIT, 0);
    /* a master quits its workers and a worker says goodbye first; their on_closed stops the
     * loop */
    if (r->master) {
        cc_dist_master_quit(r->master);
        return;
    }
    if (r->dworker) {
        cc_dist_worker_close(r->dworker, !r->master_lost);
        return;
    }
    uv_stop(&r->loop);
}

static void init_done(struct cc_fiber *f, void *arg)
{
    (void)f;
    struct cc_runner *r = arg;
    if (r->is_master) { /* no users here: ready once the master listens */
        master_listen(r);
        return;
    }
    for (unsigned w = 0; w < r->nworkers; w++)
        cc_worker_start(&r->workers[w]);
}

/* The arrival rate on top of |L| (a number, or {start_rate, stages}) for class |i|. */
static void read_arrival(struct cc_runner *r, uint32_t i, lua_State *L)
{
    if (lua_isnil(L, -1)) return;
    if (!r->arrival) r->arrival = cc_xcalloc(r->nclasses, sizeof(*r->arrival));
    struct arrival_spec *a = &r->arrival[i];
    a->open = true;
    if (lua_isnumber(L, -1)) {
        a->start_rate = lua_tonumber(L, -1);
        return;
    }
    lua_getfield(L, -1, "start_rate");
    a->start_rate = lua_tonumber(L, -1);
    lua_getfield(L, -2, "stages");
    a->nstages = lua_objlen(L, -1);
    a->duration = cc_xcalloc(a->nstages + 1, sizeof(double));
    a->rate = cc_xcalloc(a->nstages + 1, sizeof(double));
    for (size_t k = 0; k < a->nstages; k++) {
        lua_rawgeti(L, -1, (int)k + 1);
        lua_getfield(L, -1, "duration");
        a->duration[k] = lua_tonumber(L, -1);
        lua_getfield(L, -2, "rate");
        a->rate[k] = lua_tonumber(L, -1);
        lua_pop(L, 3);
    }
    lua_pop(L, 2);
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
        lua_getfield(L, -4, "arrival");
        read_arrival(r, i, L);
        lua_pop(L, 5);
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

static int run(const struct cc_options *o, const char *lua_dir)
{
    struct cc_runner *r = cc_xcalloc(1, sizeof(*r));
    r->o = o;
    r->is_master = o->master;
    r->is_worker = o->worker;
    r->stop_timeout = o->stop_timeout;
    CC_ASSERT(uv_loop_init(&r->loop) == 0);
    uv_async_init(&r->loop, &r->async, async_cb);
    cc_mq_init(&r->inbox, &r->async);
    uv_timer_init(&r->loop, &r->tick_timer);
    uv_timer_init(&r->loop, &r->spawn_timer);
    uv_timer_init(&r->loop, &r->run_timer);
    uv_timer_init(&r->loop, &r->stop_timer);
    uv_timer_init(&r->loop, &r->shape_timer);
    uv_timer_init(&r->loop, &r->arrival_timer);
    uv_timer_init(&r->loop, &r->expect_timer);
    uv_signal_init(&r->loop, &r->sigint);
    uv_signal_init(&r->loop, &r->sigterm);
    r->sigint.data = r->sigterm.data = r;
    cc_shard_init(&r->shard);
    cc_recorder_init(&r->rec, &r->shard);
    cc_agg_init(&r->agg, o->csv_full_history);
    r->nworkers = r->is_master ? 0 : thread_count(o); /* a master's workers run the users */
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
    if (r->is_master && r->is_worker) {
        fprintf(stderr, "cicada: --master and --worker cannot be given together\n");
        code = 2;
    } else if (access(o->locustfile, R_OK) != 0) {
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
        if (code < 0 && load_curve(r, &err) != 0) {
            fprintf(stderr, "cicada: %s\n", err);
            cc_free(err);
            code = 2;
        }
        if (code < 0 && cc_vm_pcall(&r->vm, "has_thresholds", 0, 2) == 0) {
            r->abort_thresholds = lua_toboolean(r->vm.L, -1);
            lua_pop(r->vm.L, 2);
        }
        if (code < 0 && o->json_stream && strcmp(o->json_stream, "-") == 0)
            r->json_stream = stdout;
        else if (code < 0 && o->json_stream && !(r->json_stream = fopen(o->json_stream, "w"))) {
            fprintf(stderr, "cicada: cannot write %s\n", o->json_stream);
            code = 1;
        }
        if (code < 0 && cc_vm_pcall(&r->vm, "has_shape", 0, 1) == 0) {
            r->has_shape = lua_toboolean(r->vm.L, -1);
            lua_pop(r->vm.L, 1);
            if (r->has_shape && (o->users >= 0 || o->spawn_rate > 0))
                cc_warn("main", "The script has a load shape: it sets the users and the spawn "
                                "rate, so -u and -r are ignored");
        }
    }

    if (code < 0) {
        /* a worker neither starts nor quits on its own, and has no UI: its master decides */
        r->headless = o->headless && !r->is_worker;
        if (!o->headless && !r->is_worker && !(r->web = cc_webui_start(r, &r->loop, o, &err))) {
            fprintf(stderr, "cicada: %s\n", err);
            cc_free(err);
            code = 1;
        }
        r->periodic_table = !o->only_summary && !r->is_worker && (r->headless || o->print_stats);
        r->status_line = r->headless && !o->only_summary && isatty(STDERR_FILENO);
        if (o->csv) {
            if (cc_csv_open(&r->csv, o->csv, o->csv_full_history, &err) != 0) {
                fprintf(stderr, "cicada: %s\n", err);
                cc_free(err);
                code = 1;
            }
        }
    }

    if (code < 0) {
        r->reported = cc_xcalloc((size_t)r->nworkers * r->nclasses + 1, sizeof(uint32_t));
        r->batch = cc_xcalloc((size_t)r->nworkers * r->nclasses + 1, sizeof(uint32_t));
        r->batch_stop = cc_xcalloc((size_t)r->nworkers * r->nclasses + 1, sizeof(uint32_t));
        r->spawns_sent = cc_xcalloc(r->nworkers, sizeof(uint64_t));
        r->spawns_acked = cc_xcalloc(r->nworkers, sizeof(uint64_t));
        r->test_counts = cc_xcalloc(r->nclasses + 1, sizeof(uint32_t));
        r->sent_rate = cc_xcalloc((size_t)r->nworkers * r->nclasses + 1, sizeof(double));
        r->dist_counts = cc_xcalloc(r->nclasses + 1, sizeof(uint32_t));
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
        cc_info("main", "Starting cicada %s", CC_VERSION); /* from here a signal ends the run */
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
    r->tearing_down = true;
    if (r->master) cc_dist_master_close(r->master);
    if (r->dworker) cc_dist_worker_close(r->dworker, false);
    if (r->vm.L) cc_vm_close(&r->vm);
    cc_webui_free(r->web); /* runs the loop until the UI is closed: no Lua runs any more */
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
    cc_free(r->batch_stop);
    cc_free(r->spawns_sent);
    cc_free(r->spawns_acked);
    cc_free(r->workers);
    cc_free(r->options_lua);
    if (r->json_stream && r->json_stream != stdout) fclose(r->json_stream);
    cc_free(r->history);
    cc_free(r->test_counts);
    cc_free(r->sent_rate);
    cc_free(r->dist_counts);
    cc_free(r->curve_allowed);
    for (uint32_t i = 0; r->arrival && i < r->nclasses; i++) {
        cc_free(r->arrival[i].duration);
        cc_free(r->arrival[i].rate);
    }
    cc_free(r->arrival);
    cc_free(r->host);
    cc_free(r->picked);
    cc_free(r);
    return code;
}

/* ---- --processes: local worker processes ------------------------------------------------- */

/* A free TCP port on 127.0.0.1 for a local master, or 0. */
static int free_local_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int port = 0;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/*
 * Forks |n| worker processes before anything else exists (threads, loops, ZeroMQ), each a
 * worker of the master at |host|:|port| with one thread unless --threads says otherwise. They
 * leave the terminal's process group, so that Ctrl-C reaches only the parent, which ends them
 * through the protocol; they also end if the parent dies. Returns the pids.
 */
static pid_t *fork_workers(const struct cc_options *o, long n, const char *host, int port,
                           const char *lua_dir, int *child_code)
{
    pid_t parent = getpid();
    pid_t *pids = cc_xcalloc((size_t)n + 1, sizeof(pid_t));
    fflush(NULL);
    for (long i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            cc_error("main", "fork failed: %s", strerror(errno));
            break;
        }
        if (pid == 0) {
            setpgid(0, 0);
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (getppid() != parent) _exit(1);
            struct cc_options c = *o;
            c.master = false;
            c.worker = true;
            c.processes = 0;
            c.master_host = (char *)host;
            c.master_port = port;
            if (c.threads <= 0) c.threads = 1;
            c.csv = c.json_file = c.html = c.json_stream = NULL;
            c.json = false;
            *child_code = run(&c, lua_dir);
            cc_free(pids);
            return NULL;
        }
        pids[i] = pid;
    }
    return pids;
}

/* Waits up to |grace_s| for the children, then kills what is left. */
static void reap_workers(pid_t *pids, long n, double grace_s)
{
    uint64_t deadline = cc_now_ns() + (uint64_t)(grace_s * 1e9);
    for (long i = 0; i < n; i++) {
        while (pids[i] > 0) {
            pid_t got = waitpid(pids[i], NULL, WNOHANG);
            if (got == pids[i] || (got < 0 && errno != EINTR)) {
                pids[i] = 0;
            } else if (cc_now_ns() > deadline) {
                kill(pids[i], SIGKILL);
                waitpid(pids[i], NULL, 0);
                pids[i] = 0;
            } else {
                usleep(20000);
            }
        }
    }
}

int cc_run(const struct cc_options *o, const char *lua_dir)
{
    if (o->processes == 0) return run(o, lua_dir);
    long n = o->processes;
    if (n < 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        n = cpus > 0 ? cpus : 1;
    }
    if (o->master) {
        fprintf(stderr, "cicada: --processes makes its own local master; drop --master (or run "
                        "the master apart and give the workers --worker --processes)\n");
        return 2;
    }
    int child_code = 0;
    if (o->worker) { /* N workers for a remote master; this process only waits for them */
        pid_t *pids = fork_workers(o, n, o->master_host, (int)o->master_port, lua_dir, &child_code);
        if (!pids) return child_code;
        signal(SIGINT, SIG_IGN); /* the workers end through their master */
        int code = 0;
        for (long i = 0; i < n; i++) {
            int st = 0;
            if (pids[i] > 0 && waitpid(pids[i], &st, 0) > 0 && WIFEXITED(st) && WEXITSTATUS(st))
                code = WEXITSTATUS(st);
        }
        cc_free(pids);
        return code;
    }
    /* all in one: a master on a local port and N workers under it */
    int port = free_local_port();
    if (!port) {
        fprintf(stderr, "cicada: no free local port for the master of --processes\n");
        return 1;
    }
    pid_t *pids = fork_workers(o, n, "127.0.0.1", port, lua_dir, &child_code);
    if (!pids) return child_code;
    struct cc_options m = *o;
    m.master = true;
    m.processes = 0;
    m.master_bind_host = (char *)"127.0.0.1";
    m.master_bind_port = port;
    m.expect_workers = n;
    int code = run(&m, lua_dir);
    reap_workers(pids, n, 10);
    cc_free(pids);
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
    v->rate = r->rate;
    v->agg = &r->agg;
    v->history = r->history;
    v->history_n = r->history_n;
    v->locustfile = r->o->locustfile;
    v->distributed = r->is_master;
    v->workers = r->master ? cc_dist_master_nodes(r->master, &v->nworkers) : NULL;
    if (!r->master) v->nworkers = 0;
}

uint32_t cc_runner_class_users(const struct cc_runner *r, uint32_t cls)
{
    if (r->master) {
        uint32_t *per = cc_xcalloc(r->nclasses + 1, sizeof(uint32_t));
        master_users(r, per, true);
        uint32_t n = cls < r->nclasses ? per[cls] : 0;
        cc_free(per);
        return n;
    }
    uint32_t n = 0;
    for (unsigned w = 0; w < r->nworkers; w++)
        n += r->reported[w * r->nclasses + cls];
    return n;
}

lua_State *cc_runner_lua(struct cc_runner *r)
{
    return r->vm.L;
}

int cc_runner_select_classes(struct cc_runner *r, const bool *picked)
{
    /* While the script loads the view says "ready": the pick is kept, the start refused. */
    if (r->state != ST_LOADING && r->state != ST_READY && r->state != ST_STOPPED) return -1;
    if (!r->picked) r->picked = cc_xcalloc(r->nclasses + 1, sizeof(*r->picked));
    memcpy(r->picked, picked, r->nclasses * sizeof(*r->picked));
    return 0;
}
