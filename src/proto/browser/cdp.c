/* SPDX-License-Identifier: MIT */
/*
 * cdp.c: Chrome DevTools Protocol connections for Lua, over the WebSocket client (ws.h).
 *
 * One connection goes to a browser's own endpoint and carries many pages as flattened
 * sessions (Target.attachToTarget with flatten, the way Playwright drives Chromium): every
 * message names its sessionId. Each user holds a page object; a page has at most one wait at
 * a time (its user runs one call at a time), so answers are routed by scanning the
 * connection's pages for the id, and events by their sessionId.
 *
 * Events a page watches (page:watch) wait in the page's queue until its user takes them.
 * Network events are handled here without entering Lua: with page:network(true) each request
 * of the page becomes one request event when it finishes, timed by the browser's own
 * timestamps (Network.requestWillBeSent to Network.loadingFinished), named by its URL.
 */
#include "proto/browser/browser_int.h"
#include "proto/browser/cdpmsg.h"
#include "proto/ws/ws.h"
#include "core/strbuf.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#define CONN_MT "cicada.cdp.conn"
#define PAGE_MT "cicada.cdp.page"

#define MAX_MESSAGE  (64u << 20) /* screenshots and large evaluate results */
#define MAX_QUEUE    512         /* watched events waiting for their user, per page */
#define MAX_REQUESTS 4096        /* network requests in flight, per page */
#define MAX_NAME     1000        /* bytes of a URL kept as an entry's name */
#define NET_BUCKETS  64

struct cdp_page;

struct cdp_conn {
    struct cc_ws *ws; /* NULL once released (or freed by the vm's close) */
    struct browser_vm *bv;
    struct cdp_conn *prev, *next; /* in bv->conns */
    struct cdp_page *pages;
    int64_t next_id;
    bool opened, ended;
    struct cc_waiter open_waiter;
    struct cc_fiber *open_fiber;
    uint64_t open_t0;
    struct cc_strbuf out; /* the message being sent, reused */
    char errmsg[256];
};

enum wait_kind { PW_NONE, PW_CALL, PW_EVENT };

struct net_req {
    struct net_req *next; /* hash chain */
    char *id;
    char *url;
    double t0; /* requestWillBeSent's timestamp, seconds */
    int status;
};

struct queued {
    char *method; /* points into text's allocation */
    char *text;
    size_t len;
};

struct cdp_page {
    struct cdp_conn *conn; /* NULL once closed or the connection went */
    struct cdp_page *prev, *next;
    char *session; /* NULL: commands go to the browser itself */
    bool detached; /* the browser ended the session (target closed or crashed) */
    char detach_why[96];

    struct cc_waiter waiter;
    struct cc_fiber *fiber;
    uint8_t wkind;
    bool wbrowser; /* the call waited on went to the browser, not the page's session */
    int64_t wid;
    char wmethod[96];
    uint64_t t0, deadline;

    char **watch;
    size_t nwatch;
    struct queued *q; /* ring */
    size_t q_head, q_n, q_cap;
    uint64_t dropped;

    bool net_on, strip_query;
    char rtype[48];
    struct net_req *reqs[NET_BUCKETS];
    uint32_t nreqs;
};

/* ---- waits ---------------------------------------------------------------------------------- */

static double ms_since(uint64_t t0)
{
    return (double)(cc_now_ns() - t0) / 1e6;
}

static void arm(struct cdp_conn *c)
{
    if (!c->ws || !cc_ws_is_open(c->ws)) return;
    uint64_t d = 0;
    for (struct cdp_page *p = c->pages; p; p = p->next)
        if (p->fiber && p->deadline && (!d || p->deadline < d)) d = p->deadline;
    if (!d) {
        cc_ws_set_timer(c->ws, 0);
        return;
    }
    uint64_t now = cc_now_ns();
    uint64_t ms = d > now ? (d - now + 999999) / 1000000 : 0;
    cc_ws_set_timer(c->ws, ms ? ms : 1);
}

static struct cc_fiber *take(struct cdp_page *p)
{
    struct cc_fiber *f = p->fiber;
    p->fiber = NULL;
    p->wkind = PW_NONE;
    p->deadline = 0;
    return f;
}

