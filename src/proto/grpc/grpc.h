/* SPDX-License-Identifier: MIT */
/*
 * grpc.h: gRPC calls over the HTTP/2 client (src/proto/http).
 *
 * A call is one HTTP/2 exchange: a POST to "/package.Service/Method" whose body is a stream of
 * length-prefixed messages (frame.h), answered by a head, messages, and trailers that carry
 * grpc-status and grpc-message. A unary call is an ordinary exchange that ends once (its reply
 * read from the whole body at the end); a streaming call (struct grpc_call) keeps its request
 * open and takes its response as it comes, through the exchange's events.
 *
 * Statuses: a call's outcome is always a gRPC status code with a message. What the server says
 * in its trailers wins; otherwise the code is derived from what went wrong, as gRPC's own
 * clients do (a connection that failed is UNAVAILABLE, a stream the server reset with
 * CANCEL is CANCELLED, an HTTP status without grpc-status maps by the table of gRPC's
 * "HTTP to gRPC status code mapping", a deadline that passed is DEADLINE_EXCEEDED...).
 */
#ifndef CC_GRPC_H
#define CC_GRPC_H

#include "proto/grpc/frame.h"
#include "proto/http/http.h"

enum grpc_code {
    GRPC_OK = 0,
    GRPC_CANCELLED = 1,
    GRPC_UNKNOWN = 2,
    GRPC_INVALID_ARGUMENT = 3,
    GRPC_DEADLINE_EXCEEDED = 4,
    GRPC_NOT_FOUND = 5,
    GRPC_ALREADY_EXISTS = 6,
    GRPC_PERMISSION_DENIED = 7,
    GRPC_RESOURCE_EXHAUSTED = 8,
    GRPC_FAILED_PRECONDITION = 9,
    GRPC_ABORTED = 10,
    GRPC_OUT_OF_RANGE = 11,
    GRPC_UNIMPLEMENTED = 12,
    GRPC_INTERNAL = 13,
    GRPC_UNAVAILABLE = 14,
    GRPC_DATA_LOSS = 15,
    GRPC_UNAUTHENTICATED = 16,
};

#define GRPC_DEFAULT_MAX_MESSAGE (4u << 20) /* gRPC's default receive limit */

/* "UNAVAILABLE" for 14; "UNKNOWN" for codes outside 0..16. */
const char *grpc_code_name(int code);

/*
 * Writes the request head of a call into |b| (empty): the HTTP/1.1 form the HTTP/2 client
 * reads back into its header list: POST |path|, Host |authority|, content-type, te, user-agent,
 * and grpc-timeout when |timeout_ms| is not 0. The caller adds metadata lines
 * (grpc_head_metadata) and ends the head with grpc_head_end().
 */
void grpc_head_begin(struct http_buf *b, const char *path, const char *authority,
                     uint64_t timeout_ms);
/*
 * Adds one metadata entry. Names are lower-cased; a name ending in "-bin" has its value sent
 * in base64. Returns 0, or -1 with a sentence in |err| (a reserved or malformed name, a value
 * with characters HTTP/2 cannot carry).
 */
int grpc_head_metadata(struct http_buf *b, const char *name, size_t nl, const char *value,
                       size_t vl, char *err, size_t errlen);
/* Ends the head; returns its length (the exchange's req_head). */
uint32_t grpc_head_end(struct http_buf *b);

/* The response's metadata: |ex|'s headers (|first| 0, |count| ex->nhead) or trailers. */
struct grpc_meta {
    const char *p; /* "name\0value\0" pairs */
    size_t len;
    uint32_t count;
};

/*
 * The status of a finished exchange (on_done): its code, and its message (percent-decoded
 * grpc-message, or a sentence saying what went wrong) appended to |msg|.
 */
int grpc_exchange_status(const struct http_exchange *ex, struct http_buf *msg);

/*
 * A unary call's reply, from the whole body of a finished exchange: its status, and when that
 * is OK, the one message in *|reply| (pointing into ex->body). A body that is not exactly one
 * well-framed uncompressed message no longer than |max| is INTERNAL (or RESOURCE_EXHAUSTED),
 * whatever the trailers said.
 */
int grpc_unary_reply(const struct http_exchange *ex, uint32_t max, const char **reply, size_t *len,
                     struct http_buf *msg);

/* Base64 (RFC 4648, unpadded) of binary metadata, and back (padding optional). */
void grpc_base64_encode(struct http_buf *out, const char *p, size_t n);
int grpc_base64_decode(struct http_buf *out, const char *p, size_t n);
/* Percent-decodes grpc-message (RFC 3986 style, as gRPC encodes it) onto |out|. */
void grpc_percent_decode(struct http_buf *out, const char *p, size_t n);

/* ---- streaming calls ---------------------------------------------------------------------- */

struct grpc_call {
    struct http_exchange *ex; /* NULL once the call ended */
    struct grpc_deframer df;
    struct http_buf inbox; /* messages received, not yet read: 4-byte length, then bytes */
    size_t inbox_off;      /* where the next unread message starts */
    uint32_t unread;       /* messages in the inbox */
    uint64_t max_unread;   /* bytes the inbox may hold: beyond, RESOURCE_EXHAUSTED */
    uint64_t received;     /* message bytes received (the call's length in the statistics) */
    uint64_t messages;     /* messages received */
    bool head;             /* the response head came */
    bool ended;            /* the status is known */
    bool send_closed;      /* the request is ended (END_STREAM sent or queued) */
    bool one_reply;        /* the method answers with one message (not server-streaming) */
    int code;              /* once ended */
    struct http_buf message;
    struct http_buf meta;   /* once ended: the head's pairs, then the trailers' */
    uint32_t nhead, ntrail; /* pairs in |meta| */
    uint64_t t_start, t_end;
    /* the owner is told of everything a waiting user might want: the head, a message, request
     * bytes sent, the end; called from the loop (never inside a grpc_call_* function) */
    void (*on_change)(struct grpc_call *call);
    void *owner;
};

/* |call| (zeroed) takes |ex|: a request with its head written (req_head set) and perhaps a
 * first message, started on pool |p|. |max_message| caps each message received. */
void grpc_call_start(struct grpc_call *call, struct http_pool *p, struct http_exchange *ex,
                     uint32_t max_message);
/* Sends one message (|len| bytes, prefixed here) and ends the request after it when |end|
 * (|msg| may then be NULL: only the end). Returns 0, or -1 when the call has ended. */
int grpc_call_send(struct grpc_call *call, const char *msg, size_t len, bool end);
/* Request bytes not yet on their way: a sender waits while this is high. */
size_t grpc_call_unsent(const struct grpc_call *call);
/* Takes the next message received, if any: true and the message (valid until the next call). */
bool grpc_call_next(struct grpc_call *call, const char **msg, size_t *len);
/* The response head (before the end: read from the exchange; after: from |meta|). */
struct grpc_meta grpc_call_headers(const struct grpc_call *call);
struct grpc_meta grpc_call_trailers(const struct grpc_call *call);
/* Ends the call now with |code| and |msg|, resetting its stream (CANCEL). No on_change. */
void grpc_call_cancel(struct grpc_call *call, int code, const char *msg);
/* Frees what the call holds (cancelling it first if it is still going). */
void grpc_call_release(struct grpc_call *call);

#endif
