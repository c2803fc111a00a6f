/* SPDX-License-Identifier: MIT */
/* resolve.c: uv_getaddrinfo() with shared in-flight lookups and a TTL cache; see resolve.h. */
#include "core/resolve.h"
#include "core/err.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>

/*
 * One answer for one name: cached, and referenced by every request it is being delivered to,
 * so that evicting it from the cache never pulls it from under a pending delivery.
 */
struct resolve_entry {
    uint32_t refs;
    int status;          /* 0 or a negative UV_EAI_* code */
    bool bad_name;       /* rejected by us before any lookup */
    uint32_t n;          /* addresses in |addrs|, port 0 */
    uint64_t hash;       /* of |host| */
    uint64_t expires_ms; /* on the loop clock (uv_now); UINT64_MAX: an IP literal */
    char *host;
    union cc_sockaddr addrs[CC_RESOLVE_MAX_ADDRS];
};

/* A getaddrinfo() call in flight and the requests waiting for it. */
struct resolve_query {
    uv_getaddrinfo_t gai;
    struct cc_resolver *r; /* NULL once the resolver closed: the query only frees itself */
    struct resolve_query *prev, *next;
    struct cc_resolve_req *waiters; /* doubly linked through req->prev/next */
    uint64_t hash;
    char host[];
};

struct cc_resolve_req {
    struct cc_resolver *r;
    struct resolve_query *q; /* the lookup it waits on, or NULL once answered */
    struct resolve_entry *e; /* the answer (a reference) once answered */
    cc_resolve_cb *cb;
    void *data;
    struct cc_resolve_req *prev, *next; /* in q->waiters, or in the resolver's ready list */
    uint16_t port;
};

static void entry_unref(struct resolve_entry *e)
{
    if (e && --e->refs == 0) {
        cc_free(e->host);
        cc_free(e);
    }
}

static struct resolve_entry *entry_new(const char *host, uint64_t hash)
{
    struct resolve_entry *e = cc_xcalloc(1, sizeof(*e));
    e->refs = 1;
    e->hash = hash;
    e->host = cc_xstrdup(host);
    return e;
}

static uint64_t host_hash(const char *host)
{
    return cc_hash(CC_HASH_INIT, host, strlen(host));
}

/* ---- cache ---------------------------------------------------------------------------------- */

static void cache_remove_at(struct cc_resolver *r, uint32_t i)
{
    entry_unref(r->cache[i]);
    r->cache[i] = r->cache[--r->cache_n];
}

/* The live entry for |host|, or NULL; an expired one is dropped on the way. */
static struct resolve_entry *cache_find(struct cc_resolver *r, const char *host, uint64_t hash)
{
    for (uint32_t i = 0; i < r->cache_n; i++) {
        struct resolve_entry *e = r->cache[i];
        if (e->hash != hash || strcmp(e->host, host) != 0) continue;
        if (e->expires_ms <= uv_now(r->loop)) {
            cache_remove_at(r, i);
            return NULL;
        }
        return e;
    }
    return NULL;
}

/* Adds a reference to |e| to the cache, replacing the entry for the same name or the oldest. */
static void cache_put(struct cc_resolver *r, struct resolve_entry *e)
{
    for (uint32_t i = 0; i < r->cache_n; i++) {
        if (r->cache[i]->hash == e->hash && strcmp(r->cache[i]->host, e->host) == 0) {
            cache_remove_at(r, i);
            break;
        }
    }
    if (r->cache_n == CC_RESOLVE_CACHE_MAX) {
        uint32_t oldest = 0;
        for (uint32_t i = 1; i < r->cache_n; i++)
            if (r->cache[i]->expires_ms < r->cache[oldest]->expires_ms) oldest = i;
        cache_remove_at(r, oldest);
    }
    if (r->cache_n == r->cache_cap) {
        size_t cap = r->cache_cap;
        cc_grow((void **)&r->cache, &cap, r->cache_n + 1, sizeof(*r->cache));
        r->cache_cap = (uint32_t)cap;
    }
    e->refs++;
    r->cache[r->cache_n++] = e;
}

