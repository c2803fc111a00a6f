/* SPDX-License-Identifier: MIT */
/*
 * runner.h: a local run, driven from the control thread: load the script, start the worker
 * threads, ramp users up and down, merge statistics every second, report, and stop on run
 * time, StopTest or a signal.
 */
#ifndef CC_RUNNER_H
#define CC_RUNNER_H

#include "core/options.h"

#include "stats/stats.h"

#include <lua.h>

struct cc_runner;

/* Runs the test |o| describes and returns the process exit code. |lua_dir| holds cicada/. */
int cc_run(const struct cc_options *o, const char *lua_dir);

/* ---- driving a run (the web UI); control thread only ----------------------------------- */

/*
 * Starts a test with |users| users at |rate| per second (against |host| when not NULL, for
 * |run_time| seconds when above 0), or, while one runs, ramps it to the new count. A test
 * started after a stop begins with clean statistics. Returns 0, or -1 with a reason in |err|
 * (caller frees) when the run is starting, stopping or over.
 */
int cc_runner_swarm(struct cc_runner *r, long users, double rate, const char *host, double run_time,
                    char **err);
/* Stops the users; the run then waits for another start. */
void cc_runner_stop(struct cc_runner *r);
/* Ends the run: stops the users if needed, writes the results, exits. */
void cc_runner_quit(struct cc_runner *r);
/* Zeroes the statistics (and fires reset_stats). */
void cc_runner_reset_stats(struct cc_runner *r);
/*
 * The classes the next test runs: |picked| (copied) has one flag per class. Only while no
 * test runs (loading, ready or stopped); returns 0, or -1 otherwise.
 */
int cc_runner_select_classes(struct cc_runner *r, const bool *picked);

/* One point of the charts, taken every interval (about a second) of the current test. */
struct cc_history_point {
    double time_s; /* epoch */
    uint32_t users;
    double rps;        /* current requests/s (the last 10 s) */
    double fail_per_s; /* current failures/s */
    double p50_ms;     /* current median and 95th percentile (the last 10 s) */
    double p95_ms;
    double avg_ms; /* average over the test so far */
};

struct cc_dist_node;

struct cc_runner_view {
    const char *state;   /* Locust's names: "ready", "spawning", "running", "stopping", "stopped" */
    uint32_t user_count; /* users running now */
    size_t target;       /* users the test ramps to */
    uint32_t nclasses;
    const char *const *class_names;
    unsigned threads;
    const char *host;
    double start_s, end_s; /* of the current (or last) test; end 0 while it runs */
    double run_time;
    double rate; /* the spawn rate of the current (or last) ramp */
    const struct cc_agg *agg;
    const struct cc_history_point *history;
    size_t history_n;
    const char *locustfile;
    /* a distributed master's workers (src/dist/master.h), NULL otherwise */
    const struct cc_dist_node *const *workers;
    size_t nworkers;
    bool distributed; /* this process is a distributed master */
};

/* A snapshot of the run, valid until the loop runs again. */
void cc_runner_view(const struct cc_runner *r, struct cc_runner_view *v);
/* Users of class |cls| running now. */
uint32_t cc_runner_class_users(const struct cc_runner *r, uint32_t cls);
/* The control thread's Lua state (task ratios, class details). */
lua_State *cc_runner_lua(struct cc_runner *r);

#endif
