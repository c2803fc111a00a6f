/* SPDX-License-Identifier: MIT */
/* mqtt.c: MQTT clients on libmosquitto, driven by the worker's libuv loop (see mqtt.h). */
#include "proto/mqtt/mqtt.h"
#include "core/err.h"
#include "core/log.h"

#include <arpa/inet.h>
#include <lauxlib.h>
#include <errno.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;

static void lib_init(void)
{
    mosquitto_lib_init();
}

static void on_tick(uv_timer_t *t);
static void conn_lost(struct mqtt_client *c, const char *why);
static void flush_done(struct mqtt_vm *mv);

/* ---- the vm's state --------------------------------------------------------------------- */

static void mv_free(struct mqtt_vm *mv)
{
    while (mv->free_ops) {
        struct mqtt_op *op = mv->free_ops;
        mv->free_ops = op->next;
        cc_free(op);
    }
    cc_tls_cache_free(&mv->tls);
    cc_free(mv->buf);
    cc_free(mv->rbuf.data);
    cc_free(mv);
}

static void handle_closed(uv_handle_t *h)
{
    struct mqtt_vm *mv = h->data;
    if (--mv->handles == 0) mv_free(mv);
}

static void resolver_closed(struct cc_resolver *r)
{
    struct mqtt_vm *mv = cc_container_of(r, struct mqtt_vm, resolver);
    if (--mv->handles == 0) mv_free(mv);
}

static void maybe_free(struct mqtt_client *c);

static void unlink_client(struct mqtt_client *c)
{
    struct mqtt_vm *mv = c->mv;
    if (!mv) return;
    if (c->prev)
        c->prev->next = c->next;
    else if (mv->clients == c)
        mv->clients = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

/* The vm closes: every connection closes at once; clients Lua still holds become inert. The
 * users' waits were cancelled before, so pending operations only need freeing. */
static void vm_close(struct cc_vm *vm, void *state)
{
    struct mqtt_vm *mv = state;
    mv->closing = true;
    while (mv->clients) {
        struct mqtt_client *c = mv->clients;
        c->depth = 0;
        mqtt_client_close(c, "the run ended");
        unlink_client(c);
        c->mv = NULL;
        maybe_free(c);
    }
    while (mv->done) {
        struct mqtt_op *op = mv->done;
        mv->done = op->next;
        mqtt_op_free(op);
    }
    mv->done_tail = NULL;
    mv->handles = 2;
    mv->tick.data = mv;
    uv_close((uv_handle_t *)&mv->tick, handle_closed);
    cc_resolver_close(&mv->resolver, resolver_closed);
    cc_vm_ext_set(vm, CC_EXT_MQTT, NULL, NULL);
}

struct mqtt_vm *mqtt_vm_get(struct cc_vm *vm)
{
    struct mqtt_vm *mv = cc_vm_ext_get(vm, CC_EXT_MQTT);
    if (mv) return mv;
    pthread_once(&lib_once, lib_init);
    mv = cc_xcalloc(1, sizeof(*mv));
    mv->vm = vm;
    mv->weak_ref = LUA_NOREF;
    cc_resolver_init(&mv->resolver, vm->loop, 0);
    uv_timer_init(vm->loop, &mv->tick);
    mv->tick.data = mv;
    uv_timer_start(&mv->tick, on_tick, MQTT_TICK_MS, MQTT_TICK_MS);
    uv_unref((uv_handle_t *)&mv->tick); /* keep-alives alone do not keep a worker running */
    cc_vm_ext_set(vm, CC_EXT_MQTT, mv, vm_close);
    return mv;
}

/*
 * The result of the certificate verification that failed last on this thread. libmosquitto may
 * run a whole handshake inside mosquitto_connect_async() (on loopback the broker's answer is
 * often there at once) and frees the SSL object before returning, so the reason is taken as
 * OpenSSL verifies, and read right after the call that ran it.
 */
static _Thread_local long verify_failure;

static int verify_cb(int ok, X509_STORE_CTX *store)
{
    if (!ok && verify_failure == X509_V_OK) verify_failure = X509_STORE_CTX_get_error(store);
    return ok;
}

/* Brackets a libmosquitto call that may run the TLS handshake. */
static void tls_watch(void)
{
    verify_failure = X509_V_OK;
}

static void tls_seen(struct mqtt_client *c)
{
    if (verify_failure != X509_V_OK && c->tls_verify == X509_V_OK) c->tls_verify = verify_failure;
    verify_failure = X509_V_OK;
}

/*
 * The TLS context for |s|, with a reference for the caller. Clients of one worker that go to
 * the same broker with the same files share one, so the trust store is read once. With
 * verification on, the context also checks the broker's name (or address) in its certificate:
 * libmosquitto makes the SSL objects itself, so the name goes on the context, not the SSL.
 */
struct cc_tls_ctx *mqtt_tls_get(struct mqtt_vm *mv, const struct mqtt_settings *s, char **err)
{
    char key[2048];
    snprintf(key, sizeof(key), "%s|%d|%s|%s|%s", s->host, s->verify, s->ca_file ? s->ca_file : "",
             s->cert_file ? s->cert_file : "", s->key_file ? s->key_file : "");
    struct cc_tls_ctx *ctx = cc_tls_cache_get(&mv->tls, key);
    if (ctx) return ctx;
    struct cc_tls_opts o = {.insecure = !s->verify,
                            .ca_file = s->ca_file,
                            .cert_file = s->cert_file,
                            .key_file = s->key_file,
                            .verify_hint = "(set verify = false in the client's settings, or "
                                           "--insecure, to skip verification)"};
    if (cc_tls_ctx_new(&ctx, &o, err) != 0) return NULL;
    if (s->verify) {
        SSL_CTX_set_verify(ctx->ssl_ctx, SSL_CTX_get_verify_mode(ctx->ssl_ctx), verify_cb);
        X509_VERIFY_PARAM *param = SSL_CTX_get0_param(ctx->ssl_ctx);
        unsigned char bin[16];
        bool ip = inet_pton(AF_INET, s->host, bin) == 1 || inet_pton(AF_INET6, s->host, bin) == 1;
        int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, s->host)
                    : X509_VERIFY_PARAM_set1_host(param, s->host, 0);
        if (!ok) {
            cc_tls_ctx_unref(ctx);
            if (err) {
                *err = cc_xmalloc(300);
                snprintf(*err, 300, "TLS: cannot verify the name '%s'", s->host);
            }
            return NULL;
        }
    }
    cc_tls_cache_put(&mv->tls, key, ctx);
    return ctx;
}

