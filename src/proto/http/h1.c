/* SPDX-License-Identifier: MIT */
/*
 * h1.c: HTTP/1.1 on a connection: one request at a time (no pipelining), the response parsed
 * by llhttp as it arrives, keep-alive when both sides allow it, and one retry of an idempotent
 * request that a reused connection lost before any byte of its response came (the server had
 * closed it meanwhile, as browsers retry).
 */
#include "proto/http/http.h"

#include <strings.h>

static struct http_exchange *ex_of(llhttp_t *p)
{
    return ((struct http_conn *)p->data)->ex;
}

static int too_big(struct http_exchange *ex)
{
    ex->error = CC_ETOOBIG;
    return -1;
}

static int on_status(llhttp_t *p, const char *at, size_t len)
{
    struct http_exchange *ex = ex_of(p);
    if (ex->reason.len + len > 1024) return too_big(ex);
    http_buf_append(&ex->reason, at, len);
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct http_exchange *ex = ex_of(p);
    if (ex->headers.len + len > HTTP_MAX_HEADER_BYTES) return too_big(ex);
    http_buf_append(&ex->headers, at, len);
    return 0;
}

static int on_header_field_complete(llhttp_t *p)
{
    struct http_exchange *ex = ex_of(p);
    http_buf_append(&ex->headers, "", 1);
    http_note_header(ex, ex->headers.p + ex->name_at, ex->headers.len - ex->name_at - 1,
                     ex->headers.len);
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    return on_header_field(p, at, len);
}

static int on_header_value_complete(llhttp_t *p)
{
    struct http_exchange *ex = ex_of(p);
    http_buf_append(&ex->headers, "", 1);
    ex->nheaders++;
    ex->name_at = (uint32_t)ex->headers.len;
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    struct http_exchange *ex = ex_of(p);
    ex->status = p->status_code;
    if (ex->status >= 100 && ex->status < 200) return 0; /* informational: the real one follows */
    if (ex->resp_events) { /* the owner takes the head, then the body raw, as they come */
        ex->h1_event = true;
        return ex->head ? 1 : 0;
    }
    if (http_body_begin(ex, http_header_at(ex, ex->encoding_at)) != 0) return -1;
    return ex->head ? 1 : 0; /* a response to HEAD has no body, whatever it declares */
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    struct http_exchange *ex = ex_of(p);
    if (ex->resp_events) {
        ex->wire_bytes += len;
        ex->body_bytes += len;
        if (ex->body.len + len > ex->max_body) {
            char msg[200];
            snprintf(msg, sizeof(msg), "more than %llu bytes of response not yet read",
                     (unsigned long long)ex->max_body);
            ex->error = CC_ETOOBIG;
            cc_free(ex->errmsg);
            ex->errmsg = cc_xstrdup(msg);
            return -1;
        }
        http_buf_append(&ex->body, at, len);
        ex->h1_event = true;
        return 0;
    }
    return http_body_feed(ex, at, len) == 0 ? 0 : -1;
}

static int on_message_complete(llhttp_t *p)
{
    struct http_exchange *ex = ex_of(p);
    if (ex->status >= 100 && ex->status < 200 && ex->status != 101) {
        /* forget the interim response; the parser goes on to the final one */
        http_headers_clear(ex);
        ex->reason.len = 0;
        ex->status = 0;
        return 0;
    }
    return HPE_PAUSED; /* finished outside the parser, in h1_on_read */
}

