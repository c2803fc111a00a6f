/* SPDX-License-Identifier: MIT */
/*
 * http.h: the HTTP client's internals, shared by its files.
 *
 *   struct http_vm       per vm: the resolver, TLS contexts, every connection, free lists
 *   struct http_session  per user (the Lua `self.client`): settings and one pool per origin
 *   struct http_pool     a session's connections to one origin (scheme, host, port)
 *   struct http_conn     one connection: a cc_conn and the protocol on it (HTTP/1.1 or HTTP/2)
 *   struct http_exchange one request and its response, from the Lua call to the resume
 *
 * A request is serialised once into its exchange; the exchange waits in its pool's queue until
 * a connection is free (or a new one is up), is written, and completes when the response is
 * whole, or fails. Completion builds the response userdata on the waiting fiber's stack and
 * resumes it. Connections belong to the vm-wide list, not to Lua objects, so a session that is
 * collected or a vm that closes only has to detach and close them.
 *
 * HTTP/2 (h2.c): a pool whose session allows it opens one connection at a time until it knows
 * what the server speaks; an HTTP/2 connection then carries every request of the pool as a
 * stream, and the pool's queue holds only what exceeds the server's concurrent stream limit.
 *
 * Streams (h2.c, for gRPC): an exchange may keep its request open and add to its body as it
 * goes (req_open, http_exchange_send), and may take its response as events, the head and each
 * piece of DATA as they arrive (resp_events, on_event), instead of whole at the end. Either way
 * it still ends once, through on_done.
 */
#ifndef CC_HTTP_INT_H
#define CC_HTTP_INT_H

#include "core/conn.h"
#include "core/resolve.h"
#include "core/tls.h"
#include "lua/vm.h"

#include <llhttp.h>
#include <nghttp2/nghttp2.h>
#include <string.h>
#include <zlib.h>

#define HTTP_MAX_HEADER_BYTES   (256 * 1024) /* response header block cap */
#define HTTP_DEFAULT_MAX_BODY   (32ull << 20)
#define HTTP_DEFAULT_TIMEOUT_MS 60000
#define HTTP_DEFAULT_MAX_CONNS  6 /* per origin and user, as browsers */

struct http_vm;
struct http_session;
struct http_pool;
struct http_conn;
struct http_exchange;

/* A growable byte buffer. */
struct http_buf {
    char *p;
    size_t len, cap;
};

void http_buf_grow(struct http_buf *b, size_t need);
static inline void http_buf_append(struct http_buf *b, const char *s, size_t n)
{
    if (n == 0) return;
    if (b->len + n > b->cap) http_buf_grow(b, b->len + n + 1);
    memcpy(b->p + b->len, s, n);
    b->len += n;
}
static inline void http_buf_puts(struct http_buf *b, const char *s)
{
    http_buf_append(b, s, strlen(s));
}
void http_buf_free(struct http_buf *b);

/* Whether a session speaks HTTP/2. */
enum http2_mode {
    HTTP2_OFF,   /* HTTP/1.1 only (ALPN offers "http/1.1") */
    HTTP2_ALPN,  /* TLS offers "h2" then "http/1.1" and takes the server's pick; plain: HTTP/1.1 */
    HTTP2_PRIOR, /* as HTTP2_ALPN, and plain connections speak HTTP/2 at once (h2c) */
    HTTP2_REQUIRED, /* as HTTP2_PRIOR, and a TLS server that does not pick "h2" fails the
                       connection (gRPC, which only HTTP/2 carries) */
};

struct http_settings {
    uint32_t connect_timeout_ms; /* TCP connect plus TLS handshake */
    uint32_t timeout_ms;         /* no response byte for this long fails the request; 0: never */
    uint64_t max_body;           /* response body bytes kept; beyond, a failure unless streamed */
    uint32_t max_conns;          /* connections per origin: requests beyond wait */
    bool verify;                 /* TLS certificate verification */
    char *ca_file, *cert_file, *key_file;
    union cc_sockaddr *sources; /* local addresses to bind, used in turn */
    uint32_t nsources;
    uint8_t http2; /* enum http2_mode */
};

enum http_state {
    HX_QUEUED,   /* waiting for a connection */
    HX_SENT,     /* written; the response is awaited or arriving */
    HX_ENDING,   /* HTTP/2: its stream is over; in its connection's done list, to complete */
    HX_DONE,     /* completed or failed; the fiber was resumed */
    HX_DETACHED, /* its fiber went away (killed); freed when the connection lets go */
};

