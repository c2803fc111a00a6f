/* SPDX-License-Identifier: MIT */
/*
 * sock.h: cooperative TCP sockets for Lua users, the driver under LuaSocket's socket.core,
 * LuaSec's ssl and OpenResty's cosocket methods (docs/internals/luasocket.md).
 *
 * A struct sock is one connection: a cc_conn, the bytes read from it and not yet taken by a
 * receive, optional TLS started after connect (LuaSec wraps a connected socket; OpenResty's
 * sslhandshake upgrades one in place), and up to two waiting users: a reader (connect,
 * handshake, receive) and a writer (a send waiting for the kernel to take its bytes).
 * A Lua socket object (struct sock_ud) points to its sock while it has one; a connection put
 * back with setkeepalive lives on in its vm's pool and goes to the next connect to the same
 * pool. Everything belongs to one vm (one loop thread); nothing locks.
 *
 * Waking users happens only from loop callbacks, or from Lua calls (where cc_fiber_resume
 * defers the resume to the next turn), never from a waiter's cancel().
 */
#ifndef CC_SOCK_H
#define CC_SOCK_H

#include "core/conn.h"
#include "lua/vm.h"
#include "proto/socket/recv.h"

#include <lua.h>

#define SOCK_TCP_MT "cicada.socket.tcp"
#define SOCK_SSL_MT "cicada.socket.ssl"
#define SOCK_CTX_MT "cicada.socket.sslcontext"

/* A receive that keeps more than this buffered without finishing fails ("receive limit
 * exceeded"): a peer that never sends the line end cannot use up the memory. */
#define SOCK_RECV_LIMIT (64u << 20)
/* With no receive pending, reading pauses once this much waits (TCP backpressure). */
#define SOCK_READ_PAUSE (1u << 20)
/* OpenResty's defaults: idle keep-alive connections per pool, and their idle timeout. */
#define SOCK_POOL_SIZE       30
#define SOCK_POOL_TIMEOUT_MS 60000

struct sock;
struct sock_ud;

enum sock_op_kind { OP_NONE, OP_CONNECT, OP_HANDSHAKE, OP_RECV, OP_SEND };

/* A user waiting on a sock. */
struct sock_op {
    struct cc_waiter waiter; /* first member: cancel() finds the op from it */
    struct cc_fiber *fiber;  /* NULL while nobody waits */
    struct sock *s;
    uint8_t kind;         /* enum sock_op_kind */
    int64_t block_ms;     /* the LuaSocket block timeout: renewed by progress; -1 for none */
    uint64_t due_total;   /* monotonic ns: the whole call's deadline, 0 for none */
    uint64_t due_block;   /* monotonic ns: this wait's deadline, 0 for none */
    uint64_t last;        /* OP_SEND: the index of the last byte handed over (LuaSocket's) */
    bool until_inclusive; /* OP_RECV until: for the results */
};

enum sock_state {
    S_IDLE,       /* created for a connect that has not started */
    S_RESOLVING,  /* waiting for the host name */
    S_CONNECTING, /* cc_conn connecting (or closing to try the next address) */
    S_OPEN,       /* connected (TLS may be handshaking) */
    S_DEAD,       /* closed or failed: waiting for its handles before it is freed */
};

struct sock_pool; /* sock.c */

struct sock {
    struct cc_conn conn;
    struct sock_vm *sv;
    struct sock *prev, *next; /* the vm's list of socks, or the pool's idle list */
    struct sock_ud *owner;    /* the Lua object using it; NULL while pooled or dying */
    struct sock_op rd, wr;
    struct sock_select *sel; /* a socket.select waiting on it */
    uv_timer_t timer;        /* deadlines of rd and wr; a pooled connection's idle timeout */
    uint64_t timer_due;      /* what the timer is armed for (ns), 0 when stopped */

    struct cc_recv recv; /* the pending receive's pattern */

    char *in; /* bytes read and not yet received: in[in_off .. in_len) */
    size_t in_off, in_len, in_cap;

    uint8_t state; /* enum sock_state */
    bool eof;      /* no more bytes will come: on_end, or a TLS close_notify */
    bool paused;   /* reading stopped for backpressure */
    bool retry;    /* the connect failed; the conn closes so that the next address is tried */
    bool handshaking;
    bool conn_live; /* cc_conn_connect succeeded and on_close has not run */
    bool timer_live;
    bool shut_rd; /* shutdown("receive") */
    int family;   /* AF_UNSPEC, AF_INET or AF_INET6 */
    int end_err;  /* why the stream ended: 0 for a clean close */
    char *errmsg; /* a sentence for a TLS failure, or NULL */

    struct cc_resolve_req *rreq;
    union cc_sockaddr addrs[CC_RESOLVE_MAX_ADDRS];
    uint8_t naddrs, addr_i;
    int connect_err;
    union cc_sockaddr local;
    bool has_local;

    struct ssl_st *ssl;
    struct bio_st *rbio, *wbio; /* memory BIOs between OpenSSL and the connection */

    uint64_t pool_key;      /* hash of the pool name the connect used */
    struct sock_pool *pool; /* the pool it idles in, or NULL */
    uint64_t idle_due;      /* pooled: when it is closed, 0 for never */
    uint32_t reused;        /* times taken from a pool */

    uint64_t rx, tx;  /* bytes, as LuaSocket's getstats */
    uint64_t born_ns; /* for getstats' age */
};

/* The socket options LuaSocket's setoption takes, kept until there is a socket to set. */
struct sock_opts {
    int8_t keepalive, nodelay, reuseaddr, reuseport, v6only, linger_on; /* -1: unset */
    int linger_s, rcvbuf, sndbuf, keepidle, keepcnt, keepintvl;         /* -1: unset */
};

