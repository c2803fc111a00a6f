/* SPDX-License-Identifier: MIT */
/*
 * fuzz_socketio_packet.c: the Engine.IO / Socket.IO packet parser and the event name decoder
 * (proto/socketio/sio.c) on arbitrary bytes; what parses is written back with cc_sio_header()
 * and must parse the same.
 */
#include "proto/socketio/sio.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size ? size : 1); /* exactly |size| bytes: reads past the end show */
    memcpy(copy, data, size);
    struct cc_sio_packet p;
    const char *why;
    if (cc_sio_parse(copy, size, &p, &why) != 0) {
        CC_ASSERT(why != NULL);
        free(copy);
        return 0;
    }
    CC_ASSERT(p.data >= copy && p.data + p.data_len <= copy + size);
    char name[256];
    size_t nl;
    if (cc_sio_event_name(p.data, p.data_len, name, sizeof(name), &nl) == 0)
        CC_ASSERT(nl < sizeof(name) && name[nl] == '\0');
    if (p.sio >= 0 && p.nsp_len < 256 && (p.nsp[0] == '/' || p.nsp_len == 0)) {
        char out[CC_SIO_HEADER_MAX + 256 + 8];
        size_t n = cc_sio_header(out, (enum cc_sio_type)p.sio, p.attachments, p.nsp, p.nsp_len,
                                 p.has_id, p.id);
        memcpy(out + n, "[]", 2);
        struct cc_sio_packet q;
        if (!memchr(p.nsp, ',', p.nsp_len) && cc_sio_parse(out, n + 2, &q, &why) == 0) {
            CC_ASSERT(q.sio == p.sio && q.has_id == p.has_id && (!p.has_id || q.id == p.id));
            CC_ASSERT(q.attachments == p.attachments);
        }
    }
    free(copy);
    return 0;
}
