/* SPDX-License-Identifier: MIT */
/*
 * h2.c: HTTP/2 on a connection (RFC 9113) with nghttp2's sans-I/O session. One connection per
 * pool carries every concurrent request of its user as a stream, up to the server's
 * SETTINGS_MAX_CONCURRENT_STREAMS; the rest wait in the pool's queue.
 *
 * Bytes read go into nghttp2_session_mem_recv(); what the session has to send is drained with
 * nghttp2_session_mem_send() into one buffer and written at once, after every action. Nothing
 * completes inside nghttp2: a stream that ends moves to the connection's done list, and
 * settle() completes those afterwards, where resuming a user (who may start a request on this
 * very connection, or close it) is safe. One timer per connection serves the response
 * timeouts of all its streams: each stream notes its last sign of life, and the timer, armed
 * for the earliest deadline, rescans the streams when it fires.
 *
 * The request comes as the HTTP/1.1 bytes that the binding serialised (see http_lua.c); h2
 * reads the request line and headers back into a header list (validated when they were
 * written), lower-cases the names in place and leaves out what HTTP/2 forbids.
 */
#define _GNU_SOURCE /* memmem */
#include "proto/http/http.h"

#include <stdarg.h>
#include <stdio.h>
#include <strings.h>

#define H2_STREAM_WINDOW   (1 << 20)   /* per stream: bodies flow without waiting for updates */
#define H2_CONN_WINDOW     (16 << 20)  /* the connection's, for many streams at once */
#define H2_INITIAL_STREAMS 100         /* before the server's SETTINGS (RFC 9113 6.5.2: >= 100) */
#define H2_OUT_CHUNK       (64 * 1024) /* frames gathered per write */

static void settle(struct http_conn *c);

static const char *who(const struct http_conn *c)
{
    return c->pool ? c->pool->authority : "the server";
}

