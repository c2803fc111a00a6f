/* SPDX-License-Identifier: MIT */
/*
 * pb_lua.c: protocol buffer messages to and from Lua tables (see pb_lua.h for the mapping).
 *
 * Encoding writes a nested message's length as one byte and moves the message along in the
 * rare case it needs more, so each message is written once, in one pass. Both directions keep
 * to raw table access and report errors as return values: the callers run them where a Lua
 * error could not be caught (a completion pushing a reply on a waiting user's stack), or with
 * buffers that must not leak.
 */
#include "proto/grpc/pb_lua.h"

#include <errno.h>
#include <lauxlib.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#define LUA_TCDATA_ 10                 /* LuaJIT's type of cdata values (not in lua.h) */
#define EXACT_LIMIT (INT64_C(1) << 53) /* above, a double no longer holds every integer */

/* ---- encoding --------------------------------------------------------------------------- */

struct seg {
    const char *name; /* a field name, or NULL for a list index / map key */
    uint32_t len;
    int64_t index;
};

struct enc {
    lua_State *L;
    const struct pb_schema *s;
    struct pb_buf *b;
    char *err;
    size_t errlen;
    int32_t top; /* the message encoding started from, for messages */
    uint32_t nsegs;
    struct seg segs[2 * PB_MAX_DEPTH + 4];
};

