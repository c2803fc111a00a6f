/* SPDX-License-Identifier: MIT */
/* httpd.c: the HTTP/1.1 server: accept, parse with llhttp, route, respond, stream. */
#include "web/httpd.h"

#include <llhttp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RBUF_SIZE      (64 * 1024)   /* one read, into a buffer shared by a server's connections */
#define STASH_MAX      RBUF_SIZE     /* input held per connection while parsing is paused */
#define OUT_HIGH_WATER (256 * 1024)  /* queued output beyond which parsing pauses */
#define BUF_KEEP       (256 * 1024)  /* buffers grown beyond this are freed after use */
#define LINGER_MAX     (1024 * 1024) /* input dropped after a last response, before closing */
#define LINGER_MS      5000          /* the longest a closing connection waits for the peer */
#define MAX_PARAMS     4

/* A growable byte buffer; every growth from peer input is checked against a cap first. */
struct buf {
    char *data;
    size_t len, cap;
};

static void buf_reserve(struct buf *b, size_t extra)
{
    if (b->len + extra <= b->cap) return;
    size_t n = b->cap ? b->cap : 512;
    while (n < b->len + extra)
        n *= 2;
    b->data = cc_xrealloc(b->data, n);
    b->cap = n;
}

static void buf_add(struct buf *b, const void *p, size_t n)
{
    buf_reserve(b, n);
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void buf_adds(struct buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

static void buf_addu(struct buf *b, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    buf_add(b, tmp + i, sizeof(tmp) - i);
}

static void buf_addhex(struct buf *b, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    buf_add(b, tmp + i, sizeof(tmp) - i);
}

static void buf_release(struct buf *b)
{
    cc_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* Empties |b|, freeing its memory if one large message grew it. */
static void buf_reset(struct buf *b)
{
    if (b->cap > BUF_KEEP)
        buf_release(b);
    else
        b->len = 0;
}

/* A header field: offsets into the request's head arena, each piece NUL-terminated there. */
struct hdr {
    uint32_t name, name_len, value, value_len;
};

struct param {
    const char *name; /* in the route's pattern, not NUL-terminated */
    size_t name_len;
    uint32_t value; /* offset of the NUL-terminated value in the head arena */
};

enum req_state {
    REQ_IDLE = 0, /* no request, or one being parsed */
    REQ_HANDLING, /* handed to a handler; no response started */
    REQ_STREAMING /* status and headers sent; body pieces follow */
};

struct cc_httpd_req {
    struct cc_httpd_conn *conn;
    enum req_state state;
    uint8_t method;   /* llhttp_method_t */
    uint8_t version;  /* 10 or 11 */
    bool head;        /* HEAD: the response has no body */
    bool keep_alive;  /* the connection stays open after this response */
    bool upgrade;     /* Upgrade or CONNECT: we answer it and close */
    bool aborted;     /* the connection closed before the response ended */
    bool chunked_out; /* the streamed body uses chunked framing */
    uint32_t path;    /* offsets in |arena| */
    uint32_t query;
    struct buf arena; /* URL, header names and values, route parameters; NUL-separated */
    struct hdr *hdrs;
    size_t nhdrs, hdrs_cap;
    struct param params[MAX_PARAMS];
    size_t nparams;
    struct buf body;
    struct buf rhdr; /* response header lines added by the handler */
    cc_httpd_abort_cb *abort_cb;
    void *abort_arg;
};

enum conn_phase {
    PH_HEAD = 0, /* waiting for, or reading, a request head */
    PH_BODY,     /* reading a request body */
    PH_HANDLER,  /* a request is with its handler */
    PH_LINGER    /* our side is shut down; dropping input until the peer closes */
};

struct cc_httpd_conn {
    struct cc_httpd *srv;
    uv_tcp_t tcp;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    llhttp_t parser;
    struct cc_httpd_req req;             /* the one request of this connection in flight, reused */
    struct cc_httpd_conn *prev, *next;   /* the server's connections */
    struct cc_httpd_conn *rnext, *rprev; /* the server's resume list */
    struct buf stash;   /* input received while paused, not parsed yet (bounded by STASH_MAX) */
    struct buf out;     /* response bytes not yet handed to the socket (or to TLS) */
    struct buf cipher;  /* TLS: records not yet handed to the socket */
    SSL *ssl;           /* TLS: the session, with memory BIOs both ways; NULL for plain HTTP */
    struct buf wr;      /* the buffer of the uv_write in flight */
    struct buf capture; /* test connections: everything the server wrote */
    uint64_t since_ms;  /* uv_now() when the current wait began, for the timeouts */
    size_t head_raw;    /* raw bytes of the current request head seen so far */
    size_t inflight;    /* bytes of the uv_write in flight */
    size_t lingered;    /* bytes dropped while lingering */
    int err_status;     /* the status our parser callbacks chose for a failure (413, 431) */
    enum conn_phase phase;
    bool test;              /* no socket: fed by cc_httpd_test_conn_feed() */
    bool test_released;     /* cc_httpd_test_conn_free() was called */
    bool feeding;           /* conn_feed() is on the stack: responses are flushed at its end */
    bool paused;            /* parsing stops until the request ends and the output drains */
    bool resume_queued;     /* on the server's resume list */
    bool reading;           /* uv_read_start() is in effect */
    bool writing;           /* a uv_write is in flight */
    bool shutting;          /* uv_shutdown was requested */
    bool peer_eof;          /* the client shut down its side */
    bool close_after_write; /* no more requests: close once the output is written */
    bool in_field;          /* a header name is being received */
    bool closing;           /* conn_close() was called */
    bool closed;            /* the socket is closed (its close callback ran) */
    bool in_close_cb;       /* the abort callback is running from the close callback */
    bool tls_shut;          /* TLS: close_notify is queued; nothing more is encrypted */
};

struct route {
    int method; /* llhttp_method_t, or -1 for any */
    char *pattern;
    cc_httpd_handler_cb *cb;
    void *arg;
};

struct cc_httpd {
    uv_loop_t *loop;
    struct cc_httpd_opts opts;
    llhttp_settings_t settings;
    uv_tcp_t listener;
    uv_timer_t sweep;
    uv_idle_t resume_idle; /* active while connections wait to resume parsing */
    struct route *routes;
    size_t nroutes, routes_cap;
    struct cc_httpd_conn *conns;
    struct cc_httpd_conn *resume_head;
    size_t nconns;    /* allocated connections: open, or closed with an unfinished request */
    unsigned handles; /* listener and sweep timer, until closed */
    int port;
    bool listen_used; /* cc_httpd_listen() gave the listener a socket */
    bool closing;
    bool finalizing;
    cc_httpd_close_cb *close_cb;
    void *close_arg;
    struct cc_httpd_stats stats;
    SSL_CTX *ssl_ctx;   /* HTTPS (cc_httpd_tls()), or NULL */
    char *rbuf;         /* RBUF_SIZE bytes: libuv reads into it, and it is parsed at once */
    struct buf scratch; /* JSON and SSE formatting */
    char date[80];      /* the Date header's value, refreshed once a second */
    uint64_t date_sec;
};

static const char *const method_names[] = {
#define CC_METHOD_NAME(num, name, string) [num] = #string,
    HTTP_ALL_METHOD_MAP(CC_METHOD_NAME)
#undef CC_METHOD_NAME
};

static const char *method_name(unsigned m)
{
    if (m < CC_ARRAY_LEN(method_names) && method_names[m]) return method_names[m];
    return "UNKNOWN";
}

static const struct {
    int status;
    const char *reason;
} reasons[] = {
    {100, "Continue"},
    {101, "Switching Protocols"},
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {204, "No Content"},
    {206, "Partial Content"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {303, "See Other"},
    {304, "Not Modified"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {411, "Length Required"},
    {413, "Content Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {422, "Unprocessable Content"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
};

static const char *status_reason(int status)
{
    for (size_t i = 0; i < CC_ARRAY_LEN(reasons); i++) {
        if (reasons[i].status == status) return reasons[i].reason;
    }
    return ""; /* the reason phrase may be empty (RFC 9112 4) */
}

void cc_httpd_opts_defaults(struct cc_httpd_opts *o)
{
    o->max_header_bytes = 16 * 1024;
    o->max_headers = 100;
    o->max_body_bytes = 1024 * 1024;
    o->max_output_bytes = 8 * 1024 * 1024;
    o->idle_timeout_ms = 30000;
    o->max_connections = 10000;
}

/* ---- connections: lifetime ---------------------------------------------------------------- */

static void conn_flush(struct cc_httpd_conn *c);
static void srv_idle_cb(uv_idle_t *h);
static void conn_feed(struct cc_httpd_conn *c, const char *data, size_t len);
static void srv_maybe_done(struct cc_httpd *s);

static uint64_t now_ms(const struct cc_httpd *s)
{
    return uv_now(s->loop);
}

static size_t conn_queued(const struct cc_httpd_conn *c)
{
    return c->out.len + c->cipher.len + (c->writing ? c->inflight : 0);
}

static void srv_unschedule_resume(struct cc_httpd_conn *c)
{
    struct cc_httpd *s = c->srv;
    if (!c->resume_queued) return;
    if (c->rprev)
        c->rprev->rnext = c->rnext;
    else
        s->resume_head = c->rnext;
    if (c->rnext) c->rnext->rprev = c->rprev;
    c->rnext = c->rprev = NULL;
    c->resume_queued = false;
    if (!s->resume_head) uv_idle_stop(&s->resume_idle);
}

/* Parsing resumes from the loop, never inside the call that finished the blocking response. */
static void srv_schedule_resume(struct cc_httpd_conn *c)
{
    struct cc_httpd *s = c->srv;
    if (c->resume_queued || c->closing) return;
    c->resume_queued = true;
    c->rprev = NULL;
    c->rnext = s->resume_head;
    if (s->resume_head) s->resume_head->rprev = c;
    s->resume_head = c;
    uv_idle_start(&s->resume_idle, srv_idle_cb);
}

static void conn_free(struct cc_httpd_conn *c)
{
    struct cc_httpd *s = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    buf_release(&c->req.arena);
    buf_release(&c->req.body);
    buf_release(&c->req.rhdr);
    cc_free(c->req.hdrs);
    buf_release(&c->stash);
    buf_release(&c->out);
    buf_release(&c->cipher);
    SSL_free(c->ssl); /* and its BIOs */
    buf_release(&c->wr);
    buf_release(&c->capture);
    cc_free(c);
    s->nconns--;
    srv_maybe_done(s);
}

/* A connection is freed once its socket is closed and its request (if any) is finished. */
static void conn_maybe_free(struct cc_httpd_conn *c)
{
    if (!c->closed || c->in_close_cb || c->req.state != REQ_IDLE) return;
    if (c->test && !c->test_released) return;
    conn_free(c);
}

static void conn_run_abort(struct cc_httpd_conn *c)
{
    struct cc_httpd_req *r = &c->req;
    if (r->state == REQ_IDLE || !r->abort_cb) return;
    cc_httpd_abort_cb *cb = r->abort_cb;
    r->abort_cb = NULL;
    c->in_close_cb = true;
    cb(r, r->abort_arg);
    c->in_close_cb = false;
}

static void conn_close_cb(uv_handle_t *h)
{
    struct cc_httpd_conn *c = cc_container_of(h, struct cc_httpd_conn, tcp);
    c->closed = true;
    c->srv->stats.open--;
    conn_run_abort(c);
    conn_maybe_free(c);
}

/* Closes the socket; idempotent. The connection is freed later, from the loop. */
static void conn_close(struct cc_httpd_conn *c)
{
    if (c->closing) return;
    c->closing = true;
    c->reading = false;
    srv_unschedule_resume(c);
    if (c->req.state != REQ_IDLE) {
        c->req.aborted = true;
        c->srv->stats.aborted++;
    }
    if (c->test) {
        /* The abort callback runs when the test frees the connection. */
        c->closed = true;
        c->srv->stats.open--;
        return;
    }
    uv_close((uv_handle_t *)&c->tcp, conn_close_cb);
}

static void conn_start_reading(struct cc_httpd_conn *c);

static void conn_stop_reading(struct cc_httpd_conn *c)
{
    if (!c->reading) return;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = false;
}

static void conn_shutdown_cb(uv_shutdown_t *sr, int status)
{
    struct cc_httpd_conn *c = cc_container_of(sr, struct cc_httpd_conn, sreq);
    if (c->closing) return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    /*
     * Our FIN is sent. Closing now while the client still sends (a pipelined request, the
     * body of a refused upload) would make the kernel answer with a reset that can destroy
     * the response before the client read it, so input is read and dropped until the client
     * closes, for a bounded time and amount.
     */
    c->phase = PH_LINGER;
    c->since_ms = now_ms(c->srv);
    conn_start_reading(c);
}

/* Ends the connection after its last response was written. */
static void conn_shutdown(struct cc_httpd_conn *c)
{
    if (c->shutting || c->closing) return;
    if (c->test || c->peer_eof) {
        conn_close(c);
        return;
    }
    conn_stop_reading(c);
    c->shutting = true;
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, conn_shutdown_cb) < 0) conn_close(c);
}

static struct cc_httpd_conn *conn_new(struct cc_httpd *s)
{
    struct cc_httpd_conn *c = cc_xcalloc(1, sizeof(*c));
    c->srv = s;
    c->req.conn = c;
    llhttp_init(&c->parser, HTTP_REQUEST, &s->settings);
    c->parser.data = c;
    c->since_ms = now_ms(s);
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    s->stats.open++;
    return c;
}

/* ---- connections: reading and parsing ------------------------------------------------------ */

static void conn_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)suggested;
    struct cc_httpd_conn *c = cc_container_of(h, struct cc_httpd_conn, tcp);
    /* Safe to share: libuv fills it and calls conn_read_cb() before it reads anything else. */
    *b = uv_buf_init(c->srv->rbuf, RBUF_SIZE);
}

static void conn_on_eof(struct cc_httpd_conn *c, ssize_t err)
{
    conn_stop_reading(c);
    if (err != UV_EOF || c->phase == PH_LINGER) {
        conn_close(c);
        return;
    }
    c->peer_eof = true;
    /* The client went away while its request is with the handler (it timed out, a browser
     * tab closed): abort it, as nginx does, rather than finish work nobody waits for. A
     * half-close after sending the request reads the same and is treated the same. */
    if (c->req.state != REQ_IDLE) {
        conn_close(c);
        return;
    }
    /* Paused for output: the stash is still to be answered; conn_resume() finishes the job. */
    if (c->paused) return;
    c->close_after_write = true;
    conn_flush(c);
}

/* Plain input from the client (decrypted, with TLS). */
static void conn_input(struct cc_httpd_conn *c, const char *data, size_t n)
{
    if (c->phase == PH_LINGER) {
        c->lingered += n;
        if (c->lingered > LINGER_MAX) conn_close(c);
        return;
    }
    if (c->paused) {
        /* Keep reading while a request is handled, to notice the client leaving, but only
         * up to a bound. */
        buf_add(&c->stash, data, n);
        if (c->stash.len >= STASH_MAX) conn_stop_reading(c);
        return;
    }
    if (c->phase == PH_BODY) c->since_ms = now_ms(c->srv);
    conn_feed(c, data, n);
}

static void conn_tls_drain(struct cc_httpd_conn *c);

/*
 * TLS records from the client: into the session's read BIO, then everything that decrypts
 * goes to conn_input(). All of it is decrypted now, even while paused (into the stash, at
 * most one read's worth beyond its bound), so no input is left waiting inside OpenSSL for a
 * socket read that may never come. The server's reads are at most RBUF_SIZE, so the read
 * buffer, already copied into the BIO, takes the plaintext.
 */
static void conn_tls_input(struct cc_httpd_conn *c, const char *data, size_t n)
{
    struct cc_httpd *s = c->srv;
    if (BIO_write(SSL_get_rbio(c->ssl), data, (int)n) != (int)n) {
        conn_close(c);
        return;
    }
    for (;;) {
        size_t got = 0;
        ERR_clear_error();
        if (SSL_read_ex(c->ssl, s->rbuf, RBUF_SIZE, &got) == 1) {
            conn_input(c, s->rbuf, got);
            if (c->closing) return;
            continue;
        }
        int e = SSL_get_error(c->ssl, 0);
        if (e == SSL_ERROR_WANT_READ) break;
        if (e == SSL_ERROR_ZERO_RETURN) { /* close_notify: the client's end of input */
            conn_tls_drain(c);
            conn_on_eof(c, UV_EOF);
            return;
        }
        /* A failed handshake (plain HTTP on the HTTPS port, no shared cipher), a bad record. */
        ERR_clear_error();
        if (!SSL_is_init_finished(c->ssl)) s->stats.tls_failures++;
        conn_close(c);
        return;
    }
    conn_flush(c); /* handshake records, and whatever the input produced */
}

static void conn_read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    struct cc_httpd_conn *c = cc_container_of(st, struct cc_httpd_conn, tcp);
    if (n == 0 || c->closing) return;
    if (n < 0) {
        conn_on_eof(c, n);
        return;
    }
    if (c->ssl)
        conn_tls_input(c, b->base, (size_t)n);
    else
        conn_input(c, b->base, (size_t)n);
}

static void conn_start_reading(struct cc_httpd_conn *c)
{
    if (c->reading || c->test || c->closing) return;
    if (uv_read_start((uv_stream_t *)&c->tcp, conn_alloc_cb, conn_read_cb) < 0) {
        conn_close(c);
        return;
    }
    c->reading = true;
}

/* Answers a request the server itself refuses, and ends the connection. */
static void conn_fail(struct cc_httpd_conn *c, int status)
{
    static const char json_400[] = "{\"error\":\"bad request\"}";
    static const char json_413[] = "{\"error\":\"request body too large\"}";
    static const char json_431[] = "{\"error\":\"request header fields too large\"}";
    const char *body = status == 413 ? json_413 : status == 431 ? json_431 : json_400;
    struct buf *o = &c->out;

    c->srv->stats.client_errors++;
    buf_adds(o, "HTTP/1.1 ");
    buf_addu(o, (uint64_t)status);
    buf_adds(o, " ");
    buf_adds(o, status_reason(status));
    buf_adds(o, "\r\nContent-Type: application/json\r\nContent-Length: ");
    buf_addu(o, strlen(body));
    buf_adds(o, "\r\nConnection: close\r\n\r\n");
    buf_adds(o, body);
    c->close_after_write = true;
    c->phase = PH_HEAD;
    conn_stop_reading(c);
}

/* Keeps the unparsed input [data, data + len) for later; |data| may point into the stash. */
static void conn_stash(struct cc_httpd_conn *c, const char *data, size_t len)
{
    struct buf *st = &c->stash;
    if (st->data && data >= st->data && data <= st->data + st->cap) {
        memmove(st->data, data, len);
        st->len = len;
    } else {
        buf_add(st, data, len);
    }
}

static bool conn_must_pause(const struct cc_httpd_conn *c)
{
    return c->req.state != REQ_IDLE || conn_queued(c) > OUT_HIGH_WATER;
}

static void conn_dispatch(struct cc_httpd_conn *c);

/*
 * Parses |len| bytes. Each complete request pauses llhttp (on_message_complete returns
 * HPE_PAUSED) and is dispatched here, outside the parser. If its response is not finished when
 * the handler returns (or too much output is queued), the rest of the input is stashed and
 * parsing stops until conn_resume(), which keeps pipelined responses in order.
 */
static void conn_feed(struct cc_httpd_conn *c, const char *data, size_t len)
{
    struct cc_httpd *s = c->srv;
    c->feeding = true;
    while (len > 0) {
        enum llhttp_errno e = llhttp_execute(&c->parser, data, len);
        if (e == HPE_OK) {
            /* The head did not end in this input, so all of it belongs to the head. This also
             * counts what the parser skips without a callback (blank lines, spaces). */
            if (c->phase == PH_HEAD) {
                c->head_raw += len;
                if (c->head_raw > s->opts.max_header_bytes) conn_fail(c, 431);
            }
            break;
        }
        if (e != HPE_PAUSED) {
            conn_fail(c, c->err_status ? c->err_status : 400);
            break;
        }
        const char *pos = llhttp_get_error_pos(&c->parser);
        len -= (size_t)(pos - data);
        data = pos;
        llhttp_resume(&c->parser);
        conn_dispatch(c);
        if (c->closing) break;
        if (c->close_after_write) {
            conn_stop_reading(c); /* no request after this one is read */
            break;
        }
        if (conn_must_pause(c)) {
            c->paused = true;
            conn_stash(c, data, len);
            if (c->stash.len >= STASH_MAX) conn_stop_reading(c);
            break;
        }
    }
    if (!c->paused) c->stash.len = 0;
    c->feeding = false;
    conn_flush(c);
    /* Paused for output that the flush just wrote out at once: no write callback will come
     * to resume parsing, so schedule it. */
    if (c->paused && !c->closing && !conn_must_pause(c)) srv_schedule_resume(c);
}

/* Called from the loop once the response that paused parsing ended and the output drained. */
static void conn_resume(struct cc_httpd_conn *c)
{
    if (c->closing || !c->paused || conn_must_pause(c)) return;
    c->paused = false;
    size_t n = c->stash.len;
    if (n) conn_feed(c, c->stash.data, n);
    if (c->closing || c->paused || c->close_after_write) return;
    if (c->peer_eof) {
        c->close_after_write = true;
        conn_flush(c);
        return;
    }
    conn_start_reading(c);
}

static void srv_idle_cb(uv_idle_t *h)
{
    struct cc_httpd *s = h->data;
    struct cc_httpd_conn *c;
    /* One at a time from the head: resuming one may queue or close others. */
    while ((c = s->resume_head) != NULL) {
        srv_unschedule_resume(c);
        conn_resume(c);
    }
}

/* ---- llhttp callbacks ----------------------------------------------------------------------- */

static int arena_add(struct cc_httpd_conn *c, const char *at, size_t n)
{
    struct buf *a = &c->req.arena;
    if (a->len + n + 1 > c->srv->opts.max_header_bytes) {
        c->err_status = 431;
        return -1;
    }
    buf_add(a, at, n);
    return 0;
}

static int arena_nul(struct cc_httpd_conn *c)
{
    return arena_add(c, "", 1);
}

static int on_message_begin(llhttp_t *p)
{
    struct cc_httpd_conn *c = p->data;
    struct cc_httpd_req *r = &c->req;
    r->arena.len = 0;
    r->nhdrs = 0;
    r->nparams = 0;
    r->body.len = 0;
    r->path = r->query = 0;
    r->upgrade = false;
    c->in_field = false;
    c->err_status = 0;
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
    return arena_add(p->data, at, n);
}

static int on_url_complete(llhttp_t *p)
{
    struct cc_httpd_conn *c = p->data;
    struct cc_httpd_req *r = &c->req;
    size_t url_len = r->arena.len;
    if (arena_nul(c) != 0) return -1;
    char *q = memchr(r->arena.data, '?', url_len);
    r->path = 0;
    /* The absolute form "http://host/path" (RFC 9112 3.2.2): the path starts after the host. */
    const char *u = r->arena.data;
    size_t scheme = strncasecmp(u, "http://", 7) == 0    ? 7
                    : strncasecmp(u, "https://", 8) == 0 ? 8
                                                         : 0;
    if (scheme) {
        const char *slash = memchr(u + scheme, '/', (q ? (size_t)(q - u) : url_len) - scheme);
        if (slash) r->path = (uint32_t)(slash - u);
    }
    if (q) {
        *q = '\0';
        r->query = (uint32_t)(q + 1 - r->arena.data);
    } else {
        r->query = (uint32_t)url_len; /* the terminating NUL: an empty string */
    }
    return 0;
}

static int hdr_begin(struct cc_httpd_conn *c)
{
    struct cc_httpd_req *r = &c->req;
    if (r->nhdrs >= c->srv->opts.max_headers) {
        c->err_status = 431;
        return -1;
    }
    cc_grow((void **)&r->hdrs, &r->hdrs_cap, r->nhdrs + 1, sizeof(*r->hdrs));
    struct hdr *h = &r->hdrs[r->nhdrs++];
    h->name = (uint32_t)r->arena.len;
    h->name_len = h->value = h->value_len = 0;
    c->in_field = true;
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
    struct cc_httpd_conn *c = p->data;
    if (!c->in_field && hdr_begin(c) != 0) return -1;
    return arena_add(c, at, n);
}

/* RFC 9110 5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" /
 * "_" / "`" / "|" / "~" / DIGIT / ALPHA. */
static bool is_tchar(unsigned char ch)
{
    if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'))
        return true;
    return ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static int on_header_field_complete(llhttp_t *p)
{
    struct cc_httpd_conn *c = p->data;
    struct cc_httpd_req *r = &c->req;
    if (!c->in_field && hdr_begin(c) != 0) return -1;
    struct hdr *h = &r->hdrs[r->nhdrs - 1];
    h->name_len = (uint32_t)(r->arena.len - h->name);
    /* llhttp 8 lets a space inside a field name through; such a name is a known request
     * smuggling trick (RFC 9112 5.1), so it is refused here. */
    for (uint32_t i = 0; i < h->name_len; i++) {
        if (!is_tchar((unsigned char)r->arena.data[h->name + i])) return -1;
    }
    if (arena_nul(c) != 0) return -1;
    h->value = (uint32_t)r->arena.len;
    c->in_field = false;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
    return arena_add(p->data, at, n);
}

static int on_header_value_complete(llhttp_t *p)
{
    struct cc_httpd_conn *c = p->data;
    struct cc_httpd_req *r = &c->req;
    if (r->nhdrs == 0) return -1;
    struct hdr *h = &r->hdrs[r->nhdrs - 1];
    size_t end = r->arena.len;
    /* llhttp drops leading blanks but keeps trailing ones (RFC 9110 5.5: OWS around values). */
    while (end > h->value && (r->arena.data[end - 1] == ' ' || r->arena.data[end - 1] == '\t'))
        end--;
    r->arena.len = end;
    h->value_len = (uint32_t)(end - h->value);
    return arena_nul(c);
}

static const char *req_header_n(const struct cc_httpd_req *r, const char *name)
{
    for (size_t i = 0; i < r->nhdrs; i++) {
        if (strcasecmp(r->arena.data + r->hdrs[i].name, name) == 0)
            return r->arena.data + r->hdrs[i].value;
    }
    return NULL;
}

static int on_headers_complete(llhttp_t *p)
{
    struct cc_httpd_conn *c = p->data;
    struct cc_httpd_req *r = &c->req;
    struct cc_httpd *s = c->srv;

    c->phase = PH_BODY;
    c->head_raw = 0;
    c->since_ms = now_ms(s);
    r->upgrade = p->upgrade != 0;
    bool has_length = (p->flags & F_CONTENT_LENGTH) != 0;
    if (has_length && p->content_length > s->opts.max_body_bytes) {
        /* Refused before a byte of the body is read (RFC 9110 15.5.14). */
        c->err_status = 413;
        return -1;
    }
    if (has_length) buf_reserve(&r->body, (size_t)p->content_length + 1);
    bool has_body = (has_length && p->content_length > 0) || (p->flags & F_CHUNKED);
    const char *expect = req_header_n(r, "expect");
    if (has_body && expect && p->http_major == 1 && p->http_minor >= 1 &&
        strcasecmp(expect, "100-continue") == 0) {
        /* The client waits for this before it sends the body (RFC 9110 10.1.1). */
        buf_adds(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
    }
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    struct cc_httpd_conn *c = p->data;
    struct cc_httpd_req *r = &c->req;
    if (r->body.len + n > c->srv->opts.max_body_bytes) {
        c->err_status = 413;
        return -1;
    }
    buf_add(&r->body, at, n);
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    struct cc_httpd_conn *c = p->data;
    struct cc_httpd_req *r = &c->req;
    buf_reserve(&r->body, 1);
    r->body.data[r->body.len] = '\0';
    r->method = p->method;
    r->version = (uint8_t)(p->http_major * 10 + p->http_minor);
    r->keep_alive = llhttp_should_keep_alive(p) != 0;
    /* Hand the request over outside the parser: conn_feed() sees HPE_PAUSED. */
    return HPE_PAUSED;
}

/* ---- routing ----------------------------------------------------------------------------- */

/* Matches |path| against |pattern|; fills |params| with offsets relative to |path|. */
static bool route_match(const char *pattern, const char *path, struct param *params,
                        size_t *nparams, size_t *lens)
{
    const char *p = pattern, *s = path;
    size_t np = 0;
    while (*p) {
        if (*p == '{') {
            const char *close = strchr(p, '}');
            const char *end = s;
            while (*end && *end != '/')
                end++;
            if (end == s) return false;
            params[np].name = p + 1;
            params[np].name_len = (size_t)(close - p - 1);
            params[np].value = (uint32_t)(s - path);
            lens[np++] = (size_t)(end - s);
            p = close + 1;
            s = end;
        } else if (*p == '*') {
            params[np].name = "*";
            params[np].name_len = 1;
            params[np].value = (uint32_t)(s - path);
            lens[np++] = strlen(s);
            *nparams = np;
            return true;
        } else {
            if (*p != *s) return false;
            p++;
            s++;
        }
    }
    *nparams = np;
    return *s == '\0';
}

static bool pattern_valid(const char *pat)
{
    size_t np = 0;
    if (pat[0] != '/') return false;
    for (const char *q = pat; *q; q++) {
        if (*q == '{') {
            if (q[-1] != '/') return false;
            const char *e = q + 1;
            while (*e && *e != '}' && *e != '/' && *e != '{' && *e != '*')
                e++;
            if (*e != '}' || e == q + 1) return false;
            if (e[1] != '\0' && e[1] != '/') return false;
            if (++np > MAX_PARAMS) return false;
            q = e;
        } else if (*q == '}') {
            return false;
        } else if (*q == '*') {
            if (q[-1] != '/' || q[1] != '\0' || ++np > MAX_PARAMS) return false;
        }
    }
    return true;
}

int cc_httpd_route(struct cc_httpd *s, const char *method, const char *pattern,
                   cc_httpd_handler_cb *cb, void *arg)
{
    int m = -1;
    if (method) {
        for (size_t i = 0; i < CC_ARRAY_LEN(method_names); i++) {
            if (method_names[i] && strcmp(method_names[i], method) == 0) {
                m = (int)i;
                break;
            }
        }
        if (m < 0) return UV_EINVAL;
    }
    if (!pattern || !cb || !pattern_valid(pattern)) return UV_EINVAL;
    cc_grow((void **)&s->routes, &s->routes_cap, s->nroutes + 1, sizeof(*s->routes));
    struct route *rt = &s->routes[s->nroutes++];
    rt->method = m;
    rt->pattern = cc_xstrdup(pattern);
    rt->cb = cb;
    rt->arg = arg;
    return 0;
}

static bool method_fits(int route_method, unsigned m)
{
    return route_method < 0 || (unsigned)route_method == m ||
           (m == HTTP_HEAD && route_method == HTTP_GET);
}

static void respond_405(struct cc_httpd_req *r, const char *path)
{
    struct cc_httpd *s = r->conn->srv;
    char allow[256] = "";
    size_t len = 0;
    struct param params[MAX_PARAMS];
    size_t lens[MAX_PARAMS], np;
    for (size_t i = 0; i < s->nroutes; i++) {
        const struct route *rt = &s->routes[i];
        if (rt->method < 0 || !route_match(rt->pattern, path, params, &np, lens)) continue;
        const char *name = method_name((unsigned)rt->method);
        if (len + strlen(name) + 3 >= sizeof(allow)) break;
        len += (size_t)snprintf(allow + len, sizeof(allow) - len, "%s%s", len ? ", " : "", name);
        if (rt->method == HTTP_GET)
            len += (size_t)snprintf(allow + len, sizeof(allow) - len, ", HEAD");
    }
    cc_httpd_res_header(r, "Allow", allow);
    static const char body[] = "{\"error\":\"method not allowed\"}";
    cc_httpd_respond(r, 405, "application/json", body, sizeof(body) - 1);
}

static void conn_dispatch(struct cc_httpd_conn *c)
{
    struct cc_httpd *s = c->srv;
    struct cc_httpd_req *r = &c->req;

    s->stats.requests++;
    c->phase = PH_HANDLER;
    r->state = REQ_HANDLING;
    r->head = r->method == HTTP_HEAD;
    r->aborted = false;
    r->abort_cb = NULL;
    r->rhdr.len = 0;
    /* After an Upgrade or CONNECT the bytes that follow are another protocol: we answer in
     * HTTP and close. A closing server lets no connection linger. */
    if (r->upgrade || s->closing) r->keep_alive = false;
    if (!r->keep_alive) c->close_after_write = true;

    const char *path = r->arena.data ? r->arena.data + r->path : "";
    struct param params[MAX_PARAMS];
    size_t lens[MAX_PARAMS], np = 0;
    bool path_known = false;
    for (size_t i = 0; i < s->nroutes; i++) {
        const struct route *rt = &s->routes[i];
        if (!route_match(rt->pattern, path, params, &np, lens)) continue;
        path_known = true;
        if (!method_fits(rt->method, r->method)) continue;
        /* Copy the parameters after the head; |path| may move as the arena grows. */
        size_t path_off = r->path;
        for (size_t k = 0; k < np; k++) {
            /* Reserve first: the copy comes from the arena itself, which may move. */
            size_t at = r->arena.len;
            buf_reserve(&r->arena, lens[k] + 1);
            memcpy(r->arena.data + at, r->arena.data + path_off + params[k].value, lens[k]);
            r->arena.data[at + lens[k]] = '\0';
            r->arena.len += lens[k] + 1;
            r->params[k] = params[k];
            r->params[k].value = (uint32_t)at;
        }
        r->nparams = np;
        rt->cb(r, rt->arg);
        return;
    }
    if (path_known) {
        respond_405(r, path);
        return;
    }
    static const char body[] = "{\"error\":\"not found\"}";
    cc_httpd_respond(r, 404, "application/json", body, sizeof(body) - 1);
}

/* ---- responses ------------------------------------------------------------------------------ */

static const char *srv_date(struct cc_httpd *s)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    uint64_t sec = now_ms(s) / 1000;
    if (s->date[0] == '\0' || sec != s->date_sec) {
        time_t t = time(NULL);
        struct tm tm;
        gmtime_r(&t, &tm);
        snprintf(s->date, sizeof(s->date), "%s, %02d %s %04d %02d:%02d:%02d GMT",
                 days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900,
                 tm.tm_hour, tm.tm_min, tm.tm_sec);
        s->date_sec = sec;
    }
    return s->date;
}

/* Writes the status line and the header block into the connection's output. */
static void res_head(struct cc_httpd_req *r, int status, const char *ctype, bool has_length,
                     uint64_t length)
{
    struct cc_httpd_conn *c = r->conn;
    struct buf *o = &c->out;
    CC_ASSERT(status >= 100 && status <= 999);
    buf_adds(o, "HTTP/1.1 ");
    buf_addu(o, (uint64_t)status);
    buf_adds(o, " ");
    buf_adds(o, status_reason(status));
    buf_adds(o, "\r\nServer: cicada\r\nDate: ");
    buf_adds(o, srv_date(c->srv));
    buf_adds(o, "\r\n");
    if (ctype) {
        buf_adds(o, "Content-Type: ");
        buf_adds(o, ctype);
        buf_adds(o, "\r\n");
    }
    if (has_length) {
        buf_adds(o, "Content-Length: ");
        buf_addu(o, length);
        buf_adds(o, "\r\n");
    }
    if (r->chunked_out) buf_adds(o, "Transfer-Encoding: chunked\r\n");
    buf_add(o, r->rhdr.data, r->rhdr.len);
    if (!r->keep_alive)
        buf_adds(o, "Connection: close\r\n");
    else if (r->version < 11)
        buf_adds(o, "Connection: keep-alive\r\n");
    buf_adds(o, "\r\n");
}

/* The response of |r| is complete: the connection takes the next request. */
static void req_finish(struct cc_httpd_req *r)
{
    struct cc_httpd_conn *c = r->conn;
    r->state = REQ_IDLE;
    r->abort_cb = NULL;
    r->chunked_out = false;
    buf_reset(&r->body);
    buf_reset(&r->rhdr);
    if (r->arena.cap > BUF_KEEP) buf_release(&r->arena);
    c->phase = PH_HEAD;
    c->head_raw = 0;
    c->since_ms = now_ms(c->srv);
    if (c->closing) {
        conn_maybe_free(c);
        return;
    }
    if (!r->keep_alive) c->close_after_write = true;
    if (!c->feeding) {
        conn_flush(c);
        if (c->paused) srv_schedule_resume(c);
    }
}

int cc_httpd_res_header(struct cc_httpd_req *r, const char *name, const char *value)
{
    if (r->state != REQ_HANDLING) return CC_HTTPD_ESTATE;
    if (!name[0]) return UV_EINVAL;
    for (const char *p = name; *p; p++) {
        if (!is_tchar((unsigned char)*p)) return UV_EINVAL;
    }
    if (strpbrk(value, "\r\n")) return UV_EINVAL;
    buf_adds(&r->rhdr, name);
    buf_adds(&r->rhdr, ": ");
    buf_adds(&r->rhdr, value);
    buf_adds(&r->rhdr, "\r\n");
    return 0;
}

int cc_httpd_respond(struct cc_httpd_req *r, int status, const char *content_type, const void *body,
                     size_t len)
{
    CC_ASSERT(r->state != REQ_IDLE);
    if (r->state == REQ_STREAMING) return CC_HTTPD_ESTATE;
    if (r->conn->closing) {
        req_finish(r);
        return CC_HTTPD_ECLOSED;
    }
    /* RFC 9110 6.4.1: no content in 1xx, 204 and 304 responses, nor in answers to HEAD. */
    bool bodyless = status < 200 || status == 204 || status == 304;
    res_head(r, status, content_type, !bodyless, len);
    if (!bodyless && !r->head) buf_add(&r->conn->out, body, len);
    req_finish(r);
    return 0;
}

static int json_sink(const char *p, size_t n, void *arg)
{
    buf_add(arg, p, n);
    return 0;
}

int cc_httpd_respond_json(struct cc_httpd_req *r, int status, const json_t *json)
{
    struct buf *sc = &r->conn->srv->scratch;
    sc->len = 0;
    int rv = json_dump_callback(json, json_sink, sc,
                                JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
    CC_ASSERT(rv == 0);
    rv = cc_httpd_respond(r, status, "application/json", sc->data, sc->len);
    buf_reset(sc);
    return rv;
}

int cc_httpd_stream_start(struct cc_httpd_req *r, int status, const char *content_type)
{
    struct cc_httpd_conn *c = r->conn;
    if (r->state != REQ_HANDLING) return CC_HTTPD_ESTATE;
    if (c->closing) return CC_HTTPD_ECLOSED;
    r->state = REQ_STREAMING;
    if (r->version >= 11) {
        r->chunked_out = true;
    } else {
        /* HTTP/1.0 has no chunked coding: the body ends when the connection does. */
        r->keep_alive = false;
        c->close_after_write = true;
    }
    res_head(r, status, content_type, false, 0);
    if (!c->feeding) conn_flush(c);
    return 0;
}

int cc_httpd_stream_write(struct cc_httpd_req *r, const void *data, size_t len)
{
    struct cc_httpd_conn *c = r->conn;
    if (r->state != REQ_STREAMING) return CC_HTTPD_ESTATE;
    if (c->closing) return CC_HTTPD_ECLOSED;
    if (len == 0 || r->head) return 0;
    if (conn_queued(c) + len + 32 > c->srv->opts.max_output_bytes) {
        conn_close(c);
        return CC_HTTPD_EFULL;
    }
    if (r->chunked_out) {
        buf_addhex(&c->out, len);
        buf_adds(&c->out, "\r\n");
        buf_add(&c->out, data, len);
        buf_adds(&c->out, "\r\n");
    } else {
        buf_add(&c->out, data, len);
    }
    if (!c->feeding) conn_flush(c);
    return 0;
}

int cc_httpd_stream_end(struct cc_httpd_req *r)
{
    struct cc_httpd_conn *c = r->conn;
    if (r->state != REQ_STREAMING) return CC_HTTPD_ESTATE;
    if (c->closing) {
        req_finish(r);
        return CC_HTTPD_ECLOSED;
    }
    if (r->chunked_out && !r->head) buf_adds(&c->out, "0\r\n\r\n");
    req_finish(r);
    return 0;
}

int cc_httpd_sse_start(struct cc_httpd_req *r)
{
    if (r->state != REQ_HANDLING) return CC_HTTPD_ESTATE;
    cc_httpd_res_header(r, "Cache-Control", "no-cache");
    return cc_httpd_stream_start(r, 200, "text/event-stream");
}

int cc_httpd_sse_send(struct cc_httpd_req *r, const char *event, const char *data)
{
    struct buf *sc = &r->conn->srv->scratch;
    if (event && strpbrk(event, "\r\n")) return UV_EINVAL;
    sc->len = 0;
    if (event) {
        buf_adds(sc, "event: ");
        buf_adds(sc, event);
        buf_adds(sc, "\n");
    }
    /* One data line per line of |data| (the SSE spec joins them with newlines again). */
    const char *p = data ? data : "";
    for (;;) {
        size_t n = strcspn(p, "\r\n");
        buf_adds(sc, "data: ");
        buf_add(sc, p, n);
        buf_adds(sc, "\n");
        p += n;
        if (*p == '\0') break;
        if (p[0] == '\r' && p[1] == '\n') p++;
        p++;
    }
    buf_adds(sc, "\n");
    int rv = cc_httpd_stream_write(r, sc->data, sc->len);
    buf_reset(sc);
    return rv;
}

/* ---- writing -------------------------------------------------------------------------------- */

static void conn_write_cb(uv_write_t *w, int status)
{
    struct cc_httpd_conn *c = cc_container_of(w, struct cc_httpd_conn, wreq);
    c->writing = false;
    c->inflight = 0;
    buf_reset(&c->wr);
    if (c->closing) return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    c->since_ms = now_ms(c->srv);
    conn_flush(c);
    if (c->paused && !c->closing) srv_schedule_resume(c);
}

/* TLS: moves the records OpenSSL wrote into the write BIO to the cipher buffer. */
static void conn_tls_drain(struct cc_httpd_conn *c)
{
    BIO *wb = SSL_get_wbio(c->ssl);
    size_t pending;
    while ((pending = BIO_ctrl_pending(wb)) > 0) {
        buf_reserve(&c->cipher, pending);
        int n = BIO_read(wb, c->cipher.data + c->cipher.len, (int)pending);
        if (n <= 0) break;
        c->cipher.len += (size_t)n;
    }
}

/*
 * TLS: encrypts the queued output into records. Before the handshake is done SSL_write wants
 * to read, and the output waits for the next flush. Returns -1 when the session failed.
 */
static int conn_tls_encrypt(struct cc_httpd_conn *c)
{
    if (c->out.len > 0 && !c->tls_shut) {
        size_t written = 0;
        ERR_clear_error();
        /* A memory BIO takes everything: without SSL_MODE_ENABLE_PARTIAL_WRITE, one call
         * writes the whole buffer or nothing. */
        if (SSL_write_ex(c->ssl, c->out.data, c->out.len, &written) == 1) {
            buf_reset(&c->out);
        } else {
            int e = SSL_get_error(c->ssl, 0);
            ERR_clear_error();
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) return -1;
        }
    }
    conn_tls_drain(c);
    return 0;
}

/*
 * Hands the queued output to the socket (with TLS, encrypted first): uv_try_write() first,
 * and what it could not take goes to one uv_write() whose buffer is swapped out of the way,
 * so new output never moves memory the kernel is still to read. Then closes the connection if
 * that was the last response (with TLS, after a close_notify).
 */
static void conn_flush(struct cc_httpd_conn *c)
{
    if (c->closing) return;
    struct buf *w = &c->out;
    if (c->ssl) {
        if (conn_tls_encrypt(c) != 0) {
            conn_close(c);
            return;
        }
        w = &c->cipher;
    }
    if (c->test) {
        buf_add(&c->capture, w->data, w->len);
        w->len = 0;
    } else if (!c->writing && w->len > 0) {
        uv_buf_t b = uv_buf_init(w->data, (unsigned)w->len);
        int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (n == UV_EAGAIN) n = 0;
        if (n < 0) {
            conn_close(c);
            return;
        }
        if ((size_t)n < w->len) {
            struct buf t = c->wr;
            c->wr = *w;
            *w = t;
            w->len = 0;
            c->inflight = c->wr.len - (size_t)n;
            b = uv_buf_init(c->wr.data + n, (unsigned)c->inflight);
            if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, conn_write_cb) < 0) {
                conn_close(c);
                return;
            }
            c->writing = true;
            c->since_ms = now_ms(c->srv);
            return;
        }
        buf_reset(w);
    }
    if (!c->close_after_write || c->req.state != REQ_IDLE || c->out.len || w->len || c->writing)
        return;
    if (c->ssl && !c->tls_shut && SSL_is_init_finished(c->ssl)) {
        /* The last response is written: a close_notify tells the client the data is complete
         * (RFC 8446 6.1), then the TCP shutdown follows once it is written. */
        c->tls_shut = true;
        ERR_clear_error();
        (void)SSL_shutdown(c->ssl);
        ERR_clear_error();
        conn_tls_drain(c);
        if (c->cipher.len) {
            conn_flush(c);
            return;
        }
    }
    conn_shutdown(c);
}