const struct cc_ikey *mqtt_key(struct mqtt_vm *mv, const char *name, size_t len)
{
    struct cc_recorder *rec = mv->vm->rec;
    if (!rec) return NULL;
    return cc_recorder_key(rec, MQTT_REQUEST_TYPE, sizeof(MQTT_REQUEST_TYPE) - 1, name, len);
}

/* ---- operations ------------------------------------------------------------------------- */

struct mqtt_op *mqtt_op_new(struct mqtt_client *c, uint8_t kind, struct cc_fiber *fiber)
{
    struct mqtt_vm *mv = c->mv;
    struct mqtt_op *op = mv->free_ops;
    if (op)
        mv->free_ops = op->next;
    else
        op = cc_xmalloc(sizeof(*op));
    memset(op, 0, sizeof(*op));
    op->c = c;
    op->kind = kind;
    op->fiber = fiber;
    op->mid = -1;
    op->starting = true;
    op->t_start = cc_now_ns();
    op->waiter.cancel = mqtt_op_cancel;
    return op;
}

void mqtt_op_free(struct mqtt_op *op)
{
    cc_free(op->error);
    cc_free(op->topic);
    op->error = NULL;
    op->topic = NULL;
    struct mqtt_vm *mv = op->c ? op->c->mv : NULL;
    if (mv && !mv->closing) {
        op->next = mv->free_ops;
        mv->free_ops = op;
        return;
    }
    cc_free(op);
}

void mqtt_op_pend(struct mqtt_op *op)
{
    struct mqtt_client *c = op->c;
    if (op->kind != MQTT_OP_CONNECT && c->set.timeout_ms && c->mv)
        op->deadline_ms = uv_now(c->mv->vm->loop) + c->set.timeout_ms;
    op->next = c->ops;
    c->ops = op;
    op->pending = true;
    c->npending++;
}

static void unpend(struct mqtt_op *op)
{
    if (!op->pending) return;
    for (struct mqtt_op **pp = &op->c->ops; *pp; pp = &(*pp)->next) {
        if (*pp == op) {
            *pp = op->next;
            break;
        }
    }
    op->next = NULL;
    op->pending = false;
    op->c->npending--;
}

static struct mqtt_op *find_op(struct mqtt_client *c, uint8_t kind, int mid)
{
    for (struct mqtt_op *op = c->ops; op; op = op->next)
        if (op->kind == kind && op->mid == mid) return op;
    return NULL;
}

/*
 * Records |op| as the request of |f|: with the fiber counted as the running one, so that an
 * open-model or paced user's intended-start histogram sees it as it sees the user's other
 * requests. Nothing runs Lua in between.
 */
static void record(struct mqtt_vm *mv, struct cc_fiber *f, struct mqtt_op *op, uint64_t ns)
{
    struct cc_vm *vm = mv->vm;
    if (!op->key || !vm->rec || mv->closing) return;
    struct cc_fiber *cur = vm->current;
    if (f) vm->current = f;
    cc_vm_record(vm, op->key, ns, op->length, op->error, op->error ? strlen(op->error) : 0);
    vm->current = cur;
}

