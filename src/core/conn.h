/* SPDX-License-Identifier: MIT */
/*
 * conn.h: one client connection on a libuv loop: TCP, optionally TLS on top.
 *
 * Every protocol driver (HTTP/1.1, HTTP/2, WebSocket, ...) talks to its server through a
 * cc_conn: it connects to an address, writes bytes, and gets plaintext bytes and the end of
 * the stream through callbacks. TLS is invisible past the handshake except for the ALPN
 * result and the session it resumed.
 *
 * Lifecycle. The owner embeds or allocates a zeroed struct cc_conn and calls
 * cc_conn_connect(). If that returns 0, exactly one on_connect follows from the loop (unless
 * the owner closes first); from on_connect(0) on, on_read delivers data until on_end reports
 * the end (0: clean EOF, < 0: an error), at most once. Whatever happens, the owner ends with
 * cc_conn_close(), which may be called at any time, from any callback, more than once; after
 * it no callback runs but on_close, exactly once, once the handles are closed. Only then may
 * the owner free the memory, or connect it again.
 *
 * Callbacks never run from inside a cc_conn_* call: errors that a call meets (a write on a
 * reset socket, a bind to a foreign address) are reported from the loop on a later turn.
 *
 * Memory. sizeof(struct cc_conn) is 608 bytes (uv_tcp_t 248, uv_timer_t 152, uv_connect_t 96,
 * ours 112), and an idle plain connection allocates nothing else (measured: 0 heap bytes per
 * connection over 1000 keep-alive connections). Reads land in one 64 KiB buffer per thread,
 * decrypted TLS in one more (32 KiB), so reading never allocates. A write that the socket
 * takes at once (uv_try_write) copies nothing; the rest is queued in per-connection buffers
 * (248 bytes of bookkeeping plus the data) allocated on first need, reused, and freed by
 * cc_conn_trim() or, above 256 KiB, once drained. TLS adds OpenSSL's objects: about 12 KiB
 * per idle connection after a resumed handshake, 19 KiB after a full one (OpenSSL 3.0's
 * SSL_new() alone takes 8.5 KiB; record buffers are released while idle).
 *
 * Threads: a connection lives on the thread of its loop; nothing here locks.
 */
#ifndef CC_CONN_H
#define CC_CONN_H

#include "core/common.h"
#include "core/err.h"
#include "core/resolve.h"
#include "core/tls.h"

#include <uv.h>

struct cc_conn;
struct conn_wq; /* private: the write queue */

/* What a connection tells its owner. Every member but on_drain is required. */
struct cc_conn_cbs {
    /*
     * The TCP connect and, with TLS, the handshake finished: |status| is 0 or a negative
     * code (UV_ECONNREFUSED, CC_ETIMEDOUT_CONNECT, CC_ETLS, CC_ECERT, ...) with a sentence in
     * cc_conn_error(). On failure the owner closes the connection.
     */
    void (*on_connect)(struct cc_conn *c, int status);
    /* |len| (> 0) plaintext bytes, valid only during the call. */
    void (*on_read)(struct cc_conn *c, const char *data, size_t len);
    /*
     * The stream ended after on_connect(0): 0 for the peer's clean end (TCP FIN, or a TLS
     * close_notify), or a negative code (UV_ECONNRESET, UV_EPIPE, CC_ETLS, ...). Reading has
     * stopped and writes fail with CC_ECLOSED; the owner closes the connection. At most once.
     */
    void (*on_end)(struct cc_conn *c, int status);
    /* Optional: the write queue emptied after reaching the high-water mark. */
    void (*on_drain)(struct cc_conn *c);
    /* The handles are closed: the owner may now free or reuse |c|. Exactly once. */
    void (*on_close)(struct cc_conn *c);
};

struct cc_conn_opts {
    const struct sockaddr *addr;  /* the server: IPv4 or IPv6 with its port; copied */
    const struct sockaddr *local; /* source address to bind first (port 0: any), or NULL */
    uint32_t connect_timeout_ms;  /* TCP connect plus TLS handshake; 0: no timeout */
    struct cc_tls_ctx *tls;       /* NULL: plain TCP; else TLS (the conn holds a reference) */
    const char *server_name;      /* TLS: SNI and the name the certificate must carry (copied);
                                     NULL: no SNI, and the certificate must carry the IP address */
    uint32_t write_high_water;    /* queued bytes that count as backpressure; 0: 64 KiB */
};

#define CC_CONN_HIGH_WATER (64 * 1024)

enum cc_conn_state {
    CC_CONN_IDLE = 0,    /* zeroed, never connected */
    CC_CONN_CONNECTING,  /* TCP connect in progress */
    CC_CONN_HANDSHAKING, /* TLS handshake in progress */
    CC_CONN_OPEN,        /* on_connect(0) ran: data flows */
    CC_CONN_ENDED,       /* on_connect(error) or on_end ran: waiting for cc_conn_close() */
    CC_CONN_CLOSING,     /* cc_conn_close() ran: waiting for the handles */
    CC_CONN_CLOSED,      /* on_close ran: may be freed or connected again */
};

/*
 * Fields are private except |data|; the struct is public so that protocol objects can embed
 * it and get back to themselves with cc_container_of().
 */