/* The standard reason phrase of |status| (HTTP/2 sends none; RFC 9110 15), or "". */
static const char *reason_phrase(int status)
{
    static const struct {
        int status;
        const char *text;
    } phrases[] = {
        {200, "OK"},
        {201, "Created"},
        {202, "Accepted"},
        {203, "Non-Authoritative Information"},
        {204, "No Content"},
        {205, "Reset Content"},
        {206, "Partial Content"},
        {207, "Multi-Status"},
        {300, "Multiple Choices"},
        {301, "Moved Permanently"},
        {302, "Found"},
        {303, "See Other"},
        {304, "Not Modified"},
        {307, "Temporary Redirect"},
        {308, "Permanent Redirect"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {402, "Payment Required"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {406, "Not Acceptable"},
        {407, "Proxy Authentication Required"},
        {408, "Request Timeout"},
        {409, "Conflict"},
        {410, "Gone"},
        {411, "Length Required"},
        {412, "Precondition Failed"},
        {413, "Content Too Large"},
        {414, "URI Too Long"},
        {415, "Unsupported Media Type"},
        {416, "Range Not Satisfiable"},
        {417, "Expectation Failed"},
        {421, "Misdirected Request"},
        {422, "Unprocessable Content"},
        {425, "Too Early"},
        {426, "Upgrade Required"},
        {428, "Precondition Required"},
        {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"},
        {451, "Unavailable For Legal Reasons"},
        {500, "Internal Server Error"},
        {501, "Not Implemented"},
        {502, "Bad Gateway"},
        {503, "Service Unavailable"},
        {504, "Gateway Timeout"},
        {505, "HTTP Version Not Supported"},
        {507, "Insufficient Storage"},
        {511, "Network Authentication Required"},
    };
    for (size_t i = 0; i < CC_ARRAY_LEN(phrases); i++)
        if (phrases[i].status == status) return phrases[i].text;
    return "";
}

/* ---- streams ---------------------------------------------------------------------------- */

static void stream_link(struct http_conn *c, struct http_exchange *ex)
{
    ex->prev = NULL;
    ex->next = c->streams;
    if (c->streams) c->streams->prev = ex;
    c->streams = ex;
    c->nstreams++;
}

static void stream_unlink(struct http_conn *c, struct http_exchange *ex)
{
    if (ex->prev)
        ex->prev->next = ex->next;
    else
        c->streams = ex->next;
    if (ex->next) ex->next->prev = ex->prev;
    ex->next = ex->prev = NULL;
    c->nstreams--;
}

/* Puts |ex| (on no list) on the done list, where settle() completes it. */
static void to_done(struct http_conn *c, struct http_exchange *ex)
{
    ex->state = HX_ENDING;
    ex->conn = c;
    ex->next = NULL;
    if (c->done_tail)
        c->done_tail->next = ex;
    else
        c->done = ex;
    c->done_tail = ex;
}

/* Queues |ex| for an on_event call from settle(). */
static void notify(struct http_conn *c, struct http_exchange *ex)
{
    if (ex->notify_queued || !ex->on_event) return;
    ex->notify_queued = true;
    ex->notify_next = NULL;
    if (c->notify_tail)
        c->notify_tail->notify_next = ex;
    else
        c->notify = ex;
    c->notify_tail = ex;
}

static void notify_unlink(struct http_conn *c, struct http_exchange *ex)
{
    struct http_exchange *prev = NULL;
    for (struct http_exchange *q = c->notify; q; prev = q, q = q->notify_next)
        if (q == ex) {
            if (prev)
                prev->notify_next = ex->notify_next;
            else
                c->notify = ex->notify_next;
            if (c->notify_tail == ex) c->notify_tail = prev;
            break;
        }
    ex->notify_queued = false;
    ex->notify_next = NULL;
}

/* Gives each queued stream's owner its events. An owner may resume users, who may send on
 * their streams or cancel them (either list may change under us: hence one at a time). */
static void run_notify(struct http_conn *c)
{
    struct http_exchange *ex;
    while ((ex = c->notify)) {
        c->notify = ex->notify_next;
        if (!c->notify) c->notify_tail = NULL;
        ex->notify_queued = false;
        ex->notify_next = NULL;
        ex->on_event(ex);
    }
}

/* |ex|'s stream is over for us. A nonzero |code| with |msg| fails it, unless it has a failure
 * of its own already (a body over its cap, say), which stands. */
static void stream_end(struct http_conn *c, struct http_exchange *ex, int code, const char *msg)
{
    stream_unlink(c, ex);
    if (code && !ex->error) {
        ex->error = code;
        cc_free(ex->errmsg);
        ex->errmsg = cc_xstrdup(msg);
    }
    to_done(c, ex);
}

/* We give up on a stream (its own failure is set): the server is told to stop sending it, and
 * whatever still comes for it is ignored. */
static void stream_abort(struct http_conn *c, struct http_exchange *ex, uint32_t h2_code)
{
    nghttp2_session_set_stream_user_data(c->h2, ex->stream_id, NULL);
    nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, ex->stream_id, h2_code);
    stream_end(c, ex, CC_EPROTO, "the HTTP/2 stream was aborted");
}

/* Ends every stream: a request that got no byte on a connection that had served others is
 * tried again once when |stale| (the server closed an idle connection as we used it, as h1
 * does); the others fail with |msg|, or "|msg| before the response was complete / without a
 * response" when |detail|. */
static void fail_all(struct http_conn *c, int code, const char *msg, bool stale, bool detail)
{
    char buf[600];
    while (c->streams) {
        struct http_exchange *ex = c->streams;
        if (stale && !ex->got_bytes && ex->idempotent && !ex->retried && c->served > 0 && c->pool) {
            ex->retried = true;
            ex->h2_retry = true;
            stream_end(c, ex, 0, NULL);
            continue;
        }
        if (detail)
            snprintf(buf, sizeof(buf), "%s %s", msg,
                     ex->got_bytes ? "before the response was complete" : "without a response");
        stream_end(c, ex, code, detail ? buf : msg);
    }
}

static void set_err(struct http_conn *c, const char *fmt, ...) CC_PRINTF(2, 3);
static void set_err(struct http_conn *c, const char *fmt, ...)
{
    if (c->h2_err) return; /* the first reason is the real one */
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    c->h2_err = cc_xstrdup(buf);
}

/* The session cannot go on: every stream fails, the connection closes. */
static void session_failed(struct http_conn *c, const char *msg)
{
    set_err(c, "%s", msg);
    fail_all(c, CC_EPROTO, c->h2_err, false, false);
    http_conn_release(c, false);
}

/* ---- nghttp2's callbacks: they only record, and move ended streams to the done list ----- */

static struct http_exchange *stream_ex(nghttp2_session *s, int32_t id)
{
    return id > 0 ? nghttp2_session_get_stream_user_data(s, id) : NULL;
}

static void progress(struct http_conn *c, struct http_exchange *ex)
{
    if (!ex->got_bytes) {
        ex->got_bytes = true;
        ex->t_first_byte = c->read_ns;
    }
    ex->progress_ns = c->read_ns;
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    struct http_conn *c = ud;
    struct http_exchange *ex = stream_ex(s, f->hd.stream_id);
    if (!ex || f->hd.type != NGHTTP2_HEADERS) return 0;
    progress(c, ex);
    if (!ex->h2_final) { /* a response head; a final one after an interim (1xx) replaces it */
        ex->status = 0;
        http_headers_clear(ex);
    }
    return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                     const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
    (void)flags;
    struct http_conn *c = ud;
    struct http_exchange *ex = f->hd.type == NGHTTP2_HEADERS ? stream_ex(s, f->hd.stream_id) : 0;
    if (!ex) return 0;
    if (nl > 0 && name[0] == ':') { /* nghttp2 checked: only :status, of three digits */
        if (nl == 7 && memcmp(name, ":status", 7) == 0 && vl == 3 && !ex->h2_final)
            ex->status = (value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0');
        return 0;
    }
    if (ex->headers.len + nl + vl + 2 > HTTP_MAX_HEADER_BYTES) {
        char msg[300];
        snprintf(msg, sizeof(msg), "response from %s: header block too large", who(c));
        ex->error = CC_ETOOBIG;
        cc_free(ex->errmsg);
        ex->errmsg = cc_xstrdup(msg);
        stream_abort(c, ex, NGHTTP2_CANCEL);
        return 0;
    }
    http_buf_append(&ex->headers, (const char *)name, nl);
    http_buf_append(&ex->headers, "", 1);
    http_note_header(ex, (const char *)name, nl, ex->headers.len);
    http_buf_append(&ex->headers, (const char *)value, vl);
    http_buf_append(&ex->headers, "", 1);
    ex->nheaders++;
    return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *ud)
{
    (void)flags;
    struct http_conn *c = ud;
    struct http_exchange *ex = stream_ex(s, id);
    if (!ex) return 0;
    progress(c, ex);
    if (ex->resp_events) { /* raw, for the owner to take from |body| */
        ex->wire_bytes += len;
        ex->body_bytes += len;
        if (ex->body.len + len > ex->max_body) {
            char msg[200];
            snprintf(msg, sizeof(msg), "more than %llu bytes of response not yet read",
                     (unsigned long long)ex->max_body);
            ex->error = CC_ETOOBIG;
            cc_free(ex->errmsg);
            ex->errmsg = cc_xstrdup(msg);
            stream_abort(c, ex, NGHTTP2_CANCEL);
            return 0;
        }
        http_buf_append(&ex->body, (const char *)data, len);
        notify(c, ex);
        return 0;
    }
    if (http_body_feed(ex, (const char *)data, len) != 0) stream_abort(c, ex, NGHTTP2_CANCEL);
    return 0;
}

static void goaway_received(struct http_conn *c, const nghttp2_goaway *g)
{
    c->goaway = true; /* streams up to last_stream_id finish; nghttp2 refuses the others */
    c->goaway_last_id = g->last_stream_id;
    if (c->pool && c->pool->h2 == c) c->pool->h2 = NULL;
    if (g->error_code != NGHTTP2_NO_ERROR) {
        int dl = (int)CC_MIN(g->opaque_data_len, 200);
        set_err(c, "%s ended the HTTP/2 connection: %s%s%.*s%s", who(c),
                nghttp2_http2_strerror(g->error_code), dl ? " (" : "", dl,
                (const char *)g->opaque_data, dl ? ")" : "");
    }
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    struct http_conn *c = ud;
    struct http_exchange *ex;
    switch (f->hd.type) {
    case NGHTTP2_SETTINGS:
        if (!(f->hd.flags & NGHTTP2_FLAG_ACK))
            c->max_streams =
                nghttp2_session_get_remote_settings(s, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
        return 0;
    case NGHTTP2_GOAWAY:
        goaway_received(c, &f->goaway);
        return 0;
    case NGHTTP2_RST_STREAM:
        if ((ex = stream_ex(s, f->hd.stream_id))) ex->h2_reset = true;
        return 0;
    case NGHTTP2_HEADERS:
    case NGHTTP2_DATA:
        break;
    default:
        return 0;
    }
    if (!(ex = stream_ex(s, f->hd.stream_id))) return 0;
    if (f->hd.type == NGHTTP2_HEADERS && !ex->h2_final && ex->status >= 200) {
        ex->h2_final = true;
        /* a head that ends the stream is all trailers (gRPC's "trailers-only" response) */
        ex->nhead = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) ? 0 : ex->nheaders;
        ex->reason.len = 0;
        http_buf_puts(&ex->reason, reason_phrase(ex->status));
        if (ex->resp_events) {
            notify(c, ex);
        } else if (http_body_begin(ex, http_header_at(ex, ex->encoding_at)) != 0) {
            stream_abort(c, ex, NGHTTP2_CANCEL);
            return 0;
        }
    }
    if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) {
        ex->h2_end = true;
        /* the response is whole while our request is still open (a gRPC server that answers
         * a stream before its client ends it): no more of the request is wanted, and the
         * stream would otherwise never close (RFC 9113 8.1) */
        if (ex->req_open && !nghttp2_session_get_stream_local_close(s, f->hd.stream_id))
            nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_NO_ERROR);
    }
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
    struct http_conn *c = ud;
    struct http_exchange *ex = stream_ex(s, id);
    if (!ex) return 0; /* one we gave up on */
    if (ex->h2_end && !ex->error) {
        /* the response is whole; a reset after it (RFC 9113 8.1) changes nothing */
        if (http_body_end(ex) == 0) c->served++;
        stream_end(c, ex, 0, NULL);
        return 0;
    }
    /* refused before any processing (RFC 9113 8.7): safe to send again, whatever the method.
     * Once; but as often as it takes when a GOAWAY refused it after the server had taken
     * earlier streams (a server that ends connections every N requests): every round then
     * gets some requests through. */
    bool progress = c->goaway && c->goaway_last_id > 0 && id > c->goaway_last_id;
    if (ex->h2_reset) ex->rst_code = code;
    if (code == NGHTTP2_REFUSED_STREAM && !ex->got_bytes && (progress || !ex->retried) &&
        !ex->body_dropped && c->pool) {
        ex->retried = true;
        ex->h2_retry = true;
        stream_end(c, ex, 0, NULL);
        return 0;
    }
    char msg[600];
    if (ex->h2_reset)
        snprintf(msg, sizeof(msg), "%s reset the HTTP/2 stream: %s (0x%x)", who(c),
                 nghttp2_http2_strerror(code), code);
    else if (c->h2_err)
        snprintf(msg, sizeof(msg), "%s", c->h2_err);
    else if (code == NGHTTP2_NO_ERROR)
        snprintf(msg, sizeof(msg), "%s ended the HTTP/2 stream before the response was complete",
                 who(c));
    else if (code == NGHTTP2_REFUSED_STREAM)
        snprintf(msg, sizeof(msg), "%s refused the request (HTTP/2 REFUSED_STREAM)", who(c));
    else /* nghttp2 reset it: the response broke the protocol */
        snprintf(msg, sizeof(msg), "malformed response from %s: HTTP/2 stream error %s (0x%x)",
                 who(c), nghttp2_http2_strerror(code), code);
    stream_end(c, ex, CC_EPROTO, msg);
    return 0;
}

/* Notes why the session ends when nghttp2 ends it (a GOAWAY with an error code). */
static int on_frame_send(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    (void)s;
    struct http_conn *c = ud;
    if (f->hd.type == NGHTTP2_GOAWAY && f->goaway.error_code != NGHTTP2_NO_ERROR) {
        int dl = (int)CC_MIN(f->goaway.opaque_data_len, 200);
        set_err(c, "malformed response from %s: HTTP/2 connection error %s%s%.*s%s", who(c),
                nghttp2_http2_strerror(f->goaway.error_code), dl ? " (" : "", dl,
                (const char *)f->goaway.opaque_data, dl ? ")" : "");
    }
    return 0;
}

/* The request body, from |req| after its head, as flow control lets it go. An open request
 * (req_open) defers when it has sent all it has, and its sent bytes are let go once all are
 * out, so that a long stream of messages holds no more than what is waiting. */
static ssize_t read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *ud)
{
    (void)src;
    struct http_conn *c = ud;
    struct http_exchange *ex = stream_ex(s, id);
    if (!ex) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* cancelled meanwhile */
    size_t off = ex->req_head + ex->req_sent, left = ex->req.len - off;
    if (left == 0 && ex->req_open) {
        ex->h2_deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    size_t n = CC_MIN(left, len);
    if (n) memcpy(buf, ex->req.p + off, n);
    ex->req_sent += n;
    if (n == left && !ex->req_open) *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (ex->req_open && n == left) {
        ex->req.len = ex->req_head;
        ex->req_sent = 0;
        ex->body_dropped = true;
    }
    if (ex->req_open || ex->drain_events) ex->progress_ns = cc_now_ns(); /* sending is alive */
    if (ex->drain_events) notify(c, ex);
    return (ssize_t)n;
}

/* ---- the vm's shared parts -------------------------------------------------------------- */

static void vm_init(struct http_vm *hv)
{
    if (hv->h2_cbs) return;
    /* nghttp2 fails these only when out of memory, which cicada treats as fatal */
    CC_ASSERT(nghttp2_session_callbacks_new(&hv->h2_cbs) == 0);
    nghttp2_session_callbacks *cb = hv->h2_cbs;
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    CC_ASSERT(nghttp2_option_new(&hv->h2_opt) == 0);
    /* until the server's SETTINGS say otherwise, open no more than this; nghttp2 holds the
     * rest back itself if the server then allows fewer than we had opened */
    nghttp2_option_set_peer_max_concurrent_streams(hv->h2_opt, H2_INITIAL_STREAMS);
}

void h2_vm_free(struct http_vm *hv)
{
    if (hv->h2_cbs) nghttp2_session_callbacks_del(hv->h2_cbs);
    if (hv->h2_opt) nghttp2_option_del(hv->h2_opt);
    hv->h2_cbs = NULL;
    hv->h2_opt = NULL;
    cc_free(hv->h2_nv);
    hv->h2_nv = NULL;
    http_buf_free(&hv->h2_out);
}

/* ---- sending ---------------------------------------------------------------------------- */

/* Writes what the session has to send, gathered into few writes. Stops while the socket
 * pushes back (on_drain resumes). Returns 0, or a fatal nghttp2 error. */
static int flush(struct http_conn *c)
{
    struct http_buf *out = &c->hv->h2_out;
    int rv = 0;
    out->len = 0;
    c->in_ng = true;
    while (!cc_conn_write_blocked(&c->conn)) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(c->h2, &data);
        if (n <= 0) {
            rv = (int)n;
            break;
        }
        if (out->len && out->len + (size_t)n > H2_OUT_CHUNK) {
            cc_conn_write(&c->conn, out->p, out->len);
            out->len = 0;
        }
        if ((size_t)n >= H2_OUT_CHUNK) /* |data| lasts until the next call; big: write it now */
            cc_conn_write(&c->conn, (const char *)data, (size_t)n);
        else
            http_buf_append(out, (const char *)data, (size_t)n);
    }
    c->in_ng = false;
    /* a failed write ends the connection, which on_end then reports */
    if (out->len) cc_conn_write(&c->conn, out->p, out->len);
    out->len = 0;
    return rv;
}

