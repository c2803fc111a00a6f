/* SPDX-License-Identifier: MIT */
/*
 * test_dist_node.c: cicada's master with cicada's workers, on one loop. Joining, dispatch by
 * weight spread over hosts, ramping down, stats merged exactly (the same percentiles as one
 * process), exceptions, stop and quit; a worker started before its master; a master that
 * disappears; a worker that goes silent (missing, then removed); garbage in both directions
 * (a reconnect, never a crash); CURVE. Waits are for conditions, with generous deadlines.
 */
#include "dist/master.h"
#include "dist/msg.h"
#include "dist/worker.h"
#include "core/err.h"

#include "distutil.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <zmq.h>

#define NCLS 2
static const char *const cls_names[NCLS] = {"Alpha", "Beta"};

/* ---- a fake runner for a worker -------------------------------------------------------- */

struct wrun {
    struct cc_dist_worker *w;
    const char *id;
    uint32_t users[NCLS];
    unsigned readies, spawns, stops, quits, lost, closed, all_spawned, messages;
    bool new_test_seen;
    char host[64];
    /* samples handed over at the next report: |n| requests of |ms_base| + i * |ms_step| */
    unsigned inject_n;
    double ms_base, ms_step;
    unsigned inject_exc; /* identical exceptions to add */
    struct cc_recorder rec;
    struct cc_shard shard;
};

static void w_ready(struct cc_dist_worker *w, int64_t index, void *data)
{
    (void)w;
    (void)index;
    ((struct wrun *)data)->readies++;
}

static void w_spawn(struct cc_dist_worker *w, const struct cc_dist_spawn *s, void *data)
{
    struct wrun *r = data;
    r->spawns++;
    if (s->new_test) r->new_test_seen = true;
    snprintf(r->host, sizeof(r->host), "%s", s->host ? s->host : "");
    memcpy(r->users, s->counts, sizeof(r->users));
    cc_dist_worker_set_users(w, r->users);
    cc_dist_worker_spawning_complete(w);
}

static void w_all_spawned(struct cc_dist_worker *w, uint64_t n, void *data)
{
    (void)w;
    (void)n;
    ((struct wrun *)data)->all_spawned++;
}

static void w_stop(struct cc_dist_worker *w, void *data)
{
    struct wrun *r = data;
    r->stops++;
    memset(r->users, 0, sizeof(r->users));
    cc_dist_worker_set_users(w, r->users);
    cc_dist_worker_stopped(w);
}

static void w_quit(struct cc_dist_worker *w, void *data)
{
    ((struct wrun *)data)->quits++;
    cc_dist_worker_close(w, true);
}

static void w_lost(struct cc_dist_worker *w, const char *why, void *data)
{
    (void)why;
    ((struct wrun *)data)->lost++;
    cc_dist_worker_close(w, false);
}

static void w_take(struct cc_dist_worker *w, struct cc_agg *delta, void *data)
{
    (void)w;
    struct wrun *r = data;
    if (!r->inject_n && !r->inject_exc) return;
    const struct cc_ikey *k = cc_recorder_key(&r->rec, "GET", 3, "/item", 5);
    for (unsigned i = 0; i < r->inject_n; i++)
        cc_recorder_request(&r->rec, k, (uint64_t)llround((r->ms_base + i * r->ms_step) * 1e6), 10,
                            i % 50 == 0 ? "HTTP 503" : NULL, 8);
    for (unsigned i = 0; i < r->inject_exc; i++)
        cc_recorder_exception(&r->rec, "ValueError: bad", 15, "at task()", 9);
    r->inject_n = r->inject_exc = 0;
    cc_agg_merge(delta, &r->shard, 0);
    cc_shard_clear(&r->shard);
}

static void w_message(struct cc_dist_worker *w, const struct cc_dmsg *m, void *data)
{
    (void)w;
    (void)m;
    ((struct wrun *)data)->messages++;
}

static void w_closed(void *data)
{
    ((struct wrun *)data)->closed++;
}

static const struct cc_dist_worker_cbs wcbs = {
    .on_ready = w_ready,
    .on_spawn = w_spawn,
    .on_all_spawned = w_all_spawned,
    .on_stop = w_stop,
    .on_quit = w_quit,
    .on_master_lost = w_lost,
    .take_stats = w_take,
    .on_message = w_message,
    .on_closed = w_closed,
};

