/* SPDX-License-Identifier: MIT */
/*
 * fuzz_cdp_message.c: reading a Chrome DevTools Protocol message (what a browser sends over its
 * WebSocket) on arbitrary bytes: it is either refused or read into fields that keep their
 * invariants.
 */
#include "proto/browser/cdpmsg.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cc_cdp_msg m;
    if (cc_cdp_msg_parse(&m, (const char *)data, size) != 0) {
        CC_ASSERT(m.root == NULL);
        return 0;
    }
    CC_ASSERT(m.root != NULL);
    CC_ASSERT(m.id >= 0 || m.method != NULL);
    size_t n = 0;
    if (m.session) n += strlen(m.session);
    if (m.method) n += strlen(m.method);
    if (m.error) n += strlen(m.error);
    if (m.net != CC_CDP_NET_NONE) {
        CC_ASSERT(m.id < 0 && m.method && m.request);
        n += strlen(m.request);
        if (m.net == CC_CDP_NET_REQUEST) n += strlen(m.url);
        if (m.error_text) n += strlen(m.error_text);
        CC_ASSERT(m.length >= 0);
        CC_ASSERT(m.status >= -1 && m.status < 1000);
    }
    (void)n;
    cc_cdp_msg_release(&m);
    return 0;
}
