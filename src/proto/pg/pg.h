/* SPDX-License-Identifier: MIT */
/*
 * pg.h: the PostgreSQL client's internals, shared by its files.
 *
 *   struct pg_vm      per vm: the resolver, every client, a free list of operations
 *   struct pg_client  per user (the Lua `self.client`): one libpq connection and a queue
 *   struct pg_op      one call from Lua (a query, a prepare, an execute, a pipeline, a
 *                     connect), from the call to the resume
 *   struct pg_stmt    one statement of an operation (a pipeline has several)
 *
 * libpq does the protocol; the loop drives it. The connection's socket is watched with a
 * uv_poll: connecting follows PQconnectPoll's READING/WRITING answers, a query is sent with
 * PQsendQuery* and PQflush (writable is watched only while output is pending), and on readable
 * PQconsumeInput then PQgetResult while !PQisBusy. One operation is in flight per connection,
 * as libpq allows; further calls wait in the client's queue. An operation's text and
 * parameters are copied into its own buffer, which is reused through the vm's free list, so a
 * query costs no allocation of ours once the buffers have grown.
 *
 * Completion records every statement in the statistics (request_type "postgres"), builds the
 * Lua results on the waiting fiber's stack and resumes it. A client collected by Lua finishes
 * what it has queued, then closes; a vm that closes closes every client.
 */
#ifndef CC_PG_H
#define CC_PG_H

#include "core/resolve.h"
#include "lua/vm.h"

#include <libpq-fe.h>

#define PG_DEFAULT_TIMEOUT_MS 60000
#define PG_MAX_PARAMS         65535       /* the protocol's limit on a statement's parameters */
#define PG_MAX_NAME           200         /* bytes of a statistics name made from SQL text */
#define PG_KEEP_BUF           (64 * 1024) /* an operation's buffer larger than this is freed */

/* ---- values (value.c): pure functions, unit-tested and fuzzed ----------------------------- */

/* How a column's text is given to Lua. */
enum pg_vtype { PGV_TEXT, PGV_BOOL, PGV_INT, PGV_FLOAT };

/* The Lua form of a column of type |oid|: int2/int4/int8/oid are integers, float4/float8 are
 * floats, bool is a boolean; everything else (numeric included, to keep its precision) is
 * text. */
enum pg_vtype pg_vtype_of(unsigned oid);

/* Parses PostgreSQL's text form of an integer ("-42"): an optional minus sign and 1 to 19
 * digits, nothing else. Returns false when |s| is not one or overflows int64. */
bool pg_parse_int(const char *s, size_t n, int64_t *out);

/* Parses PostgreSQL's text form of a float ("1.5", "-2e-07", "NaN", "Infinity", "-Infinity").
 * Returns false when |s| is not a whole number in that form. */
bool pg_parse_float(const char *s, size_t n, double *out);

/* Parses a bool's text form ("t" or "f"). */
bool pg_parse_bool(const char *s, size_t n, bool *out);

/* The statistics name of an SQL text: leading and trailing white space dropped, every run of
 * white space inside made one space, cut at PG_MAX_NAME bytes (on a UTF-8 character boundary,
 * with "..." added). Writes at most |cap| bytes (cap > PG_MAX_NAME + 3) and returns the
 * length; an all-blank text gives "(empty)". */
size_t pg_stats_name(const char *sql, size_t n, char *out, size_t cap);

/* The first line of a libpq message, without "ERROR:  " or "FATAL:  " and trailing blanks,
 * in |out| (size |cap| > 0); returns the length. */
size_t pg_first_line(const char *msg, char *out, size_t cap);

/* ---- the client --------------------------------------------------------------------------- */

struct pg_vm;
struct pg_client;
struct pg_op;

enum pg_stmt_kind {
    PG_STMT_QUERY,   /* SQL with parameters (or several statements, simple protocol) */
    PG_STMT_EXECUTE, /* a prepared statement, by name */
    PG_STMT_PREPARE, /* prepares SQL under a name */
};

struct pg_param {
    uint32_t off; /* in the op's buffer */
    int32_t len;  /* -1: NULL */
};

struct pg_stmt {
    uint8_t kind;              /* enum pg_stmt_kind */
    bool internal;             /* a statement re-prepared after a reconnect: not recorded */
    const struct cc_ikey *key; /* the statistics entry */
    uint32_t text, text_len;   /* the SQL, or the statement's name (EXECUTE): op buffer */
    uint32_t sql, sql_len;     /* PREPARE: the SQL to prepare */
    uint32_t param0, nparams;  /* in the op's params */
    PGresult *res;             /* the result kept: rows, a command's status, or an error */
    char *err;                 /* a failure that is not in |res| (connection, timeout) */
    bool done;                 /* its results are all in */
};

enum pg_op_kind { PG_OP_STMT, PG_OP_PIPELINE, PG_OP_CONNECT };

