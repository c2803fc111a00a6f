/* SPDX-License-Identifier: MIT */
/*
 * fuzz_openai_stream.c: a streamed OpenAI-style response body as the client reads it: the
 * event-stream parser (proto/openai/sse.c) on arbitrary bytes cut into pieces the first byte
 * chooses, and each event's data through the chunk reader (proto/openai/chunk.c).
 */
#include "proto/openai/chunk.h"
#include "proto/openai/sse.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct state {
    struct cc_strbuf text;
    uint32_t events, outputs;
};

static int on_event(void *ud, const char *event, size_t el, const char *d, size_t dl)
{
    struct state *st = ud;
    (void)event;
    CC_ASSERT(el < 64);
    st->events++;
    char *copy = malloc(dl ? dl : 1); /* exactly |dl| bytes: reads past the end show */
    memcpy(copy, d, dl);
    struct cc_oai_chunk c;
    if (cc_oai_scan(copy, dl, &c, &st->text) == 0 && c.content) st->outputs++;
    CC_ASSERT(strlen(c.error) < sizeof(c.error));
    free(copy);
    return st->events > 100000; /* the callback may stop the feed */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    size_t piece = data[0] ? data[0] : size;
    data++;
    size--;
    struct cc_sse p;
    cc_sse_init(&p, 4096);
    struct state st = {0};
    for (size_t off = 0; off < size;) {
        size_t n = CC_MIN(piece, size - off);
        if (cc_sse_feed(&p, (const char *)data + off, n, on_event, &st) != 0) break;
        off += n;
    }
    CC_ASSERT(st.outputs <= st.events);
    cc_sse_release(&p);
    cc_strbuf_release(&st.text);
    return 0;
}