enum sock_ud_kind { UD_MASTER, UD_CLIENT, UD_CLOSED };

/* A Lua socket object (userdata): LuaSocket's tcp{master}/tcp{client}, or a LuaSec
 * connection (SOCK_SSL_MT). */
struct sock_ud {
    struct sock *s;
    uint8_t kind; /* enum sock_ud_kind */
    bool is_ssl;
    int family;
    double block_s, total_s;              /* settimeout: < 0 for none */
    int64_t connect_ms, send_ms, read_ms; /* settimeouts: < 0 for unset */
    struct sock_opts opts;
    union cc_sockaddr local;
    bool has_local;
    uint32_t reused;
    struct cc_tls_ctx *tls; /* LuaSec: the context its handshake uses (a reference) */
    char *sni;              /* LuaSec: the name conn:sni() set */
};

/* A socket.select that waits: woken by any event on one of its sockets, or its timeout. */
struct sock_select {
    struct cc_waiter waiter;
    struct cc_fiber *fiber;
    struct sock_vm *sv;
    uv_timer_t timer;
    uint32_t n;
    struct sock *socks[];
};

/* A vm's sockets: the resolver, the pools, the TLS contexts sslhandshake shares. */
struct sock_vm {
    struct cc_vm *vm;
    struct cc_resolver resolver;
    struct sock *socks; /* every sock not in a pool and not yet freed */
    struct sock_pool *pools;
    struct cc_tls_ctx *tls_verify, *tls_insecure;
    char *tlsbuf;     /* decrypted bytes on their way to an input buffer */
    uint32_t handles; /* select timers closing */
    bool closing, resolver_closed;
};

/* The vm's socket state, created on first use. */
struct sock_vm *sock_vm_get(struct cc_vm *vm);

/* A new sock of |sv| for a connect; it belongs to |owner|. */
struct sock *sock_new(struct sock_vm *sv, struct sock_ud *owner);

/*
 * Starts connecting |s| to |host|:|port| for the user |f| (the reader slot), with the
 * |timeout_ms| (-1: none). Returns 0 (the user waits) or a negative code when the
 * connect cannot even start.
 */
int sock_connect(struct sock *s, const char *host, uint16_t port);

/* Ends |s|: its connection closes, waiting users get "closed" from the loop, the owner is
 * detached, and it is freed once its handles are closed. Safe from cancel(). */
void sock_kill(struct sock *s);

/* Takes an idle connection of the pool |key| (the newest), or NULL. */
struct sock *sock_pool_take(struct sock_vm *sv, uint64_t key);
/* Parks |s| in the pool |s->pool_key| (created with |size| slots, default 30), closing it after
 * |timeout_ms| idle (0: never). Returns 0 or a LuaSocket-style error string. */
const char *sock_pool_put(struct sock *s, int64_t timeout_ms, int64_t size);

/* Sends |len| bytes (TLS encrypts them). Returns 0 or a negative code. */
int sock_write(struct sock *s, const char *data, size_t len);
/* Bytes not yet taken by the kernel. */
size_t sock_queued(const struct sock *s);

/* Buffered input. */
static inline size_t sock_buffered(const struct sock *s)
{
    return s->in_len - s->in_off;
}
/* The buffered input (never NULL, even when nothing was ever read). */
static inline const char *sock_data(const struct sock *s)
{
    return s->in ? s->in + s->in_off : "";
}
void sock_consume(struct sock *s, size_t n);
/* Resumes reading if it was paused. */
void sock_want_input(struct sock *s);

/* Starts TLS on the open connection |s| with |ctx| and |sni| (may be NULL): the reader slot
 * waits for the handshake. Returns 0, or a negative code with s->errmsg set. */
int sock_tls_start(struct sock *s, struct cc_tls_ctx *ctx, const char *sni);

/* (Re)arms the timer for the waits' deadlines. */
void sock_arm(struct sock *s);
/* The op's deadline from the timeouts: |block_ms| renewed by progress, |total_ms| for the call
 * (-1: none). */
void sock_op_deadlines(struct sock_op *op, int64_t block_ms, int64_t total_ms);

/* Ends a wait: resumes its user with the |n| values pushed on its coroutine. */
void sock_op_finish(struct sock_op *op, int n);

/* The receive pending in the reader slot tried against the input; finishes it (pushing its
 * results and resuming, or, with |L| set, pushing them there for a direct return) when it
 * can. Returns the number of results pushed, or 0 when it must wait. */
int sock_recv_try(struct sock *s, lua_State *L);

/* LuaSocket's text for a code: "timeout", "closed", "connection refused"... */
const char *sock_errstr(int err);
/* The message for |s|'s last failure: its TLS sentence if any, else sock_errstr(err). */
const char *sock_error(const struct sock *s, int err);

/* Whether a select would report |s| as readable (has input or has ended) or writable. */
bool sock_readable(const struct sock *s);
bool sock_writable(const struct sock *s);
/* Wakes the select waiting on |s|, if any. From the loop only. */
void sock_select_wake(struct sock *s);
/* Cancels, times out or wakes a select: detaches it from its sockets; |resume| resumes its
 * user with true. */
void sock_select_end(struct sock_select *w, bool resume);
struct sock_select *sock_select_new(struct sock_vm *sv, uint32_t n);
/* The select timer's callback (start it with the select's timeout). */
void sock_select_timeout(uv_timer_t *t);

/* Applies the options kept in |o| to the connected |s|. Returns 0 or -errno. */
int sock_apply_opts(struct sock *s, const struct sock_opts *o);

#endif
