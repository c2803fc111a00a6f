/* SPDX-License-Identifier: MIT */
/*
 * fuzz_grpc_frame.c: gRPC's length-prefixed messages (frame.c) on arbitrary bytes, fed whole
 * and then in pieces the first byte chooses: both ways must give the same messages (lengths,
 * flags and bytes) and the same outcome. The bytes are also read as a whole unary reply
 * (grpc_unary_reply), as the body of an exchange that ended with status OK.
 *
 * Input: [cut] [max: 64 << (byte & 15)] stream bytes.
 */
#include "proto/grpc/frame.h"
#include "proto/grpc/grpc.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct seen {
    uint64_t hash;
    uint32_t count;
};

static int on_msg(void *arg, const char *msg, size_t len, bool compressed)
{
    struct seen *s = arg;
    s->hash = cc_hash(s->hash, &len, sizeof(len));
    s->hash = cc_hash(s->hash, &compressed, 1);
    s->hash = cc_hash(s->hash, msg, len);
    s->count++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    size_t cut = data[0] ? data[0] : 1;
    uint32_t max = 64u << (data[1] & 15);
    data += 2;
    size -= 2;

    struct grpc_deframer whole, pieces;
    struct seen a = {CC_HASH_INIT, 0}, b = {CC_HASH_INIT, 0};
    grpc_deframer_init(&whole, max);
    grpc_deframer_init(&pieces, max);
    int ra = grpc_deframe(&whole, (const char *)data, size, on_msg, &a);
    int rb = 0;
    for (size_t off = 0; off < size && rb == 0; off += cut)
        rb = grpc_deframe(&pieces, (const char *)data + off, CC_MIN(cut, size - off), on_msg, &b);
    if (ra != rb || a.count != b.count || a.hash != b.hash) abort();
    if (ra == 0 && grpc_deframer_partial(&whole) != grpc_deframer_partial(&pieces)) abort();
    grpc_deframer_release(&whole);
    grpc_deframer_release(&pieces);

    /* as a unary reply's body */
    struct http_exchange ex;
    memset(&ex, 0, sizeof(ex));
    static const char head[] = "content-type\0application/grpc\0grpc-status\0"
                               "0\0";
    ex.status = 200;
    ex.h2_final = true;
    ex.headers.p = (char *)head;
    ex.headers.len = sizeof(head) - 1;
    ex.nheaders = 2;
    ex.nhead = 1;
    ex.body.p = (char *)data;
    ex.body.len = size;
    struct http_buf msg = {0};
    const char *reply = NULL;
    size_t rl = 0;
    int code = grpc_unary_reply(&ex, max, &reply, &rl, &msg);
    if (code == GRPC_OK && (rl + GRPC_PREFIX != size || reply != (const char *)data + GRPC_PREFIX))
        abort();
    http_buf_free(&msg);
    return 0;
}
