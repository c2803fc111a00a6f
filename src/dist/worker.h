/* SPDX-License-Identifier: MIT */
/*
 * dist/worker.h: the worker side of Locust's distributed protocol, over a ZeroMQ DEALER.
 *
 * A worker joins a master (cicada's or Locust's, 2.12 to the current one): it sends
 * client_ready until the master acks (every ready_retry_s, re-creating its socket each time, so
 * a worker started before its master joins it when it appears), then heartbeats every second
 * with its state, CPU and memory, and reports statistics every stats_interval_s as deltas.
 * The master tells it, in `spawn` messages, how many users of each class to run; the runner
 * that embeds this module starts and stops them and says when it is done.
 *
 * The runner's side of the contract:
 *   - Callbacks (struct cc_dist_worker_cbs) run only from the loop, never inside a call the
 *     runner made into this module. Any callback may be NULL. From inside a callback the runner
 *     may call every function here, cc_dist_worker_close() included.
 *   - The runner records into the delta aggregate, cc_dist_worker_delta(): it merges its
 *     threads' shards there (cc_agg_merge) whenever it likes. Just before each report the
 *     worker calls take_stats, so the runner can add what it still holds; the worker then sends
 *     the delta (its exceptions as `exception` messages, the rest as one `stats` message) and
 *     resets it. The worker opens a new interval on it every second, which is what the
 *     per-second counts of the report are made from.
 *   - After on_spawn the runner makes the counts true and calls
 *     cc_dist_worker_spawning_complete(); after on_stop it stops every user and calls
 *     cc_dist_worker_stopped(); after on_quit or on_master_lost it stops its users and calls
 *     cc_dist_worker_close(). It keeps cc_dist_worker_set_users() current at all times.
 *   - No on_spawn arrives between on_stop and cc_dist_worker_stopped().
 *
 * Between cicada nodes the ack carries the master's version, and the worker then adds its exact
 * histograms to the reports and sends repeated exceptions as one message with a count; towards
 * a Locust master it sends exactly what a Locust worker does.
 */
#ifndef CC_DIST_WORKER_H
#define CC_DIST_WORKER_H

#include "dist/msg.h"
#include "dist/zmq_uv.h"
#include "stats/stats.h"

#include <uv.h>

struct cc_dist_worker;

enum cc_dist_hist_mode {
    CC_DIST_HIST_AUTO,   /* exact histograms when the master is cicada */
    CC_DIST_HIST_ALWAYS, /* always (a Locust master ignores the extra field) */
    CC_DIST_HIST_NEVER,
};

struct cc_dist_worker_opts {
    const char *master_host; /* "127.0.0.1" */
    int master_port;         /* 5557 */
    const char *client_id;   /* NULL: "<hostname>_<32 hex digits>", as Locust's */
    const char *version;     /* client_ready's version; NULL sends -1 (no version check) */
    size_t nclasses;         /* the script's user classes, for user_classes_count */
    const char *const *class_names;
    unsigned cpu_threads;        /* process CPU is divided by this for current_cpu_usage; 0: 1 */
    double heartbeat_interval_s; /* 1 */
    double master_timeout_s;     /* 60: no message from a master that sends heartbeats; 0: never */
    double ready_retry_s;        /* 5: client_ready again when no ack came */
    unsigned ready_retries;      /* 60: then on_master_lost; 0: retry forever */
    double stats_interval_s;     /* 3 */
    unsigned max_exception_msgs; /* 100: per distinct exception and report, towards Locust */
    int linger_ms;               /* 1000: how long the last messages get at close */
    enum cc_dist_hist_mode hist;
    const struct cc_zcurve *curve; /* NULL: no encryption */
};

/* Fills |o| with the defaults above (master_host, master_port included). */
void cc_dist_worker_opts_init(struct cc_dist_worker_opts *o);

/* What a `spawn` message asks for. Everything is valid during the callback only. */
struct cc_dist_spawn {
    double timestamp;
    bool new_test; /* the first spawn since ready: Locust clears its stats, fires test_start */
    const uint32_t *counts; /* [opts.nclasses]: absolute target users per class for this worker */
    const char *const *unknown; /* class names the master sent that the script does not have */
    size_t nunknown;
    const struct cc_dcounts *classes; /* the counts as the master sent them */
    const char *host;                 /* NULL: the master gave none */
    double stop_timeout;
    bool has_stop_timeout;
    const char *const *tags; /* from parsed_options, when the master sent a list */
    size_t ntags;
    bool has_tags;
    const char *const *exclude_tags;
    size_t nexclude_tags;
    bool has_exclude_tags;
    const msgpack_object *parsed_options; /* the master's options (a map), or NULL */
};