struct cc_conn {
    uv_tcp_t tcp;
    uv_timer_t timer; /* the connect timeout; afterwards, events deferred to the loop */
    uv_connect_t connect_req;
    const struct cc_conn_cbs *cbs;
    void *data;             /* the owner's: as given to cc_conn_connect() */
    struct ssl_st *ssl;     /* NULL for plain TCP */
    struct conn_wq *wq;     /* queued output; NULL until the socket first pushes back */
    char *errmsg;           /* the sentence for |err|, or NULL: cc_strerror(err) will do */
    const char *in;         /* TLS: ciphertext OpenSSL is reading, during a read only */
    size_t in_len;          /* bytes left at |in| */
    char *stash;            /* TLS: ciphertext received while reading was stopped */
    uint32_t stash_len;     /* bytes in |stash| (which is allocated to exactly that) */
    int err;                /* the error reported (or about to be), 0 if none */
    uint32_t timeout_ms;    /* connect timeout, for the message */
    uint32_t high_water;    /* bytes */
    uint8_t state;          /* enum cc_conn_state */
    uint8_t flags;          /* CONN_F_* in conn.c */
    uint8_t closing;        /* handles whose close callback is pending */
    union cc_sockaddr peer; /* the server's address */
};

/*
 * Connects |c| (zeroed, or closed: on_close has run) on |loop| to |opts->addr|, with TLS when
 * |opts->tls| is set, and reports the outcome through |cbs->on_connect|, from the loop. |cbs|
 * is borrowed and must outlive the connection (a static table per protocol); |data| is the
 * owner's and stays in c->data. Everything in |opts| is copied or referenced, so it may be
 * a temporary. TCP_NODELAY is set. A source address with port 0 is bound with
 * IP_BIND_ADDRESS_NO_PORT, so that many connections can share it.
 *
 * Returns 0: on_connect runs later, exactly once unless cc_conn_close() comes first. Or,
 * without any callback and with nothing to close:
 *   UV_EBUSY         |c| is in use (connecting, open, or not yet closed)
 *   UV_EINVAL        a required argument or callback is missing, or |opts->local| is not of
 *                    the server's address family
 *   UV_EAFNOSUPPORT  |opts->addr| is neither IPv4 nor IPv6
 *   CC_ETLS          OpenSSL could not create the connection's SSL object
 *   -errno           socket(2) failed (UV_EMFILE when out of descriptors)
 * Failures of nodelay, bind or connect after that arrive through on_connect.
 */
int cc_conn_connect(struct cc_conn *c, uv_loop_t *loop, const struct cc_conn_opts *opts,
                    const struct cc_conn_cbs *cbs, void *data);

/*
 * Sends |len| bytes of |data| (copied when the socket cannot take them at once). With TLS
 * they are encrypted first. Never blocks and never calls a callback.
 *
 * Returns 0 (sent or queued: check cc_conn_write_queued() for backpressure), or:
 *   CC_ECLOSED  the connection is not open (not yet connected, ended, or closing)
 *   < 0         the socket failed (UV_EPIPE, UV_ECONNRESET, ...) on this write or an
 *               earlier one; on_end reports the same code from the loop
 *   CC_ETLS     OpenSSL failed to encrypt; on_end reports it too
 */
int cc_conn_write(struct cc_conn *c, const char *data, size_t len);

/* cc_conn_write() of |n| buffers in order, as one write when the socket takes them. */
int cc_conn_writev(struct cc_conn *c, const uv_buf_t *bufs, unsigned n);

/* Bytes accepted by cc_conn_write() that the kernel has not taken yet. */
size_t cc_conn_write_queued(const struct cc_conn *c);

/* Whether the queue is at or above the high-water mark: stop writing until on_drain. */
bool cc_conn_write_blocked(const struct cc_conn *c);

/*
 * Stops delivering on_read (and noticing the end) until cc_conn_read_start(); data the
 * connection already holds waits for it. Both are idempotent and may be called from on_read;
 * data held back is delivered from the loop, never from inside cc_conn_read_start().
 */
void cc_conn_read_stop(struct cc_conn *c);
void cc_conn_read_start(struct cc_conn *c);

/* Frees the write queue's buffers if nothing is queued (for connections going idle). */
void cc_conn_trim(struct cc_conn *c);

/*
 * Closes |c| at once: queued output is dropped (with TLS, a close_notify is sent if the socket
 * takes it now). No callback but on_close runs afterwards. Idempotent; does nothing on a
 * connection that was never connected.
 */
void cc_conn_close(struct cc_conn *c);

/*
 * The sentence describing the last error, e.g. "connect to 127.0.0.1:8080 failed: connection
 * refused" or "TLS certificate verification failed for example.com: self-signed certificate
 * (set insecure = true / --insecure to skip verification)"; "" if none. Valid until the next
 * event on |c| or on_close.
 */
const char *cc_conn_error(const struct cc_conn *c);

/* The last error code reported through on_connect or on_end, 0 if none. */
static inline int cc_conn_errno(const struct cc_conn *c)
{
    return c->err;
}

static inline bool cc_conn_is_open(const struct cc_conn *c)
{
    return c->state == CC_CONN_OPEN;
}

/* The server's address as given to cc_conn_connect(). */
static inline const struct sockaddr *cc_conn_peer(const struct cc_conn *c)
{
    return &c->peer.sa;
}

/* TLS, after on_connect(0): the protocol ALPN chose (one of the context's strings: "h2"),
 * or NULL when none was negotiated or the connection is plain TCP. */
const char *cc_conn_alpn(const struct cc_conn *c);

/* TLS, after on_connect(0): whether the handshake resumed a cached session. */
bool cc_conn_tls_resumed(const struct cc_conn *c);

/* The OpenSSL object of a TLS connection (peer certificate, version, cipher), or NULL. */
static inline struct ssl_st *cc_conn_ssl(const struct cc_conn *c)
{
    return c->ssl;
}

#endif
