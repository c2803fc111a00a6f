/* SPDX-License-Identifier: MIT */
/* client.c: librdkafka producers and consumers on the worker's loop, woken through an eventfd. */
#include "proto/kafka/kafka.h"
#include "core/log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define LOG_MOD "cicada.kafka"

/* What librdkafka writes to the eventfd: eventfd(2) takes 8-byte counter increments. */
static const uint64_t event_one = 1;

static void producer_close(struct kafka_producer *p);

/* ---- the vm's state --------------------------------------------------------------------- */

static void op_free(struct kafka_op *op)
{
    if (op->hdrs) rd_kafka_headers_destroy(op->hdrs);
    cc_free(op->buf);
    cc_free(op);
}

static void maybe_free_vm(struct kafka_vm *kv)
{
    if (!kv->closing || kv->pending) return;
    while (kv->free_ops) {
        struct kafka_op *op = kv->free_ops;
        kv->free_ops = op->next;
        op_free(op);
    }
    while (kv->free_waits) {
        struct kafka_wait *w = kv->free_waits;
        kv->free_waits = w->next;
        cc_free(w);
    }
    cc_free(kv);
}

static void vm_close(struct cc_vm *vm, void *state)
{
    struct kafka_vm *kv = state;
    kv->closing = true;
    for (struct kafka_producer *p = kv->producers; p; p = p->next)
        producer_close(p);
    for (struct kafka_consumer *c = kv->consumers; c; c = c->next)
        kafka_consumer_close(c, false); /* leaving the group could block on a broker that is down */
    cc_vm_ext_set(vm, CC_EXT_KAFKA, NULL, NULL);
    maybe_free_vm(kv);
}

struct kafka_vm *kafka_vm_get(struct cc_vm *vm)
{
    struct kafka_vm *kv = cc_vm_ext_get(vm, CC_EXT_KAFKA);
    if (kv) return kv;
    kv = cc_xcalloc(1, sizeof(*kv));
    kv->vm = vm;
    cc_vm_ext_set(vm, CC_EXT_KAFKA, kv, vm_close);
    return kv;
}

/*
 * cc_vm_record measures a request against the intended start of the fiber that made it (open
 * model, pacing), which it finds in vm->current. Completions run from the loop, where no fiber
 * is current, so the fiber that made the call stands in for the length of the call.
 */
void kafka_record_for(struct cc_vm *vm, struct cc_fiber *f, const struct cc_ikey *key, uint64_t ns,
                      uint64_t length, const char *err)
{
    if (!vm->rec || !key) return;
    struct cc_fiber *cur = vm->current;
    if (f) vm->current = f;
    cc_vm_record(vm, key, ns, length, err, err ? strlen(err) : 0);
    vm->current = cur;
}

/* ---- configuration ---------------------------------------------------------------------- */

/* librdkafka logs from its own threads; cc_log is safe from any thread. Connection trouble is
 * logged at level 3 over and over while a broker is down: it also arrives as an error event,
 * which is logged (rate-limited) instead. */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    cc_log(level <= 2 ? CC_LOG_WARNING : CC_LOG_DEBUG, LOG_MOD, "%s: %s", fac, buf);
}

