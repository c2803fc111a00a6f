/* SPDX-License-Identifier: MIT */
/*
 * xmlrpc.c: the XML-RPC response parser on expat, and the escaping a request needs.
 *
 * The parser keeps a stack of the elements open, each a frame that knows what it may contain;
 * anything else stops expat with a sentence saying what was wrong and on which line. Values
 * become nodes as their <value> opens, so a container's children follow it in the node array.
 */
#include "proto/xmlrpc/xmlrpc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What an open element is. */
enum elem {
    E_ROOT, /* <methodResponse> */
    E_PARAMS,
    E_PARAM,
    E_FAULT,
    E_VALUE,
    E_ARRAY,
    E_DATA,
    E_STRUCT,
    E_MEMBER,
    E_NAME,
    E_SCALAR, /* a typed scalar inside <value>: <int>, <string>, <base64>... */
    E_NIL,
};

struct cc_xr_frame {
    uint8_t kind;   /* enum elem */
    uint8_t type;   /* E_SCALAR: enum cc_xr_type */
    bool typed;     /* E_VALUE: a type element came */
    bool seen;      /* E_PARAM, E_FAULT, E_ARRAY: its one child came; E_ROOT: params or fault */
    bool has_name;  /* E_MEMBER */
    bool has_value; /* E_MEMBER */
    uint32_t node;  /* E_VALUE, E_ARRAY, E_STRUCT: the node it fills */
    uint32_t name_off, name_len; /* E_MEMBER: the name read */
};

/* ---- buffers ----------------------------------------------------------------------------- */

void cc_xr_buf_add(struct cc_xr_buf *b, const void *s, size_t n)
{
    if (b->len + n + 1 > b->cap) cc_grow((void **)&b->p, &b->cap, b->len + n + 1, 1);
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void cc_xr_buf_release(struct cc_xr_buf *b)
{
    cc_free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* ---- errors ------------------------------------------------------------------------------ */

static void fail(struct cc_xr_parser *p, const char *fmt, ...) CC_PRINTF(2, 3);

/* Stops expat: the document is not an XML-RPC response. Only the first reason is kept. */
static void fail(struct cc_xr_parser *p, const char *fmt, ...)
{
    if (p->stopped) return;
    char msg[120];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(p->errmsg, sizeof(p->errmsg), "%s (line %lu)", msg,
             (unsigned long)XML_GetCurrentLineNumber(p->xp));
    p->stopped = true;
    XML_StopParser(p->xp, XML_FALSE);
}

/* ---- small parsers ------------------------------------------------------------------------ */

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* |s|..|*n| without the XML white space around it. */
static const char *trim(const char *s, size_t *n)
{
    size_t len = *n;
    while (len && is_space(*s)) {
        s++;
        len--;
    }
    while (len && is_space(s[len - 1]))
        len--;
    *n = len;
    return s;
}

static bool parse_int(const char *s, size_t n, int64_t *out)
{
    s = trim(s, &n);
    bool neg = false;
    if (n && (*s == '-' || *s == '+')) {
        neg = *s == '-';
        s++;
        n--;
    }
    if (n == 0) return false;
    uint64_t v = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (limit - d) / 10) return false;
        v = v * 10 + d;
    }
    /* the negation of INT64_MIN's magnitude is done in unsigned arithmetic, then converted */
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return true;
}

/* |s| must be NUL-terminated at |n| (the text buffer is). */
static bool parse_double(const char *s, size_t n, double *out)
{
    const char *t = trim(s, &n);
    if (n == 0 || n >= 400) return false;
    char tmp[400];
    memcpy(tmp, t, n);
    tmp[n] = '\0';
    char *end;
    double d = strtod(tmp, &end);
    if (end != tmp + n) return false;
    *out = d;
    return true;
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Decodes base64 text into |out|, skipping white space; padding may be left out. */
static bool decode_base64(struct cc_xr_buf *out, const char *s, size_t n)
{
    uint32_t acc = 0;
    unsigned bits = 0, sig = 0, pad = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_space((char)c)) continue;
        if (c == '=') {
            pad++;
            continue;
        }
        int v = b64_value(c);
        if (v < 0 || pad) return false; /* not base64, or data after the padding */
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        sig++;
        if (bits >= 8) {
            bits -= 8;
            char byte = (char)((acc >> bits) & 0xff);
            cc_xr_buf_add(out, &byte, 1);
        }
    }
    /* one significant character in a final group of four cannot be; nor can more padding
     * than the group misses */
    if (sig % 4 == 1 || pad > 2 || (pad && (sig + pad) % 4 != 0)) return false;
    return true;
}

