/* SPDX-License-Identifier: MIT */
/*
 * test_dist_zmq.c: ZeroMQ on libuv. Many round trips with sends made from timers (the ZMQ_FD
 * edge trap), multipart framing, closing from inside a callback, sends queued before a
 * connection exists, CURVE with allowed and refused clients, key files; every handle closes.
 */
#include "dist/zmq_uv.h"
#include "core/err.h"

#include "distutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <zmq.h>

struct side {
    struct cc_zsock *z;
    unsigned got;
    size_t last_frames;
    char last[64];
    char ident[64];
    bool echo;          /* a router that sends every message back */
    bool close_on_recv; /* closes itself inside the callback */
    bool closed;
};

static void on_recv(struct cc_zsock *z, const struct cc_zframe *f, size_t n, void *data)
{
    struct side *s = data;
    s->got++;
    s->last_frames = n;
    const struct cc_zframe *payload = &f[n - 1];
    size_t k = payload->len < sizeof(s->last) - 1 ? payload->len : sizeof(s->last) - 1;
    memcpy(s->last, payload->data, k);
    s->last[k] = '\0';
    if (n > 1) {
        size_t i = f[0].len < sizeof(s->ident) - 1 ? f[0].len : sizeof(s->ident) - 1;
        memcpy(s->ident, f[0].data, i);
        s->ident[i] = '\0';
    }
    if (s->echo) assert_int_equal(cc_zsock_send(z, f, n), 0);
    if (s->close_on_recv) {
        cc_zsock_close(z, NULL, NULL);
        s->z = NULL;
    }
}

static void on_closed(void *data)
{
    ((struct side *)data)->closed = true;
}

static int router(uv_loop_t *loop, struct side *s, const struct cc_zcurve *curve, int *port)
{
    struct cc_zsock_opts o = {.type = ZMQ_ROUTER, .linger_ms = 0, .curve = curve};
    int rv = cc_zsock_new(loop, &o, on_recv, NULL, s, &s->z);
    if (rv) return rv;
    return cc_zsock_bind(s->z, "tcp://127.0.0.1:0", port);
}

static int dealer(uv_loop_t *loop, struct side *s, const char *id, const struct cc_zcurve *curve,
                  int port)
{
    struct cc_zsock_opts o = {.type = ZMQ_DEALER, .identity = id, .linger_ms = 0, .curve = curve};
    int rv = cc_zsock_new(loop, &o, on_recv, NULL, s, &s->z);
    if (rv || port <= 0) return rv;
    char ep[64];
    snprintf(ep, sizeof(ep), "tcp://127.0.0.1:%d", port);
    return cc_zsock_connect(s->z, ep);
}

struct pump {
    struct side *d;
    unsigned sent, total, burst;
    uv_timer_t t;
};

/* Sends from a timer: the sends consume the ZMQ_FD edge while replies are arriving. */
static void pump_cb(uv_timer_t *t)
{
    struct pump *p = cc_container_of(t, struct pump, t);
    for (unsigned i = 0; i < p->burst && p->sent < p->total; i++) {
        char buf[32];
        int n = snprintf(buf, sizeof(buf), "msg %u", p->sent++);
        assert_int_equal(cc_zsock_send2(p->d->z, NULL, buf, (size_t)n), 0);
    }
    if (p->sent == p->total) uv_timer_stop(t);
}

static bool got_all(void *ctx)
{
    struct pump *p = ctx;
    return p->d->got == p->total;
}

static void test_roundtrips_from_timers(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct side r = {.echo = true}, d = {0};
    int port = 0;
    assert_int_equal(router(&loop, &r, NULL, &port), 0);
    assert_true(port > 0);
    assert_int_equal(dealer(&loop, &d, "host_1", NULL, port), 0);

    struct pump p = {.d = &d, .total = 20000, .burst = 50};
    uv_timer_init(&loop, &p.t);
    uv_timer_start(&p.t, pump_cb, 1, 1);
    assert_true(du_run_until(&loop, got_all, &p, 60));
    assert_int_equal(r.got, 20000);
    assert_string_equal(r.ident, "host_1"); /* the ROUTER sees the DEALER's identity */
    assert_int_equal(r.last_frames, 2);
    assert_string_equal(d.last, "msg 19999");
    assert_int_equal(d.last_frames, 1);

    uv_close((uv_handle_t *)&p.t, NULL);
    cc_zsock_close(r.z, on_closed, &r);
    cc_zsock_close(d.z, on_closed, &d);
    assert_true(du_loop_done(&loop));
    assert_true(r.closed && d.closed);
}

