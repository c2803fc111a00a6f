/* SPDX-License-Identifier: MIT */
/* msg.c: encoding and strict decoding of Locust's master/worker messages; see msg.h. */
#include "dist/msg.h"
#include "core/err.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

enum { TO_M = 1, TO_W = 2 };

static const struct {
    const char *name;
    unsigned dirs;
} types[CC_DMSG_TYPE_COUNT] = {
    [CC_DMSG_CUSTOM] = {"", 0},
    [CC_DMSG_CLIENT_READY] = {"client_ready", TO_M},
    [CC_DMSG_ACK] = {"ack", TO_W},
    [CC_DMSG_HEARTBEAT] = {"heartbeat", TO_M | TO_W},
    [CC_DMSG_SPAWNING] = {"spawning", TO_M},
    [CC_DMSG_SPAWNING_COMPLETE] = {"spawning_complete", TO_M | TO_W},
    [CC_DMSG_SPAWN] = {"spawn", TO_W},
    [CC_DMSG_STATS] = {"stats", TO_M},
    [CC_DMSG_EXCEPTION] = {"exception", TO_M},
    [CC_DMSG_CLIENT_STOPPED] = {"client_stopped", TO_M},
    [CC_DMSG_QUIT] = {"quit", TO_M | TO_W},
    [CC_DMSG_LOGS] = {"logs", TO_M},
    [CC_DMSG_STOP] = {"stop", TO_W},
    [CC_DMSG_RECONNECT] = {"reconnect", TO_W},
    [CC_DMSG_LOCUSTFILE] = {"locustfile", TO_M | TO_W},
    [CC_DMSG_UPDATE_USER_CLASS] = {"update_user_class", TO_W},
};

const char *cc_dmsg_type_name(enum cc_dmsg_type t)
{
    return (unsigned)t < CC_DMSG_TYPE_COUNT ? types[t].name : "";
}

/* ---- the structural check --------------------------------------------------------------- */

