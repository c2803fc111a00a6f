/* SPDX-License-Identifier: MIT */
/* sio.c: Engine.IO v4 / Socket.IO v5 packets, parsed and started (see sio.h). */
#include "proto/socketio/sio.h"
#include "core/err.h"

#include <stdio.h>
#include <string.h>

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

int cc_sio_parse(const char *s, size_t len, struct cc_sio_packet *p, const char **why)
{
    memset(p, 0, sizeof(*p));
    p->sio = CC_SIO_NONE;
    p->nsp = "/";
    p->nsp_len = 1;
    *why = NULL;
    if (len == 0 || s[0] < '0' || s[0] > '6') {
        *why = "not an Engine.IO packet (no type digit)";
        return CC_EPROTO;
    }
    p->eio = (uint8_t)(s[0] - '0');
    if (p->eio != CC_EIO_MESSAGE) {
        p->data = s + 1;
        p->data_len = len - 1;
        return 0;
    }
    size_t i = 1;
    if (i >= len || s[i] < '0' || s[i] > '6') {
        *why = "a message without a Socket.IO packet type";
        return CC_EPROTO;
    }
    p->sio = (int8_t)(s[i++] - '0');
    if (p->sio == CC_SIO_BINARY_EVENT || p->sio == CC_SIO_BINARY_ACK) {
        uint64_t n = 0;
        size_t start = i;
        while (i < len && is_digit(s[i])) {
            n = n * 10 + (uint64_t)(s[i++] - '0');
            if (n > CC_SIO_MAX_ATTACHMENTS) {
                *why = "too many binary attachments";
                return CC_EPROTO;
            }
        }
        if (i == start || i >= len || s[i] != '-') {
            *why = "a binary packet without its attachment count";
            return CC_EPROTO;
        }
        i++;
        p->attachments = (uint32_t)n;
    }
    if (i < len && s[i] == '/') {
        size_t start = i;
        while (i < len && s[i] != ',')
            i++;
        p->nsp = s + start;
        p->nsp_len = i - start;
        if (i < len) i++; /* the comma */
    }
    if (i < len && is_digit(s[i])) {
        uint64_t id = 0;
        while (i < len && is_digit(s[i])) {
            id = id * 10 + (uint64_t)(s[i++] - '0');
            if (id > CC_SIO_MAX_ID) {
                *why = "an ack id too large";
                return CC_EPROTO;
            }
        }
        p->has_id = true;
        p->id = id;
    }
    p->data = s + i;
    p->data_len = len - i;
    return 0;
}