static void wrun_init(struct wrun *r, const char *id)
{
    memset(r, 0, sizeof(*r));
    r->id = id;
    cc_shard_init(&r->shard);
    cc_recorder_init(&r->rec, &r->shard);
}

static void wrun_release(struct wrun *r)
{
    cc_recorder_release(&r->rec);
    cc_shard_release(&r->shard);
}

static int wrun_start(uv_loop_t *loop, struct wrun *r, int port, const struct cc_zcurve *curve)
{
    struct cc_dist_worker_opts o;
    cc_dist_worker_opts_init(&o);
    o.master_port = port;
    o.client_id = r->id;
    o.nclasses = NCLS;
    o.class_names = cls_names;
    o.heartbeat_interval_s = 0.2;
    o.stats_interval_s = 0.3;
    o.ready_retry_s = 0.5;
    o.ready_retries = 0;
    o.master_timeout_s = 2;
    o.linger_ms = 200;
    o.curve = curve;
    return cc_dist_worker_new(loop, &o, &wcbs, r, &r->w);
}

/* ---- a fake runner for the master ------------------------------------------------------- */

struct mrun {
    struct cc_dist_master *m;
    struct cc_agg agg;
    unsigned ready_events, expected, missing, gone_quit, gone_dead, spawned, reports, stopped,
        no_workers, closed, messages;
    uint64_t spawned_users;
};

static void m_ready(struct cc_dist_master *m, const struct cc_dist_node *n, void *data)
{
    (void)m;
    (void)n;
    ((struct mrun *)data)->ready_events++;
}
static void m_expected(struct cc_dist_master *m, unsigned k, void *data)
{
    (void)m;
    (void)k;
    ((struct mrun *)data)->expected++;
}
static void m_missing(struct cc_dist_master *m, const struct cc_dist_node *n, void *data)
{
    (void)m;
    (void)n;
    ((struct mrun *)data)->missing++;
}
static void m_gone(struct cc_dist_master *m, const struct cc_dist_node *n,
                   enum cc_dist_gone_reason why, void *data)
{
    (void)m;
    (void)n;
    struct mrun *r = data;
    if (why == CC_DIST_GONE_QUIT) r->gone_quit++;
    if (why == CC_DIST_GONE_DEAD) r->gone_dead++;
}
static void m_spawned(struct cc_dist_master *m, uint64_t users, void *data)
{
    (void)m;
    struct mrun *r = data;
    r->spawned++;
    r->spawned_users = users;
}
static void m_report(struct cc_dist_master *m, const struct cc_dist_node *n,
                     const struct cc_shard *s, void *data)
{
    (void)m;
    (void)n;
    (void)s;
    ((struct mrun *)data)->reports++;
}
static void m_stopped(struct cc_dist_master *m, void *data)
{
    (void)m;
    ((struct mrun *)data)->stopped++;
}
static void m_no_workers(struct cc_dist_master *m, void *data)
{
    (void)m;
    ((struct mrun *)data)->no_workers++;
}
static void m_message(struct cc_dist_master *m, const struct cc_dist_node *n,
                      const struct cc_dmsg *msg, void *data)
{
    (void)m;
    (void)n;
    (void)msg;
    ((struct mrun *)data)->messages++;
}
static void m_closed(void *data)
{
    ((struct mrun *)data)->closed++;
}

static const struct cc_dist_master_cbs mcbs = {
    .on_worker_ready = m_ready,
    .on_expected_workers = m_expected,
    .on_worker_missing = m_missing,
    .on_worker_gone = m_gone,
    .on_spawning_complete = m_spawned,
    .on_report = m_report,
    .on_stopped = m_stopped,
    .on_no_workers = m_no_workers,
    .on_message = m_message,
    .on_closed = m_closed,
};

static int mrun_start(uv_loop_t *loop, struct mrun *r, int port, unsigned expect,
                      const struct cc_zcurve *curve)
{
    memset(r, 0, sizeof(*r));
    cc_agg_init(&r->agg, false);
    cc_agg_open_interval(&r->agg, cc_now_ns());
    struct cc_dist_master_opts o;
    cc_dist_master_opts_init(&o);
    o.bind_host = "127.0.0.1";
    o.bind_port = port;
    o.expect_workers = expect;
    o.heartbeat_interval_s = 0.2;
    o.heartbeat_liveness = 3;
    o.heartbeat_dead = -10;
    o.quit_wait_s = 0.3;
    o.agg = &r->agg;
    o.curve = curve;
    char *err = NULL;
    int rv = cc_dist_master_new(loop, &o, &mcbs, r, &r->m, &err);
    if (err) {
        fprintf(stderr, "%s\n", err);
        cc_free(err);
    }
    return rv;
}

