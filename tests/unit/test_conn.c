/* SPDX-License-Identifier: MIT */
/*
 * test_conn.c: the transport against real servers on loopback: our own libuv TCP server
 * (echo, silent, reset, EOF, banner), openssl s_server with certificates made at test time,
 * and the resolver. Every test closes all its handles and checks uv_loop_close() == 0.
 */
#include "core/conn.h"
#include "core/err.h"
#include "core/resolve.h"
#include "core/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

/* Only bounds a test that would otherwise hang; nothing is asserted about durations. */
#define GUARD_MS 30000

static char tmpdir[256];  /* certificates and server logs, made by the group setup */
static bool have_openssl; /* the openssl command is there */

/* ---- fixture: a loop and a guard timer ------------------------------------------------------ */

struct fx {
    uv_loop_t loop;
    uv_timer_t guard;
    bool guard_fired;
};

static uv_loop_t *test_loop; /* the running test's loop */

static void on_guard(uv_timer_t *t)
{
    struct fx *f = t->data;
    f->guard_fired = true;
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_int_equal(uv_loop_init(&f->loop), 0);
    uv_timer_init(&f->loop, &f->guard);
    f->guard.data = f;
    test_loop = &f->loop;
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    free(*state);
    return 0;
}

/* Runs the loop until |cond| holds; fails the test if the guard timer fires first. */
#define RUN_UNTIL(f, cond)                                                                         \
    do {                                                                                           \
        (f)->guard_fired = false;                                                                  \
        uv_timer_start(&(f)->guard, on_guard, GUARD_MS, 0);                                        \
        while (!(cond) && !(f)->guard_fired)                                                       \
            uv_run(&(f)->loop, UV_RUN_ONCE);                                                       \
        uv_timer_stop(&(f)->guard);                                                                \
        if (!(cond)) fail_msg("gave up waiting for %s", #cond);                                    \
    } while (0)

/* Runs the loop for about |ms| (for checks that something does not happen). */
static void run_for(struct fx *f, uint64_t ms)
{
    f->guard_fired = false;
    uv_timer_start(&f->guard, on_guard, ms, 0);
    while (!f->guard_fired)
        uv_run(&f->loop, UV_RUN_ONCE);
}

/* Closes the guard, runs the loop dry, and checks that nothing was left open. */
static void fx_finish(struct fx *f)
{
    uv_close((uv_handle_t *)&f->guard, NULL);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

/* ---- our own TCP test server ---------------------------------------------------------------- */

enum srv_mode {
    SRV_ECHO,           /* sends back what it reads */
    SRV_SILENT,         /* reads and discards; never writes */
    SRV_DISCARD_PAUSED, /* does not read until srv_resume(), then discards */
    SRV_BYE,            /* on the first data: writes "bye" and closes (FIN) */
    SRV_RESET,          /* on the first data: resets the connection */
    SRV_BANNER,         /* on accept: writes a plain-text banner, then discards */
    SRV_SEND,           /* on accept: writes |send|, then discards */
};

struct srv;
struct sconn {
    uv_tcp_t h;
    struct srv *s;
    struct sconn *next;
    bool closing;
};

struct srv {
    uv_tcp_t listener;
    enum srv_mode mode;
    uint16_t port;
    struct sconn *conns;
    int accepted;
    int open; /* handles not yet closed */
    size_t received;
    char last_peer[64];
    const char *send;
    size_t send_len;
};

struct swrite {
    uv_write_t req;
    struct sconn *sc; /* close after the write (SRV_BYE), or NULL */
    char data[];
};

static void srv_on_closed(uv_handle_t *h)
{
    struct srv *s = h->data;
    s->open--;
    if (h != (uv_handle_t *)&s->listener) {
        struct sconn *sc = cc_container_of((uv_tcp_t *)h, struct sconn, h);
        struct sconn **pp = &s->conns;
        while (*pp != sc)
            pp = &(*pp)->next;
        *pp = sc->next;
        free(sc);
    }
}

static void sconn_close(struct sconn *sc)
{
    if (sc->closing) return;
    sc->closing = true;
    uv_close((uv_handle_t *)&sc->h, srv_on_closed);
}

static void srv_alloc(uv_handle_t *h, size_t n, uv_buf_t *buf)
{
    (void)h;
    static char space[256 * 1024];
    (void)n;
    *buf = uv_buf_init(space, sizeof(space));
}

static void srv_on_written(uv_write_t *req, int status)
{
    struct swrite *w = cc_container_of(req, struct swrite, req);
    (void)status;
    if (w->sc) sconn_close(w->sc);
    free(w);
}

static void srv_write(struct sconn *sc, const char *data, size_t len, bool close_after)
{
    struct swrite *w = malloc(sizeof(*w) + len);
    memcpy(w->data, data, len);
    w->sc = close_after ? sc : NULL;
    uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
    assert_int_equal(uv_write(&w->req, (uv_stream_t *)&sc->h, &b, 1, srv_on_written), 0);
}

static void srv_on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct sconn *sc = cc_container_of((uv_tcp_t *)st, struct sconn, h);
    struct srv *s = sc->s;
    if (n < 0) {
        sconn_close(sc);
        return;
    }
    if (n == 0) return;
    s->received += (size_t)n;
    switch (s->mode) {
    case SRV_ECHO:
        srv_write(sc, buf->base, (size_t)n, false);
        break;
    case SRV_BYE:
        uv_read_stop(st);
        srv_write(sc, "bye", 3, true);
        break;
    case SRV_RESET:
        if (!sc->closing) {
            sc->closing = true;
            uv_tcp_close_reset(&sc->h, srv_on_closed);
        }
        break;
    default:
        break;
    }
}

static void srv_on_conn(uv_stream_t *l, int status)
{
    struct srv *s = l->data;
    assert_int_equal(status, 0);
    struct sconn *sc = calloc(1, sizeof(*sc));
    sc->s = s;
    uv_tcp_init(l->loop, &sc->h);
    sc->h.data = s;
    s->open++;
    sc->next = s->conns;
    s->conns = sc;
    assert_int_equal(uv_accept(l, (uv_stream_t *)&sc->h), 0);
    s->accepted++;
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    uv_tcp_getpeername(&sc->h, (struct sockaddr *)&ss, &len);
    if (ss.ss_family == AF_INET6)
        uv_ip6_name((struct sockaddr_in6 *)&ss, s->last_peer, sizeof(s->last_peer));
    else
        uv_ip4_name((struct sockaddr_in *)&ss, s->last_peer, sizeof(s->last_peer));
    if (s->mode == SRV_BANNER) srv_write(sc, "SSH-2.0-NotTLS\r\n", 16, false);
    if (s->mode == SRV_SEND) srv_write(sc, s->send, s->send_len, false);
    if (s->mode != SRV_DISCARD_PAUSED) uv_read_start((uv_stream_t *)&sc->h, srv_alloc, srv_on_read);
}

/* Listens on |ip| (127.0.0.1 or ::1), port chosen by the kernel. */
static int srv_start_on(struct srv *s, uv_loop_t *loop, enum srv_mode mode, const char *ip)
{
    memset(s, 0, sizeof(*s));
    s->mode = mode;
    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    s->open = 1;
    union cc_sockaddr a;
    if (strchr(ip, ':'))
        uv_ip6_addr(ip, 0, &a.in6);
    else
        uv_ip4_addr(ip, 0, &a.in);
    int rv = uv_tcp_bind(&s->listener, &a.sa, 0);
    if (rv == 0) rv = uv_listen((uv_stream_t *)&s->listener, 128, srv_on_conn);
    int len = sizeof(a);
    uv_tcp_getsockname(&s->listener, &a.sa, &len);
    s->port = ntohs(a.sa.sa_family == AF_INET6 ? a.in6.sin6_port : a.in.sin_port);
    return rv;
}

static void srv_start(struct srv *s, uv_loop_t *loop, enum srv_mode mode)
{
    assert_int_equal(srv_start_on(s, loop, mode, "127.0.0.1"), 0);
}

static void srv_resume(struct srv *s)
{
    for (struct sconn *sc = s->conns; sc; sc = sc->next)
        uv_read_start((uv_stream_t *)&sc->h, srv_alloc, srv_on_read);
}

static void srv_stop(struct srv *s)
{
    uv_close((uv_handle_t *)&s->listener, srv_on_closed);
    for (struct sconn *sc = s->conns; sc; sc = sc->next)
        sconn_close(sc);
}

/* ---- the client side ------------------------------------------------------------------------ */

struct cli {
    struct cc_conn conn;
    bool in_call; /* inside a cc_conn_* call: no callback may run now */
    int connects, connect_status;
    int ends, end_status;
    int closes, drains, reads;
    bool close_on_connect; /* closes from inside on_connect */
    bool stop_on_read;     /* stops reading from inside each on_read */
    char *rx;
    size_t rx_len, rx_cap;
};

/*
 * Callbacks that run from a timer (deferred events) come before the loop polls; uv_stop()
 * makes that poll return at once, so RUN_UNTIL sees the change without waiting for the guard.
 */
static void wake(uv_loop_t *loop)
{
    uv_stop(loop);
}

static void cli_on_connect(struct cc_conn *c, int status)
{
    struct cli *k = c->data;
    wake(c->tcp.loop);
    assert_false(k->in_call);
    k->connects++;
    k->connect_status = status;
    if (k->close_on_connect) cc_conn_close(c);
}

static void cli_on_read(struct cc_conn *c, const char *data, size_t len)
{
    struct cli *k = c->data;
    wake(c->tcp.loop);
    assert_false(k->in_call);
    assert_true(len > 0);
    k->reads++;
    if (k->rx_len + len > k->rx_cap) {
        k->rx_cap = (k->rx_len + len) * 2;
        k->rx = realloc(k->rx, k->rx_cap);
    }
    memcpy(k->rx + k->rx_len, data, len);
    k->rx_len += len;
    if (k->stop_on_read) cc_conn_read_stop(c);
}

static void cli_on_end(struct cc_conn *c, int status)
{
    struct cli *k = c->data;
    wake(c->tcp.loop);
    assert_false(k->in_call);
    k->ends++;
    k->end_status = status;
}

static void cli_on_drain(struct cc_conn *c)
{
    struct cli *k = c->data;
    wake(c->tcp.loop);
    assert_false(k->in_call);
    k->drains++;
}

static void cli_on_close(struct cc_conn *c)
{
    struct cli *k = c->data;
    wake(c->tcp.loop);
    assert_false(k->in_call);
    k->closes++;
}

static const struct cc_conn_cbs cli_cbs = {
    .on_connect = cli_on_connect,
    .on_read = cli_on_read,
    .on_end = cli_on_end,
    .on_drain = cli_on_drain,
    .on_close = cli_on_close,
};

static struct sockaddr_in addr4(const char *ip, uint16_t port)
{
    struct sockaddr_in a;
    assert_int_equal(uv_ip4_addr(ip, port, &a), 0);
    return a;
}

static int cli_connect(struct cli *k, uv_loop_t *loop, struct cc_conn_opts *o)
{
    k->in_call = true;
    int rv = cc_conn_connect(&k->conn, loop, o, &cli_cbs, k);
    k->in_call = false;
    return rv;
}

static int cli_write(struct cli *k, const char *data, size_t len)
{
    k->in_call = true;
    int rv = cc_conn_write(&k->conn, data, len);
    k->in_call = false;
    return rv;
}

static void cli_close(struct cli *k)
{
    k->in_call = true;
    cc_conn_close(&k->conn);
    k->in_call = false;
}

static void cli_reset_rx(struct cli *k)
{
    k->rx_len = 0;
}

static void cli_free(struct cli *k)
{
    free(k->rx);
    k->rx = NULL;
    k->rx_len = k->rx_cap = 0;
}

/* Connects to our server on 127.0.0.1:|port| and waits for on_connect(0). */
static void cli_open_plain(struct fx *f, struct cli *k, uint16_t port)
{
    struct sockaddr_in a = addr4("127.0.0.1", port);
    struct cc_conn_opts o = {.addr = (struct sockaddr *)&a, .connect_timeout_ms = GUARD_MS};
    assert_int_equal(cli_connect(k, &f->loop, &o), 0);
    assert_int_equal(k->connects, 0); /* never from inside the call */
    RUN_UNTIL(f, k->connects == 1);
    assert_int_equal(k->connect_status, 0);
    assert_true(cc_conn_is_open(&k->conn));
}

/* A free TCP port on 127.0.0.1 (bound, read, released). */
static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = addr4("127.0.0.1", 0);
    socklen_t len = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void fill_pattern(char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (char)((i * 131 + seed) & 0xff);
}

/* ---- errors --------------------------------------------------------------------------------- */

static void test_strerror(void **state)
{
    fx_finish(*state);
    assert_string_equal(cc_strerror(0), "success");
    assert_string_equal(cc_strerror(UV_ECONNREFUSED), "connection refused");
    assert_string_equal(cc_strerror(CC_ECERT), "TLS certificate verification failed");
    assert_string_equal(cc_strerror(CC_ETIMEDOUT_CONNECT), "connect timed out");
    assert_string_equal(cc_strerror(UV_EAI_NONAME), "unknown node or service");
    assert_string_equal(cc_strerror(CC_ERR_FIRST - 500), "unknown cicada error");
    assert_string_equal(cc_strerror(-EBADMSG), "Bad message"); /* unknown to libuv */
    assert_string_equal(cc_strerror(-987654), "unknown error");
    assert_true(cc_err_is_ours(CC_ETLS));
    assert_false(cc_err_is_ours(UV_ECONNRESET));
    assert_false(cc_err_is_ours(UV_EAI_NONAME));
}

/* ---- resolver ------------------------------------------------------------------------------- */

struct res {
    int calls, status, n;
    union cc_sockaddr addrs[CC_RESOLVE_MAX_ADDRS];
    char error[512];
};

static void on_resolved(const struct cc_resolve_result *r, void *data)
{
    struct res *x = data;
    wake(test_loop);
    x->calls++;
    x->status = r->status;
    x->n = (int)r->n;
    for (size_t i = 0; i < r->n; i++)
        x->addrs[i] = r->addrs[i];
    snprintf(x->error, sizeof(x->error), "%s", r->error ? r->error : "");
}

static void on_resolver_closed(struct cc_resolver *r)
{
    (void)r;
}

static void test_resolve_literals(void **state)
{
    struct fx *f = *state;
    struct cc_resolver r;
    cc_resolver_init(&r, &f->loop, 0);
    struct res a = {0}, b = {0}, c = {0};
    assert_int_equal(cc_resolve(&r, "127.0.0.1", 8080, on_resolved, &a, NULL), 0);
    assert_int_equal(cc_resolve(&r, "[::1]", 443, on_resolved, &b, NULL), 0);
    assert_int_equal(cc_resolve(&r, "::1", 80, on_resolved, &c, NULL), 0);
    assert_int_equal(a.calls + b.calls + c.calls, 0); /* delivered from the loop only */
    RUN_UNTIL(f, a.calls && b.calls && c.calls);
    assert_int_equal(a.status, 0);
    assert_int_equal(a.n, 1);
    assert_int_equal(a.addrs[0].sa.sa_family, AF_INET);
    assert_int_equal(ntohs(a.addrs[0].in.sin_port), 8080);
    char buf[64];
    assert_string_equal(cc_sockaddr_str(&a.addrs[0].sa, buf, sizeof(buf)), "127.0.0.1:8080");
    assert_int_equal(b.addrs[0].sa.sa_family, AF_INET6);
    assert_string_equal(cc_sockaddr_str(&b.addrs[0].sa, buf, sizeof(buf)), "[::1]:443");
    assert_int_equal(ntohs(c.addrs[0].in6.sin6_port), 80);

    /* The same literal again: a cache hit, still delivered from the loop, with its own port. */
    memset(&a, 0, sizeof(a));
    assert_int_equal(cc_resolve(&r, "127.0.0.1", 9, on_resolved, &a, NULL), 0);
    assert_int_equal(a.calls, 0);
    RUN_UNTIL(f, a.calls == 1);
    assert_int_equal(ntohs(a.addrs[0].in.sin_port), 9);

    assert_int_equal(cc_resolve(&r, "", 1, on_resolved, &a, NULL), UV_EINVAL);
    cc_resolver_close(&r, on_resolver_closed);
    assert_int_equal(cc_resolve(&r, "127.0.0.1", 1, on_resolved, &a, NULL), CC_ECLOSED);
    fx_finish(f);
}

static void test_resolve_names(void **state)
{
    struct fx *f = *state;
    struct cc_resolver r;
    cc_resolver_init(&r, &f->loop, 60000);
    struct res a = {0}, b = {0};
    /* Two lookups of one name at once share one getaddrinfo() call. */
    assert_int_equal(cc_resolve(&r, "localhost", 8080, on_resolved, &a, NULL), 0);
    assert_int_equal(cc_resolve(&r, "localhost", 8081, on_resolved, &b, NULL), 0);
    assert_int_equal(cc_resolver_lookups(&r), 1);
    RUN_UNTIL(f, a.calls && b.calls);
    assert_int_equal(a.status, 0);
    assert_true(a.n >= 1);
    bool loopback = false;
    for (int i = 0; i < a.n; i++) {
        if (a.addrs[i].sa.sa_family == AF_INET) {
            assert_int_equal(ntohs(a.addrs[i].in.sin_port), 8080);
            loopback |= ntohl(a.addrs[i].in.sin_addr.s_addr) >> 24 == 127;
        } else {
            assert_int_equal(ntohs(a.addrs[i].in6.sin6_port), 8080);
            loopback |= IN6_IS_ADDR_LOOPBACK(&a.addrs[i].in6.sin6_addr);
        }
    }
    assert_true(loopback);
    assert_int_equal(ntohs(b.addrs[0].sa.sa_family == AF_INET ? b.addrs[0].in.sin_port
                                                              : b.addrs[0].in6.sin6_port),
                     8081);

    /* Cached now: no query is started. */
    memset(&a, 0, sizeof(a));
    assert_int_equal(cc_resolve(&r, "localhost", 1, on_resolved, &a, NULL), 0);
    assert_int_equal(cc_resolver_lookups(&r), 0);
    RUN_UNTIL(f, a.calls == 1);
    assert_int_equal(a.status, 0);

    /* Flushed: a query again. */
    cc_resolver_flush(&r);
    memset(&a, 0, sizeof(a));
    assert_int_equal(cc_resolve(&r, "localhost", 1, on_resolved, &a, NULL), 0);
    assert_int_equal(cc_resolver_lookups(&r), 1);
    RUN_UNTIL(f, a.calls == 1);

    cc_resolver_close(&r, on_resolver_closed);
    fx_finish(f);
}

/* Malformed names fail without a lookup (no DNS traffic), with the name in the message. */
static void test_resolve_bad_names(void **state)
{
    struct fx *f = *state;
    struct cc_resolver r;
    cc_resolver_init(&r, &f->loop, 0);
    static const char *const bad[] = {"no such host", "a..b", ".lead", "under/slash",
                                      "x123456789012345678901234567890123456789012345678901234"
                                      "567890123.test"};
    struct res x[CC_ARRAY_LEN(bad)];
    memset(x, 0, sizeof(x));
    for (size_t i = 0; i < CC_ARRAY_LEN(bad); i++)
        assert_int_equal(cc_resolve(&r, bad[i], 80, on_resolved, &x[i], NULL), 0);
    assert_int_equal(cc_resolver_lookups(&r), 0);
    for (size_t i = 0; i < CC_ARRAY_LEN(bad); i++) {
        RUN_UNTIL(f, x[i].calls == 1);
        assert_int_equal(x[i].status, UV_EAI_NONAME);
        assert_int_equal(x[i].n, 0);
        char want[300];
        snprintf(want, sizeof(want), "cannot resolve host '%s'", bad[i]);
        assert_non_null(strstr(x[i].error, want));
    }
    cc_resolver_close(&r, on_resolver_closed);
    fx_finish(f);
}

static void test_resolve_cancel(void **state)
{
    struct fx *f = *state;
    struct cc_resolver r;
    cc_resolver_init(&r, &f->loop, 0);
    struct res a = {0}, b = {0}, c = {0}, d = {0};
    struct cc_resolve_req *ra, *rc, *rd;
    assert_int_equal(cc_resolve(&r, "127.0.0.1", 1, on_resolved, &a, &ra), 0);
    assert_int_equal(cc_resolve(&r, "127.0.0.2", 1, on_resolved, &b, NULL), 0);
    assert_int_equal(cc_resolve(&r, "localhost", 1, on_resolved, &c, &rc), 0);
    cc_resolve_cancel(ra);
    cc_resolve_cancel(rc); /* the lookup goes on and fills the cache */
    RUN_UNTIL(f, b.calls == 1 && cc_resolver_lookups(&r) == 0);
    run_for(f, 20);
    assert_int_equal(a.calls, 0);
    assert_int_equal(c.calls, 0);
    assert_int_equal(r.cache_n, 3);

    /* Closing cancels what is pending: no callback. */
    assert_int_equal(cc_resolve(&r, "127.0.0.3", 1, on_resolved, &d, &rd), 0);
    cc_resolver_close(&r, on_resolver_closed);
    fx_finish(f);
    assert_int_equal(d.calls, 0);
}

/* ---- plain TCP ------------------------------------------------------------------------------ */

static void test_plain_echo_sizes(void **state)
{
    struct fx *f = *state;
    struct srv s;
    srv_start(&s, &f->loop, SRV_ECHO);
    struct cli k = {0};
    cli_open_plain(f, &k, s.port);
    assert_true(sizeof(struct cc_conn) <= 1024);

    static const size_t sizes[] = {1, 2, 100, 4096, 65535, 65536, 65537, 1 << 20, 6 << 20};
    for (size_t i = 0; i < CC_ARRAY_LEN(sizes); i++) {
        size_t n = sizes[i];
        char *data = malloc(n);
        fill_pattern(data, n, (unsigned)i);
        cli_reset_rx(&k);
        assert_int_equal(cli_write(&k, data, n), 0);
        RUN_UNTIL(f, k.rx_len >= n);
        assert_int_equal(k.rx_len, n);
        assert_memory_equal(k.rx, data, n);
        free(data);
    }
    assert_int_equal(cc_conn_write_queued(&k.conn), 0);
    assert_int_equal(k.ends, 0);

    /* Vectored: pieces arrive in order, empty ones skipped. */
    cli_reset_rx(&k);
    uv_buf_t bufs[3] = {uv_buf_init("GET / ", 6), uv_buf_init("", 0), uv_buf_init("HTTP/1.1", 8)};
    k.in_call = true;
    assert_int_equal(cc_conn_writev(&k.conn, bufs, 3), 0);
    k.in_call = false;
    RUN_UNTIL(f, k.rx_len >= 14);
    assert_memory_equal(k.rx, "GET / HTTP/1.1", 14);

    cc_conn_trim(&k.conn);
    cli_close(&k);
    cli_close(&k); /* idempotent */
    RUN_UNTIL(f, k.closes == 1);
    assert_int_equal(cli_write(&k, "x", 1), CC_ECLOSED);
    srv_stop(&s);
    fx_finish(f);
    assert_int_equal(k.closes, 1);
    assert_int_equal(k.connects, 1);
    assert_int_equal(k.ends, 0);
    cli_free(&k);
}

/* A server that does not read: the queue grows past the high-water mark, then drains. */
static void test_plain_backpressure(void **state)
{
    struct fx *f = *state;
    struct srv s;
    srv_start(&s, &f->loop, SRV_DISCARD_PAUSED);
    struct cli k = {0};
    struct sockaddr_in a = addr4("127.0.0.1", s.port);
    struct cc_conn_opts o = {.addr = (struct sockaddr *)&a, .write_high_water = 256 * 1024};
    assert_int_equal(cli_connect(&k, &f->loop, &o), 0);
    RUN_UNTIL(f, k.connects == 1 && s.accepted == 1);
    assert_int_equal(k.connect_status, 0);

    /* Far more than any socket buffer holds: write until the queue pushes back. */
    size_t chunk = 1 << 20, total = 0;
    char *data = malloc(chunk);
    fill_pattern(data, chunk, 7);
    while (!cc_conn_write_blocked(&k.conn) && total < (size_t)512 << 20) {
        assert_int_equal(cli_write(&k, data, chunk), 0);
        total += chunk;
    }
    assert_true(cc_conn_write_blocked(&k.conn));
    assert_true(cc_conn_write_queued(&k.conn) >= 256 * 1024);
    /* Writing on while blocked still works: it is only queued. */
    assert_int_equal(cli_write(&k, data, chunk), 0);
    total += chunk;
    free(data);
    run_for(f, 50);
    assert_int_equal(k.drains, 0);

    srv_resume(&s);
    RUN_UNTIL(f, k.drains == 1);
    assert_int_equal(cc_conn_write_queued(&k.conn), 0);
    assert_false(cc_conn_write_blocked(&k.conn));
    RUN_UNTIL(f, s.received == total);

    cli_close(&k);
    srv_stop(&s);
    fx_finish(f);
    assert_int_equal(k.closes, 1);
    cli_free(&k);
}

static void test_plain_eof(void **state)
{
    struct fx *f = *state;
    struct srv s;
    srv_start(&s, &f->loop, SRV_BYE);
    struct cli k = {0};
    cli_open_plain(f, &k, s.port);
    assert_int_equal(cli_write(&k, "hi", 2), 0);
    RUN_UNTIL(f, k.ends == 1);
    assert_int_equal(k.end_status, 0);
    assert_int_equal(k.rx_len, 3);
    assert_memory_equal(k.rx, "bye", 3);
    assert_int_equal(cli_write(&k, "more", 4), CC_ECLOSED);
    assert_false(cc_conn_is_open(&k.conn));
    cli_close(&k);
    srv_stop(&s);
    fx_finish(f);
    assert_int_equal(k.ends, 1);
    assert_int_equal(k.closes, 1);
    cli_free(&k);
}

static void test_plain_reset(void **state)
{
    struct fx *f = *state;
    struct srv s;
    srv_start(&s, &f->loop, SRV_RESET);
    struct cli k = {0};
    cli_open_plain(f, &k, s.port);
    assert_int_equal(cli_write(&k, "hi", 2), 0);
    RUN_UNTIL(f, k.ends == 1);
    assert_int_equal(k.end_status, UV_ECONNRESET);
    assert_string_equal(cc_conn_error(&k.conn), "connection reset by peer");
    /* Later writes fail at once and nothing more is reported. */
    assert_int_equal(cli_write(&k, "x", 1), CC_ECLOSED);
    cli_close(&k);
    srv_stop(&s);
    fx_finish(f);
    assert_int_equal(k.ends, 1);
    assert_int_equal(k.closes, 1);
    cli_free(&k);
}

/*
 * A write that meets a dead socket fails at once with the socket's error, and on_end still
 * reports it, from the loop. Reading is stopped so the reset is noticed by the write.
 */
static void test_plain_write_error(void **state)
{
    struct fx *f = *state;
    struct srv s;
    srv_start(&s, &f->loop, SRV_RESET);
    struct cli k = {0};
    cli_open_plain(f, &k, s.port);
    cc_conn_read_stop(&k.conn);
    assert_int_equal(cli_write(&k, "hi", 2), 0);
    RUN_UNTIL(f, s.open == 1); /* the server reset its side */
    int rv = 0;
    for (int i = 0; i < 100 && rv == 0; i++) {
        rv = cli_write(&k, "again", 5);
        if (rv == 0) run_for(f, 10);
    }
    assert_true(rv == UV_ECONNRESET || rv == UV_EPIPE);
    assert_int_equal(k.ends, 0); /* not from inside the call */
    assert_int_equal(cli_write(&k, "x", 1), rv);
    RUN_UNTIL(f, k.ends == 1);
    assert_int_equal(k.end_status, rv);
    assert_int_equal(cli_write(&k, "x", 1), CC_ECLOSED);
    cli_close(&k);
    srv_stop(&s);
    fx_finish(f);
    assert_int_equal(k.ends, 1);
    assert_int_equal(k.closes, 1);
    cli_free(&k);
}

static void test_plain_ipv6(void **state)
{
    struct fx *f = *state;
    struct srv s;
    if (srv_start_on(&s, &f->loop, SRV_ECHO, "::1") != 0) {
        srv_stop(&s);
        fx_finish(f);
        skip(); /* no IPv6 loopback here */
    }
    struct cli k = {0};
    struct sockaddr_in6 a, src;
    uv_ip6_addr("::1", s.port, &a);
    uv_ip6_addr("::1", 0, &src);
    struct cc_conn_opts o = {.addr = (struct sockaddr *)&a, .local = (struct sockaddr *)&src};
    assert_int_equal(cli_connect(&k, &f->loop, &o), 0);
    RUN_UNTIL(f, k.connects == 1);
    assert_int_equal(k.connect_status, 0);
    assert_string_equal(s.last_peer, "::1");
    assert_int_equal(cli_write(&k, "six", 3), 0);
    RUN_UNTIL(f, k.rx_len == 3);
    assert_memory_equal(k.rx, "six", 3);
    char buf[64];
    snprintf(buf, sizeof(buf), "[::1]:%u", s.port);
    char got[64];
    assert_string_equal(cc_sockaddr_str(cc_conn_peer(&k.conn), got, sizeof(got)), buf);
    cli_close(&k);
    srv_stop(&s);
    fx_finish(f);
    assert_int_equal(k.closes, 1);
    cli_free(&k);
}

static void test_plain_refused(void **state)
{
    struct fx *f = *state;
    uint16_t port = free_port();
    struct cli k = {0};
    struct sockaddr_in a = addr4("127.0.0.1", port);
    struct cc_conn_opts o = {.addr = (struct sockaddr *)&a, .connect_timeout_ms = GUARD_MS};
    assert_int_equal(cli_connect(&k, &f->loop, &o), 0);
    assert_int_equal(k.connects, 0);
    RUN_UNTIL(f, k.connects == 1);
    assert_int_equal(k.connect_status, UV_ECONNREFUSED);
    assert_int_equal(cc_conn_errno(&k.conn), UV_ECONNREFUSED);
    char want[128];
    snprintf(want, sizeof(want), "connect to 127.0.0.1:%u failed: connection refused", port);
    assert_string_equal(cc_conn_error(&k.conn), want);
    assert_int_equal(cli_write(&k, "x", 1), CC_ECLOSED);
    /* Still busy until closed. */
    assert_int_equal(cli_connect(&k, &f->loop, &o), UV_EBUSY);
    cli_close(&k);
    RUN_UNTIL(f, k.closes == 1);

    /* A closed conn can be connected again. */
    assert_int_equal(cli_connect(&k, &f->loop, &o), 0);
    RUN_UNTIL(f, k.connects == 2);
    assert_int_equal(k.connect_status, UV_ECONNREFUSED);
    cli_close(&k);
    fx_finish(f);
    assert_int_equal(k.closes, 2);
    cli_free(&k);
}

static void test_plain_bad_args(void **state)
{
    struct fx *f = *state;
    struct cli k = {0};
    struct sockaddr_in a = addr4("127.0.0.1", 1);
    struct sockaddr_in6 a6;
    uv_ip6_addr("::1", 0, &a6);
    struct sockaddr un = {.sa_family = AF_UNIX};
    struct cc_conn_opts o = {.addr = (struct sockaddr *)&a};
    k.in_call = true;
    assert_int_equal(cc_conn_connect(&k.conn, &f->loop, NULL, &cli_cbs, &k), UV_EINVAL);
    assert_int_equal(cc_conn_connect(&k.conn, &f->loop, &o, NULL, &k), UV_EINVAL);
    o.local = (struct sockaddr *)&a6;
    assert_int_equal(cc_conn_connect(&k.conn, &f->loop, &o, &cli_cbs, &k), UV_EINVAL);
    o.local = NULL;
    o.addr = &un;
    assert_int_equal(cc_conn_connect(&k.conn, &f->loop, &o, &cli_cbs, &k), UV_EAFNOSUPPORT);
    k.in_call = false;
    /* Never connected: close is a no-op without callback. */
    cli_close(&k);
    fx_finish(f);
    assert_int_equal(k.closes, 0);
    assert_int_equal(k.connects, 0);
}

/* A listener whose backlog is full never completes the handshake: the connect times out. */
static void test_plain_connect_timeout(void **state)
{
    struct fx *f = *state;
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = addr4("127.0.0.1", 0);
    socklen_t alen = sizeof(a);
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(lfd, 0), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &alen), 0);
    int fill[8];
    for (int i = 0; i < 8; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fill[i], (struct sockaddr *)&a, sizeof(a));
    }
    usleep(100 * 1000);

    struct cli k = {0};
    struct cc_conn_opts o = {.addr = (struct sockaddr *)&a, .connect_timeout_ms = 300};
    assert_int_equal(cli_connect(&k, &f->loop, &o), 0);
    RUN_UNTIL(f, k.connects == 1);
    assert_int_equal(k.connect_status, CC_ETIMEDOUT_CONNECT);
    assert_non_null(strstr(cc_conn_error(&k.conn), "timed out after 300 ms"));
    cli_close(&k);
    fx_finish(f);
    assert_int_equal(k.closes, 1);
    assert_int_equal(k.connects, 1);
    for (int i = 0; i < 8; i++)
        close(fill[i]);
    close(lfd);
}

