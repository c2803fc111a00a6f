/* SPDX-License-Identifier: MIT */
/*
 * recv.h: what a LuaSocket or OpenResty receive pattern takes from the bytes read so far.
 *
 * Sans-I/O: the caller keeps the bytes that arrived (a connection's input buffer) and asks,
 * each time more arrive, whether the pending receive can finish. The matcher never copies and
 * keeps just enough state (how far it searched) that a pattern arriving one byte at a time
 * costs no rescanning.
 *
 *   CC_RECV_LINE   LuaSocket's "*l": up to a LF, which is dropped, as is every CR before it
 *   CC_RECV_BYTES  a number: exactly |n| bytes
 *   CC_RECV_ALL    "*a": everything until the peer closes
 *   CC_RECV_ANY    OpenResty's receiveany(n): whatever has arrived, at most |n| bytes
 *   CC_RECV_UNTIL  OpenResty's receiveuntil(pattern): everything before |pat| (which is
 *                  consumed, and returned too when |inclusive|); with a chunk size |n|, the
 *                  data comes |n| bytes at a time and the chunk that reaches the pattern is
 *                  the last one (|last| is set)
 */
#ifndef CC_SOCK_RECV_H
#define CC_SOCK_RECV_H

#include "core/common.h"

enum cc_recv_mode { CC_RECV_LINE, CC_RECV_BYTES, CC_RECV_ALL, CC_RECV_ANY, CC_RECV_UNTIL };

struct cc_recv {
    uint8_t mode;    /* enum cc_recv_mode */
    bool inclusive;  /* UNTIL: the pattern belongs to the data */
    size_t n;        /* BYTES: wanted; ANY: at most (> 0); UNTIL: chunk size, 0 for none */
    const char *pat; /* UNTIL: the delimiter, not copied; at least one byte */
    size_t pat_len;
    /* private */
    size_t scanned; /* bytes of input searched without finding the delimiter */
    size_t found;   /* UNTIL: where the delimiter starts in the input, SIZE_MAX if not seen */
};

enum cc_recv_status {
    CC_RECV_MORE,   /* cannot finish with what is there: wait for more (or the end) */
    CC_RECV_DONE,   /* finished: the first |data_len| bytes are the result */
    CC_RECV_CLOSED, /* the input ended first: everything there is the partial result */
    CC_RECV_END,    /* UNTIL with a chunk size: the delimiter was next, no data (nil, nil) */
};

struct cc_recv_result {
    size_t data_len; /* DONE: the result is the first |data_len| input bytes */
    size_t consume;  /* DONE, END, CLOSED: bytes to drop from the input */
    bool strip_cr;   /* LINE: the result holds CRs that are to be removed */
    bool last;       /* UNTIL with a chunk size: the delimiter was consumed after this chunk */
};

/* Prepares |r| for a new receive; set the mode and its fields first. */
void cc_recv_start(struct cc_recv *r);

/*
 * Looks at the |len| input bytes at |in| (everything read and not yet consumed: the same
 * bytes as the last call plus any that arrived since, or fewer after a consume, which must be
 * exactly the |consume| of the previous result) and says whether the receive finishes. |eof|:
 * no more bytes will ever come. After DONE, END or CLOSED the caller drops |consume| bytes;
 * a receive that goes on (an UNTIL reader's next chunk) continues with the same |r|.
 */
enum cc_recv_status cc_recv_step(struct cc_recv *r, const char *in, size_t len, bool eof,
                                 struct cc_recv_result *res);

/* Copies |len| bytes from |src| to |dst| without the CRs; returns the bytes written. */
size_t cc_recv_strip_cr(char *dst, const char *src, size_t len);

#endif