/* Fails with "field 'a.b[2]' of pkg.M: <what>". */
static int efail(struct enc *e, const char *fmt, ...) CC_PRINTF(2, 3);
static int efail(struct enc *e, const char *fmt, ...)
{
    char path[256];
    size_t n = 0;
    path[0] = '\0';
    for (uint32_t i = 0; i < e->nsegs && n < sizeof(path) - 24; i++) {
        const struct seg *g = &e->segs[i];
        int w;
        if (g->name)
            w = snprintf(path + n, sizeof(path) - n, "%s%.*s", i ? "." : "",
                         (int)CC_MIN(g->len, 100u), g->name);
        else
            w = snprintf(path + n, sizeof(path) - n, "[%lld]", (long long)g->index);
        if (w > 0) n = CC_MIN(n + (size_t)w, sizeof(path) - 1);
    }
    char what[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (n)
        snprintf(e->err, e->errlen, "field '%s' of %s: %s", path, e->s->msgs[e->top].name, what);
    else
        snprintf(e->err, e->errlen, "%s: %s", e->s->msgs[e->top].name, what);
    return -1;
}

static const char *type_of(lua_State *L, int idx)
{
    return lua_type(L, idx) == LUA_TCDATA_ ? "cdata" : lua_typename(L, lua_type(L, idx));
}

static bool is_signed64(uint8_t t)
{
    return t == PB_INT64 || t == PB_SINT64 || t == PB_SFIXED64;
}

/*
 * The integer at |idx| for a field of type |t|, as the two's complement bits of its value:
 * a Lua number that is integral, a decimal string, or (64-bit types) a 64-bit cdata, within
 * the type's range.
 */
static int get_int(struct enc *e, int idx, uint8_t t, uint64_t *out)
{
    lua_State *L = e->L;
    bool sign = t == PB_INT32 || t == PB_SINT32 || t == PB_SFIXED32 || is_signed64(t);
    bool wide =
        t == PB_INT64 || t == PB_UINT64 || t == PB_SINT64 || t == PB_FIXED64 || t == PB_SFIXED64;
    int64_t sv = 0;
    uint64_t uv = 0;
    bool neg = false;
    int lt = lua_type(L, idx);
    if (lt == LUA_TNUMBER) {
        double d = lua_tonumber(L, idx);
        if (d != floor(d) || !isfinite(d)) return efail(e, "%.17g is not an integer", d);
        if (d < 0) {
            if (d < -9223372036854775808.0) return efail(e, "%.17g is out of range", d);
            neg = true;
            sv = (int64_t)d;
        } else {
            if (d >= 18446744073709551616.0) return efail(e, "%.17g is out of range", d);
            uv = (uint64_t)d;
        }
    } else if (lt == LUA_TSTRING) {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        char buf[32];
        if (n == 0 || n >= sizeof(buf)) return efail(e, "'%.40s' is not an integer", s);
        memcpy(buf, s, n);
        buf[n] = '\0';
        char *end;
        errno = 0;
        if (buf[0] == '-') {
            neg = true;
            sv = strtoll(buf, &end, 10);
        } else {
            uv = strtoull(buf, &end, 10);
        }
        if (*end || errno || !(buf[0] == '-' || (buf[0] >= '0' && buf[0] <= '9')))
            return efail(e, "'%s' is not an integer%s", buf, errno ? " in range" : "");
        if (neg && sv == 0) neg = false;
    } else if (lt == LUA_TCDATA_ && wide) {
        /* LuaJIT boxes 1LL and 1ULL as 8 bytes; the field's type says how to read them */
        const void *p = lua_topointer(L, idx);
        if (!p) return efail(e, "expected an integer, got cdata");
        memcpy(&uv, p, 8);
        if (is_signed64(t) && (int64_t)uv < 0) {
            neg = true;
            sv = (int64_t)uv;
        }
    } else {
        return efail(e, "expected an integer, got %s", type_of(L, idx));
    }
    if (neg && !sign) return efail(e, "%lld is negative", (long long)sv);
    switch (t) {
    case PB_INT32:
    case PB_SINT32:
    case PB_SFIXED32:
        if (neg ? sv < INT32_MIN : uv > INT32_MAX) return efail(e, "out of range for int32");
        break;
    case PB_UINT32:
    case PB_FIXED32:
        if (uv > UINT32_MAX) return efail(e, "out of range for uint32");
        break;
    default:
        if (sign && !neg && uv > INT64_MAX) return efail(e, "out of range for a signed 64-bit");
    }
    *out = neg ? (uint64_t)sv : uv;
    return 0;
}

static int get_enum(struct enc *e, int idx, const struct pb_field *f, int32_t *out)
{
    lua_State *L = e->L;
    if (lua_type(L, idx) == LUA_TSTRING) {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        const struct pb_enum *en = &e->s->enums[f->ref];
        for (uint32_t i = 0; i < en->nvalues; i++)
            if (strlen(en->values[i].name) == n && memcmp(en->values[i].name, s, n) == 0) {
                *out = en->values[i].number;
                return 0;
            }
        return efail(e, "'%.60s' is not a value of %s", s, en->name);
    }
    if (lua_type(L, idx) != LUA_TNUMBER)
        return efail(e, "expected an enum name or number, got %s", type_of(L, idx));
    uint64_t v;
    if (get_int(e, idx, PB_INT32, &v) != 0) return -1;
    *out = (int32_t)(uint32_t)v;
    return 0;
}

static void put_key(struct pb_buf *b, uint32_t number, uint8_t wire)
{
    pb_put_varint(b, (uint64_t)number << 3 | wire);
}

/*
 * Writes the value at |idx| as a scalar of field |f| (its key first unless |nokey|). With
 * |skip_default|, a value equal to the type's default writes nothing (proto3 fields without
 * presence).
 */
static int put_scalar(struct enc *e, int idx, const struct pb_field *f, bool nokey,
                      bool skip_default)
{
    lua_State *L = e->L;
    struct pb_buf *b = e->b;
    uint8_t t = f->type;
    uint64_t v = 0;
    switch (t) {
    case PB_DOUBLE:
    case PB_FLOAT: {
        if (lua_type(L, idx) != LUA_TNUMBER)
            return efail(e, "expected a number, got %s", type_of(L, idx));
        double d = lua_tonumber(L, idx);
        if (t == PB_FLOAT) {
            float fl = (float)d;
            uint32_t bits;
            memcpy(&bits, &fl, 4);
            if (skip_default && bits == 0) return 0;
            if (!nokey) put_key(b, f->number, PB_I32);
            pb_put_fixed32(b, bits);
        } else {
            memcpy(&v, &d, 8);
            if (skip_default && v == 0) return 0;
            if (!nokey) put_key(b, f->number, PB_I64);
            pb_put_fixed64(b, v);
        }
        return 0;
    }
    case PB_BOOL:
        if (lua_type(L, idx) != LUA_TBOOLEAN)
            return efail(e, "expected a boolean, got %s", type_of(L, idx));
        v = (uint64_t)lua_toboolean(L, idx);
        break;
    case PB_ENUM: {
        int32_t n = 0;
        if (get_enum(e, idx, f, &n) != 0) return -1;
        v = (uint64_t)(int64_t)n; /* negative enums take ten bytes, as int32 does */
        break;
    }
    case PB_STRING:
    case PB_BYTES: {
        if (lua_type(L, idx) != LUA_TSTRING)
            return efail(e, "expected a string, got %s", type_of(L, idx));
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        if (skip_default && n == 0) return 0;
        if (!nokey) put_key(b, f->number, PB_LEN);
        pb_put_varint(b, n);
        pb_put_bytes(b, s, n);
        return 0;
    }
    default:
        if (get_int(e, idx, t, &v) != 0) return -1;
        if (t == PB_INT32) v = (uint64_t)(int64_t)(int32_t)(uint32_t)v;
        break;
    }
    if (skip_default && v == 0) return 0;
    switch (t) {
    case PB_FIXED32:
    case PB_SFIXED32:
        if (!nokey) put_key(b, f->number, PB_I32);
        pb_put_fixed32(b, (uint32_t)v);
        return 0;
    case PB_FIXED64:
    case PB_SFIXED64:
        if (!nokey) put_key(b, f->number, PB_I64);
        pb_put_fixed64(b, v);
        return 0;
    case PB_SINT32: {
        int32_t x = (int32_t)(uint32_t)v;
        v = (uint32_t)(((uint32_t)x << 1) ^ (uint32_t)(x >> 31));
        break;
    }
    case PB_SINT64:
        v = pb_zigzag64((int64_t)v);
        break;
    }
    if (!nokey) put_key(b, f->number, PB_VARINT);
    pb_put_varint(b, v);
    return 0;
}

/* Starts a length-delimited value; returns where its length goes. */
static size_t len_begin(struct pb_buf *b)
{
    pb_buf_reserve(b, 1);
    return b->len++;
}

/* Writes the length of the value started at |mark|, moving it along if the length takes more
 * than the byte set aside. */
static void len_end(struct pb_buf *b, size_t mark)
{
    size_t n = b->len - mark - 1;
    unsigned vs = pb_varint_size(n);
    if (vs > 1) {
        pb_buf_reserve(b, vs - 1);
        memmove(b->p + mark + vs, b->p + mark + 1, n);
        b->len += vs - 1;
    }
    char *o = b->p + mark;
    while (n >= 0x80) {
        *o++ = (char)(n | 0x80);
        n >>= 7;
    }
    *o = (char)n;
}

static int enc_msg(struct enc *e, int32_t mi, int t, int depth);

static int put_message(struct enc *e, int idx, const struct pb_field *f, int depth, bool nokey)
{
    if (lua_type(e->L, idx) != LUA_TTABLE)
        return efail(e, "expected a table (message %s), got %s", e->s->msgs[f->ref].name,
                     type_of(e->L, idx));
    if (!nokey) put_key(e->b, f->number, PB_LEN);
    size_t mark = len_begin(e->b);
    if (enc_msg(e, f->ref, idx, depth + 1) != 0) return -1;
    len_end(e->b, mark);
    return 0;
}

static int put_value(struct enc *e, int idx, const struct pb_field *f, int depth)
{
    if (f->type == PB_MESSAGE) return put_message(e, idx, f, depth, false);
    if (f->type == PB_GROUP) return efail(e, "proto2 groups are not supported");
    return put_scalar(e, idx, f, false, false);
}

/* Whether the table at |idx| has any key at all. */
static bool has_keys(lua_State *L, int idx)
{
    lua_pushnil(L);
    if (!lua_next(L, idx)) return false;
    lua_pop(L, 2);
    return true;
}

static int enc_list(struct enc *e, int t, const struct pb_field *f, int depth)
{
    lua_State *L = e->L;
    if (lua_type(L, t) != LUA_TTABLE) return efail(e, "expected a list, got %s", type_of(L, t));
    size_t n = lua_objlen(L, t);
    if (n == 0) {
        if (has_keys(L, t))
            return efail(e, "expected a list (keys 1..n), got a table with other keys");
        return 0;
    }
    struct seg *g = &e->segs[e->nsegs++];
    g->name = NULL;
    int rc = 0;
    size_t mark = 0;
    if (f->flags & PB_F_PACKED) {
        put_key(e->b, f->number, PB_LEN);
        mark = len_begin(e->b);
    }
    for (size_t i = 1; i <= n && rc == 0; i++) {
        g->index = (int64_t)i;
        lua_rawgeti(L, t, (int)i);
        if (lua_isnil(L, -1))
            rc = efail(e, "the list has a hole");
        else if (f->flags & PB_F_PACKED)
            rc = put_scalar(e, lua_gettop(L), f, true, false);
        else
            rc = put_value(e, lua_gettop(L), f, depth);
        lua_pop(L, 1);
    }
    if (rc == 0 && (f->flags & PB_F_PACKED)) len_end(e->b, mark);
    e->nsegs--;
    return rc;
}

/* A map key, converted for sorting. */
struct mkey {
    int ref; /* the key's index in the table of keys */
    uint64_t bits;
    const char *s;
    size_t len;
};

static _Thread_local uint8_t key_sort_type; /* for cmp_key (qsort has no argument) */

static int cmp_key(const void *a, const void *b)
{
    const struct mkey *x = a, *y = b;
    switch (key_sort_type) {
    case PB_STRING: {
        int c = memcmp(x->s, y->s, CC_MIN(x->len, y->len));
        return c ? c : (x->len > y->len) - (x->len < y->len);
    }
    case PB_INT32:
    case PB_SINT32:
    case PB_SFIXED32:
    case PB_INT64:
    case PB_SINT64:
    case PB_SFIXED64:
        return ((int64_t)x->bits > (int64_t)y->bits) - ((int64_t)x->bits < (int64_t)y->bits);
    default:
        return (x->bits > y->bits) - (x->bits < y->bits);
    }
}

static int enc_map(struct enc *e, int t, const struct pb_field *f, int depth)
{
    lua_State *L = e->L;
    if (lua_type(L, t) != LUA_TTABLE)
        return efail(e, "expected a table (map), got %s", type_of(L, t));
    const struct pb_message *em = &e->s->msgs[f->ref];
    const struct pb_field *kf = pb_field_by_number(em, 1), *vf = pb_field_by_number(em, 2);
    if (!kf || !vf) return efail(e, "map entry %s lacks its key or value", em->name);
    /* the keys go into a table, so that their strings stay put while they are sorted */
    int base = lua_gettop(L);
    lua_newtable(L);
    int kt = base + 1;
    size_t n = 0, cap = 0;
    struct mkey *keys = NULL;
    struct seg *g = &e->segs[e->nsegs++];
    g->name = NULL;
    g->index = 0;
    int rc = 0;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        int ki = lua_gettop(L);
        cc_grow((void **)&keys, &cap, n + 1, sizeof(*keys));
        struct mkey *k = &keys[n++];
        k->ref = (int)n;
        k->s = NULL;
        k->len = 0;
        k->bits = 0;
        lua_pushvalue(L, ki);
        lua_rawseti(L, kt, k->ref);
        if (kf->type == PB_STRING) {
            if (lua_type(L, ki) != LUA_TSTRING) {
                rc = efail(e, "a map key must be a string, got %s", type_of(L, ki));
                break;
            }
            k->s = lua_tolstring(L, ki, &k->len);
        } else if (kf->type == PB_BOOL) {
            if (lua_type(L, ki) != LUA_TBOOLEAN) {
                rc = efail(e, "a map key must be a boolean, got %s", type_of(L, ki));
                break;
            }
            k->bits = (uint64_t)lua_toboolean(L, ki);
        } else if (get_int(e, ki, kf->type, &k->bits) != 0) {
            rc = -1;
            break;
        }
    }
    if (rc == 0) {
        key_sort_type = kf->type == PB_BYTES ? PB_STRING : kf->type;
        if (n > 1) qsort(keys, n, sizeof(*keys), cmp_key);
        for (size_t i = 0; i < n && rc == 0; i++) {
            put_key(e->b, f->number, PB_LEN);
            size_t mark = len_begin(e->b);
            g->index = (int64_t)i;
            lua_rawgeti(L, kt, keys[i].ref);
            int ki = lua_gettop(L);
            rc = put_scalar(e, ki, kf, false, false);
            if (rc == 0) {
                lua_pushvalue(L, ki);
                lua_rawget(L, t);
                int vi = lua_gettop(L);
                if (vf->type == PB_MESSAGE)
                    rc = put_message(e, vi, vf, depth, false);
                else
                    rc = put_scalar(e, vi, vf, false, false);
            }
            lua_settop(L, kt);
            if (rc == 0) len_end(e->b, mark);
        }
    }
    cc_free(keys);
    lua_settop(L, base);
    e->nsegs--;
    return rc;
}

