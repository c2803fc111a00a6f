/* SPDX-License-Identifier: MIT */
/*
 * socketio.c: the Socket.IO v4 client on a WebSocket (see socketio.h).
 *
 * One timer serves every deadline of a client (the connect, the server's next ping, each
 * answer awaited, the owner's): it is the WebSocket's owner timer, armed for the nearest one.
 * Records of awaited answers come from a free list, so an emit with an acknowledgement
 * allocates nothing once the client has warmed up.
 */
#include "proto/socketio/socketio.h"
#include "core/err.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

struct sio_ack {
    void *ctx;
    uint64_t id;
    uint64_t t0;       /* when the emit was sent (ns) */
    uint64_t deadline; /* ns; 0: none */
    struct sio_ack *next;
};

static void rearm(struct cc_sio *s);

static void set_error(struct cc_sio *s, int code, const char *fmt, ...) CC_PRINTF(3, 4);
static void set_error(struct cc_sio *s, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->errmsg, sizeof(s->errmsg), fmt, ap);
    va_end(ap);
    s->err = code;
}

static bool gone(const struct cc_sio *s)
{
    return s->released || s->state == SIO_ENDED;
}

/* Every awaited answer fails with the client's error. */
static void fail_acks(struct cc_sio *s)
{
    while (s->acks && !s->released) {
        struct sio_ack *a = s->acks;
        s->acks = a->next;
        s->nacks--;
        void *ctx = a->ctx;
        a->next = s->free_acks;
        s->free_acks = a;
        s->cbs->on_ack(s, ctx, s->err ? s->err : CC_ECLOSED, NULL, 0, NULL, 0, 0);
    }
}

/* The connection is over (after the namespace was joined, or before: then on_connect says). */
static void end(struct cc_sio *s, int status)
{
    if (s->state == SIO_ENDED) return;
    bool was_connected = s->state == SIO_CONNECTED;
    s->state = SIO_ENDED;
    if (status && !s->err) set_error(s, status, "%s", cc_strerror(status));
    if (s->ws) {
        cc_ws_release(s->ws);
        s->ws = NULL;
    }
    if (s->released) return;
    fail_acks(s);
    if (s->released) return;
    if (was_connected)
        s->cbs->on_end(s, status);
    else
        s->cbs->on_connect(s, status ? status : CC_ECLOSED);
}

static void fail(struct cc_sio *s, int code, const char *fmt, ...) CC_PRINTF(3, 4);
static void fail(struct cc_sio *s, int code, const char *fmt, ...)
{
    if (s->state == SIO_ENDED) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->errmsg, sizeof(s->errmsg), fmt, ap);
    va_end(ap);
    s->err = code;
    end(s, code);
}

/* ---- sending ---------------------------------------------------------------------------- */

static int send_packet(struct cc_sio *s, enum cc_sio_type type, bool has_id, uint64_t id,
                       const char *json, size_t len, const struct cc_sio_att *atts, uint32_t natts)
{
    if (!s->ws) return CC_ECLOSED;
    char head[CC_SIO_HEADER_MAX + 256];
    if (s->nsp_len > 256) return UV_EINVAL;
    size_t hl = cc_sio_header(head, type, natts, s->nsp, s->nsp_len, has_id, id);
    uv_buf_t bufs[2] = {uv_buf_init(head, (unsigned)hl), uv_buf_init((char *)json, (unsigned)len)};
    int rc = cc_ws_sendv(s->ws, false, bufs, len ? 2 : 1);
    for (uint32_t i = 0; rc == 0 && i < natts; i++)
        rc = cc_ws_send(s->ws, true, atts[i].data, atts[i].len);
    return rc;
}

