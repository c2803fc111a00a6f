/* SPDX-License-Identifier: MIT */
/* conn.c: TCP and TLS client connections on libuv; see conn.h and docs/internals/transport.md. */
#include "core/conn.h"

#include <errno.h>
#include <netinet/in.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

enum {
    CONN_F_READ_STOPPED = 1 << 0, /* the owner stopped reading */
    CONN_F_OVER_HW = 1 << 1,      /* the queue reached the high-water mark since it last drained */
    CONN_F_DEFER_ERR = 1 << 2,    /* |err| is to be reported from the timer */
    CONN_F_DEFER_READ = 1 << 3,   /* TLS: held-back data is to be read from the timer */
};

/* Per-thread buffers (one loop per thread, and reads never nest, so one of each serves). */
#define RBUF_SIZE    (64 * 1024) /* what libuv reads into: plaintext, or TLS ciphertext */
#define PBUF_SIZE    (32 * 1024) /* what SSL_read decrypts into: two full records */
#define SCRATCH_SIZE (16 * 1024) /* TLS: small vectored writes gathered into one record */

/* Write-queue buffers larger than this are freed once drained, not kept for reuse. */
#define WQ_KEEP_MAX (256 * 1024)

/*
 * The write queue. |fly| is what the pending uv_write() holds: libuv keeps pointers into it,
 * so it never moves while |busy|; anything written meanwhile goes to |next|, and the two swap
 * when the write completes. Both are reused.
 */
struct conn_wq {
    uv_write_t req;
    bool busy; /* |req| is in flight with |fly| */
    char *fly;
    size_t fly_len, fly_cap;
    char *next;
    size_t next_len, next_cap;
};

static pthread_once_t conn_once = PTHREAD_ONCE_INIT;
static pthread_key_t bufs_key; /* frees a thread's buffers when it exits */
static BIO_METHOD *bio_method;
static _Thread_local char *thread_bufs;

static void conn_on_timer(uv_timer_t *t);
static void conn_on_write(uv_write_t *req, int status);
static void tls_resume(struct cc_conn *c);
static void conn_start_reading(struct cc_conn *c);

/* ---- per-thread state ----------------------------------------------------------------------- */

static int conn_bio_write(BIO *b, const char *data, int len);
static int conn_bio_read(BIO *b, char *out, int len);
static long conn_bio_ctrl(BIO *b, int cmd, long num, void *ptr);

static void conn_init_once(void)
{
    CC_ASSERT(pthread_key_create(&bufs_key, cc_free) == 0);
    /*
     * The BIO between OpenSSL and libuv: a memory BIO that reads the ciphertext in place from
     * the buffer libuv just filled and hands OpenSSL's output straight to the socket, instead
     * of copying both through BIO_s_mem() buffers that every connection would keep.
     */
    bio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "cicada conn");
    CC_ASSERT(bio_method != NULL);
    BIO_meth_set_write(bio_method, conn_bio_write);
    BIO_meth_set_read(bio_method, conn_bio_read);
    BIO_meth_set_ctrl(bio_method, conn_bio_ctrl);
}

static inline char *conn_bufs(void)
{
    if (CC_LIKELY(thread_bufs != NULL)) return thread_bufs;
    pthread_once(&conn_once, conn_init_once);
    thread_bufs = cc_xmalloc(RBUF_SIZE + PBUF_SIZE + SCRATCH_SIZE);
    pthread_setspecific(bufs_key, thread_bufs);
    return thread_bufs;
}

#define conn_rbuf()    (conn_bufs())
#define conn_pbuf()    (conn_bufs() + RBUF_SIZE)
#define conn_scratch() (conn_bufs() + RBUF_SIZE + PBUF_SIZE)

/* ---- state and errors ----------------------------------------------------------------------- */

static inline void conn_set_state(struct cc_conn *c, enum cc_conn_state st)
{
    CC_ASSERT(st <= CC_CONN_CLOSED);
    c->state = (uint8_t)st;
}

static CC_PRINTF(2, 3) void conn_set_msg(struct cc_conn *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    cc_free(c->errmsg);
    c->errmsg = cc_xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(c->errmsg, (size_t)n + 1, fmt, ap);
    va_end(ap);
}

static void conn_take_msg(struct cc_conn *c, char *msg)
{
    cc_free(c->errmsg);
    c->errmsg = msg;
}