rd_kafka_conf_t *kafka_conf_new(const char *bootstrap, const char *const *pairs, char *err,
                                size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char e[256];
    if (rd_kafka_conf_set(conf, "client.id", "cicada", e, sizeof(e)) != RD_KAFKA_CONF_OK ||
        (bootstrap && bootstrap[0] &&
         rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, e, sizeof(e)) !=
             RD_KAFKA_CONF_OK)) {
        snprintf(err, errlen, "%s", e);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    for (size_t i = 0; pairs && pairs[i] && pairs[i + 1]; i += 2) {
        if (rd_kafka_conf_set(conf, pairs[i], pairs[i + 1], e, sizeof(e)) != RD_KAFKA_CONF_OK) {
            snprintf(err, errlen, "%s", e);
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    rd_kafka_conf_set_log_cb(conf, log_cb);
    return conf;
}

static int event_fd(char *err, size_t errlen)
{
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) snprintf(err, errlen, "eventfd: %s", strerror(errno));
    return fd;
}

void kafka_wake_on_queue(rd_kafka_queue_t *q, int efd)
{
    rd_kafka_queue_io_event_enable(q, efd, &event_one, sizeof(event_one));
    if (write(efd, &event_one, sizeof(event_one)) < 0) {
        /* cannot fail: the counter is far from its limit */
    }
}

static void drain_fd(int fd)
{
    uint64_t v;
    while (read(fd, &v, sizeof(v)) == (ssize_t)sizeof(v)) {
    }
}

static void log_error_event(struct kafka_producer *p, rd_kafka_event_t *ev)
{
    uint64_t now = cc_now_ns();
    if (p->last_error_ns && now - p->last_error_ns < 5000000000ull) return;
    p->last_error_ns = now;
    cc_warn(LOG_MOD, "producer: %s", rd_kafka_event_error_string(ev));
}

/* ---- producing -------------------------------------------------------------------------- */

struct kafka_op *kafka_op_new(struct kafka_vm *kv)
{
    struct kafka_op *op = kv->free_ops;
    if (op) {
        kv->free_ops = op->next;
    } else {
        op = cc_xcalloc(1, sizeof(*op));
    }
    op->waiter.cancel = kafka_op_cancel;
    op->fiber = NULL;
    op->p = NULL;
    op->prev = op->next = op->done_next = NULL;
    op->rkt = NULL;
    op->key = NULL;
    op->partition = RD_KAFKA_PARTITION_UA;
    op->state = KOP_DONE;
    op->t0 = cc_now_ns();
    op->klen = op->vlen = 0;
    op->has_key = false;
    op->hdrs = NULL;
    op->err = RD_KAFKA_RESP_ERR_NO_ERROR;
    op->dr_partition = -1;
    op->dr_offset = -1;
    return op;
}

void kafka_op_release(struct kafka_vm *kv, struct kafka_op *op)
{
    if (op->hdrs) rd_kafka_headers_destroy(op->hdrs);
    op->hdrs = NULL;
    if (!kv || kv->closing) {
        op_free(op);
        return;
    }
    if (op->cap > 64 * 1024) { /* one huge message should not pin its copy forever */
        cc_free(op->buf);
        op->buf = NULL;
        op->cap = 0;
    }
    op->next = kv->free_ops;
    kv->free_ops = op;
}

static void list_add(struct kafka_op **head, struct kafka_op *op)
{
    op->prev = NULL;
    op->next = *head;
    if (*head) (*head)->prev = op;
    *head = op;
}

static void list_remove(struct kafka_op **head, struct kafka_op *op)
{
    if (op->prev)
        op->prev->next = op->next;
    else
        *head = op->next;
    if (op->next) op->next->prev = op->prev;
    op->prev = op->next = NULL;
}

static void blocked_remove(struct kafka_producer *p, struct kafka_op *op)
{
    if (p->blocked_tail == op) p->blocked_tail = op->prev;
    list_remove(&p->blocked, op);
}

static rd_kafka_resp_err_t try_produce(struct kafka_producer *p, struct kafka_op *op,
                                       const void *key, size_t klen, bool has_key,
                                       const void *value, size_t vlen)
{
    rd_kafka_resp_err_t err;
    /* the value is copied (F_COPY), the key always is: the Lua strings may go after */
    if (op->hdrs)
        err = rd_kafka_producev(p->rk, RD_KAFKA_V_RKT(op->rkt), RD_KAFKA_V_PARTITION(op->partition),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                RD_KAFKA_V_KEY(has_key ? key : NULL, has_key ? klen : 0),
                                RD_KAFKA_V_VALUE((void *)value, vlen), RD_KAFKA_V_HEADERS(op->hdrs),
                                RD_KAFKA_V_OPAQUE(op), RD_KAFKA_V_END);
    else
        err = rd_kafka_producev(p->rk, RD_KAFKA_V_RKT(op->rkt), RD_KAFKA_V_PARTITION(op->partition),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                RD_KAFKA_V_KEY(has_key ? key : NULL, has_key ? klen : 0),
                                RD_KAFKA_V_VALUE((void *)value, vlen), RD_KAFKA_V_OPAQUE(op),
                                RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        op->hdrs = NULL; /* librdkafka owns them now */
        op->state = KOP_INFLIGHT;
        list_add(&p->inflight, op);
    }
    return err;
}

rd_kafka_resp_err_t kafka_produce(struct kafka_producer *p, struct kafka_op *op, const void *key,
                                  size_t klen, bool has_key, const void *value, size_t vlen)
{
    op->p = p;
    op->klen = klen;
    op->vlen = vlen;
    op->has_key = has_key;
    /* behind messages that already wait for space, never ahead of them */
    if (!p->blocked) {
        rd_kafka_resp_err_t err = try_produce(p, op, key, klen, has_key, value, vlen);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) return err;
    }
    /* the queue is full: keep a copy and wait for delivery reports to free space */
    size_t need = klen + vlen + 1;
    if (need > op->cap) cc_grow((void **)&op->buf, &op->cap, need, 1);
    if (klen) memcpy(op->buf, key, klen);
    if (vlen) memcpy(op->buf + klen, value, vlen);
    op->state = KOP_BLOCKED;
    op->next = NULL;
    op->prev = p->blocked_tail;
    if (p->blocked_tail)
        p->blocked_tail->next = op;
    else
        p->blocked = op;
    p->blocked_tail = op;
    p->queue_full_waits++;
    return RD_KAFKA_RESP_ERR_NO_ERROR;
}

