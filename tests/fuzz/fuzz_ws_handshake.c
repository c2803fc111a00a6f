/* SPDX-License-Identifier: MIT */
/*
 * fuzz_ws_handshake.c: the WebSocket handshake's answer parser (proto/ws/handshake.c) on
 * arbitrary bytes, cut into pieces the first byte chooses; the second says whether
 * subprotocols were offered. The key is RFC 6455's example, so seeds can carry a valid accept.
 */
#include "proto/ws/handshake.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    uint8_t cut = data[0], flags = data[1];
    data += 2;
    size -= 2;
    struct cc_ws_hs hs;
    cc_ws_hs_init(&hs, "dGhlIHNhbXBsZSBub25jZQ==", flags & 1 ? "chat.v1, chat.v2" : NULL);
    size_t piece = cut ? cut : size;
    for (size_t off = 0; off < size;) {
        size_t n = CC_MIN(piece, size - off), used = 0;
        int rc = cc_ws_hs_feed(&hs, (const char *)data + off, n, &used);
        if (rc == CC_WS_HS_DONE) {
            CC_ASSERT(used <= n);
            CC_ASSERT(hs.status == 101);
            break;
        }
        if (rc < 0) {
            CC_ASSERT(hs.errmsg[0] != '\0');
            break;
        }
        CC_ASSERT(used == 0);
        off += n;
    }
    cc_ws_hs_release(&hs);
    return 0;
}