static int enc_msg(struct enc *e, int32_t mi, int t, int depth)
{
    lua_State *L = e->L;
    if (depth > PB_MAX_DEPTH) return efail(e, "messages nested too deep");
    if (!lua_checkstack(L, 8)) return efail(e, "messages nested too deep");
    const struct pb_message *m = &e->s->msgs[mi];
    const struct pb_field *set[32]; /* the member set in each oneof (the first 32) */
    uint32_t no = CC_MIN(m->noneofs, 32u);
    for (uint32_t i = 0; i < no; i++)
        set[i] = NULL;
    uint32_t found = 0;
    struct seg *g = &e->segs[e->nsegs++];
    for (uint32_t i = 0; i < m->nfields; i++) {
        const struct pb_field *f = &m->fields[i];
        lua_pushlstring(L, f->name, f->name_len);
        lua_rawget(L, t);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            continue;
        }
        found++;
        g->name = f->name;
        g->len = f->name_len;
        int vi = lua_gettop(L), rc;
        if (f->oneof >= 0 && (uint32_t)f->oneof < no) {
            if (set[f->oneof]) {
                e->nsegs--;
                lua_pop(L, 1);
                return efail(e, "oneof %s: both %s and %s are set", m->oneofs[f->oneof],
                             set[f->oneof]->name, f->name);
            }
            set[f->oneof] = f;
        }
        if (f->flags & PB_F_MAP)
            rc = enc_map(e, vi, f, depth);
        else if (f->flags & PB_F_REPEATED)
            rc = enc_list(e, vi, f, depth);
        else if (f->type == PB_MESSAGE || f->type == PB_GROUP)
            rc = put_value(e, vi, f, depth);
        else
            rc = put_scalar(e, vi, f, false, !(f->flags & PB_F_PRESENCE));
        lua_pop(L, 1);
        if (rc != 0) {
            e->nsegs--;
            return -1;
        }
    }
    e->nsegs--;
    /* every key must be a field: a misspelt name is an error, not a field left out */
    uint32_t keys = 0;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        keys++;
    }
    if (keys == found) return 0;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        size_t kl;
        const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &kl) : NULL;
        if (!k) {
            const char *tn = type_of(L, -1);
            lua_pop(L, 1);
            return efail(e, "a %s key in a message table (message %s takes field names)", tn,
                         m->name);
        }
        if (!pb_field_by_name(m, k, kl)) {
            char name[80];
            snprintf(name, sizeof(name), "%.*s", (int)CC_MIN(kl, 70u), k);
            lua_pop(L, 1);
            if (e->nsegs == 0) return efail(e, "no field named '%s'", name);
            return efail(e, "no field named '%s' in %s", name, m->name);
        }
    }
    return 0;
}

