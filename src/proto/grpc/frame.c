/* SPDX-License-Identifier: MIT */
/* frame.c: gRPC's length-prefixed messages, read from a stream in pieces (see frame.h). */
#include "proto/grpc/frame.h"

#include <string.h>

int grpc_deframe(struct grpc_deframer *d, const char *p, size_t len, grpc_message_cb *cb, void *arg)
{
    const char *end = p + len;
    while (p < end) {
        if (!d->in_msg) {
            /* the prefix, possibly in several pieces */
            size_t take = CC_MIN((size_t)(GRPC_PREFIX - d->hlen), (size_t)(end - p));
            memcpy(d->head + d->hlen, p, take);
            d->hlen = (uint8_t)(d->hlen + take);
            p += take;
            if (d->hlen < GRPC_PREFIX) return 0;
            if (d->head[0] > 1) return GRPC_FRAME_EFLAG;
            d->compressed = d->head[0] == 1;
            d->need = (uint32_t)d->head[1] << 24 | (uint32_t)d->head[2] << 16 |
                      (uint32_t)d->head[3] << 8 | d->head[4];
            if (d->need > d->max) return GRPC_FRAME_ETOOBIG;
            d->in_msg = true;
            d->len = 0;
        }
        size_t avail = (size_t)(end - p);
        if (d->len == 0 && avail >= d->need) { /* whole in this piece: no copy */
            const char *msg = p;
            p += d->need;
            d->in_msg = false;
            d->hlen = 0;
            d->messages++;
            int rc = cb(arg, msg, d->need, d->compressed);
            if (rc) return rc;
            continue;
        }
        size_t take = CC_MIN(avail, (size_t)d->need - d->len);
        if (take) {
            if (d->len + take > d->cap) cc_grow((void **)&d->buf, &d->cap, d->need, 1);
            memcpy(d->buf + d->len, p, take);
            d->len += take;
            p += take;
        }
        if (d->len < d->need) return 0;
        d->in_msg = false;
        d->hlen = 0;
        d->len = 0;
        d->messages++;
        int rc = cb(arg, d->buf, d->need, d->compressed);
        if (rc) return rc;
    }
    return 0;
}