/* ---- the element stack -------------------------------------------------------------------- */

static struct cc_xr_frame *top(struct cc_xr_parser *p)
{
    return p->depth ? &p->stack[p->depth - 1] : NULL;
}

static struct cc_xr_frame *push(struct cc_xr_parser *p, enum elem kind)
{
    cc_grow((void **)&p->stack, &p->stack_cap, p->depth + 1, sizeof(*p->stack));
    struct cc_xr_frame *f = &p->stack[p->depth++];
    memset(f, 0, sizeof(*f));
    f->kind = (uint8_t)kind;
    return f;
}

/* Copies |s| into the arena; returns its offset. */
static uint32_t arena_add(struct cc_xr_parser *p, const char *s, size_t n)
{
    if (p->arena.len + n >= UINT32_MAX) {
        fail(p, "the response is too large");
        return 0;
    }
    uint32_t off = (uint32_t)p->arena.len;
    cc_xr_buf_add(&p->arena, s, n);
    return off;
}

static const char *local_name(const char *name)
{
    const char *colon = strrchr(name, ':'); /* ex:nil, ex:i8: the extensions' namespace */
    return colon ? colon + 1 : name;
}

/* The type element |name| names, or -1. */
static int type_of(const char *name)
{
    static const struct {
        const char *name;
        uint8_t type;
    } types[] = {
        {"int", CC_XR_INT},       {"i4", CC_XR_INT},
        {"i8", CC_XR_INT},        {"i2", CC_XR_INT},
        {"i1", CC_XR_INT},        {"boolean", CC_XR_BOOL},
        {"string", CC_XR_STRING}, {"double", CC_XR_DOUBLE},
        {"float", CC_XR_DOUBLE},  {"dateTime.iso8601", CC_XR_DATETIME},
        {"base64", CC_XR_BASE64}, {"nil", CC_XR_NIL},
        {"array", CC_XR_ARRAY},   {"struct", CC_XR_STRUCT},
    };
    for (size_t i = 0; i < CC_ARRAY_LEN(types); i++)
        if (strcmp(name, types[i].name) == 0) return types[i].type;
    return -1;
}

/* A <value> opens: a node for it, counted in its container. */
static void open_value(struct cc_xr_parser *p, struct cc_xr_frame *parent)
{
    if (p->values >= CC_XR_MAX_DEPTH) {
        fail(p, "values nest deeper than %d", CC_XR_MAX_DEPTH);
        return;
    }
    if (p->nnodes >= UINT32_MAX - 1) {
        fail(p, "the response holds too many values");
        return;
    }
    cc_grow((void **)&p->nodes, &p->nodes_cap, p->nnodes + 1, sizeof(*p->nodes));
    uint32_t idx = (uint32_t)p->nnodes++;
    struct cc_xr_node *n = &p->nodes[idx];
    memset(n, 0, sizeof(*n));
    n->type = CC_XR_STRING;
    n->name_len = UINT32_MAX;
    if (parent->kind == E_MEMBER) {
        n->name_off = parent->name_off;
        n->name_len = parent->name_len;
        parent->has_value = true;
        p->nodes[parent[-1].node].count++; /* the member's struct */
    } else if (parent->kind == E_DATA) {
        p->nodes[parent[-1].node].count++; /* the data's array */
    } else {                               /* E_PARAM, E_FAULT */
        parent->seen = true;
    }
    p->values++;
    struct cc_xr_frame *f = push(p, E_VALUE);
    f->node = idx;
    cc_xr_buf_clear(&p->text);
}