/*
 * Resuming runs the user at once, and its code may close the page or the connection: these
 * take the fiber off the page and re-arm the timer first, and callers touch neither after.
 */
static void resume_fail(struct cdp_page *p, const char *msg)
{
    uint64_t t0 = p->t0;
    struct cc_fiber *f = take(p);
    if (p->conn) arm(p->conn);
    if (!f) return;
    lua_pushnil(f->co);
    lua_pushstring(f->co, msg);
    lua_pushnumber(f->co, ms_since(t0));
    cc_fiber_resume(f, 3);
}

static void resume_text(struct cdp_page *p, const char *text, size_t len)
{
    uint64_t t0 = p->t0;
    struct cc_fiber *f = take(p);
    if (p->conn) arm(p->conn);
    if (!f) return;
    lua_pushlstring(f->co, text, len);
    lua_pushnil(f->co);
    lua_pushnumber(f->co, ms_since(t0));
    cc_fiber_resume(f, 3);
}

static void page_cancel(struct cc_waiter *w)
{
    struct cdp_page *p = cc_container_of(w, struct cdp_page, waiter);
    p->fiber = NULL;
    p->wkind = PW_NONE;
    p->deadline = 0;
    if (p->conn) arm(p->conn);
}

static void open_cancel(struct cc_waiter *w)
{
    struct cdp_conn *c = cc_container_of(w, struct cdp_conn, open_waiter);
    c->open_fiber = NULL;
}

/* ---- network timings -------------------------------------------------------------------- */

static uint32_t bucket_of(const char *id)
{
    return (uint32_t)(cc_hash(CC_HASH_INIT, id, strlen(id)) % NET_BUCKETS);
}

static struct net_req **find_req(struct cdp_page *p, const char *id)
{
    struct net_req **pp = &p->reqs[bucket_of(id)];
    while (*pp && strcmp((*pp)->id, id) != 0)
        pp = &(*pp)->next;
    return pp;
}

static void free_req(struct net_req *r)
{
    cc_free(r->id);
    cc_free(r->url);
    cc_free(r);
}

static void clear_reqs(struct cdp_page *p)
{
    for (int i = 0; i < NET_BUCKETS; i++) {
        for (struct net_req *r = p->reqs[i], *n; r; r = n) {
            n = r->next;
            free_req(r);
        }
        p->reqs[i] = NULL;
    }
    p->nreqs = 0;
}

/* The entry name of |url|: without its fragment, without its query when asked, capped. */
static size_t name_len(const struct cdp_page *p, const char *url)
{
    size_t n = strcspn(url, p->strip_query ? "#?" : "#");
    return n > MAX_NAME ? MAX_NAME : n;
}

static void record_req(struct cdp_page *p, const struct net_req *r, double t1, double length,
                       const char *error)
{
    struct cc_vm *vm = p->conn && p->conn->bv ? p->conn->bv->vm : NULL;
    if (!vm || !vm->rec) return;
    const struct cc_ikey *key =
        cc_recorder_key(vm->rec, p->rtype, strlen(p->rtype), r->url, name_len(p, r->url));
    double s = t1 - r->t0;
    uint64_t ns = s > 0 && s < 1e6 ? (uint64_t)(s * 1e9) : 0;
    char buf[32];
    if (!error && r->status >= 400) {
        snprintf(buf, sizeof(buf), "HTTP %d", r->status);
        error = buf;
    }
    cc_vm_record_for(vm, NULL, key, ns, (uint64_t)length, error, error ? strlen(error) : 0);
}

static bool is_http(const char *url)
{
    return strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0;
}

/* The browser fetches /favicon.ico for its tab strip, not for the page: it is no part of the
 * page's load (nor of its Resource Timing entries), and a site without one would show a 404. */
static bool is_favicon(const char *url)
{
    const char *p = strstr(url, "://");
    p = p ? strchr(p + 3, '/') : NULL;
    return p && strncmp(p, "/favicon.ico", 12) == 0 && (p[12] == 0 || p[12] == '?');
}