struct http_exchange {
    struct cc_waiter waiter; /* first: the fiber's view of the exchange */
    struct cc_fiber *fiber;
    struct http_pool *pool;
    struct http_conn *conn;
    struct http_exchange *next; /* in the pool's queue, a connection's streams, or a free list */
    uint8_t state;
    bool idempotent; /* may be retried once on a stale keep-alive connection */
    bool retried;
    bool stream; /* count the body but keep none of it */
    bool head;   /* a HEAD request: the response has no body */
    uint32_t timeout_ms;
    uint64_t max_body;

    struct http_buf req; /* the serialised request (HTTP/1.1 bytes, also read by h2.c) */
    uint32_t req_head;   /* bytes of |req| before the body; 0: unknown, found by searching */

    /* the response, as it arrives */
    int status;
    int error; /* 0, or a negative code: then |errmsg| says what happened */
    char *errmsg;
    struct http_buf reason;
    struct http_buf headers; /* "name\0value\0" pairs */
    uint32_t nheaders;
    uint32_t name_at; /* HTTP/1.1: where in |headers| the name being received starts */
    /* noted as the headers arrive (http_note_header), so that nothing searches them later:
     * 1 + where in |headers| the first value of each is, or 0 */
    uint32_t encoding_at, location_at;
    bool set_cookie;
    struct http_buf body;
    uint64_t body_bytes; /* decoded body bytes seen, kept or not */
    uint64_t wire_bytes; /* body bytes as they came on the wire */
    bool inflating;
    bool inflated_all; /* the compressed stream reached its end */
    bool inflate_raw;  /* retried as raw deflate (no zlib header) */
    z_stream zs;
    bool got_bytes; /* any response byte arrived (no retry after that) */
    bool *sync;     /* set while the starting call runs: completion only flags it */
    uint64_t t_start, t_first_byte, t_end; /* monotonic ns */
    /* no fiber: called at the end instead of resuming one (C callers, tests) */
    void (*on_done)(struct http_exchange *ex);

    /* HTTP/2 (h2.c) */
    struct http_exchange *prev; /* in its connection's streams */
    int32_t stream_id;
    bool http2;           /* sent on an HTTP/2 connection */
    bool h2_final;        /* the final (non-1xx) response head is in */
    bool h2_end;          /* the server ended the stream: the response is whole */
    bool h2_reset;        /* the server reset the stream */
    bool h2_retry;        /* refused unprocessed, or not started: to start again */
    size_t req_sent;      /* body bytes handed to nghttp2 */
    uint64_t progress_ns; /* the stream's last sign of life, for its timeout */
    uint64_t deadline_ns; /* 0, or when the exchange fails whatever its progress (UV_ETIMEDOUT,
                             "Deadline Exceeded"): gRPC's deadline */
    uint32_t nhead;       /* entries of |headers| from the final response head; the rest are
                             trailers (0 when the only header block ended the stream) */
    uint32_t rst_code;    /* h2_reset: the server's RST_STREAM error code */

    /* streams (h2.c): set by the owner before the exchange starts */
    bool req_open;      /* more body comes through http_exchange_send(); END_STREAM waits */
    bool resp_events;   /* the head and DATA go to on_event as they come; DATA stays raw in
                           |body| (max_body caps what the owner has not taken) */
    bool drain_events;  /* on_event also when nghttp2 took request body bytes */
    bool h2_deferred;   /* nghttp2 is waiting for more request body */
    bool h1_event;      /* HTTP/1.1: the head or body came in this read; on_event runs after it
                           (which may end the exchange by setting |error| and |errmsg|) */
    bool body_dropped;  /* body bytes already sent were let go: no resending the request */
    bool notify_queued; /* on its connection's notify list */
    struct http_exchange *notify_next;
    /* called outside nghttp2 (never with a user running) after the head or DATA arrived, or
     * request body went out (drain_events); the stream may have ended meanwhile */
    void (*on_event)(struct http_exchange *ex);
    void *udata;  /* the owner's, for on_done and on_event */
    int32_t uarg; /* the owner's too (gRPC: the reply's message type) */
};

