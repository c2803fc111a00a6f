/* SPDX-License-Identifier: MIT */
/* dist/worker.c: the worker state machine of Locust's distributed protocol; see worker.h. */
#include "dist/worker.h"
#include "dist/stats_wire.h"
#include "core/err.h"
#include "core/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <unistd.h>
#include <zmq.h>

enum wstate {
    W_CONNECTING, /* client_ready sent, waiting for the ack */
    W_READY,      /* acked, no users asked for */
    W_SPAWNING,   /* a spawn message is being carried out */
    W_RUNNING,    /* the users of the last spawn run */
    W_STOPPING,   /* on_stop: the runner stops its users */
    W_CLOSED,
};

static const char *const wstate_names[] = {"ready",   "ready",    "spawning",
                                           "running", "stopping", "stopped"};

struct cc_dist_worker {
    uv_loop_t *loop;
    struct cc_dist_worker_opts o; /* strings below are our copies */
    char **class_names;
    char *id;
    char *endpoint;
    bool ipv6;
    struct cc_zcurve curve;
    const struct cc_dist_worker_cbs *cbs;
    void *data;

    struct cc_zsock *z;
    uv_timer_t hb_timer;    /* heartbeats, intervals of the delta, the master's liveness */
    uv_timer_t stats_timer; /* reports */
    uv_timer_t ready_timer; /* client_ready retries */
    unsigned open_handles;  /* timers and sockets not yet closed */

    enum wstate state;
    int64_t index;
    bool acked;           /* at least one ack: heartbeats and reports go out */
    bool master_cicada;   /* the ack came from a cicada master */
    bool master_beats;    /* the master sends heartbeats: it can be timed out */
    uint64_t heard_ns;    /* the last message from the master */
    unsigned ready_tries; /* client_ready sent since the last ack */
    double last_spawn_ts;

    uint32_t *users; /* [nclasses] running now, as the runner reports */
    struct cc_agg delta;
    uint64_t interval_ns; /* when the delta's open interval began */
    struct cc_dbuf buf;

    uint64_t cpu_us, cpu_wall_ns; /* the last CPU sample */
    double cpu;
    bool closing;
};

#define LOG "dist.worker"

static const struct cc_dist_worker_cbs no_cbs;

static const char *state_name(const struct cc_dist_worker *w)
{
    return wstate_names[w->state];
}

static void set_state(struct cc_dist_worker *w, enum wstate st)
{
    if (w->state == st) return;
    cc_debug(LOG, "state %s -> %s", wstate_names[w->state], wstate_names[st]);
    w->state = st;
}

void cc_dist_worker_opts_init(struct cc_dist_worker_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->master_host = "127.0.0.1";
    o->master_port = 5557;
    o->heartbeat_interval_s = 1;
    o->master_timeout_s = 60;
    o->ready_retry_s = 5;
    o->ready_retries = 60;
    o->stats_interval_s = 3;
    o->max_exception_msgs = 100;
    o->linger_ms = 1000;
}

/* ---- sending ---------------------------------------------------------------------------- */

static void master_lost(struct cc_dist_worker *w, const char *why);

static int send_buf(struct cc_dist_worker *w)
{
    int rv = w->z ? cc_zsock_send2(w->z, NULL, w->buf.sb.data, w->buf.sb.size) : CC_ECLOSED;
    cc_dbuf_clear(&w->buf);
    if (rv) cc_warn(LOG, "could not send to the master: %s", cc_strerror(rv));
    return rv;
}

static void send_empty(struct cc_dist_worker *w, const char *type)
{
    cc_dmsg_pack_empty(&w->buf, type, w->id);
    send_buf(w);
}

static void sample_cpu(struct cc_dist_worker *w)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return;
    uint64_t us = (uint64_t)ru.ru_utime.tv_sec * 1000000u + (uint64_t)ru.ru_utime.tv_usec +
                  (uint64_t)ru.ru_stime.tv_sec * 1000000u + (uint64_t)ru.ru_stime.tv_usec;
    uint64_t now = cc_now_ns();
    if (w->cpu_wall_ns && now > w->cpu_wall_ns) {
        double pct = (double)(us - w->cpu_us) * 1000.0 / (double)(now - w->cpu_wall_ns) * 100.0;
        w->cpu = pct / (w->o.cpu_threads ? w->o.cpu_threads : 1);
    }
    w->cpu_us = us;
    w->cpu_wall_ns = now;
}