void kafka_op_cancel(struct cc_waiter *w)
{
    struct kafka_op *op = cc_container_of(w, struct kafka_op, waiter);
    op->fiber = NULL;
    if (op->state != KOP_BLOCKED) return; /* in librdkafka's hands: its report frees it */
    struct kafka_producer *p = op->p;
    blocked_remove(p, op);
    kafka_op_release(p->kv, op);
}

/* A delivery report (or a refusal of a blocked message) for |op|: the user resumes. */
static void complete(struct kafka_producer *p, struct kafka_op *op, uint64_t now)
{
    struct cc_fiber *f = op->fiber;
    op->state = KOP_DONE;
    if (!f) {
        kafka_op_release(p->kv, op);
        return;
    }
    kafka_record_for(p->kv->vm, f, op->key, now - op->t0, op->vlen,
                     op->err ? rd_kafka_err2str(op->err) : NULL);
    int n = kafka_lua_push_delivery(f->co, op);
    kafka_op_release(p->kv, op);
    cc_fiber_resume(f, n);
}

/* Offers the blocked messages the space that delivery reports freed, oldest first. */
static void retry_blocked(struct kafka_producer *p)
{
    while (p->blocked && !p->closed) {
        struct kafka_op *op = p->blocked;
        blocked_remove(p, op);
        rd_kafka_resp_err_t err =
            try_produce(p, op, op->buf, op->klen, op->has_key, op->buf + op->klen, op->vlen);
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) { /* back at the head: still no room */
            op->state = KOP_BLOCKED;
            op->prev = NULL;
            op->next = p->blocked;
            if (p->blocked)
                p->blocked->prev = op;
            else
                p->blocked_tail = op;
            p->blocked = op;
            return;
        }
        if (err) {
            op->err = err;
            complete(p, op, cc_now_ns());
        }
    }
}

