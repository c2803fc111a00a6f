/* SPDX-License-Identifier: MIT */
/*
 * fuzz_socketio_packet.c: the Engine.IO / Socket.IO packet parser and the event name decoder
 * (proto/socketio/sio.c) on arbitrary bytes; what parses is written back with cc_sio_header()
 * and must parse the same. Then the input as WebSocket messages, split at each 0xff byte (a
 * message starting with 'B' is binary, the rest text), through the client's reassembly of a
 * binary packet's attachments: each complete packet hands on exactly the attachments it
 * announced, back to back within their buffer.
 */
#include "proto/socketio/sio.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One WebSocket message, as the client takes it (proto/socketio/socketio.c). */
static void message(struct cc_sio_asm *a, const char *m, size_t len)
{
    if (len && m[0] == 'B') {
        uint32_t want = a->want;
        if (!cc_sio_asm_add(a, m + 1, len - 1)) return;
        uint32_t n;
        const struct cc_sio_att *atts = cc_sio_asm_done(a, &n);
        CC_ASSERT(n == want && a->want == 0);
        size_t at = 0;
        for (uint32_t i = 0; i < n; i++) {
            if (atts[i].len) CC_ASSERT(atts[i].data == a->data.data + at);
            at += atts[i].len;
        }
        CC_ASSERT(at == a->data.len);
        struct cc_sio_packet p;
        const char *why;
        CC_ASSERT(cc_sio_parse(a->pkt.data, a->pkt.len, &p, &why) == 0 && p.attachments == n);
        cc_sio_asm_clear(a);
        return;
    }
    struct cc_sio_packet p;
    const char *why;
    if (cc_sio_parse(m, len, &p, &why) != 0) return;
    if (a->want) { /* the client ends the connection: a fresh one waits for nothing */
        cc_sio_asm_release(a);
        return;
    }
    if ((p.sio == CC_SIO_BINARY_EVENT || p.sio == CC_SIO_BINARY_ACK) && p.attachments > 0)
        cc_sio_asm_start(a, m, len, p.attachments);
}

/* One packet, parsed, then written back and parsed again. */
static void packet(const char *copy, size_t size)
{
    struct cc_sio_packet p;
    const char *why;
    if (cc_sio_parse(copy, size, &p, &why) != 0) {
        CC_ASSERT(why != NULL);
        return;
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
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size ? size : 1); /* exactly |size| bytes: reads past the end show */
    memcpy(copy, data, size);
    packet(copy, size);
    struct cc_sio_asm a = {0};
    for (size_t i = 0, start = 0; i <= size; i++) {
        if (i < size && data[i] != 0xff) continue;
        message(&a, copy + start, i - start);
        start = i + 1;
    }
    cc_sio_asm_release(&a);
    free(copy);
    return 0;
}