/* ---- the server ----------------------------------------------------------------------------- */

static void srv_connection_cb(uv_stream_t *l, int status)
{
    struct cc_httpd *s = l->data;
    if (status < 0 || s->closing) return;
    bool refuse = s->stats.open >= s->opts.max_connections;
    struct cc_httpd_conn *c = conn_new(s);
    uv_tcp_init(s->loop, &c->tcp);
    s->stats.connections++;
    if (uv_accept(l, (uv_stream_t *)&c->tcp) < 0) {
        conn_close(c);
        return;
    }
    if (refuse) {
        s->stats.refused++;
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    if (s->ssl_ctx) {
        BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
        c->ssl = SSL_new(s->ssl_ctx);
        if (!rb || !wb || !c->ssl) {
            BIO_free(rb);
            BIO_free(wb);
            conn_close(c);
            return;
        }
        /* An empty read BIO means "wait for more", not end of input. */
        BIO_set_mem_eof_return(rb, -1);
        SSL_set_bio(c->ssl, rb, wb);
        SSL_set_accept_state(c->ssl);
    }
    conn_start_reading(c);
}

static uint64_t conn_timeout_ms(const struct cc_httpd_conn *c)
{
    uint64_t t = c->srv->opts.idle_timeout_ms;
    if (c->phase == PH_LINGER && t > LINGER_MS) t = LINGER_MS;
    return t;
}

/* Closes connections that waited too long for the client: a request head that does not come
 * (keep-alive idle, slow clients), a body or a write that stalls, a lingering close. A request
 * with its handler is not timed: the handler decides. */
static void srv_sweep_cb(uv_timer_t *t)
{
    struct cc_httpd *s = t->data;
    uint64_t now = now_ms(s);
    for (struct cc_httpd_conn *c = s->conns; c; c = c->next) {
        if (c->closing || c->test) continue;
        bool waiting = c->phase != PH_HANDLER || c->writing;
        if (waiting && now - c->since_ms >= conn_timeout_ms(c)) {
            s->stats.timeouts++;
            conn_close(c);
        }
    }
}

struct cc_httpd *cc_httpd_new(uv_loop_t *loop, const struct cc_httpd_opts *opts)
{
    struct cc_httpd *s = cc_xcalloc(1, sizeof(*s));
    s->loop = loop;
    if (opts)
        s->opts = *opts;
    else
        cc_httpd_opts_defaults(&s->opts);
    if (s->opts.idle_timeout_ms == 0) s->opts.idle_timeout_ms = 1;
    s->port = -1;
    s->rbuf = cc_xmalloc(RBUF_SIZE);

    llhttp_settings_init(&s->settings);
    s->settings.on_message_begin = on_message_begin;
    s->settings.on_url = on_url;
    s->settings.on_url_complete = on_url_complete;
    s->settings.on_header_field = on_header_field;
    s->settings.on_header_field_complete = on_header_field_complete;
    s->settings.on_header_value = on_header_value;
    s->settings.on_header_value_complete = on_header_value_complete;
    s->settings.on_headers_complete = on_headers_complete;
    s->settings.on_body = on_body;
    s->settings.on_message_complete = on_message_complete;

    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    uv_timer_init(loop, &s->sweep);
    s->sweep.data = s;
    uint64_t every = s->opts.idle_timeout_ms / 4;
    every = every < 10 ? 10 : every > 1000 ? 1000 : every;
    uv_timer_start(&s->sweep, srv_sweep_cb, every, every);
    uv_unref((uv_handle_t *)&s->sweep); /* connections and the listener keep the loop alive */
    uv_idle_init(loop, &s->resume_idle);
    s->resume_idle.data = s;
    s->handles = 2;

    /* A write to a socket the peer closed must fail with EPIPE, not end the program. */
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
        sa.sa_handler = SIG_IGN;
        sigaction(SIGPIPE, &sa, NULL);
    }
    return s;
}

