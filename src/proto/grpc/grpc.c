/* SPDX-License-Identifier: MIT */
/* grpc.c: gRPC requests, statuses and streaming calls over the HTTP/2 client (see grpc.h). */
#include "proto/grpc/grpc.h"

#include <stdio.h>
#include <strings.h>

static const char *const code_names[] = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
};

const char *grpc_code_name(int code)
{
    return code >= 0 && (size_t)code < CC_ARRAY_LEN(code_names) ? code_names[code] : "UNKNOWN";
}

/* ---- requests --------------------------------------------------------------------------- */

void grpc_head_begin(struct http_buf *b, const char *path, const char *authority,
                     uint64_t timeout_ms)
{
    http_buf_puts(b, "POST ");
    http_buf_puts(b, path);
    http_buf_puts(b, " HTTP/1.1\r\nHost: ");
    http_buf_puts(b, authority);
    http_buf_puts(b, "\r\ncontent-type: application/grpc\r\nte: trailers\r\n"
                     "user-agent: cicada/" CC_VERSION "\r\n");
    if (timeout_ms) {
        /* at most eight digits (gRPC's TimeoutValue): the finest unit that fits */
        char t[48];
        int n;
        if (timeout_ms < 100000000ull)
            n = snprintf(t, sizeof(t), "grpc-timeout: %llum\r\n", (unsigned long long)timeout_ms);
        else if (timeout_ms / 1000 < 100000000ull)
            n = snprintf(t, sizeof(t), "grpc-timeout: %lluS\r\n",
                         (unsigned long long)(timeout_ms / 1000));
        else
            n = snprintf(t, sizeof(t), "grpc-timeout: %lluH\r\n",
                         (unsigned long long)CC_MIN(timeout_ms / 3600000, 99999999ull));
        http_buf_append(b, t, (size_t)n);
    }
}

static bool reserved_name(const char *n, size_t l)
{
    static const char *const names[] = {"content-type", "te",         "host",
                                        "user-agent",   "connection", "transfer-encoding",
                                        "upgrade",      "keep-alive", "proxy-connection"};
    if (l >= 5 && memcmp(n, "grpc-", 5) == 0) return true;
    for (size_t i = 0; i < CC_ARRAY_LEN(names); i++)
        if (strlen(names[i]) == l && memcmp(names[i], n, l) == 0) return true;
    return false;
}

int grpc_head_metadata(struct http_buf *b, const char *name, size_t nl, const char *value,
                       size_t vl, char *err, size_t errlen)
{
    char lower[256];
    if (nl == 0 || nl >= sizeof(lower)) {
        snprintf(err, errlen, "metadata name '%.60s' is empty or too long", name);
        return -1;
    }
    for (size_t i = 0; i < nl; i++) {
        char c = name[i];
        if (c >= 'A' && c <= 'Z') c = (char)(c + 32);
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
              c == '.')) {
            snprintf(err, errlen,
                     "metadata name '%.60s' has a character gRPC does not allow (a-z 0-9 - _ .)",
                     name);
            return -1;
        }
        lower[i] = c;
    }
    if (reserved_name(lower, nl)) {
        snprintf(err, errlen, "metadata name '%.*s' is reserved for gRPC and HTTP/2", (int)nl,
                 lower);
        return -1;
    }
    bool bin = nl > 4 && memcmp(lower + nl - 4, "-bin", 4) == 0;
    if (!bin)
        for (size_t i = 0; i < vl; i++)
            if ((unsigned char)value[i] < 0x20 || (unsigned char)value[i] > 0x7e) {
                snprintf(err, errlen,
                         "metadata '%.*s': the value has a byte gRPC cannot carry as text (a name "
                         "ending in -bin sends binary values)",
                         (int)nl, lower);
                return -1;
            }
    http_buf_append(b, lower, nl);
    http_buf_append(b, ": ", 2);
    if (bin)
        grpc_base64_encode(b, value, vl);
    else
        http_buf_append(b, value, vl);
    http_buf_append(b, "\r\n", 2);
    return 0;
}

uint32_t grpc_head_end(struct http_buf *b)
{
    http_buf_append(b, "\r\n", 2);
    return (uint32_t)b->len;
}

/* ---- statuses --------------------------------------------------------------------------- */

