/* SPDX-License-Identifier: MIT */
/*
 * ws.c: WebSocket client connections: resolve, connect, the upgrade handshake, then wslay's
 * event API over the transport. See ws.h for the contract.
 *
 * wslay reads through a callback that copies from the bytes of the current on_read and says
 * "would block" once they are used up, so each read is consumed whole. Data messages are not
 * buffered by wslay (no_buffering): their frames are gathered in the connection's own reused
 * buffer, and control frames, which wslay still buffers, are rare. Frames wslay writes go to
 * one reused buffer and reach the socket as one write per batch.
 */
#include "proto/ws/ws.h"
#include "proto/ws/handshake.h"
#include "core/log.h"
#include "core/resolve.h"
#include "core/strbuf.h"
#include "core/tls.h"

#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <wslay/wslay.h>

/* Per vm: the resolver, shared TLS contexts, every live connection. */
struct ws_vm {
    struct cc_vm *vm;
    struct cc_resolver resolver;
    struct cc_tls_ctx *tls_verify, *tls_insecure;
    struct cc_ws *conns;
    uint64_t rng[2]; /* masking keys (xorshift128+); they need no cryptographic strength */
    bool closing;
    bool resolver_closed;
};

enum timer_use { T_NONE, T_CONNECT, T_OWNER, T_CLOSE, T_DEFER };

struct cc_ws {
    struct cc_conn conn;
    uv_timer_t timer;
    struct ws_vm *wv;
    const struct cc_ws_cbs *cbs;
    void *data;
    void **backref;
    struct cc_ws *prev, *next; /* in wv->conns */
    struct cc_resolve_req *resolve_req;
    struct cc_tls_ctx *tls; /* a context of its own (client certificate, CA file), or NULL */
    wslay_event_context_ptr ctx;
    struct cc_ws_hs *hs; /* during the handshake */

    /* the request, kept until it is sent */
    char *host, *authority, *target, *protocols, *headers;
    char *ca_file, *cert_file, *key_file;
    uint16_t port;
    bool use_tls;
    bool insecure;

    uint8_t state; /* enum cc_ws_state */
    uint8_t timer_use;
    uint8_t handles; /* handles whose close callback is pending or to come */
    bool released;
    bool conn_started; /* cc_conn_connect() succeeded: its on_close will come */
    bool in_recv;      /* inside wslay_event_recv(): sends wait, release waits */
    bool release_pending;
    bool close_initiated;
    bool in_ctrl; /* the frame being read is a control frame (wslay buffers those) */
    uint32_t connect_timeout_ms;
    uint64_t max_message;

    const char *in; /* bytes of the current read, for wslay's recv callback */
    size_t in_len;
    struct cc_strbuf out; /* frames wslay wrote, flushed as one write */
    char *msg;            /* the data message being gathered */
    size_t msg_len, msg_cap;

    uint16_t close_code; /* the server's close frame's code; 0 until it came */
    char close_reason[124];
    char protocol[128];
    int err;
    char errmsg[512];
};

/* ---- the vm's state --------------------------------------------------------------------- */

static void maybe_free_vm(struct ws_vm *wv)
{
    if (!wv->closing || wv->conns || !wv->resolver_closed) return;
    cc_tls_ctx_unref(wv->tls_verify);
    cc_tls_ctx_unref(wv->tls_insecure);
    cc_free(wv);
}

static void resolver_closed(struct cc_resolver *r)
{
    struct ws_vm *wv = cc_container_of(r, struct ws_vm, resolver);
    wv->resolver_closed = true;
    maybe_free_vm(wv);
}

static void vm_close(struct cc_vm *vm, void *state)
{
    struct ws_vm *wv = state;
    wv->closing = true;
    for (struct cc_ws *ws = wv->conns, *next; ws; ws = next) {
        next = ws->next;
        cc_ws_release(ws);
    }
    cc_resolver_close(&wv->resolver, resolver_closed);
    cc_vm_ext_set(vm, CC_EXT_WS, NULL, NULL);
}

