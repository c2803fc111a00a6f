/* SPDX-License-Identifier: MIT */
/* dist/master.c: the master state machine of Locust's distributed protocol; see master.h. */
#include "dist/master.h"
#include "dist/stats_wire.h"
#include "runner/dispatch.h"
#include "core/err.h"
#include "core/log.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define LOG     "dist.master"
#define POLL_MS 50 /* how often waits re-check their condition */

static const char *const node_state_names[] = {"ready",    "spawning", "running", "cleanup",
                                               "stopping", "stopped",  "missing"};

const char *cc_dist_node_state_name(enum cc_dist_node_state s)
{
    return (unsigned)s < CC_ARRAY_LEN(node_state_names) ? node_state_names[s] : "unknown";
}

enum mstate { M_READY, M_SPAWNING, M_RUNNING, M_STOPPING, M_STOPPED };
static const char *const mstate_names[] = {"ready", "spawning", "running", "stopping", "stopped"};

enum wait { WAIT_NONE, WAIT_REPORTS, WAIT_STOP, WAIT_QUIT };

struct mnode {
    struct cc_dist_node pub; /* strings and arrays below back its pointers */
    char *id, *host, *version;
    uint32_t *users;    /* [nclasses] */
    uint32_t *assigned; /* [nclasses] */
    bool beats;         /* answers to heartbeats are expected (2.19+, cicada) */
    bool all_spawned;   /* understands the master's spawning_complete (2.29+, cicada) */
    bool cpu_warned;
    bool stop_pending; /* asked to stop, no client_stopped yet */
};

struct index_entry {
    char *id;
    uint64_t index;
};

struct cc_dist_master {
    uv_loop_t *loop;
    struct cc_dist_master_opts o;
    struct cc_zcurve curve;
    const struct cc_dist_master_cbs *cbs;
    void *data;
    struct cc_zsock *z;
    int port;
    uv_timer_t hb_timer, ramp_timer, wait_timer;
    unsigned open_handles;

    struct mnode **nodes;
    size_t nnodes, nodes_cap;
    struct index_entry *indexes; /* every id ever acked, for stable indexes */
    size_t nindexes, indexes_cap;
    const struct cc_dist_node **view;
    size_t view_cap;

    enum mstate state;
    enum wait wait;
    uint64_t wait_deadline_ns;

    /* the test */
    size_t nclasses;
    char **class_names;
    double *weights;
    uint32_t *fixed;
    struct cc_dispatch d;
    struct mnode **slots; /* dispatch worker slot -> node */
    size_t nslots;
    uint64_t target;
    double rate;
    char *host;
    double stop_timeout;
    bool has_stop_timeout;
    char *options;
    size_t options_len;
    bool ramping;
    double last_ts;

    struct cc_wire_keys keys;
    struct cc_shard shard;
    struct cc_dbuf buf;
    bool expected_fired;
    bool closing;
};

static const struct cc_dist_master_cbs no_cbs;

void cc_dist_master_opts_init(struct cc_dist_master_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->bind_host = "*";
    o->bind_port = 5557;
    o->heartbeat_interval_s = 1;
    o->heartbeat_liveness = 3;
    o->heartbeat_dead = -60;
    o->report_wait_s = 1;
    o->quit_wait_s = 0.5;
    o->stop_wait_extra_s = 60;
    o->linger_ms = 500;
}

static void set_state(struct cc_dist_master *m, enum mstate st)
{
    if (m->state == st) return;
    cc_debug(LOG, "state %s -> %s", mstate_names[m->state], mstate_names[st]);
    m->state = st;
}

static bool test_active(const struct cc_dist_master *m)
{
    return m->state == M_SPAWNING || m->state == M_RUNNING;
}

static bool live(const struct mnode *n)
{
    return n->pub.state == CC_DN_READY || n->pub.state == CC_DN_SPAWNING ||
           n->pub.state == CC_DN_RUNNING;
}

static uint64_t ms_of(double s)
{
    return s > 0 ? (uint64_t)(s * 1000) : 0;
}

/* ---- sending ---------------------------------------------------------------------------- */

static void send_to(struct cc_dist_master *m, const struct mnode *n)
{
    if (m->z) {
        int rv = cc_zsock_send2(m->z, n->id, m->buf.sb.data, m->buf.sb.size);
        if (rv) cc_warn(LOG, "could not send to worker %s: %s", n->id, cc_strerror(rv));
    }
    cc_dbuf_clear(&m->buf);
}

static void send_empty(struct cc_dist_master *m, const struct mnode *n, const char *type)
{
    cc_dmsg_pack_empty(&m->buf, type, n->id);
    send_to(m, n);
}

static void send_spawn(struct cc_dist_master *m, struct mnode *n)
{
    double now = cc_wall_s();
    /* workers discard spawn messages not newer than the last one */
    m->last_ts = now > m->last_ts ? now : m->last_ts + 1e-3;
    struct cc_dspawn s = {
        .timestamp = m->last_ts,
        .nclasses = m->nclasses,
        .names = (const char *const *)m->class_names,
        .counts = n->assigned,
        .host = m->host,
        .stop_timeout = m->stop_timeout,
        .has_stop_timeout = m->has_stop_timeout,
        .options = m->options,
        .options_len = m->options_len,
    };
    cc_dmsg_pack_spawn(&m->buf, &s, n->id);
    send_to(m, n);
}

