/* SPDX-License-Identifier: MIT */
/*
 * ws.h: WebSocket client connections (RFC 6455) on a vm's loop: ws:// and wss://.
 *
 * A connection resolves its host, connects (TCP, then TLS for wss), sends the upgrade request
 * (handshake.h) and from then on frames messages with wslay's event API. Messages arrive
 * whole through on_message; pings are answered by wslay; a close frame from the server is
 * answered and ends the connection with on_end(0).
 *
 * Lifecycle. cc_ws_open() returns a connection that reports on_open exactly once, from the
 * loop: 0 when the handshake succeeded, or a negative code (the sentence in cc_ws_error()).
 * After on_open(0), on_message and on_pong deliver what arrives until on_end, at most once.
 * The owner ends with cc_ws_release() at any time, from any callback; no callback runs after
 * it, and the memory is freed once the handles are closed. A vm that closes releases every
 * connection and clears the owner's pointer (cc_ws_set_backref).
 *
 * Callbacks never run from inside a cc_ws_* call. Calls made from inside a callback are safe:
 * frames they queue are sent when the callback returns.
 *
 * Memory: wslay's context (about 4.5 KiB, its frame reader's buffer included), the transport
 * (core/conn.h), and two buffers reused for the life of the connection: the message being
 * received, and the frames being sent. wslay copies each queued message once.
 */
#ifndef CC_WS_H
#define CC_WS_H

#include "core/common.h"
#include "core/conn.h"
#include "lua/vm.h"

#define CC_WS_DEFAULT_MAX_MESSAGE (16u << 20)
#define CC_WS_DEFAULT_TIMEOUT_MS  60000
#define CC_WS_CLOSE_TIMEOUT_MS    5000

struct cc_ws;

enum cc_ws_state {
    CC_WS_RESOLVING,
    CC_WS_CONNECTING, /* TCP, then TLS */
    CC_WS_HANDSHAKE,  /* the upgrade request is sent; reading the answer */
    CC_WS_OPEN,
    CC_WS_CLOSING, /* our close frame is sent; waiting for the server's */
    CC_WS_ENDED,   /* on_open(error) or on_end ran */
};

struct cc_ws_cbs {
    /* The handshake finished: 0, or a negative code with a sentence in cc_ws_error(). */
    void (*on_open)(struct cc_ws *ws, int status);
    /* A whole text or binary message, valid only during the call. */
    void (*on_message)(struct cc_ws *ws, bool binary, const char *data, size_t len);
    /* Optional: a pong came (answering our ping, or unsolicited). */
    void (*on_pong)(struct cc_ws *ws, const char *data, size_t len);
    /*
     * The connection ended after on_open(0): 0 when the closing handshake finished (either
     * side started it: cc_ws_close_code() tells what the server sent), or a negative code
     * with a sentence: the server broke the protocol, closed without a close frame, reset...
     */
    void (*on_end)(struct cc_ws *ws, int status);
    /* Optional: the deadline set with cc_ws_set_timer() may have passed. It may also run
     * early, or after the owner's deadlines went: the owner checks them and sets the timer
     * again. */
    void (*on_timer)(struct cc_ws *ws);
    /* Optional: the transport's queue, which had reached its high-water mark, emptied. */
    void (*on_drain)(struct cc_ws *ws);
};

struct cc_ws_opts {
    bool tls;                         /* wss */
    const char *host;                 /* name or IP literal to connect to */
    uint16_t port;                    /* the server's port */
    const char *authority;            /* the Host header: "host:port" or "host" */
    const char *target;               /* path and query: "/chat?room=1" */
    const char *protocols;            /* subprotocols offered, "a, b", or NULL */
    const char *headers;              /* extra "Name: value\r\n" lines, or NULL */
    uint32_t connect_timeout_ms;      /* resolve, TCP, TLS and handshake together; 0: default */
    uint64_t max_message;             /* largest message accepted, bytes; 0: default */
    bool insecure;                    /* wss: do not verify the certificate */
    const char *ca_file;              /* wss: trust these CAs instead of the system's */
    const char *cert_file, *key_file; /* wss: a client certificate */
};

/*
 * Starts a connection on |vm|'s loop. Everything in |o| is copied. |cbs| must outlive the
 * connection (a static table); |data| stays in ws->data. Never fails: a problem found now
 * (a TLS file that does not load) is reported through on_open from the loop.
 */
struct cc_ws *cc_ws_open(struct cc_vm *vm, const struct cc_ws_opts *o, const struct cc_ws_cbs *cbs,
                         void *data);

/* The owner's data given to cc_ws_open(). */
void *cc_ws_data(const struct cc_ws *ws);

/*
 * Queues one message (|binary| or text) and sends what the socket takes. Returns 0, or
 * CC_ECLOSED when the connection is not open (closing, ended, not yet open).
 */
int cc_ws_send(struct cc_ws *ws, bool binary, const char *data, size_t len);

/* cc_ws_send() of a message made of |n| pieces in order, without joining them first. */
int cc_ws_sendv(struct cc_ws *ws, bool binary, const uv_buf_t *bufs, unsigned n);

/* Sends a ping carrying |len| (at most 125) bytes. Returns 0, CC_ECLOSED or UV_EINVAL. */
int cc_ws_ping(struct cc_ws *ws, const char *data, size_t len);

/*
 * Starts the closing handshake: sends a close frame with |code| (0: none) and |reason| (at
 * most 123 bytes), then waits up to |timeout_ms| (0: CC_WS_CLOSE_TIMEOUT_MS) for the server's.
 * on_end follows. Returns 0, CC_ECLOSED when the connection is not open, or UV_EINVAL for a
 * code RFC 6455 reserves or a reason too long.
 */
int cc_ws_close(struct cc_ws *ws, uint16_t code, const char *reason, size_t len,
                uint32_t timeout_ms);

/*
 * The owner lets go: no callback runs any more. An open connection sends a close frame (1001,
 * going away) and closes at once. Idempotent.
 */
void cc_ws_release(struct cc_ws *ws);

/* When the connection is freed (after release, or when the vm closes), *|ref| becomes NULL. */
void cc_ws_set_backref(struct cc_ws *ws, void *ref);

/* Arms the owner's deadline: on_timer runs in |ms| ms or sooner (0: no deadline; a timer
 * already running may still fire). Only while open. */
void cc_ws_set_timer(struct cc_ws *ws, uint64_t ms);

enum cc_ws_state cc_ws_state(const struct cc_ws *ws);
/* Whether messages can be sent. */
bool cc_ws_is_open(const struct cc_ws *ws);
/* The sentence for the last error, or "". */
const char *cc_ws_error(const struct cc_ws *ws);
/* The subprotocol the server chose, or "". */
const char *cc_ws_protocol(const struct cc_ws *ws);
/* The status code of the server's close frame (1005 when it had none, 0 before it came), and
 * its reason. */
uint16_t cc_ws_close_code(const struct cc_ws *ws);
const char *cc_ws_close_reason(const struct cc_ws *ws);
/* Bytes queued for the socket (sent messages the kernel has not taken yet). */
size_t cc_ws_queued(const struct cc_ws *ws);
/* Whether that queue is at its high-water mark (64 KiB): wait for on_drain before sending
 * more, or memory grows with what the server does not read. */
bool cc_ws_blocked(const struct cc_ws *ws);

#endif