void mqtt_op_complete(struct mqtt_op *op, const char *error)
{
    struct mqtt_client *c = op->c;
    struct mqtt_vm *mv = c->mv;
    unpend(op);
    if (error) op->error = cc_xstrdup(error);
    uint64_t ns = cc_now_ns() - op->t_start;
    if (!mv) {
        if (!op->starting)
            mqtt_op_free(op);
        else
            op->done = true;
        return;
    }
    if (op->starting) { /* the call that made it returns the outcome itself */
        record(mv, op->fiber, op, ns);
        op->done = true;
        return;
    }
    if (!op->fiber || mv->closing) {
        record(mv, NULL, op, ns);
        mqtt_op_free(op);
        return;
    }
    op->t_start = ns; /* from here on: the duration to record when the user resumes */
    op->next = NULL;
    if (mv->done_tail)
        mv->done_tail->next = op;
    else
        mv->done = op;
    mv->done_tail = op;
}

/* The user was killed (the run is ending, or it was stopped): an operation still pending is
 * dropped unrecorded, as its user no longer counts; one already complete is freed unseen. */
void mqtt_op_cancel(struct cc_waiter *w)
{
    struct mqtt_op *op = (struct mqtt_op *)w;
    op->fiber = NULL;
    if (op->pending) {
        unpend(op);
        mqtt_op_free(op);
    }
}

/* Resumes the users whose operations completed. Called when no libmosquitto call is in
 * progress on this vm; each resume may start new calls, which complete into the same list. */
static void flush_done(struct mqtt_vm *mv)
{
    struct mqtt_op *op;
    while (mv->depth == 0 && (op = mv->done)) {
        mv->done = op->next;
        if (!mv->done) mv->done_tail = NULL;
        struct cc_fiber *f = op->fiber;
        uint64_t ns = op->t_start;
        record(mv, f, op, ns);
        if (!f) {
            mqtt_op_free(op);
            continue;
        }
        int n = mqtt_lua_push_result(f->co, op);
        mqtt_op_free(op);
        cc_fiber_resume(f, n);
    }
}

/* ---- calls into libmosquitto ---------------------------------------------------------------- */

void mqtt_enter(struct mqtt_client *c)
{
    c->depth++;
    if (c->mv) c->mv->depth++;
}

static void destroy_mosq(struct mqtt_client *c)
{
    if (!c->mosq) return;
    mosquitto_destroy(c->mosq); /* closes its socket if the library has not yet */
    c->mosq = NULL;
    c->dead = false;
    c->fd = -1;
}

static void poll_closed(uv_handle_t *h)
{
    struct mqtt_poll *p = cc_container_of((uv_poll_t *)h, struct mqtt_poll, h);
    struct mqtt_client *c = p->c;
    cc_free(p);
    if (c) {
        c->polls_closing--;
        maybe_free(c);
    }
}

/* Stops watching the socket. Done before libmosquitto's close(2) of it, or right after within
 * the same call, so the descriptor cannot be reused on this thread while still registered. */
static void poll_close(struct mqtt_client *c)
{
    struct mqtt_poll *p = c->poll;
    if (!p) return;
    c->poll = NULL;
    c->events = 0;
    c->polls_closing++;
    uv_close((uv_handle_t *)&p->h, poll_closed);
}

static void on_poll(uv_poll_t *h, int status, int events);

static void update_events(struct mqtt_client *c)
{
    if (!c->mosq || c->dead || !c->poll) return;
    int want = UV_READABLE;
    if (mosquitto_want_write(c->mosq)) want |= UV_WRITABLE;
    if (want == c->events) return;
    if (uv_poll_start(&c->poll->h, want, on_poll) == 0) c->events = want;
}

static const char *host_port(struct mqtt_client *c, char *buf, size_t cap)
{
    const char *h = c->set.host ? c->set.host : "?";
    if (strchr(h, ':'))
        snprintf(buf, cap, "[%s]:%u", h, (unsigned)c->set.port);
    else
        snprintf(buf, cap, "%s:%u", h, (unsigned)c->set.port);
    return buf;
}

/* A sentence for libmosquitto's result |rc| (with |err|, the errno that came with it). */
static void reason(struct mqtt_client *c, int rc, int err, char *out, size_t cap)
{
    char hp[300];
    host_port(c, hp, sizeof(hp));
    bool connecting = c->state != MQTT_CONNECTED;
    switch (rc) {
    case MOSQ_ERR_SUCCESS:
        snprintf(out, cap, "disconnected from %s", hp);
        return;
    case MOSQ_ERR_CONN_LOST:
        snprintf(out, cap, "%s closed the connection%s", hp,
                 connecting ? " before accepting it" : "");
        return;
    case MOSQ_ERR_ERRNO:
        if (err == 0) { /* libmosquitto's read met the end of the stream inside a packet */
            snprintf(out, cap, "%s closed the connection %s", hp,
                     connecting ? "before accepting it" : "in the middle of a packet");
            return;
        }
        if (connecting)
            snprintf(out, cap, "connect to %s failed: %s", hp, cc_strerror(-err));
        else
            snprintf(out, cap, "connection to %s lost: %s", hp, cc_strerror(-err));
        return;
    case MOSQ_ERR_KEEPALIVE:
        snprintf(out, cap, "%s did not answer within the keepalive (%d s)", hp, c->set.keepalive);
        return;
    case MOSQ_ERR_PROTOCOL:
    case MOSQ_ERR_MALFORMED_PACKET:
        snprintf(out, cap, "MQTT protocol error: %s sent a malformed or unexpected packet", hp);
        return;
    case MOSQ_ERR_TLS: {
        long vr = c->tls_verify;
        if (vr != X509_V_OK)
            snprintf(out, cap,
                     "TLS certificate verification failed for %s: %s (set verify = false in the "
                     "client's settings, or --insecure, to skip verification)",
                     hp, X509_verify_cert_error_string(vr));
        else
            snprintf(out, cap, "TLS handshake with %s failed", hp);
        return;
    }
    case MOSQ_ERR_NOMEM:
        snprintf(out, cap, "out of memory");
        return;
    default:
        break;
    }
    if (rc >= 0x80) /* an MQTT 5 DISCONNECT from the broker, with its reason code */
        snprintf(out, cap, "%s disconnected the client: %s (reason 0x%02x)", hp,
                 mosquitto_reason_string(rc), rc);
    else
        snprintf(out, cap, "%s: %s", hp, mosquitto_strerror(rc));
}