static struct ws_vm *ws_vm_get(struct cc_vm *vm)
{
    struct ws_vm *wv = cc_vm_ext_get(vm, CC_EXT_WS);
    if (wv) return wv;
    wv = cc_xcalloc(1, sizeof(*wv));
    wv->vm = vm;
    cc_resolver_init(&wv->resolver, vm->loop, 0);
    if (RAND_bytes((unsigned char *)wv->rng, sizeof(wv->rng)) != 1 || !(wv->rng[0] | wv->rng[1])) {
        wv->rng[0] = cc_now_ns() | 1;
        wv->rng[1] = (uint64_t)(uintptr_t)wv;
    }
    cc_vm_ext_set(vm, CC_EXT_WS, wv, vm_close);
    return wv;
}

static uint32_t next_mask(struct ws_vm *wv)
{
    uint64_t s1 = wv->rng[0];
    const uint64_t s0 = wv->rng[1];
    wv->rng[0] = s0;
    s1 ^= s1 << 23;
    wv->rng[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    return (uint32_t)((wv->rng[1] + s0) >> 16);
}

/* ---- life and death --------------------------------------------------------------------- */

static void free_ws(struct cc_ws *ws)
{
    struct ws_vm *wv = ws->wv;
    if (ws->prev)
        ws->prev->next = ws->next;
    else
        wv->conns = ws->next;
    if (ws->next) ws->next->prev = ws->prev;
    if (ws->backref) *ws->backref = NULL;
    if (ws->ctx) wslay_event_context_free(ws->ctx);
    if (ws->hs) {
        cc_ws_hs_release(ws->hs);
        cc_free(ws->hs);
    }
    cc_tls_ctx_unref(ws->tls);
    cc_free(ws->host);
    cc_free(ws->authority);
    cc_free(ws->target);
    cc_free(ws->protocols);
    cc_free(ws->headers);
    cc_free(ws->ca_file);
    cc_free(ws->cert_file);
    cc_free(ws->key_file);
    cc_strbuf_release(&ws->out);
    cc_free(ws->msg);
    cc_free(ws);
    maybe_free_vm(wv);
}

static void handle_closed(struct cc_ws *ws)
{
    if (--ws->handles == 0) free_ws(ws);
}

static void conn_closed(struct cc_conn *c)
{
    handle_closed(cc_container_of(c, struct cc_ws, conn));
}

static void timer_closed(uv_handle_t *h)
{
    handle_closed(cc_container_of((uv_timer_t *)h, struct cc_ws, timer));
}

static void set_error(struct cc_ws *ws, int code, const char *fmt, ...) CC_PRINTF(3, 4);
static void set_error(struct cc_ws *ws, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ws->errmsg, sizeof(ws->errmsg), fmt, ap);
    va_end(ap);
    ws->err = code;
}

static void stop_timer(struct cc_ws *ws)
{
    ws->timer_use = T_NONE;
    uv_timer_stop(&ws->timer);
}

/* The connection is over: close the transport (its on_close frees, with the timer's). */
static void finish(struct cc_ws *ws)
{
    ws->state = CC_WS_ENDED;
    stop_timer(ws);
    if (ws->resolve_req) {
        cc_resolve_cancel(ws->resolve_req);
        ws->resolve_req = NULL;
    }
    if (ws->conn_started) cc_conn_close(&ws->conn);
}

/* The handshake failed: on_open reports it. */
static void fail_open(struct cc_ws *ws, int code, const char *fmt, ...) CC_PRINTF(3, 4);
static void fail_open(struct cc_ws *ws, int code, const char *fmt, ...)
{
    if (ws->state == CC_WS_ENDED) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ws->errmsg, sizeof(ws->errmsg), fmt, ap);
    va_end(ap);
    ws->err = code;
    finish(ws);
    if (!ws->released) ws->cbs->on_open(ws, code);
}

/* An open connection ended: 0 after the closing handshake, else ws->err says why. */
static void end(struct cc_ws *ws, int status)
{
    if (ws->state == CC_WS_ENDED) return;
    finish(ws);
    if (!ws->released) ws->cbs->on_end(ws, status);
}

static void do_release(struct cc_ws *ws);