static void on_network(struct cdp_page *p, const struct cc_cdp_msg *m)
{
    struct net_req **pp = find_req(p, m->request);
    struct net_req *r = *pp;
    switch (m->net) {
    case CC_CDP_NET_REQUEST:
        if (r && m->redirect_status >= 0) { /* the same id follows a redirect: one hop done */
            r->status = m->redirect_status;
            record_req(p, r, m->timestamp, 0, NULL);
            cc_free(r->url);
            r->url = cc_xstrdup(m->url);
            r->t0 = m->timestamp;
            r->status = -1;
            return;
        }
        if (r || !is_http(m->url) || is_favicon(m->url) || p->nreqs >= MAX_REQUESTS) return;
        r = cc_xcalloc(1, sizeof(*r));
        r->id = cc_xstrdup(m->request);
        r->url = cc_xstrdup(m->url);
        r->t0 = m->timestamp;
        r->status = -1;
        r->next = p->reqs[bucket_of(r->id)];
        p->reqs[bucket_of(r->id)] = r;
        p->nreqs++;
        return;
    case CC_CDP_NET_RESPONSE:
        if (r) r->status = m->status;
        return;
    case CC_CDP_NET_FINISHED:
    case CC_CDP_NET_FAILED:
        if (!r) return;
        *pp = r->next;
        p->nreqs--;
        /* a canceled request was abandoned by the page (a navigation away), not failed */
        if (m->net == CC_CDP_NET_FINISHED)
            record_req(p, r, m->timestamp, m->length, NULL);
        else if (!m->canceled)
            record_req(p, r, m->timestamp, 0, m->error_text ? m->error_text : "failed");
        free_req(r);
        return;
    default:
        return;
    }
}

/* ---- events --------------------------------------------------------------------------------- */

static bool watched(const struct cdp_page *p, const char *method)
{
    for (size_t i = 0; i < p->nwatch; i++)
        if (strcmp(p->watch[i], method) == 0) return true;
    return false;
}

static void q_clear(struct cdp_page *p)
{
    for (size_t i = 0; i < p->q_n; i++)
        cc_free(p->q[(p->q_head + i) % p->q_cap].text);
    p->q_head = p->q_n = 0;
}

static void q_push(struct cdp_page *p, const char *method, const char *text, size_t len)
{
    if (p->q_n >= MAX_QUEUE) {
        p->dropped++;
        return;
    }
    if (p->q_n == p->q_cap) { /* grow the ring, unrolling it */
        size_t cap = p->q_cap ? p->q_cap * 2 : 8;
        struct queued *nq = cc_xmalloc(cap * sizeof(*nq));
        for (size_t i = 0; i < p->q_n; i++)
            nq[i] = p->q[(p->q_head + i) % p->q_cap];
        cc_free(p->q);
        p->q = nq;
        p->q_cap = cap;
        p->q_head = 0;
    }
    size_t ml = strlen(method);
    char *t = cc_xmalloc(len + ml + 2);
    memcpy(t, text, len);
    t[len] = 0;
    memcpy(t + len + 1, method, ml + 1);
    p->q[(p->q_head + p->q_n) % p->q_cap] =
        (struct queued){.method = t + len + 1, .text = t, .len = len};
    p->q_n++;
}

/* Takes the oldest queued event named |method| into |out| (caller frees out->text). */
static bool q_take(struct cdp_page *p, const char *method, struct queued *out)
{
    for (size_t i = 0; i < p->q_n; i++) {
        size_t at = (p->q_head + i) % p->q_cap;
        if (strcmp(p->q[at].method, method) != 0) continue;
        *out = p->q[at];
        for (size_t j = i; j + 1 < p->q_n; j++) /* close the gap */
            p->q[(p->q_head + j) % p->q_cap] = p->q[(p->q_head + j + 1) % p->q_cap];
        p->q_n--;
        return true;
    }
    return false;
}

static struct cdp_page *page_of_session(struct cdp_conn *c, const char *session)
{
    for (struct cdp_page *p = c->pages; p; p = p->next)
        if (p->session && session && strcmp(p->session, session) == 0) return p;
    return NULL;
}

/* The session ended (the page's own Target.closeTarget does that too): what waits on the
 * session fails; a call to the browser itself goes on. */
