/* SPDX-License-Identifier: MIT */
/*
 * worker.h: a worker thread: its own libuv loop, Lua state (vm) and stats shards. It runs the
 * users the control thread assigns to it and talks to the control thread only through
 * messages (core/mq.h).
 */
#ifndef CC_WORKER_H
#define CC_WORKER_H

#include "core/mq.h"
#include "lua/vm.h"
#include "stats/stats.h"

struct cc_worker {
    unsigned index;
    struct cc_mq *to_control; /* the control thread's inbox */
    struct cc_vm_opts opts;   /* strings borrowed from the runner, which outlives the thread */

    uv_thread_t thread;
    uv_loop_t loop;
    uv_async_t async;
    struct cc_mq inbox;
    uv_check_t report; /* sends user counts once per loop turn when they changed */

    struct cc_vm vm;
    struct cc_recorder rec;
    struct cc_shard shards[2];
    struct cc_shard *spare; /* NULL while the control thread holds it */

    uint64_t spawns_done; /* spawn orders carried out, acknowledged with the counts */
    bool counts_dirty;
    bool stopping_all; /* a STOP_ALL or KILL_ALL is in progress */
    bool loaded;       /* the script loaded in this thread */
    bool started;      /* the thread was created */
};

/* Starts the thread; it answers CC_MSG_READY once the script is loaded (or failed to load). */
void cc_worker_start(struct cc_worker *w);
/* Waits for the thread to end after CC_MSG_QUIT. */
void cc_worker_join(struct cc_worker *w);

#endif