/* How messages name the server: "localhost (127.0.0.1:8443)" or "127.0.0.1:8443". */
static const char *conn_peer_name(const struct cc_conn *c, char *buf, size_t len)
{
    char addr[64];
    cc_sockaddr_str(&c->peer.sa, addr, sizeof(addr));
    const char *sni = c->ssl ? SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name) : NULL;
    if (sni)
        snprintf(buf, len, "%s (%s)", sni, addr);
    else
        snprintf(buf, len, "%s", addr);
    return buf;
}

static inline bool conn_live(const struct cc_conn *c)
{
    return c->state >= CC_CONN_CONNECTING && c->state <= CC_CONN_OPEN;
}

/* The connect (and handshake) is over: report it. From the loop only. */
static void conn_connect_done(struct cc_conn *c, int status)
{
    if (status == 0 && (c->flags & CONN_F_DEFER_ERR)) status = c->err;
    c->flags &= (uint8_t)~CONN_F_DEFER_ERR;
    uv_timer_stop(&c->timer);
    if (status < 0) {
        c->err = status;
        uv_read_stop((uv_stream_t *)&c->tcp);
        conn_set_state(c, CC_CONN_ENDED);
    } else {
        conn_set_state(c, CC_CONN_OPEN);
        if (c->flags & CONN_F_READ_STOPPED) {
            uv_read_stop((uv_stream_t *)&c->tcp);
        } else if (!c->ssl) {
            conn_start_reading(c);
        }
    }
    c->cbs->on_connect(c, status);
}

/* The stream is over: report it once. From the loop only. */
static void conn_end(struct cc_conn *c, int status)
{
    if (c->state != CC_CONN_OPEN) return;
    c->flags &= (uint8_t) ~(CONN_F_DEFER_ERR | CONN_F_DEFER_READ);
    c->err = status;
    uv_timer_stop(&c->timer);
    uv_read_stop((uv_stream_t *)&c->tcp);
    conn_set_state(c, CC_CONN_ENDED);
    c->cbs->on_end(c, status);
}

/* Reports |err| through whichever callback is next due. From the loop only. */
static void conn_fail(struct cc_conn *c, int err)
{
    if (c->state == CC_CONN_CONNECTING || c->state == CC_CONN_HANDSHAKING)
        conn_connect_done(c, err);
    else
        conn_end(c, err);
}

/*
 * Remembers |err| to report it from the loop on its next turn: for errors met inside calls
 * the owner made, which must not call back. The timer is free for it: the connect timeout is
 * moot once the connection has failed.
 */
static void conn_defer_error(struct cc_conn *c, int err)
{
    if (!conn_live(c) || (c->flags & CONN_F_DEFER_ERR)) return;
    c->err = err;
    c->flags |= CONN_F_DEFER_ERR;
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_timer_start(&c->timer, conn_on_timer, 0, 0);
}

static void conn_on_timer(uv_timer_t *t)
{
    struct cc_conn *c = cc_container_of(t, struct cc_conn, timer);
    if (c->flags & CONN_F_DEFER_ERR) {
        c->flags &= (uint8_t)~CONN_F_DEFER_ERR;
        conn_fail(c, c->err);
        return;
    }
    if (c->state == CC_CONN_CONNECTING || c->state == CC_CONN_HANDSHAKING) {
        char who[128];
        conn_peer_name(c, who, sizeof(who));
        if (c->state == CC_CONN_CONNECTING)
            conn_set_msg(c, "connect to %s timed out after %u ms", who, c->timeout_ms);
        else
            conn_set_msg(c, "TLS handshake with %s timed out after %u ms", who, c->timeout_ms);
        conn_connect_done(c, CC_ETIMEDOUT_CONNECT);
        return;
    }
    if (c->flags & CONN_F_DEFER_READ) {
        c->flags &= (uint8_t)~CONN_F_DEFER_READ;
        if (c->state == CC_CONN_OPEN && !(c->flags & CONN_F_READ_STOPPED)) tls_resume(c);
    }
}

/* ---- writing -------------------------------------------------------------------------------- */

static size_t bufs_total(const uv_buf_t *bufs, unsigned n)
{
    size_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += bufs[i].len;
    return total;
}