int cc_sio_emit(struct cc_sio *s, const char *json, size_t len, const struct cc_sio_att *atts,
                uint32_t natts, void *ack_ctx, uint32_t timeout_ms)
{
    if (!cc_sio_connected(s)) return CC_ECLOSED;
    enum cc_sio_type type = natts ? CC_SIO_BINARY_EVENT : CC_SIO_EVENT;
    if (!ack_ctx) return send_packet(s, type, false, 0, json, len, atts, natts);
    struct sio_ack *a = s->free_acks;
    if (a)
        s->free_acks = a->next;
    else
        a = cc_xmalloc(sizeof(*a));
    a->ctx = ack_ctx;
    a->id = s->next_id++;
    if (s->next_id > CC_SIO_MAX_ID) s->next_id = 0;
    a->t0 = cc_now_ns();
    a->deadline = timeout_ms ? a->t0 + (uint64_t)timeout_ms * 1000000u : 0;
    int rc = send_packet(s, type, true, a->id, json, len, atts, natts);
    if (rc != 0) {
        a->next = s->free_acks;
        s->free_acks = a;
        return rc;
    }
    a->next = s->acks;
    s->acks = a;
    s->nacks++;
    /* the timer is never due later than the nearest deadline: only this one can bring it on */
    if (a->deadline) cc_ws_set_timer(s->ws, timeout_ms);
    return 0;
}

int cc_sio_ack(struct cc_sio *s, uint64_t id, const char *json, size_t len,
               const struct cc_sio_att *atts, uint32_t natts)
{
    if (!cc_sio_connected(s)) return CC_ECLOSED;
    return send_packet(s, natts ? CC_SIO_BINARY_ACK : CC_SIO_ACK, true, id, json, len, atts, natts);
}

void cc_sio_cancel_ack(struct cc_sio *s, void *ctx)
{
    for (struct sio_ack **pp = &s->acks; *pp; pp = &(*pp)->next) {
        if ((*pp)->ctx != ctx) continue;
        struct sio_ack *a = *pp;
        *pp = a->next;
        s->nacks--;
        a->next = s->free_acks;
        s->free_acks = a;
        return;
    }
}

/* ---- receiving -------------------------------------------------------------------------- */

static void record_event(struct cc_sio *s, const char *name, size_t nlen, uint64_t bytes)
{
    struct cc_vm *vm = s->vm;
    if (!vm->rec) return;
    const struct cc_ikey *key = cc_recorder_key(vm->rec, "WSR", 3, name, nlen);
    cc_vm_record(vm, key, 0, bytes, NULL, 0);
}

static bool our_nsp(const struct cc_sio *s, const struct cc_sio_packet *p)
{
    return p->nsp_len == s->nsp_len && memcmp(p->nsp, s->nsp, s->nsp_len) == 0;
}

/* The Engine.IO open packet: the session and its heartbeat. */
static void on_eio_open(struct cc_sio *s, const char *data, size_t len)
{
    json_error_t jerr;
    json_t *o = json_loadb(data, len, 0, &jerr);
    if (!json_is_object(o)) {
        json_decref(o);
        fail(s, CC_EPROTO, "Socket.IO: the Engine.IO open packet is not a JSON object");
        return;
    }
    const char *sid = json_string_value(json_object_get(o, "sid"));
    json_int_t pi = json_integer_value(json_object_get(o, "pingInterval"));
    json_int_t pt = json_integer_value(json_object_get(o, "pingTimeout"));
    json_int_t mp = json_integer_value(json_object_get(o, "maxPayload"));
    snprintf(s->sid, sizeof(s->sid), "%s", sid ? sid : "");
    s->ping_interval_ms = pi > 0 && pi < 86400000 ? (uint32_t)pi : 25000;
    s->ping_timeout_ms = pt > 0 && pt < 86400000 ? (uint32_t)pt : 20000;
    s->max_payload = mp > 0 ? (uint64_t)mp : 0;
    json_decref(o);
    if (!sid) {
        fail(s, CC_EPROTO, "Socket.IO: the Engine.IO open packet has no session id");
        return;
    }
    s->state = SIO_NSP;
    int rc =
        send_packet(s, CC_SIO_CONNECT, false, 0, s->auth, s->auth ? strlen(s->auth) : 0, NULL, 0);
    if (rc != 0) fail(s, rc, "Socket.IO: cannot send the namespace's CONNECT");
}

