/* SPDX-License-Identifier: MIT */
/*
 * pb.c: schemas read from FileDescriptorProtos, and the wire format's readers.
 *
 * A schema is built in three passes over the files: the first registers every message, enum
 * and service under its full name (package, then the enclosing messages) and reads the enums;
 * the second reads each message's fields, now that every type a field can name is known; the
 * third reads the services' methods. All names and arrays go into one arena, freed at once.
 *
 * descriptor.proto field numbers read here:
 *   FileDescriptorSet     file=1
 *   FileDescriptorProto   name=1 package=2 dependency=3 message_type=4 enum_type=5 service=6
 *                         syntax=12
 *   DescriptorProto       name=1 field=2 nested_type=3 enum_type=4 options=7 oneof_decl=8
 *   MessageOptions        map_entry=7
 *   FieldDescriptorProto  name=1 number=3 label=4 type=5 type_name=6 options=8 oneof_index=9
 *                         proto3_optional=17
 *   FieldOptions          packed=2
 *   OneofDescriptorProto  name=1
 *   EnumDescriptorProto   name=1 value=2;  EnumValueDescriptorProto name=1 number=2
 *   ServiceDescriptorProto name=1 method=2
 *   MethodDescriptorProto name=1 input_type=2 output_type=3 client_streaming=5
 *                         server_streaming=6
 */
#include "proto/grpc/pb.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- the wire format -------------------------------------------------------------------- */

int pb_get_key(const uint8_t **p, const uint8_t *end, uint32_t *number, uint8_t *wire)
{
    uint64_t k;
    if (pb_get_varint(p, end, &k) != 0) return -1;
    uint64_t n = k >> 3;
    uint8_t w = (uint8_t)(k & 7);
    if (n == 0 || n > 0x1fffffff || w > PB_I32) return -1;
    *number = (uint32_t)n;
    *wire = w;
    return 0;
}

static int skip_group(const uint8_t **p, const uint8_t *end, uint32_t number, int depth)
{
    if (depth > PB_MAX_DEPTH) return -1;
    for (;;) {
        uint32_t n;
        uint8_t w;
        if (pb_get_key(p, end, &n, &w) != 0) return -1;
        if (w == PB_EGROUP) return n == number ? 0 : -1;
        if (w == PB_SGROUP) {
            if (skip_group(p, end, n, depth + 1) != 0) return -1;
            continue;
        }
        const uint8_t *v;
        size_t vl;
        if (pb_get_value(p, end, w, n, &v, &vl) != 0) return -1;
    }
}

int pb_get_value(const uint8_t **p, const uint8_t *end, uint8_t wire, uint32_t number,
                 const uint8_t **val, size_t *vlen)
{
    const uint8_t *q = *p;
    uint64_t v;
    switch (wire) {
    case PB_VARINT:
        *val = q;
        if (pb_get_varint(&q, end, &v) != 0) return -1;
        break;
    case PB_I64:
        if (end - q < 8) return -1;
        *val = q;
        q += 8;
        break;
    case PB_I32:
        if (end - q < 4) return -1;
        *val = q;
        q += 4;
        break;
    case PB_LEN:
        if (pb_get_varint(&q, end, &v) != 0 || v > (uint64_t)(end - q)) return -1;
        *val = q;
        q += v;
        break;
    case PB_SGROUP:
        *val = q;
        if (skip_group(&q, end, number, 1) != 0) return -1;
        break;
    default: /* an end of group that no start opened */
        return -1;
    }
    *vlen = (size_t)(q - *val);
    *p = q;
    return 0;
}

uint8_t pb_wire_of(uint8_t type)
{
    switch (type) {
    case PB_DOUBLE:
    case PB_FIXED64:
    case PB_SFIXED64:
        return PB_I64;
    case PB_FLOAT:
    case PB_FIXED32:
    case PB_SFIXED32:
        return PB_I32;
    case PB_STRING:
    case PB_BYTES:
    case PB_MESSAGE:
        return PB_LEN;
    case PB_GROUP:
        return PB_SGROUP;
    default:
        return PB_VARINT;
    }
}

/* ---- the arena -------------------------------------------------------------------------- */

struct pb_arena {
    struct pb_arena *next;
    size_t used, cap;
    _Alignas(16) char mem[];
};