static void on_producer_event(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    struct kafka_producer *p = h->data;
    if (p->closed) return;
    drain_fd(p->efd);
    /* the fd is written only when the queue goes from empty to non-empty: drain it whole */
    struct kafka_op *done = NULL, **tail = &done;
    rd_kafka_event_t *ev;
    while ((ev = rd_kafka_queue_poll(p->q, 0))) {
        switch (rd_kafka_event_type(ev)) {
        case RD_KAFKA_EVENT_DR: {
            const rd_kafka_message_t *m;
            while ((m = rd_kafka_event_message_next(ev))) {
                struct kafka_op *op = m->_private;
                if (!op) continue;
                op->err = m->err;
                op->dr_partition = m->partition;
                op->dr_offset = m->offset;
                list_remove(&p->inflight, op);
                op->done_next = NULL;
                *tail = op;
                tail = &op->done_next;
            }
            break;
        }
        case RD_KAFKA_EVENT_ERROR:
            log_error_event(p, ev);
            break;
        default:
            break;
        }
        rd_kafka_event_destroy(ev); /* frees its messages, and their room in the queue */
    }
    /* one clock reading for the batch: its reports all arrived by now */
    uint64_t now = cc_now_ns();
    retry_blocked(p);
    while (done) {
        struct kafka_op *op = done;
        done = op->done_next;
        complete(p, op, now);
    }
}

struct kafka_topic *kafka_topic_get(struct kafka_producer *p, const char *name)
{
    for (size_t i = 0; i < p->ntopics; i++)
        if (strcmp(p->topics[i].name, name) == 0) return &p->topics[i];
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(p->rk, name, NULL);
    if (!rkt) return NULL;
    cc_grow((void **)&p->topics, &p->topics_cap, p->ntopics + 1, sizeof(*p->topics));
    struct kafka_topic *t = &p->topics[p->ntopics++];
    t->name = cc_xstrdup(name);
    t->rkt = rkt;
    struct cc_recorder *rec = p->kv->vm->rec;
    t->key = rec ? cc_recorder_key(rec, "kafka", 5, name, strlen(name)) : NULL;
    return t;
}

struct kafka_producer *kafka_producer_get(struct kafka_vm *kv, const char *sig,
                                          rd_kafka_conf_t *conf, char *err, size_t errlen)
{
    for (struct kafka_producer *p = kv->producers; p; p = p->next) {
        if (strcmp(p->sig, sig) == 0) {
            rd_kafka_conf_destroy(conf);
            return p;
        }
    }
    char e[256];
    rd_kafka_conf_set_events(conf, RD_KAFKA_EVENT_DR | RD_KAFKA_EVENT_ERROR);
    int efd = event_fd(err, errlen);
    if (efd < 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e));
    if (!rk) {
        snprintf(err, errlen, "%s", e);
        rd_kafka_conf_destroy(conf);
        close(efd);
        return NULL;
    }
    struct kafka_producer *p = cc_xcalloc(1, sizeof(*p));
    p->kv = kv;
    p->sig = cc_xstrdup(sig);
    p->rk = rk;
    p->q = rd_kafka_queue_get_main(rk);
    p->efd = efd;
    kafka_wake_on_queue(p->q, efd);
    uv_poll_init(kv->vm->loop, &p->poll, efd);
    p->poll.data = p;
    uv_poll_start(&p->poll, UV_READABLE, on_producer_event);
    p->next = kv->producers;
    kv->producers = p;
    return p;
}

/* ---- a producer's end ------------------------------------------------------------------- */

struct destroy_job {
    uv_work_t work;
    struct kafka_vm *kv;
    rd_kafka_t *rk;
    rd_kafka_queue_t *q;
    int efd;
    bool producer;
    bool leave;               /* a consumer leaves its group first */
    struct kafka_producer *p; /* producer: freed after */
    struct kafka_consumer *c; /* consumer: marked destroyed after */
};