static int hex(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Four hex digits at |s| (which has at least 4 bytes), or -1. */
static long hex4(const char *s)
{
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hex(s[i]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

static size_t utf8(unsigned long cp, char out[4])
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

int cc_sio_event_name(const char *json, size_t len, char *buf, size_t cap, size_t *name_len)
{
    size_t i = 0, o = 0;
    *name_len = 0;
    if (cap) buf[0] = '\0';
    while (i < len && (json[i] == ' ' || json[i] == '\t' || json[i] == '\r' || json[i] == '\n'))
        i++;
    if (i >= len || json[i] != '[') return CC_EPROTO;
    i++;
    while (i < len && (json[i] == ' ' || json[i] == '\t' || json[i] == '\r' || json[i] == '\n'))
        i++;
    if (i >= len || json[i] != '"') return CC_EPROTO;
    i++;
    while (i < len) {
        char c = json[i++];
        char piece[4];
        size_t n = 1;
        piece[0] = c;
        if (c == '"') {
            if (o >= cap) return CC_ETOOBIG;
            buf[o] = '\0';
            *name_len = o;
            return 0;
        }
        if ((unsigned char)c < 0x20) return CC_EPROTO; /* raw control characters are not JSON */
        if (c == '\\') {
            if (i >= len) return CC_EPROTO;
            char e = json[i++];
            switch (e) {
            case '"':
            case '\\':
            case '/':
                piece[0] = e;
                break;
            case 'b':
                piece[0] = '\b';
                break;
            case 'f':
                piece[0] = '\f';
                break;
            case 'n':
                piece[0] = '\n';
                break;
            case 'r':
                piece[0] = '\r';
                break;
            case 't':
                piece[0] = '\t';
                break;
            case 'u': {
                if (len - i < 4) return CC_EPROTO;
                long cp = hex4(json + i);
                if (cp < 0) return CC_EPROTO;
                i += 4;
                if (cp >= 0xD800 && cp <= 0xDBFF) { /* a surrogate pair makes one code point */
                    long lo = len - i >= 6 && json[i] == '\\' && json[i + 1] == 'u'
                                  ? hex4(json + i + 2)
                                  : -1;
                    if (lo >= 0xDC00 && lo <= 0xDFFF) {
                        i += 6;
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    } else {
                        cp = 0xFFFD;
                    }
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    cp = 0xFFFD;
                }
                n = utf8((unsigned long)cp, piece);
                break;
            }
            default:
                return CC_EPROTO;
            }
        }
        if (o + n >= cap) return CC_ETOOBIG;
        memcpy(buf + o, piece, n);
        o += n;
    }
    return CC_EPROTO; /* the string never ended */
}

/* Writes |v| in decimal (snprintf costs more than the rest of a packet). */
static size_t put_u64(char *out, uint64_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

size_t cc_sio_header(char *out, enum cc_sio_type type, uint32_t attachments, const char *nsp,
                     size_t nsp_len, bool has_id, uint64_t id)
{
    size_t n = 0;
    out[n++] = '4';
    out[n++] = (char)('0' + type);
    if (type == CC_SIO_BINARY_EVENT || type == CC_SIO_BINARY_ACK) {
        n += put_u64(out + n, attachments);
        out[n++] = '-';
    }
    if (nsp && nsp_len && !(nsp_len == 1 && nsp[0] == '/')) {
        memcpy(out + n, nsp, nsp_len);
        n += nsp_len;
        out[n++] = ',';
    }
    if (has_id) n += put_u64(out + n, id);
    return n;
}

/* ---- a binary packet's attachments -------------------------------------------------------- */

void cc_sio_asm_start(struct cc_sio_asm *a, const char *pkt, size_t len, uint32_t n)
{
    CC_ASSERT(n >= 1 && n <= CC_SIO_MAX_ATTACHMENTS);
    a->pkt.len = 0;
    cc_strbuf_add(&a->pkt, pkt, len);
    a->data.len = 0;
    if (n > a->cap) {
        a->cap = n;
        a->view = cc_xrealloc(a->view, a->cap * sizeof(*a->view));
    }
    a->want = n;
    a->have = 0;
}

bool cc_sio_asm_add(struct cc_sio_asm *a, const char *data, size_t len)
{
    if (a->have >= a->want) return false;
    cc_strbuf_add(&a->data, data, len);
    a->view[a->have++].len = len;
    return a->have == a->want;
}

const struct cc_sio_att *cc_sio_asm_done(struct cc_sio_asm *a, uint32_t *n)
{
    const char *at = a->data.data ? a->data.data : ""; /* every attachment empty: none added */
    for (uint32_t i = 0; i < a->have; i++) {
        a->view[i].data = at;
        at += a->view[i].len;
    }
    *n = a->have;
    a->want = a->have = 0;
    return a->view;
}

void cc_sio_asm_clear(struct cc_sio_asm *a)
{
    a->data.len = 0;
    if (a->data.cap > (1u << 20)) cc_strbuf_release(&a->data);
}

void cc_sio_asm_release(struct cc_sio_asm *a)
{
    cc_strbuf_release(&a->pkt);
    cc_strbuf_release(&a->data);
    cc_free(a->view);
    memset(a, 0, sizeof(*a));
}
