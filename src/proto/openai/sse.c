/* SPDX-License-Identifier: MIT */
/* sse.c: server-sent events, parsed incrementally (see sse.h). */
#include "proto/openai/sse.h"
#include "core/err.h"

#include <string.h>

void cc_sse_init(struct cc_sse *p, size_t max)
{
    memset(p, 0, sizeof(*p));
    p->max = max ? max : (1u << 20);
}

void cc_sse_release(struct cc_sse *p)
{
    cc_strbuf_release(&p->line);
    cc_strbuf_release(&p->data);
}

void cc_sse_reset(struct cc_sse *p)
{
    p->line.len = 0;
    p->data.len = 0;
    p->event_len = 0;
    p->cr = false;
    p->has_data = false;
}

/* One whole line (without its end). */
static int line(struct cc_sse *p, const char *s, size_t n, cc_sse_cb *cb, void *ud)
{
    if (n == 0) { /* the end of an event */
        int rc = 0;
        if (p->has_data) {
            /* the data is what its lines held, joined by LF: the buffer has one LF too many */
            size_t dl = p->data.len ? p->data.len - 1 : 0;
            rc = cb(ud, p->event, p->event_len, p->data.len ? p->data.data : "", dl);
        }
        p->data.len = 0;
        p->event_len = 0;
        p->event[0] = '\0';
        p->has_data = false;
        return rc;
    }
    if (s[0] == ':') return 0; /* a comment (servers send them to keep a stream alive) */
    const char *colon = memchr(s, ':', n);
    size_t fl = colon ? (size_t)(colon - s) : n;
    const char *v = colon ? colon + 1 : s + n;
    size_t vl = (size_t)(s + n - v);
    if (vl && v[0] == ' ') {
        v++;
        vl--;
    }
    if (fl == 4 && memcmp(s, "data", 4) == 0) {
        if (p->data.len + vl + 1 > p->max) return CC_ETOOBIG;
        cc_strbuf_add(&p->data, v, vl);
        cc_strbuf_add(&p->data, "\n", 1);
        p->has_data = true;
    } else if (fl == 5 && memcmp(s, "event", 5) == 0) {
        size_t el = vl < sizeof(p->event) - 1 ? vl : sizeof(p->event) - 1;
        memcpy(p->event, v, el);
        p->event[el] = '\0';
        p->event_len = (uint32_t)el;
    }
    return 0; /* id, retry, and fields nobody defined */
}

int cc_sse_feed(struct cc_sse *p, const char *buf, size_t len, cc_sse_cb *cb, void *ud)
{
    size_t i = 0;
    if (p->cr && len && buf[0] == '\n') i = 1; /* the LF of a CRLF split between pieces */
    p->cr = false;
    while (i < len) {
        const char *s = buf + i;
        size_t left = len - i, n = 0;
        while (n < left && s[n] != '\n' && s[n] != '\r')
            n++;
        if (n == left) { /* no line end yet: keep the piece */
            if (p->line.len + n > p->max) return CC_ETOOBIG;
            cc_strbuf_add(&p->line, s, n);
            return 0;
        }
        int rc;
        if (p->line.len) { /* the line began in an earlier piece */
            if (p->line.len + n > p->max) return CC_ETOOBIG;
            cc_strbuf_add(&p->line, s, n);
            size_t ll = p->line.len;
            p->line.len = 0; /* its bytes stay where they are until the next add */
            rc = line(p, p->line.data, ll, cb, ud);
        } else {
            rc = line(p, s, n, cb, ud);
        }
        if (rc) return rc;
        i += n + 1;
        if (s[n] == '\r') {
            if (i < len && buf[i] == '\n')
                i++;
            else if (i == len)
                p->cr = true;
        }
    }
    return 0;
}