static void test_plain_source_address(void **state)
{
    struct fx *f = *state;
    struct srv s;
    srv_start(&s, &f->loop, SRV_ECHO);
    struct cli k = {0};
    struct sockaddr_in a = addr4("127.0.0.1", s.port), src = addr4("127.0.0.2", 0);
    struct cc_conn_opts o = {.addr = (struct sockaddr *)&a, .local = (struct sockaddr *)&src};
    assert_int_equal(cli_connect(&k, &f->loop, &o), 0);
    RUN_UNTIL(f, k.connects == 1 && s.accepted == 1);
    assert_int_equal(k.connect_status, 0);
    assert_string_equal(s.last_peer, "127.0.0.2");
    cli_close(&k);

    /* An address that is not ours fails through on_connect, naming it. */
    struct cli k2 = {0};
    struct sockaddr_in foreign = addr4("192.0.2.1", 0);
    o.local = (struct sockaddr *)&foreign;
    assert_int_equal(cli_connect(&k2, &f->loop, &o), 0);
    assert_int_equal(k2.connects, 0);
    RUN_UNTIL(f, k2.connects == 1);
    assert_int_equal(k2.connect_status, UV_EADDRNOTAVAIL);
    assert_non_null(strstr(cc_conn_error(&k2.conn), "cannot bind source address 192.0.2.1:0"));
    cli_close(&k2);
    srv_stop(&s);
    fx_finish(f);
    assert_int_equal(k.closes + k2.closes, 2);
    cli_free(&k);
}