/* The connection is gone (or is being given up): everything waiting on it learns why. */
static void conn_lost(struct mqtt_client *c, const char *why)
{
    if (c->state == MQTT_IDLE && !c->mosq && !c->resolving) return; /* already done */
    bool was_connected = c->state == MQTT_CONNECTED;
    if (c->resolving) {
        cc_resolve_cancel(c->resolving);
        c->resolving = NULL;
    }
    poll_close(c);
    cc_free(c->error);
    c->error = cc_xstrdup(why);
    c->state = MQTT_IDLE;
    c->deadline_ms = 0;
    if (c->mosq) {
        if (c->depth == 0)
            destroy_mosq(c);
        else
            c->dead = true;
    }
    /* fail (or, for a disconnect, complete) what waited, oldest first */
    while (c->ops) {
        struct mqtt_op *last = c->ops;
        while (last->next)
            last = last->next;
        if (last->kind == MQTT_OP_DISCONNECT) {
            mqtt_op_complete(last, NULL);
        } else if (last->kind == MQTT_OP_CONNECT || !was_connected) {
            mqtt_op_complete(last, why);
        } else {
            char msg[640];
            snprintf(msg, sizeof(msg), "connection lost before the acknowledgement: %s", why);
            mqtt_op_complete(last, msg);
        }
    }
}

/* libmosquitto may close its socket without a callback (a failed TLS handshake): noticed here,
 * once out of its calls. */
static void check_alive(struct mqtt_client *c)
{
    if (!c->mosq || c->dead || c->fd < 0) return;
    if (mosquitto_socket(c->mosq) == c->fd) return;
    char why[512];
    reason(c, c->last_rc ? c->last_rc : MOSQ_ERR_CONN_LOST, c->last_errno, why, sizeof(why));
    conn_lost(c, why);
}

void mqtt_leave(struct mqtt_client *c)
{
    struct mqtt_vm *mv = c->mv;
    c->depth--;
    if (mv) mv->depth--;
    if (c->depth == 0) {
        check_alive(c);
        if (c->close_asked) {
            c->close_asked = false;
            mqtt_client_close(c, NULL);
        }
        if (c->dead) destroy_mosq(c);
        update_events(c);
    }
    if (mv && mv->depth == 0) flush_done(mv);
    if (c->depth == 0 && c->released) maybe_free(c);
}

/* ---- libmosquitto's callbacks --------------------------------------------------------------- */

static void on_connect(struct mosquitto *m, void *obj, int rc, int flags,
                       const mosquitto_property *props)
{
    (void)m;
    (void)props;
    struct mqtt_client *c = obj;
    int saved = errno;
    if (c->state != MQTT_CONNECTING) goto out;
    if (rc != 0) {
        char why[512], hp[300];
        host_port(c, hp, sizeof(hp));
        if (c->set.protocol == MQTT_PROTOCOL_V5) {
            snprintf(why, sizeof(why), "%s refused the connection: %s (reason 0x%02x)", hp,
                     mosquitto_reason_string(rc), rc);
        } else {
            static const char *const codes[] = {"",
                                                "unacceptable protocol version",
                                                "identifier rejected",
                                                "server unavailable",
                                                "bad user name or password",
                                                "not authorised"};
            snprintf(why, sizeof(why), "%s refused the connection: %s (CONNACK %d)", hp,
                     rc > 0 && rc < 6 ? codes[rc] : "unknown reason", rc);
        }
        conn_lost(c, why);
        goto out;
    }
    c->state = MQTT_CONNECTED;
    c->deadline_ms = 0;
    cc_free(c->error);
    c->error = NULL;
    for (struct mqtt_op *op = c->ops, *next; op; op = next) {
        next = op->next;
        if (op->kind == MQTT_OP_CONNECT) {
            mqtt_op_complete(op, NULL);
            next = c->ops; /* the list changed */
        }
    }
    /* After a lost connection the subscriptions come back, unless the broker kept them in the
     * session (MQTT 3.1.1 §3.2.2.2: session present). They are recorded as any subscribe. */
    if (!(flags & 1)) {
        for (uint32_t i = 0; i < c->nsubs && c->mosq; i++) {
            struct mqtt_sub *s = &c->subs[i];
            char name[512];
            const char *t = s->name ? s->name : s->filter;
            size_t n = mqtt_event_name(name, sizeof(name), "subscribe", s->qos, t, strlen(t));
            struct mqtt_op *op = mqtt_op_new(c, MQTT_OP_SUBSCRIBE, NULL);
            op->key = mqtt_key(c->mv, name, n);
            op->topic = cc_xstrdup(s->filter);
            op->starting = false;
            mqtt_op_pend(op);
            int r = mosquitto_subscribe_v5(c->mosq, &op->mid, s->filter, s->qos, 0, NULL);
            if (r != MOSQ_ERR_SUCCESS) mqtt_op_complete(op, mosquitto_strerror(r));
        }
    }
out:
    errno = saved;
}