static uint64_t be(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/*
 * True when |p| is exactly one msgpack object, nested at most CC_DMSG_MAX_DEPTH deep, with at
 * most CC_DMSG_MAX_OBJECTS objects, and no container claiming more elements than bytes remain
 * (every element takes at least one byte). This bounds what msgpack-c allocates for its tree by
 * a small multiple of the message size, whatever the counts in the headers say.
 */
static bool mp_scan(const uint8_t *p, size_t len)
{
    uint64_t pending[CC_DMSG_MAX_DEPTH + 1];
    int depth = 0;
    size_t pos = 0, objs = 0;
    pending[0] = 1;
    while (depth >= 0) {
        if (pending[depth] == 0) {
            depth--;
            continue;
        }
        pending[depth]--;
        if (pos >= len || ++objs > CC_DMSG_MAX_OBJECTS) return false;
        uint8_t b = p[pos++];
        uint64_t skip = 0, items = 0;
        unsigned lenbytes = 0; /* size of a length field that follows */
        unsigned kind = 0;     /* 1: bytes follow (str, bin), 2: ext, 3: array, 4: map */
        if (b <= 0x7f || b >= 0xe0) {
            /* fixint */
        } else if (b <= 0x8f) {
            items = (uint64_t)(b & 0x0f) * 2;
        } else if (b <= 0x9f) {
            items = b & 0x0f;
        } else if (b <= 0xbf) {
            skip = b & 0x1f;
        } else {
            switch (b) {
            case 0xc0: /* nil */
            case 0xc2: /* false */
            case 0xc3: /* true */
                break;
            case 0xc4:
                lenbytes = 1, kind = 1;
                break;
            case 0xc5:
                lenbytes = 2, kind = 1;
                break;
            case 0xc6:
                lenbytes = 4, kind = 1;
                break;
            case 0xc7:
                lenbytes = 1, kind = 2;
                break;
            case 0xc8:
                lenbytes = 2, kind = 2;
                break;
            case 0xc9:
                lenbytes = 4, kind = 2;
                break;
            case 0xca:
                skip = 4;
                break;
            case 0xcb:
                skip = 8;
                break;
            case 0xcc:
                skip = 1;
                break;
            case 0xcd:
                skip = 2;
                break;
            case 0xce:
                skip = 4;
                break;
            case 0xcf:
                skip = 8;
                break;
            case 0xd0:
                skip = 1;
                break;
            case 0xd1:
                skip = 2;
                break;
            case 0xd2:
                skip = 4;
                break;
            case 0xd3:
                skip = 8;
                break;
            case 0xd4:
                skip = 2;
                break;
            case 0xd5:
                skip = 3;
                break;
            case 0xd6:
                skip = 5;
                break;
            case 0xd7:
                skip = 9;
                break;
            case 0xd8:
                skip = 17;
                break;
            case 0xd9:
                lenbytes = 1, kind = 1;
                break;
            case 0xda:
                lenbytes = 2, kind = 1;
                break;
            case 0xdb:
                lenbytes = 4, kind = 1;
                break;
            case 0xdc:
                lenbytes = 2, kind = 3;
                break;
            case 0xdd:
                lenbytes = 4, kind = 3;
                break;
            case 0xde:
                lenbytes = 2, kind = 4;
                break;
            case 0xdf:
                lenbytes = 4, kind = 4;
                break;
            default:
                return false; /* 0xc1 is never used */
            }
        }
        if (lenbytes) {
            if (len - pos < lenbytes) return false;
            uint64_t n = be(p + pos, lenbytes);
            pos += lenbytes;
            if (kind == 1) skip = n;
            if (kind == 2) skip = n + 1; /* the type byte */
            if (kind == 3) items = n;
            if (kind == 4) items = n * 2;
        }
        if (skip > len - pos) return false;
        pos += skip;
        if (items) {
            if (items > len - pos || depth == CC_DMSG_MAX_DEPTH) return false;
            pending[++depth] = items;
        }
    }
    return pos == len;
}

/* ---- reading objects -------------------------------------------------------------------- */

bool cc_mp_is_str(const msgpack_object *o)
{
    return o && o->type == MSGPACK_OBJECT_STR;
}

bool cc_mp_is_nil(const msgpack_object *o)
{
    return o && o->type == MSGPACK_OBJECT_NIL;
}

bool cc_mp_str_eq(const msgpack_object *o, const char *s)
{
    size_t n = strlen(s);
    return cc_mp_is_str(o) && o->via.str.size == n && memcmp(o->via.str.ptr, s, n) == 0;
}

const msgpack_object *cc_mp_get(const msgpack_object *map, const char *key)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP) return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++)
        if (cc_mp_str_eq(&map->via.map.ptr[i].key, key)) return &map->via.map.ptr[i].val;
    return NULL;
}

bool cc_mp_num(const msgpack_object *o, double *out)
{
    if (!o) return false;
    switch (o->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        *out = (double)o->via.u64;
        return true;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        *out = (double)o->via.i64;
        return true;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        *out = o->via.f64;
        return true;
    default:
        return false;
    }
}

bool cc_mp_uint(const msgpack_object *o, uint64_t *out)
{
    if (!o || o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > (uint64_t)INT64_MAX)
        return false;
    *out = o->via.u64;
    return true;
}

/* ---- the per-message arena -------------------------------------------------------------- */

struct cc_dmsg_arena {
    struct cc_dmsg_arena *next;
    size_t used, cap;
    max_align_t mem[];
};

static void *arena_alloc(struct cc_dmsg *m, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    struct cc_dmsg_arena *a = m->arena;
    if (!a || a->cap - a->used < n) {
        size_t cap = n > 4096 ? n : 4096;
        a = cc_xmalloc(sizeof(*a) + cap);
        a->next = m->arena;
        a->used = 0;
        a->cap = cap;
        m->arena = a;
    }
    void *p = (char *)a->mem + a->used;
    a->used += n;
    return p;
}