static void on_timer(uv_timer_t *t);

/* Makes the timer fire by |due| (monotonic ns; 1: at once, from the loop). */
static void arm(struct http_conn *c, uint64_t due)
{
    if (c->closing || (c->timer_due_ns && c->timer_due_ns <= due)) return;
    c->timer_due_ns = due;
    uint64_t now = cc_now_ns();
    uint64_t ms = due > now ? (due - now + 999999) / 1000000 : 0;
    uv_timer_start(&c->timer, on_timer, ms, 0);
}

static bool is_hop_header(const char *n, size_t l)
{
    switch (l) {
    case 4:
        return memcmp(n, "host", 4) == 0; /* becomes :authority */
    case 7:
        return memcmp(n, "upgrade", 7) == 0;
    case 10:
        return memcmp(n, "connection", 10) == 0 || memcmp(n, "keep-alive", 10) == 0;
    case 16:
        return memcmp(n, "proxy-connection", 16) == 0;
    case 17:
        return memcmp(n, "transfer-encoding", 17) == 0;
    default:
        return false;
    }
}

static nghttp2_nv nv_of(const char *name, size_t nl, const char *value, size_t vl)
{
    return (nghttp2_nv){(uint8_t *)name, (uint8_t *)value, nl, vl, NGHTTP2_NV_FLAG_NONE};
}