static uint64_t memory_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;
    if (!f) return 0;
    if (fscanf(f, "%lu %lu", &size, &resident) != 2) resident = 0;
    fclose(f);
    long page = sysconf(_SC_PAGESIZE);
    return (uint64_t)resident * (uint64_t)(page > 0 ? page : 4096);
}

static void send_heartbeat(struct cc_dist_worker *w)
{
    sample_cpu(w);
    cc_dmsg_pack_heartbeat(&w->buf, state_name(w), w->cpu, memory_bytes(), CC_VERSION, w->id);
    send_buf(w);
}

static void reset_delta(struct cc_dist_worker *w)
{
    cc_agg_reset(&w->delta, cc_wall_s());
    w->interval_ns = cc_now_ns();
    cc_agg_open_interval(&w->delta, w->interval_ns);
}

/* Exceptions as `exception` messages, then the statistics as one `stats` message. */
static void report(struct cc_dist_worker *w)
{
    if (!w->z || !w->acked) return;
    if (w->cbs->take_stats) w->cbs->take_stats(w, &w->delta, w->data);
    if (w->closing && !w->z) return;

    struct cc_agg *a = &w->delta;
    for (size_t i = 0; i < a->exc_keys.count; i++) {
        const struct cc_exception *x = &a->excs[i];
        if (!x->count) continue;
        if (w->master_cicada) {
            cc_dmsg_pack_exception(&w->buf, x->key->part[0], x->key->part[1], x->count, w->id);
            send_buf(w);
            continue;
        }
        /* a Locust master counts one per message */
        uint64_t n = x->count < w->o.max_exception_msgs ? x->count : w->o.max_exception_msgs;
        if (n < x->count)
            cc_warn(LOG, "sending %llu of %llu occurrences of an exception to the master",
                    (unsigned long long)n, (unsigned long long)x->count);
        for (uint64_t k = 0; k < n; k++) {
            cc_dmsg_pack_exception(&w->buf, x->key->part[0], x->key->part[1], 1, w->id);
            send_buf(w);
        }
    }
    struct cc_wire_report r = {
        .nclasses = w->o.nclasses,
        .class_names = (const char *const *)w->class_names,
        .class_users = w->users,
        .cicada_hist = w->o.hist == CC_DIST_HIST_ALWAYS ||
                       (w->o.hist == CC_DIST_HIST_AUTO && w->master_cicada),
    };
    cc_wire_stats_msg(&w->buf, a, &r, w->id);
    send_buf(w);
    reset_delta(w);
}

/* ---- the socket ------------------------------------------------------------------------- */

static void on_recv(struct cc_zsock *z, const struct cc_zframe *f, size_t n, void *data);

static void zsock_closed(void *data)
{
    struct cc_dist_worker *w = data;
    if (--w->open_handles == 0) {
        cc_agg_release(&w->delta);
        cc_dbuf_release(&w->buf);
        for (size_t i = 0; i < w->o.nclasses; i++)
            cc_free(w->class_names[i]);
        cc_free(w->class_names);
        cc_free(w->users);
        cc_free(w->id);
        cc_free(w->endpoint);
        cc_free((char *)w->o.version);
        cc_free((char *)w->o.master_host);
        cc_free(w->curve.allowed);
        const struct cc_dist_worker_cbs *cbs = w->cbs;
        void *d = w->data;
        cc_free(w);
        if (cbs->on_closed) cbs->on_closed(d);
    }
}

static void timer_closed(uv_handle_t *h)
{
    zsock_closed(h->data);
}

static void zsock_error(struct cc_zsock *z, int err, void *data)
{
    (void)z;
    struct cc_dist_worker *w = data;
    cc_error(LOG, "messages to the master could not be sent: %s", cc_strerror(err));
    master_lost(w, "sending to the master failed after every retry");
}