static void test_plain_close_in_connect(void **state)
{
    struct fx *f = *state;
    struct srv s;
    srv_start(&s, &f->loop, SRV_ECHO);
    struct cli k = {.close_on_connect = true};
    struct sockaddr_in a = addr4("127.0.0.1", s.port);
    struct cc_conn_opts o = {.addr = (struct sockaddr *)&a};
    assert_int_equal(cli_connect(&k, &f->loop, &o), 0);
    RUN_UNTIL(f, k.closes == 1);

    /* Closing while the connect is in flight: no on_connect at all. */
    struct cli k2 = {0};
    assert_int_equal(cli_connect(&k2, &f->loop, &o), 0);
    cli_close(&k2);
    RUN_UNTIL(f, k2.closes == 1);
    run_for(f, 20);
    srv_stop(&s);
    fx_finish(f);
    assert_int_equal(k.connects, 1);
    assert_int_equal(k2.connects, 0);
    assert_int_equal(k.closes, 1);
    assert_int_equal(k2.closes, 1);
}

static void test_plain_read_stop(void **state)
{
    struct fx *f = *state;
    struct srv s;
    srv_start(&s, &f->loop, SRV_SEND);
    s.send = "first";
    s.send_len = 5;
    struct cli k = {.stop_on_read = true};
    cli_open_plain(f, &k, s.port);
    RUN_UNTIL(f, k.reads == 1);
    /* Stopped: more data from the server waits. */
    srv_write(s.conns, "second", 6, false);
    run_for(f, 50);
    assert_int_equal(k.reads, 1);
    k.stop_on_read = false;
    k.in_call = true;
    cc_conn_read_start(&k.conn);
    k.in_call = false;
    RUN_UNTIL(f, k.rx_len == 11);
    assert_memory_equal(k.rx, "firstsecond", 11);
    cli_close(&k);
    srv_stop(&s);
    fx_finish(f);
    cli_free(&k);
}

