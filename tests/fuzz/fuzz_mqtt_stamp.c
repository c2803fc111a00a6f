/* SPDX-License-Identifier: MIT */
/*
 * fuzz_mqtt_stamp.c: what a subscriber does with any payload: the delivery stamp is read (or
 * not) and the statistics name is made from the topic, with buffers of every small size.
 */
#include "proto/mqtt/mqtt.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t t;
    if (mqtt_stamp_read(data, size, &t)) {
        unsigned char again[MQTT_STAMP_LEN];
        mqtt_stamp_write(again, t);
        if (memcmp(again, data, MQTT_STAMP_LEN) != 0) __builtin_trap();
    }
    if (size == 0) return 0;
    size_t cap = data[0] % 64;
    char buf[64];
    size_t n = mqtt_event_name(buf, cap, "deliver", (int)(data[0] % 4) - 1, (const char *)data + 1,
                               size - 1);
    if (cap && (n >= cap || buf[n] != '\0')) __builtin_trap();
    return 0;
}
