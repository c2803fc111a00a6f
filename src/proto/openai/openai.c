/* SPDX-License-Identifier: MIT */
/*
 * openai.c: an OpenAI-style request on the HTTP client, read as it arrives, and its metrics
 * (see openai.h). The HTTP client hands the response over in pieces (on_event); a streamed one
 * goes through the event-stream parser, each event through the chunk reader, and a chunk that
 * carries output is stamped with the clock at once. Request objects, their buffers and the
 * parser are reused from one request to the next.
 */
#include "proto/openai/openai.h"
#include "core/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define ERROR_BODY_MAX (64u << 10) /* an error response is kept for its message, up to this */

void cc_oai_req_init(struct cc_oai_req *r)
{
    memset(r, 0, sizeof(*r));
    cc_sse_init(&r->sse, 1u << 20);
}

void cc_oai_req_release(struct cc_oai_req *r)
{
    cc_sse_release(&r->sse);
    cc_strbuf_release(&r->text);
    cc_strbuf_release(&r->body);
    cc_free(r->gaps);
    r->gaps = NULL;
    r->gaps_cap = 0;
}

static void reset(struct cc_oai_req *r)
{
    r->done = r->got_head = r->saw_done = false;
    r->status = r->err = 0;
    r->errmsg[0] = r->reason[0] = r->finish_reason[0] = '\0';
    r->t0 = r->t_first = r->t_last = r->t_end = 0;
    r->chunks = r->embeddings = 0;
    r->usage_out = r->usage_in = -1;
    r->ngaps = 0;
    r->bytes = 0;
    r->text.len = 0;
    r->body.len = 0;
    cc_sse_reset(&r->sse);
    /* one long answer does not pin its buffers for the requests after it */
    if (r->text.cap > (1u << 20)) cc_strbuf_release(&r->text);
    if (r->body.cap > (1u << 20)) cc_strbuf_release(&r->body);
}

static bool ok_status(int s)
{
    return s >= 200 && s < 300;
}

/* The stream is broken: the request fails with |code|. Over HTTP/1.1 the exchange ends at once
 * (the HTTP client reads its error); over HTTP/2 the rest of the stream is read past. */
static void fail_stream(struct cc_oai_req *r, int code, const char *fmt, ...) CC_PRINTF(3, 4);
static void fail_stream(struct cc_oai_req *r, int code, const char *fmt, ...)
{
    if (r->err) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->errmsg, sizeof(r->errmsg), fmt, ap);
    va_end(ap);
    r->err = code;
    struct http_exchange *ex = r->ex;
    if (ex && !ex->http2 && !ex->error) {
        ex->error = code;
        cc_free(ex->errmsg);
        ex->errmsg = cc_xstrdup(r->errmsg);
    }
}

/* A chunk that carried output came at |now|. */
static void token(struct cc_oai_req *r, uint64_t now)
{
    if (r->chunks == 0) {
        r->t_first = now;
    } else {
        if (r->ngaps == r->gaps_cap)
            cc_grow((void **)&r->gaps, &r->gaps_cap, r->ngaps + 1, sizeof(*r->gaps));
        r->gaps[r->ngaps++] = now - r->t_last;
    }
    r->t_last = now;
    r->chunks++;
}

static void take_chunk(struct cc_oai_req *r, const struct cc_oai_chunk *c)
{
    if (c->completion_tokens >= 0) r->usage_out = c->completion_tokens;
    if (c->prompt_tokens >= 0) r->usage_in = c->prompt_tokens;
    if (c->finish_reason[0]) memcpy(r->finish_reason, c->finish_reason, sizeof(r->finish_reason));
    r->embeddings += c->embeddings;
}

/* Shows the start of |s| (|n| bytes) in a message, control bytes as '.'. */
static void excerpt(char *out, size_t cap, const char *s, size_t n)
{
    size_t m = n < cap - 1 ? n : cap - 1;
    for (size_t i = 0; i < m; i++)
        out[i] = (unsigned char)s[i] < 0x20 ? '.' : s[i];
    out[m] = '\0';
}

struct feed_ctx {
    struct cc_oai_req *r;
    uint64_t now;
};

static int sse_event(void *ud, const char *event, size_t elen, const char *data, size_t dlen)
{
    struct feed_ctx *fc = ud;
    struct cc_oai_req *r = fc->r;
    (void)event;
    (void)elen;
    if (dlen == 6 && memcmp(data, "[DONE]", 6) == 0) {
        r->saw_done = true;
        return 0;
    }
    struct cc_oai_chunk c;
    if (cc_oai_scan(data, dlen, &c, r->keep_text ? &r->text : NULL) != 0) {
        char ex[64];
        excerpt(ex, sizeof(ex), data, dlen);
        fail_stream(r, CC_EPROTO, "malformed stream: an event's data is not JSON: '%s'", ex);
        return 1;
    }
    if (c.is_error) {
        fail_stream(r, CC_EPROTO, "the server reported an error in the stream: %s",
                    c.error[0] ? c.error : "(no message)");
        return 1;
    }
    take_chunk(r, &c);
    if (c.content) token(r, fc->now);
    return 0;
}