/* ---- nodes ------------------------------------------------------------------------------ */

static struct mnode *find(const struct cc_dist_master *m, const char *id)
{
    for (size_t i = 0; i < m->nnodes; i++)
        if (strcmp(m->nodes[i]->id, id) == 0) return m->nodes[i];
    return NULL;
}

static uint64_t index_of(struct cc_dist_master *m, const char *id)
{
    for (size_t i = 0; i < m->nindexes; i++)
        if (strcmp(m->indexes[i].id, id) == 0) return m->indexes[i].index;
    cc_grow((void **)&m->indexes, &m->indexes_cap, m->nindexes + 1, sizeof(*m->indexes));
    m->indexes[m->nindexes] = (struct index_entry){cc_xstrdup(id), m->nindexes};
    return m->nindexes++;
}

static void node_sync(struct mnode *n)
{
    n->pub.id = n->id;
    n->pub.host = n->host;
    n->pub.version = n->version;
    n->pub.users = n->users;
    n->pub.assigned = n->assigned;
}

static void node_free(struct mnode *n)
{
    cc_free(n->id);
    cc_free(n->host);
    cc_free(n->version);
    cc_free(n->users);
    cc_free(n->assigned);
    cc_free(n);
}

static void node_set_state(struct mnode *n, enum cc_dist_node_state st)
{
    if (n->pub.state == st) return;
    cc_debug(LOG, "worker %s: %s -> %s", n->id, node_state_names[n->pub.state],
             node_state_names[st]);
    n->pub.state = st;
}

static void node_clear_users(struct cc_dist_master *m, struct mnode *n)
{
    memset(n->users, 0, (m->nclasses + 1) * sizeof(*n->users));
    n->pub.user_count = 0;
}

/* Takes reported {class: count} pairs; names the test does not have are left out. */
static void node_set_users(struct cc_dist_master *m, struct mnode *n, const struct cc_dcounts *c,
                           int64_t total)
{
    node_clear_users(m, n);
    uint64_t sum = 0;
    for (size_t i = 0; i < c->n; i++) {
        sum += c->counts[i];
        for (size_t k = 0; k < m->nclasses; k++) {
            if (strcmp(m->class_names[k], c->names[i]) == 0) {
                n->users[k] = c->counts[i] > UINT32_MAX ? UINT32_MAX : (uint32_t)c->counts[i];
                break;
            }
        }
    }
    n->pub.user_count = total >= 0 ? (uint64_t)total : sum;
}

static void remove_node(struct cc_dist_master *m, struct mnode *n)
{
    for (size_t i = 0; i < m->nnodes; i++) {
        if (m->nodes[i] != n) continue;
        memmove(&m->nodes[i], &m->nodes[i + 1], (m->nnodes - i - 1) * sizeof(*m->nodes));
        m->nnodes--;
        break;
    }
    for (size_t i = 0; i < m->nslots; i++)
        if (m->slots[i] == n) m->slots[i] = NULL;
    node_free(n);
}

static size_t live_count(const struct cc_dist_master *m)
{
    size_t k = 0;
    for (size_t i = 0; i < m->nnodes; i++)
        if (live(m->nodes[i])) k++;
    return k;
}

static size_t ready_count(const struct cc_dist_master *m)
{
    size_t k = 0;
    for (size_t i = 0; i < m->nnodes; i++)
        if (m->nodes[i]->pub.state == CC_DN_READY) k++;
    return k;
}

/* Major and minor of a version string ("2.46.3" -> 2, 46); false when it is not one. */
static bool version_at_least(const char *v, int major, int minor)
{
    int a, b;
    if (!v || sscanf(v, "%d.%d", &a, &b) != 2) return false;
    return a > major || (a == major && b >= minor);
}

/* ---- dispatch --------------------------------------------------------------------------- */

struct slot_order {
    struct mnode *n;
    size_t rank; /* its position among the workers of its host */
};

static int cmp_id(const void *pa, const void *pb)
{
    return strcmp((*(struct mnode *const *)pa)->id, (*(struct mnode *const *)pb)->id);
}

static int cmp_slot(const void *pa, const void *pb)
{
    const struct slot_order *a = pa, *b = pb;
    if (a->rank != b->rank) return a->rank < b->rank ? -1 : 1;
    return strcmp(a->n->id, b->n->id);
}

/*
 * Re-assigns |users| users from scratch over the live workers, ordered by (rank within the
 * host, id) so that the dispatcher's first choice alternates between hosts.
 */
