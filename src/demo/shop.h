/* SPDX-License-Identifier: MIT */
/*
 * shop.h: the built-in demo target, a small web shop with a JSON API (docs/demo-server.md).
 *
 * GET / and /health, POST /login (any non-empty user name, password "secret"), GET /items and
 * /items/{id}, POST and GET /cart and POST /checkout (with the session cookie or a bearer
 * token), GET /slow (answers after ?ms=, without blocking the loop) and GET /flaky (fails a
 * deterministic share of requests).
 *
 * One shop can serve several servers on several threads: sessions and carts are kept under a
 * mutex, the catalogue is read-only and the counters are atomic. Memory is fixed at creation:
 * at most max_sessions sessions (the least recently used one is evicted for a new login), each
 * cart holds a quantity per catalogue item, capped at CC_SHOP_MAX_QUANTITY.
 */
#ifndef CC_SHOP_H
#define CC_SHOP_H

#include "web/httpd.h"

#define CC_SHOP_ITEMS        20  /* catalogue size: item ids 1..20 */
#define CC_SHOP_MAX_QUANTITY 999 /* per item and cart; larger totals are clamped */

struct cc_shop;

struct cc_shop_opts {
    size_t max_sessions;  /* sessions kept at once (default 10000) */
    uint32_t flaky_every; /* GET /flaky without a query fails every Nth request (default 5) */
    uint32_t slow_ms;     /* GET /slow without ?ms= waits this long (default 200) */
    uint32_t slow_max_ms; /* ?ms= is clamped to this (default 10000) */
};

void cc_shop_opts_defaults(struct cc_shop_opts *o);

/* Creates a shop; |opts| is copied (NULL: defaults). Aborts on memory exhaustion only. */
struct cc_shop *cc_shop_new(const struct cc_shop_opts *opts);

/*
 * Adds the shop's routes to |s|. The shop must outlive every server it is mounted on. A slow
 * request still waiting when |s| closes is aborted and released by the shop.
 * Returns 0, or an error of cc_httpd_route().
 */
int cc_shop_mount(struct cc_shop *shop, struct cc_httpd *s);

/* Frees the shop, once every server it was mounted on has closed. */
void cc_shop_free(struct cc_shop *shop);

#endif
