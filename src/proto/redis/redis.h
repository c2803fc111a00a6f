/* SPDX-License-Identifier: MIT */
/*
 * redis.h: the Redis client's internals, shared by its files.
 *
 *   resp.c       the codec: commands encoded as RESP arrays of bulk strings into a reused
 *                buffer; replies parsed by hiredis's reader (read.h), whose objects we build in
 *                a per-connection arena with hard caps, so that no reply allocates per node and
 *                no reply from a peer can grow memory without bound
 *   client.c     the driver: a cc_conn (TCP or TLS) per client, a FIFO of requests (a command,
 *                or a pipeline of several) matched to replies in order, a reply timeout
 *   redis_lua.c  the binding: `cicada.redis.core`
 *
 * Why the reader on our transport rather than hiredis 0.14's async context with its libuv
 * adapter: the adapter has no connect or reply timeout (a stalled server would hang a user for
 * ever), no TLS (hiredis_ssl came with 1.0), resolves names with a blocking getaddrinfo, calls
 * callbacks from inside redisAsyncDisconnect/Free, and allocates a callback record and a
 * formatted command per call. cc_conn has all of the first, and owns its lifetime contract.
 */
#ifndef CC_REDIS_INT_H
#define CC_REDIS_INT_H

#include "core/conn.h"
#include "core/resolve.h"
#include "core/tls.h"
#include "lua/vm.h"
#include "stats/intern.h"

#include <hiredis/read.h>

#define REDIS_DEFAULT_PORT       6379
#define REDIS_DEFAULT_TIMEOUT_MS 60000
#define REDIS_DEFAULT_MAX_REPLY  (64u << 20)
#define REDIS_REQUEST_TYPE       "redis"

/* ---- the codec (resp.c) -------------------------------------------------------------------- */

/* A growable byte buffer. */
struct redis_buf {
    char *p;
    size_t len, cap;
};

void redis_buf_append(struct redis_buf *b, const void *s, size_t n);
void redis_buf_free(struct redis_buf *b);

/* Appends "*<argc>\r\n" and then "$<len>\r\n<arg>\r\n" for each argument: one command. */
void resp_begin(struct redis_buf *b, size_t argc);
void resp_arg(struct redis_buf *b, const char *arg, size_t len);

/* A reply, built in the parser's arena. Types are hiredis's REDIS_REPLY_*. */
struct redis_node {
    int type;
    size_t n; /* string: bytes; array: elements */
    union {
        long long integer;
        char *str; /* NUL-terminated, n bytes */
        struct redis_node **elem;
    } u;
};

struct redis_block; /* private: one arena block */

struct redis_parser {
    redisReader *reader;
    struct redis_block *blocks; /* the first is kept across resets */
    size_t used;                /* arena bytes handed out since the last reset */
    size_t max;                 /* cap on |used|, and on unparsed bytes held by the reader */
    bool too_big;
    char error[160];
};

/* Sets up |p| with a cap of |max| bytes (0: REDIS_DEFAULT_MAX_REPLY). Cannot fail. */
void redis_parser_init(struct redis_parser *p, size_t max);
void redis_parser_release(struct redis_parser *p);
/* Starts over (a new connection): buffered bytes and replies are dropped. */
void redis_parser_restart(struct redis_parser *p);
/* Takes |len| bytes. Returns 0, or -1 after an earlier failure. */
int redis_parser_feed(struct redis_parser *p, const char *data, size_t len);
/*
 * The next complete reply: returns 1 and sets *|out| (valid until redis_parser_reset), 0 when
 * more bytes are needed, or -1 on a protocol error or a reply over the cap (its unparsed bytes
 * held, or its nodes), with a sentence in p->error. After -1 the parser stays failed until
 * restarted.
 */
int redis_parser_next(struct redis_parser *p, struct redis_node **out);
/* Frees every reply returned so far. Only between replies: right after next() returned 1. */
void redis_parser_reset(struct redis_parser *p);
/* Payload bytes of a reply: its strings (and error and status texts), summed over arrays. */
size_t redis_node_bytes(const struct redis_node *n);

/* ---- the client (client.c) ------------------------------------------------------------------ */

struct redis_vm;
struct redis_client;