static int open_socket(struct cc_dist_worker *w, int linger_ms)
{
    struct cc_zsock_opts zo = {
        .type = ZMQ_DEALER,
        .identity = w->id,
        .ipv6 = w->ipv6,
        .linger_ms = linger_ms,
        .curve = w->o.curve ? &w->curve : NULL,
    };
    int rv = cc_zsock_new(w->loop, &zo, on_recv, zsock_error, w, &w->z);
    if (rv) return rv;
    w->open_handles++;
    rv = cc_zsock_connect(w->z, w->endpoint);
    if (rv) {
        cc_zsock_close(w->z, zsock_closed, w);
        w->z = NULL;
    }
    return rv;
}

static void close_socket(struct cc_dist_worker *w)
{
    if (!w->z) return;
    cc_zsock_close(w->z, zsock_closed, w);
    w->z = NULL;
}

/* Re-creates the DEALER (Locust's reset_connection); queued messages are dropped. */
static void reconnect(struct cc_dist_worker *w, const char *why)
{
    cc_info(LOG, "resetting the connection to the master (%s)", why);
    close_socket(w);
    int rv = open_socket(w, w->o.linger_ms);
    if (rv) {
        cc_error(LOG, "cannot reconnect to %s: %s", w->endpoint, cc_strerror(rv));
        master_lost(w, "the connection could not be re-created");
    }
}

static void send_ready(struct cc_dist_worker *w)
{
    cc_dmsg_pack_client_ready(&w->buf, w->o.version, w->id);
    send_buf(w);
}

static void ready_cb(uv_timer_t *t);

/* Sends client_ready and waits for the ack. */
static void join(struct cc_dist_worker *w)
{
    set_state(w, W_CONNECTING);
    w->ready_tries = 1;
    send_ready(w);
    uint64_t ms = (uint64_t)(w->o.ready_retry_s * 1000);
    uv_timer_start(&w->ready_timer, ready_cb, ms ? ms : 1, 0);
}

static void ready_cb(uv_timer_t *t)
{
    struct cc_dist_worker *w = t->data;
    if (w->state != W_CONNECTING || w->closing) return;
    if (w->o.ready_retries && w->ready_tries >= w->o.ready_retries) {
        master_lost(w, "the master did not answer client_ready");
        return;
    }
    cc_log(w->ready_tries < 3 ? CC_LOG_DEBUG : CC_LOG_WARNING, LOG,
           "no ack from the master at %s yet (try %u)", w->endpoint, w->ready_tries);
    /* a fresh socket, so client_ready does not pile up in the queue of one that never connected */
    close_socket(w);
    if (open_socket(w, 0) != 0) {
        master_lost(w, "the connection could not be re-created");
        return;
    }
    w->ready_tries++;
    send_ready(w);
    uint64_t ms = (uint64_t)(w->o.ready_retry_s * 1000);
    uv_timer_start(&w->ready_timer, ready_cb, ms ? ms : 1, 0);
}

static void master_lost(struct cc_dist_worker *w, const char *why)
{
    if (w->closing) return;
    cc_error(LOG, "lost the master: %s", why);
    uv_timer_stop(&w->ready_timer);
    uv_timer_stop(&w->hb_timer);
    uv_timer_stop(&w->stats_timer);
    w->acked = false;
    if (w->cbs->on_master_lost)
        w->cbs->on_master_lost(w, why, w->data);
    else
        cc_dist_worker_close(w, false);
}

static void hb_cb(uv_timer_t *t)
{
    struct cc_dist_worker *w = t->data;
    uint64_t now = cc_now_ns();
    if (w->master_beats && w->o.master_timeout_s > 0 &&
        (double)(now - w->heard_ns) / 1e9 > w->o.master_timeout_s) {
        char why[96];
        snprintf(why, sizeof(why), "no heartbeat from the master in %.0f seconds",
                 w->o.master_timeout_s);
        master_lost(w, why);
        return;
    }
    if (now - w->interval_ns >= 1000000000u) {
        cc_agg_close_interval(&w->delta, now);
        cc_agg_open_interval(&w->delta, now);
        w->interval_ns = now;
    }
    if (w->acked) send_heartbeat(w);
}

static void stats_cb(uv_timer_t *t)
{
    report(t->data);
}

