/* SPDX-License-Identifier: MIT */
/* zmq_uv.c: ZeroMQ sockets on a libuv loop, the ZMQ_FD edge trap handled; see zmq_uv.h. */
#include "dist/zmq_uv.h"
#include "core/err.h"
#include "core/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define DRAIN_BUDGET 1024 /* messages handled per wake-up before yielding to the loop */
#define MAX_KEY_FILE (64 * 1024)

static const uint64_t retry_ms[] = {1000, 3000, 5000}; /* Locust's send retry delays */

struct zitem {
    size_t n;
    zmq_msg_t f[CC_ZSOCK_MAX_FRAMES];
};

struct cc_zsock {
    uv_loop_t *loop;
    void *s; /* the ZeroMQ socket; NULL once closed */
    uv_poll_t poll;
    uv_idle_t idle;   /* re-checks ZMQ_EVENTS before the loop blocks again */
    uv_timer_t retry; /* retries the queue after EAGAIN */
    unsigned open_handles;
    cc_zsock_recv_cb *recv;
    cc_zsock_error_cb *on_error;
    void *data;
    cc_zsock_closed_cb *closed;
    void *closed_data;

    struct zitem *q; /* ring of sends waiting for the high-water mark */
    size_t qhead, nq, qcap;
    unsigned retries;

    char *zap_domain; /* CURVE server with an allow list: its ZAP domain */
    bool draining;
    bool closing;
};

/* ---- the shared context and the ZAP handler ------------------------------------------- */

static uv_mutex_t ctx_lock;
static uv_once_t ctx_once = UV_ONCE_INIT;
static void *ctx;
static unsigned ctx_refs;

static void ctx_init_lock(void)
{
    CC_ASSERT(uv_mutex_init(&ctx_lock) == 0);
}

static void *ctx_ref(void)
{
    uv_once(&ctx_once, ctx_init_lock);
    uv_mutex_lock(&ctx_lock);
    if (!ctx) ctx = zmq_ctx_new();
    void *c = ctx;
    if (c) ctx_refs++;
    uv_mutex_unlock(&ctx_lock);
    return c;
}

static void ctx_unref(void)
{
    uv_mutex_lock(&ctx_lock);
    CC_ASSERT(ctx_refs > 0);
    void *term = NULL;
    if (--ctx_refs == 0) {
        term = ctx;
        ctx = NULL;
    }
    uv_mutex_unlock(&ctx_lock);
    /* waits for lingering messages of closed sockets (bounded by their linger time) */
    if (term) zmq_ctx_term(term);
}

/*
 * One ZAP handler (RFC 27) serves every CURVE server with an allow list: each such server has
 * its own ZAP domain, and the handler looks the client's key up in that domain's list.
 * Connections to domains it does not know (CURVE servers without a list) are allowed.
 */
struct zap_domain {
    char *name;
    char (*keys)[CC_ZKEY_LEN + 1];
    size_t nkeys;
};

static struct cc_zsock *zap_sock;
static struct zap_domain *zap_domains;
static size_t zap_ndomains, zap_cap;
static unsigned zap_counter;

static const struct zap_domain *zap_find(const char *name, size_t len)
{
    for (size_t i = 0; i < zap_ndomains; i++)
        if (strlen(zap_domains[i].name) == len && memcmp(zap_domains[i].name, name, len) == 0)
            return &zap_domains[i];
    return NULL;
}

static void zap_recv(struct cc_zsock *z, const struct cc_zframe *f, size_t n, void *data)
{
    (void)data;
    const char *status = "400", *text = "unknown client key";
    if (n >= 7 && f[0].len == 3 && memcmp(f[0].data, "1.0", 3) == 0) {
        const struct zap_domain *d = zap_find(f[2].data, f[2].len);
        if (!d) {
            status = "200";
            text = "OK";
        } else if (f[5].len == 5 && memcmp(f[5].data, "CURVE", 5) == 0 && f[6].len == 32) {
            char key[CC_ZKEY_LEN + 1] = "";
            if (zmq_z85_encode(key, f[6].data, 32)) {
                for (size_t i = 0; i < d->nkeys; i++) {
                    if (strcmp(d->keys[i], key) == 0) {
                        status = "200";
                        text = "OK";
                        break;
                    }
                }
            }
            if (*status != '2')
                cc_warn("dist", "refused a CURVE client whose key %s is not allowed", key);
        }
    }
    struct cc_zframe reply[6] = {
        {"1.0", 3},  {n > 1 ? f[1].data : "", n > 1 ? f[1].len : 0},
        {status, 3}, {text, strlen(text)},
        {"", 0},     {"", 0},
    };
    cc_zsock_send(z, reply, 6);
}

