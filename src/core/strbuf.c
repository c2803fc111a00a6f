/* SPDX-License-Identifier: MIT */
/* strbuf.c: a growable string; see strbuf.h. */
#include "core/strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void reserve(struct cc_strbuf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap) return;
    size_t n = b->cap ? b->cap : 256;
    while (n < b->len + extra + 1)
        n *= 2;
    b->data = cc_xrealloc(b->data, n);
    b->cap = n;
}

void cc_strbuf_add(struct cc_strbuf *b, const void *s, size_t n)
{
    reserve(b, n);
    if (n) memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void cc_strbuf_adds(struct cc_strbuf *b, const char *s)
{
    cc_strbuf_add(b, s, strlen(s));
}

void cc_strbuf_printf(struct cc_strbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof(small)) {
        cc_strbuf_add(b, small, (size_t)n);
        return;
    }
    reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void cc_strbuf_html(struct cc_strbuf *b, const char *s)
{
    const char *run = s;
    for (const char *p = s;; p++) {
        const char *rep = NULL;
        switch (*p) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '"':
            rep = "&quot;";
            break;
        case '\'':
            rep = "&#39;";
            break;
        case '\0':
            break;
        default:
            continue;
        }
        cc_strbuf_add(b, run, (size_t)(p - run));
        if (!rep) break;
        cc_strbuf_adds(b, rep);
        run = p + 1;
    }
}

const char *cc_strbuf_str(const struct cc_strbuf *b)
{
    return b->data ? b->data : "";
}

char *cc_strbuf_detach(struct cc_strbuf *b, size_t *len)
{
    char *s = b->data ? b->data : cc_xstrdup("");
    if (len) *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return s;
}

void cc_strbuf_release(struct cc_strbuf *b)
{
    cc_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