static void on_disconnect(struct mosquitto *m, void *obj, int rc, const mosquitto_property *props)
{
    (void)m;
    (void)props;
    struct mqtt_client *c = obj;
    int saved = errno;
    if (c->state != MQTT_IDLE) { /* libmosquitto may report one end twice */
        char why[512];
        reason(c, rc, saved, why, sizeof(why));
        conn_lost(c, why);
    }
    errno = saved;
}

static void on_publish(struct mosquitto *m, void *obj, int mid, int rc,
                       const mosquitto_property *props)
{
    (void)m;
    (void)props;
    struct mqtt_client *c = obj;
    int saved = errno;
    struct mqtt_op *op = find_op(c, MQTT_OP_PUBLISH, mid);
    if (op) {
        if (rc >= 0x80) {
            char why[256];
            snprintf(why, sizeof(why), "the broker rejected the message: %s (reason 0x%02x)",
                     mosquitto_reason_string(rc), rc);
            mqtt_op_complete(op, why);
        } else {
            mqtt_op_complete(op, NULL);
        }
    }
    errno = saved;
}

static void on_subscribe(struct mosquitto *m, void *obj, int mid, int count, const int *granted,
                         const mosquitto_property *props)
{
    (void)m;
    (void)props;
    struct mqtt_client *c = obj;
    int saved = errno;
    struct mqtt_op *op = find_op(c, MQTT_OP_SUBSCRIBE, mid);
    int g = count > 0 && granted ? granted[0] : 0x80;
    if (op) {
        op->granted = g;
        if (g >= 0x80) {
            char why[256];
            snprintf(why, sizeof(why), "the broker refused the subscription: %s (reason 0x%02x)",
                     g == 0x80 ? "failure" : mosquitto_reason_string(g), g);
            struct mqtt_sub *s = op->topic ? mqtt_sub_find(c, op->topic) : NULL;
            if (s) {
                if (s->handler) mqtt_lua_clear_handler(c, s->handler);
                mqtt_sub_remove(c, s);
            }
            mqtt_op_complete(op, why);
        } else {
            mqtt_op_complete(op, NULL);
        }
    }
    errno = saved;
}

static void on_unsubscribe(struct mosquitto *m, void *obj, int mid, const mosquitto_property *props)
{
    (void)m;
    (void)props;
    struct mqtt_client *c = obj;
    int saved = errno;
    struct mqtt_op *op = find_op(c, MQTT_OP_UNSUBSCRIBE, mid);
    if (op) mqtt_op_complete(op, NULL);
    errno = saved;
}

static const struct cc_ikey *deliver_key(struct mqtt_client *c, struct mqtt_sub *s, int qos,
                                         const char *topic)
{
    char name[512];
    if (qos < 0 || qos > 2) qos = 0;
    if (s && s->deliver_key[qos]) return s->deliver_key[qos];
    const char *t = s ? (s->name ? s->name : s->filter) : topic;
    size_t n = mqtt_event_name(name, sizeof(name), "deliver", qos, t, strlen(t));
    const struct cc_ikey *k = mqtt_key(c->mv, name, n);
    if (s) s->deliver_key[qos] = k;
    return k;
}

/*
 * A message arrived. A stamped one is recorded as "deliver:<qos>:<filter>" with its end-to-end
 * time (the first subscription it matches names it); then every matching subscription's
 * handler runs, or the client's default handler when none has one.
 */