static const char *arena_str(struct cc_dmsg *m, const msgpack_object *o)
{
    char *s = arena_alloc(m, o->via.str.size + 1);
    memcpy(s, o->via.str.ptr, o->via.str.size);
    s[o->via.str.size] = '\0';
    return s;
}

/* ---- decoding --------------------------------------------------------------------------- */

struct dctx {
    struct cc_dmsg *m;
    char *err;
    size_t errlen;
};

static int bad(struct dctx *c, const char *fmt, ...) CC_PRINTF(2, 3);
static int bad(struct dctx *c, const char *fmt, ...)
{
    if (c->err && c->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err, c->errlen, fmt, ap);
        va_end(ap);
    }
    return CC_EPROTO;
}

/* An optional string field: absent or nil leaves *|out| NULL; other types are errors. */
static int opt_str(struct dctx *c, const msgpack_object *map, const char *key, const char **out)
{
    const msgpack_object *o = cc_mp_get(map, key);
    *out = NULL;
    if (!o || cc_mp_is_nil(o)) return 0;
    if (!cc_mp_is_str(o)) return bad(c, "%s: \"%s\" is not a string", c->m->type_name, key);
    *out = arena_str(c->m, o);
    return 0;
}

static int req_str(struct dctx *c, const msgpack_object *map, const char *key, const char **out)
{
    const msgpack_object *o = cc_mp_get(map, key);
    if (!cc_mp_is_str(o))
        return bad(c, "%s: \"%s\" is missing or not a string", c->m->type_name, key);
    *out = arena_str(c->m, o);
    return 0;
}

/* An optional non-negative integer: -1 when absent or nil. */
static int opt_uint(struct dctx *c, const msgpack_object *map, const char *key, int64_t *out)
{
    const msgpack_object *o = cc_mp_get(map, key);
    uint64_t v;
    *out = -1;
    if (!o || cc_mp_is_nil(o)) return 0;
    if (!cc_mp_uint(o, &v))
        return bad(c, "%s: \"%s\" is not a non-negative integer", c->m->type_name, key);
    *out = (int64_t)v;
    return 0;
}

static int need_map(struct dctx *c, const msgpack_object *o)
{
    if (!o || o->type != MSGPACK_OBJECT_MAP)
        return bad(c, "%s: the data is not a map", c->m->type_name);
    return 0;
}

static int counts(struct dctx *c, const msgpack_object *o, const char *what, struct cc_dcounts *out)
{
    if (!o || o->type != MSGPACK_OBJECT_MAP)
        return bad(c, "%s: \"%s\" is missing or not a map", c->m->type_name, what);
    uint32_t n = o->via.map.size;
    out->n = n;
    out->names = arena_alloc(c->m, (n ? n : 1) * sizeof(*out->names));
    out->counts = arena_alloc(c->m, (n ? n : 1) * sizeof(*out->counts));
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object_kv *kv = &o->via.map.ptr[i];
        if (!cc_mp_is_str(&kv->key) || !cc_mp_uint(&kv->val, &out->counts[i]))
            return bad(c, "%s: \"%s\" must map class names to counts", c->m->type_name, what);
        out->names[i] = arena_str(c->m, &kv->key);
    }
    return 0;
}

static int str_list(struct dctx *c, const msgpack_object *o, const char *what, const char ***out,
                    size_t *n, bool *has)
{
    *out = NULL;
    *n = 0;
    *has = false;
    if (!o || cc_mp_is_nil(o)) return 0;
    if (o->type != MSGPACK_OBJECT_ARRAY)
        return bad(c, "%s: \"%s\" is not a list", c->m->type_name, what);
    uint32_t k = o->via.array.size;
    const char **v = arena_alloc(c->m, (k ? k : 1) * sizeof(*v));
    for (uint32_t i = 0; i < k; i++) {
        if (!cc_mp_is_str(&o->via.array.ptr[i]))
            return bad(c, "%s: \"%s\" holds something else than strings", c->m->type_name, what);
        v[i] = arena_str(c->m, &o->via.array.ptr[i]);
    }
    *out = v;
    *n = k;
    *has = true;
    return 0;
}