static void XMLCALL on_start(void *ud, const XML_Char *qname, const XML_Char **attrs)
{
    (void)attrs;
    struct cc_xr_parser *p = ud;
    if (p->stopped) return;
    const char *name = local_name(qname);
    struct cc_xr_frame *t = top(p);
    if (!t) {
        if (strcmp(name, "methodResponse") != 0) {
            fail(p, "the document is <%.40s>, not an XML-RPC <methodResponse>", qname);
            return;
        }
        p->root_seen = true;
        push(p, E_ROOT);
        return;
    }
    switch ((enum elem)t->kind) {
    case E_ROOT:
        if (t->seen) {
            fail(p, "<methodResponse> holds more than one <params> or <fault>");
        } else if (strcmp(name, "params") == 0) {
            t->seen = true;
            push(p, E_PARAMS);
        } else if (strcmp(name, "fault") == 0) {
            t->seen = true;
            p->fault = true;
            push(p, E_FAULT);
        } else {
            fail(p, "<methodResponse> holds <%.40s>, not <params> or <fault>", qname);
        }
        return;
    case E_PARAMS:
        if (strcmp(name, "param") != 0) {
            fail(p, "<params> holds <%.40s>, not <param>", qname);
        } else if (++p->nparams > 1) {
            fail(p, "the response holds more than one <param>");
        } else {
            push(p, E_PARAM);
        }
        return;
    case E_PARAM:
    case E_FAULT:
        if (strcmp(name, "value") != 0 || t->seen)
            fail(p, "<%s> holds <%.40s>; it holds one <value>",
                 t->kind == E_PARAM ? "param" : "fault", qname);
        else
            open_value(p, t);
        return;
    case E_VALUE: {
        int type = type_of(name);
        if (type < 0) {
            fail(p, "<value> holds <%.40s>, which is not an XML-RPC type", qname);
            return;
        }
        if (t->typed) {
            fail(p, "a <value> holds more than one type");
            return;
        }
        t->typed = true;
        uint32_t node = t->node;
        p->nodes[node].type = (uint8_t)type;
        if (type == CC_XR_ARRAY) {
            push(p, E_ARRAY)->node = node;
        } else if (type == CC_XR_STRUCT) {
            push(p, E_STRUCT)->node = node;
        } else if (type == CC_XR_NIL) {
            push(p, E_NIL);
        } else {
            push(p, E_SCALAR)->type = (uint8_t)type;
            cc_xr_buf_clear(&p->text);
        }
        return;
    }
    case E_ARRAY:
        if (strcmp(name, "data") != 0 || t->seen) {
            fail(p, "<array> holds <%.40s>; it holds one <data>", qname);
            return;
        }
        t->seen = true;
        push(p, E_DATA);
        return;
    case E_DATA:
        if (strcmp(name, "value") != 0)
            fail(p, "<data> holds <%.40s>, not <value>", qname);
        else
            open_value(p, t);
        return;
    case E_STRUCT:
        if (strcmp(name, "member") != 0)
            fail(p, "<struct> holds <%.40s>, not <member>", qname);
        else
            push(p, E_MEMBER);
        return;
    case E_MEMBER:
        if (strcmp(name, "name") == 0 && !t->has_name && !t->has_value) {
            push(p, E_NAME);
            cc_xr_buf_clear(&p->text);
        } else if (strcmp(name, "value") == 0 && t->has_name && !t->has_value) {
            open_value(p, t);
        } else {
            fail(p, "<member> holds <%.40s>; it holds one <name>, then one <value>", qname);
        }
        return;
    case E_NAME:
    case E_SCALAR:
    case E_NIL:
        fail(p, "<%.40s> inside an element that holds only text", qname);
        return;
    }
}

/* The text of a typed scalar becomes its node's value. */
static void close_scalar(struct cc_xr_parser *p, struct cc_xr_frame *f)
{
    struct cc_xr_node *n = &p->nodes[f[-1].node];
    const char *s = p->text.p ? p->text.p : "";
    size_t len = p->text.len;
    switch (f->type) {
    case CC_XR_INT:
        if (!parse_int(s, len, &n->v.i)) fail(p, "not an integer: '%.40s'", s);
        return;
    case CC_XR_BOOL: {
        const char *b = trim(s, &len);
        if (len != 1 || (*b != '0' && *b != '1')) {
            fail(p, "a boolean is 0 or 1, not '%.40s'", s);
            return;
        }
        n->v.i = *b == '1';
        return;
    }
    case CC_XR_DOUBLE:
        if (!parse_double(s, len, &n->v.d)) fail(p, "not a double: '%.40s'", s);
        return;
    case CC_XR_DATETIME: {
        const char *d = trim(s, &len);
        n->str_off = arena_add(p, d, len);
        n->str_len = (uint32_t)len;
        return;
    }
    case CC_XR_BASE64: {
        size_t before = p->arena.len;
        if (!decode_base64(&p->arena, s, len)) {
            fail(p, "bad base64 data");
            return;
        }
        if (p->arena.len >= UINT32_MAX) {
            fail(p, "the response is too large");
            return;
        }
        n->str_off = (uint32_t)before;
        n->str_len = (uint32_t)(p->arena.len - before);
        return;
    }
    default: /* CC_XR_STRING */
        n->str_off = arena_add(p, s, len);
        n->str_len = (uint32_t)len;
        return;
    }
}