struct cc_dist_worker_cbs {
    /* The master acked client_ready; |index| is its stable 0-based worker index (-1: none). */
    void (*on_ready)(struct cc_dist_worker *w, int64_t index, void *data);
    /* Run the counts in |s|: start or stop users now, then cc_dist_worker_spawning_complete(). */
    void (*on_spawn)(struct cc_dist_worker *w, const struct cc_dist_spawn *s, void *data);
    /* The master says the whole ramp is done (masters 2.29+ and cicada): spawning_complete. */
    void (*on_all_spawned)(struct cc_dist_worker *w, uint64_t user_count, void *data);
    /* Stop every user (within stop_timeout), then cc_dist_worker_stopped(). */
    void (*on_stop)(struct cc_dist_worker *w, void *data);
    /* The master ends the run: stop the users, then cc_dist_worker_close(w, true). */
    void (*on_quit)(struct cc_dist_worker *w, void *data);
    /*
     * The master is gone: no message for master_timeout_s from a master that heartbeats, or no
     * ack after ready_retries tries, or sends failing for good. Stop the users, then
     * cc_dist_worker_close(w, false).
     */
    void (*on_master_lost)(struct cc_dist_worker *w, const char *why, void *data);
    /* A report is due: add to |delta| (== cc_dist_worker_delta(w)) what is not there yet. */
    void (*take_stats)(struct cc_dist_worker *w, struct cc_agg *delta, void *data);
    /* A message this module does not handle (custom types, update_user_class, locustfile). */
    void (*on_message)(struct cc_dist_worker *w, const struct cc_dmsg *m, void *data);
    /* The worker is freed (after cc_dist_worker_close()). */
    void (*on_closed)(void *data);
};

/*
 * Creates a worker on |loop| and starts joining the master (the first client_ready goes out at
 * once). |o| and its strings are copied; |cbs| must outlive the worker. Returns 0 and *|out|,
 * or CC_ECONFIG (bad options, a CURVE key) or -errno from libzmq.
 */
int cc_dist_worker_new(uv_loop_t *loop, const struct cc_dist_worker_opts *o,
                       const struct cc_dist_worker_cbs *cbs, void *data,
                       struct cc_dist_worker **out);

/* The client id (ZeroMQ identity and node_id). */
const char *cc_dist_worker_id(const struct cc_dist_worker *w);
/* The index the master gave in its ack, or -1. */
int64_t cc_dist_worker_index(const struct cc_dist_worker *w);
/* Locust's state name this worker reports: "ready", "spawning", "running", "stopping". */
const char *cc_dist_worker_state(const struct cc_dist_worker *w);
/* True once an ack said the master is cicada. */
bool cc_dist_worker_master_is_cicada(const struct cc_dist_worker *w);

/* The statistics recorded since the last report (see the contract above). */
struct cc_agg *cc_dist_worker_delta(struct cc_dist_worker *w);

/* Users running now, per class ([opts.nclasses], copied). */
void cc_dist_worker_set_users(struct cc_dist_worker *w, const uint32_t *counts);

/* The counts of the last spawn are running: sends spawning_complete, state "running". */
void cc_dist_worker_spawning_complete(struct cc_dist_worker *w);

/*
 * Every user stopped after on_stop: sends a last report, client_stopped and client_ready again
 * (the master removes the worker until it is ready again, as Locust's does).
 */
void cc_dist_worker_stopped(struct cc_dist_worker *w);

/* Sends the report now instead of at the next interval. */
void cc_dist_worker_report(struct cc_dist_worker *w);

/*
 * Sends a custom message: |data| is one packed msgpack object (|len| bytes; NULL for nil).
 * Returns 0 or a negative code from cc_zsock_send().
 */
int cc_dist_worker_send(struct cc_dist_worker *w, const char *type, const void *data, size_t len);

/*
 * Closes the worker. With |quit| (after on_quit, or when the worker itself ends the run) the
 * last report and a `quit` message go out first. No callback runs after this returns except
 * on_closed, from the loop, once everything is freed. Idempotent.
 */
void cc_dist_worker_close(struct cc_dist_worker *w, bool quit);

#endif