/* ---- wslay's callbacks ------------------------------------------------------------------ */

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *ud)
{
    (void)flags;
    struct cc_ws *ws = ud;
    if (ws->in_len == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = len < ws->in_len ? len : ws->in_len;
    memcpy(buf, ws->in, n);
    ws->in += n;
    ws->in_len -= n;
    return (ssize_t)n;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *ud)
{
    (void)ctx;
    (void)flags;
    struct cc_ws *ws = ud;
    cc_strbuf_add(&ws->out, data, len);
    return (ssize_t)len;
}

static int genmask_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *ud)
{
    (void)ctx;
    struct cc_ws *ws = ud;
    while (len) {
        uint32_t m = next_mask(ws->wv);
        size_t n = len < 4 ? len : 4;
        memcpy(buf, &m, n);
        buf += n;
        len -= n;
    }
    return 0;
}

static void frame_start_cb(wslay_event_context_ptr ctx,
                           const struct wslay_event_on_frame_recv_start_arg *arg, void *ud)
{
    (void)ctx;
    struct cc_ws *ws = ud;
    ws->in_ctrl = wslay_is_ctrl_frame(arg->opcode);
    if (!ws->in_ctrl && arg->opcode != WSLAY_CONTINUATION_FRAME) ws->msg_len = 0;
}

static void frame_chunk_cb(wslay_event_context_ptr ctx,
                           const struct wslay_event_on_frame_recv_chunk_arg *arg, void *ud)
{
    (void)ctx;
    struct cc_ws *ws = ud;
    if (ws->in_ctrl || arg->data_length == 0) return;
    /* wslay refuses a message past max_message before its frame's data comes */
    if (ws->msg_len + arg->data_length > ws->msg_cap)
        cc_grow((void **)&ws->msg, &ws->msg_cap, ws->msg_len + arg->data_length, 1);
    memcpy(ws->msg + ws->msg_len, arg->data, arg->data_length);
    ws->msg_len += arg->data_length;
}

static void msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                   void *ud)
{
    (void)ctx;
    struct cc_ws *ws = ud;
    switch (arg->opcode) {
    case WSLAY_TEXT_FRAME:
    case WSLAY_BINARY_FRAME:
        if (!ws->released && ws->state <= CC_WS_CLOSING)
            ws->cbs->on_message(ws, arg->opcode == WSLAY_BINARY_FRAME, ws->msg, ws->msg_len);
        ws->msg_len = 0;
        if (ws->msg_cap > (1u << 20)) { /* one large message does not pin its buffer */
            cc_free(ws->msg);
            ws->msg = NULL;
            ws->msg_cap = 0;
        }
        break;
    case WSLAY_PONG:
        if (!ws->released && ws->cbs->on_pong)
            ws->cbs->on_pong(ws, (const char *)arg->msg, arg->msg_length);
        break;
    case WSLAY_CONNECTION_CLOSE:
        /* wslay queues our answering close frame itself */
        ws->close_code = arg->status_code ? arg->status_code : 1005;
        if (arg->msg_length > 2) {
            size_t n = arg->msg_length - 2;
            if (n > sizeof(ws->close_reason) - 1) n = sizeof(ws->close_reason) - 1;
            memcpy(ws->close_reason, arg->msg + 2, n);
            ws->close_reason[n] = '\0';
        }
        break;
    default: /* pings are answered by wslay */
        break;
    }
}

static const struct wslay_event_callbacks wslay_cbs = {
    .recv_callback = recv_cb,
    .send_callback = send_cb,
    .genmask_callback = genmask_cb,
    .on_frame_recv_start_callback = frame_start_cb,
    .on_frame_recv_chunk_callback = frame_chunk_cb,
    .on_msg_recv_callback = msg_cb,
};

/* ---- moving bytes ----------------------------------------------------------------------- */

/* Lets wslay write what is queued, and hands it to the transport in one write. */
static void flush(struct cc_ws *ws)
{
    if (ws->in_recv || !ws->ctx || ws->state == CC_WS_ENDED) return;
    wslay_event_send(ws->ctx);
    if (ws->out.len) {
        /* a failed write ends the transport, which on_end then reports */
        cc_conn_write(&ws->conn, ws->out.data, ws->out.len);
        ws->out.len = 0;
        if (ws->out.cap > (256u << 10)) cc_strbuf_release(&ws->out);
    }
}