int pb_lua_encode(lua_State *L, int idx, const struct pb_schema *s, int32_t mi, struct pb_buf *b,
                  char *err, size_t errlen)
{
    struct enc e = {.L = L, .s = s, .b = b, .err = err, .errlen = errlen, .top = mi};
    int top = lua_gettop(L);
    if (idx < 0) idx = top + idx + 1;
    if (lua_type(L, idx) != LUA_TTABLE) {
        snprintf(err, errlen, "%s: expected a table, got %s", s->msgs[mi].name, type_of(L, idx));
        return -1;
    }
    int rc = enc_msg(&e, mi, idx, 0);
    lua_settop(L, top);
    return rc;
}

/* ---- decoding --------------------------------------------------------------------------- */

struct dec {
    lua_State *L;
    const struct pb_schema *s;
    int mts; /* stack index of the metatables, or 0 */
    char *err;
    size_t errlen;
};

static int dfail(struct dec *d, const struct pb_message *m, const char *what)
{
    snprintf(d->err, d->errlen, "malformed %s: %s", m->name, what);
    return -1;
}

static void push_i64(lua_State *L, int64_t v)
{
    if (v >= -EXACT_LIMIT && v <= EXACT_LIMIT) {
        lua_pushnumber(L, (lua_Number)v);
    } else {
        char b[24];
        lua_pushlstring(L, b, (size_t)snprintf(b, sizeof(b), "%lld", (long long)v));
    }
}