static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg,
                       const mosquitto_property *props)
{
    (void)m;
    (void)props;
    struct mqtt_client *c = obj;
    struct mqtt_vm *mv = c->mv;
    if (!mv || mv->closing || c->state != MQTT_CONNECTED || !msg->topic) return;
    int saved = errno;
    uint64_t stamp = 0;
    size_t skip = 0;
    double latency_ms = -1;
    uint64_t lat_ns = 0;
    if (mqtt_stamp_read(msg->payload, msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0, &stamp)) {
        uint64_t now = mqtt_wall_ns();
        lat_ns = now > stamp ? now - stamp : 0;
        latency_ms = (double)lat_ns / 1e6;
        skip = MQTT_STAMP_LEN;
    }
    bool recorded = false, handled = false;
    for (uint32_t i = 0; i < c->nsubs; i++) {
        bool match = false;
        if (mosquitto_topic_matches_sub(c->subs[i].filter, msg->topic, &match) != 0 || !match)
            continue;
        if (skip && !recorded && mv->vm->rec) {
            const struct cc_ikey *k = deliver_key(c, &c->subs[i], msg->qos, msg->topic);
            if (k) cc_vm_record(mv->vm, k, lat_ns, (uint64_t)msg->payloadlen - skip, NULL, 0);
            recorded = true;
        }
        int slot = c->subs[i].handler;
        if (slot) {
            handled = true;
            mqtt_lua_dispatch(c, slot, msg, skip, latency_ms);
            /* the handler may have closed the client or changed its subscriptions */
            if (c->state != MQTT_CONNECTED || c->close_asked || c->released) break;
        }
    }
    if (skip && !recorded && mv->vm->rec) {
        const struct cc_ikey *k = deliver_key(c, NULL, msg->qos, msg->topic);
        if (k) cc_vm_record(mv->vm, k, lat_ns, (uint64_t)msg->payloadlen - skip, NULL, 0);
    }
    if (!handled && c->has_default && c->state == MQTT_CONNECTED && !c->close_asked)
        mqtt_lua_dispatch(c, 0, msg, skip, latency_ms);
    errno = saved;
}

/* ---- the socket -------------------------------------------------------------------------------
 */

static int socket_error(int fd)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1) return errno;
    return err;
}

/*
 * Reads what the socket holds. mosquitto_loop_read() handles one packet per call unless QoS > 0
 * messages are queued, so it is called until the bytes read are used up and the socket has no
 * more (interpose.c serves its byte-sized reads from one buffer). Every buffered byte goes to
 * libmosquitto, which keeps a partial packet itself, unless the connection ends meanwhile.
 */
static void read_packets(struct mqtt_client *c)
{
    struct mqtt_vm *mv = c->mv;
    struct mqtt_rbuf *b = &mv->rbuf;
    if (!b->data) {
        b->cap = 64 * 1024;
        b->data = cc_xmalloc(b->cap);
    }
    mqtt_read_begin(b, c->fd);
    while (c->mosq && !c->dead) {
        errno = 0;
        int rc = mosquitto_loop_read(c->mosq, 1);
        c->last_errno = errno;
        c->last_rc = rc;
        if (rc != MOSQ_ERR_SUCCESS || errno == EAGAIN || errno == EWOULDBLOCK) break;
        if (c->state != MQTT_CONNECTED || c->close_asked || mosquitto_socket(c->mosq) != c->fd)
            break;
        if (b->pos == b->len && b->drained) break;
    }
    mqtt_read_end();
}

/* Whether the connection ended inside the last call: no more calls on it but to destroy it. */
static bool gone(struct mqtt_client *c)
{
    return !c->mosq || c->dead || c->state == MQTT_IDLE || mosquitto_socket(c->mosq) != c->fd;
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct mqtt_poll *p = cc_container_of(h, struct mqtt_poll, h);
    struct mqtt_client *c = p->c;
    if (!c || c->poll != p || !c->mosq || c->dead) return;
    mqtt_enter(c);
    if (status < 0) {
        /* libuv reports a socket error (a refused connect, a reset) this way and stops the
         * handle: give libmosquitto a read to notice it, then make sure the end is handled */
        int err = socket_error(c->fd);
        if (!c->set.tls) {
            errno = 0;
            c->last_rc = mosquitto_loop_read(c->mosq, 1);
            c->last_errno = errno;
        }
        if (c->state != MQTT_IDLE && !c->dead) {
            char why[512];
            reason(c, MOSQ_ERR_ERRNO, err ? err : ECONNRESET, why, sizeof(why));
            conn_lost(c, why);
        }
    } else if (c->state == MQTT_CONNECTING && c->set.tls) {
        /* the TLS handshake only moves on in a read, whichever way the socket is ready */
        errno = 0;
        tls_watch();
        c->last_rc = mosquitto_loop_read(c->mosq, 1);
        c->last_errno = errno;
        tls_seen(c);
        if (gone(c)) {
            /* handled on the way out (check_alive) */
        } else if (c->last_rc == MOSQ_ERR_SUCCESS && c->state == MQTT_CONNECTING &&
                   (events & UV_READABLE)) {
            char b;
            if (recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0) {
                char why[400], hp[300];
                snprintf(why, sizeof(why), "%s closed the connection during the TLS handshake",
                         host_port(c, hp, sizeof(hp)));
                conn_lost(c, why);
            }
        }
        if (!gone(c) && (events & UV_WRITABLE)) {
            c->last_rc = mosquitto_loop_write(c->mosq, 1);
            c->last_errno = errno;
        }
    } else {
        if (events & UV_READABLE) read_packets(c);
        if (!gone(c) && (events & UV_WRITABLE)) {
            errno = 0;
            c->last_rc = mosquitto_loop_write(c->mosq, 1);
            c->last_errno = errno;
        }
    }
    mqtt_leave(c);
}

