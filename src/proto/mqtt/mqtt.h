/* SPDX-License-Identifier: MIT */
/*
 * mqtt.h: the MQTT client's internals: libmosquitto driven by the worker's libuv loop.
 *
 *   struct mqtt_vm      per vm: the resolver, TLS contexts, the 1 s tick, every client, the
 *                       free list of operations and the list of completed ones
 *   struct mqtt_client  per user (the Lua `self.client`): settings, the libmosquitto object
 *                       while a connection is attempted or up, its poll handle, subscriptions
 *   struct mqtt_op      one operation a user may wait on: connect, publish, subscribe,
 *                       unsubscribe, disconnect
 *
 * libmosquitto runs in its external-loop mode: its socket sits in a uv_poll (readable always,
 * writable while mosquitto_want_write()), events call mosquitto_loop_read/write, and the vm's
 * tick calls mosquitto_loop_misc for keep-alives. A mosquitto object lives for one connection
 * attempt: made when the connect starts, destroyed when the connection ends, so a broken one
 * never has to be repaired and an idle disconnected client holds no library memory.
 *
 * Re-entrancy. libmosquitto calls back from inside its own functions (on_publish from inside
 * mosquitto_publish for a QoS 0 message written at once; on_disconnect from inside a read).
 * So every call into it is bracketed by mqtt_enter/mqtt_leave: operations that complete inside
 * go to the vm's done list, and a dead connection's object is destroyed only once the
 * outermost call has returned. Users are resumed from the done list then, never from inside a
 * libmosquitto callback (which holds the library's callback mutex). Message handlers (Lua
 * functions a script registers per subscription) are the exception: they run in protected mode
 * on the vm's main state while the message is processed, and must not wait.
 */
#ifndef CC_MQTT_INT_H
#define CC_MQTT_INT_H

#include "core/resolve.h"
#include "core/tls.h"
#include "lua/vm.h"
#include "stats/intern.h"

#include <mosquitto.h>

#define MQTT_DEFAULT_PORT       1883
#define MQTT_DEFAULT_TLS_PORT   8883
#define MQTT_DEFAULT_TIMEOUT_MS 60000
#define MQTT_TICK_MS            1000
/* Publishes in flight that nobody waits for, per client; past it a publish waits after all.
 * libmosquitto sends at most 20 QoS > 0 messages before their acknowledgements (its default
 * in-flight window) and keeps the rest in a list it walks on every acknowledgement. */
#define MQTT_MAX_UNWAITED 20
#define MQTT_REQUEST_TYPE "MQTT"

/* ---- the delivery stamp (stamp.c) --------------------------------------------------------- */

/*
 * A stamped payload starts with 4 magic bytes and the publisher's wall clock in nanoseconds
 * since the epoch (8 bytes, big-endian); the rest is the script's payload. The subscriber's
 * clock minus the stamp is the end-to-end delivery time (publisher and subscriber share a
 * clock on one machine; across machines they need synchronised clocks).
 */
#define MQTT_STAMP_LEN 12

/* Writes the stamp for |wall_ns| into |out|. */
void mqtt_stamp_write(unsigned char out[MQTT_STAMP_LEN], uint64_t wall_ns);
/* Whether |payload| (|len| bytes, may be NULL when 0) is stamped; if so sets *|wall_ns|. */
bool mqtt_stamp_read(const void *payload, size_t len, uint64_t *wall_ns);
/* The wall clock in nanoseconds since the epoch. */
uint64_t mqtt_wall_ns(void);

/*
 * Writes the statistics name "<kind>:<qos>:<topic>" (qos < 0: "<kind>:<topic>") into |buf| of
 * |cap| bytes, NUL-terminated, truncating the topic if it does not fit. Returns the length.
 */
size_t mqtt_event_name(char *buf, size_t cap, const char *kind, int qos, const char *topic,
                       size_t topic_len);

/* ---- interpose.c: libmosquitto's socketpair(2) and read(2) ------------------------------------
 */

/* While on, socketpair() fails on this thread (around mosquitto_new()). */
void mqtt_refuse_socketpair(bool on);

/* The buffer that serves libmosquitto's reads of one socket. */
struct mqtt_rbuf {
    char *data;
    size_t cap, pos, len;
    uint32_t fills; /* read(2) calls in this round */
    bool drained;   /* the socket had no more: "would block" without a system call */
};

/* Between these, this thread's reads of |fd| come from |b| (filled as needed). Every byte read
 * into |b| must be consumed before mqtt_read_end(). */