size_t h2_request_headers(struct http_vm *hv, const struct http_pool *p, struct http_exchange *ex)
{
    char *req = ex->req.p;
    size_t head = ex->req_head;
    if (!head) { /* find the blank line: values hold no CR or LF */
        const char *e = memmem(req, ex->req.len, "\r\n\r\n", 4);
        head = e ? (size_t)(e - req) + 4 : ex->req.len;
        ex->req_head = (uint32_t)head;
    }
    /* "METHOD target HTTP/1.1\r\n", then "Name: value\r\n" lines, then "\r\n" */
    char *sp1 = memchr(req, ' ', head);
    char *sp2 = sp1 ? memchr(sp1 + 1, ' ', head - (size_t)(sp1 + 1 - req)) : NULL;
    char *eol = sp2 ? memchr(sp2, '\n', head - (size_t)(sp2 - req)) : NULL;
    if (!eol) return 0;
    size_t lines = 4;
    for (const char *q = eol + 1; (q = memchr(q, '\n', head - (size_t)(q - req))); q++)
        lines++;
    if (lines > hv->h2_nv_cap)
        cc_grow((void **)&hv->h2_nv, &hv->h2_nv_cap, lines, sizeof(nghttp2_nv));
    nghttp2_nv *nv = hv->h2_nv;
    size_t n = 0;
    nv[n++] = nv_of(":method", 7, req, (size_t)(sp1 - req));
    nv[n++] = p->tls ? nv_of(":scheme", 7, "https", 5) : nv_of(":scheme", 7, "http", 4);
    size_t authority = n;
    nv[n++] = nv_of(":authority", 10, p->authority, strlen(p->authority));
    nv[n++] = nv_of(":path", 5, sp1 + 1, (size_t)(sp2 - sp1 - 1));
    for (char *line = eol + 1; line < req + head;) {
        char *end = memchr(line, '\n', head - (size_t)(line - req));
        if (!end) break;
        char *colon = memchr(line, ':', (size_t)(end - line));
        char *vend = end > line && end[-1] == '\r' ? end - 1 : end;
        if (colon && colon > line) {
            size_t nl = (size_t)(colon - line);
            for (size_t i = 0; i < nl; i++) /* HTTP/2 names are lower case (RFC 9113 8.2.1) */
                if (line[i] >= 'A' && line[i] <= 'Z') line[i] = (char)(line[i] + 32);
            char *v = colon + 1;
            while (v < vend && (*v == ' ' || *v == '\t'))
                v++;
            while (vend > v && (vend[-1] == ' ' || vend[-1] == '\t'))
                vend--;
            size_t vl = (size_t)(vend - v);
            if (nl == 4 && memcmp(line, "host", 4) == 0)
                nv[authority] = nv_of(":authority", 10, v, vl);
            else if (is_hop_header(line, nl))
                ; /* connection-specific: not in HTTP/2 (RFC 9113 8.2.2) */
            else if (nl == 2 && memcmp(line, "te", 2) == 0 &&
                     !(vl == 8 && !strncasecmp(v, "trailers", 8)))
                ; /* TE may only say "trailers" */
            else
                nv[n++] = nv_of(line, nl, v, vl);
        }
        line = end + 1;
    }
    return n;
}