static const llhttp_settings_t settings = {
    .on_status = on_status,
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void h1_conn_init(struct http_conn *c)
{
    llhttp_init(&c->parser, HTTP_RESPONSE, &settings);
    c->parser.data = c;
}

void h1_send(struct http_conn *c, struct http_exchange *ex)
{
    ex->state = HX_SENT;
    ex->conn = c;
    ex->got_bytes = false;
    ex->status = 0;
    http_headers_clear(ex);
    ex->body.len = ex->reason.len = 0;
    ex->body_bytes = ex->wire_bytes = 0;
    ex->http2 = false;
    ex->h1_event = false;
    llhttp_reset(&c->parser);
    /* a failed write ends the connection, which h1_on_end then reports */
    cc_conn_write(&c->conn, ex->req.p, ex->req.len);
    http_conn_arm_timer(c, ex->timeout_ms);
}

static void complete(struct http_conn *c, struct http_exchange *ex, bool reusable)
{
    if (http_body_end(ex) != 0) {
        reusable = false;
        c->ex = NULL;
        ex->conn = NULL;
        http_conn_release(c, false);
        http_exchange_fail(ex, ex->error, "%s", ex->errmsg ? ex->errmsg : "bad response body");
        return;
    }
    c->served++;
    c->ex = NULL;
    ex->conn = NULL;
    http_conn_release(c, reusable);
    http_exchange_complete(ex);
}

static void fail_parse(struct http_conn *c, struct http_exchange *ex)
{
    int code = ex->error ? ex->error : CC_EPROTO;
    const char *why = ex->error == CC_ETOOBIG ? "too large" : llhttp_get_error_reason(&c->parser);
    char msg[512];
    if (ex->errmsg)
        snprintf(msg, sizeof(msg), "%s", ex->errmsg);
    else if (code == CC_ETOOBIG)
        snprintf(msg, sizeof(msg), "response from %s: header block or status line %s",
                 c->pool ? c->pool->authority : "server", why);
    else
        snprintf(msg, sizeof(msg), "malformed response from %s: %s",
                 c->pool ? c->pool->authority : "server", why ? why : "parse error");
    c->ex = NULL;
    ex->conn = NULL;
    http_conn_release(c, false);
    http_exchange_fail(ex, code, "%s", msg);
}

void h1_on_read(struct http_conn *c, const char *data, size_t len)
{
    struct http_exchange *ex = c->ex;
    if (!ex) { /* bytes nobody asked for: the connection cannot be trusted any more */
        http_conn_release(c, false);
        return;
    }
    if (!ex->got_bytes) {
        ex->got_bytes = true;
        ex->t_first_byte = cc_now_ns();
    }
    http_conn_touch(c); /* the timeout runs between bytes */
    llhttp_errno_t rc = llhttp_execute(&c->parser, data, len);
    if (ex->h1_event) {
        /* outside llhttp: the owner takes what came; it ends the exchange by setting an error */
        ex->h1_event = false;
        if (!ex->error) ex->on_event(ex);
        if (ex->error) {
            fail_parse(c, ex);
            return;
        }
    }
    if (rc == HPE_PAUSED) {
        /* the response is whole; bytes after it were not asked for */
        const char *pos = llhttp_get_error_pos(&c->parser);
        bool extra = pos && pos < data + len;
        complete(c, ex, !extra && llhttp_should_keep_alive(&c->parser));
        return;
    }
    if (rc != HPE_OK) fail_parse(c, ex);
}

void h1_on_end(struct http_conn *c, int status)
{
    struct http_exchange *ex = c->ex;
    if (!ex) { /* an idle connection the server closed */
        http_conn_release(c, false);
        return;
    }
    if (status == 0 && ex->got_bytes) {
        /* a body delimited by the end of the connection ends here */
        llhttp_errno_t rc = llhttp_finish(&c->parser);
        if (rc == HPE_PAUSED ||
            (rc == HPE_OK && ex->status >= 200 && llhttp_message_needs_eof(&c->parser))) {
            complete(c, ex, false);
            return;
        }
    }
    struct http_pool *p = c->pool;
    if (!ex->got_bytes && c->served > 0 && ex->idempotent && !ex->retried && p) {
        /* a keep-alive connection the server had closed: once more on a fresh one */
        ex->retried = true;
        c->ex = NULL;
        ex->conn = NULL;
        http_conn_release(c, false);
        http_exchange_start(p, ex);
        return;
    }
    char msg[512];
    const char *who = p ? p->authority : "the server";
    if (status == 0)
        snprintf(msg, sizeof(msg), "%s closed the connection %s", who,
                 ex->got_bytes ? "before the response was complete" : "without a response");
    else
        snprintf(msg, sizeof(msg), "%s", cc_conn_error(&c->conn));
    c->ex = NULL;
    ex->conn = NULL;
    http_conn_release(c, false);
    http_exchange_fail(ex, status ? status : CC_EPROTO, "%s", msg);
}