static void push_u64(lua_State *L, uint64_t v)
{
    if (v <= (uint64_t)EXACT_LIMIT) { /* integers compared as integers: no rounding */
        lua_pushnumber(L, (lua_Number)v);
    } else {
        char b[24];
        lua_pushlstring(L, b, (size_t)snprintf(b, sizeof(b), "%llu", (unsigned long long)v));
    }
}

static void push_enum(struct dec *d, const struct pb_field *f, int32_t v)
{
    const char *name = pb_enum_name(&d->s->enums[f->ref], v);
    if (name)
        lua_pushstring(d->L, name);
    else
        lua_pushnumber(d->L, v);
}

/* Reads one scalar of field |f| with wire type |wire| at *|p| and pushes it. */
static int dec_scalar(struct dec *d, const struct pb_message *m, const struct pb_field *f,
                      uint8_t wire, const uint8_t **p, const uint8_t *end)
{
    lua_State *L = d->L;
    uint64_t v;
    if (wire == PB_VARINT) {
        if (pb_get_varint(p, end, &v) != 0) return dfail(d, m, "a truncated varint");
    } else if (wire == PB_I32) {
        if (end - *p < 4) return dfail(d, m, "a truncated fixed32");
        v = pb_get_fixed32(*p);
        *p += 4;
    } else if (wire == PB_I64) {
        if (end - *p < 8) return dfail(d, m, "a truncated fixed64");
        v = pb_get_fixed64(*p);
        *p += 8;
    } else {
        return dfail(d, m, "a scalar with a length");
    }
    switch (f->type) {
    case PB_DOUBLE: {
        double x;
        memcpy(&x, &v, 8);
        lua_pushnumber(L, x);
        break;
    }
    case PB_FLOAT: {
        float x;
        uint32_t bits = (uint32_t)v;
        memcpy(&x, &bits, 4);
        lua_pushnumber(L, (lua_Number)x);
        break;
    }
    case PB_INT64:
    case PB_SFIXED64:
        push_i64(L, (int64_t)v);
        break;
    case PB_SINT64:
        push_i64(L, pb_unzigzag64(v));
        break;
    case PB_UINT64:
    case PB_FIXED64:
        push_u64(L, v);
        break;
    case PB_INT32:
    case PB_SFIXED32:
        lua_pushnumber(L, (int32_t)(uint32_t)v);
        break;
    case PB_SINT32: {
        uint32_t u = (uint32_t)v;
        lua_pushnumber(L, (int32_t)(u >> 1) ^ -(int32_t)(u & 1));
        break;
    }
    case PB_UINT32:
    case PB_FIXED32:
        lua_pushnumber(L, (uint32_t)v);
        break;
    case PB_BOOL:
        lua_pushboolean(L, v != 0);
        break;
    case PB_ENUM:
        push_enum(d, f, (int32_t)(uint32_t)v);
        break;
    default:
        lua_pushnil(L);
    }
    return 0;
}