/* Appends |bufs| minus their first |skip| bytes to the buffer (*|buf|, *|len|, *|cap|). */
static void wq_put(char **buf, size_t *len, size_t *cap, const uv_buf_t *bufs, unsigned n,
                   size_t skip)
{
    size_t need = *len + bufs_total(bufs, n) - skip;
    if (need > *cap) {
        size_t cap2 = *cap ? *cap : 4096;
        while (cap2 < need)
            cap2 *= 2;
        *buf = cc_xrealloc(*buf, cap2);
        *cap = cap2;
    }
    for (unsigned i = 0; i < n; i++) {
        size_t l = bufs[i].len;
        if (skip >= l) {
            skip -= l;
            continue;
        }
        memcpy(*buf + *len, bufs[i].base + skip, l - skip);
        *len += l - skip;
        skip = 0;
    }
}

static void wq_start(struct cc_conn *c)
{
    struct conn_wq *q = c->wq;
    uv_buf_t b = {.base = q->fly, .len = q->fly_len};
    int rv = uv_write(&q->req, (uv_stream_t *)&c->tcp, &b, 1, conn_on_write);
    if (rv < 0) {
        q->fly_len = 0;
        conn_defer_error(c, rv);
        return;
    }
    q->busy = true;
}

static void wq_free_bufs(struct conn_wq *q, size_t keep)
{
    if (q->fly_cap > keep) {
        cc_free(q->fly);
        q->fly = NULL;
        q->fly_cap = 0;
    }
    if (q->next_cap > keep) {
        cc_free(q->next);
        q->next = NULL;
        q->next_cap = 0;
    }
}

/*
 * Raw bytes to the socket: uv_try_write() first, which copies nothing; whatever the kernel
 * does not take is queued. Socket errors are deferred to the loop and returned.
 */
static int conn_send(struct cc_conn *c, const uv_buf_t *bufs, unsigned n)
{
    size_t done = 0;
    struct conn_wq *q = c->wq;

    if (c->flags & CONN_F_DEFER_ERR) return c->err;
    if (!q || !q->busy) {
        int rv = uv_try_write((uv_stream_t *)&c->tcp, bufs, n);
        if (rv >= 0) {
            done = (size_t)rv;
            if (done == bufs_total(bufs, n)) return 0;
        } else if (rv != UV_EAGAIN) {
            conn_defer_error(c, rv);
            return rv;
        }
    }
    /* A closing connection (its close_notify) or a dead one gets no queue. */
    if (!conn_live(c)) return 0;
    if (!q) q = c->wq = cc_xcalloc(1, sizeof(*q));
    if (q->busy) {
        wq_put(&q->next, &q->next_len, &q->next_cap, bufs, n, done);
    } else {
        wq_put(&q->fly, &q->fly_len, &q->fly_cap, bufs, n, done);
        q->req.data = c;
        wq_start(c);
    }
    if (cc_conn_write_queued(c) >= c->high_water) c->flags |= CONN_F_OVER_HW;
    return (c->flags & CONN_F_DEFER_ERR) ? c->err : 0;
}

static void conn_on_write(uv_write_t *req, int status)
{
    struct cc_conn *c = req->data;
    struct conn_wq *q = c->wq;

    q->busy = false;
    q->fly_len = 0;
    if (status == UV_ECANCELED || !conn_live(c)) return; /* closing, or already reported */
    if (status < 0) {
        conn_fail(c, status);
        return;
    }
    if (q->next_len > 0) {
        char *t = q->fly;
        size_t tcap = q->fly_cap;
        q->fly = q->next;
        q->fly_cap = q->next_cap;
        q->fly_len = q->next_len;
        q->next = t;
        q->next_cap = tcap;
        q->next_len = 0;
        wq_start(c);
        return;
    }
    wq_free_bufs(q, WQ_KEEP_MAX);
    if ((c->flags & CONN_F_OVER_HW) && c->state == CC_CONN_OPEN) {
        c->flags &= (uint8_t)~CONN_F_OVER_HW;
        if (c->cbs->on_drain) c->cbs->on_drain(c);
    }
}

/* OpenSSL writes records here: they go to the socket like any write; errors are deferred. */
static int conn_bio_write(BIO *b, const char *data, int len)
{
    struct cc_conn *c = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (len <= 0) return 0;
    uv_buf_t buf = uv_buf_init((char *)data, (unsigned)len);
    conn_send(c, &buf, 1);
    return len;
}