static void rebuild(struct cc_dist_master *m, uint64_t users)
{
    if (!m->class_names) return; /* no test yet */
    size_t k = 0;
    struct mnode **liven = cc_xcalloc(m->nnodes + 1, sizeof(*liven));
    for (size_t i = 0; i < m->nnodes; i++)
        if (live(m->nodes[i])) liven[k++] = m->nodes[i];
    qsort(liven, k, sizeof(*liven), cmp_id);
    struct slot_order *order = cc_xcalloc(k + 1, sizeof(*order));
    for (size_t i = 0; i < k; i++) {
        size_t rank = 0;
        for (size_t j = 0; j < i; j++)
            if (strcmp(liven[j]->host, liven[i]->host) == 0) rank++;
        order[i] = (struct slot_order){liven[i], rank};
    }
    qsort(order, k, sizeof(*order), cmp_slot);

    cc_dispatch_release(&m->d);
    cc_free(m->slots);
    m->nslots = k;
    m->slots = cc_xcalloc(k + 1, sizeof(*m->slots));
    for (size_t i = 0; i < k; i++)
        m->slots[i] = order[i].n;
    cc_dispatch_init(&m->d, (uint32_t)m->nclasses, m->weights, m->fixed, (uint32_t)(k ? k : 1));
    struct cc_dispatch_entry e;
    for (uint64_t u = 0; k && u < users; u++)
        if (!cc_dispatch_add(&m->d, &e)) break;
    cc_free(order);
    cc_free(liven);

    for (size_t i = 0; i < m->nnodes; i++)
        memset(m->nodes[i]->assigned, 0, (m->nclasses + 1) * sizeof(uint32_t));
    for (size_t s = 0; s < m->nslots; s++)
        for (size_t c = 0; c < m->nclasses; c++)
            m->slots[s]->assigned[c] = m->d.wcount[s * m->nclasses + c];
}

static void sync_assigned(struct cc_dist_master *m)
{
    for (size_t s = 0; s < m->nslots; s++) {
        if (!m->slots[s]) continue;
        for (size_t c = 0; c < m->nclasses; c++)
            m->slots[s]->assigned[c] = m->d.wcount[s * m->nclasses + c];
    }
}

static void spawn_all(struct cc_dist_master *m)
{
    for (size_t s = 0; s < m->nslots; s++)
        if (m->slots[s]) send_spawn(m, m->slots[s]);
}

static void wait_start(struct cc_dist_master *m, enum wait w, double seconds);
static void ramp_cb(uv_timer_t *t);

/* Ramps from the users assigned now to the target (the first iteration at once). */
static void resume_ramp(struct cc_dist_master *m)
{
    if (m->wait == WAIT_REPORTS) {
        uv_timer_stop(&m->wait_timer);
        m->wait = WAIT_NONE;
    }
    set_state(m, M_SPAWNING);
    m->ramping = true;
    uv_timer_start(&m->ramp_timer, ramp_cb, 0, 0);
}

static void ramp_cb(uv_timer_t *t)
{
    struct cc_dist_master *m = t->data;
    if (m->state != M_SPAWNING || m->closing) return;
    uint64_t step = m->rate >= 1 ? (uint64_t)floor(m->rate) : 1;
    uint64_t cur = cc_dispatch_total(&m->d);
    struct cc_dispatch_entry e;
    bool stuck = m->nslots == 0;
    if (!stuck && cur < m->target) {
        uint64_t want = m->target - cur < step ? m->target : cur + step;
        for (; cur < want; cur++) {
            if (!cc_dispatch_add(&m->d, &e)) {
                cc_warn(LOG,
                        "only %llu users can be spawned: every class has a fixed_count and "
                        "they are all reached",
                        (unsigned long long)cur);
                stuck = true;
                break;
            }
        }
    } else if (!stuck && cur > m->target) {
        uint64_t want = cur - m->target < step ? m->target : cur - step;
        for (; cur > want && cc_dispatch_remove(&m->d, &e); cur--) {
        }
    }
    sync_assigned(m);
    cc_debug(LOG, "sending spawn messages for %llu users to %zu workers", (unsigned long long)cur,
             m->nslots);
    spawn_all(m);
    if (cur == m->target || stuck) {
        m->ramping = false;
        wait_start(m, WAIT_REPORTS, m->o.report_wait_s);
        return;
    }
    double wait = (double)step / m->rate;
    uv_timer_start(&m->ramp_timer, ramp_cb, ms_of(wait) ? ms_of(wait) : 1, 0);
}

/* The set of live workers changed during a test: redistribute, then go on to the target. */
static void workers_changed(struct cc_dist_master *m, uint64_t keep, bool ramp_on)
{
    if (!test_active(m)) return;
    rebuild(m, keep);
    spawn_all(m);
    if (live_count(m) == 0) {
        cc_warn(LOG, "no worker is left for the test");
        uv_timer_stop(&m->ramp_timer);
        m->ramping = false;
        if (m->cbs->on_no_workers) m->cbs->on_no_workers(m, m->data);
        return;
    }
    if (ramp_on && cc_dispatch_total(&m->d) != m->target) resume_ramp(m);
}

/* ---- waits ------------------------------------------------------------------------------ */

static void wait_cb(uv_timer_t *t);

static void wait_start(struct cc_dist_master *m, enum wait w, double seconds)
{
    m->wait = w;
    m->wait_deadline_ns = cc_now_ns() + (uint64_t)(seconds > 0 ? seconds * 1e9 : 0);
    uv_timer_start(&m->wait_timer, wait_cb, 0, POLL_MS);
}

static void wait_end(struct cc_dist_master *m)
{
    m->wait = WAIT_NONE;
    uv_timer_stop(&m->wait_timer);
}

static bool reports_match(const struct cc_dist_master *m)
{
    for (size_t i = 0; i < m->nnodes; i++) {
        const struct mnode *n = m->nodes[i];
        if (!live(n)) continue;
        for (size_t c = 0; c < m->nclasses; c++)
            if (n->users[c] != n->assigned[c]) return false;
    }
    return true;
}