static const struct cc_dist_class classes[NCLS] = {{"Alpha", 3, 0}, {"Beta", 1, 0}};

static int start_test(struct mrun *r, uint64_t users, double rate)
{
    struct cc_dist_test t = {.users = users,
                             .rate = rate,
                             .classes = classes,
                             .nclasses = NCLS,
                             .host = "http://127.0.0.1:9",
                             .stop_timeout = 0,
                             .has_stop_timeout = true};
    return cc_dist_master_start(r->m, &t);
}

/* ---- conditions ------------------------------------------------------------------------- */

struct cond {
    unsigned *counter;
    unsigned want;
};

static bool reached(void *ctx)
{
    struct cond *c = ctx;
    return *c->counter >= c->want;
}

#define WAIT_FOR(loop, field, n)                                                                   \
    do {                                                                                           \
        struct cond c_ = {&(field), (n)};                                                          \
        if (!du_run_until((loop), reached, &c_, 30)) {                                             \
            fprintf(stderr, "timed out waiting for %s >= %u (it is %u)\n", #field, (unsigned)(n),  \
                    (unsigned)(field));                                                            \
            fail();                                                                                \
        }                                                                                          \
    } while (0)

struct count_cond {
    const struct cc_agg *a;
    uint64_t want;
};

static bool agg_has(void *ctx)
{
    struct count_cond *c = ctx;
    return c->a->total.count >= c->want;
}