/* OpenSSL reads ciphertext here, in place from the slice being processed. */
static int conn_bio_read(BIO *b, char *out, int len)
{
    struct cc_conn *c = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (c->in_len == 0) {
        BIO_set_retry_read(b); /* SSL_ERROR_WANT_READ: wait for the next read */
        return -1;
    }
    size_t n = CC_MIN((size_t)len, c->in_len);
    memcpy(out, c->in, n);
    c->in += n;
    c->in_len -= n;
    return (int)n;
}

static long conn_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b, (void)num, (void)ptr;
    /* OpenSSL flushes after each handshake flight; our writes are already on their way. */
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int tls_write(struct cc_conn *c, const char *data, size_t len)
{
    size_t written; /* no SSL_get_error here: the error queue need not be empty first */
    if (SSL_write_ex(c->ssl, data, len, &written) == 1) {
        return (c->flags & CONN_F_DEFER_ERR) ? c->err : 0;
    }
    char who[128], *msg;
    cc_tls_record_error(conn_peer_name(c, who, sizeof(who)), &msg);
    conn_take_msg(c, msg);
    conn_defer_error(c, CC_ETLS);
    return CC_ETLS;
}

int cc_conn_writev(struct cc_conn *c, const uv_buf_t *bufs, unsigned n)
{
    if (CC_UNLIKELY(c->state != CC_CONN_OPEN)) return CC_ECLOSED;
    if (CC_UNLIKELY(c->flags & CONN_F_DEFER_ERR)) return c->err;
    if (!c->ssl) return conn_send(c, bufs, n);

    /* Gather small pieces (headers and a body) into one record rather than one per piece. */
    size_t total = bufs_total(bufs, n);
    if (total == 0) return 0;
    if (n > 1 && total <= SCRATCH_SIZE) {
        char *s = conn_scratch();
        size_t off = 0;
        for (unsigned i = 0; i < n; i++) {
            memcpy(s + off, bufs[i].base, bufs[i].len);
            off += bufs[i].len;
        }
        return tls_write(c, s, total);
    }
    for (unsigned i = 0; i < n; i++) {
        if (bufs[i].len == 0) continue;
        int rv = tls_write(c, bufs[i].base, bufs[i].len);
        if (rv < 0) return rv;
    }
    return 0;
}

int cc_conn_write(struct cc_conn *c, const char *data, size_t len)
{
    if (CC_UNLIKELY(c->state != CC_CONN_OPEN)) return CC_ECLOSED;
    if (CC_UNLIKELY(c->flags & CONN_F_DEFER_ERR)) return c->err;
    if (len == 0) return 0;
    if (c->ssl) return tls_write(c, data, len);
    uv_buf_t b = {.base = (char *)data, .len = len};
    return conn_send(c, &b, 1);
}

size_t cc_conn_write_queued(const struct cc_conn *c)
{
    if (!c->wq) return 0;
    return c->tcp.write_queue_size + c->wq->next_len;
}

bool cc_conn_write_blocked(const struct cc_conn *c)
{
    return cc_conn_write_queued(c) >= c->high_water;
}

void cc_conn_trim(struct cc_conn *c)
{
    struct conn_wq *q = c->wq;
    if (!q || q->busy || q->next_len > 0) return;
    wq_free_bufs(q, 0);
    cc_free(q);
    c->wq = NULL;
}

/* ---- reading -------------------------------------------------------------------------------- */

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h, (void)suggested;
    *buf = uv_buf_init(conn_rbuf(), RBUF_SIZE);
}

static void tls_handshake(struct cc_conn *c)
{
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        conn_connect_done(c, 0);
        return;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return;
    char who[128], *msg;
    int rv = cc_tls_handshake_error(c->ssl, conn_peer_name(c, who, sizeof(who)), &msg);
    conn_take_msg(c, msg);
    conn_connect_done(c, rv);
}

/*
 * Runs OpenSSL over the current slice (|in|): the handshake, then records, each delivered
 * as it is decrypted. Stops when the slice is used up, or when the owner stops reading or
 * closes from a callback.
 */