int cc_httpd_listen(struct cc_httpd *s, const char *host, int port, unsigned flags)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    int rv;

    if (s->listen_used || s->closing) return CC_HTTPD_ESTATE;
    if (port < 0 || port > 65535) return UV_EINVAL;
    if (strcmp(host, "localhost") == 0) host = "127.0.0.1";
    memset(&ss, 0, sizeof(ss));
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) == 0)
        sslen = sizeof(struct sockaddr_in);
    else if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) == 0)
        sslen = sizeof(struct sockaddr_in6);
    else
        return UV_EINVAL;

    /* Our own socket rather than uv_tcp_bind(): libuv 1.44 cannot set SO_REUSEPORT. */
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) return -errno;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1) goto fail_errno;
    if ((flags & CC_HTTPD_REUSEPORT) &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == -1)
        goto fail_errno;
    if (bind(fd, (struct sockaddr *)&ss, sslen) == -1) goto fail_errno;
    if (listen(fd, 511) == -1) goto fail_errno;
    if (getsockname(fd, (struct sockaddr *)&ss, &sslen) == -1) goto fail_errno;
    rv = uv_tcp_open(&s->listener, fd);
    if (rv < 0) {
        close(fd);
        return rv;
    }
    s->listen_used = true;
    rv = uv_listen((uv_stream_t *)&s->listener, 511, srv_connection_cb);
    if (rv < 0) return rv;
    s->port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                            : ((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;

fail_errno:
    rv = -errno;
    close(fd);
    return rv;
}

/* The reason OpenSSL gave last, and the queue cleared. */
static char *tls_error(const char *what, const char *file)
{
    char reason[256] = "unknown error";
    unsigned long e = ERR_peek_last_error();
    if (e) ERR_error_string_n(e, reason, sizeof(reason));
    ERR_clear_error();
    size_t n = strlen(what) + (file ? strlen(file) : 0) + strlen(reason) + 8;
    char *msg = cc_xmalloc(n);
    snprintf(msg, n, "%s%s%s: %s", what, file ? " " : "", file ? file : "", reason);
    return msg;
}

int cc_httpd_tls(struct cc_httpd *s, const char *cert_file, const char *key_file, char **err)
{
    if (s->listen_used || s->closing || s->ssl_ctx) {
        *err = cc_xstrdup("TLS must be set up once, before the server listens");
        return CC_HTTPD_ESTATE;
    }
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        *err = tls_error("cannot create a TLS context", NULL);
        return CC_HTTPD_ETLS;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* Client-initiated renegotiation costs the server a handshake per request of an attacker. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"cicada", 6);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        *err = tls_error("cannot load the certificate", cert_file);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        *err = tls_error("cannot load the private key", key_file);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        *err = tls_error("the private key does not match the certificate", key_file);
        goto fail;
    }
    s->ssl_ctx = ctx;
    return 0;