/* The text of a CONNECT_ERROR's payload: {"message": ...} (v5) or a plain string (v4). */
static void connect_error(struct cc_sio *s, const char *data, size_t len)
{
    json_error_t jerr;
    json_t *o = json_loadb(data, len, JSON_DECODE_ANY, &jerr);
    const char *msg = json_is_string(o)   ? json_string_value(o)
                      : json_is_object(o) ? json_string_value(json_object_get(o, "message"))
                                          : NULL;
    fail(s, CC_EPROTO, "Socket.IO: the server refused the namespace %.*s: %s", (int)s->nsp_len,
         s->nsp, msg ? msg : "(no reason given)");
    json_decref(o);
}

/* A whole Socket.IO packet (a binary one with its attachments). */
static void dispatch(struct cc_sio *s, const struct cc_sio_packet *p, const struct cc_sio_att *atts,
                     uint32_t natts)
{
    switch (p->sio) {
    case CC_SIO_CONNECT:
        if (s->state != SIO_NSP) return;
        s->state = SIO_CONNECTED;
        s->connect_deadline = 0;
        s->ping_deadline =
            cc_now_ns() + (uint64_t)(s->ping_interval_ms + s->ping_timeout_ms) * 1000000u;
        rearm(s);
        s->cbs->on_connect(s, 0);
        return;
    case CC_SIO_CONNECT_ERROR:
        connect_error(s, p->data, p->data_len);
        return;
    case CC_SIO_DISCONNECT:
        fail(s, CC_ECLOSED, "Socket.IO: the server disconnected the client from namespace %.*s",
             (int)s->nsp_len, s->nsp);
        return;
    case CC_SIO_EVENT:
    case CC_SIO_BINARY_EVENT: {
        char name[256];
        size_t nlen;
        if (cc_sio_event_name(p->data, p->data_len, name, sizeof(name), &nlen) != 0) {
            fail(s, CC_EPROTO, "Socket.IO: an event without a name (or one over 255 bytes)");
            return;
        }
        uint64_t bytes = p->data_len;
        for (uint32_t i = 0; i < natts; i++)
            bytes += atts[i].len;
        record_event(s, name, nlen, bytes);
        s->cbs->on_event(s, name, p->data, p->data_len, atts, natts, p->has_id, p->id);
        return;
    }
    case CC_SIO_ACK:
    case CC_SIO_BINARY_ACK: {
        if (!p->has_id) return;
        for (struct sio_ack **pp = &s->acks; *pp; pp = &(*pp)->next) {
            struct sio_ack *a = *pp;
            if (a->id != p->id) continue;
            uint64_t ns = cc_now_ns() - a->t0;
            *pp = a->next;
            s->nacks--;
            void *ctx = a->ctx;
            a->next = s->free_acks;
            s->free_acks = a;
            /* the timer stays: when it fires, nothing of this call is due any more */
            s->cbs->on_ack(s, ctx, 0, p->data, p->data_len, atts, natts, ns);
            return;
        }
        return; /* an answer nobody waits for any more (it timed out) */
    }
    default:
        return;
    }
}

/* Hands the binary packet that waited for its attachments on. */
static void dispatch_pending(struct cc_sio *s)
{
    struct cc_sio_packet p;
    const char *why;
    uint32_t n;
    const struct cc_sio_att *atts = cc_sio_asm_done(&s->pending, &n);
    if (cc_sio_parse(s->pending.pkt.data, s->pending.pkt.len, &p, &why) != 0) return; /* it did */
    dispatch(s, &p, atts, n);
    if (gone(s)) return;
    cc_sio_asm_clear(&s->pending);
}