unsigned cc_resolver_lookups(const struct cc_resolver *r)
{
    unsigned n = 0;
    for (const struct resolve_query *q = r->queries; q; q = q->next)
        n++;
    return n;
}

void cc_resolver_flush(struct cc_resolver *r)
{
    while (r->cache_n > 0)
        cache_remove_at(r, r->cache_n - 1);
}

/* ---- requests ------------------------------------------------------------------------------- */

static struct cc_resolve_req *req_new(struct cc_resolver *r)
{
    struct cc_resolve_req *req = r->spare;
    if (req)
        r->spare = req->next;
    else
        req = cc_xmalloc(sizeof(*req));
    memset(req, 0, sizeof(*req));
    req->r = r;
    return req;
}

static void req_free(struct cc_resolve_req *req)
{
    struct cc_resolver *r = req->r;
    entry_unref(req->e);
    if (r->closing) {
        cc_free(req);
        return;
    }
    req->next = r->spare;
    r->spare = req;
}

static void ready_push(struct cc_resolver *r, struct cc_resolve_req *req, struct resolve_entry *e)
{
    req->q = NULL;
    req->e = e;
    e->refs++;
    req->next = NULL;
    req->prev = r->ready_tail;
    if (r->ready_tail)
        r->ready_tail->next = req;
    else
        r->ready_head = req;
    r->ready_tail = req;
}

static void ready_unlink(struct cc_resolver *r, struct cc_resolve_req *req)
{
    if (req->prev)
        req->prev->next = req->next;
    else
        r->ready_head = req->next;
    if (req->next)
        req->next->prev = req->prev;
    else
        r->ready_tail = req->prev;
}

static void resolver_on_idle(uv_idle_t *h);

static void ready_kick(struct cc_resolver *r)
{
    if (!uv_is_active((uv_handle_t *)&r->idle)) uv_idle_start(&r->idle, resolver_on_idle);
}

/* Delivers one answer. The callback may call cc_resolve() or cancel other requests. */
static void deliver(struct cc_resolve_req *req)
{
    struct resolve_entry *e = req->e;
    union cc_sockaddr addrs[CC_RESOLVE_MAX_ADDRS];
    char msg[512];
    struct cc_resolve_result res = {.status = e->status, .host = e->host, .addrs = addrs};

    if (e->status == 0) {
        uint16_t port = htons(req->port);
        for (uint32_t i = 0; i < e->n; i++) {
            addrs[i] = e->addrs[i];
            if (addrs[i].sa.sa_family == AF_INET)
                addrs[i].in.sin_port = port;
            else
                addrs[i].in6.sin6_port = port;
        }
        res.n = e->n;
    } else {
        snprintf(msg, sizeof(msg), "cannot resolve host '%s': %s", e->host,
                 e->bad_name ? "invalid host name" : cc_strerror(e->status));
        res.error = msg;
    }
    cc_resolve_cb *cb = req->cb;
    void *data = req->data;
    req->e = NULL; /* keep our reference: |res| points into |e| until the callback returns */
    req_free(req); /* before the callback, which may reuse it through cc_resolve() */
    cb(&res, data);
    entry_unref(e);
}

static void resolver_on_idle(uv_idle_t *h)
{
    struct cc_resolver *r = cc_container_of(h, struct cc_resolver, idle);
    /* Only what was ready on entry: answers queued by these callbacks wait for the next turn,
     * so a callback that resolves again and again cannot starve the loop. */
    size_t n = 0;
    for (struct cc_resolve_req *req = r->ready_head; req; req = req->next)
        n++;
    while (n-- > 0 && r->ready_head && !r->closing) {
        struct cc_resolve_req *req = r->ready_head;
        ready_unlink(r, req);
        deliver(req);
    }
    if (!r->ready_head && !r->closing) uv_idle_stop(&r->idle);
}

/* ---- names ---------------------------------------------------------------------------------- */

/* Parses an IPv4 or IPv6 literal, brackets allowed around the latter. */
static bool parse_literal(const char *host, union cc_sockaddr *out)
{
    memset(out, 0, sizeof(*out));
    if (uv_ip4_addr(host, 0, &out->in) == 0) return true;
    size_t len = strlen(host);
    if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
        char inner[INET6_ADDRSTRLEN + 64];
        if (len - 2 >= sizeof(inner)) return false;
        memcpy(inner, host + 1, len - 2);
        inner[len - 2] = '\0';
        return uv_ip6_addr(inner, 0, &out->in6) == 0;
    }
    return strchr(host, ':') && uv_ip6_addr(host, 0, &out->in6) == 0;
}