static void start_timers(struct cc_dist_worker *w)
{
    uint64_t hb = (uint64_t)(w->o.heartbeat_interval_s * 1000);
    uint64_t st = (uint64_t)(w->o.stats_interval_s * 1000);
    if (!uv_is_active((uv_handle_t *)&w->hb_timer))
        uv_timer_start(&w->hb_timer, hb_cb, hb ? hb : 1, hb ? hb : 1);
    if (!uv_is_active((uv_handle_t *)&w->stats_timer))
        uv_timer_start(&w->stats_timer, stats_cb, st ? st : 1, st ? st : 1);
}

/* ---- messages from the master ----------------------------------------------------------- */

static void on_ack(struct cc_dist_worker *w, const struct cc_dmsg *m)
{
    w->index = m->u.ack.index;
    w->master_cicada = m->u.ack.cicada != NULL;
    /* a cicada master heartbeats from its ack on: if it dies before its first heartbeat it is
     * still timed out (the ack counts as hearing from it) */
    if (w->master_cicada) w->master_beats = true;
    uv_timer_stop(&w->ready_timer);
    w->ready_tries = 0;
    bool first = !w->acked;
    w->acked = true;
    if (w->state == W_CONNECTING) set_state(w, W_READY);
    if (first)
        cc_info(LOG, "connected to the %s master at %s as %s (index %lld)",
                w->master_cicada ? "cicada" : "Locust", w->endpoint, w->id, (long long)w->index);
    start_timers(w);
    if (w->cbs->on_ready) w->cbs->on_ready(w, w->index, w->data);
}

static void on_spawn(struct cc_dist_worker *w, const struct cc_dmsg *m)
{
    /* Locust answers every spawn message with `spawning`, even one it then discards */
    send_empty(w, "spawning");
    if (m->u.spawn.timestamp <= w->last_spawn_ts) {
        cc_info(LOG, "discarding a spawn message no newer than the last one");
        return;
    }
    if (w->state == W_STOPPING) {
        cc_warn(LOG, "discarding a spawn message that came while stopping");
        return;
    }
    w->last_spawn_ts = m->u.spawn.timestamp;
    bool new_test = w->state != W_SPAWNING && w->state != W_RUNNING;
    if (new_test) reset_delta(w);
    set_state(w, W_SPAWNING);

    const struct cc_dcounts *c = &m->u.spawn.classes;
    uint32_t *counts = cc_xcalloc(w->o.nclasses + 1, sizeof(*counts));
    const char **unknown = cc_xcalloc(c->n + 1, sizeof(*unknown));
    size_t nunknown = 0;
    for (size_t i = 0; i < c->n; i++) {
        size_t k = 0;
        while (k < w->o.nclasses && strcmp(w->class_names[k], c->names[i]) != 0)
            k++;
        if (k < w->o.nclasses)
            counts[k] = c->counts[i] > UINT32_MAX ? UINT32_MAX : (uint32_t)c->counts[i];
        else if (c->counts[i])
            unknown[nunknown++] = c->names[i];
    }
    for (size_t i = 0; i < nunknown; i++)
        cc_warn(LOG, "the master asks for users of class %s, which this script does not have",
                unknown[i]);
    struct cc_dist_spawn s = {
        .timestamp = m->u.spawn.timestamp,
        .new_test = new_test,
        .counts = counts,
        .unknown = unknown,
        .nunknown = nunknown,
        .classes = c,
        .host = m->u.spawn.host,
        .stop_timeout = m->u.spawn.stop_timeout,
        .has_stop_timeout = m->u.spawn.has_stop_timeout,
        .tags = m->u.spawn.tags,
        .ntags = m->u.spawn.ntags,
        .has_tags = m->u.spawn.has_tags,
        .exclude_tags = m->u.spawn.exclude_tags,
        .nexclude_tags = m->u.spawn.nexclude_tags,
        .has_exclude_tags = m->u.spawn.has_exclude_tags,
        .parsed_options = m->u.spawn.parsed_options,
    };
    if (w->cbs->on_spawn) w->cbs->on_spawn(w, &s, w->data);
    cc_free(counts);
    cc_free(unknown);
}

