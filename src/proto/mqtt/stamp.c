/* SPDX-License-Identifier: MIT */
/* stamp.c: the delivery-latency stamp in MQTT payloads, and the names of MQTT statistics. */
#include "proto/mqtt/mqtt.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* Bytes no text payload starts with (0xCC is not valid UTF-8 at the start of a sequence that
 * 0x1D follows), so a stamp is never mistaken for a script's own data in practice. */
static const unsigned char magic[4] = {0xCC, 0x1D, 0x57, 0x4D};

void mqtt_stamp_write(unsigned char out[MQTT_STAMP_LEN], uint64_t wall_ns)
{
    memcpy(out, magic, sizeof(magic));
    for (int i = 0; i < 8; i++)
        out[4 + i] = (unsigned char)(wall_ns >> (56 - 8 * i));
}

bool mqtt_stamp_read(const void *payload, size_t len, uint64_t *wall_ns)
{
    if (len < MQTT_STAMP_LEN || !payload) return false;
    const unsigned char *p = payload;
    if (memcmp(p, magic, sizeof(magic)) != 0) return false;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[4 + i];
    *wall_ns = v;
    return true;
}

uint64_t mqtt_wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

size_t mqtt_event_name(char *buf, size_t cap, const char *kind, int qos, const char *topic,
                       size_t topic_len)
{
    if (cap == 0) return 0;
    int n = qos >= 0 ? snprintf(buf, cap, "%s:%d:", kind, qos) : snprintf(buf, cap, "%s:", kind);
    if (n < 0) n = 0;
    size_t head = (size_t)n < cap ? (size_t)n : cap - 1;
    size_t room = cap - 1 - head;
    size_t tl = topic_len < room ? topic_len : room;
    if (tl) memcpy(buf + head, topic, tl);
    buf[head + tl] = '\0';
    return head + tl;
}
