/* SPDX-License-Identifier: MIT */
/*
 * openai.h: requests to OpenAI-style APIs (chat completions, completions, embeddings) on the
 * HTTP client, with the LLM metrics of each: time to first token, the gaps between tokens,
 * time per output token, end-to-end latency, output tokens and tokens per second.
 *
 * A streamed response (server-sent events) is read as it arrives, through the HTTP client's
 * response events (proto/http: resp_events, on_event): each chunk is parsed by sse.c, read by
 * chunk.c, and stamped with the monotonic clock when its bytes came off the socket. Nothing of
 * this calls Lua. The statistics are recorded in C when the request ends (see cc_oai_record()
 * for the entries and docs/openai.md for the exact definitions).
 */
#ifndef CC_OPENAI_H
#define CC_OPENAI_H

#include "proto/http/http.h"
#include "proto/openai/chunk.h"
#include "proto/openai/sse.h"

/* Service levels a request must meet to count as goodput; 0 leaves one out. */
struct cc_oai_slo {
    double ttft_ms;      /* time to first token, at most */
    double tpot_ms;      /* time per output token, at most */
    double itl_ms;       /* every gap between tokens, at most */
    double e2e_ms;       /* end-to-end latency, at most */
    double tokens_per_s; /* output tokens per second, at least */
};

/* The statistics entries of one request name. */
struct cc_oai_keys {
    char *name; /* owned */
    size_t name_len;
    const struct cc_ikey *req, *ttft, *itl, *tpot, *e2e, *tokens, *tps, *goodput;
};

struct cc_oai_req {
    struct cc_waiter waiter; /* first: the fiber waits on the request */
    struct cc_fiber *fiber;
    struct http_exchange *ex; /* while in flight */
    struct http_vm *hv;
    void (*on_done)(struct cc_oai_req *r); /* the owner's: the request is over (from the loop) */
    void *udata;
    struct cc_oai_req *next; /* in the owner's free list */

    /* set by the owner before cc_oai_start() */
    bool stream;    /* the response is an event stream */
    bool keep_text; /* gather the content text */
    bool keep_body; /* keep a non-streamed body for the script (up to max_body) */
    uint64_t max_body;

    /* the outcome */
    bool starting; /* inside cc_oai_start(): an end that comes now is kept for it */
    bool done;
    bool got_head;
    bool saw_done; /* data: [DONE] */
    int status;    /* HTTP status, 0 if none came */
    int err;       /* 0, or a negative code: errmsg says what failed */
    char errmsg[600];
    char reason[64];
    char finish_reason[32];
    uint64_t t0, t_first, t_last, t_end; /* monotonic ns: start, first and last token, end */
    uint32_t chunks;                     /* chunks (or a whole response) that carried output */
    int64_t usage_out, usage_in;         /* the server's usage; -1 when it sent none */
    uint32_t embeddings;
    uint64_t *gaps; /* ns between consecutive output chunks */
    size_t ngaps, gaps_cap;
    uint64_t bytes; /* response body bytes */
    struct cc_sse sse;
    struct cc_strbuf text; /* the content text, when kept */
    struct cc_strbuf body; /* a non-streamed body (or an error's), up to max_body */
};

/* Prepares a request object (reusable: cc_oai_start() resets what it needs). */
void cc_oai_req_init(struct cc_oai_req *r);
void cc_oai_req_release(struct cc_oai_req *r);

/*
 * Starts |ex| (the request serialised by the owner) on pool |p| with |r| reading the response.
 * r->on_done runs when it is over, from the loop, unless it ended inside this call: then
 * r->done is true on return and on_done does not run.
 */
void cc_oai_start(struct cc_oai_req *r, struct http_pool *p, struct http_exchange *ex);

/* The waiting fiber was killed: the exchange is dropped, on_done will not run. */
void cc_oai_cancel(struct cc_oai_req *r);

/* Output tokens: the server's usage when it gave one, else the chunks that carried output
 * (streams); -1 when neither tells (a response without usage). */
int64_t cc_oai_tokens(const struct cc_oai_req *r);

/*
 * Records the request in the statistics of |vm| (as if made by |f|, for open-model timing):
 *   POST <name>   end-to-end latency; response length = output tokens; failed with the error
 *   and, for a success: TTFT, ITL (each gap), TPOT, E2E, TOKENS and TOKEN/S <name> (see
 *   docs/openai.md), and GOODPUT <name> when |slo| has a level and all are met.
 * The keys are found in |k| (filled on first use for its name).
 */
void cc_oai_record(struct cc_vm *vm, struct cc_fiber *f, struct cc_oai_keys *k,
                   const struct cc_oai_req *r, const struct cc_oai_slo *slo);

/* Whether |r| met every level of |slo| (that has one): the goodput test. */
bool cc_oai_slo_met(const struct cc_oai_req *r, const struct cc_oai_slo *slo);

/*
 * Whether the request has a time per output token: a stream with output and at least two
 * tokens. Its TPOT may be 0: every output chunk came in the same read.
 */
bool cc_oai_has_tpot(const struct cc_oai_req *r);

/* The request's time per output token in ns (0 when it has none). */
uint64_t cc_oai_tpot_ns(const struct cc_oai_req *r);

#endif
