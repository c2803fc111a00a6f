/* SPDX-License-Identifier: MIT */
/*
 * fuzz_http_response.c: the HTTP client's response path (llhttp with cicada's callbacks, gzip
 * and deflate decoding, the caps) on arbitrary bytes, cut into pieces the first bytes choose.
 */
#include "proto/http/http.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    uint8_t cut = data[0], flags = data[1];
    data += 2;
    size -= 2;

    struct http_exchange ex;
    memset(&ex, 0, sizeof(ex));
    ex.head = flags & 1;
    ex.stream = flags & 2;
    ex.max_body = flags & 4 ? 64 : 1 << 20;
    struct http_conn c;
    memset(&c, 0, sizeof(c));
    c.ex = &ex;
    h1_conn_init(&c);

    size_t piece = cut ? cut : size;
    for (size_t off = 0; off < size;) {
        size_t n = CC_MIN(piece, size - off);
        llhttp_errno_t rc = llhttp_execute(&c.parser, (const char *)data + off, n);
        off += n;
        if (rc == HPE_PAUSED) {
            http_body_end(&ex);
            break;
        }
        if (rc != HPE_OK) break;
    }
    if (ex.inflating) inflateEnd(&ex.zs);
    http_buf_free(&ex.req);
    http_buf_free(&ex.headers);
    http_buf_free(&ex.body);
    http_buf_free(&ex.reason);
    free(ex.errmsg);
    return 0;
}
