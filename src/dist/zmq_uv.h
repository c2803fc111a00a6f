/* SPDX-License-Identifier: MIT */
/*
 * zmq_uv.h: ZeroMQ sockets driven by a libuv loop.
 *
 * A socket's ZMQ_FD is watched by a uv_poll. That descriptor is edge-triggered: it only says
 * that ZMQ_EVENTS may have changed, and any call that reads ZMQ_EVENTS, sends or receives can
 * consume the edge. So every wake-up drains the socket while ZMQ_EVENTS has ZMQ_POLLIN, and
 * every send arms a uv_idle re-check that drains again before the loop next blocks.
 * Messages are multipart; a receive hands every frame of one message to the callback at once.
 *
 * Sends never block. When libzmq answers EAGAIN (the high-water mark is reached) the message is
 * queued, in order, and retried when the socket becomes writable or after 1, 3 and 5 seconds
 * (Locust's send retries); when the last retry fails the queue is dropped and the error
 * callback runs. The queue holds at most CC_ZSOCK_MAX_QUEUED messages.
 *
 * Sockets share one process-wide ZeroMQ context, created with the first socket and terminated
 * when the last one is freed; a forked child must not inherit an open socket.
 * Everything here runs on the loop's thread.
 */
#ifndef CC_ZMQ_UV_H
#define CC_ZMQ_UV_H

#include "core/common.h"

#include <uv.h>

#define CC_ZSOCK_MAX_FRAMES 8    /* frames in one received message; longer messages are dropped */
#define CC_ZSOCK_MAX_QUEUED 4096 /* sends waiting for the high-water mark to clear */
#define CC_ZKEY_LEN         40   /* a Z85-encoded CURVE key */

struct cc_zsock;

/* One frame of a message: valid only during the callback it is given to. */
struct cc_zframe {
    const void *data;
    size_t len;
};

/*
 * Called from the loop for every message received, with all its frames. The callback may
 * send, and may close |z| (then no further message is delivered).
 */
typedef void cc_zsock_recv_cb(struct cc_zsock *z, const struct cc_zframe *frames, size_t n,
                              void *data);
/* Called from the loop when queued sends could not be delivered after every retry. */
typedef void cc_zsock_error_cb(struct cc_zsock *z, int err, void *data);
/* Called from the loop once |z| is freed. */
typedef void cc_zsock_closed_cb(void *data);

/*
 * CURVE security (ZMTP CurveZMQ). Keys are Z85 strings of CC_ZKEY_LEN characters. A server
 * (the master) has its key pair; when |allowed| is non-empty only clients whose public key is
 * listed may connect (checked by a ZAP handler this module runs), otherwise any client that
 * knows the server's public key may. A client (a worker) has its own key pair and the server's
 * public key.
 */
struct cc_zcurve {
    bool server;
    char public_key[CC_ZKEY_LEN + 1];
    char secret_key[CC_ZKEY_LEN + 1];
    char server_key[CC_ZKEY_LEN + 1]; /* client only: the server's public key */
    char (*allowed)[CC_ZKEY_LEN + 1]; /* server only: client public keys, owned by the caller */
    size_t nallowed;
};

struct cc_zsock_opts {
    int type;              /* ZMQ_ROUTER, ZMQ_DEALER (also ZMQ_REP, ZMQ_REQ, ZMQ_PAIR) */
    const char *identity;  /* routing id a DEALER announces; NULL: none */
    bool ipv6;             /* ZMQ_IPV6: accept and connect over IPv6 as well */
    bool router_handover;  /* ROUTER: a reconnecting peer takes over its routing id */
    int linger_ms;         /* how long close waits to deliver queued messages; -1: forever */
    int64_t max_msg_bytes; /* ZMQ_MAXMSGSIZE: larger incoming messages drop the peer; 0: 64 MiB */
    const struct cc_zcurve *curve; /* NULL: no security (Locust's default) */
};

/*
 * Creates a socket on |loop| (not yet bound or connected). |recv| runs for every message;
 * |on_error| (may be NULL) when queued sends are given up. Sets TCP keepalive as Locust does
 * (TCP_KEEPALIVE 1, TCP_KEEPALIVE_IDLE 30 s).
 *
 * Returns 0 and *|out|, or:
 *   CC_ECONFIG  CURVE is asked for but this libzmq lacks it, or a key is not valid Z85
 *   -errno      zmq_socket(3) or zmq_setsockopt(3) failed
 */
int cc_zsock_new(uv_loop_t *loop, const struct cc_zsock_opts *o, cc_zsock_recv_cb *recv,
                 cc_zsock_error_cb *on_error, void *data, struct cc_zsock **out);

/*
 * Binds to |endpoint| ("tcp://127.0.0.1:5557"; port "*" or 0 picks a free port). When |port|
 * is not NULL it receives the bound port. Returns 0 or -errno (e.g. -EADDRINUSE).
 */
int cc_zsock_bind(struct cc_zsock *z, const char *endpoint, int *port);

/* Connects to |endpoint|; libzmq connects in the background and reconnects after losses. */
int cc_zsock_connect(struct cc_zsock *z, const char *endpoint);

/*
 * Sends one message of |n| frames (the bytes are copied). Never blocks and never calls back
 * synchronously. Returns 0 when sent or queued, or:
 *   CC_ECLOSED   the socket is closing
 *   CC_ETOOBIG   the retry queue is full
 *   -errno       libzmq refused the message (EHOSTUNREACH, EFSM...)
 */
int cc_zsock_send(struct cc_zsock *z, const struct cc_zframe *frames, size_t n);

/* Convenience: sends |len| bytes as one frame, or as [|id|, bytes] when |id| is not NULL. */
int cc_zsock_send2(struct cc_zsock *z, const char *id, const void *buf, size_t len);

/* Messages waiting in the retry queue. */
size_t cc_zsock_queued(const struct cc_zsock *z);

/*
 * Closes |z|: no callback runs after this returns, except |closed| (may be NULL), which runs
 * from the loop once the handles are closed and the socket is freed. Messages already handed
 * to libzmq get the socket's linger time to leave; the retry queue is dropped. Idempotent.
 */
void cc_zsock_close(struct cc_zsock *z, cc_zsock_closed_cb *closed, void *data);

/* The loop |z| runs on. */
uv_loop_t *cc_zsock_loop(const struct cc_zsock *z);

/* ---- CURVE keys ----------------------------------------------------------------------- */

/* Makes a new key pair (Z85). Returns 0, or CC_ECONFIG without CURVE support. */
int cc_zcurve_keypair(char public_key[CC_ZKEY_LEN + 1], char secret_key[CC_ZKEY_LEN + 1]);

/*
 * Reads a key from |spec|: either the Z85 key itself (40 characters) or the path of a file
 * that holds it, alone or as a `|field| = "..."` line (the certificate format of zcert and
 * curve_keygen, where |field| is "public-key" or "secret-key"). Returns 0, or CC_ECONFIG with
 * a message in *|err| (caller frees).
 */
int cc_zcurve_load_key(const char *spec, const char *field, char out[CC_ZKEY_LEN + 1], char **err);

/* Derives the public key from a secret key. Returns 0 or CC_ECONFIG. */
int cc_zcurve_public_from_secret(const char secret_key[CC_ZKEY_LEN + 1],
                                 char public_key[CC_ZKEY_LEN + 1]);

#endif