static bool got_one(void *ctx)
{
    return ((struct side *)ctx)->got >= 1;
}

static bool got_three(void *ctx)
{
    return ((struct side *)ctx)->got >= 3;
}

/* Frames arrive together; a socket may close inside its own callback. */
static void test_multipart_and_close_in_callback(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct side r = {.close_on_recv = true}, d = {0};
    int port = 0;
    assert_int_equal(router(&loop, &r, NULL, &port), 0);
    assert_int_equal(dealer(&loop, &d, "h_2", NULL, port), 0);
    struct cc_zframe f[3] = {{"a", 1}, {"", 0}, {"ccc", 3}};
    assert_int_equal(cc_zsock_send(d.z, f, 3), 0);
    assert_int_equal(cc_zsock_send(d.z, f, 3), 0);
    assert_true(du_run_until(&loop, got_one, &r, 20));
    du_run_for(&loop, 0.2);
    assert_int_equal(r.got, 1); /* closed after the first: the second is never delivered */
    assert_int_equal(r.last_frames, 4);
    assert_string_equal(r.ident, "h_2");
    assert_string_equal(r.last, "ccc");
    assert_null(r.z);
    /* a closed socket refuses sends */
    cc_zsock_close(d.z, NULL, NULL);
    assert_true(du_loop_done(&loop));
}

/* A DEALER may send before it connects: messages wait, in order, and leave once connected. */
static void test_send_before_connect(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct side r = {0}, d = {0};
    assert_int_equal(dealer(&loop, &d, "h_3", NULL, 0), 0);
    for (int i = 0; i < 3; i++) {
        char buf[8];
        snprintf(buf, sizeof(buf), "m%d", i);
        assert_int_equal(cc_zsock_send2(d.z, NULL, buf, strlen(buf)), 0);
    }
    assert_int_equal(cc_zsock_queued(d.z), 3); /* no peer yet: libzmq said EAGAIN */
    int port = 0;
    assert_int_equal(router(&loop, &r, NULL, &port), 0);
    char ep[64];
    snprintf(ep, sizeof(ep), "tcp://127.0.0.1:%d", port);
    assert_int_equal(cc_zsock_connect(d.z, ep), 0);
    assert_true(du_run_until(&loop, got_three, &r, 20));
    assert_string_equal(r.last, "m2");
    assert_int_equal(cc_zsock_queued(d.z), 0);
    cc_zsock_close(r.z, NULL, NULL);
    cc_zsock_close(d.z, NULL, NULL);
    assert_true(du_loop_done(&loop));
}