static int zap_register(uv_loop_t *loop, const struct cc_zcurve *c, char **domain)
{
    if (!zap_sock) {
        struct cc_zsock_opts o = {.type = ZMQ_REP, .linger_ms = 0};
        int rv = cc_zsock_new(loop, &o, zap_recv, NULL, NULL, &zap_sock);
        if (rv != 0) return rv;
        rv = cc_zsock_bind(zap_sock, "inproc://zeromq.zap.01", NULL);
        if (rv != 0) {
            cc_zsock_close(zap_sock, NULL, NULL);
            zap_sock = NULL;
            return rv;
        }
    }
    char name[32];
    snprintf(name, sizeof(name), "cicada.%u", ++zap_counter);
    cc_grow((void **)&zap_domains, &zap_cap, zap_ndomains + 1, sizeof(*zap_domains));
    struct zap_domain *d = &zap_domains[zap_ndomains++];
    d->name = cc_xstrdup(name);
    d->nkeys = c->nallowed;
    d->keys = cc_xmalloc((c->nallowed ? c->nallowed : 1) * sizeof(*d->keys));
    memcpy(d->keys, c->allowed, c->nallowed * sizeof(*d->keys));
    *domain = cc_xstrdup(name);
    return 0;
}

static void zap_unregister(const char *domain)
{
    for (size_t i = 0; i < zap_ndomains; i++) {
        if (strcmp(zap_domains[i].name, domain) != 0) continue;
        cc_free(zap_domains[i].name);
        cc_free(zap_domains[i].keys);
        zap_domains[i] = zap_domains[--zap_ndomains];
        break;
    }
    if (zap_ndomains == 0) {
        cc_free(zap_domains);
        zap_domains = NULL;
        zap_cap = 0;
        if (zap_sock) {
            cc_zsock_close(zap_sock, NULL, NULL);
            zap_sock = NULL;
        }
    }
}

/* ---- sending ---------------------------------------------------------------------------- */

static void idle_cb(uv_idle_t *h);

static void item_release(struct zitem *it)
{
    for (size_t i = 0; i < it->n; i++)
        zmq_msg_close(&it->f[i]);
    it->n = 0;
}

/* Sends |it|. Returns 0 (the frames now belong to libzmq), -EAGAIN (untouched) or -errno. */
static int item_send(struct cc_zsock *z, struct zitem *it)
{
    for (size_t i = 0; i < it->n; i++) {
        int flags = ZMQ_DONTWAIT | (i + 1 < it->n ? ZMQ_SNDMORE : 0);
        if (zmq_msg_send(&it->f[i], z->s, flags) < 0) {
            int e = zmq_errno();
            if (i == 0 && e == EAGAIN) return -EAGAIN;
            /* a later frame refused: libzmq drops the partial message; free what is left */
            for (size_t j = i; j < it->n; j++)
                zmq_msg_close(&it->f[j]);
            it->n = 0;
            return -e;
        }
    }
    it->n = 0;
    return 0;
}

static void arm_recheck(struct cc_zsock *z)
{
    if (!z->closing && !uv_is_active((uv_handle_t *)&z->idle)) uv_idle_start(&z->idle, idle_cb);
}

static void queue_drop(struct cc_zsock *z)
{
    for (size_t i = 0; i < z->nq; i++)
        item_release(&z->q[(z->qhead + i) % z->qcap]);
    z->nq = 0;
    z->qhead = 0;
    z->retries = 0;
    if (!z->closing) uv_timer_stop(&z->retry);
}