static void handle(struct cc_dist_worker *w, const struct cc_dmsg *m)
{
    switch (m->type) {
    case CC_DMSG_ACK:
        on_ack(w, m);
        break;
    case CC_DMSG_HEARTBEAT:
        w->master_beats = true;
        break;
    case CC_DMSG_SPAWN:
        on_spawn(w, m);
        break;
    case CC_DMSG_SPAWNING_COMPLETE:
        if (w->cbs->on_all_spawned)
            w->cbs->on_all_spawned(w,
                                   (uint64_t)(m->u.spawning_complete.user_count > 0
                                                  ? m->u.spawning_complete.user_count
                                                  : 0),
                                   w->data);
        break;
    case CC_DMSG_STOP:
        if (w->state == W_STOPPING) break;
        cc_info(LOG, "the master asks to stop");
        set_state(w, W_STOPPING);
        if (w->cbs->on_stop)
            w->cbs->on_stop(w, w->data);
        else
            cc_dist_worker_stopped(w);
        break;
    case CC_DMSG_QUIT:
        cc_info(LOG, "got quit message from master, shutting down");
        if (w->cbs->on_quit)
            w->cbs->on_quit(w, w->data);
        else
            cc_dist_worker_close(w, true);
        break;
    case CC_DMSG_RECONNECT:
        reconnect(w, "the master asked to reconnect");
        break;
    default:
        if (w->cbs->on_message)
            w->cbs->on_message(w, m, w->data);
        else
            cc_warn(LOG, "unknown message type from the master: %s", m->type_name);
        break;
    }
}

static void on_recv(struct cc_zsock *z, const struct cc_zframe *f, size_t n, void *data)
{
    struct cc_dist_worker *w = data;
    if (z != w->z || w->closing) return;
    w->heard_ns = cc_now_ns();
    if (n != 1) {
        reconnect(w, "a message of several frames from the master");
        return;
    }
    struct cc_dmsg m;
    char err[160];
    int rv = cc_dmsg_decode(&m, f[0].data, f[0].len, CC_DMSG_TO_WORKER, err, sizeof(err));
    if (rv) {
        cc_error(LOG, "undecodable message from the master (%s)", err);
        reconnect(w, "an undecodable message");
        return;
    }
    handle(w, &m);
    cc_dmsg_release(&m);
}

/* ---- the runner's calls ----------------------------------------------------------------- */

static void random_hex(char *out, size_t nbytes)
{
    unsigned char raw[32];
    CC_ASSERT(nbytes <= sizeof(raw));
    if (getrandom(raw, nbytes, 0) != (ssize_t)nbytes) {
        uint64_t x = cc_now_ns() ^ ((uint64_t)getpid() << 32);
        for (size_t i = 0; i < nbytes; i++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            raw[i] = (unsigned char)(x >> 56);
        }
    }
    for (size_t i = 0; i < nbytes; i++)
        sprintf(out + 2 * i, "%02x", raw[i]);
}

int cc_dist_worker_new(uv_loop_t *loop, const struct cc_dist_worker_opts *o,
                       const struct cc_dist_worker_cbs *cbs, void *data,
                       struct cc_dist_worker **out)
{
    if (!o->master_host || !*o->master_host || o->master_port <= 0 || o->master_port > 65535 ||
        (o->nclasses && !o->class_names))
        return CC_ECONFIG;
    struct cc_dist_worker *w = cc_xcalloc(1, sizeof(*w));
    w->loop = loop;
    w->o = *o;
    w->cbs = cbs;
    w->data = data;
    w->index = -1;
    w->o.version = o->version ? cc_xstrdup(o->version) : NULL;
    w->o.master_host = cc_xstrdup(o->master_host);
    w->class_names = cc_xcalloc(o->nclasses + 1, sizeof(char *));
    for (size_t i = 0; i < o->nclasses; i++)
        w->class_names[i] = cc_xstrdup(o->class_names[i]);
    w->o.class_names = (const char *const *)w->class_names;
    w->users = cc_xcalloc(o->nclasses + 1, sizeof(*w->users));
    if (o->client_id) {
        w->id = cc_xstrdup(o->client_id);
    } else {
        char host[256] = "localhost";
        gethostname(host, sizeof(host) - 1);
        host[sizeof(host) - 1] = '\0';
        w->id = cc_xmalloc(strlen(host) + 34);
        sprintf(w->id, "%s_", host);
        random_hex(w->id + strlen(w->id), 16);
    }
    w->ipv6 = strchr(o->master_host, ':') != NULL;
    size_t elen = strlen(o->master_host) + 32;
    w->endpoint = cc_xmalloc(elen);
    snprintf(w->endpoint, elen, w->ipv6 ? "tcp://[%s]:%d" : "tcp://%s:%d", o->master_host,
             o->master_port);
    if (o->curve) {
        w->curve = *o->curve;
        w->curve.server = false;
        w->curve.allowed = NULL;
        w->curve.nallowed = 0;
        w->o.curve = &w->curve;
    }
    cc_agg_init(&w->delta, false);
    cc_dbuf_init(&w->buf);
    uv_timer_init(loop, &w->hb_timer);
    uv_timer_init(loop, &w->stats_timer);
    uv_timer_init(loop, &w->ready_timer);
    w->hb_timer.data = w->stats_timer.data = w->ready_timer.data = w;
    w->open_handles = 3;
    reset_delta(w);
    w->heard_ns = cc_now_ns();

