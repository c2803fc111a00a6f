/* SPDX-License-Identifier: MIT */
/*
 * test_dist_locust.c: interoperation with Debian's Locust 2.12.
 *
 *  - a cicada worker (started before its master) joins a headless Locust master, answers its
 *    spawn, and reports synthetic statistics; Locust's CSV files then show exactly those counts,
 *    failures and exceptions, with the percentiles its rounded buckets give;
 *  - a cicada master drives a Locust worker: spawn, spawning_complete, statistics whose counts
 *    are known, exceptions, stop and ready again, quit;
 *  - a Locust worker killed with SIGKILL is marked missing and the stats it sent stay.
 *
 * The tests skip when python3-locust is not installed. Waits are for conditions.
 */
#include "dist/master.h"
#include "dist/worker.h"
#include "core/err.h"

#include "distutil.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#define NCLS 2
static const char *const cls_names[NCLS] = {"Alpha", "Beta"};

static char tmpdir[64];

static int setup(void **state)
{
    (void)state;
    if (!du_have_locust()) return 0;
    strcpy(tmpdir, "/tmp/cicada-dist-locust-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    /* the files are small; keep them when a test failed, for reading */
    return 0;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* ---- a cicada worker under a Locust master -------------------------------------------- */

static const char master_locustfile[] = "from locust import User, task, constant\n"
                                        "\n"
                                        "class Alpha(User):\n"
                                        "    wait_time = constant(1)\n"
                                        "    @task\n"
                                        "    def t(self):\n"
                                        "        pass\n"
                                        "\n"
                                        "class Beta(User):\n"
                                        "    wait_time = constant(1)\n"
                                        "    @task\n"
                                        "    def t(self):\n"
                                        "        pass\n";

struct wrun {
    struct cc_dist_worker *w;
    uint32_t users[NCLS];
    unsigned readies, spawns, quits, closed, lost;
    bool injected;
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
    memcpy(r->users, s->counts, sizeof(r->users));
    cc_dist_worker_set_users(w, r->users);
    cc_dist_worker_spawning_complete(w);
}

static void w_stop(struct cc_dist_worker *w, void *data)
{
    struct wrun *r = data;
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

static void rec(struct wrun *r, const char *type, const char *name, double ms, const char *err)
{
    const struct cc_ikey *k = cc_recorder_key(&r->rec, type, strlen(type), name, strlen(name));
    cc_recorder_request(&r->rec, k, (uint64_t)llround(ms * 1e6), 100, err, err ? strlen(err) : 0);
}

/* The first report after the spawn carries 1,050 requests of known times. */
static void w_take(struct cc_dist_worker *w, struct cc_agg *delta, void *data)
{
    (void)w;
    struct wrun *r = data;
    if (r->injected || !r->spawns) return;
    r->injected = true;
    r->rec.now_s = cc_wall_s(); /* as a worker thread refreshes it every loop turn */
    for (int i = 0; i < 500; i++)
        rec(r, "GET", "/x", 10, i < 20 ? "HTTP 500" : NULL);
    for (int i = 0; i < 400; i++)
        rec(r, "GET", "/x", 147.3, NULL);
    for (int i = 0; i < 100; i++)
        rec(r, "GET", "/x", 1234, NULL);
    for (int i = 0; i < 50; i++)
        rec(r, "POST", "/y", 3, NULL);
    for (int i = 0; i < 3; i++)
        cc_recorder_exception(&r->rec, "ValueError: bad", 15, "  File \"t.lua\", line 1\n", 24);
    cc_agg_merge(delta, &r->shard, 0);
    cc_shard_clear(&r->shard);
}

static void w_closed(void *data)
{
    ((struct wrun *)data)->closed++;
}

static const struct cc_dist_worker_cbs wcbs = {
    .on_ready = w_ready,
    .on_spawn = w_spawn,
    .on_stop = w_stop,
    .on_quit = w_quit,
    .on_master_lost = w_lost,
    .take_stats = w_take,
    .on_closed = w_closed,
};

static bool worker_closed(void *ctx)
{
    return ((struct wrun *)ctx)->closed > 0;
}

/* Finds the CSV row whose first two fields are |type| and |name|; splits it into |f|. */
static int csv_row(const char *csv, const char *type, const char *name, char f[24][64])
{
    char want[160];
    snprintf(want, sizeof(want), "%s,%s,", type, name);
    for (const char *line = csv; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (strncmp(line, want, strlen(want)) == 0) {
            int n = 0;
            const char *p = line, *stop = line + len;
            while (p <= stop && n < 24) {
                const char *c = memchr(p, ',', (size_t)(stop - p));
                if (!c) c = stop;
                size_t k = (size_t)(c - p) < 63 ? (size_t)(c - p) : 63;
                memcpy(f[n], p, k);
                f[n][k] = '\0';
                if (k && f[n][k - 1] == '\r') f[n][k - 1] = '\0';
                n++;
                p = c + 1;
            }
            return n;
        }
        line = end ? end + 1 : NULL;
    }
    return 0;
}

static void test_worker_joins_locust_master(void **state)
{
    (void)state;
    if (!du_have_locust()) skip();
    uv_loop_t loop;
    uv_loop_init(&loop);
    char lf[128], prefix[128], log[128];
    snprintf(lf, sizeof(lf), "%s/master_locustfile.py", tmpdir);
    snprintf(prefix, sizeof(prefix), "%s/run", tmpdir);
    snprintf(log, sizeof(log), "%s/locust_master.log", tmpdir);
    write_file(lf, master_locustfile);
    int port = du_free_port();

    /* the worker first: it joins once the master is there */
    struct wrun r = {0};
    cc_shard_init(&r.shard);
    cc_recorder_init(&r.rec, &r.shard);
    struct cc_dist_worker_opts o;
    cc_dist_worker_opts_init(&o);
    o.master_port = port;
    o.nclasses = NCLS;
    o.class_names = cls_names;
    o.ready_retry_s = 0.5;
    o.ready_retries = 0;
    o.stats_interval_s = 0.5;
    assert_int_equal(cc_dist_worker_new(&loop, &o, &wcbs, &r, &r.w), 0);
    du_run_for(&loop, 0.6);

    char portarg[16];
    snprintf(portarg, sizeof(portarg), "%d", port);
    char *argv[] = {"/usr/bin/python3",
                    "-m",
                    "locust",
                    "-f",
                    lf,
                    "--master",
                    "--headless",
                    "--master-bind-host",
                    "127.0.0.1",
                    "--master-bind-port",
                    portarg,
                    "--expect-workers",
                    "1",
                    "-u",
                    "4",
                    "-r",
                    "4",
                    "-t",
                    "6s",
                    "--csv",
                    prefix,
                    "--only-summary",
                    NULL};
    struct du_proc locust;
    assert_int_equal(du_spawn(&loop, &locust, argv, tmpdir, log), 0);
    bool ok = du_run_until(&loop, du_proc_done, &locust, 90);
    if (!ok) du_kill(&loop, &locust, SIGKILL);
    assert_true(ok);
    assert_true(du_run_until(&loop, worker_closed, &r, 10));
    assert_int_equal(r.quits, 1);
    assert_true(r.spawns >= 1);
    assert_int_equal(r.users[0] + r.users[1], 4);
    assert_int_equal(r.users[0], 2);
    assert_true(r.injected);
    /* Locust exits 1 when there were failures */
    assert_true(locust.status == 0 || locust.status == 1);

    char path[192];
    snprintf(path, sizeof(path), "%s_stats.csv", prefix);
    char *csv = du_slurp(path);
    assert_non_null(csv);
    char f[24][64];
    /* Type,Name,Request Count,Failure Count,Median,Average,Min,Max,Avg size,RPS,Fail/s,50%,66%,
     * 75%,80%,90%,95%,98%,99%,99.9%,99.99%,100% */
    int n = csv_row(csv, "GET", "/x", f);
    if (n < 22) fprintf(stderr, "%s\n", csv);
    assert_true(n >= 22);
    assert_string_equal(f[2], "1000");
    assert_string_equal(f[3], "20");
    assert_true(atof(f[4]) == 10);                 /* the lower median */
    assert_true(fabs(atof(f[5]) - 187.32) < 0.01); /* exact average */
    assert_true(atof(f[6]) == 10);                 /* exact min */
    assert_true(atof(f[7]) == 1234);               /* exact max */
    assert_true(atof(f[11]) == 150);               /* 50%: Locust's ranks */
    assert_true(atof(f[15]) == 1200);              /* 90% */
    assert_true(atof(f[9]) > 0); /* Requests/s: our timestamps make sense to Locust */
    n = csv_row(csv, "POST", "/y", f);
    assert_true(n >= 22);
    assert_string_equal(f[2], "50");
    assert_string_equal(f[3], "0");
    assert_true(atof(f[4]) == 3);
    n = csv_row(csv, "", "Aggregated", f);
    assert_true(n >= 22);
    assert_string_equal(f[2], "1050");
    assert_string_equal(f[3], "20");
    free(csv);

    snprintf(path, sizeof(path), "%s_failures.csv", prefix);
    csv = du_slurp(path);
    assert_non_null(csv);
    assert_non_null(strstr(csv, "GET,/x,"));
    assert_non_null(strstr(csv, "HTTP 500"));
    assert_non_null(strstr(csv, ",20"));
    free(csv);

    snprintf(path, sizeof(path), "%s_exceptions.csv", prefix);
    csv = du_slurp(path);
    assert_non_null(csv);
    assert_non_null(strstr(csv, "3,ValueError: bad"));
    free(csv);

    /* nothing we sent upset Locust */
    char *out = du_slurp(log);
    assert_non_null(out);
    if (strstr(out, "Traceback") || strstr(out, "Unknown message")) fprintf(stderr, "%s\n", out);
    assert_null(strstr(out, "Traceback"));
    assert_null(strstr(out, "Unknown message"));
    assert_null(strstr(out, "Discarded report"));
    free(out);

    assert_true(du_loop_done(&loop));
    cc_recorder_release(&r.rec);
    cc_shard_release(&r.shard);
}

/* ---- a Locust worker under a cicada master ---------------------------------------------- */

static const char worker_locustfile[] =
    "from locust import User, task, constant, events\n"
    "\n"
    "class Alpha(User):\n"
    "    wait_time = constant(3600)\n"
    "    def on_start(self):\n"
    "        for i in range(25):\n"
    "            events.request.fire(request_type='GET', name='/a', response_time=10 + i,\n"
    "                                response_length=100, exception=None, context={})\n"
    "    @task\n"
    "    def t(self):\n"
    "        pass\n"
    "\n"
    "class Beta(User):\n"
    "    wait_time = constant(3600)\n"
    "    def on_start(self):\n"
    "        for i in range(10):\n"
    "            events.request.fire(request_type='POST', name='/b', response_time=147.3,\n"
    "                                response_length=0,\n"
    "                                exception=Exception('boom') if i < 2 else None, context={})\n"
    "    @task\n"
    "    def t(self):\n"
    "        raise ValueError('beta task failed')\n";

struct mrun {
    struct cc_dist_master *m;
    struct cc_agg agg;
    unsigned readies, expected, missing, gone, spawned, stopped, no_workers, closed;
    uint64_t spawned_users;
    char version[32];
    bool cicada;
};

static void m_ready(struct cc_dist_master *m, const struct cc_dist_node *n, void *data)
{
    (void)m;
    struct mrun *r = data;
    r->readies++;
    snprintf(r->version, sizeof(r->version), "%s", n->version ? n->version : "(-1)");
    r->cicada = n->cicada;
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
    (void)why;
    ((struct mrun *)data)->gone++;
}
static void m_spawned(struct cc_dist_master *m, uint64_t users, void *data)
{
    (void)m;
    struct mrun *r = data;
    r->spawned++;
    r->spawned_users = users;
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
    .on_stopped = m_stopped,
    .on_no_workers = m_no_workers,
    .on_closed = m_closed,
};

static void mrun_start(uv_loop_t *loop, struct mrun *r)
{
    memset(r, 0, sizeof(*r));
    cc_agg_init(&r->agg, false);
    cc_agg_open_interval(&r->agg, cc_now_ns());
    struct cc_dist_master_opts o;
    cc_dist_master_opts_init(&o);
    o.bind_host = "127.0.0.1";
    o.bind_port = 0;
    o.expect_workers = 1;
    /* Locust workers beat every second: 3 half-second ticks of slack, missing ~2 s after */
    o.heartbeat_interval_s = 0.5;
    o.heartbeat_liveness = 3;
    o.heartbeat_dead = -60;
    o.agg = &r->agg;
    char *err = NULL;
    assert_int_equal(cc_dist_master_new(loop, &o, &mcbs, r, &r->m, &err), 0);
}

static const struct cc_dist_class classes[NCLS] = {{"Alpha", 1, 0}, {"Beta", 1, 0}};

static int start_test(struct mrun *r, uint64_t users)
{
    struct cc_dist_test t = {.users = users, .rate = 10, .classes = classes, .nclasses = NCLS};
    return cc_dist_master_start(r->m, &t);
}

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
        if (!du_run_until((loop), reached, &c_, 60)) {                                             \
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

static bool excs_have(void *ctx)
{
    struct count_cond *c = ctx;
    return c->a->exc_keys.count > 0 && c->a->excs[0].count >= c->want;
}

static const struct cc_entry *find(const struct cc_agg *a, const char *type, const char *name)
{
    for (size_t i = 0; i < a->nentries; i++) {
        const struct cc_ikey *k = a->entries[i]->key;
        if (strcmp(k->part[0], type) == 0 && strcmp(k->part[1], name) == 0) return a->entries[i];
    }
    return NULL;
}

static int spawn_locust_worker(uv_loop_t *loop, struct du_proc *p, int port, const char *logname)
{
    char lf[128], log[128], portarg[16];
    snprintf(lf, sizeof(lf), "%s/worker_locustfile.py", tmpdir);
    snprintf(log, sizeof(log), "%s/%s", tmpdir, logname);
    write_file(lf, worker_locustfile);
    snprintf(portarg, sizeof(portarg), "%d", port);
    char *argv[] = {"/usr/bin/python3", "-m",        "locust",        "-f",    lf,  "--worker",
                    "--master-host",    "127.0.0.1", "--master-port", portarg, NULL};
    return du_spawn(loop, p, argv, tmpdir, log);
}

static void test_master_drives_locust_worker(void **state)
{
    (void)state;
    if (!du_have_locust()) skip();
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct mrun r;
    mrun_start(&loop, &r);
    struct du_proc locust;
    assert_int_equal(spawn_locust_worker(&loop, &locust, cc_dist_master_port(r.m), "worker1.log"),
                     0);
    WAIT_FOR(&loop, r.expected, 1);
    assert_string_equal(r.version, ""); /* Debian's Locust has no version string */
    assert_false(r.cicada);

    /* 4 users, 2 of each: spawn, and the Locust worker's spawning_complete */
    assert_int_equal(start_test(&r, 4), 0);
    WAIT_FOR(&loop, r.spawned, 1);
    assert_int_equal(r.spawned_users, 4);
    assert_int_equal(cc_dist_master_user_count(r.m), 4);
    size_t nn;
    const struct cc_dist_node *const *nodes = cc_dist_master_nodes(r.m, &nn);
    assert_int_equal(nn, 1);
    assert_int_equal(nodes[0]->users[0], 2);
    assert_int_equal(nodes[0]->users[1], 2);

    /* the stats of 2 x 25 GETs and 2 x 10 POSTs (4 failed), and 2 exceptions */
    struct count_cond cc = {&r.agg, 70};
    assert_true(du_run_until(&loop, agg_has, &cc, 60));
    struct count_cond ce = {&r.agg, 2};
    assert_true(du_run_until(&loop, excs_have, &ce, 60));
    du_run_for(&loop, 0.5);
    assert_int_equal(r.agg.total.count, 70);
    const struct cc_entry *a = find(&r.agg, "GET", "/a");
    const struct cc_entry *b = find(&r.agg, "POST", "/b");
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(a->count, 50);
    assert_int_equal(a->failures, 0);
    assert_int_equal(a->bytes, 5000);
    assert_true(fabs(a->sum_ms - 1100) < 1e-6);
    assert_true(fabs(cc_entry_min_ms(a) - 10) < 1e-9);
    assert_true(fabs(cc_entry_max_ms(a) - 34) < 1e-9);
    assert_true(fabs(cc_entry_percentile_ms(a, 0.5) - 22) < 0.3); /* whole ms below 100 */
    assert_int_equal(b->count, 20);
    assert_int_equal(b->failures, 4);
    assert_true(fabs(cc_entry_min_ms(b) - 147.3) < 1e-9);
    /* Locust's bucket 150.0 (a float key), clamped to the exact min and max, 147.3 */
    assert_true(fabs(cc_entry_percentile_ms(b, 0.5) - 147.3) < 1e-9);
    assert_int_equal(r.agg.fail_keys.count, 1);
    assert_string_equal(r.agg.fails[0].key->part[2], "Exception('boom')");
    assert_int_equal(r.agg.fails[0].occurrences, 4);
    assert_int_equal(r.agg.exc_keys.count, 1);
    assert_int_equal(r.agg.excs[0].count, 2);
    assert_non_null(strstr(r.agg.excs[0].key->part[0], "beta task failed"));

    /* stop: the Locust worker says client_stopped, then client_ready again */
    cc_dist_master_stop(r.m);
    WAIT_FOR(&loop, r.stopped, 1);
    WAIT_FOR(&loop, r.readies, 2);
    assert_string_equal(cc_dist_master_state(r.m), "stopped");

    /* quit: the worker sends its last report and quit, then exits */
    cc_dist_master_quit(r.m);
    WAIT_FOR(&loop, r.closed, 1);
    bool exited = du_run_until(&loop, du_proc_done, &locust, 30);
    if (!exited) du_kill(&loop, &locust, SIGKILL);
    assert_true(exited);
    assert_int_equal(r.gone, 1);

    char log[128];
    snprintf(log, sizeof(log), "%s/worker1.log", tmpdir);
    char *out = du_slurp(log);
    assert_non_null(out);
    if (strstr(out, "Traceback (most recent call last)") && !strstr(out, "beta task failed"))
        fprintf(stderr, "%s\n", out);
    assert_null(strstr(out, "Unknown message type"));
    assert_null(strstr(out, "RPCError"));
    free(out);
    assert_true(du_loop_done(&loop));
    cc_agg_release(&r.agg);
}

static void test_killed_locust_worker_goes_missing(void **state)
{
    (void)state;
    if (!du_have_locust()) skip();
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct mrun r;
    mrun_start(&loop, &r);
    struct du_proc locust;
    assert_int_equal(spawn_locust_worker(&loop, &locust, cc_dist_master_port(r.m), "worker2.log"),
                     0);
    WAIT_FOR(&loop, r.expected, 1);
    assert_int_equal(start_test(&r, 2), 0);
    WAIT_FOR(&loop, r.spawned, 1);
    struct count_cond cc = {&r.agg, 35};
    assert_true(du_run_until(&loop, agg_has, &cc, 60));
    uint64_t before = r.agg.total.count;

    du_kill(&loop, &locust, SIGKILL);
    assert_int_equal(locust.signal, SIGKILL);
    WAIT_FOR(&loop, r.missing, 1);
    WAIT_FOR(&loop, r.no_workers, 1);
    assert_int_equal(cc_dist_master_worker_count(r.m), 0);
    assert_int_equal(r.agg.total.count, before); /* what it reported stays */
    cc_dist_master_close(r.m);
    WAIT_FOR(&loop, r.closed, 1);
    assert_true(du_loop_done(&loop));
    cc_agg_release(&r.agg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_worker_joins_locust_master),
        cmocka_unit_test(test_master_drives_locust_worker),
        cmocka_unit_test(test_killed_locust_worker_goes_missing),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