static int dec_client_ready(struct dctx *c, const msgpack_object *d)
{
    struct cc_dmsg *m = c->m;
    if (cc_mp_is_nil(d)) {
        m->u.client_ready.legacy = true;
        return 0;
    }
    if (cc_mp_is_str(d)) {
        m->u.client_ready.version = arena_str(m, d);
        m->u.client_ready.legacy = d->via.str.size == 0;
        return 0;
    }
    if (d->type == MSGPACK_OBJECT_NEGATIVE_INTEGER && d->via.i64 == -1) {
        m->u.client_ready.any_version = true;
        return 0;
    }
    return bad(c, "client_ready: the version is neither a string nor -1");
}

static int dec_ack(struct dctx *c, const msgpack_object *d)
{
    struct cc_dmsg *m = c->m;
    m->u.ack.index = -1;
    if (cc_mp_is_nil(d)) return 0; /* masters before 2.11 */
    int rv = need_map(c, d);
    if (!rv) rv = opt_uint(c, d, "index", &m->u.ack.index);
    if (!rv) rv = opt_str(c, d, "cicada", &m->u.ack.cicada);
    return rv;
}

static int dec_heartbeat(struct dctx *c, const msgpack_object *d)
{
    struct cc_dmsg *m = c->m;
    if (m->dir == CC_DMSG_TO_WORKER) return 0; /* the master's heartbeat carries nothing */
    int rv = need_map(c, d);
    if (!rv) rv = req_str(c, d, "state", &m->u.heartbeat.state);
    if (rv) return rv;
    if (!cc_mp_num(cc_mp_get(d, "current_cpu_usage"), &m->u.heartbeat.cpu))
        return bad(c, "heartbeat: \"current_cpu_usage\" is missing or not a number");
    if (!isfinite(m->u.heartbeat.cpu)) m->u.heartbeat.cpu = 0;
    double mem;
    const msgpack_object *o = cc_mp_get(d, "current_memory_usage");
    m->u.heartbeat.memory = -1;
    if (o && !cc_mp_is_nil(o)) {
        if (!cc_mp_num(o, &mem) || !(mem >= 0) || mem > 9e18)
            return bad(c, "heartbeat: \"current_memory_usage\" is not a byte count");
        m->u.heartbeat.memory = (int64_t)mem;
    }
    return opt_str(c, d, "cicada", &m->u.heartbeat.cicada);
}

static int dec_spawning_complete(struct dctx *c, const msgpack_object *d)
{
    struct cc_dmsg *m = c->m;
    m->u.spawning_complete.user_count = -1;
    if (m->dir == CC_DMSG_TO_WORKER && cc_mp_is_nil(d)) return 0;
    int rv = need_map(c, d);
    if (rv) return rv;
    if (m->dir == CC_DMSG_TO_MASTER) {
        rv = counts(c, cc_mp_get(d, "user_classes_count"), "user_classes_count",
                    &m->u.spawning_complete.classes);
        if (rv) return rv;
        m->u.spawning_complete.has_classes = true;
        rv = opt_str(c, d, "cicada", &m->u.spawning_complete.cicada);
        if (rv) return rv;
    }
    return opt_uint(c, d, "user_count", &m->u.spawning_complete.user_count);
}

