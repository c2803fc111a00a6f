/* SPDX-License-Identifier: MIT */
/*
 * dist/master.h: the master side of Locust's distributed protocol, over a ZeroMQ ROUTER.
 *
 * The master keeps a table of workers (cicada's, or Locust's own from 2.12 on): it acks their
 * client_ready with a stable index, answers heartbeats (to workers that expect it), marks a
 * worker missing when its liveness counter (reset to heartbeat_liveness at each heartbeat, one
 * less every heartbeat_interval_s) goes below 0, and forgets it at heartbeat_dead. It decides
 * every user: a test is a user count, a spawn rate and the user classes (weight or
 * fixed_count); in iterations of max(1, floor(rate)) users every that many / rate seconds it
 * assigns users to classes and workers (src/runner/dispatch.c, over the workers ordered so
 * that consecutive users go to different hosts first), and sends each worker its absolute
 * per-class counts in a `spawn` message. Ramping down removes the most recently added users
 * first. When workers join or leave during a test the users are redistributed over the
 * workers there are, as Locust does.
 *
 * Statistics from workers (deltas) become shards (stats_wire.h) and are merged into the
 * aggregate given in the options, or handed to on_report, or both.
 *
 * The runner's side of the contract:
 *   - Callbacks run only from the loop, never inside a call the runner made into this module.
 *     Any callback may be NULL. From inside a callback the runner may call every function here.
 *   - A struct cc_dist_node pointer stays valid until on_worker_gone for it has returned (or the
 *     master is closed); its contents change as messages arrive.
 *   - Starting a new test does not touch the aggregate: the runner resets its statistics itself
 *     (Locust clears them when a test starts from ready or stopped).
 */
#ifndef CC_DIST_MASTER_H
#define CC_DIST_MASTER_H

#include "dist/msg.h"
#include "dist/zmq_uv.h"
#include "stats/stats.h"

#include <uv.h>

struct cc_dist_master;

enum cc_dist_node_state {
    CC_DN_READY,
    CC_DN_SPAWNING,
    CC_DN_RUNNING,
    CC_DN_CLEANUP,
    CC_DN_STOPPING,
    CC_DN_STOPPED, /* sent client_stopped; ready again after its next client_ready */
    CC_DN_MISSING, /* no heartbeat for too long; heals with the next one */
};

/* Locust's name of a worker state ("ready", "missing"...). */
const char *cc_dist_node_state_name(enum cc_dist_node_state s);

/* A worker as the master knows it. */
struct cc_dist_node {
    const char *id;      /* its client id (ZeroMQ identity) */
    const char *host;    /* the id up to its first '_' */
    uint64_t index;      /* stable 0-based index, kept if the worker comes back */
    const char *version; /* from client_ready; NULL for -1 */
    bool cicada;         /* a cicada worker (its heartbeats say so) */
    enum cc_dist_node_state state;
    int heartbeat; /* liveness counter */
    double cpu;    /* percent, from its last heartbeat */
    int64_t memory;
    const uint32_t *users;    /* [test classes]: users it reports running */
    uint64_t user_count;      /* their total, as it reports it */
    const uint32_t *assigned; /* [test classes]: users the master gave it */
};

/* One user class of a test. */
struct cc_dist_class {
    const char *name;
    double weight;
    uint32_t fixed_count; /* 0: weighted */
};

/* A test, as the runner starts it (or changes the one that runs). */
struct cc_dist_test {
    uint64_t users;
    double rate; /* users per second, above 0 */
    const struct cc_dist_class *classes;
    size_t nclasses;
    const char *host; /* NULL: None */
    double stop_timeout;
    bool has_stop_timeout;
    const void *options; /* parsed_options: one packed msgpack map (cc_dmsg_pack_options) */
    size_t options_len;
};

enum cc_dist_gone_reason {
    CC_DIST_GONE_QUIT, /* it said quit */
    CC_DIST_GONE_DEAD, /* missing for too long */
};

struct cc_dist_master_opts {
    const char *bind_host;         /* "*" */
    int bind_port;                 /* 5557; 0: any free port (see cc_dist_master_port()) */
    double heartbeat_interval_s;   /* 1 */
    int heartbeat_liveness;        /* 3 */
    int heartbeat_dead;            /* -60 */
    unsigned expect_workers;       /* 0: on_expected_workers is not called */
    bool rebalance;                /* --enable-rebalancing: a missing worker's users go elsewhere */
    double report_wait_s;          /* 1: after the last iteration, wait for the workers' counts */
    double quit_wait_s;            /* 0.5: after quit, wait for the workers' last reports */
    double stop_wait_extra_s;      /* 60: after stop_timeout, stop waiting for client_stopped */
    int linger_ms;                 /* 500 */
    struct cc_agg *agg;            /* reports are merged here when not NULL */
    const struct cc_zcurve *curve; /* NULL: no encryption */
};

