/* SPDX-License-Identifier: MIT */
/* handshake.c: the WebSocket opening handshake, client side (RFC 6455 section 4.1). */
#include "proto/ws/handshake.h"
#include "core/err.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* RFC 6455 section 1.3: the GUID every server appends to the key before hashing. */
static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

void cc_ws_key_new(char key[CC_WS_KEY_LEN + 1])
{
    unsigned char raw[16];
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        /* the key only has to differ between connections; it is no secret */
        uint64_t t = cc_now_ns();
        for (size_t i = 0; i < sizeof(raw); i++)
            raw[i] = (unsigned char)(t >> (8 * (i % 8))) ^ (unsigned char)(i * 37);
    }
    EVP_EncodeBlock((unsigned char *)key, raw, sizeof(raw));
    key[CC_WS_KEY_LEN] = '\0';
}

void cc_ws_accept_for(const char *key, char out[CC_WS_ACCEPT_LEN + 1])
{
    char buf[128];
    size_t kl = strlen(key);
    if (kl > sizeof(buf) - sizeof(ws_guid)) kl = sizeof(buf) - sizeof(ws_guid);
    memcpy(buf, key, kl);
    memcpy(buf + kl, ws_guid, sizeof(ws_guid) - 1);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    EVP_Digest(buf, kl + sizeof(ws_guid) - 1, md, &mdlen, EVP_sha1(), NULL);
    EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen);
    out[CC_WS_ACCEPT_LEN] = '\0';
}

/* Whether the header lines |headers| set |name| themselves. */
static bool has_header(const char *headers, const char *name)
{
    size_t n = strlen(name);
    for (const char *line = headers; line && *line;) {
        if (strncasecmp(line, name, n) == 0 && line[n] == ':') return true;
        line = strstr(line, "\r\n");
        if (line) line += 2;
    }
    return false;
}

void cc_ws_hs_request(struct cc_strbuf *b, const char *target, const char *authority,
                      const char *key, const char *protocols, const char *headers)
{
    cc_strbuf_printf(b,
                     "GET %s HTTP/1.1\r\n"
                     "Host: %s\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n",
                     target && *target ? target : "/", authority, key);
    if (protocols && *protocols) cc_strbuf_printf(b, "Sec-WebSocket-Protocol: %s\r\n", protocols);
    if (!has_header(headers, "User-Agent"))
        cc_strbuf_adds(b, "User-Agent: cicada/" CC_VERSION "\r\n");
    if (headers) cc_strbuf_adds(b, headers);
    cc_strbuf_adds(b, "\r\n");
}

/* ---- reading the answer ----------------------------------------------------------------- */

static struct cc_ws_hs *hs_of(llhttp_t *p)
{
    return p->data;
}

static int fail(struct cc_ws_hs *hs, int code, const char *fmt, const char *arg)
{
    hs->error = code;
    snprintf(hs->errmsg, sizeof(hs->errmsg), fmt, arg);
    return -1;
}

static int on_status(llhttp_t *p, const char *at, size_t len)
{
    struct cc_ws_hs *hs = hs_of(p);
    size_t room = sizeof(hs->reason) - 1 - hs->reason_len;
    if (len > room) len = room;
    memcpy(hs->reason + hs->reason_len, at, len);
    hs->reason_len += (uint32_t)len;
    hs->reason[hs->reason_len] = '\0';
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct cc_ws_hs *hs = hs_of(p);
    if (hs->name_len + len >= sizeof(hs->name)) {
        hs->name_long = true;
        return 0;
    }
    memcpy(hs->name + hs->name_len, at, len);
    hs->name_len += (uint32_t)len;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct cc_ws_hs *hs = hs_of(p);
    if (hs->value_len + len >= sizeof(hs->value)) {
        hs->value_long = true;
        return 0;
    }
    memcpy(hs->value + hs->value_len, at, len);
    hs->value_len += (uint32_t)len;
    return 0;
}

/* Whether the comma-separated list |list| holds |token| (compared without case if |nocase|). */
static bool list_has(const char *list, const char *token, bool nocase)
{
    size_t tl = strlen(token);
    const char *s = list;
    while (*s) {
        while (*s == ' ' || *s == '\t' || *s == ',')
            s++;
        const char *e = s;
        while (*e && *e != ',')
            e++;
        const char *t = e;
        while (t > s && (t[-1] == ' ' || t[-1] == '\t'))
            t--;
        size_t n = (size_t)(t - s);
        if (n == tl && (nocase ? strncasecmp(s, token, n) : strncmp(s, token, n)) == 0) return true;
        s = e;
    }
    return false;
}