struct http_conn {
    struct cc_conn conn;
    struct http_vm *hv;
    struct http_pool *pool; /* NULL once its session is gone */
    struct http_exchange *ex;
    struct http_conn *next_idle;
    struct http_conn *prev_all, *next_all;
    llhttp_t parser;
    uv_timer_t timer;    /* the response timeout */
    uint64_t active_ms;  /* loop time of the last progress, for the timeout */
    uint32_t timeout_ms; /* the armed timeout: no progress for this long fails the exchange */
    uint32_t served;     /* responses completed on this connection */
    bool open;           /* on_connect(0) came */
    bool closing;
    bool timer_closed;
    uint8_t handles; /* handles whose close callback is pending */

    /* HTTP/2 (h2.c) */
    bool h2_capable;   /* opened by a pool that may speak HTTP/2: its queue waits for it */
    bool is_h2;        /* HTTP/2 was agreed: |h2| drives it */
    bool in_ng;        /* inside nghttp2: streams only move to |done| */
    bool settling;     /* in h2's settle(): it flushes and completes */
    bool goaway;       /* takes no new streams (GOAWAY, exhausted or silent); closes when empty */
    uint32_t nstreams; /* streams in |streams| */
    uint32_t max_streams;   /* the server's SETTINGS_MAX_CONCURRENT_STREAMS */
    int32_t goaway_last_id; /* the last stream the server's GOAWAY said it processes */
    nghttp2_session *h2;
    struct http_exchange *streams;              /* open streams (ex->next, ex->prev) */
    struct http_exchange *done, *done_tail;     /* ended streams, to complete outside nghttp2 */
    struct http_exchange *notify, *notify_tail; /* streams with events for their owner */
    char *h2_err;                               /* why the session ended, for the streams' errors */
    uint64_t timer_due_ns;                      /* when the stream timer fires; 0: not armed */
    uint64_t read_ns;                           /* when the last bytes were read */
};

struct http_pool {
    struct http_session *s;
    char *host;
    char *authority; /* for the Host header */
    uint16_t port;
    bool tls;
    bool resolving;
    uint8_t proto;        /* HTTP_PROTO_*: what its connections speak, once known */
    struct http_conn *h2; /* the HTTP/2 connection new streams go to (open or opening) */
    union cc_sockaddr addr;
    uint64_t resolved_ns; /* 0: not resolved */
    struct http_conn *idle;
    uint32_t nconns; /* open or opening */
    struct http_exchange *queue, *queue_tail;
    uint32_t queued;
};

enum { HTTP_PROTO_UNKNOWN, HTTP_PROTO_H1, HTTP_PROTO_H2 };

struct http_session {
    struct http_vm *hv; /* NULL once the vm closed: the session is inert */
    struct http_settings set;
    struct cc_tls_ctx *tls;
    struct http_pool **pools;
    uint32_t npools;
    size_t pools_cap;
    uint32_t next_source;
};

struct http_vm {
    struct cc_vm *vm;
    struct cc_resolver resolver;
    struct cc_tls_ctx *tls_verify, *tls_insecure; /* shared by sessions without client certs */
    struct cc_tls_ctx *tls_verify_h2, *tls_insecure_h2; /* the same, offering "h2" by ALPN */
    struct http_conn *conns;                            /* every connection */
    struct http_exchange *free_ex;
    uint32_t live_handles; /* connection handles not yet closed */
    /* HTTP/2, set up on first use (h2.c) */
    nghttp2_session_callbacks *h2_cbs;
    nghttp2_option *h2_opt;
    nghttp2_nv *h2_nv; /* a request's header list, reused */
    size_t h2_nv_cap;
    struct http_buf h2_out; /* frames gathered into one write */
    bool closing;
    bool resolver_closed;
};

/* The vm's HTTP state, created on first use. */
struct http_vm *http_vm_get(struct cc_vm *vm);

void http_settings_default(struct http_settings *s);
struct http_session *http_session_new(struct http_vm *hv, struct http_settings *set, char **err);
/* Closes the session's connections; queued exchanges fail. */
void http_session_close(struct http_session *s);
void http_session_free(struct http_session *s);
/* The pool for an origin, created on first use; its index is stable for the session. */
uint32_t http_session_pool(struct http_session *s, bool tls, const char *host, uint16_t port,
                           const char *authority);