/* ---- connecting --------------------------------------------------------------------------- */

static void start_mosquitto(struct mqtt_client *c, const char *ip)
{
    struct mqtt_settings *s = &c->set;
    char why[512];
    mqtt_refuse_socketpair(true);
    struct mosquitto *m = mosquitto_new(s->client_id, s->clean_session, c);
    mqtt_refuse_socketpair(false);
    if (!m) {
        snprintf(why, sizeof(why), "cannot create the MQTT client: %s", cc_strerror(-errno));
        conn_lost(c, why);
        return;
    }
    c->mosq = m;
    c->dead = false;
    c->tls_verify = X509_V_OK;
    mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, s->protocol);
    mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
    if (s->username) mosquitto_username_pw_set(m, s->username, s->password);
    if (s->will_topic)
        mosquitto_will_set(m, s->will_topic, (int)s->will_len, s->will_payload, s->will_qos,
                           s->will_retain);
    if (c->tls) {
        /* one context per worker and broker, its trust store read once (mqtt_lua.c) */
        mosquitto_void_option(m, MOSQ_OPT_SSL_CTX, c->tls->ssl_ctx);
        mosquitto_int_option(m, MOSQ_OPT_SSL_CTX_WITH_DEFAULTS, 0);
    }
    mosquitto_connect_v5_callback_set(m, on_connect);
    mosquitto_disconnect_v5_callback_set(m, on_disconnect);
    mosquitto_publish_v5_callback_set(m, on_publish);
    mosquitto_message_v5_callback_set(m, on_message);
    mosquitto_subscribe_v5_callback_set(m, on_subscribe);
    mosquitto_unsubscribe_v5_callback_set(m, on_unsubscribe);
    c->state = MQTT_CONNECTING;
    mqtt_enter(c);
    errno = 0;
    tls_watch();
    int rc = mosquitto_connect_bind_async(m, ip, s->port, s->keepalive, NULL);
    int err = errno;
    tls_seen(c);
    if (rc != MOSQ_ERR_SUCCESS) {
        reason(c, rc, err, why, sizeof(why));
        conn_lost(c, why);
    } else {
        c->fd = mosquitto_socket(m);
        struct mqtt_poll *p = cc_xcalloc(1, sizeof(*p));
        p->c = c;
        if (uv_poll_init_socket(c->mv->vm->loop, &p->h, c->fd) != 0) {
            cc_free(p);
            snprintf(why, sizeof(why), "cannot watch the MQTT socket");
            conn_lost(c, why);
        } else {
            c->poll = p;
            c->events = 0;
        }
    }
    mqtt_leave(c);
}

static void on_resolved(const struct cc_resolve_result *res, void *data)
{
    struct mqtt_client *c = data;
    c->resolving = NULL;
    if (c->state != MQTT_RESOLVING) return;
    struct mqtt_vm *mv = c->mv;
    mv->depth++;
    if (res->status < 0) {
        conn_lost(c, res->error);
    } else {
        /* IPv4 first: a name such as "localhost" often lists ::1 first, where test brokers
         * listening on 127.0.0.1 are not */
        const union cc_sockaddr *a = &res->addrs[0];
        for (size_t i = 0; i < res->n; i++) {
            if (res->addrs[i].sa.sa_family == AF_INET) {
                a = &res->addrs[i];
                break;
            }
        }
        char ip[INET6_ADDRSTRLEN];
        if (a->sa.sa_family == AF_INET)
            inet_ntop(AF_INET, &a->in.sin_addr, ip, sizeof(ip));
        else
            inet_ntop(AF_INET6, &a->in6.sin6_addr, ip, sizeof(ip));
        start_mosquitto(c, ip);
    }
    mv->depth--;
    flush_done(mv);
}

void mqtt_connect_start(struct mqtt_client *c, struct mqtt_op *op)
{
    struct mqtt_vm *mv = c->mv;
    if (op) mqtt_op_pend(op);
    c->state = MQTT_RESOLVING;
    c->t_connect = cc_now_ns();
    c->deadline_ms =
        c->set.connect_timeout_ms ? uv_now(mv->vm->loop) + c->set.connect_timeout_ms : 0;
    int rc = cc_resolve(&mv->resolver, c->set.host, c->set.port, on_resolved, c, &c->resolving);
    if (rc < 0) {
        c->resolving = NULL;
        char why[400];
        snprintf(why, sizeof(why), "cannot resolve '%s': %s", c->set.host, cc_strerror(rc));
        conn_lost(c, why);
    }
}

/* ---- the tick: keep-alives and timeouts ------------------------------------------------------ */