void mqtt_read_begin(struct mqtt_rbuf *b, int fd);
void mqtt_read_end(void);

/* ---- the client --------------------------------------------------------------------------- */

struct mqtt_vm;
struct mqtt_client;

enum mqtt_state {
    MQTT_IDLE,       /* not connected (never, or the connection ended) */
    MQTT_RESOLVING,  /* looking up the broker's address */
    MQTT_CONNECTING, /* TCP, TLS and CONNECT, waiting for the CONNACK */
    MQTT_CONNECTED,  /* CONNACK accepted */
};

enum mqtt_op_kind {
    MQTT_OP_CONNECT,
    MQTT_OP_PUBLISH,
    MQTT_OP_SUBSCRIBE,
    MQTT_OP_UNSUBSCRIBE,
    MQTT_OP_DISCONNECT,
};

struct mqtt_settings {
    char *host; /* name or address of the broker */
    uint16_t port;
    char *client_id; /* NULL: the broker assigns one (MQTT 5), or libmosquitto makes one */
    bool clean_session;
    char *username, *password;
    int keepalive; /* seconds; 0: none */
    int protocol;  /* MQTT_PROTOCOL_V31, _V311 or _V5 */
    char *will_topic;
    char *will_payload;
    size_t will_len;
    int will_qos;
    bool will_retain;
    bool tls;
    bool verify;
    char *ca_file, *cert_file, *key_file;
    uint32_t connect_timeout_ms; /* resolve + TCP + TLS + CONNACK; 0: none */
    uint32_t timeout_ms;         /* an acknowledgement's wait; 0: none */
};

struct mqtt_op {
    struct cc_waiter waiter; /* first: the fiber's view of the operation */
    struct cc_fiber *fiber;  /* NULL: nobody waits (a handler's publish, a resubscription) */
    struct mqtt_client *c;
    struct mqtt_op *next;      /* in the client's pending list, the vm's done list, or free */
    const struct cc_ikey *key; /* the statistics entry; NULL: not recorded */
    uint64_t t_start;          /* monotonic ns */
    uint64_t deadline_ms;      /* loop time after which it fails; 0: never */
    uint64_t length;           /* payload bytes, for the statistics */
    char *error;               /* the failure's sentence, NULL on success */
    char *topic;               /* subscribe: the filter (dropped if the broker refuses it) */
    int mid;                   /* libmosquitto's message id; -1 until known */
    int granted;               /* subscribe: the QoS the broker granted */
    uint8_t kind;              /* enum mqtt_op_kind */
    bool starting;             /* the call that made it is still running: completion only marks */
    bool done;                 /* completed while |starting| */
    bool pending;              /* in the client's pending list */
};

struct mqtt_sub {
    char *filter;
    char *name; /* what names it in the statistics instead of the filter, or NULL */
    int qos;
    int handler;                          /* slot in the userdata's handler table; 0: none */
    const struct cc_ikey *deliver_key[3]; /* "deliver:<qos>:<filter>", made on first use */
};

struct mqtt_poll {
    uv_poll_t h;
    struct mqtt_client *c; /* NULL once the client let go of it */
};

struct mqtt_client {
    struct mqtt_vm *mv;              /* NULL once the vm closed: the client is inert */
    struct mosquitto *mosq;          /* while a connection is attempted or up */
    struct mqtt_poll *poll;          /* the connection's poll handle */
    struct mqtt_client *prev, *next; /* the vm's list */
    struct mqtt_settings set;
    struct cc_tls_ctx *tls;
    struct cc_resolve_req *resolving;
    struct mqtt_op *ops; /* pending operations */
    uint32_t npending;   /* in |ops| */
    struct mqtt_sub *subs;
    uint32_t nsubs, subs_cap;
    uint32_t handlers_used; /* handler slots handed out (Lua side table) */
    const char *pub_topic;  /* the last topic published to (kept alive in the handler table) */
    const struct cc_ikey *pub_key; /* and its statistics key, for QoS |pub_qos| */
    int pub_qos;
    char *error;            /* why the last connection failed or ended, for later calls */
    char *assigned_id;      /* the client id the connection used */
    uint64_t t_connect;     /* monotonic ns when the connection attempt started */
    uint64_t deadline_ms;   /* loop time the attempt must be done by; 0: none */
    int fd;                 /* the polled socket, -1 if none */
    int events;             /* UV_READABLE/UV_WRITABLE being watched */
    int last_rc;            /* libmosquitto's last result, for an end noticed afterwards */
    int last_errno;         /* and the errno that came with it */
    long tls_verify;        /* the certificate verification's result (X509_V_*) */
    uint32_t polls_closing; /* poll handles whose close callback is pending */
    uint8_t state;          /* enum mqtt_state */
    uint16_t depth;         /* nesting of our calls into libmosquitto */
    bool dead;              /* the connection ended: destroy |mosq| once out of libmosquitto */
    bool close_asked;       /* close() inside a libmosquitto call: done on the way out */
    bool released;          /* Lua let go of it: freed once its poll handle is closed */
    bool has_default;       /* a default message handler is set (slot 0) */
};