static void page_detached(struct cdp_page *p, const char *why)
{
    p->detached = true;
    snprintf(p->detach_why, sizeof(p->detach_why), "%s", why);
    if (p->fiber && !(p->wkind == PW_CALL && p->wbrowser)) resume_fail(p, why);
}

static void on_event(struct cdp_conn *c, const struct cc_cdp_msg *m, const char *data, size_t len)
{
    if (!m->session) {
        /* the browser's own events: a page's session ended under it */
        if (strcmp(m->method, "Target.detachedFromTarget") == 0) {
            json_t *params = json_object_get(m->root, "params");
            json_t *sid = json_is_object(params) ? json_object_get(params, "sessionId") : NULL;
            struct cdp_page *p =
                json_is_string(sid) ? page_of_session(c, json_string_value(sid)) : NULL;
            if (p) page_detached(p, "the page was closed (its target detached)");
        }
        return;
    }
    struct cdp_page *p = page_of_session(c, m->session);
    if (!p) return;
    if (m->net && p->net_on) on_network(p, m);
    if (strcmp(m->method, "Inspector.targetCrashed") == 0) {
        page_detached(p, "the page crashed");
        return;
    }
    if (!watched(p, m->method)) return;
    if (p->wkind == PW_EVENT && strcmp(p->wmethod, m->method) == 0) {
        resume_text(p, data, len);
        return;
    }
    q_push(p, m->method, data, len);
}

/* ---- the WebSocket's callbacks ------------------------------------------------------------ */

/* Each resume may change the page list, so the scan starts over after each. */
static void fail_all(struct cdp_conn *c, const char *why)
{
    for (;;) {
        struct cdp_page *p = c->pages;
        while (p && !p->fiber)
            p = p->next;
        if (!p) return;
        resume_fail(p, why);
    }
}

static void on_open(struct cc_ws *ws, int status)
{
    struct cdp_conn *c = cc_ws_data(ws);
    struct cc_fiber *f = c->open_fiber;
    c->open_fiber = NULL;
    if (status == 0) {
        c->opened = true;
        if (f) {
            lua_pushboolean(f->co, 1);
            lua_pushnil(f->co);
            lua_pushnumber(f->co, ms_since(c->open_t0));
            cc_fiber_resume(f, 3);
        }
        return;
    }
    c->ended = true;
    snprintf(c->errmsg, sizeof(c->errmsg), "DevTools connection failed: %s", cc_ws_error(ws));
    if (f) {
        lua_pushnil(f->co);
        lua_pushstring(f->co, c->errmsg);
        lua_pushnumber(f->co, ms_since(c->open_t0));
        cc_fiber_resume(f, 3);
    }
}

static void on_message(struct cc_ws *ws, bool binary, const char *data, size_t len)
{
    struct cdp_conn *c = cc_ws_data(ws);
    if (binary) return;
    struct cc_cdp_msg m;
    if (cc_cdp_msg_parse(&m, data, len) != 0) return; /* not CDP: nothing to route it to */
    if (m.id >= 0) {
        for (struct cdp_page *p = c->pages; p; p = p->next) {
            if (p->wkind != PW_CALL || p->wid != m.id) continue;
            if (m.error) {
                char msg[512];
                snprintf(msg, sizeof(msg), "%s: %s", p->wmethod, m.error);
                resume_fail(p, msg);
            } else {
                resume_text(p, data, len);
            }
            break;
        }
    } else {
        on_event(c, &m, data, len);
    }
    cc_cdp_msg_release(&m);
}

static void on_end(struct cc_ws *ws, int status)
{
    struct cdp_conn *c = cc_ws_data(ws);
    c->ended = true;
    if (status != 0)
        snprintf(c->errmsg, sizeof(c->errmsg), "the browser's DevTools connection ended: %s",
                 cc_ws_error(ws));
    else
        snprintf(c->errmsg, sizeof(c->errmsg), "the browser closed its DevTools connection");
    fail_all(c, c->errmsg);
}