static void tls_process(struct cc_conn *c)
{
    if (c->state == CC_CONN_HANDSHAKING) tls_handshake(c);
    char *pbuf = conn_pbuf();
    /* SSL_get_error() needs an empty error queue; a successful read adds nothing to it. */
    ERR_clear_error();
    while (c->state == CC_CONN_OPEN && !(c->flags & CONN_F_READ_STOPPED)) {
        size_t got;
        if (SSL_read_ex(c->ssl, pbuf, PBUF_SIZE, &got) == 1) {
            c->cbs->on_read(c, pbuf, got);
            /* the slice used up and no record left inside OpenSSL: another SSL_read_ex would
             * only say SSL_ERROR_WANT_READ */
            if (c->state == CC_CONN_OPEN && c->in_len == 0 && !SSL_has_pending(c->ssl)) break;
            continue;
        }
        int e = SSL_get_error(c->ssl, 0);
        if (e == SSL_ERROR_WANT_READ) break;
        if (e == SSL_ERROR_ZERO_RETURN) { /* close_notify */
            conn_end(c, 0);
            break;
        }
        char who[128], *msg;
        cc_tls_record_error(conn_peer_name(c, who, sizeof(who)), &msg);
        conn_take_msg(c, msg);
        conn_end(c, CC_ETLS);
        break;
    }
}

/*
 * After tls_process(): keeps what the owner did not let us read (it stopped reading from a
 * callback) for cc_conn_read_start(), or frees the stash once it is used up. |from_stash|:
 * the slice was the stash itself.
 */
static void tls_keep_rest(struct cc_conn *c, bool from_stash)
{
    if (!conn_live(c) || c->in_len == 0) {
        cc_free(c->stash);
        c->stash = NULL;
        c->stash_len = 0;
    } else if (from_stash) {
        memmove(c->stash, c->in, c->in_len);
        c->stash_len = (uint32_t)c->in_len;
    } else {
        c->stash = cc_xmalloc(c->in_len);
        memcpy(c->stash, c->in, c->in_len);
        c->stash_len = (uint32_t)c->in_len;
    }
    c->in = NULL;
    c->in_len = 0;
}

/* Ciphertext from the socket. Held-back data goes first, so that order is kept. */
static void tls_feed(struct cc_conn *c, const char *data, size_t len)
{
    bool from_stash = c->stash_len > 0;
    if (from_stash) {
        c->stash = cc_xrealloc(c->stash, c->stash_len + len);
        memcpy(c->stash + c->stash_len, data, len);
        c->stash_len += (uint32_t)len;
        c->in = c->stash;
        c->in_len = c->stash_len;
    } else {
        c->in = data;
        c->in_len = len;
    }
    tls_process(c);
    tls_keep_rest(c, from_stash);
}

/* Reading restarted: what OpenSSL buffered and what we stashed, from the loop. */
static void tls_resume(struct cc_conn *c)
{
    c->in = c->stash;
    c->in_len = c->stash_len;
    tls_process(c);
    tls_keep_rest(c, true);
}

/*
 * At the end of the stream: UV_ECONNRESET when the peer reset the connection, else 0. libuv
 * reports a reset that arrives together with the last data as the end of the stream (it sees
 * the hang-up and reads no further), so the reset is still waiting in the socket. A reset
 * after the peer's FIN (our late write answered) leaves EPIPE there instead: that peer closed
 * cleanly, and the end stays a clean one.
 */
static int conn_reset_behind_eof(struct cc_conn *c)
{
    uv_os_fd_t fd;
    int err = 0;
    socklen_t len = sizeof(err);
    if (uv_fileno((const uv_handle_t *)&c->tcp, &fd) != 0) return 0;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return 0;
    return err == ECONNRESET ? UV_ECONNRESET : 0;
}

static void conn_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct cc_conn *c = cc_container_of(s, struct cc_conn, tcp);

    if (CC_LIKELY(n > 0)) {
        if (c->ssl)
            tls_feed(c, buf->base, (size_t)n);
        else
            c->cbs->on_read(c, buf->base, (size_t)n);
        return;
    }
    if (n == 0) return; /* EAGAIN */
    /* the end of the stream: 0 when clean, else the reset behind it */
    if (n == UV_EOF) n = conn_reset_behind_eof(c);
    if (c->state == CC_CONN_HANDSHAKING) {
        char who[128];
        conn_peer_name(c, who, sizeof(who));
        if (n == 0) {
            conn_set_msg(c, "TLS handshake with %s failed: the server closed the connection", who);
            conn_connect_done(c, CC_ETLS);
        } else {
            conn_set_msg(c, "TLS handshake with %s failed: %s", who, cc_strerror((int)n));
            conn_connect_done(c, (int)n);
        }
        return;
    }
    conn_end(c, (int)n);
}