static const char *close_code_text(uint16_t code)
{
    switch (code) {
    case 1002:
        return "the server broke the WebSocket protocol (a masked or malformed frame)";
    case 1007:
        return "the server sent a text message that is not valid UTF-8";
    case 1009:
        return "the server sent a message larger than max_message";
    default:
        return "the connection failed";
    }
}

/* After wslay read or wrote: has the connection ended? */
static void check_done(struct cc_ws *ws)
{
    if (ws->state == CC_WS_ENDED) return;
    /* wslay stops reading once a close frame came or it found an error (and queued a close
     * frame saying so), and stops writing once a close frame went out */
    if (wslay_event_get_read_enabled(ws->ctx) || wslay_event_get_write_enabled(ws->ctx)) return;
    if (wslay_event_get_close_received(ws->ctx)) {
        end(ws, 0);
        return;
    }
    uint16_t sent = wslay_event_get_status_code_sent(ws->ctx);
    if (ws->close_initiated) {
        end(ws, 0);
        return;
    }
    set_error(ws, sent == 1009 ? CC_ETOOBIG : CC_EPROTO, "%s (close code %u sent)",
              close_code_text(sent), sent);
    end(ws, ws->err);
}

/* Feeds |len| bytes of frames to wslay. */
static void ws_recv(struct cc_ws *ws, const char *data, size_t len)
{
    ws->in = data;
    ws->in_len = len;
    ws->in_recv = true;
    int rc = wslay_event_recv(ws->ctx);
    ws->in_recv = false;
    ws->in = NULL;
    ws->in_len = 0;
    if (ws->release_pending) { /* released from a callback */
        ws->release_pending = false;
        do_release(ws);
        return;
    }
    if (ws->state == CC_WS_ENDED) return;
    if (rc != 0) {
        set_error(ws, CC_EPROTO, "WebSocket: reading frames failed (wslay error %d)", rc);
        end(ws, ws->err);
        return;
    }
    flush(ws);
    check_done(ws);
}

/* ---- the transport's callbacks ---------------------------------------------------------- */

static void on_connect(struct cc_conn *c, int status)
{
    struct cc_ws *ws = cc_container_of(c, struct cc_ws, conn);
    if (status != 0) {
        fail_open(ws, status, "%s", cc_conn_error(c));
        return;
    }
    char key[CC_WS_KEY_LEN + 1];
    cc_ws_key_new(key);
    ws->hs = cc_xmalloc(sizeof(*ws->hs));
    cc_ws_hs_init(ws->hs, key, ws->protocols);
    struct cc_strbuf req = {0};
    cc_ws_hs_request(&req, ws->target, ws->authority, key, ws->protocols, ws->headers);
    ws->state = CC_WS_HANDSHAKE;
    cc_conn_write(c, req.data, req.len);
    cc_strbuf_release(&req);
}

static void handshake_done(struct cc_ws *ws, const char *rest, size_t len)
{
    snprintf(ws->protocol, sizeof(ws->protocol), "%s", ws->hs->protocol);
    cc_ws_hs_release(ws->hs);
    cc_free(ws->hs);
    ws->hs = NULL;
    CC_ASSERT(wslay_event_context_client_init(&ws->ctx, &wslay_cbs, ws) == 0);
    wslay_event_config_set_no_buffering(ws->ctx, 1);
    wslay_event_config_set_max_recv_msg_length(ws->ctx, ws->max_message);
    ws->state = CC_WS_OPEN;
    stop_timer(ws);
    if (!ws->released) ws->cbs->on_open(ws, 0);
    if (ws->released || ws->state == CC_WS_ENDED) return;
    flush(ws); /* what on_open sent */
    if (len) ws_recv(ws, rest, len);
}

static void on_read(struct cc_conn *c, const char *data, size_t len)
{
    struct cc_ws *ws = cc_container_of(c, struct cc_ws, conn);
    if (ws->state == CC_WS_HANDSHAKE) {
        size_t used = 0;
        int rc = cc_ws_hs_feed(ws->hs, data, len, &used);
        if (rc == CC_WS_HS_MORE) return;
        if (rc < 0) {
            fail_open(ws, rc, "%s (from %s)", ws->hs->errmsg, ws->authority);
            return;
        }
        handshake_done(ws, data + used, len - used);
        return;
    }
    if (ws->state == CC_WS_OPEN || ws->state == CC_WS_CLOSING) ws_recv(ws, data, len);
}