static int dec_spawn(struct dctx *c, const msgpack_object *d)
{
    struct cc_dmsg *m = c->m;
    int rv = need_map(c, d);
    if (rv) return rv;
    if (!cc_mp_num(cc_mp_get(d, "timestamp"), &m->u.spawn.timestamp) ||
        !isfinite(m->u.spawn.timestamp))
        return bad(c, "spawn: \"timestamp\" is missing or not a number");
    rv = counts(c, cc_mp_get(d, "user_classes_count"), "user_classes_count", &m->u.spawn.classes);
    if (!rv) rv = opt_str(c, d, "host", &m->u.spawn.host);
    if (rv) return rv;
    const msgpack_object *st = cc_mp_get(d, "stop_timeout");
    if (st && !cc_mp_is_nil(st)) {
        if (!cc_mp_num(st, &m->u.spawn.stop_timeout) || !(m->u.spawn.stop_timeout >= 0) ||
            !isfinite(m->u.spawn.stop_timeout))
            return bad(c, "spawn: \"stop_timeout\" is not a number of seconds");
        m->u.spawn.has_stop_timeout = true;
    }
    const msgpack_object *po = cc_mp_get(d, "parsed_options");
    if (po && !cc_mp_is_nil(po)) {
        if (po->type != MSGPACK_OBJECT_MAP) return bad(c, "spawn: \"parsed_options\" is not a map");
        m->u.spawn.parsed_options = po;
        rv = str_list(c, cc_mp_get(po, "tags"), "tags", &m->u.spawn.tags, &m->u.spawn.ntags,
                      &m->u.spawn.has_tags);
        if (!rv)
            rv =
                str_list(c, cc_mp_get(po, "exclude_tags"), "exclude_tags", &m->u.spawn.exclude_tags,
                         &m->u.spawn.nexclude_tags, &m->u.spawn.has_exclude_tags);
    }
    return rv;
}

static int dec_stats(struct dctx *c, const msgpack_object *d)
{
    struct cc_dmsg *m = c->m;
    m->u.stats.user_count = -1;
    int rv = need_map(c, d);
    if (rv) return rv;
    m->u.stats.body = d;
    const msgpack_object *uc = cc_mp_get(d, "user_classes_count");
    if (uc && !cc_mp_is_nil(uc)) {
        rv = counts(c, uc, "user_classes_count", &m->u.stats.classes);
        if (rv) return rv;
        m->u.stats.has_classes = true;
    }
    return opt_uint(c, d, "user_count", &m->u.stats.user_count);
}

static int dec_exception(struct dctx *c, const msgpack_object *d)
{
    struct cc_dmsg *m = c->m;
    int rv = need_map(c, d);
    if (!rv) rv = req_str(c, d, "msg", &m->u.exception.msg);
    if (!rv) rv = opt_str(c, d, "traceback", &m->u.exception.traceback);
    if (rv) return rv;
    if (!m->u.exception.traceback) m->u.exception.traceback = "";
    int64_t count;
    rv = opt_uint(c, d, "count", &count);
    if (rv) return rv;
    m->u.exception.count = count > 0 ? (uint64_t)count : 1;
    return 0;
}

static int dec_logs(struct dctx *c, const msgpack_object *d)
{
    struct cc_dmsg *m = c->m;
    bool has;
    int rv = need_map(c, d);
    if (!rv) rv = opt_str(c, d, "worker_id", &m->u.logs.worker_id);
    if (!rv)
        rv = str_list(c, cc_mp_get(d, "logs"), "logs", &m->u.logs.lines, &m->u.logs.nlines, &has);
    return rv;
}

static int dec_locustfile(struct dctx *c, const msgpack_object *d)
{
    struct cc_dmsg *m = c->m;
    if (m->dir == CC_DMSG_TO_WORKER) return 0; /* left raw */
    if (cc_mp_is_nil(d)) return 0;
    int rv = need_map(c, d);
    if (!rv) rv = opt_str(c, d, "version", &m->u.locustfile.version);
    return rv;
}

void cc_dmsg_release(struct cc_dmsg *m)
{
    if (m->buf) {
        msgpack_unpacked_destroy(&m->up);
        cc_free(m->buf);
    }
    while (m->arena) {
        struct cc_dmsg_arena *next = m->arena->next;
        cc_free(m->arena);
        m->arena = next;
    }
    memset(m, 0, sizeof(*m));
}