static void conn_start_reading(struct cc_conn *c)
{
    int rv = uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_on_read);
    if (rv < 0) conn_defer_error(c, rv);
}

void cc_conn_read_stop(struct cc_conn *c)
{
    c->flags |= CONN_F_READ_STOPPED;
    if (c->state == CC_CONN_OPEN) uv_read_stop((uv_stream_t *)&c->tcp);
}

void cc_conn_read_start(struct cc_conn *c)
{
    if (!(c->flags & CONN_F_READ_STOPPED)) return;
    c->flags &= (uint8_t)~CONN_F_READ_STOPPED;
    if (c->state != CC_CONN_OPEN || (c->flags & CONN_F_DEFER_ERR)) return;
    conn_start_reading(c);
    /* TLS may hold data already: records OpenSSL buffered, ciphertext we stashed. */
    if (c->ssl && (c->stash_len > 0 || SSL_has_pending(c->ssl))) {
        c->flags |= CONN_F_DEFER_READ;
        uv_timer_start(&c->timer, conn_on_timer, 0, 0);
    }
}

/* ---- connecting ----------------------------------------------------------------------------- */

static void conn_on_connect(uv_connect_t *req, int status)
{
    struct cc_conn *c = cc_container_of(req, struct cc_conn, connect_req);

    /* Closed meanwhile (UV_ECANCELED), or timed out and already reported. */
    if (c->state != CC_CONN_CONNECTING) return;
    if (status < 0) {
        char who[64];
        conn_set_msg(c, "connect to %s failed: %s", cc_sockaddr_str(&c->peer.sa, who, sizeof(who)),
                     cc_strerror(status));
        conn_connect_done(c, status);
        return;
    }
    if (!c->ssl) {
        conn_connect_done(c, 0);
        return;
    }
    conn_set_state(c, CC_CONN_HANDSHAKING);
    conn_start_reading(c);
    tls_handshake(c);
}