/* Opens a stream for |ex| on |c|. Never completes |ex| itself: a failure goes to the done
 * list. */
static void submit(struct http_conn *c, struct http_exchange *ex)
{
    struct http_pool *p = c->pool;
    ex->status = 0;
    ex->error = 0;
    ex->got_bytes = false;
    http_headers_clear(ex);
    ex->body.len = ex->reason.len = 0;
    ex->body_bytes = ex->wire_bytes = 0;
    ex->http2 = true;
    ex->h2_final = ex->h2_end = ex->h2_reset = false;
    ex->h2_deferred = false;
    ex->nhead = 0;
    ex->rst_code = 0;
    ex->req_sent = 0;
    size_t n = p ? h2_request_headers(c->hv, p, ex) : 0;
    if (n == 0) {
        to_done(c, ex);
        ex->error = p ? CC_EPROTO : CC_ECLOSED;
        cc_free(ex->errmsg);
        ex->errmsg = cc_xstrdup(p ? "the request line cannot be read back for HTTP/2"
                                  : "the HTTP client was closed");
        return;
    }
    size_t head = ex->req_head;
    nghttp2_data_provider body = {.read_callback = read_body};
    bool has_body = ex->req.len > head || ex->req_open;
    int32_t id = nghttp2_submit_request(c->h2, NULL, c->hv->h2_nv, n, has_body ? &body : NULL, ex);
    if (id < 0) {
        if (id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE) {
            /* this connection has used up its stream ids: the request goes on a new one */
            c->goaway = true;
            if (p->h2 == c) p->h2 = NULL;
            ex->h2_retry = true;
            to_done(c, ex);
            return;
        }
        to_done(c, ex);
        ex->error = CC_EPROTO;
        cc_free(ex->errmsg);
        ex->errmsg = cc_xstrdup(nghttp2_strerror(id));
        return;
    }
    ex->stream_id = id;
    ex->conn = c;
    ex->state = HX_SENT;
    ex->progress_ns = cc_now_ns();
    stream_link(c, ex);
    uint64_t due = ex->timeout_ms ? ex->progress_ns + ex->timeout_ms * 1000000ull : 0;
    if (ex->deadline_ns && (!due || ex->deadline_ns < due)) due = ex->deadline_ns;
    if (due) arm(c, due);
}