static bool all_stopped(const struct cc_dist_master *m)
{
    for (size_t i = 0; i < m->nnodes; i++)
        if (m->nodes[i]->stop_pending && m->nodes[i]->pub.state != CC_DN_MISSING) return false;
    return true;
}

static void spawning_complete(struct cc_dist_master *m, bool timed_out)
{
    uint64_t total = cc_dispatch_total(&m->d);
    set_state(m, M_RUNNING);
    cc_info(LOG, "%s (%llu users on %zu workers)",
            timed_out ? "Spawning is complete, but not every worker reported its users in time"
                      : "All users spawned",
            (unsigned long long)total, live_count(m));
    for (size_t i = 0; i < m->nnodes; i++) {
        struct mnode *n = m->nodes[i];
        if (!live(n) || !n->all_spawned) continue;
        cc_dmsg_pack_all_spawned(&m->buf, total, n->id);
        send_to(m, n);
    }
    if (m->cbs->on_spawning_complete) m->cbs->on_spawning_complete(m, total, m->data);
}

static void finish_stop(struct cc_dist_master *m, bool timed_out)
{
    if (timed_out) cc_error(LOG, "timeout waiting for all workers to stop");
    for (size_t i = 0; i < m->nnodes; i++)
        m->nodes[i]->stop_pending = false;
    cc_dispatch_clear(&m->d);
    sync_assigned(m);
    set_state(m, M_STOPPED);
    if (m->cbs->on_stopped) m->cbs->on_stopped(m, m->data);
}

static void wait_cb(uv_timer_t *t)
{
    struct cc_dist_master *m = t->data;
    bool late = cc_now_ns() >= m->wait_deadline_ns;
    enum wait w = m->wait;
    switch (w) {
    case WAIT_REPORTS:
        if (m->state != M_SPAWNING || m->ramping) break;
        if (!late && !reports_match(m)) return;
        wait_end(m);
        spawning_complete(m, !reports_match(m));
        return;
    case WAIT_STOP:
        if (!late && !all_stopped(m)) return;
        wait_end(m);
        finish_stop(m, !all_stopped(m));
        return;
    case WAIT_QUIT:
        if (!late) return;
        wait_end(m);
        cc_dist_master_close(m);
        return;
    case WAIT_NONE:
        break;
    }
    wait_end(m);
}

/* ---- liveness --------------------------------------------------------------------------- */

static void went_missing(struct cc_dist_master *m, struct mnode *n)
{
    cc_info(LOG, "Worker %s failed to send heartbeat, setting state to missing.", n->id);
    bool was_live = live(n);
    uint64_t lost = 0;
    for (size_t c = 0; c < m->nclasses; c++)
        lost += n->assigned[c];
    node_set_state(n, CC_DN_MISSING);
    node_clear_users(m, n);
    if (m->cbs->on_worker_missing) m->cbs->on_worker_missing(m, &n->pub, m->data);
    if (m->closing || !was_live || !test_active(m)) return;
    /* its users are gone; with rebalancing the others take them over */
    uint64_t total = cc_dispatch_total(&m->d);
    if (m->o.rebalance)
        workers_changed(m, total, true);
    else
        workers_changed(m, total > lost ? total - lost : 0, false);
}

static void hb_cb(uv_timer_t *t)
{
    struct cc_dist_master *m = t->data;
    for (size_t i = 0; i < m->nnodes && !m->closing;) {
        struct mnode *n = m->nodes[i];
        if (n->pub.state == CC_DN_MISSING && n->pub.heartbeat <= m->o.heartbeat_dead) {
            cc_info(LOG, "Worker %s has been missing too long: removing it", n->id);
            if (m->cbs->on_worker_gone)
                m->cbs->on_worker_gone(m, &n->pub, CC_DIST_GONE_DEAD, m->data);
            if (m->closing) return;
            remove_node(m, n);
            workers_changed(m, cc_dispatch_total(&m->d), true);
            continue;
        }
        if (n->pub.heartbeat < 0 && n->pub.state != CC_DN_MISSING) {
            went_missing(m, n);
        } else {
            n->pub.heartbeat--;
        }
        i++;
    }
}

/* ---- messages from workers -------------------------------------------------------------- */

static void merge_report(struct cc_dist_master *m, struct mnode *n)
{
    unsigned worker = n ? (unsigned)n->pub.index : 0;
    if (m->o.agg) cc_agg_merge(m->o.agg, &m->shard, worker);
    if (m->cbs->on_report) m->cbs->on_report(m, n ? &n->pub : NULL, &m->shard, m->data);
    cc_shard_clear(&m->shard);
}