static void on_end(struct cc_conn *c, int status)
{
    struct cc_ws *ws = cc_container_of(c, struct cc_ws, conn);
    if (ws->state == CC_WS_HANDSHAKE) {
        if (status == 0)
            fail_open(ws, CC_EPROTO,
                      "WebSocket handshake: %s closed the connection before answering",
                      ws->authority);
        else
            fail_open(ws, status, "%s", c->err ? cc_conn_error(c) : cc_strerror(status));
        return;
    }
    if (ws->state == CC_WS_CLOSING || ws->close_code) {
        end(ws, 0); /* the server ended the TCP connection after the closing handshake */
        return;
    }
    if (status == 0)
        set_error(ws, CC_ECLOSED, "%s closed the connection without a close frame (1006)",
                  ws->authority);
    else
        set_error(ws, status, "%s", c->err ? cc_conn_error(c) : cc_strerror(status));
    end(ws, ws->err);
}

static void on_drain(struct cc_conn *c)
{
    struct cc_ws *ws = cc_container_of(c, struct cc_ws, conn);
    if (!ws->released && ws->state <= CC_WS_CLOSING && ws->cbs->on_drain) ws->cbs->on_drain(ws);
}

static const struct cc_conn_cbs conn_cbs = {
    .on_connect = on_connect,
    .on_read = on_read,
    .on_end = on_end,
    .on_drain = on_drain,
    .on_close = conn_closed,
};

/* ---- timers ----------------------------------------------------------------------------- */

static void timer_cb(uv_timer_t *t)
{
    struct cc_ws *ws = cc_container_of(t, struct cc_ws, timer);
    uint8_t use = ws->timer_use;
    ws->timer_use = T_NONE;
    switch (use) {
    case T_CONNECT:
    case T_DEFER:
        if (use == T_CONNECT)
            fail_open(ws, UV_ETIMEDOUT,
                      "WebSocket connect to %s timed out after %g s (connect, TLS and handshake)",
                      ws->authority, ws->connect_timeout_ms / 1000.0);
        else
            fail_open(ws, ws->err, "%s", ws->errmsg);
        break;
    case T_CLOSE:
        set_error(ws, UV_ETIMEDOUT, "the server did not answer the close frame within %g s",
                  CC_WS_CLOSE_TIMEOUT_MS / 1000.0);
        end(ws, ws->err);
        break;
    case T_OWNER:
        if (!ws->released && ws->cbs->on_timer) ws->cbs->on_timer(ws);
        break;
    default:
        break;
    }
}

/* ---- opening ---------------------------------------------------------------------------- */

static const char *const alpn_h1[] = {"http/1.1", NULL};

static struct cc_tls_ctx *tls_for(struct cc_ws *ws, char **err)
{
    struct ws_vm *wv = ws->wv;
    bool own = ws->ca_file || ws->cert_file || ws->key_file;
    struct cc_tls_ctx **shared = own ? NULL : ws->insecure ? &wv->tls_insecure : &wv->tls_verify;
    if (shared && *shared) return *shared;
    struct cc_tls_opts o = {.insecure = ws->insecure,
                            .ca_file = ws->ca_file,
                            .cert_file = ws->cert_file,
                            .key_file = ws->key_file,
                            .alpn = alpn_h1,
                            .verify_hint = "(pass verify = false to the WebSocket client, or "
                                           "--insecure, to skip verification)"};
    struct cc_tls_ctx *ctx = NULL;
    if (cc_tls_ctx_new(&ctx, &o, err) != 0) return NULL;
    if (shared)
        *shared = ctx;
    else
        ws->tls = ctx;
    return ctx;
}