/* Gives free streams to the pool's queue. */
static void pull(struct http_conn *c)
{
    struct http_pool *p = c->pool;
    if (!p || p->h2 != c) return;
    while (p->queue && c->nstreams < c->max_streams && !c->goaway) {
        struct http_exchange *ex = p->queue;
        p->queue = ex->next;
        if (!p->queue) p->queue_tail = NULL;
        p->queued--;
        ex->next = NULL;
        submit(c, ex);
    }
}

/* Completes (or starts again) the exchanges whose streams ended. Users run here. */
static void drain(struct http_conn *c)
{
    struct http_exchange *ex;
    while ((ex = c->done)) {
        c->done = ex->next;
        if (!c->done) c->done_tail = NULL;
        ex->next = NULL;
        ex->conn = NULL;
        struct http_pool *p = ex->pool;
        if (ex->h2_retry) {
            ex->h2_retry = false;
            if (p && p->s->hv && !p->s->hv->closing) {
                http_exchange_start(p, ex);
                continue;
            }
            ex->error = CC_ECLOSED;
            cc_free(ex->errmsg);
            ex->errmsg = cc_xstrdup("the HTTP client was closed");
        }
        if (ex->error)
            http_exchange_fail(ex, ex->error, "%s", ex->errmsg ? ex->errmsg : "HTTP/2 failure");
        else
            http_exchange_complete(ex);
    }
}

