/* SPDX-License-Identifier: MIT */
/*
 * pb.h: protocol buffers without generated code. A schema is read from a FileDescriptorSet (what
 * `protoc --descriptor_set_out --include_imports` writes, or the files a server's reflection
 * service returns); messages are then encoded from and decoded into Lua tables by walking it
 * (pb_lua.h). This file holds the schema and the wire format's primitives; it knows no Lua.
 *
 * Only the parts of descriptor.proto that encoding needs are read, by hand: names, packages,
 * nesting, fields (number, label, type, type name, oneof, proto3 `optional`, the packed and
 * map_entry options), enums and services. Everything else (options in general, source info,
 * extensions, editions features) is skipped.
 */
#ifndef CC_PB_H
#define CC_PB_H

#include "core/common.h"

#include <string.h>

/* FieldDescriptorProto.Type */
enum pb_type {
    PB_DOUBLE = 1,
    PB_FLOAT = 2,
    PB_INT64 = 3,
    PB_UINT64 = 4,
    PB_INT32 = 5,
    PB_FIXED64 = 6,
    PB_FIXED32 = 7,
    PB_BOOL = 8,
    PB_STRING = 9,
    PB_GROUP = 10,
    PB_MESSAGE = 11,
    PB_BYTES = 12,
    PB_UINT32 = 13,
    PB_ENUM = 14,
    PB_SFIXED32 = 15,
    PB_SFIXED64 = 16,
    PB_SINT32 = 17,
    PB_SINT64 = 18,
};

enum pb_wire { PB_VARINT = 0, PB_I64 = 1, PB_LEN = 2, PB_SGROUP = 3, PB_EGROUP = 4, PB_I32 = 5 };

#define PB_MAX_DEPTH 100 /* nesting of messages, as protobuf's own parsers allow */

enum {
    PB_F_REPEATED = 1 << 0,
    PB_F_PACKED = 1 << 1,   /* repeated scalars written packed */
    PB_F_MAP = 1 << 2,      /* a map: repeated entries of a map_entry message */
    PB_F_PRESENCE = 1 << 3, /* explicit presence: written whenever set, even to its default */
};

struct pb_field {
    const char *name;
    uint32_t name_len;
    uint32_t number;
    uint8_t type;  /* enum pb_type */
    uint8_t flags; /* PB_F_* */
    int32_t oneof; /* index into its message's oneofs, or -1 */
    int32_t ref;   /* PB_MESSAGE, PB_GROUP: message index; PB_ENUM: enum index; else -1 */
};

struct pb_message {
    const char *name; /* full name, without the leading dot: "pkg.Outer.Inner" */
    struct pb_field *fields;
    uint32_t nfields; /* in field number order */
    uint32_t nbynum;  /* numbers below this are looked up in |bynum| */
    uint16_t *bynum;  /* number -> field index + 1, 0 for none */
    const char **oneofs;
    uint32_t noneofs;
    bool map_entry;
};

struct pb_enum_value {
    const char *name;
    int32_t number;
};

struct pb_enum {
    const char *name;
    struct pb_enum_value *values;
    uint32_t nvalues;
    int32_t zero; /* index of the value numbered 0 (the default), or -1 */
};

struct pb_method {
    const char *name; /* "SayHello" */
    const char *path; /* "/pkg.Service/SayHello": the HTTP/2 :path of a call */
    int32_t in, out;  /* message indices */
    bool client_streaming, server_streaming;
};

struct pb_service {
    const char *name; /* "pkg.Service" */
    struct pb_method *methods;
    uint32_t nmethods;
};

struct pb_arena;

struct pb_schema {
    struct pb_message *msgs;
    uint32_t nmsgs;
    struct pb_enum *enums;
    uint32_t nenums;
    struct pb_service *svcs;
    uint32_t nsvcs;
    /* full names of messages, enums and services -> kind and index, open addressing */
    struct pb_name *names;
    uint32_t nnames_cap;
    struct pb_arena *arena; /* every string and array above */
};

/* A FileDescriptorProto, serialised. */
struct pb_bytes {
    const char *p;
    size_t len;
};

/*
 * Builds a schema from |nfiles| serialised FileDescriptorProtos (a file named twice is read
 * once). Every type a field or method names must be among them. Returns 0 and *|out| (free
 * with pb_schema_free), or -1 with a sentence in |err|.
 */
int pb_schema_new(struct pb_schema **out, const struct pb_bytes *files, size_t nfiles, char *err,
                  size_t errlen);
/* The files of a serialised FileDescriptorSet, in |*files| (cc_free it; they point into |p|).
 * Returns their number, or -1 when |p| is not a FileDescriptorSet. */
