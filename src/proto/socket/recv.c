/* SPDX-License-Identifier: MIT */
/* recv.c: receive patterns over buffered input; see recv.h. */
#define _GNU_SOURCE /* memmem */
#include "proto/socket/recv.h"

#include <string.h>

void cc_recv_start(struct cc_recv *r)
{
    r->scanned = 0;
    r->found = SIZE_MAX;
}

size_t cc_recv_strip_cr(char *dst, const char *src, size_t len)
{
    size_t o = 0;
    for (;;) {
        const char *cr = len > 0 ? memchr(src, '\r', len) : NULL;
        size_t k = cr ? (size_t)(cr - src) : len;
        if (k > 0) memmove(dst + o, src, k);
        o += k;
        if (!cr) return o;
        src += k + 1;
        len -= k + 1;
    }
}

/*
 * The longest proper prefix of the delimiter that the input ends with: where a delimiter
 * still arriving could start. Bytes before it can be handed out.
 */
static size_t partial_match(const char *in, size_t len, const char *pat, size_t plen)
{
    size_t k = CC_MIN(len, plen - 1);
    for (; k > 0; k--)
        if (memcmp(in + len - k, pat, k) == 0) return k;
    return 0;
}

static enum cc_recv_status done(struct cc_recv_result *res, size_t data_len, size_t consume)
{
    res->data_len = data_len;
    res->consume = consume;
    return CC_RECV_DONE;
}

static enum cc_recv_status closed(struct cc_recv *r, const char *in, size_t len,
                                  struct cc_recv_result *res)
{
    res->data_len = len;
    res->consume = len;
    res->strip_cr = r->mode == CC_RECV_LINE && len > 0 && memchr(in, '\r', len) != NULL;
    cc_recv_start(r);
    return CC_RECV_CLOSED;
}

static enum cc_recv_status step_until(struct cc_recv *r, const char *in, size_t len, bool eof,
                                      struct cc_recv_result *res)
{
    size_t plen = r->pat_len;
    if (r->found == SIZE_MAX && len >= plen && r->scanned <= len - plen) {
        const char *p = memmem(in + r->scanned, len - r->scanned, r->pat, plen);
        if (p) {
            /* |found| is where the chunked data ends: at the delimiter, or after it */
            r->found = (size_t)(p - in) + (r->inclusive ? plen : 0);
        } else {
            r->scanned = len - plen + 1; /* a delimiter may still end in bytes to come */
        }
    }
    if (r->found != SIZE_MAX) {
        size_t end = r->found, tail = r->inclusive ? 0 : plen;
        if (r->n == 0 || end <= r->n) {
            cc_recv_start(r);
            if (end == 0 && r->n > 0) {
                res->consume = tail;
                return CC_RECV_END;
            }
            res->last = r->n > 0;
            return done(res, end, end + tail);
        }
        r->found -= r->n;
        r->scanned = 0;
        return done(res, r->n, r->n);
    }
    /* the same rule with or without the end, so that results never depend on how the
     * bytes arrived: whole chunks first, then the rest as the partial result */
    if (r->n > 0 && len - partial_match(in, len, r->pat, plen) >= r->n) {
        r->scanned = r->scanned > r->n ? r->scanned - r->n : 0;
        return done(res, r->n, r->n);
    }
    return eof ? closed(r, in, len, res) : CC_RECV_MORE;
}

enum cc_recv_status cc_recv_step(struct cc_recv *r, const char *in, size_t len, bool eof,
                                 struct cc_recv_result *res)
{
    memset(res, 0, sizeof(*res));
    switch (r->mode) {
    case CC_RECV_LINE: {
        const char *lf = r->scanned < len ? memchr(in + r->scanned, '\n', len - r->scanned) : NULL;
        if (lf) {
            size_t k = (size_t)(lf - in);
            res->strip_cr = k > 0 && memchr(in, '\r', k) != NULL;
            cc_recv_start(r);
            return done(res, k, k + 1);
        }
        r->scanned = len;
        return eof ? closed(r, in, len, res) : CC_RECV_MORE;
    }
    case CC_RECV_BYTES:
        if (len >= r->n) return done(res, r->n, r->n);
        return eof ? closed(r, in, len, res) : CC_RECV_MORE;
    case CC_RECV_ALL:
        return eof ? done(res, len, len) : CC_RECV_MORE;
    case CC_RECV_ANY:
        if (len > 0) return done(res, CC_MIN(len, r->n), CC_MIN(len, r->n));
        return eof ? closed(r, in, len, res) : CC_RECV_MORE;
    case CC_RECV_UNTIL:
        return step_until(r, in, len, eof, res);
    }
    return CC_RECV_MORE;
}
