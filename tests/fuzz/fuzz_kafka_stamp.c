/* SPDX-License-Identifier: MIT */
/*
 * fuzz_kafka_stamp.c: a consumed message's headers, made from arbitrary bytes (a length byte
 * for each name and value), searched for the send-time stamp and decoded.
 */
#include "proto/kafka/kafka.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t ns;
    unsigned char *raw = malloc(size ? size : 1);
    memcpy(raw, data, size);
    kafka_stamp_decode(raw, size, &ns);
    free(raw);

    rd_kafka_headers_t *h = rd_kafka_headers_new(8);
    size_t off = 0;
    while (off + 2 <= size) {
        size_t nl = data[off] % 16, vl = data[off + 1] % 16;
        off += 2;
        if (off + nl + vl > size) break;
        char name[16];
        memcpy(name, data + off, nl);
        /* names are C strings to librdkafka: the stamp's name, or these bytes */
        bool stamp_name = nl > 0 && data[off] == 0xff;
        rd_kafka_header_add(h, stamp_name ? KAFKA_STAMP_HEADER : name,
                            stamp_name ? -1 : (ssize_t)nl, vl ? data + off + nl : NULL,
                            (ssize_t)vl);
        off += nl + vl;
    }
    uint64_t now = kafka_wall_ns();
    if (kafka_stamp_latency(h, now, &ns) && ns > now) abort();
    rd_kafka_headers_destroy(h);
    return 0;
}