static void destroy_work(uv_work_t *w)
{
    struct destroy_job *j = cc_container_of(w, struct destroy_job, work);
    if (j->producer) {
        /* what is not yet delivered is dropped: the test is over */
        rd_kafka_purge(j->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_queue_destroy(j->q);
        if (j->p)
            for (size_t i = 0; i < j->p->ntopics; i++)
                rd_kafka_topic_destroy(j->p->topics[i].rkt);
        rd_kafka_destroy(j->rk);
        return;
    }
    rd_kafka_queue_destroy(j->q);
    if (j->leave) {
        rd_kafka_consumer_close(j->rk);
        rd_kafka_destroy(j->rk);
    } else {
        rd_kafka_destroy_flags(j->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    }
}

static void consumer_maybe_free(struct kafka_consumer *c);

static void destroy_done(uv_work_t *w, int status)
{
    (void)status;
    struct destroy_job *j = cc_container_of(w, struct destroy_job, work);
    struct kafka_vm *kv = j->kv;
    close(j->efd);
    if (j->p) {
        struct kafka_producer *p = j->p;
        /* librdkafka is gone, and with it every report that pointed at these */
        while (p->inflight) {
            struct kafka_op *op = p->inflight;
            p->inflight = op->next;
            op_free(op);
        }
        for (size_t i = 0; i < p->ntopics; i++)
            cc_free(p->topics[i].name);
        cc_free(p->topics);
        cc_free(p->sig);
        cc_free(p);
    }
    if (j->c) {
        j->c->destroyed = true;
        consumer_maybe_free(j->c);
    }
    cc_free(j);
    kv->pending--;
    maybe_free_vm(kv);
}

static void start_destroy(struct kafka_vm *kv, struct destroy_job *j)
{
    kv->pending++;
    if (uv_queue_work(kv->vm->loop, &j->work, destroy_work, destroy_done) != 0) {
        destroy_work(&j->work); /* cannot happen with a live loop; block rather than leak */
        destroy_done(&j->work, 0);
    }
}

static void producer_poll_closed(uv_handle_t *h)
{
    struct kafka_producer *p = h->data;
    struct kafka_vm *kv = p->kv;
    struct destroy_job *j = cc_xcalloc(1, sizeof(*j));
    j->kv = kv;
    j->rk = p->rk;
    j->q = p->q;
    j->efd = p->efd;
    j->producer = true;
    j->p = p;
    kv->pending--;
    start_destroy(kv, j);
}

static void producer_close(struct kafka_producer *p)
{
    if (p->closed) return;
    p->closed = true;
    rd_kafka_queue_io_event_enable(p->q, -1, NULL, 0);
    /* parked produces were cancelled with their fibers; anything left is dropped */
    while (p->blocked) {
        struct kafka_op *op = p->blocked;
        blocked_remove(p, op);
        op_free(op);
    }
    p->kv->pending++;
    uv_close((uv_handle_t *)&p->poll, producer_poll_closed);
}

/* ---- consumers -------------------------------------------------------------------------- */

static void consumer_maybe_free(struct kafka_consumer *c)
{
    if (c->handles || !c->destroyed || !c->lua_gone) return;
    cc_free(c->last_topic);
    cc_free(c);
}

static void wait_release(struct kafka_vm *kv, struct kafka_wait *w)
{
    if (!kv || kv->closing) {
        cc_free(w);
        return;
    }
    w->next = kv->free_waits;
    kv->free_waits = w;
}

static void waiter_remove(struct kafka_consumer *c, struct kafka_wait *w)
{
    struct kafka_wait **pp = &c->waiters, *prev = NULL;
    while (*pp && *pp != w) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (!*pp) return;
    *pp = w->next;
    if (c->waiters_tail == w) c->waiters_tail = prev;
    w->next = NULL;
}

static void on_consumer_timer(uv_timer_t *t);

static void arm_consumer_timer(struct kafka_consumer *c)
{
    uint64_t first = 0;
    for (struct kafka_wait *w = c->waiters; w; w = w->next)
        if (w->deadline_ns && (!first || w->deadline_ns < first)) first = w->deadline_ns;
    if (!first) {
        uv_timer_stop(&c->timer);
        return;
    }
    uint64_t now = cc_now_ns();
    uint64_t ms = first > now ? (first - now + 999999) / 1000000 : 0;
    uv_timer_start(&c->timer, on_consumer_timer, ms, 0);
}

/* Resumes waiter |w| (out of the list) with a message or an error. */
static void wake(struct kafka_consumer *c, struct kafka_wait *w, rd_kafka_message_t *m,
                 const char *err)
{
    struct cc_fiber *f = w->fiber;
    struct kafka_vm *kv = c->kv;
    wait_release(kv, w);
    if (!f) {
        if (m) rd_kafka_message_destroy(m);
        return;
    }
    int n;
    if (m) {
        kafka_consumer_note(c, f, m);
        n = kafka_lua_push_message(f->co, c, m);
    } else {
        lua_pushnil(f->co);
        lua_pushstring(f->co, err);
        n = 2;
    }
    cc_fiber_resume(f, n);
}

/* Gives queued messages to the waiting users, in order. */
static void deliver(struct kafka_consumer *c)
{
    bool woke = false;
    while (c->waiters && !c->closed) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, 0);
        if (!m) break;
        struct kafka_wait *w = c->waiters;
        waiter_remove(c, w);
        wake(c, w, m, NULL);
        woke = true;
    }
    if (woke && !c->closed) arm_consumer_timer(c);
}