/* The value of response header |name| of |ex| (names as received, compared without case). */
static const char *header(const struct http_exchange *ex, const char *name)
{
    if (!ex->headers.p) return NULL;
    const char *h = ex->headers.p, *end = h + ex->headers.len;
    for (uint32_t i = 0; i < ex->nheaders && h < end; i++) {
        const char *v = h + strlen(h) + 1;
        if (strcasecmp(h, name) == 0) return v;
        h = v + strlen(v) + 1;
    }
    return NULL;
}

static void keep(struct cc_oai_req *r, const char *data, size_t len, uint64_t cap)
{
    if (r->body.len + len > cap) {
        if (ok_status(r->status))
            fail_stream(r, CC_ETOOBIG, "response body larger than max_body (%llu bytes)",
                        (unsigned long long)cap);
        len = r->body.len < cap ? cap - r->body.len : 0; /* an error's: its start is enough */
    }
    cc_strbuf_add(&r->body, data, len);
}

static void on_event(struct http_exchange *ex)
{
    struct cc_oai_req *r = ex->udata;
    uint64_t now = cc_now_ns();
    if (!r->got_head && ex->status >= 200) {
        r->got_head = true;
        r->status = ex->status;
        snprintf(r->reason, sizeof(r->reason), "%.*s", (int)ex->reason.len,
                 ex->reason.p ? ex->reason.p : "");
        /* a server that answers a stream request with one JSON body is read as such */
        const char *ct = header(ex, "content-type");
        if (r->stream && !(ct && strstr(ct, "text/event-stream"))) r->stream = false;
    }
    if (!ex->body.len) return;
    const char *data = ex->body.p;
    size_t len = ex->body.len;
    ex->body.len = 0;
    r->bytes += len;
    if (r->err) return;
    if (!ok_status(r->status)) {
        keep(r, data, len, ERROR_BODY_MAX);
    } else if (r->stream) {
        struct feed_ctx fc = {r, now};
        int rc = cc_sse_feed(&r->sse, data, len, sse_event, &fc);
        if (rc == CC_ETOOBIG)
            fail_stream(r, CC_ETOOBIG, "malformed stream: a line or an event over 1 MiB");
    } else {
        keep(r, data, len, r->max_body);
    }
}

/* The message of an error response: "<status> Client Error: <reason> (<server's message>)". */
static void http_error(struct cc_oai_req *r)
{
    struct cc_oai_chunk c;
    const char *kind = r->status >= 500 ? "Server Error" : "Client Error";
    bool have = r->body.len && cc_oai_scan(r->body.data, r->body.len, &c, NULL) == 0 && c.error[0];
    snprintf(r->errmsg, sizeof(r->errmsg), "%d %s: %s%s%.200s%s", r->status, kind,
             r->reason[0] ? r->reason : "(no reason)", have ? " (" : "", have ? c.error : "",
             have ? ")" : "");
    r->err = CC_EPROTO;
}

static void on_done(struct http_exchange *ex)
{
    struct cc_oai_req *r = ex->udata;
    r->ex = NULL;
    r->t0 = ex->t_start;
    r->t_end = ex->t_end;
    if (!r->got_head && ex->status >= 200) { /* a response that ended with its head */
        r->got_head = true;
        r->status = ex->status;
    }
    if (ex->error && !r->err) {
        r->err = ex->error;
        snprintf(r->errmsg, sizeof(r->errmsg), "%s", ex->errmsg ? ex->errmsg : "failed");
    } else if (!r->err && !ok_status(r->status)) {
        http_error(r);
    } else if (!r->err && !r->stream) {
        struct cc_oai_chunk c;
        if (cc_oai_scan(r->body.data ? r->body.data : "", r->body.len, &c,
                        r->keep_text ? &r->text : NULL) != 0) {
            char e[64];
            excerpt(e, sizeof(e), r->body.data ? r->body.data : "", r->body.len);
            snprintf(r->errmsg, sizeof(r->errmsg), "the response is not JSON: '%s'", e);
            r->err = CC_EPROTO;
        } else if (c.is_error) {
            snprintf(r->errmsg, sizeof(r->errmsg), "the server reported an error: %s",
                     c.error[0] ? c.error : "(no message)");
            r->err = CC_EPROTO;
        } else {
            take_chunk(r, &c);
            if (c.content) token(r, r->t_end);
        }
    }
    r->done = true;
    if (r->starting) return; /* cc_oai_start() returns with it */
    r->on_done(r);
}

void cc_oai_start(struct cc_oai_req *r, struct http_pool *p, struct http_exchange *ex)
{
    reset(r);
    r->ex = ex;
    r->hv = p->s->hv;
    ex->fiber = NULL;
    ex->resp_events = true;
    ex->on_event = on_event;
    ex->on_done = on_done;
    ex->udata = r;
    ex->max_body = 4u << 20; /* bytes read and not yet taken: a few pieces at most */
    r->starting = true;
    http_exchange_start(p, ex);
    r->starting = false;
}