int pb_descriptor_set_files(const char *p, size_t len, struct pb_bytes **files);
/* The name of a serialised FileDescriptorProto and its dependencies' names (for reflection):
 * calls |fn| with kind 0 for the name, 1 for each dependency. Returns 0, or -1 if malformed. */
int pb_file_names(const char *p, size_t len,
                  void (*fn)(void *arg, int kind, const char *s, size_t n), void *arg);
void pb_schema_free(struct pb_schema *s);

/* Index of message / enum / service |name| (a leading dot is allowed), or -1. */
int32_t pb_find_message(const struct pb_schema *s, const char *name, size_t len);
int32_t pb_find_enum(const struct pb_schema *s, const char *name, size_t len);
int32_t pb_find_service(const struct pb_schema *s, const char *name, size_t len);
/* The method of "pkg.Service/Method", "/pkg.Service/Method" or "pkg.Service.Method", or NULL. */
const struct pb_method *pb_find_method(const struct pb_schema *s, const char *path, size_t len);

/* The field numbered |number| of |m|, or NULL. */
const struct pb_field *pb_field_by_number(const struct pb_message *m, uint32_t number);
/* The field named |name| of |m|, or NULL. */
const struct pb_field *pb_field_by_name(const struct pb_message *m, const char *name, size_t len);
/* The name of value |number| of |e|, or NULL. */
const char *pb_enum_name(const struct pb_enum *e, int32_t number);

/* ---- the wire format -------------------------------------------------------------------- */

/* A growable output buffer. */
struct pb_buf {
    char *p;
    size_t len, cap;
};

static inline void pb_buf_reserve(struct pb_buf *b, size_t n)
{
    if (b->len + n > b->cap) cc_grow((void **)&b->p, &b->cap, b->len + n, 1);
}

static inline void pb_put_varint(struct pb_buf *b, uint64_t v)
{
    pb_buf_reserve(b, 10);
    char *o = b->p + b->len;
    size_t n = 0;
    while (v >= 0x80) {
        o[n++] = (char)(v | 0x80);
        v >>= 7;
    }
    o[n++] = (char)v;
    b->len += n;
}

static inline void pb_put_bytes(struct pb_buf *b, const void *p, size_t n)
{
    if (!n) return;
    pb_buf_reserve(b, n);
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static inline void pb_put_fixed32(struct pb_buf *b, uint32_t v)
{
    uint8_t o[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    pb_put_bytes(b, o, 4);
}

static inline void pb_put_fixed64(struct pb_buf *b, uint64_t v)
{
    pb_put_fixed32(b, (uint32_t)v);
    pb_put_fixed32(b, (uint32_t)(v >> 32));
}

static inline unsigned pb_varint_size(uint64_t v)
{
    unsigned n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static inline uint64_t pb_zigzag64(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static inline int64_t pb_unzigzag64(uint64_t v)
{
    return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

/* Reads a varint at *|p| (before |end|): 0 and *|p| advanced, or -1 (truncated, or longer
 * than ten bytes). */
static inline int pb_get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    const uint8_t *q = *p;
    if (q < end && *q < 0x80) { /* the common one-byte case */
        *v = *q;
        *p = q + 1;
        return 0;
    }
    uint64_t r = 0;
    for (unsigned shift = 0; shift < 70 && q < end; shift += 7) {
        uint8_t b = *q++;
        r |= (uint64_t)(b & 0x7f) << (shift < 64 ? shift : 63);
        if (b < 0x80) {
            *v = r;
            *p = q;
            return 0;
        }
    }
    return -1;
}

static inline uint32_t pb_get_fixed32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t pb_get_fixed64(const uint8_t *p)
{
    return (uint64_t)pb_get_fixed32(p) | (uint64_t)pb_get_fixed32(p + 4) << 32;
}

/*
 * Reads a field's key at *|p|: its number and wire type. Returns 0, or -1 when the key is
 * truncated, its number is 0 or above 2^29-1, or its wire type is not one of the six.
 */
int pb_get_key(const uint8_t **p, const uint8_t *end, uint32_t *number, uint8_t *wire);
/*
 * Skips the value of a field of wire type |wire| at *|p| (a group up to its end, with nested
 * groups no deeper than PB_MAX_DEPTH). For PB_LEN, *|val| and *|vlen| give the bytes. Returns
 * 0, or -1 when the value runs past |end| or is malformed.
 */
int pb_get_value(const uint8_t **p, const uint8_t *end, uint8_t wire, uint32_t number,
                 const uint8_t **val, size_t *vlen);

/* The wire type values of |type| are written with (PB_LEN for strings, bytes, messages). */
uint8_t pb_wire_of(uint8_t type);
/* Whether |type| is a scalar that can be packed (numbers, bools and enums). */
static inline bool pb_packable(uint8_t type)
{
    return type != PB_STRING && type != PB_BYTES && type != PB_MESSAGE && type != PB_GROUP;
}

#endif