void cc_dist_master_opts_init(struct cc_dist_master_opts *o);

struct cc_dist_master_cbs {
    /* A worker sent client_ready: new, back after a stop, or reconnected. */
    void (*on_worker_ready)(struct cc_dist_master *m, const struct cc_dist_node *n, void *data);
    /* expect_workers workers are ready (called once). */
    void (*on_expected_workers)(struct cc_dist_master *m, unsigned ready, void *data);
    void (*on_worker_missing)(struct cc_dist_master *m, const struct cc_dist_node *n, void *data);
    /* A worker left the table; |n| is freed when this returns. */
    void (*on_worker_gone)(struct cc_dist_master *m, const struct cc_dist_node *n,
                           enum cc_dist_gone_reason why, void *data);
    /* The ramp is done and the workers reported their counts (or report_wait_s passed). */
    void (*on_spawning_complete)(struct cc_dist_master *m, uint64_t user_count, void *data);
    /*
     * Statistics or an exception arrived as a shard (already merged into opts.agg when set);
     * |n| is NULL for a worker not in the table. |delta| is valid during the call.
     */
    void (*on_report)(struct cc_dist_master *m, const struct cc_dist_node *n,
                      const struct cc_shard *delta, void *data);
    /* Every worker stopped after cc_dist_master_stop() (or the wait ran out). */
    void (*on_stopped)(struct cc_dist_master *m, void *data);
    /* During a test the last worker quit or went missing (Locust stops the test then). */
    void (*on_no_workers)(struct cc_dist_master *m, void *data);
    /* Messages this module does not handle: custom types, logs. |n| may be NULL. */
    void (*on_message)(struct cc_dist_master *m, const struct cc_dist_node *n,
                       const struct cc_dmsg *msg, void *data);
    /* The master is freed (after cc_dist_master_close() or the end of a quit). */
    void (*on_closed)(void *data);
};

/*
 * Binds the master's ROUTER and starts listening. |o| is copied (not opts.agg, which the runner
 * keeps alive); |cbs| must outlive the master. Returns 0 and *|out|, or CC_ECONFIG, or -errno
 * (-EADDRINUSE: the port is taken), with a message in *|err| (caller frees) when |err| is set.
 */
int cc_dist_master_new(uv_loop_t *loop, const struct cc_dist_master_opts *o,
                       const struct cc_dist_master_cbs *cbs, void *data,
                       struct cc_dist_master **out, char **err);

/* The port the master listens on. */
int cc_dist_master_port(const struct cc_dist_master *m);

/*
 * Starts a test, or changes the one that runs (a new user count, rate, classes). Returns 0, or:
 *   -ENOTCONN   no worker is ready
 *   CC_ECONFIG  no class, or a rate not above 0
 *   CC_ECLOSED  the master is closing
 */
int cc_dist_master_start(struct cc_dist_master *m, const struct cc_dist_test *t);

/* Stops the test: `stop` to every worker; on_stopped once they all stopped. */
void cc_dist_master_stop(struct cc_dist_master *m);

/* `quit` to every worker, quit_wait_s for their last reports, then closes (on_closed). */
void cc_dist_master_quit(struct cc_dist_master *m);

/* Closes at once. No callback runs after this returns except on_closed. Idempotent. */
void cc_dist_master_close(struct cc_dist_master *m);

/* Locust's name of the master's state: "ready", "spawning", "running", "stopping", "stopped". */
const char *cc_dist_master_state(const struct cc_dist_master *m);

/* The workers in the table (the array is valid until the loop runs again). */
const struct cc_dist_node *const *cc_dist_master_nodes(const struct cc_dist_master *m, size_t *n);

/* Workers ready, spawning or running (Locust's worker_count). */
size_t cc_dist_master_worker_count(const struct cc_dist_master *m);

/* Users the workers report running. */
uint64_t cc_dist_master_user_count(const struct cc_dist_master *m);

/* Users the master has assigned. */
uint64_t cc_dist_master_assigned(const struct cc_dist_master *m);

/*
 * Sends a custom message to the worker |id|, or to every worker when |id| is NULL. |data| is
 * one packed msgpack object (NULL for nil). Returns 0, -ENOENT (no such worker), or a code
 * from cc_zsock_send().
 */
int cc_dist_master_send(struct cc_dist_master *m, const char *id, const char *type,
                        const void *data, size_t len);

#endif