/* The value of |name| among pairs [from, to) of |ex|'s headers, or NULL. */
static const char *find(const struct http_exchange *ex, uint32_t from, uint32_t to,
                        const char *name, size_t *vl)
{
    if (!ex->nheaders) return NULL;
    const char *h = ex->headers.p, *end = h + ex->headers.len;
    for (uint32_t i = 0; i < ex->nheaders && i < to && h < end; i++) {
        size_t nl = strlen(h);
        const char *v = h + nl + 1;
        size_t l = strlen(v);
        if (i >= from && strcmp(h, name) == 0) {
            *vl = l;
            return v;
        }
        h = v + l + 1;
    }
    return NULL;
}

static int code_of_reset(uint32_t h2code)
{
    switch (h2code) {
    case NGHTTP2_REFUSED_STREAM:
        return GRPC_UNAVAILABLE;
    case NGHTTP2_CANCEL:
        return GRPC_CANCELLED;
    case NGHTTP2_ENHANCE_YOUR_CALM:
        return GRPC_RESOURCE_EXHAUSTED;
    case NGHTTP2_INADEQUATE_SECURITY:
        return GRPC_PERMISSION_DENIED;
    default:
        return GRPC_INTERNAL;
    }
}

static int code_of_http(int status)
{
    switch (status) {
    case 400:
        return GRPC_INTERNAL;
    case 401:
        return GRPC_UNAUTHENTICATED;
    case 403:
        return GRPC_PERMISSION_DENIED;
    case 404:
        return GRPC_UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
        return GRPC_UNAVAILABLE;
    default:
        return GRPC_UNKNOWN;
    }
}

static bool grpc_content_type(const char *v, size_t l)
{
    return l >= 16 && strncasecmp(v, "application/grpc", 16) == 0 &&
           (l == 16 || v[16] == '+' || v[16] == ';');
}

int grpc_exchange_status(const struct http_exchange *ex, struct http_buf *msg)
{
    if (ex->error) {
        const char *m = ex->errmsg ? ex->errmsg : cc_strerror(ex->error);
        http_buf_puts(msg, m);
        if (ex->error == UV_ETIMEDOUT) return GRPC_DEADLINE_EXCEEDED;
        if (ex->error == CC_ETOOBIG) return GRPC_RESOURCE_EXHAUSTED;
        if (ex->h2_reset) return code_of_reset(ex->rst_code);
        return GRPC_UNAVAILABLE; /* the connection failed, closed or broke: as gRPC's clients */
    }
    uint32_t from = ex->nhead, to = ex->nheaders; /* trailers, or the trailers-only head */
    size_t sl = 0, ml = 0, cl = 0;
    const char *st = find(ex, from, to, "grpc-status", &sl);
    if (!st) st = find(ex, 0, to, "grpc-status", &sl); /* a server that put it in the head */
    const char *gm = st ? find(ex, from, to, "grpc-message", &ml) : NULL;
    if (st && !gm) gm = find(ex, 0, to, "grpc-message", &ml);
    if (st) {
        int code = 0;
        bool ok = sl > 0 && sl <= 3;
        for (size_t i = 0; i < sl && ok; i++) {
            if (st[i] < '0' || st[i] > '9') ok = false;
            code = code * 10 + (st[i] - '0');
        }
        if (!ok) {
            http_buf_puts(msg, "the server sent a malformed grpc-status: ");
            http_buf_append(msg, st, CC_MIN(sl, 40));
            return GRPC_UNKNOWN;
        }
        if (gm) grpc_percent_decode(msg, gm, ml);
        return code;
    }
    char buf[200];
    if (ex->status != 200) {
        snprintf(buf, sizeof(buf), "HTTP status %d%s%.*s (the server sent no grpc-status)",
                 ex->status, ex->reason.len ? " " : "", (int)CC_MIN(ex->reason.len, 60),
                 ex->reason.len ? ex->reason.p : "");
        http_buf_puts(msg, buf);
        return code_of_http(ex->status);
    }
    const char *ct = find(ex, 0, to, "content-type", &cl);
    if (!ct || !grpc_content_type(ct, cl)) {
        snprintf(buf, sizeof(buf), "the response is not gRPC (content-type: %.*s)",
                 ct ? (int)CC_MIN(cl, 80) : 6, ct ? ct : "(none)");
        http_buf_puts(msg, buf);
        return GRPC_UNKNOWN;
    }
    http_buf_puts(msg, "the server ended the call without a grpc-status");
    return GRPC_INTERNAL;
}