static void on_consumer_event(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    struct kafka_consumer *c = h->data;
    if (c->closed) return;
    drain_fd(c->efd);
    deliver(c);
}

static void on_consumer_timer(uv_timer_t *t)
{
    struct kafka_consumer *c = t->data;
    if (c->closed) return;
    /* a message that came without a wake-up (none is lost, but be sure) goes first */
    deliver(c);
    uint64_t now = cc_now_ns();
    for (struct kafka_wait *w = c->waiters, *next; w; w = next) {
        next = w->next;
        if (w->deadline_ns && w->deadline_ns <= now) {
            waiter_remove(c, w);
            wake(c, w, NULL, "timeout");
            if (c->closed) return;
        }
    }
    arm_consumer_timer(c);
}

static void consumer_handle_closed(uv_handle_t *h)
{
    struct kafka_consumer *c = h->data;
    struct kafka_vm *kv = c->kv;
    c->handles--;
    kv->pending--;
    if (c->handles == 0) {
        if (c->prev)
            c->prev->next = c->next;
        else
            kv->consumers = c->next;
        if (c->next) c->next->prev = c->prev;
        c->kv = NULL;
    }
    consumer_maybe_free(c);
    maybe_free_vm(kv);
}

struct kafka_consumer *kafka_consumer_new(struct kafka_vm *kv, rd_kafka_conf_t *conf, char *err,
                                          size_t errlen)
{
    char e[256];
    int efd = event_fd(err, errlen);
    if (efd < 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof(e));
    if (!rk) {
        snprintf(err, errlen, "%s", e);
        rd_kafka_conf_destroy(conf);
        close(efd);
        return NULL;
    }
    struct kafka_consumer *c = cc_xcalloc(1, sizeof(*c));
    c->kv = kv;
    c->rk = rk;
    c->efd = efd;
    c->stamps = true;
    /* everything (messages, errors, rebalances) comes through the consumer queue */
    rd_kafka_poll_set_consumer(rk);
    c->q = rd_kafka_queue_get_consumer(rk);
    if (!c->q) { /* no group.id: librdkafka has no consumer queue then */
        snprintf(err, errlen, "a consumer needs group.id");
        rd_kafka_destroy(rk);
        close(efd);
        cc_free(c);
        return NULL;
    }
    kafka_wake_on_queue(c->q, efd);
    uv_poll_init(kv->vm->loop, &c->poll, efd);
    c->poll.data = c;
    uv_poll_start(&c->poll, UV_READABLE, on_consumer_event);
    uv_timer_init(kv->vm->loop, &c->timer);
    c->timer.data = c;
    c->handles = 2;
    kv->pending += 2;
    c->next = kv->consumers;
    if (kv->consumers) kv->consumers->prev = c;
    kv->consumers = c;
    return c;
}

rd_kafka_message_t *kafka_consumer_take(struct kafka_consumer *c)
{
    if (c->closed || c->waiters) return NULL; /* others wait first */
    return rd_kafka_consumer_poll(c->rk, 0);
}