static void on_timer(struct cc_ws *ws)
{
    struct cdp_conn *c = cc_ws_data(ws);
    for (;;) { /* each resume may change the page list: start over after each */
        uint64_t now = cc_now_ns();
        struct cdp_page *p = c->pages;
        while (p && !(p->fiber && p->deadline && p->deadline <= now))
            p = p->next;
        if (!p) break;
        char msg[160];
        snprintf(msg, sizeof(msg), "timeout: %s %s within %g s",
                 p->wkind == PW_EVENT ? "no" : "no answer to", p->wmethod,
                 (double)(p->deadline - p->t0) / 1e9);
        resume_fail(p, msg);
    }
    arm(c);
}

static const struct cc_ws_cbs cdp_ws_cbs = {
    .on_open = on_open,
    .on_message = on_message,
    .on_end = on_end,
    .on_timer = on_timer,
};

/* ---- life and death --------------------------------------------------------------------- */

static void page_unlink(struct cdp_page *p)
{
    struct cdp_conn *c = p->conn;
    if (!c) return;
    if (p->prev)
        p->prev->next = p->next;
    else
        c->pages = p->next;
    if (p->next) p->next->prev = p->prev;
    p->prev = p->next = NULL;
    p->conn = NULL;
}

static void page_free_state(struct cdp_page *p)
{
    q_clear(p);
    cc_free(p->q);
    p->q = NULL;
    p->q_cap = 0;
    for (size_t i = 0; i < p->nwatch; i++)
        cc_free(p->watch[i]);
    cc_free(p->watch);
    p->watch = NULL;
    p->nwatch = 0;
    clear_reqs(p);
    cc_free(p->session);
    p->session = NULL;
}

/* The connection lets go of its socket and pages; Lua still holds the userdata. */
static void conn_release(struct cdp_conn *c)
{
    if (c->ws) {
        struct cc_ws *ws = c->ws;
        c->ws = NULL;
        cc_ws_release(ws);
    }
    if (!c->ended) {
        c->ended = true;
        snprintf(c->errmsg, sizeof(c->errmsg), "the DevTools connection is closed");
    }
    fail_all(c, c->errmsg);
    while (c->pages)
        page_unlink(c->pages);
    if (c->bv) {
        if (c->prev)
            c->prev->next = c->next;
        else
            c->bv->conns = c->next;
        if (c->next) c->next->prev = c->prev;
        c->prev = c->next = NULL;
        c->bv = NULL;
    }
    cc_strbuf_release(&c->out);
}

void cdp_close_all(struct browser_vm *bv)
{
    /* Fibers are discarded with the vm: nothing is resumed, waits are only detached. */
    while (bv->conns) {
        struct cdp_conn *c = bv->conns;
        c->open_fiber = NULL;
        for (struct cdp_page *p = c->pages; p; p = p->next) {
            p->fiber = NULL;
            p->wkind = PW_NONE;
        }
        conn_release(c);
    }
}

/* ---- Lua ---------------------------------------------------------------------------------- */

static struct cdp_conn *check_conn(lua_State *L)
{
    return luaL_checkudata(L, 1, CONN_MT);
}

static struct cdp_page *check_page(lua_State *L)
{
    return luaL_checkudata(L, 1, PAGE_MT);
}

/* core.cdp_new() -> a connection, not yet connected */
static int l_new(lua_State *L)
{
    struct cdp_conn *c = lua_newuserdata(L, sizeof(*c));
    memset(c, 0, sizeof(*c));
    c->next_id = 1;
    luaL_getmetatable(L, CONN_MT);
    lua_setmetatable(L, -2);
    return 1;
}