/* ---- TLS ------------------------------------------------------------------------------------ */

static int sh(const char *cmd)
{
    int rv = system(cmd);
    return WIFEXITED(rv) ? WEXITSTATUS(rv) : -1;
}

/* A CA, a server certificate for localhost and 127.0.0.1, one for alt.test, a client one. */
static int make_certs(void)
{
    char cmd[4096];
    snprintf(cmd, sizeof(cmd),
             "cd %s && exec >openssl.log 2>&1 && "
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key "
             "-out ca.pem -days 2 -subj '/CN=cicada test CA' && "
             "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout srv.key "
             "-out srv.csr -subj '/CN=localhost' "
             "-addext 'subjectAltName=DNS:localhost,IP:127.0.0.1' && "
             "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem "
             "-days 2 -copy_extensions copy && "
             "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout alt.key "
             "-out alt.csr -subj '/CN=alt.test' -addext 'subjectAltName=DNS:alt.test' && "
             "openssl x509 -req -in alt.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out alt.pem "
             "-days 2 -copy_extensions copy && "
             "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout cli.key "
             "-out cli.csr -subj '/CN=client' && "
             "openssl x509 -req -in cli.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out cli.pem "
             "-days 2",
             tmpdir);
    return sh(cmd);
}

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    snprintf(tmpdir, sizeof(tmpdir), "%s/cicada-conn-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir)) return -1;
    have_openssl = sh("openssl version >/dev/null 2>&1") == 0;
    if (have_openssl && make_certs() != 0) {
        fprintf(stderr, "test_conn: cannot make certificates (see %s/openssl.log)\n", tmpdir);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    sh(cmd);
    return 0;
}

static const char *path(const char *name)
{
    static char bufs[4][512];
    static int i;
    char *b = bufs[i++ & 3];
    snprintf(b, 512, "%s/%s", tmpdir, name);
    return b;
}

/* openssl s_server on 127.0.0.1, started and stopped by the test. */
struct sserver {
    pid_t pid;
    uint16_t port;
    char log[512];
};

static bool file_has(const char *file, const char *needle)
{
    FILE *fp = fopen(file, "r");
    if (!fp) return false;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    return strstr(buf, needle) != NULL;
}

/* Starts s_server with the test certificate and |extra| arguments (NULL-terminated). */
static void sserver_start(struct sserver *s, const char *const *extra)
{
    for (int attempt = 0; attempt < 5; attempt++) {
        s->port = free_port();
        char accept[32];
        snprintf(accept, sizeof(accept), "127.0.0.1:%u", s->port);
        snprintf(s->log, sizeof(s->log), "%s/s_server-%u.log", tmpdir, s->port);
        const char *argv[40] = {"openssl",       "s_server", "-accept",       accept, "-cert",
                                path("srv.pem"), "-key",     path("srv.key"), "-rev"};
        int argc = 9;
        for (int i = 0; extra && extra[i]; i++)
            argv[argc++] = extra[i];
        argv[argc] = NULL;

        /* fork and exec rather than posix_spawn: the server must die with the test even if
         * the test is killed (PR_SET_PDEATHSIG), or it would hold its port forever. */
        pid_t parent = getpid();
        s->pid = fork();
        assert_true(s->pid >= 0);
        if (s->pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent) _exit(127);
            int in = open("/dev/null", O_RDONLY);
            int out = open(s->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (in < 0 || out < 0) _exit(127);
            dup2(in, 0);
            dup2(out, 1);
            dup2(out, 2);
            execvp("openssl", (char *const *)argv);
            _exit(127);
        }

        for (int i = 0; i < 500; i++) {
            if (file_has(s->log, "ACCEPT")) return;
            int st;
            if (waitpid(s->pid, &st, WNOHANG) == s->pid) break; /* port taken: try another */
            usleep(20 * 1000);
        }
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
    }
    fail_msg("openssl s_server did not start");
}

static void sserver_stop(struct sserver *s)
{
    kill(s->pid, SIGTERM);
    waitpid(s->pid, NULL, 0);
}

static struct cc_tls_ctx *tls_ctx(const struct cc_tls_opts *o)
{
    struct cc_tls_ctx *ctx = NULL;
    char *err = NULL;
    int rv = cc_tls_ctx_new(&ctx, o, &err);
    if (rv != 0) fail_msg("cc_tls_ctx_new: %s", err);
    return ctx;
}

/* Connects with TLS to 127.0.0.1:|port| and waits for on_connect; returns its status. */
static int cli_open_tls(struct fx *f, struct cli *k, uint16_t port, struct cc_tls_ctx *ctx,
                        const char *server_name)
{
    struct sockaddr_in a = addr4("127.0.0.1", port);
    struct cc_conn_opts o = {.addr = (struct sockaddr *)&a,
                             .connect_timeout_ms = GUARD_MS,
                             .tls = ctx,
                             .server_name = server_name};
    int before = k->connects;
    assert_int_equal(cli_connect(k, &f->loop, &o), 0);
    assert_int_equal(k->connects, before);
    RUN_UNTIL(f, k->connects == before + 1);
    return k->connect_status;
}

/* Sends a line to s_server -rev and checks the reversed line comes back. */
static void tls_ping(struct fx *f, struct cli *k)
{
    cli_reset_rx(k);
    assert_int_equal(cli_write(k, "hello\n", 6), 0);
    RUN_UNTIL(f, k->rx_len >= 6);
    assert_memory_equal(k->rx, "olleh\n", 6);
}

static void cli_close_wait(struct fx *f, struct cli *k)
{
    int before = k->closes;
    cli_close(k);
    RUN_UNTIL(f, k->closes == before + 1);
}

#define NEED_OPENSSL()                                                                             \
    do {                                                                                           \
        if (!have_openssl) {                                                                       \
            fx_finish(*state);                                                                     \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

static void test_tls_insecure(void **state)
{
    NEED_OPENSSL();
    struct fx *f = *state;
    struct sserver ss;
    sserver_start(&ss, NULL);
    struct cc_tls_ctx *ctx = tls_ctx(&(struct cc_tls_opts){.insecure = true});
    struct cli k = {0};
    assert_int_equal(cli_open_tls(f, &k, ss.port, ctx, "localhost"), 0);
    assert_null(cc_conn_alpn(&k.conn));
    assert_false(cc_conn_tls_resumed(&k.conn));
    assert_non_null(cc_conn_ssl(&k.conn));
    tls_ping(f, &k);
    cli_close_wait(f, &k);

    /* Closing from inside on_connect, with records still to read. */
    k.close_on_connect = true;
    assert_int_equal(cli_open_tls(f, &k, ss.port, ctx, "localhost"), 0);
    RUN_UNTIL(f, k.closes == 2);
    k.close_on_connect = false;
    assert_int_equal(k.connects, 2);
    assert_int_equal(k.reads, 1);
    cc_tls_ctx_unref(ctx); /* the conn held its own reference until closed */
    sserver_stop(&ss);
    fx_finish(f);
    cli_free(&k);
}

static void test_tls_verify(void **state)
{
    NEED_OPENSSL();
    struct fx *f = *state;
    struct sserver ss;
    sserver_start(&ss, NULL);

    /* System store only: our CA is unknown. */
    struct cc_tls_ctx *sys = tls_ctx(NULL);
    struct cli k = {0};
    assert_int_equal(cli_open_tls(f, &k, ss.port, sys, "localhost"), CC_ECERT);
    const char *msg = cc_conn_error(&k.conn);
    assert_non_null(strstr(msg, "TLS certificate verification failed for localhost"));
    assert_non_null(strstr(msg, "unable to get local issuer certificate"));
    assert_non_null(strstr(msg, "(set insecure = true / --insecure to skip verification)"));
    cli_close_wait(f, &k);
    cc_tls_ctx_unref(sys);

    /* Our CA: the name, and the IP address when no name is given, both verify. */
    struct cc_tls_ctx *ca = tls_ctx(&(struct cc_tls_opts){.ca_file = path("ca.pem")});
    assert_int_equal(cli_open_tls(f, &k, ss.port, ca, "localhost"), 0);
    tls_ping(f, &k);
    cli_close_wait(f, &k);
    assert_int_equal(cli_open_tls(f, &k, ss.port, ca, NULL), 0);
    tls_ping(f, &k);
    cli_close_wait(f, &k);

    /* A name the certificate does not carry. */
    assert_int_equal(cli_open_tls(f, &k, ss.port, ca, "wrong.test"), CC_ECERT);
    assert_non_null(strstr(cc_conn_error(&k.conn), "hostname mismatch"));
    cli_close_wait(f, &k);
    cc_tls_ctx_unref(ca);

    /* A custom hint from the protocol layer. */
    struct cc_tls_ctx *hint = tls_ctx(&(struct cc_tls_opts){.verify_hint = "(use verify=False)"});
    assert_int_equal(cli_open_tls(f, &k, ss.port, hint, "localhost"), CC_ECERT);
    assert_non_null(strstr(cc_conn_error(&k.conn), "(use verify=False)"));
    cli_close_wait(f, &k);
    cc_tls_ctx_unref(hint);

    sserver_stop(&ss);
    fx_finish(f);
    cli_free(&k);
}

static void test_tls_bad_config(void **state)
{
    struct fx *f = *state;
    struct cc_tls_ctx *ctx = NULL;
    char *err = NULL;
    assert_int_equal(
        cc_tls_ctx_new(&ctx, &(struct cc_tls_opts){.ca_file = "/nonexistent.pem"}, &err),
        CC_ECONFIG);
    assert_non_null(strstr(err, "cannot load CA file '/nonexistent.pem'"));
    cc_free(err);
    const char *const empty[] = {"h2", "", NULL};
    assert_int_equal(cc_tls_ctx_new(&ctx, &(struct cc_tls_opts){.alpn = empty}, &err), CC_ECONFIG);
    cc_free(err);
    assert_int_equal(
        cc_tls_ctx_new(&ctx,
                       &(struct cc_tls_opts){.min_version = CC_TLS_1_3, .max_version = CC_TLS_1_2},
                       &err),
        CC_ECONFIG);
    cc_free(err);
    assert_int_equal(cc_tls_ctx_new(&ctx, &(struct cc_tls_opts){.key_file = "k.pem"}, &err),
                     CC_ECONFIG);
    cc_free(err);
    fx_finish(f);
}

static void test_tls_sni(void **state)
{
    NEED_OPENSSL();
    struct fx *f = *state;
    struct sserver ss;
    const char *const extra[] = {"-cert2",      path("alt.pem"), "-key2",        path("alt.key"),
                                 "-servername", "alt.test",      "-tlsextdebug", NULL};
    sserver_start(&ss, extra);
    struct cc_tls_ctx *ca = tls_ctx(&(struct cc_tls_opts){.ca_file = path("ca.pem")});
    struct cli k = {0};
    /* The server answers with alt.test's certificate only if the client sent that SNI. */
    assert_int_equal(cli_open_tls(f, &k, ss.port, ca, "alt.test"), 0);
    X509 *peer = SSL_get0_peer_certificate(cc_conn_ssl(&k.conn));
    assert_non_null(peer);
    char cn[64];
    X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof(cn));
    assert_string_equal(cn, "alt.test");
    tls_ping(f, &k);
    cli_close_wait(f, &k);
    assert_true(file_has(ss.log, "TLS client extension \"server name\""));
    assert_true(file_has(ss.log, "alt.test"));
    cc_tls_ctx_unref(ca);
    sserver_stop(&ss);
    fx_finish(f);
    cli_free(&k);
}

static void test_tls_alpn(void **state)
{
    NEED_OPENSSL();
    struct fx *f = *state;
    struct sserver ss;
    const char *const extra[] = {"-alpn", "h2,http/1.1", NULL};
    sserver_start(&ss, extra);
    struct cli k = {0};

    const char *const both[] = {"h2", "http/1.1", NULL};
    struct cc_tls_ctx *c1 = tls_ctx(&(struct cc_tls_opts){.insecure = true, .alpn = both});
    assert_int_equal(cli_open_tls(f, &k, ss.port, c1, "localhost"), 0);
    assert_string_equal(cc_conn_alpn(&k.conn), "h2");
    cli_close_wait(f, &k);

    const char *const h1[] = {"http/1.1", NULL};
    struct cc_tls_ctx *c2 = tls_ctx(&(struct cc_tls_opts){.insecure = true, .alpn = h1});
    assert_int_equal(cli_open_tls(f, &k, ss.port, c2, "localhost"), 0);
    assert_string_equal(cc_conn_alpn(&k.conn), "http/1.1");
    tls_ping(f, &k);
    cli_close_wait(f, &k);

    struct cc_tls_ctx *c3 = tls_ctx(&(struct cc_tls_opts){.insecure = true});
    assert_int_equal(cli_open_tls(f, &k, ss.port, c3, "localhost"), 0);
    assert_null(cc_conn_alpn(&k.conn));
    cli_close_wait(f, &k);

    cc_tls_ctx_unref(c1);
    cc_tls_ctx_unref(c2);
    cc_tls_ctx_unref(c3);
    sserver_stop(&ss);
    fx_finish(f);
    cli_free(&k);
}

/* The second connection to the same server resumes the first one's session. */
static void resumption(void **state, enum cc_tls_version version)
{
    struct fx *f = *state;
    struct sserver ss;
    sserver_start(&ss, NULL);
    struct cc_tls_ctx *ctx = tls_ctx(&(struct cc_tls_opts){
        .ca_file = path("ca.pem"), .min_version = version, .max_version = version});
    struct cli k = {0};
    assert_int_equal(cli_open_tls(f, &k, ss.port, ctx, "localhost"), 0);
    assert_false(cc_conn_tls_resumed(&k.conn));
    tls_ping(f, &k); /* TLS 1.3 tickets arrive after the handshake: read past them */
    cli_close_wait(f, &k);
    assert_int_equal(ctx->nsessions, 1);

    for (int i = 0; i < 2; i++) {
        assert_int_equal(cli_open_tls(f, &k, ss.port, ctx, "localhost"), 0);
        assert_true(cc_conn_tls_resumed(&k.conn));
        tls_ping(f, &k);
        cli_close_wait(f, &k);
    }
    /* Another name for the same server is another cache entry: no resumption. */
    assert_int_equal(cli_open_tls(f, &k, ss.port, ctx, NULL), 0);
    assert_false(cc_conn_tls_resumed(&k.conn));
    cli_close_wait(f, &k);

    cc_tls_ctx_unref(ctx);
    sserver_stop(&ss);
    fx_finish(f);
    cli_free(&k);
}

static void test_tls_resume_13(void **state)
{
    NEED_OPENSSL();
    resumption(state, CC_TLS_1_3);
}

static void test_tls_resume_12(void **state)
{
    NEED_OPENSSL();
    resumption(state, CC_TLS_1_2);
}

static void test_tls_client_cert(void **state)
{
    NEED_OPENSSL();
    struct fx *f = *state;
    struct sserver ss;
    const char *const extra[] = {"-Verify", "1", "-CAfile", path("ca.pem"), NULL};
    sserver_start(&ss, extra);
    struct cli k = {0};

    struct cc_tls_ctx *with = tls_ctx(&(struct cc_tls_opts){
        .ca_file = path("ca.pem"), .cert_file = path("cli.pem"), .key_file = path("cli.key")});
    assert_int_equal(cli_open_tls(f, &k, ss.port, with, "localhost"), 0);
    tls_ping(f, &k);
    cli_close_wait(f, &k);
    cc_tls_ctx_unref(with);

    /* Without one, TLS 1.2 fails in the handshake with the server's alert. */
    struct cc_tls_ctx *without =
        tls_ctx(&(struct cc_tls_opts){.ca_file = path("ca.pem"), .max_version = CC_TLS_1_2});
    assert_int_equal(cli_open_tls(f, &k, ss.port, without, "localhost"), CC_ETLS);
    assert_non_null(strstr(cc_conn_error(&k.conn), "TLS handshake with localhost"));
    assert_non_null(strstr(cc_conn_error(&k.conn), "alert"));
    cli_close_wait(f, &k);
    cc_tls_ctx_unref(without);

    sserver_stop(&ss);
    fx_finish(f);
    cli_free(&k);
}

static void test_tls_plain_server(void **state)
{
    struct fx *f = *state;
    struct srv s;
    srv_start(&s, &f->loop, SRV_BANNER);
    struct cc_tls_ctx *ctx = tls_ctx(&(struct cc_tls_opts){.insecure = true});
    struct cli k = {0};
    assert_int_equal(cli_open_tls(f, &k, s.port, ctx, "localhost"), CC_ETLS);
    assert_non_null(strstr(cc_conn_error(&k.conn), "TLS handshake with localhost (127.0.0.1:"));
    cli_close_wait(f, &k);
    cc_tls_ctx_unref(ctx);
    srv_stop(&s);
    fx_finish(f);
}

static void test_tls_handshake_timeout(void **state)
{
    struct fx *f = *state;
    struct srv s;
    srv_start(&s, &f->loop, SRV_SILENT);
    struct cc_tls_ctx *ctx = tls_ctx(&(struct cc_tls_opts){.insecure = true});
    struct cli k = {0};
    struct sockaddr_in a = addr4("127.0.0.1", s.port);
    struct cc_conn_opts o = {.addr = (struct sockaddr *)&a, .connect_timeout_ms = 300, .tls = ctx};
    assert_int_equal(cli_connect(&k, &f->loop, &o), 0);
    RUN_UNTIL(f, k.connects == 1);
    assert_int_equal(k.connect_status, CC_ETIMEDOUT_CONNECT);
    assert_non_null(strstr(cc_conn_error(&k.conn), "TLS handshake with 127.0.0.1:"));
    assert_non_null(strstr(cc_conn_error(&k.conn), "timed out after 300 ms"));
    assert_true(s.received > 0); /* the ClientHello went out */
    cli_close_wait(f, &k);
    cc_tls_ctx_unref(ctx);
    srv_stop(&s);
    fx_finish(f);
}

/* Megabytes both ways through TLS, in lines s_server -rev turns around. */
static void test_tls_bulk(void **state)
{
    NEED_OPENSSL();
    struct fx *f = *state;
    struct sserver ss;
    sserver_start(&ss, NULL);
    struct cc_tls_ctx *ctx = tls_ctx(&(struct cc_tls_opts){.insecure = true});
    struct cli k = {0};
    assert_int_equal(cli_open_tls(f, &k, ss.port, ctx, "localhost"), 0);

    enum { LINE = 100, LINES = 20000 };
    size_t n = (size_t)LINE * LINES;
    char *out = malloc(n), *want = malloc(n);
    for (size_t l = 0; l < LINES; l++) {
        char *p = out + l * LINE;
        for (size_t i = 0; i < LINE - 1; i++)
            p[i] = (char)('a' + (l + i * 7) % 26);
        p[LINE - 1] = '\n';
        for (size_t i = 0; i < LINE - 1; i++)
            want[l * LINE + i] = p[LINE - 2 - i];
        want[l * LINE + LINE - 1] = '\n';
    }
    /* In pieces of every size, vectored and not. */
    size_t off = 0, step = 1;
    while (off < n) {
        size_t len = CC_MIN(step, n - off);
        if (step % 2) {
            assert_int_equal(cli_write(&k, out + off, len), 0);
        } else {
            uv_buf_t b[2] = {uv_buf_init(out + off, (unsigned)(len / 2)),
                             uv_buf_init(out + off + len / 2, (unsigned)(len - len / 2))};
            k.in_call = true;
            assert_int_equal(cc_conn_writev(&k.conn, b, 2), 0);
            k.in_call = false;
        }
        off += len;
        step = step * 3 + 1;
        if (step > 300000) step = 1;
    }
    RUN_UNTIL(f, k.rx_len >= n || k.ends);
    assert_int_equal(k.rx_len, n);
    assert_memory_equal(k.rx, want, n);
    free(out);
    free(want);
    cli_close_wait(f, &k);
    cc_tls_ctx_unref(ctx);
    sserver_stop(&ss);
    fx_finish(f);
    cli_free(&k);
}

/* Stopping reading inside on_read holds back decrypted and undecrypted data alike. */
static void test_tls_read_stop(void **state)
{
    NEED_OPENSSL();
    struct fx *f = *state;
    struct sserver ss;
    sserver_start(&ss, NULL);
    struct cc_tls_ctx *ctx = tls_ctx(&(struct cc_tls_opts){.insecure = true});
    struct cli k = {0};
    assert_int_equal(cli_open_tls(f, &k, ss.port, ctx, "localhost"), 0);

    /* Many lines: s_server answers each in its own record, so reads carry several. */
    enum { LINES = 300 };
    char line[8], *all = malloc(LINES * 6), *want = malloc(LINES * 6);
    for (int i = 0; i < LINES; i++) {
        snprintf(line, sizeof(line), "%05d", i);
        memcpy(all + i * 6, line, 5);
        all[i * 6 + 5] = '\n';
        for (int j = 0; j < 5; j++)
            want[i * 6 + j] = line[4 - j];
        want[i * 6 + 5] = '\n';
    }
    k.stop_on_read = true;
    assert_int_equal(cli_write(&k, all, LINES * 6), 0);
    int rounds = 0;
    while (k.rx_len < LINES * 6) {
        int before = k.reads;
        RUN_UNTIL(f, k.reads > before);
        assert_int_equal(k.reads, before + 1); /* one on_read per stop */
        run_for(f, 2);
        assert_int_equal(k.reads, before + 1);
        k.in_call = true;
        cc_conn_read_start(&k.conn);
        k.in_call = false;
        rounds++;
    }
    assert_int_equal(k.rx_len, LINES * 6);
    assert_memory_equal(k.rx, want, LINES * 6);
    assert_true(rounds > 1);
    k.stop_on_read = false;
    free(all);
    free(want);
    cli_close_wait(f, &k);
    cc_tls_ctx_unref(ctx);
    sserver_stop(&ss);
    fx_finish(f);
    cli_free(&k);
}

/* The pieces together: resolve a name, connect to its first address, talk. */
struct chain {
    struct fx *f;
    struct cli k;
    int resolved;
};

static void chain_on_resolved(const struct cc_resolve_result *r, void *data)
{
    struct chain *ch = data;
    wake(test_loop);
    ch->resolved++;
    assert_int_equal(r->status, 0);
    for (size_t i = 0; i < r->n; i++) {
        if (r->addrs[i].sa.sa_family != AF_INET) continue;
        struct cc_conn_opts o = {.addr = &r->addrs[i].sa, .connect_timeout_ms = GUARD_MS};
        assert_int_equal(cc_conn_connect(&ch->k.conn, &ch->f->loop, &o, &cli_cbs, &ch->k), 0);
        return;
    }
    fail_msg("localhost has no IPv4 address");
}

static void test_resolve_then_connect(void **state)
{
    struct fx *f = *state;
    struct srv s;
    srv_start(&s, &f->loop, SRV_ECHO);
    struct cc_resolver r;
    cc_resolver_init(&r, &f->loop, 0);
    struct chain ch = {.f = f};
    assert_int_equal(cc_resolve(&r, "localhost", s.port, chain_on_resolved, &ch, NULL), 0);
    RUN_UNTIL(f, ch.k.connects == 1);
    assert_int_equal(ch.k.connect_status, 0);
    assert_int_equal(cli_write(&ch.k, "ping", 4), 0);
    RUN_UNTIL(f, ch.k.rx_len == 4);
    cli_close_wait(f, &ch.k);
    cc_resolver_close(&r, on_resolver_closed);
    srv_stop(&s);
    fx_finish(f);
    cli_free(&ch.k);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_strerror),
        T(test_resolve_literals),
        T(test_resolve_names),
        T(test_resolve_bad_names),
        T(test_resolve_cancel),
        T(test_plain_echo_sizes),
        T(test_plain_backpressure),
        T(test_plain_eof),
        T(test_plain_reset),
        T(test_plain_write_error),
        T(test_plain_ipv6),
        T(test_plain_refused),
        T(test_plain_bad_args),
        T(test_plain_connect_timeout),
        T(test_plain_source_address),
        T(test_plain_close_in_connect),
        T(test_plain_read_stop),
        T(test_tls_insecure),
        T(test_tls_verify),
        T(test_tls_bad_config),
        T(test_tls_sni),
        T(test_tls_alpn),
        T(test_tls_resume_13),
        T(test_tls_resume_12),
        T(test_tls_client_cert),
        T(test_tls_plain_server),
        T(test_tls_handshake_timeout),
        T(test_tls_bulk),
        T(test_tls_read_stop),
        T(test_resolve_then_connect),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
