/* SPDX-License-Identifier: MIT */
/*
 * sse.h: server-sent events (the WHATWG HTML "event stream" format), parsed from bytes fed in
 * any pieces. No sockets, no loop.
 *
 * Lines end with CRLF, LF or CR (a CR at the end of one piece and an LF at the start of the next
 * are one line end). A line "field: value" sets a field (one space after the colon is dropped);
 * "data" lines are joined with LF; an empty line ends the event, which is handed over when it
 * had data. Lines starting with ':' are comments. "id" and "retry" are read past, as a client
 * that does not reconnect may.
 */
#ifndef CC_SSE_H
#define CC_SSE_H

#include "core/common.h"
#include "core/strbuf.h"

/* An event: its type ("" when the stream named none: "message") and its data. Returns 0 to go
 * on, anything else to stop the feed, which returns it. */
typedef int cc_sse_cb(void *ud, const char *event, size_t event_len, const char *data,
                      size_t data_len);

struct cc_sse {
    struct cc_strbuf line; /* a line split across pieces */
    struct cc_strbuf data; /* the event's data so far */
    char event[64];        /* the event type (longer ones are cut) */
    uint32_t event_len;
    bool cr;       /* the last byte fed was a CR */
    bool has_data; /* a data field came for this event */
    size_t max;    /* bytes a line, or an event's data, may take */
};

/* Prepares |p|; |max| (0: 1 MiB) bounds a line and an event's data. */
void cc_sse_init(struct cc_sse *p, size_t max);
void cc_sse_release(struct cc_sse *p);
/* Forgets a half-read event (for reuse on another stream), keeping the buffers. */
void cc_sse_reset(struct cc_sse *p);

/*
 * Parses |len| bytes, calling |cb| for each event they complete. Returns 0, CC_ETOOBIG when a
 * line or an event's data passes the bound, or the callback's non-zero result (the rest of the
 * bytes are then not read).
 */
int cc_sse_feed(struct cc_sse *p, const char *buf, size_t len, cc_sse_cb *cb, void *ud);

#endif