static void resolved(const struct cc_resolve_result *res, void *data)
{
    struct cc_ws *ws = data;
    ws->resolve_req = NULL;
    if (res->status != 0) {
        fail_open(ws, res->status, "%s", res->error);
        return;
    }
    struct cc_tls_ctx *tls = NULL;
    if (ws->use_tls) {
        char *err = NULL;
        tls = tls_for(ws, &err);
        if (!tls) {
            fail_open(ws, CC_ECONFIG, "%s", err ? err : "TLS set-up failed");
            cc_free(err);
            return;
        }
    }
    struct cc_conn_opts o = {.addr = &res->addrs[0].sa,
                             .connect_timeout_ms = ws->connect_timeout_ms,
                             .tls = tls,
                             .server_name = ws->host};
    ws->state = CC_WS_CONNECTING;
    int rc = cc_conn_connect(&ws->conn, ws->wv->vm->loop, &o, &conn_cbs, ws);
    if (rc != 0) {
        fail_open(ws, rc, "cannot connect to %s: %s", ws->authority, cc_strerror(rc));
        return;
    }
    ws->conn_started = true;
    ws->handles++;
}

static char *dup_or_null(const char *s)
{
    return s && *s ? cc_xstrdup(s) : NULL;
}

struct cc_ws *cc_ws_open(struct cc_vm *vm, const struct cc_ws_opts *o, const struct cc_ws_cbs *cbs,
                         void *data)
{
    struct ws_vm *wv = ws_vm_get(vm);
    struct cc_ws *ws = cc_xcalloc(1, sizeof(*ws));
    ws->wv = wv;
    ws->cbs = cbs;
    ws->data = data;
    ws->host = cc_xstrdup(o->host);
    ws->port = o->port;
    ws->authority = cc_xstrdup(o->authority ? o->authority : o->host);
    ws->target = cc_xstrdup(o->target && *o->target ? o->target : "/");
    ws->protocols = dup_or_null(o->protocols);
    ws->headers = dup_or_null(o->headers);
    ws->ca_file = dup_or_null(o->ca_file);
    ws->cert_file = dup_or_null(o->cert_file);
    ws->key_file = dup_or_null(o->key_file);
    ws->use_tls = o->tls;
    ws->insecure = o->insecure;
    ws->connect_timeout_ms =
        o->connect_timeout_ms ? o->connect_timeout_ms : CC_WS_DEFAULT_TIMEOUT_MS;
    ws->max_message = o->max_message ? o->max_message : CC_WS_DEFAULT_MAX_MESSAGE;
    ws->state = CC_WS_RESOLVING;
    ws->next = wv->conns;
    if (wv->conns) wv->conns->prev = ws;
    wv->conns = ws;
    uv_timer_init(vm->loop, &ws->timer);
    ws->handles = 1;

    int rc = cc_resolve(&wv->resolver, ws->host, ws->port, resolved, ws, &ws->resolve_req);
    if (rc != 0) {
        /* reported from the loop, never from inside this call */
        ws->resolve_req = NULL;
        set_error(ws, rc, "cannot resolve '%s': %s", ws->host, cc_strerror(rc));
        ws->timer_use = T_DEFER;
        uv_timer_start(&ws->timer, timer_cb, 0, 0);
        return ws;
    }
    ws->timer_use = T_CONNECT;
    uv_timer_start(&ws->timer, timer_cb, ws->connect_timeout_ms, 0);
    return ws;
}

/* ---- the owner's calls ------------------------------------------------------------------ */

void *cc_ws_data(const struct cc_ws *ws)
{
    return ws->data;
}

int cc_ws_sendv(struct cc_ws *ws, bool binary, const uv_buf_t *bufs, unsigned n)
{
    if (ws->state != CC_WS_OPEN || ws->released) return CC_ECLOSED;
    size_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += bufs[i].len;
    struct wslay_event_msg m = {.opcode = binary ? WSLAY_BINARY_FRAME : WSLAY_TEXT_FRAME};
    char small[512];
    char *joined = NULL;
    if (n == 1) {
        m.msg = (const uint8_t *)bufs[0].base;
    } else {
        /* wslay copies the message anyway; join small ones on the stack */
        joined = total <= sizeof(small) ? small : cc_xmalloc(total ? total : 1);
        size_t off = 0;
        for (unsigned i = 0; i < n; i++) {
            if (bufs[i].len) memcpy(joined + off, bufs[i].base, bufs[i].len);
            off += bufs[i].len;
        }
        m.msg = (const uint8_t *)joined;
    }
    m.msg_length = total;
    int rc = wslay_event_queue_msg(ws->ctx, &m);
    if (joined && joined != small) cc_free(joined);
    if (rc != 0) return CC_ECLOSED;
    flush(ws);
    return 0;
}