/* CURVE: an allowed client gets through, others are refused by the ZAP handler. */
static void test_curve(void **state)
{
    (void)state;
    if (!zmq_has("curve")) skip();
    struct cc_zcurve server = {.server = true}, good = {0}, stranger = {0}, wrong_server = {0};
    assert_int_equal(cc_zcurve_keypair(server.public_key, server.secret_key), 0);
    assert_int_equal(cc_zcurve_keypair(good.public_key, good.secret_key), 0);
    assert_int_equal(cc_zcurve_keypair(stranger.public_key, stranger.secret_key), 0);
    char other_pub[CC_ZKEY_LEN + 1], other_sec[CC_ZKEY_LEN + 1];
    assert_int_equal(cc_zcurve_keypair(other_pub, other_sec), 0);
    wrong_server = good;
    memcpy(good.server_key, server.public_key, sizeof(good.server_key));
    memcpy(stranger.server_key, server.public_key, sizeof(stranger.server_key));
    memcpy(wrong_server.server_key, other_pub, sizeof(wrong_server.server_key));
    char allowed[1][CC_ZKEY_LEN + 1];
    memcpy(allowed[0], good.public_key, sizeof(allowed[0]));
    server.allowed = allowed;
    server.nallowed = 1;

    char derived[CC_ZKEY_LEN + 1];
    assert_int_equal(cc_zcurve_public_from_secret(server.secret_key, derived), 0);
    assert_string_equal(derived, server.public_key);

    uv_loop_t loop;
    uv_loop_init(&loop);
    struct side r = {.echo = true}, d1 = {0}, d2 = {0}, d3 = {0};
    int port = 0;
    assert_int_equal(router(&loop, &r, &server, &port), 0);
    assert_int_equal(dealer(&loop, &d1, "ok_1", &good, port), 0);
    assert_int_equal(dealer(&loop, &d2, "stranger_1", &stranger, port), 0);
    assert_int_equal(dealer(&loop, &d3, "wrong_1", &wrong_server, port), 0);
    assert_int_equal(cc_zsock_send2(d1.z, NULL, "hello", 5), 0);
    assert_int_equal(cc_zsock_send2(d2.z, NULL, "let me in", 9), 0);
    assert_int_equal(cc_zsock_send2(d3.z, NULL, "me too", 6), 0);
    assert_true(du_run_until(&loop, got_one, &d1, 20));
    assert_string_equal(d1.last, "hello");
    du_run_for(&loop, 1.0);
    assert_int_equal(r.got, 1); /* only the allowed client's message */
    assert_int_equal(d2.got, 0);
    assert_int_equal(d3.got, 0);

    /* a plain (NULL security) client cannot talk to a CURVE server either */
    struct side d4 = {0};
    assert_int_equal(dealer(&loop, &d4, "plain_1", NULL, port), 0);
    assert_int_equal(cc_zsock_send2(d4.z, NULL, "plain", 5), 0);
    du_run_for(&loop, 0.5);
    assert_int_equal(r.got, 1);

    cc_zsock_close(r.z, NULL, NULL);
    cc_zsock_close(d1.z, NULL, NULL);
    cc_zsock_close(d2.z, NULL, NULL);
    cc_zsock_close(d3.z, NULL, NULL);
    cc_zsock_close(d4.z, NULL, NULL);
    assert_true(du_loop_done(&loop));

    /* bad keys are configuration errors */
    struct cc_zcurve bad = good;
    strcpy(bad.secret_key, "not a key");
    uv_loop_init(&loop);
    struct side x = {0};
    assert_int_equal(dealer(&loop, &x, "x_1", &bad, 0), CC_ECONFIG);
    assert_true(du_loop_done(&loop));
}

static void test_key_files(void **state)
{
    (void)state;
    if (!zmq_has("curve")) skip();
    char pub[CC_ZKEY_LEN + 1], sec[CC_ZKEY_LEN + 1], out[CC_ZKEY_LEN + 1];
    char *err = NULL;
    assert_int_equal(cc_zcurve_keypair(pub, sec), 0);
    /* the key itself */
    assert_int_equal(cc_zcurve_load_key(pub, "public-key", out, &err), 0);
    assert_string_equal(out, pub);

    /* a certificate as zcert writes it */
    char path[] = "/tmp/cicada-test-cert-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f,
            "#   ****  Generated by cicada's test  ****\nmetadata\ncurve\n"
            "    public-key = \"%s\"\n    secret-key = \"%s\"\n",
            pub, sec);
    fclose(f);
    assert_int_equal(cc_zcurve_load_key(path, "secret-key", out, &err), 0);
    assert_string_equal(out, sec);
    assert_int_equal(cc_zcurve_load_key(path, "public-key", out, &err), 0);
    assert_string_equal(out, pub);

    /* a file that holds only the key */
    f = fopen(path, "w");
    fprintf(f, "%s\n", pub);
    fclose(f);
    assert_int_equal(cc_zcurve_load_key(path, "public-key", out, &err), 0);
    assert_string_equal(out, pub);

    /* nothing usable */
    f = fopen(path, "w");
    fprintf(f, "hello\n");
    fclose(f);
    assert_int_equal(cc_zcurve_load_key(path, "public-key", out, &err), CC_ECONFIG);
    assert_non_null(err);
    cc_free(err);
    err = NULL;
    unlink(path);
    assert_int_equal(cc_zcurve_load_key("/nonexistent/key", "public-key", out, &err), CC_ECONFIG);
    cc_free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrips_from_timers),
        cmocka_unit_test(test_multipart_and_close_in_callback),
        cmocka_unit_test(test_send_before_connect),
        cmocka_unit_test(test_curve),
        cmocka_unit_test(test_key_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
