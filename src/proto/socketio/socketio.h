/* SPDX-License-Identifier: MIT */
/*
 * socketio.h: a Socket.IO v4 client (Engine.IO v4 over the websocket transport) on a vm's
 * loop, on top of proto/ws.
 *
 * A client connects the WebSocket to <path>?EIO=4&transport=websocket, reads the Engine.IO open
 * packet (session id, ping interval and timeout), joins one namespace (with an auth payload),
 * and then emits events, with or without an acknowledgement, and receives them. Everything that
 * needs no script runs here without Lua: the server's pings are answered, a server that stops
 * pinging is noticed, binary attachments are gathered, and every event received is recorded in
 * the statistics as request type "WSR" with its name and size, as Locust's SocketIOUser does.
 *
 * The owner embeds struct cc_sio, calls cc_sio_connect(), and gets callbacks from the loop,
 * never from inside a cc_sio_* call. cc_sio_release() ends it at any time; afterwards no
 * callback runs.
 */
#ifndef CC_SOCKETIO_H
#define CC_SOCKETIO_H

#include "core/strbuf.h"
#include "proto/socketio/sio.h"
#include "proto/ws/ws.h"

struct cc_sio;

struct cc_sio_cbs {
    /* The namespace is joined (0), or the connection failed (< 0, cc_sio_error()). */
    void (*on_connect)(struct cc_sio *s, int status);
    /*
     * An event came (already recorded as WSR): its name, the whole JSON array (name first), its
     * attachments, and the ack id the server waits for an answer on, when has_id.
     */
    void (*on_event)(struct cc_sio *s, const char *name, const char *json, size_t len,
                     const struct cc_sio_att *atts, uint32_t natts, bool has_id, uint64_t id);
    /*
     * The answer to an emit with |ctx| came (status 0: the JSON array of its arguments and the
     * attachments; |ns| from the emit to the answer), or will not: UV_ETIMEDOUT, or the
     * connection ended (a negative code, cc_sio_error()).
     */
    void (*on_ack)(struct cc_sio *s, void *ctx, int status, const char *json, size_t len,
                   const struct cc_sio_att *atts, uint32_t natts, uint64_t ns);
    /* After on_connect(0): the connection is over: 0 after cc_sio_disconnect(), else why. */
    void (*on_end)(struct cc_sio *s, int status);
    /* Optional: the owner's deadline (cc_sio_set_deadline) passed. */
    void (*on_timer)(struct cc_sio *s);
};

struct cc_sio_opts {
    struct cc_ws_opts ws; /* target: the path with the query, before EIO=4&transport=... */
    const char *nsp;      /* the namespace, "/" when NULL */
    const char *auth;     /* the CONNECT packet's JSON object, or NULL */
    uint32_t timeout_ms;  /* the whole connect: WebSocket, Engine.IO open, namespace */
};

enum sio_state { SIO_IDLE, SIO_WS, SIO_EIO_OPEN, SIO_NSP, SIO_CONNECTED, SIO_ENDED };

struct sio_ack; /* private */

/* Fields are private; embed it. */
struct cc_sio {
    struct cc_ws *ws;
    struct cc_vm *vm;
    const struct cc_sio_cbs *cbs;
    uint8_t state; /* enum sio_state */
    bool released;
    bool disconnecting;
    char *nsp;
    size_t nsp_len;
    char *auth;
    char sid[64];
    uint32_t ping_interval_ms, ping_timeout_ms;
    uint64_t max_payload;
    uint64_t connect_deadline, ping_deadline, owner_deadline; /* ns; 0: none */
    uint64_t next_id;
    struct sio_ack *acks, *free_acks; /* waiting for answers; spare records */
    uint32_t nacks;
    struct cc_sio_asm pending; /* a binary packet waiting for its attachments */
    struct cc_strbuf out;      /* a packet being built */
    int err;
    char errmsg[512];
};

/* Starts connecting (callbacks from the loop). Everything in |o| is copied. */
void cc_sio_connect(struct cc_sio *s, struct cc_vm *vm, const struct cc_sio_opts *o,
                    const struct cc_sio_cbs *cbs);

/*
 * Emits an event whose JSON array (name first) is |json|, with |natts| binary attachments.
 * When |ack_ctx| is not NULL the server is asked to acknowledge, and on_ack reports the answer
 * or its absence after |timeout_ms| (0: never). Returns 0, or CC_ECLOSED when not connected.
 */
int cc_sio_emit(struct cc_sio *s, const char *json, size_t len, const struct cc_sio_att *atts,
                uint32_t natts, void *ack_ctx, uint32_t timeout_ms);

/* Answers the server's event |id| with the JSON array |json| of arguments. */
int cc_sio_ack(struct cc_sio *s, uint64_t id, const char *json, size_t len,
               const struct cc_sio_att *atts, uint32_t natts);

/* Forgets the wait for the answer of |ack_ctx|: on_ack will not run for it. */
void cc_sio_cancel_ack(struct cc_sio *s, void *ack_ctx);

/* Leaves the namespace and closes the connection (on_end(0) follows). CC_ECLOSED if not open. */
int cc_sio_disconnect(struct cc_sio *s);

/* Ends the client now with the error |why|: awaited answers fail, then on_connect or on_end
 * report it, from inside this call (for an owner that closes while users wait on it). */
void cc_sio_abort(struct cc_sio *s, const char *why);

/* No more callbacks; the connection closes at once. Idempotent. */
void cc_sio_release(struct cc_sio *s);

/* on_timer runs at monotonic time |ns| (0: never). */
void cc_sio_set_deadline(struct cc_sio *s, uint64_t ns);

static inline bool cc_sio_connected(const struct cc_sio *s)
{
    return s->state == SIO_CONNECTED && !s->released;
}

static inline const char *cc_sio_error(const struct cc_sio *s)
{
    return s->errmsg;
}

#endif