static void on_text(struct cc_sio *s, const char *data, size_t len)
{
    struct cc_sio_packet p;
    const char *why;
    if (cc_sio_parse(data, len, &p, &why) != 0) {
        fail(s, CC_EPROTO, "Socket.IO: %s", why);
        return;
    }
    switch (p.eio) {
    case CC_EIO_OPEN:
        if (s->state == SIO_EIO_OPEN) on_eio_open(s, p.data, p.data_len);
        return;
    case CC_EIO_PING: {
        /* the server's heartbeat: answer at once, and expect the next one in time */
        char pong[64] = "3";
        size_t pl = 1 + CC_MIN(p.data_len, sizeof(pong) - 1);
        memcpy(pong + 1, p.data, pl - 1);
        if (s->ws) cc_ws_send(s->ws, false, pong, pl);
        if (s->state == SIO_CONNECTED) {
            s->ping_deadline =
                cc_now_ns() + (uint64_t)(s->ping_interval_ms + s->ping_timeout_ms) * 1000000u;
            rearm(s);
        }
        return;
    }
    case CC_EIO_CLOSE:
        fail(s, CC_ECLOSED, "Socket.IO: the server closed the Engine.IO session");
        return;
    case CC_EIO_MESSAGE:
        break;
    default: /* pong, upgrade, noop */
        return;
    }
    if (!our_nsp(s, &p)) return; /* another namespace's packet: not ours to read */
    if (s->pending.want) {
        fail(s, CC_EPROTO, "Socket.IO: a packet came while attachments were awaited");
        return;
    }
    if ((p.sio == CC_SIO_BINARY_EVENT || p.sio == CC_SIO_BINARY_ACK) && p.attachments > 0) {
        cc_sio_asm_start(&s->pending, data, len, p.attachments);
        return;
    }
    dispatch(s, &p, NULL, 0);
}

/* An attachment; one not announced by a packet has nothing to attach to and is dropped. */
static void on_binary(struct cc_sio *s, const char *data, size_t len)
{
    if (cc_sio_asm_add(&s->pending, data, len)) dispatch_pending(s);
}

/* ---- the WebSocket's callbacks ---------------------------------------------------------- */

static void ws_open(struct cc_ws *ws, int status)
{
    struct cc_sio *s = cc_ws_data(ws);
    if (status != 0) {
        fail(s, status, "%s", cc_ws_error(ws));
        return;
    }
    s->state = SIO_EIO_OPEN;
    rearm(s);
}

static void ws_message(struct cc_ws *ws, bool binary, const char *data, size_t len)
{
    struct cc_sio *s = cc_ws_data(ws);
    if (gone(s)) return;
    if (binary)
        on_binary(s, data, len);
    else
        on_text(s, data, len);
}

static void ws_end(struct cc_ws *ws, int status)
{
    struct cc_sio *s = cc_ws_data(ws);
    if (s->disconnecting && status == 0) {
        end(s, 0);
        return;
    }
    if (status == 0)
        fail(s, CC_ECLOSED, "Socket.IO: the server closed the WebSocket (code %u%s%s)",
             cc_ws_close_code(ws), cc_ws_close_reason(ws)[0] ? ": " : "", cc_ws_close_reason(ws));
    else
        fail(s, status, "%s", cc_ws_error(ws));
}

static void ws_timer(struct cc_ws *ws)
{
    struct cc_sio *s = cc_ws_data(ws);
    uint64_t now = cc_now_ns();
    if (s->state < SIO_CONNECTED && s->connect_deadline && s->connect_deadline <= now) {
        fail(s, UV_ETIMEDOUT, "Socket.IO: no %s from the server in time",
             s->state == SIO_EIO_OPEN ? "Engine.IO open packet" : "answer to CONNECT");
        return;
    }
    if (s->state == SIO_CONNECTED && s->ping_deadline && s->ping_deadline <= now) {
        fail(s, UV_ETIMEDOUT,
             "Socket.IO: no ping from the server within %g s (pingInterval + "
             "pingTimeout)",
             (s->ping_interval_ms + s->ping_timeout_ms) / 1000.0);
        return;
    }
    for (bool again = true; again && !gone(s);) {
        again = false;
        for (struct sio_ack **pp = &s->acks; *pp; pp = &(*pp)->next) {
            struct sio_ack *a = *pp;
            if (!a->deadline || a->deadline > now) continue;
            *pp = a->next;
            s->nacks--;
            void *ctx = a->ctx;
            uint64_t ns = now - a->t0;
            a->next = s->free_acks;
            s->free_acks = a;
            s->cbs->on_ack(s, ctx, UV_ETIMEDOUT, NULL, 0, NULL, 0, ns);
            again = true; /* the list may have changed under the callback */
            break;
        }
    }
    if (gone(s)) return;
    if (s->owner_deadline && s->owner_deadline <= now) {
        s->owner_deadline = 0;
        if (s->cbs->on_timer) s->cbs->on_timer(s);
        if (gone(s)) return;
    }
    rearm(s);
}