/*
 * After every action: give free streams to the queue, send, complete what ended, and close
 * the connection when it is done for. Completing resumes users, who may start requests here
 * (they are sent by the next round) or close the connection: hence the loop. A connection
 * that stopped taking streams (GOAWAY, silence) hands its pool's queue to a new one.
 */
static void settle(struct http_conn *c)
{
    if (c->in_ng || c->settling) return;
    c->settling = true;
    for (;;) {
        struct http_pool *p = c->pool;
        if (c->h2 && !c->closing) {
            pull(c);
            int rv = flush(c);
            char msg[300];
            if (rv != 0) {
                snprintf(msg, sizeof(msg), "HTTP/2 session with %s failed: %s", who(c),
                         nghttp2_strerror(rv));
                session_failed(c, msg);
            } else if (!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2)) {
                snprintf(msg, sizeof(msg), "%s ended the HTTP/2 connection", who(c));
                session_failed(c, msg);
            } else if (c->goaway && c->nstreams == 0) {
                http_conn_release(c, false);
            }
        }
        if (c->notify) {
            run_notify(c);
        } else if (c->done) {
            drain(c);
        } else if (p && p->queue && !p->h2 && c->is_h2 && !c->closing && p->s->hv &&
                   !p->s->hv->closing) {
            http_pool_dispatch(p);
        } else {
            break;
        }
    }
    c->settling = false;
}

/* ---- the connection --------------------------------------------------------------------- */

void h2_conn_start(struct http_conn *c)
{
    struct http_vm *hv = c->hv;
    vm_init(hv);
    CC_ASSERT(nghttp2_session_client_new2(&c->h2, hv->h2_cbs, c, hv->h2_opt) == 0);
    c->is_h2 = true;
    c->max_streams = H2_INITIAL_STREAMS;
    c->read_ns = cc_now_ns();
    const nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, HTTP_MAX_HEADER_BYTES},
    };
    /* these only queue frames; they fail on bad arguments or memory, neither of which is ours */
    nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, CC_ARRAY_LEN(iv));
    nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, H2_CONN_WINDOW);
    struct http_exchange *ex = c->ex;
    c->ex = NULL;
    if (ex) submit(c, ex);
    settle(c);
}

void h2_on_read(struct http_conn *c, const char *data, size_t len)
{
    if (!c->h2) return;
    c->read_ns = cc_now_ns();
    c->in_ng = true;
    ssize_t n = nghttp2_session_mem_recv(c->h2, (const uint8_t *)data, len);
    c->in_ng = false;
    if (n < 0) {
        char msg[300];
        snprintf(msg, sizeof(msg), "malformed response from %s: HTTP/2 %s", who(c),
                 nghttp2_strerror((int)n));
        session_failed(c, msg);
    }
    settle(c);
}