void cc_oai_cancel(struct cc_oai_req *r)
{
    struct http_exchange *ex = r->ex;
    r->ex = NULL;
    if (ex) http_exchange_cancel(&ex->waiter);
}

int64_t cc_oai_tokens(const struct cc_oai_req *r)
{
    if (r->usage_out >= 0) return r->usage_out;
    if (r->stream) return r->chunks;
    return -1;
}

bool cc_oai_has_tpot(const struct cc_oai_req *r)
{
    return r->stream && r->chunks > 0 && cc_oai_tokens(r) >= 2;
}

uint64_t cc_oai_tpot_ns(const struct cc_oai_req *r)
{
    if (!cc_oai_has_tpot(r)) return 0;
    return (r->t_last - r->t_first) / (uint64_t)(cc_oai_tokens(r) - 1);
}

static uint64_t max_gap(const struct cc_oai_req *r)
{
    uint64_t m = 0;
    for (size_t i = 0; i < r->ngaps; i++)
        if (r->gaps[i] > m) m = r->gaps[i];
    return m;
}

static bool slo_set(const struct cc_oai_slo *s)
{
    return s && (s->ttft_ms > 0 || s->tpot_ms > 0 || s->itl_ms > 0 || s->e2e_ms > 0 ||
                 s->tokens_per_s > 0);
}

bool cc_oai_slo_met(const struct cc_oai_req *r, const struct cc_oai_slo *s)
{
    if (r->err || !ok_status(r->status)) return false;
    double e2e_ms = (double)(r->t_end - r->t0) / 1e6;
    if (s->ttft_ms > 0) {
        if (!r->stream || !r->chunks) return false; /* no first token to time */
        if ((double)(r->t_first - r->t0) / 1e6 > s->ttft_ms) return false;
    }
    if (s->tpot_ms > 0 && (double)cc_oai_tpot_ns(r) / 1e6 > s->tpot_ms) return false;
    if (s->itl_ms > 0 && (double)max_gap(r) / 1e6 > s->itl_ms) return false;
    if (s->e2e_ms > 0 && e2e_ms > s->e2e_ms) return false;
    if (s->tokens_per_s > 0) {
        int64_t n = cc_oai_tokens(r);
        if (n < 0 || e2e_ms <= 0 || (double)n / (e2e_ms / 1e3) < s->tokens_per_s) return false;
    }
    return true;
}

static const struct cc_ikey *key(struct cc_vm *vm, const char *type, const struct cc_oai_keys *k)
{
    return cc_recorder_key(vm->rec, type, strlen(type), k->name, k->name_len);
}

void cc_oai_record(struct cc_vm *vm, struct cc_fiber *f, struct cc_oai_keys *k,
                   const struct cc_oai_req *r, const struct cc_oai_slo *slo)
{
    if (!vm->rec) return;
    if (!k->req) {
        k->req = key(vm, "POST", k);
        k->ttft = key(vm, "TTFT", k);
        k->itl = key(vm, "ITL", k);
        k->tpot = key(vm, "TPOT", k);
        k->e2e = key(vm, "E2E", k);
        k->tokens = key(vm, "TOKENS", k);
        k->tps = key(vm, "TOKEN/S", k);
        k->goodput = key(vm, "GOODPUT", k);
    }
    uint64_t e2e = r->t_end - r->t0;
    if (r->err || !ok_status(r->status)) {
        const char *msg = r->errmsg[0] ? r->errmsg : "failed";
        cc_vm_record_for(vm, f, k->req, e2e, 0, msg, strlen(msg));
        return;
    }
    int64_t tokens = cc_oai_tokens(r);
    /* Locust's convention: the request's response length is its output tokens */
    cc_vm_record_for(vm, f, k->req, e2e, tokens > 0 ? (uint64_t)tokens : 0, NULL, 0);
    if (r->stream && r->chunks) {
        cc_vm_record_for(vm, f, k->ttft, r->t_first - r->t0, 0, NULL, 0);
        for (size_t i = 0; i < r->ngaps; i++)
            cc_vm_record_for(vm, NULL, k->itl, r->gaps[i], 0, NULL, 0);
    }
    /* a TPOT of 0 is a measurement too (the tokens came in one read): it is recorded */
    if (cc_oai_has_tpot(r)) cc_vm_record_for(vm, NULL, k->tpot, cc_oai_tpot_ns(r), 0, NULL, 0);
    cc_vm_record_for(vm, f, k->e2e, e2e, 0, NULL, 0);
    if (tokens >= 0) {
        /* counts go where the times go: one token reads as one "ms" */
        cc_vm_record_for(vm, NULL, k->tokens, (uint64_t)tokens * 1000000u, (uint64_t)tokens, NULL,
                         0);
        if (e2e > 0) {
            double tps = (double)tokens / ((double)e2e / 1e9);
            cc_vm_record_for(vm, NULL, k->tps, (uint64_t)(tps * 1e6 + 0.5), 0, NULL, 0);
        }
    }
    if (slo_set(slo) && cc_oai_slo_met(r, slo))
        cc_vm_record_for(vm, f, k->goodput, e2e, tokens > 0 ? (uint64_t)tokens : 0, NULL, 0);
}