fail:
    SSL_CTX_free(ctx);
    return CC_HTTPD_ETLS;
}

int cc_httpd_port(const struct cc_httpd *s)
{
    return s->port;
}

uv_loop_t *cc_httpd_loop(const struct cc_httpd *s)
{
    return s->loop;
}

void cc_httpd_get_stats(const struct cc_httpd *s, struct cc_httpd_stats *out)
{
    *out = s->stats;
}

static void srv_final_cb(uv_handle_t *h)
{
    struct cc_httpd *s = h->data;
    cc_httpd_close_cb *cb = s->close_cb;
    void *arg = s->close_arg;
    for (size_t i = 0; i < s->nroutes; i++)
        cc_free(s->routes[i].pattern);
    cc_free(s->routes);
    cc_free(s->rbuf);
    buf_release(&s->scratch);
    SSL_CTX_free(s->ssl_ctx);
    cc_free(s);
    if (cb) cb(arg);
}

/* The idle handle is closed last, so the user's callback always comes from the loop. */
static void srv_maybe_done(struct cc_httpd *s)
{
    if (!s->closing || s->handles > 0 || s->nconns > 0 || s->finalizing) return;
    s->finalizing = true;
    uv_close((uv_handle_t *)&s->resume_idle, srv_final_cb);
}