int grpc_unary_reply(const struct http_exchange *ex, uint32_t max, const char **reply, size_t *len,
                     struct http_buf *msg)
{
    int code = grpc_exchange_status(ex, msg);
    if (code != GRPC_OK) return code;
    const uint8_t *b = (const uint8_t *)ex->body.p;
    size_t n = ex->body.len;
    char buf[160];
    if (n == 0) {
        http_buf_puts(msg, "the server sent OK without a reply message");
        return GRPC_INTERNAL;
    }
    if (n < GRPC_PREFIX) {
        http_buf_puts(msg, "the reply ends inside its message prefix");
        return GRPC_INTERNAL;
    }
    uint32_t l = (uint32_t)b[1] << 24 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 8 | b[4];
    if (b[0] > 1) {
        snprintf(buf, sizeof(buf), "malformed message prefix (flag byte %u)", b[0]);
        http_buf_puts(msg, buf);
        return GRPC_INTERNAL;
    }
    if (b[0] == 1) {
        http_buf_puts(msg, "the reply is compressed, though no compression was offered");
        return GRPC_INTERNAL;
    }
    if (l > max) {
        snprintf(buf, sizeof(buf), "a reply of %u bytes is over the limit (%u bytes)", l, max);
        http_buf_puts(msg, buf);
        return GRPC_RESOURCE_EXHAUSTED;
    }
    if ((size_t)l + GRPC_PREFIX > n) {
        http_buf_puts(msg, "the reply ends inside its message");
        return GRPC_INTERNAL;
    }
    if ((size_t)l + GRPC_PREFIX < n) {
        http_buf_puts(msg, "more than one reply message for a unary call");
        return GRPC_INTERNAL;
    }
    *reply = (const char *)b + GRPC_PREFIX;
    *len = l;
    return GRPC_OK;
}

/* ---- encodings -------------------------------------------------------------------------- */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void grpc_base64_encode(struct http_buf *out, const char *p, size_t n)
{
    const uint8_t *s = (const uint8_t *)p;
    char q[4];
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        q[0] = B64[v >> 18];
        q[1] = B64[(v >> 12) & 63];
        q[2] = B64[(v >> 6) & 63];
        q[3] = B64[v & 63];
        http_buf_append(out, q, 4);
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)s[i] << 16;
        q[0] = B64[v >> 18];
        q[1] = B64[(v >> 12) & 63];
        http_buf_append(out, q, 2);
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
        q[0] = B64[v >> 18];
        q[1] = B64[(v >> 12) & 63];
        q[2] = B64[(v >> 6) & 63];
        http_buf_append(out, q, 3);
    }
}

static int b64_val(char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
}

int grpc_base64_decode(struct http_buf *out, const char *p, size_t n)
{
    while (n && p[n - 1] == '=')
        n--;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_val(p[i]);
        if (v < 0) return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            char c = (char)(acc >> bits);
            http_buf_append(out, &c, 1);
            acc &= (1u << bits) - 1;
        }
    }
    return n % 4 == 1 ? -1 : 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

void grpc_percent_decode(struct http_buf *out, const char *p, size_t n)
{
    size_t run = 0; /* bytes copied as they are, in one append */
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (p[i] == '%' && i + 2 < n && (hi = hexval(p[i + 1])) >= 0 &&
            (lo = hexval(p[i + 2])) >= 0) {
            http_buf_append(out, p + i - run, run);
            run = 0;
            char c = (char)(hi << 4 | lo);
            http_buf_append(out, &c, 1);
            i += 2;
            continue;
        }
        run++;
    }
    http_buf_append(out, p + n - run, run);
}

/* ---- streaming calls -------------------------------------------------------------------- */

static int on_message(void *arg, const char *msg, size_t len, bool compressed)
{
    struct grpc_call *call = arg;
    if (compressed) return 1;
    struct http_buf *in = &call->inbox;
    if (call->inbox_off > (64u << 10) && call->inbox_off * 2 > in->len) { /* compact */
        memmove(in->p, in->p + call->inbox_off, in->len - call->inbox_off);
        in->len -= call->inbox_off;
        call->inbox_off = 0;
    }
    if (in->len - call->inbox_off + len + 4 > call->max_unread) return 2;
    char l[4] = {(char)(len >> 24), (char)(len >> 16), (char)(len >> 8), (char)len};
    http_buf_append(in, l, 4);
    http_buf_append(in, msg, len);
    call->unread++;
    call->messages++;
    call->received += len;
    return 0;
}

/* Moves what DATA brought into the inbox. Returns a status code (OK when all is well), with a
 * sentence in |msg| otherwise. */
