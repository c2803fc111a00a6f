/* SPDX-License-Identifier: MIT */
/*
 * xmlrpc.h: the XML-RPC codec. No sockets, no loop, no Lua.
 *
 * The response parser is an expat push parser: bytes go in, in pieces of any size, and once
 * the last piece is in, the result is a flat tree of values (struct cc_xr_node, in pre-order:
 * a container is followed by its children, each child by its own subtree). Character data
 * arrives from expat split at arbitrary points, so it is gathered until its element ends.
 * Strings, member names and decoded base64 live in one byte arena the nodes point into.
 *
 * The parser keeps its buffers between documents (cc_xr_parser_reset), so a parser reused for
 * every response allocates nothing once its buffers have grown.
 *
 * The encoding helpers write the escaped text and base64 a request needs into a cc_xr_buf.
 */
#ifndef CC_XMLRPC_H
#define CC_XMLRPC_H

#include "core/common.h"

#include <expat.h>

#define CC_XR_MAX_DEPTH 100 /* values nested deeper than this are refused */

enum cc_xr_type {
    CC_XR_NIL = 0, /* <nil/>, the extension of Python's allow_none */
    CC_XR_INT,     /* <int>, <i4>, <i8> (and <i1>, <i2>) */
    CC_XR_BOOL,
    CC_XR_DOUBLE,
    CC_XR_STRING, /* <string>, or a <value> without a type */
    CC_XR_DATETIME,
    CC_XR_BASE64, /* str holds the decoded bytes */
    CC_XR_ARRAY,
    CC_XR_STRUCT,
};

struct cc_xr_node {
    uint8_t type;      /* enum cc_xr_type */
    uint32_t count;    /* array, struct: the children that follow */
    uint32_t end;      /* the index just past this node's subtree */
    uint32_t name_off; /* a struct member: its name in the arena */
    uint32_t name_len; /* UINT32_MAX: the node is not a struct member */
    uint32_t str_off;  /* string, datetime, base64: the bytes in the arena */
    uint32_t str_len;
    union {
        int64_t i; /* int, bool */
        double d;
    } v;
};

/* A growable byte buffer; |p| is NUL-terminated once anything was added. */
struct cc_xr_buf {
    char *p;
    size_t len, cap;
};

void cc_xr_buf_add(struct cc_xr_buf *b, const void *s, size_t n);
static inline void cc_xr_buf_clear(struct cc_xr_buf *b)
{
    b->len = 0;
    if (b->p) b->p[0] = '\0';
}
void cc_xr_buf_release(struct cc_xr_buf *b);

enum cc_xr_outcome {
    CC_XR_MORE,  /* the document is not over yet */
    CC_XR_OK,    /* a <params> response: nodes[0] is the one value */
    CC_XR_FAULT, /* a <fault>: fault_code and the fault string are set */
    CC_XR_ERROR, /* not an XML-RPC response: |errmsg| says why */
};

struct cc_xr_frame; /* the element stack (xmlrpc.c) */

struct cc_xr_parser {
    XML_Parser xp;
    uint8_t outcome; /* enum cc_xr_outcome */
    char errmsg[160];

    struct cc_xr_node *nodes;
    size_t nnodes, nodes_cap;
    struct cc_xr_buf arena; /* member names, strings, decoded base64 */
    struct cc_xr_buf text;  /* character data of the element being read */

    struct cc_xr_frame *stack;
    size_t depth, stack_cap;
    uint32_t values;  /* <value> elements open */
    uint32_t nparams; /* <param> elements seen */
    bool root_seen;   /* <methodResponse> opened */
    bool root_closed; /* and closed */
    bool fault;       /* the response is a <fault> */
    bool stopped;     /* a handler stopped expat with errmsg set */

    int64_t fault_code;
    uint32_t fault_off, fault_len; /* faultString in the arena */
};

/* Sets |p| up; returns 0, or -1 when expat cannot allocate its parser. */
int cc_xr_parser_init(struct cc_xr_parser *p);
void cc_xr_parser_release(struct cc_xr_parser *p);
/* Makes |p| ready for a new document, keeping its buffers. */
void cc_xr_parser_reset(struct cc_xr_parser *p);
/*
 * Parses the next |len| bytes of the document; |final| says they are the last. Returns
 * CC_XR_MORE until the final piece, then CC_XR_OK, CC_XR_FAULT or CC_XR_ERROR (also as soon
 * as an error is certain). Once an outcome other than CC_XR_MORE came, further calls return it.
 */
enum cc_xr_outcome cc_xr_parser_feed(struct cc_xr_parser *p, const char *data, size_t len,
                                     bool final);
/* cc_xr_parser_reset, then the whole document at once. */
enum cc_xr_outcome cc_xr_parse(struct cc_xr_parser *p, const char *data, size_t len);

/* The bytes at |off| in the arena. */
static inline const char *cc_xr_bytes(const struct cc_xr_parser *p, uint32_t off)
{
    return p->arena.p + off;
}

/*
 * Appends |s| (|n| bytes) as XML character data: & < > escaped, and CR as a character
 * reference so the receiver's line-end normalisation keeps it. Returns 0, or -1 at a control
 * character XML 1.0 cannot carry (NUL, and the C0 controls other than tab, LF and CR); |b|
 * then holds a partial result.
 */
int cc_xr_escape(struct cc_xr_buf *b, const char *s, size_t n);
/* Appends |s| (|n| bytes) in base64 (RFC 4648, with padding, no line breaks). */
void cc_xr_base64(struct cc_xr_buf *b, const char *s, size_t n);
/* Whether |name| is a method name the XML-RPC specification allows: A-Z a-z 0-9 _ . : / */
bool cc_xr_method_name_ok(const char *name, size_t n);

#endif