/* conn:connect{ host=, port=, target=, timeout= } -> true, nil, ms | nil, error, ms */
static int l_connect(lua_State *L)
{
    struct cdp_conn *c = check_conn(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_getfield(L, 2, "host");
    const char *host = luaL_optstring(L, -1, "127.0.0.1");
    lua_getfield(L, 2, "port");
    lua_Integer port = luaL_checkinteger(L, -1);
    lua_getfield(L, 2, "target");
    const char *target = luaL_checkstring(L, -1);
    lua_getfield(L, 2, "timeout");
    double timeout = luaL_optnumber(L, -1, 30);
    if (port < 1 || port > 65535) return luaL_error(L, "connect: port out of range");
    if (c->ws || c->opened || c->ended)
        return luaL_error(L, "this connection was connected before");
    struct cc_fiber *f = cc_fiber_check(L);
    char authority[300];
    snprintf(authority, sizeof(authority), "%s:%d", host, (int)port);

    struct browser_vm *bv = browser_vm_get(cc_vm_self);
    c->bv = bv;
    c->next = bv->conns;
    if (bv->conns) bv->conns->prev = c;
    bv->conns = c;

    struct cc_ws_opts o = {
        .host = host,
        .port = (uint16_t)port,
        .authority = authority,
        .target = target,
        .connect_timeout_ms = timeout > 0 && timeout < 4e6 ? (uint32_t)(timeout * 1e3) : 0,
        .max_message = MAX_MESSAGE,
    };
    c->ws = cc_ws_open(cc_vm_self, &o, &cdp_ws_cbs, c);
    cc_ws_set_backref(c->ws, &c->ws);
    c->open_t0 = cc_now_ns();
    c->open_fiber = f;
    c->open_waiter.cancel = open_cancel;
    lua_settop(L, 1); /* the connection stays referenced while the fiber waits */
    return cc_fiber_wait(L, f, &c->open_waiter);
}

/* conn:is_open() -> true | false, why */
static int l_conn_is_open(lua_State *L)
{
    struct cdp_conn *c = check_conn(L);
    lua_pushboolean(L, c->ws && cc_ws_is_open(c->ws) && !c->ended);
    if (c->ended) {
        lua_pushstring(L, c->errmsg);
        return 2;
    }
    return 1;
}

/* conn:close(): ends the connection at once (no closing handshake is awaited). */
static int l_conn_close(lua_State *L)
{
    conn_release(check_conn(L));
    return 0;
}

static int l_conn_gc(lua_State *L)
{
    conn_release(check_conn(L));
    return 0;
}

/* conn:page() -> a page: commands go to the browser until page:attach(session) */
static int l_conn_page(lua_State *L)
{
    struct cdp_conn *c = check_conn(L);
    if (!c->ws || c->ended) return luaL_error(L, "the DevTools connection is closed");
    struct cdp_page *p = lua_newuserdata(L, sizeof(*p));
    memset(p, 0, sizeof(*p));
    luaL_getmetatable(L, PAGE_MT);
    lua_setmetatable(L, -2);
    /* the page keeps its connection's userdata alive */
    lua_newtable(L);
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, 1);
    lua_setfenv(L, -2);
    snprintf(p->rtype, sizeof(p->rtype), "browser-resource");
    p->conn = c;
    p->next = c->pages;
    if (c->pages) c->pages->prev = p;
    c->pages = p;
    return 1;
}

static bool valid_token(const char *s, const char *extra)
{
    if (!*s) return false;
    for (; *s; s++) {
        char ch = *s;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              strchr(extra, ch)))
            return false;
    }
    return true;
}

/* page:attach(session_id | nil) */
static int l_page_attach(lua_State *L)
{
    struct cdp_page *p = check_page(L);
    const char *s = luaL_optstring(L, 2, NULL);
    if (s && (!valid_token(s, "-_.") || strlen(s) > 128))
        return luaL_argerror(L, 2, "not a DevTools session id");
    cc_free(p->session);
    p->session = s ? cc_xstrdup(s) : NULL;
    p->detached = false;
    clear_reqs(p);
    q_clear(p);
    return 0;
}

/* Why a page cannot send (to its session, or to the browser), or NULL. */
static const char *page_unusable(struct cdp_page *p, bool browser_level)
{
    if (!p->conn) return "the page is closed";
    if (p->conn->ended || !p->conn->ws) return p->conn->errmsg;
    if (p->detached && !browser_level) return p->detach_why;
    return NULL;
}

static int push_fail(lua_State *L, const char *msg)
{
    lua_pushnil(L);
    lua_pushstring(L, msg);
    lua_pushnumber(L, 0);
    return 3;
}

/* Sends {"id":N,"method":M,"sessionId":S,"params":P}. Returns the id, or 0 when the socket
 * took nothing. */