/* A <fault> holds a struct of faultCode (int) and faultString (string). */
static void check_fault(struct cc_xr_parser *p)
{
    struct cc_xr_node *n = &p->nodes[0];
    if (n->type != CC_XR_STRUCT) {
        fail(p, "a <fault> holds a struct of faultCode and faultString");
        return;
    }
    bool code = false, str = false;
    for (uint32_t i = 1; i < n->end; i = p->nodes[i].end) {
        struct cc_xr_node *m = &p->nodes[i];
        const char *name = cc_xr_bytes(p, m->name_off);
        if (m->name_len == 9 && memcmp(name, "faultCode", 9) == 0) {
            if (m->type != CC_XR_INT) {
                fail(p, "a fault's faultCode is not an int");
                return;
            }
            p->fault_code = m->v.i;
            code = true;
        } else if (m->name_len == 11 && memcmp(name, "faultString", 11) == 0) {
            if (m->type != CC_XR_STRING) {
                fail(p, "a fault's faultString is not a string");
                return;
            }
            p->fault_off = m->str_off;
            p->fault_len = m->str_len;
            str = true;
        }
    }
    if (!code || !str) fail(p, "a fault without %s", code ? "faultString" : "faultCode");
}

static void XMLCALL on_end(void *ud, const XML_Char *qname)
{
    (void)qname;
    struct cc_xr_parser *p = ud;
    if (p->stopped || p->depth == 0) return;
    struct cc_xr_frame *f = top(p);
    switch ((enum elem)f->kind) {
    case E_ROOT:
        if (!f->seen) fail(p, "<methodResponse> holds neither <params> nor <fault>");
        p->root_closed = true;
        break;
    case E_PARAMS:
        if (p->nparams == 0) fail(p, "<params> holds no <param>: the response has no value");
        break;
    case E_PARAM:
        if (!f->seen) fail(p, "a <param> without a <value>");
        break;
    case E_FAULT:
        if (!f->seen)
            fail(p, "a <fault> without a <value>");
        else
            check_fault(p);
        break;
    case E_VALUE: {
        struct cc_xr_node *n = &p->nodes[f->node];
        if (!f->typed) { /* no type element: a string, white space and all */
            n->str_off = arena_add(p, p->text.p ? p->text.p : "", p->text.len);
            n->str_len = (uint32_t)p->text.len;
        }
        n->end = (uint32_t)p->nnodes;
        p->values--;
        break;
    }
    case E_MEMBER:
        if (!f->has_name)
            fail(p, "a struct <member> without a <name>");
        else if (!f->has_value)
            fail(p, "a struct <member> without a <value>");
        break;
    case E_NAME: {
        struct cc_xr_frame *m = f - 1;
        m->name_off = arena_add(p, p->text.p ? p->text.p : "", p->text.len);
        m->name_len = (uint32_t)p->text.len;
        m->has_name = true;
        break;
    }
    case E_SCALAR:
        close_scalar(p, f);
        break;
    case E_ARRAY:
    case E_DATA:
    case E_STRUCT:
    case E_NIL:
        break;
    }
    p->depth--;
}

static void XMLCALL on_text(void *ud, const XML_Char *s, int len)
{
    struct cc_xr_parser *p = ud;
    if (p->stopped || p->depth == 0) return;
    struct cc_xr_frame *f = top(p);
    /* only text that is a value is kept; the white space between elements is not */
    if (f->kind == E_SCALAR || f->kind == E_NAME || (f->kind == E_VALUE && !f->typed))
        cc_xr_buf_add(&p->text, s, (size_t)len);
}

/* XML-RPC has no use for a document type, and refusing it refuses entity tricks with it. */
static void XMLCALL on_doctype(void *ud, const XML_Char *name, const XML_Char *sysid,
                               const XML_Char *pubid, int has_internal_subset)
{
    (void)name;
    (void)sysid;
    (void)pubid;
    (void)has_internal_subset;
    fail(ud, "a DOCTYPE is not allowed in an XML-RPC response");
}

static void set_handlers(struct cc_xr_parser *p)
{
    XML_SetUserData(p->xp, p);
    XML_SetElementHandler(p->xp, on_start, on_end);
    XML_SetCharacterDataHandler(p->xp, on_text);
    XML_SetStartDoctypeDeclHandler(p->xp, on_doctype);
}

/* ---- the parser's life ------------------------------------------------------------------ */

int cc_xr_parser_init(struct cc_xr_parser *p)
{
    memset(p, 0, sizeof(*p));
    p->xp = XML_ParserCreate(NULL);
    if (!p->xp) return -1;
    set_handlers(p);
    return 0;
}