int cc_dmsg_decode(struct cc_dmsg *m, const void *buf, size_t len, enum cc_dmsg_dir dir, char *err,
                   size_t errlen)
{
    memset(m, 0, sizeof(*m));
    m->dir = dir;
    m->type_name = "";
    struct dctx c = {m, err, errlen};
    if (err && errlen) err[0] = '\0';
    if (len > CC_DMSG_MAX_BYTES) {
        bad(&c, "a message of %zu bytes is over the limit", len);
        return CC_ETOOBIG;
    }
    if (!mp_scan(buf, len)) return bad(&c, "not one well-formed msgpack object");

    m->buf = cc_xmalloc(len ? len : 1);
    memcpy(m->buf, buf, len);
    msgpack_unpacked_init(&m->up);
    size_t off = 0;
    int rv;
    if (msgpack_unpack_next(&m->up, m->buf, len, &off) != MSGPACK_UNPACK_SUCCESS || off != len) {
        rv = bad(&c, "msgpack could not unpack the message");
        goto fail;
    }
    const msgpack_object *root = &m->up.data;
    if (root->type != MSGPACK_OBJECT_ARRAY || root->via.array.size != 3) {
        rv = bad(&c, "a message must be an array of [type, data, node_id]");
        goto fail;
    }
    const msgpack_object *t = &root->via.array.ptr[0], *d = &root->via.array.ptr[1],
                         *node = &root->via.array.ptr[2];
    if (!cc_mp_is_str(t) || t->via.str.size == 0) {
        rv = bad(&c, "the message type is not a string");
        goto fail;
    }
    m->type_name = arena_str(m, t);
    if (cc_mp_is_str(node)) {
        m->node_id = arena_str(m, node);
    } else if (!cc_mp_is_nil(node)) {
        rv = bad(&c, "%s: the node id is not a string", m->type_name);
        goto fail;
    }
    m->data = d;
    m->type = CC_DMSG_CUSTOM;
    unsigned want = dir == CC_DMSG_TO_MASTER ? TO_M : TO_W;
    for (unsigned i = 1; i < CC_DMSG_TYPE_COUNT; i++) {
        if ((types[i].dirs & want) && strcmp(types[i].name, m->type_name) == 0) {
            m->type = (enum cc_dmsg_type)i;
            break;
        }
    }
    switch (m->type) {
    case CC_DMSG_CLIENT_READY:
        rv = dec_client_ready(&c, d);
        break;
    case CC_DMSG_ACK:
        rv = dec_ack(&c, d);
        break;
    case CC_DMSG_HEARTBEAT:
        rv = dec_heartbeat(&c, d);
        break;
    case CC_DMSG_SPAWNING_COMPLETE:
        rv = dec_spawning_complete(&c, d);
        break;
    case CC_DMSG_SPAWN:
        rv = dec_spawn(&c, d);
        break;
    case CC_DMSG_STATS:
        rv = dec_stats(&c, d);
        break;
    case CC_DMSG_EXCEPTION:
        rv = dec_exception(&c, d);
        break;
    case CC_DMSG_LOGS:
        rv = dec_logs(&c, d);
        break;
    case CC_DMSG_LOCUSTFILE:
        rv = dec_locustfile(&c, d);
        break;
    default:
        rv = 0;
        break; /* no data, or data passed on raw */
    }
    if (rv) goto fail;
    return 0;

fail:
    cc_dmsg_release(m);
    return rv;
}

/* ---- encoding --------------------------------------------------------------------------- */

void cc_dbuf_init(struct cc_dbuf *b)
{
    msgpack_sbuffer_init(&b->sb);
    msgpack_packer_init(&b->pk, &b->sb, msgpack_sbuffer_write);
}

void cc_dbuf_release(struct cc_dbuf *b)
{
    msgpack_sbuffer_destroy(&b->sb);
    msgpack_sbuffer_init(&b->sb);
}

void cc_dbuf_clear(struct cc_dbuf *b)
{
    msgpack_sbuffer_clear(&b->sb);
}

