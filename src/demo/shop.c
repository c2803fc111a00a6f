/* SPDX-License-Identifier: MIT */
/* shop.c: the demo shop's catalogue, sessions, carts and endpoints. */
#include "demo/shop.h"

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TOKEN_LEN    32 /* hex characters of a session token */
#define USER_MAX     64 /* bytes of a user name */
#define PASSWORD     "secret"
#define NONE         UINT32_MAX
#define PER_PAGE_MAX 100

struct item {
    const char *name;
    int price_cents;
};

/* Item i has the id i + 1. */
static const struct item catalogue[CC_SHOP_ITEMS] = {
    {"Espresso beans, 1 kg", 2490},
    {"Pour-over kettle", 4900},
    {"Ceramic dripper", 2200},
    {"Paper filters, 100", 650},
    {"Burr grinder", 12900},
    {"Milk frother", 3450},
    {"Travel mug", 1890},
    {"Digital scale", 2790},
    {"Moka pot", 3290},
    {"French press", 2990},
    {"Cold brew jar", 2450},
    {"Tamper", 1590},
    {"Knock box", 1990},
    {"Cleaning tablets", 990},
    {"Green tea, 250 g", 1250},
    {"Chai spice mix", 890},
    {"Porcelain cups, 2", 2190},
    {"Barista apron", 2590},
    {"Descaler", 1190},
    {"Gift card", 2500},
};

struct session {
    char token[TOKEN_LEN + 1];
    char user[USER_MAX + 1];
    uint32_t qty[CC_SHOP_ITEMS];
    uint32_t hnext;        /* next slot in the same hash bucket */
    uint32_t lprev, lnext; /* recency list: head is the most recently used */
    bool used;
};

struct cc_shop {
    struct cc_shop_opts opts;
    uv_mutex_t lock; /* guards everything below up to the counters */
    struct session *slots;
    uint32_t *buckets;
    size_t nbuckets; /* a power of two */
    uint32_t lru_head, lru_tail;
    size_t nsessions;
    uint32_t free_slot;             /* slots [free_slot, max_sessions) were never used */
    uint64_t rng[2];                /* token generator (xoroshiro128+), seeded from the OS */
    uint64_t orders;                /* orders placed */
    atomic_uint_fast64_t flaky_seq; /* GET /flaky requests so far */
    char *items_json;               /* GET /items without a query, prepared once */
    size_t items_json_len;
    char *item_json[CC_SHOP_ITEMS]; /* GET /items/{id}, prepared once */
    size_t item_json_len[CC_SHOP_ITEMS];
};

/* A waiting GET /slow. */
struct slow {
    uv_timer_t timer;
    struct cc_httpd_req *req; /* NULL once answered */
    uint32_t ms;
};

void cc_shop_opts_defaults(struct cc_shop_opts *o)
{
    o->max_sessions = 10000;
    o->flaky_every = 5;
    o->slow_ms = 200;
    o->slow_max_ms = 10000;
}

/* ---- helpers -------------------------------------------------------------------------------- */

static void respond_error(struct cc_httpd_req *r, int status, const char *msg)
{
    json_t *j = json_pack("{s:s}", "error", msg);
    cc_httpd_respond_json(r, status, j);
    json_decref(j);
}

static void respond_owned(struct cc_httpd_req *r, int status, json_t *j)
{
    cc_httpd_respond_json(r, status, j);
    json_decref(j);
}

static json_t *item_json(int id)
{
    const struct item *it = &catalogue[id - 1];
    return json_pack("{s:i, s:s, s:f}", "id", id, "name", it->name, "price",
                     it->price_cents / 100.0);
}

static char *dump(const json_t *j, size_t *len)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(15));
    CC_ASSERT(s != NULL);
    *len = strlen(s);
    return s;
}

