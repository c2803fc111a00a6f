/* SPDX-License-Identifier: MIT */
/*
 * resolve.h: asynchronous host name resolution for one libuv loop, with a small cache.
 *
 * A resolver belongs to one loop (one worker thread) and is owned by the caller, who embeds or
 * allocates it. Names go to uv_getaddrinfo() on libuv's thread pool; concurrent lookups of the
 * same name share one getaddrinfo() call, and answers (failures included) are cached for a TTL.
 * IP literals ("127.0.0.1", "::1", "[::1]") and cache hits never leave the loop thread, but
 * their callback still runs from the loop, on its next turn, never inside cc_resolve().
 * Malformed names ("a..b", "has space", a label over 63 bytes) fail without any lookup.
 */
#ifndef CC_RESOLVE_H
#define CC_RESOLVE_H

#include "core/common.h"

#include <netinet/in.h>
#include <uv.h>

/* An IPv4 or IPv6 socket address; |sa.sa_family| says which. */
union cc_sockaddr {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
};

/* Addresses kept per name: the first few getaddrinfo() returns, in its order. */
#define CC_RESOLVE_MAX_ADDRS 8

struct cc_resolve_result {
    int status;        /* 0, or a negative UV_EAI_* / UV_* code */
    const char *host;  /* the name as given to cc_resolve() */
    const char *error; /* status < 0: "cannot resolve host 'x': unknown node or service" */
    size_t n;          /* status == 0: 1 to CC_RESOLVE_MAX_ADDRS addresses */
    const union cc_sockaddr *addrs; /* with the requested port set */
};

/*
 * Called once per cc_resolve() that returned 0 and was not cancelled, from the loop. |res| and
 * everything it points to are valid only during the call: copy the address you connect to.
 */
typedef void cc_resolve_cb(const struct cc_resolve_result *res, void *data);

struct cc_resolve_req; /* a pending lookup; owned by the resolver */
struct resolve_entry;  /* private */
struct resolve_query;  /* private */

/* Fields are private; the struct is public so that it can be embedded. */
struct cc_resolver {
    uv_loop_t *loop;
    uv_idle_t idle;  /* runs while answers wait for delivery on the next loop turn */
    uint64_t ttl_ms; /* how long an answer stays in the cache */
    struct resolve_entry **cache;
    uint32_t cache_n, cache_cap;
    struct cc_resolve_req *ready_head, *ready_tail; /* answered, to deliver in order */
    struct resolve_query *queries;                  /* getaddrinfo() calls in flight */
    struct cc_resolve_req *spare;                   /* free list of request objects */
    void (*on_close)(struct cc_resolver *r);
    bool closing;
};

/* Default TTL of cached answers, and the most names a resolver keeps. */
#define CC_RESOLVE_TTL_MS    30000
#define CC_RESOLVE_CACHE_MAX 64

/*
 * Initialises |r| on |loop|; |ttl_ms| 0 means CC_RESOLVE_TTL_MS. Cannot fail. The loop must run
 * the resolver's idle handle until cc_resolver_close()'s callback.
 */
void cc_resolver_init(struct cc_resolver *r, uv_loop_t *loop, uint32_t ttl_ms);

/*
 * Starts closing |r|: every pending lookup is cancelled (its callback will not run and its
 * cc_resolve_req handle becomes invalid, so forget them before calling this), the cache
 * is emptied, and |on_close| (may be NULL) runs from the loop once |r| may be freed. A
 * getaddrinfo() call still running on the thread pool is left to finish on its own; the loop
 * stays alive until it does. Idempotent: a second call does nothing.
 */
void cc_resolver_close(struct cc_resolver *r, void (*on_close)(struct cc_resolver *r));

/*
 * Resolves |host| (a name or an IP literal, copied) for TCP to |port| and calls |cb| with the
 * addresses, from the loop, never from inside this call. When |out| is not NULL it receives a
 * handle for cc_resolve_cancel(), valid until |cb| runs or the request is cancelled.
 *
 * Returns 0 (then |cb| runs exactly once unless cancelled), or, without calling |cb|:
 *   UV_EINVAL   |host| is NULL or empty
 *   CC_ECLOSED  |r| is closing
 * Lookup failures, malformed names included, arrive through |cb| with a message naming |host|.
 */
int cc_resolve(struct cc_resolver *r, const char *host, uint16_t port, cc_resolve_cb *cb,
               void *data, struct cc_resolve_req **out);

/* Cancels a pending lookup: its callback will not run. |req| is invalid afterwards. */
void cc_resolve_cancel(struct cc_resolve_req *req);

/* getaddrinfo() calls in flight (for diagnostics and tests). */
unsigned cc_resolver_lookups(const struct cc_resolver *r);

/* Empties the cache (the next lookup of every name goes to getaddrinfo()). */
void cc_resolver_flush(struct cc_resolver *r);

/*
 * Writes "127.0.0.1:8080" or "[::1]:443" for |sa| into |buf| (size |len|, at least 56 bytes
 * for any address) and returns |buf|.
 */
char *cc_sockaddr_str(const struct sockaddr *sa, char *buf, size_t len);

/* The byte length of |sa| for its family (for bind(2) and friends); 0 for other families. */
size_t cc_sockaddr_len(const struct sockaddr *sa);

#endif