struct mqtt_vm {
    struct cc_vm *vm;
    struct cc_resolver resolver;
    uv_timer_t tick;
    struct mqtt_client *clients;
    struct mqtt_op *free_ops;
    struct mqtt_op *done, *done_tail; /* completed, waiting to resume their users */
    struct cc_tls_cache tls;          /* contexts by settings and host */
    int weak_ref;   /* registry: a table of client userdata by light userdata, weak values */
    uint32_t depth; /* calls into libmosquitto in progress, all clients */
    const struct cc_ikey *key_connect, *key_disconnect;
    struct mqtt_rbuf rbuf; /* incoming packets, for the client being read */
    char *buf;             /* a stamped payload, or a name, reused */
    size_t buf_cap;
    uint32_t handler_errors; /* logged so far, to keep the log readable */
    uint8_t handles;         /* tick + resolver still to close */
    bool closing;
};

/* The vm's MQTT state, created on first use. */
struct mqtt_vm *mqtt_vm_get(struct cc_vm *vm);

/* The TLS context for the settings |s| (a new reference), or NULL with a message in *|err|. */
struct cc_tls_ctx *mqtt_tls_get(struct mqtt_vm *mv, const struct mqtt_settings *s, char **err);

/* A new client with |set| (taken: the strings are the client's now). */
struct mqtt_client *mqtt_client_new(struct mqtt_vm *mv, struct mqtt_settings *set);
/* Lua lets go of |c|: its connection closes without ceremony, then it is freed. */
void mqtt_client_release(struct mqtt_client *c);

/* Brackets every call into libmosquitto (see above). */
void mqtt_enter(struct mqtt_client *c);
void mqtt_leave(struct mqtt_client *c);

/* Starts connecting (state IDLE): |op| (may be NULL) completes with the CONNACK. */
void mqtt_connect_start(struct mqtt_client *c, struct mqtt_op *op);
/* Closes the connection at once (no DISCONNECT); pending operations fail with |why|. */
void mqtt_client_close(struct mqtt_client *c, const char *why);

struct mqtt_op *mqtt_op_new(struct mqtt_client *c, uint8_t kind, struct cc_fiber *fiber);
/* Adds |op| to the client's pending list (its timeout armed from the settings). */
void mqtt_op_pend(struct mqtt_op *op);
/* Completes |op|: records it (unless |key| is NULL), then resumes its user. |error| is copied. */
void mqtt_op_complete(struct mqtt_op *op, const char *error);
void mqtt_op_free(struct mqtt_op *op);
/* The waiter's cancel: the user was killed. */
void mqtt_op_cancel(struct cc_waiter *w);

/* The statistics key "MQTT" / |name| (NULL when this thread records nothing). */
const struct cc_ikey *mqtt_key(struct mqtt_vm *mv, const char *name, size_t len);

/* Finds the subscription for |filter|, or NULL. */
struct mqtt_sub *mqtt_sub_find(struct mqtt_client *c, const char *filter);
/* Removes subscription |s| (a pointer into c->subs). */
void mqtt_sub_remove(struct mqtt_client *c, struct mqtt_sub *s);

/* The Lua binding: pushes |op|'s results on its fiber and returns how many (mqtt_lua.c). */
int mqtt_lua_push_result(lua_State *L, struct mqtt_op *op);
/* The Lua binding: calls message handler |slot| of |c| (0: the default handler) with the
 * topic, the payload less its first |skip| bytes, QoS, retain and the latency (or nil if < 0). */
void mqtt_lua_dispatch(struct mqtt_client *c, int slot, const struct mosquitto_message *msg,
                       size_t skip, double latency_ms);
/* The Lua binding: forgets handler |slot| of |c|. */
void mqtt_lua_clear_handler(struct mqtt_client *c, int slot);

#endif