static const struct cc_ws_cbs ws_cbs = {
    .on_open = ws_open,
    .on_message = ws_message,
    .on_end = ws_end,
    .on_timer = ws_timer,
};

static void rearm(struct cc_sio *s)
{
    if (!s->ws || gone(s)) return;
    uint64_t d = 0;
#define NEAREST(x)                                                                                 \
    if ((x) && (!d || (x) < d)) d = (x)
    if (s->state < SIO_CONNECTED) NEAREST(s->connect_deadline);
    if (s->state == SIO_CONNECTED) NEAREST(s->ping_deadline);
    NEAREST(s->owner_deadline);
    for (struct sio_ack *a = s->acks; a; a = a->next)
        NEAREST(a->deadline);
#undef NEAREST
    if (!d) {
        cc_ws_set_timer(s->ws, 0);
        return;
    }
    uint64_t now = cc_now_ns();
    uint64_t ms = d > now ? (d - now + 999999) / 1000000 : 1;
    cc_ws_set_timer(s->ws, ms ? ms : 1);
}

/* ---- the owner's calls ------------------------------------------------------------------ */

void cc_sio_connect(struct cc_sio *s, struct cc_vm *vm, const struct cc_sio_opts *o,
                    const struct cc_sio_cbs *cbs)
{
    s->vm = vm;
    s->cbs = cbs;
    const char *nsp = o->nsp && *o->nsp ? o->nsp : "/";
    s->nsp = cc_xstrdup(nsp);
    s->nsp_len = strlen(nsp);
    s->auth = o->auth && *o->auth ? cc_xstrdup(o->auth) : NULL;
    s->state = SIO_WS;
    uint32_t timeout = o->timeout_ms ? o->timeout_ms : CC_WS_DEFAULT_TIMEOUT_MS;
    s->connect_deadline = cc_now_ns() + (uint64_t)timeout * 1000000u;
    struct cc_ws_opts wo = o->ws;
    wo.connect_timeout_ms = timeout;
    s->ws = cc_ws_open(vm, &wo, &ws_cbs, s);
    cc_ws_set_backref(s->ws, &s->ws);
}

int cc_sio_disconnect(struct cc_sio *s)
{
    if (!cc_sio_connected(s) || !s->ws) return CC_ECLOSED;
    send_packet(s, CC_SIO_DISCONNECT, false, 0, NULL, 0, NULL, 0);
    s->disconnecting = true;
    if (cc_ws_close(s->ws, 1000, NULL, 0, 0) != 0) {
        end(s, 0);
        return 0;
    }
    return 0;
}

void cc_sio_abort(struct cc_sio *s, const char *why)
{
    if (s->released || s->state == SIO_ENDED || s->state == SIO_IDLE) return;
    fail(s, CC_ECLOSED, "%s", why);
}

void cc_sio_release(struct cc_sio *s)
{
    if (s->released) return;
    s->released = true;
    if (s->ws) {
        if (s->state == SIO_CONNECTED && !s->disconnecting)
            send_packet(s, CC_SIO_DISCONNECT, false, 0, NULL, 0, NULL, 0);
        cc_ws_release(s->ws);
        s->ws = NULL;
    }
    s->state = SIO_ENDED;
    while (s->acks) {
        struct sio_ack *a = s->acks;
        s->acks = a->next;
        cc_free(a);
    }
    while (s->free_acks) {
        struct sio_ack *a = s->free_acks;
        s->free_acks = a->next;
        cc_free(a);
    }
    s->nacks = 0;
    cc_free(s->nsp);
    cc_free(s->auth);
    s->nsp = s->auth = NULL;
    cc_sio_asm_release(&s->pending);
    cc_strbuf_release(&s->out);
}

void cc_sio_set_deadline(struct cc_sio *s, uint64_t ns)
{
    s->owner_deadline = ns;
    rearm(s);
}