static int take_body(struct grpc_call *call, struct http_exchange *ex, struct http_buf *msg)
{
    int rc = grpc_deframe(&call->df, ex->body.p, ex->body.len, on_message, call);
    ex->body.len = 0;
    char buf[160];
    switch (rc) {
    case 0:
        return GRPC_OK;
    case 1:
        http_buf_puts(msg, "a message is compressed, though no compression was offered");
        return GRPC_INTERNAL;
    case 2:
        snprintf(buf, sizeof(buf), "more than %llu bytes of messages not yet read",
                 (unsigned long long)call->max_unread);
        http_buf_puts(msg, buf);
        return GRPC_RESOURCE_EXHAUSTED;
    case GRPC_FRAME_ETOOBIG:
        snprintf(buf, sizeof(buf), "a message of %u bytes is over the limit (%u bytes)",
                 call->df.need, call->df.max);
        http_buf_puts(msg, buf);
        return GRPC_RESOURCE_EXHAUSTED;
    default:
        snprintf(buf, sizeof(buf), "malformed message prefix (flag byte %u)", call->df.head[0]);
        http_buf_puts(msg, buf);
        return GRPC_INTERNAL;
    }
}

/* Copies the pairs [from, to) of |ex|'s headers onto |meta|. */
static uint32_t copy_pairs(struct http_buf *meta, const struct http_exchange *ex, uint32_t from,
                           uint32_t to)
{
    if (!ex->nheaders) return 0;
    const char *h = ex->headers.p, *end = h + ex->headers.len, *start = NULL;
    uint32_t i = 0;
    for (; i < ex->nheaders && i < to && h < end; i++) {
        if (i == from) start = h;
        const char *v = h + strlen(h) + 1;
        h = v + strlen(v) + 1;
    }
    if (!start || i <= from) return 0;
    http_buf_append(meta, start, (size_t)(h - start));
    return i - from;
}

static void keep_meta(struct grpc_call *call, const struct http_exchange *ex, bool trailers)
{
    call->meta.len = 0;
    uint32_t nh = ex->h2_final ? ex->nhead : 0;
    call->nhead = copy_pairs(&call->meta, ex, 0, nh);
    call->ntrail = trailers ? copy_pairs(&call->meta, ex, nh, ex->nheaders) : 0;
}

static void call_fail(struct grpc_call *call, int code);

/* Whether a response head (not trailers-only) says the response is gRPC: HTTP status 200 and
 * content-type application/grpc; else the status it maps to, with a sentence in |msg|. */
static int head_status(const struct http_exchange *ex, struct http_buf *msg)
{
    size_t vl;
    const char *ct = find(ex, 0, ex->nhead, "content-type", &vl);
    if (ex->status == 200 && ct && grpc_content_type(ct, vl)) return GRPC_OK;
    int code = grpc_exchange_status(ex, msg); /* no grpc-status in a head: the HTTP reasons */
    return code == GRPC_OK ? GRPC_UNKNOWN : code;
}

static void call_on_event(struct http_exchange *ex)
{
    struct grpc_call *call = ex->udata;
    if (ex->h2_final && !call->head) {
        call->head = true;
        call->message.len = 0;
        int code = ex->nhead ? head_status(ex, &call->message) : GRPC_OK;
        if (code != GRPC_OK) { /* a stream that is not gRPC is not read as one */
            call_fail(call, code);
            call->on_change(call);
            return;
        }
    }
    if (ex->body.len) {
        call->message.len = 0;
        int code = take_body(call, ex, &call->message);
        if (code != GRPC_OK) {
            call_fail(call, code); /* the exchange goes */
            call->on_change(call);
            return;
        }
    }
    call->on_change(call);
}

static void call_on_done(struct http_exchange *ex)
{
    struct grpc_call *call = ex->udata;
    call->ex = NULL;
    if (ex->h2_final) call->head = true;
    call->message.len = 0;
    int code = grpc_exchange_status(ex, &call->message);
    if (!ex->error && ex->body.len) {
        struct http_buf m = {0};
        int fc = take_body(call, ex, &m);
        if (fc != GRPC_OK && code == GRPC_OK) {
            call->message.len = 0;
            http_buf_append(&call->message, m.p, m.len);
            code = fc;
        }
        http_buf_free(&m);
    }
    if (code == GRPC_OK && grpc_deframer_partial(&call->df)) {
        call->message.len = 0;
        http_buf_puts(&call->message, "the response ended inside a message");
        code = GRPC_INTERNAL;
    }
    if (code == GRPC_OK && call->one_reply && call->messages != 1) {
        char buf[120];
        snprintf(buf, sizeof(buf), "%llu reply messages where the method has one",
                 (unsigned long long)call->messages);
        call->message.len = 0;
        http_buf_puts(&call->message, buf);
        code = GRPC_INTERNAL;
    }
    keep_meta(call, ex, true);
    call->code = code;
    call->ended = true;
    call->send_closed = true;
    call->t_end = ex->t_end ? ex->t_end : cc_now_ns();
    call->on_change(call);
}

