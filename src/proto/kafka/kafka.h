/* SPDX-License-Identifier: MIT */
/*
 * kafka.h: the Kafka client's internals, shared by its files.
 *
 *   struct kafka_vm        per vm: producers, consumers, free lists
 *   struct kafka_producer  one librdkafka producer per vm and configuration, shared by every
 *                          user of the thread (as an application shares one); topics cached
 *   struct kafka_op        one produce call, from the call to its delivery report
 *   struct kafka_consumer  one librdkafka consumer per consumer object a user makes
 *   struct kafka_wait      a user waiting in consumer:poll()
 *
 * librdkafka runs its own threads; the loop only hears from it through an eventfd that
 * librdkafka writes when one of our queues goes from empty to non-empty (kafka_wake_on_queue,
 * which also wakes the loop once for what was queued before). A uv_poll watches it: the
 * producer's queue (delivery reports, errors) is drained whole each time, the consumer's is read
 * while users wait on it (messages left in it are taken by the next poll() directly, without
 * waiting).
 *
 * A produce that finds librdkafka's queue full (RD_KAFKA_RESP_ERR__QUEUE_FULL) parks its user
 * in the producer's blocked list with a copy of the message; delivery reports free space, and
 * after each batch of them the blocked messages are offered again in order. Nothing polls or
 * spins while the queue is full.
 *
 * Destroying a librdkafka handle blocks (its threads are joined, a consumer leaves its group),
 * so it runs on libuv's thread pool; the loop stays alive until it is done.
 */
#ifndef CC_KAFKA_H
#define CC_KAFKA_H

#include "lua/vm.h"

#include <librdkafka/rdkafka.h>

/* The header a produced message carries its send time in: 8 bytes, big-endian nanoseconds
 * since the Unix epoch (wall clock, so that another process or host can read it). */
#define KAFKA_STAMP_HEADER "cicada-ts"
#define KAFKA_STAMP_LEN    8

/* ---- stamps (stamp.c): pure functions, unit-tested and fuzzed ----------------------------- */

void kafka_stamp_encode(uint64_t ns, unsigned char out[KAFKA_STAMP_LEN]);
/* Reads a stamp header's value; false when it is not one. */
bool kafka_stamp_decode(const void *value, size_t len, uint64_t *ns);
/* The end-to-end latency of a message received at |now_ns| (wall clock) carrying |hdrs|: true
 * and *|ns| (0 when the sender's clock is ahead) if the message has a stamp; the last stamp
 * header counts. */
bool kafka_stamp_latency(rd_kafka_headers_t *hdrs, uint64_t now_ns, uint64_t *ns);
/* Wall-clock nanoseconds since the epoch. */
uint64_t kafka_wall_ns(void);

/* Has librdkafka write 8 bytes to the eventfd |efd| when |q| gets something to serve. It does
 * so only when the queue goes from empty to non-empty, and its threads (a broker's first failed
 * connection, say) may have queued an event before this call: |efd| is also written once now,
 * or that event, and every one after it, would wait unseen until the queue was read. */
void kafka_wake_on_queue(rd_kafka_queue_t *q, int efd);

/* ---- producers and consumers -------------------------------------------------------------- */

struct kafka_vm;
struct kafka_producer;
struct kafka_consumer;

enum kafka_op_state { KOP_BLOCKED, KOP_INFLIGHT, KOP_DONE };

struct kafka_op {
    struct cc_waiter waiter; /* first: the fiber's view */
    struct cc_fiber *fiber;  /* NULL once detached (the fiber was killed) */
    struct kafka_producer *p;
    struct kafka_op *prev, *next; /* in the producer's blocked or in-flight list */
    rd_kafka_topic_t *rkt;
    const struct cc_ikey *key;
    int32_t partition;
    uint8_t state; /* enum kafka_op_state */
    uint64_t t0;   /* monotonic ns: the call */
    /* a blocked message's copy, and its headers (owned until librdkafka takes them) */
    char *buf;
    size_t cap, klen, vlen;
    bool has_key;
    rd_kafka_headers_t *hdrs;
    /* the delivery report */
    rd_kafka_resp_err_t err;
    int32_t dr_partition;
    int64_t dr_offset;
    struct kafka_op *done_next; /* in a batch of reports being completed */
};

struct kafka_topic {
    char *name;
    rd_kafka_topic_t *rkt;
    const struct cc_ikey *key; /* "<topic>", the produce entry */
};

struct kafka_producer {
    struct kafka_vm *kv;
    struct kafka_producer *next;
    char *sig; /* bootstrap servers and configuration: users with the same share it */
    rd_kafka_t *rk;
    rd_kafka_queue_t *q;
    int efd;
    uv_poll_t poll;
    struct kafka_topic *topics;
    size_t ntopics, topics_cap;
    struct kafka_op *blocked, *blocked_tail;
    struct kafka_op *inflight; /* every message librdkafka holds for us */
    uint64_t queue_full_waits; /* produces that waited for space */
    uint64_t last_error_ns;    /* rate limit of error logs */
    bool closed;
};