static void srv_handle_closed(uv_handle_t *h)
{
    struct cc_httpd *s = h->data;
    s->handles--;
    srv_maybe_done(s);
}

void cc_httpd_close(struct cc_httpd *s, cc_httpd_close_cb *cb, void *arg)
{
    CC_ASSERT(!s->closing);
    s->closing = true;
    s->close_cb = cb;
    s->close_arg = arg;
    uv_close((uv_handle_t *)&s->listener, srv_handle_closed);
    uv_close((uv_handle_t *)&s->sweep, srv_handle_closed);
    for (struct cc_httpd_conn *c = s->conns; c; c = c->next)
        conn_close(c);
}

/* ---- request accessors ---------------------------------------------------------------------- */

struct cc_httpd *cc_httpd_req_server(const struct cc_httpd_req *r)
{
    return r->conn->srv;
}

const char *cc_httpd_req_method(const struct cc_httpd_req *r)
{
    return method_name(r->method);
}

const char *cc_httpd_req_path(const struct cc_httpd_req *r)
{
    return r->arena.data ? r->arena.data + r->path : "";
}

const char *cc_httpd_req_query(const struct cc_httpd_req *r)
{
    return r->arena.data ? r->arena.data + r->query : "";
}

int cc_httpd_req_version(const struct cc_httpd_req *r)
{
    return r->version;
}