/* Sends what the queue holds, in order, until libzmq says EAGAIN again. */
static void queue_flush(struct cc_zsock *z)
{
    while (z->nq && !z->closing) {
        struct zitem *it = &z->q[z->qhead];
        int rv = item_send(z, it);
        if (rv == -EAGAIN) return;
        if (rv != 0) cc_warn("dist", "a queued ZeroMQ message was refused: %s", zmq_strerror(-rv));
        z->qhead = (z->qhead + 1) % z->qcap;
        z->nq--;
        arm_recheck(z);
    }
    if (!z->nq && !z->closing) {
        z->retries = 0;
        uv_timer_stop(&z->retry);
    }
}

static void retry_cb(uv_timer_t *t)
{
    struct cc_zsock *z = cc_container_of(t, struct cc_zsock, retry);
    queue_flush(z);
    if (!z->nq || z->closing) return;
    if (++z->retries < CC_ARRAY_LEN(retry_ms)) {
        uv_timer_start(&z->retry, retry_cb, retry_ms[z->retries], 0);
        return;
    }
    cc_warn("dist", "dropping %zu ZeroMQ messages that could not be sent after %zu retries", z->nq,
            CC_ARRAY_LEN(retry_ms));
    queue_drop(z);
    if (z->on_error) z->on_error(z, -EAGAIN, z->data);
}

static int queue_push(struct cc_zsock *z, struct zitem *it)
{
    if (z->nq == CC_ZSOCK_MAX_QUEUED) {
        item_release(it);
        return CC_ETOOBIG;
    }
    if (z->nq == z->qcap) {
        /* unroll the ring into a larger array */
        size_t cap = z->qcap ? z->qcap * 2 : 16;
        struct zitem *q = cc_xmalloc(cap * sizeof(*q));
        for (size_t i = 0; i < z->nq; i++)
            q[i] = z->q[(z->qhead + i) % z->qcap];
        cc_free(z->q);
        z->q = q;
        z->qcap = cap;
        z->qhead = 0;
    }
    z->q[(z->qhead + z->nq) % z->qcap] = *it;
    if (z->nq++ == 0) {
        z->retries = 0;
        uv_timer_start(&z->retry, retry_cb, retry_ms[0], 0);
    }
    return 0;
}

int cc_zsock_send(struct cc_zsock *z, const struct cc_zframe *frames, size_t n)
{
    if (z->closing) return CC_ECLOSED;
    if (n == 0 || n > CC_ZSOCK_MAX_FRAMES) return -EINVAL;
    struct zitem it = {.n = n};
    for (size_t i = 0; i < n; i++) {
        if (zmq_msg_init_size(&it.f[i], frames[i].len) != 0) {
            it.n = i;
            item_release(&it);
            return -ENOMEM;
        }
        if (frames[i].len) memcpy(zmq_msg_data(&it.f[i]), frames[i].data, frames[i].len);
    }
    /* keep the order: while older messages wait, this one waits behind them */
    if (z->nq) return queue_push(z, &it);
    int rv = item_send(z, &it);
    arm_recheck(z); /* the send may have consumed the ZMQ_FD edge */
    if (rv == -EAGAIN) return queue_push(z, &it);
    return rv;
}

int cc_zsock_send2(struct cc_zsock *z, const char *id, const void *buf, size_t len)
{
    struct cc_zframe f[2];
    size_t n = 0;
    if (id) f[n++] = (struct cc_zframe){id, strlen(id)};
    f[n++] = (struct cc_zframe){buf, len};
    return cc_zsock_send(z, f, n);
}

size_t cc_zsock_queued(const struct cc_zsock *z)
{
    return z->nq;
}

/* ---- receiving -------------------------------------------------------------------------- */