/*
 * A host name as DNS and /etc/hosts accept it (RFC 1123 labels, plus '_' that container
 * names use): labels of 1 to 63 letters, digits, '-' or '_', 253 bytes in all, one trailing
 * dot allowed. Anything else cannot resolve, so it fails here without a lookup.
 */
static bool host_name_ok(const char *host)
{
    size_t len = strlen(host), label = 0;
    if (len > 0 && host[len - 1] == '.') len--;
    if (len == 0 || len > 253) return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)host[i];
        if (ch == '.') {
            if (label == 0) return false;
            label = 0;
            continue;
        }
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '-' || ch == '_';
        if (!ok || ++label > 63) return false;
    }
    return label > 0;
}

/* ---- getaddrinfo ---------------------------------------------------------------------------- */

static void query_unlink(struct cc_resolver *r, struct resolve_query *q)
{
    if (q->prev)
        q->prev->next = q->next;
    else
        r->queries = q->next;
    if (q->next) q->next->prev = q->prev;
}

static void resolver_on_gai(uv_getaddrinfo_t *gai, int status, struct addrinfo *res)
{
    struct resolve_query *q = cc_container_of(gai, struct resolve_query, gai);
    struct cc_resolver *r = q->r;

    if (!r) goto out; /* the resolver closed meanwhile */
    query_unlink(r, q);

    struct resolve_entry *e = entry_new(q->host, q->hash);
    if (status == 0) {
        for (struct addrinfo *ai = res; ai && e->n < CC_RESOLVE_MAX_ADDRS; ai = ai->ai_next) {
            if (ai->ai_family == AF_INET && ai->ai_addrlen >= sizeof(struct sockaddr_in))
                memcpy(&e->addrs[e->n++].in, ai->ai_addr, sizeof(struct sockaddr_in));
            else if (ai->ai_family == AF_INET6 && ai->ai_addrlen >= sizeof(struct sockaddr_in6))
                memcpy(&e->addrs[e->n++].in6, ai->ai_addr, sizeof(struct sockaddr_in6));
        }
        if (e->n == 0) status = UV_EAI_ADDRFAMILY;
    }
    e->status = status;
    e->expires_ms = uv_now(r->loop) + r->ttl_ms;
    /* Cache answers and definite "no such name"s; not transient failures nor cancellations. */
    if (status == 0 || status == UV_EAI_NONAME || status == UV_EAI_NODATA ||
        status == UV_EAI_ADDRFAMILY)
        cache_put(r, e);
    while (q->waiters) {
        struct cc_resolve_req *req = q->waiters;
        q->waiters = req->next;
        ready_push(r, req, e);
    }
    entry_unref(e);
    ready_kick(r);
out:
    uv_freeaddrinfo(res);
    cc_free(q);
}

/* ---- public --------------------------------------------------------------------------------- */

void cc_resolver_init(struct cc_resolver *r, uv_loop_t *loop, uint32_t ttl_ms)
{
    memset(r, 0, sizeof(*r));
    r->loop = loop;
    r->ttl_ms = ttl_ms ? ttl_ms : CC_RESOLVE_TTL_MS;
    CC_ASSERT(uv_idle_init(loop, &r->idle) == 0);
}