void cc_xr_parser_release(struct cc_xr_parser *p)
{
    if (p->xp) XML_ParserFree(p->xp);
    p->xp = NULL;
    cc_free(p->nodes);
    cc_free(p->stack);
    p->nodes = NULL;
    p->stack = NULL;
    cc_xr_buf_release(&p->arena);
    cc_xr_buf_release(&p->text);
}

void cc_xr_parser_reset(struct cc_xr_parser *p)
{
    XML_ParserReset(p->xp, NULL); /* this clears the handlers too */
    set_handlers(p);
    p->outcome = CC_XR_MORE;
    p->errmsg[0] = '\0';
    p->nnodes = 0;
    p->depth = 0;
    p->values = 0;
    p->nparams = 0;
    p->root_seen = p->root_closed = p->fault = p->stopped = false;
    p->fault_code = 0;
    p->fault_off = p->fault_len = 0;
    cc_xr_buf_clear(&p->arena);
    cc_xr_buf_clear(&p->text);
}

enum cc_xr_outcome cc_xr_parser_feed(struct cc_xr_parser *p, const char *data, size_t len,
                                     bool final)
{
    if (p->outcome != CC_XR_MORE) return (enum cc_xr_outcome)p->outcome;
    /* expat takes an int length: a larger piece goes in slices */
    while (len > (size_t)INT32_MAX) {
        if (cc_xr_parser_feed(p, data, INT32_MAX, false) != CC_XR_MORE) return p->outcome;
        data += INT32_MAX;
        len -= INT32_MAX;
    }
    if (XML_Parse(p->xp, data, (int)len, final) == XML_STATUS_ERROR) {
        if (!p->stopped) {
            enum XML_Error code = XML_GetErrorCode(p->xp);
            if (code == XML_ERROR_NO_ELEMENTS && !p->root_seen)
                snprintf(p->errmsg, sizeof(p->errmsg), "the response is empty");
            else
                snprintf(p->errmsg, sizeof(p->errmsg), "not well-formed XML: %s (line %lu)",
                         XML_ErrorString(code), (unsigned long)XML_GetCurrentLineNumber(p->xp));
        }
        p->outcome = CC_XR_ERROR;
        return CC_XR_ERROR;
    }
    if (!final) return CC_XR_MORE;
    /* expat checks that the root element closed; what it held was checked as it closed */
    p->outcome = p->fault ? CC_XR_FAULT : CC_XR_OK;
    return (enum cc_xr_outcome)p->outcome;
}

enum cc_xr_outcome cc_xr_parse(struct cc_xr_parser *p, const char *data, size_t len)
{
    cc_xr_parser_reset(p);
    return cc_xr_parser_feed(p, data, len, true);
}

/* ---- encoding helpers ------------------------------------------------------------------- */

int cc_xr_escape(struct cc_xr_buf *b, const char *s, size_t n)
{
    size_t run = 0; /* bytes of |s| before |i| not yet copied */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *rep;
        size_t rl;
        if (c >= 0x20 && c != '&' && c != '<' && c != '>') continue;
        switch (c) {
        case '&':
            rep = "&amp;";
            rl = 5;
            break;
        case '<':
            rep = "&lt;";
            rl = 4;
            break;
        case '>':
            rep = "&gt;";
            rl = 4;
            break;
        case '\r':
            rep = "&#13;";
            rl = 5;
            break;
        case '\t':
        case '\n':
            continue;
        default:
            return -1;
        }
        cc_xr_buf_add(b, s + run, i - run);
        cc_xr_buf_add(b, rep, rl);
        run = i + 1;
    }
    cc_xr_buf_add(b, s + run, n - run);
    return 0;
}

void cc_xr_base64(struct cc_xr_buf *b, const char *s, size_t n)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *u = (const unsigned char *)s;
    char out[4];
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)u[i] << 16 | (uint32_t)u[i + 1] << 8 | u[i + 2];
        out[0] = alphabet[v >> 18];
        out[1] = alphabet[(v >> 12) & 63];
        out[2] = alphabet[(v >> 6) & 63];
        out[3] = alphabet[v & 63];
        cc_xr_buf_add(b, out, 4);
    }
    if (i < n) {
        uint32_t v = (uint32_t)u[i] << 16 | (i + 1 < n ? (uint32_t)u[i + 1] << 8 : 0);
        out[0] = alphabet[v >> 18];
        out[1] = alphabet[(v >> 12) & 63];
        out[2] = i + 1 < n ? alphabet[(v >> 6) & 63] : '=';
        out[3] = '=';
        cc_xr_buf_add(b, out, 4);
    }
}

bool cc_xr_method_name_ok(const char *name, size_t n)
{
    if (n == 0) return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == ':' || c == '/'))
            return false;
    }
    return true;
}