/* Receives one whole message and hands it over. Returns false when nothing was there. */
static bool recv_one(struct cc_zsock *z)
{
    zmq_msg_t f[CC_ZSOCK_MAX_FRAMES];
    size_t n = 0;
    bool more = true, overflow = false;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, z->s, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            break;
        }
        more = zmq_msg_more(&m);
        if (n < CC_ZSOCK_MAX_FRAMES) {
            f[n++] = m;
        } else {
            zmq_msg_close(&m);
            overflow = true;
        }
    }
    if (overflow)
        cc_warn("dist", "dropped a ZeroMQ message of more than %d frames", CC_ZSOCK_MAX_FRAMES);
    if (n && !overflow) {
        struct cc_zframe frames[CC_ZSOCK_MAX_FRAMES];
        for (size_t i = 0; i < n; i++)
            frames[i] = (struct cc_zframe){zmq_msg_data(&f[i]), zmq_msg_size(&f[i])};
        z->recv(z, frames, n, z->data);
    }
    for (size_t i = 0; i < n; i++)
        zmq_msg_close(&f[i]);
    return n > 0;
}

/*
 * Handles whatever ZMQ_EVENTS reports until it reports nothing more. Reading ZMQ_EVENTS resets
 * the edge of ZMQ_FD, so after each read the socket is drained before returning to the loop.
 */
static void drain(struct cc_zsock *z)
{
    if (z->closing || z->draining) return;
    z->draining = true;
    for (unsigned budget = DRAIN_BUDGET;; budget--) {
        int ev = 0;
        size_t sz = sizeof(ev);
        if (zmq_getsockopt(z->s, ZMQ_EVENTS, &ev, &sz) != 0) break;
        if ((ev & ZMQ_POLLOUT) && z->nq) queue_flush(z);
        if (z->closing || !(ev & ZMQ_POLLIN)) break;
        if (budget == 0) {
            arm_recheck(z); /* more later: let timers and other sockets run first */
            break;
        }
        if (!recv_one(z)) break;
        if (z->closing) break;
    }
    z->draining = false;
}

static void idle_cb(uv_idle_t *h)
{
    struct cc_zsock *z = cc_container_of(h, struct cc_zsock, idle);
    uv_idle_stop(h);
    drain(z);
}

static void poll_cb(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    drain(cc_container_of(h, struct cc_zsock, poll));
}

/* ---- life cycle ------------------------------------------------------------------------- */

static int set_int(void *s, int opt, int v)
{
    return zmq_setsockopt(s, opt, &v, sizeof(v)) == 0 ? 0 : -zmq_errno();
}

static bool z85_ok(const char *k)
{
    uint8_t raw[32];
    return strlen(k) == CC_ZKEY_LEN && zmq_z85_decode(raw, k) != NULL;
}

static int apply_curve(struct cc_zsock *z, uv_loop_t *loop, const struct cc_zcurve *c)
{
    if (!zmq_has("curve")) {
        cc_error("dist", "this libzmq has no CURVE support");
        return CC_ECONFIG;
    }
    if (!z85_ok(c->secret_key) || !z85_ok(c->public_key) || (!c->server && !z85_ok(c->server_key)))
        return CC_ECONFIG;
    int rv;
    if (c->server) {
        if ((rv = set_int(z->s, ZMQ_CURVE_SERVER, 1)) != 0) return rv;
        if (zmq_setsockopt(z->s, ZMQ_CURVE_SECRETKEY, c->secret_key, CC_ZKEY_LEN) != 0)
            return -zmq_errno();
        if (c->nallowed) {
            for (size_t i = 0; i < c->nallowed; i++)
                if (!z85_ok(c->allowed[i])) return CC_ECONFIG;
            if ((rv = zap_register(loop, c, &z->zap_domain)) != 0) return rv;
            if (zmq_setsockopt(z->s, ZMQ_ZAP_DOMAIN, z->zap_domain, strlen(z->zap_domain)) != 0)
                return -zmq_errno();
        }
        return 0;
    }
    if (zmq_setsockopt(z->s, ZMQ_CURVE_SERVERKEY, c->server_key, CC_ZKEY_LEN) != 0 ||
        zmq_setsockopt(z->s, ZMQ_CURVE_PUBLICKEY, c->public_key, CC_ZKEY_LEN) != 0 ||
        zmq_setsockopt(z->s, ZMQ_CURVE_SECRETKEY, c->secret_key, CC_ZKEY_LEN) != 0)
        return -zmq_errno();
    return 0;
}