static int conn_bind(struct cc_conn *c, const struct sockaddr *local)
{
    uv_os_fd_t fd;
    int rv = uv_fileno((uv_handle_t *)&c->tcp, &fd);
    if (rv < 0) return rv;
    uint16_t port = local->sa_family == AF_INET ? ((const struct sockaddr_in *)local)->sin_port
                                                : ((const struct sockaddr_in6 *)local)->sin6_port;
    if (port == 0) {
        /*
         * Let connect(2) pick the port for the full 4-tuple rather than bind(2) reserve one
         * for the address alone, or every source address would be limited to one connection
         * per ephemeral port across all servers. Best effort: older kernels lack it.
         */
        int one = 1;
        (void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    }
    return uv_tcp_bind(&c->tcp, local, 0);
}

int cc_conn_connect(struct cc_conn *c, uv_loop_t *loop, const struct cc_conn_opts *opts,
                    const struct cc_conn_cbs *cbs, void *data)
{
    if (c->state != CC_CONN_IDLE && c->state != CC_CONN_CLOSED) return UV_EBUSY;
    if (!loop || !opts || !opts->addr || !cbs || !cbs->on_connect || !cbs->on_read ||
        !cbs->on_end || !cbs->on_close)
        return UV_EINVAL;
    size_t alen = cc_sockaddr_len(opts->addr);
    if (alen == 0) return UV_EAFNOSUPPORT;
    if (opts->local && opts->local->sa_family != opts->addr->sa_family) return UV_EINVAL;

    memset(c, 0, sizeof(*c));
    c->cbs = cbs;
    c->data = data;
    c->timeout_ms = opts->connect_timeout_ms;
    c->high_water = opts->write_high_water ? opts->write_high_water : CC_CONN_HIGH_WATER;
    memcpy(&c->peer, opts->addr, alen);
    conn_bufs(); /* the first connection of a thread sets up its buffers and our BIO type */

    if (opts->tls) {
        char ip[64];
        uint16_t port;
        if (c->peer.sa.sa_family == AF_INET) {
            uv_ip4_name(&c->peer.in, ip, sizeof(ip));
            port = ntohs(c->peer.in.sin_port);
        } else {
            uv_ip6_name(&c->peer.in6, ip, sizeof(ip));
            port = ntohs(c->peer.in6.sin6_port);
        }
        c->ssl = cc_tls_ssl_new(opts->tls, opts->server_name, ip, port);
        if (!c->ssl) return CC_ETLS;
        BIO *bio = BIO_new(bio_method);
        if (!bio) {
            cc_tls_ssl_free(c->ssl);
            c->ssl = NULL;
            return CC_ETLS;
        }
        BIO_set_data(bio, c);
        BIO_set_init(bio, 1);
        SSL_set_bio(c->ssl, bio, bio); /* one BIO both ways; the SSL object owns it */
    }

    int rv = uv_tcp_init_ex(loop, &c->tcp, c->peer.sa.sa_family);
    if (rv < 0) {
        cc_tls_ssl_free(c->ssl);
        c->ssl = NULL;
        return rv;
    }
    CC_ASSERT(uv_timer_init(loop, &c->timer) == 0);
    conn_set_state(c, CC_CONN_CONNECTING);

    /* From here on the handles exist: failures go through on_connect, from the loop. */
    char who[64], src[64];
    cc_sockaddr_str(&c->peer.sa, who, sizeof(who));
    rv = uv_tcp_nodelay(&c->tcp, 1);
    if (rv < 0) {
        conn_set_msg(c, "cannot set TCP_NODELAY for %s: %s", who, cc_strerror(rv));
        conn_defer_error(c, rv);
        return 0;
    }
    if (opts->local && (rv = conn_bind(c, opts->local)) < 0) {
        conn_set_msg(c, "cannot bind source address %s for %s: %s",
                     cc_sockaddr_str(opts->local, src, sizeof(src)), who, cc_strerror(rv));
        conn_defer_error(c, rv);
        return 0;
    }
    rv = uv_tcp_connect(&c->connect_req, &c->tcp, &c->peer.sa, conn_on_connect);
    if (rv < 0) {
        conn_set_msg(c, "connect to %s failed: %s", who, cc_strerror(rv));
        conn_defer_error(c, rv);
        return 0;
    }
    if (c->timeout_ms > 0) uv_timer_start(&c->timer, conn_on_timer, c->timeout_ms, 0);
    return 0;
}

/* ---- closing -------------------------------------------------------------------------------- */

static void conn_on_closed(uv_handle_t *h)
{
    struct cc_conn *c = h->data;
    if (--c->closing > 0) return;
    if (c->wq) {
        wq_free_bufs(c->wq, 0);
        cc_free(c->wq);
        c->wq = NULL;
    }
    cc_free(c->stash);
    c->stash = NULL;
    c->stash_len = 0;
    cc_tls_ssl_free(c->ssl);
    c->ssl = NULL;
    cc_free(c->errmsg);
    c->errmsg = NULL;
    conn_set_state(c, CC_CONN_CLOSED);
    c->cbs->on_close(c);
}

void cc_conn_close(struct cc_conn *c)
{
    if (c->state == CC_CONN_IDLE || c->state >= CC_CONN_CLOSING) return;
    bool notify = c->ssl && c->state == CC_CONN_OPEN && !(c->flags & CONN_F_DEFER_ERR);
    conn_set_state(c, CC_CONN_CLOSING);
    if (notify) {
        /* A close_notify (RFC 8446 §6.1) if the socket takes it now; no queue, no wait. */
        ERR_clear_error();
        (void)SSL_shutdown(c->ssl);
        ERR_clear_error();
    }
    c->closing = 2;
    c->tcp.data = c;
    c->timer.data = c;
    uv_close((uv_handle_t *)&c->tcp, conn_on_closed);
    uv_close((uv_handle_t *)&c->timer, conn_on_closed);
}

/* ---- queries -------------------------------------------------------------------------------- */

const char *cc_conn_error(const struct cc_conn *c)
{
    if (c->errmsg) return c->errmsg;
    return c->err ? cc_strerror(c->err) : "";
}

const char *cc_conn_alpn(const struct cc_conn *c)
{
    return c->ssl ? cc_tls_alpn(c->ssl) : NULL;
}

bool cc_conn_tls_resumed(const struct cc_conn *c)
{
    return c->ssl && SSL_session_reused(c->ssl);
}