int cc_ws_send(struct cc_ws *ws, bool binary, const char *data, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    if (len > UINT32_MAX) return UV_EINVAL;
    return cc_ws_sendv(ws, binary, &b, 1);
}

int cc_ws_ping(struct cc_ws *ws, const char *data, size_t len)
{
    if (ws->state != CC_WS_OPEN || ws->released) return CC_ECLOSED;
    if (len > 125) return UV_EINVAL;
    struct wslay_event_msg m = {
        .opcode = WSLAY_PING, .msg = (const uint8_t *)data, .msg_length = len};
    if (wslay_event_queue_msg(ws->ctx, &m) != 0) return CC_ECLOSED;
    flush(ws);
    return 0;
}

static bool valid_close_code(uint16_t code)
{
    return code == 0 ||
           (code >= 1000 && code <= 1014 && code != 1004 && code != 1005 && code != 1006) ||
           (code >= 3000 && code <= 4999);
}

int cc_ws_close(struct cc_ws *ws, uint16_t code, const char *reason, size_t len,
                uint32_t timeout_ms)
{
    if (ws->state != CC_WS_OPEN || ws->released) return CC_ECLOSED;
    if (!valid_close_code(code) || len > 123 || (len && !code)) return UV_EINVAL;
    if (wslay_event_queue_close(ws->ctx, code, (const uint8_t *)reason, len) != 0)
        return CC_ECLOSED;
    ws->close_initiated = true;
    ws->state = CC_WS_CLOSING;
    ws->timer_use = T_CLOSE;
    uv_timer_start(&ws->timer, timer_cb, timeout_ms ? timeout_ms : CC_WS_CLOSE_TIMEOUT_MS, 0);
    flush(ws);
    return 0;
}

static void do_release(struct cc_ws *ws)
{
    if (ws->state == CC_WS_OPEN) {
        wslay_event_queue_close(ws->ctx, 1001, NULL, 0);
        flush(ws);
    }
    if (ws->state != CC_WS_ENDED) finish(ws);
    uv_timer_stop(&ws->timer);
    uv_close((uv_handle_t *)&ws->timer, timer_closed);
}

void cc_ws_release(struct cc_ws *ws)
{
    if (ws->released) return;
    ws->released = true;
    ws->backref = NULL;
    if (ws->in_recv) { /* ws_recv() finishes the job when wslay returns */
        ws->release_pending = true;
        return;
    }
    do_release(ws);
}

void cc_ws_set_backref(struct cc_ws *ws, void *ref)
{
    ws->backref = ref;
}

void cc_ws_set_timer(struct cc_ws *ws, uint64_t ms)
{
    if (ws->state != CC_WS_OPEN || ws->released) return;
    /* The owner's timer is left running when no deadline is left, or when it is due no later
     * than asked: on_timer then finds nothing due and sets it again. A request and its answer
     * cost no timer heap work this way. */
    if (ms == 0) return;
    if (ws->timer_use == T_OWNER && uv_is_active((uv_handle_t *)&ws->timer) &&
        uv_timer_get_due_in(&ws->timer) <= ms)
        return;
    ws->timer_use = T_OWNER;
    uv_timer_start(&ws->timer, timer_cb, ms, 0);
}

enum cc_ws_state cc_ws_state(const struct cc_ws *ws)
{
    return (enum cc_ws_state)ws->state;
}

bool cc_ws_is_open(const struct cc_ws *ws)
{
    return ws->state == CC_WS_OPEN && !ws->released;
}

const char *cc_ws_error(const struct cc_ws *ws)
{
    return ws->errmsg;
}

const char *cc_ws_protocol(const struct cc_ws *ws)
{
    return ws->protocol;
}

uint16_t cc_ws_close_code(const struct cc_ws *ws)
{
    return ws->close_code;
}

const char *cc_ws_close_reason(const struct cc_ws *ws)
{
    return ws->close_reason;
}

size_t cc_ws_queued(const struct cc_ws *ws)
{
    return ws->conn_started ? cc_conn_write_queued(&ws->conn) : 0;
}

bool cc_ws_blocked(const struct cc_ws *ws)
{
    return ws->conn_started && ws->state <= CC_WS_CLOSING && cc_conn_write_blocked(&ws->conn);
}
