/* SPDX-License-Identifier: MIT */
/*
 * strbuf.h: a growable string for text built piece by piece (the web UI's pages, /metrics,
 * the HTML report). Aborts on memory exhaustion only, like cc_xmalloc.
 */
#ifndef CC_STRBUF_H
#define CC_STRBUF_H

#include "core/common.h"

struct cc_strbuf {
    char *data; /* NUL-terminated once anything was added */
    size_t len, cap;
};

void cc_strbuf_add(struct cc_strbuf *b, const void *s, size_t n);
void cc_strbuf_adds(struct cc_strbuf *b, const char *s);
void cc_strbuf_printf(struct cc_strbuf *b, const char *fmt, ...) CC_PRINTF(2, 3);
/* Appends |s| escaped for HTML text and attribute values (& < > " '). */
void cc_strbuf_html(struct cc_strbuf *b, const char *s);
/* The string ("" when nothing was added); the buffer keeps owning it. */
const char *cc_strbuf_str(const struct cc_strbuf *b);
/* Hands the string over (caller frees with cc_free) and empties the buffer. */
char *cc_strbuf_detach(struct cc_strbuf *b, size_t *len);
void cc_strbuf_release(struct cc_strbuf *b);

#endif