static void on_client_ready(struct cc_dist_master *m, const char *id, const struct cc_dmsg *msg)
{
    if (msg->u.client_ready.legacy && !msg->u.client_ready.version) {
        cc_error(LOG, "An old (pre 2.0) worker tried to connect (%s). That's not going to work.",
                 id);
        return;
    }
    const char *v = msg->u.client_ready.version;
    if (v && !*v)
        cc_warn(LOG, "worker %s sent an empty version (a Locust build without one?); accepting it",
                id);
    else if (v)
        cc_debug(LOG, "worker %s runs version %s", id, v);
    struct mnode *n = find(m, id);
    bool is_new = !n;
    if (is_new) {
        n = cc_xcalloc(1, sizeof(*n));
        n->id = cc_xstrdup(id);
        const char *us = strchr(id, '_');
        n->host = us ? cc_xstrndup(id, (size_t)(us - id)) : cc_xstrdup(id);
        n->users = cc_xcalloc(m->nclasses + 1, sizeof(*n->users));
        n->assigned = cc_xcalloc(m->nclasses + 1, sizeof(*n->assigned));
        n->pub.index = index_of(m, id);
        n->pub.memory = -1;
        cc_grow((void **)&m->nodes, &m->nodes_cap, m->nnodes + 1, sizeof(*m->nodes));
        m->nodes[m->nnodes++] = n;
    }
    cc_free(n->version);
    n->version = v ? cc_xstrdup(v) : NULL;
    n->beats = n->pub.cicada || version_at_least(v, 2, 19);
    n->all_spawned = n->pub.cicada || version_at_least(v, 2, 29);
    n->pub.heartbeat = m->o.heartbeat_liveness;
    n->stop_pending = false;
    node_set_state(n, CC_DN_READY);
    node_clear_users(m, n);
    node_sync(n);
    cc_dmsg_pack_ack(&m->buf, n->pub.index, CC_VERSION, n->id);
    send_to(m, n);
    cc_info(LOG, "Worker %s (index %llu) reported as ready. %zu workers connected.", id,
            (unsigned long long)n->pub.index, live_count(m));
    if (m->cbs->on_worker_ready) m->cbs->on_worker_ready(m, &n->pub, m->data);
    if (m->closing) return;
    if (!m->expected_fired && m->o.expect_workers && ready_count(m) >= m->o.expect_workers) {
        m->expected_fired = true;
        if (m->cbs->on_expected_workers)
            m->cbs->on_expected_workers(m, (unsigned)ready_count(m), m->data);
        if (m->closing) return;
    }
    /* a worker that joins (or comes back empty) takes its share of the test */
    workers_changed(m, cc_dispatch_total(&m->d), true);
}

/* A cicada worker: it takes master heartbeats, spawning_complete and exact histograms. */
static void mark_cicada(struct mnode *n)
{
    n->pub.cicada = true;
    n->beats = n->all_spawned = true;
}

static enum cc_dist_node_state parse_state(const char *s, enum cc_dist_node_state dflt)
{
    for (size_t i = 0; i < CC_ARRAY_LEN(node_state_names); i++)
        if (strcmp(node_state_names[i], s) == 0) return (enum cc_dist_node_state)i;
    return dflt;
}

static void on_heartbeat(struct cc_dist_master *m, struct mnode *n, const struct cc_dmsg *msg)
{
    n->pub.heartbeat = m->o.heartbeat_liveness;
    if (msg->u.heartbeat.cicada) mark_cicada(n);
    n->pub.cpu = msg->u.heartbeat.cpu;
    if (msg->u.heartbeat.memory >= 0) n->pub.memory = msg->u.heartbeat.memory;
    if (!n->cpu_warned && n->pub.cpu > 90) {
        n->cpu_warned = true;
        cc_warn(LOG,
                "Worker %s (index %llu) exceeded cpu threshold (will only log this once per "
                "worker)",
                n->id, (unsigned long long)n->pub.index);
    }
    if (n->beats) send_empty(m, n, "heartbeat");
    enum cc_dist_node_state st = parse_state(msg->u.heartbeat.state, n->pub.state);
    if (n->pub.state == CC_DN_MISSING) {
        cc_info(LOG, "Worker %s self-healed with heartbeat, setting state to %s.", n->id,
                node_state_names[st]);
        node_set_state(n, st == CC_DN_MISSING ? CC_DN_READY : st);
        if (live(n)) workers_changed(m, cc_dispatch_total(&m->d), true);
        return;
    }
    /* a worker that said client_stopped is out until its client_ready */
    if (n->pub.state != CC_DN_STOPPED && st != CC_DN_MISSING) node_set_state(n, st);
}

static void on_gone(struct cc_dist_master *m, struct mnode *n)
{
    cc_info(LOG, "Worker %s (index %llu) quit. %zu workers ready.", n->id,
            (unsigned long long)n->pub.index, ready_count(m) - (n->pub.state == CC_DN_READY));
    bool was_live = live(n);
    if (m->cbs->on_worker_gone) m->cbs->on_worker_gone(m, &n->pub, CC_DIST_GONE_QUIT, m->data);
    if (m->closing) return;
    remove_node(m, n);
    if (was_live) workers_changed(m, cc_dispatch_total(&m->d), true);
}

static void answer_locustfile(struct cc_dist_master *m, const char *id)
{
    cc_dmsg_begin(&m->buf, "locustfile");
    msgpack_pack_map(&m->buf.pk, 1);
    cc_mp_pack_str(&m->buf.pk, "error");
    cc_mp_pack_str(&m->buf.pk,
                   "a cicada master does not send locustfiles: give the worker -f FILE");
    cc_dmsg_end(&m->buf, id);
    if (m->z) cc_zsock_send2(m->z, id, m->buf.sb.data, m->buf.sb.size);
    cc_dbuf_clear(&m->buf);
}

