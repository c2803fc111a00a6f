/* SPDX-License-Identifier: MIT */
/*
 * fuzz_sock_recv.c: the cooperative sockets' receive patterns (proto/socket/recv.c) on arbitrary
 * input. The first bytes choose the pattern (mode, count, delimiter) and how the input is cut;
 * the rest is the input. The receives run back to back over the whole input at once and over
 * the cut input, and must give the same results (CC_RECV_ANY: the same bytes), never read out
 * of bounds, and always end.
 */
#include "proto/socket/recv.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct out {
    char *p;
    size_t len, cap;
};

static void put(struct out *o, const void *d, size_t n)
{
    if (o->len + n > o->cap) {
        o->cap = (o->len + n) * 2 + 64;
        o->p = realloc(o->p, o->cap);
        if (!o->p) abort();
    }
    if (n) memcpy(o->p + o->len, d, n);
    o->len += n;
}

/* Runs receives of |proto| over |in|, delivered |piece| bytes at a time (0: all at once). */
static void run(const struct cc_recv *proto, const uint8_t *in, size_t len, size_t piece,
                struct out *o)
{
    struct cc_recv r = *proto;
    cc_recv_start(&r);
    size_t off = 0, avail = piece ? CC_MIN(piece, len) : len;
    char *tmp = malloc(len + 1);
    if (!tmp) abort();
    for (unsigned steps = 0;; steps++) {
        if (steps > 4 * len + 64) abort(); /* every step consumes, waits for bytes, or ends */
        bool eof = avail == len;
        struct cc_recv_result res;
        enum cc_recv_status st = cc_recv_step(&r, (const char *)in + off, avail - off, eof, &res);
        if (st == CC_RECV_MORE) {
            if (eof) abort(); /* at the end every pattern finishes */
            avail = CC_MIN(len, avail + (piece ? piece : len));
            continue;
        }
        if (res.consume > avail - off || res.data_len > avail - off) abort();
        size_t dl = res.data_len;
        const char *d = (const char *)in + off;
        if (res.strip_cr) {
            dl = cc_recv_strip_cr(tmp, d, dl);
            d = tmp;
        }
        if (proto->mode == CC_RECV_ANY) {
            if (st == CC_RECV_DONE) put(o, d, dl);
        } else {
            char tag = st == CC_RECV_DONE ? 'D' : st == CC_RECV_END ? 'E' : 'C';
            put(o, &tag, 1);
            if (st != CC_RECV_END) put(o, d, dl);
            put(o, "|", 1);
            if (res.last) put(o, "E|", 2);
        }
        off += res.consume;
        if (st == CC_RECV_CLOSED) break;
        if (proto->mode == CC_RECV_ALL) break;
        if (r.mode != CC_RECV_UNTIL || r.n == 0 || res.last || st == CC_RECV_END) {
            r = *proto;
            cc_recv_start(&r);
        }
        /* a zero-byte count finishes without consuming: once is enough */
        if (proto->mode == CC_RECV_BYTES && proto->n == 0) break;
    }
    free(tmp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4) return 0;
    uint8_t mode = data[0] % 5, n = data[1], cut = data[2], plen = (uint8_t)(data[3] % 8);
    data += 4;
    size -= 4;
    if (plen > size) plen = (uint8_t)size;
    struct cc_recv proto = {.mode = mode};
    char pat[8];
    if (mode == CC_RECV_UNTIL) {
        if (plen == 0) return 0;
        memcpy(pat, data, plen);
        data += plen;
        size -= plen;
        proto.pat = pat;
        proto.pat_len = plen;
        proto.n = n % 16;
        proto.inclusive = n & 0x80;
    } else if (mode == CC_RECV_ANY) {
        proto.n = n % 16 + 1;
    } else {
        proto.n = n;
    }
    struct out whole = {0}, cut_up = {0};
    run(&proto, data, size, 0, &whole);
    run(&proto, data, size, cut ? cut % 17 + 1 : 1, &cut_up);
    if (whole.len != cut_up.len || (whole.len && memcmp(whole.p, cut_up.p, whole.len) != 0))
        abort();
    free(whole.p);
    free(cut_up.p);
    return 0;
}