static int64_t send_cmd(struct cdp_page *p, const char *method, const char *params, size_t plen,
                        bool browser_level)
{
    struct cdp_conn *c = p->conn;
    int64_t id = c->next_id++;
    struct cc_strbuf *b = &c->out;
    b->len = 0;
    cc_strbuf_printf(b, "{\"id\":%lld,\"method\":\"%s\"", (long long)id, method);
    if (p->session && !browser_level) cc_strbuf_printf(b, ",\"sessionId\":\"%s\"", p->session);
    if (params && plen) {
        cc_strbuf_adds(b, ",\"params\":");
        cc_strbuf_add(b, params, plen);
    }
    cc_strbuf_add(b, "}", 1);
    if (cc_ws_send(c->ws, false, b->data, b->len) != 0) return 0;
    return id;
}

static void check_method(lua_State *L, int idx, const char *method)
{
    if (!valid_token(method, ".") || strlen(method) >= sizeof(((struct cdp_page *)0)->wmethod))
        luaL_argerror(L, idx, "not a DevTools method name");
}

/*
 * page:call(method, params_json | nil, timeout_s, browser_level)
 *   -> the answer's JSON text, nil, ms | nil, error, ms
 */
static int l_page_call(lua_State *L)
{
    struct cdp_page *p = check_page(L);
    const char *method = luaL_checkstring(L, 2);
    size_t plen = 0;
    const char *params = luaL_optlstring(L, 3, NULL, &plen);
    double timeout = luaL_optnumber(L, 4, 30);
    bool browser_level = lua_toboolean(L, 5);
    check_method(L, 2, method);
    struct cc_fiber *f = cc_fiber_check(L);
    if (p->fiber) return luaL_error(L, "this page is already waiting (one call at a time)");
    const char *why = page_unusable(p, browser_level);
    if (why) return push_fail(L, why);
    int64_t id = send_cmd(p, method, params, plen, browser_level);
    if (!id) return push_fail(L, "the DevTools connection is closed");
    p->fiber = f;
    p->wkind = PW_CALL;
    p->wbrowser = browser_level;
    p->wid = id;
    snprintf(p->wmethod, sizeof(p->wmethod), "%s", method);
    p->t0 = cc_now_ns();
    p->deadline = timeout > 0 ? p->t0 + (uint64_t)(timeout * 1e9) : 0;
    p->waiter.cancel = page_cancel;
    arm(p->conn);
    lua_settop(L, 1);
    return cc_fiber_wait(L, f, &p->waiter);
}

/* page:post(method, params_json | nil) -> true | nil, error. Sends without waiting: the
 * answer is dropped (for input events sent in a row). */
