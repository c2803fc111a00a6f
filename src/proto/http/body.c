/* SPDX-License-Identifier: MIT */
/*
 * body.c: response bodies: gzip and deflate decoded as they arrive, kept up to the exchange's
 * cap (a larger body is a failure, unless the request streams: then it is counted, not kept).
 */
#include "proto/http/http.h"

#include <stdio.h>
#include <strings.h>

static int body_error(struct http_exchange *ex, int code, const char *msg)
{
    ex->error = code;
    cc_free(ex->errmsg);
    ex->errmsg = cc_xstrdup(msg);
    return -1;
}

static int keep(struct http_exchange *ex, const char *data, size_t len)
{
    ex->body_bytes += len;
    if (ex->stream) return 0;
    if (ex->body.len + len > ex->max_body) {
        char msg[256];
        snprintf(msg, sizeof(msg),
                 "response body larger than max_body (%llu bytes); pass stream = true to count "
                 "it without keeping it",
                 (unsigned long long)ex->max_body);
        return body_error(ex, CC_ETOOBIG, msg);
    }
    http_buf_append(&ex->body, data, len);
    return 0;
}

int http_body_begin(struct http_exchange *ex, const char *ce)
{
    if (!ce) return 0;
    while (*ce == ' ')
        ce++;
    if (strcasecmp(ce, "gzip") != 0 && strcasecmp(ce, "x-gzip") != 0 &&
        strcasecmp(ce, "deflate") != 0)
        return 0; /* identity, or an encoding we did not ask for: kept as it came */
    memset(&ex->zs, 0, sizeof(ex->zs));
    if (inflateInit2(&ex->zs, 15 + 32) != Z_OK) /* zlib or gzip header, detected */
        return body_error(ex, CC_EPROTO, "cannot start decompressing the body");
    ex->inflating = true;
    ex->inflated_all = false;
    ex->inflate_raw = false;
    return 0;
}

static int inflate_some(struct http_exchange *ex, const char *data, size_t len)
{
    char out[16384];
    ex->zs.next_in = (Bytef *)data;
    ex->zs.avail_in = (uInt)len;
    while (ex->zs.avail_in > 0) {
        ex->zs.next_out = (Bytef *)out;
        ex->zs.avail_out = sizeof(out);
        int rc = inflate(&ex->zs, Z_NO_FLUSH);
        size_t produced = sizeof(out) - ex->zs.avail_out;
        if (rc == Z_DATA_ERROR && !ex->inflate_raw && ex->zs.total_out == 0 &&
            ex->wire_bytes == len) {
            /* "deflate" sent raw, without the zlib header: start again that way, once */
            ex->inflate_raw = true;
            inflateEnd(&ex->zs);
            memset(&ex->zs, 0, sizeof(ex->zs));
            if (inflateInit2(&ex->zs, -15) != Z_OK) break;
            ex->zs.next_in = (Bytef *)data;
            ex->zs.avail_in = (uInt)len;
            continue;
        }
        if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR)
            return body_error(ex, CC_EPROTO, "the compressed body is corrupt");
        if (produced && keep(ex, out, produced) != 0) return -1;
        if (rc == Z_STREAM_END) {
            ex->inflated_all = true;
            break;
        }
        if (rc == Z_BUF_ERROR && produced == 0) break;
    }
    return 0;
}

int http_body_feed(struct http_exchange *ex, const char *data, size_t len)
{
    ex->wire_bytes += len;
    if (!ex->inflating) return keep(ex, data, len);
    return inflate_some(ex, data, len);
}

int http_body_end(struct http_exchange *ex)
{
    if (!ex->inflating) return 0;
    inflateEnd(&ex->zs);
    ex->inflating = false;
    if (!ex->inflated_all && ex->wire_bytes > 0)
        return body_error(ex, CC_EPROTO, "the compressed body ended too early");
    return 0;
}
