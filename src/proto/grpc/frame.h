/* SPDX-License-Identifier: MIT */
/*
 * frame.h: gRPC's length-prefixed messages (the body of every request and response stream):
 * each message is one flag byte (1: compressed), a 4-byte big-endian length, then the message.
 *
 * The deframer takes the bytes of a stream in whatever pieces they arrive and hands out whole
 * messages; one that lies within a piece is handed out where it lies, only one split across
 * pieces is gathered into the deframer's buffer.
 */
#ifndef CC_GRPC_FRAME_H
#define CC_GRPC_FRAME_H

#include "core/common.h"

#include <string.h>

#define GRPC_PREFIX 5

enum {
    GRPC_FRAME_ETOOBIG = -1, /* a message longer than the deframer's maximum */
    GRPC_FRAME_EFLAG = -2,   /* a flag byte other than 0 or 1 */
};

struct grpc_deframer {
    uint32_t max;    /* the longest message accepted */
    uint8_t head[5]; /* the prefix being read */
    uint8_t hlen;    /* bytes of |head| read */
    bool in_msg;     /* the prefix is whole: reading the message */
    bool compressed; /* the message's flag */
    uint32_t need;   /* the message's length */
    char *buf;       /* a message split across pieces */
    size_t len, cap;
    uint64_t messages; /* messages handed out */
};

/* Called with each whole message (valid during the call only); nonzero stops the deframer,
 * which then returns that value. */
typedef int grpc_message_cb(void *arg, const char *msg, size_t len, bool compressed);

static inline void grpc_deframer_init(struct grpc_deframer *d, uint32_t max)
{
    memset(d, 0, sizeof(*d));
    d->max = max;
}

/* Forgets any partial message (the buffer is kept for reuse). */
static inline void grpc_deframer_reset(struct grpc_deframer *d)
{
    d->hlen = 0;
    d->in_msg = false;
    d->len = 0;
    d->messages = 0;
}

static inline void grpc_deframer_release(struct grpc_deframer *d)
{
    cc_free(d->buf);
    d->buf = NULL;
    d->cap = d->len = 0;
}

/* Whether the bytes fed so far end inside a message (a stream that ends here is cut short). */
static inline bool grpc_deframer_partial(const struct grpc_deframer *d)
{
    return d->hlen > 0 || d->in_msg;
}

/*
 * Feeds |len| bytes of the stream. Returns 0, GRPC_FRAME_ETOOBIG or GRPC_FRAME_EFLAG (the
 * stream is broken: feed it no more), or the nonzero value |cb| returned.
 */
int grpc_deframe(struct grpc_deframer *d, const char *p, size_t len, grpc_message_cb *cb,
                 void *arg);

/* Writes the 5-byte prefix of a message of |len| bytes. */
static inline void grpc_frame_prefix(char out[GRPC_PREFIX], bool compressed, uint32_t len)
{
    out[0] = (char)(compressed ? 1 : 0);
    out[1] = (char)(len >> 24);
    out[2] = (char)(len >> 16);
    out[3] = (char)(len >> 8);
    out[4] = (char)len;
}

#endif