void cc_mp_pack_str(msgpack_packer *pk, const char *s)
{
    if (!s) {
        msgpack_pack_nil(pk);
        return;
    }
    size_t n = strlen(s);
    msgpack_pack_str_with_body(pk, s, n);
}

static void pack_key(msgpack_packer *pk, const char *k)
{
    msgpack_pack_str_with_body(pk, k, strlen(k));
}

void cc_dmsg_begin(struct cc_dbuf *b, const char *type)
{
    msgpack_pack_array(&b->pk, 3);
    cc_mp_pack_str(&b->pk, type);
}

void cc_dmsg_end(struct cc_dbuf *b, const char *node_id)
{
    cc_mp_pack_str(&b->pk, node_id);
}

void cc_dmsg_pack_empty(struct cc_dbuf *b, const char *type, const char *node_id)
{
    cc_dmsg_begin(b, type);
    msgpack_pack_nil(&b->pk);
    cc_dmsg_end(b, node_id);
}

void cc_dmsg_pack_client_ready(struct cc_dbuf *b, const char *version, const char *node_id)
{
    cc_dmsg_begin(b, "client_ready");
    if (version)
        cc_mp_pack_str(&b->pk, version);
    else
        msgpack_pack_int64(&b->pk, -1);
    cc_dmsg_end(b, node_id);
}

void cc_dmsg_pack_ack(struct cc_dbuf *b, uint64_t index, const char *cicada, const char *node_id)
{
    cc_dmsg_begin(b, "ack");
    msgpack_pack_map(&b->pk, cicada ? 2 : 1);
    pack_key(&b->pk, "index");
    msgpack_pack_uint64(&b->pk, index);
    if (cicada) {
        pack_key(&b->pk, "cicada");
        cc_mp_pack_str(&b->pk, cicada);
    }
    cc_dmsg_end(b, node_id);
}

void cc_dmsg_pack_heartbeat(struct cc_dbuf *b, const char *state, double cpu, uint64_t memory,
                            const char *cicada, const char *node_id)
{
    cc_dmsg_begin(b, "heartbeat");
    msgpack_pack_map(&b->pk, cicada ? 4 : 3);
    pack_key(&b->pk, "state");
    cc_mp_pack_str(&b->pk, state);
    pack_key(&b->pk, "current_cpu_usage");
    msgpack_pack_double(&b->pk, cpu);
    pack_key(&b->pk, "current_memory_usage");
    msgpack_pack_uint64(&b->pk, memory);
    if (cicada) {
        pack_key(&b->pk, "cicada");
        cc_mp_pack_str(&b->pk, cicada);
    }
    cc_dmsg_end(b, node_id);
}

static void pack_counts(msgpack_packer *pk, size_t n, const char *const *names,
                        const uint32_t *counts)
{
    msgpack_pack_map(pk, n);
    for (size_t i = 0; i < n; i++) {
        cc_mp_pack_str(pk, names[i]);
        msgpack_pack_uint32(pk, counts ? counts[i] : 0);
    }
}

void cc_dmsg_pack_spawning_complete(struct cc_dbuf *b, size_t n, const char *const *names,
                                    const uint32_t *counts, const char *cicada, const char *node_id)
{
    uint64_t total = 0;
    for (size_t i = 0; i < n && counts; i++)
        total += counts[i];
    cc_dmsg_begin(b, "spawning_complete");
    msgpack_pack_map(&b->pk, cicada ? 3 : 2);
    pack_key(&b->pk, "user_classes_count");
    pack_counts(&b->pk, n, names, counts);
    pack_key(&b->pk, "user_count");
    msgpack_pack_uint64(&b->pk, total);
    if (cicada) {
        pack_key(&b->pk, "cicada");
        cc_mp_pack_str(&b->pk, cicada);
    }
    cc_dmsg_end(b, node_id);
}

void cc_dmsg_pack_all_spawned(struct cc_dbuf *b, uint64_t user_count, const char *node_id)
{
    cc_dmsg_begin(b, "spawning_complete");
    msgpack_pack_map(&b->pk, 1);
    pack_key(&b->pk, "user_count");
    msgpack_pack_uint64(&b->pk, user_count);
    cc_dmsg_end(b, node_id);
}