struct pg_op {
    struct cc_waiter waiter; /* first: the fiber's view */
    struct cc_fiber *fiber;  /* NULL once detached (the fiber was killed) or internal */
    struct pg_client *c;
    struct pg_op *next;
    uint8_t kind; /* enum pg_op_kind */
    bool typed;   /* int, float and bool columns as Lua numbers and booleans */
    bool array;   /* rows as arrays rather than keyed by column name */
    bool sent;    /* on the wire: the connection's one operation in flight */
    int *sync;    /* set while the starting call runs: completion leaves values there */
    uint32_t timeout_ms;
    uint32_t cur;    /* the statement whose results come next */
    uint64_t t0;     /* monotonic ns: the call */
    uint64_t t_sent; /* monotonic ns: written to the connection */

    char *buf; /* texts and parameter values, NUL-terminated each */
    size_t len, cap;
    struct pg_param *params;
    size_t nparams, params_cap;
    struct pg_stmt *stmts;
    uint32_t nstmts;
    size_t stmts_cap;
};

enum pg_state {
    PG_DOWN,       /* no connection; the next operation opens one */
    PG_RESOLVING,  /* looking the host name up (libpq would block on it) */
    PG_CONNECTING, /* PQconnectPoll in progress */
    PG_READY,      /* connected */
};

/* A prepared statement, kept so that a new connection prepares it again. */
struct pg_prepared {
    char *name, *sql;
};

struct pg_client {
    struct pg_vm *pv; /* NULL once the vm closed: the client is inert */
    struct pg_client *prev, *next;
    char *conninfo;
    uint32_t connect_timeout_ms;
    uint32_t timeout_ms;
    bool typed; /* default for its calls */

    uint8_t state; /* enum pg_state */
    PGconn *pg;
    uv_poll_t *poll; /* the socket's watcher (its own allocation: a new socket needs a new one) */
    int fd;
    int events;            /* UV_READABLE | UV_WRITABLE being watched */
    uv_timer_t timer;      /* the connect or query timeout */
    uint64_t deadline_ns;  /* when the operation in hand times out; 0: none */
    uint64_t timer_due_ns; /* when |timer| fires while it is active */
    uint64_t connect_t0;   /* monotonic ns: the connect began */
    uint32_t epoch;        /* connections made so far */
    struct cc_resolve_req *rreq;
    char *host; /* a host name to resolve before connecting, or NULL */
    uint16_t port;

    struct pg_op *head, *tail; /* the queue; the head is in flight when head->sent */
    struct pg_prepared *prepared;
    size_t nprepared, prepared_cap;

    bool in_tx;     /* inside client:transaction() */
    bool tx_broken; /* the connection went during that transaction: its calls fail */
    char *tx_error; /* the first failure inside that transaction */

    bool lua_gone;   /* the userdata was collected: close once the queue is empty */
    bool closed;     /* closed for good: the timer's close is pending or done */
    uint8_t handles; /* handles whose close callback is pending, plus the timer while open */
};

struct pg_vm {
    struct cc_vm *vm;
    struct cc_resolver resolver;
    struct pg_client *clients; /* every client not yet freed */
    struct pg_op *free_ops;
    struct pg_op *building; /* the op a Lua call is filling (see pg_lua.c's begin_op) */
    uint32_t live_handles;
    bool closing;
    bool resolver_closed;
    /* the parameter arrays of the statement being sent, reused */
    const char **vals;
    int *lens;
    size_t vals_cap;
    const struct cc_ikey *connect_key;
};

/* The vm's PostgreSQL state, created on first use. */
struct pg_vm *pg_vm_get(struct cc_vm *vm);

struct pg_client *pg_client_new(struct pg_vm *pv, const char *conninfo);
/* Lua let go of |c|: it closes once its queue is empty, and is freed after. */
void pg_client_release(struct pg_client *c);
/* Closes the connection now: the operation in flight fails, queued ones reconnect. */
void pg_client_disconnect(struct pg_client *c, const char *why);
/* Remembers a prepared statement for reconnects (replacing one of the same name). */
void pg_client_remember(struct pg_client *c, const char *name, const char *sql);
/* The SQL of prepared statement |name| on this client, or NULL. */
const char *pg_client_prepared(const struct pg_client *c, const char *name);

struct pg_op *pg_op_new(struct pg_vm *pv);
/* Appends |n| bytes and a NUL to |op|'s buffer; returns their offset. */
uint32_t pg_op_put(struct pg_op *op, const char *s, size_t n);
struct pg_stmt *pg_op_add_stmt(struct pg_op *op);
struct pg_param *pg_op_add_param(struct pg_op *op);
/* Queues |op| on |c| and starts what it needs (a connect, the send). Completion pushes the
 * results on |op->fiber| (or, while |op->sync| is set, leaves them on the caller's stack). */
void pg_op_start(struct pg_client *c, struct pg_op *op);
/* The fiber waiting on the op was killed (the waiter's cancel). */
void pg_op_cancel(struct cc_waiter *w);

/* The Lua binding's completion: pushes |op|'s results on |L| and returns how many
 * (pg_lua.c). */
int pg_lua_push_results(lua_State *L, struct pg_op *op);

#endif