static int dec_msg(struct dec *d, int32_t mi, const uint8_t *p, const uint8_t *end, int depth);

/* Pushes the value of a length-delimited field |f| (string, bytes, message). */
static int dec_len_value(struct dec *d, const struct pb_field *f, const uint8_t *v, size_t vl,
                         int depth)
{
    if (f->type == PB_MESSAGE) return dec_msg(d, f->ref, v, v + vl, depth + 1);
    lua_pushlstring(d->L, (const char *)v, vl);
    return 0;
}

/* The table of repeated field |f| in the message at |t|, created if absent, pushed. */
static void push_list(lua_State *L, int t, const struct pb_field *f)
{
    lua_pushlstring(L, f->name, f->name_len);
    lua_rawget(L, t);
    if (lua_istable(L, -1)) return;
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushlstring(L, f->name, f->name_len);
    lua_pushvalue(L, -2);
    lua_rawset(L, t);
}

static void push_zero(lua_State *L, const struct pb_schema *s, const struct pb_field *f);

static void set_mt(struct dec *d, int32_t mi)
{
    if (!d->mts) return;
    lua_rawgeti(d->L, d->mts, mi + 1);
    lua_setmetatable(d->L, -2);
}

/* A map entry: its key and value pushed (defaults for what it leaves out). */
static int dec_entry(struct dec *d, const struct pb_field *f, const uint8_t *p, const uint8_t *end,
                     int depth)
{
    lua_State *L = d->L;
    const struct pb_message *em = &d->s->msgs[f->ref];
    const struct pb_field *kf = pb_field_by_number(em, 1), *vf = pb_field_by_number(em, 2);
    if (!kf || !vf) return dfail(d, em, "a map entry without its key or value field");
    int base = lua_gettop(L);
    bool hk = false, hv = false;
    lua_pushnil(L);
    lua_pushnil(L);
    while (p < end) {
        uint32_t num;
        uint8_t wire;
        if (pb_get_key(&p, end, &num, &wire) != 0) {
            lua_settop(L, base);
            return dfail(d, em, "a bad field key");
        }
        const struct pb_field *f2 = num == 1 ? kf : num == 2 ? vf : NULL;
        const uint8_t *v;
        size_t vl;
        if (!f2 || wire != pb_wire_of(f2->type) || f2->type == PB_GROUP) {
            if (pb_get_value(&p, end, wire, num, &v, &vl) != 0) {
                lua_settop(L, base);
                return dfail(d, em, "a truncated field");
            }
            continue;
        }
        int rc;
        if (wire == PB_LEN) {
            if (pb_get_value(&p, end, wire, num, &v, &vl) != 0) {
                lua_settop(L, base);
                return dfail(d, em, "a truncated field");
            }
            rc = dec_len_value(d, f2, v, vl, depth);
        } else {
            rc = dec_scalar(d, em, f2, wire, &p, end);
        }
        if (rc != 0) {
            lua_settop(L, base);
            return -1;
        }
        lua_replace(L, base + num); /* the last one wins */
        if (num == 1)
            hk = true;
        else
            hv = true;
    }
    if (!hk) {
        push_zero(L, d->s, kf);
        lua_replace(L, base + 1);
    }
    if (!hv) {
        if (vf->type == PB_MESSAGE) {
            lua_newtable(L);
            set_mt(d, vf->ref);
        } else {
            push_zero(L, d->s, vf);
        }
        lua_replace(L, base + 2);
    }
    return 0;
}