static const char *ack_name(uint8_t kind)
{
    switch (kind) {
    case MQTT_OP_PUBLISH:
        return "publish acknowledgement";
    case MQTT_OP_SUBSCRIBE:
        return "SUBACK";
    case MQTT_OP_UNSUBSCRIBE:
        return "UNSUBACK";
    case MQTT_OP_DISCONNECT:
        return "end of the connection";
    default:
        return "answer";
    }
}

static void on_tick(uv_timer_t *t)
{
    struct mqtt_vm *mv = t->data;
    uint64_t now = uv_now(mv->vm->loop);
    mv->depth++; /* users resume once the sweep is over */
    for (struct mqtt_client *c = mv->clients, *next; c; c = next) {
        next = c->next;
        if ((c->state == MQTT_RESOLVING || c->state == MQTT_CONNECTING) && c->deadline_ms &&
            now >= c->deadline_ms) {
            char why[400], hp[300];
            snprintf(why, sizeof(why), "connect to %s timed out after %.1f s",
                     host_port(c, hp, sizeof(hp)), c->set.connect_timeout_ms / 1000.0);
            mqtt_enter(c);
            conn_lost(c, why);
            mqtt_leave(c);
            continue;
        }
        if (c->state == MQTT_CONNECTED && c->mosq && !c->dead) {
            mqtt_enter(c);
            errno = 0;
            c->last_rc = mosquitto_loop_misc(c->mosq);
            c->last_errno = errno;
            mqtt_leave(c);
        }
        for (struct mqtt_op *op = c->ops, *onext; op; op = onext) {
            onext = op->next;
            if (!op->deadline_ms || now < op->deadline_ms) continue;
            char why[200];
            snprintf(why, sizeof(why), "no %s within %.1f s", ack_name(op->kind),
                     c->set.timeout_ms / 1000.0);
            mqtt_op_complete(op, why);
            onext = c->ops; /* the list changed: start over (the expired are gone) */
        }
    }
    mv->depth--;
    flush_done(mv);
}

/* ---- clients ----------------------------------------------------------------------------------
 */

static void settings_free(struct mqtt_settings *s)
{
    cc_free(s->host);
    cc_free(s->client_id);
    cc_free(s->username);
    cc_free(s->password);
    cc_free(s->will_topic);
    cc_free(s->will_payload);
    cc_free(s->ca_file);
    cc_free(s->cert_file);
    cc_free(s->key_file);
    memset(s, 0, sizeof(*s));
}

struct mqtt_client *mqtt_client_new(struct mqtt_vm *mv, struct mqtt_settings *set)
{
    struct mqtt_client *c = cc_xcalloc(1, sizeof(*c));
    c->mv = mv;
    c->set = *set;
    memset(set, 0, sizeof(*set));
    c->fd = -1;
    c->next = mv->clients;
    if (mv->clients) mv->clients->prev = c;
    mv->clients = c;
    return c;
}

static void subs_clear(struct mqtt_client *c)
{
    for (uint32_t i = 0; i < c->nsubs; i++) {
        cc_free(c->subs[i].filter);
        cc_free(c->subs[i].name);
    }
    c->nsubs = 0;
}

static void maybe_free(struct mqtt_client *c)
{
    if (!c->released || c->depth || c->polls_closing || c->mosq || c->resolving) return;
    subs_clear(c);
    cc_free(c->subs);
    settings_free(&c->set);
    cc_tls_ctx_unref(c->tls);
    cc_free(c->error);
    cc_free(c);
}

void mqtt_client_close(struct mqtt_client *c, const char *why)
{
    if (c->depth > 0) { /* inside libmosquitto (a handler closed it): on the way out */
        c->close_asked = true;
        return;
    }
    if (c->state != MQTT_IDLE || c->mosq || c->resolving) {
        char hp[300], msg[400];
        if (!why) {
            snprintf(msg, sizeof(msg), "the client closed its connection to %s",
                     host_port(c, hp, sizeof(hp)));
            why = msg;
        }
        conn_lost(c, why);
    }
    destroy_mosq(c);
}

void mqtt_client_release(struct mqtt_client *c)
{
    c->released = true;
    if (c->mv && !c->mv->closing) {
        /* no user waits on a client Lua let go of, so nothing is to resume (and nothing
         * must run: this is a __gc) */
        mqtt_client_close(c, NULL);
        unlink_client(c);
    }
    maybe_free(c);
}

struct mqtt_sub *mqtt_sub_find(struct mqtt_client *c, const char *filter)
{
    for (uint32_t i = 0; i < c->nsubs; i++)
        if (strcmp(c->subs[i].filter, filter) == 0) return &c->subs[i];
    return NULL;
}

void mqtt_sub_remove(struct mqtt_client *c, struct mqtt_sub *s)
{
    size_t i = (size_t)(s - c->subs);
    if (i >= c->nsubs) return;
    cc_free(s->filter);
    cc_free(s->name);
    memmove(s, s + 1, (c->nsubs - i - 1) * sizeof(*s));
    c->nsubs--;
}
