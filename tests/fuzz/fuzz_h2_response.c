/* SPDX-License-Identifier: MIT */
/*
 * fuzz_h2_response.c: the HTTP/2 client (h2.c over nghttp2: frames, HPACK, streams, gzip and
 * the caps, GOAWAY and retries) on arbitrary server bytes. A connection without a socket
 * (tests/unit/h2fake.h) has three requests in flight (GET, POST with a body, HEAD) when the
 * bytes arrive, cut into pieces the first byte chooses; then the server closes.
 *
 * Input: [cut] [flags] server bytes. An empty SETTINGS frame is fed first, so that inputs
 * start at the frames after the server's preface. flags & 1: a 64-byte body cap.
 */
#include "../unit/h2fake.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    uint8_t cut = data[0], flags = data[1];
    data += 2;
    size -= 2;
    uint64_t cap = flags & 1 ? 64 : 1 << 20;

    struct h2fake f;
    h2fake_open(&f);
    h2fake_request(&f, "GET /a HTTP/1.1\r\nHost: fuzz.test\r\nAccept-Encoding: gzip\r\n\r\n", 0,
                   cap);
    h2fake_request(&f, "POST /b HTTP/1.1\r\nHost: fuzz.test\r\nContent-Length: 5\r\n\r\nhello", 0,
                   cap);
    h2fake_request(&f, "HEAD /c HTTP/1.1\r\nHost: fuzz.test\r\n\r\n", 0, cap);
    static const uint8_t settings[9] = {0, 0, 0, NGHTTP2_SETTINGS, 0, 0, 0, 0, 0};
    h2fake_feed(&f, settings, sizeof(settings));
    size_t piece = cut ? cut : size;
    for (size_t off = 0; off < size;) {
        size_t n = CC_MIN(piece, size - off);
        h2fake_feed(&f, data + off, n);
        off += n;
    }
    h2fake_end(&f, 0);
    h2fake_close(&f);
    return 0;
}