void h2_on_end(struct http_conn *c, int status)
{
    char msg[512];
    if (c->h2_err) {
        fail_all(c, CC_EPROTO, c->h2_err, false, false);
    } else if (status == 0) {
        snprintf(msg, sizeof(msg), "%s closed the connection", who(c));
        fail_all(c, CC_EPROTO, msg, true, true);
    } else {
        snprintf(msg, sizeof(msg), "%s", cc_conn_error(&c->conn));
        fail_all(c, status, msg, true, false);
    }
    http_conn_release(c, false); /* conn_close() then settles */
}

void h2_on_drain(struct http_conn *c)
{
    settle(c);
}

void h2_dispatch(struct http_conn *c)
{
    settle(c); /* pulls the queue; a settle already running does it in its next round */
}

void h2_cancel(struct http_conn *c, struct http_exchange *ex)
{
    if (ex->notify_queued) notify_unlink(c, ex);
    ex->conn = NULL;
    if (ex->state == HX_ENDING) { /* ended, not yet completed: just leave the done list */
        struct http_exchange *prev = NULL;
        for (struct http_exchange *q = c->done; q; prev = q, q = q->next)
            if (q == ex) {
                if (prev)
                    prev->next = ex->next;
                else
                    c->done = ex->next;
                if (c->done_tail == ex) c->done_tail = prev;
                break;
            }
        ex->next = NULL;
        return;
    }
    if (c->h2) {
        nghttp2_session_set_stream_user_data(c->h2, ex->stream_id, NULL);
        nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, ex->stream_id, NGHTTP2_CANCEL);
    }
    stream_unlink(c, ex);
    /* Send the reset now; but no user may run inside a cancel (the fiber being killed is
     * still marked waiting), so what else follows, a queued request or a close, happens in
     * the timer's settle, from the loop. */
    if (c->h2 && !c->closing && !c->settling) {
        if (flush(c) != 0 || c->done || c->goaway || (c->pool && c->pool->queue)) arm(c, 1);
    }
}

void h2_send_more(struct http_conn *c, struct http_exchange *ex)
{
    if (!c->h2 || c->closing) return;
    if (ex->h2_deferred) {
        ex->h2_deferred = false;
        nghttp2_session_resume_data(c->h2, ex->stream_id);
    }
    settle(c); /* a settle already running (we are inside one) sends in its next round */
}

void h2_conn_closed(struct http_conn *c)
{
    CC_ASSERT(!c->in_ng);
    fail_all(c, CC_ECLOSED, c->h2_err ? c->h2_err : "the connection was closed", false, false);
    if (c->h2) nghttp2_session_del(c->h2);
    c->h2 = NULL;
    settle(c);
}

/* Fails the streams that have shown no sign of life for their timeout. */
static void on_timer(uv_timer_t *t)
{
    struct http_conn *c = cc_container_of(t, struct http_conn, timer);
    c->timer_due_ns = 0;
    if (!c->h2 || c->closing) return;
    uint64_t now = cc_now_ns(), next = 0;
    bool silent = false;
    for (struct http_exchange *ex = c->streams, *nx; ex; ex = nx) {
        nx = ex->next;
        if (ex->deadline_ns && ex->deadline_ns <= now) {
            nghttp2_session_set_stream_user_data(c->h2, ex->stream_id, NULL);
            nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, ex->stream_id, NGHTTP2_CANCEL);
            stream_end(c, ex, UV_ETIMEDOUT, "Deadline Exceeded");
            continue;
        }
        if (ex->deadline_ns && (!next || ex->deadline_ns < next)) next = ex->deadline_ns;
        if (!ex->timeout_ms) continue;
        uint64_t span = ex->timeout_ms * 1000000ull, due = ex->progress_ns + span;
        if (due > now) {
            if (!next || due < next) next = due;
            continue;
        }
        char msg[128];
        snprintf(msg, sizeof(msg), "read timed out: no response within %g s",
                 ex->timeout_ms / 1000.0);
        nghttp2_session_set_stream_user_data(c->h2, ex->stream_id, NULL);
        nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, ex->stream_id, NGHTTP2_CANCEL);
        stream_end(c, ex, UV_ETIMEDOUT, msg);
        if (now - c->read_ns >= span) silent = true;
    }
    if (silent) {
        /* nothing at all came for that long: the connection itself may be dead, so new
         * requests go to a new one, and this one closes once its streams are over */
        c->goaway = true;
        if (c->pool && c->pool->h2 == c) c->pool->h2 = NULL;
    }
    if (next) arm(c, next);
    settle(c);
}