static void *arena_alloc(struct pb_arena **a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (!*a || (*a)->used + n > (*a)->cap) {
        size_t cap = n > 16384 ? n : 16384;
        struct pb_arena *b = cc_xmalloc(sizeof(*b) + cap);
        b->next = *a;
        b->used = 0;
        b->cap = cap;
        *a = b;
    }
    void *p = (*a)->mem + (*a)->used;
    (*a)->used += n;
    return p;
}

static char *arena_str(struct pb_arena **a, const char *s, size_t n)
{
    char *d = arena_alloc(a, n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static void *arena_dup(struct pb_arena **a, const void *p, size_t n)
{
    if (!n) return NULL;
    void *d = arena_alloc(a, n);
    memcpy(d, p, n);
    return d;
}

/* ---- names ------------------------------------------------------------------------------ */

enum { NAME_MSG = 1, NAME_ENUM, NAME_SVC };

struct pb_name {
    const char *name; /* NULL: a free slot */
    uint32_t len;
    uint8_t kind;
    uint32_t index;
    uint64_t hash;
};

static uint64_t name_hash(const char *s, size_t n)
{
    return cc_hash(CC_HASH_INIT, s, n);
}

static const struct pb_name *name_find(const struct pb_schema *s, const char *n, size_t len)
{
    if (len && n[0] == '.') {
        n++;
        len--;
    }
    if (!s->nnames_cap) return NULL;
    uint64_t h = name_hash(n, len);
    uint32_t mask = s->nnames_cap - 1;
    for (uint32_t i = (uint32_t)h & mask;; i = (i + 1) & mask) {
        const struct pb_name *e = &s->names[i];
        if (!e->name) return NULL;
        if (e->hash == h && e->len == len && memcmp(e->name, n, len) == 0) return e;
    }
}

/* Adds |name| (arena-owned); returns -1 if it is taken. */
static int name_add(struct pb_schema *s, const char *name, size_t len, uint8_t kind, uint32_t index)
{
    uint32_t used = s->nmsgs + s->nenums + s->nsvcs;
    if ((used + 1) * 2 > s->nnames_cap) { /* keep the table at most half full */
        uint32_t cap = s->nnames_cap ? s->nnames_cap * 2 : 64;
        struct pb_name *old = s->names;
        uint32_t oldcap = s->nnames_cap;
        s->names = cc_xcalloc(cap, sizeof(*s->names));
        s->nnames_cap = cap;
        for (uint32_t i = 0; i < oldcap; i++) {
            if (!old[i].name) continue;
            uint32_t j = (uint32_t)old[i].hash & (cap - 1);
            while (s->names[j].name)
                j = (j + 1) & (cap - 1);
            s->names[j] = old[i];
        }
        cc_free(old);
    }
    if (name_find(s, name, len)) return -1;
    uint64_t h = name_hash(name, len);
    uint32_t j = (uint32_t)h & (s->nnames_cap - 1);
    while (s->names[j].name)
        j = (j + 1) & (s->nnames_cap - 1);
    s->names[j] = (struct pb_name){name, (uint32_t)len, kind, index, h};
    return 0;
}

int32_t pb_find_message(const struct pb_schema *s, const char *name, size_t len)
{
    const struct pb_name *e = name_find(s, name, len);
    return e && e->kind == NAME_MSG ? (int32_t)e->index : -1;
}

int32_t pb_find_enum(const struct pb_schema *s, const char *name, size_t len)
{
    const struct pb_name *e = name_find(s, name, len);
    return e && e->kind == NAME_ENUM ? (int32_t)e->index : -1;
}

int32_t pb_find_service(const struct pb_schema *s, const char *name, size_t len)
{
    const struct pb_name *e = name_find(s, name, len);
    return e && e->kind == NAME_SVC ? (int32_t)e->index : -1;
}

const struct pb_method *pb_find_method(const struct pb_schema *s, const char *path, size_t len)
{
    if (len && path[0] == '/') {
        path++;
        len--;
    }
    const char *sep = NULL; /* the last '/', or else the last '.' */
    for (size_t i = len; i-- > 0;)
        if (path[i] == '/') {
            sep = path + i;
            break;
        }
    if (!sep)
        for (size_t i = len; i-- > 0;)
            if (path[i] == '.') {
                sep = path + i;
                break;
            }
    if (!sep) return NULL;
    int32_t si = pb_find_service(s, path, (size_t)(sep - path));
    if (si < 0) return NULL;
    const struct pb_service *svc = &s->svcs[si];
    const char *m = sep + 1;
    size_t ml = len - (size_t)(m - path);
    for (uint32_t i = 0; i < svc->nmethods; i++)
        if (strlen(svc->methods[i].name) == ml && memcmp(svc->methods[i].name, m, ml) == 0)
            return &svc->methods[i];
    return NULL;
}

const struct pb_field *pb_field_by_number(const struct pb_message *m, uint32_t number)
{
    if (number < m->nbynum) {
        uint16_t i = m->bynum[number];
        return i ? &m->fields[i - 1] : NULL;
    }
    uint32_t lo = 0, hi = m->nfields; /* fields are sorted by number */
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (m->fields[mid].number < number)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < m->nfields && m->fields[lo].number == number ? &m->fields[lo] : NULL;
}

const struct pb_field *pb_field_by_name(const struct pb_message *m, const char *name, size_t len)
{
    for (uint32_t i = 0; i < m->nfields; i++)
        if (m->fields[i].name_len == len && memcmp(m->fields[i].name, name, len) == 0)
            return &m->fields[i];
    return NULL;
}

const char *pb_enum_name(const struct pb_enum *e, int32_t number)
{
    for (uint32_t i = 0; i < e->nvalues; i++)
        if (e->values[i].number == number) return e->values[i].name;
    return NULL;
}

/* ---- reading descriptors ---------------------------------------------------------------- */

/* One field of a serialised message: its number, and its value (varint, or bytes). */
struct rd {
    const uint8_t *p, *end;
    uint32_t num;
    uint8_t wire;
    uint64_t v;         /* PB_VARINT */
    const uint8_t *val; /* PB_LEN */
    size_t vlen;
};

static void rd_init(struct rd *r, const void *p, size_t n)
{
    r->p = p;
    r->end = r->p + n;
}

/* 1: a field was read; 0: the end; -1: malformed. */
static int rd_next(struct rd *r)
{
    if (r->p >= r->end) return 0;
    if (pb_get_key(&r->p, r->end, &r->num, &r->wire) != 0) return -1;
    if (r->wire == PB_VARINT) return pb_get_varint(&r->p, r->end, &r->v) == 0 ? 1 : -1;
    if (pb_get_value(&r->p, r->end, r->wire, r->num, &r->val, &r->vlen) != 0) return -1;
    if (r->wire == PB_LEN) return 1;
    r->val = NULL; /* fixed-width or a group: no descriptor field of ours has them */
    r->vlen = 0;
    return 1;
}

static bool rd_str(const struct rd *r)
{
    return r->wire == PB_LEN;
}

enum syntax { SYN_PROTO2, SYN_PROTO3, SYN_EDITIONS };

/* What pass 1 keeps for the later passes. */
struct pending_msg {
    const uint8_t *p;
    size_t len;
    uint8_t syntax;
};

struct pending_svc {
    const uint8_t *p;
    size_t len;
    const char *package;
    size_t package_len;
};

struct builder {
    struct pb_schema *s;
    size_t msgs_cap, enums_cap, svcs_cap;
    struct pending_msg *pm; /* parallel to s->msgs */
    struct pending_svc *ps;
    size_t pm_cap, ps_cap, nps;
    char *err;
    size_t errlen;
};

static int fail(struct builder *b, const char *fmt, ...) CC_PRINTF(2, 3);
static int fail(struct builder *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->err, b->errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* "scope.name" in the arena ("name" when |scope| is empty). */
static const char *join(struct builder *b, const char *scope, size_t sl, const uint8_t *n,
                        size_t nl, size_t *len)
{
    size_t total = sl ? sl + 1 + nl : nl;
    char *d = arena_alloc(&b->s->arena, total + 1);
    if (sl) {
        memcpy(d, scope, sl);
        d[sl] = '.';
        memcpy(d + sl + 1, n, nl);
    } else {
        memcpy(d, n, nl);
    }
    d[total] = '\0';
    *len = total;
    return d;
}

static bool valid_name(const uint8_t *n, size_t len)
{
    if (len == 0 || len > 1024) return false;
    for (size_t i = 0; i < len; i++)
        if (n[i] <= ' ' || n[i] == '.' || n[i] == '/' || n[i] >= 127) return false;
    return true;
}

static int read_enum(struct builder *b, const char *scope, size_t sl, const uint8_t *p, size_t len)
{
    struct rd r;
    rd_init(&r, p, len);
    const uint8_t *name = NULL;
    size_t nl = 0;
    struct pb_enum_value *vals = NULL;
    size_t nvals = 0, cap = 0;
    int rc;
    while ((rc = rd_next(&r)) > 0) {
        if (r.num == 1 && rd_str(&r)) {
            name = r.val;
            nl = r.vlen;
        } else if (r.num == 2 && rd_str(&r)) {
            struct rd v;
            rd_init(&v, r.val, r.vlen);
            const uint8_t *vn = NULL;
            size_t vnl = 0;
            int64_t num = 0;
            int vrc;
            while ((vrc = rd_next(&v)) > 0) {
                if (v.num == 1 && rd_str(&v)) {
                    vn = v.val;
                    vnl = v.vlen;
                } else if (v.num == 2 && v.wire == PB_VARINT) {
                    num = (int32_t)(uint32_t)v.v;
                }
            }
            if (vrc < 0 || !vn || !valid_name(vn, vnl)) {
                cc_free(vals);
                return fail(b, "malformed enum value in the descriptor set");
            }
            cc_grow((void **)&vals, &cap, nvals + 1, sizeof(*vals));
            vals[nvals].name = arena_str(&b->s->arena, (const char *)vn, vnl);
            vals[nvals].number = (int32_t)num;
            nvals++;
        }
    }
    if (rc < 0 || !name || !valid_name(name, nl)) {
        cc_free(vals);
        return fail(b, "malformed enum in the descriptor set");
    }
    struct pb_schema *s = b->s;
    size_t fl;
    const char *full = join(b, scope, sl, name, nl, &fl);
    if (name_add(s, full, fl, NAME_ENUM, s->nenums) != 0) {
        cc_free(vals);
        return fail(b, "%s is defined twice in the descriptor set", full);
    }
    cc_grow((void **)&s->enums, &b->enums_cap, s->nenums + 1, sizeof(*s->enums));
    struct pb_enum *e = &s->enums[s->nenums++];
    e->name = full;
    e->values = arena_dup(&s->arena, vals, nvals * sizeof(*vals));
    e->nvalues = (uint32_t)nvals;
    e->zero = -1;
    for (uint32_t i = 0; i < e->nvalues; i++)
        if (e->values[i].number == 0) {
            e->zero = (int32_t)i;
            break;
        }
    cc_free(vals);
    return 0;
}

static int read_message(struct builder *b, const char *scope, size_t sl, const uint8_t *p,
                        size_t len, uint8_t syntax, int depth)
{
    if (depth > PB_MAX_DEPTH) return fail(b, "messages nested too deep in the descriptor set");
    struct rd r;
    rd_init(&r, p, len);
    const uint8_t *name = NULL;
    size_t nl = 0;
    bool map_entry = false;
    int rc;
    while ((rc = rd_next(&r)) > 0) {
        if (r.num == 1 && rd_str(&r)) {
            name = r.val;
            nl = r.vlen;
        } else if (r.num == 7 && rd_str(&r)) {
            struct rd o;
            rd_init(&o, r.val, r.vlen);
            int orc;
            while ((orc = rd_next(&o)) > 0)
                if (o.num == 7 && o.wire == PB_VARINT) map_entry = o.v != 0;
            if (orc < 0) return fail(b, "malformed message options in the descriptor set");
        }
    }
    if (rc < 0 || !name || !valid_name(name, nl))
        return fail(b, "malformed message in the descriptor set");
    struct pb_schema *s = b->s;
    size_t fl;
    const char *full = join(b, scope, sl, name, nl, &fl);
    uint32_t idx = s->nmsgs;
    if (name_add(s, full, fl, NAME_MSG, idx) != 0)
        return fail(b, "%s is defined twice in the descriptor set", full);
    cc_grow((void **)&s->msgs, &b->msgs_cap, idx + 1, sizeof(*s->msgs));
    cc_grow((void **)&b->pm, &b->pm_cap, idx + 1, sizeof(*b->pm));
    memset(&s->msgs[idx], 0, sizeof(s->msgs[idx]));
    s->msgs[idx].name = full;
    s->msgs[idx].map_entry = map_entry;
    b->pm[idx] = (struct pending_msg){p, len, syntax};
    s->nmsgs++;
    /* nested types and enums */
    rd_init(&r, p, len);
    while ((rc = rd_next(&r)) > 0) {
        if (r.num == 3 && rd_str(&r)) {
            if (read_message(b, full, fl, r.val, r.vlen, syntax, depth + 1) != 0) return -1;
        } else if (r.num == 4 && rd_str(&r)) {
            if (read_enum(b, full, fl, r.val, r.vlen) != 0) return -1;
        }
    }
    return 0;
}

/* Pass 1 over one file. |seen| holds the names of files read already. */
static int read_file(struct builder *b, const uint8_t *p, size_t len)
{
    struct rd r;
    rd_init(&r, p, len);
    const uint8_t *pkg = NULL;
    size_t pl = 0;
    uint8_t syntax = SYN_PROTO2;
    int rc;
    while ((rc = rd_next(&r)) > 0) {
        if (r.num == 2 && rd_str(&r)) {
            pkg = r.val;
            pl = r.vlen;
        } else if (r.num == 12 && rd_str(&r)) {
            if (r.vlen == 6 && memcmp(r.val, "proto3", 6) == 0)
                syntax = SYN_PROTO3;
            else if (r.vlen == 8 && memcmp(r.val, "editions", 8) == 0)
                syntax = SYN_EDITIONS;
        }
    }
    if (rc < 0) return fail(b, "malformed file in the descriptor set");
    for (size_t i = 0; i < pl; i++)
        if (pkg[i] <= ' ' || pkg[i] == '/' || pkg[i] >= 127)
            return fail(b, "malformed package name in the descriptor set");
    const char *package = pl ? arena_str(&b->s->arena, (const char *)pkg, pl) : "";
    rd_init(&r, p, len);
    while ((rc = rd_next(&r)) > 0) {
        if (r.num == 4 && rd_str(&r)) {
            if (read_message(b, package, pl, r.val, r.vlen, syntax, 1) != 0) return -1;
        } else if (r.num == 5 && rd_str(&r)) {
            if (read_enum(b, package, pl, r.val, r.vlen) != 0) return -1;
        } else if (r.num == 6 && rd_str(&r)) {
            cc_grow((void **)&b->ps, &b->ps_cap, b->nps + 1, sizeof(*b->ps));
            b->ps[b->nps++] = (struct pending_svc){r.val, r.vlen, package, pl};
        }
    }
    return 0;
}

/*
 * A type named in a field or method: fully qualified (".pkg.Msg", as protoc writes them), or
 * relative to |scope| (searched from the innermost scope outwards, as protoc resolves them).
 */
static const struct pb_name *resolve(struct builder *b, const char *scope, const uint8_t *n,
                                     size_t nl)
{
    if (nl && n[0] == '.') return name_find(b->s, (const char *)n, nl);
    char buf[2048];
    size_t sl = strlen(scope);
    if (sl + 1 + nl >= sizeof(buf)) return NULL;
    for (;;) {
        size_t len = 0;
        if (sl) {
            memcpy(buf, scope, sl);
            buf[sl] = '.';
            len = sl + 1;
        }
        memcpy(buf + len, n, nl);
        const struct pb_name *e = name_find(b->s, buf, len + nl);
        if (e || !sl) return e;
        while (sl && scope[sl - 1] != '.')
            sl--;
        if (sl) sl--; /* drop the dot */
    }
}

static int cmp_field(const void *a, const void *b)
{
    const struct pb_field *x = a, *y = b;
    return x->number < y->number ? -1 : x->number > y->number;
}

/* Pass 2: the fields of message |mi|. */
static int read_fields(struct builder *b, uint32_t mi)
{
    struct pb_schema *s = b->s;
    const struct pending_msg *pm = &b->pm[mi];
    const char *mname = s->msgs[mi].name;
    struct pb_field *fields = NULL;
    size_t nf = 0, fcap = 0;
    const char **oneofs = NULL;
    size_t no = 0, ocap = 0;
    struct rd r;
    rd_init(&r, pm->p, pm->len);
    int rc;
    while ((rc = rd_next(&r)) > 0) {
        if (r.num == 8 && rd_str(&r)) {
            struct rd o;
            rd_init(&o, r.val, r.vlen);
            const uint8_t *on = (const uint8_t *)"";
            size_t onl = 0;
            int orc;
            while ((orc = rd_next(&o)) > 0)
                if (o.num == 1 && rd_str(&o)) {
                    on = o.val;
                    onl = o.vlen;
                }
            if (orc < 0) goto malformed;
            cc_grow((void **)&oneofs, &ocap, no + 1, sizeof(*oneofs));
            oneofs[no++] = arena_str(&s->arena, (const char *)on, onl);
        }
    }
    if (rc < 0) goto malformed;
    rd_init(&r, pm->p, pm->len);
    while ((rc = rd_next(&r)) > 0) {
        if (r.num != 2 || !rd_str(&r)) continue;
        struct rd f;
        rd_init(&f, r.val, r.vlen);
        const uint8_t *fname = NULL, *tname = NULL;
        size_t fnl = 0, tnl = 0;
        uint64_t number = 0, label = 1, type = 0, oneof = UINT64_MAX;
        int packed = -1;
        bool opt3 = false;
        int frc;
        while ((frc = rd_next(&f)) > 0) {
            switch (f.num) {
            case 1:
                if (rd_str(&f)) fname = f.val, fnl = f.vlen;
                break;
            case 3:
                if (f.wire == PB_VARINT) number = f.v;
                break;
            case 4:
                if (f.wire == PB_VARINT) label = f.v;
                break;
            case 5:
                if (f.wire == PB_VARINT) type = f.v;
                break;
            case 6:
                if (rd_str(&f)) tname = f.val, tnl = f.vlen;
                break;
            case 8:
                if (rd_str(&f)) {
                    struct rd o;
                    rd_init(&o, f.val, f.vlen);
                    int orc;
                    while ((orc = rd_next(&o)) > 0)
                        if (o.num == 2 && o.wire == PB_VARINT) packed = o.v != 0;
                    if (orc < 0) goto malformed;
                }
                break;
            case 9:
                if (f.wire == PB_VARINT) oneof = f.v;
                break;
            case 17:
                if (f.wire == PB_VARINT) opt3 = f.v != 0;
                break;
            }
        }
        if (frc < 0 || !fname || !valid_name(fname, fnl) || number == 0 || number > 0x1fffffff ||
            label < 1 || label > 3 || type > PB_SINT64 || (oneof != UINT64_MAX && oneof >= no))
            goto malformed;
        struct pb_field fd = {.name = arena_str(&s->arena, (const char *)fname, fnl),
                              .name_len = (uint32_t)fnl,
                              .number = (uint32_t)number,
                              .type = (uint8_t)type,
                              .oneof = oneof == UINT64_MAX ? -1 : (int32_t)oneof,
                              .ref = -1};
        if (type == 0 || type == PB_MESSAGE || type == PB_GROUP || type == PB_ENUM) {
            const struct pb_name *t = tname ? resolve(b, mname, tname, tnl) : NULL;
            if (!t || t->kind == NAME_SVC || (type == PB_ENUM && t->kind != NAME_ENUM) ||
                ((type == PB_MESSAGE || type == PB_GROUP) && t->kind != NAME_MSG)) {
                cc_free(fields);
                cc_free(oneofs);
                return fail(b,
                            "field %s.%s: type %.*s is not in the descriptor set (compile it "
                            "with --include_imports)",
                            mname, fd.name, (int)CC_MIN(tnl, 200),
                            tname ? (const char *)tname : "?");
            }
            if (type == 0) fd.type = t->kind == NAME_ENUM ? PB_ENUM : PB_MESSAGE;
            fd.ref = (int32_t)t->index;
        }
        if (label == 3) {
            fd.flags |= PB_F_REPEATED;
            bool dflt = pm->syntax != SYN_PROTO2; /* proto3 and editions pack by default */
            if (pb_packable(fd.type) && (packed < 0 ? dflt : packed)) fd.flags |= PB_F_PACKED;
            if (fd.type == PB_MESSAGE && s->msgs[fd.ref].map_entry) fd.flags |= PB_F_MAP;
        } else if (fd.type == PB_MESSAGE || fd.type == PB_GROUP || fd.oneof >= 0 || opt3 ||
                   pm->syntax != SYN_PROTO3) {
            fd.flags |= PB_F_PRESENCE;
        }
        if (opt3) fd.oneof = -1; /* a proto3 `optional` sits alone in a synthetic oneof */
        cc_grow((void **)&fields, &fcap, nf + 1, sizeof(*fields));
        fields[nf++] = fd;
    }
    if (rc < 0) goto malformed;
    if (nf > 60000) goto malformed;
    if (nf) qsort(fields, nf, sizeof(*fields), cmp_field);
    for (size_t i = 0; i < nf; i++) /* names key the Lua tables: no two alike */
        for (size_t j = i + 1; j < nf; j++)
            if (fields[i].name_len == fields[j].name_len &&
                memcmp(fields[i].name, fields[j].name, fields[i].name_len) == 0) {
                char dup[120];
                snprintf(dup, sizeof(dup), "%s", fields[i].name);
                cc_free(fields);
                cc_free(oneofs);
                return fail(b, "message %s has two fields named %s", mname, dup);
            }
    for (size_t i = 1; i < nf; i++)
        if (fields[i].number == fields[i - 1].number) {
            uint32_t dup = fields[i].number;
            cc_free(fields);
            cc_free(oneofs);
            return fail(b, "message %s has two fields numbered %u", mname, dup);
        }
    struct pb_message *m = &s->msgs[mi];
    m->fields = arena_dup(&s->arena, fields, nf * sizeof(*fields));
    m->nfields = (uint32_t)nf;
    /* direct lookup for the usual small, dense numbers */
    uint32_t top = nf ? fields[nf - 1].number : 0;
    if (nf && top < 4 * nf + 64) {
        m->nbynum = top + 1;
        m->bynum = arena_alloc(&s->arena, m->nbynum * sizeof(*m->bynum));
        memset(m->bynum, 0, m->nbynum * sizeof(*m->bynum));
        for (uint32_t i = 0; i < m->nfields; i++)
            m->bynum[m->fields[i].number] = (uint16_t)(i + 1);
    }
    m->oneofs = arena_dup(&s->arena, oneofs, no * sizeof(*oneofs));
    m->noneofs = (uint32_t)no;
    cc_free(fields);
    cc_free(oneofs);
    return 0;
malformed:
    cc_free(fields);
    cc_free(oneofs);
    return fail(b, "malformed field in message %s of the descriptor set", mname);
}

/* Pass 3: one service and its methods. */
static int read_service(struct builder *b, const struct pending_svc *ps)
{
    struct pb_schema *s = b->s;
    struct rd r;
    rd_init(&r, ps->p, ps->len);
    const uint8_t *name = NULL;
    size_t nl = 0;
    int rc;
    while ((rc = rd_next(&r)) > 0)
        if (r.num == 1 && rd_str(&r)) name = r.val, nl = r.vlen;
    if (rc < 0 || !name || !valid_name(name, nl))
        return fail(b, "malformed service in the descriptor set");
    size_t fl;
    const char *full = join(b, ps->package, ps->package_len, name, nl, &fl);
    struct pb_method *ms = NULL;
    size_t nm = 0, cap = 0;
    rd_init(&r, ps->p, ps->len);
    while ((rc = rd_next(&r)) > 0) {
        if (r.num != 2 || !rd_str(&r)) continue;
        struct rd m;
        rd_init(&m, r.val, r.vlen);
        const uint8_t *mn = NULL, *in = NULL, *out = NULL;
        size_t mnl = 0, inl = 0, outl = 0;
        bool cs = false, ss = false;
        int mrc;
        while ((mrc = rd_next(&m)) > 0) {
            if (m.num == 1 && rd_str(&m))
                mn = m.val, mnl = m.vlen;
            else if (m.num == 2 && rd_str(&m))
                in = m.val, inl = m.vlen;
            else if (m.num == 3 && rd_str(&m))
                out = m.val, outl = m.vlen;
            else if (m.num == 5 && m.wire == PB_VARINT)
                cs = m.v != 0;
            else if (m.num == 6 && m.wire == PB_VARINT)
                ss = m.v != 0;
        }
        if (mrc < 0 || !mn || !valid_name(mn, mnl) || !in || !out) {
            cc_free(ms);
            return fail(b, "malformed method in service %s of the descriptor set", full);
        }
        const struct pb_name *ti = resolve(b, full, in, inl), *to = resolve(b, full, out, outl);
        if (!ti || ti->kind != NAME_MSG || !to || to->kind != NAME_MSG) {
            cc_free(ms);
            return fail(b,
                        "method %s/%.*s: its message types are not in the descriptor set "
                        "(compile it with --include_imports)",
                        full, (int)mnl, (const char *)mn);
        }
        cc_grow((void **)&ms, &cap, nm + 1, sizeof(*ms));
        struct pb_method *pm = &ms[nm++];
        pm->name = arena_str(&s->arena, (const char *)mn, mnl);
        char *path = arena_alloc(&s->arena, fl + mnl + 3);
        snprintf(path, fl + mnl + 3, "/%s/%s", full, pm->name);
        pm->path = path;
        pm->in = (int32_t)ti->index;
        pm->out = (int32_t)to->index;
        pm->client_streaming = cs;
        pm->server_streaming = ss;
    }
    if (rc < 0) {
        cc_free(ms);
        return fail(b, "malformed service %s in the descriptor set", full);
    }
    if (name_add(s, full, fl, NAME_SVC, s->nsvcs) != 0) {
        cc_free(ms);
        return fail(b, "%s is defined twice in the descriptor set", full);
    }
    cc_grow((void **)&s->svcs, &b->svcs_cap, s->nsvcs + 1, sizeof(*s->svcs));
    struct pb_service *svc = &s->svcs[s->nsvcs++];
    svc->name = full;
    svc->methods = arena_dup(&s->arena, ms, nm * sizeof(*ms));
    svc->nmethods = (uint32_t)nm;
    cc_free(ms);
    return 0;
}

/* The name (field 1) of a serialised FileDescriptorProto; false if it has none. */
static bool file_name(const struct pb_bytes *f, const uint8_t **n, size_t *nl)
{
    struct rd r;
    rd_init(&r, f->p, f->len);
    while (rd_next(&r) > 0)
        if (r.num == 1 && rd_str(&r)) {
            *n = r.val;
            *nl = r.vlen;
            return true;
        }
    return false;
}

int pb_schema_new(struct pb_schema **out, const struct pb_bytes *files, size_t nfiles, char *err,
                  size_t errlen)
{
    struct pb_schema *s = cc_xcalloc(1, sizeof(*s));
    struct builder b = {.s = s, .err = err, .errlen = errlen};
    int rc = 0;
    for (size_t i = 0; i < nfiles && rc == 0; i++) {
        const uint8_t *n = NULL;
        size_t nl = 0;
        bool dup = false;
        if (file_name(&files[i], &n, &nl)) {
            for (size_t j = 0; j < i && !dup; j++) {
                const uint8_t *n2;
                size_t nl2;
                dup = file_name(&files[j], &n2, &nl2) && nl2 == nl && memcmp(n, n2, nl) == 0;
            }
        }
        if (!dup) rc = read_file(&b, (const uint8_t *)files[i].p, files[i].len);
    }
    for (uint32_t i = 0; i < s->nmsgs && rc == 0; i++)
        rc = read_fields(&b, i);
    for (size_t i = 0; i < b.nps && rc == 0; i++)
        rc = read_service(&b, &b.ps[i]);
    cc_free(b.pm);
    cc_free(b.ps);
    if (rc != 0) {
        pb_schema_free(s);
        return -1;
    }
    *out = s;
    return 0;
}

int pb_descriptor_set_files(const char *p, size_t len, struct pb_bytes **files)
{
    struct rd r;
    rd_init(&r, p, len);
    struct pb_bytes *fs = NULL;
    size_t n = 0, cap = 0;
    int rc;
    while ((rc = rd_next(&r)) > 0) {
        if (r.num != 1 || !rd_str(&r)) continue;
        cc_grow((void **)&fs, &cap, n + 1, sizeof(*fs));
        fs[n++] = (struct pb_bytes){(const char *)r.val, r.vlen};
    }
    if (rc < 0 || n > INT32_MAX) {
        cc_free(fs);
        return -1;
    }
    *files = fs;
    return (int)n;
}

int pb_file_names(const char *p, size_t len,
                  void (*fn)(void *arg, int kind, const char *s, size_t n), void *arg)
{
    struct rd r;
    rd_init(&r, p, len);
    int rc;
    while ((rc = rd_next(&r)) > 0)
        if ((r.num == 1 || r.num == 3) && rd_str(&r))
            fn(arg, r.num == 1 ? 0 : 1, (const char *)r.val, r.vlen);
    return rc < 0 ? -1 : 0;
}

void pb_schema_free(struct pb_schema *s)
{
    if (!s) return;
    while (s->arena) {
        struct pb_arena *a = s->arena;
        s->arena = a->next;
        cc_free(a);
    }
    cc_free(s->msgs);
    cc_free(s->enums);
    cc_free(s->svcs);
    cc_free(s->names);
    cc_free(s);
}