static int dec_msg(struct dec *d, int32_t mi, const uint8_t *p, const uint8_t *end, int depth)
{
    lua_State *L = d->L;
    const struct pb_message *m = &d->s->msgs[mi];
    if (depth > PB_MAX_DEPTH) return dfail(d, m, "messages nested too deep");
    if (!lua_checkstack(L, 10)) return dfail(d, m, "messages nested too deep");
    int base = lua_gettop(L);
    lua_createtable(L, 0, (int)CC_MIN(m->nfields, 8u));
    int t = base + 1;
    while (p < end) {
        uint32_t num;
        uint8_t wire;
        if (pb_get_key(&p, end, &num, &wire) != 0) goto bad_key;
        const struct pb_field *f = pb_field_by_number(m, num);
        const uint8_t *v;
        size_t vl;
        uint8_t want = f ? pb_wire_of(f->type) : 0;
        bool repeated = f && (f->flags & PB_F_REPEATED);
        if (f && wire == PB_LEN && repeated && pb_packable(f->type)) {
            /* packed (accepted whatever the field's option says, as protobuf does) */
            if (pb_get_value(&p, end, wire, num, &v, &vl) != 0) goto truncated;
            push_list(L, t, f);
            int li = lua_gettop(L);
            size_t n = lua_objlen(L, li);
            const uint8_t *q = v, *qe = v + vl;
            while (q < qe) {
                if (dec_scalar(d, m, f, want, &q, qe) != 0) goto fail;
                lua_rawseti(L, li, (int)++n);
            }
            lua_pop(L, 1);
            continue;
        }
        if (!f || wire != want || f->type == PB_GROUP) { /* unknown, or not as the schema says */
            if (pb_get_value(&p, end, wire, num, &v, &vl) != 0) goto truncated;
            continue;
        }
        if (f->flags & PB_F_MAP) {
            if (pb_get_value(&p, end, wire, num, &v, &vl) != 0) goto truncated;
            push_list(L, t, f);
            if (dec_entry(d, f, v, v + vl, depth + 1) != 0) goto fail;
            lua_rawset(L, -3);
            lua_pop(L, 1);
            continue;
        }
        if (wire == PB_LEN) {
            if (pb_get_value(&p, end, wire, num, &v, &vl) != 0) goto truncated;
            if (dec_len_value(d, f, v, vl, depth) != 0) goto fail;
        } else if (dec_scalar(d, m, f, wire, &p, end) != 0) {
            goto fail;
        }
        if (repeated) {
            push_list(L, t, f);
            lua_insert(L, -2);
            lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
            lua_pop(L, 1);
            continue;
        }
        if (f->oneof >= 0) /* setting one member of a oneof clears the others */
            for (uint32_t i = 0; i < m->nfields; i++)
                if (m->fields[i].oneof == f->oneof && &m->fields[i] != f) {
                    lua_pushlstring(L, m->fields[i].name, m->fields[i].name_len);
                    lua_pushnil(L);
                    lua_rawset(L, t);
                }
        lua_pushlstring(L, f->name, f->name_len);
        lua_insert(L, -2);
        lua_rawset(L, t);
    }
    set_mt(d, mi);
    return 0;
bad_key:
    lua_settop(L, base);
    return dfail(d, m, "a bad field key");
truncated:
    lua_settop(L, base);
    return dfail(d, m, "a field runs past the end of the message");
fail:
    lua_settop(L, base);
    return -1;
}