static int l_page_post(lua_State *L)
{
    struct cdp_page *p = check_page(L);
    const char *method = luaL_checkstring(L, 2);
    size_t plen = 0;
    const char *params = luaL_optlstring(L, 3, NULL, &plen);
    check_method(L, 2, method);
    const char *why = page_unusable(p, false);
    if (why) {
        lua_pushnil(L);
        lua_pushstring(L, why);
        return 2;
    }
    if (!send_cmd(p, method, params, plen, false)) {
        lua_pushnil(L);
        lua_pushstring(L, "the DevTools connection is closed");
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* page:watch(method...): the events kept for wait_event; replaces the set, clears the queue. */
static int l_page_watch(lua_State *L)
{
    struct cdp_page *p = check_page(L);
    int n = lua_gettop(L) - 1;
    for (int i = 2; i <= n + 1; i++)
        check_method(L, i, luaL_checkstring(L, i));
    for (size_t i = 0; i < p->nwatch; i++)
        cc_free(p->watch[i]);
    cc_free(p->watch);
    p->watch = n ? cc_xcalloc((size_t)n, sizeof(char *)) : NULL;
    p->nwatch = (size_t)n;
    for (int i = 0; i < n; i++)
        p->watch[i] = cc_xstrdup(lua_tostring(L, i + 2));
    q_clear(p);
    return 0;
}

/* page:wait_event(method, timeout_s) -> the event's JSON text, nil, ms | nil, error, ms */
static int l_page_wait_event(lua_State *L)
{
    struct cdp_page *p = check_page(L);
    const char *method = luaL_checkstring(L, 2);
    double timeout = luaL_optnumber(L, 3, 30);
    check_method(L, 2, method);
    if (!watched(p, method)) return luaL_argerror(L, 2, "this event is not watched");
    struct cc_fiber *f = cc_fiber_check(L);
    if (p->fiber) return luaL_error(L, "this page is already waiting (one call at a time)");
    struct queued e;
    if (q_take(p, method, &e)) {
        lua_pushlstring(L, e.text, e.len);
        cc_free(e.text);
        lua_pushnil(L);
        lua_pushnumber(L, 0);
        return 3;
    }
    const char *why = page_unusable(p, false);
    if (why) return push_fail(L, why);
    p->fiber = f;
    p->wkind = PW_EVENT;
    p->wbrowser = false;
    snprintf(p->wmethod, sizeof(p->wmethod), "%s", method);
    p->t0 = cc_now_ns();
    p->deadline = timeout > 0 ? p->t0 + (uint64_t)(timeout * 1e9) : 0;
    p->waiter.cancel = page_cancel;
    arm(p->conn);
    lua_settop(L, 1);
    return cc_fiber_wait(L, f, &p->waiter);
}

/* page:network(on, request_type, strip_query): per-resource request events */
static int l_page_network(lua_State *L)
{
    struct cdp_page *p = check_page(L);
    p->net_on = lua_toboolean(L, 2);
    const char *rtype = luaL_optstring(L, 3, "browser-resource");
    if (strlen(rtype) >= sizeof(p->rtype)) return luaL_argerror(L, 3, "request type too long");
    snprintf(p->rtype, sizeof(p->rtype), "%s", rtype);
    p->strip_query = lua_toboolean(L, 4);
    if (!p->net_on) clear_reqs(p);
    return 0;
}

/* page:info() -> network requests in flight, events dropped (queue full), session */
static int l_page_info(lua_State *L)
{
    struct cdp_page *p = check_page(L);
    lua_pushinteger(L, p->nreqs);
    lua_pushnumber(L, (lua_Number)p->dropped);
    if (p->session)
        lua_pushstring(L, p->session);
    else
        lua_pushnil(L);
    return 3;
}

/* page:ended() -> why | nil: why the browser ended the page's session (closed, crashed) */
static int l_page_ended(lua_State *L)
{
    struct cdp_page *p = check_page(L);
    if (p->detached)
        lua_pushstring(L, p->detach_why);
    else
        lua_pushnil(L);
    return 1;
}

/* page:close(): the page leaves its connection (the browser-side target is Lua's to close) */
static int l_page_close(lua_State *L)
{
    struct cdp_page *p = check_page(L);
    if (p->fiber) resume_fail(p, "the page is closed");
    page_unlink(p);
    page_free_state(p);
    return 0;
}

static int l_page_gc(lua_State *L)
{
    struct cdp_page *p = check_page(L);
    p->fiber = NULL; /* a collected page has no waiting fiber (it would reference it) */
    page_unlink(p);
    page_free_state(p);
    return 0;
}

static const luaL_Reg conn_methods[] = {
    {"connect", l_connect},  {"page", l_conn_page}, {"is_open", l_conn_is_open},
    {"close", l_conn_close}, {NULL, NULL},
};

static const luaL_Reg page_methods[] = {
    {"attach", l_page_attach},
    {"call", l_page_call},
    {"post", l_page_post},
    {"watch", l_page_watch},
    {"wait_event", l_page_wait_event},
    {"network", l_page_network},
    {"info", l_page_info},
    {"ended", l_page_ended},
    {"close", l_page_close},
    {NULL, NULL},
};

void cdp_lua_register(lua_State *L)
{
    luaL_newmetatable(L, CONN_MT);
    lua_newtable(L);
    luaL_register(L, NULL, conn_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_conn_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);

    luaL_newmetatable(L, PAGE_MT);
    lua_newtable(L);
    luaL_register(L, NULL, page_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_page_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);

    lua_pushcfunction(L, l_new);
    lua_setfield(L, -2, "cdp_new");
}
