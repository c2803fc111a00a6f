/* SPDX-License-Identifier: MIT */
/* stamp.c: the send-time header cicada's producer puts on messages, read back by consumers. */
#include "proto/kafka/kafka.h"

#include <string.h>
#include <time.h>

void kafka_stamp_encode(uint64_t ns, unsigned char out[KAFKA_STAMP_LEN])
{
    for (int i = KAFKA_STAMP_LEN - 1; i >= 0; i--) {
        out[i] = (unsigned char)(ns & 0xff);
        ns >>= 8;
    }
}

bool kafka_stamp_decode(const void *value, size_t len, uint64_t *ns)
{
    if (!value || len != KAFKA_STAMP_LEN) return false;
    const unsigned char *b = value;
    uint64_t v = 0;
    for (size_t i = 0; i < KAFKA_STAMP_LEN; i++)
        v = v << 8 | b[i];
    *ns = v;
    return true;
}

bool kafka_stamp_latency(rd_kafka_headers_t *hdrs, uint64_t now_ns, uint64_t *ns)
{
    if (!hdrs) return false;
    const void *v;
    size_t n;
    /* the last one: a message that a user passes on gets its own stamp after the first */
    if (rd_kafka_header_get_last(hdrs, KAFKA_STAMP_HEADER, &v, &n) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return false;
    uint64_t sent;
    if (!kafka_stamp_decode(v, n, &sent)) return false;
    *ns = now_ns > sent ? now_ns - sent : 0;
    return true;
}

uint64_t kafka_wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