static uint32_t total_users(const struct wrun *r)
{
    return r->users[0] + r->users[1];
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_master_with_two_workers(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct mrun mr;
    assert_int_equal(mrun_start(&loop, &mr, 0, 2, NULL), 0);
    int port = cc_dist_master_port(mr.m);
    assert_true(port > 0);
    struct wrun a, b;
    wrun_init(&a, "hostA_0001");
    wrun_init(&b, "hostB_0001");
    assert_int_equal(wrun_start(&loop, &a, port, NULL), 0);
    assert_int_equal(wrun_start(&loop, &b, port, NULL), 0);
    WAIT_FOR(&loop, mr.expected, 1);
    WAIT_FOR(&loop, a.readies, 1);
    WAIT_FOR(&loop, b.readies, 1);
    assert_true(cc_dist_worker_master_is_cicada(a.w));
    assert_int_equal(cc_dist_master_worker_count(mr.m), 2);
    assert_int_not_equal(cc_dist_worker_index(a.w), cc_dist_worker_index(b.w));

    /* 4 users, weights 3:1, two hosts: each class alternates between hosts, totals balance */
    assert_int_equal(start_test(&mr, 4, 100), 0);
    WAIT_FOR(&loop, mr.spawned, 1);
    assert_int_equal(mr.spawned_users, 4);
    assert_int_equal(a.users[0] + b.users[0], 3);
    assert_int_equal(a.users[1] + b.users[1], 1);
    assert_int_equal(total_users(&a), 2);
    assert_int_equal(total_users(&b), 2);
    assert_true(a.new_test_seen && b.new_test_seen);
    assert_string_equal(a.host, "http://127.0.0.1:9");
    assert_int_equal(cc_dist_master_user_count(mr.m), 4);
    assert_string_equal(cc_dist_master_state(mr.m), "running");
    WAIT_FOR(&loop, a.all_spawned, 1); /* cicada workers get the master's spawning_complete */

    /* stats: both workers' samples, merged, equal one process that saw them all */
    a.inject_n = 1000, a.ms_base = 1.0, a.ms_step = 0.25;
    b.inject_n = 700, b.ms_base = 40.0, b.ms_step = 1.7;
    a.inject_exc = 5;
    struct count_cond cc = {&mr.agg, 1700};
    assert_true(du_run_until(&loop, agg_has, &cc, 30));
    struct cc_agg one;
    struct cc_shard s;
    struct cc_recorder rec;
    cc_shard_init(&s);
    cc_recorder_init(&rec, &s);
    const struct cc_ikey *k = cc_recorder_key(&rec, "GET", 3, "/item", 5);
    for (unsigned i = 0; i < 1000; i++)
        cc_recorder_request(&rec, k, (uint64_t)llround((1.0 + i * 0.25) * 1e6), 10, NULL, 0);
    for (unsigned i = 0; i < 700; i++)
        cc_recorder_request(&rec, k, (uint64_t)llround((40.0 + i * 1.7) * 1e6), 10, NULL, 0);
    cc_agg_init(&one, false);
    cc_agg_merge(&one, &s, 0);
    double p1[CC_NPERCENTILES], p2[CC_NPERCENTILES];
    cc_entry_percentiles_ms(&one.total, cc_percentiles, CC_NPERCENTILES, p1);
    cc_entry_percentiles_ms(&mr.agg.total, cc_percentiles, CC_NPERCENTILES, p2);
    for (int i = 0; i < CC_NPERCENTILES; i++)
        assert_true(p1[i] == p2[i]);
    assert_int_equal(mr.agg.total.count, 1700);
    assert_int_equal(mr.agg.total.failures, 20 + 14);
    assert_true(cc_entry_min_ms(&one.total) == cc_entry_min_ms(&mr.agg.total));
    assert_true(cc_entry_max_ms(&one.total) == cc_entry_max_ms(&mr.agg.total));
    cc_agg_release(&one);
    cc_recorder_release(&rec);
    cc_shard_release(&s);
    assert_true(mr.reports > 0);
    /* the five exceptions came as one message with a count */
    assert_int_equal(mr.agg.exc_keys.count, 1);
    assert_int_equal(mr.agg.excs[0].count, 5);

    /* ramp down to 2: the last users added go first */
    assert_int_equal(start_test(&mr, 2, 100), 0);
    WAIT_FOR(&loop, mr.spawned, 2);
    assert_int_equal(total_users(&a) + total_users(&b), 2);
    assert_int_equal(total_users(&a), 1);
    assert_int_equal(a.users[1] + b.users[1], 0); /* Beta was the 3rd user */

    /* custom messages both ways */
    assert_int_equal(cc_dist_master_send(mr.m, NULL, "acme", NULL, 0), 0);
    WAIT_FOR(&loop, a.messages, 1);
    assert_int_equal(cc_dist_worker_send(b.w, "acme_reply", NULL, 0), 0);
    WAIT_FOR(&loop, mr.messages, 1);

    /* stop: the workers stop and come back ready */
    unsigned readies = a.readies;
    cc_dist_master_stop(mr.m);
    WAIT_FOR(&loop, mr.stopped, 1);
    assert_int_equal(a.stops, 1);
    assert_int_equal(b.stops, 1);
    WAIT_FOR(&loop, a.readies, readies + 1);
    assert_string_equal(cc_dist_master_state(mr.m), "stopped");

    /* a new test after the stop starts from zero */
    a.new_test_seen = b.new_test_seen = false;
    assert_int_equal(start_test(&mr, 2, 1), 0);
    WAIT_FOR(&loop, mr.spawned, 3);
    assert_true(a.new_test_seen && b.new_test_seen);
    assert_int_equal(total_users(&a), 1);
    assert_int_equal(total_users(&b), 1);

    /* quit: the workers quit, the master forgets them and closes */
    cc_dist_master_quit(mr.m);
    WAIT_FOR(&loop, a.closed, 1);
    WAIT_FOR(&loop, b.closed, 1);
    WAIT_FOR(&loop, mr.closed, 1);
    assert_int_equal(a.quits, 1);
    assert_int_equal(b.quits, 1);
    assert_int_equal(mr.gone_quit, 2);
    assert_int_equal(a.lost + b.lost, 0);
    assert_true(du_loop_done(&loop));
    cc_agg_release(&mr.agg);
    wrun_release(&a);
    wrun_release(&b);
}

/* A worker started first joins its master when it appears. */
static void test_worker_before_master(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    int port = du_free_port();
    struct wrun a;
    wrun_init(&a, "early_0001");
    assert_int_equal(wrun_start(&loop, &a, port, NULL), 0);
    du_run_for(&loop, 1.5); /* a few client_ready retries into nothing */
    assert_int_equal(a.readies, 0);
    struct mrun mr;
    assert_int_equal(mrun_start(&loop, &mr, port, 1, NULL), 0);
    WAIT_FOR(&loop, a.readies, 1);
    WAIT_FOR(&loop, mr.expected, 1);
    du_run_for(&loop, 0.6);
    assert_int_equal(mr.ready_events, 1); /* one join, not a pile of queued client_ready */
    cc_dist_worker_close(a.w, true);
    WAIT_FOR(&loop, mr.gone_quit, 1);
    cc_dist_master_close(mr.m);
    assert_true(du_loop_done(&loop));
    cc_agg_release(&mr.agg);
    wrun_release(&a);
}

/* A master that disappears: the worker gives up after its heartbeat timeout. */
static void test_master_lost(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct mrun mr;
    assert_int_equal(mrun_start(&loop, &mr, 0, 0, NULL), 0);
    struct wrun a;
    wrun_init(&a, "lonely_0001");
    assert_int_equal(wrun_start(&loop, &a, cc_dist_master_port(mr.m), NULL), 0);
    WAIT_FOR(&loop, a.readies, 1);
    assert_int_equal(start_test(&mr, 3, 10), 0);
    WAIT_FOR(&loop, a.spawns, 1);
    du_run_for(&loop, 0.5); /* the master answers heartbeats */
    cc_dist_master_close(mr.m);
    WAIT_FOR(&loop, mr.closed, 1);
    WAIT_FOR(&loop, a.lost, 1);
    WAIT_FOR(&loop, a.closed, 1);
    assert_true(du_loop_done(&loop));
    cc_agg_release(&mr.agg);
    wrun_release(&a);
}

/* A worker that goes silent is missing, then removed; the others go on; its stats stay. */
static void test_silent_worker(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct mrun mr;
    assert_int_equal(mrun_start(&loop, &mr, 0, 2, NULL), 0);
    int port = cc_dist_master_port(mr.m);
    struct wrun a, b;
    wrun_init(&a, "hostA_0002");
    wrun_init(&b, "hostB_0002");
    assert_int_equal(wrun_start(&loop, &a, port, NULL), 0);
    assert_int_equal(wrun_start(&loop, &b, port, NULL), 0);
    WAIT_FOR(&loop, mr.expected, 1);
    assert_int_equal(start_test(&mr, 6, 100), 0);
    WAIT_FOR(&loop, mr.spawned, 1);
    b.inject_n = 100, b.ms_base = 5, b.ms_step = 0.1;
    struct count_cond cc = {&mr.agg, 100};
    assert_true(du_run_until(&loop, agg_has, &cc, 30));

    /* b vanishes without a word (as after SIGKILL) */
    cc_dist_worker_close(b.w, false);
    WAIT_FOR(&loop, mr.missing, 1);
    assert_int_equal(cc_dist_master_worker_count(mr.m), 1);
    assert_int_equal(mr.agg.total.count, 100); /* what it reported stays */
    assert_int_equal(total_users(&a), 3);      /* the run goes on with a's users */
    assert_int_equal(mr.no_workers, 0);
    /* removed after heartbeat_dead; the test is redistributed over what is left */
    WAIT_FOR(&loop, mr.gone_dead, 1);
    WAIT_FOR(&loop, mr.spawned, 2);
    assert_int_equal(total_users(&a), 6);

    /* the last worker going missing leaves the test without workers */
    cc_dist_worker_close(a.w, false);
    WAIT_FOR(&loop, mr.no_workers, 1);
    cc_dist_master_close(mr.m);
    assert_true(du_loop_done(&loop));
    cc_agg_release(&mr.agg);
    wrun_release(&a);
    wrun_release(&b);
}

/* ---- garbage ---------------------------------------------------------------------------- */

struct raw {
    struct cc_zsock *z;
    unsigned got;
    char ident[64];
    char type[32];
    enum cc_dmsg_dir dir;
};

static void raw_recv(struct cc_zsock *z, const struct cc_zframe *f, size_t n, void *data)
{
    (void)z;
    struct raw *r = data;
    const struct cc_zframe *payload = &f[n - 1];
    if (n == 2)
        snprintf(r->ident, sizeof(r->ident), "%.*s", (int)f[0].len, (const char *)f[0].data);
    struct cc_dmsg m;
    if (cc_dmsg_decode(&m, payload->data, payload->len, r->dir, NULL, 0) == 0) {
        snprintf(r->type, sizeof(r->type), "%s", m.type_name);
        cc_dmsg_release(&m);
    }
    r->got++;
}

struct typed {
    struct raw *r;
    const char *type;
};

static bool raw_got_type(void *ctx)
{
    struct typed *t = ctx;
    return strcmp(t->r->type, t->type) == 0;
}

static void send_raw(struct raw *r, const char *id, const void *p, size_t n)
{
    assert_int_equal(cc_zsock_send2(r->z, id, p, n), 0);
}

/* Garbage from the master makes the worker reconnect; it keeps working. */
static void test_garbage_to_worker(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct raw fake = {.dir = CC_DMSG_TO_MASTER};
    struct cc_zsock_opts zo = {.type = ZMQ_ROUTER, .router_handover = true, .linger_ms = 0};
    assert_int_equal(cc_zsock_new(&loop, &zo, raw_recv, NULL, &fake, &fake.z), 0);
    int port = 0;
    assert_int_equal(cc_zsock_bind(fake.z, "tcp://127.0.0.1:0", &port), 0);
    struct wrun a;
    wrun_init(&a, "victim_0001");
    assert_int_equal(wrun_start(&loop, &a, port, NULL), 0);
    struct typed t = {&fake, "client_ready"};
    assert_true(du_run_until(&loop, raw_got_type, &t, 20));
    struct cc_dbuf b;
    cc_dbuf_init(&b);
    cc_dmsg_pack_ack(&b, 0, NULL, a.id);
    send_raw(&fake, a.id, b.sb.data, b.sb.size);
    cc_dbuf_clear(&b);
    WAIT_FOR(&loop, a.readies, 1);

    /* not msgpack; then msgpack of the wrong shape; then a spawn with a list for counts */
    send_raw(&fake, a.id, "\xc1\xc1garbage", 9);
    du_run_for(&loop, 0.5);
    send_raw(&fake, a.id, "\x92\x01\x02", 3);
    du_run_for(&loop, 0.5);
    const char bad_spawn[] = "\x93\xa5spawn\x82\xa9timestamp\x01\xb2user_classes_count\x90\xc0";
    send_raw(&fake, a.id, bad_spawn, sizeof(bad_spawn) - 1);
    du_run_for(&loop, 0.5);
    assert_int_equal(a.spawns, 0);
    assert_int_equal(a.lost, 0);

    /* still a working worker: a good spawn is carried out */
    const char *names[NCLS] = {"Alpha", "Beta"};
    uint32_t counts[NCLS] = {2, 1};
    struct cc_dspawn sp = {
        .timestamp = cc_wall_s(), .nclasses = NCLS, .names = names, .counts = counts};
    unsigned before = fake.got;
    cc_dmsg_pack_spawn(&b, &sp, a.id);
    /* the reconnected DEALER may need a moment to be routable again: resend until heard */
    for (int i = 0; i < 50 && a.spawns == 0; i++) {
        sp.timestamp = cc_wall_s() + i;
        cc_dbuf_clear(&b);
        cc_dmsg_pack_spawn(&b, &sp, a.id);
        send_raw(&fake, a.id, b.sb.data, b.sb.size);
        du_run_for(&loop, 0.2);
    }
    assert_int_equal(a.spawns, 1);
    assert_int_equal(a.users[0], 2);
    assert_true(fake.got > before); /* spawning, spawning_complete, heartbeats */
    cc_dbuf_release(&b);

    cc_dist_worker_close(a.w, false);
    cc_zsock_close(fake.z, NULL, NULL);
    assert_true(du_loop_done(&loop));
    wrun_release(&a);
}

/* Garbage from a known worker gets it a `reconnect`; the master carries on. */
static void test_garbage_to_master(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct mrun mr;
    assert_int_equal(mrun_start(&loop, &mr, 0, 0, NULL), 0);
    struct raw fake = {.dir = CC_DMSG_TO_WORKER};
    struct cc_zsock_opts zo = {.type = ZMQ_DEALER, .identity = "rogue_0001", .linger_ms = 0};
    assert_int_equal(cc_zsock_new(&loop, &zo, raw_recv, NULL, &fake, &fake.z), 0);
    char ep[64];
    snprintf(ep, sizeof(ep), "tcp://127.0.0.1:%d", cc_dist_master_port(mr.m));
    assert_int_equal(cc_zsock_connect(fake.z, ep), 0);

    /* garbage from a stranger is only logged */
    send_raw(&fake, NULL, "\xc1", 1);
    du_run_for(&loop, 0.3);
    assert_int_equal(fake.got, 0);

    struct cc_dbuf b;
    cc_dbuf_init(&b);
    cc_dmsg_pack_client_ready(&b, "2.46.3", "rogue_0001");
    send_raw(&fake, NULL, b.sb.data, b.sb.size);
    cc_dbuf_clear(&b);
    struct typed t = {&fake, "ack"};
    assert_true(du_run_until(&loop, raw_got_type, &t, 20));

    send_raw(&fake, NULL, "\xc1", 1);
    t.type = "reconnect";
    assert_true(du_run_until(&loop, raw_got_type, &t, 20));

    /* a stats report of the wrong shape, too */
    fake.type[0] = '\0';
    const char bad_stats[] = "\x93\xa5stats\x81\xa5stats\xa1x\xaarogue_0001";
    send_raw(&fake, NULL, bad_stats, sizeof(bad_stats) - 1);
    assert_true(du_run_until(&loop, raw_got_type, &t, 20));

    /* a 2.19+ worker's heartbeat is answered */
    cc_dmsg_pack_heartbeat(&b, "ready", 1, 1, NULL, "rogue_0001");
    send_raw(&fake, NULL, b.sb.data, b.sb.size);
    t.type = "heartbeat";
    assert_true(du_run_until(&loop, raw_got_type, &t, 20));
    assert_int_equal(cc_dist_master_worker_count(mr.m), 1);
    cc_dbuf_release(&b);

    cc_zsock_close(fake.z, NULL, NULL);
    cc_dist_master_close(mr.m);
    assert_true(du_loop_done(&loop));
    cc_agg_release(&mr.agg);
}

/* CURVE between cicada nodes: the allowed worker joins, another key does not. */
static void test_curve_nodes(void **state)
{
    (void)state;
    if (!zmq_has("curve")) skip();
    struct cc_zcurve server = {.server = true}, good = {0}, bad = {0};
    assert_int_equal(cc_zcurve_keypair(server.public_key, server.secret_key), 0);
    assert_int_equal(cc_zcurve_keypair(good.public_key, good.secret_key), 0);
    assert_int_equal(cc_zcurve_keypair(bad.public_key, bad.secret_key), 0);
    memcpy(good.server_key, server.public_key, sizeof(good.server_key));
    memcpy(bad.server_key, server.public_key, sizeof(bad.server_key));
    char allowed[1][CC_ZKEY_LEN + 1];
    memcpy(allowed[0], good.public_key, sizeof(allowed[0]));
    server.allowed = allowed;
    server.nallowed = 1;

    uv_loop_t loop;
    uv_loop_init(&loop);
    struct mrun mr;
    assert_int_equal(mrun_start(&loop, &mr, 0, 0, &server), 0);
    int port = cc_dist_master_port(mr.m);
    struct wrun a, x;
    wrun_init(&a, "secure_0001");
    wrun_init(&x, "intruder_0001");
    assert_int_equal(wrun_start(&loop, &a, port, &good), 0);
    assert_int_equal(wrun_start(&loop, &x, port, &bad), 0);
    WAIT_FOR(&loop, a.readies, 1);
    assert_int_equal(start_test(&mr, 2, 10), 0);
    WAIT_FOR(&loop, mr.spawned, 1);
    assert_int_equal(total_users(&a), 2);
    du_run_for(&loop, 0.5);
    assert_int_equal(x.readies, 0);
    assert_int_equal(cc_dist_master_worker_count(mr.m), 1);
    cc_dist_worker_close(a.w, true);
    cc_dist_worker_close(x.w, false);
    cc_dist_master_close(mr.m);
    assert_true(du_loop_done(&loop));
    cc_agg_release(&mr.agg);
    wrun_release(&a);
    wrun_release(&x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_master_with_two_workers),
        cmocka_unit_test(test_worker_before_master),
        cmocka_unit_test(test_master_lost),
        cmocka_unit_test(test_silent_worker),
        cmocka_unit_test(test_garbage_to_worker),
        cmocka_unit_test(test_garbage_to_master),
        cmocka_unit_test(test_curve_nodes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