static void handle(struct cc_dist_master *m, const char *id, struct mnode *n,
                   const struct cc_dmsg *msg)
{
    char err[160];
    switch (msg->type) {
    case CC_DMSG_CLIENT_READY:
        on_client_ready(m, id, msg);
        return;
    case CC_DMSG_STATS: {
        int rv = cc_wire_decode_stats(msg->u.stats.body, &m->keys, cc_wall_s(), &m->shard, err,
                                      sizeof(err));
        if (rv) {
            cc_error(LOG, "bad stats from worker %s: %s", id, err);
            if (n) send_empty(m, n, "reconnect");
            return;
        }
        if (n && msg->u.stats.has_classes && live(n))
            node_set_users(m, n, &msg->u.stats.classes, msg->u.stats.user_count);
        else if (!n)
            cc_info(LOG, "Discarded the user counts of unrecognized worker %s", id);
        merge_report(m, n);
        return;
    }
    case CC_DMSG_EXCEPTION:
        cc_wire_add_exception(&m->keys, &m->shard, msg->u.exception.msg, msg->u.exception.traceback,
                              msg->u.exception.count, cc_wall_s());
        merge_report(m, n);
        return;
    case CC_DMSG_LOCUSTFILE:
        answer_locustfile(m, id);
        return;
    case CC_DMSG_LOGS:
    case CC_DMSG_CUSTOM:
        if (m->cbs->on_message)
            m->cbs->on_message(m, n ? &n->pub : NULL, msg, m->data);
        else if (msg->type == CC_DMSG_CUSTOM)
            cc_warn(LOG, "Unknown message type received from worker %s: %s", id, msg->type_name);
        return;
    default:
        break;
    }
    if (!n) {
        cc_warn(LOG, "Received %s message from an unknown worker: %s", msg->type_name, id);
        return;
    }
    switch (msg->type) {
    case CC_DMSG_HEARTBEAT:
        on_heartbeat(m, n, msg);
        break;
    case CC_DMSG_SPAWNING:
        if (n->pub.state != CC_DN_STOPPED) node_set_state(n, CC_DN_SPAWNING);
        break;
    case CC_DMSG_SPAWNING_COMPLETE:
        if (msg->u.spawning_complete.cicada) mark_cicada(n);
        if (n->pub.state == CC_DN_STOPPED) break;
        node_set_state(n, CC_DN_RUNNING);
        node_set_users(m, n, &msg->u.spawning_complete.classes,
                       msg->u.spawning_complete.user_count);
        break;
    case CC_DMSG_CLIENT_STOPPED: {
        cc_info(LOG, "Worker %s (index %llu) reported that it has stopped", n->id,
                (unsigned long long)n->pub.index);
        bool was_live = live(n);
        n->stop_pending = false;
        node_set_state(n, CC_DN_STOPPED);
        node_clear_users(m, n);
        if (was_live && m->state != M_STOPPING) workers_changed(m, cc_dispatch_total(&m->d), true);
        break;
    }
    case CC_DMSG_QUIT:
        on_gone(m, n);
        break;
    default:
        break;
    }
}

static void on_recv(struct cc_zsock *z, const struct cc_zframe *f, size_t nf, void *data)
{
    struct cc_dist_master *m = data;
    (void)z;
    if (m->closing || nf < 1) return;
    if (f[0].len == 0 || f[0].len > 255 || memchr(f[0].data, '\0', f[0].len)) {
        cc_warn(LOG, "ignoring a message from a peer with an unusable identity");
        return;
    }
    char id[256];
    memcpy(id, f[0].data, f[0].len);
    id[f[0].len] = '\0';
    struct mnode *n = find(m, id);
    struct cc_dmsg msg;
    char err[160] = "";
    int rv = nf == 2
                 ? cc_dmsg_decode(&msg, f[1].data, f[1].len, CC_DMSG_TO_MASTER, err, sizeof(err))
                 : CC_EPROTO;
    if (rv) {
        cc_error(LOG, "RPCError when receiving from worker %s: %s", id,
                 *err ? err : "not a message of one frame");
        /* Locust asks a known worker to re-create its connection */
        if (n) send_empty(m, n, "reconnect");
        return;
    }
    if (msg.node_id && strcmp(msg.node_id, id) != 0)
        cc_debug(LOG, "worker %s calls itself %s; using its connection's id", id, msg.node_id);
    handle(m, id, n, &msg);
    cc_dmsg_release(&msg);
}

/* ---- the runner's calls ----------------------------------------------------------------- */

static void free_test(struct cc_dist_master *m)
{
    for (size_t i = 0; i < m->nclasses; i++)
        cc_free(m->class_names[i]);
    cc_free(m->class_names);
    cc_free(m->weights);
    cc_free(m->fixed);
    m->class_names = NULL;
    m->weights = NULL;
    m->fixed = NULL;
}

static void handle_closed(uv_handle_t *h);

static void zsock_closed(void *data)
{
    struct cc_dist_master *m = data;
    if (--m->open_handles) return;
    for (size_t i = 0; i < m->nnodes; i++)
        node_free(m->nodes[i]);
    cc_free(m->nodes);
    for (size_t i = 0; i < m->nindexes; i++)
        cc_free(m->indexes[i].id);
    cc_free(m->indexes);
    cc_free(m->view);
    free_test(m);
    cc_dispatch_release(&m->d);
    cc_free(m->slots);
    cc_free(m->host);
    cc_free(m->options);
    cc_free(m->curve.allowed);
    cc_free((char *)m->o.bind_host);
    cc_wire_keys_release(&m->keys);
    cc_shard_release(&m->shard);
    cc_dbuf_release(&m->buf);
    const struct cc_dist_master_cbs *cbs = m->cbs;
    void *d = m->data;
    cc_free(m);
    if (cbs->on_closed) cbs->on_closed(d);
}