const char *cc_httpd_req_header(const struct cc_httpd_req *r, const char *name)
{
    return req_header_n(r, name);
}

size_t cc_httpd_req_header_count(const struct cc_httpd_req *r)
{
    return r->nhdrs;
}

bool cc_httpd_req_header_at(const struct cc_httpd_req *r, size_t i, const char **name,
                            const char **value)
{
    if (i >= r->nhdrs) return false;
    *name = r->arena.data + r->hdrs[i].name;
    *value = r->arena.data + r->hdrs[i].value;
    return true;
}

const char *cc_httpd_req_body(const struct cc_httpd_req *r, size_t *len)
{
    if (len) *len = r->body.len;
    return r->body.data ? r->body.data : "";
}

const char *cc_httpd_req_param(const struct cc_httpd_req *r, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < r->nparams; i++) {
        if (r->params[i].name_len == n && memcmp(r->params[i].name, name, n) == 0)
            return r->arena.data + r->params[i].value;
    }
    return NULL;
}

bool cc_httpd_req_keep_alive(const struct cc_httpd_req *r)
{
    return r->keep_alive;
}

void cc_httpd_req_on_abort(struct cc_httpd_req *r, cc_httpd_abort_cb *cb, void *arg)
{
    r->abort_cb = cb;
    r->abort_arg = arg;
}