int cc_resolve(struct cc_resolver *r, const char *host, uint16_t port, cc_resolve_cb *cb,
               void *data, struct cc_resolve_req **out)
{
    if (r->closing) return CC_ECLOSED;
    if (!host || !*host || !cb) return UV_EINVAL;

    uint64_t hash = host_hash(host);
    struct cc_resolve_req *req = req_new(r);
    req->cb = cb;
    req->data = data;
    req->port = port;
    if (out) *out = req;

    struct resolve_entry *e = cache_find(r, host, hash);
    if (e) {
        ready_push(r, req, e);
        ready_kick(r);
        return 0;
    }

    union cc_sockaddr lit;
    bool literal = parse_literal(host, &lit);
    if (literal || !host_name_ok(host)) {
        e = entry_new(host, hash);
        if (literal) {
            e->addrs[0] = lit;
            e->n = 1;
            e->expires_ms = UINT64_MAX;
        } else {
            e->status = UV_EAI_NONAME;
            e->bad_name = true;
            e->expires_ms = uv_now(r->loop) + r->ttl_ms;
        }
        cache_put(r, e);
        ready_push(r, req, e);
        entry_unref(e);
        ready_kick(r);
        return 0;
    }

    struct resolve_query *q;
    for (q = r->queries; q; q = q->next)
        if (q->hash == hash && strcmp(q->host, host) == 0) break;
    if (!q) {
        size_t len = strlen(host);
        q = cc_xmalloc(sizeof(*q) + len + 1);
        memset(q, 0, sizeof(*q));
        memcpy(q->host, host, len + 1);
        q->hash = hash;
        q->r = r;
        struct addrinfo hints = {
            .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG};
        int rv = uv_getaddrinfo(r->loop, &q->gai, resolver_on_gai, host, NULL, &hints);
        if (rv < 0) {
            /* Could not even start: answer with the error, uncached. */
            cc_free(q);
            e = entry_new(host, hash);
            e->status = rv;
            ready_push(r, req, e);
            entry_unref(e);
            ready_kick(r);
            return 0;
        }
        q->next = r->queries;
        if (r->queries) r->queries->prev = q;
        r->queries = q;
    }
    req->q = q;
    req->prev = NULL;
    req->next = q->waiters;
    if (q->waiters) q->waiters->prev = req;
    q->waiters = req;
    return 0;
}

void cc_resolve_cancel(struct cc_resolve_req *req)
{
    struct resolve_query *q = req->q;
    if (q) {
        /* The lookup itself goes on: its answer still fills the cache. */
        if (req->prev)
            req->prev->next = req->next;
        else
            q->waiters = req->next;
        if (req->next) req->next->prev = req->prev;
    } else {
        ready_unlink(req->r, req);
    }
    req_free(req);
}

static void resolver_on_idle_closed(uv_handle_t *h)
{
    struct cc_resolver *r = cc_container_of(h, struct cc_resolver, idle);
    if (r->on_close) r->on_close(r);
}

void cc_resolver_close(struct cc_resolver *r, void (*on_close)(struct cc_resolver *r))
{
    if (r->closing) return;
    r->closing = true;
    r->on_close = on_close;
    while (r->ready_head) {
        struct cc_resolve_req *req = r->ready_head;
        ready_unlink(r, req);
        req_free(req);
    }
    for (struct resolve_query *q = r->queries, *next; q; q = next) {
        next = q->next;
        while (q->waiters) {
            struct cc_resolve_req *req = q->waiters;
            q->waiters = req->next;
            req_free(req);
        }
        q->r = NULL;
        uv_cancel((uv_req_t *)&q->gai); /* fails harmlessly when already running */
    }
    r->queries = NULL;
    cc_resolver_flush(r);
    cc_free(r->cache);
    r->cache = NULL;
    r->cache_cap = 0;
    while (r->spare) {
        struct cc_resolve_req *req = r->spare;
        r->spare = req->next;
        cc_free(req);
    }
    uv_close((uv_handle_t *)&r->idle, resolver_on_idle_closed);
}

size_t cc_sockaddr_len(const struct sockaddr *sa)
{
    switch (sa->sa_family) {
    case AF_INET:
        return sizeof(struct sockaddr_in);
    case AF_INET6:
        return sizeof(struct sockaddr_in6);
    default:
        return 0;
    }
}

char *cc_sockaddr_str(const struct sockaddr *sa, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN + 1];
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        uv_ip4_name(in, ip, sizeof(ip));
        snprintf(buf, len, "%s:%u", ip, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        uv_ip6_name(in6, ip, sizeof(ip));
        snprintf(buf, len, "[%s]:%u", ip, ntohs(in6->sin6_port));
    } else {
        snprintf(buf, len, "(address family %d)", sa->sa_family);
    }
    return buf;
}
