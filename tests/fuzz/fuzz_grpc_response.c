/* SPDX-License-Identifier: MIT */
/*
 * fuzz_grpc_response.c: gRPC calls over the HTTP/2 client on arbitrary server bytes: a unary
 * call, a server-streaming call and a bidirectional call whose request is still open are in
 * flight on a connection without a socket (tests/unit/h2fake.h) when the bytes arrive, in
 * pieces the first byte chooses; then the server closes. The streaming calls read their
 * messages as they come; every call must end, once, with a status.
 *
 * Input: [cut] [flags] server bytes. An empty SETTINGS frame is fed first, so that inputs
 * start at the frames after the server's preface. flags & 1: messages capped at 16 bytes.
 */
#include "../unit/h2fake.h"
#include "proto/grpc/grpc.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int unary_ends;

static void unary_done(struct http_exchange *ex)
{
    struct http_buf msg = {0};
    const char *reply;
    size_t rl;
    int code = grpc_unary_reply(ex, (uint32_t)ex->uarg, &reply, &rl, &msg);
    if (code < 0) abort();
    http_buf_free(&msg);
    unary_ends++;
}

struct watch {
    int ends;
};

static void changed(struct grpc_call *call)
{
    struct watch *w = call->owner;
    const char *m;
    size_t n;
    while (grpc_call_next(call, &m, &n))
        if (n > call->df.max) abort();
    if (call->ended) w->ends++;
}

static struct http_exchange *request(struct h2fake *f, bool with_message)
{
    struct http_exchange *ex = http_exchange_new(f->hv);
    grpc_head_begin(&ex->req, "/fuzz.Svc/Call", "fuzz.test", 0);
    ex->req_head = grpc_head_end(&ex->req);
    if (with_message) http_buf_append(&ex->req, "\0\0\0\0\x02\x08\x01", 7);
    ex->max_body = 1 << 20;
    return ex;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void)h2fake_request; /* h2fake.h's plain HTTP requests: not needed here */
    if (size < 2) return 0;
    uint8_t cut = data[0], flags = data[1];
    data += 2;
    size -= 2;
    uint32_t max = flags & 1 ? 16 : 1 << 20;

    struct h2fake f;
    h2fake_open(&f);
    unary_ends = 0;
    struct http_exchange *ex = request(&f, true);
    ex->uarg = (int32_t)max;
    ex->on_done = unary_done;
    http_exchange_start(f.p, ex);
    struct grpc_call calls[2];
    struct watch w[2] = {{0}, {0}};
    for (int i = 0; i < 2; i++) {
        memset(&calls[i], 0, sizeof(calls[i]));
        calls[i].owner = &w[i];
        calls[i].on_change = changed;
        calls[i].send_closed = i == 0;
        grpc_call_start(&calls[i], f.p, request(&f, i == 0), max);
    }
    grpc_call_send(&calls[1], "\x08\x02", 2, false);

    static const uint8_t settings[9] = {0, 0, 0, NGHTTP2_SETTINGS, 0, 0, 0, 0, 0};
    h2fake_feed(&f, settings, sizeof(settings));
    size_t piece = cut ? cut : size;
    for (size_t off = 0; off < size; off += piece) {
        h2fake_feed(&f, data + off, CC_MIN(piece, size - off));
        if (off == 0) grpc_call_send(&calls[1], NULL, 0, true); /* the request ends meanwhile */
    }
    h2fake_end(&f, 0);
    h2fake_close(&f);
    if (unary_ends != 1) abort();
    for (int i = 0; i < 2; i++) {
        if (!calls[i].ended || w[i].ends != 1) abort();
        grpc_call_release(&calls[i]);
    }
    return 0;
}