struct http_exchange *http_exchange_new(struct http_vm *hv);
/* Gives back an exchange that was never started. */
void http_exchange_discard(struct http_vm *hv, struct http_exchange *ex);
/* Starts |ex| (its request serialised) on pool |p|; completion resumes |ex->fiber|. */
void http_exchange_start(struct http_pool *p, struct http_exchange *ex);
/* The fiber waiting on |ex| was killed: drop the exchange (the waiter's cancel). */
void http_exchange_cancel(struct cc_waiter *w);
/* Ends |ex| with an error (a negative code and a sentence). */
void http_exchange_fail(struct http_exchange *ex, int code, const char *fmt, ...) CC_PRINTF(3, 4);
/* Ends |ex| with its response complete. */
void http_exchange_complete(struct http_exchange *ex);
/*
 * Adds |len| bytes to the request body of |ex| (req_open, started and not ended), and ends the
 * request after them when |end|. They go out as the connection and flow control allow.
 */
void http_exchange_send(struct http_exchange *ex, const char *data, size_t len, bool end);
/* Request body bytes of |ex| not yet taken by nghttp2. */
static inline size_t http_exchange_unsent(const struct http_exchange *ex)
{
    size_t off = (size_t)ex->req_head + ex->req_sent;
    return ex->req.len > off ? ex->req.len - off : 0;
}

/* HTTP/1.1 on a connection (h1.c). */
void h1_conn_init(struct http_conn *c);
void h1_send(struct http_conn *c, struct http_exchange *ex);
void h1_on_read(struct http_conn *c, const char *data, size_t len);
void h1_on_end(struct http_conn *c, int status);

/* HTTP/2 on a connection (h2.c). */
/* ALPN agreed on "h2" (or prior knowledge): starts the session and takes c->ex and the queue. */
void h2_conn_start(struct http_conn *c);
void h2_on_read(struct http_conn *c, const char *data, size_t len);
void h2_on_end(struct http_conn *c, int status);
void h2_on_drain(struct http_conn *c);
/* Pulls the pool's queue onto free streams and sends. */
void h2_dispatch(struct http_conn *c);
/* A killed user's exchange leaves its stream (reset with CANCEL), the others go on. */
void h2_cancel(struct http_conn *c, struct http_exchange *ex);
/* conn_close() of an HTTP/2 connection: its streams fail, the session goes. */
void h2_conn_closed(struct http_conn *c);
void h2_vm_free(struct http_vm *hv);
/* More request body for |ex|'s open stream on |c|: nghttp2 takes it up, and it is sent. */
void h2_send_more(struct http_conn *c, struct http_exchange *ex);
/* The HTTP/2 header list of |ex|'s request (read back from its HTTP/1.1 bytes, whose header
 * names it lower-cases in place) into hv->h2_nv, valid until the next call: the pseudo-headers,
 * then the headers less the connection-specific ones (Host becomes :authority). Returns the
 * number of entries, or 0 when the request line cannot be read. */
size_t h2_request_headers(struct http_vm *hv, const struct http_pool *p, struct http_exchange *ex);

/* Response body decoding (gzip, deflate) into ex->body, honouring the caps. */
int http_body_begin(struct http_exchange *ex, const char *content_encoding);
int http_body_feed(struct http_exchange *ex, const char *data, size_t len);
int http_body_end(struct http_exchange *ex);

/* Forgets the response headers received (a new response, or a final one after an interim). */
static inline void http_headers_clear(struct http_exchange *ex)
{
    ex->headers.len = 0;
    ex->nheaders = 0;
    ex->name_at = ex->encoding_at = ex->location_at = 0;
    ex->set_cookie = false;
}

/* Notes a response header the client acts on: |name| (|nl| bytes), its value at |value_at| of
 * |headers|. */
void http_note_header(struct http_exchange *ex, const char *name, size_t nl, size_t value_at);

/* The first value of Content-Encoding or Location received, or NULL. */
static inline const char *http_header_at(const struct http_exchange *ex, uint32_t at)
{
    return at ? ex->headers.p + at - 1 : NULL;
}

/* Connection management used by the protocol code (client.c). */
void http_conn_release(struct http_conn *c, bool reusable);
void http_conn_arm_timer(struct http_conn *c, uint32_t ms);
/* Progress on |c|: the armed timeout counts from now (no timer call: checked when it fires). */
static inline void http_conn_touch(struct http_conn *c)
{
    c->active_ms = uv_now(c->timer.loop);
}
/* Gives the queue of |p| to its connections, opening them as needed. */
void http_pool_dispatch(struct http_pool *p);

/* The Lua binding's completion: pushes the response on the fiber and resumes it (http_lua.c). */
void http_lua_resume(struct http_exchange *ex);

#endif