static void handle_closed(uv_handle_t *h)
{
    struct cc_zsock *z = h->data;
    if (--z->open_handles) return;
    cc_zsock_closed_cb *cb = z->closed;
    void *data = z->closed_data;
    cc_free(z->q);
    cc_free(z);
    ctx_unref();
    if (cb) cb(data);
}

int cc_zsock_new(uv_loop_t *loop, const struct cc_zsock_opts *o, cc_zsock_recv_cb *recv,
                 cc_zsock_error_cb *on_error, void *data, struct cc_zsock **out)
{
    void *c = ctx_ref();
    if (!c) return -zmq_errno();
    void *s = zmq_socket(c, o->type);
    if (!s) {
        int e = zmq_errno();
        ctx_unref();
        return -e;
    }
    struct cc_zsock *z = cc_xcalloc(1, sizeof(*z));
    z->loop = loop;
    z->s = s;
    z->recv = recv;
    z->on_error = on_error;
    z->data = data;

    int rv = 0;
    int64_t maxmsg = o->max_msg_bytes > 0 ? o->max_msg_bytes : 64 << 20;
    if (!rv) rv = set_int(s, ZMQ_LINGER, o->linger_ms);
    if (!rv) rv = set_int(s, ZMQ_TCP_KEEPALIVE, 1);
    if (!rv) rv = set_int(s, ZMQ_TCP_KEEPALIVE_IDLE, 30);
    if (!rv && zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg)) != 0) rv = -zmq_errno();
    if (!rv && o->ipv6) rv = set_int(s, ZMQ_IPV6, 1);
    if (!rv && o->router_handover && o->type == ZMQ_ROUTER) rv = set_int(s, ZMQ_ROUTER_HANDOVER, 1);
    if (!rv && o->identity &&
        zmq_setsockopt(s, ZMQ_ROUTING_ID, o->identity, strlen(o->identity)) != 0)
        rv = -zmq_errno();
    if (!rv && o->curve) rv = apply_curve(z, loop, o->curve);

    int fd = -1;
    size_t fdlen = sizeof(fd);
    if (!rv && zmq_getsockopt(s, ZMQ_FD, &fd, &fdlen) != 0) rv = -zmq_errno();
    if (!rv) rv = uv_poll_init(loop, &z->poll, fd);
    if (rv) {
        zmq_close(s);
        if (z->zap_domain) zap_unregister(z->zap_domain);
        cc_free(z->zap_domain);
        cc_free(z);
        ctx_unref();
        return rv;
    }
    uv_idle_init(loop, &z->idle);
    uv_timer_init(loop, &z->retry);
    z->poll.data = z->idle.data = z->retry.data = z;
    z->open_handles = 3;
    uv_poll_start(&z->poll, UV_READABLE, poll_cb);
    *out = z;
    return 0;
}

int cc_zsock_bind(struct cc_zsock *z, const char *endpoint, int *port)
{
    if (z->closing) return CC_ECLOSED;
    if (zmq_bind(z->s, endpoint) != 0) return -zmq_errno();
    if (port) {
        char last[256];
        size_t len = sizeof(last);
        *port = 0;
        if (zmq_getsockopt(z->s, ZMQ_LAST_ENDPOINT, last, &len) == 0) {
            last[sizeof(last) - 1] = '\0';
            const char *colon = strrchr(last, ':');
            if (colon) *port = atoi(colon + 1);
        }
    }
    arm_recheck(z);
    return 0;
}

int cc_zsock_connect(struct cc_zsock *z, const char *endpoint)
{
    if (z->closing) return CC_ECLOSED;
    if (zmq_connect(z->s, endpoint) != 0) return -zmq_errno();
    arm_recheck(z);
    return 0;
}