struct redis_settings {
    char *host;
    uint16_t port;
    char *username, *password; /* AUTH on connect when password is set */
    int db;                    /* SELECT on connect when not 0 */
    bool tls, verify;
    char *ca_file, *cert_file, *key_file;
    uint32_t connect_timeout_ms;
    uint32_t timeout_ms; /* a reply's wait; 0: none */
    size_t max_reply;
};

enum redis_state {
    REDIS_IDLE,       /* not connected */
    REDIS_RESOLVING,  /* looking up the server */
    REDIS_CONNECTING, /* TCP and TLS */
    REDIS_READY,      /* connected: commands are written as they come */
    REDIS_CLOSING,    /* waiting for the connection's on_close */
};

struct redis_req {
    struct cc_waiter waiter; /* first: the fiber's view of the request */
    struct cc_fiber *fiber;  /* NULL once its user was killed: replies are consumed unseen */
    struct redis_client *c;
    struct redis_req *next;      /* in the client's queue, a done list, or the free list */
    const struct cc_ikey **keys; /* per command; NULL for internal commands */
    struct redis_node **replies; /* per command, as they arrive */
    uint32_t cap;                /* of |keys| and |replies| */
    uint32_t ncmds, nreplies;
    uint64_t t_start; /* monotonic ns, when queued */
    char *error;      /* a failure of the whole request (connection, timeout) */
    const char *what; /* internal: the command, for its failure's sentence */
    int npushed;      /* values pushed on the fiber's stack */
    bool queued;      /* in the client's queue */
    bool internal;    /* AUTH or SELECT, sent on connect */
    bool pipeline;    /* results as a list */
    bool starting;    /* the call that made it still runs */
    bool done;        /* completed while |starting| */
    bool pushed;      /* results already pushed on the fiber's stack */
};

struct redis_client {
    struct cc_conn conn;
    struct redis_vm *rv; /* NULL once the vm closed: the client is inert */
    struct redis_client *prev, *next;
    struct redis_settings set;
    struct cc_tls_ctx *tls;
    struct cc_resolve_req *resolving;
    struct redis_parser parser;
    struct redis_buf out;          /* commands waiting for the connection */
    struct redis_req *head, *tail; /* sent or waiting, in order */
    uv_timer_t timer;              /* the reply timeout */
    char *error;                   /* why the last connection ended */
    uint8_t state;                 /* enum redis_state */
    uint8_t handles;               /* timer and connection still to close */
    bool timer_on;
    bool timer_closed;
    bool conn_used; /* cc_conn_connect succeeded: its on_close is due after a close */
    bool released;  /* Lua let go: freed once its handles are closed */
};

struct redis_vm {
    struct cc_vm *vm;
    struct cc_resolver resolver;
    struct redis_client *clients;
    struct redis_req *free_reqs;
    struct cc_tls_cache tls; /* contexts by settings */
    bool closing;
    bool resolver_closed;
};

struct redis_vm *redis_vm_get(struct cc_vm *vm);
/* The TLS context for |s| (a new reference), or NULL with a message in *|err|. */
struct cc_tls_ctx *redis_tls_get(struct redis_vm *rv, const struct redis_settings *s, char **err);

/* A client with |set| (taken). */
struct redis_client *redis_client_new(struct redis_vm *rv, struct redis_settings *set);
/* Lua let go of it. */
void redis_client_release(struct redis_client *c);
/* Closes the connection; pending requests fail with |why| (NULL: a default sentence). Their
 * users resume at the next redis_flush(). */
void redis_client_close(struct redis_client *c, const char *why);
/* Resumes the users whose requests completed. */
void redis_flush(void);

struct redis_req *redis_req_new(struct redis_client *c, uint32_t ncmds, struct cc_fiber *f);
void redis_req_free(struct redis_req *r);
/*
 * Queues |r|, whose commands the caller appended to c->out, and writes them (connecting
 * first if needed). A failure before anything is sent completes |r| at once (r->done).
 */
void redis_req_send(struct redis_req *r);
void redis_req_cancel(struct cc_waiter *w);

/* The statistics key "redis" / |name|, NULL when this thread records nothing. */
const struct cc_ikey *redis_key(struct redis_vm *rv, const char *name, size_t len);

/* The binding (redis_lua.c): pushes |r|'s results onto |L|; returns how many. */
int redis_lua_push_result(lua_State *L, struct redis_req *r);

#endif