static void handle_closed(uv_handle_t *h)
{
    zsock_closed(h->data);
}

static char *fmt(const char *f, const char *a, const char *b)
{
    char buf[512];
    snprintf(buf, sizeof(buf), f, a, b);
    return cc_xstrdup(buf);
}

int cc_dist_master_new(uv_loop_t *loop, const struct cc_dist_master_opts *o,
                       const struct cc_dist_master_cbs *cbs, void *data,
                       struct cc_dist_master **out, char **err)
{
    if (err) *err = NULL;
    if (!o->bind_host || !*o->bind_host || o->bind_port < 0 || o->bind_port > 65535 ||
        o->heartbeat_interval_s <= 0) {
        if (err) *err = cc_xstrdup("bad master options");
        return CC_ECONFIG;
    }
    struct cc_dist_master *m = cc_xcalloc(1, sizeof(*m));
    m->loop = loop;
    m->o = *o;
    m->o.bind_host = cc_xstrdup(o->bind_host);
    m->cbs = cbs;
    m->data = data;
    if (o->curve) {
        m->curve = *o->curve;
        m->curve.server = true;
        m->curve.allowed = cc_xmalloc((o->curve->nallowed + 1) * sizeof(*m->curve.allowed));
        memcpy(m->curve.allowed, o->curve->allowed, o->curve->nallowed * sizeof(*m->curve.allowed));
        m->o.curve = &m->curve;
    }
    cc_wire_keys_init(&m->keys);
    cc_shard_init(&m->shard);
    cc_dbuf_init(&m->buf);
    static const double no_weight[1] = {0};
    static const uint32_t no_fixed[1] = {0};
    cc_dispatch_init(&m->d, 0, no_weight, no_fixed, 1);
    uv_timer_init(loop, &m->hb_timer);
    uv_timer_init(loop, &m->ramp_timer);
    uv_timer_init(loop, &m->wait_timer);
    m->hb_timer.data = m->ramp_timer.data = m->wait_timer.data = m;
    m->open_handles = 3;

    bool v6 = strchr(o->bind_host, ':') != NULL || strcmp(o->bind_host, "*") == 0;
    struct cc_zsock_opts zo = {
        .type = ZMQ_ROUTER,
        .ipv6 = v6,
        .router_handover = true,
        .linger_ms = o->linger_ms,
        .curve = m->o.curve,
    };
    int rv = cc_zsock_new(loop, &zo, on_recv, NULL, m, &m->z);
    if (rv == 0) {
        m->open_handles++;
        char ep[300];
        bool literal6 = strchr(o->bind_host, ':') != NULL;
        snprintf(ep, sizeof(ep), literal6 ? "tcp://[%s]:%d" : "tcp://%s:%d", o->bind_host,
                 o->bind_port);
        rv = cc_zsock_bind(m->z, ep, &m->port);
        if (rv && err) *err = fmt("cannot listen on %s: %s", ep, cc_strerror(rv));
    } else if (err) {
        *err = fmt("cannot create the master's socket: %s%s", cc_strerror(rv), "");
    }
    if (rv) {
        m->cbs = &no_cbs; /* a failed constructor calls nothing back */
        m->closing = true;
        if (m->z) cc_zsock_close(m->z, zsock_closed, m);
        m->z = NULL;
        uv_close((uv_handle_t *)&m->hb_timer, handle_closed);
        uv_close((uv_handle_t *)&m->ramp_timer, handle_closed);
        uv_close((uv_handle_t *)&m->wait_timer, handle_closed);
        return rv;
    }
    uint64_t hb = ms_of(o->heartbeat_interval_s);
    uv_timer_start(&m->hb_timer, hb_cb, hb ? hb : 1, hb ? hb : 1);
    cc_info(LOG, "master listening on %s:%d", o->bind_host, m->port);
    *out = m;
    return 0;
}

int cc_dist_master_port(const struct cc_dist_master *m)
{
    return m->port;
}

static bool same_classes(const struct cc_dist_master *m, const struct cc_dist_test *t)
{
    if (!m->class_names || m->nclasses != t->nclasses) return false;
    for (size_t i = 0; i < t->nclasses; i++)
        if (strcmp(m->class_names[i], t->classes[i].name) != 0 ||
            m->weights[i] != t->classes[i].weight || m->fixed[i] != t->classes[i].fixed_count)
            return false;
    return true;
}

static void set_classes(struct cc_dist_master *m, const struct cc_dist_test *t)
{
    free_test(m);
    m->nclasses = t->nclasses;
    m->class_names = cc_xcalloc(t->nclasses + 1, sizeof(char *));
    m->weights = cc_xcalloc(t->nclasses + 1, sizeof(double));
    m->fixed = cc_xcalloc(t->nclasses + 1, sizeof(uint32_t));
    for (size_t i = 0; i < t->nclasses; i++) {
        m->class_names[i] = cc_xstrdup(t->classes[i].name);
        m->weights[i] = t->classes[i].weight;
        m->fixed[i] = t->classes[i].fixed_count;
    }
    for (size_t i = 0; i < m->nnodes; i++) {
        struct mnode *n = m->nodes[i];
        cc_free(n->users);
        cc_free(n->assigned);
        n->users = cc_xcalloc(m->nclasses + 1, sizeof(*n->users));
        n->assigned = cc_xcalloc(m->nclasses + 1, sizeof(*n->assigned));
        n->pub.user_count = 0;
        node_sync(n);
    }
}