int pb_lua_decode(lua_State *L, const struct pb_schema *s, int32_t mi, const char *p, size_t len,
                  int mts, char *err, size_t errlen)
{
    struct dec d = {.L = L, .s = s, .err = err, .errlen = errlen};
    int top = lua_gettop(L);
    if (mts != LUA_NOREF && mts != LUA_REFNIL) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, mts);
        d.mts = top + 1;
    }
    int rc = dec_msg(&d, mi, (const uint8_t *)p, (const uint8_t *)p + len, 0);
    if (rc != 0) {
        lua_settop(L, top);
        return -1;
    }
    if (d.mts) lua_remove(L, d.mts);
    return 0;
}

/* ---- defaults --------------------------------------------------------------------------- */

/* The zero value of a scalar field's type (nil for messages). */
static void push_zero(lua_State *L, const struct pb_schema *s, const struct pb_field *f)
{
    switch (f->type) {
    case PB_BOOL:
        lua_pushboolean(L, 0);
        break;
    case PB_STRING:
    case PB_BYTES:
        lua_pushliteral(L, "");
        break;
    case PB_ENUM: {
        const struct pb_enum *e = &s->enums[f->ref];
        if (e->zero >= 0)
            lua_pushstring(L, e->values[e->zero].name);
        else
            lua_pushnumber(L, 0);
        break;
    }
    case PB_MESSAGE:
    case PB_GROUP:
        lua_pushnil(L);
        break;
    default:
        lua_pushnumber(L, 0);
    }
}

void pb_lua_push_default(lua_State *L, const struct pb_schema *s, const struct pb_field *f)
{
    if (f->flags & PB_F_PRESENCE)
        lua_pushnil(L);
    else
        push_zero(L, s, f);
}

/* __index of a decoded message: the default of an absent field; an absent list or map is
 * created empty (and kept, so that it can be added to). Upvalues: the schema's userdata (only
 * to keep it alive), the schema, the message index. */
static int l_default(lua_State *L)
{
    const struct pb_schema *s = lua_touserdata(L, lua_upvalueindex(2));
    int32_t mi = (int32_t)lua_tointeger(L, lua_upvalueindex(3));
    size_t n;
    const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tolstring(L, 2, &n) : NULL;
    if (!s || !k) return 0;
    const struct pb_field *f = pb_field_by_name(&s->msgs[mi], k, n);
    if (!f) return 0;
    if (f->flags & PB_F_REPEATED) {
        lua_newtable(L);
        lua_pushvalue(L, 2);
        lua_pushvalue(L, -2);
        lua_rawset(L, 1);
        return 1;
    }
    pb_lua_push_default(L, s, f);
    return 1;
}

int pb_lua_metatables(lua_State *L, int schema_idx, const struct pb_schema *s)
{
    if (schema_idx < 0) schema_idx = lua_gettop(L) + schema_idx + 1;
    lua_createtable(L, (int)s->nmsgs, 0);
    for (uint32_t i = 0; i < s->nmsgs; i++) {
        lua_createtable(L, 0, 2);
        lua_pushvalue(L, schema_idx);
        lua_pushlightuserdata(L, (void *)s);
        lua_pushinteger(L, i);
        lua_pushcclosure(L, l_default, 3);
        lua_setfield(L, -2, "__index");
        lua_pushstring(L, s->msgs[i].name);
        lua_setfield(L, -2, "__name");
        lua_rawseti(L, -2, (int)i + 1);
    }
    return luaL_ref(L, LUA_REGISTRYINDEX);
}
