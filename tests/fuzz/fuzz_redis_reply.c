/* SPDX-License-Identifier: MIT */
/*
 * fuzz_redis_reply.c: the Redis reply path (hiredis's reader with cicada's arena objects and
 * caps, and the byte count of each reply) on arbitrary bytes, cut into pieces the first byte
 * chooses; the second picks a small or a large cap.
 */
#include "proto/redis/redis.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    uint8_t cut = data[0], flags = data[1];
    data += 2;
    size -= 2;
    struct redis_parser p;
    redis_parser_init(&p, flags & 1 ? 1024 : 1 << 20);
    size_t piece = cut ? cut : size;
    for (size_t off = 0; off < size;) {
        size_t n = CC_MIN(piece, size - off);
        if (redis_parser_feed(&p, (const char *)data + off, n) != 0) break;
        off += n;
        int rc;
        struct redis_node *node;
        while ((rc = redis_parser_next(&p, &node)) == 1) {
            (void)redis_node_bytes(node);
            redis_parser_reset(&p);
        }
        if (rc < 0) break;
    }
    redis_parser_release(&p);
    return 0;
}