int cc_dist_master_start(struct cc_dist_master *m, const struct cc_dist_test *t)
{
    if (m->closing) return CC_ECLOSED;
    if (!t->nclasses || !t->classes || !(t->rate > 0)) return CC_ECONFIG;
    for (size_t i = 0; i < t->nclasses; i++)
        if (!t->classes[i].name) return CC_ECONFIG;
    if (live_count(m) == 0) {
        cc_warn(LOG, "You can't start a distributed test before at least one worker processes "
                     "has connected");
        return -ENOTCONN;
    }
    bool fresh = !test_active(m);
    uint64_t keep = fresh ? 0 : cc_dispatch_total(&m->d);
    if (!same_classes(m, t)) set_classes(m, t);
    cc_free(m->host);
    m->host = t->host ? cc_xstrdup(t->host) : NULL;
    m->stop_timeout = t->stop_timeout;
    m->has_stop_timeout = t->has_stop_timeout;
    cc_free(m->options);
    m->options = NULL;
    m->options_len = 0;
    if (t->options && t->options_len) {
        m->options = cc_xmalloc(t->options_len);
        memcpy(m->options, t->options, t->options_len);
        m->options_len = t->options_len;
    }
    m->target = t->users;
    m->rate = t->rate;
    cc_info(LOG, "Sending spawn jobs of %llu users at %.2f spawn rate to %zu ready workers",
            (unsigned long long)t->users, t->rate, live_count(m));
    rebuild(m, keep);
    resume_ramp(m);
    return 0;
}

void cc_dist_master_stop(struct cc_dist_master *m)
{
    if (m->closing || !test_active(m)) return;
    cc_info(LOG, "Stopping the test");
    uv_timer_stop(&m->ramp_timer);
    m->ramping = false;
    set_state(m, M_STOPPING);
    for (size_t i = 0; i < m->nnodes; i++) {
        struct mnode *n = m->nodes[i];
        n->stop_pending = n->pub.state != CC_DN_STOPPED;
        send_empty(m, n, "stop");
    }
    double wait = (m->has_stop_timeout ? m->stop_timeout : 0) + m->o.stop_wait_extra_s;
    wait_start(m, WAIT_STOP, wait);
}

void cc_dist_master_quit(struct cc_dist_master *m)
{
    if (m->closing || m->wait == WAIT_QUIT) return;
    cc_info(LOG, "Quitting: sending quit to %zu workers", m->nnodes);
    uv_timer_stop(&m->ramp_timer);
    m->ramping = false;
    for (size_t i = 0; i < m->nnodes; i++)
        send_empty(m, m->nodes[i], "quit");
    if (test_active(m) || m->state == M_STOPPING) set_state(m, M_STOPPED);
    wait_start(m, WAIT_QUIT, m->o.quit_wait_s);
}

void cc_dist_master_close(struct cc_dist_master *m)
{
    if (m->closing) return;
    m->closing = true;
    uv_close((uv_handle_t *)&m->hb_timer, handle_closed);
    uv_close((uv_handle_t *)&m->ramp_timer, handle_closed);
    uv_close((uv_handle_t *)&m->wait_timer, handle_closed);
    if (m->z) cc_zsock_close(m->z, zsock_closed, m);
    m->z = NULL;
}

const char *cc_dist_master_state(const struct cc_dist_master *m)
{
    return mstate_names[m->state];
}

const struct cc_dist_node *const *cc_dist_master_nodes(const struct cc_dist_master *m, size_t *n)
{
    struct cc_dist_master *mm = (struct cc_dist_master *)m;
    cc_grow((void **)&mm->view, &mm->view_cap, m->nnodes + 1, sizeof(*mm->view));
    for (size_t i = 0; i < m->nnodes; i++)
        mm->view[i] = &m->nodes[i]->pub;
    *n = m->nnodes;
    return mm->view;
}

size_t cc_dist_master_worker_count(const struct cc_dist_master *m)
{
    return live_count(m);
}

uint64_t cc_dist_master_user_count(const struct cc_dist_master *m)
{
    uint64_t k = 0;
    for (size_t i = 0; i < m->nnodes; i++)
        if (live(m->nodes[i])) k += m->nodes[i]->pub.user_count;
    return k;
}

uint64_t cc_dist_master_assigned(const struct cc_dist_master *m)
{
    return cc_dispatch_total(&m->d);
}

int cc_dist_master_send(struct cc_dist_master *m, const char *id, const char *type,
                        const void *data, size_t len)
{
    if (m->closing || !m->z) return CC_ECLOSED;
    int rv = id ? -ENOENT : 0;
    for (size_t i = 0; i < m->nnodes; i++) {
        struct mnode *n = m->nodes[i];
        if (id && strcmp(n->id, id) != 0) continue;
        cc_dmsg_pack_raw(&m->buf, type, data, len, n->id);
        int r = cc_zsock_send2(m->z, n->id, m->buf.sb.data, m->buf.sb.size);
        cc_dbuf_clear(&m->buf);
        if (id) return r;
        if (r) rv = r;
    }
    return rv;
}