/* Ends the call with |code| and the sentence already in call->message. */
static void call_fail(struct grpc_call *call, int code)
{
    struct http_exchange *ex = call->ex;
    if (call->ended) return;
    if (ex) {
        keep_meta(call, ex, false);
        call->ex = NULL;
        ex->udata = NULL;
        http_exchange_cancel(&ex->waiter); /* its stream is reset; no callback follows */
    }
    call->code = code;
    call->ended = true;
    call->send_closed = true;
    call->t_end = cc_now_ns();
}

void grpc_call_start(struct grpc_call *call, struct http_pool *p, struct http_exchange *ex,
                     uint32_t max_message)
{
    grpc_deframer_init(&call->df, max_message);
    call->max_unread = CC_MAX((uint64_t)max_message * 4, 1u << 20);
    call->ex = ex;
    call->t_start = cc_now_ns();
    ex->udata = call;
    ex->on_event = call_on_event;
    ex->on_done = call_on_done;
    ex->resp_events = true;
    ex->req_open = !call->send_closed;
    ex->max_body = call->max_unread;
    http_exchange_start(p, ex);
}

int grpc_call_send(struct grpc_call *call, const char *msg, size_t len, bool end)
{
    struct http_exchange *ex = call->ex;
    if (call->ended || call->send_closed || !ex) return -1;
    if (msg) {
        char pre[GRPC_PREFIX];
        grpc_frame_prefix(pre, false, (uint32_t)len);
        http_buf_append(&ex->req, pre, GRPC_PREFIX);
    }
    if (end) call->send_closed = true;
    http_exchange_send(ex, msg, msg ? len : 0, end); /* may end the call: |ex| is gone then */
    return 0;
}

size_t grpc_call_unsent(const struct grpc_call *call)
{
    return call->ex ? http_exchange_unsent(call->ex) : 0;
}

bool grpc_call_next(struct grpc_call *call, const char **msg, size_t *len)
{
    if (!call->unread) return false;
    const uint8_t *p = (const uint8_t *)call->inbox.p + call->inbox_off;
    uint32_t l = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    *msg = (const char *)p + 4;
    *len = l;
    call->inbox_off += 4 + (size_t)l;
    if (--call->unread == 0) { /* empty: start over (the bytes stay until the next message) */
        call->inbox.len = 0;
        call->inbox_off = 0;
    }
    return true;
}

static struct grpc_meta meta_of(const struct http_exchange *ex, uint32_t from, uint32_t to)
{
    struct grpc_meta m = {NULL, 0, 0};
    if (!ex->nheaders || from >= to) return m;
    const char *h = ex->headers.p, *end = h + ex->headers.len;
    for (uint32_t i = 0; i < ex->nheaders && i < to && h < end; i++) {
        if (i == from) m.p = h;
        const char *v = h + strlen(h) + 1;
        h = v + strlen(v) + 1;
        if (i >= from) m.count++;
    }
    if (m.p) m.len = (size_t)(h - m.p);
    return m;
}

struct grpc_meta grpc_call_headers(const struct grpc_call *call)
{
    if (call->ended) {
        struct grpc_meta m = {call->meta.p, 0, call->nhead};
        const char *h = call->meta.p;
        for (uint32_t i = 0; i < call->nhead; i++) {
            const char *v = h + strlen(h) + 1;
            h = v + strlen(v) + 1;
        }
        m.len = call->nhead ? (size_t)(h - call->meta.p) : 0;
        return m;
    }
    if (call->ex && call->ex->h2_final) return meta_of(call->ex, 0, call->ex->nhead);
    return (struct grpc_meta){NULL, 0, 0};
}

struct grpc_meta grpc_call_trailers(const struct grpc_call *call)
{
    struct grpc_meta h = grpc_call_headers(call);
    if (!call->ended) return (struct grpc_meta){NULL, 0, 0};
    return (struct grpc_meta){call->meta.p + h.len, call->meta.len - h.len, call->ntrail};
}

void grpc_call_cancel(struct grpc_call *call, int code, const char *msg)
{
    if (call->ended) return;
    call->message.len = 0;
    http_buf_puts(&call->message, msg);
    call_fail(call, code);
}

void grpc_call_release(struct grpc_call *call)
{
    grpc_call_cancel(call, GRPC_CANCELLED, "the call was dropped");
    grpc_deframer_release(&call->df);
    http_buf_free(&call->inbox);
    http_buf_free(&call->message);
    http_buf_free(&call->meta);
}
