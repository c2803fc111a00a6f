/* SPDX-License-Identifier: MIT */
/*
 * mq.h: control messages between threads.
 *
 * A multi-producer queue drained by one consumer loop: producers append under a mutex and wake
 * the consumer's uv_async; the consumer swaps the whole batch out under the mutex and handles it
 * without holding it. Only control traffic goes through here (spawn and stop orders, stats
 * shards once a second, user counts), never anything per request.
 */
#ifndef CC_MQ_H
#define CC_MQ_H

#include "core/common.h"

#include <uv.h>

enum cc_msg_type {
    /* control -> worker */
    CC_MSG_SPAWN,      /* a: class, b: how many users to add */
    CC_MSG_STOP_USERS, /* a: class, b: how many users to remove, most recent first */
    CC_MSG_STOP_ALL,   /* stop every user; d: seconds they may finish their task first */
    CC_MSG_KILL_ALL,   /* stop-timeout ran out: kill every remaining user */
    CC_MSG_SWAP,       /* hand over the active stats shard */
    CC_MSG_SHARD_BACK, /* p: the shard, merged and cleared */
    CC_MSG_SHARED,     /* p: cicada.shared serialised (owned by the message) */
    CC_MSG_ARRIVAL,    /* a: class, d: the open-model iterations per second this thread starts */
    CC_MSG_SET_HOST,   /* p: the host every user class targets now (owned by the message) */
    CC_MSG_QUIT,       /* close the Lua state and end the thread */
    /* worker -> control */
    CC_MSG_READY,        /* the worker loaded the script (a: 0) or failed (a: 1) */
    CC_MSG_SHARD,        /* p: the shard the worker recorded into since the last swap */
    CC_MSG_USERS,        /* p: uint32_t counts per class (owned by the message) */
    CC_MSG_STOP_TEST,    /* a user raised StopTest */
    CC_MSG_USERS_DONE,   /* the worker has no users left after STOP_ALL/KILL_ALL */
    CC_MSG_LISTENER_ERR, /* an event listener raised an error */
};

struct cc_msg {
    enum cc_msg_type type;
    unsigned from; /* worker index for worker -> control */
    int64_t a, b;
    double d;
    void *p;
};

struct cc_mq {
    uv_mutex_t lock;
    uv_async_t *wake; /* the consumer's async handle */
    struct cc_msg *items;
    size_t n, cap;
};

void cc_mq_init(struct cc_mq *q, uv_async_t *wake);
void cc_mq_release(struct cc_mq *q);
/* Appends a copy of |m| and wakes the consumer. Any thread. */
void cc_mq_push(struct cc_mq *q, const struct cc_msg *m);
/*
 * Takes every queued message: *|out| (capacity *|cap|) is swapped with the queue's buffer and
 * the count returned. Consumer thread only.
 */
size_t cc_mq_take(struct cc_mq *q, struct cc_msg **out, size_t *cap);

#endif