/* A header is complete: check it if it is one of ours. */
static int on_header_value_complete(llhttp_t *p)
{
    struct cc_ws_hs *hs = hs_of(p);
    const char *name = hs->name;
    hs->name[hs->name_len] = '\0';
    hs->value[hs->value_len] = '\0';
    bool ours = !hs->name_long &&
                (strcasecmp(name, "upgrade") == 0 || strcasecmp(name, "connection") == 0 ||
                 strcasecmp(name, "sec-websocket-accept") == 0 ||
                 strcasecmp(name, "sec-websocket-protocol") == 0 ||
                 strcasecmp(name, "sec-websocket-extensions") == 0);
    int rc = 0;
    if (ours && hs->value_long) {
        rc = fail(hs, CC_EPROTO, "WebSocket handshake: the %s header is too long", name);
    } else if (!ours) {
        /* not ours to check */
    } else if (strcasecmp(name, "upgrade") == 0) {
        hs->upgrade_ok = hs->upgrade_ok || list_has(hs->value, "websocket", true);
    } else if (strcasecmp(name, "connection") == 0) {
        hs->connection_ok = hs->connection_ok || list_has(hs->value, "upgrade", true);
    } else if (strcasecmp(name, "sec-websocket-accept") == 0) {
        /* a repeated header is as good as a wrong one */
        hs->accept_ok = !hs->accept_seen && strcmp(hs->value, hs->accept) == 0;
        hs->accept_seen = true;
    } else if (strcasecmp(name, "sec-websocket-protocol") == 0) {
        if (hs->protocol[0] || !hs->offered || strchr(hs->value, ',') ||
            !list_has(hs->offered, hs->value, false) || hs->value_len >= sizeof(hs->protocol))
            rc = fail(hs, CC_EPROTO,
                      "WebSocket handshake: the server chose the subprotocol '%.100s', which was "
                      "not offered",
                      hs->value);
        else
            memcpy(hs->protocol, hs->value, hs->value_len + 1);
    } else { /* sec-websocket-extensions */
        if (hs->value_len)
            rc = fail(hs, CC_EPROTO,
                      "WebSocket handshake: the server chose the extension '%.100s', which was not "
                      "offered",
                      hs->value);
    }
    hs->name_len = hs->value_len = 0;
    hs->name_long = hs->value_long = false;
    return rc;
}

static int on_headers_complete(llhttp_t *p)
{
    struct cc_ws_hs *hs = hs_of(p);
    hs->status = p->status_code;
    if (hs->status != 101) {
        char what[96];
        snprintf(what, sizeof(what), "%d%s%s", hs->status, hs->reason_len ? " " : "", hs->reason);
        return fail(hs, CC_EPROTO,
                    "WebSocket handshake: the server answered %s instead of 101 Switching "
                    "Protocols",
                    what);
    }
    if (!hs->upgrade_ok)
        return fail(hs, CC_EPROTO, "WebSocket handshake: %s", "no 'Upgrade: websocket' header");
    if (!hs->connection_ok)
        return fail(hs, CC_EPROTO, "WebSocket handshake: %s", "no 'Connection: Upgrade' header");
    if (!hs->accept_seen)
        return fail(hs, CC_EPROTO, "WebSocket handshake: %s", "no Sec-WebSocket-Accept header");
    if (!hs->accept_ok)
        return fail(hs, CC_EPROTO, "WebSocket handshake: %s",
                    "Sec-WebSocket-Accept does not match the key");
    hs->done = true;
    return 0;
}

static const llhttp_settings_t settings = {
    .on_status = on_status,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
};

void cc_ws_hs_init(struct cc_ws_hs *hs, const char *key, const char *protocols)
{
    memset(hs, 0, sizeof(*hs));
    llhttp_init(&hs->parser, HTTP_RESPONSE, &settings);
    hs->parser.data = hs;
    cc_ws_accept_for(key, hs->accept);
    hs->offered = protocols && *protocols ? cc_xstrdup(protocols) : NULL;
}

void cc_ws_hs_release(struct cc_ws_hs *hs)
{
    cc_free(hs->offered);
    hs->offered = NULL;
}

int cc_ws_hs_feed(struct cc_ws_hs *hs, const char *data, size_t len, size_t *used)
{
    *used = 0;
    if (hs->error) return hs->error;
    if (hs->done) return CC_WS_HS_DONE;
    /* llhttp itself puts no bound on a header block */
    size_t room = CC_WS_MAX_HEAD_BYTES - hs->head_bytes;
    size_t n = len < room ? len : room;
    llhttp_errno_t rc = llhttp_execute(&hs->parser, data, n);
    if (hs->done) {
        /* llhttp stops at the end of a 101's header block: the rest is another protocol */
        const char *pos = rc == HPE_PAUSED_UPGRADE ? llhttp_get_error_pos(&hs->parser) : NULL;
        *used = pos && pos >= data && pos <= data + n ? (size_t)(pos - data) : n;
        return CC_WS_HS_DONE;
    }
    if (hs->error) return hs->error;
    if (rc != HPE_OK) {
        const char *why = llhttp_get_error_reason(&hs->parser);
        fail(hs, CC_EPROTO, "WebSocket handshake: malformed response (%s)", why ? why : "?");
        return hs->error;
    }
    /* a 101 whose header block llhttp has not seen the end of */
    hs->head_bytes += (uint32_t)n;
    if (n < len || hs->head_bytes >= CC_WS_MAX_HEAD_BYTES) {
        fail(hs, CC_ETOOBIG, "WebSocket handshake: the response's header block is larger than %s",
             "64 KiB");
        return hs->error;
    }
    return CC_WS_HS_MORE;
}