void cc_zsock_close(struct cc_zsock *z, cc_zsock_closed_cb *closed, void *data)
{
    if (!z || z->closing) return;
    queue_drop(z);
    z->closing = true;
    z->closed = closed;
    z->closed_data = data;
    uv_timer_stop(&z->retry);
    uv_idle_stop(&z->idle);
    /* take the descriptor out of epoll before libzmq may close it */
    uv_poll_stop(&z->poll);
    zmq_close(z->s);
    z->s = NULL;
    if (z->zap_domain) {
        zap_unregister(z->zap_domain);
        cc_free(z->zap_domain);
        z->zap_domain = NULL;
    }
    uv_close((uv_handle_t *)&z->poll, handle_closed);
    uv_close((uv_handle_t *)&z->idle, handle_closed);
    uv_close((uv_handle_t *)&z->retry, handle_closed);
}

uv_loop_t *cc_zsock_loop(const struct cc_zsock *z)
{
    return z->loop;
}

/* ---- keys ------------------------------------------------------------------------------- */

int cc_zcurve_keypair(char public_key[CC_ZKEY_LEN + 1], char secret_key[CC_ZKEY_LEN + 1])
{
    if (!zmq_has("curve")) return CC_ECONFIG;
    return zmq_curve_keypair(public_key, secret_key) == 0 ? 0 : CC_ECONFIG;
}

int cc_zcurve_public_from_secret(const char secret_key[CC_ZKEY_LEN + 1],
                                 char public_key[CC_ZKEY_LEN + 1])
{
    if (!zmq_has("curve") || !z85_ok(secret_key)) return CC_ECONFIG;
    return zmq_curve_public(public_key, secret_key) == 0 ? 0 : CC_ECONFIG;
}

static char *fmt_err(const char *fmt, const char *a, const char *b)
{
    char buf[512];
    snprintf(buf, sizeof(buf), fmt, a, b);
    return cc_xstrdup(buf);
}

/* Finds `field = "KEY"` (or the whole trimmed text being a key) in a key file's text. */
static bool key_in_text(const char *text, const char *field, char out[CC_ZKEY_LEN + 1])
{
    size_t flen = strlen(field);
    for (const char *line = text; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        const char *p = line, *stop = line + len;
        while (p < stop && (*p == ' ' || *p == '\t'))
            p++;
        if ((size_t)(stop - p) > flen && memcmp(p, field, flen) == 0) {
            p += flen;
            while (p < stop && (*p == ' ' || *p == '\t' || *p == '='))
                p++;
            if (p < stop && *p == '"') p++;
            if (stop - p >= CC_ZKEY_LEN) {
                memcpy(out, p, CC_ZKEY_LEN);
                out[CC_ZKEY_LEN] = '\0';
                if (z85_ok(out)) return true;
            }
        }
        line = end ? end + 1 : NULL;
    }
    /* a file holding just the key */
    const char *p = text;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    size_t n = strcspn(p, " \t\r\n");
    if (n == CC_ZKEY_LEN) {
        memcpy(out, p, CC_ZKEY_LEN);
        out[CC_ZKEY_LEN] = '\0';
        if (z85_ok(out)) return true;
    }
    return false;
}

int cc_zcurve_load_key(const char *spec, const char *field, char out[CC_ZKEY_LEN + 1], char **err)
{
    if (strlen(spec) == CC_ZKEY_LEN && z85_ok(spec)) {
        memcpy(out, spec, CC_ZKEY_LEN + 1);
        return 0;
    }
    FILE *f = fopen(spec, "rb");
    if (!f) {
        *err =
            fmt_err("%s is neither a Z85 key nor a readable key file (%s)", spec, strerror(errno));
        return CC_ECONFIG;
    }
    char *text = cc_xmalloc(MAX_KEY_FILE + 1);
    size_t n = fread(text, 1, MAX_KEY_FILE, f);
    fclose(f);
    text[n] = '\0';
    bool ok = key_in_text(text, field, out);
    cc_free(text);
    if (!ok) {
        *err = fmt_err("%s holds no %s (a 40-character Z85 key)", spec, field);
        return CC_ECONFIG;
    }
    return 0;
}