bool cc_httpd_req_aborted(const struct cc_httpd_req *r)
{
    return r->aborted;
}

/* ---- query strings and forms ---------------------------------------------------------------- */

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

int cc_httpd_url_decode(const char *in, size_t len, bool plus_is_space, char *out, size_t size)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int ch = (unsigned char)in[i];
        if (ch == '%') {
            if (len - i < 3) return UV_EINVAL;
            int h = hexval((unsigned char)in[i + 1]), l = hexval((unsigned char)in[i + 2]);
            if (h < 0 || l < 0) return UV_EINVAL;
            ch = h * 16 + l;
            i += 2;
        } else if (ch == '+' && plus_is_space) {
            ch = ' ';
        }
        if (o + 1 >= size) return UV_ENOBUFS;
        out[o++] = (char)ch;
    }
    if (size == 0) return UV_ENOBUFS;
    out[o] = '\0';
    return (int)o;
}

int cc_httpd_form_get(const char *form, size_t len, const char *key, char *out, size_t size)
{
    size_t klen = strlen(key);
    const char *p = form, *end = form + len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pair_end = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pair_end - p));
        const char *name_end = eq ? eq : pair_end;
        /* Keys are compared decoded, so "per%5Fpage" finds "per_page". */
        char name[128];
        int nlen = cc_httpd_url_decode(p, (size_t)(name_end - p), true, name, sizeof(name));
        if (nlen >= 0 && (size_t)nlen == klen && memcmp(name, key, klen) == 0) {
            if (!eq) {
                if (size == 0) return UV_ENOBUFS;
                out[0] = '\0';
                return 0;
            }
            return cc_httpd_url_decode(eq + 1, (size_t)(pair_end - eq - 1), true, out, size);
        }
        p = pair_end + 1;
    }
    return UV_ENOENT;
}

int cc_httpd_req_query_get(const struct cc_httpd_req *r, const char *key, char *out, size_t size)
{
    const char *q = cc_httpd_req_query(r);
    return cc_httpd_form_get(q, strlen(q), key, out, size);
}

/* ---- connections without a socket ---------------------------------------------------------- */

struct cc_httpd_conn *cc_httpd_test_conn_new(struct cc_httpd *s)
{
    struct cc_httpd_conn *c = conn_new(s);
    c->test = true;
    return c;
}

bool cc_httpd_test_conn_feed(struct cc_httpd_conn *c, const void *data, size_t len)
{
    if (c->closing) return false;
    if (c->paused)
        buf_add(&c->stash, data, len);
    else if (!c->close_after_write)
        conn_feed(c, data, len);
    return !c->closing;
}

const char *cc_httpd_test_conn_output(const struct cc_httpd_conn *c, size_t *len)
{
    *len = c->capture.len;
    return c->capture.data ? c->capture.data : "";
}

void cc_httpd_test_conn_free(struct cc_httpd_conn *c)
{
    c->test_released = true;
    conn_close(c);
    conn_run_abort(c);
    conn_maybe_free(c);
}