/* A user waiting in consumer:poll(). */
struct kafka_wait {
    struct cc_waiter waiter;
    struct cc_fiber *fiber;
    struct kafka_consumer *c;
    struct kafka_wait *next;
    uint64_t deadline_ns; /* monotonic */
};

struct kafka_consumer {
    struct kafka_vm *kv;
    struct kafka_consumer *prev, *next;
    rd_kafka_t *rk;
    rd_kafka_queue_t *q;
    int efd;
    uv_poll_t poll;
    uv_timer_t timer; /* the earliest waiter's deadline */
    struct kafka_wait *waiters, *waiters_tail;
    bool stamps;      /* record the end-to-end latency of stamped messages */
    char *last_topic; /* the topic whose keys are cached below */
    const struct cc_ikey *e2e_key, *err_key;
    uint8_t handles; /* handles not yet closed */
    bool closed;     /* closing or closed: the handle is being destroyed */
    bool lua_gone;
    bool destroyed; /* the destroy work is done */
};

struct kafka_vm {
    struct cc_vm *vm;
    struct kafka_producer *producers;
    struct kafka_consumer *consumers;
    struct kafka_op *free_ops;
    struct kafka_wait *free_waits;
    uint32_t pending; /* handles closing and destroys running */
    bool closing;
};

struct kafka_vm *kafka_vm_get(struct cc_vm *vm);

/* A librdkafka configuration from |pairs| (name, value, name, value..., NULL) on top of the
 * bootstrap servers; NULL with a sentence in |err| when a setting is refused. */
rd_kafka_conf_t *kafka_conf_new(const char *bootstrap, const char *const *pairs, char *err,
                                size_t errlen);

/* The vm's producer for |sig|, made from |conf| (consumed) the first time. */
struct kafka_producer *kafka_producer_get(struct kafka_vm *kv, const char *sig,
                                          rd_kafka_conf_t *conf, char *err, size_t errlen);
/* The cached topic entry of |name|. */
struct kafka_topic *kafka_topic_get(struct kafka_producer *p, const char *name);

struct kafka_op *kafka_op_new(struct kafka_vm *kv);
/* Hands |op| (message bytes given) to librdkafka, or parks it when the queue is full. Returns
 * 0 when it is on its way or parked (its delivery report resumes op->fiber), or the error
 * librdkafka refused it with (the caller releases the op then). */
rd_kafka_resp_err_t kafka_produce(struct kafka_producer *p, struct kafka_op *op, const void *key,
                                  size_t klen, bool has_key, const void *value, size_t vlen);
void kafka_op_cancel(struct cc_waiter *w);
/* Returns |op| to the free list (freeing its headers if it still owns them). */
void kafka_op_release(struct kafka_vm *kv, struct kafka_op *op);

/* A consumer from |conf| (consumed); NULL with a sentence in |err|. */
struct kafka_consumer *kafka_consumer_new(struct kafka_vm *kv, rd_kafka_conf_t *conf, char *err,
                                          size_t errlen);
/* Starts closing |c| (waiters get an error); |leave| lets it leave its group properly. */
void kafka_consumer_close(struct kafka_consumer *c, bool leave);
/* Lua let go of |c|. */
void kafka_consumer_release(struct kafka_consumer *c);
/* A message at once, if one is in the queue and nobody waits before (NULL: none). */
rd_kafka_message_t *kafka_consumer_take(struct kafka_consumer *c);
/* Queues fiber |f| for the next message, until |deadline_ns| (monotonic); the caller waits
 * on the returned waiter. */
struct kafka_wait *kafka_wait_new(struct kafka_consumer *c, struct cc_fiber *f,
                                  uint64_t deadline_ns);
void kafka_wait_cancel(struct cc_waiter *w);
/* Records the end-to-end latency of |m| if it is stamped. */
void kafka_consumer_note(struct kafka_consumer *c, struct cc_fiber *f, const rd_kafka_message_t *m);

/* The Lua binding's completions (kafka_lua.c). */
int kafka_lua_push_delivery(lua_State *L, const struct kafka_op *op);
/* Pushes a message (or its error) and returns how many values; destroys |m|. */
int kafka_lua_push_message(lua_State *L, struct kafka_consumer *c, rd_kafka_message_t *m);

/* cc_vm_record for a completion that runs from the loop, on behalf of fiber |f|. */
void kafka_record_for(struct cc_vm *vm, struct cc_fiber *f, const struct cc_ikey *key, uint64_t ns,
                      uint64_t length, const char *err);

#endif