struct kafka_wait *kafka_wait_new(struct kafka_consumer *c, struct cc_fiber *f,
                                  uint64_t deadline_ns)
{
    struct kafka_vm *kv = c->kv;
    struct kafka_wait *w = kv->free_waits;
    if (w)
        kv->free_waits = w->next;
    else
        w = cc_xcalloc(1, sizeof(*w));
    w->waiter.cancel = kafka_wait_cancel;
    w->fiber = f;
    w->c = c;
    w->next = NULL;
    w->deadline_ns = deadline_ns;
    if (c->waiters_tail)
        c->waiters_tail->next = w;
    else
        c->waiters = w;
    c->waiters_tail = w;
    arm_consumer_timer(c);
    return w;
}

void kafka_wait_cancel(struct cc_waiter *w)
{
    struct kafka_wait *kw = cc_container_of(w, struct kafka_wait, waiter);
    struct kafka_consumer *c = kw->c;
    waiter_remove(c, kw);
    wait_release(c->kv, kw);
}

static void set_topic_keys(struct kafka_consumer *c, const char *topic)
{
    if (c->last_topic && strcmp(c->last_topic, topic) == 0) return;
    cc_free(c->last_topic);
    c->last_topic = cc_xstrdup(topic);
    struct cc_recorder *rec = c->kv->vm->rec;
    if (!rec) return;
    char name[512];
    int n = snprintf(name, sizeof(name), "e2e:%s", topic);
    c->e2e_key = cc_recorder_key(rec, "kafka", 5, name, (size_t)CC_MIN(n, (int)sizeof(name) - 1));
    n = snprintf(name, sizeof(name), "consume:%s", topic);
    c->err_key = cc_recorder_key(rec, "kafka", 5, name, (size_t)CC_MIN(n, (int)sizeof(name) - 1));
}

void kafka_consumer_note(struct kafka_consumer *c, struct cc_fiber *f, const rd_kafka_message_t *m)
{
    if (!c->kv || !c->kv->vm->rec) return;
    const char *topic = m->rkt ? rd_kafka_topic_name(m->rkt) : "";
    set_topic_keys(c, topic);
    if (m->err) {
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) return; /* not a failure */
        const char *why = rd_kafka_message_errstr(m);
        kafka_record_for(c->kv->vm, f, c->err_key, 0, 0, why && why[0] ? why : "consume failed");
        return;
    }
    if (!c->stamps) return;
    rd_kafka_headers_t *hdrs = NULL;
    if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR) return;
    uint64_t ns;
    if (kafka_stamp_latency(hdrs, kafka_wall_ns(), &ns))
        kafka_record_for(c->kv->vm, f, c->e2e_key, ns, m->len, NULL);
}

void kafka_consumer_close(struct kafka_consumer *c, bool leave)
{
    if (c->closed) return;
    c->closed = true;
    struct kafka_vm *kv = c->kv;
    /* users still waiting (a gather of polls) get an error */
    while (c->waiters) {
        struct kafka_wait *w = c->waiters;
        waiter_remove(c, w);
        struct cc_fiber *f = w->fiber;
        wait_release(kv, w);
        if (f) {
            lua_pushnil(f->co);
            lua_pushliteral(f->co, "the consumer is closed");
            cc_fiber_resume(f, 2);
        }
    }
    rd_kafka_queue_io_event_enable(c->q, -1, NULL, 0);
    uv_close((uv_handle_t *)&c->poll, consumer_handle_closed);
    uv_close((uv_handle_t *)&c->timer, consumer_handle_closed);
    struct destroy_job *j = cc_xcalloc(1, sizeof(*j));
    j->kv = kv;
    j->rk = c->rk;
    j->q = c->q;
    j->efd = c->efd;
    j->leave = leave;
    j->c = c;
    start_destroy(kv, j);
}

void kafka_consumer_release(struct kafka_consumer *c)
{
    c->lua_gone = true;
    if (!c->closed) kafka_consumer_close(c, true);
    consumer_maybe_free(c);
}