    int rv = open_socket(w, w->o.linger_ms);
    if (rv) {
        w->closing = true;
        set_state(w, W_CLOSED);
        w->cbs = &no_cbs; /* a failed constructor calls nothing back */
        uv_close((uv_handle_t *)&w->hb_timer, timer_closed);
        uv_close((uv_handle_t *)&w->stats_timer, timer_closed);
        uv_close((uv_handle_t *)&w->ready_timer, timer_closed);
        return rv;
    }
    cc_info(LOG, "joining the master at %s as %s", w->endpoint, w->id);
    join(w);
    *out = w;
    return 0;
}

const char *cc_dist_worker_id(const struct cc_dist_worker *w)
{
    return w->id;
}

int64_t cc_dist_worker_index(const struct cc_dist_worker *w)
{
    return w->index;
}

const char *cc_dist_worker_state(const struct cc_dist_worker *w)
{
    return state_name(w);
}

bool cc_dist_worker_master_is_cicada(const struct cc_dist_worker *w)
{
    return w->master_cicada;
}

struct cc_agg *cc_dist_worker_delta(struct cc_dist_worker *w)
{
    return &w->delta;
}

void cc_dist_worker_set_users(struct cc_dist_worker *w, const uint32_t *counts)
{
    memcpy(w->users, counts, w->o.nclasses * sizeof(*w->users));
}

void cc_dist_worker_spawning_complete(struct cc_dist_worker *w)
{
    if (w->closing) return;
    if (w->state == W_SPAWNING) set_state(w, W_RUNNING);
    cc_dmsg_pack_spawning_complete(&w->buf, w->o.nclasses, (const char *const *)w->class_names,
                                   w->users, CC_VERSION, w->id);
    send_buf(w);
}

void cc_dist_worker_stopped(struct cc_dist_worker *w)
{
    if (w->closing || w->state != W_STOPPING) return;
    report(w);
    send_empty(w, "client_stopped");
    w->last_spawn_ts = 0;
    join(w);
}

void cc_dist_worker_report(struct cc_dist_worker *w)
{
    if (!w->closing) report(w);
}

int cc_dist_worker_send(struct cc_dist_worker *w, const char *type, const void *data, size_t len)
{
    if (w->closing || !w->z) return CC_ECLOSED;
    cc_dmsg_pack_raw(&w->buf, type, data, len, w->id);
    return send_buf(w);
}

void cc_dist_worker_close(struct cc_dist_worker *w, bool quit)
{
    if (w->closing) return;
    if (quit && w->z && w->acked) {
        report(w);
        if (w->closing) return; /* take_stats closed it */
        send_empty(w, "quit");
    }
    w->closing = true;
    set_state(w, W_CLOSED);
    uv_close((uv_handle_t *)&w->hb_timer, timer_closed);
    uv_close((uv_handle_t *)&w->stats_timer, timer_closed);
    uv_close((uv_handle_t *)&w->ready_timer, timer_closed);
    close_socket(w);
}