void cc_dmsg_pack_spawn(struct cc_dbuf *b, const struct cc_dspawn *s, const char *node_id)
{
    cc_dmsg_begin(b, "spawn");
    msgpack_pack_map(&b->pk, 5);
    pack_key(&b->pk, "timestamp");
    msgpack_pack_double(&b->pk, s->timestamp);
    pack_key(&b->pk, "user_classes_count");
    pack_counts(&b->pk, s->nclasses, s->names, s->counts);
    pack_key(&b->pk, "host");
    cc_mp_pack_str(&b->pk, s->host);
    pack_key(&b->pk, "stop_timeout");
    if (s->has_stop_timeout)
        msgpack_pack_double(&b->pk, s->stop_timeout);
    else
        msgpack_pack_nil(&b->pk);
    pack_key(&b->pk, "parsed_options");
    if (s->options && s->options_len)
        msgpack_sbuffer_write(&b->sb, s->options, s->options_len);
    else
        msgpack_pack_map(&b->pk, 0);
    cc_dmsg_end(b, node_id);
}

void cc_dmsg_pack_exception(struct cc_dbuf *b, const char *msg, const char *traceback,
                            uint64_t count, const char *node_id)
{
    cc_dmsg_begin(b, "exception");
    msgpack_pack_map(&b->pk, count > 1 ? 3 : 2);
    pack_key(&b->pk, "msg");
    cc_mp_pack_str(&b->pk, msg ? msg : "");
    pack_key(&b->pk, "traceback");
    cc_mp_pack_str(&b->pk, traceback ? traceback : "");
    if (count > 1) {
        pack_key(&b->pk, "count");
        msgpack_pack_uint64(&b->pk, count);
    }
    cc_dmsg_end(b, node_id);
}

void cc_dmsg_pack_logs(struct cc_dbuf *b, const char *worker_id, const char *const *lines, size_t n,
                       const char *node_id)
{
    cc_dmsg_begin(b, "logs");
    msgpack_pack_map(&b->pk, 2);
    pack_key(&b->pk, "worker_id");
    cc_mp_pack_str(&b->pk, worker_id);
    pack_key(&b->pk, "logs");
    msgpack_pack_array(&b->pk, n);
    for (size_t i = 0; i < n; i++)
        cc_mp_pack_str(&b->pk, lines[i]);
    cc_dmsg_end(b, node_id);
}

void cc_dmsg_pack_raw(struct cc_dbuf *b, const char *type, const void *data, size_t len,
                      const char *node_id)
{
    cc_dmsg_begin(b, type);
    if (data && len)
        msgpack_sbuffer_write(&b->sb, data, len);
    else
        msgpack_pack_nil(&b->pk);
    cc_dmsg_end(b, node_id);
}

void cc_dmsg_pack_options(msgpack_packer *pk, const struct cc_dopt *o, size_t n)
{
    msgpack_pack_map(pk, n);
    for (size_t i = 0; i < n; i++) {
        pack_key(pk, o[i].key);
        switch (o[i].type) {
        case CC_DOPT_NIL:
            msgpack_pack_nil(pk);
            break;
        case CC_DOPT_STR:
            cc_mp_pack_str(pk, o[i].s);
            break;
        case CC_DOPT_INT:
            msgpack_pack_int64(pk, o[i].i);
            break;
        case CC_DOPT_NUM:
            msgpack_pack_double(pk, o[i].d);
            break;
        case CC_DOPT_BOOL:
            if (o[i].b)
                msgpack_pack_true(pk);
            else
                msgpack_pack_false(pk);
            break;
        case CC_DOPT_LIST:
            msgpack_pack_array(pk, o[i].nlist);
            for (size_t k = 0; k < o[i].nlist; k++)
                cc_mp_pack_str(pk, o[i].list[k]);
            break;
        }
    }
}