/* Parses a whole decimal number in [lo, hi]; false for anything else. */
static bool parse_long(const char *s, long lo, long hi, long *out)
{
    if (!s || !*s || *s == ' ' || *s == '+') return false;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

/* Reads an optional integer query parameter: false (and a 400 answered) if malformed. */
static bool query_long(struct cc_httpd_req *r, const char *key, long lo, long hi, long *out)
{
    char buf[32];
    int n = cc_httpd_req_query_get(r, key, buf, sizeof(buf));
    if (n == UV_ENOENT) return true;
    if (n < 0 || !parse_long(buf, LONG_MIN, LONG_MAX, out) || *out < lo || *out > hi) {
        char msg[96];
        snprintf(msg, sizeof(msg), "%s must be an integer from %ld to %ld", key, lo, hi);
        respond_error(r, 400, msg);
        return false;
    }
    return true;
}

/* JSON when it says so, or when it looks like it (curl -d sends JSON as a form). */
static bool body_is_json(struct cc_httpd_req *r)
{
    const char *ct = cc_httpd_req_header(r, "content-type");
    if (ct && strncasecmp(ct, "application/json", 16) == 0) return true;
    const char *b = cc_httpd_req_body(r, NULL);
    while (*b == ' ' || *b == '\t' || *b == '\r' || *b == '\n')
        b++;
    return *b == '{';
}

/* The request's JSON object body, or NULL after answering 400. The caller decrefs it. */
static json_t *body_object(struct cc_httpd_req *r)
{
    size_t len;
    const char *b = cc_httpd_req_body(r, &len);
    json_t *j = json_loadb(b, len, 0, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        respond_error(r, 400, "the body must be a JSON object");
        return NULL;
    }
    return j;
}

/* ---- sessions (callers hold the lock) ------------------------------------------------------- */

static uint64_t rng_next(struct cc_shop *shop)
{
    uint64_t s0 = shop->rng[0], s1 = shop->rng[1], r = s0 + s1;
    s1 ^= s0;
    shop->rng[0] = ((s0 << 24) | (s0 >> 40)) ^ s1 ^ (s1 << 16);
    shop->rng[1] = (s1 << 37) | (s1 >> 27);
    return r;
}

static size_t token_bucket(const struct cc_shop *shop, const char *token)
{
    return (size_t)(cc_hash(CC_HASH_INIT, token, TOKEN_LEN) & (shop->nbuckets - 1));
}

static void lru_unlink(struct cc_shop *shop, uint32_t i)
{
    struct session *s = &shop->slots[i];
    if (s->lprev != NONE)
        shop->slots[s->lprev].lnext = s->lnext;
    else
        shop->lru_head = s->lnext;
    if (s->lnext != NONE)
        shop->slots[s->lnext].lprev = s->lprev;
    else
        shop->lru_tail = s->lprev;
    s->lprev = s->lnext = NONE;
}

static void lru_push_front(struct cc_shop *shop, uint32_t i)
{
    struct session *s = &shop->slots[i];
    s->lprev = NONE;
    s->lnext = shop->lru_head;
    if (shop->lru_head != NONE) shop->slots[shop->lru_head].lprev = i;
    shop->lru_head = i;
    if (shop->lru_tail == NONE) shop->lru_tail = i;
}

static void session_evict(struct cc_shop *shop, uint32_t i)
{
    struct session *s = &shop->slots[i];
    uint32_t *link = &shop->buckets[token_bucket(shop, s->token)];
    while (*link != i)
        link = &shop->slots[*link].hnext;
    *link = s->hnext;
    lru_unlink(shop, i);
    s->used = false;
    shop->nsessions--;
}

/* Creates a session for |user| and copies its token to |token|. */
static void session_create(struct cc_shop *shop, const char *user, char *token)
{
    uint32_t i;
    if (shop->free_slot < shop->opts.max_sessions) {
        i = shop->free_slot++;
    } else {
        i = shop->lru_tail; /* full: the least recently used session goes */
        session_evict(shop, i);
    }
    struct session *s = &shop->slots[i];
    memset(s, 0, sizeof(*s));
    uint64_t a = rng_next(shop), b = rng_next(shop);
    snprintf(s->token, sizeof(s->token), "%016llx%016llx", (unsigned long long)a,
             (unsigned long long)b);
    snprintf(s->user, sizeof(s->user), "%s", user);
    s->used = true;
    size_t bk = token_bucket(shop, s->token);
    s->hnext = shop->buckets[bk];
    shop->buckets[bk] = i;
    s->lprev = s->lnext = NONE;
    lru_push_front(shop, i);
    shop->nsessions++;
    memcpy(token, s->token, TOKEN_LEN + 1);
}

/* The session with |token|, marked as the most recently used; or NULL. */
static struct session *session_find(struct cc_shop *shop, const char *token)
{
    for (uint32_t i = shop->buckets[token_bucket(shop, token)]; i != NONE;
         i = shop->slots[i].hnext) {
        if (memcmp(shop->slots[i].token, token, TOKEN_LEN) == 0) {
            lru_unlink(shop, i);
            lru_push_front(shop, i);
            return &shop->slots[i];
        }
    }
    return NULL;
}

static bool token_valid(const char *t, size_t n)
{
    if (n != TOKEN_LEN) return false;
    for (size_t i = 0; i < n; i++) {
        if (!((t[i] >= '0' && t[i] <= '9') || (t[i] >= 'a' && t[i] <= 'f'))) return false;
    }
    return true;
}

/* Finds the session token in "Authorization: Bearer" or the "session" cookie. */
static bool request_token(struct cc_httpd_req *r, char *token)
{
    const char *auth = cc_httpd_req_header(r, "authorization");
    if (auth && strncasecmp(auth, "Bearer ", 7) == 0) {
        const char *t = auth + 7;
        while (*t == ' ')
            t++;
        if (token_valid(t, strlen(t))) {
            memcpy(token, t, TOKEN_LEN + 1);
            return true;
        }
    }
    /* Cookie: a=1; session=abc (RFC 6265 5.4); every Cookie field is looked at. */
    size_t n = cc_httpd_req_header_count(r);
    for (size_t i = 0; i < n; i++) {
        const char *name, *value;
        cc_httpd_req_header_at(r, i, &name, &value);
        if (strcasecmp(name, "cookie") != 0) continue;
        const char *p = value;
        while (*p) {
            while (*p == ' ' || *p == ';')
                p++;
            size_t len = strcspn(p, ";");
            if (len > 8 && memcmp(p, "session=", 8) == 0) {
                size_t vlen = len - 8;
                while (vlen && p[8 + vlen - 1] == ' ')
                    vlen--;
                if (token_valid(p + 8, vlen)) {
                    memcpy(token, p + 8, TOKEN_LEN);
                    token[TOKEN_LEN] = '\0';
                    return true;
                }
            }
            p += len;
        }
    }
    return false;
}

/*
 * Looks up the request's session under the lock and copies its cart to |qty| (may be NULL).
 * Returns the session with the lock still held, or NULL after answering 401 (unlocked).
 */
static struct session *auth_lock(struct cc_shop *shop, struct cc_httpd_req *r)
{
    char token[TOKEN_LEN + 1];
    if (request_token(r, token)) {
        uv_mutex_lock(&shop->lock);
        struct session *s = session_find(shop, token);
        if (s) return s;
        uv_mutex_unlock(&shop->lock);
    }
    cc_httpd_res_header(r, "WWW-Authenticate", "Bearer");
    respond_error(r, 401, "log in first: POST /login");
    return NULL;
}

static json_t *cart_json(const uint32_t *qty)
{
    json_t *items = json_array();
    long total = 0, count = 0;
    for (int i = 0; i < CC_SHOP_ITEMS; i++) {
        if (!qty[i]) continue;
        json_array_append_new(
            items, json_pack("{s:i, s:s, s:f, s:i}", "item_id", i + 1, "name", catalogue[i].name,
                             "price", catalogue[i].price_cents / 100.0, "quantity", (int)qty[i]));
        total += (long)qty[i] * catalogue[i].price_cents;
        count += qty[i];
    }
    return json_pack("{s:o, s:I, s:f}", "items", items, "count", (json_int_t)count, "total",
                     total / 100.0);
}

/* ---- endpoints ------------------------------------------------------------------------------ */

static const char index_html[] =
    "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>cicada demo shop</title></head>\n"
    "<body><h1>cicada demo shop</h1>\n"
    "<p>A small JSON API to point load tests at.</p>\n<ul>\n"
    "<li><code>GET /health</code></li>\n"
    "<li><code>POST /login</code> {\"username\": \"...\", \"password\": \"secret\"}</li>\n"
    "<li><code>GET /items?page=1&amp;per_page=5</code>, <code>GET /items/{id}</code></li>\n"
    "<li><code>POST /cart</code> {\"item_id\": 1, \"quantity\": 2}, <code>GET /cart</code></li>\n"
    "<li><code>POST /checkout</code></li>\n"
    "<li><code>GET /slow?ms=200</code>, <code>GET /flaky?fail=0.2</code></li>\n"
    "</ul></body></html>\n";

static void h_index(struct cc_httpd_req *r, void *arg)
{
    (void)arg;
    cc_httpd_respond(r, 200, "text/html; charset=utf-8", index_html, sizeof(index_html) - 1);
}

static void h_health(struct cc_httpd_req *r, void *arg)
{
    (void)arg;
    static const char body[] = "{\"status\":\"ok\"}";
    cc_httpd_respond(r, 200, "application/json", body, sizeof(body) - 1);
}

static void h_login(struct cc_httpd_req *r, void *arg)
{
    struct cc_shop *shop = arg;
    char user[USER_MAX + 2] = "", password[128] = "";
    bool have_user, have_password;

    if (body_is_json(r)) {
        json_t *j = body_object(r);
        if (!j) return;
        const char *u = json_string_value(json_object_get(j, "username"));
        const char *p = json_string_value(json_object_get(j, "password"));
        have_user = u && strlen(u) <= USER_MAX;
        have_password = p && strlen(p) < sizeof(password);
        if (have_user) snprintf(user, sizeof(user), "%s", u);
        if (have_password) snprintf(password, sizeof(password), "%s", p);
        json_decref(j);
    } else {
        size_t len;
        const char *b = cc_httpd_req_body(r, &len);
        int nu = cc_httpd_form_get(b, len, "username", user, USER_MAX + 1);
        int np = cc_httpd_form_get(b, len, "password", password, sizeof(password));
        have_user = nu >= 0 && memchr(user, '\0', (size_t)nu) == NULL;
        have_password = np >= 0;
    }
    if (!have_user || !have_password || !user[0]) {
        respond_error(r, 400, "username (1 to 64 bytes) and password are required");
        return;
    }
    json_t *name = json_string(user);
    if (!name) {
        respond_error(r, 400, "username must be UTF-8");
        return;
    }
    if (strcmp(password, PASSWORD) != 0) {
        json_decref(name);
        respond_error(r, 401, "invalid credentials");
        return;
    }
    char token[TOKEN_LEN + 1];
    uv_mutex_lock(&shop->lock);
    session_create(shop, user, token);
    uv_mutex_unlock(&shop->lock);

    char cookie[TOKEN_LEN + 40];
    snprintf(cookie, sizeof(cookie), "session=%s; Path=/; HttpOnly", token);
    cc_httpd_res_header(r, "Set-Cookie", cookie);
    respond_owned(r, 200, json_pack("{s:s, s:o}", "token", token, "username", name));
}

static void h_items(struct cc_httpd_req *r, void *arg)
{
    struct cc_shop *shop = arg;
    long page = 1, per_page = CC_SHOP_ITEMS;
    if (!query_long(r, "page", 1, 1000000, &page)) return;
    if (!query_long(r, "per_page", 1, PER_PAGE_MAX, &per_page)) return;
    if (page == 1 && per_page == CC_SHOP_ITEMS) {
        cc_httpd_respond(r, 200, "application/json", shop->items_json, shop->items_json_len);
        return;
    }
    json_t *items = json_array();
    long first = (page - 1) * per_page;
    for (long i = first; i < first + per_page && i < CC_SHOP_ITEMS; i++)
        json_array_append_new(items, item_json((int)i + 1));
    respond_owned(r, 200,
                  json_pack("{s:o, s:I, s:I, s:i}", "items", items, "page", (json_int_t)page,
                            "per_page", (json_int_t)per_page, "total", CC_SHOP_ITEMS));
}

static void h_item(struct cc_httpd_req *r, void *arg)
{
    struct cc_shop *shop = arg;
    long id;
    if (!parse_long(cc_httpd_req_param(r, "id"), 1, CC_SHOP_ITEMS, &id)) {
        respond_error(r, 404, "no such item");
        return;
    }
    cc_httpd_respond(r, 200, "application/json", shop->item_json[id - 1],
                     shop->item_json_len[id - 1]);
}

static void h_cart_add(struct cc_httpd_req *r, void *arg)
{
    struct cc_shop *shop = arg;
    long item_id = 0, quantity = 1;
    bool ok;

    /* Authentication comes first: 401 says more than a 400 about the body. */
    struct session *s = auth_lock(shop, r);
    if (!s) return;
    uv_mutex_unlock(&shop->lock);

    if (body_is_json(r)) {
        json_t *j = body_object(r);
        if (!j) return;
        json_t *id = json_object_get(j, "item_id"), *q = json_object_get(j, "quantity");
        ok = json_is_integer(id) && (!q || json_is_integer(q));
        if (ok) item_id = (long)json_integer_value(id);
        if (ok && q) quantity = (long)json_integer_value(q);
        json_decref(j);
    } else {
        size_t len;
        const char *b = cc_httpd_req_body(r, &len);
        char v[32];
        ok = cc_httpd_form_get(b, len, "item_id", v, sizeof(v)) >= 0 &&
             parse_long(v, LONG_MIN, LONG_MAX, &item_id);
        int n = cc_httpd_form_get(b, len, "quantity", v, sizeof(v));
        if (ok && n != UV_ENOENT) ok = n >= 0 && parse_long(v, LONG_MIN, LONG_MAX, &quantity);
    }
    if (!ok) {
        respond_error(r, 400, "item_id (integer) is required; quantity is an optional integer");
        return;
    }
    if (quantity < 1 || quantity > CC_SHOP_MAX_QUANTITY) {
        respond_error(r, 400, "quantity must be from 1 to 999");
        return;
    }
    if (item_id < 1 || item_id > CC_SHOP_ITEMS) {
        respond_error(r, 404, "no such item");
        return;
    }

    uint32_t qty[CC_SHOP_ITEMS];
    s = auth_lock(shop, r); /* it may have been evicted meanwhile */
    if (!s) return;
    uint32_t *slot = &s->qty[item_id - 1];
    *slot = (uint32_t)CC_MIN((long)*slot + quantity, CC_SHOP_MAX_QUANTITY);
    memcpy(qty, s->qty, sizeof(qty));
    uv_mutex_unlock(&shop->lock);
    respond_owned(r, 200, cart_json(qty));
}

static void h_cart_get(struct cc_httpd_req *r, void *arg)
{
    struct cc_shop *shop = arg;
    uint32_t qty[CC_SHOP_ITEMS];
    struct session *s = auth_lock(shop, r);
    if (!s) return;
    memcpy(qty, s->qty, sizeof(qty));
    uv_mutex_unlock(&shop->lock);
    respond_owned(r, 200, cart_json(qty));
}

static void h_checkout(struct cc_httpd_req *r, void *arg)
{
    struct cc_shop *shop = arg;
    long total = 0, count = 0;
    struct session *s = auth_lock(shop, r);
    if (!s) return;
    for (int i = 0; i < CC_SHOP_ITEMS; i++) {
        total += (long)s->qty[i] * catalogue[i].price_cents;
        count += s->qty[i];
    }
    uint64_t order = 0;
    if (count) {
        order = ++shop->orders;
        memset(s->qty, 0, sizeof(s->qty));
    }
    uv_mutex_unlock(&shop->lock);
    if (!count) {
        respond_error(r, 400, "the cart is empty");
        return;
    }
    respond_owned(r, 200,
                  json_pack("{s:I, s:f, s:I}", "order_id", (json_int_t)order, "total",
                            total / 100.0, "items", (json_int_t)count));
}

static void slow_closed(uv_handle_t *h)
{
    cc_free(cc_container_of(h, struct slow, timer));
}

static void slow_fire(uv_timer_t *t)
{
    struct slow *sl = cc_container_of(t, struct slow, timer);
    respond_owned(sl->req, 200, json_pack("{s:I}", "slept_ms", (json_int_t)sl->ms));
    sl->req = NULL;
    uv_close((uv_handle_t *)&sl->timer, slow_closed);
}

/* The client left, or the server closes: release the request and drop the timer. */
static void slow_abort(struct cc_httpd_req *r, void *arg)
{
    struct slow *sl = arg;
    uv_timer_stop(&sl->timer);
    respond_error(r, 503, "aborted");
    sl->req = NULL;
    uv_close((uv_handle_t *)&sl->timer, slow_closed);
}

static void h_slow(struct cc_httpd_req *r, void *arg)
{
    struct cc_shop *shop = arg;
    long ms = shop->opts.slow_ms;
    if (!query_long(r, "ms", 0, INT_MAX, &ms)) return;
    if (ms > (long)shop->opts.slow_max_ms) ms = shop->opts.slow_max_ms;

    struct slow *sl = cc_xcalloc(1, sizeof(*sl));
    sl->req = r;
    sl->ms = (uint32_t)ms;
    uv_timer_init(cc_httpd_loop(cc_httpd_req_server(r)), &sl->timer);
    uv_timer_start(&sl->timer, slow_fire, (uint64_t)ms, 0);
    cc_httpd_req_on_abort(r, slow_abort, sl);
}

static void h_flaky(struct cc_httpd_req *r, void *arg)
{
    struct cc_shop *shop = arg;
    char buf[32];
    long every = shop->opts.flaky_every;
    bool fail;

    if (!query_long(r, "every", 1, 1000000, &every)) return;
    int len = cc_httpd_req_query_get(r, "fail", buf, sizeof(buf));
    uint64_t ppm = 0; /* the share to fail, in millionths, with ?fail= */
    if (len != UV_ENOENT) {
        char *end;
        double p = len > 0 ? strtod(buf, &end) : -1;
        if (len <= 0 || *end || !(p >= 0 && p <= 1)) {
            respond_error(r, 400, "fail must be a number from 0 to 1");
            return;
        }
        ppm = (uint64_t)(p * 1e6 + 0.5);
    }
    /* Only valid requests count, so a run of them fails exactly as documented. */
    uint64_t n = atomic_fetch_add(&shop->flaky_seq, 1) + 1;
    if (len != UV_ENOENT) {
        /* A failure whenever floor(n * p) steps up: exactly p of any run of requests, give or
         * take one, with no floating-point drift. */
        fail = (n * ppm) / 1000000 != ((n - 1) * ppm) / 1000000;
    } else {
        fail = n % (uint64_t)every == 0;
    }
    if (fail)
        respond_owned(r, 500,
                      json_pack("{s:s, s:I}", "error", "flaky failure", "request", (json_int_t)n));
    else
        respond_owned(r, 200, json_pack("{s:s, s:I}", "status", "ok", "request", (json_int_t)n));
}

/* ---- the shop ------------------------------------------------------------------------------- */

struct cc_shop *cc_shop_new(const struct cc_shop_opts *opts)
{
    struct cc_shop *shop = cc_xcalloc(1, sizeof(*shop));
    if (opts)
        shop->opts = *opts;
    else
        cc_shop_opts_defaults(&shop->opts);
    if (shop->opts.max_sessions < 1) shop->opts.max_sessions = 1;
    if (shop->opts.max_sessions > NONE / 2) shop->opts.max_sessions = NONE / 2;
    if (shop->opts.flaky_every < 1) shop->opts.flaky_every = 1;
    CC_ASSERT(uv_mutex_init(&shop->lock) == 0);

    shop->slots = cc_xcalloc(shop->opts.max_sessions, sizeof(*shop->slots));
    shop->nbuckets = 16;
    while (shop->nbuckets < shop->opts.max_sessions)
        shop->nbuckets *= 2;
    shop->buckets = cc_xmalloc(shop->nbuckets * sizeof(*shop->buckets));
    for (size_t i = 0; i < shop->nbuckets; i++)
        shop->buckets[i] = NONE;
    shop->lru_head = shop->lru_tail = NONE;
    if (uv_random(NULL, NULL, shop->rng, sizeof(shop->rng), 0, NULL) != 0) {
        shop->rng[0] = cc_now_ns() ^ 0x9e3779b97f4a7c15ull;
        shop->rng[1] = (uint64_t)(uintptr_t)shop * 0xbf58476d1ce4e5b9ull;
    }
    if (!shop->rng[0] && !shop->rng[1]) shop->rng[1] = 1;
    atomic_init(&shop->flaky_seq, 0);

    json_t *items = json_array();
    for (int id = 1; id <= CC_SHOP_ITEMS; id++) {
        json_t *it = item_json(id);
        shop->item_json[id - 1] = dump(it, &shop->item_json_len[id - 1]);
        json_array_append_new(items, it);
    }
    json_t *page = json_pack("{s:o, s:i, s:i, s:i}", "items", items, "page", 1, "per_page",
                             CC_SHOP_ITEMS, "total", CC_SHOP_ITEMS);
    shop->items_json = dump(page, &shop->items_json_len);
    json_decref(page);
    return shop;
}

int cc_shop_mount(struct cc_shop *shop, struct cc_httpd *s)
{
    static const struct {
        const char *method, *path;
        cc_httpd_handler_cb *cb;
    } routes[] = {
        {"GET", "/", h_index},          {"GET", "/health", h_health},
        {"POST", "/login", h_login},    {"GET", "/items", h_items},
        {"GET", "/items/{id}", h_item}, {"POST", "/cart", h_cart_add},
        {"GET", "/cart", h_cart_get},   {"POST", "/checkout", h_checkout},
        {"GET", "/slow", h_slow},       {"GET", "/flaky", h_flaky},
    };
    for (size_t i = 0; i < CC_ARRAY_LEN(routes); i++) {
        int rv = cc_httpd_route(s, routes[i].method, routes[i].path, routes[i].cb, shop);
        if (rv < 0) return rv;
    }
    return 0;
}

void cc_shop_free(struct cc_shop *shop)
{
    if (!shop) return;
    for (int i = 0; i < CC_SHOP_ITEMS; i++)
        free(shop->item_json[i]); /* from json_dumps(): the C library's allocator */
    free(shop->items_json);
    cc_free(shop->slots);
    cc_free(shop->buckets);
    uv_mutex_destroy(&shop->lock);
    cc_free(shop);
}
